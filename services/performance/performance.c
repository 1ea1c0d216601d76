/* performance service RPC handlers (proto/performance.proto, SPEC §1, §3, §6).
 *
 * A request enters as an unpacked message, passes the caller's role and the
 * stateless field checks (validate.c), then runs in its row's transaction
 * (main.c; the runtime opens it at the first statement, commits it, and runs
 * the handler again after a serialization failure or deadlock). A state
 * change locks the performance row (SELECT ... FOR UPDATE) before deciding
 * from its stored state, so two admins approving, or an approve racing a
 * cancel, are serialised and only one wins; a refusal rolls everything back.
 * Events other services build on (performance.approved / .changed /
 * .cancelled) are written to the outbox in that same transaction.
 *
 * One edit needs another service: changing the price or seat count of a
 * grade of an APPROVED performance, or removing the grade, is refused while
 * any seat of it is held or sold, which only the reservation service knows.
 * That question is asked outside the transaction (the handler rolls back
 * first, so no row lock is held across a network call); the next
 * transaction then re-checks that the performance did not change meanwhile
 * (its revision) and asks again if it did. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "performance.h"
#include "sb/audit.h"
#include "sb/events.h"
#include "sb/log.h"
#include "sb/service.h"
#include "sb/util.h"
#include "sb/valid.h"

#define SUMMARY_MAX 1000
#define SALES_ROUNDS 3

static const sb_pg_stmt_t insert_perf = {
    "perf_insert",
    "INSERT INTO performances (performance_id, planner_id, title, description, venue, category,"
    " running_minutes, status) VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6, $7::int, "
    "'PENDING_APPROVAL')"};

static const sb_pg_stmt_t insert_schedule = {
    "perf_schedule_insert", "INSERT INTO schedules (schedule_id, performance_id, starts_at, venue)"
                            " VALUES ($1::uuid, $2::uuid, $3::timestamptz, $4)"};

static const sb_pg_stmt_t update_schedule = {
    "perf_schedule_update",
    "UPDATE schedules SET starts_at = $2::timestamptz, venue = $3 WHERE schedule_id = $1::uuid"};

static const sb_pg_stmt_t delete_schedule = {"perf_schedule_delete",
                                             "DELETE FROM schedules WHERE schedule_id = $1::uuid"};

static const sb_pg_stmt_t insert_grade = {
    "perf_grade_insert", "INSERT INTO grades (performance_id, grade, price, seat_count, position)"
                         " VALUES ($1::uuid, $2, $3::bigint, $4::int, $5::int)"};

static const sb_pg_stmt_t delete_grades = {"perf_grades_delete",
                                           "DELETE FROM grades WHERE performance_id = $1::uuid"};

/* NULL parameters leave the column as it is. A REJECTED performance that is
 * edited goes back to PENDING_APPROVAL and its reject reason is dropped. */
static const sb_pg_stmt_t update_perf = {
    "perf_update",
    "UPDATE performances SET title = COALESCE($2, title), description = COALESCE($3, description),"
    " venue = COALESCE($4, venue), category = COALESCE($5, category),"
    " running_minutes = COALESCE($6::int, running_minutes),"
    " reject_reason = CASE WHEN status = 'REJECTED' AND $7 <> 'REJECTED' THEN NULL"
    "   ELSE reject_reason END,"
    " status = $7, version = $8::bigint, revision = revision + 1, updated_at = now()"
    " WHERE performance_id = $1::uuid"};

static const sb_pg_stmt_t approve_perf = {
    "perf_approve",
    "UPDATE performances SET status = 'APPROVED', approved_at = now(), updated_at = now(),"
    " revision = revision + 1 WHERE performance_id = $1::uuid"};

static const sb_pg_stmt_t reject_perf = {
    "perf_reject",
    "UPDATE performances SET status = 'REJECTED', reject_reason = $2, rejected_at = now(),"
    " updated_at = now(), revision = revision + 1 WHERE performance_id = $1::uuid"};

static const sb_pg_stmt_t cancel_perf = {
    "perf_cancel",
    "UPDATE performances SET status = 'CANCELLED', cancel_reason = NULLIF($2, ''), cancelled_by = $3,"
    " cancelled_at = now(), updated_at = now(), version = version + $4::int,"
    " revision = revision + 1 WHERE performance_id = $1::uuid"};

/* ------------------------------------------------------------- helpers */

/* The caller's user id in canonical form; NULL when anonymous. */
static const char *caller_id(sb_rpc_ctx_t *ctx)
{
    return sb_uuid_norm(ctx->arena, ctx->user_id);
}

/* UUIDs are hex: a case-blind comparison is the canonical one. */
static bool owns(const sb_rpc_ctx_t *ctx, const perf_row_t *row)
{
    return ctx->user_id && *ctx->user_id && !strcasecmp(ctx->user_id, row->pb->planner_id);
}

static bool has_status(const perf_row_t *row, Sb__Performance__PerformanceStatus s)
{
    return row->pb->status == s;
}
#define STATUS(name) SB__PERFORMANCE__PERFORMANCE_STATUS__##name

/* PENDING_APPROVAL and REJECTED performances are the planner's and the
 * admins' business only. */
static bool visible(const sb_rpc_ctx_t *ctx, const perf_row_t *row)
{
    return has_status(row, STATUS(APPROVED)) || has_status(row, STATUS(CANCELLED)) ||
           sb_rpc_is_admin(ctx) || owns(ctx, row);
}

/* The API view for this caller: an admin's reject reason is for the planner
 * and admins only. */
static void present(const sb_rpc_ctx_t *ctx, const perf_row_t *row, Sb__Performance__Performance *out)
{
    *out = *row->pb;
    if (!sb_rpc_is_admin(ctx) && !owns(ctx, row))
        out->reject_reason = "";
}

static sb_status_t need_performance_id(sb_rpc_ctx_t *ctx, const char *s, char **id)
{
    if (!(*id = sb_uuid_norm(ctx->arena, s)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "performanceId: must be a UUID");
    return SB_OK;
}

/* The policy has admitted a signed-in caller; its id must be a user id. */
static sb_status_t need_signed_in(sb_rpc_ctx_t *ctx)
{
    if (!caller_id(ctx))
        return sb_rpc_fail(ctx, SB_UNAUTHENTICATED, "the caller's identity is not a user id");
    return SB_OK;
}

static char *ms_str(sb_arena_t *a, int64_t ms)
{
    char ts[32];
    sb_time_rfc3339(ms, ts);
    return sb_arena_strdup(a, ts);
}

static const char *effective(const char *venue, const char *perf_venue)
{
    return venue ? venue : perf_venue;
}

static bool str_eq(const char *x, const char *y)
{
    return (!x && !y) || (x && y && !strcmp(x, y));
}

/* Cuts b to at most max bytes on a UTF-8 boundary, marking the cut. */
static void cap_utf8(sb_buf_t *b, size_t max)
{
    if (b->len <= max)
        return;
    size_t n = max - 3;
    while (n > 0 && ((unsigned char)b->buf[n] & 0xC0) == 0x80)
        n--;
    b->len = n;
    b->buf[n] = '\0';
    sb_buf_adds(b, "...");
}

/* A stateless check's verdict (msg) as the refusal. */
static sb_status_t checked(sb_rpc_ctx_t *ctx, sb_status_t st, sb_buf_t *msg)
{
    if (st != SB_OK)
        st = sb_rpc_fail(ctx, st, "%s", msg->buf);
    sb_buf_release(msg);
    return st;
}

/* The request's grades of performance id, in the order given. */
static sb_status_t insert_grades(sb_db_t *db, const char *id, const perf_in_t *in)
{
    sb_status_t st = SB_OK;
    for (size_t i = 0; st == SB_OK && i < in->n_gr; i++) {
        char price[24], seats[16], pos[24];
        snprintf(price, sizeof price, "%lld", (long long)in->gr[i].price);
        snprintf(seats, sizeof seats, "%d", in->gr[i].seats);
        snprintf(pos, sizeof pos, "%zu", i);
        st = sb_db_exec(db, &insert_grade, NULL, id, in->gr[i].grade, price, seats, pos);
    }
    return st;
}

static sb_status_t insert_schedule_at(sb_db_t *db, const char *perf_id, int64_t at_ms, const char *venue)
{
    char sid[SB_UUID_LEN + 1], at[32];
    sb_uuid_v4(sid);
    sb_time_rfc3339(at_ms, at);
    return sb_db_exec(db, &insert_schedule, NULL, sid, perf_id, at, venue);
}

/* ------------------------------------------------------- CreatePerformance */

sb_status_t perf_create(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Performance__CreatePerformanceRequest *req = in;
    sb_status_t st = need_signed_in(ctx); /* the policy admits planners only */
    if (st != SB_OK)
        return st;
    sb_buf_t msg = SB_BUF_INIT;
    perf_in_t pin;
    if ((st = checked(ctx, perf_check_create(ctx->arena, req, sb_now_ms(), &pin, &msg), &msg)) != SB_OK)
        return st;

    const char *planner = caller_id(ctx);
    char id[SB_UUID_LEN + 1], minutes[16];
    sb_uuid_v4(id);
    snprintf(minutes, sizeof minutes, "%d", pin.running_minutes);
    st = sb_db_exec(ctx->db, &insert_perf, NULL, id, planner, pin.title, pin.description, pin.venue,
                    pin.category, minutes);
    for (size_t i = 0; st == SB_OK && i < pin.n_sch; i++)
        st = insert_schedule_at(ctx->db, id, pin.sch[i].at_ms, pin.sch[i].venue);
    perf_row_t row;
    bool found;
    if (st != SB_OK || (st = insert_grades(ctx->db, id, &pin)) != SB_OK ||
        (st = perf_load(ctx->db, id, false, &row, &found)) != SB_OK)
        return st;
    present(ctx, &row, out);
    sb_info("performance %s registered by planner %s: %zu schedules, %zu grades", id, planner, pin.n_sch,
            pin.n_gr);
    return SB_OK;
}

/* ---------------------------------------------------------- GetPerformance */

sb_status_t perf_get(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Performance__GetPerformanceRequest *req = in;
    char *id;
    perf_row_t row;
    bool found;
    sb_status_t st = need_performance_id(ctx, req->performance_id, &id);
    if (st != SB_OK || (st = perf_load(ctx->db, id, false, &row, &found)) != SB_OK)
        return st;
    if (!found || !visible(ctx, &row))
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "performance not found");
    present(ctx, &row, out);
    return SB_OK;
}

/* -------------------------------------------------------- ListPerformances */

static sb_status_t list_time(sb_rpc_ctx_t *ctx, const char *field, const char *s, int64_t *ms,
                             const char **out)
{
    *out = NULL;
    if (!s || !*s)
        return SB_OK;
    if (!sb_parse_rfc3339(s, ms))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "%s: must be an RFC 3339 timestamp such as 2030-01-31T19:30:00+09:00", field);
    if (*ms < 0) /* no schedule starts before 1970: the same filter, in range */
        *ms = 0;
    *out = ms_str(ctx->arena, *ms);
    return SB_OK;
}

/* pageSize: 0 means 20; above 100 is clamped to 100 (a client asking for
 * more gets a full page and a token, not an error); negative is refused. */
sb_status_t perf_list_rpc(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Performance__ListPerformancesRequest *req = in;
    Sb__Performance__ListPerformancesResponse *resp = out;
    perf_query_t q = {.admin = sb_rpc_is_admin(ctx), .viewer = caller_id(ctx)};
    sb_status_t st;

    if (req->planner_id && *req->planner_id && !(q.planner = sb_uuid_norm(ctx->arena, req->planner_id)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "plannerId: must be a UUID");
    if (req->status != STATUS(PERFORMANCE_STATUS_UNSPECIFIED) &&
        !(q.status = perf_status_name(req->status)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "status: must be PENDING_APPROVAL, APPROVED, REJECTED or CANCELLED");
    if (req->category && *req->category) {
        if (strlen(req->category) > 4 * PERF_CATEGORY_MAX)
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "category: must be at most %d characters",
                               PERF_CATEGORY_MAX);
        q.category = req->category;
    }
    int64_t from_ms = 0, to_ms = 0;
    if ((st = list_time(ctx, "from", req->from, &from_ms, &q.from)) != SB_OK ||
        (st = list_time(ctx, "to", req->to, &to_ms, &q.to)) != SB_OK)
        return st;
    if (q.from && q.to && to_ms <= from_ms)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "to: must be after from");
    if (req->page_size < 0)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "pageSize: must be 0-%d (0: %d)", PERF_PAGE_MAX,
                           PERF_PAGE_DEFAULT);
    q.limit = req->page_size == 0              ? PERF_PAGE_DEFAULT
              : req->page_size > PERF_PAGE_MAX ? PERF_PAGE_MAX
                                               : req->page_size;
    if (req->page_token && *req->page_token) {
        char *after_id;
        if (!perf_page_token_parse(ctx->arena, req->page_token, &q.after_us, &after_id))
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                               "pageToken: malformed; pass the nextPageToken of the previous page");
        q.after_set = true;
        q.after_id = after_id;
    }

    perf_row_t *rows;
    size_t n;
    bool more;
    if ((st = perf_list(ctx->db, &q, &rows, &n, &more)) != SB_OK)
        return st;
    resp->n_performances = n;
    resp->performances = SB_ARENA_NEW(ctx->arena, Sb__Performance__Performance *, n);
    for (size_t i = 0; i < n; i++) {
        resp->performances[i] = SB_ARENA_NEW(ctx->arena, Sb__Performance__Performance, 1);
        present(ctx, &rows[i], resp->performances[i]);
    }
    if (more && n > 0)
        resp->next_page_token =
            perf_page_token(ctx->arena, rows[n - 1].created_us, rows[n - 1].pb->performance_id);
    return SB_OK;
}

/* ------------------------------------------------------- UpdatePerformance */

/* What an edit is about: the checked request and the moment it is judged at. */
typedef struct edit {
    const char *id;
    const perf_in_t *in;
    int64_t now_ms;
    /* The reservation service's answer, valid while the revision is sales_rev. */
    bool have_sales;
    int64_t sales_rev;
    perf_sales_t sales;
    bool need_sales; /* set when the transaction needs (a fresh) answer first */
    perf_row_t result;
    bool event; /* performance.changed written */
} edit_t;

/* The performance after the edit, schedule by schedule, before writing. */
typedef struct sched_final {
    const char *id; /* NULL: new */
    int64_t at_ms;
    const char *venue; /* NULL: the performance's venue */
    const sched_row_t *old;
} sched_final_t;

static const sched_row_t *find_sched(const perf_row_t *cur, const char *id)
{
    for (size_t i = 0; i < cur->n_sch; i++)
        if (!strcmp(cur->sch[i].id, id))
            return &cur->sch[i];
    return NULL;
}

static const Sb__Performance__SeatGrade *find_grade(const Sb__Performance__Performance *p,
                                                    const char *name)
{
    for (size_t i = 0; i < p->n_grades; i++)
        if (!strcmp(p->grades[i]->grade, name))
            return p->grades[i];
    return NULL;
}

static const grade_in_t *find_grade_in(const perf_in_t *in, const char *name)
{
    for (size_t i = 0; i < in->n_gr; i++)
        if (!strcmp(in->gr[i].grade, name))
            return &in->gr[i];
    return NULL;
}

/* The new schedule list: the request's when given, else the stored one. */
static sb_status_t plan_schedules(sb_rpc_ctx_t *ctx, const edit_t *e, const perf_row_t *cur,
                                  sched_final_t **out, size_t *n, sb_buf_t *msg)
{
    const perf_in_t *in = e->in;
    if (!in->has_schedules) {
        *n = cur->n_sch;
        *out = SB_ARENA_NEW(ctx->arena, sched_final_t, *n);
        for (size_t i = 0; i < *n; i++)
            (*out)[i] =
                (sched_final_t){cur->sch[i].id, cur->sch[i].at_ms, cur->sch[i].venue, &cur->sch[i]};
        return SB_OK;
    }
    *n = in->n_sch;
    sched_final_t *f = SB_ARENA_NEW(ctx->arena, sched_final_t, *n);
    int64_t *times = SB_ARENA_NEW(ctx->arena, int64_t, *n);
    for (size_t i = 0; i < *n; i++) {
        const sched_in_t *s = &in->sch[i];
        if (!s->id) {
            f[i] = (sched_final_t){NULL, s->at_ms, s->venue, NULL};
        } else {
            const sched_row_t *old = find_sched(cur, s->id);
            if (!old)
                return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                                   "schedules[%zu].scheduleId: no such schedule in this performance", i);
            f[i] = (sched_final_t){old->id, s->has_time ? s->at_ms : old->at_ms,
                                   s->venue ? s->venue : old->venue, old};
            bool moved = f[i].at_ms != old->at_ms, rehoused = !str_eq(f[i].venue, old->venue);
            if ((moved || rehoused) && old->at_ms <= e->now_ms)
                return sb_rpc_fail(ctx, SB_FAILED_PRECONDITION,
                                   "schedules[%zu]: the schedule has already started and cannot change",
                                   i);
            if (moved && f[i].at_ms <= e->now_ms)
                return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                                   "schedules[%zu].startsAt: must be in the future", i);
        }
        times[i] = f[i].at_ms;
    }
    if (perf_check_distinct_times(times, *n, msg) != SB_OK)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "%s", msg->buf);
    *out = f;
    return SB_OK;
}

static bool in_final(const sched_final_t *f, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (f[i].id && !strcmp(f[i].id, id))
            return true;
    return false;
}

/* One try of the edit in the call's transaction. Sets e->need_sales (and
 * writes nothing) when it needs the reservation service's answer for the
 * performance's current revision first. */
static sb_status_t edit_tx(sb_rpc_ctx_t *ctx, edit_t *e)
{
    const perf_in_t *in = e->in;
    sb_db_t *db = ctx->db;
    sb_arena_t *a = ctx->arena;
    e->need_sales = false;
    e->event = false;

    perf_row_t cur;
    bool found;
    sb_status_t st = perf_load(db, e->id, true, &cur, &found);
    if (st != SB_OK)
        return st;
    const Sb__Performance__Performance *old = cur.pb;
    if (!found)
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "performance not found");
    if (!owns(ctx, &cur))
        return sb_rpc_fail(ctx, SB_PERMISSION_DENIED,
                           "only the planner who registered this performance may edit it");
    if (has_status(&cur, STATUS(CANCELLED)))
        return sb_rpc_fail(ctx, SB_FAILED_PRECONDITION,
                           "the performance is CANCELLED and can no longer be edited");
    bool approved = has_status(&cur, STATUS(APPROVED));
    const char *venue = in->venue ? in->venue : old->venue;

    sb_buf_t summary = SB_BUF_INIT, msg = SB_BUF_INIT;
#define NOTE(...)                                                                                       \
    do {                                                                                                \
        if (summary.len)                                                                                \
            sb_buf_adds(&summary, "; ");                                                                \
        sb_buf_addf(&summary, __VA_ARGS__);                                                             \
    } while (0)

    if (in->title && strcmp(in->title, old->title))
        NOTE("title changed to \"%s\"", in->title);
    if (in->description && strcmp(in->description, old->description))
        NOTE("description changed");
    if (in->venue && strcmp(in->venue, old->venue))
        NOTE("venue changed to \"%s\"", in->venue);
    if (in->category && strcmp(in->category, old->category))
        NOTE("category changed to \"%s\"", in->category);
    if (in->running_minutes && in->running_minutes != old->running_minutes)
        NOTE("running time changed to %d minutes", in->running_minutes);

    /* Schedules: the new list; removals; which existing ones moved. */
    sched_final_t *f = NULL;
    size_t nf = 0;
    if ((st = plan_schedules(ctx, e, &cur, &f, &nf, &msg)) != SB_OK)
        goto out;
    size_t removed = 0;
    for (size_t i = 0; i < cur.n_sch; i++) {
        if (in_final(f, nf, cur.sch[i].id))
            continue;
        if (approved) {
            st = sb_rpc_fail(ctx, SB_FAILED_PRECONDITION,
                             "schedules: schedule %s cannot be removed from an approved performance;"
                             " cancel the performance instead",
                             cur.sch[i].id);
            goto out;
        }
        removed++;
    }
    if (removed)
        NOTE("%zu schedule%s removed", removed, removed == 1 ? "" : "s");
    char **changed_ids = SB_ARENA_NEW(a, char *, nf);
    size_t n_changed = 0;
    for (size_t i = 0; i < nf; i++) {
        if (!f[i].old) {
            NOTE("schedule added at %s", ms_str(a, f[i].at_ms));
            continue;
        }
        bool moved = f[i].at_ms != f[i].old->at_ms;
        const char *v_old = effective(f[i].old->venue, old->venue),
                   *v_new = effective(f[i].venue, venue);
        bool rehoused = strcmp(v_old, v_new) != 0;
        if (moved)
            NOTE("schedule %s moved from %s to %s", f[i].id, ms_str(a, f[i].old->at_ms),
                 ms_str(a, f[i].at_ms));
        if (rehoused)
            NOTE("schedule %s now at \"%s\"", f[i].id, v_new);
        if (moved || rehoused)
            changed_ids[n_changed++] = (char *)f[i].id;
    }

    /* Grades: a price or size change, or a removal, of an approved
     * performance needs the reservation service's word that no seat of the
     * grade is held or sold. */
    if (in->has_grades) {
        bool touches_sales = false;
        for (size_t i = 0; i < old->n_grades; i++) {
            const Sb__Performance__SeatGrade *g = old->grades[i];
            const grade_in_t *ng = find_grade_in(in, g->grade);
            if (!ng) {
                NOTE("grade %s removed", g->grade);
                touches_sales = true;
                continue;
            }
            if (ng->price != g->price)
                NOTE("grade %s price %lld -> %lld", g->grade, (long long)g->price, (long long)ng->price);
            if (ng->seats != g->seat_count)
                NOTE("grade %s seats %d -> %d", g->grade, g->seat_count, ng->seats);
            touches_sales |= ng->price != g->price || ng->seats != g->seat_count;
        }
        bool same_set = in->n_gr == old->n_grades, same_order = same_set;
        for (size_t i = 0; i < in->n_gr; i++) {
            if (!find_grade(old, in->gr[i].grade)) {
                NOTE("grade %s added", in->gr[i].grade);
                same_set = false;
            }
            same_order = same_order && !strcmp(in->gr[i].grade, old->grades[i]->grade);
        }
        if (same_set && !same_order)
            NOTE("grades reordered");
        if (approved && touches_sales) {
            if (!e->have_sales || e->sales_rev != cur.revision) {
                e->need_sales = true;
                e->sales_rev = cur.revision;
                goto out; /* st is OK: nothing written yet */
            }
            for (size_t i = 0; i < old->n_grades; i++) {
                const Sb__Performance__SeatGrade *g = old->grades[i];
                const grade_in_t *ng = find_grade_in(in, g->grade);
                if (ng && ng->price == g->price && ng->seats == g->seat_count)
                    continue;
                int64_t taken = perf_sales_taken(&e->sales, g->grade);
                if (taken > 0) {
                    st = sb_rpc_fail(
                        ctx, SB_FAILED_PRECONDITION,
                        "grades: %lld seat%s of grade %s %s held or sold; its price and seat"
                        " count cannot change and it cannot be removed",
                        (long long)taken, taken == 1 ? "" : "s", g->grade, taken == 1 ? "is" : "are");
                    goto out;
                }
            }
        }
    }

    bool rejected = has_status(&cur, STATUS(REJECTED));
    if (!summary.len && !rejected) { /* nothing differs: nothing to write */
        e->result = cur;
        goto out;
    }
    bool bump = approved && summary.len;
    char minutes[16], version[24];
    snprintf(minutes, sizeof minutes, "%d", in->running_minutes);
    snprintf(version, sizeof version, "%lld", (long long)(cur.version + (bump ? 1 : 0)));
    if ((st = sb_db_exec(db, &update_perf, NULL, e->id, in->title, in->description, in->venue,
                         in->category, in->running_minutes ? minutes : NULL,
                         perf_status_name(rejected ? STATUS(PENDING_APPROVAL) : old->status),
                         version)) != SB_OK)
        goto out;
    for (size_t i = 0; i < cur.n_sch; i++)
        if (!in_final(f, nf, cur.sch[i].id) &&
            (st = sb_db_exec(db, &delete_schedule, NULL, cur.sch[i].id)) != SB_OK)
            goto out;
    for (size_t i = 0; i < nf && st == SB_OK; i++) {
        char at[32];
        sb_time_rfc3339(f[i].at_ms, at);
        if (!f[i].old)
            st = insert_schedule_at(db, e->id, f[i].at_ms, f[i].venue);
        else if (f[i].at_ms != f[i].old->at_ms || !str_eq(f[i].venue, f[i].old->venue))
            st = sb_db_exec(db, &update_schedule, NULL, f[i].id, at, f[i].venue);
    }
    if (st != SB_OK)
        goto out;
    if (in->has_grades && ((st = sb_db_exec(db, &delete_grades, NULL, e->id)) != SB_OK ||
                           (st = insert_grades(db, e->id, in)) != SB_OK))
        goto out;
    if ((st = perf_load(db, e->id, false, &e->result, &found)) != SB_OK)
        goto out;

    if (bump) {
        cap_utf8(&summary, SUMMARY_MAX);
        Sb__Events__PerformanceChanged ev = SB__EVENTS__PERFORMANCE_CHANGED__INIT;
        ev.performance = perf_snapshot(a, &e->result);
        ev.changed_schedule_ids = changed_ids;
        ev.n_changed_schedule_ids = n_changed;
        ev.summary = summary.buf;
        st = sb_outbox_add(db->conn, "performance.changed", e->id, &ev.base, NULL, db->detail);
        e->event = st == SB_OK;
    }
out:
#undef NOTE
    sb_buf_release(&msg);
    sb_buf_release(&summary);
    return st;
}

sb_status_t perf_update(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Performance__UpdatePerformanceRequest *req = in;
    char *id;
    sb_status_t st = need_performance_id(ctx, req->performance_id, &id);
    if (st != SB_OK || (st = need_signed_in(ctx)) != SB_OK) /* planners only (policy) */
        return st;
    sb_buf_t msg = SB_BUF_INIT;
    perf_in_t pin;
    if ((st = checked(ctx, perf_check_update(ctx->arena, req, sb_now_ms(), &pin, &msg), &msg)) != SB_OK)
        return st;

    edit_t e = {.id = id, .in = &pin, .now_ms = sb_now_ms()};
    for (int round = 0;; round++) {
        if ((st = edit_tx(ctx, &e)) != SB_OK || !e.need_sales)
            break;
        sb_db_rollback(ctx->db); /* no row lock across the call */
        if (round == SALES_ROUNDS)
            return sb_rpc_fail(ctx, SB_ABORTED, "the performance kept changing meanwhile; try again");
        if ((st = perf_sales_fetch(ctx, id, &e.sales)) != SB_OK)
            return st;
        e.have_sales = true;
    }
    if (st != SB_OK)
        return st;
    present(ctx, &e.result, out);
    sb_info("performance %s edited by %s%s", id, ctx->user_id,
            e.event ? ": performance.changed written" : "");
    return SB_OK;
}

/* ------------------------------------------ Approve / Reject / Cancel */

enum transition { APPROVE, REJECT, CANCEL };

/* The state change itself, decided on the locked row cur. */
static sb_status_t apply(sb_rpc_ctx_t *ctx, enum transition op, const perf_row_t *cur,
                         const char *reason, const char *by)
{
    const char *id = cur->pb->performance_id;
    switch (op) {
    case APPROVE:
    case REJECT:
        if (!has_status(cur, STATUS(PENDING_APPROVAL)))
            return sb_rpc_fail(ctx, SB_FAILED_PRECONDITION,
                               "the performance is %s; only a PENDING_APPROVAL performance can be %s",
                               perf_status_name(cur->pb->status),
                               op == APPROVE ? "approved" : "rejected");
        if (op == REJECT)
            return sb_db_exec(ctx->db, &reject_perf, NULL, id, reason);
        int64_t now = sb_now_ms();
        bool ahead = false;
        for (size_t i = 0; i < cur->n_sch && !ahead; i++)
            ahead = cur->sch[i].at_ms > now;
        if (!ahead)
            return sb_rpc_fail(
                ctx, SB_FAILED_PRECONDITION,
                "no schedule of the performance starts in the future; it cannot be approved");
        return sb_db_exec(ctx->db, &approve_perf, NULL, id);
    case CANCEL:
        if (!sb_rpc_is_admin(ctx) && !owns(ctx, cur))
            return sb_rpc_fail(
                ctx, SB_PERMISSION_DENIED,
                "only the planner who registered this performance or an admin may cancel it");
        if (has_status(cur, STATUS(CANCELLED)))
            return sb_rpc_fail(ctx, SB_FAILED_PRECONDITION, "the performance is already CANCELLED");
        return sb_db_exec(ctx->db, &cancel_perf, NULL, id, reason, by,
                          has_status(cur, STATUS(APPROVED)) ? "1" : "0");
    }
    return SB_INTERNAL;
}

static sb_status_t transition(sb_rpc_ctx_t *ctx, enum transition op, const char *raw_id,
                              const char *reason, void *out)
{
    char *id;
    perf_row_t cur, row;
    bool found;
    sb_status_t st = need_performance_id(ctx, raw_id, &id);
    if (st != SB_OK || (st = perf_load(ctx->db, id, true, &cur, &found)) != SB_OK)
        return st;
    if (!found)
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "performance not found");
    const char *by = caller_id(ctx); /* need_signed_in made sure it is a UUID */
    /* an admin acting (not the owning planner) says why, before anything changes */
    bool as_admin = sb_audit_as_admin(ctx, cur.pb->planner_id);
    if (as_admin && (st = sb_audit_need_reason(ctx, reason)) != SB_OK)
        return st;
    if ((st = apply(ctx, op, &cur, reason, by)) != SB_OK ||
        (st = perf_load(ctx->db, id, false, &row, &found)) != SB_OK)
        return st;

    const char *event = NULL;
    if (op == APPROVE) {
        Sb__Events__PerformanceApproved ev = SB__EVENTS__PERFORMANCE_APPROVED__INIT;
        ev.performance = perf_snapshot(ctx->arena, &row);
        event = "performance.approved";
        st = sb_outbox_add(ctx->db->conn, event, id, &ev.base, NULL, &ctx->detail);
    } else if (op == CANCEL && has_status(&cur, STATUS(APPROVED))) {
        Sb__Events__PerformanceCancelled ev = SB__EVENTS__PERFORMANCE_CANCELLED__INIT;
        ev.performance_id = row.pb->performance_id;
        ev.planner_id = row.pb->planner_id;
        ev.version = row.version;
        ev.reason = row.pb->cancel_reason;
        ev.cancelled_by = (char *)by;
        event = "performance.cancelled";
        st = sb_outbox_add(ctx->db->conn, event, id, &ev.base, NULL, &ctx->detail);
    }
    if (st == SB_OK && as_admin)
        st = sb_audit_record(ctx, &(sb_audit_t){.target_type = "performance",
                                                .target_id = id,
                                                .reason = reason,
                                                .before = perf_status_name(cur.pb->status),
                                                .after = perf_status_name(row.pb->status)});
    if (st != SB_OK)
        return st;
    present(ctx, &row, out);
    sb_info("performance %s: %s -> %s by %s%s%s", id, perf_status_name(cur.pb->status),
            perf_status_name(row.pb->status), ctx->user_id, event ? ", event " : "", event ? event : "");
    return SB_OK;
}

sb_status_t perf_approve(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Performance__ApprovePerformanceRequest *req = in; /* admins only (policy) */
    return transition(ctx, APPROVE, req->performance_id, req->reason, out);
}

sb_status_t perf_reject(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Performance__RejectPerformanceRequest *req = in; /* admins only (policy) */
    const char *problem = perf_reason_problem(req->reason, true);
    if (problem)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "reason: %s", problem);
    return transition(ctx, REJECT, req->performance_id, req->reason, out);
}

sb_status_t perf_cancel(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Performance__CancelPerformanceRequest *req = in; /* planners and admins (policy);
                                                                  ownership is checked on the row */
    const char *problem = perf_reason_problem(req->reason, false);
    if (problem)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "reason: %s", problem);
    return transition(ctx, CANCEL, req->performance_id, req->reason ? req->reason : "", out);
}

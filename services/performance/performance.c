/* performance service RPC handlers (proto/performance.proto, SPEC §1, §3, §6).
 *
 * A request enters as an unpacked message, passes the caller's role and the
 * stateless field checks (validate.c), then runs as one transaction that
 * locks the performance row (SELECT ... FOR UPDATE) before deciding from its
 * stored state, so two admins approving, or an approve racing a cancel, are
 * serialised and only one wins. Events other services build on
 * (performance.approved / .changed / .cancelled) are written to the outbox
 * in that same transaction.
 *
 * One edit needs another service: changing the price or seat count of a
 * grade of an APPROVED performance, or removing the grade, is refused while
 * any seat of it is held or sold, which only the reservation service knows.
 * That question is asked outside the transaction (no row lock held across a
 * network call); the transaction then re-checks that the performance did not
 * change meanwhile (its revision) and asks again if it did.
 *
 * Domain refusals inside a transaction are recorded on the job and the
 * transaction function returns SB_CANCELLED, which rolls back without being
 * taken for a retryable conflict. Messages to callers never carry SQL; the
 * database detail goes to the log. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "performance.h"
#include "sb/events.h"
#include "sb/log.h"
#include "sb/service.h"
#include "sb/util.h"
#include "sb/valid.h"

#define REFUSED SB_CANCELLED /* a tx function's "see job->refusal" */
#define SUMMARY_MAX 1000
#define SALES_ROUNDS 3

static const sb_pg_stmt_t insert_perf = {
    "perf_insert",
    "INSERT INTO performances (performance_id, planner_id, title, description, venue, category,"
    " running_minutes, status) VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6, $7::int, 'PENDING_APPROVAL')"};

static const sb_pg_stmt_t insert_schedule = {
    "perf_schedule_insert",
    "INSERT INTO schedules (schedule_id, performance_id, starts_at, venue)"
    " VALUES ($1::uuid, $2::uuid, $3::timestamptz, $4)"};

static const sb_pg_stmt_t update_schedule = {
    "perf_schedule_update",
    "UPDATE schedules SET starts_at = $2::timestamptz, venue = $3 WHERE schedule_id = $1::uuid"};

static const sb_pg_stmt_t delete_schedule = {
    "perf_schedule_delete", "DELETE FROM schedules WHERE schedule_id = $1::uuid"};

static const sb_pg_stmt_t insert_grade = {
    "perf_grade_insert",
    "INSERT INTO grades (performance_id, grade, price, seat_count, position)"
    " VALUES ($1::uuid, $2, $3::bigint, $4::int, $5::int)"};

static const sb_pg_stmt_t delete_grades = {
    "perf_grades_delete", "DELETE FROM grades WHERE performance_id = $1::uuid"};

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

/* What a transaction function decided against the caller. */
typedef struct job {
    sb_arena_t *a;
    sb_status_t refusal; /* SB_OK: none */
    char *why;
} job_t;

static sb_status_t refuse(job_t *j, sb_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static sb_status_t refuse(job_t *j, sb_status_t st, const char *fmt, ...)
{
    sb_buf_t b = SB_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    sb_buf_vaddf(&b, fmt, ap);
    va_end(ap);
    j->refusal = st;
    j->why = sb_arena_strdup(j->a, b.buf);
    sb_buf_release(&b);
    return REFUSED;
}

static void job_reset(job_t *j)
{
    j->refusal = SB_OK;
    j->why = NULL;
}

/* The outcome of sb_pg_tx for the caller: the job's refusal, or a database
 * failure (detail to the log, a plain message to the caller). */
static sb_status_t finish(sb_rpc_ctx_t *ctx, sb_status_t st, const job_t *j, const sb_buf_t *err,
                          const char *what)
{
    if (j->refusal != SB_OK)
        return sb_rpc_fail(ctx, j->refusal, "%s", j->why);
    if (st == SB_OK)
        return SB_OK;
    sb_error("%s: database: %s", what, err->buf);
    if (st == SB_UNAVAILABLE || st == SB_DEADLINE_EXCEEDED || st == SB_ABORTED)
        return sb_rpc_fail(ctx, st, "%s: the performance store is unavailable; try again", what);
    return sb_rpc_fail(ctx, SB_INTERNAL, "%s failed", what);
}

static sb_status_t exec_ok(sb_pg_conn_t *c, const sb_pg_stmt_t *s, int n, const char *const *params,
                           sb_buf_t *err)
{
    PGresult *r = sb_pg_exec(c, s, n, params);
    sb_status_t st = sb_pg_check(c, r, err);
    PQclear(r);
    return st;
}

static bool is_role(const sb_rpc_ctx_t *ctx, const char *role)
{
    return ctx->user_role && !strcmp(ctx->user_role, role);
}

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

/* PENDING_APPROVAL and REJECTED performances are the planner's and the
 * admins' business only. */
static bool visible(const sb_rpc_ctx_t *ctx, const perf_row_t *row)
{
    return !strcmp(row->status, "APPROVED") || !strcmp(row->status, "CANCELLED") ||
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

static sb_status_t need_signed_in(sb_rpc_ctx_t *ctx)
{
    if (!ctx->user_id || !*ctx->user_id)
        return sb_rpc_fail(ctx, SB_UNAUTHENTICATED, "sign in first");
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

/* The request's grades of performance id, in the order given. */
static sb_status_t insert_grades(sb_pg_conn_t *c, const char *id, const perf_in_t *in, sb_buf_t *err)
{
    sb_status_t st = SB_OK;
    for (size_t i = 0; st == SB_OK && i < in->n_gr; i++) {
        char price[24], seats[16], pos[24];
        snprintf(price, sizeof price, "%lld", (long long)in->gr[i].price);
        snprintf(seats, sizeof seats, "%d", in->gr[i].seats);
        snprintf(pos, sizeof pos, "%zu", i);
        const char *gp[] = {id, in->gr[i].grade, price, seats, pos};
        st = exec_ok(c, &insert_grade, 5, gp, err);
    }
    return st;
}

/* ------------------------------------------------------- CreatePerformance */

struct create_job {
    job_t j;
    const char *planner;
    const perf_in_t *in;
    perf_row_t result;
};

static sb_status_t create_tx(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    struct create_job *job = arg;
    const perf_in_t *in = job->in;
    job_reset(&job->j);
    char id[SB_UUID_LEN + 1], minutes[16];
    sb_uuid_v4(id);
    snprintf(minutes, sizeof minutes, "%d", in->running_minutes);
    const char *p[] = {id, job->planner, in->title, in->description, in->venue, in->category, minutes};
    sb_status_t st = exec_ok(c, &insert_perf, 7, p, err);
    for (size_t i = 0; st == SB_OK && i < in->n_sch; i++) {
        char sid[SB_UUID_LEN + 1], at[32];
        sb_uuid_v4(sid);
        sb_time_rfc3339(in->sch[i].at_ms, at);
        const char *sp[] = {sid, id, at, in->sch[i].venue};
        st = exec_ok(c, &insert_schedule, 4, sp, err);
    }
    if (st == SB_OK)
        st = insert_grades(c, id, in, err);
    bool found;
    if (st == SB_OK)
        st = perf_load(c, job->j.a, id, false, &job->result, &found, err);
    return st;
}

sb_status_t perf_create(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Performance__CreatePerformanceRequest *req = in;
    sb_status_t st = need_signed_in(ctx);
    if (st != SB_OK)
        return st;
    if (!is_role(ctx, "PLANNER"))
        return sb_rpc_fail(ctx, SB_PERMISSION_DENIED, "only a planner may register performances");

    sb_buf_t err = SB_BUF_INIT;
    perf_in_t pin;
    if ((st = perf_check_create(ctx->arena, req, sb_now_ms(), &pin, &err)) != SB_OK) {
        st = sb_rpc_fail(ctx, st, "%s", err.buf);
        goto out;
    }
    struct create_job job = {.j = {.a = ctx->arena}, .planner = caller_id(ctx), .in = &pin};
    st = sb_pg_tx(sb_service_of(ctx)->pg, SB_PG_READ_COMMITTED, create_tx, &job, &err);
    if ((st = finish(ctx, st, &job.j, &err, "registration")) == SB_OK) {
        present(ctx, &job.result, out);
        sb_info("performance %s registered by planner %s: %zu schedules, %zu grades",
                job.result.pb->performance_id, job.planner, pin.n_sch, pin.n_gr);
    }
out:
    sb_buf_release(&err);
    return st;
}

/* ---------------------------------------------------------- GetPerformance */

struct get_job {
    job_t j;
    const char *id;
    perf_row_t result;
    bool found;
};

static sb_status_t get_tx(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    struct get_job *job = arg;
    job_reset(&job->j);
    return perf_load(c, job->j.a, job->id, false, &job->result, &job->found, err);
}

sb_status_t perf_get(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Performance__GetPerformanceRequest *req = in;
    char *id;
    sb_status_t st = need_performance_id(ctx, req->performance_id, &id);
    if (st != SB_OK)
        return st;
    sb_buf_t err = SB_BUF_INIT;
    struct get_job job = {.j = {.a = ctx->arena}, .id = id};
    st = sb_pg_tx(sb_service_of(ctx)->pg, SB_PG_REPEATABLE_READ, get_tx, &job, &err);
    if ((st = finish(ctx, st, &job.j, &err, "performance read")) == SB_OK) {
        if (!job.found || !visible(ctx, &job.result))
            st = sb_rpc_fail(ctx, SB_NOT_FOUND, "performance not found");
        else
            present(ctx, &job.result, out);
    }
    sb_buf_release(&err);
    return st;
}

/* -------------------------------------------------------- ListPerformances */

struct list_job {
    job_t j;
    const perf_query_t *q;
    perf_row_t *rows;
    size_t n;
    bool more;
};

static sb_status_t list_tx(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    struct list_job *job = arg;
    job_reset(&job->j);
    return perf_list(c, job->j.a, job->q, &job->rows, &job->n, &job->more, err);
}

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
    if (req->status != SB__PERFORMANCE__PERFORMANCE_STATUS__PERFORMANCE_STATUS_UNSPECIFIED &&
        !*(q.status = perf_status_name(req->status)))
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
    q.limit = req->page_size == 0 ? PERF_PAGE_DEFAULT
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

    sb_buf_t err = SB_BUF_INIT;
    struct list_job job = {.j = {.a = ctx->arena}, .q = &q};
    st = sb_pg_tx(sb_service_of(ctx)->pg, SB_PG_REPEATABLE_READ, list_tx, &job, &err);
    if ((st = finish(ctx, st, &job.j, &err, "performance listing")) == SB_OK) {
        resp->n_performances = job.n;
        resp->performances = sb_arena_alloc(ctx->arena, (job.n ? job.n : 1) * sizeof *resp->performances);
        for (size_t i = 0; i < job.n; i++) {
            Sb__Performance__Performance *p = sb_arena_alloc(ctx->arena, sizeof *p);
            present(ctx, &job.rows[i], p);
            resp->performances[i] = p;
        }
        if (job.more && job.n > 0) {
            const perf_row_t *last = &job.rows[job.n - 1];
            resp->next_page_token = perf_page_token(ctx->arena, last->created_us, last->pb->performance_id);
        }
    }
    sb_buf_release(&err);
    return st;
}

/* ------------------------------------------------------- UpdatePerformance */

struct update_job {
    job_t j;
    const char *id;
    const char *caller; /* canonical user id of the caller */
    const perf_in_t *in;
    int64_t now_ms;
    /* The reservation service's answer, valid while the revision is sales_rev. */
    bool have_sales;
    int64_t sales_rev;
    perf_sales_t sales;
    /* Set when the transaction needs (a fresh) answer first. */
    bool need_sales;
    perf_row_t result;
    bool event; /* performance.changed written */
};

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

static const Sb__Performance__SeatGrade *find_grade(const Sb__Performance__Performance *p, const char *name)
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
static sb_status_t plan_schedules(struct update_job *job, const perf_row_t *cur, sched_final_t **out,
                                  size_t *n, sb_buf_t *msg)
{
    const perf_in_t *in = job->in;
    if (!in->has_schedules) {
        *n = cur->n_sch;
        *out = sb_arena_alloc(job->j.a, (*n ? *n : 1) * sizeof **out);
        for (size_t i = 0; i < *n; i++)
            (*out)[i] = (sched_final_t){cur->sch[i].id, cur->sch[i].at_ms, cur->sch[i].venue, &cur->sch[i]};
        return SB_OK;
    }
    *n = in->n_sch;
    sched_final_t *f = sb_arena_alloc(job->j.a, *n * sizeof *f);
    int64_t *times = sb_arena_alloc(job->j.a, *n * sizeof *times);
    for (size_t i = 0; i < *n; i++) {
        const sched_in_t *s = &in->sch[i];
        if (!s->id) {
            f[i] = (sched_final_t){NULL, s->at_ms, s->venue, NULL};
        } else {
            const sched_row_t *old = find_sched(cur, s->id);
            if (!old)
                return refuse(&job->j, SB_INVALID_ARGUMENT,
                              "schedules[%zu].scheduleId: no such schedule in this performance", i);
            f[i] = (sched_final_t){old->id, s->has_time ? s->at_ms : old->at_ms,
                                   s->venue ? s->venue : old->venue, old};
            bool moved = f[i].at_ms != old->at_ms, rehoused = !str_eq(f[i].venue, old->venue);
            if ((moved || rehoused) && old->at_ms <= job->now_ms)
                return refuse(&job->j, SB_FAILED_PRECONDITION,
                              "schedules[%zu]: the schedule has already started and cannot change", i);
            if (moved && f[i].at_ms <= job->now_ms)
                return refuse(&job->j, SB_INVALID_ARGUMENT,
                              "schedules[%zu].startsAt: must be in the future", i);
        }
        times[i] = f[i].at_ms;
    }
    if (perf_check_distinct_times(times, *n, msg) != SB_OK)
        return refuse(&job->j, SB_INVALID_ARGUMENT, "%s", msg->buf);
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

static sb_status_t update_tx(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    struct update_job *job = arg;
    const perf_in_t *in = job->in;
    sb_arena_t *a = job->j.a;
    job_reset(&job->j);
    job->need_sales = false;
    job->event = false;

    perf_row_t cur;
    bool found;
    sb_status_t st = perf_load(c, a, job->id, true, &cur, &found, err);
    if (st != SB_OK)
        return st;
    const Sb__Performance__Performance *old = cur.pb;
    if (!found)
        return refuse(&job->j, SB_NOT_FOUND, "performance not found");
    if (strcmp(old->planner_id, job->caller) != 0)
        return refuse(&job->j, SB_PERMISSION_DENIED,
                      "only the planner who registered this performance may edit it");
    if (!strcmp(cur.status, "CANCELLED"))
        return refuse(&job->j, SB_FAILED_PRECONDITION,
                      "the performance is CANCELLED and can no longer be edited");
    bool approved = !strcmp(cur.status, "APPROVED");
    const char *venue = in->venue ? in->venue : old->venue;

    sb_buf_t summary = SB_BUF_INIT, msg = SB_BUF_INIT;
#define NOTE(...)                           \
    do {                                    \
        if (summary.len)                    \
            sb_buf_adds(&summary, "; ");    \
        sb_buf_addf(&summary, __VA_ARGS__); \
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
    if ((st = plan_schedules(job, &cur, &f, &nf, &msg)) != SB_OK)
        goto out;
    size_t removed = 0;
    for (size_t i = 0; i < cur.n_sch; i++) {
        if (in_final(f, nf, cur.sch[i].id))
            continue;
        if (approved) {
            st = refuse(&job->j, SB_FAILED_PRECONDITION,
                        "schedules: schedule %s cannot be removed from an approved performance;"
                        " cancel the performance instead",
                        cur.sch[i].id);
            goto out;
        }
        removed++;
    }
    if (removed)
        NOTE("%zu schedule%s removed", removed, removed == 1 ? "" : "s");
    char **changed_ids = sb_arena_alloc(a, (nf ? nf : 1) * sizeof *changed_ids);
    size_t n_changed = 0;
    for (size_t i = 0; i < nf; i++) {
        if (!f[i].old) {
            NOTE("schedule added at %s", ms_str(a, f[i].at_ms));
            continue;
        }
        bool moved = f[i].at_ms != f[i].old->at_ms;
        const char *v_old = effective(f[i].old->venue, old->venue), *v_new = effective(f[i].venue, venue);
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
            if (!job->have_sales || job->sales_rev != cur.revision) {
                job->need_sales = true;
                job->sales_rev = cur.revision;
                st = REFUSED;
                goto out;
            }
            for (size_t i = 0; i < old->n_grades; i++) {
                const Sb__Performance__SeatGrade *g = old->grades[i];
                const grade_in_t *ng = find_grade_in(in, g->grade);
                if (ng && ng->price == g->price && ng->seats == g->seat_count)
                    continue;
                int64_t taken = perf_sales_taken(&job->sales, g->grade);
                if (taken > 0) {
                    st = refuse(&job->j, SB_FAILED_PRECONDITION,
                                "grades: %lld seat%s of grade %s %s held or sold; its price and seat"
                                " count cannot change and it cannot be removed",
                                (long long)taken, taken == 1 ? "" : "s", g->grade, taken == 1 ? "is" : "are");
                    goto out;
                }
            }
        }
    }

    bool rejected = !strcmp(cur.status, "REJECTED");
    if (!summary.len && !rejected) { /* nothing differs: nothing to write */
        job->result = cur;
        st = SB_OK;
        goto out;
    }
    bool bump = approved && summary.len;
    char minutes[16], version[24];
    snprintf(minutes, sizeof minutes, "%d", in->running_minutes);
    snprintf(version, sizeof version, "%lld", (long long)(cur.version + (bump ? 1 : 0)));
    const char *up[] = {job->id, in->title, in->description, in->venue, in->category,
                        in->running_minutes ? minutes : NULL,
                        rejected ? "PENDING_APPROVAL" : cur.status, version};
    if ((st = exec_ok(c, &update_perf, 8, up, err)) != SB_OK)
        goto out;
    for (size_t i = 0; i < cur.n_sch; i++) {
        if (in_final(f, nf, cur.sch[i].id))
            continue;
        const char *dp[] = {cur.sch[i].id};
        if ((st = exec_ok(c, &delete_schedule, 1, dp, err)) != SB_OK)
            goto out;
    }
    for (size_t i = 0; i < nf; i++) {
        char at[32];
        sb_time_rfc3339(f[i].at_ms, at);
        if (f[i].old) {
            if (f[i].at_ms == f[i].old->at_ms && str_eq(f[i].venue, f[i].old->venue))
                continue;
            const char *sp[] = {f[i].id, at, f[i].venue};
            st = exec_ok(c, &update_schedule, 3, sp, err);
        } else {
            char sid[SB_UUID_LEN + 1];
            sb_uuid_v4(sid);
            const char *sp[] = {sid, job->id, at, f[i].venue};
            st = exec_ok(c, &insert_schedule, 4, sp, err);
        }
        if (st != SB_OK)
            goto out;
    }
    if (in->has_grades) {
        const char *dp[] = {job->id};
        if ((st = exec_ok(c, &delete_grades, 1, dp, err)) != SB_OK)
            goto out;
        if ((st = insert_grades(c, job->id, in, err)) != SB_OK)
            goto out;
    }
    if ((st = perf_load(c, a, job->id, false, &job->result, &found, err)) != SB_OK)
        goto out;

    if (bump) {
        cap_utf8(&summary, SUMMARY_MAX);
        Sb__Events__PerformanceChanged ev = SB__EVENTS__PERFORMANCE_CHANGED__INIT;
        ev.performance = perf_snapshot(a, &job->result);
        ev.changed_schedule_ids = changed_ids;
        ev.n_changed_schedule_ids = n_changed;
        ev.summary = summary.buf;
        st = sb_outbox_add(c, "performance.changed", job->id, &ev.base, NULL, err);
        job->event = st == SB_OK;
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
    if (st != SB_OK || (st = need_signed_in(ctx)) != SB_OK)
        return st;
    if (!is_role(ctx, "PLANNER"))
        return sb_rpc_fail(ctx, SB_PERMISSION_DENIED,
                           "only the planner who registered this performance may edit it");

    sb_buf_t err = SB_BUF_INIT;
    perf_in_t pin;
    if ((st = perf_check_update(ctx->arena, req, sb_now_ms(), &pin, &err)) != SB_OK) {
        st = sb_rpc_fail(ctx, st, "%s", err.buf);
        goto out;
    }
    struct update_job job = {.j = {.a = ctx->arena}, .id = id, .in = &pin, .now_ms = sb_now_ms()};
    job.caller = caller_id(ctx);
    for (int round = 0;; round++) {
        sb_buf_reset(&err);
        st = sb_pg_tx(sb_service_of(ctx)->pg, SB_PG_READ_COMMITTED, update_tx, &job, &err);
        if (!job.need_sales)
            break;
        if (round == SALES_ROUNDS) {
            st = sb_rpc_fail(ctx, SB_ABORTED, "the performance kept changing meanwhile; try again");
            goto out;
        }
        sb_buf_t msg = SB_BUF_INIT;
        if (perf_sales_fetch(ctx, id, &job.sales, &msg) != SB_OK) {
            st = sb_rpc_fail(ctx, SB_UNAVAILABLE, "%s", msg.buf);
            sb_buf_release(&msg);
            goto out;
        }
        sb_buf_release(&msg);
        job.have_sales = true;
    }
    if ((st = finish(ctx, st, &job.j, &err, "performance edit")) == SB_OK) {
        present(ctx, &job.result, out);
        sb_info("performance %s edited by %s%s", id, ctx->user_id,
                job.event ? ": performance.changed written" : "");
    }
out:
    sb_buf_release(&err);
    return st;
}

/* ------------------------------------------ Approve / Reject / Cancel */

enum transition { APPROVE, REJECT, CANCEL };

struct transition_job {
    job_t j;
    enum transition op;
    const char *id;
    const char *reason;
    sb_rpc_ctx_t *ctx; /* identity only: read, never failed through */
    int64_t now_ms;
    char from[24]; /* the status before */
    perf_row_t result;
    const char *event; /* the event type written, or NULL */
};

static sb_status_t transition_tx(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    struct transition_job *job = arg;
    sb_arena_t *a = job->j.a;
    job_reset(&job->j);
    job->event = NULL;

    perf_row_t cur;
    bool found;
    sb_status_t st = perf_load(c, a, job->id, true, &cur, &found, err);
    if (st != SB_OK)
        return st;
    if (!found)
        return refuse(&job->j, SB_NOT_FOUND, "performance not found");
    snprintf(job->from, sizeof job->from, "%s", cur.status);
    bool approved = !strcmp(cur.status, "APPROVED");
    const char *by = caller_id(job->ctx); /* need_signed_in made sure it is a UUID */

    switch (job->op) {
    case APPROVE:
    case REJECT: {
        const char *verb = job->op == APPROVE ? "approved" : "rejected";
        if (strcmp(cur.status, "PENDING_APPROVAL") != 0)
            return refuse(&job->j, SB_FAILED_PRECONDITION,
                          "the performance is %s; only a PENDING_APPROVAL performance can be %s",
                          cur.status, verb);
        if (job->op == REJECT) {
            const char *p[] = {job->id, job->reason};
            st = exec_ok(c, &reject_perf, 2, p, err);
            break;
        }
        bool ahead = false;
        for (size_t i = 0; i < cur.n_sch && !ahead; i++)
            ahead = cur.sch[i].at_ms > job->now_ms;
        if (!ahead)
            return refuse(&job->j, SB_FAILED_PRECONDITION,
                          "no schedule of the performance starts in the future; it cannot be approved");
        const char *p[] = {job->id};
        st = exec_ok(c, &approve_perf, 1, p, err);
        break;
    }
    case CANCEL: {
        if (!sb_rpc_is_admin(job->ctx) && !owns(job->ctx, &cur))
            return refuse(&job->j, SB_PERMISSION_DENIED,
                          "only the planner who registered this performance or an admin may cancel it");
        if (!strcmp(cur.status, "CANCELLED"))
            return refuse(&job->j, SB_FAILED_PRECONDITION, "the performance is already CANCELLED");
        const char *p[] = {job->id, job->reason, by, approved ? "1" : "0"};
        st = exec_ok(c, &cancel_perf, 4, p, err);
        break;
    }
    }
    if (st == SB_OK)
        st = perf_load(c, a, job->id, false, &job->result, &found, err);
    if (st != SB_OK)
        return st;

    if (job->op == APPROVE) {
        Sb__Events__PerformanceApproved ev = SB__EVENTS__PERFORMANCE_APPROVED__INIT;
        ev.performance = perf_snapshot(a, &job->result);
        job->event = "performance.approved";
        st = sb_outbox_add(c, job->event, job->id, &ev.base, NULL, err);
    } else if (job->op == CANCEL && approved) {
        Sb__Events__PerformanceCancelled ev = SB__EVENTS__PERFORMANCE_CANCELLED__INIT;
        ev.performance_id = job->result.pb->performance_id;
        ev.planner_id = job->result.pb->planner_id;
        ev.version = job->result.version;
        ev.reason = job->result.pb->cancel_reason;
        ev.cancelled_by = (char *)by;
        job->event = "performance.cancelled";
        st = sb_outbox_add(c, job->event, job->id, &ev.base, NULL, err);
    }
    return st;
}

static sb_status_t transition(sb_rpc_ctx_t *ctx, enum transition op, const char *raw_id,
                              const char *reason, void *out)
{
    static const char *const what[] = {"approval", "rejection", "cancellation"};
    char *id;
    sb_status_t st = need_performance_id(ctx, raw_id, &id);
    if (st != SB_OK)
        return st;
    sb_buf_t err = SB_BUF_INIT;
    struct transition_job job = {.j = {.a = ctx->arena}, .op = op, .id = id, .reason = reason,
                                 .ctx = ctx, .now_ms = sb_now_ms()};
    st = sb_pg_tx(sb_service_of(ctx)->pg, SB_PG_READ_COMMITTED, transition_tx, &job, &err);
    if ((st = finish(ctx, st, &job.j, &err, what[op])) == SB_OK) {
        present(ctx, &job.result, out);
        sb_info("performance %s: %s -> %s by %s%s%s", id, job.from, job.result.status, ctx->user_id,
                job.event ? ", event " : "", job.event ? job.event : "");
    }
    sb_buf_release(&err);
    return st;
}

sb_status_t perf_approve(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Performance__ApprovePerformanceRequest *req = in;
    sb_status_t st = need_signed_in(ctx);
    if (st != SB_OK)
        return st;
    if (!sb_rpc_is_admin(ctx))
        return sb_rpc_fail(ctx, SB_PERMISSION_DENIED, "only an admin may approve performances");
    return transition(ctx, APPROVE, req->performance_id, NULL, out);
}

sb_status_t perf_reject(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Performance__RejectPerformanceRequest *req = in;
    sb_status_t st = need_signed_in(ctx);
    if (st != SB_OK)
        return st;
    if (!sb_rpc_is_admin(ctx))
        return sb_rpc_fail(ctx, SB_PERMISSION_DENIED, "only an admin may reject performances");
    const char *problem = perf_reason_problem(req->reason, true);
    if (problem)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "reason: %s", problem);
    return transition(ctx, REJECT, req->performance_id, req->reason, out);
}

sb_status_t perf_cancel(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Performance__CancelPerformanceRequest *req = in;
    sb_status_t st = need_signed_in(ctx);
    if (st != SB_OK)
        return st;
    if (!sb_rpc_is_admin(ctx) && !is_role(ctx, "PLANNER"))
        return sb_rpc_fail(ctx, SB_PERMISSION_DENIED,
                           "only the planner who registered this performance or an admin may cancel it");
    const char *problem = perf_reason_problem(req->reason, false);
    if (problem)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "reason: %s", problem);
    return transition(ctx, CANCEL, req->performance_id, req->reason ? req->reason : "", out);
}

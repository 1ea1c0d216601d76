/* Inventory RPCs (proto/reservation.proto): what can be booked, and how it
 * sells. Read-only over the tables inventory_events.c keeps.
 *
 *   GetSeatMap                  public: one schedule's seats, grade by grade
 *                               (price descending), row, number
 *   ListBookable                public: ON_SALE performances with a future
 *                               schedule, keyset-paged over performance_id,
 *                               each with its future schedules and per-grade
 *                               total/free/held/sold
 *   GetPerformanceReservations  owning planner or admin: every schedule's
 *                               per-grade counts, and a page of the
 *                               performance's reservations (booking.c)
 *
 * A hold past its deadline counts as free (resv_seat_status, the booking
 * migration) before the expiry job has ended it.
 *
 * A schedule whose seats the seat-fill job has not created yet
 * (seats_pending, inventory_events.c) has no seat map and is not bookable;
 * the planner's counts show what exists so far.
 *
 * Counts are one GROUP BY per schedule over seats, answered from the index
 * on (schedule_id, grade, status). The two RPCs of two queries read one
 * snapshot (REPEATABLE READ rows, main.c). Response strings point into the
 * query results, which the call's arena frees after the response is sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reservation.h"
#include "sb/db.h"
#include "sb/pb.h"
#include "sb/service.h"
#include "sb/util.h"

#define PAGE_DEFAULT 20
#define PAGE_MAX 100
#define CATEGORY_MAX_BYTES 100
#define NIL_UUID "00000000-0000-0000-0000-000000000000"

static const sb_pg_stmt_t stmt_seat_map = {
    "inv_seat_map",
    "SELECT sc.performance_id::text, " SB_DB_TS(
        "sc.starts_at") " AS starts_at,"
                        " s.seat_id, s.grade, s.row_label AS row, s.seat_number AS "
                        "number, s.price, resv_seat_status(s.status, s.held_until) AS status"
                        " FROM inv_schedules sc"
                        " JOIN inv_performances p ON p.performance_id = "
                        "sc.performance_id AND p.status = 'ON_SALE'"
                        " LEFT JOIN seats s ON s.schedule_id = sc.schedule_id"
                        " LEFT JOIN inv_grades g ON g.performance_id = "
                        "sc.performance_id AND g.grade = s.grade"
                        " WHERE sc.schedule_id = $1::uuid AND NOT sc.removed AND NOT sc.seats_pending"
                        " ORDER BY g.price DESC NULLS LAST, g.position, s.grade COLLATE "
                        "\"C\", s.seat_index"};

/* ListBookable's page: $1 the last id of the previous page (NIL_UUID for the
 * first), $2 now, $3 the page size + 1 (to see whether more follow), $4 the
 * category. */
#define BOOKABLE_PAGE(category_cond)                                                                    \
    "SELECT p.performance_id::text, p.title, p.venue, p.category, p.running_minutes"                    \
    " FROM inv_performances p"                                                                          \
    " WHERE p.status = 'ON_SALE' AND p.performance_id > $1::uuid" category_cond                         \
    " AND EXISTS (SELECT 1 FROM inv_schedules sc WHERE sc.performance_id = p.performance_id"            \
    "   AND NOT sc.removed AND NOT sc.seats_pending AND sc.starts_at > $2::timestamptz)"                \
    " ORDER BY p.performance_id LIMIT $3::int"

static const sb_pg_stmt_t stmt_bookable_page = {"inv_bookable_page", BOOKABLE_PAGE("")};
static const sb_pg_stmt_t stmt_bookable_page_category = {"inv_bookable_page_category",
                                                         BOOKABLE_PAGE(" AND p.category = $4")};

/* Schedules with per-grade counts, one row per (schedule, grade); a schedule
 * without grades has one row with a NULL grade. The grades are those of the
 * latest snapshot (a grade without seats shows total 0) plus any grade that
 * still has held or sold seats after the snapshot dropped it. Columns:
 * performance_id, schedule_id, starts_at, venue, grade, price, total, free,
 * held, sold. */
#define SCHEDULE_GRADES(where)                                                                          \
    "SELECT sc.performance_id::text, sc.schedule_id::text, " SB_DB_TS(                                  \
        "sc.starts_at") " AS starts_at,"                                                                \
                        " sc.venue,"                                                                    \
                        " x.grade, x.price, x.total, x.free, x.held, x.sold"                            \
                        " FROM inv_schedules sc"                                                        \
                        " LEFT JOIN LATERAL ("                                                          \
                        "   SELECT COALESCE(g.grade, c.grade) AS grade, COALESCE(g.price, c.price) AS " \
                        "price,"                                                                        \
                        "   COALESCE(c.total, 0) AS total, COALESCE(c.free, 0) AS free,"                \
                        "   COALESCE(c.held, 0) AS held, COALESCE(c.sold, 0) AS sold,"                  \
                        "   g.price AS order_price, g.position AS order_position"                       \
                        "   FROM (SELECT grade, price, position FROM inv_grades"                        \
                        "         WHERE performance_id = sc.performance_id) g"                          \
                        "   FULL JOIN (SELECT grade, max(price) AS price, count(*) AS total,"           \
                        "         count(*) FILTER (WHERE resv_seat_status(status, held_until)"          \
                        "           = 'AVAILABLE') AS free,"                                            \
                        "         count(*) FILTER (WHERE resv_seat_status(status, held_until)"          \
                        "           = 'HELD') AS held,"                                                 \
                        "         count(*) FILTER (WHERE status = 'SOLD') AS sold"                      \
                        "         FROM seats WHERE schedule_id = sc.schedule_id GROUP BY grade) c"      \
                        "   ON c.grade = g.grade) x ON true"                                            \
                        " WHERE " where " ORDER BY sc.performance_id, sc.starts_at, sc.schedule_id,"    \
                        " x.order_price DESC NULLS LAST, x.order_position, x.grade COLLATE \"C\""

/* $1 the page's performance ids, $2 now. */
static const sb_pg_stmt_t stmt_bookable_schedules = {
    "inv_bookable_schedules",
    SCHEDULE_GRADES("sc.performance_id = ANY($1::uuid[]) AND NOT sc.removed AND NOT sc.seats_pending"
                    " AND sc.starts_at > $2::timestamptz")};

/* Every schedule, past and removed ones included: the planner's view. */
static const sb_pg_stmt_t stmt_performance_schedules = {"inv_performance_schedules",
                                                        SCHEDULE_GRADES("sc.performance_id = $1::uuid")};

static const sb_pg_stmt_t stmt_performance_owner = {
    "inv_performance_owner", "SELECT COALESCE(planner_id::text, ''), status FROM inv_performances"
                             " WHERE performance_id = $1::uuid"};

/* SCHEDULE_GRADES columns */
enum { C_PERF, C_SCHEDULE, C_STARTS, C_VENUE, C_GRADE, C_PRICE, C_TOTAL, C_FREE, C_HELD, C_SOLD };

/* ------------------------------------------------------------------ helpers */

/* The end of the rows [from, to) of a SCHEDULE_GRADES result that belong to
 * the schedule of row `from`. */
static int schedule_end(const PGresult *r, int from, int to)
{
    int i = from + 1;
    while (i < to && !strcmp(PQgetvalue(r, i, C_SCHEDULE), PQgetvalue(r, from, C_SCHEDULE)))
        i++;
    return i;
}

static size_t count_schedules(const PGresult *r, int from, int to)
{
    size_t n = 0;
    for (int i = from; i < to; i = schedule_end(r, i, to))
        n++;
    return n;
}

/* The rows stmt gives for the UUID in s, the request's field `field`, with
 * *id set to s normalised (ctx->arena): the refusal INVALID_ARGUMENT when s
 * is not a UUID, NOT_FOUND ("<what> not found") when there are none. */
static sb_status_t rows_for(sb_rpc_ctx_t *ctx, const sb_pg_stmt_t *stmt, const char *s,
                            const char *field, const char *what, char **id, PGresult **r)
{
    if (!(*id = sb_uuid_norm(ctx->arena, s)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "%s must be a UUID", field);
    sb_status_t st = sb_db_exec(ctx->db, stmt, r, *id);
    if (st == SB_OK && PQntuples(*r) == 0)
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "%s not found", what);
    return st;
}

/* The grades of one schedule: rows [from, to) of a SCHEDULE_GRADES result. */
static void *grades(sb_arena_t *a, const PGresult *r, int from, int to, size_t *n)
{
    *n = 0;
    if (PQgetisnull(r, from, C_GRADE))
        return NULL; /* a schedule without grades: its one row has no grade */
    *n = (size_t)(to - from);
    return sb_db_rows_to_pb(a, r, from, to, &sb__reservation__grade_availability__descriptor);
}

/* The schedules in rows [from, to) of a SCHEDULE_GRADES result, as messages
 * of type d (BookableSchedule, ScheduleSales): the columns d has, and the
 * grades. */
static void *schedules(sb_arena_t *a, const PGresult *r, int from, int to,
                       const ProtobufCMessageDescriptor *d, size_t *n)
{
    *n = count_schedules(r, from, to);
    ProtobufCMessage **out = SB_ARENA_NEW(a, ProtobufCMessage *, *n);
    size_t k = 0;
    for (int i = from, end; i < to; i = end) {
        end = schedule_end(r, i, to);
        size_t n_grades;
        void *g = grades(a, r, i, end, &n_grades);
        out[k] = sb_pb_new(a, d);
        sb_db_row_to_pb(r, i, out[k]);
        sb_pb_set_repeated(out[k++], "grades", g, n_grades);
    }
    return out;
}

/* -------------------------------------------------------------- GetSeatMap */

sb_status_t resv_get_seat_map(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Reservation__GetSeatMapRequest *req = in;
    Sb__Reservation__SeatMap *resp = out;
    PGresult *r;
    sb_status_t st = rows_for(ctx, &stmt_seat_map, req->schedule_id, "scheduleId", "schedule",
                              &resp->schedule_id, &r);
    if (st != SB_OK)
        return st;
    sb_db_row_to_pb(r, 0, &resp->base); /* performance_id, starts_at */
    if (PQgetisnull(r, 0, PQfnumber(r, "seat_id")))
        return SB_OK; /* a schedule without seats */
    resp->n_seats = (size_t)PQntuples(r);
    resp->seats = sb_db_rows_to_pb(ctx->arena, r, 0, PQntuples(r), &sb__reservation__seat__descriptor);
    return SB_OK;
}

/* ------------------------------------------------------------ ListBookable */

/* Fills perf's schedules from its rows of a SCHEDULE_GRADES result,
 * starting at *row (the rows come in the page's order). */
static void fill_bookable(sb_arena_t *a, const PGresult *r, int *row,
                          Sb__Reservation__BookablePerformance *perf)
{
    int from = *row, n = PQntuples(r);
    int to = from;
    while (to < n && !strcmp(PQgetvalue(r, to, C_PERF), perf->performance_id))
        to++;
    *row = to;
    perf->schedules =
        schedules(a, r, from, to, &sb__reservation__bookable_schedule__descriptor, &perf->n_schedules);
}

sb_status_t resv_list_bookable(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Reservation__ListBookableRequest *req = in;
    Sb__Reservation__ListBookableResponse *resp = out;
    const char *category = req->category ? req->category : "";
    const char *token = req->page_token ? req->page_token : "";
    if (req->page_size < 0)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "pageSize must not be negative");
    int size = req->page_size == 0         ? PAGE_DEFAULT
               : req->page_size > PAGE_MAX ? PAGE_MAX
                                           : req->page_size;
    if (*category && !resv_is_text(category, CATEGORY_MAX_BYTES))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "category must be text of at most %d bytes",
                           CATEGORY_MAX_BYTES);
    /* The token is the last performance id of the previous page. */
    const char *after = *token ? sb_uuid_norm(ctx->arena, token) : NIL_UUID;
    if (!after)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "pageToken is not one this service issued");

    char now[32], limit[16];
    sb_time_rfc3339(sb_now_ms(), now); /* one instant for both queries */
    snprintf(limit, sizeof limit, "%d", size + 1);
    PGresult *page, *sched;
    sb_status_t st =
        *category ? sb_db_exec(ctx->db, &stmt_bookable_page_category, &page, after, now, limit, category)
                  : sb_db_exec(ctx->db, &stmt_bookable_page, &page, after, now, limit);
    if (st != SB_OK)
        return st;
    int n = PQntuples(page);
    bool more = n > size;
    if (more)
        n = size;
    if (n == 0)
        return SB_OK;

    const char **id_list = SB_ARENA_NEW(ctx->arena, const char *, n);
    for (int i = 0; i < n; i++)
        id_list[i] = PQgetvalue(page, i, 0);
    sb_buf_t ids = SB_BUF_INIT;
    resv_pg_array(&ids, id_list, (size_t)n);
    st = sb_db_exec(ctx->db, &stmt_bookable_schedules, &sched, ids.buf, now);
    sb_buf_release(&ids);
    if (st != SB_OK)
        return st;

    Sb__Reservation__BookablePerformance **perfs =
        sb_db_rows_to_pb(ctx->arena, page, 0, n, &sb__reservation__bookable_performance__descriptor);
    resp->performances = perfs;
    int row = 0;
    for (int i = 0; i < n; i++) {
        fill_bookable(ctx->arena, sched, &row, perfs[i]);
        if (perfs[i]->n_schedules) /* always, in one snapshot; a guard all the same */
            perfs[resp->n_performances++] = perfs[i];
    }
    if (more)
        resp->next_page_token = (char *)id_list[n - 1];
    return SB_OK;
}

/* ---------------------------------------------- GetPerformanceReservations */

sb_status_t resv_get_performance_reservations(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Reservation__GetPerformanceReservationsRequest *req = in;
    Sb__Reservation__PerformanceReservations *resp = out;
    PGresult *owner, *r;
    sb_status_t st = rows_for(ctx, &stmt_performance_owner, req->performance_id, "performanceId",
                              "performance", &resp->performance_id, &owner);
    if (st != SB_OK)
        return st;
    /* the policy admitted planners, admins and the performance service; a
     * planner sees only their own performance */
    if (!sb_rpc_is_service(ctx, "performance") && !sb_rpc_is_admin(ctx) &&
        !sb_rpc_is_self(ctx, PQgetvalue(owner, 0, 0)))
        return sb_rpc_fail(ctx, SB_PERMISSION_DENIED,
                           "only the performance's planner or an admin may see its reservations");
    if ((st = sb_db_exec(ctx->db, &stmt_performance_schedules, &r, resp->performance_id)) != SB_OK)
        return st;
    resp->schedules = schedules(ctx->arena, r, 0, PQntuples(r),
                                &sb__reservation__schedule_sales__descriptor, &resp->n_schedules);
    resv_filter_t f = {.performance = resp->performance_id};
    return resv_list_page(ctx, &f, req->page_size, req->page_token, &resp->reservations,
                          &resp->n_reservations, &resp->next_page_token);
}

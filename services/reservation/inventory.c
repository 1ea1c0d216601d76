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
 *                               per-grade counts (reservations: booking issue)
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
#include "sb/enum.h"
#include "sb/service.h"
#include "sb/util.h"

#define PAGE_DEFAULT 20
#define PAGE_MAX 100
#define CATEGORY_MAX_BYTES 100
#define NIL_UUID "00000000-0000-0000-0000-000000000000"

static const sb_pg_stmt_t stmt_seat_map = {
    "inv_seat_map",
    "SELECT sc.performance_id::text, " RESV_TS("sc.starts_at") ","
    " s.seat_id, s.grade, s.row_label, s.seat_number, s.price, s.status"
    " FROM inv_schedules sc"
    " JOIN inv_performances p ON p.performance_id = sc.performance_id AND p.status = 'ON_SALE'"
    " LEFT JOIN seats s ON s.schedule_id = sc.schedule_id"
    " LEFT JOIN inv_grades g ON g.performance_id = sc.performance_id AND g.grade = s.grade"
    " WHERE sc.schedule_id = $1::uuid AND NOT sc.removed"
    " ORDER BY g.price DESC NULLS LAST, g.position, s.grade COLLATE \"C\", s.seat_index"};

/* ListBookable's page: $1 the last id of the previous page (NIL_UUID for the
 * first), $2 now, $3 the page size + 1 (to see whether more follow), $4 the
 * category. */
#define BOOKABLE_PAGE(category_cond) \
    "SELECT p.performance_id::text, p.title, p.venue, p.category, p.running_minutes" \
    " FROM inv_performances p" \
    " WHERE p.status = 'ON_SALE' AND p.performance_id > $1::uuid" category_cond \
    " AND EXISTS (SELECT 1 FROM inv_schedules sc WHERE sc.performance_id = p.performance_id" \
    "   AND NOT sc.removed AND sc.starts_at > $2::timestamptz)" \
    " ORDER BY p.performance_id LIMIT $3::int"

static const sb_pg_stmt_t stmt_bookable_page = {"inv_bookable_page", BOOKABLE_PAGE("")};
static const sb_pg_stmt_t stmt_bookable_page_category = {
    "inv_bookable_page_category", BOOKABLE_PAGE(" AND p.category = $4")};

/* Schedules with per-grade counts, one row per (schedule, grade); a schedule
 * without grades has one row with a NULL grade. The grades are those of the
 * latest snapshot (a grade without seats shows total 0) plus any grade that
 * still has held or sold seats after the snapshot dropped it. Columns:
 * performance_id, schedule_id, starts_at, venue, grade, price, total, free,
 * held, sold. */
#define SCHEDULE_GRADES(where) \
    "SELECT sc.performance_id::text, sc.schedule_id::text, " RESV_TS("sc.starts_at") ", sc.venue," \
    " x.grade, x.price, x.total, x.free, x.held, x.sold" \
    " FROM inv_schedules sc" \
    " LEFT JOIN LATERAL (" \
    "   SELECT COALESCE(g.grade, c.grade) AS grade, COALESCE(g.price, c.price) AS price," \
    "   COALESCE(c.total, 0) AS total, COALESCE(c.free, 0) AS free," \
    "   COALESCE(c.held, 0) AS held, COALESCE(c.sold, 0) AS sold," \
    "   g.price AS order_price, g.position AS order_position" \
    "   FROM (SELECT grade, price, position FROM inv_grades" \
    "         WHERE performance_id = sc.performance_id) g" \
    "   FULL JOIN (SELECT grade, max(price) AS price, count(*) AS total," \
    "         count(*) FILTER (WHERE status = 'AVAILABLE') AS free," \
    "         count(*) FILTER (WHERE status = 'HELD') AS held," \
    "         count(*) FILTER (WHERE status = 'SOLD') AS sold" \
    "         FROM seats WHERE schedule_id = sc.schedule_id GROUP BY grade) c" \
    "   ON c.grade = g.grade) x ON true" \
    " WHERE " where \
    " ORDER BY sc.performance_id, sc.starts_at, sc.schedule_id," \
    " x.order_price DESC NULLS LAST, x.order_position, x.grade COLLATE \"C\""

/* $1 the page's performance ids, $2 now. */
static const sb_pg_stmt_t stmt_bookable_schedules = {
    "inv_bookable_schedules",
    SCHEDULE_GRADES("sc.performance_id = ANY($1::uuid[]) AND NOT sc.removed"
                    " AND sc.starts_at > $2::timestamptz")};

/* Every schedule, past and removed ones included: the planner's view. */
static const sb_pg_stmt_t stmt_performance_schedules = {
    "inv_performance_schedules", SCHEDULE_GRADES("sc.performance_id = $1::uuid")};

static const sb_pg_stmt_t stmt_performance_owner = {
    "inv_performance_owner",
    "SELECT COALESCE(planner_id::text, ''), status FROM inv_performances"
    " WHERE performance_id = $1::uuid"};

/* SCHEDULE_GRADES columns */
enum { C_PERF, C_SCHEDULE, C_STARTS, C_VENUE, C_GRADE, C_PRICE, C_TOTAL, C_FREE, C_HELD, C_SOLD };

/* ------------------------------------------------------------------ helpers */

/* A value of r, borrowed for the call (NULL for SQL NULL). */
static char *val(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static int32_t int_val(const PGresult *r, int row, int col)
{
    return (int32_t)strtol(PQgetvalue(r, row, col), NULL, 10);
}

static int64_t int64_val(const PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static Sb__Reservation__SeatStatus seat_status(const char *s)
{
    return sb_enum_value(&sb__reservation__seat_status__descriptor, s,
                         SB__RESERVATION__SEAT_STATUS__SEAT_STATUS_UNSPECIFIED);
}

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

/* The grades of one schedule: rows [from, to) of a SCHEDULE_GRADES result. */
static Sb__Reservation__GradeAvailability **fill_grades(sb_arena_t *a, const PGresult *r, int from,
                                                        int to, size_t *n)
{
    *n = 0;
    if (PQgetisnull(r, from, C_GRADE))
        return NULL; /* a schedule without grades: its one row has no grade */
    Sb__Reservation__GradeAvailability **out = SB_ARENA_NEW(a, Sb__Reservation__GradeAvailability *, to - from);
    Sb__Reservation__GradeAvailability *g = SB_ARENA_NEW(a, Sb__Reservation__GradeAvailability, to - from);
    for (int i = from; i < to; i++, g++) {
        sb__reservation__grade_availability__init(g);
        g->grade = val(r, i, C_GRADE);
        g->price = int64_val(r, i, C_PRICE);
        g->total = int_val(r, i, C_TOTAL);
        g->free = int_val(r, i, C_FREE);
        g->held = int_val(r, i, C_HELD);
        g->sold = int_val(r, i, C_SOLD);
        out[(*n)++] = g;
    }
    return out;
}

/* -------------------------------------------------------------- GetSeatMap */

sb_status_t resv_get_seat_map(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Reservation__GetSeatMapRequest *req = in;
    Sb__Reservation__SeatMap *resp = out;
    char *id = sb_uuid_norm(ctx->arena, req->schedule_id);
    if (!id)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "scheduleId must be a UUID");

    PGresult *r;
    sb_status_t st = sb_db_exec(ctx->db, &stmt_seat_map, &r, id);
    if (st != SB_OK)
        return st;
    int n = PQntuples(r);
    if (n == 0)
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "schedule not found");
    resp->schedule_id = id;
    resp->performance_id = val(r, 0, 0);
    resp->starts_at = val(r, 0, 1);
    if (PQgetisnull(r, 0, 2))
        return SB_OK; /* a schedule without seats */
    resp->seats = SB_ARENA_NEW(ctx->arena, Sb__Reservation__Seat *, n);
    Sb__Reservation__Seat *seats = SB_ARENA_NEW(ctx->arena, Sb__Reservation__Seat, n);
    for (int i = 0; i < n; i++) {
        Sb__Reservation__Seat *seat = &seats[i];
        sb__reservation__seat__init(seat);
        seat->seat_id = val(r, i, 2);
        seat->grade = val(r, i, 3);
        seat->row = val(r, i, 4);
        seat->number = int_val(r, i, 5);
        seat->price = int64_val(r, i, 6);
        seat->status = seat_status(PQgetvalue(r, i, 7));
        resp->seats[i] = seat;
    }
    resp->n_seats = (size_t)n;
    return SB_OK;
}

/* ------------------------------------------------------------ ListBookable */

/* Fills page[i]'s schedules from its rows of a SCHEDULE_GRADES result,
 * starting at *row (the rows come in the page's order). */
static void fill_bookable(sb_arena_t *a, const PGresult *r, int *row,
                          Sb__Reservation__BookablePerformance *perf)
{
    int from = *row, n = PQntuples(r);
    int to = from;
    while (to < n && !strcmp(PQgetvalue(r, to, C_PERF), perf->performance_id))
        to++;
    *row = to;
    perf->n_schedules = count_schedules(r, from, to);
    if (!perf->n_schedules)
        return;
    perf->schedules = SB_ARENA_NEW(a, Sb__Reservation__BookableSchedule *, perf->n_schedules);
    Sb__Reservation__BookableSchedule *s = SB_ARENA_NEW(a, Sb__Reservation__BookableSchedule, perf->n_schedules);
    size_t k = 0;
    for (int i = from; i < to; s++) {
        int end = schedule_end(r, i, to);
        sb__reservation__bookable_schedule__init(s);
        s->schedule_id = val(r, i, C_SCHEDULE);
        s->starts_at = val(r, i, C_STARTS);
        s->venue = val(r, i, C_VENUE);
        s->grades = fill_grades(a, r, i, end, &s->n_grades);
        perf->schedules[k++] = s;
        i = end;
    }
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
    sb_status_t st = *category ? sb_db_exec(ctx->db, &stmt_bookable_page_category, &page, after, now, limit, category)
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

    resp->performances = SB_ARENA_NEW(ctx->arena, Sb__Reservation__BookablePerformance *, n);
    Sb__Reservation__BookablePerformance *perfs = SB_ARENA_NEW(ctx->arena, Sb__Reservation__BookablePerformance, n);
    int row = 0;
    for (int i = 0; i < n; i++) {
        Sb__Reservation__BookablePerformance *p = &perfs[i];
        sb__reservation__bookable_performance__init(p);
        p->performance_id = PQgetvalue(page, i, 0);
        p->title = val(page, i, 1);
        p->venue = val(page, i, 2);
        p->category = val(page, i, 3);
        p->running_minutes = int_val(page, i, 4);
        fill_bookable(ctx->arena, sched, &row, p);
        if (p->n_schedules) /* always, in one snapshot; a guard all the same */
            resp->performances[resp->n_performances++] = p;
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
    char *id = sb_uuid_norm(ctx->arena, req->performance_id);
    if (!id)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "performanceId must be a UUID");

    PGresult *owner, *r;
    sb_status_t st = sb_db_exec(ctx->db, &stmt_performance_owner, &owner, id);
    if (st != SB_OK)
        return st;
    if (PQntuples(owner) == 0)
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "performance not found");
    /* the policy admitted planners, admins and the performance service; a
     * planner sees only their own performance */
    if (!sb_rpc_is_service(ctx, "performance") && !sb_rpc_is_admin(ctx) &&
        !sb_rpc_is_self(ctx, PQgetvalue(owner, 0, 0)))
        return sb_rpc_fail(ctx, SB_PERMISSION_DENIED,
                           "only the performance's planner or an admin may see its reservations");
    if ((st = sb_db_exec(ctx->db, &stmt_performance_schedules, &r, id)) != SB_OK)
        return st;
    resp->performance_id = id;
    int n = PQntuples(r);
    resp->n_schedules = count_schedules(r, 0, n);
    resp->schedules = SB_ARENA_NEW(ctx->arena, Sb__Reservation__ScheduleSales *, resp->n_schedules);
    Sb__Reservation__ScheduleSales *s = SB_ARENA_NEW(ctx->arena, Sb__Reservation__ScheduleSales, resp->n_schedules);
    size_t k = 0;
    for (int i = 0; i < n; s++) {
        int end = schedule_end(r, i, n);
        sb__reservation__schedule_sales__init(s);
        s->schedule_id = val(r, i, C_SCHEDULE);
        s->starts_at = val(r, i, C_STARTS);
        s->grades = fill_grades(ctx->arena, r, i, end, &s->n_grades);
        resp->schedules[k++] = s;
        i = end;
    }
    return SB_OK;
}

/* sb.performance events -> the inventory (migrations/0001_inventory.sql).
 *
 * Runs inside the inbox transaction (sb/events.h): a redelivered event id
 * never reaches us, and a failure here rolls everything back and the event
 * comes again. On top of that every step is idempotent and ordered by the
 * snapshot version, because the same state can arrive under several event
 * ids (a replayed outbox, DeliverEvent) and events of one performance can be
 * handled out of order (DeliverEvent racing the consumer, a replay after a
 * newer event):
 *
 *   performance.approved / performance.changed  (PerformanceSnapshot)
 *       applied only when its version is above the stored one (or there is
 *       no row yet) and the performance is not cancelled; then the
 *       performance, its schedules and grades are upserted and its seats
 *       brought in line with the grades (added, trimmed, re-priced), never
 *       touching a held or sold seat.
 *   performance.cancelled
 *       applied when its version is at least the stored one; with no row yet
 *       a tombstone is written so a late approval is ignored. Terminal. Its
 *       live reservations are cancelled (saga.c: resv_cancel_performance).
 *
 * Events of one performance are serialised by a transaction-scoped advisory
 * lock on its id, so two instances (or DeliverEvent and the consumer) never
 * interleave their steps. The runtime hands each handler its decoded payload
 * (one that cannot be decoded never gets here: it is a dead letter, see
 * sb/events.h). A snapshot or cancellation that breaks the rules below is
 * logged as an error and dropped (SB_OK, recorded in the inbox): retrying
 * cannot fix it and it must not block the partition. Query results belong to
 * the event's arena. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "reservation.h"
#include "sb/config.h"
#include "sb/jobs.h"
#include "sb/locks.h"
#include "sb/log.h"
#include "sb/service.h"
#include "sb/util.h"

/* Limits on a snapshot; the performance service's own rules are tighter. */
#define MAX_SCHEDULES 500
#define MAX_GRADES 50
#define MAX_GRADE_SEATS 50000     /* seats of one grade in one schedule */
#define MAX_SCHEDULE_SEATS 100000 /* all grades of one schedule */
#define MAX_TOTAL_SEATS 2000000   /* the whole performance */
#define MAX_GRADE_BYTES 32
#define MAX_TEXT_BYTES 1000
#define MAX_CATEGORY_BYTES 100

static const sb_pg_stmt_t stmt_lock = {
    "inv_event_lock", "SELECT pg_advisory_xact_lock(" SB_LOCK_INV_PERFORMANCE("$1::text") ")"};

static const sb_pg_stmt_t stmt_select_perf = {
    "inv_event_select_perf",
    "SELECT version, status FROM inv_performances WHERE performance_id = $1::uuid FOR UPDATE"};

/* The guard repeats the version rule the caller has checked. */
static const sb_pg_stmt_t stmt_upsert_perf = {
    "inv_event_upsert_perf",
    "INSERT INTO inv_performances (performance_id, planner_id, title, venue, category,"
    " running_minutes, version, status)"
    " VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6::int, $7::bigint, 'ON_SALE')"
    " ON CONFLICT (performance_id) DO UPDATE SET planner_id = EXCLUDED.planner_id,"
    " title = EXCLUDED.title, venue = EXCLUDED.venue, category = EXCLUDED.category,"
    " running_minutes = EXCLUDED.running_minutes, version = EXCLUDED.version, updated_at = now()"
    " WHERE inv_performances.status = 'ON_SALE' AND inv_performances.version < EXCLUDED.version"};

/* A schedule id that belongs to another performance is left alone (and
 * counted out of the result). Bringing a schedule back un-removes it. */
static const sb_pg_stmt_t stmt_upsert_schedules = {
    "inv_event_upsert_schedules",
    "INSERT INTO inv_schedules (schedule_id, performance_id, starts_at, venue)"
    " SELECT t.id, $1::uuid, t.starts_at, t.venue"
    " FROM unnest($2::uuid[], $3::timestamptz[], $4::text[]) AS t(id, starts_at, venue)"
    " ON CONFLICT (schedule_id) DO UPDATE SET starts_at = EXCLUDED.starts_at,"
    " venue = EXCLUDED.venue, removed = false, updated_at = now()"
    " WHERE inv_schedules.performance_id = EXCLUDED.performance_id"};

/* Schedules the snapshot no longer has (again, for ones kept earlier). */
static const sb_pg_stmt_t stmt_remove_schedules = {
    "inv_event_remove_schedules", "UPDATE inv_schedules SET removed = true, updated_at = now()"
                                  " WHERE performance_id = $1::uuid AND schedule_id <> ALL($2::uuid[])"
                                  " RETURNING schedule_id::text"};

static const sb_pg_stmt_t stmt_schedule_taken = {
    "inv_event_schedule_taken",
    "SELECT count(*) FROM seats WHERE schedule_id = $1::uuid AND status <> 'AVAILABLE'"};

/* Clears a removed schedule none of whose seats is taken: its seats, then
 * the schedule itself unless a seat was taken meanwhile. */
static const sb_pg_stmt_t stmt_schedule_clear = {
    "inv_event_schedule_clear",
    "DELETE FROM seats WHERE schedule_id = $1::uuid AND status = 'AVAILABLE'"};
static const sb_pg_stmt_t stmt_schedule_delete = {
    "inv_event_schedule_delete", "DELETE FROM inv_schedules WHERE schedule_id = $1::uuid"
                                 " AND NOT EXISTS (SELECT 1 FROM seats WHERE schedule_id = $1::uuid)"};

static const sb_pg_stmt_t stmt_upsert_grades = {
    "inv_event_upsert_grades",
    "INSERT INTO inv_grades (performance_id, grade, price, seat_count, position)"
    " SELECT $1::uuid, t.grade, t.price, t.seat_count, t.position::int"
    " FROM unnest($2::text[], $3::bigint[], $4::int[]) WITH ORDINALITY"
    "   AS t(grade, price, seat_count, position)"
    " ON CONFLICT (performance_id, grade) DO UPDATE SET price = EXCLUDED.price,"
    " seat_count = EXCLUDED.seat_count, position = EXCLUDED.position"};

static const sb_pg_stmt_t stmt_drop_grades = {
    "inv_event_drop_grades",
    "DELETE FROM inv_grades WHERE performance_id = $1::uuid AND grade <> ALL($2::text[])"
    " RETURNING grade"};

/* After grades were dropped: the available seats of grades the performance
 * no longer has, on its current schedules; then what had to be kept. */
static const sb_pg_stmt_t stmt_trim_dropped_grades = {
    "inv_event_trim_dropped_grades",
    "DELETE FROM seats s USING inv_schedules sc"
    " WHERE sc.performance_id = $1::uuid AND NOT sc.removed AND s.schedule_id = sc.schedule_id"
    " AND s.status = 'AVAILABLE' AND NOT EXISTS (SELECT 1 FROM inv_grades g"
    "   WHERE g.performance_id = $1::uuid AND g.grade = s.grade)"};
static const sb_pg_stmt_t stmt_kept_dropped_grades = {
    "inv_event_kept_dropped_grades",
    "SELECT s.schedule_id::text, s.grade, count(*) FROM seats s"
    " JOIN inv_schedules sc ON sc.schedule_id = s.schedule_id"
    " WHERE sc.performance_id = $1::uuid AND NOT sc.removed AND NOT EXISTS (SELECT 1"
    "   FROM inv_grades g WHERE g.performance_id = $1::uuid AND g.grade = s.grade)"
    " GROUP BY 1, 2 ORDER BY 1, 2"};

/* Available seats beyond their grade's count, on the current schedules: one
 * index range (schedule, grade, AVAILABLE, seat_index >= count) per pair.
 * Runs on every snapshot, so a seat kept earlier for a hold that has since
 * been released goes with the next one. */
static const sb_pg_stmt_t stmt_trim_seats = {
    "inv_event_trim_seats",
    "DELETE FROM seats s USING inv_schedules sc, inv_grades g"
    " WHERE sc.performance_id = $1::uuid AND NOT sc.removed AND g.performance_id = $1::uuid"
    " AND s.schedule_id = sc.schedule_id AND s.grade = g.grade AND s.status = 'AVAILABLE'"
    " AND s.seat_index >= g.seat_count"};

/* What trimming had to keep: held or sold seats beyond the count. */
static const sb_pg_stmt_t stmt_kept_seats = {
    "inv_event_kept_seats",
    "SELECT sc.schedule_id::text, g.grade, count(*) FROM inv_schedules sc"
    " JOIN inv_grades g ON g.performance_id = sc.performance_id"
    " JOIN seats s ON s.schedule_id = sc.schedule_id AND s.grade = g.grade"
    "   AND s.seat_index >= g.seat_count"
    " WHERE sc.performance_id = $1::uuid AND NOT sc.removed GROUP BY 1, 2 ORDER BY 1, 2"};

static const sb_pg_stmt_t stmt_reprice_seats = {
    "inv_event_reprice_seats",
    "UPDATE seats s SET price = g.price, updated_at = now() FROM inv_schedules sc, inv_grades g"
    " WHERE sc.performance_id = $1::uuid AND NOT sc.removed AND s.schedule_id = sc.schedule_id"
    " AND g.performance_id = $1::uuid AND g.grade = s.grade AND s.status = 'AVAILABLE'"
    " AND s.price <> g.price"};

/* Every seat the grades call for on every current schedule, set-based (see
 * migrations/0002_bulk_seats.sql): the layout of one schedule (seat ids,
 * rows, numbers, prices) is computed once per grade (inv_row_label once per
 * row of 20, not per seat) and crossed with the schedules, so PostgreSQL
 * writes 2,000,000 seats without any per-seat function call, trigger or
 * conflict check. Two statements:
 *   add_seats   (schedule, grade) pairs without any seat yet, the whole of
 *               an approval: a plain INSERT (a duplicate cannot occur under
 *               the performance's lock; if one did, the unique key fails the
 *               transaction and the event is retried);
 *   fill_seats  pairs that have some seats but not all of their count (a
 *               grown grade, a grade brought back next to kept held seats):
 *               ON CONFLICT DO NOTHING, so existing seats stay as they are.
 * A replay adds nothing: every pair is then complete. $2: one schedule (the
 * seat-fill job), or NULL for all of the performance's.
 * 20 = RESV_SEATS_PER_ROW. */
#define SEAT_LAYOUT                                                                                     \
    "WITH g AS (SELECT grade, price, seat_count FROM inv_grades WHERE performance_id = $1::uuid),"      \
    " rl AS (SELECT g.grade, g.price, g.seat_count, r, inv_row_label(r) AS label"                       \
    "   FROM g, generate_series(0, (g.seat_count - 1) / 20) AS r),"                                     \
    " layout AS MATERIALIZED (SELECT rl.grade, rl.price, rl.r * 20 + n - 1 AS i, rl.label, n,"          \
    "   rl.grade || '-' || rl.label || '-' || n AS seat_id"                                             \
    "   FROM rl, generate_series(1, 20) AS n WHERE rl.r * 20 + n - 1 < rl.seat_count),"                 \
    " sc AS (SELECT schedule_id FROM inv_schedules WHERE performance_id = $1::uuid AND NOT removed"     \
    "   AND ($2::uuid IS NULL OR schedule_id = $2::uuid))"
#define SEAT_INSERT                                                                                     \
    " INSERT INTO seats (schedule_id, seat_id, grade, seat_index, row_label, seat_number, price)"       \
    " SELECT p.schedule_id, l.seat_id, l.grade, l.i, l.label, l.n, l.price FROM pairs p"                \
    " JOIN layout l ON l.grade = p.grade"

static const sb_pg_stmt_t stmt_add_seats = {
    "inv_event_add_seats",
    SEAT_LAYOUT ", pairs AS (SELECT sc.schedule_id, g.grade FROM sc, g WHERE g.seat_count > 0"
                " AND NOT EXISTS (SELECT 1 FROM seats s WHERE s.schedule_id = sc.schedule_id"
                "   AND s.grade = g.grade))" SEAT_INSERT};

static const sb_pg_stmt_t stmt_fill_seats = {
    "inv_event_fill_seats",
    SEAT_LAYOUT ", pairs AS (SELECT sc.schedule_id, g.grade FROM sc, g WHERE g.seat_count > 0"
                " AND EXISTS (SELECT 1 FROM seats s WHERE s.schedule_id = sc.schedule_id"
                "   AND s.grade = g.grade)"
                " AND (SELECT count(*) FROM seats s WHERE s.schedule_id = sc.schedule_id"
                "   AND s.grade = g.grade AND s.seat_index < g.seat_count) < g.seat_count)" SEAT_INSERT
                " ON CONFLICT (schedule_id, seat_id) DO NOTHING"};

/* A snapshot over INVENTORY_INLINE_SEATS: its current schedules wait for the
 * seat-fill job; pg_notify wakes the job at COMMIT. */
static const sb_pg_stmt_t stmt_mark_pending = {
    "inv_event_mark_pending",
    "WITH m AS (UPDATE inv_schedules SET seats_pending = true, updated_at = now()"
    " WHERE performance_id = $1::uuid AND NOT removed RETURNING 1)"
    " SELECT count(*), pg_notify('" RESV_SEAT_FILL_CHANNEL "', '') FROM m"};

/* The seat-fill job: the oldest schedule waiting, then (under the
 * performance's lock) whether it still is. */
static const sb_pg_stmt_t stmt_next_pending = {
    "inv_fill_next", "SELECT schedule_id::text, performance_id::text FROM inv_schedules"
                     " WHERE seats_pending AND NOT removed ORDER BY updated_at, schedule_id LIMIT 1"};
static const sb_pg_stmt_t stmt_still_pending = {
    "inv_fill_still_pending", "SELECT 1 FROM inv_schedules WHERE schedule_id = $1::uuid"
                              " AND seats_pending AND NOT removed FOR UPDATE"};
static const sb_pg_stmt_t stmt_filled = {
    "inv_fill_done", "UPDATE inv_schedules SET seats_pending = false WHERE schedule_id = $1::uuid"};

static const sb_pg_stmt_t stmt_cancel = {
    "inv_event_cancel",
    "INSERT INTO inv_performances (performance_id, planner_id, version, status)"
    " VALUES ($1::uuid, $2::uuid, $3::bigint, 'CANCELLED')"
    " ON CONFLICT (performance_id) DO UPDATE SET status = 'CANCELLED',"
    " version = GREATEST(inv_performances.version, EXCLUDED.version), updated_at = now()"
    " WHERE inv_performances.version <= EXCLUDED.version"};

_Static_assert(RESV_SEATS_PER_ROW == 20, "stmt_add_seats hard-codes rows of 20");

/* ------------------------------------------------------------------ helpers */

/* Dropped, never retried: the error log is the record (the envelope sits in
 * the inbox under its event id). */
static sb_status_t drop_event(const sb_event_ctx_t *ev, const char *why)
{
    sb_error("event %s %s dropped: %s", ev->env->type, ev->env->event_id, why);
    return SB_OK;
}

/* Takes the performance's event lock and reads its row. *exists tells
 * whether there is one; *version and *cancelled describe it. */
static sb_status_t lock_performance(sb_db_t *db, const char *id, bool *exists, int64_t *version,
                                    bool *cancelled)
{
    PGresult *r;
    sb_status_t st = sb_db_exec(db, &stmt_lock, NULL, id);
    if (st != SB_OK || (st = sb_db_exec(db, &stmt_select_perf, &r, id)) != SB_OK)
        return st;
    *exists = PQntuples(r) == 1;
    *version = *exists ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    *cancelled = *exists && !strcmp(PQgetvalue(r, 0, 1), "CANCELLED");
    return SB_OK;
}

/* -------------------------------------------------------------- snapshots */

/* What is wrong with a snapshot (a static phrase), or NULL. */
static const char *snapshot_problem(const Sb__Events__PerformanceSnapshot *s)
{
    if (!s)
        return "no performance snapshot";
    if (!sb_valid_uuid(s->performance_id))
        return "performanceId is not a UUID";
    if (!sb_valid_uuid(s->planner_id))
        return "plannerId is not a UUID";
    if (s->version < 0)
        return "negative version";
    if ((*s->title && !resv_is_text(s->title, MAX_TEXT_BYTES)) ||
        (*s->venue && !resv_is_text(s->venue, MAX_TEXT_BYTES)) ||
        (*s->category && !resv_is_text(s->category, MAX_CATEGORY_BYTES)))
        return "title, venue or category is not text of a sane length";
    if (s->running_minutes < 0)
        return "negative runningMinutes";
    if (s->n_schedules > MAX_SCHEDULES || s->n_grades > MAX_GRADES)
        return "too many schedules or grades";
    for (size_t i = 0; i < s->n_schedules; i++) {
        const Sb__Events__ScheduleSnapshot *sc = s->schedules[i];
        if (!sb_valid_uuid(sc->schedule_id))
            return "a scheduleId is not a UUID";
        if (!sb_parse_rfc3339(sc->starts_at, NULL))
            return "a schedule's startsAt is not an RFC 3339 time";
        if (*sc->venue && !resv_is_text(sc->venue, MAX_TEXT_BYTES))
            return "a schedule's venue is not text of a sane length";
        for (size_t j = 0; j < i; j++)
            if (!strcasecmp(sc->schedule_id, s->schedules[j]->schedule_id))
                return "a scheduleId appears twice";
    }
    int64_t per_schedule = 0;
    for (size_t i = 0; i < s->n_grades; i++) {
        const Sb__Events__GradeSnapshot *g = s->grades[i];
        if (!resv_is_text(g->grade, MAX_GRADE_BYTES))
            return "a grade name is empty, too long or not text";
        if (g->price < 0 || g->seat_count < 0 || g->seat_count > MAX_GRADE_SEATS)
            return "a grade's price or seatCount is out of range";
        for (size_t j = 0; j < i; j++)
            if (!strcmp(g->grade, s->grades[j]->grade))
                return "a grade appears twice";
        per_schedule += g->seat_count;
    }
    if (per_schedule > MAX_SCHEDULE_SEATS || per_schedule * (int64_t)s->n_schedules > MAX_TOTAL_SEATS)
        return "too many seats";
    return NULL;
}

/* The snapshot's lists as PostgreSQL array literals, in the event's arena. */
struct snapshot_arrays {
    const char *ids, *starts, *venues, *grades, *prices, *counts;
};

/* b's text copied into a; b released. */
static const char *arena_text(sb_arena_t *a, sb_buf_t *b)
{
    const char *s = sb_arena_strndup(a, b->buf, b->len);
    sb_buf_release(b);
    return s;
}

static void snapshot_arrays_build(struct snapshot_arrays *a, const Sb__Events__PerformanceSnapshot *s,
                                  sb_arena_t *arena)
{
    size_t ns = s->n_schedules, ng = s->n_grades;
    const char **ids = SB_ARENA_NEW(arena, const char *, ns + 1);
    const char **starts = SB_ARENA_NEW(arena, const char *, ns + 1);
    const char **venues = SB_ARENA_NEW(arena, const char *, ns + 1);
    const char **grades = SB_ARENA_NEW(arena, const char *, ng + 1);
    for (size_t i = 0; i < ns; i++) {
        ids[i] = sb_uuid_norm(arena, s->schedules[i]->schedule_id);
        starts[i] = s->schedules[i]->starts_at;
        venues[i] = *s->schedules[i]->venue ? s->schedules[i]->venue : s->venue;
    }
    for (size_t i = 0; i < ng; i++)
        grades[i] = s->grades[i]->grade;
    sb_buf_t b = SB_BUF_INIT;
    resv_pg_array(&b, ids, ns);
    a->ids = arena_text(arena, &b);
    resv_pg_array(&b, starts, ns);
    a->starts = arena_text(arena, &b);
    resv_pg_array(&b, venues, ns);
    a->venues = arena_text(arena, &b);
    resv_pg_array(&b, grades, ng);
    a->grades = arena_text(arena, &b);
    sb_buf_addch(&b, '{');
    for (size_t i = 0; i < ng; i++)
        sb_buf_addf(&b, "%s%" PRId64, i ? "," : "", s->grades[i]->price);
    sb_buf_addch(&b, '}');
    a->prices = arena_text(arena, &b);
    sb_buf_addch(&b, '{');
    for (size_t i = 0; i < ng; i++)
        sb_buf_addf(&b, "%s%d", i ? "," : "", (int)s->grades[i]->seat_count);
    sb_buf_addch(&b, '}');
    a->counts = arena_text(arena, &b);
}

/* Schedules the snapshot dropped: cleared and deleted when none of their
 * seats is held or sold; otherwise kept (removed, so not bookable) with a
 * warning, for the booking side to settle. */
static sb_status_t drop_schedules(sb_db_t *db, const char *perf, const char *ids)
{
    PGresult *gone, *r;
    sb_status_t st = sb_db_exec(db, &stmt_remove_schedules, &gone, perf, ids);
    for (int i = 0; st == SB_OK && i < PQntuples(gone); i++) {
        const char *sid = PQgetvalue(gone, i, 0);
        if ((st = sb_db_exec(db, &stmt_schedule_taken, &r, sid)) != SB_OK)
            break;
        long long taken = atoll(PQgetvalue(r, 0, 0));
        if (taken > 0) {
            sb_warn("performance %s: schedule %s is gone from the snapshot but %lld of its seats"
                    " are held or sold: kept, not bookable",
                    perf, sid, taken);
            continue;
        }
        if ((st = sb_db_exec(db, &stmt_schedule_clear, NULL, sid)) == SB_OK &&
            (st = sb_db_exec(db, &stmt_schedule_delete, NULL, sid)) == SB_OK)
            sb_info("performance %s: schedule %s removed with its seats", perf, sid);
    }
    return st;
}

/* Removes the available seats trim selects (counted into *trimmed), then
 * warns about each (schedule, grade, count) row of kept: the held or sold
 * seats trimming had to keep, and why. */
static sb_status_t trim_seats(sb_db_t *db, const char *perf, const sb_pg_stmt_t *trim,
                              const sb_pg_stmt_t *kept, const char *why, long *trimmed)
{
    PGresult *r;
    sb_status_t st = sb_db_exec(db, trim, &r, perf);
    if (st != SB_OK)
        return st;
    *trimmed += sb_db_affected(r);
    if ((st = sb_db_exec(db, kept, &r, perf)) != SB_OK)
        return st;
    for (int i = 0; i < PQntuples(r); i++)
        sb_warn("performance %s: schedule %s grade %s: %s held or sold seats kept %s", perf,
                PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), why);
    return SB_OK;
}

/* Grades the snapshot dropped: their rows, their available seats on the
 * current schedules; held or sold ones are kept with a warning. *trimmed
 * counts the seats removed. */
static sb_status_t drop_grades(sb_db_t *db, const char *perf, const char *grades, long *trimmed)
{
    PGresult *r;
    sb_status_t st = sb_db_exec(db, &stmt_drop_grades, &r, perf, grades);
    if (st != SB_OK || PQntuples(r) == 0)
        return st;
    return trim_seats(db, perf, &stmt_trim_dropped_grades, &stmt_kept_dropped_grades,
                      "although the grade is gone from the snapshot", trimmed);
}

/* Creates the missing seats of one schedule (NULL: every current schedule)
 * of perf; *added counts them. */
static sb_status_t add_seats(sb_db_t *db, const char *perf, const char *schedule, long *added)
{
    PGresult *r;
    sb_status_t st = sb_db_exec(db, &stmt_add_seats, &r, perf, schedule);
    if (st != SB_OK)
        return st;
    *added += sb_db_affected(r);
    if ((st = sb_db_exec(db, &stmt_fill_seats, &r, perf, schedule)) != SB_OK)
        return st;
    *added += sb_db_affected(r);
    return SB_OK;
}

/* Seats in line with the grades on every current schedule: trimmed and
 * re-priced here; created here too when the snapshot has at most
 * INVENTORY_INLINE_SEATS seats, otherwise by the seat-fill job, schedule by
 * schedule (*deferred counts the schedules left to it). */
static sb_status_t sync_seats(sb_db_t *db, const Sb__Events__PerformanceSnapshot *s, const char *perf,
                              long *added, long *trimmed, long *deferred)
{
    PGresult *r;
    sb_status_t st =
        trim_seats(db, perf, &stmt_trim_seats, &stmt_kept_seats, "beyond the new seat count", trimmed);
    if (st != SB_OK || (st = sb_db_exec(db, &stmt_reprice_seats, NULL, perf)) != SB_OK)
        return st;
    int64_t seats = 0;
    for (size_t i = 0; i < s->n_grades; i++)
        seats += s->grades[i]->seat_count;
    seats *= (int64_t)s->n_schedules;
    long inline_max = sb_cfg_int("INVENTORY_INLINE_SEATS", 100000, 0, MAX_TOTAL_SEATS);
    if (seats <= inline_max)
        return add_seats(db, perf, NULL, added);
    if ((st = sb_db_exec(db, &stmt_mark_pending, &r, perf)) != SB_OK)
        return st;
    *deferred = atol(PQgetvalue(r, 0, 0));
    return SB_OK;
}

/* performance.approved and performance.changed: the snapshot they carry. */
static sb_status_t apply_snapshot(sb_event_ctx_t *ev, const Sb__Events__PerformanceSnapshot *s)
{
    const char *problem = snapshot_problem(s);
    if (problem)
        return drop_event(ev, problem);

    sb_db_t *db = ev->db;
    char *perf = sb_uuid_norm(ev->arena, s->performance_id);
    char *planner = sb_uuid_norm(ev->arena, s->planner_id);
    bool exists, cancelled;
    int64_t stored;
    long added = 0, trimmed = 0, deferred = 0;
    sb_status_t st = lock_performance(db, perf, &exists, &stored, &cancelled);
    if (st != SB_OK)
        return st;
    if (exists && (cancelled || s->version <= stored)) {
        sb_log(cancelled && s->version > stored ? SB_LOG_WARN : SB_LOG_INFO,
               "performance %s: %s v%" PRId64 " ignored (have v%" PRId64 "%s)", perf, ev->env->type,
               s->version, stored, cancelled ? ", cancelled" : "");
        return SB_OK;
    }

    struct snapshot_arrays a;
    snapshot_arrays_build(&a, s, ev->arena);
    char *minutes = sb_arena_printf(ev->arena, "%d", (int)s->running_minutes);
    char *version = sb_arena_printf(ev->arena, "%" PRId64, s->version);
    PGresult *r;
    if ((st = sb_db_exec(db, &stmt_upsert_perf, NULL, perf, planner, s->title, s->venue, s->category,
                         minutes, version)) != SB_OK ||
        (st = sb_db_exec(db, &stmt_upsert_schedules, &r, perf, a.ids, a.starts, a.venues)) != SB_OK)
        return st;
    if (sb_db_affected(r) < (long)s->n_schedules)
        sb_warn("performance %s: %ld of its %zu schedule ids belong to another performance:"
                " ignored",
                perf, (long)s->n_schedules - sb_db_affected(r), s->n_schedules);
    if ((st = drop_schedules(db, perf, a.ids)) != SB_OK ||
        (st = sb_db_exec(db, &stmt_upsert_grades, NULL, perf, a.grades, a.prices, a.counts)) != SB_OK ||
        (st = drop_grades(db, perf, a.grades, &trimmed)) != SB_OK ||
        (st = sync_seats(db, s, perf, &added, &trimmed, &deferred)) != SB_OK)
        return st;
    sb_info("performance %s: %s v%" PRId64 " applied (%zu schedules, %zu grades, %ld seats added,"
            " %ld removed, %ld schedules' seats left to the seat-fill job)",
            perf, ev->env->type, s->version, s->n_schedules, s->n_grades, added, trimmed, deferred);
    return SB_OK;
}

sb_status_t resv_on_performance_approved(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__PerformanceApproved *m = payload;
    return apply_snapshot(ev, m->performance);
}

sb_status_t resv_on_performance_changed(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__PerformanceChanged *m = payload;
    return apply_snapshot(ev, m->performance);
}

/* ------------------------------------------------------------ seat fill */

/* One tick: the seats of the oldest schedule waiting for them, in the
 * tick's transaction, under the performance's event lock (so an event of the
 * performance and the fill never interleave); the mark is cleared in the
 * same transaction. again: more may be waiting. */
sb_status_t resv_seat_fill_tick(sb_job_ctx_t *job)
{
    PGresult *r;
    sb_status_t st = sb_db_exec(job->db, &stmt_next_pending, &r);
    if (st != SB_OK || PQntuples(r) == 0)
        return st;
    const char *sid = PQgetvalue(r, 0, 0), *perf = PQgetvalue(r, 0, 1);
    long added = 0;
    if ((st = sb_db_exec(job->db, &stmt_lock, NULL, perf)) != SB_OK ||
        (st = sb_db_exec(job->db, &stmt_still_pending, &r, sid)) != SB_OK)
        return st;
    job->again = true;
    if (PQntuples(r) == 0)
        return SB_OK; /* an event removed it meanwhile */
    int64_t t0 = sb_mono_ns();
    if ((st = add_seats(job->db, perf, sid, &added)) != SB_OK ||
        (st = sb_db_exec(job->db, &stmt_filled, NULL, sid)) != SB_OK)
        return st;
    sb_info("performance %s: schedule %s: %ld seats created by the seat-fill job in %.0f ms", perf, sid,
            added, (double)(sb_mono_ns() - t0) / 1e6);
    return SB_OK;
}

/* ------------------------------------------------------------ cancellation */

sb_status_t resv_on_performance_cancelled(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__PerformanceCancelled *m = payload;
    if (!sb_valid_uuid(m->performance_id) || m->version < 0 ||
        (*m->planner_id && !sb_valid_uuid(m->planner_id)))
        return drop_event(ev, "PerformanceCancelled needs a performanceId (and plannerId) UUID and"
                              " a version >= 0");
    char *perf = sb_uuid_norm(ev->arena, m->performance_id);
    char *planner = *m->planner_id ? sb_uuid_norm(ev->arena, m->planner_id) : NULL;
    char *version = sb_arena_printf(ev->arena, "%" PRId64, m->version);

    bool exists, cancelled;
    int64_t stored;
    sb_status_t st = lock_performance(ev->db, perf, &exists, &stored, &cancelled);
    if (st != SB_OK)
        return st;
    if (exists && m->version < stored) {
        sb_warn("performance %s: cancellation v%" PRId64 " ignored (have v%" PRId64 "%s)", perf,
                m->version, stored, cancelled ? ", already cancelled" : "");
        return SB_OK;
    }
    if ((st = sb_db_exec(ev->db, &stmt_cancel, NULL, perf, planner, version)) != SB_OK)
        return st;
    if (!exists)
        sb_info("performance %s: cancellation v%" PRId64 " arrived first: tombstone written", perf,
                m->version);
    else
        sb_info("performance %s: cancelled at v%" PRId64 "%s", perf, m->version,
                cancelled ? " (again)" : "");
    /* its reservations: cancelled, seats free; paid ones refunded by the
     * payment service on reservation.cancelled (saga.c) */
    return resv_cancel_performance(ev, perf, "performance cancelled");
}

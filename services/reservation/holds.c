/* Holds: CreateReservation and the hold-expiry job (SPEC §4: the same seat
 * is never held or sold twice).
 *
 * The database keeps the promise. A hold is one guarded UPDATE
 *     UPDATE seats SET status = 'HELD', reservation_id = $r, held_until = ...
 *     WHERE schedule_id = $s AND seat_id = ANY($ids)
 *       AND (status = 'AVAILABLE' OR (status = 'HELD' AND held_until <= now()))
 * whose row count must equal the seats asked for; anything less is a
 * refusal and the call's transaction (sb_service_call) rolls back, so
 * nothing is held. Two buyers of one seat meet on its row lock: the second
 * UPDATE waits, re-reads the committed row (READ COMMITTED re-checks the
 * WHERE on the new version) and finds it HELD. No process lock is involved,
 * so any number of replicas may serve holds.
 *
 * Best available (grade + quantity) reads the grade's free seats, lets
 * seat_pick.c choose, and takes the choice in one statement inside a
 * savepoint: lock the chosen rows FOR UPDATE SKIP LOCKED and update them only
 * when every one was locked and still free. A seat another buyer's
 * transaction is working on is skipped, not waited for (the flash-sale
 * profile: with a plain guarded UPDATE concurrent buyers all chose the same
 * front seats and queued on their row locks, ~40% of the backends' samples in
 * Lock:tuple / Lock:transactionid, only to lose them); the buyer rolls back
 * to the savepoint (releasing what it did lock), counts the skipped seats as
 * taken and chooses again from what it read, and reads again only after a
 * few such rounds. After PICK_ATTEMPTS reads it gets 409.
 *
 * Expiry is lazy and active, as Redis expires keys: every reader treats a
 * hold past held_until as free (resv_seat_status, resv_status in the
 * migration), and new holds take such seats; the hold-expiry job (one
 * replica at a time, sb/jobs.h) marks those reservations EXPIRED, frees
 * the seats still theirs and emits reservation.expired, a batch per tick
 * (FOR UPDATE SKIP LOCKED leaves a reservation a cancel is working on to
 * the cancel). After a downtime the first ticks catch up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reservation.h"
#include "sb/config.h"
#include "sb/locks.h"
#include "sb/log.h"
#include "sb/service.h"
#include "sb/util.h"
#include "seat_pick.h"

#define SEAT_ID_MAX_BYTES 64
#define GRADE_MAX_BYTES 32
#define ATTENDEE_NAME_MAX_BYTES 100
#define ATTENDEE_PHONE_MAX_BYTES 30
#define PICK_ATTEMPTS 5 /* reads of the grade's free seats */
#define PICK_ROUNDS 4   /* choices per read */

resv_config_t resv_config = {600, 8, 8, 1, 200, 200};

sb_status_t resv_booking_check(sb_buf_t *err)
{
    (void)err;
    resv_config.hold_ttl_s = (int)sb_cfg_int("HOLD_TTL_S", 600, 1, 86400);
    resv_config.max_seats = (int)sb_cfg_int("RESV_MAX_SEATS", 8, 1, 100);
    resv_config.max_user_seats = (int)sb_cfg_int("RESV_MAX_USER_SEATS", 8, 1, 1000);
    resv_config.max_pending = (int)sb_cfg_int("RESV_MAX_PENDING", 1, 1, 100);
    resv_config.expiry_batch = (int)sb_cfg_int("HOLD_EXPIRY_BATCH", 200, 1, 10000);
    resv_config.cancel_batch = (int)sb_cfg_int("RESV_CANCEL_BATCH", 200, 1, 10000);
    sb_info("booking: holds last %d s; at most %d seats per reservation, %d per user and schedule,"
            " %d pending reservation(s) per user and schedule",
            resv_config.hold_ttl_s, resv_config.max_seats, resv_config.max_user_seats,
            resv_config.max_pending);
    return SB_OK;
}

/* The schedule, its performance, whether it can be booked now. */
static const sb_pg_stmt_t stmt_schedule = {
    "resv_schedule",
    "SELECT sc.performance_id::text,"
    " (p.status = 'ON_SALE' AND NOT sc.removed AND NOT sc.seats_pending"
    " AND sc.starts_at > now()) AS bookable"
    " FROM inv_schedules sc JOIN inv_performances p ON p.performance_id = sc.performance_id"
    " WHERE sc.schedule_id = $1::uuid"};

static const sb_pg_stmt_t stmt_user_lock = {
    "resv_user_lock",
    "SELECT pg_advisory_xact_lock(" SB_LOCK_RESV_USER_SCHEDULE("$1::text", "$2::text") ")"};

/* The user's live reservations of a schedule, but $3: pending ones, and the
 * seats of pending and confirmed ones. */
static const sb_pg_stmt_t stmt_user_counts = {
    "resv_user_counts",
    "SELECT count(*) FILTER (WHERE resv_status(status, expires_at) = 'PENDING_PAYMENT'),"
    " COALESCE(sum(cardinality(seat_ids))"
    "   FILTER (WHERE resv_status(status, expires_at) IN ('PENDING_PAYMENT', 'CONFIRMED')), 0)"
    " FROM reservations WHERE user_id = $1::uuid AND schedule_id = $2::uuid"
    " AND status IN ('PENDING_PAYMENT', 'CONFIRMED') AND reservation_id <> $3::uuid"};

/* The guarded UPDATE: $4 NULL holds for HOLD_TTL_S ($5), else until $4. */
static const sb_pg_stmt_t stmt_take = {
    "resv_take", "UPDATE seats SET status = 'HELD', reservation_id = $3::uuid,"
                 " held_until = COALESCE($4::timestamptz, now() + $5::int * interval '1 second'),"
                 " updated_at = now()"
                 " WHERE schedule_id = $1::uuid AND seat_id = ANY($2::text[])"
                 " AND (status = 'AVAILABLE' OR (status = 'HELD' AND held_until <= now()))"
                 " RETURNING seat_id"};

static const sb_pg_stmt_t stmt_existing = {
    "resv_existing",
    "SELECT seat_id FROM seats WHERE schedule_id = $1::uuid AND seat_id = ANY($2::text[])"};

/* A grade's free seats (expired holds included) in (row, number) order:
 * seat_index = row * 20 + number - 1. A seat not listed counts as taken
 * (seat_pick.c treats a gap in the numbers as a taken seat). */
static const sb_pg_stmt_t stmt_grade_free = {
    "resv_grade_free", "SELECT seat_id, seat_index / 20 AS row, seat_number FROM seats"
                       " WHERE schedule_id = $1::uuid AND grade = $2 AND status IN ('AVAILABLE', 'HELD')"
                       " AND (status = 'AVAILABLE' OR held_until <= now()) ORDER BY seat_index"};

static const sb_pg_stmt_t stmt_grade_exists = {
    "resv_grade_exists", "SELECT 1 FROM seats WHERE schedule_id = $1::uuid AND grade = $2 LIMIT 1"};

/* Best available's take: locks the chosen seats ($2) that are free and that
 * no other transaction holds a lock on, and holds them only when all $6 were
 * locked. Returns the seats locked and whether they were taken. */
static const sb_pg_stmt_t stmt_take_skip = {
    "resv_take_skip",
    "WITH l AS (SELECT seat_id FROM seats WHERE schedule_id = $1::uuid AND seat_id = ANY($2::text[])"
    "   AND (status = 'AVAILABLE' OR (status = 'HELD' AND held_until <= now()))"
    "   FOR UPDATE SKIP LOCKED),"
    " u AS (UPDATE seats SET status = 'HELD', reservation_id = $3::uuid,"
    "   held_until = COALESCE($4::timestamptz, now() + $5::int * interval '1 second'),"
    "   updated_at = now() FROM l WHERE (SELECT count(*) FROM l) = $6::int"
    "   AND seats.schedule_id = $1::uuid AND seats.seat_id = l.seat_id RETURNING seats.seat_id)"
    " SELECT l.seat_id, u.seat_id IS NOT NULL FROM l LEFT JOIN u ON u.seat_id = l.seat_id"};

/* The reservation of the seats just taken, and its first log row. */
static const sb_pg_stmt_t stmt_insert = {
    "resv_insert",
    "WITH s AS (SELECT array_agg(seat_id ORDER BY grade COLLATE \"C\", seat_index) AS ids,"
    "   sum(price) AS amount, min(held_until) AS until"
    "   FROM seats WHERE schedule_id = $4::uuid AND reservation_id = $1::uuid),"
    " r AS (INSERT INTO reservations (reservation_id, user_id, performance_id, schedule_id, seat_ids,"
    "   amount, status, expires_at, attendee_name, attendee_phone)"
    "   SELECT $1::uuid, $2::uuid, $3::uuid, $4::uuid, s.ids, s.amount, 'PENDING_PAYMENT', s.until,"
    "   $5, $6 FROM s RETURNING *),"
    " l AS (INSERT INTO reservation_log (reservation_id, to_status, actor, reason)"
    "   SELECT reservation_id, 'PENDING_PAYMENT', $2::text, $7 FROM r)"
    " SELECT " RESV_COLS " FROM r"};

/* Pending reservations past their deadline, a batch ($1) at a time, ended:
 * EXPIRED, their seats (those still theirs) free, a log row each. */
static const sb_pg_stmt_t stmt_expire = {
    "resv_expire",
    "WITH t AS (UPDATE reservations SET status = 'EXPIRED', version = version + 1, updated_at = now()"
    "   WHERE reservation_id IN (SELECT reservation_id FROM reservations"
    "     WHERE status = 'PENDING_PAYMENT' AND expires_at <= now()"
    "     ORDER BY expires_at LIMIT $1::int FOR UPDATE SKIP LOCKED)"
    "   RETURNING *),"
    " s AS (UPDATE seats SET status = 'AVAILABLE', reservation_id = NULL, held_until = NULL,"
    "   updated_at = now() FROM t WHERE seats.schedule_id = t.schedule_id"
    "   AND seats.reservation_id = t.reservation_id AND seats.status = 'HELD'),"
    " l AS (INSERT INTO reservation_log (reservation_id, from_status, to_status, actor, reason)"
    "   SELECT reservation_id, 'PENDING_PAYMENT', 'EXPIRED', 'system', 'hold expired' FROM t)"
    " SELECT " RESV_COLS " FROM t"};

/* ------------------------------------------------------------ the checks */

sb_status_t resv_check_seat_ids(sb_rpc_ctx_t *ctx, char *const *ids, size_t n)
{
    if (n < 1 || n > (size_t)resv_config.max_seats)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "seatIds: between 1 and %d seats",
                           resv_config.max_seats);
    for (size_t i = 0; i < n; i++) {
        if (!resv_is_text(ids[i], SEAT_ID_MAX_BYTES))
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                               "seatIds[%zu]: a seat id is text of 1 to %d bytes", i, SEAT_ID_MAX_BYTES);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(ids[i], ids[j]))
                return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "seatIds: %s appears twice", ids[i]);
    }
    return SB_OK;
}

sb_status_t resv_check_user_limits(sb_rpc_ctx_t *ctx, const char *user, const char *schedule,
                                   const char *except, size_t adding, bool new_pending)
{
    PGresult *r;
    sb_status_t st = sb_db_exec(ctx->db, &stmt_user_lock, NULL, user, schedule);
    if (st != SB_OK ||
        (st = sb_db_exec(ctx->db, &stmt_user_counts, &r, user, schedule,
                         except ? except : "00000000-0000-0000-0000-000000000000")) != SB_OK)
        return st;
    long pending = atol(PQgetvalue(r, 0, 0)), seats = atol(PQgetvalue(r, 0, 1));
    if (new_pending && pending >= resv_config.max_pending)
        return sb_rpc_fail(ctx, SB_FAILED_PRECONDITION,
                           "at most %d reservation(s) awaiting payment per schedule: pay or cancel"
                           " the one you hold first",
                           resv_config.max_pending);
    if (seats + (long)adding > resv_config.max_user_seats)
        return sb_rpc_fail(ctx, SB_FAILED_PRECONDITION,
                           "at most %d seats per member and schedule: you hold or bought %ld",
                           resv_config.max_user_seats, seats);
    return SB_OK;
}

/* ---------------------------------------------------------- taking seats */

/* The ids of id_list (n) that are not among the rows of r (column 0), as
 * "a, b" in ctx->arena. */
static char *missing(sb_rpc_ctx_t *ctx, const char *const *id_list, size_t n, const PGresult *r)
{
    sb_buf_t b = SB_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (int k = 0; k < PQntuples(r) && !found; k++)
            found = !strcmp(PQgetvalue(r, k, 0), id_list[i]);
        if (!found)
            sb_buf_addf(&b, "%s%s", b.len ? ", " : "", id_list[i]);
    }
    char *s = sb_arena_strndup(ctx->arena, b.buf, b.len);
    sb_buf_release(&b);
    return s;
}

sb_status_t resv_take_seats(sb_rpc_ctx_t *ctx, const char *schedule, const char *reservation,
                            const char *ids, const char *const *id_list, size_t n, const char *until)
{
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%d", resv_config.hold_ttl_s);
    PGresult *taken, *existing;
    sb_status_t st = sb_db_exec(ctx->db, &stmt_take, &taken, schedule, ids, reservation, until, ttl);
    if (st != SB_OK)
        return st;
    if (PQntuples(taken) == (int)n)
        return SB_OK;
    /* not all of them: refused, and the caller's rollback undoes the rest */
    if ((st = sb_db_exec(ctx->db, &stmt_existing, &existing, schedule, ids)) != SB_OK)
        return st;
    if (PQntuples(existing) < (int)n)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "seatIds: the schedule has no seat %s",
                           missing(ctx, id_list, n, existing));
    return sb_rpc_fail(ctx, SB_ALREADY_EXISTS, "seats already held or sold: %s",
                       missing(ctx, id_list, n, taken));
}

/* Best available: chooses `want` seats of grade and takes them, choosing
 * again when a concurrent buyer has one of them (see the top of the file). */
static sb_status_t take_best(sb_rpc_ctx_t *ctx, const char *schedule, const char *reservation,
                             const char *grade, int want)
{
    size_t *pick = SB_ARENA_NEW(ctx->arena, size_t, (size_t)want);
    const char **ids = SB_ARENA_NEW(ctx->arena, const char *, (size_t)want);
    char ttl[16], want_s[16];
    snprintf(ttl, sizeof ttl, "%d", resv_config.hold_ttl_s);
    snprintf(want_s, sizeof want_s, "%d", want);
    for (int attempt = 0; attempt < PICK_ATTEMPTS; attempt++) {
        PGresult *r, *taken;
        sb_status_t st = sb_db_exec(ctx->db, &stmt_grade_free, &r, schedule, grade);
        if (st != SB_OK)
            return st;
        int n = PQntuples(r);
        if (n < want) {
            PGresult *g;
            if ((st = sb_db_exec(ctx->db, &stmt_grade_exists, &g, schedule, grade)) != SB_OK)
                return st;
            if (PQntuples(g) == 0)
                return sb_rpc_fail(ctx, SB_NOT_FOUND, "grade %s: the schedule has no such grade", grade);
        }
        resv_seat_slot_t *slots = SB_ARENA_NEW(ctx->arena, resv_seat_slot_t, n ? (size_t)n : 1);
        int free_count = n;
        for (int i = 0; i < n; i++) {
            slots[i].row = atoi(PQgetvalue(r, i, 1));
            slots[i].number = atoi(PQgetvalue(r, i, 2));
            slots[i].free = true;
        }
        for (int round = 0; round < PICK_ROUNDS; round++) {
            if (!resv_seat_pick(slots, (size_t)n, want, pick)) {
                if (round == 0) /* what was just read has too few */
                    return sb_rpc_fail(
                        ctx, SB_ALREADY_EXISTS,
                        "grade %s: %d seat(s) free, %d asked for: the others are held or sold", grade,
                        free_count, want);
                break; /* what this read showed is used up: read again */
            }
            for (int i = 0; i < want; i++)
                ids[i] = PQgetvalue(r, (int)pick[i], 0);
            sb_buf_t lit = SB_BUF_INIT;
            resv_pg_array(&lit, ids, (size_t)want);
            if ((st = sb_db_sql(ctx->db, "SAVEPOINT resv_pick", NULL)) == SB_OK)
                st = sb_db_exec(ctx->db, &stmt_take_skip, &taken, schedule, lit.buf, reservation, NULL,
                                ttl, want_s);
            sb_buf_release(&lit);
            if (st != SB_OK)
                return st;
            int locked = PQntuples(taken);
            if (locked == want && PQgetvalue(taken, 0, 1)[0] == 't')
                return sb_db_sql(ctx->db, "RELEASE SAVEPOINT resv_pick", NULL);
            if ((st = sb_db_sql(ctx->db, "ROLLBACK TO SAVEPOINT resv_pick", NULL)) != SB_OK)
                return st;
            /* the chosen seats this buyer could not lock are another's now (or
             * soon): count them as taken and choose again */
            for (int i = 0; i < want; i++) {
                bool got = false;
                for (int k = 0; k < locked && !got; k++)
                    got = !strcmp(PQgetvalue(taken, k, 0), ids[i]);
                if (!got && slots[pick[i]].free) {
                    slots[pick[i]].free = false;
                    free_count--;
                }
            }
            sb_debug("best available: %d of %d seats of grade %s busy; choosing again", want - locked,
                     want, grade);
        }
    }
    return sb_rpc_fail(ctx, SB_ALREADY_EXISTS,
                       "grade %s: the seats chosen were taken by others %d times over; try again", grade,
                       PICK_ATTEMPTS * PICK_ROUNDS);
}

/* ------------------------------------------------------- CreateReservation */

static bool optional_text(const char *s, size_t max)
{
    return !s || !*s || resv_is_text(s, max);
}

sb_status_t resv_create(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Reservation__CreateReservationRequest *req = in;
    Sb__Reservation__Reservation *resp = out;
    char *schedule = sb_uuid_norm(ctx->arena, req->schedule_id);
    bool by_grade = *req->grade || req->quantity != 0;
    sb_status_t st;
    if (!schedule)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "scheduleId must be a UUID");
    if (by_grade && req->n_seat_ids)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "either seatIds or grade and quantity (best available), not both");
    if (by_grade) {
        if (!resv_is_text(req->grade, GRADE_MAX_BYTES))
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "grade: text of 1 to %d bytes",
                               GRADE_MAX_BYTES);
        if (req->quantity < 1 || req->quantity > resv_config.max_seats)
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "quantity: between 1 and %d",
                               resv_config.max_seats);
    } else if (!req->n_seat_ids) {
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "seatIds, or grade and quantity (best available), are required");
    } else if ((st = resv_check_seat_ids(ctx, req->seat_ids, req->n_seat_ids)) != SB_OK) {
        return st;
    }
    if (!optional_text(req->attendee_name, ATTENDEE_NAME_MAX_BYTES))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "attendeeName: text of at most %d bytes",
                           ATTENDEE_NAME_MAX_BYTES);
    if (!optional_text(req->attendee_phone, ATTENDEE_PHONE_MAX_BYTES))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "attendeePhone: text of at most %d bytes",
                           ATTENDEE_PHONE_MAX_BYTES);
    if (!sb_valid_uuid(ctx->user_id))
        return sb_rpc_fail(ctx, SB_UNAUTHENTICATED, "a signed-in member is needed");

    PGresult *r;
    if ((st = sb_db_exec(ctx->db, &stmt_schedule, &r, schedule)) != SB_OK)
        return st;
    if (PQntuples(r) == 0)
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "schedule not found");
    if (PQgetvalue(r, 0, 1)[0] != 't')
        return sb_rpc_fail(ctx, SB_FAILED_PRECONDITION,
                           "schedule %s cannot be booked: its performance is not on sale or"
                           " cancelled, it has started, or its seats are still being created",
                           schedule);
    const char *performance = PQgetvalue(r, 0, 0);
    size_t want = by_grade ? (size_t)req->quantity : req->n_seat_ids;
    if ((st = resv_check_user_limits(ctx, ctx->user_id, schedule, NULL, want, true)) != SB_OK)
        return st;

    char id[SB_UUID_LEN + 1];
    sb_uuid_v4(id);
    if (by_grade) {
        st = take_best(ctx, schedule, id, req->grade, req->quantity);
    } else {
        sb_buf_t lit = SB_BUF_INIT;
        resv_pg_array(&lit, (const char *const *)req->seat_ids, req->n_seat_ids);
        st = resv_take_seats(ctx, schedule, id, lit.buf, (const char *const *)req->seat_ids,
                             req->n_seat_ids, NULL);
        sb_buf_release(&lit);
    }
    if (st != SB_OK)
        return st;
    if ((st = sb_db_exec(ctx->db, &stmt_insert, &r, id, ctx->user_id, performance, schedule,
                         req->attendee_name, req->attendee_phone,
                         by_grade ? "held (best available)" : "held")) != SB_OK)
        return st;
    Sb__Reservation__Reservation *res = resv_from_row(ctx->arena, r, 0);
    if ((st = resv_emit(ctx->db, ctx->arena, "reservation.created", res, NULL, ctx->user_id)) != SB_OK)
        return st;
    *resp = *res;
    return SB_OK;
}

/* ------------------------------------------------------------ the expiry */

sb_status_t resv_expire_holds(sb_job_ctx_t *job)
{
    char batch[16];
    snprintf(batch, sizeof batch, "%d", resv_config.expiry_batch);
    PGresult *r;
    sb_status_t st = sb_db_exec(job->db, &stmt_expire, &r, batch);
    if (st != SB_OK)
        return st;
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        Sb__Reservation__Reservation *res = resv_from_row(job->arena, r, i);
        if ((st = resv_emit(job->db, job->arena, "reservation.expired", res, "hold expired",
                            "system")) != SB_OK)
            return st;
    }
    if (n > 0)
        sb_info("hold expiry: %d reservation(s) expired, their seats free", n);
    job->again = n == resv_config.expiry_batch;
    return SB_OK;
}

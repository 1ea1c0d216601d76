/* The booking saga, reservation side (docs/payments.md §3): what the
 * reservation service does with the payment service's events, and the
 * reservations a cancelled performance or a withdrawn member leaves.
 *
 *   payment.approved   PENDING_PAYMENT, in time, same amount (and member),
 *                      performance not cancelled -> CONFIRMED, seats SOLD,
 *                      payment_id set, reservation.confirmed. Anything else
 *                      changes nothing and writes reservation.payment_refused
 *                      so the payment service refunds; an approval of the
 *                      payment the reservation already has (a re-sent event)
 *                      does nothing at all.
 *   payment.refunded   CONFIRMED with that payment -> CANCELLED, seats free,
 *                      reservation.cancelled (was_paid)
 *   performance.cancelled (inventory_events.c calls resv_cancel_performance)
 *   member.withdrawn   every live reservation -> CANCELLED, seats free,
 *                      reservation.cancelled (was_paid for CONFIRMED ones)
 *
 * Every handler runs in the inbox transaction (sb/events.h), so a
 * redelivered event id has no second effect, and each decision is taken on
 * the reservation row locked FOR UPDATE, the discipline of holds.c and
 * booking.c: a cancel, an update and the expiry job (which skips rows locked
 * by others and re-reads its own) all meet on that lock, so a reservation
 * ends in exactly one of the outcomes.
 *
 * The approval against the deadline. "In time" is read from the clock
 * (clock_timestamp(), not the transaction's start), first with the row read
 * and again by the confirming UPDATE: the first reading may be older than
 * the lock (PostgreSQL computes the select list before it waits for a row
 * another transaction holds without changing it, e.g. a cancel gone to the
 * payment service), so only the UPDATE's, made with the lock held, counts.
 * The seats are sold first by a guarded UPDATE (HELD and still this
 * reservation's) whose row count must equal the reservation's seats: a hold
 * that started after the deadline may have taken a seat meanwhile (a hold's
 * guard is held_until <= its now(), and held_until is the deadline). Either
 * check failing rolls back to a savepoint and refuses the payment, so a
 * CONFIRMED reservation never lacks a SOLD seat, a seat is never sold twice
 * and nothing is confirmed past its deadline. Past the deadline the
 * reservation is left to the expiry job (it reads EXPIRED already, and the
 * job ends it within a second).
 *
 * Mass cancels are bounded: the event's transaction ends the first
 * RESV_CANCEL_BATCH reservations; if more are left a resv_mass_cancels row
 * (same transaction) hands them to the mass-cancel job, a batch per tick
 * (one transaction each), woken at commit by NOTIFY. Rows locked by someone
 * else are skipped (SKIP LOCKED) and picked up by a later tick; the job row
 * goes when nothing live is left. A hold that read its performance ON_SALE
 * just before the cancellation committed can still be made after the
 * cancel: its payment is refused (the approval checks the performance) and
 * the hold expires. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "reservation.h"
#include "sb/log.h"
#include "sb/service.h"
#include "sb/util.h"

#define PAYMENT_ID_MAX_BYTES 64

/* The reservation locked, with what the approval decides on: in_time (by
 * the clock) and whether its performance was cancelled. */
static const sb_pg_stmt_t stmt_lock = {
    "saga_lock",
    "SELECT " RESV_COLS ", expires_at > clock_timestamp() AS in_time,"
    " EXISTS (SELECT 1 FROM inv_performances p WHERE p.performance_id = reservations.performance_id"
    "   AND p.status = 'CANCELLED') AS performance_cancelled"
    " FROM reservations WHERE reservation_id = $1::uuid FOR UPDATE"};

/* The seats of a reservation ($1) sold: those it still holds. */
static const sb_pg_stmt_t stmt_sell = {
    "saga_sell", "UPDATE seats SET status = 'SOLD', held_until = NULL, updated_at = now()"
                 " WHERE schedule_id = $2::uuid AND reservation_id = $1::uuid AND status = 'HELD'"};

/* The reservation confirmed with payment $2 if its deadline has not passed
 * by the clock now, with its row locked; a log row. */
static const sb_pg_stmt_t stmt_confirm = {
    "saga_confirm",
    "WITH t AS (UPDATE reservations SET status = 'CONFIRMED', payment_id = $2, version = version + 1,"
    "   updated_at = now() WHERE reservation_id = $1::uuid AND status = 'PENDING_PAYMENT'"
    "   AND expires_at > clock_timestamp() RETURNING *),"
    " l AS (INSERT INTO reservation_log (reservation_id, from_status, to_status, actor, reason)"
    "   SELECT reservation_id, 'PENDING_PAYMENT', 'CONFIRMED', 'system', 'payment approved' FROM t)"
    " SELECT " RESV_COLS " FROM t"};

/* A batch ($2) of the live reservations (PENDING_PAYMENT in time, CONFIRMED)
 * that `cond` selects ($1), oldest first, cancelled for $3: seats free, a
 * log row each. Rows another transaction holds are skipped. */
#define MASS_CANCEL(cond)                                                                               \
    "WITH c AS (SELECT reservation_id, status FROM reservations WHERE " cond                            \
    "   AND status IN ('PENDING_PAYMENT', 'CONFIRMED')"                                                 \
    "   AND resv_status(status, expires_at) IN ('PENDING_PAYMENT', 'CONFIRMED')"                        \
    "   ORDER BY created_at LIMIT $2::int FOR UPDATE SKIP LOCKED),"                                     \
    " t AS (UPDATE reservations r SET status = 'CANCELLED', version = r.version + 1, updated_at = "     \
    "now()"                                                                                             \
    "   FROM c WHERE r.reservation_id = c.reservation_id RETURNING r.*, c.status AS from_status),"      \
    " s AS (UPDATE seats SET status = 'AVAILABLE', reservation_id = NULL, held_until = NULL,"           \
    "   updated_at = now() FROM t WHERE seats.schedule_id = t.schedule_id"                              \
    "   AND seats.reservation_id = t.reservation_id AND seats.status IN ('HELD', 'SOLD')),"             \
    " l AS (INSERT INTO reservation_log (reservation_id, from_status, to_status, actor, reason)"        \
    "   SELECT reservation_id, from_status, 'CANCELLED', 'system', $3::text FROM t)"                    \
    " SELECT " RESV_COLS " FROM t"
#define LIVE_LEFT(cond)                                                                                 \
    "SELECT EXISTS (SELECT 1 FROM reservations WHERE " cond                                             \
    " AND status IN ('PENDING_PAYMENT', 'CONFIRMED')"                                                   \
    " AND resv_status(status, expires_at) IN ('PENDING_PAYMENT', 'CONFIRMED'))"

static const sb_pg_stmt_t stmt_cancel_performance = {"saga_cancel_performance",
                                                     MASS_CANCEL("performance_id = $1::uuid")};
static const sb_pg_stmt_t stmt_cancel_member = {"saga_cancel_member", MASS_CANCEL("user_id = $1::uuid")};
static const sb_pg_stmt_t stmt_left_performance = {"saga_left_performance",
                                                   LIVE_LEFT("performance_id = $1::uuid")};
static const sb_pg_stmt_t stmt_left_member = {"saga_left_member", LIVE_LEFT("user_id = $1::uuid")};

/* The rest of a mass cancel for the job (once), which NOTIFY wakes at commit. */
static const sb_pg_stmt_t stmt_queue = {
    "saga_queue", "INSERT INTO resv_mass_cancels (performance_id, user_id, reason)"
                  " SELECT $1::uuid, $2::uuid, $3::text"
                  " FROM (SELECT pg_notify('" RESV_MASS_CANCEL_CHANNEL "', '')) AS wake"
                  " WHERE NOT EXISTS (SELECT 1 FROM resv_mass_cancels"
                  "   WHERE performance_id IS NOT DISTINCT FROM $1::uuid"
                  "   AND user_id IS NOT DISTINCT FROM $2::uuid)"};
static const sb_pg_stmt_t stmt_next = {
    "saga_next", "SELECT id, performance_id::text, user_id::text, reason FROM resv_mass_cancels"
                 " ORDER BY id LIMIT 1"};
static const sb_pg_stmt_t stmt_done = {"saga_done", "DELETE FROM resv_mass_cancels WHERE id = $1"};

/* ---------------------------------------------------------- mass cancels */

/* Who a mass cancel is for: a performance or a member. */
typedef struct mass_target {
    const char *performance, *user;
} mass_target_t;

/* One batch for t on db: *n reservations ended (each with its event), *left
 * whether live ones remain (some skipped, or more than a batch). */
static sb_status_t cancel_batch(sb_db_t *db, sb_arena_t *a, mass_target_t t, const char *why, int *n,
                                bool *left)
{
    const char *key = t.performance ? t.performance : t.user;
    char batch[16];
    snprintf(batch, sizeof batch, "%d", resv_config.cancel_batch);
    PGresult *r, *l;
    sb_status_t st = sb_db_exec(db, t.performance ? &stmt_cancel_performance : &stmt_cancel_member, &r,
                                key, batch, why);
    if (st != SB_OK)
        return st;
    *n = PQntuples(r);
    for (int i = 0; i < *n; i++)
        if ((st = resv_emit(db, a, "reservation.cancelled", resv_from_row(a, r, i), why, "system")) !=
            SB_OK)
            return st;
    if ((st = sb_db_exec(db, t.performance ? &stmt_left_performance : &stmt_left_member, &l, key)) !=
        SB_OK)
        return st;
    *left = PQgetvalue(l, 0, 0)[0] == 't';
    return SB_OK;
}

/* The first batch now; the rest queued for the job. */
static sb_status_t cancel_all(sb_event_ctx_t *ev, mass_target_t t, const char *why)
{
    int n;
    bool left;
    sb_status_t st = cancel_batch(ev->db, ev->arena, t, why, &n, &left);
    if (st != SB_OK)
        return st;
    if (left)
        st = sb_db_exec(ev->db, &stmt_queue, NULL, t.performance, t.user, why);
    sb_info("%s %s: %d reservation(s) cancelled (%s)%s", t.performance ? "performance" : "member",
            t.performance ? t.performance : t.user, n, why,
            left ? "; the rest left to the mass-cancel job" : "");
    return st;
}

sb_status_t resv_cancel_performance(sb_event_ctx_t *ev, const char *perf, const char *why)
{
    return cancel_all(ev, (mass_target_t){.performance = perf}, why);
}

sb_status_t resv_mass_cancel_tick(sb_job_ctx_t *job)
{
    PGresult *r;
    sb_status_t st = sb_db_exec(job->db, &stmt_next, &r);
    if (st != SB_OK || PQntuples(r) == 0)
        return st;
    const char *id = PQgetvalue(r, 0, 0), *why = PQgetvalue(r, 0, 3);
    mass_target_t t = {sb_db_get(r, 0, 1), sb_db_get(r, 0, 2)};
    int n;
    bool left;
    if ((st = cancel_batch(job->db, job->arena, t, why, &n, &left)) != SB_OK)
        return st;
    if (!left)
        st = sb_db_exec(job->db, &stmt_done, NULL, id);
    sb_info("mass cancel %s (%s %s): %d reservation(s) cancelled%s", id,
            t.performance ? "performance" : "member", t.performance ? t.performance : t.user, n,
            left ? ", more left" : ", done");
    /* again at once while batches are full or other rows wait; rows skipped
     * as locked are retried at the next regular tick */
    job->again = n == resv_config.cancel_batch || !left;
    return st;
}

sb_status_t resv_on_member_withdrawn(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__MemberWithdrawn *m = payload;
    char *user = sb_uuid_norm(ev->arena, m->user_id);
    if (!user)
        return sb_event_refuse(ev, "MemberWithdrawn needs a userId UUID");
    return cancel_all(ev, (mass_target_t){.user = user}, "member withdrawn");
}

/* --------------------------------------------------------------- payments */

/* reservation.payment_refused for payment m: the reservation (status as
 * found, or NOT_FOUND) does not take it, for `why`. */
static sb_status_t refuse_payment(sb_event_ctx_t *ev, const Sb__Events__PaymentApproved *m,
                                  const char *rid, const char *status, const char *why)
{
    Sb__Events__ReservationPaymentRefused out = SB__EVENTS__RESERVATION_PAYMENT_REFUSED__INIT;
    out.reservation_id = (char *)rid;
    out.payment_id = m->payment_id;
    out.user_id = m->user_id;
    out.amount = m->amount;
    out.status = (char *)status;
    out.reason = (char *)why;
    sb_warn("reservation %s (%s): payment %s refused: %s", rid, status, m->payment_id, why);
    sb_status_t st;
    sb_pg_conn_t *c = sb_db_conn(ev->db, &st);
    if (!c)
        return st;
    return sb_outbox_add(c, "reservation.payment_refused", rid, &out.base, NULL, ev->db->detail);
}

/* What keeps reservation res (row of r) from taking payment m, in a (a
 * phrase), or NULL when nothing does; *status: the reservation's status as
 * the payment found it. */
static const char *approval_problem(sb_arena_t *a, const Sb__Events__PaymentApproved *m,
                                    const Sb__Reservation__Reservation *res, const PGresult *r,
                                    const char **status)
{
    *status = resv_status_name(res->status);
    if (res->status == SB__RESERVATION__RESERVATION_STATUS__CONFIRMED)
        return sb_arena_printf(a, "already paid by payment %s", res->payment_id);
    if (res->status == SB__RESERVATION__RESERVATION_STATUS__CANCELLED)
        return "the reservation was cancelled";
    if (res->status != SB__RESERVATION__RESERVATION_STATUS__PENDING_PAYMENT ||
        PQgetvalue(r, 0, PQfnumber(r, "in_time"))[0] != 't') {
        *status = "EXPIRED";
        return "the hold expired before the payment was approved";
    }
    if (m->amount != res->amount)
        return sb_arena_printf(a, "the payment is %" PRId64 ", the reservation %" PRId64, m->amount,
                               res->amount);
    if (*m->user_id && strcasecmp(m->user_id, res->user_id) != 0)
        return "the payment was made by another member";
    if (PQgetvalue(r, 0, PQfnumber(r, "performance_cancelled"))[0] == 't')
        return "the performance was cancelled";
    return NULL;
}

sb_status_t resv_on_payment_approved(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__PaymentApproved *m = payload;
    char *rid = sb_uuid_norm(ev->arena, m->reservation_id);
    if (!rid || !resv_is_text(m->payment_id, PAYMENT_ID_MAX_BYTES) || m->amount < 0 ||
        (*m->user_id && !sb_valid_uuid(m->user_id)))
        return sb_event_refuse(ev,
                               "PaymentApproved needs a reservationId UUID, a paymentId of 1 to %d"
                               " bytes, an amount >= 0 and a userId UUID (or none)",
                               PAYMENT_ID_MAX_BYTES);
    PGresult *r;
    sb_status_t st = sb_db_exec(ev->db, &stmt_lock, &r, rid);
    if (st != SB_OK)
        return st;
    if (PQntuples(r) == 0)
        return refuse_payment(ev, m, rid, "NOT_FOUND", "no such reservation");
    Sb__Reservation__Reservation *res = resv_from_row(ev->arena, r, 0);
    if (!strcmp(res->payment_id, m->payment_id)) {
        sb_info("reservation %s (%s): payment %s approved again: nothing to do", rid,
                resv_status_name(res->status), m->payment_id);
        return SB_OK; /* confirmed with it already (and maybe cancelled since: refunded then) */
    }
    const char *status, *problem = approval_problem(ev->arena, m, res, r, &status);
    if (problem)
        return refuse_payment(ev, m, rid, status, problem);

    PGresult *sold;
    if ((st = sb_db_sql(ev->db, "SAVEPOINT saga_sell", NULL)) != SB_OK ||
        (st = sb_db_exec(ev->db, &stmt_sell, &sold, rid, res->schedule_id)) != SB_OK)
        return st;
    const char *late = NULL;
    if (sb_db_affected(sold) != (long)res->n_seat_ids)
        late = "the hold expired as the payment was approved: a seat went to another buyer";
    else if ((st = sb_db_exec(ev->db, &stmt_confirm, &r, rid, m->payment_id)) != SB_OK)
        return st;
    else if (PQntuples(r) == 0)
        late = "the hold expired as the payment was approved";
    if (late) {
        if ((st = sb_db_sql(ev->db, "ROLLBACK TO SAVEPOINT saga_sell", NULL)) != SB_OK)
            return st;
        return refuse_payment(ev, m, rid, "EXPIRED", late);
    }
    res = resv_from_row(ev->arena, r, 0);
    if ((st = resv_emit(ev->db, ev->arena, "reservation.confirmed", res, "payment approved",
                        "system")) != SB_OK)
        return st;
    sb_info("reservation %s confirmed by payment %s: %zu seat(s) sold", rid, m->payment_id,
            res->n_seat_ids);
    return SB_OK;
}

sb_status_t resv_on_payment_refunded(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__PaymentRefunded *m = payload;
    char *rid = sb_uuid_norm(ev->arena, m->reservation_id);
    if (!rid || !resv_is_text(m->payment_id, PAYMENT_ID_MAX_BYTES))
        return sb_event_refuse(ev,
                               "PaymentRefunded needs a reservationId UUID and a paymentId of 1 to"
                               " %d bytes",
                               PAYMENT_ID_MAX_BYTES);
    PGresult *r;
    sb_status_t st = sb_db_exec(ev->db, &stmt_lock, &r, rid);
    if (st != SB_OK)
        return st;
    if (PQntuples(r) == 0) {
        sb_info("payment %s refunded: no reservation %s", m->payment_id, rid);
        return SB_OK;
    }
    Sb__Reservation__Reservation *res = resv_from_row(ev->arena, r, 0);
    if (res->status != SB__RESERVATION__RESERVATION_STATUS__CONFIRMED ||
        strcmp(res->payment_id, m->payment_id) != 0) {
        sb_info("reservation %s (%s, payment '%s'): payment %s refunded: nothing to do", rid,
                resv_status_name(res->status), res->payment_id, m->payment_id);
        return SB_OK;
    }
    Sb__Reservation__Reservation *ended;
    if ((st = resv_end(ev->db, ev->arena, rid, "CONFIRMED", "CANCELLED", "system", "payment refunded",
                       &ended)) != SB_OK)
        return st;
    sb_info("reservation %s cancelled: payment %s refunded", rid, m->payment_id);
    return SB_OK;
}

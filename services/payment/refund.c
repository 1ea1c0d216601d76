/* Refunds and the reconciler.
 *
 * A refund is always the whole amount, at most one per payment: the
 * provider's key is ref_<payment id> and the body is the same bytes on every
 * try (the reason is stored with the request, refund_reason), so any number
 * of tries, from any entry point, make one refund. Entry points:
 *   CancelPayment       DELETE /payments/{id}: the owner or an admin
 *   RefundReservation   the reservation service, before it cancels a
 *                       CONFIRMED reservation
 *   events              reservation.payment_refused, reservation.cancelled
 *                       (was_paid), reservation.expired: the inbox
 *                       transaction only marks the request (no provider call
 *                       inside it) and wakes the payment-refunds job
 * The RPCs refund at once and answer REFUNDED; when the provider does not
 * confirm, the request stays marked and the job retries it (503 meanwhile).
 *
 * The reconciler settles PENDING payments older than
 * PAYMENT_PENDING_GRACE_MS by asking the provider which charge, if any, was
 * made with the payment's key. Both jobs are session jobs: a tick reads its
 * work, then each payment is one short transaction after its provider call,
 * never a transaction across it. */
#include <stdio.h>
#include <string.h>

#include "payment.h"
#include "sb/audit.h"
#include "sb/log.h"
#include "sb/service.h"
#include "sb/valid.h"

#define REASON_MAX_BYTES 500
#define JOB_BATCH "20"

/* Marks the refund of an APPROVED payment as wanted (keeping a first
 * reason): $1 payment id, $2 reason, $3 actor. The first request is a line
 * of the payment's log of its own (APPROVED -> APPROVED, who asked and why):
 * the refund itself may then be confirmed by the answer to our call, by the
 * provider's charge.refunded webhook (which can arrive first) or by the job,
 * and the log keeps who asked whichever way it ends. */
static const sb_pg_stmt_t stmt_want = {
    "pay_refund_want",
    "WITH o AS (SELECT payment_id, refund_requested_at IS NULL AS first FROM payments"
    "   WHERE payment_id = $1::uuid AND status = 'APPROVED' FOR UPDATE),"
    " t AS (UPDATE payments p SET refund_requested_at = COALESCE(p.refund_requested_at, now()),"
    "   refund_reason = COALESCE(p.refund_reason, $2::text), updated_at = now()"
    "   FROM o WHERE p.payment_id = o.payment_id RETURNING p.*),"
    " l AS (INSERT INTO payment_log (payment_id, from_status, to_status, actor, reason)"
    "   SELECT payment_id, 'APPROVED', 'APPROVED', $3::text, 'refund requested: ' || $2::text"
    "   FROM o WHERE o.first)"
    " SELECT " PAY_COLS " FROM t"};
/* The same for the APPROVED payment of reservation $1 (events), or payment
 * $3 when given, logged as the system's request. Wakes the job at commit. */
static const sb_pg_stmt_t stmt_want_event = {
    "pay_refund_want_event",
    "WITH t AS (UPDATE payments SET refund_requested_at = COALESCE(refund_requested_at, now()),"
    "   refund_reason = COALESCE(refund_reason, $2::text), updated_at = now()"
    "   WHERE status = 'APPROVED' AND refund_requested_at IS NULL"
    "   AND (payment_id = $3::uuid OR ($3::uuid IS NULL AND reservation_id = $1::uuid))"
    "   RETURNING payment_id),"
    " l AS (INSERT INTO payment_log (payment_id, from_status, to_status, actor, reason)"
    "   SELECT payment_id, 'APPROVED', 'APPROVED', 'system', 'refund requested: ' || $2::text FROM t)"
    " SELECT payment_id::text, pg_notify('" PAY_REFUND_CHANNEL "', '') FROM t"};
static const sb_pg_stmt_t stmt_refunds_due = {
    "pay_refunds_due", "SELECT payment_id::text FROM payments WHERE refund_requested_at IS NOT NULL"
                       " AND status = 'APPROVED' ORDER BY refund_requested_at LIMIT " JOB_BATCH};
/* A refund the provider refused for good: no more tries. */
static const sb_pg_stmt_t stmt_unwant = {
    "pay_refund_unwant", "WITH t AS (UPDATE payments SET refund_requested_at = NULL, updated_at = now()"
                         "   WHERE payment_id = $1::uuid RETURNING payment_id, status)"
                         " INSERT INTO payment_log (payment_id, from_status, to_status, actor, reason)"
                         " SELECT payment_id, status, status, 'provider', $2::text FROM t"};
static const sb_pg_stmt_t stmt_pending_due = {
    "pay_pending_due", "SELECT payment_id::text FROM payments WHERE status = 'PENDING'"
                       " AND created_at < now() - $1::bigint * interval '1 millisecond'"
                       " ORDER BY created_at LIMIT " JOB_BATCH};
static const sb_pg_stmt_t stmt_paid_of_reservation = {
    "pay_paid_of_reservation",
    "SELECT payment_id::text FROM payments WHERE reservation_id = $1::uuid"
    " AND status IN ('APPROVED', 'REFUNDED', 'DISPUTED', 'PENDING')"
    " ORDER BY status = 'APPROVED' DESC, status = 'PENDING' DESC, created_at DESC LIMIT 1"};

/* ------------------------------------------------------------------ settle */

sb_status_t pay_settle(sb_db_t *db, sb_arena_t *a, const char *id, const Sb__Provider__Charge *charge,
                       const char *actor, pay_t *out, bool *changed)
{
    pay_change_t c = {.from = "{PENDING}", .refunded = -1, .actor = actor};
    if (charge && !strcmp(charge->status, "succeeded")) {
        c.to = "APPROVED";
        c.provider_ref = charge->id;
        c.why = "charge succeeded";
    } else if (charge) {
        c.to = "DECLINED";
        c.provider_ref = charge->id;
        c.reason = *charge->failure_code ? charge->failure_code : "declined";
        c.why = sb_arena_printf(a, "charge failed: %s", c.reason);
    } else {
        c.to = "DECLINED";
        c.reason = "no charge at provider";
        c.why = "no charge at provider";
    }
    return pay_transition(db, a, id, &c, out, changed);
}

/* ------------------------------------------------------------------ refund */

sb_status_t pay_refund(sb_db_t *db, sb_arena_t *a, const sb_rpc_ctx_t *ctx, const char *id,
                       const char *reason, const char *actor, pay_t *out, sb_buf_t *why)
{
    PGresult *r;
    sb_status_t st = sb_db_exec(db, &stmt_want, &r, id, reason, actor);
    if (st != SB_OK)
        return st;
    if (PQntuples(r) == 0) {
        bool found;
        if ((st = pay_load(db, a, id, false, out, &found)) != SB_OK)
            return st;
        if (!found) {
            sb_buf_addf(why, "payment not found");
            return SB_NOT_FOUND;
        }
        if (out->msg->status == SB__COMMON__PAYMENT_STATUS__REFUNDED)
            return SB_OK; /* done before: the same answer */
        sb_buf_addf(why, "payment %s is %s: only an APPROVED payment can be refunded", id,
                    pay_status_name(out->msg->status));
        return SB_FAILED_PRECONDITION;
    }
    pay_from_row(a, r, 0, out);
    if ((st = sb_db_commit(db)) != SB_OK) /* the request outlives a failure below */
        return st;

    const char *key = sb_arena_printf(a, "ref_%s", id);
    sb_http_response_t hr;
    sb_buf_t err = SB_BUF_INIT;
    st = pay_provider_refund(a, key, out->msg->provider_ref, out->msg->amount, out->refund_reason,
                             pay_provider_budget(ctx, 300), &hr, &err);
    if (st != SB_OK) {
        sb_warn("refund of payment %s: no answer from the provider (%s: %s); retried later", id,
                sb_status_name(st), err.buf);
        sb_buf_release(&err);
        sb_buf_addf(why, "the payment provider did not confirm the refund of payment %s; it is retried",
                    id);
        return SB_UNAVAILABLE;
    }
    sb_buf_release(&err);
    bool changed;
    if (hr.status == 200 || hr.status == 201) {
        pay_change_t c = {.to = "REFUNDED",
                          .from = "{APPROVED}",
                          .reason = out->refund_reason,
                          .refunded = out->msg->amount,
                          .actor = actor,
                          .why = out->refund_reason};
        return pay_transition(db, a, id, &c, out, &changed);
    }
    if (hr.status == 400 || hr.status == 404) {
        /* Refused for good (nothing left to refund, unknown charge): no more tries. */
        const char *msg = pay_provider_error(a, &hr);
        sb_error("refund of payment %s refused by the provider (%d): %s", id, hr.status, msg);
        if ((st = sb_db_exec(db, &stmt_unwant, NULL, id,
                             sb_arena_printf(a, "refund refused by the provider: %s", msg))) != SB_OK ||
            (st = sb_db_commit(db)) != SB_OK)
            return st;
        sb_buf_addf(why, "the payment provider refused the refund: %s", msg);
        return SB_FAILED_PRECONDITION;
    }
    sb_warn("refund of payment %s: provider answered %d %s; retried later", id, hr.status,
            pay_provider_error(a, &hr));
    sb_buf_addf(why, "the payment provider did not confirm the refund of payment %s; it is retried", id);
    return SB_UNAVAILABLE;
}

/* A refund for an RPC: the outcome as the call's answer. */
static sb_status_t refund_call(sb_rpc_ctx_t *ctx, const char *id, const char *reason,
                               Sb__Common__Payment *resp)
{
    pay_t p;
    sb_buf_t why = SB_BUF_INIT;
    sb_status_t st = pay_refund(ctx->db, ctx->arena, ctx, id, reason, pay_actor(ctx), &p, &why);
    if (st == SB_OK)
        *resp = *p.msg;
    else if (why.len)
        st = sb_rpc_fail(ctx, st, "%s", why.buf);
    sb_buf_release(&why);
    return st;
}

static const char *reason_or(sb_rpc_ctx_t *ctx, const char *reason, const char *def, sb_status_t *st)
{
    *st = SB_OK;
    if (!reason || !*reason)
        return def;
    if (strlen(reason) > REASON_MAX_BYTES || !sb_valid_utf8_text(reason, false, NULL))
        *st =
            sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "reason: text of at most %d bytes", REASON_MAX_BYTES);
    return reason;
}

sb_status_t pay_cancel(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Payment__CancelPaymentRequest *req = in;
    char *id = sb_uuid_norm(ctx->arena, req->payment_id);
    if (!id)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "paymentId must be a UUID");
    sb_status_t st;
    const char *reason = reason_or(
        ctx, req->reason, sb_rpc_is_admin(ctx) ? "refunded by an admin" : "refunded by the member", &st);
    if (st != SB_OK)
        return st;
    pay_t p;
    bool found;
    if ((st = pay_load(ctx->db, ctx->arena, id, false, &p, &found)) != SB_OK)
        return st;
    if (!found || (!sb_rpc_is_admin(ctx) && !sb_rpc_is_self(ctx, p.msg->user_id)))
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "payment not found");
    /* An admin refunding a member's payment says why; the audit record goes
     * with the refund request, in the transaction pay_refund commits before
     * it calls the provider (a payment refunded already is no new action). */
    if (sb_audit_as_admin(ctx, p.msg->user_id)) {
        if ((st = sb_audit_need_reason(ctx, req->reason)) != SB_OK)
            return st;
        if (p.msg->status != SB__COMMON__PAYMENT_STATUS__REFUNDED &&
            (st = sb_audit_record(ctx, &(sb_audit_t){.target_type = "payment",
                                                     .target_id = id,
                                                     .reason = reason,
                                                     .before = pay_status_name(p.msg->status),
                                                     .after = "REFUND_REQUESTED"})) != SB_OK)
            return st;
    }
    return refund_call(ctx, id, reason, out);
}

sb_status_t pay_refund_reservation(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Payment__RefundReservationRequest *req = in;
    char *resv = sb_uuid_norm(ctx->arena, req->reservation_id);
    if (!resv)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "reservationId must be a UUID");
    sb_status_t st;
    const char *reason = reason_or(ctx, req->reason, "reservation cancelled", &st);
    if (st != SB_OK)
        return st;
    PGresult *r;
    if ((st = sb_db_exec(ctx->db, &stmt_paid_of_reservation, &r, resv)) != SB_OK)
        return st;
    if (PQntuples(r) == 0)
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "no paid payment for reservation %s", resv);
    return refund_call(ctx, PQgetvalue(r, 0, 0), reason, out);
}

/* --------------------------------------------------------------- the jobs */

/* A unit of work of its own on the service's pool, one transaction at a
 * time (the job's connection only holds its leadership). */
static sb_db_t job_unit(sb_job_ctx_t *job)
{
    return (sb_db_t){.arena = job->arena,
                     .detail = job->db->detail,
                     .pool = sb_job_service(job)->pg,
                     .begin = "BEGIN"};
}

sb_status_t pay_refunds_tick(sb_job_ctx_t *job)
{
    PGresult *r;
    sb_status_t st = sb_db_exec(job->db, &stmt_refunds_due, &r);
    if (st != SB_OK)
        return st;
    int failed = 0;
    for (int i = 0; i < PQntuples(r) && !atomic_load(job->stopping); i++) {
        sb_db_t u = job_unit(job);
        pay_t p;
        sb_buf_t why = SB_BUF_INIT;
        st = pay_refund(&u, job->arena, NULL, PQgetvalue(r, i, 0), "refund requested", "system", &p,
                        &why);
        if (st == SB_OK)
            st = sb_db_commit(&u);
        sb_db_rollback(&u);
        if (st != SB_OK && st != SB_FAILED_PRECONDITION)
            failed++;
        sb_buf_release(&why);
    }
    job->again = failed == 0 && PQntuples(r) == atoi(JOB_BATCH);
    return failed ? SB_UNAVAILABLE : SB_OK; /* back off while the provider is away */
}

sb_status_t pay_reconcile_tick(sb_job_ctx_t *job)
{
    char grace[24];
    snprintf(grace, sizeof grace, "%d", pay_config.pending_grace_ms);
    PGresult *r;
    sb_status_t st = sb_db_exec(job->db, &stmt_pending_due, &r, grace);
    if (st != SB_OK)
        return st;
    int failed = 0;
    for (int i = 0; i < PQntuples(r) && !atomic_load(job->stopping); i++) {
        const char *id = PQgetvalue(r, i, 0);
        Sb__Provider__Charge *charge;
        sb_buf_t err = SB_BUF_INIT;
        st = pay_provider_find(job->arena, sb_arena_printf(job->arena, "pay_%s", id),
                               pay_config.provider_timeout_ms, &charge, &err);
        if (st != SB_OK) {
            sb_warn("reconciler: payment %s: provider not asked (%s: %s)", id, sb_status_name(st),
                    err.buf);
            sb_buf_release(&err);
            failed++;
            continue;
        }
        sb_buf_release(&err);
        sb_db_t u = job_unit(job);
        bool changed;
        pay_t p;
        st = pay_settle(&u, job->arena, id, charge, "reconciler", &p, &changed);
        if (st == SB_OK)
            st = sb_db_commit(&u);
        sb_db_rollback(&u);
        if (st != SB_OK)
            failed++;
        else if (changed)
            sb_info("reconciler: payment %s settled %s", id, pay_status_name(p.msg->status));
    }
    return failed ? SB_UNAVAILABLE : SB_OK;
}

/* ------------------------------------------------------------- the events */

static sb_status_t want_refund(sb_event_ctx_t *ev, const char *reservation, const char *payment,
                               const char *reason)
{
    char *resv = sb_uuid_norm(ev->arena, reservation);
    char *pay = payment && *payment ? sb_uuid_norm(ev->arena, payment) : NULL;
    if (!resv && !pay)
        return sb_event_refuse(ev, "reservation_id must be a UUID");
    PGresult *r;
    sb_status_t st = sb_db_exec(ev->db, &stmt_want_event, &r, resv, reason, pay);
    if (st == SB_OK && PQntuples(r) > 0)
        sb_info("refund of payment %s wanted: %s", PQgetvalue(r, 0, 0), reason);
    return st;
}

sb_status_t pay_on_payment_refused(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__ReservationPaymentRefused *e = payload;
    const char *reason =
        sb_arena_printf(ev->arena, "reservation %s: %s", *e->status ? e->status : "refused the payment",
                        *e->reason ? e->reason : "payment refused");
    if (!e->payment_id || !sb_valid_uuid(e->payment_id))
        return sb_event_refuse(ev, "payment_id must be a UUID");
    return want_refund(ev, e->reservation_id, e->payment_id, reason);
}

sb_status_t pay_on_reservation_cancelled(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__ReservationCancelled *e = payload;
    if (!e->was_paid)
        return SB_OK;
    return want_refund(ev, e->reservation_id, NULL,
                       *e->reason ? sb_arena_printf(ev->arena, "reservation cancelled: %s", e->reason)
                                  : "reservation cancelled");
}

sb_status_t pay_on_reservation_expired(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__ReservationExpired *e = payload;
    return want_refund(ev, e->reservation_id, NULL, "reservation expired");
}

/* CreatePayment (POST /payments, Idempotency-Key required), in the order of
 * docs/payments.md section 2:
 *
 *   0. The runtime claimed the key (sb_idempotency) in the call's
 *      transaction; it is committed at once, so a twin with the same key is
 *      told "in progress" (409) and no transaction waits on the calls below.
 *   1. The reservation service's GetReservation, on the caller's behalf (the
 *      caller's token travels with the call): the caller's, PENDING_PAYMENT,
 *      not expired, the same amount (else 400). No other PENDING or APPROVED
 *      payment of it (409; the unique index payments_one_live decides).
 *   2. Transaction 1: the payment PENDING with its provider key
 *      pay_<payment id> (one per attempt), its log row. Commit.
 *   3. The provider's POST /v1/charges, no transaction open.
 *   4. Transaction 2: APPROVED / DECLINED (the failure code) with its log
 *      row and payment.approved / payment.declined, and the key's answer
 *      (the runtime stores it when the handler returns).
 *      No answer (a time-out): PENDING stays, the answer is 201 PENDING and
 *      the reconciler (refund.c) settles it. A 5xx: the provider made no
 *      charge; DECLINED "provider error" is committed and the answer is 503,
 *      which frees the key: paying again makes a new attempt.
 *
 * A declined card is an answer, not an error: 201 with status DECLINED and
 * the reason; the reservation is untouched and can be paid with another
 * card (another key). Only the last four digits of the card are kept. */
#include <string.h>

#include "payment.h"
#include "reservation.pb-c.h"
#include "sb/log.h"
#include "sb/util.h"
#include "sb/valid.h"

#define RESERVATION_TIMEOUT_MS 3000
#define TX2_MARGIN_MS 300 /* kept for transaction 2 after the provider call */
#define MIN_CHECK_MS 200  /* the least GetReservation is given */

static const sb_pg_stmt_t stmt_by_key = {
    "pay_by_key", "SELECT " PAY_COLS " FROM payments WHERE user_id = $1::uuid AND idempotency_key = $2"};
/* A 503 frees the key (the runtime deletes its claim): this attempt no
 * longer answers for it, and a retry under it pays anew. */
static const sb_pg_stmt_t stmt_forget_key = {
    "pay_forget_key", "UPDATE payments SET idempotency_key = NULL WHERE payment_id = $1::uuid"};
static const sb_pg_stmt_t stmt_live = {
    "pay_live", "SELECT payment_id::text, status FROM payments WHERE reservation_id = $1::uuid"
                " AND status IN ('PENDING', 'APPROVED') LIMIT 1"};
static const sb_pg_stmt_t stmt_insert = {
    "pay_insert",
    "WITH t AS (INSERT INTO payments (payment_id, reservation_id, user_id, amount, method, status,"
    "   card_last4, provider_key, idempotency_key) VALUES ($1::uuid, $2::uuid, $3::uuid, $4::bigint,"
    "   $5::text, 'PENDING', $6::text, $7::text, $8::text) RETURNING *),"
    " l AS (INSERT INTO payment_log (payment_id, from_status, to_status, actor, reason)"
    "   SELECT payment_id, NULL, 'PENDING', $3::text, 'payment started' FROM t)"
    " SELECT " PAY_COLS " FROM t"};

/* Step 1: the reservation as its owner sees it. */
static sb_status_t check_reservation(sb_rpc_ctx_t *ctx, const char *id, int64_t amount)
{
    /* what is left once the provider call and transaction 2 have theirs */
    int64_t timeout = sb_rpc_remaining_ms(ctx) - pay_config.provider_timeout_ms - TX2_MARGIN_MS;
    if (timeout > RESERVATION_TIMEOUT_MS)
        timeout = RESERVATION_TIMEOUT_MS;
    if (timeout < MIN_CHECK_MS)
        return sb_rpc_fail(ctx, SB_UNAVAILABLE,
                           "the call's deadline leaves no time to check the reservation and charge"
                           " the card; try again with a longer one");
    Sb__Reservation__GetReservationRequest req = SB__RESERVATION__GET_RESERVATION_REQUEST__INIT;
    req.reservation_id = (char *)id;
    sb_call_opts_t opts = {.timeout_ms = timeout, .trace_id = ctx->trace_id, .token = ctx->token};
    Sb__Reservation__Reservation *res = NULL;
    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st = sb_rpc_call(sb_channel_get_service("reservation"),
                                 &sb__reservation__reservation_service__descriptor, "GetReservation",
                                 &req.base, ctx->arena, (ProtobufCMessage **)&res, &opts, &err);
    if (st == SB_NOT_FOUND || st == SB_PERMISSION_DENIED)
        st = sb_rpc_fail(ctx, SB_NOT_FOUND, "reservation not found");
    else if (st == SB_INVALID_ARGUMENT)
        st = sb_rpc_fail(ctx, st, "reservationId: %s", err.buf);
    else if (st == SB_UNAVAILABLE || st == SB_DEADLINE_EXCEEDED || st == SB_ABORTED) {
        sb_warn("GetReservation(%s): %s %s", id, sb_status_name(st), err.buf);
        st = sb_rpc_fail(ctx, SB_UNAVAILABLE, "the reservation service is unavailable; try again");
    } else if (st != SB_OK)
        st = sb_rpc_error(ctx, st, "GetReservation(%s): %s", id, err.buf);
    sb_buf_release(&err);
    if (st != SB_OK)
        return st;
    if (!sb_rpc_is_self(ctx, res->user_id))
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "reservation not found");
    if (res->status != SB__RESERVATION__RESERVATION_STATUS__PENDING_PAYMENT) {
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
            &sb__reservation__reservation_status__descriptor, res->status);
        return sb_rpc_fail(ctx, SB_FAILED_PRECONDITION,
                           "reservation is %s: only a reservation awaiting payment can be paid",
                           v ? v->name : "not awaiting payment");
    }
    int64_t expires;
    if (res->expires_at && sb_parse_rfc3339(res->expires_at, &expires) && expires <= sb_now_ms())
        return sb_rpc_fail(ctx, SB_FAILED_PRECONDITION, "reservation hold has expired");
    if (res->amount != amount)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "amount %lld does not match the reservation's amount %lld", (long long)amount,
                           (long long)res->amount);
    return SB_OK;
}

/* Step 2: the PENDING payment, committed. */
static sb_status_t start(sb_rpc_ctx_t *ctx, const Sb__Payment__CreatePaymentRequest *req,
                         const char *reservation, pay_t *p)
{
    PGresult *r;
    sb_status_t st = sb_db_exec(ctx->db, &stmt_live, &r, reservation);
    if (st != SB_OK)
        return st;
    if (PQntuples(r) > 0)
        return sb_rpc_fail(ctx, SB_ALREADY_EXISTS, "reservation already has a payment %s (%s)",
                           PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 0));
    char id[SB_UUID_LEN + 1];
    sb_uuid_v4(id);
    const char *key = sb_arena_printf(ctx->arena, "pay_%s", id);
    const char *last4 = req->card_number + strlen(req->card_number) - 4;
    char amount[24];
    snprintf(amount, sizeof amount, "%lld", (long long)req->amount);
    st = sb_db_exec(ctx->db, &stmt_insert, &r, id, reservation, ctx->user_id, amount, "CARD", last4, key,
                    req->idempotency_key);
    if (st == SB_ALREADY_EXISTS) /* a concurrent attempt with another key won the index */
        return sb_rpc_fail(ctx, SB_ALREADY_EXISTS, "reservation already has a payment in progress");
    if (st != SB_OK)
        return st;
    pay_from_row(ctx->arena, r, 0, p);
    return sb_db_commit(ctx->db);
}

sb_status_t pay_create(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Payment__CreatePaymentRequest *req = in;
    Sb__Common__Payment *resp = out;
    if (!req->idempotency_key || !*req->idempotency_key)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "the Idempotency-Key header is required");
    char *reservation = sb_uuid_norm(ctx->arena, req->reservation_id);
    if (!reservation)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "reservationId must be a UUID");
    if (req->amount <= 0)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "amount must be positive");
    if (*req->method && strcmp(req->method, "CARD") != 0)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "method: only CARD is accepted");
    if (!pay_card_valid(req->card_number))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "cardNumber must be 16 digits passing the Luhn check");
    /* 0: the key's claim committed (see above); a payment made under the key
     * already is the answer (a first run that died before answering) */
    sb_status_t st = sb_db_commit(ctx->db);
    PGresult *r;
    if (st != SB_OK ||
        (st = sb_db_exec(ctx->db, &stmt_by_key, &r, ctx->user_id, req->idempotency_key)) != SB_OK)
        return st;
    if (PQntuples(r) == 1) {
        pay_t done;
        pay_from_row(ctx->arena, r, 0, &done);
        sb_info("payment %s: the answer of a run that did not finish, given again",
                done.msg->payment_id);
        *resp = *done.msg;
        return SB_OK;
    }
    if ((st = check_reservation(ctx, reservation, req->amount)) != SB_OK)
        return st;
    pay_t p;
    if ((st = start(ctx, req, reservation, &p)) != SB_OK)
        return st;
    const char *id = p.msg->payment_id;

    /* 3: the provider, no transaction open */
    sb_http_response_t hr;
    Sb__Provider__Charge *charge;
    sb_buf_t err = SB_BUF_INIT;
    st = pay_provider_charge(ctx->arena, p.provider_key, id, req->amount, req->card_number,
                             pay_provider_budget(ctx, TX2_MARGIN_MS), &hr, &charge, &err);
    if (st != SB_OK) {
        sb_warn("payment %s: no answer from the provider (%s: %s): PENDING until reconciled", id,
                sb_status_name(st), err.buf);
        sb_buf_release(&err);
        *resp = *p.msg; /* 201 PENDING: the reconciler settles it */
        return SB_OK;
    }
    sb_buf_release(&err);

    /* 4: the outcome */
    bool changed;
    if (charge && (!strcmp(charge->status, "succeeded") || !strcmp(charge->status, "failed"))) {
        if ((st = pay_settle(ctx->db, ctx->arena, id, charge, ctx->user_id, &p, &changed)) != SB_OK)
            return st;
        *resp = *p.msg;
        return SB_OK;
    }
    if (hr.status >= 500) {
        /* nothing made at the provider: this attempt is over */
        pay_change_t c = {.to = "DECLINED",
                          .from = "{PENDING}",
                          .reason = "provider error",
                          .refunded = -1,
                          .actor = "provider",
                          .why = sb_arena_printf(ctx->arena, "provider answered %d: %s", hr.status,
                                                 pay_provider_error(ctx->arena, &hr))};
        if ((st = pay_transition(ctx->db, ctx->arena, id, &c, &p, &changed)) != SB_OK ||
            (st = sb_db_exec(ctx->db, &stmt_forget_key, NULL, id)) != SB_OK ||
            (st = sb_db_commit(ctx->db)) != SB_OK)
            return st;
        return sb_rpc_fail(ctx, SB_UNAVAILABLE,
                           "the payment provider failed (payment %s declined); pay again with a new"
                           " Idempotency-Key",
                           id);
    }
    if (hr.status == 400 || hr.status == 422) {
        pay_change_t c = {.to = "DECLINED",
                          .from = "{PENDING}",
                          .reason = sb_arena_printf(ctx->arena, "refused by the provider: %s",
                                                    pay_provider_error(ctx->arena, &hr)),
                          .refunded = -1,
                          .actor = "provider",
                          .why = sb_arena_printf(ctx->arena, "provider answered %d", hr.status)};
        if ((st = pay_transition(ctx->db, ctx->arena, id, &c, &p, &changed)) != SB_OK)
            return st;
        *resp = *p.msg;
        return SB_OK;
    }
    /* anything else (409: the key in use at the provider): unknown outcome */
    sb_warn("payment %s: provider answered %d: PENDING until reconciled", id, hr.status);
    *resp = *p.msg;
    return SB_OK;
}

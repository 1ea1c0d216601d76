/* Calls to the payment service (proto/payment.proto), always with no
 * database transaction open (CONVENTIONS: never hold a transaction across a
 * network call; booking.c's cancel_paid lets the row lock go first and
 * re-checks after).
 *
 *   RefundReservation      before a CONFIRMED reservation is cancelled
 *                          (booking.c); only this service may call it (its
 *                          certificate), the member's token travels along
 *   GetPayment             GetReservationPayment: the owner or an admin
 *                          (checked here first), on their behalf (token)
 *
 * The payment service's refusals reach the client as they are (its status,
 * its message after "payment service: "); when it cannot be had (down,
 * deadline, not implemented, an internal error, the provider away) the
 * client gets UNAVAILABLE and the log the detail. A refund asked for then
 * may still be made (the payment service retries a refund it has marked);
 * its payment.refunded event then cancels the reservation (saga.c). */
#include <string.h>

#include "payment.pb-c.h"
#include "reservation.h"
#include "sb/log.h"
#include "sb/registry.h"
#include "sb/service.h"

/* A refund reaches the card provider: allow it longer than a read. */
#define REFUND_TIMEOUT_MS 10000
#define READ_TIMEOUT_MS 3000

/* Unary call `method` of the payment service within the caller's deadline;
 * `what` says what was asked and `after` what the client may do when the
 * payment service cannot be had, for the messages. */
static sb_status_t payment_call(sb_rpc_ctx_t *ctx, const char *method, const ProtobufCMessage *req,
                                int64_t timeout_ms, const char *what, const char *after,
                                ProtobufCMessage **resp)
{
    int64_t left = sb_rpc_remaining_ms(ctx);
    if (left < timeout_ms + 100)
        timeout_ms = left - 100;
    if (timeout_ms <= 0)
        return sb_rpc_fail(ctx, SB_UNAVAILABLE, "no time left to ask the payment service to %s", what);
    sb_call_opts_t opts = {.timeout_ms = timeout_ms, .trace_id = ctx->trace_id, .token = ctx->token};
    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st =
        sb_rpc_call(sb_channel_get_service("payment"), &sb__payment__payment_service__descriptor, method,
                    req, ctx->arena, resp, &opts, &err);
    switch (st) {
    case SB_OK: break;
    case SB_INVALID_ARGUMENT:
    case SB_NOT_FOUND:
    case SB_ALREADY_EXISTS:
    case SB_FAILED_PRECONDITION:
    case SB_ABORTED:
    case SB_OUT_OF_RANGE:
        st = sb_rpc_fail(ctx, st, "payment service: %s", err.len ? err.buf : sb_status_name(st));
        break;
    default:
        sb_warn("payment %s at %s: %s %s", method, sb_registry_addr("payment"), sb_status_name(st),
                err.buf);
        st = sb_rpc_fail(ctx, SB_UNAVAILABLE, "the payment service could not %s now (%s); %s", what,
                         sb_status_name(st), after);
    }
    sb_buf_release(&err);
    return st;
}

sb_status_t resv_payment_refund(sb_rpc_ctx_t *ctx, const char *id, const char *payment,
                                const char *reason)
{
    Sb__Payment__RefundReservationRequest req = SB__PAYMENT__REFUND_RESERVATION_REQUEST__INIT;
    req.reservation_id = (char *)id;
    req.reason = (char *)reason;
    Sb__Common__Payment *p = NULL;
    sb_status_t st = payment_call(ctx, "RefundReservation", &req.base, REFUND_TIMEOUT_MS,
                                  "refund the reservation's payment",
                                  "the reservation stays CONFIRMED until the refund is done (then it is"
                                  " cancelled): try again later",
                                  (ProtobufCMessage **)&p);
    if (st != SB_OK)
        return st;
    if (p->status != SB__COMMON__PAYMENT_STATUS__REFUNDED || strcmp(p->payment_id, payment) != 0) {
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
            &sb__common__payment_status__descriptor, (int)p->status);
        return sb_rpc_fail(ctx, SB_FAILED_PRECONDITION,
                           "payment service: payment %s of reservation %s is %s, not refunded (the"
                           " reservation's payment is %s): nothing was cancelled",
                           p->payment_id, id, v ? v->name : "of unknown status", payment);
    }
    sb_info("reservation %s: payment %s refunded", id, payment);
    return SB_OK;
}

sb_status_t resv_get_payment(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Reservation__GetReservationRequest *req = in;
    Sb__Common__Payment *resp = out, *p = NULL;
    Sb__Reservation__Reservation *res;
    sb_status_t st = resv_load_visible(ctx, req->reservation_id, &res);
    if (st != SB_OK)
        return st;
    Sb__Payment__GetPaymentRequest preq = SB__PAYMENT__GET_PAYMENT_REQUEST__INIT;
    preq.reservation_id = res->reservation_id;
    if ((st = payment_call(ctx, "GetPayment", &preq.base, READ_TIMEOUT_MS,
                           "tell the reservation's payment", "try again later",
                           (ProtobufCMessage **)&p)) != SB_OK)
        return st;
    *resp = *p;
    return SB_OK;
}

/* payment service: wiring. Payments through the card provider
 * (docs/payments.md section 2); payment.h has the file map. */
#include "payment.h"
#include "sb/service.h"

static const sb_rpc_method_t methods[] = {
    /* commits its PENDING row before the provider call (create.c) */
    {"CreatePayment", pay_create, .tx = SB_TX, .idempotent = true},
    {"GetPayment", pay_get},
    {"ListPayments", pay_list},
    {"UpdatePayment", pay_update, .tx = SB_TX},
    /* refunds commit their request before the provider call (refund.c) */
    {"CancelPayment", pay_cancel, .tx = SB_TX},
    {"RefundReservation", pay_refund_reservation, .tx = SB_TX},
    {"ReceiveWebhook", pay_webhook, .tx = SB_TX},
    {"CheckLedger", pay_check_ledger, .tx = SB_TX_READ, .iso = SB_PG_REPEATABLE_READ},
    {"ReplayEvents", sb_service_replay_events},
    {"DeliverEvent", sb_service_deliver_event},
};

/* Refunds the reservation side asks for (refund.c): marked in the inbox
 * transaction, made by the payment-refunds job. */
static const sb_event_handler_t events[] = {
    {"reservation.payment_refused", &sb__events__reservation_payment_refused__descriptor,
     pay_on_payment_refused},
    {"reservation.cancelled", &sb__events__reservation_cancelled__descriptor,
     pay_on_reservation_cancelled},
    {"reservation.expired", &sb__events__reservation_expired__descriptor, pay_on_reservation_expired},
};

/* Session jobs: their ticks call the provider, so no transaction spans a
 * tick. The reconciler's period is PAYMENT_RECONCILE_MS (set by check). */
static sb_job_t jobs[] = {
    {"payment-reconciler", pay_reconcile_tick, .every_ms = 1000, .session = true},
    {"payment-refunds", pay_refunds_tick, .every_ms = 1000, .channel = PAY_REFUND_CHANNEL,
     .session = true},
};

static sb_status_t check(sb_buf_t *err)
{
    sb_status_t st = pay_check(err);
    jobs[0].every_ms = pay_config.reconcile_ms;
    return st;
}

SB_SERVICE_MAIN(payment, SB_METHODS(methods), SB_EVENTS(events), SB_JOBS(jobs), .check = check);

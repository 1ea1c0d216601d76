/* payment service internals, shared by its files (docs/payments.md section 2):
 *   main.c       wiring: the method, event and job tables
 *   payments.c   the payments table: rows, state changes (log row + event in
 *                the caller's transaction), GetPayment, ListPayments,
 *                UpdatePayment, the configuration
 *   create.c     CreatePayment: the reservation checked over gRPC, PENDING
 *                committed, the provider asked with no transaction open, the
 *                outcome recorded
 *   refund.c     refunds (CancelPayment, RefundReservation, the
 *                payment-refunds job, the consumers of reservation events)
 *                and the reconciler job
 *   webhook.c    ReceiveWebhook: dedupe, effects
 *   signature.c  the pure checks: webhook signature and age, card numbers
 *   ledger.c     CheckLedger: the provider's totals and charges against ours
 *   provider.c   the provider's HTTP API (sb_http_send)
 * Tables: migrations/0001_payments.sql. The provider's JSON answers:
 * proto/provider.proto.
 *
 * Never a transaction across a provider call: a state change that needs the
 * provider commits what comes before (sb_db_commit: the PENDING row, the
 * refund request), calls, and records the outcome in a new transaction,
 * guarded by the state it expects (so a webhook or the reconciler that got
 * there first wins and the outcome is not applied twice). */
#ifndef SB_PAYMENT_INTERNAL_H
#define SB_PAYMENT_INTERNAL_H
#include <stdbool.h>
#include <stdint.h>

#include "common.pb-c.h"
#include "payment.pb-c.h"
#include "provider.pb-c.h"
#include "sb/arena.h"
#include "sb/buf.h"
#include "sb/db.h"
#include "sb/events.h"
#include "sb/http.h"
#include "sb/jobs.h"
#include "sb/rpc.h"
#include "sb/status.h"

/* ---- payments.c ---- */

/* From the environment at start-up (pay_check, the service's check hook). */
typedef struct pay_config {
    const char *provider_url;   /* PROVIDER_URL, http://127.0.0.1:7190 */
    const char *webhook_secret; /* PROVIDER_WEBHOOK_SECRET, sb-dev-webhook-secret */
    int provider_timeout_ms;    /* PROVIDER_TIMEOUT_MS (3000): one provider call */
    int reconcile_ms;           /* PAYMENT_RECONCILE_MS (1000): the reconciler's tick */
    int pending_grace_ms;       /* PAYMENT_PENDING_GRACE_MS (5000): PENDING this old is settled */
    int webhook_tolerance_s;    /* PROVIDER_WEBHOOK_TOLERANCE_S (300): older signatures refused */
} pay_config_t;
extern pay_config_t pay_config;
sb_status_t pay_check(sb_buf_t *err);

/* A payment row: the API view and what only the service reads. */
typedef struct pay {
    Sb__Common__Payment *msg;
    const char *provider_key;  /* pay_<payment id> */
    const char *refund_reason; /* NULL until a refund is asked */
    int64_t refunded_amount;
} pay_t;

/* The columns pay_from_row reads (unqualified: usable in RETURNING). */
#define PAY_COLS                                                                                        \
    "payment_id::text AS payment_id, reservation_id::text AS reservation_id,"                           \
    " user_id::text AS user_id, amount, method, status, card_last4,"                                    \
    " COALESCE(provider_ref, '') AS provider_ref, COALESCE(reason, '') AS reason,"                      \
    " " SB_DB_TS("created_at") " AS created_at, " SB_DB_TS(                                             \
        "updated_at") " AS updated_at,"                                                                 \
                      " provider_key, refund_reason, refunded_amount,"                                  \
                      " (extract(epoch FROM created_at) * 1000000)::bigint AS cursor_us"

void pay_from_row(sb_arena_t *a, const PGresult *r, int row, pay_t *out);
/* The payment `id` (a normalised UUID) into *out, FOR UPDATE when lock;
 * *found false when there is none. */
sb_status_t pay_load(sb_db_t *db, sb_arena_t *a, const char *id, bool lock, pay_t *out, bool *found);
/* The status name of a Payment ("APPROVED"). */
const char *pay_status_name(Sb__Common__PaymentStatus st);

/* A state change on db's transaction: payment `id` goes to `to` if its
 * status is one of `from` (a PostgreSQL text[] literal, "{PENDING}");
 * provider_ref, reason and refunded (>= 0) replace the row's when given
 * (NULL, NULL, -1 keep them). With the change come a payment_log row (actor,
 * why) and the event of `to` (payment.approved / .declined / .refunded /
 * .disputed) in the outbox. *changed tells whether it happened; *out is the
 * row after (or as it is when nothing changed; out may be NULL). */
typedef struct pay_change {
    const char *to;
    const char *from;
    const char *provider_ref;
    const char *reason;
    int64_t refunded; /* -1: keep */
    const char *actor;
    const char *why;
} pay_change_t;
sb_status_t pay_transition(sb_db_t *db, sb_arena_t *a, const char *id, const pay_change_t *c, pay_t *out,
                           bool *changed);
/* The log row of a new payment (from NULL). */
sb_status_t pay_log(sb_db_t *db, const char *id, const char *from, const char *to, const char *actor,
                    const char *why);
/* Who acts for the log: the caller's user id, else its service, else "system". */
const char *pay_actor(const sb_rpc_ctx_t *ctx);

sb_rpc_handler_t pay_get, pay_list, pay_update;

/* ---- create.c ---- */

sb_rpc_handler_t pay_create;

/* ---- provider.c ---- */

/* The time a provider call may take from now: PROVIDER_TIMEOUT_MS, less
 * when ctx (may be NULL) has less left, keeping margin_ms for what follows;
 * <= 0 when there is no time left. */
int64_t pay_provider_budget(const sb_rpc_ctx_t *ctx, int64_t margin_ms);
/* POST /v1/charges (key, the payment id as reference). *charge: the charge
 * the answer holds (201 or 402), else NULL. OK whenever an answer came
 * (resp->status says which); UNAVAILABLE / DEADLINE_EXCEEDED: none. */
sb_status_t pay_provider_charge(sb_arena_t *a, const char *key, const char *payment_id, int64_t amount,
                                const char *card, int64_t timeout_ms, sb_http_response_t *resp,
                                Sb__Provider__Charge **charge, sb_buf_t *err);
/* POST /v1/refunds (key, the whole amount). OK whenever an answer came. */
sb_status_t pay_provider_refund(sb_arena_t *a, const char *key, const char *charge_id, int64_t amount,
                                const char *reason, int64_t timeout_ms, sb_http_response_t *resp,
                                sb_buf_t *err);
/* GET /v1/charges?idempotency_key=key: OK with *charge the charge made with
 * that key or NULL when none; UNAVAILABLE when the provider did not answer
 * with the list. */
sb_status_t pay_provider_find(sb_arena_t *a, const char *key, int64_t timeout_ms,
                              Sb__Provider__Charge **charge, sb_buf_t *err);
/* GET path: OK with resp filled when the answer is 200, else UNAVAILABLE. */
sb_status_t pay_provider_get(sb_arena_t *a, const char *path, int64_t timeout_ms,
                             sb_http_response_t *resp, sb_buf_t *err);
/* The error message of a provider's error answer ("" when none). */
const char *pay_provider_error(sb_arena_t *a, const sb_http_response_t *resp);
/* A provider JSON answer into message type d (unknown fields skipped); NULL
 * when it does not parse. */
ProtobufCMessage *pay_provider_decode(sb_arena_t *a, const ProtobufCMessageDescriptor *d,
                                      const char *body, size_t len);

/* ---- refund.c ---- */

/* Refunds payment `id` in full at the provider (key ref_<id>): the request
 * is marked and committed on db (a unit with a pool and a transaction per
 * phase), the provider asked with no transaction open, then REFUNDED with
 * its log row and payment.refunded on db's new transaction, which the caller
 * commits. OK: *out is REFUNDED (now or before). FAILED_PRECONDITION: not
 * refundable (why says so). UNAVAILABLE: the provider did not confirm; the
 * request stays and the payment-refunds job retries it. */
sb_status_t pay_refund(sb_db_t *db, sb_arena_t *a, const sb_rpc_ctx_t *ctx, const char *id,
                       const char *reason, const char *actor, pay_t *out, sb_buf_t *why);
sb_rpc_handler_t pay_cancel, pay_refund_reservation;
/* Jobs: the refunds asked by events (woken on PAY_REFUND_CHANNEL) and the
 * reconciler of PENDING payments. */
#define PAY_REFUND_CHANNEL "payment_refunds"
sb_status_t pay_refunds_tick(sb_job_ctx_t *job);
sb_status_t pay_reconcile_tick(sb_job_ctx_t *job);
/* Event rows: reservation.payment_refused, .cancelled, .expired. */
sb_status_t pay_on_payment_refused(sb_event_ctx_t *ev, const void *payload);
sb_status_t pay_on_reservation_cancelled(sb_event_ctx_t *ev, const void *payload);
sb_status_t pay_on_reservation_expired(sb_event_ctx_t *ev, const void *payload);
/* Settles PENDING payment `id` from the provider's charge (NULL: none was
 * made): APPROVED, or DECLINED with the failure code / "no charge at
 * provider". On db's transaction. */
sb_status_t pay_settle(sb_db_t *db, sb_arena_t *a, const char *id, const Sb__Provider__Charge *charge,
                       const char *actor, pay_t *out, bool *changed);

/* ---- webhook.c ---- */

sb_rpc_handler_t pay_webhook;

/* ---- signature.c (pure) ---- */

/* true when s is 16 digits passing the Luhn check. */
bool pay_card_valid(const char *s);
/* Checks a Provider-Signature header ("t=<unix>,v1=<hex>") over body with
 * secret at time now (unix s): OK, or UNAUTHENTICATED with why. Constant
 * time in the signature's bytes. */
sb_status_t pay_webhook_verify(const char *header, const uint8_t *body, size_t len, const char *secret,
                               int64_t now, int tolerance_s, sb_buf_t *why);

/* ---- ledger.c ---- */

sb_rpc_handler_t pay_check_ledger;

#endif

/* ReceiveWebhook (POST /payments/webhook): the provider's signed events.
 *
 * The gateway hands over the body's exact bytes (the rpc's raw_body_field)
 * and the Provider-Signature header, "t=<unix>,v1=<hex HMAC-SHA256(secret,
 * "<t>.<body>")>". Refused with 401 UNAUTHENTICATED: a header that does not
 * parse, no v1 that matches (compared in constant time), a t further than
 * PROVIDER_WEBHOOK_TOLERANCE_S (300) from now (a replayed capture):
 * pay_webhook_verify, signature.c. Then,
 * in one transaction, the event id goes into webhook_events (a second
 * delivery, the provider's retries and duplicates, has no second effect:
 * duplicate = true) with the effect:
 *   payment.succeeded / payment.failed  settle a PENDING payment (as the
 *                                       reconciler would)
 *   charge.refunded                     an APPROVED payment whose charge is
 *                                       refunded in full becomes REFUNDED
 *                                       (a refund whose answer we missed)
 *   charge.disputed                     APPROVED -> DISPUTED, payment.disputed
 * Events of charges we do not know, and other types, are recorded and
 * answered 200 (the provider must not retry them forever). */
#include <string.h>

#include "payment.h"
#include "sb/log.h"
#include "sb/util.h"
#include "sb/valid.h"

static const sb_pg_stmt_t stmt_seen = {
    "pay_webhook_seen", "INSERT INTO webhook_events (event_id, type) VALUES ($1::text, $2::text)"
                        " ON CONFLICT (event_id) DO NOTHING RETURNING 1"};
/* The payment of a charge: by reference (our payment id), charge id or key. */
static const sb_pg_stmt_t stmt_of_charge = {
    "pay_of_charge", "SELECT payment_id::text FROM payments WHERE payment_id = $1::uuid"
                     " OR provider_ref = $2::text OR provider_key = $3::text"
                     " ORDER BY payment_id = $1::uuid DESC NULLS LAST LIMIT 1"};

/* The effect of a verified, new event on payment `id`. */
static sb_status_t apply(sb_rpc_ctx_t *ctx, const Sb__Provider__Event *ev, const char *id,
                         const Sb__Provider__Charge *ch)
{
    bool changed;
    pay_t p;
    if (!strcmp(ev->type, "payment.succeeded") || !strcmp(ev->type, "payment.failed"))
        return pay_settle(ctx->db, ctx->arena, id, ch, "provider", &p, &changed);
    if (!strcmp(ev->type, "charge.refunded")) {
        bool found;
        sb_status_t st = pay_load(ctx->db, ctx->arena, id, false, &p, &found);
        if (st != SB_OK || !found || ch->amount_refunded < p.msg->amount)
            return st; /* a partial refund is not ours: we refund in full */
        pay_change_t c = {.to = "REFUNDED",
                          .from = "{APPROVED,DISPUTED}",
                          .reason = p.refund_reason ? p.refund_reason : "refunded at the provider",
                          .refunded = ch->amount_refunded,
                          .actor = "provider",
                          .why = "charge.refunded"};
        return pay_transition(ctx->db, ctx->arena, id, &c, &p, &changed);
    }
    if (!strcmp(ev->type, "charge.disputed")) {
        pay_change_t c = {.to = "DISPUTED",
                          .from = "{APPROVED}",
                          .reason = "disputed by the card holder",
                          .refunded = -1,
                          .actor = "provider",
                          .why = sb_arena_printf(ctx->arena, "charge.disputed (%s)", ev->id)};
        sb_status_t st = pay_transition(ctx->db, ctx->arena, id, &c, &p, &changed);
        if (st == SB_OK && changed)
            sb_warn("payment %s DISPUTED by the card holder (charge %s)", id, ch->id);
        return st;
    }
    sb_info("webhook %s: type %s ignored", ev->id, ev->type);
    return SB_OK;
}

sb_status_t pay_webhook(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Payment__ProviderWebhookRequest *req = in;
    Sb__Payment__ProviderWebhookResponse *resp = out;
    sb_buf_t why = SB_BUF_INIT;
    sb_status_t st =
        pay_webhook_verify(req->signature, req->body.data, req->body.len, pay_config.webhook_secret,
                           sb_now_ms() / 1000, pay_config.webhook_tolerance_s, &why);
    if (st != SB_OK) {
        st = sb_rpc_fail(ctx, st, "%s", why.buf);
        sb_buf_release(&why);
        return st;
    }
    sb_buf_release(&why);
    Sb__Provider__Event *ev = (Sb__Provider__Event *)pay_provider_decode(
        ctx->arena, &sb__provider__event__descriptor, (const char *)req->body.data, req->body.len);
    if (!ev || !*ev->id || !*ev->type || strlen(ev->id) > 255 || strlen(ev->type) > 100)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "webhook body: an event with id and type");
    resp->event_id = ev->id;
    PGresult *r;
    if ((st = sb_db_exec(ctx->db, &stmt_seen, &r, ev->id, ev->type)) != SB_OK)
        return st;
    if (PQntuples(r) == 0) {
        resp->duplicate = true;
        sb_info("webhook %s (%s) seen before: nothing done", ev->id, ev->type);
        return SB_OK;
    }
    const Sb__Provider__Charge *ch = ev->data ? ev->data->object : NULL;
    if (!ch) {
        sb_info("webhook %s (%s) without a charge: recorded", ev->id, ev->type);
        return SB_OK;
    }
    const char *ref = sb_valid_uuid(ch->reference) ? sb_uuid_norm(ctx->arena, ch->reference) : NULL;
    if ((st = sb_db_exec(ctx->db, &stmt_of_charge, &r, ref, *ch->id ? ch->id : NULL,
                         *ch->idempotency_key ? ch->idempotency_key : NULL)) != SB_OK)
        return st;
    if (PQntuples(r) == 0) {
        sb_warn("webhook %s (%s): charge %s of no payment of ours: recorded", ev->id, ev->type, ch->id);
        return SB_OK;
    }
    return apply(ctx, ev, PQgetvalue(r, 0, 0), ch);
}

/* ReceiveWebhook (POST /payments/webhook): the provider's signed events.
 *
 * The gateway hands over the body's exact bytes (the rpc's raw_body_field)
 * and the Provider-Signature header, "t=<unix>,v1=<hex HMAC-SHA256(secret,
 * "<t>.<body>")>". Refused with 401 UNAUTHENTICATED: a header that does not
 * parse, no v1 that matches (compared in constant time), a t further than
 * PROVIDER_WEBHOOK_TOLERANCE_S (300) from now (a replayed capture). Then,
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
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payment.h"
#include "sb/log.h"
#include "sb/util.h"
#include "sb/valid.h"

#define SIG_HEX 64 /* hex digits of an HMAC-SHA256 */
#define HEADER_MAX 1024

static const sb_pg_stmt_t stmt_seen = {
    "pay_webhook_seen", "INSERT INTO webhook_events (event_id, type) VALUES ($1::text, $2::text)"
                        " ON CONFLICT (event_id) DO NOTHING RETURNING 1"};
/* The payment of a charge: by reference (our payment id), charge id or key. */
static const sb_pg_stmt_t stmt_of_charge = {
    "pay_of_charge", "SELECT payment_id::text FROM payments WHERE payment_id = $1::uuid"
                     " OR provider_ref = $2::text OR provider_key = $3::text"
                     " ORDER BY payment_id = $1::uuid DESC NULLS LAST LIMIT 1"};

sb_status_t pay_webhook_verify(const char *header, const uint8_t *body, size_t len, const char *secret,
                               int64_t now, int tolerance_s, sb_buf_t *why)
{
    if (!header || !*header || strlen(header) > HEADER_MAX) {
        sb_buf_adds(why, "webhook refused: no Provider-Signature header");
        return SB_UNAUTHENTICATED;
    }
    /* t=<digits> and every v1=<64 hex>, comma separated, in any order */
    long long t = -1;
    const char *v1[8];
    size_t n_v1 = 0;
    for (const char *p = header; *p;) {
        const char *end = strchr(p, ',');
        size_t l = end ? (size_t)(end - p) : strlen(p);
        if (l > 2 && !strncmp(p, "t=", 2)) {
            char *stop;
            t = strtoll(p + 2, &stop, 10);
            if (stop != p + l || t < 0)
                t = -1;
        } else if (l == 3 + SIG_HEX && !strncmp(p, "v1=", 3) && n_v1 < sizeof v1 / sizeof v1[0]) {
            v1[n_v1++] = p + 3;
        }
        p += l + (end ? 1 : 0);
    }
    if (t < 0 || n_v1 == 0) {
        sb_buf_adds(why, "webhook refused: Provider-Signature must be t=<unix time>,v1=<hex signature>");
        return SB_UNAUTHENTICATED;
    }
    /* HMAC-SHA256(secret, "<t>." body) */
    char prefix[32];
    int pl = snprintf(prefix, sizeof prefix, "%lld.", t);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    sb_buf_t msg = SB_BUF_INIT;
    sb_buf_add(&msg, prefix, (size_t)pl);
    sb_buf_add(&msg, body, len);
    bool ok = HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg.buf, msg.len,
                   mac, &mac_len) != NULL &&
              mac_len * 2 == SIG_HEX;
    sb_buf_release(&msg);
    if (!ok) {
        sb_buf_adds(why, "webhook refused: signature could not be computed");
        return SB_UNAUTHENTICATED;
    }
    static const char digits[] = "0123456789abcdef";
    char expect[SIG_HEX];
    for (unsigned i = 0; i < mac_len; i++) {
        expect[2 * i] = digits[mac[i] >> 4];
        expect[2 * i + 1] = digits[mac[i] & 15];
    }
    int match = 0;
    for (size_t i = 0; i < n_v1; i++) {
        char given[SIG_HEX];
        for (int k = 0; k < SIG_HEX; k++) /* lower case, without branching on the bytes */
            given[k] = (char)(v1[i][k] | ((v1[i][k] >= 'A' && v1[i][k] <= 'F') ? 0x20 : 0));
        match |= CRYPTO_memcmp(given, expect, SIG_HEX) == 0;
    }
    if (!match) {
        sb_buf_adds(why, "webhook refused: signature does not match");
        return SB_UNAUTHENTICATED;
    }
    if (t < now - tolerance_s || t > now + tolerance_s) {
        sb_buf_addf(why, "webhook refused: signature timestamp %lld is more than %d s from now", t,
                    tolerance_s);
        return SB_UNAUTHENTICATED;
    }
    return SB_OK;
}

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

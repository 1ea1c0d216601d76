/* The card provider's HTTP API (docs/payments.md section 1), through
 * sb_http_send. Requests are written here as the provider spells them
 * (snake_case names, amounts as plain integers); answers are decoded into
 * proto/provider.proto's messages with unknown fields skipped. The card
 * number goes into the request body and nowhere else: never a log line. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "payment.h"
#include "sb/json.h"
#include "sb/log.h"
#include "sb/util.h"

int64_t pay_provider_budget(const sb_rpc_ctx_t *ctx, int64_t margin_ms)
{
    int64_t t = pay_config.provider_timeout_ms;
    if (ctx) {
        int64_t left = sb_rpc_remaining_ms(ctx) - margin_ms;
        if (left < t)
            t = left;
    }
    return t;
}

ProtobufCMessage *pay_provider_decode(sb_arena_t *a, const ProtobufCMessageDescriptor *d,
                                      const char *body, size_t len)
{
    ProtobufCMessage *m = NULL;
    sb_buf_t err = SB_BUF_INIT;
    if (len == 0 || sb_json_decode_flags(d, body, len, SB_JSON_IGNORE_UNKNOWN, a, &m, &err) != SB_OK)
        m = NULL;
    sb_buf_release(&err);
    return m;
}

const char *pay_provider_error(sb_arena_t *a, const sb_http_response_t *resp)
{
    Sb__Provider__ErrorBody *e = (Sb__Provider__ErrorBody *)pay_provider_decode(
        a, &sb__provider__error_body__descriptor, resp->body, resp->body_len);
    if (!e || !e->error)
        return "";
    return e->error->message && *e->error->message ? e->error->message : e->error->type;
}

static sb_status_t send(sb_arena_t *a, const char *method, const char *path, const char *key,
                        const sb_buf_t *body, int64_t timeout_ms, sb_http_response_t *resp,
                        sb_buf_t *err)
{
    if (timeout_ms <= 0) {
        memset(resp, 0, sizeof *resp);
        sb_buf_adds(err, "no time left for the payment provider");
        return SB_DEADLINE_EXCEEDED;
    }
    sb_http_request_t rq = {
        .method = method,
        .url = sb_arena_printf(a, "%s%s", pay_config.provider_url, path),
        .body = body ? body->buf : NULL,
        .body_len = body ? body->len : 0,
        .content_type = body ? "application/json" : NULL,
        .idempotency_key = key,
        .timeout_ms = timeout_ms,
    };
    sb_status_t st = sb_http_send(&rq, a, resp, err);
    if (st == SB_OK)
        sb_debug("provider %s %s -> %d in %lld ms", method, path, resp->status,
                 (long long)resp->elapsed_ms);
    return st;
}

sb_status_t pay_provider_charge(sb_arena_t *a, const char *key, const char *payment_id, int64_t amount,
                                const char *card, int64_t timeout_ms, sb_http_response_t *resp,
                                Sb__Provider__Charge **charge, sb_buf_t *err)
{
    *charge = NULL;
    sb_buf_t body = SB_BUF_INIT;
    sb_buf_addf(&body, "{\"amount\":%lld,\"currency\":\"KRW\",\"card_number\":", (long long)amount);
    sb_buf_add_json_str(&body, card, strlen(card));
    sb_buf_adds(&body, ",\"reference\":");
    sb_buf_add_json_str(&body, payment_id, strlen(payment_id));
    sb_buf_addch(&body, '}');
    sb_status_t st = send(a, "POST", "/v1/charges", key, &body, timeout_ms, resp, err);
    /* the body held the card number: wipe it before it goes back to the heap */
    OPENSSL_cleanse(body.buf, body.len);
    sb_buf_release(&body);
    if (st == SB_OK && (resp->status == 201 || resp->status == 200 || resp->status == 402))
        *charge = (Sb__Provider__Charge *)pay_provider_decode(a, &sb__provider__charge__descriptor,
                                                              resp->body, resp->body_len);
    return st;
}

sb_status_t pay_provider_refund(sb_arena_t *a, const char *key, const char *charge_id, int64_t amount,
                                const char *reason, int64_t timeout_ms, sb_http_response_t *resp,
                                sb_buf_t *err)
{
    sb_buf_t body = SB_BUF_INIT;
    sb_buf_adds(&body, "{\"charge\":");
    sb_buf_add_json_str(&body, charge_id, strlen(charge_id));
    sb_buf_addf(&body, ",\"amount\":%lld,\"reason\":", (long long)amount);
    sb_buf_add_json_str(&body, reason, strlen(reason));
    sb_buf_addch(&body, '}');
    sb_status_t st = send(a, "POST", "/v1/refunds", key, &body, timeout_ms, resp, err);
    sb_buf_release(&body);
    return st;
}

sb_status_t pay_provider_get(sb_arena_t *a, const char *path, int64_t timeout_ms,
                             sb_http_response_t *resp, sb_buf_t *err)
{
    sb_status_t st = send(a, "GET", path, NULL, NULL, timeout_ms, resp, err);
    if (st == SB_OK && resp->status != 200) {
        sb_buf_addf(err, "GET %s answered %d %s", path, resp->status, pay_provider_error(a, resp));
        return SB_UNAVAILABLE;
    }
    return st;
}

/* A key is ours (pay_<uuid>): safe in a query string as it is. */
sb_status_t pay_provider_find(sb_arena_t *a, const char *key, int64_t timeout_ms,
                              Sb__Provider__Charge **charge, sb_buf_t *err)
{
    *charge = NULL;
    sb_http_response_t resp;
    sb_status_t st = pay_provider_get(a, sb_arena_printf(a, "/v1/charges?idempotency_key=%s", key),
                                      timeout_ms, &resp, err);
    if (st != SB_OK)
        return st;
    Sb__Provider__ChargeList *list = (Sb__Provider__ChargeList *)pay_provider_decode(
        a, &sb__provider__charge_list__descriptor, resp.body, resp.body_len);
    if (!list) {
        sb_buf_addf(err, "GET /v1/charges?idempotency_key=%s: not a charge list", key);
        return SB_UNAVAILABLE;
    }
    for (size_t i = 0; i < list->n_data; i++)
        if (list->data[i]->idempotency_key && !strcmp(list->data[i]->idempotency_key, key))
            *charge = list->data[i];
    if (!*charge && list->n_data == 1 && !*list->data[0]->idempotency_key)
        *charge = list->data[0]; /* a provider that does not echo the key */
    return SB_OK;
}

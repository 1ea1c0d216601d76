/* Outbound HTTP client (libcurl) for calls from a service to a system outside
 * the platform, the payment provider first. One function, a request struct
 * filled with designated initialisers, the answer in the call's arena:
 *
 *     Provider__ChargeRequest body = PROVIDER__CHARGE_REQUEST__INIT;
 *     ...
 *     sb_http_request_t rq = {
 *         .url = sb_arena_printf(ctx->arena, "%s/v1/charges", cfg.provider_url),
 *         .json = &body.base,                    // POST, Content-Type: application/json
 *         .idempotency_key = req->idempotency_key,
 *         .ctx = ctx,                            // deadline: the RPC's remaining time
 *         .response_type = &provider__charge__descriptor,
 *     };
 *     sb_http_response_t resp;
 *     sb_buf_t err = SB_BUF_INIT;
 *     sb_status_t st = sb_http_send(&rq, ctx->arena, &resp, &err);
 *     if (st != SB_OK)              // no answer: UNAVAILABLE, DEADLINE_EXCEEDED, ...
 *         sb_rpc_fail(ctx, st, "payment provider: %s", err.buf);
 *     sb_buf_release(&err);
 *     if (st != SB_OK)
 *         return st;
 *     if (resp.status == 402)       // an answer: the HTTP status is data
 *         return sb_rpc_fail(ctx, SB_FAILED_PRECONDITION, "card declined");
 *     const Provider__Charge *charge = (const Provider__Charge *)resp.message;
 *
 * Every request carries X-Trace-Id (the thread's current trace id, sb/log.h)
 * and, when given, Idempotency-Key. Redirects are never followed (a 3xx is
 * returned as data); only http:// and https:// URLs are accepted. Nothing is
 * retried here: after UNAVAILABLE on a POST the outcome is unknown, and the
 * caller retries with the same idempotency key (libcurl itself may resend a
 * request once when a kept-alive connection turns out closed before any reply
 * byte: one more reason for the key).
 *
 * Thread-safe: each thread keeps one curl handle (and so its open
 * connections) between calls; see common/src/http.c. Never hold a database
 * transaction across sb_http_send (CONVENTIONS: check remotely, then re-check
 * in the transaction). */
#ifndef SB_HTTP_H
#define SB_HTTP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "sb/arena.h"
#include "sb/buf.h"
#include "sb/rpc.h"
#include "sb/status.h"

#define SB_HTTP_DEFAULT_TIMEOUT_MS 10000 /* without ctx and timeout_ms */
#define SB_HTTP_DEFAULT_CONNECT_TIMEOUT_MS 3000
#define SB_HTTP_DEFAULT_MAX_RESPONSE (1u << 20) /* bytes */

typedef struct sb_http_header {
    const char *name;  /* no CR, LF or ':' */
    const char *value; /* no CR or LF */
} sb_http_header_t;

/* Per-call request; every pointer is borrowed for the duration of the call. */
typedef struct sb_http_request {
    const char *method; /* "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"; NULL: POST
                           when there is a body, GET otherwise */
    const char *url;    /* absolute http:// or https:// URL */
    /* Extra headers (e.g. Authorization). One named like a header set here
     * (Content-Type, Accept, User-Agent, X-Trace-Id, Idempotency-Key) replaces it. */
    const sb_http_header_t *headers;
    size_t n_headers;
    /* The body, at most one of: */
    const ProtobufCMessage *json; /* sent as JSON (sb/json.h), Content-Type: application/json */
    const void *body;             /* raw bytes (body_len), Content-Type: content_type */
    size_t body_len;
    const char *content_type;    /* for body; NULL = application/octet-stream */
    const char *idempotency_key; /* Idempotency-Key header; NULL or "" = none */
    /* Time limit: the calling RPC's remaining time (sb_rpc_remaining_ms), the
     * explicit timeout_ms, or the smaller of the two when both are given;
     * neither = SB_HTTP_DEFAULT_TIMEOUT_MS. */
    const sb_rpc_ctx_t *ctx;
    int64_t timeout_ms;         /* 0 = none of its own */
    int64_t connect_timeout_ms; /* 0 = SB_HTTP_DEFAULT_CONNECT_TIMEOUT_MS (never beyond the limit) */
    size_t max_response;        /* body cap in bytes; 0 = SB_HTTP_DEFAULT_MAX_RESPONSE */
    /* Parse a 2xx body into this message type (unknown fields and enum names
     * skipped: SB_JSON_IGNORE_UNKNOWN); sends Accept: application/json. */
    const ProtobufCMessageDescriptor *response_type;
} sb_http_request_t;

/* The answer; every pointer is owned by the arena given to sb_http_send. */
typedef struct sb_http_response {
    int status;       /* HTTP status; 0 when no answer came */
    const char *body; /* body_len bytes, NUL-terminated; "" when none */
    size_t body_len;
    const char *content_type;  /* "" when none */
    ProtobufCMessage *message; /* response_type parsed from a 2xx body; NULL otherwise */
    int64_t elapsed_ms;
} sb_http_response_t;

/* Sends req and waits for the answer (resp is always filled, zeroed first).
 *   OK                 an answer came, whatever its HTTP status (4xx/5xx are
 *                      data: resp->status and resp->body)
 *   UNAVAILABLE        no answer: connection refused or failed, name not
 *                      resolved, TLS failure, timed out (connect or total)
 *   DEADLINE_EXCEEDED  the calling RPC's deadline passed, before sending (then
 *                      nothing was sent) or while waiting
 *   INTERNAL           the answer broke the contract: larger than max_response,
 *                      or a 2xx body response_type cannot parse (resp->status
 *                      and, when not oversized, resp->body are still set)
 *   INVALID_ARGUMENT   req itself is unusable (bad URL, method or header);
 *                      nothing was sent
 * err gets the reason for every status but OK. */
sb_status_t sb_http_send(const sb_http_request_t *req, sb_arena_t *a, sb_http_response_t *resp,
                         sb_buf_t *err);

static inline bool sb_http_is_success(const sb_http_response_t *resp)
{
    return resp->status >= 200 && resp->status < 300;
}

/* Frees the calling thread's cached handle and its connections. Threads that
 * exit free theirs by themselves; call it from the main thread before exit (or
 * to drop idle connections). sb_http_send works again afterwards. */
void sb_http_thread_cleanup(void);

#endif

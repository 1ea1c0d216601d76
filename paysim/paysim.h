/* sb-paysim: the payment-provider simulator (docs/payments.md section 1).
 *
 *   main.c     configuration, the HTTP server (libmicrohttpd, a thread per
 *              connection), routing, delay / withheld answers, access log
 *   ledger.c   the provider's state in memory under one lock: charges,
 *              refunds, idempotency records, modes, totals
 *   webhook.c  the sender thread: a queue ordered by due time, signed POSTs,
 *              retries with backoff, the delayed dispute of card 0259
 *   map.c      a string-keyed hash table for the ledger
 *
 * Lock order: the ledger's lock, then the webhook queue's (the ledger queues
 * events while it holds its lock; the sender never calls the ledger while
 * it holds the queue's). */
#ifndef PAYSIM_H
#define PAYSIM_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"

/* ------------------------------------------------------------------ answers */

/* What a request gets: status and JSON body, and how it is delivered. */
typedef struct ps_answer {
    int status;
    sb_buf_t body; /* owned; released by the caller */
    bool withhold; /* timeout mode: the work is done, no answer is sent */
} ps_answer_t;

/* Fills a with {"error":{"type":type,"message":…}} and status. */
void ps_answer_error(ps_answer_t *a, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Fills a with obj (borrowed) as compact JSON and status. */
void ps_answer_json(ps_answer_t *a, int status, const json_t *obj);

/* Sleeps ms, or less when the server stops (main.c). */
void ps_wait_ms(int64_t ms);
bool ps_stopping(void);

/* -------------------------------------------------------------------- map */

typedef struct ps_map ps_map_t;
ps_map_t *ps_map_new(void);                              /* caller frees with ps_map_free */
void ps_map_free(ps_map_t *m, void (*free_val)(void *)); /* free_val NULL: values kept */
void *ps_map_get(const ps_map_t *m, const char *key);
void ps_map_put(ps_map_t *m, const char *key, void *val); /* key copied; replaces */
void *ps_map_del(ps_map_t *m, const char *key);           /* the value removed, or NULL */
size_t ps_map_size(const ps_map_t *m);

/* ----------------------------------------------------------------- ledger */

void ps_ledger_init(void);
void ps_ledger_free(void);

/* POST /v1/charges and POST /v1/refunds: key is the Idempotency-Key header
 * (NULL when absent), body/len the raw request body, trace the request's
 * trace id. May sleep (delay mode) before returning. */
void ps_ledger_charge(const char *key, const char *body, size_t len, const char *trace, ps_answer_t *a);
void ps_ledger_refund(const char *key, const char *body, size_t len, const char *trace, ps_answer_t *a);
void ps_ledger_get_charge(const char *id, ps_answer_t *a);
void ps_ledger_find_by_key(const char *key, ps_answer_t *a);
void ps_ledger_set_mode(const char *body, size_t len, ps_answer_t *a);
void ps_ledger_clear_modes(ps_answer_t *a);
void ps_ledger_totals(ps_answer_t *a);
void ps_ledger_list(ps_answer_t *a);
/* Card 0259's dispute, due now (called by the sender thread): marks the
 * charge disputed and queues charge.disputed. */
void ps_ledger_dispute(const char *charge_id);

/* ---------------------------------------------------------------- webhook */

typedef struct ps_webhook_cfg {
    const char *url;          /* "" = no webhooks; copied */
    const char *secret;       /* copied */
    int64_t retry_ms;         /* first retry delay, doubled up to 10 s */
    int64_t timeout_ms;       /* per attempt */
    int64_t duplicate_lag_ms; /* duplicate mode: the original follows its copy this late */
} ps_webhook_cfg_t;

/* Starts the sender thread; false if it cannot. */
bool ps_webhook_start(const ps_webhook_cfg_t *cfg);
/* Stops the thread; whatever is still queued is dropped (and logged). */
void ps_webhook_stop(void);
/* Queues event `type` about `object` (borrowed; serialised now, so the event
 * is a snapshot), with extra members of "data" from `extra` (borrowed, may be
 * NULL). trace: the X-Trace-Id it is sent with. duplicate: sent twice. */
void ps_webhook_event(const char *type, const json_t *object, const json_t *extra, const char *trace,
                      bool duplicate);
/* Calls ps_ledger_dispute(charge_id) from the sender thread delay_ms from now. */
void ps_webhook_dispute_later(const char *charge_id, int64_t delay_ms, const char *trace);
/* "t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>" into out (appended). */
void ps_webhook_sign(const char *secret, int64_t t, const char *body, size_t len, sb_buf_t *out);

#endif

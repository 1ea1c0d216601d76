/* The webhook sender: one thread, a queue in memory ordered by due time.
 *
 * An event is serialised when it is queued (a snapshot of the charge at that
 * moment) and signed when it is sent: Provider-Signature t=<now>,v1=<hex
 * HMAC-SHA256(secret, "<t>.<body>")>, a fresh t for every attempt, so a
 * receiver refusing old timestamps still accepts a late retry. A 2xx ends it;
 * no answer, a 5xx, 408 or 429 is retried after retry_ms, doubling up to
 * 10 s, for as long as the process runs; any other answer is logged and the
 * event dropped (the receiver refused it, sending again would not help).
 * Each attempt goes out with X-Trace-Id of the request behind the event.
 *
 * The queue also holds "dispute" items: card 0259's dispute, due
 * PAYSIM_DISPUTE_DELAY_MS after the charge, runs ps_ledger_dispute here,
 * which queues charge.disputed.
 *
 * Duplicate mode: the event is queued twice, the copy first and the
 * original duplicate_lag_ms later, so events queued in between (a refund
 * right after the charge) overtake the original: duplicated and out of
 * order, as real providers deliver. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "paysim.h"
#include "sb/alloc.h"
#include "sb/arena.h"
#include "sb/http.h"
#include "sb/log.h"
#include "sb/util.h"

#define MAX_BACKOFF_MS 10000

typedef struct item {
    int64_t due_ms; /* monotonic */
    bool dispute;   /* a dispute to run, not a webhook to send */
    char *body;     /* the event (webhook) or the charge id (dispute); owned */
    char event_id[32];
    char type[32];
    char trace[65];
    int attempts;
    int64_t backoff_ms;
    struct item *next;
} item_t;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, stop;
    item_t *head;
    char *url, *secret;
    int64_t retry_ms, timeout_ms, lag_ms;
} W = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int64_t mono_ms(void)
{
    return sb_mono_ns() / 1000000;
}

/* Inserts it after every item due no later (under the lock). */
static void insert_locked(item_t *it)
{
    item_t **p = &W.head;
    while (*p && (*p)->due_ms <= it->due_ms)
        p = &(*p)->next;
    it->next = *p;
    *p = it;
    pthread_cond_signal(&W.cv);
}

static void enqueue(item_t *it)
{
    pthread_mutex_lock(&W.mu);
    insert_locked(it);
    pthread_mutex_unlock(&W.mu);
}

void ps_webhook_sign(const char *secret, int64_t t, const char *body, size_t len, sb_buf_t *out)
{
    sb_buf_t signed_payload = SB_BUF_INIT;
    sb_buf_addf(&signed_payload, "%lld.", (long long)t);
    sb_buf_add(&signed_payload, body, len);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)signed_payload.buf,
              signed_payload.len, mac, &n))
        sb_oom(0); /* only fails when OpenSSL cannot allocate */
    sb_buf_addf(out, "t=%lld,v1=", (long long)t);
    for (unsigned int i = 0; i < n; i++)
        sb_buf_addf(out, "%02x", mac[i]);
    sb_buf_release(&signed_payload);
}

void ps_webhook_event(const char *type, const json_t *object, const json_t *extra, const char *trace,
                      bool duplicate)
{
    if (!W.url || !W.url[0])
        return;
    unsigned char r[12];
    sb_random_bytes(r, sizeof r);
    item_t *it = sb_calloc(1, sizeof *it);
    memcpy(it->event_id, "evt_", 4);
    for (size_t i = 0; i < sizeof r; i++) {
        it->event_id[4 + 2 * i] = "0123456789abcdef"[r[i] >> 4];
        it->event_id[5 + 2 * i] = "0123456789abcdef"[r[i] & 15];
    }
    snprintf(it->type, sizeof it->type, "%s", type);
    snprintf(it->trace, sizeof it->trace, "%s", trace ? trace : "");
    json_t *data = extra ? json_deep_copy(extra) : json_object();
    json_object_set_new(data, "object", json_deep_copy(object));
    json_t *evt = json_pack("{s:s,s:s,s:I,s:o}", "id", it->event_id, "type", type, "created",
                            (json_int_t)(sb_now_ms() / 1000), "data", data);
    it->body = json_dumps(evt, JSON_COMPACT);
    json_decref(evt);
    if (!it->body)
        sb_oom(0);
    it->backoff_ms = W.retry_ms;
    it->due_ms = mono_ms();
    if (duplicate) {
        item_t *copy = sb_malloc(sizeof *copy);
        *copy = *it;
        copy->body = sb_strdup(it->body);
        it->due_ms += W.lag_ms;
        pthread_mutex_lock(&W.mu);
        insert_locked(copy);
        insert_locked(it);
        pthread_mutex_unlock(&W.mu);
        return;
    }
    enqueue(it);
}

void ps_webhook_dispute_later(const char *charge_id, int64_t delay_ms, const char *trace)
{
    item_t *it = sb_calloc(1, sizeof *it);
    it->dispute = true;
    it->body = sb_strdup(charge_id);
    snprintf(it->trace, sizeof it->trace, "%s", trace ? trace : "");
    it->due_ms = mono_ms() + delay_ms;
    enqueue(it);
}

static void free_item(item_t *it)
{
    free(it->body);
    free(it);
}

/* One attempt; true when the item is finished (delivered or dropped). */
static bool send_once(item_t *it)
{
    sb_arena_t *a = sb_arena_new();
    sb_buf_t sig = SB_BUF_INIT, err = SB_BUF_INIT;
    size_t len = strlen(it->body);
    ps_webhook_sign(W.secret, sb_now_ms() / 1000, it->body, len, &sig);
    sb_http_header_t h[] = {{"Provider-Signature", sig.buf}};
    sb_http_request_t rq = {.method = "POST",
                            .url = W.url,
                            .headers = h,
                            .n_headers = 1,
                            .body = it->body,
                            .body_len = len,
                            .content_type = "application/json",
                            .timeout_ms = W.timeout_ms,
                            .max_response = 64 * 1024};
    sb_http_response_t resp;
    it->attempts++;
    sb_status_t st = sb_http_send(&rq, a, &resp, &err);
    bool done;
    if (st == SB_OK && sb_http_is_success(&resp)) {
        sb_info("webhook %s %s delivered (attempt %d, %d in %lld ms)", it->type, it->event_id,
                it->attempts, resp.status, (long long)resp.elapsed_ms);
        done = true;
    } else if (st == SB_OK && resp.status >= 400 && resp.status < 500 && resp.status != 408 &&
               resp.status != 429) {
        sb_warn("webhook %s %s refused with %d (attempt %d): dropped, not retried: %.200s", it->type,
                it->event_id, resp.status, it->attempts, resp.body);
        done = true;
    } else {
        sb_warn("webhook %s %s attempt %d failed (%s); retry in %lld ms", it->type, it->event_id,
                it->attempts, st == SB_OK ? "status" : err.buf, (long long)it->backoff_ms);
        if (st == SB_OK)
            sb_warn("webhook %s %s: the receiver answered %d: %.200s", it->type, it->event_id,
                    resp.status, resp.body);
        done = false;
    }
    sb_buf_release(&sig);
    sb_buf_release(&err);
    sb_arena_free(a);
    return done;
}

static void *sender(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&W.mu);
    while (!W.stop) {
        if (!W.head) {
            pthread_cond_wait(&W.cv, &W.mu);
            continue;
        }
        int64_t now = mono_ms();
        if (W.head->due_ms > now) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t wait = W.head->due_ms - now;
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (wait % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&W.cv, &W.mu, &ts);
            continue;
        }
        item_t *it = W.head;
        W.head = it->next;
        pthread_mutex_unlock(&W.mu);

        sb_log_set_trace(it->trace);
        if (it->dispute) {
            ps_ledger_dispute(it->body);
            free_item(it);
        } else if (send_once(it)) {
            free_item(it);
        } else {
            it->due_ms = mono_ms() + it->backoff_ms;
            it->backoff_ms = it->backoff_ms * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS : it->backoff_ms * 2;
            enqueue(it);
        }
        sb_log_set_trace(NULL);
        pthread_mutex_lock(&W.mu);
    }
    pthread_mutex_unlock(&W.mu);
    return NULL;
}

bool ps_webhook_start(const ps_webhook_cfg_t *cfg)
{
    W.url = sb_strdup(cfg->url);
    W.secret = sb_strdup(cfg->secret);
    W.retry_ms = cfg->retry_ms;
    W.timeout_ms = cfg->timeout_ms;
    W.lag_ms = cfg->duplicate_lag_ms;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&W.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&W.thread, NULL, sender, NULL) != 0)
        return false;
    W.started = true;
    return true;
}

void ps_webhook_stop(void)
{
    if (W.started) {
        pthread_mutex_lock(&W.mu);
        W.stop = true;
        pthread_cond_signal(&W.cv);
        pthread_mutex_unlock(&W.mu);
        pthread_join(W.thread, NULL);
        W.started = false;
    }
    int n = 0;
    for (item_t *it = W.head, *next; it; it = next) {
        next = it->next;
        free_item(it);
        n++;
    }
    W.head = NULL;
    if (n)
        sb_warn("stopping: %d queued webhooks or disputes dropped", n);
    free(W.url);
    free(W.secret);
    W.url = W.secret = NULL;
    pthread_cond_destroy(&W.cv);
}

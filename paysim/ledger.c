/* The provider's state, in memory under one lock (a restart forgets it all).
 *
 * Idempotency follows the card providers' model: a record per (endpoint,
 * key) holds a hash of the request body (canonical JSON: members sorted, no
 * spaces, so the same object sent twice matches whatever its layout) and,
 * once the request is done, the status and body of its answer. The record is
 * made before any work ("in flight": a second request with the key gets 409),
 * finished when the answer is known (in delay mode only after the delay, so
 * the 409 window is as long as the client's wait), and dropped when nothing
 * was done (validation errors, simulated 500s), so a retry runs again.
 *
 * The card number itself is never kept: a charge keeps its last four digits
 * and a SHA-256 fingerprint, which is also what modes are keyed by. */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paysim.h"
#include "sb/alloc.h"
#include "sb/config.h"
#include "sb/log.h"
#include "sb/util.h"

#define MAX_KEY 255
#define MAX_REFERENCE 200
#define MAX_AMOUNT 1000000000000LL /* 10^12 of the smallest unit */
#define MAX_DELAY_MS 120000

typedef struct charge {
    char id[32]; /* "ch_" + 24 hex */
    int64_t amount, refunded, created;
    char currency[4];
    bool succeeded, disputed;
    const char *failure_code; /* static; NULL when succeeded */
    char last4[5];
    char fp[65]; /* SHA-256 (hex) of the card number */
    char trace[65];
    char *reference; /* owned */
    char *key;       /* owned: the charge's Idempotency-Key */
} charge_t;

typedef struct idem {
    char hash[65]; /* of the canonical body */
    bool done;
    int status;
    char *body; /* owned, when done */
} idem_t;

typedef struct card_mode {
    int64_t delay_ms;
    bool timeout, duplicate;
    long fail_next;
    char last4[5]; /* "" for every card */
} card_mode_t;

static struct {
    pthread_mutex_t mu;
    ps_map_t *by_id, *by_key; /* charge_t, borrowed from all */
    ps_map_t *idem;           /* "<endpoint> <key>" -> idem_t */
    ps_map_t *modes;          /* fingerprint ("" = every card) -> card_mode_t */
    charge_t **all;           /* in creation order, owned */
    size_t n, cap;
    int64_t charged, refunded;
    long n_succeeded, n_failed, n_refunds, n_disputed;
    int64_t dispute_delay_ms;
} L = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* ---------------------------------------------------------------- answers */

void ps_answer_error(ps_answer_t *a, int status, const char *type, const char *fmt, ...)
{
    sb_buf_t msg = SB_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    sb_buf_vaddf(&msg, fmt, ap);
    va_end(ap);
    a->status = status;
    sb_buf_reset(&a->body);
    sb_buf_adds(&a->body, "{\"error\":{\"type\":");
    sb_buf_add_json_str(&a->body, type, strlen(type));
    sb_buf_adds(&a->body, ",\"message\":");
    sb_buf_add_json_str(&a->body, msg.buf, msg.len);
    sb_buf_adds(&a->body, "}}");
    sb_buf_release(&msg);
}

void ps_answer_json(ps_answer_t *a, int status, const json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    if (!s)
        sb_oom(0);
    a->status = status;
    sb_buf_reset(&a->body);
    sb_buf_adds(&a->body, s);
    free(s);
}

/* ------------------------------------------------------------------ setup */

static void free_idem(void *p)
{
    idem_t *r = p;
    free(r->body);
    free(r);
}

void ps_ledger_init(void)
{
    L.by_id = ps_map_new();
    L.by_key = ps_map_new();
    L.idem = ps_map_new();
    L.modes = ps_map_new();
    L.dispute_delay_ms = sb_cfg_int("PAYSIM_DISPUTE_DELAY_MS", 2000, 0, 3600000);
}

void ps_ledger_free(void)
{
    ps_map_free(L.by_id, NULL);
    ps_map_free(L.by_key, NULL);
    ps_map_free(L.idem, free_idem);
    ps_map_free(L.modes, free);
    for (size_t i = 0; i < L.n; i++) {
        free(L.all[i]->reference);
        free(L.all[i]->key);
        free(L.all[i]);
    }
    free(L.all);
}

/* ---------------------------------------------------------------- helpers */

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void sha256_hex(const void *data, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    if (EVP_Digest(data, n, md, &len, EVP_sha256(), NULL) != 1 || len != 32)
        sb_oom(0); /* only fails when OpenSSL cannot allocate */
    hex(md, 32, out);
}

static void new_id(const char *prefix, char *out, size_t n)
{
    unsigned char r[12];
    char h[25];
    sb_random_bytes(r, sizeof r);
    hex(r, sizeof r, h);
    snprintf(out, n, "%s%s", prefix, h);
}

static bool luhn_ok(const char *d, size_t n)
{
    int sum = 0;
    for (size_t i = 0; i < n; i++) {
        int v = d[n - 1 - i] - '0';
        if (i % 2 == 1 && (v *= 2) > 9)
            v -= 9;
        sum += v;
    }
    return sum % 10 == 0;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static bool valid_key(const char *k)
{
    size_t n = k ? strlen(k) : 0;
    if (n == 0 || n > MAX_KEY)
        return false;
    for (size_t i = 0; i < n; i++)
        if (k[i] < 0x21 || k[i] > 0x7e)
            return false;
    return true;
}

/* The request body as a JSON object (caller json_decref), or NULL with a 400. */
static json_t *parse_object(const char *body, size_t len, ps_answer_t *a)
{
    json_error_t jerr;
    json_t *o = json_loadb(len ? body : "{}", len ? len : 2, JSON_REJECT_DUPLICATES, &jerr);
    if (!o) {
        ps_answer_error(a, 400, "invalid_request_error", "the body is not JSON: %s", jerr.text);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        ps_answer_error(a, 400, "invalid_request_error", "the body must be a JSON object");
        return NULL;
    }
    return o;
}

/* An optional integer member in [min,max]: false with a 400 when present and
 * not one; *out untouched when absent. A string of decimal digits counts as
 * its number: the proto3 JSON mapping (sb/json.h, what the payment service
 * sends with) writes 64-bit integers as strings. */
static bool get_int(json_t *o, const char *name, int64_t min, int64_t max, int64_t *out, bool *present,
                    ps_answer_t *a)
{
    json_t *v = json_object_get(o, name);
    if (present)
        *present = v != NULL;
    if (!v)
        return true;
    long long n = 0;
    bool ok = json_is_integer(v);
    if (ok) {
        n = json_integer_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = strlen(s);
        ok = len > 0 && len <= 18 && len == json_string_length(v) && all_digits(s, len);
        n = ok ? strtoll(s, NULL, 10) : 0;
    }
    if (!ok || n < min || n > max) {
        ps_answer_error(a, 400, "invalid_request_error", "%s must be an integer from %lld to %lld", name,
                        (long long)min, (long long)max);
        return false;
    }
    *out = n;
    return true;
}

/* An optional string member of at most max bytes (NULL when absent). */
static bool get_str(json_t *o, const char *name, size_t max, const char **out, ps_answer_t *a)
{
    json_t *v = json_object_get(o, name);
    *out = NULL;
    if (!v)
        return true;
    if (!json_is_string(v) || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        ps_answer_error(a, 400, "invalid_request_error", "%s must be a string of at most %zu bytes",
                        name, max);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

static json_t *charge_json(const charge_t *c)
{
    return json_pack("{s:s,s:s,s:I,s:I,s:s,s:s,s:o,s:s,s:s,s:s,s:b,s:I}", "id", c->id, "object",
                     "charge", "amount", (json_int_t)c->amount, "amount_refunded",
                     (json_int_t)c->refunded, "currency", c->currency, "status",
                     c->succeeded ? "succeeded" : "failed", "failure_code",
                     c->failure_code ? json_string(c->failure_code) : json_null(), "card_last4",
                     c->last4, "reference", c->reference, "idempotency_key", c->key, "disputed",
                     (int)c->disputed, "created", (json_int_t)c->created);
}

/* The mode for fingerprint fp (its own, else the one for every card);
 * borrowed, under the lock; NULL when none. */
static card_mode_t *mode_for(const char *fp)
{
    card_mode_t *m = ps_map_get(L.modes, fp);
    return m ? m : ps_map_get(L.modes, "");
}

/* ------------------------------------------------------------ idempotency */

/* Starts request (endpoint, key): true when the caller runs it (a record is
 * in flight under slot); false when a holds the answer already: 400 without
 * a key, 409 in flight, 422 another body, or the stored answer. */
static bool idem_begin(const char *endpoint, const char *key, const char *body, size_t len,
                       sb_buf_t *slot, ps_answer_t *a)
{
    if (!key) {
        ps_answer_error(a, 400, "invalid_request_error", "the Idempotency-Key header is required");
        return false;
    }
    if (!valid_key(key)) {
        ps_answer_error(a, 400, "invalid_request_error",
                        "the Idempotency-Key must be 1 to %d printable ASCII characters", MAX_KEY);
        return false;
    }
    char h[65];
    json_t *o = json_loadb(body, len, 0, NULL);
    char *canon = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    if (canon)
        sha256_hex(canon, strlen(canon), h);
    else
        sha256_hex(body, len, h);
    free(canon);
    json_decref(o);

    sb_buf_addf(slot, "%s %s", endpoint, key);
    bool run = false;
    pthread_mutex_lock(&L.mu);
    idem_t *r = ps_map_get(L.idem, slot->buf);
    if (!r) {
        r = sb_calloc(1, sizeof *r);
        memcpy(r->hash, h, sizeof r->hash);
        ps_map_put(L.idem, slot->buf, r);
        run = true;
    } else if (strcmp(r->hash, h) != 0) {
        ps_answer_error(a, 422, "idempotency_error",
                        "this Idempotency-Key was used with another request body");
    } else if (!r->done) {
        ps_answer_error(a, 409, "idempotency_error",
                        "a request with this Idempotency-Key is still in progress");
    } else {
        a->status = r->status;
        sb_buf_reset(&a->body);
        sb_buf_adds(&a->body, r->body);
    }
    pthread_mutex_unlock(&L.mu);
    if (!run)
        sb_info("%s: Idempotency-Key %.64s: answered %d without running it", endpoint, key, a->status);
    return run;
}

/* Records the answer (under the lock). */
static void idem_finish_locked(const char *slot, const ps_answer_t *a)
{
    idem_t *r = ps_map_get(L.idem, slot);
    if (!r)
        return;
    r->done = true;
    r->status = a->status;
    free(r->body);
    r->body = sb_strdup(a->body.buf);
}

/* Drops the record: nothing was done, a retry runs again. */
static void idem_release(const char *slot)
{
    pthread_mutex_lock(&L.mu);
    free_idem(ps_map_del(L.idem, slot));
    pthread_mutex_unlock(&L.mu);
}

/* The end of a request that did its work: delay mode waits first, with the
 * record in flight; timeout mode withholds the answer. */
static void deliver(const char *slot, int64_t delay_ms, bool timeout, ps_answer_t *a)
{
    if (delay_ms > 0) {
        sb_info("delay mode: answering in %lld ms", (long long)delay_ms);
        ps_wait_ms(delay_ms);
    }
    pthread_mutex_lock(&L.mu);
    idem_finish_locked(slot, a);
    pthread_mutex_unlock(&L.mu);
    a->withhold = timeout;
}

/* ---------------------------------------------------------------- charges */

static const char CARD_DECLINED[] = "4000000000000002";
static const char CARD_NO_FUNDS[] = "4000000000009995";
static const char CARD_ERROR[] = "4000000000000119";
static const char CARD_DISPUTE[] = "4000000000000259";

void ps_ledger_charge(const char *key, const char *body, size_t len, const char *trace, ps_answer_t *a)
{
    sb_buf_t slot = SB_BUF_INIT;
    json_t *in = NULL;
    if (!idem_begin("charges", key, body, len, &slot, a))
        goto out;
    if (!(in = parse_object(body, len, a)))
        goto out_release;
    int64_t amount = 0;
    bool has_amount = false;
    const char *currency, *card, *reference;
    if (!get_int(in, "amount", 1, MAX_AMOUNT, &amount, &has_amount, a) ||
        !get_str(in, "currency", 3, &currency, a) || !get_str(in, "card_number", 19, &card, a) ||
        !get_str(in, "reference", MAX_REFERENCE, &reference, a))
        goto out_release;
    if (!has_amount) {
        ps_answer_error(a, 400, "invalid_request_error", "amount is required");
        goto out_release;
    }
    if (!currency || strlen(currency) != 3 || currency[0] < 'A' || currency[0] > 'Z' ||
        currency[1] < 'A' || currency[1] > 'Z' || currency[2] < 'A' || currency[2] > 'Z') {
        ps_answer_error(a, 400, "invalid_request_error", "currency must be 3 capital letters (KRW)");
        goto out_release;
    }
    if (!card || strlen(card) != 16 || !all_digits(card, 16) || !luhn_ok(card, 16)) {
        ps_answer_error(a, 400, "invalid_request_error",
                        "card_number must be 16 digits passing the Luhn check");
        goto out_release;
    }
    char fp[65];
    sha256_hex(card, 16, fp);

    pthread_mutex_lock(&L.mu);
    card_mode_t *m = mode_for(fp);
    if ((m && m->fail_next > 0) || !strcmp(card, CARD_ERROR)) {
        bool simulated = m && m->fail_next > 0;
        if (simulated)
            m->fail_next--;
        pthread_mutex_unlock(&L.mu);
        sb_warn("charge of card ...%s: 500 api_error (%s); nothing recorded", card + 12,
                simulated ? "fail_next mode" : "test card 0119");
        ps_answer_error(a, 500, "api_error",
                        "the provider failed to process the charge; nothing was charged");
        goto out_release;
    }
    int64_t delay_ms = m ? m->delay_ms : 0;
    bool timeout = m && m->timeout, duplicate = m && m->duplicate;

    charge_t *c = sb_calloc(1, sizeof *c);
    new_id("ch_", c->id, sizeof c->id);
    c->amount = amount;
    c->created = sb_now_ms() / 1000;
    memcpy(c->currency, currency, 4);
    memcpy(c->last4, card + 12, 5);
    memcpy(c->fp, fp, sizeof c->fp);
    snprintf(c->trace, sizeof c->trace, "%s", trace);
    c->reference = sb_strdup(reference ? reference : "");
    c->key = sb_strdup(key);
    if (!strcmp(card, CARD_DECLINED))
        c->failure_code = "card_declined";
    else if (!strcmp(card, CARD_NO_FUNDS))
        c->failure_code = "insufficient_funds";
    c->succeeded = !c->failure_code;
    if (L.n == L.cap) {
        L.cap = L.cap ? 2 * L.cap : 64;
        L.all = sb_realloc(L.all, L.cap * sizeof *L.all);
    }
    L.all[L.n++] = c;
    ps_map_put(L.by_id, c->id, c);
    ps_map_put(L.by_key, c->key, c);
    if (c->succeeded) {
        L.charged += amount;
        L.n_succeeded++;
    } else {
        L.n_failed++;
    }
    json_t *obj = charge_json(c);
    ps_answer_json(a, c->succeeded ? 201 : 402, obj);
    ps_webhook_event(c->succeeded ? "payment.succeeded" : "payment.failed", obj, NULL, c->trace,
                     duplicate);
    if (c->succeeded && !strcmp(card, CARD_DISPUTE))
        ps_webhook_dispute_later(c->id, L.dispute_delay_ms, c->trace);
    json_decref(obj);
    pthread_mutex_unlock(&L.mu);

    sb_info("charge %s %s: %lld %s, card ...%s, reference %.64s%s", c->id,
            c->succeeded ? "succeeded" : c->failure_code, (long long)amount, c->currency, c->last4,
            c->reference, timeout ? " (timeout mode: the answer is withheld)" : "");
    deliver(slot.buf, delay_ms, timeout, a);
    goto out;

out_release:
    idem_release(slot.buf);
out:
    json_decref(in);
    sb_buf_release(&slot);
}

void ps_ledger_get_charge(const char *id, ps_answer_t *a)
{
    pthread_mutex_lock(&L.mu);
    charge_t *c = ps_map_get(L.by_id, id);
    json_t *obj = c ? charge_json(c) : NULL;
    pthread_mutex_unlock(&L.mu);
    if (!obj) {
        ps_answer_error(a, 404, "invalid_request_error", "no such charge: %.64s", id);
        return;
    }
    ps_answer_json(a, 200, obj);
    json_decref(obj);
}

void ps_ledger_find_by_key(const char *key, ps_answer_t *a)
{
    json_t *data = json_array();
    pthread_mutex_lock(&L.mu);
    charge_t *c = ps_map_get(L.by_key, key);
    if (c)
        json_array_append_new(data, charge_json(c));
    pthread_mutex_unlock(&L.mu);
    json_t *o = json_pack("{s:o}", "data", data);
    ps_answer_json(a, 200, o);
    json_decref(o);
}

/* ---------------------------------------------------------------- refunds */

void ps_ledger_refund(const char *key, const char *body, size_t len, const char *trace, ps_answer_t *a)
{
    sb_buf_t slot = SB_BUF_INIT;
    json_t *in = NULL;
    if (!idem_begin("refunds", key, body, len, &slot, a))
        goto out;
    if (!(in = parse_object(body, len, a)))
        goto out_release;
    const char *charge_id, *reason;
    int64_t amount = 0;
    bool has_amount = false;
    if (!get_str(in, "charge", 64, &charge_id, a) || !get_str(in, "reason", MAX_REFERENCE, &reason, a) ||
        !get_int(in, "amount", 0, MAX_AMOUNT, &amount, &has_amount, a))
        goto out_release;
    has_amount = has_amount && amount > 0; /* 0 = omitted (a proto3 default) */
    if (!charge_id || !*charge_id) {
        ps_answer_error(a, 400, "invalid_request_error", "charge is required");
        goto out_release;
    }

    pthread_mutex_lock(&L.mu);
    charge_t *c = ps_map_get(L.by_id, charge_id);
    int64_t left = c ? c->amount - c->refunded : 0;
    if (!c || !c->succeeded || (has_amount ? amount : left) > left || left == 0) {
        pthread_mutex_unlock(&L.mu);
        if (!c)
            ps_answer_error(a, 404, "invalid_request_error", "no such charge: %.64s", charge_id);
        else if (!c->succeeded)
            ps_answer_error(a, 400, "invalid_request_error", "charge %s failed: nothing to refund",
                            c->id);
        else
            ps_answer_error(a, 400, "invalid_request_error",
                            "refund of %lld is above what is left of charge %s (%lld)",
                            (long long)(has_amount ? amount : left), c->id, (long long)left);
        goto out_release;
    }
    if (!has_amount)
        amount = left;
    card_mode_t *m = mode_for(c->fp);
    int64_t delay_ms = m ? m->delay_ms : 0;
    bool timeout = m && m->timeout, duplicate = m && m->duplicate;
    c->refunded += amount;
    L.refunded += amount;
    L.n_refunds++;
    char id[32];
    new_id("re_", id, sizeof id);
    json_t *refund = json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:I}", "id", id, "object", "refund", "charge",
                               c->id, "amount", (json_int_t)amount, "status", "succeeded", "reason",
                               reason ? reason : "", "created", (json_int_t)(sb_now_ms() / 1000));
    json_t *obj = charge_json(c), *extra = json_pack("{s:O}", "refund", refund);
    ps_answer_json(a, 201, refund);
    ps_webhook_event("charge.refunded", obj, extra, trace, duplicate);
    json_decref(extra);
    json_decref(obj);
    json_decref(refund);
    int64_t refunded = c->refunded, total = c->amount;
    pthread_mutex_unlock(&L.mu);

    sb_info("refund %s of charge %s: %lld (refunded %lld of %lld)%s", id, charge_id, (long long)amount,
            (long long)refunded, (long long)total,
            timeout ? " (timeout mode: the answer is withheld)" : "");
    deliver(slot.buf, delay_ms, timeout, a);
    goto out;

out_release:
    idem_release(slot.buf);
out:
    json_decref(in);
    sb_buf_release(&slot);
}

void ps_ledger_dispute(const char *charge_id)
{
    pthread_mutex_lock(&L.mu);
    charge_t *c = ps_map_get(L.by_id, charge_id);
    if (c && !c->disputed) {
        c->disputed = true;
        L.n_disputed++;
        card_mode_t *m = mode_for(c->fp);
        json_t *obj = charge_json(c);
        ps_webhook_event("charge.disputed", obj, NULL, c->trace, m && m->duplicate);
        json_decref(obj);
        sb_info("charge %s disputed by the card holder (%lld %s)", c->id, (long long)c->amount,
                c->currency);
    }
    pthread_mutex_unlock(&L.mu);
}

/* ------------------------------------------------------------------ admin */

void ps_ledger_set_mode(const char *body, size_t len, ps_answer_t *a)
{
    json_t *in = parse_object(body, len, a);
    if (!in)
        return;
    const char *card = NULL, *name;
    json_t *v;
    card_mode_t m = {0};
    int64_t fail_next = 0;
    json_object_foreach(in, name, v)
    {
        if (strcmp(name, "card_number") && strcmp(name, "delay_ms") && strcmp(name, "timeout") &&
            strcmp(name, "duplicate_webhooks") && strcmp(name, "fail_next")) {
            ps_answer_error(a, 400, "invalid_request_error", "unknown mode field %.64s", name);
            goto out;
        }
    }
    if (!get_str(in, "card_number", 19, &card, a) ||
        !get_int(in, "delay_ms", 0, MAX_DELAY_MS, &m.delay_ms, NULL, a) ||
        !get_int(in, "fail_next", 0, 1000000, &fail_next, NULL, a))
        goto out;
    if (card && *card && (strlen(card) < 12 || !all_digits(card, strlen(card)))) {
        ps_answer_error(a, 400, "invalid_request_error",
                        "card_number must be 12 to 19 digits, or empty");
        goto out;
    }
    json_t *t = json_object_get(in, "timeout"), *d = json_object_get(in, "duplicate_webhooks");
    if ((t && !json_is_boolean(t)) || (d && !json_is_boolean(d))) {
        ps_answer_error(a, 400, "invalid_request_error", "timeout and duplicate_webhooks are booleans");
        goto out;
    }
    m.timeout = json_is_true(t);
    m.duplicate = json_is_true(d);
    m.fail_next = (long)fail_next;
    char fp[65] = "";
    if (card && *card) {
        sha256_hex(card, strlen(card), fp);
        snprintf(m.last4, sizeof m.last4, "%s", card + strlen(card) - 4);
    }
    card_mode_t *stored = sb_malloc(sizeof *stored);
    *stored = m;
    pthread_mutex_lock(&L.mu);
    free(ps_map_del(L.modes, fp));
    ps_map_put(L.modes, fp, stored);
    pthread_mutex_unlock(&L.mu);
    json_t *o = json_pack("{s:s,s:I,s:b,s:b,s:I}", "card_last4", m.last4, "delay_ms",
                          (json_int_t)m.delay_ms, "timeout", (int)m.timeout, "duplicate_webhooks",
                          (int)m.duplicate, "fail_next", (json_int_t)m.fail_next);
    ps_answer_json(a, 200, o);
    json_decref(o);
    sb_info("mode for %s%s: delay %lld ms, timeout %s, duplicate webhooks %s, fail next %ld",
            m.last4[0] ? "card ..." : "every card", m.last4, (long long)m.delay_ms,
            m.timeout ? "on" : "off", m.duplicate ? "on" : "off", m.fail_next);
out:
    json_decref(in);
}

void ps_ledger_clear_modes(ps_answer_t *a)
{
    pthread_mutex_lock(&L.mu);
    size_t n = ps_map_size(L.modes);
    ps_map_free(L.modes, free);
    L.modes = ps_map_new();
    pthread_mutex_unlock(&L.mu);
    json_t *o = json_pack("{s:I}", "cleared", (json_int_t)n);
    ps_answer_json(a, 200, o);
    json_decref(o);
    sb_info("modes cleared (%zu)", n);
}

void ps_ledger_totals(ps_answer_t *a)
{
    pthread_mutex_lock(&L.mu);
    json_t *o = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "charged", (json_int_t)L.charged, "refunded",
                          (json_int_t)L.refunded, "charges", (json_int_t)L.n_succeeded, "failed",
                          (json_int_t)L.n_failed, "refunds", (json_int_t)L.n_refunds, "disputed",
                          (json_int_t)L.n_disputed);
    pthread_mutex_unlock(&L.mu);
    ps_answer_json(a, 200, o);
    json_decref(o);
}

void ps_ledger_list(ps_answer_t *a)
{
    json_t *data = json_array();
    pthread_mutex_lock(&L.mu);
    for (size_t i = 0; i < L.n; i++)
        json_array_append_new(data, charge_json(L.all[i]));
    pthread_mutex_unlock(&L.mu);
    json_t *o = json_pack("{s:o}", "data", data);
    ps_answer_json(a, 200, o);
    json_decref(o);
}

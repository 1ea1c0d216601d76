/* The local denylist; see sb/denylist.h.
 *
 * One thread per process runs sessions: a session is a connection of its
 * own (sb_redis_connect) that SUBSCRIBEs, loads, then reads messages with
 * poll() between ticks (TICK_MS). The load and the marker checks go through
 * the pool (sb_redis_call). A session ends when the connection breaks, a
 * PING goes unanswered for PING_DEAD_MS, or the set overflows; the lease is
 * dropped at once and the next session starts after RETRY_MS.
 *
 * The lease (live_until_ns, monotonic) is the only thing requests read
 * besides the set: an atomic, set by the thread on each pong and cleared
 * (0) whenever the copy may be behind. A request that finds the lease run
 * out asks Redis, whatever the thread is doing (even blocked in a call to a
 * stalled Redis). */
#include "sb/denylist.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/alloc.h"
#include "sb/authn.h"
#include "sb/events.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/revset.h"
#include "sb/util.h"

#define TICK_MS 200
#define LEASE_MS 800
#define PING_DEAD_MS 2000
#define RETRY_MS 200
#define OVERFLOW_RETRY_MS 30000
#define LOAD_BATCH 1000
#define SWEEP_BUCKETS 8192

struct sb_denylist {
    sb_redis_t *redis; /* borrowed */
    sb_revset_t *set;
    pthread_t thread;
    atomic_bool stop;
    _Atomic int64_t live_until_ns; /* the lease: 0 while stale */
    char channel[96], marker[96];
    char marker_value[160]; /* the marker seen by the last load (thread only) */
    bool quiet;             /* an outage already logged (thread only) */
};

/* One batch of the load: SCAN from ARGV[1] for keys matching ARGV[2], then
 * each string's value and PTTL. {next cursor, key, value, pttl, ...}. */
static const char lua_load[] =
    "local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3]) "
    "local out = {r[1]} "
    "for _, k in ipairs(r[2]) do "
    "local v = redis.pcall('GET', k) "
    "if type(v) == 'string' then "
    "out[#out + 1] = k out[#out + 1] = v out[#out + 1] = redis.call('PTTL', k) "
    "end end "
    "return out";

void sb_denylist_channel(char *out, size_t n)
{
    const char *ns = sb_namespace();
    snprintf(out, n, "sb:deny-events%s%s", *ns ? ":" : "", ns);
}

static void stale(sb_denylist_t *d)
{
    atomic_store(&d->live_until_ns, 0);
}

bool sb_denylist_live(sb_denylist_t *d)
{
    return sb_mono_ns() < atomic_load(&d->live_until_ns);
}

bool sb_denylist_check(sb_denylist_t *d, const char *jti, const char *sub, int64_t iat_ms, bool *revoked)
{
    if (!sb_denylist_live(d))
        return false;
    *revoked = sb_revset_revoked(d->set, jti, sub, iat_ms, sb_now_ms());
    return true;
}

static bool stopping(sb_denylist_t *d)
{
    return atomic_load(&d->stop);
}

/* Sleeps ms, waking every 50 ms to see whether to stop. */
static void nap(sb_denylist_t *d, int64_t ms)
{
    for (int64_t t = 0; t < ms && !stopping(d); t += 50)
        sb_sleep_ms(50);
}

/* The marker's value into out: 1 present, 0 missing, -1 Redis cannot answer. */
static int get_marker(sb_denylist_t *d, char *out, size_t n)
{
    sb_buf_t err = SB_BUF_INIT;
    redisReply *rep = NULL;
    int r = -1;
    if (sb_redis_call(d->redis, &rep, &err, "GET %s", d->marker) == SB_OK) {
        if (rep->type == REDIS_REPLY_STRING) {
            snprintf(out, n, "%s", rep->str);
            r = 1;
        } else if (rep->type == REDIS_REPLY_NIL) {
            r = 0;
        }
    }
    if (rep)
        freeReplyObject(rep);
    sb_buf_release(&err);
    return r;
}

/* Applies one entry (a message or a loaded key); false when the set is full. */
static bool apply(sb_denylist_t *d, const char *key, const char *value, long long px)
{
    int64_t now = sb_now_ms();
    int64_t exp = px >= 0 ? now + px : INT64_MAX / 2; /* no TTL (-1): kept until reloaded */
    return sb_revset_put(d->set, key, value, exp, now);
}

/* The whole denylist into the (cleared) set, framed by two reads of the
 * marker that must agree. 1 loaded, 0 not now (no marker yet, Redis
 * unavailable, the marker changed meanwhile), -1 the set is full. */
static int load(sb_denylist_t *d)
{
    char before[160], after[160];
    int m = get_marker(d, before, sizeof before);
    if (m <= 0) {
        if (!d->quiet)
            sb_info("local denylist waiting for %s: %s", d->marker,
                    m ? "Redis unavailable" : "missing (auth rebuilds the denylist)");
        d->quiet = true;
        return 0;
    }
    int64_t t0 = sb_mono_ns();
    sb_revset_clear(d->set);
    char cursor[32] = "0";
    sb_buf_t err = SB_BUF_INIT;
    int result = 0;
    do {
        redisReply *rep = NULL;
        if (sb_redis_call(d->redis, &rep, &err, "EVAL %s 0 %s %s %d", lua_load, cursor, "sb:deny*",
                          LOAD_BATCH) != SB_OK ||
            rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
            rep->element[0]->type != REDIS_REPLY_STRING) {
            if (!d->quiet)
                sb_warn("local denylist: load failed: %s", err.len ? err.buf
                                                           : rep && rep->type == REDIS_REPLY_ERROR
                                                               ? rep->str
                                                               : "bad reply");
            d->quiet = true;
            if (rep)
                freeReplyObject(rep);
            goto out;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        for (size_t i = 1; i + 2 < rep->elements; i += 3) {
            const redisReply *k = rep->element[i], *v = rep->element[i + 1], *t = rep->element[i + 2];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
                t->type != REDIS_REPLY_INTEGER || t->integer == -2)
                continue;
            if (!apply(d, k->str, v->str, t->integer)) {
                freeReplyObject(rep);
                result = -1;
                goto out;
            }
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0 && !stopping(d));
    if (get_marker(d, after, sizeof after) != 1 || strcmp(before, after) != 0) {
        sb_info("local denylist: %s changed during the load; loading again", d->marker);
        goto out;
    }
    snprintf(d->marker_value, sizeof d->marker_value, "%s", before);
    sb_metrics_count("sb_authn_revocations_reloads_total", 1);
    sb_info("local denylist loaded: %zu revocations in %lld ms (%s \"%s\"); subscribed to %s",
            sb_revset_size(d->set), (long long)((sb_mono_ns() - t0) / 1000000), d->marker, before,
            d->channel);
    d->quiet = false;
    result = 1;
out:
    sb_buf_release(&err);
    return result;
}

/* One reply read on the subscription. A message is applied; a pong ends
 * the pending PING (*ping_sent) and, when loaded, extends the lease from the
 * PING's send time. false when the set is full. */
static bool handle(sb_denylist_t *d, const redisReply *r, bool loaded, int64_t *ping_sent)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || r->element[0]->type != REDIS_REPLY_STRING)
        return true;
    const char *kind = r->element[0]->str;
    if (!strcmp(kind, "message") && r->elements == 3 && r->element[2]->type == REDIS_REPLY_STRING) {
        /* "<key>\t<value>\t<px>" */
        char *msg = sb_strdup(r->element[2]->str);
        char *tab1 = strchr(msg, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        bool ok = true;
        if (tab2) {
            *tab1 = *tab2 = '\0';
            ok = apply(d, msg, tab1 + 1, strtoll(tab2 + 1, NULL, 10));
        } else {
            sb_error("local denylist: message on %s does not parse: \"%.64s\"", d->channel, msg);
        }
        free(msg);
        return ok;
    }
    if (!strcmp(kind, "pong") && *ping_sent) {
        if (loaded)
            atomic_store(&d->live_until_ns, *ping_sent + (int64_t)LEASE_MS * 1000000);
        *ping_sent = 0;
    }
    return true;
}

/* Drains the replies hiredis has read. false when the set is full or the
 * reader failed (*broken). */
static bool drain(sb_denylist_t *d, redisContext *c, bool loaded, int64_t *ping_sent, bool *broken)
{
    for (;;) {
        void *r = NULL;
        if (redisGetReplyFromReader(c, &r) != REDIS_OK) {
            *broken = true;
            return true;
        }
        if (!r)
            return true;
        bool ok = handle(d, r, loaded, ping_sent);
        freeReplyObject(r);
        if (!ok)
            return false;
    }
}

static void gauges(sb_denylist_t *d)
{
    sb_metrics_gauge("sb_authn_revocations_cached", (double)sb_revset_size(d->set));
    sb_metrics_gauge("sb_authn_revocations_live", sb_denylist_live(d) ? 1 : 0);
}

/* Over the bound: dropped, logged, counted; every call asks Redis until a
 * load fits, tried again after OVERFLOW_RETRY_MS. */
static void overflow(sb_denylist_t *d)
{
    stale(d);
    sb_error("local denylist over REVOCATION_CACHE_MAX (%zu entries): dropped; every call asks Redis; "
             "loading again in %d s",
             sb_revset_max(d->set), OVERFLOW_RETRY_MS / 1000);
    sb_metrics_count("sb_authn_revocations_overflows_total", 1);
    sb_revset_clear(d->set);
    gauges(d);
    nap(d, OVERFLOW_RETRY_MS);
}

/* One subscription, until it breaks (or the set overflows, or stop). */
static void session(sb_denylist_t *d)
{
    sb_buf_t err = SB_BUF_INIT;
    redisContext *c = sb_redis_connect(d->redis, &err);
    redisReply *rep = NULL;
    if (!c)
        goto out;
    rep = redisCommand(c, "SUBSCRIBE %s", d->channel);
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3) {
        sb_buf_addf(&err, "SUBSCRIBE %s failed: %s", d->channel,
                    !rep                             ? c->errstr
                    : rep->type == REDIS_REPLY_ERROR ? rep->str
                                                     : "unexpected reply");
        goto out;
    }
    bool loaded = false, broken = false;
    int64_t ping_sent = 0, next_tick = 0;
    while (!stopping(d)) {
        int64_t now = sb_mono_ns();
        if (now >= next_tick) {
            next_tick = now + (int64_t)TICK_MS * 1000000;
            if (!loaded) {
                int l = load(d);
                if (l < 0) {
                    overflow(d);
                    goto out;
                }
                loaded = l == 1;
            }
            char mark[160];
            int m = loaded ? get_marker(d, mark, sizeof mark) : -1;
            if (m == 0 || (m == 1 && strcmp(mark, d->marker_value) != 0)) {
                stale(d);
                loaded = false;
                sb_warn("local denylist: %s %s; every call asks Redis until it is loaded again",
                        d->marker,
                        m ? "changed (the denylist was rebuilt)" : "gone (Redis lost the denylist)");
            } else if (m == 1 && !ping_sent) {
                /* no lease while the marker cannot be read: Redis may have lost it */
                ping_sent = sb_mono_ns();
                if (redisAppendCommand(c, "PING") != REDIS_OK) {
                    broken = true;
                } else {
                    int done = 0;
                    while (!done && !broken)
                        broken = redisBufferWrite(c, &done) != REDIS_OK;
                }
                if (broken) {
                    sb_buf_addf(&err, "PING failed: %s", c->errstr);
                    goto out;
                }
            }
            if (ping_sent && sb_mono_ns() - ping_sent > (int64_t)PING_DEAD_MS * 1000000) {
                sb_buf_addf(&err, "no answer to PING within %d ms", PING_DEAD_MS);
                goto out;
            }
            sb_revset_sweep(d->set, sb_now_ms(), SWEEP_BUCKETS);
            gauges(d);
        }
        if (!drain(d, c, loaded, &ping_sent, &broken)) {
            overflow(d);
            goto out;
        }
        if (broken) {
            sb_buf_addf(&err, "%s", c->errstr);
            goto out;
        }
        int wait_ms = (int)((next_tick - sb_mono_ns()) / 1000000) + 1;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int n = poll(&p, 1, wait_ms > 0 ? wait_ms : 0);
        if (n < 0 && errno != EINTR) {
            sb_buf_addf(&err, "poll: %s", strerror(errno));
            goto out;
        }
        if (n > 0 && redisBufferRead(c) != REDIS_OK) {
            sb_buf_addf(&err, "%s", c->errstr[0] ? c->errstr : "connection lost");
            goto out;
        }
    }
out:
    stale(d);
    if (err.len && !stopping(d)) {
        if (!d->quiet)
            sb_warn(
                "local denylist: subscription to %s lost (%s); every call asks Redis until it is back",
                d->channel, err.buf);
        else
            sb_debug("local denylist: %s", err.buf);
        d->quiet = true;
    }
    gauges(d);
    if (rep)
        freeReplyObject(rep);
    if (c)
        redisFree(c);
    sb_buf_release(&err);
}

static void *run(void *arg)
{
    sb_denylist_t *d = arg;
    while (!stopping(d)) {
        session(d);
        nap(d, RETRY_MS);
    }
    return NULL;
}

sb_denylist_t *sb_denylist_start(sb_redis_t *redis, size_t max)
{
    sb_denylist_t *d = sb_calloc(1, sizeof *d);
    d->redis = redis;
    d->set = sb_revset_new(max);
    sb_denylist_channel(d->channel, sizeof d->channel);
    sb_denylist_marker(d->marker, sizeof d->marker);
    if (pthread_create(&d->thread, NULL, run, d) != 0) {
        sb_error("local denylist: cannot start its thread; every call asks Redis");
        sb_revset_free(d->set);
        free(d);
        return NULL;
    }
    return d;
}

void sb_denylist_stop(sb_denylist_t *d)
{
    if (!d)
        return;
    atomic_store(&d->stop, true);
    pthread_join(d->thread, NULL);
    sb_revset_free(d->set);
    free(d);
}

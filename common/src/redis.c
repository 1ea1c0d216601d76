/* Redis client; see sb/redis.h.
 *
 * A small pool. REDIS_POOL_SIZE connections (default 4), each behind its own
 * mutex; a call takes the first one free, starting from a rotating index, and
 * waits for one only when all are busy. With a single connection, the flash
 * sale's 1,024 gateway connections queued on its mutex for longer than the
 * timeout (503s in docs/benchmarks.md); commands are short, so a few
 * connections keep the queue short without a connection per thread.
 *
 * Failing fast. Every wait is bounded by REDIS_TIMEOUT_MS: the connect, each
 * command's send and reply (socket timeouts), and the wait for a
 * connection's mutex (a caller behind a stalled command gives up instead of
 * queueing behind it). A command that timed out is not retried: the server
 * is stalled and a retry would double the wait; the connection is dropped
 * (its reply may still come and would answer the next command).
 *
 * Reconnecting. A connection the server closed (restart, CLIENT KILL,
 * timeout) is replaced at once and the command sent again. After a failure
 * to connect or a timeout, Redis counts as down: calls fail at once, without
 * touching the network, until the backoff (100 ms doubling to 1 s) has
 * passed; then the next call tries again. So a dead Redis costs each call
 * nothing and a recovered one is used again within a second. The down state
 * is the pool's, not a connection's (guarded by state_mu). */
#include "sb/redis.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sb/alloc.h"
#include "sb/config.h"
#include "sb/util.h"
#include "sb/log.h"
#include "sb/util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000

#define POOL_MAX 64

typedef struct conn {
    pthread_mutex_t mu;
    redisContext *ctx;
} conn_t;

struct sb_redis {
    char host[256];
    int port, db;
    int timeout_ms;
    int n_conns;
    conn_t conns[POOL_MAX];
    unsigned next; /* rotating start of the search for a free connection */
    pthread_mutex_t state_mu;
    /* down: no connect attempt before retry_at_ns; why in down_reason */
    bool down;
    int64_t retry_at_ns;
    int backoff_ms;
    char down_reason[192];
};

static bool parse_url(sb_redis_t *r, const char *url, sb_buf_t *err)
{
    const char *p = url;
    if (!strncmp(p, "redis://", 8))
        p += 8;
    const char *at = strchr(p, '@'); /* credentials not supported: loopback only */
    if (at)
        p = at + 1;
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl >= sizeof r->host) {
        sb_buf_addf(err, "bad REDIS_URL %s", url);
        return false;
    }
    memcpy(r->host, p, hl);
    r->host[hl] = '\0';
    p += hl;
    r->port = 6379;
    r->db = 0;
    if (*p == ':')
        r->port = atoi(p + 1);
    const char *slash = strchr(p, '/');
    if (slash && slash[1])
        r->db = atoi(slash + 1);
    if (r->port <= 0 || r->port > 65535) {
        sb_buf_addf(err, "bad port in REDIS_URL %s", url);
        return false;
    }
    return true;
}

/* Redis counts as down from now on (first failure logged as an error, the
 * following ones at debug); the connection, if any, is dropped. */
static void mark_down(sb_redis_t *r, conn_t *c, const char *why, sb_buf_t *err)
{
    if (c->ctx) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }
    pthread_mutex_lock(&r->state_mu);
    if (!r->down)
        sb_error("redis %s:%d unavailable: %s", r->host, r->port, why);
    else
        sb_debug("redis %s:%d still unavailable: %s", r->host, r->port, why);
    r->down = true;
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (r->backoff_ms > BACKOFF_MAX_MS)
        r->backoff_ms = BACKOFF_MAX_MS;
    r->retry_at_ns = sb_mono_ns() + (int64_t)r->backoff_ms * 1000000;
    snprintf(r->down_reason, sizeof r->down_reason, "%s", why);
    pthread_mutex_unlock(&r->state_mu);
    sb_buf_addf(err, "redis %s:%d unavailable: %s", r->host, r->port, why);
}

static void mark_up(sb_redis_t *r)
{
    pthread_mutex_lock(&r->state_mu);
    if (r->down)
        sb_info("redis %s:%d reachable again", r->host, r->port);
    r->down = false;
    r->backoff_ms = 0;
    pthread_mutex_unlock(&r->state_mu);
}

/* True when the failed context timed out (rather than lost its connection). */
static bool timed_out(const redisContext *c, int saved_errno)
{
    return c->err == REDIS_ERR_IO &&
           (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || saved_errno == ETIMEDOUT);
}

/* Connects c (whose mutex the caller holds), unless Redis is in its backoff. */
static bool connect_locked(sb_redis_t *r, conn_t *conn, sb_buf_t *err)
{
    if (conn->ctx) {
        redisFree(conn->ctx);
        conn->ctx = NULL;
    }
    pthread_mutex_lock(&r->state_mu);
    bool backoff = r->down && sb_mono_ns() < r->retry_at_ns;
    if (backoff)
        sb_buf_addf(err, "redis %s:%d unavailable: %s (next attempt in %lld ms)", r->host, r->port,
                    r->down_reason, (long long)((r->retry_at_ns - sb_mono_ns()) / 1000000 + 1));
    pthread_mutex_unlock(&r->state_mu);
    if (backoff)
        return false;
    struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(r->host, r->port, tv);
    if (!c || c->err) {
        char why[160];
        snprintf(why, sizeof why, "cannot connect: %s", c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        mark_down(r, conn, why, err);
        return false;
    }
    redisSetTimeout(c, tv);
    conn->ctx = c;
    if (r->db) {
        redisReply *rep = redisCommand(c, "SELECT %d", r->db);
        if (!rep) {
            mark_down(r, conn, "no answer to SELECT", err);
            return false;
        }
        freeReplyObject(rep);
    }
    return true; /* up again once it answers a command */
}

sb_redis_t *sb_redis_new(const char *url, sb_buf_t *err)
{
    sb_redis_t *r = sb_calloc(1, sizeof *r);
    pthread_mutex_init(&r->state_mu, NULL);
    r->timeout_ms = (int)sb_cfg_int("REDIS_TIMEOUT_MS", 500, 10, 60000);
    r->n_conns = (int)sb_cfg_int("REDIS_POOL_SIZE", 4, 1, POOL_MAX);
    for (int i = 0; i < r->n_conns; i++)
        pthread_mutex_init(&r->conns[i].mu, NULL);
    if (!parse_url(r, url, err)) {
        sb_redis_free(r);
        return NULL;
    }
    /* the first connection now (a warning if Redis is down), the others on first use */
    sb_buf_t ignore = SB_BUF_INIT;
    if (!connect_locked(r, &r->conns[0], &ignore))
        sb_warn("%s (will retry on use)", ignore.buf);
    sb_buf_release(&ignore);
    return r;
}

void sb_redis_free(sb_redis_t *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_conns; i++) {
        if (r->conns[i].ctx)
            redisFree(r->conns[i].ctx);
        pthread_mutex_destroy(&r->conns[i].mu);
    }
    pthread_mutex_destroy(&r->state_mu);
    free(r);
}

static sb_status_t vcall(sb_redis_t *r, redisReply **out, sb_buf_t *err, const char *fmt, va_list ap)
{
    *out = NULL;
    /* wait for the connection no longer than for an answer */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += r->timeout_ms / 1000;
    until.tv_nsec += (long)(r->timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    /* the first free connection from a rotating start, else wait for that one */
    unsigned start = __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED) % (unsigned)r->n_conns;
    conn_t *c = NULL;
    for (int i = 0; i < r->n_conns && !c; i++) {
        conn_t *t = &r->conns[(start + (unsigned)i) % (unsigned)r->n_conns];
        if (pthread_mutex_trylock(&t->mu) == 0)
            c = t;
    }
    if (!c) {
        if (pthread_mutex_timedlock(&r->conns[start].mu, &until) != 0) {
            sb_buf_addf(err, "redis %s:%d unavailable: busy, no answer within %d ms", r->host, r->port,
                        r->timeout_ms);
            sb_debug("%s", err->buf);
            return SB_UNAVAILABLE;
        }
        c = &r->conns[start];
    }
    for (int attempt = 0; attempt < 2 && !*out; attempt++) {
        if (!c->ctx && !connect_locked(r, c, err))
            break;
        va_list aq;
        va_copy(aq, ap);
        *out = redisvCommand(c->ctx, fmt, aq);
        int saved_errno = errno;
        va_end(aq);
        if (*out) {
            mark_up(r);
            break;
        }
        if (timed_out(c->ctx, saved_errno)) {
            char why[64];
            snprintf(why, sizeof why, "no answer within %d ms", r->timeout_ms);
            mark_down(r, c, why, err);
            break;
        }
        /* the server closed the connection (restart, CLIENT KILL): once more
         * on a new one */
        sb_warn("redis %s:%d: %s; reconnecting", r->host, r->port,
                c->ctx->errstr[0] ? c->ctx->errstr : "connection lost");
        redisFree(c->ctx);
        c->ctx = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (*out)
        return SB_OK;
    if (!err->len)
        sb_buf_addf(err, "redis %s:%d unavailable: connection lost", r->host, r->port);
    return SB_UNAVAILABLE;
}

sb_status_t sb_redis_vcall(sb_redis_t *r, redisReply **out, sb_buf_t *err, const char *fmt, va_list ap)
{
    return vcall(r, out, err, fmt, ap);
}

sb_status_t sb_redis_call(sb_redis_t *r, redisReply **out, sb_buf_t *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_status_t st = vcall(r, out, err, fmt, ap);
    va_end(ap);
    return st;
}

redisReply *sb_redis_cmd(sb_redis_t *r, sb_buf_t *err, const char *fmt, ...)
{
    redisReply *rep;
    va_list ap;
    va_start(ap, fmt);
    vcall(r, &rep, err, fmt, ap);
    va_end(ap);
    return rep;
}

redisContext *sb_redis_connect(sb_redis_t *r, sb_buf_t *err)
{
    struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(r->host, r->port, tv);
    if (!c || c->err) {
        sb_buf_addf(err, "redis %s:%d: cannot connect: %s", r->host, r->port,
                    c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

bool sb_redis_ping(sb_redis_t *r)
{
    sb_buf_t err = SB_BUF_INIT;
    redisReply *rep;
    bool ok = sb_redis_call(r, &rep, &err, "PING") == SB_OK && rep->type == REDIS_REPLY_STATUS;
    if (rep)
        freeReplyObject(rep);
    sb_buf_release(&err);
    return ok;
}

sb_status_t sb_rate_limit(sb_redis_t *r, const char *scope, const char *client, long limit,
                          sb_buf_t *err)
{
    long minute = (long)(sb_now_ms() / 60000);
    sb_buf_t rerr = SB_BUF_INIT;
    redisReply *rep = NULL;
    sb_status_t st = sb_redis_call(r, &rep, &rerr, "EVAL %s 1 sb:rl:%s:%s:%ld 60",
                                   "local n = redis.call('INCR', KEYS[1]) "
                                   "if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n",
                                   scope, client, minute);
    if (st != SB_OK) {
        sb_buf_addf(err, "rate limiter unavailable: %s", rerr.buf);
    } else if (rep->type != REDIS_REPLY_INTEGER) {
        sb_buf_addf(err, "rate limiter unavailable: unexpected reply %s",
                    rep->type == REDIS_REPLY_ERROR ? rep->str : "");
        st = SB_UNAVAILABLE;
    } else if (rep->integer > limit) {
        sb_buf_addf(err, "too many attempts from %s; try again in a minute", client);
        st = SB_RESOURCE_EXHAUSTED;
    }
    if (rep)
        freeReplyObject(rep);
    sb_buf_release(&rerr);
    return st;
}

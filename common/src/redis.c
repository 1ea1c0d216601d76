#include "sb/redis.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sb/alloc.h"
#include "sb/log.h"

struct sb_redis {
    char host[256];
    int port, db;
    redisContext *ctx;
    pthread_mutex_t mu;
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

static bool connect_locked(sb_redis_t *r, sb_buf_t *err)
{
    if (r->ctx)
        redisFree(r->ctx);
    struct timeval tv = {2, 0};
    r->ctx = redisConnectWithTimeout(r->host, r->port, tv);
    if (!r->ctx || r->ctx->err) {
        sb_buf_addf(err, "cannot connect to Redis %s:%d: %s", r->host, r->port,
                    r->ctx ? r->ctx->errstr : "out of memory");
        if (r->ctx)
            redisFree(r->ctx);
        r->ctx = NULL;
        return false;
    }
    redisSetTimeout(r->ctx, tv);
    if (r->db) {
        redisReply *rep = redisCommand(r->ctx, "SELECT %d", r->db);
        if (rep)
            freeReplyObject(rep);
    }
    return true;
}

sb_redis_t *sb_redis_new(const char *url, sb_buf_t *err)
{
    sb_redis_t *r = sb_calloc(1, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    if (!parse_url(r, url, err)) {
        sb_redis_free(r);
        return NULL;
    }
    sb_buf_t ignore = SB_BUF_INIT;
    if (!connect_locked(r, &ignore))
        sb_warn("%s (will retry on use)", ignore.buf);
    sb_buf_release(&ignore);
    return r;
}

void sb_redis_free(sb_redis_t *r)
{
    if (!r)
        return;
    if (r->ctx)
        redisFree(r->ctx);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

redisReply *sb_redis_cmd(sb_redis_t *r, sb_buf_t *err, const char *fmt, ...)
{
    redisReply *rep = NULL;
    pthread_mutex_lock(&r->mu);
    for (int attempt = 0; attempt < 2 && !rep; attempt++) {
        if (!r->ctx && !connect_locked(r, err))
            break;
        va_list ap;
        va_start(ap, fmt);
        rep = redisvCommand(r->ctx, fmt, ap);
        va_end(ap);
        if (!rep) {
            sb_warn("redis: %s; reconnecting", r->ctx->errstr);
            redisFree(r->ctx);
            r->ctx = NULL;
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (!rep) {
        if (!err->len)
            sb_buf_adds(err, "redis unavailable");
        sb_error("redis command failed: %s", err->buf);
    }
    return rep;
}

bool sb_redis_ping(sb_redis_t *r)
{
    sb_buf_t err = SB_BUF_INIT;
    redisReply *rep = sb_redis_cmd(r, &err, "PING");
    bool ok = rep && rep->type == REDIS_REPLY_STATUS;
    if (rep)
        freeReplyObject(rep);
    sb_buf_release(&err);
    return ok;
}

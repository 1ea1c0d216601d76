/* End-user authentication for the gateway and every service; see sb/authn.h.
 *
 * Verified-token cache: an ES256 verification costs ~90 us, and a client
 * sends the same token many times (and every hop of one request verifies it
 * again). A slot keeps a token that passed sb_jwt_verify_es256 with its
 * claims; a later call with the byte-same token reuses the claims after
 * re-checking what can change for the same bytes: expiry. A key removed from
 * the key set (rotation) stops being honoured when its cached tokens expire
 * (at most the access-token lifetime).
 *
 * Revocation: the local denylist (sb/denylist.h) answers while its
 * subscription holds its lease, with no network I/O; otherwise (starting
 * up, subscription lost, over REVOCATION_CACHE_MAX, or turned off with
 * REVOCATION_CACHE_MAX=0) the Redis denylist is asked on the call, and when
 * Redis cannot answer (within REDIS_TIMEOUT_MS, sb/redis.h) or the denylist
 * is incomplete (no marker: Redis restarted empty and auth has not rebuilt
 * it yet) the call is refused (UNAVAILABLE): fail closed. */
#include "sb/authn.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/alloc.h"
#include "sb/config.h"
#include "sb/denylist.h"
#include "sb/events.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/util.h"

#define CACHE_SLOTS 1024

struct slot {
    pthread_mutex_t mu;
    char *token; /* heap copy, NULL when empty */
    sb_jwt_claims_t claims;
};

struct sb_authn {
    sb_jwt_keyset_t *keys;
    sb_redis_t *redis;    /* borrowed */
    sb_denylist_t *local; /* NULL: turned off (REVOCATION_CACHE_MAX=0) */
    struct slot cache[CACHE_SLOTS];
};

sb_authn_t *sb_authn_from_env(sb_redis_t *redis, sb_buf_t *err)
{
    sb_jwt_keyset_t *ks = sb_jwt_keyset_from_env(err);
    if (!ks)
        return NULL;
    sb_authn_t *a = sb_calloc(1, sizeof *a);
    a->keys = ks;
    a->redis = redis;
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        pthread_mutex_init(&a->cache[i].mu, NULL);
    long max = sb_cfg_int("REVOCATION_CACHE_MAX", 1000000, 0, 1000000000);
    if (max > 0 && redis)
        a->local = sb_denylist_start(redis, (size_t)max);
    return a;
}

void sb_authn_free(sb_authn_t *a)
{
    if (!a)
        return;
    sb_denylist_stop(a->local);
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        free(a->cache[i].token);
        pthread_mutex_destroy(&a->cache[i].mu);
    }
    sb_jwt_keyset_free(a->keys);
    free(a);
}

static uint64_t token_hash(const char *t)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *t; t++)
        h = (h ^ (unsigned char)*t) * 1099511628211ULL;
    return h;
}

static sb_status_t verify_cached(sb_authn_t *a, const char *token, int64_t now, sb_jwt_claims_t *out,
                                 sb_buf_t *err)
{
    struct slot *s = &a->cache[token_hash(token) % CACHE_SLOTS];
    pthread_mutex_lock(&s->mu);
    bool hit = s->token && strcmp(s->token, token) == 0 && now < s->claims.exp;
    if (hit)
        *out = s->claims;
    pthread_mutex_unlock(&s->mu);
    sb_metrics_count(hit ? "sb_authn_cache_hits_total" : "sb_authn_cache_misses_total", 1);
    if (hit)
        return SB_OK;
    sb_status_t st = sb_jwt_verify_es256(a->keys, token, now, out, err);
    if (st == SB_OK) {
        char *copy = sb_strdup(token);
        pthread_mutex_lock(&s->mu);
        char *old = s->token;
        s->token = copy;
        s->claims = *out;
        pthread_mutex_unlock(&s->mu);
        free(old);
    }
    return st;
}

void sb_denylist_marker(char *out, size_t n)
{
    const char *ns = sb_namespace();
    snprintf(out, n, "sb:deny-epoch%s%s", *ns ? ":" : "", ns);
}

/* At most one line a second for a condition every call meets (Redis down,
 * denylist being rebuilt): the first is logged, the rest only counted. */
static bool log_now(_Atomic int64_t *last)
{
    int64_t now = sb_mono_ns(), prev = atomic_load(last);
    return now - prev >= 1000000000LL && atomic_compare_exchange_strong(last, &prev, now);
}

/* Is the verified token c revoked? One MGET of its entry, its user's entry
 * and the marker (sb/authn.h). An entry that says revoked wins over a missing
 * marker (401, not 503); a user entry that does not parse counts as "all". */
static sb_status_t check_denylist(sb_authn_t *a, const sb_jwt_claims_t *c, sb_buf_t *err)
{
    static _Atomic int64_t last_down, last_incomplete;
    char marker[96];
    sb_denylist_marker(marker, sizeof marker);
    sb_buf_t rerr = SB_BUF_INIT;
    redisReply *r =
        sb_redis_cmd(a->redis, &rerr, "MGET " SB_DENY_TOKEN_PREFIX "%s " SB_DENY_USER_PREFIX "%s %s",
                     c->jti, c->sub, marker);
    sb_status_t st = SB_OK;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        sb_metrics_count("sb_authn_denylist_unavailable_total", 1);
        if (log_now(&last_down))
            sb_error("cannot check the denylist for token %s: %s", c->jti,
                     !r                             ? rerr.buf
                     : r->type == REDIS_REPLY_ERROR ? r->str
                                                    : "unexpected reply");
        sb_buf_adds(err, "cannot check token revocation now; try again");
        st = SB_UNAVAILABLE;
        goto out;
    }
    const redisReply *tok = r->element[0], *user = r->element[1], *mark = r->element[2];
    if (tok->type == REDIS_REPLY_STRING) {
        sb_buf_adds(err, "token revoked");
        st = SB_UNAUTHENTICATED;
        goto out;
    }
    if (user->type == REDIS_REPLY_STRING) {
        char *end = NULL;
        long long before = strcmp(user->str, SB_DENY_USER_ALL) ? strtoll(user->str, &end, 10) : 0;
        if (end && (end == user->str || *end))
            sb_error("denylist entry of user %s does not parse (\"%.32s\"): every token refused", c->sub,
                     user->str);
        if (!end || *end || end == user->str || c->iat_ms < before) {
            sb_buf_adds(err, "token revoked");
            st = SB_UNAUTHENTICATED;
            goto out;
        }
    }
    if (mark->type != REDIS_REPLY_STRING) {
        sb_metrics_count("sb_authn_denylist_incomplete_total", 1);
        if (log_now(&last_incomplete))
            sb_warn(
                "denylist incomplete (no %s in Redis: it restarted empty); refusing tokens until the "
                "auth service has rebuilt it",
                marker);
        sb_buf_adds(err, "token revocation list is being rebuilt; try again in a few seconds");
        st = SB_UNAVAILABLE;
    }
out:
    if (r)
        freeReplyObject(r);
    sb_buf_release(&rerr);
    return st;
}

sb_status_t sb_authn_verify(sb_authn_t *a, const char *token, sb_jwt_claims_t *out, sb_buf_t *err)
{
    memset(out, 0, sizeof *out);
    if (!token || !*token) {
        sb_buf_adds(err, "missing bearer token");
        return SB_UNAUTHENTICATED;
    }
    sb_status_t st = verify_cached(a, token, sb_now_ms() / 1000, out, err);
    if (st != SB_OK)
        return st;
    bool revoked = false;
    if (a->local && sb_denylist_check(a->local, out->jti, out->sub, out->iat_ms, &revoked)) {
        if (revoked) {
            sb_buf_adds(err, "token revoked");
            st = SB_UNAUTHENTICATED;
        }
    } else {
        if (a->local)
            sb_metrics_count("sb_authn_denylist_fallbacks_total", 1);
        st = check_denylist(a, out, err);
    }
    if (st != SB_OK)
        memset(out, 0, sizeof *out);
    return st;
}

bool sb_authn_local_denylist_live(sb_authn_t *a)
{
    return a->local && sb_denylist_live(a->local);
}

void sb_authn_jwks(sb_authn_t *a, sb_buf_t *out)
{
    sb_jwt_keyset_jwks(a->keys, out);
}

/* Per-call cost of authenticating an end user (sb/authn.h), in parts:
 *   es256   sb_jwt_verify_es256 alone (what the verified-token cache saves)
 *   local   sb_authn_verify with the token cached and the local denylist
 *           live (sb/denylist.h): the cache lookup and two hash lookups
 *   cached  the same with REVOCATION_CACHE_MAX=0: the cache lookup plus the
 *           Redis denylist MGET
 *   redis   the denylist MGET alone (token entry, user entry, marker)
 * One thread, N calls each, prints the median of 5 batches in microseconds.
 *
 *   eval "$(deploy/local/pki.sh env .cache/pki auth)"; build/bench/bench-authn [calls=2000]
 * (JWT_SIGNING_KEY_FILE signs the token, JWT_PUBLIC_KEYS_DIR verifies it,
 * REDIS_URL is the denylist; its marker is set here if missing, as the auth
 * service would after a rebuild.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/authn.h"
#include "sb/config.h"
#include "sb/jwt.h"
#include "sb/log.h"
#include "sb/util.h"

#define BATCHES 5

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum part { ES256, LOCAL, CACHED, REDIS };

static char marker[96];

static double batch(enum part p, int n, sb_jwt_keyset_t *ks, sb_authn_t *an, sb_authn_t *an_redis,
                    sb_redis_t *r, const char *tok)
{
    int64_t t0 = sb_mono_ns();
    for (int i = 0; i < n; i++) {
        sb_jwt_claims_t c;
        sb_buf_t err = SB_BUF_INIT;
        sb_status_t st = SB_OK;
        if (p == ES256)
            st = sb_jwt_verify_es256(ks, tok, sb_now_ms() / 1000, &c, &err);
        else if (p == LOCAL)
            st = sb_authn_verify(an, tok, &c, &err);
        else if (p == CACHED)
            st = sb_authn_verify(an_redis, tok, &c, &err);
        else {
            redisReply *rep = sb_redis_cmd(r, &err, "MGET sb:deny:bench sb:deny-user:bench %s", marker);
            st = rep ? SB_OK : SB_UNAVAILABLE;
            if (rep)
                freeReplyObject(rep);
        }
        if (st != SB_OK) {
            fprintf(stderr, "bench-authn: %s\n", err.buf);
            exit(1);
        }
        sb_buf_release(&err);
    }
    return (double)(sb_mono_ns() - t0) / 1e3 / n;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    sb_log_init("bench-authn");
    sb_log_set_level(SB_LOG_WARN);
    sb_buf_t err = SB_BUF_INIT;
    sb_jwt_signer_t *s = sb_jwt_signer_from_env(&err);
    sb_jwt_keyset_t *ks = s ? sb_jwt_keyset_from_env(&err) : NULL;
    sb_redis_t *r = ks ? sb_redis_new(sb_cfg_str("REDIS_URL", "redis://127.0.0.1:6379"), &err) : NULL;
    sb_authn_t *an = r ? sb_authn_from_env(r, &err) : NULL;
    setenv("REVOCATION_CACHE_MAX", "0", 1);
    sb_authn_t *an_redis = an ? sb_authn_from_env(r, &err) : NULL;
    if (!an_redis) {
        fprintf(stderr, "bench-authn: %s\n", err.buf);
        return 1;
    }
    sb_denylist_marker(marker, sizeof marker);
    redisReply *m = sb_redis_cmd(r, &err, "SET %s bench-authn NX", marker);
    if (m)
        freeReplyObject(m);
    for (int i = 0; i < 100 && !sb_authn_local_denylist_live(an); i++)
        sb_sleep_ms(50);
    if (!sb_authn_local_denylist_live(an)) {
        fprintf(stderr, "bench-authn: the local denylist did not go live within 5 s\n");
        return 1;
    }
    sb_jwt_claims_t c = {.sub = "00000000-0000-4000-8000-000000000001", .role = "USER", .jti = "bench"};
    c.iat = sb_now_ms() / 1000;
    c.exp = c.iat + 900;
    char *tok = NULL;
    if (sb_jwt_issue_es256(s, &c, &tok, &err) != SB_OK) {
        fprintf(stderr, "bench-authn: %s\n", err.buf);
        return 1;
    }
    static const char *const names[] = {"es256 verify", "authn verify, cached, local denylist",
                                        "authn verify, cached, Redis denylist (REVOCATION_CACHE_MAX=0)",
                                        "redis MGET"};
    printf("| part (1 thread, %d calls x %d batches, median) | us per call |\n| --- | ---: |\n", n,
           BATCHES);
    for (int p = ES256; p <= REDIS; p++) {
        double us[BATCHES];
        for (int b = 0; b < BATCHES; b++)
            us[b] = batch((enum part)p, n, ks, an, an_redis, r, tok);
        qsort(us, BATCHES, sizeof us[0], cmp_d);
        printf("| %s | %.1f |\n", names[p], us[BATCHES / 2]);
    }
    free(tok);
    sb_authn_free(an);
    sb_authn_free(an_redis);
    sb_redis_free(r);
    sb_jwt_keyset_free(ks);
    sb_jwt_signer_free(s);
    sb_buf_release(&err);
    return 0;
}

/* The tests' certificates and tokens (see sb_test_pki.h). The runner uses
 * sb_test_pki_child_env only (no gRPC there: its test processes are forked
 * from it); the rest runs in test processes. */
#define _GNU_SOURCE /* program_invocation_short_name */
#include "sb_test_pki.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/authn.h"
#include "sb/config.h"
#include "sb/events.h"
#include "sb/redis.h"
#include "sb/util.h"
#include "sb_test_proc.h"

#define PROG program_invocation_short_name

static _Noreturn void die(const char *what, const char *why)
{
    fprintf(stderr, "%s: %s: %s\n", PROG, what, why);
    abort();
}

const char *sb_test_pki_dir(void)
{
    const char *d = getenv(SB_TEST_PKI_ENV);
    return d && *d ? d : NULL;
}

static const char *need_dir(void)
{
    const char *d = sb_test_pki_dir();
    if (!d)
        die("the tests' PKI",
            SB_TEST_PKI_ENV " is not set (run the tests through ctest, whose fixture "
                            "pki/ensure makes <build>/pki, or export it; see tests/CMakeLists.txt)");
    return d;
}

/* "<dir>/jwt/<kid>.key" of the current kid (jwt/current) into out; false
 * when there is none. */
static bool signing_key_path(const char *dir, char *out, size_t n)
{
    char path[4096], kid[SB_JWT_MAX_KID + 2] = "";
    snprintf(path, sizeof path, "%s/jwt/current", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool ok = fgets(kid, sizeof kid, f) != NULL;
    fclose(f);
    kid[strcspn(kid, "\r\n")] = 0;
    if (!ok || !*kid)
        return false;
    snprintf(out, n, "%s/jwt/%s.key", dir, kid);
    return true;
}

size_t sb_test_pki_child_env(const char *svc, char out[][SB_TEST_PKI_VAR_MAX], size_t max)
{
    const char *d = sb_test_pki_dir();
    if (!d || max < 5)
        return 0;
    size_t n = 0;
    snprintf(out[n++], SB_TEST_PKI_VAR_MAX, "TLS_CA_FILE=%s/ca.crt", d);
    snprintf(out[n++], SB_TEST_PKI_VAR_MAX, "TLS_CERT_FILE=%s/%s/tls.crt", d, svc);
    snprintf(out[n++], SB_TEST_PKI_VAR_MAX, "TLS_KEY_FILE=%s/%s/tls.key", d, svc);
    snprintf(out[n++], SB_TEST_PKI_VAR_MAX, "JWT_PUBLIC_KEYS_DIR=%s/jwt", d);
    char key[1024];
    /* the private key to the auth service only */
    if (strcmp(svc, "auth") == 0 && signing_key_path(d, key, sizeof key))
        snprintf(out[n++], SB_TEST_PKI_VAR_MAX, "JWT_SIGNING_KEY_FILE=%s", key);
    return n;
}

/* ---- tokens ---- */

static pthread_once_t signer_once = PTHREAD_ONCE_INIT;
static sb_jwt_signer_t *signer; /* for the life of the process */

static void signer_load(void)
{
    char key[4096];
    const char *d = need_dir();
    if (!signing_key_path(d, key, sizeof key))
        die("the tests' signing key", "no current key in <pki>/jwt (pki.sh ensure makes one)");
    sb_buf_t err = SB_BUF_INIT;
    signer = sb_jwt_signer_load(key, &err);
    if (!signer)
        die(key, err.buf);
    sb_buf_release(&err);
}

char *sb_test_token_claims(sb_arena_t *a, const sb_jwt_claims_t *c)
{
    pthread_once(&signer_once, signer_load);
    sb_buf_t err = SB_BUF_INIT;
    char *token = NULL;
    if (sb_jwt_issue_es256(signer, c, &token, &err) != SB_OK)
        die("signing a test token", err.buf);
    sb_buf_release(&err);
    char *copy = sb_arena_strdup(a, token);
    free(token);
    return copy;
}

const char *sb_test_token_kid(void)
{
    pthread_once(&signer_once, signer_load);
    return sb_jwt_signer_kid(signer);
}

char *sb_test_token(sb_arena_t *a, const char *user_id, const char *role)
{
    int64_t now = sb_now_ms() / 1000;
    sb_jwt_claims_t c = {.iat = now, .exp = now + SB_TEST_TOKEN_TTL_S};
    snprintf(c.sub, sizeof c.sub, "%s", user_id);
    snprintf(c.role, sizeof c.role, "%s", role);
    sb_uuid_v4(c.jti);
    return sb_test_token_claims(a, &c);
}

/* ---- calling and serving as a service ---- */

sb_channel_t *sb_test_channel_as(const char *target, const char *server_name, const char *as_service)
{
    const char *d = need_dir();
    char cert[4096], key[4096];
    snprintf(cert, sizeof cert, "%s/%s/tls.crt", d, as_service);
    snprintf(key, sizeof key, "%s/%s/tls.key", d, as_service);
    return sb_channel_get_with_identity(target, server_name, cert, key);
}

/* Sets var to value, or unsets it (value NULL). */
static void env_put(const char *var, const char *value)
{
    if (value)
        setenv(var, value, 1);
    else
        unsetenv(var);
}

sb_status_t sb_test_server_start_as(sb_server_t *s, const char *as_service, sb_buf_t *err)
{
    const char *d = need_dir();
    /* sb_server_start reads TLS_CERT_FILE/TLS_KEY_FILE once, when it makes
     * the listener's credentials: swap them around it */
    char *old_cert = getenv("TLS_CERT_FILE") ? strdup(getenv("TLS_CERT_FILE")) : NULL;
    char *old_key = getenv("TLS_KEY_FILE") ? strdup(getenv("TLS_KEY_FILE")) : NULL;
    char cert[4096], key[4096];
    snprintf(cert, sizeof cert, "%s/%s/tls.crt", d, as_service);
    snprintf(key, sizeof key, "%s/%s/tls.key", d, as_service);
    setenv("TLS_CERT_FILE", cert, 1);
    setenv("TLS_KEY_FILE", key, 1);
    sb_status_t st = sb_server_start(s, err);
    env_put("TLS_CERT_FILE", old_cert);
    env_put("TLS_KEY_FILE", old_key);
    free(old_cert);
    free(old_key);
    return st;
}

static sb_redis_t *authn_redis;
static sb_authn_t *authn;

static sb_status_t authenticate(void *arg, const char *token, sb_jwt_claims_t *out, sb_buf_t *err)
{
    return sb_authn_verify(arg, token, out, err);
}

void sb_test_server_authn(sb_server_t *s)
{
    sb_buf_t err = SB_BUF_INIT;
    if (!authn) {
        authn_redis = sb_redis_new(sb_cfg_str("REDIS_URL", "redis://127.0.0.1:6379"), &err);
        if (!authn_redis)
            die("redis for the test authenticator", err.buf);
        authn = sb_authn_from_env(authn_redis, &err);
        if (!authn)
            die("the test authenticator", err.buf);
    }
    sb_buf_release(&err);
    sb_test_denylist_complete();
    sb_server_set_authenticator(s, authenticate, authn);
}

void sb_test_denylist_complete(void)
{
    /* a test that chose a namespace of its own (test_dead_letters) keeps it:
     * the marker is set for the namespace this process runs in */
    if (!*sb_namespace() && !sb_test_namespace_init())
        die("the tests' namespace", sb_test_namespace());
    char marker[96];
    sb_denylist_marker(marker, sizeof marker);
    sb_buf_t err = SB_BUF_INIT;
    sb_redis_t *r = sb_redis_new(sb_cfg_str("REDIS_URL", "redis://127.0.0.1:6379"), &err);
    redisReply *rep = r ? sb_redis_cmd(r, &err, "SET %s sb_test_denylist_complete NX", marker) : NULL;
    if (!rep || rep->type == REDIS_REPLY_ERROR)
        die("the denylist marker", rep ? rep->str : err.buf);
    freeReplyObject(rep);
    sb_redis_free(r);
    sb_buf_release(&err);
}

void sb_test_authn_free(void)
{
    if (authn)
        sb_authn_free(authn);
    if (authn_redis)
        sb_redis_free(authn_redis);
    authn = NULL;
    authn_redis = NULL;
}

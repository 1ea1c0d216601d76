#include "sb/jwt.h"

#include <errno.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/config.h"
#include "sb/log.h"

sb_status_t sb_jwt_issue(const char *secret, const sb_jwt_claims_t *c, char **token, sb_buf_t *err)
{
    jwt_t *j = NULL;
    sb_status_t st = SB_INTERNAL;
    *token = NULL;
    if (jwt_new(&j) != 0) {
        sb_buf_adds(err, "jwt: cannot allocate");
        return SB_INTERNAL;
    }
    if (jwt_add_grant(j, "iss", SB_JWT_ISSUER) || jwt_add_grant(j, "sub", c->sub) ||
        jwt_add_grant(j, "role", c->role) || jwt_add_grant(j, "jti", c->jti) ||
        jwt_add_grant_int(j, "iat", (long)c->iat) || jwt_add_grant_int(j, "exp", (long)c->exp) ||
        jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret))) {
        sb_buf_adds(err, "jwt: cannot set claims");
        goto out_free;
    }
    *token = jwt_encode_str(j);
    if (!*token) {
        sb_buf_adds(err, "jwt: cannot encode");
        goto out_free;
    }
    st = SB_OK;
out_free:
    jwt_free(j);
    return st;
}

static sb_status_t deny(sb_buf_t *err, const char *why)
{
    sb_buf_adds(err, why);
    return SB_UNAUTHENTICATED;
}

static bool copy_claim(jwt_t *j, const char *name, char *out, size_t n)
{
    const char *v = jwt_get_grant(j, name);
    if (!v || !*v || strlen(v) >= n)
        return false;
    memcpy(out, v, strlen(v) + 1);
    return true;
}

sb_status_t sb_jwt_verify(const char *secret, const char *token, int64_t now, sb_jwt_claims_t *out,
                          sb_buf_t *err)
{
    memset(out, 0, sizeof *out);
    if (!token || !*token)
        return deny(err, "missing token");
    if (strlen(token) > SB_JWT_MAX_TOKEN)
        return deny(err, "token too long");
    /* three base64url parts, nothing else */
    int dots = 0;
    for (const char *p = token; *p; p++) {
        if (*p == '.')
            dots++;
        else if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                   *p == '-' || *p == '_'))
            return deny(err, "malformed token");
    }
    if (dots != 2)
        return deny(err, "malformed token");
    jwt_t *j = NULL;
    if (jwt_decode(&j, token, (const unsigned char *)secret, (int)strlen(secret)) != 0 || !j)
        return deny(err, "invalid token signature");
    sb_status_t st = SB_UNAUTHENTICATED;
    /* pinned algorithm: checked after decode, whatever the header claimed */
    if (jwt_get_alg(j) != JWT_ALG_HS256) {
        sb_buf_adds(err, "token algorithm not accepted");
        goto out_free;
    }
    const char *iss = jwt_get_grant(j, "iss");
    if (!iss || strcmp(iss, SB_JWT_ISSUER) != 0) {
        sb_buf_adds(err, "token issuer not accepted");
        goto out_free;
    }
    errno = 0;
    out->exp = jwt_get_grant_int(j, "exp");
    out->iat = jwt_get_grant_int(j, "iat");
    if (out->exp <= 0 || out->iat <= 0) {
        sb_buf_adds(err, "token without exp/iat");
        goto out_free;
    }
    if (now >= out->exp) {
        sb_buf_adds(err, "token expired");
        goto out_free;
    }
    if (out->iat > now + 60) {
        sb_buf_adds(err, "token issued in the future");
        goto out_free;
    }
    if (!copy_claim(j, "sub", out->sub, sizeof out->sub) ||
        !copy_claim(j, "role", out->role, sizeof out->role) ||
        !copy_claim(j, "jti", out->jti, sizeof out->jti)) {
        sb_buf_adds(err, "token without sub/role/jti");
        goto out_free;
    }
    if (strcmp(out->role, "USER") && strcmp(out->role, "PLANNER") && strcmp(out->role, "ADMIN")) {
        sb_buf_adds(err, "token role not accepted");
        goto out_free;
    }
    st = SB_OK;
out_free:
    jwt_free(j);
    if (st != SB_OK)
        memset(out, 0, sizeof *out);
    return st;
}

const char *sb_jwt_secret_from_env(void)
{
    const char *s = sb_cfg_str("JWT_SECRET", NULL);
    if (!s) {
        sb_error("JWT_SECRET is not set");
        return NULL;
    }
    if (strlen(s) < SB_JWT_MIN_SECRET) {
        sb_error("JWT_SECRET is shorter than %d bytes (256 bits)", SB_JWT_MIN_SECRET);
        return NULL;
    }
    return s;
}

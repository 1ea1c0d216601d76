/* Access-token verification: signature, pinned algorithm, claims. */
#include <criterion/criterion.h>
#include <jwt.h>
#include <stdlib.h>
#include <string.h>

#include "sb/jwt.h"

static const char *secret = "0123456789abcdef0123456789abcdef-test";
static const int64_t now = 1795510800;

static char *issue(int64_t iat, int64_t exp, const char *role)
{
    sb_jwt_claims_t c = {.iat = iat, .exp = exp};
    strcpy(c.sub, "user-1");
    strcpy(c.role, role);
    strcpy(c.jti, "jti-1");
    char *t;
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(sb_jwt_issue(secret, &c, &t, &err), SB_OK, "%s", err.buf);
    sb_buf_release(&err);
    return t;
}

static sb_status_t verify(const char *token, sb_jwt_claims_t *c, sb_buf_t *err)
{
    sb_buf_reset(err);
    return sb_jwt_verify(secret, token, now, c, err);
}

Test(jwt, valid_token_round_trips)
{
    char *t = issue(now - 10, now + 900, "PLANNER");
    sb_jwt_claims_t c;
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(verify(t, &c, &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(c.sub, "user-1");
    cr_assert_str_eq(c.role, "PLANNER");
    cr_assert_str_eq(c.jti, "jti-1");
    cr_assert_eq(c.exp, now + 900);
    free(t);
    sb_buf_release(&err);
}

Test(jwt, expired_and_future_tokens_are_refused)
{
    sb_jwt_claims_t c;
    sb_buf_t err = SB_BUF_INIT;
    char *t = issue(now - 1000, now - 1, "USER");
    cr_assert_eq(verify(t, &c, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, "token expired");
    free(t);
    t = issue(now + 3600, now + 7200, "USER");
    cr_assert_eq(verify(t, &c, &err), SB_UNAUTHENTICATED);
    free(t);
    sb_buf_release(&err);
}

Test(jwt, tampered_token_is_refused)
{
    char *t = issue(now, now + 900, "USER");
    sb_jwt_claims_t c;
    sb_buf_t err = SB_BUF_INIT;
    /* flip one character of the payload */
    char *dot = strchr(t, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    cr_assert_eq(verify(t, &c, &err), SB_UNAUTHENTICATED);
    free(t);
    /* a role escalated by re-signing with another key */
    t = issue(now, now + 900, "ADMIN");
    cr_assert_eq(sb_jwt_verify("another-secret-another-secret-xx", t, now, &c, &err), SB_UNAUTHENTICATED);
    free(t);
    sb_buf_release(&err);
}

Test(jwt, alg_none_is_refused)
{
    /* {"alg":"none","typ":"JWT"} . {"iss":"showbook-auth","sub":"x","role":"ADMIN","jti":"j","iat":..,"exp":..} . "" */
    jwt_t *j;
    jwt_new(&j);
    jwt_add_grant(j, "iss", SB_JWT_ISSUER);
    jwt_add_grant(j, "sub", "attacker");
    jwt_add_grant(j, "role", "ADMIN");
    jwt_add_grant(j, "jti", "j");
    jwt_add_grant_int(j, "iat", (long)now);
    jwt_add_grant_int(j, "exp", (long)now + 900);
    jwt_set_alg(j, JWT_ALG_NONE, NULL, 0);
    char *t = jwt_encode_str(j);
    jwt_free(j);
    sb_jwt_claims_t c;
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(verify(t, &c, &err), SB_UNAUTHENTICATED, "alg none accepted!");
    cr_assert_str_eq(c.sub, "");
    free(t);
    /* and HS512 signed with the right secret: still not the pinned algorithm */
    jwt_new(&j);
    jwt_add_grant(j, "iss", SB_JWT_ISSUER);
    jwt_add_grant(j, "sub", "x");
    jwt_add_grant(j, "role", "USER");
    jwt_add_grant(j, "jti", "j");
    jwt_add_grant_int(j, "iat", (long)now);
    jwt_add_grant_int(j, "exp", (long)now + 900);
    jwt_set_alg(j, JWT_ALG_HS512, (const unsigned char *)secret, (int)strlen(secret));
    t = jwt_encode_str(j);
    jwt_free(j);
    cr_assert_eq(verify(t, &c, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, "token algorithm not accepted");
    free(t);
    sb_buf_release(&err);
}

Test(jwt, garbage_is_refused)
{
    sb_jwt_claims_t c;
    sb_buf_t err = SB_BUF_INIT;
    const char *bad[] = {"", "a.b", "a.b.c.d", "not a token", "a.b.c", "....", "eyJ.eyJ.@@@"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(verify(bad[i], &c, &err), SB_UNAUTHENTICATED, "%s accepted", bad[i]);
    char *huge = malloc(SB_JWT_MAX_TOKEN + 10);
    memset(huge, 'a', SB_JWT_MAX_TOKEN + 9);
    huge[SB_JWT_MAX_TOKEN + 9] = 0;
    cr_assert_eq(verify(huge, &c, &err), SB_UNAUTHENTICATED);
    free(huge);
    sb_buf_release(&err);
}

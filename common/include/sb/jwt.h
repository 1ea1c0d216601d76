/* Access tokens: HS256 JWTs (libjwt). The algorithm is pinned: a token is
 * accepted only if it decodes with the secret AND its header says HS256, so
 * "alg":"none" or an algorithm switch is refused. libjwt 1.10 checks no
 * claims, so exp, iat, iss, sub, role and jti are checked here by hand. */
#ifndef SB_JWT_H
#define SB_JWT_H
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/status.h"

#define SB_JWT_ISSUER "showbook-auth"
#define SB_JWT_MIN_SECRET 32 /* bytes: 256 bits */
#define SB_JWT_MAX_TOKEN 4096

typedef struct sb_jwt_claims {
    char sub[64];  /* user id */
    char role[16]; /* USER, PLANNER, ADMIN */
    char jti[64];  /* token id (denylist key) */
    int64_t iat, exp; /* unix seconds */
} sb_jwt_claims_t;

/* Signs claims (iss is set to SB_JWT_ISSUER). *token is heap memory the
 * caller frees with free(). */
sb_status_t sb_jwt_issue(const char *secret, const sb_jwt_claims_t *c, char **token, sb_buf_t *err);
/* Verifies signature, algorithm, issuer, iat, exp (against now, unix seconds)
 * and the presence of sub/role/jti. UNAUTHENTICATED with a reason otherwise. */
sb_status_t sb_jwt_verify(const char *secret, const char *token, int64_t now, sb_jwt_claims_t *out,
                          sb_buf_t *err);
/* The secret from JWT_SECRET; NULL (logged) when unset or shorter than 256 bits. */
const char *sb_jwt_secret_from_env(void);

#endif

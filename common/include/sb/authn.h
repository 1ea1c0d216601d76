/* End-user authentication, one implementation for the gateway and every
 * service's runtime: an ES256 access token (sb/jwt.h) verified against the
 * platform's public keys (JWT_PUBLIC_KEYS_DIR, chosen by the token's kid:
 * keys rotate without downtime), then the Redis denylist (sb:deny:<jti> from
 * logout, sb:deny-user:<sub> from withdrawal) on every call. A cache of
 * verified tokens keeps the signature check off the hot path; revocation is
 * never cached. */
#ifndef SB_AUTHN_H
#define SB_AUTHN_H
#include "sb/buf.h"
#include "sb/jwt.h"
#include "sb/redis.h"
#include "sb/status.h"

typedef struct sb_authn sb_authn_t;

/* Loads the keys from JWT_PUBLIC_KEYS_DIR; redis is borrowed (outlives the
 * authenticator). NULL with the reason in err. Caller frees with sb_authn_free. */
sb_authn_t *sb_authn_from_env(sb_redis_t *redis, sb_buf_t *err);
void sb_authn_free(sb_authn_t *a);

/* Verifies token (signature, pinned ES256, kid, iss, aud, exp, claims) and
 * asks the denylist. OK with *out filled; UNAUTHENTICATED with a message fit
 * for the client ("token expired", "token revoked", ...); UNAVAILABLE when
 * revocation cannot be checked now (fail closed). Thread-safe. */
sb_status_t sb_authn_verify(sb_authn_t *a, const char *token, sb_jwt_claims_t *out, sb_buf_t *err);

/* The JWKS document of the keys (GET /.well-known/jwks.json). */
void sb_authn_jwks(sb_authn_t *a, sb_buf_t *out);

#endif

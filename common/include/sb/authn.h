/* End-user authentication, one implementation for the gateway and every
 * service's runtime: an ES256 access token (sb/jwt.h) verified against the
 * platform's public keys (JWT_PUBLIC_KEYS_DIR, chosen by the token's kid:
 * keys rotate without downtime), then the denylist on every call: the
 * process's local copy while its subscription keeps it current
 * (sb/denylist.h), otherwise Redis. A cache of verified tokens keeps the
 * signature check off the hot path.
 *
 * The denylist in Redis is a cache of the auth service's `revocations` table
 * (PostgreSQL), written by auth in the transaction that revokes and rebuilt
 * by auth from the table whenever Redis has lost it (services/auth/
 * revocations.c). Its keys:
 *   sb:deny:<jti>           "1": this token is revoked (logout)
 *   sb:deny-user:<user id>  "all": every token of the user (withdrawal), or
 *                           "<unix ms>": the user's tokens issued before then
 *                           (password change; compared with iat_ms)
 *   the marker (sb_denylist_marker: "sb:deny-epoch[:<namespace>]")
 *                           present only while the entries are complete:
 *                           set by auth after a rebuild, gone with everything
 *                           else when Redis restarts empty
 * Each expires (PX) when no token it covers can still be valid, and each
 * write is published on sb_denylist_channel (sb/denylist.h). Asking Redis,
 * one MGET asks all three; a missing marker means "incomplete": the call is
 * refused with UNAVAILABLE (fail closed) until auth has rebuilt (about a
 * second). */
#ifndef SB_AUTHN_H
#define SB_AUTHN_H
#include "sb/buf.h"
#include "sb/jwt.h"
#include "sb/redis.h"
#include "sb/status.h"

typedef struct sb_authn sb_authn_t;

/* Loads the keys from JWT_PUBLIC_KEYS_DIR; redis is borrowed (outlives the
 * authenticator). Starts the local denylist's thread unless
 * REVOCATION_CACHE_MAX=0 (its bound, default 1,000,000 entries). NULL with
 * the reason in err. Caller frees with sb_authn_free (stops the thread). */
sb_authn_t *sb_authn_from_env(sb_redis_t *redis, sb_buf_t *err);
void sb_authn_free(sb_authn_t *a);

/* Verifies token (signature, pinned ES256, kid, iss, aud, exp, claims) and
 * asks the denylist. OK with *out filled; UNAUTHENTICATED with a message fit
 * for the client ("token expired", "token revoked", ...); UNAVAILABLE when
 * revocation cannot be checked now (fail closed): Redis unreachable or not
 * answering within REDIS_TIMEOUT_MS, or the denylist incomplete (marker
 * missing). Thread-safe. */
sb_status_t sb_authn_verify(sb_authn_t *a, const char *token, sb_jwt_claims_t *out, sb_buf_t *err);

/* The denylist's key prefixes and the value of a user-wide entry that
 * covers every token (see above). */
#define SB_DENY_TOKEN_PREFIX "sb:deny:"
#define SB_DENY_USER_PREFIX "sb:deny-user:"
#define SB_DENY_USER_ALL "all"
/* The marker key of this process's namespace (sb_namespace(), sb/events.h)
 * into out (n >= 64): "sb:deny-epoch", or "sb:deny-epoch:<ns>" so that runs in
 * two namespaces sharing one Redis each rebuild their own entries. */
void sb_denylist_marker(char *out, size_t n);

/* Whether sb_authn_verify checks revocation locally now (the local
 * denylist's lease holds; sb/denylist.h): false while it asks Redis. */
bool sb_authn_local_denylist_live(sb_authn_t *a);

/* The JWKS document of the keys (GET /.well-known/jwks.json). */
void sb_authn_jwks(sb_authn_t *a, sb_buf_t *out);

#endif

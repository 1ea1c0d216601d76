/* The tests' identities on the zero-trust platform: every gRPC hop is mutual
 * TLS and every call of a user carries an ES256 access token (sb/tls.h,
 * sb/jwt.h, sb/authn.h).
 *
 * The PKI is one folder per build, <build>/pki, made by deploy/local/pki.sh
 * before any test runs (the CTest fixture `pki`, see tests/CMakeLists.txt)
 * and named by $SB_TEST_PKI_DIR:
 *   ca.crt                      the platform CA
 *   <name>/tls.crt, tls.key     a certificate per service, gateway, client-test
 *   jwt/<kid>.key, <kid>.pub.pem, jwt/current   the token signing key(s)
 * The test process itself runs as `client-test` (CTest sets TLS_CA_FILE,
 * TLS_CERT_FILE, TLS_KEY_FILE and JWT_PUBLIC_KEYS_DIR), a name no policy
 * admits: a test is known by the token it sends, or calls through a channel
 * as a given service (sb_test_channel_as) to reach the service-only RPCs.
 *
 * Everything here aborts with a message on stderr when the PKI is missing
 * (a test run outside ctest without the variables), so a misconfigured run
 * never looks like a refused call. */
#ifndef SB_TEST_PKI_H
#define SB_TEST_PKI_H
#include <stddef.h>

#include "sb/arena.h"
#include "sb/jwt.h"
#include "sb/rpc.h"

#define SB_TEST_PKI_ENV "SB_TEST_PKI_DIR"
#define SB_TEST_TOKEN_TTL_S 900

/* $SB_TEST_PKI_DIR, or NULL when unset. */
const char *sb_test_pki_dir(void);

/* The environment a service child started by sb_test_spawn gets: its own
 * certificate (<dir>/<svc>/tls.crt, tls.key), the CA, JWT_PUBLIC_KEYS_DIR,
 * and for auth JWT_SIGNING_KEY_FILE (the current key), as "K=V" strings into
 * out[0..max). Returns how many; 0 when SB_TEST_PKI_DIR is unset (the child
 * then gets the runner's environment only). No gRPC; the runner calls it. */
#define SB_TEST_PKI_VAR_MAX 1100
size_t sb_test_pki_child_env(const char *svc, char out[][SB_TEST_PKI_VAR_MAX], size_t max);

/* An access token for user_id with role ("USER", "PLANNER", "ADMIN"),
 * signed with the platform's current key as auth would sign it: ES256, kid,
 * iss, aud, iat now, exp now + SB_TEST_TOKEN_TTL_S, a fresh jti. In arena a. */
char *sb_test_token(sb_arena_t *a, const char *user_id, const char *role);
/* The same with the claims exactly as given (an expired token, a known jti). */
char *sb_test_token_claims(sb_arena_t *a, const sb_jwt_claims_t *c);
/* The kid those tokens are signed with (its public key is
 * <dir>/jwt/<kid>.pub.pem). */
const char *sb_test_token_kid(void);

/* A channel to target presenting the certificate of service as_service
 * (<dir>/<as_service>/tls.crt): the callee knows the call as that service's.
 * server_name as in sb_channel_get_for (NULL: the target's host). Cached;
 * freed by sb_channels_free_all. */
sb_channel_t *sb_test_channel_as(const char *target, const char *server_name, const char *as_service);

/* sb_server_start with the listener presenting as_service's certificate
 * instead of the process's own (a stand-in for that service, which its
 * callers check by name). */
sb_status_t sb_test_server_start_as(sb_server_t *s, const char *as_service, sb_buf_t *err);

/* Installs on s the authenticator the services use (sb_authn: the
 * platform's public keys and the Redis denylist at $REDIS_URL), so handlers
 * see the identity of the token a call carries. Call before sb_server_start;
 * sb_test_authn_free after the server is freed. */
void sb_test_server_authn(sb_server_t *s);
void sb_test_authn_free(void);

/* Marks the denylist in the Redis at $REDIS_URL complete for the tests'
 * namespace (sets its marker, sb_denylist_marker in sb/authn.h, unless
 * present), as the auth service does after rebuilding it from its
 * revocations table. Without the marker every token is refused with
 * UNAVAILABLE, so a test that verifies tokens without an auth service
 * running (a service started alone; sb_test_server_authn, which calls this)
 * calls it first. Sound because the tests' Redis is shared and never
 * restarted: no revocation can be missing from it. Aborts with a message
 * when Redis does not answer. No gRPC; the runner may call it. */
void sb_test_denylist_complete(void);

#endif

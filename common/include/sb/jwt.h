/* Access tokens (libjwt 1.10 + OpenSSL 3).
 *
 * ES256, the platform's tokens: only the auth service holds the private key
 * (a signer); every verifier holds the public keys (a keyset), selected by
 * the token's `kid` header so keys rotate without downtime: a new key's
 * public half is published first, the signer switches, and the old public
 * key stays until the tokens it signed have expired.
 *
 * The algorithm is pinned before any signature is checked: the header is
 * decoded here and must say "alg":"ES256" with a kid of the set, so "none",
 * HS256 (including HS256 "signed" with the PEM public key as the HMAC secret,
 * the classic key-confusion attack) and RS* never reach a verifier. ES256
 * signatures are checked with OpenSSL against keys parsed once at load
 * (libjwt 1.10 would parse the PEM on every token); libjwt 1.10 checks no
 * claims (and skips the signature entirely when given no key), so exp, iat,
 * iss, aud, sub, role and jti are checked here by hand.
 *
 * The signature's length is checked too (86 base64url characters for ES256,
 * 43 for HS256): libjwt 1.10 writes past its buffer decoding an empty one.
 */
#ifndef SB_JWT_H
#define SB_JWT_H
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/status.h"

#define SB_JWT_ISSUER "showbook-auth"
#define SB_JWT_AUDIENCE "showbook" /* aud of ES256 tokens */
#define SB_JWT_MAX_TOKEN 4096
#define SB_JWT_MAX_KID 64  /* [A-Za-z0-9_-]{1,64} */
#define SB_JWT_MAX_KEYS 32 /* public keys in a keyset */

typedef struct sb_jwt_claims {
    char sub[64];     /* user id */
    char role[16];    /* USER, PLANNER, ADMIN */
    char jti[64];     /* token id (denylist key) */
    int64_t iat, exp; /* unix seconds */
    /* The issue time in unix ms (claim "iat_ms", ours; within iat's second).
     * A user-wide revocation "tokens issued before T" (password change, see
     * sb/authn.h) needs it: with seconds alone a login in the second after
     * a password change could not be told from one just before it. Issuing:
     * 0 means iat * 1000. Verifying: a token without the claim (minted
     * elsewhere) gets iat * 1000. */
    int64_t iat_ms;
} sb_jwt_claims_t;

/* ---- ES256 ---- */

typedef struct sb_jwt_signer sb_jwt_signer_t;
typedef struct sb_jwt_keyset sb_jwt_keyset_t;

/* Loads the EC P-256 private key (PEM) in key_file, whose name is
 * "<kid>.key" (deploy/local/pki.sh names them so). NULL with a reason in err
 * when unreadable, not P-256, or the name is not a valid kid. Immutable once
 * loaded (thread-safe). Caller frees with sb_jwt_signer_free. */
sb_jwt_signer_t *sb_jwt_signer_load(const char *key_file, sb_buf_t *err);
/* The same from JWT_SIGNING_KEY_FILE (auth only). */
sb_jwt_signer_t *sb_jwt_signer_from_env(sb_buf_t *err);
const char *sb_jwt_signer_kid(const sb_jwt_signer_t *s); /* borrowed, lives with s */
void sb_jwt_signer_free(sb_jwt_signer_t *s);

/* Signs claims as ES256 with header kid = the signer's kid; iss is set to
 * SB_JWT_ISSUER and aud to SB_JWT_AUDIENCE. *token is heap memory the caller
 * frees with free(). */
sb_status_t sb_jwt_issue_es256(const sb_jwt_signer_t *s, const sb_jwt_claims_t *c, char **token,
                               sb_buf_t *err);

/* Loads every "<kid>.pub.pem" (EC P-256 public key, PEM) of dir; other files
 * (the private "<kid>.key" beside them, for one) are ignored. NULL with a
 * reason when dir has no valid key or a .pub.pem file is invalid. Thread-safe
 * (verify and jwks take a read lock, reload a write lock). Caller frees with
 * sb_jwt_keyset_free. */
sb_jwt_keyset_t *sb_jwt_keyset_load(const char *dir, sb_buf_t *err);
/* The same from JWT_PUBLIC_KEYS_DIR (every verifier). */
sb_jwt_keyset_t *sb_jwt_keyset_from_env(sb_buf_t *err);
/* Reads the directory again and swaps the set in one step; on error the
 * previous set stays in force. A verify meeting an unknown kid also reloads,
 * at most once per SB_JWT_RELOAD_MIN_MS (a key published after start-up is
 * picked up without a restart). */
#define SB_JWT_RELOAD_MIN_MS 10000
sb_status_t sb_jwt_keyset_reload(sb_jwt_keyset_t *ks, sb_buf_t *err);
size_t sb_jwt_keyset_count(sb_jwt_keyset_t *ks);
/* Tests: the minimum interval between reloads on an unknown kid (ms). */
void sb_jwt_keyset_set_reload_interval(sb_jwt_keyset_t *ks, int64_t ms);
void sb_jwt_keyset_free(sb_jwt_keyset_t *ks);
/* Appends the JWKS document of the set to out:
 * {"keys":[{"kty":"EC","crv":"P-256","x":"…","y":"…","kid":"…","use":"sig","alg":"ES256"},…]}
 * x and y are the base64url (unpadded) 32-byte affine coordinates; keys in kid order. */
void sb_jwt_keyset_jwks(sb_jwt_keyset_t *ks, sb_buf_t *out);

/* Verifies an ES256 token: header alg exactly ES256 and a kid of the set,
 * the signature with that key, iss = SB_JWT_ISSUER, aud = SB_JWT_AUDIENCE
 * (a string), iat, exp (against now, unix seconds), iat_ms (when present:
 * an integer within iat's second), sub/role/jti present and role known. UNAUTHENTICATED with a reason
 * otherwise (*out zeroed). The denylist (jti) is the caller's. */
sb_status_t sb_jwt_verify_es256(sb_jwt_keyset_t *ks, const char *token, int64_t now,
                                sb_jwt_claims_t *out, sb_buf_t *err);

#endif

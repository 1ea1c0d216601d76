/* member service internals, shared by its files:
 *   main.c       wiring: the service definition, init/fini hooks
 *   member.c     the RPC handlers (Signup, GetMember, UpdateMember, DeleteMember,
 *                CheckCredentials)
 *   password.c   Argon2id hashing with bounded concurrency
 *   validate.c   field rules shared by sign-up, profile edits and the bootstrap
 *   bootstrap.c  the admin account ensured at start-up */
#ifndef SB_MEMBER_INTERNAL_H
#define SB_MEMBER_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sodium.h>

#include "member.pb-c.h"
#include "sb/arena.h"
#include "sb/buf.h"
#include "sb/pg.h"
#include "sb/rpc.h"
#include "sb/status.h"
#include "sb/valid.h"

/* ---- password.c ---- */

#define PW_HASH_MAX crypto_pwhash_STRBYTES /* hash string incl. NUL */
#define PW_MIN_BYTES 8
#define PW_MAX_BYTES 128

/* Hashing and verifying passwords (libsodium crypto_pwhash_str: Argon2id).
 * At most PWHASH_CONCURRENCY computations run at once, so a burst of
 * sign-ins costs time, never unbounded memory. */
typedef struct pw_hasher pw_hasher_t;

/* Reads PWHASH_OPSLIMIT, PWHASH_MEMLIMIT, PWHASH_CONCURRENCY and computes the
 * dummy hash used for unknown login ids. sodium_init() must have succeeded.
 * NULL with err set on failure; caller frees with pw_hasher_free. */
pw_hasher_t *pw_hasher_new(sb_buf_t *err);
void pw_hasher_free(pw_hasher_t *h);

/* Hashes password into out. Waits for a free slot until deadline_ms (unix ms,
 * INT64_MAX = none; the wait is capped anyway). On failure err receives a
 * message fit for the caller: RESOURCE_EXHAUSTED (no slot in time),
 * DEADLINE_EXCEEDED, INTERNAL. */
sb_status_t pw_hash(pw_hasher_t *h, const char *password, char out[PW_HASH_MAX], int64_t deadline_ms,
                    sb_buf_t *err);

/* Verifies password against hash; hash NULL verifies against the dummy hash
 * (same cost, never a match) so an unknown account takes as long as a known
 * one. *match tells the outcome when OK is returned. */
sb_status_t pw_verify(pw_hasher_t *h, const char *hash, const char *password, bool *match,
                      int64_t deadline_ms, sb_buf_t *err);

/* true when hash was made with other parameters than the configured ones. */
bool pw_needs_rehash(const pw_hasher_t *h, const char *hash);

/* ---- validate.c ----
 * Each *_problem function returns NULL when the value is acceptable, else
 * what is wrong with it as a phrase to follow the field name
 * ("must be at least 8 characters"). Static strings. */

const char *member_login_id_problem(const char *s);
const char *member_password_problem(const char *s);
const char *member_name_problem(const char *s);
const char *member_email_problem(const char *s);
const char *member_phone_problem(const char *s);
/* "ko" or "en": the language of the member's notices. */
const char *member_language_problem(const char *s);

/* The login id folded to lower case, in arena a; NULL when it breaks the rules. */
char *member_login_id_fold(sb_arena_t *a, const char *s);
/* UUIDs and role names: sb_uuid_norm, sb_role_name, sb_role_parse (sb/valid.h). */

/* ---- bootstrap.c ---- */

/* Checks BOOTSTRAP_ADMIN_LOGIN / BOOTSTRAP_ADMIN_PASSWORD (both or neither,
 * valid login id, password of 8-128 bytes). Run before anything starts so a
 * bad value stops the process at once, with err saying which. */
sb_status_t member_bootstrap_check(sb_buf_t *err);
/* Ensures the configured admin account exists: inserted when missing
 * (ON CONFLICT DO NOTHING, safe with several instances starting together),
 * an existing admin's password left as it is. */
sb_status_t member_bootstrap_admin(sb_pg_pool_t *pool, pw_hasher_t *pw, sb_buf_t *err);

/* ---- member.c ---- */

/* The service's own state (sb_service_t.user). */
typedef struct member_state {
    pw_hasher_t *pw;
} member_state_t;

sb_rpc_handler_t member_signup, member_get, member_update, member_delete, member_check_credentials;

#endif

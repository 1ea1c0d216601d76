/* The auth service's private interface: configuration read once at start-up
 * and the handlers main.c lists. */
#ifndef AUTH_H
#define AUTH_H
#include <stdbool.h>
#include <stddef.h>

#include "auth.pb-c.h"
#include "member.pb-c.h"
#include "sb/jobs.h"
#include "sb/jwt.h"
#include "sb/service.h"
#include "sb/valid.h" /* role names, UUIDs */

/* Read by auth_init before serving; read-only afterwards (so no locking). */
typedef struct auth_config {
    sb_jwt_signer_t *signer; /* JWT_SIGNING_KEY_FILE: the only private key of access tokens */
    long access_ttl_s;       /* ACCESS_TOKEN_TTL_S */
    long refresh_ttl_s;      /* REFRESH_TOKEN_TTL_S */
    const char *member_addr; /* MEMBER_ADDR: where CheckCredentials lives */
} auth_config_t;

/* The configuration of the service a handler runs in. */
static inline const auth_config_t *auth_config_of(sb_service_t *svc)
{
    return (const auth_config_t *)svc->user;
}

/* ---- handlers ---- */
sb_rpc_handler_t auth_login, auth_refresh, auth_logout; /* tokens.c */
sb_rpc_handler_t auth_authorize, auth_get_jwks;         /* authorize.c */
/* Serialises revocations and rotations of one user's tokens (tokens.c). */
sb_status_t auth_lock_user(sb_pg_conn_t *c, const char *user_id, sb_buf_t *err);

/* Revocations of access tokens (revocations.c): the row in the caller's
 * transaction (db: the method row's or the event's) and its Redis entry
 * before COMMIT; UNAVAILABLE when Redis cannot take it (roll back).
 * auth_revoke_token: the token with id jti until its exp (unix s).
 * auth_revoke_user: the user's tokens issued before `before` (RFC 3339), or
 * every token of the user when before is NULL, for ttl_s (the longest life of
 * an access token); reason "password_change" or "withdrawal". */
sb_status_t auth_revoke_token(sb_db_t *db, sb_redis_t *redis, const char *jti, int64_t exp_s);
sb_status_t auth_revoke_user(sb_db_t *db, sb_redis_t *redis, const char *user_id, const char *before,
                             const char *reason, long ttl_s);
/* Loads every unexpired revocation into Redis and sets the marker, unless the
 * marker is there (sb/authn.h), inside db's transaction. UNAVAILABLE with *redis_down when Redis failed;
 * *loaded: how many entries were loaded, -1 when the marker was there. */
sb_status_t auth_denylist_rebuild(sb_db_t *db, sb_redis_t *redis, bool *redis_down, long *loaded);
/* The job row of main.c: the rebuild when the marker is missing, and (every
 * CLEANUP_EVERY_MS) the deletion of expired revocations. */
sb_status_t auth_denylist_job(sb_job_ctx_t *job);

/* sb.member event handlers (member_events.c), rows of main.c's event table. */
sb_status_t auth_on_member_withdrawn(sb_event_ctx_t *ev, const void *payload);
sb_status_t auth_on_password_changed(sb_event_ctx_t *ev, const void *payload);

/* The platform's admin audit log (audit.c): audit.admin_action events kept,
 * GET /admin/audit served. */
sb_status_t auth_on_admin_action(sb_event_ctx_t *ev, const void *payload);
sb_rpc_handler_t auth_list_admin_audit;

#endif

/* auth service: wiring only. Access tokens (JWT), refresh-token rotation with
 * reuse detection, logout denylist, POST /auth, the sb.member events that
 * end sessions, and the revocations behind the denylist (see auth.h for where
 * each handler lives). */
#include <sodium.h>

#include "auth.h"
#include "sb/config.h"
#include "sb/db.h"
#include "sb/jwt.h"
#include "sb/log.h"
#include "sb/registry.h"

static auth_config_t config;

/* The denylist in Redis rebuilt now, before serving, if Redis lost it (the
 * denylist job keeps checking every second). A failure does not stop the
 * start: until the job succeeds, authenticated calls get 503. */
static void rebuild_denylist(sb_service_t *svc)
{
    sb_buf_t detail = SB_BUF_INIT;
    sb_arena_t *a = sb_arena_new();
    sb_db_t db = {.pool = svc->pg, .arena = a, .detail = &detail, .begin = "BEGIN"};
    bool down;
    long loaded;
    sb_status_t st = auth_denylist_rebuild(&db, svc->redis, &down, &loaded);
    if (st == SB_OK)
        st = sb_db_commit(&db);
    else
        sb_db_rollback(&db);
    if (st != SB_OK)
        sb_warn("denylist not checked at start-up (%s): %s; the denylist job retries every second",
                sb_status_name(st), detail.buf);
    else if (loaded < 0)
        sb_info("denylist in Redis is complete");
    sb_arena_free(a);
    sb_buf_release(&detail);
}

static sb_status_t auth_init(sb_service_t *svc, sb_buf_t *err)
{
    if (sodium_init() < 0) {
        sb_buf_adds(err, "libsodium failed to initialise");
        return SB_INTERNAL;
    }
    config.signer = sb_jwt_signer_from_env(err);
    if (!config.signer)
        return SB_FAILED_PRECONDITION;
    config.access_ttl_s = sb_cfg_int("ACCESS_TOKEN_TTL_S", 900, 10, 86400);
    config.refresh_ttl_s = sb_cfg_int("REFRESH_TOKEN_TTL_S", 1209600, 60, 31536000);
    config.member_addr = sb_registry_addr("member");
    svc->user = &config;
    rebuild_denylist(svc);
    sb_info("access tokens (ES256, kid %s) live %lds, refresh tokens %lds; member service at %s",
            sb_jwt_signer_kid(config.signer), config.access_ttl_s, config.refresh_ttl_s,
            config.member_addr);
    return SB_OK;
}

static void auth_fini(sb_service_t *svc)
{
    sb_jwt_signer_free(config.signer);
    config.signer = NULL;
}

static const sb_rpc_method_t methods[] = {
    {"Login", auth_login},
    {"Refresh", auth_refresh, .tx = SB_TX},
    {"Logout", auth_logout, .tx = SB_TX},
    {"Authorize", auth_authorize},
    {"GetJwks", auth_get_jwks},
    {"ListAdminAudit", auth_list_admin_audit, .tx = SB_TX_READ},
    {"DeliverEvent", sb_service_deliver_event},
};

static const sb_event_handler_t events[] = {
    {"member.withdrawn", &sb__events__member_withdrawn__descriptor, auth_on_member_withdrawn},
    {"member.password_changed", &sb__events__member_password_changed__descriptor,
     auth_on_password_changed},
    {"audit.admin_action", &sb__events__audit_admin_action__descriptor, auth_on_admin_action},
};

/* denylist: the Redis denylist rebuilt from the revocations table when its
 * marker is missing (Redis restarted empty), checked every second: until
 * then tokens are refused with 503, so this bounds that time. The same job
 * deletes the revocations no live token needs any more, once a minute (one
 * job: one connection, back at once after a database restart). */
static const sb_job_t jobs[] = {
    {"denylist", auth_denylist_job, .every_ms = 1000},
};

SB_SERVICE_MAIN(auth, SB_METHODS(methods), SB_EVENTS(events), SB_JOBS(jobs), .init = auth_init,
                .fini = auth_fini);

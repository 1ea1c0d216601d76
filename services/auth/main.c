/* auth service: wiring only. Access tokens (JWT), refresh-token rotation with
 * reuse detection, logout denylist, POST /auth, and the sb.member events that
 * end sessions (see auth.h for where each handler lives). */
#include <sodium.h>

#include "auth.h"
#include "sb/config.h"
#include "sb/jwt.h"
#include "sb/log.h"
#include "sb/registry.h"

static auth_config_t config;

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
    {"DeliverEvent", sb_service_deliver_event},
};

static const sb_event_handler_t events[] = {
    {"member.withdrawn", &sb__events__member_withdrawn__descriptor, auth_on_member_withdrawn},
    {"member.password_changed", &sb__events__member_password_changed__descriptor,
     auth_on_password_changed},
};

SB_SERVICE_MAIN(auth, SB_METHODS(methods), SB_EVENTS(events), .init = auth_init, .fini = auth_fini);

/* The auth service's private interface: configuration read once at start-up
 * and the handlers main.c lists. */
#ifndef AUTH_H
#define AUTH_H
#include <stdbool.h>
#include <stddef.h>

#include "auth.pb-c.h"
#include "member.pb-c.h"
#include "sb/service.h"

/* Read by auth_init before serving; read-only afterwards (so no locking). */
typedef struct auth_config {
    const char *jwt_secret;  /* borrowed from the environment */
    long access_ttl_s;       /* ACCESS_TOKEN_TTL_S */
    long refresh_ttl_s;      /* REFRESH_TOKEN_TTL_S */
    const char *member_addr; /* MEMBER_ADDR: where CheckCredentials lives */
} auth_config_t;

/* The configuration of the service a handler runs in. */
static inline const auth_config_t *auth_config_of(sb_service_t *svc)
{
    return (const auth_config_t *)svc->user;
}

/* ---- roles (roles.c) ---- */
/* "USER" for SB__MEMBER__ROLE__USER...; NULL for ROLE_UNSPECIFIED/unknown. */
const char *auth_role_name(Sb__Member__Role r);
/* The enum for a role name; ROLE_UNSPECIFIED when unknown. */
Sb__Member__Role auth_role_from_name(const char *name);
/* true when s is a textual UUID (36 characters, dashes at 8/13/18/23). */
bool auth_is_uuid(const char *s);

/* ---- handlers ---- */
sb_status_t auth_login(sb_rpc_ctx_t *ctx, const void *in, void *out);     /* tokens.c */
sb_status_t auth_refresh(sb_rpc_ctx_t *ctx, const void *in, void *out);   /* tokens.c */
sb_status_t auth_logout(sb_rpc_ctx_t *ctx, const void *in, void *out);    /* tokens.c */
sb_status_t auth_authorize(sb_rpc_ctx_t *ctx, const void *in, void *out); /* authorize.c */

/* sb.member events (member_events.c); arg is the sb_service_t. */
sb_status_t auth_on_event(sb_pg_conn_t *tx, const sb_event_envelope_t *ev, void *arg,
                          sb_buf_t *err);

#endif

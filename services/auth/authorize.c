/* Authorize (POST /auth): is this token valid, and may its holder do
 * "METHOD /path"? The answer is the API table's (sb/api.h: sb_api_match and
 * sb_api_authorize, as the gateway and every service ask them), so none of
 * them can disagree about who may call what. An owner field in the path
 * ("GET /members/{userId}": self) is decided here too; ownership that needs
 * the data ("owning planner") stays the owning service's check. */
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "sb/api.h"
#include "sb/json.h"
#include "sb/jwt.h"
#include "sb/log.h"
#include "sb/util.h"

#define MAX_METHOD 8
#define MAX_PATH 1024

/* Splits "METHOD /path[?query]" into method and path (query dropped).
 * false when the action does not have that shape. */
static bool parse_action(sb_arena_t *arena, const char *action, char method[MAX_METHOD], char **path)
{
    if (!action)
        return false;
    size_t ml = 0;
    while (action[ml] >= 'A' && action[ml] <= 'Z')
        ml++;
    if (ml == 0 || ml >= MAX_METHOD || action[ml] != ' ')
        return false;
    memcpy(method, action, ml);
    method[ml] = '\0';
    const char *p = action + ml + 1;
    if (*p != '/')
        return false;
    size_t pl = 0;
    for (; p[pl] && p[pl] != '?' && p[pl] != '#'; pl++)
        if ((unsigned char)p[pl] <= ' ' || p[pl] == 0x7f || pl >= MAX_PATH)
            return false;
    *path = sb_arena_strndup(arena, p, pl);
    return true;
}

sb_status_t auth_authorize(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Auth__AuthorizeRequest *req = in;
    Sb__Auth__AuthorizeResponse *resp = out;
    sb_service_t *svc = sb_service_of(ctx);

    /* the same check every service runs on its callers (sb/authn.h) */
    sb_jwt_claims_t c;
    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st = sb_authn_verify(svc->authn, req->token, &c, &err);
    if (st != SB_OK) {
        st = sb_rpc_fail(ctx, st == SB_UNAVAILABLE ? st : SB_UNAUTHENTICATED, "%s", err.buf);
        sb_buf_release(&err);
        return st;
    }
    sb_buf_release(&err);

    char method[MAX_METHOD];
    char *path = NULL;
    if (!parse_action(ctx->arena, req->action, method, &path))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "action must be \"METHOD /path\", e.g. \"GET /members/123\"");

    resp->principal = sb_arena_strdup(ctx->arena, c.sub);
    resp->role = sb_role_parse(c.role);
    sb_api_match_t m;
    if (!sb_api_match(method, path, &m)) {
        resp->allowed = false;
        resp->reason = "no such action";
    } else if (m.method->access.public_) {
        resp->allowed = true;
        resp->reason = "public action";
    } else {
        sb_buf_t why = SB_BUF_INIT;
        st = sb_api_authorize(m.method, c.sub, c.role, "", sb_api_match_request(&m, ctx->arena), &why);
        resp->allowed = st == SB_OK;
        resp->reason = resp->allowed ? sb_arena_printf(ctx->arena, "role %s may %s %s", c.role, method,
                                                       m.http->path)
                                     : sb_arena_printf(ctx->arena, "role %s may not %s %s: %s", c.role,
                                                       method, m.http->path, why.buf);
        sb_buf_release(&why);
    }
    sb_debug("authorize %s (%s) %s %s: %s (%s)", c.sub, c.role, method, path,
             resp->allowed ? "allowed" : "denied", resp->reason);
    return SB_OK;
}

/* GetJwks (GET /.well-known/jwks.json): the keys this service's runtime
 * verifies tokens with, which are the keys every verifier loads. */
sb_status_t auth_get_jwks(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    Sb__Auth__Jwks *resp = out;
    sb_buf_t doc = SB_BUF_INIT, err = SB_BUF_INIT;
    sb_authn_jwks(sb_service_of(ctx)->authn, &doc);
    ProtobufCMessage *m = NULL;
    sb_status_t st = sb_json_decode(&sb__auth__jwks__descriptor, doc.buf, doc.len, ctx->arena, &m, &err);
    if (st == SB_OK)
        *resp = *(Sb__Auth__Jwks *)m;
    else
        st = sb_rpc_error(ctx, SB_INTERNAL, "JWKS document: %s", err.buf);
    sb_buf_release(&doc);
    sb_buf_release(&err);
    return st;
}

/* auth service: wiring only. Its RPCs (sb.auth.AuthService in proto/auth.proto)
 * answer UNIMPLEMENTED until their issue lands; see README "Status". */
#include "auth.pb-c.h"
#include "sb/service.h"

SB_SERVICE_MIGRATIONS(auth);

static const sb_rpc_method_t methods[] = {
    {NULL, NULL},
};

static const sb_service_def_t def = {
    .name = "auth",
    .descriptor = &sb__auth__auth_service__descriptor,
    .methods = methods,
    .n_methods = 0,
    .migrations = &sb_auth_migrations,
    .default_grpc_port = 50052,
    .default_admin_port = 9102,
};

int main(void)
{
    return sb_service_main(&def);
}

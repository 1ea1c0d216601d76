/* performance service: wiring only. Its RPCs (sb.performance.PerformanceService in proto/performance.proto)
 * answer UNIMPLEMENTED until their issue lands; see README "Status". */
#include "performance.pb-c.h"
#include "sb/service.h"

SB_SERVICE_MIGRATIONS(performance);

static const sb_rpc_method_t methods[] = {
    {NULL, NULL},
};

static const sb_service_def_t def = {
    .name = "performance",
    .descriptor = &sb__performance__performance_service__descriptor,
    .methods = methods,
    .n_methods = 0,
    .migrations = &sb_performance_migrations,
    .default_grpc_port = 50053,
    .default_admin_port = 9103,
};

int main(void)
{
    return sb_service_main(&def);
}

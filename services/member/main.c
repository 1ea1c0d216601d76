/* member service: wiring only. Its RPCs (sb.member.MemberService in proto/member.proto)
 * answer UNIMPLEMENTED until their issue lands; see README "Status". */
#include "member.pb-c.h"
#include "sb/service.h"

SB_SERVICE_MIGRATIONS(member);

static const sb_rpc_method_t methods[] = {
    {NULL, NULL},
};

static const sb_service_def_t def = {
    .name = "member",
    .descriptor = &sb__member__member_service__descriptor,
    .methods = methods,
    .n_methods = 0,
    .migrations = &sb_member_migrations,
    .default_grpc_port = 50051,
    .default_admin_port = 9101,
};

int main(void)
{
    return sb_service_main(&def);
}

/* reservation service: wiring only. Its RPCs (sb.reservation.ReservationService in proto/reservation.proto)
 * answer UNIMPLEMENTED until their issue lands; see README "Status". */
#include "reservation.pb-c.h"
#include "sb/service.h"

SB_SERVICE_MIGRATIONS(reservation);

static const sb_rpc_method_t methods[] = {
    {NULL, NULL},
};

static const sb_service_def_t def = {
    .name = "reservation",
    .descriptor = &sb__reservation__reservation_service__descriptor,
    .methods = methods,
    .n_methods = 0,
    .migrations = &sb_reservation_migrations,
    .default_grpc_port = 50054,
    .default_admin_port = 9104,
};

int main(void)
{
    return sb_service_main(&def);
}

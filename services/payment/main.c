/* payment service: wiring only. Its RPCs (sb.payment.PaymentService in proto/payment.proto)
 * answer UNIMPLEMENTED until their issue lands; see README "Status". */
#include "payment.pb-c.h"
#include "sb/service.h"

SB_SERVICE_MIGRATIONS(payment);

static const sb_service_def_t def = {
    .name = "payment",
    .descriptor = &sb__payment__payment_service__descriptor,
    .migrations = &sb_payment_migrations,
};

int main(void)
{
    return sb_service_main(&def);
}

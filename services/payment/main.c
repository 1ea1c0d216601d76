/* payment service: wiring only. Its RPCs (sb.payment.PaymentService in proto/payment.proto)
 * answer UNIMPLEMENTED until their issue lands; see README "Status". */
#include "payment.pb-c.h"
#include "sb/service.h"

SB_SERVICE_MAIN(payment);

/* notification service: wiring only. Its RPCs (sb.notification.NotificationService in
 * proto/notification.proto) answer UNIMPLEMENTED until their issue lands; see README "Status". */
#include "notification.pb-c.h"
#include "sb/service.h"

SB_SERVICE_MAIN(notification);

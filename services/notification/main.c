/* notification service: wiring only. Its RPCs (sb.notification.NotificationService in proto/notification.proto)
 * answer UNIMPLEMENTED until their issue lands; see README "Status". */
#include "notification.pb-c.h"
#include "sb/service.h"

SB_SERVICE_MIGRATIONS(notification);

static const sb_service_def_t def = {
    .name = "notification",
    .descriptor = &sb__notification__notification_service__descriptor,
    .migrations = &sb_notification_migrations,
};

int main(void)
{
    return sb_service_main(&def);
}

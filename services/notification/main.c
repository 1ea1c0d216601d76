/* notification service: wiring. Notices to users from the reservation,
 * payment and performance events (events.c), each stored per user (the
 * inbox, notices.c) and mailed by the notice-mail job over SMTP (mail.c).
 * See notification.h for the file map. */
#include "notification.h"
#include "sb/service.h"

static const sb_rpc_method_t methods[] = {
    /* no transaction: the texts need GetMember calls (one per user shown) */
    {"ListNotifications", ntf_list},
    /* one UPDATE; the text's GetMember call after it, outside any transaction */
    {"MarkNotificationRead", ntf_mark_read},
    {"SendReservationNotice", ntf_send_reservation, .tx = SB_TX},
    {"SendPaymentNotice", ntf_send_payment, .tx = SB_TX},
    {"SendCancellationNotice", ntf_send_cancellation, .tx = SB_TX},
    {"DeliverEvent", sb_service_deliver_event},
};

/* Every handler stores notices (and projections) in the inbox transaction:
 * nothing here waits on the mail relay. */
static const sb_event_handler_t events[] = {
    {"performance.approved", &sb__events__performance_approved__descriptor, ntf_on_performance_approved},
    {"performance.changed", &sb__events__performance_changed__descriptor, ntf_on_performance_changed},
    {"performance.cancelled", &sb__events__performance_cancelled__descriptor,
     ntf_on_performance_cancelled},
    {"reservation.created", &sb__events__reservation_created__descriptor, ntf_on_reservation_created},
    {"reservation.confirmed", &sb__events__reservation_confirmed__descriptor,
     ntf_on_reservation_confirmed},
    {"reservation.changed", &sb__events__reservation_changed__descriptor, ntf_on_reservation_changed},
    {"reservation.cancelled", &sb__events__reservation_cancelled__descriptor,
     ntf_on_reservation_cancelled},
    {"reservation.expired", &sb__events__reservation_expired__descriptor, ntf_on_reservation_expired},
    {"payment.approved", &sb__events__payment_approved__descriptor, ntf_on_payment},
    {"payment.declined", &sb__events__payment_declined__descriptor, ntf_on_payment},
    {"payment.refunded", &sb__events__payment_refunded__descriptor, ntf_on_payment},
    {"payment.disputed", &sb__events__payment_disputed__descriptor, ntf_on_payment},
};

/* A session job: its ticks talk to the relay with no transaction open. */
static const sb_job_t jobs[] = {
    {"notice-mail", ntf_mail_tick, .every_ms = 500, .channel = NTF_MAIL_CHANNEL, .session = true},
};

SB_SERVICE_MAIN(notification, SB_METHODS(methods), SB_EVENTS(events), SB_JOBS(jobs), .check = ntf_check);

/* The route table: every REST path of SPEC §3 and the extra paths it names.
 * One row per path; the pipeline in server.c does the rest. A row whose
 * service descriptor is NULL answers 501 until its service lands. */
#include "auth.pb-c.h"
#include "gateway.h"
#include "member.pb-c.h"
#include "notification.pb-c.h"
#include "payment.pb-c.h"
#include "performance.pb-c.h"
#include "reservation.pb-c.h"

#define MEMBER GW_BACKEND_MEMBER, &sb__member__member_service__descriptor
#define AUTH GW_BACKEND_AUTH, &sb__auth__auth_service__descriptor
#define PERF GW_BACKEND_PERFORMANCE, &sb__performance__performance_service__descriptor
#define RESV GW_BACKEND_RESERVATION, &sb__reservation__reservation_service__descriptor
#define PAY GW_BACKEND_PAYMENT, &sb__payment__payment_service__descriptor
#define NOTI GW_BACKEND_NOTIFICATION, &sb__notification__notification_service__descriptor

const gw_route_t gw_routes[] = {
    /* identity */
    {"POST", "/signup", MEMBER, "Signup", GW_PUBLIC, 201, true, false, "Sign up as USER or PLANNER"},
    {"POST", "/login", AUTH, "Login", GW_PUBLIC, 200, true, true, "Log in: access and refresh token"},
    {"POST", "/logout", AUTH, "Logout", GW_SIGNED_IN, 200, true, false, "Revoke the access and refresh token"},
    {"POST", "/token/refresh", AUTH, "Refresh", GW_PUBLIC, 200, true, true, "Rotate the refresh token, new access token"},
    {"POST", "/auth", AUTH, "Authorize", GW_PUBLIC, 200, true, false, "Authenticate a token and authorize an action"},
    {"GET", "/members/{userId}", MEMBER, "GetMember", GW_SIGNED_IN, 200, false, false, "Profile (self, admin)"},
    {"PUT", "/members/{userId}", MEMBER, "UpdateMember", GW_SIGNED_IN, 200, true, false, "Edit profile or password (self)"},
    {"DELETE", "/members/{userId}", MEMBER, "DeleteMember", GW_SIGNED_IN, 200, false, false, "Withdraw (self, admin)"},
    /* catalog */
    {"POST", "/performances", PERF, "CreatePerformance", GW_PLANNER, 201, true, false, "Register a performance (planner)"},
    {"GET", "/performances", PERF, "ListPerformances", GW_PUBLIC, 200, false, false, "List performances"},
    {"GET", "/performances/{performanceId}", PERF, "GetPerformance", GW_PUBLIC, 200, false, false, "Performance detail"},
    {"PUT", "/performances/{performanceId}", PERF, "UpdatePerformance", GW_PLANNER, 200, true, false, "Edit a performance (owning planner)"},
    {"POST", "/performances/{performanceId}/approve", PERF, "ApprovePerformance", GW_ADMIN, 200, true, false, "Approve (admin)"},
    {"POST", "/performances/{performanceId}/reject", PERF, "RejectPerformance", GW_ADMIN, 200, true, false, "Reject with a reason (admin)"},
    {"POST", "/performances/{performanceId}/cancel", PERF, "CancelPerformance", GW_PLANNER | GW_ADMIN, 200, true, false, "Cancel (owning planner, admin)"},
    {"GET", "/performances/{performanceId}/reservations", RESV, "GetPerformanceReservations", GW_PLANNER | GW_ADMIN, 200, false, false, "Seats sold/held/free and reservations (owning planner, admin)"},
    {"GET", "/schedules/{scheduleId}/seats", RESV, "GetSeatMap", GW_PUBLIC, 200, false, false, "Seat map of a schedule"},
    /* booking */
    {"GET", "/reservations", RESV, "ListBookable", GW_PUBLIC, 200, false, false, "What can be booked now, with free seats"},
    {"POST", "/reservations", RESV, "CreateReservation", GW_USER, 201, true, false, "Hold seats (Idempotency-Key honoured)"},
    {"GET", "/reservations/{reservationId}", RESV, "GetReservation", GW_SIGNED_IN, 200, false, false, "Reservation detail (owner, admin)"},
    {"PUT", "/reservations/{reservationId}", RESV, "UpdateReservation", GW_USER | GW_ADMIN, 200, true, false, "Change seats or attendee (owner, admin)"},
    {"DELETE", "/reservations/{reservationId}", RESV, "CancelReservation", GW_USER | GW_ADMIN, 200, false, false, "Cancel, refund if paid (owner, admin)"},
    {"GET", "/reservations/{reservationId}/payment", RESV, "GetReservationPayment", GW_SIGNED_IN, 200, false, false, "Payment of a reservation (owner, admin)"},
    {"GET", "/admin/reservations", RESV, "ListReservations", GW_ADMIN, 200, false, false, "Every reservation (admin)"},
    {"POST", "/payments", PAY, "CreatePayment", GW_USER, 201, true, false, "Pay a reservation (Idempotency-Key honoured)"},
    {"GET", "/payments", PAY, "ListPayments", GW_SIGNED_IN, 200, false, false, "Payments (admin: all, user: own)"},
    {"PUT", "/payments/{paymentId}", PAY, "UpdatePayment", GW_ADMIN, 200, true, false, "Provider confirmation / admin status update"},
    {"DELETE", "/payments/{paymentId}", PAY, "CancelPayment", GW_USER | GW_ADMIN, 200, false, false, "Cancel or refund (owner, admin)"},
    /* events */
    {"POST", "/events/reservations", RESV, "ReplayEvents", GW_ADMIN, 200, true, false, "Re-publish reservation events"},
    {"POST", "/events/payments", PAY, "ReplayEvents", GW_ADMIN, 200, true, false, "Re-publish payment events"},
    {"POST", "/events/cancellations", RESV, "ReplayCancellationEvents", GW_ADMIN, 200, true, false, "Re-publish cancellation events"},
    {"POST", "/events/{serviceId}", RESV, "DeliverEvent", GW_ADMIN, 200, true, false, "Deliver an event to a service's consumer", "serviceId"},
    /* notifications */
    {"POST", "/notifications/reservations", NOTI, "SendReservationNotice", GW_ADMIN, 200, true, false, "Send a reservation notice"},
    {"POST", "/notifications/payments", NOTI, "SendPaymentNotice", GW_ADMIN, 200, true, false, "Send a payment notice"},
    {"POST", "/notifications/cancellations", NOTI, "SendCancellationNotice", GW_PLANNER | GW_ADMIN, 200, true, false, "Cancellation/change notice to holders"},
    {"GET", "/notifications", NOTI, "ListNotifications", GW_SIGNED_IN, 200, false, false, "Own inbox"},
};
const ProtobufCServiceDescriptor *const gw_backend_svcs[GW_N_BACKENDS] = {
    &sb__member__member_service__descriptor,           &sb__auth__auth_service__descriptor,
    &sb__performance__performance_service__descriptor, &sb__reservation__reservation_service__descriptor,
    &sb__payment__payment_service__descriptor,         &sb__notification__notification_service__descriptor,
};

const size_t gw_n_routes = sizeof gw_routes / sizeof gw_routes[0];

/* reservation service: wiring. Inventory: the seat maps and bookable
 * performances built from the performance service's events on
 * sb.performance (inventory_events.c) and the RPCs reading them
 * (inventory.c). Booking: holds (holds.c), view/change/cancel and the lists
 * (booking.c), the hold-expiry job. The saga with payment: its events and
 * the mass-cancel job (saga.c), calls to the payment service (payments.c).
 * See reservation.h for the file map. */
#include "reservation.h"
#include "sb/service.h"

static const sb_rpc_method_t methods[] = {
    {"GetSeatMap", resv_get_seat_map},
    {"ListBookable", resv_list_bookable, .tx = SB_TX_READ, .iso = SB_PG_REPEATABLE_READ},
    {"GetPerformanceReservations", resv_get_performance_reservations, .tx = SB_TX_READ,
     .iso = SB_PG_REPEATABLE_READ},
    {"CreateReservation", resv_create, .tx = SB_TX, .idempotent = true},
    {"GetReservation", resv_get, .tx = SB_TX_READ, .iso = SB_PG_REPEATABLE_READ},
    {"UpdateReservation", resv_update, .tx = SB_TX},
    {"CancelReservation", resv_cancel, .tx = SB_TX},
    {"GetReservationPayment", resv_get_payment},
    {"ListReservations", resv_list},
    {"ListMemberReservations", resv_list_member},
    {"DeliverEvent", sb_service_deliver_event},
    {"ReplayEvents", sb_service_replay_events},
    {"ReplayCancellationEvents", resv_replay_cancellations},
};

static const sb_event_handler_t events[] = {
    {"performance.approved", &sb__events__performance_approved__descriptor,
     resv_on_performance_approved},
    {"performance.changed", &sb__events__performance_changed__descriptor, resv_on_performance_changed},
    {"performance.cancelled", &sb__events__performance_cancelled__descriptor,
     resv_on_performance_cancelled},
    {"payment.approved", &sb__events__payment_approved__descriptor, resv_on_payment_approved},
    {"payment.refunded", &sb__events__payment_refunded__descriptor, resv_on_payment_refunded},
    {"member.withdrawn", &sb__events__member_withdrawn__descriptor, resv_on_member_withdrawn},
};

/* Seats of large snapshots, schedule by schedule (inventory_events.c); woken
 * by NOTIFY at the event's commit, and every second (a pending schedule left
 * by a crash, a connection lost to a database restart: back within 1-2 s).
 * Holds past their deadline ended within a second (HOLD_TTL_S, holds.c).
 * Mass cancels (a cancelled performance, a withdrawn member) beyond the
 * event's first batch, a batch per tick, woken by NOTIFY (saga.c). */
static const sb_job_t jobs[] = {
    {"inventory-seat-fill", resv_seat_fill_tick, .every_ms = 1000, .channel = RESV_SEAT_FILL_CHANNEL},
    {"hold-expiry", resv_expire_holds, .every_ms = 500},
    {"mass-cancel", resv_mass_cancel_tick, .every_ms = 1000, .channel = RESV_MASS_CANCEL_CHANNEL},
};

SB_SERVICE_MAIN(reservation, SB_METHODS(methods), SB_EVENTS(events), SB_JOBS(jobs),
                .check = resv_booking_check);

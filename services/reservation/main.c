/* reservation service: wiring. Inventory (this issue): the seat maps and
 * bookable performances built from the performance service's events on
 * sb.performance (inventory_events.c) and the RPCs reading them
 * (inventory.c); see reservation.h for the file map. Holds, reservations and
 * payments come with the booking issue; their RPCs answer UNIMPLEMENTED. */
#include "reservation.h"
#include "sb/service.h"

static const sb_rpc_method_t methods[] = {
    {"GetSeatMap", resv_get_seat_map},
    {"ListBookable", resv_list_bookable, .tx = SB_TX_READ, .iso = SB_PG_REPEATABLE_READ},
    {"GetPerformanceReservations", resv_get_performance_reservations, .tx = SB_TX_READ,
     .iso = SB_PG_REPEATABLE_READ},
    {"DeliverEvent", sb_service_deliver_event},
    {"ReplayEvents", sb_service_replay_events},
};

static const sb_event_handler_t events[] = {
    {"performance.approved", &sb__events__performance_approved__descriptor,
     resv_on_performance_approved},
    {"performance.changed", &sb__events__performance_changed__descriptor, resv_on_performance_changed},
    {"performance.cancelled", &sb__events__performance_cancelled__descriptor,
     resv_on_performance_cancelled},
};

/* Seats of large snapshots, schedule by schedule (inventory_events.c); woken
 * by NOTIFY at the event's commit, and every second (a pending schedule left
 * by a crash, a connection lost to a database restart: back within 1-2 s). */
static const sb_job_t jobs[] = {
    {"inventory-seat-fill", resv_seat_fill_tick, .every_ms = 1000, .channel = RESV_SEAT_FILL_CHANNEL},
};

SB_SERVICE_MAIN(reservation, SB_METHODS(methods), SB_EVENTS(events), SB_JOBS(jobs));

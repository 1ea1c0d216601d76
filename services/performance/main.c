/* performance service: wiring. The catalog (proto/performance.proto): planners
 * register and edit performances with their schedules and seat grades,
 * admins approve or reject them, planners or admins cancel them; approvals,
 * changes and cancellations go out as performance.* events through the
 * outbox. Handlers in performance.c; see performance.h for the file map.
 *
 * Configuration beyond the common one (README "Configuration"):
 *   RESERVATION_ADDR  the reservation service, asked for held/sold seats before
 *                     a grade of an approved performance changes (default
 *                     127.0.0.1:50054) */
#include "performance.h"
#include "sb/service.h"

/* Reads take one snapshot across the performance, its schedules and grades. */
static const sb_rpc_method_t methods[] = {
    {"CreatePerformance", perf_create, .tx = SB_TX},
    {"UpdatePerformance", perf_update, .tx = SB_TX},
    {"GetPerformance", perf_get, .tx = SB_TX_READ, .iso = SB_PG_REPEATABLE_READ},
    {"ListPerformances", perf_list_rpc, .tx = SB_TX_READ, .iso = SB_PG_REPEATABLE_READ},
    {"ApprovePerformance", perf_approve, .tx = SB_TX},
    {"RejectPerformance", perf_reject, .tx = SB_TX},
    {"CancelPerformance", perf_cancel, .tx = SB_TX},
    /* Consumes nothing: answers FAILED_PRECONDITION (admins) as the contract asks. */
    {"DeliverEvent", sb_service_deliver_event},
};

SB_SERVICE_MAIN(performance, SB_METHODS(methods));

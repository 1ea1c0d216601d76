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

SB_SERVICE_MIGRATIONS(performance);

static const sb_rpc_method_t methods[] = {
    {"CreatePerformance", perf_create},
    {"UpdatePerformance", perf_update},
    {"GetPerformance", perf_get},
    {"ListPerformances", perf_list_rpc},
    {"ApprovePerformance", perf_approve},
    {"RejectPerformance", perf_reject},
    {"CancelPerformance", perf_cancel},
    /* Consumes nothing: answers FAILED_PRECONDITION (admins) as the contract asks. */
    {"DeliverEvent", sb_service_deliver_event},
};

static const sb_service_def_t def = {
    .name = "performance",
    .descriptor = &sb__performance__performance_service__descriptor,
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
    .migrations = &sb_performance_migrations,
};

int main(void)
{
    return sb_service_main(&def);
}

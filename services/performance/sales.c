/* The reservation service's count of held and sold seats, asked before a
 * grade of an approved performance changes price or size or goes away.
 * Its answer is the only source: when it cannot be had, the edit is refused
 * (UNAVAILABLE), never guessed. */
#include <string.h>

#include "performance.h"
#include "reservation.pb-c.h"
#include "sb/config.h"
#include "sb/log.h"
#include "sb/registry.h"

#define SALES_TIMEOUT_MS 3000

sb_status_t perf_sales_fetch(sb_rpc_ctx_t *ctx, const char *performance_id, perf_sales_t *out)
{
    memset(out, 0, sizeof *out);
    const char *addr = sb_registry_addr("reservation");
    int64_t left = sb_rpc_remaining_ms(ctx);
    int64_t timeout = left < SALES_TIMEOUT_MS ? left - 100 : SALES_TIMEOUT_MS;
    if (timeout <= 0)
        return sb_rpc_fail(ctx, SB_UNAVAILABLE,
                           "no time left to ask the reservation service for held and sold seats");
    Sb__Reservation__GetPerformanceReservationsRequest req =
        SB__RESERVATION__GET_PERFORMANCE_RESERVATIONS_REQUEST__INIT;
    req.performance_id = (char *)performance_id;
    sb_call_opts_t opts = {
        .timeout_ms = timeout,
        .trace_id = ctx->trace_id,
        .token = ctx->token, /* on the planner's behalf; this service is known by its certificate */
    };
    Sb__Reservation__PerformanceReservations *resp = NULL;
    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st = sb_rpc_call(
        sb_channel_get_service("reservation"), &sb__reservation__reservation_service__descriptor,
        "GetPerformanceReservations", &req.base, ctx->arena, (ProtobufCMessage **)&resp, &opts, &err);
    if (st == SB_NOT_FOUND) {
        /* No inventory yet: the approval event is not consumed, so no seat
         * of this performance can be held or sold. */
        sb_info("reservation service knows no performance %s: no sales", performance_id);
        sb_buf_release(&err);
        return SB_OK;
    }
    if (st != SB_OK) {
        sb_warn("GetPerformanceReservations(%s) at %s: %s %s", performance_id, addr, sb_status_name(st),
                err.buf);
        sb_buf_release(&err);
        return sb_rpc_fail(ctx, SB_UNAVAILABLE,
                           "cannot confirm with the reservation service that no seat of the grade is"
                           " held or sold (%s); try again later",
                           sb_status_name(st));
    }
    sb_buf_release(&err);

    size_t cap = 0;
    for (size_t i = 0; i < resp->n_schedules; i++)
        cap += resp->schedules[i]->n_grades;
    out->g = SB_ARENA_NEW(ctx->arena, grade_sales_t, cap);
    for (size_t i = 0; i < resp->n_schedules; i++) {
        const Sb__Reservation__ScheduleSales *s = resp->schedules[i];
        for (size_t j = 0; j < s->n_grades; j++) {
            const Sb__Reservation__GradeAvailability *g = s->grades[j];
            const char *name = g->grade ? g->grade : "";
            size_t k = 0;
            while (k < out->n && strcmp(out->g[k].grade, name) != 0)
                k++;
            if (k == out->n)
                out->g[out->n++].grade = sb_arena_strdup(ctx->arena, name);
            out->g[k].held += g->held;
            out->g[k].sold += g->sold;
        }
    }
    return SB_OK;
}

int64_t perf_sales_taken(const perf_sales_t *s, const char *grade)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->g[i].grade, grade))
            return s->g[i].held + s->g[i].sold;
    return 0;
}

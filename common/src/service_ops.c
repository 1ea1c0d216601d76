/* Operations every service offers the same way: POST /events/{serviceId}
 * (DeliverEvent) and the POST /events/... replays (ReplayEvents). A service
 * lists them in its handler table:
 *     {"DeliverEvent", sb_service_deliver_event}, {"ReplayEvents", sb_service_replay_events} */
#include <stdio.h>
#include <string.h>

#include "sb/audit.h"
#include "sb/log.h"
#include "sb/service.h"
#include "sb/util.h"
#include "sb/valid.h"

sb_status_t sb_service_deliver_event(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Events__DeliverEventRequest *req = in;
    Sb__Events__DeliverEventResponse *resp = out;
    sb_service_t *svc = sb_service_of(ctx);
    if (!sb_rpc_is_admin(ctx))
        return sb_rpc_fail(ctx, SB_PERMISSION_DENIED, "only an admin may deliver events");
    sb_status_t st;
    if ((st = sb_audit_need_reason(ctx, req->reason)) != SB_OK)
        return st;
    if (!svc->def->n_events)
        return sb_rpc_fail(ctx, SB_FAILED_PRECONDITION, "the %s service consumes no events",
                           svc->def->name);

    /* the envelope the producer would have written; the inbox checks it
     * exactly as one from Kafka (sb/events.h) */
    char ts[32];
    sb_time_rfc3339(sb_now_ms(), ts);
    sb_event_envelope_t env = SB__EVENTS__EVENT_ENVELOPE__INIT;
    env.event_id = req->event_id;
    env.type = req->type;
    env.aggregate_id = req->aggregate_id;
    env.occurred_at = ts;
    env.trace_id = (char *)ctx->trace_id;
    env.producer = "deliver-event";
    env.payload = req->payload;
    size_t len = sb__events__event_envelope__get_packed_size(&env);
    uint8_t *bytes = sb_arena_alloc(ctx->arena, len ? len : 1);
    sb__events__event_envelope__pack(&env, bytes);

    sb_event_table_t events = {svc->def->events, svc->def->n_events, svc};
    sb_inbox_result_t res = SB_INBOX_RESULT_INIT;
    /* handled: an admin's change to the service's data, audited with it */
    sb_audit_call_t audit = {
        ctx,
        {.target_type = "event",
         .target_id = req->event_id,
         .reason = req->reason,
         .after = sb_arena_printf(ctx->arena, "%.64s of %.64s handled", req->type, req->aggregate_id),
         .service = svc->def->name}};
    sb_inbox_also_t also = {sb_audit_record_on, &audit};
    st = sb_inbox_deliver(svc->pg, &events, "DeliverEvent", bytes, len, &also, &res);
    if (res.outcome == SB_EVENT_DEAD_LETTER)
        st = sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                         "%s (kept in the dead letters; the event id stays free)", res.reason.buf);
    else if (st != SB_OK)
        st = sb_rpc_error(ctx, st, "event %.64s: %s", req->event_id, res.reason.buf);
    if (st == SB_OK) {
        bool dup = res.outcome == SB_EVENT_DUPLICATE;
        sb_info("event %s %s delivered by %s%s", req->type, req->event_id, ctx->user_id,
                dup                               ? " (duplicate)"
                : res.outcome == SB_EVENT_SKIPPED ? " (not for this service)"
                                                  : "");
        resp->event_id = sb_arena_strdup(ctx->arena, req->event_id);
        resp->duplicate = dup;
    }
    sb_inbox_result_release(&res);
    return st;
}

/* A timestamp filter: empty, or RFC 3339 (sb_parse_rfc3339; what it accepts
 * PostgreSQL reads the same). */
static bool replay_time(sb_rpc_ctx_t *ctx, const char *name, const char *s, int64_t *ms, sb_status_t *st)
{
    if (!*s || sb_parse_rfc3339(s, ms))
        return true;
    *st = sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                      "%s: must be an RFC 3339 timestamp such as 2030-01-31T19:30:00Z", name);
    return false;
}

sb_status_t sb_service_replay(sb_rpc_ctx_t *ctx, const void *in, void *out, const char *type_prefix)
{
    const Sb__Events__ReplayEventsRequest *req = in;
    Sb__Events__ReplayEventsResponse *resp = out;
    sb_status_t st = SB_OK;
    sb_service_t *svc = sb_service_of(ctx);
    if (!sb_rpc_is_admin(ctx))
        return sb_rpc_fail(ctx, SB_PERMISSION_DENIED, "only an admin may replay events");
    if ((st = sb_audit_need_reason(ctx, req->reason)) != SB_OK)
        return st;
    /* at least one filter: a whole outbox is never replayed by accident */
    if (!*req->aggregate_id && !*req->since)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "give aggregateId, since (with until if you like) or both: replaying every "
                           "event of the outbox is not offered");
    const char *aggregate = NULL;
    if (*req->aggregate_id && !(aggregate = sb_uuid_norm(ctx->arena, req->aggregate_id)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "aggregateId: must be a UUID (a reservation id)");
    int64_t since_ms = 0, until_ms = 0;
    if (!replay_time(ctx, "since", req->since, &since_ms, &st) ||
        !replay_time(ctx, "until", req->until, &until_ms, &st))
        return st;
    if (*req->since && *req->until && until_ms <= since_ms)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "until: must be after since (the range is [since, until))");

    sb_outbox_filter_t f = {type_prefix, aggregate, req->since, req->until};
    sb_outbox_replayed_t done;
    /* the marks and the admin's audit record commit together (one that
     * re-publishes nothing changes nothing and records nothing) */
    sb_db_t u = {.arena = ctx->arena, .detail = &ctx->detail, .pool = svc->pg, .begin = "BEGIN"};
    sb_audit_call_t audit = {
        ctx,
        {.target_type = "events",
         .target_id = aggregate ? aggregate : sb_arena_printf(ctx->arena, "%s*", type_prefix),
         .reason = req->reason,
         .service = svc->def->name}};
    st = sb_outbox_replay(&u, &f, &done);
    if (st == SB_OK && done.count > 0) {
        audit.audit.after = sb_arena_printf(
            ctx->arena, "%lld %s* events re-published (since %s, until %s)", (long long)done.count,
            type_prefix, *req->since ? req->since : "-", *req->until ? req->until : "-");
        st = sb_audit_record_on(&u, &audit);
    }
    if (st == SB_OK)
        st = sb_db_commit(&u);
    sb_db_rollback(&u);
    if (st != SB_OK)
        return sb_rpc_error(ctx, st, "replay of %s events failed", type_prefix);
    sb_info("replay of %s* events (aggregate %s, since %s, until %s) by admin %s: %lld re-published",
            type_prefix, aggregate ? aggregate : "any", *req->since ? req->since : "-",
            *req->until ? req->until : "-", ctx->user_id, (long long)done.count);
    resp->republished = done.count;
    resp->event_ids = done.ids;
    resp->n_event_ids = done.n_ids;
    return SB_OK;
}

sb_status_t sb_service_replay_events(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s.", sb_service_of(ctx)->def->name);
    return sb_service_replay(ctx, in, out, prefix);
}

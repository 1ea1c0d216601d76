/* The audit record of an admin action (sb/audit.h).
 *
 * Design: the record travels as an ordinary domain event through the
 * service's own outbox instead of a remote call or a shared table: it is
 * written in the change's transaction (no change without its record, no
 * record of a change that rolled back), needs no other service to be up, and
 * reaches the one service that keeps the log (auth) with the platform's
 * at-least-once delivery, the inbox making a redelivery harmless. Each
 * service's handlers call it once; nothing here knows a service. */
#include <string.h>

#include "sb/audit.h"
#include "sb/db.h"
#include "sb/events.h"
#include "sb/util.h"
#include "sb/valid.h"

bool sb_audit_as_admin(const sb_rpc_ctx_t *ctx, const char *owner_id)
{
    return sb_rpc_is_admin(ctx) && !sb_rpc_is_self(ctx, owner_id);
}

static bool blank(const char *s)
{
    for (; *s; s++)
        if (!strchr(" \t\r\n", *s))
            return false;
    return true;
}

sb_status_t sb_audit_need_reason(sb_rpc_ctx_t *ctx, const char *reason)
{
    if (!reason || blank(reason))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "reason: an admin acting on another member's data must give a reason");
    if (strlen(reason) > SB_AUDIT_REASON_MAX || !sb_valid_utf8_text(reason, false, NULL))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "reason: text of at most %d bytes without control characters",
                           SB_AUDIT_REASON_MAX);
    return SB_OK;
}

/* "/sb.reservation.ReservationService/CancelReservation": the package's last
 * part and the method, copied into a. */
static void split_method(sb_arena_t *a, const char *method, char **service, char **action)
{
    const char *m = method ? method : "";
    const char *slash = strrchr(m, '/');
    *action = sb_arena_strdup(a, slash ? slash + 1 : m);
    const char *start = m + (*m == '/');
    const char *end = slash && slash > start ? slash : start + strlen(start);
    const char *dot = end; /* the dot before "ReservationService" */
    while (dot > start && *dot != '.')
        dot--;
    const char *from = dot;
    while (from > start && from[-1] != '.')
        from--;
    *service = dot > from ? sb_arena_strndup(a, from, (size_t)(dot - from)) : sb_arena_strdup(a, "");
}

static char *text(const char *s)
{
    return (char *)(s ? s : "");
}

static sb_status_t record(sb_rpc_ctx_t *ctx, sb_db_t *db, const sb_audit_t *a)
{
    Sb__Events__AuditAdminAction ev = SB__EVENTS__AUDIT_ADMIN_ACTION__INIT;
    char at[32];
    if (!db)
        return sb_rpc_error(ctx, SB_INTERNAL, "audit record of %s outside a transaction", ctx->method);
    sb_time_rfc3339(sb_now_ms(), at);
    split_method(ctx->arena, ctx->method, &ev.service, &ev.action);
    if (a->service)
        ev.service = (char *)a->service;
    ev.admin_id = text(ctx->user_id);
    ev.target_type = text(a->target_type);
    ev.target_id = text(a->target_id);
    ev.reason = text(a->reason);
    ev.trace_id = text(ctx->trace_id);
    ev.occurred_at = at;
    ev.before = text(a->before);
    ev.after = text(a->after);
    sb_status_t st;
    sb_pg_conn_t *c = sb_db_conn(db, &st);
    if (!c)
        return st;
    /* keyed by the admin: one admin's actions stay in order, and the
     * target's own event stream (aggregate = target id) is left alone */
    return sb_outbox_add(c, "audit.admin_action", ev.admin_id, &ev.base, NULL, db->detail);
}

sb_status_t sb_audit_record(sb_rpc_ctx_t *ctx, const sb_audit_t *a)
{
    return record(ctx, ctx->db, a);
}

sb_status_t sb_audit_record_on(sb_db_t *db, void *audit_call)
{
    sb_audit_call_t *call = audit_call;
    return record(call->ctx, db, &call->audit);
}

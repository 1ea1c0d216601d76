/* The platform's admin audit log (issue 12): every service writes an
 * audit.admin_action event with each change an admin makes to someone else's
 * data (sb_audit_record, common/src/audit.c, in the change's transaction);
 * this service keeps them in admin_audit and serves GET /admin/audit.
 *
 * Why here: the log must outlive and stand apart from the services it
 * watches (an admin of the reservation service should not be able to edit
 * its own trail in the reservation database), and auth already has its own
 * PostgreSQL database, consumes platform events and is the service that
 * knows who the admins are. Every service reads only its own tables: the
 * log is built from events, never from another service's database.
 *
 *   audit.admin_action  -> auth_on_admin_action: one row, inside the inbox
 *                          transaction (a redelivered event is a duplicate in
 *                          the inbox; ON CONFLICT on the event id besides)
 *   ListAdminAudit      -> GET /admin/audit (admin only, the API table):
 *                          newest first, filters, keyset pages on
 *                          (occurred_at, event_id) */
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "sb/db.h"
#include "sb/log.h"
#include "sb/util.h"

#define PAGE_DEFAULT 50
#define PAGE_MAX 200
#define FILTER_MAX_BYTES 200

static const sb_pg_stmt_t stmt_insert = {
    "auth_audit_insert",
    "INSERT INTO admin_audit (event_id, admin_id, service, action, target_type, target_id, reason,"
    " trace_id, occurred_at, before, after)"
    " VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9::timestamptz, $10, $11)"
    " ON CONFLICT (event_id) DO NOTHING"};

/* $1 admin, $2 service, $3 action, $4 target, $5 since, $6 until, $7/$8 the
 * page token (µs, id), $9 limit */
static const sb_pg_stmt_t stmt_list = {
    "auth_audit_list",
    "SELECT event_id::text AS event_id, admin_id, service, action, target_type, target_id, reason,"
    " trace_id, " SB_DB_TS(
        "occurred_at") " AS occurred_at, before, after,"
                       " (extract(epoch FROM occurred_at) * 1000000)::bigint AS cursor_us"
                       " FROM admin_audit"
                       " WHERE ($1::text IS NULL OR admin_id = $1) AND ($2::text IS NULL OR service = "
                       "$2)"
                       " AND ($3::text IS NULL OR action = $3) AND ($4::text IS NULL OR target_id = $4)"
                       " AND ($5::timestamptz IS NULL OR occurred_at >= $5::timestamptz)"
                       " AND ($6::timestamptz IS NULL OR occurred_at < $6::timestamptz)"
                       " AND ($7::bigint IS NULL OR (occurred_at, event_id) <"
                       "      (timestamptz 'epoch' + $7::bigint * interval '1 microsecond', $8::uuid))"
                       " ORDER BY occurred_at DESC, event_id DESC LIMIT $9::int"};

static bool filled(const char *s)
{
    return s && *s;
}

sb_status_t auth_on_admin_action(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__AuditAdminAction *m = payload;
    const char *occurred = m->occurred_at;
    if (!sb_valid_uuid(ev->env->event_id))
        return sb_event_refuse(ev, "AuditAdminAction without an event id");
    if (!filled(m->admin_id) || !filled(m->service) || !filled(m->action) || !filled(m->target_id) ||
        !filled(m->reason))
        return sb_event_refuse(ev,
                               "AuditAdminAction needs adminId, service, action, targetId and reason");
    if (!sb_parse_rfc3339(occurred, NULL) && !sb_parse_rfc3339(occurred = ev->env->occurred_at, NULL))
        return sb_event_refuse(ev, "AuditAdminAction without a time it occurred");
    PGresult *r;
    sb_status_t st =
        sb_db_exec(ev->db, &stmt_insert, &r, ev->env->event_id, m->admin_id, m->service, m->action,
                   m->target_type, m->target_id, m->reason, m->trace_id, occurred, m->before, m->after);
    if (st == SB_OK)
        sb_info("audit: admin %s %s.%s on %s %s: %s", m->admin_id, m->service, m->action, m->target_type,
                m->target_id, m->reason);
    return st;
}

/* The filter text, or NULL when empty; a refusal when too long or not text. */
static sb_status_t filter(sb_rpc_ctx_t *ctx, const char *name, const char *in, const char **out)
{
    *out = NULL;
    if (!filled(in))
        return SB_OK;
    if (strlen(in) > FILTER_MAX_BYTES || !sb_valid_utf8_text(in, false, NULL))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "%s: text of at most %d bytes", name,
                           FILTER_MAX_BYTES);
    *out = in;
    return SB_OK;
}

static sb_status_t instant(sb_rpc_ctx_t *ctx, const char *name, const char *in, const char **out)
{
    *out = NULL;
    if (!filled(in))
        return SB_OK;
    if (!sb_parse_rfc3339(in, NULL))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "%s must be an RFC 3339 date-time", name);
    *out = in;
    return SB_OK;
}

sb_status_t auth_list_admin_audit(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Auth__ListAdminAuditRequest *req = in;
    Sb__Auth__ListAdminAuditResponse *resp = out;
    const char *admin, *service, *action, *target, *since, *until;
    sb_status_t st;
    if ((st = filter(ctx, "adminId", req->admin_id, &admin)) != SB_OK ||
        (st = filter(ctx, "service", req->service, &service)) != SB_OK ||
        (st = filter(ctx, "action", req->action, &action)) != SB_OK ||
        (st = filter(ctx, "targetId", req->target_id, &target)) != SB_OK ||
        (st = instant(ctx, "since", req->since, &since)) != SB_OK ||
        (st = instant(ctx, "until", req->until, &until)) != SB_OK)
        return st;
    /* ids are stored as the services wrote them: canonical lower-case UUIDs */
    if (admin && sb_valid_uuid(admin))
        admin = sb_uuid_norm(ctx->arena, admin);
    if (target && sb_valid_uuid(target))
        target = sb_uuid_norm(ctx->arena, target);
    sb_page_t pg;
    st = sb_rpc_page(ctx, req->page_size, req->page_token, PAGE_DEFAULT, PAGE_MAX, &pg);
    if (st != SB_OK)
        return st;
    int size = pg.size;
    PGresult *r;
    if ((st = sb_db_exec(ctx->db, &stmt_list, &r, admin, service, action, target, since, until,
                         pg.after_us, pg.after_id, pg.limit)) != SB_OK)
        return st;
    int rows = PQntuples(r);
    bool more = rows > size;
    if (more)
        rows = size;
    resp->n_entries = (size_t)rows;
    resp->entries = sb_db_rows_to_pb(ctx->arena, r, 0, rows, &sb__auth__admin_audit_entry__descriptor);
    if (more)
        resp->next_page_token =
            sb_arena_printf(ctx->arena, "%s.%s", PQgetvalue(r, rows - 1, PQfnumber(r, "cursor_us")),
                            resp->entries[rows - 1]->event_id);
    return SB_OK;
}

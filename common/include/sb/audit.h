/* Admin oversight: every change or cancellation an admin makes to something
 * that is not their own carries a reason and leaves an audit.admin_action
 * event, written through the service's transactional outbox in the
 * transaction of the change itself (so the change and its audit record
 * commit or vanish together). The auth service consumes the events into its
 * admin_audit table and serves GET /admin/audit (services/auth/audit.c).
 *
 * A handler that an admin may run on someone else's data does three things:
 *
 *     bool as_admin = sb_audit_as_admin(ctx, res->user_id);
 *     if (as_admin && (st = sb_audit_need_reason(ctx, req->reason)) != SB_OK)
 *         return st;                                   // before anything changes
 *     ... the change, on ctx->db ...
 *     if (as_admin)
 *         st = sb_audit_record(ctx, &(sb_audit_t){"reservation", id, req->reason,
 *                                                 "CONFIRMED", "CANCELLED"});
 *
 * The admin's id is the caller's verified token (ctx->user_id), never a
 * request field; the service is the RPC's package ("sb.reservation..." ->
 * "reservation") and the action its method name ("CancelReservation"). */
#ifndef SB_AUDIT_H
#define SB_AUDIT_H
#include <stdbool.h>

#include "sb/rpc.h"
#include "sb/status.h"

/* The longest reason accepted, in bytes. */
#define SB_AUDIT_REASON_MAX 500

/* The target of an admin action and why; every string borrowed for the call.
 * before/after: a short summary of the state the action found and left
 * ("PENDING_PAYMENT" -> "CANCELLED"), NULL or "" when none is cheap. */
typedef struct sb_audit {
    const char *target_type; /* "reservation", "payment", "member", "performance" */
    const char *target_id;
    const char *reason;
    const char *before;
    const char *after;
    const char *service; /* NULL: the rpc's package; the operations every
                            service offers (sb/service.h) name the service */
} sb_audit_t;

/* true when the caller acts as an admin on something owned by owner_id: the
 * verified role is ADMIN and the caller is not owner_id (NULL: owned by no
 * member). An owner acting on their own thing is not audited. */
bool sb_audit_as_admin(const sb_rpc_ctx_t *ctx, const char *owner_id);

/* OK when reason is text with something besides blanks, of at most
 * SB_AUDIT_REASON_MAX bytes, without control characters; otherwise a refusal
 * (INVALID_ARGUMENT, "reason: ..." for the client) through sb_rpc_fail. */
sb_status_t sb_audit_need_reason(sb_rpc_ctx_t *ctx, const char *reason);

/* Writes the audit.admin_action event of this call (keyed by the admin id)
 * to the outbox on ctx->db, which must be inside the change's transaction
 * (a row with .tx = SB_TX). INTERNAL (detail in ctx->detail) when the outbox
 * refuses or there is no transaction. */
sb_status_t sb_audit_record(sb_rpc_ctx_t *ctx, const sb_audit_t *a);

/* The same record, for a change the call makes on a transaction it does not
 * own (an event an admin hands to the inbox: an sb_inbox_also_t's fn, with
 * an sb_audit_call_t as arg): written on db. */
typedef struct sb_audit_call {
    sb_rpc_ctx_t *ctx;
    sb_audit_t audit;
} sb_audit_call_t;
sb_status_t sb_audit_record_on(sb_db_t *db, void *audit_call);

#endif

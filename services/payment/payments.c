/* The payments table: rows, state changes, and the RPCs that read or correct
 * it.
 *
 *   GetPayment      by id (GET /payments/{paymentId}) or by reservation
 *                   (?reservationId=, what the reservation service asks for
 *                   GET /reservations/{id}/payment): the owner or an admin
 *                   (anyone else: the 404 of an unknown id); the reservation
 *                   service calling on nobody's behalf is admitted too
 *   ListPayments    newest first, keyset pages over (created_at, payment_id),
 *                   token "<created_at us>.<id>": a member's own; an admin
 *                   every payment, or one member's (userId)
 *   UpdatePayment   an admin's correction: status and/or providerRef, with a
 *                   reason (required), logged, the event of the new status
 *
 * Every state change goes through pay_transition: one statement that
 * changes the row only from the states it expects, writes the payment_log
 * row, and (in the same transaction) the event of the new state. The
 * events are keyed by the reservation id, so one reservation's payment
 * events reach the reservation service in order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payment.h"
#include "sb/audit.h"
#include "sb/config.h"
#include "sb/log.h"
#include "sb/pb.h"
#include "sb/valid.h"

#define PAGE_DEFAULT 20
#define PAGE_MAX 100
#define REASON_MAX_BYTES 500
#define PROVIDER_REF_MAX_BYTES 100

pay_config_t pay_config;

sb_status_t pay_check(sb_buf_t *err)
{
    pay_config.provider_url = sb_cfg_str("PROVIDER_URL", "http://127.0.0.1:7190");
    pay_config.webhook_secret = sb_cfg_str("PROVIDER_WEBHOOK_SECRET", "sb-dev-webhook-secret");
    pay_config.provider_timeout_ms = (int)sb_cfg_int("PROVIDER_TIMEOUT_MS", 3000, 100, 60000);
    pay_config.reconcile_ms = (int)sb_cfg_int("PAYMENT_RECONCILE_MS", 1000, 10, 600000);
    pay_config.pending_grace_ms = (int)sb_cfg_int("PAYMENT_PENDING_GRACE_MS", 5000, 100, 3600000);
    pay_config.webhook_tolerance_s = (int)sb_cfg_int("PROVIDER_WEBHOOK_TOLERANCE_S", 300, 1, 86400);
    if (strncmp(pay_config.provider_url, "http://", 7) != 0 &&
        strncmp(pay_config.provider_url, "https://", 8) != 0) {
        sb_buf_addf(err, "PROVIDER_URL must be an http:// or https:// URL");
        return SB_INVALID_ARGUMENT;
    }
    if (!*pay_config.webhook_secret) {
        sb_buf_addf(err, "PROVIDER_WEBHOOK_SECRET must not be empty");
        return SB_INVALID_ARGUMENT;
    }
    /* The reconciler must not ask about a charge whose request may still be
     * on its way: "none" would decline a payment the provider then makes. */
    if (pay_config.pending_grace_ms <= pay_config.provider_timeout_ms) {
        sb_buf_addf(err, "PAYMENT_PENDING_GRACE_MS (%d) must exceed PROVIDER_TIMEOUT_MS (%d)",
                    pay_config.pending_grace_ms, pay_config.provider_timeout_ms);
        return SB_INVALID_ARGUMENT;
    }
    return SB_OK;
}

static const sb_pg_stmt_t stmt_get = {"pay_get",
                                      "SELECT " PAY_COLS " FROM payments WHERE payment_id = $1::uuid"};
static const sb_pg_stmt_t stmt_lock = {
    "pay_lock", "SELECT " PAY_COLS " FROM payments WHERE payment_id = $1::uuid FOR UPDATE"};
/* The payment of a reservation a reader means: the live one (in flight,
 * approved, disputed), else the latest. */
static const sb_pg_stmt_t stmt_by_reservation = {
    "pay_by_reservation", "SELECT " PAY_COLS " FROM payments WHERE reservation_id = $1::uuid"
                          " ORDER BY status IN ('PENDING', 'APPROVED', 'DISPUTED') DESC,"
                          " created_at DESC, payment_id DESC LIMIT 1"};

/* $1 id, $2 to, $3 provider_ref, $4 reason, $5 refunded_amount (NULL: keep),
 * $6 the states it may leave (text[]), $7 actor, $8 why. */
static const sb_pg_stmt_t stmt_transition = {
    "pay_transition",
    "WITH o AS (SELECT payment_id, status AS old FROM payments WHERE payment_id = $1::uuid FOR UPDATE),"
    " t AS (UPDATE payments p SET status = $2::text, provider_ref = COALESCE($3::text, p.provider_ref),"
    "   reason = COALESCE($4::text, p.reason),"
    "   refunded_amount = COALESCE($5::bigint, p.refunded_amount), updated_at = now()"
    "   FROM o WHERE p.payment_id = o.payment_id AND o.old = ANY($6::text[]) RETURNING p.*, o.old),"
    " l AS (INSERT INTO payment_log (payment_id, from_status, to_status, actor, reason)"
    "   SELECT payment_id, old, status, $7::text, $8::text FROM t)"
    " SELECT " PAY_COLS " FROM t"};

static const sb_pg_stmt_t stmt_log = {
    "pay_log", "INSERT INTO payment_log (payment_id, from_status, to_status, actor, reason)"
               " VALUES ($1::uuid, $2::text, $3::text, $4::text, $5::text)"};

/* An admin's fix of the charge id alone, logged (no event). */
static const sb_pg_stmt_t stmt_set_ref = {
    "pay_set_ref", "WITH t AS (UPDATE payments SET provider_ref = $2::text, updated_at = now()"
                   "   WHERE payment_id = $1::uuid RETURNING *),"
                   " l AS (INSERT INTO payment_log (payment_id, from_status, to_status, actor, reason)"
                   "   SELECT payment_id, status, status, $3::text, $4::text FROM t)"
                   " SELECT " PAY_COLS " FROM t"};

static const sb_pg_stmt_t stmt_list = {
    "pay_list", "SELECT " PAY_COLS " FROM payments WHERE ($1::uuid IS NULL OR user_id = $1::uuid)"
                " AND ($2::bigint IS NULL OR (created_at, payment_id) <"
                "      (timestamptz 'epoch' + $2::bigint * interval '1 microsecond', $3::uuid))"
                " ORDER BY created_at DESC, payment_id DESC LIMIT $4::int"};

/* ------------------------------------------------------------------- rows */

const char *pay_status_name(Sb__Common__PaymentStatus st)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&sb__common__payment_status__descriptor, (int)st);
    return v ? v->name : "PAYMENT_STATUS_UNSPECIFIED";
}

void pay_from_row(sb_arena_t *a, const PGresult *r, int row, pay_t *out)
{
    out->msg = (Sb__Common__Payment *)sb_pb_new(a, &sb__common__payment__descriptor);
    sb_db_row_to_pb(r, row, &out->msg->base);
    out->provider_key = sb_db_get(r, row, PQfnumber(r, "provider_key"));
    out->refund_reason = sb_db_get(r, row, PQfnumber(r, "refund_reason"));
    const char *refunded = sb_db_get(r, row, PQfnumber(r, "refunded_amount"));
    out->refunded_amount = refunded ? strtoll(refunded, NULL, 10) : 0;
}

sb_status_t pay_load(sb_db_t *db, sb_arena_t *a, const char *id, bool lock, pay_t *out, bool *found)
{
    PGresult *r;
    sb_status_t st = sb_db_exec(db, lock ? &stmt_lock : &stmt_get, &r, id);
    *found = st == SB_OK && PQntuples(r) == 1;
    if (*found)
        pay_from_row(a, r, 0, out);
    return st;
}

const char *pay_actor(const sb_rpc_ctx_t *ctx)
{
    if (ctx->user_id && *ctx->user_id)
        return ctx->user_id;
    return ctx->caller_service && *ctx->caller_service ? ctx->caller_service : "system";
}

sb_status_t pay_log(sb_db_t *db, const char *id, const char *from, const char *to, const char *actor,
                    const char *why)
{
    return sb_db_exec(db, &stmt_log, NULL, id, from, to, actor, why);
}

/* The event of a payment that reached state `to`, on db's transaction. */
static sb_status_t emit(sb_db_t *db, sb_arena_t *a, const pay_t *p, const char *to)
{
    static const struct {
        const char *status, *type;
    } events[] = {
        {"APPROVED", "payment.approved"},
        {"DECLINED", "payment.declined"},
        {"REFUNDED", "payment.refunded"},
        {"DISPUTED", "payment.disputed"},
    };
    const char *type = NULL;
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        if (!strcmp(events[i].status, to))
            type = events[i].type;
    if (!type)
        return SB_OK; /* PENDING, CANCELLED: nobody waits for them */
    ProtobufCMessage *ev = sb_pb_new(a, sb_event_payload_of(type));
    sb_pb_copy_fields(a, ev, &p->msg->base);
    sb_status_t st;
    sb_pg_conn_t *c = sb_db_conn(db, &st);
    if (!c)
        return st;
    return sb_outbox_add(c, type, p->msg->reservation_id, ev, NULL, db->detail);
}

sb_status_t pay_transition(sb_db_t *db, sb_arena_t *a, const char *id, const pay_change_t *c, pay_t *out,
                           bool *changed)
{
    pay_t tmp;
    if (!out)
        out = &tmp;
    *changed = false;
    char refunded[24];
    if (c->refunded >= 0)
        snprintf(refunded, sizeof refunded, "%lld", (long long)c->refunded);
    PGresult *r;
    sb_status_t st = sb_db_exec(db, &stmt_transition, &r, id, c->to, c->provider_ref, c->reason,
                                c->refunded >= 0 ? refunded : NULL, c->from, c->actor, c->why);
    if (st != SB_OK)
        return st;
    if (PQntuples(r) == 0) { /* not in a state it may leave: as it is */
        bool found;
        if ((st = pay_load(db, a, id, false, out, &found)) == SB_OK && !found) {
            sb_buf_addf(db->detail, "payment %s vanished", id);
            return SB_INTERNAL;
        }
        return st;
    }
    pay_from_row(a, r, 0, out);
    *changed = true;
    sb_info("payment %s -> %s by %s: %s", id, c->to, c->actor, c->why ? c->why : "");
    return emit(db, a, out, c->to);
}

/* -------------------------------------------------------------- GetPayment */

static const sb_pg_stmt_t stmt_log_of = {
    "pay_log_of", "SELECT from_status, to_status, actor, reason, " SB_DB_TS(
                      "at") " AS at"
                            " FROM payment_log WHERE payment_id = $1::uuid ORDER BY id"};

/* Whether the caller may see p: its owner, an admin, or the reservation
 * service calling on nobody's behalf (the policy admitted it). */
static bool may_see(const sb_rpc_ctx_t *ctx, const pay_t *p)
{
    if (sb_rpc_is_admin(ctx) || sb_rpc_is_self(ctx, p->msg->user_id))
        return true;
    return !(ctx->user_id && *ctx->user_id) && sb_rpc_is_service(ctx, "reservation");
}

sb_status_t pay_get(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Payment__GetPaymentRequest *req = in;
    Sb__Common__Payment *resp = out;
    bool by_id = req->payment_id && *req->payment_id;
    bool by_resv = req->reservation_id && *req->reservation_id;
    if (by_id == by_resv)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "give either paymentId or reservationId");
    char *id = sb_uuid_norm(ctx->arena, by_id ? req->payment_id : req->reservation_id);
    if (!id)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "%s must be a UUID",
                           by_id ? "paymentId" : "reservationId");
    PGresult *r;
    sb_status_t st = sb_db_exec(ctx->db, by_id ? &stmt_get : &stmt_by_reservation, &r, id);
    if (st != SB_OK)
        return st;
    pay_t p;
    if (PQntuples(r) == 1)
        pay_from_row(ctx->arena, r, 0, &p);
    if (PQntuples(r) == 0 || !may_see(ctx, &p))
        return sb_rpc_fail(ctx, SB_NOT_FOUND,
                           by_id ? "payment not found" : "no payment for this reservation");
    *resp = *p.msg;
    if (by_id) { /* GET /payments/{id}: with its log (who, when, from, to, why) */
        PGresult *log;
        if ((st = sb_db_exec(ctx->db, &stmt_log_of, &log, p.msg->payment_id)) != SB_OK)
            return st;
        resp->n_log = (size_t)PQntuples(log);
        resp->log = sb_db_rows_to_pb(ctx->arena, log, 0, PQntuples(log),
                                     &sb__common__payment_log_entry__descriptor);
    }
    return SB_OK;
}

/* ------------------------------------------------------------ ListPayments */

sb_status_t pay_list(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Payment__ListPaymentsRequest *req = in;
    Sb__Payment__ListPaymentsResponse *resp = out;
    const char *user = NULL;
    if (req->user_id && *req->user_id && !(user = sb_uuid_norm(ctx->arena, req->user_id)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "userId must be a UUID");
    if (!sb_rpc_is_admin(ctx)) {
        if (user && !sb_rpc_is_self(ctx, user))
            return sb_rpc_fail(ctx, SB_PERMISSION_DENIED,
                               "only an admin may list another member's payments");
        user = ctx->user_id;
    }
    sb_page_t pg;
    sb_status_t st = sb_rpc_page(ctx, req->page_size, req->page_token, PAGE_DEFAULT, PAGE_MAX, &pg);
    if (st != SB_OK)
        return st;
    int size = pg.size;
    PGresult *r;
    st = sb_db_exec(ctx->db, &stmt_list, &r, user, pg.after_us, pg.after_id, pg.limit);
    if (st != SB_OK)
        return st;
    int rows = PQntuples(r);
    bool more = rows > size;
    if (more)
        rows = size;
    resp->payments = SB_ARENA_NEW(ctx->arena, Sb__Common__Payment *, (size_t)rows + 1);
    for (int i = 0; i < rows; i++) {
        pay_t p;
        pay_from_row(ctx->arena, r, i, &p);
        resp->payments[resp->n_payments++] = p.msg;
    }
    if (more)
        resp->next_page_token =
            sb_arena_printf(ctx->arena, "%s.%s", PQgetvalue(r, rows - 1, PQfnumber(r, "cursor_us")),
                            resp->payments[rows - 1]->payment_id);
    return SB_OK;
}

/* ----------------------------------------------------------- UpdatePayment */

static bool is_text(const char *s, size_t max)
{
    return s && *s && strlen(s) <= max && sb_valid_utf8_text(s, false, NULL);
}

sb_status_t pay_update(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Payment__UpdatePaymentRequest *req = in;
    Sb__Common__Payment *resp = out;
    char *id = sb_uuid_norm(ctx->arena, req->payment_id);
    if (!id)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "paymentId must be a UUID");
    sb_status_t st = sb_audit_need_reason(ctx, req->reason); /* admins only (policy) */
    if (st != SB_OK)
        return st;
    if (!is_text(req->reason, REASON_MAX_BYTES))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "reason: a correction needs a reason (text of at most %d bytes)",
                           REASON_MAX_BYTES);
    const char *ref = req->provider_ref && *req->provider_ref ? req->provider_ref : NULL;
    if (ref && !is_text(ref, PROVIDER_REF_MAX_BYTES))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "providerRef: text of at most %d bytes",
                           PROVIDER_REF_MAX_BYTES);
    if (!req->status && !ref)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "nothing to change: give status or providerRef");
    pay_t p;
    bool found;
    if ((st = pay_load(ctx->db, ctx->arena, id, true, &p, &found)) != SB_OK)
        return st;
    if (!found)
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "payment not found");
    const char *before = pay_status_name(p.msg->status);
    const char *to = req->status ? pay_status_name(req->status) : pay_status_name(p.msg->status);
    const char *from = sb_arena_printf(ctx->arena, "{%s}", pay_status_name(p.msg->status));
    bool changed;
    bool status_changed = strcmp(to, pay_status_name(p.msg->status)) != 0;
    pay_change_t c = {.to = to,
                      .from = from,
                      .provider_ref = ref,
                      .reason = status_changed ? req->reason : NULL,
                      .refunded = !strcmp(to, "REFUNDED") && status_changed ? p.msg->amount : -1,
                      .actor = pay_actor(ctx),
                      .why = sb_arena_printf(ctx->arena, "admin correction: %s", req->reason)};
    /* the event only when the status changed (a reference fix is no news) */
    if (!status_changed) {
        PGresult *r;
        if ((st = sb_db_exec(ctx->db, &stmt_set_ref, &r, id, ref, c.actor, c.why)) != SB_OK)
            return st;
        pay_from_row(ctx->arena, r, 0, &p);
    } else if ((st = pay_transition(ctx->db, ctx->arena, id, &c, &p, &changed)) != SB_OK) {
        if (st == SB_ALREADY_EXISTS)
            return sb_rpc_fail(ctx, SB_ALREADY_EXISTS,
                               "the reservation already has a payment in progress or approved");
        return st;
    }
    if ((st = sb_audit_record(ctx, &(sb_audit_t){.target_type = "payment",
                                                 .target_id = id,
                                                 .reason = req->reason,
                                                 .before = before,
                                                 .after = to})) != SB_OK)
        return st;
    *resp = *p.msg;
    return SB_OK;
}

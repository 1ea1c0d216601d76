/* Reservations after the hold (holds.c makes them): view, change, cancel,
 * the lists, the log and the events.
 *
 *   GetReservation          owner or admin (anyone else: 404, as for an id
 *                           that does not exist); with its log. The payment
 *                           service calls it on the member's behalf (their
 *                           token: the same check) or, without a member,
 *                           for its own work (admitted by its certificate)
 *   UpdateReservation       owner or admin: other seats (PENDING_PAYMENT:
 *                           the new seats are taken before the old ones are
 *                           freed, one transaction, a conflict changes
 *                           nothing; the hold keeps its deadline) and/or the
 *                           attendee (PENDING_PAYMENT or CONFIRMED)
 *   CancelReservation       owner or admin: PENDING_PAYMENT -> CANCELLED,
 *                           seats free at once; CANCELLED or EXPIRED answer
 *                           the reservation as it is (a second DELETE is
 *                           the same answer); CONFIRMED: the payment is
 *                           refunded (payment service) first, then
 *                           CANCELLED, seats free (cancel_paid)
 *   ListReservations        admin: every reservation, filters
 *   ListMemberReservations  the member (or an admin)
 *
 * Every change locks the reservation row (FOR UPDATE), writes a row of
 * reservation_log and a reservation.* event to the outbox in the same
 * transaction, and bumps the reservation's version (the events' snapshot
 * version). A PENDING_PAYMENT reservation past its deadline reads EXPIRED
 * everywhere at once (resv_status); a change that meets one ends it as the
 * expiry job would. Lists are newest first, keyset-paged over
 * (created_at, reservation_id); the page token is "<created_at in us>.<id>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reservation.h"
#include "sb/audit.h"
#include "sb/log.h"
#include "sb/pb.h"
#include "sb/service.h"
#include "sb/util.h"

#define PAGE_DEFAULT 20
#define PAGE_MAX 100
#define REASON_MAX_BYTES 500
#define ATTENDEE_NAME_MAX_BYTES 100
#define ATTENDEE_PHONE_MAX_BYTES 30

static const sb_pg_stmt_t stmt_get = {"resv_get", "SELECT " RESV_COLS
                                                  " FROM reservations WHERE reservation_id = $1::uuid"};
static const sb_pg_stmt_t stmt_lock = {
    "resv_lock", "SELECT " RESV_COLS " FROM reservations WHERE reservation_id = $1::uuid FOR UPDATE"};
static const sb_pg_stmt_t stmt_log = {
    "resv_log", "SELECT from_status, to_status, actor, reason, " SB_DB_TS(
                    "at") " AS at"
                          " FROM reservation_log WHERE reservation_id = $1::uuid ORDER BY id"};

/* Ends reservation $1 if it is in state $5 (PENDING_PAYMENT, CONFIRMED) in
 * state $2 (CANCELLED, EXPIRED): its seats (held or sold) free, a log row by
 * $3 for $4. */
static const sb_pg_stmt_t stmt_end = {
    "resv_end",
    "WITH t AS (UPDATE reservations SET status = $2::text, version = version + 1, updated_at = now()"
    "   WHERE reservation_id = $1::uuid AND status = $5::text RETURNING *),"
    " s AS (UPDATE seats SET status = 'AVAILABLE', reservation_id = NULL, held_until = NULL,"
    "   updated_at = now() FROM t WHERE seats.schedule_id = t.schedule_id"
    "   AND seats.reservation_id = t.reservation_id AND seats.status IN ('HELD', 'SOLD')),"
    " l AS (INSERT INTO reservation_log (reservation_id, from_status, to_status, actor, reason)"
    "   SELECT reservation_id, $5::text, $2::text, $3::text, $4::text FROM t)"
    " SELECT " RESV_COLS " FROM t"};

/* A reservation's held seats not in $3 freed (after the new ones were taken). */
static const sb_pg_stmt_t stmt_release_others = {
    "resv_release_others",
    "UPDATE seats SET status = 'AVAILABLE', reservation_id = NULL, held_until = NULL,"
    " updated_at = now() WHERE schedule_id = $1::uuid AND reservation_id = $2::uuid"
    " AND status = 'HELD' AND seat_id <> ALL($3::text[])"};

/* The reservation brought in line with its seats; attendee $3/$4 when not
 * NULL; a log row by $5 for $6. */
static const sb_pg_stmt_t stmt_update = {
    "resv_update",
    "WITH s AS (SELECT array_agg(seat_id ORDER BY grade COLLATE \"C\", seat_index) AS ids,"
    "   sum(price) AS amount FROM seats WHERE schedule_id = $2::uuid AND reservation_id = $1::uuid),"
    " t AS (UPDATE reservations r SET seat_ids = COALESCE(s.ids, r.seat_ids),"
    "   amount = COALESCE(s.amount, r.amount), attendee_name = COALESCE($3::text, r.attendee_name),"
    "   attendee_phone = COALESCE($4::text, r.attendee_phone), version = r.version + 1,"
    "   updated_at = now() FROM s WHERE r.reservation_id = $1::uuid RETURNING r.*),"
    " l AS (INSERT INTO reservation_log (reservation_id, from_status, to_status, actor, reason)"
    "   SELECT reservation_id, status, status, $5::text, $6::text FROM t)"
    " SELECT " RESV_COLS " FROM t"};

static const sb_pg_stmt_t stmt_list = {
    "resv_list", "SELECT " RESV_COLS " FROM reservations"
                 " WHERE ($1::uuid IS NULL OR user_id = $1::uuid)"
                 " AND ($2::uuid IS NULL OR performance_id = $2::uuid)"
                 " AND ($3::uuid IS NULL OR schedule_id = $3::uuid)"
                 " AND ($4::text IS NULL OR resv_status(status, expires_at) = $4::text)"
                 " AND ($5::timestamptz IS NULL OR created_at >= $5::timestamptz)"
                 " AND ($6::timestamptz IS NULL OR created_at < $6::timestamptz)"
                 " AND ($7::bigint IS NULL OR (created_at, reservation_id) <"
                 "      (timestamptz 'epoch' + $7::bigint * interval '1 microsecond', $8::uuid))"
                 " ORDER BY created_at DESC, reservation_id DESC LIMIT $9::int"};

/* ------------------------------------------------------------ rows, events */

const char *resv_status_name(int status)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&sb__reservation__reservation_status__descriptor, status);
    return v ? v->name : "RESERVATION_STATUS_UNSPECIFIED";
}

Sb__Reservation__Reservation *resv_from_row(sb_arena_t *a, const PGresult *r, int row)
{
    Sb__Reservation__Reservation *res =
        (Sb__Reservation__Reservation *)sb_pb_new(a, &sb__reservation__reservation__descriptor);
    sb_db_row_to_pb(r, row, &res->base);
    const char *list = sb_db_get(r, row, PQfnumber(r, "seat_list"));
    if (!list || !*list)
        return res;
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == '\x1f';
    res->seat_ids = SB_ARENA_NEW(a, char *, n);
    for (const char *p = list;; p++) {
        const char *e = strchr(p, '\x1f');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        res->seat_ids[res->n_seat_ids++] = sb_arena_strndup(a, p, len);
        if (!e)
            break;
        p = e;
    }
    return res;
}

/* The string field `name` of m set to s when m has one. */
static void set_text(ProtobufCMessage *m, const char *name, const char *s)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    if (f && s)
        sb_pb_set_text(m, f, s);
}

sb_status_t resv_emit(sb_db_t *db, sb_arena_t *a, const char *type,
                      const Sb__Reservation__Reservation *res, const char *reason, const char *actor)
{
    const ProtobufCMessageDescriptor *d = sb_event_payload_of(type);
    if (!d) {
        sb_buf_addf(db->detail, "no payload for event type %s", type);
        return SB_INTERNAL;
    }
    ProtobufCMessage *ev = sb_pb_new(a, d);
    sb_pb_copy_fields(a, ev, &res->base);
    Sb__Events__ReservationSnapshot *snap =
        (Sb__Events__ReservationSnapshot *)sb_pb_new(a, &sb__events__reservation_snapshot__descriptor);
    sb_pb_copy_fields(a, &snap->base, &res->base);
    snap->status = (char *)resv_status_name(res->status);
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(d, "reservation");
    if (f)
        *(Sb__Events__ReservationSnapshot **)((char *)ev + f->offset) = snap;
    set_text(ev, "reason", reason);
    set_text(ev, "cancelled_by", actor);
    /* payment_id is set only by a confirmation: a cancelled reservation that
     * has one was paid, and the payment service refunds it */
    if (res->status == SB__RESERVATION__RESERVATION_STATUS__CANCELLED && res->payment_id &&
        *res->payment_id)
        set_text(ev, "was_paid", "true");
    sb_status_t st;
    sb_pg_conn_t *c = sb_db_conn(db, &st);
    if (!c)
        return st;
    return sb_outbox_add(c, type, res->reservation_id, ev, NULL, db->detail);
}

/* ------------------------------------------------------------------ access */

/* The reservation `id` (locked FOR UPDATE when `lock`) if the caller may see
 * it: the owner or an admin, or (a read) the payment service calling without
 * a member. Anyone else gets the same NOT_FOUND as for an id that does not
 * exist. */
static sb_status_t load(sb_rpc_ctx_t *ctx, const char *id_in, bool lock,
                        Sb__Reservation__Reservation **res, PGresult **row)
{
    char *id = sb_uuid_norm(ctx->arena, id_in);
    if (!id)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "reservationId must be a UUID");
    sb_status_t st = sb_db_exec(ctx->db, lock ? &stmt_lock : &stmt_get, row, id);
    if (st != SB_OK)
        return st;
    if (PQntuples(*row) == 0)
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "reservation not found");
    *res = resv_from_row(ctx->arena, *row, 0);
    bool payment_itself =
        !lock && (!ctx->user_id || !*ctx->user_id) && sb_rpc_is_service(ctx, "payment");
    if (!sb_rpc_is_admin(ctx) && !sb_rpc_is_self(ctx, (*res)->user_id) && !payment_itself)
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "reservation not found");
    return SB_OK;
}

sb_status_t resv_load_visible(sb_rpc_ctx_t *ctx, const char *id, Sb__Reservation__Reservation **res)
{
    PGresult *row;
    return load(ctx, id, false, res, &row);
}

/* Who made a change, for the log: the caller's user id. */
static const char *actor(const sb_rpc_ctx_t *ctx)
{
    return ctx->user_id && *ctx->user_id ? ctx->user_id : "system";
}

sb_status_t resv_end(sb_db_t *db, sb_arena_t *a, const char *id, const char *from, const char *to,
                     const char *who, const char *why, Sb__Reservation__Reservation **res)
{
    PGresult *r;
    *res = NULL;
    sb_status_t st = sb_db_exec(db, &stmt_end, &r, id, to, who, why, from);
    if (st != SB_OK || PQntuples(r) == 0)
        return st;
    *res = resv_from_row(a, r, 0);
    return resv_emit(db, a, strcmp(to, "EXPIRED") ? "reservation.cancelled" : "reservation.expired",
                     *res, why, who);
}

/* A PENDING_PAYMENT reservation past its deadline met by a change: ended as
 * the expiry job would end it; *res becomes the result. */
static sb_status_t expire_now(sb_rpc_ctx_t *ctx, Sb__Reservation__Reservation **res)
{
    Sb__Reservation__Reservation *ended;
    sb_status_t st = resv_end(ctx->db, ctx->arena, (*res)->reservation_id, "PENDING_PAYMENT", "EXPIRED",
                              "system", "hold expired", &ended);
    if (st == SB_OK && ended)
        *res = ended;
    return st;
}

static bool expired_unmarked(const PGresult *row)
{
    return !strcmp(PQgetvalue(row, 0, PQfnumber(row, "stored_status")), "PENDING_PAYMENT") &&
           strcmp(PQgetvalue(row, 0, PQfnumber(row, "status")), "PENDING_PAYMENT") != 0;
}

/* ---------------------------------------------------------- GetReservation */

sb_status_t resv_get(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Reservation__GetReservationRequest *req = in;
    Sb__Reservation__Reservation *resp = out, *res;
    PGresult *row, *log;
    sb_status_t st = load(ctx, req->reservation_id, false, &res, &row);
    if (st != SB_OK || (st = sb_db_exec(ctx->db, &stmt_log, &log, res->reservation_id)) != SB_OK)
        return st;
    *resp = *res;
    resp->n_log = (size_t)PQntuples(log);
    resp->log = sb_db_rows_to_pb(ctx->arena, log, 0, PQntuples(log),
                                 &sb__reservation__reservation_log_entry__descriptor);
    return SB_OK;
}

/* ------------------------------------------------------- CancelReservation */

/* Ends the reservation `id` the caller may cancel, locked and found in state
 * `from`: CANCELLED, seats free, the log row and reservation.cancelled. */
static sb_status_t cancel_locked(sb_rpc_ctx_t *ctx, const char *id, const char *from, const char *reason,
                                 Sb__Reservation__Reservation *resp)
{
    Sb__Reservation__Reservation *res;
    sb_status_t st = resv_end(ctx->db, ctx->arena, id, from, "CANCELLED", actor(ctx), reason, &res);
    if (st != SB_OK)
        return st;
    if (!res)
        return sb_rpc_error(ctx, SB_INTERNAL, "reservation %s locked %s but not ended", id, from);
    /* an admin's cancel: its audit record in this (the final) transaction */
    if (sb_audit_as_admin(ctx, res->user_id) &&
        (st = sb_audit_record(ctx, &(sb_audit_t){.target_type = "reservation",
                                                 .target_id = id,
                                                 .reason = reason,
                                                 .before = from,
                                                 .after = "CANCELLED"})) != SB_OK)
        return st;
    *resp = *res;
    return SB_OK;
}

/* A CONFIRMED reservation: its payment is refunded first (the payment
 * service, outside any transaction: the row lock is let go across the call),
 * then a new transaction re-reads the row and cancels it if it is still
 * CONFIRMED with the same payment. A refusal or failure of the refund
 * changes nothing. If this process dies between the two, the
 * payment.refunded event finishes the cancel (saga.c); if that event won
 * the race, the reservation is CANCELLED already and answered as it is. */
static sb_status_t cancel_paid(sb_rpc_ctx_t *ctx, const Sb__Reservation__Reservation *res,
                               const char *reason, Sb__Reservation__Reservation *resp)
{
    const char *id = sb_arena_strdup(ctx->arena, res->reservation_id);
    const char *payment = sb_arena_strdup(ctx->arena, res->payment_id);
    sb_db_rollback(ctx->db); /* no row lock across the call */
    sb_status_t st = resv_payment_refund(ctx, id, payment, reason);
    if (st != SB_OK)
        return st;
    Sb__Reservation__Reservation *now;
    PGresult *row;
    if ((st = load(ctx, id, true, &now, &row)) != SB_OK)
        return st;
    if (now->status == SB__RESERVATION__RESERVATION_STATUS__CANCELLED) {
        *resp = *now; /* payment.refunded arrived first and cancelled it */
        return SB_OK;
    }
    if (now->status != SB__RESERVATION__RESERVATION_STATUS__CONFIRMED ||
        strcmp(now->payment_id, payment))
        return sb_rpc_error(ctx, SB_INTERNAL,
                            "reservation %s: payment %s refunded, but the reservation is now %s with"
                            " payment '%s'",
                            id, payment, resv_status_name(now->status), now->payment_id);
    return cancel_locked(ctx, id, "CONFIRMED", reason, resp);
}

sb_status_t resv_cancel(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Reservation__CancelReservationRequest *req = in;
    Sb__Reservation__Reservation *resp = out, *res;
    const char *reason = req->reason && *req->reason ? req->reason : NULL;
    if (reason && !resv_is_text(reason, REASON_MAX_BYTES))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "reason: text of at most %d bytes",
                           REASON_MAX_BYTES);
    PGresult *row;
    sb_status_t st = load(ctx, req->reservation_id, true, &res, &row);
    if (st != SB_OK)
        return st;
    if (sb_audit_as_admin(ctx, res->user_id) && (st = sb_audit_need_reason(ctx, reason)) != SB_OK)
        return st;
    if (expired_unmarked(row)) {
        if ((st = expire_now(ctx, &res)) == SB_OK)
            *resp = *res;
        return st;
    }
    if (!reason)
        reason = sb_rpc_is_self(ctx, res->user_id) ? "cancelled by the member" : "cancelled by an admin";
    switch (res->status) {
    case SB__RESERVATION__RESERVATION_STATUS__CANCELLED:
    case SB__RESERVATION__RESERVATION_STATUS__EXPIRED:
        *resp = *res; /* already over: the same answer again */
        return SB_OK;
    case SB__RESERVATION__RESERVATION_STATUS__CONFIRMED: return cancel_paid(ctx, res, reason, resp);
    default: return cancel_locked(ctx, res->reservation_id, "PENDING_PAYMENT", reason, resp);
    }
}

/* ------------------------------------------------------- UpdateReservation */

static bool has(char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i], s))
            return true;
    return false;
}

/* The seats of req not yet the reservation's taken (held until its
 * deadline), then its seats not in req freed. */
static sb_status_t change_seats(sb_rpc_ctx_t *ctx, const Sb__Reservation__UpdateReservationRequest *req,
                                const Sb__Reservation__Reservation *res, const PGresult *row)
{
    sb_status_t st = resv_check_seat_ids(ctx, req->seat_ids, req->n_seat_ids);
    if (st != SB_OK ||
        (st = resv_check_user_limits(ctx, res->user_id, res->schedule_id, res->reservation_id,
                                     req->n_seat_ids, false)) != SB_OK)
        return st;
    const char **add = SB_ARENA_NEW(ctx->arena, const char *, req->n_seat_ids);
    size_t n_add = 0;
    for (size_t i = 0; i < req->n_seat_ids; i++)
        if (!has(res->seat_ids, res->n_seat_ids, req->seat_ids[i]))
            add[n_add++] = req->seat_ids[i];
    sb_buf_t lit = SB_BUF_INIT;
    if (n_add) {
        resv_pg_array(&lit, add, n_add);
        st = resv_take_seats(ctx, res->schedule_id, res->reservation_id, lit.buf, add, n_add,
                             PQgetvalue(row, 0, PQfnumber(row, "hold_until")));
        sb_buf_reset(&lit);
    }
    if (st == SB_OK) {
        resv_pg_array(&lit, (const char *const *)req->seat_ids, req->n_seat_ids);
        st = sb_db_exec(ctx->db, &stmt_release_others, NULL, res->schedule_id, res->reservation_id,
                        lit.buf);
    }
    sb_buf_release(&lit);
    return st;
}

sb_status_t resv_update(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Reservation__UpdateReservationRequest *req = in;
    Sb__Reservation__Reservation *resp = out, *res;
    const char *name = *req->attendee_name ? req->attendee_name : NULL;
    const char *phone = *req->attendee_phone ? req->attendee_phone : NULL;
    if (!req->n_seat_ids && !name && !phone)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "nothing to change: give seatIds, attendeeName or attendeePhone");
    if (name && !resv_is_text(name, ATTENDEE_NAME_MAX_BYTES))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "attendeeName: text of at most %d bytes",
                           ATTENDEE_NAME_MAX_BYTES);
    if (phone && !resv_is_text(phone, ATTENDEE_PHONE_MAX_BYTES))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "attendeePhone: text of at most %d bytes",
                           ATTENDEE_PHONE_MAX_BYTES);
    PGresult *row, *r;
    sb_status_t st = load(ctx, req->reservation_id, true, &res, &row);
    if (st != SB_OK)
        return st;
    bool as_admin = sb_audit_as_admin(ctx, res->user_id);
    if (as_admin && (st = sb_audit_need_reason(ctx, req->reason)) != SB_OK)
        return st;
    const char *before = resv_status_name(res->status);
    bool pending = res->status == SB__RESERVATION__RESERVATION_STATUS__PENDING_PAYMENT;
    bool confirmed = res->status == SB__RESERVATION__RESERVATION_STATUS__CONFIRMED;
    if (req->n_seat_ids && !pending)
        return sb_rpc_fail(ctx, SB_FAILED_PRECONDITION,
                           "only a reservation awaiting payment can change seats; this one is %s",
                           resv_status_name(res->status));
    if (!pending && !confirmed)
        return sb_rpc_fail(ctx, SB_FAILED_PRECONDITION, "reservation is %s: nothing can change",
                           resv_status_name(res->status));
    if (req->n_seat_ids && (st = change_seats(ctx, req, res, row)) != SB_OK)
        return st;
    const char *why = req->n_seat_ids && (name || phone) ? "seats and attendee changed"
                      : req->n_seat_ids                  ? "seats changed"
                                                         : "attendee changed";
    const char *what = why;
    if (as_admin)
        why = sb_arena_printf(ctx->arena, "%s by an admin: %s", what, req->reason);
    if ((st = sb_db_exec(ctx->db, &stmt_update, &r, res->reservation_id, res->schedule_id, name, phone,
                         actor(ctx), why)) != SB_OK)
        return st;
    res = resv_from_row(ctx->arena, r, 0);
    if ((st = resv_emit(ctx->db, ctx->arena, "reservation.changed", res, why, actor(ctx))) != SB_OK)
        return st;
    if (as_admin && (st = sb_audit_record(ctx, &(sb_audit_t){.target_type = "reservation",
                                                             .target_id = res->reservation_id,
                                                             .reason = req->reason,
                                                             .before = before,
                                                             .after = what})) != SB_OK)
        return st;
    *resp = *res;
    return SB_OK;
}

/* ------------------------------------------------------------------- lists */

sb_status_t resv_list_page(sb_rpc_ctx_t *ctx, const resv_filter_t *f, int page_size, const char *token,
                           Sb__Reservation__Reservation ***out, size_t *n, char **next)
{
    sb_page_t pg;
    sb_status_t st = sb_rpc_page(ctx, page_size, token, PAGE_DEFAULT, PAGE_MAX, &pg);
    if (st != SB_OK)
        return st;
    int size = pg.size;
    const char *ids[3] = {f->user, f->performance, f->schedule};
    static const char *const names[3] = {"userId", "performanceId", "scheduleId"};
    char *norm[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++)
        if (ids[i] && *ids[i] && !(norm[i] = sb_uuid_norm(ctx->arena, ids[i])))
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "%s must be a UUID", names[i]);
    const char *from = f->from && *f->from ? f->from : NULL, *to = f->to && *f->to ? f->to : NULL;
    if ((from && !sb_parse_rfc3339(from, NULL)) || (to && !sb_parse_rfc3339(to, NULL)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "from and to are RFC 3339 times");
    PGresult *r;
    st = sb_db_exec(ctx->db, &stmt_list, &r, norm[0], norm[1], norm[2], f->status, from, to, pg.after_us,
                    pg.after_id, pg.limit);
    if (st != SB_OK)
        return st;
    int rows = PQntuples(r);
    bool more = rows > size;
    if (more)
        rows = size;
    *n = (size_t)rows;
    *out = SB_ARENA_NEW(ctx->arena, Sb__Reservation__Reservation *, (size_t)rows + 1);
    for (int i = 0; i < rows; i++)
        (*out)[i] = resv_from_row(ctx->arena, r, i);
    if (more)
        *next = sb_arena_printf(ctx->arena, "%s.%s", PQgetvalue(r, rows - 1, PQfnumber(r, "cursor_us")),
                                (*out)[rows - 1]->reservation_id);
    return SB_OK;
}

static sb_status_t list(sb_rpc_ctx_t *ctx, const Sb__Reservation__ListReservationsRequest *req,
                        Sb__Reservation__ListReservationsResponse *resp)
{
    resv_filter_t f = {.user = req->user_id,
                       .performance = req->performance_id,
                       .schedule = req->schedule_id,
                       .from = req->from,
                       .to = req->to};
    if (req->status)
        f.status = resv_status_name(req->status);
    return resv_list_page(ctx, &f, req->page_size, req->page_token, &resp->reservations,
                          &resp->n_reservations, &resp->next_page_token);
}

sb_status_t resv_list(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    return list(ctx, in, out);
}

sb_status_t resv_list_member(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Reservation__ListReservationsRequest *req = in;
    /* the policy admitted the member themself or an admin */
    if (!sb_valid_uuid(req->user_id))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "userId must be a UUID");
    return list(ctx, req, out);
}

/* POST /events/cancellations: the reservation.cancelled events again (by a
 * member, an admin, a withdrawal or a cancelled performance; the ones the
 * payment service refunds on). Expiries (reservation.expired) are not
 * cancellations and stay with POST /events/reservations, which replays every
 * reservation.* event. Same filters as sb_service_replay. */
sb_status_t resv_replay_cancellations(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    return sb_service_replay(ctx, in, out, "reservation.cancelled");
}

/* The notices: inserts, texts, the inbox and the explicit notices.
 *
 * A notice stores the facts of what happened (ids, seats, amount, reason,
 * deadline, a planner's message); its title and body are made from
 * templates/<language>/<kind>.txt whenever it is shown or mailed, in the
 * recipient's language as the member service says then (GetMember, which
 * admits this service by its certificate), with the performance's title,
 * schedule and venue from the projections (events.c). Line 1 of a template
 * is the title (the mail's subject), the text after the blank line the body.
 * Times are shown in Korea Standard Time; amounts in KRW ("150,000원",
 * "KRW 150,000").
 *
 * The inbox is keyset-paged, newest first, over (created_at, notice_id):
 * the page token is "<created_at in us>.<notice id>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notification.h"
#include "sb/audit.h"
#include "sb/log.h"
#include "sb/service.h"
#include "sb/template.h"
#include "sb/util.h"
#include "sb/valid.h"

SB_SERVICE_TEMPLATES(notification);

#define PAGE_DEFAULT 20
#define PAGE_MAX 100
#define MESSAGE_MAX 2000
#define HEADLINE_MAX 200
#define MEMBER_TIMEOUT_MS 3000

/* ------------------------------------------------------------------ insert */

static const char *nz(const char *s)
{
    return s && *s ? s : NULL;
}

static const sb_pg_stmt_t stmt_add = {
    "ntf_add",
    "WITH n AS (INSERT INTO notices (event_id, user_id, kind, reservation_id, payment_id,"
    " performance_id, schedule_id, seats, amount, reason, deadline, headline, message)"
    " VALUES ($1::uuid, $2::uuid, $3, $4::uuid, $5::uuid, $6::uuid, $7::uuid, COALESCE($8, ''),"
    " $9::bigint, COALESCE($10, ''), $11::timestamptz, COALESCE($12, ''), COALESCE($13, ''))"
    " ON CONFLICT (event_id, user_id) DO NOTHING RETURNING notice_id),"
    " q AS (INSERT INTO mail_queue (notice_id) SELECT notice_id FROM n RETURNING notice_id)"
    " SELECT notice_id::text, pg_notify('" NTF_MAIL_CHANNEL "', '') FROM q"};

sb_status_t ntf_notice_add(sb_db_t *db, sb_arena_t *a, const ntf_facts_t *f, const char **id)
{
    PGresult *r;
    const char *amount = f->amount >= 0 ? sb_arena_printf(a, "%lld", (long long)f->amount) : NULL;
    sb_status_t st =
        sb_db_exec(db, &stmt_add, &r, nz(f->event_id), f->user_id, f->kind, nz(f->reservation_id),
                   nz(f->payment_id), nz(f->performance_id), nz(f->schedule_id), nz(f->seats), amount,
                   nz(f->reason), nz(f->deadline), nz(f->headline), nz(f->message));
    if (id)
        *id = st == SB_OK && PQntuples(r) > 0 ? sb_arena_strdup(a, PQgetvalue(r, 0, 0)) : NULL;
    return st;
}

/* $5: the schedules (a text[] literal) or NULL for all of the performance. */
static const sb_pg_stmt_t stmt_holders = {
    "ntf_holders",
    "WITH h AS (SELECT user_id, (array_agg(reservation_id ORDER BY reservation_id))[1] AS resv,"
    " (array_agg(schedule_id ORDER BY schedule_id))[1] AS sched,"
    " string_agg(seats, ', ' ORDER BY seats) AS seats, sum(amount) AS amount"
    " FROM holdings WHERE performance_id = $2::uuid AND status IN ('PENDING_PAYMENT', 'CONFIRMED')"
    " AND ($5::uuid[] IS NULL OR schedule_id = ANY($5::uuid[])) GROUP BY user_id),"
    " n AS (INSERT INTO notices (event_id, user_id, kind, reservation_id, performance_id, schedule_id,"
    " seats, amount, reason, headline, message)"
    " SELECT $1::uuid, user_id, $3, resv, $2::uuid, sched, seats, amount, COALESCE($4, ''),"
    " COALESCE($6, ''), COALESCE($7, '') FROM h"
    " ON CONFLICT (event_id, user_id) DO NOTHING RETURNING notice_id),"
    " q AS (INSERT INTO mail_queue (notice_id) SELECT notice_id FROM n RETURNING notice_id)"
    " SELECT notice_id::text, pg_notify('" NTF_MAIL_CHANNEL "', '') FROM q"};

sb_status_t ntf_notice_holders(sb_db_t *db, sb_arena_t *a, const ntf_facts_t *f,
                               char *const *schedule_ids, size_t n_schedules, char ***ids, size_t *n)
{
    const char *scheds = NULL;
    if (n_schedules > 0) {
        sb_buf_t b = SB_BUF_INIT;
        sb_buf_addch(&b, '{');
        for (size_t i = 0; i < n_schedules; i++) /* UUIDs, checked by the caller */
            sb_buf_addf(&b, "%s%s", i ? "," : "", schedule_ids[i]);
        sb_buf_addch(&b, '}');
        scheds = sb_arena_strdup(a, b.buf);
        sb_buf_release(&b);
    }
    PGresult *r;
    sb_status_t st = sb_db_exec(db, &stmt_holders, &r, nz(f->event_id), f->performance_id, f->kind,
                                nz(f->reason), scheds, nz(f->headline), nz(f->message));
    if (st != SB_OK)
        return st;
    int rows = PQntuples(r);
    *n = (size_t)rows;
    *ids = SB_ARENA_NEW(a, char *, (size_t)rows + 1);
    for (int i = 0; i < rows; i++)
        (*ids)[i] = sb_arena_strdup(a, PQgetvalue(r, i, 0));
    return SB_OK;
}

/* -------------------------------------------------------------------- view */

/* Everything a text is made of, by name (view_get reads the columns). */
#define NTF_VIEW                                                                                        \
    "SELECT n.notice_id::text AS notification_id, n.user_id::text AS user_id, n.kind,"                  \
    " COALESCE(n.reservation_id::text, '') AS reservation_id,"                                          \
    " COALESCE(COALESCE(n.payment_id, h.payment_id)::text, '') AS payment_id,"                          \
    " COALESCE(COALESCE(n.performance_id, h.performance_id)::text, '') AS performance_id,"              \
    " COALESCE(p.title, '') AS perf_title,"                                                             \
    " COALESCE(to_char(s.starts_at AT TIME ZONE 'Asia/Seoul', 'YYYY-MM-DD HH24:MI'), '') AS starts_at," \
    " COALESCE(s.venue, '') AS venue,"                                                                  \
    " CASE WHEN n.seats <> '' THEN n.seats ELSE COALESCE(h.seats, '') END AS seats,"                    \
    " COALESCE(n.amount, h.amount, pay.amount) AS amount, n.reason,"                                    \
    " COALESCE(to_char(n.deadline AT TIME ZONE 'Asia/Seoul', 'YYYY-MM-DD HH24:MI'), '') AS deadline,"   \
    " n.headline, n.message, " SB_DB_TS(                                                                \
        "n.created_at") " AS created_at,"                                                               \
                        " n.read_at IS NOT NULL AS read, COALESCE(" SB_DB_TS(                           \
                            "n.read_at") ", '') AS read_at,"                                            \
                                         " COALESCE(q.status, '') AS mail_status, "                     \
                                         "COALESCE(q.attempts, 0) AS mail_attempts,"                    \
                                         " COALESCE(q.last_error, '') AS mail_error,"                   \
                                         " (extract(epoch FROM n.created_at) * 1000000)::bigint AS "    \
                                         "cursor_us"                                                    \
                                         " FROM notices n LEFT JOIN payments pay ON pay.payment_id = "  \
                                         "n.payment_id"                                                 \
                                         " LEFT JOIN holdings h ON h.reservation_id = "                 \
                                         "COALESCE(n.reservation_id, pay.reservation_id)"               \
                                         " LEFT JOIN performances p ON p.performance_id = "             \
                                         "COALESCE(n.performance_id, h.performance_id)"                 \
                                         " LEFT JOIN schedules s ON s.schedule_id = "                   \
                                         "COALESCE(n.schedule_id, h.schedule_id)"                       \
                                         " LEFT JOIN mail_queue q ON q.notice_id = n.notice_id"

static const sb_pg_stmt_t stmt_view = {"ntf_view", NTF_VIEW " WHERE n.notice_id = $1::uuid"};

sb_status_t ntf_view_get(sb_db_t *db, const char *id, PGresult **out)
{
    return sb_db_exec(db, &stmt_view, out, id);
}

/* 1234567 -> "1,234,567" */
static char *grouped(sb_arena_t *a, const char *digits)
{
    size_t n = strlen(digits), lead = *digits == '-' ? 1 : 0;
    sb_buf_t b = SB_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        if (i > lead && (n - i) % 3 == 0)
            sb_buf_addch(&b, ',');
        sb_buf_addch(&b, digits[i]);
    }
    char *s = sb_arena_strdup(a, b.buf);
    sb_buf_release(&b);
    return s;
}

typedef struct view {
    sb_arena_t *a;
    const PGresult *r;
    int row;
    const ntf_recipient_t *to;
    bool en;
} view_t;

static const char *col(const view_t *v, const char *name)
{
    int c = PQfnumber(v->r, name);
    return c < 0 || PQgetisnull(v->r, v->row, c) ? "" : PQgetvalue(v->r, v->row, c);
}

static const char *lookup(void *arg, const char *name)
{
    const view_t *v = arg;
    const char *s;
    if (!strcmp(name, "name"))
        s = v->to && v->to->name ? v->to->name : "";
    else if (!strcmp(name, "title"))
        s = col(v, "perf_title");
    else if (!strcmp(name, "amount")) {
        s = col(v, "amount");
        if (*s)
            s = v->en ? sb_arena_printf(v->a, "KRW %s", grouped(v->a, s))
                      : sb_arena_printf(v->a, "%s원", grouped(v->a, s));
    } else if (!strcmp(name, "starts_at") || !strcmp(name, "deadline")) {
        s = col(v, name);
        if (*s)
            s = sb_arena_printf(v->a, "%s KST", s);
    } else if (!strcmp(name, "reason") || !strcmp(name, "seats") || !strcmp(name, "venue") ||
               !strcmp(name, "headline") || !strcmp(name, "message") ||
               !strcmp(name, "reservation_id") || !strcmp(name, "payment_id"))
        s = col(v, name);
    else
        return NULL;
    return *s ? s : "-";
}

Sb__Notification__Notification *ntf_render(sb_arena_t *a, const PGresult *r, int row,
                                           const ntf_recipient_t *to, bool admin)
{
    Sb__Notification__Notification *n = SB_ARENA_NEW(a, Sb__Notification__Notification, 1);
    sb__notification__notification__init(n);
    sb_db_row_to_pb(r, row, &n->base);
    const char *lang = to && to->language && !strcmp(to->language, "en") ? "en" : "ko";
    view_t v = {a, r, row, to, !strcmp(lang, "en")};
    const char *kind = col(&v, "kind");
    char *upper = sb_arena_strdup(a, kind);
    for (char *p = upper; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    const ProtobufCEnumValue *ev =
        protobuf_c_enum_descriptor_get_value_by_name(&sb__notification__notice_kind__descriptor, upper);
    n->kind = ev ? (Sb__Notification__NoticeKind)ev->value
                 : SB__NOTIFICATION__NOTICE_KIND__NOTICE_KIND_UNSPECIFIED;
    const ProtobufCEnumValue *ms = protobuf_c_enum_descriptor_get_value_by_name(
        &sb__notification__mail_status__descriptor, col(&v, "mail_status"));
    n->mail_status = ms ? (Sb__Notification__MailStatus)ms->value : 0;
    if (!admin)
        n->mail_error = "";
    n->language = (char *)lang;
    const sb_file_t *f =
        sb_file_find(&sb_notification_templates, sb_arena_printf(a, "%s/%s.txt", lang, kind));
    if (!f) {
        n->title = (char *)kind;
        n->body = "";
        return n;
    }
    char *text = sb_template_render(a, f->data, lookup, &v);
    char *nl = strchr(text, '\n');
    n->title = text;
    n->body = "";
    if (nl) {
        *nl = '\0';
        char *body = nl + 1;
        while (*body == '\n')
            body++;
        n->body = body;
    }
    return n;
}

/* --------------------------------------------------------------- recipient */

sb_status_t ntf_recipient_get(sb_arena_t *a, const char *user_id, int64_t timeout_ms,
                              ntf_recipient_t *out, sb_buf_t *err)
{
    Sb__Member__GetMemberRequest req = SB__MEMBER__GET_MEMBER_REQUEST__INIT;
    req.user_id = (char *)user_id;
    sb_call_opts_t opts = {.timeout_ms = timeout_ms};
    Sb__Member__Member *m = NULL;
    sb_status_t st =
        sb_rpc_call(sb_channel_get_service("member"), &sb__member__member_service__descriptor,
                    "GetMember", &req.base, a, (ProtobufCMessage **)&m, &opts, err);
    if (st != SB_OK)
        return st;
    out->email = m->email;
    out->name = m->name;
    out->language = !strcmp(m->language, "en") ? "en" : "ko";
    return SB_OK;
}

/* Who a list shows notices to: each user once per call (a page may hold many
 * users' notices for an admin). A member service that does not answer:
 * Korean, no name (the inbox still works). */
typedef struct recipients {
    const char *user[PAGE_MAX + 1];
    ntf_recipient_t r[PAGE_MAX + 1];
    size_t n;
} recipients_t;

static const ntf_recipient_t *recipient_of(sb_rpc_ctx_t *ctx, recipients_t *rs, const char *user)
{
    for (size_t i = 0; i < rs->n; i++)
        if (!strcmp(rs->user[i], user))
            return &rs->r[i];
    if (rs->n == PAGE_MAX + 1)
        return NULL;
    ntf_recipient_t *r = &rs->r[rs->n];
    sb_buf_t err = SB_BUF_INIT;
    if (ntf_recipient_get(ctx->arena, user, MEMBER_TIMEOUT_MS, r, &err) != SB_OK) {
        sb_warn("GetMember(%s) for the inbox: %s; showing it in Korean", user, err.buf);
        *r = (ntf_recipient_t){"", "", "ko"};
    }
    sb_buf_release(&err);
    rs->user[rs->n++] = user;
    return r;
}

/* ------------------------------------------------------------------- inbox */

static const sb_pg_stmt_t stmt_list = {
    "ntf_list",
    NTF_VIEW " WHERE ($1::uuid IS NULL OR n.user_id = $1::uuid) AND ($2::text IS NULL OR q.status = $2)"
             " AND ($3::bigint IS NULL OR (n.created_at, n.notice_id) <"
             " (to_timestamp($3::bigint / 1000000.0), $4::uuid))"
             " ORDER BY n.created_at DESC, n.notice_id DESC LIMIT $5::int"};

static const sb_pg_stmt_t stmt_unread = {
    "ntf_unread", "SELECT count(*) FROM notices WHERE user_id = $1::uuid AND read_at IS NULL"};

sb_status_t ntf_list(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Notification__ListNotificationsRequest *req = in;
    Sb__Notification__ListNotificationsResponse *resp = out;
    sb_page_t pg;
    sb_status_t st = sb_rpc_page(ctx, req->page_size, req->page_token, PAGE_DEFAULT, PAGE_MAX, &pg);
    if (st != SB_OK)
        return st;
    int size = pg.size;
    const char *status = NULL;
    if (req->mail_status != 0) {
        if (!sb_rpc_is_admin(ctx))
            return sb_rpc_fail(ctx, SB_PERMISSION_DENIED, "only admins may list by mailStatus");
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
            &sb__notification__mail_status__descriptor, req->mail_status);
        if (!v)
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "mailStatus is not a mail status");
        status = v->name;
    }
    const char *user = status ? NULL : ctx->user_id;
    PGresult *r, *u;
    st = sb_db_exec(ctx->db, &stmt_list, &r, user, status, pg.after_us, pg.after_id, pg.limit);
    if (st != SB_OK)
        return st;
    if ((st = sb_db_exec(ctx->db, &stmt_unread, &u, ctx->user_id)) != SB_OK)
        return st;
    resp->unread_count = atoi(PQgetvalue(u, 0, 0));
    int rows = PQntuples(r);
    bool more = rows > size;
    if (more)
        rows = size;
    recipients_t *rs = SB_ARENA_NEW(ctx->arena, recipients_t, 1);
    resp->n_notifications = (size_t)rows;
    resp->notifications = SB_ARENA_NEW(ctx->arena, Sb__Notification__Notification *, (size_t)rows + 1);
    for (int i = 0; i < rows; i++) {
        const char *uid = PQgetvalue(r, i, PQfnumber(r, "user_id"));
        resp->notifications[i] =
            ntf_render(ctx->arena, r, i, recipient_of(ctx, rs, uid), sb_rpc_is_admin(ctx));
    }
    if (more)
        resp->next_page_token =
            sb_arena_printf(ctx->arena, "%s.%s", PQgetvalue(r, rows - 1, PQfnumber(r, "cursor_us")),
                            resp->notifications[rows - 1]->notification_id);
    return SB_OK;
}

static const sb_pg_stmt_t stmt_read = {
    "ntf_read", "UPDATE notices SET read_at = COALESCE(read_at, clock_timestamp())"
                " WHERE notice_id = $1::uuid AND user_id = $2::uuid RETURNING notice_id"};

sb_status_t ntf_mark_read(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Notification__MarkNotificationReadRequest *req = in;
    Sb__Notification__Notification *resp = out;
    char *id = sb_uuid_norm(ctx->arena, req->notification_id);
    if (!id)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "notificationId must be a UUID");
    PGresult *r;
    sb_status_t st = sb_db_exec(ctx->db, &stmt_read, &r, id, ctx->user_id);
    if (st != SB_OK)
        return st;
    if (PQntuples(r) == 0) /* someone else's is not found either */
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "notification %s not found", id);
    if ((st = ntf_view_get(ctx->db, id, &r)) != SB_OK)
        return st;
    recipients_t *rs = SB_ARENA_NEW(ctx->arena, recipients_t, 1);
    *resp = *ntf_render(ctx->arena, r, 0, recipient_of(ctx, rs, ctx->user_id), sb_rpc_is_admin(ctx));
    return SB_OK;
}

/* -------------------------------------------------------- explicit notices */

static sb_status_t check_text(sb_rpc_ctx_t *ctx, const Sb__Notification__SendNoticeRequest *req)
{
    size_t chars;
    if (!req->message || !*req->message)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "message is required");
    if (!sb_valid_utf8_text(req->message, true, &chars) || chars > MESSAGE_MAX)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "message must be UTF-8 text of at most %d characters", MESSAGE_MAX);
    if (req->title && *req->title &&
        (!sb_valid_utf8_text(req->title, false, &chars) || chars > HEADLINE_MAX))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "title must be one line of UTF-8 text of at most %d characters",
                           HEADLINE_MAX);
    return SB_OK;
}

static void answer(sb_rpc_ctx_t *ctx, Sb__Notification__SendNoticeResponse *resp, char **ids, size_t n)
{
    resp->sent = (int32_t)n;
    resp->notification_ids = ids;
    resp->n_notification_ids = n;
    sb_info("%s: %zu notified", ctx->method, n);
}

/* An admin's notice (not a service's, not the owning planner's) says why,
 * after the checks that find the target and before anything is written. */
static sb_status_t need_reason(sb_rpc_ctx_t *ctx, const char *owner, const char *reason)
{
    return sb_audit_as_admin(ctx, owner) ? sb_audit_need_reason(ctx, reason) : SB_OK;
}

/* The audit record of an admin's notice, in the notice's transaction. */
static sb_status_t audited(sb_rpc_ctx_t *ctx, const char *owner, const char *what, const char *id,
                           const char *reason, size_t sent)
{
    if (!sb_audit_as_admin(ctx, owner))
        return SB_OK;
    return sb_audit_record(ctx,
                           &(sb_audit_t){.target_type = what,
                                         .target_id = id,
                                         .reason = reason,
                                         .after = sb_arena_printf(ctx->arena, "%zu notified", sent)});
}

/* One notice to the holder found by stmt (user_id, reservation_id,
 * performance_id, schedule_id, seats, amount of the one `id`). */
static sb_status_t send_one(sb_rpc_ctx_t *ctx, const Sb__Notification__SendNoticeRequest *req,
                            const sb_pg_stmt_t *stmt, const char *id, const char *what, const char *kind,
                            Sb__Notification__SendNoticeResponse *resp)
{
    sb_status_t st = check_text(ctx, req);
    if (st != SB_OK)
        return st;
    char *uid = NULL;
    if (req->user_id && *req->user_id && !(uid = sb_uuid_norm(ctx->arena, req->user_id)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "userId must be a UUID");
    PGresult *r;
    if ((st = sb_db_exec(ctx->db, stmt, &r, id)) != SB_OK)
        return st;
    if (PQntuples(r) == 0)
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "%s %s not found", what, id);
    const char *holder = PQgetvalue(r, 0, 0);
    if (uid && strcmp(uid, holder) != 0)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "userId is not the holder of %s %s", what, id);
    if ((st = need_reason(ctx, holder, req->reason)) != SB_OK)
        return st;
    ntf_facts_t f = {.user_id = holder,
                     .kind = kind,
                     .reservation_id = sb_db_get(r, 0, 1),
                     .payment_id = sb_db_get(r, 0, 2),
                     .amount = -1,
                     .headline = req->title,
                     .message = req->message};
    const char *nid;
    if ((st = ntf_notice_add(ctx->db, ctx->arena, &f, &nid)) != SB_OK ||
        (st = audited(ctx, holder, what, id, req->reason, 1)) != SB_OK)
        return st;
    char **ids = SB_ARENA_NEW(ctx->arena, char *, 2);
    ids[0] = (char *)nid;
    answer(ctx, resp, ids, 1);
    return SB_OK;
}

static const sb_pg_stmt_t stmt_resv_holder = {
    "ntf_resv_holder",
    "SELECT user_id::text, reservation_id::text, NULL FROM holdings WHERE reservation_id = $1::uuid"};

static const sb_pg_stmt_t stmt_pay_holder = {
    "ntf_pay_holder", "SELECT user_id::text, reservation_id::text, payment_id::text FROM payments WHERE "
                      "payment_id = $1::uuid"};

sb_status_t ntf_send_reservation(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Notification__SendNoticeRequest *req = in;
    char *id = sb_uuid_norm(ctx->arena, req->reservation_id);
    if (!id)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "reservationId must be a UUID");
    return send_one(ctx, req, &stmt_resv_holder, id, "reservation", "reservation_notice", out);
}

sb_status_t ntf_send_payment(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Notification__SendNoticeRequest *req = in;
    char *id = sb_uuid_norm(ctx->arena, req->payment_id);
    if (!id)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "paymentId must be a UUID");
    return send_one(ctx, req, &stmt_pay_holder, id, "payment", "payment_notice", out);
}

static const sb_pg_stmt_t stmt_perf_owner = {
    "ntf_perf_owner",
    "SELECT COALESCE(planner_id::text, '') FROM performances WHERE performance_id = $1::uuid"};

sb_status_t ntf_send_cancellation(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Notification__SendNoticeRequest *req = in;
    char *id = sb_uuid_norm(ctx->arena, req->performance_id);
    if (!id)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "performanceId must be a UUID");
    sb_status_t st = check_text(ctx, req);
    if (st != SB_OK)
        return st;
    PGresult *r;
    if ((st = sb_db_exec(ctx->db, &stmt_perf_owner, &r, id)) != SB_OK)
        return st;
    /* a planner's own performance only; another's is as unknown as none */
    bool user_caller = ctx->user_id && *ctx->user_id;
    if (PQntuples(r) == 0 ||
        (user_caller && !sb_rpc_is_admin(ctx) && strcmp(PQgetvalue(r, 0, 0), ctx->user_id) != 0))
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "performance %s not found", id);
    const char *owner = sb_arena_strdup(ctx->arena, PQgetvalue(r, 0, 0));
    if ((st = need_reason(ctx, owner, req->reason)) != SB_OK)
        return st;
    ntf_facts_t f = {.kind = "performance_notice",
                     .performance_id = id,
                     .amount = -1,
                     .headline = req->title,
                     .message = req->message};
    char **ids;
    size_t n;
    if ((st = ntf_notice_holders(ctx->db, ctx->arena, &f, NULL, 0, &ids, &n)) != SB_OK ||
        (st = audited(ctx, owner, "performance", id, req->reason, n)) != SB_OK)
        return st;
    answer(ctx, out, ids, n);
    return SB_OK;
}

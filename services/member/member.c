/* member service RPC handlers (proto/member.proto, SPEC §3 and §6).
 *
 * A request enters as an unpacked message, is validated field by field, has
 * its password hashed or verified (password.c) before any statement, so
 * without holding a pooled connection, then touches table `members` in one
 * statement or in the transaction its row asks for (main.c: the runtime
 * opens it at the first statement, commits it, and retries conflicts).
 * State changes other services care about (withdrawal, password change) are
 * written to the outbox in that transaction. Refusals are the only messages
 * callers read; a database failure is returned as is and answered for by
 * the runtime. */
#include <string.h>

#include "member.h"
#include "sb/audit.h"
#include "sb/db.h"
#include "sb/events.h"
#include "sb/log.h"
#include "sb/service.h"

/* A Member's columns, named as its fields (sb_db_row_to_pb). Never the
 * password hash. */
#define MEMBER_COLS                                                                                     \
    "user_id::text, login_id, name, email, phone, role, language, " SB_DB_TS(                           \
        "created_at") " AS created_at, " SB_DB_TS("updated_at") " AS updated_at"

static const sb_pg_stmt_t insert_member = {
    "member_insert",
    "INSERT INTO members (user_id, login_id, password_hash, name, email, phone, role, language)"
    " VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7) RETURNING " MEMBER_COLS};

static const sb_pg_stmt_t select_member = {
    "member_select",
    "SELECT " MEMBER_COLS " FROM members WHERE user_id = $1::uuid AND status = 'ACTIVE'"};

static const sb_pg_stmt_t select_credentials = {"member_select_credentials",
                                                "SELECT user_id::text, role, password_hash FROM members"
                                                " WHERE login_id = $1 AND status = 'ACTIVE'"};

static const sb_pg_stmt_t select_hash = {
    "member_select_hash",
    "SELECT password_hash FROM members WHERE user_id = $1::uuid AND status = 'ACTIVE'"};

static const sb_pg_stmt_t lock_member = {
    "member_lock",
    "SELECT password_hash FROM members WHERE user_id = $1::uuid AND status = 'ACTIVE' FOR UPDATE"};

/* NULL parameters leave the column as it is. */
static const sb_pg_stmt_t update_member = {
    "member_update", "UPDATE members SET name = COALESCE($2, name), email = COALESCE($3, email),"
                     " phone = COALESCE($4, phone), password_hash = COALESCE($5, password_hash),"
                     " language = COALESCE($6, language),"
                     " updated_at = now() WHERE user_id = $1::uuid RETURNING " MEMBER_COLS};

/* Only when unchanged since it was verified: a concurrent password change wins. */
static const sb_pg_stmt_t rehash_member = {
    "member_rehash",
    "UPDATE members SET password_hash = $3 WHERE user_id = $1::uuid AND password_hash = $2"
    " AND status = 'ACTIVE'"};

/* Scrubs personal data; the login id is freed for a new account. */
static const sb_pg_stmt_t withdraw_member = {
    "member_withdraw",
    "UPDATE members SET login_id = 'withdrawn:' || user_id::text, name = '', email = '',"
    " phone = '', password_hash = NULL, status = 'WITHDRAWN', withdrawn_at = now(),"
    " updated_at = now() WHERE user_id = $1::uuid AND status = 'ACTIVE'"
    " RETURNING " SB_DB_TS("withdrawn_at")};

static const char bad_credentials[] = "invalid login id or password";

static pw_hasher_t *hasher(const sb_rpc_ctx_t *ctx)
{
    return ((member_state_t *)sb_service_of(ctx)->user)->pw;
}

static const char *str(const char *s)
{
    return s ? s : "";
}

/* A password hashing or verification failure: a full hasher or the deadline
 * is the caller's to know (the message is written for it), anything else is
 * internal. */
static sb_status_t pw_failed(sb_rpc_ctx_t *ctx, sb_status_t st, const sb_buf_t *err, const char *what)
{
    if (st == SB_RESOURCE_EXHAUSTED || st == SB_DEADLINE_EXCEEDED)
        return sb_rpc_fail(ctx, st, "%s: %s", what, err->buf);
    return sb_rpc_error(ctx, st, "%s: %s", what, err->buf);
}

/* The member a Get/Update/Delete is about, normalised into *id (arena). Who
 * may ask (self, or an admin for Get and Delete) is the method's policy in
 * proto/member.proto, checked before the handler runs. */
static sb_status_t target_member(sb_rpc_ctx_t *ctx, const char *raw_id, char **id)
{
    if (!(*id = sb_uuid_norm(ctx->arena, raw_id)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "userId must be a UUID");
    return SB_OK;
}

/* Runs stmt (one row per member) on member id; NOT_FOUND when there is none. */
static sb_status_t member_row(sb_rpc_ctx_t *ctx, sb_db_t *db, const sb_pg_stmt_t *stmt, const char *id,
                              PGresult **r)
{
    sb_status_t st = sb_db_exec(db, stmt, r, id);
    if (st == SB_OK && PQntuples(*r) == 0)
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "member not found");
    return st;
}

/* ------------------------------------------------------------------ Signup */

sb_status_t member_signup(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Member__SignupRequest *req = in;
    Sb__Member__Member *resp = out;
    const char *problem;

    char *login = member_login_id_fold(ctx->arena, req->login_id);
    if (!login)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "loginId %s",
                           member_login_id_problem(req->login_id));
    if ((problem = member_password_problem(req->password)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "password %s", problem);
    if ((problem = member_name_problem(req->name)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "name %s", problem);
    if ((problem = member_email_problem(req->email)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "email %s", problem);
    if ((problem = member_phone_problem(req->phone)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "phone %s", problem);
    const char *language = *str(req->language) ? req->language : "ko";
    if ((problem = member_language_problem(language)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "language %s", problem);
    /* Admins are never created by sign-up (only by the start-up bootstrap). */
    if (req->role != SB__COMMON__ROLE__USER && req->role != SB__COMMON__ROLE__PLANNER)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "role must be USER or PLANNER");

    sb_buf_t err = SB_BUF_INIT;
    char hash[PW_HASH_MAX];
    PGresult *r;
    sb_status_t st = pw_hash(hasher(ctx), req->password, hash, ctx->deadline_ms, &err);
    if (st != SB_OK) {
        st = pw_failed(ctx, st, &err, "sign-up");
        goto out;
    }
    st = sb_db_exec(ctx->db, &insert_member, &r, login, hash, req->name, req->email, req->phone,
                    sb_role_name(req->role), language);
    if (st == SB_ALREADY_EXISTS) /* the unique login_id: a taken id, or a sign-up racing ours */
        st = sb_rpc_fail(ctx, st, "login id already taken");
    if (st != SB_OK)
        goto out;
    sb_db_row_to_pb(r, 0, &resp->base);
    sb_info("member %s signed up as %s", resp->user_id, sb_role_name(resp->role));
out:
    sodium_memzero(hash, sizeof hash);
    sb_buf_release(&err);
    return st;
}

/* -------------------------------------------------------- CheckCredentials */

/* Best effort: re-hashes a password whose hash has outdated parameters. */
static void rehash(sb_rpc_ctx_t *ctx, const char *user_id, const char *old_hash, const char *password)
{
    sb_buf_t err = SB_BUF_INIT;
    char hash[PW_HASH_MAX];
    if (pw_hash(hasher(ctx), password, hash, ctx->deadline_ms, &err) == SB_OK &&
        sb_db_exec(ctx->db, &rehash_member, NULL, user_id, old_hash, hash) == SB_OK)
        sb_info("member %s: password rehashed with the current parameters", user_id);
    else
        sb_warn("member %s: rehash skipped: %s", user_id, err.len ? err.buf : ctx->detail.buf);
    sodium_memzero(hash, sizeof hash);
    sb_buf_release(&err);
}

sb_status_t member_check_credentials(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Member__CheckCredentialsRequest *req = in;
    Sb__Member__CheckCredentialsResponse *resp = out;
    const char *password = str(req->password);
    size_t pw_len = strlen(password);
    const char *why = "unknown or withdrawn login id";
    PGresult *r = NULL;
    const char *hash = NULL;
    bool match = false;
    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st;

    char *login = member_login_id_fold(ctx->arena, req->login_id);
    if (!login || pw_len == 0 || pw_len > PW_MAX_BYTES) {
        why = "malformed login id or password";
        password = ""; /* the dummy verification below still runs, on bounded input */
    } else {
        if ((st = sb_db_exec(ctx->db, &select_credentials, &r, login)) != SB_OK)
            goto out;
        if (PQntuples(r) == 1)
            hash = PQgetvalue(r, 0, 2);
    }

    /* Always one verification, against the dummy hash when there is no
     * account: an unknown login id costs as long as a wrong password. */
    st = pw_verify(hasher(ctx), hash, password, &match, ctx->deadline_ms, &err);
    if (st != SB_OK) {
        st = pw_failed(ctx, st, &err, "credentials check");
        goto out;
    }
    if (!match) {
        sb_info("credentials rejected: %s", hash ? "wrong password" : why);
        st = sb_rpc_fail(ctx, SB_UNAUTHENTICATED, "%s", bad_credentials);
        goto out;
    }
    sb_db_row_to_pb(r, 0, &resp->base); /* user_id, role */
    if (pw_needs_rehash(hasher(ctx), hash))
        rehash(ctx, resp->user_id, hash, password);
    sb_debug("credentials accepted for member %s", resp->user_id);
out:
    sb_buf_release(&err);
    return st;
}

/* --------------------------------------------------------------- GetMember */

sb_status_t member_get(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Member__GetMemberRequest *req = in;
    char *id;
    PGresult *r;
    sb_status_t st = target_member(ctx, req->user_id, &id);
    if (st != SB_OK || (st = member_row(ctx, ctx->db, &select_member, id, &r)) != SB_OK)
        return st;
    sb_db_row_to_pb(r, 0, out);
    return SB_OK;
}

/* ------------------------------------------------------------ UpdateMember */

/* The new password's hash into new_hash, once current was verified against
 * the stored hash (*old_hash, arena). The read runs outside the call's
 * transaction and both hash computations hold no connection; the
 * transaction then checks the hash did not change meanwhile. */
static sb_status_t new_password(sb_rpc_ctx_t *ctx, const char *id, const char *current,
                                const char *fresh, const char **old_hash, char new_hash[PW_HASH_MAX])
{
    sb_db_t pre = sb_db_outside(ctx->db);
    PGresult *r;
    sb_status_t st = member_row(ctx, &pre, &select_hash, id, &r);
    if (st != SB_OK)
        return st;
    *old_hash = PQgetvalue(r, 0, 0);
    sb_buf_t err = SB_BUF_INIT;
    bool match = false;
    if ((st = pw_verify(hasher(ctx), *old_hash, current, &match, ctx->deadline_ms, &err)) != SB_OK)
        st = pw_failed(ctx, st, &err, "profile update");
    else if (!match)
        st = sb_rpc_fail(ctx, SB_PERMISSION_DENIED, "current password is incorrect");
    else if ((st = pw_hash(hasher(ctx), fresh, new_hash, ctx->deadline_ms, &err)) != SB_OK)
        st = pw_failed(ctx, st, &err, "profile update");
    sb_buf_release(&err);
    return st;
}

sb_status_t member_update(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Member__UpdateMemberRequest *req = in;
    Sb__Member__Member *resp = out;
    const char *problem;
    char *id;
    sb_status_t st = target_member(ctx, req->user_id, &id);
    if (st != SB_OK)
        return st;

    /* NULL: unchanged */
    const char *name = NULL, *email = NULL, *phone = NULL, *language = NULL, *old_hash = NULL,
               *new_hash = NULL;
    const char *current = str(req->current_password), *fresh = str(req->new_password);
    if (*str(req->name)) {
        if ((problem = member_name_problem(req->name)))
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "name %s", problem);
        name = req->name;
    }
    if (*str(req->email)) {
        if ((problem = member_email_problem(req->email)))
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "email %s", problem);
        email = req->email;
    }
    if (*str(req->phone)) {
        if ((problem = member_phone_problem(req->phone)))
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "phone %s", problem);
        phone = req->phone;
    }
    if (*str(req->language)) {
        if ((problem = member_language_problem(req->language)))
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "language %s", problem);
        language = req->language;
    }
    if (*fresh) {
        if ((problem = member_password_problem(fresh)))
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "newPassword %s", problem);
        if (!*current)
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                               "currentPassword is required to change the password");
        if (strlen(current) > PW_MAX_BYTES)
            return sb_rpc_fail(ctx, SB_PERMISSION_DENIED, "current password is incorrect");
    }
    if (!name && !email && !phone && !language && !*fresh)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "nothing to update: give name, email, phone, language or newPassword");

    char hash[PW_HASH_MAX] = "";
    PGresult *r;
    if (*fresh) {
        if ((st = new_password(ctx, id, current, fresh, &old_hash, hash)) != SB_OK)
            goto out;
        new_hash = hash;
    }
    /* the transaction: from here on */
    if ((st = member_row(ctx, ctx->db, &lock_member, id, &r)) != SB_OK)
        goto out;
    if (new_hash && strcmp(PQgetvalue(r, 0, 0), old_hash) != 0) { /* changed since we verified */
        st = sb_rpc_fail(ctx, SB_ABORTED, "the password was changed meanwhile; try again");
        goto out;
    }
    if ((st = sb_db_exec(ctx->db, &update_member, &r, id, name, email, phone, new_hash, language)) !=
        SB_OK)
        goto out;
    sb_db_row_to_pb(r, 0, &resp->base);
    if (new_hash) {
        Sb__Events__MemberPasswordChanged ev = SB__EVENTS__MEMBER_PASSWORD_CHANGED__INIT;
        ev.user_id = resp->user_id;
        ev.changed_at = resp->updated_at;
        if ((st = sb_outbox_add(ctx->db->conn, "member.password_changed", id, &ev.base, NULL,
                                &ctx->detail)) != SB_OK)
            goto out;
    }
    sb_info("member %s updated%s%s%s%s%s", id, name ? " name" : "", email ? " email" : "",
            phone ? " phone" : "", language ? " language" : "", new_hash ? " password" : "");
out:
    sodium_memzero(hash, sizeof hash);
    return st;
}

/* ------------------------------------------------------------ DeleteMember */

sb_status_t member_delete(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Member__DeleteMemberRequest *req = in;
    Sb__Member__DeleteMemberResponse *resp = out;
    char *id;
    PGresult *r;
    sb_status_t st = target_member(ctx, req->user_id, &id);
    if (st != SB_OK)
        return st;
    bool as_admin = sb_audit_as_admin(ctx, id);
    if (as_admin && (st = sb_audit_need_reason(ctx, req->reason)) != SB_OK)
        return st;
    if ((st = member_row(ctx, ctx->db, &withdraw_member, id, &r)) != SB_OK)
        return st;
    Sb__Events__MemberWithdrawn ev = SB__EVENTS__MEMBER_WITHDRAWN__INIT;
    ev.user_id = id;
    ev.withdrawn_at = PQgetvalue(r, 0, 0);
    ev.withdrawn_by = (char *)ctx->user_id;
    if ((st = sb_outbox_add(ctx->db->conn, "member.withdrawn", id, &ev.base, NULL, &ctx->detail)) !=
        SB_OK)
        return st;
    if (as_admin && (st = sb_audit_record(ctx, &(sb_audit_t){.target_type = "member",
                                                             .target_id = id,
                                                             .reason = req->reason,
                                                             .before = "ACTIVE",
                                                             .after = "WITHDRAWN"})) != SB_OK)
        return st;
    resp->user_id = id;
    resp->status = "WITHDRAWN";
    sb_info("member %s withdrawn by %s%s", id, ctx->user_id,
            sb_rpc_is_self(ctx, id) ? " (self)" : " (admin)");
    return SB_OK;
}

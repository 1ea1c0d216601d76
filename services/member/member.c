/* member service RPC handlers (proto/member.proto, SPEC §3 and §6).
 *
 * A request enters as an unpacked message, is validated field by field, has
 * its password hashed or verified (password.c, outside any transaction and
 * without holding a pooled connection), then touches table `members` in one
 * statement or one transaction. State changes other services care about
 * (withdrawal, password change) are written to the outbox in the same
 * transaction. Messages returned to callers never carry SQL text or stored
 * data; database details go to the log. */
#include <string.h>

#include "member.h"
#include "sb/events.h"
#include "sb/log.h"
#include "sb/service.h"

#define DB_WAIT_MS 5000

/* RFC 3339 UTC with milliseconds, like sb_time_rfc3339. */
#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
/* The columns fill_member reads, in its order. Never the password hash. */
#define MEMBER_COLS \
    "user_id::text, login_id, name, email, phone, role, " TS("created_at") ", " TS("updated_at")

static const sb_pg_stmt_t insert_member = {
    "member_insert",
    "INSERT INTO members (user_id, login_id, password_hash, name, email, phone, role)"
    " VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6) RETURNING " MEMBER_COLS};

static const sb_pg_stmt_t select_member = {
    "member_select",
    "SELECT " MEMBER_COLS " FROM members WHERE user_id = $1::uuid AND status = 'ACTIVE'"};

static const sb_pg_stmt_t select_credentials = {
    "member_select_credentials",
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
    "member_update",
    "UPDATE members SET name = COALESCE($2, name), email = COALESCE($3, email),"
    " phone = COALESCE($4, phone), password_hash = COALESCE($5, password_hash),"
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
    " RETURNING " TS("withdrawn_at")};

static const char bad_credentials[] = "invalid login id or password";

static pw_hasher_t *hasher(const sb_rpc_ctx_t *ctx)
{
    return ((member_state_t *)sb_service_of(ctx)->user)->pw;
}

static const char *str(const char *s)
{
    return s ? s : "";
}

/* Copies row `row` of a MEMBER_COLS result into m, in arena a. */
static void fill_member(sb_arena_t *a, const PGresult *r, int row, Sb__Member__Member *m)
{
    m->user_id = sb_arena_strdup(a, PQgetvalue(r, row, 0));
    m->login_id = sb_arena_strdup(a, PQgetvalue(r, row, 1));
    m->name = sb_arena_strdup(a, PQgetvalue(r, row, 2));
    m->email = sb_arena_strdup(a, PQgetvalue(r, row, 3));
    m->phone = sb_arena_strdup(a, PQgetvalue(r, row, 4));
    m->role = sb_role_parse(PQgetvalue(r, row, 5));
    m->created_at = sb_arena_strdup(a, PQgetvalue(r, row, 6));
    m->updated_at = sb_arena_strdup(a, PQgetvalue(r, row, 7));
}

/* A database failure: the detail goes to the log, the caller gets a status
 * and a message without SQL or data in it. */
static sb_status_t db_fail(sb_rpc_ctx_t *ctx, sb_status_t st, const sb_buf_t *err, const char *what)
{
    sb_error("%s: database: %s", what, err->buf);
    if (st == SB_UNAVAILABLE || st == SB_DEADLINE_EXCEEDED || st == SB_ABORTED)
        return sb_rpc_fail(ctx, st, "%s: the member store is unavailable; try again", what);
    return sb_rpc_fail(ctx, SB_INTERNAL, "%s failed", what);
}

/* Runs one statement on a pooled connection, outside a transaction. On OK
 * *res is the result (caller PQclears); otherwise *res is NULL. */
static sb_status_t run1(sb_pg_pool_t *pool, const sb_pg_stmt_t *stmt, int n,
                        const char *const *params, PGresult **res, sb_buf_t *err)
{
    *res = NULL;
    sb_pg_conn_t *c = sb_pg_acquire(pool, DB_WAIT_MS, err);
    if (!c)
        return SB_UNAVAILABLE;
    PGresult *r = sb_pg_exec(c, stmt, n, params);
    sb_status_t st = sb_pg_check(c, r, err);
    sb_pg_release(pool, c);
    if (st != SB_OK) {
        PQclear(r);
        return st;
    }
    *res = r;
    return SB_OK;
}

/* The caller's identity for a per-member path: signed in, and self (or an
 * admin where admin_ok). */
/* The member a Get/Update/Delete is about: raw_id normalised into *id (arena),
 * and the caller must be that member (or an admin when admin_ok). The UUID is
 * checked first so a malformed id never reaches SQL. */
static sb_status_t target_member(sb_rpc_ctx_t *ctx, const char *raw_id, bool admin_ok, const char *denied,
                                 char **id)
{
    if (!(*id = sb_uuid_norm(ctx->arena, raw_id)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "userId must be a UUID");
    if (!ctx->user_id || !*ctx->user_id)
        return sb_rpc_fail(ctx, SB_UNAUTHENTICATED, "sign in first");
    if (sb_rpc_is_self(ctx, *id) || (admin_ok && sb_rpc_is_admin(ctx)))
        return SB_OK;
    return sb_rpc_fail(ctx, SB_PERMISSION_DENIED, "%s", denied);
}

/* ------------------------------------------------------------------ Signup */

sb_status_t member_signup(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Member__SignupRequest *req = in;
    Sb__Member__Member *resp = out;
    const char *problem;

    char *login = member_login_id_fold(ctx->arena, req->login_id);
    if (!login)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "loginId %s", member_login_id_problem(req->login_id));
    if ((problem = member_password_problem(req->password)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "password %s", problem);
    if ((problem = member_name_problem(req->name)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "name %s", problem);
    if ((problem = member_email_problem(req->email)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "email %s", problem);
    if ((problem = member_phone_problem(req->phone)))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "phone %s", problem);
    /* Admins are never created by sign-up (only by the start-up bootstrap). */
    if (req->role != SB__COMMON__ROLE__USER && req->role != SB__COMMON__ROLE__PLANNER)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "role must be USER or PLANNER");

    sb_buf_t err = SB_BUF_INIT;
    char hash[PW_HASH_MAX];
    sb_status_t st = pw_hash(hasher(ctx), req->password, hash, ctx->deadline_ms, &err);
    if (st != SB_OK) {
        st = sb_rpc_fail(ctx, st, "sign-up: %s", err.buf);
        goto out;
    }
    const char *params[] = {login, hash, req->name, req->email, req->phone, sb_role_name(req->role)};
    PGresult *r;
    st = run1(sb_service_of(ctx)->pg, &insert_member, 6, params, &r, &err);
    if (st == SB_ALREADY_EXISTS) { /* the unique login_id: a taken id, or a sign-up racing ours */
        st = sb_rpc_fail(ctx, st, "login id already taken");
        goto out;
    }
    if (st != SB_OK) {
        st = db_fail(ctx, st, &err, "sign-up");
        goto out;
    }
    fill_member(ctx->arena, r, 0, resp);
    PQclear(r);
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
    PGresult *r = NULL;
    if (pw_hash(hasher(ctx), password, hash, ctx->deadline_ms, &err) == SB_OK) {
        const char *params[] = {user_id, old_hash, hash};
        if (run1(sb_service_of(ctx)->pg, &rehash_member, 3, params, &r, &err) == SB_OK)
            sb_info("member %s: password rehashed with the current parameters", user_id);
        PQclear(r);
    }
    if (err.len)
        sb_warn("member %s: rehash skipped: %s", user_id, err.buf);
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
        const char *params[] = {login};
        st = run1(sb_service_of(ctx)->pg, &select_credentials, 1, params, &r, &err);
        if (st != SB_OK) {
            st = db_fail(ctx, st, &err, "credentials check");
            goto out;
        }
        if (PQntuples(r) == 1)
            hash = PQgetvalue(r, 0, 2);
    }

    /* Always one verification, against the dummy hash when there is no
     * account: an unknown login id costs as long as a wrong password. */
    st = pw_verify(hasher(ctx), hash, password, &match, ctx->deadline_ms, &err);
    if (st != SB_OK) {
        st = sb_rpc_fail(ctx, st, "credentials check: %s", err.buf);
        goto out;
    }
    if (!match) {
        sb_info("credentials rejected: %s", hash ? "wrong password" : why);
        st = sb_rpc_fail(ctx, SB_UNAUTHENTICATED, "%s", bad_credentials);
        goto out;
    }
    resp->user_id = sb_arena_strdup(ctx->arena, PQgetvalue(r, 0, 0));
    resp->role = sb_role_parse(PQgetvalue(r, 0, 1));
    if (pw_needs_rehash(hasher(ctx), hash))
        rehash(ctx, resp->user_id, hash, password);
    sb_debug("credentials accepted for member %s", resp->user_id);
    st = SB_OK;
out:
    PQclear(r);
    sb_buf_release(&err);
    return st;
}

/* --------------------------------------------------------------- GetMember */

sb_status_t member_get(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Member__GetMemberRequest *req = in;
    Sb__Member__Member *resp = out;
    char *id;
    sb_status_t st = target_member(ctx, req->user_id, true, "you may only read your own profile", &id);
    if (st != SB_OK)
        return st;

    sb_buf_t err = SB_BUF_INIT;
    PGresult *r;
    const char *params[] = {id};
    st = run1(sb_service_of(ctx)->pg, &select_member, 1, params, &r, &err);
    if (st != SB_OK) {
        st = db_fail(ctx, st, &err, "profile read");
    } else if (PQntuples(r) == 0) {
        st = sb_rpc_fail(ctx, SB_NOT_FOUND, "member not found");
    } else {
        fill_member(ctx->arena, r, 0, resp);
    }
    PQclear(r);
    sb_buf_release(&err);
    return st;
}

/* ------------------------------------------------------------ UpdateMember */

struct update_job {
    const char *id;
    const char *name, *email, *phone; /* NULL = unchanged */
    const char *old_hash;             /* the hash current_password was verified against */
    const char *new_hash;             /* NULL = password unchanged */
    sb_arena_t *arena;
    Sb__Member__Member *out;
    bool not_found, raced;
};

static sb_status_t update_tx(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    struct update_job *job = arg;
    const char *id_param[] = {job->id};
    PGresult *r = sb_pg_exec(c, &lock_member, 1, id_param);
    sb_status_t st = sb_pg_check(c, r, err);
    if (st != SB_OK)
        goto out_clear;
    if (PQntuples(r) == 0) {
        job->not_found = true;
        st = SB_NOT_FOUND;
        goto out_clear;
    }
    if (job->new_hash && strcmp(PQgetvalue(r, 0, 0), job->old_hash) != 0) {
        job->raced = true; /* changed since we verified current_password */
        st = SB_ABORTED;
        goto out_clear;
    }
    PQclear(r);

    const char *params[] = {job->id, job->name, job->email, job->phone, job->new_hash};
    r = sb_pg_exec(c, &update_member, 5, params);
    if ((st = sb_pg_check(c, r, err)) != SB_OK)
        goto out_clear;
    fill_member(job->arena, r, 0, job->out);
    if (job->new_hash) {
        Sb__Events__MemberPasswordChanged ev = SB__EVENTS__MEMBER_PASSWORD_CHANGED__INIT;
        ev.user_id = job->out->user_id;
        ev.changed_at = job->out->updated_at;
        st = sb_outbox_add(c, "member.password_changed", job->id, &ev.base, NULL, err);
    }
out_clear:
    PQclear(r);
    return st;
}

sb_status_t member_update(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Member__UpdateMemberRequest *req = in;
    const char *problem;
    char *id;
    sb_status_t st = target_member(ctx, req->user_id, false, "you may only change your own profile", &id);
    if (st != SB_OK)
        return st;

    struct update_job job = {.id = id, .arena = ctx->arena, .out = out};
    const char *name = str(req->name), *email = str(req->email), *phone = str(req->phone);
    const char *current = str(req->current_password), *fresh = str(req->new_password);
    if (*name) {
        if ((problem = member_name_problem(name)))
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "name %s", problem);
        job.name = name;
    }
    if (*email) {
        if ((problem = member_email_problem(email)))
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "email %s", problem);
        job.email = email;
    }
    if (*phone) {
        if ((problem = member_phone_problem(phone)))
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "phone %s", problem);
        job.phone = phone;
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
    if (!job.name && !job.email && !job.phone && !*fresh)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT,
                           "nothing to update: give name, email, phone or newPassword");

    sb_buf_t err = SB_BUF_INIT;
    char new_hash[PW_HASH_MAX] = "";
    PGresult *r = NULL;
    sb_pg_pool_t *pool = sb_service_of(ctx)->pg;
    if (*fresh) {
        const char *params[] = {id};
        st = run1(pool, &select_hash, 1, params, &r, &err);
        if (st != SB_OK) {
            st = db_fail(ctx, st, &err, "profile update");
            goto out;
        }
        if (PQntuples(r) == 0) {
            st = sb_rpc_fail(ctx, SB_NOT_FOUND, "member not found");
            goto out;
        }
        job.old_hash = PQgetvalue(r, 0, 0);
        bool match = false;
        if ((st = pw_verify(hasher(ctx), job.old_hash, current, &match, ctx->deadline_ms, &err)) != SB_OK) {
            st = sb_rpc_fail(ctx, st, "profile update: %s", err.buf);
            goto out;
        }
        if (!match) {
            st = sb_rpc_fail(ctx, SB_PERMISSION_DENIED, "current password is incorrect");
            goto out;
        }
        if ((st = pw_hash(hasher(ctx), fresh, new_hash, ctx->deadline_ms, &err)) != SB_OK) {
            st = sb_rpc_fail(ctx, st, "profile update: %s", err.buf);
            goto out;
        }
        job.new_hash = new_hash;
    }

    st = sb_pg_tx(pool, SB_PG_READ_COMMITTED, update_tx, &job, &err);
    if (job.not_found)
        st = sb_rpc_fail(ctx, SB_NOT_FOUND, "member not found");
    else if (job.raced)
        st = sb_rpc_fail(ctx, SB_ABORTED, "the password was changed meanwhile; try again");
    else if (st != SB_OK)
        st = db_fail(ctx, st, &err, "profile update");
    else
        sb_info("member %s updated%s%s%s%s", id, job.name ? " name" : "", job.email ? " email" : "",
                job.phone ? " phone" : "", job.new_hash ? " password" : "");
out:
    sodium_memzero(new_hash, sizeof new_hash);
    PQclear(r);
    sb_buf_release(&err);
    return st;
}

/* ------------------------------------------------------------ DeleteMember */

struct withdraw_job {
    const char *id;
    const char *by;
    bool not_found;
};

static sb_status_t withdraw_tx(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    struct withdraw_job *job = arg;
    const char *params[] = {job->id};
    PGresult *r = sb_pg_exec(c, &withdraw_member, 1, params);
    sb_status_t st = sb_pg_check(c, r, err);
    if (st != SB_OK)
        goto out_clear;
    if (PQntuples(r) == 0) {
        job->not_found = true;
        st = SB_NOT_FOUND;
        goto out_clear;
    }
    Sb__Events__MemberWithdrawn ev = SB__EVENTS__MEMBER_WITHDRAWN__INIT;
    ev.user_id = (char *)job->id;
    ev.withdrawn_at = PQgetvalue(r, 0, 0);
    ev.withdrawn_by = (char *)job->by;
    st = sb_outbox_add(c, "member.withdrawn", job->id, &ev.base, NULL, err);
out_clear:
    PQclear(r);
    return st;
}

sb_status_t member_delete(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Member__DeleteMemberRequest *req = in;
    Sb__Member__DeleteMemberResponse *resp = out;
    char *id;
    sb_status_t st = target_member(ctx, req->user_id, true, "you may only withdraw your own account", &id);
    if (st != SB_OK)
        return st;

    struct withdraw_job job = {.id = id, .by = ctx->user_id};
    sb_buf_t err = SB_BUF_INIT;
    st = sb_pg_tx(sb_service_of(ctx)->pg, SB_PG_READ_COMMITTED, withdraw_tx, &job, &err);
    if (job.not_found) {
        st = sb_rpc_fail(ctx, SB_NOT_FOUND, "member not found");
    } else if (st != SB_OK) {
        st = db_fail(ctx, st, &err, "withdrawal");
    } else {
        resp->user_id = id;
        resp->status = "WITHDRAWN";
        sb_info("member %s withdrawn by %s%s", id, ctx->user_id,
                sb_rpc_is_self(ctx, id) ? " (self)" : " (admin)");
    }
    sb_buf_release(&err);
    return st;
}

/* Login, Refresh and Logout.
 *
 * Access tokens are short-lived HS256 JWTs (sb/jwt.h) that every service and
 * the gateway verify on their own; logout puts the token's jti on the Redis
 * denylist (sb:deny:<jti>) for the rest of its lifetime.
 *
 * Refresh tokens are 32 random bytes, base64url, handed out once and stored
 * only as their SHA-256. Each use rotates: the presented token is marked used
 * and a successor joins the same family (one family per login). Presenting a
 * used or revoked token again means two parties hold it, so the whole family
 * is revoked (refresh-token reuse detection). */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "sb/jwt.h"
#include "sb/log.h"
#include "sb/util.h"

#define REFRESH_TOKEN_BYTES 32
#define REFRESH_TOKEN_MAX 128 /* ours are 43 characters; anything longer is not ours */
#define TOKEN_HASH_HEX (crypto_hash_sha256_BYTES * 2 + 1)
#define MEMBER_TIMEOUT_MS 5000

/* One message for every credential failure, so answers never tell whether a
 * login id exists. */
#define BAD_LOGIN "invalid login id or password"
#define BAD_REFRESH "invalid refresh token"
#define REUSED_REFRESH "refresh token reuse detected: session revoked"
#define EXPIRED_REFRESH "refresh token expired"
#define STORE_DOWN "token store unavailable"

static const sb_pg_stmt_t stmt_insert = {
    "auth_refresh_insert",
    "INSERT INTO refresh_tokens (token_hash, family_id, user_id, role, expires_at)"
    " VALUES ($1, $2::uuid, $3::uuid, $4, now() + $5::int * interval '1 second')"};

/* A rotated token's successor keeps the family's expiry: refreshing does not
 * extend a session beyond REFRESH_TOKEN_TTL_S from its login. */
static const sb_pg_stmt_t stmt_insert_successor = {
    "auth_refresh_insert_successor",
    "INSERT INTO refresh_tokens (token_hash, family_id, user_id, role, expires_at)"
    " SELECT $1, family_id, user_id, role, expires_at FROM refresh_tokens WHERE token_hash = $2"};

/* Revocations of a user's tokens (logout, reuse, withdrawal, password change)
 * and rotations serialise on a per-user advisory lock taken before any token
 * row lock: without it a successor inserted by a rotation running at the same
 * time as "revoke every token of the user" is not in that UPDATE's snapshot
 * and outlives the revocation. */
static const sb_pg_stmt_t stmt_user_lock_by_token = {
    "auth_user_lock_by_token",
    "SELECT pg_advisory_xact_lock(hashtextextended(user_id::text, 1)) FROM refresh_tokens WHERE token_hash = $1"};
static const sb_pg_stmt_t stmt_user_lock = {
    "auth_user_lock", "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 1))"};


sb_status_t auth_lock_user(sb_pg_conn_t *c, const char *user_id, sb_buf_t *err)
{
    const char *p[] = {user_id};
    PGresult *r = sb_pg_exec(c, &stmt_user_lock, 1, p);
    sb_status_t st = sb_pg_check(c, r, err);
    PQclear(r);
    return st;
}

static const sb_pg_stmt_t stmt_lock = {
    "auth_refresh_lock",
    "SELECT family_id::text, user_id::text, role,"
    " used_at IS NOT NULL, revoked_at IS NOT NULL, expires_at <= now()"
    " FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE"};

static const sb_pg_stmt_t stmt_mark_used = {
    "auth_refresh_mark_used", "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1"};

static const sb_pg_stmt_t stmt_revoke_family = {
    "auth_refresh_revoke_family",
    "UPDATE refresh_tokens SET revoked_at = now()"
    " WHERE family_id = $1::uuid AND revoked_at IS NULL"};

/* ---------------------------------------------------------------- material */

typedef struct refresh_token {
    char token[sodium_base64_ENCODED_LEN(REFRESH_TOKEN_BYTES,
                                         sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    char hash[TOKEN_HASH_HEX];
} refresh_token_t;

/* Hex SHA-256 of a presented token: the only form the database ever sees. */
static void token_hash(const char *token, char out[TOKEN_HASH_HEX])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
    sodium_bin2hex(out, TOKEN_HASH_HEX, h, sizeof h);
}

static void refresh_token_new(refresh_token_t *t)
{
    unsigned char raw[REFRESH_TOKEN_BYTES];
    sb_random_bytes(raw, sizeof raw);
    sodium_bin2base64(t->token, sizeof t->token, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
    token_hash(t->token, t->hash);
}

/* Signs an access token for user_id/role into *out (arena memory). */
static sb_status_t access_token_new(const auth_config_t *cfg, sb_arena_t *arena,
                                    const char *user_id, const char *role, char **out,
                                    sb_buf_t *err)
{
    sb_jwt_claims_t c;
    memset(&c, 0, sizeof c);
    if ((size_t)snprintf(c.sub, sizeof c.sub, "%s", user_id) >= sizeof c.sub ||
        (size_t)snprintf(c.role, sizeof c.role, "%s", role) >= sizeof c.role) {
        sb_buf_adds(err, "user id or role too long for a token");
        return SB_INTERNAL;
    }
    sb_uuid_v4(c.jti);
    c.iat = sb_now_ms() / 1000;
    c.exp = c.iat + cfg->access_ttl_s;
    char *tok = NULL;
    sb_status_t st = sb_jwt_issue(cfg->jwt_secret, &c, &tok, err);
    if (st != SB_OK)
        return st;
    *out = sb_arena_strdup(arena, tok);
    free(tok);
    return SB_OK;
}

static void fill_response(Sb__Auth__TokenResponse *resp, const auth_config_t *cfg,
                          sb_arena_t *arena, char *access, const char *refresh,
                          const char *user_id, Sb__Common__Role role)
{
    resp->access_token = access;
    resp->refresh_token = sb_arena_strdup(arena, refresh);
    resp->token_type = "Bearer";
    resp->expires_in = (int32_t)cfg->access_ttl_s;
    resp->user_id = sb_arena_strdup(arena, user_id);
    resp->role = role;
}

/* Runs one statement outside an explicit transaction. */
static sb_status_t exec_one(sb_pg_pool_t *pool, const sb_pg_stmt_t *stmt, int n,
                            const char *const *params, sb_buf_t *err)
{
    sb_pg_conn_t *c = sb_pg_acquire(pool, 5000, err);
    if (!c)
        return SB_UNAVAILABLE;
    PGresult *r = sb_pg_exec(c, stmt, n, params);
    sb_status_t st = sb_pg_check(c, r, err);
    PQclear(r);
    sb_pg_release(pool, c);
    return st;
}

/* Store failures: the detail goes to the log, the caller gets no SQL. */
static sb_status_t store_failed(sb_rpc_ctx_t *ctx, sb_status_t st, const char *what,
                                const sb_buf_t *err)
{
    sb_error("%s: %s", what, err->buf);
    return sb_rpc_fail(ctx, st == SB_UNAVAILABLE ? SB_UNAVAILABLE : SB_INTERNAL, STORE_DOWN);
}

/* ---------------------------------------------------------------- Login */

sb_status_t auth_login(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Auth__LoginRequest *req = in;
    Sb__Auth__TokenResponse *resp = out;
    sb_service_t *svc = sb_service_of(ctx);
    const auth_config_t *cfg = auth_config_of(svc);

    if (!req->login_id || !*req->login_id || !req->password || !*req->password)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "loginId and password are required");

    int64_t left = sb_rpc_remaining_ms(ctx);
    if (left <= 0)
        return sb_rpc_fail(ctx, SB_DEADLINE_EXCEEDED, "deadline passed before login");
    Sb__Member__CheckCredentialsRequest creq = SB__MEMBER__CHECK_CREDENTIALS_REQUEST__INIT;
    creq.login_id = req->login_id;
    creq.password = req->password;
    sb_call_opts_t opts = {
        .timeout_ms = left < MEMBER_TIMEOUT_MS ? left : MEMBER_TIMEOUT_MS,
        .trace_id = ctx->trace_id,
    };
    Sb__Member__CheckCredentialsResponse *cred = NULL;
    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st = sb_rpc_call(sb_channel_get(cfg->member_addr),
                                 &sb__member__member_service__descriptor, "CheckCredentials",
                                 &creq.base, ctx->arena, (ProtobufCMessage **)&cred, &opts, &err);
    switch (st) {
    case SB_OK:
        break;
    case SB_UNAUTHENTICATED:
    case SB_NOT_FOUND:
    case SB_PERMISSION_DENIED:
    case SB_INVALID_ARGUMENT:
    case SB_FAILED_PRECONDITION:
        /* whatever the member service said, the caller learns only this */
        sb_info("login refused by the member service (%s): %s", sb_status_name(st), err.buf);
        st = sb_rpc_fail(ctx, SB_UNAUTHENTICATED, BAD_LOGIN);
        goto out;
    case SB_UNAVAILABLE:
    case SB_DEADLINE_EXCEEDED:
    case SB_CANCELLED:
    case SB_UNIMPLEMENTED:
    case SB_RESOURCE_EXHAUSTED:
        sb_error("member service at %s unreachable for login (%s): %s", cfg->member_addr,
                 sb_status_name(st), err.buf);
        st = sb_rpc_fail(ctx, SB_UNAVAILABLE, "member service unavailable");
        goto out;
    default:
        sb_error("member service failed to check credentials (%s): %s", sb_status_name(st),
                 err.buf);
        st = sb_rpc_fail(ctx, SB_INTERNAL, "cannot check credentials");
        goto out;
    }

    const char *role = sb_role_name(cred->role);
    if (!role || !sb_valid_uuid(cred->user_id)) {
        st = sb_rpc_fail(ctx, SB_INTERNAL, "member service answered an invalid user id or role");
        goto out;
    }

    char *access = NULL;
    if ((st = access_token_new(cfg, ctx->arena, cred->user_id, role, &access, &err)) != SB_OK) {
        st = sb_rpc_fail(ctx, SB_INTERNAL, "cannot issue access token: %s", err.buf);
        goto out;
    }
    refresh_token_t rt;
    refresh_token_new(&rt);
    char family[SB_UUID_LEN + 1], ttl[24];
    sb_uuid_v4(family);
    snprintf(ttl, sizeof ttl, "%ld", cfg->refresh_ttl_s);
    const char *params[] = {rt.hash, family, cred->user_id, role, ttl};
    if ((st = exec_one(svc->pg, &stmt_insert, 5, params, &err)) != SB_OK) {
        st = store_failed(ctx, st, "cannot store refresh token", &err);
        goto out_wipe;
    }
    fill_response(resp, cfg, ctx->arena, access, rt.token, cred->user_id, cred->role);
    sb_info("user %s (%s) logged in: session %s", cred->user_id, role, family);
out_wipe:
    sodium_memzero(&rt, sizeof rt);
out:
    sb_buf_release(&err);
    return st;
}

/* ---------------------------------------------------------------- Refresh */

typedef enum { ROTATED, UNKNOWN_TOKEN, REUSED, EXPIRED } refresh_outcome_t;

typedef struct refresh_job {
    const auth_config_t *cfg;
    sb_arena_t *arena;
    char hash[TOKEN_HASH_HEX]; /* of the presented token */
    refresh_token_t next;      /* its successor */
    /* results */
    refresh_outcome_t outcome;
    char family[SB_UUID_LEN + 1];
    char user_id[SB_UUID_LEN + 1];
    char role[16];
    char *access;       /* arena */
    bool was_used;      /* REUSED: rotated before (else revoked by logout/withdrawal) */
    long long revoked;  /* rows the reuse revoked */
} refresh_job_t;

static void copy_field(char *dst, size_t n, const PGresult *r, int col)
{
    snprintf(dst, n, "%s", PQgetvalue(r, 0, col));
}

/* Takes the user lock, then the token row's lock. Returns the row (caller
 * PQclears) or NULL: *st says whether that is an error or an unknown token. */
static PGresult *lock_token(sb_pg_conn_t *c, const char *hash, sb_status_t *st, sb_buf_t *err)
{
    const char *p[] = {hash};
    PGresult *r = sb_pg_exec(c, &stmt_user_lock_by_token, 1, p);
    *st = sb_pg_check(c, r, err);
    PQclear(r);
    if (*st != SB_OK)
        return NULL;
    r = sb_pg_exec(c, &stmt_lock, 1, p);
    *st = sb_pg_check(c, r, err);
    if (*st != SB_OK || PQntuples(r) != 1) {
        PQclear(r);
        return NULL;
    }
    return r;
}

/* Locks the presented token's row and decides. Returns OK whenever the
 * outcome must be committed, including a reuse: the family's revocation
 * must survive the failing answer. */
static sb_status_t refresh_tx(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    refresh_job_t *j = arg;
    j->outcome = UNKNOWN_TOKEN;
    j->access = NULL;
    j->was_used = false;
    j->revoked = 0;

    sb_status_t st;
    PGresult *r = lock_token(c, j->hash, &st, err);
    if (!r)
        return st;
    copy_field(j->family, sizeof j->family, r, 0);
    copy_field(j->user_id, sizeof j->user_id, r, 1);
    copy_field(j->role, sizeof j->role, r, 2);
    j->was_used = PQgetvalue(r, 0, 3)[0] == 't';
    bool revoked = PQgetvalue(r, 0, 4)[0] == 't';
    bool expired = PQgetvalue(r, 0, 5)[0] == 't';
    PQclear(r);

    if (j->was_used || revoked) {
        const char *p[] = {j->family};
        r = sb_pg_exec(c, &stmt_revoke_family, 1, p);
        st = sb_pg_check(c, r, err);
        if (st == SB_OK)
            j->revoked = atoll(PQcmdTuples(r));
        PQclear(r);
        j->outcome = REUSED;
        return st;
    }
    if (expired) {
        j->outcome = EXPIRED;
        return SB_OK;
    }

    const char *p1[] = {j->hash};
    r = sb_pg_exec(c, &stmt_mark_used, 1, p1);
    st = sb_pg_check(c, r, err);
    PQclear(r);
    if (st != SB_OK)
        return st;
    const char *p2[] = {j->next.hash, p1[0]};
    r = sb_pg_exec(c, &stmt_insert_successor, 2, p2);
    st = sb_pg_check(c, r, err);
    PQclear(r);
    if (st != SB_OK)
        return st;
    /* signed before COMMIT: if signing failed, the old token stays usable */
    if ((st = access_token_new(j->cfg, j->arena, j->user_id, j->role, &j->access, err)) != SB_OK)
        return st;
    j->outcome = ROTATED;
    return SB_OK;
}

sb_status_t auth_refresh(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Auth__RefreshRequest *req = in;
    Sb__Auth__TokenResponse *resp = out;
    sb_service_t *svc = sb_service_of(ctx);
    const auth_config_t *cfg = auth_config_of(svc);

    if (!req->refresh_token || !*req->refresh_token)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "refreshToken is required");
    if (strlen(req->refresh_token) > REFRESH_TOKEN_MAX)
        return sb_rpc_fail(ctx, SB_UNAUTHENTICATED, BAD_REFRESH);

    refresh_job_t *j = sb_arena_alloc(ctx->arena, sizeof *j);
    j->cfg = cfg;
    j->arena = ctx->arena;
    token_hash(req->refresh_token, j->hash);
    refresh_token_new(&j->next);

    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st = sb_pg_tx(svc->pg, SB_PG_READ_COMMITTED, refresh_tx, j, &err);
    if (st != SB_OK) {
        st = store_failed(ctx, st, "cannot rotate refresh token", &err);
        goto out;
    }
    switch (j->outcome) {
    case UNKNOWN_TOKEN:
        st = sb_rpc_fail(ctx, SB_UNAUTHENTICATED, BAD_REFRESH);
        break;
    case REUSED:
        sb_warn("refresh token reuse detected for user %s (token already %s): session %s revoked"
                " (%lld tokens newly revoked)",
                j->user_id, j->was_used ? "rotated" : "revoked", j->family, j->revoked);
        st = sb_rpc_fail(ctx, SB_UNAUTHENTICATED, REUSED_REFRESH);
        break;
    case EXPIRED:
        st = sb_rpc_fail(ctx, SB_UNAUTHENTICATED, EXPIRED_REFRESH);
        break;
    case ROTATED:
        fill_response(resp, cfg, ctx->arena, j->access, j->next.token, j->user_id,
                      sb_role_parse(j->role));
        sb_info("session %s of user %s refreshed", j->family, j->user_id);
        st = SB_OK;
        break;
    }
out:
    sodium_memzero(&j->next, sizeof j->next);
    sb_buf_release(&err);
    return st;
}

/* ---------------------------------------------------------------- Logout */

typedef enum { LOGOUT_REVOKED, LOGOUT_UNKNOWN, LOGOUT_NOT_OWNER } logout_outcome_t;

typedef struct logout_job {
    const char *user_id; /* the caller */
    char hash[TOKEN_HASH_HEX];
    logout_outcome_t outcome;
    char family[SB_UUID_LEN + 1];
    long long revoked;
} logout_job_t;

static sb_status_t logout_tx(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    logout_job_t *j = arg;
    j->outcome = LOGOUT_UNKNOWN;
    j->revoked = 0;
    sb_status_t st;
    PGresult *r = lock_token(c, j->hash, &st, err);
    if (!r)
        return st;
    copy_field(j->family, sizeof j->family, r, 0);
    bool mine = strcasecmp(PQgetvalue(r, 0, 1), j->user_id) == 0;
    PQclear(r);
    if (!mine) {
        j->outcome = LOGOUT_NOT_OWNER;
        return SB_OK;
    }
    const char *p2[] = {j->family};
    r = sb_pg_exec(c, &stmt_revoke_family, 1, p2);
    st = sb_pg_check(c, r, err);
    if (st == SB_OK)
        j->revoked = atoll(PQcmdTuples(r));
    PQclear(r);
    j->outcome = LOGOUT_REVOKED;
    return st;
}

sb_status_t auth_logout(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Auth__LogoutRequest *req = in;
    Sb__Auth__LogoutResponse *resp = out;
    sb_service_t *svc = sb_service_of(ctx);
    const auth_config_t *cfg = auth_config_of(svc);
    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st;

    if (!ctx->user_id || !*ctx->user_id)
        return sb_rpc_fail(ctx, SB_UNAUTHENTICATED, "sign in to log out");
    int64_t now = sb_now_ms() / 1000;
    sb_jwt_claims_t claims;
    if (sb_jwt_verify(cfg->jwt_secret, req->access_token, now, &claims, &err) != SB_OK) {
        st = sb_rpc_fail(ctx, SB_UNAUTHENTICATED, "access token: %s", err.buf);
        goto out;
    }
    if (strcasecmp(claims.sub, ctx->user_id) != 0) {
        st = sb_rpc_fail(ctx, SB_PERMISSION_DENIED, "the access token is not the caller's");
        goto out;
    }

    /* The refresh family first: while the access token is still valid the
     * caller can retry a logout that failed half way; after the denylist
     * entry the gateway would turn the retry away. */
    if (req->refresh_token && *req->refresh_token) {
        if (strlen(req->refresh_token) > REFRESH_TOKEN_MAX) {
            st = sb_rpc_fail(ctx, SB_UNAUTHENTICATED, BAD_REFRESH);
            goto out;
        }
        logout_job_t j = {.user_id = ctx->user_id};
        token_hash(req->refresh_token, j.hash);
        if ((st = sb_pg_tx(svc->pg, SB_PG_READ_COMMITTED, logout_tx, &j, &err)) != SB_OK) {
            st = store_failed(ctx, st, "cannot revoke refresh token at logout", &err);
            goto out;
        }
        if (j.outcome == LOGOUT_UNKNOWN) {
            st = sb_rpc_fail(ctx, SB_UNAUTHENTICATED, BAD_REFRESH);
            goto out;
        }
        if (j.outcome == LOGOUT_NOT_OWNER) {
            sb_warn("user %s tried to log out a refresh token of another user", ctx->user_id);
            st = sb_rpc_fail(ctx, SB_PERMISSION_DENIED,
                             "the refresh token belongs to another user");
            goto out;
        }
        sb_info("logout of user %s: session %s revoked (%lld tokens newly revoked)", ctx->user_id,
                j.family, j.revoked);
    }

    long long ttl = claims.exp - now;
    if (ttl < 1)
        ttl = 1;
    redisReply *r = sb_redis_cmd(svc->redis, &err, "SET sb:deny:%s 1 EX %lld", claims.jti, ttl);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        sb_error("cannot put access token %s on the denylist: %s", claims.jti,
                 r ? r->str : err.buf);
        if (r)
            freeReplyObject(r);
        st = sb_rpc_fail(ctx, SB_UNAVAILABLE, "cannot revoke the access token now; try again");
        goto out;
    }
    freeReplyObject(r);
    sb_info("logout of user %s: access token %s denied for %llds", ctx->user_id, claims.jti, ttl);
    resp->revoked = true;
    st = SB_OK;
out:
    sb_buf_release(&err);
    return st;
}

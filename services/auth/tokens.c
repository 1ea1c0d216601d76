/* Login, Refresh and Logout.
 *
 * Access tokens are short-lived ES256 JWTs (sb/jwt.h) signed with the
 * platform's one private key, which only this service holds; every service
 * and the gateway verify them with the public keys (sb/authn.h); logout revokes the token's jti
 * for the rest of its lifetime (a row of `revocations` and its Redis denylist
 * entry sb:deny:<jti>, revocations.c).
 *
 * Refresh tokens are 32 random bytes, base64url, handed out once and stored
 * only as their SHA-256. Each use rotates: the presented token is marked used
 * and a successor joins the same family (one family per login). Presenting a
 * used or revoked token again means two parties hold it, so the whole family
 * is revoked (refresh-token reuse detection).
 *
 * Refresh and Logout are transaction rows (main.c): the runtime opens the
 * transaction at the first statement and commits when the handler returns
 * OK. A reuse's family revocation must survive its answer (a refusal), so
 * that handler commits first. Logout is one transaction: the refresh family,
 * the access token's revocation row and its Redis entry, all or nothing (a
 * logout that fails can be retried with the same, still valid, tokens). */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "sb/db.h"
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
    "auth_user_lock_by_token", "SELECT pg_advisory_xact_lock(hashtextextended(user_id::text, 1)) FROM "
                               "refresh_tokens WHERE token_hash = $1"};
static const sb_pg_stmt_t stmt_user_lock = {
    "auth_user_lock", "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 1))"};

/* On the caller's connection (member_events.c's inbox transaction). */
sb_status_t auth_lock_user(sb_pg_conn_t *c, const char *user_id, sb_buf_t *err)
{
    sb_arena_t *a = sb_arena_new();
    sb_db_t db = {.conn = c, .arena = a, .detail = err};
    sb_status_t st = sb_db_exec(&db, &stmt_user_lock, NULL, user_id);
    sb_arena_free(a);
    return st;
}

/* The columns of stmt_lock. */
enum { C_FAMILY, C_USER, C_ROLE, C_USED, C_REVOKED, C_EXPIRED };
static const sb_pg_stmt_t stmt_lock = {
    "auth_refresh_lock", "SELECT family_id::text, user_id::text, role,"
                         " used_at IS NOT NULL, revoked_at IS NOT NULL, expires_at <= now()"
                         " FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE"};

static const sb_pg_stmt_t stmt_mark_used = {
    "auth_refresh_mark_used", "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1"};

static const sb_pg_stmt_t stmt_revoke_family = {"auth_refresh_revoke_family",
                                                "UPDATE refresh_tokens SET revoked_at = now()"
                                                " WHERE family_id = $1::uuid AND revoked_at IS NULL"};

/* ---------------------------------------------------------------- material */

typedef struct refresh_token {
    char token[sodium_base64_ENCODED_LEN(REFRESH_TOKEN_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
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
static sb_status_t access_token_new(sb_rpc_ctx_t *ctx, const char *user_id, const char *role, char **out)
{
    const auth_config_t *cfg = auth_config_of(sb_service_of(ctx));
    sb_jwt_claims_t c;
    memset(&c, 0, sizeof c);
    if ((size_t)snprintf(c.sub, sizeof c.sub, "%s", user_id) >= sizeof c.sub ||
        (size_t)snprintf(c.role, sizeof c.role, "%s", role) >= sizeof c.role)
        return sb_rpc_error(ctx, SB_INTERNAL, "user id or role too long for a token");
    sb_uuid_v4(c.jti);
    c.iat_ms = sb_now_ms(); /* a password change revokes by issue time (ms) */
    c.iat = c.iat_ms / 1000;
    c.exp = c.iat + cfg->access_ttl_s;
    char *tok = NULL;
    sb_status_t st = sb_jwt_issue_es256(cfg->signer, &c, &tok, &ctx->detail);
    if (st != SB_OK)
        return st;
    *out = sb_arena_strdup(ctx->arena, tok);
    free(tok);
    return SB_OK;
}

static void fill_response(sb_rpc_ctx_t *ctx, Sb__Auth__TokenResponse *resp, char *access,
                          const char *refresh, const char *user_id, Sb__Common__Role role)
{
    resp->access_token = access;
    resp->refresh_token = sb_arena_strdup(ctx->arena, refresh);
    resp->token_type = "Bearer";
    resp->expires_in = (int32_t)auth_config_of(sb_service_of(ctx))->access_ttl_s;
    resp->user_id = sb_arena_strdup(ctx->arena, user_id);
    resp->role = role;
}

/* The presented refresh token's row (stmt_lock), locked in the call's
 * transaction: the user lock first, then the row's; its hash into hash. An
 * unknown token is refused. */
static sb_status_t lock_token(sb_rpc_ctx_t *ctx, const char *token, char hash[TOKEN_HASH_HEX],
                              PGresult **row)
{
    *row = NULL;
    if (strlen(token) > REFRESH_TOKEN_MAX)
        return sb_rpc_fail(ctx, SB_UNAUTHENTICATED, BAD_REFRESH);
    token_hash(token, hash);
    PGresult *r;
    sb_status_t st = sb_db_exec(ctx->db, &stmt_user_lock_by_token, NULL, hash);
    if (st != SB_OK || (st = sb_db_exec(ctx->db, &stmt_lock, &r, hash)) != SB_OK)
        return st;
    if (PQntuples(r) != 1)
        return sb_rpc_fail(ctx, SB_UNAUTHENTICATED, BAD_REFRESH);
    *row = r;
    return SB_OK;
}

static bool is_true(const PGresult *r, int col)
{
    return PQgetvalue(r, 0, col)[0] == 't';
}

/* ---------------------------------------------------------------- Login */

sb_status_t auth_login(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Auth__LoginRequest *req = in;
    const auth_config_t *cfg = auth_config_of(sb_service_of(ctx));

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
    sb_status_t st =
        sb_rpc_call(sb_channel_get(cfg->member_addr), &sb__member__member_service__descriptor,
                    "CheckCredentials", &creq.base, ctx->arena, (ProtobufCMessage **)&cred, &opts, &err);
    switch (st) {
    case SB_OK: break;
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
        st = sb_rpc_error(ctx, SB_INTERNAL, "member service failed to check credentials (%s): %s",
                          sb_status_name(st), err.buf);
        goto out;
    }

    const char *role = sb_role_name(cred->role);
    if (!role || !sb_valid_uuid(cred->user_id)) {
        st = sb_rpc_error(ctx, SB_INTERNAL, "member service answered an invalid user id or role");
        goto out;
    }
    char *access = NULL;
    if ((st = access_token_new(ctx, cred->user_id, role, &access)) != SB_OK)
        goto out;
    refresh_token_t rt;
    refresh_token_new(&rt);
    char family[SB_UUID_LEN + 1], ttl[24];
    sb_uuid_v4(family);
    snprintf(ttl, sizeof ttl, "%ld", cfg->refresh_ttl_s);
    if ((st = sb_db_exec(ctx->db, &stmt_insert, NULL, rt.hash, family, cred->user_id, role, ttl)) !=
        SB_OK)
        goto out_wipe;
    fill_response(ctx, out, access, rt.token, cred->user_id, cred->role);
    sb_info("user %s (%s) logged in: session %s", cred->user_id, role, family);
out_wipe:
    sodium_memzero(&rt, sizeof rt);
out:
    sb_buf_release(&err);
    return st;
}

/* ---------------------------------------------------------------- Refresh */

sb_status_t auth_refresh(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Auth__RefreshRequest *req = in;
    if (!req->refresh_token || !*req->refresh_token)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "refreshToken is required");
    char hash[TOKEN_HASH_HEX];
    PGresult *r, *rv;
    sb_status_t st = lock_token(ctx, req->refresh_token, hash, &r);
    if (st != SB_OK)
        return st;
    const char *family = PQgetvalue(r, 0, C_FAMILY), *user_id = PQgetvalue(r, 0, C_USER);
    const char *role = PQgetvalue(r, 0, C_ROLE);

    if (is_true(r, C_USED) || is_true(r, C_REVOKED)) {
        /* the revocation must survive the failing answer: committed first */
        if ((st = sb_db_exec(ctx->db, &stmt_revoke_family, &rv, family)) != SB_OK ||
            (st = sb_db_commit(ctx->db)) != SB_OK)
            return st;
        sb_warn("refresh token reuse detected for user %s (token already %s): session %s revoked"
                " (%ld tokens newly revoked)",
                user_id, is_true(r, C_USED) ? "rotated" : "revoked", family, sb_db_affected(rv));
        return sb_rpc_fail(ctx, SB_UNAUTHENTICATED, REUSED_REFRESH);
    }
    if (is_true(r, C_EXPIRED))
        return sb_rpc_fail(ctx, SB_UNAUTHENTICATED, EXPIRED_REFRESH);

    refresh_token_t next;
    refresh_token_new(&next);
    char *access = NULL;
    /* signed before COMMIT: if signing failed, the old token stays usable */
    if ((st = sb_db_exec(ctx->db, &stmt_mark_used, NULL, hash)) != SB_OK ||
        (st = sb_db_exec(ctx->db, &stmt_insert_successor, NULL, next.hash, hash)) != SB_OK ||
        (st = access_token_new(ctx, user_id, role, &access)) != SB_OK)
        goto out_wipe;
    fill_response(ctx, out, access, next.token, user_id, sb_role_parse(role));
    sb_info("session %s of user %s refreshed", family, user_id);
out_wipe:
    sodium_memzero(&next, sizeof next);
    return st;
}

/* ---------------------------------------------------------------- Logout */

/* Revokes the family of the caller's refresh token (in the call's
 * transaction). */
static sb_status_t revoke_session(sb_rpc_ctx_t *ctx, const char *refresh_token)
{
    char hash[TOKEN_HASH_HEX];
    PGresult *r, *rv;
    sb_status_t st = lock_token(ctx, refresh_token, hash, &r);
    if (st != SB_OK)
        return st;
    if (strcasecmp(PQgetvalue(r, 0, C_USER), ctx->user_id) != 0) {
        sb_warn("user %s tried to log out a refresh token of another user", ctx->user_id);
        return sb_rpc_fail(ctx, SB_PERMISSION_DENIED, "the refresh token belongs to another user");
    }
    if ((st = sb_db_exec(ctx->db, &stmt_revoke_family, &rv, PQgetvalue(r, 0, C_FAMILY))) != SB_OK)
        return st;
    sb_info("logout of user %s: session %s revoked (%ld tokens newly revoked)", ctx->user_id,
            PQgetvalue(r, 0, C_FAMILY), sb_db_affected(rv));
    return SB_OK;
}

sb_status_t auth_logout(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Auth__LogoutRequest *req = in;
    Sb__Auth__LogoutResponse *resp = out;
    sb_service_t *svc = sb_service_of(ctx);
    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st;

    /* the policy admits signed-in callers only: ctx->token verified */
    int64_t now = sb_now_ms() / 1000;
    sb_jwt_claims_t claims;
    const char *access = req->access_token && *req->access_token ? req->access_token : ctx->token;
    if ((st = sb_authn_verify(svc->authn, access, &claims, &err)) != SB_OK) {
        st = sb_rpc_fail(ctx, st == SB_UNAVAILABLE ? st : SB_UNAUTHENTICATED, "access token: %s",
                         err.buf);
        goto out;
    }
    if (strcasecmp(claims.sub, ctx->user_id) != 0) {
        st = sb_rpc_fail(ctx, SB_PERMISSION_DENIED, "the access token is not the caller's");
        goto out;
    }

    if (req->refresh_token && *req->refresh_token &&
        (st = revoke_session(ctx, req->refresh_token)) != SB_OK)
        goto out;
    /* the revocation row, and its Redis entry before COMMIT (revocations.c) */
    if ((st = auth_revoke_token(ctx->db, svc->redis, claims.jti, claims.exp)) != SB_OK) {
        if (st == SB_UNAVAILABLE) {
            sb_error("cannot revoke access token %s: %s", claims.jti, ctx->detail.buf);
            st = sb_rpc_fail(ctx, SB_UNAVAILABLE, "cannot revoke the access token now; try again");
        }
        goto out;
    }
    sb_info("logout of user %s: access token %s revoked until %lld (%llds)", ctx->user_id, claims.jti,
            (long long)claims.exp, (long long)(claims.exp - now));
    resp->revoked = true;
    st = SB_OK;
out:
    sb_buf_release(&err);
    return st;
}

/* The auth service end to end: the real sb-member and sb-auth binaries as
 * child processes against the real PostgreSQL, Redis and Kafka, driven over
 * gRPC. Covers login (and the identical answer for a wrong password and an
 * unknown login id), refresh rotation with reuse detection revoking the whole
 * family, logout (denylist + refresh family), Authorize against the gateway's
 * route table (tampered, alg none, HS256 keyed with the public key and
 * expired tokens refused), and the member events that end sessions.
 *
 * Identities come from the tests' PKI (sb_test_pki.h): each child has its
 * own certificate, auth the signing key; the access tokens auth issues are
 * checked against the platform's public keys, and the test mints its own
 * (sb_test_token) to call as a given user.
 *
 * The children are started once for the whole run by a report hook in the
 * runner process (Criterion runs every test in a fresh process that does not
 * inherit the runner's globals, only its environment), and stopped with
 * SIGTERM after the last test (sb_test_proc.h). Binaries:
 * $SB_BIN_DIR/services/<name>/sb-<name>, by default ../services/... relative
 * to ctest's working directory build/tests. They run in the tests' namespace
 * (database sb_auth_test under ctest). */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <jwt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.pb-c.h"
#include "events.pb-c.h"
#include "member.pb-c.h"
#include "sb/jwt.h"
#include "sb/log.h"
#include "sb/redis.h"
#include "sb/rpc.h"
#include "sb/util.h"
#include "sb/valid.h"
#include "sb_test_env.h"
#include "sb_test_pki.h"
#include "sb_test_proc.h"

#define MEMBER_ADDR "127.0.0.1:21061"
#define AUTH_ADDR "127.0.0.1:21062"
/* A second auth instance whose member service is unreachable. (Its Redis is
 * the real one: it joins the sb-auth consumer group like any replica, and a
 * replica without Redis would dead-letter member.withdrawn events.) */
#define BROKEN_ADDR "127.0.0.1:21069"
#define PASSWORD "correct-horse-battery"
#define BAD_LOGIN "invalid login id or password"
#define REUSED "refresh token reuse detected: session revoked"

/* Handed from the runner to the test processes through the environment. */
#define ENV_READY "SB_AUTH_TEST_READY" /* "1" or why not */
#define ENV_ADMIN "SB_AUTH_TEST_ADMIN" /* the bootstrap admin's login id */

/* ================================================================ children */

static pid_t member_pid, auth_pid, broken_pid;

static const char *redis_url(void)
{
    return sb_cfg_str("REDIS_URL", "redis://127.0.0.1:6379");
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    char admin[48], id[SB_UUID_LEN + 1];
    sb_uuid_v4(id);
    snprintf(admin, sizeof admin, "authtest-admin-%.8s", id);
    setenv(ENV_ADMIN, admin, 1);

    /* certificates and keys: sb_test_spawn (sb_test_pki_child_env) */
    char db[1024], redis[1024], brokers[1024], admin_login[96], log_level[64];
    snprintf(db, sizeof db, "DATABASE_URL=%s", test_db_url());
    snprintf(redis, sizeof redis, "REDIS_URL=%s", redis_url());
    snprintf(brokers, sizeof brokers, "KAFKA_BROKERS=%s", test_brokers());
    snprintf(admin_login, sizeof admin_login, "BOOTSTRAP_ADMIN_LOGIN=%s", admin);
    snprintf(log_level, sizeof log_level, "LOG_LEVEL=%s", sb_cfg_str("SB_TEST_LOG_LEVEL", "warn"));
    const char *member_env[] = {db,
                                redis,
                                brokers,
                                admin_login,
                                log_level,
                                "BOOTSTRAP_ADMIN_PASSWORD=" PASSWORD,
                                "GRPC_PORT=21061",
                                "ADMIN_PORT=9211",
                                NULL};
    /* login attempts are limited per client address (LOGIN_RATE_LIMIT), and
     * every test here logs in from 127.0.0.1: limited_auth tests the limit */
    const char *auth_env[] = {db,
                              redis,
                              brokers,
                              log_level,
                              "LOGIN_RATE_LIMIT=1000000",
                              "GRPC_PORT=21062",
                              "ADMIN_PORT=9212",
                              "MEMBER_ADDR=" MEMBER_ADDR,
                              NULL};
    const char *broken_env[] = {db,
                                redis,
                                brokers,
                                log_level,
                                "LOGIN_RATE_LIMIT=1000000",
                                "GRPC_PORT=21069",
                                "ADMIN_PORT=9219",
                                "MEMBER_ADDR=127.0.0.1:1",
                                NULL};
    member_pid = sb_test_spawn("member", member_env, NULL);
    auth_pid = sb_test_spawn("auth", auth_env, NULL);
    broken_pid = sb_test_spawn("auth", broken_env, NULL);
    /* all three ready (admin /readyz: gRPC up, database and Redis answer)
     * within 90 s */
    const sb_test_child_t kids[] = {{member_pid, 9211, "sb-member"},
                                    {auth_pid, 9212, "sb-auth"},
                                    {broken_pid, 9219, "sb-auth (broken)"}};
    sb_test_await_ready(ENV_READY, kids, sizeof kids / sizeof kids[0], 90 * 1000);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    sb_test_stop(broken_pid, "sb-auth (broken)", 20000);
    sb_test_stop(auth_pid, "sb-auth", 20000);
    sb_test_stop(member_pid, "sb-member", 20000);
}

/* ================================================================ per test */

static sb_jwt_keyset_t *pubkeys; /* the platform's public keys (JWT_PUBLIC_KEYS_DIR) */
static sb_arena_t *arena;
static sb_redis_t *redis;

static void setup(void)
{
    sb_log_init("test-auth");
    sb_log_set_level(SB_LOG_WARN);
    const char *not_ready = sb_test_not_ready(ENV_READY);
    cr_assert(!not_ready, "services not running: %s", not_ready);
    arena = sb_arena_new();
    sb_buf_t err = SB_BUF_INIT;
    pubkeys = sb_jwt_keyset_from_env(&err);
    cr_assert_not_null(pubkeys, "%s", err.buf);
    redis = sb_redis_new(redis_url(), &err);
    cr_assert_not_null(redis, "%s", err.buf);
    sb_buf_release(&err);
}

static void teardown(void)
{
    sb_channels_free_all();
    sb_redis_free(redis);
    sb_jwt_keyset_free(pubkeys);
    sb_arena_free(arena);
}

TestSuite(auth, .init = setup, .fini = teardown, .timeout = 120);

/* ---- calls ---- */

static sb_status_t call(const char *addr, const ProtobufCServiceDescriptor *d, const char *method,
                        const ProtobufCMessage *req, void *resp, const sb_call_opts_t *o, sb_buf_t *err)
{
    sb_buf_reset(err);
    return sb_rpc_call(sb_channel_get(addr), d, method, req, arena, (ProtobufCMessage **)resp, o, err);
}

#define AUTH(method, req, resp, opts, err)                                                              \
    call(AUTH_ADDR, &sb__auth__auth_service__descriptor, method, &(req)->base, resp, opts, err)

/* A fresh member of `role`; login id and user id into the arena. */
static void signup(Sb__Common__Role role, char **login_id, char **user_id)
{
    char id[SB_UUID_LEN + 1];
    sb_uuid_v4(id);
    Sb__Member__SignupRequest req = SB__MEMBER__SIGNUP_REQUEST__INIT;
    req.login_id = sb_arena_printf(arena, "authtest-%.8s%.4s", id, id + 9);
    req.password = PASSWORD;
    req.name = "Auth Tester";
    req.email = sb_arena_printf(arena, "%s@example.com", req.login_id);
    req.phone = "010-1234-5678";
    req.role = role;
    Sb__Member__Member *m = NULL;
    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st =
        call(MEMBER_ADDR, &sb__member__member_service__descriptor, "Signup", &req.base, &m, NULL, &err);
    cr_assert_eq(st, SB_OK, "Signup: %s %s", sb_status_name(st), err.buf);
    cr_assert(m->user_id && *m->user_id);
    *login_id = req.login_id;
    *user_id = m->user_id;
    sb_buf_release(&err);
}

static Sb__Auth__TokenResponse *login_ok(const char *login_id, const char *password)
{
    Sb__Auth__LoginRequest req = SB__AUTH__LOGIN_REQUEST__INIT;
    req.login_id = (char *)login_id;
    req.password = (char *)password;
    Sb__Auth__TokenResponse *resp = NULL;
    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st = AUTH("Login", &req, &resp, NULL, &err);
    cr_assert_eq(st, SB_OK, "Login %s: %s %s", login_id, sb_status_name(st), err.buf);
    sb_buf_release(&err);
    return resp;
}

static Sb__Auth__TokenResponse *new_session(Sb__Common__Role role, char **user_id)
{
    char *login_id;
    signup(role, &login_id, user_id);
    return login_ok(login_id, PASSWORD);
}

static sb_status_t refresh(const char *token, Sb__Auth__TokenResponse **resp, sb_buf_t *err)
{
    Sb__Auth__RefreshRequest req = SB__AUTH__REFRESH_REQUEST__INIT;
    req.refresh_token = (char *)token;
    *resp = NULL;
    return AUTH("Refresh", &req, resp, NULL, err);
}

static sb_status_t authorize(const char *token, const char *action, Sb__Auth__AuthorizeResponse **resp,
                             sb_buf_t *err)
{
    Sb__Auth__AuthorizeRequest req = SB__AUTH__AUTHORIZE_REQUEST__INIT;
    req.token = (char *)token;
    req.action = (char *)action;
    *resp = NULL;
    return AUTH("Authorize", &req, resp, NULL, err);
}

static long long redis_int(const char *fmt, const char *arg)
{
    sb_buf_t err = SB_BUF_INIT;
    redisReply *r = sb_redis_cmd(redis, &err, fmt, arg);
    cr_assert_not_null(r, "redis: %s", err.buf);
    cr_assert_eq(r->type, REDIS_REPLY_INTEGER, "redis reply type %d", r->type);
    long long v = r->integer;
    freeReplyObject(r);
    sb_buf_release(&err);
    return v;
}

/* A string value from Redis into the arena; NULL when the key is missing. */
static char *redis_str(const char *fmt, const char *arg)
{
    sb_buf_t err = SB_BUF_INIT;
    redisReply *r = sb_redis_cmd(redis, &err, fmt, arg);
    cr_assert_not_null(r, "redis: %s", err.buf);
    cr_assert(r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL, "redis reply type %d",
              r->type);
    char *v = r->type == REDIS_REPLY_STRING ? sb_arena_strdup(arena, r->str) : NULL;
    freeReplyObject(r);
    sb_buf_release(&err);
    return v;
}

/* One integer from the auth service's own database. */
static long long db_count(const char *sql, const char *param)
{
    char name[64];
    const char *keys[] = {"dbname", "dbname", NULL};
    const char *vals[] = {test_db_url(), sb_test_db("auth", name, sizeof name), NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    const char *p[] = {param};
    PGresult *r = PQexecParams(c, sql, 1, NULL, p, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    long long v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return v;
}

/* Live (not used, not revoked) refresh tokens of a user. */
static long long live_tokens(const char *user_id)
{
    return db_count("SELECT count(*) FROM refresh_tokens WHERE user_id = $1::uuid"
                    " AND used_at IS NULL AND revoked_at IS NULL",
                    user_id);
}

static void verify_ok(const char *token, sb_jwt_claims_t *c)
{
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(sb_jwt_verify_es256(pubkeys, token, sb_now_ms() / 1000, c, &err), SB_OK, "%s", err.buf);
    sb_buf_release(&err);
}

/* ================================================================ tests */

Test(auth, login_returns_a_verifiable_access_token_and_a_hashed_refresh_token)
{
    char *login_id, *user_id;
    signup(SB__COMMON__ROLE__PLANNER, &login_id, &user_id);
    Sb__Auth__TokenResponse *t = login_ok(login_id, PASSWORD);

    cr_assert_str_eq(t->token_type, "Bearer");
    cr_assert_eq(t->expires_in, 900);
    cr_assert_str_eq(t->user_id, user_id);
    cr_assert_eq(t->role, SB__COMMON__ROLE__PLANNER);
    sb_jwt_claims_t c;
    verify_ok(t->access_token, &c);
    cr_assert_str_eq(c.sub, user_id);
    cr_assert_str_eq(c.role, "PLANNER");
    cr_assert_eq(strlen(c.jti), SB_UUID_LEN);
    cr_assert_eq(c.exp - c.iat, 900);

    /* 32 random bytes, base64url without padding; stored only as SHA-256 */
    cr_assert_eq(strlen(t->refresh_token), 43, "refresh token %s", t->refresh_token);
    cr_assert_eq(
        strspn(t->refresh_token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        43);
    cr_assert_eq(db_count("SELECT count(*) FROM refresh_tokens WHERE token_hash = $1", t->refresh_token),
                 0);
    cr_assert_eq(db_count("SELECT count(*) FROM refresh_tokens WHERE token_hash ="
                          " encode(sha256($1::bytea), 'hex')"
                          " AND used_at IS NULL AND revoked_at IS NULL",
                          t->refresh_token),
                 1);

    /* a second login is a second session: another family */
    Sb__Auth__TokenResponse *t2 = login_ok(login_id, PASSWORD);
    cr_assert_str_neq(t2->refresh_token, t->refresh_token);
    cr_assert_eq(db_count("SELECT count(DISTINCT family_id) FROM refresh_tokens"
                          " WHERE user_id = $1::uuid",
                          user_id),
                 2);
}

Test(auth, bootstrap_admin_logs_in_as_admin)
{
    Sb__Auth__TokenResponse *t = login_ok(getenv(ENV_ADMIN), PASSWORD);
    cr_assert_eq(t->role, SB__COMMON__ROLE__ADMIN);
    sb_jwt_claims_t c;
    verify_ok(t->access_token, &c);
    cr_assert_str_eq(c.role, "ADMIN");
}

Test(auth, wrong_password_and_unknown_login_id_get_the_same_answer)
{
    char *login_id, *user_id;
    signup(SB__COMMON__ROLE__USER, &login_id, &user_id);
    sb_buf_t e1 = SB_BUF_INIT, e2 = SB_BUF_INIT;
    Sb__Auth__TokenResponse *resp;

    Sb__Auth__LoginRequest req = SB__AUTH__LOGIN_REQUEST__INIT;
    req.login_id = login_id;
    req.password = "wrong-password-1";
    cr_assert_eq(AUTH("Login", &req, &resp, NULL, &e1), SB_UNAUTHENTICATED, "%s", e1.buf);
    req.login_id = "authtest-nobody-by-this-name";
    req.password = PASSWORD;
    cr_assert_eq(AUTH("Login", &req, &resp, NULL, &e2), SB_UNAUTHENTICATED, "%s", e2.buf);
    cr_assert_str_eq(e1.buf, e2.buf);
    cr_assert_str_eq(e1.buf, BAD_LOGIN);

    req.login_id = login_id;
    req.password = "";
    cr_assert_eq(AUTH("Login", &req, &resp, NULL, &e1), SB_INVALID_ARGUMENT, "%s", e1.buf);
    req.login_id = "";
    req.password = PASSWORD;
    cr_assert_eq(AUTH("Login", &req, &resp, NULL, &e1), SB_INVALID_ARGUMENT, "%s", e1.buf);
    sb_buf_release(&e1);
    sb_buf_release(&e2);
}

Test(auth, refresh_rotates_and_reuse_revokes_the_whole_family)
{
    char *user_id;
    Sb__Auth__TokenResponse *t1 = new_session(SB__COMMON__ROLE__USER, &user_id);
    sb_buf_t err = SB_BUF_INIT;

    Sb__Auth__TokenResponse *t2;
    cr_assert_eq(refresh(t1->refresh_token, &t2, &err), SB_OK, "%s", err.buf);
    cr_assert_str_neq(t2->refresh_token, t1->refresh_token);
    cr_assert_str_neq(t2->access_token, t1->access_token);
    cr_assert_str_eq(t2->user_id, user_id);
    cr_assert_eq(t2->role, SB__COMMON__ROLE__USER);
    cr_assert_str_eq(t2->token_type, "Bearer");
    sb_jwt_claims_t c1, c2;
    verify_ok(t1->access_token, &c1);
    verify_ok(t2->access_token, &c2);
    cr_assert_str_eq(c2.sub, user_id);
    cr_assert_str_neq(c2.jti, c1.jti);
    cr_assert_eq(live_tokens(user_id), 1);

    /* the spent token again: reuse -> the family is revoked, successor included */
    Sb__Auth__TokenResponse *t3;
    cr_assert_eq(refresh(t1->refresh_token, &t3, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, REUSED);
    cr_assert_eq(live_tokens(user_id), 0, "the revocation must be committed");
    cr_assert_eq(refresh(t2->refresh_token, &t3, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, REUSED);

    /* unknown, empty */
    cr_assert_eq(refresh("bm90LWEtcmVhbC10b2tlbi1ub3QtYS1yZWFsLXRva2Vu", &t3, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, "invalid refresh token");
    cr_assert_eq(refresh("", &t3, &err), SB_INVALID_ARGUMENT);
    sb_buf_release(&err);
}

Test(auth, reuse_revokes_only_its_own_session)
{
    char *login_id, *user_id;
    signup(SB__COMMON__ROLE__USER, &login_id, &user_id);
    Sb__Auth__TokenResponse *a = login_ok(login_id, PASSWORD);
    Sb__Auth__TokenResponse *b = login_ok(login_id, PASSWORD);
    sb_buf_t err = SB_BUF_INIT;
    Sb__Auth__TokenResponse *a2, *x;
    cr_assert_eq(refresh(a->refresh_token, &a2, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(refresh(a->refresh_token, &x, &err), SB_UNAUTHENTICATED);
    cr_assert_eq(refresh(b->refresh_token, &x, &err), SB_OK, "other session: %s", err.buf);
    sb_buf_release(&err);
}

Test(auth, logout_denylists_the_access_token_and_revokes_the_refresh_family)
{
    char *user_id;
    Sb__Auth__TokenResponse *t = new_session(SB__COMMON__ROLE__USER, &user_id);
    sb_jwt_claims_t c;
    verify_ok(t->access_token, &c);
    sb_buf_t err = SB_BUF_INIT;

    Sb__Auth__LogoutRequest req = SB__AUTH__LOGOUT_REQUEST__INIT;
    req.refresh_token = t->refresh_token;
    req.access_token = t->access_token;
    Sb__Auth__LogoutResponse *resp = NULL;
    /* anonymous caller */
    cr_assert_eq(AUTH("Logout", &req, &resp, NULL, &err), SB_UNAUTHENTICATED, "%s", err.buf);
    /* someone else's refresh token */
    char *other_id;
    Sb__Auth__TokenResponse *other = new_session(SB__COMMON__ROLE__USER, &other_id);
    req.refresh_token = other->refresh_token;
    sb_call_opts_t me = {.token = sb_test_token(arena, user_id, "USER")};
    cr_assert_eq(AUTH("Logout", &req, &resp, &me, &err), SB_PERMISSION_DENIED, "%s", err.buf);
    cr_assert_eq(redis_int("EXISTS sb:deny:%s", c.jti), 0, "nothing revoked on a refused logout");
    cr_assert_eq(db_count("SELECT count(*) FROM revocations WHERE subject = $1", c.jti), 0);
    cr_assert_eq(live_tokens(other_id), 1);

    req.refresh_token = t->refresh_token;
    cr_assert_eq(AUTH("Logout", &req, &resp, &me, &err), SB_OK, "%s", err.buf);
    cr_assert(resp->revoked);
    cr_assert_eq(redis_int("EXISTS sb:deny:%s", c.jti), 1);
    long long ttl = redis_int("TTL sb:deny:%s", c.jti);
    cr_assert(ttl >= 1 && ttl <= 900, "ttl %lld", ttl);
    cr_assert_eq(live_tokens(user_id), 0);
    /* the durable row behind the Redis entry, expiring with the token */
    cr_assert_eq(
        db_count("SELECT coalesce((SELECT extract(epoch FROM expires_at)::bigint FROM revocations"
                 " WHERE kind = 'token' AND subject = $1 AND reason = 'logout'), 0)",
                 c.jti),
        c.exp);

    /* afterwards both tokens are refused */
    Sb__Auth__TokenResponse *x;
    cr_assert_eq(refresh(t->refresh_token, &x, &err), SB_UNAUTHENTICATED);
    Sb__Auth__AuthorizeResponse *az;
    cr_assert_eq(authorize(t->access_token, "GET /notifications", &az, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, "token revoked");
    sb_buf_release(&err);
}

Test(auth, authorize_follows_the_route_table)
{
    char *user_id;
    Sb__Auth__TokenResponse *t = new_session(SB__COMMON__ROLE__USER, &user_id);
    sb_buf_t err = SB_BUF_INIT;
    Sb__Auth__AuthorizeResponse *r;

    char *action = sb_arena_printf(arena, "GET /members/%s", user_id);
    cr_assert_eq(authorize(t->access_token, action, &r, &err), SB_OK, "%s", err.buf);
    cr_assert(r->allowed, "%s", r->reason);
    cr_assert_str_eq(r->principal, user_id);
    cr_assert_eq(r->role, SB__COMMON__ROLE__USER);

    cr_assert_eq(authorize(t->access_token, "POST /performances/abc/approve", &r, &err), SB_OK, "%s",
                 err.buf);
    cr_assert_not(r->allowed);
    cr_assert(strstr(r->reason, "USER"), "%s", r->reason);

    cr_assert_eq(authorize(t->access_token, "GET /performances?plannerId=x", &r, &err), SB_OK, "%s",
                 err.buf);
    cr_assert(r->allowed, "public: %s", r->reason);

    cr_assert_eq(authorize(t->access_token, "GET /no/such/thing", &r, &err), SB_OK, "%s", err.buf);
    cr_assert_not(r->allowed);
    cr_assert_str_eq(r->reason, "no such action");

    cr_assert_eq(authorize(t->access_token, "members/1", &r, &err), SB_INVALID_ARGUMENT);
    cr_assert_eq(authorize(t->access_token, "GET members/1", &r, &err), SB_INVALID_ARGUMENT);
    cr_assert_eq(authorize(t->access_token, "", &r, &err), SB_INVALID_ARGUMENT);

    /* an admin may approve */
    Sb__Auth__TokenResponse *adm = login_ok(getenv(ENV_ADMIN), PASSWORD);
    cr_assert_eq(authorize(adm->access_token, "POST /performances/abc/approve", &r, &err), SB_OK, "%s",
                 err.buf);
    cr_assert(r->allowed, "%s", r->reason);
    cr_assert_eq(r->role, SB__COMMON__ROLE__ADMIN);
    sb_buf_release(&err);
}

Test(auth, authorize_refuses_tampered_unsigned_and_expired_tokens)
{
    char *user_id;
    Sb__Auth__TokenResponse *t = new_session(SB__COMMON__ROLE__USER, &user_id);
    sb_buf_t err = SB_BUF_INIT;
    Sb__Auth__AuthorizeResponse *r;
    int64_t now = sb_now_ms() / 1000;

    /* tampered signature */
    char *bad = sb_arena_strdup(arena, t->access_token);
    size_t n = strlen(bad);
    bad[n - 10] = bad[n - 10] == 'A' ? 'B' : 'A';
    cr_assert_eq(authorize(bad, "GET /notifications", &r, &err), SB_UNAUTHENTICATED);

    /* tampered payload: a USER token re-signed by nobody, claiming ADMIN */
    const char *kid = sb_test_token_kid();
    jwt_t *j;
    jwt_new(&j);
    jwt_add_header(j, "kid", kid);
    jwt_add_grant(j, "iss", SB_JWT_ISSUER);
    jwt_add_grant(j, "aud", SB_JWT_AUDIENCE);
    jwt_add_grant(j, "sub", user_id);
    jwt_add_grant(j, "role", "ADMIN");
    jwt_add_grant(j, "jti", "forged");
    jwt_add_grant_int(j, "iat", (long)now);
    jwt_add_grant_int(j, "exp", (long)now + 900);
    jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)"another-secret-another-secret-xx", 32);
    char *forged = jwt_encode_str(j);
    jwt_free(j);
    cr_assert_eq(authorize(forged, "GET /notifications", &r, &err), SB_UNAUTHENTICATED);
    free(forged);

    /* HS256 keyed with the platform's public key (PEM), which anyone has:
     * key confusion */
    char pub_path[1024];
    snprintf(pub_path, sizeof pub_path, "%s/jwt/%s.pub.pem", sb_test_pki_dir(), kid);
    FILE *f = fopen(pub_path, "r");
    cr_assert_not_null(f, "%s", pub_path);
    unsigned char pub[1024];
    size_t pub_len = fread(pub, 1, sizeof pub, f);
    fclose(f);
    cr_assert_gt(pub_len, 0);
    jwt_new(&j);
    jwt_add_header(j, "kid", kid);
    jwt_add_grant(j, "iss", SB_JWT_ISSUER);
    jwt_add_grant(j, "aud", SB_JWT_AUDIENCE);
    jwt_add_grant(j, "sub", user_id);
    jwt_add_grant(j, "role", "ADMIN");
    jwt_add_grant(j, "jti", "confused");
    jwt_add_grant_int(j, "iat", (long)now);
    jwt_add_grant_int(j, "exp", (long)now + 900);
    jwt_set_alg(j, JWT_ALG_HS256, pub, (int)pub_len);
    char *confused = jwt_encode_str(j);
    jwt_free(j);
    cr_assert_not_null(confused);
    cr_assert_eq(authorize(confused, "GET /notifications", &r, &err), SB_UNAUTHENTICATED);
    free(confused);

    /* alg none */
    jwt_new(&j);
    jwt_add_header(j, "kid", kid);
    jwt_add_grant(j, "iss", SB_JWT_ISSUER);
    jwt_add_grant(j, "aud", SB_JWT_AUDIENCE);
    jwt_add_grant(j, "sub", user_id);
    jwt_add_grant(j, "role", "ADMIN");
    jwt_add_grant(j, "jti", "none");
    jwt_add_grant_int(j, "iat", (long)now);
    jwt_add_grant_int(j, "exp", (long)now + 900);
    jwt_set_alg(j, JWT_ALG_NONE, NULL, 0);
    char *unsigned_tok = jwt_encode_str(j);
    jwt_free(j);
    cr_assert_eq(authorize(unsigned_tok, "GET /notifications", &r, &err), SB_UNAUTHENTICATED);
    free(unsigned_tok);

    /* expired, signed with the platform's key */
    sb_jwt_claims_t c = {.iat = now - 1000, .exp = now - 100};
    snprintf(c.sub, sizeof c.sub, "%s", user_id);
    snprintf(c.role, sizeof c.role, "USER");
    sb_uuid_v4(c.jti);
    char *expired = sb_test_token_claims(arena, &c);
    cr_assert_eq(authorize(expired, "GET /notifications", &r, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, "token expired");

    /* and the same claims, unexpired, are fine: the key is the platform's */
    c.iat = now;
    c.exp = now + 60;
    char *fresh = sb_test_token_claims(arena, &c);
    cr_assert_eq(authorize(fresh, "GET /notifications", &r, &err), SB_OK, "%s", err.buf);
    cr_assert(r->allowed);

    cr_assert_eq(authorize("", "GET /notifications", &r, &err), SB_UNAUTHENTICATED);
    sb_buf_release(&err);
}

static sb_status_t deliver(const char *event_id, const char *type, const char *user_id,
                           const ProtobufCMessage *payload, const char *role,
                           Sb__Events__DeliverEventResponse **resp, sb_buf_t *err)
{
    Sb__Events__DeliverEventRequest req = SB__EVENTS__DELIVER_EVENT_REQUEST__INIT;
    req.service_id = "auth";
    req.event_id = (char *)event_id;
    req.type = (char *)type;
    req.aggregate_id = (char *)user_id;
    req.reason = "integration test";
    req.payload.len = protobuf_c_message_get_packed_size(payload);
    req.payload.data = sb_arena_alloc(arena, req.payload.len + 1);
    protobuf_c_message_pack(payload, req.payload.data);
    sb_call_opts_t o = {.token = sb_test_token(arena, "authtest-operator", role)};
    *resp = NULL;
    return AUTH("DeliverEvent", &req, resp, &o, err);
}

Test(auth, member_withdrawn_ends_every_session_of_the_member)
{
    char *login_id, *user_id;
    signup(SB__COMMON__ROLE__USER, &login_id, &user_id);
    Sb__Auth__TokenResponse *a = login_ok(login_id, PASSWORD);
    Sb__Auth__TokenResponse *b = login_ok(login_id, PASSWORD);
    cr_assert_eq(live_tokens(user_id), 2);
    sb_buf_t err = SB_BUF_INIT;

    Sb__Events__MemberWithdrawn ev = SB__EVENTS__MEMBER_WITHDRAWN__INIT;
    ev.user_id = user_id;
    ev.withdrawn_at = "2026-11-24T09:00:00.000Z";
    ev.withdrawn_by = user_id;
    char event_id[SB_UUID_LEN + 1];
    sb_uuid_v4(event_id);
    Sb__Events__DeliverEventResponse *resp;

    /* only an admin may deliver */
    cr_assert_eq(deliver(event_id, "member.withdrawn", user_id, &ev.base, "USER", &resp, &err),
                 SB_PERMISSION_DENIED, "%s", err.buf);
    cr_assert_eq(live_tokens(user_id), 2);

    cr_assert_eq(deliver(event_id, "member.withdrawn", user_id, &ev.base, "ADMIN", &resp, &err), SB_OK,
                 "%s", err.buf);
    cr_assert_not(resp->duplicate);
    cr_assert_eq(live_tokens(user_id), 0);
    cr_assert_str_eq(redis_str("GET sb:deny-user:%s", user_id), "all");
    long long ttl = redis_int("TTL sb:deny-user:%s", user_id);
    cr_assert(ttl >= 1 && ttl <= 900, "ttl %lld", ttl);
    cr_assert_eq(db_count("SELECT count(*) FROM revocations WHERE kind = 'user' AND subject = $1"
                          " AND issued_before IS NULL AND reason = 'withdrawal'",
                          user_id),
                 1);

    Sb__Auth__TokenResponse *x;
    cr_assert_eq(refresh(a->refresh_token, &x, &err), SB_UNAUTHENTICATED);
    cr_assert_eq(refresh(b->refresh_token, &x, &err), SB_UNAUTHENTICATED);
    Sb__Auth__AuthorizeResponse *r;
    cr_assert_eq(authorize(a->access_token, "GET /notifications", &r, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, "token revoked");

    /* the same event again is dropped by the inbox */
    cr_assert_eq(deliver(event_id, "member.withdrawn", user_id, &ev.base, "ADMIN", &resp, &err), SB_OK,
                 "%s", err.buf);
    cr_assert(resp->duplicate);
    sb_buf_release(&err);
}

Test(auth, password_change_revokes_refresh_tokens_and_unknown_events_are_ignored)
{
    char *user_id;
    Sb__Auth__TokenResponse *t = new_session(SB__COMMON__ROLE__USER, &user_id);
    sb_buf_t err = SB_BUF_INIT;
    Sb__Events__DeliverEventResponse *resp;
    char event_id[SB_UUID_LEN + 1];

    /* an event type auth does not handle: accepted, no effect (a platform
     * type; one the platform does not know is a dead letter, see below) */
    Sb__Events__ReservationExpired other = SB__EVENTS__RESERVATION_EXPIRED__INIT;
    other.user_id = user_id;
    sb_uuid_v4(event_id);
    cr_assert_eq(deliver(event_id, "reservation.expired", user_id, &other.base, "ADMIN", &resp, &err),
                 SB_OK, "%s", err.buf);
    cr_assert_not(resp->duplicate);
    cr_assert_eq(live_tokens(user_id), 1);

    /* a change longer ago than an access token lives: the refresh tokens
     * go, and no access token is left to refuse */
    Sb__Events__MemberPasswordChanged ev = SB__EVENTS__MEMBER_PASSWORD_CHANGED__INIT;
    ev.user_id = user_id;
    ev.changed_at = "2026-11-24T09:00:00.000Z";
    sb_uuid_v4(event_id);
    cr_assert_eq(deliver(event_id, "member.password_changed", user_id, &ev.base, "ADMIN", &resp, &err),
                 SB_OK, "%s", err.buf);
    cr_assert_eq(live_tokens(user_id), 0);
    Sb__Auth__TokenResponse *x;
    cr_assert_eq(refresh(t->refresh_token, &x, &err), SB_UNAUTHENTICATED);
    cr_assert_eq(redis_int("EXISTS sb:deny-user:%s", user_id), 0);

    /* a change now: the access tokens issued before it are refused, a login
     * right after it (with the new password) is not */
    Sb__Auth__AuthorizeResponse *az;
    cr_assert_eq(authorize(t->access_token, "GET /notifications", &az, &err), SB_OK, "%s", err.buf);
    char now[32];
    sb_time_rfc3339(sb_now_ms(), now);
    ev.changed_at = now;
    sb_uuid_v4(event_id);
    cr_assert_eq(deliver(event_id, "member.password_changed", user_id, &ev.base, "ADMIN", &resp, &err),
                 SB_OK, "%s", err.buf);
    int64_t cutoff;
    cr_assert(sb_parse_rfc3339(now, &cutoff));
    char *v = redis_str("GET sb:deny-user:%s", user_id);
    cr_assert_not_null(v);
    cr_assert_eq(atoll(v), cutoff, "entry %s, change at %s", v, now);
    cr_assert_eq(db_count("SELECT count(*) FROM revocations WHERE kind = 'user' AND subject = $1"
                          " AND reason = 'password_change' AND issued_before IS NOT NULL",
                          user_id),
                 1);
    cr_assert_eq(authorize(t->access_token, "GET /notifications", &az, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, "token revoked");
    sb_jwt_claims_t after = {.iat = cutoff / 1000, .iat_ms = cutoff, .exp = cutoff / 1000 + 600};
    snprintf(after.sub, sizeof after.sub, "%s", user_id);
    snprintf(after.role, sizeof after.role, "USER");
    sb_uuid_v4(after.jti);
    cr_assert_eq(authorize(sb_test_token_claims(arena, &after), "GET /notifications", &az, &err), SB_OK,
                 "a token issued at the change's millisecond: %s", err.buf);
    after.iat_ms = cutoff - 1;
    after.iat = after.iat_ms / 1000;
    sb_uuid_v4(after.jti);
    cr_assert_eq(authorize(sb_test_token_claims(arena, &after), "GET /notifications", &az, &err),
                 SB_UNAUTHENTICATED, "a token issued 1 ms before the change");

    /* an event without a user id is refused, not retried */
    Sb__Events__MemberPasswordChanged empty = SB__EVENTS__MEMBER_PASSWORD_CHANGED__INIT;
    sb_uuid_v4(event_id);
    cr_assert_eq(
        deliver(event_id, "member.password_changed", user_id, &empty.base, "ADMIN", &resp, &err),
        SB_INVALID_ARGUMENT, "%s", err.buf);
    sb_buf_release(&err);
}

static long long dead_letters(const char *event_id)
{
    return db_count(
        "SELECT count(*) FROM sb_dead_letters WHERE event_id = $1 AND source = 'DeliverEvent'",
        event_id);
}

static long long in_inbox(const char *event_id)
{
    return db_count("SELECT count(*) FROM sb_inbox WHERE event_id = $1::uuid", event_id);
}

/* One policy for what cannot be used (sb/events.h): an unknown type, an
 * undecodable payload and a payload the handler refuses are dead letters
 * with the reason (INVALID_ARGUMENT), never recorded in the inbox; so the
 * sender can correct the event and send it again under the same id. */
Test(auth, malformed_events_are_dead_letters_and_a_corrected_resend_is_handled)
{
    char *user_id;
    new_session(SB__COMMON__ROLE__USER, &user_id);
    sb_buf_t err = SB_BUF_INIT;
    Sb__Events__DeliverEventResponse *resp;
    char event_id[SB_UUID_LEN + 1];
    sb_uuid_v4(event_id);
    Sb__Events__MemberPasswordChanged ev = SB__EVENTS__MEMBER_PASSWORD_CHANGED__INIT;
    ev.user_id = user_id;
    ev.changed_at = "2026-11-24T09:00:00.000Z";

    /* a type the platform does not know */
    cr_assert_eq(deliver(event_id, "member.something_else", user_id, &ev.base, "ADMIN", &resp, &err),
                 SB_INVALID_ARGUMENT, "%s", err.buf);
    cr_assert(strstr(err.buf, "unknown event type"), "%s", err.buf);
    cr_assert_eq(dead_letters(event_id), 1);
    cr_assert_eq(db_count("SELECT count(*) FROM sb_dead_letters WHERE event_id = $1"
                          " AND error LIKE '%unknown event type%' AND type = 'member.something_else'",
                          event_id),
                 1);

    /* a payload that does not decode as the type's message */
    static const uint8_t junk[] = {0x0a, 0x64, 'a', 'b', 'c'};
    Sb__Events__DeliverEventRequest req = SB__EVENTS__DELIVER_EVENT_REQUEST__INIT;
    req.service_id = "auth";
    req.event_id = event_id;
    req.type = "member.password_changed";
    req.aggregate_id = user_id;
    req.reason = "integration test";
    req.payload = (ProtobufCBinaryData){sizeof junk, (uint8_t *)junk};
    sb_call_opts_t admin = {.token = sb_test_token(arena, "authtest-operator", "ADMIN")};
    cr_assert_eq(AUTH("DeliverEvent", &req, &resp, &admin, &err), SB_INVALID_ARGUMENT, "%s", err.buf);
    cr_assert(strstr(err.buf, "undecodable"), "%s", err.buf);
    cr_assert_eq(dead_letters(event_id), 2);

    /* a payload the handler refuses */
    Sb__Events__MemberPasswordChanged empty = SB__EVENTS__MEMBER_PASSWORD_CHANGED__INIT;
    cr_assert_eq(
        deliver(event_id, "member.password_changed", user_id, &empty.base, "ADMIN", &resp, &err),
        SB_INVALID_ARGUMENT, "%s", err.buf);
    cr_assert(strstr(err.buf, "without a user id"), "%s", err.buf);
    cr_assert_eq(dead_letters(event_id), 3);
    cr_assert_eq(in_inbox(event_id), 0, "a dead letter is not recorded as processed");
    cr_assert_eq(live_tokens(user_id), 1);

    /* the same id, corrected: handled */
    cr_assert_eq(deliver(event_id, "member.password_changed", user_id, &ev.base, "ADMIN", &resp, &err),
                 SB_OK, "%s", err.buf);
    cr_assert_not(resp->duplicate);
    cr_assert_eq(in_inbox(event_id), 1);
    cr_assert_eq(live_tokens(user_id), 0);
    cr_assert_eq(deliver(event_id, "member.password_changed", user_id, &ev.base, "ADMIN", &resp, &err),
                 SB_OK, "%s", err.buf);
    cr_assert(resp->duplicate);
    sb_buf_release(&err);
}

/* A rotation racing "revoke every token of the user": the successor a
 * rotation inserts must not outlive the revocation (auth serialises both on a
 * per-user lock). The rotator keeps refreshing until refused; it must be
 * refused soon after the event, and the user must have no live token left. */
struct rotator {
    char *token;
    sb_status_t last;
    int rotations;
};

static void *rotate_until_refused(void *arg)
{
    struct rotator *r = arg;
    char *token = strdup(r->token);
    int64_t until = sb_now_ms() + 5000;
    r->last = SB_OK;
    while (r->last == SB_OK && sb_now_ms() < until) {
        sb_arena_t *a = sb_arena_new();
        sb_buf_t err = SB_BUF_INIT;
        Sb__Auth__RefreshRequest req = SB__AUTH__REFRESH_REQUEST__INIT;
        req.refresh_token = token;
        Sb__Auth__TokenResponse *resp = NULL;
        r->last = sb_rpc_call(sb_channel_get(AUTH_ADDR), &sb__auth__auth_service__descriptor, "Refresh",
                              &req.base, a, (ProtobufCMessage **)&resp, NULL, &err);
        if (r->last == SB_OK) {
            free(token);
            token = strdup(resp->refresh_token);
            r->rotations++;
        }
        sb_buf_release(&err);
        sb_arena_free(a);
    }
    free(token);
    return NULL;
}

Test(auth, a_rotation_racing_a_revocation_does_not_outlive_it)
{
    for (int round = 0; round < 5; round++) {
        char *user_id;
        Sb__Auth__TokenResponse *t = new_session(SB__COMMON__ROLE__USER, &user_id);
        struct rotator r = {t->refresh_token, SB_OK, 0};
        pthread_t th;
        pthread_create(&th, NULL, rotate_until_refused, &r);
        usleep(20000 + 7000 * (useconds_t)round);
        Sb__Events__MemberPasswordChanged ev = SB__EVENTS__MEMBER_PASSWORD_CHANGED__INIT;
        ev.user_id = user_id;
        ev.changed_at = "2026-11-24T09:00:00.000Z";
        char event_id[SB_UUID_LEN + 1];
        sb_uuid_v4(event_id);
        sb_buf_t err = SB_BUF_INIT;
        Sb__Events__DeliverEventResponse *resp;
        cr_assert_eq(
            deliver(event_id, "member.password_changed", user_id, &ev.base, "ADMIN", &resp, &err), SB_OK,
            "%s", err.buf);
        sb_buf_release(&err);
        pthread_join(th, NULL);
        cr_assert_eq(r.last, SB_UNAUTHENTICATED,
                     "round %d: rotation still works after the revocation (%d rotations)", round,
                     r.rotations);
        cr_assert_eq(live_tokens(user_id), 0, "round %d", round);
    }
}

Test(auth, unreachable_member_service_is_unavailable)
{
    Sb__Auth__LoginRequest req = SB__AUTH__LOGIN_REQUEST__INIT;
    req.login_id = getenv(ENV_ADMIN);
    req.password = PASSWORD;
    Sb__Auth__TokenResponse *x;
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(
        call(BROKEN_ADDR, &sb__auth__auth_service__descriptor, "Login", &req.base, &x, NULL, &err),
        SB_UNAVAILABLE, "%s", err.buf);
    cr_assert_str_eq(err.buf, "member service unavailable");
    sb_buf_release(&err);
}

/* The contract's rate_limited rows are limited by the service itself, not
 * only by the gateway: a client calling AuthService directly over gRPC gets
 * LOGIN_RATE_LIMIT attempts per minute from its address, then
 * RESOURCE_EXHAUSTED. (The count of this minute is shared with the other
 * tests' calls from 127.0.0.1, so the limit may be reached on an earlier
 * attempt, never later.) */
Test(auth, direct_grpc_refresh_attempts_are_rate_limited)
{
    char db[1024], redis_env[1024], brokers[1024];
    snprintf(db, sizeof db, "DATABASE_URL=%s", test_db_url());
    snprintf(redis_env, sizeof redis_env, "REDIS_URL=%s", redis_url());
    snprintf(brokers, sizeof brokers, "KAFKA_BROKERS=%s", test_brokers());
    const char *env[] = {db,
                         redis_env,
                         brokers,
                         "LOG_LEVEL=error",
                         "LOGIN_RATE_LIMIT=3",
                         "GRPC_PORT=21068",
                         "ADMIN_PORT=9218",
                         "MEMBER_ADDR=" MEMBER_ADDR,
                         NULL};
    pid_t pid = sb_test_spawn("auth", env, NULL);
    const sb_test_child_t kid[] = {{pid, 9218, "sb-auth (limited)"}};
    sb_test_await_ready("SB_TEST_LIMITED_AUTH", kid, 1, 60 * 1000);
    cr_assert_null(sb_test_not_ready("SB_TEST_LIMITED_AUTH"), "limited auth did not start");
    int refused = 0, exhausted = 0;
    for (int i = 0; i < 5; i++) {
        Sb__Auth__RefreshRequest req = SB__AUTH__REFRESH_REQUEST__INIT;
        req.refresh_token = "not-a-refresh-token";
        Sb__Auth__TokenResponse *x;
        sb_buf_t err = SB_BUF_INIT;
        sb_status_t st = call("127.0.0.1:21068", &sb__auth__auth_service__descriptor, "Refresh",
                              &req.base, &x, NULL, &err);
        if (st == SB_RESOURCE_EXHAUSTED) {
            cr_expect(strstr(err.buf, "too many attempts"), "%s", err.buf);
            exhausted++;
        } else {
            cr_expect_eq(st, SB_UNAUTHENTICATED, "%s", err.buf);
            cr_expect_eq(exhausted, 0, "an attempt was let through after the limit");
            refused++;
        }
        sb_buf_release(&err);
    }
    sb_test_stop(pid, "sb-auth (limited)", 20000);
    cr_assert_geq(exhausted, 2, "5 attempts against a limit of 3: at least the last 2 are refused");
    cr_assert_leq(refused, 3);
}

/* Starts sb-auth with env overrides and waits (30 s at most) for it to exit. */
static int exit_status_of_auth(const char *const *overrides)
{
    pid_t pid = sb_test_spawn("auth", overrides, NULL);
    cr_assert_gt(pid, 0);
    int rc = sb_test_wait_exit(pid, 30000); /* -1: still running, killed */
    cr_assert_neq(rc, -1, "sb-auth kept running with a bad JWT_SIGNING_KEY_FILE");
    return rc;
}

Test(auth, refuses_to_start_without_its_signing_key)
{
    char db[1024], not_a_key[1024];
    snprintf(db, sizeof db, "DATABASE_URL=%s", test_db_url());
    const char *unset[] = {
        db, "JWT_SIGNING_KEY_FILE=", "GRPC_PORT=0", "ADMIN_PORT=0", "LOG_LEVEL=error", NULL};
    cr_assert_neq(exit_status_of_auth(unset), 0);
    const char *missing[] = {db,
                             "JWT_SIGNING_KEY_FILE=/nonexistent/k20260101-00000000.key",
                             "GRPC_PORT=0",
                             "ADMIN_PORT=0",
                             "LOG_LEVEL=error",
                             NULL};
    cr_assert_neq(exit_status_of_auth(missing), 0);
    /* a certificate, not a private key */
    snprintf(not_a_key, sizeof not_a_key, "JWT_SIGNING_KEY_FILE=%s/ca.crt", sb_test_pki_dir());
    const char *wrong[] = {db, not_a_key, "GRPC_PORT=0", "ADMIN_PORT=0", "LOG_LEVEL=error", NULL};
    cr_assert_neq(exit_status_of_auth(wrong), 0);
}

/* The member service end to end over gRPC: the real sb-member binary against
 * the real PostgreSQL and Redis (Kafka may be down: events stay in the outbox,
 * which is what is checked here).
 *
 * The runner starts the binary once (PRE_ALL hook) and stops it with SIGTERM
 * at the end (POST_ALL hook); each test, in its own process, first waits for
 * the gRPC health check to report SERVING. The binary is $SB_MEMBER_BIN, or
 * $SB_BIN_DIR/services/member/sb-member, by default relative to ctest's
 * working directory build/tests (sb_test_proc.h). It serves on
 * 127.0.0.1:$SB_MEMBER_TEST_PORT (21051; admin port 9201) and uses database
 * sb_member_<namespace> (sb_member_test) on $DATABASE_URL's server. Login
 * ids get a random suffix so reruns against the same database pass.
 *
 * The start-up tests run further short-lived instances on the next ports up
 * (+1 .. +6) against the same database: bad bootstrap settings, a bootstrap
 * login id held by a user, several instances racing to create the admin, and
 * other hashing parameters. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "events.pb-c.h"
#include "health.pb-c.h"
#include "member.pb-c.h"
#include "sb/log.h"
#include "sb/rpc.h"
#include "sb/util.h"
#include "sb_test_env.h"
#include "sb_test_pki.h"
#include "sb_test_proc.h"

#define ADMIN_LOGIN "member-test-admin"
#define ADMIN_PASSWORD "test-admin-pass-1"
#define PASSWORD "correct horse battery"
#define MSG_BAD_CREDENTIALS "invalid login id or password"

/* ------------------------------------------------ the service process */

static pid_t child;

static int grpc_port(void)
{
    return (int)sb_cfg_int("SB_MEMBER_TEST_PORT", 21051, 1, 65535);
}

static int admin_port(void)
{
    return (int)sb_cfg_int("SB_MEMBER_TEST_ADMIN_PORT", 9201, 1, 65535);
}

ReportHook(PRE_ALL)(struct criterion_test_set *tests)
{
    (void)tests;
    /* tokens are verified without an auth service here (sb_test_pki.h) */
    sb_test_denylist_complete();
    char grpc[32], admin[32], db[512];
    snprintf(grpc, sizeof grpc, "GRPC_PORT=%d", grpc_port());
    snprintf(admin, sizeof admin, "ADMIN_PORT=%d", admin_port());
    snprintf(db, sizeof db, "DATABASE_URL=%s", test_db_url());
    const char *set[] = {
        grpc,
        admin,
        db,
        "GRPC_BIND=127.0.0.1",
        "SHUTDOWN_GRACE_MS=2000",
        "BOOTSTRAP_ADMIN_LOGIN=" ADMIN_LOGIN,
        "BOOTSTRAP_ADMIN_PASSWORD=" ADMIN_PASSWORD,
        "PWHASH_CONCURRENCY=2",
        NULL,
    };
    child = sb_test_spawn("member", set, NULL);
    if (child <= 0) {
        child = 0;
        return;
    }
    char pid_text[16];
    snprintf(pid_text, sizeof pid_text, "%d", (int)child);
    setenv("SB_MEMBER_TEST_PID", pid_text, 1); /* for the test processes spawned next */
    char why[128];
    if (!sb_test_wait_ready(child, admin_port(), 60000, why, sizeof why))
        fprintf(stderr, "test_member: sb-member %s\n", why);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    /* Without a Kafka broker the outbox relay's last flush can take its
     * delivery timeout (twice 30 s); wait for that, then stop waiting. */
    sb_test_stop(child, "sb-member", 90000);
}

/* ------------------------------------------------ per-test client */

/* ch: as the test process (client-test, a certificate no policy names), so
 * the calls are an end user's (a token) or nobody's; as_auth: presenting the
 * auth service's certificate, for CheckCredentials, which admits the auth
 * service only. */
static sb_channel_t *ch, *as_auth;
static sb_arena_t *arena;

static void setup(void)
{
    sb_log_init("test-member");
    sb_log_set_level(SB_LOG_WARN);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", grpc_port());
    ch = sb_channel_get_for(target, "member");
    as_auth = sb_test_channel_as(target, "member", "auth");
    arena = sb_arena_new();
    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st = SB_UNAVAILABLE;
    for (int i = 0; i < 50; i++) {
        Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        Grpc__Health__V1__HealthCheckResponse *resp = NULL;
        req.service = "sb.member.MemberService";
        sb_call_opts_t o = {.timeout_ms = 1000};
        sb_buf_reset(&err);
        st = sb_rpc_call(ch, &grpc__health__v1__health__descriptor, "Check", &req.base, arena,
                         (ProtobufCMessage **)&resp, &o, &err);
        if (st == SB_OK &&
            resp->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING)
            break;
        usleep(100000);
    }
    cr_assert_eq(st, SB_OK, "member service not serving on %s: %s (see the runner's messages)", target,
                 err.buf);
    sb_buf_release(&err);
}

static void teardown(void)
{
    sb_arena_free(arena);
    sb_channels_free_all();
}

TestSuite(member, .init = setup, .fini = teardown, .timeout = 120);

/* Who is calling: NULL fields are anonymous (no token); otherwise the call
 * carries an access token for them (sb_test_token). */
typedef struct {
    const char *user_id;
    const char *role;
} who_t;

static const who_t anonymous = {NULL, NULL};

static sb_status_t call_on(sb_channel_t *on, const char *method, const ProtobufCMessage *req, void *resp,
                           who_t who, sb_buf_t *err)
{
    sb_call_opts_t o = {.timeout_ms = 15000,
                        .token = who.user_id ? sb_test_token(arena, who.user_id, who.role) : NULL};
    sb_buf_reset(err);
    return sb_rpc_call(on, &sb__member__member_service__descriptor, method, req, arena,
                       (ProtobufCMessage **)resp, &o, err);
}

static sb_status_t call(const char *method, const ProtobufCMessage *req, void *resp, who_t who,
                        sb_buf_t *err)
{
    return call_on(ch, method, req, resp, who, err);
}

/* "<tag><8 hex>": unique per run. */
static const char *fresh_login(const char *tag)
{
    unsigned char r[4];
    sb_random_bytes(r, sizeof r);
    return sb_arena_printf(arena, "%s%02x%02x%02x%02x", tag, r[0], r[1], r[2], r[3]);
}

static Sb__Member__SignupRequest signup_req(const char *login, Sb__Common__Role role)
{
    Sb__Member__SignupRequest req = SB__MEMBER__SIGNUP_REQUEST__INIT;
    req.login_id = (char *)login;
    req.password = PASSWORD;
    req.name = "김 관객";
    req.email = "fan@example.com";
    req.phone = "+82 10-1234-5678";
    req.role = role;
    return req;
}

/* Signs up a new member and returns it (asserting success). */
static Sb__Member__Member *new_member(const char *tag, Sb__Common__Role role)
{
    sb_buf_t err = SB_BUF_INIT;
    Sb__Member__SignupRequest req = signup_req(fresh_login(tag), role);
    Sb__Member__Member *m = NULL;
    sb_status_t st = call("Signup", &req.base, &m, anonymous, &err);
    cr_assert_eq(st, SB_OK, "Signup: %s %s", sb_status_name(st), err.buf);
    sb_buf_release(&err);
    return m;
}

static who_t self(const Sb__Member__Member *m)
{
    return (who_t){m->user_id, m->role == SB__COMMON__ROLE__PLANNER ? "PLANNER" : "USER"};
}

static sb_status_t check_credentials(const char *login, const char *password,
                                     Sb__Member__CheckCredentialsResponse **resp, sb_buf_t *err)
{
    Sb__Member__CheckCredentialsRequest req = SB__MEMBER__CHECK_CREDENTIALS_REQUEST__INIT;
    req.login_id = (char *)login;
    req.password = (char *)password;
    return call_on(as_auth, "CheckCredentials", &req.base, resp, anonymous, err);
}

static who_t admin(void)
{
    sb_buf_t err = SB_BUF_INIT;
    Sb__Member__CheckCredentialsResponse *resp = NULL;
    sb_status_t st = check_credentials(ADMIN_LOGIN, ADMIN_PASSWORD, &resp, &err);
    cr_assert_eq(st, SB_OK, "bootstrap admin login: %s %s", sb_status_name(st), err.buf);
    cr_assert_eq(resp->role, SB__COMMON__ROLE__ADMIN);
    sb_buf_release(&err);
    return (who_t){resp->user_id, "ADMIN"};
}

static sb_status_t get_member(const char *id, who_t who, Sb__Member__Member **m, sb_buf_t *err)
{
    Sb__Member__GetMemberRequest req = SB__MEMBER__GET_MEMBER_REQUEST__INIT;
    req.user_id = (char *)id;
    return call("GetMember", &req.base, m, who, err);
}

static sb_status_t delete_member(const char *id, who_t who, Sb__Member__DeleteMemberResponse **resp,
                                 sb_buf_t *err)
{
    Sb__Member__DeleteMemberRequest req = SB__MEMBER__DELETE_MEMBER_REQUEST__INIT;
    req.user_id = (char *)id;
    req.reason = "test withdrawal"; /* required of an admin (the audit log) */
    return call("DeleteMember", &req.base, resp, who, err);
}

/* The service's own database, for checks of what it stored. */
static PGconn *member_db(void)
{
    char name[64];
    const char *keys[] = {"dbname", "dbname", NULL};
    const char *vals[] = {test_db_url(), sb_test_db("member", name, sizeof name), NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* Outbox rows of `type` for aggregate `id`; the first envelope into *env
 * (arena) when env is non-NULL and there is one. */
static int outbox_events(const char *type, const char *id, Sb__Events__EventEnvelope **env)
{
    PGconn *c = member_db();
    const char *params[] = {type, id};
    PGresult *r = PQexecParams(c,
                               "SELECT envelope FROM sb_outbox WHERE type = $1 AND aggregate_id = $2"
                               " ORDER BY id",
                               2, NULL, params, NULL, NULL, 1);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    int n = PQntuples(r);
    if (env && n > 0)
        *env = sb__events__event_envelope__unpack(sb_arena_pb_allocator(arena),
                                                  (size_t)PQgetlength(r, 0, 0),
                                                  (const uint8_t *)PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return n;
}

/* ------------------------------------------------ Signup */

Test(member, signup_returns_the_member_with_folded_login_id)
{
    sb_buf_t err = SB_BUF_INIT;
    const char *login = fresh_login("Su.Mixed-");
    Sb__Member__SignupRequest req = signup_req(login, SB__COMMON__ROLE__PLANNER);
    Sb__Member__Member *m = NULL;
    cr_assert_eq(call("Signup", &req.base, &m, anonymous, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(strlen(m->user_id), SB_UUID_LEN, "userId %s", m->user_id);
    char lower[64];
    snprintf(lower, sizeof lower, "%s", login);
    for (char *p = lower; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    cr_assert_str_eq(m->login_id, lower);
    cr_assert_str_eq(m->name, "김 관객");
    cr_assert_str_eq(m->email, "fan@example.com");
    cr_assert_str_eq(m->phone, "+82 10-1234-5678");
    cr_assert_eq(m->role, SB__COMMON__ROLE__PLANNER);
    cr_assert_eq(strlen(m->created_at), 24, "createdAt %s", m->created_at);
    cr_assert_eq(m->created_at[10], 'T');
    cr_assert_eq(m->created_at[23], 'Z');

    /* the same login id in other letter case is the same login id */
    Sb__Member__SignupRequest again = signup_req(lower, SB__COMMON__ROLE__USER);
    cr_assert_eq(call("Signup", &again.base, &m, anonymous, &err), SB_ALREADY_EXISTS, "%s", err.buf);
    cr_assert_str_eq(err.buf, "login id already taken");

    /* the password hash is stored as Argon2id, never the password */
    PGconn *c = member_db();
    const char *params[] = {lower};
    PGresult *r = PQexecParams(c, "SELECT password_hash FROM members WHERE login_id = $1", 1, NULL,
                               params, NULL, NULL, 0);
    cr_assert_eq(PQntuples(r), 1);
    cr_assert(strncmp(PQgetvalue(r, 0, 0), "$argon2id$", 10) == 0, "hash %s", PQgetvalue(r, 0, 0));
    cr_assert_null(strstr(PQgetvalue(r, 0, 0), PASSWORD));
    PQclear(r);
    PQfinish(c);
    sb_buf_release(&err);
}

/* Regression cases as data: a field set to a bad value, the expected
 * message fragment. */
static const struct bad_signup {
    const char *field, *value, *message;
} bad_signups[] = {
    {"loginId", "abc", "loginId must be 4-32 characters"},
    {"loginId", "has space", "loginId must be"},
    {"loginId", "withdrawn:x", "loginId must be"},
    {"loginId", "a-login-id-that-is-longer-than-32", "loginId must be"},
    {"password", "short", "password must be at least 8 characters"},
    {"password", "", "password must be at least 8 characters"},
    {"name", "", "name must be 1-100 characters"},
    {"name", "   ", "name must not be blank"},
    {"name", "tab\there", "name must be text"},
    {"name", "\xc3\x28", "name must be text"},
    {"email", "not-an-email", "email must be"},
    {"email", "a@b", "email must be"},
    {"email", "a@@b.c", "email must be"},
    {"email", "a b@c.d", "email must be"},
    {"email", "a@.c", "email must be"},
    {"phone", "123", "phone must be 7-20"},
    {"phone", "010-1234-567x", "phone must be"},
    {"phone", "1-2-3-4-5-6", "phone must be"},
    {"phone", "010+1234567", "phone must be"},
};

Test(member, signup_rejects_bad_fields_with_a_named_field)
{
    sb_buf_t err = SB_BUF_INIT;
    for (size_t i = 0; i < sizeof bad_signups / sizeof bad_signups[0]; i++) {
        const struct bad_signup *b = &bad_signups[i];
        Sb__Member__SignupRequest req = signup_req(fresh_login("bad"), SB__COMMON__ROLE__USER);
        if (!strcmp(b->field, "loginId"))
            req.login_id = (char *)b->value;
        else if (!strcmp(b->field, "password"))
            req.password = (char *)b->value;
        else if (!strcmp(b->field, "name"))
            req.name = (char *)b->value;
        else if (!strcmp(b->field, "email"))
            req.email = (char *)b->value;
        else
            req.phone = (char *)b->value;
        Sb__Member__Member *m = NULL;
        sb_status_t st = call("Signup", &req.base, &m, anonymous, &err);
        cr_expect_eq(st, SB_INVALID_ARGUMENT, "%s=%s: got %s %s", b->field, b->value, sb_status_name(st),
                     err.buf);
        cr_expect(strstr(err.buf, b->message) != NULL, "%s=%s: message %s", b->field, b->value, err.buf);
    }
    sb_buf_release(&err);
}

Test(member, signup_never_creates_an_admin)
{
    sb_buf_t err = SB_BUF_INIT;
    Sb__Common__Role roles[] = {SB__COMMON__ROLE__ADMIN, SB__COMMON__ROLE__ROLE_UNSPECIFIED, 42};
    for (size_t i = 0; i < 3; i++) {
        Sb__Member__SignupRequest req = signup_req(fresh_login("adm"), roles[i]);
        Sb__Member__Member *m = NULL;
        cr_expect_eq(call("Signup", &req.base, &m, (who_t){"x", "ADMIN"}, &err), SB_INVALID_ARGUMENT,
                     "role %d: %s", roles[i], err.buf);
        cr_expect_str_eq(err.buf, "role must be USER or PLANNER");
    }
    sb_buf_release(&err);
}

/* ------------------------------------------------ CheckCredentials */

/* CheckCredentials is the auth service's alone: the runtime refuses anyone
 * else before the handler runs (the policy in member.proto). */
Test(member, check_credentials_is_for_the_auth_service_only)
{
    sb_buf_t err = SB_BUF_INIT;
    Sb__Member__Member *m = new_member("cs", SB__COMMON__ROLE__USER);
    Sb__Member__CheckCredentialsResponse *resp = NULL;
    Sb__Member__CheckCredentialsRequest req = SB__MEMBER__CHECK_CREDENTIALS_REQUEST__INIT;
    req.login_id = (char *)m->login_id;
    req.password = PASSWORD;

    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", grpc_port());
    /* another service's certificate (the gateway's) */
    sb_channel_t *as_gateway = sb_test_channel_as(target, "member", "gateway");
    cr_expect_eq(call_on(as_gateway, "CheckCredentials", &req.base, &resp, anonymous, &err),
                 SB_PERMISSION_DENIED, "%s", err.buf);
    cr_expect_str_eq(err.buf, "only the auth service may call this");
    /* no service certificate: a client, signed in or even as an admin */
    cr_expect_eq(call("CheckCredentials", &req.base, &resp, anonymous, &err), SB_PERMISSION_DENIED, "%s",
                 err.buf);
    cr_expect_eq(call("CheckCredentials", &req.base, &resp, self(m), &err), SB_PERMISSION_DENIED, "%s",
                 err.buf);
    cr_expect_eq(call("CheckCredentials", &req.base, &resp, (who_t){m->user_id, "ADMIN"}, &err),
                 SB_PERMISSION_DENIED, "%s", err.buf);
    /* the auth service's certificate */
    cr_expect_eq(check_credentials(m->login_id, PASSWORD, &resp, &err), SB_OK, "%s", err.buf);
    sb_buf_release(&err);
}

Test(member, check_credentials_same_answer_for_unknown_and_wrong)
{
    sb_buf_t err = SB_BUF_INIT;
    Sb__Member__Member *m = new_member("cc", SB__COMMON__ROLE__USER);
    Sb__Member__CheckCredentialsResponse *resp = NULL;
    cr_assert_eq(check_credentials(m->login_id, PASSWORD, &resp, &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(resp->user_id, m->user_id);
    cr_assert_eq(resp->role, SB__COMMON__ROLE__USER);

    char upper[64];
    snprintf(upper, sizeof upper, "%s", m->login_id);
    upper[0] = 'C';
    cr_assert_eq(check_credentials(upper, PASSWORD, &resp, &err), SB_OK, "login ids ignore case: %s",
                 err.buf);

    cr_assert_eq(check_credentials(m->login_id, PASSWORD "!", &resp, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, MSG_BAD_CREDENTIALS);
    cr_assert_eq(check_credentials(fresh_login("nobody"), PASSWORD, &resp, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, MSG_BAD_CREDENTIALS);
    cr_assert_eq(check_credentials("x", "", &resp, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, MSG_BAD_CREDENTIALS);
    sb_buf_release(&err);
}

Test(member, bootstrap_admin_exists)
{
    who_t a = admin();
    sb_buf_t err = SB_BUF_INIT;
    Sb__Member__Member *m = NULL;
    cr_assert_eq(get_member(a.user_id, a, &m, &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(m->login_id, ADMIN_LOGIN);
    cr_assert_eq(m->role, SB__COMMON__ROLE__ADMIN);
    Sb__Member__CheckCredentialsResponse *resp = NULL;
    cr_assert_eq(check_credentials("MEMBER-TEST-ADMIN", ADMIN_PASSWORD, &resp, &err), SB_OK, "%s",
                 err.buf);
    cr_assert_eq(resp->role, SB__COMMON__ROLE__ADMIN);
    sb_buf_release(&err);
}

/* ------------------------------------------------ GetMember */

Test(member, get_member_self_or_admin_only)
{
    sb_buf_t err = SB_BUF_INIT;
    Sb__Member__Member *alice = new_member("ga", SB__COMMON__ROLE__USER);
    Sb__Member__Member *bob = new_member("gb", SB__COMMON__ROLE__PLANNER);
    Sb__Member__Member *m = NULL;

    cr_assert_eq(get_member(alice->user_id, self(alice), &m, &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(m->user_id, alice->user_id);
    cr_assert_str_eq(m->login_id, alice->login_id);
    cr_assert_str_eq(m->created_at, alice->created_at);

    cr_assert_eq(get_member(alice->user_id, self(bob), &m, &err), SB_PERMISSION_DENIED);
    cr_assert_str_eq(err.buf, "you may only read your own profile");
    cr_assert_eq(get_member(alice->user_id, anonymous, &m, &err), SB_UNAUTHENTICATED);

    who_t a = admin();
    cr_assert_eq(get_member(bob->user_id, a, &m, &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(m->login_id, bob->login_id);

    /* upper-case spelling of one's own id */
    char upper[SB_UUID_LEN + 1];
    for (size_t i = 0; i <= SB_UUID_LEN; i++)
        upper[i] = (char)(alice->user_id[i] >= 'a' && alice->user_id[i] <= 'f' ? alice->user_id[i] - 32
                                                                               : alice->user_id[i]);
    cr_assert_eq(get_member(upper, self(alice), &m, &err), SB_OK, "%s", err.buf);

    const char *bad[] = {"not-a-uuid", "", "00000000-0000-0000-0000-00000000000g",
                         "{00000000-0000-0000-0000-000000000000}", "' OR 1=1 --"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(get_member(bad[i], a, &m, &err), SB_INVALID_ARGUMENT, "%s: %s", bad[i], err.buf);
        cr_expect_str_eq(err.buf, "userId must be a UUID");
        cr_expect_eq(get_member(bad[i], self(alice), &m, &err), SB_INVALID_ARGUMENT, "%s: %s", bad[i],
                     err.buf);
    }
    char unknown[SB_UUID_LEN + 1];
    sb_uuid_v4(unknown);
    cr_assert_eq(get_member(unknown, a, &m, &err), SB_NOT_FOUND, "%s", err.buf);
    sb_buf_release(&err);
}

/* ------------------------------------------------ UpdateMember */

Test(member, update_member_profile_fields)
{
    sb_buf_t err = SB_BUF_INIT;
    Sb__Member__Member *m = new_member("up", SB__COMMON__ROLE__USER);
    Sb__Member__Member *other = new_member("uo", SB__COMMON__ROLE__USER);
    Sb__Member__Member *out = NULL;
    usleep(20000); /* let updatedAt move past createdAt */

    Sb__Member__UpdateMemberRequest req = SB__MEMBER__UPDATE_MEMBER_REQUEST__INIT;
    req.user_id = m->user_id;
    req.name = "New Name";
    cr_assert_eq(call("UpdateMember", &req.base, &out, self(m), &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(out->name, "New Name");
    cr_assert_str_eq(out->email, m->email, "unchanged when not given");
    cr_assert_str_eq(out->phone, m->phone);
    cr_assert_str_eq(out->created_at, m->created_at);
    cr_assert(strcmp(out->updated_at, m->created_at) > 0, "updatedAt %s createdAt %s", out->updated_at,
              m->created_at);

    req.name = "";
    req.email = "new@example.org";
    req.phone = "010 9999 0000";
    cr_assert_eq(call("UpdateMember", &req.base, &out, self(m), &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(out->name, "New Name");
    cr_assert_str_eq(out->email, "new@example.org");
    cr_assert_str_eq(out->phone, "010 9999 0000");
    cr_assert_str_eq(out->language, "ko");

    req.email = "broken@";
    cr_assert_eq(call("UpdateMember", &req.base, &out, self(m), &err), SB_INVALID_ARGUMENT);
    cr_assert(strncmp(err.buf, "email ", 6) == 0, "%s", err.buf);

    Sb__Member__UpdateMemberRequest none = SB__MEMBER__UPDATE_MEMBER_REQUEST__INIT;
    none.user_id = m->user_id;
    cr_assert_eq(call("UpdateMember", &none.base, &out, self(m), &err), SB_INVALID_ARGUMENT);
    cr_assert(strstr(err.buf, "nothing to update") != NULL, "%s", err.buf);

    /* the language of notices: ko by default, ko or en, nothing else */
    Sb__Member__UpdateMemberRequest lang = SB__MEMBER__UPDATE_MEMBER_REQUEST__INIT;
    lang.user_id = m->user_id;
    lang.language = "fr";
    cr_assert_eq(call("UpdateMember", &lang.base, &out, self(m), &err), SB_INVALID_ARGUMENT);
    cr_assert(strncmp(err.buf, "language ", 9) == 0, "%s", err.buf);
    lang.language = "en";
    cr_assert_eq(call("UpdateMember", &lang.base, &out, self(m), &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(out->language, "en");
    cr_assert_str_eq(out->name, "New Name");

    req.email = "";
    req.name = "Intruder";
    cr_assert_eq(call("UpdateMember", &req.base, &out, self(other), &err), SB_PERMISSION_DENIED);
    cr_assert_eq(call("UpdateMember", &req.base, &out, admin(), &err), SB_PERMISSION_DENIED,
                 "admins do not edit others' profiles");
    req.user_id = "nope";
    cr_assert_eq(call("UpdateMember", &req.base, &out, self(m), &err), SB_INVALID_ARGUMENT);

    Sb__Member__Member *now = NULL;
    cr_assert_eq(get_member(m->user_id, self(m), &now, &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(now->name, "New Name", "failed updates changed nothing");
    sb_buf_release(&err);
}

Test(member, update_member_password)
{
    sb_buf_t err = SB_BUF_INIT;
    Sb__Member__Member *m = new_member("pw", SB__COMMON__ROLE__USER);
    Sb__Member__Member *out = NULL;
    Sb__Member__CheckCredentialsResponse *cc = NULL;
    Sb__Member__UpdateMemberRequest req = SB__MEMBER__UPDATE_MEMBER_REQUEST__INIT;
    req.user_id = m->user_id;
    req.new_password = "a brand new secret";

    cr_assert_eq(call("UpdateMember", &req.base, &out, self(m), &err), SB_INVALID_ARGUMENT);
    cr_assert(strstr(err.buf, "currentPassword") != NULL, "%s", err.buf);

    req.current_password = "not the password";
    cr_assert_eq(call("UpdateMember", &req.base, &out, self(m), &err), SB_PERMISSION_DENIED);
    cr_assert_str_eq(err.buf, "current password is incorrect");
    cr_assert_eq(check_credentials(m->login_id, PASSWORD, &cc, &err), SB_OK, "unchanged: %s", err.buf);

    req.current_password = PASSWORD;
    req.new_password = "short";
    cr_assert_eq(call("UpdateMember", &req.base, &out, self(m), &err), SB_INVALID_ARGUMENT);
    cr_assert_str_eq(err.buf, "newPassword must be at least 8 characters");

    cr_assert_eq(outbox_events("member.password_changed", m->user_id, NULL), 0);
    req.new_password = "a brand new secret";
    cr_assert_eq(call("UpdateMember", &req.base, &out, self(m), &err), SB_OK, "%s", err.buf);
    cr_assert(strcmp(out->updated_at, m->created_at) > 0);
    cr_assert_eq(check_credentials(m->login_id, PASSWORD, &cc, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, MSG_BAD_CREDENTIALS);
    cr_assert_eq(check_credentials(m->login_id, "a brand new secret", &cc, &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(cc->user_id, m->user_id);

    Sb__Events__EventEnvelope *env = NULL;
    cr_assert_eq(outbox_events("member.password_changed", m->user_id, &env), 1);
    cr_assert_not_null(env);
    Sb__Events__MemberPasswordChanged *ev = sb__events__member_password_changed__unpack(
        sb_arena_pb_allocator(arena), env->payload.len, env->payload.data);
    cr_assert_not_null(ev);
    cr_assert_str_eq(ev->user_id, m->user_id);
    cr_assert_str_eq(ev->changed_at, out->updated_at);
    sb_buf_release(&err);
}

/* ------------------------------------------------ DeleteMember */

Test(member, delete_member_withdraws_and_frees_the_login_id)
{
    sb_buf_t err = SB_BUF_INIT;
    Sb__Member__Member *m = new_member("dl", SB__COMMON__ROLE__USER);
    Sb__Member__Member *other = new_member("do", SB__COMMON__ROLE__USER);
    Sb__Member__DeleteMemberResponse *resp = NULL;
    Sb__Member__CheckCredentialsResponse *cc = NULL;
    Sb__Member__Member *got = NULL;
    who_t a = admin();

    cr_assert_eq(delete_member(m->user_id, self(other), &resp, &err), SB_PERMISSION_DENIED);
    cr_assert_eq(delete_member("bad", self(m), &resp, &err), SB_INVALID_ARGUMENT);

    cr_assert_eq(delete_member(m->user_id, self(m), &resp, &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(resp->user_id, m->user_id);
    cr_assert_str_eq(resp->status, "WITHDRAWN");

    cr_assert_eq(check_credentials(m->login_id, PASSWORD, &cc, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, MSG_BAD_CREDENTIALS);
    cr_assert_eq(get_member(m->user_id, a, &got, &err), SB_NOT_FOUND);
    cr_assert_eq(get_member(m->user_id, self(m), &got, &err), SB_NOT_FOUND);
    cr_assert_eq(delete_member(m->user_id, self(m), &resp, &err), SB_NOT_FOUND);
    Sb__Member__UpdateMemberRequest up = SB__MEMBER__UPDATE_MEMBER_REQUEST__INIT;
    up.user_id = m->user_id;
    up.name = "ghost";
    cr_assert_eq(call("UpdateMember", &up.base, &got, self(m), &err), SB_NOT_FOUND);

    /* personal data scrubbed */
    PGconn *c = member_db();
    const char *params[] = {m->user_id};
    PGresult *r = PQexecParams(c,
                               "SELECT login_id, name, email, phone, password_hash IS NULL, status,"
                               " withdrawn_at IS NOT NULL FROM members WHERE user_id = $1::uuid",
                               1, NULL, params, NULL, NULL, 0);
    cr_assert_eq(PQntuples(r), 1);
    char want_login[64];
    snprintf(want_login, sizeof want_login, "withdrawn:%s", m->user_id);
    cr_assert_str_eq(PQgetvalue(r, 0, 0), want_login);
    cr_assert_str_eq(PQgetvalue(r, 0, 1), "");
    cr_assert_str_eq(PQgetvalue(r, 0, 2), "");
    cr_assert_str_eq(PQgetvalue(r, 0, 3), "");
    cr_assert_str_eq(PQgetvalue(r, 0, 4), "t");
    cr_assert_str_eq(PQgetvalue(r, 0, 5), "WITHDRAWN");
    cr_assert_str_eq(PQgetvalue(r, 0, 6), "t");
    PQclear(r);
    PQfinish(c);

    /* the event, in the outbox */
    Sb__Events__EventEnvelope *env = NULL;
    cr_assert_eq(outbox_events("member.withdrawn", m->user_id, &env), 1);
    cr_assert_not_null(env);
    cr_assert_str_eq(env->aggregate_id, m->user_id);
    Sb__Events__MemberWithdrawn *ev = sb__events__member_withdrawn__unpack(
        sb_arena_pb_allocator(arena), env->payload.len, env->payload.data);
    cr_assert_not_null(ev);
    cr_assert_str_eq(ev->user_id, m->user_id);
    cr_assert_str_eq(ev->withdrawn_by, m->user_id);
    cr_assert_eq(strlen(ev->withdrawn_at), 24, "%s", ev->withdrawn_at);

    /* the login id can be signed up again: a new account */
    Sb__Member__SignupRequest again = signup_req(m->login_id, SB__COMMON__ROLE__USER);
    Sb__Member__Member *m2 = NULL;
    cr_assert_eq(call("Signup", &again.base, &m2, anonymous, &err), SB_OK, "%s", err.buf);
    cr_assert_str_neq(m2->user_id, m->user_id);
    cr_assert_eq(check_credentials(m->login_id, PASSWORD, &cc, &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(cc->user_id, m2->user_id);
    sb_buf_release(&err);
}

Test(member, admin_may_withdraw_anyone)
{
    sb_buf_t err = SB_BUF_INIT;
    Sb__Member__Member *m = new_member("da", SB__COMMON__ROLE__PLANNER);
    Sb__Member__DeleteMemberResponse *resp = NULL;
    who_t a = admin();
    cr_assert_eq(delete_member(m->user_id, a, &resp, &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(resp->status, "WITHDRAWN");
    Sb__Events__EventEnvelope *env = NULL;
    cr_assert_eq(outbox_events("member.withdrawn", m->user_id, &env), 1);
    Sb__Events__MemberWithdrawn *ev = sb__events__member_withdrawn__unpack(
        sb_arena_pb_allocator(arena), env->payload.len, env->payload.data);
    cr_assert_not_null(ev);
    cr_assert_str_eq(ev->withdrawn_by, a.user_id);
    sb_buf_release(&err);
}

/* ------------------------------------------------ start-up bootstrap */

/* Starts another instance of the service with extra settings, on ports
 * `offset` above the ones under test; its stderr goes to log_path. */
static pid_t spawn_member(int offset, const char *const *extra, size_t n_extra, const char *log_path)
{
    char *grpc = sb_arena_printf(arena, "GRPC_PORT=%d", grpc_port() + offset);
    char *adm = sb_arena_printf(arena, "ADMIN_PORT=%d", admin_port() + offset);
    char *db = sb_arena_printf(arena, "DATABASE_URL=%s", test_db_url());
    const char *set[16] = {grpc, adm, db, "GRPC_BIND=127.0.0.1", "SHUTDOWN_GRACE_MS=1000"};
    size_t n = 5;
    for (size_t i = 0; i < n_extra && n < 15; i++)
        set[n++] = extra[i];
    set[n] = NULL;
    pid_t pid = sb_test_spawn("member", set, log_path);
    cr_assert_gt(pid, 0, "cannot start sb-member (see the messages above)");
    return pid;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    char *text = sb_arena_alloc(arena, 65536);
    size_t n = fread(text, 1, 65535, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

static char *temp_log(void)
{
    char *path = sb_arena_strdup(arena, "/tmp/sb-member-test-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    return path;
}

/* Bad bootstrap settings stop the process with a message naming them. */
static const struct bad_bootstrap {
    const char *login, *password, *message;
} bad_bootstraps[] = {
    {"BOOTSTRAP_ADMIN_LOGIN=admin2", "BOOTSTRAP_ADMIN_PASSWORD=short",
     "BOOTSTRAP_ADMIN_PASSWORD must be at least 8 characters"},
    {"BOOTSTRAP_ADMIN_LOGIN=admin2", "BOOTSTRAP_ADMIN_PASSWORD=",
     "BOOTSTRAP_ADMIN_LOGIN and BOOTSTRAP_ADMIN_PASSWORD must be set together"},
    {"BOOTSTRAP_ADMIN_LOGIN=no", "BOOTSTRAP_ADMIN_PASSWORD=long-enough-1",
     "BOOTSTRAP_ADMIN_LOGIN must be"},
};

Test(member, bootstrap_refuses_bad_settings_at_once)
{
    char *log = temp_log();
    for (size_t i = 0; i < sizeof bad_bootstraps / sizeof bad_bootstraps[0]; i++) {
        const struct bad_bootstrap *b = &bad_bootstraps[i];
        const char *extra[] = {b->login, b->password};
        pid_t pid = spawn_member(1, extra, 2, log);
        int rc = sb_test_wait_exit(pid, 10000); /* -1: still running, killed */
        cr_expect_eq(rc, 1, "%s %s: exit %d", b->login, b->password, rc);
        char *text = slurp(log);
        cr_expect(strstr(text, b->message) != NULL, "%s %s: log %s", b->login, b->password, text);
    }
    unlink(log);
}

Test(member, bootstrap_refuses_a_login_id_held_by_a_user)
{
    Sb__Member__Member *m = new_member("squat", SB__COMMON__ROLE__USER);
    char *log = temp_log();
    const char *extra[] = {sb_arena_printf(arena, "BOOTSTRAP_ADMIN_LOGIN=%s", m->login_id),
                           "BOOTSTRAP_ADMIN_PASSWORD=whatever-long-1"};
    pid_t pid = spawn_member(1, extra, 2, log);
    int rc = sb_test_wait_exit(pid, 100000);
    cr_assert_eq(rc, 1, "exit %d", rc);
    char *text = slurp(log);
    cr_assert(strstr(text, "belongs to a USER account") != NULL, "log %s", text);
    unlink(log);

    /* and the member is still a plain user */
    sb_buf_t err = SB_BUF_INIT;
    Sb__Member__CheckCredentialsResponse *cc = NULL;
    cr_assert_eq(check_credentials(m->login_id, PASSWORD, &cc, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(cc->role, SB__COMMON__ROLE__USER);
    sb_buf_release(&err);
}

Test(member, bootstrap_never_overwrites_an_admin_password)
{
    char *log = temp_log();
    const char *extra[] = {"BOOTSTRAP_ADMIN_LOGIN=" ADMIN_LOGIN,
                           "BOOTSTRAP_ADMIN_PASSWORD=another-password-2"};
    pid_t pid = spawn_member(1, extra, 2, log);
    char why[128];
    bool ready = sb_test_wait_ready(pid, admin_port() + 1, 60000, why, sizeof why);
    int rc = sb_test_stop(pid, "second sb-member", 100000);
    char *text = slurp(log);
    unlink(log);
    cr_assert(ready, "second instance never ready (%s): %s", why, text);
    cr_assert_eq(rc, 0, "second instance exit %d: %s", rc, text);
    cr_assert(strstr(text, "already exists; its password is left unchanged") != NULL, "%s", text);

    sb_buf_t err = SB_BUF_INIT;
    Sb__Member__CheckCredentialsResponse *cc = NULL;
    cr_assert_eq(check_credentials(ADMIN_LOGIN, ADMIN_PASSWORD, &cc, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(check_credentials(ADMIN_LOGIN, "another-password-2", &cc, &err), SB_UNAUTHENTICATED);
    sb_buf_release(&err);
}

Test(member, bootstrap_is_safe_when_instances_start_together)
{
    enum { N = 3 };
    const char *login = fresh_login("race");
    const char *extra[] = {sb_arena_printf(arena, "BOOTSTRAP_ADMIN_LOGIN=%s", login),
                           "BOOTSTRAP_ADMIN_PASSWORD=race-password-1"};
    char *logs[N];
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        logs[i] = temp_log();
        pids[i] = spawn_member(2 + i, extra, 2, logs[i]);
    }
    for (int i = 0; i < N; i++) {
        char why[128];
        bool ready = sb_test_wait_ready(pids[i], admin_port() + 2 + i, 60000, why, sizeof why);
        cr_expect(ready, "instance %d never ready (%s): %s", i, why, slurp(logs[i]));
    }
    int created = 0;
    for (int i = 0; i < N; i++) {
        int rc = sb_test_stop(pids[i], "racing sb-member", 100000);
        char *text = slurp(logs[i]);
        unlink(logs[i]);
        cr_expect_eq(rc, 0, "instance %d exit %d: %s", i, rc, text);
        created += strstr(text, "' created (user id") != NULL;
    }
    cr_assert_eq(created, 1, "exactly one instance inserts the admin");

    PGconn *c = member_db();
    const char *params[] = {login};
    PGresult *r = PQexecParams(c, "SELECT count(*) FROM members WHERE login_id = $1 AND role = 'ADMIN'",
                               1, NULL, params, NULL, NULL, 0);
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
    PQfinish(c);
    sb_buf_t err = SB_BUF_INIT;
    Sb__Member__CheckCredentialsResponse *cc = NULL;
    cr_assert_eq(check_credentials(login, "race-password-1", &cc, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(cc->role, SB__COMMON__ROLE__ADMIN);
    sb_buf_release(&err);
}

/* ------------------------------------------------ a burst of logins */

struct burst_arg {
    const char *login;
    const char *password;
    sb_status_t want;
    sb_status_t got;
};

static void *burst_login(void *p)
{
    struct burst_arg *b = p;
    sb_arena_t *a = sb_arena_new();
    sb_buf_t err = SB_BUF_INIT;
    Sb__Member__CheckCredentialsRequest req = SB__MEMBER__CHECK_CREDENTIALS_REQUEST__INIT;
    req.login_id = (char *)b->login;
    req.password = (char *)b->password;
    ProtobufCMessage *resp = NULL;
    sb_call_opts_t o = {.timeout_ms = 30000};
    b->got = sb_rpc_call(as_auth, &sb__member__member_service__descriptor, "CheckCredentials", &req.base,
                         a, &resp, &o, &err);
    sb_buf_release(&err);
    sb_arena_free(a);
    return NULL;
}

/* Peak resident memory of the service under test in KiB, or -1 if unknown. */
static long service_peak_kib(void)
{
    const char *pid = getenv("SB_MEMBER_TEST_PID");
    if (!pid)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%s/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* More concurrent logins than hashing slots (2) and than gRPC workers (8):
 * every one gets its right answer, and peak memory stays near 2 x 64 MiB of
 * hashing, not 8 x. */
Test(member, burst_of_logins_is_answered_within_bounded_memory)
{
    enum { N = 24 };
    Sb__Member__Member *m = new_member("burst", SB__COMMON__ROLE__USER);
    struct burst_arg args[N];
    pthread_t threads[N];
    for (int i = 0; i < N; i++) {
        args[i] = (struct burst_arg){m->login_id, PASSWORD, SB_OK, SB_UNKNOWN};
        if (i % 3 == 1)
            args[i] = (struct burst_arg){m->login_id, "wrong password", SB_UNAUTHENTICATED, SB_UNKNOWN};
        else if (i % 3 == 2)
            args[i] = (struct burst_arg){"nobody-at-all", PASSWORD, SB_UNAUTHENTICATED, SB_UNKNOWN};
        cr_assert_eq(pthread_create(&threads[i], NULL, burst_login, &args[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < N; i++)
        cr_expect_eq(args[i].got, args[i].want, "call %d: got %s", i, sb_status_name(args[i].got));
    long peak = service_peak_kib();
    cr_log_info("service peak RSS after the burst: %ld KiB", peak);
    if (peak > 0) /* 8 hashes at once would be 512 MiB on their own */
        cr_expect_lt(peak, 400 * 1024, "service peak RSS %ld KiB", peak);
}

/* ------------------------------------------------ hashing parameters */

static char *stored_hash(const char *login)
{
    PGconn *c = member_db();
    const char *params[] = {login};
    PGresult *r = PQexecParams(c, "SELECT password_hash FROM members WHERE login_id = $1", 1, NULL,
                               params, NULL, NULL, 0);
    cr_assert_eq(PQntuples(r), 1);
    char *hash = sb_arena_strdup(arena, PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return hash;
}

/* An instance configured with other PWHASH_* parameters rehashes a password
 * made with the old ones at the next successful login; the hash records its
 * own parameters, so both instances keep accepting the password. */
Test(member, login_rehashes_a_password_with_outdated_parameters)
{
    Sb__Member__Member *m = new_member("rh", SB__COMMON__ROLE__USER);
    cr_assert(strstr(stored_hash(m->login_id), "$m=65536,t=2,") != NULL, "%s", stored_hash(m->login_id));

    char *log = temp_log();
    const char *extra[] = {"PWHASH_OPSLIMIT=3", "PWHASH_MEMLIMIT=16777216", "PWHASH_CONCURRENCY=1"};
    pid_t pid = spawn_member(6, extra, 3, log);
    char why[128];
    bool ready = sb_test_wait_ready(pid, admin_port() + 6, 60000, why, sizeof why);
    sb_status_t st = SB_UNKNOWN;
    sb_buf_t err = SB_BUF_INIT;
    if (ready) {
        char *target = sb_arena_printf(arena, "127.0.0.1:%d", grpc_port() + 6);
        Sb__Member__CheckCredentialsRequest req = SB__MEMBER__CHECK_CREDENTIALS_REQUEST__INIT;
        req.login_id = m->login_id;
        req.password = PASSWORD;
        ProtobufCMessage *resp = NULL;
        sb_call_opts_t o = {.timeout_ms = 15000};
        st = sb_rpc_call(sb_test_channel_as(target, "member", "auth"),
                         &sb__member__member_service__descriptor, "CheckCredentials", &req.base, arena,
                         &resp, &o, &err);
    }
    int rc = sb_test_stop(pid, "sb-member with other hashing parameters", 100000);
    char *text = slurp(log);
    unlink(log);
    cr_assert(ready, "second instance never ready (%s): %s", why, text);
    cr_assert_eq(st, SB_OK, "%s", err.buf);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, text);
    cr_assert(strstr(text, "opslimit 3, memlimit 16777216 bytes, 1 at once") != NULL, "%s", text);
    cr_assert(strstr(stored_hash(m->login_id), "$m=16384,t=3,") != NULL, "%s", stored_hash(m->login_id));

    /* back on the instance under test: accepted, and rehashed again */
    Sb__Member__CheckCredentialsResponse *cc = NULL;
    cr_assert_eq(check_credentials(m->login_id, PASSWORD, &cc, &err), SB_OK, "%s", err.buf);
    cr_assert(strstr(stored_hash(m->login_id), "$m=65536,t=2,") != NULL, "%s", stored_hash(m->login_id));
    sb_buf_release(&err);
}

/* The performance service end to end: the real sb-performance binary as a
 * child process against the real PostgreSQL, Redis and Kafka, driven over
 * gRPC with the access tokens the gateway would pass on (sb_test_token). Covers who may
 * register, edit, approve, reject and cancel; field validation naming the
 * JSON field (cases as a data table); visibility of unapproved performances;
 * keyset pagination with equal created_at values; and the performance.*
 * events written to the outbox (read back from database
 * sb_performance_<namespace>, sb_performance_test under ctest, and unpacked:
 * envelope, then payload). The reservation service is deliberately
 * unreachable (RESERVATION_ADDR=127.0.0.1:1) so an edit that needs its word
 * is refused with UNAVAILABLE.
 *
 * The child is started once for the whole run by a report hook in the runner
 * process (Criterion runs each test in a fresh process that inherits only the
 * environment) and stopped with SIGTERM after the last test (sb_test_proc.h).
 * Binary: $SB_BIN_DIR/services/performance/sb-performance, by default
 * ../services/... relative to ctest's working directory build/tests. Every
 * test uses fresh random planner ids, so reruns against the same database
 * pass. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "events.pb-c.h"
#include "performance.pb-c.h"
#include "reservation.pb-c.h"
#include "sb/log.h"
#include "sb/rpc.h"
#include "sb/util.h"
#include "sb_test_env.h"
#include "sb_test_pki.h"
#include "sb_test_proc.h"

#define PERF_ADDR "127.0.0.1:21071"
#define PERF2_ADDR "127.0.0.1:21072" /* second instance, with a stand-in reservation service */
#define FAKE_RESERVATION_ADDR "127.0.0.1:21079" /* the stand-in, run inside one test */
#define ENV_READY "SB_PERF_TEST_READY"          /* "1" or why not */
#define DAY_MS (24LL * 3600 * 1000)

/* ================================================================ children */

/* Two instances of the service on the same database: the main one sees an
 * unreachable reservation service; the second one (used by one test only)
 * asks a stand-in reservation service that the test runs itself. */
static pid_t perf_pid[2];

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    /* tokens are verified without an auth service here (sb_test_pki.h) */
    sb_test_denylist_complete();
    char db[1024], redis[1024], brokers[1024], log_level[64];
    snprintf(db, sizeof db, "DATABASE_URL=%s", test_db_url());
    snprintf(redis, sizeof redis, "REDIS_URL=%s", sb_cfg_str("REDIS_URL", "redis://127.0.0.1:6379"));
    snprintf(brokers, sizeof brokers, "KAFKA_BROKERS=%s", test_brokers());
    snprintf(log_level, sizeof log_level, "LOG_LEVEL=%s", sb_cfg_str("SB_TEST_LOG_LEVEL", "warn"));
    const char *main_env[] = {db,
                              redis,
                              brokers,
                              log_level,
                              "GRPC_PORT=21071",
                              "ADMIN_PORT=9221",
                              "RESERVATION_ADDR=127.0.0.1:1",
                              NULL};
    const char *second_env[] = {db,
                                redis,
                                brokers,
                                log_level,
                                "GRPC_PORT=21072",
                                "ADMIN_PORT=9222",
                                "RESERVATION_ADDR=" FAKE_RESERVATION_ADDR,
                                NULL};
    perf_pid[0] = sb_test_spawn("performance", main_env, NULL);
    perf_pid[1] = sb_test_spawn("performance", second_env, NULL);
    /* both ready (admin /readyz: gRPC up, database and Redis answer) within 90 s */
    const sb_test_child_t kids[] = {{perf_pid[0], 9221, "sb-performance (" PERF_ADDR ")"},
                                    {perf_pid[1], 9222, "sb-performance (" PERF2_ADDR ")"}};
    sb_test_await_ready(ENV_READY, kids, 2, 90 * 1000);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    sb_test_stop(perf_pid[1], "sb-performance (second)", 20000);
    sb_test_stop(perf_pid[0], "sb-performance", 20000);
}

/* ================================================================ per test */

static sb_arena_t *arena;
static PGconn *db;

static void setup(void)
{
    sb_log_init("test-performance");
    sb_log_set_level(SB_LOG_ERROR);
    const char *not_ready = sb_test_not_ready(ENV_READY);
    cr_assert(!not_ready, "service not running: %s", not_ready);
    arena = sb_arena_new();
    char name[64];
    const char *keys[] = {"dbname", "dbname", NULL};
    const char *vals[] = {test_db_url(), sb_test_db("performance", name, sizeof name), NULL};
    db = PQconnectdbParams(keys, vals, 1);
    cr_assert_eq(PQstatus(db), CONNECTION_OK, "%s", PQerrorMessage(db));
}

static void teardown(void)
{
    sb_channels_free_all();
    PQfinish(db);
    sb_arena_free(arena);
}

TestSuite(performance, .init = setup, .fini = teardown, .timeout = 120);

/* ---- identities ---- */

static char *new_id(void)
{
    char id[SB_UUID_LEN + 1];
    sb_uuid_v4(id);
    return sb_arena_strdup(arena, id);
}

/* A call carrying an access token for user_id with role, minted in a. */
static sb_call_opts_t as_in(sb_arena_t *a, const char *role, const char *user_id)
{
    return (sb_call_opts_t){.token = sb_test_token(a, user_id, role), .timeout_ms = 10000};
}

static sb_call_opts_t as(const char *role, const char *user_id)
{
    return as_in(arena, role, user_id);
}

static const char *admin_id(void)
{
    static char id[SB_UUID_LEN + 1];
    if (!*id)
        sb_uuid_v4(id);
    return id;
}

static sb_call_opts_t admin(void)
{
    return as("ADMIN", admin_id());
}

/* ---- calls ---- */

static sb_status_t call_at(const char *addr, const char *method, const ProtobufCMessage *req, void *resp,
                           const sb_call_opts_t *o, sb_buf_t *err)
{
    sb_buf_reset(err);
    *(void **)resp = NULL;
    return sb_rpc_call(sb_channel_get(addr), &sb__performance__performance_service__descriptor, method,
                       req, arena, (ProtobufCMessage **)resp, o, err);
}

static sb_status_t call(const char *method, const ProtobufCMessage *req, void *resp,
                        const sb_call_opts_t *o, sb_buf_t *err)
{
    return call_at(PERF_ADDR, method, req, resp, o, err);
}

#define CALL(method, req, resp, opts, err) call(method, &(req)->base, resp, opts, err)

static char *at(int64_t ms)
{
    char ts[32];
    sb_time_rfc3339(ms, ts);
    return sb_arena_strdup(arena, ts);
}

/* A valid request: n_sched schedules a day apart starting 30 days ahead
 * (whole seconds), grades VIP (100000 x 50) and R (50000 x 200). */
static Sb__Performance__CreatePerformanceRequest *valid_create(const char *title, size_t n_sched)
{
    Sb__Performance__CreatePerformanceRequest *r = sb_arena_alloc(arena, sizeof *r);
    sb__performance__create_performance_request__init(r);
    r->title = sb_arena_strdup(arena, title);
    r->description = "A test performance";
    r->venue = "Main Hall";
    r->category = "musical";
    r->running_minutes = 150;
    r->n_schedules = n_sched;
    r->schedules = sb_arena_alloc(arena, (n_sched ? n_sched : 1) * sizeof *r->schedules);
    int64_t base = (sb_now_ms() / 1000) * 1000 + 30 * DAY_MS;
    for (size_t i = 0; i < n_sched; i++) {
        Sb__Performance__Schedule *s = sb_arena_alloc(arena, sizeof *s);
        sb__performance__schedule__init(s);
        s->starts_at = at(base + (int64_t)i * DAY_MS);
        r->schedules[i] = s;
    }
    static const struct {
        const char *grade;
        int64_t price;
        int32_t seats;
    } g[] = {{"VIP", 100000, 50}, {"R", 50000, 200}};
    r->n_grades = 2;
    r->grades = sb_arena_alloc(arena, 2 * sizeof *r->grades);
    for (size_t i = 0; i < 2; i++) {
        Sb__Performance__SeatGrade *sg = sb_arena_alloc(arena, sizeof *sg);
        sb__performance__seat_grade__init(sg);
        sg->grade = (char *)g[i].grade;
        sg->price = g[i].price;
        sg->seat_count = g[i].seats;
        r->grades[i] = sg;
    }
    return r;
}

/* One schedule at `starts`. */
static Sb__Performance__CreatePerformanceRequest *valid_create_at(const char *title, char *starts)
{
    Sb__Performance__CreatePerformanceRequest *r = valid_create(title, 1);
    r->schedules[0]->starts_at = starts;
    return r;
}

static Sb__Performance__Performance *create_ok_req(const char *planner,
                                                   Sb__Performance__CreatePerformanceRequest *r)
{
    Sb__Performance__Performance *p;
    sb_buf_t err = SB_BUF_INIT;
    sb_call_opts_t o = as("PLANNER", planner);
    sb_status_t st = CALL("CreatePerformance", r, &p, &o, &err);
    cr_assert_eq(st, SB_OK, "CreatePerformance: %s %s", sb_status_name(st), err.buf);
    sb_buf_release(&err);
    return p;
}

static Sb__Performance__Performance *create_ok(const char *planner, const char *title, size_t n_sched)
{
    return create_ok_req(planner, valid_create(title, n_sched));
}

static sb_status_t approve(const char *id, const sb_call_opts_t *o, Sb__Performance__Performance **p,
                           sb_buf_t *err)
{
    Sb__Performance__ApprovePerformanceRequest req = SB__PERFORMANCE__APPROVE_PERFORMANCE_REQUEST__INIT;
    req.performance_id = (char *)id;
    req.reason = "reviewed"; /* an admin says why (the audit log) */
    return CALL("ApprovePerformance", &req, p, o, err);
}

static Sb__Performance__Performance *approve_ok(const char *id)
{
    Sb__Performance__Performance *p;
    sb_buf_t err = SB_BUF_INIT;
    sb_call_opts_t o = admin();
    sb_status_t st = approve(id, &o, &p, &err);
    cr_assert_eq(st, SB_OK, "ApprovePerformance: %s %s", sb_status_name(st), err.buf);
    sb_buf_release(&err);
    return p;
}

static sb_status_t get(const char *id, const sb_call_opts_t *o, Sb__Performance__Performance **p,
                       sb_buf_t *err)
{
    Sb__Performance__GetPerformanceRequest req = SB__PERFORMANCE__GET_PERFORMANCE_REQUEST__INIT;
    req.performance_id = (char *)id;
    return CALL("GetPerformance", &req, p, o, err);
}

static sb_status_t cancel(const char *id, const char *reason, const sb_call_opts_t *o,
                          Sb__Performance__Performance **p, sb_buf_t *err)
{
    Sb__Performance__CancelPerformanceRequest req = SB__PERFORMANCE__CANCEL_PERFORMANCE_REQUEST__INIT;
    req.performance_id = (char *)id;
    req.reason = (char *)reason;
    return CALL("CancelPerformance", &req, p, o, err);
}

/* An update request for id with nothing set yet. */
static Sb__Performance__UpdatePerformanceRequest *update_req(const char *id)
{
    Sb__Performance__UpdatePerformanceRequest *r = sb_arena_alloc(arena, sizeof *r);
    sb__performance__update_performance_request__init(r);
    r->performance_id = (char *)id;
    return r;
}

/* p's schedules as an update list (ids kept, nothing changed). */
static void keep_schedules(Sb__Performance__UpdatePerformanceRequest *r,
                           const Sb__Performance__Performance *p)
{
    r->n_schedules = p->n_schedules;
    r->schedules = sb_arena_alloc(arena, p->n_schedules * sizeof *r->schedules);
    for (size_t i = 0; i < p->n_schedules; i++) {
        Sb__Performance__Schedule *s = sb_arena_alloc(arena, sizeof *s);
        sb__performance__schedule__init(s);
        s->schedule_id = p->schedules[i]->schedule_id;
        r->schedules[i] = s;
    }
}

/* p's grades as an update list (a copy the test may change). */
static void keep_grades(Sb__Performance__UpdatePerformanceRequest *r,
                        const Sb__Performance__Performance *p, size_t extra)
{
    r->n_grades = p->n_grades;
    r->grades = sb_arena_alloc(arena, (p->n_grades + extra) * sizeof *r->grades);
    for (size_t i = 0; i < p->n_grades; i++) {
        Sb__Performance__SeatGrade *g = sb_arena_alloc(arena, sizeof *g);
        *g = *p->grades[i];
        r->grades[i] = g;
    }
}

/* ---- the service's database ---- */

static long long db_int(const char *sql, const char *p1, const char *p2)
{
    const char *p[] = {p1, p2};
    PGresult *r = PQexecParams(db, sql, p2 ? 2 : 1, NULL, p, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(db));
    long long v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static long long events_of(const char *aggregate_id, const char *type)
{
    return db_int("SELECT count(*) FROM sb_outbox WHERE aggregate_id = $1 AND type = $2", aggregate_id,
                  type);
}

/* The payload bytes of the latest outbox event of that type for the
 * aggregate, after checking there are `count` of them and its envelope. In
 * the arena. */
static ProtobufCBinaryData event_payload_of(const char *aggregate_id, const char *type, long long count)
{
    cr_assert_eq(events_of(aggregate_id, type), count, "%lld %s events expected for %s", count, type,
                 aggregate_id);
    const char *p[] = {aggregate_id, type};
    PGresult *r = PQexecParams(db,
                               "SELECT envelope FROM sb_outbox WHERE aggregate_id = $1 AND type = $2"
                               " ORDER BY id DESC LIMIT 1",
                               2, NULL, p, NULL, NULL, 1 /* binary: raw bytea */);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(db));
    Sb__Events__EventEnvelope *env =
        sb__events__event_envelope__unpack(sb_arena_pb_allocator(arena), (size_t)PQgetlength(r, 0, 0),
                                           (const uint8_t *)PQgetvalue(r, 0, 0));
    PQclear(r);
    cr_assert_not_null(env, "undecodable envelope");
    cr_assert_str_eq(env->type, type);
    cr_assert_str_eq(env->aggregate_id, aggregate_id);
    cr_assert_str_eq(env->producer, "performance");
    cr_assert_eq(strlen(env->event_id), SB_UUID_LEN);
    cr_assert(env->occurred_at && *env->occurred_at);
    return env->payload;
}

static ProtobufCBinaryData event_payload(const char *aggregate_id, const char *type)
{
    return event_payload_of(aggregate_id, type, 1);
}

/* ================================================================ tests */

Test(performance, only_a_planner_may_register)
{
    sb_buf_t err = SB_BUF_INIT;
    Sb__Performance__Performance *p;
    const char *roles[] = {"USER", "ADMIN"};
    for (size_t i = 0; i < 2; i++) {
        sb_call_opts_t o = as(roles[i], new_id());
        sb_status_t st = CALL("CreatePerformance", valid_create("Not mine", 1), &p, &o, &err);
        cr_assert_eq(st, SB_PERMISSION_DENIED, "%s: %s %s", roles[i], sb_status_name(st), err.buf);
    }
    sb_status_t st = CALL("CreatePerformance", valid_create("Anonymous", 1), &p, NULL, &err);
    cr_assert_eq(st, SB_UNAUTHENTICATED, "%s %s", sb_status_name(st), err.buf);
    sb_buf_release(&err);
}

/* ---- validation as data: one broken field per case ---- */

typedef Sb__Performance__CreatePerformanceRequest create_req_t;
typedef void (*breaker_fn)(create_req_t *r);
#define BREAKER(name, ...)                                                                              \
    static void name(create_req_t *r)                                                                   \
    {                                                                                                   \
        __VA_ARGS__;                                                                                    \
    }

static char *repeat(char c, size_t n)
{
    char *s = sb_arena_alloc(arena, n + 1);
    memset(s, c, n);
    return s;
}

BREAKER(title_empty, r->title = "")
BREAKER(title_long, r->title = repeat('t', 201))
BREAKER(title_blank, r->title = "   ")
BREAKER(title_control, r->title = "bad\x01title")
BREAKER(description_long, r->description = repeat('d', 5001))
BREAKER(venue_empty, r->venue = "")
BREAKER(category_long, r->category = repeat('c', 51))
BREAKER(minutes_zero, r->running_minutes = 0)
BREAKER(minutes_long, r->running_minutes = 1441)
BREAKER(no_schedules, r->n_schedules = 0)
BREAKER(schedule_past, r->schedules[1]->starts_at = at(sb_now_ms() - DAY_MS))
BREAKER(schedule_garbage, r->schedules[0]->starts_at = "next friday")
BREAKER(schedule_bad_date, r->schedules[0]->starts_at = "2031-02-30T19:00:00Z")
BREAKER(schedule_no_zone, r->schedules[0]->starts_at = "2031-03-01T19:00:00")
BREAKER(schedule_missing, r->schedules[1]->starts_at = "")
BREAKER(schedule_twice, r->schedules[1]->starts_at = r->schedules[0]->starts_at)
/* The same instant written in another zone is the same time. */
static void schedule_twice_other_zone(create_req_t *r)
{
    r->schedules[0]->starts_at = "2031-03-01T10:00:00Z";
    r->schedules[1]->starts_at = "2031-03-01T19:00:00+09:00";
}
BREAKER(schedule_with_id, r->schedules[0]->schedule_id = "3f1c6a8e-1111-4222-8333-444455556666")
BREAKER(schedule_venue_blank, r->schedules[1]->venue = " ")
static void too_many_schedules(create_req_t *r)
{
    size_t n = 101;
    r->schedules = sb_arena_alloc(arena, n * sizeof *r->schedules);
    for (size_t i = 0; i < n; i++) {
        Sb__Performance__Schedule *s = sb_arena_alloc(arena, sizeof *s);
        sb__performance__schedule__init(s);
        s->starts_at = at(sb_now_ms() + (int64_t)(i + 1) * DAY_MS);
        r->schedules[i] = s;
    }
    r->n_schedules = n;
}
BREAKER(no_grades, r->n_grades = 0)
BREAKER(price_negative, r->grades[0]->price = -1)
BREAKER(price_huge, r->grades[1]->price = 100000001)
BREAKER(grade_name_bad, r->grades[1]->grade = "R-1")
BREAKER(grade_name_long, r->grades[0]->grade = repeat('A', 21))
BREAKER(grade_duplicate, r->grades[1]->grade = "vip")
BREAKER(seats_zero, r->grades[0]->seat_count = 0)
BREAKER(seats_many, r->grades[1]->seat_count = 5001)
static void seats_total(create_req_t *r)
{
    size_t n = 5;
    static const char *names[] = {"A", "B", "C", "D", "E"};
    r->grades = sb_arena_alloc(arena, n * sizeof *r->grades);
    for (size_t i = 0; i < n; i++) {
        Sb__Performance__SeatGrade *g = sb_arena_alloc(arena, sizeof *g);
        sb__performance__seat_grade__init(g);
        g->grade = (char *)names[i];
        g->price = 1000;
        g->seat_count = 4001; /* 20005 in all */
        r->grades[i] = g;
    }
    r->n_grades = n;
}

static const struct bad_case {
    const char *name;
    breaker_fn breaker;
    const char *message_prefix;
} bad_cases[] = {
    {"empty title", title_empty, "title: must be 1-200 characters"},
    {"long title", title_long, "title: must be 1-200 characters"},
    {"blank title", title_blank, "title: must not be blank"},
    {"control character", title_control, "title: "},
    {"long description", description_long, "description: must be at most 5000 characters"},
    {"no venue", venue_empty, "venue: must be 1-200 characters"},
    {"long category", category_long, "category: must be 1-50 characters"},
    {"zero minutes", minutes_zero, "runningMinutes: must be 1-1440"},
    {"too many minutes", minutes_long, "runningMinutes: must be 1-1440"},
    {"no schedules", no_schedules, "schedules: must have 1-100 entries"},
    {"101 schedules", too_many_schedules, "schedules: must have 1-100 entries"},
    {"past schedule", schedule_past, "schedules[1].startsAt: must be in the future"},
    {"garbage time", schedule_garbage, "schedules[0].startsAt: must be an RFC 3339 timestamp"},
    {"30 February", schedule_bad_date, "schedules[0].startsAt: must be an RFC 3339 timestamp"},
    {"no time zone", schedule_no_zone, "schedules[0].startsAt: must be an RFC 3339 timestamp"},
    {"missing time", schedule_missing, "schedules[1].startsAt: is required"},
    {"same time twice", schedule_twice, "schedules[1].startsAt: same time as schedules[0]"},
    {"same instant in two zones", schedule_twice_other_zone,
     "schedules[1].startsAt: same time as schedules[0]"},
    {"schedule id on create", schedule_with_id, "schedules[0].scheduleId: must be empty"},
    {"blank schedule venue", schedule_venue_blank, "schedules[1].venue: must not be blank"},
    {"no grades", no_grades, "grades: must have 1-20 entries"},
    {"negative price", price_negative, "grades[0].price: must be >= 0"},
    {"huge price", price_huge, "grades[1].price: must be <= 100000000"},
    {"grade name punctuation", grade_name_bad, "grades[1].grade: must be 1-20 letters or digits"},
    {"grade name long", grade_name_long, "grades[0].grade: must be 1-20 letters or digits"},
    {"duplicate grade", grade_duplicate, "grades[1].grade: duplicate of grades[0]"},
    {"zero seats", seats_zero, "grades[0].seatCount: must be 1-5000"},
    {"too many seats", seats_many, "grades[1].seatCount: must be 1-5000"},
    {"schedule over 20000 seats", seats_total, "grades: the seatCounts add up to 20005"},
};

Test(performance, invalid_input_names_the_field_and_changes_nothing)
{
    const char *planner = new_id();
    sb_call_opts_t o = as("PLANNER", planner);
    sb_buf_t err = SB_BUF_INIT;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *c = &bad_cases[i];
        Sb__Performance__CreatePerformanceRequest *r = valid_create("Broken", 3);
        c->breaker(r);
        Sb__Performance__Performance *p;
        sb_status_t st = CALL("CreatePerformance", r, &p, &o, &err);
        cr_expect_eq(st, SB_INVALID_ARGUMENT, "%s: %s %s", c->name, sb_status_name(st), err.buf);
        cr_expect(!strncmp(err.buf, c->message_prefix, strlen(c->message_prefix)),
                  "%s: message \"%s\" should start with \"%s\"", c->name, err.buf, c->message_prefix);
    }
    cr_assert_eq(db_int("SELECT count(*) FROM performances WHERE planner_id = $1::uuid", planner, NULL),
                 0, "a refused request stored something");
    sb_buf_release(&err);
}

Test(performance, create_returns_the_pending_performance_with_schedule_ids)
{
    const char *planner = new_id();
    Sb__Performance__CreatePerformanceRequest *r = valid_create("Les Miserables", 2);
    r->schedules[0]->starts_at = "2031-03-01T19:30:00.250+09:00"; /* normalised to UTC */
    r->schedules[1]->venue = "Small Hall";
    sb_call_opts_t o = as("PLANNER", planner);
    Sb__Performance__Performance *p;
    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st = CALL("CreatePerformance", r, &p, &o, &err);
    cr_assert_eq(st, SB_OK, "%s %s", sb_status_name(st), err.buf);

    cr_assert_eq(strlen(p->performance_id), SB_UUID_LEN);
    cr_assert_str_eq(p->planner_id, planner);
    cr_assert_eq(p->status, SB__PERFORMANCE__PERFORMANCE_STATUS__PENDING_APPROVAL);
    cr_assert_str_eq(p->title, "Les Miserables");
    cr_assert_str_eq(p->venue, "Main Hall");
    cr_assert_eq(p->running_minutes, 150);
    cr_assert(*p->created_at && *p->updated_at);
    cr_assert_str_eq(p->approved_at, "");
    cr_assert_eq(p->n_schedules, 2);
    /* by time: the 2031 one comes after the one 30 days from now */
    cr_assert_str_eq(p->schedules[0]->starts_at, r->schedules[1]->starts_at);
    cr_assert_str_eq(p->schedules[0]->venue, "Small Hall");
    cr_assert_str_eq(p->schedules[1]->starts_at, "2031-03-01T10:30:00.250Z");
    cr_assert_str_eq(p->schedules[1]->venue, "Main Hall", "default venue: the performance's");
    cr_assert_eq(strlen(p->schedules[0]->schedule_id), SB_UUID_LEN);
    cr_assert_str_neq(p->schedules[0]->schedule_id, p->schedules[1]->schedule_id);
    cr_assert_eq(p->n_grades, 2);
    cr_assert_str_eq(p->grades[0]->grade, "VIP");
    cr_assert_eq(p->grades[0]->price, 100000);
    cr_assert_eq(p->grades[0]->seat_count, 50);
    cr_assert_str_eq(p->grades[1]->grade, "R");
    cr_assert_eq(db_int("SELECT version FROM performances WHERE performance_id = $1::uuid",
                        p->performance_id, NULL),
                 1);
    cr_assert_eq(events_of(p->performance_id, "performance.approved"), 0);

    Sb__Performance__Performance *again;
    st = get(p->performance_id, &o, &again, &err);
    cr_assert_eq(st, SB_OK, "%s %s", sb_status_name(st), err.buf);
    cr_assert_str_eq(again->schedules[1]->schedule_id, p->schedules[1]->schedule_id);
    cr_assert_str_eq(again->created_at, p->created_at);
    sb_buf_release(&err);
}

Test(performance, only_the_owning_planner_may_edit)
{
    const char *owner = new_id();
    Sb__Performance__Performance *p = create_ok(owner, "Mine", 1);
    Sb__Performance__UpdatePerformanceRequest *u = update_req(p->performance_id);
    u->title = "Stolen";
    Sb__Performance__Performance *out;
    sb_buf_t err = SB_BUF_INIT;

    sb_call_opts_t other = as("PLANNER", new_id());
    sb_status_t st = CALL("UpdatePerformance", u, &out, &other, &err);
    cr_assert_eq(st, SB_PERMISSION_DENIED, "other planner: %s %s", sb_status_name(st), err.buf);
    sb_call_opts_t adm = admin();
    st = CALL("UpdatePerformance", u, &out, &adm, &err);
    cr_assert_eq(st, SB_PERMISSION_DENIED, "admin: %s %s", sb_status_name(st), err.buf);

    sb_call_opts_t o = as("PLANNER", owner);
    u->performance_id = new_id();
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_NOT_FOUND, "missing: %s %s", sb_status_name(st), err.buf);
    u->performance_id = "not-a-uuid";
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_INVALID_ARGUMENT, "malformed: %s %s", sb_status_name(st), err.buf);

    u->performance_id = p->performance_id;
    u->title = "Mine, renamed";
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_OK, "owner: %s %s", sb_status_name(st), err.buf);
    cr_assert_str_eq(out->title, "Mine, renamed");
    cr_assert_str_eq(out->venue, "Main Hall", "fields not given stay");
    cr_assert_eq(out->n_schedules, 1);
    cr_assert_eq(out->status, SB__PERFORMANCE__PERFORMANCE_STATUS__PENDING_APPROVAL);
    sb_buf_release(&err);
}

Test(performance, edits_are_validated_like_registrations)
{
    const char *planner = new_id();
    Sb__Performance__Performance *p = create_ok(planner, "Edit checks", 2);
    sb_call_opts_t o = as("PLANNER", planner);
    sb_buf_t err = SB_BUF_INIT;
    Sb__Performance__Performance *out;

    Sb__Performance__UpdatePerformanceRequest *u = update_req(p->performance_id);
    sb_status_t st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_INVALID_ARGUMENT, "nothing: %s %s", sb_status_name(st), err.buf);
    u->running_minutes = -5;
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_INVALID_ARGUMENT, "%s %s", sb_status_name(st), err.buf);
    cr_assert(!strncmp(err.buf, "runningMinutes:", 15), "%s", err.buf);

    u = update_req(p->performance_id);
    keep_schedules(u, p);
    u->schedules[1]->schedule_id = new_id();
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_INVALID_ARGUMENT, "%s %s", sb_status_name(st), err.buf);
    cr_assert(!strncmp(err.buf, "schedules[1].scheduleId:", 24), "%s", err.buf);
    u->schedules[1]->schedule_id = p->schedules[0]->schedule_id;
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_INVALID_ARGUMENT, "listed twice: %s %s", sb_status_name(st), err.buf);
    u->schedules[1]->schedule_id = p->schedules[1]->schedule_id;
    u->schedules[1]->starts_at = p->schedules[0]->starts_at; /* clashes with the kept one */
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_INVALID_ARGUMENT, "%s %s", sb_status_name(st), err.buf);
    cr_assert(!strncmp(err.buf, "schedules[1].startsAt: same time as schedules[0]", 48), "%s", err.buf);

    /* while pending, swapping two times and dropping nothing is fine */
    u->schedules[0]->starts_at = p->schedules[1]->starts_at;
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_OK, "swap: %s %s", sb_status_name(st), err.buf);
    cr_assert_str_eq(out->schedules[0]->schedule_id, p->schedules[1]->schedule_id);
    /* and removing a schedule of a pending performance too */
    u = update_req(p->performance_id);
    keep_schedules(u, p);
    u->n_schedules = 1;
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_OK, "remove: %s %s", sb_status_name(st), err.buf);
    cr_assert_eq(out->n_schedules, 1);
    cr_assert_str_eq(out->schedules[0]->schedule_id, p->schedules[0]->schedule_id);
    sb_buf_release(&err);
}

Test(performance, only_an_admin_may_approve_and_approval_writes_the_snapshot_event)
{
    const char *planner = new_id();
    Sb__Performance__Performance *p = create_ok(planner, "Approve me", 2);
    Sb__Performance__Performance *out;
    sb_buf_t err = SB_BUF_INIT;

    sb_call_opts_t o = as("PLANNER", planner);
    sb_status_t st = approve(p->performance_id, &o, &out, &err);
    cr_assert_eq(st, SB_PERMISSION_DENIED, "planner: %s %s", sb_status_name(st), err.buf);
    cr_assert_eq(events_of(p->performance_id, "performance.approved"), 0);

    out = approve_ok(p->performance_id);
    cr_assert_eq(out->status, SB__PERFORMANCE__PERFORMANCE_STATUS__APPROVED);
    cr_assert(*out->approved_at);

    ProtobufCBinaryData payload = event_payload(p->performance_id, "performance.approved");
    Sb__Events__PerformanceApproved *ev = sb__events__performance_approved__unpack(
        sb_arena_pb_allocator(arena), payload.len, payload.data);
    cr_assert_not_null(ev);
    const Sb__Events__PerformanceSnapshot *s = ev->performance;
    cr_assert_not_null(s);
    cr_assert_str_eq(s->performance_id, p->performance_id);
    cr_assert_str_eq(s->planner_id, planner);
    cr_assert_str_eq(s->title, "Approve me");
    cr_assert_str_eq(s->venue, "Main Hall");
    cr_assert_str_eq(s->category, "musical");
    cr_assert_eq(s->running_minutes, 150);
    cr_assert_eq(s->version, 1);
    cr_assert_eq(s->n_schedules, 2);
    for (size_t i = 0; i < 2; i++) {
        cr_assert_str_eq(s->schedules[i]->schedule_id, p->schedules[i]->schedule_id);
        cr_assert_str_eq(s->schedules[i]->starts_at, p->schedules[i]->starts_at);
        cr_assert_str_eq(s->schedules[i]->venue, "Main Hall");
    }
    cr_assert_eq(s->n_grades, 2);
    cr_assert_str_eq(s->grades[0]->grade, "VIP");
    cr_assert_eq(s->grades[0]->price, 100000);
    cr_assert_eq(s->grades[0]->seat_count, 50);
    cr_assert_str_eq(s->grades[1]->grade, "R");
    cr_assert_eq(s->grades[1]->price, 50000);
    cr_assert_eq(s->grades[1]->seat_count, 200);

    sb_call_opts_t adm = admin();
    st = approve(p->performance_id, &adm, &out, &err);
    cr_assert_eq(st, SB_FAILED_PRECONDITION, "twice: %s %s", sb_status_name(st), err.buf);
    cr_assert(strstr(err.buf, "APPROVED"), "names the current status: %s", err.buf);
    cr_assert_eq(events_of(p->performance_id, "performance.approved"), 1);
    sb_buf_release(&err);
}

struct racer {
    const char *id;
    const char *method;
    sb_status_t st;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    sb_arena_t *a = sb_arena_new();
    sb_buf_t err = SB_BUF_INIT;
    sb_call_opts_t o = as_in(a, "ADMIN", admin_id());
    ProtobufCMessage *resp;
    if (!strcmp(r->method, "ApprovePerformance")) {
        Sb__Performance__ApprovePerformanceRequest req =
            SB__PERFORMANCE__APPROVE_PERFORMANCE_REQUEST__INIT;
        req.performance_id = (char *)r->id;
        req.reason = "reviewed";
        r->st = sb_rpc_call(sb_channel_get(PERF_ADDR), &sb__performance__performance_service__descriptor,
                            r->method, &req.base, a, &resp, &o, &err);
    } else {
        Sb__Performance__CancelPerformanceRequest req =
            SB__PERFORMANCE__CANCEL_PERFORMANCE_REQUEST__INIT;
        req.performance_id = (char *)r->id;
        req.reason = "venue lost";
        r->st = sb_rpc_call(sb_channel_get(PERF_ADDR), &sb__performance__performance_service__descriptor,
                            r->method, &req.base, a, &resp, &o, &err);
    }
    sb_buf_release(&err);
    sb_arena_free(a);
    return NULL;
}

Test(performance, concurrent_approvals_only_one_wins)
{
    for (int round = 0; round < 5; round++) {
        Sb__Performance__Performance *p = create_ok(new_id(), "Race", 1);
        struct racer r[4];
        pthread_t t[4];
        for (int i = 0; i < 4; i++) {
            r[i] = (struct racer){p->performance_id, "ApprovePerformance", SB_UNKNOWN};
            pthread_create(&t[i], NULL, race, &r[i]);
        }
        int ok = 0;
        for (int i = 0; i < 4; i++) {
            pthread_join(t[i], NULL);
            cr_assert(r[i].st == SB_OK || r[i].st == SB_FAILED_PRECONDITION, "%s",
                      sb_status_name(r[i].st));
            ok += r[i].st == SB_OK;
        }
        cr_assert_eq(ok, 1, "round %d: %d approvals won", round, ok);
        cr_assert_eq(events_of(p->performance_id, "performance.approved"), 1);
    }
}

/* Whichever commits first, the outcome is one of the two serial orders:
 * cancelled before approval (approve refused, no event), or approved then
 * cancelled (both events). Never an approval event without its cancellation. */
Test(performance, concurrent_approve_and_cancel_serialise)
{
    for (int round = 0; round < 5; round++) {
        Sb__Performance__Performance *p = create_ok(new_id(), "Race", 1);
        struct racer r[2] = {{p->performance_id, "ApprovePerformance", SB_UNKNOWN},
                             {p->performance_id, "CancelPerformance", SB_UNKNOWN}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, race, &r[i]);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        cr_assert_eq(r[1].st, SB_OK, "cancel: %s", sb_status_name(r[1].st));
        long long approved = events_of(p->performance_id, "performance.approved");
        long long cancelled = events_of(p->performance_id, "performance.cancelled");
        if (r[0].st == SB_OK)
            cr_assert(approved == 1 && cancelled == 1, "approved first: %lld/%lld events", approved,
                      cancelled);
        else
            cr_assert(r[0].st == SB_FAILED_PRECONDITION && approved == 0 && cancelled == 0,
                      "cancelled first: %s, %lld/%lld events", sb_status_name(r[0].st), approved,
                      cancelled);
    }
}

Test(performance, reject_needs_a_reason_and_an_edit_resubmits)
{
    const char *planner = new_id();
    Sb__Performance__Performance *p = create_ok(planner, "Reject me", 1);
    Sb__Performance__RejectPerformanceRequest req = SB__PERFORMANCE__REJECT_PERFORMANCE_REQUEST__INIT;
    req.performance_id = p->performance_id;
    Sb__Performance__Performance *out;
    sb_buf_t err = SB_BUF_INIT;
    sb_call_opts_t adm = admin(), o = as("PLANNER", planner);

    req.reason = "";
    sb_status_t st = CALL("RejectPerformance", &req, &out, &adm, &err);
    cr_assert_eq(st, SB_INVALID_ARGUMENT, "no reason: %s %s", sb_status_name(st), err.buf);
    cr_assert(!strncmp(err.buf, "reason:", 7), "%s", err.buf);
    req.reason = repeat('x', 501);
    st = CALL("RejectPerformance", &req, &out, &adm, &err);
    cr_assert_eq(st, SB_INVALID_ARGUMENT, "long reason: %s %s", sb_status_name(st), err.buf);
    req.reason = "The venue is not confirmed";
    st = CALL("RejectPerformance", &req, &out, &o, &err);
    cr_assert_eq(st, SB_PERMISSION_DENIED, "planner: %s %s", sb_status_name(st), err.buf);

    st = CALL("RejectPerformance", &req, &out, &adm, &err);
    cr_assert_eq(st, SB_OK, "%s %s", sb_status_name(st), err.buf);
    cr_assert_eq(out->status, SB__PERFORMANCE__PERFORMANCE_STATUS__REJECTED);
    cr_assert_str_eq(out->reject_reason, "The venue is not confirmed");
    st = approve(p->performance_id, &adm, &out, &err);
    cr_assert_eq(st, SB_FAILED_PRECONDITION, "approve rejected: %s %s", sb_status_name(st), err.buf);
    cr_assert(strstr(err.buf, "REJECTED"), "%s", err.buf);

    Sb__Performance__UpdatePerformanceRequest *u = update_req(p->performance_id);
    u->venue = "Confirmed Hall";
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_OK, "%s %s", sb_status_name(st), err.buf);
    cr_assert_eq(out->status, SB__PERFORMANCE__PERFORMANCE_STATUS__PENDING_APPROVAL, "resubmitted");
    cr_assert_str_eq(out->schedules[0]->venue, "Confirmed Hall");
    approve_ok(p->performance_id);
    sb_buf_release(&err);
}

static bool listed(const Sb__Performance__ListPerformancesResponse *r, const char *id)
{
    for (size_t i = 0; i < r->n_performances; i++)
        if (!strcmp(r->performances[i]->performance_id, id))
            return true;
    return false;
}

static Sb__Performance__ListPerformancesResponse *list_by(const char *planner, const sb_call_opts_t *o)
{
    Sb__Performance__ListPerformancesRequest req = SB__PERFORMANCE__LIST_PERFORMANCES_REQUEST__INIT;
    req.planner_id = (char *)planner;
    req.page_size = 100;
    Sb__Performance__ListPerformancesResponse *resp;
    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st = CALL("ListPerformances", &req, &resp, o, &err);
    cr_assert_eq(st, SB_OK, "%s %s", sb_status_name(st), err.buf);
    sb_buf_release(&err);
    return resp;
}

Test(performance, pending_is_invisible_to_others)
{
    const char *planner = new_id();
    Sb__Performance__Performance *p = create_ok(planner, "Secret", 1);
    Sb__Performance__Performance *out;
    sb_buf_t err = SB_BUF_INIT;
    sb_call_opts_t o = as("PLANNER", planner), other = as("PLANNER", new_id()),
                   user = as("USER", new_id()), adm = admin();

    cr_assert_eq(get(p->performance_id, &o, &out, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(get(p->performance_id, &adm, &out, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(get(p->performance_id, &other, &out, &err), SB_NOT_FOUND, "%s", err.buf);
    cr_assert_eq(get(p->performance_id, &user, &out, &err), SB_NOT_FOUND, "%s", err.buf);
    cr_assert_eq(get(p->performance_id, NULL, &out, &err), SB_NOT_FOUND, "%s", err.buf);
    cr_assert_eq(get("nope", NULL, &out, &err), SB_INVALID_ARGUMENT, "%s", err.buf);

    cr_assert(listed(list_by(planner, &o), p->performance_id));
    cr_assert(listed(list_by(planner, &adm), p->performance_id));
    cr_assert(!listed(list_by(planner, &other), p->performance_id));
    cr_assert(!listed(list_by(planner, NULL), p->performance_id));
    cr_assert(!listed(list_by(NULL, &user), p->performance_id));

    approve_ok(p->performance_id);
    cr_assert_eq(get(p->performance_id, &user, &out, &err), SB_OK, "%s", err.buf);
    cr_assert(listed(list_by(planner, NULL), p->performance_id));
    cr_assert(listed(list_by(planner, &other), p->performance_id));
    sb_buf_release(&err);
}

Test(performance, pages_of_two_walk_every_item_once_even_with_equal_created_at)
{
    const char *planner = new_id();
    enum { N = 7 };
    char *ids[N];
    for (int i = 0; i < N; i++)
        ids[i] = create_ok(planner, sb_arena_printf(arena, "Paged %d", i), 1)->performance_id;
    /* Five of them share one created_at: only the id breaks the tie. */
    PGresult *r =
        PQexecParams(db,
                     "UPDATE performances SET created_at = '2030-01-01T00:00:00.123456Z'"
                     " WHERE planner_id = $1::uuid AND title IN ('Paged 1', 'Paged 2', 'Paged 3',"
                     " 'Paged 4', 'Paged 5')",
                     1, NULL, (const char *const[]){planner}, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(db));
    PQclear(r);

    sb_call_opts_t o = as("PLANNER", planner);
    sb_buf_t err = SB_BUF_INIT;
    int seen[N] = {0};
    int pages = 0, items = 0;
    char *token = "";
    do {
        Sb__Performance__ListPerformancesRequest req = SB__PERFORMANCE__LIST_PERFORMANCES_REQUEST__INIT;
        req.planner_id = (char *)planner;
        req.page_size = 2;
        req.page_token = token;
        Sb__Performance__ListPerformancesResponse *resp;
        sb_status_t st = CALL("ListPerformances", &req, &resp, &o, &err);
        cr_assert_eq(st, SB_OK, "page %d: %s %s", pages, sb_status_name(st), err.buf);
        cr_assert(resp->n_performances <= 2);
        for (size_t i = 0; i < resp->n_performances; i++) {
            int k = -1;
            for (int j = 0; j < N; j++)
                if (!strcmp(ids[j], resp->performances[i]->performance_id))
                    k = j;
            cr_assert(k >= 0, "a performance of another planner was listed");
            seen[k]++;
            items++;
        }
        token = resp->next_page_token;
        pages++;
        cr_assert(pages <= N, "pagination does not end");
    } while (*token);
    cr_assert_eq(items, N);
    for (int j = 0; j < N; j++)
        cr_assert_eq(seen[j], 1, "item %d seen %d times", j, seen[j]);
    cr_assert_eq(pages, 4);

    Sb__Performance__ListPerformancesRequest bad = SB__PERFORMANCE__LIST_PERFORMANCES_REQUEST__INIT;
    Sb__Performance__ListPerformancesResponse *resp;
    const char *tokens[] = {"garbage!", "bm90LWEtdG9rZW4", "MTIzOm5vdC1hLXV1aWQ"};
    for (size_t i = 0; i < 3; i++) {
        bad.page_token = (char *)tokens[i];
        sb_status_t st = CALL("ListPerformances", &bad, &resp, &o, &err);
        cr_assert_eq(st, SB_INVALID_ARGUMENT, "token %s: %s %s", tokens[i], sb_status_name(st), err.buf);
        cr_assert(!strncmp(err.buf, "pageToken:", 10), "%s", err.buf);
    }
    bad.page_token = "";
    bad.page_size = -1;
    cr_assert_eq(CALL("ListPerformances", &bad, &resp, &o, &err), SB_INVALID_ARGUMENT);
    bad.page_size = 1000; /* clamped to 100 */
    cr_assert_eq(CALL("ListPerformances", &bad, &resp, &o, &err), SB_OK, "%s", err.buf);
    cr_assert(resp->n_performances <= 100);
    sb_buf_release(&err);
}

Test(performance, list_filters_by_status_category_and_schedule_window)
{
    const char *planner = new_id();
    sb_call_opts_t o = as("PLANNER", planner);
    char *starts = at(sb_now_ms() / 1000 * 1000 + 30 * DAY_MS);
    Sb__Performance__Performance *a = create_ok_req(planner, valid_create_at("Window A", starts));
    Sb__Performance__Performance *b = create_ok_req(planner, valid_create_at("Window B", starts));
    approve_ok(b->performance_id);
    sb_buf_t err = SB_BUF_INIT;

    Sb__Performance__ListPerformancesRequest req = SB__PERFORMANCE__LIST_PERFORMANCES_REQUEST__INIT;
    req.planner_id = (char *)planner;
    req.status = SB__PERFORMANCE__PERFORMANCE_STATUS__APPROVED;
    Sb__Performance__ListPerformancesResponse *resp;
    cr_assert_eq(CALL("ListPerformances", &req, &resp, &o, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(resp->n_performances, 1);
    cr_assert_str_eq(resp->performances[0]->performance_id, b->performance_id);
    cr_assert_str_eq(resp->next_page_token, "");

    req.status = 0;
    req.category = "opera";
    cr_assert_eq(CALL("ListPerformances", &req, &resp, &o, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(resp->n_performances, 0);

    req.category = "";
    req.from = a->schedules[0]->starts_at; /* both start at the same time */
    req.to = at(sb_now_ms() + 31 * DAY_MS);
    cr_assert_eq(CALL("ListPerformances", &req, &resp, &o, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(resp->n_performances, 2);
    req.to = req.from; /* [from, from) is empty: refused */
    cr_assert_eq(CALL("ListPerformances", &req, &resp, &o, &err), SB_INVALID_ARGUMENT);
    req.from = at(sb_now_ms() + 40 * DAY_MS);
    req.to = "";
    cr_assert_eq(CALL("ListPerformances", &req, &resp, &o, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(resp->n_performances, 0);
    req.from = "yesterday";
    cr_assert_eq(CALL("ListPerformances", &req, &resp, &o, &err), SB_INVALID_ARGUMENT);
    cr_assert(!strncmp(err.buf, "from:", 5), "%s", err.buf);
    sb_buf_release(&err);
}

Test(performance, moving_a_schedule_of_an_approved_performance_emits_changed)
{
    const char *planner = new_id();
    Sb__Performance__Performance *p = create_ok(planner, "Moving", 2);
    approve_ok(p->performance_id);
    sb_call_opts_t o = as("PLANNER", planner);
    sb_buf_t err = SB_BUF_INIT;
    Sb__Performance__Performance *out;

    /* removing a schedule of an approved performance is refused */
    Sb__Performance__UpdatePerformanceRequest *u = update_req(p->performance_id);
    keep_schedules(u, p);
    u->n_schedules = 1;
    sb_status_t st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_FAILED_PRECONDITION, "%s %s", sb_status_name(st), err.buf);
    cr_assert(strstr(err.buf, "cancel the performance instead"), "%s", err.buf);

    /* moving one: the other keeps its id and time */
    u = update_req(p->performance_id);
    keep_schedules(u, p);
    const char *moved_to = at(sb_now_ms() / 1000 * 1000 + 60 * DAY_MS);
    u->schedules[1]->starts_at = (char *)moved_to;
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_OK, "%s %s", sb_status_name(st), err.buf);
    cr_assert_eq(out->status, SB__PERFORMANCE__PERFORMANCE_STATUS__APPROVED);
    cr_assert_eq(out->n_schedules, 2);
    cr_assert_str_eq(out->schedules[1]->schedule_id, p->schedules[1]->schedule_id);
    cr_assert_str_eq(out->schedules[1]->starts_at, moved_to);
    cr_assert_str_eq(out->schedules[0]->starts_at, p->schedules[0]->starts_at);

    ProtobufCBinaryData payload = event_payload(p->performance_id, "performance.changed");
    Sb__Events__PerformanceChanged *ev =
        sb__events__performance_changed__unpack(sb_arena_pb_allocator(arena), payload.len, payload.data);
    cr_assert_not_null(ev);
    cr_assert_eq(ev->n_changed_schedule_ids, 1);
    cr_assert_str_eq(ev->changed_schedule_ids[0], p->schedules[1]->schedule_id);
    cr_assert(ev->summary && *ev->summary);
    cr_assert_eq(ev->performance->version, 2);
    cr_assert_eq(ev->performance->n_schedules, 2);
    cr_assert_str_eq(ev->performance->schedules[1]->starts_at, moved_to);

    /* moving it into the past is refused and changes nothing */
    u->schedules[1]->starts_at = at(sb_now_ms() - DAY_MS);
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_INVALID_ARGUMENT, "%s %s", sb_status_name(st), err.buf);
    cr_assert(!strncmp(err.buf, "schedules[1].startsAt:", 22), "%s", err.buf);
    cr_assert_eq(events_of(p->performance_id, "performance.changed"), 1);

    /* a new venue for the performance moves the schedules that use it;
     * an added schedule is no change to anyone's ticket */
    u = update_req(p->performance_id);
    u->schedules = sb_arena_alloc(arena, 3 * sizeof *u->schedules);
    for (size_t i = 0; i < 2; i++) {
        u->schedules[i] = sb_arena_alloc(arena, sizeof **u->schedules);
        sb__performance__schedule__init(u->schedules[i]);
        u->schedules[i]->schedule_id = p->schedules[i]->schedule_id;
    }
    u->schedules[0]->venue = "Pinned Hall";
    u->schedules[2] = sb_arena_alloc(arena, sizeof **u->schedules);
    sb__performance__schedule__init(u->schedules[2]);
    u->schedules[2]->starts_at = at(sb_now_ms() / 1000 * 1000 + 90 * DAY_MS);
    u->n_schedules = 3;
    u->venue = "New Hall";
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_OK, "%s %s", sb_status_name(st), err.buf);
    cr_assert_eq(out->n_schedules, 3);
    cr_assert_str_eq(out->schedules[0]->venue, "Pinned Hall");
    cr_assert_str_eq(out->schedules[1]->venue, "New Hall");
    cr_assert_str_eq(out->schedules[2]->venue, "New Hall");
    payload = event_payload_of(p->performance_id, "performance.changed", 2);
    ev =
        sb__events__performance_changed__unpack(sb_arena_pb_allocator(arena), payload.len, payload.data);
    cr_assert_not_null(ev);
    cr_assert_eq(ev->performance->version, 3);
    cr_assert_eq(ev->n_changed_schedule_ids, 2, "both existing schedules changed venue");
    cr_assert_str_eq(ev->performance->venue, "New Hall");
    cr_assert_eq(ev->performance->n_schedules, 3);
    sb_buf_release(&err);
}

Test(performance, repricing_a_grade_needs_the_reservation_service)
{
    const char *planner = new_id();
    Sb__Performance__Performance *p = create_ok(planner, "Repricing", 1);
    sb_call_opts_t o = as("PLANNER", planner);
    sb_buf_t err = SB_BUF_INIT;
    Sb__Performance__Performance *out;

    /* while pending, prices are the planner's to change */
    Sb__Performance__UpdatePerformanceRequest *u = update_req(p->performance_id);
    keep_grades(u, p, 0);
    u->grades[0]->price = 120000;
    sb_status_t st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_OK, "%s %s", sb_status_name(st), err.buf);
    cr_assert_eq(out->grades[0]->price, 120000);
    Sb__Performance__Performance *repriced = out;
    approve_ok(p->performance_id);

    /* approved: the reservation service (unreachable here) must say no seat is taken */
    u->grades[0]->price = 130000;
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_UNAVAILABLE, "%s %s", sb_status_name(st), err.buf);
    u->n_grades = 1; /* removing grade R */
    u->grades[0]->price = 120000;
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_UNAVAILABLE, "%s %s", sb_status_name(st), err.buf);
    cr_assert_eq(events_of(p->performance_id, "performance.changed"), 0);

    /* adding a grade touches no sold seat */
    keep_grades(u, repriced, 1);
    Sb__Performance__SeatGrade *g = sb_arena_alloc(arena, sizeof *g);
    sb__performance__seat_grade__init(g);
    g->grade = "S";
    g->price = 30000;
    g->seat_count = 100;
    u->grades[u->n_grades++] = g;
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_OK, "%s %s", sb_status_name(st), err.buf);
    cr_assert_eq(out->n_grades, 3);
    ProtobufCBinaryData payload = event_payload(p->performance_id, "performance.changed");
    Sb__Events__PerformanceChanged *ev =
        sb__events__performance_changed__unpack(sb_arena_pb_allocator(arena), payload.len, payload.data);
    cr_assert_not_null(ev);
    cr_assert_eq(ev->n_changed_schedule_ids, 0);
    cr_assert_eq(ev->performance->n_grades, 3);
    cr_assert_eq(ev->performance->version, 2);
    sb_buf_release(&err);
}

Test(performance, cancelling_an_approved_performance_emits_cancelled_once)
{
    const char *planner = new_id();
    Sb__Performance__Performance *p = create_ok(planner, "Cancel me", 1);
    approve_ok(p->performance_id);
    sb_call_opts_t o = as("PLANNER", planner), other = as("PLANNER", new_id()),
                   user = as("USER", new_id());
    sb_buf_t err = SB_BUF_INIT;
    Sb__Performance__Performance *out;

    cr_assert_eq(cancel(p->performance_id, "", &other, &out, &err), SB_PERMISSION_DENIED, "%s", err.buf);
    cr_assert_eq(cancel(p->performance_id, "", &user, &out, &err), SB_PERMISSION_DENIED, "%s", err.buf);
    cr_assert_eq(cancel(p->performance_id, repeat('r', 501), &o, &out, &err), SB_INVALID_ARGUMENT, "%s",
                 err.buf);

    sb_status_t st = cancel(p->performance_id, "The lead is ill", &o, &out, &err);
    cr_assert_eq(st, SB_OK, "%s %s", sb_status_name(st), err.buf);
    cr_assert_eq(out->status, SB__PERFORMANCE__PERFORMANCE_STATUS__CANCELLED);
    cr_assert_str_eq(out->cancel_reason, "The lead is ill");

    ProtobufCBinaryData payload = event_payload(p->performance_id, "performance.cancelled");
    Sb__Events__PerformanceCancelled *ev = sb__events__performance_cancelled__unpack(
        sb_arena_pb_allocator(arena), payload.len, payload.data);
    cr_assert_not_null(ev);
    cr_assert_str_eq(ev->performance_id, p->performance_id);
    cr_assert_str_eq(ev->planner_id, planner);
    cr_assert_eq(ev->version, 2);
    cr_assert_str_eq(ev->reason, "The lead is ill");
    cr_assert_str_eq(ev->cancelled_by, planner);

    st = cancel(p->performance_id, "", &o, &out, &err);
    cr_assert_eq(st, SB_FAILED_PRECONDITION, "twice: %s %s", sb_status_name(st), err.buf);
    sb_call_opts_t adm = admin();
    st = cancel(p->performance_id, "double check", &adm, &out, &err);
    cr_assert_eq(st, SB_FAILED_PRECONDITION, "admin, twice: %s %s", sb_status_name(st), err.buf);
    cr_assert_eq(events_of(p->performance_id, "performance.cancelled"), 1);

    Sb__Performance__UpdatePerformanceRequest *u = update_req(p->performance_id);
    u->title = "Revived";
    st = CALL("UpdatePerformance", u, &out, &o, &err);
    cr_assert_eq(st, SB_FAILED_PRECONDITION, "edit cancelled: %s %s", sb_status_name(st), err.buf);

    /* still visible to everyone, cancelled */
    cr_assert_eq(get(p->performance_id, &user, &out, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(out->status, SB__PERFORMANCE__PERFORMANCE_STATUS__CANCELLED);
    sb_buf_release(&err);
}

Test(performance, an_admin_cancels_a_pending_performance_without_an_event)
{
    const char *planner = new_id();
    Sb__Performance__Performance *p = create_ok(planner, "Never approved", 1);
    sb_call_opts_t adm = admin();
    sb_buf_t err = SB_BUF_INIT;
    Sb__Performance__Performance *out;
    /* an admin cancelling a planner's performance must say why */
    sb_status_t st = cancel(p->performance_id, "  ", &adm, &out, &err);
    cr_assert_eq(st, SB_INVALID_ARGUMENT, "%s %s", sb_status_name(st), err.buf);
    cr_assert_eq(get(p->performance_id, &adm, &out, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(out->status, SB__PERFORMANCE__PERFORMANCE_STATUS__PENDING_APPROVAL);
    sb_buf_reset(&err);
    st = cancel(p->performance_id, "duplicate listing", &adm, &out, &err);
    cr_assert_eq(st, SB_OK, "%s %s", sb_status_name(st), err.buf);
    cr_assert_eq(out->status, SB__PERFORMANCE__PERFORMANCE_STATUS__CANCELLED);
    cr_assert_eq(events_of(p->performance_id, "performance.cancelled"), 0);
    st = approve(p->performance_id, &adm, &out, &err);
    cr_assert_eq(st, SB_FAILED_PRECONDITION, "%s %s", sb_status_name(st), err.buf);
    cr_assert(strstr(err.buf, "CANCELLED"), "%s", err.buf);
    sb_buf_release(&err);
}

Test(performance, deliver_event_is_refused_since_nothing_is_consumed)
{
    Sb__Events__DeliverEventRequest req = SB__EVENTS__DELIVER_EVENT_REQUEST__INIT;
    req.event_id = new_id();
    req.type = "reservation.created";
    req.reason = "integration test";
    Sb__Events__DeliverEventResponse *resp;
    sb_buf_t err = SB_BUF_INIT;
    sb_call_opts_t adm = admin();
    sb_status_t st = CALL("DeliverEvent", &req, &resp, &adm, &err);
    cr_assert_eq(st, SB_FAILED_PRECONDITION, "%s %s", sb_status_name(st), err.buf);
    sb_buf_release(&err);
}

/* ---- a stand-in reservation service: grade VIP has seats held and sold ----
 *
 * It runs in the test process with the reservation service's certificate
 * (performance checks that name) and the services' authenticator, so what it
 * records is what a real reservation service would know of the call: the
 * calling service by its certificate, the end user by the token passed on. */

static struct {
    pthread_mutex_t mu;
    int calls;
    bool unknown; /* answer NOT_FOUND, as before the approval event is consumed */
    char performance_id[64], user_id[64], user_role[16], caller_service[64];
} fake = {.mu = PTHREAD_MUTEX_INITIALIZER};

static Sb__Reservation__GradeAvailability *availability(sb_arena_t *a, const char *grade, int held,
                                                        int sold)
{
    Sb__Reservation__GradeAvailability *g = sb_arena_alloc(a, sizeof *g);
    sb__reservation__grade_availability__init(g);
    g->grade = (char *)grade;
    g->held = held;
    g->sold = sold;
    return g;
}

static sb_status_t fake_sales(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Reservation__GetPerformanceReservationsRequest *req = in;
    Sb__Reservation__PerformanceReservations *resp = out;
    pthread_mutex_lock(&fake.mu);
    fake.calls++;
    snprintf(fake.performance_id, sizeof fake.performance_id, "%s", req->performance_id);
    snprintf(fake.user_id, sizeof fake.user_id, "%s", ctx->user_id);
    snprintf(fake.user_role, sizeof fake.user_role, "%s", ctx->user_role);
    snprintf(fake.caller_service, sizeof fake.caller_service, "%s", ctx->caller_service);
    bool unknown = fake.unknown;
    pthread_mutex_unlock(&fake.mu);
    if (unknown)
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "no inventory for performance %s", req->performance_id);
    resp->performance_id = sb_arena_strdup(ctx->arena, req->performance_id);
    resp->n_schedules = 2;
    resp->schedules = sb_arena_alloc(ctx->arena, 2 * sizeof *resp->schedules);
    for (size_t i = 0; i < 2; i++) {
        Sb__Reservation__ScheduleSales *s = sb_arena_alloc(ctx->arena, sizeof *s);
        sb__reservation__schedule_sales__init(s);
        s->n_grades = 2;
        s->grades = sb_arena_alloc(ctx->arena, 2 * sizeof *s->grades);
        /* one held seat on the first schedule, one sold on the second */
        s->grades[0] = availability(ctx->arena, "VIP", i == 0, i == 1);
        s->grades[1] = availability(ctx->arena, "R", 0, 0);
        resp->schedules[i] = s;
    }
    return SB_OK;
}

static const sb_rpc_method_t fake_methods[] = {{"GetPerformanceReservations", fake_sales}};

Test(performance, grades_with_held_or_sold_seats_are_frozen)
{
    sb_server_t *srv = sb_server_new(FAKE_RESERVATION_ADDR, 2);
    sb_server_add_service(srv, &sb__reservation__reservation_service__descriptor, fake_methods, 1, NULL);
    sb_test_server_authn(srv);
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(sb_test_server_start_as(srv, "reservation", &err), SB_OK,
                 "stand-in reservation service: %s", err.buf);

    const char *planner = new_id();
    Sb__Performance__Performance *p = create_ok(planner, "Selling", 2);
    approve_ok(p->performance_id);
    sb_call_opts_t o = as("PLANNER", planner);
    Sb__Performance__Performance *out;

    /* R has nothing taken: its price may change (and the change goes out) */
    Sb__Performance__UpdatePerformanceRequest *u = update_req(p->performance_id);
    keep_grades(u, p, 0);
    u->grades[1]->price = 55000;
    sb_status_t st = call_at(PERF2_ADDR, "UpdatePerformance", &u->base, &out, &o, &err);
    cr_assert_eq(st, SB_OK, "R price: %s %s", sb_status_name(st), err.buf);
    cr_assert_eq(out->grades[1]->price, 55000);
    pthread_mutex_lock(&fake.mu);
    cr_assert_geq(fake.calls, 1);
    cr_assert_str_eq(fake.performance_id, p->performance_id);
    /* known by its certificate, and the planner's token passed on */
    cr_assert_str_eq(fake.caller_service, "performance",
                     "the calling service is known by its certificate");
    cr_assert_str_eq(fake.user_id, planner, "the caller's identity is passed on (the verified token)");
    cr_assert_str_eq(fake.user_role, "PLANNER");
    pthread_mutex_unlock(&fake.mu);
    ProtobufCBinaryData payload = event_payload(p->performance_id, "performance.changed");
    Sb__Events__PerformanceChanged *ev =
        sb__events__performance_changed__unpack(sb_arena_pb_allocator(arena), payload.len, payload.data);
    cr_assert_not_null(ev);
    cr_assert_eq(ev->performance->grades[1]->price, 55000);
    cr_assert_eq(ev->performance->version, 2);

    /* VIP has 2 seats taken: price, size and removal are refused */
    keep_grades(u, out, 0);
    u->grades[0]->price = 1;
    st = call_at(PERF2_ADDR, "UpdatePerformance", &u->base, &out, &o, &err);
    cr_assert_eq(st, SB_FAILED_PRECONDITION, "VIP price: %s %s", sb_status_name(st), err.buf);
    cr_assert(strstr(err.buf, "2 seats of grade VIP"), "%s", err.buf);
    u->grades[0]->price = 100000;
    u->grades[0]->seat_count = 60;
    st = call_at(PERF2_ADDR, "UpdatePerformance", &u->base, &out, &o, &err);
    cr_assert_eq(st, SB_FAILED_PRECONDITION, "VIP seats: %s %s", sb_status_name(st), err.buf);
    u->grades[0]->seat_count = 50;
    u->grades[0] = u->grades[1];
    u->n_grades = 1;
    st = call_at(PERF2_ADDR, "UpdatePerformance", &u->base, &out, &o, &err);
    cr_assert_eq(st, SB_FAILED_PRECONDITION, "VIP removed: %s %s", sb_status_name(st), err.buf);
    cr_assert_eq(events_of(p->performance_id, "performance.changed"), 1);

    /* no inventory yet (approval not consumed): nothing can be taken */
    pthread_mutex_lock(&fake.mu);
    fake.unknown = true;
    pthread_mutex_unlock(&fake.mu);
    st = call_at(PERF2_ADDR, "UpdatePerformance", &u->base, &out, &o, &err);
    cr_assert_eq(st, SB_OK, "unknown to reservation: %s %s", sb_status_name(st), err.buf);
    cr_assert_eq(out->n_grades, 1);
    cr_assert_eq(events_of(p->performance_id, "performance.changed"), 2);

    sb_buf_release(&err);
    sb_server_shutdown(srv, 1000);
    sb_server_free(srv);
    sb_test_authn_free();
}

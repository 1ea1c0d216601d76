/* The reservation service's inventory end to end: the real sb-reservation
 * binary as a child process against the real PostgreSQL, Redis and Kafka,
 * fed performance events through DeliverEvent (and once through Kafka) and
 * read back over gRPC. Covers seat generation, idempotence (the same event
 * twice, the same version under a new id), out-of-order delivery (older
 * snapshots after newer ones, an approval after the cancellation), growing,
 * shrinking and re-pricing grades next to held and sold seats, moved and
 * dropped schedules and grades, cancellation, concurrent deliveries of one
 * performance's versions, what ListBookable lists and its paging, who may
 * read GetPerformanceReservations, a large approval filled in batches by
 * the seat-fill job without holding up a small one, and (printed, not asserted) how long an
 * approval takes to become bookable over Kafka and what a 50000-seat
 * performance costs.
 *
 * The child is started once for the whole run by a report hook in the
 * runner process (Criterion runs every test in a fresh process) and stopped
 * with SIGTERM after the last test (sb_test_proc.h). Binary:
 * $SB_BIN_DIR/services/reservation/sb-reservation, by default ../services/...
 * relative to ctest's working directory build/tests. It runs in the tests'
 * namespace: database sb_reservation_<namespace>, topic
 * sb.performance.<namespace> (sb_reservation_test, sb.performance.test under
 * ctest). Held and sold seats, which only the booking issue can make, are
 * set straight in the service's database. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "events.pb-c.h"
#include "reservation.pb-c.h"
#include "sb/events.h"
#include "sb/log.h"
#include "sb/rpc.h"
#include "sb/util.h"
#include "sb_test_env.h"
#include "sb_test_pki.h"
#include "sb_test_proc.h"

#define RESV_ADDR "127.0.0.1:21081"
#define ENV_READY "SB_INV_TEST_READY" /* "1" or why not */
#define ENV_RUN "SB_INV_TEST_RUN"     /* a short id unique to this run */
#define DAY_MS (24LL * 3600 * 1000)

/* ================================================================ the child */

static pid_t resv_pid;

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    /* tokens are verified without an auth service here (sb_test_pki.h) */
    sb_test_denylist_complete();
    char id[SB_UUID_LEN + 1], run[16];
    sb_uuid_v4(id);
    snprintf(run, sizeof run, "%.8s", id);
    setenv(ENV_RUN, run, 1);

    char db[1024], redis[1024], brokers[1024], log_level[64];
    snprintf(db, sizeof db, "DATABASE_URL=%s", test_db_url());
    snprintf(redis, sizeof redis, "REDIS_URL=%s", sb_cfg_str("REDIS_URL", "redis://127.0.0.1:6379"));
    snprintf(brokers, sizeof brokers, "KAFKA_BROKERS=%s", test_brokers());
    snprintf(log_level, sizeof log_level, "LOG_LEVEL=%s", sb_cfg_str("SB_TEST_LOG_LEVEL", "warn"));
    const char *env_over[] = {db, redis, brokers, log_level, "GRPC_PORT=21081", "ADMIN_PORT=9231", NULL};
    resv_pid = sb_test_spawn("reservation", env_over, NULL);
    /* ready (admin /readyz: gRPC up, database and Redis answer) within 90 s */
    const sb_test_child_t kid = {resv_pid, 9231, "sb-reservation"};
    sb_test_await_ready(ENV_READY, &kid, 1, 90 * 1000);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    sb_test_stop(resv_pid, "sb-reservation", 20000);
}

/* ================================================================ per test */

static sb_arena_t *arena;
static const char *run_id;
static char admin_id[SB_UUID_LEN + 1];

static void setup(void)
{
    sb_log_init("test-inventory");
    sb_log_set_level(SB_LOG_WARN);
    const char *not_ready = sb_test_not_ready(ENV_READY);
    cr_assert(!not_ready, "service not running: %s", not_ready);
    cr_assert(sb_test_namespace_init(), "bad SB_NAMESPACE \"%s\"", sb_test_namespace());
    run_id = getenv(ENV_RUN);
    arena = sb_arena_new();
    sb_uuid_v4(admin_id);
}

static void teardown(void)
{
    sb_channels_free_all();
    sb_arena_free(arena);
}

TestSuite(inventory, .init = setup, .fini = teardown, .timeout = 120);

/* ---- a performance, as the performance service would describe it ---- */

#define MAX_SCHED 10
#define MAX_GRADES 4

typedef struct {
    const char *grade;
    int64_t price;
    int32_t seats;
} grade_t;

typedef struct {
    char id[SB_UUID_LEN + 1];
    char planner[SB_UUID_LEN + 1];
    char category[64];
    int64_t version;
    size_t n_sched;
    char sched[MAX_SCHED][SB_UUID_LEN + 1];
    char starts[MAX_SCHED][32];
    size_t n_grades;
    grade_t grades[MAX_GRADES];
} perf_t;

static void at(char out[32], int64_t offset_ms)
{
    /* whole seconds, so what comes back (milliseconds) compares equal */
    sb_time_rfc3339((sb_now_ms() / 1000) * 1000 + offset_ms, out);
}

/* A performance in a category unique to this run and test (tag), with
 * n_sched schedules starting 10, 11, ... days from now. */
static perf_t *new_perf(const char *tag, size_t n_sched)
{
    perf_t *p = sb_arena_alloc(arena, sizeof *p);
    sb_uuid_v4(p->id);
    sb_uuid_v4(p->planner);
    snprintf(p->category, sizeof p->category, "inv-%s-%s", run_id, tag);
    p->version = 1;
    p->n_sched = n_sched;
    for (size_t i = 0; i < n_sched; i++) {
        sb_uuid_v4(p->sched[i]);
        at(p->starts[i], (int64_t)(10 + i) * DAY_MS);
    }
    p->n_grades = 2;
    p->grades[0] = (grade_t){"R", 50000, 45};
    p->grades[1] = (grade_t){"VIP", 100000, 25};
    return p;
}

static ProtobufCBinaryData pack(sb_arena_t *a, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = sb_arena_alloc(a, len ? len : 1);
    protobuf_c_message_pack(m, buf);
    return (ProtobufCBinaryData){len, buf};
}

/* "performance.approved" or "performance.changed" carrying p's snapshot. */
static ProtobufCBinaryData snapshot_payload(const char *type, const perf_t *p)
{
    Sb__Events__PerformanceSnapshot *s = sb_arena_alloc(arena, sizeof *s);
    sb__events__performance_snapshot__init(s);
    s->performance_id = (char *)p->id;
    s->planner_id = (char *)p->planner;
    s->title = "Inventory test";
    s->venue = "Main hall";
    s->category = (char *)p->category;
    s->running_minutes = 120;
    s->version = p->version;
    s->n_schedules = p->n_sched;
    s->schedules = sb_arena_alloc(arena, (p->n_sched + 1) * sizeof *s->schedules);
    for (size_t i = 0; i < p->n_sched; i++) {
        Sb__Events__ScheduleSnapshot *sc = sb_arena_alloc(arena, sizeof *sc);
        sb__events__schedule_snapshot__init(sc);
        sc->schedule_id = (char *)p->sched[i];
        sc->starts_at = (char *)p->starts[i];
        sc->venue = "";
        s->schedules[i] = sc;
    }
    s->n_grades = p->n_grades;
    s->grades = sb_arena_alloc(arena, (p->n_grades + 1) * sizeof *s->grades);
    for (size_t i = 0; i < p->n_grades; i++) {
        Sb__Events__GradeSnapshot *g = sb_arena_alloc(arena, sizeof *g);
        sb__events__grade_snapshot__init(g);
        g->grade = (char *)p->grades[i].grade;
        g->price = p->grades[i].price;
        g->seat_count = p->grades[i].seats;
        s->grades[i] = g;
    }
    if (!strcmp(type, "performance.approved")) {
        Sb__Events__PerformanceApproved m = SB__EVENTS__PERFORMANCE_APPROVED__INIT;
        m.performance = s;
        return pack(arena, &m.base);
    }
    Sb__Events__PerformanceChanged m = SB__EVENTS__PERFORMANCE_CHANGED__INIT;
    m.performance = s;
    m.summary = "changed by the test";
    return pack(arena, &m.base);
}

static ProtobufCBinaryData cancel_payload(const perf_t *p, int64_t version)
{
    Sb__Events__PerformanceCancelled m = SB__EVENTS__PERFORMANCE_CANCELLED__INIT;
    m.performance_id = (char *)p->id;
    m.planner_id = (char *)p->planner;
    m.version = version;
    m.reason = "test";
    m.cancelled_by = (char *)p->planner;
    return pack(arena, &m.base);
}

/* ---- calls ---- */

static sb_status_t rcall(const char *method, const ProtobufCMessage *req, void *resp,
                         const sb_call_opts_t *o, sb_buf_t *err)
{
    sb_buf_reset(err);
    return sb_rpc_call(sb_channel_get(RESV_ADDR), &sb__reservation__reservation_service__descriptor,
                       method, req, arena, (ProtobufCMessage **)resp, o, err);
}

/* A call carrying an access token for user_id (minted in a; NULL: anonymous). */
static sb_call_opts_t as_in(sb_arena_t *a, const char *user_id, const char *role)
{
    return (sb_call_opts_t){.token = user_id ? sb_test_token(a, user_id, role) : NULL};
}

static sb_call_opts_t admin(void)
{
    return as_in(arena, admin_id, "ADMIN");
}

static sb_status_t deliver_as(const char *event_id, const char *type, const char *aggregate,
                              ProtobufCBinaryData payload, const sb_call_opts_t *o, bool *duplicate,
                              sb_buf_t *err)
{
    Sb__Events__DeliverEventRequest req = SB__EVENTS__DELIVER_EVENT_REQUEST__INIT;
    req.service_id = "reservation";
    req.event_id = (char *)event_id;
    req.type = (char *)type;
    req.aggregate_id = (char *)aggregate;
    req.reason = "integration test";
    req.payload = payload;
    Sb__Events__DeliverEventResponse *resp = NULL;
    sb_status_t st = rcall("DeliverEvent", &req.base, &resp, o, err);
    if (st == SB_OK && duplicate)
        *duplicate = resp->duplicate;
    return st;
}

/* Delivers one event under event_id (a fresh one when NULL); returns the
 * duplicate flag. */
static bool deliver_id(const char *event_id, const char *type, const char *aggregate,
                       ProtobufCBinaryData payload)
{
    char fresh[SB_UUID_LEN + 1];
    if (!event_id) {
        sb_uuid_v4(fresh);
        event_id = fresh;
    }
    sb_buf_t err = SB_BUF_INIT;
    sb_call_opts_t o = admin();
    bool dup = false;
    sb_status_t st = deliver_as(event_id, type, aggregate, payload, &o, &dup, &err);
    cr_assert_eq(st, SB_OK, "DeliverEvent %s: %s %s", type, sb_status_name(st), err.buf);
    sb_buf_release(&err);
    return dup;
}

static void deliver_snapshot(const char *type, const perf_t *p)
{
    cr_assert_not(deliver_id(NULL, type, p->id, snapshot_payload(type, p)));
}

static void deliver_cancel(const perf_t *p, int64_t version)
{
    cr_assert_not(deliver_id(NULL, "performance.cancelled", p->id, cancel_payload(p, version)));
}

static sb_status_t seat_map(const char *schedule_id, Sb__Reservation__SeatMap **map)
{
    Sb__Reservation__GetSeatMapRequest req = SB__RESERVATION__GET_SEAT_MAP_REQUEST__INIT;
    req.schedule_id = (char *)schedule_id;
    sb_buf_t err = SB_BUF_INIT;
    *map = NULL;
    sb_status_t st = rcall("GetSeatMap", &req.base, map, NULL, &err);
    sb_buf_release(&err);
    return st;
}

static Sb__Reservation__SeatMap *seat_map_ok(const char *schedule_id)
{
    Sb__Reservation__SeatMap *m;
    sb_status_t st = seat_map(schedule_id, &m);
    cr_assert_eq(st, SB_OK, "GetSeatMap %s: %s", schedule_id, sb_status_name(st));
    return m;
}

static size_t grade_seats(const Sb__Reservation__SeatMap *m, const char *grade)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_seats; i++)
        n += !strcmp(m->seats[i]->grade, grade);
    return n;
}

static const Sb__Reservation__Seat *find_seat(const Sb__Reservation__SeatMap *m, const char *seat_id)
{
    for (size_t i = 0; i < m->n_seats; i++)
        if (!strcmp(m->seats[i]->seat_id, seat_id))
            return m->seats[i];
    return NULL;
}

static Sb__Reservation__ListBookableResponse *bookable(const char *category, int page_size,
                                                       const char *token)
{
    Sb__Reservation__ListBookableRequest req = SB__RESERVATION__LIST_BOOKABLE_REQUEST__INIT;
    req.category = (char *)category;
    req.page_size = page_size;
    req.page_token = (char *)(token ? token : "");
    Sb__Reservation__ListBookableResponse *resp = NULL;
    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st = rcall("ListBookable", &req.base, &resp, NULL, &err);
    cr_assert_eq(st, SB_OK, "ListBookable: %s %s", sb_status_name(st), err.buf);
    sb_buf_release(&err);
    return resp;
}

static sb_status_t sales(const char *perf_id, const char *user_id, const char *role,
                         Sb__Reservation__PerformanceReservations **resp)
{
    Sb__Reservation__GetPerformanceReservationsRequest req =
        SB__RESERVATION__GET_PERFORMANCE_RESERVATIONS_REQUEST__INIT;
    req.performance_id = (char *)perf_id;
    sb_call_opts_t o = as_in(arena, user_id, role);
    sb_buf_t err = SB_BUF_INIT;
    *resp = NULL;
    sb_status_t st = rcall("GetPerformanceReservations", &req.base, resp, &o, &err);
    sb_buf_release(&err);
    return st;
}

static const Sb__Reservation__GradeAvailability *
grade_of(Sb__Reservation__GradeAvailability *const *grades, size_t n, const char *grade)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(grades[i]->grade, grade))
            return grades[i];
    return NULL;
}

static void assert_counts(const Sb__Reservation__GradeAvailability *g, int64_t price, int total,
                          int free, int held, int sold)
{
    cr_assert_not_null(g);
    cr_expect_eq(g->price, price, "%s price %lld", g->grade, (long long)g->price);
    cr_expect_eq(g->total, total, "%s total %d, want %d", g->grade, g->total, total);
    cr_expect_eq(g->free, free, "%s free %d, want %d", g->grade, g->free, free);
    cr_expect_eq(g->held, held, "%s held %d, want %d", g->grade, g->held, held);
    cr_expect_eq(g->sold, sold, "%s sold %d, want %d", g->grade, g->sold, sold);
}

/* Runs one statement on the service's own database (what only the booking
 * issue's RPCs will do, or clean-up); returns the rows it affected. */
static long long db_exec(const char *sql, int n, const char *const *params)
{
    char name[64];
    const char *keys[] = {"dbname", "dbname", NULL};
    const char *vals[] = {test_db_url(), sb_test_db("reservation", name, sizeof name), NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    long long rows = atoll(PQcmdTuples(r));
    PQclear(r);
    PQfinish(c);
    return rows;
}

/* The first value of a query on the service's own database, as a number. */
static long long db_int(const char *sql, int n, const char *const *params)
{
    char name[64];
    const char *keys[] = {"dbname", "dbname", NULL};
    const char *vals[] = {test_db_url(), sb_test_db("reservation", name, sizeof name), NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    long long v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return v;
}

/* Sets a seat's status as a booking would. */
static void set_seat(const char *schedule_id, const char *seat_id, const char *status)
{
    const char *p[] = {schedule_id, seat_id, status};
    long long n = db_exec("UPDATE seats SET status = $3, reservation_id = gen_random_uuid(),"
                          " held_until = CASE WHEN $3 = 'HELD' THEN now() + interval '10 minutes' END"
                          " WHERE schedule_id = $1::uuid AND seat_id = $2",
                          3, p);
    cr_assert_eq(n, 1, "seat %s not found", seat_id);
}

/* Removes a performance and its seats, so big test data does not pile up. */
static void purge(const char *perf_id)
{
    const char *p[] = {perf_id};
    db_exec("WITH sc AS (SELECT schedule_id FROM inv_schedules WHERE performance_id = $1::uuid),"
            " s AS (DELETE FROM seats WHERE schedule_id IN (SELECT schedule_id FROM sc)),"
            " g AS (DELETE FROM inv_grades WHERE performance_id = $1::uuid)"
            " DELETE FROM inv_schedules WHERE performance_id = $1::uuid",
            1, p);
    db_exec("DELETE FROM inv_performances WHERE performance_id = $1::uuid", 1, p);
}

/* ================================================================ tests */

Test(inventory, approval_builds_the_seat_map_and_makes_the_performance_bookable)
{
    perf_t *p = new_perf("approve", 2);
    p->n_grades = 3; /* snapshot order is not price order */
    p->grades[0] = (grade_t){"R", 50000, 45};
    p->grades[1] = (grade_t){"VIP", 100000, 25};
    p->grades[2] = (grade_t){"S", 30000, 0};
    deliver_snapshot("performance.approved", p);

    for (size_t k = 0; k < 2; k++) {
        Sb__Reservation__SeatMap *m = seat_map_ok(p->sched[k]);
        cr_assert_str_eq(m->schedule_id, p->sched[k]);
        cr_assert_str_eq(m->performance_id, p->id);
        cr_assert_str_eq(m->starts_at, p->starts[k]);
        cr_assert_eq(m->n_seats, 70);
        cr_assert_eq(grade_seats(m, "VIP"), 25);
        cr_assert_eq(grade_seats(m, "R"), 45);
        /* grade by price descending, then row, then number */
        cr_assert_str_eq(m->seats[0]->seat_id, "VIP-A-1");
        cr_assert_str_eq(m->seats[1]->seat_id, "VIP-A-2");
        cr_assert_str_eq(m->seats[19]->seat_id, "VIP-A-20");
        cr_assert_str_eq(m->seats[20]->seat_id, "VIP-B-1");
        cr_assert_str_eq(m->seats[24]->seat_id, "VIP-B-5");
        cr_assert_str_eq(m->seats[25]->seat_id, "R-A-1");
        cr_assert_str_eq(m->seats[69]->seat_id, "R-C-5");
        for (size_t i = 0; i < m->n_seats; i++) {
            const Sb__Reservation__Seat *s = m->seats[i];
            bool vip = !strcmp(s->grade, "VIP");
            cr_assert_eq(s->status, SB__RESERVATION__SEAT_STATUS__AVAILABLE, "%s", s->seat_id);
            cr_assert_eq(s->price, vip ? 100000 : 50000, "%s", s->seat_id);
            char want[64];
            snprintf(want, sizeof want, "%s-%s-%d", s->grade, s->row, s->number);
            cr_assert_str_eq(s->seat_id, want);
            cr_assert(s->number >= 1 && s->number <= 20);
        }
        const Sb__Reservation__Seat *s = find_seat(m, "R-B-20");
        cr_assert_not_null(s);
        cr_assert_str_eq(s->row, "B");
        cr_assert_eq(s->number, 20);
    }

    Sb__Reservation__ListBookableResponse *l = bookable(p->category, 0, NULL);
    cr_assert_eq(l->n_performances, 1);
    cr_assert_str_eq(l->next_page_token, "");
    const Sb__Reservation__BookablePerformance *bp = l->performances[0];
    cr_assert_str_eq(bp->performance_id, p->id);
    cr_assert_str_eq(bp->title, "Inventory test");
    cr_assert_str_eq(bp->category, p->category);
    cr_assert_eq(bp->running_minutes, 120);
    cr_assert_eq(bp->n_schedules, 2);
    for (size_t k = 0; k < 2; k++) {
        const Sb__Reservation__BookableSchedule *s = bp->schedules[k];
        cr_assert_str_eq(s->schedule_id, p->sched[k]); /* by start time */
        cr_assert_str_eq(s->starts_at, p->starts[k]);
        cr_assert_str_eq(s->venue, "Main hall");
        cr_assert_eq(s->n_grades, 3);
        cr_assert_str_eq(s->grades[0]->grade, "VIP");
        cr_assert_str_eq(s->grades[1]->grade, "R");
        cr_assert_str_eq(s->grades[2]->grade, "S");
        assert_counts(s->grades[0], 100000, 25, 25, 0, 0);
        assert_counts(s->grades[1], 50000, 45, 45, 0, 0);
        assert_counts(s->grades[2], 30000, 0, 0, 0, 0);
    }
}

Test(inventory, row_labels_run_past_z)
{
    perf_t *p = new_perf("rows", 1);
    p->n_grades = 1;
    p->grades[0] = (grade_t){"A", 10000, 27 * 20 + 3}; /* rows A..Z, AA, AB */
    deliver_snapshot("performance.approved", p);
    Sb__Reservation__SeatMap *m = seat_map_ok(p->sched[0]);
    cr_assert_eq(m->n_seats, 543);
    cr_assert_str_eq(m->seats[499]->seat_id, "A-Y-20");
    cr_assert_str_eq(m->seats[519]->seat_id, "A-Z-20");
    cr_assert_str_eq(m->seats[520]->seat_id, "A-AA-1");
    cr_assert_str_eq(m->seats[539]->seat_id, "A-AA-20");
    cr_assert_str_eq(m->seats[540]->seat_id, "A-AB-1");
    cr_assert_str_eq(m->seats[542]->seat_id, "A-AB-3");
}

Test(inventory, the_same_event_twice_has_one_effect)
{
    perf_t *p = new_perf("dup", 1);
    char event_id[SB_UUID_LEN + 1];
    sb_uuid_v4(event_id);
    ProtobufCBinaryData payload = snapshot_payload("performance.approved", p);
    cr_assert_not(deliver_id(event_id, "performance.approved", p->id, payload));
    cr_assert(deliver_id(event_id, "performance.approved", p->id, payload),
              "the second delivery is a duplicate");
    cr_assert_eq(seat_map_ok(p->sched[0])->n_seats, 70);

    /* the same version again under a new id (a replayed outbox): no new seats */
    deliver_snapshot("performance.approved", p);
    deliver_snapshot("performance.changed", p);
    /* ... even if that copy says something else */
    p->grades[1].seats = 60;
    deliver_snapshot("performance.changed", p);
    Sb__Reservation__SeatMap *m = seat_map_ok(p->sched[0]);
    cr_assert_eq(m->n_seats, 70);
    cr_assert_eq(grade_seats(m, "VIP"), 25);
    cr_assert_eq(bookable(p->category, 0, NULL)->n_performances, 1);
}

Test(inventory, a_newer_change_grows_a_grade_and_moves_a_schedule_and_an_older_one_is_ignored)
{
    perf_t *p = new_perf("change", 2);
    deliver_snapshot("performance.approved", p);

    perf_t old = *p; /* v2, arriving late */
    old.version = 2;
    old.grades[1].seats = 5;
    at(old.starts[0], 40 * DAY_MS);

    p->version = 3;
    p->grades[1].seats = 30;       /* VIP 25 -> 30 */
    at(p->starts[0], 20 * DAY_MS); /* schedule 0 moves */
    deliver_snapshot("performance.changed", p);

    Sb__Reservation__SeatMap *m = seat_map_ok(p->sched[0]);
    cr_assert_str_eq(m->starts_at, p->starts[0]);
    cr_assert_eq(m->n_seats, 75);
    cr_assert_eq(grade_seats(m, "VIP"), 30);
    cr_assert_not_null(find_seat(m, "VIP-B-10"));
    cr_assert_null(find_seat(m, "VIP-B-11"));
    cr_assert_eq(seat_map_ok(p->sched[1])->n_seats, 75);

    deliver_snapshot("performance.changed", &old);
    m = seat_map_ok(p->sched[0]);
    cr_assert_str_eq(m->starts_at, p->starts[0], "the older snapshot moved the schedule back");
    cr_assert_eq(grade_seats(m, "VIP"), 30, "the older snapshot shrank the grade");

    Sb__Reservation__ListBookableResponse *l = bookable(p->category, 0, NULL);
    cr_assert_eq(l->n_performances, 1);
    /* schedule 1 (11 days) now comes before schedule 0 (20 days) */
    cr_assert_str_eq(l->performances[0]->schedules[0]->schedule_id, p->sched[1]);
    cr_assert_str_eq(l->performances[0]->schedules[1]->starts_at, p->starts[0]);
}

Test(inventory, shrinking_and_repricing_spare_held_and_sold_seats)
{
    perf_t *p = new_perf("shrink", 3);
    deliver_snapshot("performance.approved", p);
    set_seat(p->sched[0], "R-C-5", "HELD"); /* beyond the new R count */
    set_seat(p->sched[0], "R-A-1", "SOLD"); /* within it */
    set_seat(p->sched[0], "VIP-A-1", "SOLD");
    set_seat(p->sched[2], "R-A-2", "SOLD"); /* its schedule is dropped below */

    p->version = 2;
    p->grades[0].seats = 30;     /* R 45 -> 30 */
    p->grades[1].price = 120000; /* VIP re-priced */
    p->n_sched = 2;              /* schedule 2 is gone (and has a sold seat) */
    p->n_grades = 2;
    deliver_snapshot("performance.changed", p);

    Sb__Reservation__SeatMap *m = seat_map_ok(p->sched[0]);
    cr_assert_eq(grade_seats(m, "R"), 31, "30 plus the held seat beyond the count");
    const Sb__Reservation__Seat *held = find_seat(m, "R-C-5");
    cr_assert_not_null(held);
    cr_assert_eq(held->status, SB__RESERVATION__SEAT_STATUS__HELD);
    cr_assert_null(find_seat(m, "R-C-4"));
    cr_assert_not_null(find_seat(m, "R-B-10"));
    cr_assert_null(find_seat(m, "R-B-11"));
    cr_assert_eq(find_seat(m, "VIP-A-1")->price, 100000, "a sold seat keeps its price");
    cr_assert_eq(find_seat(m, "VIP-A-2")->price, 120000);
    cr_assert_eq(find_seat(m, "R-A-1")->status, SB__RESERVATION__SEAT_STATUS__SOLD);
    cr_assert_eq(grade_seats(seat_map_ok(p->sched[1]), "R"), 30);

    /* the dropped schedule: not bookable, but the planner still sees its sale */
    Sb__Reservation__SeatMap *gone;
    cr_assert_eq(seat_map(p->sched[2], &gone), SB_NOT_FOUND);
    Sb__Reservation__ListBookableResponse *l = bookable(p->category, 0, NULL);
    cr_assert_eq(l->n_performances, 1);
    cr_assert_eq(l->performances[0]->n_schedules, 2);

    Sb__Reservation__PerformanceReservations *s;
    cr_assert_eq(sales(p->id, p->planner, "PLANNER", &s), SB_OK);
    cr_assert_eq(s->n_schedules, 3);
    cr_assert_eq(s->n_reservations, 0);
    const Sb__Reservation__ScheduleSales *s0 = NULL, *s2 = NULL;
    for (size_t i = 0; i < s->n_schedules; i++) {
        if (!strcmp(s->schedules[i]->schedule_id, p->sched[0]))
            s0 = s->schedules[i];
        if (!strcmp(s->schedules[i]->schedule_id, p->sched[2]))
            s2 = s->schedules[i];
    }
    cr_assert_not_null(s0);
    cr_assert_not_null(s2);
    assert_counts(grade_of(s0->grades, s0->n_grades, "R"), 50000, 31, 29, 1, 1);
    assert_counts(grade_of(s0->grades, s0->n_grades, "VIP"), 120000, 25, 24, 0, 1);
    assert_counts(grade_of(s2->grades, s2->n_grades, "R"), 50000, 45, 44, 0, 1);

    /* a schedule without taken seats that is dropped goes entirely */
    p->version = 3;
    p->n_sched = 1;
    deliver_snapshot("performance.changed", p);
    cr_assert_eq(seat_map(p->sched[1], &gone), SB_NOT_FOUND);
    cr_assert_eq(sales(p->id, p->planner, "PLANNER", &s), SB_OK);
    cr_assert_eq(s->n_schedules, 2, "schedule 1 deleted, schedule 2 kept for its sold seat");
}

Test(inventory, a_dropped_grade_keeps_only_its_sold_seats)
{
    perf_t *p = new_perf("dropgrade", 1);
    deliver_snapshot("performance.approved", p);
    set_seat(p->sched[0], "VIP-B-2", "SOLD");
    p->version = 2;
    p->n_grades = 1; /* R only */
    deliver_snapshot("performance.changed", p);

    Sb__Reservation__SeatMap *m = seat_map_ok(p->sched[0]);
    cr_assert_eq(m->n_seats, 46);
    cr_assert_eq(grade_seats(m, "VIP"), 1);
    cr_assert_str_eq(m->seats[45]->seat_id, "VIP-B-2", "a grade no longer sold comes last");
    cr_assert_eq(m->seats[45]->status, SB__RESERVATION__SEAT_STATUS__SOLD);
    Sb__Reservation__ListBookableResponse *l = bookable(p->category, 0, NULL);
    cr_assert_eq(l->n_performances, 1);
    const Sb__Reservation__BookableSchedule *s = l->performances[0]->schedules[0];
    cr_assert_eq(s->n_grades, 2);
    assert_counts(s->grades[0], 50000, 45, 45, 0, 0);
    assert_counts(s->grades[1], 100000, 1, 0, 0, 1);
    cr_assert_str_eq(s->grades[1]->grade, "VIP");

    /* brought back: the seats return around the sold one */
    p->version = 3;
    p->n_grades = 2;
    deliver_snapshot("performance.changed", p);
    m = seat_map_ok(p->sched[0]);
    cr_assert_eq(grade_seats(m, "VIP"), 25);
    cr_assert_str_eq(m->seats[0]->seat_id, "VIP-A-1");
    cr_assert_eq(find_seat(m, "VIP-B-2")->status, SB__RESERVATION__SEAT_STATUS__SOLD);
}

Test(inventory, cancellation_hides_the_performance_and_a_late_approval_does_not_revive_it)
{
    perf_t *p = new_perf("cancel", 2);
    p->version = 4;
    deliver_snapshot("performance.approved", p);
    cr_assert_eq(bookable(p->category, 0, NULL)->n_performances, 1);

    deliver_cancel(p, 4);
    Sb__Reservation__SeatMap *m;
    cr_assert_eq(seat_map(p->sched[0], &m), SB_NOT_FOUND);
    cr_assert_eq(seat_map(p->sched[1], &m), SB_NOT_FOUND);
    cr_assert_eq(bookable(p->category, 0, NULL)->n_performances, 0);

    /* late and older: ignored */
    p->version = 3;
    deliver_snapshot("performance.approved", p);
    deliver_snapshot("performance.changed", p);
    cr_assert_eq(seat_map(p->sched[0], &m), SB_NOT_FOUND);
    cr_assert_eq(bookable(p->category, 0, NULL)->n_performances, 0);

    /* the planner still sees the counts */
    Sb__Reservation__PerformanceReservations *s;
    cr_assert_eq(sales(p->id, p->planner, "PLANNER", &s), SB_OK);
    cr_assert_eq(s->n_schedules, 2);
}

Test(inventory, a_cancellation_arriving_first_leaves_a_tombstone)
{
    perf_t *p = new_perf("tomb", 1);
    deliver_cancel(p, 2);
    p->version = 1;
    deliver_snapshot("performance.approved", p);
    p->version = 2;
    deliver_snapshot("performance.changed", p);
    Sb__Reservation__SeatMap *m;
    cr_assert_eq(seat_map(p->sched[0], &m), SB_NOT_FOUND);
    cr_assert_eq(bookable(p->category, 0, NULL)->n_performances, 0);
    Sb__Reservation__PerformanceReservations *s;
    cr_assert_eq(sales(p->id, p->planner, "PLANNER", &s), SB_OK);
    cr_assert_eq(s->n_schedules, 0);
}

Test(inventory, only_future_schedules_are_bookable)
{
    perf_t *past = new_perf("past", 2);
    at(past->starts[0], -DAY_MS);
    at(past->starts[1], -2 * DAY_MS);
    deliver_snapshot("performance.approved", past);
    perf_t *mixed = new_perf("past", 2);
    at(mixed->starts[0], -DAY_MS);
    deliver_snapshot("performance.approved", mixed);

    Sb__Reservation__ListBookableResponse *l = bookable(past->category, 0, NULL);
    cr_assert_eq(l->n_performances, 1, "only the one with a future schedule is listed");
    cr_assert_str_eq(l->performances[0]->performance_id, mixed->id);
    cr_assert_eq(l->performances[0]->n_schedules, 1);
    cr_assert_str_eq(l->performances[0]->schedules[0]->schedule_id, mixed->sched[1]);
    /* a past schedule still has its seat map */
    cr_assert_eq(seat_map_ok(past->sched[0])->n_seats, 70);
}

Test(inventory, performance_reservations_for_the_planner_and_admins_only)
{
    perf_t *p = new_perf("sales", 2);
    deliver_snapshot("performance.approved", p);
    set_seat(p->sched[1], "VIP-A-3", "HELD");
    set_seat(p->sched[1], "VIP-A-4", "HELD");
    set_seat(p->sched[1], "R-A-1", "SOLD");

    Sb__Reservation__PerformanceReservations *s;
    cr_assert_eq(sales(p->id, p->planner, "PLANNER", &s), SB_OK);
    cr_assert_str_eq(s->performance_id, p->id);
    cr_assert_eq(s->n_schedules, 2);
    for (size_t k = 0; k < 2; k++) {
        const Sb__Reservation__ScheduleSales *sc = s->schedules[k];
        cr_assert_str_eq(sc->schedule_id, p->sched[k]);
        cr_assert_str_eq(sc->starts_at, p->starts[k]);
        cr_assert_eq(sc->n_grades, 2);
        cr_assert_str_eq(sc->grades[0]->grade, "VIP");
        assert_counts(sc->grades[0], 100000, 25, k ? 23 : 25, k ? 2 : 0, 0);
        assert_counts(sc->grades[1], 50000, 45, k ? 44 : 45, 0, k ? 1 : 0);
    }
    /* the same counts in ListBookable */
    Sb__Reservation__ListBookableResponse *l = bookable(p->category, 0, NULL);
    cr_assert_eq(l->n_performances, 1);
    assert_counts(l->performances[0]->schedules[1]->grades[0], 100000, 25, 23, 2, 0);

    char other[SB_UUID_LEN + 1];
    sb_uuid_v4(other);
    cr_assert_eq(sales(p->id, other, "PLANNER", &s), SB_PERMISSION_DENIED);
    cr_assert_eq(sales(p->id, other, "USER", &s), SB_PERMISSION_DENIED);
    cr_assert_eq(sales(p->id, p->planner, "PLANNER", &s), SB_OK);
    cr_assert_eq(sales(p->id, admin_id, "ADMIN", &s), SB_OK);
    cr_assert_eq(s->n_schedules, 2);
    cr_assert_eq(sales(p->id, NULL, NULL, &s), SB_UNAUTHENTICATED);
    cr_assert_eq(sales(other, admin_id, "ADMIN", &s), SB_NOT_FOUND);
    cr_assert_eq(sales("not-a-uuid", admin_id, "ADMIN", &s), SB_INVALID_ARGUMENT);
}

Test(inventory, list_bookable_pages_see_every_performance_exactly_once)
{
    enum { N = 5 };
    const char *ids[N];
    const char *category = NULL;
    for (int i = 0; i < N; i++) {
        perf_t *p = new_perf("page", 1);
        deliver_snapshot("performance.approved", p);
        ids[i] = p->id;
        category = p->category;
    }
    int seen[N] = {0};
    const char *token = NULL;
    int pages = 0;
    do {
        Sb__Reservation__ListBookableResponse *l = bookable(category, 2, token);
        cr_assert_leq(l->n_performances, 2);
        for (size_t j = 0; j < l->n_performances; j++) {
            bool mine = false;
            for (int i = 0; i < N; i++)
                if (!strcmp(l->performances[j]->performance_id, ids[i])) {
                    seen[i]++;
                    mine = true;
                }
            cr_assert(mine, "a performance of another category: %s", l->performances[j]->performance_id);
        }
        token = *l->next_page_token ? l->next_page_token : NULL;
        cr_assert_lt(++pages, 10);
    } while (token);
    cr_assert_eq(pages, 3);
    for (int i = 0; i < N; i++)
        cr_assert_eq(seen[i], 1, "performance %d seen %d times", i, seen[i]);

    /* without a category the paging is the same walk over everything */
    Sb__Reservation__ListBookableResponse *all = bookable("", 100, NULL);
    cr_assert_leq(all->n_performances, 100);

    Sb__Reservation__ListBookableRequest req = SB__RESERVATION__LIST_BOOKABLE_REQUEST__INIT;
    Sb__Reservation__ListBookableResponse *resp;
    sb_buf_t err = SB_BUF_INIT;
    req.page_token = "garbage";
    cr_assert_eq(rcall("ListBookable", &req.base, &resp, NULL, &err), SB_INVALID_ARGUMENT);
    req.page_token = "";
    req.page_size = -1;
    cr_assert_eq(rcall("ListBookable", &req.base, &resp, NULL, &err), SB_INVALID_ARGUMENT);
    req.page_size = 1000; /* capped, not refused */
    cr_assert_eq(rcall("ListBookable", &req.base, &resp, NULL, &err), SB_OK, "%s", err.buf);
    cr_assert_leq(resp->n_performances, 100);
    sb_buf_release(&err);
}

Test(inventory, bad_input_is_refused_or_dropped)
{
    Sb__Reservation__SeatMap *m;
    cr_assert_eq(seat_map("not-a-uuid", &m), SB_INVALID_ARGUMENT);
    cr_assert_eq(seat_map("", &m), SB_INVALID_ARGUMENT);
    cr_assert_eq(seat_map("'; DROP TABLE seats; --", &m), SB_INVALID_ARGUMENT);
    char unknown[SB_UUID_LEN + 1];
    sb_uuid_v4(unknown);
    cr_assert_eq(seat_map(unknown, &m), SB_NOT_FOUND);

    perf_t *p = new_perf("bad", 1);
    sb_buf_t err = SB_BUF_INIT;
    char id[SB_UUID_LEN + 1];
    sb_uuid_v4(id);
    sb_call_opts_t user = as_in(arena, p->planner, "PLANNER");
    cr_assert_eq(deliver_as(id, "performance.approved", p->id,
                            snapshot_payload("performance.approved", p), &user, NULL, &err),
                 SB_PERMISSION_DENIED);

    /* undecodable payload, unknown type: dead letters (INVALID_ARGUMENT, see
     * sb/events.h), no effect; invalid snapshots: recorded, no effect */
    static const uint8_t junk[] = {0x0a, 0x64, 'a', 'b', 'c'};
    ProtobufCBinaryData bad = {sizeof junk, (uint8_t *)junk};
    static const char *const refused[] = {"performance.approved", "performance.cancelled",
                                          "performance.archived"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        sb_uuid_v4(id);
        sb_call_opts_t o = admin();
        cr_assert_eq(deliver_as(id, refused[i], p->id, bad, &o, NULL, &err), SB_INVALID_ARGUMENT,
                     "%s: %s", refused[i], err.buf);
    }
    perf_t broken = *p;
    snprintf(broken.starts[0], sizeof broken.starts[0], "next tuesday");
    cr_assert_not(deliver_id(NULL, "performance.approved", p->id,
                             snapshot_payload("performance.approved", &broken)));
    broken = *p;
    broken.grades[1].grade = "R"; /* twice */
    cr_assert_not(deliver_id(NULL, "performance.approved", p->id,
                             snapshot_payload("performance.approved", &broken)));
    broken = *p;
    snprintf(broken.planner, sizeof broken.planner, "nobody");
    cr_assert_not(deliver_id(NULL, "performance.approved", p->id,
                             snapshot_payload("performance.approved", &broken)));
    cr_assert_eq(seat_map(p->sched[0], &m), SB_NOT_FOUND);

    /* the service is fine afterwards */
    deliver_snapshot("performance.approved", p);
    cr_assert_eq(seat_map_ok(p->sched[0])->n_seats, 70);
    sb_buf_release(&err);
}

/* One DeliverEvent from a thread of its own (own arena; no asserts off the
 * main thread). */
struct racer {
    const char *aggregate;
    const char *type;
    ProtobufCBinaryData payload;
    sb_status_t st;
    char err[256];
};

static void *race(void *arg)
{
    struct racer *r = arg;
    sb_arena_t *a = sb_arena_new();
    sb_buf_t err = SB_BUF_INIT;
    char event_id[SB_UUID_LEN + 1];
    sb_uuid_v4(event_id);
    Sb__Events__DeliverEventRequest req = SB__EVENTS__DELIVER_EVENT_REQUEST__INIT;
    req.service_id = "reservation";
    req.event_id = event_id;
    req.type = (char *)r->type;
    req.aggregate_id = (char *)r->aggregate;
    req.reason = "integration test";
    req.payload = r->payload;
    sb_call_opts_t o = as_in(a, admin_id, "ADMIN");
    ProtobufCMessage *resp;
    r->st = sb_rpc_call(sb_channel_get(RESV_ADDR), &sb__reservation__reservation_service__descriptor,
                        "DeliverEvent", &req.base, a, &resp, &o, &err);
    snprintf(r->err, sizeof r->err, "%s", err.buf);
    sb_buf_release(&err);
    sb_arena_free(a);
    return NULL;
}

Test(inventory, concurrent_out_of_order_deliveries_converge_on_the_newest_snapshot)
{
    enum { N = 8, ROUNDS = 3 };
    for (int round = 0; round < ROUNDS; round++) {
        perf_t *p = new_perf("race", 2);
        struct racer r[N + 1];
        /* versions 1..N, handed to the threads newest first */
        for (int i = 0; i < N; i++) {
            perf_t v = *p;
            v.version = N - i;
            v.grades[1].seats = 10 + (int32_t)v.version;
            at(v.starts[0], (20 + v.version) * DAY_MS);
            const char *type = i % 2 ? "performance.changed" : "performance.approved";
            r[i] = (struct racer){p->id, type, snapshot_payload(type, &v)};
            if (v.version == N)
                memcpy(p->starts[0], v.starts[0], sizeof p->starts[0]);
        }
        /* A cancellation is always the newest version the catalog writes, so an
         * older one can only arrive late: it goes after the race (racing it would
         * make the outcome depend on thread order: a cancellation seen first is
         * final by design) and must change nothing. */
        r[N] = (struct racer){p->id, "performance.cancelled", cancel_payload(p, 1)}; /* older */
        pthread_t t[N];
        for (int i = 0; i < N; i++)
            pthread_create(&t[i], NULL, race, &r[i]);
        for (int i = 0; i < N; i++)
            pthread_join(t[i], NULL);
        race(&r[N]);
        for (int i = 0; i <= N; i++)
            cr_assert_eq(r[i].st, SB_OK, "delivery %d: %s %s", i, sb_status_name(r[i].st), r[i].err);
        Sb__Reservation__SeatMap *m = seat_map_ok(p->sched[0]);
        cr_assert_eq(grade_seats(m, "VIP"), 10 + N, "round %d", round);
        cr_assert_eq(grade_seats(m, "R"), 45);
        cr_assert_str_eq(m->starts_at, p->starts[0]);
        cr_assert_eq(seat_map_ok(p->sched[1])->n_seats, 45 + 10 + N);
    }
}

Test(inventory, a_large_venue)
{
    perf_t *p = new_perf("large", 10);
    p->n_grades = 3;
    p->grades[0] = (grade_t){"VIP", 150000, 500};
    p->grades[1] = (grade_t){"R", 90000, 2000};
    p->grades[2] = (grade_t){"S", 60000, 2500};
    int64_t t0 = sb_mono_ns();
    deliver_snapshot("performance.approved", p);
    double apply_ms = (double)(sb_mono_ns() - t0) / 1e6;
    t0 = sb_mono_ns();
    Sb__Reservation__SeatMap *m = seat_map_ok(p->sched[9]);
    double map_ms = (double)(sb_mono_ns() - t0) / 1e6;
    cr_assert_eq(m->n_seats, 5000);
    cr_assert_str_eq(m->seats[4999]->seat_id, "S-DU-20"); /* row 124: 26 + 3 * 26 + 20 */
    t0 = sb_mono_ns();
    Sb__Reservation__ListBookableResponse *l = bookable(p->category, 0, NULL);
    double list_ms = (double)(sb_mono_ns() - t0) / 1e6;
    cr_assert_eq(l->performances[0]->n_schedules, 10);
    assert_counts(l->performances[0]->schedules[3]->grades[2], 60000, 2500, 2500, 0, 0);
    /* a newer snapshot changing one price touches only that grade's seats */
    p->version = 2;
    p->grades[2].price = 65000;
    t0 = sb_mono_ns();
    deliver_snapshot("performance.changed", p);
    double change_ms = (double)(sb_mono_ns() - t0) / 1e6;
    cr_assert_eq(seat_map_ok(p->sched[0])->seats[4999]->price, 65000);
    fprintf(stderr,
            "test_inventory: 50000 seats: approval applied in %.0f ms, re-price in %.0f ms;"
            " seat map of 5000 in %.1f ms, ListBookable in %.1f ms\n",
            apply_ms, change_ms, map_ms, list_ms);
    purge(p->id);
}

/* The packed envelope of p's approval under event_id. */
static ProtobufCBinaryData approval_envelope(const perf_t *p, const char *event_id)
{
    Sb__Events__EventEnvelope env = SB__EVENTS__EVENT_ENVELOPE__INIT;
    char ts[32];
    sb_time_rfc3339(sb_now_ms(), ts);
    env.event_id = (char *)event_id;
    env.type = "performance.approved";
    env.aggregate_id = (char *)p->id;
    env.occurred_at = ts;
    env.trace_id = (char *)event_id;
    env.producer = "test-inventory";
    env.payload = snapshot_payload("performance.approved", p);
    return pack(arena, &env.base);
}

static void produce(sb_producer_t *prod, const char *key, ProtobufCBinaryData env)
{
    char topic[64]; /* sb.performance in the tests' namespace, which the service consumes */
    cr_assert(sb_event_topic("performance.approved", topic, sizeof topic));
    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st = sb_producer_send(prod, topic, key, env.data, env.len, NULL, 10000, &err);
    cr_assert_eq(st, SB_OK, "produce: %s", err.buf);
    sb_buf_release(&err);
}

/* Waits up to 60 s for the seat map of schedule_id. */
static Sb__Reservation__SeatMap *await_seat_map(const char *schedule_id)
{
    Sb__Reservation__SeatMap *m = NULL;
    int64_t deadline = sb_now_ms() + 60000;
    while (seat_map(schedule_id, &m) == SB_NOT_FOUND) {
        cr_assert_lt(sb_now_ms(), deadline, "no seat map for %s after 60 s", schedule_id);
        usleep(2000);
    }
    return m;
}

/* A performance over INVENTORY_INLINE_SEATS (the service's default,
 * 100000): its approval only marks the schedules, and the seat-fill job
 * creates the seats schedule by schedule, one transaction each. A small
 * approval sent right after it over Kafka is bookable before the big one is
 * complete, and redelivering the big approval (the same event id over Kafka,
 * the same version under a new id) creates nothing twice. 200,000 seats: a
 * few seconds (bench/inventory_approve.c measures the largest, 2,000,000). */
Test(inventory, a_large_approval_is_filled_in_batches_and_holds_up_nothing, .timeout = 240)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_producer_t *prod = sb_producer_new(test_brokers(), &err);
    cr_assert_not_null(prod, "%s", err.buf);
    perf_t *big = new_perf("batch", MAX_SCHED);
    big->n_grades = 4;
    big->grades[0] = (grade_t){"VIP", 150000, 5000};
    big->grades[1] = (grade_t){"R", 90000, 5000};
    big->grades[2] = (grade_t){"S", 60000, 5000};
    big->grades[3] = (grade_t){"A", 40000, 5000};
    perf_t *small = new_perf("batch", 1);
    char big_event[SB_UUID_LEN + 1], small_event[SB_UUID_LEN + 1];
    sb_uuid_v4(big_event);
    sb_uuid_v4(small_event);
    ProtobufCBinaryData big_env = approval_envelope(big, big_event);
    produce(prod, big->id, big_env);
    produce(prod, small->id, approval_envelope(small, small_event));

    cr_assert_eq(await_seat_map(small->sched[0])->n_seats, 70);
    const char *bp[] = {big->id};
    static const char *const complete_sql =
        "SELECT count(*) FROM inv_schedules WHERE performance_id = $1::uuid AND NOT seats_pending";
    long long complete = db_int(complete_sql, 1, bp);
    fprintf(stderr,
            "test_inventory: the small approval was bookable with %lld of the big one's %d"
            " schedules complete\n",
            complete, MAX_SCHED);
    cr_assert_lt(complete, MAX_SCHED, "the small approval waited for the big one");

    /* the big one completes, schedule by schedule */
    int64_t t0 = sb_mono_ns(), deadline = sb_now_ms() + 120000;
    while (db_int(complete_sql, 1, bp) < MAX_SCHED) {
        cr_assert_lt(sb_now_ms(), deadline, "the big approval's seats were not all there after 120 s");
        usleep(20000);
    }
    fprintf(stderr, "test_inventory: the big approval (200000 seats) complete %.0f ms later\n",
            (double)(sb_mono_ns() - t0) / 1e6);
    static const char *const seats_sql = "SELECT count(*) FROM seats s JOIN inv_schedules sc USING"
                                         " (schedule_id) WHERE sc.performance_id = $1::uuid";
    cr_assert_eq(db_int(seats_sql, 1, bp), 200000);
    Sb__Reservation__SeatMap *m = seat_map_ok(big->sched[MAX_SCHED - 1]);
    cr_assert_eq(m->n_seats, 20000);
    cr_assert_str_eq(m->seats[0]->seat_id, "VIP-A-1");
    cr_assert_str_eq(m->seats[19999]->seat_id, "A-IP-20"); /* row 249 */
    Sb__Reservation__ListBookableResponse *l = bookable(big->category, 0, NULL);
    cr_assert_eq(l->n_performances, 2);

    /* the same event again over Kafka, then a marker on its partition (same
     * key): once the marker is bookable, the redelivery has been handled */
    perf_t *marker = new_perf("batch-marker", 1);
    char marker_event[SB_UUID_LEN + 1];
    sb_uuid_v4(marker_event);
    produce(prod, big->id, big_env);
    produce(prod, big->id, approval_envelope(marker, marker_event));
    await_seat_map(marker->sched[0]);
    /* and the same version under a new id */
    cr_assert_not(deliver_id(NULL, "performance.approved", big->id,
                             snapshot_payload("performance.approved", big)));
    cr_assert_eq(db_int(seats_sql, 1, bp), 200000, "nothing created twice");
    cr_assert_eq(db_int(complete_sql, 1, bp), MAX_SCHED, "nothing pending again");
    sb_producer_free(prod);
    sb_buf_release(&err);
    purge(big->id);
}

static int cmp_ms(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

Test(inventory, approval_over_kafka_becomes_bookable, .timeout = 180)
{
    enum { RUNS = 5 };
    sb_buf_t err = SB_BUF_INIT;
    sb_producer_t *prod = sb_producer_new(test_brokers(), &err);
    cr_assert_not_null(prod, "%s", err.buf);
    char topic[64]; /* sb.performance in the tests' namespace, which the service consumes */
    cr_assert(sb_event_topic("performance.approved", topic, sizeof topic));
    double ms[RUNS];
    for (int k = 0; k < RUNS; k++) {
        perf_t *p = new_perf("kafka", 1);
        Sb__Events__EventEnvelope env = SB__EVENTS__EVENT_ENVELOPE__INIT;
        char event_id[SB_UUID_LEN + 1], ts[32];
        sb_uuid_v4(event_id);
        sb_time_rfc3339(sb_now_ms(), ts);
        env.event_id = event_id;
        env.type = "performance.approved";
        env.aggregate_id = p->id;
        env.occurred_at = ts;
        env.trace_id = event_id;
        env.producer = "test-inventory";
        env.payload = snapshot_payload("performance.approved", p);
        ProtobufCBinaryData bytes = pack(arena, &env.base);

        int64_t t0 = sb_mono_ns();
        sb_buf_reset(&err);
        sb_status_t st =
            sb_producer_send(prod, topic, p->id, bytes.data, bytes.len, event_id, 10000, &err);
        cr_assert_eq(st, SB_OK, "produce: %s", err.buf);
        Sb__Reservation__SeatMap *m = NULL;
        int64_t deadline = sb_now_ms() + 60000;
        while (seat_map(p->sched[0], &m) == SB_NOT_FOUND) {
            cr_assert_lt(sb_now_ms(), deadline, "the approval did not arrive through Kafka in 60 s");
            usleep(2000);
        }
        ms[k] = (double)(sb_mono_ns() - t0) / 1e6;
        cr_assert_eq(m->n_seats, 70);
        /* bookable at that point too */
        Sb__Reservation__ListBookableResponse *l = bookable(p->category, 0, NULL);
        cr_assert_eq(l->n_performances, (size_t)k + 1, "listed %zu", l->n_performances);
        fprintf(stderr, "test_inventory: approval -> bookable over Kafka, run %d: %.1f ms\n", k + 1,
                ms[k]);
    }
    qsort(ms, RUNS, sizeof ms[0], cmp_ms);
    fprintf(stderr,
            "test_inventory: approval -> bookable over Kafka: median %.1f ms"
            " (min %.1f, max %.1f, %d runs)\n",
            ms[RUNS / 2], ms[0], ms[RUNS - 1], RUNS);
    sb_producer_free(prod);
    sb_buf_release(&err);
}

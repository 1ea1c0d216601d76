/* What applying one performance.approved of the largest performance the
 * catalog allows costs the reservation service: 100 schedules x 20,000 seats
 * (PERF_SCHEDULES_MAX x PERF_SCHEDULE_SEATS_MAX, grades of at most
 * PERF_GRADE_SEATS_MAX), 2,000,000 seats. The event goes through
 * sb_inbox_handle with the reservation service's own handlers, exactly as the
 * consumer hands it over (inbox row and seat map in one transaction), on a
 * database of its own, sb_reservation_bench (dropped and made again at the
 * start, so the service's migrations as they are now apply). No Kafka, no
 * gRPC: the figure is the apply alone.
 *
 *   build/bench/bench-inventory-approve [schedules=100] [seats=20000] [runs=3]
 *
 * Each run measures, from empty inventory tables each time:
 *   one tx      the approval with every seat created in the event's
 *               transaction (INVENTORY_INLINE_SEATS=2000000): the old way,
 *               with the set-based insert
 *   batched     the approval as the service applies it (INVENTORY_INLINE_SEATS
 *               as in the environment, default 100000): the event's
 *               transaction, then the seat-fill job (resv_seat_fill_tick, one
 *               schedule per transaction) until nothing is pending; its
 *               longest transaction
 *   redeliver   the same event id again (the inbox drops it)
 *   replay      the same snapshot under a new event id (the version check)
 *   change v2   a performance.changed v2 with one grade re-priced, and the
 *               seat-fill job after it
 * and checks the seat count and the prices. Prints every run on stderr and the medians as a
 * markdown table on stdout. DATABASE_URL (default
 * postgresql://postgres@127.0.0.1:5432/postgres) names the server. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.pb-c.h"
#include "reservation.h"
#include "sb/config.h"
#include "sb/events.h"
#include "sb/jobs.h"
#include "sb/log.h"
#include "sb/service.h"
#include "sb/util.h"

#define DB_NAME "sb_reservation_bench"
#define MAX_RUNS 15
#define GRADE_SEATS_MAX 5000 /* PERF_GRADE_SEATS_MAX */

SB_SERVICE_MIGRATIONS(reservation);

static const sb_event_handler_t rows[] = {
    {"performance.approved", &sb__events__performance_approved__descriptor,
     resv_on_performance_approved},
    {"performance.changed", &sb__events__performance_changed__descriptor, resv_on_performance_changed},
    {"performance.cancelled", &sb__events__performance_cancelled__descriptor,
     resv_on_performance_cancelled},
};
static const sb_event_table_t table = {rows, sizeof rows / sizeof rows[0], NULL};

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench-inventory-approve: %s: %s\n", what, why);
    exit(1);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One statement on the bench database (outside the pool); returns its first
 * value as a number (0 when none). */
static long long sql(const char *url, const char *q)
{
    const char *keys[] = {"dbname", "dbname", NULL};
    const char *vals[] = {url, DB_NAME, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK)
        die("connect", PQerrorMessage(c));
    PGresult *r = PQexec(c, q);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        die(q, PQerrorMessage(c));
    long long v = PQntuples(r) > 0 && PQnfields(r) > 0 ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    PQfinish(c);
    return v;
}

/* The database made afresh: an older run's schema never decides the figure. */
static void reset_database(const char *url)
{
    const char *keys[] = {"dbname", NULL};
    const char *vals[] = {url, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK)
        die("connect", PQerrorMessage(c));
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    PGresult *r = PQexec(c, "DROP DATABASE IF EXISTS " DB_NAME " WITH (FORCE)");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die("drop database", PQerrorMessage(c));
    PQclear(r);
    r = PQexec(c, "CREATE DATABASE " DB_NAME);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die("create database", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

typedef struct {
    char id[SB_UUID_LEN + 1], planner[SB_UUID_LEN + 1];
    int n_sched, seats;
    char (*sched)[SB_UUID_LEN + 1];
    char (*starts)[32];
} perf_t;

static ProtobufCBinaryData pack(sb_arena_t *a, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = sb_arena_alloc(a, len ? len : 1);
    protobuf_c_message_pack(m, buf);
    return (ProtobufCBinaryData){len, buf};
}

/* The packed envelope of type (approved / changed) carrying p at version,
 * under event_id. Grades of up to GRADE_SEATS_MAX seats; `bump` adds to the
 * first grade's price. */
static ProtobufCBinaryData envelope(sb_arena_t *a, const perf_t *p, const char *type,
                                    const char *event_id, int64_t version, int64_t bump)
{
    static const char *const names[] = {"VIP", "R", "S", "A", "B", "C", "D", "E", "F", "G",
                                        "H",   "I", "J", "K", "L", "M", "N", "O", "P", "Q"};
    Sb__Events__PerformanceSnapshot *s = sb_arena_alloc(a, sizeof *s);
    sb__events__performance_snapshot__init(s);
    s->performance_id = (char *)p->id;
    s->planner_id = (char *)p->planner;
    s->title = "The largest performance";
    s->venue = "Olympic Stadium";
    s->category = "CONCERT";
    s->running_minutes = 180;
    s->version = version;
    s->n_schedules = (size_t)p->n_sched;
    s->schedules = sb_arena_alloc(a, (size_t)p->n_sched * sizeof *s->schedules);
    for (int i = 0; i < p->n_sched; i++) {
        Sb__Events__ScheduleSnapshot *sc = sb_arena_alloc(a, sizeof *sc);
        sb__events__schedule_snapshot__init(sc);
        sc->schedule_id = (char *)p->sched[i];
        sc->starts_at = (char *)p->starts[i];
        sc->venue = "";
        s->schedules[i] = sc;
    }
    size_t ng = (size_t)(p->seats + GRADE_SEATS_MAX - 1) / GRADE_SEATS_MAX;
    if (ng > sizeof names / sizeof names[0])
        die("layout", "more than 20 grades");
    s->n_grades = ng;
    s->grades = sb_arena_alloc(a, ng * sizeof *s->grades);
    for (size_t i = 0; i < ng; i++) {
        Sb__Events__GradeSnapshot *g = sb_arena_alloc(a, sizeof *g);
        sb__events__grade_snapshot__init(g);
        g->grade = (char *)names[i];
        g->price = 200000 - (int64_t)i * 10000 + (i == 0 ? bump : 0);
        g->seat_count = i + 1 < ng ? GRADE_SEATS_MAX : p->seats - (int)(ng - 1) * GRADE_SEATS_MAX;
        s->grades[i] = g;
    }
    Sb__Events__EventEnvelope env = SB__EVENTS__EVENT_ENVELOPE__INIT;
    if (!strcmp(type, "performance.approved")) {
        Sb__Events__PerformanceApproved m = SB__EVENTS__PERFORMANCE_APPROVED__INIT;
        m.performance = s;
        env.payload = pack(a, &m.base);
    } else {
        Sb__Events__PerformanceChanged m = SB__EVENTS__PERFORMANCE_CHANGED__INIT;
        m.performance = s;
        m.summary = "re-priced";
        env.payload = pack(a, &m.base);
    }
    char ts[32];
    sb_time_rfc3339(sb_now_ms(), ts);
    env.event_id = (char *)event_id;
    env.type = (char *)type;
    env.aggregate_id = (char *)p->id;
    env.occurred_at = ts;
    env.trace_id = (char *)event_id;
    env.producer = "bench-inventory-approve";
    return pack(a, &env.base);
}

/* Handles one envelope; returns the wall time in ms, dies unless the outcome
 * is the expected one. */
static double handle(sb_pg_pool_t *pool, ProtobufCBinaryData env, sb_event_outcome_t want,
                     const char *what)
{
    sb_inbox_result_t res = SB_INBOX_RESULT_INIT;
    int64_t t0 = sb_mono_ns();
    sb_status_t st = sb_inbox_handle(pool, &table, "bench", NULL, env.data, env.len, &res);
    double ms = (double)(sb_mono_ns() - t0) / 1e6;
    if (st != SB_OK || res.outcome != want) {
        fprintf(stderr, "bench-inventory-approve: %s: %s (outcome %d) %s %s\n", what, sb_status_name(st),
                (int)res.outcome, res.reason.buf, res.detail.buf);
        exit(1);
    }
    sb_inbox_result_release(&res);
    return ms;
}

/* One seat-fill tick, as the job runner runs it: one transaction. */
struct fill_tick {
    sb_arena_t *arena;
    bool again;
};

static sb_status_t fill_tx(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    struct fill_tick *f = arg;
    sb_db_t db = {c, f->arena, err};
    sb_job_ctx_t job = {.db = &db, .arena = f->arena};
    sb_status_t st = resv_seat_fill_tick(&job);
    f->again = job.again;
    return st;
}

/* Runs the seat-fill job until nothing is pending; returns the wall time in
 * ms and the longest tick (one schedule, one transaction) in *max_ms. */
static double fill_all(sb_pg_pool_t *pool, double *max_ms)
{
    int64_t t0 = sb_mono_ns();
    *max_ms = 0;
    for (bool again = true; again;) {
        struct fill_tick f = {sb_arena_new(), false};
        sb_buf_t err = SB_BUF_INIT;
        int64_t t1 = sb_mono_ns();
        if (sb_pg_tx(pool, SB_PG_READ_COMMITTED, fill_tx, &f, &err) != SB_OK)
            die("seat fill", err.buf);
        double ms = (double)(sb_mono_ns() - t1) / 1e6;
        if (ms > *max_ms)
            *max_ms = ms;
        again = f.again;
        sb_buf_release(&err);
        sb_arena_free(f.arena);
    }
    return (double)(sb_mono_ns() - t0) / 1e6;
}

static void check_seats(const char *url, long long want, const char *when)
{
    long long got = sql(url, "SELECT count(*) FROM seats");
    long long pending = sql(url, "SELECT count(*) FROM inv_schedules WHERE seats_pending");
    if (got != want || pending) {
        fprintf(stderr, "bench-inventory-approve: %s: %lld seats (want %lld), %lld schedules pending\n",
                when, got, want, pending);
        exit(1);
    }
}

enum {
    ONE_TX,
    BATCH_EVENT,
    BATCH_FILL,
    BATCH_TICK,
    REDELIVER,
    REPLAY,
    CHANGE_EVENT,
    CHANGE_FILL,
    N_STEPS
};
static const char *const step_names[N_STEPS] = {
    "approve in one transaction (INVENTORY_INLINE_SEATS=2000000)",
    "approve, batched: the event's transaction (default INVENTORY_INLINE_SEATS)",
    "approve, batched: seat-fill job until every schedule is done",
    "approve, batched: longest seat-fill transaction (one schedule)",
    "redeliver (same event id: inbox duplicate)",
    "replay (same snapshot, new event id: version check)",
    "change v2, one grade re-priced: the event's transaction",
    "change v2: seat-fill job (nothing to create)",
};

static void fresh(const char *url)
{
    sql(url, "TRUNCATE seats, inv_grades, inv_schedules, inv_performances, sb_inbox");
    sql(url, "CHECKPOINT"); /* the previous run's dirty pages are not this run's cost */
}

static perf_t new_perf(sb_arena_t *a, int n_sched, int seats)
{
    perf_t p = {.n_sched = n_sched, .seats = seats};
    p.sched = sb_arena_alloc(a, (size_t)n_sched * sizeof *p.sched);
    p.starts = sb_arena_alloc(a, (size_t)n_sched * sizeof *p.starts);
    sb_uuid_v4(p.id);
    sb_uuid_v4(p.planner);
    for (int i = 0; i < n_sched; i++) {
        sb_uuid_v4(p.sched[i]);
        sb_time_rfc3339((sb_now_ms() / 1000 + 86400LL * (30 + i)) * 1000, p.starts[i]);
    }
    return p;
}

int main(int argc, char **argv)
{
    int n_sched = argc > 1 ? atoi(argv[1]) : 100;
    int seats = argc > 2 ? atoi(argv[2]) : 20000;
    int runs = argc > 3 ? atoi(argv[3]) : 3;
    if (n_sched < 1 || n_sched > 500 || seats < 1 || seats > 100000 || runs < 1 || runs > MAX_RUNS)
        die("usage", "bench-inventory-approve [schedules 1-500] [seats per schedule] [runs 1-15]");
    sb_log_init("bench-inventory-approve");
    sb_log_set_level(SB_LOG_WARN);
    const char *url = sb_cfg_str("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres");
    const char *inline_default = getenv("INVENTORY_INLINE_SEATS");

    reset_database(url);
    sb_buf_t err = SB_BUF_INIT;
    sb_pg_pool_t *pool = sb_pg_pool_new(url, DB_NAME, 2, &err);
    if (!pool || sb_events_migrate(pool, &err) != SB_OK ||
        sb_pg_migrate(pool, "reservation", sb_reservation_migrations.items, sb_reservation_migrations.n,
                      &err) != SB_OK)
        die("database", err.buf);

    double t[N_STEPS][MAX_RUNS];
    long long want = (long long)n_sched * seats;
    long long vip = (long long)n_sched * (seats < GRADE_SEATS_MAX ? seats : GRADE_SEATS_MAX);
    for (int run = 0; run < runs; run++) {
        sb_arena_t *a = sb_arena_new();
        char id1[SB_UUID_LEN + 1], id2[SB_UUID_LEN + 1], id3[SB_UUID_LEN + 1];

        /* the whole approval in the event's transaction */
        fresh(url);
        setenv("INVENTORY_INLINE_SEATS", "2000000", 1);
        perf_t p = new_perf(a, n_sched, seats);
        sb_uuid_v4(id1);
        t[ONE_TX][run] = handle(pool, envelope(a, &p, "performance.approved", id1, 1, 0),
                                SB_EVENT_HANDLED, "approve");
        check_seats(url, want, "after the approval in one transaction");

        /* batched: the event marks the schedules, the seat-fill job fills them */
        fresh(url);
        if (inline_default)
            setenv("INVENTORY_INLINE_SEATS", inline_default, 1);
        else
            unsetenv("INVENTORY_INLINE_SEATS");
        p = new_perf(a, n_sched, seats);
        sb_uuid_v4(id1);
        sb_uuid_v4(id2);
        sb_uuid_v4(id3);
        ProtobufCBinaryData approved = envelope(a, &p, "performance.approved", id1, 1, 0);
        t[BATCH_EVENT][run] = handle(pool, approved, SB_EVENT_HANDLED, "approve");
        t[BATCH_FILL][run] = fill_all(pool, &t[BATCH_TICK][run]);
        check_seats(url, want, "after the batched approval");
        t[REDELIVER][run] = handle(pool, approved, SB_EVENT_DUPLICATE, "redeliver");
        t[REPLAY][run] =
            handle(pool, envelope(a, &p, "performance.approved", id2, 1, 0), SB_EVENT_HANDLED, "replay");
        check_seats(url, want, "after the redelivery and the replay");
        t[CHANGE_EVENT][run] = handle(pool, envelope(a, &p, "performance.changed", id3, 2, 5000),
                                      SB_EVENT_HANDLED, "change");
        double ignored;
        t[CHANGE_FILL][run] = fill_all(pool, &ignored);
        check_seats(url, want, "after the change");
        long long repriced =
            sql(url, "SELECT count(*) FROM seats WHERE grade = 'VIP' AND price = 205000");
        if (repriced != vip) {
            fprintf(stderr, "bench-inventory-approve: %lld seats re-priced, want %lld\n", repriced, vip);
            return 1;
        }
        fprintf(stderr, "run %d: %lld seats:", run + 1, want);
        for (int k = 0; k < N_STEPS; k++)
            fprintf(stderr, " %s%.1f", k ? "/ " : "", t[k][run]);
        fprintf(stderr, " ms\n");
        sb_arena_free(a);
    }
    printf("| %d schedules x %d seats = %lld seats (%d runs, median) | ms |\n| --- | ---: |\n", n_sched,
           seats, want, runs);
    for (int k = 0; k < N_STEPS; k++) {
        qsort(t[k], (size_t)runs, sizeof t[k][0], cmp_d);
        printf("| %s | %.1f |\n", step_names[k], t[k][runs / 2]);
    }
    sb_pg_pool_free(pool);
    sb_buf_release(&err);
    return 0;
}

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
 * Each run starts from empty inventory tables and measures
 *   approve     a new performance.approved v1 (the figure)
 *   redeliver   the same event id again (the inbox drops it)
 *   replay      the same snapshot under a new event id (the version check drops it)
 *   change v2   a performance.changed v2 with one grade re-priced
 * and checks the seat count. Prints every run on stderr and the medians as a
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
        fprintf(stderr, "bench-inventory-approve: %s: %s (outcome %d) %s %s\n", what,
                sb_status_name(st), (int)res.outcome, res.reason.buf, res.detail.buf);
        exit(1);
    }
    sb_inbox_result_release(&res);
    return ms;
}

enum { APPROVE, REDELIVER, REPLAY, CHANGE, N_STEPS };
static const char *const step_names[N_STEPS] = {
    "approve (new event, v1)",
    "redeliver (same event id)",
    "replay (same snapshot, new event id)",
    "change v2 (one grade re-priced)",
};

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

    reset_database(url);
    sb_buf_t err = SB_BUF_INIT;
    sb_pg_pool_t *pool = sb_pg_pool_new(url, DB_NAME, 2, &err);
    if (!pool || sb_events_migrate(pool, &err) != SB_OK ||
        sb_pg_migrate(pool, "reservation", sb_reservation_migrations.items,
                      sb_reservation_migrations.n, &err) != SB_OK)
        die("database", err.buf);

    double t[N_STEPS][MAX_RUNS];
    long long want = (long long)n_sched * seats;
    for (int run = 0; run < runs; run++) {
        sql(url, "TRUNCATE seats, inv_grades, inv_schedules, inv_performances, sb_inbox");
        sql(url, "CHECKPOINT"); /* the previous run's dirty pages are not this run's cost */
        sb_arena_t *a = sb_arena_new();
        perf_t p = {.n_sched = n_sched, .seats = seats};
        p.sched = sb_arena_alloc(a, (size_t)n_sched * sizeof *p.sched);
        p.starts = sb_arena_alloc(a, (size_t)n_sched * sizeof *p.starts);
        sb_uuid_v4(p.id);
        sb_uuid_v4(p.planner);
        for (int i = 0; i < n_sched; i++) {
            sb_uuid_v4(p.sched[i]);
            sb_time_rfc3339((sb_now_ms() / 1000 + 86400LL * (30 + i)) * 1000, p.starts[i]);
        }
        char id1[SB_UUID_LEN + 1], id2[SB_UUID_LEN + 1], id3[SB_UUID_LEN + 1];
        sb_uuid_v4(id1);
        sb_uuid_v4(id2);
        sb_uuid_v4(id3);
        ProtobufCBinaryData approved = envelope(a, &p, "performance.approved", id1, 1, 0);
        t[APPROVE][run] = handle(pool, approved, SB_EVENT_HANDLED, "approve");
        long long got = sql(url, "SELECT count(*) FROM seats");
        if (got != want) {
            fprintf(stderr, "bench-inventory-approve: %lld seats after the approval, want %lld\n", got,
                    want);
            return 1;
        }
        t[REDELIVER][run] = handle(pool, approved, SB_EVENT_DUPLICATE, "redeliver");
        t[REPLAY][run] = handle(pool, envelope(a, &p, "performance.approved", id2, 1, 0),
                                SB_EVENT_HANDLED, "replay");
        t[CHANGE][run] =
            handle(pool, envelope(a, &p, "performance.changed", id3, 2, 5000), SB_EVENT_HANDLED, "change");
        got = sql(url, "SELECT count(*) FROM seats");
        long long repriced = sql(url, "SELECT count(*) FROM seats WHERE grade = 'VIP' AND price = 205000");
        if (got != want || repriced != (long long)n_sched * (seats < GRADE_SEATS_MAX ? seats : GRADE_SEATS_MAX)) {
            fprintf(stderr, "bench-inventory-approve: after the change: %lld seats (want %lld), %lld re-priced\n",
                    got, want, repriced);
            return 1;
        }
        fprintf(stderr, "run %d: %lld seats: approve %.0f ms, redeliver %.1f ms, replay %.1f ms, change %.0f ms\n",
                run + 1, want, t[APPROVE][run], t[REDELIVER][run], t[REPLAY][run], t[CHANGE][run]);
        sb_arena_free(a);
    }
    printf("| %d schedules x %d seats = %lld seats (%d runs, median) | ms |\n| --- | ---: |\n", n_sched,
           seats, want, runs);
    for (int s = 0; s < N_STEPS; s++) {
        qsort(t[s], (size_t)runs, sizeof t[s][0], cmp_d);
        printf("| %s | %.1f |\n", step_names[s], t[s][runs / 2]);
    }
    sb_pg_pool_free(pool);
    sb_buf_release(&err);
    return 0;
}

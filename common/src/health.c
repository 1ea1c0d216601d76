/* A service's health as /metrics and /readyz show it (sb/service.h,
 * sb/ready.h).
 *
 * Design: what costs a query or a broker round trip is measured by a thread
 * of the runtime, not per scrape: the health refresher (in every replica:
 * each reports its own consumer and its own view of the broker;
 * HEALTH_REFRESH_MS, 5 s by default) sets gauges that a scrape only reads.
 * A tick asks Kafka first (a metadata request with a 1 s limit on the
 * producer's connections, then the consumer's lag, mostly from librdkafka's
 * cached offsets) and then PostgreSQL, one autocommit statement on a pooled
 * connection borrowed for it: the unpublished outbox rows (their partial
 * index), the oldest one's age and the dead letters not replayed yet
 * (theirs). It is not a job of sb/jobs.h on purpose: a job holds a session
 * of its own and runs on one replica at a time, and this needs neither.
 *
 * Readiness asks PostgreSQL and Redis at the time of the request (each
 * bounded: 1 s for a pooled connection, REDIS_TIMEOUT_MS) because a service
 * without them cannot serve. Kafka is reported from the job's last look and
 * does not make the service unready: its events wait in the outbox, the
 * relay publishes them when the broker is back, and every RPC works
 * meanwhile. A load balancer that took the service out for Kafka would turn
 * a delay of events into an outage. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sb/alloc.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/service.h"

#define KAFKA_CHECK_MS 1000

static const sb_pg_stmt_t stmt_gauges = {
    "sb_health_gauges",
    "SELECT (SELECT count(*) FROM sb_outbox WHERE published_at IS NULL),"
    " coalesce((SELECT greatest(extract(epoch FROM now() - occurred_at), 0) FROM sb_outbox"
    "   WHERE published_at IS NULL ORDER BY id LIMIT 1), 0),"
    " (SELECT count(*) FROM sb_dead_letters WHERE replayed_at IS NULL)"};

struct lag {
    sb_arena_t *a;
    size_t n, cap;
    const char **names;
    double *values;
};

static void add_lag(void *arg, const char *topic, int32_t partition, int64_t lag)
{
    struct lag *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        const char **names = SB_ARENA_NEW(l->a, const char *, cap);
        double *values = SB_ARENA_NEW(l->a, double, cap);
        if (l->n) {
            memcpy(names, l->names, l->n * sizeof *names);
            memcpy(values, l->values, l->n * sizeof *values);
        }
        l->names = names;
        l->values = values;
        l->cap = cap;
    }
    l->names[l->n] =
        sb_arena_printf(l->a, "sb_consumer_lag{topic=\"%s\",partition=\"%d\"}", topic, (int)partition);
    l->values[l->n++] = (double)lag;
}

struct sb_health {
    sb_service_t *svc;
    int every_ms;
    atomic_bool stop;
    pthread_t thread;
};

/* One refresh; a failure is logged once per change of state. */
static void health_tick(sb_service_t *svc, bool *db_failing)
{
    sb_arena_t *a = sb_arena_new();
    if (svc->producer) {
        sb_buf_t why = SB_BUF_INIT;
        bool up = sb_producer_broker_up(svc->producer, KAFKA_CHECK_MS, &why);
        int was = atomic_exchange(&svc->kafka_state, up ? SB_KAFKA_UP : SB_KAFKA_DOWN);
        if (!up && was != SB_KAFKA_DOWN)
            sb_warn("kafka: %s; events wait in the outbox until it is back", why.buf);
        else if (up && was == SB_KAFKA_DOWN)
            sb_info("kafka: a broker answers again");
        sb_metrics_gauge("sb_kafka_broker_up", up ? 1 : 0);
        sb_buf_release(&why);
    }
    if (svc->consumer) {
        struct lag l = {.a = a};
        sb_consumer_lag(svc->consumer, KAFKA_CHECK_MS, add_lag, &l);
        sb_metrics_gauge_family("sb_consumer_lag", l.n, l.names, l.values);
    }
    sb_buf_t detail = SB_BUF_INIT;
    sb_db_t db = {.arena = a, .detail = &detail, .pool = svc->pg};
    PGresult *r;
    sb_status_t st = sb_db_exec(&db, &stmt_gauges, &r);
    if (st == SB_OK) {
        sb_metrics_gauge("sb_outbox_unpublished", strtod(PQgetvalue(r, 0, 0), NULL));
        sb_metrics_gauge("sb_outbox_oldest_unpublished_age_seconds", strtod(PQgetvalue(r, 0, 1), NULL));
        sb_metrics_gauge("sb_dead_letters", strtod(PQgetvalue(r, 0, 2), NULL));
        if (*db_failing)
            sb_info("health: the outbox and dead-letter gauges are fresh again");
    } else if (!*db_failing) {
        sb_warn("health: the outbox and dead-letter gauges keep their last values: %s", detail.buf);
    }
    *db_failing = st != SB_OK;
    sb_buf_release(&detail);
    sb_arena_free(a);
}

static void *health_main(void *arg)
{
    sb_health_t *h = arg;
    bool db_failing = false;
    while (!atomic_load(&h->stop)) {
        health_tick(h->svc, &db_failing);
        for (int waited = 0; waited < h->every_ms && !atomic_load(&h->stop); waited += 50)
            usleep(50000);
    }
    return NULL;
}

sb_health_t *sb_service_health_start(sb_service_t *svc, int every_ms)
{
    sb_health_t *h = sb_calloc(1, sizeof *h);
    h->svc = svc;
    h->every_ms = every_ms > 0 ? every_ms : 5000;
    pthread_create(&h->thread, NULL, health_main, h);
    return h;
}

void sb_service_health_stop(sb_health_t *h)
{
    if (!h)
        return;
    atomic_store(&h->stop, true);
    pthread_join(h->thread, NULL);
    free(h);
}

void sb_service_ready(void *arg, sb_ready_t *r)
{
    sb_service_t *svc = arg;
    if (svc->server && !sb_server_serving(svc->server)) {
        /* draining: a load balancer stops sending; nothing else to ask */
        sb_ready_report(r, "grpc", true, false, "draining: shutting down");
        return;
    }
    sb_buf_t err = SB_BUF_INIT;
    sb_pg_conn_t *c = sb_pg_acquire(svc->pg, 1000, &err);
    bool ok = c != NULL;
    if (c) {
        PGresult *res = sb_pg_exec_sql(c, "SELECT 1");
        ok = PQresultStatus(res) == PGRES_TUPLES_OK;
        if (!ok)
            sb_buf_adds(&err, PQresultErrorMessage(res));
        PQclear(res);
        sb_pg_release(svc->pg, c);
    }
    /* the first line of libpq's message, without the trailing newline */
    sb_buf_t line = SB_BUF_INIT;
    sb_buf_addf(&line, "%.*s", (int)strcspn(err.buf, "\n"), err.buf);
    sb_ready_report(r, "postgres", true, ok, line.buf);
    sb_buf_release(&line);
    sb_buf_release(&err);
    sb_ready_report(r, "redis", true, sb_redis_ping(svc->redis), "no answer to PING");
    int k = atomic_load(&svc->kafka_state);
    sb_ready_report(r, "kafka", false, k == SB_KAFKA_UP,
                    k == SB_KAFKA_UNKNOWN ? "not checked yet"
                                          : "no broker answered the last metadata request");
}

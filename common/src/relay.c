/* The outbox relay: unpublished outbox rows -> Kafka, in id order. See
 * sb/events.h.
 *
 * Design: only one relay per database works at a time (an advisory lock), so
 * rows leave in id order; each is keyed by its aggregate id, so the events of
 * one aggregate share a partition and keep their order. Only the delivered
 * prefix of a batch is marked published: a row after a failed one goes again
 * next round, after it, never before. A crash between publish and mark
 * publishes again (at least once; consumers drop duplicates by event id). */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sb/alloc.h"
#include "sb/arena.h"
#include "sb/events.h"
#include "sb/locks.h"
#include "sb/log.h"
#include "sb/metrics.h"

int sb_outbox_relay_once(sb_pg_pool_t *pool, sb_producer_t *p, int max, sb_buf_t *err)
{
    static const sb_pg_stmt_t lock = {"sb_relay_lock", "SELECT pg_try_advisory_xact_lock(" SB_LOCK_OUTBOX_RELAY ")"};
    static const sb_pg_stmt_t pending = {
        "sb_relay_pending",
        "SELECT id::text, topic, aggregate_id, envelope FROM sb_outbox"
        " WHERE published_at IS NULL ORDER BY id LIMIT $1::int"};
    static const sb_pg_stmt_t mark = {
        "sb_relay_mark", "UPDATE sb_outbox SET published_at = now() WHERE id = ANY($1::bigint[])"};

    sb_pg_conn_t *c = sb_pg_acquire(pool, 5000, err);
    if (!c)
        return -1;
    int published = -1;
    PGresult *r = sb_pg_exec_sql(c, "BEGIN");
    if (sb_pg_check(c, r, err) != SB_OK)
        goto out_clear;
    PQclear(r);
    r = sb_pg_exec(c, &lock, 0, NULL);
    if (sb_pg_check(c, r, err) != SB_OK)
        goto out_rollback;
    if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
        published = 0; /* another relay of this database is at work */
        goto out_rollback;
    }
    PQclear(r);
    char maxs[16];
    snprintf(maxs, sizeof maxs, "%d", max);
    const char *params[] = {maxs};
    r = sb_pg_exec(c, &pending, 1, params);
    if (sb_pg_check(c, r, err) != SB_OK)
        goto out_rollback;
    int n = PQntuples(r);
    if (n == 0) {
        published = 0;
        goto out_rollback;
    }
    sb_arena_t *a = sb_arena_new();
    sb_kafka_msg_t *msgs = SB_ARENA_NEW(a, sb_kafka_msg_t, n);
    for (int i = 0; i < n; i++) {
        size_t blen;
        unsigned char *bytes = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 3), &blen);
        if (!bytes)
            sb_oom(blen);
        sb_arena_on_free(a, PQfreemem, bytes);
        sb_event_envelope_t *env =
            sb__events__event_envelope__unpack(sb_arena_pb_allocator(a), blen, bytes);
        msgs[i] = (sb_kafka_msg_t){.topic = PQgetvalue(r, i, 1), .key = PQgetvalue(r, i, 2),
                                   .val = bytes, .len = blen, .trace_id = env ? env->trace_id : NULL};
    }
    size_t delivered = sb_producer_send_batch(p, msgs, (size_t)n, 30000, NULL, err);
    sb_arena_free(a);
    if (delivered < (size_t)n)
        sb_warn("outbox: row %s not delivered: %s", PQgetvalue(r, (int)delivered, 0), err->buf);
    /* Mark only the delivered prefix: later rows go again next round, in order. */
    if (delivered > 0) {
        sb_buf_reset(err);
        sb_buf_t ids = SB_BUF_INIT;
        sb_buf_addch(&ids, '{');
        for (size_t i = 0; i < delivered; i++)
            sb_buf_addf(&ids, "%s%s", i ? "," : "", PQgetvalue(r, (int)i, 0));
        sb_buf_addch(&ids, '}');
        PQclear(r);
        const char *mp[] = {ids.buf};
        r = sb_pg_exec(c, &mark, 1, mp);
        sb_buf_release(&ids);
        if (sb_pg_check(c, r, err) != SB_OK)
            goto out_rollback;
        PQclear(r);
        r = sb_pg_exec_sql(c, "COMMIT");
        if (sb_pg_check(c, r, err) != SB_OK)
            goto out_clear;
        sb_metrics_count("sb_outbox_published_total", delivered);
    }
    published = (int)delivered;
    if (delivered == 0) {
        sb_buf_adds(err, " (no outbox event could be delivered to Kafka)");
        published = -1;
        goto out_rollback;
    }
    goto out_clear;

out_rollback:
    PQclear(r);
    r = sb_pg_exec_sql(c, "ROLLBACK");
out_clear:
    PQclear(r);
    sb_pg_release(pool, c);
    return published;
}

struct sb_relay {
    sb_pg_pool_t *pool;
    sb_producer_t *p;
    int poll_ms;
    atomic_bool stop;
    pthread_t thread;
};

/* The relay's LISTEN connection; NULL when it cannot be had (then the relay
 * only polls, and tries again next round). */
static PGconn *relay_listen(sb_relay_t *r)
{
    sb_buf_t err = SB_BUF_INIT;
    PGconn *c = sb_pg_pool_connect(r->pool, &err);
    if (c) {
        PGresult *res = PQexec(c, "LISTEN " SB_OUTBOX_CHANNEL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            sb_warn("outbox relay: LISTEN failed: %s", PQerrorMessage(c));
            PQfinish(c);
            c = NULL;
        }
        PQclear(res);
    } else {
        sb_warn("outbox relay: no LISTEN connection (polling only): %s", err.buf);
    }
    sb_buf_release(&err);
    return c;
}

/* Waits up to ms for a NOTIFY on c (or only sleeps when c is NULL), in short
 * slices so a stop is seen quickly. Returns false when c broke. */
static bool relay_wait(sb_relay_t *r, PGconn *c, int ms)
{
    for (int waited = 0; waited < ms && !atomic_load(&r->stop); waited += 50) {
        int slice = ms - waited < 50 ? ms - waited : 50;
        if (!c) {
            usleep((useconds_t)slice * 1000);
            continue;
        }
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        if (poll(&pfd, 1, slice) > 0) {
            if (!PQconsumeInput(c))
                return false;
            bool woken = false;
            PGnotify *n;
            while ((n = PQnotifies(c))) {
                woken = true;
                PQfreemem(n);
            }
            if (woken)
                return true;
        }
    }
    return true;
}

static void *relay_main(void *arg)
{
    sb_relay_t *r = arg;
    int backoff = r->poll_ms;
    PGconn *listen = relay_listen(r);
    while (!atomic_load(&r->stop)) {
        sb_buf_t err = SB_BUF_INIT;
        int n = sb_outbox_relay_once(r->pool, r->p, 200, &err);
        if (n < 0) {
            sb_error("outbox relay: %s", err.buf);
            backoff = backoff < 5000 ? backoff * 2 : 5000;
        } else {
            backoff = r->poll_ms;
        }
        sb_buf_release(&err);
        if (n == 200)
            continue;
        /* after a failure, wait out the backoff even if woken */
        if (!relay_wait(r, n < 0 ? NULL : listen, backoff) || (!listen && n >= 0)) {
            if (listen)
                sb_warn("outbox relay: LISTEN connection lost; reconnecting");
            PQfinish(listen);
            listen = relay_listen(r);
        }
    }
    PQfinish(listen);
    return NULL;
}

sb_relay_t *sb_relay_start(sb_pg_pool_t *pool, sb_producer_t *p, int poll_ms)
{
    sb_relay_t *r = sb_calloc(1, sizeof *r);
    r->pool = pool;
    r->p = p;
    r->poll_ms = poll_ms > 0 ? poll_ms : 100;
    pthread_create(&r->thread, NULL, relay_main, r);
    return r;
}

void sb_relay_stop(sb_relay_t *r)
{
    if (!r)
        return;
    atomic_store(&r->stop, true);
    pthread_join(r->thread, NULL);
    sb_buf_t err = SB_BUF_INIT;
    if (sb_outbox_relay_once(r->pool, r->p, 1000, &err) < 0)
        sb_warn("outbox relay at stop: %s", err.buf);
    sb_buf_release(&err);
    free(r);
}

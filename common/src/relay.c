/* The outbox relay: unpublished outbox rows -> Kafka, in id order. A session
 * job (sb/jobs.h) of every service. See sb/events.h.
 *
 * Design: a round reads a batch of unpublished rows (one short statement),
 * publishes them with no transaction open, and marks the delivered prefix
 * published (one short statement) at the time each delivery report arrived.
 * Nothing is held open across the wait for Kafka (up to 30 s when it is
 * unreachable): no pooled connection, no transaction, no row lock.
 *
 * Order. Rows leave in id order, keyed by aggregate id, so the events of one
 * aggregate share a partition and keep their order; only the delivered prefix
 * of a batch is marked, so a row after a failed one goes again next round,
 * after it, never before. Two replicas cannot interleave out of order because
 * only one relay per database works at all: the relay is a session job, and
 * its leader holds the session-level advisory lock SB_LOCK_OUTBOX_RELAY on
 * its own connection for as long as it relays; it reads, and marks, on that
 * same connection. Another replica gets the lock only once that connection
 * has ended. If it ends while the old leader is still publishing (the network
 * to PostgreSQL failed, not the process), the old leader's mark fails on the
 * dead connection, and the new leader publishes the same unmarked rows again,
 * from the oldest, in the same order. Kafka may then see a row twice, but
 * each relay's sequence is in id order, so the first copy of every event of a
 * key comes in order and the consumers' inbox drops the later copies: the
 * effect is in order and once.
 *
 * A crash between publish and mark publishes again (at least once; consumers
 * drop duplicates by event id). A stopping service cancels the wait (the rows
 * stay unpublished) and then runs one final round with a short wait, to
 * publish what its last transactions wrote. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/alloc.h"
#include "sb/arena.h"
#include "sb/events.h"
#include "sb/jobs.h"
#include "sb/locks.h"
#include "sb/log.h"
#include "sb/metrics.h"

#define BATCH 200
#define WAIT_MS 30000 /* above message.timeout.ms (producer.c) */
#define FINAL_WAIT_MS 5000

static const sb_pg_stmt_t stmt_pending = {"sb_relay_pending",
                                          "SELECT id::text, topic, aggregate_id, envelope FROM sb_outbox"
                                          " WHERE published_at IS NULL ORDER BY id LIMIT $1::int"};

/* published_at = when the delivery report arrived (us since the epoch) */
static const sb_pg_stmt_t stmt_mark = {
    "sb_relay_mark",
    "UPDATE sb_outbox o SET published_at = 'epoch'::timestamptz + t.us * interval '1 microsecond'"
    " FROM unnest($1::bigint[], $2::bigint[]) AS t(id, us) WHERE o.id = t.id"};

static const sb_pg_stmt_t stmt_lock = {"sb_relay_lock",
                                       "SELECT pg_try_advisory_lock(" SB_LOCK_OUTBOX_RELAY ")"};

/* One round on db (whose connection holds the relay lock and no
 * transaction): the number published, or -1 with db->detail set. */
static int relay_round(sb_db_t *db, sb_producer_t *p, int max, int wait_ms, const atomic_bool *cancel)
{
    PGresult *r;
    if (sb_db_exec(db, &stmt_pending, &r, sb_arena_printf(db->arena, "%d", max)) != SB_OK)
        return -1;
    int n = PQntuples(r);
    if (n == 0)
        return 0;
    sb_kafka_msg_t *msgs = SB_ARENA_NEW(db->arena, sb_kafka_msg_t, n);
    for (int i = 0; i < n; i++) {
        size_t len;
        unsigned char *bytes = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 3), &len);
        if (!bytes)
            sb_oom(len);
        sb_arena_on_free(db->arena, PQfreemem, bytes);
        sb_event_envelope_t *env =
            sb__events__event_envelope__unpack(sb_arena_pb_allocator(db->arena), len, bytes);
        msgs[i] = (sb_kafka_msg_t){.topic = PQgetvalue(r, i, 1),
                                   .key = PQgetvalue(r, i, 2),
                                   .val = bytes,
                                   .len = len,
                                   .trace_id = env ? env->trace_id : NULL};
    }
    sb_buf_t err = SB_BUF_INIT;
    size_t delivered = sb_producer_send_batch(p, msgs, (size_t)n, wait_ms, cancel, &err);
    if (delivered < (size_t)n)
        sb_warn("outbox: row %s and after not delivered: %s", PQgetvalue(r, (int)delivered, 0), err.buf);
    if (delivered == 0) {
        sb_buf_addf(db->detail, "no outbox event could be delivered to Kafka: %s", err.buf);
        sb_buf_release(&err);
        return -1;
    }
    sb_buf_release(&err);
    /* Mark only the delivered prefix: later rows go again next round, in order. */
    sb_buf_t ids = SB_BUF_INIT, at = SB_BUF_INIT;
    for (size_t i = 0; i < delivered; i++) {
        sb_buf_addf(&ids, "%s%s", i ? "," : "{", PQgetvalue(r, (int)i, 0));
        sb_buf_addf(&at, "%s%lld", i ? "," : "{", (long long)msgs[i].delivered_us);
    }
    sb_buf_addch(&ids, '}');
    sb_buf_addch(&at, '}');
    sb_status_t st = sb_db_exec(db, &stmt_mark, NULL, ids.buf, at.buf);
    sb_buf_release(&ids);
    sb_buf_release(&at);
    if (st != SB_OK)
        return -1;
    sb_metrics_count("sb_outbox_published_total", delivered);
    return (int)delivered;
}

/* The relay job's tick; job->arg is the producer. */
static sb_status_t relay_tick(sb_job_ctx_t *job)
{
    int n = relay_round(job->db, job->arg, BATCH, job->final ? FINAL_WAIT_MS : WAIT_MS, job->stopping);
    job->again = n == BATCH;
    return n < 0 ? SB_UNAVAILABLE : SB_OK;
}

sb_job_t sb_outbox_relay_job(int every_ms)
{
    return (sb_job_t){
        .name = "outbox-relay",
        .fn = relay_tick,
        .every_ms = every_ms,
        .channel = SB_OUTBOX_CHANNEL,
        .lock_key = SB_LOCK_OUTBOX_RELAY,
        .session = true,
        .final_tick = true,
    };
}

int sb_outbox_relay_once(sb_pg_pool_t *pool, sb_producer_t *p, int max, sb_buf_t *err)
{
    sb_pg_conn_t *c = sb_pg_conn_new(pool, err);
    if (!c)
        return -1;
    sb_arena_t *a = sb_arena_new();
    sb_db_t db = {c, a, err};
    PGresult *r;
    int published = -1;
    if (sb_db_exec(&db, &stmt_lock, &r) == SB_OK)
        published = strcmp(PQgetvalue(r, 0, 0), "t") ? 0 /* another relay is at work */
                                                     : relay_round(&db, p, max, WAIT_MS, NULL);
    sb_arena_free(a);
    sb_pg_conn_free(c); /* ends the session lock */
    return published;
}

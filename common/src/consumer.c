/* The Kafka consumer: events in, through the inbox. See sb/events.h.
 *
 * Design: offsets are committed by hand, after the inbox transaction of the
 * message committed, so a crash before the commit redelivers the message and
 * the inbox drops it (at least once in, exactly once in effect). A handler
 * that fails is retried with backoff; a poison message (a bad envelope, or
 * still failing after the retries) goes to sb_dead_letters with the reason
 * and the offset moves on, so one bad event never blocks its partition. */
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "kafka.h"
#include "sb/alloc.h"
#include "sb/events.h"
#include "sb/log.h"
#include "sb/metrics.h"

struct sb_consumer {
    rd_kafka_t *rk;
    sb_pg_pool_t *pool;
    sb_event_fn fn;
    void *arg;
    atomic_bool stop;
    atomic_uint_fast64_t handled, duplicates;
    pthread_t thread;
};

static const sb_pg_stmt_t stmt_dead_letter = {
    "sb_dead_letter",
    "INSERT INTO sb_dead_letters (topic, event_id, envelope, error) VALUES ($1, $2, $3::bytea, $4)"};

static void dead_letter(sb_consumer_t *c, const rd_kafka_message_t *m, const char *why)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_pg_conn_t *conn = sb_pg_acquire(c->pool, 5000, &err);
    if (conn) {
        const char *params[] = {rd_kafka_topic_name(m->rkt), NULL, m->payload ? m->payload : "", why};
        const int lens[] = {0, 0, (int)m->len, 0};
        const int fmts[] = {0, 0, 1, 0};
        PGresult *r = sb_pg_exec_bin(conn, &stmt_dead_letter, 4, params, lens, fmts);
        sb_pg_check(conn, r, &err);
        PQclear(r);
        sb_pg_release(c->pool, conn);
    }
    sb_error("event at %s[%d]@%ld moved to dead letters: %s %s", rd_kafka_topic_name(m->rkt),
             (int)m->partition, (long)m->offset, why, err.buf);
    sb_metrics_count("sb_consumer_dead_letters_total", 1);
    sb_buf_release(&err);
}

static void *consumer_main(void *arg)
{
    sb_consumer_t *c = arg;
    while (!atomic_load(&c->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 200);
        if (!m)
            continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                sb_warn("kafka consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        sb_status_t st = SB_INTERNAL;
        sb_buf_t err = SB_BUF_INIT;
        bool dup = false;
        /* A failing handler is retried with backoff; a poison event (bad
         * envelope, or still failing after the retries) goes to the dead
         * letter table so the partition is not blocked for ever. */
        for (int attempt = 0; attempt < 5 && !atomic_load(&c->stop); attempt++) {
            sb_buf_reset(&err);
            st = sb_inbox_handle(c->pool, m->payload, m->len, c->fn, c->arg, &dup, &err);
            if (st == SB_OK || st == SB_INVALID_ARGUMENT)
                break;
            sb_warn("event handling failed (attempt %d): %s", attempt + 1, err.buf);
            usleep((useconds_t)(100000 << attempt));
        }
        if (atomic_load(&c->stop) && st != SB_OK && st != SB_INVALID_ARGUMENT) {
            /* leave the offset uncommitted: the next owner handles it */
            sb_buf_release(&err);
            rd_kafka_message_destroy(m);
            break;
        }
        if (st != SB_OK)
            dead_letter(c, m, err.buf);
        else
            atomic_fetch_add(dup ? &c->duplicates : &c->handled, 1);
        sb_metrics_count(dup ? "sb_consumer_duplicates_total" : "sb_consumer_events_total", 1);
        rd_kafka_resp_err_t ce = rd_kafka_commit_message(c->rk, m, 0);
        if (ce)
            sb_warn("kafka commit failed: %s (the event may be redelivered; the inbox drops it)",
                    rd_kafka_err2str(ce));
        sb_buf_release(&err);
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

sb_consumer_t *sb_consumer_start(const char *brokers, const char *group, const char *const *topics,
                                 size_t n_topics, sb_pg_pool_t *pool, sb_event_fn fn, void *arg,
                                 sb_buf_t *err)
{
    char e[512];
    rd_kafka_conf_t *conf = sb_kafka_conf(brokers, err);
    if (!conf)
        return NULL;
    static const char *const kv[][2] = {
        {"enable.auto.commit", "false"}, /* committed after the inbox transaction */
        {"auto.offset.reset", "earliest"},
        {"enable.partition.eof", "false"},
        {"session.timeout.ms", "10000"},
        {"heartbeat.interval.ms", "1000"},
    };
    if (rd_kafka_conf_set(conf, "group.id", group, e, sizeof e) != RD_KAFKA_CONF_OK)
        goto out_conf;
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], e, sizeof e) != RD_KAFKA_CONF_OK)
            goto out_conf;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    if (!rk) {
        sb_buf_addf(err, "kafka consumer: %s", e);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new((int)n_topics);
    for (size_t i = 0; i < n_topics; i++)
        rd_kafka_topic_partition_list_add(tl, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t se = rd_kafka_subscribe(rk, tl);
    rd_kafka_topic_partition_list_destroy(tl);
    if (se) {
        sb_buf_addf(err, "kafka subscribe: %s", rd_kafka_err2str(se));
        rd_kafka_destroy(rk);
        return NULL;
    }
    sb_consumer_t *c = sb_calloc(1, sizeof *c);
    c->rk = rk;
    c->pool = pool;
    c->fn = fn;
    c->arg = arg;
    pthread_create(&c->thread, NULL, consumer_main, c);
    sb_info("kafka consumer group %s started", group);
    return c;

out_conf:
    sb_buf_addf(err, "kafka consumer config: %s", e);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

void sb_consumer_stop(sb_consumer_t *c)
{
    if (!c)
        return;
    atomic_store(&c->stop, true);
    pthread_join(c->thread, NULL);
    rd_kafka_consumer_close(c->rk);
    rd_kafka_destroy(c->rk);
    free(c);
}

void sb_consumer_stats(const sb_consumer_t *c, uint64_t *handled, uint64_t *duplicates)
{
    sb_consumer_t *m = (sb_consumer_t *)c;
    *handled = atomic_load(&m->handled);
    *duplicates = atomic_load(&m->duplicates);
}

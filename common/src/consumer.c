/* The Kafka consumer: events in, through the inbox. See sb/events.h.
 *
 * Design: offsets are committed by hand, after the inbox transaction of the
 * message committed, so a crash before the commit redelivers the message and
 * the inbox drops it (at least once in, exactly once in effect). The topics
 * are those of the event table's types; every message goes through
 * sb_inbox_handle, the path DeliverEvent takes too, so both follow one
 * policy: a malformed event is a dead letter and the offset moves on (one bad
 * event never blocks its partition); a failure is retried with backoff and,
 * still failing after 5 attempts, becomes a dead letter as well. Only when
 * the dead letter itself cannot be written (the database is down) does the
 * consumer keep the message and keep trying: the offset is never committed
 * for an event that left no trace. */
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka.h"
#include "sb/alloc.h"
#include "sb/events.h"
#include "sb/log.h"
#include "sb/metrics.h"

#define ATTEMPTS 5

struct sb_consumer {
    rd_kafka_t *rk;
    sb_pg_pool_t *pool;
    sb_event_table_t table;
    atomic_bool stop;
    atomic_uint_fast64_t handled, duplicates;
    pthread_t thread;
};

/* Sleeps ms in slices, returning early when stopping. */
static void backoff(sb_consumer_t *c, int ms)
{
    for (int slept = 0; slept < ms && !atomic_load(&c->stop); slept += 50)
        usleep(50000);
}

/* One message until it is done with: handled, skipped, dropped as a
 * duplicate or dead-lettered. false when stopping left it undone (its offset
 * must not be committed). */
static bool consume(sb_consumer_t *c, const rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    sb_inbox_result_t res = SB_INBOX_RESULT_INIT;
    bool done = false;
    for (int attempt = 1; !atomic_load(&c->stop); attempt++) {
        sb_status_t st = sb_inbox_handle(c->pool, &c->table, "kafka", topic, m->payload, m->len, &res);
        if (res.outcome != SB_EVENT_FAILED) {
            done = true;
            sb_metrics_count(res.outcome == SB_EVENT_DUPLICATE     ? "sb_consumer_duplicates_total"
                             : res.outcome == SB_EVENT_DEAD_LETTER ? "sb_consumer_dead_letters_total"
                                                                   : "sb_consumer_events_total",
                             1);
            if (res.outcome == SB_EVENT_DUPLICATE)
                atomic_fetch_add(&c->duplicates, 1);
            else if (res.outcome != SB_EVENT_DEAD_LETTER)
                atomic_fetch_add(&c->handled, 1);
            break;
        }
        sb_warn("event at %s[%d]@%ld failed (attempt %d): %s %s", topic, (int)m->partition,
                (long)m->offset, attempt, sb_status_name(st), res.detail.buf);
        if (attempt >= ATTEMPTS) {
            /* still failing: kept as a dead letter so the partition moves on */
            sb_buf_t why = SB_BUF_INIT, err = SB_BUF_INIT;
            sb_buf_addf(&why, "still failing after %d attempts: %s: %s", attempt, sb_status_name(st),
                        res.detail.buf);
            if (sb_dead_letter_add(c->pool, "kafka", topic, m->payload, m->len, why.buf, &err) ==
                SB_OK) {
                sb_metrics_count("sb_consumer_dead_letters_total", 1);
                done = true;
            } else {
                sb_error("event at %s[%d]@%ld: cannot write the dead letter: %s", topic,
                         (int)m->partition, (long)m->offset, err.buf);
            }
            sb_buf_release(&why);
            sb_buf_release(&err);
            if (done)
                break;
        }
        backoff(c, attempt < ATTEMPTS ? 100 << (attempt - 1) : 5000);
    }
    sb_inbox_result_release(&res);
    return done;
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
        if (!consume(c, m)) {
            /* stopping: the offset stays uncommitted, the next owner handles it */
            rd_kafka_message_destroy(m);
            break;
        }
        rd_kafka_resp_err_t ce = rd_kafka_commit_message(c->rk, m, 0);
        if (ce)
            sb_warn("kafka commit failed: %s (the event may be redelivered; the inbox drops it)",
                    rd_kafka_err2str(ce));
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

/* The distinct topics of t's types (caller frees each and the array). */
static char **table_topics(const sb_event_table_t *t, size_t *n)
{
    char **topics = sb_calloc(t->n ? t->n : 1, sizeof *topics);
    *n = 0;
    for (size_t i = 0; i < t->n; i++) {
        char topic[128];
        if (!sb_event_topic(t->rows[i].type, topic, sizeof topic))
            continue; /* sb_event_table_check refused it already */
        bool seen = false;
        for (size_t j = 0; j < *n && !seen; j++)
            seen = !strcmp(topics[j], topic);
        if (!seen)
            topics[(*n)++] = sb_strdup(topic);
    }
    return topics;
}

static void topics_free(char **topics, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(topics[i]);
    free(topics);
}

sb_consumer_t *sb_consumer_start(const char *brokers, const char *group, sb_pg_pool_t *pool,
                                 const sb_event_table_t *t, sb_buf_t *err)
{
    char e[512];
    if (sb_event_table_check(t, err) != SB_OK)
        return NULL;
    size_t n_topics;
    char **topics = table_topics(t, &n_topics);
    if (sb_kafka_ensure_topics(brokers, (const char *const *)topics, n_topics, 3, err) != SB_OK)
        goto out_topics;
    rd_kafka_conf_t *conf = sb_kafka_conf(brokers, err);
    if (!conf)
        goto out_topics;
    static const char *const kv[][2] = {
        {"enable.auto.commit", "false"}, /* committed after the inbox transaction */
        {"auto.offset.reset", "earliest"}, {"enable.partition.eof", "false"},
        {"session.timeout.ms", "10000"},   {"heartbeat.interval.ms", "1000"},
    };
    if (rd_kafka_conf_set(conf, "group.id", group, e, sizeof e) != RD_KAFKA_CONF_OK)
        goto out_conf;
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], e, sizeof e) != RD_KAFKA_CONF_OK)
            goto out_conf;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    if (!rk) {
        sb_buf_addf(err, "kafka consumer: %s", e);
        goto out_topics;
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
        goto out_topics;
    }
    sb_consumer_t *c = sb_calloc(1, sizeof *c);
    c->rk = rk;
    c->pool = pool;
    c->table = *t;
    pthread_create(&c->thread, NULL, consumer_main, c);
    sb_info("kafka consumer group %s started on %zu topic(s), %zu event type(s)", group, n_topics, t->n);
    topics_free(topics, n_topics);
    return c;

out_conf:
    sb_buf_addf(err, "kafka consumer config: %s", e);
    rd_kafka_conf_destroy(conf);
out_topics:
    topics_free(topics, n_topics);
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

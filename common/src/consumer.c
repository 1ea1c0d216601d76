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
 * for an event that left no trace.
 *
 * Concurrency: one poll thread and CONSUMER_WORKERS (default 4) workers. The
 * poll thread hands each message to the worker its (topic, partition) maps
 * to, so the events of one partition (of one aggregate: the relay keys them
 * by aggregate id) are handled one after the other in offset order, while
 * another partition's events go on in parallel: a 2,000,000-seat approval
 * holds up only its own partition. Each worker commits the offset of a
 * message after its inbox transaction, as before; offsets of one partition
 * are committed in order because one worker owns the partition.
 *
 * A worker's queue is unbounded, but a partition whose worker has more than
 * QUEUE_HIGH messages waiting is paused (no more fetched for it) until the
 * queue is below QUEUE_LOW, so a backlog stays in Kafka, not in memory.
 *
 * Rebalance and stop: before partitions are taken away (a rebalance, or
 * leaving the group) the messages not started yet are dropped (their offsets
 * were never committed: the next owner gets them) and the ones being handled
 * are waited for, so two members never handle one partition at once. On
 * stop, a worker finishes (and commits) the event it is handling; the
 * consumer leaves the group after every worker has returned. */
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka.h"
#include "sb/alloc.h"
#include "sb/config.h"
#include "sb/events.h"
#include "sb/log.h"
#include "sb/metrics.h"

#define ATTEMPTS 5
#define WORKERS_MAX 64
#define QUEUE_HIGH 500 /* messages waiting for one worker: pause the partition */
#define QUEUE_LOW 100  /* ... and resume it below this */
#define PAUSED_MAX 256 /* partitions paused at once (more: the poll thread waits instead) */

typedef struct msg_node {
    rd_kafka_message_t *m;
    struct msg_node *next;
} msg_node_t;

/* One worker: its queue (FIFO) and whether it is handling a message. */
typedef struct worker {
    struct sb_consumer *c;
    pthread_t thread;
    msg_node_t *head, *tail;
    size_t len;
    bool busy;
    pthread_cond_t more; /* a message was queued, or stopping */
    pthread_cond_t idle; /* the queue is empty and nothing is being handled */
} worker_t;

typedef struct paused {
    char *topic;
    int32_t partition;
    worker_t *w;
} paused_t;

struct sb_consumer {
    rd_kafka_t *rk;
    sb_pg_pool_t *pool;
    sb_event_table_t table;
    atomic_bool stop;
    atomic_uint_fast64_t handled, duplicates;
    pthread_t thread;
    pthread_mutex_t mu; /* the workers' queues and flags */
    worker_t *workers;
    size_t n_workers;
    bool workers_stop;           /* under mu */
    paused_t paused[PAUSED_MAX]; /* poll thread and rebalance callback only */
    size_t n_paused;
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

/* A worker: handles its queue in order; commits each offset after the
 * event's inbox transaction. */
static void *worker_main(void *arg)
{
    worker_t *w = arg;
    sb_consumer_t *c = w->c;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!w->head && !c->workers_stop)
            pthread_cond_wait(&w->more, &c->mu);
        if (c->workers_stop)
            break;
        msg_node_t *n = w->head;
        w->head = n->next;
        if (!w->head)
            w->tail = NULL;
        w->len--;
        w->busy = true;
        pthread_mutex_unlock(&c->mu);

        rd_kafka_message_t *m = n->m;
        free(n);
        if (consume(c, m)) {
            rd_kafka_resp_err_t ce = rd_kafka_commit_message(c->rk, m, 0);
            if (ce)
                sb_warn("kafka commit failed: %s (the event may be redelivered; the inbox drops it)",
                        rd_kafka_err2str(ce));
        } /* else stopping: the offset stays uncommitted, the next owner handles it */
        rd_kafka_message_destroy(m);

        pthread_mutex_lock(&c->mu);
        w->busy = false;
        if (!w->head)
            pthread_cond_broadcast(&w->idle);
    }
    w->busy = false;
    pthread_cond_broadcast(&w->idle);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* The worker of a message's partition: the same one for every message of
 * the partition. */
static worker_t *worker_of(sb_consumer_t *c, const char *topic, int32_t partition)
{
    uint32_t h = 2166136261u; /* FNV-1a of the topic, plus the partition */
    for (const char *p = topic; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return &c->workers[(h + (uint32_t)partition) % c->n_workers];
}

static void queue_push(worker_t *w, rd_kafka_message_t *m)
{
    msg_node_t *n = sb_calloc(1, sizeof *n);
    n->m = m;
    if (w->tail)
        w->tail->next = n;
    else
        w->head = n;
    w->tail = n;
    w->len++;
}

static void pause_set(sb_consumer_t *c, const char *topic, int32_t partition, bool pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition);
    rd_kafka_resp_err_t e =
        pause ? rd_kafka_pause_partitions(c->rk, l) : rd_kafka_resume_partitions(c->rk, l);
    if (e)
        sb_warn("kafka consumer: cannot %s %s[%d]: %s", pause ? "pause" : "resume", topic,
                (int)partition, rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

/* Resumes the paused partitions whose worker has caught up (all of them
 * when `all`). Poll thread (or its rebalance callback) only. */
static void resume_caught_up(sb_consumer_t *c, bool all)
{
    for (size_t i = 0; i < c->n_paused;) {
        paused_t *p = &c->paused[i];
        pthread_mutex_lock(&c->mu);
        bool low = p->w->len < QUEUE_LOW;
        pthread_mutex_unlock(&c->mu);
        if (!all && !low) {
            i++;
            continue;
        }
        pause_set(c, p->topic, p->partition, false);
        free(p->topic);
        c->paused[i] = c->paused[--c->n_paused];
    }
}

/* Hands m to its partition's worker; pauses the partition when the worker
 * is far behind. */
static void dispatch(sb_consumer_t *c, rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    worker_t *w = worker_of(c, topic, m->partition);
    pthread_mutex_lock(&c->mu);
    queue_push(w, m);
    size_t len = w->len;
    pthread_cond_signal(&w->more);
    pthread_mutex_unlock(&c->mu);
    if (len < QUEUE_HIGH)
        return;
    for (size_t i = 0; i < c->n_paused; i++)
        if (c->paused[i].partition == m->partition && !strcmp(c->paused[i].topic, topic))
            return; /* already paused: what was fetched before still arrives */
    if (c->n_paused < PAUSED_MAX) {
        pause_set(c, topic, m->partition, true);
        c->paused[c->n_paused++] = (paused_t){sb_strdup(topic), m->partition, w};
        return;
    }
    /* too many paused partitions to track: wait for this worker instead */
    pthread_mutex_lock(&c->mu);
    while (w->len >= QUEUE_LOW && !atomic_load(&c->stop))
        pthread_cond_wait(&w->idle, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

/* Drops every message not started yet (never committed: the partition's
 * next owner gets them again) and waits until no worker is handling one. */
static void drain(sb_consumer_t *c)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_workers; i++) {
        worker_t *w = &c->workers[i];
        while (w->head) {
            msg_node_t *n = w->head;
            w->head = n->next;
            rd_kafka_message_destroy(n->m);
            free(n);
        }
        w->tail = NULL;
        w->len = 0;
        while (w->busy)
            pthread_cond_wait(&w->idle, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
}

/* Partitions assigned or taken away (poll thread, inside
 * rd_kafka_consumer_poll or rd_kafka_consumer_close). The assignment is
 * eager (partition.assignment.strategy below): a rebalance takes every
 * partition away first, so dropping every queued message is right. */
static void rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                      void *opaque)
{
    sb_consumer_t *c = opaque;
    rd_kafka_resp_err_t e;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if ((e = rd_kafka_assign(rk, parts)))
            sb_warn("kafka consumer: assign: %s", rd_kafka_err2str(e));
        return;
    }
    /* before anyone else may take them: nothing of ours in flight */
    resume_caught_up(c, true);
    drain(c);
    if ((e = rd_kafka_assign(rk, NULL)))
        sb_warn("kafka consumer: unassign: %s", rd_kafka_err2str(e));
}

static void *consumer_main(void *arg)
{
    sb_consumer_t *c = arg;
    while (!atomic_load(&c->stop)) {
        if (c->n_paused)
            resume_caught_up(c, false);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 200);
        if (!m)
            continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                sb_warn("kafka consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        dispatch(c, m);
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
        {"auto.offset.reset", "earliest"},
        {"enable.partition.eof", "false"},
        {"session.timeout.ms", "10000"},
        {"heartbeat.interval.ms", "1000"},
        {"partition.assignment.strategy", "range,roundrobin"}, /* eager: see rebalance() */
        /* a topic just created may be missing from the first metadata (a
         * fresh broker): the subscription looks again this often, not
         * after librdkafka's default 5 minutes */
        {"topic.metadata.refresh.interval.ms", "2000"},
    };
    if (rd_kafka_conf_set(conf, "group.id", group, e, sizeof e) != RD_KAFKA_CONF_OK)
        goto out_conf;
    sb_consumer_t *c = sb_calloc(1, sizeof *c);
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance);
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], e, sizeof e) != RD_KAFKA_CONF_OK)
            goto out_conf;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    if (!rk) {
        sb_buf_addf(err, "kafka consumer: %s", e);
        goto out_consumer;
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
        goto out_consumer;
    }
    c->rk = rk;
    c->pool = pool;
    c->table = *t;
    c->n_workers = (size_t)sb_cfg_int("CONSUMER_WORKERS", 4, 1, WORKERS_MAX);
    c->workers = sb_calloc(c->n_workers, sizeof *c->workers);
    pthread_mutex_init(&c->mu, NULL);
    for (size_t i = 0; i < c->n_workers; i++) {
        worker_t *w = &c->workers[i];
        w->c = c;
        pthread_cond_init(&w->more, NULL);
        pthread_cond_init(&w->idle, NULL);
        pthread_create(&w->thread, NULL, worker_main, w);
    }
    pthread_create(&c->thread, NULL, consumer_main, c);
    sb_info("kafka consumer group %s started on %zu topic(s), %zu event type(s), %zu worker(s)", group,
            n_topics, t->n, c->n_workers);
    topics_free(topics, n_topics);
    return c;

out_conf:
    sb_buf_addf(err, "kafka consumer config: %s", e);
    rd_kafka_conf_destroy(conf);
    goto out_topics;
out_consumer:
    free(c);
out_topics:
    topics_free(topics, n_topics);
    return NULL;
}

void sb_consumer_stop(sb_consumer_t *c)
{
    if (!c)
        return;
    atomic_store(&c->stop, true);
    pthread_join(c->thread, NULL); /* no more dispatching */
    pthread_mutex_lock(&c->mu);
    c->workers_stop = true; /* each finishes (and commits) what it is handling */
    for (size_t i = 0; i < c->n_workers; i++) {
        pthread_cond_broadcast(&c->workers[i].more);
        pthread_cond_broadcast(&c->workers[i].idle); /* a dispatch waiting on a worker */
    }
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < c->n_workers; i++)
        pthread_join(c->workers[i].thread, NULL);
    /* leaving the group revokes the partitions: the rebalance callback drops
     * what is still queued (never started, never committed) */
    rd_kafka_consumer_close(c->rk);
    drain(c);
    resume_caught_up(c, true);
    rd_kafka_destroy(c->rk);
    for (size_t i = 0; i < c->n_workers; i++) {
        pthread_cond_destroy(&c->workers[i].more);
        pthread_cond_destroy(&c->workers[i].idle);
    }
    pthread_mutex_destroy(&c->mu);
    free(c->workers);
    free(c);
}

void sb_consumer_stats(const sb_consumer_t *c, uint64_t *handled, uint64_t *duplicates)
{
    sb_consumer_t *m = (sb_consumer_t *)c;
    *handled = atomic_load(&m->handled);
    *duplicates = atomic_load(&m->duplicates);
}

/* Lag per assigned partition, for the health refresher (health.c): the
 * high watermark minus the group's committed offset (one OffsetFetch), which
 * moves only once an event is handled (the workers may hold fetched events
 * not handled yet, so the fetch position would under-count); with nothing
 * committed the group starts at the beginning. The high watermark is the one
 * the last fetch reported, asked of the broker only when none is cached yet.
 * Calls fn(arg, topic, partition, lag) for each; returns how many. */
size_t sb_consumer_lag(sb_consumer_t *c, int timeout_ms,
                       void (*fn)(void *arg, const char *topic, int32_t partition, int64_t lag),
                       void *arg)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(c->rk, &parts) || !parts)
        return 0;
    rd_kafka_topic_partition_list_t *committed = rd_kafka_topic_partition_list_copy(parts);
    if (rd_kafka_committed(c->rk, committed, timeout_ms)) {
        rd_kafka_topic_partition_list_destroy(committed);
        committed = NULL;
    }
    size_t n = 0;
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        int64_t lo = RD_KAFKA_OFFSET_INVALID, hi = RD_KAFKA_OFFSET_INVALID,
                pos = RD_KAFKA_OFFSET_INVALID;
        rd_kafka_get_watermark_offsets(c->rk, p->topic, p->partition, &lo, &hi);
        if (hi < 0 || (pos < 0 && lo < 0))
            rd_kafka_query_watermark_offsets(c->rk, p->topic, p->partition, &lo, &hi, timeout_ms);
        if (pos < 0 && committed)
            pos = committed->elems[i].offset;
        if (pos < 0)
            pos = lo;
        if (hi < 0 || pos < 0)
            continue; /* the broker did not say: no figure rather than a wrong one */
        fn(arg, p->topic, p->partition, hi > pos ? hi - pos : 0);
        n++;
    }
    if (committed)
        rd_kafka_topic_partition_list_destroy(committed);
    rd_kafka_topic_partition_list_destroy(parts);
    return n;
}

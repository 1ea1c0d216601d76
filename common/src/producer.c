/* The Kafka producer: messages out, delivery reports back. See sb/events.h.
 *
 * Design: the producer is idempotent (enable.idempotence, acks=all), so a
 * retry inside librdkafka never duplicates or reorders a message of one
 * partition. A caller sends a batch and waits for the delivery report of
 * every message; what it gets back is the length of the delivered prefix,
 * because that is what the outbox relay may mark published without breaking
 * the order of a key. One batch at a time per producer (a mutex): the wait
 * purges the producer's whole queue when it gives up, which is only safe
 * when every message in it is the waiter's own.
 *
 * A delivery slot is freed when the call returns, so it never returns while
 * librdkafka still holds one: on timeout (or cancellation) the queue is
 * purged, which makes librdkafka report every message it still has as
 * failed, and those reports are drained before returning. Each report also
 * records the wall-clock time it arrived: the outbox marks a row published
 * at that time, not at the time of its own UPDATE. */
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka.h"
#include "sb/alloc.h"
#include "sb/events.h"
#include "sb/log.h"
#include "sb/util.h"

struct sb_producer {
    rd_kafka_t *rk;
    pthread_mutex_t mu; /* one batch at a time: delivery reports land in slots */
};

/* per-message delivery slot, pointed to by the message opaque */
struct delivery {
    atomic_int done; /* 0 pending, 1 delivered, 2 failed */
    rd_kafka_resp_err_t err;
    int64_t at_us; /* wall clock of the report */
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    struct delivery *d = m->_private;
    if (!d)
        return;
    d->err = m->err;
    d->at_us = now_us();
    atomic_store(&d->done, m->err ? 2 : 1);
}

static void on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    sb_log(level <= 3   ? SB_LOG_ERROR
           : level <= 5 ? SB_LOG_WARN
                        : SB_LOG_DEBUG,
           "kafka %s: %s", fac, buf);
}

rd_kafka_conf_t *sb_kafka_conf(const char *brokers, sb_buf_t *err)
{
    char e[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, e, sizeof e) != RD_KAFKA_CONF_OK) {
        sb_buf_addf(err, "kafka config: %s", e);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, on_kafka_log);
    return conf;
}

sb_producer_t *sb_producer_new(const char *brokers, sb_buf_t *err)
{
    char e[512];
    rd_kafka_conf_t *conf = sb_kafka_conf(brokers, err);
    if (!conf)
        return NULL;
    static const char *const kv[][2] = {
        {"enable.idempotence", "true"}, /* implies acks=all, in-order, no dup on retry */
        {"acks", "all"},
        {"linger.ms", "5"},
        /* below the relay's 30 s wait, so a report normally arrives first */
        {"message.timeout.ms", "20000"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], e, sizeof e) != RD_KAFKA_CONF_OK) {
            sb_buf_addf(err, "kafka config %s: %s", kv[i][0], e);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    if (!rk) {
        sb_buf_addf(err, "kafka producer: %s", e);
        return NULL;
    }
    sb_producer_t *p = sb_calloc(1, sizeof *p);
    p->rk = rk;
    pthread_mutex_init(&p->mu, NULL);
    return p;
}

void sb_producer_free(sb_producer_t *p)
{
    if (!p)
        return;
    rd_kafka_flush(p->rk, 10000);
    rd_kafka_destroy(p->rk);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static rd_kafka_resp_err_t produce(sb_producer_t *p, const sb_kafka_msg_t *m, struct delivery *d)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(1);
    if (m->trace_id && *m->trace_id)
        rd_kafka_header_add(hdrs, "x-trace-id", -1, m->trace_id, -1);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(m->topic), RD_KAFKA_V_KEY(m->key, strlen(m->key)),
        RD_KAFKA_V_VALUE((void *)m->val, m->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    if (e)
        rd_kafka_headers_destroy(hdrs); /* ownership passes only on success */
    return e;
}

static bool any_pending(const struct delivery *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (atomic_load(&d[i].done) == 0)
            return true;
    return false;
}

static bool cancelled(const atomic_bool *cancel)
{
    return cancel && atomic_load(cancel);
}

/* Polls until every slot is done, timeout_ms passed or *cancel is set; then
 * purges what is left and drains its reports (see the design note). p->mu is
 * held, so only this batch's messages are in the producer. */
static void await_deliveries(sb_producer_t *p, struct delivery *d, size_t n, int timeout_ms,
                             const atomic_bool *cancel)
{
    int64_t until = sb_mono_ns() + (int64_t)timeout_ms * 1000000;
    while (any_pending(d, n) && sb_mono_ns() <= until && !cancelled(cancel))
        rd_kafka_poll(p->rk, 10);
    if (!any_pending(d, n))
        return;
    if (cancelled(cancel))
        sb_info("kafka: stopping; purging the producer queue (the rest goes again later)");
    else
        sb_warn("kafka: no delivery report within %d ms; purging the producer queue", timeout_ms);
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    for (int64_t t0 = sb_mono_ns(); any_pending(d, n);) {
        rd_kafka_poll(p->rk, 100);
        if (sb_mono_ns() - t0 > 10 * 1000000000LL) {
            sb_warn("kafka: still waiting for the delivery reports of purged messages");
            t0 = sb_mono_ns();
        }
    }
}

size_t sb_producer_send_batch(sb_producer_t *p, sb_kafka_msg_t *msgs, size_t n, int timeout_ms,
                              const atomic_bool *cancel, sb_buf_t *err)
{
    if (n == 0)
        return 0;
    struct delivery *d = sb_calloc(n, sizeof *d);
    size_t queued = 0, delivered = 0;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    pthread_mutex_lock(&p->mu);
    for (; queued < n; queued++)
        if ((e = produce(p, &msgs[queued], &d[queued])) != RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
    await_deliveries(p, d, queued, timeout_ms, cancel);
    pthread_mutex_unlock(&p->mu);
    for (; delivered < queued && atomic_load(&d[delivered].done) == 1; delivered++)
        msgs[delivered].delivered_us = d[delivered].at_us;
    for (size_t i = delivered; i < n; i++)
        msgs[i].delivered_us = 0;
    if (delivered < n) {
        bool produce_failed = delivered == queued;
        sb_buf_addf(err, "kafka: %s to %s failed: %s", produce_failed ? "produce" : "delivery",
                    msgs[delivered].topic, rd_kafka_err2str(produce_failed ? e : d[delivered].err));
    }
    free(d);
    return delivered;
}

sb_status_t sb_producer_send(sb_producer_t *p, const char *topic, const char *key, const void *val,
                             size_t len, const char *trace_id, int timeout_ms, sb_buf_t *err)
{
    sb_kafka_msg_t m = {.topic = topic, .key = key, .val = val, .len = len, .trace_id = trace_id};
    return sb_producer_send_batch(p, &m, 1, timeout_ms, NULL, err) == 1 ? SB_OK : SB_UNAVAILABLE;
}

bool sb_producer_broker_up(sb_producer_t *p, int timeout_ms, sb_buf_t *why)
{
    /* no topics asked (all_topics 0, none named): the brokers only */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(p->rk, 0, NULL, &md, timeout_ms);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (e)
        sb_buf_addf(why, "no broker answered within %d ms (%s)", timeout_ms, rd_kafka_err2str(e));
    return e == RD_KAFKA_RESP_ERR_NO_ERROR;
}

sb_status_t sb_kafka_ensure_topics(const char *brokers, const char *const *topics, size_t n,
                                   int partitions, sb_buf_t *err)
{
    char e[512];
    rd_kafka_conf_t *conf = sb_kafka_conf(brokers, err);
    if (!conf)
        return SB_INVALID_ARGUMENT;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    if (!rk) {
        sb_buf_addf(err, "kafka admin: %s", e);
        return SB_INTERNAL;
    }
    sb_status_t st = SB_OK;
    rd_kafka_NewTopic_t **nt = sb_calloc(n, sizeof *nt);
    for (size_t i = 0; i < n; i++)
        nt[i] = rd_kafka_NewTopic_new(topics[i], partitions, 1, e, sizeof e);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opt, 15000, e, sizeof e);
    rd_kafka_CreateTopics(rk, nt, n, opt, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 20000);
    const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
    if (!res) {
        sb_buf_addf(err, "kafka: no answer to CreateTopics from %s: %s", brokers,
                    ev ? rd_kafka_event_error_string(ev) : "timeout");
        st = SB_UNAVAILABLE;
    } else {
        size_t cnt;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
        for (size_t i = 0; i < cnt; i++) {
            rd_kafka_resp_err_t te = rd_kafka_topic_result_error(tr[i]);
            if (te && te != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                sb_buf_addf(err, "kafka: cannot create topic %s: %s", rd_kafka_topic_result_name(tr[i]),
                            rd_kafka_topic_result_error_string(tr[i]));
                st = SB_UNAVAILABLE;
            }
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy_array(nt, n);
    free(nt);
    rd_kafka_destroy(rk);
    return st;
}

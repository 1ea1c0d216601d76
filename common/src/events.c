/* Outbox, relay, producer, consumer and inbox. See sb/events.h. */
#include "sb/events.h"

#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sb/alloc.h"
#include "sb/arena.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/util.h"
#include "sb/valid.h"

#define ADVISORY_RELAY_LOCK 7311002

static const sb_migration_t common_migrations[] = {
    {1, "outbox_inbox",
     "CREATE TABLE sb_outbox ("
     "  id bigserial PRIMARY KEY,"
     "  event_id uuid NOT NULL UNIQUE,"
     "  topic text NOT NULL,"
     "  type text NOT NULL,"
     "  aggregate_id text NOT NULL,"
     "  envelope bytea NOT NULL,"
     "  occurred_at timestamptz NOT NULL DEFAULT now(),"
     "  published_at timestamptz);"
     "CREATE INDEX sb_outbox_unpublished ON sb_outbox (id) WHERE published_at IS NULL;"
     "CREATE TABLE sb_inbox ("
     "  event_id uuid PRIMARY KEY,"
     "  type text NOT NULL,"
     "  received_at timestamptz NOT NULL DEFAULT now());"
     "CREATE TABLE sb_dead_letters ("
     "  id bigserial PRIMARY KEY,"
     "  topic text NOT NULL,"
     "  event_id text,"
     "  envelope bytea NOT NULL,"
     "  error text NOT NULL,"
     "  failed_at timestamptz NOT NULL DEFAULT now());"},
};

sb_status_t sb_events_migrate(sb_pg_pool_t *pool, sb_buf_t *err)
{
    return sb_pg_migrate(pool, "common", common_migrations,
                         sizeof common_migrations / sizeof common_migrations[0], err);
}

/* SB_NAMESPACE (see sb_namespace): set once at start-up, read-only after. */
static char ns[17];

const char *sb_namespace(void)
{
    return ns;
}

bool sb_namespace_set(const char *name)
{
    size_t n = strlen(name);
    if (n >= sizeof ns)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '_'))
            return false;
    memcpy(ns, name, n + 1);
    return true;
}

bool sb_topic_name(const char *base, char *out, size_t n)
{
    int w = snprintf(out, n, "%s%s%s", base, *ns ? "." : "", ns);
    return w > 0 && (size_t)w < n;
}

bool sb_event_topic(const char *type, char *out, size_t n)
{
    const char *dot = strchr(type, '.');
    if (!dot || dot == type)
        return false;
    int w = snprintf(out, n, "sb.%.*s%s%s", (int)(dot - type), type, *ns ? "." : "", ns);
    return w > 0 && (size_t)w < n;
}

/* ---------------------------------------------------------------- producer */

struct sb_producer {
    rd_kafka_t *rk;
    pthread_mutex_t mu; /* one batch at a time: delivery reports land in slots */
};

/* per-message delivery slot, pointed to by the message opaque */
struct delivery {
    atomic_int done; /* 0 pending, 1 delivered, 2 failed */
    rd_kafka_resp_err_t err;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    struct delivery *d = m->_private;
    if (!d)
        return;
    d->err = m->err;
    atomic_store(&d->done, m->err ? 2 : 1);
}

static void on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    sb_log(level <= 3 ? SB_LOG_ERROR : level <= 5 ? SB_LOG_WARN : SB_LOG_DEBUG, "kafka %s: %s", fac, buf);
}

static rd_kafka_conf_t *base_conf(const char *brokers, sb_buf_t *err)
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
    rd_kafka_conf_t *conf = base_conf(brokers, err);
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

static rd_kafka_resp_err_t produce(sb_producer_t *p, const char *topic, const char *key,
                                   const void *val, size_t len, const char *trace_id,
                                   struct delivery *d)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(1);
    if (trace_id && *trace_id)
        rd_kafka_header_add(hdrs, "x-trace-id", -1, trace_id, -1);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
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

/* Polls until every slot is done or timeout; returns the index of the first
 * failed/pending slot, or n when all were delivered. Never returns while a
 * slot is still referenced by librdkafka (the caller frees the slots): on
 * timeout the producer's queue is purged, which makes librdkafka report every
 * message it still holds as failed, and those reports are drained here. The
 * purged rows stay unpublished and go again in the next round (at least once;
 * consumers drop duplicates by event id). p->mu is held, so only this batch's
 * messages are in the producer. */
static size_t await_deliveries(sb_producer_t *p, struct delivery *d, size_t n, int timeout_ms)
{
    int64_t until = sb_mono_ns() + (int64_t)timeout_ms * 1000000;
    while (any_pending(d, n) && sb_mono_ns() <= until)
        rd_kafka_poll(p->rk, 10);
    if (any_pending(d, n)) {
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
    for (size_t i = 0; i < n; i++)
        if (atomic_load(&d[i].done) != 1)
            return i;
    return n;
}

sb_status_t sb_producer_send(sb_producer_t *p, const char *topic, const char *key,
                             const void *val, size_t len, const char *trace_id, int timeout_ms,
                             sb_buf_t *err)
{
    struct delivery d = {0};
    pthread_mutex_lock(&p->mu);
    rd_kafka_resp_err_t e = produce(p, topic, key, val, len, trace_id, &d);
    size_t ok = e ? 0 : await_deliveries(p, &d, 1, timeout_ms);
    pthread_mutex_unlock(&p->mu);
    if (e || ok != 1) {
        sb_buf_addf(err, "kafka: %s to %s failed: %s", e ? "produce" : "delivery", topic,
                    rd_kafka_err2str(e ? e : d.err));
        return SB_UNAVAILABLE;
    }
    return SB_OK;
}

sb_status_t sb_kafka_ensure_topics(const char *brokers, const char *const *topics, size_t n,
                                   int partitions, sb_buf_t *err)
{
    char e[512];
    rd_kafka_conf_t *conf = base_conf(brokers, err);
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

/* ------------------------------------------------------------------ outbox */

static const sb_pg_stmt_t stmt_outbox_insert = {
    "sb_outbox_insert",
    "INSERT INTO sb_outbox (event_id, topic, type, aggregate_id, envelope, occurred_at)"
    " VALUES ($1::uuid, $2, $3, $4, $5::bytea, $6::timestamptz)"};

sb_status_t sb_outbox_add(sb_pg_conn_t *tx, const char *type, const char *aggregate_id,
                          const ProtobufCMessage *payload, char *event_id_out, sb_buf_t *err)
{
    char topic[128], id[SB_UUID_LEN + 1], ts[32];
    if (!sb_event_topic(type, topic, sizeof topic)) {
        sb_buf_addf(err, "event type %s has no topic prefix", type);
        return SB_INTERNAL;
    }
    sb_uuid_v4(id);
    sb_time_rfc3339(sb_now_ms(), ts);
    sb_arena_t *a = sb_arena_new();
    sb_event_envelope_t env = SB__EVENTS__EVENT_ENVELOPE__INIT;
    env.event_id = id;
    env.type = (char *)type;
    env.aggregate_id = (char *)aggregate_id;
    env.occurred_at = ts;
    env.trace_id = (char *)sb_log_trace();
    env.producer = (char *)sb_log_service();
    size_t plen = protobuf_c_message_get_packed_size(payload);
    env.payload.len = plen;
    env.payload.data = sb_arena_alloc(a, plen ? plen : 1);
    protobuf_c_message_pack(payload, env.payload.data);
    size_t elen = sb__events__event_envelope__get_packed_size(&env);
    uint8_t *ebytes = sb_arena_alloc(a, elen ? elen : 1);
    sb__events__event_envelope__pack(&env, ebytes);

    const char *params[] = {id, topic, type, aggregate_id, (const char *)ebytes, ts};
    const int lens[] = {0, 0, 0, 0, (int)elen, 0};
    const int fmts[] = {0, 0, 0, 0, 1, 0};
    PGresult *r = sb_pg_exec_bin(tx, &stmt_outbox_insert, 6, params, lens, fmts);
    sb_status_t st = sb_pg_check(tx, r, err);
    PQclear(r);
    sb_arena_free(a);
    if (st == SB_OK) {
        /* wakes the relay at COMMIT (PostgreSQL delivers NOTIFY then, once per
         * transaction however many events it wrote); polling stays the fallback */
        static const sb_pg_stmt_t notify = {"sb_outbox_notify", "SELECT pg_notify('" SB_OUTBOX_CHANNEL "', '')"};
        r = sb_pg_exec(tx, &notify, 0, NULL);
        st = sb_pg_check(tx, r, err);
        PQclear(r);
    }
    if (st == SB_OK && event_id_out)
        memcpy(event_id_out, id, sizeof id);
    return st;
}

int sb_outbox_relay_once(sb_pg_pool_t *pool, sb_producer_t *p, int max, sb_buf_t *err)
{
    static const sb_pg_stmt_t lock = {"sb_relay_lock", "SELECT pg_try_advisory_xact_lock(" "7311002" ")"};
    static const sb_pg_stmt_t pending = {
        "sb_relay_pending",
        "SELECT id::text, topic, aggregate_id, envelope FROM sb_outbox"
        " WHERE published_at IS NULL ORDER BY id LIMIT $1::int"};
    static const sb_pg_stmt_t mark = {
        "sb_relay_mark", "UPDATE sb_outbox SET published_at = now() WHERE id = ANY($1::bigint[])"};
    (void)ADVISORY_RELAY_LOCK;

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
    struct delivery *d = sb_calloc((size_t)n, sizeof *d);
    pthread_mutex_lock(&p->mu);
    int queued = 0;
    for (int i = 0; i < n; i++) {
        size_t blen;
        unsigned char *bytes = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 3), &blen);
        sb_event_envelope_t *env = bytes ? sb__events__event_envelope__unpack(NULL, blen, bytes) : NULL;
        rd_kafka_resp_err_t e = produce(p, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), bytes, blen,
                                        env ? env->trace_id : NULL, &d[i]);
        if (env)
            sb__events__event_envelope__free_unpacked(env, NULL);
        PQfreemem(bytes);
        if (e) {
            sb_warn("outbox: produce of row %s failed: %s", PQgetvalue(r, i, 0), rd_kafka_err2str(e));
            break;
        }
        queued++;
    }
    size_t delivered = await_deliveries(p, d, (size_t)queued, 30000);
    pthread_mutex_unlock(&p->mu);
    if (delivered < (size_t)n && delivered < (size_t)queued)
        sb_warn("outbox: delivery of row %s failed: %s", PQgetvalue(r, (int)delivered, 0),
                rd_kafka_err2str(d[delivered].err));
    free(d);
    /* Mark only the delivered prefix: later rows go again next round, in order. */
    if (delivered > 0) {
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
        sb_buf_adds(err, "no outbox event could be delivered to Kafka");
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

sb_status_t sb_outbox_replay(sb_pg_pool_t *pool, const char *type_prefix, const char *since,
                             int64_t *count, sb_buf_t *err)
{
    static const sb_pg_stmt_t replay = {
        "sb_outbox_replay",
        "UPDATE sb_outbox SET published_at = NULL WHERE published_at IS NOT NULL"
        " AND starts_with(type, $1) AND ($2::timestamptz IS NULL OR occurred_at >= $2::timestamptz)"};
    *count = 0;
    sb_pg_conn_t *c = sb_pg_acquire(pool, 5000, err);
    if (!c)
        return SB_UNAVAILABLE;
    const char *params[] = {type_prefix ? type_prefix : "", since && *since ? since : NULL};
    PGresult *r = sb_pg_exec(c, &replay, 2, params);
    sb_status_t st = sb_pg_check(c, r, err);
    if (st == SB_OK)
        *count = atoll(PQcmdTuples(r));
    PQclear(r);
    sb_pg_release(pool, c);
    return st;
}

/* ------------------------------------------------------------------- relay */

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

/* ------------------------------------------------------------------- inbox */

struct inbox_job {
    const sb_event_envelope_t *ev;
    sb_event_fn fn;
    void *arg;
    bool *duplicate;
};

static sb_status_t inbox_tx(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    static const sb_pg_stmt_t record = {
        "sb_inbox_record",
        "INSERT INTO sb_inbox (event_id, type) VALUES ($1::uuid, $2) ON CONFLICT DO NOTHING"};
    struct inbox_job *j = arg;
    const char *params[] = {j->ev->event_id, j->ev->type};
    PGresult *r = sb_pg_exec(c, &record, 2, params);
    sb_status_t st = sb_pg_check(c, r, err);
    bool dup = st == SB_OK && strcmp(PQcmdTuples(r), "0") == 0;
    PQclear(r);
    if (st != SB_OK)
        return st;
    *j->duplicate = dup;
    if (dup)
        return SB_OK;
    return j->fn(c, j->ev, j->arg, err);
}

sb_status_t sb_inbox_handle(sb_pg_pool_t *pool, const void *bytes, size_t len, sb_event_fn fn,
                            void *arg, bool *duplicate, sb_buf_t *err)
{
    *duplicate = false;
    sb_event_envelope_t *ev = sb__events__event_envelope__unpack(NULL, len, bytes);
    if (!ev) {
        sb_buf_addf(err, "undecodable event envelope (%zu bytes)", len);
        return SB_INVALID_ARGUMENT;
    }
    sb_status_t st;
    if (!sb_valid_uuid(ev->event_id) || !*ev->type) {
        sb_buf_addf(err, "event envelope needs a UUID event id and a type");
        st = SB_INVALID_ARGUMENT;
        goto out_free;
    }
    char saved[65];
    snprintf(saved, sizeof saved, "%s", sb_log_trace());
    sb_log_set_trace(ev->trace_id);
    struct inbox_job j = {ev, fn, arg, duplicate};
    st = sb_pg_tx(pool, SB_PG_READ_COMMITTED, inbox_tx, &j, err);
    if (st == SB_OK)
        sb_log(*duplicate ? SB_LOG_INFO : SB_LOG_DEBUG, "event %s %s %s", ev->type, ev->event_id,
               *duplicate ? "already processed: dropped" : "handled");
    sb_log_set_trace(saved);
out_free:
    sb__events__event_envelope__free_unpacked(ev, NULL);
    return st;
}

/* ---------------------------------------------------------------- consumer */

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
    rd_kafka_conf_t *conf = base_conf(brokers, err);
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

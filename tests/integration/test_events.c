/* Outbox -> Kafka -> consumer -> inbox against the real PostgreSQL and Kafka.
 * The same event delivered twice (re-published from the outbox, and handed
 * to the inbox directly) must have exactly one effect.
 *
 * The consumer's workers: a slow event holds up only its own partition, stop
 * waits for it, the rest comes to the next consumer once.
 *
 * Also: the one dead-letter policy (unknown type, undecodable payload, a
 * handler's refusal: a dead letter, not in the inbox, and a corrected resend
 * under the same id is handled), on the inbox directly and through Kafka;
 * the job runtime (one runner of two at a time, a session job's leader and
 * its successor, a failed tick leaves nothing, NOTIFY wakes a job); and the
 * relay as a job (no open transaction while Kafka is unreachable, published_at
 * is the delivery time).
 *
 * Each test process runs in a namespace of its own (<test namespace>_<8 hex>),
 * so the platform event type it uses (notification.sent, which no service
 * under test consumes) lives on a topic no earlier run wrote to. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "echo.pb-c.h"
#include "sb/events.h"
#include "sb/jobs.h"
#include "sb/locks.h"
#include "sb/log.h"
#include "sb/util.h"
#include "sb_test_env.h"
#include "sb_test_proc.h"

#define DB "sb_test_events"

static sb_pg_pool_t *pool;
static sb_producer_t *producer;
static const char *const type = "notification.sent";
static char topic[64];

static void setup(void)
{
    sb_log_init("test-events");
    sb_log_set_level(SB_LOG_WARN);
    /* topics in the tests' namespace (sb.<x>.test under ctest), as the
     * services under test name theirs */
    cr_assert(sb_test_namespace_init(), "bad SB_NAMESPACE \"%s\"", sb_test_namespace());
    char id[SB_UUID_LEN + 1], ns[17];
    sb_uuid_v4(id);
    snprintf(ns, sizeof ns, "%.7s_%.8s", sb_test_namespace(), id);
    cr_assert(sb_namespace_set(ns), "namespace %s", ns);
    cr_assert_eq(test_fresh_db(DB), 0, "cannot create database " DB " at %s", test_db_url());
    sb_buf_t err = SB_BUF_INIT;
    pool = sb_pg_pool_new(test_db_url(), DB, 4, &err);
    cr_assert_not_null(pool, "%s", err.buf);
    cr_assert_eq(sb_events_migrate(pool, &err), SB_OK, "%s", err.buf);
    static const sb_migration_t m[] = {
        {1, "effects", "CREATE TABLE effects (aggregate_id text PRIMARY KEY, n int NOT NULL)"},
        {2, "job_ticks", "CREATE TABLE job_ticks (runner int NOT NULL)"}};
    cr_assert_eq(sb_pg_migrate(pool, "test", m, 2, &err), SB_OK, "%s", err.buf);
    producer = sb_producer_new(test_brokers(), &err);
    cr_assert_not_null(producer, "%s", err.buf);
    /* a fresh topic per run (the namespace), so events of earlier runs are not consumed */
    cr_assert(sb_event_topic(type, topic, sizeof topic));
    const char *topics[] = {topic};
    cr_assert_eq(sb_kafka_ensure_topics(test_brokers(), topics, 1, 3, &err), SB_OK, "%s", err.buf);
    sb_buf_release(&err);
}

static void teardown(void)
{
    sb_producer_free(producer);
    sb_pg_pool_free(pool);
}

/* kind "hold": the handler waits (inside its inbox transaction) until the
 * test sets release, or 30 s */
static atomic_bool holding, release;

/* the effect: count deliveries per aggregate */
static sb_status_t count_effect(sb_event_ctx_t *ev, const void *payload)
{
    static const sb_pg_stmt_t bump = {
        "bump",
        "INSERT INTO effects VALUES ($1, 1) ON CONFLICT (aggregate_id) DO UPDATE SET n = effects.n + 1"};
    const Sb__Events__NotificationSent *m = payload;
    if (!strcmp(m->kind, "refuse-me"))
        return sb_event_refuse(ev, "kind refuse-me is refused");
    if (!strcmp(m->kind, "hold")) {
        atomic_store(&holding, true);
        for (int i = 0; i < 3000 && !atomic_load(&release); i++)
            usleep(10000);
        atomic_store(&holding, false);
    }
    return sb_db_exec(ev->db, &bump, NULL, ev->env->aggregate_id);
}

static const sb_event_handler_t rows[] = {
    {"notification.sent", &sb__events__notification_sent__descriptor, count_effect},
};
static const sb_event_table_t table = {rows, 1, NULL};

static int effect_count(const char *agg)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_pg_conn_t *c = sb_pg_acquire(pool, 1000, &err);
    cr_assert_not_null(c, "%s", err.buf);
    const char *p[] = {agg};
    PGresult *r = PQexecParams(sb_pg_raw(c), "SELECT n FROM effects WHERE aggregate_id=$1", 1, NULL, p,
                               NULL, NULL, 0);
    int n = PQntuples(r) ? atoi(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    sb_pg_release(pool, c);
    sb_buf_release(&err);
    return n;
}

struct add_args {
    const char *agg;
    char event_id[SB_UUID_LEN + 1];
};

static sb_status_t add_event(sb_pg_conn_t *tx, void *arg, sb_buf_t *err)
{
    struct add_args *a = arg;
    Sb__Events__NotificationSent payload = SB__EVENTS__NOTIFICATION_SENT__INIT;
    payload.notification_id = "n-1";
    payload.kind = "seat A-1 held";
    return sb_outbox_add(tx, type, a->agg, &payload.base, a->event_id, err);
}

TestSuite(events, .init = setup, .fini = teardown, .timeout = 120);

Test(events, outbox_row_commits_with_the_transaction_only)
{
    sb_buf_t err = SB_BUF_INIT;
    struct add_args a = {.agg = "agg-rollback"};
    sb_pg_conn_t *c = sb_pg_acquire(pool, 1000, &err);
    PQclear(sb_pg_exec_sql(c, "BEGIN"));
    cr_assert_eq(add_event(c, &a, &err), SB_OK, "%s", err.buf);
    PQclear(sb_pg_exec_sql(c, "ROLLBACK"));
    PGresult *r = sb_pg_exec_sql(c, "SELECT count(*) FROM sb_outbox");
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "0", "a rolled back state change must leave no event");
    PQclear(r);
    sb_pg_release(pool, c);
    sb_buf_release(&err);
}

Test(events, same_event_delivered_twice_has_one_effect)
{
    sb_buf_t err = SB_BUF_INIT;
    struct add_args a = {.agg = "reservation-42"};
    cr_assert_eq(sb_pg_tx(pool, SB_PG_READ_COMMITTED, add_event, &a, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(sb_outbox_relay_once(pool, producer, 100, &err), 1, "%s", err.buf);
    cr_assert_eq(sb_outbox_relay_once(pool, producer, 100, &err), 0, "published rows go once");

    /* publish the very same envelope again (replay), as a crash between
     * publish and mark would */
    sb_arena_t *arena = sb_arena_new();
    sb_db_t db = {.arena = arena, .detail = &err, .pool = pool}; /* autocommit */
    sb_outbox_replayed_t replayed;
    /* filters that match nothing mark nothing */
    sb_outbox_filter_t other = {type, "reservation-43", NULL, NULL};
    cr_assert_eq(sb_outbox_replay(&db, &other, &replayed), SB_OK, "%s", err.buf);
    cr_assert_eq(replayed.count, 0);
    cr_assert_eq(replayed.n_ids, 0);
    sb_outbox_filter_t later = {type, NULL, "2999-01-01T00:00:00Z", NULL};
    cr_assert_eq(sb_outbox_replay(&db, &later, &replayed), SB_OK, "%s", err.buf);
    cr_assert_eq(replayed.count, 0);
    sb_outbox_filter_t before = {type, "reservation-42", "2000-01-01T00:00:00Z", "2000-01-02T00:00:00Z"};
    cr_assert_eq(sb_outbox_replay(&db, &before, &replayed), SB_OK, "%s", err.buf);
    cr_assert_eq(replayed.count, 0);
    cr_assert_eq(sb_outbox_relay_once(pool, producer, 100, &err), 0, "nothing was marked");
    /* the aggregate, in a range that holds the event: the same event id */
    sb_outbox_filter_t mine = {type, "reservation-42", "2000-01-01T00:00:00Z",
                               "2999-01-01T00:00:00+09:00"};
    cr_assert_eq(sb_outbox_replay(&db, &mine, &replayed), SB_OK, "%s", err.buf);
    cr_assert_eq(replayed.count, 1);
    cr_assert_eq(replayed.n_ids, 1);
    cr_assert_str_eq(replayed.ids[0], a.event_id);
    sb_arena_free(arena);
    cr_assert_eq(sb_outbox_relay_once(pool, producer, 100, &err), 1, "%s", err.buf);

    char group[80];
    snprintf(group, sizeof group, "test-%s", type);
    sb_consumer_t *cons = sb_consumer_start(test_brokers(), group, pool, &table, &err);
    cr_assert_not_null(cons, "%s", err.buf);
    uint64_t handled = 0, dups = 0;
    for (int i = 0; i < 600 && handled + dups < 2; i++) {
        usleep(100000);
        sb_consumer_stats(cons, &handled, &dups);
    }
    sb_consumer_stop(cons);
    cr_assert_eq(handled, 1, "handled %lu", (unsigned long)handled);
    cr_assert_eq(dups, 1, "duplicates dropped %lu", (unsigned long)dups);
    cr_assert_eq(effect_count("reservation-42"), 1);

    /* and a third delivery straight into the inbox: still one effect */
    sb_pg_conn_t *c = sb_pg_acquire(pool, 1000, &err);
    PGresult *r = PQexecParams(sb_pg_raw(c), "SELECT envelope FROM sb_outbox WHERE event_id=$1::uuid", 1,
                               NULL, (const char *const[]){a.event_id}, NULL, NULL, 1);
    cr_assert_eq(PQntuples(r), 1);
    sb_inbox_result_t res = SB_INBOX_RESULT_INIT;
    cr_assert_eq(sb_inbox_handle(pool, &table, "test", NULL, PQgetvalue(r, 0, 0),
                                 (size_t)PQgetlength(r, 0, 0), &res),
                 SB_OK, "%s %s", res.reason.buf, res.detail.buf);
    cr_assert(res.outcome == SB_EVENT_DUPLICATE);
    sb_inbox_result_release(&res);
    PQclear(r);
    sb_pg_release(pool, c);
    cr_assert_eq(effect_count("reservation-42"), 1);
    sb_buf_release(&err);
}

Test(events, malformed_envelope_is_rejected_without_effect)
{
    sb_inbox_result_t res = SB_INBOX_RESULT_INIT;
    static const unsigned char junk[] = {0x0a, 0x7f, 'x'};
    cr_assert_eq(sb_inbox_handle(pool, &table, "test", NULL, junk, sizeof junk, &res),
                 SB_INVALID_ARGUMENT);
    /* decodes, but the event id is not a UUID */
    sb_event_envelope_t env = SB__EVENTS__EVENT_ENVELOPE__INIT;
    env.event_id = "not-a-uuid";
    env.type = (char *)type;
    env.aggregate_id = "agg-bad";
    uint8_t buf[256];
    size_t n = sb__events__event_envelope__pack(&env, buf);
    cr_assert_eq(sb_inbox_handle(pool, &table, "test", NULL, buf, n, &res), SB_INVALID_ARGUMENT);
    cr_assert_eq(effect_count("agg-bad"), 0);
    sb_inbox_result_release(&res);
}

Test(events, relay_publishes_in_order_per_aggregate)
{
    sb_buf_t err = SB_BUF_INIT;
    char ids[5][SB_UUID_LEN + 1];
    for (int i = 0; i < 5; i++) {
        struct add_args a = {.agg = "ordered-agg"};
        cr_assert_eq(sb_pg_tx(pool, SB_PG_READ_COMMITTED, add_event, &a, &err), SB_OK, "%s", err.buf);
        memcpy(ids[i], a.event_id, sizeof ids[i]);
    }
    cr_assert_eq(sb_outbox_relay_once(pool, producer, 100, &err), 5, "%s", err.buf);
    /* read the partition back with a plain consumer and check the order */
    sb_pg_conn_t *c = sb_pg_acquire(pool, 1000, &err);
    PGresult *r = sb_pg_exec_sql(
        c,
        "SELECT count(*) FROM sb_outbox WHERE aggregate_id='ordered-agg' AND published_at IS NOT NULL");
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "5");
    PQclear(r);
    sb_pg_release(pool, c);

    char group[80];
    snprintf(group, sizeof group, "order-%s", type);
    sb_consumer_t *cons = sb_consumer_start(test_brokers(), group, pool, &table, &err);
    cr_assert_not_null(cons);
    uint64_t handled = 0, dups = 0;
    for (int i = 0; i < 600 && handled < 5; i++) {
        usleep(100000);
        sb_consumer_stats(cons, &handled, &dups);
    }
    sb_consumer_stop(cons);
    cr_assert_eq(handled, 5);
    /* the inbox received them in outbox order (same key -> same partition) */
    c = sb_pg_acquire(pool, 1000, &err);
    r = sb_pg_exec_sql(c, "SELECT i.event_id::text FROM sb_inbox i JOIN sb_outbox o USING (event_id)"
                          " WHERE o.aggregate_id='ordered-agg' ORDER BY i.received_at, o.id");
    cr_assert_eq(PQntuples(r), 5);
    for (int i = 0; i < 5; i++)
        cr_assert_str_eq(PQgetvalue(r, i, 0), ids[i]);
    PQclear(r);
    sb_pg_release(pool, c);
    sb_buf_release(&err);
}

/* The broker is unreachable and the send gives up before librdkafka's own
 * message timeout: the call fails with UNAVAILABLE and must leave nothing of
 * the message behind in the producer (its delivery slot lives on the caller's
 * stack; a report arriving later would write into a dead frame). The purge
 * makes freeing the producer immediate; under ASan/valgrind a late report
 * would be an invalid write. */
Test(events, send_to_an_unreachable_broker_fails_and_leaves_nothing_pending)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_producer_t *p = sb_producer_new("127.0.0.1:1", &err);
    cr_assert(p, "%s", err.buf);
    for (int i = 0; i < 3; i++) {
        sb_buf_reset(&err);
        cr_assert_eq(sb_producer_send(p, "sb.unreachable", "k", "v", 1, NULL, 200, &err),
                     SB_UNAVAILABLE);
        cr_assert(strstr(err.buf, "failed"), "%s", err.buf);
    }
    sb_producer_free(p);
    sb_buf_release(&err);
}

/* ------------------------------------------------------------ helpers */

/* One integer from the test database; params are text (NULL: none). */
static long long sql_int(const char *sql, const char *p1, const char *p2)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_pg_conn_t *c = sb_pg_acquire(pool, 1000, &err);
    cr_assert_not_null(c, "%s", err.buf);
    const char *p[] = {p1, p2};
    int n = p2 ? 2 : p1 ? 1 : 0;
    PGresult *r = PQexecParams(sb_pg_raw(c), sql, n, NULL, p, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
    long long v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    sb_pg_release(pool, c);
    sb_buf_release(&err);
    return v;
}

static void sql_run(const char *sql)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_pg_conn_t *c = sb_pg_acquire(pool, 1000, &err);
    cr_assert_not_null(c, "%s", err.buf);
    PGresult *r = sb_pg_exec_sql(c, sql);
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s",
              sql, PQresultErrorMessage(r));
    PQclear(r);
    sb_pg_release(pool, c);
    sb_buf_release(&err);
}

/* A packed envelope (malloc'd; caller frees) with the given payload bytes. */
static uint8_t *envelope(const char *event_id, const char *etype, const char *agg,
                         ProtobufCBinaryData payload, size_t *len)
{
    sb_event_envelope_t env = SB__EVENTS__EVENT_ENVELOPE__INIT;
    env.event_id = (char *)event_id;
    env.type = (char *)etype;
    env.aggregate_id = (char *)agg;
    env.occurred_at = "2026-11-24T09:00:00.000Z";
    env.producer = "test-events";
    env.payload = payload;
    *len = sb__events__event_envelope__get_packed_size(&env);
    uint8_t *b = malloc(*len + 1);
    sb__events__event_envelope__pack(&env, b);
    return b;
}

/* NotificationSent{kind} packed into buf. */
static ProtobufCBinaryData notification(const char *kind, uint8_t buf[128])
{
    Sb__Events__NotificationSent m = SB__EVENTS__NOTIFICATION_SENT__INIT;
    m.notification_id = "n-1";
    m.kind = (char *)kind;
    return (ProtobufCBinaryData){sb__events__notification_sent__pack(&m, buf), buf};
}

static const uint8_t junk[] = {0x0a, 0x64, 'a', 'b', 'c'}; /* a field longer than the message */
static const ProtobufCBinaryData junk_payload = {sizeof junk, (uint8_t *)junk};

/* Hands one envelope to the inbox with the caller's work also (NULL: none,
 * as sb_inbox_handle); returns the status, *outcome the outcome. */
static sb_status_t handle_also(const char *event_id, const char *etype, const char *agg,
                               ProtobufCBinaryData payload, const sb_inbox_also_t *also,
                               sb_event_outcome_t *outcome, sb_buf_t *reason)
{
    size_t len;
    uint8_t *b = envelope(event_id, etype, agg, payload, &len);
    sb_inbox_result_t res = SB_INBOX_RESULT_INIT;
    sb_status_t st = sb_inbox_deliver(pool, &table, "test", b, len, also, &res);
    *outcome = res.outcome;
    sb_buf_reset(reason);
    sb_buf_adds(reason, res.reason.buf);
    sb_inbox_result_release(&res);
    free(b);
    return st;
}

static sb_status_t handle(const char *event_id, const char *etype, const char *agg,
                          ProtobufCBinaryData payload, sb_event_outcome_t *outcome, sb_buf_t *reason)
{
    return handle_also(event_id, etype, agg, payload, NULL, outcome, reason);
}

/* ------------------------------------------------------------ dead letters */

Test(events, malformed_events_are_dead_letters_and_a_corrected_resend_is_handled)
{
    char id[SB_UUID_LEN + 1];
    sb_uuid_v4(id);
    uint8_t buf[128];
    sb_buf_t reason = SB_BUF_INIT;
    sb_event_outcome_t out;

    /* a type the platform does not know */
    cr_assert_eq(handle(id, "notification.unheard_of", "dl-agg", notification("x", buf), &out, &reason),
                 SB_INVALID_ARGUMENT);
    cr_assert_eq(out, SB_EVENT_DEAD_LETTER);
    cr_assert(strstr(reason.buf, "unknown event type"), "%s", reason.buf);
    /* a payload that is not the type's message */
    cr_assert_eq(handle(id, type, "dl-agg", junk_payload, &out, &reason), SB_INVALID_ARGUMENT);
    cr_assert_eq(out, SB_EVENT_DEAD_LETTER);
    cr_assert(strstr(reason.buf, "undecodable"), "%s", reason.buf);
    /* a payload the handler refuses */
    cr_assert_eq(handle(id, type, "dl-agg", notification("refuse-me", buf), &out, &reason),
                 SB_INVALID_ARGUMENT);
    cr_assert_eq(out, SB_EVENT_DEAD_LETTER);
    cr_assert(strstr(reason.buf, "refuse-me is refused"), "%s", reason.buf);

    cr_assert_eq(sql_int("SELECT count(*) FROM sb_dead_letters WHERE event_id = $1 AND source = 'test'",
                         id, NULL),
                 3);
    cr_assert_eq(sql_int("SELECT count(*) FROM sb_dead_letters WHERE event_id = $1"
                         " AND error LIKE '%unknown event type%' AND type = 'notification.unheard_of'",
                         id, NULL),
                 1);
    cr_assert_eq(sql_int("SELECT count(*) FROM sb_dead_letters WHERE event_id = $1"
                         " AND error LIKE '%undecodable NotificationSent payload%' AND topic = $2",
                         id, topic),
                 1);
    cr_assert_eq(sql_int("SELECT count(*) FROM sb_inbox WHERE event_id = $1::uuid", id, NULL), 0,
                 "a dead letter is not recorded as processed");
    cr_assert_eq(effect_count("dl-agg"), 0);

    /* the same id, corrected: handled, once */
    cr_assert_eq(handle(id, type, "dl-agg", notification("fixed", buf), &out, &reason), SB_OK, "%s",
                 reason.buf);
    cr_assert_eq(out, SB_EVENT_HANDLED);
    cr_assert_eq(handle(id, type, "dl-agg", notification("fixed", buf), &out, &reason), SB_OK);
    cr_assert_eq(out, SB_EVENT_DUPLICATE);
    cr_assert_eq(effect_count("dl-agg"), 1);
    cr_assert_eq(sql_int("SELECT count(*) FROM sb_inbox WHERE event_id = $1::uuid", id, NULL), 1);

    /* a platform type the table has no row for: skipped, recorded, no dead letter */
    char other[SB_UUID_LEN + 1];
    sb_uuid_v4(other);
    Sb__Events__MemberWithdrawn w = SB__EVENTS__MEMBER_WITHDRAWN__INIT;
    ProtobufCBinaryData wp = {sb__events__member_withdrawn__pack(&w, buf), buf};
    cr_assert_eq(handle(other, "member.withdrawn", "dl-other", wp, &out, &reason), SB_OK, "%s",
                 reason.buf);
    cr_assert_eq(out, SB_EVENT_SKIPPED);
    cr_assert_eq(handle(other, "member.withdrawn", "dl-other", wp, &out, &reason), SB_OK);
    cr_assert_eq(out, SB_EVENT_DUPLICATE);
    cr_assert_eq(sql_int("SELECT count(*) FROM sb_dead_letters WHERE event_id = $1", other, NULL), 0);
    cr_assert_eq(effect_count("dl-other"), 0);
    sb_buf_release(&reason);
}

Test(events, the_consumer_dead_letters_a_malformed_event_and_moves_on)
{
    sb_buf_t err = SB_BUF_INIT;
    char id[SB_UUID_LEN + 1], next[SB_UUID_LEN + 1];
    sb_uuid_v4(id);
    sb_uuid_v4(next);
    uint8_t fixed[128], later[128];
    struct {
        const char *id;
        ProtobufCBinaryData payload;
    } sends[] = {
        {id, junk_payload}, {id, notification("fixed", fixed)}, {next, notification("next", later)}};
    for (size_t i = 0; i < 3; i++) {
        size_t len;
        uint8_t *b = envelope(sends[i].id, type, "kafka-dl", sends[i].payload, &len);
        cr_assert_eq(sb_producer_send(producer, topic, "kafka-dl", b, len, NULL, 10000, &err), SB_OK,
                     "%s", err.buf);
        free(b);
    }
    char group[80];
    snprintf(group, sizeof group, "dl-%s", sb_namespace());
    sb_consumer_t *cons = sb_consumer_start(test_brokers(), group, pool, &table, &err);
    cr_assert_not_null(cons, "%s", err.buf);
    uint64_t handled = 0, dups = 0;
    for (int i = 0; i < 600 && handled < 2; i++) {
        usleep(100000);
        sb_consumer_stats(cons, &handled, &dups);
    }
    sb_consumer_stop(cons);
    cr_assert_eq(handled, 2, "handled %lu", (unsigned long)handled);
    cr_assert_eq(effect_count("kafka-dl"), 2, "the corrected resend and the next event");
    cr_assert_eq(sql_int("SELECT count(*) FROM sb_dead_letters WHERE event_id = $1 AND source = 'kafka'"
                         " AND topic = $2 AND error LIKE '%undecodable%'",
                         id, topic),
                 1);
    cr_assert_eq(
        sql_int("SELECT count(*) FROM sb_inbox WHERE event_id IN ($1::uuid, $2::uuid)", id, next), 2);
    sb_buf_release(&err);
}

static void *release_later(void *arg)
{
    (void)arg;
    usleep(500000);
    atomic_store(&release, true);
    return NULL;
}

/* The consumer's workers (CONSUMER_WORKERS): an event that takes long holds
 * up the events behind it on its own partition only; stopping waits for it
 * and commits it; what was not handled comes again to the next consumer. */
Test(events, a_slow_event_holds_up_only_its_own_partition)
{
    enum { FAST = 12 };
    sb_buf_t err = SB_BUF_INIT;
    uint8_t hold[128], after[128], plain[128];
    struct {
        const char *agg;
        ProtobufCBinaryData payload;
    } sends[FAST + 2] = {{"slow-agg", notification("hold", hold)},
                         {"slow-agg", notification("after", after)}};
    char fast[FAST][16];
    for (int i = 0; i < FAST; i++) {
        snprintf(fast[i], sizeof fast[i], "fast-%d", i);
        sends[i + 2].agg = fast[i];
        sends[i + 2].payload = notification("fast", plain);
    }
    for (size_t i = 0; i < FAST + 2; i++) { /* the slow one first: same order on every partition */
        char id[SB_UUID_LEN + 1];
        sb_uuid_v4(id);
        size_t len;
        uint8_t *b = envelope(id, type, sends[i].agg, sends[i].payload, &len);
        cr_assert_eq(sb_producer_send(producer, topic, sends[i].agg, b, len, NULL, 10000, &err), SB_OK,
                     "%s", err.buf);
        free(b);
    }
    setenv("CONSUMER_WORKERS", "4", 1);
    char group[80];
    snprintf(group, sizeof group, "slow-%s", sb_namespace());
    sb_consumer_t *cons = sb_consumer_start(test_brokers(), group, pool, &table, &err);
    cr_assert_not_null(cons, "%s", err.buf);
    for (int i = 0; i < 600 && !atomic_load(&holding); i++)
        usleep(100000);
    cr_assert(atomic_load(&holding), "the slow event never started");
    /* Keys spread over the 3 partitions: some fast event is on another one
     * than slow-agg (all 12 on its partition: odds 1 in 531441). */
    int done = 0;
    for (int i = 0; i < 600 && done == 0; i++) {
        usleep(100000);
        for (int k = 0; k < FAST; k++)
            done += effect_count(fast[k]);
    }
    cr_assert(atomic_load(&holding), "the slow event must still be running");
    cr_assert_gt(done, 0, "no event of another partition was handled while the slow one ran");
    cr_assert_eq(effect_count("slow-agg"), 0, "the event behind the slow one on its partition waited");

    /* stop while the slow event runs: it finishes and is committed first */
    pthread_t t;
    pthread_create(&t, NULL, release_later, NULL);
    sb_consumer_stop(cons);
    pthread_join(t, NULL);
    cr_assert_eq(effect_count("slow-agg"), 1, "stop waited for the event in flight");

    /* the next consumer of the group gets what was left, and nothing twice */
    cons = sb_consumer_start(test_brokers(), group, pool, &table, &err);
    cr_assert_not_null(cons, "%s", err.buf);
    for (int i = 0; i < 600; i++) {
        done = 0;
        for (int k = 0; k < FAST; k++)
            done += effect_count(fast[k]);
        if (done == FAST && effect_count("slow-agg") == 2)
            break;
        usleep(100000);
    }
    sb_consumer_stop(cons);
    cr_assert_eq(effect_count("slow-agg"), 2);
    for (int k = 0; k < FAST; k++)
        cr_assert_eq(effect_count(fast[k]), 1, "%s", fast[k]);
    sb_buf_release(&err);
}

Test(events, the_outbox_refuses_a_payload_that_is_not_the_types)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_pg_conn_t *c = sb_pg_acquire(pool, 1000, &err);
    PQclear(sb_pg_exec_sql(c, "BEGIN"));
    Sb__Test__EchoRequest echo = SB__TEST__ECHO_REQUEST__INIT;
    cr_assert_eq(sb_outbox_add(c, type, "x", &echo.base, NULL, &err), SB_INTERNAL);
    cr_assert(strstr(err.buf, "NotificationSent"), "%s", err.buf);
    Sb__Events__NotificationSent n = SB__EVENTS__NOTIFICATION_SENT__INIT;
    sb_buf_reset(&err);
    cr_assert_eq(sb_outbox_add(c, "notification.unheard_of", "x", &n.base, NULL, &err), SB_INTERNAL);
    PQclear(sb_pg_exec_sql(c, "ROLLBACK"));
    sb_pg_release(pool, c);
    sb_buf_release(&err);
}

/* ------------------------------------------------------------------ jobs */

static atomic_int in_flight, overlaps, ticks[2];
static const int runner_ids[2] = {0, 1};

/* Records a tick of runner *job->arg in job_ticks, inside the tick's transaction. */
static sb_status_t probe_tick(sb_job_ctx_t *job)
{
    static const sb_pg_stmt_t ins = {"tick", "INSERT INTO job_ticks VALUES ($1::int)"};
    int who = *(const int *)job->arg;
    if (atomic_fetch_add(&in_flight, 1) != 0)
        atomic_fetch_add(&overlaps, 1);
    sb_status_t st = sb_db_exec(job->db, &ins, NULL, who ? "1" : "0");
    usleep(5000);
    atomic_fetch_sub(&in_flight, 1);
    atomic_fetch_add(&ticks[who], 1);
    return st;
}

static sb_status_t failing_tick(sb_job_ctx_t *job)
{
    probe_tick(job);
    sb_buf_adds(job->db->detail, "failing on purpose");
    return SB_INTERNAL;
}

Test(events, a_job_runs_on_exactly_one_of_two_runners_at_a_time)
{
    static const sb_job_t row = {"probe", probe_tick, .every_ms = 2};
    sb_buf_t err = SB_BUF_INIT;
    sb_jobs_t *a = sb_jobs_start(pool, &row, 1, (void *)&runner_ids[0], &err);
    sb_jobs_t *b = sb_jobs_start(pool, &row, 1, (void *)&runner_ids[1], &err);
    cr_assert(a && b, "%s", err.buf);
    usleep(1500000);
    sb_jobs_stop(a);
    sb_jobs_stop(b);
    int total = atomic_load(&ticks[0]) + atomic_load(&ticks[1]);
    cr_assert_eq(atomic_load(&overlaps), 0, "two runners ticked at once");
    cr_assert_gt(total, 20, "ticks: %d + %d", atomic_load(&ticks[0]), atomic_load(&ticks[1]));
    cr_assert_eq(sql_int("SELECT count(*) FROM job_ticks", NULL, NULL), total, "every tick committed");
    sb_buf_release(&err);
}

Test(events, a_session_job_has_one_leader_and_a_successor_takes_over)
{
    static const sb_job_t row = {"leader-probe", probe_tick, .every_ms = 10, .session = true};
    sb_buf_t err = SB_BUF_INIT;
    sb_jobs_t *r[2];
    r[0] = sb_jobs_start(pool, &row, 1, (void *)&runner_ids[0], &err);
    usleep(100000); /* the first one leads */
    r[1] = sb_jobs_start(pool, &row, 1, (void *)&runner_ids[1], &err);
    cr_assert(r[0] && r[1], "%s", err.buf);
    usleep(800000);
    int t0 = atomic_load(&ticks[0]), t1 = atomic_load(&ticks[1]);
    cr_assert_gt(t0, 10, "the leader ticks");
    cr_assert_eq(t1, 0, "only the leader ticks");
    sb_jobs_stop(r[0]); /* its connection, and so its lock, ends */
    for (int i = 0; i < 300 && atomic_load(&ticks[1]) == 0; i++)
        usleep(10000);
    cr_assert_gt(atomic_load(&ticks[1]), 0, "the other runner took over");
    sb_jobs_stop(r[1]);
    cr_assert_eq(atomic_load(&overlaps), 0);
    sb_buf_release(&err);
}

Test(events, a_failed_tick_leaves_nothing)
{
    static const sb_job_t row = {"failing", failing_tick, .every_ms = 5};
    sb_buf_t err = SB_BUF_INIT;
    sb_log_set_level(SB_LOG_ERROR + 1); /* the failures are the point */
    sb_jobs_t *j = sb_jobs_start(pool, &row, 1, (void *)&runner_ids[0], &err);
    cr_assert_not_null(j, "%s", err.buf);
    for (int i = 0; i < 200 && atomic_load(&ticks[0]) < 3; i++)
        usleep(10000);
    sb_jobs_stop(j);
    cr_assert_geq(atomic_load(&ticks[0]), 3, "the job backs off but keeps trying");
    cr_assert_eq(sql_int("SELECT count(*) FROM job_ticks", NULL, NULL), 0, "a failed tick rolls back");
    sb_buf_release(&err);
}

Test(events, a_notify_wakes_a_job_early)
{
    static const sb_job_t row = {"woken", probe_tick, .every_ms = 60000, .channel = "sb_test_wake"};
    sb_buf_t err = SB_BUF_INIT;
    sb_jobs_t *j = sb_jobs_start(pool, &row, 1, (void *)&runner_ids[0], &err);
    cr_assert_not_null(j, "%s", err.buf);
    for (int i = 0; i < 500 && atomic_load(&ticks[0]) < 1; i++)
        usleep(10000);
    usleep(300000);
    cr_assert_eq(atomic_load(&ticks[0]), 1, "one tick at start, the next a minute later");
    int64_t t0 = sb_mono_ns();
    sql_run("SELECT pg_notify('sb_test_wake', '')");
    for (int i = 0; i < 300 && atomic_load(&ticks[0]) < 2; i++)
        usleep(10000);
    cr_assert_eq(atomic_load(&ticks[0]), 2, "woken by the NOTIFY");
    cr_assert_lt(sb_mono_ns() - t0, 2000000000LL);
    sb_jobs_stop(j);
    sb_buf_release(&err);
}

/* ------------------------------------------------------------------ relay */

Test(events, the_relay_holds_no_transaction_while_kafka_is_unreachable)
{
    sb_buf_t err = SB_BUF_INIT;
    struct add_args a = {.agg = "unreachable"};
    cr_assert_eq(sb_pg_tx(pool, SB_PG_READ_COMMITTED, add_event, &a, &err), SB_OK, "%s", err.buf);
    sb_producer_t *dead = sb_producer_new("127.0.0.1:1", &err);
    cr_assert_not_null(dead, "%s", err.buf);
    sb_job_t row = sb_outbox_relay_job(50);
    row.final_tick = false;
    sb_log_set_level(SB_LOG_ERROR + 1); /* librdkafka's complaints about the dead port */
    sb_jobs_t *relay = sb_jobs_start(pool, &row, 1, dead, &err);
    cr_assert_not_null(relay, "%s", err.buf);

    /* the relay leads (its session lock) and is waiting for Kafka */
    static const char *const leader_sql =
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
        " WHERE l.locktype = 'advisory' AND l.classid = 0 AND l.objid = " SB_LOCK_OUTBOX_RELAY
        " AND l.objsubid = 1 AND l.granted AND a.datname = $1 AND a.state = $2";
    /* seen once is enough: the relay's ticks (every 50 ms) make its
     * connection active for a moment, so a second look may miss it */
    long long leading = 0;
    for (int i = 0; i < 500 && (leading = sql_int(leader_sql, DB, "idle")) == 0; i++)
        usleep(10000);
    cr_assert_eq(leading, 1, "the relay's connection: holding the lock, idle");
    for (int i = 0; i < 40; i++) {
        cr_assert_eq(sql_int("SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
                             " AND state LIKE 'idle in transaction%'",
                             DB, NULL),
                     0, "a connection of " DB " sits in an open transaction");
        cr_assert_eq(sql_int("SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
                             " AND xact_start IS NOT NULL AND pid <> pg_backend_pid()",
                             DB, NULL),
                     0, "a transaction of " DB " is open");
        usleep(50000);
    }
    cr_assert_eq(sql_int("SELECT count(*) FROM sb_outbox WHERE published_at IS NULL", NULL, NULL), 1);
    int64_t t0 = sb_mono_ns();
    sb_jobs_stop(relay); /* cancels the wait */
    cr_assert_lt(sb_mono_ns() - t0, 5000000000LL, "stopping waited for Kafka");
    sb_producer_free(dead);
    /* the row is still there to publish */
    sb_log_set_level(SB_LOG_WARN);
    cr_assert_eq(sb_outbox_relay_once(pool, producer, 100, &err), 1, "%s", err.buf);
    sb_buf_release(&err);
}

struct relay_run {
    int published;
    char err[512];
};

static void *run_relay_once(void *arg)
{
    struct relay_run *r = arg;
    sb_buf_t err = SB_BUF_INIT;
    r->published = sb_outbox_relay_once(pool, producer, 100, &err);
    snprintf(r->err, sizeof r->err, "%s", err.buf);
    sb_buf_release(&err);
    return NULL;
}

/* The mark is held back by a lock on sb_outbox (SHARE: reads pass, the
 * relay's UPDATE waits): published_at must be when Kafka confirmed, well
 * before the UPDATE could run. */
Test(events, published_at_is_the_delivery_time)
{
    sb_buf_t err = SB_BUF_INIT;
    char start[32], before_mark[32];
    sb_time_rfc3339(sb_now_ms() - 1, start);
    for (int i = 0; i < 3; i++) {
        struct add_args a = {.agg = "timed"};
        cr_assert_eq(sb_pg_tx(pool, SB_PG_READ_COMMITTED, add_event, &a, &err), SB_OK, "%s", err.buf);
    }
    sb_pg_conn_t *c = sb_pg_acquire(pool, 1000, &err);
    PQclear(sb_pg_exec_sql(c, "BEGIN"));
    PQclear(sb_pg_exec_sql(c, "LOCK TABLE sb_outbox IN SHARE MODE"));
    struct relay_run run = {0};
    pthread_t th;
    pthread_create(&th, NULL, run_relay_once, &run);
    /* published, and the mark waiting for our lock */
    static const char *const waiting =
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'"
        " AND query LIKE 'UPDATE sb_outbox%'";
    for (int i = 0; i < 1000 && sql_int(waiting, DB, NULL) == 0; i++)
        usleep(10000);
    cr_assert_eq(sql_int(waiting, DB, NULL), 1, "the relay's mark should wait for the table lock");
    usleep(100000);
    sb_time_rfc3339(sb_now_ms(), before_mark);
    usleep(400000);
    PQclear(sb_pg_exec_sql(c, "COMMIT"));
    sb_pg_release(pool, c);
    pthread_join(th, NULL);
    cr_assert_eq(run.published, 3, "%s", run.err);
    cr_assert_eq(sql_int("SELECT count(*) FROM sb_outbox WHERE published_at >= $1::timestamptz"
                         " AND published_at < $2::timestamptz AND published_at >= occurred_at",
                         start, before_mark),
                 3, "published_at is when Kafka confirmed, not when the row was marked");
    sb_buf_release(&err);
}

/* ------------------------------------------ work that commits with an event */

/* The caller's work of sb_inbox_deliver: counts its runs; writes a row (on
 * the event's transaction) or fails, as told. */
struct also_state {
    int runs;
    bool fail;
};

static sb_status_t also_write(sb_db_t *db, void *arg)
{
    static const sb_pg_stmt_t mark = {"also_mark",
                                      "INSERT INTO effects VALUES ('also-mark', 1) ON CONFLICT "
                                      "(aggregate_id) DO UPDATE SET n = effects.n + 1"};
    struct also_state *s = arg;
    s->runs++;
    if (s->fail) {
        sb_buf_adds(db->detail, "also told to fail");
        return SB_INTERNAL;
    }
    return sb_db_exec(db, &mark, NULL);
}

static sb_status_t deliver_with(const char *event_id, const char *agg, const char *kind,
                                struct also_state *s, sb_event_outcome_t *outcome)
{
    uint8_t buf[128];
    sb_buf_t reason = SB_BUF_INIT;
    sb_inbox_also_t also = {also_write, s};
    sb_status_t st = handle_also(event_id, type, agg, notification(kind, buf), &also, outcome, &reason);
    sb_buf_release(&reason);
    return st;
}

Test(events, the_callers_work_commits_with_a_handled_event_only)
{
    char id[SB_UUID_LEN + 1];
    sb_uuid_v4(id);
    struct also_state s = {.fail = true};
    sb_event_outcome_t out;
    /* its failure is the event's: nothing applied, the event id stays free */
    cr_assert_eq(deliver_with(id, "also-agg", "ok", &s, &out), SB_INTERNAL);
    cr_assert_eq(out, SB_EVENT_FAILED);
    cr_assert_eq(s.runs, 1);
    cr_assert_eq(effect_count("also-agg"), 0);
    cr_assert_eq(effect_count("also-mark"), 0);
    /* handled: the effect and the caller's row commit together */
    s.fail = false;
    cr_assert_eq(deliver_with(id, "also-agg", "ok", &s, &out), SB_OK);
    cr_assert_eq(out, SB_EVENT_HANDLED);
    cr_assert_eq(s.runs, 2);
    cr_assert_eq(effect_count("also-agg"), 1);
    cr_assert_eq(effect_count("also-mark"), 1);
    /* a duplicate changed nothing: the caller's work does not run */
    cr_assert_eq(deliver_with(id, "also-agg", "ok", &s, &out), SB_OK);
    cr_assert_eq(out, SB_EVENT_DUPLICATE);
    cr_assert_eq(s.runs, 2);
    cr_assert_eq(effect_count("also-mark"), 1);
    /* refused by the handler: a dead letter, and not run either */
    sb_uuid_v4(id);
    cr_assert_eq(deliver_with(id, "also-agg", "refuse-me", &s, &out), SB_INVALID_ARGUMENT);
    cr_assert_eq(out, SB_EVENT_DEAD_LETTER);
    cr_assert_eq(s.runs, 2);
    cr_assert_eq(effect_count("also-mark"), 1);
}

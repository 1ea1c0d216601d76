/* Outbox -> Kafka -> consumer -> inbox against the real PostgreSQL and Kafka.
 * The same event delivered twice (re-published from the outbox, and handed
 * to the inbox directly) must have exactly one effect.
 *
 * Each test process runs in a namespace of its own (<test namespace>_<8 hex>),
 * so the platform event type it uses (notification.sent, which no service
 * under test consumes) lives on a topic no earlier run wrote to. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "echo.pb-c.h"
#include "sb/events.h"
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
        {1, "effects", "CREATE TABLE effects (aggregate_id text PRIMARY KEY, n int NOT NULL)"}};
    cr_assert_eq(sb_pg_migrate(pool, "test", m, 1, &err), SB_OK, "%s", err.buf);
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

/* the effect: count deliveries per aggregate */
static sb_status_t count_effect(sb_event_ctx_t *ev, const void *payload)
{
    static const sb_pg_stmt_t bump = {
        "bump", "INSERT INTO effects VALUES ($1, 1) ON CONFLICT (aggregate_id) DO UPDATE SET n = effects.n + 1"};
    const Sb__Events__NotificationSent *m = payload;
    if (!strcmp(m->kind, "refuse-me"))
        return sb_event_refuse(ev, "kind refuse-me is refused");
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
    int64_t replayed = 0;
    cr_assert_eq(sb_outbox_replay(pool, type, NULL, &replayed, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(replayed, 1);
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
    PGresult *r = sb_pg_exec_sql(c, "SELECT count(*) FROM sb_outbox WHERE aggregate_id='ordered-agg' AND published_at IS NOT NULL");
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
        cr_assert_eq(sb_producer_send(p, "sb.unreachable", "k", "v", 1, NULL, 200, &err), SB_UNAVAILABLE);
        cr_assert(strstr(err.buf, "failed"), "%s", err.buf);
    }
    sb_producer_free(p);
    sb_buf_release(&err);
}

/* Dead letters for admins and the health of a service, against the real
 * PostgreSQL, Redis and Kafka, through a gRPC server in this process that
 * serves the runtime's rpcs (sb_service_add_runtime, as sb_service_main
 * does) with mutual TLS and the token check (sb_test_pki.h).
 *
 * The replay scenario is the one a dead letter is for: an event refers to an
 * account this service does not know yet (its handler refuses it), so the
 * event is dead-lettered, from Kafka and from DeliverEvent's path alike; the
 * account arrives; an admin lists the dead letters and replays them: each
 * event applies once, a second replay changes nothing, a replay before the
 * fix keeps the row with its reason.
 *
 * Health: the gauges of the health refresher with a producer pointed at a closed
 * port (the shared broker is never stopped): the outbox backlog and its age
 * grow, sb_kafka_broker_up is 0, /readyz stays 200 naming Kafka down, and
 * 503 naming Redis when Redis is the one away; consumer lag while a handler
 * holds its partition.
 *
 * Each test process runs in a namespace of its own, so the topic it uses
 * (notification.sent's) starts empty. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime.pb-c.h"
#include "sb/events.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/service.h"
#include "sb/util.h"
#include "sb_test_env.h"
#include "sb_test_pki.h"
#include "sb_test_proc.h"

#define DB "sb_test_dead_letters"
#define ADMIN_ID "7a0c1c9e-0d55-4c1a-9a62-0d7e1e3a0001"

static const char *const type = "notification.sent";
static char topic[64];
static sb_pg_pool_t *pool;
static sb_producer_t *producer;
static sb_server_t *srv;
static sb_channel_t *ch;
static sb_arena_t *arena;
static atomic_int hold_handler; /* 1: the handler waits (lag test) */

/* The effect: one row per event id applied, so "once" is countable. The
 * handler refuses an event whose account is unknown: it may arrive later. */
static sb_status_t on_sent(sb_event_ctx_t *ev, const void *payload)
{
    static const sb_pg_stmt_t account = {"t_account", "SELECT 1 FROM accounts WHERE user_id = $1"};
    static const sb_pg_stmt_t apply = {"t_apply", "INSERT INTO effects (event_id, user_id, n)"
                                                  " VALUES ($1, $2, 1) ON CONFLICT (event_id)"
                                                  " DO UPDATE SET n = effects.n + 1"};
    const Sb__Events__NotificationSent *m = payload;
    while (atomic_load(&hold_handler))
        usleep(10000);
    PGresult *r;
    sb_status_t st = sb_db_exec(ev->db, &account, &r, m->user_id);
    if (st != SB_OK)
        return st;
    if (PQntuples(r) == 0)
        return sb_event_refuse(ev, "account %s is not known here", m->user_id);
    return sb_db_exec(ev->db, &apply, NULL, ev->env->event_id, m->user_id);
}

static const sb_event_handler_t rows[] = {
    {"notification.sent", &sb__events__notification_sent__descriptor, on_sent},
};
static const sb_service_def_t def = {.name = "dltest", .events = rows, .n_events = 1};
static sb_service_t svc;

static void setup(void)
{
    sb_log_init("test-dead-letters");
    sb_log_set_level(SB_LOG_ERROR);
    cr_assert(sb_test_namespace_init(), "bad SB_NAMESPACE \"%s\"", sb_test_namespace());
    char id[SB_UUID_LEN + 1], ns[17];
    sb_uuid_v4(id);
    snprintf(ns, sizeof ns, "%.7s_%.8s", sb_test_namespace(), id);
    cr_assert(sb_namespace_set(ns), "namespace %s", ns);
    cr_assert_eq(test_fresh_db(DB), 0, "cannot create database " DB " at %s", test_db_url());
    sb_buf_t err = SB_BUF_INIT;
    pool = sb_pg_pool_new(test_db_url(), DB, 6, &err);
    cr_assert_not_null(pool, "%s", err.buf);
    cr_assert_eq(sb_events_migrate(pool, &err), SB_OK, "%s", err.buf);
    static const sb_migration_t m[] = {
        {1, "accounts",
         "CREATE TABLE accounts (user_id text PRIMARY KEY);"
         "CREATE TABLE effects (event_id text PRIMARY KEY, user_id text NOT NULL, n int NOT NULL)"}};
    cr_assert_eq(sb_pg_migrate(pool, "test", m, 1, &err), SB_OK, "%s", err.buf);
    producer = sb_producer_new(test_brokers(), &err);
    cr_assert_not_null(producer, "%s", err.buf);
    cr_assert(sb_event_topic(type, topic, sizeof topic));
    const char *topics[] = {topic};
    cr_assert_eq(sb_kafka_ensure_topics(test_brokers(), topics, 1, 3, &err), SB_OK, "%s", err.buf);
    svc = (sb_service_t){.def = &def, .pg = pool, .producer = producer};
    srv = sb_server_new("127.0.0.1:0", 4);
    sb_service_add_runtime(srv, &svc);
    sb_test_server_authn(srv);
    cr_assert_eq(sb_server_start(srv, &err), SB_OK, "%s", err.buf);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", sb_server_port(srv));
    ch = sb_channel_get(target);
    arena = sb_arena_new();
    sb_buf_release(&err);
}

static void teardown(void)
{
    atomic_store(&hold_handler, 0);
    sb_consumer_stop(svc.consumer);
    sb_arena_free(arena);
    sb_channels_free_all();
    sb_server_shutdown(srv, 1000);
    sb_server_free(srv);
    sb_test_authn_free();
    sb_producer_free(producer);
    sb_pg_pool_free(pool);
}

TestSuite(dead_letters, .init = setup, .fini = teardown, .timeout = 180);

/* ----------------------------------------------------------- helpers */

static long long sql_count(const char *sql, const char *arg)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_pg_conn_t *c = sb_pg_acquire(pool, 2000, &err);
    cr_assert_not_null(c, "%s", err.buf);
    PGresult *r =
        PQexecParams(sb_pg_raw(c), sql, arg ? 1 : 0, NULL, (const char *const[]){arg}, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
    long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    sb_pg_release(pool, c);
    sb_buf_release(&err);
    return n;
}

static void sql_run(const char *sql, const char *arg)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_pg_conn_t *c = sb_pg_acquire(pool, 2000, &err);
    cr_assert_not_null(c, "%s", err.buf);
    PGresult *r =
        PQexecParams(sb_pg_raw(c), sql, arg ? 1 : 0, NULL, (const char *const[]){arg}, NULL, NULL, 0);
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s",
              sql, PQresultErrorMessage(r));
    PQclear(r);
    sb_pg_release(pool, c);
    sb_buf_release(&err);
}

/* A packed envelope of notification.sent for user (in the arena). */
static uint8_t *envelope(const char *event_id, const char *user, size_t *len)
{
    Sb__Events__NotificationSent p = SB__EVENTS__NOTIFICATION_SENT__INIT;
    p.notification_id = "n-1";
    p.user_id = (char *)user;
    p.kind = "sent";
    sb_event_envelope_t env = SB__EVENTS__EVENT_ENVELOPE__INIT;
    env.event_id = (char *)event_id;
    env.type = (char *)type;
    env.aggregate_id = (char *)user;
    env.occurred_at = "2026-12-03T05:00:00.000Z";
    env.producer = "test";
    env.payload.len = sb__events__notification_sent__get_packed_size(&p);
    env.payload.data = sb_arena_alloc(arena, env.payload.len + 1);
    sb__events__notification_sent__pack(&p, env.payload.data);
    *len = sb__events__event_envelope__get_packed_size(&env);
    uint8_t *out = sb_arena_alloc(arena, *len);
    sb__events__event_envelope__pack(&env, out);
    return out;
}

static sb_status_t list(const char *role, int page_size, const char *token, bool unreplayed,
                        Sb__Runtime__ListDeadLettersResponse **resp, sb_buf_t *err)
{
    Sb__Runtime__ListDeadLettersRequest req = SB__RUNTIME__LIST_DEAD_LETTERS_REQUEST__INIT;
    req.service_id = "dltest";
    req.page_size = page_size;
    req.page_token = (char *)(token ? token : "");
    req.unreplayed = unreplayed;
    sb_call_opts_t o = {.token = role ? sb_test_token(arena, ADMIN_ID, role) : NULL};
    sb_buf_reset(err);
    return sb_rpc_call(ch, &sb__runtime__runtime__descriptor, "ListDeadLetters", &req.base, arena,
                       (ProtobufCMessage **)resp, &o, err);
}

/* A replay by role, with reason (required: audited when it applies). */
static sb_status_t replay_why(const char *role, int64_t id, const char *reason,
                              Sb__Runtime__ReplayDeadLetterResponse **resp, sb_buf_t *err)
{
    Sb__Runtime__ReplayDeadLetterRequest req = SB__RUNTIME__REPLAY_DEAD_LETTER_REQUEST__INIT;
    req.service_id = "dltest";
    req.id = id;
    req.reason = (char *)reason;
    sb_call_opts_t o = {.token = role ? sb_test_token(arena, ADMIN_ID, role) : NULL};
    sb_buf_reset(err);
    return sb_rpc_call(ch, &sb__runtime__runtime__descriptor, "ReplayDeadLetter", &req.base, arena,
                       (ProtobufCMessage **)resp, &o, err);
}

static sb_status_t replay(const char *role, int64_t id, Sb__Runtime__ReplayDeadLetterResponse **resp,
                          sb_buf_t *err)
{
    return replay_why(role, id, "the handler is fixed", resp, err);
}

/* ------------------------------------------------------------ replay */

Test(dead_letters, a_refused_event_is_listed_and_applied_once_by_a_replay_after_the_fix)
{
    sb_buf_t err = SB_BUF_INIT;
    char user[SB_UUID_LEN + 1], from_kafka[SB_UUID_LEN + 1], delivered[SB_UUID_LEN + 1];
    sb_uuid_v4(user);
    sb_uuid_v4(from_kafka);
    sb_uuid_v4(delivered);
    size_t len;

    /* from Kafka: the consumer dead-letters it and moves on */
    char group[96];
    snprintf(group, sizeof group, "test-dl-%s", topic);
    sb_event_table_t table = {rows, 1, &svc};
    svc.consumer = sb_consumer_start(test_brokers(), group, pool, &table, &err);
    cr_assert_not_null(svc.consumer, "%s", err.buf);
    uint8_t *env = envelope(from_kafka, user, &len);
    cr_assert_eq(sb_producer_send(producer, topic, user, env, len, NULL, 10000, &err), SB_OK, "%s",
                 err.buf);
    for (int i = 0;
         i < 600 && !sql_count("SELECT count(*) FROM sb_dead_letters WHERE event_id = $1", from_kafka);
         i++)
        usleep(50000);
    cr_assert_eq(sql_count("SELECT count(*) FROM sb_dead_letters WHERE event_id = $1 AND source = "
                           "'kafka' AND error LIKE '%is not known here%'",
                           from_kafka),
                 1);

    /* the path DeliverEvent takes: a dead letter too */
    env = envelope(delivered, user, &len);
    sb_inbox_result_t res = SB_INBOX_RESULT_INIT;
    cr_assert_eq(sb_inbox_handle(pool, &table, "DeliverEvent", NULL, env, len, &res),
                 SB_INVALID_ARGUMENT);
    cr_assert_eq(res.outcome, SB_EVENT_DEAD_LETTER);
    sb_inbox_result_release(&res);

    /* who may look */
    Sb__Runtime__ListDeadLettersResponse *l;
    cr_assert_eq(list("USER", 0, NULL, false, &l, &err), SB_PERMISSION_DENIED, "%s", err.buf);
    cr_assert_eq(list("PLANNER", 0, NULL, false, &l, &err), SB_PERMISSION_DENIED, "%s", err.buf);
    cr_assert_eq(list(NULL, 0, NULL, false, &l, &err), SB_UNAUTHENTICATED, "%s", err.buf);

    /* newest first, a page at a time */
    cr_assert_eq(list("ADMIN", 1, NULL, false, &l, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(l->n_dead_letters, 1);
    cr_assert_str_eq(l->dead_letters[0]->event_id, delivered);
    cr_assert_str_eq(l->dead_letters[0]->source, "DeliverEvent");
    cr_assert_str_eq(l->dead_letters[0]->type, type);
    cr_assert(strstr(l->dead_letters[0]->error, "is not known here"), "%s", l->dead_letters[0]->error);
    cr_assert_str_eq(l->dead_letters[0]->replayed_at, "");
    cr_assert(l->next_page_token && *l->next_page_token);
    int64_t delivered_id = l->dead_letters[0]->id;
    cr_assert_eq(list("ADMIN", 1, l->next_page_token, false, &l, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(l->n_dead_letters, 1);
    cr_assert_str_eq(l->dead_letters[0]->event_id, from_kafka);
    cr_assert_str_eq(l->dead_letters[0]->source, "kafka");
    cr_assert_str_eq(l->dead_letters[0]->topic, topic);
    cr_assert_str_eq(l->next_page_token, "", "the last page");
    int64_t kafka_id = l->dead_letters[0]->id;
    cr_assert_eq(list("ADMIN", 0, "abc", false, &l, &err), SB_INVALID_ARGUMENT, "%s", err.buf);
    cr_assert_eq(list("ADMIN", 101, NULL, false, &l, &err), SB_INVALID_ARGUMENT, "%s", err.buf);

    /* replayed before the fix: still refused, the row stays with its reason, no new row */
    Sb__Runtime__ReplayDeadLetterResponse *r;
    cr_assert_eq(replay("USER", kafka_id, &r, &err), SB_PERMISSION_DENIED, "%s", err.buf);
    cr_assert_eq(replay("ADMIN", kafka_id, &r, &err), SB_FAILED_PRECONDITION);
    cr_assert(strstr(err.buf, "still cannot be handled") && strstr(err.buf, "is not known here"), "%s",
              err.buf);
    cr_assert_eq(sql_count("SELECT count(*) FROM sb_dead_letters", NULL), 2);
    cr_assert_eq(
        sql_count("SELECT replay_attempts FROM sb_dead_letters WHERE event_id = $1", from_kafka), 1);
    cr_assert_eq(sql_count("SELECT count(*) FROM sb_inbox", NULL), 0);

    /* the fix: the account arrives; each replay applies its event once */
    sql_run("INSERT INTO accounts VALUES ($1)", user);
    /* an admin says why: refused before anything runs without a reason */
    cr_assert_eq(replay_why("ADMIN", kafka_id, "", &r, &err), SB_INVALID_ARGUMENT, "%s", err.buf);
    cr_assert_eq(replay_why("ADMIN", kafka_id, " \t", &r, &err), SB_INVALID_ARGUMENT, "%s", err.buf);
    cr_assert(strstr(err.buf, "reason"), "%s", err.buf);
    cr_assert_eq(sql_count("SELECT count(*) FROM sb_inbox", NULL), 0);
    cr_assert_eq(
        sql_count("SELECT replay_attempts FROM sb_dead_letters WHERE event_id = $1", from_kafka), 1);
    const char *audits = "SELECT count(*) FROM sb_outbox WHERE type = 'audit.admin_action'";
    long long audits_before = sql_count(audits, NULL);
    cr_assert_eq(replay("ADMIN", kafka_id, &r, &err), SB_OK, "%s", err.buf);
    cr_assert_not(r->duplicate);
    cr_assert_neq(r->dead_letter->replayed_at[0], '\0');
    cr_assert_str_eq(r->dead_letter->replayed_by, ADMIN_ID);
    cr_assert_eq(sql_count("SELECT n FROM effects WHERE event_id = $1", from_kafka), 1);
    cr_assert_eq(sql_count("SELECT count(*) FROM sb_inbox WHERE event_id = $1::uuid", from_kafka), 1);

    /* again: the same answer, nothing applied */
    char *first_at = r->dead_letter->replayed_at;
    cr_assert_eq(replay("ADMIN", kafka_id, &r, &err), SB_OK, "%s", err.buf);
    cr_assert(r->duplicate);
    cr_assert_str_eq(r->dead_letter->replayed_at, first_at);
    cr_assert_eq(sql_count("SELECT n FROM effects WHERE event_id = $1", from_kafka), 1);

    cr_assert_eq(replay("ADMIN", delivered_id, &r, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(sql_count("SELECT count(*) FROM effects WHERE user_id = $1", user), 2);
    cr_assert_eq(sql_count("SELECT sum(n) FROM effects WHERE user_id = $1", user), 2);
    /* each applied replay left its audit record in the service's outbox,
     * with the effect; the repeated one (nothing applied) none */
    cr_assert_eq(sql_count(audits, NULL), audits_before + 2);

    /* nothing left to replay; unknown ids and other services are refused */
    cr_assert_eq(list("ADMIN", 0, NULL, true, &l, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(l->n_dead_letters, 0);
    cr_assert_eq(list("ADMIN", 0, NULL, false, &l, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(l->n_dead_letters, 2, "replayed rows are kept");
    cr_assert_eq(replay("ADMIN", 999999, &r, &err), SB_NOT_FOUND, "%s", err.buf);
    Sb__Runtime__ReplayDeadLetterRequest other = SB__RUNTIME__REPLAY_DEAD_LETTER_REQUEST__INIT;
    other.service_id = "payment";
    other.id = kafka_id;
    other.reason = "wrong service";
    sb_call_opts_t o = {.token = sb_test_token(arena, ADMIN_ID, "ADMIN")};
    cr_assert_eq(sb_rpc_call(ch, &sb__runtime__runtime__descriptor, "ReplayDeadLetter", &other.base,
                             arena, (ProtobufCMessage **)&r, &o, &err),
                 SB_INVALID_ARGUMENT, "%s", err.buf);

    /* the consumer moved on: a later event of the same partition is handled */
    char later[SB_UUID_LEN + 1];
    sb_uuid_v4(later);
    env = envelope(later, user, &len);
    cr_assert_eq(sb_producer_send(producer, topic, user, env, len, NULL, 10000, &err), SB_OK, "%s",
                 err.buf);
    for (int i = 0; i < 600 && !sql_count("SELECT count(*) FROM effects WHERE event_id = $1", later);
         i++)
        usleep(50000);
    cr_assert_eq(sql_count("SELECT n FROM effects WHERE event_id = $1", later), 1);
    sb_buf_release(&err);
}

struct racer {
    int64_t id;
    sb_status_t st;
    bool duplicate;
};

static void *race_replay(void *arg)
{
    struct racer *x = arg;
    sb_arena_t *a = sb_arena_new();
    sb_buf_t err = SB_BUF_INIT;
    Sb__Runtime__ReplayDeadLetterRequest req = SB__RUNTIME__REPLAY_DEAD_LETTER_REQUEST__INIT;
    req.service_id = "dltest";
    req.id = x->id;
    req.reason = "racing replays";
    sb_call_opts_t o = {.token = sb_test_token(a, ADMIN_ID, "ADMIN")};
    Sb__Runtime__ReplayDeadLetterResponse *r = NULL;
    x->st = sb_rpc_call(ch, &sb__runtime__runtime__descriptor, "ReplayDeadLetter", &req.base, a,
                        (ProtobufCMessage **)&r, &o, &err);
    x->duplicate = r && r->duplicate;
    sb_buf_release(&err);
    sb_arena_free(a);
    return NULL;
}

Test(dead_letters, replays_at_once_apply_the_event_once)
{
    char user[SB_UUID_LEN + 1], ev[SB_UUID_LEN + 1];
    sb_uuid_v4(user);
    sb_uuid_v4(ev);
    size_t len;
    uint8_t *env = envelope(ev, user, &len);
    sb_event_table_t table = {rows, 1, &svc};
    sb_inbox_result_t res = SB_INBOX_RESULT_INIT;
    cr_assert_eq(sb_inbox_handle(pool, &table, "DeliverEvent", NULL, env, len, &res),
                 SB_INVALID_ARGUMENT);
    sb_inbox_result_release(&res);
    int64_t id = sql_count("SELECT id FROM sb_dead_letters WHERE event_id = $1", ev);
    sql_run("INSERT INTO accounts VALUES ($1)", user);
    struct racer x[6];
    pthread_t th[6];
    for (int i = 0; i < 6; i++) {
        x[i] = (struct racer){.id = id};
        pthread_create(&th[i], NULL, race_replay, &x[i]);
    }
    int applied = 0;
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(x[i].st, SB_OK);
        applied += !x[i].duplicate;
    }
    cr_assert_eq(applied, 1, "one replay applies it, the others find it done");
    cr_assert_eq(sql_count("SELECT n FROM effects WHERE event_id = $1", ev), 1);
}

/* ------------------------------------------------------------ health */

/* The value of metric line `name` in the /metrics text; -1 when absent. */
static double metric(const char *name)
{
    sb_buf_t out = SB_BUF_INIT;
    sb_metrics_render(&out);
    double v = -1;
    char needle[256];
    snprintf(needle, sizeof needle, "\n%s ", name);
    const char *p = strstr(out.buf, needle);
    if (p)
        v = strtod(p + strlen(needle), NULL);
    sb_buf_release(&out);
    return v;
}

static sb_status_t add_outbox(sb_pg_conn_t *tx, void *arg, sb_buf_t *err)
{
    (void)arg;
    Sb__Events__NotificationSent p = SB__EVENTS__NOTIFICATION_SENT__INIT;
    p.user_id = "someone";
    return sb_outbox_add(tx, type, "agg", &p.base, NULL, err);
}

Test(dead_letters, gauges_and_readiness_while_kafka_is_unreachable)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_metrics_reset();
    /* a service whose broker is a closed port, and whose Redis is fine */
    sb_service_t down = {.def = &def, .pg = pool};
    sb_log_set_level(SB_LOG_ERROR + 1); /* librdkafka's complaints about the closed port */
    down.producer = sb_producer_new("127.0.0.1:1", &err);
    cr_assert_not_null(down.producer, "%s", err.buf);
    down.redis = sb_redis_new(sb_cfg_str("REDIS_URL", "redis://127.0.0.1:6379"), &err);
    cr_assert_not_null(down.redis, "%s", err.buf);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(sb_pg_tx(pool, SB_PG_READ_COMMITTED, add_outbox, NULL, &err), SB_OK, "%s", err.buf);
    sql_run("UPDATE sb_outbox SET occurred_at = now() - interval '90 seconds'", NULL);
    size_t len;
    char ev[SB_UUID_LEN + 1];
    sb_uuid_v4(ev);
    uint8_t *env = envelope(ev, "nobody", &len);
    sb_event_table_t table = {rows, 1, &down};
    sb_inbox_result_t res = SB_INBOX_RESULT_INIT;
    cr_assert_eq(sb_inbox_handle(pool, &table, "DeliverEvent", NULL, env, len, &res),
                 SB_INVALID_ARGUMENT);
    sb_inbox_result_release(&res);

    sb_health_t *health = sb_service_health_start(&down, 100);
    for (int i = 0;
         i < 300 && (metric("sb_kafka_broker_up") != 0 || metric("sb_outbox_unpublished") < 3); i++)
        usleep(50000);
    cr_assert_eq(metric("sb_kafka_broker_up"), 0);
    cr_assert_eq(metric("sb_outbox_unpublished"), 3);
    double age = metric("sb_outbox_oldest_unpublished_age_seconds");
    cr_assert(age >= 90 && age < 600, "age %g", age);
    cr_assert_eq(metric("sb_dead_letters"), 1);

    /* the backlog grows while the broker is away */
    cr_assert_eq(sb_pg_tx(pool, SB_PG_READ_COMMITTED, add_outbox, NULL, &err), SB_OK, "%s", err.buf);
    for (int i = 0; i < 300 && metric("sb_outbox_unpublished") < 4; i++)
        usleep(50000);
    cr_assert_eq(metric("sb_outbox_unpublished"), 4);

    /* ready: Kafka is named down but optional */
    sb_buf_t body = SB_BUF_INIT;
    cr_assert_eq(sb_ready_render(sb_service_ready, &down, &body), 200, "%s", body.buf);
    cr_assert(strstr(body.buf, "\"ready\":true"), "%s", body.buf);
    cr_assert(strstr(body.buf, "\"postgres\":\"ok\""), "%s", body.buf);
    cr_assert(strstr(body.buf, "\"redis\":\"ok\""), "%s", body.buf);
    cr_assert(strstr(body.buf, "\"kafka\":\"down: "), "%s", body.buf);
    cr_assert(strstr(body.buf, "\"optional\":[\"kafka\"]"), "%s", body.buf);
    sb_service_health_stop(health);

    /* Redis away (a closed port): unready, and the answer says which */
    sb_redis_free(down.redis);
    down.redis = sb_redis_new("redis://127.0.0.1:1", &err);
    cr_assert_not_null(down.redis, "%s", err.buf);
    sb_buf_reset(&body);
    cr_assert_eq(sb_ready_render(sb_service_ready, &down, &body), 503, "%s", body.buf);
    cr_assert(strstr(body.buf, "\"ready\":false"), "%s", body.buf);
    cr_assert(strstr(body.buf, "\"redis\":\"down: "), "%s", body.buf);
    cr_assert(strstr(body.buf, "\"postgres\":\"ok\""), "%s", body.buf);

    /* the real broker: up */
    sb_producer_free(down.producer);
    down.producer = producer;
    sb_redis_free(down.redis);
    down.redis = NULL;
    health = sb_service_health_start(&down, 100);
    for (int i = 0; i < 300 && metric("sb_kafka_broker_up") != 1; i++)
        usleep(50000);
    cr_assert_eq(metric("sb_kafka_broker_up"), 1);
    sb_service_health_stop(health);
    sb_buf_release(&body);
    sb_buf_release(&err);
}

Test(dead_letters, consumer_lag_counts_what_is_not_handled_yet)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_metrics_reset();
    char user[SB_UUID_LEN + 1];
    sb_uuid_v4(user);
    sql_run("INSERT INTO accounts VALUES ($1)", user);
    atomic_store(&hold_handler, 1);
    char group[96];
    snprintf(group, sizeof group, "test-lag-%s", topic);
    sb_event_table_t table = {rows, 1, &svc};
    svc.consumer = sb_consumer_start(test_brokers(), group, pool, &table, &err);
    cr_assert_not_null(svc.consumer, "%s", err.buf);
    /* one key: one partition; the first event holds the handler */
    for (int i = 0; i < 5; i++) {
        char ev[SB_UUID_LEN + 1];
        sb_uuid_v4(ev);
        size_t len;
        uint8_t *env = envelope(ev, user, &len);
        cr_assert_eq(sb_producer_send(producer, topic, user, env, len, NULL, 10000, &err), SB_OK, "%s",
                     err.buf);
    }
    sb_health_t *health = sb_service_health_start(&svc, 100);
    /* the partition holding the five: lag 4 once the first is taken (in hand), 5 before */
    double total = -1;
    for (int i = 0; i < 600; i++) {
        sb_buf_t out = SB_BUF_INIT;
        sb_metrics_render(&out);
        total = 0;
        bool any = false;
        for (const char *p = strstr(out.buf, "\nsb_consumer_lag{"); p;
             p = strstr(p + 1, "\nsb_consumer_lag{")) {
            total += strtod(strchr(p, '}') + 2, NULL);
            any = true;
        }
        sb_buf_release(&out);
        if (any && total >= 4)
            break;
        usleep(50000);
    }
    cr_assert(total == 4 || total == 5, "lag %g", total);
    atomic_store(&hold_handler, 0);
    for (int i = 0; i < 600 && sql_count("SELECT count(*) FROM effects WHERE user_id = $1", user) < 5;
         i++)
        usleep(50000);
    cr_assert_eq(sql_count("SELECT count(*) FROM effects WHERE user_id = $1", user), 5);
    for (int i = 0; i < 600; i++) {
        sb_buf_t out = SB_BUF_INIT;
        sb_metrics_render(&out);
        total = 0;
        for (const char *p = strstr(out.buf, "\nsb_consumer_lag{"); p;
             p = strstr(p + 1, "\nsb_consumer_lag{"))
            total += strtod(strchr(p, '}') + 2, NULL);
        sb_buf_release(&out);
        if (total == 0)
            break;
        usleep(50000);
    }
    cr_assert_eq(total, 0, "lag after the handler caught up");
    sb_service_health_stop(health);
    sb_buf_release(&err);
}

/* PostgreSQL module against the real server: migrations are idempotent and
 * atomic, the transaction helper retries serialization failures, the pool
 * hands out connections under contention, and survives its backends being
 * terminated (what a database restart does to every pooled connection): the
 * calls after it succeed, a connection lost inside a transaction that did
 * work is reported as UNAVAILABLE and the pool recovers.
 *
 * The shared server is never restarted (other tests use it): the pool's
 * backends are terminated with pg_terminate_backend from another session. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sb/log.h"
#include "sb/pg.h"
#include "sb_test_env.h"

#define DB "sb_test_pg"
#define POOL 4

static sb_pg_pool_t *pool;

static void setup(void)
{
    sb_log_init("test-pg");
    sb_log_set_level(SB_LOG_ERROR);
    cr_assert_eq(test_fresh_db(DB), 0, "cannot create database " DB " at %s", test_db_url());
    sb_buf_t err = SB_BUF_INIT;
    pool = sb_pg_pool_new(test_db_url(), DB, POOL, &err);
    cr_assert_not_null(pool, "%s", err.buf);
    sb_buf_release(&err);
}

static void teardown(void)
{
    sb_pg_pool_free(pool);
}

static PGresult *q(const char *sql)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_pg_conn_t *c = sb_pg_acquire(pool, 1000, &err);
    cr_assert_not_null(c, "%s", err.buf);
    PGresult *r = sb_pg_exec_sql(c, sql);
    sb_pg_release(pool, c);
    sb_buf_release(&err);
    return r;
}

static const sb_migration_t v2[] = {
    {1, "seats", "CREATE TABLE seats (id int PRIMARY KEY, grade text NOT NULL)"},
    {2, "seed", "INSERT INTO seats VALUES (1, 'VIP'), (2, 'R')"},
};

TestSuite(pg, .init = setup, .fini = teardown, .timeout = 60);

Test(pg, migrations_apply_once_and_are_idempotent)
{
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(sb_pg_migrate(pool, "t", v2, 2, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(sb_pg_migrate(pool, "t", v2, 2, &err), SB_OK, "second run: %s", err.buf);
    PGresult *r = q("SELECT count(*) FROM seats");
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "2", "the seed ran once");
    PQclear(r);
    r = q("SELECT count(*) FROM sb_schema_migrations WHERE component='t'");
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "2");
    PQclear(r);

    /* a new version applies alone */
    sb_migration_t v3[3] = {v2[0], v2[1], {3, "more", "INSERT INTO seats VALUES (3, 'S')"}};
    cr_assert_eq(sb_pg_migrate(pool, "t", v3, 3, &err), SB_OK, "%s", err.buf);
    r = q("SELECT count(*) FROM seats");
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "3");
    PQclear(r);
    sb_buf_release(&err);
}

Test(pg, failing_migration_rolls_back_whole)
{
    sb_buf_t err = SB_BUF_INIT;
    const sb_migration_t bad[] = {
        v2[0],
        {2, "half", "INSERT INTO seats VALUES (9, 'X'); INSERT INTO nowhere VALUES (1)"},
    };
    cr_assert_neq(sb_pg_migrate(pool, "t", bad, 2, &err), SB_OK);
    cr_assert(strstr(err.buf, "nowhere") != NULL, "error names the problem: %s", err.buf);
    PGresult *r = q("SELECT count(*) FROM seats");
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "0", "the half-applied migration left nothing");
    PQclear(r);
    r = q("SELECT max(version) FROM sb_schema_migrations WHERE component='t'");
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
    sb_buf_release(&err);
}

Test(pg, sqlstate_maps_to_status)
{
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(sb_pg_migrate(pool, "t", v2, 2, &err), SB_OK, "%s", err.buf);
    sb_pg_conn_t *c = sb_pg_acquire(pool, 1000, &err);
    static const sb_pg_stmt_t ins = {"ins", "INSERT INTO seats VALUES ($1::int, $2)"};
    PGresult *r = sb_pg_exec(c, &ins, 2, (const char *const[]){"1", "VIP"});
    cr_assert_eq(sb_pg_check(c, r, &err), SB_ALREADY_EXISTS);
    cr_assert_str_eq(sb_pg_last_sqlstate(c), "23505");
    PQclear(r);
    r = sb_pg_exec(c, &ins, 2, (const char *const[]){"x", "VIP"});
    cr_assert_eq(sb_pg_check(c, r, &err), SB_INVALID_ARGUMENT);
    PQclear(r);
    r = sb_pg_exec(c, &ins, 2, (const char *const[]){"7", NULL});
    cr_assert_eq(sb_pg_check(c, r, &err), SB_FAILED_PRECONDITION, "not null violation");
    PQclear(r);
    sb_pg_release(pool, c);
    sb_buf_release(&err);
}

/* Read-modify-write under SERIALIZABLE from several threads: conflicts are
 * retried by sb_pg_tx, so no increment is lost. */
static sb_status_t increment(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    static const sb_pg_stmt_t get = {"get", "SELECT n FROM counter WHERE id = 1"};
    static const sb_pg_stmt_t set = {"set", "UPDATE counter SET n = $1::int WHERE id = 1"};
    PGresult *r = sb_pg_exec(c, &get, 0, NULL);
    sb_status_t st = sb_pg_check(c, r, err);
    if (st != SB_OK) {
        PQclear(r);
        return st;
    }
    char next[16];
    snprintf(next, sizeof next, "%d", atoi(PQgetvalue(r, 0, 0)) + 1);
    PQclear(r);
    r = sb_pg_exec(c, &set, 1, (const char *const[]){next});
    st = sb_pg_check(c, r, err);
    PQclear(r);
    return st;
}

static void *worker(void *arg)
{
    int *failures = arg;
    for (int i = 0; i < 25; i++) {
        sb_buf_t err = SB_BUF_INIT;
        if (sb_pg_tx(pool, SB_PG_SERIALIZABLE, increment, NULL, &err) != SB_OK)
            (*failures)++;
        sb_buf_release(&err);
    }
    return NULL;
}

Test(pg, serializable_conflicts_are_retried)
{
    PQclear(q(
        "CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL); INSERT INTO counter VALUES (1, 0)"));
    pthread_t t[4];
    int failures[4] = {0};
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, worker, &failures[i]);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    int failed = failures[0] + failures[1] + failures[2] + failures[3];
    PGresult *r = q("SELECT n FROM counter WHERE id = 1");
    cr_assert_eq(atoi(PQgetvalue(r, 0, 0)), 100 - failed, "no lost update");
    cr_assert_leq(failed, 5, "retries absorb nearly all conflicts (%d gave up)", failed);
    PQclear(r);
}

/* ---- lost connections ---- */

/* Terminates every backend of DB (the pool's connections) from a session of
 * its own and waits until they are gone. Returns how many were terminated. */
static int kill_backends(void)
{
    const char *keys[] = {"dbname", NULL};
    const char *vals[] = {test_db_url(), NULL};
    PGconn *k = PQconnectdbParams(keys, vals, 1);
    cr_assert_eq(PQstatus(k), CONNECTION_OK, "%s", PQerrorMessage(k));
    PGresult *r =
        PQexec(k, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                  " WHERE datname = '" DB "' AND pid <> pg_backend_pid()");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(k));
    int killed = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    for (int i = 0; i < 500; i++) {
        r = PQexec(k, "SELECT count(*) FROM pg_stat_activity WHERE datname = '" DB "'");
        int left = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (left == 0)
            break;
        usleep(10000);
    }
    PQfinish(k);
    return killed;
}

static const sb_pg_stmt_t add_row = {"add_row", "INSERT INTO kills(tag) VALUES ($1)"};

static long count_rows(const char *tag)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM kills WHERE tag = '%s'", tag);
    PGresult *r = q(sql);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    long n = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

/* Every pooled connection has run (and so prepared) add_row. */
static void warm_all(void)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_pg_conn_t *c[POOL];
    for (int i = 0; i < POOL; i++) {
        c[i] = sb_pg_acquire(pool, 1000, &err);
        cr_assert_not_null(c[i], "%s", err.buf);
        PGresult *r = sb_pg_exec(c[i], &add_row, 1, (const char *const[]){"warm"});
        cr_assert_eq(sb_pg_check(c[i], r, &err), SB_OK, "%s", err.buf);
        PQclear(r);
    }
    for (int i = 0; i < POOL; i++)
        sb_pg_release(pool, c[i]);
    sb_buf_release(&err);
}

static void kills_table(void)
{
    PQclear(q("CREATE TABLE kills (id serial PRIMARY KEY, tag text NOT NULL)"));
}

Test(pg, autocommit_calls_after_backends_are_killed_all_succeed)
{
    kills_table();
    warm_all();
    cr_assert_eq(kill_backends(), POOL);
    /* POOL calls holding every connection at once, then one more */
    sb_buf_t err = SB_BUF_INIT;
    sb_pg_conn_t *c[POOL];
    int failed = 0;
    for (int i = 0; i < POOL; i++) {
        c[i] = sb_pg_acquire(pool, 1000, &err);
        cr_assert_not_null(c[i], "%s", err.buf);
        PGresult *r = sb_pg_exec(c[i], &add_row, 1, (const char *const[]){"after"});
        if (sb_pg_check(c[i], r, &err) != SB_OK)
            failed++;
        PQclear(r);
    }
    for (int i = 0; i < POOL; i++)
        sb_pg_release(pool, c[i]);
    sb_pg_conn_t *one = sb_pg_acquire(pool, 1000, &err);
    cr_assert_not_null(one, "%s", err.buf);
    PGresult *r = sb_pg_exec(one, &add_row, 1, (const char *const[]){"after"});
    if (sb_pg_check(one, r, &err) != SB_OK)
        failed++;
    PQclear(r);
    sb_pg_release(pool, one);
    cr_assert_eq(failed, 0, "%d of %d calls failed after the kill: %s", failed, POOL + 1, err.buf);
    cr_assert_eq(count_rows("after"), POOL + 1, "each call ran exactly once");
    sb_buf_release(&err);
}

/* Lost between acquire and the statement (the check on acquire saw it
 * alive): the autocommit statement runs once more on a new session, where
 * its statement is prepared again. */
Test(pg, autocommit_statement_on_a_connection_lost_while_held_is_retried_once)
{
    kills_table();
    warm_all();
    sb_buf_t err = SB_BUF_INIT;
    sb_pg_conn_t *c = sb_pg_acquire(pool, 1000, &err);
    cr_assert_not_null(c, "%s", err.buf);
    cr_assert_geq(kill_backends(), 1);
    PGresult *r = sb_pg_exec(c, &add_row, 1, (const char *const[]){"held"});
    cr_assert_eq(sb_pg_check(c, r, &err), SB_OK, "%s", err.buf);
    PQclear(r);
    sb_pg_release(pool, c);
    cr_assert_eq(count_rows("held"), 1, "ran exactly once");
    sb_buf_release(&err);
}

/* POOL transactions that hold their connections at the same time (each
 * waits, after its first statement, until all have got that far), so that
 * every pooled connection is used once. */
static pthread_mutex_t gather_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gather_cv = PTHREAD_COND_INITIALIZER;
static int gathered;

static sb_status_t insert_and_gather(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    (void)arg;
    PGresult *r = sb_pg_exec(c, &add_row, 1, (const char *const[]){"tx"});
    sb_status_t st = sb_pg_check(c, r, err);
    PQclear(r);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 3;
    pthread_mutex_lock(&gather_mu);
    gathered++;
    pthread_cond_broadcast(&gather_cv);
    while (gathered < POOL)
        if (pthread_cond_timedwait(&gather_cv, &gather_mu, &until) != 0)
            break;
    pthread_mutex_unlock(&gather_mu);
    return st;
}

static void *tx_worker(void *arg)
{
    sb_buf_t err = SB_BUF_INIT;
    *(sb_status_t *)arg = sb_pg_tx(pool, SB_PG_READ_COMMITTED, insert_and_gather, NULL, &err);
    if (*(sb_status_t *)arg != SB_OK)
        cr_log_error("transaction failed: %s", err.buf);
    sb_buf_release(&err);
    return NULL;
}

Test(pg, transactions_after_backends_are_killed_all_succeed)
{
    kills_table();
    warm_all();
    cr_assert_eq(kill_backends(), POOL);
    pthread_t t[POOL];
    sb_status_t st[POOL + 1];
    gathered = 0;
    for (int i = 0; i < POOL; i++)
        pthread_create(&t[i], NULL, tx_worker, &st[i]);
    for (int i = 0; i < POOL; i++)
        pthread_join(t[i], NULL);
    gathered = POOL; /* the last one does not wait */
    tx_worker(&st[POOL]);
    int failed = 0;
    for (int i = 0; i <= POOL; i++)
        failed += st[i] != SB_OK;
    cr_assert_eq(failed, 0, "%d of %d transactions failed after the kill", failed, POOL + 1);
    cr_assert_eq(count_rows("tx"), POOL + 1, "each transaction committed exactly once");
}

/* Killed between BEGIN and the transaction's first statement: nothing of the
 * transaction is lost, so the pool replays it on a new connection. */
static sb_status_t kill_then_insert(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    int *calls = arg;
    if ((*calls)++ == 0)
        kill_backends();
    PGresult *r = sb_pg_exec(c, &add_row, 1, (const char *const[]){"first"});
    sb_status_t st = sb_pg_check(c, r, err);
    PQclear(r);
    return st;
}

Test(pg, connection_lost_before_the_first_statement_is_replayed)
{
    kills_table();
    warm_all();
    int calls = 0;
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(sb_pg_tx(pool, SB_PG_READ_COMMITTED, kill_then_insert, &calls, &err), SB_OK, "%s",
                 err.buf);
    cr_assert_eq(count_rows("first"), 1);
    sb_buf_release(&err);
}

/* Killed after the transaction did work: that work is gone with the
 * connection, so the statement is not retried; the caller gets UNAVAILABLE
 * and the next call gets a working connection. */
static sb_status_t insert_kill_insert(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    int *calls = arg;
    (*calls)++;
    PGresult *r = sb_pg_exec(c, &add_row, 1, (const char *const[]){"mid"});
    sb_status_t st = sb_pg_check(c, r, err);
    PQclear(r);
    if (st != SB_OK)
        return st;
    kill_backends();
    r = sb_pg_exec(c, &add_row, 1, (const char *const[]){"mid"});
    st = sb_pg_check(c, r, err);
    PQclear(r);
    return st;
}

static sb_status_t insert_one(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    PGresult *r = sb_pg_exec(c, &add_row, 1, (const char *const[]){(const char *)arg});
    sb_status_t st = sb_pg_check(c, r, err);
    PQclear(r);
    return st;
}

Test(pg, connection_lost_inside_a_transaction_is_unavailable_and_the_pool_recovers)
{
    kills_table();
    warm_all();
    int calls = 0;
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(sb_pg_tx(pool, SB_PG_READ_COMMITTED, insert_kill_insert, &calls, &err), SB_UNAVAILABLE,
                 "%s", err.buf);
    cr_assert_eq(calls, 1, "a transaction that did work is not replayed behind the caller");
    cr_assert_eq(count_rows("mid"), 0, "the lost transaction left nothing");
    sb_buf_reset(&err);
    for (int i = 0; i < POOL + 1; i++)
        cr_assert_eq(sb_pg_tx(pool, SB_PG_READ_COMMITTED, insert_one, "next", &err), SB_OK,
                     "call %d after the loss: %s", i, err.buf);
    cr_assert_eq(count_rows("next"), POOL + 1);
    sb_buf_release(&err);
}

/* PostgreSQL module against the real server: migrations are idempotent and
 * atomic, the transaction helper retries serialization failures, the pool
 * hands out connections under contention. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "sb/log.h"
#include "sb/pg.h"
#include "sb_test_env.h"

#define DB "sb_test_pg"

static sb_pg_pool_t *pool;

static void setup(void)
{
    sb_log_init("test-pg");
    sb_log_set_level(SB_LOG_ERROR);
    cr_assert_eq(test_fresh_db(DB), 0, "cannot create database " DB " at %s", test_db_url());
    sb_buf_t err = SB_BUF_INIT;
    pool = sb_pg_pool_new(test_db_url(), DB, 4, &err);
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
    PQclear(q("CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL); INSERT INTO counter VALUES (1, 0)"));
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

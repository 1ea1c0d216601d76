#include "sb/pg.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sb/alloc.h"
#include "sb/locks.h"
#include "sb/log.h"
#include "sb/util.h"

#define MAX_PREPARED 128

struct sb_pg_conn {
    PGconn *conn;
    const sb_pg_stmt_t *prepared[MAX_PREPARED]; /* statements prepared on this connection */
    size_t n_prepared;
    char sqlstate[6];
    bool in_use;
};

struct sb_pg_pool {
    char *url, *dbname;
    struct sb_pg_conn *conns;
    int size;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static PGconn *connect_db(const char *url, const char *dbname, sb_buf_t *err)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", "options", "dbname", NULL};
    const char *vals[] = {url, "5", "showbook", "-c client_min_messages=warning", dbname, NULL};
    if (!dbname)
        keys[4] = NULL; /* keep the URL's own database */
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        sb_buf_addf(err, "cannot connect to PostgreSQL database %s: %s", dbname ? dbname : "(url)",
                    PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

sb_status_t sb_pg_ensure_database(const char *url, const char *dbname, sb_buf_t *err)
{
    PGconn *c = connect_db(url, NULL, err);
    if (!c)
        return SB_UNAVAILABLE;
    sb_status_t st = SB_OK;
    const char *params[] = {dbname};
    /* Replicas starting at once against an empty server would race on
     * CREATE DATABASE (the loser gets 23505 on pg_database_datname_index, not
     * 42P04). A session-level advisory lock on the maintenance database
     * serialises check-and-create; PQfinish releases it. */
    PGresult *lk = PQexecParams(c, "SELECT pg_advisory_lock(" SB_LOCK_CREATE_DATABASE("$1") ")", 1,
                                NULL, params, NULL, NULL, 0);
    if (PQresultStatus(lk) != PGRES_TUPLES_OK) {
        sb_buf_addf(err, "cannot lock database creation: %s", PQerrorMessage(c));
        PQclear(lk);
        PQfinish(c);
        return SB_UNAVAILABLE;
    }
    PQclear(lk);
    PGresult *r = PQexecParams(c, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL, params,
                               NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        sb_buf_addf(err, "cannot list databases: %s", PQerrorMessage(c));
        st = SB_UNAVAILABLE;
    } else if (PQntuples(r) == 0) {
        char *ident = PQescapeIdentifier(c, dbname, strlen(dbname));
        sb_buf_t sql = SB_BUF_INIT;
        sb_buf_addf(&sql, "CREATE DATABASE %s", ident);
        PQfreemem(ident);
        PGresult *cr = PQexec(c, sql.buf);
        /* 42P04 / 23505: created concurrently by a process that does not
         * take the lock (an older build): fine */
        const char *state = PQresultErrorField(cr, PG_DIAG_SQLSTATE);
        if (PQresultStatus(cr) != PGRES_COMMAND_OK &&
            !(state && (!strcmp(state, "42P04") || !strcmp(state, "23505")))) {
            sb_buf_addf(err, "cannot create database %s: %s", dbname, PQerrorMessage(c));
            st = SB_UNAVAILABLE;
        } else {
            sb_info("created database %s", dbname);
        }
        PQclear(cr);
        sb_buf_release(&sql);
    }
    PQclear(r);
    PQfinish(c);
    return st;
}

sb_pg_pool_t *sb_pg_pool_new(const char *url, const char *dbname, int size, sb_buf_t *err)
{
    sb_pg_pool_t *p = sb_calloc(1, sizeof *p);
    p->url = sb_strdup(url);
    p->dbname = dbname ? sb_strdup(dbname) : NULL;
    p->size = size > 0 ? size : 4;
    p->conns = sb_calloc((size_t)p->size, sizeof *p->conns);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 0; i < p->size; i++) {
        p->conns[i].conn = connect_db(url, dbname, err);
        if (!p->conns[i].conn) {
            sb_pg_pool_free(p);
            return NULL;
        }
    }
    return p;
}

PGconn *sb_pg_pool_connect(sb_pg_pool_t *p, sb_buf_t *err)
{
    return connect_db(p->url, p->dbname, err);
}

sb_pg_conn_t *sb_pg_conn_new(sb_pg_pool_t *p, sb_buf_t *err)
{
    PGconn *conn = connect_db(p->url, p->dbname, err);
    if (!conn)
        return NULL;
    sb_pg_conn_t *c = sb_calloc(1, sizeof *c);
    c->conn = conn;
    c->in_use = true;
    return c;
}

void sb_pg_conn_free(sb_pg_conn_t *c)
{
    if (!c)
        return;
    PQfinish(c->conn);
    free(c);
}

void sb_pg_pool_free(sb_pg_pool_t *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->size; i++)
        if (p->conns[i].conn)
            PQfinish(p->conns[i].conn);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->conns);
    free(p->url);
    free(p->dbname);
    free(p);
}

sb_pg_conn_t *sb_pg_acquire(sb_pg_pool_t *p, int timeout_ms, sb_buf_t *err)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->mu);
    struct sb_pg_conn *c = NULL;
    for (;;) {
        for (int i = 0; i < p->size && !c; i++)
            if (!p->conns[i].in_use)
                c = &p->conns[i];
        if (c)
            break;
        if (pthread_cond_timedwait(&p->cv, &p->mu, &until) != 0) {
            pthread_mutex_unlock(&p->mu);
            sb_buf_addf(err, "no database connection free within %d ms", timeout_ms);
            sb_warn("%s", err->buf);
            return NULL;
        }
    }
    c->in_use = true;
    pthread_mutex_unlock(&p->mu);

    if (!c->conn || PQstatus(c->conn) != CONNECTION_OK) {
        sb_warn("database connection lost; reconnecting");
        if (c->conn)
            PQfinish(c->conn);
        c->n_prepared = 0;
        c->conn = connect_db(p->url, p->dbname, err);
        if (!c->conn) {
            sb_error("%s", err->buf);
            sb_pg_release(p, c);
            return NULL;
        }
    }
    c->sqlstate[0] = '\0';
    return c;
}

void sb_pg_release(sb_pg_pool_t *p, sb_pg_conn_t *c)
{
    /* A connection returned mid-transaction is rolled back so the next
     * borrower starts clean. */
    if (c->conn && PQtransactionStatus(c->conn) != PQTRANS_IDLE &&
        PQstatus(c->conn) == CONNECTION_OK) {
        PGresult *r = PQexec(c->conn, "ROLLBACK");
        PQclear(r);
    }
    pthread_mutex_lock(&p->mu);
    c->in_use = false;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

PGconn *sb_pg_raw(sb_pg_conn_t *c)
{
    return c->conn;
}

static bool is_prepared(sb_pg_conn_t *c, const sb_pg_stmt_t *s)
{
    for (size_t i = 0; i < c->n_prepared; i++)
        if (c->prepared[i] == s)
            return true;
    return false;
}

PGresult *sb_pg_exec_bin(sb_pg_conn_t *c, const sb_pg_stmt_t *stmt, int nparams,
                         const char *const *params, const int *lengths, const int *formats)
{
    if (!is_prepared(c, stmt)) {
        if (c->n_prepared == MAX_PREPARED) {
            /* beyond the cache: run unnamed */
            return PQexecParams(c->conn, stmt->sql, nparams, NULL, params, lengths, formats, 0);
        }
        PGresult *r = PQprepare(c->conn, stmt->name, stmt->sql, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            return r; /* the caller's sb_pg_check reports it */
        PQclear(r);
        c->prepared[c->n_prepared++] = stmt;
    }
    return PQexecPrepared(c->conn, stmt->name, nparams, params, lengths, formats, 0);
}

PGresult *sb_pg_exec(sb_pg_conn_t *c, const sb_pg_stmt_t *stmt, int nparams,
                     const char *const *params)
{
    return sb_pg_exec_bin(c, stmt, nparams, params, NULL, NULL);
}

PGresult *sb_pg_exec_sql(sb_pg_conn_t *c, const char *sql)
{
    return PQexec(c->conn, sql);
}

sb_status_t sb_pg_check(sb_pg_conn_t *c, const PGresult *r, sb_buf_t *err)
{
    ExecStatusType t = PQresultStatus(r);
    if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK)
        return SB_OK;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (!state)
        state = "";
    snprintf(c->sqlstate, sizeof c->sqlstate, "%s", state);
    const char *msg = PQresultErrorMessage(r);
    if (!msg || !*msg)
        msg = PQerrorMessage(c->conn);
    size_t mlen = strlen(msg);
    while (mlen && (msg[mlen - 1] == '\n' || msg[mlen - 1] == ' '))
        mlen--;
    sb_buf_add(err, msg, mlen);

    sb_status_t st = SB_INTERNAL;
    if (!strcmp(state, "23505"))
        st = SB_ALREADY_EXISTS;
    else if (!strncmp(state, "23", 2))
        st = SB_FAILED_PRECONDITION;
    else if (!strcmp(state, "40001") || !strcmp(state, "40P01"))
        st = SB_ABORTED;
    else if (!strcmp(state, "57014"))
        st = SB_DEADLINE_EXCEEDED;
    else if (!strncmp(state, "08", 2) || PQstatus(c->conn) != CONNECTION_OK)
        st = SB_UNAVAILABLE;
    else if (!strcmp(state, "22P02") || !strncmp(state, "22", 2))
        st = SB_INVALID_ARGUMENT;
    sb_log(st == SB_INTERNAL || st == SB_UNAVAILABLE ? SB_LOG_ERROR : SB_LOG_DEBUG,
           "sql failed (%s): %.*s", state, (int)mlen, msg);
    return st;
}

const char *sb_pg_last_sqlstate(const sb_pg_conn_t *c)
{
    return c->sqlstate;
}

static bool retryable(const sb_pg_conn_t *c)
{
    return !strcmp(c->sqlstate, "40001") || !strcmp(c->sqlstate, "40P01");
}

static sb_status_t simple(sb_pg_conn_t *c, const char *sql, sb_buf_t *err)
{
    PGresult *r = PQexec(c->conn, sql);
    sb_status_t st = sb_pg_check(c, r, err);
    PQclear(r);
    return st;
}

sb_status_t sb_pg_tx(sb_pg_pool_t *p, sb_pg_isolation_t iso, sb_pg_tx_fn fn, void *arg,
                     sb_buf_t *err)
{
    static const char *const begin[] = {
        "BEGIN ISOLATION LEVEL READ COMMITTED",
        "BEGIN ISOLATION LEVEL REPEATABLE READ",
        "BEGIN ISOLATION LEVEL SERIALIZABLE",
    };
    sb_status_t st = SB_INTERNAL;
    for (int attempt = 0; attempt < 10; attempt++) {
        size_t err_mark = err->len;
        sb_pg_conn_t *c = sb_pg_acquire(p, 5000, err);
        if (!c)
            return SB_UNAVAILABLE;
        st = simple(c, begin[iso], err);
        if (st == SB_OK)
            st = fn(c, arg, err);
        if (st == SB_OK)
            st = simple(c, "COMMIT", err);
        else
            PQclear(PQexec(c->conn, "ROLLBACK"));
        bool again = st == SB_ABORTED && retryable(c);
        sb_pg_release(p, c);
        if (!again)
            return st;
        sb_debug("transaction conflict (attempt %d); retrying", attempt + 1);
        err->len = err_mark;
        err->buf[err->len] = '\0';
        unsigned r;
        sb_random_bytes(&r, sizeof r);
        unsigned base = attempt < 6 ? 1000u << attempt : 50000u;
        usleep((useconds_t)(base + r % (base + 1000u)));
    }
    return st;
}

sb_status_t sb_pg_migrate(sb_pg_pool_t *p, const char *component, const sb_migration_t *m,
                          size_t n, sb_buf_t *err)
{
    static const char *const ddl =
        "CREATE TABLE IF NOT EXISTS sb_schema_migrations ("
        " component text NOT NULL, version int NOT NULL, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))";
    sb_pg_conn_t *c = sb_pg_acquire(p, 10000, err);
    if (!c)
        return SB_UNAVAILABLE;
    sb_status_t st;
    /* The advisory lock serialises migrators of this database (replicas
     * starting together); CREATE TABLE IF NOT EXISTS alone can race. */
    if ((st = simple(c, "SELECT pg_advisory_lock(" SB_LOCK_MIGRATE ")", err)) != SB_OK)
        goto out_release;
    if ((st = simple(c, ddl, err)) != SB_OK)
        goto out_unlock;
    for (size_t i = 0; i < n; i++) {
        char ver[16];
        snprintf(ver, sizeof ver, "%d", m[i].version);
        const char *params[] = {component, ver, m[i].name};
        PGresult *r = PQexecParams(c->conn,
                                   "SELECT 1 FROM sb_schema_migrations WHERE component=$1 AND version=$2::int",
                                   2, NULL, params, NULL, NULL, 0);
        st = sb_pg_check(c, r, err);
        bool applied = st == SB_OK && PQntuples(r) > 0;
        PQclear(r);
        if (st != SB_OK)
            goto out_unlock;
        if (applied)
            continue;
        if ((st = simple(c, "BEGIN", err)) != SB_OK)
            goto out_unlock;
        if ((st = simple(c, m[i].sql, err)) == SB_OK) {
            r = PQexecParams(c->conn,
                             "INSERT INTO sb_schema_migrations(component, version, name) VALUES ($1, $2::int, $3)",
                             3, NULL, params, NULL, NULL, 0);
            st = sb_pg_check(c, r, err);
            PQclear(r);
        }
        if (st == SB_OK)
            st = simple(c, "COMMIT", err);
        if (st != SB_OK) {
            PQclear(PQexec(c->conn, "ROLLBACK"));
            sb_error("migration %s/%04d_%s failed: %s", component, m[i].version, m[i].name, err->buf);
            goto out_unlock;
        }
        sb_info("applied migration %s/%04d_%s", component, m[i].version, m[i].name);
    }
out_unlock:
    PQclear(PQexec(c->conn, "SELECT pg_advisory_unlock(" SB_LOCK_MIGRATE ")"));
out_release:
    sb_pg_release(p, c);
    return st;
}

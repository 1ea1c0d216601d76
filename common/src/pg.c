/* PostgreSQL pool; see sb/pg.h.
 *
 * Lost connections. A database restart (or pg_terminate_backend) ends every
 * pooled session; libpq only notices when the connection is next used, so
 * without care each pooled connection fails one user request, seconds or
 * minutes after the database is back. Three layers make that cost nothing:
 *
 *  1. On acquire, input waiting on an idle connection is read: a backend
 *     that is terminated sends FATAL (57P01) and closes, which the notice
 *     receiver records and the read confirms. A connection idle for
 *     DB_IDLE_CHECK_MS or longer also gets a round trip (an empty query).
 *     Either failing, the connection is replaced before it is handed out.
 *  2. A statement that fails because the connection was lost (it went BAD,
 *     SQLSTATE 08xxx, 57P01-57P03) is run once more on a new connection when
 *     nothing the session did is lost with it: an autocommit statement (or
 *     the one that opens a transaction), or the first statement after the
 *     transaction's opener, replayed together with the opener. Each
 *     connection remembers the SQL that opened its transaction and how many
 *     statements ran since, for that.
 *  3. A connection lost inside a transaction that did work is not retried
 *     here (its work is gone): the statement reports UNAVAILABLE, and the
 *     connection is replaced at its next acquire.
 *
 * The retry of an autocommit statement assumes the server did not commit it:
 * true when the session was terminated before or during the statement (the
 * statement is rolled back); the window where the server commits and dies
 * before the reply reaches us is the one case a retry can repeat. */
#include "sb/pg.h"

#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sb/alloc.h"
#include "sb/config.h"
#include "sb/locks.h"
#include "sb/log.h"
#include "sb/util.h"

#define MAX_PREPARED 128
#define MAX_OPENER 256

struct sb_pg_conn {
    PGconn *conn;
    sb_pg_pool_t *pool;
    const sb_pg_stmt_t *prepared[MAX_PREPARED]; /* statements prepared on this connection */
    size_t n_prepared;
    char sqlstate[6];
    bool in_use;
    bool doomed;             /* the server sent FATAL: the session is ending */
    bool pinned;             /* this borrow depends on its session: never replay (sb_pg_pin) */
    int64_t idle_since_ns;   /* when it was last released */
    char opener[MAX_OPENER]; /* the SQL that opened the current transaction ("" if unknown) */
    int tx_stmts;            /* statements run in the transaction after its opener */
};

struct sb_pg_pool {
    char *url, *dbname;
    struct sb_pg_conn *conns;
    int size;
    int64_t idle_check_ns;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* Server messages outside a result (warnings, and the FATAL a backend sends
 * as it is terminated while idle) reach the log instead of stderr. */
static void on_notice(void *arg, const PGresult *r)
{
    struct sb_pg_conn *c = arg;
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorMessage(r);
    size_t mlen = strlen(msg);
    while (mlen && (msg[mlen - 1] == '\n' || msg[mlen - 1] == ' '))
        mlen--;
    if (sev && (!strcmp(sev, "FATAL") || !strcmp(sev, "PANIC"))) {
        if (c)
            c->doomed = true;
        sb_warn("database closes the connection: %.*s", (int)mlen, msg);
    } else {
        sb_log(sev && !strcmp(sev, "WARNING") ? SB_LOG_WARN : SB_LOG_DEBUG, "database: %.*s", (int)mlen,
               msg);
    }
}

/* A new session; `owner` (may be NULL) receives its notices. */
static PGconn *connect_db(const char *url, const char *dbname, struct sb_pg_conn *owner, sb_buf_t *err)
{
    /* TCP keepalives and a user timeout: a server that vanished without
     * closing (a host down, a partition) fails a round trip within about
     * 10 s instead of hanging it until the kernel gives up. */
    const char *keys[] = {"dbname",           "connect_timeout",
                          "application_name", "options",
                          "keepalives_idle",  "keepalives_interval",
                          "keepalives_count", "tcp_user_timeout",
                          "dbname",           NULL};
    const char *vals[] = {url,     "5",    "showbook", "-c client_min_messages=warning", "30", "10", "3",
                          "10000", dbname, NULL};
    if (!dbname)
        keys[8] = NULL; /* keep the URL's own database */
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        sb_buf_addf(err, "cannot connect to PostgreSQL database %s: %s", dbname ? dbname : "(url)",
                    PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeReceiver(c, on_notice, owner);
    return c;
}

sb_status_t sb_pg_ensure_database(const char *url, const char *dbname, sb_buf_t *err)
{
    PGconn *c = connect_db(url, NULL, NULL, err);
    if (!c)
        return SB_UNAVAILABLE;
    sb_status_t st = SB_OK;
    const char *params[] = {dbname};
    /* Replicas starting at once against an empty server would race on
     * CREATE DATABASE (the loser gets 23505 on pg_database_datname_index, not
     * 42P04). A session-level advisory lock on the maintenance database
     * serialises check-and-create; PQfinish releases it. */
    PGresult *lk = PQexecParams(c, "SELECT pg_advisory_lock(" SB_LOCK_CREATE_DATABASE("$1") ")", 1, NULL,
                                params, NULL, NULL, 0);
    if (PQresultStatus(lk) != PGRES_TUPLES_OK) {
        sb_buf_addf(err, "cannot lock database creation: %s", PQerrorMessage(c));
        PQclear(lk);
        PQfinish(c);
        return SB_UNAVAILABLE;
    }
    PQclear(lk);
    PGresult *r =
        PQexecParams(c, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL, params, NULL, NULL, 0);
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
    p->idle_check_ns = sb_cfg_int("DB_IDLE_CHECK_MS", 5000, 0, 3600000) * 1000000;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 0; i < p->size; i++) {
        p->conns[i].pool = p;
        p->conns[i].idle_since_ns = sb_mono_ns();
        p->conns[i].conn = connect_db(url, dbname, &p->conns[i], err);
        if (!p->conns[i].conn) {
            sb_pg_pool_free(p);
            return NULL;
        }
    }
    return p;
}

PGconn *sb_pg_pool_connect(sb_pg_pool_t *p, sb_buf_t *err)
{
    return connect_db(p->url, p->dbname, NULL, err);
}

sb_pg_conn_t *sb_pg_conn_new(sb_pg_pool_t *p, sb_buf_t *err)
{
    sb_pg_conn_t *c = sb_calloc(1, sizeof *c);
    c->conn = connect_db(p->url, p->dbname, c, err);
    if (!c->conn) {
        free(c);
        return NULL;
    }
    c->pool = p;
    c->in_use = true;
    /* its owner holds session state on it (session-level locks, LISTEN): a
     * lost session is reported, never replayed on a new one */
    c->pinned = true;
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

/* Replaces c's session with a new one; on failure c keeps the old (dead)
 * one and err says why. */
static bool reconnect(struct sb_pg_conn *c, sb_buf_t *err)
{
    PGconn *n = connect_db(c->pool->url, c->pool->dbname, c, err);
    if (!n)
        return false;
    if (c->conn)
        PQfinish(c->conn);
    c->conn = n;
    c->n_prepared = 0;
    c->doomed = false;
    c->opener[0] = '\0';
    c->tx_stmts = 0;
    return true;
}

/* Layer 1 (see the top): can this idle connection be handed out? */
static bool still_alive(struct sb_pg_conn *c)
{
    if (!c->conn || c->doomed || PQstatus(c->conn) != CONNECTION_OK)
        return false;
    /* An idle session has nothing to say unless it is being closed (FATAL,
     * then EOF) or a notification arrived: read what is there. */
    struct pollfd pfd = {.fd = PQsocket(c->conn), .events = POLLIN};
    if (poll(&pfd, 1, 0) > 0) {
        if (!PQconsumeInput(c->conn))
            return false;
        PGnotify *n;
        while ((n = PQnotifies(c->conn)))
            PQfreemem(n);
    }
    if (c->doomed || PQstatus(c->conn) != CONNECTION_OK)
        return false;
    if (sb_mono_ns() - c->idle_since_ns < c->pool->idle_check_ns)
        return true;
    PGresult *r = PQexec(c->conn, ";");
    bool ok = PQresultStatus(r) == PGRES_EMPTY_QUERY && !c->doomed;
    PQclear(r);
    return ok;
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

    if (!still_alive(c)) {
        if (c->conn)
            sb_warn("database connection lost; reconnecting");
        if (!reconnect(c, err)) {
            sb_error("%s", err->buf);
            if (c->conn)
                PQfinish(c->conn);
            c->conn = NULL; /* the next acquire tries again */
            sb_pg_release(p, c);
            return NULL;
        }
    }
    c->sqlstate[0] = '\0';
    c->pinned = false;
    return c;
}

void sb_pg_release(sb_pg_pool_t *p, sb_pg_conn_t *c)
{
    /* A connection returned mid-transaction is rolled back so the next
     * borrower starts clean. */
    if (c->conn && PQtransactionStatus(c->conn) != PQTRANS_IDLE && PQstatus(c->conn) == CONNECTION_OK) {
        PGresult *r = PQexec(c->conn, "ROLLBACK");
        PQclear(r);
    }
    c->opener[0] = '\0';
    c->tx_stmts = 0;
    c->idle_since_ns = sb_mono_ns();
    pthread_mutex_lock(&p->mu);
    c->in_use = false;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

PGconn *sb_pg_raw(sb_pg_conn_t *c)
{
    c->pinned = true; /* what runs on it is invisible to the replay */
    return c->conn;
}

void sb_pg_pin(sb_pg_conn_t *c)
{
    c->pinned = true;
}

static bool is_prepared(sb_pg_conn_t *c, const sb_pg_stmt_t *s)
{
    for (size_t i = 0; i < c->n_prepared; i++)
        if (c->prepared[i] == s)
            return true;
    return false;
}

/* One statement to run: a named statement (prepared on first use per
 * session) or plain SQL, with parameters. */
typedef struct call {
    const sb_pg_stmt_t *stmt;
    const char *sql; /* when stmt is NULL */
    int nparams;
    const char *const *params;
    const int *lengths, *formats;
} call_t;

static PGresult *run_once(sb_pg_conn_t *c, const call_t *k)
{
    if (!k->stmt) {
        if (k->nparams == 0)
            return PQexec(c->conn, k->sql);
        return PQexecParams(c->conn, k->sql, k->nparams, NULL, k->params, k->lengths, k->formats, 0);
    }
    const sb_pg_stmt_t *stmt = k->stmt;
    if (!is_prepared(c, stmt)) {
        if (c->n_prepared == MAX_PREPARED) {
            /* beyond the cache: run unnamed */
            return PQexecParams(c->conn, stmt->sql, k->nparams, NULL, k->params, k->lengths, k->formats,
                                0);
        }
        PGresult *r = PQprepare(c->conn, stmt->name, stmt->sql, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            return r; /* the caller's sb_pg_check reports it */
        PQclear(r);
        c->prepared[c->n_prepared++] = stmt;
    }
    return PQexecPrepared(c->conn, stmt->name, k->nparams, k->params, k->lengths, k->formats, 0);
}

static bool lost_state(const char *state)
{
    return state && (!strncmp(state, "08", 2) || !strcmp(state, "57P01") || !strcmp(state, "57P02") ||
                     !strcmp(state, "57P03"));
}

/* Did r fail because the session is gone? */
static bool connection_lost(const sb_pg_conn_t *c, const PGresult *r)
{
    ExecStatusType t = PQresultStatus(r);
    if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK || t == PGRES_EMPTY_QUERY)
        return false;
    return PQstatus(c->conn) != CONNECTION_OK || lost_state(PQresultErrorField(r, PG_DIAG_SQLSTATE));
}

/* Layer 2 (see the top): runs k, once more on a new session when the old
 * one was lost and nothing it did is lost with it; then keeps the
 * transaction bookkeeping. Never NULL. */
static PGresult *run(sb_pg_conn_t *c, const call_t *k)
{
    PGTransactionStatusType before = PQtransactionStatus(c->conn);
    bool replayable = !c->pinned && (before == PQTRANS_IDLE ||
                                     (before == PQTRANS_INTRANS && c->opener[0] && c->tx_stmts == 0));
    PGresult *r = run_once(c, k);
    if (replayable && connection_lost(c, r)) {
        const char *msg = PQresultErrorMessage(r);
        sb_warn("database connection lost (%.*s); retrying %s on a new connection",
                (int)strcspn(msg, "\n"), msg,
                before == PQTRANS_IDLE ? "the statement" : "the transaction's start");
        char opener[MAX_OPENER];
        memcpy(opener, c->opener, sizeof opener); /* reconnect forgets it */
        sb_buf_t err = SB_BUF_INIT;
        if (!reconnect(c, &err)) {
            sb_error("%s", err.buf); /* r, the original failure, is reported */
        } else if (before == PQTRANS_INTRANS) {
            PGresult *o = PQexec(c->conn, opener);
            if (PQresultStatus(o) != PGRES_COMMAND_OK ||
                PQtransactionStatus(c->conn) != PQTRANS_INTRANS) {
                PQclear(r);
                r = o;
            } else {
                PQclear(o);
                PQclear(r);
                memcpy(c->opener, opener, sizeof opener);
                r = run_once(c, k);
            }
        } else {
            PQclear(r);
            r = run_once(c, k);
        }
        sb_buf_release(&err);
    }
    if (!r)
        r = PQmakeEmptyPGresult(c->conn, PGRES_FATAL_ERROR);
    PGTransactionStatusType after = PQtransactionStatus(c->conn);
    if (after == PQTRANS_IDLE || after == PQTRANS_UNKNOWN) {
        c->opener[0] = '\0';
        c->tx_stmts = 0;
    } else if (before == PQTRANS_IDLE) {
        /* this statement opened the transaction: remember it for a replay
         * when it was only that (one plain BEGIN/START TRANSACTION, nothing
         * the caller could have read a result of); otherwise no replay */
        const char *sql = !k->stmt && k->nparams == 0 && !strcmp(PQcmdStatus(r), "BEGIN") ? k->sql : "";
        size_t n = strlen(sql);
        if (n >= sizeof c->opener || memchr(sql, ';', n))
            n = 0;
        memcpy(c->opener, sql, n);
        c->opener[n] = '\0';
        c->tx_stmts = 0;
    } else {
        c->tx_stmts++;
    }
    return r;
}

PGresult *sb_pg_exec_bin(sb_pg_conn_t *c, const sb_pg_stmt_t *stmt, int nparams,
                         const char *const *params, const int *lengths, const int *formats)
{
    call_t k = {
        .stmt = stmt, .nparams = nparams, .params = params, .lengths = lengths, .formats = formats};
    return run(c, &k);
}

PGresult *sb_pg_exec(sb_pg_conn_t *c, const sb_pg_stmt_t *stmt, int nparams, const char *const *params)
{
    return sb_pg_exec_bin(c, stmt, nparams, params, NULL, NULL);
}

PGresult *sb_pg_exec_sql(sb_pg_conn_t *c, const char *sql)
{
    call_t k = {.sql = sql};
    return run(c, &k);
}

static PGresult *exec_params(sb_pg_conn_t *c, const char *sql, int nparams, const char *const *params)
{
    call_t k = {.sql = sql, .nparams = nparams, .params = params};
    return run(c, &k);
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
    else if (lost_state(state) || PQstatus(c->conn) != CONNECTION_OK)
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
    PGresult *r = sb_pg_exec_sql(c, sql);
    sb_status_t st = sb_pg_check(c, r, err);
    PQclear(r);
    return st;
}

sb_status_t sb_pg_tx(sb_pg_pool_t *p, sb_pg_isolation_t iso, sb_pg_tx_fn fn, void *arg, sb_buf_t *err)
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
            PQclear(sb_pg_exec_sql(c, "ROLLBACK"));
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

sb_status_t sb_pg_migrate(sb_pg_pool_t *p, const char *component, const sb_migration_t *m, size_t n,
                          sb_buf_t *err)
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
    sb_pg_pin(c); /* the lock is the session's: a new session would not hold it */
    if ((st = simple(c, ddl, err)) != SB_OK)
        goto out_unlock;
    for (size_t i = 0; i < n; i++) {
        char ver[16];
        snprintf(ver, sizeof ver, "%d", m[i].version);
        const char *params[] = {component, ver, m[i].name};
        PGresult *r = exec_params(
            c, "SELECT 1 FROM sb_schema_migrations WHERE component=$1 AND version=$2::int", 2, params);
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
            r = exec_params(
                c, "INSERT INTO sb_schema_migrations(component, version, name) VALUES ($1, $2::int, $3)",
                3, params);
            st = sb_pg_check(c, r, err);
            PQclear(r);
        }
        if (st == SB_OK)
            st = simple(c, "COMMIT", err);
        if (st != SB_OK) {
            PQclear(sb_pg_exec_sql(c, "ROLLBACK"));
            sb_error("migration %s/%04d_%s failed: %s", component, m[i].version, m[i].name, err->buf);
            goto out_unlock;
        }
        sb_info("applied migration %s/%04d_%s", component, m[i].version, m[i].name);
    }
out_unlock:
    PQclear(sb_pg_exec_sql(c, "SELECT pg_advisory_unlock(" SB_LOCK_MIGRATE ")"));
out_release:
    sb_pg_release(p, c);
    return st;
}

/* PostgreSQL (libpq): a fixed-size connection pool, statements prepared once
 * per connection, a transaction helper that retries serialization failures
 * and deadlocks, and versioned migrations applied at start-up.
 *
 * Lost connections (a database restart, a terminated backend) cost no call
 * made after the database is back: a connection is checked before it is
 * handed out (a round trip when it sat idle DB_IDLE_CHECK_MS, default 5000),
 * and a statement whose connection turns out lost is run once more on a new
 * one when nothing of the session is lost with it (an autocommit statement,
 * or the first statement of a transaction, replayed with its BEGIN). Inside
 * a transaction that did work, it fails with UNAVAILABLE. */
#ifndef SB_PG_H
#define SB_PG_H
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "sb/buf.h"
#include "sb/status.h"

typedef struct sb_pg_pool sb_pg_pool_t;
typedef struct sb_pg_conn sb_pg_conn_t;

/* A statement: a stable unique name and its SQL with $1.. parameters.
 * Define them as static const objects; the pointer is their identity. */
typedef struct sb_pg_stmt {
    const char *name;
    const char *sql;
} sb_pg_stmt_t;

/* Opens `size` connections to `url` (a libpq URL/conninfo) with its database
 * replaced by `dbname` when non-NULL. NULL on failure with err set.
 * Caller frees with sb_pg_pool_free. */
sb_pg_pool_t *sb_pg_pool_new(const char *url, const char *dbname, int size, sb_buf_t *err);
void sb_pg_pool_free(sb_pg_pool_t *p);
/* A new connection outside the pool to the pool's database (LISTEN, long
 * waits). NULL with err on failure; caller frees with PQfinish. */
PGconn *sb_pg_pool_connect(sb_pg_pool_t *p, sb_buf_t *err);
/* A connection of its own to the pool's database, outside the pool, with the
 * same prepared-statement cache as a pooled one (jobs: LISTEN, session-level
 * locks held across network waits). NULL with err on failure; caller frees
 * with sb_pg_conn_free, which closes it (and so ends its session locks). */
sb_pg_conn_t *sb_pg_conn_new(sb_pg_pool_t *p, sb_buf_t *err);
void sb_pg_conn_free(sb_pg_conn_t *c);
/* Creates database `dbname` if it does not exist, connecting to `url`'s own database. */
sb_status_t sb_pg_ensure_database(const char *url, const char *dbname, sb_buf_t *err);

/* Borrows a connection, waiting up to timeout_ms. A connection the server
 * closed, or one idle for DB_IDLE_CHECK_MS that fails a round trip, is
 * replaced first. NULL (err set, UNAVAILABLE) on timeout or when reconnecting
 * fails. */
sb_pg_conn_t *sb_pg_acquire(sb_pg_pool_t *p, int timeout_ms, sb_buf_t *err);
void sb_pg_release(sb_pg_pool_t *p, sb_pg_conn_t *c);
/* The libpq session of c; borrowed, valid until the next sb_pg_exec* on c
 * (which may replace a lost session) or its release. Pins c (sb_pg_pin):
 * what runs on it directly is invisible to the replay. */
PGconn *sb_pg_raw(sb_pg_conn_t *c);
/* The rest of this borrow depends on its session (a session-level advisory
 * lock, SET without LOCAL, a temporary table): a lost connection is then
 * reported as UNAVAILABLE, never replayed on a new session. */
void sb_pg_pin(sb_pg_conn_t *c);

/* Executes stmt (preparing it on this connection the first time) with text
 * parameters (NULL entries are SQL NULL). Returns the result; caller frees
 * with PQclear. Never NULL. When the connection was lost and the statement
 * is safe to replay (see the top), it runs once more on a new session
 * (prepared again there) and that result is returned. */
PGresult *sb_pg_exec(sb_pg_conn_t *c, const sb_pg_stmt_t *stmt, int nparams, const char *const *params);
/* Same with explicit lengths and formats (1 = binary) per parameter. */
PGresult *sb_pg_exec_bin(sb_pg_conn_t *c, const sb_pg_stmt_t *stmt, int nparams,
                         const char *const *params, const int *lengths, const int *formats);
/* Plain SQL without parameters (DDL, BEGIN...). Caller PQclears. */
PGresult *sb_pg_exec_sql(sb_pg_conn_t *c, const char *sql);

/* OK for a command/tuples result; otherwise maps the SQLSTATE to a status
 * (23505 unique -> ALREADY_EXISTS, 23xxx -> FAILED_PRECONDITION, 40001/40P01 ->
 * ABORTED, 57014 -> DEADLINE_EXCEEDED, a lost connection (08xxx, 57P01-57P03,
 * or the session gone) -> UNAVAILABLE, else
 * INTERNAL), records it on c and appends the server message to err. */
sb_status_t sb_pg_check(sb_pg_conn_t *c, const PGresult *r, sb_buf_t *err);
/* The SQLSTATE of the last sb_pg_check failure on c ("" if none). */
const char *sb_pg_last_sqlstate(const sb_pg_conn_t *c);

typedef enum { SB_PG_READ_COMMITTED, SB_PG_REPEATABLE_READ, SB_PG_SERIALIZABLE } sb_pg_isolation_t;
typedef sb_status_t (*sb_pg_tx_fn)(sb_pg_conn_t *c, void *arg, sb_buf_t *err);

/* Runs fn inside BEGIN..COMMIT on a pooled connection. fn returning non-OK
 * rolls back. A serialization failure or deadlock (in fn or at COMMIT) is
 * retried up to 9 times with jittered backoff; err then holds only the last
 * attempt's message. A connection lost at BEGIN or at fn's first statement is
 * replayed by the pool (fn is not called again); lost after that, or at
 * COMMIT (whose outcome is then unknown), the result is UNAVAILABLE. */
sb_status_t sb_pg_tx(sb_pg_pool_t *p, sb_pg_isolation_t iso, sb_pg_tx_fn fn, void *arg, sb_buf_t *err);

/* One migration: applied once, in version order, each in its own
 * transaction, serialised across processes by an advisory lock. */
typedef struct sb_migration {
    int version;
    const char *name;
    const char *sql;
} sb_migration_t;

/* A service's migrations, generated from services/<name>/migrations/NNNN_what.sql
 * by cmake/embed_migrations.cmake as `const sb_migration_set_t sb_<name>_migrations`. */
typedef struct sb_migration_set {
    const sb_migration_t *items;
    size_t n;
} sb_migration_set_t;

/* Applies the not-yet-applied migrations of `component` (a namespace such as
 * "common" or "member") recorded in table sb_schema_migrations. */
sb_status_t sb_pg_migrate(sb_pg_pool_t *p, const char *component, const sb_migration_t *m, size_t n,
                          sb_buf_t *err);

#endif

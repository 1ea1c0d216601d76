/* Queries whose results belong to the unit of work's arena.
 *
 * A unit of work (an RPC call, an event, a job tick) carries an sb_db_t: the
 * connection it runs on (inside its transaction when the runtime opened one),
 * the arena that owns every result (PQclear runs when the arena is freed: no
 * caller ever calls it), and a detail buffer that only the log reads (SQL
 * text and server messages never reach a client).
 *
 *     PGresult *r;
 *     if ((st = sb_db_exec(db, &select_member, &r, id)) != SB_OK)
 *         return st;               // detail already in db->detail
 *     if (PQntuples(r) == 0) ...
 *
 * A unit of work may also be handed a pool instead of a connection (the RPC
 * runner does, sb/service.h): the connection is then borrowed at the first
 * statement, not before, so checks and slow work ahead of it (password
 * hashing, a call to another service) hold none. With `begin` set that first
 * statement opens the unit's transaction, which stays open on that
 * connection until sb_db_commit or sb_db_rollback; without it every
 * statement runs on its own (autocommit) and gives the connection back at
 * once. */
#ifndef SB_DB_H
#define SB_DB_H
#include <libpq-fe.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "sb/arena.h"
#include "sb/buf.h"
#include "sb/pg.h"
#include "sb/status.h"

typedef struct sb_db {
    sb_pg_conn_t *conn; /* borrowed for the unit of work; NULL while none is held */
    sb_arena_t *arena;  /* owns the results */
    sb_buf_t *detail;   /* internal detail for the log; never sent to a client */
    /* Set when the unit borrows its connection itself (conn starts NULL): */
    sb_pg_pool_t *pool;  /* where conn is borrowed from */
    const char *begin;   /* "BEGIN ..." the first statement opens a transaction
                            with; NULL: each statement on its own */
    int64_t deadline_ms; /* unix ms bounding the wait for a connection; 0: 5 s */
    /* Kept by the functions below: */
    bool conflict;  /* a statement failed with a serialization failure or deadlock */
    bool committed; /* sb_db_commit committed a transaction of this unit */
} sb_db_t;

/* Runs stmt with text parameters (NULL = SQL NULL). On OK, *out (when out is
 * not NULL) is the result, owned by db->arena. Otherwise the SQLSTATE mapped
 * to a status (see sb_pg_check) with the server message appended to
 * db->detail, and *out is NULL. */
sb_status_t sb_db_exec_v(sb_db_t *db, const sb_pg_stmt_t *stmt, PGresult **out, int n,
                         const char *const *params);
/* sb_db_exec(db, &stmt, &res, p1, p2, ...): the parameters as arguments. */
#define sb_db_exec(db, stmt, out, ...)                                                                  \
    sb_db_exec_v((db), (stmt), (out),                                                                   \
                 (int)(sizeof((const char *[]){NULL, ##__VA_ARGS__}) / sizeof(const char *)) - 1,       \
                 ((const char *[]){NULL, ##__VA_ARGS__}) + 1)
/* Plain SQL without parameters (DDL, SET LOCAL ...). */
sb_status_t sb_db_sql(sb_db_t *db, const char *sql, PGresult **out);

/* The connection of a db with a pool, borrowed (and its transaction opened)
 * now if no statement did yet: for APIs that take a connection
 * (sb_outbox_add). NULL with the status in *st on failure. */
sb_pg_conn_t *sb_db_conn(sb_db_t *db, sb_status_t *st);
/* A db on the same pool, arena and detail whose statements each run on
 * their own, outside db's transaction: a read ahead of slow work (a password
 * check, a call to another service) that the transaction re-checks after. */
sb_db_t sb_db_outside(const sb_db_t *db);
/* Commits the transaction a db with a pool opened and gives its connection
 * back; OK when none is open. A later statement opens a new one. A
 * transaction in which a statement failed is rolled back instead (ABORTED
 * after a conflict, INTERNAL otherwise). */
sb_status_t sb_db_commit(sb_db_t *db);
/* Rolls back what a db with a pool holds and gives its connection back. */
void sb_db_rollback(sb_db_t *db);

/* Row `row` of r into m by column name: a column named like a field of m
 * (its .proto name; alias a column with AS to match) sets that field through
 * sb_pb_set_text (sb/pb.h): strings borrowed from r, numbers and t/f parsed,
 * enums by their .proto name. SQL NULL, text that does not parse, and
 * columns m has no (singular scalar or string) field for leave the field as
 * it is: the default after init. */
void sb_db_row_to_pb(const PGresult *r, int row, ProtobufCMessage *m);
/* Rows [from, to) of r as new messages of type d in a, each initialised and
 * filled as above: an array of to - from message pointers, for a repeated
 * field (resp->seats = sb_db_rows_to_pb(a, r, 0, n, &sb__x__seat__descriptor)). */
void *sb_db_rows_to_pb(sb_arena_t *a, const PGresult *r, int from, int to,
                       const ProtobufCMessageDescriptor *d);

/* A timestamptz as RFC 3339 UTC with milliseconds, the form sb_time_rfc3339
 * writes: "SELECT " SB_DB_TS("created_at") " AS created_at ..." */
#define SB_DB_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* Rows affected by the command of r (UPDATE/DELETE/INSERT); 0 for NULL. */
long sb_db_affected(const PGresult *r);
/* Field (row, col) of r: the text, or NULL for SQL NULL; borrowed from r. */
const char *sb_db_get(const PGresult *r, int row, int col);

#endif

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
 */
#ifndef SB_DB_H
#define SB_DB_H
#include <libpq-fe.h>

#include "sb/arena.h"
#include "sb/buf.h"
#include "sb/pg.h"
#include "sb/status.h"

typedef struct sb_db {
    sb_pg_conn_t *conn; /* borrowed for the unit of work */
    sb_arena_t *arena;  /* owns the results */
    sb_buf_t *detail;   /* internal detail for the log; never sent to a client */
} sb_db_t;

/* Runs stmt with text parameters (NULL = SQL NULL). On OK, *out (when out is
 * not NULL) is the result, owned by db->arena. Otherwise the SQLSTATE mapped
 * to a status (see sb_pg_check) with the server message appended to
 * db->detail, and *out is NULL. */
sb_status_t sb_db_exec_v(sb_db_t *db, const sb_pg_stmt_t *stmt, PGresult **out, int n,
                         const char *const *params);
/* sb_db_exec(db, &stmt, &res, p1, p2, ...): the parameters as arguments. */
#define sb_db_exec(db, stmt, out, ...)                                                         \
    sb_db_exec_v((db), (stmt), (out),                                                         \
                 (int)(sizeof((const char *[]){NULL, ##__VA_ARGS__}) / sizeof(const char *)) - 1, \
                 ((const char *[]){NULL, ##__VA_ARGS__}) + 1)
/* Plain SQL without parameters (DDL, SET LOCAL ...). */
sb_status_t sb_db_sql(sb_db_t *db, const char *sql, PGresult **out);

/* Rows affected by the command of r (UPDATE/DELETE/INSERT); 0 for NULL. */
long sb_db_affected(const PGresult *r);
/* Field (row, col) of r: the text, or NULL for SQL NULL; borrowed from r. */
const char *sb_db_get(const PGresult *r, int row, int col);

#endif

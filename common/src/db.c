/* Arena-owned query results, and the connection of a unit of work borrowed
 * at its first statement; see sb/db.h. */
#include "sb/db.h"

#include <stdlib.h>
#include <string.h>

#include "sb/pb.h"
#include "sb/util.h"

#define DEFAULT_WAIT_MS 5000

static void clear_result(void *r)
{
    PQclear(r);
}

static void add_detail(sb_db_t *db, const char *what)
{
    if (!db->detail)
        return;
    if (db->detail->len)
        sb_buf_adds(db->detail, "; ");
    sb_buf_adds(db->detail, what);
}

/* Checks r (now owned by db->arena) into a status, the detail appended. */
static sb_status_t finish(sb_db_t *db, PGresult *r, PGresult **out, const char *what)
{
    if (out)
        *out = NULL;
    if (r)
        sb_arena_on_free(db->arena, clear_result, r);
    if (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK) {
        if (out)
            *out = r;
        return SB_OK;
    }
    sb_buf_t scratch = SB_BUF_INIT;
    sb_buf_t *d = db->detail ? db->detail : &scratch;
    if (d->len)
        sb_buf_adds(d, "; ");
    sb_buf_addf(d, "%s: ", what);
    sb_status_t st = sb_pg_check(db->conn, r, d);
    sb_buf_release(&scratch);
    const char *state = sb_pg_last_sqlstate(db->conn);
    if (!strcmp(state, "40001") || !strcmp(state, "40P01"))
        db->conflict = true;
    return st;
}

/* Gives a borrowed connection back (rolling back what is open on it). */
static void give_back(sb_db_t *db)
{
    if (db->pool && db->conn) {
        sb_pg_release(db->pool, db->conn); /* rolls back an open transaction */
        db->conn = NULL;
    }
}

/* Makes sure db->conn is there: borrowed from the pool, and the transaction
 * opened when the unit has one. */
static sb_status_t take(sb_db_t *db)
{
    if (db->conn)
        return SB_OK;
    if (!db->pool) {
        add_detail(db, "no database connection for this unit of work");
        return SB_INTERNAL;
    }
    int64_t wait = DEFAULT_WAIT_MS;
    if (db->deadline_ms) {
        int64_t left = db->deadline_ms - sb_now_ms();
        if (left <= 0) {
            add_detail(db, "deadline passed before a database connection was taken");
            return SB_DEADLINE_EXCEEDED;
        }
        if (left < wait)
            wait = left;
    }
    sb_buf_t scratch = SB_BUF_INIT;
    db->conn = sb_pg_acquire(db->pool, (int)wait, db->detail ? db->detail : &scratch);
    sb_buf_release(&scratch);
    if (!db->conn)
        return SB_UNAVAILABLE;
    if (!db->begin)
        return SB_OK;
    sb_status_t st = finish(db, sb_pg_exec_sql(db->conn, db->begin), NULL, "begin");
    if (st != SB_OK)
        give_back(db);
    return st;
}

/* After a statement without a transaction: the connection goes back at once. */
static void after(sb_db_t *db)
{
    if (!db->begin)
        give_back(db);
}

sb_status_t sb_db_exec_v(sb_db_t *db, const sb_pg_stmt_t *stmt, PGresult **out, int n,
                         const char *const *params)
{
    sb_status_t st = take(db);
    if (st != SB_OK) {
        if (out)
            *out = NULL;
        return st;
    }
    st = finish(db, sb_pg_exec(db->conn, stmt, n, n > 0 ? params : NULL), out, stmt->name);
    after(db);
    return st;
}

sb_status_t sb_db_sql(sb_db_t *db, const char *sql, PGresult **out)
{
    sb_status_t st = take(db);
    if (st != SB_OK) {
        if (out)
            *out = NULL;
        return st;
    }
    st = finish(db, sb_pg_exec_sql(db->conn, sql), out, "sql");
    after(db);
    return st;
}

sb_pg_conn_t *sb_db_conn(sb_db_t *db, sb_status_t *st)
{
    *st = take(db);
    return *st == SB_OK ? db->conn : NULL;
}

sb_db_t sb_db_outside(const sb_db_t *db)
{
    return (sb_db_t){
        .arena = db->arena, .detail = db->detail, .pool = db->pool, .deadline_ms = db->deadline_ms};
}

sb_status_t sb_db_commit(sb_db_t *db)
{
    if (!db->pool) {
        add_detail(db, "commit of a transaction the unit of work does not own");
        return SB_INTERNAL;
    }
    if (!db->conn)
        return SB_OK;
    sb_status_t st;
    if (PQtransactionStatus(sb_pg_raw(db->conn)) == PQTRANS_INERROR) {
        /* COMMIT would answer "ROLLBACK" with a success status */
        add_detail(db, "commit after a failed statement: rolled back");
        st = db->conflict ? SB_ABORTED : SB_INTERNAL;
    } else {
        st = finish(db, sb_pg_exec_sql(db->conn, "COMMIT"), NULL, "commit");
        db->committed = db->committed || st == SB_OK;
    }
    give_back(db);
    return st;
}

void sb_db_rollback(sb_db_t *db)
{
    if (db->pool)
        give_back(db);
}

long sb_db_affected(const PGresult *r)
{
    if (!r)
        return 0;
    const char *s = PQcmdTuples((PGresult *)r);
    return s && *s ? strtol(s, NULL, 10) : 0;
}

const char *sb_db_get(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

void sb_db_row_to_pb(const PGresult *r, int row, ProtobufCMessage *m)
{
    int n = PQnfields(r);
    for (int col = 0; col < n; col++) {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(m->descriptor, PQfname(r, col));
        if (f && !PQgetisnull(r, row, col))
            sb_pb_set_text(m, f, PQgetvalue(r, row, col));
    }
}

void *sb_db_rows_to_pb(sb_arena_t *a, const PGresult *r, int from, int to,
                       const ProtobufCMessageDescriptor *d)
{
    size_t n = to > from ? (size_t)(to - from) : 0;
    ProtobufCMessage **out = SB_ARENA_NEW(a, ProtobufCMessage *, n);
    char *messages = sb_arena_alloc_array(a, n, d->sizeof_message);
    for (size_t i = 0; i < n; i++) {
        out[i] = (ProtobufCMessage *)(messages + i * d->sizeof_message);
        protobuf_c_message_init(d, out[i]);
        sb_db_row_to_pb(r, from + (int)i, out[i]);
    }
    return out;
}

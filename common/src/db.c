/* Arena-owned query results; see sb/db.h. */
#include "sb/db.h"

#include <stdlib.h>

static void clear_result(void *r)
{
    PQclear(r);
}

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
    return st;
}

sb_status_t sb_db_exec_v(sb_db_t *db, const sb_pg_stmt_t *stmt, PGresult **out, int n,
                         const char *const *params)
{
    return finish(db, sb_pg_exec(db->conn, stmt, n, n > 0 ? params : NULL), out, stmt->name);
}

sb_status_t sb_db_sql(sb_db_t *db, const char *sql, PGresult **out)
{
    return finish(db, sb_pg_exec_sql(db->conn, sql), out, "sql");
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

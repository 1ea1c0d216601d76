/* Reading performances: one row of `performances`, its `schedules` (by
 * time) and `grades` (in the planner's order), turned into the API message
 * plus the fields the handlers decide with. Listings read a page of rows
 * and then the schedules and grades of the whole page in two queries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "performance.h"
#include "sb/db.h"
#include "sb/pb.h"
#include "sb/util.h"

/* A performance's columns: the fields of a Performance by name
 * (sb_db_row_to_pb), then what perf_row_t keeps beside it. */
#define PERF_COLS                                                                                       \
    "performance_id::text, planner_id::text, title, description, venue, category, running_minutes,"     \
    " status, reject_reason, cancel_reason, " SB_DB_TS(                                                 \
        "created_at") " AS created_at,"                                                                 \
                      " " SB_DB_TS("updated_at") " AS updated_at, " SB_DB_TS(                           \
                          "approved_at") " AS approved_at,"                                             \
                                         " version, revision, cancelled_by, floor(extract(epoch from "  \
                                         "created_at) * 1000000)::bigint AS created_us"

static const sb_pg_stmt_t select_perf = {
    "perf_select", "SELECT " PERF_COLS " FROM performances WHERE performance_id = $1::uuid"};

static const sb_pg_stmt_t lock_perf = {
    "perf_lock", "SELECT " PERF_COLS " FROM performances WHERE performance_id = $1::uuid FOR UPDATE"};

/* Schedule fields by name, then the time in unix ms and the schedule's own
 * venue (NULL: the performance's). */
static const sb_pg_stmt_t select_schedules = {
    "perf_schedules",
    "SELECT performance_id::text, schedule_id::text, " SB_DB_TS(
        "starts_at") " AS starts_at,"
                     " floor(extract(epoch from starts_at) * 1000)::bigint AS starts_ms, venue FROM "
                     "schedules"
                     " WHERE performance_id = ANY($1::uuid[])"
                     " ORDER BY performance_id, schedules.starts_at, schedule_id"}; /* the column, not
                                                                                       the text */
enum { S_PERF, S_ID, S_STARTS_AT, S_STARTS_MS, S_VENUE };

static const sb_pg_stmt_t select_grades = {
    "perf_grades", "SELECT performance_id::text, grade, price, seat_count FROM grades"
                   " WHERE performance_id = ANY($1::uuid[]) ORDER BY performance_id, position"};

/* Visibility: admins see everything; everyone else APPROVED and CANCELLED
 * performances plus their own. NULL parameters are filters not applied.
 * The keyset position is (created_at, performance_id), newest first; the
 * micros in a page token are exact in a float8 until the year 2255. */
static const sb_pg_stmt_t list_perfs = {
    "perf_list",
    "SELECT " PERF_COLS " FROM performances p"
    " WHERE ($1::boolean OR p.status IN ('APPROVED', 'CANCELLED') OR p.planner_id = $2::uuid)"
    " AND ($3::uuid IS NULL OR p.planner_id = $3::uuid)"
    " AND ($4::text IS NULL OR p.status = $4::text)"
    " AND ($5::text IS NULL OR p.category = $5::text)"
    " AND (($6::timestamptz IS NULL AND $7::timestamptz IS NULL) OR EXISTS ("
    "   SELECT 1 FROM schedules s WHERE s.performance_id = p.performance_id"
    "   AND ($6::timestamptz IS NULL OR s.starts_at >= $6::timestamptz)"
    "   AND ($7::timestamptz IS NULL OR s.starts_at < $7::timestamptz)))"
    " AND ($8::bigint IS NULL OR (p.created_at, p.performance_id) <"
    "   (timestamptz 'epoch' + $8::bigint * interval '1 microsecond', $9::uuid))"
    " ORDER BY p.created_at DESC, p.performance_id DESC LIMIT $10::int"};

static int64_t int64_col(const PGresult *r, int row, const char *name)
{
    return strtoll(PQgetvalue(r, row, PQfnumber(r, name)), NULL, 10);
}

/* Row `row` of a PERF_COLS result into out (schedules and grades come
 * later). Strings stay in r, which the unit of work's arena owns. */
static void fill_row(sb_arena_t *a, const PGresult *r, int row, perf_row_t *out)
{
    out->pb = (Sb__Performance__Performance *)sb_pb_new(a, &sb__performance__performance__descriptor);
    sb_db_row_to_pb(r, row, &out->pb->base);
    out->version = int64_col(r, row, "version");
    out->revision = int64_col(r, row, "revision");
    const char *by = sb_db_get(r, row, PQfnumber(r, "cancelled_by"));
    out->cancelled_by = (char *)(by ? by : "");
    out->created_us = int64_col(r, row, "created_us");
}

/* The rows [*from, *to) of r, which is ordered by its first column, whose
 * first column is id. */
static void rows_of(const PGresult *r, const char *id, int *from, int *to)
{
    int n = PQntuples(r), i = 0;
    while (i < n && strcmp(PQgetvalue(r, i, 0), id) != 0)
        i++;
    *from = i;
    while (i < n && !strcmp(PQgetvalue(r, i, 0), id))
        i++;
    *to = i;
}

/* The schedules (with the effective venue in the API view) and grades of
 * rows, from one query each for all of them. */
static sb_status_t load_children(sb_db_t *db, perf_row_t *rows, size_t n)
{
    if (n == 0)
        return SB_OK;
    sb_arena_t *a = db->arena;
    sb_buf_t ids = SB_BUF_INIT;
    sb_buf_addch(&ids, '{');
    for (size_t i = 0; i < n; i++)
        sb_buf_addf(&ids, "%s%s", i ? "," : "", rows[i].pb->performance_id);
    sb_buf_addch(&ids, '}');
    PGresult *r, *g;
    sb_status_t st = sb_db_exec(db, &select_schedules, &r, ids.buf);
    if (st == SB_OK)
        st = sb_db_exec(db, &select_grades, &g, ids.buf);
    sb_buf_release(&ids);
    if (st != SB_OK)
        return st;

    for (size_t i = 0; i < n; i++) {
        Sb__Performance__Performance *p = rows[i].pb;
        int from, to;
        rows_of(g, p->performance_id, &from, &to);
        p->grades = sb_db_rows_to_pb(a, g, from, to, &sb__performance__seat_grade__descriptor);
        p->n_grades = (size_t)(to - from);
        rows_of(r, p->performance_id, &from, &to);
        p->schedules = sb_db_rows_to_pb(a, r, from, to, &sb__performance__schedule__descriptor);
        p->n_schedules = rows[i].n_sch = (size_t)(to - from);
        rows[i].sch = SB_ARENA_NEW(a, sched_row_t, p->n_schedules);
        for (size_t k = 0; k < p->n_schedules; k++) {
            sched_row_t *s = &rows[i].sch[k];
            int row = from + (int)k;
            s->id = p->schedules[k]->schedule_id;
            s->at_ms = strtoll(PQgetvalue(r, row, S_STARTS_MS), NULL, 10);
            s->venue = PQgetisnull(r, row, S_VENUE) ? NULL : PQgetvalue(r, row, S_VENUE);
            if (!s->venue)
                p->schedules[k]->venue = p->venue;
        }
    }
    return SB_OK;
}

sb_status_t perf_load(sb_db_t *db, const char *id, bool lock, perf_row_t *out, bool *found)
{
    memset(out, 0, sizeof *out);
    *found = false;
    PGresult *r;
    sb_status_t st = sb_db_exec(db, lock ? &lock_perf : &select_perf, &r, id);
    if (st != SB_OK || PQntuples(r) != 1)
        return st;
    fill_row(db->arena, r, 0, out);
    *found = true;
    return load_children(db, out, 1);
}

sb_status_t perf_list(sb_db_t *db, const perf_query_t *q, perf_row_t **rows, size_t *n, bool *more)
{
    *rows = NULL;
    *n = 0;
    *more = false;
    char after[24], limit[16];
    snprintf(after, sizeof after, "%lld", (long long)q->after_us);
    snprintf(limit, sizeof limit, "%d", q->limit + 1); /* one more: is there a next page? */
    PGresult *r;
    sb_status_t st = sb_db_exec(db, &list_perfs, &r, q->admin ? "true" : "false", q->viewer, q->planner,
                                q->status, q->category, q->from, q->to, q->after_set ? after : NULL,
                                q->after_set ? q->after_id : NULL, limit);
    if (st != SB_OK)
        return st;
    size_t nt = (size_t)PQntuples(r);
    if (nt > (size_t)q->limit) {
        *more = true;
        nt = (size_t)q->limit;
    }
    perf_row_t *out = SB_ARENA_NEW(db->arena, perf_row_t, nt);
    for (size_t i = 0; i < nt; i++)
        fill_row(db->arena, r, (int)i, &out[i]);
    if ((st = load_children(db, out, nt)) != SB_OK)
        return st;
    *rows = out;
    *n = nt;
    return SB_OK;
}

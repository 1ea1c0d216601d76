/* Reading performances: one row of `performances`, its `schedules` (by
 * time) and `grades` (in the planner's order), turned into the API message
 * plus the fields the handlers decide with. Listings read a page of rows
 * and then the schedules and grades of the whole page in two queries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "performance.h"
#include "sb/db.h"
#include "sb/enum.h"
#include "sb/util.h"

/* Unix milliseconds of a timestamptz (NULL stays NULL). */
#define MS(col) "floor(extract(epoch from " col ") * 1000)::bigint"
/* The columns fill_row reads, in its order. */
#define PERF_COLS                                                                            \
    "performance_id::text, planner_id::text, title, description, venue, category,"           \
    " running_minutes, status, version, revision, reject_reason, cancel_reason, cancelled_by," \
    " " MS("created_at") ", " MS("updated_at") ", " MS("approved_at") ","                     \
    " floor(extract(epoch from created_at) * 1000000)::bigint"

static const sb_pg_stmt_t select_perf = {
    "perf_select", "SELECT " PERF_COLS " FROM performances WHERE performance_id = $1::uuid"};

static const sb_pg_stmt_t lock_perf = {
    "perf_lock", "SELECT " PERF_COLS " FROM performances WHERE performance_id = $1::uuid FOR UPDATE"};

static const sb_pg_stmt_t select_schedules = {
    "perf_schedules",
    "SELECT performance_id::text, schedule_id::text, " MS("starts_at") ", venue FROM schedules"
    " WHERE performance_id = ANY($1::uuid[]) ORDER BY performance_id, starts_at, schedule_id"};

static const sb_pg_stmt_t select_grades = {
    "perf_grades",
    "SELECT performance_id::text, grade, price, seat_count FROM grades"
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

static char *time_str(sb_arena_t *a, const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return "";
    char ts[32];
    sb_time_rfc3339(strtoll(PQgetvalue(r, row, col), NULL, 10), ts);
    return sb_arena_strdup(a, ts);
}

static char *nullable(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
}

/* Row `row` of a PERF_COLS result into out (schedules and grades come
 * later). Strings stay in r, which the unit of work's arena owns. */
static void fill_row(sb_arena_t *a, const PGresult *r, int row, perf_row_t *out)
{
    Sb__Performance__Performance *p = SB_ARENA_NEW(a, Sb__Performance__Performance, 1);
    sb__performance__performance__init(p);
    p->performance_id = PQgetvalue(r, row, 0);
    p->planner_id = PQgetvalue(r, row, 1);
    p->title = PQgetvalue(r, row, 2);
    p->description = PQgetvalue(r, row, 3);
    p->venue = PQgetvalue(r, row, 4);
    p->category = PQgetvalue(r, row, 5);
    p->running_minutes = atoi(PQgetvalue(r, row, 6));
    p->status = sb_enum_value(&sb__performance__performance_status__descriptor, PQgetvalue(r, row, 7),
                              SB__PERFORMANCE__PERFORMANCE_STATUS__PERFORMANCE_STATUS_UNSPECIFIED);
    out->version = strtoll(PQgetvalue(r, row, 8), NULL, 10);
    out->revision = strtoll(PQgetvalue(r, row, 9), NULL, 10);
    p->reject_reason = nullable(r, row, 10);
    p->cancel_reason = nullable(r, row, 11);
    out->cancelled_by = nullable(r, row, 12);
    p->created_at = time_str(a, r, row, 13);
    p->updated_at = time_str(a, r, row, 14);
    p->approved_at = time_str(a, r, row, 15);
    out->created_us = strtoll(PQgetvalue(r, row, 16), NULL, 10);
    out->pb = p;
}

static perf_row_t *find_row(perf_row_t *rows, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(rows[i].pb->performance_id, id))
            return &rows[i];
    return NULL;
}

/* Counts the rows of r per performance into the rows' arrays, then fills
 * them: schedules (with the effective venue in the API view) and grades. */
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

    int nt = PQntuples(r);
    for (int k = 0; k < nt; k++) {
        perf_row_t *row = find_row(rows, n, PQgetvalue(r, k, 0));
        if (row)
            row->pb->n_schedules++;
    }
    for (size_t i = 0; i < n; i++) {
        rows[i].pb->schedules = SB_ARENA_NEW(a, Sb__Performance__Schedule *, rows[i].pb->n_schedules);
        rows[i].sch = SB_ARENA_NEW(a, sched_row_t, rows[i].pb->n_schedules);
        rows[i].pb->n_schedules = 0;
    }
    for (int k = 0; k < nt; k++) {
        perf_row_t *row = find_row(rows, n, PQgetvalue(r, k, 0));
        if (!row)
            continue;
        sched_row_t *s = &row->sch[row->n_sch++];
        s->id = PQgetvalue(r, k, 1);
        s->at_ms = strtoll(PQgetvalue(r, k, 2), NULL, 10);
        s->venue = PQgetisnull(r, k, 3) ? NULL : PQgetvalue(r, k, 3);
        Sb__Performance__Schedule *ps = SB_ARENA_NEW(a, Sb__Performance__Schedule, 1);
        sb__performance__schedule__init(ps);
        ps->schedule_id = s->id;
        ps->starts_at = time_str(a, r, k, 2);
        ps->venue = s->venue ? s->venue : row->pb->venue;
        row->pb->schedules[row->pb->n_schedules++] = ps;
    }

    nt = PQntuples(g);
    for (int k = 0; k < nt; k++) {
        perf_row_t *row = find_row(rows, n, PQgetvalue(g, k, 0));
        if (row)
            row->pb->n_grades++;
    }
    for (size_t i = 0; i < n; i++) {
        rows[i].pb->grades = SB_ARENA_NEW(a, Sb__Performance__SeatGrade *, rows[i].pb->n_grades);
        rows[i].pb->n_grades = 0;
    }
    for (int k = 0; k < nt; k++) {
        perf_row_t *row = find_row(rows, n, PQgetvalue(g, k, 0));
        if (!row)
            continue;
        Sb__Performance__SeatGrade *sg = SB_ARENA_NEW(a, Sb__Performance__SeatGrade, 1);
        sb__performance__seat_grade__init(sg);
        sg->grade = PQgetvalue(g, k, 1);
        sg->price = strtoll(PQgetvalue(g, k, 2), NULL, 10);
        sg->seat_count = atoi(PQgetvalue(g, k, 3));
        row->pb->grades[row->pb->n_grades++] = sg;
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

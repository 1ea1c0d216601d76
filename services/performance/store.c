/* Reading performances: one row of `performances`, its `schedules` (by
 * time) and `grades` (in the planner's order), turned into the API message
 * plus the fields the handlers decide with. Listings read a page of rows
 * and then the schedules and grades of the whole page in two queries. */
#include <stdlib.h>
#include <string.h>

#include "performance.h"
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

static char *nullable(sb_arena_t *a, const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? "" : sb_arena_strdup(a, PQgetvalue(r, row, col));
}

/* Row `row` of a PERF_COLS result into out (schedules and grades come later). */
static void fill_row(sb_arena_t *a, const PGresult *r, int row, perf_row_t *out)
{
    Sb__Performance__Performance *p = sb_arena_alloc(a, sizeof *p);
    sb__performance__performance__init(p);
    p->performance_id = sb_arena_strdup(a, PQgetvalue(r, row, 0));
    p->planner_id = sb_arena_strdup(a, PQgetvalue(r, row, 1));
    p->title = sb_arena_strdup(a, PQgetvalue(r, row, 2));
    p->description = sb_arena_strdup(a, PQgetvalue(r, row, 3));
    p->venue = sb_arena_strdup(a, PQgetvalue(r, row, 4));
    p->category = sb_arena_strdup(a, PQgetvalue(r, row, 5));
    p->running_minutes = atoi(PQgetvalue(r, row, 6));
    out->status = sb_arena_strdup(a, PQgetvalue(r, row, 7));
    p->status = perf_status_parse(out->status);
    out->version = strtoll(PQgetvalue(r, row, 8), NULL, 10);
    out->revision = strtoll(PQgetvalue(r, row, 9), NULL, 10);
    p->reject_reason = nullable(a, r, row, 10);
    p->cancel_reason = nullable(a, r, row, 11);
    out->cancelled_by = nullable(a, r, row, 12);
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
static sb_status_t load_children(sb_pg_conn_t *c, sb_arena_t *a, perf_row_t *rows, size_t n,
                                 sb_buf_t *err)
{
    if (n == 0)
        return SB_OK;
    sb_buf_t ids = SB_BUF_INIT;
    sb_buf_addch(&ids, '{');
    for (size_t i = 0; i < n; i++)
        sb_buf_addf(&ids, "%s%s", i ? "," : "", rows[i].pb->performance_id);
    sb_buf_addch(&ids, '}');
    const char *params[] = {ids.buf};

    PGresult *r = sb_pg_exec(c, &select_schedules, 1, params);
    sb_status_t st = sb_pg_check(c, r, err);
    if (st != SB_OK)
        goto out_clear;
    int nt = PQntuples(r);
    for (int k = 0; k < nt; k++) {
        perf_row_t *row = find_row(rows, n, PQgetvalue(r, k, 0));
        if (row)
            row->pb->n_schedules++;
    }
    for (size_t i = 0; i < n; i++) {
        size_t m = rows[i].pb->n_schedules;
        rows[i].pb->schedules = sb_arena_alloc(a, (m ? m : 1) * sizeof *rows[i].pb->schedules);
        rows[i].sch = sb_arena_alloc(a, (m ? m : 1) * sizeof *rows[i].sch);
        rows[i].pb->n_schedules = 0;
    }
    for (int k = 0; k < nt; k++) {
        perf_row_t *row = find_row(rows, n, PQgetvalue(r, k, 0));
        if (!row)
            continue;
        sched_row_t *s = &row->sch[row->n_sch++];
        s->id = sb_arena_strdup(a, PQgetvalue(r, k, 1));
        s->at_ms = strtoll(PQgetvalue(r, k, 2), NULL, 10);
        s->venue = PQgetisnull(r, k, 3) ? NULL : sb_arena_strdup(a, PQgetvalue(r, k, 3));
        Sb__Performance__Schedule *ps = sb_arena_alloc(a, sizeof *ps);
        sb__performance__schedule__init(ps);
        ps->schedule_id = s->id;
        ps->starts_at = time_str(a, r, k, 2);
        ps->venue = s->venue ? s->venue : row->pb->venue;
        row->pb->schedules[row->pb->n_schedules++] = ps;
    }
    PQclear(r);

    r = sb_pg_exec(c, &select_grades, 1, params);
    if ((st = sb_pg_check(c, r, err)) != SB_OK)
        goto out_clear;
    nt = PQntuples(r);
    for (int k = 0; k < nt; k++) {
        perf_row_t *row = find_row(rows, n, PQgetvalue(r, k, 0));
        if (row)
            row->pb->n_grades++;
    }
    for (size_t i = 0; i < n; i++) {
        size_t m = rows[i].pb->n_grades;
        rows[i].pb->grades = sb_arena_alloc(a, (m ? m : 1) * sizeof *rows[i].pb->grades);
        rows[i].pb->n_grades = 0;
    }
    for (int k = 0; k < nt; k++) {
        perf_row_t *row = find_row(rows, n, PQgetvalue(r, k, 0));
        if (!row)
            continue;
        Sb__Performance__SeatGrade *g = sb_arena_alloc(a, sizeof *g);
        sb__performance__seat_grade__init(g);
        g->grade = sb_arena_strdup(a, PQgetvalue(r, k, 1));
        g->price = strtoll(PQgetvalue(r, k, 2), NULL, 10);
        g->seat_count = atoi(PQgetvalue(r, k, 3));
        row->pb->grades[row->pb->n_grades++] = g;
    }
out_clear:
    PQclear(r);
    sb_buf_release(&ids);
    return st;
}

sb_status_t perf_load(sb_pg_conn_t *c, sb_arena_t *a, const char *id, bool lock, perf_row_t *out,
                      bool *found, sb_buf_t *err)
{
    memset(out, 0, sizeof *out);
    *found = false;
    const char *params[] = {id};
    PGresult *r = sb_pg_exec(c, lock ? &lock_perf : &select_perf, 1, params);
    sb_status_t st = sb_pg_check(c, r, err);
    if (st == SB_OK && PQntuples(r) == 1) {
        fill_row(a, r, 0, out);
        *found = true;
    }
    PQclear(r);
    if (st == SB_OK && *found)
        st = load_children(c, a, out, 1, err);
    return st;
}

sb_status_t perf_list(sb_pg_conn_t *c, sb_arena_t *a, const perf_query_t *q, perf_row_t **rows,
                      size_t *n, bool *more, sb_buf_t *err)
{
    *rows = NULL;
    *n = 0;
    *more = false;
    char after[24], limit[16];
    snprintf(after, sizeof after, "%lld", (long long)q->after_us);
    snprintf(limit, sizeof limit, "%d", q->limit + 1); /* one more: is there a next page? */
    const char *params[] = {q->admin ? "true" : "false",
                            q->viewer,
                            q->planner,
                            q->status,
                            q->category,
                            q->from,
                            q->to,
                            q->after_set ? after : NULL,
                            q->after_set ? q->after_id : NULL,
                            limit};
    PGresult *r = sb_pg_exec(c, &list_perfs, 10, params);
    sb_status_t st = sb_pg_check(c, r, err);
    if (st != SB_OK) {
        PQclear(r);
        return st;
    }
    size_t nt = (size_t)PQntuples(r);
    if (nt > (size_t)q->limit) {
        *more = true;
        nt = (size_t)q->limit;
    }
    perf_row_t *out = sb_arena_alloc(a, (nt ? nt : 1) * sizeof *out);
    for (size_t i = 0; i < nt; i++)
        fill_row(a, r, (int)i, &out[i]);
    PQclear(r);
    if ((st = load_children(c, a, out, nt, err)) != SB_OK)
        return st;
    *rows = out;
    *n = nt;
    return SB_OK;
}

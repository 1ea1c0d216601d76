/* performance service internals, shared by its files:
 *   main.c         wiring: the service definition and handler table
 *   performance.c  the RPC handlers (Create/Update/Get/List/Approve/Reject/Cancel)
 *   store.c        the SQL: loading performances, schedules and grades; listing
 *   validate.c     field rules, page tokens (UUIDs, RFC 3339 and UTF-8 text
 *                  are checked by sb/valid.h)
 *   sales.c        the reservation service query (held/sold seats per grade)
 *   snapshot.c     performance.* event payloads
 *
 * Times inside the service are unix milliseconds (int64); input is truncated
 * to the millisecond, so what is stored is exactly what is shown. */
#ifndef SB_PERFORMANCE_INTERNAL_H
#define SB_PERFORMANCE_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "events.pb-c.h"
#include "performance.pb-c.h"
#include "sb/arena.h"
#include "sb/buf.h"
#include "sb/db.h"
#include "sb/enum.h"
#include "sb/rpc.h"
#include "sb/status.h"

#define PERF_TITLE_MAX 200
#define PERF_DESCRIPTION_MAX 5000
#define PERF_VENUE_MAX 200
#define PERF_CATEGORY_MAX 50
#define PERF_RUNNING_MAX 1440
#define PERF_SCHEDULES_MAX 100
#define PERF_GRADES_MAX 20
#define PERF_GRADE_NAME_MAX 20
#define PERF_PRICE_MAX 100000000
#define PERF_GRADE_SEATS_MAX 5000
#define PERF_SCHEDULE_SEATS_MAX 20000
#define PERF_REASON_MAX 500
#define PERF_PAGE_DEFAULT 20
#define PERF_PAGE_MAX 100

/* ---- validate.c ---- */

/* One schedule of a create/update request, checked. */
typedef struct sched_in {
    const char *id;    /* normalised UUID, or NULL for a new schedule */
    bool has_time;     /* startsAt given */
    int64_t at_ms;     /* when has_time */
    const char *venue; /* NULL: not given (create: the performance venue; update: unchanged) */
} sched_in_t;

typedef struct grade_in {
    const char *grade;
    int64_t price;
    int32_t seats;
} grade_in_t;

/* A create or update request after the stateless checks. For an update,
 * NULL strings, running_minutes 0 and has_* false mean "unchanged". */
typedef struct perf_in {
    const char *title, *description, *venue, *category;
    int32_t running_minutes;
    bool has_schedules, has_grades;
    sched_in_t *sch;
    size_t n_sch;
    grade_in_t *gr;
    size_t n_gr;
} perf_in_t;

/* The stateless checks of CreatePerformance (every field required but
 * description; startsAt in the future as of now_ms). On INVALID_ARGUMENT, msg
 * holds "<jsonField>: <problem>". The result lives in a. */
sb_status_t perf_check_create(sb_arena_t *a, const Sb__Performance__CreatePerformanceRequest *req,
                              int64_t now_ms, perf_in_t *out, sb_buf_t *msg);
/* The same for UpdatePerformance: only given fields are checked; a new
 * schedule needs startsAt in the future; whether a changed time is in the
 * future, and duplicate times, depend on the stored schedules
 * (perf_check_times). */
sb_status_t perf_check_update(sb_arena_t *a, const Sb__Performance__UpdatePerformanceRequest *req,
                              int64_t now_ms, perf_in_t *out, sb_buf_t *msg);
/* Two schedules at one time: the field of the later one, in msg. times[i]
 * is the final time of schedules[i]. */
sb_status_t perf_check_distinct_times(const int64_t *times, size_t n, sb_buf_t *msg);

/* NULL when s is acceptable as a reason of at most max characters (empty
 * allowed), else what is wrong. */
const char *perf_reason_problem(const char *s, bool required);

/* Opaque keyset tokens of ListPerformances: base64url("<micros>:<uuid>"). */
char *perf_page_token(sb_arena_t *a, int64_t created_us, const char *id);
bool perf_page_token_parse(sb_arena_t *a, const char *token, int64_t *created_us, char **id);

/* "APPROVED"...: the name in the .proto, through the enum's descriptor; NULL
 * when s is not a value. */
static inline const char *perf_status_name(Sb__Performance__PerformanceStatus s)
{
    return sb_enum_name(&sb__performance__performance_status__descriptor, (int)s);
}

/* ---- store.c ---- */

/* One stored schedule: the effective venue is venue ?: the performance's. */
typedef struct sched_row {
    char *id;
    int64_t at_ms;
    char *venue; /* NULL: the performance's venue */
} sched_row_t;

/* A performance as stored, with its schedules (by time) and grades (in the
 * planner's order). pb is the API view (its status included); the rest is
 * what the handlers need. */
typedef struct perf_row {
    Sb__Performance__Performance *pb;
    int64_t version;
    int64_t revision;
    int64_t created_us; /* the keyset of listings */
    char *cancelled_by;
    sched_row_t *sch;
    size_t n_sch;
} perf_row_t;

/* Loads performance id (locking its row FOR UPDATE when lock). OK with
 * *found false when there is none. Everything lives in db's arena. */
sb_status_t perf_load(sb_db_t *db, const char *id, bool lock, perf_row_t *out, bool *found);

/* ListPerformances' query after the argument checks. */
typedef struct perf_query {
    const char *viewer; /* caller's user id, NULL when anonymous or not a UUID */
    bool admin;
    const char *planner; /* filters; NULL = any */
    const char *status;
    const char *category;
    const char *from, *to; /* RFC 3339 strings already checked */
    bool after_set;        /* keyset position: strictly after this one */
    int64_t after_us;
    const char *after_id;
    int limit;
} perf_query_t;

/* Up to q->limit rows (newest first); *more tells whether another page exists. */
sb_status_t perf_list(sb_db_t *db, const perf_query_t *q, perf_row_t **rows, size_t *n, bool *more);

/* ---- sales.c ---- */

/* Seats held and sold per grade over all schedules of a performance. */
typedef struct grade_sales {
    char *grade;
    int64_t held, sold;
} grade_sales_t;

typedef struct perf_sales {
    grade_sales_t *g;
    size_t n;
} perf_sales_t;

/* Asks the reservation service (RESERVATION_ADDR) with the caller's
 * identity and trace id. An UNAVAILABLE refusal when it cannot answer; a
 * performance it does not know has no sales. Result in ctx->arena. */
sb_status_t perf_sales_fetch(sb_rpc_ctx_t *ctx, const char *performance_id, perf_sales_t *out);
/* Held + sold of grade (0 when not listed). */
int64_t perf_sales_taken(const perf_sales_t *s, const char *grade);

/* ---- snapshot.c ---- */

/* The event view of a loaded performance (strings borrowed from row). */
Sb__Events__PerformanceSnapshot *perf_snapshot(sb_arena_t *a, const perf_row_t *row);

/* ---- performance.c: the RPC handlers ---- */

sb_rpc_handler_t perf_create, perf_update, perf_get, perf_list_rpc, perf_approve, perf_reject,
    perf_cancel;

#endif

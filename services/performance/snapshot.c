/* performance.* event payloads: the snapshot the reservation service builds
 * its inventory from (schedules with their effective venue, grades, version),
 * the loaded performance's fields of the same names. */
#include "performance.h"
#include "sb/pb.h"

Sb__Events__PerformanceSnapshot *perf_snapshot(sb_arena_t *a, const perf_row_t *row)
{
    Sb__Events__PerformanceSnapshot *s =
        (Sb__Events__PerformanceSnapshot *)sb_pb_new(a, &sb__events__performance_snapshot__descriptor);
    /* schedules and grades become ScheduleSnapshot and GradeSnapshot; a
     * schedule's venue is already the effective one */
    sb_pb_copy_fields(a, &s->base, &row->pb->base);
    s->version = row->version;
    return s;
}

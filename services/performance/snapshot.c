/* performance.* event payloads: the snapshot the reservation service builds
 * its inventory from (schedules with their effective venue, grades, version). */
#include "performance.h"

Sb__Events__PerformanceSnapshot *perf_snapshot(sb_arena_t *a, const perf_row_t *row)
{
    const Sb__Performance__Performance *p = row->pb;
    Sb__Events__PerformanceSnapshot *s = SB_ARENA_NEW(a, Sb__Events__PerformanceSnapshot, 1);
    sb__events__performance_snapshot__init(s);
    s->performance_id = p->performance_id;
    s->planner_id = p->planner_id;
    s->title = p->title;
    s->venue = p->venue;
    s->category = p->category;
    s->running_minutes = p->running_minutes;
    s->version = row->version;
    s->n_schedules = p->n_schedules;
    s->schedules = SB_ARENA_NEW(a, Sb__Events__ScheduleSnapshot *, p->n_schedules);
    for (size_t i = 0; i < p->n_schedules; i++) {
        Sb__Events__ScheduleSnapshot *ss = SB_ARENA_NEW(a, Sb__Events__ScheduleSnapshot, 1);
        sb__events__schedule_snapshot__init(ss);
        ss->schedule_id = p->schedules[i]->schedule_id;
        ss->starts_at = p->schedules[i]->starts_at;
        ss->venue = p->schedules[i]->venue; /* already the effective venue */
        s->schedules[i] = ss;
    }
    s->n_grades = p->n_grades;
    s->grades = SB_ARENA_NEW(a, Sb__Events__GradeSnapshot *, p->n_grades);
    for (size_t i = 0; i < p->n_grades; i++) {
        Sb__Events__GradeSnapshot *g = SB_ARENA_NEW(a, Sb__Events__GradeSnapshot, 1);
        sb__events__grade_snapshot__init(g);
        g->grade = p->grades[i]->grade;
        g->price = p->grades[i]->price;
        g->seat_count = p->grades[i]->seat_count;
        s->grades[i] = g;
    }
    return s;
}

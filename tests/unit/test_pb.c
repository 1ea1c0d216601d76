/* Messages by field name (common/src/pb.c, sb/pb.h). */
#include <criterion/criterion.h>
#include <string.h>

#include "events.pb-c.h"
#include "kitchen.pb-c.h"
#include "performance.pb-c.h"
#include "reservation.pb-c.h"
#include "sb/pb.h"

static sb_arena_t *a;

static void setup(void)
{
    a = sb_arena_new();
}

static void teardown(void)
{
    sb_arena_free(a);
}

TestSuite(pb, .init = setup, .fini = teardown);

static const ProtobufCFieldDescriptor *field(const char *name)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(&sb__test__kitchen__descriptor, name);
    cr_assert(f, "no field %s", name);
    return f;
}

static bool set(Sb__Test__Kitchen *k, const char *name, const char *text)
{
    return sb_pb_set_text(&k->base, field(name), text);
}

Test(pb, new_is_initialised)
{
    Sb__Test__Kitchen *k = (Sb__Test__Kitchen *)sb_pb_new(a, &sb__test__kitchen__descriptor);
    cr_assert_eq(k->base.descriptor, &sb__test__kitchen__descriptor);
    cr_assert_str_eq(k->title, "");
    cr_assert_eq(k->target_case, SB__TEST__KITCHEN__TARGET__NOT_SET);
}

Test(pb, set_text_strings_are_borrowed)
{
    Sb__Test__Kitchen k = SB__TEST__KITCHEN__INIT;
    const char *text = "Hamlet";
    cr_assert(set(&k, "title", text));
    cr_assert_eq(k.title, text);
}

Test(pb, set_text_integers_in_range)
{
    Sb__Test__Kitchen k = SB__TEST__KITCHEN__INIT;
    cr_assert(set(&k, "running_minutes", "-42"));
    cr_assert_eq(k.running_minutes, -42);
    cr_assert(set(&k, "running_minutes", "2147483647"));
    cr_assert_eq(k.running_minutes, 2147483647);
    cr_assert(set(&k, "amount", "-9223372036854775808"));
    cr_assert_eq(k.amount, INT64_MIN);
    cr_assert(set(&k, "big", "18446744073709551615"));
    cr_assert_eq(k.big, UINT64_MAX);

    /* what does not parse leaves the field as it was */
    cr_assert_not(set(&k, "running_minutes", "2147483648"));
    cr_assert_not(set(&k, "running_minutes", "12abc"));
    cr_assert_not(set(&k, "running_minutes", ""));
    cr_assert_eq(k.running_minutes, 2147483647);
    cr_assert_not(set(&k, "amount", "9223372036854775808"));
    cr_assert_not(set(&k, "big", "-1"));
    cr_assert_eq(k.big, UINT64_MAX);
}

Test(pb, set_text_bools_floats_enums)
{
    Sb__Test__Kitchen k = SB__TEST__KITCHEN__INIT;
    cr_assert(set(&k, "active", "t"));
    cr_assert(k.active);
    cr_assert(set(&k, "active", "false"));
    cr_assert_not(k.active);
    cr_assert(set(&k, "active", "1"));
    cr_assert_not(set(&k, "active", "yes"));
    cr_assert(k.active);

    cr_assert(set(&k, "ratio", "0.25"));
    cr_assert_float_eq(k.ratio, 0.25, 1e-12);
    cr_assert_not(set(&k, "ratio", "quarter"));

    cr_assert(set(&k, "grade", "R"));
    cr_assert_eq(k.grade, SB__TEST__GRADE__R);
    cr_assert_not(set(&k, "grade", "r")); /* names are case-sensitive */
    cr_assert_not(set(&k, "grade", "Z"));
    cr_assert_eq(k.grade, SB__TEST__GRADE__R);
}

Test(pb, set_text_refuses_repeated_message_and_bytes_fields)
{
    Sb__Test__Kitchen k = SB__TEST__KITCHEN__INIT;
    cr_assert_not(set(&k, "seat_ids", "a"));
    cr_assert_not(set(&k, "amounts", "1"));
    cr_assert_not(set(&k, "main_seat", "x"));
    cr_assert_not(set(&k, "blob", "x"));
    cr_assert_eq(k.n_seat_ids, 0);
    cr_assert_null(k.main_seat);
    cr_assert_eq(k.blob.len, 0);
}

Test(pb, set_text_selects_the_oneof_member)
{
    Sb__Test__Kitchen k = SB__TEST__KITCHEN__INIT;
    cr_assert(set(&k, "quantity", "3"));
    cr_assert_eq(k.target_case, SB__TEST__KITCHEN__TARGET_QUANTITY);
    cr_assert(sb_pb_has(&k.base, field("quantity")));
    cr_assert_not(sb_pb_has(&k.base, field("schedule_id")));
    cr_assert(set(&k, "schedule_id", "s-1"));
    cr_assert_eq(k.target_case, SB__TEST__KITCHEN__TARGET_SCHEDULE_ID);
    cr_assert_str_eq(k.schedule_id, "s-1");
}

Test(pb, has_sub_messages_when_set)
{
    Sb__Test__Kitchen k = SB__TEST__KITCHEN__INIT;
    Sb__Test__Seat seat = SB__TEST__SEAT__INIT;
    cr_assert_not(sb_pb_has(&k.base, field("main_seat")));
    cr_assert(sb_pb_has(&k.base, field("title")));
    cr_assert(sb_pb_has(&k.base, field("seats"))); /* repeated: always */
    k.main_seat = &seat;
    cr_assert(sb_pb_has(&k.base, field("main_seat")));
}

Test(pb, set_repeated_by_name)
{
    Sb__Test__Kitchen k = SB__TEST__KITCHEN__INIT;
    char *ids[] = {"a", "b"};
    cr_assert(sb_pb_set_repeated(&k.base, "seat_ids", ids, 2));
    cr_assert_eq(k.n_seat_ids, 2);
    cr_assert_eq(k.seat_ids, ids);
    cr_assert_not(sb_pb_set_repeated(&k.base, "title", ids, 2));
    cr_assert_not(sb_pb_set_repeated(&k.base, "nothing", ids, 2));
}

Test(pb, copy_converts_sub_messages_by_name)
{
    Sb__Performance__Schedule s0 = SB__PERFORMANCE__SCHEDULE__INIT, s1 = SB__PERFORMANCE__SCHEDULE__INIT;
    s0.schedule_id = "s0";
    s0.starts_at = "2030-01-31T10:30:00.000Z";
    s0.venue = "Hall A";
    s1.schedule_id = "s1";
    Sb__Performance__Schedule *schedules[] = {&s0, &s1};
    Sb__Performance__SeatGrade g0 = SB__PERFORMANCE__SEAT_GRADE__INIT;
    g0.grade = "VIP";
    g0.price = 150000;
    g0.seat_count = 40;
    Sb__Performance__SeatGrade *grades[] = {&g0};
    Sb__Performance__Performance p = SB__PERFORMANCE__PERFORMANCE__INIT;
    p.performance_id = "p1";
    p.planner_id = "u1";
    p.title = "Hamlet";
    p.description = "not in the snapshot";
    p.venue = "Hall A";
    p.running_minutes = 150;
    p.n_schedules = 2;
    p.schedules = schedules;
    p.n_grades = 1;
    p.grades = grades;

    Sb__Events__PerformanceSnapshot snap = SB__EVENTS__PERFORMANCE_SNAPSHOT__INIT;
    snap.version = 7;
    sb_pb_copy_fields(a, &snap.base, &p.base);
    cr_assert_eq(snap.performance_id, p.performance_id); /* borrowed */
    cr_assert_str_eq(snap.title, "Hamlet");
    cr_assert_str_eq(snap.venue, "Hall A");
    cr_assert_str_eq(snap.category, ""); /* "" in the source too */
    cr_assert_eq(snap.running_minutes, 150);
    cr_assert_eq(snap.version, 7); /* no such field in the source */
    cr_assert_eq(snap.n_schedules, 2);
    cr_assert_neq((void *)snap.schedules, (void *)p.schedules);
    cr_assert_eq(snap.schedules[0]->base.descriptor, &sb__events__schedule_snapshot__descriptor);
    cr_assert_str_eq(snap.schedules[0]->schedule_id, "s0");
    cr_assert_str_eq(snap.schedules[0]->starts_at, "2030-01-31T10:30:00.000Z");
    cr_assert_str_eq(snap.schedules[0]->venue, "Hall A");
    cr_assert_str_eq(snap.schedules[1]->schedule_id, "s1");
    cr_assert_eq(snap.n_grades, 1);
    cr_assert_eq(snap.grades[0]->base.descriptor, &sb__events__grade_snapshot__descriptor);
    cr_assert_str_eq(snap.grades[0]->grade, "VIP");
    cr_assert_eq(snap.grades[0]->price, 150000);
    cr_assert_eq(snap.grades[0]->seat_count, 40);
}

Test(pb, copy_shares_arrays_of_the_same_type)
{
    Sb__Performance__Schedule s0 = SB__PERFORMANCE__SCHEDULE__INIT;
    Sb__Performance__Schedule *schedules[] = {&s0};
    Sb__Performance__UpdatePerformanceRequest up = SB__PERFORMANCE__UPDATE_PERFORMANCE_REQUEST__INIT;
    up.performance_id = "p1";
    up.title = "New title";
    up.n_schedules = 1;
    up.schedules = schedules;
    Sb__Performance__CreatePerformanceRequest create = SB__PERFORMANCE__CREATE_PERFORMANCE_REQUEST__INIT;
    sb_pb_copy_fields(a, &create.base, &up.base);
    cr_assert_str_eq(create.title, "New title");
    cr_assert_eq(create.n_schedules, 1);
    cr_assert_eq(create.schedules, schedules);
    cr_assert_eq(create.n_grades, 0);
}

Test(pb, copy_maps_enums_by_name)
{
    Sb__Performance__Performance p = SB__PERFORMANCE__PERFORMANCE__INIT;
    p.status = SB__PERFORMANCE__PERFORMANCE_STATUS__CANCELLED; /* 4 */
    Sb__Reservation__Reservation r = SB__RESERVATION__RESERVATION__INIT;
    sb_pb_copy_fields(a, &r.base, &p.base);
    cr_assert_eq(r.status, SB__RESERVATION__RESERVATION_STATUS__CANCELLED); /* 3 */

    p.status = SB__PERFORMANCE__PERFORMANCE_STATUS__APPROVED; /* no such reservation status */
    r.status = SB__RESERVATION__RESERVATION_STATUS__CONFIRMED;
    sb_pb_copy_fields(a, &r.base, &p.base);
    cr_assert_eq(r.status, SB__RESERVATION__RESERVATION_STATUS__CONFIRMED);
}

Test(pb, copy_takes_only_the_set_oneof_member)
{
    Sb__Test__Kitchen src = SB__TEST__KITCHEN__INIT, dst = SB__TEST__KITCHEN__INIT;
    src.target_case = SB__TEST__KITCHEN__TARGET_QUANTITY;
    src.quantity = 5;
    sb_pb_copy_fields(a, &dst.base, &src.base);
    cr_assert_eq(dst.target_case, SB__TEST__KITCHEN__TARGET_QUANTITY);
    cr_assert_eq(dst.quantity, 5);
}

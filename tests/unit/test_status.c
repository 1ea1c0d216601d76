/* The status table (sb/status.h) and enum names through descriptors (sb/enum.h). */
#include <criterion/criterion.h>
#include <grpc/status.h>

#include "kitchen.pb-c.h"
#include "sb/enum.h"
#include "sb/status.h"

/* The enum must stay equal to the canonical gRPC codes: a status crosses the
 * wire by number. */
Test(status, numbers_equal_grpc_codes)
{
    cr_assert_eq(SB_OK, GRPC_STATUS_OK);
    cr_assert_eq(SB_INVALID_ARGUMENT, GRPC_STATUS_INVALID_ARGUMENT);
    cr_assert_eq(SB_DEADLINE_EXCEEDED, GRPC_STATUS_DEADLINE_EXCEEDED);
    cr_assert_eq(SB_NOT_FOUND, GRPC_STATUS_NOT_FOUND);
    cr_assert_eq(SB_ALREADY_EXISTS, GRPC_STATUS_ALREADY_EXISTS);
    cr_assert_eq(SB_PERMISSION_DENIED, GRPC_STATUS_PERMISSION_DENIED);
    cr_assert_eq(SB_RESOURCE_EXHAUSTED, GRPC_STATUS_RESOURCE_EXHAUSTED);
    cr_assert_eq(SB_FAILED_PRECONDITION, GRPC_STATUS_FAILED_PRECONDITION);
    cr_assert_eq(SB_ABORTED, GRPC_STATUS_ABORTED);
    cr_assert_eq(SB_UNIMPLEMENTED, GRPC_STATUS_UNIMPLEMENTED);
    cr_assert_eq(SB_INTERNAL, GRPC_STATUS_INTERNAL);
    cr_assert_eq(SB_UNAVAILABLE, GRPC_STATUS_UNAVAILABLE);
    cr_assert_eq(SB_UNAUTHENTICATED, GRPC_STATUS_UNAUTHENTICATED);
}

Test(status, names)
{
    cr_assert_str_eq(sb_status_name(SB_NOT_FOUND), "NOT_FOUND");
    cr_assert_str_eq(sb_status_name(SB_UNAUTHENTICATED), "UNAUTHENTICATED");
    cr_assert_str_eq(sb_status_name((sb_status_t)99), "UNKNOWN");
    cr_assert_str_eq(sb_status_name((sb_status_t)-1), "UNKNOWN");
}

/* The one status -> HTTP table (the gateway answers with it). */
Test(status, http_table)
{
    cr_expect_eq(sb_status_http(SB_OK), 200);
    cr_expect_eq(sb_status_http(SB_INVALID_ARGUMENT), 400);
    cr_expect_eq(sb_status_http(SB_UNAUTHENTICATED), 401);
    cr_expect_eq(sb_status_http(SB_PERMISSION_DENIED), 403);
    cr_expect_eq(sb_status_http(SB_NOT_FOUND), 404);
    cr_expect_eq(sb_status_http(SB_ALREADY_EXISTS), 409);
    cr_expect_eq(sb_status_http(SB_ABORTED), 409);
    cr_expect_eq(sb_status_http(SB_RESOURCE_EXHAUSTED), 429);
    cr_expect_eq(sb_status_http(SB_INTERNAL), 500);
    cr_expect_eq(sb_status_http(SB_UNIMPLEMENTED), 501);
    cr_expect_eq(sb_status_http(SB_UNAVAILABLE), 503);
    cr_expect_eq(sb_status_http(SB_DEADLINE_EXCEEDED), 504);
    cr_expect_eq(sb_status_http((sb_status_t)99), 500);
}

Test(status, http_comes_from_the_same_table)
{
    static const struct {
        sb_status_t st;
        int http;
    } cases[] = {
        {SB_OK, 200},           {SB_FAILED_PRECONDITION, 400}, {SB_ALREADY_EXISTS, 409},
        {SB_ABORTED, 409},      {SB_CANCELLED, 499},           {SB_DATA_LOSS, 500},
        {(sb_status_t)99, 500}, {(sb_status_t)-1, 500},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(sb_status_http(cases[i].st), cases[i].http, "%s", sb_status_name(cases[i].st));
    cr_expect_str_eq(sb_status_name(SB_FAILED_PRECONDITION), "FAILED_PRECONDITION");
}

Test(status, enum_names_through_descriptors)
{
    cr_expect_str_eq(sb_enum_name(&sb__test__grade__descriptor, SB__TEST__GRADE__VIP), "VIP");
    cr_expect_str_eq(sb_enum_name(&sb__test__grade__descriptor, SB__TEST__GRADE__R), "R");
    cr_expect_null(sb_enum_name(&sb__test__grade__descriptor, 42));
    cr_expect_eq(sb_enum_value(&sb__test__grade__descriptor, "R", -1), SB__TEST__GRADE__R);
    cr_expect_eq(sb_enum_value(&sb__test__grade__descriptor, "r", -1), -1, "case-sensitive");
    cr_expect_eq(sb_enum_value(&sb__test__grade__descriptor, "SB__TEST__GRADE__R", -1), -1,
                 "the .proto name only");
    cr_expect_eq(sb_enum_value(&sb__test__grade__descriptor, NULL, -1), -1);
}

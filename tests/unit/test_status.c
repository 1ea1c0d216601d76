#include <criterion/criterion.h>
#include <grpc/status.h>

#include "gateway.h"
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

/* The gateway's one status -> HTTP table. */
Test(status, http_table)
{
    cr_expect_eq(gw_http_status(SB_OK), 200);
    cr_expect_eq(gw_http_status(SB_INVALID_ARGUMENT), 400);
    cr_expect_eq(gw_http_status(SB_UNAUTHENTICATED), 401);
    cr_expect_eq(gw_http_status(SB_PERMISSION_DENIED), 403);
    cr_expect_eq(gw_http_status(SB_NOT_FOUND), 404);
    cr_expect_eq(gw_http_status(SB_ALREADY_EXISTS), 409);
    cr_expect_eq(gw_http_status(SB_ABORTED), 409);
    cr_expect_eq(gw_http_status(SB_RESOURCE_EXHAUSTED), 429);
    cr_expect_eq(gw_http_status(SB_INTERNAL), 500);
    cr_expect_eq(gw_http_status(SB_UNIMPLEMENTED), 501);
    cr_expect_eq(gw_http_status(SB_UNAVAILABLE), 503);
    cr_expect_eq(gw_http_status(SB_DEADLINE_EXCEEDED), 504);
    cr_expect_eq(gw_http_status((sb_status_t)99), 500);
}

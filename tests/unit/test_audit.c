/* The admin-audit checks every admin-acting handler shares (sb/audit.h): who
 * counts as acting as an admin, and which reasons are refused. The record
 * itself goes through the outbox (tests/e2e/test_admin_audit.py). */
#include <criterion/criterion.h>
#include <string.h>

#include "sb/audit.h"

static sb_rpc_ctx_t ctx_as(const char *user_id, const char *role)
{
    sb_rpc_ctx_t c = {0};
    c.method = "/sb.reservation.ReservationService/CancelReservation";
    c.trace_id = "t";
    c.user_id = user_id;
    c.user_role = role;
    sb_buf_init(&c.err);
    sb_buf_init(&c.detail);
    return c;
}

Test(audit, an_admin_acts_as_admin_only_on_what_is_not_theirs)
{
    sb_rpc_ctx_t adm = ctx_as("a1", "ADMIN"), user = ctx_as("u1", "USER"), svc = ctx_as("", "");
    cr_expect(sb_audit_as_admin(&adm, "u1"));
    cr_expect(sb_audit_as_admin(&adm, NULL));
    cr_expect_not(sb_audit_as_admin(&adm, "a1"));
    cr_expect_not(sb_audit_as_admin(&user, "u1"));
    cr_expect_not(sb_audit_as_admin(&user, "u2"));
    cr_expect_not(sb_audit_as_admin(&svc, "u1"));
}

Test(audit, a_reason_is_text_with_something_in_it_and_not_too_long)
{
    char longest[SB_AUDIT_REASON_MAX + 2];
    memset(longest, 'r', sizeof longest - 1);
    longest[SB_AUDIT_REASON_MAX] = '\0';
    const char *ok[] = {"x", "member called", "환불 요청", longest};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        sb_rpc_ctx_t c = ctx_as("a1", "ADMIN");
        cr_expect_eq(sb_audit_need_reason(&c, ok[i]), SB_OK, "%.40s: %s", ok[i], c.err.buf);
        sb_buf_release(&c.err);
    }
    longest[SB_AUDIT_REASON_MAX] = 'r';
    longest[SB_AUDIT_REASON_MAX + 1] = '\0';
    const char *bad[] = {NULL, "", " ", " \t\r\n ", "a\x01z", "line\nbreak", "\xff\xfe", longest};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sb_rpc_ctx_t c = ctx_as("a1", "ADMIN");
        cr_expect_eq(sb_audit_need_reason(&c, bad[i]), SB_INVALID_ARGUMENT, "case %zu", i);
        cr_expect(c.err.len && !strncmp(c.err.buf, "reason: ", 8), "case %zu: %s", i, c.err.buf);
        sb_buf_release(&c.err);
    }
}

Test(audit, a_record_outside_a_transaction_is_an_internal_error)
{
    sb_rpc_ctx_t c = ctx_as("a1", "ADMIN");
    sb_audit_t a = {.target_type = "reservation", .target_id = "r1", .reason = "why"};
    cr_expect_eq(sb_audit_record(&c, &a), SB_INTERNAL);
    cr_expect(strstr(c.detail.buf, "outside a transaction"), "%s", c.detail.buf);
    cr_expect_eq(c.err.len, 0);
    sb_buf_release(&c.detail);
}

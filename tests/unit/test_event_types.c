/* The platform's event table (event_types.c): the one place a type is paired
 * with its payload message, and the check every service's event rows pass
 * at start-up. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "sb/events.h"

static sb_status_t handler(sb_event_ctx_t *ev, const void *payload)
{
    (void)ev;
    (void)payload;
    return SB_OK;
}

/* "member.password_changed" -> "MemberPasswordChanged" */
static void camel(const char *type, char *out, size_t n)
{
    size_t o = 0;
    bool up = true;
    for (const char *p = type; *p && o + 1 < n; p++) {
        if (*p == '.' || *p == '_') {
            up = true;
            continue;
        }
        out[o++] = up ? (char)toupper((unsigned char)*p) : *p;
        up = false;
    }
    out[o] = '\0';
}

Test(event_types, every_type_has_a_topic_and_its_own_message_named_after_it)
{
    size_t n;
    const sb_event_type_t *t = sb_event_types(&n);
    cr_assert_gt(n, 10);
    for (size_t i = 0; i < n; i++) {
        char topic[128], name[128];
        cr_assert(sb_event_topic(t[i].type, topic, sizeof topic), "%s", t[i].type);
        cr_assert_not_null(t[i].payload, "%s", t[i].type);
        camel(t[i].type, name, sizeof name);
        cr_assert_str_eq(t[i].payload->short_name, name, "%s", t[i].type);
        cr_assert_str_eq(t[i].payload->package_name, "sb.events");
        cr_assert_eq(sb_event_payload_of(t[i].type), t[i].payload);
        for (size_t j = 0; j < i; j++) {
            cr_assert_str_neq(t[i].type, t[j].type);
            cr_assert_neq(t[i].payload, t[j].payload);
        }
    }
    cr_assert_null(sb_event_payload_of("member.unheard_of"));
    cr_assert_null(sb_event_payload_of(""));
    cr_assert_null(sb_event_payload_of(NULL));
}

Test(event_types, a_service_table_is_checked_against_the_platforms)
{
    sb_buf_t err = SB_BUF_INIT;
    static const sb_event_handler_t good[] = {
        {"performance.approved", &sb__events__performance_approved__descriptor, handler},
        {"performance.cancelled", &sb__events__performance_cancelled__descriptor, handler},
    };
    sb_event_table_t t = {good, 2, NULL};
    cr_assert_eq(sb_event_table_check(&t, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(sb_event_table_find(&t, "performance.cancelled"), &good[1]);
    cr_assert_null(sb_event_table_find(&t, "performance.changed"));

    static const sb_event_handler_t unknown[] = {
        {"performance.archived", &sb__events__performance_approved__descriptor, handler}};
    static const sb_event_handler_t wrong_payload[] = {
        {"performance.changed", &sb__events__performance_approved__descriptor, handler}};
    static const sb_event_handler_t twice[] = {
        {"member.withdrawn", &sb__events__member_withdrawn__descriptor, handler},
        {"member.withdrawn", &sb__events__member_withdrawn__descriptor, handler}};
    static const sb_event_handler_t no_fn[] = {
        {"member.withdrawn", &sb__events__member_withdrawn__descriptor, NULL}};
    const struct {
        const sb_event_handler_t *rows;
        size_t n;
        const char *says;
    } bad[] = {{unknown, 1, "not an event type"},
               {wrong_payload, 1, "PerformanceChanged"},
               {twice, 2, "twice"},
               {no_fn, 1, "no handler"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sb_buf_reset(&err);
        t = (sb_event_table_t){bad[i].rows, bad[i].n, NULL};
        cr_assert_eq(sb_event_table_check(&t, &err), SB_INVALID_ARGUMENT, "case %zu", i);
        cr_assert(strstr(err.buf, bad[i].says), "case %zu: %s", i, err.buf);
    }
    sb_buf_release(&err);
}

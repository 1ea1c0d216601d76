/* sb/template.h (placeholders) and sb_mail_format (sb/mail.h): pure logic. */
#include <criterion/criterion.h>
#include <string.h>

#include "sb/mail.h"
#include "sb/template.h"

static const char *lookup(void *arg, const char *name)
{
    (void)arg;
    if (!strcmp(name, "title"))
        return "햄릿";
    if (!strcmp(name, "amount"))
        return "150,000원";
    return NULL;
}

Test(template, placeholders_unknown_names_and_braces)
{
    sb_arena_t *a = sb_arena_new();
    cr_assert_str_eq(sb_template_render(a, "[{title}] {amount}", lookup, NULL), "[햄릿] 150,000원");
    /* unknown names, bad names, "{{" and a lone brace stay as written */
    cr_assert_str_eq(sb_template_render(a, "{nope} {Title} {{title} {", lookup, NULL),
                     "{nope} {Title} {title} {");
    cr_assert_str_eq(sb_template_render(a, "", lookup, NULL), "");
    sb_arena_free(a);
}

Test(template, file_find)
{
    static const sb_file_t items[] = {{"en/a.txt", "A", 1}, {"ko/a.txt", "가", 3}};
    const sb_file_set_t set = {items, 2};
    cr_assert_eq(sb_file_find(&set, "ko/a.txt"), &items[1]);
    cr_assert_null(sb_file_find(&set, "fr/a.txt"));
}

Test(mail, format_encodes_the_subject_and_ends_lines_with_crlf)
{
    sb_buf_t out = SB_BUF_INIT, err = SB_BUF_INIT;
    sb_mail_t m = {.from = "noreply@showbook.test",
                   .to = "kim@example.com",
                   .subject = "[ShowBook] 예약 확정",
                   .body = "첫 줄\n.둘째\r\n끝",
                   .message_id = "<n1@showbook.test>"};
    cr_assert_eq(sb_mail_format(&m, 0, &out, &err), SB_OK, "%s", err.buf);
    cr_assert(strstr(out.buf, "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
    cr_assert(strstr(out.buf, "Message-ID: <n1@showbook.test>\r\n"));
    /* "[ShowBook] 예약 확정" in UTF-8, base64 */
    cr_assert(strstr(out.buf, "Subject: =?UTF-8?B?W1Nob3dCb29rXSDsmIjslb0g7ZmV7KCV?=\r\n"), "%s",
              out.buf);
    cr_assert(strstr(out.buf, "charset=UTF-8"));
    cr_assert(strstr(out.buf, "\r\n\r\n첫 줄\r\n.둘째\r\n끝\r\n"), "%s", out.buf);
    sb_buf_release(&out);

    m.subject = "plain ascii";
    cr_assert_eq(sb_mail_format(&m, 0, &out, &err), SB_OK);
    cr_assert(strstr(out.buf, "Subject: plain ascii\r\n"));
    sb_buf_release(&out);
    sb_buf_release(&err);
}

Test(mail, header_injection_refused)
{
    sb_buf_t out = SB_BUF_INIT, err = SB_BUF_INIT;
    sb_mail_t m = {.from = "a@b.test",
                   .to = "kim@example.com\r\nBcc: x@evil.test",
                   .subject = "s",
                   .body = "b",
                   .message_id = "<x@b.test>"};
    cr_assert_eq(sb_mail_format(&m, 0, &out, &err), SB_INVALID_ARGUMENT);
    m.to = "kim@example.com";
    m.subject = "s\nBcc: x@evil.test";
    cr_assert_eq(sb_mail_format(&m, 0, &out, &err), SB_INVALID_ARGUMENT);
    cr_assert_eq(sb_mail_send(&(sb_mail_t){.url = "http://x",
                                           .from = "a@b.test",
                                           .to = "k@e.test",
                                           .subject = "s",
                                           .body = "b",
                                           .message_id = "<x@b.test>"},
                              &err),
                 SB_INVALID_ARGUMENT);
    sb_buf_release(&out);
    sb_buf_release(&err);
}

#include <criterion/criterion.h>
#include <string.h>

#include "sb/buf.h"

Test(buf, starts_empty_and_never_null)
{
    sb_buf_t b = SB_BUF_INIT;
    cr_assert_not_null(b.buf);
    cr_assert_eq(b.len, 0);
    cr_assert_str_eq(b.buf, "");
    sb_buf_release(&b);
    cr_assert_str_eq(b.buf, "");
}

Test(buf, appends_and_formats)
{
    sb_buf_t b = SB_BUF_INIT;
    sb_buf_adds(&b, "seat ");
    sb_buf_addf(&b, "%s-%d", "A", 12);
    sb_buf_addch(&b, '!');
    cr_assert_str_eq(b.buf, "seat A-12!");
    cr_assert_eq(b.len, strlen("seat A-12!"));
    sb_buf_reset(&b);
    cr_assert_eq(b.len, 0);
    cr_assert_str_eq(b.buf, "");
    sb_buf_release(&b);
}

Test(buf, grows_past_many_chunks)
{
    sb_buf_t b = SB_BUF_INIT;
    for (int i = 0; i < 10000; i++)
        sb_buf_addf(&b, "%04d", i % 10000);
    cr_assert_eq(b.len, 40000);
    cr_assert_eq(strncmp(b.buf + 4 * 9999, "9999", 4), 0);
    sb_buf_release(&b);
}

Test(buf, json_string_escapes_controls_and_quotes)
{
    sb_buf_t b = SB_BUF_INIT;
    const char in[] = "a\"b\\c\n\x01";
    sb_buf_add_json_str(&b, in, sizeof in - 1);
    cr_assert_str_eq(b.buf, "\"a\\\"b\\\\c\\n\\u0001\"");
    sb_buf_release(&b);
}

Test(buf, detach_hands_over_ownership)
{
    sb_buf_t b = SB_BUF_INIT;
    sb_buf_adds(&b, "mine");
    size_t n;
    char *s = sb_buf_detach(&b, &n);
    cr_assert_str_eq(s, "mine");
    cr_assert_eq(n, 4);
    cr_assert_eq(b.len, 0);
    cr_assert_str_eq(b.buf, "");
    free(s);
    /* detaching an empty buffer still gives a heap string */
    s = sb_buf_detach(&b, NULL);
    cr_assert_str_eq(s, "");
    free(s);
}

/* Checks on text that reaches the inventory tables, and the array literals
 * the event handler passes as parameters. UUIDs and RFC 3339 times, which
 * reach SQL casts (::uuid, ::timestamptz), are checked with sb/valid.h so a
 * bad value is refused by name instead of failing a statement. */
#include <string.h>

#include "reservation.h"
#include "sb/valid.h"

bool resv_is_text(const char *s, size_t max_bytes)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n <= max_bytes && sb_valid_utf8_text(s, false, NULL);
}

void resv_pg_array(sb_buf_t *out, const char *const *items, size_t n)
{
    sb_buf_addch(out, '{');
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_buf_addch(out, ',');
        sb_buf_addch(out, '"');
        for (const char *p = items[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                sb_buf_addch(out, '\\');
            sb_buf_addch(out, *p);
        }
        sb_buf_addch(out, '"');
    }
    sb_buf_addch(out, '}');
}

/* Checks on values that reach SQL casts (::uuid, ::timestamptz), so a bad
 * value is refused by name instead of failing a statement, and the array
 * literals the event handler passes as parameters. */
#include <string.h>

#include "reservation.h"

static bool hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

bool resv_is_uuid(const char *s)
{
    if (!s || strlen(s) != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !hex((unsigned char)s[i]))
            return false;
    }
    return true;
}

char *resv_uuid_norm(sb_arena_t *a, const char *s)
{
    if (!resv_is_uuid(s))
        return NULL;
    char *out = sb_arena_strdup(a, s);
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    return out;
}

/* n digits at s as a number; -1 if any is not a digit. */
static int num(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!digit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

bool resv_is_rfc3339(const char *s)
{
    if (!s || strlen(s) < 20 || strlen(s) > 40)
        return false;
    int y = num(s, 4), mo = num(s + 5, 2), d = num(s + 8, 2);
    int h = num(s + 11, 2), mi = num(s + 14, 2), sec = num(s + 17, 2);
    if (s[4] != '-' || s[7] != '-' || !strchr("Tt ", s[10]) || s[13] != ':' || s[16] != ':')
        return false;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h < 0 || h > 23 ||
        mi < 0 || mi > 59 || sec < 0 || sec > 59)
        return false;
    const char *p = s + 19;
    if (*p == '.') {
        size_t n = strspn(p + 1, "0123456789");
        if (n < 1 || n > 9)
            return false;
        p += 1 + n;
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return true;
    if (*p != '+' && *p != '-')
        return false;
    int oh = num(p + 1, 2), om = num(p + 4, 2);
    return p[3] == ':' && p[6] == '\0' && oh >= 0 && oh <= 15 && om >= 0 && om <= 59;
}

bool resv_is_text(const char *s, size_t max_bytes)
{
    if (!s)
        return false;
    size_t n = strlen(s);
    if (n < 1 || n > max_bytes)
        return false;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char b = *p;
        size_t len;
        unsigned char lo = 0x80, hi = 0xBF;
        if (b < 0x80) {
            if (b < 0x20 || b == 0x7F)
                return false;
            len = 1;
        } else if (b >= 0xC2 && b <= 0xDF) {
            len = 2;
            if (b == 0xC2)
                lo = 0xA0; /* no C1 controls */
        } else if (b >= 0xE0 && b <= 0xEF) {
            len = 3;
            if (b == 0xE0)
                lo = 0xA0;
            else if (b == 0xED)
                hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            len = 4;
            if (b == 0xF0)
                lo = 0x90;
            else if (b == 0xF4)
                hi = 0x8F;
        } else {
            return false;
        }
        if (len > 1 && (p[1] < lo || p[1] > hi))
            return false;
        for (size_t i = 2; i < len; i++)
            if (p[i] < 0x80 || p[i] > 0xBF)
                return false;
        p += len;
    }
    return true;
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

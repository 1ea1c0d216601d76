#include "sb/valid.h"

#include <stdio.h>
#include <string.h>

#include "sb/enum.h"
#include "sb/util.h"

/* ASCII only, whatever the locale. */
static bool ascii_xdigit(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* ------------------------------------------------------------------ UUIDs */

bool sb_valid_uuid(const char *s)
{
    if (!s || strlen(s) != SB_UUID_LEN)
        return false;
    for (size_t i = 0; i < SB_UUID_LEN; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !ascii_xdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

char *sb_uuid_norm(sb_arena_t *a, const char *s)
{
    if (!sb_valid_uuid(s))
        return NULL;
    char *out = sb_arena_strdup(a, s);
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    return out;
}

bool sb_page_token_parse(sb_arena_t *a, const char *token, char **after_us, char **after_id)
{
    *after_us = *after_id = NULL;
    if (!token || !*token)
        return true;
    const char *dot = strchr(token, '.');
    size_t digits = dot ? strspn(token, "0123456789") : 0;
    if (!dot || digits == 0 || digits > 18 || token + digits != dot ||
        !(*after_id = sb_uuid_norm(a, dot + 1)))
        return false;
    *after_us = sb_arena_strndup(a, token, digits);
    return true;
}

/* ------------------------------------------------------------------- text */

bool sb_valid_utf8_text(const char *s, bool multiline, size_t *chars)
{
    if (!s)
        return false;
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    while (*p) {
        unsigned char b = *p;
        size_t len;
        unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (b < 0x80) {
            bool ws = b == '\t' || b == '\n' || b == '\r';
            if ((b < 0x20 && !(multiline && ws)) || b == 0x7F)
                return false;
            len = 1;
        } else if (b >= 0xC2 && b <= 0xDF) { /* 0xC0, 0xC1: overlong */
            len = 2;
            if (b == 0xC2)
                lo = 0xA0; /* U+0080..U+009F are C1 controls */
        } else if (b >= 0xE0 && b <= 0xEF) {
            len = 3;
            if (b == 0xE0)
                lo = 0xA0; /* no overlong forms */
            else if (b == 0xED)
                hi = 0x9F; /* no surrogates */
        } else if (b >= 0xF0 && b <= 0xF4) {
            len = 4;
            if (b == 0xF0)
                lo = 0x90; /* no overlong forms */
            else if (b == 0xF4)
                hi = 0x8F; /* nothing above U+10FFFF */
        } else {
            return false;
        }
        /* A NUL ends the string and fails these range checks, so nothing
         * past it is read. */
        if (len > 1 && (p[1] < lo || p[1] > hi))
            return false;
        for (size_t i = 2; i < len; i++)
            if (p[i] < 0x80 || p[i] > 0xBF)
                return false;
        p += len;
        n++;
    }
    if (chars)
        *chars = n;
    return true;
}

/* ------------------------------------------------------------------ times */

/* n digits at s as a number into *out; false if any is not a digit (a NUL
 * included, so nothing past the end is read). */
static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int month_days(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

#define LAST_SECOND 253402300799LL /* 9999-12-31T23:59:59Z */
#define MAX_OFFSET_HOURS 15        /* PostgreSQL refuses +-16:00 and beyond */

bool sb_parse_rfc3339(const char *s, int64_t *unix_ms)
{
    int y, mo, d, h, mi, sec;
    size_t len = s ? strlen(s) : 0;
    if (len < 20 || len > 40)
        return false;
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || !(s[10] == 'T' || s[10] == 't' || s[10] == ' ') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &sec))
        return false;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || h > 23 || mi > 59 || sec > 59)
        return false;
    const char *p = s + 19;
    int ms = 0;
    if (*p == '.') {
        p++;
        int n = 0;
        while (*p >= '0' && *p <= '9') {
            if (n < 3)
                ms = ms * 10 + (*p - '0');
            n++;
            p++;
        }
        if (n == 0 || n > 9)
            return false;
        for (int i = n; i < 3; i++)
            ms *= 10;
    }
    int offset_min;
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        offset_min = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int oh, om;
        if (!digits(p + 1, 2, &oh) || !digits(p + 4, 2, &om) || oh > MAX_OFFSET_HOURS || om > 59)
            return false;
        offset_min = (oh * 60 + om) * (*p == '-' ? -1 : 1);
    } else {
        return false;
    }
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    if (secs > LAST_SECOND) /* an offset pushed it past year 9999 */
        return false;
    if (unix_ms)
        *unix_ms = secs * 1000 + ms;
    return true;
}

/* ------------------------------------------------------------------ roles */

/* Through the enum's descriptor (sb/enum.h); the zero value is "no role". */
const char *sb_role_name(Sb__Common__Role r)
{
    return r == SB__COMMON__ROLE__ROLE_UNSPECIFIED ? NULL
                                                   : sb_enum_name(&sb__common__role__descriptor, r);
}

Sb__Common__Role sb_role_parse(const char *name)
{
    return (Sb__Common__Role)sb_enum_value(&sb__common__role__descriptor, name,
                                           SB__COMMON__ROLE__ROLE_UNSPECIFIED);
}

const char *sb_page_request(sb_arena_t *a, int32_t page_size, const char *token, int def, int max,
                            sb_page_t *p)
{
    if (page_size < 0)
        return "pageSize must not be negative";
    p->size = page_size == 0 ? def : page_size > max ? max : page_size;
    if (!sb_page_token_parse(a, token, &p->after_us, &p->after_id))
        return "pageToken is not one this service issued";
    snprintf(p->limit, sizeof p->limit, "%d", p->size + 1);
    return NULL;
}

/* Shape checks and parsers shared by the services (common/src/valid.c):
 * UUIDs, UTF-8 text, RFC 3339 timestamps, role names, and the API table's
 * role bit built on them. Cases are data: one row per input. */
#include <criterion/criterion.h>
#include <string.h>

#include "sb/api.h"
#include "sb/arena.h"
#include "sb/util.h"
#include "sb/valid.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ UUIDs */

struct uuid_case {
    const char *s;
    const char *norm; /* the canonical form; NULL: not a UUID */
};

static const struct uuid_case uuid_cases[] = {
    {"123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-426614174000"},
    {"123E4567-E89B-12D3-A456-426614174000", "123e4567-e89b-12d3-a456-426614174000"},
    {"123e4567-E89b-12D3-a456-42661417400F", "123e4567-e89b-12d3-a456-42661417400f"},
    {"00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000"},
    {"FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", "ffffffff-ffff-ffff-ffff-ffffffffffff"},
    /* no version/variant check: any hex in any position */
    {"abcdef01-2345-6789-abcd-ef0123456789", "abcdef01-2345-6789-abcd-ef0123456789"},
    {NULL, NULL},
    {"", NULL},
    {"123e4567-e89b-12d3-a456-42661417400", NULL},   /* 35 characters */
    {"123e4567-e89b-12d3-a456-4266141740000", NULL}, /* 37 */
    {"123e4567e89b12d3a456426614174000", NULL},      /* no hyphens */
    {"123e4567e-89b-12d3-a456-426614174000", NULL},  /* hyphen one off */
    {"123e4567-e89b-12d3-a4564-26614174000", NULL},
    {"123e4567_e89b_12d3_a456_426614174000", NULL},
    {"123e4567-e89b-12d3-a456-4266141740-0", NULL}, /* extra hyphen */
    {"{23e4567-e89b-12d3-a456-42661417400}", NULL},
    {"{123e4567-e89b-12d3-a456-426614174000}", NULL},
    {"urn:uuid:123e4567-e89b-12d3-a456-426614174000", NULL},
    {"123e4567-e89b-12d3-a456-42661417400g", NULL},
    {"123e4567-e89b-12d3-a456-42661417400G", NULL},
    {"123e4567-e89b-12d3-a456-42661417400 ", NULL},
    {" 123e4567-e89b-12d3-a456-42661417400", NULL},
    {"123e4567-e89b-12d3-a456-42661417400\n", NULL},
    {"123e4567-e89b-12d3-a456-4266141740\xc3\xa9", NULL}, /* 36 bytes, not ASCII */
    {"------------------------------------", NULL},
};

Test(valid, uuid)
{
    sb_arena_t *a = sb_arena_new();
    for (size_t i = 0; i < N(uuid_cases); i++) {
        const struct uuid_case *c = &uuid_cases[i];
        bool want = c->norm != NULL;
        cr_expect_eq(sb_valid_uuid(c->s), want, "case %zu (%s): sb_valid_uuid should be %d", i,
                     c->s ? c->s : "NULL", want);
        char *got = sb_uuid_norm(a, c->s);
        if (want) {
            cr_expect(got != NULL && !strcmp(got, c->norm), "case %zu (%s): norm %s, want %s", i, c->s,
                      got ? got : "NULL", c->norm);
            cr_expect(got != c->s, "case %zu: norm must be a copy", i);
        } else {
            cr_expect_null(got, "case %zu (%s): norm should be NULL", i, c->s ? c->s : "NULL");
        }
    }
    sb_arena_free(a);
}

/* ------------------------------------------------------------------- text */

struct text_case {
    const char *s;
    bool multiline;
    bool ok;
    size_t chars; /* when ok */
};

static const struct text_case text_cases[] = {
    {"", false, true, 0},
    {"abc", false, true, 3},
    {" ~!", false, true, 3},                                  /* printable ASCII edges */
    {"caf\xc3\xa9", false, true, 4},                          /* U+00E9 */
    {"\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4", false, true, 3}, /* 3 Hangul syllables */
    {"\xf0\x9f\x98\x80", false, true, 1},                     /* U+1F600 */
    {"\xc2\xa0", false, true, 1},                             /* U+00A0: first past C1 */
    {"\xdf\xbf", false, true, 1},                             /* U+07FF */
    {"\xe0\xa0\x80", false, true, 1},                         /* U+0800: shortest 3-byte */
    {"\xed\x9f\xbf", false, true, 1},                         /* U+D7FF: last before surrogates */
    {"\xee\x80\x80", false, true, 1},                         /* U+E000: first after them */
    {"\xef\xbf\xbd", false, true, 1},                         /* U+FFFD */
    {"\xef\xbf\xbf", false, true, 1},                         /* U+FFFF (a noncharacter, still UTF-8) */
    {"\xf0\x90\x80\x80", false, true, 1},                     /* U+10000: shortest 4-byte */
    {"\xf4\x8f\xbf\xbf", false, true, 1},                     /* U+10FFFF: the last */
    {"a\tb\r\nc", true, true, 6},                             /* multiline: tab, CR, LF */
    {"\n", true, true, 1},
    /* control characters */
    {"a\tb", false, false, 0},
    {"a\nb", false, false, 0},
    {"\r", false, false, 0},
    {"\x01", false, false, 0},
    {"\x01", true, false, 0},
    {"\x1f", true, false, 0},
    {"\x0b", true, false, 0},  /* vertical tab is no newline */
    {"\x7f", false, false, 0}, /* DEL */
    {"\x7f", true, false, 0},
    {"\xc2\x80", false, false, 0}, /* U+0080: C1 */
    {"\xc2\x85", true, false, 0},  /* U+0085 NEL: C1 even in multiline */
    {"\xc2\x9f", false, false, 0}, /* U+009F: last C1 */
    /* overlong forms */
    {"\xc0\xaf", false, false, 0}, /* '/' in 2 bytes */
    {"\xc0\x80", false, false, 0}, /* NUL in 2 bytes */
    {"\xc1\xbf", false, false, 0},
    {"\xe0\x80\xaf", false, false, 0},
    {"\xe0\x9f\xbf", false, false, 0}, /* U+07FF in 3 bytes */
    {"\xf0\x80\x80\xaf", false, false, 0},
    {"\xf0\x8f\xbf\xbf", false, false, 0}, /* U+FFFF in 4 bytes */
    /* surrogates */
    {"\xed\xa0\x80", false, false, 0},             /* U+D800 */
    {"\xed\xaf\xbf", false, false, 0},             /* U+DBFF */
    {"\xed\xb0\x80", false, false, 0},             /* U+DC00 */
    {"\xed\xbf\xbf", false, false, 0},             /* U+DFFF */
    {"\xed\xa0\xbd\xed\xb8\x80", false, false, 0}, /* CESU-8 pair for U+1F600 */
    /* beyond U+10FFFF, bytes that never occur */
    {"\xf4\x90\x80\x80", false, false, 0},
    {"\xf5\x80\x80\x80", false, false, 0},
    {"\xf8\x88\x80\x80\x80", false, false, 0},
    {"\xfe", false, false, 0},
    {"\xff", false, false, 0},
    /* truncated and broken sequences */
    {"\xc3", false, false, 0},
    {"caf\xc3", false, false, 0},
    {"\xe2\x82", false, false, 0},
    {"\xf0\x9f\x98", false, false, 0},
    {"\x80", false, false, 0}, /* lone continuation byte */
    {"a\xbf", false, false, 0},
    {"\xc3\x28", false, false, 0}, /* second byte not a continuation */
    {"\xe2\x28\xa1", false, false, 0},
    {"\xe2\x82\x28", false, false, 0},
    {"\xf0\x9f\x98\x28", false, false, 0},
    {"\xc3\xa9\xc3", false, false, 0},
};

Test(valid, utf8_text)
{
    for (size_t i = 0; i < N(text_cases); i++) {
        const struct text_case *c = &text_cases[i];
        size_t chars = 12345;
        bool ok = sb_valid_utf8_text(c->s, c->multiline, &chars);
        cr_expect_eq(ok, c->ok, "case %zu: got %d, want %d", i, ok, c->ok);
        if (c->ok)
            cr_expect_eq(chars, c->chars, "case %zu: %zu characters, want %zu", i, chars, c->chars);
        else
            cr_expect_eq(chars, 12345, "case %zu: *chars changed on failure", i);
        cr_expect_eq(sb_valid_utf8_text(c->s, c->multiline, NULL), c->ok, "case %zu without chars", i);
    }
    size_t chars = 7;
    cr_expect_not(sb_valid_utf8_text(NULL, false, &chars));
    cr_expect_not(sb_valid_utf8_text(NULL, true, NULL));
    cr_expect_eq(chars, 7);
}

/* ------------------------------------------------------------------ times */

struct time_case {
    const char *s;
    bool ok;
    int64_t ms; /* when ok */
};

#define T_2026_11_24_0900 1795510800000LL

static const struct time_case time_cases[] = {
    {"1970-01-01T00:00:00Z", true, 0},
    {"1970-01-01T00:00:00.000Z", true, 0},
    {"1969-12-31T23:59:59.999Z", true, -1},
    {"2026-11-24T09:00:00Z", true, T_2026_11_24_0900},
    {"2026-11-24T09:00:00.123Z", true, T_2026_11_24_0900 + 123},
    /* offsets: the same instant */
    {"2026-11-24T18:00:00.123+09:00", true, T_2026_11_24_0900 + 123},
    {"2026-11-24T00:30:00.123-08:30", true, T_2026_11_24_0900 + 123},
    {"2026-11-24T09:00:00+00:00", true, T_2026_11_24_0900},
    {"2026-11-24T09:00:00-00:00", true, T_2026_11_24_0900},
    {"2026-11-25T00:59:00+15:59", true, T_2026_11_24_0900},
    {"2026-11-23T17:01:00-15:59", true, T_2026_11_24_0900},
    {"2026-11-25T00:00:00+15:00", true, T_2026_11_24_0900},
    /* separators and letters RFC 3339 §5.6 allows */
    {"2026-11-24t09:00:00z", true, T_2026_11_24_0900},
    {"2026-11-24 09:00:00Z", true, T_2026_11_24_0900},
    /* fractions: 1..9 digits, truncated to the millisecond */
    {"2026-11-24T09:00:00.1Z", true, T_2026_11_24_0900 + 100},
    {"2026-11-24T09:00:00.12Z", true, T_2026_11_24_0900 + 120},
    {"2026-11-24T09:00:00.9999Z", true, T_2026_11_24_0900 + 999},
    {"2026-11-24T09:00:00.123456789Z", true, T_2026_11_24_0900 + 123},
    {"2026-11-24T18:00:00.123456789+09:00", true, T_2026_11_24_0900 + 123},
    /* leap days */
    {"2024-02-29T00:00:00Z", true, 1709164800000LL},
    {"2000-02-29T12:34:56Z", true, 951827696000LL},
    /* the range */
    {"0001-01-01T00:00:00Z", true, -62135596800000LL},
    {"9999-12-31T23:59:59Z", true, 253402300799000LL},
    {"9999-12-31T23:59:59.999Z", true, 253402300799999LL},
    {"9999-12-31T23:59:59+01:00", true, 253402297199000LL},
    {"2026-12-31T23:59:59Z", true, 1798761599000LL},
    {"2026-01-31T00:00:00Z", true, 1769817600000LL},

    {NULL, false, 0},
    {"", false, 0},
    {"2026-11-24", false, 0},
    {"2026-11-24T09:00:00", false, 0}, /* no offset */
    {"2026-11-24T09:00Z", false, 0},   /* no seconds */
    {"2026-11-24T09:00:00+", false, 0},
    {"2026-11-24T09:00:00+0", false, 0},
    {"2026-11-24T09:00:00+09", false, 0},
    {"2026-11-24T09:00:00+0900", false, 0},
    {"2026-11-24T09:00:00+9:00", false, 0},
    {"2026-11-24T09:00:00+09:00:00", false, 0},
    {"2026-11-24T09:00:00+09:0x", false, 0},
    {"2026-11-24T09:00:00 +09:00", false, 0},
    {"2026-11-24T09:00:00ZZ", false, 0},
    {"2026-11-24T09:00:00Z ", false, 0},
    {"2026-11-24T09:00:00UTC", false, 0},
    {" 2026-11-24T09:00:00Z", false, 0},
    {"2026-11-24X09:00:00Z", false, 0},
    {"2026/11/24T09:00:00Z", false, 0},
    {"2026-11-24T09.00.00Z", false, 0},
    {"2026-1-24T09:00:00.0Z", false, 0},
    {"+2026-11-24T09:00:00Z", false, 0},
    {"20260-11-24T09:00:00Z", false, 0},
    {"2026-11-24T09:00:00.Z", false, 0}, /* empty fraction */
    {"2026-11-24T09:00:00,5Z", false, 0},
    {"2026-11-24T09:00:00.1234567890Z", false, 0},                   /* 10 fraction digits */
    {"2026-11-24T09:00:00.00000000000000000000000+09:00", false, 0}, /* > 40 bytes */
    /* impossible dates and times */
    {"2023-02-29T00:00:00Z", false, 0},
    {"1900-02-29T00:00:00Z", false, 0}, /* century, not leap */
    {"2026-02-30T00:00:00Z", false, 0},
    {"2026-04-31T00:00:00Z", false, 0},
    {"2026-06-31T00:00:00Z", false, 0},
    {"2026-09-31T00:00:00Z", false, 0},
    {"2026-11-31T00:00:00Z", false, 0},
    {"2026-01-32T00:00:00Z", false, 0},
    {"2026-13-01T00:00:00Z", false, 0},
    {"2026-00-10T00:00:00Z", false, 0},
    {"2026-01-00T00:00:00Z", false, 0},
    {"0000-01-01T00:00:00Z", false, 0},
    {"2026-01-01T24:00:00Z", false, 0},
    {"2026-01-01T23:60:00Z", false, 0},
    {"2016-12-31T23:59:60Z", false, 0}, /* leap second */
    {"2026-01-01T-1:00:00Z", false, 0},
    /* offsets out of range */
    {"2026-01-01T00:00:00+16:00", false, 0},
    {"2026-01-01T00:00:00-16:00", false, 0},
    {"2026-01-01T00:00:00+23:59", false, 0},
    {"2026-01-01T00:00:00+24:00", false, 0},
    {"2026-01-01T00:00:00+09:60", false, 0},
    /* past 9999-12-31T23:59:59.999Z once the offset is applied */
    {"9999-12-31T23:59:59-00:01", false, 0},
    {"9999-12-31T23:30:00-01:00", false, 0},
};

Test(valid, rfc3339)
{
    for (size_t i = 0; i < N(time_cases); i++) {
        const struct time_case *c = &time_cases[i];
        int64_t ms = 424242;
        bool ok = sb_parse_rfc3339(c->s, &ms);
        cr_expect_eq(ok, c->ok, "case %zu (%s): got %d, want %d", i, c->s ? c->s : "NULL", ok, c->ok);
        if (c->ok)
            cr_expect_eq(ms, c->ms, "case %zu (%s): %lld ms, want %lld", i, c->s, (long long)ms,
                         (long long)c->ms);
        else
            cr_expect_eq(ms, 424242, "case %zu (%s): *unix_ms changed on failure", i,
                         c->s ? c->s : "NULL");
        cr_expect_eq(sb_parse_rfc3339(c->s, NULL), c->ok, "case %zu: predicate form", i);
    }
}

/* What sb_time_rfc3339 prints, sb_parse_rfc3339 reads back. */
Test(valid, rfc3339_round_trip)
{
    static const int64_t ms[] = {
        0, 1, 999, 1795510800123LL, 951827696000LL, 253402300799999LL, 1709164799999LL};
    for (size_t i = 0; i < N(ms); i++) {
        char out[32];
        int64_t back = -1;
        sb_time_rfc3339(ms[i], out);
        cr_expect(sb_parse_rfc3339(out, &back), "%s does not parse", out);
        cr_expect_eq(back, ms[i], "%s: %lld, want %lld", out, (long long)back, (long long)ms[i]);
    }
}

/* ------------------------------------------------------------------ roles */

struct role_case {
    const char *name;
    Sb__Common__Role role;
    unsigned bit; /* sb_api_role_bit */
};

static const struct role_case role_cases[] = {
    {"USER", SB__COMMON__ROLE__USER, SB_ROLE_BIT_USER},
    {"PLANNER", SB__COMMON__ROLE__PLANNER, SB_ROLE_BIT_PLANNER},
    {"ADMIN", SB__COMMON__ROLE__ADMIN, SB_ROLE_BIT_ADMIN},
    {NULL, SB__COMMON__ROLE__ROLE_UNSPECIFIED, 0},
    {"", SB__COMMON__ROLE__ROLE_UNSPECIFIED, 0},
    {"user", SB__COMMON__ROLE__ROLE_UNSPECIFIED, 0},
    {"Admin", SB__COMMON__ROLE__ROLE_UNSPECIFIED, 0},
    {"ADMIN ", SB__COMMON__ROLE__ROLE_UNSPECIFIED, 0},
    {" USER", SB__COMMON__ROLE__ROLE_UNSPECIFIED, 0},
    {"ADMINISTRATOR", SB__COMMON__ROLE__ROLE_UNSPECIFIED, 0},
    {"ROLE_UNSPECIFIED", SB__COMMON__ROLE__ROLE_UNSPECIFIED, 0},
    {"GUEST", SB__COMMON__ROLE__ROLE_UNSPECIFIED, 0},
};

Test(valid, roles)
{
    for (size_t i = 0; i < N(role_cases); i++) {
        const struct role_case *c = &role_cases[i];
        const char *shown = c->name ? c->name : "NULL";
        cr_expect_eq(sb_role_parse(c->name), c->role, "case %zu (%s): parse", i, shown);
        cr_expect_eq(sb_api_role_bit(c->name), c->bit, "case %zu (%s): role bit", i, shown);
        if (c->role != SB__COMMON__ROLE__ROLE_UNSPECIFIED)
            cr_expect_str_eq(sb_role_name(c->role), c->name, "case %zu: name", i);
    }
    cr_expect_null(sb_role_name(SB__COMMON__ROLE__ROLE_UNSPECIFIED));
    cr_expect_null(sb_role_name((Sb__Common__Role)99));
    cr_expect_null(sb_role_name((Sb__Common__Role)-1));
}

/* Field rules for member data. Every rule runs before anything is hashed or
 * stored; the phrases returned follow the field name in the error message
 * ("name must be 1-100 characters"). */
#include <string.h>

#include "member.h"
#include "sb/valid.h"

#define LOGIN_ID_MIN 4
#define LOGIN_ID_MAX 32
#define NAME_MAX_CHARS 100
#define EMAIL_MAX 254
#define EMAIL_LOCAL_MAX 64
#define PHONE_MIN 7
#define PHONE_MAX 20

static const char login_id_rule[] = "must be 4-32 characters: letters, digits, '.', '_' or '-'";

/* ASCII only, whatever the locale. */
static bool ascii_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool login_id_char(unsigned char c)
{
    return ascii_alnum(c) || c == '.' || c == '_' || c == '-';
}

const char *member_login_id_problem(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < LOGIN_ID_MIN || n > LOGIN_ID_MAX)
        return login_id_rule;
    for (size_t i = 0; i < n; i++)
        if (!login_id_char((unsigned char)s[i]))
            return login_id_rule;
    return NULL;
}

char *member_login_id_fold(sb_arena_t *a, const char *s)
{
    if (member_login_id_problem(s))
        return NULL;
    char *out = sb_arena_strdup(a, s);
    for (char *p = out; *p; p++)
        *p = ascii_lower(*p);
    return out;
}

/* Bytes, not characters: the hash sees bytes, and the cap bounds its input. */
const char *member_password_problem(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < PW_MIN_BYTES)
        return "must be at least 8 characters";
    if (n > PW_MAX_BYTES)
        return "must be at most 128 bytes";
    return NULL;
}

const char *member_name_problem(const char *s)
{
    size_t chars;
    if (!sb_valid_utf8_text(s, false, &chars))
        return "must be text without control characters";
    if (chars < 1 || chars > NAME_MAX_CHARS)
        return "must be 1-100 characters";
    if (strspn(s, " ") == strlen(s))
        return "must not be blank";
    return NULL;
}

/* A plausible address, not RFC 5322: local@domain, one '@', no spaces or
 * quoting characters, a domain of two or more dot-separated labels made of
 * letters, digits, '-' (or non-ASCII, for internationalised names). */
const char *member_email_problem(const char *s)
{
    static const char bad[] = "must be an address like name@example.com (at most 254 characters)";
    size_t n = s ? strlen(s) : 0;
    if (n < 5 || n > EMAIL_MAX || !sb_valid_utf8_text(s, false, NULL))
        return bad;
    const char *at = strchr(s, '@');
    if (!at || strchr(at + 1, '@'))
        return bad;
    size_t local = (size_t)(at - s);
    if (local < 1 || local > EMAIL_LOCAL_MAX)
        return bad;
    for (const char *p = s; p < at; p++)
        if (*p == ' ' || strchr("\"(),:;<>[\\]", *p))
            return bad;
    const char *d = at + 1;
    size_t labels = 0, label_len = 0;
    for (const char *p = d;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '.' || c == '\0') {
            if (label_len == 0 || d[0] == '-' || p[-1] == '-')
                return bad;
            labels++;
            label_len = 0;
            if (c == '\0')
                break;
            d = p + 1;
            continue;
        }
        if (!(ascii_alnum(c) || c == '-' || c >= 0x80))
            return bad;
        label_len++;
    }
    return labels >= 2 ? NULL : bad;
}

/* Digits with optional separators: "+82 10-1234-5678". At least 7 digits;
 * '+' only in front. */
const char *member_phone_problem(const char *s)
{
    static const char bad[] = "must be 7-20 characters of digits, '+', '-' or spaces";
    size_t n = s ? strlen(s) : 0;
    if (n < PHONE_MIN || n > PHONE_MAX)
        return bad;
    size_t digits = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9')
            digits++;
        else if (!(c == '-' || c == ' ' || (c == '+' && i == 0)))
            return bad;
    }
    return digits >= PHONE_MIN ? NULL : bad;
}

const char *member_language_problem(const char *s)
{
    if (s && (!strcmp(s, "ko") || !strcmp(s, "en")))
        return NULL;
    return "must be \"ko\" or \"en\"";
}

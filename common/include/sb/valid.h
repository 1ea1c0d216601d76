/* Shape checks and parsers for values that cross a service boundary: UUIDs,
 * UTF-8 text, RFC 3339 timestamps and role names. Pure functions of their
 * arguments (no locale, no global state), safe from any thread. Every
 * predicate answers false for NULL. Field-specific rules (length limits,
 * blank checks, the phrase a client sees) stay with the service that owns
 * the field. */
#ifndef SB_VALID_H
#define SB_VALID_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.pb-c.h"
#include "sb/arena.h"

/* true when s is a textual UUID: exactly SB_UUID_LEN (36) characters, hex
 * digits of either case in the 8-4-4-4-12 groups, '-' at offsets 8, 13, 18
 * and 23. No braces, no "urn:uuid:", no version or variant check. */
bool sb_valid_uuid(const char *s);

/* The canonical (lower-case) copy of the UUID s, allocated in a (owned by a,
 * valid until sb_arena_free); NULL when !sb_valid_uuid(s). */
char *sb_uuid_norm(sb_arena_t *a, const char *s);

/* A keyset page token as the list RPCs issue it, "<created_at in µs>.<uuid>":
 * true with its two parts copied into a (the UUID canonical), or with both
 * NULL when token is NULL or "" (the first page); false when the token is not
 * of that shape (the caller answers INVALID_ARGUMENT). */
bool sb_page_token_parse(sb_arena_t *a, const char *token, char **after_us, char **after_id);

/* A keyset list request's page: page_size 0 is def, over max is max,
 * negative is refused; the token is parsed as above (into a); limit is the
 * SQL LIMIT text, size + 1 (one row more tells whether a next page exists).
 * NULL when both are fine, else the message for INVALID_ARGUMENT. */
typedef struct sb_page {
    int size;
    char *after_us, *after_id;
    char limit[16];
} sb_page_t;
const char *sb_page_request(sb_arena_t *a, int32_t page_size, const char *token, int def, int max,
                            sb_page_t *p);

/* true when s is well-formed UTF-8 (no overlong forms, no surrogates
 * U+D800..U+DFFF, nothing above U+10FFFF) without control characters: C0
 * (U+0000..U+001F), DEL (U+007F) and C1 (U+0080..U+009F) are refused, except
 * that multiline lets tab, LF and CR through. When it returns true and chars
 * is not NULL, *chars is the number of code points (the empty string is
 * valid, with 0); on false *chars is left alone. */
bool sb_valid_utf8_text(const char *s, bool multiline, size_t *chars);

/* Parses an RFC 3339 date-time, full-date "T" full-time:
 *   YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM)
 * 't', 'z' and a space in place of 'T' are accepted, as RFC 3339 §5.6's note
 * allows. Refused: years 0000, impossible dates (2023-02-29, 04-31), leap
 * seconds (":60"), hours > 23, minutes or seconds > 59, offsets beyond
 * +-15:59 (what PostgreSQL's timestamptz accepts; no zone is beyond +-14:00),
 * strings longer than 40 bytes, and instants after 9999-12-31T23:59:59.999Z
 * once the offset is applied (so sb_time_rfc3339 can print every result).
 * On success *unix_ms (when unix_ms is not NULL) is milliseconds since the
 * epoch, fraction digits past the third truncated; on failure it is left
 * alone. sb_parse_rfc3339(s, NULL) is the predicate. */
bool sb_parse_rfc3339(const char *s, int64_t *unix_ms);

/* "USER", "PLANNER" or "ADMIN" (static strings); NULL for ROLE_UNSPECIFIED
 * and anything else. */
const char *sb_role_name(Sb__Common__Role r);
/* The role named exactly (case-sensitively) by name; ROLE_UNSPECIFIED for
 * NULL or any other string. */
Sb__Common__Role sb_role_parse(const char *name);

#endif

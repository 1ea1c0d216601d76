/* Field rules for performances, page tokens, status names.
 * Every rule runs before anything touches the database; a problem is
 * reported as "<jsonField>: <what is wrong>" with the field named as in the
 * JSON form ("schedules[1].startsAt: must be in the future"). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "performance.h"
#include "sb/pb.h"
#include "sb/valid.h"

static bool ascii_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static const char *str(const char *s)
{
    return s ? s : "";
}

static bool blank(const char *s)
{
    return strspn(s, " \t\r\n") == strlen(s);
}

/* A one-line text of 1..max characters (0..max when !required), not blank. */
static const char *text_problem(sb_arena_t *a, const char *s, size_t max, bool required, bool multiline)
{
    size_t chars;
    if (!sb_valid_utf8_text(s, multiline, &chars))
        return multiline ? "must be UTF-8 text without control characters"
                         : "must be one line of UTF-8 text without control characters";
    if (!required)
        return chars > max ? sb_arena_printf(a, "must be at most %zu characters", max) : NULL;
    if (chars < 1 || chars > max)
        return sb_arena_printf(a, "must be 1-%zu characters", max);
    if (blank(s))
        return "must not be blank";
    return NULL;
}

const char *perf_reason_problem(const char *s, bool required)
{
    size_t chars;
    s = str(s);
    if (!sb_valid_utf8_text(s, true, &chars))
        return "must be UTF-8 text without control characters";
    if (required && (chars < 1 || blank(s)))
        return "is required (1-500 characters)";
    if (chars > PERF_REASON_MAX)
        return required ? "must be 1-500 characters" : "must be at most 500 characters";
    return NULL;
}

/* -------------------------------------------------------------- requests */

static sb_status_t bad(sb_buf_t *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static sb_status_t bad(sb_buf_t *msg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_buf_vaddf(msg, fmt, ap);
    va_end(ap);
    return SB_INVALID_ARGUMENT;
}

static const char time_rule[] = "must be an RFC 3339 timestamp such as 2030-01-31T19:30:00+09:00";

/* Given (non-empty) text fields of both requests. */
static sb_status_t check_texts(sb_arena_t *a, perf_in_t *in, bool create, sb_buf_t *msg)
{
    const char *problem;
    if ((create || in->title) &&
        (problem = text_problem(a, str(in->title), PERF_TITLE_MAX, true, false)))
        return bad(msg, "title: %s", problem);
    if (in->description &&
        (problem = text_problem(a, in->description, PERF_DESCRIPTION_MAX, false, true)))
        return bad(msg, "description: %s", problem);
    if ((create || in->venue) &&
        (problem = text_problem(a, str(in->venue), PERF_VENUE_MAX, true, false)))
        return bad(msg, "venue: %s", problem);
    if ((create || in->category) &&
        (problem = text_problem(a, str(in->category), PERF_CATEGORY_MAX, true, false)))
        return bad(msg, "category: %s", problem);
    if ((create || in->running_minutes != 0) &&
        (in->running_minutes < 1 || in->running_minutes > PERF_RUNNING_MAX))
        return bad(msg, "runningMinutes: must be 1-%d", PERF_RUNNING_MAX);
    return SB_OK;
}

static sb_status_t check_schedules(sb_arena_t *a, Sb__Performance__Schedule *const *s, size_t n,
                                   bool create, int64_t now_ms, perf_in_t *in, sb_buf_t *msg)
{
    if (n < 1 || n > PERF_SCHEDULES_MAX)
        return bad(msg, "schedules: must have 1-%d entries", PERF_SCHEDULES_MAX);
    in->has_schedules = true;
    in->n_sch = n;
    in->sch = sb_arena_alloc(a, n * sizeof *in->sch);
    for (size_t i = 0; i < n; i++) {
        sched_in_t *o = &in->sch[i];
        const char *id = str(s[i]->schedule_id), *at = str(s[i]->starts_at), *venue = str(s[i]->venue);
        const char *problem;
        if (*id) {
            if (create)
                return bad(msg, "schedules[%zu].scheduleId: must be empty when creating", i);
            if (!(o->id = sb_uuid_norm(a, id)))
                return bad(msg, "schedules[%zu].scheduleId: must be a UUID", i);
            for (size_t j = 0; j < i; j++)
                if (in->sch[j].id && !strcmp(in->sch[j].id, o->id))
                    return bad(msg, "schedules[%zu].scheduleId: listed twice (schedules[%zu])", i, j);
        }
        if (*at) {
            if (!sb_parse_rfc3339(at, &o->at_ms))
                return bad(msg, "schedules[%zu].startsAt: %s", i, time_rule);
            o->has_time = true;
        } else if (!o->id) {
            return bad(msg, "schedules[%zu].startsAt: is required", i);
        }
        /* A new schedule must lie ahead; a changed one is checked against
         * its stored time (perf_check_update's caller). */
        if (!o->id && o->at_ms <= now_ms)
            return bad(msg, "schedules[%zu].startsAt: must be in the future", i);
        if (*venue) {
            if ((problem = text_problem(a, venue, PERF_VENUE_MAX, true, false)))
                return bad(msg, "schedules[%zu].venue: %s", i, problem);
            o->venue = venue;
        }
    }
    if (create) {
        int64_t *times = sb_arena_alloc(a, n * sizeof *times);
        for (size_t i = 0; i < n; i++)
            times[i] = in->sch[i].at_ms;
        return perf_check_distinct_times(times, n, msg);
    }
    return SB_OK;
}

sb_status_t perf_check_distinct_times(const int64_t *times, size_t n, sb_buf_t *msg)
{
    /* n <= 100: quadratic is fine and names the first clash. */
    for (size_t i = 1; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (times[i] == times[j])
                return bad(msg, "schedules[%zu].startsAt: same time as schedules[%zu]", i, j);
    return SB_OK;
}

static bool same_grade(const char *x, const char *y)
{
    for (; *x && *y; x++, y++)
        if (ascii_lower(*x) != ascii_lower(*y))
            return false;
    return *x == *y;
}

static sb_status_t check_grades(sb_arena_t *a, Sb__Performance__SeatGrade *const *g, size_t n,
                                perf_in_t *in, sb_buf_t *msg)
{
    if (n < 1 || n > PERF_GRADES_MAX)
        return bad(msg, "grades: must have 1-%d entries", PERF_GRADES_MAX);
    in->has_grades = true;
    in->n_gr = n;
    in->gr = sb_arena_alloc(a, n * sizeof *in->gr);
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = str(g[i]->grade);
        size_t len = strlen(name);
        bool ok = len >= 1 && len <= PERF_GRADE_NAME_MAX;
        for (size_t k = 0; ok && k < len; k++)
            ok = ascii_alnum((unsigned char)name[k]);
        if (!ok)
            return bad(msg, "grades[%zu].grade: must be 1-%d letters or digits", i, PERF_GRADE_NAME_MAX);
        for (size_t j = 0; j < i; j++)
            if (same_grade(in->gr[j].grade, name))
                return bad(msg, "grades[%zu].grade: duplicate of grades[%zu]", i, j);
        if (g[i]->price < 0)
            return bad(msg, "grades[%zu].price: must be >= 0", i);
        if (g[i]->price > PERF_PRICE_MAX)
            return bad(msg, "grades[%zu].price: must be <= %d", i, PERF_PRICE_MAX);
        if (g[i]->seat_count < 1 || g[i]->seat_count > PERF_GRADE_SEATS_MAX)
            return bad(msg, "grades[%zu].seatCount: must be 1-%d", i, PERF_GRADE_SEATS_MAX);
        total += g[i]->seat_count;
        in->gr[i] = (grade_in_t){.grade = name, .price = g[i]->price, .seats = g[i]->seat_count};
    }
    if (total > PERF_SCHEDULE_SEATS_MAX)
        return bad(msg, "grades: the seatCounts add up to %lld; a schedule has at most %d seats",
                   (long long)total, PERF_SCHEDULE_SEATS_MAX);
    return SB_OK;
}

static const char *given(const char *s)
{
    return s && *s ? s : NULL;
}

/* Both requests' checks over a CreatePerformanceRequest's fields: every one
 * required (but description) on create, only the given ones on update. */
static sb_status_t check_request(sb_arena_t *a, const Sb__Performance__CreatePerformanceRequest *req,
                                 bool create, int64_t now_ms, perf_in_t *out, sb_buf_t *msg)
{
    const char *(*text)(const char *) = create ? str : given;
    memset(out, 0, sizeof *out);
    out->title = text(req->title);
    out->description = text(req->description);
    out->venue = text(req->venue);
    out->category = text(req->category);
    out->running_minutes = req->running_minutes;
    sb_status_t st = check_texts(a, out, create, msg);
    if (st == SB_OK && (create || req->n_schedules))
        st = check_schedules(a, req->schedules, req->n_schedules, create, now_ms, out, msg);
    if (st == SB_OK && (create || req->n_grades))
        st = check_grades(a, req->grades, req->n_grades, out, msg);
    return st;
}

sb_status_t perf_check_create(sb_arena_t *a, const Sb__Performance__CreatePerformanceRequest *req,
                              int64_t now_ms, perf_in_t *out, sb_buf_t *msg)
{
    return check_request(a, req, true, now_ms, out, msg);
}

sb_status_t perf_check_update(sb_arena_t *a, const Sb__Performance__UpdatePerformanceRequest *req,
                              int64_t now_ms, perf_in_t *out, sb_buf_t *msg)
{
    /* the parts an update may give are a create request's fields */
    Sb__Performance__CreatePerformanceRequest parts = SB__PERFORMANCE__CREATE_PERFORMANCE_REQUEST__INIT;
    sb_pb_copy_fields(a, &parts.base, &req->base);
    sb_status_t st = check_request(a, &parts, false, now_ms, out, msg);
    if (st == SB_OK && !out->title && !out->description && !out->venue && !out->category &&
        !out->running_minutes && !out->has_schedules && !out->has_grades)
        st = bad(msg, "nothing to update: give title, description, venue, category, runningMinutes,"
                      " schedules or grades");
    return st;
}

/* ------------------------------------------------------------ page tokens */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *perf_page_token(sb_arena_t *a, int64_t created_us, const char *id)
{
    char raw[96];
    int n = snprintf(raw, sizeof raw, "%lld:%s", (long long)created_us, id);
    size_t len = (size_t)n < sizeof raw ? (size_t)n : sizeof raw - 1;
    char *out = sb_arena_alloc(a, (len + 2) / 3 * 4 + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)raw[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)(unsigned char)raw[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned char)raw[i + 2];
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = b64url[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = b64url[v & 63];
    }
    out[o] = '\0';
    return out;
}

static int b64_value(char c)
{
    const char *p = c ? strchr(b64url, c) : NULL;
    return p ? (int)(p - b64url) : -1;
}

bool perf_page_token_parse(sb_arena_t *a, const char *token, int64_t *created_us, char **id)
{
    size_t len = strlen(str(token));
    if (len == 0 || len > 128 || len % 4 == 1)
        return false;
    char raw[100];
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(token[i]);
        if (v < 0)
            return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            raw[o++] = (char)((acc >> bits) & 0xFF);
        }
    }
    raw[o] = '\0';
    char *colon = memchr(raw, ':', o);
    if (!colon || colon == raw || colon - raw > 19)
        return false;
    int64_t us = 0;
    for (const char *p = raw; p < colon; p++) {
        if (*p < '0' || *p > '9')
            return false;
        us = us * 10 + (*p - '0');
    }
    *id = sb_uuid_norm(a, colon + 1);
    if (!*id)
        return false;
    *created_us = us;
    return true;
}

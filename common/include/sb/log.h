/* Structured logs: one JSON object per line on stderr, e.g.
 * {"ts":"2026-11-24T09:00:00.123Z","level":"info","svc":"member","trace":"…","msg":"…"}
 * The trace id is the calling thread's current one (sb_log_set_trace). */
#ifndef SB_LOG_H
#define SB_LOG_H
#include <stdbool.h>

typedef enum { SB_LOG_DEBUG, SB_LOG_INFO, SB_LOG_WARN, SB_LOG_ERROR } sb_log_level_t;

void sb_log_init(const char *service_name); /* name copied; level from LOG_LEVEL */
void sb_log_set_level(sb_log_level_t lvl);
const char *sb_log_service(void); /* the name given to sb_log_init ("sb" before) */
/* Sets the calling thread's trace id (copied, truncated to 64 bytes); NULL clears. */
void sb_log_set_trace(const char *trace_id);
const char *sb_log_trace(void); /* borrowed, valid until the next set on this thread; "" if none */
/* Whether t may be taken as a trace id from outside (an X-Trace-Id header):
 * 1 to 64 of [A-Za-z0-9_-]. Anything else is replaced by a fresh id. */
bool sb_log_trace_valid(const char *t);
/* A line at level lvl with extra top-level members: `fields` is a ready JSON
 * member list ("\"status\":200,\"path\":\"/x\"", values escaped by the
 * caller with sb_buf_add_json_str), borrowed for the call; NULL for none. */
void sb_log_fields(sb_log_level_t lvl, const char *fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* sb_log(lvl, fmt, ...): a line without extra members. */
#define sb_log(lvl, ...) sb_log_fields((lvl), NULL, __VA_ARGS__)

#define sb_debug(...) sb_log(SB_LOG_DEBUG, __VA_ARGS__)
#define sb_info(...) sb_log(SB_LOG_INFO, __VA_ARGS__)
#define sb_warn(...) sb_log(SB_LOG_WARN, __VA_ARGS__)
#define sb_error(...) sb_log(SB_LOG_ERROR, __VA_ARGS__)

#endif

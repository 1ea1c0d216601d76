/* Structured logs: one JSON object per line on stderr, e.g.
 * {"ts":"2026-11-24T09:00:00.123Z","level":"info","svc":"member","trace":"…","msg":"…"}
 * The trace id is the calling thread's current one (sb_log_set_trace).
 *
 * Off the hot path: after sb_log_init, debug and info lines (the gateway's
 * access line per request) go into a bounded buffer that a writer thread
 * writes out every LOG_FLUSH_MS (default 100; 0: every line written at once
 * as before) or when half full; LOG_BUFFER_BYTES (default 1 MiB) bounds it,
 * and a line that does not fit is dropped and counted
 * (sb_log_dropped_lines_total), never waited for. Warn and error lines are
 * written at once, after what was buffered before them. What is buffered
 * at exit is written then (atexit). */
#ifndef SB_LOG_H
#define SB_LOG_H
#include <stdbool.h>

typedef enum { SB_LOG_DEBUG, SB_LOG_INFO, SB_LOG_WARN, SB_LOG_ERROR } sb_log_level_t;

/* Name copied; level from LOG_LEVEL; starts the buffered writer (above). */
void sb_log_init(const char *service_name);
/* Writes out what is buffered now (tests; before an exec). */
void sb_log_flush(void);
/* Lines dropped so far because the buffer was full. */
unsigned long sb_log_dropped(void);
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

/* Structured logs; see sb/log.h.
 *
 * The buffered writer (issue 13: logs off the hot path). Once sb_log_init
 * has started it (LOG_FLUSH_MS > 0, the default 100), a debug or info line
 * (the gateway's access line, one per request) is formatted on the calling
 * thread and copied into a buffer of LOG_BUFFER_BYTES (default 1 MiB) under
 * a mutex: no system call on the request thread. A writer thread swaps the
 * buffer for its spare every LOG_FLUSH_MS, or at once when it is half full,
 * and writes the batch to stderr (fd 2) with as few write(2)s as it takes.
 * When the buffer is full the line is dropped and counted
 * (sb_log_dropped_lines_total) rather than making the request wait for the
 * disk: the request path never blocks on logging; the memory is bounded
 * (two buffers).
 *
 * A warn or error line is written at once, on the calling thread, after
 * everything buffered before it (in order: the writer's batch in flight
 * first, io_mu), so what explains a failure or a crash is never in a
 * buffer. At exit (return from main after SIGTERM's drain, exit()) an
 * atexit handler writes what is left: no line is lost on a graceful
 * shutdown; a crash (SIGSEGV, SIGKILL) loses at most the last LOG_FLUSH_MS
 * of debug/info lines. Lock order: io_mu, then mu. */
#include "sb/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "sb/buf.h"
#include "sb/config.h"
#include "sb/metrics.h"
#include "sb/util.h"

static char service[32] = "sb";
static sb_log_level_t min_level = SB_LOG_INFO;
static _Thread_local char trace[65];

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static struct {
    pthread_mutex_t io_mu; /* held while writing to fd 2 from the buffers */
    pthread_mutex_t mu;    /* the active buffer */
    pthread_cond_t cv;
    bool on;     /* lines go through the buffer (under mu) */
    char *buf;   /* the active buffer: len of cap bytes used */
    char *spare; /* the writer's (under io_mu) */
    size_t len, cap;
    int flush_ms;
    atomic_ulong dropped;
    pthread_t thread;
} w = {
    .io_mu = PTHREAD_MUTEX_INITIALIZER, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* All of p[0..n) to fd 2 (short writes and EINTR retried; an error gives up). */
static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(2, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        p += k;
        n -= (size_t)k;
    }
}

/* Writes the active buffer out; under io_mu (mu taken here). */
static void flush_batch(void)
{
    pthread_mutex_lock(&w.mu);
    char *b = w.buf;
    size_t n = w.len;
    w.buf = w.spare;
    w.len = 0;
    pthread_mutex_unlock(&w.mu);
    w.spare = b;
    write_all(b, n);
}

static void *writer(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&w.mu);
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)w.flush_ms * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&w.cv, &w.mu, &until);
        if (!w.on)
            break;
        if (!w.len)
            continue;
        pthread_mutex_unlock(&w.mu);
        pthread_mutex_lock(&w.io_mu);
        flush_batch();
        pthread_mutex_unlock(&w.io_mu);
        pthread_mutex_lock(&w.mu);
    }
    pthread_mutex_unlock(&w.mu);
    return NULL;
}

void sb_log_flush(void)
{
    pthread_mutex_lock(&w.io_mu);
    flush_batch();
    pthread_mutex_unlock(&w.io_mu);
}

/* atexit: what is buffered goes out, and later lines are written directly. */
static void flush_at_exit(void)
{
    pthread_mutex_lock(&w.io_mu);
    pthread_mutex_lock(&w.mu);
    w.on = false;
    write_all(w.buf, w.len);
    w.len = 0;
    pthread_cond_signal(&w.cv);
    pthread_mutex_unlock(&w.mu);
    pthread_mutex_unlock(&w.io_mu);
}

/* Starts the writer (once per process). */
static void start_writer(void)
{
    static bool started;
    if (started)
        return;
    w.flush_ms = (int)sb_cfg_int("LOG_FLUSH_MS", 100, 0, 10000);
    if (w.flush_ms == 0)
        return;
    w.cap = (size_t)sb_cfg_int("LOG_BUFFER_BYTES", 1 << 20, 64 << 10, 256L << 20);
    w.buf = malloc(w.cap);
    w.spare = malloc(w.cap);
    if (!w.buf || !w.spare) {
        free(w.buf);
        free(w.spare);
        return;
    }
    w.on = true;
    if (pthread_create(&w.thread, NULL, writer, NULL) != 0) {
        w.on = false;
        return;
    }
    pthread_detach(w.thread);
    atexit(flush_at_exit);
    started = true;
}

/* One formatted line out: buffered (debug, info) or at once (warn, error;
 * or no writer). */
static void emit(sb_log_level_t lvl, const char *line, size_t n)
{
    if (lvl >= SB_LOG_WARN) {
        pthread_mutex_lock(&w.io_mu);
        pthread_mutex_lock(&w.mu);
        write_all(w.buf, w.len);
        w.len = 0;
        write_all(line, n);
        pthread_mutex_unlock(&w.mu);
        pthread_mutex_unlock(&w.io_mu);
        return;
    }
    pthread_mutex_lock(&w.mu);
    if (!w.on) {
        pthread_mutex_unlock(&w.mu);
        write_all(line, n); /* one write per line keeps lines whole across threads */
        return;
    }
    bool fits = w.len + n <= w.cap;
    if (fits) {
        memcpy(w.buf + w.len, line, n);
        w.len += n;
        if (w.len > w.cap / 2)
            pthread_cond_signal(&w.cv);
    }
    pthread_mutex_unlock(&w.mu);
    if (!fits) {
        atomic_fetch_add(&w.dropped, 1);
        sb_metrics_count("sb_log_dropped_lines_total", 1);
    }
}

unsigned long sb_log_dropped(void)
{
    return atomic_load(&w.dropped);
}

void sb_log_init(const char *service_name)
{
    snprintf(service, sizeof service, "%s", service_name);
    const char *lvl = sb_cfg_str("LOG_LEVEL", "info");
    for (int i = 0; i < 4; i++)
        if (strcasecmp(lvl, level_names[i]) == 0)
            min_level = (sb_log_level_t)i;
    start_writer();
}

const char *sb_log_service(void)
{
    return service;
}

void sb_log_set_level(sb_log_level_t lvl)
{
    min_level = lvl;
}

void sb_log_set_trace(const char *trace_id)
{
    snprintf(trace, sizeof trace, "%s", trace_id ? trace_id : "");
}

const char *sb_log_trace(void)
{
    return trace;
}

bool sb_log_trace_valid(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
              (t[i] >= '0' && t[i] <= '9') || t[i] == '-' || t[i] == '_'))
            return false;
    return true;
}

void sb_log_fields(sb_log_level_t lvl, const char *fields, const char *fmt, ...)
{
    if (lvl < min_level)
        return;
    char ts[32];
    sb_time_rfc3339(sb_now_ms(), ts);
    sb_buf_t msg = SB_BUF_INIT, line = SB_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    sb_buf_vaddf(&msg, fmt, ap);
    va_end(ap);
    sb_buf_addf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"svc\":", ts, level_names[lvl]);
    sb_buf_add_json_str(&line, service, strlen(service));
    if (trace[0]) {
        sb_buf_adds(&line, ",\"trace\":");
        sb_buf_add_json_str(&line, trace, strlen(trace));
    }
    if (fields && *fields) {
        sb_buf_addch(&line, ',');
        sb_buf_adds(&line, fields);
    }
    sb_buf_adds(&line, ",\"msg\":");
    sb_buf_add_json_str(&line, msg.buf, msg.len);
    sb_buf_adds(&line, "}\n");
    emit(lvl, line.buf, line.len);
    sb_buf_release(&msg);
    sb_buf_release(&line);
}

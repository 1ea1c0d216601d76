/* Metrics registry: a small open list guarded by one mutex. Method and
 * counter names are static strings, so the registry stores pointers. */
#include "sb/metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sb/alloc.h"

static const double bounds_s[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                  0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
#define NB (sizeof bounds_s / sizeof bounds_s[0])

/* An RPC method's figures (`value` counts its calls) or a named counter. */
struct metric {
    struct metric *next;
    const char *name;
    uint64_t value;
    uint64_t errors;
    uint64_t buckets[NB];
    double sum_s;
};

/* A gauge: its name (with labels) is the registry's own copy. */
struct gauge {
    struct gauge *next;
    char *name;
    double value;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct metric *rpcs;
static struct metric *counters;
static struct gauge *gauges;

/* The length of name's family: up to '{' or the end. */
static size_t family_len(const char *name)
{
    return strcspn(name, "{");
}

static bool same_family(const char *name, const char *family, size_t n)
{
    return family_len(name) == n && strncmp(name, family, n) == 0;
}

/* The metric of that name in *list, added when missing; under mu. */
static struct metric *metric(struct metric **list, const char *name)
{
    struct metric *m = *list;
    while (m && strcmp(m->name, name) != 0)
        m = m->next;
    if (!m) {
        m = sb_calloc(1, sizeof *m);
        m->name = name;
        m->next = *list;
        *list = m;
    }
    return m;
}

static void clear(struct metric **list)
{
    while (*list) {
        struct metric *n = (*list)->next;
        free(*list);
        *list = n;
    }
}

void sb_metrics_rpc(const char *method, sb_status_t st, int64_t latency_ns)
{
    double s = (double)latency_ns / 1e9;
    pthread_mutex_lock(&mu);
    struct metric *m = metric(&rpcs, method);
    m->value++;
    if (st != SB_OK)
        m->errors++;
    m->sum_s += s;
    for (size_t i = 0; i < NB; i++)
        if (s <= bounds_s[i])
            m->buckets[i]++;
    pthread_mutex_unlock(&mu);
}

void sb_metrics_count(const char *name, uint64_t delta)
{
    pthread_mutex_lock(&mu);
    metric(&counters, name)->value += delta;
    pthread_mutex_unlock(&mu);
}

/* under mu */
static void gauge_set(const char *name, double value)
{
    struct gauge *g = gauges, *last = NULL;
    for (; g && strcmp(g->name, name) != 0; g = g->next)
        last = g;
    if (!g) {
        g = sb_calloc(1, sizeof *g);
        g->name = sb_strdup(name);
        if (last)
            last->next = g; /* appended: a family's members stay in order */
        else
            gauges = g;
    }
    g->value = value;
}

void sb_metrics_gauge(const char *name, double value)
{
    pthread_mutex_lock(&mu);
    gauge_set(name, value);
    pthread_mutex_unlock(&mu);
}

void sb_metrics_gauge_family(const char *family, size_t n, const char *const *names,
                             const double *values)
{
    size_t fl = strlen(family);
    pthread_mutex_lock(&mu);
    for (struct gauge **p = &gauges; *p;) {
        if (same_family((*p)->name, family, fl)) {
            struct gauge *dead = *p;
            *p = dead->next;
            free(dead->name);
            free(dead);
        } else {
            p = &(*p)->next;
        }
    }
    for (size_t i = 0; i < n; i++)
        gauge_set(names[i], values[i]);
    pthread_mutex_unlock(&mu);
}

/* Gauges by family, each family once with its TYPE line (under mu). */
static void render_gauges(sb_buf_t *out)
{
    for (struct gauge *g = gauges; g; g = g->next) {
        size_t fl = family_len(g->name);
        bool seen = false;
        for (struct gauge *e = gauges; e != g && !seen; e = e->next)
            seen = same_family(e->name, g->name, fl);
        if (seen)
            continue;
        sb_buf_addf(out, "# TYPE %.*s gauge\n", (int)fl, g->name);
        for (struct gauge *m = g; m; m = m->next)
            if (same_family(m->name, g->name, fl))
                sb_buf_addf(out, "%s %.15g\n", m->name, m->value);
    }
}

void sb_metrics_render(sb_buf_t *out)
{
    pthread_mutex_lock(&mu);
    sb_buf_adds(out, "# HELP sb_rpc_calls_total RPCs handled, per method.\n"
                     "# TYPE sb_rpc_calls_total counter\n");
    for (struct metric *m = rpcs; m; m = m->next)
        sb_buf_addf(out, "sb_rpc_calls_total{method=\"%s\"} %lu\n", m->name, (unsigned long)m->value);
    sb_buf_adds(out, "# HELP sb_rpc_errors_total RPCs answered with a non-OK status, per method.\n"
                     "# TYPE sb_rpc_errors_total counter\n");
    for (struct metric *m = rpcs; m; m = m->next)
        sb_buf_addf(out, "sb_rpc_errors_total{method=\"%s\"} %lu\n", m->name, (unsigned long)m->errors);
    sb_buf_adds(out, "# HELP sb_rpc_latency_seconds RPC handling time, per method.\n"
                     "# TYPE sb_rpc_latency_seconds histogram\n");
    for (struct metric *m = rpcs; m; m = m->next) {
        for (size_t i = 0; i < NB; i++)
            sb_buf_addf(out, "sb_rpc_latency_seconds_bucket{method=\"%s\",le=\"%g\"} %lu\n", m->name,
                        bounds_s[i], (unsigned long)m->buckets[i]);
        sb_buf_addf(out, "sb_rpc_latency_seconds_bucket{method=\"%s\",le=\"+Inf\"} %lu\n", m->name,
                    (unsigned long)m->value);
        sb_buf_addf(out, "sb_rpc_latency_seconds_sum{method=\"%s\"} %.6f\n", m->name, m->sum_s);
        sb_buf_addf(out, "sb_rpc_latency_seconds_count{method=\"%s\"} %lu\n", m->name,
                    (unsigned long)m->value);
    }
    for (struct metric *c = counters; c; c = c->next)
        sb_buf_addf(out, "%s %lu\n", c->name, (unsigned long)c->value);
    render_gauges(out);
    pthread_mutex_unlock(&mu);
}

void sb_metrics_reset(void)
{
    pthread_mutex_lock(&mu);
    clear(&rpcs);
    clear(&counters);
    while (gauges) {
        struct gauge *n = gauges->next;
        free(gauges->name);
        free(gauges);
        gauges = n;
    }
    pthread_mutex_unlock(&mu);
}

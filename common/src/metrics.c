/* Metrics registry: a small open list guarded by one mutex. Method and
 * counter names are static strings, so the registry stores pointers. */
#include "sb/metrics.h"

#include <pthread.h>
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

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct metric *rpcs;
static struct metric *counters;

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
    pthread_mutex_unlock(&mu);
}

void sb_metrics_reset(void)
{
    pthread_mutex_lock(&mu);
    clear(&rpcs);
    clear(&counters);
    pthread_mutex_unlock(&mu);
}

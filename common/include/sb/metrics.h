/* Prometheus text metrics. Per-RPC-method counters and a latency histogram
 * are kept by the gRPC server; other modules add named counters. */
#ifndef SB_METRICS_H
#define SB_METRICS_H
#include <stddef.h>
#include <stdint.h>
#include "sb/buf.h"
#include "sb/status.h"

/* Records one call of method (a static string, e.g. "/sb.member.MemberService/Signup"). */
void sb_metrics_rpc(const char *method, sb_status_t st, int64_t latency_ns);
/* Adds delta to the counter `name` (static string, Prometheus syntax, may
 * include labels: "sb_outbox_published_total"). */
void sb_metrics_count(const char *name, uint64_t delta);
/* Gauges: values a refresher sets (the runtime's health refresher, health.c),
 * rendered with a "# TYPE <family> gauge" line per family. Sets the gauge
 * `name` (Prometheus syntax, may include labels:
 * "sb_outbox_unpublished" or "sb_consumer_lag{topic=\"sb.member\",partition=\"0\"}";
 * copied) to value. */
void sb_metrics_gauge(const char *name, double value);
/* Replaces every gauge of family (the name before '{') with names[i] =
 * values[i], i < n, at once: for label sets that come and go (the
 * partitions a consumer is assigned). n = 0 removes the family. */
void sb_metrics_gauge_family(const char *family, size_t n, const char *const *names,
                             const double *values);
/* Appends the text exposition format of every metric to out. */
void sb_metrics_render(sb_buf_t *out);
/* Forget everything (tests). */
void sb_metrics_reset(void);

#endif

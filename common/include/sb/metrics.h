/* Prometheus text metrics. Per-RPC-method counters and a latency histogram
 * are kept by the gRPC server; other modules add named counters. */
#ifndef SB_METRICS_H
#define SB_METRICS_H
#include <stdint.h>
#include "sb/buf.h"
#include "sb/status.h"

/* Records one call of method (a static string, e.g. "/sb.member.MemberService/Signup"). */
void sb_metrics_rpc(const char *method, sb_status_t st, int64_t latency_ns);
/* Adds delta to the counter `name` (static string, Prometheus syntax, may
 * include labels: "sb_outbox_published_total"). */
void sb_metrics_count(const char *name, uint64_t delta);
/* Appends the text exposition format of every metric to out. */
void sb_metrics_render(sb_buf_t *out);
/* Forget everything (tests). */
void sb_metrics_reset(void);

#endif

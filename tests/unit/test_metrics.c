#include <criterion/criterion.h>
#include <string.h>

#include "sb/metrics.h"

Test(metrics, rpc_histogram_and_counters_render)
{
    sb_metrics_reset();
    sb_metrics_rpc("/sb.x.S/A", SB_OK, 2000000);          /* 2 ms */
    sb_metrics_rpc("/sb.x.S/A", SB_NOT_FOUND, 300000000); /* 300 ms */
    sb_metrics_count("sb_things_total", 3);
    sb_buf_t out = SB_BUF_INIT;
    sb_metrics_render(&out);
    cr_assert(strstr(out.buf, "sb_rpc_calls_total{method=\"/sb.x.S/A\"} 2\n"));
    cr_assert(strstr(out.buf, "sb_rpc_errors_total{method=\"/sb.x.S/A\"} 1\n"));
    cr_assert(strstr(out.buf, "sb_rpc_latency_seconds_bucket{method=\"/sb.x.S/A\",le=\"0.0025\"} 1\n"));
    cr_assert(strstr(out.buf, "sb_rpc_latency_seconds_bucket{method=\"/sb.x.S/A\",le=\"0.5\"} 2\n"));
    cr_assert(strstr(out.buf, "sb_rpc_latency_seconds_bucket{method=\"/sb.x.S/A\",le=\"+Inf\"} 2\n"));
    cr_assert(strstr(out.buf, "sb_things_total 3\n"));
    sb_buf_release(&out);
    sb_metrics_reset();
}

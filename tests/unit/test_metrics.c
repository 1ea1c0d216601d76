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

Test(metrics, gauges_render_by_family_and_a_family_is_replaced_at_once)
{
    sb_metrics_reset();
    sb_metrics_gauge("sb_outbox_unpublished", 3);
    const char *lag[] = {"sb_consumer_lag{topic=\"t\",partition=\"0\"}",
                         "sb_consumer_lag{topic=\"t\",partition=\"1\"}"};
    const double v[] = {5, 0};
    sb_metrics_gauge_family("sb_consumer_lag", 2, lag, v);
    sb_metrics_gauge("sb_outbox_oldest_unpublished_age_seconds", 1.25);
    sb_metrics_gauge("sb_outbox_unpublished", 4); /* set again: one line */
    sb_buf_t out = SB_BUF_INIT;
    sb_metrics_render(&out);
    cr_assert(strstr(out.buf, "# TYPE sb_outbox_unpublished gauge\nsb_outbox_unpublished 4\n"), "%s",
              out.buf);
    cr_assert(strstr(out.buf, "# TYPE sb_consumer_lag gauge\n"
                              "sb_consumer_lag{topic=\"t\",partition=\"0\"} 5\n"
                              "sb_consumer_lag{topic=\"t\",partition=\"1\"} 0\n"),
              "%s", out.buf);
    cr_assert(strstr(out.buf, "sb_outbox_oldest_unpublished_age_seconds 1.25\n"), "%s", out.buf);
    cr_assert_null(strstr(strstr(out.buf, "sb_outbox_unpublished 4") + 1, "sb_outbox_unpublished 4"));

    /* a rebalance: partition 1 gone, 2 new */
    const char *after[] = {"sb_consumer_lag{topic=\"t\",partition=\"2\"}"};
    const double v2[] = {7};
    sb_metrics_gauge_family("sb_consumer_lag", 1, after, v2);
    sb_buf_reset(&out);
    sb_metrics_render(&out);
    cr_assert_null(strstr(out.buf, "partition=\"0\""), "%s", out.buf);
    cr_assert_null(strstr(out.buf, "partition=\"1\""), "%s", out.buf);
    cr_assert(strstr(out.buf, "sb_consumer_lag{topic=\"t\",partition=\"2\"} 7\n"), "%s", out.buf);
    cr_assert(strstr(out.buf, "sb_outbox_unpublished 4\n"), "another family is untouched");
    sb_buf_release(&out);
    sb_metrics_reset();
}

/* test_metrics.c - Prometheus text exposition. */
#include "metrics.h"
#include "suites.h"

static void test_render(void)
{
    static ns_metrics reg = NS_METRICS_INIT;
    static ns_metric ok = {
        .name = "x_total", .help = "X.", .labels = "code=\"200\"", .type = NS_METRIC_COUNTER};
    static ns_metric g = {.name = "y", .help = "Y.", .type = NS_METRIC_GAUGE};
    static ns_metric bad = {
        .name = "x_total", .help = "", .labels = "code=\"500\"", .type = NS_METRIC_COUNTER};
    static const double bounds[] = {0.001, 0.01};
    static ns_metric h = {.name = "lat_seconds",
                          .help = "L.",
                          .type = NS_METRIC_HISTOGRAM,
                          .bounds = bounds,
                          .nbounds = 2};
    ns_metrics_register(&reg, &ok);
    ns_metrics_register(&reg, &g);
    ns_metrics_register(&reg, &bad); /* must land next to its family */
    ns_metrics_register(&reg, &h);
    ns_counter_add(&ok, 3);
    ns_counter_add(&bad, 1);
    ns_gauge_set(&g, -5);
    ns_histogram_observe(&h, 0.0005);
    ns_histogram_observe(&h, 0.005);
    ns_histogram_observe(&h, 5);

    ns_buf b;
    ns_buf_init(&b);
    ns_metrics_render(&reg, &b);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&b), "# HELP x_total X.\n"
                                      "# TYPE x_total counter\n"
                                      "x_total{code=\"200\"} 3\n"
                                      "x_total{code=\"500\"} 1\n"
                                      "# HELP y Y.\n"
                                      "# TYPE y gauge\n"
                                      "y -5\n"
                                      "# HELP lat_seconds L.\n"
                                      "# TYPE lat_seconds histogram\n"
                                      "lat_seconds_bucket{le=\"0.001\"} 1\n"
                                      "lat_seconds_bucket{le=\"0.01\"} 2\n"
                                      "lat_seconds_bucket{le=\"+Inf\"} 3\n"
                                      "lat_seconds_sum 5.005500000\n"
                                      "lat_seconds_count 3\n");
    ns_buf_free(&b);

    /* after unregistering, the series is gone and its family header with it */
    ns_metrics_unregister(&reg, &g);
    ns_buf_init(&b);
    ns_metrics_render(&reg, &b);
    CU_ASSERT_PTR_NULL(strstr(ns_buf_cstr(&b), "# HELP y"));
    CU_ASSERT_PTR_NOT_NULL(strstr(ns_buf_cstr(&b), "x_total{code=\"500\"} 1"));
    ns_buf_free(&b);
}

const ns_test metrics_tests[] = {
    {"render", test_render},
    {NULL, NULL},
};

/* main.c - the proxy unit test runner: the pure core (HTTP/1.1 parsing and head edits,
 * route tables, retry budget, outlier ejection, retry rules and picks around failing
 * backends, trace context, the route discovery protocol, flags). */
#include "suites.h"

int main(void)
{
    static const ns_suite suites[] = {
        {"http1", http1_tests},         {"sniff", sniff_tests},
        {"chunked", chunked_tests},     {"routes", routes_tests},
        {"budget", budget_tests},       {"outlier", outlier_tests},
        {"retry", retry_tests},         {"pick", pick_tests},
        {"health", health_tests},       {"trace", trace_tests},
        {"discovery", discovery_tests}, {"config", config_tests},
        {"h1edit", h1edit_tests},       {NULL, NULL},
    };
    return ns_test_main(suites);
}

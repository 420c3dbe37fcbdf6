/* suites.h - every test list of the proxy runner, declared in one place. */
#ifndef TEST_PROXY_SUITES_H
#define TEST_PROXY_SUITES_H

#include "testlib.h"

extern const ns_test http1_tests[];
extern const ns_test sniff_tests[];
extern const ns_test chunked_tests[];
extern const ns_test routes_tests[];
extern const ns_test budget_tests[];
extern const ns_test outlier_tests[];
extern const ns_test retry_tests[];
extern const ns_test pick_tests[];
extern const ns_test health_tests[];
extern const ns_test trace_tests[];
extern const ns_test discovery_tests[];
extern const ns_test config_tests[];
extern const ns_test h1edit_tests[];

#endif

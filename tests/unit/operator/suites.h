/* suites.h - every test list of the operator runner, declared in one place. */
#ifndef TEST_OPERATOR_SUITES_H
#define TEST_OPERATOR_SUITES_H

#include "testlib.h"

#include <stdint.h>
#include <time.h>

extern const ns_test workqueue_tests[];
extern const ns_test selector_tests[];
extern const ns_test informer_tests[];
extern const ns_test leader_tests[];
extern const ns_test events_tests[];
extern const ns_test controller_tests[];

/* Monotonic milliseconds, for tests that measure delays. */
static inline int64_t test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Polls `cond` every millisecond for up to `ms`; evaluates to its last value. Keeps
 * threaded tests bounded in time without fixed sleeps. */
#define WAIT_UNTIL(cond, ms)                                                                       \
    ({                                                                                             \
        int64_t until_ = test_now_ms() + (ms);                                                     \
        while (!(cond) && test_now_ms() < until_)                                                  \
            usleep(1000);                                                                          \
        (cond);                                                                                    \
    })

extern const ns_test duration_tests[];
extern const ns_test mesh_render_tests[];
extern const ns_test mesh_certs_tests[];
extern const ns_test canary_tests[];
extern const ns_test canary_render_tests[];
extern const ns_test canary_machine_tests[];
extern const ns_test canary_checks_tests[];
extern const ns_test canary_routes_tests[];
extern const ns_test route_server_tests[];

#endif

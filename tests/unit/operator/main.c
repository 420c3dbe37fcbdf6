/* main.c - the operator unit test runner: the controller machinery (work queue, label
 * selectors, informer cache and loop, leader election decisions, Events, controller). */
#include "suites.h"

#include "log.h"

#include <stdlib.h>

int main(void)
{
    /* The machinery logs every retry it makes, and these tests make many on purpose;
     * NS_TEST_VERBOSE=1 shows them. */
    ns_log_setup(getenv("NS_TEST_VERBOSE") ? NS_LOG_DEBUG : NS_LOG_ERROR, NS_LOG_TEXT, "test");
    static const ns_suite suites[] = {
        {"workqueue", workqueue_tests},
        {"selector", selector_tests},
        {"informer", informer_tests},
        {"leader", leader_tests},
        {"events", events_tests},
        {"controller", controller_tests},
        {"duration", duration_tests},
        {"mesh_render", mesh_render_tests},
        {"mesh_certs", mesh_certs_tests},
        {"canary", canary_tests},
        {"canary_render", canary_render_tests},
        {"canary_machine", canary_machine_tests},
        {"canary_checks", canary_checks_tests},
        {"canary_routes", canary_routes_tests},
        {"route_server", route_server_tests},
        {NULL, NULL},
    };
    return ns_test_main(suites);
}

/* main.c - the libnutshell unit test runner. */
#include "suites.h"

int main(void)
{
    static const ns_suite suites[] = {
        {"arena", arena_tests},
        {"log", log_tests},
        {"jsonpatch", jsonpatch_tests},
        {"strconv", strconv_tests},
        {"buf", buf_tests},
        {"metrics", metrics_tests},
        {"tls", tls_tests},
        {"yamljson", yamljson_tests},
        {"kube", kube_tests},
        {"kubeconfig", kubeconfig_tests},
        {"kubewatch", kubewatch_tests},
        {"timefmt", timefmt_tests},
        {"json", json_tests},
        {NULL, NULL},
    };
    return ns_test_main(suites);
}

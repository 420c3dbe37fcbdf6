/* suites.h - every test list of the libnutshell runner, declared in one place. */
#ifndef TEST_LIB_SUITES_H
#define TEST_LIB_SUITES_H

#include "testlib.h"

extern const ns_test arena_tests[];
extern const ns_test log_tests[];
extern const ns_test jsonpatch_tests[];
extern const ns_test strconv_tests[];
extern const ns_test buf_tests[];
extern const ns_test metrics_tests[];
extern const ns_test tls_tests[];
extern const ns_test yamljson_tests[];
extern const ns_test kube_tests[];
extern const ns_test kubeconfig_tests[];
extern const ns_test kubewatch_tests[];
extern const ns_test timefmt_tests[];
extern const ns_test json_tests[];

#endif

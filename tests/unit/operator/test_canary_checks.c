/* test_canary_checks.c - placeholder. */
#include "suites.h"

const ns_test canary_checks_tests[] = {{NULL, NULL}};

/* test_canary.c - placeholder. */
#include "suites.h"

const ns_test canary_tests[] = {{NULL, NULL}};

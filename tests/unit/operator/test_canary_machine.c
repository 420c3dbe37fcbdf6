/* test_canary_machine.c - placeholder. */
#include "suites.h"

const ns_test canary_machine_tests[] = {{NULL, NULL}};

/* test_canary_render.c - placeholder. */
#include "suites.h"

const ns_test canary_render_tests[] = {{NULL, NULL}};

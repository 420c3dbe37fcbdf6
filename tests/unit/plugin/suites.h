/* suites.h - every test list of the kubectl-nutshell runner, declared in one place. */
#ifndef TEST_PLUGIN_SUITES_H
#define TEST_PLUGIN_SUITES_H

#include "testlib.h"

#include <stdint.h>

extern const ns_test humantime_tests[];
extern const ns_test table_tests[];
extern const ns_test request_tests[];
extern const ns_test canary_view_tests[];
extern const ns_test cli_tests[];
extern const ns_test apierror_tests[];

/* The clock every view test reads: 2026-11-25T20:00:00Z. */
#define TEST_NOW_MS 1795636800000LL

/* Asserts that `got` equals the text file `relpath` below testdata/, printing `got`
 * when it does not; with NS_UPDATE_GOLDEN=1 rewrites the file instead. */
void expect_text(const char *got, const char *relpath);

#endif

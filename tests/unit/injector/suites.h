/* suites.h - every test list of the injector runner, declared in one place. */
#ifndef TEST_INJECTOR_SUITES_H
#define TEST_INJECTOR_SUITES_H

#include "testlib.h"

extern const ns_test inject_tests[];
extern const ns_test admission_tests[];
extern const ns_test validate_tests[];
extern const ns_test cli_tests[];
extern const ns_test server_tests[];

#endif

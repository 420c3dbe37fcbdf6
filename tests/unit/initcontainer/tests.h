/* tests.h - the test lists of the nutshell-init unit runner (one per source file). */
#ifndef NSI_TESTS_H
#define NSI_TESTS_H

#include "testlib.h"

extern const ns_test nsi_config_tests[];
extern const ns_test nsi_plan_tests[];
extern const ns_test nsi_entry_tests[];
extern const ns_test nsi_table_tests[];
extern const ns_test nsi_misc_tests[];

#endif

/* main.c - the nutshell-init unit runner: every suite, registered in one place. */
#include "tests.h"

static const ns_suite suites[] = {
    {"initcontainer/config", nsi_config_tests}, {"initcontainer/plan", nsi_plan_tests},
    {"initcontainer/entry", nsi_entry_tests},   {"initcontainer/table", nsi_table_tests},
    {"initcontainer/misc", nsi_misc_tests},     {NULL, NULL},
};

int main(void)
{
    return ns_test_main(suites);
}

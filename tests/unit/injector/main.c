/* main.c - the injector unit test runner. */
#include "suites.h"

int main(void)
{
    static const ns_suite suites[] = {
        {"inject", inject_tests}, {"admission", admission_tests}, {"validate", validate_tests},
        {"cli", cli_tests},       {"server", server_tests},       {NULL, NULL},
    };
    return ns_test_main(suites);
}

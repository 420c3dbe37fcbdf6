/* main.c - the kubectl-nutshell unit test runner: ages, tables, request checks, the
 * status views, argument parsing and API error messages. */
#include "suites.h"

#include <stdbool.h>
#include <stdlib.h>

void expect_text(const char *got, const char *relpath)
{
    const char *update = getenv("NS_UPDATE_GOLDEN");
    if (update && strcmp(update, "1") == 0) {
        CU_ASSERT_EQUAL(ns_test_write(relpath, got), 0);
        return;
    }
    char *want = ns_test_read(relpath);
    CU_ASSERT_PTR_NOT_NULL(want);
    bool same = want && strcmp(got, want) == 0;
    if (!same)
        fprintf(stderr, "\n  %s differs; got:\n%s\n", relpath, got);
    CU_ASSERT_TRUE(same);
    free(want);
}

int main(void)
{
    static const ns_suite suites[] = {
        {"humantime", humantime_tests},
        {"table", table_tests},
        {"request", request_tests},
        {"canary_view", canary_view_tests},
        {"cli", cli_tests},
        {"apierror", apierror_tests},
        {NULL, NULL},
    };
    return ns_test_main(suites);
}

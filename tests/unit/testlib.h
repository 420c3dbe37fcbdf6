/* testlib.h - what every CUnit runner of Nutshell shares: a table-driven main, assertions
 * that print both values, and test-data file helpers. */
#ifndef NS_TESTLIB_H
#define NS_TESTLIB_H

#include <CUnit/CUnit.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct ns_test {
    const char *name;
    void (*fn)(void);
} ns_test;

typedef struct ns_suite {
    const char *name;
    const ns_test *tests; /* terminated by {NULL, NULL} */
} ns_suite;

/* Registers `suites` (terminated by {NULL, NULL}), runs them with the basic runner and
 * returns the process exit code: 0 only if every assertion passed. */
int ns_test_main(const ns_suite *suites);

/* Reads a whole file below the test data folder (NS_TESTDATA_DIR, set by CMake).
 * Returns a malloc'd NUL-terminated string or NULL. */
char *ns_test_read(const char *relpath);
/* Writes a file below the test data folder; used when NS_UPDATE_GOLDEN=1. */
int ns_test_write(const char *relpath, const char *text);

/* Parses a JSON test-data file; NULL (and a note on stderr) if missing or invalid. */
struct cJSON *ns_test_read_json(const char *relpath);
/* Asserts that `got` equals the JSON file `relpath` (order of keys aside), printing
 * `got` when it does not; with NS_UPDATE_GOLDEN=1 rewrites the file instead. */
void ns_test_expect_json(const struct cJSON *got, const char *relpath);

/* Assertions that say what they saw, not only that they failed. */
#define NS_ASSERT_STR_EQ(actual, expected)                                                         \
    do {                                                                                           \
        const char *a_ = (actual), *e_ = (expected);                                               \
        int ok_ = a_ && e_ && strcmp(a_, e_) == 0;                                                 \
        if (!ok_)                                                                                  \
            fprintf(stderr, "\n  %s:%d: expected \"%s\"\n  %*s got      \"%s\"\n", __FILE__,       \
                    __LINE__, e_ ? e_ : "(null)", (int)strlen(__FILE__) + 6, "",                   \
                    a_ ? a_ : "(null)");                                                           \
        CU_ASSERT_TRUE(ok_);                                                                       \
    } while (0)

#define NS_ASSERT_INT_EQ(actual, expected)                                                         \
    do {                                                                                           \
        long long a_ = (long long)(actual), e_ = (long long)(expected);                            \
        if (a_ != e_)                                                                              \
            fprintf(stderr, "\n  %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #actual, \
                    a_, e_);                                                                       \
        CU_ASSERT_EQUAL(a_, e_);                                                                   \
    } while (0)

#endif

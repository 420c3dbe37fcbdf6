/* testlib.c - shared CUnit runner and test-data helpers. */
#include "testlib.h"

#include <CUnit/Basic.h>
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdlib.h>

#ifndef NS_TESTDATA_DIR
#error "NS_TESTDATA_DIR must be defined by the build"
#endif

int ns_test_main(const ns_suite *suites)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    for (const ns_suite *s = suites; s->name; s++) {
        CU_pSuite cs = CU_add_suite(s->name, NULL, NULL);
        if (!cs)
            goto fail;
        for (const ns_test *t = s->tests; t->name; t++)
            if (!CU_add_test(cs, t->name, t->fn))
                goto fail;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    return failed == 0 && ran > 0 ? 0 : 1;
fail:
    fprintf(stderr, "cannot register suites: %s\n", CU_get_error_msg());
    CU_cleanup_registry();
    return 2;
}

static FILE *open_data(const char *relpath, const char *mode)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", NS_TESTDATA_DIR, relpath);
    return fopen(path, mode);
}

char *ns_test_read(const char *relpath)
{
    FILE *f = open_data(relpath, "rb");
    if (!f)
        return NULL;
    char *out = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *p = realloc(out, cap);
            if (!p) {
                free(out);
                fclose(f);
                return NULL;
            }
            out = p;
        }
        memcpy(out + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (!out)
        out = calloc(1, 1);
    else
        out[len] = '\0';
    return out;
}

int ns_test_write(const char *relpath, const char *text)
{
    FILE *f = open_data(relpath, "wb");
    if (!f)
        return -1;
    size_t n = strlen(text);
    int rc = fwrite(text, 1, n, f) == n ? 0 : -1;
    return fclose(f) == 0 ? rc : -1;
}

struct cJSON *ns_test_read_json(const char *relpath)
{
    char *text = ns_test_read(relpath);
    if (!text) {
        fprintf(stderr, "\n  missing test data %s\n", relpath);
        return NULL;
    }
    cJSON *j = cJSON_Parse(text);
    free(text);
    return j;
}

void ns_test_expect_json(const struct cJSON *got, const char *relpath)
{
    const char *update = getenv("NS_UPDATE_GOLDEN");
    char *pretty = cJSON_Print(got);
    if (update && strcmp(update, "1") == 0) {
        size_t n = strlen(pretty);
        char *with_nl = malloc(n + 2);
        memcpy(with_nl, pretty, n);
        with_nl[n] = '\n';
        with_nl[n + 1] = '\0';
        CU_ASSERT_EQUAL(ns_test_write(relpath, with_nl), 0);
        free(with_nl);
        cJSON_free(pretty);
        return;
    }
    cJSON *want = ns_test_read_json(relpath);
    CU_ASSERT_PTR_NOT_NULL(want);
    bool same = want && cJSON_Compare(got, want, true);
    if (!same)
        fprintf(stderr, "\n  %s differs; got:\n%s\n", relpath, pretty);
    CU_ASSERT_TRUE(same);
    cJSON_Delete(want);
    cJSON_free(pretty);
}

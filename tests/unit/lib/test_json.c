/* test_json.c - the cJSON builder that checks once: what it writes, and that a failure
 * anywhere (a NULL parent, an allocator that runs dry at any point) is remembered. */
#include "json.h"
#include "suites.h"

#include <stdlib.h>

#define BUILT                                                                                      \
    "{\"kind\":\"Service\",\"metadata\":{\"name\":\"reviews-primary\",\"namespace\":"              \
    "\"bookinfo\"},\"ports\":[{\"port\":9080,\"ready\":true}],\"drop\":[\"ALL\",\"NET_RAW\"],"     \
    "\"none\":[]}"

/* Uses every builder call once; set_str both replaces and adds. */
static cJSON *build(ns_jb *b)
{
    static const char *const drop[] = {"ALL", "NET_RAW", NULL};
    static const char *const none[] = {NULL};
    cJSON *o = cJSON_CreateObject();
    ns_jb_str(b, o, "kind", "Service");
    cJSON *meta = ns_jb_obj(b, o, "metadata");
    ns_jb_str(b, meta, "name", "reviews");
    ns_jb_set_str(b, meta, "name", "reviews-primary");
    ns_jb_set_str(b, meta, "namespace", "bookinfo");
    cJSON *port = ns_jb_obj(b, ns_jb_arr(b, o, "ports"), NULL);
    ns_jb_num(b, port, "port", 9080);
    ns_jb_bool(b, port, "ready", true);
    ns_jb_strs(b, o, "drop", drop);
    ns_jb_strs(b, o, "none", none);
    return o;
}

static void test_builds(void)
{
    ns_jb b = {0};
    cJSON *o = build(&b);
    CU_ASSERT_FALSE(b.oom);
    char *text = ns_json_print(o);
    NS_ASSERT_STR_EQ(text, BUILT);
    cJSON_free(text);
    cJSON_Delete(o);
}

/* A parent that failed to be made takes every later add down with it, freeing what
 * would have been added (the sanitizer build checks that nothing leaks). */
static void test_null_parent(void)
{
    static const char *const values[] = {"a", NULL};
    ns_jb b = {0};
    CU_ASSERT_PTR_NULL(ns_jb_obj(&b, NULL, "x"));
    CU_ASSERT_TRUE(b.oom);

    ns_jb fns[6] = {{0}};
    ns_jb_str(&fns[0], NULL, "k", "v");
    ns_jb_num(&fns[1], NULL, "k", 1);
    ns_jb_bool(&fns[2], NULL, "k", false);
    ns_jb_strs(&fns[3], NULL, "k", values);
    ns_jb_set_str(&fns[4], NULL, "k", "v");
    CU_ASSERT_PTR_NULL(ns_jb_arr(&fns[5], NULL, "k"));
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
        CU_ASSERT_TRUE(fns[i].oom);

    /* once set, oom stays set through later successful adds */
    cJSON *o = cJSON_CreateObject();
    ns_jb_str(&b, o, "k", "v");
    CU_ASSERT_TRUE(b.oom);
    NS_ASSERT_STR_EQ(ns_json_str(o, "k"), "v");
    cJSON_Delete(o);
}

static long allocs_left;

static void *failing_malloc(size_t n)
{
    if (allocs_left-- <= 0)
        return NULL;
    return malloc(n);
}

/* The allocator fails at the first allocation, then the second, and so on until the
 * build needs no more: every failure must show as oom or a NULL root, never as a tree
 * quietly missing a member. */
static void test_every_allocation_failure_is_seen(void)
{
    long failures = 0;
    for (long n = 0; n < 1000; n++) {
        cJSON_Hooks hooks = {.malloc_fn = failing_malloc, .free_fn = free};
        allocs_left = n;
        cJSON_InitHooks(&hooks);
        ns_jb b = {0};
        cJSON *o = build(&b);
        bool ran_dry = allocs_left < 0;
        cJSON_InitHooks(NULL);
        if (!ran_dry) {
            CU_ASSERT_FALSE(b.oom);
            char *text = ns_json_print(o);
            NS_ASSERT_STR_EQ(text, BUILT);
            cJSON_free(text);
            cJSON_Delete(o);
            break;
        }
        failures++;
        if (o && !b.oom)
            fprintf(stderr, "\n  allocation %ld failed unnoticed", n);
        CU_ASSERT_TRUE(!o || b.oom);
        cJSON_Delete(o);
    }
    /* a root, 3 objects, 3 arrays, 7 values and their keys: well over 20 allocations */
    CU_ASSERT(failures > 20);
}

const ns_test json_tests[] = {
    {"builder writes what it is told", test_builds},
    {"builder: NULL parent", test_null_parent},
    {"builder: every allocation failure is seen", test_every_allocation_failure_is_seen},
    {NULL, NULL},
};

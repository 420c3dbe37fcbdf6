/* test_informer.c - the object cache, the relist diff, and the informer loop driven by a
 * scripted source: initial list, watch events, 410 and relist, list failures with
 * backoff, resync, stop. */
#include "informer.h"
#include "suites.h"

#include "json.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* {"metadata":{"name":N,"namespace":"ns","resourceVersion":RV,"labels":{"app":APP}}} */
static cJSON *obj(const char *name, const char *rv, const char *app)
{
    char text[512];
    snprintf(text, sizeof(text),
             "{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\",\"namespace\":\"ns\","
             "\"resourceVersion\":\"%s\",\"labels\":{\"app\":\"%s\"},"
             "\"managedFields\":[{\"manager\":\"kubectl\"}]}}",
             name, rv, app);
    return cJSON_Parse(text);
}

static op_cache *cache_of(const char *const *names, const char *const *rvs, size_t n)
{
    op_cache *c = NULL;
    op_cache_new(&c);
    for (size_t i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof(key), "ns/%s", names[i]);
        op_cache_put(c, key, obj(names[i], rvs[i], "x"), NULL);
    }
    return c;
}

static int collect_keys(void *ud, const char *key, const cJSON *o)
{
    (void)o;
    char *buf = ud;
    size_t len = strlen(buf);
    snprintf(buf + len, 256 - len, "%s%s", len ? "," : "", key);
    return 0;
}

static int stop_at_b(void *ud, const char *key, const cJSON *o)
{
    (void)o;
    (void)ud;
    return strcmp(key, "ns/b") == 0 ? 42 : 0;
}

static void test_cache(void)
{
    op_cache *c = NULL;
    NS_ASSERT_INT_EQ(op_cache_new(&c), 0);
    NS_ASSERT_INT_EQ(op_cache_put(c, "ns/c", obj("c", "1", "x"), NULL), 0);
    NS_ASSERT_INT_EQ(op_cache_put(c, "ns/a", obj("a", "1", "x"), NULL), 0);
    NS_ASSERT_INT_EQ(op_cache_put(c, "ns/b", obj("b", "1", "x"), NULL), 0);
    NS_ASSERT_INT_EQ(op_cache_len(c), 3);
    char keys[256] = "";
    op_cache_foreach(c, collect_keys, keys);
    NS_ASSERT_STR_EQ(keys, "ns/a,ns/b,ns/c"); /* sorted */
    NS_ASSERT_INT_EQ(op_cache_foreach(c, stop_at_b, NULL), 42);

    cJSON *old = NULL;
    NS_ASSERT_INT_EQ(op_cache_put(c, "ns/a", obj("a", "2", "x"), &old), 0);
    NS_ASSERT_STR_EQ(ns_json_path_str(old, "metadata", "resourceVersion", NULL), "1");
    cJSON_Delete(old);
    NS_ASSERT_INT_EQ(op_cache_len(c), 3);
    NS_ASSERT_STR_EQ(ns_json_path_str(op_cache_get(c, "ns/a"), "metadata", "resourceVersion", NULL),
                     "2");
    cJSON *taken = op_cache_take(c, "ns/b");
    CU_ASSERT_PTR_NOT_NULL(taken);
    cJSON_Delete(taken);
    CU_ASSERT_PTR_NULL(op_cache_take(c, "ns/b"));
    CU_ASSERT_PTR_NULL(op_cache_get(c, "ns/b"));
    NS_ASSERT_INT_EQ(op_cache_len(c), 2);
    op_cache_free(c);
    op_cache_free(NULL);
}

static void test_from_list(void)
{
    cJSON *list = cJSON_Parse(
        "{\"kind\":\"ConfigMapList\",\"metadata\":{\"resourceVersion\":\"9\"},\"items\":["
        "{\"metadata\":{\"name\":\"b\",\"namespace\":\"ns\",\"managedFields\":[{}]}},"
        "{\"metadata\":{\"namespace\":\"ns\"}},"
        "{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\"}}]}");
    op_cache *c = NULL;
    NS_ASSERT_INT_EQ(op_cache_from_list(list, true, &c), 0);
    NS_ASSERT_INT_EQ(op_cache_len(c), 2); /* the nameless item is skipped */
    CU_ASSERT_PTR_NULL(ns_json_path(op_cache_get(c, "ns/b"), "metadata", "managedFields", NULL));
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(ns_json_get(list, "items")), 0); /* moved, not copied */
    op_cache_free(c);
    cJSON_Delete(list);

    list = cJSON_Parse("{\"items\":[{\"metadata\":{\"name\":\"k\",\"managedFields\":[{}]}}]}");
    NS_ASSERT_INT_EQ(op_cache_from_list(list, false, &c), 0);
    CU_ASSERT_PTR_NOT_NULL(ns_json_path(op_cache_get(c, "k"), "metadata", "managedFields", NULL));
    op_cache_free(c);
    cJSON_Delete(list);

    /* not a list: an empty cache */
    list = cJSON_Parse("{\"kind\":\"Status\"}");
    NS_ASSERT_INT_EQ(op_cache_from_list(list, true, &c), 0);
    NS_ASSERT_INT_EQ(op_cache_len(c), 0);
    op_cache_free(c);
    cJSON_Delete(list);
}

static void test_diff(void)
{
    const char *on[] = {"a", "b", "c", "e"}, *orv[] = {"1", "1", "1", "1"};
    const char *nn[] = {"b", "c", "d", "e"}, *nrv[] = {"2", "1", "1", "1"};
    op_cache *old = cache_of(on, orv, 4), *fresh = cache_of(nn, nrv, 4);
    op_informer_event *ev = NULL;
    size_t n = 0;
    NS_ASSERT_INT_EQ(op_cache_diff(old, fresh, &ev, &n), 0);
    NS_ASSERT_INT_EQ(n, 3);
    if (n == 3) {
        NS_ASSERT_INT_EQ(ev[0].type, OP_INFORMER_DELETE);
        NS_ASSERT_STR_EQ(ev[0].key, "ns/a");
        CU_ASSERT_PTR_EQUAL(ev[0].old, op_cache_get(old, "ns/a"));
        CU_ASSERT_PTR_NULL(ev[0].obj);
        NS_ASSERT_INT_EQ(ev[1].type, OP_INFORMER_UPDATE);
        NS_ASSERT_STR_EQ(ev[1].key, "ns/b");
        CU_ASSERT_PTR_EQUAL(ev[1].old, op_cache_get(old, "ns/b"));
        CU_ASSERT_PTR_EQUAL(ev[1].obj, op_cache_get(fresh, "ns/b"));
        NS_ASSERT_INT_EQ(ev[2].type, OP_INFORMER_ADD);
        NS_ASSERT_STR_EQ(ev[2].key, "ns/d");
        CU_ASSERT_PTR_NULL(ev[2].old);
    }
    free(ev);

    /* identical: nothing */
    NS_ASSERT_INT_EQ(op_cache_diff(old, old, &ev, &n), 0);
    NS_ASSERT_INT_EQ(n, 0);
    CU_ASSERT_PTR_NULL(ev);

    /* from empty: all adds; to empty: all deletes, in key order */
    op_cache *empty = NULL;
    op_cache_new(&empty);
    NS_ASSERT_INT_EQ(op_cache_diff(empty, fresh, &ev, &n), 0);
    NS_ASSERT_INT_EQ(n, 4);
    for (size_t i = 0; i < n; i++)
        NS_ASSERT_INT_EQ(ev[i].type, OP_INFORMER_ADD);
    free(ev);
    NS_ASSERT_INT_EQ(op_cache_diff(old, empty, &ev, &n), 0);
    NS_ASSERT_INT_EQ(n, 4);
    for (size_t i = 0; i < n; i++)
        NS_ASSERT_INT_EQ(ev[i].type, OP_INFORMER_DELETE);
    if (n == 4)
        NS_ASSERT_STR_EQ(ev[3].key, "ns/e");
    free(ev);
    op_cache_free(empty);
    op_cache_free(old);
    op_cache_free(fresh);

    /* without resourceVersions, content decides */
    op_cache *x = NULL, *y = NULL;
    op_cache_new(&x);
    op_cache_new(&y);
    op_cache_put(x, "same", cJSON_Parse("{\"metadata\":{\"name\":\"same\"},\"v\":1}"), NULL);
    op_cache_put(x, "diff", cJSON_Parse("{\"metadata\":{\"name\":\"diff\"},\"v\":1}"), NULL);
    op_cache_put(y, "same", cJSON_Parse("{\"metadata\":{\"name\":\"same\"},\"v\":1}"), NULL);
    op_cache_put(y, "diff", cJSON_Parse("{\"metadata\":{\"name\":\"diff\"},\"v\":2}"), NULL);
    NS_ASSERT_INT_EQ(op_cache_diff(x, y, &ev, &n), 0);
    NS_ASSERT_INT_EQ(n, 1);
    if (n == 1) {
        NS_ASSERT_STR_EQ(ev[0].key, "diff");
        NS_ASSERT_INT_EQ(ev[0].type, OP_INFORMER_UPDATE);
    }
    free(ev);
    op_cache_free(x);
    op_cache_free(y);
    NS_ASSERT_STR_EQ(op_informer_event_type_name(OP_INFORMER_RESYNC), "resync");
}

const ns_test informer_tests[] = {
    {"cache put, get, take, sorted walk", test_cache},
    {"cache from a List", test_from_list},
    {"relist diff: deletes, updates, adds", test_diff},
    {NULL, NULL},
};

/* test_events.c - Event de-duplication keys, token buckets, the de-duplication cache with
 * a fake clock, Event bodies, and a recorder with no server. */
#include "events.h"
#include "suites.h"

#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NOW 1700000000LL

static const op_event_ref canary = {.api_version = "nutshell.io/v1alpha1",
                                    .kind = "Canary",
                                    .namespace = "shop",
                                    .name = "reviews",
                                    .uid = "0b6c3b9e-1111-2222-3333-444455556666",
                                    .resource_version = "812"};

static char *key_of(const op_event_ref *ref, const char *type, const char *reason, const char *msg)
{
    ns_buf b;
    ns_buf_init(&b);
    op_event_dedup_key(ref, type, reason, msg, &b);
    return ns_buf_take(&b);
}

static void test_dedup_key(void)
{
    char *base = key_of(&canary, "Normal", "Progressing", "weight 10");
    char *same = key_of(&canary, "Normal", "Progressing", "weight 10");
    NS_ASSERT_STR_EQ(same, base);
    op_event_ref other_uid = canary;
    other_uid.uid = "another";
    op_event_ref other_ns = canary;
    other_ns.namespace = "shop2";
    op_event_ref other_kind = canary;
    other_kind.kind = "Mesh";
    char *diff[] = {
        key_of(&canary, "Warning", "Progressing", "weight 10"),
        key_of(&canary, "Normal", "Promoted", "weight 10"),
        key_of(&canary, "Normal", "Progressing", "weight 20"),
        key_of(&other_uid, "Normal", "Progressing", "weight 10"),
        key_of(&other_ns, "Normal", "Progressing", "weight 10"),
        key_of(&other_kind, "Normal", "Progressing", "weight 10"),
    };
    for (size_t i = 0; i < sizeof(diff) / sizeof(diff[0]); i++) {
        CU_ASSERT_TRUE(strcmp(diff[i], base) != 0);
        free(diff[i]);
    }
    /* field boundaries cannot be forged by the content */
    char *x = key_of(&canary, "Normal", "A|B", "C");
    char *y = key_of(&canary, "Normal", "A", "B|C");
    CU_ASSERT_TRUE(strcmp(x, y) != 0);
    free(x);
    free(y);
    free(base);
    free(same);
}

static void test_token_bucket(void)
{
    op_token_bucket b;
    op_token_bucket_init(&b, 3, 1.0); /* burst 3, one a second */
    CU_ASSERT_TRUE(op_token_bucket_take(&b, 1000));
    CU_ASSERT_TRUE(op_token_bucket_take(&b, 1000));
    CU_ASSERT_TRUE(op_token_bucket_take(&b, 1000));
    CU_ASSERT_FALSE(op_token_bucket_take(&b, 1000));
    int64_t w = op_token_bucket_wait_ms(&b, 1000);
    CU_ASSERT_TRUE(w >= 999 && w <= 1001);
    CU_ASSERT_FALSE(op_token_bucket_take(&b, 1500));
    CU_ASSERT_TRUE(op_token_bucket_take(&b, 2000));
    NS_ASSERT_INT_EQ(op_token_bucket_wait_ms(&b, 12000), 0);
    /* refills cap at the burst */
    CU_ASSERT_TRUE(op_token_bucket_take(&b, 100000));
    CU_ASSERT_TRUE(op_token_bucket_take(&b, 100000));
    CU_ASSERT_TRUE(op_token_bucket_take(&b, 100000));
    CU_ASSERT_FALSE(op_token_bucket_take(&b, 100000));
    /* a clock that goes backwards does not mint tokens */
    CU_ASSERT_FALSE(op_token_bucket_take(&b, 50000));
    /* zero rate: never again */
    op_token_bucket_init(&b, 1, 0);
    CU_ASSERT_TRUE(op_token_bucket_take(&b, 0));
    NS_ASSERT_INT_EQ(op_token_bucket_wait_ms(&b, 0), INT64_MAX);
}

static void test_observe_dedup(void)
{
    op_event_cache *c = NULL;
    op_event_cache_opts o = {.host = "operator-0"};
    NS_ASSERT_INT_EQ(op_event_cache_new(&o, &c), 0);
    op_event_entry *e = NULL;
    NS_ASSERT_INT_EQ(
        op_event_cache_observe(c, &canary, "Normal", "Progressing", "weight 10", NOW, &e),
        OP_EVENT_NEW);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    NS_ASSERT_INT_EQ(e->count, 1);
    NS_ASSERT_INT_EQ(e->first_s, NOW);
    NS_ASSERT_STR_EQ(e->namespace, "shop");
    CU_ASSERT_TRUE(strncmp(e->name, "reviews.", 8) == 0 && strlen(e->name) == 8 + 16);
    char *name = strdup(e->name);

    /* the same within 10 minutes of the last one: a repeat of the same Event */
    NS_ASSERT_INT_EQ(
        op_event_cache_observe(c, &canary, "Normal", "Progressing", "weight 10", NOW + 300, &e),
        OP_EVENT_REPEAT);
    NS_ASSERT_INT_EQ(e->count, 2);
    NS_ASSERT_INT_EQ(e->first_s, NOW);
    NS_ASSERT_INT_EQ(e->last_s, NOW + 300);
    NS_ASSERT_STR_EQ(e->name, name);
    NS_ASSERT_INT_EQ(
        op_event_cache_observe(c, &canary, "Normal", "Progressing", "weight 10", NOW + 900, &e),
        OP_EVENT_REPEAT); /* 600 s after the last one, not the first */
    NS_ASSERT_INT_EQ(e->count, 3);

    /* more than 10 minutes of quiet: a new Event */
    NS_ASSERT_INT_EQ(
        op_event_cache_observe(c, &canary, "Normal", "Progressing", "weight 10", NOW + 1501, &e),
        OP_EVENT_NEW);
    NS_ASSERT_INT_EQ(e->count, 1);
    CU_ASSERT_TRUE(strcmp(e->name, name) != 0);
    NS_ASSERT_INT_EQ(op_event_cache_len(c), 1);

    /* another message: another Event */
    NS_ASSERT_INT_EQ(
        op_event_cache_observe(c, &canary, "Normal", "Progressing", "weight 20", NOW + 1501, &e),
        OP_EVENT_NEW);
    NS_ASSERT_INT_EQ(op_event_cache_len(c), 2);
    CU_ASSERT_PTR_EQUAL(op_event_cache_find(c, e->key), e);

    /* bad input */
    NS_ASSERT_INT_EQ(op_event_cache_observe(c, &canary, "Info", "X", "m", NOW, &e), -EINVAL);
    NS_ASSERT_INT_EQ(op_event_cache_observe(c, &canary, "Normal", "", "m", NOW, &e), -EINVAL);
    op_event_ref noname = {.kind = "Canary"};
    NS_ASSERT_INT_EQ(op_event_cache_observe(c, &noname, "Normal", "X", "m", NOW, &e), -EINVAL);
    free(name);
    op_event_cache_free(c);
}

static void test_spam_filter(void)
{
    op_event_cache *c = NULL;
    op_event_cache_opts o = {.object_burst = 3, .object_per_s = 1.0 / 300};
    NS_ASSERT_INT_EQ(op_event_cache_new(&o, &c), 0);
    op_event_entry *e = NULL;
    char msg[32];
    int rc[5];
    for (int i = 0; i < 5; i++) {
        snprintf(msg, sizeof(msg), "attempt %d", i);
        rc[i] = op_event_cache_observe(c, &canary, "Warning", "Failed", msg, NOW, &e);
    }
    NS_ASSERT_INT_EQ(rc[0], OP_EVENT_NEW);
    NS_ASSERT_INT_EQ(rc[2], OP_EVENT_NEW);
    NS_ASSERT_INT_EQ(rc[3], OP_EVENT_DROPPED);
    NS_ASSERT_INT_EQ(rc[4], OP_EVENT_DROPPED);
    /* repeats of an Event already there still count: they cost nothing new */
    NS_ASSERT_INT_EQ(op_event_cache_observe(c, &canary, "Warning", "Failed", "attempt 0", NOW, &e),
                     OP_EVENT_REPEAT);
    NS_ASSERT_INT_EQ(e->count, 2);
    /* other objects have their own budget */
    op_event_ref other = canary;
    other.name = "ratings";
    other.uid = "u2";
    NS_ASSERT_INT_EQ(op_event_cache_observe(c, &other, "Warning", "Failed", "attempt 4", NOW, &e),
                     OP_EVENT_NEW);
    /* the budget refills: one new Event per 5 minutes */
    NS_ASSERT_INT_EQ(
        op_event_cache_observe(c, &canary, "Warning", "Failed", "attempt 5", NOW + 299, &e),
        OP_EVENT_DROPPED);
    NS_ASSERT_INT_EQ(
        op_event_cache_observe(c, &canary, "Warning", "Failed", "attempt 6", NOW + 301, &e),
        OP_EVENT_NEW);
    op_event_cache_free(c);
}

static void test_lru_bound(void)
{
    op_event_cache *c = NULL;
    op_event_cache_opts o = {.max_entries = 2};
    NS_ASSERT_INT_EQ(op_event_cache_new(&o, &c), 0);
    op_event_entry *e = NULL;
    op_event_cache_observe(c, &canary, "Normal", "R", "one", NOW, &e);
    char *first = strdup(e->key);
    op_event_cache_observe(c, &canary, "Normal", "R", "two", NOW, &e);
    char *second = strdup(e->key);
    /* touch "one" so that "two" is the least recently used */
    op_event_cache_observe(c, &canary, "Normal", "R", "one", NOW + 1, &e);
    op_event_cache_observe(c, &canary, "Normal", "R", "three", NOW + 2, &e);
    NS_ASSERT_INT_EQ(op_event_cache_len(c), 2);
    CU_ASSERT_PTR_NOT_NULL(op_event_cache_find(c, first));
    CU_ASSERT_PTR_NULL(op_event_cache_find(c, second));
    free(first);
    free(second);
    op_event_cache_free(c);
}

static void test_bodies(void)
{
    op_event_cache *c = NULL;
    op_event_cache_opts o = {.host = "operator-0"};
    op_event_cache_new(&o, &c);
    op_event_entry *e = NULL;
    op_event_cache_observe(c, &canary, "Warning", "Rollback", "canary failed 3 checks", NOW, &e);
    op_event_cache_observe(c, &canary, "Warning", "Rollback", "canary failed 3 checks", NOW + 42,
                           &e);
    cJSON *ev = op_event_build(e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ev);
    NS_ASSERT_STR_EQ(ns_json_str(ev, "apiVersion"), "v1");
    NS_ASSERT_STR_EQ(ns_json_str(ev, "kind"), "Event");
    NS_ASSERT_STR_EQ(ns_json_path_str(ev, "metadata", "name", NULL), e->name);
    NS_ASSERT_STR_EQ(ns_json_path_str(ev, "metadata", "namespace", NULL), "shop");
    NS_ASSERT_STR_EQ(ns_json_path_str(ev, "involvedObject", "kind", NULL), "Canary");
    NS_ASSERT_STR_EQ(ns_json_path_str(ev, "involvedObject", "apiVersion", NULL),
                     "nutshell.io/v1alpha1");
    NS_ASSERT_STR_EQ(ns_json_path_str(ev, "involvedObject", "namespace", NULL), "shop");
    NS_ASSERT_STR_EQ(ns_json_path_str(ev, "involvedObject", "name", NULL), "reviews");
    NS_ASSERT_STR_EQ(ns_json_path_str(ev, "involvedObject", "uid", NULL), canary.uid);
    NS_ASSERT_STR_EQ(ns_json_path_str(ev, "involvedObject", "resourceVersion", NULL), "812");
    NS_ASSERT_STR_EQ(ns_json_str(ev, "type"), "Warning");
    NS_ASSERT_STR_EQ(ns_json_str(ev, "reason"), "Rollback");
    NS_ASSERT_STR_EQ(ns_json_str(ev, "message"), "canary failed 3 checks");
    NS_ASSERT_STR_EQ(ns_json_path_str(ev, "source", "component", NULL), "nutshell-operator");
    NS_ASSERT_STR_EQ(ns_json_path_str(ev, "source", "host", NULL), "operator-0");
    NS_ASSERT_STR_EQ(ns_json_str(ev, "reportingComponent"), "nutshell-operator");
    NS_ASSERT_STR_EQ(ns_json_str(ev, "reportingInstance"), "operator-0");
    NS_ASSERT_STR_EQ(ns_json_str(ev, "firstTimestamp"), "2023-11-14T22:13:20Z");
    NS_ASSERT_STR_EQ(ns_json_str(ev, "lastTimestamp"), "2023-11-14T22:14:02Z");
    NS_ASSERT_INT_EQ(ns_json_get(ev, "count")->valuedouble, 2);
    cJSON_Delete(ev);
    cJSON *p = op_event_build_patch(e);
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(p), 2);
    NS_ASSERT_STR_EQ(ns_json_str(p, "lastTimestamp"), "2023-11-14T22:14:02Z");
    NS_ASSERT_INT_EQ(ns_json_get(p, "count")->valuedouble, 2);
    cJSON_Delete(p);

    /* cluster-scoped objects: the Event goes to "default", the reference has no namespace */
    op_event_ref mesh = {.api_version = "nutshell.io/v1alpha1", .kind = "Mesh", .name = "default"};
    op_event_cache_observe(c, &mesh, "Normal", "Installed", "injector ready", NOW, &e);
    NS_ASSERT_STR_EQ(e->namespace, "default");
    ev = op_event_build(e);
    NS_ASSERT_STR_EQ(ns_json_path_str(ev, "metadata", "namespace", NULL), "default");
    CU_ASSERT_PTR_NULL(ns_json_path(ev, "involvedObject", "namespace", NULL));
    CU_ASSERT_PTR_NULL(ns_json_path(ev, "involvedObject", "uid", NULL));
    cJSON_Delete(ev);

    /* long messages are cut at a character boundary */
    char msg[1100];
    memset(msg, 'a', 1023);
    memcpy(msg + 1023, "\xc3\xa9xyz", 6); /* 'é' straddles byte 1024 */
    op_event_cache_observe(c, &mesh, "Normal", "Long", msg, NOW, &e);
    NS_ASSERT_INT_EQ(strlen(ns_json_str(e->body, "message")), 1023);
    op_event_cache_free(c);

    /* object references from objects */
    cJSON *obj = cJSON_Parse("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
                             "\"c\",\"namespace\":\"n\",\"uid\":\"u\"}}");
    op_event_ref ref;
    NS_ASSERT_INT_EQ(op_event_ref_from_object(obj, &ref), 0);
    NS_ASSERT_STR_EQ(ref.kind, "ConfigMap");
    NS_ASSERT_STR_EQ(op_event_namespace(&ref), "n");
    cJSON_Delete(obj);
    obj = cJSON_Parse("{\"metadata\":{\"name\":\"c\"}}");
    NS_ASSERT_INT_EQ(op_event_ref_from_object(obj, &ref), -EINVAL);
    cJSON_Delete(obj);
}

static void test_recorder_unreachable(void)
{
    ns_kube_config cfg = {0};
    cfg.server = strdup("https://127.0.0.1:1");
    cfg.insecure_skip_tls_verify = true;
    ns_kube *k = NULL;
    NS_ASSERT_INT_EQ(ns_kube_new(&cfg, NULL, &k, NULL), 0);
    ns_kube_config_free(&cfg);
    /* one write per 200 ms, no burst beyond the first */
    op_recorder_opts ro = {.qps = 5, .burst = 1};
    op_recorder *r = NULL;
    NS_ASSERT_INT_EQ(op_recorder_new(k, &ro, &r, NULL), 0);
    cJSON *obj = cJSON_Parse("{\"kind\":\"Mesh\",\"metadata\":{\"name\":\"default\"}}");
    NS_ASSERT_INT_EQ(op_recorder_event(r, obj, "Normal", "Test", "hello %d", 1), 0);
    NS_ASSERT_INT_EQ(op_recorder_flush(r, 10000), 0);
    op_recorder_stats st;
    op_recorder_get_stats(r, &st);
    NS_ASSERT_INT_EQ(st.failed, 1);
    /* five repeats while the sender waits for its next slot fold into one write */
    for (int i = 0; i < 5; i++)
        NS_ASSERT_INT_EQ(op_recorder_event(r, obj, "Normal", "Test", "hello %d", 1), 0);
    NS_ASSERT_INT_EQ(op_recorder_event(r, obj, "Bad", "Test", "x"), -EINVAL);
    NS_ASSERT_INT_EQ(op_recorder_event(r, NULL, "Normal", "Test", "x"), -EINVAL);
    NS_ASSERT_INT_EQ(op_recorder_flush(r, 10000), 0);
    op_recorder_get_stats(r, &st);
    NS_ASSERT_INT_EQ(st.failed, 2);
    NS_ASSERT_INT_EQ(st.created + st.patched + st.dropped, 0);
    cJSON_Delete(obj);
    op_recorder_free(r);
    op_recorder_free(NULL);
    ns_kube_free(k);
}

const ns_test events_tests[] = {
    {"de-duplication keys", test_dedup_key},
    {"token bucket", test_token_bucket},
    {"repeats within 10 minutes count up", test_observe_dedup},
    {"per-object spam filter", test_spam_filter},
    {"bounded cache, least recently used out", test_lru_bound},
    {"Event and patch bodies", test_bodies},
    {"recorder folds repeats, survives no server", test_recorder_unreachable},
    {NULL, NULL},
};

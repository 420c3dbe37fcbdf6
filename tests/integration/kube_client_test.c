/* kube_client_test.c - the Kubernetes API client against a real API server.
 *
 * Needs KUBECONFIG pointing at a cluster (eval "$(hack/cluster.sh env)"); exits 77 (the
 * CTest/automake "skipped" code) with a message when it is unset or the server cannot be
 * reached. Everything happens in a throwaway namespace that is deleted at the end:
 * ConfigMaps are created, read, listed in pages of 2, patched three ways, applied
 * server-side, updated with a stale resourceVersion (409 Conflict), deleted, and watched
 * (ADDED, MODIFIED, DELETED); a Service's status subresource is patched and updated.
 */
#include "json.h"
#include "kube.h"
#include "kubeconfig.h"
#include "kubewatch.h"
#include "testlib.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SKIP 77

static ns_kube *kube;
static char ns_name[64];

#define CM(n)                                                                                      \
    (&(ns_kube_ref){.version = "v1", .resource = "configmaps", .namespace = ns_name, .name = (n)})

/* Builds a JSON value from a printf format (test input, known to be valid). */
static cJSON *jsonf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static cJSON *jsonf(const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    cJSON *v = cJSON_Parse(text);
    if (!v)
        fprintf(stderr, "bad test JSON: %s\n", text);
    return v;
}

static const char *str_at(const cJSON *obj, const char *a, const char *b)
{
    return ns_json_path_str(obj, a, b, NULL);
}

/* Prints what the server said when a call does not return what a test expects. */
static void show(const char *what, int rc, const ns_kube_status *st)
{
    fprintf(stderr, "\n  %s: rc %d, http %ld, reason \"%s\", message \"%s\"\n", what, rc, st->http,
            st->reason, st->message);
}

#define EXPECT_RC(call, want, st)                                                                  \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != (want))                                                                         \
            show(#call, rc_, (st));                                                                \
        NS_ASSERT_INT_EQ(rc_, (want));                                                             \
    } while (0)

static int create_cm(const char *name, const char *label)
{
    cJSON *cm = jsonf("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\","
                      "\"labels\":{\"nutshell.io/test\":\"%s\"}},\"data\":{\"a\":\"1\"}}",
                      name, label);
    ns_kube_status st;
    int rc = ns_kube_create(kube, CM(NULL), cm, NULL, NULL, &st);
    if (rc)
        show("create", rc, &st);
    cJSON_Delete(cm);
    return rc;
}

/* ------------------------------------------------------------------ tests */

static void test_create_get_not_found(void)
{
    ns_kube_status st;
    cJSON *cm =
        jsonf("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
              "\"cm-0\",\"labels\":{\"nutshell.io/test\":\"page\"}},\"data\":{\"a\":\"1\"}}");
    cJSON *out = NULL;
    EXPECT_RC(ns_kube_create(kube, CM(NULL), cm, NULL, &out, &st), 0, &st);
    NS_ASSERT_INT_EQ(st.http, 201);
    CU_ASSERT_PTR_NOT_NULL(str_at(out, "metadata", "uid"));
    CU_ASSERT_PTR_NOT_NULL(str_at(out, "metadata", "resourceVersion"));
    cJSON_Delete(out);

    /* again: AlreadyExists, not retried */
    EXPECT_RC(ns_kube_create(kube, CM(NULL), cm, NULL, NULL, &st), -EEXIST, &st);
    NS_ASSERT_INT_EQ(st.http, 409);
    NS_ASSERT_STR_EQ(st.reason, "AlreadyExists");
    CU_ASSERT_TRUE(ns_kube_is_already_exists(&st));
    NS_ASSERT_INT_EQ(st.attempts, 1);
    cJSON_Delete(cm);

    EXPECT_RC(ns_kube_get(kube, CM("cm-0"), &out, &st), 0, &st);
    NS_ASSERT_STR_EQ(str_at(out, "data", "a"), "1");
    NS_ASSERT_STR_EQ(str_at(out, "metadata", "namespace"), ns_name);
    cJSON_Delete(out);

    out = (cJSON *)&st; /* must be reset to NULL on failure */
    EXPECT_RC(ns_kube_get(kube, CM("missing"), &out, &st), -ENOENT, &st);
    CU_ASSERT_PTR_NULL(out);
    NS_ASSERT_INT_EQ(st.http, 404);
    NS_ASSERT_INT_EQ(st.code, 404);
    NS_ASSERT_STR_EQ(st.reason, "NotFound");
    CU_ASSERT_TRUE(ns_kube_is_not_found(&st));
    CU_ASSERT_PTR_NOT_NULL(strstr(st.message, "\"missing\" not found"));
}

static void test_list_paginated(void)
{
    char name[16];
    for (int i = 1; i < 5; i++) {
        snprintf(name, sizeof(name), "cm-%d", i);
        NS_ASSERT_INT_EQ(create_cm(name, "page"), 0);
    }
    NS_ASSERT_INT_EQ(create_cm("other", "no"), 0);

    /* the server really pages at limit=2 */
    ns_kube_status st;
    ns_buf path;
    ns_buf_init(&path);
    ns_kube_path(CM(NULL), &path, NULL);
    ns_kube_query_add(&path, "labelSelector", "nutshell.io/test=page");
    ns_kube_query_add(&path, "limit", "2");
    cJSON *page = NULL;
    EXPECT_RC(ns_kube_request(kube, "GET", ns_buf_cstr(&path), NULL, NULL, 0, true, &page, &st), 0,
              &st);
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(ns_json_get(page, "items")), 2);
    const char *cont = str_at(page, "metadata", "continue");
    CU_ASSERT_TRUE(cont && cont[0]);
    cJSON_Delete(page);
    ns_buf_free(&path);

    cJSON *list = NULL;
    ns_kube_list_opts lo = {.label_selector = "nutshell.io/test=page", .limit = 2};
    EXPECT_RC(ns_kube_list(kube, CM(NULL), &lo, &list, &st), 0, &st);
    cJSON *items = ns_json_get(list, "items");
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(items), 5);
    bool seen[5] = {false};
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *n = str_at(it, "metadata", "name");
        if (n && strncmp(n, "cm-", 3) == 0 && n[3] >= '0' && n[3] <= '4' && !n[4])
            seen[n[3] - '0'] = true;
    }
    for (int i = 0; i < 5; i++)
        CU_ASSERT_TRUE(seen[i]);
    CU_ASSERT_PTR_NULL(ns_json_path(list, "metadata", "continue", NULL));
    const char *rv = str_at(list, "metadata", "resourceVersion");
    CU_ASSERT_TRUE(rv && rv[0]);
    cJSON_Delete(list);

    /* field selector, no pagination */
    lo = (ns_kube_list_opts){.field_selector = "metadata.name=cm-3"};
    EXPECT_RC(ns_kube_list(kube, CM(NULL), &lo, &list, &st), 0, &st);
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(ns_json_get(list, "items")), 1);
    cJSON_Delete(list);

    /* a bad selector is the caller's error */
    lo = (ns_kube_list_opts){.label_selector = "a b c"};
    EXPECT_RC(ns_kube_list(kube, CM(NULL), &lo, &list, &st), -EINVAL, &st);
    NS_ASSERT_INT_EQ(st.http, 400);
}

static void test_patches(void)
{
    ns_kube_status st;
    cJSON *out = NULL;
    cJSON *merge = jsonf("{\"data\":{\"b\":\"2\"}}");
    EXPECT_RC(ns_kube_patch(kube, CM("cm-1"), NS_KUBE_PATCH_MERGE, merge, NULL, &out, &st), 0, &st);
    NS_ASSERT_STR_EQ(str_at(out, "data", "a"), "1");
    NS_ASSERT_STR_EQ(str_at(out, "data", "b"), "2");
    cJSON_Delete(out);
    cJSON_Delete(merge);

    cJSON *jp = jsonf("[{\"op\":\"test\",\"path\":\"/data/b\",\"value\":\"2\"},"
                      "{\"op\":\"add\",\"path\":\"/data/c\",\"value\":\"3\"},"
                      "{\"op\":\"remove\",\"path\":\"/data/a\"}]");
    EXPECT_RC(ns_kube_patch(kube, CM("cm-1"), NS_KUBE_PATCH_JSON, jp, NULL, &out, &st), 0, &st);
    NS_ASSERT_STR_EQ(str_at(out, "data", "c"), "3");
    CU_ASSERT_PTR_NULL(str_at(out, "data", "a"));
    cJSON_Delete(out);
    /* the same patch again fails (/data/a is gone) and, not being idempotent, is not retried */
    EXPECT_RC(ns_kube_patch(kube, CM("cm-1"), NS_KUBE_PATCH_JSON, jp, NULL, NULL, &st), -EINVAL,
              &st);
    NS_ASSERT_INT_EQ(st.attempts, 1);
    cJSON_Delete(jp);

    cJSON *smp = jsonf("{\"metadata\":{\"labels\":{\"extra\":\"yes\"}}}");
    EXPECT_RC(ns_kube_patch(kube, CM("cm-1"), NS_KUBE_PATCH_STRATEGIC, smp, NULL, &out, &st), 0,
              &st);
    NS_ASSERT_STR_EQ(ns_json_path_str(out, "metadata", "labels", "extra", NULL), "yes");
    NS_ASSERT_STR_EQ(ns_json_path_str(out, "metadata", "labels", "nutshell.io/test", NULL), "page");
    cJSON_Delete(out);
    cJSON_Delete(smp);

    /* dry run changes nothing */
    cJSON *dry = jsonf("{\"data\":{\"dry\":\"run\"}}");
    ns_kube_write_opts wo = {.dry_run = true};
    EXPECT_RC(ns_kube_patch(kube, CM("cm-1"), NS_KUBE_PATCH_MERGE, dry, &wo, &out, &st), 0, &st);
    NS_ASSERT_STR_EQ(str_at(out, "data", "dry"), "run");
    cJSON_Delete(out);
    cJSON_Delete(dry);
    EXPECT_RC(ns_kube_get(kube, CM("cm-1"), &out, &st), 0, &st);
    CU_ASSERT_PTR_NULL(str_at(out, "data", "dry"));
    cJSON_Delete(out);
}

static void test_server_side_apply(void)
{
    ns_kube_status st;
    cJSON *out = NULL;
    ns_kube_write_opts mine = {.field_manager = "kube-client-test"};
    cJSON *intent = jsonf("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
                          "\"applied\",\"namespace\":\"%s\"},\"data\":{\"k\":\"v1\"}}",
                          ns_name);
    EXPECT_RC(ns_kube_apply(kube, CM("applied"), intent, &mine, &out, &st), 0, &st);
    NS_ASSERT_INT_EQ(st.http, 201);
    NS_ASSERT_STR_EQ(str_at(out, "data", "k"), "v1");
    const char *mgr = ns_json_str(
        cJSON_GetArrayItem(ns_json_path(out, "metadata", "managedFields", NULL), 0), "manager");
    NS_ASSERT_STR_EQ(mgr, "kube-client-test");
    cJSON_Delete(out);
    cJSON_Delete(intent);

    intent = jsonf("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
                   "\"applied\"},\"data\":{\"k\":\"v2\"}}");
    EXPECT_RC(ns_kube_apply(kube, CM("applied"), intent, &mine, &out, &st), 0, &st);
    NS_ASSERT_INT_EQ(st.http, 200);
    NS_ASSERT_STR_EQ(str_at(out, "data", "k"), "v2");
    cJSON_Delete(out);
    cJSON_Delete(intent);

    /* another manager wanting the same field conflicts, unless it forces */
    intent = jsonf("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
                   "\"applied\"},\"data\":{\"k\":\"theirs\"}}");
    ns_kube_write_opts other = {.field_manager = "someone-else"};
    EXPECT_RC(ns_kube_apply(kube, CM("applied"), intent, &other, NULL, &st), -EBUSY, &st);
    NS_ASSERT_INT_EQ(st.http, 409);
    CU_ASSERT_TRUE(ns_kube_is_conflict(&st));
    other.force = true;
    EXPECT_RC(ns_kube_apply(kube, CM("applied"), intent, &other, &out, &st), 0, &st);
    NS_ASSERT_STR_EQ(str_at(out, "data", "k"), "theirs");
    cJSON_Delete(out);
    cJSON_Delete(intent);
}

static void test_update_conflict(void)
{
    ns_kube_status st;
    cJSON *old = NULL, *out = NULL;
    EXPECT_RC(ns_kube_get(kube, CM("cm-2"), &old, &st), 0, &st);
    CU_ASSERT_PTR_NOT_NULL_FATAL(old);
    cJSON *fresh = cJSON_Duplicate(old, true);
    cJSON_ReplaceItemInObject(ns_json_get(fresh, "data"), "a", cJSON_CreateString("updated"));
    EXPECT_RC(ns_kube_update(kube, CM("cm-2"), fresh, NULL, &out, &st), 0, &st);
    NS_ASSERT_STR_EQ(str_at(out, "data", "a"), "updated");
    CU_ASSERT_TRUE(strcmp(str_at(out, "metadata", "resourceVersion"),
                          str_at(old, "metadata", "resourceVersion")) != 0);
    cJSON_Delete(out);
    cJSON_Delete(fresh);

    /* the old resourceVersion is stale now: 409 Conflict, returned at once */
    cJSON_ReplaceItemInObject(ns_json_get(old, "data"), "a", cJSON_CreateString("lost update"));
    EXPECT_RC(ns_kube_update(kube, CM("cm-2"), old, NULL, &out, &st), -EBUSY, &st);
    CU_ASSERT_PTR_NULL(out);
    NS_ASSERT_INT_EQ(st.http, 409);
    NS_ASSERT_STR_EQ(st.reason, "Conflict");
    CU_ASSERT_TRUE(ns_kube_is_conflict(&st));
    CU_ASSERT_FALSE(ns_kube_is_already_exists(&st));
    NS_ASSERT_INT_EQ(st.attempts, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(st.message, "the object has been modified"));
    cJSON_Delete(old);
}

static void test_status_subresource(void)
{
    ns_kube_status st;
    ns_kube_ref svc = {.version = "v1", .resource = "services", .namespace = ns_name, .name = "lb"};
    cJSON *obj = jsonf("{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"lb\"},"
                       "\"spec\":{\"type\":\"LoadBalancer\",\"ports\":[{\"port\":80}]}}");
    EXPECT_RC(ns_kube_create(kube, &svc, obj, NULL, NULL, &st), 0, &st);
    cJSON_Delete(obj);

    cJSON *patch = jsonf("{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"192.0.2.10\"}]}}}");
    cJSON *out = NULL;
    EXPECT_RC(ns_kube_patch_status(kube, &svc, NS_KUBE_PATCH_MERGE, patch, NULL, &out, &st), 0,
              &st);
    cJSON *ing = ns_json_path(out, "status", "loadBalancer", "ingress", NULL);
    NS_ASSERT_STR_EQ(ns_json_str(cJSON_GetArrayItem(ing, 0), "ip"), "192.0.2.10");
    cJSON_Delete(patch);

    /* PUT on /status, from the object just read */
    cJSON_ReplaceItemInObject(cJSON_GetArrayItem(ing, 0), "ip", cJSON_CreateString("192.0.2.11"));
    cJSON *upd = NULL;
    EXPECT_RC(ns_kube_update_status(kube, &svc, out, NULL, &upd, &st), 0, &st);
    ing = ns_json_path(upd, "status", "loadBalancer", "ingress", NULL);
    NS_ASSERT_STR_EQ(ns_json_str(cJSON_GetArrayItem(ing, 0), "ip"), "192.0.2.11");
    cJSON_Delete(out);
    cJSON_Delete(upd);

    /* and status written through the main resource is ignored: it is a real subresource */
    patch = jsonf("{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"192.0.2.99\"}]}}}");
    EXPECT_RC(ns_kube_patch(kube, &svc, NS_KUBE_PATCH_MERGE, patch, NULL, &out, &st), 0, &st);
    ing = ns_json_path(out, "status", "loadBalancer", "ingress", NULL);
    NS_ASSERT_STR_EQ(ns_json_str(cJSON_GetArrayItem(ing, 0), "ip"), "192.0.2.11");
    cJSON_Delete(out);
    cJSON_Delete(patch);
}

static void test_delete(void)
{
    ns_kube_status st;
    cJSON *obj = NULL;
    EXPECT_RC(ns_kube_get(kube, CM("cm-4"), &obj, &st), 0, &st);

    /* a precondition on another uid refuses the delete */
    ns_kube_delete_opts wrong = {.precondition_uid = "00000000-0000-0000-0000-000000000000"};
    EXPECT_RC(ns_kube_delete(kube, CM("cm-4"), &wrong, NULL, &st), -EBUSY, &st);
    NS_ASSERT_INT_EQ(st.http, 409);

    /* Foreground: the object stays, marked, until the garbage collector has removed its
     * dependents (none here) and then the object itself. */
    ns_kube_delete_opts dopts = {.propagation_policy = "Foreground",
                                 .precondition_uid = str_at(obj, "metadata", "uid")};
    cJSON *out = NULL;
    EXPECT_RC(ns_kube_delete(kube, CM("cm-4"), &dopts, &out, &st), 0, &st);
    CU_ASSERT_PTR_NOT_NULL(str_at(out, "metadata", "deletionTimestamp"));
    const cJSON *fin = ns_json_path(out, "metadata", "finalizers", NULL);
    NS_ASSERT_STR_EQ(cJSON_IsArray(fin) && cJSON_GetArrayItem(fin, 0)
                         ? cJSON_GetArrayItem(fin, 0)->valuestring
                         : NULL,
                     "foregroundDeletion");
    cJSON_Delete(out);
    int rc = 0;
    for (int i = 0; i < 150; i++) {
        rc = ns_kube_get(kube, CM("cm-4"), NULL, &st);
        if (rc != 0)
            break;
        usleep(100 * 1000);
    }
    NS_ASSERT_INT_EQ(rc, -ENOENT);
    NS_ASSERT_STR_EQ(st.reason, "NotFound");

    /* Background (the default): gone at once */
    EXPECT_RC(ns_kube_delete(kube, CM("cm-3"), NULL, NULL, &st), 0, &st);
    EXPECT_RC(ns_kube_get(kube, CM("cm-3"), NULL, &st), -ENOENT, &st);

    EXPECT_RC(ns_kube_delete(kube, CM("cm-4"), NULL, NULL, &st), -ENOENT, &st);
    NS_ASSERT_STR_EQ(st.reason, "NotFound");
    CU_ASSERT_TRUE(ns_kube_is_not_found(&st));
    CU_ASSERT_PTR_NOT_NULL(strstr(st.message, "\"cm-4\" not found"));
    cJSON_Delete(obj);
}

/* ---- watch ---- */

typedef struct seen_events {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ns_kube_event_type types[32];
    char names[32][32];
    char rvs[32][32];
    int n;
} seen_events;

static int record_cb(void *ud, ns_kube_event *ev)
{
    seen_events *s = ud;
    if (ev->type == NS_KUBE_EVENT_BOOKMARK)
        return 0;
    pthread_mutex_lock(&s->mu);
    if (s->n < 32) {
        s->types[s->n] = ev->type;
        snprintf(s->names[s->n], sizeof(s->names[0]), "%s",
                 ns_json_path_str(ev->object, "metadata", "name", NULL)
                     ? ns_json_path_str(ev->object, "metadata", "name", NULL)
                     : "");
        snprintf(s->rvs[s->n], sizeof(s->rvs[0]), "%s",
                 ev->resource_version ? ev->resource_version : "");
        s->n++;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

typedef struct watch_thread {
    ns_kube_watch *w;
    seen_events *seen;
    int rc;
    ns_kube_status st;
} watch_thread;

static void *watch_main(void *arg)
{
    watch_thread *t = arg;
    t->rc = ns_kube_watch_run(t->w, record_cb, t->seen, &t->st);
    return NULL;
}

/* Waits until `n` events arrived or 20 s passed. */
static bool wait_events(seen_events *s, int n)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 20;
    pthread_mutex_lock(&s->mu);
    while (s->n < n)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) != 0)
            break;
    bool ok = s->n >= n;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static void test_watch(void)
{
    ns_kube_status st;
    cJSON *list = NULL;
    ns_kube_list_opts lo = {.label_selector = "nutshell.io/test=watch"};
    EXPECT_RC(ns_kube_list(kube, CM(NULL), &lo, &list, &st), 0, &st);
    ns_kube_watch_opts wo = {.label_selector = "nutshell.io/test=watch",
                             .resource_version = str_at(list, "metadata", "resourceVersion"),
                             .timeout_seconds = 60};
    ns_kube_watch *w = NULL;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(ns_kube_watch_new(kube, CM(NULL), &wo, &w, &err), 0);
    cJSON_Delete(list);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);

    seen_events seen = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    watch_thread t = {.w = w, .seen = &seen};
    pthread_t th;
    NS_ASSERT_INT_EQ(pthread_create(&th, NULL, watch_main, &t), 0);

    NS_ASSERT_INT_EQ(create_cm("watched", "watch"), 0);
    cJSON *patch = jsonf("{\"data\":{\"a\":\"changed\"}}");
    EXPECT_RC(ns_kube_patch(kube, CM("watched"), NS_KUBE_PATCH_MERGE, patch, NULL, NULL, &st), 0,
              &st);
    cJSON_Delete(patch);
    EXPECT_RC(ns_kube_delete(kube, CM("watched"), NULL, NULL, &st), 0, &st);

    bool got = wait_events(&seen, 3);
    CU_ASSERT_TRUE(got);
    /* stop from this thread; the run returns 0 promptly */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ns_kube_watch_stop(w);
    pthread_join(th, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double stop_s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    NS_ASSERT_INT_EQ(t.rc, 0);
    CU_ASSERT_TRUE(stop_s < 1.0);

    NS_ASSERT_INT_EQ(seen.n, 3);
    NS_ASSERT_INT_EQ(seen.types[0], NS_KUBE_EVENT_ADDED);
    NS_ASSERT_INT_EQ(seen.types[1], NS_KUBE_EVENT_MODIFIED);
    NS_ASSERT_INT_EQ(seen.types[2], NS_KUBE_EVENT_DELETED);
    for (int i = 0; i < seen.n && i < 3; i++)
        NS_ASSERT_STR_EQ(seen.names[i], "watched");
    /* the watch followed the versions */
    if (seen.n >= 3)
        NS_ASSERT_STR_EQ(ns_kube_watch_resource_version(w), seen.rvs[2]);
    CU_ASSERT_TRUE(ns_kube_watch_connects(w) >= 1);
    /* stopped stays stopped */
    NS_ASSERT_INT_EQ(ns_kube_watch_run(w, record_cb, &seen, &st), 0);
    ns_kube_watch_free(w);
}

static int fail_cb(void *ud, ns_kube_event *ev)
{
    (void)ud;
    (void)ev;
    return 0;
}

static void test_watch_from_now(void)
{
    /* Without a resourceVersion the server starts with an ADDED for every object that
     * exists, then follows changes: as many ADDED as a list returns, and nothing else. */
    ns_kube_status st;
    cJSON *list = NULL;
    ns_kube_list_opts lo = {.label_selector = "nutshell.io/test=page"};
    EXPECT_RC(ns_kube_list(kube, CM(NULL), &lo, &list, &st), 0, &st);
    int want = cJSON_GetArraySize(ns_json_get(list, "items"));
    cJSON_Delete(list);
    CU_ASSERT_TRUE(want >= 1);

    ns_kube_watch_opts wo = {.label_selector = "nutshell.io/test=page", .timeout_seconds = 30};
    ns_kube_watch *w = NULL;
    NS_ASSERT_INT_EQ(ns_kube_watch_new(kube, CM(NULL), &wo, &w, NULL), 0);
    seen_events seen = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    watch_thread t = {.w = w, .seen = &seen};
    pthread_t th;
    NS_ASSERT_INT_EQ(pthread_create(&th, NULL, watch_main, &t), 0);
    CU_ASSERT_TRUE(wait_events(&seen, want));
    usleep(200 * 1000); /* nothing more should come */
    ns_kube_watch_stop(w);
    pthread_join(th, NULL);
    NS_ASSERT_INT_EQ(t.rc, 0);
    NS_ASSERT_INT_EQ(seen.n, want);
    for (int i = 0; i < seen.n; i++)
        NS_ASSERT_INT_EQ(seen.types[i], NS_KUBE_EVENT_ADDED);
    ns_kube_watch_free(w);
}

static void *stop_later(void *arg)
{
    usleep(300 * 1000);
    ns_kube_watch_stop(arg);
    return NULL;
}

static void test_watch_stop_idle(void)
{
    /* a watch with nothing happening is stopped from another thread within a second */
    ns_kube_watch_opts wo = {.timeout_seconds = 300};
    ns_kube_watch *w = NULL;
    NS_ASSERT_INT_EQ(ns_kube_watch_new(kube, CM("nothing-here"), &wo, &w, NULL), 0);
    pthread_t th;
    pthread_create(&th, NULL, stop_later, w);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ns_kube_status st;
    NS_ASSERT_INT_EQ(ns_kube_watch_run(w, fail_cb, NULL, &st), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_join(th, NULL);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    CU_ASSERT_TRUE(s >= 0.25 && s < 1.3);
    ns_kube_watch_free(w);
}

static const ns_test client_tests[] = {
    {"create, get, NotFound", test_create_get_not_found},
    {"list paginated", test_list_paginated},
    {"merge, JSON and strategic patches", test_patches},
    {"server-side apply", test_server_side_apply},
    {"update with a stale resourceVersion", test_update_conflict},
    {"status subresource", test_status_subresource},
    {"delete", test_delete},
    {NULL, NULL},
};

static const ns_test watch_tests[] = {
    {"ADDED, MODIFIED, DELETED", test_watch},
    {"from now: ADDED for what exists", test_watch_from_now},
    {"stop an idle watch", test_watch_stop_idle},
    {NULL, NULL},
};

/* ------------------------------------------------------------------ setup */

static void watchdog_cb(int sig)
{
    static const char msg[] = "FAIL: kube_client_test did not finish within 180 s\n";
    (void)sig;
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(1);
}

static int skip(const char *why)
{
    printf("SKIP: %s\n", why);
    return SKIP;
}

int main(void)
{
    signal(SIGALRM, watchdog_cb);
    alarm(180);
    const char *kc = getenv("KUBECONFIG");
    if (!kc || !kc[0])
        return skip("KUBECONFIG is not set; start the local cluster with `hack/cluster.sh up` "
                    "and run `eval \"$(hack/cluster.sh env)\"`");
    char path[4096];
    if (ns_kubeconfig_default_path(path, sizeof(path)) != 0 || access(path, R_OK) != 0) {
        char msg[4200];
        snprintf(msg, sizeof(msg), "kubeconfig %s is not readable (is the cluster up?)", path);
        return skip(msg);
    }
    ns_kube_config cfg;
    ns_err err = {0};
    if (ns_kubeconfig_load(NULL, NULL, &cfg, &err) != 0) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    char server[256];
    snprintf(server, sizeof(server), "%s", cfg.server);

    /* Is anyone there? One quick attempt, no retries. */
    ns_kube *probe = NULL;
    ns_kube_options popts = {.max_retries = -1, .timeout_ms = 5000, .connect_timeout_ms = 2000};
    if (ns_kube_new(&cfg, &popts, &probe, &err) != 0) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        ns_kube_config_free(&cfg);
        return 1;
    }
    ns_kube_status st;
    cJSON *version = NULL;
    int rc = ns_kube_request(probe, "GET", "/version", NULL, NULL, 0, true, &version, &st);
    ns_kube_free(probe);
    if (rc != 0 && st.http == 0) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "the API server at %s is unreachable: %s", server, st.message);
        ns_kube_config_free(&cfg);
        return skip(msg);
    }
    if (rc != 0) {
        fprintf(stderr, "FAIL: GET /version: HTTP %ld %s\n", st.http, st.message);
        ns_kube_config_free(&cfg);
        return 1;
    }
    printf("API server %s, Kubernetes %s\n", server, ns_json_str(version, "gitVersion"));
    cJSON_Delete(version);

    ns_kube_options opts = {.user_agent = "nutshell-kube-client-test", .max_retries = 3};
    rc = ns_kube_new(&cfg, &opts, &kube, &err);
    ns_kube_config_free(&cfg);
    if (rc) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    snprintf(ns_name, sizeof(ns_name), "kube-client-test-%ld-%ld", (long)getpid(),
             (long)time(NULL) % 100000);
    ns_kube_ref nsref = {.version = "v1", .resource = "namespaces", .name = ns_name};
    cJSON *nsobj = jsonf("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":"
                         "\"%s\",\"labels\":{\"nutshell.io/test\":\"kube-client\"}}}",
                         ns_name);
    rc = ns_kube_create(kube, &nsref, nsobj, NULL, NULL, &st);
    cJSON_Delete(nsobj);
    if (rc) {
        fprintf(stderr, "FAIL: cannot create namespace %s: %s\n", ns_name, st.message);
        ns_kube_free(kube);
        return 1;
    }
    printf("namespace %s\n", ns_name);

    static const ns_suite suites[] = {
        {"kube client", client_tests},
        {"kube watch", watch_tests},
        {NULL, NULL},
    };
    int result = ns_test_main(suites);

    ns_kube_delete_opts del = {.propagation_policy = "Background"};
    rc = ns_kube_delete(kube, &nsref, &del, NULL, &st);
    if (rc)
        fprintf(stderr, "warning: cannot delete namespace %s: %s\n", ns_name, st.message);
    ns_kube_free(kube);
    return result;
}

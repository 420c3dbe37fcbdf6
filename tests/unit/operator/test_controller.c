/* test_controller.c - the controller loop without a server: workers and reconcile
 * results, retries with backoff, requeue_after, pause/resume, stop, metrics, informers
 * feeding it (scripted source), and the enqueue helpers. */
#include "controller.h"
#include "suites.h"

#include "json.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NKEYS 32

typedef struct rec {
    op_controller *c;
    atomic_int calls[NKEYS];
    atomic_int in_flight[NKEYS];
    atomic_int overlaps;
    atomic_int total;
    int fail_times;             /* key k0 fails this many times with -EIO ... */
    int again_times;            /* ... then asks for -EAGAIN this many times */
    long requeue_after;         /* > 0: k0's first call asks to be called again after this */
    int sleep_ms;               /* each call takes this long */
    atomic_bool entered;        /* a reconcile has started */
    atomic_bool finished;       /* ... and returned */
    _Atomic int64_t call_ms[8]; /* when k0 was called */
} rec;

static int idx(const char *key)
{
    const char *p = strrchr(key, 'k');
    int i = p ? (int)strtol(p + 1, NULL, 10) : 0;
    return i >= 0 && i < NKEYS ? i : 0;
}

static int reconcile_cb(void *ctx, const char *key, ns_err *err)
{
    rec *r = ctx;
    int i = idx(key);
    atomic_store(&r->entered, true);
    if (atomic_fetch_add(&r->in_flight[i], 1) != 0)
        atomic_fetch_add(&r->overlaps, 1);
    int n = atomic_fetch_add(&r->calls[i], 1);
    atomic_fetch_add(&r->total, 1);
    if (i == 0 && n < 8)
        r->call_ms[n] = test_now_ms();
    if (r->sleep_ms)
        usleep((useconds_t)r->sleep_ms * 1000);
    int rc = 0;
    if (i == 0 && n < r->fail_times) {
        rc = ns_errorf(err, -EIO, "injected failure %d", n + 1);
    } else if (i == 0 && n < r->fail_times + r->again_times) {
        rc = -EAGAIN;
    } else if (i == 0 && n == 0 && r->requeue_after > 0) {
        op_controller_requeue_after(r->c, key, r->requeue_after);
    }
    atomic_fetch_sub(&r->in_flight[i], 1);
    atomic_store(&r->finished, true);
    return rc;
}

static op_controller *make(rec *r, unsigned workers, bool paused, ns_metrics *reg)
{
    op_controller_opts o = {.name = "test",
                            .workers = workers,
                            .reconcile = reconcile_cb,
                            .ctx = r,
                            .backoff_base_ms = 10,
                            .backoff_max_ms = 1000,
                            .start_paused = paused,
                            .metrics = reg};
    ns_err err = {0};
    op_controller *c = NULL;
    NS_ASSERT_INT_EQ(op_controller_new(&o, &c, &err), 0);
    r->c = c;
    return c;
}

static void enqueue_n(op_controller *c, int n)
{
    char key[16];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "ns/k%d", i);
        op_controller_enqueue(c, key);
    }
}

static void test_new_checks(void)
{
    op_controller *c = NULL;
    ns_err err = {0};
    op_controller_opts o = {.name = "Bad_Name", .reconcile = reconcile_cb};
    NS_ASSERT_INT_EQ(op_controller_new(&o, &c, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "Bad_Name"));
    o.name = "";
    NS_ASSERT_INT_EQ(op_controller_new(&o, &c, &err), -EINVAL);
    o = (op_controller_opts){.name = "ok"};
    NS_ASSERT_INT_EQ(op_controller_new(&o, &c, &err), -EINVAL);
    CU_ASSERT_PTR_NULL(c);
    op_controller_free(NULL);
}

static void test_each_key_once(void)
{
    rec *r = calloc(1, sizeof(*r));
    op_controller *c = make(r, 3, false, NULL);
    enqueue_n(c, 20);
    enqueue_n(c, 20); /* duplicates before any worker runs */
    NS_ASSERT_INT_EQ(op_controller_start(c, 0, NULL), 0);
    NS_ASSERT_INT_EQ(op_controller_start(c, 0, NULL), -EBUSY);
    CU_ASSERT_TRUE(WAIT_UNTIL(atomic_load(&r->total) >= 20, 5000));
    usleep(20000);
    NS_ASSERT_INT_EQ(atomic_load(&r->total), 20);
    for (int i = 0; i < 20; i++)
        NS_ASSERT_INT_EQ(atomic_load(&r->calls[i]), 1);
    op_controller_stats st;
    op_controller_get_stats(c, &st);
    NS_ASSERT_INT_EQ(st.success, 20);
    NS_ASSERT_INT_EQ(st.error + st.requeue, 0);
    op_controller_free(c);
    free(r);
}

static void test_errors_retry_with_backoff(void)
{
    rec *r = calloc(1, sizeof(*r));
    r->fail_times = 3;
    r->again_times = 1;
    op_controller *c = make(r, 2, false, NULL);
    op_controller_start(c, 0, NULL);
    op_controller_enqueue(c, "ns/k0");
    /* 3 failures and a -EAGAIN, then success: backoff 10, 20, 40, 80 ms */
    CU_ASSERT_TRUE(WAIT_UNTIL(atomic_load(&r->calls[0]) >= 5, 5000));
    usleep(30000);
    NS_ASSERT_INT_EQ(atomic_load(&r->calls[0]), 5);
    long want[] = {10, 20, 40, 80};
    for (int i = 0; i < 4; i++) {
        int64_t gap = r->call_ms[i + 1] - r->call_ms[i];
        if (gap < want[i] - 2 || gap > want[i] + 400)
            fprintf(stderr, "\n  retry %d after %lld ms, expected about %ld\n", i + 1,
                    (long long)gap, want[i]);
        CU_ASSERT_TRUE(gap >= want[i] - 2 && gap <= want[i] + 400);
    }
    op_controller_stats st;
    op_controller_get_stats(c, &st);
    NS_ASSERT_INT_EQ(st.error, 3);
    NS_ASSERT_INT_EQ(st.requeue, 1);
    NS_ASSERT_INT_EQ(st.success, 1);
    /* success forgot the failures */
    NS_ASSERT_INT_EQ(op_workqueue_num_requeues(op_controller_queue(c), "ns/k0"), 0);
    op_controller_free(c);
    free(r);
}

static void test_requeue_after(void)
{
    rec *r = calloc(1, sizeof(*r));
    r->requeue_after = 60;
    op_controller *c = make(r, 1, false, NULL);
    op_controller_start(c, 0, NULL);
    op_controller_enqueue(c, "ns/k0");
    CU_ASSERT_TRUE(WAIT_UNTIL(atomic_load(&r->calls[0]) >= 2, 5000));
    int64_t gap = r->call_ms[1] - r->call_ms[0];
    CU_ASSERT_TRUE(gap >= 55 && gap < 1000);
    usleep(100000);
    NS_ASSERT_INT_EQ(atomic_load(&r->calls[0]), 2); /* only asked once */
    op_controller_free(c);
    free(r);
}

static void test_pause_resume(void)
{
    rec *r = calloc(1, sizeof(*r));
    op_controller *c = make(r, 2, true, NULL); /* a standby replica */
    op_controller_start(c, 0, NULL);
    enqueue_n(c, 5);
    usleep(50000);
    NS_ASSERT_INT_EQ(atomic_load(&r->total), 0);
    op_controller_resume(c); /* became leader */
    CU_ASSERT_TRUE(WAIT_UNTIL(atomic_load(&r->total) == 5, 5000));
    op_controller_pause(c); /* lost the lease */
    enqueue_n(c, 10);
    usleep(50000);
    NS_ASSERT_INT_EQ(atomic_load(&r->total), 5);
    NS_ASSERT_INT_EQ(op_workqueue_len(op_controller_queue(c)), 10);
    op_controller_resume(c);
    CU_ASSERT_TRUE(WAIT_UNTIL(atomic_load(&r->total) == 15, 5000));
    op_controller_free(c);
    free(r);
}

static void test_stop_waits_for_running_reconcile(void)
{
    rec *r = calloc(1, sizeof(*r));
    r->sleep_ms = 150;
    op_controller *c = make(r, 1, false, NULL);
    op_controller_start(c, 0, NULL);
    op_controller_enqueue(c, "ns/k1");
    op_controller_enqueue(c, "ns/k2");
    CU_ASSERT_TRUE(WAIT_UNTIL(atomic_load(&r->entered), 5000));
    CU_ASSERT_FALSE(op_controller_stopping(c));
    op_controller_stop(c);
    CU_ASSERT_TRUE(op_controller_stopping(c));
    /* the running reconcile finished; the queued key was dropped */
    CU_ASSERT_TRUE(atomic_load(&r->finished));
    NS_ASSERT_INT_EQ(atomic_load(&r->total), 1);
    NS_ASSERT_INT_EQ(op_controller_enqueue(c, "ns/k3"), -ESHUTDOWN);
    op_controller_stop(c); /* idempotent */
    op_controller_free(c);
    free(r);

    /* stopping a controller that never started */
    r = calloc(1, sizeof(*r));
    c = make(r, 1, false, NULL);
    op_controller_stop(c);
    NS_ASSERT_INT_EQ(op_controller_start(c, 0, NULL), -EBUSY);
    op_controller_free(c);
    free(r);
}

typedef struct hammer {
    op_controller *c;
    atomic_bool stop;
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    char key[16];
    unsigned seed = 7;
    while (!atomic_load(&h->stop)) {
        snprintf(key, sizeof(key), "ns/k%u", rand_r(&seed) % 4);
        op_controller_enqueue(h->c, key);
    }
    return NULL;
}

static void test_no_concurrent_reconcile_of_a_key(void)
{
    rec *r = calloc(1, sizeof(*r));
    r->sleep_ms = 1;
    op_controller *c = make(r, 8, false, NULL);
    op_controller_start(c, 0, NULL);
    hammer h = {.c = c};
    pthread_t th[2];
    pthread_create(&th[0], NULL, hammer_main, &h);
    pthread_create(&th[1], NULL, hammer_main, &h);
    usleep(200000);
    atomic_store(&h.stop, true);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    op_controller_stop(c);
    NS_ASSERT_INT_EQ(atomic_load(&r->overlaps), 0);
    CU_ASSERT_TRUE(atomic_load(&r->total) > 4);
    op_controller_free(c);
    free(r);
}

static void test_metrics(void)
{
    ns_metrics reg = NS_METRICS_INIT;
    rec *r = calloc(1, sizeof(*r));
    r->fail_times = 1;
    op_controller *c = make(r, 1, false, &reg);
    op_controller_start(c, 0, NULL);
    op_controller_enqueue(c, "ns/k0");
    op_controller_enqueue(c, "ns/k1");
    CU_ASSERT_TRUE(WAIT_UNTIL(atomic_load(&r->total) >= 3, 5000));
    usleep(10000);
    ns_buf out;
    ns_buf_init(&out);
    ns_metrics_render(&reg, &out);
    const char *text = ns_buf_cstr(&out);
    static const char *const want[] = {
        "nutshell_operator_reconcile_total{controller=\"test\",result=\"success\"} 2",
        "nutshell_operator_reconcile_total{controller=\"test\",result=\"error\"} 1",
        "nutshell_operator_reconcile_total{controller=\"test\",result=\"requeue\"} 0",
        "nutshell_operator_reconcile_errors_total{controller=\"test\"} 1",
        "nutshell_operator_reconcile_duration_seconds_count{controller=\"test\"} 3",
        "nutshell_operator_workqueue_depth{controller=\"test\"} 0",
        "nutshell_operator_workqueue_adds_total{controller=\"test\"} 3",
        "nutshell_operator_workqueue_retries_total{controller=\"test\"} 1",
        "# TYPE nutshell_operator_reconcile_duration_seconds histogram",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (!strstr(text, want[i]))
            fprintf(stderr, "\n  missing: %s\n%s\n", want[i], text);
        CU_ASSERT_PTR_NOT_NULL(strstr(text, want[i]));
    }
    ns_buf_free(&out);
    /* freeing the controller takes its series out of the registry */
    op_controller_free(c);
    ns_buf_init(&out);
    ns_metrics_render(&reg, &out);
    CU_ASSERT_PTR_NULL(strstr(ns_buf_cstr(&out), "nutshell_operator"));
    ns_buf_free(&out);
    free(r);
}

/* ---- pure helpers ---- */

static void test_owner_key(void)
{
    char key[OP_KEY_MAX];
    cJSON *o = cJSON_Parse(
        "{\"metadata\":{\"name\":\"injector\",\"namespace\":\"nutshell-system\","
        "\"ownerReferences\":["
        "{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\",\"name\":\"rs\"},"
        "{\"apiVersion\":\"nutshell.io/v1alpha1\",\"kind\":\"Mesh\",\"name\":\"default\","
        "\"controller\":true}]}}");
    NS_ASSERT_INT_EQ(op_owner_key(o, "nutshell.io", "Mesh", false, key, sizeof(key)), 0);
    NS_ASSERT_STR_EQ(key, "default");
    NS_ASSERT_INT_EQ(op_owner_key(o, "nutshell.io", "Mesh", true, key, sizeof(key)), 0);
    NS_ASSERT_STR_EQ(key, "nutshell-system/default");
    /* not the controller, wrong group, wrong kind */
    NS_ASSERT_INT_EQ(op_owner_key(o, "apps", "ReplicaSet", true, key, sizeof(key)), -ENOENT);
    NS_ASSERT_INT_EQ(op_owner_key(o, "other.io", "Mesh", false, key, sizeof(key)), -ENOENT);
    NS_ASSERT_INT_EQ(op_owner_key(o, "nutshell.io", "Canary", false, key, sizeof(key)), -ENOENT);
    NS_ASSERT_INT_EQ(op_owner_key(o, "nutshell.io", "Mesh", true, key, 8), -ENAMETOOLONG);
    cJSON_Delete(o);
    /* the core group is "" and its apiVersion has no slash */
    o = cJSON_Parse("{\"metadata\":{\"name\":\"x\",\"namespace\":\"n\",\"ownerReferences\":["
                    "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"name\":\"svc\","
                    "\"controller\":true}]}}");
    NS_ASSERT_INT_EQ(op_owner_key(o, "", "Service", true, key, sizeof(key)), 0);
    NS_ASSERT_STR_EQ(key, "n/svc");
    NS_ASSERT_INT_EQ(op_owner_key(o, NULL, "Service", true, key, sizeof(key)), 0);
    cJSON_Delete(o);
    NS_ASSERT_INT_EQ(op_owner_key(NULL, "", "Service", true, key, sizeof(key)), -ENOENT);
}

static void test_predicates(void)
{
    cJSON *g1 = cJSON_Parse("{\"metadata\":{\"generation\":1,\"labels\":{\"a\":\"1\"}},"
                            "\"status\":{\"phase\":\"A\"}}");
    cJSON *g1s = cJSON_Parse("{\"metadata\":{\"generation\":1,\"labels\":{\"a\":\"1\"}},"
                             "\"status\":{\"phase\":\"B\"}}");
    cJSON *g2 = cJSON_Parse("{\"metadata\":{\"generation\":2,\"labels\":{\"a\":\"1\"}}}");
    cJSON *lab = cJSON_Parse("{\"metadata\":{\"generation\":1,\"labels\":{\"a\":\"2\"}}}");
    cJSON *del = cJSON_Parse("{\"metadata\":{\"generation\":1,\"labels\":{\"a\":\"1\"},"
                             "\"deletionTimestamp\":\"2024-01-01T00:00:00Z\"}}");
    cJSON *nogen = cJSON_Parse("{\"metadata\":{}}");
    op_informer_event ev = {.type = OP_INFORMER_UPDATE, .key = "k", .old = g1, .obj = g1s};
    CU_ASSERT_FALSE(op_generation_changed(&ev)); /* a status write */
    CU_ASSERT_FALSE(op_metadata_changed(&ev));
    ev.obj = g2;
    CU_ASSERT_TRUE(op_generation_changed(&ev));
    ev.obj = lab;
    CU_ASSERT_FALSE(op_generation_changed(&ev));
    CU_ASSERT_TRUE(op_metadata_changed(&ev));
    ev.obj = del;
    CU_ASSERT_TRUE(op_metadata_changed(&ev));
    ev.obj = nogen;
    CU_ASSERT_TRUE(op_generation_changed(&ev));
    ev = (op_informer_event){.type = OP_INFORMER_ADD, .key = "k", .obj = g1};
    CU_ASSERT_TRUE(op_generation_changed(&ev));
    CU_ASSERT_TRUE(op_metadata_changed(&ev));
    ev.type = OP_INFORMER_RESYNC;
    ev.old = g1;
    CU_ASSERT_TRUE(op_generation_changed(&ev));
    cJSON_Delete(g1);
    cJSON_Delete(g1s);
    cJSON_Delete(g2);
    cJSON_Delete(lab);
    cJSON_Delete(del);
    cJSON_Delete(nogen);
}

const ns_test controller_tests[] = {
    {"option checks", test_new_checks},
    {"each queued key reconciled once", test_each_key_once},
    {"errors retried with backoff, -EAGAIN, forget", test_errors_retry_with_backoff},
    {"requeue_after", test_requeue_after},
    {"paused standby, resume, pause", test_pause_resume},
    {"stop waits for the running reconcile", test_stop_waits_for_running_reconcile},
    {"8 workers, hammered keys: never concurrent", test_no_concurrent_reconcile_of_a_key},
    {"metrics, and their removal", test_metrics},
    {"owner keys", test_owner_key},
    {"generation and metadata predicates", test_predicates},
    {NULL, NULL},
};

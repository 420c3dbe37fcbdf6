/* test_workqueue.c - de-duplication, never two workers on one key, backoff, delayed adds,
 * pause, shutdown, metrics; and a multi-threaded property test. */
#include "suites.h"
#include "workqueue.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static op_workqueue *make(long base_ms)
{
    op_workqueue *q = NULL;
    op_workqueue_opts o = {.base_delay_ms = base_ms};
    NS_ASSERT_INT_EQ(op_workqueue_new(&o, &q), 0);
    return q;
}

/* Takes a key without waiting; NULL if none. Caller frees. */
static char *take(op_workqueue *q, long timeout_ms)
{
    char *k = NULL;
    int rc = op_workqueue_get(q, timeout_ms, &k);
    return rc == 0 ? k : NULL;
}

static void test_backoff(void)
{
    NS_ASSERT_INT_EQ(op_backoff_delay_ms(5, 300000, 0), 5);
    NS_ASSERT_INT_EQ(op_backoff_delay_ms(5, 300000, 1), 10);
    NS_ASSERT_INT_EQ(op_backoff_delay_ms(5, 300000, 2), 20);
    NS_ASSERT_INT_EQ(op_backoff_delay_ms(5, 300000, 15), 163840);
    NS_ASSERT_INT_EQ(op_backoff_delay_ms(5, 300000, 16), 300000);
    NS_ASSERT_INT_EQ(op_backoff_delay_ms(5, 300000, 1000), 300000);
    NS_ASSERT_INT_EQ(op_backoff_delay_ms(5, 300000, 4000000000u), 300000);
    /* monotonic, never above the cap */
    long prev = 0;
    for (unsigned f = 0; f < 100; f++) {
        long d = op_backoff_delay_ms(7, 1000, f);
        CU_ASSERT_TRUE(d >= prev && d <= 1000);
        prev = d;
    }
    /* nonsense bounds stay sane */
    NS_ASSERT_INT_EQ(op_backoff_delay_ms(50, 10, 3), 50);
    NS_ASSERT_INT_EQ(op_backoff_delay_ms(0, 0, 0), 1);
}

static void test_dedup_and_order(void)
{
    op_workqueue *q = make(0);
    NS_ASSERT_INT_EQ(op_workqueue_add(q, "a"), 0);
    NS_ASSERT_INT_EQ(op_workqueue_add(q, "b"), 0);
    NS_ASSERT_INT_EQ(op_workqueue_add(q, "a"), 0);
    NS_ASSERT_INT_EQ(op_workqueue_add(q, "c"), 0);
    NS_ASSERT_INT_EQ(op_workqueue_add(q, "b"), 0);
    NS_ASSERT_INT_EQ(op_workqueue_len(q), 3);
    const char *want[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        char *k = take(q, 0);
        NS_ASSERT_STR_EQ(k, want[i]);
        op_workqueue_done(q, k);
        free(k);
    }
    CU_ASSERT_PTR_NULL(take(q, 0));
    NS_ASSERT_INT_EQ(op_workqueue_add(q, NULL), -EINVAL);
    op_workqueue_free(q);
}

static void test_readd_while_processing(void)
{
    op_workqueue *q = make(0);
    op_workqueue_add(q, "k");
    char *k = take(q, 0);
    NS_ASSERT_STR_EQ(k, "k");
    NS_ASSERT_INT_EQ(op_workqueue_processing(q), 1);
    /* added again (twice) while processing: not handed to another worker now ... */
    op_workqueue_add(q, "k");
    op_workqueue_add(q, "k");
    NS_ASSERT_INT_EQ(op_workqueue_len(q), 0);
    char *other = NULL;
    NS_ASSERT_INT_EQ(op_workqueue_get(q, 20, &other), -ETIMEDOUT);
    CU_ASSERT_PTR_NULL(other);
    /* ... but once after done */
    op_workqueue_done(q, k);
    NS_ASSERT_INT_EQ(op_workqueue_len(q), 1);
    char *again = take(q, 0);
    NS_ASSERT_STR_EQ(again, "k");
    op_workqueue_done(q, again);
    NS_ASSERT_INT_EQ(op_workqueue_len(q), 0);
    /* done of an unknown or finished key is ignored */
    op_workqueue_done(q, "k");
    op_workqueue_done(q, "nope");
    NS_ASSERT_INT_EQ(op_workqueue_processing(q), 0);
    free(k);
    free(again);
    op_workqueue_free(q);
}

static void test_add_after(void)
{
    op_workqueue *q = make(0);
    int64_t t0 = test_now_ms();
    NS_ASSERT_INT_EQ(op_workqueue_add_after(q, "later", 60), 0);
    NS_ASSERT_INT_EQ(op_workqueue_len(q), 0);
    NS_ASSERT_INT_EQ(op_workqueue_delayed(q), 1);
    char *k = take(q, 2000); /* blocks until the delay fires */
    int64_t waited = test_now_ms() - t0;
    NS_ASSERT_STR_EQ(k, "later");
    CU_ASSERT_TRUE(waited >= 55 && waited < 1000);
    op_workqueue_done(q, k);
    free(k);
    NS_ASSERT_INT_EQ(op_workqueue_delayed(q), 0);

    /* the earlier of two delays wins */
    t0 = test_now_ms();
    op_workqueue_add_after(q, "x", 5000);
    op_workqueue_add_after(q, "x", 30);
    op_workqueue_add_after(q, "x", 4000);
    NS_ASSERT_INT_EQ(op_workqueue_delayed(q), 1);
    k = take(q, 2000);
    NS_ASSERT_STR_EQ(k, "x");
    waited = test_now_ms() - t0;
    CU_ASSERT_TRUE(waited >= 25 && waited < 1000);
    op_workqueue_done(q, k);
    free(k);

    /* zero or negative delay is an add */
    op_workqueue_add_after(q, "now", 0);
    op_workqueue_add_after(q, "now2", -5);
    NS_ASSERT_INT_EQ(op_workqueue_len(q), 2);

    /* a delayed add of a key that is queued brings it back once more, after the delay */
    op_workqueue_free(q);
    q = make(0);
    op_workqueue_add(q, "d");
    op_workqueue_add_after(q, "d", 30);
    k = take(q, 0);
    NS_ASSERT_STR_EQ(k, "d");
    op_workqueue_done(q, k);
    free(k);
    k = take(q, 2000);
    NS_ASSERT_STR_EQ(k, "d");
    op_workqueue_done(q, k);
    free(k);
    CU_ASSERT_PTR_NULL(take(q, 50));
    op_workqueue_free(q);
}

/* A worker blocked on a far delay wakes up for a nearer one added later. */
typedef struct getter {
    op_workqueue *q;
    char *key;
    int rc;
    int64_t at;
} getter;

static void *get_main(void *arg)
{
    getter *g = arg;
    g->rc = op_workqueue_get(g->q, 5000, &g->key);
    g->at = test_now_ms();
    return NULL;
}

static void test_nearer_delay_wakes_waiter(void)
{
    op_workqueue *q = make(0);
    op_workqueue_add_after(q, "far", 4000);
    getter g = {.q = q};
    pthread_t th;
    pthread_create(&th, NULL, get_main, &g);
    usleep(20000);
    int64_t t0 = test_now_ms();
    op_workqueue_add_after(q, "near", 30);
    pthread_join(th, NULL);
    NS_ASSERT_INT_EQ(g.rc, 0);
    NS_ASSERT_STR_EQ(g.key, "near");
    CU_ASSERT_TRUE(g.at - t0 >= 25 && g.at - t0 < 1000);
    free(g.key);
    op_workqueue_free(q);
}

static void test_rate_limited(void)
{
    op_workqueue *q = make(20);
    NS_ASSERT_INT_EQ(op_workqueue_num_requeues(q, "r"), 0);
    /* failure 1: 20 ms, failure 2: 40 ms, failure 3: 80 ms */
    long want[] = {20, 40, 80};
    for (int i = 0; i < 3; i++) {
        int64_t t0 = test_now_ms();
        NS_ASSERT_INT_EQ(op_workqueue_add_rate_limited(q, "r"), 0);
        char *k = take(q, 3000);
        int64_t waited = test_now_ms() - t0;
        NS_ASSERT_STR_EQ(k, "r");
        if (waited < want[i] - 3 || waited > want[i] + 500)
            fprintf(stderr, "\n  retry %d after %lld ms, expected about %ld\n", i + 1,
                    (long long)waited, want[i]);
        CU_ASSERT_TRUE(waited >= want[i] - 3 && waited <= want[i] + 500);
        op_workqueue_done(q, k);
        free(k);
        NS_ASSERT_INT_EQ(op_workqueue_num_requeues(q, "r"), i + 1);
    }
    /* forget: back to the base delay, and the key leaves the queue's memory */
    op_workqueue_forget(q, "r");
    NS_ASSERT_INT_EQ(op_workqueue_num_requeues(q, "r"), 0);
    int64_t t0 = test_now_ms();
    op_workqueue_add_rate_limited(q, "r");
    char *k = take(q, 3000);
    CU_ASSERT_TRUE(test_now_ms() - t0 < 20 + 500);
    op_workqueue_done(q, k);
    free(k);
    /* failures are per key */
    op_workqueue_add_rate_limited(q, "s");
    NS_ASSERT_INT_EQ(op_workqueue_num_requeues(q, "s"), 1);
    NS_ASSERT_INT_EQ(op_workqueue_num_requeues(q, "r"), 1);
    op_workqueue_free(q);
}

static void test_shutdown(void)
{
    /* wakes a blocked get; later adds are refused */
    op_workqueue *q = make(0);
    getter g = {.q = q};
    pthread_t th;
    pthread_create(&th, NULL, get_main, &g);
    usleep(20000);
    int64_t t0 = test_now_ms();
    op_workqueue_shutdown(q, false);
    pthread_join(th, NULL);
    NS_ASSERT_INT_EQ(g.rc, -ESHUTDOWN);
    CU_ASSERT_TRUE(g.at - t0 < 500);
    CU_ASSERT_TRUE(op_workqueue_shutting_down(q));
    NS_ASSERT_INT_EQ(op_workqueue_add(q, "x"), -ESHUTDOWN);
    NS_ASSERT_INT_EQ(op_workqueue_add_after(q, "x", 10), -ESHUTDOWN);
    NS_ASSERT_INT_EQ(op_workqueue_add_rate_limited(q, "x"), -ESHUTDOWN);
    op_workqueue_shutdown(q, true); /* idempotent, keeps the first mode */
    char *k = NULL;
    NS_ASSERT_INT_EQ(op_workqueue_get(q, -1, &k), -ESHUTDOWN);
    op_workqueue_free(q);

    /* without drain, queued keys are dropped */
    q = make(0);
    op_workqueue_add(q, "a");
    op_workqueue_shutdown(q, false);
    NS_ASSERT_INT_EQ(op_workqueue_get(q, 0, &k), -ESHUTDOWN);
    op_workqueue_free(q);

    /* with drain, they are handed out first; a key in flight can still finish */
    q = make(0);
    op_workqueue_add(q, "a");
    op_workqueue_add(q, "b");
    char *a = take(q, 0);
    op_workqueue_add(q, "a"); /* dirty while processing */
    op_workqueue_shutdown(q, true);
    char *b = take(q, 0);
    NS_ASSERT_STR_EQ(b, "b");
    op_workqueue_done(q, a);
    char *a2 = take(q, 0);
    NS_ASSERT_STR_EQ(a2, "a");
    NS_ASSERT_INT_EQ(op_workqueue_get(q, 0, &k), -ESHUTDOWN);
    op_workqueue_done(q, b);
    op_workqueue_done(q, a2);
    free(a);
    free(b);
    free(a2);
    op_workqueue_free(q);
}

static void test_pause(void)
{
    op_workqueue *q = make(0);
    op_workqueue_set_paused(q, true);
    op_workqueue_add(q, "p");
    char *k = NULL;
    NS_ASSERT_INT_EQ(op_workqueue_get(q, 30, &k), -ETIMEDOUT);
    NS_ASSERT_INT_EQ(op_workqueue_len(q), 1);
    /* a blocked get is woken by resume */
    getter g = {.q = q};
    pthread_t th;
    pthread_create(&th, NULL, get_main, &g);
    usleep(20000);
    int64_t t0 = test_now_ms();
    op_workqueue_set_paused(q, false);
    pthread_join(th, NULL);
    NS_ASSERT_INT_EQ(g.rc, 0);
    NS_ASSERT_STR_EQ(g.key, "p");
    CU_ASSERT_TRUE(g.at - t0 < 500);
    op_workqueue_done(q, g.key);
    free(g.key);
    /* shutdown wins over pause */
    op_workqueue_set_paused(q, true);
    op_workqueue_add(q, "p");
    op_workqueue_shutdown(q, true);
    NS_ASSERT_INT_EQ(op_workqueue_get(q, 1000, &k), -ESHUTDOWN);
    op_workqueue_free(q);
}

static void test_wait_idle(void)
{
    op_workqueue *q = make(0);
    NS_ASSERT_INT_EQ(op_workqueue_wait_idle(q, 0), 0);
    op_workqueue_add(q, "w");
    char *k = take(q, 0);
    NS_ASSERT_INT_EQ(op_workqueue_wait_idle(q, 20), -ETIMEDOUT);
    op_workqueue_done(q, k);
    NS_ASSERT_INT_EQ(op_workqueue_wait_idle(q, 20), 0);
    free(k);
    op_workqueue_free(q);
}

static void test_metrics(void)
{
    ns_metric depth = {.name = "d", .type = NS_METRIC_GAUGE};
    ns_metric adds = {.name = "a", .type = NS_METRIC_COUNTER};
    ns_metric retries = {.name = "r", .type = NS_METRIC_COUNTER};
    op_workqueue_opts o = {.base_delay_ms = 1, .depth = &depth, .adds = &adds, .retries = &retries};
    op_workqueue *q = NULL;
    NS_ASSERT_INT_EQ(op_workqueue_new(&o, &q), 0);
    op_workqueue_add(q, "a");
    op_workqueue_add(q, "a");
    op_workqueue_add(q, "b");
    op_workqueue_add(q, "c");
    NS_ASSERT_INT_EQ(atomic_load(&depth.value), 3);
    NS_ASSERT_INT_EQ(atomic_load(&adds.value), 3);
    char *k = take(q, 0);
    NS_ASSERT_INT_EQ(atomic_load(&depth.value), 2);
    op_workqueue_add_rate_limited(q, k);
    NS_ASSERT_INT_EQ(atomic_load(&retries.value), 1);
    op_workqueue_done(q, k);
    free(k);
    op_workqueue_free(q);
}

/* ---- many threads: each key processed by one worker at a time, and processed after
 * its last add ---- */

#define NKEYS             64
#define NPRODUCERS        3
#define NWORKERS          4
#define ADDS_PER_PRODUCER 3000

typedef struct stress {
    op_workqueue *q;
    atomic_int in_flight[NKEYS];
    atomic_long wanted[NKEYS];  /* generation of the latest add */
    atomic_long handled[NKEYS]; /* latest generation a worker saw when it took the key */
    atomic_int overlaps;
    atomic_long processed;
    atomic_long gen;
} stress;

static int key_index(const char *k)
{
    return (int)strtol(k + 1, NULL, 10);
}

static void *producer_main(void *arg)
{
    stress *s = arg;
    unsigned seed = (unsigned)(uintptr_t)pthread_self();
    char key[16];
    for (int i = 0; i < ADDS_PER_PRODUCER; i++) {
        int k = (int)(rand_r(&seed) % NKEYS);
        snprintf(key, sizeof(key), "k%d", k);
        long g = atomic_fetch_add(&s->gen, 1) + 1;
        /* the generation is published before the add that announces it */
        long cur = atomic_load(&s->wanted[k]);
        while (cur < g && !atomic_compare_exchange_weak(&s->wanted[k], &cur, g))
            ;
        if (i % 7 == 0)
            op_workqueue_add_after(s->q, key, rand_r(&seed) % 3);
        else
            op_workqueue_add(s->q, key);
        if (i % 50 == 0)
            usleep(100);
    }
    return NULL;
}

static void *worker_main(void *arg)
{
    stress *s = arg;
    char *key;
    while (op_workqueue_get(s->q, -1, &key) == 0) {
        int k = key_index(key);
        if (atomic_fetch_add(&s->in_flight[k], 1) != 0)
            atomic_fetch_add(&s->overlaps, 1);
        long seen = atomic_load(&s->wanted[k]);
        long cur = atomic_load(&s->handled[k]);
        while (cur < seen && !atomic_compare_exchange_weak(&s->handled[k], &cur, seen))
            ;
        if (atomic_fetch_add(&s->processed, 1) % 5 == 0)
            usleep(50);
        atomic_fetch_sub(&s->in_flight[k], 1);
        op_workqueue_done(s->q, key);
        free(key);
    }
    return NULL;
}

static void test_concurrent_workers(void)
{
    stress *s = calloc(1, sizeof(*s));
    s->q = make(1);
    pthread_t workers[NWORKERS], producers[NPRODUCERS];
    for (int i = 0; i < NWORKERS; i++)
        pthread_create(&workers[i], NULL, worker_main, s);
    for (int i = 0; i < NPRODUCERS; i++)
        pthread_create(&producers[i], NULL, producer_main, s);
    for (int i = 0; i < NPRODUCERS; i++)
        pthread_join(producers[i], NULL);
    bool drained = WAIT_UNTIL(op_workqueue_len(s->q) == 0 && op_workqueue_delayed(s->q) == 0 &&
                                  op_workqueue_processing(s->q) == 0,
                              20000);
    CU_ASSERT_TRUE(drained);
    op_workqueue_shutdown(s->q, false);
    for (int i = 0; i < NWORKERS; i++)
        pthread_join(workers[i], NULL);

    NS_ASSERT_INT_EQ(atomic_load(&s->overlaps), 0);
    int stale = 0;
    for (int k = 0; k < NKEYS; k++)
        if (atomic_load(&s->handled[k]) != atomic_load(&s->wanted[k]))
            stale++;
    NS_ASSERT_INT_EQ(stale, 0);
    /* de-duplication did its job: far fewer reconciles than adds */
    long processed = atomic_load(&s->processed);
    CU_ASSERT_TRUE(processed > 0 && processed <= NPRODUCERS * ADDS_PER_PRODUCER);
    op_workqueue_free(s->q);
    free(s);
}

const ns_test workqueue_tests[] = {
    {"backoff doubles to the cap", test_backoff},
    {"duplicates collapse, FIFO order", test_dedup_and_order},
    {"re-add while processing waits for done", test_readd_while_processing},
    {"add_after, earliest delay wins", test_add_after},
    {"a nearer delay wakes a waiting worker", test_nearer_delay_wakes_waiter},
    {"rate-limited retries and forget", test_rate_limited},
    {"shutdown, with and without drain", test_shutdown},
    {"pause and resume", test_pause},
    {"wait_idle", test_wait_idle},
    {"depth, adds, retries metrics", test_metrics},
    {"4 workers, 3 producers: no overlap, nothing lost", test_concurrent_workers},
    {NULL, NULL},
};

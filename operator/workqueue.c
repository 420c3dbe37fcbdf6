/* workqueue.c - de-duplicating work queue with per-key backoff and delayed adds. */
#include "workqueue.h"

#include <errno.h>
#include <pthread.h>
#include <search.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOT_WAITING SIZE_MAX

/* Everything the queue knows about one key. An item lives in `tree` while it has any
 * state at all and is freed as soon as it has none (see release_if_unused), so the
 * queue's memory follows its live keys, not every key ever seen. */
typedef struct item {
    char *key;
    bool dirty;        /* must be processed (again) */
    bool processing;   /* handed out by get, done not yet called */
    unsigned failures; /* since the last forget */
    size_t heap_idx;   /* position in the delay heap, or NOT_WAITING */
    int64_t ready_at;  /* monotonic ms at which a delayed add fires */
    struct item *next; /* ready FIFO link */
} item;

struct op_workqueue {
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* ready keys, new earliest delay, unpause, shutdown */
    pthread_cond_t idle_cv; /* a key finished processing */
    void *tree;             /* tsearch tree of item*, by key */
    item *head, *tail;      /* ready FIFO */
    size_t len;
    item **heap; /* min-heap on ready_at */
    size_t heap_len, heap_cap;
    size_t processing;
    bool shutting_down, drain, paused;
    long base_ms, max_ms;
    ns_metric *m_depth, *m_adds, *m_retries;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Absolute CLOCK_MONOTONIC time `ms` from now, for pthread_cond_timedwait. */
static struct timespec deadline_in(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

long op_backoff_delay_ms(long base_ms, long max_ms, unsigned failures)
{
    if (base_ms <= 0)
        base_ms = 1;
    if (max_ms < base_ms)
        max_ms = base_ms;
    long d = base_ms;
    /* doubling stops at the cap, so no shift can overflow */
    for (unsigned i = 0; i < failures && d < max_ms; i++)
        d = d > max_ms / 2 ? max_ms : d * 2;
    return d < max_ms ? d : max_ms;
}

static int cmp_item(const void *a, const void *b)
{
    return strcmp(((const item *)a)->key, ((const item *)b)->key);
}

static item *find(op_workqueue *q, const char *key)
{
    item probe = {.key = (char *)key};
    void *node = tfind(&probe, &q->tree, cmp_item);
    return node ? *(item **)node : NULL;
}

static item *find_or_create(op_workqueue *q, const char *key)
{
    item *it = find(q, key);
    if (it)
        return it;
    it = calloc(1, sizeof(*it));
    if (!it)
        return NULL;
    it->key = strdup(key);
    it->heap_idx = NOT_WAITING;
    if (!it->key || !tsearch(it, &q->tree, cmp_item)) {
        free(it->key);
        free(it);
        return NULL;
    }
    return it;
}

static void free_item(void *p)
{
    item *it = p;
    free(it->key);
    free(it);
}

static void release_if_unused(op_workqueue *q, item *it)
{
    if (it->dirty || it->processing || it->heap_idx != NOT_WAITING || it->failures)
        return;
    tdelete(it, &q->tree, cmp_item);
    free_item(it);
}

static void update_depth(op_workqueue *q)
{
    if (q->m_depth)
        ns_gauge_set(q->m_depth, (int64_t)q->len);
}

static void push_ready(op_workqueue *q, item *it)
{
    it->next = NULL;
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    q->len++;
    update_depth(q);
}

/* ---- delay heap ---- */

static void heap_swap(op_workqueue *q, size_t a, size_t b)
{
    item *t = q->heap[a];
    q->heap[a] = q->heap[b];
    q->heap[b] = t;
    q->heap[a]->heap_idx = a;
    q->heap[b]->heap_idx = b;
}

static void heap_up(op_workqueue *q, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (q->heap[parent]->ready_at <= q->heap[i]->ready_at)
            break;
        heap_swap(q, parent, i);
        i = parent;
    }
}

static void heap_down(op_workqueue *q, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->heap_len && q->heap[l]->ready_at < q->heap[m]->ready_at)
            m = l;
        if (r < q->heap_len && q->heap[r]->ready_at < q->heap[m]->ready_at)
            m = r;
        if (m == i)
            return;
        heap_swap(q, i, m);
        i = m;
    }
}

static int heap_push(op_workqueue *q, item *it)
{
    if (q->heap_len == q->heap_cap) {
        size_t cap = q->heap_cap ? q->heap_cap * 2 : 16;
        item **h = realloc(q->heap, cap * sizeof(*h));
        if (!h)
            return -ENOMEM;
        q->heap = h;
        q->heap_cap = cap;
    }
    it->heap_idx = q->heap_len;
    q->heap[q->heap_len++] = it;
    heap_up(q, it->heap_idx);
    return 0;
}

static item *heap_pop(op_workqueue *q)
{
    item *top = q->heap[0];
    q->heap_len--;
    if (q->heap_len > 0) {
        q->heap[0] = q->heap[q->heap_len];
        q->heap[0]->heap_idx = 0;
        heap_down(q, 0);
    }
    top->heap_idx = NOT_WAITING;
    return top;
}

/* ---- core ---- */

/* Marks an existing item dirty and queues it unless it is being processed. */
static void mark_dirty(op_workqueue *q, item *it)
{
    if (it->dirty)
        return;
    it->dirty = true;
    if (q->m_adds)
        ns_counter_add(q->m_adds, 1);
    if (!it->processing) {
        push_ready(q, it);
        pthread_cond_broadcast(&q->cv);
    }
}

/* Moves delayed keys whose time has come to the ready list. */
static void promote_due(op_workqueue *q)
{
    if (q->heap_len == 0)
        return;
    int64_t now = now_ms();
    while (q->heap_len > 0 && q->heap[0]->ready_at <= now) {
        item *it = heap_pop(q);
        if (q->shutting_down)
            release_if_unused(q, it);
        else
            mark_dirty(q, it);
    }
}

int op_workqueue_new(const op_workqueue_opts *opts, op_workqueue **out)
{
    *out = NULL;
    op_workqueue *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, &ca);
    pthread_cond_init(&q->idle_cv, &ca);
    pthread_condattr_destroy(&ca);
    q->base_ms = opts && opts->base_delay_ms > 0 ? opts->base_delay_ms : OP_WORKQUEUE_BASE_DELAY_MS;
    q->max_ms = opts && opts->max_delay_ms > 0 ? opts->max_delay_ms : OP_WORKQUEUE_MAX_DELAY_MS;
    if (opts) {
        q->m_depth = opts->depth;
        q->m_adds = opts->adds;
        q->m_retries = opts->retries;
    }
    update_depth(q);
    *out = q;
    return 0;
}

void op_workqueue_free(op_workqueue *q)
{
    if (!q)
        return;
    tdestroy(q->tree, free_item);
    free(q->heap);
    pthread_cond_destroy(&q->cv);
    pthread_cond_destroy(&q->idle_cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

int op_workqueue_add(op_workqueue *q, const char *key)
{
    return op_workqueue_add_after(q, key, 0);
}

/* add_after with the lock held. */
static int add_after_locked(op_workqueue *q, const char *key, long delay_ms)
{
    if (q->shutting_down)
        return -ESHUTDOWN;
    promote_due(q);
    item *it = find_or_create(q, key);
    if (!it)
        return -ENOMEM;
    if (delay_ms <= 0) {
        mark_dirty(q, it);
        return 0;
    }
    int64_t at = now_ms() + delay_ms;
    if (it->heap_idx != NOT_WAITING) {
        if (at < it->ready_at) {
            it->ready_at = at;
            heap_up(q, it->heap_idx);
        }
    } else {
        it->ready_at = at;
        if (heap_push(q, it) != 0) {
            release_if_unused(q, it);
            return -ENOMEM;
        }
    }
    /* A blocked get may be sleeping until a later time than this one. */
    if (q->heap[0] == it)
        pthread_cond_broadcast(&q->cv);
    return 0;
}

int op_workqueue_add_after(op_workqueue *q, const char *key, long delay_ms)
{
    if (!key)
        return -EINVAL;
    pthread_mutex_lock(&q->mu);
    int rc = add_after_locked(q, key, delay_ms);
    pthread_mutex_unlock(&q->mu);
    return rc;
}

int op_workqueue_add_rate_limited(op_workqueue *q, const char *key)
{
    if (!key)
        return -EINVAL;
    pthread_mutex_lock(&q->mu);
    int rc = -ESHUTDOWN;
    if (!q->shutting_down) {
        item *it = find_or_create(q, key);
        rc = -ENOMEM;
        if (it) {
            long delay = op_backoff_delay_ms(q->base_ms, q->max_ms, it->failures);
            if (it->failures < UINT32_MAX)
                it->failures++;
            if (q->m_retries)
                ns_counter_add(q->m_retries, 1);
            rc = add_after_locked(q, key, delay);
        }
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

void op_workqueue_forget(op_workqueue *q, const char *key)
{
    pthread_mutex_lock(&q->mu);
    item *it = key ? find(q, key) : NULL;
    if (it) {
        it->failures = 0;
        release_if_unused(q, it);
    }
    pthread_mutex_unlock(&q->mu);
}

unsigned op_workqueue_num_requeues(op_workqueue *q, const char *key)
{
    pthread_mutex_lock(&q->mu);
    item *it = key ? find(q, key) : NULL;
    unsigned n = it ? it->failures : 0;
    pthread_mutex_unlock(&q->mu);
    return n;
}

int op_workqueue_get(op_workqueue *q, long timeout_ms, char **key)
{
    *key = NULL;
    struct timespec until = {0};
    int64_t give_up = -1;
    if (timeout_ms >= 0)
        give_up = now_ms() + timeout_ms;
    int rc = 0;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        promote_due(q);
        if (q->shutting_down && (!q->drain || q->paused || q->len == 0)) {
            rc = -ESHUTDOWN;
            break;
        }
        if (!q->paused && q->len > 0)
            break;
        int64_t now = now_ms();
        if (give_up >= 0 && now >= give_up) {
            rc = -ETIMEDOUT;
            break;
        }
        /* Sleep until the earliest of: our timeout, the next delayed key (unless paused:
         * it could not be handed out anyway), or a signal. */
        int64_t wake = give_up;
        if (!q->paused && q->heap_len > 0 && (wake < 0 || q->heap[0]->ready_at < wake))
            wake = q->heap[0]->ready_at;
        if (wake < 0) {
            pthread_cond_wait(&q->cv, &q->mu);
        } else {
            until = deadline_in(wake > now ? wake - now : 0);
            pthread_cond_timedwait(&q->cv, &q->mu, &until);
        }
    }
    if (rc == 0) {
        item *it = q->head;
        char *copy = strdup(it->key);
        if (!copy) {
            rc = -ENOMEM; /* the key stays queued */
        } else {
            q->head = it->next;
            if (!q->head)
                q->tail = NULL;
            q->len--;
            it->next = NULL;
            it->dirty = false;
            it->processing = true;
            q->processing++;
            update_depth(q);
            *key = copy;
        }
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

void op_workqueue_done(op_workqueue *q, const char *key)
{
    pthread_mutex_lock(&q->mu);
    item *it = key ? find(q, key) : NULL;
    if (it && it->processing) {
        it->processing = false;
        q->processing--;
        if (it->dirty) {
            push_ready(q, it);
            pthread_cond_broadcast(&q->cv);
        }
        release_if_unused(q, it);
        pthread_cond_broadcast(&q->idle_cv);
    }
    pthread_mutex_unlock(&q->mu);
}

void op_workqueue_set_paused(op_workqueue *q, bool paused)
{
    pthread_mutex_lock(&q->mu);
    q->paused = paused;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void op_workqueue_shutdown(op_workqueue *q, bool drain)
{
    pthread_mutex_lock(&q->mu);
    if (!q->shutting_down) {
        q->shutting_down = true;
        q->drain = drain;
    }
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

bool op_workqueue_shutting_down(op_workqueue *q)
{
    pthread_mutex_lock(&q->mu);
    bool s = q->shutting_down;
    pthread_mutex_unlock(&q->mu);
    return s;
}

int op_workqueue_wait_idle(op_workqueue *q, long timeout_ms)
{
    int rc = 0;
    struct timespec until = deadline_in(timeout_ms > 0 ? timeout_ms : 0);
    pthread_mutex_lock(&q->mu);
    while (q->processing > 0) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&q->idle_cv, &q->mu);
        } else if (pthread_cond_timedwait(&q->idle_cv, &q->mu, &until) == ETIMEDOUT) {
            rc = q->processing > 0 ? -ETIMEDOUT : 0;
            break;
        }
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

size_t op_workqueue_len(op_workqueue *q)
{
    pthread_mutex_lock(&q->mu);
    promote_due(q);
    size_t n = q->len;
    pthread_mutex_unlock(&q->mu);
    return n;
}

size_t op_workqueue_delayed(op_workqueue *q)
{
    pthread_mutex_lock(&q->mu);
    promote_due(q);
    size_t n = q->heap_len;
    pthread_mutex_unlock(&q->mu);
    return n;
}

size_t op_workqueue_processing(op_workqueue *q)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->processing;
    pthread_mutex_unlock(&q->mu);
    return n;
}

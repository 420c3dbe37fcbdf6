/* controller.c - worker threads that take keys from a work queue and reconcile them, fed
 * by informers; metrics and logs of every reconcile. */
#include "controller.h"

#include "json.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { RESULT_SUCCESS, RESULT_ERROR, RESULT_REQUEUE, RESULT_COUNT };
static const char *const result_names[RESULT_COUNT] = {"success", "error", "requeue"};

/* One informer feeding this controller; the informer's handler `ud`. */
typedef struct watch_link {
    op_controller *c;
    op_informer *inf;
    op_enqueue_fn fn;
    void *ud;
} watch_link;

struct op_controller {
    char *name;
    unsigned nworkers;
    op_reconcile_fn reconcile;
    void *ctx;
    op_workqueue *q;

    watch_link **links;
    size_t nlinks;

    pthread_mutex_t mu;
    pthread_t *threads;
    unsigned nthreads;
    bool started, stopped, start_paused;
    atomic_bool stopping;

    ns_metrics *reg;
    char *labels;                      /* controller="NAME" */
    char *result_labels[RESULT_COUNT]; /* controller="NAME",result="..." */
    ns_metric m_total[RESULT_COUNT];
    ns_metric m_errors, m_duration, m_depth, m_adds, m_retries;
};

/* ------------------------------------------------------------------ metrics */

static void metric_init(ns_metric *m, const char *name, const char *help, const char *labels,
                        ns_metric_type type)
{
    memset(m, 0, sizeof(*m));
    m->name = name;
    m->help = help;
    m->labels = labels;
    m->type = type;
    if (type == NS_METRIC_HISTOGRAM) {
        m->bounds = ns_latency_buckets;
        m->nbounds = ns_latency_buckets_len;
    }
}

static ns_metric *all_metrics(op_controller *c, size_t i)
{
    ns_metric *list[] = {&c->m_total[0], &c->m_total[1], &c->m_total[2], &c->m_errors,
                         &c->m_duration, &c->m_depth,    &c->m_adds,     &c->m_retries};
    return i < sizeof(list) / sizeof(list[0]) ? list[i] : NULL;
}

static int setup_metrics(op_controller *c)
{
    size_t n = strlen(c->name) + 32;
    c->labels = malloc(n);
    if (!c->labels)
        return -ENOMEM;
    snprintf(c->labels, n, "controller=\"%s\"", c->name);
    for (int i = 0; i < RESULT_COUNT; i++) {
        c->result_labels[i] = malloc(n + 24);
        if (!c->result_labels[i])
            return -ENOMEM;
        snprintf(c->result_labels[i], n + 24, "controller=\"%s\",result=\"%s\"", c->name,
                 result_names[i]);
        metric_init(&c->m_total[i], "nutshell_operator_reconcile_total",
                    "Reconciles, by controller and result (success, error, requeue).",
                    c->result_labels[i], NS_METRIC_COUNTER);
    }
    metric_init(&c->m_errors, "nutshell_operator_reconcile_errors_total",
                "Reconciles that failed with an error (they are retried with backoff).", c->labels,
                NS_METRIC_COUNTER);
    metric_init(&c->m_duration, "nutshell_operator_reconcile_duration_seconds",
                "Time spent in one reconcile.", c->labels, NS_METRIC_HISTOGRAM);
    metric_init(&c->m_depth, "nutshell_operator_workqueue_depth",
                "Keys waiting for a worker (not counting delayed retries).", c->labels,
                NS_METRIC_GAUGE);
    metric_init(&c->m_adds, "nutshell_operator_workqueue_adds_total",
                "Keys queued (an add of a key already queued is not counted).", c->labels,
                NS_METRIC_COUNTER);
    metric_init(&c->m_retries, "nutshell_operator_workqueue_retries_total",
                "Keys requeued with backoff after a failed reconcile.", c->labels,
                NS_METRIC_COUNTER);
    if (c->reg)
        for (size_t i = 0; all_metrics(c, i); i++)
            ns_metrics_register(c->reg, all_metrics(c, i));
    return 0;
}

/* ------------------------------------------------------------------ lifecycle */

static bool valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

int op_controller_new(const op_controller_opts *o, op_controller **out, ns_err *err)
{
    *out = NULL;
    if (!valid_name(o->name))
        return ns_errorf(err, -EINVAL, "controller name \"%s\" must be 1-63 of [a-z0-9-]",
                         o->name ? o->name : "");
    if (!o->reconcile)
        return ns_errorf(err, -EINVAL, "controller %s has no reconcile function", o->name);
    op_controller *c = calloc(1, sizeof(*c));
    if (!c)
        return ns_errorf(err, -ENOMEM, "out of memory creating a controller");
    c->name = strdup(o->name);
    c->nworkers = o->workers ? o->workers : 1;
    c->reconcile = o->reconcile;
    c->ctx = o->ctx;
    c->start_paused = o->start_paused;
    c->reg = o->metrics;
    pthread_mutex_init(&c->mu, NULL);
    int rc = c->name ? setup_metrics(c) : -ENOMEM;
    if (rc == 0) {
        op_workqueue_opts qo = {.base_delay_ms = o->backoff_base_ms,
                                .max_delay_ms = o->backoff_max_ms,
                                .depth = &c->m_depth,
                                .adds = &c->m_adds,
                                .retries = &c->m_retries};
        rc = op_workqueue_new(&qo, &c->q);
    }
    if (rc) {
        op_controller_free(c);
        return ns_errorf(err, rc, "out of memory creating a controller");
    }
    if (o->start_paused)
        op_workqueue_set_paused(c->q, true);
    *out = c;
    return 0;
}

static void on_informer_event(void *ud, const op_informer_event *ev)
{
    watch_link *w = ud;
    if (w->fn)
        w->fn(w->c, w->ud, ev);
    else
        op_controller_enqueue(w->c, ev->key);
}

int op_controller_watch(op_controller *c, op_informer *inf, op_enqueue_fn fn, void *ud)
{
    watch_link *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    *w = (watch_link){.c = c, .inf = inf, .fn = fn, .ud = ud};
    pthread_mutex_lock(&c->mu);
    watch_link **links = realloc(c->links, (c->nlinks + 1) * sizeof(*links));
    int rc = links ? 0 : -ENOMEM;
    if (links) {
        c->links = links;
        rc = op_informer_add_handler(inf, on_informer_event, w);
        if (rc == 0)
            c->links[c->nlinks++] = w;
    }
    pthread_mutex_unlock(&c->mu);
    if (rc)
        free(w);
    return rc;
}

static double elapsed_s(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void reconcile_one(op_controller *c, const char *key)
{
    ns_err err = {0};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = c->reconcile(c->ctx, key, &err);
    double dur = elapsed_s(&t0);
    ns_histogram_observe(&c->m_duration, dur);
    char dbuf[32];
    snprintf(dbuf, sizeof(dbuf), "%.6f", dur);
    if (rc == 0) {
        op_workqueue_forget(c->q, key);
        ns_counter_add(&c->m_total[RESULT_SUCCESS], 1);
        if (ns_log_enabled(NS_LOG_DEBUG))
            ns_log(NS_LOG_DEBUG, "reconciled", "controller", c->name, "key", key, "duration_s",
                   dbuf, NULL);
        return;
    }
    unsigned failures = op_workqueue_num_requeues(c->q, key);
    char fbuf[16], ebuf[16];
    snprintf(fbuf, sizeof(fbuf), "%u", failures);
    snprintf(ebuf, sizeof(ebuf), "%d", rc);
    if (rc == -EAGAIN) {
        ns_counter_add(&c->m_total[RESULT_REQUEUE], 1);
        ns_log(NS_LOG_DEBUG, "reconcile asked to be retried", "controller", c->name, "key", key,
               "retries", fbuf, "message", err.msg, NULL);
    } else {
        ns_counter_add(&c->m_total[RESULT_ERROR], 1);
        ns_counter_add(&c->m_errors, 1);
        ns_log(NS_LOG_WARN, "reconcile failed, retrying with backoff", "controller", c->name, "key",
               key, "errno", ebuf, "error", err.msg[0] ? err.msg : "(no message)", "retries", fbuf,
               "duration_s", dbuf, NULL);
    }
    op_workqueue_add_rate_limited(c->q, key); /* -ESHUTDOWN when stopping: fine */
}

static void *worker_main(void *arg)
{
    op_controller *c = arg;
    char *key = NULL;
    while (op_workqueue_get(c->q, -1, &key) == 0) {
        reconcile_one(c, key);
        op_workqueue_done(c->q, key);
        free(key);
        key = NULL;
    }
    return NULL;
}

int op_controller_start(op_controller *c, long sync_timeout_ms, ns_err *err)
{
    pthread_mutex_lock(&c->mu);
    bool busy = c->started || c->stopped;
    c->started = true;
    pthread_mutex_unlock(&c->mu);
    if (busy)
        return ns_errorf(err, -EBUSY, "controller %s was already started", c->name);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < c->nlinks; i++) {
        long left = -1;
        if (sync_timeout_ms >= 0) {
            left = sync_timeout_ms - (long)(elapsed_s(&t0) * 1000);
            if (left < 0)
                left = 0;
        }
        int rc = op_informer_wait_synced(c->links[i]->inf, left);
        if (rc)
            return ns_errorf(err, rc, "controller %s: %s", c->name,
                             rc == -ETIMEDOUT ? "caches did not sync in time"
                                              : "an informer was stopped before it synced");
    }
    c->threads = calloc(c->nworkers, sizeof(*c->threads));
    if (!c->threads)
        return ns_errorf(err, -ENOMEM, "out of memory starting controller %s", c->name);
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    for (unsigned i = 0; i < c->nworkers; i++) {
        rc = -pthread_create(&c->threads[i], NULL, worker_main, c);
        if (rc)
            break;
        c->nthreads++;
    }
    pthread_mutex_unlock(&c->mu);
    char nbuf[16];
    snprintf(nbuf, sizeof(nbuf), "%u", c->nthreads);
    ns_log(NS_LOG_INFO, "controller started", "controller", c->name, "workers", nbuf, "paused",
           c->start_paused ? "true" : "false", NULL);
    if (rc)
        return ns_errorf(err, rc, "controller %s: cannot start worker threads", c->name);
    return 0;
}

int op_controller_enqueue(op_controller *c, const char *key)
{
    return op_workqueue_add(c->q, key);
}

int op_controller_enqueue_after(op_controller *c, const char *key, long delay_ms)
{
    return op_workqueue_add_after(c->q, key, delay_ms);
}

int op_controller_enqueue_rate_limited(op_controller *c, const char *key)
{
    return op_workqueue_add_rate_limited(c->q, key);
}

int op_controller_requeue_after(op_controller *c, const char *key, long delay_ms)
{
    return op_workqueue_add_after(c->q, key, delay_ms);
}

void op_controller_pause(op_controller *c)
{
    op_workqueue_set_paused(c->q, true);
    ns_log(NS_LOG_INFO, "controller paused", "controller", c->name, NULL);
}

void op_controller_resume(op_controller *c)
{
    op_workqueue_set_paused(c->q, false);
    ns_log(NS_LOG_INFO, "controller resumed", "controller", c->name, NULL);
}

bool op_controller_stopping(op_controller *c)
{
    return atomic_load(&c->stopping);
}

void op_controller_stop(op_controller *c)
{
    pthread_mutex_lock(&c->mu);
    bool join = !c->stopped;
    c->stopped = true;
    pthread_mutex_unlock(&c->mu);
    if (!join)
        return;
    atomic_store(&c->stopping, true);
    op_workqueue_shutdown(c->q, false);
    for (unsigned i = 0; i < c->nthreads; i++)
        pthread_join(c->threads[i], NULL);
    if (c->nthreads)
        ns_log(NS_LOG_INFO, "controller stopped", "controller", c->name, NULL);
}

void op_controller_free(op_controller *c)
{
    if (!c)
        return;
    if (c->q)
        op_controller_stop(c);
    if (c->reg)
        for (size_t i = 0; all_metrics(c, i); i++)
            ns_metrics_unregister(c->reg, all_metrics(c, i));
    op_workqueue_free(c->q);
    for (size_t i = 0; i < c->nlinks; i++)
        free(c->links[i]);
    free(c->links);
    free(c->threads);
    free(c->labels);
    for (int i = 0; i < RESULT_COUNT; i++)
        free(c->result_labels[i]);
    free(c->name);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

op_workqueue *op_controller_queue(op_controller *c)
{
    return c->q;
}

void op_controller_get_stats(op_controller *c, op_controller_stats *out)
{
    out->success = (unsigned long)atomic_load(&c->m_total[RESULT_SUCCESS].value);
    out->error = (unsigned long)atomic_load(&c->m_total[RESULT_ERROR].value);
    out->requeue = (unsigned long)atomic_load(&c->m_total[RESULT_REQUEUE].value);
}

/* ------------------------------------------------------------------ pure helpers */

int op_owner_key(const cJSON *obj, const char *group, const char *kind, bool owner_namespaced,
                 char *buf, size_t size)
{
    const cJSON *ref;
    cJSON_ArrayForEach(ref, ns_json_path(obj, "metadata", "ownerReferences", NULL))
    {
        if (!ns_json_true(ref, "controller"))
            continue;
        const char *k = ns_json_str(ref, "kind");
        const char *av = ns_json_str(ref, "apiVersion");
        const char *name = ns_json_str(ref, "name");
        if (!k || !av || !name || !name[0] || strcmp(k, kind) != 0)
            continue;
        const char *slash = strchr(av, '/');
        size_t glen = slash ? (size_t)(slash - av) : 0;
        const char *want = group ? group : "";
        if (glen != strlen(want) || strncmp(av, want, glen) != 0)
            continue;
        const char *ns = ns_json_path_str(obj, "metadata", "namespace", NULL);
        int n = owner_namespaced && ns && ns[0] ? snprintf(buf, size, "%s/%s", ns, name)
                                                : snprintf(buf, size, "%s", name);
        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
    }
    return -ENOENT;
}

bool op_generation_changed(const op_informer_event *ev)
{
    if (ev->type != OP_INFORMER_UPDATE)
        return true;
    const cJSON *a = ns_json_path(ev->old, "metadata", "generation", NULL);
    const cJSON *b = ns_json_path(ev->obj, "metadata", "generation", NULL);
    if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b))
        return true;
    return a->valuedouble != b->valuedouble;
}

static bool same(const cJSON *a, const cJSON *b)
{
    if (!a || !b)
        return a == b;
    return cJSON_Compare(a, b, true);
}

bool op_metadata_changed(const op_informer_event *ev)
{
    if (ev->type != OP_INFORMER_UPDATE)
        return true;
    static const char *const fields[] = {"labels", "annotations", "finalizers", "ownerReferences",
                                         "deletionTimestamp"};
    const cJSON *ma = ns_json_get(ev->old, "metadata"), *mb = ns_json_get(ev->obj, "metadata");
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (!same(ns_json_get(ma, fields[i]), ns_json_get(mb, fields[i])))
            return true;
    return false;
}

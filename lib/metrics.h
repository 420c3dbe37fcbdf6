/* metrics.h - Prometheus metrics in the text exposition format.
 *
 * Metrics are plain structs declared by the component (usually static), registered once
 * at start-up and updated lock-free with atomics from any thread. Series of one family
 * share a name and differ by their fixed `labels` string (`code="200"`); the registry
 * prints HELP and TYPE once per family.
 */
#ifndef NS_METRICS_H
#define NS_METRICS_H

#include "buf.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define NS_HIST_MAX_BUCKETS 16

typedef enum ns_metric_type {
    NS_METRIC_COUNTER,
    NS_METRIC_GAUGE,
    NS_METRIC_HISTOGRAM,
} ns_metric_type;

typedef struct ns_metric {
    const char *name;
    const char *help;
    const char *labels; /* `key="value",...` without braces, or NULL */
    ns_metric_type type;
    _Atomic int64_t value; /* counter or gauge; gauges of doubles use `dvalue` */
    _Atomic double dvalue; /* used instead of `value` when `is_double` */
    int is_double;
    /* histograms: upper bounds in seconds, ascending; +Inf is implied */
    const double *bounds;
    size_t nbounds;
    _Atomic uint64_t buckets[NS_HIST_MAX_BUCKETS + 1];
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
    struct ns_metric *next;
} ns_metric;

typedef struct ns_metrics {
    pthread_mutex_t lock; /* guards registration and rendering, not updates */
    ns_metric *head;
} ns_metrics;

#define NS_METRICS_INIT                                                                            \
    {                                                                                              \
        .lock = PTHREAD_MUTEX_INITIALIZER, .head = NULL                                            \
    }

/* Adds `m` to `reg`, next to other series of the same family. `m` must outlive `reg`. */
void ns_metrics_register(ns_metrics *reg, ns_metric *m);

/* Removes `m` from `reg` (no-op if absent), for metrics that die before their registry. */
void ns_metrics_unregister(ns_metrics *reg, ns_metric *m);

static inline void ns_counter_add(ns_metric *m, int64_t n)
{
    atomic_fetch_add_explicit(&m->value, n, memory_order_relaxed);
}
static inline void ns_gauge_set(ns_metric *m, int64_t v)
{
    atomic_store_explicit(&m->value, v, memory_order_relaxed);
}
static inline void ns_gauge_set_double(ns_metric *m, double v)
{
    m->is_double = 1;
    atomic_store_explicit(&m->dvalue, v, memory_order_relaxed);
}
/* Records one observation of `seconds` in a histogram. */
void ns_histogram_observe(ns_metric *m, double seconds);

/* Appends the exposition text of every registered metric to `out`. */
void ns_metrics_render(ns_metrics *reg, ns_buf *out);

/* Bucket bounds for request latencies from 100 µs to 10 s. */
extern const double ns_latency_buckets[];
extern const size_t ns_latency_buckets_len;

#endif

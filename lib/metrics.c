/* metrics.c - Prometheus text exposition of atomically updated metrics. */
#include "metrics.h"

#include <stdio.h>
#include <string.h>

const double ns_latency_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                     0.025,  0.05,    0.1,    0.5,   1,      10};
const size_t ns_latency_buckets_len = sizeof(ns_latency_buckets) / sizeof(ns_latency_buckets[0]);

static const char *type_name(ns_metric_type t)
{
    switch (t) {
    case NS_METRIC_COUNTER:
        return "counter";
    case NS_METRIC_GAUGE:
        return "gauge";
    default:
        return "histogram";
    }
}

void ns_metrics_register(ns_metrics *reg, ns_metric *m)
{
    pthread_mutex_lock(&reg->lock);
    ns_metric **at = &reg->head, *last_same = NULL;
    for (ns_metric *p = reg->head; p; p = p->next)
        if (strcmp(p->name, m->name) == 0)
            last_same = p;
    if (last_same) {
        at = &last_same->next;
    } else {
        while (*at)
            at = &(*at)->next;
    }
    if (m->nbounds > NS_HIST_MAX_BUCKETS)
        m->nbounds = NS_HIST_MAX_BUCKETS;
    m->next = *at;
    *at = m;
    pthread_mutex_unlock(&reg->lock);
}

void ns_metrics_unregister(ns_metrics *reg, ns_metric *m)
{
    pthread_mutex_lock(&reg->lock);
    for (ns_metric **p = &reg->head; *p; p = &(*p)->next) {
        if (*p == m) {
            *p = m->next;
            m->next = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&reg->lock);
}

void ns_histogram_observe(ns_metric *m, double seconds)
{
    size_t i = 0;
    while (i < m->nbounds && seconds > m->bounds[i])
        i++;
    atomic_fetch_add_explicit(&m->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
    uint64_t ns = seconds > 0 ? (uint64_t)(seconds * 1e9) : 0;
    atomic_fetch_add_explicit(&m->sum_ns, ns, memory_order_relaxed);
}

/* Writes name{labels[,extra]} with the right punctuation for empty parts. */
static void series(ns_buf *out, const char *name, const char *suffix, const char *labels,
                   const char *extra)
{
    ns_buf_puts(out, name);
    ns_buf_puts(out, suffix);
    int has_labels = labels && *labels;
    if (!has_labels && !extra)
        return;
    ns_buf_putc(out, '{');
    if (has_labels)
        ns_buf_puts(out, labels);
    if (extra) {
        if (has_labels)
            ns_buf_putc(out, ',');
        ns_buf_puts(out, extra);
    }
    ns_buf_putc(out, '}');
}

static void render_histogram(ns_buf *out, ns_metric *m)
{
    uint64_t cumulative = 0;
    char le[48];
    for (size_t i = 0; i <= m->nbounds; i++) {
        cumulative += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
        if (i < m->nbounds)
            snprintf(le, sizeof(le), "le=\"%g\"", m->bounds[i]);
        else
            snprintf(le, sizeof(le), "le=\"+Inf\"");
        series(out, m->name, "_bucket", m->labels, le);
        ns_buf_printf(out, " %llu\n", (unsigned long long)cumulative);
    }
    series(out, m->name, "_sum", m->labels, NULL);
    ns_buf_printf(out, " %.9f\n", (double)atomic_load(&m->sum_ns) / 1e9);
    series(out, m->name, "_count", m->labels, NULL);
    ns_buf_printf(out, " %llu\n", (unsigned long long)atomic_load(&m->count));
}

void ns_metrics_render(ns_metrics *reg, ns_buf *out)
{
    pthread_mutex_lock(&reg->lock);
    const char *family = NULL;
    for (ns_metric *m = reg->head; m; m = m->next) {
        if (!family || strcmp(family, m->name) != 0) {
            family = m->name;
            ns_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                          type_name(m->type));
        }
        if (m->type == NS_METRIC_HISTOGRAM) {
            render_histogram(out, m);
            continue;
        }
        series(out, m->name, "", m->labels, NULL);
        if (m->is_double)
            ns_buf_printf(out, " %.17g\n", atomic_load_explicit(&m->dvalue, memory_order_relaxed));
        else
            ns_buf_printf(out, " %lld\n",
                          (long long)atomic_load_explicit(&m->value, memory_order_relaxed));
    }
    pthread_mutex_unlock(&reg->lock);
}

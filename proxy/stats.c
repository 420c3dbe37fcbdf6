/* stats.c - metric definitions and the labelled request-count table. */
#include "stats.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

px_stats px_st;
ns_metrics px_registry = NS_METRICS_INIT;

#define TABLE_SIZE 4096 /* power of two, twice the series limit */

typedef struct series {
    px_dir dir;
    int code;
    char dest[80];
    ns_metric m;
    char labels[160];
} series;

static _Atomic(series *) table[TABLE_SIZE];
static pthread_mutex_t insert_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t nseries;

const char *px_dir_name(px_dir dir)
{
    return dir == PX_INBOUND ? "inbound" : "outbound";
}

static void def(ns_metric *m, const char *name, const char *help, const char *labels,
                ns_metric_type type)
{
    m->name = name;
    m->help = help;
    m->labels = labels;
    m->type = type;
    ns_metrics_register(&px_registry, m);
}

void px_stats_init(void)
{
    static const char *const dl[2] = {"direction=\"outbound\"", "direction=\"inbound\""};
    static const char *const rl[2][PX_RETRY_NREASONS] = {
        {"direction=\"outbound\",reason=\"connect\"", "direction=\"outbound\",reason=\"503\"",
         "direction=\"outbound\",reason=\"reset\""},
        {"direction=\"inbound\",reason=\"connect\"", "direction=\"inbound\",reason=\"503\"",
         "direction=\"inbound\",reason=\"reset\""},
    };
    for (int d = 0; d < 2; d++) {
        px_dir_stats *s = &px_st.dir[d];
        def(&s->cx_total, "nutshell_proxy_connections_total", "Connections accepted.", dl[d],
            NS_METRIC_COUNTER);
        def(&s->cx_open, "nutshell_proxy_connections_open", "Connections open now.", dl[d],
            NS_METRIC_GAUGE);
        def(&s->cx_http, "nutshell_proxy_http_connections_total",
            "Connections handled as HTTP/1.1.", dl[d], NS_METRIC_COUNTER);
        def(&s->cx_tcp, "nutshell_proxy_tcp_connections_total",
            "Connections relayed as opaque TCP.", dl[d], NS_METRIC_COUNTER);
        def(&s->rx_bytes, "nutshell_proxy_received_bytes_total",
            "Bytes read from connecting clients.", dl[d], NS_METRIC_COUNTER);
        def(&s->tx_bytes, "nutshell_proxy_sent_bytes_total", "Bytes written to connecting clients.",
            dl[d], NS_METRIC_COUNTER);
        def(&s->up_rx_bytes, "nutshell_proxy_upstream_received_bytes_total",
            "Bytes read from upstream servers.", dl[d], NS_METRIC_COUNTER);
        def(&s->up_tx_bytes, "nutshell_proxy_upstream_sent_bytes_total",
            "Bytes written to upstream servers.", dl[d], NS_METRIC_COUNTER);
        def(&s->connect_errors, "nutshell_proxy_upstream_connect_errors_total",
            "Upstream connects that failed or timed out.", dl[d], NS_METRIC_COUNTER);
        def(&s->req_errors, "nutshell_proxy_http_request_errors_total",
            "Malformed HTTP requests refused.", dl[d], NS_METRIC_COUNTER);
        def(&s->resp_errors, "nutshell_proxy_http_response_errors_total",
            "Malformed HTTP responses from upstream servers (answered 502).", dl[d],
            NS_METRIC_COUNTER);
        def(&s->timeouts_hdr, "nutshell_proxy_header_timeouts_total",
            "Request heads not received within --header-timeout.", dl[d], NS_METRIC_COUNTER);
        def(&s->timeouts_idle, "nutshell_proxy_idle_timeouts_total",
            "Connections closed after an idle timeout.", dl[d], NS_METRIC_COUNTER);
        def(&s->timeouts_req, "nutshell_proxy_request_timeouts_total",
            "Requests answered 504: no response head within --request-timeout.", dl[d],
            NS_METRIC_COUNTER);
        for (int r = 0; r < PX_RETRY_NREASONS; r++)
            def(&s->retries[r], "nutshell_proxy_retries_total",
                "Requests sent again to a route backend: after a failed connect, a 503, or a "
                "connection closed before any answer.",
                rl[d][r], NS_METRIC_COUNTER);
        def(&s->retry_denied, "nutshell_proxy_retries_budget_exhausted_total",
            "Retries not made because the retry budget was spent (the client got the failure).",
            dl[d], NS_METRIC_COUNTER);
        s->latency.bounds = ns_latency_buckets;
        s->latency.nbounds = ns_latency_buckets_len;
        def(&s->latency, "nutshell_proxy_request_duration_seconds",
            "HTTP request duration, from the request head to the end of the response.", dl[d],
            NS_METRIC_HISTOGRAM);
    }
    def(&px_st.rejected, "nutshell_proxy_connections_rejected_total",
        "Connections refused at accept: over --max-connections or out of descriptors.", NULL,
        NS_METRIC_COUNTER);
    def(&px_st.no_dst, "nutshell_proxy_no_original_destination_total",
        "Connections closed because they had no original destination (not redirected).", NULL,
        NS_METRIC_COUNTER);
    def(&px_st.routes_version, "nutshell_proxy_routes_version",
        "Version of the route table in use; -1 when none is loaded.", NULL, NS_METRIC_GAUGE);
    ns_gauge_set(&px_st.routes_version, -1);
    def(&px_st.routes_reloads, "nutshell_proxy_routes_loaded_total", "Route tables loaded.", NULL,
        NS_METRIC_COUNTER);
    def(&px_st.routes_errors, "nutshell_proxy_routes_errors_total",
        "Route tables refused (unreadable or invalid); the previous table stays.", NULL,
        NS_METRIC_COUNTER);
    def(&px_st.ejections, "nutshell_proxy_outlier_ejections_total",
        "Route backends ejected after consecutive failures (each worker thread ejects on its "
        "own).",
        NULL, NS_METRIC_COUNTER);
    def(&px_st.ejected, "nutshell_proxy_outlier_ejected_backends",
        "Route backend ejections in force now, summed over worker threads.", NULL, NS_METRIC_GAUGE);
    def(&px_st.draining, "nutshell_proxy_draining", "1 while the proxy drains before exiting.",
        NULL, NS_METRIC_GAUGE);
    def(&px_st.build, "nutshell_proxy_build_info", "Build of nutshell-proxy.",
        "version=\"" NUTSHELL_VERSION "\"", NS_METRIC_GAUGE);
    ns_gauge_set(&px_st.build, 1);
}

void px_stats_discovery_init(void)
{
    def(&px_st.discovery_connected, "nutshell_proxy_discovery_connected",
        "1 when the last request to the route discovery server got a table or 304; 0 after a "
        "failure or a 503.",
        NULL, NS_METRIC_GAUGE);
    def(&px_st.discovery_last_success, "nutshell_proxy_discovery_last_success_timestamp_seconds",
        "Unix time of the last request to the route discovery server that got a table or 304; "
        "0 if none yet.",
        NULL, NS_METRIC_GAUGE);
    def(&px_st.discovery_errors, "nutshell_proxy_discovery_errors_total",
        "Requests to the route discovery server that failed (connect, timeout, bad answer, "
        "refused table); the table in use stays.",
        NULL, NS_METRIC_COUNTER);
    def(&px_st.discovery_not_ready, "nutshell_proxy_discovery_not_ready_total",
        "503 answers from the route discovery server (not ready yet, or not the leader).", NULL,
        NS_METRIC_COUNTER);
}

static uint32_t hash_key(px_dir dir, int code, const char *dest)
{
    uint32_t h = 2166136261u ^ (uint32_t)dir;
    h = (h ^ (uint32_t)code) * 16777619u;
    for (const unsigned char *p = (const unsigned char *)dest; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

static bool same(const series *s, px_dir dir, int code, const char *dest)
{
    return s->dir == dir && s->code == code && strcmp(s->dest, dest) == 0;
}

/* Finds the series, or NULL with *slot at the first empty slot of its probe sequence. */
static series *lookup(px_dir dir, int code, const char *dest, uint32_t *slot)
{
    uint32_t i = hash_key(dir, code, dest) & (TABLE_SIZE - 1);
    for (;;) {
        series *s = atomic_load_explicit(&table[i], memory_order_acquire);
        if (!s) {
            *slot = i;
            return NULL;
        }
        if (same(s, dir, code, dest))
            return s;
        i = (i + 1) & (TABLE_SIZE - 1);
    }
}

/* `force` ignores the series limit: for the overflow series, one per direction and code. */
static series *insert(px_dir dir, int code, const char *dest, bool force)
{
    pthread_mutex_lock(&insert_lock);
    uint32_t slot;
    series *s = lookup(dir, code, dest, &slot);
    if (s || (!force && nseries >= PX_STATS_MAX_SERIES)) {
        pthread_mutex_unlock(&insert_lock);
        return s;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        pthread_mutex_unlock(&insert_lock);
        return NULL;
    }
    s->dir = dir;
    s->code = code;
    snprintf(s->dest, sizeof(s->dest), "%s", dest);
    snprintf(s->labels, sizeof(s->labels), "direction=\"%s\",code=\"%d\",destination=\"%s\"",
             px_dir_name(dir), code, s->dest);
    s->m.name = "nutshell_proxy_requests_total";
    s->m.help = "HTTP requests by direction, response status code and destination.";
    s->m.labels = s->labels;
    s->m.type = NS_METRIC_COUNTER;
    ns_metrics_register(&px_registry, &s->m);
    nseries++;
    atomic_store_explicit(&table[slot], s, memory_order_release);
    pthread_mutex_unlock(&insert_lock);
    return s;
}

void px_stats_request(px_dir dir, int code, const char *dest, double seconds)
{
    char clean[80];
    /* Label values come from route tables and addresses, but keep the exposition valid
     * whatever they hold. */
    size_t n = 0;
    for (const char *p = dest ? dest : "-"; *p && n + 1 < sizeof(clean); p++)
        clean[n++] = (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) ? '_' : *p;
    clean[n] = '\0';
    uint32_t slot;
    series *s = lookup(dir, code, clean, &slot);
    if (!s)
        s = insert(dir, code, clean, false);
    if (!s)
        s = insert(dir, code, "overflow", true);
    if (s)
        ns_counter_add(&s->m, 1);
    ns_histogram_observe(&px_st.dir[dir].latency, seconds);
}

uint64_t px_stats_requests(px_dir dir)
{
    return atomic_load_explicit(&px_st.dir[dir].latency.count, memory_order_relaxed);
}

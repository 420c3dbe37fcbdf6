/* stats.h - the proxy's Prometheus metrics (lib/metrics.h) and /stats counters.
 *
 * Fixed series are per direction (outbound, inbound). Request counts are labelled by
 * direction, status code and destination, a set only known at run time: those series
 * are created on first use in a lock-free hash table (readers never lock; inserts take
 * a mutex), at most PX_STATS_MAX_SERIES of them; later newcomers share the
 * destination "overflow" so that a scan of many addresses cannot grow memory.
 */
#ifndef PX_STATS_H
#define PX_STATS_H

#include "budget.h"
#include "metrics.h"

#include <stdint.h>

typedef enum px_dir {
    PX_OUTBOUND = 0,
    PX_INBOUND = 1,
} px_dir;

#define PX_STATS_MAX_SERIES 2000

typedef struct px_dir_stats {
    ns_metric cx_total;       /* accepted connections */
    ns_metric cx_open;        /* open (gauge) */
    ns_metric cx_http;        /* connections handled as HTTP/1.1 */
    ns_metric cx_tcp;         /* connections relayed as opaque TCP */
    ns_metric rx_bytes;       /* read from the downstream (the connecting side) */
    ns_metric tx_bytes;       /* written to the downstream */
    ns_metric up_rx_bytes;    /* read from the upstream */
    ns_metric up_tx_bytes;    /* written to the upstream */
    ns_metric connect_errors; /* upstream connects that failed or timed out */
    ns_metric req_errors;     /* malformed requests (answered 4xx/5xx) */
    ns_metric resp_errors;    /* malformed responses (answered 502) */
    ns_metric timeouts_hdr;   /* request heads not complete in time */
    ns_metric timeouts_idle;  /* connections closed for idleness */
    ns_metric timeouts_req;   /* requests answered 504 after --request-timeout */
    ns_metric retry_denied;   /* retries the budget refused */
    ns_metric latency;        /* request duration histogram */
    /* Retries made, by px_retry_reason. */
    ns_metric retries[PX_RETRY_NREASONS];
} px_dir_stats;

typedef struct px_stats {
    px_dir_stats dir[2];
    ns_metric rejected;       /* connections refused: over --max-connections or no fd */
    ns_metric no_dst;         /* connections without an original destination */
    ns_metric routes_version; /* version of the route table in use, -1 if none */
    ns_metric routes_reloads; /* tables loaded */
    ns_metric routes_errors;  /* tables refused (kept the previous one) */
    ns_metric ejections;      /* route backends ejected (all workers) */
    ns_metric ejected;        /* route backend ejections in force (gauge, all workers) */
    /* Route discovery (registered only with --discovery-address). */
    ns_metric discovery_connected;    /* 1 while the last request got a usable answer */
    ns_metric discovery_last_success; /* Unix time of the last usable answer, 0 if none */
    ns_metric discovery_errors;       /* failed requests (kept the table in use) */
    ns_metric discovery_not_ready;    /* 503 answers */
    ns_metric draining;               /* 1 once draining */
    ns_metric build;
} px_stats;

extern px_stats px_st;
extern ns_metrics px_registry;

/* Registers every fixed series. Call once before any thread starts. */
void px_stats_init(void);

/* Registers the route discovery series (after px_stats_init, before the discovery
 * thread starts), so that a proxy without discovery does not show them. */
void px_stats_discovery_init(void);

static inline void px_stat_add(ns_metric *m, int64_t n)
{
    ns_counter_add(m, n);
}

/* Counts one request answered with `code`, sent to `dest` (a host or "ip:port"), that
 * took `seconds` from its head to the end of its response. Thread-safe, lock-free when
 * the series exists. */
void px_stats_request(px_dir dir, int code, const char *dest, double seconds);

/* Requests counted so far in `dir` (all codes and destinations), for /stats. */
uint64_t px_stats_requests(px_dir dir);

const char *px_dir_name(px_dir dir);

#endif

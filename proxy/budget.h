/* budget.h - retry budget and outlier ejection bookkeeping (pure: the caller passes the
 * time, in monotonic milliseconds, to every call; nothing here reads a clock).
 *
 * Retry budget (Linkerd's and Finagle's model): retries must not multiply load when a
 * backend is already failing. Over a sliding window (10 s) a retry is allowed while
 *     retries + 1 <= ratio * requests + min_per_sec * window_seconds
 * where requests counts first attempts only. With the defaults (20 %, 3 per second,
 * 10 s) a quiet service can still retry 30 times per 10 s, and a busy one adds at most
 * 20 % to its load. The window is kept as 1-second buckets, so it slides in steps of
 * one second.
 *
 * Outlier ejection (Envoy's consecutive-failure detector): after `consecutive`
 * failures in a row a backend is ejected (not picked) for base * n, n being how many
 * times it has been ejected (capped at max_ms); each base period it then stays
 * healthy after coming back lowers n by one. At most max_pct of the backends are
 * ejected at once (rounded down: one of two, none of one), so the proxy never ejects
 * its way to having nowhere to send traffic.
 *
 * Threads: one px_budget / px_outlier per worker thread (or per route per thread); no
 * locking here.
 */
#ifndef PX_BUDGET_H
#define PX_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PX_BUDGET_BUCKETS 10 /* one per second of the window */

typedef struct px_budget_cfg {
    uint32_t ratio_pct;   /* retries allowed per 100 requests (default 20) */
    uint32_t min_per_sec; /* retries allowed per second regardless of load (default 3) */
    uint32_t window_s;    /* 1 .. PX_BUDGET_BUCKETS seconds (default 10) */
} px_budget_cfg;

typedef struct px_budget {
    px_budget_cfg cfg;
    int64_t epoch[PX_BUDGET_BUCKETS]; /* which second each bucket counts, -1 if none */
    uint32_t requests[PX_BUDGET_BUCKETS];
    uint32_t retries[PX_BUDGET_BUCKETS];
} px_budget;

/* Starts an empty budget; `cfg` NULL means the defaults. Zero fields of `cfg` take
 * their defaults; window_s is clamped to 1 .. PX_BUDGET_BUCKETS. */
void px_budget_init(px_budget *b, const px_budget_cfg *cfg);

/* Records a first attempt of a request at time `now_ms`. */
void px_budget_request(px_budget *b, int64_t now_ms);

/* Asks to retry at `now_ms`. If the budget allows it, records the retry and returns
 * true; otherwise returns false and records nothing (do not retry). */
bool px_budget_try_retry(px_budget *b, int64_t now_ms);

/* Requests and retries counted in the window ending at `now_ms` (for metrics). */
void px_budget_counts(const px_budget *b, int64_t now_ms, uint64_t *requests, uint64_t *retries);

#define PX_OUTLIER_MAX 64 /* backends tracked per px_outlier (PX_ROUTE_MAX_BACKENDS) */

typedef struct px_outlier_cfg {
    uint32_t consecutive; /* failures in a row that eject (default 5) */
    int64_t base_ms;      /* ejection time per time ejected (default 30000) */
    int64_t max_ms;       /* longest ejection (default 300000) */
    uint32_t max_pct;     /* most backends ejected at once, percent (default 50) */
} px_outlier_cfg;

typedef struct px_outlier_host {
    uint32_t failures; /* consecutive failures since the last success */
    uint32_t times;    /* the multiplier n of the next/current ejection */
    int64_t until_ms;  /* ejected until this time; 0 if not ejected */
    int64_t back_ms;   /* when it last came back (for the decay of `times`) */
} px_outlier_host;

typedef struct px_outlier {
    px_outlier_cfg cfg;
    size_t n;
    px_outlier_host hosts[PX_OUTLIER_MAX];
} px_outlier;

/* Tracks `n` backends (clamped to PX_OUTLIER_MAX), none ejected; `cfg` NULL or zero
 * fields mean the defaults. */
void px_outlier_init(px_outlier *o, size_t n, const px_outlier_cfg *cfg);

/* Records a success of backend `i` (a response that is not a failure). */
void px_outlier_success(px_outlier *o, size_t i, int64_t now_ms);

/* Records a failure of backend `i` (connect error, reset, 5xx, as the caller decides).
 * Returns true if this failure ejected it. A failure of an ejected backend (a request
 * that was in flight) changes nothing. */
bool px_outlier_failure(px_outlier *o, size_t i, int64_t now_ms);

/* Bit i set = backend i is ejected at `now_ms` (pass to px_routes_pick as `exclude`).
 * Also brings back the backends whose time is over. */
uint64_t px_outlier_ejected(px_outlier *o, int64_t now_ms);

#endif

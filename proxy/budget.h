/* budget.h - retry budget, outlier ejection and retry rules (pure: the caller passes the
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
 * its way to having nowhere to send traffic; and a pick that finds every usable
 * backend ejected ignores the ejections (Envoy's panic mode).
 *
 * Retry rules (px_retry_allowed): a failed connect may be retried for any request,
 * since nothing reached the server; a 503 or a connection closed before any answer
 * only for an idempotent request without a body that was alone on its connection and
 * whose client has received nothing of the answer yet.
 *
 * Threads: one px_budget per worker thread and one px_outlier per route per thread; no
 * locking here.
 */
#ifndef PX_BUDGET_H
#define PX_BUDGET_H

#include "http1.h"
#include "routes.h"

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
    bool came_back;    /* its ejection ended since the last px_outlier_update */
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

/* px_outlier_ejected, and in *back (may be NULL) the backends whose ejection ended since
 * the previous px_outlier_update, whichever call noticed it (each is reported once: for
 * a log line and a gauge). */
uint64_t px_outlier_update(px_outlier *o, int64_t now_ms, uint64_t *back);

/* Backends ejected as of the last call, plus those that came back but were not reported
 * by px_outlier_update yet: what a gauge fed by ejections and reports holds for `o`. */
size_t px_outlier_pending(const px_outlier *o);

/* Picks a backend of `r` (px_routes_pick) skipping `unusable` (no address) always, and
 * preferably `ejected` and `tried` (backends that already failed this request): first
 * neither, then ejected ones only (the request may go back to a backend that failed
 * it, which for a Service address is usually another pod), then only the unusable
 * ones (every usable backend is ejected: ignore ejections rather than fail). Returns
 * the backend index or -1 if every backend with a weight is unusable. */
int px_outlier_pick(px_route *r, uint64_t unusable, uint64_t ejected, uint64_t tried);

/* Carries outlier state over a route table swap. `next_st` and `old_st` run parallel to
 * next->routes and old->routes (NULL entries: no state yet). The state of each old
 * route moves to the route of `next` with the same host and port, backend by backend:
 * a backend with the same host, port and address keeps its failures and ejection,
 * wherever it is in the list and whatever its weight now; other backends start clean.
 * The px_outlier objects are reused: moved ones become NULL in `old_st`; the caller
 * frees what is left there. Allocates nothing. */
void px_outlier_adopt(px_outlier **next_st, const px_routes *next, px_outlier **old_st,
                      const px_routes *old);

/* Why a request failed, as far as retrying is concerned. */
typedef enum px_retry_reason {
    PX_RETRY_CONNECT = 0, /* the connect failed or timed out: nothing reached the server */
    PX_RETRY_503,         /* the server answered 503 */
    PX_RETRY_RESET,       /* the server closed or reset the connection before answering */
    PX_RETRY_NREASONS,
} px_retry_reason;

/* What the proxy knows of a request that failed. */
typedef struct px_retry_req {
    px_h1_method method;
    bool bodiless;    /* no body (no Content-Length, or 0; not chunked) */
    bool alone;       /* the only request in flight on its client connection */
    bool answered;    /* something of the answer went to the client (a 1xx) */
    bool replayable;  /* its head was kept, so that it can be sent again */
    unsigned retries; /* retries already made */
} px_retry_req;

/* Whether `r` may be sent again after failing for `why`, with at most `max_retries`
 * retries per request (the budget is asked separately, last). */
bool px_retry_allowed(px_retry_reason why, const px_retry_req *r, unsigned max_retries);

/* "connect", "503", "reset": the metric label of `why`. */
const char *px_retry_reason_name(px_retry_reason why);

#endif

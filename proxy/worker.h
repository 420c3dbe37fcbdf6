/* worker.h - the proxy process: one event loop thread per core, each with its own
 * SO_REUSEPORT listeners (the kernel spreads new connections over them), and what the
 * threads share (settings, connection count, drain flag).
 *
 * A connection stays on the thread that accepted it for its whole life, so the data
 * path takes no lock. The main thread runs the admin server and the signals and talks
 * to workers through an eventfd each: "drain" and "a new route table is waiting".
 */
#ifndef PX_WORKER_H
#define PX_WORKER_H

#include "budget.h"
#include "config.h"
#include "loop.h"
#include "routes.h"
#include "session.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>

#define PX_MAX_LISTENERS 4

typedef struct px_proxy px_proxy;

typedef struct px_listener {
    px_io io;
    px_dir dir;
    int family;
    struct px_worker *w;
} px_listener;

/* A route table on its way from the main thread to a worker; t NULL means "no table".
 * `health` is its (empty) outlier state array, made here so that the worker allocates
 * nothing at the swap. */
typedef struct px_routes_update {
    px_routes *t;
    px_outlier **health;
} px_routes_update;

typedef struct px_worker {
    px_proxy *px;
    unsigned id;
    pthread_t thread;
    bool started;
    px_loop loop;
    px_listener listeners[PX_MAX_LISTENERS];
    unsigned nlisteners;
    px_io wake; /* eventfd: the main thread has news */
    px_tq queues[PX_T_COUNT];
    px_session *sessions; /* live */
    px_session *dead;     /* killed during this batch of events */
    size_t nsessions;
    px_routes *routes;                       /* this thread's copy; NULL without a table */
    _Atomic(px_routes_update *) next_routes; /* handed over by the main thread */
    /* Outlier state per route of `routes` (an entry is made at the route's first
     * failure), the table generation (bumped at each swap), and this worker's share of
     * the ejected-backends gauge. */
    px_outlier **health;
    uint32_t routes_gen;
    size_t nejected;
    int64_t sweep_ms;
    px_budget budget; /* retries of this worker's routed requests */
    uint64_t rng;
    bool draining;
    int64_t drain_deadline_ms;
    int reserve_fd; /* spare descriptor, given up to accept-and-close when out of them */
} px_worker;

struct px_proxy {
    px_config cfg;
    unsigned nworkers;
    px_worker *workers;
    atomic_uint nconns;
    struct sockaddr_storage inbound_src4; /* 127.0.0.6, port 0 */
    struct sockaddr_storage inbound_src6; /* ::6 if this namespace has it, else family 0 */
    atomic_bool draining;
    atomic_bool ready;
    atomic_int running; /* worker threads not finished */
    int main_wake_fd;   /* eventfd the workers write when they finish */
    int64_t started_ms;
};

/* Creates the workers and their listeners (every bind happens here, before any thread
 * starts, so that a port in use is reported at once). Returns 0 or -errno with a
 * message. */
int px_workers_create(px_proxy *px, ns_err *err);

/* Starts the threads. Returns 0 or -errno. */
int px_workers_start(px_proxy *px, ns_err *err);

/* Asks every worker to drain: stop accepting, finish in-flight work, exit. */
void px_workers_drain(px_proxy *px);

/* Hands `t` (a fresh table, or NULL for none) to every worker, each getting its own
 * copy; the caller keeps `t`. Returns 0 or -ENOMEM (no worker changed then). */
int px_workers_set_routes(px_proxy *px, const px_routes *t);

/* Joins finished threads and frees everything. */
void px_workers_destroy(px_proxy *px);

/* Live sessions of all workers (racy snapshot, for /stats). */
size_t px_workers_sessions(px_proxy *px);

/* Route backend health, on the worker's own thread. */

/* The route at `ref` if the worker's table is still the one it was picked from. */
px_route *px_worker_route(px_worker *w, const px_backend_ref *ref);

/* Picks a backend of route `r` of the worker's table (px_route_target, skipping the
 * backends ejected on this worker, and `tried` if it can), sets *ref to it and fills
 * the address and label. Returns 0 or -EHOSTUNREACH. */
int px_worker_pick(px_worker *w, px_route *r, uint64_t tried, const struct sockaddr_storage *orig,
                   px_backend_ref *ref, struct sockaddr_storage *out, char *label, size_t labellen);

/* Another attempt for a request (or routed TCP connection) that failed at backend *via
 * for `why`: the retry rules (px_retry_allowed with --max-retries), then the worker's
 * retry budget, then a pick that avoids the backends in *tried (the failed one is
 * added). On success counts the retry, updates *via and fills the new address and
 * label, and returns 0; -1: no retry, the client gets the failure (a budget refusal is
 * counted). */
int px_worker_retry(px_worker *w, px_dir dir, px_retry_reason why, const px_retry_req *rr,
                    const struct sockaddr_storage *orig, px_backend_ref *via, uint64_t *tried,
                    struct sockaddr_storage *out, char *label, size_t labellen);

/* How the backend at `ref` did: a failure (connect failure or timeout, a connection
 * closed before an answer, a 5xx, a request timeout) counts towards its ejection, a
 * success resets the count. Ignored for no route or an outdated table. */
void px_worker_backend_result(px_worker *w, const px_backend_ref *ref, bool ok);

#endif

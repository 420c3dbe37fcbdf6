/* controller.h - the generic controller loop: informer events become keys in a work
 * queue, and N worker threads call a reconcile function for each key (controller-runtime's
 * Controller, without code generation).
 *
 *   informer --handler--> enqueue fn --> work queue --> worker threads --> reconcile(key)
 *
 * For each key, reconcile runs at most once at a time, always sees the latest cached
 * state (several changes before it runs collapse into one call), and is retried with
 * per-key exponential backoff while it fails. A reconcile asks to be called again later
 * (a certificate's renewal, a rollout's next step) with op_controller_requeue_after.
 *
 * Leader election: a controller made with start_paused does nothing until
 * op_controller_resume (the elector's on_started), and op_controller_pause (on_stopped)
 * stops it taking keys at once. Informers keep running either way, so a standby replica
 * has a warm cache and takes over without relisting.
 *
 * Shutdown on SIGTERM, in this order:
 *   op_informer_stop (each)   no new events; caches stay readable
 *   op_controller_stop (each) no new reconciles; waits for the ones running
 *   op_recorder_flush/free    last Events out
 *   op_leader_stop            releases the Lease: the next leader starts at once
 */
#ifndef OP_CONTROLLER_H
#define OP_CONTROLLER_H

#include "err.h"
#include "informer.h"
#include "metrics.h"
#include "workqueue.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct op_controller op_controller;

/* Brings the world in line with the object under `key` (read it from an informer: it
 * may be gone, which means "clean up"). Called from worker threads, concurrently for
 * different keys, never for the same key at once. Returns 0 when done (the key's failure
 * count is forgotten), -EAGAIN to be retried with backoff without counting as an error,
 * or another negative errno for a failure, retried with backoff, logged with err->msg
 * and counted in the error metric. A spec that can never work is not an error to retry:
 * record a condition and an Event, and return 0. */
typedef int (*op_reconcile_fn)(void *ctx, const char *key, ns_err *err);

typedef struct op_controller_opts {
    const char *name; /* [a-z0-9-]+; the `controller` label of metrics and logs; required */
    unsigned workers; /* 0: 1 */
    op_reconcile_fn reconcile; /* required */
    void *ctx;
    long backoff_base_ms; /* 0: OP_WORKQUEUE_BASE_DELAY_MS (5 ms) */
    long backoff_max_ms;  /* 0: OP_WORKQUEUE_MAX_DELAY_MS (5 min) */
    bool start_paused;    /* wait for op_controller_resume (leader election) */
    ns_metrics *metrics;  /* registry to add this controller's metrics to, or NULL */
} op_controller_opts;

/* Makes a controller (metrics registered if opts->metrics). Returns 0 and *out (free with
 * op_controller_free), -EINVAL (message in err), or -ENOMEM. */
int op_controller_new(const op_controller_opts *opts, op_controller **out, ns_err *err);

/* Decides which keys an informer event enqueues (with op_controller_enqueue and friends);
 * runs on the informer's thread. */
typedef void (*op_enqueue_fn)(op_controller *c, void *ud, const op_informer_event *ev);

/* Feeds `inf`'s events into this controller: each event's own key when `fn` is NULL, else
 * whatever `fn` enqueues (an owner's key, nothing for an irrelevant change). Call before
 * op_informer_start; the controller must outlive the informer's thread (stop informers
 * first). op_controller_start waits for the informers given here to sync. Returns 0,
 * -EBUSY if the informer has started, -ENOMEM. */
int op_controller_watch(op_controller *c, op_informer *inf, op_enqueue_fn fn, void *ud);

/* Waits up to `sync_timeout_ms` (< 0: forever) for every watched informer's first list,
 * so that no reconcile sees a half-filled cache, then starts the workers. Returns 0,
 * -ETIMEDOUT or -ECANCELED (an informer was stopped; message in err), -EBUSY if started,
 * or -errno from pthread_create. */
int op_controller_start(op_controller *c, long sync_timeout_ms, ns_err *err);

/* Queue `key` now, after `delay_ms`, or after its backoff. Safe from any thread (handlers,
 * reconciles). Return as op_workqueue_add (-ESHUTDOWN once stopped). */
int op_controller_enqueue(op_controller *c, const char *key);
int op_controller_enqueue_after(op_controller *c, const char *key, long delay_ms);
int op_controller_enqueue_rate_limited(op_controller *c, const char *key);

/* From a reconcile: call me again for `key` in `delay_ms` even if nothing changes (a
 * periodic check). Combine with returning 0. Same as op_controller_enqueue_after. */
int op_controller_requeue_after(op_controller *c, const char *key, long delay_ms);

/* Stops handing keys to workers (reconciles already running finish), or starts again.
 * Keys keep being queued meanwhile. Callable from any thread, the elector's included. */
void op_controller_pause(op_controller *c);
void op_controller_resume(op_controller *c);

/* True once op_controller_stop has begun: a long reconcile may check it and return. */
bool op_controller_stopping(op_controller *c);

/* Shuts the queue down (queued keys are dropped), waits for running reconciles and joins
 * the workers. Idempotent. Must not be called from a reconcile. */
void op_controller_stop(op_controller *c);

/* Stops (if needed), removes the metrics from the registry and frees. Accepts NULL. */
void op_controller_free(op_controller *c);

/* The queue, for tests and for custom enqueue logic. */
op_workqueue *op_controller_queue(op_controller *c);

typedef struct op_controller_stats {
    unsigned long success, error, requeue; /* reconcile results */
} op_controller_stats;

void op_controller_get_stats(op_controller *c, op_controller_stats *out);

/* ---- pure helpers for enqueue functions ---- */

/* The key of `obj`'s controlling owner (ownerReferences entry with controller: true) if
 * it has kind `kind` in API group `group` ("" for core; any version): "ns/name" when
 * the owner is namespaced (`owner_namespaced`; the owner lives in obj's namespace), else
 * "name". Returns 0, -ENOENT when there is no such owner, -ENAMETOOLONG. */
int op_owner_key(const cJSON *obj, const char *group, const char *kind, bool owner_namespaced,
                 char *buf, size_t size);

/* For an UPDATE: true if metadata.generation changed (the spec changed), or either side
 * has no generation. Other event types: true. Filters out the status writes a
 * controller makes itself. */
bool op_generation_changed(const op_informer_event *ev);

/* For an UPDATE: true if labels, annotations, finalizers, ownerReferences or
 * deletionTimestamp changed (which do not bump the generation). Others: true. */
bool op_metadata_changed(const op_informer_event *ev);

#endif

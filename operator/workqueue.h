/* workqueue.h - a de-duplicating queue of string keys for controller workers, with
 * per-key exponential retry backoff and delayed adds (client-go's workqueue semantics).
 *
 * Guarantees:
 *   - a key added several times before a worker takes it is handed out once;
 *   - a key is never handed to two workers at once: a key re-added while it is being
 *     processed is handed out again only after op_workqueue_done();
 *   - keys come out in the order they were (first) added.
 *
 * It is a pure data structure guarded by one mutex, with condition variables to block
 * workers; no thread of its own. Delayed keys are moved to the ready list by whichever
 * call next looks at the queue after their time (a worker blocked in get wakes up for
 * them). Times come from CLOCK_MONOTONIC.
 */
#ifndef OP_WORKQUEUE_H
#define OP_WORKQUEUE_H

#include "metrics.h"

#include <stdbool.h>
#include <stddef.h>

/* client-go's controller defaults: 5 ms doubling per failure up to 1000 s; ours stops at
 * 5 min, so that a key that keeps failing is still looked at every few minutes. */
#define OP_WORKQUEUE_BASE_DELAY_MS 5L
#define OP_WORKQUEUE_MAX_DELAY_MS  300000L

typedef struct op_workqueue op_workqueue;

typedef struct op_workqueue_opts {
    long base_delay_ms; /* first retry delay; 0: OP_WORKQUEUE_BASE_DELAY_MS */
    long max_delay_ms;  /* retry delay cap; 0: OP_WORKQUEUE_MAX_DELAY_MS */
    /* Optional metrics (may be NULL), updated under the queue's lock; they must outlive
     * the queue. */
    ns_metric *depth;   /* gauge: keys ready and waiting for a worker */
    ns_metric *adds;    /* counter: adds that made a key pending (duplicates not counted) */
    ns_metric *retries; /* counter: op_workqueue_add_rate_limited calls */
} op_workqueue_opts;

/* The retry delay after `failures` earlier failures: base * 2^failures, capped at max
 * (both > 0). Pure. */
long op_backoff_delay_ms(long base_ms, long max_ms, unsigned failures);

/* Makes an empty queue; `opts` may be NULL. Returns 0 and *out (free with
 * op_workqueue_free), or -ENOMEM. */
int op_workqueue_new(const op_workqueue_opts *opts, op_workqueue **out);

/* Frees the queue and every key in it. No thread may be using it. Accepts NULL. */
void op_workqueue_free(op_workqueue *q);

/* Marks `key` (copied) as needing processing. A key already pending is not queued twice;
 * a key being processed is queued again when it is done. Returns 0, -ESHUTDOWN after
 * op_workqueue_shutdown, -EINVAL for a NULL key, or -ENOMEM. */
int op_workqueue_add(op_workqueue *q, const char *key);

/* Adds `key` after `delay_ms` (<= 0: now). A key already waiting keeps the earlier of its
 * two times. Returns as op_workqueue_add. */
int op_workqueue_add_after(op_workqueue *q, const char *key, long delay_ms);

/* Adds `key` after its backoff delay, op_backoff_delay_ms(base, max, failures), and counts
 * one more failure for it. Returns as op_workqueue_add. */
int op_workqueue_add_rate_limited(op_workqueue *q, const char *key);

/* Forgets the failures of `key` (call it after a success), so that its next retry starts
 * at the base delay again. Does not remove a pending add. */
void op_workqueue_forget(op_workqueue *q, const char *key);

/* Failures counted for `key` since it was last forgotten. */
unsigned op_workqueue_num_requeues(op_workqueue *q, const char *key);

/* Takes the next key, blocking while none is ready (or the queue is paused).
 * `timeout_ms` < 0 waits forever. Returns 0 and *key (malloc'd; the caller frees it after
 * calling op_workqueue_done with it), -ESHUTDOWN when the queue is shut down (and, when
 * draining, empty), -ETIMEDOUT, or -ENOMEM. */
int op_workqueue_get(op_workqueue *q, long timeout_ms, char **key);

/* Ends the processing of `key` that op_workqueue_get handed out. If the key was added
 * again meanwhile, it is queued now. Unknown keys are ignored. */
void op_workqueue_done(op_workqueue *q, const char *key);

/* Paused: op_workqueue_get hands nothing out (keys keep accumulating); used while this
 * replica is not the leader. Keys being processed are not interrupted. */
void op_workqueue_set_paused(op_workqueue *q, bool paused);

/* Refuses new adds and wakes every blocked op_workqueue_get. With `drain`, gets still hand
 * out the keys that are ready until none is left; without, they return -ESHUTDOWN at once
 * (what a controller wants on SIGTERM: the next leader lists everything anyway). Keys
 * being processed are not interrupted; see op_workqueue_wait_idle. Idempotent. */
void op_workqueue_shutdown(op_workqueue *q, bool drain);

bool op_workqueue_shutting_down(op_workqueue *q);

/* Waits until no key is being processed. `timeout_ms` < 0 waits forever.
 * Returns 0 or -ETIMEDOUT. */
int op_workqueue_wait_idle(op_workqueue *q, long timeout_ms);

/* Keys ready for a worker (the depth), keys waiting for their time, keys being processed. */
size_t op_workqueue_len(op_workqueue *q);
size_t op_workqueue_delayed(op_workqueue *q);
size_t op_workqueue_processing(op_workqueue *q);

#endif

/* informer.h - a local cache of one kind of Kubernetes object, kept current by LIST then
 * WATCH, that tells event handlers what changed (client-go's shared informer).
 *
 * Three layers, the first two pure (no I/O, no threads) and unit tested:
 *   - label selectors (op_selector): parse "a=b,c in (x,y),!d" or a LabelSelector object,
 *     match metadata.labels;
 *   - the cache (op_cache): key -> owned cJSON object, sorted by key, and the relist
 *     difference op_cache_diff(old, fresh) -> adds, updates and deletes;
 *   - the informer (op_informer): a thread that lists, watches from the list's
 *     resourceVersion with bookmarks, applies each event to the cache and calls handlers;
 *     relists on 410 Gone (-ESTALE) and after errors, with backoff, forever, until stopped.
 *
 * Keys are "namespace/name", or "name" for cluster-scoped objects (client-go's
 * MetaNamespaceKeyFunc).
 *
 * Reads (op_informer_get, _list, _foreach, _view) are thread-safe under a rwlock:
 * get and list return deep copies the caller owns; foreach and view run a callback under
 * the read lock with borrowed pointers, which is cheaper for large objects but must be
 * quick (it delays the informer's next write).
 */
#ifndef OP_INFORMER_H
#define OP_INFORMER_H

#include "cache.h"
#include "err.h"
#include "kube.h"
#include "kubewatch.h"
#include "selector.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* ---- the informer ---- */

typedef struct op_informer op_informer;

/* Called for every change, one call at a time (never concurrently), on the informer's
 * thread or its resync thread. It must be quick (typically: enqueue a key), must not
 * stop or free the informer, and may read the informer (get, list, view). */
typedef void (*op_informer_handler_fn)(void *ud, const op_informer_event *ev);

/* Where lists and watches come from: the I/O edge of an informer. op_informer_new plugs
 * in the Kubernetes API; op_informer_new_source takes any other implementation. */
typedef struct op_informer_source {
    /* The whole collection as a List object (caller frees *out). 0 or a negative errno. */
    int (*list)(void *ud, cJSON **out, ns_kube_status *st);
    /* Streams events after resourceVersion `rv` to `cb` until stopped (return 0), the
     * version is too old (-ESTALE), or an error retrying cannot fix (as
     * ns_kube_watch_run). */
    int (*watch)(void *ud, const char *rv, ns_kube_watch_cb cb, void *cb_ud, ns_kube_status *st);
    /* Makes the running and every later watch return 0 promptly; any thread. */
    void (*stop)(void *ud);
    void (*free)(void *ud); /* may be NULL */
    void *ud;
} op_informer_source;

typedef struct op_informer_opts {
    const char *name;           /* for logs; NULL: the resource */
    const char *label_selector; /* server-side filter, NULL: all */
    const char *field_selector; /* server-side filter, NULL: all */
    long resync_ms;             /* > 0: replay every cached object to handlers this often */
    bool keep_managed_fields;   /* default: drop metadata.managedFields to save memory */
    /* Applied to every object before it is cached (after managedFields go), to keep only
     * what the controller reads: a cache of thousands of objects is the operator's
     * memory. It must keep metadata.name, .namespace and .resourceVersion (keys and
     * change detection), and be pure. NULL: objects are cached whole. */
    void (*transform)(cJSON *obj);
    long watch_timeout_s;    /* per watch connection; 0: random in [300, 600) */
    ns_kube_backoff backoff; /* between failed lists/watches; zeros: 200 ms .. 30 s */
} op_informer_opts;

/* An informer of the collection `ref` (ref->name must be NULL; ref->namespace NULL means
 * all namespaces) over `k`, which must outlive it. Strings are copied. Does not connect.
 * Returns 0 and *out (free with op_informer_free), -EINVAL for a bad ref (message in err),
 * or -ENOMEM. */
int op_informer_new(ns_kube *k, const ns_kube_ref *ref, const op_informer_opts *opts,
                    op_informer **out, ns_err *err);

/* The same over any source; the informer owns `src` (src->free is called by
 * op_informer_free, also on failure here). opts->label_selector and field_selector are
 * the source's business and ignored. */
int op_informer_new_source(const op_informer_source *src, const op_informer_opts *opts,
                           op_informer **out, ns_err *err);

/* Adds a handler; only before op_informer_start. Returns 0, -EBUSY once started, -ENOMEM. */
int op_informer_add_handler(op_informer *inf, op_informer_handler_fn fn, void *ud);

/* Starts the informer's thread (and a resync thread if resync_ms > 0). Returns 0, -EBUSY if
 * already started, or -errno from pthread_create. */
int op_informer_start(op_informer *inf);

/* True once the first list has been applied (handlers have seen every object). */
bool op_informer_has_synced(op_informer *inf);

/* Waits for has_synced. `timeout_ms` < 0: forever. Returns 0, -ETIMEDOUT, or -ECANCELED
 * when the informer was stopped first. */
int op_informer_wait_synced(op_informer *inf, long timeout_ms);

/* Stops the watch, wakes any backoff sleep and joins the threads. A LIST in flight is
 * waited for (it is bounded by the client's timeout and retries). The cache stays
 * readable. Idempotent; must not be called from a handler. */
void op_informer_stop(op_informer *inf);

/* Stops (if needed) and frees everything. Accepts NULL. */
void op_informer_free(op_informer *inf);

/* A deep copy of the object under `key` in *out (caller frees). Returns 0, -ENOENT, or
 * -ENOMEM. */
int op_informer_get(op_informer *inf, const char *key, cJSON **out);

/* Deep copies of the cached objects matching `sel` (NULL: all) in namespace `ns` (NULL:
 * any), in key order, as a new JSON array in *out (caller frees). Returns 0 or -ENOMEM. */
int op_informer_list(op_informer *inf, const char *ns, const op_selector *sel, cJSON **out);

/* Calls `fn` for every cached object in key order under the read lock (borrowed
 * pointers; `fn` must not keep them, nor block). Returns fn's non-zero value or 0. */
int op_informer_foreach(op_informer *inf, op_cache_visit_fn fn, void *ud);

/* Calls `fn` with the object under `key` under the read lock. Returns fn's value, or
 * -ENOENT without calling it. */
int op_informer_view(op_informer *inf, const char *key, op_cache_visit_fn fn, void *ud);

size_t op_informer_len(op_informer *inf);

/* Counters for tests and metrics: successful lists (the first one included) and watch
 * events applied (bookmarks not counted). */
typedef struct op_informer_stats {
    unsigned long lists;
    unsigned long events;
} op_informer_stats;

void op_informer_get_stats(op_informer *inf, op_informer_stats *out);

#endif

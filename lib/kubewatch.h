/* kubewatch.h - Kubernetes watches: newline-delimited JSON framing, event parsing, and a
 * watch loop that follows resourceVersion, reconnects with backoff, and says when the
 * caller must relist (410 Gone).
 *
 * The framing and parsing functions are pure (bytes in, lines and events out). The loop
 * sits on ns_kube_stream (kube.h), so it can be stopped from another thread at once.
 *
 * Typical controller use (an informer without the cache):
 *
 *     list (ns_kube_list) -> handle items -> rv = list.metadata.resourceVersion
 *     ns_kube_watch_set_resource_version(w, rv);
 *     rc = ns_kube_watch_run(w, on_event, ctx, &st);
 *     rc == -ESTALE: the history is gone, list again and set the new version;
 *     rc == 0: ns_kube_watch_stop() was called; anything else: a hard error.
 */
#ifndef NS_KUBEWATCH_H
#define NS_KUBEWATCH_H

#include "buf.h"
#include "err.h"
#include "kube.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* ---- framing ---- */

/* The longest event line a watch accepts unless told otherwise. The API server refuses
 * request bodies over 3 MiB, so real objects stay well below this. */
#define NS_KUBE_WATCH_MAX_LINE ((size_t)16 << 20)

/* Called with one line, without its '\n' (nor a '\r' before it), not NUL-terminated.
 * Returning non-zero stops ns_kube_lines_feed, which returns that value. */
typedef int (*ns_kube_line_cb)(void *ud, const char *line, size_t len);

/* Splits a byte stream that arrives in arbitrary pieces into lines. */
typedef struct ns_kube_lines {
    ns_buf partial;  /* the start of a line whose end has not arrived */
    size_t max_line; /* longer lines are an error */
    bool overflow;   /* a line was too long; sticky until reset */
} ns_kube_lines;

/* `max_line` 0 means NS_KUBE_WATCH_MAX_LINE. */
void ns_kube_lines_init(ns_kube_lines *l, size_t max_line);
/* Forgets a partial line and an overflow (a new connection starts a new stream). */
void ns_kube_lines_reset(ns_kube_lines *l);
void ns_kube_lines_free(ns_kube_lines *l);

/* Feeds `len` bytes: calls `cb` for every line they complete, in order; empty lines are
 * skipped; an unfinished line is kept for the next call. Complete lines are passed
 * straight from `data` when nothing was pending (no copy). Returns 0; the callback's
 * non-zero value (bytes after that line are not consumed: reset before reuse);
 * -EMSGSIZE when a line grows beyond max_line (sticky until reset); or -ENOMEM. */
int ns_kube_lines_feed(ns_kube_lines *l, const char *data, size_t len, ns_kube_line_cb cb,
                       void *ud);

/* ---- events ---- */

typedef enum ns_kube_event_type {
    NS_KUBE_EVENT_ADDED,
    NS_KUBE_EVENT_MODIFIED,
    NS_KUBE_EVENT_DELETED,
    NS_KUBE_EVENT_BOOKMARK, /* only metadata.resourceVersion is meaningful */
    NS_KUBE_EVENT_ERROR,    /* object is a Status; see `status` */
} ns_kube_event_type;

typedef struct ns_kube_event {
    ns_kube_event_type type;
    cJSON *object;                /* owned by the event; a callback may take it and set NULL */
    const char *resource_version; /* object's metadata.resourceVersion (inside object), or NULL */
    ns_kube_status status;        /* ERROR: code, reason, message of the Status */
} ns_kube_event;

/* "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR". */
const char *ns_kube_event_type_name(ns_kube_event_type type);

/* Parses one watch line {"type": ..., "object": {...}}. Returns 0 and fills *ev (release
 * with ns_kube_event_clear), or -EINVAL for malformed JSON, an unknown type or a missing
 * object (message in err), or -ENOMEM. */
int ns_kube_event_parse(const char *line, size_t len, ns_kube_event *ev, ns_err *err);

/* Frees ev->object and zeroes *ev. */
void ns_kube_event_clear(ns_kube_event *ev);

/* ---- the watch loop ---- */

typedef struct ns_kube_watch_opts {
    const char *label_selector;
    const char *field_selector;
    const char *resource_version; /* start after this version; NULL or "": start now, with
                                   * a synthetic ADDED for every existing object */
    long timeout_seconds;         /* per connection (server-side); 0: random in [300, 600) */
    bool no_bookmarks;            /* do not ask for BOOKMARK events */
    size_t max_line;              /* 0: NS_KUBE_WATCH_MAX_LINE */
    ns_kube_backoff backoff;      /* reconnect delays; zeros: 200 ms doubling up to 30 s */
} ns_kube_watch_opts;

/* Appends the watch request path for `ref` (a collection; with ref->name the watch is
 * narrowed to that object by fieldSelector metadata.name) to `out`:
 * PATH?watch=1[&allowWatchBookmarks=true][&labelSelector=..][&fieldSelector=..]
 * [&resourceVersion=RV][&timeoutSeconds=N] (N > 0). Returns what ns_kube_path returns. */
int ns_kube_watch_path(const ns_kube_ref *ref, const ns_kube_watch_opts *opts, const char *rv,
                       long timeout_s, ns_buf *out, ns_err *err);

typedef struct ns_kube_watch ns_kube_watch;

/* Called for every event, ERROR included, on the thread running ns_kube_watch_run.
 * Returning non-zero ends the run, which returns that value. */
typedef int (*ns_kube_watch_cb)(void *ud, ns_kube_event *ev);

/* Prepares a watch of `ref` (strings and `opts` are copied). Does not connect.
 * Returns 0, -EINVAL for a bad ref (message in err), -ENOMEM. */
int ns_kube_watch_new(ns_kube *k, const ns_kube_ref *ref, const ns_kube_watch_opts *opts,
                      ns_kube_watch **out, ns_err *err);

/* Frees the watch; it must not be running. Accepts NULL. */
void ns_kube_watch_free(ns_kube_watch *w);

/* Streams events to `cb` until stopped, reconnecting from the last resourceVersion seen
 * when the server ends a connection (timeoutSeconds) or goes away, with backoff for
 * failures (connection errors, 429, 5xx, ERROR events other than 410, malformed lines).
 * Returns:
 *   0          ns_kube_watch_stop was called (before or during the run);
 *   -ESTALE    the version is too old (HTTP 410 or an ERROR event with code 410): list
 *              again, ns_kube_watch_set_resource_version, run again;
 *   the callback's non-zero value;
 *   -EMSGSIZE  an event longer than max_line;
 *   other negative errno for errors that retrying cannot fix (401 twice in a row, 403,
 *              404 e.g. an unknown resource, 400 e.g. a bad selector).
 * `st` (may be NULL) describes the last failure. */
int ns_kube_watch_run(ns_kube_watch *w, ns_kube_watch_cb cb, void *ud, ns_kube_status *st);

/* Ends a running ns_kube_watch_run promptly and makes later runs return 0 at once. Safe
 * from any thread; the watch must not be freed until the run has returned. */
void ns_kube_watch_stop(ns_kube_watch *w);

/* The last resourceVersion seen (from any event but ERROR), or "" if none yet. Read it from
 * the callback or after the run returned; valid until the next event or set. */
const char *ns_kube_watch_resource_version(const ns_kube_watch *w);

/* Sets where the next run starts (after a relist). `rv` NULL or "" means "now".
 * Returns 0 or -ENOMEM. Not while running. */
int ns_kube_watch_set_resource_version(ns_kube_watch *w, const char *rv);

/* Connections made and events delivered so far (for tests and metrics); any thread. */
unsigned long ns_kube_watch_connects(const ns_kube_watch *w);
unsigned long ns_kube_watch_events(const ns_kube_watch *w);

#endif

/* events.h - Kubernetes Events (core/v1) about the objects the operator reconciles, the
 * way client-go's EventRecorder writes them: de-duplicated and rate-limited.
 *
 * Recording never blocks on the API server: op_recorder_event decides in memory and
 * queues the write for the recorder's sender thread.
 *
 *   - De-duplication: an Event with the same involved object (kind, namespace, name,
 *     uid), type, reason and message as one recorded less than 10 minutes before is not
 *     created again: the existing Event gets count + 1 and a new lastTimestamp (a merge
 *     PATCH). Repeats that arrive while a write for that Event is still queued are folded
 *     into it, so a hot loop repeating one Event costs at most one write per send slot.
 *   - Rate limits: new Events (not repeats) are limited per involved object by a token
 *     bucket (client-go's spam filter: a burst of 25, then one per 5 minutes), and all
 *     writes together by a global bucket (10 per second, burst 25). What does not fit is
 *     dropped and counted; Events are best effort, as in Kubernetes.
 *
 * The de-duplication state is a pure structure (op_event_cache, clock passed in) with
 * the token bucket and the Event body builder, unit tested without a server.
 */
#ifndef OP_EVENTS_H
#define OP_EVENTS_H

#include "buf.h"
#include "err.h"
#include "kube.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OP_EVENT_COMPONENT      "nutshell-operator"
#define OP_EVENT_DEDUP_WINDOW_S 600
/* Longer messages are cut (at a UTF-8 boundary): events.k8s.io's limit for a note. */
#define OP_EVENT_MESSAGE_MAX 1024

/* ---- pure parts ---- */

/* What an Event is about (involvedObject). Strings are borrowed. */
typedef struct op_event_ref {
    const char *api_version;
    const char *kind;
    const char *namespace; /* NULL or "" for cluster-scoped objects */
    const char *name;
    const char *uid;
    const char *resource_version;
} op_event_ref;

/* Fills `ref` with pointers into `obj` (apiVersion, kind, metadata.*). Returns 0, or
 * -EINVAL when kind or metadata.name is missing. */
int op_event_ref_from_object(const cJSON *obj, op_event_ref *ref);

/* The namespace an Event about `ref` lives in: the object's, or "default" for
 * cluster-scoped objects (as client-go does). */
const char *op_event_namespace(const op_event_ref *ref);

/* Appends the de-duplication key of an Event to `out`: the involved object, type, reason
 * and message, separated so that no two different inputs give the same key. */
void op_event_dedup_key(const op_event_ref *ref, const char *type, const char *reason,
                        const char *message, ns_buf *out);

/* A token bucket: `burst` tokens, refilled at `per_s` tokens a second. Pure: the caller
 * passes the time (any monotonic milliseconds). */
typedef struct op_token_bucket {
    double tokens, burst, per_s;
    int64_t last_ms;
    bool started;
} op_token_bucket;

void op_token_bucket_init(op_token_bucket *b, double burst, double per_s);
/* Takes a token if one is there. */
bool op_token_bucket_take(op_token_bucket *b, int64_t now_ms);
/* Milliseconds until a token will be there (0: now). */
int64_t op_token_bucket_wait_ms(op_token_bucket *b, int64_t now_ms);

/* One recorded Event, as the de-duplication cache keeps it. */
typedef struct op_event_entry {
    char *key;       /* de-duplication key */
    char *name;      /* metadata.name of the Event on the server */
    char *namespace; /* metadata.namespace */
    cJSON *body;     /* the Event as created (involvedObject, reason, message, ...) */
    int64_t count;
    int64_t first_s, last_s; /* Unix seconds */
    bool created;            /* the server has it (so repeats PATCH it) */
    bool pending;            /* a write is queued */
    struct op_event_entry *lru_prev, *lru_next;
} op_event_entry;

/* Recent Events by key (bounded, least recently used dropped first) and the per-object
 * spam filter. Not thread-safe: the recorder guards it. */
typedef struct op_event_cache op_event_cache;

typedef struct op_event_cache_opts {
    size_t max_entries;    /* 0: 4096 (client-go's LRU size) */
    double object_burst;   /* 0: 25 new Events per object ... */
    double object_per_s;   /* 0: ... then 1/300 a second */
    int64_t window_s;      /* 0: OP_EVENT_DEDUP_WINDOW_S */
    const char *component; /* source.component; NULL: OP_EVENT_COMPONENT */
    const char *host;      /* source.host and reportingInstance; NULL: none */
} op_event_cache_opts;

int op_event_cache_new(const op_event_cache_opts *opts, op_event_cache **out);
void op_event_cache_free(op_event_cache *c);

typedef enum op_event_decision {
    OP_EVENT_NEW,     /* create a new Event (entry->count is 1) */
    OP_EVENT_REPEAT,  /* entry->count went up; PATCH it (or create, if not yet created) */
    OP_EVENT_DROPPED, /* over the per-object rate limit */
} op_event_decision;

/* Records one occurrence at `now_s` (Unix seconds; also drives the per-object bucket).
 * `type` is "Normal" or "Warning"; the message is cut to OP_EVENT_MESSAGE_MAX. On NEW and
 * REPEAT, *entry points at the cache's entry (valid until the next call that changes the
 * cache). Returns the decision, or a negative errno (-EINVAL for a bad type or empty
 * reason, -ENOMEM). */
int op_event_cache_observe(op_event_cache *c, const op_event_ref *ref, const char *type,
                           const char *reason, const char *message, int64_t now_s,
                           op_event_entry **entry);

/* The entry for `key`, or NULL (evicted or never seen). */
op_event_entry *op_event_cache_find(op_event_cache *c, const char *key);

size_t op_event_cache_len(const op_event_cache *c);

/* The full Event for `e` now (its body with count, firstTimestamp, lastTimestamp, name,
 * namespace set), for a create. NULL on allocation failure; caller frees. */
cJSON *op_event_build(const op_event_entry *e);

/* The merge patch that brings a created Event up to `e`: {count, lastTimestamp}. */
cJSON *op_event_build_patch(const op_event_entry *e);

/* ---- the recorder ---- */

typedef struct op_recorder op_recorder;

typedef struct op_recorder_opts {
    op_event_cache_opts cache;
    double qps;       /* writes a second, all Events; 0: 10 */
    double burst;     /* 0: 25 */
    size_t max_queue; /* queued writes beyond this are dropped; 0: 1024 */
} op_recorder_opts;

/* Makes a recorder writing through its own client made from `k`'s config (5 s timeout,
 * one retry: Events are best effort and must not hold up shutdown) and starts its sender
 * thread. `opts` may be NULL. Returns 0 and *out (free with op_recorder_free), or a
 * negative errno (message in err). */
int op_recorder_new(ns_kube *k, const op_recorder_opts *opts, op_recorder **out, ns_err *err);

/* Records an Event about `obj` (a Kubernetes object: kind, metadata.name, namespace,
 * uid are used). `type` is "Normal" or "Warning", `reason` a short UpperCamelCase word,
 * the message printf-formatted. Never blocks on I/O. Returns 0 (queued, folded into a
 * queued write, or dropped by a rate limit), or -EINVAL for bad arguments. */
int op_recorder_event(op_recorder *r, const cJSON *obj, const char *type, const char *reason,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Waits until every queued write has been sent (or failed). Returns 0 or -ETIMEDOUT. */
int op_recorder_flush(op_recorder *r, long timeout_ms);

typedef struct op_recorder_stats {
    unsigned long created, patched, dropped, failed;
} op_recorder_stats;

void op_recorder_get_stats(op_recorder *r, op_recorder_stats *out);

/* Stops the sender after its current write (queued writes are dropped: flush first to
 * send them) and frees everything. Accepts NULL. */
void op_recorder_free(op_recorder *r);

#endif

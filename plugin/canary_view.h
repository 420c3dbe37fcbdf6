/* canary_view.h - what `kubectl nutshell status` shows of Canaries: a Canary object read
 * leniently into the fields people look at, the kubectl-get-like table of many, and the
 * kubectl-describe-like view of one with its recent Events. Pure: objects and the clock
 * in, text out. */
#ifndef KN_CANARY_VIEW_H
#define KN_CANARY_VIEW_H

#include "buf.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The threshold the CRD defaults spec.analysis.threshold to. */
#define KN_DEFAULT_THRESHOLD 5
/* Events shown in the detailed view. */
#define KN_EVENTS_SHOWN 10

/* One Canary as read from its JSON. Strings point into that JSON (NULL when absent or
 * of the wrong type) and live as long as it does. Numbers absent or not whole numbers
 * read as "not set". */
typedef struct kn_canary {
    const char *name;
    const char *namespace;
    const char *uid;
    const char *resource_version;
    int64_t created_ms;  /* 0: unknown */
    bool deleting;       /* metadata.deletionTimestamp is set */
    const char *request; /* the nutshell.io/request annotation: a request not yet acted on */

    const char *target;   /* spec.targetRef.name */
    const char *strategy; /* "canary", "blueGreen", or NULL */
    bool suspend;
    int32_t threshold; /* spec.analysis.threshold, else KN_DEFAULT_THRESHOLD */

    const char *phase; /* status.phase; NULL: no status yet */
    bool has_canary_weight, has_desired_weight;
    int32_t canary_weight, desired_weight;
    int32_t failed_checks;
    bool has_iterations;
    int32_t iterations;
    const char *current_revision;
    const char *last_promoted_revision;
    const char *last_transition; /* as written */
    int64_t last_transition_ms;  /* 0: absent or unreadable */
    const char *message;
    const cJSON *conditions; /* status.conditions when an array */
    const char *promoted;    /* status of condition Promoted: "True", "False", "Unknown" */
} kn_canary;

/* Reads `obj` (a Canary; anything else gives mostly-NULL fields). Never fails. */
void kn_canary_read(const cJSON *obj, kn_canary *out);

/* Appends the table of `items` (an array of Canaries, NULL or empty: nothing) with the
 * columns NAME PHASE WEIGHT FAILED REVISION PROMOTED AGE, NAMESPACE first when
 * `all_namespaces`. FAILED is "failed/threshold"; a missing value is "-". */
void kn_status_table(const cJSON *items, bool all_namespaces, int64_t now_ms, ns_buf *out);

/* The time an Event last happened, in Unix ms (0: none readable): lastTimestamp, else
 * series.lastObservedTime, else eventTime, else firstTimestamp, else
 * metadata.creationTimestamp, as kubectl describe picks it. */
int64_t kn_event_time_ms(const cJSON *event);

/* Picks the `max` most recent Events of `items` (an array; NULL: none) into `out`,
 * oldest first, as kubectl describe lists them. Returns how many were picked. Events
 * with the same time keep their order in `items`. */
size_t kn_events_recent(const cJSON *items, const cJSON **out, size_t max);

/* Appends the detailed view of `c`: phase, weights, failed checks, revisions, last
 * transition, message, pending request, conditions, and then `events` (an array of
 * core/v1 Events; the KN_EVENTS_SHOWN most recent are shown) or, when `events_error`
 * is not NULL, that the Events could not be listed and why. */
void kn_status_detail(const kn_canary *c, const cJSON *events, const char *events_error,
                      int64_t now_ms, ns_buf *out);

#endif

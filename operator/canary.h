/* canary.h - the Canary resource as the controller reads and writes it: the spec with
 * every default applied, the status, and their JSON forms. Pure (no I/O, no clock).
 *
 * The Canary controller is split like the Mesh's:
 *   canary.h          spec and status <-> JSON                       (pure)
 *   canary_render.h   desired primary Deployment, Services, weights  (pure)
 *   canary_machine.h  the rollout state machine: observed -> decision (pure)
 *   canary_checks.h   Prometheus queries and webhooks                (I/O)
 *   canary_controller.h  informers, API writes, Events               (I/O)
 *
 * Times are Unix milliseconds (int64_t), 0 meaning "not set"; the status writes them
 * as RFC 3339 UTC with milliseconds ("2026-11-25T19:47:06.123Z").
 */
#ifndef OP_CANARY_H
#define OP_CANARY_H

#include "err.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CANARY_API_VERSION "nutshell.io/v1alpha1"
#define CANARY_KIND        "Canary"

/* Kept on every Canary until the target has its replicas back (deletion). */
#define CANARY_FINALIZER "nutshell.io/canary-cleanup"
/* Manual control: `kubectl annotate canary NAME nutshell.io/request=promote` (or abort,
 * retry). The operator acts on it once and removes the annotation. */
#define CANARY_ANN_REQUEST "nutshell.io/request"
/* On the target Deployment: the replica count the operator last wrote to it. A
 * spec.replicas different from this was written by someone else (kubectl apply,
 * kubectl scale) and is taken as the new size of the primary. */
#define CANARY_ANN_SCALED "nutshell.io/scaled-replicas"
/* On the primary Deployment: the revision (template hash) it was copied from. */
#define CANARY_ANN_REVISION "nutshell.io/revision"
/* Pod label selected by the apex Service; its value is the apex Service's name. The
 * primary's pod template carries it; the operator adds it to canary pods that should
 * receive traffic and removes it from pods that should not. */
#define CANARY_LABEL_APEX "nutshell.io/apex"
/* On every object the controller creates (Deployment, Services): the Canary's name. */
#define CANARY_LABEL_CANARY "nutshell.io/canary"

#define CANARY_MAX_STEPS    100
#define CANARY_MAX_METRICS  20
#define CANARY_MAX_WEBHOOKS 20
#define CANARY_REVISION_MAX 64

typedef enum canary_phase {
    CANARY_PHASE_NONE = 0, /* no status yet */
    CANARY_PHASE_INITIALIZING,
    CANARY_PHASE_INITIALIZED,
    CANARY_PHASE_PROGRESSING,
    CANARY_PHASE_PROMOTING,
    CANARY_PHASE_FINALISING,
    CANARY_PHASE_SUCCEEDED,
    CANARY_PHASE_FAILED,
} canary_phase;

/* "Initializing", ...; "" for NONE. */
const char *canary_phase_name(canary_phase p);
/* The phase named `s` (as the CRD spells it); NONE for NULL or unknown. */
canary_phase canary_phase_parse(const char *s);

typedef enum canary_strategy {
    CANARY_STRATEGY_CANARY,
    CANARY_STRATEGY_BLUE_GREEN,
} canary_strategy;

typedef enum canary_hook_type {
    CANARY_HOOK_PRE_ROLLOUT,
    CANARY_HOOK_ROLLOUT,
    CANARY_HOOK_CONFIRM_PROMOTION,
    CANARY_HOOK_POST_ROLLOUT,
    CANARY_HOOK_ROLLBACK,
} canary_hook_type;

/* "pre-rollout", ... as in the CRD. */
const char *canary_hook_type_name(canary_hook_type t);

typedef enum canary_request {
    CANARY_REQUEST_NONE = 0,
    CANARY_REQUEST_PROMOTE,
    CANARY_REQUEST_ABORT,
    CANARY_REQUEST_RETRY,
    CANARY_REQUEST_UNKNOWN, /* the annotation holds something else: refused with an Event */
} canary_request;

typedef struct canary_metric {
    const char *name;
    const char *query; /* "{{interval}}" in it is replaced by interval_text */
    const char *address;
    bool has_min, has_max;
    double min, max;
    char interval_text[33]; /* the metric's interval, else the strategy's */
} canary_metric;

typedef struct canary_webhook {
    const char *name;
    canary_hook_type type;
    const char *url;
    int64_t timeout_ms;    /* default 10 s */
    const cJSON *metadata; /* object of strings, or NULL */
} canary_webhook;

/* A Canary with defaults applied. Strings and JSON point into the Canary object it was
 * parsed from, which must outlive it. */
typedef struct canary_spec {
    const char *name;
    const char *namespace;
    const char *uid;
    int64_t generation;
    bool deleting; /* metadata.deletionTimestamp is set */

    const char *target;  /* spec.targetRef.name */
    const char *service; /* spec.service.name, default the target's name */
    int32_t port;
    const cJSON *target_port; /* number or name; NULL: port */
    const char *port_name;    /* default "http" */

    canary_strategy strategy;
    /* blue-green: n_steps 0 and max_weight 100 (the switch). */
    /* canary: the weights of each step, ascending, the last one == max_weight (a
     * stepWeight of 10 with maxWeight 50 gives 10, 20, 30, 40, 50; with maxWeight 45,
     * 10, 20, 30, 40, 45). */
    int32_t steps[CANARY_MAX_STEPS];
    size_t n_steps;
    int32_t max_weight;
    /* blue-green */
    int32_t iterations;
    bool auto_promote;

    int64_t interval_ms;
    char interval_text[33];
    int32_t threshold;
    canary_metric metrics[CANARY_MAX_METRICS];
    size_t n_metrics;
    canary_webhook webhooks[CANARY_MAX_WEBHOOKS];
    size_t n_webhooks;
    int64_t progress_deadline_ms;
    bool suspend;

    canary_request request;   /* from the CANARY_ANN_REQUEST annotation */
    const char *request_text; /* the annotation's value, for messages; NULL if none */
} canary_spec;

/* Reads the Canary object (as the API server returns it) into *out, applying the CRD's
 * defaults to absent fields (so that a Canary written before a CRD change, or one the
 * schema did not default, behaves the same) and checking what the schema cannot: a
 * field of the wrong type, durations (Go syntax, down to ns, must be > 0), exactly one
 * strategy, exactly one of stepWeight/stepWeights, weights 1..100 ascending and <=
 * maxWeight, thresholdRange min <= max, at most CANARY_MAX_* entries.
 * Returns 0, or -EINVAL with one sentence in err naming the field and the value. */
int canary_spec_parse(const cJSON *canary, canary_spec *out, ns_err *err);

/* Parses a Go duration ("1m", "1.5s", "250ms", "1h30m") into milliseconds, rounding
 * sub-millisecond parts up so that a positive duration is never 0 ms. Returns 0,
 * -EINVAL for bad syntax, -ERANGE for overflow. */
int canary_duration_ms(const char *s, int64_t *out);

/* The status, as the controller keeps it between reconciles. All of the rollout's
 * progress lives here, so a restarted operator resumes where the last one stopped. */
typedef struct canary_status {
    int64_t observed_generation;
    canary_phase phase;
    int32_t canary_weight;  /* in effect: ready canary endpoints / all ready endpoints */
    int32_t desired_weight; /* the step the rollout is at (100 for a blue-green switch) */
    int32_t failed_checks;
    int32_t iterations; /* intervals passed in this rollout */
    char current_revision[CANARY_REVISION_MAX + 1];
    char last_promoted_revision[CANARY_REVISION_MAX + 1];
    int64_t last_transition_ms; /* when phase last changed */
    int64_t last_step_ms;       /* when the last step (or check) was taken */
    char message[1024];
    /* condition Promoted: true when the primary runs the target's current template */
    bool promoted;
    char promoted_reason[64];
    char promoted_message[512];
    int64_t promoted_transition_ms;
} canary_status;

/* Reads .status of a Canary (NULL or absent: all zero). Lenient: a field of the wrong
 * type is taken as absent, since the status is ours and a bad one must not stop us. */
void canary_status_parse(const cJSON *canary, canary_status *out);

/* The status object to write (caller frees), with conditions [Promoted] shaped as
 * metav1.Condition (observedGeneration = st->observed_generation). NULL on ENOMEM. */
cJSON *canary_status_to_json(const canary_status *st);

/* ns_time_parse_ms (timefmt.h), kept under the Canary's name for its callers: RFC 3339
 * into Unix milliseconds, 0 or -EINVAL. */
int canary_time_parse(const char *s, int64_t *out);

#endif

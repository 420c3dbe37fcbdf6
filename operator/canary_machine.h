/* canary_machine.h - the rollout state machine. Pure: given the spec, the last status,
 * what the controller observed and the clock, it returns the next status and what the
 * world should look like. The controller carries the answer out and calls it again on
 * the next event or when the requeue delay passes. Being level-triggered, it must give
 * the same answer when called twice on the same input, and every decision it needs to
 * remember is in the status it returns (so a restarted operator resumes).
 *
 * Checks (webhooks, metrics) are I/O, so the machine asks for them: when it needs a set
 * of checks it returns need_checks with nothing else decided, the controller runs them
 * and calls canary_step again with the results.
 *
 * The lifecycle (canary strategy; blue-green differs as noted):
 *
 *   (none) --> Initializing: the primary is created from the target's template, with
 *       the target's replica count; the Services are created; the target's pods stay in
 *       the apex so an adopted Service keeps serving while the primary starts.
 *   Initializing --primary rolled out--> Initialized: target scaled to 0,
 *       lastPromotedRevision = currentRevision = the target's revision, Promoted True.
 *   Initialized | Succeeded | Failed --target revision differs from lastPromoted (and,
 *       when Failed, from the failed currentRevision; or a retry request)--> Progressing:
 *       currentRevision = new revision, desiredWeight 0, failedChecks 0, iterations 0.
 *   Progressing:
 *     - the target's revision changed again: restart the analysis from zero (Event).
 *     - abort request: roll back.
 *     - the target is scaled to canary_replicas_for_weight(P, first step) (blue-green:
 *       P) and must roll out; until it has, nothing advances; if it has not within
 *       progressDeadline of the last step, roll back ("not ready within ...").
 *     - once ready, at desiredWeight 0: pre-rollout webhooks (need_checks); pass ->
 *       desiredWeight = first step (blue-green: stays 0), lastStep = now; fail -> a
 *       failed check.
 *     - every interval after lastStep: the analysis (built-in: canary pods all ready and
 *       no restarts; metrics; rollout and rollback webhooks). A rollback webhook that
 *       answers 2xx rolls back. A failure: failedChecks + 1, rolled back when it reaches
 *       threshold. A pass: the next step (blue-green: iterations + 1); after a pass at
 *       maxWeight (blue-green: iterations reached, and autoPromote or a promote
 *       request), confirm-promotion webhooks (need_checks) must pass, then Promoting
 *       (blue-green first switches: desiredWeight 100, primary out of the apex).
 *     - promote request: Promoting at once (the canary must be ready).
 *   Promoting: the primary gets the target's template (revision = currentRevision) and
 *       must roll out (within progressDeadline, else roll back); then Finalising.
 *   Finalising: desiredWeight 0, primary back in the apex, target scaled to 0; once the
 *       target has no pods: Succeeded, lastPromotedRevision = currentRevision, Promoted
 *       True, post-rollout webhooks.
 *   Rolling back (any phase of a rollout): desiredWeight 0, primary in the apex, target
 *       scaled to 0, Failed with the reason in message, Promoted False, post-rollout
 *       webhooks.
 *   Suspended: nothing moves (scale and traffic stay as they are), message says so.
 *   The target's spec.replicas differing from CANARY_ANN_SCALED (someone scaled it):
 *       that number becomes the primary's size, and the target is set back.
 */
#ifndef OP_CANARY_MACHINE_H
#define OP_CANARY_MACHINE_H

#include "canary.h"

#include <stdbool.h>
#include <stdint.h>

/* What the controller saw, this reconcile. */
typedef struct canary_observed {
    int64_t now_ms;

    bool target_found;
    const char *target_revision;    /* canary_template_revision of its template */
    int32_t target_spec_replicas;   /* spec.replicas (default 1) */
    int32_t target_scaled;          /* CANARY_ANN_SCALED, -1 if absent or not a number */
    bool target_rolled_out;         /* observedGeneration >= generation, and updated, ready and
                                       available replicas all == spec.replicas, and no extra
                                       (old) replicas left: status.replicas == spec.replicas */
    int32_t target_status_replicas; /* status.replicas: pods that exist (0 = all gone) */

    bool primary_found;
    const char *primary_revision; /* CANARY_ANN_REVISION; NULL if absent */
    int32_t primary_spec_replicas;
    bool primary_rolled_out; /* as target_rolled_out */

    /* canary_pod_stats_of over the target's pods and the primary's pods */
    int32_t canary_pods, canary_ready, canary_ready_in_apex, canary_restarts;
    int32_t primary_ready_in_apex;
} canary_observed;

/* Which checks the machine wants run before it can decide. */
typedef enum canary_checks_kind {
    CANARY_CHECKS_NONE = 0,
    CANARY_CHECKS_PRE_ROLLOUT,       /* pre-rollout webhooks */
    CANARY_CHECKS_ANALYSIS,          /* metrics, rollout webhooks, rollback webhooks */
    CANARY_CHECKS_CONFIRM_PROMOTION, /* confirm-promotion webhooks */
} canary_checks_kind;

/* Results of the checks the machine asked for. */
typedef struct canary_check_results {
    canary_checks_kind kind;
    bool passed;             /* every check of the kind passed (no checks: true) */
    bool rollback_requested; /* ANALYSIS: a rollback webhook answered 2xx */
    char message[512];       /* the first failure, for status and Events */
} canary_check_results;

typedef struct canary_event {
    bool warning;    /* type Warning, else Normal */
    char reason[48]; /* CamelCase: Initialized, AdvanceWeight, CheckFailed, ... */
    char message[512];
} canary_event;

#define CANARY_MAX_EVENTS 4

typedef struct canary_decision {
    canary_checks_kind need_checks; /* set: run these, call again; nothing else is valid */

    canary_status status; /* the status to write (the controller writes it if changed) */

    /* The world to bring about. */
    bool ensure_primary;        /* the primary must exist (create or update) */
    bool primary_from_target;   /* its template is (re)copied from the target's,
                                   with revision status.current_revision */
    int32_t primary_replicas;   /* its spec.replicas */
    int32_t target_replicas;    /* the target's spec.replicas; -1: leave it */
    bool canary_in_apex;        /* the target's pods carry the apex label */
    bool primary_in_apex;       /* the primary's pods carry the apex label */
    bool clear_request;         /* remove the CANARY_ANN_REQUEST annotation */
    canary_hook_type notify[2]; /* webhooks to call and not wait on (post-rollout) */
    size_t n_notify;

    canary_event events[CANARY_MAX_EVENTS];
    size_t n_events;

    int64_t requeue_ms; /* call again after this long even if nothing changes; 0: no */
} canary_decision;

/* The next step. `checks` is NULL on the first call of a reconcile; when the decision
 * has need_checks set, run them and call again with the same inputs and the results.
 * `spec` must have been parsed without error; a missing target leaves everything as it
 * is with a message (requeued). Never fails. */
void canary_step(const canary_spec *spec, const canary_status *prev, const canary_observed *obs,
                 const canary_check_results *checks, canary_decision *out);

/* Deletion: the decision while the Canary is being deleted. The target gets the
 * primary's replica count and its pods the apex label; once it has rolled out (or
 * progressDeadline after the deletion began, with a Warning), `done` is true and the
 * controller points the apex Service at the target's own selector, deletes the
 * primary and the other Services, and removes the finalizer. */
typedef struct canary_finalize_decision {
    int32_t target_replicas;
    bool canary_in_apex;
    bool done;
    canary_event event;
    bool has_event;
    int64_t requeue_ms;
} canary_finalize_decision;

void canary_finalize_step(const canary_spec *spec, const canary_observed *obs, int64_t deletion_ms,
                          canary_finalize_decision *out);

#endif

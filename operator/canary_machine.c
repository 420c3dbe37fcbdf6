/* canary_machine.c - the Canary rollout state machine (contract in canary_machine.h).
 *
 * Shape of a call: the world's facts that do not depend on the phase come first (a
 * missing target, suspension, someone having scaled the target), then a manual request,
 * then the phase's step, and the steps that step makes possible at once. What the world
 * should look like (replicas, apex labels) and the status message are then derived from
 * the resulting status alone, so that a decision fed back with the world unchanged gives
 * the same decision and no new Event (ScaledPrimary aside: it is repeated until the
 * controller's resize is seen, there being no place in the status to remember it).
 *
 * Nothing in the status may depend on the clock except at a step: a message saying "next
 * check in 12s" would change on every call, the controller would write it, the write
 * would trigger a reconcile, and so on for ever.
 */
#include "canary_machine.h"

#include "canary_render.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Readiness is polled this often while waiting for a Deployment to roll out, besides the
 * watch events, so that a missed event cannot stall a rollout. */
#define POLL_MS 5000
/* A missing target is looked for again this often. */
#define TARGET_MISSING_MS 10000
/* The whole message while spec.suspend is true; seeing it in the last status is how a
 * resumed Canary knows that its clock must restart. */
#define SUSPENDED_MESSAGE "suspended"
/* How the message of a decision that refused a request begins. */
#define IGNORED_PREFIX "request \""

/* Reasons of the Promoted condition while Progressing. Besides telling the user why the
 * primary is not promoted yet, they hold the one piece of progress that desiredWeight and
 * iterations cannot (a blue-green canary is at weight 0 both before and after its
 * pre-rollout checks): which gate the rollout stands at. Being in the status, it survives
 * a restart of the operator like the rest. */
#define R_PRE_ROLLOUT   "PreRollout"            /* canary scaling up; pre-rollout checks next */
#define R_ANALYSING     "Analysing"             /* a check every interval */
#define R_CONFIRMING    "PromotionPending"      /* analysis done; confirm-promotion next */
#define R_NOT_CONFIRMED "PromotionNotConfirmed" /* confirm-promotion said no; analysing on */
#define R_WAIT_PROMOTE  "WaitingForPromote"     /* blue-green without autoPromote */
/* Reasons of a Failed rollout. */
#define R_ABORTED     "Aborted"
#define R_CHECKS      "ChecksFailed"
#define R_DEADLINE    "ProgressDeadlineExceeded"
#define R_ROLLBACK_WH "RollbackRequested"

typedef struct machine {
    const canary_spec *spec;
    const canary_status *prev;
    const canary_observed *obs;
    const canary_check_results *checks;
    canary_decision *out;
    canary_status *st; /* &out->status */
    canary_names names;
    const char *revision; /* the target's, never NULL */
    int64_t now;
    int32_t primary;         /* P: the primary's size */
    int32_t adopted_from;    /* the primary's size before the target's was adopted; -1 */
    bool adopted;            /* the target's replicas were someone else's */
    char ignored[400];       /* why a request was refused: the message, once */
    int steps;               /* counts the changes made by steps in this call */
    bool need;               /* out->need_checks is set */
    const char *wait_reason; /* Event announcing the wait the message describes */
    bool wait_warning;
} machine;

/* ---- small helpers ---- */

static bool same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* s, cut to fit: messages are for people, and a revision never comes near the size. */
static void copy_text(char *dst, size_t len, const char *s)
{
    size_t n = s ? strnlen(s, len - 1) : 0;
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static const char *plural(int64_t n)
{
    return n == 1 ? "" : "s";
}

/* Go-like, as users write them in the spec: "10m", "1m30s", "1.5s", "250ms". */
static void format_duration(int64_t ms, char *buf, size_t len)
{
    if (ms < 1000) {
        snprintf(buf, len, "%lldms", (long long)ms);
        return;
    }
    long long h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
    char hs[24] = "", mins[8] = "", ss[32] = "";
    if (h)
        snprintf(hs, sizeof(hs), "%lldh", h);
    if (m)
        snprintf(mins, sizeof(mins), "%lldm", m);
    if (frac) {
        int digits = 3;
        while (frac % 10 == 0) {
            frac /= 10;
            digits--;
        }
        snprintf(ss, sizeof(ss), "%lld.%0*llds", s, digits, frac);
    } else if (s) {
        snprintf(ss, sizeof(ss), "%llds", s);
    }
    snprintf(buf, len, "%s%s%s", hs, mins, ss);
}

static void event(machine *m, bool warning, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void event(machine *m, bool warning, const char *reason, const char *fmt, ...)
{
    canary_decision *d = m->out;
    if (d->n_events >= CANARY_MAX_EVENTS)
        return;
    canary_event *e = &d->events[d->n_events++];
    e->warning = warning;
    copy_text(e->reason, sizeof(e->reason), reason);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

static void set_message(canary_status *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_message(canary_status *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->message, sizeof(st->message), fmt, ap);
    va_end(ap);
}

static bool has_hooks(const canary_spec *spec, canary_hook_type type)
{
    for (size_t i = 0; i < spec->n_webhooks; i++)
        if (spec->webhooks[i].type == type)
            return true;
    return false;
}

static bool has_analysis_checks(const canary_spec *spec)
{
    return spec->n_metrics > 0 || has_hooks(spec, CANARY_HOOK_ROLLOUT) ||
           has_hooks(spec, CANARY_HOOK_ROLLBACK);
}

static bool blue_green(const machine *m)
{
    return m->spec->strategy == CANARY_STRATEGY_BLUE_GREEN;
}

static int64_t interval_ms(const machine *m)
{
    return max64(m->spec->interval_ms, 1);
}

static int32_t first_step(const canary_spec *spec)
{
    return spec->n_steps > 0 ? spec->steps[0] : spec->max_weight;
}

/* ---- the world a status implies ---- */

/* The primary's size: the target's own at initialization (it is what the user asked
 * for), then the primary's, which follows the target's whenever someone scales that. */
static int32_t primary_size(const canary_status *prev, const canary_observed *obs)
{
    int32_t p;
    if (prev->phase <= CANARY_PHASE_INITIALIZING)
        p = obs->target_spec_replicas;
    else if (obs->primary_found)
        p = obs->primary_spec_replicas;
    else
        p = obs->target_scaled < 0 ? obs->target_spec_replicas : 1;
    return p > 0 ? p : 1;
}

/* The target's replicas in status st; -1: leave them as they are. */
static int32_t target_want(const machine *m, const canary_status *st)
{
    switch (st->phase) {
    case CANARY_PHASE_NONE:
    case CANARY_PHASE_INITIALIZING:
        return -1;
    case CANARY_PHASE_PROGRESSING:
    case CANARY_PHASE_PROMOTING:
        if (blue_green(m))
            return canary_replicas_for_weight(m->primary, 100);
        /* Before any weight is given, the canary already has the first step's size, so
         * that giving the weight changes labels only. */
        return canary_replicas_for_weight(m->primary, st->desired_weight > 0 ? st->desired_weight
                                                                             : first_step(m->spec));
    default:
        return 0;
    }
}

static void apex_of(const canary_status *st, bool *canary, bool *primary)
{
    switch (st->phase) {
    case CANARY_PHASE_NONE:
    case CANARY_PHASE_INITIALIZING:
        /* An adopted Service keeps serving from the target until the primary is up. */
        *canary = true;
        *primary = true;
        break;
    case CANARY_PHASE_PROGRESSING:
    case CANARY_PHASE_PROMOTING:
        *canary = st->desired_weight > 0;
        *primary = st->desired_weight < 100;
        break;
    default:
        *canary = false;
        *primary = true;
    }
}

/* The canary has rolled out at the size the current step wants. */
static bool canary_ready(const machine *m)
{
    return m->obs->target_rolled_out && m->obs->target_spec_replicas == target_want(m, m->st);
}

static bool primary_ready(const machine *m)
{
    const canary_observed *o = m->obs;
    return o->primary_found && same(o->primary_revision, m->st->current_revision) &&
           o->primary_spec_replicas == m->primary && o->primary_rolled_out;
}

static bool past_deadline(const machine *m)
{
    return m->now - m->st->last_step_ms >= m->spec->progress_deadline_ms;
}

/* ---- transitions ---- */

static void enter_phase(machine *m, canary_phase phase, bool promoted, const char *reason)
{
    canary_status *st = m->st;
    if (st->phase != phase || st->last_transition_ms == 0)
        st->last_transition_ms = m->now;
    st->phase = phase;
    /* Only the phase entered may ask for the copy (chained steps pass through others). */
    m->out->primary_from_target = false;
    st->promoted = promoted;
    copy_text(st->promoted_reason, sizeof(st->promoted_reason), reason);
    m->steps++;
}

static void set_reason(machine *m, const char *reason)
{
    copy_text(m->st->promoted_reason, sizeof(m->st->promoted_reason), reason);
}

/* Progressing from zero with the target's revision: a new rollout, a retry or a restart. */
static void begin_rollout(machine *m)
{
    canary_status *st = m->st;
    enter_phase(m, CANARY_PHASE_PROGRESSING, false, R_PRE_ROLLOUT);
    copy_text(st->current_revision, sizeof(st->current_revision), m->revision);
    st->desired_weight = 0;
    st->failed_checks = 0;
    st->iterations = 0;
    st->last_step_ms = m->now;
}

static void notify_post_rollout(machine *m)
{
    if (has_hooks(m->spec, CANARY_HOOK_POST_ROLLOUT))
        m->out->notify[m->out->n_notify++] = CANARY_HOOK_POST_ROLLOUT;
}

static void rollback(machine *m, const char *reason, const char *event_reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Any phase of a rollout: all traffic to the primary, the canary to zero, Failed. */
static void rollback(machine *m, const char *reason, const char *event_reason, const char *fmt, ...)
{
    canary_status *st = m->st;
    char cause[400]; /* with the revision, fits promoted_message */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cause, sizeof(cause), fmt, ap);
    va_end(ap);

    enter_phase(m, CANARY_PHASE_FAILED, false, reason);
    st->desired_weight = 0;
    snprintf(st->promoted_message, sizeof(st->promoted_message), "revision %s rolled back: %s",
             st->current_revision, cause);
    notify_post_rollout(m);
    event(m, true, event_reason, "Rolling back %s: %s; all traffic to %s, %s scaled to 0",
          m->spec->target, cause, m->names.primary, m->spec->target);
}

static void enter_promoting(machine *m)
{
    canary_status *st = m->st;
    enter_phase(m, CANARY_PHASE_PROMOTING, false, "Promoting");
    st->last_step_ms = m->now;
    m->out->primary_from_target = true;
    if (blue_green(m)) {
        /* The switch: the canary, at full size, takes all traffic while the primary
         * rolls to the same template. */
        st->desired_weight = 100;
        event(m, false, "Promoting",
              "Switching all traffic of %s to the canary; copying revision %s of %s to %s",
              m->spec->name, st->current_revision, m->spec->target, m->names.primary);
    } else {
        event(m, false, "Promoting", "Copying revision %s of %s to %s", st->current_revision,
              m->spec->target, m->names.primary);
    }
}

static void succeed(machine *m)
{
    canary_status *st = m->st;
    enter_phase(m, CANARY_PHASE_SUCCEEDED, true, "Succeeded");
    copy_text(st->last_promoted_revision, sizeof(st->last_promoted_revision), st->current_revision);
    st->desired_weight = 0;
    notify_post_rollout(m);
    event(m, false, "Succeeded", "Promotion of revision %s of %s completed", st->current_revision,
          m->spec->target);
}

/* The target went back to the promoted revision during the rollout: there is nothing
 * left to roll out, and the primary already runs what the target declares. */
static void cancel_rollout(machine *m)
{
    canary_status *st = m->st;
    event(m, false, "RolloutCancelled",
          "%s is back at the promoted revision %s; rollout of revision %s cancelled",
          m->spec->target, m->revision, st->current_revision);
    enter_phase(m, CANARY_PHASE_SUCCEEDED, true, "Succeeded");
    copy_text(st->current_revision, sizeof(st->current_revision), m->revision);
    st->desired_weight = 0;
}

/* ---- checks ---- */

static const canary_check_results *results(machine *m, canary_checks_kind kind)
{
    if (m->checks && m->checks->kind == kind)
        return m->checks;
    m->out->need_checks = kind;
    m->need = true;
    return NULL;
}

static void failed_check(machine *m, const char *what)
{
    canary_status *st = m->st;
    int32_t threshold = m->spec->threshold > 0 ? m->spec->threshold : 1;
    st->failed_checks++;
    st->last_step_ms = m->now;
    m->steps++;
    event(m, true, "CheckFailed", "Halt %s advancement: %s (failed checks %d of threshold %d)",
          m->spec->name, what, st->failed_checks, threshold);
    if (st->failed_checks >= threshold)
        rollback(m, R_CHECKS, "RolledBack", "failed checks reached the threshold of %d; last: %s",
                 threshold, what);
}

/* The built-in check: every canary pod ready, none restarted. */
static bool builtin_check(const machine *m, char *why, size_t len)
{
    const canary_observed *o = m->obs;
    if (o->canary_pods <= 0)
        snprintf(why, len, "no canary pods");
    else if (o->canary_ready < o->canary_pods)
        snprintf(why, len, "%d of %d canary pods ready", o->canary_ready, o->canary_pods);
    else if (o->canary_restarts > 0)
        snprintf(why, len, "canary containers restarted %d time%s", o->canary_restarts,
                 plural(o->canary_restarts));
    else
        return true;
    return false;
}

/* ---- Progressing ---- */

static void to_promotion(machine *m)
{
    canary_status *st = m->st;
    if (!has_hooks(m->spec, CANARY_HOOK_CONFIRM_PROMOTION)) {
        enter_promoting(m);
        return;
    }
    set_reason(m, R_CONFIRMING);
    event(m, false, "ConfirmingPromotion",
          "Revision %s of %s passed the analysis; asking the confirm-promotion webhooks",
          st->current_revision, m->spec->target);
}

static void analysis_passed(machine *m)
{
    canary_status *st = m->st;
    st->iterations++;
    st->last_step_ms = m->now;
    m->steps++;
    if (same(st->promoted_reason, R_NOT_CONFIRMED)) {
        set_reason(m, R_CONFIRMING); /* ask again, now */
        return;
    }
    if (blue_green(m)) {
        if (same(st->promoted_reason, R_WAIT_PROMOTE) && !m->spec->auto_promote)
            return;
        if (st->iterations < m->spec->iterations) {
            event(m, false, "AdvanceIteration", "Advance %s canary iteration %d/%d", m->spec->name,
                  st->iterations, m->spec->iterations);
            return;
        }
        if (!m->spec->auto_promote) {
            set_reason(m, R_WAIT_PROMOTE);
            event(m, false, "WaitingForPromotion",
                  "Revision %s of %s passed %d iteration%s; waiting for a promote request "
                  "(kubectl nutshell promote %s)",
                  st->current_revision, m->spec->target, st->iterations, plural(st->iterations),
                  m->spec->name);
            return;
        }
        to_promotion(m);
        return;
    }
    for (size_t i = 0; i < m->spec->n_steps; i++) {
        if (m->spec->steps[i] > st->desired_weight) {
            st->desired_weight = m->spec->steps[i];
            event(m, false, "AdvanceWeight", "Advance %s canary weight %d", m->spec->name,
                  st->desired_weight);
            return;
        }
    }
    to_promotion(m);
}

static void pre_rollout(machine *m)
{
    canary_status *st = m->st;
    /* The first attempt is at once; after a failure, once an interval. */
    if (st->failed_checks > 0 && m->now - st->last_step_ms < interval_ms(m))
        return;
    if (has_hooks(m->spec, CANARY_HOOK_PRE_ROLLOUT)) {
        const canary_check_results *r = results(m, CANARY_CHECKS_PRE_ROLLOUT);
        if (!r)
            return;
        if (!r->passed) {
            char what[600];
            snprintf(what, sizeof(what), "pre-rollout check failed: %s", r->message);
            failed_check(m, what);
            return;
        }
    }
    set_reason(m, R_ANALYSING);
    st->last_step_ms = m->now;
    m->steps++;
    if (blue_green(m)) {
        event(m, false, "StartAnalysis",
              "Analysing revision %s of %s: %d iteration%s, one every %s", st->current_revision,
              m->spec->target, m->spec->iterations, plural(m->spec->iterations),
              m->spec->interval_text);
    } else {
        st->desired_weight = first_step(m->spec);
        event(m, false, "AdvanceWeight", "Advance %s canary weight %d", m->spec->name,
              st->desired_weight);
    }
}

static void analysis(machine *m)
{
    char why[600];
    if (!builtin_check(m, why, sizeof(why))) {
        failed_check(m, why);
        return;
    }
    if (has_analysis_checks(m->spec)) {
        const canary_check_results *r = results(m, CANARY_CHECKS_ANALYSIS);
        if (!r)
            return;
        if (r->rollback_requested) {
            rollback(m, R_ROLLBACK_WH, "RolledBack", "a rollback webhook asked for it (%s)",
                     r->message[0] ? r->message : "answered 2xx");
            return;
        }
        if (!r->passed) {
            failed_check(m, r->message[0] ? r->message : "a check failed");
            return;
        }
    }
    analysis_passed(m);
}

static void confirm_promotion(machine *m)
{
    canary_status *st = m->st;
    if (has_hooks(m->spec, CANARY_HOOK_CONFIRM_PROMOTION)) {
        const canary_check_results *r = results(m, CANARY_CHECKS_CONFIRM_PROMOTION);
        if (!r)
            return;
        if (!r->passed) {
            /* A closed gate, not a failure: no deadline, no failed check. The analysis
             * goes on every interval and the gate is asked again after each pass. */
            set_reason(m, R_NOT_CONFIRMED);
            st->last_step_ms = m->now;
            m->steps++;
            event(m, false, "WaitingForPromotion",
                  "Promotion of revision %s of %s not confirmed: %s; asking again after the "
                  "next analysis",
                  st->current_revision, m->spec->target, r->message);
            return;
        }
    }
    enter_promoting(m);
}

static void wait_for_canary(machine *m)
{
    const canary_observed *o = m->obs;
    if (!past_deadline(m))
        return; /* the message and its Event come from describe() */
    char deadline[32];
    format_duration(m->spec->progress_deadline_ms, deadline, sizeof(deadline));
    rollback(m, R_DEADLINE, "RolledBack",
             "canary Deployment %s not ready within %s (%d of %d pods ready)", m->spec->target,
             deadline, o->canary_ready, target_want(m, m->st));
}

static void progressing(machine *m)
{
    canary_status *st = m->st;
    if (!same(m->revision, st->current_revision)) {
        if (same(m->revision, st->last_promoted_revision)) {
            cancel_rollout(m);
            return;
        }
        event(m, false, "RestartAnalysis",
              "New revision %s of %s detected during the rollout of %s, restarting analysis",
              m->revision, m->spec->target, st->current_revision);
        begin_rollout(m);
        return;
    }
    if (!canary_ready(m)) {
        wait_for_canary(m);
        return;
    }
    if (same(st->promoted_reason, R_PRE_ROLLOUT)) {
        pre_rollout(m);
        return;
    }
    if (same(st->promoted_reason, R_CONFIRMING)) {
        confirm_promotion(m);
        return;
    }
    if (m->now - st->last_step_ms < interval_ms(m))
        return;
    analysis(m);
}

/* ---- the other phases ---- */

static void start(machine *m)
{
    canary_status *st = m->st;
    enter_phase(m, CANARY_PHASE_INITIALIZING, false, "Initializing");
    copy_text(st->current_revision, sizeof(st->current_revision), m->revision);
    st->last_step_ms = m->now;
    m->out->primary_from_target =
        !m->obs->primary_found || !same(m->obs->primary_revision, m->revision);
    event(m, false, "Initializing",
          "Creating %s from %s (revision %s, %d replica%s) and Services %s, %s, %s",
          m->names.primary, m->spec->target, m->revision, m->primary, plural(m->primary),
          m->names.apex, m->names.svc_primary, m->names.svc_canary);
}

static void initializing(machine *m)
{
    canary_status *st = m->st;
    if (!same(m->revision, st->current_revision)) {
        /* The target changed before the primary came up: start over from it. */
        copy_text(st->current_revision, sizeof(st->current_revision), m->revision);
        st->last_step_ms = m->now;
    }
    m->out->primary_from_target =
        !m->obs->primary_found || !same(m->obs->primary_revision, st->current_revision);
    if (!primary_ready(m))
        return;
    enter_phase(m, CANARY_PHASE_INITIALIZED, true, "Initialized");
    copy_text(st->last_promoted_revision, sizeof(st->last_promoted_revision), st->current_revision);
    st->desired_weight = 0;
    st->last_step_ms = m->now;
    event(m, false, "Initialized",
          "Initialization done: %s serves revision %s with %d replica%s; %s scaled to 0",
          m->names.primary, st->current_revision, m->primary, plural(m->primary), m->spec->target);
}

/* The target runs the promoted revision but the primary does not (a promotion rolled
 * back half way, or the primary deleted): the target's template is the known good one. */
static bool primary_needs_restore(const machine *m)
{
    const canary_status *st = m->st;
    const canary_observed *o = m->obs;
    return st->last_promoted_revision[0] && same(m->revision, st->last_promoted_revision) &&
           (!o->primary_found || !same(o->primary_revision, st->last_promoted_revision));
}

static void idle(machine *m)
{
    canary_status *st = m->st;
    bool failed_same = st->phase == CANARY_PHASE_FAILED && same(m->revision, st->current_revision);
    if (!same(m->revision, st->last_promoted_revision) && !failed_same) {
        event(m, false, "NewRevision", "New revision %s of %s detected, starting rollout",
              m->revision, m->spec->target);
        begin_rollout(m);
        return;
    }
    if (primary_needs_restore(m)) {
        /* The copy is annotated with current_revision. */
        copy_text(st->current_revision, sizeof(st->current_revision), st->last_promoted_revision);
        m->out->primary_from_target = true;
    }
}

static void promoting(machine *m)
{
    canary_status *st = m->st;
    const canary_observed *o = m->obs;
    bool primary_has_it = o->primary_found && same(o->primary_revision, st->current_revision);
    if (!same(m->revision, st->current_revision)) {
        if (!primary_has_it) {
            if (same(m->revision, st->last_promoted_revision)) {
                cancel_rollout(m);
                return;
            }
            event(m, false, "RestartAnalysis",
                  "New revision %s of %s detected before %s was promoted, restarting analysis",
                  m->revision, m->spec->target, st->current_revision);
            begin_rollout(m);
            return;
        }
        /* The primary already has the analysed template: finish, then roll out the new
         * one. Copying the target now would give the primary an unanalysed template. */
    } else {
        m->out->primary_from_target = true;
    }
    if (primary_ready(m)) {
        enter_phase(m, CANARY_PHASE_FINALISING, false, "Finalising");
        st->desired_weight = 0;
        st->last_step_ms = m->now;
        event(m, false, "Finalising", "%s runs revision %s; all traffic to it, %s scaled to 0",
              m->names.primary, st->current_revision, m->spec->target);
        return;
    }
    if (!past_deadline(m))
        return;
    char deadline[32];
    format_duration(m->spec->progress_deadline_ms, deadline, sizeof(deadline));
    rollback(m, R_DEADLINE, "RolledBack", "%s did not roll out revision %s within %s%s",
             m->names.primary, st->current_revision, deadline,
             primary_has_it ? " (it was already updated: revert or fix the target)" : "");
}

static void finalising(machine *m)
{
    const canary_observed *o = m->obs;
    if (o->target_spec_replicas == 0 && o->target_status_replicas == 0) {
        succeed(m);
        return;
    }
    if (!past_deadline(m))
        return;
    /* The canary's pods are out of the apex: they get no traffic, so lingering ones
     * must not hold the next rollout back. */
    char deadline[32];
    format_duration(m->spec->progress_deadline_ms, deadline, sizeof(deadline));
    succeed(m);
    event(m, true, "CanaryPodsRemain", "%d pod%s of %s still exist %s after finalising began",
          o->target_status_replicas, plural(o->target_status_replicas), m->spec->target, deadline);
}

/* ---- requests ---- */

static void ignore_request(machine *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The refusal becomes the status message for this one decision, where the user looks,
 * and its Event is sent when that message is new: the same request seen again before
 * its removal reached the cache must not warn twice. */
static void ignore_request(machine *m, const char *fmt, ...)
{
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    snprintf(m->ignored, sizeof(m->ignored), IGNORED_PREFIX "%.40s\" ignored: %s",
             m->spec->request_text ? m->spec->request_text : "", why);
}

/* Acts on the request annotation. Returns true if that was this call's step. A request
 * whose effect is already in place is removed without an Event: it is the same request
 * seen again before its removal reached the cache. */
static bool handle_request(machine *m)
{
    canary_status *st = m->st;
    const char *phase =
        st->phase == CANARY_PHASE_NONE ? "not started" : canary_phase_name(st->phase);
    if (m->spec->request == CANARY_REQUEST_NONE)
        return false;
    m->out->clear_request = true;
    switch (m->spec->request) {
    case CANARY_REQUEST_PROMOTE:
        if (st->phase == CANARY_PHASE_PROMOTING || st->phase == CANARY_PHASE_FINALISING)
            return false;
        if (st->phase != CANARY_PHASE_PROGRESSING) {
            ignore_request(m, "there is no rollout to promote (phase %s)", phase);
            return false;
        }
        if (!same(m->revision, st->current_revision)) {
            ignore_request(m, "%s changed to revision %s, whose analysis has not begun",
                           m->spec->target, m->revision);
            return false;
        }
        if (!canary_ready(m)) {
            ignore_request(m, "the canary is not ready (%d of %d pods ready)", m->obs->canary_ready,
                           target_want(m, st));
            return false;
        }
        event(m, false, "ManualPromote",
              "Promotion of revision %s of %s requested; skipping the rest of the analysis",
              st->current_revision, m->spec->target);
        enter_promoting(m);
        return true;
    case CANARY_REQUEST_ABORT:
        if (st->phase == CANARY_PHASE_FAILED && same(st->promoted_reason, R_ABORTED))
            return false;
        if (st->phase != CANARY_PHASE_PROGRESSING && st->phase != CANARY_PHASE_PROMOTING) {
            ignore_request(m, "there is no rollout to abort (phase %s)", phase);
            return false;
        }
        rollback(m, R_ABORTED, "Aborted", "aborted by request");
        return true;
    case CANARY_REQUEST_RETRY:
        if (st->phase == CANARY_PHASE_PROGRESSING && same(st->promoted_reason, R_PRE_ROLLOUT) &&
            st->failed_checks == 0)
            return false;
        if (st->phase != CANARY_PHASE_FAILED) {
            ignore_request(m, "only a failed rollout can be retried (phase %s)", phase);
            return false;
        }
        if (same(m->revision, st->last_promoted_revision)) {
            ignore_request(m, "%s is at the promoted revision %s: there is nothing to retry",
                           m->spec->target, m->revision);
            return false;
        }
        event(m, false, "Retry", "Retrying revision %s of %s by request", m->revision,
              m->spec->target);
        begin_rollout(m);
        return true;
    default:
        ignore_request(m, "unknown request (use promote, abort or retry)");
        return false;
    }
}

/* ---- the status message and the decision's world ---- */

static void describe_progress(machine *m)
{
    canary_status *st = m->st;
    const canary_spec *s = m->spec;
    int32_t threshold = s->threshold > 0 ? s->threshold : 1;
    if (!canary_ready(m)) {
        int32_t want = target_want(m, st);
        set_message(st, "waiting for canary Deployment %s to roll out %d replica%s of revision %s",
                    s->target, want, plural(want), st->current_revision);
        m->wait_reason = "WaitingForCanary";
        return;
    }
    if (same(st->promoted_reason, R_PRE_ROLLOUT)) {
        set_message(st, "revision %s: pre-rollout checks, %d failed of threshold %d",
                    st->current_revision, st->failed_checks, threshold);
    } else if (same(st->promoted_reason, R_CONFIRMING)) {
        set_message(st, "revision %s passed the analysis; asking the confirm-promotion webhooks",
                    st->current_revision);
    } else if (same(st->promoted_reason, R_NOT_CONFIRMED)) {
        set_message(st,
                    "revision %s passed the analysis; waiting for the confirm-promotion webhooks "
                    "(asked after each analysis, every %s; %d failed checks of threshold %d)",
                    st->current_revision, s->interval_text, st->failed_checks, threshold);
    } else if (same(st->promoted_reason, R_WAIT_PROMOTE)) {
        set_message(st,
                    "revision %s passed %d iterations; waiting for a promote request "
                    "(%d failed checks of threshold %d)",
                    st->current_revision, st->iterations, st->failed_checks, threshold);
    } else if (blue_green(m)) {
        set_message(st,
                    "revision %s: iteration %d of %d, every %s; %d failed checks of threshold %d",
                    st->current_revision, st->iterations, s->iterations, s->interval_text,
                    st->failed_checks, threshold);
    } else {
        set_message(st,
                    "revision %s at weight %d of %d, every %s; %d failed checks of threshold %d",
                    st->current_revision, st->desired_weight, s->max_weight, s->interval_text,
                    st->failed_checks, threshold);
    }
}

static void describe(machine *m)
{
    canary_status *st = m->st;
    const canary_observed *o = m->obs;
    if (st->phase >= CANARY_PHASE_INITIALIZED && st->phase != CANARY_PHASE_PROGRESSING &&
        st->phase != CANARY_PHASE_PROMOTING && st->phase != CANARY_PHASE_FINALISING &&
        m->out->primary_from_target) {
        set_message(st, "restoring %s to the promoted revision %s", m->names.primary,
                    st->last_promoted_revision);
        m->wait_reason = "RestorePrimary";
        m->wait_warning = true;
        return;
    }
    switch (st->phase) {
    case CANARY_PHASE_INITIALIZING:
        set_message(st, "waiting for %s to roll out %d replica%s of revision %s", m->names.primary,
                    m->primary, plural(m->primary), st->current_revision);
        if (past_deadline(m)) {
            char deadline[32];
            format_duration(m->spec->progress_deadline_ms, deadline, sizeof(deadline));
            set_message(
                st, "%s has not rolled out %d replica%s of revision %s within %s; %s keeps serving",
                m->names.primary, m->primary, plural(m->primary), st->current_revision, deadline,
                m->spec->target);
            m->wait_reason = "PrimaryNotReady";
            m->wait_warning = true;
        }
        break;
    case CANARY_PHASE_INITIALIZED:
        set_message(st, "all traffic to %s (revision %s)", m->names.primary,
                    st->last_promoted_revision);
        break;
    case CANARY_PHASE_PROGRESSING:
        describe_progress(m);
        break;
    case CANARY_PHASE_PROMOTING:
        set_message(st, "promoting revision %s: waiting for %s to roll out %d replica%s",
                    st->current_revision, m->names.primary, m->primary, plural(m->primary));
        break;
    case CANARY_PHASE_FINALISING:
        set_message(st, "finalising revision %s: waiting for the %d pod%s of %s to go",
                    st->current_revision, o->target_status_replicas,
                    plural(o->target_status_replicas), m->spec->target);
        break;
    case CANARY_PHASE_SUCCEEDED:
        set_message(st, "revision %s promoted: all traffic to %s", st->last_promoted_revision,
                    m->names.primary);
        break;
    case CANARY_PHASE_FAILED:
        copy_text(st->message, sizeof(st->message), st->promoted_message);
        break;
    default:
        break;
    }
}

static int64_t poll_ms(const machine *m)
{
    int64_t left = m->st->last_step_ms + m->spec->progress_deadline_ms - m->now;
    int64_t r = min64(interval_ms(m), POLL_MS);
    if (left > 0)
        r = min64(r, left);
    return max64(r, 1);
}

static int64_t requeue_ms(const machine *m)
{
    const canary_status *st = m->st;
    switch (st->phase) {
    case CANARY_PHASE_INITIALIZING:
    case CANARY_PHASE_PROMOTING:
    case CANARY_PHASE_FINALISING:
        return poll_ms(m);
    case CANARY_PHASE_PROGRESSING:
        if (!canary_ready(m))
            return poll_ms(m);
        if (same(st->promoted_reason, R_CONFIRMING) ||
            (same(st->promoted_reason, R_PRE_ROLLOUT) && st->failed_checks == 0))
            return 1;
        return max64(st->last_step_ms + interval_ms(m) - m->now, 1);
    default:
        return 0;
    }
}

static void finish_status(machine *m)
{
    canary_status *st = m->st;
    st->observed_generation = m->spec->generation;
    st->canary_weight =
        canary_effective_weight(m->obs->canary_ready_in_apex, m->obs->primary_ready_in_apex);
    if (st->promoted != m->prev->promoted || m->prev->promoted_transition_ms == 0)
        st->promoted_transition_ms = m->now;
}

/* Everything the controller carries out follows from the new status. */
static void finish(machine *m)
{
    canary_status *st = m->st;
    canary_decision *d = m->out;
    describe(m);
    if (st->phase != CANARY_PHASE_FAILED)
        copy_text(st->promoted_message, sizeof(st->promoted_message), st->message);
    finish_status(m);
    /* A wait is announced when the world brought it about: not after a step (whose own
     * Event says it), a resize (which the user did) or a refusal (which has its own). */
    bool after_refusal = strncmp(m->prev->message, IGNORED_PREFIX, strlen(IGNORED_PREFIX)) == 0;
    if (m->steps == 0 && !m->adopted && !m->ignored[0] && !after_refusal && m->wait_reason &&
        strcmp(m->prev->message, st->message) != 0)
        event(m, m->wait_warning, m->wait_reason, "%s", st->message);
    if (m->ignored[0]) {
        copy_text(st->message, sizeof(st->message), m->ignored);
        if (strcmp(m->prev->message, st->message) != 0) {
            char text[sizeof(m->ignored)];
            copy_text(text, sizeof(text), m->ignored);
            text[0] = 'R'; /* "Request ..." as an Event's sentence */
            event(m, true, "RequestIgnored", "%s", text);
        }
    }

    d->ensure_primary = true;
    d->primary_replicas = m->primary;
    d->target_replicas = target_want(m, st);
    apex_of(st, &d->canary_in_apex, &d->primary_in_apex);
    d->requeue_ms = requeue_ms(m);
    if (m->adopted_from >= 0)
        event(m, false, "ScaledPrimary",
              "%s was scaled to %d replica%s: %s resized from %d to %d, %s set back to %d",
              m->spec->target, m->primary, plural(m->primary), m->names.primary, m->adopted_from,
              m->primary, m->spec->target, d->target_replicas);
}

/* Someone scaled the target (kubectl scale, or an apply carrying replicas): that is the
 * size wanted for the application, so it becomes the primary's, and the target goes back
 * to what the rollout needs. The annotation written with our own replica count tells the
 * two apart, so this cannot repeat once the controller's write is seen. */
static void adopt_scale(machine *m)
{
    const canary_observed *o = m->obs;
    int32_t spec = o->target_spec_replicas;
    if (spec <= 0)
        return;
    if (o->target_scaled >= 0 ? spec == o->target_scaled : spec == target_want(m, m->prev))
        return;
    int32_t was = m->primary;
    m->primary = spec;
    m->adopted = true;
    /* Already resized (the target's write not seen yet): no second Event. */
    if (!o->primary_found || o->primary_spec_replicas != spec)
        m->adopted_from = was;
}

/* A decision that leaves the scale alone and keeps the traffic as the phase has it. */
static void hold(machine *m)
{
    canary_decision *d = m->out;
    const canary_observed *o = m->obs;
    finish_status(m);
    if (m->st->phase == CANARY_PHASE_FAILED && !m->st->promoted_message[0])
        copy_text(m->st->promoted_message, sizeof(m->st->promoted_message), m->st->message);
    d->ensure_primary = o->primary_found || (o->target_found && m->st->phase != CANARY_PHASE_NONE);
    d->primary_replicas = o->primary_found ? o->primary_spec_replicas : m->primary;
    d->target_replicas = -1;
    apex_of(m->st, &d->canary_in_apex, &d->primary_in_apex);
}

static void target_missing(machine *m)
{
    canary_status *st = m->st;
    if (st->phase == CANARY_PHASE_NONE) {
        enter_phase(m, CANARY_PHASE_INITIALIZING, false, "Initializing");
        st->last_step_ms = m->now;
    }
    set_message(st, "target Deployment \"%s\" not found", m->spec->target);
    if (st->phase != CANARY_PHASE_FAILED)
        copy_text(st->promoted_message, sizeof(st->promoted_message), st->message);
    if (strcmp(m->prev->message, st->message) != 0)
        event(m, true, "TargetNotFound", "%s", st->message);
    hold(m);
    m->out->requeue_ms = TARGET_MISSING_MS;
}

static void suspended(machine *m)
{
    copy_text(m->st->message, sizeof(m->st->message), SUSPENDED_MESSAGE);
    if (strcmp(m->prev->message, SUSPENDED_MESSAGE) != 0)
        event(m, false, "Suspended",
              "Rollout of %s suspended: nothing changes until spec.suspend is false",
              m->spec->target);
    hold(m);
}

static void phase_step(machine *m)
{
    switch (m->st->phase) {
    case CANARY_PHASE_NONE:
        start(m);
        break;
    case CANARY_PHASE_INITIALIZING:
        initializing(m);
        break;
    case CANARY_PHASE_PROGRESSING:
        progressing(m);
        break;
    case CANARY_PHASE_PROMOTING:
        promoting(m);
        break;
    case CANARY_PHASE_FINALISING:
        finalising(m);
        break;
    default:
        idle(m);
    }
}

void canary_step(const canary_spec *spec, const canary_status *prev, const canary_observed *obs,
                 const canary_check_results *checks, canary_decision *out)
{
    memset(out, 0, sizeof(*out));
    out->status = *prev;
    out->target_replicas = -1;
    machine m = {.spec = spec,
                 .prev = prev,
                 .obs = obs,
                 .checks = checks,
                 .out = out,
                 .st = &out->status,
                 .revision = obs->target_revision ? obs->target_revision : "",
                 .now = obs->now_ms,
                 .primary = primary_size(prev, obs),
                 .adopted_from = -1};
    canary_names_init(spec, &m.names);

    if (!obs->target_found) {
        target_missing(&m);
        return;
    }
    if (spec->suspend) {
        suspended(&m);
        return;
    }
    if (prev->phase > CANARY_PHASE_INITIALIZING)
        adopt_scale(&m);

    if (strcmp(prev->message, SUSPENDED_MESSAGE) == 0 && prev->phase != CANARY_PHASE_NONE) {
        /* Time spent suspended counts neither toward the deadline nor the interval. */
        m.st->last_step_ms = m.now;
        m.steps++;
        event(&m, false, "Resumed", "Rollout of %s resumed", spec->target);
    }
    if (!handle_request(&m))
        phase_step(&m);
    /* A step that makes the next one possible at once (the rollout finished while a
     * newer revision was waiting) takes that one too, so that the decision is one the
     * same world cannot move further. Not past a notification, whose webhooks must see
     * the status they are about, nor into checks, which belong to the next call. */
    int before = 0;
    for (int i = 0; i < 3 && m.steps > before && !m.need && out->n_notify == 0; i++) {
        before = m.steps;
        phase_step(&m);
        if (m.need) {
            m.need = false;
            out->need_checks = CANARY_CHECKS_NONE;
        }
    }
    if (m.need) {
        canary_checks_kind kind = out->need_checks;
        memset(out, 0, sizeof(*out));
        out->need_checks = kind;
        out->status = *prev;
        out->target_replicas = -1;
        return;
    }
    finish(&m);
}

/* ---- deletion ---- */

void canary_finalize_step(const canary_spec *spec, const canary_observed *obs, int64_t deletion_ms,
                          canary_finalize_decision *out)
{
    memset(out, 0, sizeof(*out));
    int32_t want = obs->primary_found ? obs->primary_spec_replicas : obs->target_spec_replicas;
    if (want < 1)
        want = 1;
    out->target_replicas = want;
    out->canary_in_apex = true;
    if (!obs->target_found) {
        out->target_replicas = -1;
        out->done = true;
        return;
    }
    if (obs->target_rolled_out && obs->target_spec_replicas == want) {
        out->done = true;
        return;
    }
    int64_t left = deletion_ms + spec->progress_deadline_ms - obs->now_ms;
    if (left <= 0) {
        char deadline[32];
        format_duration(spec->progress_deadline_ms, deadline, sizeof(deadline));
        out->done = true;
        out->has_event = true;
        out->event.warning = true;
        copy_text(out->event.reason, sizeof(out->event.reason), "TargetNotReady");
        snprintf(out->event.message, sizeof(out->event.message),
                 "%s has not rolled out %d replica%s %s after the Canary's deletion began; "
                 "removing the primary anyway",
                 spec->target, want, plural(want), deadline);
        return;
    }
    out->requeue_ms = max64(min64(left, POLL_MS), 1);
}

/* test_canary_machine.c - the rollout state machine walked through whole lifecycles.
 *
 * A small simulated world stands in for the cluster: it carries out each decision the
 * way the controller would (scales, copies the template to the primary, labels pods) and
 * lets Deployments roll out when told to (settle). Every step is checked for the
 * machine's promises besides the scenario's own expectations: the same input gives the
 * same decision, the decision fed back with the world unchanged takes no new step, the
 * status survives its JSON form (an operator restart), weights are the ones in effect,
 * transition times move only on transitions, and the primary never gets a template under
 * another revision's name. */
#include "canary_machine.h"
#include "canary_render.h"
#include "suites.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0     1764100000000LL
#define REV_A  "aaaa000000000001"
#define REV_B  "bbbb000000000002"
#define REV_C  "cccc000000000003"
#define MINUTE 60000

/* ---- the simulated world ---- */

typedef struct deployment {
    bool found;
    char revision[CANARY_REVISION_MAX + 1];    /* target: its template; primary: annotation */
    char template_of[CANARY_REVISION_MAX + 1]; /* primary: the template it really has */
    int32_t spec, scaled;                      /* scaled: the annotation, -1 if none */
    int32_t pods, ready, restarts;
    bool pending; /* spec or template changed since the last settle */
    bool broken;  /* its pods never become ready */
    bool stuck;   /* its pods never go away */
    bool in_apex;
} deployment;

typedef struct sim {
    canary_spec spec;
    canary_status st;
    deployment target, primary;
    int64_t now;
    canary_decision d;   /* the last decision carried out */
    canary_observed obs; /* what it was made from */
    /* outcomes of the checks the machine asks for, by kind */
    bool pass[4];
    bool rollback_requested;
    int runs[4];
    bool scaled_event_ok; /* ScaledPrimary may repeat while the world is unchanged */
    bool restart_always;  /* a new operator, reading the status back, at every step */
    canary_event log[128];
    size_t n_log, seen;
} sim;

static void settle(sim *s)
{
    deployment *ds[] = {&s->target, &s->primary};
    for (size_t i = 0; i < 2; i++) {
        deployment *d = ds[i];
        if (!d->found)
            continue;
        if (!(d->stuck && d->spec < d->pods))
            d->pods = d->spec;
        d->ready = d->broken ? 0 : d->pods;
        d->pending = false;
    }
}

static canary_observed observe(const sim *s)
{
    const deployment *t = &s->target, *p = &s->primary;
    canary_observed o = {
        .now_ms = s->now,
        .target_found = t->found,
        .target_revision = t->found ? t->revision : NULL,
        .target_spec_replicas = t->spec,
        .target_scaled = t->scaled,
        .target_rolled_out = t->found && !t->pending && t->ready == t->spec && t->pods == t->spec,
        .target_status_replicas = t->pods,
        .primary_found = p->found,
        .primary_revision = p->found && p->revision[0] ? p->revision : NULL,
        .primary_spec_replicas = p->spec,
        .primary_rolled_out = p->found && !p->pending && p->ready == p->spec && p->pods == p->spec,
        .canary_pods = t->pods,
        .canary_ready = t->ready,
        .canary_ready_in_apex = t->in_apex ? t->ready : 0,
        .canary_restarts = t->restarts,
        .primary_ready_in_apex = p->in_apex ? p->ready : 0,
    };
    return o;
}

/* What the controller does with a decision. */
static void carry_out(sim *s, const canary_decision *d)
{
    deployment *t = &s->target, *p = &s->primary;
    if (t->found && d->target_replicas >= 0) {
        if (t->spec != d->target_replicas)
            t->pending = true;
        t->spec = d->target_replicas;
        t->scaled = d->target_replicas;
    }
    if (d->ensure_primary) {
        if (!p->found) {
            /* The controller can only create the primary from the target's template. */
            CU_ASSERT_TRUE(d->primary_from_target);
            *p = (deployment){.found = true,
                              .scaled = -1,
                              .pending = true,
                              .broken = p->broken,
                              .stuck = p->stuck};
        }
        if (d->primary_from_target) {
            if (strcmp(p->template_of, t->revision) != 0)
                p->pending = true;
            snprintf(p->template_of, sizeof(p->template_of), "%s", t->revision);
            snprintf(p->revision, sizeof(p->revision), "%s", d->status.current_revision);
        }
        if (p->spec != d->primary_replicas)
            p->pending = true;
        p->spec = d->primary_replicas;
    }
    t->in_apex = d->canary_in_apex;
    p->in_apex = d->primary_in_apex;
    if (d->clear_request) {
        s->spec.request = CANARY_REQUEST_NONE;
        s->spec.request_text = NULL;
    }
}

static void sim_init(sim *s, canary_strategy strategy)
{
    memset(s, 0, sizeof(*s));
    canary_spec *c = &s->spec;
    c->name = "reviews";
    c->namespace = "shop";
    c->uid = "0b6c3b9e-1111-2222-3333-444455556666";
    c->generation = 3;
    c->target = "reviews";
    c->service = "reviews";
    c->port = 9080;
    c->port_name = "http";
    c->strategy = strategy;
    if (strategy == CANARY_STRATEGY_CANARY) {
        for (int i = 0; i < 5; i++)
            c->steps[i] = 10 * (i + 1);
        c->n_steps = 5;
        c->max_weight = 50;
    } else {
        c->iterations = 3;
        c->auto_promote = true;
    }
    c->interval_ms = MINUTE;
    snprintf(c->interval_text, sizeof(c->interval_text), "1m");
    c->threshold = 2;
    c->progress_deadline_ms = 10 * MINUTE;
    s->target = (deployment){.found = true, .revision = REV_A, .spec = 3, .scaled = -1};
    settle(s);
    s->now = T0;
    for (int k = 0; k < 4; k++)
        s->pass[k] = true;
}

static void add_webhook(sim *s, const char *name, canary_hook_type type)
{
    canary_webhook *w = &s->spec.webhooks[s->spec.n_webhooks++];
    *w = (canary_webhook){
        .name = name, .type = type, .url = "http://hooks.test/", .timeout_ms = 1000};
}

static void request(sim *s, canary_request r, const char *text)
{
    s->spec.request = r;
    s->spec.request_text = text;
}

/* ---- the promises every step keeps ---- */

static bool status_eq(const canary_status *a, const canary_status *b)
{
    return a->observed_generation == b->observed_generation && a->phase == b->phase &&
           a->canary_weight == b->canary_weight && a->desired_weight == b->desired_weight &&
           a->failed_checks == b->failed_checks && a->iterations == b->iterations &&
           strcmp(a->current_revision, b->current_revision) == 0 &&
           strcmp(a->last_promoted_revision, b->last_promoted_revision) == 0 &&
           a->last_transition_ms == b->last_transition_ms && a->last_step_ms == b->last_step_ms &&
           strcmp(a->message, b->message) == 0 && a->promoted == b->promoted &&
           strcmp(a->promoted_reason, b->promoted_reason) == 0 &&
           strcmp(a->promoted_message, b->promoted_message) == 0 &&
           a->promoted_transition_ms == b->promoted_transition_ms;
}

static bool world_eq(const canary_decision *a, const canary_decision *b)
{
    return a->need_checks == b->need_checks && a->ensure_primary == b->ensure_primary &&
           a->primary_from_target == b->primary_from_target &&
           a->primary_replicas == b->primary_replicas && a->target_replicas == b->target_replicas &&
           a->canary_in_apex == b->canary_in_apex && a->primary_in_apex == b->primary_in_apex &&
           a->clear_request == b->clear_request && a->n_notify == b->n_notify &&
           a->n_events == b->n_events && a->requeue_ms == b->requeue_ms &&
           memcmp(a->notify, b->notify, sizeof(a->notify)) == 0 &&
           memcmp(a->events, b->events, sizeof(a->events)) == 0;
}

/* One reconcile: ask, run the checks asked for, ask again; twice each, same answer. */
static void decide(sim *s, const canary_status *prev, const canary_observed *o,
                   canary_decision *out)
{
    canary_decision again;
    canary_step(&s->spec, prev, o, NULL, out);
    canary_step(&s->spec, prev, o, NULL, &again);
    CU_ASSERT_EQUAL(memcmp(out, &again, sizeof(*out)), 0);
    if (out->need_checks == CANARY_CHECKS_NONE)
        return;
    canary_checks_kind kind = out->need_checks;
    canary_check_results r = {.kind = kind, .passed = s->pass[kind]};
    r.rollback_requested = kind == CANARY_CHECKS_ANALYSIS && s->rollback_requested;
    if (!r.passed || r.rollback_requested)
        snprintf(r.message, sizeof(r.message), "webhook gate answered 503");
    if (prev == &s->st)
        s->runs[kind]++;
    canary_step(&s->spec, prev, o, &r, out);
    canary_step(&s->spec, prev, o, &r, &again);
    CU_ASSERT_EQUAL(memcmp(out, &again, sizeof(*out)), 0);
    NS_ASSERT_INT_EQ(out->need_checks, CANARY_CHECKS_NONE);
}

/* The status as the API server would give it back to a restarted operator. */
static void roundtrip(const canary_status *st, canary_status *out)
{
    cJSON *canary = cJSON_CreateObject();
    cJSON *status = canary_status_to_json(st);
    CU_ASSERT_PTR_NOT_NULL_FATAL(status);
    char *text = cJSON_PrintUnformatted(status);
    cJSON_AddItemToObject(canary, "status", cJSON_Parse(text));
    canary_status_parse(canary, out);
    free(text);
    cJSON_Delete(status);
    cJSON_Delete(canary);
}

static void check_promises(sim *s, const canary_observed *o, const canary_decision *d)
{
    const canary_status *prev = &s->st, *st = &d->status;
    CU_ASSERT_TRUE(d->n_events <= CANARY_MAX_EVENTS);
    CU_ASSERT_TRUE(d->canary_in_apex || d->primary_in_apex); /* never an empty apex */
    NS_ASSERT_INT_EQ(st->observed_generation, s->spec.generation);
    NS_ASSERT_INT_EQ(st->canary_weight,
                     canary_effective_weight(o->canary_ready_in_apex, o->primary_ready_in_apex));
    if (st->phase != prev->phase)
        NS_ASSERT_INT_EQ(st->last_transition_ms, s->now);
    else if (prev->last_transition_ms)
        NS_ASSERT_INT_EQ(st->last_transition_ms, prev->last_transition_ms);
    if (st->promoted != prev->promoted || !prev->promoted_transition_ms)
        NS_ASSERT_INT_EQ(st->promoted_transition_ms, s->now);
    else
        NS_ASSERT_INT_EQ(st->promoted_transition_ms, prev->promoted_transition_ms);
    CU_ASSERT_TRUE(d->requeue_ms >= 0);
    /* A rollout in flight is never left without a wake-up. */
    bool moving = st->phase == CANARY_PHASE_INITIALIZING || st->phase == CANARY_PHASE_PROGRESSING ||
                  st->phase == CANARY_PHASE_PROMOTING || st->phase == CANARY_PHASE_FINALISING;
    if (moving && !s->spec.suspend)
        CU_ASSERT_TRUE(d->requeue_ms > 0);
    for (size_t i = 0; i < d->n_events; i++) {
        CU_ASSERT_TRUE(d->events[i].reason[0] != '\0');
        CU_ASSERT_TRUE(d->events[i].message[0] != '\0');
    }

    /* Fed back with the world unchanged: nothing new happens. */
    canary_decision f;
    canary_step(&s->spec, st, o, NULL, &f);
    if (f.need_checks == CANARY_CHECKS_NONE) {
        CU_ASSERT_TRUE(status_eq(&f.status, st));
        size_t events = 0;
        for (size_t i = 0; i < f.n_events; i++)
            if (!(s->scaled_event_ok && strcmp(f.events[i].reason, "ScaledPrimary") == 0))
                events++;
        if (events)
            fprintf(stderr, "\n  fed back: new event %s: %s\n", f.events[0].reason,
                    f.events[0].message);
        NS_ASSERT_INT_EQ(events, 0);
        NS_ASSERT_INT_EQ(f.target_replicas, d->target_replicas);
        NS_ASSERT_INT_EQ(f.primary_replicas, d->primary_replicas);
        CU_ASSERT_EQUAL(f.canary_in_apex, d->canary_in_apex);
        CU_ASSERT_EQUAL(f.primary_in_apex, d->primary_in_apex);
        NS_ASSERT_INT_EQ(f.n_notify, 0);
    }

    /* A restarted operator, reading the last status back, decides the same. */
    canary_status back;
    roundtrip(prev, &back);
    CU_ASSERT_TRUE(status_eq(&back, prev) || prev->phase == CANARY_PHASE_NONE);
    if (prev->phase != CANARY_PHASE_NONE) {
        canary_decision r;
        decide(s, &back, o, &r);
        CU_ASSERT_TRUE(status_eq(&r.status, st));
        CU_ASSERT_TRUE(world_eq(&r, d));
    }
}

/* One reconcile, carried out. */
static void tick(sim *s)
{
    canary_observed o = observe(s);
    canary_decision d;
    decide(s, &s->st, &o, &d);
    check_promises(s, &o, &d);
    for (size_t i = 0; i < d.n_events && s->n_log < 128; i++)
        s->log[s->n_log++] = d.events[i];
    s->obs = o;
    carry_out(s, &d);
    s->st = d.status;
    s->d = d;
    if (s->restart_always)
        roundtrip(&d.status, &s->st);
    /* The primary is never given a template under another revision's name. */
    if (s->primary.found && s->primary.template_of[0])
        NS_ASSERT_STR_EQ(s->primary.template_of, s->primary.revision);
}

/* The world catches up, time passes as the machine asked, and it is called again. */
static void cycle(sim *s)
{
    settle(s);
    s->now += s->d.requeue_ms > 0 ? s->d.requeue_ms : 1000;
    tick(s);
}

/* The world catches up and the machine looks again a moment later. */
static void nudge(sim *s)
{
    settle(s);
    s->now += 1;
    tick(s);
}

/* Cycles until a step (an Event) is taken; false if none within max cycles. */
static bool cycle_to_event(sim *s, int max)
{
    for (int i = 0; i < max; i++) {
        size_t before = s->n_log;
        cycle(s);
        if (s->n_log > before)
            return true;
    }
    return false;
}

static const canary_event *last_event(const sim *s)
{
    static const canary_event none = {.reason = "(none)", .message = ""};
    return s->n_log ? &s->log[s->n_log - 1] : &none;
}

/* The Events since the last call are exactly `want` (NULL-terminated), in order. */
static void expect_events_(sim *s, const char *const *want, int line)
{
    size_t n = 0;
    while (want[n])
        n++;
    bool ok = s->n_log - s->seen == n;
    for (size_t i = 0; ok && i < n; i++)
        ok = strcmp(s->log[s->seen + i].reason, want[i]) == 0;
    if (!ok) {
        fprintf(stderr, "\n  line %d: events expected:", line);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %s", want[i]);
        fprintf(stderr, "\n  got:");
        for (size_t i = s->seen; i < s->n_log; i++)
            fprintf(stderr, " %s (%s)", s->log[i].reason, s->log[i].message);
        fprintf(stderr, "\n");
    }
    CU_ASSERT_TRUE(ok);
    s->seen = s->n_log;
}

#define EXPECT_EVENTS(s, ...)                                                                      \
    expect_events_((s), (const char *const[]){__VA_ARGS__, NULL}, __LINE__)
#define EXPECT_NO_EVENTS(s) expect_events_((s), (const char *const[]){NULL}, __LINE__)

static bool contains(const char *hay, const char *needle)
{
    bool ok = strstr(hay, needle) != NULL;
    if (!ok)
        fprintf(stderr, "\n  \"%s\" lacks \"%s\"\n", hay, needle);
    return ok;
}

/* Up to Initialized with P = 3, then a new revision pushed (kubectl set image). */
static void to_initialized(sim *s)
{
    tick(s);
    NS_ASSERT_INT_EQ(s->st.phase, CANARY_PHASE_INITIALIZING);
    CU_ASSERT_TRUE(cycle_to_event(s, 5));
    NS_ASSERT_INT_EQ(s->st.phase, CANARY_PHASE_INITIALIZED);
    EXPECT_EVENTS(s, "Initializing", "Initialized");
    cycle(s); /* the target scales to 0 */
    EXPECT_NO_EVENTS(s);
}

static void set_image(sim *s, const char *rev)
{
    snprintf(s->target.revision, sizeof(s->target.revision), "%s", rev);
    s->target.pending = true;
}

/* From Initialized: a new revision, up to the canary being at `weight`. */
static void to_weight(sim *s, int32_t weight)
{
    set_image(s, REV_B);
    s->now += 1000;
    tick(s);
    NS_ASSERT_INT_EQ(s->st.phase, CANARY_PHASE_PROGRESSING);
    while (s->st.desired_weight < weight && s->st.phase == CANARY_PHASE_PROGRESSING)
        if (!cycle_to_event(s, 30))
            break;
    NS_ASSERT_INT_EQ(s->st.desired_weight, weight);
    s->seen = s->n_log;
}

/* ---- lifecycles ---- */

static void test_canary_succeeds(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);

    tick(&s);
    const canary_status *st = &s.st;
    NS_ASSERT_INT_EQ(st->phase, CANARY_PHASE_INITIALIZING);
    NS_ASSERT_STR_EQ(st->current_revision, REV_A);
    NS_ASSERT_INT_EQ(st->last_transition_ms, T0);
    CU_ASSERT_FALSE(st->promoted);
    NS_ASSERT_STR_EQ(st->promoted_reason, "Initializing");
    CU_ASSERT_TRUE(contains(st->message, "reviews-primary"));
    CU_ASSERT_TRUE(s.d.ensure_primary && s.d.primary_from_target);
    NS_ASSERT_INT_EQ(s.d.primary_replicas, 3);
    NS_ASSERT_INT_EQ(s.d.target_replicas, -1); /* the target keeps serving */
    CU_ASSERT_TRUE(s.d.canary_in_apex && s.d.primary_in_apex);
    NS_ASSERT_INT_EQ(s.d.requeue_ms, 5000);
    EXPECT_EVENTS(&s, "Initializing");

    cycle(&s);
    NS_ASSERT_INT_EQ(st->phase, CANARY_PHASE_INITIALIZED);
    NS_ASSERT_STR_EQ(st->last_promoted_revision, REV_A);
    CU_ASSERT_TRUE(st->promoted);
    NS_ASSERT_INT_EQ(st->promoted_transition_ms, T0 + 5000);
    NS_ASSERT_INT_EQ(s.d.target_replicas, 0);
    CU_ASSERT_FALSE(s.d.canary_in_apex);
    CU_ASSERT_FALSE(s.d.primary_from_target);
    NS_ASSERT_INT_EQ(s.d.requeue_ms, 0);
    EXPECT_EVENTS(&s, "Initialized");
    cycle(&s);
    EXPECT_NO_EVENTS(&s);
    NS_ASSERT_INT_EQ(st->canary_weight, 0);

    set_image(&s, REV_B);
    s.now += 1000;
    tick(&s);
    EXPECT_EVENTS(&s, "NewRevision");
    NS_ASSERT_STR_EQ(s.log[s.n_log - 1].message,
                     "New revision " REV_B " of reviews detected, starting rollout");
    int64_t started = s.now;
    NS_ASSERT_INT_EQ(st->phase, CANARY_PHASE_PROGRESSING);
    NS_ASSERT_INT_EQ(st->last_transition_ms, started);
    NS_ASSERT_STR_EQ(st->current_revision, REV_B);
    NS_ASSERT_STR_EQ(st->last_promoted_revision, REV_A);
    NS_ASSERT_INT_EQ(st->desired_weight, 0);
    CU_ASSERT_FALSE(st->promoted);
    NS_ASSERT_INT_EQ(st->promoted_transition_ms, started);
    NS_ASSERT_INT_EQ(s.d.target_replicas, canary_replicas_for_weight(3, 10));
    NS_ASSERT_INT_EQ(s.d.target_replicas, 1);
    CU_ASSERT_FALSE(s.d.canary_in_apex); /* no weight before pre-rollout */
    CU_ASSERT_FALSE(s.d.primary_from_target);
    CU_ASSERT_TRUE(contains(st->message, "waiting for canary Deployment reviews"));
    NS_ASSERT_INT_EQ(s.d.requeue_ms, 5000);

    int64_t step_at = 0;
    for (int32_t w = 10; w <= 50; w += 10) {
        CU_ASSERT_TRUE(cycle_to_event(&s, 30));
        EXPECT_EVENTS(&s, "AdvanceWeight");
        char want[64];
        snprintf(want, sizeof(want), "Advance reviews canary weight %d", w);
        NS_ASSERT_STR_EQ(last_event(&s)->message, want);
        NS_ASSERT_INT_EQ(st->desired_weight, w);
        NS_ASSERT_INT_EQ(st->iterations, w / 10 - 1);
        NS_ASSERT_INT_EQ(st->failed_checks, 0);
        NS_ASSERT_INT_EQ(st->last_step_ms, s.now);
        NS_ASSERT_INT_EQ(st->last_transition_ms, started);
        NS_ASSERT_INT_EQ(s.d.target_replicas, canary_replicas_for_weight(3, w));
        CU_ASSERT_TRUE(s.d.canary_in_apex && s.d.primary_in_apex);
        /* Each check one interval after the last, to the millisecond. */
        if (step_at)
            NS_ASSERT_INT_EQ(s.now, step_at + MINUTE);
        step_at = s.now;
        /* The weight written is the one in effect once the pods are there. */
        nudge(&s);
        NS_ASSERT_INT_EQ(st->canary_weight,
                         canary_effective_weight(canary_replicas_for_weight(3, w), 3));
    }
    NS_ASSERT_INT_EQ(st->canary_weight, 50);

    CU_ASSERT_TRUE(cycle_to_event(&s, 30));
    EXPECT_EVENTS(&s, "Promoting");
    NS_ASSERT_INT_EQ(s.now, step_at + MINUTE);
    NS_ASSERT_INT_EQ(st->phase, CANARY_PHASE_PROMOTING);
    NS_ASSERT_INT_EQ(st->iterations, 5);
    NS_ASSERT_INT_EQ(st->desired_weight, 50); /* traffic stays while the primary rolls */
    CU_ASSERT_TRUE(s.d.primary_from_target);
    NS_ASSERT_INT_EQ(s.d.primary_replicas, 3);
    NS_ASSERT_INT_EQ(s.d.target_replicas, canary_replicas_for_weight(3, 50));
    NS_ASSERT_STR_EQ(s.primary.template_of, REV_B);

    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    EXPECT_EVENTS(&s, "Finalising");
    NS_ASSERT_INT_EQ(st->phase, CANARY_PHASE_FINALISING);
    NS_ASSERT_INT_EQ(st->desired_weight, 0);
    NS_ASSERT_INT_EQ(s.d.target_replicas, 0);
    CU_ASSERT_FALSE(s.d.canary_in_apex);
    CU_ASSERT_TRUE(s.d.primary_in_apex);
    CU_ASSERT_FALSE(s.d.primary_from_target);

    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    EXPECT_EVENTS(&s, "Succeeded");
    NS_ASSERT_INT_EQ(st->phase, CANARY_PHASE_SUCCEEDED);
    NS_ASSERT_STR_EQ(st->last_promoted_revision, REV_B);
    NS_ASSERT_STR_EQ(st->current_revision, REV_B);
    CU_ASSERT_TRUE(st->promoted);
    NS_ASSERT_STR_EQ(st->promoted_reason, "Succeeded");
    NS_ASSERT_INT_EQ(st->promoted_transition_ms, s.now);
    NS_ASSERT_INT_EQ(st->last_transition_ms, s.now);
    NS_ASSERT_INT_EQ(st->canary_weight, 0);
    NS_ASSERT_INT_EQ(s.d.n_notify, 0); /* no post-rollout webhooks in this spec */
    NS_ASSERT_INT_EQ(s.d.requeue_ms, 0);
    CU_ASSERT_TRUE(contains(st->message, REV_B));
    NS_ASSERT_INT_EQ(s.runs[CANARY_CHECKS_ANALYSIS], 0); /* nothing to run but built-ins */

    /* At rest: nothing more happens, whatever the time. */
    s.now += 24 * 60 * MINUTE;
    cycle(&s);
    EXPECT_NO_EVENTS(&s);
    NS_ASSERT_INT_EQ(st->phase, CANARY_PHASE_SUCCEEDED);
}

static void test_canary_with_every_check(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);
    add_webhook(&s, "load", CANARY_HOOK_PRE_ROLLOUT);
    add_webhook(&s, "acceptance", CANARY_HOOK_ROLLOUT);
    add_webhook(&s, "gate", CANARY_HOOK_CONFIRM_PROMOTION);
    add_webhook(&s, "notify", CANARY_HOOK_POST_ROLLOUT);
    to_initialized(&s);
    to_weight(&s, 50);
    NS_ASSERT_INT_EQ(s.runs[CANARY_CHECKS_PRE_ROLLOUT], 1);
    NS_ASSERT_INT_EQ(s.runs[CANARY_CHECKS_ANALYSIS], 4);
    CU_ASSERT_TRUE(cycle_to_event(&s, 30));
    EXPECT_EVENTS(&s, "ConfirmingPromotion");
    NS_ASSERT_INT_EQ(s.d.requeue_ms, 1); /* the gate is asked at once */
    CU_ASSERT_TRUE(cycle_to_event(&s, 3));
    EXPECT_EVENTS(&s, "Promoting");
    NS_ASSERT_INT_EQ(s.runs[CANARY_CHECKS_CONFIRM_PROMOTION], 1);
    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    EXPECT_EVENTS(&s, "Finalising", "Succeeded");
    NS_ASSERT_INT_EQ(s.d.n_notify, 1);
    NS_ASSERT_INT_EQ(s.d.notify[0], CANARY_HOOK_POST_ROLLOUT);
}

static void test_blue_green_succeeds(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_BLUE_GREEN);
    to_initialized(&s);
    set_image(&s, REV_B);
    tick(&s);
    EXPECT_EVENTS(&s, "NewRevision");
    NS_ASSERT_INT_EQ(s.d.target_replicas, 3); /* the new version in full, behind -canary */
    CU_ASSERT_FALSE(s.d.canary_in_apex);
    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    EXPECT_EVENTS(&s, "StartAnalysis");
    NS_ASSERT_INT_EQ(s.st.desired_weight, 0);
    CU_ASSERT_FALSE(s.d.canary_in_apex);
    NS_ASSERT_INT_EQ(s.d.requeue_ms, MINUTE);
    for (int i = 1; i <= 2; i++) {
        CU_ASSERT_TRUE(cycle_to_event(&s, 5));
        EXPECT_EVENTS(&s, "AdvanceIteration");
        char want[64];
        snprintf(want, sizeof(want), "Advance reviews canary iteration %d/3", i);
        NS_ASSERT_STR_EQ(last_event(&s)->message, want);
        NS_ASSERT_INT_EQ(s.st.iterations, i);
        NS_ASSERT_INT_EQ(s.st.desired_weight, 0);
        CU_ASSERT_FALSE(s.d.canary_in_apex);
        NS_ASSERT_INT_EQ(s.st.canary_weight, 0);
    }
    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    EXPECT_EVENTS(&s, "Promoting");
    /* The switch: all traffic to the canary while the primary rolls. */
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_PROMOTING);
    NS_ASSERT_INT_EQ(s.st.iterations, 3);
    NS_ASSERT_INT_EQ(s.st.desired_weight, 100);
    CU_ASSERT_TRUE(s.d.canary_in_apex);
    CU_ASSERT_FALSE(s.d.primary_in_apex);
    NS_ASSERT_INT_EQ(s.d.target_replicas, 3);
    CU_ASSERT_TRUE(s.d.primary_from_target);
    settle(&s);
    s.now += 1;
    tick(&s);
    EXPECT_EVENTS(&s, "Finalising");
    NS_ASSERT_INT_EQ(s.obs.canary_ready_in_apex, 3);
    NS_ASSERT_INT_EQ(s.obs.primary_ready_in_apex, 0);
    NS_ASSERT_INT_EQ(s.st.canary_weight, 100);
    CU_ASSERT_TRUE(s.d.primary_in_apex);
    CU_ASSERT_FALSE(s.d.canary_in_apex);
    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    EXPECT_EVENTS(&s, "Succeeded");
    NS_ASSERT_STR_EQ(s.st.last_promoted_revision, REV_B);
    NS_ASSERT_STR_EQ(s.primary.template_of, REV_B);
}

static void test_blue_green_waits_for_promote(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_BLUE_GREEN);
    s.spec.auto_promote = false;
    to_initialized(&s);
    set_image(&s, REV_B);
    tick(&s);
    for (int i = 0; i < 4; i++)
        CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    EXPECT_EVENTS(&s, "NewRevision", "StartAnalysis", "AdvanceIteration", "AdvanceIteration",
                  "WaitingForPromotion");
    CU_ASSERT_TRUE(contains(last_event(&s)->message, "kubectl nutshell promote reviews"));
    NS_ASSERT_STR_EQ(s.st.promoted_reason, "WaitingForPromote");
    /* No deadline while waiting for a person; the analysis goes on every interval. */
    int64_t waiting_since = s.now;
    while (s.now < waiting_since + 3 * s.spec.progress_deadline_ms)
        cycle(&s);
    EXPECT_NO_EVENTS(&s);
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_PROGRESSING);
    CU_ASSERT_TRUE(s.st.iterations >= 3 + 29);
    CU_ASSERT_FALSE(s.d.canary_in_apex);
    /* ... and can still fail: a restarting canary is rolled back. */
    sim failing = s;
    failing.target.restarts = 2;
    CU_ASSERT_TRUE(cycle_to_event(&failing, 3));
    CU_ASSERT_TRUE(cycle_to_event(&failing, 3));
    EXPECT_EVENTS(&failing, "CheckFailed", "CheckFailed", "RolledBack");
    CU_ASSERT_TRUE(contains(failing.st.message, "restarted 2 times"));

    request(&s, CANARY_REQUEST_PROMOTE, "promote");
    settle(&s);
    s.now += 10;
    tick(&s);
    EXPECT_EVENTS(&s, "ManualPromote", "Promoting");
    CU_ASSERT_TRUE(s.d.clear_request);
    NS_ASSERT_INT_EQ(s.st.desired_weight, 100);
    CU_ASSERT_FALSE(s.d.primary_in_apex);
    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    EXPECT_EVENTS(&s, "Finalising", "Succeeded");
}

static void test_rollback_by_failed_checks(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);
    add_webhook(&s, "notify", CANARY_HOOK_POST_ROLLOUT);
    add_webhook(&s, "acceptance", CANARY_HOOK_ROLLOUT);
    to_initialized(&s);
    to_weight(&s, 20);
    s.pass[CANARY_CHECKS_ANALYSIS] = false;
    int64_t t = s.st.last_step_ms;
    CU_ASSERT_TRUE(cycle_to_event(&s, 30));
    EXPECT_EVENTS(&s, "CheckFailed");
    NS_ASSERT_INT_EQ(s.now, t + MINUTE);
    NS_ASSERT_STR_EQ(last_event(&s)->message, "Halt reviews advancement: webhook gate answered "
                                              "503 (failed checks 1 of threshold 2)");
    CU_ASSERT_TRUE(last_event(&s)->warning);
    NS_ASSERT_INT_EQ(s.st.failed_checks, 1);
    NS_ASSERT_INT_EQ(s.st.desired_weight, 20); /* held, not advanced */
    NS_ASSERT_INT_EQ(s.st.last_step_ms, s.now);
    NS_ASSERT_INT_EQ(s.d.requeue_ms, MINUTE);
    CU_ASSERT_TRUE(contains(s.st.message, "1 failed checks of threshold 2"));

    CU_ASSERT_TRUE(cycle_to_event(&s, 30));
    EXPECT_EVENTS(&s, "CheckFailed", "RolledBack");
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_FAILED);
    NS_ASSERT_INT_EQ(s.st.failed_checks, 2);
    NS_ASSERT_INT_EQ(s.st.desired_weight, 0);
    NS_ASSERT_STR_EQ(s.st.current_revision, REV_B);
    NS_ASSERT_STR_EQ(s.st.last_promoted_revision, REV_A);
    CU_ASSERT_FALSE(s.st.promoted);
    NS_ASSERT_STR_EQ(s.st.promoted_reason, "ChecksFailed");
    CU_ASSERT_TRUE(contains(s.st.message, "threshold of 2"));
    CU_ASSERT_TRUE(contains(s.st.message, "webhook gate answered 503"));
    NS_ASSERT_INT_EQ(s.d.target_replicas, 0);
    CU_ASSERT_FALSE(s.d.canary_in_apex);
    CU_ASSERT_TRUE(s.d.primary_in_apex);
    NS_ASSERT_INT_EQ(s.d.n_notify, 1);
    NS_ASSERT_INT_EQ(s.d.requeue_ms, 0);
    /* The primary was never touched. */
    NS_ASSERT_STR_EQ(s.primary.template_of, REV_A);
    NS_ASSERT_STR_EQ(s.primary.revision, REV_A);

    /* Failed stays failed for the same revision; a fix starts a new rollout. */
    s.now += 60 * MINUTE;
    cycle(&s);
    EXPECT_NO_EVENTS(&s);
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_FAILED);
    set_image(&s, REV_C);
    cycle(&s);
    EXPECT_EVENTS(&s, "NewRevision");
    NS_ASSERT_STR_EQ(s.st.current_revision, REV_C);
    NS_ASSERT_INT_EQ(s.st.failed_checks, 0);
}

static void test_rollback_by_builtin_and_webhooks(void)
{
    /* a rollback webhook answering 2xx rolls back at once */
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);
    add_webhook(&s, "stop", CANARY_HOOK_ROLLBACK);
    to_initialized(&s);
    to_weight(&s, 10);
    s.rollback_requested = true;
    CU_ASSERT_TRUE(cycle_to_event(&s, 30));
    EXPECT_EVENTS(&s, "RolledBack");
    NS_ASSERT_STR_EQ(s.st.promoted_reason, "RollbackRequested");
    NS_ASSERT_INT_EQ(s.st.failed_checks, 0);

    /* failing pre-rollout webhooks count as failed checks, retried every interval */
    sim_init(&s, CANARY_STRATEGY_CANARY);
    add_webhook(&s, "load", CANARY_HOOK_PRE_ROLLOUT);
    s.pass[CANARY_CHECKS_PRE_ROLLOUT] = false;
    to_initialized(&s);
    set_image(&s, REV_B);
    cycle(&s);
    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    EXPECT_EVENTS(&s, "NewRevision", "CheckFailed");
    NS_ASSERT_INT_EQ(s.st.desired_weight, 0);
    CU_ASSERT_FALSE(s.d.canary_in_apex);
    CU_ASSERT_TRUE(contains(last_event(&s)->message, "pre-rollout check failed"));
    int64_t t = s.now;
    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    NS_ASSERT_INT_EQ(s.now, t + MINUTE);
    EXPECT_EVENTS(&s, "CheckFailed", "RolledBack");
    NS_ASSERT_INT_EQ(s.runs[CANARY_CHECKS_PRE_ROLLOUT], 2);

    /* the built-in check: restarts fail a check without asking for other checks */
    sim_init(&s, CANARY_STRATEGY_CANARY);
    s.spec.metrics[0] = (canary_metric){.name = "errors", .query = "x", .address = "http://p"};
    s.spec.n_metrics = 1;
    to_initialized(&s);
    to_weight(&s, 10);
    int runs = s.runs[CANARY_CHECKS_ANALYSIS];
    s.target.restarts = 1;
    CU_ASSERT_TRUE(cycle_to_event(&s, 30));
    EXPECT_EVENTS(&s, "CheckFailed");
    CU_ASSERT_TRUE(contains(last_event(&s)->message, "canary containers restarted 1 time"));
    NS_ASSERT_INT_EQ(s.runs[CANARY_CHECKS_ANALYSIS], runs);
}

static void test_rollback_by_deadline(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);
    to_initialized(&s);
    s.target.broken = true; /* the new version's pods never become ready */
    set_image(&s, REV_B);
    s.now += 1000;
    tick(&s);
    int64_t started = s.now;
    EXPECT_EVENTS(&s, "NewRevision");
    while (s.st.phase == CANARY_PHASE_PROGRESSING && s.now < started + 20 * MINUTE) {
        CU_ASSERT_TRUE(s.d.requeue_ms > 0 && s.d.requeue_ms <= 5000);
        cycle(&s);
    }
    /* Rolled back exactly at the deadline, with the numbers in the message; the wait
     * itself announced nothing new (the rollout's Event said it already). */
    EXPECT_EVENTS(&s, "RolledBack");
    NS_ASSERT_INT_EQ(s.now, started + 10 * MINUTE);
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_FAILED);
    NS_ASSERT_STR_EQ(s.st.promoted_reason, "ProgressDeadlineExceeded");
    NS_ASSERT_STR_EQ(s.st.message, "revision " REV_B " rolled back: canary Deployment reviews "
                                   "not ready within 10m (0 of 1 pods ready)");
    NS_ASSERT_INT_EQ(s.d.target_replicas, 0);
    NS_ASSERT_STR_EQ(s.primary.template_of, REV_A);

    /* A canary going unready after a step: one WaitingForCanary, then the deadline
     * counts from that step. */
    sim_init(&s, CANARY_STRATEGY_CANARY);
    to_initialized(&s);
    to_weight(&s, 20);
    int64_t step = s.st.last_step_ms;
    s.target.broken = true;
    cycle(&s);
    EXPECT_EVENTS(&s, "WaitingForCanary");
    NS_ASSERT_INT_EQ(s.d.requeue_ms, 5000);
    while (s.st.phase == CANARY_PHASE_PROGRESSING && s.now < step + 20 * MINUTE)
        cycle(&s);
    EXPECT_EVENTS(&s, "RolledBack");
    NS_ASSERT_INT_EQ(s.now, step + 10 * MINUTE);
}

static void test_revision_change_restarts(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);
    to_initialized(&s);
    to_weight(&s, 30);
    int64_t transition = s.st.last_transition_ms;
    set_image(&s, REV_C);
    s.now += 1000;
    tick(&s);
    EXPECT_EVENTS(&s, "RestartAnalysis");
    CU_ASSERT_TRUE(contains(last_event(&s)->message, REV_C));
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_PROGRESSING);
    NS_ASSERT_INT_EQ(s.st.last_transition_ms, transition); /* no phase change */
    NS_ASSERT_STR_EQ(s.st.current_revision, REV_C);
    NS_ASSERT_INT_EQ(s.st.desired_weight, 0);
    NS_ASSERT_INT_EQ(s.st.iterations, 0);
    NS_ASSERT_INT_EQ(s.st.failed_checks, 0);
    NS_ASSERT_INT_EQ(s.st.last_step_ms, s.now);
    CU_ASSERT_FALSE(s.d.canary_in_apex);
    NS_ASSERT_INT_EQ(s.d.target_replicas, canary_replicas_for_weight(3, 10));
    for (int i = 0; i < 8; i++)
        CU_ASSERT_TRUE(cycle_to_event(&s, 30));
    EXPECT_EVENTS(&s, "AdvanceWeight", "AdvanceWeight", "AdvanceWeight", "AdvanceWeight",
                  "AdvanceWeight", "Promoting", "Finalising", "Succeeded");
    NS_ASSERT_STR_EQ(s.st.last_promoted_revision, REV_C);
    NS_ASSERT_STR_EQ(s.primary.template_of, REV_C);

    /* Back to the promoted revision mid-rollout: nothing left to roll out. */
    sim_init(&s, CANARY_STRATEGY_CANARY);
    to_initialized(&s);
    to_weight(&s, 20);
    set_image(&s, REV_A);
    cycle(&s);
    EXPECT_EVENTS(&s, "RolloutCancelled");
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_SUCCEEDED);
    NS_ASSERT_STR_EQ(s.st.current_revision, REV_A);
    CU_ASSERT_TRUE(s.st.promoted);
    NS_ASSERT_INT_EQ(s.d.target_replicas, 0);
    NS_ASSERT_STR_EQ(s.primary.template_of, REV_A);
}

static void test_revision_change_while_promoting(void)
{
    /* The primary already has B: B is finished first, then C rolls out. */
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);
    to_initialized(&s);
    to_weight(&s, 50);
    CU_ASSERT_TRUE(cycle_to_event(&s, 30));
    EXPECT_EVENTS(&s, "Promoting");
    set_image(&s, REV_C);
    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    CU_ASSERT_FALSE(s.d.primary_from_target);
    CU_ASSERT_TRUE(cycle_to_event(&s, 5)); /* done, and the next rollout begins at once */
    EXPECT_EVENTS(&s, "Finalising", "Succeeded", "NewRevision");
    NS_ASSERT_STR_EQ(s.st.last_promoted_revision, REV_B);
    NS_ASSERT_STR_EQ(s.st.current_revision, REV_C);
    NS_ASSERT_STR_EQ(s.primary.template_of, REV_B);

    /* The primary not yet updated: C restarts the analysis, nothing of B promoted. */
    sim_init(&s, CANARY_STRATEGY_CANARY);
    to_initialized(&s);
    to_weight(&s, 50);
    settle(&s);
    s.now += MINUTE;
    canary_observed o = observe(&s);
    canary_decision d;
    canary_step(&s.spec, &s.st, &o, NULL, &d);
    NS_ASSERT_INT_EQ(d.status.phase, CANARY_PHASE_PROMOTING);
    s.st = d.status; /* the controller died before writing the primary */
    set_image(&s, REV_C);
    tick(&s);
    EXPECT_EVENTS(&s, "RestartAnalysis");
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_PROGRESSING);
    NS_ASSERT_STR_EQ(s.st.current_revision, REV_C);
    NS_ASSERT_STR_EQ(s.primary.template_of, REV_A);

    /* ... or reverted to the promoted revision: nothing to promote any more. */
    s.st = d.status;
    set_image(&s, REV_A);
    tick(&s);
    EXPECT_EVENTS(&s, "RolloutCancelled");
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_SUCCEEDED);
    NS_ASSERT_INT_EQ(s.d.target_replicas, 0);
    CU_ASSERT_FALSE(s.d.primary_from_target);
}

static void test_abort_and_retry(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);
    add_webhook(&s, "notify", CANARY_HOOK_POST_ROLLOUT);
    to_initialized(&s);
    to_weight(&s, 20);
    request(&s, CANARY_REQUEST_ABORT, "abort");
    s.now += 1000;
    tick(&s); /* the fed-back check sees the annotation still there: no second Event */
    EXPECT_EVENTS(&s, "Aborted");
    CU_ASSERT_TRUE(last_event(&s)->warning);
    CU_ASSERT_TRUE(s.d.clear_request);
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_FAILED);
    NS_ASSERT_STR_EQ(s.st.promoted_reason, "Aborted");
    CU_ASSERT_TRUE(contains(s.st.message, "aborted by request"));
    NS_ASSERT_INT_EQ(s.d.target_replicas, 0);
    NS_ASSERT_INT_EQ(s.d.n_notify, 1);

    /* Nothing to promote any more: refused, with the reason where the user looks. */
    request(&s, CANARY_REQUEST_PROMOTE, "promote");
    cycle(&s);
    EXPECT_EVENTS(&s, "RequestIgnored");
    CU_ASSERT_TRUE(last_event(&s)->warning);
    CU_ASSERT_TRUE(s.d.clear_request);
    NS_ASSERT_STR_EQ(last_event(&s)->message,
                     "Request \"promote\" ignored: there is no rollout to promote (phase Failed)");
    NS_ASSERT_STR_EQ(s.st.message,
                     "request \"promote\" ignored: there is no rollout to promote (phase Failed)");
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_FAILED);
    cycle(&s); /* the annotation gone: the Failed message is back */
    EXPECT_NO_EVENTS(&s);
    CU_ASSERT_TRUE(contains(s.st.message, "aborted by request"));

    /* Retry the failed revision without touching the spec. */
    request(&s, CANARY_REQUEST_RETRY, "retry");
    cycle(&s);
    EXPECT_EVENTS(&s, "Retry");
    CU_ASSERT_TRUE(s.d.clear_request);
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_PROGRESSING);
    NS_ASSERT_STR_EQ(s.st.current_revision, REV_B);
    NS_ASSERT_INT_EQ(s.st.failed_checks, 0);
    NS_ASSERT_INT_EQ(s.st.desired_weight, 0);
    for (int i = 0; i < 8; i++)
        CU_ASSERT_TRUE(cycle_to_event(&s, 30));
    EXPECT_EVENTS(&s, "AdvanceWeight", "AdvanceWeight", "AdvanceWeight", "AdvanceWeight",
                  "AdvanceWeight", "Promoting", "Finalising", "Succeeded");

    /* Requests that do not apply, or that nobody knows. */
    request(&s, CANARY_REQUEST_RETRY, "retry");
    cycle(&s);
    EXPECT_EVENTS(&s, "RequestIgnored");
    request(&s, CANARY_REQUEST_UNKNOWN, "rollback-now");
    cycle(&s);
    EXPECT_EVENTS(&s, "RequestIgnored");
    NS_ASSERT_STR_EQ(
        last_event(&s)->message,
        "Request \"rollback-now\" ignored: unknown request (use promote, abort or retry)");
    CU_ASSERT_TRUE(s.d.clear_request);
    request(&s, CANARY_REQUEST_ABORT, "abort");
    cycle(&s);
    EXPECT_EVENTS(&s, "RequestIgnored");
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_SUCCEEDED);
}

static void test_promote_request(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);
    add_webhook(&s, "gate", CANARY_HOOK_CONFIRM_PROMOTION);
    to_initialized(&s);
    set_image(&s, REV_B);
    tick(&s);
    /* Not ready yet: refused, with the numbers. */
    request(&s, CANARY_REQUEST_PROMOTE, "promote");
    s.now += 1;
    tick(&s);
    EXPECT_EVENTS(&s, "NewRevision", "RequestIgnored");
    CU_ASSERT_TRUE(
        contains(last_event(&s)->message, "the canary is not ready (0 of 1 pods ready)"));
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_PROGRESSING);

    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    EXPECT_EVENTS(&s, "AdvanceWeight");
    request(&s, CANARY_REQUEST_PROMOTE, "promote");
    s.now += 1000;
    tick(&s);
    EXPECT_EVENTS(&s, "ManualPromote", "Promoting");
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_PROMOTING);
    NS_ASSERT_INT_EQ(s.st.desired_weight, 10); /* the remaining steps skipped */
    CU_ASSERT_TRUE(s.d.primary_from_target);
    NS_ASSERT_INT_EQ(s.runs[CANARY_CHECKS_CONFIRM_PROMOTION], 0);
    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    EXPECT_EVENTS(&s, "Finalising", "Succeeded");
    NS_ASSERT_STR_EQ(s.st.last_promoted_revision, REV_B);
}

static void test_confirm_promotion_waits_without_deadline(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);
    add_webhook(&s, "gate", CANARY_HOOK_CONFIRM_PROMOTION);
    s.pass[CANARY_CHECKS_CONFIRM_PROMOTION] = false;
    to_initialized(&s);
    to_weight(&s, 50);
    CU_ASSERT_TRUE(cycle_to_event(&s, 30));
    CU_ASSERT_TRUE(cycle_to_event(&s, 3));
    EXPECT_EVENTS(&s, "ConfirmingPromotion", "WaitingForPromotion");
    CU_ASSERT_TRUE(contains(last_event(&s)->message, "webhook gate answered 503"));
    CU_ASSERT_FALSE(last_event(&s)->warning);
    NS_ASSERT_STR_EQ(s.st.promoted_reason, "PromotionNotConfirmed");
    NS_ASSERT_INT_EQ(s.d.requeue_ms, MINUTE);
    int64_t since = s.now;
    int32_t iterations = s.st.iterations;
    while (s.now < since + 3 * s.spec.progress_deadline_ms)
        cycle(&s);
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_PROGRESSING);
    NS_ASSERT_INT_EQ(s.st.failed_checks, 0);
    NS_ASSERT_INT_EQ(s.st.desired_weight, 50);
    CU_ASSERT_TRUE(s.st.iterations >= iterations + 29);            /* analysed every interval */
    CU_ASSERT_TRUE(s.runs[CANARY_CHECKS_CONFIRM_PROMOTION] >= 30); /* and asked after each */
    for (size_t i = s.seen; i < s.n_log; i++)
        NS_ASSERT_STR_EQ(s.log[i].reason, "WaitingForPromotion");
    s.seen = s.n_log;

    for (int i = 0; i < 3 && strcmp(s.st.promoted_reason, "PromotionNotConfirmed") != 0; i++)
        cycle(&s);
    NS_ASSERT_STR_EQ(s.st.promoted_reason, "PromotionNotConfirmed");
    s.seen = s.n_log;
    /* Opened: asked right after the next passing analysis. */
    s.pass[CANARY_CHECKS_CONFIRM_PROMOTION] = true;
    int64_t last = s.st.last_step_ms;
    CU_ASSERT_TRUE(cycle_to_event(&s, 60));
    EXPECT_EVENTS(&s, "Promoting");
    NS_ASSERT_INT_EQ(s.now, last + MINUTE + 1);
}

static void test_scaled_by_user(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);
    to_initialized(&s);
    s.scaled_event_ok = true;

    /* kubectl scale deploy/reviews --replicas 5, at rest */
    s.target.spec = 5;
    s.target.pending = true;
    cycle(&s);
    EXPECT_EVENTS(&s, "ScaledPrimary");
    NS_ASSERT_STR_EQ(last_event(&s)->message,
                     "reviews was scaled to 5 replicas: reviews-primary resized from 3 to 5, "
                     "reviews set back to 0");
    NS_ASSERT_INT_EQ(s.d.primary_replicas, 5);
    NS_ASSERT_INT_EQ(s.d.target_replicas, 0);
    cycle(&s);
    cycle(&s);
    EXPECT_NO_EVENTS(&s); /* no fight: our own write is recognised */
    NS_ASSERT_INT_EQ(s.primary.spec, 5);

    /* kubectl apply of a new version whose manifest says replicas: 5, mid-rollout: the
     * rollout keeps the canary's size and does not announce a resize it need not do. */
    to_weight(&s, 20);
    s.target.spec = 5;
    s.target.pending = true;
    cycle(&s);
    EXPECT_NO_EVENTS(&s);
    NS_ASSERT_INT_EQ(s.d.target_replicas, canary_replicas_for_weight(5, 20));
    NS_ASSERT_INT_EQ(s.d.primary_replicas, 5);

    /* scaled up mid-rollout: the canary follows the new primary size */
    s.target.spec = 9;
    s.target.pending = true;
    cycle(&s);
    EXPECT_EVENTS(&s, "ScaledPrimary");
    NS_ASSERT_INT_EQ(s.d.primary_replicas, 9);
    NS_ASSERT_INT_EQ(s.d.target_replicas, canary_replicas_for_weight(9, 20));
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_PROGRESSING);
    for (int i = 0; i < 5; i++)
        CU_ASSERT_TRUE(cycle_to_event(&s, 30));
    EXPECT_EVENTS(&s, "AdvanceWeight", "AdvanceWeight", "AdvanceWeight", "Promoting", "Finalising");
    NS_ASSERT_INT_EQ(s.primary.spec, 9);

    /* no annotation yet (our write lost): differing from what we want is the user's */
    sim_init(&s, CANARY_STRATEGY_CANARY);
    to_initialized(&s);
    s.scaled_event_ok = true;
    s.target.scaled = -1;
    s.target.spec = 4;
    cycle(&s);
    EXPECT_EVENTS(&s, "ScaledPrimary");
    NS_ASSERT_INT_EQ(s.d.primary_replicas, 4);
    NS_ASSERT_INT_EQ(s.d.target_replicas, 0);
    cycle(&s);
    EXPECT_NO_EVENTS(&s);
}

static void test_suspend(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);
    to_initialized(&s);
    to_weight(&s, 20);
    canary_status before = s.st;
    s.spec.suspend = true;
    s.target.broken = true; /* would roll back if anything moved */
    s.now += 1000;
    tick(&s);
    EXPECT_EVENTS(&s, "Suspended");
    NS_ASSERT_STR_EQ(s.st.message, "suspended");
    NS_ASSERT_INT_EQ(s.d.target_replicas, -1);
    NS_ASSERT_INT_EQ(s.d.primary_replicas, 3);
    CU_ASSERT_TRUE(s.d.canary_in_apex && s.d.primary_in_apex);
    NS_ASSERT_INT_EQ(s.d.requeue_ms, 0);
    for (int i = 0; i < 10; i++) {
        settle(&s);
        s.now += 5 * MINUTE;
        tick(&s);
    }
    EXPECT_NO_EVENTS(&s);
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_PROGRESSING);
    NS_ASSERT_INT_EQ(s.st.desired_weight, before.desired_weight);
    NS_ASSERT_INT_EQ(s.st.last_step_ms, before.last_step_ms);
    NS_ASSERT_INT_EQ(s.st.last_transition_ms, before.last_transition_ms);

    /* Resumed: the clock restarts, so the hour suspended is not a missed deadline. */
    s.spec.suspend = false;
    s.target.broken = false;
    s.now += 1000;
    tick(&s);
    EXPECT_EVENTS(&s, "Resumed");
    NS_ASSERT_INT_EQ(s.st.last_step_ms, s.now);
    int64_t resumed = s.now;
    CU_ASSERT_TRUE(cycle_to_event(&s, 30));
    EXPECT_EVENTS(&s, "AdvanceWeight");
    NS_ASSERT_INT_EQ(s.now, resumed + MINUTE);
    NS_ASSERT_INT_EQ(s.st.desired_weight, 30);

    /* A request while suspended waits for the resumption. */
    s.spec.suspend = true;
    cycle(&s);
    request(&s, CANARY_REQUEST_ABORT, "abort");
    cycle(&s);
    CU_ASSERT_FALSE(s.d.clear_request);
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_PROGRESSING);
    s.spec.suspend = false;
    cycle(&s);
    cycle(&s);
    EXPECT_EVENTS(&s, "Suspended", "Resumed", "Aborted");
}

static void test_target_missing(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);
    s.target.found = false;
    tick(&s);
    EXPECT_EVENTS(&s, "TargetNotFound");
    CU_ASSERT_TRUE(last_event(&s)->warning);
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_INITIALIZING);
    NS_ASSERT_STR_EQ(s.st.message, "target Deployment \"reviews\" not found");
    NS_ASSERT_INT_EQ(s.d.requeue_ms, 10000);
    CU_ASSERT_FALSE(s.d.ensure_primary);
    NS_ASSERT_INT_EQ(s.d.target_replicas, -1);
    cycle(&s);
    cycle(&s);
    EXPECT_NO_EVENTS(&s);

    s.target.found = true;
    cycle(&s);
    CU_ASSERT_TRUE(s.d.primary_from_target);
    NS_ASSERT_STR_EQ(s.st.current_revision, REV_A);
    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    EXPECT_EVENTS(&s, "Initialized");

    /* Mid-rollout: everything stays as it is, and it resumes once the target is back. */
    to_weight(&s, 20);
    settle(&s);
    s.target.found = false;
    tick(&s);
    EXPECT_EVENTS(&s, "TargetNotFound");
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_PROGRESSING);
    CU_ASSERT_TRUE(s.d.ensure_primary);
    CU_ASSERT_FALSE(s.d.primary_from_target);
    NS_ASSERT_INT_EQ(s.d.primary_replicas, 3);
    CU_ASSERT_TRUE(s.d.canary_in_apex && s.d.primary_in_apex);
    s.target.found = true;
    s.now += 1;
    tick(&s);
    EXPECT_NO_EVENTS(&s);
    CU_ASSERT_TRUE(contains(s.st.message, "at weight 20"));
}

static void test_initializing(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);
    s.target.spec = 0; /* scaled to zero by its owner: the primary still gets one */
    settle(&s);
    tick(&s);
    NS_ASSERT_INT_EQ(s.d.primary_replicas, 1);

    sim_init(&s, CANARY_STRATEGY_CANARY);
    s.primary.broken = true;
    tick(&s);
    /* The target changes before the primary is up: the primary is made again from it. */
    set_image(&s, REV_B);
    cycle(&s);
    CU_ASSERT_TRUE(s.d.primary_from_target);
    NS_ASSERT_STR_EQ(s.primary.revision, REV_B);
    NS_ASSERT_STR_EQ(s.st.current_revision, REV_B);
    /* Never rolled back (that would take the target's pods away): a warning, once. */
    int64_t began = s.st.last_step_ms;
    while (s.now < began + 15 * MINUTE)
        cycle(&s);
    EXPECT_EVENTS(&s, "Initializing", "PrimaryNotReady");
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_INITIALIZING);
    NS_ASSERT_INT_EQ(s.d.target_replicas, -1);
    CU_ASSERT_TRUE(s.d.canary_in_apex);
    CU_ASSERT_TRUE(contains(s.st.message, "within 10m"));
    s.primary.broken = false;
    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    EXPECT_EVENTS(&s, "Initialized");
    NS_ASSERT_STR_EQ(s.st.last_promoted_revision, REV_B);
}

static void test_promotion_deadline_and_restore(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);
    to_initialized(&s);
    to_weight(&s, 50);
    s.primary.broken = true;
    CU_ASSERT_TRUE(cycle_to_event(&s, 30));
    EXPECT_EVENTS(&s, "Promoting");
    int64_t began = s.now;
    CU_ASSERT_TRUE(cycle_to_event(&s, 200));
    EXPECT_EVENTS(&s, "RolledBack");
    NS_ASSERT_INT_EQ(s.now, began + 10 * MINUTE);
    NS_ASSERT_STR_EQ(s.st.promoted_reason, "ProgressDeadlineExceeded");
    CU_ASSERT_TRUE(contains(s.st.message, "it was already updated"));
    CU_ASSERT_FALSE(s.d.primary_from_target);

    /* kubectl rollout undo: the target is back at the promoted revision, and the
     * primary gets that known-good template again. */
    s.primary.broken = false;
    set_image(&s, REV_A);
    cycle(&s);
    EXPECT_EVENTS(&s, "RestorePrimary");
    CU_ASSERT_TRUE(s.d.primary_from_target);
    NS_ASSERT_STR_EQ(s.st.current_revision, REV_A);
    NS_ASSERT_STR_EQ(s.primary.template_of, REV_A);
    cycle(&s);
    EXPECT_NO_EVENTS(&s);
    CU_ASSERT_FALSE(s.d.primary_from_target);
    NS_ASSERT_INT_EQ(s.st.phase, CANARY_PHASE_FAILED);
    /* and the once-failed revision can be pushed again */
    set_image(&s, REV_B);
    cycle(&s);
    EXPECT_EVENTS(&s, "NewRevision");
}

static void test_finalising_stuck_pods(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);
    to_initialized(&s);
    to_weight(&s, 50);
    s.target.stuck = true;
    CU_ASSERT_TRUE(cycle_to_event(&s, 30));
    CU_ASSERT_TRUE(cycle_to_event(&s, 5));
    EXPECT_EVENTS(&s, "Promoting", "Finalising");
    int64_t began = s.now;
    cycle(&s);
    CU_ASSERT_TRUE(contains(s.st.message, "waiting for the 3 pods of reviews to go"));
    CU_ASSERT_TRUE(cycle_to_event(&s, 200));
    EXPECT_EVENTS(&s, "Succeeded", "CanaryPodsRemain");
    NS_ASSERT_INT_EQ(s.now, began + 10 * MINUTE);
    NS_ASSERT_STR_EQ(s.st.last_promoted_revision, REV_B);
}

/* An operator restarted at every step, with only the status it wrote to go on, walks
 * the same way as one that never stopped: same Events at the same times, same end. */
static void walk(sim *s, bool restart, char *trace, size_t len)
{
    sim_init(s, CANARY_STRATEGY_CANARY);
    add_webhook(s, "acceptance", CANARY_HOOK_ROLLOUT);
    add_webhook(s, "gate", CANARY_HOOK_CONFIRM_PROMOTION);
    s->pass[CANARY_CHECKS_CONFIRM_PROMOTION] = false;
    s->restart_always = restart;
    to_initialized(s);
    to_weight(s, 30);
    set_image(s, REV_C); /* restarts the analysis */
    for (int i = 0; i < 8; i++)
        cycle_to_event(s, 30);
    s->pass[CANARY_CHECKS_CONFIRM_PROMOTION] = true;
    for (int i = 0; i < 4; i++)
        cycle_to_event(s, 30);
    size_t n = 0;
    for (size_t i = 0; i < s->n_log && n < len; i++)
        n += (size_t)snprintf(trace + n, len - n, "%s ", s->log[i].reason);
    n += (size_t)snprintf(trace + n, n < len ? len - n : 0, "@%lld", (long long)(s->now - T0));
}

static void test_restart_every_step(void)
{
    static sim a, b;
    char ta[2048], tb[2048];
    walk(&a, false, ta, sizeof(ta));
    walk(&b, true, tb, sizeof(tb));
    NS_ASSERT_STR_EQ(tb, ta);
    CU_ASSERT_TRUE(contains(ta, "RestartAnalysis AdvanceWeight"));
    CU_ASSERT_TRUE(contains(ta, "WaitingForPromotion Promoting Finalising Succeeded"));
    NS_ASSERT_INT_EQ(b.st.phase, CANARY_PHASE_SUCCEEDED);
    NS_ASSERT_STR_EQ(b.st.last_promoted_revision, REV_C);
    CU_ASSERT_TRUE(status_eq(&a.st, &b.st));
}

/* ---- single decisions ---- */

static void test_requeue_and_first_call(void)
{
    sim s;
    sim_init(&s, CANARY_STRATEGY_CANARY);
    s.spec.interval_ms = 2000; /* shorter than the poll */
    snprintf(s.spec.interval_text, sizeof(s.spec.interval_text), "2s");
    s.spec.progress_deadline_ms = 3000;
    to_initialized(&s);
    set_image(&s, REV_B);
    tick(&s);
    NS_ASSERT_INT_EQ(s.d.requeue_ms, 2000); /* min(interval, deadline, poll) */
    s.now += 1500;
    tick(&s);
    NS_ASSERT_INT_EQ(s.d.requeue_ms, 1500); /* the deadline is nearer */
    settle(&s);
    s.now += 100;
    tick(&s);
    EXPECT_EVENTS(&s, "NewRevision", "AdvanceWeight");
    s.now += 700;
    tick(&s);
    NS_ASSERT_INT_EQ(s.d.requeue_ms, 1300); /* the time left to the next check */

    /* need_checks: nothing else in the decision is valid, the status is the last one */
    sim_init(&s, CANARY_STRATEGY_CANARY);
    add_webhook(&s, "acceptance", CANARY_HOOK_ROLLOUT);
    to_initialized(&s);
    to_weight(&s, 10);
    settle(&s);
    s.now += MINUTE;
    canary_observed o = observe(&s);
    canary_decision d;
    canary_step(&s.spec, &s.st, &o, NULL, &d);
    NS_ASSERT_INT_EQ(d.need_checks, CANARY_CHECKS_ANALYSIS);
    CU_ASSERT_TRUE(status_eq(&d.status, &s.st));
    NS_ASSERT_INT_EQ(d.n_events, 0);
    /* results of another kind are not taken for the ones asked */
    canary_check_results wrong = {.kind = CANARY_CHECKS_PRE_ROLLOUT, .passed = true};
    canary_step(&s.spec, &s.st, &o, &wrong, &d);
    NS_ASSERT_INT_EQ(d.need_checks, CANARY_CHECKS_ANALYSIS);
}

static void test_finalize_step(void)
{
    canary_spec spec = {.name = "reviews",
                        .target = "reviews",
                        .service = "reviews",
                        .progress_deadline_ms = 10 * MINUTE};
    canary_observed o = {.now_ms = T0 + 1000,
                         .target_found = true,
                         .target_revision = REV_B,
                         .target_spec_replicas = 0,
                         .target_scaled = 0,
                         .primary_found = true,
                         .primary_revision = REV_A,
                         .primary_spec_replicas = 4,
                         .primary_rolled_out = true};
    canary_finalize_decision d, again;
    canary_finalize_step(&spec, &o, T0, &d);
    NS_ASSERT_INT_EQ(d.target_replicas, 4); /* the primary's size comes back */
    CU_ASSERT_TRUE(d.canary_in_apex);
    CU_ASSERT_FALSE(d.done);
    CU_ASSERT_FALSE(d.has_event);
    NS_ASSERT_INT_EQ(d.requeue_ms, 5000);
    canary_finalize_step(&spec, &o, T0, &again);
    CU_ASSERT_EQUAL(memcmp(&d, &again, sizeof(d)), 0);

    /* scaled but not yet rolled out */
    o.target_spec_replicas = 4;
    canary_finalize_step(&spec, &o, T0, &d);
    CU_ASSERT_FALSE(d.done);
    o.now_ms = T0 + 10 * MINUTE - 1200;
    canary_finalize_step(&spec, &o, T0, &d);
    NS_ASSERT_INT_EQ(d.requeue_ms, 1200); /* the deadline is nearer than the poll */

    o.target_rolled_out = true;
    canary_finalize_step(&spec, &o, T0, &d);
    CU_ASSERT_TRUE(d.done);
    CU_ASSERT_FALSE(d.has_event);
    NS_ASSERT_INT_EQ(d.target_replicas, 4);
    NS_ASSERT_INT_EQ(d.requeue_ms, 0);

    /* never ready: given up at the deadline, with a Warning */
    o.target_rolled_out = false;
    o.now_ms = T0 + 10 * MINUTE - 1;
    canary_finalize_step(&spec, &o, T0, &d);
    CU_ASSERT_FALSE(d.done);
    o.now_ms = T0 + 10 * MINUTE;
    canary_finalize_step(&spec, &o, T0, &d);
    CU_ASSERT_TRUE(d.done);
    CU_ASSERT_TRUE(d.has_event);
    CU_ASSERT_TRUE(d.event.warning);
    NS_ASSERT_STR_EQ(d.event.reason, "TargetNotReady");
    CU_ASSERT_TRUE(contains(d.event.message, "reviews has not rolled out 4 replicas 10m"));

    /* no primary: the target keeps (at least one of) its own */
    o.primary_found = false;
    o.now_ms = T0;
    o.target_spec_replicas = 0;
    canary_finalize_step(&spec, &o, T0, &d);
    NS_ASSERT_INT_EQ(d.target_replicas, 1);
    /* no target: nothing to give back */
    o.target_found = false;
    canary_finalize_step(&spec, &o, T0, &d);
    CU_ASSERT_TRUE(d.done);
    NS_ASSERT_INT_EQ(d.target_replicas, -1);
}

const ns_test canary_machine_tests[] = {
    {"canary rollout to Succeeded", test_canary_succeeds},
    {"canary with every kind of webhook", test_canary_with_every_check},
    {"blue-green to Succeeded", test_blue_green_succeeds},
    {"blue-green waits for a promote request", test_blue_green_waits_for_promote},
    {"rolled back by failed checks", test_rollback_by_failed_checks},
    {"rolled back by built-in checks and webhooks", test_rollback_by_builtin_and_webhooks},
    {"rolled back by the progress deadline", test_rollback_by_deadline},
    {"new revision mid-rollout restarts", test_revision_change_restarts},
    {"new revision while promoting", test_revision_change_while_promoting},
    {"abort, retry, ignored requests", test_abort_and_retry},
    {"promote request", test_promote_request},
    {"confirm-promotion waits without deadline", test_confirm_promotion_waits_without_deadline},
    {"target scaled by a user", test_scaled_by_user},
    {"suspend and resume", test_suspend},
    {"target missing", test_target_missing},
    {"initializing", test_initializing},
    {"promotion deadline, primary restored", test_promotion_deadline_and_restore},
    {"finalising with pods that stay", test_finalising_stuck_pods},
    {"operator restarted at every step", test_restart_every_step},
    {"requeue delays, need_checks", test_requeue_and_first_call},
    {"finalize (deletion)", test_finalize_step},
    {NULL, NULL},
};

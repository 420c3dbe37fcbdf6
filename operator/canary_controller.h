/* canary_controller.h - the Canary controller: the I/O around the rollout's pure core
 * (canary.h, canary_render.h, canary_machine.h) and its network checks
 * (canary_checks.h). It gathers what the state machine needs to see, asks it for a
 * decision, and carries the decision out with as few writes as the world allows.
 *
 * One reconcile of Canary ns/name:
 *   gone -> nothing (its objects go with it, through ownerReferences);
 *   being deleted -> give the target its replicas back and its pods the apex label,
 *     then point the apex Service at the target's own selector and orphan it (the
 *     application keeps its Service name), remove the finalizer (the primary and the
 *     other Services are then garbage collected);
 *   else: finalizer; parse (a bad spec: message, Warning Event, no retry); observe
 *     (target, primary, their pods); step the machine (running the checks it asks for);
 *     apply the Services and the primary when they differ; scale the target; label the
 *     pods; write the status when it changed; Events; requeue when the machine asks.
 *
 * Informers: Canaries, Deployments and EndpointSlices in every namespace (targets are
 * the users' own Deployments, which carry no label of ours; EndpointSlices tell when
 * the apex's ready endpoints change, which moves the weight in effect), and the
 * Services labelled CANARY_LABEL_CANARY.
 */
#ifndef OP_CANARY_CONTROLLER_H
#define OP_CANARY_CONTROLLER_H

#include "controller.h"
#include "err.h"
#include "events.h"
#include "kube.h"
#include "metrics.h"

#include <stdbool.h>

typedef struct canary_controller canary_controller;

typedef struct canary_controller_opts {
    ns_kube *kube;         /* required; must outlive the controller */
    const char *namespace; /* watch only this namespace; NULL: all */
    op_recorder *recorder; /* Events; NULL: none */
    ns_metrics *metrics;   /* registry for the controller's metrics; NULL: none */
    ns_metric *writes;     /* optional counter of every API write */
    unsigned workers;      /* 0: 1 */
    long resync_ms;        /* > 0: reconcile every Canary this often */
    bool start_paused;     /* leader election: wait for canary_controller_resume */
} canary_controller_opts;

int canary_controller_new(const canary_controller_opts *opts, canary_controller **out, ns_err *err);
int canary_controller_start_informers(canary_controller *cc, ns_err *err);
bool canary_controller_synced(canary_controller *cc);
int canary_controller_start(canary_controller *cc, long sync_timeout_ms, ns_err *err);
/* The proxies' route table (canary_routes.h) from the cached Canaries and their
 * Services, on any replica, leader or not: the leader's status writes reach every
 * replica's cache. 0 with a JSON text (caller frees) and its version; -EAGAIN until the
 * caches have synced; -ENOMEM. */
int canary_controller_routes(canary_controller *cc, const char *domain, char **table,
                             uint64_t *version);

/* Calls fn(ud) after every change of a Canary or of a Service of one, on informer
 * threads (fn must be quick). Only before canary_controller_start_informers. */
int canary_controller_on_change(canary_controller *cc, void (*fn)(void *ud), void *ud);

void canary_controller_pause(canary_controller *cc);
void canary_controller_resume(canary_controller *cc);
void canary_controller_stop(canary_controller *cc);
void canary_controller_free(canary_controller *cc);

#endif

/* bench_canary.h - nutshell-bench-operator's Canary modes (see canaries.sh). The Canaries
 * and their target Deployments share the names PREFIX00000, PREFIX00001, ...
 *
 *   canaries-wait      watches the Canaries of a namespace until `count` of them are in
 *                      `phase`; prints the phase counts every 10 s and the time taken from
 *                      `since_epoch_ms` (or from its own start).
 *   canaries-rollout   for the first `count` Canaries, one at a time: a JSON patch of the
 *                      target's first container image, then the time until a watch opened
 *                      before the first patch shows the Canary Progressing; afterwards, how
 *                      long the rollouts take to end Succeeded (or Failed).
 *   canaries-unfinalize  drops every finalizer from the namespace's Canaries, so that the
 *                      namespace can go without an operator.
 */
#ifndef BENCH_OPERATOR_CANARY_H
#define BENCH_OPERATOR_CANARY_H

#include "kube.h"

#include <stdint.h>

typedef struct bench_canary_opts {
    const char *namespace;
    const char *prefix;
    long count;
    const char *phase;       /* canaries-wait */
    const char *image;       /* canaries-rollout: the new image */
    long timeout_ms;         /* canaries-wait: all of it; rollout: per Progressing */
    long rollout_timeout_ms; /* canaries-rollout: for the rollouts to end, after the last patch */
    long gap_ms;             /* canaries-rollout: between patches */
    double since_epoch_ms;   /* canaries-wait: time zero (epoch ms), 0: now */
    long pid;                /* > 0: print the RSS of this process at the end */
    const char *label;
} bench_canary_opts;

/* Each returns 0 when everything completed in time, 1 otherwise. */
int bench_canary_wait(ns_kube *k, const bench_canary_opts *o);
int bench_canary_rollout(ns_kube *k, const bench_canary_opts *o);
int bench_canary_unfinalize(ns_kube *k, const bench_canary_opts *o);

#endif

/* canary_render.h - the objects a Canary owns, and the arithmetic of weights by
 * endpoints. Pure: objects in, objects out.
 *
 * Traffic without the proxy (DESIGN.md): the apex Service <svc> selects the pod label
 * CANARY_LABEL_APEX=<svc>. The primary's pods carry it from their template; canary pods
 * (the target's) get it from the operator when they should receive traffic. At weight w
 * the target is scaled so that its ready pods are about w% of the apex's endpoints:
 *   canary replicas c = round(P * w / (100 - w)), at least 1, for primary size P;
 * and at w = 100 (blue-green switch, or maxWeight 100) the primary's pods lose the label.
 * The weight written to the status is the one in effect: ready canary pods with the
 * label over all ready pods with it.
 *
 * Selectors never overlap: the primary's selector is the target's matchLabels with each
 * value suffixed "-primary" (app=reviews -> app=reviews-primary), and its pod template
 * has the same rewrite, so the target's selector never matches a primary pod.
 */
#ifndef OP_CANARY_RENDER_H
#define OP_CANARY_RENDER_H

#include "canary.h"
#include "err.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The revision of a pod template: a hex FNV-1a 64 hash of its canonical JSON (object
 * members sorted by key, so the API server's field order does not matter), 16 chars.
 * `template` is a Deployment's spec.template. buf >= 17 bytes. Returns 0 or -ENOMEM. */
int canary_template_revision(const cJSON *template, char *buf, size_t size);

/* The names of the objects: "<target>-primary", "<svc>", "<svc>-primary", "<svc>-canary". */
typedef struct canary_names {
    char primary[256];
    char apex[64];
    char svc_primary[72];
    char svc_canary[72];
} canary_names;

void canary_names_init(const canary_spec *spec, canary_names *out);

/* Checks that the target can be handled: spec.selector has matchLabels and no
 * matchExpressions, every matchLabels value + "-primary" fits a label value (63), and
 * the template's labels include the matchLabels. Returns 0 or -EINVAL with a sentence
 * naming the Deployment and the problem. */
int canary_target_check(const canary_spec *spec, const cJSON *target, ns_err *err);

/* The primary Deployment for server-side apply (caller frees): target's spec with
 * selector and template labels rewritten ("-primary"), CANARY_LABEL_APEX=<svc> added to
 * the template's labels, the template's annotations plus CANARY_ANN_REVISION=revision
 * on the Deployment's metadata, `replicas` replicas, labelled CANARY_LABEL_CANARY and
 * owned by the Canary (controller ownerReference). Fields of the target's spec other
 * than replicas, selector and template (strategy, minReadySeconds,
 * revisionHistoryLimit, progressDeadlineSeconds) are copied. Returns 0, -EINVAL (as
 * canary_target_check), -ENOMEM. */
int canary_render_primary(const canary_spec *spec, const cJSON *target, const char *revision,
                          int32_t replicas, cJSON **out, ns_err *err);

/* The three Services for server-side apply, in a new array (caller frees): apex
 * (selector CANARY_LABEL_APEX=<svc>), primary (the primary's selector) and canary (the
 * target's matchLabels), each with one port {name, port, targetPort, protocol TCP},
 * labelled CANARY_LABEL_CANARY and owned by the Canary. Returns 0, -EINVAL, -ENOMEM. */
int canary_render_services(const canary_spec *spec, const cJSON *target, cJSON **out, ns_err *err);

/* Canary replicas giving weight `w` (0..100) next to a primary of `primary` replicas:
 * 0 for w = 0; max(primary, 1) for w = 100 (the primary leaves the apex); otherwise the
 * formula above, clamped to [1, 4 * max(primary, 1)] so that a high step does not ask
 * for an unbounded number of pods (weights above 80% are then approximated, and the
 * status says by how much). */
int32_t canary_replicas_for_weight(int32_t primary, int32_t w);

/* The weight in effect: 100 * canary / (canary + primary), rounded; 0 if both are 0. */
int32_t canary_effective_weight(int32_t canary_ready, int32_t primary_ready);

/* For a pod list (a JSON array of Pods), the names of the pods whose CANARY_LABEL_APEX
 * label must change so that it is present (want) or absent (!want) on every pod not
 * being deleted; value `svc`. Appends the names to `out` (a JSON array of strings).
 * Returns the number appended, or -ENOMEM. */
int canary_pods_to_label(const cJSON *pods, const char *svc, bool want, cJSON *out);

/* Pod facts for the built-in check: pods not being deleted, how many are ready
 * (condition Ready True), and the total restartCount of their containers. */
typedef struct canary_pod_stats {
    int32_t pods;
    int32_t ready;
    int32_t ready_in_apex; /* ready and labelled CANARY_LABEL_APEX=<svc> */
    int32_t restarts;
} canary_pod_stats;

void canary_pod_stats_of(const cJSON *pods, const char *svc, canary_pod_stats *out);

#endif

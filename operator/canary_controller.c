/* canary_controller.c - the Canary controller's I/O: informers, observation, writes. */
#include "canary_controller.h"

#include "buf.h"
#include "canary.h"
#include "canary_checks.h"
#include "canary_machine.h"
#include "canary_render.h"
#include "canary_routes.h"
#include "informer.h"
#include "json.h"
#include "log.h"
#include "mesh_controller.h"
#include "mesh_render.h"
#include "strconv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const ns_kube_ref canary_ref = {
    .group = "nutshell.io", .version = "v1alpha1", .resource = "canaries"};
static const ns_kube_ref deploy_ref = {.group = "apps", .version = "v1", .resource = "deployments"};
static const ns_kube_ref svc_ref = {.version = "v1", .resource = "services"};
static const ns_kube_ref pod_ref = {.version = "v1", .resource = "pods"};
static const ns_kube_ref slice_ref = {
    .group = "discovery.k8s.io", .version = "v1", .resource = "endpointslices"};

/* Every change of a Canary's step (a requeue) is at most this far off, so that a
 * rollout waiting on readiness also notices what no event reports (a clock step). */
#define MAX_REQUEUE_MS 60000L

struct canary_controller {
    ns_kube *kube;
    op_recorder *rec;
    ns_metric *writes;
    op_informer *canaries;
    op_informer *deployments;
    op_informer *services;
    op_informer *slices;
    op_controller *ctl;
    void (*on_change)(void *ud);
    void *on_change_ud;
};

#define EVENT(cc, obj, type, reason, ...)                                                          \
    do {                                                                                           \
        if ((cc)->rec)                                                                             \
            op_recorder_event((cc)->rec, (obj), (type), (reason), __VA_ARGS__);                    \
    } while (0)

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void count_write(canary_controller *cc, const char *verb, const char *kind, const char *ns,
                        const char *name)
{
    if (cc->writes)
        ns_counter_add(cc->writes, 1);
    ns_log(NS_LOG_DEBUG, "write", "verb", verb, "kind", kind, "namespace", ns, "name", name, NULL);
}

static int api_error(ns_err *err, int rc, const char *verb, const char *kind, const char *name,
                     const ns_kube_status *st)
{
    return ns_errorf(err, rc, "cannot %s %s %s: %s", verb, kind, name,
                     st->message[0] ? st->message : strerror(-rc));
}

static ns_kube_ref ref_in(ns_kube_ref base, const char *ns, const char *name)
{
    base.namespace = ns;
    base.name = name;
    return base;
}

/* A deep copy of ns/name from `inf`, or NULL. */
static cJSON *cached(op_informer *inf, const char *ns, const char *name)
{
    char key[OP_KEY_MAX];
    cJSON *obj = NULL;
    if (snprintf(key, sizeof(key), "%s/%s", ns, name) >= (int)sizeof(key))
        return NULL;
    if (op_informer_get(inf, key, &obj) != 0)
        return NULL;
    return obj;
}

static int32_t json_i32(const cJSON *obj, const char *a, const char *b, int32_t dflt)
{
    const cJSON *v = ns_json_path(obj, a, b, NULL);
    return cJSON_IsNumber(v) ? (int32_t)v->valuedouble : dflt;
}

/* A Deployment has rolled out: the controller saw its latest spec, and every replica
 * is updated, ready and available, with no old ones left. */
static bool rolled_out(const cJSON *d)
{
    int32_t want = json_i32(d, "spec", "replicas", 1);
    const cJSON *gen = ns_json_path(d, "metadata", "generation", NULL);
    const cJSON *obs = ns_json_path(d, "status", "observedGeneration", NULL);
    if (cJSON_IsNumber(gen) && (!cJSON_IsNumber(obs) || obs->valuedouble < gen->valuedouble))
        return false;
    return json_i32(d, "status", "replicas", 0) == want &&
           json_i32(d, "status", "updatedReplicas", 0) == want &&
           json_i32(d, "status", "readyReplicas", 0) == want &&
           json_i32(d, "status", "availableReplicas", 0) == want;
}

/* "k1=v1,k2=v2" from a LabelSelector's matchLabels (canary_target_check has made sure
 * there is nothing else in it). */
static int selector_string(const cJSON *match_labels, ns_buf *out)
{
    const cJSON *l;
    cJSON_ArrayForEach(l, match_labels)
    {
        if (cJSON_IsString(l))
            ns_buf_printf(out, "%s%s=%s", out->len ? "," : "", l->string, l->valuestring);
    }
    return out->failed ? -ENOMEM : 0;
}

/* The pods in `ns` matching a Deployment's matchLabels, as a JSON array (caller frees). */
static int list_pods(canary_controller *cc, const char *ns, const cJSON *deployment, cJSON **out,
                     ns_err *err)
{
    *out = NULL;
    ns_buf sel;
    ns_buf_init(&sel);
    if (selector_string(ns_json_path(deployment, "spec", "selector", "matchLabels", NULL), &sel)) {
        ns_buf_free(&sel);
        return ns_errorf(err, -ENOMEM, "out of memory");
    }
    ns_kube_ref ref = ref_in(pod_ref, ns, NULL);
    ns_kube_list_opts lo = {.label_selector = ns_buf_cstr(&sel)};
    ns_kube_status st;
    cJSON *list = NULL;
    int rc = ns_kube_list(cc->kube, &ref, &lo, &list, &st);
    ns_buf_free(&sel);
    if (rc)
        return api_error(err, rc, "list", "pods of",
                         ns_json_path_str(deployment, "metadata", "name", NULL), &st);
    *out = cJSON_DetachItemFromObjectCaseSensitive(list, "items");
    cJSON_Delete(list);
    if (!*out)
        *out = cJSON_CreateArray();
    return *out ? 0 : ns_errorf(err, -ENOMEM, "out of memory");
}

/* ---- what the controller sees ---- */

/* Everything one reconcile reads, owned here and released by view_free. */
typedef struct canary_view {
    cJSON *target;
    cJSON *primary;
    cJSON *target_pods;
    cJSON *primary_pods;
    char revision[CANARY_REVISION_MAX + 1];
    canary_names names;
    canary_observed obs;
} canary_view;

static void view_free(canary_view *v)
{
    cJSON_Delete(v->target);
    cJSON_Delete(v->primary);
    cJSON_Delete(v->target_pods);
    cJSON_Delete(v->primary_pods);
}

static int observe(canary_controller *cc, const canary_spec *spec, canary_view *v, ns_err *err)
{
    memset(v, 0, sizeof(*v));
    canary_names_init(spec, &v->names);
    v->obs.now_ms = now_ms();
    v->obs.target_scaled = -1;
    v->target = cached(cc->deployments, spec->namespace, spec->target);
    v->primary = cached(cc->deployments, spec->namespace, v->names.primary);
    if (v->target) {
        if (canary_target_check(spec, v->target, err) != 0)
            return -EINVAL;
        if (canary_template_revision(ns_json_path(v->target, "spec", "template", NULL), v->revision,
                                     sizeof(v->revision)) != 0)
            return ns_errorf(err, -ENOMEM, "out of memory");
        v->obs.target_found = true;
        v->obs.target_revision = v->revision;
        v->obs.target_spec_replicas = json_i32(v->target, "spec", "replicas", 1);
        v->obs.target_status_replicas = json_i32(v->target, "status", "replicas", 0);
        v->obs.target_rolled_out = rolled_out(v->target);
        const char *scaled = ns_json_str(ns_json_path(v->target, "metadata", "annotations", NULL),
                                         CANARY_ANN_SCALED);
        uint32_t n;
        if (scaled && ns_parse_u32(scaled, INT32_MAX, &n) == 0)
            v->obs.target_scaled = (int32_t)n;
        int rc = list_pods(cc, spec->namespace, v->target, &v->target_pods, err);
        if (rc)
            return rc;
        canary_pod_stats ps;
        canary_pod_stats_of(v->target_pods, spec->service, &ps);
        v->obs.canary_pods = ps.pods;
        v->obs.canary_ready = ps.ready;
        v->obs.canary_ready_in_apex = ps.ready_in_apex;
        v->obs.canary_restarts = ps.restarts;
    }
    if (v->primary) {
        v->obs.primary_found = true;
        v->obs.primary_revision = ns_json_str(
            ns_json_path(v->primary, "metadata", "annotations", NULL), CANARY_ANN_REVISION);
        v->obs.primary_spec_replicas = json_i32(v->primary, "spec", "replicas", 1);
        v->obs.primary_rolled_out = rolled_out(v->primary);
        int rc = list_pods(cc, spec->namespace, v->primary, &v->primary_pods, err);
        if (rc)
            return rc;
        canary_pod_stats ps;
        canary_pod_stats_of(v->primary_pods, spec->service, &ps);
        v->obs.primary_ready_in_apex = ps.ready_in_apex;
    }
    return 0;
}

/* ---- writes ---- */

/* Server-side apply, forcing our ownership of the fields we set; the live object goes to
 * *out when `out` is not NULL. */
static int apply(canary_controller *cc, ns_kube_ref base, const char *kind, const cJSON *obj,
                 cJSON **out, ns_err *err)
{
    const char *ns = ns_json_path_str(obj, "metadata", "namespace", NULL);
    const char *name = ns_json_path_str(obj, "metadata", "name", NULL);
    ns_kube_ref ref = ref_in(base, ns, name);
    ns_kube_write_opts wo = {.field_manager = MESH_FIELD_MANAGER, .force = true};
    ns_kube_status st;
    int rc = ns_kube_apply(cc->kube, &ref, obj, &wo, out, &st);
    count_write(cc, "apply", kind, ns, name);
    return rc ? api_error(err, rc, "apply", kind, name, &st) : 0;
}

static int merge_patch(canary_controller *cc, ns_kube_ref base, const char *kind, const char *ns,
                       const char *name, const cJSON *patch, ns_err *err)
{
    ns_kube_ref ref = ref_in(base, ns, name);
    ns_kube_write_opts wo = {.field_manager = MESH_FIELD_MANAGER};
    ns_kube_status st;
    int rc = ns_kube_patch(cc->kube, &ref, NS_KUBE_PATCH_MERGE, patch, &wo, NULL, &st);
    count_write(cc, "patch", kind, ns, name);
    return rc ? api_error(err, rc, "patch", kind, name, &st) : 0;
}

/* A Service's selector must be exactly ours. Server-side apply merges maps, so a Service
 * that existed before the Canary (Bookinfo's `reviews`, taken over as the apex) would
 * keep its old keys next to ours and select nothing; they are replaced outright. */
static int ensure_selector(canary_controller *cc, const cJSON *desired, const cJSON *live,
                           ns_err *err)
{
    const cJSON *want = ns_json_path(desired, "spec", "selector", NULL);
    const cJSON *have = ns_json_path(live, "spec", "selector", NULL);
    if (!live || cJSON_Compare(want, have, true))
        return 0;
    cJSON *patch = cJSON_CreateArray();
    cJSON *op = cJSON_CreateObject();
    cJSON_AddItemToArray(patch, op);
    cJSON_AddStringToObject(op, "op", "replace");
    cJSON_AddStringToObject(op, "path", "/spec/selector");
    cJSON_AddItemToObject(op, "value", cJSON_Duplicate(want, true));
    const char *ns = ns_json_path_str(desired, "metadata", "namespace", NULL);
    const char *name = ns_json_path_str(desired, "metadata", "name", NULL);
    ns_kube_ref ref = ref_in(svc_ref, ns, name);
    ns_kube_write_opts wo = {.field_manager = MESH_FIELD_MANAGER};
    ns_kube_status st;
    int rc = ns_kube_patch(cc->kube, &ref, NS_KUBE_PATCH_JSON, patch, &wo, NULL, &st);
    cJSON_Delete(patch);
    count_write(cc, "patch", "Service", ns, name);
    if (rc)
        return api_error(err, rc, "replace the selector of", "Service", name, &st);
    ns_log(NS_LOG_INFO, "took over the Service's selector", "namespace", ns, "service", name, NULL);
    return 0;
}

static int ensure_services(canary_controller *cc, const canary_spec *spec, const cJSON *target,
                           ns_err *err)
{
    cJSON *desired = NULL;
    int rc = canary_render_services(spec, target, &desired, err);
    const cJSON *d;
    cJSON_ArrayForEach(d, desired)
    {
        if (rc)
            break;
        cJSON *live =
            cached(cc->services, spec->namespace, ns_json_path_str(d, "metadata", "name", NULL));
        cJSON *written = NULL;
        if (mesh_object_needs_update(d, live))
            rc = apply(cc, svc_ref, "Service", d, &written, err);
        if (!rc)
            rc = ensure_selector(cc, d, written ? written : live, err);
        cJSON_Delete(written);
        cJSON_Delete(live);
    }
    cJSON_Delete(desired);
    return rc;
}

/* The primary as the decision wants it: its template copied from the target (a
 * promotion, the initialization) or left as it is with only its size set. */
static int ensure_primary(canary_controller *cc, const canary_spec *spec, const canary_view *v,
                          const canary_decision *d, ns_err *err)
{
    if (!v->target)
        return 0;
    if (d->primary_from_target || !v->primary) {
        cJSON *desired = NULL;
        int rc = canary_render_primary(spec, v->target, d->status.current_revision,
                                       d->primary_replicas, &desired, err);
        if (!rc && mesh_object_needs_update(desired, v->primary))
            rc = apply(cc, deploy_ref, "Deployment", desired, NULL, err);
        cJSON_Delete(desired);
        return rc;
    }
    if (v->obs.primary_spec_replicas == d->primary_replicas)
        return 0;
    cJSON *patch = cJSON_CreateObject();
    cJSON *s = cJSON_AddObjectToObject(patch, "spec");
    cJSON_AddNumberToObject(s, "replicas", d->primary_replicas);
    int rc =
        merge_patch(cc, deploy_ref, "Deployment", spec->namespace, v->names.primary, patch, err);
    cJSON_Delete(patch);
    return rc;
}

/* Sets the target's replicas together with the annotation that remembers we wrote them. */
static int scale_target(canary_controller *cc, const canary_spec *spec, const canary_view *v,
                        int32_t replicas, ns_err *err)
{
    if (!v->target || replicas < 0 ||
        (v->obs.target_spec_replicas == replicas && v->obs.target_scaled == replicas))
        return 0;
    char n[16];
    snprintf(n, sizeof(n), "%d", replicas);
    cJSON *patch = cJSON_CreateObject();
    cJSON *ann = cJSON_AddObjectToObject(cJSON_AddObjectToObject(patch, "metadata"), "annotations");
    cJSON_AddStringToObject(ann, CANARY_ANN_SCALED, n);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(patch, "spec"), "replicas", replicas);
    int rc = merge_patch(cc, deploy_ref, "Deployment", spec->namespace, spec->target, patch, err);
    cJSON_Delete(patch);
    if (!rc)
        ns_log(NS_LOG_INFO, "scaled target", "namespace", spec->namespace, "deployment",
               spec->target, "replicas", n, NULL);
    return rc;
}

/* Adds or removes the apex label on the pods that need it. A pod deleted meanwhile is
 * no failure. */
static int label_pods(canary_controller *cc, const canary_spec *spec, const cJSON *pods, bool want,
                      ns_err *err)
{
    if (!pods)
        return 0;
    cJSON *names = cJSON_CreateArray();
    if (!names || canary_pods_to_label(pods, spec->service, want, names) < 0) {
        cJSON_Delete(names);
        return ns_errorf(err, -ENOMEM, "out of memory");
    }
    int rc = 0;
    const cJSON *n;
    cJSON_ArrayForEach(n, names)
    {
        cJSON *patch = cJSON_CreateObject();
        cJSON *labels =
            cJSON_AddObjectToObject(cJSON_AddObjectToObject(patch, "metadata"), "labels");
        if (want)
            cJSON_AddStringToObject(labels, CANARY_LABEL_APEX, spec->service);
        else
            cJSON_AddNullToObject(labels, CANARY_LABEL_APEX);
        ns_err perr = {0};
        int prc = merge_patch(cc, pod_ref, "Pod", spec->namespace, n->valuestring, patch, &perr);
        cJSON_Delete(patch);
        if (prc && prc != -ENOENT) {
            rc = ns_errorf(err, prc, "%s", perr.msg);
            break;
        }
    }
    cJSON_Delete(names);
    return rc;
}

static int clear_request(canary_controller *cc, const canary_spec *spec, ns_err *err)
{
    cJSON *patch = cJSON_CreateObject();
    cJSON *ann = cJSON_AddObjectToObject(cJSON_AddObjectToObject(patch, "metadata"), "annotations");
    cJSON_AddNullToObject(ann, CANARY_ANN_REQUEST);
    int rc = merge_patch(cc, canary_ref, CANARY_KIND, spec->namespace, spec->name, patch, err);
    cJSON_Delete(patch);
    return rc;
}

static bool has_finalizer(const cJSON *obj)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, ns_json_path(obj, "metadata", "finalizers", NULL))
    {
        if (cJSON_IsString(f) && strcmp(f->valuestring, CANARY_FINALIZER) == 0)
            return true;
    }
    return false;
}

/* Adds or removes our finalizer with a merge patch carrying the resourceVersion read, so
 * that a concurrent change of the list is a 409 and a re-read, never a lost entry. */
static int set_finalizer(canary_controller *cc, const cJSON *canary, bool present, ns_err *err)
{
    cJSON *patch = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(patch, "metadata");
    cJSON_AddStringToObject(meta, "resourceVersion",
                            ns_json_path_str(canary, "metadata", "resourceVersion", NULL));
    cJSON *list = cJSON_AddArrayToObject(meta, "finalizers");
    const cJSON *f;
    cJSON_ArrayForEach(f, ns_json_path(canary, "metadata", "finalizers", NULL))
    {
        if (cJSON_IsString(f) && strcmp(f->valuestring, CANARY_FINALIZER) != 0)
            cJSON_AddItemToArray(list, cJSON_CreateString(f->valuestring));
    }
    if (present)
        cJSON_AddItemToArray(list, cJSON_CreateString(CANARY_FINALIZER));
    int rc = merge_patch(cc, canary_ref, CANARY_KIND,
                         ns_json_path_str(canary, "metadata", "namespace", NULL),
                         ns_json_path_str(canary, "metadata", "name", NULL), patch, err);
    cJSON_Delete(patch);
    return rc == -ENOENT && !present ? 0 : rc;
}

/* Writes the status unless the Canary already has it. A PUT with the resourceVersion
 * read: a stale read is a 409 and a re-read. */
static int write_status(canary_controller *cc, const cJSON *canary, const canary_status *st,
                        ns_err *err)
{
    cJSON *status = canary_status_to_json(st);
    if (!status)
        return ns_errorf(err, -ENOMEM, "out of memory");
    const cJSON *prev = ns_json_get(canary, "status");
    if (prev && cJSON_Compare(prev, status, true)) {
        cJSON_Delete(status);
        return 0;
    }
    cJSON *body = cJSON_Duplicate(canary, true);
    if (!body) {
        cJSON_Delete(status);
        return ns_errorf(err, -ENOMEM, "out of memory");
    }
    cJSON_DeleteItemFromObjectCaseSensitive(body, "status");
    cJSON_AddItemToObject(body, "status", status);
    const char *ns = ns_json_path_str(canary, "metadata", "namespace", NULL);
    const char *name = ns_json_path_str(canary, "metadata", "name", NULL);
    ns_kube_ref ref = ref_in(canary_ref, ns, name);
    ns_kube_write_opts wo = {.field_manager = MESH_FIELD_MANAGER};
    ns_kube_status kst;
    int rc = ns_kube_update_status(cc->kube, &ref, body, &wo, NULL, &kst);
    cJSON_Delete(body);
    count_write(cc, "update-status", CANARY_KIND, ns, name);
    return rc ? api_error(err, rc, "update the status of", CANARY_KIND, name, &kst) : 0;
}

/* ---- one reconcile ---- */

/* A spec that can never work (or a target we cannot handle): the reason in the status
 * message and a Warning Event, no retry; the next change of the Canary or the target
 * brings it back. */
static int report_invalid(canary_controller *cc, const cJSON *canary, const char *why, ns_err *err)
{
    canary_status st;
    canary_status_parse(canary, &st);
    char msg[sizeof(st.message)];
    snprintf(msg, sizeof(msg), "invalid: %s", why);
    if (strcmp(st.message, msg) == 0)
        return 0;
    snprintf(st.message, sizeof(st.message), "%s", msg);
    EVENT(cc, canary, "Warning", "InvalidSpec", "%s", why);
    ns_log(NS_LOG_WARN, "canary invalid", "namespace",
           ns_json_path_str(canary, "metadata", "namespace", NULL), "canary",
           ns_json_path_str(canary, "metadata", "name", NULL), "error", why, NULL);
    return write_status(cc, canary, &st, err);
}

static void record_events(canary_controller *cc, const cJSON *canary, const canary_spec *spec,
                          const canary_event *ev, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        EVENT(cc, canary, ev[i].warning ? "Warning" : "Normal", ev[i].reason, "%s", ev[i].message);
        ns_log(ev[i].warning ? NS_LOG_WARN : NS_LOG_INFO, ev[i].message, "namespace",
               spec->namespace, "canary", spec->name, "reason", ev[i].reason, NULL);
    }
}

/* Deletion: the target serves again before the primary goes. */
static int finalize(canary_controller *cc, const cJSON *canary, ns_err *err)
{
    if (!has_finalizer(canary))
        return 0;
    canary_spec spec;
    ns_err perr = {0};
    if (canary_spec_parse(canary, &spec, &perr) != 0) /* cannot tell what to restore */
        return set_finalizer(cc, canary, false, err);
    canary_view v;
    int rc = observe(cc, &spec, &v, err);
    if (rc == -EINVAL || !v.target) { /* nothing of ours can serve in its place */
        view_free(&v);
        return set_finalizer(cc, canary, false, err);
    }
    if (rc) {
        view_free(&v);
        return rc;
    }
    int64_t deletion = 0;
    canary_time_parse(ns_json_path_str(canary, "metadata", "deletionTimestamp", NULL), &deletion);
    canary_finalize_decision d;
    canary_finalize_step(&spec, &v.obs, deletion, &d);
    rc = scale_target(cc, &spec, &v, d.target_replicas, err);
    if (!rc)
        rc = label_pods(cc, &spec, v.target_pods, d.canary_in_apex, err);
    if (!rc && d.has_event)
        record_events(cc, canary, &spec, &d.event, 1);
    if (!rc && d.done) {
        /* The apex Service keeps its name and now selects the target's pods; orphaned, it
         * outlives the Canary (the garbage collector takes the rest). */
        cJSON *patch = cJSON_CreateObject();
        cJSON *meta = cJSON_AddObjectToObject(patch, "metadata");
        cJSON_AddNullToObject(meta, "ownerReferences");
        cJSON_AddNullToObject(cJSON_AddObjectToObject(meta, "labels"), CANARY_LABEL_CANARY);
        cJSON *sel = cJSON_AddObjectToObject(cJSON_AddObjectToObject(patch, "spec"), "selector");
        cJSON_AddNullToObject(sel, CANARY_LABEL_APEX);
        const cJSON *l;
        cJSON_ArrayForEach(l, ns_json_path(v.target, "spec", "selector", "matchLabels", NULL))
        {
            if (cJSON_IsString(l))
                cJSON_AddStringToObject(sel, l->string, l->valuestring);
        }
        rc = merge_patch(cc, svc_ref, "Service", spec.namespace, v.names.apex, patch, err);
        cJSON_Delete(patch);
        if (rc == -ENOENT)
            rc = 0;
        if (!rc) {
            cJSON *tp = cJSON_CreateObject();
            cJSON_AddNullToObject(
                cJSON_AddObjectToObject(cJSON_AddObjectToObject(tp, "metadata"), "annotations"),
                CANARY_ANN_SCALED);
            rc = merge_patch(cc, deploy_ref, "Deployment", spec.namespace, spec.target, tp, err);
            cJSON_Delete(tp);
        }
        if (!rc)
            rc = set_finalizer(cc, canary, false, err);
    } else if (!rc && d.requeue_ms > 0) {
        char key[OP_KEY_MAX];
        snprintf(key, sizeof(key), "%s/%s", spec.namespace, spec.name);
        op_controller_requeue_after(cc->ctl, key, d.requeue_ms);
    }
    view_free(&v);
    return rc;
}

static int sync_canary(canary_controller *cc, const cJSON *canary, const char *key, ns_err *err)
{
    canary_spec spec;
    ns_err perr = {0};
    if (canary_spec_parse(canary, &spec, &perr) != 0)
        return report_invalid(cc, canary, perr.msg, err);

    canary_view v;
    int rc = observe(cc, &spec, &v, &perr);
    if (rc == -EINVAL) {
        view_free(&v);
        return report_invalid(cc, canary, perr.msg, err);
    }
    if (rc) {
        view_free(&v);
        return ns_errorf(err, rc, "%s", perr.msg);
    }

    canary_status prev;
    canary_status_parse(canary, &prev);
    canary_decision d;
    canary_step(&spec, &prev, &v.obs, NULL, &d);
    if (d.need_checks != CANARY_CHECKS_NONE) {
        canary_check_results res;
        canary_checks_run(&spec, &prev, d.need_checks, &res);
        canary_step(&spec, &prev, &v.obs, &res, &d);
    }
    d.status.observed_generation = spec.generation;

    /* Record, then act: the status written first holds every decision (the phase, the
     * step, the primary's size), so a write below that fails is simply made again by the
     * next reconcile from the same status, and a stale read of ours can never undo a
     * transition (a PUT from an old resourceVersion is a 409). */
    rc = write_status(cc, canary, &d.status, err);
    if (!rc)
        record_events(cc, canary, &spec, d.events, d.n_events);
    if (!rc && v.target)
        rc = ensure_services(cc, &spec, v.target, err);
    if (!rc && d.ensure_primary)
        rc = ensure_primary(cc, &spec, &v, &d, err);
    if (!rc)
        rc = scale_target(cc, &spec, &v, d.target_replicas, err);
    if (!rc)
        rc = label_pods(cc, &spec, v.target_pods, d.canary_in_apex, err);
    if (!rc)
        rc = label_pods(cc, &spec, v.primary_pods, d.primary_in_apex, err);
    if (!rc && d.clear_request)
        rc = clear_request(cc, &spec, err);
    /* After the status, so that a failed write (retried) does not call a webhook twice
     * for one transition. */
    for (size_t i = 0; !rc && i < d.n_notify; i++)
        canary_webhooks_notify(&spec, &d.status, d.notify[i]);
    if (!rc && d.requeue_ms > 0)
        op_controller_requeue_after(cc->ctl, key,
                                    d.requeue_ms < MAX_REQUEUE_MS ? d.requeue_ms : MAX_REQUEUE_MS);
    view_free(&v);
    return rc;
}

static int reconcile_cb(void *ctx, const char *key, ns_err *err)
{
    canary_controller *cc = ctx;
    /* The Canary is read from the API server, not the cache: its status is the rollout's
     * memory, and the cache may not have our last write yet (a decision taken on it
     * would repeat a step, or undo one). Everything else comes from the caches. */
    char ns[64], name[254];
    if (op_key_split(key, ns, sizeof(ns), name, sizeof(name)) != 0)
        return 0;
    ns_kube_ref ref = ref_in(canary_ref, ns, name);
    ns_kube_status st;
    cJSON *canary = NULL;
    int rc = ns_kube_get(cc->kube, &ref, &canary, &st);
    if (rc == -ENOENT)
        return 0;
    if (rc)
        return api_error(err, rc, "read", CANARY_KIND, key, &st);
    if (ns_json_path(canary, "metadata", "deletionTimestamp", NULL))
        rc = finalize(cc, canary, err);
    else if (!has_finalizer(canary))
        rc = set_finalizer(cc, canary, true, err); /* the patch's event brings us back */
    else
        rc = sync_canary(cc, canary, key, err);
    cJSON_Delete(canary);
    if (rc == -EBUSY) /* a stale read: the cache will have the new version in a moment */
        rc = -EAGAIN;
    return rc;
}

/* ---- event routing ---- */

typedef struct target_scan {
    op_controller *ctl;
    const char *ns;
    const char *name;
} target_scan;

static int enqueue_targeting_cb(void *ud, const char *key, const cJSON *c)
{
    target_scan *ts = ud;
    const char *ns = ns_json_path_str(c, "metadata", "namespace", NULL);
    const char *target = ns_json_path_str(c, "spec", "targetRef", "name", NULL);
    if (ns && target && strcmp(ns, ts->ns) == 0 && strcmp(target, ts->name) == 0)
        op_controller_enqueue(ts->ctl, key);
    return 0;
}

/* A Deployment's event concerns the Canary owning it (a primary) or the Canaries that
 * target it; a user's Deployment carries nothing of ours, so the Canaries are scanned. */
static void deployment_cb(op_controller *c, void *ud, const op_informer_event *ev)
{
    canary_controller *cc = ud;
    const cJSON *obj = ev->obj ? ev->obj : ev->old;
    char key[OP_KEY_MAX];
    if (op_owner_key(obj, "nutshell.io", CANARY_KIND, true, key, sizeof(key)) == 0) {
        op_controller_enqueue(c, key);
        return;
    }
    target_scan ts = {.ctl = c,
                      .ns = ns_json_path_str(obj, "metadata", "namespace", NULL),
                      .name = ns_json_path_str(obj, "metadata", "name", NULL)};
    if (ts.ns && ts.name)
        op_informer_foreach(cc->canaries, enqueue_targeting_cb, &ts);
}

/* Services and their EndpointSlices carry the Canary's name in CANARY_LABEL_CANARY. */
static void labelled_cb(op_controller *c, void *ud, const op_informer_event *ev)
{
    (void)ud;
    const cJSON *obj = ev->obj ? ev->obj : ev->old;
    const char *ns = ns_json_path_str(obj, "metadata", "namespace", NULL);
    const char *name =
        ns_json_str(ns_json_path(obj, "metadata", "labels", NULL), CANARY_LABEL_CANARY);
    char key[OP_KEY_MAX];
    if (ns && name && snprintf(key, sizeof(key), "%s/%s", ns, name) < (int)sizeof(key))
        op_controller_enqueue(c, key);
}

/* ---- the proxies' route table ---- */

/* Services looked up while one Canary's route is made: copies out of the cache (a
 * cache's read lock is not held across informers), freed after each Canary. */
typedef struct route_walk {
    canary_controller *cc;
    const char *domain;
    cJSON *routes;
    cJSON *svc[3];
    size_t nsvc;
    int rc;
} route_walk;

static const cJSON *route_service(void *ud, const char *ns, const char *name)
{
    route_walk *w = ud;
    char key[OP_KEY_MAX];
    cJSON *obj = NULL;
    if (w->nsvc == sizeof(w->svc) / sizeof(w->svc[0]) ||
        snprintf(key, sizeof(key), "%s/%s", ns, name) >= (int)sizeof(key) ||
        op_informer_get(w->cc->services, key, &obj) != 0)
        return NULL;
    w->svc[w->nsvc++] = obj;
    return obj;
}

static int route_canary(void *ud, const char *key, const cJSON *canary)
{
    (void)key;
    route_walk *w = ud;
    int rc = canary_route_append(w->routes, canary, w->domain, route_service, w);
    for (size_t i = 0; i < w->nsvc; i++)
        cJSON_Delete(w->svc[i]);
    w->nsvc = 0;
    if (rc < 0) {
        w->rc = rc;
        return 1; /* stop the walk */
    }
    return 0;
}

int canary_controller_routes(canary_controller *cc, const char *domain, char **table,
                             uint64_t *version)
{
    if (!op_informer_has_synced(cc->canaries) || !op_informer_has_synced(cc->services))
        return -EAGAIN;
    route_walk w = {.cc = cc, .domain = domain, .routes = cJSON_CreateArray()};
    if (!w.routes)
        return -ENOMEM;
    op_informer_foreach(cc->canaries, route_canary, &w);
    if (w.rc) {
        cJSON_Delete(w.routes);
        return w.rc;
    }
    *table = canary_routes_render(w.routes, version);
    cJSON_Delete(w.routes);
    return *table ? 0 : -ENOMEM;
}

static void changed_cb(void *ud, const op_informer_event *ev)
{
    (void)ev;
    canary_controller *cc = ud;
    cc->on_change(cc->on_change_ud);
}

int canary_controller_on_change(canary_controller *cc, void (*fn)(void *ud), void *ud)
{
    cc->on_change = fn;
    cc->on_change_ud = ud;
    int rc = op_informer_add_handler(cc->canaries, changed_cb, cc);
    if (!rc)
        rc = op_informer_add_handler(cc->services, changed_cb, cc);
    return rc;
}

/* ---- what the caches keep ----
 *
 * With a thousand Canaries the caches are most of the operator's memory (a cJSON tree
 * is about 5x its JSON). Objects lose here what no code of this controller reads. */

#define LAST_APPLIED "kubectl.kubernetes.io/last-applied-configuration"

/* Everything: `kubectl apply`'s copy of the whole object, in an annotation. */
static void slim_object(cJSON *obj)
{
    cJSON *ann = ns_json_path(obj, "metadata", "annotations", NULL);
    if (ann)
        cJSON_DeleteItemFromObjectCaseSensitive(ann, LAST_APPLIED);
}

/* EndpointSlices are watched only for their events (a readiness change moves the weight
 * in effect, which observe() reads from pods): the metadata is enough. */
static void slim_slice(cJSON *obj)
{
    cJSON *md = cJSON_DetachItemViaPointer(obj, ns_json_get(obj, "metadata"));
    cJSON *child = obj->child;
    obj->child = NULL;
    cJSON_Delete(child);
    if (md) {
        cJSON_DeleteItemFromObjectCaseSensitive(md, "annotations");
        cJSON_DeleteItemFromObjectCaseSensitive(md, "ownerReferences");
        cJSON_AddItemToObject(obj, "metadata", md);
    }
}

/* ---- wiring ---- */

int canary_controller_new(const canary_controller_opts *o, canary_controller **out, ns_err *err)
{
    if (!o || !o->kube)
        return ns_errorf(err, -EINVAL, "the Canary controller needs a client");
    canary_controller *cc = calloc(1, sizeof(*cc));
    if (!cc)
        return ns_errorf(err, -ENOMEM, "out of memory");
    cc->kube = o->kube;
    cc->rec = o->recorder;
    cc->writes = o->writes;
    op_controller_opts co = {.name = "canary",
                             .workers = o->workers ? o->workers : 1,
                             .reconcile = reconcile_cb,
                             .ctx = cc,
                             .start_paused = o->start_paused,
                             .metrics = o->metrics};
    int rc = op_controller_new(&co, &cc->ctl, err);
    struct {
        op_informer **inf;
        ns_kube_ref ref;
        const char *name;
        const char *selector;
        op_enqueue_fn fn;
        void (*transform)(cJSON *obj);
    } wire[] = {
        {&cc->canaries, canary_ref, "canaries", NULL, NULL, slim_object},
        {&cc->deployments, deploy_ref, "deployments", NULL, deployment_cb, slim_object},
        {&cc->services, svc_ref, "canary-services", CANARY_LABEL_CANARY, labelled_cb, slim_object},
        {&cc->slices, slice_ref, "canary-endpointslices", CANARY_LABEL_CANARY, labelled_cb,
         slim_slice},
    };
    for (size_t i = 0; i < sizeof(wire) / sizeof(wire[0]) && !rc; i++) {
        ns_kube_ref ref = wire[i].ref;
        ref.namespace = o->namespace;
        op_informer_opts io = {.name = wire[i].name,
                               .label_selector = wire[i].selector,
                               .resync_ms = wire[i].inf == &cc->canaries ? o->resync_ms : 0,
                               .transform = wire[i].transform};
        rc = op_informer_new(cc->kube, &ref, &io, wire[i].inf, err);
        if (!rc)
            rc = op_controller_watch(cc->ctl, *wire[i].inf, wire[i].fn, cc);
    }
    if (rc) {
        canary_controller_free(cc);
        return rc;
    }
    *out = cc;
    return 0;
}

int canary_controller_start_informers(canary_controller *cc, ns_err *err)
{
    op_informer *all[] = {cc->canaries, cc->deployments, cc->services, cc->slices};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        int rc = op_informer_start(all[i]);
        if (rc)
            return ns_errorf(err, rc, "cannot start the informers: %s", strerror(-rc));
    }
    return 0;
}

bool canary_controller_synced(canary_controller *cc)
{
    return op_informer_has_synced(cc->canaries) && op_informer_has_synced(cc->deployments) &&
           op_informer_has_synced(cc->services) && op_informer_has_synced(cc->slices);
}

int canary_controller_start(canary_controller *cc, long sync_timeout_ms, ns_err *err)
{
    return op_controller_start(cc->ctl, sync_timeout_ms, err);
}

void canary_controller_pause(canary_controller *cc)
{
    op_controller_pause(cc->ctl);
}

void canary_controller_resume(canary_controller *cc)
{
    op_controller_resume(cc->ctl);
}

void canary_controller_stop(canary_controller *cc)
{
    if (!cc)
        return;
    op_informer *all[] = {cc->canaries, cc->deployments, cc->services, cc->slices};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (all[i])
            op_informer_stop(all[i]);
    if (cc->ctl)
        op_controller_stop(cc->ctl);
}

void canary_controller_free(canary_controller *cc)
{
    if (!cc)
        return;
    canary_controller_stop(cc);
    op_informer_free(cc->canaries);
    op_informer_free(cc->deployments);
    op_informer_free(cc->services);
    op_informer_free(cc->slices);
    op_controller_free(cc->ctl);
    free(cc);
}

/* canary_render.c - the primary Deployment and Services a Canary owns, template
 * revisions, and the arithmetic of weights by endpoints. */
#include "canary_render.h"

#include "buf.h"
#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRIMARY_SUFFIX   "-primary"
#define LABEL_VALUE_MAX  63
#define LABEL_MANAGED_BY "app.kubernetes.io/managed-by"
#define MANAGER          "nutshell-operator"

/* ---- revision ---- */

static int canonical(ns_buf *b, const cJSON *v);

static int by_key(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string, y->string);
}

static int canonical_object(ns_buf *b, const cJSON *v)
{
    size_t n = 0;
    for (const cJSON *c = v->child; c; c = c->next)
        n++;
    const cJSON **keys = n ? malloc(n * sizeof(*keys)) : NULL;
    if (n && !keys)
        return -ENOMEM;
    n = 0;
    for (const cJSON *c = v->child; c; c = c->next)
        keys[n++] = c;
    if (n > 1)
        qsort(keys, n, sizeof(*keys), by_key);
    int rc = 0;
    ns_buf_putc(b, '{');
    for (size_t i = 0; i < n && !rc; i++) {
        if (i)
            ns_buf_putc(b, ',');
        ns_buf_json_string(b, keys[i]->string);
        ns_buf_putc(b, ':');
        rc = canonical(b, keys[i]);
    }
    ns_buf_putc(b, '}');
    free(keys);
    return rc;
}

/* JSON with object members sorted by key and numbers in one spelling (integers without
 * a fraction or exponent), so that equal templates give equal text whatever order and
 * number formatting the API server or a client used. */
static int canonical(ns_buf *b, const cJSON *v)
{
    if (cJSON_IsObject(v))
        return canonical_object(b, v);
    if (cJSON_IsArray(v)) {
        int rc = 0;
        ns_buf_putc(b, '[');
        for (const cJSON *c = v->child; c && !rc; c = c->next) {
            if (c != v->child)
                ns_buf_putc(b, ',');
            rc = canonical(b, c);
        }
        ns_buf_putc(b, ']');
        return rc;
    }
    if (cJSON_IsString(v)) {
        ns_buf_json_string(b, v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 1e15)
            ns_buf_printf(b, "%lld", (long long)d);
        else
            ns_buf_printf(b, "%.17g", d);
    } else if (cJSON_IsBool(v)) {
        ns_buf_puts(b, cJSON_IsTrue(v) ? "true" : "false");
    } else {
        ns_buf_puts(b, "null");
    }
    return 0;
}

int canary_template_revision(const cJSON *template, char *buf, size_t size)
{
    if (!buf || size < 17)
        return -EINVAL;
    ns_buf b;
    ns_buf_init(&b);
    int rc = canonical(&b, template);
    if (!rc && b.failed)
        rc = -ENOMEM;
    if (!rc) {
        uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64 offset basis */
        for (size_t i = 0; i < b.len; i++) {
            h ^= (unsigned char)b.data[i];
            h *= 0x100000001b3ULL; /* FNV 64 prime */
        }
        snprintf(buf, size, "%016" PRIx64, h);
    }
    ns_buf_free(&b);
    return rc;
}

/* ---- names and checks ---- */

void canary_names_init(const canary_spec *spec, canary_names *out)
{
    snprintf(out->primary, sizeof(out->primary), "%s" PRIMARY_SUFFIX, spec->target);
    snprintf(out->apex, sizeof(out->apex), "%s", spec->service);
    snprintf(out->svc_primary, sizeof(out->svc_primary), "%s" PRIMARY_SUFFIX, spec->service);
    snprintf(out->svc_canary, sizeof(out->svc_canary), "%s-canary", spec->service);
}

int canary_target_check(const canary_spec *spec, const cJSON *target, ns_err *err)
{
    const char *name = spec->target;
    const cJSON *sel = ns_json_path(target, "spec", "selector", NULL);
    const cJSON *ml = ns_json_get(sel, "matchLabels");
    const cJSON *mx = ns_json_get(sel, "matchExpressions");
    const cJSON *labels = ns_json_path(target, "spec", "template", "metadata", "labels", NULL);
    if (!cJSON_IsObject(target))
        return ns_errorf(err, -EINVAL, "Deployment %s is not a JSON object", name);
    /* The primary's selector is derived label by label; an expression has no "-primary"
     * form that is sure to be disjoint from the original. */
    if (mx && !cJSON_IsNull(mx) && cJSON_GetArraySize(mx) > 0)
        return ns_errorf(err, -EINVAL,
                         "Deployment %s selects its pods with matchExpressions; only "
                         "matchLabels selectors can be copied to a primary",
                         name);
    if (!cJSON_IsObject(ml) || !ml->child)
        return ns_errorf(err, -EINVAL, "Deployment %s has no spec.selector.matchLabels", name);
    const cJSON *l;
    cJSON_ArrayForEach(l, ml)
    {
        if (!cJSON_IsString(l))
            return ns_errorf(err, -EINVAL,
                             "Deployment %s: spec.selector.matchLabels.%s is not a string", name,
                             l->string);
        if (strcmp(l->string, CANARY_LABEL_APEX) == 0)
            return ns_errorf(err, -EINVAL,
                             "Deployment %s selects on %s, which the operator sets on pods "
                             "itself",
                             name, CANARY_LABEL_APEX);
        if (strlen(l->valuestring) + strlen(PRIMARY_SUFFIX) > LABEL_VALUE_MAX)
            return ns_errorf(err, -EINVAL,
                             "Deployment %s: the selector label %s=%s is too long to take the "
                             "suffix \"" PRIMARY_SUFFIX "\" (label values have at most %d "
                             "characters)",
                             name, l->string, l->valuestring, LABEL_VALUE_MAX);
        const char *v = ns_json_str(labels, l->string);
        if (!v || strcmp(v, l->valuestring) != 0)
            return ns_errorf(err, -EINVAL,
                             "Deployment %s: its pod template does not carry the selector label "
                             "%s=%s",
                             name, l->string, l->valuestring);
    }
    /* Pods with the label from their template would be in the apex whatever the weight. */
    if (ns_json_get(labels, CANARY_LABEL_APEX))
        return ns_errorf(err, -EINVAL,
                         "Deployment %s: its pod template carries the label %s, which the "
                         "operator sets on pods itself; remove it from the template",
                         name, CANARY_LABEL_APEX);
    return 0;
}

/* ---- building objects (ns_jb: the first allocation failure is checked once) ---- */

/* apiVersion, kind and metadata of an object the Canary owns. The target's own labels
 * are not copied: tools that track objects by label (Argo CD's app.kubernetes.io/
 * instance, Helm's) would take the copy for theirs and prune or fight over it. */
static cJSON *owned_object(ns_jb *b, const canary_spec *spec, const char *api_version,
                           const char *kind, const char *name, cJSON **meta_out)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        b->oom = true;
        return NULL;
    }
    ns_jb_str(b, o, "apiVersion", api_version);
    ns_jb_str(b, o, "kind", kind);
    cJSON *meta = ns_jb_obj(b, o, "metadata");
    ns_jb_str(b, meta, "name", name);
    ns_jb_str(b, meta, "namespace", spec->namespace);
    cJSON *labels = ns_jb_obj(b, meta, "labels");
    ns_jb_str(b, labels, LABEL_MANAGED_BY, MANAGER);
    ns_jb_str(b, labels, CANARY_LABEL_CANARY, spec->name);
    /* controller: true makes the Canary the one owner; blockOwnerDeletion keeps a
     * foreground delete of it waiting until these are gone. */
    cJSON *ref = ns_jb_obj(b, ns_jb_arr(b, meta, "ownerReferences"), NULL);
    ns_jb_str(b, ref, "apiVersion", CANARY_API_VERSION);
    ns_jb_str(b, ref, "kind", CANARY_KIND);
    ns_jb_str(b, ref, "name", spec->name);
    ns_jb_str(b, ref, "uid", spec->uid);
    ns_jb_bool(b, ref, "controller", true);
    ns_jb_bool(b, ref, "blockOwnerDeletion", true);
    if (meta_out)
        *meta_out = meta;
    return o;
}

/* A copy of matchLabels with each value suffixed: the primary's selector. */
static cJSON *primary_labels(ns_jb *b, const cJSON *match_labels)
{
    cJSON *out = cJSON_CreateObject();
    if (!out)
        b->oom = true;
    const cJSON *l;
    cJSON_ArrayForEach(l, match_labels)
    {
        char v[LABEL_VALUE_MAX + 1];
        snprintf(v, sizeof(v), "%s" PRIMARY_SUFFIX, l->valuestring);
        ns_jb_str(b, out, l->string, v);
    }
    return out;
}

/* The target's pod template for the primary: the selector labels rewritten, the apex
 * label added, and what belongs to the target's ReplicaSets or to the API server's
 * bookkeeping left out. */
static cJSON *primary_template(ns_jb *b, const canary_spec *spec, const cJSON *target)
{
    const cJSON *ml = ns_json_path(target, "spec", "selector", "matchLabels", NULL);
    cJSON *t = cJSON_Duplicate(ns_json_path(target, "spec", "template", NULL), true);
    cJSON *meta = t ? ns_json_ensure_object(t, "metadata") : NULL;
    cJSON *labels = meta ? ns_json_ensure_object(meta, "labels") : NULL;
    if (!labels) {
        b->oom = true;
        cJSON_Delete(t);
        return NULL;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "creationTimestamp");
    cJSON_DeleteItemFromObjectCaseSensitive(labels, "pod-template-hash");
    const cJSON *l;
    cJSON_ArrayForEach(l, ml)
    {
        char v[LABEL_VALUE_MAX + 1];
        snprintf(v, sizeof(v), "%s" PRIMARY_SUFFIX, l->valuestring);
        ns_jb_set_str(b, labels, l->string, v);
    }
    ns_jb_set_str(b, labels, CANARY_LABEL_APEX, spec->service);
    return t;
}

int canary_render_primary(const canary_spec *spec, const cJSON *target, const char *revision,
                          int32_t replicas, cJSON **out, ns_err *err)
{
    int rc = canary_target_check(spec, target, err);
    if (rc)
        return rc;
    canary_names names;
    canary_names_init(spec, &names);
    ns_jb b = {0};
    cJSON *meta = NULL;
    cJSON *d = owned_object(&b, spec, "apps/v1", "Deployment", names.primary, &meta);
    /* Not the target's annotations: deployment.kubernetes.io/revision and
     * kubectl.kubernetes.io/last-applied-configuration describe the target. */
    ns_jb_str(&b, ns_jb_obj(&b, meta, "annotations"), CANARY_ANN_REVISION,
              revision ? revision : "");

    const cJSON *tspec = ns_json_get(target, "spec");
    cJSON *spec_out = ns_jb_obj(&b, d, "spec");
    ns_jb_num(&b, spec_out, "replicas", replicas < 0 ? 0 : replicas);
    cJSON *sel = ns_jb_obj(&b, spec_out, "selector");
    ns_jb_add(&b, sel, "matchLabels",
              primary_labels(&b, ns_json_path(tspec, "selector", "matchLabels", NULL)));
    /* How the primary rolls out is the target's choice too. */
    static const char *const copied[] = {"strategy", "minReadySeconds", "revisionHistoryLimit",
                                         "progressDeadlineSeconds"};
    for (size_t i = 0; i < sizeof(copied) / sizeof(copied[0]); i++) {
        const cJSON *v = ns_json_get(tspec, copied[i]);
        if (v && !cJSON_IsNull(v))
            ns_jb_add(&b, spec_out, copied[i], cJSON_Duplicate(v, true));
    }
    ns_jb_add(&b, spec_out, "template", primary_template(&b, spec, target));
    if (!d || b.oom) {
        cJSON_Delete(d);
        return ns_errorf(err, -ENOMEM, "out of memory rendering the primary Deployment");
    }
    *out = d;
    return 0;
}

static void add_service(ns_jb *b, cJSON *list, const canary_spec *spec, const char *name,
                        cJSON *selector)
{
    cJSON *svc = ns_jb_add(b, list, NULL, owned_object(b, spec, "v1", "Service", name, NULL));
    cJSON *s = ns_jb_obj(b, svc, "spec");
    ns_jb_str(b, s, "type", "ClusterIP");
    ns_jb_add(b, s, "selector", selector);
    cJSON *port = ns_jb_obj(b, ns_jb_arr(b, s, "ports"), NULL);
    ns_jb_str(b, port, "name", spec->port_name);
    ns_jb_num(b, port, "port", spec->port);
    if (spec->target_port)
        ns_jb_add(b, port, "targetPort", cJSON_Duplicate(spec->target_port, false));
    else
        ns_jb_num(b, port, "targetPort", spec->port);
    ns_jb_str(b, port, "protocol", "TCP");
}

int canary_render_services(const canary_spec *spec, const cJSON *target, cJSON **out, ns_err *err)
{
    int rc = canary_target_check(spec, target, err);
    if (rc)
        return rc;
    canary_names names;
    canary_names_init(spec, &names);
    const cJSON *ml = ns_json_path(target, "spec", "selector", "matchLabels", NULL);
    ns_jb b = {0};
    cJSON *list = cJSON_CreateArray();
    if (!list)
        b.oom = true;
    cJSON *apex = cJSON_CreateObject();
    ns_jb_str(&b, apex, CANARY_LABEL_APEX, spec->service);
    add_service(&b, list, spec, names.apex, apex);
    add_service(&b, list, spec, names.svc_primary, primary_labels(&b, ml));
    add_service(&b, list, spec, names.svc_canary, cJSON_Duplicate(ml, true));
    if (b.oom) {
        cJSON_Delete(list);
        return ns_errorf(err, -ENOMEM, "out of memory rendering the Canary's Services");
    }
    *out = list;
    return 0;
}

/* ---- weights ---- */

int32_t canary_replicas_for_weight(int32_t primary, int32_t w)
{
    int64_t p = primary > 1 ? primary : 1;
    if (w <= 0)
        return 0;
    if (w >= 100)
        return (int32_t)p;
    /* round(P * w / (100 - w)), halves up, in integers */
    int64_t num = (int64_t)(primary > 0 ? primary : 0) * w, den = 100 - w;
    int64_t c = (2 * num + den) / (2 * den);
    if (c < 1)
        c = 1;
    if (c > 4 * p)
        c = 4 * p;
    return (int32_t)c;
}

int32_t canary_effective_weight(int32_t canary_ready, int32_t primary_ready)
{
    int64_t c = canary_ready > 0 ? canary_ready : 0, p = primary_ready > 0 ? primary_ready : 0;
    if (c + p == 0)
        return 0;
    return (int32_t)((200 * c + (c + p)) / (2 * (c + p)));
}

/* ---- pods ---- */

static bool pod_deleting(const cJSON *pod)
{
    const cJSON *ts = ns_json_path(pod, "metadata", "deletionTimestamp", NULL);
    return ts && !cJSON_IsNull(ts);
}

static bool pod_in_apex(const cJSON *pod, const char *svc)
{
    const char *v = ns_json_path_str(pod, "metadata", "labels", CANARY_LABEL_APEX, NULL);
    return v && strcmp(v, svc) == 0;
}

static bool pod_ready(const cJSON *pod)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, ns_json_path(pod, "status", "conditions", NULL))
    {
        const char *type = ns_json_str(c, "type"), *status = ns_json_str(c, "status");
        if (type && strcmp(type, "Ready") == 0)
            return status && strcmp(status, "True") == 0;
    }
    return false;
}

/* A pod being deleted is leaving the endpoints anyway; relabelling it only costs a
 * write. For removal only our value counts: a pod labelled for another apex Service is
 * not in ours, and taking the label would take it out of that one. */
int canary_pods_to_label(const cJSON *pods, const char *svc, bool want, cJSON *out)
{
    int n = 0;
    const cJSON *pod;
    cJSON_ArrayForEach(pod, pods)
    {
        const char *name = ns_json_path_str(pod, "metadata", "name", NULL);
        if (!name || pod_deleting(pod) || pod_in_apex(pod, svc) == want)
            continue;
        cJSON *s = cJSON_CreateString(name);
        if (!s || !cJSON_AddItemToArray(out, s)) {
            cJSON_Delete(s);
            return -ENOMEM;
        }
        n++;
    }
    return n;
}

/* Restarts of the containers in `statuses`; for init containers (sidecars != NULL) only
 * native sidecars (restartPolicy Always) count: a plain init container that retries,
 * waiting for a dependency, is not a crash of the new version, while a sidecar (the
 * mesh proxy among them) that restarts is. */
static int64_t restart_count(const cJSON *statuses, const cJSON *sidecars)
{
    int64_t n = 0;
    const cJSON *cs;
    cJSON_ArrayForEach(cs, statuses)
    {
        const cJSON *r = ns_json_get(cs, "restartCount");
        if (!cJSON_IsNumber(r) || !(r->valuedouble > 0 && r->valuedouble < INT32_MAX))
            continue;
        if (sidecars) {
            const char *name = ns_json_str(cs, "name");
            const cJSON *c;
            bool sidecar = false;
            cJSON_ArrayForEach(c, sidecars)
            {
                const char *cn = ns_json_str(c, "name"), *rp = ns_json_str(c, "restartPolicy");
                if (name && cn && strcmp(name, cn) == 0 && rp && strcmp(rp, "Always") == 0)
                    sidecar = true;
            }
            if (!sidecar)
                continue;
        }
        n += (int64_t)r->valuedouble;
    }
    return n;
}

void canary_pod_stats_of(const cJSON *pods, const char *svc, canary_pod_stats *out)
{
    *out = (canary_pod_stats){0};
    int64_t restarts = 0;
    const cJSON *pod;
    cJSON_ArrayForEach(pod, pods)
    {
        if (pod_deleting(pod))
            continue;
        out->pods++;
        if (pod_ready(pod)) {
            out->ready++;
            if (pod_in_apex(pod, svc))
                out->ready_in_apex++;
        }
        const cJSON *st = ns_json_get(pod, "status");
        const cJSON *inits = ns_json_path(pod, "spec", "initContainers", NULL);
        restarts += restart_count(ns_json_get(st, "containerStatuses"), NULL);
        if (cJSON_IsArray(inits))
            restarts += restart_count(ns_json_get(st, "initContainerStatuses"), inits);
    }
    out->restarts = restarts > INT32_MAX ? INT32_MAX : (int32_t)restarts;
}

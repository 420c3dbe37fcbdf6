/* mesh_controller.c - the Mesh controller's I/O: informers, reconcile, writes, status. */
#include "mesh_controller.h"

#include "files.h"
#include "informer.h"
#include "json.h"
#include "leader.h"
#include "log.h"
#include "mesh_certs.h"
#include "mesh_render.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- the kinds a Mesh owns ---- */

typedef enum owned_index {
    K_SA,
    K_CM,
    K_SECRET,
    K_DEPLOY,
    K_SVC,
    K_PDB,
    K_MWC,
    K_COUNT,
} owned_index;

typedef struct owned_kind {
    const char *kind;
    const char *group;
    const char *version;
    const char *resource;
    bool namespaced;
} owned_kind;

static const owned_kind kinds[K_COUNT] = {
    [K_SA] = {"ServiceAccount", "", "v1", "serviceaccounts", true},
    [K_CM] = {"ConfigMap", "", "v1", "configmaps", true},
    [K_SECRET] = {"Secret", "", "v1", "secrets", true},
    [K_DEPLOY] = {"Deployment", "apps", "v1", "deployments", true},
    [K_SVC] = {"Service", "", "v1", "services", true},
    [K_PDB] = {"PodDisruptionBudget", "policy", "v1", "poddisruptionbudgets", true},
    [K_MWC] = {"MutatingWebhookConfiguration", "admissionregistration.k8s.io", "v1",
               "mutatingwebhookconfigurations", false},
};

static const ns_kube_ref mesh_ref = {
    .group = "nutshell.io", .version = "v1alpha1", .resource = "meshes"};

/* Requeue a certificate deadline at most this far ahead, so that a clock step or a
 * suspended host never leaves a renewal waiting for months. */
#define CERT_RECHECK_MAX_S (12 * 3600)
/* A reconcile that writes steps the certificate plan at most this many times. */
#define CERT_MAX_STEPS 4

struct mesh_controller {
    ns_kube *kube;
    char *namespace;
    char *version;
    op_recorder *rec;
    ns_metric *writes;
    op_informer *meshes;
    op_informer *owned[K_COUNT];
    op_controller *ctl;
    char *webhook_url; /* local mode: clientConfig.url; NULL: the Service */
    char *url_host;    /* the URL's host (an extra SAN of the serving certificate) */
    bool url_host_ip;  /* ... an IP address */
    char *local_dir;   /* local mode: where the injector's files are written; NULL: none */
};

static int kind_index(const char *kind)
{
    for (int i = 0; kind && i < K_COUNT; i++)
        if (strcmp(kinds[i].kind, kind) == 0)
            return i;
    return -1;
}

static ns_kube_ref owned_ref(const mesh_controller *mc, int i, const char *name)
{
    return (ns_kube_ref){.group = kinds[i].group,
                         .version = kinds[i].version,
                         .resource = kinds[i].resource,
                         .namespace = kinds[i].namespaced ? mc->namespace : NULL,
                         .name = name};
}

/* The informer cache key of owned object `name` of kind `i`. */
static void owned_key(const mesh_controller *mc, int i, const char *name, char *buf, size_t size)
{
    if (kinds[i].namespaced)
        snprintf(buf, size, "%s/%s", mc->namespace, name);
    else
        snprintf(buf, size, "%s", name);
}

/* A deep copy of the cached owned object, or NULL when absent. */
static cJSON *cached(const mesh_controller *mc, int i, const char *name)
{
    char key[OP_KEY_MAX];
    cJSON *obj = NULL;
    owned_key(mc, i, name, key, sizeof(key));
    if (op_informer_get(mc->owned[i], key, &obj) != 0)
        return NULL;
    return obj;
}

static void count_write(mesh_controller *mc, const char *verb, const char *kind, const char *name)
{
    if (mc->writes)
        ns_counter_add(mc->writes, 1);
    ns_log(NS_LOG_DEBUG, "write", "verb", verb, "kind", kind, "name", name, NULL);
}

/* Records an Event about `mesh` if there is a recorder. */
#define EVENT(mc, mesh, type, reason, ...)                                                         \
    do {                                                                                           \
        if ((mc)->rec)                                                                             \
            op_recorder_event((mc)->rec, (mesh), (type), (reason), __VA_ARGS__);                   \
    } while (0)

/* Fills `err` from an API failure: "<verb> <kind> <name>: <server's message>". */
static int api_error(ns_err *err, int rc, const char *verb, const char *kind, const char *name,
                     const ns_kube_status *st)
{
    return ns_errorf(err, rc, "cannot %s %s %s: %s", verb, kind, name,
                     st->message[0] ? st->message : strerror(-rc));
}

/* Server-side apply of `obj` (kind `i`), forcing our field ownership: the operator is the
 * one source of truth for the fields it renders. The live object is returned in *live
 * (caller frees) when `live` is not NULL. */
static int apply_owned(mesh_controller *mc, int i, const cJSON *obj, cJSON **live, ns_err *err)
{
    const char *name = ns_json_path_str(obj, "metadata", "name", NULL);
    ns_kube_ref ref = owned_ref(mc, i, name);
    ns_kube_write_opts wo = {.field_manager = MESH_FIELD_MANAGER, .force = true};
    ns_kube_status st;
    int rc = ns_kube_apply(mc->kube, &ref, obj, &wo, live, &st);
    count_write(mc, "apply", kinds[i].kind, name);
    if (rc)
        return api_error(err, rc, "apply", kinds[i].kind, name, &st);
    return 0;
}

/* ---- finalizer ---- */

/* True if `obj` is controlled by the Mesh with `uid`. */
static bool owned_by(const cJSON *obj, const char *uid)
{
    const cJSON *r;
    cJSON_ArrayForEach(r, ns_json_path(obj, "metadata", "ownerReferences", NULL))
    {
        const char *u = ns_json_str(r, "uid");
        if (ns_json_true(r, "controller") && u && strcmp(u, uid) == 0)
            return true;
    }
    return false;
}

static bool has_finalizer(const cJSON *mesh)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, ns_json_path(mesh, "metadata", "finalizers", NULL))
    {
        if (cJSON_IsString(f) && strcmp(f->valuestring, MESH_FINALIZER) == 0)
            return true;
    }
    return false;
}

/* Writes metadata.finalizers with ours added or removed, as a merge patch carrying the
 * resourceVersion we read: a concurrent change of the list gives 409 and a re-read, never
 * a lost finalizer of someone else. The patched Mesh goes to *out when not NULL. */
static int set_finalizer(mesh_controller *mc, const cJSON *mesh, bool present, cJSON **out,
                         ns_err *err)
{
    const char *name = ns_json_path_str(mesh, "metadata", "name", NULL);
    cJSON *patch = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(patch, "metadata");
    cJSON *list = cJSON_AddArrayToObject(meta, "finalizers");
    cJSON_AddStringToObject(meta, "resourceVersion",
                            ns_json_path_str(mesh, "metadata", "resourceVersion", NULL));
    const cJSON *f;
    cJSON_ArrayForEach(f, ns_json_path(mesh, "metadata", "finalizers", NULL))
    {
        if (cJSON_IsString(f) && strcmp(f->valuestring, MESH_FINALIZER) != 0)
            cJSON_AddItemToArray(list, cJSON_CreateString(f->valuestring));
    }
    if (present)
        cJSON_AddItemToArray(list, cJSON_CreateString(MESH_FINALIZER));
    ns_kube_ref ref = mesh_ref;
    ref.name = name;
    ns_kube_write_opts wo = {.field_manager = MESH_FIELD_MANAGER};
    ns_kube_status st;
    int rc = ns_kube_patch(mc->kube, &ref, NS_KUBE_PATCH_MERGE, patch, &wo, out, &st);
    cJSON_Delete(patch);
    count_write(mc, "patch", MESH_KIND, name);
    if (rc == -ENOENT && !present)
        return 0; /* gone already: nothing left to release */
    if (rc)
        return api_error(err, rc, present ? "add the finalizer to" : "remove the finalizer from",
                         MESH_KIND, name, &st);
    return 0;
}

/* Deletion: the webhook configuration goes first, so that pod creation is never sent to
 * an injector that is about to disappear; only then may the Mesh (and, through
 * ownerReferences, everything else) go. */
static int finalize(mesh_controller *mc, const cJSON *mesh, ns_err *err)
{
    if (!has_finalizer(mesh))
        return 0;
    const char *rev = ns_json_path_str(mesh, "spec", "revision", NULL);
    mesh_names names;
    mesh_names_init(&names, rev && *rev ? rev : "default");

    /* Read from the API server, not the cache: a webhook created a moment ago may not be
     * in it yet. Only our own is deleted: a second Mesh refused for reusing a revision
     * must not take the first one's webhook with it. */
    const char *uid = ns_json_path_str(mesh, "metadata", "uid", NULL);
    ns_kube_ref ref = owned_ref(mc, K_MWC, names.webhook);
    ns_kube_status st;
    cJSON *hook = NULL;
    int rc = ns_kube_get(mc->kube, &ref, &hook, &st);
    /* -EINVAL: a name the API server refuses (a revision the spec never validated), so
     * no such webhook can exist. */
    if (rc && rc != -ENOENT && rc != -EINVAL)
        return api_error(err, rc, "read", kinds[K_MWC].kind, names.webhook, &st);
    if (!rc && uid && owned_by(hook, uid)) {
        ns_kube_delete_opts dopts = {.precondition_uid =
                                         ns_json_path_str(hook, "metadata", "uid", NULL)};
        rc = ns_kube_delete(mc->kube, &ref, &dopts, NULL, &st);
        count_write(mc, "delete", kinds[K_MWC].kind, names.webhook);
        if (rc == 0)
            EVENT(mc, mesh, "Normal", "WebhookRemoved",
                  "deleted MutatingWebhookConfiguration %s before the Mesh", names.webhook);
        else if (rc != -ENOENT) {
            cJSON_Delete(hook);
            return api_error(err, rc, "delete", kinds[K_MWC].kind, names.webhook, &st);
        }
    }
    cJSON_Delete(hook);
    return set_finalizer(mc, mesh, false, NULL, err);
}

/* ---- status ---- */

static int64_t json_int(const cJSON *obj, const char *a, const char *b)
{
    const cJSON *v = ns_json_path(obj, a, b, NULL);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static time_t json_time(const cJSON *obj, const char *a, const char *b)
{
    const char *s = ns_json_path_str(obj, a, b, NULL);
    int64_t us;
    if (!s || op_time_parse(s, &us) != 0)
        return 0;
    return (time_t)(us / 1000000);
}

static bool condition_true(const cJSON *status, const char *type)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, ns_json_get(status, "conditions"))
    {
        const char *t = ns_json_str(c, "type"), *v = ns_json_str(c, "status");
        if (t && v && strcmp(t, type) == 0)
            return strcmp(v, "True") == 0;
    }
    return false;
}

/* Writes `status` to the Mesh's status subresource unless it is what the Mesh already
 * has. A PUT with the resourceVersion we read: a stale read gives 409 and a re-read. */
static int write_status(mesh_controller *mc, const cJSON *mesh, cJSON *status, ns_err *err)
{
    const cJSON *prev = ns_json_get(mesh, "status");
    if (prev && cJSON_Compare(prev, status, true))
        return 0;
    const char *name = ns_json_path_str(mesh, "metadata", "name", NULL);
    const char *prev_phase = ns_json_str(prev, "phase");
    const char *phase = ns_json_str(status, "phase");
    cJSON *body = cJSON_Duplicate(mesh, true);
    if (!body)
        return ns_errorf(err, -ENOMEM, "out of memory");
    cJSON_DeleteItemFromObjectCaseSensitive(body, "status");
    cJSON_AddItemToObject(body, "status", cJSON_Duplicate(status, true));
    ns_kube_ref ref = mesh_ref;
    ref.name = name;
    ns_kube_write_opts wo = {.field_manager = MESH_FIELD_MANAGER};
    ns_kube_status st;
    int rc = ns_kube_update_status(mc->kube, &ref, body, &wo, NULL, &st);
    cJSON_Delete(body);
    count_write(mc, "update-status", MESH_KIND, name);
    if (rc)
        return api_error(err, rc, "update the status of", MESH_KIND, name, &st);
    if (phase && (!prev_phase || strcmp(prev_phase, phase) != 0)) {
        const cJSON *ready = cJSON_GetArrayItem(ns_json_get(status, "conditions"), 0);
        ns_log(NS_LOG_INFO, "mesh phase", "mesh", name, "phase", phase, "message",
               ns_json_str(ready, "message"), NULL);
        if (strcmp(phase, "Ready") == 0)
            EVENT(mc, mesh, "Normal", "Ready", "%s", ns_json_str(ready, "message"));
    }
    return 0;
}

/* A spec that can never work: Degraded with the reason, a Warning Event, and no retry
 * (the next spec change brings the Mesh back). What was last observed stays in the
 * status: the objects of the last good spec are left running. */
static int report_invalid(mesh_controller *mc, const cJSON *mesh, const char *why, ns_err *err)
{
    const cJSON *prev = ns_json_get(mesh, "status");
    char msg[NS_ERR_MSG_MAX + 32];
    snprintf(msg, sizeof(msg), "invalid spec: %s", why);
    bool hook_ok = condition_true(prev, "WebhookReady");
    mesh_observed obs = {
        .now = time(NULL),
        .generation = json_int(mesh, "metadata", "generation"),
        .replicas = (int32_t)json_int(prev, "injector", "replicas"),
        .ready_replicas = (int32_t)json_int(prev, "injector", "readyReplicas"),
        .cert_not_after = json_time(prev, "certificate", "notAfter"),
        .ca_not_after = json_time(prev, "certificate", "caNotAfter"),
        .webhook_present = hook_ok,
        .webhook_ca_matches = hook_ok,
        .error = msg,
    };
    cJSON *status = NULL;
    if (mesh_status_build(prev, &obs, &status) != 0)
        return ns_errorf(err, -ENOMEM, "out of memory");
    ns_log(NS_LOG_WARN, "invalid Mesh spec", "mesh",
           ns_json_path_str(mesh, "metadata", "name", NULL), "reason", why, NULL);
    EVENT(mc, mesh, "Warning", "InvalidSpec", "%s", msg);
    int rc = write_status(mc, mesh, status, err);
    cJSON_Delete(status);
    return rc;
}

/* ---- certificates ---- */

typedef struct cert_state {
    mesh_ca_store store;
    ns_tls_pair serving; /* cert_pem NULL when there is none */
} cert_state;

static void cert_state_free(cert_state *cs)
{
    mesh_ca_store_free(&cs->store);
    ns_tls_pair_free(&cs->serving);
    memset(cs, 0, sizeof(*cs));
}

/* Reads the CA store and the serving pair, from the cache or (`fresh`) from the API
 * server. Unreadable material counts as absent: the planner replaces it. */
static int cert_state_load(mesh_controller *mc, const mesh_spec *spec, bool fresh, cert_state *cs,
                           ns_err *err)
{
    const char *names[2] = {spec->names.ca, spec->names.tls};
    cJSON *secrets[2] = {NULL, NULL};
    for (int j = 0; j < 2; j++) {
        if (!fresh) {
            secrets[j] = cached(mc, K_SECRET, names[j]);
            continue;
        }
        ns_kube_ref ref = owned_ref(mc, K_SECRET, names[j]);
        ns_kube_status st;
        int rc = ns_kube_get(mc->kube, &ref, &secrets[j], &st);
        if (rc && rc != -ENOENT) {
            cJSON_Delete(secrets[0]);
            return api_error(err, rc, "read", "Secret", names[j], &st);
        }
    }
    ns_err perr = {0};
    if (secrets[0] && mesh_ca_store_parse(secrets[0], &cs->store, &perr) != 0)
        ns_log(NS_LOG_WARN, "unusable CA store; a new CA will be made", "secret", names[0],
               "reason", perr.msg, NULL);
    if (secrets[1] && mesh_tls_secret_read(secrets[1], &cs->serving, &perr) != 0)
        memset(&cs->serving, 0, sizeof(cs->serving));
    /* Local mode: a serving certificate not valid for the URL's host (minted before
     * --webhook-url was given) counts as absent, so the planner issues a new one. */
    if (cs->serving.cert_pem && mc->url_host &&
        !mesh_certs_cert_covers(cs->serving.cert_pem, mc->url_host)) {
        ns_log(NS_LOG_INFO,
               "serving certificate does not name the webhook URL's host; "
               "a new one will be issued",
               "host", mc->url_host, NULL);
        ns_tls_pair_free(&cs->serving);
        memset(&cs->serving, 0, sizeof(cs->serving));
    }
    cJSON_Delete(secrets[0]);
    cJSON_Delete(secrets[1]);
    return 0;
}

/* The CA store is written before any certificate it signs is used, so that a restart
 * never loses the key of a CA already in a bundle. */
static int write_store(mesh_controller *mc, const mesh_spec *spec, const cert_state *cs,
                       ns_err *err)
{
    cJSON *secret = mesh_ca_store_render(&cs->store, spec, mc->namespace);
    if (!secret)
        return ns_errorf(err, -ENOMEM, "out of memory rendering the CA store");
    int rc = apply_owned(mc, K_SECRET, secret, NULL, err);
    cJSON_Delete(secret);
    return rc;
}

static int cert_step(mesh_controller *mc, const cJSON *mesh, const mesh_spec *spec,
                     const mesh_cert_plan *plan, cert_state *cs, time_t now, ns_err *err)
{
    char when[32];
    ns_tls_pair fresh = {0};
    int rc = 0;
    switch (plan->action) {
    case MESH_CERT_MINT_CA:
    case MESH_CERT_ROTATE_CA: {
        bool rotate = plan->action == MESH_CERT_ROTATE_CA;
        rc = mesh_certs_mint_ca(spec->certs.ca_validity, now, &fresh, err);
        if (rc)
            return rc;
        mesh_ca_store_set_ca(&cs->store, &fresh, rotate);
        rc = write_store(mc, spec, cs, err);
        if (rc)
            return rc;
        mesh_time_format(cs->store.ca.not_after, when, sizeof(when));
        EVENT(mc, mesh, "Normal", rotate ? "CARotated" : "CACreated", "%s; new CA valid until %s",
              plan->reason, when);
        break;
    }
    case MESH_CERT_MINT_SERVING: {
        const char *host[] = {mc->url_host, NULL};
        rc = mesh_certs_mint_serving_sans(&cs->store.ca, spec->names.injector, mc->namespace,
                                          mc->url_host && !mc->url_host_ip ? host : NULL,
                                          mc->url_host && mc->url_host_ip ? host : NULL,
                                          spec->certs.validity, &fresh, err);
    }
        if (rc)
            return rc;
        /* The Secret itself is written with the rendered objects, right after. */
        ns_tls_pair_free(&cs->serving);
        cs->serving = fresh;
        mesh_time_format(cs->serving.not_after, when, sizeof(when));
        EVENT(mc, mesh, "Normal", "CertificateIssued", "%s; valid until %s", plan->reason, when);
        break;
    case MESH_CERT_DROP_PREVIOUS:
        mesh_ca_store_drop_previous(&cs->store);
        rc = write_store(mc, spec, cs, err);
        if (rc)
            return rc;
        EVENT(mc, mesh, "Normal", "PreviousCARemoved", "%s", plan->reason);
        break;
    case MESH_CERT_NOTHING:
    case MESH_CERT_WAIT:
        break;
    }
    ns_log(NS_LOG_INFO, "certificate step", "mesh", spec->name, "action",
           mesh_cert_action_name(plan->action), "reason", plan->reason, NULL);
    return 0;
}

/* Runs the certificate plan until it has nothing to do now, and leaves the material to
 * render in *cs. *next is when to look again (0: no deadline). Planning starts from the
 * caches; before acting, it re-reads the Secrets from the API server, so that a cache
 * that has not yet seen our last write never makes us mint twice. */
static int certs_sync(mesh_controller *mc, const cJSON *mesh, const mesh_spec *spec, cert_state *cs,
                      time_t *next, ns_err *err)
{
    const mesh_cert_policy policy = {.ca_validity = spec->certs.ca_validity,
                                     .validity = spec->certs.validity,
                                     .renew_before = spec->certs.renew_before,
                                     .serve_grace = MESH_CERT_SERVE_GRACE};
    cJSON *webhook = cached(mc, K_MWC, spec->names.webhook);
    bool fresh = false;
    int rc = cert_state_load(mc, spec, false, cs, err);
    *next = 0;
    for (int step = 0; !rc && step < CERT_MAX_STEPS + 1; step++) {
        time_t now = time(NULL);
        mesh_cert_material m = {.store = &cs->store,
                                .cert_pem = cs->serving.cert_pem,
                                .webhook = webhook,
                                .served_pem = NULL};
        mesh_cert_facts facts;
        rc = mesh_certs_facts(&m, now, &facts, err);
        if (rc)
            break;
        mesh_cert_plan plan = mesh_certs_plan(&facts, &policy);
        if (plan.action == MESH_CERT_NOTHING || plan.action == MESH_CERT_WAIT) {
            *next = plan.next;
            if (plan.action == MESH_CERT_WAIT)
                ns_log(NS_LOG_DEBUG, "certificate plan waits", "mesh", spec->name, "reason",
                       plan.reason, NULL);
            break;
        }
        if (!fresh) {
            fresh = true;
            cert_state_free(cs);
            rc = cert_state_load(mc, spec, true, cs, err);
            continue;
        }
        rc = cert_step(mc, mesh, spec, &plan, cs, now, err);
    }
    cJSON_Delete(webhook);
    return rc;
}

/* ---- objects ---- */

static bool desired_has(const cJSON *desired, const char *kind, const char *name)
{
    const cJSON *d;
    cJSON_ArrayForEach(d, desired)
    {
        const char *k = ns_json_str(d, "kind");
        const char *n = ns_json_path_str(d, "metadata", "name", NULL);
        if (k && n && strcmp(k, kind) == 0 && strcmp(n, name) == 0)
            return true;
    }
    return false;
}

/* What prune looks for in one informer's cache: objects of this Mesh that the current
 * render no longer has. Only their names and uids are copied out, under the cache's read
 * lock; the deletes happen after, without it. */
typedef struct prune_scan {
    const mesh_spec *spec;
    const cJSON *desired;
    const char *kind;
    const char *namespace; /* NULL for cluster-scoped kinds */
    bool keep_ca;          /* Secrets: the CA store is never rendered but always kept */
    cJSON *victims;        /* [{"name","uid"}] */
} prune_scan;

static int prune_visit_cb(void *ud, const char *key, const cJSON *o)
{
    prune_scan *ps = ud;
    const char *name = ns_json_path_str(o, "metadata", "name", NULL);
    const char *ns = ns_json_path_str(o, "metadata", "namespace", NULL);
    if (!name || (ps->namespace && (!ns || strcmp(ns, ps->namespace) != 0)) ||
        !owned_by(o, ps->spec->uid) || desired_has(ps->desired, ps->kind, name) ||
        (ps->keep_ca && strcmp(name, ps->spec->names.ca) == 0))
        return 0;
    cJSON *v = cJSON_CreateObject();
    const char *uid = ns_json_path_str(o, "metadata", "uid", NULL);
    if (!v || !cJSON_AddStringToObject(v, "name", name) ||
        !cJSON_AddStringToObject(v, "uid", uid ? uid : "") ||
        !cJSON_AddItemToArray(ps->victims, v)) {
        cJSON_Delete(v);
        return -ENOMEM;
    }
    return 0;
}

/* Deletes what this Mesh owns but no longer renders (the PodDisruptionBudget when the
 * replicas drop to 1). */
static int prune(mesh_controller *mc, const mesh_spec *spec, const cJSON *desired, ns_err *err)
{
    int rc = 0;
    for (int i = 0; i < K_COUNT && !rc; i++) {
        prune_scan ps = {.spec = spec,
                         .desired = desired,
                         .kind = kinds[i].kind,
                         .namespace = kinds[i].namespaced ? mc->namespace : NULL,
                         .keep_ca = i == K_SECRET,
                         .victims = cJSON_CreateArray()};
        if (!ps.victims || op_informer_foreach(mc->owned[i], prune_visit_cb, &ps) != 0) {
            cJSON_Delete(ps.victims);
            return ns_errorf(err, -ENOMEM, "out of memory");
        }
        const cJSON *v;
        cJSON_ArrayForEach(v, ps.victims)
        {
            const char *name = ns_json_str(v, "name");
            const char *uid = ns_json_str(v, "uid");
            ns_kube_ref ref = owned_ref(mc, i, name);
            ns_kube_delete_opts dopts = {.precondition_uid = uid && *uid ? uid : NULL};
            ns_kube_status st;
            int drc = ns_kube_delete(mc->kube, &ref, &dopts, NULL, &st);
            count_write(mc, "delete", kinds[i].kind, name);
            if (drc && drc != -ENOENT) {
                rc = api_error(err, drc, "delete", kinds[i].kind, name, &st);
                break;
            }
            ns_log(NS_LOG_INFO, "pruned", "kind", kinds[i].kind, "name", name, NULL);
        }
        cJSON_Delete(ps.victims);
    }
    return rc;
}

/* What the status needs from the live objects. */
typedef struct live_view {
    cJSON *deployment; /* the injector Deployment as last seen or written */
    cJSON *webhook;
    bool webhook_current; /* the live webhook configuration is as rendered */
} live_view;

/* Applies each rendered object that differs from the cache, in render order (the
 * webhook configuration last). */
static int apply_all(mesh_controller *mc, const cJSON *mesh, const cJSON *desired, live_view *live,
                     ns_err *err)
{
    const cJSON *d;
    cJSON_ArrayForEach(d, desired)
    {
        int i = kind_index(ns_json_str(d, "kind"));
        const char *name = ns_json_path_str(d, "metadata", "name", NULL);
        if (i < 0 || !name)
            return ns_errorf(err, -EINVAL, "rendered an object of an unknown kind");
        cJSON *observed = cached(mc, i, name);
        if (mesh_object_needs_update(d, observed)) {
            cJSON *written = NULL;
            int rc = apply_owned(mc, i, d, &written, err);
            if (rc) {
                cJSON_Delete(observed);
                return rc;
            }
            if (i == K_MWC)
                EVENT(mc, mesh, "Normal", "WebhookConfigured", "%s MutatingWebhookConfiguration %s",
                      observed ? "updated" : "created", name);
            ns_log(NS_LOG_INFO, observed ? "repaired" : "created", "kind", kinds[i].kind, "name",
                   name, NULL);
            cJSON_Delete(observed);
            observed = written;
        }
        if (i == K_DEPLOY) {
            cJSON_Delete(live->deployment);
            live->deployment = observed;
        } else if (i == K_MWC) {
            cJSON_Delete(live->webhook);
            live->webhook = observed;
            live->webhook_current = observed && !mesh_object_needs_update(d, observed);
        } else {
            cJSON_Delete(observed);
        }
    }
    return 0;
}

/* ---- local mode ---- */

/* Points every webhook of the rendered MutatingWebhookConfiguration at the URL instead
 * of the Service; the rest (caBundle, selectors, policies) stays as rendered. */
static int use_webhook_url(const mesh_controller *mc, cJSON *desired, ns_err *err)
{
    cJSON *d;
    cJSON_ArrayForEach(d, desired)
    {
        const char *k = ns_json_str(d, "kind");
        if (!k || strcmp(k, kinds[K_MWC].kind) != 0)
            continue;
        cJSON *w;
        cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(d, "webhooks"))
        {
            cJSON *cc = cJSON_GetObjectItemCaseSensitive(w, "clientConfig");
            if (!cc)
                continue;
            cJSON_DeleteItemFromObjectCaseSensitive(cc, "service");
            if (!cJSON_AddStringToObject(cc, "url", mc->webhook_url))
                return ns_errorf(err, -ENOMEM, "out of memory");
        }
    }
    return 0;
}

/* Writes DIR/name unless it already holds exactly `data`. */
static int write_if_changed(const mesh_controller *mc, const char *name, const char *data,
                            ns_err *err)
{
    char path[4096];
    size_t len = strlen(data), have_len = 0;
    char *have = NULL;
    snprintf(path, sizeof(path), "%s/%s", mc->local_dir, name);
    ns_err rerr = {0};
    bool same = ns_read_file(path, len + 1, &have, &have_len, &rerr) == 0 && have_len == len &&
                memcmp(have, data, len) == 0;
    free(have);
    if (same)
        return 0;
    int rc = ns_write_file_atomic(path, data, len, err);
    if (rc == 0)
        ns_log(NS_LOG_INFO, "wrote local injector file", "path", path, NULL);
    return rc;
}

/* What a kubelet would mount into the injector's pod: the Secret's tls.crt, tls.key and
 * ca.crt, and the ConfigMap's config.json. The key goes before the certificate, the
 * certificate last: the injector reloads the pair when the certificate changes. */
static int write_local_files(const mesh_controller *mc, const cJSON *desired, const mesh_tls *tls,
                             ns_err *err)
{
    const char *config = NULL;
    const cJSON *d;
    cJSON_ArrayForEach(d, desired)
    {
        const char *k = ns_json_str(d, "kind");
        if (k && strcmp(k, kinds[K_CM].kind) == 0)
            config = ns_json_path_str(d, "data", "config.json", NULL);
    }
    if (!config)
        return ns_errorf(err, -EINVAL, "rendered no injector config");
    int rc = write_if_changed(mc, "ca.crt", tls->ca_bundle_pem, err);
    if (!rc)
        rc = write_if_changed(mc, "config.json", config, err);
    if (!rc)
        rc = write_if_changed(mc, "tls.key", tls->key_pem, err);
    if (!rc)
        rc = write_if_changed(mc, "tls.crt", tls->cert_pem, err);
    return rc;
}

/* One reconcile of a Mesh that is not being deleted. */
static int sync_mesh(mesh_controller *mc, const cJSON *mesh_in, ns_err *err)
{
    cJSON *patched = NULL;
    const cJSON *mesh = mesh_in;
    int rc = 0;
    if (!has_finalizer(mesh)) {
        rc = set_finalizer(mc, mesh, true, &patched, err);
        if (rc)
            return rc;
        if (patched)
            mesh = patched;
    }

    mesh_spec spec;
    ns_err verr = {0};
    if (mesh_spec_resolve(mesh, mc->version, &spec, &verr) != 0 ||
        mesh_spec_validate(&spec, &verr) != 0) {
        rc = report_invalid(mc, mesh, verr.msg, err);
        cJSON_Delete(patched);
        return rc;
    }

    /* Two Meshes of one revision would render the same names and overwrite each other's
     * objects at every reconcile: the one that came second is refused. */
    cJSON *hook = cached(mc, K_MWC, spec.names.webhook);
    char owner[OP_KEY_MAX];
    bool taken = hook && !owned_by(hook, spec.uid) &&
                 op_owner_key(hook, "nutshell.io", MESH_KIND, false, owner, sizeof(owner)) == 0;
    cJSON_Delete(hook);
    if (taken) {
        ns_errorf(&verr, -EEXIST, "spec.revision: revision \"%s\" is already installed by Mesh %s",
                  spec.revision, owner);
        rc = report_invalid(mc, mesh, verr.msg, err);
        /* not a spec change that frees the revision, but the other Mesh going away: look
         * again now and then */
        if (!rc)
            op_controller_requeue_after(mc->ctl, spec.name, 30000L);
        cJSON_Delete(patched);
        return rc;
    }

    cert_state cs = {0};
    cJSON *desired = NULL;
    char *bundle = NULL;
    live_view live = {0};
    time_t next = 0;
    rc = certs_sync(mc, mesh, &spec, &cs, &next, err);
    if (rc)
        goto out;
    if (!cs.store.ca.cert_pem || !cs.serving.cert_pem) {
        rc = ns_errorf(err, -EAGAIN, "the certificates are not ready yet");
        goto out;
    }
    bundle = mesh_ca_store_bundle(&cs.store);
    if (!bundle) {
        rc = ns_errorf(err, -ENOMEM, "out of memory");
        goto out;
    }
    mesh_tls tls = {
        .ca_bundle_pem = bundle, .cert_pem = cs.serving.cert_pem, .key_pem = cs.serving.key_pem};
    rc = mesh_render_spec(&spec, mc->namespace, &tls, &desired, err);
    if (!rc && mc->webhook_url)
        rc = use_webhook_url(mc, desired, err);
    if (!rc)
        rc = apply_all(mc, mesh, desired, &live, err);
    if (!rc)
        rc = prune(mc, &spec, desired, err);
    if (!rc && mc->local_dir)
        rc = write_local_files(mc, desired, &tls, err);
    if (rc)
        goto out;

    const cJSON *prev = ns_json_get(mesh, "status");
    mesh_observed obs = {
        .now = time(NULL),
        .generation = spec.generation,
        .replicas = spec.injector.replicas,
        .ready_replicas = (int32_t)json_int(live.deployment, "status", "readyReplicas"),
        .cert_not_after = cs.serving.not_after,
        .renew_before = spec.certs.renew_before,
        .ca_not_after = cs.store.ca.not_after,
        .webhook_present = live.webhook != NULL,
        .webhook_ca_matches = live.webhook_current,
    };
    cJSON *status = NULL;
    if (mesh_status_build(prev, &obs, &status) != 0) {
        rc = ns_errorf(err, -ENOMEM, "out of memory");
        goto out;
    }
    rc = write_status(mc, mesh, status, err);
    cJSON_Delete(status);
    if (!rc && next > 0) {
        long delay = next > obs.now ? (long)(next - obs.now) : 1;
        if (delay > CERT_RECHECK_MAX_S)
            delay = CERT_RECHECK_MAX_S;
        op_controller_requeue_after(mc->ctl, spec.name, delay * 1000L);
    }
out:
    free(bundle);
    cJSON_Delete(desired);
    cJSON_Delete(live.deployment);
    cJSON_Delete(live.webhook);
    cert_state_free(&cs);
    cJSON_Delete(patched);
    return rc;
}

static int reconcile_cb(void *ctx, const char *key, ns_err *err)
{
    mesh_controller *mc = ctx;
    cJSON *mesh = NULL;
    int rc = op_informer_get(mc->meshes, key, &mesh);
    if (rc == -ENOENT)
        return 0; /* deleted: its objects went with it (ownerReferences) */
    if (rc)
        return ns_errorf(err, rc, "cannot read Mesh %s from the cache", key);
    if (ns_json_path(mesh, "metadata", "deletionTimestamp", NULL))
        rc = finalize(mc, mesh, err);
    else
        rc = sync_mesh(mc, mesh, err);
    cJSON_Delete(mesh);
    /* 409: we wrote from a stale read. The cache will have the new version in a moment;
     * try again at once (the queue's backoff starts at 5 ms) without calling it an error. */
    if (rc == -EBUSY)
        rc = -EAGAIN;
    return rc;
}

/* ---- wiring ---- */

/* An owned object's event concerns its owning Mesh. */
static void enqueue_owner_cb(op_controller *c, void *ud, const op_informer_event *ev)
{
    const cJSON *obj = ev->obj ? ev->obj : ev->old;
    char key[OP_KEY_MAX];
    if (obj && op_owner_key(obj, "nutshell.io", MESH_KIND, false, key, sizeof(key)) == 0)
        op_controller_enqueue(c, key);
}

/* Keeps the URL and its host: https://HOST[:PORT][/PATH], HOST a name, an IPv4 address
 * or a bracketed IPv6 address. */
static int parse_webhook_url(mesh_controller *mc, const char *url, ns_err *err)
{
    static const char scheme[] = "https://";
    if (strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        return ns_errorf(err, -EINVAL, "the webhook URL must start with https://: %s", url);
    const char *h = url + sizeof(scheme) - 1, *end;
    if (*h == '[') {
        h++;
        end = strchr(h, ']');
        if (!end)
            return ns_errorf(err, -EINVAL, "bad IPv6 address in the webhook URL: %s", url);
    } else {
        end = h + strcspn(h, ":/?#");
    }
    if (end == h || strpbrk(url, "?#") || strchr(h, '@'))
        return ns_errorf(err, -EINVAL,
                         "the webhook URL wants a host and no user, query or fragment: %s", url);
    mc->webhook_url = strdup(url);
    mc->url_host = strndup(h, (size_t)(end - h));
    if (!mc->webhook_url || !mc->url_host)
        return ns_errorf(err, -ENOMEM, "out of memory");
    unsigned char addr[16];
    mc->url_host_ip =
        inet_pton(AF_INET, mc->url_host, addr) == 1 || inet_pton(AF_INET6, mc->url_host, addr) == 1;
    return 0;
}

int mesh_controller_new(const mesh_controller_opts *o, mesh_controller **out, ns_err *err)
{
    if (!o || !o->kube || !o->namespace || !*o->namespace || !o->version)
        return ns_errorf(err, -EINVAL,
                         "the Mesh controller needs a client, a namespace and a "
                         "version");
    mesh_controller *mc = calloc(1, sizeof(*mc));
    if (!mc)
        return ns_errorf(err, -ENOMEM, "out of memory");
    mc->kube = o->kube;
    mc->rec = o->recorder;
    mc->writes = o->writes;
    mc->namespace = strdup(o->namespace);
    mc->version = strdup(o->version);
    int rc = mc->namespace && mc->version ? 0 : ns_errorf(err, -ENOMEM, "out of memory");
    if (!rc && o->webhook_url)
        rc = parse_webhook_url(mc, o->webhook_url, err);
    if (!rc && o->local_dir) {
        mc->local_dir = strdup(o->local_dir);
        if (!mc->local_dir)
            rc = ns_errorf(err, -ENOMEM, "out of memory");
        else if (!*o->local_dir)
            rc = ns_errorf(err, -EINVAL, "the local injector directory must not be empty");
        else if (mkdir(o->local_dir, 0700) != 0 && errno != EEXIST)
            rc = ns_errorf(err, -errno, "cannot make %s: %s", o->local_dir, strerror(errno));
    }

    op_controller_opts co = {.name = "mesh",
                             .workers = o->workers ? o->workers : 1,
                             .reconcile = reconcile_cb,
                             .ctx = mc,
                             .start_paused = o->start_paused,
                             .metrics = o->metrics};
    if (!rc)
        rc = op_controller_new(&co, &mc->ctl, err);

    op_informer_opts mo = {.name = "meshes", .resync_ms = o->resync_ms};
    if (!rc)
        rc = op_informer_new(mc->kube, &mesh_ref, &mo, &mc->meshes, err);
    if (!rc)
        rc = op_controller_watch(mc->ctl, mc->meshes, NULL, NULL);
    for (int i = 0; i < K_COUNT && !rc; i++) {
        ns_kube_ref ref = owned_ref(mc, i, NULL);
        op_informer_opts io = {.name = kinds[i].resource, .label_selector = MESH_MANAGED_SELECTOR};
        rc = op_informer_new(mc->kube, &ref, &io, &mc->owned[i], err);
        if (!rc)
            rc = op_controller_watch(mc->ctl, mc->owned[i], enqueue_owner_cb, NULL);
    }
    if (rc) {
        mesh_controller_free(mc);
        return rc;
    }
    *out = mc;
    return 0;
}

int mesh_controller_start_informers(mesh_controller *mc, ns_err *err)
{
    int rc = op_informer_start(mc->meshes);
    for (int i = 0; i < K_COUNT && !rc; i++)
        rc = op_informer_start(mc->owned[i]);
    if (rc)
        return ns_errorf(err, rc, "cannot start the informers: %s", strerror(-rc));
    return 0;
}

bool mesh_controller_synced(mesh_controller *mc)
{
    if (!op_informer_has_synced(mc->meshes))
        return false;
    for (int i = 0; i < K_COUNT; i++)
        if (!op_informer_has_synced(mc->owned[i]))
            return false;
    return true;
}

int mesh_controller_start(mesh_controller *mc, long sync_timeout_ms, ns_err *err)
{
    return op_controller_start(mc->ctl, sync_timeout_ms, err);
}

void mesh_controller_pause(mesh_controller *mc)
{
    op_controller_pause(mc->ctl);
}

void mesh_controller_resume(mesh_controller *mc)
{
    op_controller_resume(mc->ctl);
}

void mesh_controller_stop(mesh_controller *mc)
{
    if (!mc)
        return;
    /* Informers first: their handlers enqueue into the controller. */
    if (mc->meshes)
        op_informer_stop(mc->meshes);
    for (int i = 0; i < K_COUNT; i++)
        if (mc->owned[i])
            op_informer_stop(mc->owned[i]);
    if (mc->ctl)
        op_controller_stop(mc->ctl);
}

void mesh_controller_free(mesh_controller *mc)
{
    if (!mc)
        return;
    mesh_controller_stop(mc);
    op_informer_free(mc->meshes);
    for (int i = 0; i < K_COUNT; i++)
        op_informer_free(mc->owned[i]);
    op_controller_free(mc->ctl);
    free(mc->namespace);
    free(mc->version);
    free(mc->webhook_url);
    free(mc->url_host);
    free(mc->local_dir);
    free(mc);
}

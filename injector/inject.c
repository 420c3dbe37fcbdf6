/* inject.c - builds the sidecar injection patch for one pod. */
#include "inject.h"

#include "annotations.h"
#include "buf.h"
#include "json.h"
#include "jsonpatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VOLUME_TMP     "nutshell-proxy-tmp"
#define VOLUME_PODINFO "nutshell-podinfo"

static const char *const excluded_namespaces[] = {"kube-system", "kube-public", "kube-node-lease",
                                                  "nutshell-system"};

bool inj_namespace_excluded(const char *namespace)
{
    for (size_t i = 0; namespace && i < sizeof(excluded_namespaces) / sizeof(*excluded_namespaces);
         i++)
        if (strcmp(namespace, excluded_namespaces[i]) == 0)
            return true;
    return false;
}

/* ---- small builders; each returns NULL only when memory runs out ---- */

static cJSON *str_array(const char *const *items, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        cJSON *s = cJSON_CreateString(items[i]);
        if (!s || !cJSON_AddItemToArray(a, s)) {
            cJSON_Delete(s);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

/* Parses a JSON literal we wrote ourselves; used for the fixed parts of the template. */
static cJSON *lit(const char *json)
{
    return cJSON_Parse(json);
}

static bool add(cJSON *obj, const char *key, cJSON *v)
{
    if (!v || !cJSON_AddItemToObject(obj, key, v)) {
        cJSON_Delete(v);
        return false;
    }
    return true;
}

static bool add_str(cJSON *obj, const char *key, const char *v)
{
    return cJSON_AddStringToObject(obj, key, v) != NULL;
}

static cJSON *resources_json(const inj_resources *r)
{
    cJSON *res = cJSON_CreateObject(), *req = cJSON_CreateObject(), *lim = cJSON_CreateObject();
    bool ok = res && req && lim;
    ok = ok && (!*r->cpu_request || add_str(req, "cpu", r->cpu_request));
    ok = ok && (!*r->memory_request || add_str(req, "memory", r->memory_request));
    ok = ok && (!*r->cpu_limit || add_str(lim, "cpu", r->cpu_limit));
    ok = ok && (!*r->memory_limit || add_str(lim, "memory", r->memory_limit));
    if (ok && req->child) {
        ok = add(res, "requests", req);
        req = NULL;
    }
    if (ok && lim->child) {
        ok = add(res, "limits", lim);
        lim = NULL;
    }
    cJSON_Delete(req);
    cJSON_Delete(lim);
    if (!ok) {
        cJSON_Delete(res);
        return NULL;
    }
    return res;
}

static cJSON *env_field(const char *name, const char *path)
{
    cJSON *e = cJSON_CreateObject();
    char json[160];
    snprintf(json, sizeof(json), "{\"fieldRef\":{\"fieldPath\":\"%s\"}}", path);
    if (!e || !add_str(e, "name", name) || !add(e, "valueFrom", lit(json))) {
        cJSON_Delete(e);
        return NULL;
    }
    return e;
}

static cJSON *env_value(const char *name, const char *value)
{
    cJSON *e = cJSON_CreateObject();
    if (!e || !add_str(e, "name", name) || !add_str(e, "value", value)) {
        cJSON_Delete(e);
        return NULL;
    }
    return e;
}

/* The exclusion list always holds the proxy's own admin port, then the user's. */
static void join_ports(char *dst, size_t len, uint16_t always, const char *more)
{
    snprintf(dst, len, "%u%s%s", always, *more ? "," : "", more);
}

static cJSON *init_container(const inj_config *cfg, const inj_settings *s)
{
    char arg[INJ_LIST_MAX + 64], ex_in[INJ_LIST_MAX + 8];
    join_ports(ex_in, sizeof(ex_in), cfg->admin_port, s->exclude_inbound_ports);
    cJSON *c = cJSON_CreateObject();
    cJSON *args = cJSON_CreateArray();
    bool ok = c && args;
#define ARG(...)                                                                                   \
    do {                                                                                           \
        snprintf(arg, sizeof(arg), __VA_ARGS__);                                                   \
        cJSON *a_ = cJSON_CreateString(arg);                                                       \
        ok = ok && a_ && cJSON_AddItemToArray(args, a_);                                           \
    } while (0)
    ARG("--proxy-port=%u", cfg->outbound_port);
    ARG("--inbound-port=%u", cfg->inbound_port);
    ARG("--proxy-uid=%u", cfg->proxy_uid);
    ARG("--proxy-gid=%u", cfg->proxy_gid);
    ARG("--include-inbound-ports=%s", s->include_inbound_ports);
    ARG("--exclude-inbound-ports=%s", ex_in);
    ARG("--include-outbound-cidrs=%s", s->include_outbound_cidrs);
    ARG("--exclude-outbound-cidrs=%s", s->exclude_outbound_cidrs);
    ARG("--exclude-outbound-ports=%s", s->exclude_outbound_ports);
    ARG("--ipv6=auto");
#undef ARG
    static const char *const cmd[] = {"nutshell-init"};
    if (!ok || !add_str(c, "name", INJ_INIT_NAME) || !add_str(c, "image", cfg->init_image) ||
        !add_str(c, "imagePullPolicy", cfg->image_pull_policy) ||
        !add(c, "command", str_array(cmd, 1)))
        goto fail;
    ok = add(c, "args", args); /* add() frees args if it fails */
    args = NULL;
    /* Root only to program iptables; every capability but the two it needs is dropped. */
    ok = ok && add(c, "resources", resources_json(&cfg->init_resources)) &&
         add(c, "securityContext",
             lit("{\"allowPrivilegeEscalation\":false,\"privileged\":false,"
                 "\"readOnlyRootFilesystem\":true,\"runAsNonRoot\":false,\"runAsUser\":0,"
                 "\"runAsGroup\":0,\"capabilities\":{\"add\":[\"NET_ADMIN\",\"NET_RAW\"],"
                 "\"drop\":[\"ALL\"]}}"));
    if (ok)
        return c;
fail:
    cJSON_Delete(args);
    cJSON_Delete(c);
    return NULL;
}

static cJSON *proxy_container(const inj_config *cfg, const inj_settings *s, bool native)
{
    char buf[512];
    cJSON *c = cJSON_CreateObject();
    cJSON *env = cJSON_CreateArray();
    bool ok = c && env;
    ok = ok && add_str(c, "name", INJ_PROXY_NAME) && add_str(c, "image", s->image) &&
         add_str(c, "imagePullPolicy", cfg->image_pull_policy);
    snprintf(buf, sizeof(buf), "[\"--log-level=%s\"]", s->log_level);
    ok = ok && add(c, "args", lit(buf));
    snprintf(buf, sizeof(buf),
             "[{\"name\":\"nutshell-admin\",\"containerPort\":%u,\"protocol\":\"TCP\"}]",
             cfg->admin_port);
    ok = ok && add(c, "ports", lit(buf));

    ok = ok && cJSON_AddItemToArray(env, env_field("POD_NAME", "metadata.name")) &&
         cJSON_AddItemToArray(env, env_field("POD_NAMESPACE", "metadata.namespace")) &&
         cJSON_AddItemToArray(env, env_field("POD_IP", "status.podIP")) &&
         cJSON_AddItemToArray(env, env_field("SERVICE_ACCOUNT", "spec.serviceAccountName")) &&
         cJSON_AddItemToArray(env,
                              env_value("NUTSHELL_DISCOVERY_ADDRESS", cfg->discovery_address)) &&
         cJSON_AddItemToArray(env, env_value("NUTSHELL_REVISION", cfg->revision));
    /* cJSON_AddItemToArray(NULL item) fails, so a failed env_* shows up here */
    if (ok) {
        ok = add(c, "env", env);
    } else {
        cJSON_Delete(env);
    }

    snprintf(buf, sizeof(buf),
             "{\"httpGet\":{\"path\":\"/healthz/ready\",\"port\":%u},\"periodSeconds\":2,"
             "\"timeoutSeconds\":1,\"failureThreshold\":30}",
             cfg->admin_port);
    ok = ok && add(c, "readinessProbe", lit(buf));
    /* A native sidecar holds the app back until its startup probe passes: that is the
     * kubelet's own ordering, so hold-application needs nothing more in that mode. */
    if (native && s->hold_application) {
        snprintf(buf, sizeof(buf),
                 "{\"httpGet\":{\"path\":\"/healthz/ready\",\"port\":%u},\"periodSeconds\":1,"
                 "\"timeoutSeconds\":1,\"failureThreshold\":600}",
                 cfg->admin_port);
        ok = ok && add(c, "startupProbe", lit(buf));
    }
    if (!native && s->hold_application)
        ok = ok && add(c, "lifecycle",
                       lit("{\"postStart\":{\"exec\":{\"command\":[\"nutshell-proxy\",\"wait\","
                           "\"--timeout=60s\"]}}}"));
    ok = ok && add(c, "resources", resources_json(&s->resources));
    snprintf(buf, sizeof(buf),
             "{\"allowPrivilegeEscalation\":false,\"privileged\":false,"
             "\"readOnlyRootFilesystem\":true,\"runAsNonRoot\":true,\"runAsUser\":%u,"
             "\"runAsGroup\":%u,\"capabilities\":{\"drop\":[\"ALL\"]}}",
             cfg->proxy_uid, cfg->proxy_gid);
    ok = ok && add(c, "securityContext", lit(buf));
    ok = ok && add(c, "volumeMounts",
                   lit("[{\"name\":\"" VOLUME_TMP "\",\"mountPath\":\"/tmp\"},"
                       "{\"name\":\"" VOLUME_PODINFO "\",\"mountPath\":\"/etc/nutshell/pod\","
                       "\"readOnly\":true}]"));
    if (native)
        ok = ok && add_str(c, "restartPolicy", "Always");
    if (!ok) {
        cJSON_Delete(c);
        return NULL;
    }
    return c;
}

static cJSON *volumes(void)
{
    return lit("[{\"name\":\"" VOLUME_TMP "\",\"emptyDir\":{\"medium\":\"Memory\",\"sizeLimit\":"
               "\"16Mi\"}},"
               "{\"name\":\"" VOLUME_PODINFO "\",\"downwardAPI\":{\"items\":["
               "{\"path\":\"labels\",\"fieldRef\":{\"fieldPath\":\"metadata.labels\"}},"
               "{\"path\":\"annotations\",\"fieldRef\":{\"fieldPath\":\"metadata.annotations\"}}"
               "]}}]");
}

/* The nutshell.io/status annotation (free with cJSON_free): what was injected, so that a later pass
 * (or a human) can tell an injected pod from a hand-made one and never inject twice. */
static char *status_json(const inj_config *cfg, bool native)
{
    static const char *const init_only[] = {INJ_INIT_NAME};
    static const char *const init_and_proxy[] = {INJ_INIT_NAME, INJ_PROXY_NAME};
    static const char *const proxy[] = {INJ_PROXY_NAME};
    static const char *const vols[] = {VOLUME_TMP, VOLUME_PODINFO};
    cJSON *v = cJSON_CreateObject();
    char *out = NULL;
    if (v && add_str(v, "version", NUTSHELL_VERSION) && add_str(v, "revision", cfg->revision) &&
        add(v, "initContainers", native ? str_array(init_and_proxy, 2) : str_array(init_only, 1)) &&
        add(v, "containers", str_array(proxy, native ? 0 : 1)) &&
        add(v, "volumes", str_array(vols, 2)) && cJSON_AddBoolToObject(v, "nativeSidecar", native))
        out = cJSON_PrintUnformatted(v);
    cJSON_Delete(v);
    return out;
}

/* ---- scope decisions ---- */

static bool has_container(const cJSON *list, const char *name)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, (cJSON_IsArray(list) ? list : NULL))
    {
        const char *n = ns_json_str(c, "name");
        if (n && strcmp(n, name) == 0)
            return true;
    }
    return false;
}

static bool has_volume(const cJSON *list, const char *name)
{
    return has_container(list, name); /* both are lists of objects keyed by "name" */
}

/* Returns a skip reason, or NULL if the pod is in scope. */
static const char *skip_reason(const cJSON *pod, const char *namespace)
{
    const cJSON *spec = ns_json_get(pod, "spec");
    if (ns_json_true(spec, "hostNetwork"))
        return "pod uses the host network";
    if (inj_namespace_excluded(namespace))
        return "namespace is never injected";
    const char *label = ns_json_path_str(pod, "metadata", "labels", INJ_INJECT_LABEL, NULL);
    if (label && strcmp(label, "false") == 0)
        return "pod label " INJ_INJECT_LABEL "=false";
    if (ns_json_path(pod, "metadata", "annotations", INJ_STATUS_ANNOTATION, NULL) ||
        has_container(ns_json_get(spec, "containers"), INJ_PROXY_NAME) ||
        has_container(ns_json_get(spec, "initContainers"), INJ_PROXY_NAME))
        return "pod is already injected";
    return NULL;
}

static void warn(cJSON *warnings, const char *msg)
{
    cJSON *w = cJSON_CreateString(msg);
    if (!w || !cJSON_AddItemToArray(warnings, w))
        cJSON_Delete(w);
}

/* Ports the proxy owns: an app listening there would be shadowed by the capture. */
static void warn_reserved_ports(const inj_config *cfg, const cJSON *containers, cJSON *warnings)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, containers)
    {
        const cJSON *p;
        cJSON_ArrayForEach(
            p, (cJSON_IsArray(ns_json_get(c, "ports")) ? ns_json_get(c, "ports") : NULL))
        {
            const cJSON *num = ns_json_get(p, "containerPort");
            int port = cJSON_IsNumber(num) ? num->valueint : 0;
            if (port == cfg->outbound_port || port == cfg->inbound_port ||
                port == cfg->admin_port) {
                const char *name = ns_json_str(c, "name");
                char msg[320];
                snprintf(msg, sizeof(msg),
                         "nutshell: container %.100s uses port %d, reserved for the proxy; "
                         "its traffic will not work as expected",
                         name ? name : "?", port);
                warn(warnings, msg);
            }
        }
    }
}

/* ---- patch assembly ---- */

/* Adds `item` to the list at `base` (e.g. "/spec/initContainers"): creates the list if
 * the pod has none, else inserts at `index` (-1 appends). Takes ownership of item. */
static int add_to_list(cJSON *ops, const cJSON *list, const char *base, int index, cJSON *item)
{
    char path[128];
    if (!item)
        return -ENOMEM;
    if (!cJSON_IsArray(list)) {
        cJSON *arr = cJSON_CreateArray();
        if (!arr || !cJSON_AddItemToArray(arr, item)) {
            cJSON_Delete(arr);
            cJSON_Delete(item);
            return -ENOMEM;
        }
        return ns_patch_add(ops, base, arr);
    }
    if (index < 0)
        snprintf(path, sizeof(path), "%s/-", base);
    else
        snprintf(path, sizeof(path), "%s/%d", base, index);
    return ns_patch_add(ops, path, item);
}

static int build_patch(const inj_config *cfg, const cJSON *pod, const inj_settings *s, cJSON *ops)
{
    const cJSON *meta = ns_json_get(pod, "metadata");
    const cJSON *spec = ns_json_get(pod, "spec");
    const cJSON *inits = ns_json_get(spec, "initContainers");
    const cJSON *vols = ns_json_get(spec, "volumes");
    bool native = s->native_sidecar;
    int rc;

    /* nutshell-init goes first so that no other init container runs before traffic is
     * captured; a native proxy right after it, so that the app's own init containers
     * already have a working proxy (the classic Istio init-container pitfall). */
    rc = add_to_list(ops, inits, "/spec/initContainers", 0, init_container(cfg, s));
    if (!rc && native) {
        /* After the first add the list exists, whether or not the pod had one. */
        rc = ns_patch_add(ops, "/spec/initContainers/1", proxy_container(cfg, s, true));
    }
    if (!rc && !native) {
        /* With hold-application a regular sidecar must be first: the kubelet starts
         * containers in order and waits for each postStart hook. */
        rc = add_to_list(ops, ns_json_get(spec, "containers"), "/spec/containers",
                         s->hold_application ? 0 : -1, proxy_container(cfg, s, false));
    }

    cJSON *vlist = rc ? NULL : volumes();
    if (!rc && !vlist)
        rc = -ENOMEM;
    if (!rc && !cJSON_IsArray(vols)) {
        rc = ns_patch_add(ops, "/spec/volumes", vlist);
        vlist = NULL;
    }
    while (!rc && vlist && vlist->child) {
        cJSON *v = cJSON_DetachItemViaPointer(vlist, vlist->child);
        if (has_volume(vols, ns_json_str(v, "name"))) {
            cJSON_Delete(v); /* a user volume of our name: keep theirs */
            continue;
        }
        rc = ns_patch_add(ops, "/spec/volumes/-", v);
    }
    cJSON_Delete(vlist);
    if (rc)
        return rc;

    char *status = status_json(cfg, native);
    if (!status)
        return -ENOMEM;
    char pstore[96];
    ns_buf path;
    ns_buf_init_static(&path, pstore, sizeof(pstore));
    if (!cJSON_IsObject(meta)) {
        cJSON *m = cJSON_CreateObject();
        cJSON *a = m ? cJSON_AddObjectToObject(m, "annotations") : NULL;
        rc = a && cJSON_AddStringToObject(a, INJ_STATUS_ANNOTATION, status)
                 ? ns_patch_add(ops, "/metadata", m)
                 : (cJSON_Delete(m), -ENOMEM);
    } else if (!cJSON_IsObject(ns_json_get(meta, "annotations"))) {
        cJSON *a = cJSON_CreateObject();
        rc = a && cJSON_AddStringToObject(a, INJ_STATUS_ANNOTATION, status)
                 ? ns_patch_add(ops, "/metadata/annotations", a)
                 : (cJSON_Delete(a), -ENOMEM);
    } else {
        ns_jsonptr(&path, "metadata", "annotations", INJ_STATUS_ANNOTATION, NULL);
        rc = ns_patch_add(ops, ns_buf_cstr(&path), cJSON_CreateString(status));
    }
    ns_buf_free(&path);
    cJSON_free(status);
    return rc;
}

int inj_pod(const inj_config *cfg, const cJSON *pod, const char *namespace, inj_result *out)
{
    *out = (inj_result){.outcome = INJ_SKIPPED, .warnings = cJSON_CreateArray()};
    if (!out->warnings)
        return -ENOMEM;

    const cJSON *spec = ns_json_get(pod, "spec");
    const cJSON *containers = ns_json_get(spec, "containers");
    if (!cJSON_IsObject(pod) || !cJSON_IsObject(spec) || !cJSON_IsArray(containers) ||
        cJSON_GetArraySize(containers) == 0) {
        out->outcome = INJ_REJECTED;
        snprintf(out->reason, sizeof(out->reason),
                 "object is not a pod: spec.containers is missing");
        return 0;
    }
    const cJSON *inits = ns_json_get(spec, "initContainers");
    const cJSON *vols = ns_json_get(spec, "volumes");
    if ((inits && !cJSON_IsArray(inits) && !cJSON_IsNull(inits)) ||
        (vols && !cJSON_IsArray(vols) && !cJSON_IsNull(vols))) {
        out->outcome = INJ_REJECTED;
        snprintf(out->reason, sizeof(out->reason),
                 "spec.initContainers and spec.volumes must be lists");
        return 0;
    }

    const char *why = skip_reason(pod, namespace);
    if (why) {
        snprintf(out->reason, sizeof(out->reason), "%s", why);
        return 0;
    }

    inj_settings s;
    ns_err err = {0};
    int rc = inj_settings_resolve(cfg, ns_json_path(pod, "metadata", "annotations", NULL), &s,
                                  out->warnings, &err);
    if (rc == -ENOMEM)
        goto nomem;
    if (rc) {
        out->outcome = INJ_REJECTED;
        snprintf(out->reason, sizeof(out->reason), "%s", err.msg);
        return 0;
    }
    warn_reserved_ports(cfg, containers, out->warnings);

    out->patch = cJSON_CreateArray();
    if (!out->patch || build_patch(cfg, pod, &s, out->patch) != 0)
        goto nomem;
    out->outcome = INJ_PATCHED;
    return 0;
nomem:
    inj_result_free(out);
    return -ENOMEM;
}

void inj_result_free(inj_result *r)
{
    if (!r)
        return;
    cJSON_Delete(r->patch);
    cJSON_Delete(r->warnings);
    r->patch = NULL;
    r->warnings = NULL;
}

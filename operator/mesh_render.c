/* mesh_render.c - Mesh spec defaults and checks, desired objects, status, drift. */
#include "mesh_render.h"

#include "buf.h"
#include "duration.h"
#include "json.h"
#include "timefmt.h"
#include "validate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ports and paths that the injector's flags, the Service and the probes must agree on. */
#define WEBHOOK_PORT  9443
#define METRICS_PORT  9090
#define SERVICE_PORT  443
#define TLS_DIR       "/etc/nutshell/tls"
#define CONFIG_DIR    "/etc/nutshell/injector"
#define INJECTOR_UID  65532 /* "nonroot" of distroless images */
#define DISCOVERY_FMT "nutshell-operator.%s.svc:15010"

/* ---- names ---- */

void mesh_names_init(mesh_names *out, const char *revision)
{
    /* The default revision keeps the bare names users and docs know. */
    bool bare = !revision || !*revision || strcmp(revision, "default") == 0;
    const char *sep = bare ? "" : "-", *rev = bare ? "" : revision;
    snprintf(out->injector, sizeof(out->injector), "nutshell-injector%s%s", sep, rev);
    snprintf(out->config, sizeof(out->config), "nutshell-injector-config%s%s", sep, rev);
    snprintf(out->tls, sizeof(out->tls), "nutshell-injector-tls%s%s", sep, rev);
    snprintf(out->ca, sizeof(out->ca), "nutshell-ca%s%s", sep, rev);
    snprintf(out->webhook, sizeof(out->webhook), "nutshell-sidecar-injector%s%s", sep, rev);
}

/* ---- resolving: defaults and JSON types ---- */

static int set_text(char *dst, size_t len, const char *value, const char *path, ns_err *err)
{
    size_t n = strlen(value);
    if (n >= len)
        return ns_errorf(err, -EINVAL, "%s is too long (at most %zu characters)", path, len - 1);
    memcpy(dst, value, n + 1);
    return 0;
}

/* obj[key] as an object into *out (NULL when absent or null). */
static int take_obj(const cJSON *obj, const char *key, const char *path, const cJSON **out,
                    ns_err *err)
{
    const cJSON *v = ns_json_get(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsObject(v))
        return ns_errorf(err, -EINVAL, "%s%s%s must be an object", path, *path ? "." : "", key);
    *out = v;
    return 0;
}

/* Absent and null keep the default already in dst. */
static int take_str(const cJSON *obj, const char *key, const char *path, char *dst, size_t len,
                    ns_err *err)
{
    const cJSON *v = ns_json_get(obj, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    char where[160];
    snprintf(where, sizeof(where), "%s.%s", path, key);
    if (!cJSON_IsString(v))
        return ns_errorf(err, -EINVAL, "%s must be a string", where);
    return set_text(dst, len, v->valuestring, where, err);
}

static int take_bool(const cJSON *obj, const char *key, const char *path, bool *dst, ns_err *err)
{
    const cJSON *v = ns_json_get(obj, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsBool(v))
        return ns_errorf(err, -EINVAL, "%s.%s must be true or false", path, key);
    *dst = cJSON_IsTrue(v);
    return 0;
}

static int take_int32(const cJSON *obj, const char *key, const char *path, int32_t *dst,
                      ns_err *err)
{
    const cJSON *v = ns_json_get(obj, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= INT32_MIN && d <= INT32_MAX) || d != floor(d))
        return ns_errorf(err, -EINVAL, "%s.%s must be an integer", path, key);
    *dst = (int32_t)d;
    return 0;
}

/* A quantity is int-or-string in Kubernetes: `cpu: 1` arrives as a number. */
static int take_quantity(const cJSON *obj, const char *key, const char *path, char *dst, size_t len,
                         ns_err *err)
{
    const cJSON *v = ns_json_get(obj, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    char where[160];
    snprintf(where, sizeof(where), "%s.%s", path, key);
    if (cJSON_IsNumber(v)) {
        if (!isfinite(v->valuedouble))
            return ns_errorf(err, -EINVAL, "%s must be a quantity", where);
        snprintf(dst, len, "%.15g", v->valuedouble);
        return 0;
    }
    if (!cJSON_IsString(v))
        return ns_errorf(err, -EINVAL, "%s must be a quantity such as \"100m\" or \"64Mi\"", where);
    return set_text(dst, len, v->valuestring, where, err);
}

static int take_resources(const cJSON *parent, const char *path, mesh_resources *r, ns_err *err)
{
    const cJSON *res, *req = NULL, *lim = NULL;
    char rpath[128], qpath[160];
    int rc = take_obj(parent, "resources", path, &res, err);
    snprintf(rpath, sizeof(rpath), "%s.resources", path);
    if (!rc)
        rc = take_obj(res, "requests", rpath, &req, err);
    if (!rc)
        rc = take_obj(res, "limits", rpath, &lim, err);
    snprintf(qpath, sizeof(qpath), "%s.requests", rpath);
    if (!rc)
        rc = take_quantity(req, "cpu", qpath, r->cpu_request, sizeof(r->cpu_request), err);
    if (!rc)
        rc = take_quantity(req, "memory", qpath, r->memory_request, sizeof(r->memory_request), err);
    snprintf(qpath, sizeof(qpath), "%s.limits", rpath);
    if (!rc)
        rc = take_quantity(lim, "cpu", qpath, r->cpu_limit, sizeof(r->cpu_limit), err);
    if (!rc)
        rc = take_quantity(lim, "memory", qpath, r->memory_limit, sizeof(r->memory_limit), err);
    return rc;
}

static int take_duration(const cJSON *obj, const char *key, char *text, size_t len,
                         int64_t *seconds, ns_err *err)
{
    char where[64];
    snprintf(where, sizeof(where), "spec.certificates.%s", key);
    int rc = take_str(obj, key, "spec.certificates", text, len, err);
    if (rc)
        return rc;
    rc = op_duration_parse(text, seconds);
    if (rc == -ERANGE)
        return ns_errorf(err, -EINVAL, "%s (%s) is too long a duration", where, text);
    if (rc)
        return ns_errorf(err, -EINVAL,
                         "%s (\"%s\") is not a duration: write hours, minutes and seconds "
                         "such as \"2160h\" or \"1h30m\"",
                         where, text);
    return 0;
}

static void spec_defaults(mesh_spec *s, const char *version)
{
    *s = (mesh_spec){
        .revision = "default",
        .proxy = {.image_pull_policy = "IfNotPresent",
                  .log_level = "info",
                  .resources = {"10m", "16Mi", "1", "64Mi"}},
        .init = {.resources = {"10m", "8Mi", "100m", "32Mi"}},
        .injector = {.replicas = 2,
                     .failure_policy = "Fail",
                     .timeout_seconds = 10,
                     .resources = {"10m", "16Mi", "", "64Mi"}},
        .traffic = {.include_inbound_ports = "*", .include_outbound_cidrs = "*"},
        .certs = {.ca_validity_text = "87600h",
                  .validity_text = "2160h",
                  .renew_before_text = "720h"},
    };
    snprintf(s->proxy.image, sizeof(s->proxy.image), "nutshell/proxy:%s", version);
    snprintf(s->injector.image, sizeof(s->injector.image), "nutshell/injector:%s", version);
}

int mesh_spec_resolve(const cJSON *mesh, const char *version, mesh_spec *out, ns_err *err)
{
    if (!cJSON_IsObject(mesh) || !version)
        return ns_errorf(err, -EINVAL, "the Mesh is not a JSON object");
    mesh_spec s;
    spec_defaults(&s, version);

    const cJSON *meta, *spec, *proxy, *init, *inj, *traffic, *certs;
    int rc = take_obj(mesh, "metadata", "", &meta, err);
    const char *name = ns_json_str(meta, "name"), *uid = ns_json_str(meta, "uid");
    if (!rc && (!name || !*name))
        rc = ns_errorf(err, -EINVAL, "metadata.name is missing");
    if (!rc && (!uid || !*uid))
        rc = ns_errorf(err, -EINVAL, "metadata.uid is missing");
    if (!rc)
        rc = set_text(s.name, sizeof(s.name), name, "metadata.name", err);
    if (!rc)
        rc = set_text(s.uid, sizeof(s.uid), uid, "metadata.uid", err);
    const cJSON *gen = ns_json_get(meta, "generation");
    if (cJSON_IsNumber(gen) && gen->valuedouble >= 0 && gen->valuedouble < 9e15)
        s.generation = (int64_t)gen->valuedouble;

    if (!rc)
        rc = take_obj(mesh, "spec", "", &spec, err);
    if (!rc)
        rc = take_str(spec, "revision", "spec", s.revision, sizeof(s.revision), err);

    if (!rc)
        rc = take_obj(spec, "proxy", "spec", &proxy, err);
    if (!rc)
        rc = take_str(proxy, "image", "spec.proxy", s.proxy.image, sizeof(s.proxy.image), err);
    if (!rc)
        rc = take_str(proxy, "imagePullPolicy", "spec.proxy", s.proxy.image_pull_policy,
                      sizeof(s.proxy.image_pull_policy), err);
    if (!rc)
        rc = take_str(proxy, "logLevel", "spec.proxy", s.proxy.log_level, sizeof(s.proxy.log_level),
                      err);
    if (!rc)
        rc = take_bool(proxy, "nativeSidecar", "spec.proxy", &s.proxy.native_sidecar, err);
    if (!rc)
        rc = take_bool(proxy, "holdApplication", "spec.proxy", &s.proxy.hold_application, err);
    if (!rc)
        rc = take_resources(proxy, "spec.proxy", &s.proxy.resources, err);

    /* nutshell-init ships in the proxy image, so a mirrored proxy image implies the init
     * image too (the injector's own default does the same). */
    memcpy(s.init.image, s.proxy.image, sizeof(s.init.image));
    if (!rc)
        rc = take_obj(spec, "init", "spec", &init, err);
    if (!rc)
        rc = take_str(init, "image", "spec.init", s.init.image, sizeof(s.init.image), err);
    if (!rc)
        rc = take_resources(init, "spec.init", &s.init.resources, err);

    if (!rc)
        rc = take_obj(spec, "injector", "spec", &inj, err);
    if (!rc)
        rc = take_str(inj, "image", "spec.injector", s.injector.image, sizeof(s.injector.image),
                      err);
    if (!rc)
        rc = take_int32(inj, "replicas", "spec.injector", &s.injector.replicas, err);
    if (!rc)
        rc = take_str(inj, "failurePolicy", "spec.injector", s.injector.failure_policy,
                      sizeof(s.injector.failure_policy), err);
    if (!rc)
        rc = take_int32(inj, "timeoutSeconds", "spec.injector", &s.injector.timeout_seconds, err);
    if (!rc)
        rc = take_resources(inj, "spec.injector", &s.injector.resources, err);

    if (!rc)
        rc = take_obj(spec, "traffic", "spec", &traffic, err);
    if (!rc)
        rc =
            take_str(traffic, "includeInboundPorts", "spec.traffic",
                     s.traffic.include_inbound_ports, sizeof(s.traffic.include_inbound_ports), err);
    if (!rc)
        rc =
            take_str(traffic, "excludeInboundPorts", "spec.traffic",
                     s.traffic.exclude_inbound_ports, sizeof(s.traffic.exclude_inbound_ports), err);
    if (!rc)
        rc = take_str(traffic, "excludeOutboundPorts", "spec.traffic",
                      s.traffic.exclude_outbound_ports, sizeof(s.traffic.exclude_outbound_ports),
                      err);
    if (!rc)
        rc = take_str(traffic, "includeOutboundCIDRs", "spec.traffic",
                      s.traffic.include_outbound_cidrs, sizeof(s.traffic.include_outbound_cidrs),
                      err);
    if (!rc)
        rc = take_str(traffic, "excludeOutboundCIDRs", "spec.traffic",
                      s.traffic.exclude_outbound_cidrs, sizeof(s.traffic.exclude_outbound_cidrs),
                      err);

    if (!rc)
        rc = take_obj(spec, "certificates", "spec", &certs, err);
    if (!rc)
        rc = take_duration(certs, "caValidity", s.certs.ca_validity_text,
                           sizeof(s.certs.ca_validity_text), &s.certs.ca_validity, err);
    if (!rc)
        rc = take_duration(certs, "validity", s.certs.validity_text, sizeof(s.certs.validity_text),
                           &s.certs.validity, err);
    if (!rc)
        rc = take_duration(certs, "renewBefore", s.certs.renew_before_text,
                           sizeof(s.certs.renew_before_text), &s.certs.renew_before, err);
    if (rc)
        return rc;
    mesh_names_init(&s.names, s.revision);
    *out = s;
    return 0;
}

/* ---- validation ---- */

static bool dns_label(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

static int check_quantity(const char *q, const char *path, const char *which, double *v,
                          ns_err *err)
{
    if (!*q)
        return 0;
    if (inj_quantity_parse(q, v) != 0)
        return ns_errorf(err, -EINVAL,
                         "%s.resources.%s (\"%s\") is not a quantity such as "
                         "\"100m\" or \"64Mi\"",
                         path, which, q);
    return 0;
}

static int check_resources(const mesh_resources *r, const char *path, ns_err *err)
{
    double cr = 0, mr = 0, cl = 0, ml = 0;
    int rc = check_quantity(r->cpu_request, path, "requests.cpu", &cr, err);
    if (!rc)
        rc = check_quantity(r->memory_request, path, "requests.memory", &mr, err);
    if (!rc)
        rc = check_quantity(r->cpu_limit, path, "limits.cpu", &cl, err);
    if (!rc)
        rc = check_quantity(r->memory_limit, path, "limits.memory", &ml, err);
    if (rc)
        return rc;
    /* The API server refuses a container whose request exceeds its limit; for the proxy
     * that would refuse every injected pod, so catch it here, once, with a clear name. */
    if (*r->cpu_request && *r->cpu_limit && cr > cl)
        return ns_errorf(err, -EINVAL, "%s.resources.requests.cpu (%s) is above limits.cpu (%s)",
                         path, r->cpu_request, r->cpu_limit);
    if (*r->memory_request && *r->memory_limit && mr > ml)
        return ns_errorf(err, -EINVAL,
                         "%s.resources.requests.memory (%s) is above limits.memory (%s)", path,
                         r->memory_request, r->memory_limit);
    return 0;
}

static int check_image(const char *image, const char *path, ns_err *err)
{
    if (!inj_image_valid(image))
        return ns_errorf(err, -EINVAL, "%s (\"%s\") is not an image reference", path, image);
    return 0;
}

static int check_list(const char *value, bool cidr, bool allow_star, const char *key, ns_err *err)
{
    ns_err why = {0};
    int rc = cidr ? inj_cidr_list_check(value, allow_star, &why)
                  : inj_port_list_check(value, allow_star, &why);
    if (rc)
        return ns_errorf(err, -EINVAL, "spec.traffic.%s: %s", key, why.msg);
    return 0;
}

static int check_certs(const mesh_spec *s, ns_err *err)
{
    const char *ca = s->certs.ca_validity_text, *v = s->certs.validity_text,
               *rb = s->certs.renew_before_text;
    if (s->certs.ca_validity <= 0 || s->certs.validity <= 0 || s->certs.renew_before <= 0)
        return ns_errorf(err, -EINVAL,
                         "spec.certificates: caValidity (%s), validity (%s) and renewBefore "
                         "(%s) must all be longer than zero",
                         ca, v, rb);
    if (s->certs.renew_before >= s->certs.validity)
        return ns_errorf(err, -EINVAL,
                         "spec.certificates.renewBefore (%s) must be shorter than validity (%s), "
                         "or every certificate would be renewed as soon as it is issued",
                         rb, v);
    if (s->certs.validity + s->certs.renew_before >= s->certs.ca_validity)
        return ns_errorf(err, -EINVAL,
                         "spec.certificates.caValidity (%s) must be longer than validity + "
                         "renewBefore (%s + %s), so that the CA outlives the certificates it "
                         "signs with time left to rotate it",
                         ca, v, rb);
    return 0;
}

int mesh_spec_validate(const mesh_spec *s, ns_err *err)
{
    int rc = 0;
    if (!dns_label(s->revision, MESH_REVISION_MAX))
        return ns_errorf(err, -EINVAL,
                         "spec.revision (\"%s\") must be lower-case letters, digits and '-', "
                         "starting and ending with a letter or digit, at most %d characters",
                         s->revision, MESH_REVISION_MAX);
    if (!rc)
        rc = check_image(s->proxy.image, "spec.proxy.image", err);
    if (!rc)
        rc = check_image(s->init.image, "spec.init.image", err);
    if (!rc)
        rc = check_image(s->injector.image, "spec.injector.image", err);
    if (rc)
        return rc;
    const char *pp = s->proxy.image_pull_policy;
    if (strcmp(pp, "Always") && strcmp(pp, "IfNotPresent") && strcmp(pp, "Never"))
        return ns_errorf(err, -EINVAL,
                         "spec.proxy.imagePullPolicy (\"%s\") must be Always, IfNotPresent or "
                         "Never",
                         pp);
    if (!inj_log_level_valid(s->proxy.log_level))
        return ns_errorf(err, -EINVAL,
                         "spec.proxy.logLevel (\"%s\") must be debug, info, warn or error",
                         s->proxy.log_level);
    rc = check_resources(&s->proxy.resources, "spec.proxy", err);
    if (!rc)
        rc = check_resources(&s->init.resources, "spec.init", err);
    if (!rc)
        rc = check_resources(&s->injector.resources, "spec.injector", err);
    if (rc)
        return rc;

    const char *fp = s->injector.failure_policy;
    if (strcmp(fp, "Fail") && strcmp(fp, "Ignore"))
        return ns_errorf(err, -EINVAL,
                         "spec.injector.failurePolicy (\"%s\") must be Fail or Ignore", fp);
    if (s->injector.replicas < 0)
        return ns_errorf(err, -EINVAL, "spec.injector.replicas (%d) must not be negative",
                         (int)s->injector.replicas);
    if (s->injector.replicas == 0 && strcmp(fp, "Fail") == 0)
        return ns_errorf(err, -EINVAL,
                         "spec.injector.replicas is 0 with failurePolicy Fail: with no injector "
                         "to answer, every pod creation in opted-in namespaces would fail; set "
                         "failurePolicy Ignore to scale the injector to zero");
    if (s->injector.timeout_seconds < 1 || s->injector.timeout_seconds > 30)
        return ns_errorf(err, -EINVAL,
                         "spec.injector.timeoutSeconds (%d) must be between 1 and 30, the API "
                         "server's limits",
                         (int)s->injector.timeout_seconds);

    rc = check_list(s->traffic.include_inbound_ports, false, true, "includeInboundPorts", err);
    if (!rc)
        rc = check_list(s->traffic.exclude_inbound_ports, false, false, "excludeInboundPorts", err);
    if (!rc)
        rc = check_list(s->traffic.exclude_outbound_ports, false, false, "excludeOutboundPorts",
                        err);
    if (!rc)
        rc = check_list(s->traffic.include_outbound_cidrs, true, true, "includeOutboundCIDRs", err);
    if (!rc)
        rc =
            check_list(s->traffic.exclude_outbound_cidrs, true, false, "excludeOutboundCIDRs", err);
    if (!rc)
        rc = check_certs(s, err);
    return rc;
}

/* ---- building JSON (ns_jb: the first allocation failure is checked once) ---- */

/* The labels that select the injector's pods: stable for the life of a revision, as a
 * Deployment's selector cannot change. */
static void add_selector_labels(ns_jb *b, cJSON *labels, const mesh_spec *s)
{
    ns_jb_str(b, labels, MESH_LABEL_NAME, "nutshell-injector");
    ns_jb_str(b, labels, MESH_LABEL_REVISION, s->revision);
}

static void add_labels(ns_jb *b, cJSON *labels, const mesh_spec *s)
{
    ns_jb_str(b, labels, MESH_LABEL_NAME, "nutshell-injector");
    ns_jb_str(b, labels, MESH_LABEL_PART_OF, "nutshell");
    ns_jb_str(b, labels, MESH_LABEL_MANAGED_BY, "nutshell-operator");
    ns_jb_str(b, labels, MESH_LABEL_REVISION, s->revision);
}

cJSON *mesh_object_new(const mesh_spec *s, const char *api_version, const char *kind,
                       const char *name, const char *namespace)
{
    ns_jb b = {0};
    cJSON *o = cJSON_CreateObject();
    ns_jb_str(&b, o, "apiVersion", api_version);
    ns_jb_str(&b, o, "kind", kind);
    cJSON *meta = ns_jb_obj(&b, o, "metadata");
    ns_jb_str(&b, meta, "name", name);
    if (namespace)
        ns_jb_str(&b, meta, "namespace", namespace);
    add_labels(&b, ns_jb_obj(&b, meta, "labels"), s);
    /* controller: true makes the Mesh the one owner the garbage collector and
     * `kubectl get -o wide` name; blockOwnerDeletion keeps a foreground delete of the
     * Mesh waiting until these are gone. */
    cJSON *ref = ns_jb_obj(&b, ns_jb_arr(&b, meta, "ownerReferences"), NULL);
    ns_jb_str(&b, ref, "apiVersion", MESH_API_VERSION);
    ns_jb_str(&b, ref, "kind", MESH_KIND);
    ns_jb_str(&b, ref, "name", s->name);
    ns_jb_str(&b, ref, "uid", s->uid);
    ns_jb_bool(&b, ref, "controller", true);
    ns_jb_bool(&b, ref, "blockOwnerDeletion", true);
    if (!o || b.oom) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Adds a new object to `list` and returns it, or NULL (oom set). */
static cJSON *new_item(ns_jb *b, cJSON *list, const mesh_spec *s, const char *api_version,
                       const char *kind, const char *name, const char *namespace)
{
    return ns_jb_add(b, list, NULL, mesh_object_new(s, api_version, kind, name, namespace));
}

/* {requests: {cpu, memory}, limits: {cpu, memory}}, leaving out values that are "". */
static void add_resources(ns_jb *b, cJSON *parent, const mesh_resources *r)
{
    cJSON *res = ns_jb_obj(b, parent, "resources");
    const char *req[2] = {r->cpu_request, r->memory_request};
    const char *lim[2] = {r->cpu_limit, r->memory_limit};
    static const char *const keys[2] = {"cpu", "memory"};
    for (int part = 0; part < 2; part++) {
        const char **vals = part == 0 ? req : lim;
        if (!*vals[0] && !*vals[1])
            continue;
        cJSON *o = ns_jb_obj(b, res, part == 0 ? "requests" : "limits");
        for (int i = 0; i < 2; i++)
            if (*vals[i])
                ns_jb_str(b, o, keys[i], vals[i]);
    }
}

/* The injector's config file, keys as in docs/injector.md. Every key is written, so the
 * injector's behaviour follows the Mesh alone and not the injector's built-in defaults,
 * which may differ when the injector image is older or newer than the operator. */
static char *injector_config(const mesh_spec *s, const char *namespace)
{
    ns_jb b = {0};
    char discovery[300];
    snprintf(discovery, sizeof(discovery), DISCOVERY_FMT, namespace);
    cJSON *c = cJSON_CreateObject();
    ns_jb_str(&b, c, "revision", s->revision);
    ns_jb_str(&b, c, "discoveryAddress", discovery);
    cJSON *proxy = ns_jb_obj(&b, c, "proxy");
    ns_jb_str(&b, proxy, "image", s->proxy.image);
    ns_jb_str(&b, proxy, "imagePullPolicy", s->proxy.image_pull_policy);
    ns_jb_str(&b, proxy, "logLevel", s->proxy.log_level);
    ns_jb_bool(&b, proxy, "nativeSidecar", s->proxy.native_sidecar);
    ns_jb_bool(&b, proxy, "holdApplication", s->proxy.hold_application);
    add_resources(&b, proxy, &s->proxy.resources);
    cJSON *init = ns_jb_obj(&b, c, "init");
    ns_jb_str(&b, init, "image", s->init.image);
    add_resources(&b, init, &s->init.resources);
    cJSON *t = ns_jb_obj(&b, c, "traffic");
    ns_jb_str(&b, t, "includeInboundPorts", s->traffic.include_inbound_ports);
    ns_jb_str(&b, t, "excludeInboundPorts", s->traffic.exclude_inbound_ports);
    ns_jb_str(&b, t, "excludeOutboundPorts", s->traffic.exclude_outbound_ports);
    ns_jb_str(&b, t, "includeOutboundCIDRs", s->traffic.include_outbound_cidrs);
    ns_jb_str(&b, t, "excludeOutboundCIDRs", s->traffic.exclude_outbound_cidrs);
    char *text = c && !b.oom ? ns_json_print(c) : NULL;
    cJSON_Delete(c);
    return text;
}

static void add_base64(ns_jb *b, cJSON *parent, const char *key, const char *pem)
{
    ns_buf buf;
    ns_buf_init(&buf);
    ns_buf_base64(&buf, pem, strlen(pem));
    if (buf.failed)
        b->oom = true;
    else
        ns_jb_str(b, parent, key, ns_buf_cstr(&buf));
    /* the buffer may have held a private key */
    if (buf.data)
        memset(buf.data, 0, buf.cap);
    ns_buf_free(&buf);
}

static void add_probe(ns_jb *b, cJSON *container, const char *key, const char *path, int period,
                      int failures)
{
    cJSON *p = ns_jb_obj(b, container, key);
    cJSON *get = ns_jb_obj(b, p, "httpGet");
    ns_jb_str(b, get, "path", path);
    ns_jb_num(b, get, "port", METRICS_PORT);
    ns_jb_num(b, p, "periodSeconds", period);
    ns_jb_num(b, p, "failureThreshold", failures);
}

static void add_deployment(ns_jb *b, cJSON *list, const mesh_spec *s, const char *ns)
{
    cJSON *d = new_item(b, list, s, "apps/v1", "Deployment", s->names.injector, ns);
    cJSON *spec = ns_jb_obj(b, d, "spec");
    ns_jb_num(b, spec, "replicas", s->injector.replicas);
    add_selector_labels(b, ns_jb_obj(b, ns_jb_obj(b, spec, "selector"), "matchLabels"), s);
    /* Surge before taking a pod away: with the default 25% of 2 replicas rounding to
     * zero unavailable this is what happens anyway, but it also holds for 1 replica. */
    cJSON *strategy = ns_jb_obj(b, spec, "strategy");
    ns_jb_str(b, strategy, "type", "RollingUpdate");
    cJSON *ru = ns_jb_obj(b, strategy, "rollingUpdate");
    ns_jb_num(b, ru, "maxUnavailable", 0);
    ns_jb_num(b, ru, "maxSurge", 1);

    /* No annotations on the template: see mesh_render()'s contract. */
    cJSON *tmpl = ns_jb_obj(b, spec, "template");
    add_labels(b, ns_jb_obj(b, ns_jb_obj(b, tmpl, "metadata"), "labels"), s);
    cJSON *pod = ns_jb_obj(b, tmpl, "spec");
    ns_jb_str(b, pod, "serviceAccountName", s->names.injector);
    /* The injector never calls the API server. */
    ns_jb_bool(b, pod, "automountServiceAccountToken", false);
    cJSON *psc = ns_jb_obj(b, pod, "securityContext");
    ns_jb_bool(b, psc, "runAsNonRoot", true);
    ns_jb_num(b, psc, "runAsUser", INJECTOR_UID);
    ns_jb_num(b, psc, "runAsGroup", INJECTOR_UID);
    ns_jb_num(b, psc, "fsGroup", INJECTOR_UID); /* group-owns the 0440 key file */
    ns_jb_str(b, ns_jb_obj(b, psc, "seccompProfile"), "type", "RuntimeDefault");

    cJSON *term =
        ns_jb_obj(b,
                  ns_jb_arr(b, ns_jb_obj(b, ns_jb_obj(b, pod, "affinity"), "podAntiAffinity"),
                            "preferredDuringSchedulingIgnoredDuringExecution"),
                  NULL);
    ns_jb_num(b, term, "weight", 100);
    cJSON *pat = ns_jb_obj(b, term, "podAffinityTerm");
    add_selector_labels(b, ns_jb_obj(b, ns_jb_obj(b, pat, "labelSelector"), "matchLabels"), s);
    ns_jb_str(b, pat, "topologyKey", "kubernetes.io/hostname");

    cJSON *c = ns_jb_obj(b, ns_jb_arr(b, pod, "containers"), NULL);
    ns_jb_str(b, c, "name", "nutshell-injector");
    ns_jb_str(b, c, "image", s->injector.image);
    ns_jb_str(b, c, "imagePullPolicy", "IfNotPresent");
    static const char *const args[] = {
        "serve",
        "--listen=0.0.0.0:9443",
        "--metrics-listen=0.0.0.0:9090",
        "--tls-cert=" TLS_DIR "/tls.crt",
        "--tls-key=" TLS_DIR "/tls.key",
        "--config=" CONFIG_DIR "/config.json",
        "--log-format=json",
        NULL,
    };
    ns_jb_strs(b, c, "args", args);
    cJSON *ports = ns_jb_arr(b, c, "ports");
    cJSON *p = ns_jb_obj(b, ports, NULL);
    ns_jb_str(b, p, "name", "webhook");
    ns_jb_num(b, p, "containerPort", WEBHOOK_PORT);
    ns_jb_str(b, p, "protocol", "TCP");
    p = ns_jb_obj(b, ports, NULL);
    ns_jb_str(b, p, "name", "metrics");
    ns_jb_num(b, p, "containerPort", METRICS_PORT);
    ns_jb_str(b, p, "protocol", "TCP");
    add_probe(b, c, "readinessProbe", "/readyz", 5, 3);
    add_probe(b, c, "livenessProbe", "/healthz", 10, 3);
    add_resources(b, c, &s->injector.resources);
    cJSON *csc = ns_jb_obj(b, c, "securityContext");
    ns_jb_bool(b, csc, "allowPrivilegeEscalation", false);
    ns_jb_bool(b, csc, "readOnlyRootFilesystem", true);
    ns_jb_bool(b, csc, "runAsNonRoot", true);
    ns_jb_num(b, csc, "runAsUser", INJECTOR_UID);
    static const char *const drop_all[] = {"ALL", NULL};
    ns_jb_strs(b, ns_jb_obj(b, csc, "capabilities"), "drop", drop_all);
    ns_jb_str(b, ns_jb_obj(b, csc, "seccompProfile"), "type", "RuntimeDefault");
    /* Whole-volume mounts (never subPath): the kubelet swaps the files in place on
     * rotation and the injector reloads them. */
    cJSON *mounts = ns_jb_arr(b, c, "volumeMounts");
    cJSON *m = ns_jb_obj(b, mounts, NULL);
    ns_jb_str(b, m, "name", "tls");
    ns_jb_str(b, m, "mountPath", TLS_DIR);
    ns_jb_bool(b, m, "readOnly", true);
    m = ns_jb_obj(b, mounts, NULL);
    ns_jb_str(b, m, "name", "config");
    ns_jb_str(b, m, "mountPath", CONFIG_DIR);
    ns_jb_bool(b, m, "readOnly", true);

    cJSON *vols = ns_jb_arr(b, pod, "volumes");
    cJSON *v = ns_jb_obj(b, vols, NULL);
    ns_jb_str(b, v, "name", "tls");
    cJSON *sec = ns_jb_obj(b, v, "secret");
    ns_jb_str(b, sec, "secretName", s->names.tls);
    ns_jb_num(b, sec, "defaultMode", 0440);
    v = ns_jb_obj(b, vols, NULL);
    ns_jb_str(b, v, "name", "config");
    ns_jb_str(b, ns_jb_obj(b, v, "configMap"), "name", s->names.config);
}

static void add_service(ns_jb *b, cJSON *list, const mesh_spec *s, const char *ns)
{
    cJSON *svc = new_item(b, list, s, "v1", "Service", s->names.injector, ns);
    cJSON *spec = ns_jb_obj(b, svc, "spec");
    ns_jb_str(b, spec, "type", "ClusterIP");
    add_selector_labels(b, ns_jb_obj(b, spec, "selector"), s);
    cJSON *ports = ns_jb_arr(b, spec, "ports");
    cJSON *p = ns_jb_obj(b, ports, NULL);
    ns_jb_str(b, p, "name", "https-webhook");
    ns_jb_num(b, p, "port", SERVICE_PORT);
    ns_jb_num(b, p, "targetPort", WEBHOOK_PORT);
    ns_jb_str(b, p, "protocol", "TCP");
    p = ns_jb_obj(b, ports, NULL);
    ns_jb_str(b, p, "name", "http-metrics");
    ns_jb_num(b, p, "port", METRICS_PORT);
    ns_jb_num(b, p, "targetPort", METRICS_PORT);
    ns_jb_str(b, p, "protocol", "TCP");
}

/* One of the two webhooks of hack/lib/webhook.sh, with a service clientConfig. */
static void add_webhook(ns_jb *b, cJSON *hooks, const mesh_spec *s, const char *ns,
                        const char *ca_bundle_pem, bool namespace_entry)
{
    cJSON *w = ns_jb_obj(b, hooks, NULL);
    ns_jb_str(b, w, "name",
              namespace_entry ? "namespace.sidecar.nutshell.io" : "object.sidecar.nutshell.io");
    cJSON *cc = ns_jb_obj(b, w, "clientConfig");
    cJSON *svc = ns_jb_obj(b, cc, "service");
    ns_jb_str(b, svc, "namespace", ns);
    ns_jb_str(b, svc, "name", s->names.injector);
    ns_jb_str(b, svc, "path", "/inject");
    ns_jb_num(b, svc, "port", SERVICE_PORT);
    add_base64(b, cc, "caBundle", ca_bundle_pem);

    cJSON *rule = ns_jb_obj(b, ns_jb_arr(b, w, "rules"), NULL);
    static const char *const create[] = {"CREATE", NULL}, *const core[] = {"", NULL},
                             *const v1[] = {"v1", NULL}, *const pods[] = {"pods", NULL};
    ns_jb_strs(b, rule, "operations", create);
    ns_jb_strs(b, rule, "apiGroups", core);
    ns_jb_strs(b, rule, "apiVersions", v1);
    ns_jb_strs(b, rule, "resources", pods);

    static const char *const enabled[] = {"enabled", NULL}, *const no[] = {"false", NULL},
                             *const yes[] = {"true", NULL};
    const char *system[] = {"kube-system", "kube-public", "kube-node-lease", ns, NULL};
    cJSON *nsx = ns_jb_arr(b, ns_jb_obj(b, w, "namespaceSelector"), "matchExpressions");
    cJSON *e = ns_jb_obj(b, nsx, NULL);
    ns_jb_str(b, e, "key", "nutshell.io/inject");
    ns_jb_str(b, e, "operator", namespace_entry ? "In" : "DoesNotExist");
    if (namespace_entry)
        ns_jb_strs(b, e, "values", enabled);
    e = ns_jb_obj(b, nsx, NULL);
    ns_jb_str(b, e, "key", "kubernetes.io/metadata.name");
    ns_jb_str(b, e, "operator", "NotIn");
    ns_jb_strs(b, e, "values", system);
    cJSON *objx = ns_jb_arr(b, ns_jb_obj(b, w, "objectSelector"), "matchExpressions");
    e = ns_jb_obj(b, objx, NULL);
    ns_jb_str(b, e, "key", "nutshell.io/inject");
    ns_jb_str(b, e, "operator", namespace_entry ? "NotIn" : "In");
    ns_jb_strs(b, e, "values", namespace_entry ? no : yes);

    ns_jb_str(b, w, "sideEffects", "None");
    static const char *const review_versions[] = {"v1", NULL};
    ns_jb_strs(b, w, "admissionReviewVersions", review_versions);
    ns_jb_str(b, w, "failurePolicy", s->injector.failure_policy);
    ns_jb_num(b, w, "timeoutSeconds", s->injector.timeout_seconds);
    ns_jb_str(b, w, "reinvocationPolicy", "Never");
    ns_jb_str(b, w, "matchPolicy", "Equivalent");
}

int mesh_render_spec(const mesh_spec *s, const char *ns, const mesh_tls *tls, cJSON **out,
                     ns_err *err)
{
    if (!tls || !tls->ca_bundle_pem || !tls->cert_pem || !tls->key_pem || !ns)
        return ns_errorf(err, -EINVAL, "no TLS material to render the injector's objects with");
    ns_jb b = {0};
    cJSON *list = cJSON_CreateArray();
    char *config = injector_config(s, ns);
    if (!list || !config)
        b.oom = true;

    cJSON *sa = new_item(&b, list, s, "v1", "ServiceAccount", s->names.injector, ns);
    ns_jb_bool(&b, sa, "automountServiceAccountToken", false);

    cJSON *cm = new_item(&b, list, s, "v1", "ConfigMap", s->names.config, ns);
    if (config)
        ns_jb_str(&b, ns_jb_obj(&b, cm, "data"), "config.json", config);

    cJSON *secret = new_item(&b, list, s, "v1", "Secret", s->names.tls, ns);
    ns_jb_str(&b, secret, "type", "kubernetes.io/tls");
    cJSON *data = ns_jb_obj(&b, secret, "data");
    add_base64(&b, data, "tls.crt", tls->cert_pem);
    add_base64(&b, data, "tls.key", tls->key_pem);
    add_base64(&b, data, "ca.crt", tls->ca_bundle_pem);

    add_deployment(&b, list, s, ns);
    add_service(&b, list, s, ns);

    /* A PDB on a single replica would block node drains forever. */
    if (s->injector.replicas > 1) {
        cJSON *pdb =
            new_item(&b, list, s, "policy/v1", "PodDisruptionBudget", s->names.injector, ns);
        cJSON *spec = ns_jb_obj(&b, pdb, "spec");
        ns_jb_num(&b, spec, "minAvailable", 1);
        add_selector_labels(&b, ns_jb_obj(&b, ns_jb_obj(&b, spec, "selector"), "matchLabels"), s);
    }

    cJSON *mwc = new_item(&b, list, s, "admissionregistration.k8s.io/v1",
                          "MutatingWebhookConfiguration", s->names.webhook, NULL);
    cJSON *hooks = ns_jb_arr(&b, mwc, "webhooks");
    add_webhook(&b, hooks, s, ns, tls->ca_bundle_pem, true);
    add_webhook(&b, hooks, s, ns, tls->ca_bundle_pem, false);

    cJSON_free(config);
    if (b.oom) {
        cJSON_Delete(list);
        return ns_errorf(err, -ENOMEM, "out of memory rendering the Mesh's objects");
    }
    *out = list;
    return 0;
}

int mesh_render(const cJSON *mesh, const char *ns, const char *version, const mesh_tls *tls,
                cJSON **out, ns_err *err)
{
    mesh_spec s;
    int rc = mesh_spec_resolve(mesh, version, &s, err);
    if (!rc)
        rc = mesh_spec_validate(&s, err);
    if (!rc)
        rc = mesh_render_spec(&s, ns, tls, out, err);
    return rc;
}

/* ---- drift ---- */

static bool quantities_equal(const char *a, const char *b)
{
    double x, y;
    if (inj_quantity_parse(a, &x) || inj_quantity_parse(b, &y))
        return false;
    return fabs(x - y) <= 1e-9 * fmax(fabs(x), fabs(y));
}

/* `quantities`: d is a direct member of a "requests" or "limits" object. */
static bool differs(const cJSON *d, const cJSON *o, bool quantities, bool top)
{
    if (!o)
        return true;
    if (cJSON_IsObject(d)) {
        if (!cJSON_IsObject(o))
            return true;
        bool child_q =
            d->string && (!strcmp(d->string, "requests") || !strcmp(d->string, "limits"));
        for (const cJSON *c = d->child; c; c = c->next) {
            if (top && (!strcmp(c->string, "apiVersion") || !strcmp(c->string, "kind")))
                continue;
            if (differs(c, cJSON_GetObjectItemCaseSensitive(o, c->string), child_q, false))
                return true;
        }
        return false;
    }
    if (cJSON_IsArray(d)) {
        if (!cJSON_IsArray(o) || cJSON_GetArraySize(d) != cJSON_GetArraySize(o))
            return true;
        const cJSON *oc = o->child;
        for (const cJSON *c = d->child; c; c = c->next, oc = oc->next)
            if (differs(c, oc, false, false))
                return true;
        return false;
    }
    if (cJSON_IsString(d)) {
        if (!cJSON_IsString(o))
            return true;
        if (strcmp(d->valuestring, o->valuestring) == 0)
            return false;
        return !(quantities && quantities_equal(d->valuestring, o->valuestring));
    }
    if (cJSON_IsNumber(d))
        return !cJSON_IsNumber(o) || d->valuedouble != o->valuedouble;
    if (cJSON_IsBool(d))
        return !cJSON_IsBool(o) || cJSON_IsTrue(d) != cJSON_IsTrue(o);
    return !cJSON_IsNull(o) || !cJSON_IsNull(d);
}

bool mesh_object_needs_update(const cJSON *desired, const cJSON *observed)
{
    return differs(desired, observed, false, true);
}

/* ---- status ---- */

void mesh_time_format(time_t t, char *buf, size_t len)
{
    if (ns_time_format_s((int64_t)t, buf, len) != 0 && len > 0)
        buf[0] = '\0';
}

typedef struct cond {
    const char *type;
    bool ok;
    const char *reason;
    char message[NS_ERR_MSG_MAX + 64];
} cond;

static const cJSON *prev_condition(const cJSON *prev_status, const char *type)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, ns_json_get(prev_status, "conditions"))
    {
        const char *t = ns_json_str(c, "type");
        if (t && strcmp(t, type) == 0)
            return c;
    }
    return NULL;
}

static void add_condition(ns_jb *b, cJSON *list, const cond *c, const mesh_observed *obs,
                          const cJSON *prev_status)
{
    const char *status = c->ok ? "True" : "False";
    char now[32];
    mesh_time_format(obs->now, now, sizeof(now));
    /* lastTransitionTime marks a change of status only, so `kubectl wait` and humans
     * can tell how long a condition has held. */
    const cJSON *prev = prev_condition(prev_status, c->type);
    const char *prev_status_text = ns_json_str(prev, "status");
    const char *prev_time = ns_json_str(prev, "lastTransitionTime");
    const char *when =
        prev_status_text && prev_time && strcmp(prev_status_text, status) == 0 ? prev_time : now;

    cJSON *o = ns_jb_obj(b, list, NULL);
    ns_jb_str(b, o, "type", c->type);
    ns_jb_str(b, o, "status", status);
    ns_jb_num(b, o, "observedGeneration", (double)obs->generation);
    ns_jb_str(b, o, "lastTransitionTime", when);
    ns_jb_str(b, o, "reason", c->reason);
    ns_jb_str(b, o, "message", c->message);
}

int mesh_status_build(const cJSON *prev_status, const mesh_observed *obs, cJSON **out)
{
    char cert_t[32] = "", ca_t[32] = "";
    if (obs->cert_not_after)
        mesh_time_format(obs->cert_not_after, cert_t, sizeof(cert_t));
    if (obs->ca_not_after)
        mesh_time_format(obs->ca_not_after, ca_t, sizeof(ca_t));
    bool failed = obs->error && *obs->error;

    cond cert = {.type = "CertificateReady"};
    if (!obs->cert_not_after || !obs->ca_not_after) {
        cert.reason = "NotIssued";
        snprintf(cert.message, sizeof(cert.message), "no serving certificate has been issued yet");
    } else if (obs->cert_not_after <= obs->now) {
        cert.reason = "Expired";
        snprintf(cert.message, sizeof(cert.message), "the serving certificate expired at %s",
                 cert_t);
    } else if (obs->ca_not_after <= obs->now) {
        cert.reason = "Expired";
        snprintf(cert.message, sizeof(cert.message), "the CA expired at %s", ca_t);
    } else if (obs->now >= obs->cert_not_after - (time_t)obs->renew_before) {
        /* the planner renews at this point, so this lasts only if renewal fails */
        cert.reason = "RenewalDue";
        snprintf(cert.message, sizeof(cert.message),
                 "the serving certificate expires at %s and is due for renewal", cert_t);
    } else {
        cert.ok = true;
        cert.reason = "Valid";
        snprintf(cert.message, sizeof(cert.message),
                 "serving certificate valid until %s, CA until %s", cert_t, ca_t);
    }

    cond hook = {.type = "WebhookReady"};
    if (!obs->webhook_present) {
        hook.reason = "WebhookMissing";
        snprintf(hook.message, sizeof(hook.message),
                 "the MutatingWebhookConfiguration does not exist yet");
    } else if (!obs->webhook_ca_matches) {
        hook.reason = "CABundleMismatch";
        snprintf(hook.message, sizeof(hook.message),
                 "the webhook configuration does not carry the current CA bundle yet");
    } else if (obs->replicas > 0 && obs->ready_replicas < 1) {
        hook.reason = "NoInjectorReady";
        snprintf(hook.message, sizeof(hook.message),
                 "no injector replica is ready to answer the webhook");
    } else {
        hook.ok = true;
        hook.reason = "Configured";
        snprintf(hook.message, sizeof(hook.message),
                 "the webhook configuration trusts the current CA bundle");
    }

    bool injector_ok = obs->ready_replicas >= obs->replicas;
    cond ready = {.type = "Ready"};
    if (failed) {
        ready.reason = "ReconcileError";
        snprintf(ready.message, sizeof(ready.message), "%s", obs->error);
    } else if (!cert.ok) {
        ready.reason = "CertificateNotReady";
        snprintf(ready.message, sizeof(ready.message), "%s", cert.message);
    } else if (!hook.ok) {
        ready.reason = "WebhookNotReady";
        snprintf(ready.message, sizeof(ready.message), "%s", hook.message);
    } else if (!injector_ok) {
        ready.reason = "InjectorNotReady";
        snprintf(ready.message, sizeof(ready.message), "%d of %d injector replicas are ready",
                 (int)obs->ready_replicas, (int)obs->replicas);
    } else {
        ready.ok = true;
        ready.reason = "Ready";
        snprintf(ready.message, sizeof(ready.message),
                 "the injector is serving (%d of %d replicas ready)", (int)obs->ready_replicas,
                 (int)obs->replicas);
    }

    /* Installing until the first time everything held; after that a failure is a
     * regression, and says so. An error is never "Installing": it needs a human. */
    const char *prev_phase = ns_json_str(prev_status, "phase");
    const char *phase;
    if (ready.ok)
        phase = "Ready";
    else if (!failed && (!prev_phase || strcmp(prev_phase, "Installing") == 0))
        phase = "Installing";
    else
        phase = "Degraded";

    ns_jb b = {0};
    cJSON *st = cJSON_CreateObject();
    ns_jb_num(&b, st, "observedGeneration", (double)obs->generation);
    ns_jb_str(&b, st, "phase", phase);
    cJSON *conds = ns_jb_arr(&b, st, "conditions");
    add_condition(&b, conds, &ready, obs, prev_status);
    add_condition(&b, conds, &hook, obs, prev_status);
    add_condition(&b, conds, &cert, obs, prev_status);
    cJSON *inj = ns_jb_obj(&b, st, "injector");
    ns_jb_num(&b, inj, "replicas", obs->replicas);
    ns_jb_num(&b, inj, "readyReplicas", obs->ready_replicas);
    cJSON *certificate = ns_jb_obj(&b, st, "certificate");
    if (*cert_t)
        ns_jb_str(&b, certificate, "notAfter", cert_t);
    if (*ca_t)
        ns_jb_str(&b, certificate, "caNotAfter", ca_t);
    if (!st || b.oom) {
        cJSON_Delete(st);
        return -ENOMEM;
    }
    *out = st;
    return 0;
}

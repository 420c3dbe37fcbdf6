/* test_mesh_render.c - the Mesh's desired objects (golden files), spec defaults and
 * checks, the drift predicate and the status.
 *
 * testdata/mesh/NAME.mesh.json renders to NAME.golden.json (a JSON array of objects)
 * with the fixed fake PEM strings below. NS_UPDATE_GOLDEN=1 rewrites the golden files
 * (review the diff before committing).
 */
#include "config.h"
#include "mesh_render.h"
#include "suites.h"

#include <stdlib.h>

#define NS      "nutshell-system"
#define VERSION "0.1.0"

/* Not real PEM: rendering only base64-encodes them, and fixed text keeps golden files
 * stable. */
static const mesh_tls fake_tls = {
    .ca_bundle_pem = "-----BEGIN CERTIFICATE-----\nRkFLRS1DQS0x\n-----END CERTIFICATE-----\n",
    .cert_pem = "-----BEGIN CERTIFICATE-----\nRkFLRS1TRVJWSU5HLTE=\n-----END CERTIFICATE-----\n",
    .key_pem = "-----BEGIN PRIVATE KEY-----\nRkFLRS1LRVktMQ==\n-----END PRIVATE KEY-----\n",
};

/* Two CAs during a rotation, a new serving pair. */
static const mesh_tls fake_tls_rotated = {
    .ca_bundle_pem = "-----BEGIN CERTIFICATE-----\nRkFLRS1DQS0y\n-----END CERTIFICATE-----\n"
                     "-----BEGIN CERTIFICATE-----\nRkFLRS1DQS0x\n-----END CERTIFICATE-----\n",
    .cert_pem = "-----BEGIN CERTIFICATE-----\nRkFLRS1TRVJWSU5HLTI=\n-----END CERTIFICATE-----\n",
    .key_pem = "-----BEGIN PRIVATE KEY-----\nRkFLRS1LRVktMg==\n-----END PRIVATE KEY-----\n",
};

static cJSON *render_file(const char *name, const mesh_tls *tls)
{
    char path[256];
    snprintf(path, sizeof(path), "mesh/%s.mesh.json", name);
    cJSON *mesh = ns_test_read_json(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mesh);
    cJSON *out = NULL;
    ns_err err = {0};
    int rc = mesh_render(mesh, NS, VERSION, tls, &out, &err);
    if (rc)
        fprintf(stderr, "\n  %s: %s\n", name, err.msg);
    NS_ASSERT_INT_EQ(rc, 0);
    cJSON_Delete(mesh);
    return out;
}

static const cJSON *find_kind(const cJSON *list, const char *kind)
{
    const cJSON *o;
    cJSON_ArrayForEach(o, list)
    {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "kind");
        if (cJSON_IsString(k) && strcmp(k->valuestring, kind) == 0)
            return o;
    }
    return NULL;
}

/* The injector must accept the config file the operator writes: parse it with the
 * injector's own parser. */
static void parse_config(const cJSON *list, inj_config *cfg)
{
    const cJSON *cm = find_kind(list, "ConfigMap");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cm, "data"), "config.json");
    CU_ASSERT_FATAL(cJSON_IsString(text));
    inj_config_defaults(cfg);
    ns_err err = {0};
    int rc = inj_config_parse(cfg, text->valuestring, strlen(text->valuestring), &err);
    if (rc)
        fprintf(stderr, "\n  injector refuses the config: %s\n", err.msg);
    NS_ASSERT_INT_EQ(rc, 0);
}

static void golden_case(const char *name)
{
    cJSON *list = render_file(name, &fake_tls);
    CU_ASSERT_PTR_NOT_NULL_FATAL(list);
    char path[256];
    snprintf(path, sizeof(path), "mesh/%s.golden.json", name);
    ns_test_expect_json(list, path);

    inj_config cfg;
    parse_config(list, &cfg);
    /* Every object is owned by the Mesh and labelled, whatever its kind. */
    const cJSON *o;
    cJSON_ArrayForEach(o, list)
    {
        const cJSON *ref = cJSON_GetArrayItem(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "metadata"),
                                             "ownerReferences"),
            0);
        CU_ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ref, "controller")));
        NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ref, "kind")),
                         "Mesh");
    }
    cJSON_Delete(list);
}

static void test_golden_minimal(void)
{
    golden_case("minimal");
}

static void test_golden_full(void)
{
    golden_case("full");
    cJSON *list = render_file("full", &fake_tls);
    inj_config cfg;
    parse_config(list, &cfg);
    NS_ASSERT_STR_EQ(cfg.proxy_image, "registry.example.com/nutshell/proxy:0.1.0-rc1");
    NS_ASSERT_STR_EQ(cfg.init_image, "registry.example.com/nutshell/init:0.1.0-rc1");
    NS_ASSERT_STR_EQ(cfg.proxy_resources.cpu_limit, "2"); /* a number in the Mesh */
    NS_ASSERT_STR_EQ(cfg.init_resources.memory_limit, "64Mi");
    NS_ASSERT_STR_EQ(cfg.init_resources.memory_request, "8Mi"); /* defaulted alone */
    NS_ASSERT_STR_EQ(cfg.exclude_outbound_ports, "5432,6379");
    CU_ASSERT_TRUE(cfg.native_sidecar && cfg.hold_application);
    cJSON_Delete(list);
}

static void test_golden_revision(void)
{
    golden_case("revision");
    cJSON *list = render_file("revision", &fake_tls);
    /* one replica: no PodDisruptionBudget, which would block every node drain */
    CU_ASSERT_PTR_NULL(find_kind(list, "PodDisruptionBudget"));
    const cJSON *mwc = find_kind(list, "MutatingWebhookConfiguration");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                         cJSON_GetObjectItemCaseSensitive(mwc, "metadata"), "name")),
                     "nutshell-sidecar-injector-canary");
    const cJSON *hook = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(mwc, "webhooks"), 0);
    const cJSON *svc = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(hook, "clientConfig"), "service");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(svc, "name")),
                     "nutshell-injector-canary");
    cJSON_Delete(list);
}

/* The CRD defaults, written out, change nothing: a Mesh stored before the CRD had a
 * default, or created with defaulting off, renders the same. */
static void test_defaults_match_crd(void)
{
    cJSON *a = render_file("minimal", &fake_tls);
    cJSON *b = render_file("defaulted", &fake_tls);
    cJSON *mesh = cJSON_Parse("{\"metadata\":{\"name\":\"default\","
                              "\"uid\":\"0b7a4c1e-2f3d-4e5a-9b6c-7d8e9f0a1b2c\","
                              "\"generation\":1}}");
    cJSON *c = NULL;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(mesh_render(mesh, NS, VERSION, &fake_tls, &c, &err), 0);
    CU_ASSERT_TRUE(a && b && cJSON_Compare(a, b, true));
    CU_ASSERT_TRUE(a && c && cJSON_Compare(a, c, true));
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
    cJSON_Delete(mesh);
}

/* Certificates and the config file are reloaded by the injector from its volumes, so
 * neither may change the pod template: that would restart every injector pod. */
static void test_rotation_keeps_pod_template(void)
{
    cJSON *a = render_file("minimal", &fake_tls);
    cJSON *b = render_file("minimal", &fake_tls_rotated);
    cJSON *mesh = ns_test_read_json("mesh/minimal.mesh.json");
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(mesh, "spec");
    cJSON_AddItemToObject(spec, "proxy", cJSON_Parse("{\"logLevel\":\"debug\"}"));
    cJSON *c = NULL;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(mesh_render(mesh, NS, VERSION, &fake_tls, &c, &err), 0);

    CU_ASSERT_TRUE(cJSON_Compare(find_kind(a, "Deployment"), find_kind(b, "Deployment"), true));
    CU_ASSERT_TRUE(cJSON_Compare(find_kind(a, "Deployment"), find_kind(c, "Deployment"), true));
    /* ... while what must change does */
    CU_ASSERT_TRUE(mesh_object_needs_update(find_kind(b, "Secret"), find_kind(a, "Secret")));
    CU_ASSERT_TRUE(mesh_object_needs_update(find_kind(b, "MutatingWebhookConfiguration"),
                                            find_kind(a, "MutatingWebhookConfiguration")));
    CU_ASSERT_TRUE(mesh_object_needs_update(find_kind(c, "ConfigMap"), find_kind(a, "ConfigMap")));
    CU_ASSERT_FALSE(mesh_object_needs_update(find_kind(c, "Secret"), find_kind(a, "Secret")));
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
    cJSON_Delete(mesh);
}

static cJSON *mesh_with_spec(const char *spec)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "{\"metadata\":{\"name\":\"default\",\"uid\":\"u-1\",\"generation\":3},"
             "\"spec\":%s}",
             spec);
    cJSON *m = cJSON_Parse(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    return m;
}

/* Specs the operator must refuse, with the message a user would read in the status. */
static void test_validation_messages(void)
{
    static const struct {
        const char *spec;
        const char *msg;
    } cases[] = {
        {"{\"certificates\":{\"validity\":\"720h\",\"renewBefore\":\"720h\"}}",
         "spec.certificates.renewBefore (720h) must be shorter than validity (720h), or every "
         "certificate would be renewed as soon as it is issued"},
        {"{\"certificates\":{\"caValidity\":\"2880h\"}}",
         "spec.certificates.caValidity (2880h) must be longer than validity + renewBefore "
         "(2160h + 720h), so that the CA outlives the certificates it signs with time left to "
         "rotate it"},
        {"{\"certificates\":{\"validity\":\"60s\",\"renewBefore\":\"30s\",\"caValidity\":"
         "\"90s\"}}",
         "spec.certificates.caValidity (90s) must be longer than validity + renewBefore (60s + "
         "30s), so that the CA outlives the certificates it signs with time left to rotate it"},
        {"{\"certificates\":{\"validity\":\"90d\"}}",
         "spec.certificates.validity (\"90d\") is not a duration: write hours, minutes and "
         "seconds such as \"2160h\" or \"1h30m\""},
        {"{\"certificates\":{\"renewBefore\":\"0s\"}}",
         "spec.certificates: caValidity (87600h), validity (2160h) and renewBefore (0s) must all "
         "be longer than zero"},
        {"{\"injector\":{\"replicas\":0}}",
         "spec.injector.replicas is 0 with failurePolicy Fail: with no injector to answer, every "
         "pod creation in opted-in namespaces would fail; set failurePolicy Ignore to scale the "
         "injector to zero"},
        {"{\"injector\":{\"replicas\":-1,\"failurePolicy\":\"Ignore\"}}",
         "spec.injector.replicas (-1) must not be negative"},
        {"{\"injector\":{\"timeoutSeconds\":31}}",
         "spec.injector.timeoutSeconds (31) must be between 1 and 30, the API server's limits"},
        {"{\"injector\":{\"failurePolicy\":\"Retry\"}}",
         "spec.injector.failurePolicy (\"Retry\") must be Fail or Ignore"},
        {"{\"proxy\":{\"resources\":{\"requests\":{\"cpu\":\"2\"}}}}",
         "spec.proxy.resources.requests.cpu (2) is above limits.cpu (1)"},
        {"{\"init\":{\"resources\":{\"requests\":{\"memory\":\"1Gi\"}}}}",
         "spec.init.resources.requests.memory (1Gi) is above limits.memory (32Mi)"},
        {"{\"injector\":{\"resources\":{\"limits\":{\"memory\":\"8Mi\"}}}}",
         "spec.injector.resources.requests.memory (16Mi) is above limits.memory (8Mi)"},
        {"{\"proxy\":{\"resources\":{\"limits\":{\"memory\":\"lots\"}}}}",
         "spec.proxy.resources.limits.memory (\"lots\") is not a quantity such as \"100m\" or "
         "\"64Mi\""},
        {"{\"traffic\":{\"excludeOutboundPorts\":\"5432, pg\"}}",
         "spec.traffic.excludeOutboundPorts: \"pg\" is not a port (1-65535)"},
        {"{\"traffic\":{\"excludeInboundPorts\":\"*\"}}",
         "spec.traffic.excludeInboundPorts: \"*\" must stand alone"},
        {"{\"revision\":\"Canary\"}",
         "spec.revision (\"Canary\") must be lower-case letters, digits and '-', starting and "
         "ending with a letter or digit, at most 45 characters"},
        {"{\"revision\":\"a-revision-name-that-is-longer-than-forty-five\"}",
         "spec.revision (\"a-revision-name-that-is-longer-than-forty-five\") must be lower-case "
         "letters, digits and '-', starting and ending with a letter or digit, at most 45 "
         "characters"},
        {"{\"proxy\":{\"logLevel\":\"verbose\"}}",
         "spec.proxy.logLevel (\"verbose\") must be debug, info, warn or error"},
        {"{\"proxy\":{\"imagePullPolicy\":\"Sometimes\"}}",
         "spec.proxy.imagePullPolicy (\"Sometimes\") must be Always, IfNotPresent or Never"},
        {"{\"injector\":{\"image\":\"bad image\"}}",
         "spec.injector.image (\"bad image\") is not an image reference"},
        /* JSON types, caught while resolving */
        {"{\"injector\":{\"replicas\":\"2\"}}", "spec.injector.replicas must be an integer"},
        {"{\"injector\":{\"replicas\":2.5}}", "spec.injector.replicas must be an integer"},
        {"{\"proxy\":\"envoy\"}", "spec.proxy must be an object"},
        {"{\"proxy\":{\"nativeSidecar\":\"true\"}}",
         "spec.proxy.nativeSidecar must be true or false"},
        {"{\"revision\":5}", "spec.revision must be a string"},
        {"{\"proxy\":{\"resources\":{\"requests\":{\"cpu\":true}}}}",
         "spec.proxy.resources.requests.cpu must be a quantity such as \"100m\" or \"64Mi\""},
        {"[]", "spec must be an object"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *mesh = mesh_with_spec(cases[i].spec);
        cJSON *out = (cJSON *)&out; /* must stay untouched */
        ns_err err = {0};
        NS_ASSERT_INT_EQ(mesh_render(mesh, NS, VERSION, &fake_tls, &out, &err), -EINVAL);
        NS_ASSERT_STR_EQ(err.msg, cases[i].msg);
        CU_ASSERT_PTR_EQUAL(out, &out);
        cJSON_Delete(mesh);
    }
}

static void test_validation_accepts(void)
{
    static const char *const ok[] = {
        "{\"injector\":{\"replicas\":0,\"failurePolicy\":\"Ignore\"}}",
        "{\"certificates\":{\"caValidity\":\"240h\",\"validity\":\"48h\",\"renewBefore\":\"1h30m\"}"
        "}",
        /* lifetimes are exact seconds, not whole days */
        "{\"certificates\":{\"validity\":\"36h\",\"renewBefore\":\"12h\"}}",
        "{\"certificates\":{\"caValidity\":\"150s\",\"validity\":\"60s\",\"renewBefore\":\"30s\"}}",
        "{\"revision\":\"a-revision-name-that-is-forty-five-characters\"}",
        "{\"proxy\":{\"resources\":{\"requests\":{\"cpu\":\"1000m\"},\"limits\":{\"cpu\":1}}}}",
        "{\"proxy\":null,\"traffic\":{\"excludeOutboundPorts\":null}}",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cJSON *mesh = mesh_with_spec(ok[i]), *out = NULL;
        ns_err err = {0};
        int rc = mesh_render(mesh, NS, VERSION, &fake_tls, &out, &err);
        if (rc)
            fprintf(stderr, "\n  %s: %s\n", ok[i], err.msg);
        NS_ASSERT_INT_EQ(rc, 0);
        cJSON_Delete(out);
        cJSON_Delete(mesh);
    }
}

static void test_metadata_required(void)
{
    ns_err err = {0};
    mesh_spec s;
    cJSON *m = cJSON_Parse("{\"metadata\":{\"name\":\"default\"},\"spec\":{}}");
    NS_ASSERT_INT_EQ(mesh_spec_resolve(m, VERSION, &s, &err), -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "metadata.uid is missing");
    cJSON_Delete(m);
    NS_ASSERT_INT_EQ(mesh_spec_resolve(NULL, VERSION, &s, &err), -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "the Mesh is not a JSON object");

    m = mesh_with_spec("{\"revision\":\"blue\",\"certificates\":{\"validity\":\"1h30m\"}}");
    NS_ASSERT_INT_EQ(mesh_spec_resolve(m, VERSION, &s, &err), 0);
    NS_ASSERT_INT_EQ(s.certs.validity, 5400);
    NS_ASSERT_INT_EQ(s.generation, 3);
    NS_ASSERT_STR_EQ(s.names.ca, "nutshell-ca-blue");
    NS_ASSERT_STR_EQ(s.names.tls, "nutshell-injector-tls-blue");
    cJSON_Delete(m);
}

/* ---- drift ---- */

/* What the API server sends back for `desired`: its fields, plus what it fills in. */
static cJSON *as_observed(const cJSON *desired)
{
    cJSON *o = cJSON_Duplicate(desired, true);
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(o, "metadata");
    cJSON_AddStringToObject(meta, "uid", "3f1d0c9a-0000-4000-8000-000000000001");
    cJSON_AddStringToObject(meta, "resourceVersion", "987654");
    cJSON_AddNumberToObject(meta, "generation", 4);
    cJSON_AddStringToObject(meta, "creationTimestamp", "2025-03-01T10:00:00Z");
    cJSON_AddItemToObject(meta, "managedFields",
                          cJSON_Parse("[{\"manager\":\"nutshell-operator\","
                                      "\"operation\":\"Apply\",\"fieldsType\":\"FieldsV1\"}]"));
    cJSON_AddItemToObject(meta, "annotations",
                          cJSON_Parse("{\"deployment.kubernetes.io/revision\":\"1\"}"));
    cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(meta, "labels"), "team", "platform");
    return o;
}

static void test_drift_ignores_server_fields(void)
{
    cJSON *list = render_file("full", &fake_tls);
    const cJSON *d;
    cJSON_ArrayForEach(d, list)
    {
        cJSON *o = as_observed(d);
        CU_ASSERT_FALSE(mesh_object_needs_update(d, o));
        cJSON_Delete(o);
    }
    /* Defaulted fields deep inside the Deployment, the status, and canonical quantities. */
    cJSON *o = as_observed(find_kind(list, "Deployment"));
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(o, "spec");
    cJSON_AddNumberToObject(spec, "revisionHistoryLimit", 10);
    cJSON_AddNumberToObject(spec, "progressDeadlineSeconds", 600);
    cJSON *pod = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(spec, "template"), "spec");
    cJSON_AddStringToObject(pod, "dnsPolicy", "ClusterFirst");
    cJSON_AddStringToObject(pod, "restartPolicy", "Always");
    cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pod, "containers"), 0);
    cJSON_AddStringToObject(c, "terminationMessagePath", "/dev/termination-log");
    cJSON *probe = cJSON_GetObjectItemCaseSensitive(c, "readinessProbe");
    cJSON_AddNumberToObject(probe, "timeoutSeconds", 1);
    cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(probe, "httpGet"), "scheme", "HTTP");
    cJSON *limits = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(c, "resources"), "limits");
    cJSON_ReplaceItemInObjectCaseSensitive(limits, "cpu", cJSON_CreateString("0.5"));
    cJSON_AddItemToObject(o, "status", cJSON_Parse("{\"replicas\":3,\"readyReplicas\":3}"));
    /* list responses leave apiVersion and kind out of their items */
    cJSON_DeleteItemFromObjectCaseSensitive(o, "apiVersion");
    cJSON_DeleteItemFromObjectCaseSensitive(o, "kind");
    CU_ASSERT_FALSE(mesh_object_needs_update(find_kind(list, "Deployment"), o));
    cJSON_Delete(o);
    cJSON_Delete(list);
}

static void test_drift_detects_changes(void)
{
    cJSON *list = render_file("minimal", &fake_tls);
    const cJSON *dep = find_kind(list, "Deployment");
    const cJSON *mwc = find_kind(list, "MutatingWebhookConfiguration");
    CU_ASSERT_TRUE(mesh_object_needs_update(dep, NULL)); /* absent: create it */

    cJSON *o = as_observed(dep); /* someone scaled the injector */
    cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "spec"), "replicas",
                                           cJSON_CreateNumber(5));
    CU_ASSERT_TRUE(mesh_object_needs_update(dep, o));
    cJSON_Delete(o);

    o = as_observed(dep); /* a label we own was removed */
    cJSON_DeleteItemFromObjectCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "metadata"), "labels"),
        "nutshell.io/revision");
    CU_ASSERT_TRUE(mesh_object_needs_update(dep, o));
    cJSON_Delete(o);

    o = as_observed(dep); /* a different quantity, not just another spelling */
    cJSON *c =
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(
                               cJSON_GetObjectItemCaseSensitive(
                                   cJSON_GetObjectItemCaseSensitive(
                                       cJSON_GetObjectItemCaseSensitive(o, "spec"), "template"),
                                   "spec"),
                               "containers"),
                           0);
    cJSON *limits = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(c, "resources"), "limits");
    cJSON_ReplaceItemInObjectCaseSensitive(limits, "memory", cJSON_CreateString("64M"));
    CU_ASSERT_TRUE(mesh_object_needs_update(dep, o));
    cJSON_DeleteItemFromArray(cJSON_GetObjectItemCaseSensitive(c, "args"), 6); /* --log-format */
    CU_ASSERT_TRUE(mesh_object_needs_update(dep, o));
    cJSON_Delete(o);

    o = as_observed(mwc); /* someone edited the caBundle */
    cJSON *cc = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "webhooks"), 1), "clientConfig");
    cJSON_ReplaceItemInObjectCaseSensitive(cc, "caBundle", cJSON_CreateString("Zm9v"));
    CU_ASSERT_TRUE(mesh_object_needs_update(mwc, o));
    cJSON_Delete(o);

    o = as_observed(mwc); /* a type change is a change */
    cJSON_ReplaceItemInObjectCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "webhooks"), 0), "timeoutSeconds",
        cJSON_CreateString("10"));
    CU_ASSERT_TRUE(mesh_object_needs_update(mwc, o));
    cJSON_Delete(o);

    o = as_observed(find_kind(list, "ServiceAccount"));
    cJSON_ReplaceItemInObjectCaseSensitive(o, "automountServiceAccountToken", cJSON_CreateTrue());
    CU_ASSERT_TRUE(mesh_object_needs_update(find_kind(list, "ServiceAccount"), o));
    cJSON_Delete(o);
    cJSON_Delete(list);
}

/* ---- status ---- */

#define T0 1735689600 /* 2025-01-01T00:00:00Z */

static const cJSON *condition(const cJSON *status, const char *type)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(status, "conditions"))
    {
        if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "type")), type) == 0)
            return c;
    }
    return NULL;
}

static const char *cond_field(const cJSON *status, const char *type, const char *field)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(condition(status, type), field));
}

static const char *phase(const cJSON *status)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(status, "phase"));
}

/* Builds the next status from `prev`, which it frees. */
static cJSON *next_status(cJSON *prev, const mesh_observed *obs)
{
    cJSON *out = NULL;
    NS_ASSERT_INT_EQ(mesh_status_build(prev, obs, &out), 0);
    cJSON_Delete(prev);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    return out;
}

static void test_status_transitions(void)
{
    mesh_observed obs = {.now = T0, .generation = 1, .replicas = 2, .renew_before = 30 * 86400};
    /* fresh install: nothing yet */
    cJSON *st = next_status(NULL, &obs);
    NS_ASSERT_STR_EQ(phase(st), "Installing");
    NS_ASSERT_STR_EQ(cond_field(st, "Ready", "status"), "False");
    NS_ASSERT_STR_EQ(cond_field(st, "Ready", "reason"), "CertificateNotReady");
    NS_ASSERT_STR_EQ(cond_field(st, "CertificateReady", "reason"), "NotIssued");
    NS_ASSERT_STR_EQ(cond_field(st, "WebhookReady", "lastTransitionTime"), "2025-01-01T00:00:00Z");

    /* certificate and webhook in place, injector still starting: reasons change, the
     * Ready status does not, and neither does its time */
    obs.now = T0 + 60;
    obs.cert_not_after = T0 + 90 * 86400;
    obs.ca_not_after = T0 + 3650 * 86400;
    obs.webhook_present = obs.webhook_ca_matches = true;
    obs.ready_replicas = 1;
    st = next_status(st, &obs);
    NS_ASSERT_STR_EQ(phase(st), "Installing");
    NS_ASSERT_STR_EQ(cond_field(st, "Ready", "reason"), "InjectorNotReady");
    NS_ASSERT_STR_EQ(cond_field(st, "Ready", "message"), "1 of 2 injector replicas are ready");
    NS_ASSERT_STR_EQ(cond_field(st, "Ready", "lastTransitionTime"), "2025-01-01T00:00:00Z");
    NS_ASSERT_STR_EQ(cond_field(st, "CertificateReady", "status"), "True");
    NS_ASSERT_STR_EQ(cond_field(st, "CertificateReady", "lastTransitionTime"),
                     "2025-01-01T00:01:00Z");
    NS_ASSERT_STR_EQ(cond_field(st, "WebhookReady", "reason"), "Configured");

    /* with no ready injector the webhook cannot answer */
    obs.ready_replicas = 0;
    st = next_status(st, &obs);
    NS_ASSERT_STR_EQ(cond_field(st, "WebhookReady", "reason"), "NoInjectorReady");
    NS_ASSERT_STR_EQ(cond_field(st, "Ready", "reason"), "WebhookNotReady");
    obs.ready_replicas = 1;
    st = next_status(st, &obs);

    /* ready */
    obs.now = T0 + 120;
    obs.ready_replicas = 2;
    st = next_status(st, &obs);
    NS_ASSERT_STR_EQ(phase(st), "Ready");
    NS_ASSERT_STR_EQ(cond_field(st, "Ready", "status"), "True");
    NS_ASSERT_STR_EQ(cond_field(st, "Ready", "lastTransitionTime"), "2025-01-01T00:02:00Z");
    cJSON *before = cJSON_Duplicate(st, true);

    /* the same facts an hour later: the status is identical, so no status write */
    obs.now = T0 + 3600;
    st = next_status(st, &obs);
    CU_ASSERT_TRUE(cJSON_Compare(st, before, true));
    cJSON_Delete(before);
    const cJSON *cert = cJSON_GetObjectItemCaseSensitive(st, "certificate");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cert, "notAfter")),
                     "2025-04-01T00:00:00Z");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cert, "caNotAfter")),
                     "2034-12-30T00:00:00Z");

    /* someone deleted the webhook configuration: Degraded, not Installing */
    obs.now = T0 + 7200;
    obs.generation = 2;
    obs.webhook_present = false;
    st = next_status(st, &obs);
    NS_ASSERT_STR_EQ(phase(st), "Degraded");
    NS_ASSERT_STR_EQ(cond_field(st, "Ready", "reason"), "WebhookNotReady");
    NS_ASSERT_STR_EQ(cond_field(st, "Ready", "lastTransitionTime"), "2025-01-01T02:00:00Z");
    NS_ASSERT_STR_EQ(cond_field(st, "WebhookReady", "reason"), "WebhookMissing");
    NS_ASSERT_STR_EQ(cond_field(st, "CertificateReady", "lastTransitionTime"),
                     "2025-01-01T00:01:00Z");
    NS_ASSERT_INT_EQ(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(condition(st, "Ready"),
                                                                           "observedGeneration")),
                     2);
    NS_ASSERT_INT_EQ(
        cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(st, "observedGeneration")), 2);

    /* an error is reported verbatim and wins over the other reasons */
    obs.now = T0 + 7260;
    obs.error = "spec.injector.timeoutSeconds (31) must be between 1 and 30, the API server's "
                "limits";
    st = next_status(st, &obs);
    NS_ASSERT_STR_EQ(phase(st), "Degraded");
    NS_ASSERT_STR_EQ(cond_field(st, "Ready", "reason"), "ReconcileError");
    NS_ASSERT_STR_EQ(cond_field(st, "Ready", "message"), obs.error);
    NS_ASSERT_STR_EQ(cond_field(st, "Ready", "lastTransitionTime"), "2025-01-01T02:00:00Z");

    /* recovered */
    obs.now = T0 + 7320;
    obs.error = "";
    obs.webhook_present = true;
    st = next_status(st, &obs);
    NS_ASSERT_STR_EQ(phase(st), "Ready");
    NS_ASSERT_STR_EQ(cond_field(st, "Ready", "lastTransitionTime"), "2025-01-01T02:02:00Z");

    /* renewal failing: due, then expired */
    obs.now = obs.cert_not_after - 86400;
    st = next_status(st, &obs);
    NS_ASSERT_STR_EQ(phase(st), "Degraded");
    NS_ASSERT_STR_EQ(cond_field(st, "CertificateReady", "reason"), "RenewalDue");
    NS_ASSERT_STR_EQ(cond_field(st, "CertificateReady", "message"),
                     "the serving certificate expires at 2025-04-01T00:00:00Z and is due for "
                     "renewal");

    obs.now = obs.cert_not_after;
    st = next_status(st, &obs);
    NS_ASSERT_STR_EQ(phase(st), "Degraded");
    NS_ASSERT_STR_EQ(cond_field(st, "CertificateReady", "reason"), "Expired");
    NS_ASSERT_STR_EQ(cond_field(st, "CertificateReady", "message"),
                     "the serving certificate expired at 2025-04-01T00:00:00Z");
    cJSON_Delete(st);
}

static void test_status_error_during_install(void)
{
    mesh_observed obs = {.now = T0, .generation = 1, .replicas = 2, .error = "boom"};
    cJSON *st = next_status(NULL, &obs);
    NS_ASSERT_STR_EQ(phase(st), "Degraded");
    /* a malformed previous status is tolerated */
    cJSON *junk = cJSON_Parse("{\"phase\":7,\"conditions\":[{\"type\":1},\"x\",{}]}");
    cJSON_Delete(st);
    obs.error = NULL;
    st = next_status(junk, &obs);
    NS_ASSERT_STR_EQ(phase(st), "Installing");
    cJSON_Delete(st);
}

const ns_test mesh_render_tests[] = {
    {"golden: minimal Mesh", test_golden_minimal},
    {"golden: full Mesh", test_golden_full},
    {"golden: revisioned Mesh", test_golden_revision},
    {"CRD defaults written out render the same", test_defaults_match_crd},
    {"rotation and config changes keep the pod template", test_rotation_keeps_pod_template},
    {"validation messages", test_validation_messages},
    {"validation accepts edge values", test_validation_accepts},
    {"metadata required, names per revision", test_metadata_required},
    {"drift: server-filled fields ignored", test_drift_ignores_server_fields},
    {"drift: changes detected", test_drift_detects_changes},
    {"status transitions keep lastTransitionTime", test_status_transitions},
    {"status: error during install", test_status_error_during_install},
    {NULL, NULL},
};

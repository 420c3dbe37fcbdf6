/* test_yamljson.c - YAML <-> cJSON: Kubernetes typing, kubectl-style output, round trips
 * and the limits that keep hostile YAML cheap. Data files: testdata/yaml/. */
#include "yamljson.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

/* ---- helpers ----------------------------------------------------------------------- */

/* Parses `yaml` expecting success; returns the documents array (caller frees) or NULL. */
static cJSON *parse_ok(const char *yaml)
{
    cJSON *docs = NULL;
    ns_err err = {0};
    int rc = ns_yaml_parse(yaml, strlen(yaml), &docs, &err);
    if (rc)
        fprintf(stderr, "\n  parse failed (%d: %s) for:\n%s\n", rc, err.msg, yaml);
    NS_ASSERT_INT_EQ(rc, 0);
    return docs;
}

/* Parses `yaml` expecting -EINVAL and a message containing `want`. */
static void parse_fails(const char *yaml, size_t len, const char *want)
{
    cJSON *docs = (cJSON *)1;
    ns_err err = {0};
    int rc = ns_yaml_parse(yaml, len, &docs, &err);
    NS_ASSERT_INT_EQ(rc, -EINVAL);
    CU_ASSERT_PTR_NULL(docs);
    NS_ASSERT_INT_EQ(err.code, -EINVAL);
    if (!strstr(err.msg, want))
        fprintf(stderr, "\n  message \"%s\" lacks \"%s\" (input %.60s)\n", err.msg, want, yaml);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, want));
    if (rc == 0)
        cJSON_Delete(docs);
}

/* Checks that `got` equals the JSON text `expected`, printing both when not. */
static void assert_json(const cJSON *got, const char *expected, const char *what)
{
    cJSON *want = cJSON_Parse(expected);
    CU_ASSERT_PTR_NOT_NULL_FATAL(want);
    int same = got && cJSON_Compare(got, want, 1);
    if (!same) {
        char *g = got ? cJSON_PrintUnformatted(got) : NULL;
        fprintf(stderr, "\n  %s: expected %s\n  got %s\n", what, expected, g ? g : "(nothing)");
        free(g);
    }
    CU_ASSERT_TRUE(same);
    cJSON_Delete(want);
}

/* Emits `doc` expecting success; returns the text (caller frees). */
static char *emit_ok(const cJSON *doc)
{
    ns_buf b;
    ns_err err = {0};
    ns_buf_init(&b);
    int rc = ns_yaml_emit(doc, &b, &err);
    if (rc)
        fprintf(stderr, "\n  emit failed: %d %s\n", rc, err.msg);
    NS_ASSERT_INT_EQ(rc, 0);
    return ns_buf_take(&b);
}

/* parse(emit(v)) must give back [v]. */
static int round_trips(const cJSON *v, bool report)
{
    char *yaml = emit_ok(v);
    cJSON *docs = NULL;
    ns_err err = {0};
    int ok = yaml && ns_yaml_parse(yaml, strlen(yaml), &docs, &err) == 0 &&
             cJSON_GetArraySize(docs) == 1 && cJSON_Compare(docs->child, v, 1);
    if (!ok && report) {
        char *j = cJSON_PrintUnformatted(v);
        fprintf(stderr, "\n  round trip failed (%s)\n  json: %s\n  yaml:\n%s\n", err.msg,
                j ? j : "?", yaml ? yaml : "(none)");
        free(j);
    }
    cJSON_Delete(docs);
    free(yaml);
    return ok;
}

static const cJSON *at(const cJSON *obj, const char *path)
{
    /* "a.b.0.c": object keys and array indexes; a key with dots ("nutshell.io/status")
     * matches when it is all the rest of the path. */
    char key[128];
    const char *p = path;
    while (obj && *p) {
        const cJSON *whole = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, p) : NULL;
        if (whole)
            return whole;
        size_t n = strcspn(p, ".");
        if (n >= sizeof(key))
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        if (cJSON_IsArray(obj)) {
            char *end;
            long i = strtol(key, &end, 10);
            obj = *end ? NULL : cJSON_GetArrayItem(obj, (int)i);
        } else {
            obj = cJSON_GetObjectItemCaseSensitive(obj, key);
        }
        p += n;
        if (*p == '.')
            p++;
    }
    return obj;
}

static void assert_str_at(const cJSON *obj, const char *path, const char *want)
{
    const cJSON *v = at(obj, path);
    if (!cJSON_IsString(v))
        fprintf(stderr, "\n  %s is not a string\n", path);
    CU_ASSERT_TRUE(cJSON_IsString(v));
    NS_ASSERT_STR_EQ(cJSON_IsString(v) ? v->valuestring : NULL, want);
}

static void assert_num_at(const cJSON *obj, const char *path, double want)
{
    const cJSON *v = at(obj, path);
    if (!cJSON_IsNumber(v) || v->valuedouble != want)
        fprintf(stderr, "\n  %s: expected the number %g, got %s %g\n", path, want,
                cJSON_IsNumber(v) ? "number" : "non-number", v ? v->valuedouble : 0.0);
    CU_ASSERT_TRUE(cJSON_IsNumber(v) && v->valuedouble == want);
}

/* ---- reading manifests ------------------------------------------------------------ */

static void test_deployment_multidoc(void)
{
    char *text = ns_test_read("yaml/deployment.yaml");
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    cJSON *docs = parse_ok(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(docs);
    /* The comment-only document is skipped; "..." ends a document. */
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(docs), 3);
    const cJSON *ns = cJSON_GetArrayItem(docs, 0), *dep = cJSON_GetArrayItem(docs, 1),
                *svc = cJSON_GetArrayItem(docs, 2);
    assert_str_at(ns, "kind", "Namespace");
    assert_str_at(ns, "metadata.labels.nutshell.io/inject", "enabled");

    assert_str_at(dep, "kind", "Deployment");
    assert_num_at(dep, "spec.replicas", 3);
    assert_num_at(dep, "spec.revisionHistoryLimit", 10);
    assert_str_at(dep, "metadata.labels.version", "v1");
    assert_str_at(dep, "spec.selector.matchLabels.app", "reviews");
    assert_str_at(dep, "spec.template.spec.containers.0.name", "reviews");
    assert_num_at(dep, "spec.template.spec.containers.0.ports.0.containerPort", 9080);
    assert_str_at(dep, "spec.template.spec.containers.0.env.1.value", "false");
    assert_str_at(dep, "spec.template.spec.containers.0.resources.limits.cpu", "500m");
    assert_num_at(dep, "spec.template.spec.containers.0.resources.requests.cpu", 0.1);
    CU_ASSERT_TRUE(cJSON_IsTrue(
        at(dep, "spec.template.spec.containers.0.securityContext.readOnlyRootFilesystem")));
    /* YAML 1.1 octal, as Kubernetes reads file modes: 0644 is 420. */
    assert_num_at(dep, "spec.template.spec.volumes.1.configMap.defaultMode", 420);
    const cJSON *empty = at(dep, "spec.template.spec.volumes.0.emptyDir");
    CU_ASSERT_TRUE(cJSON_IsObject(empty) && !empty->child);
    const cJSON *ann = at(dep, "metadata.annotations");
    assert_str_at(ann, "nutshell.io/proxy-port", "15001");
    assert_str_at(ann, "deployment.kubernetes.io/revision", "3");

    assert_str_at(svc, "kind", "Service");
    assert_num_at(svc, "spec.ports.0.port", 9080);
    assert_str_at(svc, "spec.ports.0.name", "http");

    /* Written back kubectl-style: compare with the golden file, then read it again. */
    ns_buf out;
    ns_err err = {0};
    ns_buf_init(&out);
    NS_ASSERT_INT_EQ(ns_yaml_emit_all(docs, &out, &err), 0);
    const char *golden_path = "yaml/deployment.golden.yaml";
    const char *update = getenv("NS_UPDATE_GOLDEN");
    if (update && strcmp(update, "1") == 0)
        NS_ASSERT_INT_EQ(ns_test_write(golden_path, ns_buf_cstr(&out)), 0);
    char *golden = ns_test_read(golden_path);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&out), golden);
    cJSON *again = parse_ok(ns_buf_cstr(&out));
    CU_ASSERT_TRUE(again && cJSON_Compare(again, docs, 1));

    cJSON_Delete(again);
    free(golden);
    ns_buf_free(&out);
    cJSON_Delete(docs);
    free(text);
}

static void test_kubeconfig(void)
{
    char *text = ns_test_read("yaml/kubeconfig.yaml");
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    cJSON *docs = parse_ok(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(docs);
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(docs), 1);
    const cJSON *kc = docs->child;
    assert_str_at(kc, "current-context", "kind-nutshell");
    const cJSON *prefs = at(kc, "preferences");
    CU_ASSERT_TRUE(cJSON_IsObject(prefs) && !prefs->child);
    assert_str_at(kc, "clusters.0.name", "kind-nutshell");
    assert_str_at(kc, "clusters.0.cluster.server", "https://127.0.0.1:6443");
    const cJSON *ca = at(kc, "clusters.0.cluster.certificate-authority-data");
    CU_ASSERT_TRUE(cJSON_IsString(ca) && strncmp(ca->valuestring, "LS0tLS1CRUdJTi", 14) == 0);
    CU_ASSERT_TRUE(cJSON_IsTrue(at(kc, "clusters.1.cluster.insecure-skip-tls-verify")));
    assert_str_at(kc, "clusters.1.cluster.server", "https://10.96.0.1:443");
    assert_str_at(kc, "clusters.1.cluster.proxy-url", "socks5://localhost:1080");
    assert_str_at(kc, "contexts.0.context.namespace", "nutshell-system");
    assert_str_at(kc, "contexts.1.context.user", "oidc");
    assert_str_at(kc, "users.0.user.token", "eyJhbGciOiJSUzI1NiJ9.fake.token");
    assert_json(at(kc, "users.1.user.exec.args"),
                "[\"oidc-login\",\"get-token\",\"--oidc-issuer-url=https://issuer.example.com\"]",
                "exec args");
    CU_ASSERT_TRUE(cJSON_IsNull(at(kc, "users.1.user.exec.env")));
    CU_ASSERT_TRUE(cJSON_IsFalse(at(kc, "users.1.user.exec.provideClusterInfo")));
    CU_ASSERT_TRUE(round_trips(kc, true));
    cJSON_Delete(docs);
    free(text);
}

/* ---- typing --------------------------------------------------------------------------- */

static void test_scalar_typing(void)
{
    /* The value written after "v: " and the JSON Kubernetes (sigs.k8s.io/yaml) makes of it. */
    static const struct {
        const char *yaml, *json;
    } cases[] = {
        {"true", "true"},
        {"True", "true"},
        {"TRUE", "true"},
        {"false", "false"},
        {"yes", "true"},
        {"Yes", "true"},
        {"no", "false"},
        {"NO", "false"},
        {"on", "true"},
        {"Off", "false"},
        {"y", "true"},
        {"N", "false"},
        {"yEs", "\"yEs\""},
        {"null", "null"},
        {"Null", "null"},
        {"~", "null"},
        {"", "null"},
        {"nil", "\"nil\""},
        {"42", "42"},
        {"-7", "-7"},
        {"+12", "12"},
        {"0", "0"},
        {"0x1F", "31"},
        {"-0x10", "-16"},
        {"0o17", "15"},
        {"0644", "420"},
        {"09", "9"},
        {"0b101", "5"},
        {"1_000", "1000"},
        {"9007199254740992", "9007199254740992"},
        {"1.5", "1.5"},
        {".5", "0.5"},
        {"-1.5e3", "-1500"},
        {"1e3", "1000"},
        {"1.", "1"},
        {"1e400", "\"1e400\""},
        {"0x", "\"0x\""},
        {"1.2.3", "\"1.2.3\""},
        {"10.0.0.1", "\"10.0.0.1\""},
        {"2001-12-14", "\"2001-12-14\""},
        {"2024-05-02T09:14:07Z", "\"2024-05-02T09:14:07Z\""},
        {"1:20", "\"1:20\""},
        {"500m", "\"500m\""},
        {"v1", "\"v1\""},
        {"<<", "\"<<\""},
        {"'true'", "\"true\""},
        {"\"42\"", "\"42\""},
        {"''", "\"\""},
        {"\"\"", "\"\""},
        {"'it''s'", "\"it's\""},
        {"\"a\\tb\\u00e9\\/\"", "\"a\\tb\\u00e9/\""},
        {"|\n  line1\n  line2\n", "\"line1\\nline2\\n\""},
        {"|-\n  0644\n", "\"0644\""},
        {">-\n  folded\n  text\n", "\"folded text\""},
        {"!!str 42", "\"42\""},
        {"!!str true", "\"true\""},
        {"!!int \"42\"", "42"},
        {"!!float 1", "1"},
        {"!!bool \"yes\"", "true"},
        {"!!null ''", "null"},
        {"!custom 12", "\"12\""},
        {"! 12", "\"12\""},
        {"!!binary aGVsbG8=", "\"hello\""},
        {"!!timestamp 2001-12-14", "\"2001-12-14\""},
        {"[1, \"2\", three, null, 0x10]", "[1,\"2\",\"three\",null,16]"},
        {"{}", "{}"},
        {"[]", "[]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ns_buf b;
        ns_buf_init(&b);
        ns_buf_printf(&b, "v: %s\n", cases[i].yaml);
        cJSON *docs = parse_ok(ns_buf_cstr(&b));
        assert_json(docs ? at(docs->child, "v") : NULL, cases[i].json, ns_buf_cstr(&b));
        cJSON_Delete(docs);
        ns_buf_free(&b);
    }

    /* Keys take the string form of what they resolve to, as sigs.k8s.io/yaml converts. */
    static const struct {
        const char *yaml, *json;
    } keys[] = {
        {"yes: a\noff: b", "{\"true\":\"a\",\"false\":\"b\"}"},
        {"1: a\n0x10: b\n-0: c", "{\"1\":\"a\",\"16\":\"b\",\"0\":\"c\"}"},
        {"1.50: a\n1000000.0: b\n100000.0: c\n0.1: d\n3.14159265358979: e",
         "{\"1.5\":\"a\",\"1e+06\":\"b\",\"100000\":\"c\",\"0.1\":\"d\",\"3.1415927\":\"e\"}"},
        {".inf: a\n-.inf: b", "{\".inf\":\"a\",\"-.inf\":\"b\"}"},
        {"\"<<\": a\n'1': b", "{\"<<\":\"a\",\"1\":\"b\"}"},
        {"? |\n  multi\n: a", "{\"multi\\n\":\"a\"}"},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        cJSON *docs = parse_ok(keys[i].yaml);
        assert_json(docs ? docs->child : NULL, keys[i].json, keys[i].yaml);
        cJSON_Delete(docs);
    }

    /* Values JSON cannot hold and scalars that do not fit their tag. */
    static const struct {
        const char *yaml, *msg;
    } bad[] = {
        {"v: .inf", "line 1, column 4: infinity and NaN have no JSON form"},
        {"v: [1, -.Inf]", "line 1, column 8:"},
        {"v: .NaN", "no JSON form"},
        {"v: !!int abc", "line 1, column 4: the value does not read as !!int"},
        {"v: !!bool 1", "read as !!bool"},
        {"v: !!null x", "read as !!null"},
        {"v: \"nul\\0here\"", "NUL character"},
        {"v: !!binary '!!!'", "not valid base64"},
        {"v: !!binary /w==", "not UTF-8"},
        {"~: a", "line 1, column 1: a mapping key is null"},
        {"a: 1\n? \n: b", "line 2, column 2: a mapping key is null"},
        {"[a]: b", "line 1, column 1: a mapping key must be a scalar"},
        {"? {a: 1}\n: b", "a mapping key must be a scalar"},
        {"a: 1\nb: 2\na: 3", "line 3, column 1: duplicate key \"a\" (first at line 1, column 1)"},
        {"spec:\n  1: a\n  \"1\": b", "line 3, column 3: duplicate key \"1\""},
        {"{yes: 1, true: 2}", "duplicate key \"true\""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        parse_fails(bad[i].yaml, strlen(bad[i].yaml), bad[i].msg);

    /* Messages never repeat a value: in a kubeconfig it may be a token. */
    static const char secret[] = "users:\n- user:\n    token: !!int s3cr3t-t0ken\n";
    ns_err err = {0};
    cJSON *docs = NULL;
    NS_ASSERT_INT_EQ(ns_yaml_parse(secret, sizeof(secret) - 1, &docs, &err), -EINVAL);
    CU_ASSERT_PTR_NULL(strstr(err.msg, "s3cr3t"));
    NS_ASSERT_STR_EQ(err.msg, "line 3, column 12: the value does not read as !!int");
}

/* ---- writing -------------------------------------------------------------------------- */

static void test_emit_quoting(void)
{
    cJSON *v = cJSON_Parse(
        "{\"t\":\"true\",\"port\":\"1337\",\"empty\":\"\",\"colon\":\"a: b\",\"lead\":\" x\","
        "\"star\":\"*\",\"status\":\"{\\\"containers\\\":[\\\"proxy\\\"]}\",\"yes\":\"yes\","
        "\"y\":\"y\",\"nul\":\"null\",\"tilde\":\"~\",\"mode\":\"0644\",\"hex\":\"0x1F\","
        "\"float\":\"1.5\",\"sexa\":\"1:20\",\"ts\":\"2024-05-02T09:14:07Z\",\"merge\":\"<<\","
        "\"hash\":\"#c\",\"dash\":\"-\",\"plain\":\"plain text\",\"url\":\"https://x.io/a?b=c\","
        "\"ip\":\"10.0.0.1\",\"cpu\":\"500m\",\"utf8\":\"h\\u00e9\",\"tab\":\"a\\tb\","
        "\"cr\":\"a\\r\\nb\",\"script\":\"set -e\\nexec app\\n\",\"nonl\":\"a\\nb\","
        "\"trail\":\"a \\nb\",\"n\":15001,\"neg\":-3,\"frac\":0.1,\"big\":1e21,\"tiny\":1.5e-07,"
        "\"bool\":false,\"none\":null,\"obj\":{},\"arr\":[],"
        "\"containers\":[{\"name\":\"x\",\"ports\":[{\"containerPort\":80}]}],\"nested\":[[1,[]]]"
        "}");
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    char *yaml = emit_ok(v);
    NS_ASSERT_STR_EQ(yaml, "t: \"true\"\n"
                           "port: \"1337\"\n"
                           "empty: \"\"\n"
                           "colon: 'a: b'\n"
                           "lead: ' x'\n"
                           "star: '*'\n"
                           "status: '{\"containers\":[\"proxy\"]}'\n"
                           "\"yes\": \"yes\"\n"
                           "\"y\": \"y\"\n"
                           "nul: \"null\"\n"
                           "tilde: \"~\"\n"
                           "mode: \"0644\"\n"
                           "hex: \"0x1F\"\n"
                           "float: \"1.5\"\n"
                           "sexa: \"1:20\"\n"
                           "ts: \"2024-05-02T09:14:07Z\"\n"
                           "merge: \"<<\"\n"
                           "hash: '#c'\n"
                           "dash: '-'\n"
                           "plain: plain text\n"
                           "url: https://x.io/a?b=c\n"
                           "ip: 10.0.0.1\n"
                           "cpu: 500m\n"
                           "utf8: h\xc3\xa9\n"
                           "tab: \"a\\tb\"\n"
                           "cr: \"a\\r\\nb\"\n"
                           "script: |\n"
                           "  set -e\n"
                           "  exec app\n"
                           "nonl: |-\n"
                           "  a\n"
                           "  b\n"
                           "trail: \"a \\nb\"\n"
                           "\"n\": 15001\n"
                           "neg: -3\n"
                           "frac: 0.1\n"
                           "big: 1e+21\n"
                           "tiny: 1.5e-07\n"
                           "bool: false\n"
                           "none: null\n"
                           "obj: {}\n"
                           "arr: []\n"
                           "containers:\n"
                           "- name: x\n"
                           "  ports:\n"
                           "  - containerPort: 80\n"
                           "nested:\n"
                           "- - 1\n"
                           "  - []\n");
    CU_ASSERT_TRUE(round_trips(v, true));
    free(yaml);
    cJSON_Delete(v);

    /* Scalars and empty collections at the top level. */
    static const struct {
        const char *json, *yaml;
    } roots[] = {
        {"\"x\"", "x\n"}, {"\"1\"", "\"1\"\n"}, {"1.25", "1.25\n"}, {"{}", "{}\n"},
        {"[]", "[]\n"},   {"null", "null\n"},   {"[1]", "- 1\n"},
    };
    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        cJSON *r = cJSON_Parse(roots[i].json);
        char *y = emit_ok(r);
        NS_ASSERT_STR_EQ(y, roots[i].yaml);
        CU_ASSERT_TRUE(round_trips(r, true));
        free(y);
        cJSON_Delete(r);
    }
}

static void test_emit_all_and_errors(void)
{
    cJSON *docs = cJSON_Parse("[{\"kind\":\"A\"},\"two\",[]]");
    ns_buf b;
    ns_err err = {0};
    ns_buf_init(&b);
    NS_ASSERT_INT_EQ(ns_yaml_emit_all(docs, &b, &err), 0);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&b), "kind: A\n---\ntwo\n---\n[]\n");
    cJSON *back = parse_ok(ns_buf_cstr(&b));
    CU_ASSERT_TRUE(back && cJSON_Compare(back, docs, 1));
    cJSON_Delete(back);

    ns_buf_reset(&b);
    cJSON *none = cJSON_CreateArray();
    NS_ASSERT_INT_EQ(ns_yaml_emit_all(none, &b, &err), 0);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&b), "");
    cJSON_Delete(none);

    /* Appends: what the buffer held stays. */
    ns_buf_reset(&b);
    ns_buf_puts(&b, "# head\n");
    cJSON *one = cJSON_CreateString("x");
    NS_ASSERT_INT_EQ(ns_yaml_emit(one, &b, &err), 0);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&b), "# head\nx\n");
    cJSON_Delete(one);

    NS_ASSERT_INT_EQ(ns_yaml_emit_all(docs->child, &b, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "array"));
    NS_ASSERT_INT_EQ(ns_yaml_emit(NULL, &b, &err), -EINVAL);

    cJSON *nan = cJSON_CreateObject();
    cJSON_AddNumberToObject(nan, "x", NAN);
    NS_ASSERT_INT_EQ(ns_yaml_emit(nan, &b, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "NaN"));
    cJSON_Delete(nan);

    cJSON *bad = cJSON_CreateObject();
    cJSON_AddStringToObject(bad, "x", "\xff\xfe");
    NS_ASSERT_INT_EQ(ns_yaml_emit(bad, &b, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "UTF-8"));
    cJSON_Delete(bad);

    cJSON *badkey = cJSON_CreateObject();
    cJSON_AddStringToObject(badkey, "\xc0\xaf", "overlong");
    NS_ASSERT_INT_EQ(ns_yaml_emit(badkey, &b, &err), -EINVAL);
    cJSON_Delete(badkey);

    cJSON *raw = cJSON_CreateRaw("{}");
    NS_ASSERT_INT_EQ(ns_yaml_emit(raw, &b, &err), -EINVAL);
    cJSON_Delete(raw);

    ns_buf_free(&b);
    cJSON_Delete(docs);
}

static void test_round_trip_bookinfo_pod(void)
{
    char *text = ns_test_read("yaml/bookinfo-pod.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    cJSON *pod = cJSON_Parse(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pod);
    char *yaml = emit_ok(pod);
    CU_ASSERT_PTR_NOT_NULL_FATAL(yaml);
    /* kubectl's layout and quoting. */
    static const char *const lines[] = {
        "\n  containers:\n  - name: productpage\n",
        "\n    nutshell.io/proxy-port: \"15001\"\n",
        "\n    nutshell.io/status: '{\"initContainers\":[\"nutshell-init\"],",
        "\n    prometheus.io/scrape: \"yes\"\n",
        "\n    nutshell.io/exclude-outbound-ports: \"\"\n",
        "\n  creationTimestamp: \"2024-05-02T09:14:07Z\"\n",
        "\n    args:\n    - --proxy-port\n    - \"15001\"\n",
        "\n    args:\n    - |\n      set -e\n      exec python productpage.py 9080\n",
        "\n  terminationGracePeriodSeconds: 30\n",
        "\n      value: '  hello: world # not a comment'\n",
        "\n    lastProbeTime: null\n",
        "\n  securityContext: {}\n",
        "\n    lastState: {}\n",
        "\n  podIP: 10.244.1.17\n",
        "\n  ratio: -1.5e-07\n",
        "\n  big: 1e+21\n",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        if (!strstr(yaml, lines[i]))
            fprintf(stderr, "\n  emitted pod lacks \"%s\"\n", lines[i]);
        CU_ASSERT_PTR_NOT_NULL(strstr(yaml, lines[i]));
    }
    cJSON *docs = parse_ok(yaml);
    CU_ASSERT_TRUE(docs && cJSON_GetArraySize(docs) == 1 && cJSON_Compare(docs->child, pod, 1));
    CU_ASSERT_TRUE(round_trips(pod, true));
    cJSON_Delete(docs);
    free(yaml);
    cJSON_Delete(pod);
    free(text);
}

/* A small deterministic generator (xorshift64*), so a failure reproduces. */
static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717u;
}

static char *random_string(char *buf, size_t size)
{
    /* Pieces that stress quoting: indicators, look-alike scalars, breaks, odd Unicode. */
    static const char *const pieces[] = {
        "",
        " ",
        "a",
        "true",
        "1",
        "0x1F",
        "0644",
        ":",
        ": ",
        "#",
        " #",
        "-",
        "- ",
        "*",
        "&",
        "!",
        "|",
        ">",
        "'",
        "\"",
        "\\",
        "\n",
        "\r",
        "\t",
        "\xc3\xa9",
        "\xe2\x80\xa8",
        "\xc2\x85",
        "null",
        "~",
        "<<",
        "---",
        "...",
        "{",
        "}",
        "[",
        "]",
        ",",
        "?",
        "%",
        "@",
        "`",
        "1:20",
        "2024-01-01",
        "\x01",
        "\x7f",
        "\xef\xbb\xbf",
        "\xf0\x9f\x98\x80",
        "  ",
        "yes",
        ".5",
        "1e3",
        "\n\n",
        "=",
        "x: y",
        "\xef\xbf\xbe",
        "nutshell.io/status",
    };
    size_t n = rnd() % 5, len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *p = pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];
        size_t pl = strlen(p);
        if (len + pl + 1 > size)
            break;
        memcpy(buf + len, p, pl + 1);
        len += pl;
    }
    return buf;
}

static double random_number(void)
{
    static const double picks[] = {0,
                                   -1,
                                   1.5,
                                   0.1,
                                   -2.5e-8,
                                   1e300,
                                   1e21,
                                   15001,
                                   123456789012.0,
                                   9007199254740993.0,
                                   -0.0,
                                   5e-324,
                                   1.7976931348623157e308};
    if (rnd() % 3)
        return picks[rnd() % (sizeof(picks) / sizeof(picks[0]))];
    union {
        uint64_t u;
        double d;
    } x = {.u = rnd()};
    return isfinite(x.d) ? x.d : 42;
}

static cJSON *random_value(int depth)
{
    char s[128];
    unsigned k = (unsigned)(rnd() % (depth > 4 ? 5 : 7));
    switch (k) {
    case 0:
        return cJSON_CreateNull();
    case 1:
        return cJSON_CreateBool(rnd() & 1);
    case 2:
        return cJSON_CreateNumber(random_number());
    case 3:
    case 4:
        return cJSON_CreateString(random_string(s, sizeof(s)));
    case 5: {
        cJSON *a = cJSON_CreateArray();
        for (unsigned i = rnd() % 4; i > 0; i--)
            cJSON_AddItemToArray(a, random_value(depth + 1));
        return a;
    }
    default: {
        cJSON *o = cJSON_CreateObject();
        for (unsigned i = rnd() % 4; i > 0; i--) {
            random_string(s, sizeof(s));
            if (!cJSON_GetObjectItemCaseSensitive(o, s))
                cJSON_AddItemToObject(o, s, random_value(depth + 1));
        }
        return o;
    }
    }
}

static void test_round_trip_random(void)
{
    int failures = 0;
    for (int i = 0; i < 3000; i++) {
        cJSON *v = random_value(0);
        if (!round_trips(v, failures < 3))
            failures++;
        cJSON_Delete(v);
    }
    NS_ASSERT_INT_EQ(failures, 0);
}

/* ---- anchors and limits ------------------------------------------------------------ */

static void test_anchors_aliases(void)
{
    cJSON *docs = parse_ok("base: &base\n"
                           "  image: nginx\n"
                           "  ports: [80, 443]\n"
                           "copy: *base\n"
                           "name: &n web\n"
                           "names: [*n, *n]\n"
                           "*n : aliased key\n"
                           "merged:\n"
                           "  image: envoy\n"
                           "  <<: *base\n"
                           "multi:\n"
                           "  <<: [*base, {extra: true, image: other}]\n"
                           "num: &num 0x10\n"
                           "nums: [*num]\n"
                           "list: &l [1, 2]\n"
                           "again: *l\n"
                           "x: &x 1\n"
                           "x2: &x 2\n"
                           "latest: *x\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(docs);
    const cJSON *d = docs->child;
    assert_json(at(d, "copy"), "{\"image\":\"nginx\",\"ports\":[80,443]}", "copy");
    assert_json(at(d, "names"), "[\"web\",\"web\"]", "names");
    assert_str_at(d, "web", "aliased key");
    /* Keys written in the mapping win over merged ones, wherever "<<" stands. */
    assert_json(at(d, "merged"), "{\"image\":\"envoy\",\"ports\":[80,443]}", "merged");
    assert_json(at(d, "multi"), "{\"image\":\"nginx\",\"ports\":[80,443],\"extra\":true}", "multi");
    assert_json(at(d, "nums"), "[16]", "nums");
    assert_json(at(d, "again"), "[1,2]", "again");
    assert_num_at(d, "latest", 2);
    /* Aliases are copies, not shared nodes. */
    CU_ASSERT_PTR_NOT_EQUAL(at(d, "copy.ports"), at(d, "base.ports"));
    cJSON_Delete(docs);

    parse_fails("a: &r [1, *r]", 13, "line 1, column 11: alias *r names no anchor");
    parse_fails("a: &x 1\n---\nb: *x\n", 18, "line 3, column 4: alias *x names no anchor");
    parse_fails("a: &m [1]\nb:\n  <<: *m\n", 22, "line 3, column 3: the value of a merge key");
    parse_fails("a: &m [1]\n*m : b\n", 16, "a mapping key must be a scalar");
}

static void test_alias_bomb_rejected(void)
{
    /* "Billion laughs": nine levels of nine aliases would make 9^9 strings. */
    const char *bomb = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
                       "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                       "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                       "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                       "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                       "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                       "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n";
    parse_fails(bomb, strlen(bomb), "(an alias bomb?)");
    parse_fails(bomb, strlen(bomb), "more than 100000 values");
    parse_fails(bomb, strlen(bomb), "line 6, column ");

    /* Many aliases of a small scalar count too, one value each. */
    ns_buf b;
    ns_buf_init(&b);
    ns_buf_puts(&b, "[&s x");
    for (int i = 0; i <= NS_YAML_MAX_ALIAS_NODES; i++)
        ns_buf_puts(&b, ",*s");
    ns_buf_puts(&b, "]");
    CU_ASSERT_FALSE_FATAL(b.failed);
    parse_fails(b.data, b.len, "alias bomb");

    /* A modest fan-out stays fine. */
    ns_buf_reset(&b);
    ns_buf_puts(&b, "[&s x");
    for (int i = 0; i < 1000; i++)
        ns_buf_puts(&b, ",*s");
    ns_buf_puts(&b, "]");
    cJSON *docs = parse_ok(b.data);
    NS_ASSERT_INT_EQ(docs ? cJSON_GetArraySize(docs->child) : -1, 1001);
    cJSON_Delete(docs);
    ns_buf_free(&b);
}

/* "[[[...]]]" or "{a: {a: ...}}" nested `n` deep. */
static void nested(ns_buf *b, int n, bool map)
{
    ns_buf_reset(b);
    for (int i = 0; i < n; i++)
        ns_buf_puts(b, map ? "{a: " : "[");
    ns_buf_puts(b, "1");
    for (int i = 0; i < n; i++)
        ns_buf_puts(b, map ? "}" : "]");
}

static void test_depth_bomb_rejected(void)
{
    ns_buf b;
    ns_buf_init(&b);

    /* 100000 open brackets: refused at level 201 without recursing. */
    for (int i = 0; i < 100000; i++)
        ns_buf_putc(&b, '[');
    parse_fails(b.data, b.len, "line 1, column 201: collections nest deeper than 200 levels");

    nested(&b, NS_YAML_MAX_DEPTH, false);
    cJSON *docs = parse_ok(b.data);
    CU_ASSERT_TRUE(docs && round_trips(docs->child, true));
    cJSON_Delete(docs);
    nested(&b, NS_YAML_MAX_DEPTH + 1, false);
    parse_fails(b.data, b.len, "deeper than 200");
    nested(&b, NS_YAML_MAX_DEPTH + 1, true);
    parse_fails(b.data, b.len, "deeper than 200");

    /* Block style, two spaces a level. */
    ns_buf_reset(&b);
    for (int i = 0; i < 250; i++) {
        for (int j = 0; j < i; j++)
            ns_buf_puts(&b, "  ");
        ns_buf_puts(&b, "a:\n");
    }
    parse_fails(b.data, b.len, "line 201, column 401: collections nest deeper");

    /* An alias can not smuggle depth in: 150 levels copied 100 levels down. */
    ns_buf_reset(&b);
    ns_buf_puts(&b, "- &deep ");
    for (int i = 0; i < 150; i++)
        ns_buf_putc(&b, '[');
    for (int i = 0; i < 150; i++)
        ns_buf_putc(&b, ']');
    ns_buf_puts(&b, "\n- ");
    for (int i = 0; i < 100; i++)
        ns_buf_putc(&b, '[');
    ns_buf_puts(&b, "*deep");
    for (int i = 0; i < 100; i++)
        ns_buf_putc(&b, ']');
    ns_buf_putc(&b, '\n');
    parse_fails(b.data, b.len, "line 2, column 103: collections nest deeper");

    /* The emitter refuses what the parser would. */
    cJSON *deep = cJSON_CreateArray(), *cur = deep;
    for (int i = 1; i <= NS_YAML_MAX_DEPTH; i++) {
        cJSON *next = cJSON_CreateArray();
        cJSON_AddItemToArray(cur, next);
        cur = next;
    }
    ns_err err = {0};
    ns_buf_reset(&b);
    NS_ASSERT_INT_EQ(ns_yaml_emit(deep, &b, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "deeper than 200"));
    cJSON_Delete(deep);
    ns_buf_free(&b);
}

/* ---- malformed and empty input ---------------------------------------------------- */

static void test_malformed_has_position(void)
{
    static const struct {
        const char *yaml, *msg;
    } cases[] = {
        {"a: b\n  c: d\n", "line 2, column 4: mapping values are not allowed in this context"},
        {"kind: Pod\nspec:\n  containers: [a, b\n  x: 1\n", "line 4, column "},
        {"a:\n\t- b\n", "line 2, column 1: found character that cannot start any token"},
        {"a: \"unterminated\n", "line 2, column 1: found unexpected end of stream (while "
                                "scanning a quoted scalar at line 1, column 4)"},
        {"- a\nb: c\n", "line 2, column 1: did not find expected '-' indicator"},
        {"a: *\n", "line 1, column "},
        {"a: [1, 2]]\n", "line 1, column 10: did not find expected key"},
        {"a: {b: 1\n", "line 2, column 1: did not find expected ',' or '}' (while parsing a flow "
                       "mapping at line 1, column 4)"},
        {"%YAML 1.1\n%YAML 1.1\n---\na\n", "line 2, column 1: found duplicate %YAML directive"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        parse_fails(cases[i].yaml, strlen(cases[i].yaml), cases[i].msg);

    /* Bytes that are not UTF-8 are reported by offset. */
    parse_fails("a: \xff\n", 6, "byte 4: invalid leading UTF-8 octet");
    /* `len` is honoured: a NUL inside it is a control character, not the end. */
    parse_fails("a: b\0c: d\n", 10, "byte 5: control characters are not allowed");

    ns_err err = {0};
    cJSON *docs = (cJSON *)1;
    NS_ASSERT_INT_EQ(ns_yaml_parse(NULL, 3, &docs, &err), -EINVAL);
    CU_ASSERT_PTR_NULL(docs);
    NS_ASSERT_INT_EQ(ns_yaml_parse("a", 1, NULL, &err), -EINVAL);
    /* A NULL ns_err is allowed. */
    NS_ASSERT_INT_EQ(ns_yaml_parse("a: [", 4, &docs, NULL), -EINVAL);
}

static void test_empty_and_json_input(void)
{
    static const char *const empty[] = {
        "", "   \n", "# only a comment\n", "---\n", "---\n---\n...\n", "\xef\xbb\xbf",
    };
    for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
        cJSON *docs = parse_ok(empty[i]);
        CU_ASSERT_TRUE(cJSON_IsArray(docs));
        NS_ASSERT_INT_EQ(cJSON_GetArraySize(docs), 0);
        cJSON_Delete(docs);
    }
    cJSON *docs = NULL;
    NS_ASSERT_INT_EQ(ns_yaml_parse(NULL, 0, &docs, NULL), 0);
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(docs), 0);
    cJSON_Delete(docs);

    /* Documents with content, even null or "", are kept; the length bounds the text. */
    docs = parse_ok("--- null\n--- ''\n--- ~\n---\n{}\n");
    assert_json(docs, "[null, \"\", null, {}]", "null documents");
    cJSON_Delete(docs);
    docs = NULL;
    NS_ASSERT_INT_EQ(ns_yaml_parse("a: 1\nb: 2\n", 5, &docs, NULL), 0);
    assert_json(docs, "[{\"a\":1}]", "length-bounded text");
    cJSON_Delete(docs);

    /* Windows line ends, and UTF-16 with a byte order mark ("a: \u00e9\n"). */
    docs = parse_ok("a: 1\r\nb: [x,\r\n  y]\r\n");
    assert_json(docs, "[{\"a\":1,\"b\":[\"x\",true]}]", "CRLF");
    cJSON_Delete(docs);
    static const char utf16[] = "\xff\xfe"
                                "a\0:\0 \0\xe9\0\n\0";
    docs = NULL;
    NS_ASSERT_INT_EQ(ns_yaml_parse(utf16, sizeof(utf16) - 1, &docs, NULL), 0);
    assert_json(docs, "[{\"a\":\"\u00e9\"}]", "UTF-16");
    cJSON_Delete(docs);

    /* JSON is YAML: compact, pretty with tabs, with escapes. */
    docs = parse_ok("{\"kind\":\"Pod\",\"spec\":{\"containers\":[{\"name\":\"a\",\"ports\":"
                    "[{\"containerPort\":80}]}],\"x\":[true,false,null,-1.5e3,\"a\\/b\\u00e9\"]}}");
    assert_json(docs ? docs->child : NULL,
                "{\"kind\":\"Pod\",\"spec\":{\"containers\":[{\"name\":\"a\",\"ports\":"
                "[{\"containerPort\":80}]}],\"x\":[true,false,null,-1500,\"a/b\\u00e9\"]}}",
                "compact JSON");
    cJSON_Delete(docs);
    docs = parse_ok("{\n\t\"a\": 1,\n\t\"b\": [\n\t\t\"x\"\n\t]\n}\n");
    assert_json(docs ? docs->child : NULL, "{\"a\":1,\"b\":[\"x\"]}", "JSON with tabs");
    cJSON_Delete(docs);
}

const ns_test yamljson_tests[] = {
    {"deployment multi-document file", test_deployment_multidoc},
    {"kubeconfig file", test_kubeconfig},
    {"scalar typing and keys", test_scalar_typing},
    {"emit quotes ambiguous strings", test_emit_quoting},
    {"emit_all and emit errors", test_emit_all_and_errors},
    {"round trip of a Bookinfo pod", test_round_trip_bookinfo_pod},
    {"round trip of random JSON", test_round_trip_random},
    {"anchors, aliases and merge keys", test_anchors_aliases},
    {"alias bomb rejected", test_alias_bomb_rejected},
    {"depth bomb rejected", test_depth_bomb_rejected},
    {"malformed YAML gives line and column", test_malformed_has_position},
    {"empty input and JSON input", test_empty_and_json_input},
    {NULL, NULL},
};

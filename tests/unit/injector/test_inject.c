/* test_inject.c - golden tests of the injection patch.
 *
 * For each input pod in testdata/inject/NAME.pod.json, the produced patch must equal
 * NAME.patch.json, and applying it to the input must give NAME.golden.json. So both
 * the patch and its effect are pinned; tests/integration/patch_crosscheck.sh applies the
 * same patch files with `kubectl patch --local` as an independent implementation.
 * NS_UPDATE_GOLDEN=1 rewrites the expected files (review the diff before committing).
 */
#include "config.h"
#include "inject.h"
#include "jsonpatch.h"
#include "suites.h"

#include <stdlib.h>

static void load_config(const char *name, inj_config *cfg)
{
    inj_config_defaults(cfg);
    char path[256];
    snprintf(path, sizeof(path), "inject/%s.config.json", name);
    char *text = ns_test_read(path);
    if (text) {
        ns_err err = {0};
        NS_ASSERT_INT_EQ(inj_config_parse(cfg, text, strlen(text), &err), 0);
        free(text);
    }
}

static void golden_case(const char *name)
{
    char path[256];
    inj_config cfg;
    load_config(name, &cfg);
    snprintf(path, sizeof(path), "inject/%s.pod.json", name);
    cJSON *pod = ns_test_read_json(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pod);
    /* copied: applying the patch replaces the tree the string lives in */
    char ns[64];
    const char *pns = cJSON_GetStringValue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(pod, "metadata"), "namespace"));
    snprintf(ns, sizeof(ns), "%s", pns ? pns : "default");

    inj_result r;
    NS_ASSERT_INT_EQ(inj_pod(&cfg, pod, ns, &r), 0);
    NS_ASSERT_INT_EQ(r.outcome, INJ_PATCHED);
    if (r.outcome != INJ_PATCHED) {
        fprintf(stderr, "\n  %s: %s\n", name, r.reason);
        inj_result_free(&r);
        cJSON_Delete(pod);
        return;
    }
    snprintf(path, sizeof(path), "inject/%s.patch.json", name);
    ns_test_expect_json(r.patch, path);

    ns_err err = {0};
    NS_ASSERT_INT_EQ(ns_patch_apply(&pod, r.patch, &err), 0);
    snprintf(path, sizeof(path), "inject/%s.golden.json", name);
    ns_test_expect_json(pod, path);

    /* Idempotence: the injected pod is recognised and left alone. */
    inj_result again;
    NS_ASSERT_INT_EQ(inj_pod(&cfg, pod, ns, &again), 0);
    NS_ASSERT_INT_EQ(again.outcome, INJ_SKIPPED);
    NS_ASSERT_STR_EQ(again.reason, "pod is already injected");
    inj_result_free(&again);
    inj_result_free(&r);
    cJSON_Delete(pod);
}

static void test_minimal(void)
{
    golden_case("minimal");
}
static void test_no_metadata(void)
{
    golden_case("no-metadata");
}
static void test_existing_init(void)
{
    golden_case("existing-init");
}
static void test_multi_container(void)
{
    golden_case("multi-container");
}
static void test_native(void)
{
    golden_case("native");
}
static void test_native_hold(void)
{
    golden_case("native-hold");
}
static void test_hold(void)
{
    golden_case("hold");
}
static void test_overrides(void)
{
    golden_case("overrides");
}
static void test_bookinfo(void)
{
    golden_case("bookinfo-productpage");
}
static void test_config_native(void)
{
    golden_case("config-native");
}

/* Runs a case that must not be patched; returns its reason for the caller to check. */
static void not_patched(const char *name, const char *ns, inj_outcome want, const char *reason_has)
{
    char path[256];
    inj_config cfg;
    inj_config_defaults(&cfg);
    snprintf(path, sizeof(path), "inject/%s.pod.json", name);
    cJSON *pod = ns_test_read_json(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pod);
    inj_result r;
    NS_ASSERT_INT_EQ(inj_pod(&cfg, pod, ns, &r), 0);
    NS_ASSERT_INT_EQ(r.outcome, want);
    CU_ASSERT_PTR_NULL(r.patch);
    if (!strstr(r.reason, reason_has))
        fprintf(stderr, "\n  %s: reason \"%s\" lacks \"%s\"\n", name, r.reason, reason_has);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.reason, reason_has));
    inj_result_free(&r);
    cJSON_Delete(pod);
}

static void test_skips(void)
{
    not_patched("skip-host-network", "default", INJ_SKIPPED, "host network");
    not_patched("skip-opt-out", "default", INJ_SKIPPED, "nutshell.io/inject=false");
    not_patched("skip-kube-system", "kube-system", INJ_SKIPPED, "never injected");
    not_patched("minimal", "nutshell-system", INJ_SKIPPED, "never injected");
    not_patched("minimal", "kube-node-lease", INJ_SKIPPED, "never injected");
}

static void test_rejections_name_the_annotation(void)
{
    not_patched("reject-bad-port", "default", INJ_REJECTED,
                "annotation traffic.nutshell.io/exclude-outbound-ports: \"abc\" is not a port");
    not_patched("reject-bad-quantity", "default", INJ_REJECTED,
                "annotation proxy.nutshell.io/memory-limit: \"lots\" is not a resource quantity");
    not_patched("reject-request-over-limit", "default", INJ_REJECTED,
                "proxy cpu request 2 is above its limit 500m");
    not_patched("reject-bad-cidr", "default", INJ_REJECTED,
                "traffic.nutshell.io/include-outbound-cidrs: \"10.0.0.1/8\" is not a CIDR");
    not_patched("reject-bad-bool", "default", INJ_REJECTED,
                "proxy.nutshell.io/native-sidecar: \"yes\" must be \"true\" or \"false\"");
}

static void test_warnings(void)
{
    inj_config cfg;
    inj_config_defaults(&cfg);
    cJSON *pod = ns_test_read_json("inject/overrides.pod.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(pod);
    inj_result r;
    NS_ASSERT_INT_EQ(inj_pod(&cfg, pod, "default", &r), 0);
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(r.warnings), 2);
    char *w = cJSON_PrintUnformatted(r.warnings);
    CU_ASSERT_PTR_NOT_NULL(strstr(w, "unknown annotation proxy.nutshell.io/cpu-requests"));
    CU_ASSERT_PTR_NOT_NULL(strstr(w, "uses port 15020, reserved for the proxy"));
    free(w);
    inj_result_free(&r);
    cJSON_Delete(pod);
}

static void test_not_a_pod(void)
{
    static const char *const shapes[] = {"{}",
                                         "{\"spec\":{}}",
                                         "{\"spec\":{\"containers\":[]}}",
                                         "{\"spec\":{\"containers\":5}}",
                                         "[]",
                                         "{\"spec\":{\"containers\":[{}],\"initContainers\":{}}}",
                                         "{\"spec\":{\"containers\":[{}],\"volumes\":\"x\"}}"};
    inj_config cfg;
    inj_config_defaults(&cfg);
    for (size_t i = 0; i < sizeof(shapes) / sizeof(*shapes); i++) {
        cJSON *pod = cJSON_Parse(shapes[i]);
        inj_result r;
        NS_ASSERT_INT_EQ(inj_pod(&cfg, pod, "default", &r), 0);
        NS_ASSERT_INT_EQ(r.outcome, INJ_REJECTED);
        inj_result_free(&r);
        cJSON_Delete(pod);
    }
}

const ns_test inject_tests[] = {
    {"minimal pod", test_minimal},
    {"pod without metadata", test_no_metadata},
    {"existing init containers and volumes", test_existing_init},
    {"several containers, named-port probes", test_multi_container},
    {"native sidecar by annotation", test_native},
    {"native sidecar holding the app", test_native_hold},
    {"regular sidecar holding the app", test_hold},
    {"annotation overrides", test_overrides},
    {"bookinfo productpage", test_bookinfo},
    {"config file defaults", test_config_native},
    {"out-of-scope pods are skipped", test_skips},
    {"bad annotations are refused by name", test_rejections_name_the_annotation},
    {"warnings", test_warnings},
    {"objects that are not pods", test_not_a_pod},
    {NULL, NULL},
};

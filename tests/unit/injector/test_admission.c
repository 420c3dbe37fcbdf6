/* test_admission.c - the AdmissionReview protocol, including every kind of bad input. */
#include "admission.h"
#include "json.h"
#include "jsonpatch.h"
#include "suites.h"

#include <openssl/evp.h>
#include <stdlib.h>

static const char *valid_review =
    "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{"
    "\"uid\":\"705ab4f5-6393-11e8-b7cc-42010a800002\","
    "\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},"
    "\"resource\":{\"group\":\"\",\"version\":\"v1\",\"resource\":\"pods\"},"
    "\"namespace\":\"shop\",\"operation\":\"CREATE\","
    "\"object\":{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"generateName\":\"cart-\"},"
    "\"spec\":{\"containers\":[{\"name\":\"cart\",\"image\":\"cart:1\"}]}}}}";

static cJSON *review(const char *body, int want_http, inj_review_result want)
{
    inj_config cfg;
    inj_config_defaults(&cfg);
    inj_review_reply r;
    NS_ASSERT_INT_EQ(inj_review(&cfg, body, strlen(body), &r), 0);
    NS_ASSERT_INT_EQ(r.http_status, want_http);
    NS_ASSERT_INT_EQ(r.result, want);
    cJSON *out = cJSON_Parse(r.body);
    CU_ASSERT_PTR_NOT_NULL(out);
    NS_ASSERT_STR_EQ(ns_json_str(out, "apiVersion"), "admission.k8s.io/v1");
    NS_ASSERT_STR_EQ(ns_json_str(out, "kind"), "AdmissionReview");
    free(r.body);
    return out;
}

static void test_injects_and_echoes_uid(void)
{
    cJSON *out = review(valid_review, 200, INJ_REVIEW_INJECTED);
    const cJSON *resp = ns_json_get(out, "response");
    NS_ASSERT_STR_EQ(ns_json_str(resp, "uid"), "705ab4f5-6393-11e8-b7cc-42010a800002");
    CU_ASSERT_TRUE(ns_json_true(resp, "allowed"));
    NS_ASSERT_STR_EQ(ns_json_str(resp, "patchType"), "JSONPatch");

    /* The patch is base64 JSON that applies cleanly to the reviewed object. */
    const char *b64 = ns_json_str(resp, "patch");
    CU_ASSERT_PTR_NOT_NULL_FATAL(b64);
    unsigned char *raw = calloc(1, strlen(b64));
    int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)strlen(b64));
    CU_ASSERT_TRUE(n > 0);
    cJSON *patch = cJSON_Parse((char *)raw);
    CU_ASSERT_TRUE(cJSON_IsArray(patch));
    cJSON *in = cJSON_Parse(valid_review);
    cJSON *pod = cJSON_DetachItemFromObject(ns_json_get(in, "request"), "object");
    ns_err err = {0};
    NS_ASSERT_INT_EQ(ns_patch_apply(&pod, patch, &err), 0);
    CU_ASSERT_TRUE(cJSON_IsArray(ns_json_path(pod, "spec", "initContainers", NULL)));
    CU_ASSERT_PTR_NOT_NULL(
        ns_json_path(pod, "metadata", "annotations", "nutshell.io/status", NULL));
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(ns_json_path(pod, "spec", "containers", NULL)), 2);
    cJSON_Delete(pod);
    cJSON_Delete(in);
    cJSON_Delete(patch);
    free(raw);
    cJSON_Delete(out);
}

/* Replaces the first occurrence of `from` in valid_review with `to`. */
static char *variant(const char *from, const char *to)
{
    const char *at = strstr(valid_review, from);
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    size_t pre = (size_t)(at - valid_review);
    size_t len = strlen(valid_review) - strlen(from) + strlen(to);
    char *s = malloc(len + 1);
    memcpy(s, valid_review, pre);
    memcpy(s + pre, to, strlen(to));
    memcpy(s + pre + strlen(to), at + strlen(from), strlen(at + strlen(from)) + 1);
    return s;
}

static const char *status_message(const cJSON *out)
{
    return ns_json_path_str(out, "response", "status", "message", NULL);
}

static void expect_invalid(const char *body, const char *message_has)
{
    cJSON *out = review(body, 400, INJ_REVIEW_INVALID);
    const char *msg = status_message(out);
    CU_ASSERT_FALSE(ns_json_true(ns_json_get(out, "response"), "allowed"));
    CU_ASSERT_PTR_NOT_NULL(msg);
    if (msg && !strstr(msg, message_has))
        fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", msg, message_has);
    CU_ASSERT_PTR_NOT_NULL(msg && strstr(msg, message_has));
    cJSON_Delete(out);
}

static void test_bad_requests(void)
{
    expect_invalid("{not json", "request is not JSON");
    expect_invalid("", "request is not JSON");
    expect_invalid("{} trailing", "request is not JSON");
    expect_invalid("[1,2,3]", "expected kind AdmissionReview");
    expect_invalid("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
                   "no request");
    char *s = variant("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
    expect_invalid(s, "unsupported AdmissionReview version admission.k8s.io/v1beta1");
    free(s);
    s = variant("\"kind\":\"AdmissionReview\"", "\"kind\":\"ConversionReview\"");
    expect_invalid(s, "expected kind AdmissionReview, got ConversionReview");
    free(s);
    s = variant("\"uid\":\"705ab4f5-6393-11e8-b7cc-42010a800002\",", "");
    expect_invalid(s, "no request.uid");
    free(s);
}

static void test_other_kinds_and_operations_pass(void)
{
    char *s = variant("\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"",
                      "\"group\":\"apps\",\"version\":\"v1\",\"kind\":\"Deployment\"");
    cJSON *out = review(s, 200, INJ_REVIEW_SKIPPED);
    const cJSON *resp = ns_json_get(out, "response");
    CU_ASSERT_TRUE(ns_json_true(resp, "allowed"));
    CU_ASSERT_PTR_NULL(ns_json_get(resp, "patch"));
    const cJSON *w = ns_json_get(resp, "warnings");
    CU_ASSERT_TRUE(cJSON_IsArray(w) && strstr(w->child->valuestring, "apps/Deployment"));
    cJSON_Delete(out);
    free(s);

    s = variant("\"operation\":\"CREATE\"", "\"operation\":\"UPDATE\"");
    out = review(s, 200, INJ_REVIEW_SKIPPED);
    CU_ASSERT_PTR_NULL(ns_json_path(out, "response", "patch", NULL));
    cJSON_Delete(out);
    free(s);
}

static void test_rejection_is_a_clear_denial(void)
{
    char *s = variant("\"generateName\":\"cart-\"",
                      "\"generateName\":\"cart-\",\"annotations\":{"
                      "\"traffic.nutshell.io/include-inbound-ports\":\"80,http\"}");
    cJSON *out = review(s, 200, INJ_REVIEW_REJECTED);
    const cJSON *resp = ns_json_get(out, "response");
    CU_ASSERT_FALSE(ns_json_true(resp, "allowed"));
    NS_ASSERT_STR_EQ(ns_json_str(resp, "uid"), "705ab4f5-6393-11e8-b7cc-42010a800002");
    NS_ASSERT_STR_EQ(status_message(out),
                     "nutshell-injector: annotation traffic.nutshell.io/include-inbound-ports: "
                     "\"http\" is not a port (1-65535)");
    cJSON_Delete(out);
    free(s);
}

static void test_oversize_body(void)
{
    inj_config cfg;
    inj_config_defaults(&cfg);
    size_t len = INJ_MAX_BODY + 1;
    char *big = malloc(len);
    memset(big, ' ', len);
    inj_review_reply r;
    NS_ASSERT_INT_EQ(inj_review(&cfg, big, len, &r), 0);
    NS_ASSERT_INT_EQ(r.http_status, 413);
    free(r.body);
    free(big);
}

/* Every prefix of a valid review, and every single-byte corruption of it, gets an
 * answer: never a crash, never a hang (run under ASan/UBSan in CI). */
static void test_truncations_and_corruptions(void)
{
    inj_config cfg;
    inj_config_defaults(&cfg);
    size_t n = strlen(valid_review);
    char *buf = malloc(n + 1);
    for (size_t cut = 0; cut < n; cut++) {
        inj_review_reply r;
        CU_ASSERT_EQUAL_FATAL(inj_review(&cfg, valid_review, cut, &r), 0);
        CU_ASSERT_PTR_NOT_NULL(r.body);
        free(r.body);
    }
    static const char junk[] = {'\0', '"', '{', ']', '\\', 'x', (char)0xff};
    for (size_t i = 0; i < n; i++) {
        memcpy(buf, valid_review, n + 1);
        buf[i] = junk[i % sizeof(junk)];
        inj_review_reply r;
        CU_ASSERT_EQUAL_FATAL(inj_review(&cfg, buf, n, &r), 0);
        CU_ASSERT_TRUE(r.http_status == 200 || r.http_status == 400);
        free(r.body);
    }
    free(buf);
}

const ns_test admission_tests[] = {
    {"injects and echoes uid", test_injects_and_echoes_uid},
    {"bad requests get 400 and a message", test_bad_requests},
    {"other kinds and operations pass untouched", test_other_kinds_and_operations_pass},
    {"rejection is a clear denial", test_rejection_is_a_clear_denial},
    {"oversize body", test_oversize_body},
    {"truncations and corruptions", test_truncations_and_corruptions},
    {NULL, NULL},
};

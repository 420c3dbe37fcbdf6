/* test_kube.c - the pure parts of the API client: paths and escaping, Status errors and
 * their errno, backoff bounds. */
#include "kube.h"
#include "suites.h"

#include <stdlib.h>

static void expect_path(const ns_kube_ref *ref, const char *want)
{
    ns_buf b;
    ns_buf_init(&b);
    ns_err err = {0};
    NS_ASSERT_INT_EQ(ns_kube_path(ref, &b, &err), 0);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&b), want);
    ns_buf_free(&b);
}

static void test_paths(void)
{
    expect_path(
        &(ns_kube_ref){
            .version = "v1", .resource = "configmaps", .namespace = "default", .name = "x"},
        "/api/v1/namespaces/default/configmaps/x");
    expect_path(
        &(ns_kube_ref){
            .group = "", .version = "v1", .resource = "namespaces", .name = "kube-system"},
        "/api/v1/namespaces/kube-system");
    expect_path(&(ns_kube_ref){.version = "v1", .resource = "pods"}, "/api/v1/pods");
    expect_path(
        &(ns_kube_ref){
            .group = "apps", .version = "v1", .resource = "deployments", .namespace = "a"},
        "/apis/apps/v1/namespaces/a/deployments");
    expect_path(&(ns_kube_ref){.group = "nutshell.io",
                               .version = "v1alpha1",
                               .resource = "meshes",
                               .name = "default",
                               .subresource = "status"},
                "/apis/nutshell.io/v1alpha1/meshes/default/status");
    expect_path(&(ns_kube_ref){.group = "apps",
                               .version = "v1",
                               .resource = "deployments",
                               .namespace = "a",
                               .name = "web",
                               .subresource = "scale"},
                "/apis/apps/v1/namespaces/a/deployments/web/scale");
    /* names are escaped even where Kubernetes would refuse them on create */
    expect_path(
        &(ns_kube_ref){
            .version = "v1", .resource = "configmaps", .namespace = "n", .name = "a b:c?d#e"},
        "/api/v1/namespaces/n/configmaps/a%20b%3Ac%3Fd%23e");
}

static void expect_bad(const ns_kube_ref *ref, const char *needle)
{
    ns_buf b;
    ns_buf_init(&b);
    ns_err err = {0};
    NS_ASSERT_INT_EQ(ns_kube_path(ref, &b, &err), -EINVAL);
    if (!strstr(err.msg, needle))
        fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", err.msg, needle);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, needle));
    ns_buf_free(&b);
}

static void test_bad_paths(void)
{
    expect_bad(&(ns_kube_ref){.resource = "pods"}, "API version");
    expect_bad(&(ns_kube_ref){.version = "v1"}, "resource");
    expect_bad(&(ns_kube_ref){.version = "v1", .resource = "pods", .name = ".."}, "name");
    expect_bad(&(ns_kube_ref){.version = "v1", .resource = "pods", .name = "."}, "name");
    expect_bad(&(ns_kube_ref){.version = "v1", .resource = "pods", .name = "a/b"}, "'/'");
    expect_bad(&(ns_kube_ref){.version = "v1", .resource = "pods", .name = "a%2F"}, "'%'");
    expect_bad(&(ns_kube_ref){.version = "v1", .resource = "pods", .name = ""}, "empty name");
    expect_bad(&(ns_kube_ref){.version = "v1", .resource = "pods", .namespace = "../x"},
               "namespace");
    expect_bad(&(ns_kube_ref){.version = "v1", .resource = "pods", .subresource = "log"},
               "needs an object name");
    expect_bad(&(ns_kube_ref){.group = "a/b", .version = "v1", .resource = "x"}, "API group");
}

static void test_query(void)
{
    ns_buf b;
    ns_buf_init(&b);
    ns_buf_puts(&b, "/api/v1/pods");
    ns_kube_query_add(&b, "labelSelector", "app in (a,b),!canary,tier=web");
    ns_kube_query_add(&b, "fieldSelector", NULL); /* absent: nothing */
    ns_kube_query_add(&b, "continue", "eyJ2IjoibWV0YS5rOHMuaW8vdjEi+/=");
    ns_kube_query_add(&b, "limit", "2");
    NS_ASSERT_STR_EQ(ns_buf_cstr(&b),
                     "/api/v1/pods"
                     "?labelSelector=app%20in%20%28a%2Cb%29%2C%21canary%2Ctier%3Dweb"
                     "&continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEi%2B%2F%3D"
                     "&limit=2");
    ns_buf_reset(&b);
    ns_kube_escape(&b, "AZaz09-._~ \xc3\xa9%&+");
    NS_ASSERT_STR_EQ(ns_buf_cstr(&b), "AZaz09-._~%20%C3%A9%25%26%2B");
    ns_buf_free(&b);
}

static void test_status_parse(void)
{
    ns_kube_status st;
    static const char not_found[] =
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
        "\"message\":\"configmaps \\\"x\\\" not found\",\"reason\":\"NotFound\","
        "\"details\":{\"name\":\"x\",\"kind\":\"configmaps\"},\"code\":404}\n";
    NS_ASSERT_INT_EQ(ns_kube_status_parse(404, not_found, strlen(not_found), &st), -ENOENT);
    NS_ASSERT_INT_EQ(st.http, 404);
    NS_ASSERT_INT_EQ(st.code, 404);
    NS_ASSERT_STR_EQ(st.reason, "NotFound");
    NS_ASSERT_STR_EQ(st.message, "configmaps \"x\" not found");
    CU_ASSERT_TRUE(ns_kube_is_not_found(&st));
    CU_ASSERT_FALSE(ns_kube_is_conflict(&st));

    static const char exists[] = "{\"kind\":\"Status\",\"reason\":\"AlreadyExists\",\"code\":409,"
                                 "\"message\":\"configmaps \\\"x\\\" already exists\"}";
    NS_ASSERT_INT_EQ(ns_kube_status_parse(409, exists, strlen(exists), &st), -EEXIST);
    CU_ASSERT_TRUE(ns_kube_is_already_exists(&st));
    CU_ASSERT_FALSE(ns_kube_is_conflict(&st));

    static const char conflict[] =
        "{\"kind\":\"Status\",\"reason\":\"Conflict\",\"code\":409,\"message\":\"Operation cannot "
        "be fulfilled on configmaps \\\"x\\\": the object has been modified\"}";
    NS_ASSERT_INT_EQ(ns_kube_status_parse(409, conflict, strlen(conflict), &st), -EBUSY);
    CU_ASSERT_TRUE(ns_kube_is_conflict(&st));
    CU_ASSERT_FALSE(ns_kube_is_already_exists(&st));

    static const char expired[] = "{\"kind\":\"Status\",\"reason\":\"Expired\",\"code\":410,"
                                  "\"message\":\"too old resource version: 1 (42)\"}";
    NS_ASSERT_INT_EQ(ns_kube_status_parse(410, expired, strlen(expired), &st), -ESTALE);
    CU_ASSERT_TRUE(ns_kube_is_gone(&st));
    NS_ASSERT_STR_EQ(st.reason, "Expired");

    static const char throttled[] =
        "{\"kind\":\"Status\",\"reason\":\"TooManyRequests\",\"code\":429,"
        "\"details\":{\"retryAfterSeconds\":3},\"message\":\"too many requests\"}";
    NS_ASSERT_INT_EQ(ns_kube_status_parse(429, throttled, strlen(throttled), &st), -EAGAIN);
    NS_ASSERT_INT_EQ(st.retry_after_s, 3);

    /* a body that is not a Status: reason from the HTTP code, message quotes the body */
    static const char proxy[] = "upstream connect error\r\nor disconnect";
    NS_ASSERT_INT_EQ(ns_kube_status_parse(503, proxy, strlen(proxy), &st), -EIO);
    NS_ASSERT_STR_EQ(st.reason, "ServiceUnavailable");
    NS_ASSERT_STR_EQ(st.message, "HTTP 503: upstream connect error  or disconnect");
    static const char other_json[] = "{\"kind\":\"ConfigMap\"}";
    NS_ASSERT_INT_EQ(ns_kube_status_parse(422, other_json, strlen(other_json), &st), -EINVAL);
    NS_ASSERT_STR_EQ(st.reason, "Invalid");
    NS_ASSERT_INT_EQ(ns_kube_status_parse(404, NULL, 0, &st), -ENOENT);
    NS_ASSERT_STR_EQ(st.reason, "NotFound");
    NS_ASSERT_STR_EQ(st.message, "HTTP 404");
    NS_ASSERT_INT_EQ(ns_kube_status_parse(504, "", 0, &st), -ETIMEDOUT);
    NS_ASSERT_STR_EQ(st.reason, "Timeout");
    /* a Status without a reason gets one from its code */
    static const char bare[] = "{\"kind\":\"Status\",\"code\":403,\"message\":\"no\"}";
    NS_ASSERT_INT_EQ(ns_kube_status_parse(403, bare, strlen(bare), &st), -EACCES);
    NS_ASSERT_STR_EQ(st.reason, "Forbidden");
    /* huge messages are cut, never overflow */
    char big[4096];
    int n = snprintf(big, sizeof(big), "{\"kind\":\"Status\",\"code\":500,\"message\":\"");
    memset(big + n, 'm', 3000);
    snprintf(big + n + 3000, sizeof(big) - (size_t)n - 3000, "\"}");
    NS_ASSERT_INT_EQ(ns_kube_status_parse(500, big, strlen(big), &st), -EIO);
    NS_ASSERT_INT_EQ(strlen(st.message), NS_KUBE_MESSAGE_MAX - 1);
}

static void test_http_errno(void)
{
    NS_ASSERT_INT_EQ(ns_kube_http_errno(200, NULL), 0);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(201, NULL), 0);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(400, NULL), -EINVAL);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(401, NULL), -EACCES);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(403, NULL), -EACCES);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(404, NULL), -ENOENT);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(405, NULL), -EOPNOTSUPP);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(409, "AlreadyExists"), -EEXIST);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(409, "Conflict"), -EBUSY);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(409, NULL), -EBUSY);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(410, "Expired"), -ESTALE);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(413, NULL), -E2BIG);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(415, NULL), -ENOTSUP);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(422, NULL), -EINVAL);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(429, NULL), -EAGAIN);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(500, NULL), -EIO);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(503, NULL), -EIO);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(504, NULL), -ETIMEDOUT);
    NS_ASSERT_INT_EQ(ns_kube_http_errno(302, NULL), -EPROTO);
    NS_ASSERT_STR_EQ(ns_kube_patch_content_type(NS_KUBE_PATCH_MERGE),
                     "application/merge-patch+json");
    NS_ASSERT_STR_EQ(ns_kube_patch_content_type(NS_KUBE_PATCH_JSON), "application/json-patch+json");
    NS_ASSERT_STR_EQ(ns_kube_patch_content_type(NS_KUBE_PATCH_STRATEGIC),
                     "application/strategic-merge-patch+json");
    NS_ASSERT_STR_EQ(ns_kube_patch_content_type(NS_KUBE_PATCH_APPLY),
                     "application/apply-patch+yaml");
}

static void test_backoff_bounds(void)
{
    const ns_kube_backoff b = {.base_ms = 100, .max_ms = 10000};
    static const uint32_t rnds[] = {0, 1, 12345, 0x7fffffff, 0x80000000u, 0xffffffffu};
    for (unsigned attempt = 0; attempt < 70; attempt++) {
        long d = 100;
        for (unsigned i = 0; i < attempt && d < 10000; i++)
            d *= 2;
        if (d > 10000)
            d = 10000;
        for (size_t r = 0; r < sizeof(rnds) / sizeof(rnds[0]); r++) {
            long got = ns_kube_backoff_delay_ms(&b, attempt, 0, rnds[r]);
            if (got < d / 2 || got > d)
                fprintf(stderr, "\n  attempt %u rnd %u: %ld not in [%ld, %ld]\n", attempt, rnds[r],
                        got, d / 2, d);
            CU_ASSERT_TRUE(got >= d / 2 && got <= d);
        }
    }
    /* the extremes of the jitter are reachable */
    NS_ASSERT_INT_EQ(ns_kube_backoff_delay_ms(&b, 0, 0, 0), 50);
    NS_ASSERT_INT_EQ(ns_kube_backoff_delay_ms(&b, 0, 0, 50), 100);
    NS_ASSERT_INT_EQ(ns_kube_backoff_delay_ms(&b, 3, 0, 0), 400);
    NS_ASSERT_INT_EQ(ns_kube_backoff_delay_ms(&b, 1000000, 0, 0), 5000);
    /* Retry-After is a floor, and is itself capped */
    NS_ASSERT_INT_EQ(ns_kube_backoff_delay_ms(&b, 0, 2, 0), 2000);
    NS_ASSERT_INT_EQ(ns_kube_backoff_delay_ms(&b, 10, 1, 0), 5000);
    NS_ASSERT_INT_EQ(ns_kube_backoff_delay_ms(&b, 0, 86400, 0), NS_KUBE_RETRY_AFTER_MAX_MS);
    NS_ASSERT_INT_EQ(ns_kube_backoff_delay_ms(&b, 0, 0x7fffffffL, 0), NS_KUBE_RETRY_AFTER_MAX_MS);
    /* defaults: 100 ms up to 10 s */
    long got = ns_kube_backoff_delay_ms(NULL, 0, 0, 99);
    CU_ASSERT_TRUE(got >= 50 && got <= 100);
    got = ns_kube_backoff_delay_ms(&(ns_kube_backoff){0}, 40, 0, 99);
    CU_ASSERT_TRUE(got >= 5000 && got <= 10000);
    /* a base above the cap is cut to it */
    got = ns_kube_backoff_delay_ms(&(ns_kube_backoff){.base_ms = 5000, .max_ms = 1000}, 0, 0, 7);
    CU_ASSERT_TRUE(got >= 500 && got <= 1000);
    /* the jitter source spreads */
    uint32_t a = ns_kube_jitter_random(), c = ns_kube_jitter_random();
    CU_ASSERT_NOT_EQUAL(a, c);
}

static void test_client_new(void)
{
    ns_kube_config cfg = {.server = "https://127.0.0.1:1", .ca_pem = "junk", .ca_len = 4};
    ns_kube *k = NULL;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(ns_kube_new(&cfg, NULL, &k, &err), -EINVAL);
    CU_ASSERT_PTR_NULL(k);
    NS_ASSERT_STR_EQ(err.msg, "the certificate authority data is not PEM");
    cfg = (ns_kube_config){0};
    NS_ASSERT_INT_EQ(ns_kube_new(&cfg, NULL, &k, &err), -EINVAL);
    cfg = (ns_kube_config){.server = "https://10.0.0.1:6443/prefix",
                           .tls_server_name = "kubernetes",
                           .token = "t0ken",
                           .namespace = "ns1"};
    NS_ASSERT_INT_EQ(ns_kube_new(&cfg, NULL, &k, &err), 0);
    NS_ASSERT_STR_EQ(ns_kube_get_config(k)->namespace, "ns1");
    CU_ASSERT_PTR_NOT_EQUAL(ns_kube_get_config(k)->server, cfg.server); /* a copy */

    /* bad refs fail before any I/O, with a message in the status */
    ns_kube_status st;
    cJSON *out = (cJSON *)&st;
    NS_ASSERT_INT_EQ(ns_kube_get(k, &(ns_kube_ref){.version = "v1", .resource = "pods"}, &out, &st),
                     -EINVAL);
    CU_ASSERT_PTR_NULL(out);
    NS_ASSERT_STR_EQ(st.message, "get needs an object name");
    NS_ASSERT_INT_EQ(ns_kube_get(k,
                                 &(ns_kube_ref){.version = "v1", .resource = "pods", .name = ".."},
                                 NULL, &st),
                     -EINVAL);
    NS_ASSERT_INT_EQ(st.http, 0);
    cJSON *arr = cJSON_CreateArray();
    NS_ASSERT_INT_EQ(ns_kube_patch(k,
                                   &(ns_kube_ref){.version = "v1", .resource = "pods", .name = "p"},
                                   NS_KUBE_PATCH_MERGE, arr, NULL, NULL, &st),
                     -EINVAL);
    cJSON_Delete(arr);
    ns_kube_free(k);
    ns_kube_free(NULL);
}

const ns_test kube_tests[] = {
    {"paths", test_paths},
    {"bad paths", test_bad_paths},
    {"query and escaping", test_query},
    {"status parsing", test_status_parse},
    {"http errno", test_http_errno},
    {"backoff bounds", test_backoff_bounds},
    {"client new", test_client_new},
    {NULL, NULL},
};

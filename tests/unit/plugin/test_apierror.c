/* test_apierror.c - what a user reads when an API call fails. */
#include "apierror.h"
#include "suites.h"

#include <errno.h>

static void expect(int rc, const ns_kube_status *st, const char *name, const char *ns,
                   const char *want)
{
    ns_buf out;
    ns_buf_init(&out);
    kn_api_error(rc, st, name, ns, "https://127.0.0.1:16443", &out);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&out), want);
    ns_buf_free(&out);
}

static void test_not_found(void)
{
    /* The API server's own answer for a missing Canary... */
    const char *body = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                       "\"message\":\"canaries.nutshell.io \\\"x\\\" not found\","
                       "\"reason\":\"NotFound\",\"details\":{\"name\":\"x\",\"group\":"
                       "\"nutshell.io\",\"kind\":\"canaries\"},\"code\":404}";
    ns_kube_status st;
    int rc = ns_kube_status_parse(404, body, strlen(body), &st);
    NS_ASSERT_INT_EQ(rc, -ENOENT);
    expect(rc, &st, "x", "y", "canary \"x\" not found in namespace \"y\"");

    /* ...and for a group it does not serve: the CRD is not installed. */
    const char *plain = "404 page not found\n";
    rc = ns_kube_status_parse(404, plain, strlen(plain), &st);
    expect(rc, &st, "x", "y",
           "the server doesn't have the resource type canaries.nutshell.io (is the Canary CRD "
           "installed? kubectl apply -f manifests/crds/canaries.nutshell.io.yaml)");
    /* A list (no name) that finds no resource type says the same. */
    expect(rc, &st, NULL, "y",
           "the server doesn't have the resource type canaries.nutshell.io (is the Canary CRD "
           "installed? kubectl apply -f manifests/crds/canaries.nutshell.io.yaml)");
}

static void test_server_messages(void)
{
    const char *body = "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":"
                       "\"canaries.nutshell.io \\\"x\\\" is forbidden: User \\\"bob\\\" cannot "
                       "patch resource\",\"reason\":\"Forbidden\",\"code\":403}";
    ns_kube_status st;
    int rc = ns_kube_status_parse(403, body, strlen(body), &st);
    NS_ASSERT_INT_EQ(rc, -EACCES);
    expect(rc, &st, "x", "y",
           "canaries.nutshell.io \"x\" is forbidden: User \"bob\" cannot patch resource");
}

static void test_transport(void)
{
    ns_kube_status st = {.http = 0};
    snprintf(st.message, sizeof(st.message), "Couldn't connect to server");
    expect(-ECONNREFUSED, &st, "x", "y",
           "cannot reach the API server at https://127.0.0.1:16443: Couldn't connect to server");
    st.message[0] = '\0';
    expect(-ETIMEDOUT, &st, "x", "y",
           "cannot reach the API server at https://127.0.0.1:16443: Connection timed out");
    /* Refused before sending (a name no path can hold): the reason, not "unreachable". */
    snprintf(st.message, sizeof(st.message), "bad name segment \"a/b\"");
    expect(-EINVAL, &st, "a/b", "y", "bad name segment \"a/b\"");
}

const ns_test apierror_tests[] = {
    {"not found: Canary or CRD", test_not_found},
    {"server messages", test_server_messages},
    {"transport errors", test_transport},
    {NULL, NULL},
};

/* test_canary_checks.c - the pure half of the Canary checks: the query sent, what a
 * Prometheus answer means, the threshold range and the webhook payload. The HTTP half
 * runs against a real Prometheus in tests/integration/canary_checks_test.c. */
#include "canary_checks.h"
#include "suites.h"

#include <math.h>
#include <stdlib.h>

static canary_metric metric_with(const char *query, const char *interval)
{
    canary_metric m = {.name = "m", .query = query, .address = "http://127.0.0.1:9"};
    snprintf(m.interval_text, sizeof(m.interval_text), "%s", interval);
    return m;
}

static void test_query_interval(void)
{
    static const struct {
        const char *in, *interval, *want;
    } cases[] = {
        {"sum(rate(x[{{interval}}]))", "1m", "sum(rate(x[1m]))"},
        {"rate(x[{{ interval }}])", "30s", "rate(x[30s])"},
        {"rate(x[{{\tinterval  }}])", "5m", "rate(x[5m])"},
        {"a[{{interval}}] / b[{{ interval}}]", "2h", "a[2h] / b[2h]"},
        {"{{interval}}{{interval}}", "1s", "1s1s"},
        {"{{{interval}}}", "1m", "{1m}"},
        /* not placeholders: left as written, so Prometheus reports them */
        {"up", "1m", "up"},
        {"x[{{interval}]", "1m", "x[{{interval}]"},
        {"x[{{ intervals }}]", "1m", "x[{{ intervals }}]"},
        {"x[{{Interval}}]", "1m", "x[{{Interval}}]"},
        {"x[{ {interval}}]", "1m", "x[{ {interval}}]"},
        {"x{{", "1m", "x{{"},
        {"x{", "1m", "x{"},
        {"", "1m", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        canary_metric m = metric_with(cases[i].in, cases[i].interval);
        char *got = canary_metric_query(&m);
        NS_ASSERT_STR_EQ(got, cases[i].want);
        free(got);
    }
}

/* An answer as Prometheus's /api/v1/query writes it. */
static int value_of(const char *body, double *out, ns_err *err)
{
    return canary_prometheus_value(body, strlen(body), out, err);
}

static void test_value_scalar_and_vector(void)
{
    static const struct {
        const char *body;
        double want;
    } cases[] = {
        {"{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1732564026.123,"
         "\"42\"]}}",
         42},
        {"{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"metric\":{},"
         "\"value\":[1732564026.123,\"0.5\"]}]}}",
         0.5},
        {"{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"metric\":{"
         "\"job\":\"api\"},\"value\":[1732564026,\"-1.25e3\"]}]},\"warnings\":[\"w\"]}",
         -1250},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double v = -99;
        ns_err err = {0};
        NS_ASSERT_INT_EQ(value_of(cases[i].body, &v, &err), 0);
        CU_ASSERT_DOUBLE_EQUAL(v, cases[i].want, 1e-9);
    }
}

static void test_value_special(void)
{
    double v = 0;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(value_of("{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\","
                              "\"result\":[1,\"NaN\"]}}",
                              &v, &err),
                     0);
    CU_ASSERT_TRUE(isnan(v));
    NS_ASSERT_INT_EQ(value_of("{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\","
                              "\"result\":[1,\"+Inf\"]}}",
                              &v, &err),
                     0);
    CU_ASSERT_TRUE(isinf(v) && v > 0);
    NS_ASSERT_INT_EQ(value_of("{\"status\":\"success\",\"data\":{\"resultType\":\"vector\","
                              "\"result\":[{\"metric\":{},\"value\":[1,\"-Inf\"]}]}}",
                              &v, &err),
                     0);
    CU_ASSERT_TRUE(isinf(v) && v < 0);
}

static void test_value_empty(void)
{
    double v = 7;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(
        value_of("{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[]}}", &v,
                 &err),
        -ENODATA);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no data"));
}

static void test_value_refused(void)
{
    static const struct {
        const char *body;
        const char *in_msg; /* the message must say this */
    } cases[] = {
        /* Prometheus's own error document: its type and words are passed on */
        {"{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"invalid parameter "
         "\\\"query\\\": 1:5: parse error: unclosed left parenthesis\"}",
         "unclosed left parenthesis"},
        {"{\"status\":\"error\",\"errorType\":\"timeout\",\"error\":\"query timed out\"}",
         "timeout"},
        /* several series: which one would be meant? */
        {"{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"metric\":{"
         "\"a\":\"x\"},\"value\":[1,\"1\"]},{\"metric\":{\"a\":\"y\"},\"value\":[1,\"2\"]}]}}",
         "2 series"},
        {"{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"metric\":{},"
         "\"values\":[[1,\"1\"],[2,\"2\"]]}]}}",
         "matrix"},
        {"{\"status\":\"success\",\"data\":{\"resultType\":\"string\",\"result\":[1,\"hi\"]}}",
         "string"},
        /* values are strings in the API; anything else is not Prometheus */
        {"{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1,42]}}",
         "without a value"},
        {"{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1,\"\"]}}",
         "without a value"},
        {"{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1,\"12abc\"]}}",
         "12abc"},
        {"{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1,\" 1\"]}}",
         "not a number"},
        {"{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1]}}",
         "without a value"},
        {"{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"metric\":{}}]"
         "}}",
         "without a value"},
        {"{\"status\":\"success\",\"data\":{\"resultType\":\"vector\"}}", "data.result"},
        {"{\"status\":\"success\",\"data\":{}}", "resultType"},
        {"{\"status\":\"success\"}", "resultType"},
        {"{\"data\":{\"resultType\":\"scalar\",\"result\":[1,\"1\"]}}", "status"},
        {"[]", "status"},
        {"{", "not JSON"},
        {"<html>502 Bad Gateway</html>", "not JSON"},
        {"", "not JSON"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double v = 0;
        ns_err err = {0};
        int rc = value_of(cases[i].body, &v, &err);
        if (rc != -EINVAL || !strstr(err.msg, cases[i].in_msg))
            fprintf(stderr, "\n  case %zu: rc %d, message \"%s\"", i, rc, err.msg);
        NS_ASSERT_INT_EQ(rc, -EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, cases[i].in_msg));
    }
    double v = 0;
    NS_ASSERT_INT_EQ(canary_prometheus_value(NULL, 0, &v, NULL), -EINVAL);
    /* Only `len` bytes count: a valid answer cut short is not one. */
    const char *whole = "{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":"
                        "[1,\"1\"]}}";
    NS_ASSERT_INT_EQ(canary_prometheus_value(whole, strlen(whole) - 1, &v, NULL), -EINVAL);
}

static void test_in_range(void)
{
    canary_metric both = {.has_min = true, .min = 1, .has_max = true, .max = 5};
    CU_ASSERT_TRUE(canary_metric_in_range(&both, 1));
    CU_ASSERT_TRUE(canary_metric_in_range(&both, 3.3));
    CU_ASSERT_TRUE(canary_metric_in_range(&both, 5));
    CU_ASSERT_FALSE(canary_metric_in_range(&both, 0.999));
    CU_ASSERT_FALSE(canary_metric_in_range(&both, 5.001));
    CU_ASSERT_FALSE(canary_metric_in_range(&both, NAN));
    CU_ASSERT_FALSE(canary_metric_in_range(&both, INFINITY));

    canary_metric min_only = {.has_min = true, .min = 99};
    CU_ASSERT_TRUE(canary_metric_in_range(&min_only, 99));
    CU_ASSERT_TRUE(canary_metric_in_range(&min_only, INFINITY));
    CU_ASSERT_FALSE(canary_metric_in_range(&min_only, 98.9));
    CU_ASSERT_FALSE(canary_metric_in_range(&min_only, -INFINITY));
    CU_ASSERT_FALSE(canary_metric_in_range(&min_only, NAN));

    canary_metric max_only = {.has_max = true, .max = 0};
    CU_ASSERT_TRUE(canary_metric_in_range(&max_only, 0));
    CU_ASSERT_TRUE(canary_metric_in_range(&max_only, -3));
    CU_ASSERT_FALSE(canary_metric_in_range(&max_only, 1e-9));
    CU_ASSERT_FALSE(canary_metric_in_range(&max_only, NAN));

    /* min == max: exactly that value */
    canary_metric exact = {.has_min = true, .min = 2, .has_max = true, .max = 2};
    CU_ASSERT_TRUE(canary_metric_in_range(&exact, 2));
    CU_ASSERT_FALSE(canary_metric_in_range(&exact, 2.0000001));
}

static cJSON *parse_payload(const canary_spec *spec, const canary_status *st,
                            const canary_webhook *wh)
{
    char *text = canary_webhook_payload(spec, st, wh);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    cJSON *doc = cJSON_Parse(text);
    if (!doc)
        fprintf(stderr, "\n  payload is not JSON: %s", text);
    free(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    return doc;
}

static void test_payload(void)
{
    cJSON *md = cJSON_Parse("{\"team\":\"payments\",\"note\":\"say \\\"hi\\\"\\n\",\"n\":3}");
    canary_spec spec = {.name = "podinfo", .namespace = "test"};
    canary_status st = {.phase = CANARY_PHASE_PROGRESSING, .canary_weight = 20};
    snprintf(st.current_revision, sizeof(st.current_revision), "5d8f7c9b4");
    canary_webhook wh = {
        .name = "load", .type = CANARY_HOOK_ROLLOUT, .url = "http://x", .metadata = md};
    cJSON *doc = parse_payload(&spec, &st, &wh);
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "name")), "podinfo");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "namespace")), "test");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "phase")), "Progressing");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "type")), "rollout");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "revision")), "5d8f7c9b4");
    const cJSON *w = cJSON_GetObjectItem(doc, "canaryWeight");
    CU_ASSERT_TRUE(cJSON_IsNumber(w) && w->valueint == 20);
    const cJSON *got_md = cJSON_GetObjectItem(doc, "metadata");
    CU_ASSERT_TRUE_FATAL(cJSON_IsObject(got_md));
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(got_md, "team")), "payments");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(got_md, "note")), "say \"hi\"\n");
    /* a non-string value cannot have come through the schema: left out */
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(got_md, "n"));
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(doc), 7);
    cJSON_Delete(doc);
    cJSON_Delete(md);
}

static void test_payload_without_metadata(void)
{
    canary_spec spec = {.name = "a\"b", .namespace = "ns"};
    canary_status st = {.phase = CANARY_PHASE_FAILED};
    canary_webhook wh = {.name = "gate", .type = CANARY_HOOK_CONFIRM_PROMOTION};
    cJSON *doc = parse_payload(&spec, &st, &wh);
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "name")), "a\"b");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "phase")), "Failed");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "type")), "confirm-promotion");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "revision")), "");
    const cJSON *w = cJSON_GetObjectItem(doc, "canaryWeight");
    CU_ASSERT_TRUE(cJSON_IsNumber(w) && w->valueint == 0);
    /* always an object, so receivers need not test for its absence */
    const cJSON *md = cJSON_GetObjectItem(doc, "metadata");
    CU_ASSERT_TRUE(cJSON_IsObject(md) && cJSON_GetArraySize(md) == 0);
    cJSON_Delete(doc);
}

/* Checks of other kinds are not made: the webhooks below point at a port nothing
 * listens on, so calling any of them would fail the run. */
static void test_run_selects_kind(void)
{
    canary_spec spec = {.name = "c", .namespace = "ns", .n_webhooks = 3};
    spec.webhooks[0] = (canary_webhook){
        .name = "r", .type = CANARY_HOOK_ROLLOUT, .url = "http://127.0.0.1:1/", .timeout_ms = 2000};
    spec.webhooks[1] = (canary_webhook){.name = "p",
                                        .type = CANARY_HOOK_POST_ROLLOUT,
                                        .url = "http://127.0.0.1:1/",
                                        .timeout_ms = 2000};
    spec.webhooks[2] = (canary_webhook){.name = "pre",
                                        .type = CANARY_HOOK_PRE_ROLLOUT,
                                        .url = "http://user:secret@127.0.0.1:1/hook?token=abc#x",
                                        .timeout_ms = 2000};
    canary_status st = {.phase = CANARY_PHASE_PROGRESSING};
    canary_check_results res;
    memset(&res, 0xab, sizeof(res));
    canary_checks_run(&spec, &st, CANARY_CHECKS_CONFIRM_PROMOTION, &res);
    NS_ASSERT_INT_EQ(res.kind, CANARY_CHECKS_CONFIRM_PROMOTION);
    CU_ASSERT_TRUE(res.passed);
    CU_ASSERT_FALSE(res.rollback_requested);
    NS_ASSERT_STR_EQ(res.message, "");

    /* ... and the one of the kind is: it fails, naming itself */
    canary_checks_run(&spec, &st, CANARY_CHECKS_PRE_ROLLOUT, &res);
    NS_ASSERT_INT_EQ(res.kind, CANARY_CHECKS_PRE_ROLLOUT);
    CU_ASSERT_FALSE(res.passed);
    CU_ASSERT_PTR_NOT_NULL(strstr(res.message, "\"pre\""));
    /* the message goes to the status and Events: credentials and query stay out */
    CU_ASSERT_PTR_NOT_NULL(strstr(res.message, "http://127.0.0.1:1/hook"));
    CU_ASSERT_PTR_NULL(strstr(res.message, "secret"));
    CU_ASSERT_PTR_NULL(strstr(res.message, "token"));
    if (strstr(res.message, "secret") || strstr(res.message, "token"))
        fprintf(stderr, "\n  message: %s", res.message);
}

const ns_test canary_checks_tests[] = {
    {"query_interval", test_query_interval},
    {"value_scalar_and_vector", test_value_scalar_and_vector},
    {"value_special", test_value_special},
    {"value_empty", test_value_empty},
    {"value_refused", test_value_refused},
    {"in_range", test_in_range},
    {"payload", test_payload},
    {"payload_without_metadata", test_payload_without_metadata},
    {"run_selects_kind", test_run_selects_kind},
    {NULL, NULL},
};

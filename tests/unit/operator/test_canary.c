/* test_canary.c - the Canary's spec (defaults, checks, steps, requests), Go durations
 * in ms, RFC 3339 times and the status's JSON form. */
#include "canary.h"
#include "suites.h"

#include "json.h"

#include <stdlib.h>

/* A Canary with the given spec text, as the API server would return it. */
static cJSON *canary_with(const char *spec_json, const char *extra_meta)
{
    char text[8192];
    snprintf(text, sizeof(text),
             "{\"apiVersion\":\"nutshell.io/v1alpha1\",\"kind\":\"Canary\","
             "\"metadata\":{\"name\":\"reviews\",\"namespace\":\"bookinfo\",\"uid\":\"u-1\","
             "\"generation\":4%s%s},\"spec\":%s}",
             extra_meta ? "," : "", extra_meta ? extra_meta : "", spec_json);
    cJSON *c = cJSON_Parse(text);
    if (!c)
        fprintf(stderr, "\n  bad test JSON: %s\n", text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    return c;
}

#define MINIMAL                                                                                    \
    "{\"targetRef\":{\"name\":\"reviews\"},\"service\":{\"port\":9080},"                           \
    "\"strategy\":{\"canary\":{\"stepWeight\":10}}}"

static void test_defaults(void)
{
    cJSON *c = canary_with(MINIMAL, NULL);
    canary_spec s;
    ns_err err = {0};
    int rc = canary_spec_parse(c, &s, &err);
    if (rc)
        fprintf(stderr, "\n  %s\n", err.msg);
    NS_ASSERT_INT_EQ(rc, 0);
    NS_ASSERT_STR_EQ(s.name, "reviews");
    NS_ASSERT_STR_EQ(s.namespace, "bookinfo");
    NS_ASSERT_STR_EQ(s.uid, "u-1");
    NS_ASSERT_INT_EQ(s.generation, 4);
    CU_ASSERT_FALSE(s.deleting);
    NS_ASSERT_STR_EQ(s.target, "reviews");
    NS_ASSERT_STR_EQ(s.service, "reviews"); /* default: targetRef.name */
    NS_ASSERT_INT_EQ(s.port, 9080);
    CU_ASSERT_PTR_NULL(s.target_port);
    NS_ASSERT_STR_EQ(s.port_name, "http");
    NS_ASSERT_INT_EQ(s.strategy, CANARY_STRATEGY_CANARY);
    NS_ASSERT_INT_EQ(s.max_weight, 50);
    NS_ASSERT_INT_EQ(s.n_steps, 5);
    NS_ASSERT_INT_EQ(s.steps[0], 10);
    NS_ASSERT_INT_EQ(s.steps[4], 50);
    NS_ASSERT_INT_EQ(s.interval_ms, 60000);
    NS_ASSERT_STR_EQ(s.interval_text, "1m");
    NS_ASSERT_INT_EQ(s.threshold, 5);
    NS_ASSERT_INT_EQ(s.n_metrics, 0);
    NS_ASSERT_INT_EQ(s.n_webhooks, 0);
    NS_ASSERT_INT_EQ(s.progress_deadline_ms, 600000);
    CU_ASSERT_FALSE(s.suspend);
    NS_ASSERT_INT_EQ(s.request, CANARY_REQUEST_NONE);
    CU_ASSERT_PTR_NULL(s.request_text);
    cJSON_Delete(c);

    /* blue-green's own defaults */
    c = canary_with("{\"targetRef\":{\"name\":\"reviews\"},\"service\":{\"port\":9080},"
                    "\"strategy\":{\"blueGreen\":{}}}",
                    NULL);
    NS_ASSERT_INT_EQ(canary_spec_parse(c, &s, &err), 0);
    NS_ASSERT_INT_EQ(s.strategy, CANARY_STRATEGY_BLUE_GREEN);
    NS_ASSERT_INT_EQ(s.iterations, 10);
    CU_ASSERT_TRUE(s.auto_promote);
    NS_ASSERT_INT_EQ(s.interval_ms, 60000);
    NS_ASSERT_INT_EQ(s.n_steps, 0);
    NS_ASSERT_INT_EQ(s.max_weight, 100);
    cJSON_Delete(c);
}

/* The sample as the API server stores it, every field set. */
static void test_full_spec(void)
{
    cJSON *c = ns_test_read_json("canary/reviews.canary.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cJSON_AddItemToObject(cJSON_GetObjectItem(c, "metadata"), "deletionTimestamp",
                          cJSON_CreateString("2026-11-25T20:00:00Z"));
    canary_spec s;
    ns_err err = {0};
    int rc = canary_spec_parse(c, &s, &err);
    if (rc)
        fprintf(stderr, "\n  %s\n", err.msg);
    NS_ASSERT_INT_EQ(rc, 0);
    CU_ASSERT_TRUE(s.deleting);
    NS_ASSERT_INT_EQ(s.generation, 2);
    CU_ASSERT_TRUE(cJSON_IsString(s.target_port));
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(s.target_port), "http");
    NS_ASSERT_INT_EQ(s.n_metrics, 2);
    NS_ASSERT_STR_EQ(s.metrics[0].name, "error-rate");
    CU_ASSERT_FALSE(s.metrics[0].has_min);
    CU_ASSERT_TRUE(s.metrics[0].has_max);
    CU_ASSERT_DOUBLE_EQUAL(s.metrics[0].max, 1.0, 1e-12);
    NS_ASSERT_STR_EQ(s.metrics[0].interval_text, "1m"); /* the strategy's */
    NS_ASSERT_STR_EQ(s.metrics[0].address, "http://prometheus.monitoring:9090");
    CU_ASSERT_PTR_NOT_NULL(strstr(s.metrics[0].query, "{{interval}}"));
    CU_ASSERT_TRUE(s.metrics[1].has_min && s.metrics[1].has_max);
    CU_ASSERT_DOUBLE_EQUAL(s.metrics[1].max, 0.5, 1e-12);
    NS_ASSERT_STR_EQ(s.metrics[1].interval_text, "30s");
    NS_ASSERT_INT_EQ(s.n_webhooks, 2);
    NS_ASSERT_INT_EQ(s.webhooks[0].type, CANARY_HOOK_PRE_ROLLOUT);
    NS_ASSERT_INT_EQ(s.webhooks[0].timeout_ms, 30000);
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(s.webhooks[0].metadata, "cmd")),
                     "curl -fsS http://reviews-canary.bookinfo:9080/health");
    NS_ASSERT_INT_EQ(s.webhooks[1].type, CANARY_HOOK_CONFIRM_PROMOTION);
    NS_ASSERT_INT_EQ(s.webhooks[1].timeout_ms, 10000); /* default */
    CU_ASSERT_PTR_NULL(s.webhooks[1].metadata);
    NS_ASSERT_STR_EQ(s.webhooks[1].url, "http://gate.bookinfo/approve");
    cJSON_Delete(c);
}

static void test_errors(void)
{
#define TR "\"targetRef\":{\"name\":\"reviews\"}"
#define SV "\"service\":{\"port\":9080}"
#define ST "\"strategy\":{\"canary\":{\"stepWeight\":10}}"
    static const struct {
        const char *spec, *want;
    } cases[] = {
        {"[]", "spec must be an object"},
        {"{" SV "," ST "}", "spec.targetRef is required"},
        {"{\"targetRef\":{}," SV "," ST "}", "spec.targetRef.name is required"},
        {"{\"targetRef\":{\"name\":7}," SV "," ST "}",
         "spec.targetRef.name must be a string, not 7"},
        {"{\"targetRef\":{\"name\":\"reviews\",\"kind\":\"StatefulSet\"}," SV "," ST "}",
         "only Deployments"},
        {"{\"targetRef\":{\"name\":\"reviews.v2\"}," SV "," ST "}",
         "spec.service.name is required: the default, targetRef.name \"reviews.v2\""},
        {"{" TR ",\"service\":{\"port\":9080,\"name\":\"Reviews\"}," ST "}",
         "spec.service.name (\"Reviews\") is not a valid Service name"},
        {"{" TR ",\"service\":{}," ST "}", "spec.service.port is required"},
        {"{" TR ",\"service\":{\"port\":\"9080\"}," ST "}",
         "spec.service.port must be an integer, not \"9080\""},
        {"{" TR ",\"service\":{\"port\":70000}," ST "}",
         "spec.service.port (70000) must be between 1 and 65535"},
        {"{" TR ",\"service\":{\"port\":9080,\"targetPort\":0}," ST "}",
         "spec.service.targetPort (0) is neither a port number"},
        {"{" TR ",\"service\":{\"port\":9080,\"targetPort\":true}," ST "}",
         "spec.service.targetPort (true) is neither"},
        {"{" TR "," SV "}", "spec.strategy is required"},
        {"{" TR "," SV ",\"strategy\":{}}", "set exactly one of strategy.canary or"},
        {"{" TR "," SV ",\"strategy\":{\"canary\":{\"stepWeight\":10},\"blueGreen\":{}}}",
         "set exactly one of strategy.canary or strategy.blueGreen"},
        {"{" TR "," SV ",\"strategy\":{\"canary\":{}}}",
         "set exactly one of stepWeight (a fixed step) or stepWeights"},
        {"{" TR "," SV ",\"strategy\":{\"canary\":{\"stepWeight\":10,\"stepWeights\":[10]}}}",
         "set exactly one of stepWeight"},
        {"{" TR "," SV ",\"strategy\":{\"canary\":{\"stepWeight\":60}}}",
         "stepWeight (60) must not be greater than maxWeight (50)"},
        {"{" TR "," SV ",\"strategy\":{\"canary\":{\"stepWeight\":0}}}",
         "stepWeight (0) must be between 1 and 100"},
        {"{" TR "," SV ",\"strategy\":{\"canary\":{\"stepWeight\":10,\"maxWeight\":101}}}",
         "maxWeight (101) must be between 1 and 100"},
        {"{" TR "," SV ",\"strategy\":{\"canary\":{\"stepWeights\":[5,5,10]}}}",
         "strictly ascending order, such as [5, 10, 25, 50]: 5 follows 5"},
        {"{" TR "," SV ",\"strategy\":{\"canary\":{\"stepWeights\":[10,80]}}}",
         "stepWeights must not be greater than maxWeight (50): raise maxWeight to the last "
         "step (80)"},
        {"{" TR "," SV ",\"strategy\":{\"canary\":{\"stepWeights\":[]}}}",
         "stepWeights must have 1 to 100 weights, not 0"},
        {"{" TR "," SV ",\"strategy\":{\"canary\":{\"stepWeights\":[10,\"20\"]}}}",
         "stepWeights[1] (\"20\") must be a weight between 1 and 100"},
        {"{" TR "," SV ",\"strategy\":{\"canary\":{\"stepWeights\":10}}}",
         "stepWeights must be a list of weights, not 10"},
        {"{" TR "," SV ",\"strategy\":{\"canary\":{\"stepWeight\":10,\"interval\":\"1 minute\"}}}",
         "spec.strategy.canary.interval (\"1 minute\") is not a positive duration"},
        {"{" TR "," SV ",\"strategy\":{\"canary\":{\"stepWeight\":10,\"interval\":\"0s\"}}}",
         "interval (\"0s\") is not a positive duration"},
        {"{" TR "," SV ",\"strategy\":{\"canary\":{\"stepWeight\":10,\"interval\":\"5d\"}}}",
         "(\"5d\") is not a positive duration"},
        {"{" TR "," SV
         ",\"strategy\":{\"canary\":{\"stepWeight\":10,\"interval\":\"99999999999h\"}}}",
         "is too long a duration"},
        {"{" TR "," SV ",\"strategy\":{\"blueGreen\":{\"iterations\":0}}}",
         "spec.strategy.blueGreen.iterations (0) must be at least 1"},
        {"{" TR "," SV ",\"strategy\":{\"blueGreen\":{\"autoPromote\":\"yes\"}}}",
         "spec.strategy.blueGreen.autoPromote must be true or false, not \"yes\""},
        {"{" TR "," SV ",\"strategy\":{\"blueGreen\":\"fast\"}}",
         "spec.strategy.blueGreen must be an object, not \"fast\""},
        {"{" TR "," SV "," ST ",\"analysis\":{\"threshold\":0}}",
         "spec.analysis.threshold (0) must be at least 1"},
        {"{" TR "," SV "," ST ",\"analysis\":{\"metrics\":{}}}",
         "spec.analysis.metrics must be a list, not an object"},
        {"{" TR "," SV "," ST
         ",\"analysis\":{\"metrics\":[{\"name\":\"e\",\"query\":\"q\",\"address\":\"http://p\"}]}}",
         "spec.analysis.metrics[0].thresholdRange is required"},
        {"{" TR "," SV "," ST
         ",\"analysis\":{\"metrics\":[{\"name\":\"e\",\"query\":\"q\",\"address\":\"http://p\","
         "\"thresholdRange\":{}}]}}",
         "spec.analysis.metrics[0].thresholdRange needs min, max or both"},
        {"{" TR "," SV "," ST
         ",\"analysis\":{\"metrics\":[{\"name\":\"e\",\"query\":\"q\",\"address\":\"http://p\","
         "\"thresholdRange\":{\"min\":5,\"max\":1}}]}}",
         "thresholdRange.min (5) must not be greater than thresholdRange.max (1)"},
        {"{" TR "," SV "," ST
         ",\"analysis\":{\"metrics\":[{\"name\":\"e\",\"query\":\"q\",\"address\":\"http://p\","
         "\"thresholdRange\":{\"max\":\"1\"}}]}}",
         "thresholdRange.max must be a number, not \"1\""},
        {"{" TR "," SV "," ST
         ",\"analysis\":{\"metrics\":[{\"name\":\"e\",\"query\":\"q\",\"address\":\"http://p\","
         "\"thresholdRange\":{\"max\":1},\"interval\":\"-1m\"}]}}",
         "spec.analysis.metrics[0].interval (\"-1m\") is not a positive duration"},
        {"{" TR "," SV "," ST
         ",\"analysis\":{\"metrics\":[{\"name\":\"e\",\"query\":\"q\",\"address\":\"http://p\","
         "\"thresholdRange\":{\"max\":1}},{\"name\":\"e\",\"query\":\"q2\",\"address\":"
         "\"http://p\",\"thresholdRange\":{\"max\":1}}]}}",
         "spec.analysis.metrics has two entries named e"},
        {"{" TR "," SV "," ST
         ",\"analysis\":{\"webhooks\":[{\"name\":\"w\",\"type\":\"pre\",\"url\":\"http://x\"}]}}",
         "spec.analysis.webhooks[0].type (\"pre\") must be pre-rollout, rollout"},
        {"{" TR "," SV "," ST
         ",\"analysis\":{\"webhooks\":[{\"name\":\"w\",\"type\":\"rollout\",\"url\":\"http://x\","
         "\"timeout\":\"10\"}]}}",
         "spec.analysis.webhooks[0].timeout (\"10\") is not a positive duration"},
        {"{" TR "," SV "," ST
         ",\"analysis\":{\"webhooks\":[{\"name\":\"w\",\"type\":\"rollout\",\"url\":\"http://x\","
         "\"metadata\":{\"n\":3}}]}}",
         "spec.analysis.webhooks[0].metadata.n must be a string"},
        {"{" TR "," SV "," ST
         ",\"analysis\":{\"webhooks\":[{\"name\":\"w\",\"type\":\"rollout\"}]}}",
         "spec.analysis.webhooks[0].url is required"},
        {"{" TR "," SV "," ST ",\"progressDeadlineSeconds\":0}",
         "spec.progressDeadlineSeconds (0) must be at least 1"},
        {"{" TR "," SV "," ST ",\"progressDeadlineSeconds\":1.5}",
         "spec.progressDeadlineSeconds must be an integer, not 1.5"},
        {"{" TR "," SV "," ST ",\"suspend\":1}", "spec.suspend must be true or false, not 1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *c = canary_with(cases[i].spec, NULL);
        canary_spec s;
        ns_err err = {0};
        int rc = canary_spec_parse(c, &s, &err);
        bool ok = rc == -EINVAL && strstr(err.msg, cases[i].want) != NULL;
        if (!ok)
            fprintf(stderr, "\n  case %zu: rc %d, message \"%s\"; want \"%s\"\n", i, rc, err.msg,
                    cases[i].want);
        CU_ASSERT_TRUE(ok);
        cJSON_Delete(c);
    }

    /* metadata */
    static const char *const bad_docs[][2] = {
        {"[]", "the Canary is not a JSON object"},
        {"{\"spec\":{}}", "metadata is required"},
        {"{\"metadata\":{\"name\":\"r\",\"namespace\":\"n\"},\"spec\":{}}",
         "metadata.uid is required"},
        {"{\"metadata\":{\"name\":\"r\",\"namespace\":\"n\",\"uid\":\"u\"}}", "spec is required"},
    };
    for (size_t i = 0; i < sizeof(bad_docs) / sizeof(bad_docs[0]); i++) {
        cJSON *c = cJSON_Parse(bad_docs[i][0]);
        canary_spec s;
        ns_err err = {0};
        NS_ASSERT_INT_EQ(canary_spec_parse(c, &s, &err), -EINVAL);
        NS_ASSERT_STR_EQ(err.msg, bad_docs[i][1]);
        cJSON_Delete(c);
    }
    canary_spec s;
    NS_ASSERT_INT_EQ(canary_spec_parse(NULL, &s, NULL), -EINVAL);
#undef TR
#undef SV
#undef ST
}

/* A failed parse leaves *out as it was. */
static void test_error_keeps_output(void)
{
    cJSON *good = canary_with(MINIMAL, NULL);
    cJSON *bad = canary_with("{\"targetRef\":{\"name\":\"other\"},\"service\":{\"port\":1},"
                             "\"strategy\":{}}",
                             NULL);
    canary_spec s;
    NS_ASSERT_INT_EQ(canary_spec_parse(good, &s, NULL), 0);
    NS_ASSERT_INT_EQ(canary_spec_parse(bad, &s, NULL), -EINVAL);
    NS_ASSERT_STR_EQ(s.target, "reviews");
    NS_ASSERT_INT_EQ(s.port, 9080);
    cJSON_Delete(good);
    cJSON_Delete(bad);
}

static void test_steps(void)
{
    static const struct {
        const char *canary; /* the strategy.canary object */
        int32_t max;
        int32_t steps[12]; /* 0-terminated */
    } cases[] = {
        {"{\"stepWeight\":10}", 50, {10, 20, 30, 40, 50}},
        {"{\"stepWeight\":10,\"maxWeight\":45}", 45, {10, 20, 30, 40, 45}},
        {"{\"stepWeight\":20,\"maxWeight\":100}", 100, {20, 40, 60, 80, 100}},
        {"{\"stepWeight\":30,\"maxWeight\":100}", 100, {30, 60, 90, 100}},
        {"{\"stepWeight\":50}", 50, {50}},
        {"{\"stepWeight\":7,\"maxWeight\":7}", 7, {7}},
        {"{\"stepWeight\":1,\"maxWeight\":3}", 3, {1, 2, 3}},
        {"{\"stepWeight\":40,\"maxWeight\":90}", 90, {40, 80, 90}},
        /* the list is the rollout: promotion follows its last step */
        {"{\"stepWeights\":[1,5,10,25,50]}", 50, {1, 5, 10, 25, 50}},
        {"{\"stepWeights\":[5,10,25]}", 25, {5, 10, 25}},
        {"{\"stepWeights\":[1,5,80],\"maxWeight\":80}", 80, {1, 5, 80}},
        {"{\"stepWeights\":[10,20],\"maxWeight\":100}", 20, {10, 20}},
        {"{\"stepWeights\":[100],\"maxWeight\":100}", 100, {100}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char spec[512];
        snprintf(spec, sizeof(spec),
                 "{\"targetRef\":{\"name\":\"reviews\"},\"service\":{\"port\":9080},"
                 "\"strategy\":{\"canary\":%s}}",
                 cases[i].canary);
        cJSON *c = canary_with(spec, NULL);
        canary_spec s;
        ns_err err = {0};
        NS_ASSERT_INT_EQ(canary_spec_parse(c, &s, &err), 0);
        size_t n = 0;
        while (n < 12 && cases[i].steps[n])
            n++;
        bool same = s.n_steps == n && s.max_weight == cases[i].max;
        for (size_t k = 0; same && k < n; k++)
            same = s.steps[k] == cases[i].steps[k];
        if (!same) {
            fprintf(stderr, "\n  %s: max %d, steps", cases[i].canary, (int)s.max_weight);
            for (size_t k = 0; k < s.n_steps; k++)
                fprintf(stderr, " %d", (int)s.steps[k]);
            fprintf(stderr, "\n");
        }
        CU_ASSERT_TRUE(same);
        cJSON_Delete(c);
    }

    /* stepWeight 1 to 100: a hundred steps, the most there can be */
    cJSON *c = canary_with("{\"targetRef\":{\"name\":\"reviews\"},\"service\":{\"port\":9080},"
                           "\"strategy\":{\"canary\":{\"stepWeight\":1,\"maxWeight\":100}}}",
                           NULL);
    canary_spec s;
    NS_ASSERT_INT_EQ(canary_spec_parse(c, &s, NULL), 0);
    NS_ASSERT_INT_EQ(s.n_steps, CANARY_MAX_STEPS);
    NS_ASSERT_INT_EQ(s.steps[CANARY_MAX_STEPS - 1], 100);
    NS_ASSERT_INT_EQ(s.steps[49], 50);
    cJSON_Delete(c);
}

static void test_request(void)
{
    static const struct {
        const char *annotation; /* NULL: none */
        canary_request want;
    } cases[] = {
        {NULL, CANARY_REQUEST_NONE},
        {"\"promote\"", CANARY_REQUEST_PROMOTE},
        {"\"abort\"", CANARY_REQUEST_ABORT},
        {"\"retry\"", CANARY_REQUEST_RETRY},
        {"\" promote\\n\"", CANARY_REQUEST_PROMOTE},
        {"\"\\tabort \"", CANARY_REQUEST_ABORT},
        {"\"Promote\"", CANARY_REQUEST_UNKNOWN},
        {"\"promoted\"", CANARY_REQUEST_UNKNOWN},
        {"\"prom\"", CANARY_REQUEST_UNKNOWN},
        {"\"\"", CANARY_REQUEST_UNKNOWN},
        {"\"pro mote\"", CANARY_REQUEST_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char meta[256] = "\"annotations\":{\"other\":\"promote\"}";
        if (cases[i].annotation)
            snprintf(meta, sizeof(meta), "\"annotations\":{\"" CANARY_ANN_REQUEST "\":%s}",
                     cases[i].annotation);
        cJSON *c = canary_with(MINIMAL, meta);
        canary_spec s;
        NS_ASSERT_INT_EQ(canary_spec_parse(c, &s, NULL), 0);
        if (s.request != cases[i].want)
            fprintf(stderr, "\n  case %zu (%s)\n", i,
                    cases[i].annotation ? cases[i].annotation : "none");
        NS_ASSERT_INT_EQ(s.request, cases[i].want);
        CU_ASSERT_EQUAL(s.request_text != NULL, cases[i].annotation != NULL);
        cJSON_Delete(c);
    }
    cJSON *c = canary_with(MINIMAL, "\"annotations\":{\"" CANARY_ANN_REQUEST "\":\" abort\"}");
    canary_spec s;
    NS_ASSERT_INT_EQ(canary_spec_parse(c, &s, NULL), 0);
    NS_ASSERT_STR_EQ(s.request_text, " abort"); /* as written, for messages */
    cJSON_Delete(c);
}

static void test_deleting(void)
{
    canary_spec s;
    cJSON *c = canary_with(MINIMAL, "\"deletionTimestamp\":\"2026-11-25T20:00:00Z\"");
    NS_ASSERT_INT_EQ(canary_spec_parse(c, &s, NULL), 0);
    CU_ASSERT_TRUE(s.deleting);
    cJSON_Delete(c);
    c = canary_with(MINIMAL, "\"deletionTimestamp\":null");
    NS_ASSERT_INT_EQ(canary_spec_parse(c, &s, NULL), 0);
    CU_ASSERT_FALSE(s.deleting);
    cJSON_Delete(c);
}

static void test_duration_ms(void)
{
    static const struct {
        const char *text;
        int rc;
        int64_t ms;
    } cases[] = {
        {"1m", 0, 60000},
        {"1h30m", 0, 5400000},
        {"1.5s", 0, 1500},
        {"250ms", 0, 250},
        {"1h", 0, 3600000},
        {"90m", 0, 5400000},
        {"2h45m30.5s", 0, 9930500},
        {"1.5h", 0, 5400000},
        {".5s", 0, 500},
        {"5.s", 0, 5000},
        {"1m1ms", 0, 60001},
        {"0", 0, 0},
        {"0s", 0, 0},
        {"0.0001s", 0, 1},   /* 100 µs rounds up, never to 0 */
        {"1ns", 0, 1},       /* likewise */
        {"1000us", 0, 1},    /* exactly 1 ms */
        {"1001us", 0, 2},    /* a bit more rounds up */
        {"999999ns", 0, 1},  /* a bit less, too */
        {"1000000ns", 0, 1}, /* exact */
        {"0.000000000001h", 0, 1},
        {"1.0000000000000000000001s", 0, 1001}, /* past the digits kept: still more than 1 s */
        {"1.00000000000000000000s", 0, 1000},
        {"1.5000000000s", 0, 1500}, /* more digits than the unit has ns */
        {"0.25000000000000h", 0, 900000},
        {"0.0000000000000001h", 0, 1},
        {"2562047h", 0, 2562047LL * 3600000},
        {"9223372036854775807ns", 0, 9223372036855LL},
        {"9223372036854775808ns", -ERANGE, 0},
        {"2562048h", -ERANGE, 0},
        {"2562047h48m", -ERANGE, 0},
        {"99999999999999999999h", -ERANGE, 0},
        {"", -EINVAL, 0},
        {"1", -EINVAL, 0},
        {"m", -EINVAL, 0},
        {".s", -EINVAL, 0},
        {"1d", -EINVAL, 0},
        {"-1s", -EINVAL, 0},
        {"+1s", -EINVAL, 0},
        {"1 m", -EINVAL, 0},
        {"1m ", -EINVAL, 0},
        {"1mm", -EINVAL, 0},
        {"1M", -EINVAL, 0},
        {"1.2.3s", -EINVAL, 0},
        {"1sm", -EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = -7;
        int rc = canary_duration_ms(cases[i].text, &ms);
        if (rc != cases[i].rc || (rc == 0 && ms != cases[i].ms))
            fprintf(stderr, "\n  \"%s\": rc %d, %lld ms\n", cases[i].text, rc, (long long)ms);
        NS_ASSERT_INT_EQ(rc, cases[i].rc);
        if (cases[i].rc == 0)
            NS_ASSERT_INT_EQ(ms, cases[i].ms);
        else
            NS_ASSERT_INT_EQ(ms, -7); /* untouched */
    }
    int64_t ms;
    NS_ASSERT_INT_EQ(canary_duration_ms(NULL, &ms), -EINVAL);
}

static void test_time(void)
{
    static const struct {
        int64_t ms;
        const char *text;
    } known[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {1, "1970-01-01T00:00:00.001Z"},
        {-1, "1969-12-31T23:59:59.999Z"},
        {951782400000, "2000-02-29T00:00:00.000Z"},
        {1795636026123, "2026-11-25T19:47:06.123Z"},
        {4102444799999, "2099-12-31T23:59:59.999Z"},
        {253402300799000, "9999-12-31T23:59:59.000Z"},
    };
    /* Writing these, and the round trip, is ns_time_format_ms's (tests/unit/lib). */
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        int64_t back = 0;
        NS_ASSERT_INT_EQ(canary_time_parse(known[i].text, &back), 0);
        NS_ASSERT_INT_EQ(back, known[i].ms);
    }

    static const struct {
        const char *text;
        int64_t ms;
    } good[] = {
        {"2026-11-25T19:47:06Z", 1795636026000},
        {"2026-11-25T19:47:06.1Z", 1795636026100},
        {"2026-11-25T19:47:06.12Z", 1795636026120},
        {"2026-11-25T19:47:06.123456Z", 1795636026123}, /* MicroTime: cut to ms */
        {"2026-11-25T19:47:06.999999999Z", 1795636026999},
        {"2026-11-25T21:47:06.123+02:00", 1795636026123},
        {"2026-11-25T14:17:06-05:30", 1795636026000},
        {"2024-02-29T00:00:00Z", 1709164800000},
        /* refused before the three parsers became ns_time_parse, which RFC 3339 allows */
        {"2026-11-25t19:47:06z", 1795636026000},            /* lower case */
        {"2026-11-25T19:47:60Z", 1795636079000},            /* a leap second, read as :59 */
        {"2026-11-25T19:47:06.1234567891Z", 1795636026123}, /* ten fraction digits */
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t ms = 0;
        NS_ASSERT_INT_EQ(canary_time_parse(good[i].text, &ms), 0);
        if (ms != good[i].ms)
            fprintf(stderr, "\n  %s\n", good[i].text);
        NS_ASSERT_INT_EQ(ms, good[i].ms);
    }

    static const char *const bad[] = {
        "",
        "2026-11-25",
        "2026-11-25T19:47:06",  /* no zone */
        "2026-11-25 19:47:06Z", /* space */
        "2026-13-01T00:00:00Z", /* month */
        "2026-00-01T00:00:00Z",
        "2026-11-31T00:00:00Z", /* November has 30 days */
        "2025-02-29T00:00:00Z", /* not a leap year */
        "1900-02-29T00:00:00Z", /* nor is 1900 */
        "2026-11-25T24:00:00Z",
        "2026-11-25T19:60:00Z",
        "2026-11-25T19:47:06.Z", /* empty fraction */
        "2026-11-25T19:47:06Zjunk",
        "2026-11-25T19:47:06+0200",
        "2026-11-25T19:47:06+24:00",
        "26-11-25T19:47:06Z",
        "2026-1-25T19:47:06Z",
        "+2026-11-25T19:47:06Z",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms = 42;
        int rc = canary_time_parse(bad[i], &ms);
        if (rc != -EINVAL)
            fprintf(stderr, "\n  accepted \"%s\"\n", bad[i]);
        NS_ASSERT_INT_EQ(rc, -EINVAL);
        NS_ASSERT_INT_EQ(ms, 42);
    }
    int64_t ms;
    NS_ASSERT_INT_EQ(canary_time_parse(NULL, &ms), -EINVAL);
}

static void test_phase_names(void)
{
    static const char *const names[] = {"Initializing", "Initialized", "Progressing", "Promoting",
                                        "Finalising",   "Succeeded",   "Failed"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        canary_phase p = canary_phase_parse(names[i]);
        CU_ASSERT_NOT_EQUAL(p, CANARY_PHASE_NONE);
        NS_ASSERT_STR_EQ(canary_phase_name(p), names[i]);
    }
    NS_ASSERT_INT_EQ(canary_phase_parse("Initializing"), CANARY_PHASE_INITIALIZING);
    NS_ASSERT_INT_EQ(canary_phase_parse("Failed"), CANARY_PHASE_FAILED);
    NS_ASSERT_INT_EQ(canary_phase_parse("progressing"), CANARY_PHASE_NONE);
    NS_ASSERT_INT_EQ(canary_phase_parse("Finalizing"), CANARY_PHASE_NONE); /* the CRD's spelling */
    NS_ASSERT_INT_EQ(canary_phase_parse(""), CANARY_PHASE_NONE);
    NS_ASSERT_INT_EQ(canary_phase_parse(NULL), CANARY_PHASE_NONE);
    NS_ASSERT_STR_EQ(canary_phase_name(CANARY_PHASE_NONE), "");
    NS_ASSERT_STR_EQ(canary_hook_type_name(CANARY_HOOK_PRE_ROLLOUT), "pre-rollout");
    NS_ASSERT_STR_EQ(canary_hook_type_name(CANARY_HOOK_CONFIRM_PROMOTION), "confirm-promotion");
    NS_ASSERT_STR_EQ(canary_hook_type_name(CANARY_HOOK_ROLLBACK), "rollback");
}

static canary_status sample_status(void)
{
    canary_status st = {
        .observed_generation = 7,
        .phase = CANARY_PHASE_PROGRESSING,
        .canary_weight = 18,
        .desired_weight = 20,
        .failed_checks = 2,
        .iterations = 3,
        .current_revision = "7d9f8b6c5a4e3d2f",
        .last_promoted_revision = "0123456789abcdef",
        .last_transition_ms = 1795636026123,
        .last_step_ms = 1795636086000,
        .message = "Advance reviews.bookinfo canary weight 20 \xe2\x86\x92 30",
        .promoted = false,
        .promoted_reason = "Progressing",
        .promoted_message = "rolling out revision 7d9f8b6c5a4e3d2f",
        .promoted_transition_ms = 1795636000000,
    };
    return st;
}

static bool status_equal(const canary_status *a, const canary_status *b)
{
    return a->observed_generation == b->observed_generation && a->phase == b->phase &&
           a->canary_weight == b->canary_weight && a->desired_weight == b->desired_weight &&
           a->failed_checks == b->failed_checks && a->iterations == b->iterations &&
           !strcmp(a->current_revision, b->current_revision) &&
           !strcmp(a->last_promoted_revision, b->last_promoted_revision) &&
           a->last_transition_ms == b->last_transition_ms && a->last_step_ms == b->last_step_ms &&
           !strcmp(a->message, b->message) && a->promoted == b->promoted &&
           !strcmp(a->promoted_reason, b->promoted_reason) &&
           !strcmp(a->promoted_message, b->promoted_message) &&
           a->promoted_transition_ms == b->promoted_transition_ms;
}

static canary_status round_trip(const canary_status *st)
{
    cJSON *json = canary_status_to_json(st);
    CU_ASSERT_PTR_NOT_NULL_FATAL(json);
    cJSON *canary = cJSON_CreateObject();
    cJSON_AddItemToObject(canary, "status", json);
    /* through text, as the API server would see it */
    char *text = cJSON_PrintUnformatted(canary);
    cJSON *back = cJSON_Parse(text);
    canary_status out;
    memset(&out, 0x5a, sizeof(out));
    canary_status_parse(back, &out);
    cJSON_free(text);
    cJSON_Delete(back);
    cJSON_Delete(canary);
    return out;
}

static void test_status_round_trip(void)
{
    canary_status st = sample_status();
    canary_status back = round_trip(&st);
    CU_ASSERT_TRUE(status_equal(&st, &back));

    st.promoted = true;
    st.phase = CANARY_PHASE_SUCCEEDED;
    snprintf(st.promoted_reason, sizeof(st.promoted_reason), "Succeeded");
    back = round_trip(&st);
    CU_ASSERT_TRUE(status_equal(&st, &back));
    CU_ASSERT_TRUE(back.promoted);

    /* every phase */
    for (canary_phase p = CANARY_PHASE_INITIALIZING; p <= CANARY_PHASE_FAILED; p++) {
        st.phase = p;
        back = round_trip(&st);
        NS_ASSERT_INT_EQ(back.phase, p);
    }
}

static void test_status_json(void)
{
    canary_status st = sample_status();
    cJSON *j = canary_status_to_json(&st);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    NS_ASSERT_INT_EQ(cJSON_GetObjectItem(j, "observedGeneration")->valuedouble, 7);
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(j, "phase")), "Progressing");
    NS_ASSERT_INT_EQ(cJSON_GetObjectItem(j, "desiredWeight")->valuedouble, 20);
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(j, "lastTransitionTime")),
                     "2026-11-25T19:47:06.123Z");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(j, "lastStepTime")),
                     "2026-11-25T19:48:06.000Z");
    cJSON *conds = cJSON_GetObjectItem(j, "conditions");
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(conds), 1);
    cJSON *c = cJSON_GetArrayItem(conds, 0);
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(c, "type")), "Promoted");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(c, "status")), "False");
    NS_ASSERT_INT_EQ(cJSON_GetObjectItem(c, "observedGeneration")->valuedouble, 7);
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(c, "lastTransitionTime")),
                     "2026-11-25T19:46:40.000Z");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(c, "reason")), "Progressing");
    cJSON_Delete(j);

    /* Empty strings and zero times are left out; numbers are always written. The
     * condition, which needs a time, falls back to the phase's. */
    canary_status bare = {.phase = CANARY_PHASE_INITIALIZING, .last_transition_ms = 1000};
    j = canary_status_to_json(&bare);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    static const char *const absent[] = {"currentRevision", "lastPromotedRevision", "lastStepTime",
                                         "message"};
    for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++) {
        if (cJSON_GetObjectItem(j, absent[i]))
            fprintf(stderr, "\n  %s written\n", absent[i]);
        CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(j, absent[i]));
    }
    static const char *const numbers[] = {"observedGeneration", "canaryWeight", "desiredWeight",
                                          "failedChecks", "iterations"};
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++)
        CU_ASSERT_TRUE(cJSON_IsNumber(cJSON_GetObjectItem(j, numbers[i])));
    c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "conditions"), 0);
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(c, "lastTransitionTime")),
                     "1970-01-01T00:00:01.000Z");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(c, "reason")), "Pending");
    /* message is required in a condition, even empty */
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(c, "message")), "");
    cJSON_Delete(j);

    /* nothing ever happened: no phase, no condition */
    canary_status zero = {0};
    j = canary_status_to_json(&zero);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(j, "phase"));
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(j, "conditions"));
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(j, "lastTransitionTime"));
    cJSON_Delete(j);

    /* a reason the CRD's pattern would refuse is not written */
    static const char *const bad_reasons[] = {"Not Ready", "1st", "Trailing:", "a-b", ""};
    for (size_t i = 0; i < sizeof(bad_reasons) / sizeof(bad_reasons[0]); i++) {
        st = sample_status();
        snprintf(st.promoted_reason, sizeof(st.promoted_reason), "%s", bad_reasons[i]);
        j = canary_status_to_json(&st);
        c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "conditions"), 0);
        NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(c, "reason")), "Pending");
        cJSON_Delete(j);
    }
    static const char *const good_reasons[] = {"A", "Rolled_Back", "Check:Failed,Again", "x9"};
    for (size_t i = 0; i < sizeof(good_reasons) / sizeof(good_reasons[0]); i++) {
        st = sample_status();
        snprintf(st.promoted_reason, sizeof(st.promoted_reason), "%s", good_reasons[i]);
        j = canary_status_to_json(&st);
        c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "conditions"), 0);
        NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(c, "reason")), good_reasons[i]);
        cJSON_Delete(j);
    }
}

static void test_status_parse_lenient(void)
{
    canary_status st;
    memset(&st, 0x5a, sizeof(st));
    canary_status_parse(NULL, &st);
    canary_status zero = {0};
    CU_ASSERT_TRUE(status_equal(&st, &zero));

    cJSON *c = cJSON_Parse("{\"status\":{\"observedGeneration\":\"3\",\"phase\":\"Bogus\","
                           "\"canaryWeight\":12.5,\"desiredWeight\":30,\"failedChecks\":true,"
                           "\"currentRevision\":\"0123456789012345678901234567890123456789"
                           "012345678901234567890123456789\",\"lastPromotedRevision\":7,"
                           "\"lastTransitionTime\":\"yesterday\",\"lastStepTime\":"
                           "\"2026-11-25T19:47:06Z\",\"message\":[],\"conditions\":"
                           "[{\"type\":\"Ready\",\"status\":\"True\"},{\"type\":\"Promoted\","
                           "\"status\":\"True\",\"reason\":5,\"lastTransitionTime\":\"x\"}]}}");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    canary_status_parse(c, &st);
    NS_ASSERT_INT_EQ(st.observed_generation, 0);
    NS_ASSERT_INT_EQ(st.phase, CANARY_PHASE_NONE);
    NS_ASSERT_INT_EQ(st.canary_weight, 0);
    NS_ASSERT_INT_EQ(st.desired_weight, 30);
    NS_ASSERT_INT_EQ(st.failed_checks, 0);
    NS_ASSERT_STR_EQ(st.current_revision, ""); /* 70 characters: not ours */
    NS_ASSERT_STR_EQ(st.last_promoted_revision, "");
    NS_ASSERT_INT_EQ(st.last_transition_ms, 0);
    NS_ASSERT_INT_EQ(st.last_step_ms, 1795636026000);
    NS_ASSERT_STR_EQ(st.message, "");
    CU_ASSERT_TRUE(st.promoted);
    NS_ASSERT_STR_EQ(st.promoted_reason, "");
    NS_ASSERT_INT_EQ(st.promoted_transition_ms, 0);
    cJSON_Delete(c);

    /* a long message is cut on a character boundary */
    char msg[1100], text[1300];
    memset(msg, 'a', sizeof(msg));
    memcpy(msg + 1021, "\xc3\xa9\xc3\xa9", 4); /* é é across the 1023-byte limit */
    msg[1099] = '\0';
    snprintf(text, sizeof(text), "{\"status\":{\"message\":\"%s\"}}", msg);
    c = cJSON_Parse(text);
    canary_status_parse(c, &st);
    NS_ASSERT_INT_EQ(strlen(st.message), 1023);
    NS_ASSERT_STR_EQ(st.message + 1021, "\xc3\xa9");
    cJSON_Delete(c);
    memcpy(msg + 1020, "\xc3\xa9\xc3\xa9", 4);
    snprintf(text, sizeof(text), "{\"status\":{\"message\":\"%s\"}}", msg);
    c = cJSON_Parse(text);
    canary_status_parse(c, &st);
    NS_ASSERT_INT_EQ(strlen(st.message), 1022);
    cJSON_Delete(c);
}

const ns_test canary_tests[] = {
    {"spec defaults", test_defaults},
    {"full spec", test_full_spec},
    {"spec errors name the field and value", test_errors},
    {"a failed parse keeps the output", test_error_keeps_output},
    {"steps from stepWeight and stepWeights", test_steps},
    {"request annotation", test_request},
    {"deletion", test_deleting},
    {"durations in ms", test_duration_ms},
    {"RFC 3339 times", test_time},
    {"phase and hook names", test_phase_names},
    {"status round trip", test_status_round_trip},
    {"status JSON", test_status_json},
    {"status parse is lenient", test_status_parse_lenient},
    {NULL, NULL},
};

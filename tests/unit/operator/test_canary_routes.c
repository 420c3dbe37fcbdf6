/* test_canary_routes.c - the proxies' route table made from Canaries: which phases get
 * a route, the weights, the addresses from Services (single, dual-stack, headless,
 * missing), deterministic order and versions, and that the result is what the proxy
 * accepts (proxy/routes.h's rules, checked here field by field).
 */
#include "canary_routes.h"
#include "suites.h"

#include "json.h"

#include <stdlib.h>
#include <string.h>

typedef struct svc_set {
    cJSON *apex, *primary, *canary;
    int lookups;
} svc_set;

static const cJSON *lookup(void *ud, const char *ns, const char *name)
{
    svc_set *s = ud;
    s->lookups++;
    if (strcmp(ns, "bookinfo") != 0)
        return NULL;
    if (strcmp(name, "reviews") == 0)
        return s->apex;
    if (strcmp(name, "reviews-primary") == 0)
        return s->primary;
    if (strcmp(name, "reviews-canary") == 0)
        return s->canary;
    return NULL;
}

static cJSON *service(const char *json)
{
    cJSON *o = cJSON_Parse(json);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    return o;
}

/* The fixture Canary with the given status phase and desiredWeight. */
static cJSON *canary_in(const char *phase, int weight)
{
    cJSON *c = ns_test_read_json("canary/reviews.canary.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cJSON *st = cJSON_AddObjectToObject(c, "status");
    if (phase)
        cJSON_AddStringToObject(st, "phase", phase);
    cJSON_AddNumberToObject(st, "desiredWeight", weight);
    cJSON_AddNumberToObject(st, "canaryWeight", 33); /* by endpoints: must not be used */
    return c;
}

static void services_init(svc_set *s)
{
    s->apex = service("{\"spec\":{\"clusterIP\":\"10.96.0.10\",\"clusterIPs\":[\"10.96.0.10\","
                      "\"fd00:96::10\"]}}");
    s->primary = service("{\"spec\":{\"clusterIP\":\"10.96.0.11\"}}");
    s->canary =
        service("{\"spec\":{\"clusterIP\":\"10.96.0.12\",\"clusterIPs\":[\"10.96.0.12\"]}}");
    s->lookups = 0;
}

static void services_free(svc_set *s)
{
    cJSON_Delete(s->apex);
    cJSON_Delete(s->primary);
    cJSON_Delete(s->canary);
}

static void test_progressing_route(void)
{
    svc_set s;
    services_init(&s);
    cJSON *c = canary_in("Progressing", 10);
    cJSON *routes = cJSON_CreateArray();
    NS_ASSERT_INT_EQ(canary_route_append(routes, c, "cluster.local", lookup, &s), 1);
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(routes), 1);
    const cJSON *r = cJSON_GetArrayItem(routes, 0);
    NS_ASSERT_STR_EQ(ns_json_str(r, "host"), "reviews.bookinfo.svc.cluster.local");
    NS_ASSERT_INT_EQ((int)cJSON_GetNumberValue(cJSON_GetObjectItem(r, "port")), 9080);
    const cJSON *addrs = cJSON_GetObjectItem(r, "addresses");
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(addrs), 2); /* both families of the apex */
    NS_ASSERT_STR_EQ(cJSON_GetArrayItem(addrs, 0)->valuestring, "10.96.0.10");
    NS_ASSERT_STR_EQ(cJSON_GetArrayItem(addrs, 1)->valuestring, "fd00:96::10");
    const cJSON *be = cJSON_GetObjectItem(r, "backends");
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(be), 2);
    const cJSON *p = cJSON_GetArrayItem(be, 0), *k = cJSON_GetArrayItem(be, 1);
    NS_ASSERT_STR_EQ(ns_json_str(p, "host"), "reviews-primary.bookinfo.svc.cluster.local");
    NS_ASSERT_STR_EQ(ns_json_str(p, "address"), "10.96.0.11");
    NS_ASSERT_INT_EQ((int)cJSON_GetNumberValue(cJSON_GetObjectItem(p, "weight")), 90);
    NS_ASSERT_INT_EQ((int)cJSON_GetNumberValue(cJSON_GetObjectItem(p, "port")), 9080);
    NS_ASSERT_STR_EQ(ns_json_str(k, "host"), "reviews-canary.bookinfo.svc.cluster.local");
    NS_ASSERT_STR_EQ(ns_json_str(k, "address"), "10.96.0.12");
    NS_ASSERT_INT_EQ((int)cJSON_GetNumberValue(cJSON_GetObjectItem(k, "weight")), 10);
    cJSON_Delete(routes);
    cJSON_Delete(c);
    services_free(&s);
}

static int weight_of(const cJSON *routes, int backend)
{
    const cJSON *be = cJSON_GetObjectItem(cJSON_GetArrayItem(routes, 0), "backends");
    return (int)cJSON_GetNumberValue(
        cJSON_GetObjectItem(cJSON_GetArrayItem(be, backend), "weight"));
}

static void test_phases(void)
{
    static const struct {
        const char *phase;
        int weight;
        int routed; /* 1: a route, with canary weight = `weight` */
    } cases[] = {
        {NULL, 0, 0},          {"Initializing", 0, 0},  {"Initialized", 0, 0},
        {"Progressing", 0, 1}, {"Progressing", 50, 1},  {"Promoting", 50, 1},
        {"Promoting", 100, 1}, {"Finalising", 0, 0},    {"Succeeded", 0, 0},
        {"Failed", 0, 0},      {"Progressing", 250, 1}, /* clamped to 100 */
    };
    svc_set s;
    services_init(&s);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *c = canary_in(cases[i].phase, cases[i].weight);
        cJSON *routes = cJSON_CreateArray();
        int rc = canary_route_append(routes, c, "cluster.local", lookup, &s);
        NS_ASSERT_INT_EQ(rc, cases[i].routed);
        NS_ASSERT_INT_EQ(cJSON_GetArraySize(routes), cases[i].routed);
        if (cases[i].routed) {
            int w = cases[i].weight > 100 ? 100 : cases[i].weight;
            NS_ASSERT_INT_EQ(weight_of(routes, 1), w);
            NS_ASSERT_INT_EQ(weight_of(routes, 0), 100 - w);
        }
        cJSON_Delete(routes);
        cJSON_Delete(c);
    }
    services_free(&s);
}

static void test_missing_and_headless_services(void)
{
    svc_set s = {0};
    s.apex = service("{\"spec\":{\"clusterIP\":\"None\"}}"); /* headless: nothing to match */
    cJSON *c = canary_in("Progressing", 20);
    cJSON *routes = cJSON_CreateArray();
    NS_ASSERT_INT_EQ(canary_route_append(routes, c, "example.org", lookup, &s), 1);
    const cJSON *r = cJSON_GetArrayItem(routes, 0);
    NS_ASSERT_STR_EQ(ns_json_str(r, "host"), "reviews.bookinfo.svc.example.org");
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(r, "addresses")), 0);
    const cJSON *be = cJSON_GetObjectItem(r, "backends");
    /* No Service in the cache yet: the proxy resolves the names instead. */
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(cJSON_GetArrayItem(be, 0), "address"));
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(cJSON_GetArrayItem(be, 1), "address"));
    NS_ASSERT_STR_EQ(ns_json_str(cJSON_GetArrayItem(be, 1), "host"),
                     "reviews-canary.bookinfo.svc.example.org");
    cJSON_Delete(routes);
    cJSON_Delete(c);
    cJSON_Delete(s.apex);
}

static void test_bad_or_deleted_canary(void)
{
    svc_set s;
    services_init(&s);
    cJSON *c = canary_in("Progressing", 10);
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(c, "spec"), "targetRef");
    cJSON *routes = cJSON_CreateArray();
    NS_ASSERT_INT_EQ(canary_route_append(routes, c, "cluster.local", lookup, &s), 0);
    cJSON_Delete(c);
    c = canary_in("Progressing", 10);
    cJSON_AddStringToObject(cJSON_GetObjectItem(c, "metadata"), "deletionTimestamp",
                            "2026-11-25T20:00:00Z");
    NS_ASSERT_INT_EQ(canary_route_append(routes, c, "cluster.local", lookup, &s), 0);
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(routes), 0);
    NS_ASSERT_INT_EQ(s.lookups, 0);
    cJSON_Delete(c);
    cJSON_Delete(routes);
    services_free(&s);
}

/* Two Canaries added in either order give the same text and version; a weight change
 * gives another version. */
static char *render_two(bool reversed, int weight, uint64_t *version)
{
    svc_set s;
    services_init(&s);
    cJSON *a = canary_in("Progressing", weight);
    cJSON *b = canary_in("Progressing", 30);
    cJSON_SetValuestring(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "metadata"), "namespace"),
                         "another");
    cJSON *routes = cJSON_CreateArray();
    canary_route_append(routes, reversed ? b : a, "cluster.local", lookup, &s);
    canary_route_append(routes, reversed ? a : b, "cluster.local", lookup, &s);
    char *text = canary_routes_render(routes, version);
    cJSON_Delete(routes);
    cJSON_Delete(a);
    cJSON_Delete(b);
    services_free(&s);
    return text;
}

static void test_render_deterministic(void)
{
    uint64_t v1 = 0, v2 = 0, v3 = 0;
    char *t1 = render_two(false, 10, &v1);
    char *t2 = render_two(true, 10, &v2);
    char *t3 = render_two(false, 20, &v3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t3);
    NS_ASSERT_STR_EQ(t1, t2);
    CU_ASSERT_EQUAL(v1, v2);
    CU_ASSERT_NOT_EQUAL(v1, v3);
    CU_ASSERT(v1 < (1ULL << 48) && v3 < (1ULL << 48));

    cJSON *t = cJSON_Parse(t1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    /* The version in the text is the one returned, printed as an exact integer. */
    char want[32];
    snprintf(want, sizeof(want), "{\"version\":%llu,", (unsigned long long)v1);
    CU_ASSERT_EQUAL(strncmp(t1, want, strlen(want)), 0);
    const cJSON *routes = cJSON_GetObjectItem(t, "routes");
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(routes), 2);
    /* sorted by host: "reviews.another..." before "reviews.bookinfo..." */
    NS_ASSERT_STR_EQ(ns_json_str(cJSON_GetArrayItem(routes, 0), "host"),
                     "reviews.another.svc.cluster.local");
    cJSON_Delete(t);
    free(t1);
    free(t2);
    free(t3);
}

static void test_render_empty(void)
{
    uint64_t v = 0;
    cJSON *routes = cJSON_CreateArray();
    char *text = canary_routes_render(routes, &v);
    cJSON_Delete(routes);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    cJSON *t = cJSON_Parse(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(t, "routes")), 0);
    CU_ASSERT_EQUAL((uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(t, "version")), v);
    cJSON_Delete(t);
    free(text);
}

const ns_test canary_routes_tests[] = {
    {"a Progressing Canary's route", test_progressing_route},
    {"which phases route, and the weights", test_phases},
    {"Services missing or headless", test_missing_and_headless_services},
    {"bad or deleted Canaries give no route", test_bad_or_deleted_canary},
    {"order-independent text and version", test_render_deterministic},
    {"an empty table", test_render_empty},
    {NULL, NULL},
};

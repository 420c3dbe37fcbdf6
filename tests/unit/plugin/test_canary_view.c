/* test_canary_view.c - reading a Canary, the status table, the recent Events and the
 * detailed view, against objects shaped as the API server returns them. */
#include "canary_view.h"
#include "json.h"
#include "suites.h"

#include <cjson/cJSON.h>

static void test_read(void)
{
    cJSON *obj = ns_test_read_json("canary_progressing.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(obj);
    kn_canary c;
    kn_canary_read(obj, &c);
    NS_ASSERT_STR_EQ(c.name, "reviews");
    NS_ASSERT_STR_EQ(c.namespace, "bookinfo");
    NS_ASSERT_STR_EQ(c.uid, "0c1f6a52-5d6e-4b8e-9a37-2f4d1c0b9e11");
    NS_ASSERT_STR_EQ(c.resource_version, "4711");
    NS_ASSERT_INT_EQ(c.created_ms, TEST_NOW_MS - (2LL * 86400 + 12 * 3600) * 1000);
    CU_ASSERT_FALSE(c.deleting);
    NS_ASSERT_STR_EQ(c.request, "promote");
    NS_ASSERT_STR_EQ(c.target, "reviews");
    NS_ASSERT_STR_EQ(c.strategy, "canary");
    CU_ASSERT_FALSE(c.suspend);
    NS_ASSERT_INT_EQ(c.threshold, 3);
    NS_ASSERT_STR_EQ(c.phase, "Progressing");
    CU_ASSERT_TRUE(c.has_canary_weight && c.has_desired_weight);
    NS_ASSERT_INT_EQ(c.canary_weight, 20);
    NS_ASSERT_INT_EQ(c.desired_weight, 30);
    NS_ASSERT_INT_EQ(c.failed_checks, 1);
    NS_ASSERT_STR_EQ(c.current_revision, "7d9f8b6c5");
    NS_ASSERT_STR_EQ(c.last_promoted_revision, "6b5c4d3e2");
    NS_ASSERT_INT_EQ(c.last_transition_ms, TEST_NOW_MS - 299750);
    NS_ASSERT_STR_EQ(c.message, "Advancing canary weight to 30");
    NS_ASSERT_STR_EQ(c.promoted, "False");
    cJSON_Delete(obj);
}

static void test_read_lenient(void)
{
    /* Wrong types, fractions and out-of-range numbers read as absent; defaults apply. */
    const char *text = "{\"metadata\":{\"name\":7,\"deletionTimestamp\":\"2026-11-25T19:00:00Z\","
                       "\"creationTimestamp\":\"yesterday\"},"
                       "\"spec\":{\"strategy\":{\"blueGreen\":{}},\"suspend\":true,\"analysis\":{"
                       "\"threshold\":0}},"
                       "\"status\":{\"phase\":\"\",\"canaryWeight\":20.5,\"desiredWeight\":1e12,"
                       "\"failedChecks\":\"3\",\"conditions\":{\"type\":\"Promoted\"}}}";
    cJSON *obj = NULL;
    NS_ASSERT_INT_EQ(ns_json_parse(text, strlen(text), &obj, NULL), 0);
    kn_canary c;
    kn_canary_read(obj, &c);
    CU_ASSERT_PTR_NULL(c.name);
    CU_ASSERT_TRUE(c.deleting);
    NS_ASSERT_INT_EQ(c.created_ms, 0);
    NS_ASSERT_STR_EQ(c.strategy, "blueGreen");
    CU_ASSERT_TRUE(c.suspend);
    NS_ASSERT_INT_EQ(c.threshold, KN_DEFAULT_THRESHOLD);
    CU_ASSERT_PTR_NULL(c.phase);
    CU_ASSERT_FALSE(c.has_canary_weight);
    CU_ASSERT_FALSE(c.has_desired_weight);
    NS_ASSERT_INT_EQ(c.failed_checks, 0);
    CU_ASSERT_PTR_NULL(c.conditions);
    CU_ASSERT_PTR_NULL(c.promoted);
    cJSON_Delete(obj);

    kn_canary_read(NULL, &c);
    CU_ASSERT_PTR_NULL(c.name);
    NS_ASSERT_INT_EQ(c.threshold, KN_DEFAULT_THRESHOLD);
}

static void table_golden(bool all_namespaces, const char *golden)
{
    cJSON *list = ns_test_read_json("canaries.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(list);
    ns_buf out;
    ns_buf_init(&out);
    kn_status_table(ns_json_get(list, "items"), all_namespaces, TEST_NOW_MS, &out);
    CU_ASSERT_FALSE(out.failed);
    expect_text(ns_buf_cstr(&out), golden);
    ns_buf_free(&out);
    cJSON_Delete(list);
}

static void test_table(void)
{
    table_golden(false, "status_table.txt");
    table_golden(true, "status_table_all.txt");
}

static void test_table_cells(void)
{
    /* Independently of the golden file: the cells of the first Canary, in order. */
    cJSON *list = ns_test_read_json("canaries.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(list);
    ns_buf out;
    ns_buf_init(&out);
    kn_status_table(ns_json_get(list, "items"), false, TEST_NOW_MS, &out);
    const char *s = ns_buf_cstr(&out);
    const char *row = strstr(s, "\nreviews ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(row);
    char name[32], phase[32], weight[16], failed[16], rev[32], promoted[16], age[16];
    NS_ASSERT_INT_EQ(sscanf(row, "%31s %31s %15s %15s %31s %15s %15s", name, phase, weight, failed,
                            rev, promoted, age),
                     7);
    NS_ASSERT_STR_EQ(phase, "Progressing");
    NS_ASSERT_STR_EQ(weight, "20");
    NS_ASSERT_STR_EQ(failed, "1/3");
    NS_ASSERT_STR_EQ(rev, "7d9f8b6c5");
    NS_ASSERT_STR_EQ(promoted, "False");
    NS_ASSERT_STR_EQ(age, "2d12h");
    /* A Canary without status shows <none>, and its age from creation (2 s). */
    row = strstr(s, "\ndetails ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(row);
    NS_ASSERT_INT_EQ(sscanf(row, "%31s %31s %15s %15s %31s %15s %15s", name, phase, weight, failed,
                            rev, promoted, age),
                     7);
    NS_ASSERT_STR_EQ(phase, "<none>");
    NS_ASSERT_STR_EQ(weight, "<none>");
    NS_ASSERT_STR_EQ(failed, "<none>");
    NS_ASSERT_STR_EQ(promoted, "<none>");
    NS_ASSERT_STR_EQ(age, "2s");
    CU_ASSERT_PTR_NULL(strstr(s, "NAMESPACE"));
    ns_buf_free(&out);

    /* Nothing to list: nothing printed (the caller says "No resources found"). */
    ns_buf_init(&out);
    kn_status_table(NULL, false, TEST_NOW_MS, &out);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&out),
                     "NAME   PHASE   WEIGHT   FAILED   REVISION   PROMOTED   AGE\n");
    ns_buf_free(&out);
    cJSON_Delete(list);
}

static void test_events_recent(void)
{
    cJSON *list = ns_test_read_json("events.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(list);
    const cJSON *items = ns_json_get(list, "items");
    const cJSON *got[KN_EVENTS_SHOWN];
    size_t n = kn_events_recent(items, got, KN_EVENTS_SHOWN);
    NS_ASSERT_INT_EQ(n, 10);
    /* The two oldest (01 and 02) are left out; the rest oldest first, whatever the
     * order of the list; 08 has only an eventTime, 06 is placed by its last time. */
    static const char *const want[] = {"reviews.03", "reviews.04", "reviews.05", "reviews.07",
                                       "reviews.06", "reviews.08", "reviews.09", "reviews.10",
                                       "reviews.11", "reviews.12"};
    for (size_t i = 0; i < n; i++)
        NS_ASSERT_STR_EQ(ns_json_path_str(got[i], "metadata", "name", NULL), want[i]);

    const cJSON *three[3];
    NS_ASSERT_INT_EQ(kn_events_recent(items, three, 3), 3);
    NS_ASSERT_STR_EQ(ns_json_path_str(three[0], "metadata", "name", NULL), "reviews.10");
    NS_ASSERT_STR_EQ(ns_json_path_str(three[2], "metadata", "name", NULL), "reviews.12");
    NS_ASSERT_INT_EQ(kn_events_recent(NULL, three, 3), 0);
    NS_ASSERT_INT_EQ(kn_events_recent(items, three, 0), 0);
    cJSON_Delete(list);
}

static void test_event_time(void)
{
    const char *text = "[{\"lastTimestamp\":\"2026-11-25T19:00:00Z\","
                       "\"eventTime\":\"2026-11-25T18:00:00.000001Z\"},"
                       "{\"lastTimestamp\":null,\"series\":{\"lastObservedTime\":"
                       "\"2026-11-25T19:30:00.500000Z\"},\"eventTime\":\"2026-11-25T18:00:00Z\"},"
                       "{\"firstTimestamp\":\"2026-11-25T17:00:00Z\"},"
                       "{\"metadata\":{\"creationTimestamp\":\"2026-11-25T16:00:00Z\"}},"
                       "{\"lastTimestamp\":\"garbage\"}]";
    cJSON *arr = NULL;
    NS_ASSERT_INT_EQ(ns_json_parse(text, strlen(text), &arr, NULL), 0);
    const int64_t h = 3600 * 1000;
    NS_ASSERT_INT_EQ(kn_event_time_ms(cJSON_GetArrayItem(arr, 0)), TEST_NOW_MS - h);
    NS_ASSERT_INT_EQ(kn_event_time_ms(cJSON_GetArrayItem(arr, 1)), TEST_NOW_MS - h / 2 + 500);
    NS_ASSERT_INT_EQ(kn_event_time_ms(cJSON_GetArrayItem(arr, 2)), TEST_NOW_MS - 3 * h);
    NS_ASSERT_INT_EQ(kn_event_time_ms(cJSON_GetArrayItem(arr, 3)), TEST_NOW_MS - 4 * h);
    NS_ASSERT_INT_EQ(kn_event_time_ms(cJSON_GetArrayItem(arr, 4)), 0);
    cJSON_Delete(arr);
}

static void test_detail(void)
{
    cJSON *obj = ns_test_read_json("canary_progressing.json");
    cJSON *events = ns_test_read_json("events.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(obj);
    CU_ASSERT_PTR_NOT_NULL_FATAL(events);
    kn_canary c;
    kn_canary_read(obj, &c);
    ns_buf out;
    ns_buf_init(&out);
    kn_status_detail(&c, ns_json_get(events, "items"), NULL, TEST_NOW_MS, &out);
    CU_ASSERT_FALSE(out.failed);
    const char *s = ns_buf_cstr(&out);
    expect_text(s, "status_detail.txt");
    /* The facts the view exists for, checked one by one. */
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "Phase:            Progressing\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "Weight:           20% in effect, 30% desired\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "Failed checks:    1 (threshold 3)\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "Revision:         7d9f8b6c5\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "Last promoted:    6b5c4d3e2\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "Last transition:  2026-11-25T19:55:00.250Z (4m59s ago)\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "Pending request:  promote"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "Promoted  False   Progressing  5m"));
    /* A repeated Event shows its count, and its message stays on one line. */
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "7m (x3 over 11m)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "metric error-rate: 2.5 above 1 at 19:53\n"));
    CU_ASSERT_PTR_NULL(strstr(s, "primary reviews-primary created")); /* 11th oldest */
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "moving traffic back to the primary\n"));
    ns_buf_free(&out);
    cJSON_Delete(events);
    cJSON_Delete(obj);
}

static void test_detail_bare(void)
{
    /* A Canary the operator has not seen yet, whose Events could not be listed. */
    const char *text = "{\"metadata\":{\"name\":\"new\",\"namespace\":\"test\"},"
                       "\"spec\":{\"targetRef\":{\"name\":\"web\"},\"suspend\":true,"
                       "\"strategy\":{\"blueGreen\":{}}}}";
    cJSON *obj = NULL;
    NS_ASSERT_INT_EQ(ns_json_parse(text, strlen(text), &obj, NULL), 0);
    kn_canary c;
    kn_canary_read(obj, &c);
    ns_buf out;
    ns_buf_init(&out);
    kn_status_detail(&c, NULL, "events is forbidden", TEST_NOW_MS, &out);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&out),
                     "Name:             new\n"
                     "Namespace:        test\n"
                     "Target:           Deployment/web\n"
                     "Strategy:         blueGreen\n"
                     "Phase:            <none>\n"
                     "Weight:           <none>\n"
                     "Failed checks:    <none>\n"
                     "Revision:         <none>\n"
                     "Last promoted:    <none>\n"
                     "Last transition:  <none>\n"
                     "Message:          <none>\n"
                     "Suspended:        yes: the operator moves nothing until spec.suspend is "
                     "false\n"
                     "Conditions:       <none>\n"
                     "Events:           (cannot list them: events is forbidden)\n");
    ns_buf_reset(&out);
    kn_status_detail(&c, NULL, NULL, TEST_NOW_MS, &out);
    CU_ASSERT_PTR_NOT_NULL(strstr(ns_buf_cstr(&out), "Events:           <none>\n"));
    ns_buf_free(&out);
    cJSON_Delete(obj);
}

const ns_test canary_view_tests[] = {
    {"read a Canary", test_read},
    {"read leniently", test_read_lenient},
    {"status table (golden)", test_table},
    {"status table cells", test_table_cells},
    {"most recent events", test_events_recent},
    {"event time fallbacks", test_event_time},
    {"detailed view", test_detail},
    {"detailed view of a bare Canary", test_detail_bare},
    {NULL, NULL},
};

/* test_request.c - which requests apply in which phase, the patch, the report line. */
#include "json.h"
#include "request.h"
#include "suites.h"

#include <cjson/cJSON.h>
#include <errno.h>

static kn_canary canary_in(const char *phase)
{
    return (kn_canary){.name = "reviews",
                       .namespace = "test",
                       .phase = phase,
                       .has_canary_weight = phase != NULL,
                       .canary_weight = 20,
                       .threshold = 5};
}

static void test_applicability(void)
{
    static const char *const phases[] = {NULL,          "Initializing", "Initialized",
                                         "Progressing", "Promoting",    "Finalising",
                                         "Succeeded",   "Failed",       "SomethingNew"};
    static const kn_verb verbs[] = {KN_VERB_PROMOTE, KN_VERB_ABORT, KN_VERB_RETRY};
    for (size_t v = 0; v < 3; v++)
        for (size_t p = 0; p < sizeof(phases) / sizeof(phases[0]); p++) {
            kn_canary c = canary_in(phases[p]);
            ns_err err = {0};
            const char *ok_in = verbs[v] == KN_VERB_RETRY ? "Failed" : "Progressing";
            bool want_ok =
                phases[p] && (strcmp(phases[p], ok_in) == 0 ||
                              (verbs[v] == KN_VERB_ABORT && strcmp(phases[p], "Promoting") == 0));
            int rc = kn_request_check(verbs[v], &c, &err);
            if ((rc == 0) != want_ok)
                fprintf(stderr, "\n  %s in phase %s", kn_verb_name(verbs[v]),
                        phases[p] ? phases[p] : "(none)");
            NS_ASSERT_INT_EQ(rc, want_ok ? 0 : -EPERM);
            if (!want_ok) {
                /* The refusal names the verb, the Canary, what it needs and the way out. */
                CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, kn_verb_name(verbs[v])));
                CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "\"reviews\""));
                CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, ok_in));
                CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "--force"));
            }
        }
}

static void test_refusal_messages(void)
{
    ns_err err = {0};
    kn_canary c = canary_in("Succeeded");
    kn_request_check(KN_VERB_PROMOTE, &c, &err);
    NS_ASSERT_STR_EQ(err.msg, "cannot promote canary \"reviews\" in phase Succeeded: a promotion "
                              "applies only while Progressing (use --force to request it "
                              "anyway)");
    c = canary_in("Finalising");
    kn_request_check(KN_VERB_ABORT, &c, &err);
    NS_ASSERT_STR_EQ(err.msg, "cannot abort canary \"reviews\" in phase Finalising: an abort "
                              "applies only while Progressing or Promoting (use --force to "
                              "request it anyway)");
    c = canary_in(NULL);
    kn_request_check(KN_VERB_RETRY, &c, &err);
    NS_ASSERT_STR_EQ(err.msg, "cannot retry canary \"reviews\": it has no status yet; a retry "
                              "applies only when Failed (use --force to request it anyway)");
    /* Being deleted: nothing applies, whatever the phase. */
    c = canary_in("Progressing");
    c.deleting = true;
    NS_ASSERT_INT_EQ(kn_request_check(KN_VERB_ABORT, &c, &err), -EPERM);
    NS_ASSERT_STR_EQ(err.msg, "cannot abort canary \"reviews\": it is being deleted");
    NS_ASSERT_INT_EQ(kn_request_check(KN_VERB_ABORT, &c, NULL), -EPERM);
}

static void test_patch(void)
{
    cJSON *p = kn_request_patch(KN_VERB_ABORT, "4711");
    char *text = ns_json_print(p);
    NS_ASSERT_STR_EQ(text, "{\"metadata\":{\"annotations\":{\"nutshell.io/request\":\"abort\"},"
                           "\"resourceVersion\":\"4711\"}}");
    cJSON_free(text);
    cJSON_Delete(p);

    p = kn_request_patch(KN_VERB_RETRY, NULL);
    text = ns_json_print(p);
    NS_ASSERT_STR_EQ(text, "{\"metadata\":{\"annotations\":{\"nutshell.io/request\":\"retry\"}}}");
    cJSON_free(text);
    cJSON_Delete(p);

    p = kn_request_patch(KN_VERB_PROMOTE, NULL);
    NS_ASSERT_STR_EQ(ns_json_path_str(p, "metadata", "annotations", "nutshell.io/request", NULL),
                     "promote");
    cJSON_Delete(p);
}

static void summary(kn_verb v, const kn_canary *c, bool forced, const char *want)
{
    ns_buf out;
    ns_buf_init(&out);
    kn_request_summary(v, c, forced, &out);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&out), want);
    ns_buf_free(&out);
}

static void test_summary(void)
{
    kn_canary c = canary_in("Progressing");
    summary(KN_VERB_PROMOTE, &c, false,
            "canary.nutshell.io/reviews: promotion requested (phase Progressing, weight 20)\n");
    summary(KN_VERB_ABORT, &c, false,
            "canary.nutshell.io/reviews: abort requested (phase Progressing, weight 20)\n");
    c.request = "promote";
    summary(KN_VERB_ABORT, &c, false,
            "canary.nutshell.io/reviews: abort requested (phase Progressing, weight 20); "
            "replaces the pending request \"promote\"\n");
    summary(KN_VERB_PROMOTE, &c, false,
            "canary.nutshell.io/reviews: promotion already requested (phase Progressing, "
            "weight 20)\n");
    c = canary_in("Failed");
    c.canary_weight = 0;
    summary(KN_VERB_RETRY, &c, false,
            "canary.nutshell.io/reviews: retry requested (phase Failed, weight 0)\n");
    c = canary_in(NULL);
    summary(KN_VERB_PROMOTE, &c, true,
            "canary.nutshell.io/reviews: promotion requested (phase <none>); forced past the "
            "phase check\n");
}

static void test_names(void)
{
    NS_ASSERT_STR_EQ(kn_verb_name(KN_VERB_PROMOTE), "promote");
    NS_ASSERT_STR_EQ(kn_verb_name(KN_VERB_ABORT), "abort");
    NS_ASSERT_STR_EQ(kn_verb_name(KN_VERB_RETRY), "retry");
    NS_ASSERT_STR_EQ(kn_verb_noun(KN_VERB_PROMOTE), "promotion");
    NS_ASSERT_STR_EQ(kn_verb_noun(KN_VERB_RETRY), "retry");
}

const ns_test request_tests[] = {
    {"applicability by phase", test_applicability},
    {"refusal messages", test_refusal_messages},
    {"merge patch", test_patch},
    {"report line", test_summary},
    {"verb names", test_names},
    {NULL, NULL},
};

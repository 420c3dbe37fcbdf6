/* test_selector.c - label selector syntax, LabelSelector objects, matching, and cache
 * keys. */
#include "informer.h"
#include "suites.h"

#include <errno.h>
#include <stdlib.h>

static bool match(const char *sel, const char *labels_json)
{
    op_selector s;
    ns_err err = {0};
    int rc = op_selector_parse(sel, &s, &err);
    if (rc) {
        fprintf(stderr, "\n  cannot parse \"%s\": %s\n", sel, err.msg);
        CU_FAIL("selector did not parse");
        return false;
    }
    cJSON *labels = labels_json ? cJSON_Parse(labels_json) : NULL;
    bool m = op_selector_matches(&s, labels);
    cJSON_Delete(labels);
    op_selector_free(&s);
    return m;
}

static void test_parse_forms(void)
{
    op_selector s;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(op_selector_parse(" app.kubernetes.io/name = web , tier!=db,env in (a, b) ,"
                                       "x notin(c),flag,!gone,n>3,m<10,y==z",
                                       &s, &err),
                     0);
    NS_ASSERT_INT_EQ(s.n, 9);
    struct {
        const char *key;
        op_selector_op op;
        size_t nvalues;
    } want[] = {
        {"app.kubernetes.io/name", OP_SEL_EQ, 1},
        {"tier", OP_SEL_NEQ, 1},
        {"env", OP_SEL_IN, 2},
        {"x", OP_SEL_NOTIN, 1},
        {"flag", OP_SEL_EXISTS, 0},
        {"gone", OP_SEL_NOT_EXISTS, 0},
        {"n", OP_SEL_GT, 1},
        {"m", OP_SEL_LT, 1},
        {"y", OP_SEL_EQ, 1},
    };
    for (size_t i = 0; i < s.n && i < 9; i++) {
        NS_ASSERT_STR_EQ(s.reqs[i].key, want[i].key);
        NS_ASSERT_INT_EQ(s.reqs[i].op, want[i].op);
        NS_ASSERT_INT_EQ(s.reqs[i].nvalues, want[i].nvalues);
    }
    NS_ASSERT_STR_EQ(s.reqs[0].values[0], "web");
    NS_ASSERT_STR_EQ(s.reqs[2].values[1], "b");
    op_selector_free(&s);
    op_selector_free(&s); /* idempotent */

    /* nothing selects everything */
    NS_ASSERT_INT_EQ(op_selector_parse(NULL, &s, &err), 0);
    NS_ASSERT_INT_EQ(s.n, 0);
    NS_ASSERT_INT_EQ(op_selector_parse("   ", &s, &err), 0);
    NS_ASSERT_INT_EQ(s.n, 0);
    /* an empty value is allowed: a= means "a is the empty string" */
    NS_ASSERT_INT_EQ(op_selector_parse("a=", &s, &err), 0);
    NS_ASSERT_STR_EQ(s.reqs[0].values[0], "");
    op_selector_free(&s);
}

static void test_parse_errors(void)
{
    static const char *const bad[] = {
        "=b",
        "a=b=c",
        "a in x",
        "a in ()",
        "a in (x",
        "a in (x y)",
        "a>b",
        "a<",
        "a b",
        "a=b,",
        ",",
        "!a=b",
        "-a=1",
        "a-=1",
        "Bad_/x=1",
        "a/b/c=1",
        "a=-x",
        "a notin (,)",
        "a=b c",
        "a in (x),",
        "a=0123456789012345678901234567890123456789012345678901234567890123", /* 64 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        op_selector s;
        ns_err err = {0};
        int rc = op_selector_parse(bad[i], &s, &err);
        if (rc != -EINVAL)
            fprintf(stderr, "\n  \"%s\" parsed (rc %d)\n", bad[i], rc);
        NS_ASSERT_INT_EQ(rc, -EINVAL);
        CU_ASSERT_TRUE(err.msg[0] != '\0');
        NS_ASSERT_INT_EQ(s.n, 0);
    }
    /* the message names the selector */
    op_selector s;
    ns_err err = {0};
    op_selector_parse("a in ()", &s, &err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "\"a in ()\""));
}

static void test_matching(void)
{
    const char *l = "{\"app\":\"web\",\"tier\":\"front\",\"n\":\"5\",\"empty\":\"\"}";
    static const struct {
        const char *sel;
        bool want;
    } cases[] = {
        {"", true},
        {"app=web", true},
        {"app==web", true},
        {"app=db", false},
        {"missing=x", false},
        {"app!=db", true},
        {"app!=web", false},
        {"missing!=x", true},
        {"app in (db,web)", true},
        {"app in (db)", false},
        {"missing in (x)", false},
        {"app notin (web)", false},
        {"app notin (db)", true},
        {"missing notin (x)", true},
        {"app", true},
        {"missing", false},
        {"!app", false},
        {"!missing", true},
        {"n>4", true},
        {"n>5", false},
        {"n<6", true},
        {"n<5", false},
        {"app>1", false},
        {"missing<1", false},
        {"empty=", true},
        {"empty", true},
        {"app=web,tier=front", true},
        {"app=web,tier=back", false},
        {"app=web,!tier", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = match(cases[i].sel, l);
        if (got != cases[i].want)
            fprintf(stderr, "\n  \"%s\" on %s: got %d\n", cases[i].sel, l, got);
        CU_ASSERT_EQUAL(got, cases[i].want);
    }
    /* no labels at all */
    CU_ASSERT_TRUE(match("", NULL));
    CU_ASSERT_TRUE(match("!a", NULL));
    CU_ASSERT_TRUE(match("a!=b", NULL));
    CU_ASSERT_FALSE(match("a", NULL));
    CU_ASSERT_FALSE(match("a=b", NULL));
    /* a non-string label value counts as absent */
    CU_ASSERT_FALSE(match("a=1", "{\"a\":1}"));
    /* a NULL selector matches everything */
    CU_ASSERT_TRUE(op_selector_matches(NULL, NULL));

    cJSON *obj = cJSON_Parse("{\"metadata\":{\"labels\":{\"app\":\"web\"}}}");
    op_selector s;
    op_selector_parse("app=web", &s, NULL);
    CU_ASSERT_TRUE(op_selector_matches_object(&s, obj));
    op_selector_free(&s);
    cJSON_Delete(obj);
}

static void test_from_json(void)
{
    op_selector s;
    ns_err err = {0};
    cJSON *ls = cJSON_Parse("{\"matchLabels\":{\"app\":\"web\"},\"matchExpressions\":["
                            "{\"key\":\"tier\",\"operator\":\"In\",\"values\":[\"a\",\"b\"]},"
                            "{\"key\":\"env\",\"operator\":\"NotIn\",\"values\":[\"prod\"]},"
                            "{\"key\":\"canary\",\"operator\":\"Exists\"},"
                            "{\"key\":\"old\",\"operator\":\"DoesNotExist\"}]}");
    NS_ASSERT_INT_EQ(op_selector_from_json(ls, &s, &err), 0);
    NS_ASSERT_INT_EQ(s.n, 5);
    cJSON *yes = cJSON_Parse("{\"app\":\"web\",\"tier\":\"b\",\"canary\":\"\"}");
    cJSON *no = cJSON_Parse("{\"app\":\"web\",\"tier\":\"b\",\"canary\":\"\",\"env\":\"prod\"}");
    CU_ASSERT_TRUE(op_selector_matches(&s, yes));
    CU_ASSERT_FALSE(op_selector_matches(&s, no));
    op_selector_free(&s);
    cJSON_Delete(ls);

    /* NULL selects nothing, {} everything (Kubernetes' LabelSelectorAsSelector) */
    NS_ASSERT_INT_EQ(op_selector_from_json(NULL, &s, &err), 0);
    CU_ASSERT_FALSE(op_selector_matches(&s, yes));
    CU_ASSERT_FALSE(op_selector_matches(&s, NULL));
    op_selector_free(&s);
    cJSON *empty = cJSON_Parse("{}");
    NS_ASSERT_INT_EQ(op_selector_from_json(empty, &s, &err), 0);
    CU_ASSERT_TRUE(op_selector_matches(&s, no));
    op_selector_free(&s);
    cJSON_Delete(empty);
    cJSON_Delete(yes);
    cJSON_Delete(no);

    static const char *const bad[] = {
        "[]",
        "{\"matchLabels\":{\"a\":1}}",
        "{\"matchLabels\":{\"-a\":\"x\"}}",
        "{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"Like\",\"values\":[\"x\"]}]}",
        "{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"In\"}]}",
        "{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"In\",\"values\":[]}]}",
        "{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"Exists\",\"values\":[\"x\"]}]}",
        "{\"matchExpressions\":[{\"operator\":\"Exists\"}]}",
        "{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"In\",\"values\":[1]}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cJSON *j = cJSON_Parse(bad[i]);
        int rc = op_selector_from_json(j, &s, &err);
        if (rc != -EINVAL)
            fprintf(stderr, "\n  %s accepted\n", bad[i]);
        NS_ASSERT_INT_EQ(rc, -EINVAL);
        cJSON_Delete(j);
    }
}

static void test_keys(void)
{
    char key[OP_KEY_MAX];
    cJSON *o = cJSON_Parse("{\"metadata\":{\"name\":\"web\",\"namespace\":\"shop\"}}");
    NS_ASSERT_INT_EQ(op_object_key(o, key, sizeof(key)), 0);
    NS_ASSERT_STR_EQ(key, "shop/web");
    cJSON_Delete(o);
    o = cJSON_Parse("{\"metadata\":{\"name\":\"default\"}}"); /* a cluster-scoped Mesh */
    NS_ASSERT_INT_EQ(op_object_key(o, key, sizeof(key)), 0);
    NS_ASSERT_STR_EQ(key, "default");
    NS_ASSERT_INT_EQ(op_object_key(o, key, 4), -ENAMETOOLONG);
    cJSON_Delete(o);
    o = cJSON_Parse("{\"metadata\":{\"namespace\":\"x\"}}");
    NS_ASSERT_INT_EQ(op_object_key(o, key, sizeof(key)), -EINVAL);
    cJSON_Delete(o);
    NS_ASSERT_INT_EQ(op_object_key(NULL, key, sizeof(key)), -EINVAL);

    char ns[64], name[254];
    NS_ASSERT_INT_EQ(op_key_split("shop/web", ns, sizeof(ns), name, sizeof(name)), 0);
    NS_ASSERT_STR_EQ(ns, "shop");
    NS_ASSERT_STR_EQ(name, "web");
    NS_ASSERT_INT_EQ(op_key_split("default", ns, sizeof(ns), name, sizeof(name)), 0);
    NS_ASSERT_STR_EQ(ns, "");
    NS_ASSERT_STR_EQ(name, "default");
    NS_ASSERT_INT_EQ(op_key_split("", ns, sizeof(ns), name, sizeof(name)), -EINVAL);
    NS_ASSERT_INT_EQ(op_key_split("/x", ns, sizeof(ns), name, sizeof(name)), -EINVAL);
    NS_ASSERT_INT_EQ(op_key_split("x/", ns, sizeof(ns), name, sizeof(name)), -EINVAL);
    NS_ASSERT_INT_EQ(op_key_split("a/b/c", ns, sizeof(ns), name, sizeof(name)), -EINVAL);
    NS_ASSERT_INT_EQ(op_key_split("shop/web", ns, 4, name, sizeof(name)), -ENAMETOOLONG);
}

const ns_test selector_tests[] = {
    {"every operator parses", test_parse_forms},
    {"malformed selectors are refused", test_parse_errors},
    {"matching metadata.labels", test_matching},
    {"LabelSelector objects", test_from_json},
    {"cache keys", test_keys},
    {NULL, NULL},
};

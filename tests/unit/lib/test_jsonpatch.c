/* test_jsonpatch.c - RFC 6901 escaping and RFC 6902 application. */
#include "jsonpatch.h"
#include "suites.h"

#include <stdlib.h>

static void test_pointer_escaping(void)
{
    ns_buf b;
    ns_buf_init(&b);
    NS_ASSERT_STR_EQ(ns_jsonptr(&b, "metadata", "annotations", "nutshell.io/status", NULL),
                     "/metadata/annotations/nutshell.io~1status");
    NS_ASSERT_STR_EQ(ns_jsonptr(&b, "a~b", "c/d~/e", NULL), "/a~0b/c~1d~0~1e");
    NS_ASSERT_STR_EQ(ns_jsonptr(&b, "", NULL), "/");
    NS_ASSERT_STR_EQ(ns_jsonptr(&b, NULL), "");
    ns_buf_free(&b);
}

/* Applies `patch` to `doc` and compares with `want` (NULL: expect failure `rc`). */
static void check(const char *doc, const char *patch, const char *want, int want_rc)
{
    cJSON *d = cJSON_Parse(doc), *p = cJSON_Parse(patch);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    char *before = cJSON_PrintUnformatted(d);
    ns_err err = {0};
    int rc = ns_patch_apply(&d, p, &err);
    NS_ASSERT_INT_EQ(rc, want_rc);
    char *got = cJSON_PrintUnformatted(d);
    if (want) {
        cJSON *w = cJSON_Parse(want);
        CU_ASSERT_TRUE(cJSON_Compare(d, w, true));
        if (!cJSON_Compare(d, w, true))
            fprintf(stderr, "\n  patch %s\n  got  %s\n  want %s\n", patch, got, want);
        cJSON_Delete(w);
    } else {
        /* all or nothing: a failed patch leaves the document as it was */
        NS_ASSERT_STR_EQ(got, before);
        CU_ASSERT_TRUE(err.msg[0] != '\0');
    }
    free(before);
    free(got);
    cJSON_Delete(d);
    cJSON_Delete(p);
}

static void test_rfc6902_examples(void)
{
    /* RFC 6902 appendix A.1 .. A.16 (the ones that apply to us) */
    check("{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\"}]",
          "{\"baz\":\"qux\",\"foo\":\"bar\"}", 0);
    check("{\"foo\":[\"bar\",\"baz\"]}", "[{\"op\":\"add\",\"path\":\"/foo/1\",\"value\":\"qux\"}]",
          "{\"foo\":[\"bar\",\"qux\",\"baz\"]}", 0);
    check("{\"baz\":\"qux\",\"foo\":\"bar\"}", "[{\"op\":\"remove\",\"path\":\"/baz\"}]",
          "{\"foo\":\"bar\"}", 0);
    check("{\"foo\":[\"bar\",\"qux\",\"baz\"]}", "[{\"op\":\"remove\",\"path\":\"/foo/1\"}]",
          "{\"foo\":[\"bar\",\"baz\"]}", 0);
    check("{\"baz\":\"qux\",\"foo\":\"bar\"}",
          "[{\"op\":\"replace\",\"path\":\"/baz\",\"value\":\"boo\"}]",
          "{\"baz\":\"boo\",\"foo\":\"bar\"}", 0);
    check("{\"foo\":{\"bar\":\"baz\",\"waldo\":\"fred\"},\"qux\":{\"corge\":\"grault\"}}",
          "[{\"op\":\"move\",\"from\":\"/foo/waldo\",\"path\":\"/qux/thud\"}]",
          "{\"foo\":{\"bar\":\"baz\"},\"qux\":{\"corge\":\"grault\",\"thud\":\"fred\"}}", 0);
    check("{\"foo\":[\"all\",\"grass\",\"cows\",\"eat\"]}",
          "[{\"op\":\"move\",\"from\":\"/foo/1\",\"path\":\"/foo/3\"}]",
          "{\"foo\":[\"all\",\"cows\",\"eat\",\"grass\"]}", 0);
    check("{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}",
          "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"qux\"},"
          "{\"op\":\"test\",\"path\":\"/foo/1\",\"value\":2}]",
          "{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}", 0);
    check("{\"baz\":\"qux\"}", "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"bar\"}]", NULL,
          -ECANCELED);
    check("{\"foo\":\"bar\"}",
          "[{\"op\":\"add\",\"path\":\"/child\",\"value\":{\"grandchild\":{}}}]",
          "{\"foo\":\"bar\",\"child\":{\"grandchild\":{}}}", 0);
    check("{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz/bat\",\"value\":\"qux\"}]", NULL,
          -EINVAL);
    check("{\"/\":9,\"~1\":10}", "[{\"op\":\"test\",\"path\":\"/~01\",\"value\":10}]",
          "{\"/\":9,\"~1\":10}", 0);
    check("{\"foo\":[\"bar\"]}",
          "[{\"op\":\"add\",\"path\":\"/foo/-\",\"value\":[\"abc\",\"def\"]}]",
          "{\"foo\":[\"bar\",[\"abc\",\"def\"]]}", 0);
    check("{\"foo\":\"bar\"}", "[{\"op\":\"copy\",\"from\":\"/foo\",\"path\":\"/baz\"}]",
          "{\"foo\":\"bar\",\"baz\":\"bar\"}", 0);
}

static void test_escaped_annotation_key(void)
{
    check(
        "{\"metadata\":{\"annotations\":{}}}",
        "[{\"op\":\"add\",\"path\":\"/metadata/annotations/nutshell.io~1status\",\"value\":\"x\"}]",
        "{\"metadata\":{\"annotations\":{\"nutshell.io/status\":\"x\"}}}", 0);
}

static void test_bad_patches_are_refused_whole(void)
{
    /* the first op succeeds, the second fails: nothing may stick */
    check("{\"a\":1}",
          "[{\"op\":\"add\",\"path\":\"/b\",\"value\":2},{\"op\":\"remove\",\"path\":\"/zzz\"}]",
          NULL, -EINVAL);
    check("{\"a\":[1]}", "[{\"op\":\"add\",\"path\":\"/a/5\",\"value\":2}]", NULL, -EINVAL);
    check("{\"a\":[1]}", "[{\"op\":\"add\",\"path\":\"/a/01\",\"value\":2}]", NULL, -EINVAL);
    check("{\"a\":1}", "[{\"op\":\"frobnicate\",\"path\":\"/a\"}]", NULL, -EINVAL);
    check("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a\"}]", NULL, -EINVAL);
    check("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"a\",\"value\":1}]", NULL, -EINVAL);
    check("{\"a\":{\"b\":1}}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a/b/c\"}]", NULL,
          -EINVAL);
    check("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a~2\",\"value\":1}]", NULL, -EINVAL);

    cJSON *d = cJSON_Parse("{}"), *notarray = cJSON_Parse("{}");
    ns_err err = {0};
    NS_ASSERT_INT_EQ(ns_patch_apply(&d, notarray, &err), -EINVAL);
    cJSON_Delete(d);
    cJSON_Delete(notarray);
}

static void test_builder(void)
{
    cJSON *ops = cJSON_CreateArray();
    NS_ASSERT_INT_EQ(ns_patch_add(ops, "/x", cJSON_CreateNumber(1)), 0);
    NS_ASSERT_INT_EQ(ns_patch_op(ops, "remove", "/y", NULL), 0);
    char *s = cJSON_PrintUnformatted(ops);
    NS_ASSERT_STR_EQ(
        s, "[{\"op\":\"add\",\"path\":\"/x\",\"value\":1},{\"op\":\"remove\",\"path\":\"/y\"}]");
    free(s);
    cJSON_Delete(ops);
}

const ns_test jsonpatch_tests[] = {
    {"pointer escaping", test_pointer_escaping},
    {"RFC 6902 examples", test_rfc6902_examples},
    {"escaped annotation key", test_escaped_annotation_key},
    {"bad patches are refused whole", test_bad_patches_are_refused_whole},
    {"builder", test_builder},
    {NULL, NULL},
};

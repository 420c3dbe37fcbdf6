/* test_table.c - kubectl-style alignment: padding, minimum width, UTF-8, blanks. */
#include "suites.h"
#include "table.h"

static void render(kn_table *t, const char *indent, size_t min_width, size_t padding,
                   const char *want)
{
    ns_buf out;
    ns_buf_init(&out);
    kn_table_render(t, indent, min_width, padding, &out);
    CU_ASSERT_FALSE(out.failed);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&out), want);
    ns_buf_free(&out);
}

static void test_get_style(void)
{
    kn_table t;
    kn_table_init(&t, 3);
    const char *h[] = {"NAME", "PHASE", "AGE"};
    const char *r1[] = {"reviews", "Progressing", "5m3s"};
    const char *r2[] = {"a", "Failed", "2d"};
    NS_ASSERT_INT_EQ(kn_table_add(&t, h), 0);
    NS_ASSERT_INT_EQ(kn_table_add(&t, r1), 0);
    NS_ASSERT_INT_EQ(kn_table_add(&t, r2), 0);
    /* Column width = widest cell + 3; the last column is not padded. */
    render(&t, NULL, 6, 3,
           "NAME      PHASE         AGE\n"
           "reviews   Progressing   5m3s\n"
           "a         Failed        2d\n");
    kn_table_free(&t);
    kn_table_free(&t); /* freeing twice is harmless: it was zeroed */
}

static void test_min_width(void)
{
    kn_table t;
    kn_table_init(&t, 2);
    const char *r[] = {"A", "B"};
    NS_ASSERT_INT_EQ(kn_table_add(&t, r), 0);
    render(&t, NULL, 6, 3, "A     B\n");
    render(&t, "  ", 0, 2, "  A  B\n");
    kn_table_free(&t);
}

static void test_utf8_and_controls(void)
{
    kn_table t;
    kn_table_init(&t, 3);
    const char *h[] = {"REASON", "X", "MESSAGE"};
    const char *r1[] = {"Gr\xc3\xbc\xc3\x9f"
                        "e",
                        "y", "two\nlines\tand tab"};
    const char *r2[] = {"Ok", NULL, ""};
    NS_ASSERT_INT_EQ(kn_table_add(&t, h), 0);
    NS_ASSERT_INT_EQ(kn_table_add(&t, r1), 0);
    NS_ASSERT_INT_EQ(kn_table_add(&t, r2), 0);
    /* "Grüße" is 5 characters wide (7 bytes); the empty last cell leaves no blanks. */
    render(&t, NULL, 0, 2,
           "REASON  X  MESSAGE\n"
           "Gr\xc3\xbc\xc3\x9f"
           "e   y  two lines and tab\n"
           "Ok\n");
    NS_ASSERT_INT_EQ(kn_text_width("Gr\xc3\xbc\xc3\x9f"
                                   "e"),
                     5);
    NS_ASSERT_INT_EQ(kn_text_width(""), 0);
    kn_table_free(&t);
}

static void test_empty_and_growth(void)
{
    kn_table t;
    kn_table_init(&t, 2);
    render(&t, NULL, 6, 3, "");
    /* More rows than the first allocation holds. */
    char name[16];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "row%d", i);
        const char *r[] = {name, "x"};
        NS_ASSERT_INT_EQ(kn_table_add(&t, r), 0);
    }
    NS_ASSERT_INT_EQ(t.nrows, 100);
    ns_buf out;
    ns_buf_init(&out);
    kn_table_render(&t, NULL, 0, 1, &out);
    /* The first column is as wide as "row99" plus the padding, on every line. */
    CU_ASSERT_PTR_NOT_NULL(strstr(ns_buf_cstr(&out), "row0  x\nrow1  x\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(ns_buf_cstr(&out), "row99 x\n"));
    NS_ASSERT_INT_EQ(out.len, 100 * 8);
    ns_buf_free(&out);
    kn_table_free(&t);
    kn_table_free(NULL);
}

const ns_test table_tests[] = {
    {"kubectl get style", test_get_style},
    {"minimum width and indent", test_min_width},
    {"utf-8 widths and control characters", test_utf8_and_controls},
    {"empty table and growth", test_empty_and_growth},
    {NULL, NULL},
};

/* test_buf.c - growable buffers and JSON string escaping. */
#include "buf.h"
#include "suites.h"

#include <stdlib.h>

static void test_grows_from_static_storage(void)
{
    char small[4];
    ns_buf b;
    ns_buf_init_static(&b, small, sizeof(small));
    ns_buf_puts(&b, "ab");
    CU_ASSERT_PTR_EQUAL(b.data, small);
    ns_buf_printf(&b, "%s-%d", "cdefgh", 42);
    CU_ASSERT_FALSE(b.failed);
    CU_ASSERT_PTR_NOT_EQUAL(b.data, small);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&b), "abcdefgh-42");
    char *taken = ns_buf_take(&b);
    NS_ASSERT_STR_EQ(taken, "abcdefgh-42");
    free(taken);
    CU_ASSERT_PTR_NULL(b.data);
}

static void test_json_string(void)
{
    ns_buf b;
    ns_buf_init(&b);
    ns_buf_json_string(&b, "a\"b\\c\nd\x01"
                           "e");
    NS_ASSERT_STR_EQ(ns_buf_cstr(&b), "\"a\\\"b\\\\c\\nd\\u0001e\"");
    ns_buf_free(&b);
}

static void test_long_printf(void)
{
    ns_buf b;
    ns_buf_init(&b);
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ns_buf_printf(&b, "<%s>", big);
    NS_ASSERT_INT_EQ(b.len, 1001);
    CU_ASSERT_EQUAL(b.data[1000], '>');
    ns_buf_free(&b);
}

static void test_base64(void)
{
    /* RFC 4648 section 10 test vectors */
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const want[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                       "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        ns_buf b;
        ns_buf_init(&b);
        ns_buf_base64(&b, in[i], strlen(in[i]));
        NS_ASSERT_STR_EQ(ns_buf_cstr(&b), want[i]);
        ns_buf_free(&b);
    }
    unsigned char bytes[] = {0xff, 0xfe, 0x00, 0x80};
    ns_buf b;
    ns_buf_init(&b);
    ns_buf_base64(&b, bytes, sizeof(bytes));
    NS_ASSERT_STR_EQ(ns_buf_cstr(&b), "//4AgA==");
    ns_buf_free(&b);
}

const ns_test buf_tests[] = {
    {"base64", test_base64},
    {"grows from static storage", test_grows_from_static_storage},
    {"json string escaping", test_json_string},
    {"long printf", test_long_printf},
    {NULL, NULL},
};

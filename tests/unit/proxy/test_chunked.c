/* test_chunked.c - the chunked body decoder: where a body ends (extensions, trailers,
 * the next pipelined message), the same answer for any split, and every malformed
 * framing refused at the byte where it goes wrong. */
#include "http1.h"
#include "suites.h"

#include <errno.h>
#include <stdlib.h>

typedef struct fed {
    int rc;
    size_t used; /* bytes of the input that belong to the body */
    uint64_t data;
} fed;

/* Feeds text in pieces of `step` bytes; stops at the end of the body or an error. */
static fed feed(const char *text, size_t len, size_t step)
{
    px_chunked c;
    px_chunked_init(&c);
    fed f = {0};
    size_t off = 0;
    while (off < len) {
        size_t n = len - off < step ? len - off : step;
        size_t used = 0;
        f.rc = px_chunked_feed(&c, text + off, n, &used);
        if (used > n)
            CU_FAIL("used more than given");
        off += used;
        if (f.rc != 0)
            break;
    }
    f.used = off;
    f.data = c.data;
    return f;
}

/* Feeds whole and in pieces of 1, 2, 5 and 13 bytes; all must agree. */
static fed feed_all_ways(const char *text, size_t len)
{
    fed whole = feed(text, len, len ? len : 1);
    static const size_t steps[] = {1, 2, 5, 13};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        fed f = feed(text, len, steps[i]);
        if (f.rc != whole.rc || f.used != whole.used || f.data != whole.data) {
            fprintf(stderr, "\n  step %zu: rc %d/%d used %zu/%zu\n", steps[i], f.rc, whole.rc,
                    f.used, whole.used);
            CU_FAIL("pieces and whole disagree");
        }
    }
    return whole;
}

static void test_rfc_example(void)
{
    const char *t = "4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
    fed f = feed_all_ways(t, strlen(t));
    NS_ASSERT_INT_EQ(f.rc, 1);
    NS_ASSERT_INT_EQ(f.used, strlen(t));
    NS_ASSERT_INT_EQ(f.data, strlen("Wikipedia in\r\n\r\nchunks."));
}

static void test_extensions_and_trailers(void)
{
    const char *t = "5;name=value;quoted=\"a b\"\r\nhello\r\n"
                    "1A ; ext\r\nabcdefghijklmnopqrstuvwxyz\r\n"
                    "0;last\r\n"
                    "Expires: Wed, 21 Oct 2015 07:28:00 GMT\r\n"
                    "X-Checksum:abc\r\n"
                    "\r\n";
    fed f = feed_all_ways(t, strlen(t));
    NS_ASSERT_INT_EQ(f.rc, 1);
    NS_ASSERT_INT_EQ(f.used, strlen(t));
    NS_ASSERT_INT_EQ(f.data, 5 + 26);
    /* Hex of either case, leading zeros. */
    const char *u = "00a\r\n0123456789\r\n000\r\n\r\n";
    f = feed_all_ways(u, strlen(u));
    NS_ASSERT_INT_EQ(f.rc, 1);
    NS_ASSERT_INT_EQ(f.data, 10);
}

static void test_next_message_left(void)
{
    const char *body = "3\r\nabc\r\n0\r\n\r\n";
    char t[128];
    snprintf(t, sizeof t, "%sGET /next HTTP/1.1\r\n", body);
    fed f = feed_all_ways(t, strlen(t));
    NS_ASSERT_INT_EQ(f.rc, 1);
    NS_ASSERT_INT_EQ(f.used, strlen(body));
    /* Once done, further bytes are not the body's. */
    px_chunked c;
    px_chunked_init(&c);
    size_t used;
    NS_ASSERT_INT_EQ(px_chunked_feed(&c, body, strlen(body), &used), 1);
    NS_ASSERT_INT_EQ(px_chunked_feed(&c, "xyz", 3, &used), 1);
    NS_ASSERT_INT_EQ(used, 0);
}

static void test_incomplete(void)
{
    const char *t = "5\r\nhel";
    fed f = feed_all_ways(t, strlen(t));
    NS_ASSERT_INT_EQ(f.rc, 0);
    NS_ASSERT_INT_EQ(f.used, strlen(t));
    /* A huge chunk is streamed in O(1) per piece: 16 hex digits fit. */
    px_chunked c;
    px_chunked_init(&c);
    size_t used;
    const char *big = "ffffffffffffffff\r\n";
    NS_ASSERT_INT_EQ(px_chunked_feed(&c, big, strlen(big), &used), 0);
    CU_ASSERT_TRUE(c.remaining == UINT64_MAX);
    static char data[65536];
    NS_ASSERT_INT_EQ(px_chunked_feed(&c, data, sizeof data, &used), 0);
    NS_ASSERT_INT_EQ(used, sizeof data);
    CU_ASSERT_TRUE(c.remaining == UINT64_MAX - sizeof data);
}

static void test_malformed(void)
{
    static const struct {
        const char *text;
        size_t good; /* bytes accepted before the bad one */
    } cases[] = {
        {"g\r\n", 0},
        {" 5\r\nhello\r\n0\r\n\r\n", 0},
        {"-5\r\n", 0},
        {"0x5\r\nhello\r\n", 1},
        {"5 \r\nhello\r\n0\r\n\r\n", 2},
        {"5\nhello\r\n0\r\n\r\n", 1},
        {"5\r\rhello\r\n0\r\n\r\n", 2},
        {"5\r\nhelloX\r\n0\r\n\r\n", 8},
        {"5\r\nhello\n0\r\n\r\n", 8},
        {"5\r\nhello\r0\r\n\r\n", 9},
        {"10000000000000000\r\n", 16},
        {"5;\x01\r\nhello\r\n", 2},
        {"5;a\nb\r\nhello\r\n", 3},
        {"0\r\n Folded: x\r\n\r\n", 3},
        {"0\r\nBad Name: x\r\n\r\n", 6},
        {"0\r\n: x\r\n\r\n", 3},
        {"0\r\nX: a\x01\r\n\r\n", 7},
        {"0\r\nX: a\r\r\n", 8},
        {"0\r\n\r\r", 4},
        {"0\r\n\n", 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fed f = feed_all_ways(cases[i].text, strlen(cases[i].text));
        if (f.rc != -EBADMSG || f.used != cases[i].good)
            fprintf(stderr, "\n  chunked case %zu: rc %d used %zu\n", i, f.rc, f.used);
        NS_ASSERT_INT_EQ(f.rc, -EBADMSG);
        NS_ASSERT_INT_EQ(f.used, cases[i].good);
    }
    /* Errors stick and say why. */
    px_chunked c;
    px_chunked_init(&c);
    size_t used;
    NS_ASSERT_INT_EQ(px_chunked_feed(&c, "z", 1, &used), -EBADMSG);
    NS_ASSERT_INT_EQ(px_chunked_feed(&c, "0\r\n\r\n", 5, &used), -EBADMSG);
    NS_ASSERT_STR_EQ(c.why, "chunk size is not hex");
}

static void test_line_limits(void)
{
    /* An endless extension or trailer section is cut off at its bound. */
    size_t len = PX_H1_MAX_CHUNK_LINE + 100;
    char *t = malloc(len);
    memcpy(t, "5;", 2);
    memset(t + 2, 'x', len - 2);
    fed f = feed(t, len, len);
    NS_ASSERT_INT_EQ(f.rc, -EBADMSG);
    CU_ASSERT_TRUE(f.used <= PX_H1_MAX_CHUNK_LINE);
    free(t);

    len = PX_H1_MAX_TRAILERS + 100;
    t = malloc(len);
    size_t n = 0;
    memcpy(t, "0\r\n", 3);
    n = 3;
    while (n + 12 < len) {
        memcpy(t + n, "X-Pad: abc\r\n", 12);
        n += 12;
    }
    f = feed(t, n, n);
    NS_ASSERT_INT_EQ(f.rc, -EBADMSG);
    CU_ASSERT_TRUE(f.used <= PX_H1_MAX_TRAILERS + 3);
    free(t);
}

const ns_test chunked_tests[] = {
    {"rfc 9112 example", test_rfc_example},
    {"extensions and trailers", test_extensions_and_trailers},
    {"next message left alone", test_next_message_left},
    {"incomplete and huge chunks", test_incomplete},
    {"malformed framing refused", test_malformed},
    {"line and trailer limits", test_line_limits},
    {NULL, NULL},
};

/* test_trace.c - W3C traceparent (the spec's valid and invalid examples), B3 single and
 * multi headers, child spans from a seeded generator, and the headers written back
 * parsed again by the HTTP parser. */
#include "http1.h"
#include "suites.h"
#include "trace.h"

#include <errno.h>
#include <stdlib.h>

static const char *tp_example = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

static void test_traceparent_valid(void)
{
    px_trace_ctx c;
    char buf[64];
    NS_ASSERT_INT_EQ(px_traceparent_parse(tp_example, strlen(tp_example), &c), 0);
    hex(c.trace_id, 16, buf);
    NS_ASSERT_STR_EQ(buf, "4bf92f3577b34da6a3ce929d0e0e4736");
    hex(c.span_id, 8, buf);
    NS_ASSERT_STR_EQ(buf, "00f067aa0ba902b7");
    NS_ASSERT_INT_EQ(c.flags, 1);
    CU_ASSERT_FALSE(c.has_parent);
    NS_ASSERT_INT_EQ(px_traceparent_format(&c, buf), PX_TRACEPARENT_LEN);
    NS_ASSERT_STR_EQ(buf, tp_example);

    /* Not sampled. */
    const char *ns = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    NS_ASSERT_INT_EQ(px_traceparent_parse(ns, strlen(ns), &c), 0);
    NS_ASSERT_INT_EQ(c.flags, 0);
    /* A future version may append fields after a dash; read the first 55 characters. */
    const char *future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-"
                         "future-will-be-like";
    NS_ASSERT_INT_EQ(px_traceparent_parse(future, strlen(future), &c), 0);
    NS_ASSERT_INT_EQ(c.flags, 1);
    NS_ASSERT_INT_EQ(px_traceparent_parse(future, 55, &c), 0);
    /* Unknown flags are not passed on. */
    const char *flags = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff";
    NS_ASSERT_INT_EQ(px_traceparent_parse(flags, strlen(flags), &c), 0);
    NS_ASSERT_INT_EQ(c.flags, 0x03);
}

static void test_traceparent_invalid(void)
{
    static const char *bad[] = {
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.future",
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        px_trace_ctx c = {.flags = 0x42};
        int rc = px_traceparent_parse(bad[i], strlen(bad[i]), &c);
        if (rc != -EINVAL)
            fprintf(stderr, "\n  accepted: \"%s\"\n", bad[i]);
        NS_ASSERT_INT_EQ(rc, -EINVAL);
        NS_ASSERT_INT_EQ(c.flags, 0x42); /* untouched */
    }
}

static void test_rng(void)
{
    /* splitmix64's reference output for seed 0. */
    uint64_t s = 0;
    CU_ASSERT_TRUE(px_rng_next(&s) == 0xe220a8397b1dcdafull);
    CU_ASSERT_TRUE(px_rng_next(&s) == 0x6e789e6aa1b965f4ull);
    uint64_t a = 42, b = 42, c = 43;
    CU_ASSERT_TRUE(px_rng_next(&a) == px_rng_next(&b));
    CU_ASSERT_TRUE(px_rng_next(&a) != px_rng_next(&c));
}

static void test_child_and_new(void)
{
    px_trace_ctx in, out, again;
    px_traceparent_parse(tp_example, strlen(tp_example), &in);
    uint64_t rng = 7, rng2 = 7;
    px_trace_child(&in, &rng, &out);
    CU_ASSERT_EQUAL(memcmp(out.trace_id, in.trace_id, 16), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(out.span_id, in.span_id, 8), 0);
    CU_ASSERT_TRUE(out.has_parent);
    CU_ASSERT_EQUAL(memcmp(out.parent_id, in.span_id, 8), 0);
    NS_ASSERT_INT_EQ(out.flags, 1);
    /* Same seed, same ids; the generator moved on. */
    px_trace_child(&in, &rng2, &again);
    CU_ASSERT_EQUAL(memcmp(out.span_id, again.span_id, 8), 0);
    CU_ASSERT_TRUE(rng == rng2 && rng != 7);
    px_trace_child(&in, &rng, &again);
    CU_ASSERT_NOT_EQUAL(memcmp(out.span_id, again.span_id, 8), 0);

    px_trace_ctx root;
    px_trace_child(NULL, &rng, &root);
    uint8_t zero[16] = {0};
    CU_ASSERT_NOT_EQUAL(memcmp(root.trace_id, zero, 16), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(root.span_id, zero, 8), 0);
    CU_ASSERT_FALSE(root.has_parent);
    NS_ASSERT_INT_EQ(root.flags, 0);
    char tp[PX_TRACEPARENT_LEN + 1];
    px_traceparent_format(&root, tp);
    px_trace_ctx back;
    NS_ASSERT_INT_EQ(px_traceparent_parse(tp, strlen(tp), &back), 0);
    CU_ASSERT_EQUAL(memcmp(back.trace_id, root.trace_id, 16), 0);
    CU_ASSERT_EQUAL(memcmp(back.span_id, root.span_id, 8), 0);
    /* 1000 new traces: no repeated trace id. */
    static uint8_t ids[1000][16];
    for (int i = 0; i < 1000; i++) {
        px_trace_child(NULL, &rng, &root);
        memcpy(ids[i], root.trace_id, 16);
        for (int j = 0; j < i; j++)
            if (memcmp(ids[i], ids[j], 16) == 0)
                CU_FAIL("repeated trace id");
    }
}

static void test_b3_single(void)
{
    px_trace_ctx c;
    char buf[64];
    const char *full = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90";
    NS_ASSERT_INT_EQ(px_b3_parse_single(full, strlen(full), &c), 0);
    hex(c.trace_id, 16, buf);
    NS_ASSERT_STR_EQ(buf, "80f198ee56343ba864fe8b2a57d3eff7");
    hex(c.span_id, 8, buf);
    NS_ASSERT_STR_EQ(buf, "e457b5a2e4d86bd1");
    NS_ASSERT_INT_EQ(c.flags, 1);
    CU_ASSERT_TRUE(c.sampling_known);
    CU_ASSERT_FALSE(c.trace_id_64);

    const char *short_id = "A3CE929D0E0E4736-00f067aa0ba902b7";
    NS_ASSERT_INT_EQ(px_b3_parse_single(short_id, strlen(short_id), &c), 0);
    CU_ASSERT_TRUE(c.trace_id_64);
    CU_ASSERT_FALSE(c.sampling_known);
    hex(c.trace_id, 16, buf);
    NS_ASSERT_STR_EQ(buf, "0000000000000000a3ce929d0e0e4736");

    const char *debug = "a3ce929d0e0e4736-00f067aa0ba902b7-d";
    NS_ASSERT_INT_EQ(px_b3_parse_single(debug, strlen(debug), &c), 0);
    CU_ASSERT_TRUE(c.debug);
    NS_ASSERT_INT_EQ(c.flags, 1);

    /* "0" alone: a decision, no context. */
    px_trace_ctx d = {.flags = 1};
    NS_ASSERT_INT_EQ(px_b3_parse_single("0", 1, &d), -ENOENT);
    NS_ASSERT_INT_EQ(d.flags, 0);

    static const char *bad[] = {
        "",
        "x",
        "2",
        "a3ce929d0e0e4736",
        "a3ce929d0e0e47-00f067aa0ba902b7",
        "a3ce929d0e0e4736-00f067aa0ba902b",
        "a3ce929d0e0e4736-00f067aa0ba902b7-2",
        "a3ce929d0e0e4736-00f067aa0ba902b7-1-05e3ac9a4f6e3b9",
        "a3ce929d0e0e4736-00f067aa0ba902b7-1-05e3ac9a4f6e3b90-x",
        "0000000000000000-00f067aa0ba902b7",
        "a3ce929d0e0e4736-0000000000000000",
        "a3ce929d0e0e4736--1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = px_b3_parse_single(bad[i], strlen(bad[i]), &c);
        if (rc != -EINVAL)
            fprintf(stderr, "\n  b3 accepted: \"%s\"\n", bad[i]);
        NS_ASSERT_INT_EQ(rc, -EINVAL);
    }
}

/* Parses a request head made of `headers` (CRLF-terminated lines). */
static int head(const char *headers, char *buf, size_t cap, px_h1_msg *m)
{
    snprintf(buf, cap, "GET / HTTP/1.1\r\nHost: svc\r\n%s\r\n", headers);
    px_h1_parser p;
    px_h1_init(&p, PX_H1_REQUEST, PX_M_NONE);
    return px_h1_parse(&p, buf, strlen(buf), m);
}

static void test_extract(void)
{
    static char buf[2048];
    static px_h1_msg m;
    px_trace_ctx c;
    unsigned forms;
    char id[64];

    CU_ASSERT_TRUE(head("Accept: */*\r\n", buf, sizeof buf, &m) > 0);
    NS_ASSERT_INT_EQ(px_trace_extract(&m, buf, &c, &forms), -ENOENT);
    NS_ASSERT_INT_EQ(forms, 0);

    /* traceparent wins over b3; both forms are reported. */
    CU_ASSERT_TRUE(head("b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0\r\n"
                        "TraceParent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
                        buf, sizeof buf, &m) > 0);
    NS_ASSERT_INT_EQ(px_trace_extract(&m, buf, &c, &forms), 0);
    NS_ASSERT_INT_EQ(forms, PX_TRACE_W3C | PX_TRACE_B3_SINGLE);
    hex(c.trace_id, 16, id);
    NS_ASSERT_STR_EQ(id, "4bf92f3577b34da6a3ce929d0e0e4736");

    /* An invalid traceparent falls back to a valid b3. */
    CU_ASSERT_TRUE(head("traceparent: 00-xyz\r\n"
                        "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0\r\n",
                        buf, sizeof buf, &m) > 0);
    NS_ASSERT_INT_EQ(px_trace_extract(&m, buf, &c, &forms), 0);
    hex(c.trace_id, 16, id);
    NS_ASSERT_STR_EQ(id, "80f198ee56343ba864fe8b2a57d3eff7");
    NS_ASSERT_INT_EQ(c.flags, 0);

    /* Two traceparent headers are ambiguous: neither is used. */
    CU_ASSERT_TRUE(head("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
                        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b8-01\r\n",
                        buf, sizeof buf, &m) > 0);
    NS_ASSERT_INT_EQ(px_trace_extract(&m, buf, &c, &forms), -ENOENT);
    NS_ASSERT_INT_EQ(forms, PX_TRACE_W3C);

    /* Multi headers. */
    CU_ASSERT_TRUE(head("X-B3-TraceId: 463ac35c9f6413ad\r\nX-B3-SpanId: a2fb4a1d1a96d312\r\n"
                        "X-B3-ParentSpanId: 0020000000000001\r\nX-B3-Sampled: true\r\n",
                        buf, sizeof buf, &m) > 0);
    NS_ASSERT_INT_EQ(px_trace_extract(&m, buf, &c, &forms), 0);
    NS_ASSERT_INT_EQ(forms, PX_TRACE_B3_MULTI);
    CU_ASSERT_TRUE(c.trace_id_64);
    NS_ASSERT_INT_EQ(c.flags, 1);
    hex(c.span_id, 8, id);
    NS_ASSERT_STR_EQ(id, "a2fb4a1d1a96d312");
    CU_ASSERT_TRUE(head("X-B3-TraceId: 463ac35c9f6413ad\r\nX-B3-SpanId: a2fb4a1d1a96d312\r\n"
                        "X-B3-Flags: 1\r\n",
                        buf, sizeof buf, &m) > 0);
    NS_ASSERT_INT_EQ(px_trace_extract(&m, buf, &c, NULL), 0);
    CU_ASSERT_TRUE(c.debug);
    /* Missing span id or a bad sampled value: no context, but the form is reported. */
    CU_ASSERT_TRUE(head("X-B3-TraceId: 463ac35c9f6413ad\r\n", buf, sizeof buf, &m) > 0);
    NS_ASSERT_INT_EQ(px_trace_extract(&m, buf, &c, &forms), -ENOENT);
    NS_ASSERT_INT_EQ(forms, PX_TRACE_B3_MULTI);
    CU_ASSERT_TRUE(head("X-B3-TraceId: 463ac35c9f6413ad\r\nX-B3-SpanId: a2fb4a1d1a96d312\r\n"
                        "X-B3-Sampled: yes\r\n",
                        buf, sizeof buf, &m) > 0);
    NS_ASSERT_INT_EQ(px_trace_extract(&m, buf, &c, &forms), -ENOENT);
}

/* Writes headers for a child context, puts them in a head, parses and extracts again:
 * the ids must survive the round trip in every form. */
static void test_write_round_trip(void)
{
    static char buf[2048];
    static px_h1_msg m;
    char out[PX_TRACE_HEADERS_MAX];
    uint64_t rng = 99;
    px_trace_ctx in, child, back;
    unsigned forms;

    const char *b3 = "a3ce929d0e0e4736-00f067aa0ba902b7-1";
    NS_ASSERT_INT_EQ(px_b3_parse_single(b3, strlen(b3), &in), 0);
    px_trace_child(&in, &rng, &child);
    unsigned all = PX_TRACE_W3C | PX_TRACE_B3_SINGLE | PX_TRACE_B3_MULTI;
    size_t n = px_trace_write(&child, all, out, sizeof out);
    CU_ASSERT_TRUE(n > 0 && n <= sizeof out);
    char headers[PX_TRACE_HEADERS_MAX + 1];
    snprintf(headers, sizeof headers, "%.*s", (int)n, out);
    CU_ASSERT_PTR_NOT_NULL(strstr(headers, "b3: a3ce929d0e0e4736-"));
    CU_ASSERT_PTR_NOT_NULL(strstr(headers, "-1-00f067aa0ba902b7\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(headers, "X-B3-TraceId: a3ce929d0e0e4736\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(headers, "X-B3-ParentSpanId: 00f067aa0ba902b7\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(headers, "X-B3-Sampled: 1\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(headers, "traceparent: 00-0000000000000000a3ce929d0e0e4736-"));
    CU_ASSERT_TRUE(head(headers, buf, sizeof buf, &m) > 0);
    NS_ASSERT_INT_EQ(px_trace_extract(&m, buf, &back, &forms), 0);
    NS_ASSERT_INT_EQ(forms, all);
    CU_ASSERT_EQUAL(memcmp(back.trace_id, child.trace_id, 16), 0);
    CU_ASSERT_EQUAL(memcmp(back.span_id, child.span_id, 8), 0);
    NS_ASSERT_INT_EQ(back.flags, 1);

    /* Only what came in goes out: W3C only means no B3. */
    n = px_trace_write(&child, PX_TRACE_W3C, out, sizeof out);
    NS_ASSERT_INT_EQ(n, strlen("traceparent: \r\n") + PX_TRACEPARENT_LEN);
    /* Deferred sampling: b3 carries no sampling state and so no parent. */
    const char *deferred = "a3ce929d0e0e4736-00f067aa0ba902b7";
    px_b3_parse_single(deferred, strlen(deferred), &in);
    px_trace_child(&in, &rng, &child);
    n = px_trace_write(&child, PX_TRACE_B3_SINGLE | PX_TRACE_B3_MULTI, out, sizeof out);
    snprintf(headers, sizeof headers, "%.*s", (int)n, out);
    CU_ASSERT_PTR_NULL(strstr(headers, "X-B3-Sampled"));
    const char *b3line = strstr(headers, "b3: ");
    CU_ASSERT_TRUE(b3line && strchr(b3line, '\r') - b3line == 4 + 16 + 1 + 16);
    /* Too small a buffer writes nothing. */
    NS_ASSERT_INT_EQ(px_trace_write(&child, PX_TRACE_B3_MULTI, out, 80), 0);
    /* The largest output fits the documented bound. */
    in.debug = true;
    in.trace_id_64 = false;
    in.sampling_known = true;
    px_trace_child(&in, &rng, &child);
    CU_ASSERT_TRUE(px_trace_write(&child, all, out, sizeof out) > 0);
}

static void test_is_header(void)
{
    const char *names = "traceparentTRACESTATEb3X-B3-SpanIdx-b3-flagsHostb3x";
    CU_ASSERT_TRUE(px_trace_is_header(names, (px_span){0, 11}));
    CU_ASSERT_FALSE(px_trace_is_header(names, (px_span){11, 10})); /* tracestate passes */
    CU_ASSERT_TRUE(px_trace_is_header(names, (px_span){21, 2}));
    CU_ASSERT_TRUE(px_trace_is_header(names, (px_span){23, 11}));
    CU_ASSERT_TRUE(px_trace_is_header(names, (px_span){34, 10}));
    CU_ASSERT_FALSE(px_trace_is_header(names, (px_span){44, 4}));
    CU_ASSERT_FALSE(px_trace_is_header(names, (px_span){48, 3}));
    CU_ASSERT_FALSE(px_trace_is_header(names, (px_span){0, 0}));
}

const ns_test trace_tests[] = {
    {"traceparent valid", test_traceparent_valid},
    {"traceparent invalid", test_traceparent_invalid},
    {"splitmix64", test_rng},
    {"child and new traces", test_child_and_new},
    {"b3 single header", test_b3_single},
    {"extract from a head", test_extract},
    {"write and read back", test_write_round_trip},
    {"trace header names", test_is_header},
    {NULL, NULL},
};

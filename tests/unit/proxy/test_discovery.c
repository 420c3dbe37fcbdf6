/* test_discovery.c - the route discovery protocol's pure side: --discovery-address forms,
 * the request lines, reading answers as their bytes arrive (200 with Content-Length,
 * close-delimited or chunked, truncated, 304, 503, garbage, limits), what each status
 * means, and the backoff schedule with its jitter. */
#include "discovery.h"
#include "routes.h"
#include "suites.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

static void test_address_good(void)
{
    static const struct {
        const char *in, *host;
        unsigned port;
    } cases[] = {
        {"nutshell-operator.nutshell-system.svc:15010", "nutshell-operator.nutshell-system.svc",
         15010},
        {"10.1.2.3:15010", "10.1.2.3", 15010},
        {"[fd00::1]:15010", "fd00::1", 15010},
        {"[::ffff:10.0.0.1]:1", "::ffff:10.0.0.1", 1},
        {"localhost:65535", "localhost", 65535},
        {"Operator.Example.:80", "Operator.Example.", 80},
        {"a-1.b2:8080", "a-1.b2", 8080},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        px_disc_addr a;
        ns_err err = {0};
        int rc = px_disc_parse_address(cases[i].in, &a, &err);
        if (rc)
            fprintf(stderr, "\n  %s: %s\n", cases[i].in, err.msg);
        NS_ASSERT_INT_EQ(rc, 0);
        NS_ASSERT_STR_EQ(a.host, cases[i].host);
        NS_ASSERT_INT_EQ(a.port, cases[i].port);
        /* The Host header is the address as written: brackets kept for IPv6. */
        NS_ASSERT_STR_EQ(a.authority, cases[i].in);
    }
}

static void test_address_bad(void)
{
    char long_label[80], long_name[300];
    memset(long_label, 'a', 64);
    memcpy(long_label + 64, ".svc:80", sizeof(".svc:80"));
    /* 255 characters in labels of 49: a name, but over DNS's 253. */
    memset(long_name, 'a', 255);
    for (size_t dot = 49; dot < 255; dot += 50)
        long_name[dot] = '.';
    memcpy(long_name + 255, ":80", sizeof(":80"));
    static const struct {
        const char *in, *msg;
    } cases[] = {
        {"", "empty address"},
        {"operator", "no port"},
        {"operator:", "\"\" is not a port"},
        {"operator:0", "\"0\" is not a port"},
        {"operator:65536", "\"65536\" is not a port"},
        {"operator:http", "\"http\" is not a port"},
        {"operator:80x", "\"80x\" is not a port"},
        {"operator:-1", "\"-1\" is not a port"},
        {":15010", "no host before the port"},
        {"fd00::1:15010", "IPv6 address goes in brackets"},
        {"[fd00::1]15010", "expected :PORT after ']'"},
        {"[fd00::1]", "expected :PORT after ']'"},
        {"[fd00::1:15010", "no closing ']'"},
        {"[10.1.2.3]:80", "in brackets is not an IPv6 address"},
        {"[]:80", "in brackets is not an IPv6 address"},
        {"http://operator:15010", "without a scheme or a path"},
        {"operator:15010/v1/routes", "without a scheme or a path"},
        {"999.1.2.3:80", "\"999.1.2.3\" is not an IPv4 address"},
        {"10.1.2:80", "\"10.1.2\" is not an IPv4 address"},
        {"bad_name:80", "\"bad_name\" is not a host name"},
        {"-lead.svc:80", "is not a host name"},
        {"trail-.svc:80", "is not a host name"},
        {"a..b:80", "is not a host name"},
        {" operator:80", "is not a host name"},
        {".:80", "is not a host name"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        px_disc_addr a;
        ns_err err = {0};
        int rc = px_disc_parse_address(cases[i].in, &a, &err);
        NS_ASSERT_INT_EQ(rc, -EINVAL);
        if (!strstr(err.msg, cases[i].msg))
            fprintf(stderr, "\n  \"%s\": message \"%s\", expected \"%s\" in it\n", cases[i].in,
                    err.msg, cases[i].msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, cases[i].msg));
    }
    px_disc_addr a;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(px_disc_parse_address(long_label, &a, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "is not a host name"));
    NS_ASSERT_INT_EQ(px_disc_parse_address(long_name, &a, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "253"));
    /* 253 is fine. */
    memcpy(long_name + 253, ":80", sizeof(":80"));
    NS_ASSERT_INT_EQ(px_disc_parse_address(long_name, &a, &err), 0);
    NS_ASSERT_INT_EQ(strlen(a.host), 253);
    /* A 63-character label is the longest allowed. */
    memcpy(long_label + 63, ".svc:80", sizeof(".svc:80"));
    NS_ASSERT_INT_EQ(px_disc_parse_address(long_label, &a, &err), 0);
}

#define STARTS(s, lit) (strncmp((s), (lit), sizeof(lit) - 1) == 0)

static void test_request(void)
{
    px_disc_addr a;
    NS_ASSERT_INT_EQ(px_disc_parse_address("nutshell-operator.nutshell-system.svc:15010", &a, NULL),
                     0);
    char out[512];
    int n = px_disc_request(&a, false, 0, 30, out, sizeof(out));
    NS_ASSERT_STR_EQ(out, "GET /v1/routes HTTP/1.1\r\n"
                          "Host: nutshell-operator.nutshell-system.svc:15010\r\n"
                          "Connection: close\r\n"
                          "Accept: application/json\r\n"
                          "User-Agent: nutshell-proxy/" NUTSHELL_VERSION "\r\n\r\n");
    NS_ASSERT_INT_EQ(n, strlen(out));

    n = px_disc_request(&a, true, 9007199254740992ull, 300, out, sizeof(out));
    CU_ASSERT_TRUE(n > 0);
    CU_ASSERT_TRUE(STARTS(out, "GET /v1/routes?version=9007199254740992&wait=300 HTTP/1.1\r\n"));
    /* Version 0 is a version like any other: it still makes a long-poll. */
    n = px_disc_request(&a, true, 0, 1, out, sizeof(out));
    CU_ASSERT_TRUE(STARTS(out, "GET /v1/routes?version=0&wait=1 HTTP/1.1\r\n"));

    /* What a server reads back as a request: the proxy's own parser agrees. */
    px_h1_parser p;
    px_h1_msg m;
    px_h1_init(&p, PX_H1_REQUEST, PX_M_NONE);
    NS_ASSERT_INT_EQ(px_h1_parse(&p, out, (size_t)n, &m), n);
    NS_ASSERT_INT_EQ(m.method_id, PX_M_GET);
    CU_ASSERT_TRUE(m.flags & PX_H1_CONN_CLOSE);
    NS_ASSERT_INT_EQ(m.body, PX_BODY_NONE);

    NS_ASSERT_INT_EQ(px_disc_parse_address("[fd00::1]:15010", &a, NULL), 0);
    n = px_disc_request(&a, false, 0, 30, out, sizeof(out));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\r\nHost: [fd00::1]:15010\r\n"));

    /* Too small a buffer is refused, never truncated; one byte more than the text fits. */
    NS_ASSERT_INT_EQ(px_disc_request(&a, false, 0, 30, out, (size_t)n), -ENOSPC);
    NS_ASSERT_INT_EQ(px_disc_request(&a, false, 0, 30, out, (size_t)n + 1), n);
}

typedef struct fed {
    int rc;
    px_disc_reply reply;
    size_t at; /* bytes fed when the reader decided */
    ns_err err;
    char *buf; /* the caller's buffer after the read (chunked bodies are decoded in it) */
} fed;

/* Feeds `text` `step` bytes at a time into a buffer that moves (realloc to a new address)
 * between calls, as the discovery thread's grows; with `eof` the server closes after
 * the last byte. */
static fed feed(const char *text, size_t len, size_t step, bool eof)
{
    fed f = {0};
    px_disc_reader *r = malloc(sizeof(*r));
    if (!r)
        abort();
    px_disc_reader_init(r);
    size_t have = 0;
    for (;;) {
        size_t n = len - have < step ? len - have : step;
        char *moved = malloc(have + n + 1);
        if (!moved)
            abort();
        if (have)
            memcpy(moved, f.buf, have);
        free(f.buf);
        f.buf = moved;
        memcpy(f.buf + have, text + have, n);
        have += n;
        bool closed = eof && have == len;
        f.rc = px_disc_read(r, f.buf, have, closed, &f.reply, &f.err);
        f.at = have;
        if (f.rc != 0 || have == len)
            break;
    }
    free(r);
    return f;
}

#define FEED(text, step, eof) feed(text, sizeof(text) - 1, step, eof)

static void expect_body(const fed *f, const char *body)
{
    NS_ASSERT_INT_EQ(f->rc, 1);
    NS_ASSERT_INT_EQ(f->reply.status, 200);
    NS_ASSERT_INT_EQ(f->reply.body_len, strlen(body));
    if (f->rc == 1 && f->reply.body_len == strlen(body))
        CU_ASSERT_TRUE(memcmp(f->buf + f->reply.body_off, body, strlen(body)) == 0);
}

static void test_read_content_length(void)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               "Content-Length: 33\r\nConnection: close\r\n\r\n"
                               "{\"version\": 42, \"routes\": []}\n\n\n\n";
    size_t steps[] = {1, 2, 7, 64, sizeof(resp)};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        fed f = FEED(resp, steps[i], false);
        expect_body(&f, "{\"version\": 42, \"routes\": []}\n\n\n\n");
        /* Decided exactly at the last byte of the body, without waiting for the close. */
        NS_ASSERT_INT_EQ(f.at, sizeof(resp) - 1);
        if (f.rc == 1) {
            px_routes *t = NULL;
            NS_ASSERT_INT_EQ(px_routes_parse(f.buf + f.reply.body_off, f.reply.body_len, &t, NULL),
                             0);
            if (t)
                NS_ASSERT_INT_EQ(t->version, 42);
            px_routes_free(t);
        }
        free(f.buf);
    }
    /* Bytes after the body are not part of it. */
    fed f = FEED("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}garbage", 100, true);
    expect_body(&f, "{}");
    free(f.buf);
    /* Content-Length: 0 is an empty body (which then does not parse as a table). */
    f = FEED("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 100, false);
    expect_body(&f, "");
    free(f.buf);
}

static void test_read_truncated(void)
{
    fed f = FEED("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"vers", 3, true);
    NS_ASSERT_INT_EQ(f.rc, -EBADMSG);
    NS_ASSERT_STR_EQ(f.err.msg, "truncated body: 6 of 10 bytes");
    free(f.buf);
    /* Without the close, the same bytes only mean "more to come". */
    f = FEED("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"vers", 3, false);
    NS_ASSERT_INT_EQ(f.rc, 0);
    free(f.buf);

    f = feed("", 0, 1, true);
    NS_ASSERT_INT_EQ(f.rc, -EBADMSG);
    NS_ASSERT_STR_EQ(f.err.msg, "the server closed the connection without an answer");
    free(f.buf);
    f = FEED("HTTP/1.1 200 OK\r\nContent-Le", 5, true);
    NS_ASSERT_INT_EQ(f.rc, -EBADMSG);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.err.msg, "in the middle of the head"));
    free(f.buf);
}

static void test_read_statuses(void)
{
    /* 304: no body, decided at the end of the head. */
    static const char not_modified[] = "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n";
    fed f = FEED(not_modified, 1, false);
    NS_ASSERT_INT_EQ(f.rc, 1);
    NS_ASSERT_INT_EQ(f.reply.status, 304);
    NS_ASSERT_INT_EQ(f.reply.body_len, 0);
    NS_ASSERT_INT_EQ(f.at, sizeof(not_modified) - 1);
    free(f.buf);

    /* 503 with a body: decided at the end of the head, the body is not waited for. */
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\n"
                               "caches are filling";
    f = FEED(busy, 4, false);
    NS_ASSERT_INT_EQ(f.rc, 1);
    NS_ASSERT_INT_EQ(f.reply.status, 503);
    NS_ASSERT_INT_EQ(f.reply.body_len, 0);
    CU_ASSERT_TRUE(f.at < sizeof(busy) - 1);
    free(f.buf);

    f = FEED("HTTP/1.0 404 Not Found\r\n\r\nno", 100, true);
    NS_ASSERT_INT_EQ(f.rc, 1);
    NS_ASSERT_INT_EQ(f.reply.status, 404);
    free(f.buf);

    /* Interim and upgrade answers are not what a GET with Connection: close gets. */
    f = FEED("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", 100, false);
    NS_ASSERT_INT_EQ(f.rc, -EPROTO);
    free(f.buf);
    f = FEED("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", 100,
             false);
    NS_ASSERT_INT_EQ(f.rc, -EPROTO);
    free(f.buf);
}

static void test_read_garbage(void)
{
    static const char *const cases[] = {
        "hello\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n12345",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 2\n\n{}",
        "SSH-2.0-OpenSSH_9.2\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fed f = feed(cases[i], strlen(cases[i]), 3, true);
        if (f.rc != -EBADMSG)
            fprintf(stderr, "\n  case %zu: rc %d (%s)\n", i, f.rc, f.err.msg);
        NS_ASSERT_INT_EQ(f.rc, -EBADMSG);
        CU_ASSERT_TRUE(f.err.msg[0] != '\0');
        free(f.buf);
    }
}

static void test_read_close_delimited(void)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\n\r\n{\"version\": 1, \"routes\": []}";
    fed f = FEED(resp, 5, false);
    NS_ASSERT_INT_EQ(f.rc, 0); /* the body ends with the connection */
    free(f.buf);
    f = FEED(resp, 5, true);
    expect_body(&f, "{\"version\": 1, \"routes\": []}");
    free(f.buf);
}

static void test_read_chunked(void)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "a;ext=1\r\n{\"version\"\r\n"
                               "0F\r\n: 5, \"routes\": \r\n"
                               "3\r\n[]}\r\n"
                               "0\r\nX-Trailer: 1\r\n\r\n";
    size_t steps[] = {1, 3, sizeof(resp)};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        fed f = FEED(resp, steps[i], false);
        expect_body(&f, "{\"version\": 5, \"routes\": []}");
        NS_ASSERT_INT_EQ(f.at, sizeof(resp) - 1);
        free(f.buf);
    }
    fed f = FEED("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ver", 4, true);
    NS_ASSERT_INT_EQ(f.rc, -EBADMSG);
    NS_ASSERT_STR_EQ(f.err.msg, "truncated chunked body");
    free(f.buf);
    f = FEED("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 4, false);
    NS_ASSERT_INT_EQ(f.rc, -EBADMSG);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.err.msg, "malformed chunked body"));
    free(f.buf);
}

static void test_read_limits(void)
{
    char head[128];
    int n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
                     PX_DISC_BODY_MAX + 1);
    fed f = feed(head, (size_t)n, 1000, false);
    NS_ASSERT_INT_EQ(f.rc, -EMSGSIZE);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.err.msg, "16 MiB"));
    free(f.buf);

    /* Exactly the limit is fine; one byte more of a close-delimited body is not. */
    static const char close_head[] = "HTTP/1.1 200 OK\r\n\r\n";
    size_t hl = sizeof(close_head) - 1;
    char *big = malloc(hl + PX_DISC_BODY_MAX + 1);
    if (!big)
        abort();
    memcpy(big, close_head, hl);
    memset(big + hl, ' ', PX_DISC_BODY_MAX + 1);
    px_disc_reader r;
    px_disc_reply reply;
    ns_err err = {0};
    px_disc_reader_init(&r);
    NS_ASSERT_INT_EQ(px_disc_read(&r, big, hl + PX_DISC_BODY_MAX, true, &reply, &err), 1);
    NS_ASSERT_INT_EQ(reply.body_len, PX_DISC_BODY_MAX);
    px_disc_reader_init(&r);
    NS_ASSERT_INT_EQ(px_disc_read(&r, big, hl + PX_DISC_BODY_MAX + 1, false, &reply, &err),
                     -EMSGSIZE);
    free(big);

    /* A head that never ends is refused at the parser's limit, not read forever. */
    size_t hlen = PX_H1_MAX_HEAD + 100;
    char *h = malloc(hlen);
    if (!h)
        abort();
    memcpy(h, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(h + 20, 'a', hlen - 20);
    px_disc_reader_init(&r);
    NS_ASSERT_INT_EQ(px_disc_read(&r, h, hlen, false, &reply, &err), -EMSGSIZE);
    free(h);
}

static void test_classify(void)
{
    NS_ASSERT_INT_EQ(px_disc_classify(200, false), PX_DISC_TABLE);
    NS_ASSERT_INT_EQ(px_disc_classify(200, true), PX_DISC_TABLE);
    NS_ASSERT_INT_EQ(px_disc_classify(304, true), PX_DISC_UNCHANGED);
    /* The first request asked for no version: "not modified" answers nothing. */
    NS_ASSERT_INT_EQ(px_disc_classify(304, false), PX_DISC_FAILED);
    NS_ASSERT_INT_EQ(px_disc_classify(503, false), PX_DISC_NOT_READY);
    NS_ASSERT_INT_EQ(px_disc_classify(503, true), PX_DISC_NOT_READY);
    static const int others[] = {201, 204, 301, 302, 400, 404, 429, 500, 502, 504};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        NS_ASSERT_INT_EQ(px_disc_classify(others[i], true), PX_DISC_FAILED);
}

static uint64_t test_rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void test_backoff(void)
{
    static const int64_t steps[] = {1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000};
    /* A random source at 0 gives the bottom of each step's range: half the step. */
    px_backoff b = {0};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
        NS_ASSERT_INT_EQ(px_backoff_next_ms(&b, 0), steps[i] / 2);
    /* A success starts over. */
    px_backoff_reset(&b);
    NS_ASSERT_INT_EQ(px_backoff_next_ms(&b, 0), 500);

    /* Over many schedules each delay stays within [step/2, step] and the jitter covers
     * the range (it spreads proxies that failed together). */
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        int64_t lo = INT64_MAX, hi = 0;
        for (int k = 0; k < 2000; k++) {
            px_backoff s = {.failures = (unsigned)i};
            int64_t d = px_backoff_next_ms(&s, test_rng(&seed));
            NS_ASSERT_INT_EQ(s.failures, i + 1);
            if (d < lo)
                lo = d;
            if (d > hi)
                hi = d;
        }
        CU_ASSERT_TRUE(lo >= steps[i] / 2 && lo < steps[i] / 2 + steps[i] / 20);
        CU_ASSERT_TRUE(hi <= steps[i] && hi > steps[i] - steps[i] / 20);
    }
    /* The count saturates instead of wrapping to the short delays. */
    b.failures = UINT_MAX;
    int64_t d = px_backoff_next_ms(&b, 0);
    NS_ASSERT_INT_EQ(d, 15000);
    NS_ASSERT_INT_EQ(b.failures, UINT_MAX);
}

const ns_test discovery_tests[] = {
    {"address forms", test_address_good},
    {"bad addresses named", test_address_bad},
    {"request lines", test_request},
    {"200 with content-length", test_read_content_length},
    {"truncated and empty answers", test_read_truncated},
    {"304, 503 and other statuses", test_read_statuses},
    {"garbage answers", test_read_garbage},
    {"close-delimited body", test_read_close_delimited},
    {"chunked body", test_read_chunked},
    {"size limits", test_read_limits},
    {"status meanings", test_classify},
    {"backoff schedule", test_backoff},
    {NULL, NULL},
};

/* test_h1edit.c - the proxy's edits of HTTP/1.1 heads: copying a parsed head with some
 * header lines left out and others added (every other byte kept), the hop-by-hop names a
 * "connection: close" replaces, reason phrases, and the proxy's own short answers. */
#include "h1edit.h"
#include "suites.h"

#include <stdlib.h>

/* Parses `text` as one head and rewrites it; returns the new head NUL-terminated (caller
 * frees) or NULL if the head did not parse. */
static char *rewrite(px_h1_kind kind, const char *text, px_h1_skip_fn skip, const char *extra,
                     uint32_t *len)
{
    px_h1_parser p;
    px_h1_msg *m = malloc(sizeof(*m));
    if (!m)
        abort();
    px_h1_init(&p, kind, kind == PX_H1_RESPONSE ? PX_M_GET : PX_M_NONE);
    int rc = px_h1_parse(&p, text, strlen(text), m);
    NS_ASSERT_INT_EQ(rc, strlen(text));
    char *out = NULL;
    if (rc > 0) {
        char *head = px_h1_rewrite_head(text, m, skip, extra, extra ? strlen(extra) : 0, len);
        CU_ASSERT_PTR_NOT_NULL(head);
        if (head) {
            out = malloc(*len + 1);
            if (!out)
                abort();
            memcpy(out, head, *len);
            out[*len] = '\0';
            free(head);
        }
    }
    free(m);
    return out;
}

static bool skip_trace(const char *buf, px_span name)
{
    return px_span_ieq(buf, name, "traceparent") || px_span_ieq(buf, name, "x-b3-traceid");
}

static bool skip_all(const char *buf, px_span name)
{
    return true;
}

static void check(px_h1_kind kind, const char *in, px_h1_skip_fn skip, const char *extra,
                  const char *want)
{
    uint32_t len = 0;
    char *got = rewrite(kind, in, skip, extra, &len);
    NS_ASSERT_STR_EQ(got, want);
    NS_ASSERT_INT_EQ(len, strlen(want));
    /* What comes out is a head the parser accepts in full. */
    if (got) {
        px_h1_parser p;
        px_h1_msg *m = malloc(sizeof(*m));
        if (!m)
            abort();
        px_h1_init(&p, kind, kind == PX_H1_RESPONSE ? PX_M_GET : PX_M_NONE);
        NS_ASSERT_INT_EQ(px_h1_parse(&p, got, len, m), len);
        free(m);
    }
    free(got);
}

static void test_rewrite_request(void)
{
    static const char req[] =
        "GET /a?b=c HTTP/1.1\r\n"
        "Host: shop.default\r\n"
        "Connection: keep-alive\r\n"
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
        "X-Odd:   spaced  value \t\r\n"
        "KEEP-ALIVE: timeout=5\r\n"
        "\r\n";
    /* Nothing skipped, nothing added: the same bytes. */
    check(PX_H1_REQUEST, req, NULL, NULL, req);
    /* Connection headers out (any case), "connection: close" in, the rest untouched
     * (including white space inside values). */
    check(PX_H1_REQUEST, req, px_h1_is_connection_header, "connection: close\r\n",
          "GET /a?b=c HTTP/1.1\r\n"
          "Host: shop.default\r\n"
          "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
          "X-Odd:   spaced  value \t\r\n"
          "connection: close\r\n"
          "\r\n");
    /* Replacing a header: the old line goes, the new one comes last. */
    check(PX_H1_REQUEST, req, skip_trace,
          "traceparent: 00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01\r\n",
          "GET /a?b=c HTTP/1.1\r\n"
          "Host: shop.default\r\n"
          "Connection: keep-alive\r\n"
          "X-Odd:   spaced  value \t\r\n"
          "KEEP-ALIVE: timeout=5\r\n"
          "traceparent: 00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01\r\n"
          "\r\n");
    /* Every header skipped: the request line stays (an HTTP/1.1 request then needs the
     * caller to add Host back, which it does through `extra`). */
    check(PX_H1_REQUEST, req, skip_all, "host: shop\r\n",
          "GET /a?b=c HTTP/1.1\r\nhost: shop\r\n\r\n");
}

static void test_rewrite_edges(void)
{
    /* Leading empty lines before a request are dropped (RFC 9112 section 2.2). */
    check(PX_H1_REQUEST, "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", NULL, NULL,
          "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    /* A head without header lines. */
    check(PX_H1_REQUEST, "GET / HTTP/1.0\r\n\r\n", NULL, "x-a: 1\r\nx-b: 2\r\n",
          "GET / HTTP/1.0\r\nx-a: 1\r\nx-b: 2\r\n\r\n");
    check(PX_H1_REQUEST, "GET / HTTP/1.0\r\n\r\n", skip_all, NULL, "GET / HTTP/1.0\r\n\r\n");
    /* The last header skipped, and the first one. */
    check(PX_H1_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
          px_h1_is_connection_header, NULL, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    check(PX_H1_REQUEST, "GET / HTTP/1.1\r\nConnection: close\r\nHost: a\r\n\r\n",
          px_h1_is_connection_header, NULL, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    /* Repeated headers are each looked at. */
    check(PX_H1_REQUEST,
          "GET / HTTP/1.1\r\nConnection: upgrade\r\nHost: a\r\nconnection: keep-alive\r\n"
          "X: 1\r\n\r\n",
          px_h1_is_connection_header, NULL, "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n");
    /* An empty header value. */
    check(PX_H1_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n", NULL, NULL,
          "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n");
}

static void test_rewrite_response(void)
{
    /* A drain adds "connection: close" to responses and drops the keep-alive fields. */
    check(PX_H1_RESPONSE,
          "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: Keep-Alive\r\n"
          "Keep-Alive: timeout=5, max=100\r\nSet-Cookie: a=b\r\n\r\n",
          px_h1_is_connection_header, "connection: close\r\n",
          "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=b\r\nconnection: close\r\n\r\n");
    /* An empty reason phrase is kept as it was. */
    check(PX_H1_RESPONSE, "HTTP/1.1 204 \r\nX: y\r\n\r\n", NULL, NULL,
          "HTTP/1.1 204 \r\nX: y\r\n\r\n");
}

static void test_connection_header(void)
{
    static const struct {
        const char *name;
        bool is;
    } cases[] = {
        {"Connection", true},         {"connection", true}, {"CONNECTION", true},
        {"Keep-Alive", true},         {"keep-alive", true}, {"Proxy-Connection", false},
        {"Connection2", false},       {"Connectio", false}, {"Keep-Alive-X", false},
        {"Upgrade", false},           {"TE", false},        {"", false},
        {"Transfer-Encoding", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* The name sits inside a larger buffer, as it does in a head. */
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "xx%s: v", cases[i].name);
        CU_ASSERT_TRUE(n > 0);
        px_span s = {.off = 2, .len = (uint32_t)strlen(cases[i].name)};
        if (px_h1_is_connection_header(buf, s) != cases[i].is)
            fprintf(stderr, "\n  \"%s\": expected %d\n", cases[i].name, cases[i].is);
        CU_ASSERT_EQUAL(px_h1_is_connection_header(buf, s), cases[i].is);
    }
}

static void test_reason_phrases(void)
{
    static const struct {
        int status;
        const char *phrase;
    } cases[] = {
        {400, "Bad Request"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {431, "Request Header Fields Too Large"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {504, "Gateway Timeout"},
        {503, "Service Unavailable"},
        {505, "HTTP Version Not Supported"},
        {200, "Error"},
        {500, "Error"},
        {0, "Error"},
        {-1, "Error"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        NS_ASSERT_STR_EQ(px_h1_reason_phrase(cases[i].status), cases[i].phrase);
}

static void test_local_reply(void)
{
    char out[256];
    static const char want[] = "HTTP/1.1 503 Service Unavailable\r\n"
                               "content-type: text/plain\r\n"
                               "content-length: 21\r\n"
                               "connection: close\r\n"
                               "\r\n"
                               "upstream connect: 111";
    size_t n = px_h1_local_reply(503, "upstream connect: 111", out, sizeof(out));
    NS_ASSERT_STR_EQ(out, want);
    NS_ASSERT_INT_EQ(n, sizeof(want) - 1);

    /* A client reads it as a complete response whose body is exactly the text. */
    px_h1_parser p;
    px_h1_msg *m = malloc(sizeof(*m));
    if (!m)
        abort();
    px_h1_init(&p, PX_H1_RESPONSE, PX_M_GET);
    int hl = px_h1_parse(&p, out, n, m);
    CU_ASSERT_TRUE(hl > 0);
    NS_ASSERT_INT_EQ(m->status, 503);
    NS_ASSERT_INT_EQ(m->body, PX_BODY_LENGTH);
    NS_ASSERT_INT_EQ(m->content_length, 21);
    NS_ASSERT_INT_EQ((size_t)hl + m->content_length, n);
    CU_ASSERT_TRUE(m->flags & PX_H1_CONN_CLOSE);
    CU_ASSERT_FALSE(m->flags & PX_H1_KEEP_ALIVE);
    free(m);

    /* An empty body. */
    n = px_h1_local_reply(408, "", out, sizeof(out));
    NS_ASSERT_STR_EQ(out, "HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\n"
                          "content-length: 0\r\nconnection: close\r\n\r\n");
    NS_ASSERT_INT_EQ(n, strlen(out));

    /* It must fit with its NUL: one byte short gives 0, never a cut answer. */
    size_t full = px_h1_local_reply(400, "bad", out, sizeof(out));
    CU_ASSERT_TRUE(full > 0);
    NS_ASSERT_INT_EQ(px_h1_local_reply(400, "bad", out, full), 0);
    NS_ASSERT_INT_EQ(px_h1_local_reply(400, "bad", out, full + 1), full);
    NS_ASSERT_INT_EQ(px_h1_local_reply(400, "bad", out, 10), 0);
}

const ns_test h1edit_tests[] = {
    {"rewrite a request head", test_rewrite_request},
    {"rewrite edge cases", test_rewrite_edges},
    {"rewrite a response head", test_rewrite_response},
    {"connection header names", test_connection_header},
    {"reason phrases", test_reason_phrases},
    {"local replies", test_local_reply},
    {NULL, NULL},
};

/* test_http1.c - the head parser: RFC 9112/9110 examples, framing and persistence,
 * every request-smuggling shape refused with its status, limits, and the incremental
 * property (pieces of any size give what the whole gives); protocol sniffing. */
#include "http1.h"
#include "suites.h"

#include <errno.h>
#include <stdlib.h>

typedef struct parsed {
    int rc;
    int status; /* px_h1_status */
    px_h1_msg m;
} parsed;

static parsed parse_whole(px_h1_kind kind, px_h1_method req, const char *text, size_t len)
{
    parsed r;
    px_h1_parser p;
    px_h1_init(&p, kind, req);
    r.rc = px_h1_parse(&p, text, len, &r.m);
    r.status = px_h1_status(&p);
    return r;
}

/* Feeds text in pieces of `step` bytes into a buffer that is moved (realloc'd to a new
 * address) before every call, as a connection buffer that grows would be. */
static parsed parse_pieces(px_h1_kind kind, px_h1_method req, const char *text, size_t len,
                           size_t step)
{
    parsed r = {0};
    px_h1_parser p;
    px_h1_init(&p, kind, req);
    char *buf = NULL;
    size_t have = 0;
    r.rc = 0;
    while (have < len) {
        size_t n = len - have < step ? len - have : step;
        char *moved = malloc(have + n);
        if (!moved)
            abort();
        if (have)
            memcpy(moved, buf, have);
        free(buf);
        buf = moved;
        memcpy(buf + have, text + have, n);
        have += n;
        r.rc = px_h1_parse(&p, buf, have, &r.m);
        if (r.rc != 0)
            break;
    }
    r.status = px_h1_status(&p);
    free(buf);
    return r;
}

static bool span_eq(px_span a, px_span b)
{
    return a.off == b.off && a.len == b.len;
}

/* Everything a caller may read from a result is the same. */
static bool same(const parsed *a, const parsed *b)
{
    if (a->rc != b->rc || a->status != b->status)
        return false;
    if (a->rc <= 0)
        return true;
    const px_h1_msg *x = &a->m, *y = &b->m;
    if (x->start != y->start || x->head_len != y->head_len || x->minor != y->minor ||
        x->method_id != y->method_id || !span_eq(x->method, y->method) ||
        !span_eq(x->target, y->target) || x->host != y->host || x->status != y->status ||
        !span_eq(x->reason, y->reason) || x->body != y->body ||
        x->content_length != y->content_length || x->flags != y->flags ||
        x->nheaders != y->nheaders)
        return false;
    for (unsigned i = 0; i < x->nheaders; i++)
        if (!span_eq(x->headers[i].name, y->headers[i].name) ||
            !span_eq(x->headers[i].value, y->headers[i].value))
            return false;
    return true;
}

/* Parses whole, then in pieces of 1, 2, 3, 7 and 64 bytes; all must agree. */
static parsed parse_all_ways(px_h1_kind kind, px_h1_method req, const char *text)
{
    size_t len = strlen(text);
    parsed whole = parse_whole(kind, req, text, len);
    static const size_t steps[] = {1, 2, 3, 7, 64};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        parsed piece = parse_pieces(kind, req, text, len, steps[i]);
        if (!same(&whole, &piece)) {
            fprintf(stderr, "\n  step %zu: rc %d/%d status %d/%d for %.60s\n", steps[i], piece.rc,
                    whole.rc, piece.status, whole.status, text);
            CU_FAIL("pieces and whole disagree");
        }
    }
    return whole;
}

static parsed req(const char *text)
{
    return parse_all_ways(PX_H1_REQUEST, PX_M_NONE, text);
}

static parsed resp(px_h1_method method, const char *text)
{
    return parse_all_ways(PX_H1_RESPONSE, method, text);
}

/* The header value as a string (static buffer, for assertions). */
static const char *val(const char *buf, const px_h1_msg *m, const char *name)
{
    static char out[256];
    int i = px_h1_find(m, buf, name, 0);
    if (i < 0)
        return NULL;
    px_span v = m->headers[i].value;
    snprintf(out, sizeof out, "%.*s", (int)v.len, buf + v.off);
    return out;
}

static const char *str(const char *buf, px_span s)
{
    static char out[256];
    snprintf(out, sizeof out, "%.*s", (int)s.len, buf + s.off);
    return out;
}

static void test_rfc9110_request(void)
{
    /* RFC 9110 section 6.1 / RFC 9112 section 2.1 example. */
    const char *t = "GET /hello.txt HTTP/1.1\r\n"
                    "User-Agent: curl/7.64.1\r\n"
                    "Host: www.example.com\r\n"
                    "Accept-Language: en, mi\r\n"
                    "\r\n";
    parsed r = req(t);
    NS_ASSERT_INT_EQ(r.rc, (int)strlen(t));
    NS_ASSERT_INT_EQ(r.m.head_len, strlen(t));
    NS_ASSERT_STR_EQ(str(t, r.m.method), "GET");
    NS_ASSERT_INT_EQ(r.m.method_id, PX_M_GET);
    NS_ASSERT_STR_EQ(str(t, r.m.target), "/hello.txt");
    NS_ASSERT_INT_EQ(r.m.minor, 1);
    NS_ASSERT_INT_EQ(r.m.nheaders, 3);
    NS_ASSERT_INT_EQ(r.m.host, 1);
    NS_ASSERT_STR_EQ(str(t, r.m.headers[r.m.host].value), "www.example.com");
    NS_ASSERT_STR_EQ(str(t, r.m.headers[0].name), "User-Agent");
    NS_ASSERT_STR_EQ(val(t, &r.m, "accept-language"), "en, mi");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_NONE);
    CU_ASSERT_TRUE(r.m.flags & PX_H1_KEEP_ALIVE);
    CU_ASSERT_FALSE(r.m.flags & (PX_H1_UPGRADE | PX_H1_EXPECT_CONTINUE | PX_H1_CONN_CLOSE));
}

static void test_rfc9110_response(void)
{
    const char *head = "HTTP/1.1 200 OK\r\n"
                       "Date: Mon, 27 Jul 2009 12:28:53 GMT\r\n"
                       "Server: Apache\r\n"
                       "Last-Modified: Wed, 22 Jul 2009 19:15:56 GMT\r\n"
                       "ETag: \"34aa387-d-1568eb00\"\r\n"
                       "Accept-Ranges: bytes\r\n"
                       "Content-Length: 51\r\n"
                       "Vary: Accept-Encoding\r\n"
                       "Content-Type: text/plain\r\n"
                       "\r\n";
    const char *body = "Hello World! My content includes a trailing CRLF.\r\n";
    char t[1024];
    snprintf(t, sizeof t, "%s%s", head, body);
    parsed r = resp(PX_M_GET, t);
    NS_ASSERT_INT_EQ(r.rc, (int)strlen(head));
    NS_ASSERT_INT_EQ(r.m.status, 200);
    NS_ASSERT_STR_EQ(str(t, r.m.reason), "OK");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_LENGTH);
    NS_ASSERT_INT_EQ(r.m.content_length, strlen(body));
    NS_ASSERT_STR_EQ(val(t, &r.m, "ETAG"), "\"34aa387-d-1568eb00\"");
    CU_ASSERT_TRUE(r.m.flags & PX_H1_KEEP_ALIVE);
    NS_ASSERT_INT_EQ(r.m.nheaders, 8);
}

static void test_target_forms(void)
{
    /* RFC 9112 section 3.2: origin, absolute, authority and asterisk forms. */
    static const struct {
        const char *text, *target;
        px_h1_method m;
    } cases[] = {
        {"GET /where?q=now HTTP/1.1\r\nHost: www.example.org\r\n\r\n", "/where?q=now", PX_M_GET},
        {"GET http://www.example.org/pub/WWW/TheProject.html HTTP/1.1\r\nHost: "
         "www.example.org\r\n\r\n",
         "http://www.example.org/pub/WWW/TheProject.html", PX_M_GET},
        {"CONNECT www.example.com:80 HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
         "www.example.com:80", PX_M_CONNECT},
        {"OPTIONS * HTTP/1.1\r\nHost: www.example.org:8001\r\n\r\n", "*", PX_M_OPTIONS},
        {"M-SEARCH * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\n\r\n", "*", PX_M_OTHER},
        {"PROPFIND /a%20b HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "/a%20b", PX_M_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parsed r = req(cases[i].text);
        CU_ASSERT_TRUE(r.rc > 0);
        NS_ASSERT_STR_EQ(str(cases[i].text, r.m.target), cases[i].target);
        NS_ASSERT_INT_EQ(r.m.method_id, cases[i].m);
    }
}

static void test_framing_requests(void)
{
    parsed r = req("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_LENGTH);
    NS_ASSERT_INT_EQ(r.m.content_length, 42);
    r = req("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_NONE);
    r = req("POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_CHUNKED);
    r = req("POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tChunked \r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_CHUNKED);
    /* Identical repeats are one value (RFC 9110 section 8.6). */
    r = req("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_LENGTH);
    NS_ASSERT_INT_EQ(r.m.content_length, 7);
    r = req("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.content_length, 7);
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_LENGTH);
    /* Largest accepted length. */
    r = req("PUT /a HTTP/1.1\r\nHost: a\r\nContent-Length: 922337203685477580\r\n\r\n");
    CU_ASSERT_TRUE(r.rc > 0);
    CU_ASSERT_TRUE(r.m.content_length == 922337203685477580ull);
    /* A GET with a body is legal framing and must be followed, or the body would be read
     * as the next request. */
    r = req("GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_LENGTH);
    /* HTTP/1.0 needs no Host. */
    r = req("GET / HTTP/1.0\r\n\r\n");
    CU_ASSERT_TRUE(r.rc > 0);
    NS_ASSERT_INT_EQ(r.m.host, -1);
    NS_ASSERT_INT_EQ(r.m.minor, 0);
}

static void test_persistence_and_flags(void)
{
    parsed r = req("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    CU_ASSERT_FALSE(r.m.flags & PX_H1_KEEP_ALIVE);
    CU_ASSERT_TRUE(r.m.flags & PX_H1_CONN_CLOSE);
    r = req("GET / HTTP/1.0\r\n\r\n");
    CU_ASSERT_FALSE(r.m.flags & PX_H1_KEEP_ALIVE);
    r = req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    CU_ASSERT_TRUE(r.m.flags & PX_H1_KEEP_ALIVE);
    r = req("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n");
    CU_ASSERT_FALSE(r.m.flags & PX_H1_KEEP_ALIVE);
    /* RFC 6455 handshake. */
    r = req("GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n");
    CU_ASSERT_TRUE(r.m.flags & PX_H1_UPGRADE);
    /* Upgrade without the Connection token is not an upgrade (and vice versa). */
    r = req("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
    CU_ASSERT_FALSE(r.m.flags & PX_H1_UPGRADE);
    r = req("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\r\n");
    CU_ASSERT_FALSE(r.m.flags & PX_H1_UPGRADE);
    r = req("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 9\r\n\r\n");
    CU_ASSERT_TRUE(r.m.flags & PX_H1_EXPECT_CONTINUE);
    r = req("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n");
    CU_ASSERT_FALSE(r.m.flags & PX_H1_EXPECT_CONTINUE);
}

static void test_framing_responses(void)
{
    parsed r = resp(PX_M_GET, "HTTP/1.1 204 No Content\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_NONE);
    CU_ASSERT_TRUE(r.m.flags & PX_H1_KEEP_ALIVE);
    r = resp(PX_M_GET, "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_NONE);
    r = resp(PX_M_HEAD, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_NONE);
    r = resp(PX_M_GET, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_LENGTH);
    r = resp(PX_M_GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_CHUNKED);
    CU_ASSERT_TRUE(r.m.flags & PX_H1_KEEP_ALIVE);
    r = resp(PX_M_GET, "HTTP/1.1 200 OK\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_CLOSE);
    CU_ASSERT_FALSE(r.m.flags & PX_H1_KEEP_ALIVE);
    /* Chunked not last: only the close ends it (RFC 9112 section 6.3). */
    r = resp(PX_M_GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_CLOSE);
    r = resp(PX_M_GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_CHUNKED);
    r = resp(PX_M_GET, "HTTP/1.1 100 Continue\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_NONE);
    CU_ASSERT_TRUE(r.m.flags & PX_H1_INTERIM);
    r = resp(PX_M_GET, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_TUNNEL);
    CU_ASSERT_FALSE(r.m.flags & PX_H1_INTERIM);
    r = resp(PX_M_CONNECT, "HTTP/1.1 200 Connection established\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_TUNNEL);
    r = resp(PX_M_CONNECT, "HTTP/1.1 407 Proxy Authentication Required\r\n"
                           "Content-Length: 0\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_NONE);
    r = resp(PX_M_GET, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n");
    CU_ASSERT_TRUE(r.m.flags & PX_H1_KEEP_ALIVE);
    NS_ASSERT_INT_EQ(r.m.minor, 0);
    r = resp(PX_M_GET, "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.body, PX_BODY_CLOSE);
    /* No reason phrase, with and without its SP. */
    r = resp(PX_M_GET, "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.status, 200);
    NS_ASSERT_INT_EQ(r.m.reason.len, 0);
    r = resp(PX_M_GET, "HTTP/1.1 503 \r\nContent-Length: 0\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.status, 503);
    NS_ASSERT_INT_EQ(r.m.reason.len, 0);
}

/* Every shape RFC 9112 section 11.2 and the usual smuggling write-ups describe. */
static void test_smuggling_refused(void)
{
    static const struct {
        const char *text;
        int rc, status;
    } cases[] = {
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
         -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
         -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", -EBADMSG,
         400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", -EBADMSG,
         400},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", -EBADMSG,
         400},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
         "Transfer-Encoding: chunked\r\n\r\n",
         -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", -EBADMSG,
         400},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", -ENOTSUP, 501},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n", -EBADMSG,
         400},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nX: a\rTransfer-Encoding: chunked\r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nX: a\nTransfer-Encoding: chunked\r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\nHost: a\r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\n\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\n\r\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nX\r: y\r\n\r\n", -EBADMSG, 400},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", -EBADMSG, 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", -EBADMSG, 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", -EBADMSG, 400},
        {"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", -EBADMSG, 400},
        {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", -EBADMSG, 400},
        {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", -EBADMSG, 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n", -EBADMSG, 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", -EBADMSG, 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX(y): a\r\n\r\n", -EBADMSG, 400},
        {"GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n", -EBADMSG, 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", -EBADMSG, 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: a\r\n\r\n", -EBADMSG, 400},
        {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", -EBADMSG, 400},
        {"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", -EBADMSG, 400},
        {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", -EBADMSG, 400},
        {"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", -EBADMSG, 400},
        {"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", -EBADMSG, 400},
        {"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n", -EBADMSG, 400},
        {" GET / HTTP/1.1\r\nHost: a\r\n\r\n", -EBADMSG, 400},
        {"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", -EBADMSG, 400},
        {"GET /\r\n\r\n", -EBADMSG, 400},
        {"GET / HTTX/1.1\r\nHost: a\r\n\r\n", -EBADMSG, 400},
        {"GET / HTTP/1.x\r\nHost: a\r\n\r\n", -EBADMSG, 400},
        {"GET / http/1.1\r\nHost: a\r\n\r\n", -EBADMSG, 400},
        {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", -ENOTSUP, 505},
        {"GET / HTTP/1.2\r\nHost: a\r\n\r\n", -ENOTSUP, 505},
        {"GET / HTTP/0.9\r\nHost: a\r\n\r\n", -ENOTSUP, 505},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *t = cases[i].text;
        parsed r = req(t);
        if (r.rc != cases[i].rc || r.status != cases[i].status)
            fprintf(stderr, "\n  case %zu: rc %d status %d for %s\n", i, r.rc, r.status, t);
        NS_ASSERT_INT_EQ(r.rc, cases[i].rc);
        NS_ASSERT_INT_EQ(r.status, cases[i].status);
    }
    /* A NUL in a value, with the message's real length. */
    static const char nul[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
    parsed r = parse_whole(PX_H1_REQUEST, PX_M_NONE, nul, sizeof nul - 1);
    NS_ASSERT_INT_EQ(r.rc, -EBADMSG);
    parsed p = parse_pieces(PX_H1_REQUEST, PX_M_NONE, nul, sizeof nul - 1, 1);
    NS_ASSERT_INT_EQ(p.rc, -EBADMSG);
}

static void test_smuggling_responses(void)
{
    static const char *bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: y\r\n\tfolded\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 O\rK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 099 Odd\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1  200 OK\r\n\r\n",
        "HTTP/1.1 abc OK\r\n\r\n",
        "HTTP/2 200\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        parsed r = resp(PX_M_GET, bad[i]);
        if (r.rc >= 0)
            fprintf(stderr, "\n  response case %zu accepted: %s\n", i, bad[i]);
        CU_ASSERT_TRUE(r.rc < 0);
        CU_ASSERT_TRUE(r.status >= 400);
    }
}

static void test_limits(void)
{
    /* PX_H1_MAX_HEADERS fields pass, one more is 431. */
    size_t cap = 64 * 1024;
    char *t = malloc(cap);
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = (size_t)snprintf(t, cap, "GET / HTTP/1.1\r\nHost: a\r\n");
        for (int i = 1; i < PX_H1_MAX_HEADERS + extra; i++)
            n += (size_t)snprintf(t + n, cap - n, "X-%d: %d\r\n", i, i);
        n += (size_t)snprintf(t + n, cap - n, "\r\n");
        parsed r = parse_whole(PX_H1_REQUEST, PX_M_NONE, t, n);
        if (!extra) {
            NS_ASSERT_INT_EQ(r.rc, (int)n);
            NS_ASSERT_INT_EQ(r.m.nheaders, PX_H1_MAX_HEADERS);
        } else {
            NS_ASSERT_INT_EQ(r.rc, -EMSGSIZE);
            NS_ASSERT_INT_EQ(r.status, 431);
        }
    }
    free(t);

    /* A head of exactly the limit passes; one byte more is refused, and refused as soon as
     * the limit is reached, without waiting for an end that may never come. */
    px_h1_parser p;
    px_h1_msg m;
    for (int over = 0; over <= 1; over++) {
        size_t max = 1024, len = max + (size_t)over;
        t = malloc(len + 100);
        size_t n = (size_t)snprintf(t, len, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
        memset(t + n, 'v', len - n - 4);
        memcpy(t + len - 4, "\r\n\r\n", 4);
        px_h1_init(&p, PX_H1_REQUEST, PX_M_NONE);
        px_h1_set_max_head(&p, (uint32_t)max);
        int rc = px_h1_parse(&p, t, len, &m);
        NS_ASSERT_INT_EQ(rc, over ? -EMSGSIZE : (int)len);
        free(t);
    }
    t = malloc(PX_H1_MAX_HEAD + 10);
    size_t n = (size_t)snprintf(t, 64, "GET /");
    memset(t + n, 'a', PX_H1_MAX_HEAD + 10 - n);
    px_h1_init(&p, PX_H1_REQUEST, PX_M_NONE);
    NS_ASSERT_INT_EQ(px_h1_parse(&p, t, PX_H1_MAX_HEAD - 1, &m), 0);
    NS_ASSERT_INT_EQ(px_h1_parse(&p, t, PX_H1_MAX_HEAD, &m), -EMSGSIZE);
    NS_ASSERT_INT_EQ(px_h1_status(&p), 431);
    CU_ASSERT_TRUE(strlen(px_h1_reason(&p)) > 0);
    free(t);
}

static void test_state_after_result(void)
{
    const char *t = "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\n";
    px_h1_parser p;
    px_h1_msg m;
    px_h1_init(&p, PX_H1_REQUEST, PX_M_NONE);
    int rc = px_h1_parse(&p, t, strlen(t), &m);
    NS_ASSERT_INT_EQ(rc, 27);
    NS_ASSERT_INT_EQ(px_h1_parse(&p, t, strlen(t), &m), 27);
    NS_ASSERT_INT_EQ(px_h1_status(&p), 0);
    NS_ASSERT_STR_EQ(px_h1_reason(&p), "");
    /* The next pipelined request starts at head_len and needs a fresh parser. */
    px_h1_init(&p, PX_H1_REQUEST, PX_M_NONE);
    NS_ASSERT_INT_EQ(px_h1_parse(&p, t + rc, strlen(t) - (size_t)rc, &m), 0);

    /* Errors stick. */
    const char *bad = "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n";
    px_h1_init(&p, PX_H1_REQUEST, PX_M_NONE);
    NS_ASSERT_INT_EQ(px_h1_parse(&p, bad, strlen(bad), &m), -EBADMSG);
    NS_ASSERT_INT_EQ(px_h1_parse(&p, bad, strlen(bad), &m), -EBADMSG);
    NS_ASSERT_STR_EQ(px_h1_reason(&p), "white space before colon");
}

static void test_leading_empty_lines(void)
{
    const char *t = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    parsed r = req(t);
    NS_ASSERT_INT_EQ(r.rc, (int)strlen(t));
    NS_ASSERT_INT_EQ(r.m.start, 4);
    NS_ASSERT_STR_EQ(str(t, r.m.method), "GET");
}

static void test_value_trimming_and_find(void)
{
    const char *t = "GET / HTTP/1.1\r\nHost:a\r\nX-A: \t one two \t\r\nX-B:\r\nx-a: 2\r\n"
                    "X-Obs: caf\xc3\xa9\r\n\r\n";
    parsed r = req(t);
    CU_ASSERT_TRUE(r.rc > 0);
    NS_ASSERT_STR_EQ(val(t, &r.m, "host"), "a");
    NS_ASSERT_STR_EQ(val(t, &r.m, "x-a"), "one two");
    NS_ASSERT_STR_EQ(val(t, &r.m, "x-b"), "");
    NS_ASSERT_STR_EQ(val(t, &r.m, "x-obs"), "caf\xc3\xa9");
    int first = px_h1_find(&r.m, t, "X-A", 0);
    NS_ASSERT_INT_EQ(first, 1);
    NS_ASSERT_INT_EQ(px_h1_find(&r.m, t, "x-a", first + 1), 3);
    NS_ASSERT_INT_EQ(px_h1_find(&r.m, t, "x-a", 4), -1);
    NS_ASSERT_INT_EQ(px_h1_find(&r.m, t, "x-c", 0), -1);
    CU_ASSERT_TRUE(px_span_ieq(t, r.m.headers[3].name, "x-a"));
    CU_ASSERT_FALSE(px_span_ieq(t, r.m.headers[3].name, "x-ab"));
}

static void test_methods(void)
{
    CU_ASSERT_TRUE(px_h1_method_idempotent(PX_M_GET));
    CU_ASSERT_TRUE(px_h1_method_idempotent(PX_M_HEAD));
    CU_ASSERT_TRUE(px_h1_method_idempotent(PX_M_PUT));
    CU_ASSERT_TRUE(px_h1_method_idempotent(PX_M_DELETE));
    CU_ASSERT_TRUE(px_h1_method_idempotent(PX_M_OPTIONS));
    CU_ASSERT_TRUE(px_h1_method_idempotent(PX_M_TRACE));
    CU_ASSERT_FALSE(px_h1_method_idempotent(PX_M_POST));
    CU_ASSERT_FALSE(px_h1_method_idempotent(PX_M_PATCH));
    CU_ASSERT_FALSE(px_h1_method_idempotent(PX_M_CONNECT));
    CU_ASSERT_FALSE(px_h1_method_idempotent(PX_M_OTHER));
    /* Methods are case-sensitive: "get" is some other method. */
    parsed r = req("get / HTTP/1.1\r\nHost: a\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.method_id, PX_M_OTHER);
    r = req("DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.method_id, PX_M_DELETE);
    r = req("PATCH /x HTTP/1.1\r\nHost: a\r\n\r\n");
    NS_ASSERT_INT_EQ(r.m.method_id, PX_M_PATCH);
}

/* Random splits over a pipeline of several messages: each head found where the whole
 * buffer finds it. */
static void test_random_splits(void)
{
    static const char *msgs[] = {
        "GET /a HTTP/1.1\r\nHost: svc\r\nAccept: */*\r\nTraceparent: "
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n",
        "POST /b HTTP/1.1\r\nHost: svc:8080\r\nContent-Length: 11, 11\r\nConnection: close\r\n\r\n",
        "PUT /c HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nExpect: "
        "100-continue\r\n\r\n",
        "GET /d HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
    };
    unsigned seed = 12345;
    for (size_t k = 0; k < sizeof msgs / sizeof msgs[0]; k++) {
        size_t len = strlen(msgs[k]);
        parsed whole = parse_whole(PX_H1_REQUEST, PX_M_NONE, msgs[k], len);
        for (int round = 0; round < 200; round++) {
            px_h1_parser p;
            px_h1_msg m;
            px_h1_init(&p, PX_H1_REQUEST, PX_M_NONE);
            size_t have = 0;
            int rc = 0;
            while (have < len && rc == 0) {
                seed = seed * 1103515245u + 12345u;
                have += 1 + (seed >> 16) % 17;
                if (have > len)
                    have = len;
                rc = px_h1_parse(&p, msgs[k], have, &m);
            }
            parsed got = {.rc = rc, .status = px_h1_status(&p), .m = m};
            CU_ASSERT_TRUE(same(&whole, &got));
        }
    }
}

/* Every byte value at every offset of a field value (the value scan reads 8 bytes at a
 * time): accepted exactly when RFC 9110 allows it (VCHAR, obs-text, SP, HTAB). */
static void test_value_bytes(void)
{
    char t[128];
    for (int b = 0; b < 256; b++) {
        bool allowed = (b >= 0x20 && b != 0x7f) || b == '\t';
        for (int pos = 0; pos < 20; pos++) {
            char v[27];
            memcpy(v, "abcdefghijklmnopqrstuvwxyz", 27);
            v[pos] = (char)b;
            size_t n = (size_t)snprintf(t, sizeof t, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
            memcpy(t + n, v, 26);
            n += 26;
            memcpy(t + n, "\r\n\r\n", 4);
            n += 4;
            parsed r = parse_whole(PX_H1_REQUEST, PX_M_NONE, t, n);
            if ((r.rc > 0) != allowed)
                fprintf(stderr, "\n  byte 0x%02x at %d: rc %d\n", b, pos, r.rc);
            CU_ASSERT_EQUAL(r.rc > 0, allowed);
        }
    }
}

const ns_test http1_tests[] = {
    {"every byte in a value", test_value_bytes},
    {"rfc9110 request", test_rfc9110_request},
    {"rfc9110 response", test_rfc9110_response},
    {"request target forms", test_target_forms},
    {"request framing", test_framing_requests},
    {"persistence, upgrade, expect", test_persistence_and_flags},
    {"response framing", test_framing_responses},
    {"request smuggling refused", test_smuggling_refused},
    {"bad responses refused", test_smuggling_responses},
    {"size and count limits", test_limits},
    {"results stick", test_state_after_result},
    {"leading empty lines", test_leading_empty_lines},
    {"values trimmed, find", test_value_trimming_and_find},
    {"methods", test_methods},
    {"random splits", test_random_splits},
    {NULL, NULL},
};

static void test_sniff(void)
{
    static const struct {
        const char *text;
        px_sniff want;
    } cases[] = {
        {"", PX_SNIFF_MORE},
        {"G", PX_SNIFF_MORE},
        {"GET", PX_SNIFF_MORE},
        {"GET ", PX_SNIFF_MORE},
        {"GET /index", PX_SNIFF_MORE},
        {"GET / ", PX_SNIFF_MORE},
        {"GET / HTTP/1", PX_SNIFF_MORE},
        {"GET / HTTP/1.", PX_SNIFF_HTTP1},
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", PX_SNIFF_HTTP1},
        {"BREW /pot HTTP/1.1\r\n", PX_SNIFF_HTTP1},
        {"OPTIONS * HTTP/1.0\r\n", PX_SNIFF_HTTP1},
        {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", PX_SNIFF_OTHER}, /* TLS */
        {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", PX_SNIFF_OTHER},             /* h2 preface */
        {"SSH-2.0-OpenSSH_9.2\r\n", PX_SNIFF_OTHER},
        {"SET key value\r\n", PX_SNIFF_OTHER}, /* redis inline command */
        {"GET key\r\n", PX_SNIFF_OTHER},
        {"PING\r\n", PX_SNIFF_OTHER},
        {"*1\r\n$4\r\nPING\r\n", PX_SNIFF_OTHER},
        {"get / HTTP/1.1\r\n", PX_SNIFF_OTHER},
        {"GET  / HTTP/1.1\r\n", PX_SNIFF_OTHER},
        {"GET / HTTP/2\r\n", PX_SNIFF_OTHER},
        {"ABCDEFGHIJKLMNOPQRSTU / HTTP/1.1\r\n", PX_SNIFF_OTHER},
        {"ABCDEFGHIJKLMNOPQRST / HTTP/1.1\r\n", PX_SNIFF_HTTP1},
        {"\0\0\0\x08\x04\xd2\x16\x2f", PX_SNIFF_OTHER}, /* postgres SSLRequest */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].text);
        if (i == sizeof cases / sizeof cases[0] - 1)
            len = 8;
        px_sniff got = px_h1_sniff(cases[i].text, len);
        if (got != cases[i].want)
            fprintf(stderr, "\n  sniff case %zu: got %d\n", i, got);
        NS_ASSERT_INT_EQ(got, cases[i].want);
    }
}

static void test_sniff_long_lines(void)
{
    /* A very long target decides at the bound: HTTP for well-known methods only. */
    size_t len = PX_H1_SNIFF_MAX + 100;
    char *t = malloc(len);
    memcpy(t, "GET /", 5);
    memset(t + 5, 'a', len - 5);
    NS_ASSERT_INT_EQ(px_h1_sniff(t, PX_H1_SNIFF_MAX - 1), PX_SNIFF_MORE);
    NS_ASSERT_INT_EQ(px_h1_sniff(t, len), PX_SNIFF_HTTP1);
    memcpy(t, "FOO /", 5);
    NS_ASSERT_INT_EQ(px_h1_sniff(t, len), PX_SNIFF_OTHER);
    free(t);
}

const ns_test sniff_tests[] = {
    {"protocols", test_sniff},
    {"bounded look-ahead", test_sniff_long_lines},
    {NULL, NULL},
};

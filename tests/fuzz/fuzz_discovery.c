/* fuzz_discovery.c - libFuzzer target for the client side of route discovery
 * (proxy/discovery.h).
 *
 * The first input byte picks the mode. Bit 0 set: the rest is a --discovery-address;
 * whatever px_disc_parse_address accepts must give a request that the proxy's own HTTP
 * parser reads back as a GET of /v1/routes with that Host. Bit 0 clear: the second byte
 * seeds the split of the rest, an operator's answer, into arbitrary pieces as recv()
 * might return them, and bit 1 says whether the server then closes. px_disc_read must
 * decide the same way fed in pieces, fed at once, and fed at once with the close; a 200
 * body it hands out must lie inside what was fed and then goes to px_routes_parse, as
 * discovery_client.c does. Any disagreement aborts (a crash for libFuzzer), as do
 * out-of-bounds reads (ASan). */
#include "discovery.h"
#include "routes.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Inputs up to this size are fed through buffers of exactly the bytes received so far
 * (ASan then sees any read past them); larger ones through one buffer, to keep runs fast. */
#define EXACT_MAX 4096

typedef struct outcome {
    int rc;
    px_disc_reply reply;
    size_t at; /* bytes fed when the reader decided */
    char *buf; /* the buffer after the read (a chunked body is decoded in it) */
    ns_err err;
    px_h1_body body; /* once decided: the framing of the head */
    uint64_t content_length;
} outcome;

static void decided(outcome *o, const px_disc_reader *r)
{
    if (o->rc == 1) {
        o->body = r->m.body;
        o->content_length = r->m.content_length;
    }
}

static char *grow(char *old, size_t have, const uint8_t *data, size_t len)
{
    char *b = malloc(len ? len : 1);
    if (!b)
        abort();
    if (have)
        memcpy(b, old, have);
    memcpy(b + have, data + have, len - have);
    free(old);
    return b;
}

static void check_outcome(const outcome *o, bool closed)
{
    if (o->rc < 0) {
        if ((o->rc != -EBADMSG && o->rc != -EMSGSIZE && o->rc != -EPROTO) || o->err.code != o->rc ||
            o->err.msg[0] == '\0')
            abort();
        return;
    }
    /* At the close the reader always decides. */
    if (o->rc == 0) {
        if (closed)
            abort();
        return;
    }
    const px_disc_reply *r = &o->reply;
    if (o->rc != 1 || r->status < 200 || r->status > 999 || r->body_off == 0 ||
        r->body_off > o->at || r->body_len > o->at - r->body_off ||
        (r->status != 200 && r->body_len != 0))
        abort();
    px_disc_outcome c = px_disc_classify(r->status, true);
    if ((c == PX_DISC_TABLE) != (r->status == 200) ||
        (c == PX_DISC_UNCHANGED) != (r->status == 304) ||
        (c == PX_DISC_NOT_READY) != (r->status == 503) ||
        px_disc_classify(r->status, false) == PX_DISC_UNCHANGED)
        abort();
}

/* Feeds `data` in pieces whose sizes come from `seed`, then, if still undecided and the
 * server closes, once more with no new bytes and eof (what recv() returning 0 gives). */
static outcome feed_pieces(const uint8_t *data, size_t size, uint8_t seed, bool closes)
{
    outcome o = {0};
    px_disc_reader r;
    px_disc_reader_init(&r);
    bool exact = size <= EXACT_MAX;
    if (!exact)
        o.buf = grow(NULL, 0, data, size);
    uint32_t x = 0x9e3779b9u ^ seed;
    /* Pieces of 1 .. 2^k bytes, k from the seed: from byte by byte to whole reads. */
    uint32_t span = 1u << (seed >> 4);
    size_t have = 0;
    while (have < size) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        size_t n = 1 + x % span;
        n = n < size - have ? n : size - have;
        if (exact)
            o.buf = grow(o.buf, have, data, have + n);
        have += n;
        o.rc = px_disc_read(&r, o.buf, have, false, &o.reply, &o.err);
        o.at = have;
        decided(&o, &r);
        if (o.rc != 0)
            return o;
    }
    if (closes) {
        if (!o.buf)
            o.buf = grow(NULL, 0, data, 0);
        o.rc = px_disc_read(&r, o.buf, have, true, &o.reply, &o.err);
        decided(&o, &r);
    }
    return o;
}

static outcome feed_whole(const uint8_t *data, size_t size, bool closes, bool eof_at_once)
{
    outcome o = {0};
    px_disc_reader r;
    px_disc_reader_init(&r);
    o.buf = grow(NULL, 0, data, size);
    o.at = size;
    o.rc = px_disc_read(&r, o.buf, size, eof_at_once, &o.reply, &o.err);
    if (o.rc == 0 && closes)
        o.rc = px_disc_read(&r, o.buf, size, true, &o.reply, &o.err);
    decided(&o, &r);
    return o;
}

static void same_outcome(const outcome *a, const outcome *b)
{
    if (a->rc != b->rc)
        abort();
    if (a->rc != 1)
        return;
    const px_disc_reply *x = &a->reply, *y = &b->reply;
    if (x->status != y->status || x->body_off != y->body_off || x->body_len != y->body_len ||
        memcmp(a->buf + x->body_off, b->buf + y->body_off, x->body_len) != 0)
        abort();
}

static int hex(uint8_t c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* The chunk data of a chunked body that px_chunked accepted, written independently of
 * discovery.c's in-place decoding: size line (extensions skipped), data, CRLF. */
static size_t ref_dechunk(const uint8_t *b, size_t len, uint8_t *out)
{
    size_t in = 0, n = 0;
    for (;;) {
        uint64_t size = 0;
        for (; in < len && hex(b[in]) >= 0; in++)
            size = size * 16 + (uint64_t)hex(b[in]);
        const uint8_t *lf = memchr(b + in, '\n', len - in);
        if (!lf)
            abort();
        in = (size_t)(lf - b) + 1;
        if (size == 0)
            return n;
        if (size > len - in)
            abort();
        memcpy(out + n, b + in, (size_t)size);
        n += (size_t)size;
        in += (size_t)size + 2;
    }
}

/* A 200's body is what its framing says, in the bytes as they arrived. */
static void check_body(const outcome *o, const uint8_t *data)
{
    const px_disc_reply *r = &o->reply;
    const char *body = o->buf + r->body_off;
    switch (o->body) {
    case PX_BODY_NONE:
        if (r->body_len != 0)
            abort();
        break;
    case PX_BODY_LENGTH:
        if (o->content_length > PX_DISC_BODY_MAX || r->body_len != o->content_length)
            abort();
        break;
    case PX_BODY_CLOSE:
        if (r->body_len != o->at - r->body_off)
            abort();
        break;
    case PX_BODY_CHUNKED: {
        const uint8_t *raw = data + r->body_off;
        size_t avail = o->at - r->body_off, used = 0;
        px_chunked c;
        px_chunked_init(&c);
        if (px_chunked_feed(&c, (const char *)raw, avail, &used) != 1 || c.data != r->body_len)
            abort();
        uint8_t *want = malloc(used ? used : 1);
        if (!want)
            abort();
        size_t n = ref_dechunk(raw, used, want);
        if (n != r->body_len || memcmp(want, body, n) != 0)
            abort();
        free(want);
        return;
    }
    default:
        abort();
    }
    if (memcmp(body, data + r->body_off, r->body_len) != 0)
        abort();
}

/* Undecided before the close: only a close-delimited 200 body, or a response not yet
 * complete, may leave the reader waiting. */
static void check_undecided(const uint8_t *data, size_t size)
{
    static px_h1_msg m;
    px_h1_parser p;
    px_h1_init(&p, PX_H1_RESPONSE, PX_M_GET);
    int head = px_h1_parse(&p, (const char *)data, size, &m);
    if (head < 0)
        abort();
    if (head == 0)
        return;
    size_t have = size - (size_t)head, used = 0;
    px_chunked c;
    px_chunked_init(&c);
    if (m.status != 200 || m.body == PX_BODY_NONE ||
        (m.body == PX_BODY_LENGTH && have >= m.content_length) ||
        (m.body == PX_BODY_CHUNKED &&
         px_chunked_feed(&c, (const char *)data + head, have, &used) != 0))
        abort();
}

static void fuzz_response(const uint8_t *data, size_t size, uint8_t mode)
{
    if (size < 1)
        return;
    uint8_t seed = data[0];
    bool closes = mode & 2;
    data++;
    size--;
    outcome pieces = feed_pieces(data, size, seed, closes);
    check_outcome(&pieces, closes);
    outcome whole = feed_whole(data, size, closes, false);
    check_outcome(&whole, closes);
    same_outcome(&pieces, &whole);
    if (whole.rc == 0)
        check_undecided(data, size);
    if (closes) {
        outcome at_once = feed_whole(data, size, closes, true);
        check_outcome(&at_once, true);
        same_outcome(&pieces, &at_once);
        free(at_once.buf);
    }
    if (pieces.rc == 1 && pieces.reply.status == 200) {
        check_body(&pieces, data);
        check_body(&whole, data);
        px_routes *t = NULL;
        ns_err err = {0};
        if (px_routes_parse(pieces.buf + pieces.reply.body_off, pieces.reply.body_len, &t, &err) ==
            0)
            px_routes_free(t);
    }
    free(pieces.buf);
    free(whole.buf);
}

/* The request for `a` as the proxy's HTTP parser reads it: a complete GET of `target`
 * with `a->authority` as its Host. */
static void check_request(const px_disc_addr *a, bool have_version, uint64_t version,
                          unsigned wait_s)
{
    char req[PX_DISC_ADDR_MAX + 256];
    int n = px_disc_request(a, have_version, version, wait_s, req, sizeof req);
    if (n <= 0 || (size_t)n >= sizeof req)
        abort();
    /* Refused, never truncated, one byte short of the NUL. */
    char small[PX_DISC_ADDR_MAX + 256];
    if (px_disc_request(a, have_version, version, wait_s, small, (size_t)n) != -ENOSPC ||
        px_disc_request(a, have_version, version, wait_s, small, (size_t)n + 1) != n ||
        memcmp(small, req, (size_t)n + 1) != 0)
        abort();

    static px_h1_msg m;
    px_h1_parser p;
    px_h1_init(&p, PX_H1_REQUEST, PX_M_NONE);
    if (px_h1_parse(&p, req, (size_t)n, &m) != n || m.method_id != PX_M_GET || m.host < 0)
        abort();
    px_span host = m.headers[m.host].value;
    size_t alen = strlen(a->authority);
    if (host.len != alen || memcmp(req + host.off, a->authority, alen) != 0)
        abort();
    char target[64] = "/v1/routes";
    if (have_version) {
        int tn = snprintf(target, sizeof target, "/v1/routes?version=%llu&wait=%u",
                          (unsigned long long)version, wait_s);
        if (tn <= 0 || (size_t)tn >= sizeof target)
            abort();
    }
    if (m.target.len != strlen(target) || memcmp(req + m.target.off, target, m.target.len) != 0)
        abort();
}

static void fuzz_address(const uint8_t *data, size_t size)
{
    /* A flag value: a C string, cut at a NUL as the shell would. */
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    px_disc_addr a;
    ns_err err = {0};
    int rc = px_disc_parse_address(s, &a, &err);
    if (rc != 0) {
        if (rc != -EINVAL || err.code != rc || err.msg[0] == '\0')
            abort();
        free(s);
        return;
    }
    size_t hl = strnlen(a.host, sizeof a.host);
    if (hl == 0 || hl >= sizeof a.host || a.port == 0 || strcmp(a.authority, s) != 0)
        abort();
    /* The host as written, brackets removed; an IPv6 literal only in brackets. */
    unsigned char ip6[sizeof(struct in6_addr)];
    bool bracketed = s[0] == '[';
    if (bracketed != (inet_pton(AF_INET6, a.host, ip6) == 1) ||
        strncmp(s + bracketed, a.host, hl) != 0 || (bracketed && s[1 + hl] != ']') ||
        s[bracketed + hl + bracketed] != ':')
        abort();
    /* Parsing what was accepted gives the same address. */
    px_disc_addr again;
    if (px_disc_parse_address(a.authority, &again, NULL) != 0 || memcmp(&a, &again, sizeof a) != 0)
        abort();
    check_request(&a, false, 0, 0);
    check_request(&a, true, UINT64_MAX, PX_DISC_WAIT_MAX);
    check_request(&a, true, 7, PX_DISC_WAIT_DEFAULT);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        fuzz_address(data + 1, size - 1);
    else
        fuzz_response(data + 1, size - 1, data[0]);
    return 0;
}

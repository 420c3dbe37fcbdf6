/* fuzz_http1.c - libFuzzer target for the proxy's HTTP/1.1 parsing (proxy/http1.h).
 *
 * The first input byte picks the mode: request or response, the request method a
 * response answers, and the piece size. The rest is parsed as a head, whole and then in
 * pieces; both must agree exactly, every span must lie inside the head, and the body
 * after a chunked head goes through the chunked decoder, whole and in pieces, with the
 * same result. The sniffer must never change its mind once it has decided. Any
 * disagreement aborts (a crash for libFuzzer), as do out-of-bounds reads (ASan). */
#include "http1.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int parse_pieces(px_h1_kind kind, px_h1_method req, const uint8_t *data, size_t size,
                        size_t step, px_h1_msg *m, px_h1_parser *p)
{
    px_h1_init(p, kind, req);
    /* Small inputs: a buffer of exactly the bytes received so far, so that ASan sees any
     * read past them. Large ones: one buffer, to keep runs fast. */
    bool exact = size <= 1024;
    size_t have = 0;
    int rc = 0;
    while (have < size) {
        have = size - have < step ? size : have + step;
        if (exact) {
            char *b = malloc(have ? have : 1);
            if (!b)
                abort();
            memcpy(b, data, have);
            rc = px_h1_parse(p, b, have, m);
            free(b);
        } else {
            rc = px_h1_parse(p, (const char *)data, have, m);
        }
        if (rc != 0)
            break;
    }
    return rc;
}

static bool span_in(px_span s, uint32_t end)
{
    return s.off <= end && s.len <= end - s.off;
}

static void check_head(const px_h1_msg *m, size_t size)
{
    uint32_t end = m->head_len;
    if (end > size || m->start > end || m->nheaders > PX_H1_MAX_HEADERS)
        abort();
    if (!span_in(m->method, end) || !span_in(m->target, end) || !span_in(m->reason, end))
        abort();
    for (unsigned i = 0; i < m->nheaders; i++)
        if (!span_in(m->headers[i].name, end) || !span_in(m->headers[i].value, end) ||
            m->headers[i].name.len == 0)
            abort();
    if (m->body == PX_BODY_LENGTH && m->content_length == 0)
        abort();
    if (m->kind == PX_H1_REQUEST && m->body == PX_BODY_CLOSE)
        abort();
}

static void same_msg(const px_h1_msg *a, const px_h1_msg *b)
{
    if (a->head_len != b->head_len || a->start != b->start || a->nheaders != b->nheaders ||
        a->body != b->body || a->content_length != b->content_length || a->flags != b->flags ||
        a->status != b->status || a->method_id != b->method_id || a->host != b->host ||
        a->minor != b->minor || a->target.off != b->target.off || a->target.len != b->target.len)
        abort();
    for (unsigned i = 0; i < a->nheaders; i++)
        if (a->headers[i].value.off != b->headers[i].value.off ||
            a->headers[i].value.len != b->headers[i].value.len)
            abort();
}

static void check_chunked(const uint8_t *body, size_t len, size_t step)
{
    px_chunked whole, piece;
    size_t used_whole = 0;
    px_chunked_init(&whole);
    int rc_whole = px_chunked_feed(&whole, (const char *)body, len, &used_whole);
    if (used_whole > len || (rc_whole == 0 && used_whole != len))
        abort();
    px_chunked_init(&piece);
    size_t off = 0;
    int rc = 0;
    while (off < len) {
        size_t n = len - off < step ? len - off : step, used = 0;
        rc = px_chunked_feed(&piece, (const char *)body + off, n, &used);
        if (used > n)
            abort();
        off += used;
        if (rc != 0)
            break;
    }
    if (rc != rc_whole || off != used_whole || piece.data != whole.data)
        abort();
}

/* Short prefixes one by one, and the lengths around the look-ahead bound. */
static void check_sniff(const uint8_t *data, size_t size)
{
    px_sniff final = px_h1_sniff((const char *)data, size);
    static const size_t near_cap[] = {PX_H1_SNIFF_MAX - 1, PX_H1_SNIFF_MAX, PX_H1_SNIFF_MAX + 1};
    for (size_t n = 0; n < size && n <= 256; n++) {
        px_sniff s = px_h1_sniff((const char *)data, n);
        if (s != PX_SNIFF_MORE && s != final)
            abort();
    }
    for (size_t i = 0; i < sizeof near_cap / sizeof near_cap[0]; i++) {
        if (near_cap[i] > size)
            break;
        px_sniff s = px_h1_sniff((const char *)data, near_cap[i]);
        if (s != PX_SNIFF_MORE && s != final)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    px_h1_kind kind = (mode & 1) ? PX_H1_RESPONSE : PX_H1_REQUEST;
    px_h1_method req = (px_h1_method)((mode >> 1) % (PX_M_OTHER + 1));
    size_t step = 1 + (mode >> 4);

    static px_h1_msg whole, piece;
    px_h1_parser pw, pp;
    px_h1_init(&pw, kind, req);
    int rc = px_h1_parse(&pw, (const char *)data, size, &whole);
    int rc2 = parse_pieces(kind, req, data, size, step, &piece, &pp);
    if (rc != rc2 || px_h1_status(&pw) != px_h1_status(&pp))
        abort();
    if (rc < 0 && (px_h1_status(&pw) < 400 || px_h1_reason(&pw)[0] == '\0'))
        abort();
    if (rc > 0) {
        if ((size_t)rc != whole.head_len)
            abort();
        check_head(&whole, size);
        same_msg(&whole, &piece);
        if (whole.body == PX_BODY_CHUNKED)
            check_chunked(data + rc, size - (size_t)rc, step);
    }
    /* The chunked decoder on raw input too: most inputs never reach it through a head. */
    check_chunked(data, size, step);
    check_sniff(data, size);
    return 0;
}

/* discovery.c - route discovery protocol: address, request, response, backoff. */
#include "discovery.h"

#include "strconv.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

/* A DNS name: labels of 1..63 letters, digits and inner hyphens, an optional final dot. */
static bool dns_name_ok(const char *h, size_t len)
{
    if (len && h[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? h[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || h[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && !(c == '-' && label > 0))
            return false;
        label++;
    }
    return true;
}

int px_disc_parse_address(const char *s, px_disc_addr *out, ns_err *err)
{
    memset(out, 0, sizeof(*out));
    size_t len = strlen(s);
    if (len == 0)
        return ns_errorf(err, -EINVAL, "empty address (expected HOST:PORT)");
    if (len >= PX_DISC_ADDR_MAX)
        return ns_errorf(err, -EINVAL, "longer than %d characters", PX_DISC_ADDR_MAX - 1);
    if (strchr(s, '/'))
        return ns_errorf(err, -EINVAL, "expected HOST:PORT, without a scheme or a path");
    const char *host = s, *colon;
    size_t hl;
    unsigned char tmp[sizeof(struct in6_addr)];
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close)
            return ns_errorf(err, -EINVAL, "no closing ']'");
        if (close[1] != ':')
            return ns_errorf(err, -EINVAL, "expected :PORT after ']'");
        host = s + 1;
        hl = (size_t)(close - host);
        colon = close + 1;
        if (hl >= sizeof(out->host))
            return ns_errorf(err, -EINVAL, "not an IPv6 address in brackets");
        memcpy(out->host, host, hl);
        if (inet_pton(AF_INET6, out->host, tmp) != 1)
            return ns_errorf(err, -EINVAL, "\"%s\" in brackets is not an IPv6 address", out->host);
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return ns_errorf(err, -EINVAL, "no port (expected HOST:PORT)");
        hl = (size_t)(colon - s);
        if (memchr(s, ':', hl))
            return ns_errorf(err, -EINVAL, "an IPv6 address goes in brackets: [ADDRESS]:PORT");
        if (hl == 0)
            return ns_errorf(err, -EINVAL, "no host before the port");
        if (hl >= sizeof(out->host))
            return ns_errorf(err, -EINVAL, "host name longer than 253 characters");
        memcpy(out->host, host, hl);
        /* Digits and dots only is meant as an IPv4 address, never looked up as a name. */
        if (strspn(out->host, "0123456789.") == hl && strpbrk(out->host, "0123456789")) {
            if (inet_pton(AF_INET, out->host, tmp) != 1)
                return ns_errorf(err, -EINVAL, "\"%s\" is not an IPv4 address", out->host);
        } else if (!dns_name_ok(out->host, hl)) {
            return ns_errorf(err, -EINVAL, "\"%s\" is not a host name", out->host);
        }
    }
    if (ns_parse_port(colon + 1, &out->port) != 0)
        return ns_errorf(err, -EINVAL, "\"%s\" is not a port (expected 1-65535)", colon + 1);
    memcpy(out->authority, s, len + 1);
    return 0;
}

int px_disc_request(const px_disc_addr *a, bool have_version, uint64_t version, unsigned wait_s,
                    char *out, size_t cap)
{
    char query[64] = "";
    if (have_version)
        snprintf(query, sizeof(query), "?version=%llu&wait=%u", (unsigned long long)version,
                 wait_s);
    int n = snprintf(out, cap,
                     "GET /v1/routes%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                     "Accept: application/json\r\nUser-Agent: nutshell-proxy/" NUTSHELL_VERSION
                     "\r\n\r\n",
                     query, a->authority);
    return n > 0 && (size_t)n < cap ? n : -ENOSPC;
}

void px_disc_reader_init(px_disc_reader *r)
{
    memset(r, 0, sizeof(*r));
    px_h1_init(&r->p, PX_H1_RESPONSE, PX_M_GET);
    px_chunked_init(&r->chunks);
}

/* Decodes a chunked body that px_chunked accepted, in place; returns the data length.
 * Validation already happened, so this only walks sizes, extensions and CRLFs. */
static size_t dechunk(char *b, size_t len)
{
    size_t in = 0, out = 0;
    while (in < len) {
        uint64_t size = 0;
        for (; in < len; in++) {
            char c = b[in];
            int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (d < 0)
                break;
            size = size * 16 + (uint64_t)d;
        }
        const char *lf = memchr(b + in, '\n', len - in);
        if (!lf || size == 0 || size > len)
            break;
        in = (size_t)(lf - b) + 1;
        if (size > len - in)
            break;
        memmove(b + out, b + in, (size_t)size);
        out += (size_t)size;
        in += (size_t)size + 2; /* the CRLF after the data */
    }
    return out;
}

static int read_body(px_disc_reader *r, char *buf, size_t len, bool eof, px_disc_reply *out,
                     ns_err *err)
{
    char *body = buf + r->head_len;
    size_t have = len - r->head_len;
    switch (r->m.body) {
    case PX_BODY_NONE:
        return 1;
    case PX_BODY_LENGTH:
        if (r->m.content_length > PX_DISC_BODY_MAX)
            return ns_errorf(err, -EMSGSIZE, "a table of %llu bytes is over the %d MiB limit",
                             (unsigned long long)r->m.content_length, PX_DISC_BODY_MAX >> 20);
        if (have >= r->m.content_length) {
            out->body_len = (size_t)r->m.content_length;
            return 1;
        }
        if (eof)
            return ns_errorf(err, -EBADMSG, "truncated body: %zu of %llu bytes", have,
                             (unsigned long long)r->m.content_length);
        return 0;
    case PX_BODY_CLOSE:
        if (have > PX_DISC_BODY_MAX)
            return ns_errorf(err, -EMSGSIZE, "a table over the %d MiB limit",
                             PX_DISC_BODY_MAX >> 20);
        if (!eof)
            return 0;
        out->body_len = have;
        return 1;
    case PX_BODY_CHUNKED: {
        size_t used = 0;
        int rc = px_chunked_feed(&r->chunks, body + r->chunk_fed, have - r->chunk_fed, &used);
        r->chunk_fed += used;
        if (rc < 0)
            return ns_errorf(err, -EBADMSG, "malformed chunked body: %s", r->chunks.why);
        if (r->chunks.data > PX_DISC_BODY_MAX)
            return ns_errorf(err, -EMSGSIZE, "a table over the %d MiB limit",
                             PX_DISC_BODY_MAX >> 20);
        if (rc == 1) {
            out->body_len = dechunk(body, r->chunk_fed);
            return 1;
        }
        /* Within the data limit but not ended in a full buffer: framing overhead gone mad. */
        if (len >= PX_DISC_RESPONSE_MAX)
            return ns_errorf(err, -EMSGSIZE, "a chunked body over %d bytes", PX_DISC_RESPONSE_MAX);
        return eof ? ns_errorf(err, -EBADMSG, "truncated chunked body") : 0;
    }
    default:
        return ns_errorf(err, -EPROTO, "unexpected %d answer", r->m.status);
    }
}

int px_disc_read(px_disc_reader *r, char *buf, size_t len, bool eof, px_disc_reply *out,
                 ns_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!r->head_len) {
        int rc = px_h1_parse(&r->p, buf, len, &r->m);
        if (rc == -EMSGSIZE)
            return ns_errorf(err, -EMSGSIZE, "response head too large: %s", px_h1_reason(&r->p));
        if (rc < 0)
            return ns_errorf(err, -EBADMSG, "malformed response head: %s", px_h1_reason(&r->p));
        if (rc == 0 && !eof)
            return 0;
        if (rc == 0)
            return ns_errorf(err, -EBADMSG,
                             len ? "the server closed the connection in the middle of the head"
                                 : "the server closed the connection without an answer");
        if ((r->m.flags & PX_H1_INTERIM) || r->m.body == PX_BODY_TUNNEL)
            return ns_errorf(err, -EPROTO, "unexpected %d answer", r->m.status);
        r->head_len = (size_t)rc;
    }
    out->status = r->m.status;
    out->body_off = r->head_len;
    if (r->m.status != 200)
        return 1;
    return read_body(r, buf, len, eof, out, err);
}

px_disc_outcome px_disc_classify(int status, bool have_version)
{
    switch (status) {
    case 200:
        return PX_DISC_TABLE;
    case 304:
        return have_version ? PX_DISC_UNCHANGED : PX_DISC_FAILED;
    case 503:
        return PX_DISC_NOT_READY;
    default:
        return PX_DISC_FAILED;
    }
}

int64_t px_backoff_next_ms(px_backoff *b, uint64_t rnd)
{
    int64_t step = PX_BACKOFF_FIRST_MS;
    for (unsigned i = 0; i < b->failures && step < PX_BACKOFF_MAX_MS; i++)
        step *= 2;
    if (step > PX_BACKOFF_MAX_MS)
        step = PX_BACKOFF_MAX_MS;
    if (b->failures < UINT_MAX)
        b->failures++;
    int64_t half = step / 2;
    return step - half + (int64_t)(rnd % (uint64_t)(half + 1));
}

void px_backoff_reset(px_backoff *b)
{
    b->failures = 0;
}

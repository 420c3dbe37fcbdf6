/* parse.c - pure parsing for nutshell-bench-injector (see parse.h). */
#include "parse.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Writes one sentence into the caller's buffer (if any). */
void nbi_errorf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Whole-string unsigned decimal in [min, max]. Returns 0, -EINVAL or -ERANGE. */
int nbi_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;

    if (!s || !isdigit((unsigned char)s[0]))
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    if (errno || end == s || *end != '\0')
        return -EINVAL;
    if (v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

/* Whole-string finite decimal number in [min, max]. Returns 0, -EINVAL or -ERANGE. */
int nbi_parse_double(const char *s, double min, double max, double *out)
{
    char *end = NULL;
    double v;

    if (!s || !(isdigit((unsigned char)s[0]) || s[0] == '.'))
        return -EINVAL;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v))
        return -EINVAL;
    if (v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

/* Removes insignificant whitespace from JSON text in place (the API server sends compact
 * JSON; review.json is indented for people). Returns the new length. Strings, including
 * escaped quotes, are kept byte for byte. */
size_t nbi_json_minify(char *s, size_t len)
{
    size_t o = 0;
    bool in_str = false, esc = false;

    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (ch == '\\')
                esc = true;
            else if (ch == '"')
                in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
            continue;
        }
        s[o++] = ch;
    }
    return o;
}

/* Finds the value of request.uid in a compact AdmissionReview: the first "uid" key after
 * the "request" key (uid is the first field of an AdmissionRequest, before the object
 * and its ownerReferences). Returns 0 with the value's offset and length, or -ENOENT. */
int nbi_review_find_uid(const char *body, size_t len, size_t *off, size_t *vlen)
{
    const char *req = memmem(body, len, "\"request\":{", 11);
    const char *end = body + len;
    const char *p, *q;

    if (!req)
        return -ENOENT;
    p = memmem(req, (size_t)(end - req), "\"uid\":\"", 7);
    if (!p)
        return -ENOENT;
    p += 7;
    q = memchr(p, '"', (size_t)(end - p));
    if (!q || q == p)
        return -ENOENT;
    *off = (size_t)(p - body);
    *vlen = (size_t)(q - p);
    return 0;
}

/* True if the JSON text has `"allowed"` followed by `: true` (any whitespace). */
bool nbi_body_allows(const char *body, size_t len)
{
    const char *end = body + len;
    const char *p = body;

    while (p < end) {
        const char *k = memmem(p, (size_t)(end - p), "\"allowed\"", 9);
        if (!k)
            return false;
        p = k + 9;
        while (p < end && isspace((unsigned char)*p))
            p++;
        if (p < end && *p == ':') {
            p++;
            while (p < end && isspace((unsigned char)*p))
                p++;
            if (end - p >= 4 && memcmp(p, "true", 4) == 0)
                return true;
        }
    }
    return false;
}

/* Copies up to `max` bytes of `s` into `out` for a one-line message, replacing bytes that
 * are not printable ASCII with '.'. */
void nbi_snippet(const char *s, size_t len, char *out, size_t outlen)
{
    size_t n = len < outlen - 1 ? len : outlen - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '.';
    out[n] = '\0';
}

/* HTTP/1.x responses. */

static bool hdr_is(const char *name, size_t nlen, const char *want)
{
    return nlen == strlen(want) && strncasecmp(name, want, nlen) == 0;
}

/* True if the comma-separated header value contains `token` (case-insensitive). */
static bool hdr_has_token(const char *v, size_t vlen, const char *token)
{
    size_t tl = strlen(token);
    size_t i = 0;

    while (i < vlen) {
        size_t s, e;
        while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        s = i;
        while (i < vlen && v[i] != ',')
            i++;
        e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, token, tl) == 0)
            return true;
    }
    return false;
}

/* Walks a chunked body at `p` (n bytes available). With `decode`, also moves the data of
 * every chunk down to `p` (in place; the write position never passes the read position).
 * Returns 1 when the body is complete (*consumed = bytes it took, *out_len = data bytes),
 * 0 if more bytes are needed, -EPROTO or -EMSGSIZE. */
static int chunked_walk(char *p, size_t n, bool decode, size_t *consumed, size_t *out_len)
{
    size_t i = 0, o = 0;

    for (;;) {
        uint64_t size = 0;
        int digits = 0;
        const char *eol;

        while (i < n && isxdigit((unsigned char)p[i])) {
            char ch = p[i++];
            int d = isdigit((unsigned char)ch) ? ch - '0' : (tolower((unsigned char)ch) - 'a' + 10);
            if (++digits > 8)
                return -EMSGSIZE;
            size = size * 16 + (uint64_t)d;
        }
        eol = memmem(p + i, n - i, "\r\n", 2);
        if (!eol)
            return (n - i > 256) ? -EPROTO : 0;
        if (digits == 0 || (p[i] != ';' && p[i] != '\r'))
            return -EPROTO; /* only chunk extensions may follow the size */
        i = (size_t)(eol - p) + 2;
        if (size == 0)
            break;
        if (o + size > NBI_MAX_RESPONSE)
            return -EMSGSIZE;
        if (n - i < size + 2)
            return 0;
        if (p[i + size] != '\r' || p[i + size + 1] != '\n')
            return -EPROTO;
        if (decode)
            memmove(p + o, p + i, size);
        o += size;
        i += size + 2;
    }
    /* Trailer fields, then the empty line. */
    for (;;) {
        const char *eol = memmem(p + i, n - i, "\r\n", 2);
        if (!eol)
            return (n - i > NBI_MAX_HEADER) ? -EMSGSIZE : 0;
        if (eol == p + i) {
            i += 2;
            break;
        }
        i = (size_t)(eol - p) + 2;
    }
    *consumed = i;
    *out_len = o;
    return 1;
}

/* Parses one HTTP/1.x response at the start of buf[0..len).
 * Returns 1 when it is complete (fills *r; a chunked body is decoded in place, so call it
 * again only with more bytes, never after 1), 0 if more bytes are needed, or a negative
 * errno (-EPROTO malformed, -EMSGSIZE too large) with a sentence in err. */
int nbi_http_parse_response(char *buf, size_t len, struct nbi_http_resp *r, char *err,
                            size_t errlen)
{
    const char *hend = memmem(buf, len, "\r\n\r\n", 4);
    const char *line, *end;
    size_t hlen;
    uint64_t clen = 0;
    bool have_clen = false, chunked = false;

    if (!hend) {
        if (len > NBI_MAX_HEADER) {
            nbi_errorf(err, errlen, "response head larger than %u bytes", NBI_MAX_HEADER);
            return -EMSGSIZE;
        }
        return 0;
    }
    hlen = (size_t)(hend - buf) + 4;
    if (hlen < 16 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') ||
        buf[8] != ' ' || !isdigit((unsigned char)buf[9]) || !isdigit((unsigned char)buf[10]) ||
        !isdigit((unsigned char)buf[11]) || (buf[12] != ' ' && buf[12] != '\r')) {
        char s[64];
        nbi_snippet(buf, hlen < 40 ? hlen : 40, s, sizeof s);
        nbi_errorf(err, errlen, "malformed status line \"%s\"", s);
        return -EPROTO;
    }
    memset(r, 0, sizeof *r);
    r->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    r->keep_alive = buf[7] == '1';

    line = (const char *)memmem(buf, hlen, "\r\n", 2) + 2;
    end = hend + 2; /* each header line ends with its own \r\n */
    while (line < end) {
        const char *eol = memmem(line, (size_t)(end - line), "\r\n", 2);
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        const char *v, *ve;

        if (!colon || colon == line) {
            nbi_errorf(err, errlen, "malformed header line");
            return -EPROTO;
        }
        v = colon + 1;
        ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (hdr_is(line, (size_t)(colon - line), "content-length")) {
            char num[24];
            uint64_t cl;
            size_t vl = (size_t)(ve - v);
            if (vl == 0 || vl >= sizeof num) {
                nbi_errorf(err, errlen, "bad Content-Length");
                return -EPROTO;
            }
            memcpy(num, v, vl);
            num[vl] = '\0';
            if (nbi_parse_u64(num, 0, UINT64_MAX, &cl) != 0 || (have_clen && cl != clen)) {
                nbi_errorf(err, errlen, "bad Content-Length \"%s\"", num);
                return -EPROTO;
            }
            clen = cl;
            have_clen = true;
        } else if (hdr_is(line, (size_t)(colon - line), "transfer-encoding")) {
            chunked = hdr_has_token(v, (size_t)(ve - v), "chunked");
        } else if (hdr_is(line, (size_t)(colon - line), "connection")) {
            if (hdr_has_token(v, (size_t)(ve - v), "close"))
                r->keep_alive = false;
            else if (hdr_has_token(v, (size_t)(ve - v), "keep-alive"))
                r->keep_alive = true;
        }
        line = eol + 2;
    }

    r->body = buf + hlen;
    if (chunked) {
        size_t used = 0, blen = 0;
        int rc = chunked_walk(buf + hlen, len - hlen, false, &used, &blen);
        if (rc < 0) {
            nbi_errorf(err, errlen, "%s chunked body", rc == -EMSGSIZE ? "too large" : "malformed");
            return rc;
        }
        if (rc == 0)
            return 0;
        chunked_walk(buf + hlen, len - hlen, true, &used, &blen);
        r->body_len = blen;
        r->total = hlen + used;
        return 1;
    }
    if (have_clen) {
        if (clen > NBI_MAX_RESPONSE) {
            nbi_errorf(err, errlen, "Content-Length %" PRIu64 " larger than %u", clen,
                       NBI_MAX_RESPONSE);
            return -EMSGSIZE;
        }
        if (len - hlen < clen)
            return 0;
        r->body_len = (size_t)clen;
        r->total = hlen + (size_t)clen;
        return 1;
    }
    if (r->status / 100 == 1 || r->status == 204 || r->status == 304) {
        r->total = hlen;
        return 1;
    }
    nbi_errorf(err, errlen, "response %d has neither Content-Length nor chunked encoding",
               r->status);
    return -EPROTO;
}

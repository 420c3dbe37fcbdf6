/* trace.c - W3C traceparent and B3 parsing, child spans, header writing. */
#include "trace.h"

#include <errno.h>
#include <string.h>

uint64_t px_rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int hexval(unsigned char c, bool lower_only)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (!lower_only && c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes 2*n hex digits into out[0..n). */
static bool unhex(const char *s, size_t n, uint8_t *out, bool lower_only)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval((unsigned char)s[2 * i], lower_only);
        int lo = hexval((unsigned char)s[2 * i + 1], lower_only);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static char *tohex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        *out++ = digits[in[i] >> 4];
        *out++ = digits[in[i] & 15];
    }
    return out;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

int px_traceparent_parse(const char *s, size_t len, px_trace_ctx *out)
{
    uint8_t version;
    px_trace_ctx c = {0};
    if (len < PX_TRACEPARENT_LEN || !unhex(s, 1, &version, true) || version == 0xff ||
        s[2] != '-' || s[35] != '-' || s[52] != '-')
        return -EINVAL;
    /* Version 00 is exactly this long; later versions may append "-more" fields. */
    if (version == 0 ? len != PX_TRACEPARENT_LEN
                     : len > PX_TRACEPARENT_LEN && s[PX_TRACEPARENT_LEN] != '-')
        return -EINVAL;
    if (!unhex(s + 3, 16, c.trace_id, true) || !unhex(s + 36, 8, c.span_id, true) ||
        !unhex(s + 53, 1, &c.flags, true))
        return -EINVAL;
    if (all_zero(c.trace_id, 16) || all_zero(c.span_id, 8))
        return -EINVAL;
    /* Keep the flags this proxy understands: sampled (level 1) and random (level 2,
     * still true as the trace id is kept). Others must be sent as zero. */
    c.flags &= 0x03;
    c.sampling_known = true;
    *out = c;
    return 0;
}

size_t px_traceparent_format(const px_trace_ctx *ctx, char *out)
{
    char *p = out;
    *p++ = '0';
    *p++ = '0';
    *p++ = '-';
    p = tohex(ctx->trace_id, 16, p);
    *p++ = '-';
    p = tohex(ctx->span_id, 8, p);
    *p++ = '-';
    p = tohex(&ctx->flags, 1, p);
    *p = '\0';
    return PX_TRACEPARENT_LEN;
}

/* A B3 trace id: 16 or 32 hex digits, not all zero. */
static bool b3_trace_id(const char *s, size_t n, px_trace_ctx *c)
{
    memset(c->trace_id, 0, sizeof c->trace_id);
    if (n == 32)
        c->trace_id_64 = false;
    else if (n == 16)
        c->trace_id_64 = true;
    else
        return false;
    return unhex(s, n / 2, c->trace_id + 16 - n / 2, false) && !all_zero(c->trace_id, 16);
}

static bool b3_span_id(const char *s, size_t n, uint8_t *id)
{
    return n == 16 && unhex(s, 8, id, false) && !all_zero(id, 8);
}

/* Sampling state "0", "1" or "d". */
static bool b3_sampling(const char *s, size_t n, px_trace_ctx *c)
{
    if (n != 1 || (s[0] != '0' && s[0] != '1' && s[0] != 'd'))
        return false;
    c->sampling_known = true;
    c->debug = s[0] == 'd';
    c->flags = s[0] == '0' ? 0 : 1;
    return true;
}

int px_b3_parse_single(const char *s, size_t len, px_trace_ctx *out)
{
    px_trace_ctx c = {0};
    const char *f[4];
    size_t flen[4], nf = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '-') {
            if (nf == 4)
                return -EINVAL;
            f[nf] = s + start;
            flen[nf++] = i - start;
            start = i + 1;
        }
    }
    if (nf == 1) {
        /* Only a sampling decision: nothing to continue, but the decision stands. */
        if (!b3_sampling(f[0], flen[0], &c))
            return -EINVAL;
        out->flags = c.flags;
        out->debug = c.debug;
        out->sampling_known = true;
        return -ENOENT;
    }
    if (!b3_trace_id(f[0], flen[0], &c) || !b3_span_id(f[1], flen[1], c.span_id))
        return -EINVAL;
    if (nf >= 3 && !b3_sampling(f[2], flen[2], &c))
        return -EINVAL;
    /* The parent is the caller's parent; as the proxy makes a child of the caller's
     * span it only needs to be valid. */
    uint8_t parent[8];
    if (nf == 4 && !b3_span_id(f[3], flen[3], parent))
        return -EINVAL;
    *out = c;
    return 0;
}

/* The trace headers, found in one pass over a head. */
enum { H_TRACEPARENT, H_B3, H_TRACEID, H_SPANID, H_PARENTID, H_SAMPLED, H_FLAGS, H_N };

static const struct {
    const char *name;
    uint32_t len;
} trace_names[H_N] = {
    [H_TRACEPARENT] = {"traceparent", 11},    [H_B3] = {"b3", 2},
    [H_TRACEID] = {"x-b3-traceid", 12},       [H_SPANID] = {"x-b3-spanid", 11},
    [H_PARENTID] = {"x-b3-parentspanid", 17}, [H_SAMPLED] = {"x-b3-sampled", 12},
    [H_FLAGS] = {"x-b3-flags", 10},
};

/* Which trace header `name` is, or -1. Most names are rejected by their first byte. */
static int trace_header(const char *buf, px_span name)
{
    if (name.len < 2)
        return -1;
    unsigned char c = (unsigned char)(buf[name.off] | 0x20);
    if (c != 't' && c != 'b' && c != 'x')
        return -1;
    for (int i = 0; i < H_N; i++)
        if (name.len == trace_names[i].len && px_span_ieq(buf, name, trace_names[i].name))
            return i;
    return -1;
}

typedef struct found {
    int count[H_N];
    px_span value[H_N]; /* of the first occurrence */
} found;

/* The value of header h if it occurs exactly once: a repeated one is ambiguous. */
static bool single(const found *f, int h, px_span *v)
{
    if (f->count[h] != 1)
        return false;
    *v = f->value[h];
    return true;
}

static int b3_multi(const found *f, const char *buf, px_trace_ctx *out)
{
    px_trace_ctx c = {0};
    px_span tid = {0}, sid = {0}, v = {0};
    if (single(f, H_SAMPLED, &v)) {
        const char *p = buf + v.off;
        if (v.len == 1 && (p[0] == '0' || p[0] == '1'))
            c.flags = p[0] == '1';
        else if (px_span_ieq(buf, v, "true") || px_span_ieq(buf, v, "false"))
            c.flags = px_span_ieq(buf, v, "true");
        else
            return -EINVAL;
        c.sampling_known = true;
    }
    if (single(f, H_FLAGS, &v) && v.len == 1 && buf[v.off] == '1') {
        c.debug = true;
        c.flags = 1;
        c.sampling_known = true;
    }
    uint8_t parent[8];
    if (single(f, H_PARENTID, &v) && !b3_span_id(buf + v.off, v.len, parent))
        return -EINVAL;
    if (!single(f, H_TRACEID, &tid) || !single(f, H_SPANID, &sid) ||
        !b3_trace_id(buf + tid.off, tid.len, &c) || !b3_span_id(buf + sid.off, sid.len, c.span_id))
        return -EINVAL;
    *out = c;
    return 0;
}

int px_trace_extract(const px_h1_msg *m, const char *buf, px_trace_ctx *out, unsigned *forms)
{
    found f;
    memset(&f, 0, sizeof f);
    for (unsigned i = 0; i < m->nheaders; i++) {
        int h = trace_header(buf, m->headers[i].name);
        if (h >= 0 && f.count[h]++ == 0)
            f.value[h] = m->headers[i].value;
    }
    unsigned present = 0;
    if (f.count[H_TRACEPARENT])
        present |= PX_TRACE_W3C;
    if (f.count[H_B3])
        present |= PX_TRACE_B3_SINGLE;
    for (int h = H_TRACEID; h < H_N; h++)
        if (f.count[h])
            present |= PX_TRACE_B3_MULTI;
    if (forms)
        *forms = present;
    px_span v;
    if (single(&f, H_TRACEPARENT, &v) && px_traceparent_parse(buf + v.off, v.len, out) == 0)
        return 0;
    if (single(&f, H_B3, &v) && px_b3_parse_single(buf + v.off, v.len, out) == 0)
        return 0;
    if ((present & PX_TRACE_B3_MULTI) && b3_multi(&f, buf, out) == 0)
        return 0;
    return -ENOENT;
}

static void random_id(uint64_t *rng, uint8_t *id, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t r = px_rng_next(rng);
            memcpy(id + i, &r, n - i < 8 ? n - i : 8);
        }
    } while (all_zero(id, n));
}

void px_trace_child(const px_trace_ctx *parent, uint64_t *rng, px_trace_ctx *out)
{
    if (parent) {
        px_trace_ctx c = *parent;
        memcpy(c.parent_id, parent->span_id, sizeof c.parent_id);
        c.has_parent = true;
        random_id(rng, c.span_id, sizeof c.span_id);
        *out = c;
        return;
    }
    px_trace_ctx c = {0};
    random_id(rng, c.trace_id, sizeof c.trace_id);
    random_id(rng, c.span_id, sizeof c.span_id);
    c.sampling_known = true; /* decided: not sampled (this proxy exports no spans) */
    *out = c;
}

bool px_trace_is_header(const char *buf, px_span name)
{
    return trace_header(buf, name) >= 0;
}

/* Appends literal `s` at *p if it fits before end. */
static bool put(char **p, const char *end, const char *s, size_t n)
{
    if ((size_t)(end - *p) < n)
        return false;
    memcpy(*p, s, n);
    *p += n;
    return true;
}

#define PUT(lit) put(&p, end, lit, sizeof lit - 1)

static bool put_trace_id(char **p, const char *end, const px_trace_ctx *c)
{
    char hex[32];
    size_t skip = c->trace_id_64 ? 8 : 0;
    tohex(c->trace_id + skip, 16 - skip, hex);
    return put(p, end, hex, 32 - 2 * skip);
}

static bool put_id8(char **p, const char *end, const uint8_t *id)
{
    char hex[16];
    tohex(id, 8, hex);
    return put(p, end, hex, 16);
}

size_t px_trace_write(const px_trace_ctx *c, unsigned forms, char *out, size_t cap)
{
    char *p = out;
    const char *end = out + cap;
    char tp[PX_TRACEPARENT_LEN + 1];
    px_traceparent_format(c, tp);
    if (!PUT("traceparent: ") || !put(&p, end, tp, PX_TRACEPARENT_LEN) || !PUT("\r\n"))
        return 0;
    if (forms & PX_TRACE_B3_SINGLE) {
        bool ok =
            PUT("b3: ") && put_trace_id(&p, end, c) && PUT("-") && put_id8(&p, end, c->span_id);
        /* A parent may only follow a sampling state. */
        if (ok && c->sampling_known) {
            ok = PUT("-") && put(&p, end, c->debug ? "d" : (c->flags & 1) ? "1" : "0", 1);
            if (ok && c->has_parent)
                ok = PUT("-") && put_id8(&p, end, c->parent_id);
        }
        if (!ok || !PUT("\r\n"))
            return 0;
    }
    if (forms & PX_TRACE_B3_MULTI) {
        bool ok = PUT("X-B3-TraceId: ") && put_trace_id(&p, end, c) && PUT("\r\nX-B3-SpanId: ") &&
                  put_id8(&p, end, c->span_id) && PUT("\r\n");
        if (ok && c->has_parent)
            ok = PUT("X-B3-ParentSpanId: ") && put_id8(&p, end, c->parent_id) && PUT("\r\n");
        if (ok && c->debug)
            ok = PUT("X-B3-Flags: 1\r\n");
        else if (ok && c->sampling_known)
            ok = (c->flags & 1) ? PUT("X-B3-Sampled: 1\r\n") : PUT("X-B3-Sampled: 0\r\n");
        if (!ok)
            return 0;
    }
    return (size_t)(p - out);
}

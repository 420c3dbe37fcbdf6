/* http1.c - HTTP/1.1 head parser, chunked body decoder and protocol sniffer.
 *
 * The head parser works line by line: memchr finds the next LF (resuming where the
 * last call stopped), then the complete line is validated once with byte-class tables.
 * That keeps the common case (a whole head in one read) fast and the piecemeal case
 * linear. The chunked decoder is a byte state machine because it must keep no bytes:
 * the proxy forwards each piece as soon as it has looked at it.
 */
#include "http1.h"

#include <errno.h>
#include <string.h>

/* Byte classes (RFC 9110 section 5.6.2 tchar; field-vchar; request-target bytes). */
enum {
    C_TOKEN = 1 << 0,  /* tchar */
    C_VALUE = 1 << 1,  /* VCHAR / obs-text / SP / HTAB: field-value and reason bytes */
    C_TARGET = 1 << 2, /* visible bytes other than SP and DEL (obs-text tolerated) */
    C_HOST = 1 << 3,   /* uri-host / port / IP-literal bytes */
    C_HEX = 1 << 4,
};

static unsigned char cls[256];

/* Filled before main() so that parsers on every thread only ever read it. */
__attribute__((constructor)) static void cls_init(void)
{
    for (int c = 0; c < 256; c++) {
        unsigned char k = 0;
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (alnum || (c && strchr("!#$%&'*+-.^_`|~", c)))
            k |= C_TOKEN;
        if ((c >= 0x21 && c != 0x7f) || c == ' ' || c == '\t')
            k |= C_VALUE;
        if (c > 0x20 && c != 0x7f)
            k |= C_TARGET;
        if (alnum || (c && strchr("-._~!$&'()*+,;=:%[]", c)))
            k |= C_HOST;
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
            k |= C_HEX;
        cls[c] = k;
    }
}

static inline bool is(unsigned char c, unsigned k)
{
    return (cls[c] & k) != 0;
}

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* a[0..n) equals the lower-case literal `lit` of length n, ignoring a's case. */
static bool ieq_n(const char *a, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != (unsigned char)lit[i])
            return false;
    return true;
}

static bool ieq(const char *a, size_t alen, const char *lit)
{
    size_t n = strlen(lit);
    return alen == n && ieq_n(a, lit, n);
}

bool px_span_ieq(const char *buf, px_span s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)buf[s.off + i]) != lower((unsigned char)lit[i]))
            return false;
    return true;
}

bool px_h1_method_idempotent(px_h1_method m)
{
    switch (m) {
    case PX_M_GET:
    case PX_M_HEAD:
    case PX_M_PUT:
    case PX_M_DELETE:
    case PX_M_OPTIONS:
    case PX_M_TRACE:
        return true;
    default:
        return false;
    }
}

/* Why a head was refused: errno, suggested status, phrase. Index 0 is "no error". */
enum {
    E_NONE,
    E_TOO_LARGE,
    E_TOO_MANY,
    E_BARE_LF,
    E_BARE_CR,
    E_METHOD,
    E_TARGET,
    E_REQLINE,
    E_VERSION_SYNTAX,
    E_VERSION,
    E_STATUS,
    E_REASON,
    E_OBS_FOLD,
    E_NAME,
    E_WS_COLON,
    E_NO_COLON,
    E_VALUE,
    E_CL_BAD,
    E_CL_DIFF,
    E_CL_TE,
    E_TE_UNSUPPORTED,
    E_TE_NOT_LAST,
    E_TE_TWICE,
    E_TE_HTTP10,
    E_HOST_MISSING,
    E_HOST_MULTI,
    E_HOST_BAD,
};

static const struct {
    int code;
    int status;
    const char *why;
} errors[] = {
    [E_NONE] = {0, 0, ""},
    [E_TOO_LARGE] = {-EMSGSIZE, 431, "head too large"},
    [E_TOO_MANY] = {-EMSGSIZE, 431, "too many header fields"},
    [E_BARE_LF] = {-EBADMSG, 400, "line ends in LF without CR"},
    [E_BARE_CR] = {-EBADMSG, 400, "CR not followed by LF"},
    [E_METHOD] = {-EBADMSG, 400, "invalid method"},
    [E_TARGET] = {-EBADMSG, 400, "invalid request target"},
    [E_REQLINE] = {-EBADMSG, 400, "malformed request line"},
    [E_VERSION_SYNTAX] = {-EBADMSG, 400, "malformed HTTP version"},
    [E_VERSION] = {-ENOTSUP, 505, "unsupported HTTP version"},
    [E_STATUS] = {-EBADMSG, 400, "malformed status line"},
    [E_REASON] = {-EBADMSG, 400, "invalid reason phrase"},
    [E_OBS_FOLD] = {-EBADMSG, 400, "obsolete line folding"},
    [E_NAME] = {-EBADMSG, 400, "invalid header field name"},
    [E_WS_COLON] = {-EBADMSG, 400, "white space before colon"},
    [E_NO_COLON] = {-EBADMSG, 400, "header field without colon"},
    [E_VALUE] = {-EBADMSG, 400, "invalid header field value"},
    [E_CL_BAD] = {-EBADMSG, 400, "invalid content-length"},
    [E_CL_DIFF] = {-EBADMSG, 400, "differing content-length values"},
    [E_CL_TE] = {-EBADMSG, 400, "content-length and transfer-encoding both present"},
    [E_TE_UNSUPPORTED] = {-ENOTSUP, 501, "unsupported transfer coding"},
    [E_TE_NOT_LAST] = {-EBADMSG, 400, "chunked is not the final transfer coding"},
    [E_TE_TWICE] = {-EBADMSG, 400, "chunked applied more than once"},
    [E_TE_HTTP10] = {-EBADMSG, 400, "transfer-encoding in an HTTP/1.0 request"},
    [E_HOST_MISSING] = {-EBADMSG, 400, "HTTP/1.1 request without host"},
    [E_HOST_MULTI] = {-EBADMSG, 400, "more than one host header"},
    [E_HOST_BAD] = {-EBADMSG, 400, "invalid host"},
};

/* Parser states. */
enum { S_INIT, S_FIRST, S_HEADERS, S_DONE, S_ERROR };

/* px_h1_parser.seen bits: framing headers met so far. */
enum {
    SEEN_CL = 1 << 0,
    SEEN_TE = 1 << 1,
    SEEN_UPGRADE = 1 << 2,
    SEEN_CONN_UPGRADE = 1 << 3,
    TE_OTHER = 1 << 4, /* a coding other than chunked */
};

void px_h1_init(px_h1_parser *p, px_h1_kind kind, px_h1_method req_method)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->req_method = kind == PX_H1_RESPONSE ? req_method : PX_M_NONE;
    p->max_head = PX_H1_MAX_HEAD;
    p->state = S_INIT;
}

void px_h1_set_max_head(px_h1_parser *p, uint32_t max_head)
{
    if (max_head < 256)
        max_head = 256;
    if (max_head > 16u * 1024 * 1024)
        max_head = 16u * 1024 * 1024;
    p->max_head = max_head;
}

int px_h1_status(const px_h1_parser *p)
{
    return errors[p->error].status;
}

const char *px_h1_reason(const px_h1_parser *p)
{
    return errors[p->error].why;
}

static int fail(px_h1_parser *p, int e)
{
    p->error = e;
    p->state = S_ERROR;
    return errors[e].code;
}

int px_h1_find(const px_h1_msg *m, const char *buf, const char *name, int from)
{
    size_t n = strlen(name);
    for (unsigned i = from < 0 ? 0 : (unsigned)from; i < m->nheaders; i++)
        if (m->headers[i].name.len == n && px_span_ieq(buf, m->headers[i].name, name))
            return (int)i;
    return -1;
}

static px_h1_method method_id(const char *s, size_t n)
{
    static const struct {
        const char *name;
        size_t len;
        px_h1_method id;
    } known[] = {
        {"GET", 3, PX_M_GET},         {"HEAD", 4, PX_M_HEAD},     {"POST", 4, PX_M_POST},
        {"PUT", 3, PX_M_PUT},         {"DELETE", 6, PX_M_DELETE}, {"CONNECT", 7, PX_M_CONNECT},
        {"OPTIONS", 7, PX_M_OPTIONS}, {"TRACE", 5, PX_M_TRACE},   {"PATCH", 5, PX_M_PATCH},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (known[i].len == n && memcmp(known[i].name, s, n) == 0)
            return known[i].id;
    return PX_M_OTHER;
}

/* "HTTP/1.x" at s (8 bytes available). Returns E_NONE and the minor, or an error. */
static int parse_version(const char *s, int *minor)
{
    if (memcmp(s, "HTTP/", 5) != 0 || s[6] != '.' || s[5] < '0' || s[5] > '9' || s[7] < '0' ||
        s[7] > '9')
        return E_VERSION_SYNTAX;
    if (s[5] != '1' || s[7] > '1')
        return E_VERSION;
    *minor = s[7] - '0';
    return E_NONE;
}

/* The first error byte in line[0..n) outside class `k`, as an error code for where the
 * byte is: CR gets its own message since it is the classic smuggling trick. */
static int scan_class(const char *line, size_t n, unsigned k, int e)
{
    size_t i = 0;
    if (k == C_VALUE) {
        /* Field values are most of a head: skip 8 bytes at a time while none is a control
         * byte (below 0x20, HTAB included, which the byte loop then checks) or DEL. */
        const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
        for (; i + 8 <= n; i += 8) {
            uint64_t x, del;
            memcpy(&x, line + i, 8);
            del = x ^ (0x7f * ones);
            if ((((x - 0x20 * ones) & ~x) | ((del - ones) & ~del)) & highs)
                break;
        }
    }
    for (; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (!is(c, k))
            return c == '\r' ? E_BARE_CR : e;
    }
    return E_NONE;
}

static int parse_request_line(px_h1_msg *m, const char *buf, uint32_t off, uint32_t n)
{
    const char *line = buf + off;
    uint32_t i = 0;
    while (i < n && is((unsigned char)line[i], C_TOKEN))
        i++;
    if (i == 0 || i == n || line[i] != ' ')
        return i < n && line[i] == '\r' ? E_BARE_CR : (i == 0 ? E_METHOD : E_REQLINE);
    m->method = (px_span){off, i};
    m->method_id = method_id(line, i);
    uint32_t t = ++i;
    while (i < n && is((unsigned char)line[i], C_TARGET))
        i++;
    if (i == t || i == n || line[i] != ' ')
        return i < n && line[i] == '\r' ? E_BARE_CR : (i == t ? E_TARGET : E_REQLINE);
    m->target = (px_span){off + t, i - t};
    i++;
    if (n - i != 8)
        return n - i > 8 && memcmp(line + i, "HTTP/", 5) == 0 ? E_VERSION_SYNTAX : E_REQLINE;
    return parse_version(line + i, &m->minor);
}

static int parse_status_line(px_h1_msg *m, const char *buf, uint32_t off, uint32_t n)
{
    const char *line = buf + off;
    if (n < 12 || line[8] != ' ')
        return n >= 8 && memcmp(line, "HTTP/", 5) == 0 && line[5] != '1' ? E_VERSION : E_STATUS;
    int e = parse_version(line, &m->minor);
    if (e)
        return e;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (line[i] < '0' || line[i] > '9')
            return E_STATUS;
        status = status * 10 + (line[i] - '0');
    }
    if (status < 100)
        return E_STATUS;
    m->status = status;
    /* "HTTP/1.1 200" without the SP before an empty reason is common enough to accept. */
    if (n == 12) {
        m->reason = (px_span){off + 12, 0};
        return E_NONE;
    }
    if (line[12] != ' ')
        return E_STATUS;
    m->reason = (px_span){off + 13, n - 13};
    return scan_class(line + 13, n - 13, C_VALUE, E_REASON);
}

/* Content-Length: 1*DIGIT, or a list of identical ones ("42, 42"), which RFC 9110
 * section 8.6 lets a recipient read as one. Anything else (signs, spaces inside digits,
 * hex, overflow) is refused. */
static int parse_content_length(px_h1_parser *p, px_h1_msg *m, const char *v, uint32_t n)
{
    uint32_t i = 0;
    bool any = false;
    while (i <= n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        uint64_t x = 0;
        uint32_t digits = 0;
        while (i < n && v[i] >= '0' && v[i] <= '9') {
            if (x > (UINT64_MAX / 2 - 9) / 10)
                return E_CL_BAD; /* beyond 2^63: no real body is that long */
            x = x * 10 + (uint64_t)(v[i] - '0');
            digits++;
            i++;
        }
        if (!digits)
            return E_CL_BAD;
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i < n && v[i] != ',')
            return E_CL_BAD;
        if ((p->seen & SEEN_CL) || any) {
            if (m->content_length != x)
                return E_CL_DIFF;
        }
        m->content_length = x;
        any = true;
        i++; /* past the comma, or past the end */
    }
    p->seen |= SEEN_CL;
    return E_NONE;
}

/* Transfer-Encoding: a list of codings, possibly over several fields, in order.
 * te_chunked_last: 0 no chunked yet, 1 chunked is the last coding so far, 2 chunked
 * was followed by another coding. */
static int parse_transfer_encoding(px_h1_parser *p, const char *v, uint32_t n)
{
    uint32_t i = 0;
    p->seen |= SEEN_TE;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        if (i == n)
            break;
        uint32_t s = i;
        while (i < n && is((unsigned char)v[i], C_TOKEN))
            i++;
        if (i == s)
            return E_VALUE;
        bool chunked = ieq(v + s, i - s, "chunked");
        /* Parameters (";q=1") are legal on other codings, never on chunked. */
        while (i < n && v[i] != ',') {
            if (chunked && v[i] != ' ' && v[i] != '\t')
                return E_VALUE;
            i++;
        }
        if (chunked) {
            if (p->te_chunked_last)
                return E_TE_TWICE;
            p->te_chunked_last = 1;
        } else {
            if (p->te_chunked_last)
                p->te_chunked_last = 2; /* chunked seen, but not last */
            p->seen |= TE_OTHER;
        }
    }
    return E_NONE;
}

static bool list_has(const char *v, uint32_t n, const char *tok)
{
    size_t toklen = strlen(tok);
    uint32_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        uint32_t s = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i - s == toklen && ieq_n(v + s, tok, toklen))
            return true;
        while (i < n && v[i] != ',')
            i++;
    }
    return false;
}

/* Acts on the headers that decide framing and connection handling. */
static int interpret(px_h1_parser *p, px_h1_msg *m, const char *buf, unsigned idx)
{
    const px_h1_header *h = &m->headers[idx];
    const char *name = buf + h->name.off, *v = buf + h->value.off;
    uint32_t n = h->value.len;
    switch (h->name.len) {
    case 4:
        if (m->kind == PX_H1_REQUEST && ieq_n(name, "host", 4)) {
            if (m->host >= 0)
                return E_HOST_MULTI;
            m->host = (int)idx;
            return scan_class(v, n, C_HOST, E_HOST_BAD);
        }
        break;
    case 6:
        /* RFC 9110 section 10.1.1: an HTTP/1.0 client cannot mean 100-continue. */
        if (m->kind == PX_H1_REQUEST && m->minor >= 1 && ieq_n(name, "expect", 6) &&
            ieq(v, n, "100-continue"))
            m->flags |= PX_H1_EXPECT_CONTINUE;
        break;
    case 7:
        if (ieq_n(name, "upgrade", 7))
            p->seen |= SEEN_UPGRADE;
        break;
    case 10:
        if (ieq_n(name, "connection", 10)) {
            if (list_has(v, n, "close"))
                m->flags |= PX_H1_CONN_CLOSE;
            if (list_has(v, n, "keep-alive"))
                m->flags |= PX_H1_CONN_KEEP_ALIVE;
            if (list_has(v, n, "upgrade"))
                p->seen |= SEEN_CONN_UPGRADE;
        }
        break;
    case 14:
        if (ieq_n(name, "content-length", 14))
            return parse_content_length(p, m, v, n);
        break;
    case 17:
        if (ieq_n(name, "transfer-encoding", 17))
            return parse_transfer_encoding(p, v, n);
        break;
    }
    return E_NONE;
}

static int parse_header_line(px_h1_parser *p, px_h1_msg *m, const char *buf, uint32_t off,
                             uint32_t n)
{
    const char *line = buf + off;
    if (line[0] == ' ' || line[0] == '\t')
        return E_OBS_FOLD;
    uint32_t i = 0;
    while (i < n && is((unsigned char)line[i], C_TOKEN))
        i++;
    if (i == n)
        return i == 0 ? E_NAME : E_NO_COLON;
    if (line[i] != ':') {
        if (i > 0 && (line[i] == ' ' || line[i] == '\t'))
            return E_WS_COLON;
        return line[i] == '\r' ? E_BARE_CR : E_NAME;
    }
    if (i == 0)
        return E_NAME;
    if (m->nheaders >= PX_H1_MAX_HEADERS)
        return E_TOO_MANY;
    uint32_t vs = i + 1, ve = n;
    while (vs < ve && (line[vs] == ' ' || line[vs] == '\t'))
        vs++;
    while (ve > vs && (line[ve - 1] == ' ' || line[ve - 1] == '\t'))
        ve--;
    int e = scan_class(line + vs, ve - vs, C_VALUE, E_VALUE);
    if (e)
        return e;
    unsigned idx = m->nheaders++;
    m->headers[idx].name = (px_span){off, i};
    m->headers[idx].value = (px_span){off + vs, ve - vs};
    return interpret(p, m, buf, idx);
}

/* The empty line ended the head: decide framing and persistence (RFC 9112 section 6.3). */
static int finish(px_h1_parser *p, px_h1_msg *m)
{
    bool cl = p->seen & SEEN_CL, te = p->seen & SEEN_TE;
    bool alive = m->minor >= 1
                     ? !(m->flags & PX_H1_CONN_CLOSE)
                     : (m->flags & PX_H1_CONN_KEEP_ALIVE) && !(m->flags & PX_H1_CONN_CLOSE);
    if (cl && te)
        return E_CL_TE;
    if (m->kind == PX_H1_REQUEST) {
        if (m->minor >= 1 && m->host < 0)
            return E_HOST_MISSING;
        if (te) {
            if (m->minor == 0)
                return E_TE_HTTP10;
            /* RFC 9112 section 6.3: without chunked last the length is unknowable (400);
             * with other codings before it the proxy could stream it, but servers differ
             * too much in what they accept, so refuse them (501) as Envoy does. */
            if (p->te_chunked_last != 1)
                return E_TE_NOT_LAST;
            if (p->seen & TE_OTHER)
                return E_TE_UNSUPPORTED;
            m->body = PX_BODY_CHUNKED;
        } else if (cl && m->content_length > 0) {
            m->body = PX_BODY_LENGTH;
        } else {
            m->body = PX_BODY_NONE;
        }
        if ((p->seen & (SEEN_UPGRADE | SEEN_CONN_UPGRADE)) == (SEEN_UPGRADE | SEEN_CONN_UPGRADE))
            m->flags |= PX_H1_UPGRADE;
    } else {
        int s = m->status;
        if (s == 101) {
            m->body = PX_BODY_TUNNEL;
        } else if (s < 200) {
            m->body = PX_BODY_NONE;
            m->flags |= PX_H1_INTERIM;
        } else if (p->req_method == PX_M_CONNECT && s < 300) {
            m->body = PX_BODY_TUNNEL;
        } else if (p->req_method == PX_M_HEAD || s == 204 || s == 304) {
            m->body = PX_BODY_NONE;
        } else if (te) {
            /* Chunked not last, or any coding in HTTP/1.0: only the close delimits. */
            m->body = (p->te_chunked_last == 1 && m->minor >= 1) ? PX_BODY_CHUNKED : PX_BODY_CLOSE;
        } else if (cl) {
            m->body = m->content_length > 0 ? PX_BODY_LENGTH : PX_BODY_NONE;
        } else {
            m->body = PX_BODY_CLOSE;
        }
        if (m->body == PX_BODY_CLOSE)
            alive = false;
    }
    if (alive && m->body != PX_BODY_TUNNEL)
        m->flags |= PX_H1_KEEP_ALIVE;
    return E_NONE;
}

int px_h1_parse(px_h1_parser *p, const char *buf, size_t len, px_h1_msg *m)
{
    if (p->state == S_DONE)
        return (int)m->head_len;
    if (p->state == S_ERROR)
        return errors[p->error].code;
    if (p->state == S_INIT) {
        m->kind = p->kind;
        m->start = 0;
        m->head_len = 0;
        m->minor = 0;
        m->method_id = PX_M_NONE;
        m->method = m->target = m->reason = (px_span){0, 0};
        m->host = -1;
        m->status = 0;
        m->body = PX_BODY_NONE;
        m->content_length = 0;
        m->flags = 0;
        m->nheaders = 0;
        p->state = S_FIRST;
    }
    size_t end = len < p->max_head ? len : p->max_head;
    for (;;) {
        const char *lf = p->scan < end ? memchr(buf + p->scan, '\n', end - p->scan) : NULL;
        if (!lf) {
            p->scan = (uint32_t)end;
            return len >= p->max_head ? fail(p, E_TOO_LARGE) : 0;
        }
        uint32_t at = (uint32_t)(lf - buf);
        if (at == p->pos || buf[at - 1] != '\r')
            return fail(p, E_BARE_LF);
        uint32_t off = p->pos, n = at - 1 - off;
        p->pos = p->scan = at + 1;
        int e;
        if (p->state == S_FIRST) {
            if (n == 0) {
                /* RFC 9112 section 2.2: empty lines before a request line are ignored
                 * (clients send a CRLF after a POST body). */
                continue;
            }
            m->start = off;
            e = p->kind == PX_H1_REQUEST ? parse_request_line(m, buf, off, n)
                                         : parse_status_line(m, buf, off, n);
            if (e)
                return fail(p, e);
            p->state = S_HEADERS;
            continue;
        }
        if (n == 0) {
            e = finish(p, m);
            if (e)
                return fail(p, e);
            m->head_len = at + 1;
            p->state = S_DONE;
            return (int)m->head_len;
        }
        e = parse_header_line(p, m, buf, off, n);
        if (e)
            return fail(p, e);
    }
}

/* Chunked decoder states. */
enum {
    K_SIZE,          /* first hex digit of a chunk size */
    K_SIZE_MORE,     /* more hex digits, ';', BWS or CR */
    K_SIZE_BWS,      /* white space after the size: only ';' may follow */
    K_EXT,           /* chunk extensions up to CR */
    K_SIZE_LF,       /* LF after the size line */
    K_DATA,          /* chunk data */
    K_DATA_CR,       /* CR after chunk data */
    K_DATA_LF,       /* LF after chunk data */
    K_TRAILER_START, /* start of a trailer line, or CR of the final empty line */
    K_TRAILER_NAME,
    K_TRAILER_VALUE,
    K_TRAILER_LF,
    K_END_LF, /* LF of the final empty line */
    K_DONE,
    K_ERROR,
};

void px_chunked_init(px_chunked *c)
{
    memset(c, 0, sizeof *c);
    c->state = K_SIZE;
    c->why = "";
}

static int chunk_fail(px_chunked *c, const char *why, size_t i, size_t *used)
{
    c->state = K_ERROR;
    c->why = why;
    *used = i;
    return -EBADMSG;
}

int px_chunked_feed(px_chunked *c, const char *buf, size_t len, size_t *used)
{
    size_t i = 0;
    *used = 0;
    if (c->state == K_DONE)
        return 1;
    if (c->state == K_ERROR)
        return -EBADMSG;
    while (i < len) {
        unsigned char b = (unsigned char)buf[i];
        switch (c->state) {
        case K_SIZE:
        case K_SIZE_MORE:
            if (is(b, C_HEX)) {
                if (c->line >= 16)
                    return chunk_fail(c, "chunk size too long", i, used);
                unsigned d = b <= '9' ? (unsigned)(b - '0') : (unsigned)(lower(b) - 'a' + 10);
                c->remaining = (c->remaining << 4) | d;
                c->line++;
                c->state = K_SIZE_MORE;
                i++;
                continue;
            }
            if (c->state == K_SIZE)
                return chunk_fail(c, "chunk size is not hex", i, used);
            if (b == ';')
                c->state = K_EXT;
            else if (b == ' ' || b == '\t')
                c->state = K_SIZE_BWS;
            else if (b == '\r')
                c->state = K_SIZE_LF;
            else
                return chunk_fail(c, "chunk size is not hex", i, used);
            break;
        case K_SIZE_BWS:
            if (b == ';')
                c->state = K_EXT;
            else if (b != ' ' && b != '\t')
                return chunk_fail(c, "white space after chunk size", i, used);
            break;
        case K_EXT:
            if (b == '\r')
                c->state = K_SIZE_LF;
            else if (!is(b, C_VALUE))
                return chunk_fail(c, "invalid chunk extension", i, used);
            break;
        case K_SIZE_LF:
            if (b != '\n')
                return chunk_fail(c, "CR not followed by LF", i, used);
            c->line = 0;
            c->state = c->remaining ? K_DATA : K_TRAILER_START;
            i++;
            continue;
        case K_DATA: {
            size_t take = len - i;
            if (take > c->remaining)
                take = (size_t)c->remaining;
            c->remaining -= take;
            c->data += take;
            i += take;
            if (!c->remaining)
                c->state = K_DATA_CR;
            continue;
        }
        case K_DATA_CR:
            if (b != '\r')
                return chunk_fail(c, "chunk data longer than its size", i, used);
            c->state = K_DATA_LF;
            break;
        case K_DATA_LF:
            if (b != '\n')
                return chunk_fail(c, "CR not followed by LF", i, used);
            c->line = 0;
            c->state = K_SIZE;
            i++;
            continue;
        case K_TRAILER_START:
            if (b == '\r')
                c->state = K_END_LF;
            else if (b == ' ' || b == '\t')
                return chunk_fail(c, "obsolete line folding in trailers", i, used);
            else if (is(b, C_TOKEN))
                c->state = K_TRAILER_NAME;
            else
                return chunk_fail(c, "invalid trailer field", i, used);
            break;
        case K_TRAILER_NAME:
            if (b == ':')
                c->state = K_TRAILER_VALUE;
            else if (!is(b, C_TOKEN))
                return chunk_fail(c, "invalid trailer field name", i, used);
            break;
        case K_TRAILER_VALUE:
            if (b == '\r')
                c->state = K_TRAILER_LF;
            else if (!is(b, C_VALUE))
                return chunk_fail(c, "invalid trailer field value", i, used);
            break;
        case K_TRAILER_LF:
            if (b != '\n')
                return chunk_fail(c, "CR not followed by LF", i, used);
            c->state = K_TRAILER_START;
            break;
        case K_END_LF:
            if (b != '\n')
                return chunk_fail(c, "CR not followed by LF", i, used);
            c->state = K_DONE;
            *used = i + 1;
            return 1;
        default:
            return chunk_fail(c, "internal state", i, used);
        }
        /* Byte-wise states that build a line: bound the line and trailer sizes. */
        if (c->state >= K_TRAILER_START && c->state <= K_END_LF) {
            if (++c->trailers > PX_H1_MAX_TRAILERS)
                return chunk_fail(c, "trailer section too large", i, used);
        } else if (++c->line > PX_H1_MAX_CHUNK_LINE) {
            return chunk_fail(c, "chunk size line too long", i, used);
        }
        i++;
    }
    *used = len;
    return 0;
}

/* Methods counted as HTTP when a request line runs past the sniffing bound. */
static bool well_known_method(const char *s, size_t n)
{
    px_h1_method id = method_id(s, n);
    return id != PX_M_OTHER && id != PX_M_NONE;
}

px_sniff px_h1_sniff(const char *buf, size_t len)
{
    size_t n = len < PX_H1_SNIFF_MAX ? len : PX_H1_SNIFF_MAX;
    size_t i = 0;
    while (i < n && buf[i] >= 'A' && buf[i] <= 'Z')
        if (++i > 20)
            return PX_SNIFF_OTHER;
    if (i == n)
        return PX_SNIFF_MORE; /* i <= 20 < PX_H1_SNIFF_MAX, so n == len */
    if (i == 0 || buf[i] != ' ')
        return PX_SNIFF_OTHER;
    size_t mlen = i++, t = i;
    bool capped = n == PX_H1_SNIFF_MAX;
    while (i < n && is((unsigned char)buf[i], C_TARGET))
        i++;
    if (i == n)
        return !capped ? PX_SNIFF_MORE
                       : (well_known_method(buf, mlen) ? PX_SNIFF_HTTP1 : PX_SNIFF_OTHER);
    if (i == t || buf[i] != ' ')
        return PX_SNIFF_OTHER;
    i++;
    static const char want[] = "HTTP/1.";
    for (size_t k = 0; k < sizeof want - 1; k++, i++) {
        if (i == n)
            return !capped ? PX_SNIFF_MORE
                           : (well_known_method(buf, mlen) ? PX_SNIFF_HTTP1 : PX_SNIFF_OTHER);
        if (buf[i] != want[k])
            return PX_SNIFF_OTHER;
    }
    return PX_SNIFF_HTTP1;
}

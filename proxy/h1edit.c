/* h1edit.c - head rewriting and local answers. */
#include "h1edit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *px_h1_rewrite_head(const char *buf, const px_h1_msg *m, px_h1_skip_fn skip, const char *extra,
                         size_t extra_len, uint32_t *out_len)
{
    char *out = malloc((size_t)m->head_len + extra_len + 2);
    if (!out)
        return NULL;
    /* Every line of a head the parser accepted ends in CRLF (bare LF and obs-fold are
     * refused), so header i runs from its name to the next name, the last one to the
     * final CRLF. */
    uint32_t end = m->head_len - 2;
    uint32_t first = m->nheaders ? m->headers[0].name.off : end;
    size_t n = first - m->start;
    memcpy(out, buf + m->start, n);
    for (unsigned i = 0; i < m->nheaders; i++) {
        uint32_t from = m->headers[i].name.off;
        uint32_t to = i + 1 < m->nheaders ? m->headers[i + 1].name.off : end;
        if (skip && skip(buf, m->headers[i].name))
            continue;
        memcpy(out + n, buf + from, to - from);
        n += to - from;
    }
    if (extra_len)
        memcpy(out + n, extra, extra_len);
    n += extra_len;
    memcpy(out + n, "\r\n", 2);
    *out_len = (uint32_t)(n + 2);
    return out;
}

bool px_h1_is_connection_header(const char *buf, px_span name)
{
    return px_span_ieq(buf, name, "connection") || px_span_ieq(buf, name, "keep-alive");
}

const char *px_h1_reason_phrase(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

size_t px_h1_local_reply(int status, const char *body, char *out, size_t cap)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %zu\r\n"
                     "connection: close\r\n\r\n%s",
                     status, px_h1_reason_phrase(status), strlen(body), body);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

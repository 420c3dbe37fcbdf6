/* buf.c - growable NUL-terminated byte buffer. */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ns_buf_init(ns_buf *b)
{
    *b = (ns_buf){0};
}

void ns_buf_init_static(ns_buf *b, char *storage, size_t size)
{
    *b = (ns_buf){.data = storage, .cap = size};
    storage[0] = '\0';
}

void ns_buf_free(ns_buf *b)
{
    if (!b)
        return;
    if (b->heap)
        free(b->data);
    *b = (ns_buf){0};
}

void ns_buf_reset(ns_buf *b)
{
    b->len = 0;
    b->failed = false;
    if (b->data)
        b->data[0] = '\0';
}

/* Makes room for `extra` more bytes plus the terminator. */
static bool reserve(ns_buf *b, size_t extra)
{
    if (b->failed)
        return false;
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t need = b->len + extra + 1;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > ((size_t)-1) / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *p;
    if (b->heap) {
        p = realloc(b->data, cap);
    } else {
        p = malloc(cap);
        if (p && b->len)
            memcpy(p, b->data, b->len);
    }
    if (!p) {
        b->failed = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    b->heap = true;
    return true;
}

void ns_buf_append(ns_buf *b, const void *p, size_t n)
{
    if (!reserve(b, n))
        return;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void ns_buf_puts(ns_buf *b, const char *s)
{
    ns_buf_append(b, s, strlen(s));
}

void ns_buf_putc(ns_buf *b, char c)
{
    ns_buf_append(b, &c, 1);
}

void ns_buf_printf(ns_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        ns_buf_append(b, small, (size_t)n);
        return;
    }
    if (!reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void ns_buf_json_string(ns_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    ns_buf_putc(b, '"');
    const char *run = s;
    for (const char *p = s;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c != '\0' && c >= 0x20 && c != '"' && c != '\\')
            continue;
        ns_buf_append(b, run, (size_t)(p - run));
        if (c == '\0')
            break;
        char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
        size_t n = 2;
        switch (c) {
        case '"':
        case '\\':
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        ns_buf_append(b, esc, n);
        run = p + 1;
    }
    ns_buf_putc(b, '"');
}

void ns_buf_base64(ns_buf *b, const void *data, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *in = data;
    size_t out_len = 4 * ((len + 2) / 3);
    if (!reserve(b, out_len))
        return;
    char *o = b->data + b->len;
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        *o++ = alphabet[v >> 18];
        *o++ = alphabet[(v >> 12) & 63];
        *o++ = alphabet[(v >> 6) & 63];
        *o++ = alphabet[v & 63];
    }
    if (i < len) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0);
        *o++ = alphabet[v >> 18];
        *o++ = alphabet[(v >> 12) & 63];
        *o++ = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    b->len += out_len;
    b->data[b->len] = '\0';
}

const char *ns_buf_cstr(const ns_buf *b)
{
    return b->data ? b->data : "";
}

char *ns_buf_take(ns_buf *b)
{
    if (b->failed) {
        ns_buf_free(b);
        return NULL;
    }
    char *out;
    if (b->heap) {
        out = b->data;
    } else {
        out = malloc(b->len + 1);
        if (out) {
            if (b->len)
                memcpy(out, b->data, b->len);
            out[b->len] = '\0';
        }
    }
    *b = (ns_buf){0};
    return out;
}

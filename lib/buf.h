/* buf.h - a growable byte buffer, always NUL-terminated.
 *
 * A buffer may start on caller-provided storage (a stack array) and moves to the heap
 * only when it outgrows it, so short-lived strings cost no allocation. Appends never
 * fail loudly: on allocation failure the buffer keeps what it had and sets `failed`,
 * which the caller checks once at the end (like a stream's error flag).
 */
#ifndef NS_BUF_H
#define NS_BUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ns_buf {
    char *data;
    size_t len;
    size_t cap;
    bool heap;   /* data is ours to free */
    bool failed; /* an append ran out of memory; contents are truncated */
} ns_buf;

/* An empty heap buffer (no allocation until the first append). */
void ns_buf_init(ns_buf *b);
/* A buffer over `storage` of `size` bytes (size >= 1). */
void ns_buf_init_static(ns_buf *b, char *storage, size_t size);
void ns_buf_free(ns_buf *b);
void ns_buf_reset(ns_buf *b);

void ns_buf_append(ns_buf *b, const void *p, size_t n);
void ns_buf_puts(ns_buf *b, const char *s);
void ns_buf_putc(ns_buf *b, char c);
void ns_buf_printf(ns_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends `s` as a quoted, escaped JSON string. */
void ns_buf_json_string(ns_buf *b, const char *s);

/* Appends the standard base64 encoding (RFC 4648, with padding) of `len` bytes. */
void ns_buf_base64(ns_buf *b, const void *data, size_t len);

/* The contents as a C string ("" for an empty buffer); valid until the next append. */
const char *ns_buf_cstr(const ns_buf *b);

/* Hands the contents to the caller as a malloc'd string (caller frees) and empties the
 * buffer. Returns NULL if the buffer failed or memory ran out. */
char *ns_buf_take(ns_buf *b);

#endif

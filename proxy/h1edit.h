/* h1edit.h - the few edits the proxy makes to HTTP/1.1 messages (pure, no I/O): a head
 * copied with some header lines left out and others added, and the proxy's own short
 * answers (400, 408, 502, 503...).
 */
#ifndef PX_H1EDIT_H
#define PX_H1EDIT_H

#include "http1.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Says whether the header named `name` (a span of `buf`) is left out. */
typedef bool (*px_h1_skip_fn)(const char *buf, px_span name);

/* Copies the parsed head `m` of `buf` (from its request/status line; leading empty lines
 * are dropped) into a new malloc'd buffer, without the header lines `skip` selects (NULL:
 * none) and with `extra` (complete "name: value\r\n" lines) added before the final CRLF.
 * Every other byte is kept as it was. Sets *out_len; returns NULL if out of memory. */
char *px_h1_rewrite_head(const char *buf, const px_h1_msg *m, px_h1_skip_fn skip, const char *extra,
                         size_t extra_len, uint32_t *out_len);

/* True for Connection and Keep-Alive: the hop-by-hop fields a "connection: close"
 * replaces. */
bool px_h1_is_connection_header(const char *buf, px_span name);

/* The standard reason phrase of the statuses the proxy answers itself, "Error" else. */
const char *px_h1_reason_phrase(int status);

/* Writes a complete local answer (status line, text/plain body, content-length,
 * "connection: close") into out[0..cap). Returns its length, or 0 if it does not fit. */
size_t px_h1_local_reply(int status, const char *body, char *out, size_t cap);

#endif

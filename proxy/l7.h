/* l7.h - HTTP/1.1 proxying of a session (the HTTP state of session.h).
 *
 * Requests are parsed as they stream in and forwarded one after another on the same
 * upstream connection, so pipelining and keep-alive are what the client made them; the
 * responses come back in order, each matched with its request (HEAD and CONNECT change
 * the framing), and bodies stream through, chunked ones unchanged (the decoder only
 * finds where they end). Each request head is rewritten only to add a span to its trace
 * context. When a route table sends a request to another backend than the current one,
 * the proxy waits for the in-flight responses, then switches upstream connections.
 * A 101 (or a 2xx to CONNECT) turns the session into an opaque relay.
 *
 * Local answers: 400/431/501/505 for requests the parser refuses, 408 for a head not
 * complete within --header-timeout, 502 for a bad or missing response, 503 when the
 * upstream cannot be reached, 504 when no response head came within --request-timeout.
 * Each is sent after the responses already owed, with "connection: close", and the
 * connection is closed after it.
 *
 * Resilience, for requests sent to a route backend: each final response head, failed
 * connect, connection closed before an answer and request timeout tells the worker's
 * outlier detector how the backend did (a 5xx or a failure counts against it). A failed
 * connect is retried for any request (nothing reached the server); a 503 or a
 * connection closed before any answer only for an idempotent request without a body
 * that was alone in flight and whose client has received nothing of the answer (budget.h
 * has the rules). A retry opens a new upstream connection, preferably to another
 * backend, and sends the kept copy of the head; the client sees only the last answer.
 */
#ifndef PX_L7_H
#define PX_L7_H

#include "session.h"

struct px_http;

/* Starts HTTP processing of `s` (the client bytes read while sniffing are the start of
 * the first request). Returns 0 or -ENOMEM. */
int px_http_start(px_session *s);

/* Works on both directions until they would block (may kill the session or turn it RAW). */
void px_http_run(px_session *s);

/* The upstream connect failed with `err`: answer 503 to the request waiting for it. */
void px_http_up_failed(px_session *s, int err);

/* --header-timeout ran out while reading a request head: 408, then close. */
void px_http_header_timeout(px_session *s);

/* Drain: close now if idle, else answer what is in flight with "connection: close". */
void px_http_drain(px_session *s);

/* --request-timeout ran out for the oldest request (the PX_T_REQUEST queue's callback):
 * 504 and the upstream connection closed. */
void px_http_request_timer_cb(px_timer *t);

/* Stops the HTTP state's own timer (the session is being killed). */
void px_http_stop_timer(struct px_http *h);

/* The PX_T_* timer kind the HTTP state calls for. */
int px_http_timer_kind(const px_session *s);

void px_http_free(struct px_http *h);

#endif

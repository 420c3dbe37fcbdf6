/* trace.h - trace context propagation: W3C traceparent and Zipkin B3 (pure; random ids
 * come from a caller-owned generator state, there is no global state).
 *
 * For every request the proxy forwards it takes the incoming context (traceparent
 * first, then the single `b3` header, then the X-B3-* headers; an invalid one counts as
 * absent), makes a child span of it (same trace id and sampling, a new span id, the
 * incoming span as parent) or starts a new trace when there is none, and rewrites the
 * trace headers: `traceparent` always, and B3 in the form the request used, so that
 * applications instrumented with either see one consistent trace. `tracestate` and other
 * headers pass unchanged.
 *
 * Forwarding a head with new trace headers:
 *     px_trace_ctx in, out; unsigned forms;
 *     int found = px_trace_extract(&msg, buf, &in, &forms) == 0;
 *     px_trace_child(found ? &in : NULL, &worker_rng, &out);
 *     copy each header i unless px_trace_is_header(buf, msg.headers[i].name);
 *     append px_trace_write(&out, forms, tmp, sizeof tmp) bytes before the final CRLF.
 */
#ifndef PX_TRACE_H
#define PX_TRACE_H

#include "http1.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* splitmix64: advances *state and returns 64 random-looking bits. Seed the state once
 * per worker from a real random source (getrandom); any value works, 0 included. */
uint64_t px_rng_next(uint64_t *state);

typedef struct px_trace_ctx {
    uint8_t trace_id[16]; /* a 64-bit B3 id sits in the last 8 bytes, first 8 zero */
    uint8_t span_id[8];
    uint8_t parent_id[8]; /* valid if has_parent */
    bool has_parent;
    bool trace_id_64;    /* came from a 16-hex-digit B3 trace id: written back as such */
    uint8_t flags;       /* W3C trace-flags; bit 0 = sampled */
    bool debug;          /* B3 "d" / X-B3-Flags: 1 (implies sampled) */
    bool sampling_known; /* B3 may defer the sampling decision; W3C always decides */
} px_trace_ctx;

/* Header forms of trace context a request carried (bit mask); px_trace_write writes
 * back the same forms so that applications see them in the form they sent. */
enum {
    PX_TRACE_W3C = 1u << 0,       /* traceparent */
    PX_TRACE_B3_SINGLE = 1u << 1, /* b3: {trace}-{span}[-{sampling}[-{parent}]] */
    PX_TRACE_B3_MULTI = 1u << 2,  /* X-B3-TraceId, X-B3-SpanId, ... */
};

/* Longest output of px_trace_write (traceparent plus all B3 headers with CRLFs). */
#define PX_TRACE_HEADERS_MAX 320
/* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define PX_TRACEPARENT_LEN 55

/* Parses a traceparent value (W3C Trace Context level 1). Version 00 must be exactly 55
 * characters; a higher version (not ff) is read by its first 55 characters if the next
 * one, if any, is '-'. Lower-case hex only; all-zero trace or parent ids are invalid.
 * On success sets trace id, span_id (the caller's parent id) and flags and returns 0;
 * otherwise -EINVAL and *out is unchanged. */
int px_traceparent_parse(const char *s, size_t len, px_trace_ctx *out);

/* Writes the version-00 traceparent of `ctx` (55 characters and a NUL) into out, which
 * must hold at least PX_TRACEPARENT_LEN + 1 bytes. Returns PX_TRACEPARENT_LEN. */
size_t px_traceparent_format(const px_trace_ctx *ctx, char *out);

/* Parses a single `b3` header value: "{trace}-{span}", optionally "-{sampling}" (0, 1,
 * d) and then "-{parent}", or only a sampling state ("0": not sampled, no ids; this
 * returns -ENOENT after setting flags, as there is no context to continue). Trace ids
 * are 16 or 32 hex digits, span ids 16; hex may be of either case. Returns 0 or -EINVAL. */
int px_b3_parse_single(const char *s, size_t len, px_trace_ctx *out);

/* Finds and validates the incoming context in a parsed head (px_h1_parse), trying
 * traceparent, then b3, then X-B3-*. Sets *forms (may be NULL) to the PX_TRACE_* forms
 * present, valid or not. Returns 0 and fills *out from the first valid form, or -ENOENT
 * if none is valid (start a new trace). */
int px_trace_extract(const px_h1_msg *m, const char *buf, px_trace_ctx *out, unsigned *forms);

/* Makes the context to forward: a child of `parent` (same trace id, flags and debug;
 * new span id; parent_id = parent's span id), or, if `parent` is NULL, a new trace
 * (128-bit trace id, no parent, not sampled: this proxy records no spans, so whether a
 * new trace is sampled is the caller's policy; set out->flags bit 0 to sample it). Ids
 * are never all zero. */
void px_trace_child(const px_trace_ctx *parent, uint64_t *rng, px_trace_ctx *out);

/* True if `name` (a header name span of `buf`) is one px_trace_write replaces:
 * traceparent, b3, x-b3-traceid, x-b3-spanid, x-b3-parentspanid, x-b3-sampled,
 * x-b3-flags. */
bool px_trace_is_header(const char *buf, px_span name);

/* Writes the trace header fields for `ctx`, each ending in CRLF, into out[0..cap):
 * traceparent always, plus `b3` if `forms` has PX_TRACE_B3_SINGLE and the X-B3-*
 * headers if it has PX_TRACE_B3_MULTI. Returns the length written, or 0 if `cap` is too
 * small (PX_TRACE_HEADERS_MAX always suffices). Not NUL-terminated. */
size_t px_trace_write(const px_trace_ctx *ctx, unsigned forms, char *out, size_t cap);

#endif

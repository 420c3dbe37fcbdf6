/* http1.h - HTTP/1.1 message heads, chunked framing and protocol sniffing (pure, no I/O).
 *
 * The proxy forwards bytes unchanged wherever it can; it only needs to know where a
 * message head ends, what its framing is (how long the body is) and a few headers
 * (Host, Connection, Upgrade, Expect, trace headers). So this parser:
 *   - never allocates and never copies: every string is a px_span, an (offset, length)
 *     pair into the caller's buffer. Offsets (not pointers) stay valid when the caller
 *     moves or grows its buffer between calls, as long as the bytes keep their order
 *     from the message start;
 *   - is incremental: bytes may arrive in pieces of any size (down to one byte); each
 *     call continues from where the previous one stopped and validates every byte once
 *     (only the search for the end of an unfinished line is resumed, never repeated);
 *   - is strict where leniency lets a client smuggle a request past a server that reads
 *     the stream differently (RFC 9112 section 11.2): Content-Length together with
 *     Transfer-Encoding, differing Content-Lengths, non-digit lengths, codings other than
 *     a final "chunked" in requests, obs-fold, bare CR, bare LF, white space before the
 *     colon, control bytes, invalid token bytes, a missing or repeated Host in
 *     HTTP/1.1 requests, Transfer-Encoding in HTTP/1.0 requests. All are refused with a
 *     status to answer (400, 431, 501, 505; the I/O side answers 502 for a bad response).
 *
 * Typical use (request side):
 *     px_h1_parser p; px_h1_msg m;
 *     px_h1_init(&p, PX_H1_REQUEST, PX_M_NONE);
 *     for each read: r = px_h1_parse(&p, buf, buffered, &m);
 *         r > 0: the head is buf[0..r); the body follows (m.body, m.content_length)
 *         r == 0: read more (the head is incomplete, nothing is lost)
 *         r < 0: refuse with px_h1_status(&p) and close; px_h1_reason(&p) says why.
 * `buf` must always start at the first byte of the message (leading empty lines
 * included) and hold every byte fed so far; the parser remembers how far it got.
 */
#ifndef PX_HTTP1_H
#define PX_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Part of the caller's buffer: bytes buf[off .. off + len). */
typedef struct px_span {
    uint32_t off;
    uint32_t len;
} px_span;

/* The bytes of `s` in `buf` (not NUL-terminated). */
static inline const char *px_span_ptr(const char *buf, px_span s)
{
    return buf + s.off;
}

/* True if span `s` of `buf` equals `lit` ignoring ASCII case (header names, tokens). */
bool px_span_ieq(const char *buf, px_span s, const char *lit);

/* Most header fields accepted in one head (Envoy's default too); more is refused (431). */
#define PX_H1_MAX_HEADERS 100
/* Default largest head, request/status line and header fields included (431 above). */
#define PX_H1_MAX_HEAD (64 * 1024)
/* Longest chunk-size line (with extensions) and largest trailer section accepted. */
#define PX_H1_MAX_CHUNK_LINE 4096
#define PX_H1_MAX_TRAILERS   (16 * 1024)

typedef enum px_h1_kind {
    PX_H1_REQUEST = 0,
    PX_H1_RESPONSE = 1,
} px_h1_kind;

/* Methods the proxy treats specially (idempotency for retries, HEAD and CONNECT for
 * response framing); any other valid token is PX_M_OTHER. */
typedef enum px_h1_method {
    PX_M_NONE = 0, /* not a request, or not known yet */
    PX_M_GET,
    PX_M_HEAD,
    PX_M_POST,
    PX_M_PUT,
    PX_M_DELETE,
    PX_M_CONNECT,
    PX_M_OPTIONS,
    PX_M_TRACE,
    PX_M_PATCH,
    PX_M_OTHER,
} px_h1_method;

/* RFC 9110 section 9.2.2: a request with this method may be sent again after a failure
 * (GET, HEAD, PUT, DELETE, OPTIONS, TRACE). */
bool px_h1_method_idempotent(px_h1_method m);

/* How the body after the head is delimited. */
typedef enum px_h1_body {
    PX_BODY_NONE = 0, /* no body: the next message starts right after the head */
    PX_BODY_LENGTH,   /* exactly content_length bytes (never 0: that is PX_BODY_NONE) */
    PX_BODY_CHUNKED,  /* chunked: feed the bytes after the head to a px_chunked */
    PX_BODY_CLOSE,    /* responses only: everything until the server closes */
    PX_BODY_TUNNEL,   /* after a 101 or a 2xx to CONNECT: relay raw bytes both ways */
} px_h1_body;

/* px_h1_msg.flags */
enum {
    PX_H1_KEEP_ALIVE = 1u << 0,      /* the connection may carry another message after this one */
    PX_H1_CONN_CLOSE = 1u << 1,      /* "Connection: close" was present */
    PX_H1_CONN_KEEP_ALIVE = 1u << 2, /* "Connection: keep-alive" was present */
    PX_H1_UPGRADE = 1u << 3,         /* request: "Connection: upgrade" plus an Upgrade header */
    PX_H1_EXPECT_CONTINUE = 1u << 4, /* request: "Expect: 100-continue" */
    PX_H1_INTERIM = 1u << 5,         /* response: 1xx other than 101 (the final one follows) */
};

typedef struct px_h1_header {
    px_span name;  /* token, case preserved */
    px_span value; /* leading and trailing SP/HTAB removed; may be empty */
} px_h1_header;

/* One parsed head. Every span is an offset into the buffer given to px_h1_parse. */
typedef struct px_h1_msg {
    px_h1_kind kind;
    uint32_t start;    /* offset of the request/status line (after skipped empty lines) */
    uint32_t head_len; /* bytes from buffer start through the final CRLF of the head */
    int minor;         /* HTTP/1.<minor>: 0 or 1 */
    /* requests */
    px_h1_method method_id;
    px_span method;
    px_span target;
    int host; /* index in headers[] of Host, or -1 */
    /* responses */
    int status; /* 100..999 */
    px_span reason;
    /* both */
    px_h1_body body;
    uint64_t content_length; /* for PX_BODY_LENGTH */
    unsigned flags;          /* PX_H1_* */
    unsigned nheaders;
    px_h1_header headers[PX_H1_MAX_HEADERS];
} px_h1_msg;

/* Parser state between calls; opaque to callers (fields may change). */
typedef struct px_h1_parser {
    px_h1_kind kind;
    px_h1_method req_method; /* responses: the method of the request being answered */
    uint32_t max_head;
    uint32_t pos;  /* first byte not yet consumed (start of the current line) */
    uint32_t scan; /* how far the search for the current line's LF has got */
    int state;     /* internal */
    int error;     /* internal error code, 0 if none */
    uint32_t seen; /* internal: which framing headers have been seen */
    uint32_t te_chunked_last;
} px_h1_parser;

/* Prepares `p` for one message head of kind `kind`. For a response, `req_method` is the
 * method of the request it answers (HEAD responses and 2xx to CONNECT have no body);
 * for a request pass PX_M_NONE. Limits are the defaults (PX_H1_MAX_HEAD). */
void px_h1_init(px_h1_parser *p, px_h1_kind kind, px_h1_method req_method);

/* Sets the largest head accepted (bytes, at least 256, at most 16 MiB; clamped). */
void px_h1_set_max_head(px_h1_parser *p, uint32_t max_head);

/* Parses the head in buf[0..len). `buf` holds the message from its first byte; every
 * call must pass the same bytes as before plus possibly more (len never shrinks).
 * `msg` must be the same object on every call for one message (it is filled
 * progressively); it need not be initialised before the first call.
 * Returns the head length (> 0) once the head is complete: msg is then fully set and the
 * body (per msg->body) starts at buf[head_len]. Returns 0 if more bytes are needed.
 * Returns a negative errno if the head is refused: -EBADMSG (malformed or ambiguous
 * framing), -EMSGSIZE (too large or too many headers), -ENOTSUP (unsupported version or
 * transfer coding). After an error every further call returns the same error; see
 * px_h1_status and px_h1_reason. Calling again after success returns the same length. */
int px_h1_parse(px_h1_parser *p, const char *buf, size_t len, px_h1_msg *msg);

/* The status a server should answer to a refused request: 400, 431 (too large), 501
 * (transfer coding), 505 (version); 0 if there was no error. For responses the proxy
 * answers 502 whatever this says. */
int px_h1_status(const px_h1_parser *p);

/* One short static phrase saying why the head was refused ("content-length and
 * transfer-encoding both present"), for a log line or a metric label; "" if none. */
const char *px_h1_reason(const px_h1_parser *p);

/* Index of the first header named `name` (ASCII case-insensitive) at or after index
 * `from`, or -1. Loop over repeats with from = previous + 1. */
int px_h1_find(const px_h1_msg *m, const char *buf, const char *name, int from);

/* Incremental decoder of a chunked body (RFC 9112 section 7.1). The proxy streams the
 * body through unchanged; the decoder tells it where the body (last chunk and trailer
 * section included) ends, so that the next message can be parsed, and refuses what a
 * server might read differently: non-hex or over-long sizes (more than 16 hex digits),
 * white space before the size, bare CR or LF, chunk data not followed by CRLF, control
 * bytes in extensions, malformed trailer fields, obs-fold. */
typedef struct px_chunked {
    int state;          /* internal */
    uint64_t remaining; /* data bytes left in the current chunk */
    uint32_t line;      /* bytes seen in the current size/trailer line */
    uint32_t trailers;  /* bytes of trailer section seen */
    uint64_t data;      /* total chunk-data bytes seen (the decoded body size) */
    const char *why;    /* static reason once an error happened */
} px_chunked;

void px_chunked_init(px_chunked *c);

/* Feeds the next `len` bytes of the body. Sets *used to how many of them belong to the
 * body (forward exactly those). Returns 1 when the body ended (*used may be < len: the
 * rest is the next message), 0 when all `len` bytes were used and more are needed, or
 * -EBADMSG (bad framing: *used bytes were fine, the rest must not be forwarded; close
 * the connection). The decoder keeps no pointer into `buf`. */
int px_chunked_feed(px_chunked *c, const char *buf, size_t len, size_t *used);

/* Result of px_h1_sniff. */
typedef enum px_sniff {
    PX_SNIFF_OTHER = 0, /* not HTTP/1.x: relay as opaque TCP */
    PX_SNIFF_HTTP1 = 1, /* a request line "TOKEN SP target SP HTTP/1." */
    PX_SNIFF_MORE = 2,  /* undecided: wait for more bytes (with a timeout, see below) */
} px_sniff;

/* Longest prefix px_h1_sniff looks at before deciding. */
#define PX_H1_SNIFF_MAX 8192

/* Decides whether the first bytes a client sent start an HTTP/1.x request: a method
 * token (uppercase letters, up to 20), one SP, a request target without spaces or
 * control bytes, one SP, "HTTP/1.". Anything else decides PX_SNIFF_OTHER at the first
 * byte that rules HTTP out (a TLS ClientHello at byte 0), so that other protocols are
 * never held back; a request line that is still going after PX_H1_SNIFF_MAX bytes counts
 * as HTTP only if its method is a well-known one. Stateless: call again with the longer
 * buffer. The caller must bound the wait for PX_SNIFF_MORE (protocols where the server
 * speaks first send nothing): after a short timeout treat the connection as opaque. */
px_sniff px_h1_sniff(const char *buf, size_t len);

#endif

/* discovery.h - the client side of the operator's route discovery protocol (pure: no
 * sockets, no clock; the thread that does the I/O is discovery_client.h).
 *
 * The operator serves the route table (routes.h's JSON) on port 15010. The proxy asks
 *
 *   GET /v1/routes HTTP/1.1                        the first time (answered at once)
 *   GET /v1/routes?version=V&wait=S HTTP/1.1       then: held by the server until its
 *                                                  table's version is not V, or S seconds
 *
 * with Host, "Connection: close" and "Accept: application/json", one TCP connection per
 * request. Answers: 200 with a table; 304 nothing changed during the wait (ask again at
 * once); 503 the server is not ready (caches filling, not the leader): retry after a
 * backoff; anything else is an error: keep the table in use, retry after a backoff.
 * Versions are opaque numbers (a hash of the table): only equality means anything.
 */
#ifndef PX_DISCOVERY_H
#define PX_DISCOVERY_H

#include "err.h"
#include "http1.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest --discovery-address: a 253-character name, ":", a port (plus NUL). */
#define PX_DISC_ADDR_MAX 264
/* Largest table body accepted, and the most bytes a response may take (head, body, and
 * chunk framing): px_disc_read has decided before a buffer of this size is full. */
#define PX_DISC_BODY_MAX     (16 * 1024 * 1024)
#define PX_DISC_RESPONSE_MAX (PX_H1_MAX_HEAD + PX_DISC_BODY_MAX + (1 << 20) + 1)
/* --discovery-wait bounds and default, in seconds. */
#define PX_DISC_WAIT_MIN     1
#define PX_DISC_WAIT_MAX     300
#define PX_DISC_WAIT_DEFAULT 30
/* A request may take the wait it asked for plus this much before it counts as failed. */
#define PX_DISC_SLACK_MS 10000

typedef struct px_disc_addr {
    char host[254]; /* DNS name or IP literal, brackets removed */
    uint16_t port;
    char authority[PX_DISC_ADDR_MAX]; /* the Host header value: "host:port", "[v6]:port" */
} px_disc_addr;

/* Parses "HOST:PORT" where HOST is a DNS name or an IPv4 literal, or "[IPv6]:PORT".
 * Returns 0, or -EINVAL with a sentence in `err` saying what is wrong (no port, port out
 * of range, IPv6 without brackets, a scheme or path, a bad name). */
int px_disc_parse_address(const char *s, px_disc_addr *out, ns_err *err);

/* Writes the request into out[0..cap): without `have_version` the first request (no
 * query), else the long-poll for a table other than `version`, held `wait_s` seconds at
 * most. Returns its length, or -ENOSPC if it does not fit. */
int px_disc_request(const px_disc_addr *a, bool have_version, uint64_t version, unsigned wait_s,
                    char *out, size_t cap);

/* Reads one response as its bytes arrive. Feed the whole response so far each time (the
 * same bytes plus possibly more, from the first byte: the head parser keeps offsets). */
typedef struct px_disc_reader {
    px_h1_parser p;
    px_h1_msg m;
    size_t head_len;   /* 0 until the head is complete */
    px_chunked chunks; /* for a chunked 200 */
    size_t chunk_fed;  /* body bytes fed to `chunks` so far */
} px_disc_reader;

typedef struct px_disc_reply {
    int status;
    /* For a 200 the body is buf[body_off .. body_off + body_len) (a chunked body is
     * decoded in place: the buffer is changed); for other statuses no body is read. */
    size_t body_off;
    size_t body_len;
} px_disc_reply;

void px_disc_reader_init(px_disc_reader *r);

/* Feeds buf[0..len); `eof` when the server has closed its side. Returns 1 when the
 * response is complete (*out set; the rest of the stream, if any, is not looked at), 0
 * when more bytes are needed, or a negative errno with a sentence in `err`: -EBADMSG
 * (malformed head or chunked framing, closed before the head ended, truncated body),
 * -EMSGSIZE (head over PX_H1_MAX_HEAD, body over PX_DISC_BODY_MAX), -EPROTO (an interim or
 * upgrade answer, which a GET with Connection: close never asks for). */
int px_disc_read(px_disc_reader *r, char *buf, size_t len, bool eof, px_disc_reply *out,
                 ns_err *err);

/* What an answer means for the client. */
typedef enum px_disc_outcome {
    PX_DISC_TABLE,     /* 200: parse the body; swap it in if it parses and is new */
    PX_DISC_UNCHANGED, /* 304 to a long-poll: ask again at once */
    PX_DISC_NOT_READY, /* 503: back off, retry */
    PX_DISC_FAILED,    /* anything else: keep the table, back off, retry */
} px_disc_outcome;

/* `have_version`: the request carried a version (a 304 to the first request, which
 * asked for no version, is a server bug). */
px_disc_outcome px_disc_classify(int status, bool have_version);

/* Retry delays: 1 s doubling to 30 s, each drawn uniformly from the upper half of its
 * step ([step/2, step]) so that proxies restarted together spread out. */
#define PX_BACKOFF_FIRST_MS 1000
#define PX_BACKOFF_MAX_MS   30000

typedef struct px_backoff {
    unsigned failures; /* since the last success */
} px_backoff;

/* The delay before the next retry, given a uniformly random 64-bit `rnd`; counts one
 * more failure. */
int64_t px_backoff_next_ms(px_backoff *b, uint64_t rnd);

/* After a success: the next failure waits about PX_BACKOFF_FIRST_MS again. */
void px_backoff_reset(px_backoff *b);

#endif

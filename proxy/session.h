/* session.h - one proxied connection: the accepted downstream socket, the upstream one,
 * the bytes between them, and what the proxy has decided about them.
 *
 * Life of a session (all on one worker thread):
 *   SNIFF  bytes from the client decide HTTP/1.x or not (http1.h's sniffer); meanwhile
 *          the upstream connect to the original destination is already under way, so a
 *          server that speaks first (SMTP, MySQL) decides "opaque" at once;
 *   RAW    opaque TCP relay, both ways, byte for byte (relay.c);
 *   HTTP   HTTP/1.1 at layer 7 (l7.c); an Upgrade or CONNECT that succeeds turns RAW;
 *   LINGER the last response is out and our side is shut down: read and drop what the
 *          client still sends until it closes or a short timer runs out, so that a close
 *          with unread data does not turn into a reset that destroys the response.
 * A session is never freed while epoll events may still point at it: killing one moves
 * it to the worker's dead list, freed after the current batch of events.
 */
#ifndef PX_SESSION_H
#define PX_SESSION_H

#include "loop.h"
#include "stats.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct px_worker;
struct px_http;

/* Bytes data[start..end) of a buffer with capacity cap; data NULL until first needed. */
typedef struct px_bytes {
    char *data;
    uint32_t start, end, cap;
} px_bytes;

static inline uint32_t px_bytes_len(const px_bytes *b)
{
    return b->end - b->start;
}

/* Makes room at the tail for more bytes, allocating `initial_cap` on first use, moving
 * the data to the front or growing the storage, but never beyond `max_len` bytes held.
 * Returns how many bytes may be appended at data + end (0: full, or out of memory). */
uint32_t px_bytes_room(px_bytes *b, uint32_t initial_cap, uint32_t max_len);
void px_bytes_consume(px_bytes *b, uint32_t n);
/* Frees the storage if it holds nothing (idle keep-alive connections cost no buffer). */
void px_bytes_trim(px_bytes *b);
void px_bytes_free(px_bytes *b);

/* One socket of a session and the bytes read from it that are bound for the other one. */
typedef struct px_end {
    px_io io; /* fd -1 when there is no socket */
    struct px_session *s;
    bool readable;   /* epoll said so and no read has hit EAGAIN since */
    bool writable;   /* likewise for writes */
    bool rdhup;      /* epoll saw the peer's FIN: read on to EOF even after a short read */
    bool eof;        /* the peer finished sending (read returned 0) */
    bool shut;       /* we sent FIN (shutdown SHUT_WR) to this socket */
    bool connecting; /* upstream connect not finished */
    px_bytes in;     /* read from this socket, not yet written to the other */
    uint32_t fwd;    /* how many bytes at the front of `in` may be written now */
    char *pre;       /* a rewritten message head, written before in's bytes */
    uint32_t pre_len, pre_off;
    int pipe[2]; /* splice(2) relay: socket -> pipe -> other socket; -1 if none */
    uint32_t piped;
} px_end;

/* A backend of a route of the worker's table, as picked for a request or connection:
 * route -1 when there is none (the original destination). Route indexes are only
 * meaningful in the table generation `gen` (the worker counts its swaps). */
typedef struct px_backend_ref {
    int32_t route;
    int32_t backend;
    uint32_t gen;
} px_backend_ref;

typedef enum px_state {
    PX_S_SNIFF = 0,
    PX_S_RAW,
    PX_S_HTTP,
    PX_S_LINGER,
    PX_S_DEAD,
} px_state;

typedef struct px_session {
    struct px_worker *w;
    struct px_session *prev, *next; /* the worker's live list, then its dead list */
    px_end down, up;
    px_dir dir;
    px_state state;
    struct sockaddr_storage orig;   /* the original destination */
    struct sockaddr_storage target; /* where `up` is (being) connected; family 0 if none */
    char dest[80];                  /* metric label of target: route backend or ip:port */
    px_timer timer;
    int up_error; /* errno of a failed upstream connect, 0 if none */
    bool lazy;    /* no upstream connect yet: the destination is routed (per request) */
    /* Opaque TCP to a routed service address: the backend `up` connects to, the ones
     * that refused this connection, and how many times it was retried. */
    px_backend_ref via;
    uint64_t tried;
    unsigned retries;
    bool draining;
    struct px_http *http;
} px_session;

/* Takes an accepted connection of `dir` (listener family `family`). Closes `fd` itself
 * on any failure. */
void px_session_accept(struct px_worker *w, int fd, px_dir dir, int family);

/* Starts connecting `s->up` to `target` (closing any previous upstream socket). The
 * connection to an app from the inbound side comes from --inbound-source so that
 * nutshell-init's rules let it through. Returns 0 or -errno (then s->up_error is set). */
int px_session_connect(px_session *s, const struct sockaddr_storage *target, const char *dest);

/* Closes the upstream socket (HTTP: a keep-alive connection to another backend). */
void px_session_close_up(px_session *s);

/* Works on the session until it would block; call after any event. */
void px_session_run(px_session *s);

/* Frees a killed session (the worker does it once no event can point at it). */
void px_session_free(px_session *s);

/* Sets up the worker's timer queues, one per PX_T_* kind. */
void px_session_queues_init(struct px_worker *w);

/* Ends the session: with `reset`, both sockets get a TCP reset, else a normal close. */
void px_session_kill(px_session *s, bool reset);

/* Moves to LINGER: shuts our side of the client down and waits for it to close. */
void px_session_linger(px_session *s);

/* Drain: closes the session if it is idle, otherwise lets it finish its work. */
void px_session_drain(px_session *s);

/* Arms the session timer in the worker queue for `kind`. */
enum {
    PX_T_SNIFF,
    PX_T_CONNECT,
    PX_T_HEADER,
    PX_T_IDLE,
    PX_T_HTTP_IDLE,
    PX_T_LINGER,
    PX_T_REQUEST, /* the HTTP state's own timer (l7.h), not the session's */
    PX_T_COUNT,
};
void px_session_timer(px_session *s, int kind);

/* Counts bytes moved for metrics: `e` is the socket read from or written to. */
void px_session_count(px_session *s, const px_end *e, bool wrote, uint64_t n);

#endif

/* loop.h - one epoll event loop per thread, with coarse timers.
 *
 * Sockets are registered once, edge-triggered for reading and writing: the owner keeps
 * "readable"/"writable" flags and works until EAGAIN, so that stopping to read
 * (backpressure) costs no epoll_ctl call. Timers live in FIFO queues of one fixed
 * duration each (connect, header, idle...): arming appends at the tail, so every queue is
 * sorted by expiry and the loop only ever looks at queue heads. Millisecond precision,
 * from CLOCK_MONOTONIC read once per wake-up.
 */
#ifndef PX_LOOP_H
#define PX_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct px_io px_io;
typedef void (*px_io_cb)(px_io *io, uint32_t events);

/* A file descriptor and who to call when epoll reports it. */
struct px_io {
    int fd;
    px_io_cb cb;
};

typedef struct px_timer px_timer;
typedef struct px_tq px_tq;
typedef void (*px_timer_cb)(px_timer *t);

struct px_timer {
    px_timer *prev, *next;
    px_tq *q; /* the queue it waits in; NULL when not armed */
    int64_t at_ms;
};

/* A queue of timers that all run `dur_ms` after being armed, then call `cb`. */
struct px_tq {
    px_timer *head, *tail;
    int64_t dur_ms;
    px_timer_cb cb;
};

#define PX_LOOP_MAX_QUEUES 8

typedef struct px_loop {
    int epfd;
    int64_t now_ms;
    size_t nqueues;
    px_tq *queues[PX_LOOP_MAX_QUEUES];
} px_loop;

/* Creates the epoll instance. Returns 0 or -errno. */
int px_loop_init(px_loop *l);
void px_loop_close(px_loop *l);

/* Registers `io` for `events` (EPOLLIN, EPOLLOUT, EPOLLET...). Returns 0 or -errno. */
int px_loop_add(px_loop *l, px_io *io, uint32_t events);
/* Changes the events of a registered `io`. Returns 0 or -errno. */
int px_loop_mod(px_loop *l, px_io *io, uint32_t events);
/* Unregisters `io` (before closing a descriptor that may be shared). */
void px_loop_del(px_loop *l, px_io *io);

/* Adds a timer queue (at most PX_LOOP_MAX_QUEUES); `q` must outlive the loop. */
void px_loop_add_queue(px_loop *l, px_tq *q, int64_t dur_ms, px_timer_cb cb);

/* (Re)arms `t` in `q`: it fires q->dur_ms from now, unless re-armed or stopped before. */
void px_timer_arm(px_loop *l, px_tq *q, px_timer *t);
/* Pushes an armed timer's expiry to now + its queue's duration, at most once per second
 * (activity on a busy connection must not cost a list move per packet). */
void px_timer_touch(px_loop *l, px_timer *t);
void px_timer_stop(px_timer *t);

/* Waits up to `max_wait_ms` (or less, for the next timer) for events, calls their owners,
 * then fires due timers. Returns the number of events, or -errno (EINTR is 0). */
int px_loop_poll(px_loop *l, int max_wait_ms);

/* The loop's idea of now: monotonic milliseconds, refreshed at each wake-up. */
int64_t px_now_ms(void);
/* Monotonic nanoseconds, read now (request latencies). */
int64_t px_now_ns(void);

#endif

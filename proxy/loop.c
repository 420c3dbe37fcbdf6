/* loop.c - epoll wait, dispatch, and timer queues. */
#include "loop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

int64_t px_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t px_now_ms(void)
{
    return px_now_ns() / 1000000;
}

int px_loop_init(px_loop *l)
{
    memset(l, 0, sizeof(*l));
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0)
        return -errno;
    l->now_ms = px_now_ms();
    return 0;
}

void px_loop_close(px_loop *l)
{
    if (l->epfd >= 0)
        close(l->epfd);
    l->epfd = -1;
}

int px_loop_add(px_loop *l, px_io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) == 0 ? 0 : -errno;
}

int px_loop_mod(px_loop *l, px_io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) == 0 ? 0 : -errno;
}

void px_loop_del(px_loop *l, px_io *io)
{
    if (io->fd >= 0)
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

void px_loop_add_queue(px_loop *l, px_tq *q, int64_t dur_ms, px_timer_cb cb)
{
    memset(q, 0, sizeof(*q));
    q->dur_ms = dur_ms;
    q->cb = cb;
    if (l->nqueues < PX_LOOP_MAX_QUEUES)
        l->queues[l->nqueues++] = q;
}

void px_timer_stop(px_timer *t)
{
    px_tq *q = t->q;
    if (!q)
        return;
    if (t->prev)
        t->prev->next = t->next;
    else
        q->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        q->tail = t->prev;
    t->prev = t->next = NULL;
    t->q = NULL;
}

void px_timer_arm(px_loop *l, px_tq *q, px_timer *t)
{
    px_timer_stop(t);
    t->at_ms = l->now_ms + q->dur_ms;
    t->q = q;
    t->prev = q->tail;
    t->next = NULL;
    if (q->tail)
        q->tail->next = t;
    else
        q->head = t;
    q->tail = t;
}

void px_timer_touch(px_loop *l, px_timer *t)
{
    if (t->q && t->at_ms - t->q->dur_ms + 1000 <= l->now_ms)
        px_timer_arm(l, t->q, t);
}

static int next_timeout(const px_loop *l, int max_wait_ms)
{
    int64_t wait = max_wait_ms;
    for (size_t i = 0; i < l->nqueues; i++) {
        const px_timer *h = l->queues[i]->head;
        if (h && h->at_ms - l->now_ms < wait)
            wait = h->at_ms - l->now_ms;
    }
    return wait < 0 ? 0 : (int)wait;
}

static void fire_timers(px_loop *l)
{
    for (size_t i = 0; i < l->nqueues; i++) {
        px_tq *q = l->queues[i];
        /* A callback may arm timers in this queue again (at now + dur, behind the head),
         * so the loop ends. */
        while (q->head && q->head->at_ms <= l->now_ms) {
            px_timer *t = q->head;
            px_timer_stop(t);
            q->cb(t);
        }
    }
}

int px_loop_poll(px_loop *l, int max_wait_ms)
{
    struct epoll_event evs[64];
    int n = epoll_wait(l->epfd, evs, 64, next_timeout(l, max_wait_ms));
    int e = errno;
    l->now_ms = px_now_ms();
    if (n < 0)
        return e == EINTR ? 0 : -e;
    for (int i = 0; i < n; i++) {
        px_io *io = evs[i].data.ptr;
        io->cb(io, evs[i].events);
    }
    fire_timers(l);
    return n;
}

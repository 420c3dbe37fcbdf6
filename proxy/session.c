/* session.c - accepting, sniffing, connecting, timers and the end of a session. */
#include "session.h"

#include "http1.h"
#include "l7.h"
#include "log.h"
#include "net.h"
#include "relay.h"
#include "routing.h"
#include "worker.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define IO_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

/* ---------------------------------------------------------------- buffers */

uint32_t px_bytes_room(px_bytes *b, uint32_t initial_cap, uint32_t max_len)
{
    uint32_t len = b->end - b->start;
    if (len >= max_len)
        return 0;
    if (!b->data) {
        uint32_t cap = initial_cap < max_len ? initial_cap : max_len;
        b->data = malloc(cap);
        if (!b->data)
            return 0;
        b->cap = cap;
        b->start = b->end = 0;
    }
    if (len == 0) {
        b->start = b->end = 0;
    } else if (b->start > 0 && b->cap - b->end < b->cap / 4) {
        memmove(b->data, b->data + b->start, len);
        b->start = 0;
        b->end = len;
    }
    if (b->end == b->cap && b->cap < max_len) {
        uint32_t cap = b->cap * 2 > max_len ? max_len : b->cap * 2;
        char *p = realloc(b->data, cap);
        if (!p)
            return 0;
        b->data = p;
        b->cap = cap;
    }
    uint32_t room = b->cap - b->end;
    if (room > max_len - len)
        room = max_len - len;
    return room;
}

void px_bytes_consume(px_bytes *b, uint32_t n)
{
    b->start += n;
    if (b->start >= b->end)
        b->start = b->end = 0;
}

void px_bytes_trim(px_bytes *b)
{
    if (b->data && b->start == b->end) {
        free(b->data);
        memset(b, 0, sizeof(*b));
    }
}

void px_bytes_free(px_bytes *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* ---------------------------------------------------------------- metrics */

void px_session_count(px_session *s, const px_end *e, bool wrote, uint64_t n)
{
    px_dir_stats *d = &px_st.dir[s->dir];
    if (e == &s->down)
        px_stat_add(wrote ? &d->tx_bytes : &d->rx_bytes, (int64_t)n);
    else
        px_stat_add(wrote ? &d->up_tx_bytes : &d->up_rx_bytes, (int64_t)n);
}

/* ---------------------------------------------------------------- ends */

static void end_init(px_end *e, px_session *s, int fd, px_io_cb cb)
{
    memset(e, 0, sizeof(*e));
    e->io.fd = fd;
    e->io.cb = cb;
    e->s = s;
    e->pipe[0] = e->pipe[1] = -1;
}

static void end_close(px_end *e, bool reset)
{
    if (e->io.fd >= 0) {
        if (reset)
            px_close_reset(e->io.fd);
        else
            close(e->io.fd);
    }
    e->io.fd = -1;
    e->readable = e->writable = e->connecting = false;
    px_end_close_pipe(e);
}

static void end_free(px_end *e)
{
    px_bytes_free(&e->in);
    free(e->pre);
    e->pre = NULL;
    e->pre_len = e->pre_off = e->fwd = 0;
}

/* ---------------------------------------------------------------- timers */

void px_session_timer(px_session *s, int kind)
{
    px_tq *q = &s->w->queues[kind];
    if (s->timer.q == q) {
        /* Activity pushes idle deadlines back; the others run from when they started. */
        if (kind == PX_T_IDLE || kind == PX_T_HTTP_IDLE)
            px_timer_touch(&s->w->loop, &s->timer);
        return;
    }
    px_timer_arm(&s->w->loop, q, &s->timer);
}

static int sniff_timer_kind(const px_session *s)
{
    if (s->timer.q == &s->w->queues[PX_T_IDLE])
        return PX_T_IDLE; /* the sniff timer ran out with nothing to decide */
    return PX_T_SNIFF;
}

/* The timer the session's state calls for. */
static void rearm(px_session *s)
{
    switch (s->state) {
    case PX_S_SNIFF:
        if (s->up.connecting)
            px_session_timer(s, PX_T_CONNECT);
        else
            px_session_timer(s, sniff_timer_kind(s));
        break;
    case PX_S_RAW:
        px_session_timer(s, s->up.connecting ? PX_T_CONNECT : PX_T_IDLE);
        break;
    case PX_S_HTTP:
        px_session_timer(s, s->up.connecting ? PX_T_CONNECT : px_http_timer_kind(s));
        break;
    case PX_S_LINGER:
        px_session_timer(s, PX_T_LINGER);
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------------- life and death */

void px_session_kill(px_session *s, bool reset)
{
    if (s->state == PX_S_DEAD)
        return;
    px_worker *w = s->w;
    s->state = PX_S_DEAD;
    px_timer_stop(&s->timer);
    if (s->http)
        px_http_stop_timer(s->http);
    end_close(&s->down, reset);
    end_close(&s->up, reset);
    if (s->prev)
        s->prev->next = s->next;
    else
        w->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = NULL;
    s->next = w->dead;
    w->dead = s;
    w->nsessions--;
    atomic_fetch_sub(&w->px->nconns, 1);
    px_stat_add(&px_st.dir[s->dir].cx_open, -1);
}

/* Called by the worker after each batch of events: nothing points at these anymore. */
void px_session_free(px_session *s)
{
    end_free(&s->down);
    end_free(&s->up);
    px_http_free(s->http);
    free(s);
}

void px_session_close_up(px_session *s)
{
    end_close(&s->up, false);
    end_free(&s->up);
    s->up.eof = s->up.shut = false;
    memset(&s->target, 0, sizeof(s->target));
}

void px_session_linger(px_session *s)
{
    if (s->state == PX_S_DEAD)
        return;
    end_close(&s->up, false);
    if (s->down.io.fd < 0 || s->down.eof) {
        px_session_kill(s, false);
        return;
    }
    shutdown(s->down.io.fd, SHUT_WR);
    s->down.shut = true;
    s->state = PX_S_LINGER;
    s->down.readable = true;
    px_session_run(s);
}

static void linger_run(px_session *s)
{
    char sink[4096];
    while (s->down.readable) {
        ssize_t n = recv(s->down.io.fd, sink, sizeof(sink), 0);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            s->down.readable = false;
            return;
        }
        px_session_kill(s, false); /* EOF or error: the client is done */
        return;
    }
}

/* ---------------------------------------------------------------- connecting */

static void up_cb(px_io *io, uint32_t ev);

int px_session_connect(px_session *s, const struct sockaddr_storage *target, const char *dest)
{
    px_proxy *px = s->w->px;
    struct sockaddr_storage dst = *target;
    const struct sockaddr_storage *src = NULL;
    if (s->up.io.fd >= 0)
        px_session_close_up(s);
    if (s->dir == PX_INBOUND) {
        /* nutshell-init lets the proxy's connections from 127.0.0.6 (::6) reach the app
         * on the pod's own address without being captured again; without ::6 the v6 app
         * is reached over ::1, which is never captured. */
        if (dst.ss_family == AF_INET) {
            src = &px->inbound_src4;
        } else if (px->inbound_src6.ss_family == AF_INET6) {
            src = &px->inbound_src6;
        } else {
            uint16_t port = px_addr_port(&dst);
            px_addr_parse("::1", port, &dst);
        }
    }
    s->target = *target;
    snprintf(s->dest, sizeof(s->dest), "%s", dest);
    int fd = px_connect_start(&dst, src);
    if (fd < 0) {
        s->up_error = -fd;
        px_stat_add(&px_st.dir[s->dir].connect_errors, 1);
        return fd;
    }
    end_init(&s->up, s, fd, up_cb);
    s->up.connecting = true;
    s->up_error = 0;
    int rc = px_loop_add(&s->w->loop, &s->up.io, IO_EVENTS);
    if (rc) {
        end_close(&s->up, false);
        s->up_error = -rc;
        return rc;
    }
    return 0;
}

/* Opaque TCP to a routed service address whose connect failed: connects to another
 * backend (nothing was sent yet, the client's bytes wait in `down`), within
 * --max-retries and the worker's retry budget. Returns true if a connect is under way. */
static bool tcp_retry(px_session *s)
{
    for (;;) {
        px_retry_req rr = {.retries = s->retries};
        struct sockaddr_storage t;
        char label[80];
        if (px_worker_retry(s->w, s->dir, PX_RETRY_CONNECT, &rr, &s->orig, &s->via, &s->tried, &t,
                            label, sizeof(label)) != 0)
            return false;
        s->retries++;
        px_timer_stop(&s->timer); /* a fresh --connect-timeout for this attempt */
        if (px_session_connect(s, &t, label) == 0)
            return true;
        px_worker_backend_result(s->w, &s->via, false);
    }
}

/* The upstream connect failed (or timed out): what the client sees depends on the state. */
static void up_failed(px_session *s, int err)
{
    char a[PX_ADDR_MAX];
    px_addr_format(&s->target, a, sizeof(a));
    ns_log(NS_LOG_DEBUG, "upstream connect failed", "direction", px_dir_name(s->dir), "target", a,
           "error", strerror(err), NULL);
    px_stat_add(&px_st.dir[s->dir].connect_errors, 1);
    end_close(&s->up, false);
    s->up_error = err;
    if (s->state == PX_S_HTTP) {
        px_http_up_failed(s, err);
        return;
    }
    if (s->state == PX_S_RAW && s->via.route >= 0) {
        px_worker_backend_result(s->w, &s->via, false);
        if (tcp_retry(s))
            return;
    }
    /* Opaque TCP: a reset is the closest thing to the refusal the client would have got. */
    px_session_kill(s, true);
}

/* ---------------------------------------------------------------- sniffing */

static int pick_lazy_target(px_session *s)
{
    px_worker *w = s->w;
    px_route *r = NULL;
    if (w->routes) {
        px_ip ip;
        px_sockaddr_to_ip(&s->orig, &ip);
        r = px_routes_match_addr(w->routes, &ip, px_addr_port(&s->orig));
    }
    struct sockaddr_storage t;
    char label[80];
    s->lazy = false;
    if (!r || px_worker_pick(w, r, 0, &s->orig, &s->via, &t, label, sizeof(label)) != 0) {
        t = s->orig;
        px_addr_format(&s->orig, label, sizeof(label));
        return px_session_connect(s, &t, label);
    }
    px_budget_request(&w->budget, w->loop.now_ms);
    if (px_session_connect(s, &t, label) == 0)
        return 0;
    px_worker_backend_result(w, &s->via, false);
    return tcp_retry(s) ? 0 : -EHOSTUNREACH;
}

static void start_raw(px_session *s)
{
    s->state = PX_S_RAW;
    px_stat_add(&px_st.dir[s->dir].cx_tcp, 1);
    if (s->lazy && pick_lazy_target(s) != 0) {
        px_session_kill(s, true);
        return;
    }
    if (s->up.io.fd < 0) { /* the eager connect failed before anything was decided */
        px_session_kill(s, true);
        return;
    }
}

static void start_http(px_session *s)
{
    s->state = PX_S_HTTP;
    px_stat_add(&px_st.dir[s->dir].cx_http, 1);
    if (px_http_start(s) != 0)
        px_session_kill(s, true);
}

static void sniff_run(px_session *s)
{
    int r = px_end_read(s, &s->down, PX_H1_SNIFF_MAX);
    if (r < 0) {
        px_session_kill(s, true);
        return;
    }
    uint32_t len = px_bytes_len(&s->down.in);
    if (len > 0) {
        px_sniff v = px_h1_sniff(s->down.in.data + s->down.in.start, len);
        if (v == PX_SNIFF_HTTP1) {
            start_http(s);
            return;
        }
        if (v == PX_SNIFF_OTHER || len >= PX_H1_SNIFF_MAX) {
            start_raw(s);
            return;
        }
        if (r > 0 && len == (uint32_t)r)
            px_timer_arm(&s->w->loop, &s->w->queues[PX_T_SNIFF], &s->timer);
    }
    if (s->down.eof || s->up.readable || s->up.eof) {
        /* The client closed, or the server spoke first: not HTTP. */
        start_raw(s);
        return;
    }
    if (s->up.io.fd < 0 && !s->lazy)
        px_session_kill(s, true); /* the connect failed and nothing was sent: refuse */
}

static void sniff_timeout(px_session *s)
{
    if (px_bytes_len(&s->down.in) > 0 || s->lazy) {
        start_raw(s);
        return;
    }
    /* Nothing from either side yet: the first bytes will decide; until then idle. */
    px_timer_arm(&s->w->loop, &s->w->queues[PX_T_IDLE], &s->timer);
}

/* ---------------------------------------------------------------- running */

void px_session_run(px_session *s)
{
    /* A state change (SNIFF -> HTTP -> RAW) needs another turn in the new state. */
    for (int turns = 0; turns < 4; turns++) {
        px_state before = s->state;
        switch (s->state) {
        case PX_S_SNIFF:
            sniff_run(s);
            break;
        case PX_S_RAW: {
            int r = px_relay_run(s);
            if (r < 0)
                px_session_kill(s, true);
            else if (r == 1)
                px_session_kill(s, false);
            break;
        }
        case PX_S_HTTP:
            px_http_run(s);
            break;
        case PX_S_LINGER:
            linger_run(s);
            break;
        default:
            return;
        }
        if (s->state == before)
            break;
    }
    if (s->state != PX_S_DEAD)
        rearm(s);
}

static void events_to_flags(px_end *e, uint32_t ev)
{
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        e->readable = true;
    if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        e->rdhup = true;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        e->writable = true;
}

static void down_cb(px_io *io, uint32_t ev)
{
    px_session *s = ((px_end *)(void *)((char *)io - offsetof(px_end, io)))->s;
    if (s->state == PX_S_DEAD)
        return;
    events_to_flags(&s->down, ev);
    px_session_run(s);
}

static void up_cb(px_io *io, uint32_t ev)
{
    px_session *s = ((px_end *)(void *)((char *)io - offsetof(px_end, io)))->s;
    if (s->state == PX_S_DEAD)
        return;
    if (s->up.connecting) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = -px_socket_error(s->up.io.fd);
        if (err == 0 && (ev & EPOLLERR))
            err = ECONNREFUSED;
        if (err) {
            up_failed(s, err);
            if (s->state != PX_S_DEAD)
                px_session_run(s);
            return;
        }
        s->up.connecting = false;
        if (s->state == PX_S_RAW && s->via.route >= 0)
            px_worker_backend_result(s->w, &s->via, true);
    }
    events_to_flags(&s->up, ev);
    px_session_run(s);
}

/* ---------------------------------------------------------------- timers */

static px_session *of_timer(px_timer *t)
{
    return (px_session *)(void *)((char *)t - offsetof(px_session, timer));
}

static void sniff_timer_cb(px_timer *t)
{
    px_session *s = of_timer(t);
    if (s->state != PX_S_SNIFF)
        return;
    sniff_timeout(s);
    if (s->state != PX_S_DEAD && s->state != PX_S_SNIFF)
        px_session_run(s);
}

static void connect_timer_cb(px_timer *t)
{
    px_session *s = of_timer(t);
    if (!s->up.connecting)
        return;
    up_failed(s, ETIMEDOUT);
    if (s->state != PX_S_DEAD)
        px_session_run(s);
}

static void header_timer_cb(px_timer *t)
{
    px_session *s = of_timer(t);
    px_stat_add(&px_st.dir[s->dir].timeouts_hdr, 1);
    if (s->state == PX_S_HTTP)
        px_http_header_timeout(s);
    else
        px_session_kill(s, false);
}

static void idle_timer_cb(px_timer *t)
{
    px_session *s = of_timer(t);
    px_stat_add(&px_st.dir[s->dir].timeouts_idle, 1);
    px_session_kill(s, false);
}

static void linger_timer_cb(px_timer *t)
{
    px_session_kill(of_timer(t), false);
}

void px_session_queues_init(px_worker *w)
{
    const px_config *c = &w->px->cfg;
    px_loop_add_queue(&w->loop, &w->queues[PX_T_SNIFF], c->sniff_timeout_ms, sniff_timer_cb);
    px_loop_add_queue(&w->loop, &w->queues[PX_T_CONNECT], c->connect_timeout_ms, connect_timer_cb);
    px_loop_add_queue(&w->loop, &w->queues[PX_T_HEADER], c->header_timeout_ms, header_timer_cb);
    px_loop_add_queue(&w->loop, &w->queues[PX_T_IDLE], c->idle_timeout_ms, idle_timer_cb);
    px_loop_add_queue(&w->loop, &w->queues[PX_T_HTTP_IDLE], c->http_idle_timeout_ms, idle_timer_cb);
    px_loop_add_queue(&w->loop, &w->queues[PX_T_LINGER], 2000, linger_timer_cb);
    px_loop_add_queue(&w->loop, &w->queues[PX_T_REQUEST], c->request_timeout_ms,
                      px_http_request_timer_cb);
}

/* ---------------------------------------------------------------- drain */

void px_session_drain(px_session *s)
{
    s->draining = true;
    switch (s->state) {
    case PX_S_SNIFF:
        if (px_bytes_len(&s->down.in) == 0)
            px_session_kill(s, false);
        break;
    case PX_S_HTTP:
        px_http_drain(s);
        break;
    default:
        break; /* opaque TCP cannot be cut cleanly: it ends on its own or at the deadline */
    }
}

/* ---------------------------------------------------------------- accepting */

/* True if `dst` is one of our own listeners: a connection made straight to 15001/15006
 * would otherwise be proxied to itself, forever. */
static bool is_self(const px_proxy *px, const struct sockaddr_storage *dst)
{
    uint16_t port = px_addr_port(dst);
    return port == px->cfg.outbound_port || port == px->cfg.inbound_port;
}

void px_session_accept(px_worker *w, int fd, px_dir dir, int family)
{
    px_proxy *px = w->px;
    px_stat_add(&px_st.dir[dir].cx_total, 1);
    struct sockaddr_storage orig;
    int rc = px_original_dst(fd, family, &orig);
    if (rc != 0 || is_self(px, &orig)) {
        px_stat_add(&px_st.no_dst, 1);
        ns_log(NS_LOG_DEBUG, "connection without an original destination closed", "direction",
               px_dir_name(dir), NULL);
        close(fd);
        return;
    }
    px_session *s = calloc(1, sizeof(*s));
    if (!s) {
        px_close_reset(fd);
        return;
    }
    s->w = w;
    s->dir = dir;
    s->orig = orig;
    s->via.route = -1;
    s->state = PX_S_SNIFF;
    end_init(&s->down, s, fd, down_cb);
    end_init(&s->up, s, -1, up_cb);
    px_set_nodelay(fd);
    if (px_loop_add(&w->loop, &s->down.io, IO_EVENTS) != 0) {
        px_close_reset(fd);
        free(s);
        return;
    }
    atomic_fetch_add(&px->nconns, 1);
    px_stat_add(&px_st.dir[dir].cx_open, 1);
    s->next = w->sessions;
    if (w->sessions)
        w->sessions->prev = s;
    w->sessions = s;
    w->nsessions++;

    /* Connect right away unless the destination is a routed service address (then the
     * backend is picked per request, or per connection for opaque TCP): a server that
     * speaks first is then heard at once, and the sniff adds no delay to anything. */
    if (dir == PX_OUTBOUND && w->routes) {
        px_ip ip;
        px_sockaddr_to_ip(&orig, &ip);
        s->lazy = px_routes_match_addr(w->routes, &ip, px_addr_port(&orig)) != NULL;
    }
    px_timer_arm(&w->loop, &w->queues[PX_T_SNIFF], &s->timer);
    px_addr_format(&orig, s->dest, sizeof(s->dest)); /* the metric label until a backend */
    if (!s->lazy) {
        char label[PX_ADDR_MAX];
        px_addr_format(&orig, label, sizeof(label));
        if (px_session_connect(s, &orig, label) != 0) {
            px_session_kill(s, true);
            return;
        }
    }
    if (w->draining)
        px_session_drain(s);
}

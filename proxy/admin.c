/* admin.c - the admin HTTP server (plain HTTP/1.1, one request per connection). */
#include "admin.h"

#include "buf.h"
#include "http1.h"
#include "log.h"
#include "net.h"
#include "stats.h"
#include "worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define ADMIN_MAX_CONNS 32
#define ADMIN_HEAD_MAX  8192
#define ADMIN_TIMEOUT   10000

typedef struct admin_conn {
    px_io io;
    px_admin *a;
    struct admin_conn *prev, *next;
    px_timer timer;
    bool loopback; /* the peer is in this pod */
    bool replied;
    bool dead;
    char in[ADMIN_HEAD_MAX];
    uint32_t len;
    px_h1_parser p;
    px_h1_msg m;
    ns_buf out;
    size_t out_off;
} admin_conn;

struct px_admin {
    struct px_proxy *px;
    px_loop *loop;
    px_io listen;
    px_io listen6; /* [::] too when the address is the default 0.0.0.0 (IPv6 pods) */
    px_tq timeouts;
    admin_conn *conns, *dead;
    unsigned nconns;
    void (*on_quit)(void *);
    void *ctx;
};

static void conn_close(admin_conn *c)
{
    if (c->dead)
        return;
    px_admin *a = c->a;
    c->dead = true;
    px_timer_stop(&c->timer);
    close(c->io.fd);
    c->io.fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = a->dead;
    a->dead = c;
    a->nconns--;
}

void px_admin_collect(px_admin *a)
{
    while (a && a->dead) {
        admin_conn *c = a->dead;
        a->dead = c->next;
        ns_buf_free(&c->out);
        free(c);
    }
}

static void flush(admin_conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->io.fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_close(c);
        return;
    }
    conn_close(c);
}

static void reply(admin_conn *c, int status, const char *reason, const char *ctype,
                  const char *body, size_t len)
{
    ns_buf_printf(&c->out,
                  "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n"
                  "connection: close\r\n\r\n",
                  status, reason, ctype, len);
    if (c->m.method_id != PX_M_HEAD)
        ns_buf_append(&c->out, body, len);
    c->replied = true;
    if (c->out.failed) {
        conn_close(c);
        return;
    }
    flush(c);
}

static void reply_text(admin_conn *c, int status, const char *reason, const char *text)
{
    reply(c, status, reason, "text/plain; charset=utf-8", text, strlen(text));
}

static void stats_text(struct px_proxy *px, ns_buf *b)
{
    ns_buf_printf(b, "version: %s\n", NUTSHELL_VERSION);
    ns_buf_printf(b, "uptime_seconds: %lld\n", (long long)((px_now_ms() - px->started_ms) / 1000));
    ns_buf_printf(b, "workers: %u\n", px->nworkers);
    ns_buf_printf(b, "ready: %d\n", atomic_load(&px->ready) ? 1 : 0);
    ns_buf_printf(b, "draining: %d\n", atomic_load(&px->draining) ? 1 : 0);
    ns_buf_printf(b, "connections_open: %zu\n", px_workers_sessions(px));
    ns_buf_printf(b, "connections_rejected: %lld\n", (long long)atomic_load(&px_st.rejected.value));
    ns_buf_printf(b, "routes_version: %lld\n", (long long)atomic_load(&px_st.routes_version.value));
    for (int d = 0; d < 2; d++) {
        const px_dir_stats *s = &px_st.dir[d];
        const char *n = px_dir_name((px_dir)d);
#define LINE(field, label)                                                                         \
    ns_buf_printf(b, "%s.%s: %lld\n", n, label, (long long)atomic_load(&s->field.value))
        LINE(cx_total, "connections_total");
        LINE(cx_open, "connections_open");
        LINE(cx_http, "http_connections_total");
        LINE(cx_tcp, "tcp_connections_total");
        ns_buf_printf(b, "%s.requests_total: %llu\n", n,
                      (unsigned long long)px_stats_requests((px_dir)d));
        LINE(rx_bytes, "received_bytes");
        LINE(tx_bytes, "sent_bytes");
        LINE(up_rx_bytes, "upstream_received_bytes");
        LINE(up_tx_bytes, "upstream_sent_bytes");
        LINE(connect_errors, "upstream_connect_errors");
        LINE(req_errors, "http_request_errors");
        LINE(resp_errors, "http_response_errors");
        LINE(timeouts_hdr, "header_timeouts");
        LINE(timeouts_idle, "idle_timeouts");
#undef LINE
    }
}

static void handle(admin_conn *c)
{
    px_admin *a = c->a;
    const char *buf = c->in;
    px_span t = c->m.target;
    /* The path without a query string. */
    uint32_t plen = t.len;
    for (uint32_t i = 0; i < t.len; i++) {
        if (buf[t.off + i] == '?') {
            plen = i;
            break;
        }
    }
    px_span path = {.off = t.off, .len = plen};
    bool get = c->m.method_id == PX_M_GET || c->m.method_id == PX_M_HEAD;
    bool draining = atomic_load(&a->px->draining);

    if (px_span_ieq(buf, path, "/healthz/ready")) {
        if (!get)
            reply_text(c, 405, "Method Not Allowed", "use GET\n");
        else if (draining)
            reply_text(c, 503, "Service Unavailable", "draining\n");
        else if (!atomic_load(&a->px->ready))
            reply_text(c, 503, "Service Unavailable", "starting\n");
        else
            reply_text(c, 200, "OK", "ready\n");
        return;
    }
    if (px_span_ieq(buf, path, "/metrics") || px_span_ieq(buf, path, "/stats")) {
        if (!get) {
            reply_text(c, 405, "Method Not Allowed", "use GET\n");
            return;
        }
        ns_buf b;
        ns_buf_init(&b);
        bool metrics = px_span_ieq(buf, path, "/metrics");
        if (metrics)
            ns_metrics_render(&px_registry, &b);
        else
            stats_text(a->px, &b);
        if (b.failed)
            reply_text(c, 500, "Internal Server Error", "out of memory\n");
        else
            reply(c, 200, "OK",
                  metrics ? "text/plain; version=0.0.4; charset=utf-8"
                          : "text/plain; charset=utf-8",
                  b.data ? b.data : "", b.len);
        ns_buf_free(&b);
        return;
    }
    if (px_span_ieq(buf, path, "/quitquitquit")) {
        if (c->m.method_id != PX_M_POST) {
            reply_text(c, 405, "Method Not Allowed", "use POST\n");
        } else if (!c->loopback) {
            reply_text(c, 403, "Forbidden", "only from inside the pod (loopback)\n");
        } else {
            reply_text(c, 200, "OK", "draining\n");
            ns_log(NS_LOG_INFO, "/quitquitquit: draining", NULL);
            if (a->on_quit)
                a->on_quit(a->ctx);
        }
        return;
    }
    reply_text(c, 404, "Not Found", "not found; try /healthz/ready, /metrics, /stats\n");
}

static void conn_cb(px_io *io, uint32_t events)
{
    admin_conn *c = (admin_conn *)(void *)io;
    if (c->dead)
        return;
    if (c->replied) {
        flush(c);
        return;
    }
    for (;;) {
        ssize_t n = recv(c->io.fd, c->in + c->len, sizeof(c->in) - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        c->len += (uint32_t)n;
        int r = px_h1_parse(&c->p, c->in, c->len, &c->m);
        if (r > 0) {
            handle(c);
            return;
        }
        if (r < 0 || c->len == sizeof(c->in)) {
            reply_text(c, 400, "Bad Request", "bad request\n");
            return;
        }
    }
}

static void timeout_cb(px_timer *t)
{
    conn_close((admin_conn *)(void *)((char *)t - offsetof(admin_conn, timer)));
}

static void accept_cb(px_io *io, uint32_t events);
static void accept6_cb(px_io *io, uint32_t events);

static void accept_on(px_admin *a, px_io *io)
{
    for (int i = 0; i < 16; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (a->nconns >= ADMIN_MAX_CONNS) {
            close(fd);
            continue;
        }
        admin_conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->io.fd = fd;
        c->io.cb = conn_cb;
        c->a = a;
        c->loopback = px_addr_is_loopback(&peer);
        px_h1_init(&c->p, PX_H1_REQUEST, PX_M_NONE);
        px_h1_set_max_head(&c->p, ADMIN_HEAD_MAX);
        ns_buf_init(&c->out);
        if (px_loop_add(a->loop, &c->io, EPOLLIN | EPOLLOUT | EPOLLET) != 0) {
            close(fd);
            ns_buf_free(&c->out);
            free(c);
            continue;
        }
        c->next = a->conns;
        if (a->conns)
            a->conns->prev = c;
        a->conns = c;
        a->nconns++;
        px_timer_arm(a->loop, &a->timeouts, &c->timer);
    }
}

static void accept_cb(px_io *io, uint32_t events)
{
    accept_on((px_admin *)(void *)((char *)io - offsetof(px_admin, listen)), io);
}

static void accept6_cb(px_io *io, uint32_t events)
{
    accept_on((px_admin *)(void *)((char *)io - offsetof(px_admin, listen6)), io);
}

int px_admin_start(struct px_proxy *px, px_loop *loop, void (*on_quit)(void *), void *ctx,
                   px_admin **out, ns_err *err)
{
    px_admin *a = calloc(1, sizeof(*a));
    if (!a)
        return ns_errorf(err, -ENOMEM, "out of memory");
    a->px = px;
    a->loop = loop;
    a->on_quit = on_quit;
    a->ctx = ctx;
    struct sockaddr_storage ss;
    if (px_addr_parse(px->cfg.admin_address, px->cfg.admin_port, &ss) != 0) {
        free(a);
        return ns_errorf(err, -EINVAL, "bad admin address %s", px->cfg.admin_address);
    }
    int fd = px_listen_tcp(ss.ss_family, px->cfg.admin_address, px->cfg.admin_port, false, 64);
    if (fd < 0) {
        free(a);
        return ns_errorf(err, fd, "admin: listen on %s port %u: %s", px->cfg.admin_address,
                         px->cfg.admin_port, strerror(-fd));
    }
    a->listen.fd = fd;
    a->listen.cb = accept_cb;
    int rc = px_loop_add(loop, &a->listen, EPOLLIN);
    if (rc) {
        close(fd);
        free(a);
        return ns_errorf(err, rc, "admin: epoll: %s", strerror(-rc));
    }
    a->listen6.fd = -1;
    a->listen6.cb = accept6_cb;
    if (strcmp(px->cfg.admin_address, "0.0.0.0") == 0) {
        int fd6 = px_listen_tcp(AF_INET6, NULL, px->cfg.admin_port, false, 64);
        if (fd6 >= 0) {
            a->listen6.fd = fd6;
            if (px_loop_add(loop, &a->listen6, EPOLLIN) != 0) {
                close(fd6);
                a->listen6.fd = -1;
            }
        }
    }
    px_loop_add_queue(loop, &a->timeouts, ADMIN_TIMEOUT, timeout_cb);
    *out = a;
    return 0;
}

void px_admin_stop(px_admin *a)
{
    if (!a)
        return;
    while (a->conns)
        conn_close(a->conns);
    px_admin_collect(a);
    if (a->listen.fd >= 0) {
        px_loop_del(a->loop, &a->listen);
        close(a->listen.fd);
    }
    if (a->listen6.fd >= 0) {
        px_loop_del(a->loop, &a->listen6);
        close(a->listen6.fd);
    }
    free(a);
}

/* worker.c - event loop threads: listeners, accepting, drain, route table hand-over. */
#include "worker.h"

#include "log.h"
#include "net.h"
#include "trace.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_BATCH 64

static void accept_cb(px_io *io, uint32_t events);

static void add_listener(px_worker *w, int fd, px_dir dir, int family)
{
    px_listener *l = &w->listeners[w->nlisteners++];
    l->io.fd = fd;
    l->io.cb = accept_cb;
    l->dir = dir;
    l->family = family;
    l->w = w;
}

static void close_listeners(px_worker *w)
{
    for (unsigned i = 0; i < w->nlisteners; i++) {
        if (w->listeners[i].io.fd >= 0) {
            px_loop_del(&w->loop, &w->listeners[i].io);
            close(w->listeners[i].io.fd);
            w->listeners[i].io.fd = -1;
        }
    }
}

/* Takes a connection off the queue and drops it (over the limit or out of descriptors):
 * the client gets a reset now rather than a hang until its own timeout. */
static void refuse_one(px_worker *w, int listen_fd)
{
    px_stat_add(&px_st.rejected, 1);
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
        px_close_reset(fd);
        return;
    }
    if ((errno == EMFILE || errno == ENFILE) && w->reserve_fd >= 0) {
        close(w->reserve_fd);
        fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            px_close_reset(fd);
        w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
}

static void accept_cb(px_io *io, uint32_t events)
{
    px_listener *l = (px_listener *)(void *)io;
    px_worker *w = l->w;
    px_proxy *px = w->px;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (atomic_load(&px->nconns) >= px->cfg.max_connections) {
            refuse_one(w, io->fd);
            continue;
        }
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE) {
                ns_log(NS_LOG_WARN, "out of file descriptors: refusing connections", NULL);
                refuse_one(w, io->fd);
            }
            return; /* EAGAIN: the queue is empty (level-triggered: more comes as events) */
        }
        px_session_accept(w, fd, l->dir, l->family);
    }
}

static void update_free(px_routes_update *u)
{
    if (u) {
        px_routes_free(u->t);
        free(u);
    }
}

static void adopt_routes(px_worker *w)
{
    px_routes_update *u = atomic_exchange(&w->next_routes, NULL);
    if (!u)
        return;
    px_routes *next = u->t;
    free(u);
    /* Unchanged routes keep their round-robin position, so a reload that does not touch
     * a route does not skew its split. */
    if (next)
        px_routes_adopt_state(next, w->routes);
    px_routes_free(w->routes);
    w->routes = next;
}

static void start_drain(px_worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    w->drain_deadline_ms = w->loop.now_ms + w->px->cfg.drain_timeout_ms;
    /* One last look at the accept queues so that connections the kernel already took
     * are served rather than reset with the listening socket. */
    for (unsigned i = 0; i < w->nlisteners; i++)
        if (w->listeners[i].io.fd >= 0)
            accept_cb(&w->listeners[i].io, EPOLLIN);
    close_listeners(w);
    px_session *next;
    for (px_session *s = w->sessions; s; s = next) {
        next = s->next;
        px_session_drain(s);
    }
}

static void wake_cb(px_io *io, uint32_t events)
{
    px_worker *w = (px_worker *)(void *)((char *)io - offsetof(px_worker, wake));
    uint64_t v;
    while (read(io->fd, &v, sizeof(v)) > 0) {
    }
    adopt_routes(w);
    if (atomic_load(&w->px->draining))
        start_drain(w);
}

static void free_dead(px_worker *w)
{
    while (w->dead) {
        px_session *s = w->dead;
        w->dead = s->next;
        px_session_free(s);
    }
}

static void *worker_main(void *arg)
{
    px_worker *w = arg;
    px_proxy *px = w->px;
    for (;;) {
        int rc = px_loop_poll(&w->loop, 1000);
        if (rc < 0) {
            ns_log(NS_LOG_ERROR, "epoll_wait failed", "error", strerror(-rc), NULL);
            break;
        }
        free_dead(w);
        if (!w->draining)
            continue;
        if (w->nsessions == 0)
            break;
        if (w->loop.now_ms >= w->drain_deadline_ms) {
            char n[24];
            snprintf(n, sizeof(n), "%zu", w->nsessions);
            ns_log(NS_LOG_WARN, "drain timeout: closing the remaining connections", "connections",
                   n, NULL);
            while (w->sessions)
                px_session_kill(w->sessions, true);
            free_dead(w);
            break;
        }
    }
    close_listeners(w);
    uint64_t one = 1;
    atomic_fetch_sub(&px->running, 1);
    if (write(px->main_wake_fd, &one, sizeof(one)) < 0) {
        /* the main thread also polls `running` */
    }
    return NULL;
}

static int worker_init(px_proxy *px, px_worker *w, unsigned id)
{
    memset(w, 0, sizeof(*w));
    w->px = px;
    w->id = id;
    w->reserve_fd = -1;
    w->wake.fd = -1;
    atomic_init(&w->next_routes, NULL);
    int rc = px_loop_init(&w->loop);
    if (rc)
        return rc;
    px_session_queues_init(w);
    w->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->wake.fd < 0)
        return -errno;
    w->wake.cb = wake_cb;
    rc = px_loop_add(&w->loop, &w->wake, EPOLLIN);
    if (rc)
        return rc;
    w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng))
        w->rng = (uint64_t)px_now_ns() ^ ((uint64_t)id << 32);
    return 0;
}

int px_workers_create(px_proxy *px, ns_err *err)
{
    px->workers = calloc(px->nworkers, sizeof(px_worker));
    if (!px->workers)
        return ns_errorf(err, -ENOMEM, "out of memory");
    for (unsigned i = 0; i < px->nworkers; i++) {
        px_worker *w = &px->workers[i];
        int rc = worker_init(px, w, i);
        if (rc)
            return ns_errorf(err, rc, "worker %u: %s", i, strerror(-rc));
        const struct {
            uint16_t port;
            px_dir dir;
        } ports[2] = {{px->cfg.outbound_port, PX_OUTBOUND}, {px->cfg.inbound_port, PX_INBOUND}};
        for (int p = 0; p < 2; p++) {
            int fd = px_listen_tcp(AF_INET, NULL, ports[p].port, true, 4096);
            if (fd < 0)
                return ns_errorf(err, fd, "listen on 0.0.0.0:%u: %s", ports[p].port, strerror(-fd));
            add_listener(w, fd, ports[p].dir, AF_INET);
            fd = px_listen_tcp(AF_INET6, NULL, ports[p].port, true, 4096);
            if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL) {
                if (i == 0 && p == 0)
                    ns_log(NS_LOG_INFO, "no IPv6 in this network namespace: IPv4 only", NULL);
                continue;
            }
            if (fd < 0)
                return ns_errorf(err, fd, "listen on [::]:%u: %s", ports[p].port, strerror(-fd));
            add_listener(w, fd, ports[p].dir, AF_INET6);
        }
        for (unsigned l = 0; l < w->nlisteners; l++) {
            /* Level-triggered: accept_cb takes a bounded batch and comes back for more. */
            int rc2 = px_loop_add(&w->loop, &w->listeners[l].io, EPOLLIN);
            if (rc2)
                return ns_errorf(err, rc2, "epoll: %s", strerror(-rc2));
        }
    }
    return 0;
}

int px_workers_start(px_proxy *px, ns_err *err)
{
    for (unsigned i = 0; i < px->nworkers; i++) {
        px_worker *w = &px->workers[i];
        atomic_fetch_add(&px->running, 1);
        /* Small stacks: nothing on the data path recurses or keeps big arrays. */
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        int rc = pthread_create(&w->thread, &attr, worker_main, w);
        pthread_attr_destroy(&attr);
        if (rc) {
            atomic_fetch_sub(&px->running, 1);
            return ns_errorf(err, -rc, "pthread_create: %s", strerror(rc));
        }
        w->started = true;
    }
    return 0;
}

void px_workers_drain(px_proxy *px)
{
    atomic_store(&px->draining, true);
    uint64_t one = 1;
    for (unsigned i = 0; i < px->nworkers; i++)
        if (px->workers[i].wake.fd >= 0 && write(px->workers[i].wake.fd, &one, sizeof(one)) < 0)
            ns_log(NS_LOG_WARN, "cannot wake a worker", "error", strerror(errno), NULL);
}

int px_workers_set_routes(px_proxy *px, const px_routes *t)
{
    px_routes_update **ups = calloc(px->nworkers, sizeof(*ups));
    if (!ups)
        return -ENOMEM;
    for (unsigned i = 0; i < px->nworkers; i++) {
        ups[i] = calloc(1, sizeof(px_routes_update));
        if (ups[i] && t) {
            ups[i]->t = px_routes_dup(t);
            if (!ups[i]->t) {
                free(ups[i]);
                ups[i] = NULL;
            }
        }
        if (!ups[i]) {
            for (unsigned j = 0; j < i; j++)
                update_free(ups[j]);
            free(ups);
            return -ENOMEM;
        }
    }
    uint64_t one = 1;
    for (unsigned i = 0; i < px->nworkers; i++) {
        px_worker *w = &px->workers[i];
        update_free(atomic_exchange(&w->next_routes, ups[i])); /* one never picked up */
        if (!w->started) {
            adopt_routes(w);
        } else if (write(w->wake.fd, &one, sizeof(one)) < 0) {
            ns_log(NS_LOG_WARN, "cannot wake a worker", "error", strerror(errno), NULL);
        }
    }
    free(ups);
    return 0;
}

void px_workers_destroy(px_proxy *px)
{
    if (!px->workers)
        return;
    for (unsigned i = 0; i < px->nworkers; i++) {
        px_worker *w = &px->workers[i];
        if (w->started)
            pthread_join(w->thread, NULL);
        while (w->sessions)
            px_session_kill(w->sessions, true);
        free_dead(w);
        close_listeners(w);
        if (w->wake.fd >= 0)
            close(w->wake.fd);
        if (w->reserve_fd >= 0)
            close(w->reserve_fd);
        px_routes_free(w->routes);
        update_free(atomic_exchange(&w->next_routes, NULL));
        px_loop_close(&w->loop);
    }
    free(px->workers);
    px->workers = NULL;
}

size_t px_workers_sessions(px_proxy *px)
{
    return atomic_load(&px->nconns);
}

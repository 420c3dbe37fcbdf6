/* worker.c - event loop threads: listeners, accepting, drain, route table hand-over. */
#include "worker.h"

#include "log.h"
#include "net.h"
#include "routing.h"
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

static void health_free(px_outlier **health, size_t n)
{
    if (!health)
        return;
    for (size_t i = 0; i < n; i++)
        free(health[i]);
    free(health);
}

static void update_free(px_routes_update *u)
{
    if (u) {
        health_free(u->health, u->t ? u->t->nroutes : 0);
        px_routes_free(u->t);
        free(u);
    }
}

/* Moves this worker's share of the ejected-backends gauge to what its states hold. */
static void recount_ejected(px_worker *w)
{
    size_t n = 0;
    for (size_t i = 0; w->health && w->routes && i < w->routes->nroutes; i++)
        if (w->health[i])
            n += px_outlier_pending(w->health[i]);
    px_stat_add(&px_st.ejected, (int64_t)n - (int64_t)w->nejected);
    w->nejected = n;
}

static void adopt_routes(px_worker *w)
{
    px_routes_update *u = atomic_exchange(&w->next_routes, NULL);
    if (!u)
        return;
    px_routes *next = u->t;
    px_outlier **health = u->health;
    free(u);
    /* Unchanged routes keep their round-robin position, so a reload that does not touch
     * a route does not skew its split; a backend that is still there keeps its failure
     * count and ejection. */
    if (next) {
        px_routes_adopt_state(next, w->routes);
        px_outlier_adopt(health, next, w->health, w->routes);
    }
    health_free(w->health, w->routes ? w->routes->nroutes : 0);
    px_routes_free(w->routes);
    w->routes = next;
    w->health = next ? health : NULL;
    if (!next)
        free(health);
    w->routes_gen++;
    recount_ejected(w);
}

/* ---------------------------------------------------------------- backend health */

static void backend_name(const px_backend *b, char *out, size_t len)
{
    if (b->port)
        snprintf(out, len, "%s:%u", b->host, b->port);
    else
        snprintf(out, len, "%s", b->host);
}

/* The backends of route i ejected now; logs those that came back. */
static uint64_t ejected_now(px_worker *w, size_t i)
{
    px_outlier *o = w->health ? w->health[i] : NULL;
    if (!o)
        return 0;
    uint64_t back = 0;
    uint64_t mask = px_outlier_update(o, w->loop.now_ms, &back);
    for (size_t k = 0; back && k < o->n; k++) {
        if (!((back >> k) & 1))
            continue;
        const px_route *r = &w->routes->routes[i];
        char name[PX_ROUTE_HOST_MAX + 8], id[16];
        backend_name(&r->backends[k], name, sizeof(name));
        snprintf(id, sizeof(id), "%u", w->id);
        ns_log(NS_LOG_INFO, "route backend back from ejection", "route", r->host, "backend", name,
               "worker", id, NULL);
        px_stat_add(&px_st.ejected, -1);
        if (w->nejected)
            w->nejected--;
    }
    return mask;
}

/* Once a second while something is ejected: ejections end on time in the logs and the
 * gauge even when no request looks at the route. */
static void sweep_health(px_worker *w)
{
    if (!w->nejected || w->loop.now_ms < w->sweep_ms || !w->routes)
        return;
    w->sweep_ms = w->loop.now_ms + 1000;
    for (size_t i = 0; w->health && i < w->routes->nroutes; i++)
        if (w->health[i])
            ejected_now(w, i);
}

px_route *px_worker_route(px_worker *w, const px_backend_ref *ref)
{
    if (ref->route < 0 || ref->gen != w->routes_gen || !w->routes ||
        (size_t)ref->route >= w->routes->nroutes)
        return NULL;
    return &w->routes->routes[ref->route];
}

int px_worker_pick(px_worker *w, px_route *r, uint64_t tried, const struct sockaddr_storage *orig,
                   px_backend_ref *ref, struct sockaddr_storage *out, char *label, size_t labellen)
{
    size_t i = (size_t)(r - w->routes->routes);
    int b = px_route_target(r, ejected_now(w, i), tried, orig, out, label, labellen);
    if (b < 0)
        return b;
    ref->route = (int32_t)i;
    ref->backend = b;
    ref->gen = w->routes_gen;
    return 0;
}

int px_worker_retry(px_worker *w, px_dir dir, px_retry_reason why, const px_retry_req *rr,
                    const struct sockaddr_storage *orig, px_backend_ref *via, uint64_t *tried,
                    struct sockaddr_storage *out, char *label, size_t labellen)
{
    px_route *r = px_worker_route(w, via);
    if (!r || !px_retry_allowed(why, rr, w->px->cfg.max_retries))
        return -1;
    if (!px_budget_try_retry(&w->budget, w->loop.now_ms)) {
        px_stat_add(&px_st.dir[dir].retry_denied, 1);
        return -1;
    }
    if (via->backend >= 0 && via->backend < 64)
        *tried |= 1ull << via->backend;
    if (px_worker_pick(w, r, *tried, orig, via, out, label, labellen) != 0)
        return -1;
    px_stat_add(&px_st.dir[dir].retries[why], 1);
    return 0;
}

void px_worker_backend_result(px_worker *w, const px_backend_ref *ref, bool ok)
{
    px_route *r = px_worker_route(w, ref);
    if (!r || !w->health)
        return;
    px_outlier *o = w->health[ref->route];
    if (ok) {
        if (o)
            px_outlier_success(o, (size_t)ref->backend, w->loop.now_ms);
        return;
    }
    if (!o) {
        /* A route's first failure: until then its state costs nothing. */
        o = malloc(sizeof(*o));
        if (!o)
            return;
        int64_t base = w->px->cfg.ejection_time_ms;
        px_outlier_cfg oc = {.base_ms = base, .max_ms = 10 * base};
        px_outlier_init(o, r->nbackends, &oc);
        w->health[ref->route] = o;
    }
    ejected_now(w, (size_t)ref->route); /* report returns before a new ejection */
    if (!px_outlier_failure(o, (size_t)ref->backend, w->loop.now_ms))
        return;
    const px_outlier_host *h = &o->hosts[ref->backend];
    char name[PX_ROUTE_HOST_MAX + 8], id[16], dur[32], fails[16];
    backend_name(&r->backends[ref->backend], name, sizeof(name));
    snprintf(id, sizeof(id), "%u", w->id);
    snprintf(dur, sizeof(dur), "%.1fs", (double)(h->until_ms - w->loop.now_ms) / 1000);
    snprintf(fails, sizeof(fails), "%u", o->cfg.consecutive);
    ns_log(NS_LOG_WARN, "route backend ejected after consecutive failures", "route", r->host,
           "backend", name, "failures", fails, "for", dur, "worker", id, NULL);
    px_stat_add(&px_st.ejections, 1);
    px_stat_add(&px_st.ejected, 1);
    w->nejected++;
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
        sweep_health(w);
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
    px_budget_init(&w->budget, NULL);
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
            ups[i]->health = calloc(t->nroutes ? t->nroutes : 1, sizeof(px_outlier *));
            if (!ups[i]->t || !ups[i]->health) {
                update_free(ups[i]);
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
        health_free(w->health, w->routes ? w->routes->nroutes : 0);
        w->health = NULL;
        px_routes_free(w->routes);
        w->routes = NULL;
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

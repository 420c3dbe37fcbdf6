/* discovery_client.c - see discovery_client.h. */
#include "discovery_client.h"

#include "discovery.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "routing.h"
#include "stats.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* The discovery thread. Everything below runs on it, except start and stop. */

enum { DISC_STARTING, DISC_OK, DISC_NOT_READY, DISC_FAILING };

struct px_discovery {
    px_discovery_opts o;
    char address[PX_DISC_ADDR_MAX];
    px_disc_addr addr;
    pthread_t thread;
    int stop_fd; /* eventfd, written once: stays readable, so every later poll sees it */
    atomic_bool stopping;
    uint64_t rng;
    bool have;        /* a table from the server is in use */
    uint64_t version; /* ... and its version */
    px_backoff backoff;
    int state;              /* DISC_*: what was logged last */
    unsigned long failures; /* failed requests since the last success */
    char last_error[NS_ERR_MSG_MAX];
    px_disc_reader reader;
    char *buf; /* the response being read */
    size_t len, cap;
};

static uint64_t next_random(px_discovery *d)
{
    /* xorshift64*: jitter only needs to differ between proxies, not to be secret. */
    d->rng ^= d->rng >> 12;
    d->rng ^= d->rng << 25;
    d->rng ^= d->rng >> 27;
    return d->rng * 2685821657736338717ull;
}

/* Waits until `fd` has `events` (fd -1: only sleeps), the stop eventfd fires, or the
 * monotonic deadline passes. Returns 1 (ready), 0 (deadline), -ECANCELED or -errno. */
static int wait_io(px_discovery *d, int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = deadline_ms - px_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p[2] = {{.fd = d->stop_fd, .events = POLLIN}, {.fd = fd, .events = events}};
        int n = poll(p, 2, left > INT_MAX ? INT_MAX : (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (p[0].revents)
            return -ECANCELED;
        if (n > 0)
            return 1;
    }
}

/* Connects to one of the server's addresses within --connect-timeout each. Returns the
 * socket or a negative errno (with a message). */
static int disc_connect(px_discovery *d, int64_t deadline_ms, ns_err *err)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", d->addr.port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int grc = getaddrinfo(d->addr.host, port, &hints, &res);
    if (grc != 0 || !res)
        return ns_errorf(err, -EHOSTUNREACH, "cannot resolve %s: %s", d->addr.host,
                         gai_strerror(grc));
    int rc = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        struct sockaddr_storage dst;
        memset(&dst, 0, sizeof(dst));
        memcpy(&dst, ai->ai_addr, ai->ai_addrlen);
        char where[PX_ADDR_MAX];
        px_addr_format(&dst, where, sizeof(where));
        int fd = px_connect_start(&dst, NULL);
        if (fd < 0) {
            rc = ns_errorf(err, fd, "connect to %s: %s", where, strerror(-fd));
            continue;
        }
        int64_t cdl = px_now_ms() + d->o.connect_timeout_ms;
        rc = wait_io(d, fd, POLLOUT, cdl < deadline_ms ? cdl : deadline_ms);
        if (rc == 1)
            rc = px_socket_error(fd);
        else if (rc == 0)
            rc = -ETIMEDOUT;
        if (rc == 0) {
            freeaddrinfo(res);
            return fd;
        }
        close(fd);
        if (rc == -ECANCELED)
            break;
        ns_errorf(err, rc, "connect to %s: %s", where, strerror(-rc));
    }
    freeaddrinfo(res);
    return rc;
}

/* One request and its answer (in d->buf, parsed into *reply). Returns 0 or a negative
 * errno with a message; -ECANCELED when asked to stop. */
static int disc_fetch(px_discovery *d, px_disc_reply *reply, ns_err *err)
{
    unsigned wait_s = d->have ? d->o.wait_s : 0;
    int64_t deadline = px_now_ms() + (int64_t)wait_s * 1000 + PX_DISC_SLACK_MS;
    char req[PX_DISC_ADDR_MAX + 256];
    int reqlen = px_disc_request(&d->addr, d->have, d->version, wait_s, req, sizeof(req));
    if (reqlen < 0)
        return ns_errorf(err, reqlen, "request does not fit");
    int fd = disc_connect(d, deadline, err);
    if (fd < 0)
        return fd;
    int rc = 0;
    for (int off = 0; off < reqlen;) {
        ssize_t n = send(fd, req + off, (size_t)(reqlen - off), MSG_NOSIGNAL);
        if (n > 0) {
            off += (int)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            rc = ns_errorf(err, -errno, "send: %s", strerror(errno));
            goto out;
        }
        rc = wait_io(d, fd, POLLOUT, deadline);
        if (rc <= 0) {
            rc = rc ? rc : ns_errorf(err, -ETIMEDOUT, "send: timed out");
            goto out;
        }
    }
    px_disc_reader_init(&d->reader);
    d->len = 0;
    for (;;) {
        if (d->len == d->cap) {
            /* px_disc_read decides before PX_DISC_RESPONSE_MAX bytes: this is a guard. */
            if (d->cap >= PX_DISC_RESPONSE_MAX) {
                rc = ns_errorf(err, -EMSGSIZE, "response over %d bytes", PX_DISC_RESPONSE_MAX);
                goto out;
            }
            size_t cap = d->cap ? d->cap * 2 : 16384;
            if (cap > PX_DISC_RESPONSE_MAX)
                cap = PX_DISC_RESPONSE_MAX;
            char *b = realloc(d->buf, cap);
            if (!b) {
                rc = ns_errorf(err, -ENOMEM, "no memory for a %zu-byte response", cap);
                goto out;
            }
            d->buf = b;
            d->cap = cap;
        }
        ssize_t n = recv(fd, d->buf + d->len, d->cap - d->len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            rc = wait_io(d, fd, POLLIN, deadline);
            if (rc == 0)
                rc = ns_errorf(err, -ETIMEDOUT, "no complete answer within %u s",
                               wait_s + PX_DISC_SLACK_MS / 1000);
            if (rc < 0)
                goto out;
            continue;
        }
        if (n < 0) {
            rc = ns_errorf(err, -errno, "receive: %s", strerror(errno));
            goto out;
        }
        d->len += (size_t)n;
        rc = px_disc_read(&d->reader, d->buf, d->len, n == 0, reply, err);
        if (rc == 0 && n == 0) /* px_disc_read always decides at EOF: a guard */
            rc = ns_errorf(err, -EBADMSG, "the server closed the connection early");
        if (rc != 0)
            break;
    }
    rc = rc < 0 ? rc : 0;
out:
    close(fd);
    return rc;
}

static void note_success(px_discovery *d)
{
    px_backoff_reset(&d->backoff);
    ns_gauge_set(&px_st.discovery_connected, 1);
    ns_gauge_set(&px_st.discovery_last_success, (int64_t)time(NULL));
    if (d->state != DISC_OK) {
        char n[24];
        snprintf(n, sizeof(n), "%lu", d->failures);
        ns_log(NS_LOG_INFO, "route discovery: connected", "server", d->address,
               "failed_requests_before", n, NULL);
    }
    d->state = DISC_OK;
    d->failures = 0;
    d->last_error[0] = '\0';
}

static void note_not_ready(px_discovery *d)
{
    px_stat_add(&px_st.discovery_not_ready, 1);
    ns_gauge_set(&px_st.discovery_connected, 0);
    d->failures++;
    if (d->state != DISC_NOT_READY)
        ns_log(NS_LOG_INFO,
               "route discovery: the server is not ready (503); keeping the table in use and "
               "retrying",
               "server", d->address, NULL);
    d->state = DISC_NOT_READY;
    d->last_error[0] = '\0';
}

/* Logs only when the kind of failure changes, so that a server away for an hour costs
 * one line, not one per retry. */
static void note_failure(px_discovery *d, const char *msg)
{
    px_stat_add(&px_st.discovery_errors, 1);
    ns_gauge_set(&px_st.discovery_connected, 0);
    d->failures++;
    if (d->state != DISC_FAILING || strcmp(d->last_error, msg) != 0) {
        char v[24];
        snprintf(v, sizeof(v), "%llu", (unsigned long long)d->version);
        ns_log(NS_LOG_WARN, "route discovery failed; keeping the table in use and retrying",
               "server", d->address, "error", msg, "version_in_use", d->have ? v : "none", NULL);
        snprintf(d->last_error, sizeof(d->last_error), "%s", msg);
    }
    d->state = DISC_FAILING;
}

/* Parses, resolves and applies a 200's table. Returns 0, 1 if it is the table in use
 * (nothing to do), -ECANCELED, or another negative errno with a message (the table in
 * use stays). */
static int take_table(px_discovery *d, const px_disc_reply *reply, ns_err *err)
{
    px_routes *t = NULL;
    ns_err perr = {0};
    int rc = px_routes_parse(d->buf + reply->body_off, reply->body_len, &t, &perr);
    if (rc) {
        px_stat_add(&px_st.routes_errors, 1);
        return ns_errorf(err, rc, "route table refused: %s", perr.msg);
    }
    if (d->have && t->version == d->version) {
        px_routes_free(t);
        return 1;
    }
    rc = px_routes_resolve(t, &d->stopping);
    if (rc == 0) {
        rc = d->o.apply(d->o.ctx, t);
        if (rc)
            ns_errorf(err, rc, "route table not applied: %s", strerror(-rc));
    }
    if (rc == 0) {
        d->have = true;
        d->version = t->version;
    }
    px_routes_free(t);
    return rc;
}

static void *discovery_main(void *arg)
{
    px_discovery *d = arg;
    while (!atomic_load(&d->stopping)) {
        int64_t started = px_now_ms();
        bool asked_version = d->have;
        px_disc_reply reply;
        ns_err err = {0};
        int rc = disc_fetch(d, &reply, &err);
        int64_t delay = 0;
        if (rc == 0) {
            bool unchanged = false;
            switch (px_disc_classify(reply.status, asked_version)) {
            case PX_DISC_TABLE:
                rc = take_table(d, &reply, &err);
                unchanged = rc == 1;
                rc = rc == 1 ? 0 : rc;
                break;
            case PX_DISC_UNCHANGED:
                unchanged = true;
                break;
            case PX_DISC_NOT_READY:
                note_not_ready(d);
                delay = px_backoff_next_ms(&d->backoff, next_random(d));
                break;
            default:
                rc = ns_errorf(&err, -EPROTO, "unexpected answer %d", reply.status);
                break;
            }
            if (rc == 0 && reply.status != 503)
                note_success(d);
            /* The server holds a long-poll for its whole wait unless the table changed:
             * an early answer that changes nothing is a server going away or
             * misbehaving, which must not turn into a busy loop. */
            int64_t took = px_now_ms() - started;
            if (unchanged && took < 1000)
                delay = 1000 - took;
        }
        if (rc == -ECANCELED)
            break;
        if (rc < 0) {
            note_failure(d, err.msg);
            delay = px_backoff_next_ms(&d->backoff, next_random(d));
        }
        /* A big table's buffer is not kept for the next thirty seconds of waiting. */
        if (d->cap > 65536) {
            free(d->buf);
            d->buf = NULL;
            d->cap = 0;
        }
        if (delay > 0 && wait_io(d, -1, 0, px_now_ms() + delay) < 0)
            break;
    }
    return NULL;
}

int px_discovery_start(const px_discovery_opts *o, px_discovery **out, ns_err *err)
{
    *out = NULL;
    px_discovery *d = calloc(1, sizeof(*d));
    if (!d)
        return ns_errorf(err, -ENOMEM, "out of memory");
    d->o = *o;
    snprintf(d->address, sizeof(d->address), "%s", o->address);
    d->o.address = d->address;
    atomic_init(&d->stopping, false);
    int rc = px_disc_parse_address(d->address, &d->addr, err);
    if (rc) {
        free(d);
        return rc;
    }
    if (getrandom(&d->rng, sizeof(d->rng), GRND_NONBLOCK) != (ssize_t)sizeof(d->rng))
        d->rng = (uint64_t)px_now_ns() ^ ((uint64_t)getpid() << 32);
    d->rng |= 1; /* xorshift must not start at 0 */
    d->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (d->stop_fd < 0) {
        rc = ns_errorf(err, -errno, "eventfd: %s", strerror(errno));
        free(d);
        return rc;
    }
    rc = pthread_create(&d->thread, NULL, discovery_main, d);
    if (rc) {
        close(d->stop_fd);
        free(d);
        return ns_errorf(err, -rc, "cannot start the discovery thread: %s", strerror(rc));
    }
    *out = d;
    return 0;
}

void px_discovery_stop(px_discovery *d)
{
    if (!d)
        return;
    atomic_store(&d->stopping, true);
    uint64_t one = 1;
    if (write(d->stop_fd, &one, sizeof(one)) < 0)
        ns_log(NS_LOG_WARN, "cannot wake the discovery thread", "error", strerror(errno), NULL);
    pthread_join(d->thread, NULL);
    close(d->stop_fd);
    free(d->buf);
    free(d);
}

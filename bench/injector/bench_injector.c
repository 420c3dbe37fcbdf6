/* bench_injector.c - nutshell-bench-injector: load generator for the injector webhook.
 *
 * Sends one AdmissionReview (a Bookinfo pod, review.json) as `POST /inject` over TLS
 * keep-alive connections, raw HTTP/1.1 on OpenSSL, and prints the rate, latency
 * percentiles, the server's RSS and the machine it ran on, then one JSON line.
 *
 * Two modes:
 *   --rate R  open loop: request k is due at t0 + k/R whatever happened before, and its
 *             latency counts from that scheduled time, so a server stall shows up in the
 *             percentiles instead of silently slowing the client down (no coordinated
 *             omission, as in wrk2).
 *   --max     closed loop: every connection sends its next request as soon as the last
 *             answer is in; latency counts from the actual send.
 *
 * Everything is bounded: duration, request count, per-request timeout, and an alarm as a
 * last resort. Only loopback targets (127.0.0.1, ::1) are accepted.
 *
 * Files: parse.c (pure: numbers, the AdmissionReview text, HTTP responses), sysinfo.c
 * (machine and /proc), this one (connections, workers, results, self-test, main).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "parse.h"
#include "sysinfo.h"

#ifndef NUTSHELL_BENCH_REVIEW
#define NUTSHELL_BENCH_REVIEW "bench/injector/review.json"
#endif

/* Hard bounds: the program always stops by itself, and soon. */
#define MAX_DURATION_S       60.0
#define MAX_WARMUP_S         10.0
#define MAX_RATE             200000.0
#define MAX_CONNECTIONS      1024
#define MAX_THREADS          8
#define DEFAULT_MAX_REQUESTS 5000000ULL
#define HARD_MAX_REQUESTS    20000000ULL
#define DEFAULT_TIMEOUT_MS   5000
#define MAX_TIMEOUT_MS       30000
#define CONNECT_TIMEOUT_S    5
#define MAX_BODY             (1u << 20)   /* request body file */
#define RETRY_NS             100000000ULL /* a dead connection is retried every 100 ms */
#define SCAN_NS              10000000ULL  /* timeouts are checked every 10 ms */
#define SAMPLE_NS            50000000ULL  /* the server's RSS is sampled every 50 ms */
#define NS_PER_S             1000000000ULL
#define NS_PER_MS            1000000ULL

static const char *const prog = "nutshell-bench-injector";

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------------------ */
/* Configuration                                                                         */
/* ------------------------------------------------------------------------------------ */

enum bench_mode { MODE_NONE, MODE_RATE, MODE_MAX };

struct bench_cfg {
    enum bench_mode mode;
    const char *host;
    char ip[INET6_ADDRSTRLEN];
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint16_t port;
    const char *path;
    const char *body_file;
    const char *cacert;
    const char *servername;
    bool insecure;
    bool check_uid;
    double rate;
    double duration_s;
    double warmup_s;
    uint32_t connections; /* 0 = default for the mode */
    uint32_t threads;
    uint64_t max_requests;
    uint32_t timeout_ms;
    long pid; /* 0 = no server sampling */
};

/* Accepts 127.0.0.1, ::1 (optionally in brackets) and localhost, nothing else. */
static int resolve_loopback(struct bench_cfg *cfg, char *err, size_t errlen)
{
    char h[INET6_ADDRSTRLEN + 2];
    size_t hl = strlen(cfg->host);
    struct sockaddr_in *sin = (struct sockaddr_in *)&cfg->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&cfg->addr;

    if (hl >= sizeof h) {
        nbi_errorf(err, errlen, "--host: only 127.0.0.1, ::1 or localhost are allowed");
        return -EINVAL;
    }
    if (hl > 2 && cfg->host[0] == '[' && cfg->host[hl - 1] == ']') {
        memcpy(h, cfg->host + 1, hl - 2);
        h[hl - 2] = '\0';
    } else {
        memcpy(h, cfg->host, hl + 1);
    }
    if (strcasecmp(h, "localhost") == 0)
        snprintf(h, sizeof h, "%s", "127.0.0.1");

    memset(&cfg->addr, 0, sizeof cfg->addr);
    if (inet_pton(AF_INET, h, &sin->sin_addr) == 1) {
        if (sin->sin_addr.s_addr != htonl(INADDR_LOOPBACK))
            goto refuse;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(cfg->port);
        cfg->addrlen = sizeof *sin;
        inet_ntop(AF_INET, &sin->sin_addr, cfg->ip, sizeof cfg->ip);
        return 0;
    }
    if (inet_pton(AF_INET6, h, &sin6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
            goto refuse;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(cfg->port);
        cfg->addrlen = sizeof *sin6;
        inet_ntop(AF_INET6, &sin6->sin6_addr, cfg->ip, sizeof cfg->ip);
        return 0;
    }
refuse:
    nbi_errorf(err, errlen, "--host %s refused: only 127.0.0.1, ::1 or localhost are allowed",
               cfg->host);
    return -EINVAL;
}

/* ------------------------------------------------------------------------------------ */
/* Shared run state                                                                      */
/* ------------------------------------------------------------------------------------ */

enum err_kind { E_STATUS, E_DENIED, E_UID, E_PROTO, E_IO, E_TIMEOUT, E_KINDS };
static const char *const err_names[E_KINDS] = {"status", "not-allowed", "uid",
                                               "http",   "io",          "timeout"};

struct run {
    const struct bench_cfg *cfg;
    SSL_CTX *ctx;
    char *req; /* request template: head + compact body */
    size_t req_len;
    size_t body_len; /* compact body as sent */
    size_t uid_off;  /* offset of request.uid's value in req; uid_len 0 = not patched */
    size_t uid_len;
    uint64_t t0;         /* start of the timeline */
    uint64_t n_total;    /* rate mode: requests on the timeline */
    uint64_t n_warm;     /* rate mode: the first n_warm are not measured */
    double ns_per_req;   /* rate mode */
    uint64_t meas_start; /* max mode: measurement window */
    uint64_t meas_end;
    uint64_t hard_end;           /* nothing runs past this */
    atomic_uint_fast64_t issued; /* max mode: requests sent, for --max-requests */
    atomic_uint done_workers;
};

static struct run g_run;
/* Set by SIGINT/SIGTERM or a fatal worker error; lock-free, so safe in a handler. */
static atomic_int g_stop;

static void on_signal_cb(int sig)
{
    (void)sig;
    g_stop = 1;
}

enum conn_state { C_DOWN, C_IDLE, C_WRITING, C_READING };

struct worker;

struct conn {
    struct worker *w;
    uint32_t id; /* global index, part of every request uid */
    int fd;
    SSL *ssl;
    enum conn_state st;
    uint32_t ev; /* registered epoll events */
    bool in_idle;
    char *req; /* private copy of the request (the uid changes per request) */
    char *rbuf;
    size_t rlen, rcap;
    uint64_t sched; /* when the request in flight was due (rate) or sent (max) */
    uint64_t sent;
    uint64_t seq;
    uint64_t retry_at;
    bool measured;
};

struct samples {
    uint64_t *v;
    size_t n, cap;
};

struct worker {
    uint32_t idx;
    pthread_t tid;
    int epfd;
    int tfd; /* rate mode: timerfd for the next due request */
    struct conn **conns;
    uint32_t nconns;
    struct conn **idle; /* stack of idle connections (lazy: entries are rechecked) */
    uint32_t nidle;
    uint32_t inflight;
    uint64_t next_k; /* rate mode: next request index of this worker */
    bool stopping;
    bool interrupted;
    /* results */
    struct samples lat;
    struct samples lag; /* rate mode: send time minus due time */
    uint64_t sent, warm_ok, meas_ok, meas_sent, unsent, reconnects, connect_fails;
    uint64_t errs[E_KINDS];
    uint64_t first_meas_due, last_done;
    char first_err[320];
};

static int samples_push(struct samples *s, uint64_t v)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 65536;
        uint64_t *nv = realloc(s->v, ncap * sizeof *nv);
        if (!nv)
            return -ENOMEM;
        s->v = nv;
        s->cap = ncap;
    }
    s->v[s->n++] = v;
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Connections                                                                           */
/* ------------------------------------------------------------------------------------ */

static void ssl_errstr(char *out, size_t outlen)
{
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, out, outlen);
    else
        snprintf(out, outlen, "%s", errno ? strerror(errno) : "connection closed");
    ERR_clear_error();
}

static void conn_set_events(struct conn *c, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (c->ev == ev)
        return;
    if (epoll_ctl(c->w->epfd, c->ev ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e) == 0)
        c->ev = ev;
}

static void conn_close(struct conn *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd); /* also leaves the epoll set */
        c->fd = -1;
    }
    c->ev = 0;
    c->st = C_DOWN;
    c->rlen = 0;
}

static void idle_push(struct conn *c)
{
    struct worker *w = c->w;
    if (!c->in_idle) {
        c->in_idle = true;
        w->idle[w->nidle++] = c;
    }
}

static struct conn *idle_pop(struct worker *w)
{
    while (w->nidle > 0) {
        struct conn *c = w->idle[--w->nidle];
        c->in_idle = false;
        if (c->st == C_IDLE)
            return c;
    }
    return NULL;
}

/* Connects and completes the TLS handshake (blocking, bounded by CONNECT_TIMEOUT_S), then
 * switches the socket to non-blocking and registers it. Returns 0 or a negative errno with
 * a sentence in err; on failure the connection is left C_DOWN. */
static int conn_open(struct conn *c, char *err, size_t errlen)
{
    const struct bench_cfg *cfg = g_run.cfg;
    struct timeval tv = {.tv_sec = CONNECT_TIMEOUT_S};
    int one = 1, rc;

    conn_close(c);
    c->fd = socket(cfg->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        nbi_errorf(err, errlen, "socket: %s", strerror(errno));
        return -errno;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(c->fd, (const struct sockaddr *)&cfg->addr, cfg->addrlen) != 0) {
        rc = -errno;
        nbi_errorf(err, errlen, "connect to %s port %u: %s", cfg->ip, cfg->port, strerror(errno));
        goto fail;
    }
    c->ssl = SSL_new(g_run.ctx);
    if (!c->ssl) {
        rc = -ENOMEM;
        nbi_errorf(err, errlen, "SSL_new failed");
        goto fail;
    }
    SSL_set_fd(c->ssl, c->fd);
    if (cfg->servername) {
        SSL_set_tlsext_host_name(c->ssl, cfg->servername);
        if (!cfg->insecure)
            SSL_set1_host(c->ssl, cfg->servername);
    } else if (!cfg->insecure) {
        /* No SNI for an IP address (RFC 6066); check the IP SAN instead. */
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), cfg->ip);
    }
    ERR_clear_error();
    errno = 0;
    if (SSL_connect(c->ssl) != 1) {
        char why[256];
        long vr = SSL_get_verify_result(c->ssl);
        if (vr != X509_V_OK)
            snprintf(why, sizeof why, "certificate verification failed: %s",
                     X509_verify_cert_error_string(vr));
        else
            ssl_errstr(why, sizeof why);
        nbi_errorf(err, errlen, "TLS handshake with %s port %u: %s", cfg->ip, cfg->port, why);
        rc = -EPROTO;
        goto fail;
    }
    if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) != 0) {
        rc = -errno;
        nbi_errorf(err, errlen, "fcntl: %s", strerror(errno));
        goto fail;
    }
    c->st = C_IDLE;
    conn_set_events(c, EPOLLIN);
    if (c->ev != EPOLLIN) {
        rc = -errno;
        nbi_errorf(err, errlen, "epoll_ctl: %s", strerror(errno));
        goto fail;
    }
    idle_push(c);
    return 0;
fail:
    conn_close(c);
    return rc;
}

static void worker_note_err(struct worker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void worker_note_err(struct worker *w, const char *fmt, ...)
{
    va_list ap;
    if (w->first_err[0])
        return;
    va_start(ap, fmt);
    vsnprintf(w->first_err, sizeof w->first_err, fmt, ap);
    va_end(ap);
}

/* Reopens a connection now, or schedules a retry; never while the worker is stopping. */
static void conn_reopen(struct conn *c)
{
    struct worker *w = c->w;
    char err[256];

    conn_close(c);
    if (w->stopping || g_stop)
        return;
    if (conn_open(c, err, sizeof err) == 0) {
        w->reconnects++;
    } else {
        w->connect_fails++;
        worker_note_err(w, "reconnect: %s", err);
        c->retry_at = now_ns() + RETRY_NS;
    }
}

/* Ends the request in flight on c as an error of `kind`, then reconnects. */
static void conn_fail(struct conn *c, enum err_kind kind, const char *msg)
{
    struct worker *w = c->w;
    if (c->st == C_WRITING || c->st == C_READING) {
        w->errs[kind]++;
        w->inflight--;
        worker_note_err(w, "%s error: %s", err_names[kind], msg);
    }
    conn_reopen(c);
}

static int conn_write(struct conn *c);

/* Sends the next request on an idle connection; `due` is when it was scheduled. */
static void conn_send(struct conn *c, uint64_t due, bool measured)
{
    struct worker *w = c->w;

    if (g_run.uid_len) {
        /* A unique uid per request, as the API server sends: the last 12 hex digits of
         * the template uid become connection id and sequence number. */
        char hex[13];
        uint64_t u = ((uint64_t)c->id << 36) | (c->seq & 0xfffffffffULL);
        snprintf(hex, sizeof hex, "%012" PRIx64, (uint64_t)(u & 0xffffffffffffULL));
        memcpy(c->req + g_run.uid_off + g_run.uid_len - 12, hex, 12);
    }
    c->seq++;
    c->sched = due;
    c->measured = measured;
    c->rlen = 0;
    c->st = C_WRITING;
    w->inflight++;
    w->sent++;
    if (measured)
        w->meas_sent++;
    c->sent = now_ns();
    conn_write(c);
}

/* Handles a complete response in c->rbuf. */
static void conn_done(struct conn *c, struct nbi_http_resp *r)
{
    struct worker *w = c->w;
    uint64_t now = now_ns();
    char snip[160];

    if (r->total != c->rlen) {
        conn_fail(c, E_PROTO, "bytes after the response (no request was pipelined)");
        return;
    }
    if (r->status != 200) {
        nbi_snippet(r->body, r->body_len, snip, sizeof snip);
        w->errs[E_STATUS]++;
        worker_note_err(w, "status %d: %s", r->status, snip);
    } else if (!nbi_body_allows(r->body, r->body_len)) {
        nbi_snippet(r->body, r->body_len, snip, sizeof snip);
        w->errs[E_DENIED]++;
        worker_note_err(w, "no \"allowed\":true in the response: %s", snip);
    } else if (g_run.cfg->check_uid && g_run.uid_len &&
               !memmem(r->body, r->body_len, c->req + g_run.uid_off, g_run.uid_len)) {
        nbi_snippet(c->req + g_run.uid_off, g_run.uid_len, snip, sizeof snip);
        w->errs[E_UID]++;
        worker_note_err(w, "the response does not echo request uid %s", snip);
    } else {
        if (c->measured) {
            w->meas_ok++;
            w->last_done = now;
            if (samples_push(&w->lat, now - c->sched) != 0 ||
                (g_run.cfg->mode == MODE_RATE && samples_push(&w->lag, c->sent - c->sched))) {
                worker_note_err(w, "out of memory for samples");
                g_stop = 1;
            }
        } else {
            w->warm_ok++;
        }
    }
    w->inflight--;
    c->st = C_IDLE;
    c->rlen = 0;
    if (!r->keep_alive) {
        conn_reopen(c);
        return;
    }
    conn_set_events(c, EPOLLIN);
    idle_push(c);
}

/* Reads what is there; finishes the response when complete. Returns 0 or -1 (failed). */
static int conn_read(struct conn *c)
{
    for (;;) {
        struct nbi_http_resp r;
        char err[200];
        int n, rc;

        if (c->rlen == c->rcap) {
            size_t ncap = c->rcap * 2;
            char *nb;
            if (ncap > NBI_MAX_RESPONSE + NBI_MAX_HEADER + 65536) {
                conn_fail(c, E_PROTO, "response too large");
                return -1;
            }
            nb = realloc(c->rbuf, ncap);
            if (!nb) {
                conn_fail(c, E_IO, "out of memory");
                return -1;
            }
            c->rbuf = nb;
            c->rcap = ncap;
        }
        ERR_clear_error();
        errno = 0;
        n = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(c->rcap - c->rlen));
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_READ) {
                conn_set_events(c, EPOLLIN);
                return 0;
            }
            if (e == SSL_ERROR_WANT_WRITE) {
                conn_set_events(c, EPOLLOUT);
                return 0;
            }
            if (e == SSL_ERROR_ZERO_RETURN)
                snprintf(err, sizeof err, "server closed the connection mid-response");
            else
                ssl_errstr(err, sizeof err);
            conn_fail(c, E_IO, err);
            return -1;
        }
        c->rlen += (size_t)n;
        rc = nbi_http_parse_response(c->rbuf, c->rlen, &r, err, sizeof err);
        if (rc < 0) {
            conn_fail(c, E_PROTO, err);
            return -1;
        }
        if (rc == 1) {
            conn_done(c, &r);
            return 0;
        }
    }
}

static int conn_write(struct conn *c)
{
    char err[200];
    int n, e;

    ERR_clear_error();
    errno = 0;
    n = SSL_write(c->ssl, c->req, (int)g_run.req_len);
    if (n > 0) { /* partial writes are off: n is the whole request */
        c->st = C_READING;
        conn_set_events(c, EPOLLIN);
        return 0;
    }
    e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_WRITE) {
        conn_set_events(c, EPOLLOUT);
        return 0;
    }
    if (e == SSL_ERROR_WANT_READ) {
        conn_set_events(c, EPOLLIN);
        return 0;
    }
    ssl_errstr(err, sizeof err);
    conn_fail(c, E_IO, err);
    return -1;
}

/* An idle connection became readable: a TLS 1.3 session ticket (fine), the server
 * closing an idle keep-alive connection (reconnect), or unsolicited bytes (error). */
static void conn_idle_event(struct conn *c)
{
    char tmp[512];
    int n, e;

    ERR_clear_error();
    n = SSL_read(c->ssl, tmp, sizeof tmp);
    if (n > 0) {
        c->w->errs[E_PROTO]++;
        worker_note_err(c->w, "http error: %d bytes from the server with no request", n);
        conn_reopen(c);
        return;
    }
    e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return;
    ERR_clear_error();
    conn_reopen(c);
}

static void conn_event(struct conn *c)
{
    switch (c->st) {
    case C_WRITING:
        conn_write(c);
        break;
    case C_READING:
        conn_read(c);
        break;
    case C_IDLE:
        conn_idle_event(c);
        break;
    case C_DOWN:
        break;
    }
}

/* ------------------------------------------------------------------------------------ */
/* Workers                                                                               */
/* ------------------------------------------------------------------------------------ */

static uint64_t due_ns(uint64_t k)
{
    return g_run.t0 + (uint64_t)((double)k * g_run.ns_per_req);
}

/* Starts every request that may start now. */
static void worker_dispatch(struct worker *w, uint64_t now)
{
    const struct bench_cfg *cfg = g_run.cfg;

    if (cfg->mode == MODE_RATE) {
        while (w->next_k < g_run.n_total) {
            uint64_t due = due_ns(w->next_k);
            struct conn *c;
            if (due > now)
                break;
            c = idle_pop(w);
            if (!c)
                break; /* the backlog waits; its latency keeps counting from `due` */
            conn_send(c, due, w->next_k >= g_run.n_warm);
            w->next_k += cfg->threads;
        }
        return;
    }
    for (;;) {
        struct conn *c;
        uint64_t t;
        if (now >= g_run.meas_end) {
            w->stopping = true;
            return;
        }
        c = idle_pop(w);
        if (!c)
            return;
        if (atomic_fetch_add(&g_run.issued, 1) >= cfg->max_requests) {
            w->stopping = true;
            idle_push(c);
            return;
        }
        t = now_ns();
        conn_send(c, t, t >= g_run.meas_start);
    }
}

/* Times out requests in flight and retries dead connections. */
static void worker_scan(struct worker *w, uint64_t now)
{
    uint64_t timeout = (uint64_t)g_run.cfg->timeout_ms * NS_PER_MS;

    for (uint32_t i = 0; i < w->nconns; i++) {
        struct conn *c = w->conns[i];
        /* c->sent may be a little later than `now`, which was read before dispatching. */
        if ((c->st == C_WRITING || c->st == C_READING) && now > c->sent + timeout) {
            char msg[96];
            snprintf(msg, sizeof msg, "no complete response within %u ms", g_run.cfg->timeout_ms);
            conn_fail(c, E_TIMEOUT, msg);
        } else if (c->st == C_DOWN && !w->stopping && !g_stop && now >= c->retry_at) {
            conn_reopen(c);
        }
    }
}

static void worker_arm_timer(struct worker *w, uint64_t now, uint64_t *armed)
{
    struct itimerspec its = {0};
    uint64_t due;

    if (w->tfd < 0 || w->stopping || w->next_k >= g_run.n_total)
        return;
    due = due_ns(w->next_k);
    if (due <= now || due == *armed)
        return;
    its.it_value.tv_sec = (time_t)(due / NS_PER_S);
    its.it_value.tv_nsec = (long)(due % NS_PER_S);
    if (timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
        *armed = due;
}

static void *worker_main_cb(void *arg)
{
    struct worker *w = arg;
    const struct bench_cfg *cfg = g_run.cfg;
    struct epoll_event evs[64];
    uint64_t armed = 0, next_scan = 0;

    /* Timer slack is per thread; 1 ns lets the timerfd fire on time (default 50 us). */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    if (cfg->mode == MODE_MAX) { /* the rate mode's timeline starts at t0 by itself */
        struct timespec ts = {.tv_sec = (time_t)(g_run.t0 / NS_PER_S),
                              .tv_nsec = (long)(g_run.t0 % NS_PER_S)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
    }

    for (;;) {
        uint64_t now = now_ns();
        int n;

        if (g_stop && !w->stopping) {
            w->stopping = true;
            w->interrupted = true;
        }
        if (cfg->mode == MODE_RATE && w->next_k >= g_run.n_total)
            w->stopping = true;
        if (!w->stopping)
            worker_dispatch(w, now);
        if (w->stopping && w->inflight == 0)
            break;
        if (now >= g_run.hard_end) {
            w->stopping = true;
            for (uint32_t i = 0; i < w->nconns; i++)
                conn_fail(w->conns[i], E_TIMEOUT, "still in flight at the end of the run");
            break;
        }
        if (now >= next_scan) {
            worker_scan(w, now);
            next_scan = now + SCAN_NS;
        }
        worker_arm_timer(w, now, &armed);

        n = epoll_wait(w->epfd, evs, 64, 10);
        if (n < 0 && errno != EINTR) {
            worker_note_err(w, "epoll_wait: %s", strerror(errno));
            g_stop = 1;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                uint64_t x;
                if (read(w->tfd, &x, sizeof x) < 0 && errno != EAGAIN)
                    worker_note_err(w, "timerfd: %s", strerror(errno));
                armed = 0;
                continue;
            }
            conn_event(evs[i].data.ptr);
        }
    }
    if (cfg->mode == MODE_RATE && !w->interrupted && w->next_k < g_run.n_total)
        w->unsent = (g_run.n_total - w->next_k + cfg->threads - 1) / cfg->threads;
    for (uint32_t i = 0; i < w->nconns; i++)
        conn_close(w->conns[i]);
    atomic_fetch_add(&g_run.done_workers, 1);
    return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* Results                                                                               */
/* ------------------------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples, in ms. */
static double pct_ms(const struct samples *s, double p)
{
    size_t rank;
    if (s->n == 0)
        return 0;
    rank = (size_t)ceil(p / 100.0 * (double)s->n);
    if (rank < 1)
        rank = 1;
    if (rank > s->n)
        rank = s->n;
    return (double)s->v[rank - 1] / 1e6;
}

static int merge_samples(struct samples *dst, const struct samples *src)
{
    if (src->n == 0)
        return 0;
    if (dst->cap - dst->n < src->n) {
        size_t ncap = dst->n + src->n;
        uint64_t *nv = realloc(dst->v, ncap * sizeof *nv);
        if (!nv)
            return -ENOMEM;
        dst->v = nv;
        dst->cap = ncap;
    }
    memcpy(dst->v + dst->n, src->v, src->n * sizeof *src->v);
    dst->n += src->n;
    return 0;
}

static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(out, "\\u%04x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
}

/* ------------------------------------------------------------------------------------ */
/* Self-test of the pure parts (no network)                                              */
/* ------------------------------------------------------------------------------------ */

static int st_pass, st_fail;

static void st_check(bool ok, const char *what)
{
    if (ok) {
        st_pass++;
    } else {
        st_fail++;
        fprintf(stderr, "self-test FAILED: %s\n", what);
    }
}

/* Feeds a response one byte at a time, as the worst possible sequence of short reads. */
static int st_parse_bytewise(const char *text, struct nbi_http_resp *r, char *copy, size_t cap)
{
    size_t len = strlen(text);
    int rc = 0;
    char err[200];

    if (len >= cap)
        return -EMSGSIZE;
    for (size_t i = 1; i <= len; i++) {
        memcpy(copy, text, i);
        rc = nbi_http_parse_response(copy, i, r, err, sizeof err);
        if (rc != 0)
            return (i == len || rc < 0) ? rc : -EBADMSG; /* complete too early */
    }
    return rc;
}

static int self_test(void)
{
    struct nbi_http_resp r;
    char buf[1024], err[200];
    int rc;

    rc = st_parse_bytewise("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                           "content-length: 16\r\n\r\n{\"allowed\":true}",
                           &r, buf, sizeof buf);
    st_check(rc == 1 && r.status == 200 && r.keep_alive && r.body_len == 16 &&
                 nbi_body_allows(r.body, r.body_len),
             "Content-Length response read byte by byte");

    rc = st_parse_bytewise("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "5;ext=1\r\n{\"all\r\nc\r\nowed\": true}\r\n0\r\nX-T: 1\r\n\r\n",
                           &r, buf, sizeof buf);
    st_check(rc == 1 && r.body_len == 17 && memcmp(r.body, "{\"allowed\": true}", 17) == 0 &&
                 nbi_body_allows(r.body, r.body_len),
             "chunked response with extension and trailer");

    rc = st_parse_bytewise("HTTP/1.1 500 Internal\r\nConnection: close\r\n"
                           "Content-Length: 2\r\n\r\nno",
                           &r, buf, sizeof buf);
    st_check(rc == 1 && r.status == 500 && !r.keep_alive, "Connection: close");

    rc = st_parse_bytewise("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", &r, buf, sizeof buf);
    st_check(rc == 1 && !r.keep_alive && r.body_len == 0, "HTTP/1.0 closes by default");

    rc = st_parse_bytewise("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
                           &r, buf, sizeof buf);
    st_check(rc == 1 && r.keep_alive, "HTTP/1.0 keep-alive");

    snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA");
    rc = nbi_http_parse_response(buf, strlen(buf), &r, err, sizeof err);
    st_check(rc == 1 && r.total == strlen(buf) - 5, "total excludes bytes after the response");

    snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\n\r\n");
    st_check(nbi_http_parse_response(buf, strlen(buf), &r, err, sizeof err) == -EPROTO,
             "no length is refused");
    snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n");
    st_check(nbi_http_parse_response(buf, strlen(buf), &r, err, sizeof err) == -EPROTO,
             "bad Content-Length is refused");
    snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
    st_check(nbi_http_parse_response(buf, strlen(buf), &r, err, sizeof err) == -EPROTO,
             "conflicting Content-Length is refused");
    snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n");
    st_check(nbi_http_parse_response(buf, strlen(buf), &r, err, sizeof err) == -EMSGSIZE,
             "huge Content-Length is refused");
    snprintf(buf, sizeof buf, "SSH-2.0-OpenSSH\r\n\r\n");
    st_check(nbi_http_parse_response(buf, strlen(buf), &r, err, sizeof err) == -EPROTO,
             "not HTTP is refused");
    snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    st_check(nbi_http_parse_response(buf, strlen(buf), &r, err, sizeof err) == -EPROTO,
             "bad chunk size is refused");

    st_check(!nbi_body_allows("{\"allowed\":false}", 17), "allowed:false is not allowed");
    st_check(!nbi_body_allows("{}", 2), "missing allowed");

    snprintf(buf, sizeof buf, "{ \"a\" : \"x y\\\" z\" ,\n \"b\": [1, 2] }");
    {
        size_t n = nbi_json_minify(buf, strlen(buf));
        st_check(n == strlen("{\"a\":\"x y\\\" z\",\"b\":[1,2]}") &&
                     memcmp(buf, "{\"a\":\"x y\\\" z\",\"b\":[1,2]}", n) == 0,
                 "nbi_json_minify keeps strings");
    }
    {
        const char *j = "{\"request\":{\"uid\":\"abc-123\",\"object\":{\"uid\":\"no\"}}}";
        size_t off = 0, len = 0;
        st_check(nbi_review_find_uid(j, strlen(j), &off, &len) == 0 && len == 7 &&
                     memcmp(j + off, "abc-123", 7) == 0,
                 "request uid found");
    }
    {
        uint64_t v = 0;
        double d = 0;
        st_check(nbi_parse_u64("12", 1, 100, &v) == 0 && v == 12, "nbi_parse_u64");
        st_check(nbi_parse_u64("-1", 0, 100, &v) != 0 && nbi_parse_u64("1x", 0, 100, &v) != 0 &&
                     nbi_parse_u64("", 0, 100, &v) != 0 &&
                     nbi_parse_u64("101", 0, 100, &v) == -ERANGE,
                 "nbi_parse_u64 refuses garbage");
        st_check(nbi_parse_double("2.5", 0, 10, &d) == 0 && d == 2.5 &&
                     nbi_parse_double("nan", 0, 10, &d) != 0 &&
                     nbi_parse_double("1e9", 0, 10, &d) != 0,
                 "nbi_parse_double");
    }
    printf("self-test: %d passed, %d failed\n", st_pass, st_fail);
    return st_fail ? 1 : 0;
}

/* ------------------------------------------------------------------------------------ */
/* Main                                                                                  */
/* ------------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: %s --port PORT (--cacert FILE | --insecure) MODE [options]\n"
            "\n"
            "Drives the injector webhook (POST /inject, TLS, HTTP/1.1 keep-alive) and prints\n"
            "rate, latency percentiles, the server's RSS and the machine, then one JSON line.\n"
            "\n"
            "modes (one of):\n"
            "  --rate R            open loop at R reviews/s (1..%.0f); latency counts from the\n"
            "                      scheduled send time (no coordinated omission)\n"
            "  --max               closed loop, as fast as the connections go\n"
            "\n"
            "options:\n"
            "  --host H            127.0.0.1 (default), ::1 or localhost; nothing else\n"
            "  --port P            webhook port (required)\n"
            "  --path P            request path (default /inject)\n"
            "  --body FILE         AdmissionReview to send (default %s);\n"
            "                      sent compact, with a fresh request.uid per request\n"
            "  --cacert FILE       verify the server certificate (IP SAN, or --servername)\n"
            "  --insecure          do not verify the server certificate\n"
            "  --servername NAME   send SNI NAME and verify the certificate for NAME\n"
            "  --duration S        measured seconds (default 10, at most %.0f)\n"
            "  --warmup S          unmeasured seconds before (default 0, at most %.0f)\n"
            "  --connections C     keep-alive connections (default 4 with --rate, 8 with --max)\n"
            "  --threads T         client threads (default 1, at most %d)\n"
            "  --max-requests N    cap on requests sent (default %llu, at most %llu)\n"
            "  --timeout MS        per-request timeout (default %d, at most %d)\n"
            "  --pid PID           sample the server's VmRSS/VmHWM and CPU from /proc/PID\n"
            "  --no-uid-check      do not require the response to echo request.uid\n"
            "  --self-test         check the parsers and exit\n"
            "\n"
            "exit status: 0 when every request was answered 200 with \"allowed\":true (and\n"
            "its uid); 1 on any error, unsent request, interruption or failure to connect;\n"
            "2 on a usage error.\n",
            prog, MAX_RATE, NUTSHELL_BENCH_REVIEW, MAX_DURATION_S, MAX_WARMUP_S, MAX_THREADS,
            (unsigned long long)DEFAULT_MAX_REQUESTS, (unsigned long long)HARD_MAX_REQUESTS,
            DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see --help)\n");
    return 2;
}

enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_PATH,
    OPT_BODY,
    OPT_CACERT,
    OPT_INSECURE,
    OPT_SERVERNAME,
    OPT_RATE,
    OPT_MAX,
    OPT_DURATION,
    OPT_WARMUP,
    OPT_CONNECTIONS,
    OPT_THREADS,
    OPT_MAX_REQUESTS,
    OPT_TIMEOUT,
    OPT_PID,
    OPT_NO_UID,
    OPT_SELF_TEST,
    OPT_HELP,
};

/* Returns 0, 2 for a usage error (already printed), or -1 for --self-test/--help done. */
static int parse_args(int argc, char **argv, struct bench_cfg *cfg, int *exit_code)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"path", required_argument, NULL, OPT_PATH},
        {"body", required_argument, NULL, OPT_BODY},
        {"cacert", required_argument, NULL, OPT_CACERT},
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"servername", required_argument, NULL, OPT_SERVERNAME},
        {"rate", required_argument, NULL, OPT_RATE},
        {"max", no_argument, NULL, OPT_MAX},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"connections", required_argument, NULL, OPT_CONNECTIONS},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"max-requests", required_argument, NULL, OPT_MAX_REQUESTS},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"pid", required_argument, NULL, OPT_PID},
        {"no-uid-check", no_argument, NULL, OPT_NO_UID},
        {"self-test", no_argument, NULL, OPT_SELF_TEST},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    char err[256];
    uint64_t u;
    int o;

    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case OPT_HOST:
            cfg->host = optarg;
            break;
        case OPT_PORT:
            if (nbi_parse_u64(optarg, 1, 65535, &u) != 0)
                return usage_error("--port: want 1..65535, got \"%s\"", optarg);
            cfg->port = (uint16_t)u;
            break;
        case OPT_PATH:
            if (optarg[0] != '/' || strpbrk(optarg, " \r\n\t"))
                return usage_error("--path: want an absolute path without spaces");
            cfg->path = optarg;
            break;
        case OPT_BODY:
            cfg->body_file = optarg;
            break;
        case OPT_CACERT:
            cfg->cacert = optarg;
            break;
        case OPT_INSECURE:
            cfg->insecure = true;
            break;
        case OPT_SERVERNAME:
            if (!optarg[0] || strpbrk(optarg, " \r\n\t/"))
                return usage_error("--servername: want a DNS name");
            cfg->servername = optarg;
            break;
        case OPT_RATE:
            if (nbi_parse_double(optarg, 1, MAX_RATE, &cfg->rate) != 0)
                return usage_error("--rate: want 1..%.0f reviews/s, got \"%s\"", MAX_RATE, optarg);
            if (cfg->mode == MODE_MAX)
                return usage_error("--rate and --max exclude each other");
            cfg->mode = MODE_RATE;
            break;
        case OPT_MAX:
            if (cfg->mode == MODE_RATE)
                return usage_error("--rate and --max exclude each other");
            cfg->mode = MODE_MAX;
            break;
        case OPT_DURATION:
            if (nbi_parse_double(optarg, 0.1, MAX_DURATION_S, &cfg->duration_s) != 0)
                return usage_error("--duration: want 0.1..%.0f s, got \"%s\"", MAX_DURATION_S,
                                   optarg);
            break;
        case OPT_WARMUP:
            if (nbi_parse_double(optarg, 0, MAX_WARMUP_S, &cfg->warmup_s) != 0)
                return usage_error("--warmup: want 0..%.0f s, got \"%s\"", MAX_WARMUP_S, optarg);
            break;
        case OPT_CONNECTIONS:
            if (nbi_parse_u64(optarg, 1, MAX_CONNECTIONS, &u) != 0)
                return usage_error("--connections: want 1..%d, got \"%s\"", MAX_CONNECTIONS,
                                   optarg);
            cfg->connections = (uint32_t)u;
            break;
        case OPT_THREADS:
            if (nbi_parse_u64(optarg, 1, MAX_THREADS, &u) != 0)
                return usage_error("--threads: want 1..%d, got \"%s\"", MAX_THREADS, optarg);
            cfg->threads = (uint32_t)u;
            break;
        case OPT_MAX_REQUESTS:
            if (nbi_parse_u64(optarg, 1, HARD_MAX_REQUESTS, &u) != 0)
                return usage_error("--max-requests: want 1..%llu, got \"%s\"",
                                   (unsigned long long)HARD_MAX_REQUESTS, optarg);
            cfg->max_requests = u;
            break;
        case OPT_TIMEOUT:
            if (nbi_parse_u64(optarg, 1, MAX_TIMEOUT_MS, &u) != 0)
                return usage_error("--timeout: want 1..%d ms, got \"%s\"", MAX_TIMEOUT_MS, optarg);
            cfg->timeout_ms = (uint32_t)u;
            break;
        case OPT_PID:
            if (nbi_parse_u64(optarg, 1, 4194304, &u) != 0)
                return usage_error("--pid: want a process id, got \"%s\"", optarg);
            cfg->pid = (long)u;
            break;
        case OPT_NO_UID:
            cfg->check_uid = false;
            break;
        case OPT_SELF_TEST:
            *exit_code = self_test();
            return -1;
        case OPT_HELP:
            usage(stdout);
            *exit_code = 0;
            return -1;
        default:
            return usage_error("unknown option");
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument \"%s\"", argv[optind]);
    if (cfg->mode == MODE_NONE)
        return usage_error("choose a mode: --rate R or --max");
    if (cfg->port == 0)
        return usage_error("--port is required");
    if (!cfg->cacert == !cfg->insecure)
        return usage_error("choose exactly one of --cacert FILE and --insecure");
    if (cfg->connections == 0)
        cfg->connections = cfg->mode == MODE_RATE ? 4 : 8;
    if (cfg->connections < cfg->threads)
        return usage_error("--connections (%u) must be at least --threads (%u)", cfg->connections,
                           cfg->threads);
    if (cfg->mode == MODE_RATE) {
        double n = ceil((cfg->duration_s + cfg->warmup_s) * cfg->rate);
        if (n > (double)cfg->max_requests)
            return usage_error("--rate x (--duration + --warmup) is %.0f requests, over "
                               "--max-requests %llu",
                               n, (unsigned long long)cfg->max_requests);
    }
    if (resolve_loopback(cfg, err, sizeof err) != 0)
        return usage_error("%s", err);
    return 0;
}

/* Reads the body file, minifies it and builds the request template in g_run. */
static int build_request(const struct bench_cfg *cfg, size_t *raw_len, char *err, size_t errlen)
{
    FILE *f = fopen(cfg->body_file, "rb");
    char *body = NULL, head[512];
    size_t n, blen, off = 0, ulen = 0;
    int hl, rc = 0;

    if (!f) {
        nbi_errorf(err, errlen, "cannot open %s: %s", cfg->body_file, strerror(errno));
        return -errno;
    }
    body = malloc(MAX_BODY + 1);
    if (!body) {
        rc = -ENOMEM;
        goto out;
    }
    n = fread(body, 1, MAX_BODY + 1, f);
    if (ferror(f) || n == 0 || n > MAX_BODY) {
        nbi_errorf(err, errlen, "%s: %s", cfg->body_file,
                   n > MAX_BODY ? "larger than 1 MiB" : "empty or unreadable");
        rc = -EINVAL;
        goto out;
    }
    *raw_len = n;
    blen = nbi_json_minify(body, n);
    if (nbi_review_find_uid(body, blen, &off, &ulen) != 0 || ulen < 12) {
        fprintf(stderr,
                "%s: warning: no request.uid of 12+ characters in %s; sending it as is, "
                "without the uid check\n",
                prog, cfg->body_file);
        ulen = 0;
    }
    if (cfg->servername)
        hl = snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: %s:%u\r\n", cfg->path,
                      cfg->servername, cfg->port);
    else if (cfg->addr.ss_family == AF_INET6)
        hl = snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: [%s]:%u\r\n", cfg->path,
                      cfg->ip, cfg->port);
    else
        hl = snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: %s:%u\r\n", cfg->path, cfg->ip,
                      cfg->port);
    if (hl > 0 && (size_t)hl < sizeof head)
        hl += snprintf(head + hl, sizeof head - (size_t)hl,
                       "User-Agent: %s\r\nAccept: application/json\r\n"
                       "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                       prog, blen);
    if (hl <= 0 || (size_t)hl >= sizeof head) {
        nbi_errorf(err, errlen, "--path too long");
        rc = -EINVAL;
        goto out;
    }
    g_run.req_len = (size_t)hl + blen;
    g_run.req = malloc(g_run.req_len);
    if (!g_run.req) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(g_run.req, head, (size_t)hl);
    memcpy(g_run.req + hl, body, blen);
    g_run.uid_off = (size_t)hl + off;
    g_run.uid_len = ulen;
    g_run.body_len = blen;
out:
    if (rc == -ENOMEM)
        nbi_errorf(err, errlen, "out of memory");
    free(body);
    fclose(f);
    return rc;
}

static SSL_CTX *make_ctx(const struct bench_cfg *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        nbi_errorf(err, errlen, "SSL_CTX_new failed");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (cfg->insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        if (SSL_CTX_load_verify_locations(ctx, cfg->cacert, NULL) != 1) {
            char why[200];
            ssl_errstr(why, sizeof why);
            nbi_errorf(err, errlen, "--cacert %s: %s", cfg->cacert, why);
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    return ctx;
}

/* Everything the run produced, merged from the workers and /proc. */
struct report {
    struct samples lat, lag; /* sorted */
    uint64_t warm_ok, meas_ok, meas_sent, unsent, reconnects, connect_fails, nerr;
    uint64_t errs[E_KINDS];
    uint64_t last_done, t_end;
    const char *first_err;
    bool interrupted;
    double rps, wall_s, client_cpu;
    /* server (--pid) */
    long rss_start, rss_peak, hwm; /* kB, -1 if unknown */
    bool server_gone;
    double srv_cpu0, srv_cpu1;
};

static void sample_rss(long pid, struct report *rep)
{
    long kb = nbi_proc_status_kb(pid, "VmRSS");
    if (kb < 0)
        rep->server_gone = true;
    else if (kb > rep->rss_peak)
        rep->rss_peak = kb;
}

/* Allocates the workers and their connections (connection i belongs to worker
 * i % threads) and connects them all. Returns 0, or -1 after printing why. */
static int setup(const struct bench_cfg *cfg, struct worker **wsp, struct conn **csp)
{
    char err[512];
    struct worker *ws = calloc(cfg->threads, sizeof *ws);
    struct conn *cs = calloc(cfg->connections, sizeof *cs);

    *wsp = ws;
    *csp = cs;
    if (!ws || !cs) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return -1;
    }
    for (uint32_t t = 0; t < cfg->threads; t++)
        ws[t].epfd = ws[t].tfd = -1;
    for (uint32_t i = 0; i < cfg->connections; i++)
        cs[i].fd = -1;
    for (uint32_t t = 0; t < cfg->threads; t++) {
        struct worker *w = &ws[t];
        uint32_t nc = cfg->connections / cfg->threads + (t < cfg->connections % cfg->threads);
        w->idx = t;
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->conns = calloc(nc, sizeof *w->conns);
        w->idle = calloc(nc, sizeof *w->idle);
        w->next_k = t;
        if (w->epfd < 0 || !w->conns || !w->idle) {
            fprintf(stderr, "%s: out of resources: %s\n", prog, strerror(errno));
            return -1;
        }
        if (cfg->mode == MODE_RATE) {
            struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
            w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
            if (w->tfd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->tfd, &e) != 0) {
                fprintf(stderr, "%s: timerfd: %s\n", prog, strerror(errno));
                return -1;
            }
        }
    }
    for (uint32_t i = 0; i < cfg->connections; i++) {
        struct conn *c = &cs[i];
        struct worker *w = &ws[i % cfg->threads];
        c->w = w;
        c->id = i;
        c->rcap = 16384;
        c->rbuf = malloc(c->rcap);
        c->req = malloc(g_run.req_len);
        if (!c->rbuf || !c->req) {
            fprintf(stderr, "%s: out of memory\n", prog);
            return -1;
        }
        memcpy(c->req, g_run.req, g_run.req_len);
        w->conns[w->nconns++] = c;
        if (conn_open(c, err, sizeof err) != 0) {
            fprintf(stderr, "%s: %s\n", prog, err);
            return -1;
        }
    }
    return 0;
}

static void teardown(const struct bench_cfg *cfg, struct worker *ws, struct conn *cs)
{
    if (cs) {
        for (uint32_t i = 0; i < cfg->connections; i++) {
            conn_close(&cs[i]);
            free(cs[i].rbuf);
            free(cs[i].req);
        }
    }
    if (ws) {
        for (uint32_t t = 0; t < cfg->threads; t++) {
            if (ws[t].epfd >= 0)
                close(ws[t].epfd);
            if (ws[t].tfd >= 0)
                close(ws[t].tfd);
            free(ws[t].conns);
            free(ws[t].idle);
            free(ws[t].lat.v);
            free(ws[t].lag.v);
        }
    }
    free(cs);
    free(ws);
}

/* Lays out the timeline, runs the workers to their end while sampling the server, and
 * records the server and client figures in rep. Returns 0 or -1 (printed). */
static int run(const struct bench_cfg *cfg, struct worker *ws, struct report *rep)
{
    double my_cpu0;
    int rc;

    g_run.t0 = now_ns() + 20 * NS_PER_MS;
    if (cfg->mode == MODE_RATE) {
        g_run.ns_per_req = 1e9 / cfg->rate;
        g_run.n_warm = (uint64_t)llround(cfg->warmup_s * cfg->rate);
        g_run.n_total = g_run.n_warm + (uint64_t)llround(cfg->duration_s * cfg->rate);
        if (g_run.n_total == g_run.n_warm)
            g_run.n_total++;
        g_run.meas_start = due_ns(g_run.n_warm);
        g_run.meas_end = due_ns(g_run.n_total);
    } else {
        g_run.meas_start = g_run.t0 + (uint64_t)(cfg->warmup_s * 1e9);
        g_run.meas_end = g_run.meas_start + (uint64_t)(cfg->duration_s * 1e9);
    }
    g_run.hard_end = g_run.meas_end + (uint64_t)cfg->timeout_ms * NS_PER_MS + NS_PER_S;
    /* Last resort if something blocks where no deadline reaches (a hanging handshake is
     * bounded by CONNECT_TIMEOUT_S already): the default SIGALRM action ends the process. */
    alarm((unsigned)((g_run.hard_end - now_ns()) / NS_PER_S) + 30);
    if (cfg->pid)
        rep->srv_cpu0 = nbi_proc_cpu_s(cfg->pid);
    my_cpu0 = nbi_self_cpu_s();

    for (uint32_t t = 0; t < cfg->threads; t++) {
        rc = pthread_create(&ws[t].tid, NULL, worker_main_cb, &ws[t]);
        if (rc != 0) {
            fprintf(stderr, "%s: pthread_create: %s\n", prog, strerror(rc));
            g_stop = 1;
            for (uint32_t j = 0; j < t; j++)
                pthread_join(ws[j].tid, NULL);
            return -1;
        }
    }
    while (atomic_load(&g_run.done_workers) < cfg->threads) {
        struct timespec ts = {.tv_nsec = (long)SAMPLE_NS};
        if (cfg->pid && !rep->server_gone)
            sample_rss(cfg->pid, rep);
        nanosleep(&ts, NULL);
    }
    for (uint32_t t = 0; t < cfg->threads; t++)
        pthread_join(ws[t].tid, NULL);
    rep->t_end = now_ns();
    alarm(0);
    rep->wall_s = (double)(rep->t_end - g_run.t0) / 1e9;
    rep->client_cpu = (nbi_self_cpu_s() - my_cpu0) / rep->wall_s;
    if (cfg->pid && !rep->server_gone) {
        sample_rss(cfg->pid, rep);
        rep->hwm = nbi_proc_status_kb(cfg->pid, "VmHWM");
        rep->srv_cpu1 = nbi_proc_cpu_s(cfg->pid);
        /* VmHWM is updated lazily by the kernel and can lag a sampled VmRSS. */
        if (rep->hwm > rep->rss_peak)
            rep->rss_peak = rep->hwm;
    }
    return 0;
}

/* Merges the workers' counters and samples into rep and works out the rate. */
static int collect(const struct bench_cfg *cfg, const struct worker *ws, struct report *rep)
{
    uint64_t end;
    double span;

    for (uint32_t t = 0; t < cfg->threads; t++) {
        const struct worker *w = &ws[t];
        rep->warm_ok += w->warm_ok;
        rep->meas_ok += w->meas_ok;
        rep->meas_sent += w->meas_sent;
        rep->unsent += w->unsent;
        rep->reconnects += w->reconnects;
        rep->connect_fails += w->connect_fails;
        rep->interrupted |= w->interrupted;
        if (w->last_done > rep->last_done)
            rep->last_done = w->last_done;
        for (int k = 0; k < E_KINDS; k++) {
            rep->errs[k] += w->errs[k];
            rep->nerr += w->errs[k];
        }
        if (!rep->first_err && w->first_err[0])
            rep->first_err = w->first_err;
        if (merge_samples(&rep->lat, &w->lat) != 0 || merge_samples(&rep->lag, &w->lag) != 0) {
            fprintf(stderr, "%s: out of memory\n", prog);
            return -1;
        }
    }
    if (rep->lat.n)
        qsort(rep->lat.v, rep->lat.n, sizeof *rep->lat.v, cmp_u64);
    if (rep->lag.n)
        qsort(rep->lag.v, rep->lag.n, sizeof *rep->lag.v, cmp_u64);

    if (cfg->mode == MODE_RATE) {
        /* Over the measured timeline, stretched when the last answers came after its end:
         * a server that falls behind, or dies, shows a rate below the target. */
        end = rep->last_done > g_run.meas_end ? rep->last_done : g_run.meas_end;
        if (rep->interrupted && rep->t_end < end)
            end = rep->t_end;
    } else {
        /* Up to meas_end, or to the last answer when --max-requests or a signal stopped
         * the run before. */
        end = rep->last_done && rep->last_done < g_run.meas_end ? rep->last_done : g_run.meas_end;
    }
    span = end > g_run.meas_start ? (double)(end - g_run.meas_start) / 1e9 : 0;
    rep->rps = span > 0 ? (double)rep->meas_ok / span : 0;
    return 0;
}

static void print_plan(const struct bench_cfg *cfg, const struct nbi_machine *m,
                       const struct conn *c0, size_t raw_len)
{
    bool v6 = cfg->addr.ss_family == AF_INET6;

    printf("machine: %s; cpu: %s; cores: %ld online, %d usable\n", m->uname, m->cpu, m->cores,
           m->usable);
    printf("target: https://%s%s%s:%u%s, %s %s, certificate %s%s\n", v6 ? "[" : "", cfg->ip,
           v6 ? "]" : "", cfg->port, cfg->path, SSL_get_version(c0->ssl),
           SSL_get_cipher_name(c0->ssl), cfg->insecure ? "NOT verified" : "verified against ",
           cfg->insecure ? "" : cfg->cacert);
    printf("body: %s, %zu bytes as sent (compact; %zu in the file), %s\n", cfg->body_file,
           g_run.body_len, raw_len,
           g_run.uid_len && cfg->check_uid ? "unique request.uid per request, echo checked"
                                           : "request.uid not checked");
    if (cfg->mode == MODE_RATE)
        printf("mode: open loop at %.0f reviews/s for %.1f s (+%.1f s warmup), %u "
               "connections, %u thread%s; latency from the scheduled send time\n",
               cfg->rate, cfg->duration_s, cfg->warmup_s, cfg->connections, cfg->threads,
               cfg->threads > 1 ? "s" : "");
    else
        printf("mode: closed loop, as fast as possible, for %.1f s (+%.1f s warmup), %u "
               "connections, %u thread%s\n",
               cfg->duration_s, cfg->warmup_s, cfg->connections, cfg->threads,
               cfg->threads > 1 ? "s" : "");
}

static void print_human(const struct bench_cfg *cfg, const struct report *r)
{
    const struct samples *lat = &r->lat, *lag = &r->lag;

    if (r->interrupted)
        printf("interrupted: figures cover the part that ran\n");
    printf("requests: %" PRIu64 " measured, %" PRIu64 " ok; %" PRIu64 " warmup ok; %" PRIu64
           " errors",
           r->meas_sent, r->meas_ok, r->warm_ok, r->nerr);
    if (r->nerr) {
        const char *sep = " (";
        for (int k = 0; k < E_KINDS; k++) {
            if (r->errs[k]) {
                printf("%s%s %" PRIu64, sep, err_names[k], r->errs[k]);
                sep = ", ";
            }
        }
        printf(")");
    }
    printf("; %" PRIu64 " never sent; %" PRIu64 " reconnects, %" PRIu64 " failed connects\n",
           r->unsent, r->reconnects, r->connect_fails);
    if (r->first_err)
        printf("first error: %s\n", r->first_err);
    if (cfg->mode == MODE_RATE)
        printf("rate: %.1f reviews/s achieved (target %.0f)\n", r->rps, cfg->rate);
    else
        printf("rate: %.1f reviews/s\n", r->rps);
    printf("latency ms (%s, %zu samples): p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
           cfg->mode == MODE_RATE ? "from scheduled send" : "from send", lat->n, pct_ms(lat, 50),
           pct_ms(lat, 90), pct_ms(lat, 99), pct_ms(lat, 99.9), pct_ms(lat, 100));
    if (cfg->mode == MODE_RATE)
        printf("send lag ms (actual send - scheduled: client delay or all connections busy): "
               "p50 %.3f  p99 %.3f  max %.3f\n",
               pct_ms(lag, 50), pct_ms(lag, 99), pct_ms(lag, 100));
    if (cfg->pid && r->server_gone)
        printf("server: pid %ld EXITED during the run; RSS at start %.1f MiB, peak seen "
               "%.1f MiB\n",
               cfg->pid, r->rss_start / 1024.0, r->rss_peak / 1024.0);
    else if (cfg->pid)
        printf("server: pid %ld, RSS at start %.1f MiB, peak %.1f MiB (VmRSS every %llu ms, "
               "VmHWM %.1f MiB at the end); CPU %.2f cores\n",
               cfg->pid, r->rss_start / 1024.0, r->rss_peak / 1024.0,
               (unsigned long long)(SAMPLE_NS / NS_PER_MS), r->hwm / 1024.0,
               (r->srv_cpu1 - r->srv_cpu0) / r->wall_s);
    printf("client: CPU %.2f cores over %.1f s\n", r->client_cpu, r->wall_s);
}

/* One line of JSON; sizes in MiB (1048576 bytes), times in ms. */
static void print_json(const struct bench_cfg *cfg, const struct nbi_machine *m,
                       const struct report *r, const char *tls)
{
    const struct samples *lat = &r->lat;

    printf("{\"mode\":\"%s\",", cfg->mode == MODE_RATE ? "rate" : "max");
    if (cfg->mode == MODE_RATE)
        printf("\"target_rps\":%.0f,", cfg->rate);
    else
        printf("\"target_rps\":null,");
    printf("\"rps\":%.1f,\"requests\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"errors\":%" PRIu64
           ",\"unsent\":%" PRIu64 ",",
           r->rps, r->meas_sent, r->meas_ok, r->nerr, r->unsent);
    printf("\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,",
           pct_ms(lat, 50), pct_ms(lat, 90), pct_ms(lat, 99), pct_ms(lat, 99.9), pct_ms(lat, 100));
    if (cfg->pid && !r->server_gone)
        printf("\"peak_rss_mb\":%.2f,\"vmhwm_mb\":%.2f,\"server_cpu_cores\":%.2f,",
               r->rss_peak / 1024.0, r->hwm / 1024.0, (r->srv_cpu1 - r->srv_cpu0) / r->wall_s);
    else
        printf("\"peak_rss_mb\":null,\"vmhwm_mb\":null,\"server_cpu_cores\":null,");
    printf("\"client_cpu_cores\":%.2f,\"connections\":%u,\"threads\":%u,\"duration_s\":%.1f,"
           "\"warmup_s\":%.1f,\"body_bytes\":%zu,\"tls\":",
           r->client_cpu, cfg->connections, cfg->threads, cfg->duration_s, cfg->warmup_s,
           g_run.body_len);
    json_str(stdout, tls);
    printf(",\"machine\":");
    json_str(stdout, m->uname);
    printf(",\"cpu\":");
    json_str(stdout, m->cpu);
    printf(",\"cores\":%ld}\n", m->cores);
}

int main(int argc, char **argv)
{
    struct bench_cfg cfg = {
        .host = "127.0.0.1",
        .path = "/inject",
        .body_file = NUTSHELL_BENCH_REVIEW,
        .check_uid = true,
        .duration_s = 10,
        .threads = 1,
        .max_requests = DEFAULT_MAX_REQUESTS,
        .timeout_ms = DEFAULT_TIMEOUT_MS,
    };
    struct report rep = {.rss_start = -1, .rss_peak = -1, .hwm = -1};
    struct sigaction sa = {.sa_handler = on_signal_cb};
    struct nbi_machine m;
    struct worker *ws = NULL;
    struct conn *cs = NULL;
    char err[512], tls[32];
    size_t raw_len = 0;
    int exit_code = 1, rc;

    rc = parse_args(argc, argv, &cfg, &exit_code);
    if (rc == -1)
        return exit_code;
    if (rc != 0)
        return 2;
    g_run.cfg = &cfg;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    nbi_machine_read(&m);

    if (build_request(&cfg, &raw_len, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        goto out;
    }
    g_run.ctx = make_ctx(&cfg, err, sizeof err);
    if (!g_run.ctx) {
        fprintf(stderr, "%s: %s\n", prog, err);
        goto out;
    }
    if (cfg.pid) {
        rep.rss_start = rep.rss_peak = nbi_proc_status_kb(cfg.pid, "VmRSS");
        if (rep.rss_start < 0) {
            fprintf(stderr, "%s: --pid %ld: no VmRSS in /proc/%ld/status (no such process?)\n",
                    prog, cfg.pid, cfg.pid);
            goto out;
        }
    }
    if (setup(&cfg, &ws, &cs) != 0)
        goto out;
    snprintf(tls, sizeof tls, "%s", SSL_get_version(cs[0].ssl));
    print_plan(&cfg, &m, &cs[0], raw_len);
    if (run(&cfg, ws, &rep) != 0 || collect(&cfg, ws, &rep) != 0)
        goto out;
    print_human(&cfg, &rep);
    print_json(&cfg, &m, &rep, tls);
    exit_code =
        (rep.nerr || rep.unsent || rep.meas_ok == 0 || rep.server_gone || rep.interrupted) ? 1 : 0;
out:
    teardown(&cfg, ws, cs);
    free(rep.lat.v);
    free(rep.lag.v);
    free(g_run.req);
    SSL_CTX_free(g_run.ctx);
    return exit_code;
}

/* route_server.c - see route_server.h.
 *
 * Threads: libmicrohttpd's polling thread runs the access handler; our "tick" thread
 * builds tables and resumes held connections. `mu` guards the table and the list of
 * held requests. A connection is suspended inside the handler with `mu` held and only
 * resumed by the tick thread after taking it off the list under `mu`, so it is never
 * resumed before it is suspended, nor twice. MHD_resume_connection is called without
 * `mu`: libmicrohttpd takes its own locks there.
 */
#include "route_server.h"

#include "log.h"
#include "metrics.h"
#include "strconv.h"

#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_DEFAULT_S 30
#define WAIT_MAX_S     300
/* Informer events come in bursts (a rollout step touches a Canary, three Services and
 * their slices): wait this long after the first before building. */
#define COALESCE_MS 50

typedef struct held {
    struct MHD_Connection *conn;
    int fd;              /* its socket, to notice a client that went away */
    uint64_t since;      /* the version the client has */
    int64_t deadline_ms; /* monotonic */
    bool listed;         /* on the held list (suspended) */
    struct held *prev, *next;
} held;

struct route_server {
    struct MHD_Daemon *daemon;
    pthread_t tick;
    bool tick_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool dirty, stopping;
    bool have; /* a table was built */
    /* The table as one response, queued to every client: libmicrohttpd counts its
     * references, so a fan-out to thousands of held requests shares one copy (a copy
     * per answer cost 5,000 x the table, in time and memory: BENCHMARKS.md). Replaced
     * with each version; connections still sending the old one keep it alive. */
    struct MHD_Response *resp;
    uint64_t version;
    held list; /* sentinel of a circular list */
    size_t nheld;
    route_build_fn build;
    void *ud;
    uint16_t port;
};

static ns_metric m_version = {.name = "nutshell_operator_route_table_version",
                              .help = "Version of the route table served on the discovery "
                                      "port (a hash of its content).",
                              .type = NS_METRIC_GAUGE};
static ns_metric m_bytes = {.name = "nutshell_operator_route_table_bytes",
                            .help = "Size of the route table served.",
                            .type = NS_METRIC_GAUGE};
static ns_metric m_held = {.name = "nutshell_operator_route_requests_held",
                           .help = "Proxies waiting for a new route table (long-poll).",
                           .type = NS_METRIC_GAUGE};
static ns_metric m_changes = {.name = "nutshell_operator_route_table_changes_total",
                              .help = "Times the route table changed.",
                              .type = NS_METRIC_COUNTER};
#define ANSWER(code)                                                                               \
    {                                                                                              \
        .name = "nutshell_operator_route_responses_total",                                         \
        .help = "Answers of the discovery server by status code.", .labels = "code=\"" #code "\"", \
        .type = NS_METRIC_COUNTER                                                                  \
    }
static ns_metric m_200 = ANSWER(200), m_304 = ANSWER(304), m_503 = ANSWER(503), m_4xx = ANSWER(4xx);

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                             const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    if (ctype)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    ns_counter_add(status == 200   ? &m_200
                   : status == 304 ? &m_304
                   : status == 503 ? &m_503
                                   : &m_4xx,
                   1);
    return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *msg)
{
    return reply(c, status, "text/plain; charset=utf-8", msg, strlen(msg));
}

/* Answers with the table, or 304 if the client already has it. Takes `mu`. */
static enum MHD_Result reply_table(route_server *rs, struct MHD_Connection *c, bool has_since,
                                   uint64_t since)
{
    pthread_mutex_lock(&rs->mu);
    enum MHD_Result ret;
    if (!rs->have) {
        ret = reply_text(c, 503, "route table not built yet: the operator's caches are filling\n");
    } else if (has_since && since == rs->version) {
        ret = reply(c, 304, NULL, "", 0);
    } else {
        ret = MHD_queue_response(c, 200, rs->resp);
        ns_counter_add(&m_200, 1);
    }
    pthread_mutex_unlock(&rs->mu);
    return ret;
}

static void unlist(route_server *rs, held *h)
{
    h->prev->next = h->next;
    h->next->prev = h->prev;
    h->listed = false;
    rs->nheld--;
    ns_gauge_set(&m_held, (int64_t)rs->nheld);
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    route_server *rs = cls;
    held *h = *con_cls;
    if (h) /* resumed: the table changed, the wait ended, or we are stopping */
        return reply_table(rs, conn, true, h->since);
    if (*upload_data_size) { /* a body nobody asked for: read and ignore it */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/v1/routes") != 0)
        return reply_text(conn, 404, "not found: the route table is at /v1/routes\n");
    if (strcmp(method, "GET") != 0)
        return reply_text(conn, 405, "method not allowed: GET /v1/routes\n");

    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "version");
    const char *w = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "wait");
    int64_t since = 0, wait_s = WAIT_DEFAULT_S;
    if (v && ns_parse_i64(v, 0, INT64_MAX, &since) != 0)
        return reply_text(conn, 400, "bad request: version must be a non-negative integer\n");
    if (w && ns_parse_i64(w, 0, WAIT_MAX_S, &wait_s) != 0)
        return reply_text(conn, 400, "bad request: wait must be seconds from 0 to 300\n");
    if (!v || wait_s == 0)
        return reply_table(rs, conn, v != NULL, (uint64_t)since);

    pthread_mutex_lock(&rs->mu);
    if (!rs->have || rs->stopping || rs->version != (uint64_t)since) {
        pthread_mutex_unlock(&rs->mu);
        return reply_table(rs, conn, true, (uint64_t)since);
    }
    h = calloc(1, sizeof(*h));
    if (!h) {
        pthread_mutex_unlock(&rs->mu);
        return MHD_NO;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    h->conn = conn;
    h->fd = ci ? ci->connect_fd : -1;
    h->since = (uint64_t)since;
    h->deadline_ms = mono_ms() + wait_s * 1000;
    h->listed = true;
    h->next = &rs->list;
    h->prev = rs->list.prev;
    rs->list.prev->next = h;
    rs->list.prev = h;
    rs->nheld++;
    ns_gauge_set(&m_held, (int64_t)rs->nheld);
    *con_cls = h;
    MHD_suspend_connection(conn);
    pthread_mutex_unlock(&rs->mu);
    return MHD_YES;
}

static void completed_cb(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)c;
    (void)toe;
    route_server *rs = cls;
    held *h = *con_cls;
    if (!h)
        return;
    pthread_mutex_lock(&rs->mu);
    if (h->listed) /* only when the daemon closes a suspended connection */
        unlist(rs, h);
    pthread_mutex_unlock(&rs->mu);
    free(h);
    *con_cls = NULL;
}

static void rebuild(route_server *rs)
{
    char *table = NULL;
    uint64_t version = 0;
    int rc = rs->build(rs->ud, &table, &version);
    if (rc) {
        if (rc != -EAGAIN)
            ns_log(NS_LOG_ERROR, "cannot build the route table; serving the previous one", "error",
                   strerror(-rc), NULL);
        return;
    }
    pthread_mutex_lock(&rs->mu);
    bool changed = !rs->have || rs->version != version;
    struct MHD_Response *old = NULL;
    if (changed) {
        size_t len = strlen(table);
        struct MHD_Response *r = MHD_create_response_from_buffer(len, table, MHD_RESPMEM_MUST_FREE);
        if (!r) {
            pthread_mutex_unlock(&rs->mu);
            free(table);
            ns_log(NS_LOG_ERROR, "cannot make the route table response; serving the previous one",
                   NULL);
            return;
        }
        table = NULL; /* the response owns it */
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        old = rs->resp;
        rs->resp = r;
        rs->version = version;
        rs->have = true;
        ns_gauge_set(&m_version, (int64_t)version);
        ns_gauge_set(&m_bytes, (int64_t)len);
        ns_counter_add(&m_changes, 1);
    }
    size_t waiting = rs->nheld;
    pthread_mutex_unlock(&rs->mu);
    free(table);
    if (old)
        MHD_destroy_response(old); /* freed when the last connection sending it is done */
    if (changed) {
        char v[24], n[24];
        snprintf(v, sizeof(v), "%llu", (unsigned long long)version);
        snprintf(n, sizeof(n), "%zu", waiting);
        ns_log(NS_LOG_INFO, "route table changed", "version", v, "waiting_proxies", n, NULL);
    }
}

/* Resumes the held requests that have an answer now: a new version, the end of their
 * wait, the server stopping, or a client that went away (libmicrohttpd does not watch a
 * suspended socket: without this check a sidecar that restarted would keep a descriptor
 * and a connection slot here until the next change). */
static void resume_due(route_server *rs)
{
    int64_t now = mono_ms();
    pthread_mutex_lock(&rs->mu);
    size_t n = rs->nheld;
    struct MHD_Connection **due = n ? malloc(n * sizeof(*due)) : NULL;
    struct pollfd *pfd = n ? calloc(n, sizeof(*pfd)) : NULL;
    size_t ndue = 0, i = 0;
    if (n && (!due || !pfd)) { /* out of memory: try again at the next tick */
        pthread_mutex_unlock(&rs->mu);
        free(due);
        free(pfd);
        return;
    }
    for (held *h = rs->list.next; h != &rs->list; h = h->next, i++)
        pfd[i] = (struct pollfd){.fd = h->fd, .events = POLLRDHUP};
    if (n && poll(pfd, n, 0) < 0)
        memset(pfd, 0, n * sizeof(*pfd)); /* no news of hang-ups this time */
    i = 0;
    for (held *h = rs->list.next, *next; h != &rs->list; h = next, i++) {
        next = h->next;
        bool gone = pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR);
        if (rs->stopping || h->since != rs->version || now >= h->deadline_ms || gone) {
            due[ndue++] = h->conn;
            unlist(rs, h);
        }
    }
    pthread_mutex_unlock(&rs->mu);
    for (i = 0; i < ndue; i++)
        MHD_resume_connection(due[i]);
    free(due);
    free(pfd);
}

static void *tick_main(void *arg)
{
    route_server *rs = arg;
    pthread_mutex_lock(&rs->mu);
    for (;;) {
        if (!rs->dirty && !rs->stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1; /* the granularity of waits' deadlines */
            pthread_cond_timedwait(&rs->cv, &rs->mu, &ts);
        }
        bool stop = rs->stopping;
        bool build = rs->dirty || !rs->have;
        pthread_mutex_unlock(&rs->mu);
        if (build && !stop) {
            struct timespec pause = {.tv_nsec = COALESCE_MS * 1000000L};
            nanosleep(&pause, NULL);
            pthread_mutex_lock(&rs->mu);
            rs->dirty = false;
            pthread_mutex_unlock(&rs->mu);
            rebuild(rs);
        }
        resume_due(rs);
        if (stop)
            return NULL;
        pthread_mutex_lock(&rs->mu);
    }
}

static void mhd_log_cb(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void mhd_log_cb(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    ns_log(NS_LOG_DEBUG, "discovery server", "detail", msg, NULL);
}

int route_server_start(const route_server_opts *o, route_server **out, ns_err *err)
{
    *out = NULL;
    struct sockaddr_storage ss;
    bool v6;
    if (!o->build || !o->host || ns_parse_sockaddr(o->host, o->port, &ss, &v6) != 0)
        return ns_errorf(err, -EINVAL,
                         "the discovery server needs an IP address to listen on, "
                         "got \"%s\"",
                         o->host ? o->host : "");
    route_server *rs = calloc(1, sizeof(*rs));
    if (!rs)
        return ns_errorf(err, -ENOMEM, "out of memory");
    pthread_mutex_init(&rs->mu, NULL);
    pthread_cond_init(&rs->cv, NULL);
    rs->list.next = rs->list.prev = &rs->list;
    rs->dirty = true; /* the first build at once: its -EAGAIN is retried every second */
    rs->build = o->build;
    rs->ud = o->ud;

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG |
                     MHD_ALLOW_SUSPEND_RESUME;
    if (v6)
        flags |= MHD_USE_IPv6;
    unsigned maxc = o->max_connections ? o->max_connections : 10000;
    rs->daemon =
        MHD_start_daemon(flags, o->port, NULL, NULL, access_cb, rs, MHD_OPTION_SOCK_ADDR, &ss,
                         MHD_OPTION_NOTIFY_COMPLETED, completed_cb, rs, MHD_OPTION_EXTERNAL_LOGGER,
                         mhd_log_cb, NULL, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                         /* A proxy's request is a few hundred bytes and the table is shared, not
                          * copied into the connection: 8 KiB per connection instead of 32 (5,000
                          * held requests: about 50 MiB less). */
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)8192,
                         MHD_OPTION_CONNECTION_LIMIT, maxc, MHD_OPTION_END);
    if (!rs->daemon) {
        int e = errno ? errno : EADDRINUSE;
        route_server_stop(rs);
        return ns_errorf(err, -e, "cannot listen on %s:%u: %s", o->host, o->port, strerror(e));
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(rs->daemon, MHD_DAEMON_INFO_BIND_PORT);
    rs->port = di ? di->port : o->port;
    if (o->metrics) {
        ns_metric *all[] = {&m_version, &m_bytes, &m_held, &m_changes,
                            &m_200,     &m_304,   &m_503,  &m_4xx};
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
            ns_metrics_register(o->metrics, all[i]);
    }
    int rc = pthread_create(&rs->tick, NULL, tick_main, rs);
    if (rc) {
        route_server_stop(rs);
        return ns_errorf(err, -rc, "cannot start the discovery thread: %s", strerror(rc));
    }
    rs->tick_started = true;
    *out = rs;
    return 0;
}

uint16_t route_server_port(const route_server *rs)
{
    return rs->port;
}

size_t route_server_held(route_server *rs)
{
    pthread_mutex_lock(&rs->mu);
    size_t n = rs->nheld;
    pthread_mutex_unlock(&rs->mu);
    return n;
}

void route_server_invalidate(route_server *rs)
{
    if (!rs)
        return;
    pthread_mutex_lock(&rs->mu);
    rs->dirty = true;
    pthread_cond_signal(&rs->cv);
    pthread_mutex_unlock(&rs->mu);
}

void route_server_stop(route_server *rs)
{
    if (!rs)
        return;
    pthread_mutex_lock(&rs->mu);
    rs->stopping = true; /* from now on nothing is held */
    pthread_cond_signal(&rs->cv);
    pthread_mutex_unlock(&rs->mu);
    if (rs->tick_started)
        pthread_join(rs->tick, NULL); /* its last pass resumes every held request */
    if (rs->daemon)
        MHD_stop_daemon(rs->daemon);
    pthread_cond_destroy(&rs->cv);
    pthread_mutex_destroy(&rs->mu);
    if (rs->resp)
        MHD_destroy_response(rs->resp);
    free(rs);
}

/* discovery_bench.c - nutshell-bench-discovery: the route discovery server
 * (operator/route_server.h, port 15010) under the sidecars' long-poll load, on loopback.
 *
 * A child process runs route_server_start on 127.0.0.1 with a table source of its own:
 * R synthetic Canaries in phase Progressing, made into proxy/routes.h's table by the
 * operator's own canary_route_append and canary_routes_render (what
 * canary_controller_routes does over its informer cache). The parent drives it over two
 * pipes: 'c' moves one Canary's desiredWeight a step and calls route_server_invalidate
 * (new content, so a new version); 's' answers with the server's own metrics (requests
 * held, answers by code) and when its last table build ran.
 *
 * The parent measures, all on loopback, every loop bounded in count and time:
 *   fan-out     for each C: C concurrent `GET /v1/routes?version=V&wait=W` (non-blocking
 *               sockets, epoll, HTTP/1.1, Connection: close); once the server says it
 *               holds all C and none was answered, one table change; for each client the
 *               time from the change to its complete 200. The server's VmRSS, file
 *               descriptors and threads idle and with C held.
 *   abandoned   held requests whose clients go away (a restarted proxy): what the
 *               server keeps until the table changes.
 *   wait end    a few requests held past libmicrohttpd's 30 s connection timeout, to
 *               check they get their 304 when their wait ends, not a dropped connection.
 *   throughput  plain `GET /v1/routes`, a new connection each, from a few threads.
 * No peer: nothing else speaks this protocol.
 */
#include "bench_util.h"
#include "sysinfo.h"
#include "canary_routes.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "route_server.h"
#include "strconv.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS   8
#define MAX_THREADS  32
#define HEAD_MAX     512    /* response bytes kept per connection: headers, the version */
#define OPEN_BATCH   256    /* connections connecting at once (the listen backlog is finite) */
#define TP_MAX_REQS  200000 /* per thread: bounds the throughput loop and its memory */
#define CALL_TIMEOUT 5000   /* ms for the child to answer a command */

/* ---- options ---- */

typedef struct opts {
    long routes;
    long clients[MAX_ROUNDS];
    int nrounds;
    long wait_s;
    long setup_timeout_s;
    long fanout_timeout_s;
    long abandon;
    long check_conns;
    long check_wait_s;
    long threads;
    long duration_s;
} opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nutshell-bench-discovery [options]\n"
            "  --routes R              Canaries in the table (default 100)\n"
            "  --clients C1,C2,...     held long-polls per fan-out round (default 100,1000,5000)\n"
            "  --wait S                their wait= (default 60)\n"
            "  --setup-timeout S       to open the C requests and see them held (default 60)\n"
            "  --fanout-timeout S      for all C answers after the change (default 30)\n"
            "  --abandon N             held requests whose clients close (default 1000; 0 skips)\n"
            "  --check-conns N         requests held to the end of their wait (default 10; 0 "
            "skips)\n"
            "  --check-wait S          their wait=, past the 30 s connection timeout (default "
            "35)\n"
            "  --threads T             throughput client threads (default 4)\n"
            "  --duration S            throughput run length (default 5)\n");
}

static int parse_long(const char *name, const char *s, long min, long max, long *out)
{
    int64_t v;
    if (ns_parse_i64(s, min, max, &v) != 0) {
        fprintf(stderr, "nutshell-bench-discovery: %s must be an integer from %ld to %ld, not %s\n",
                name, min, max, s);
        return -EINVAL;
    }
    *out = (long)v;
    return 0;
}

static int parse_opts(int argc, char **argv, opts *o)
{
    *o = (opts){.routes = 100,
                .clients = {100, 1000, 5000},
                .nrounds = 3,
                .wait_s = 60,
                .setup_timeout_s = 60,
                .fanout_timeout_s = 30,
                .abandon = 1000,
                .check_conns = 10,
                .check_wait_s = 35,
                .threads = 4,
                .duration_s = 5};
    static const struct option longs[] = {{"routes", required_argument, NULL, 'r'},
                                          {"clients", required_argument, NULL, 'c'},
                                          {"wait", required_argument, NULL, 'w'},
                                          {"setup-timeout", required_argument, NULL, 's'},
                                          {"fanout-timeout", required_argument, NULL, 'f'},
                                          {"abandon", required_argument, NULL, 'a'},
                                          {"check-conns", required_argument, NULL, 'k'},
                                          {"check-wait", required_argument, NULL, 'K'},
                                          {"threads", required_argument, NULL, 't'},
                                          {"duration", required_argument, NULL, 'd'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int ch, rc = 0;
    while (rc == 0 && (ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (ch) {
        case 'r':
            rc = parse_long("--routes", optarg, 1, 10000, &o->routes);
            break;
        case 'c': {
            const char *p = optarg;
            char item[32];
            int n;
            o->nrounds = 0;
            while (rc == 0 && (n = ns_list_next(&p, item, sizeof item)) != 0) {
                if (n < 0 || o->nrounds == MAX_ROUNDS) {
                    fprintf(stderr, "nutshell-bench-discovery: --clients takes 1 to %d numbers\n",
                            MAX_ROUNDS);
                    rc = -EINVAL;
                    break;
                }
                rc = parse_long("--clients", item, 1, 100000, &o->clients[o->nrounds++]);
            }
            if (rc == 0 && o->nrounds == 0)
                rc = parse_long("--clients", "", 1, 100000, &o->clients[0]);
            break;
        }
        case 'w':
            rc = parse_long("--wait", optarg, 1, 300, &o->wait_s);
            break;
        case 's':
            rc = parse_long("--setup-timeout", optarg, 1, 600, &o->setup_timeout_s);
            break;
        case 'f':
            rc = parse_long("--fanout-timeout", optarg, 1, 600, &o->fanout_timeout_s);
            break;
        case 'a':
            rc = parse_long("--abandon", optarg, 0, 100000, &o->abandon);
            break;
        case 'k':
            rc = parse_long("--check-conns", optarg, 0, 1000, &o->check_conns);
            break;
        case 'K':
            rc = parse_long("--check-wait", optarg, 1, 300, &o->check_wait_s);
            break;
        case 't':
            rc = parse_long("--threads", optarg, 0, MAX_THREADS, &o->threads);
            break;
        case 'd':
            rc = parse_long("--duration", optarg, 1, 600, &o->duration_s);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    if (rc == 0 && optind < argc) {
        usage(stderr);
        rc = -EINVAL;
    }
    return rc;
}

/* ---- the table source (child) ---- */

static const char *const apps[] = {
    "reviews",  "ratings",   "details", "productpage", "cart",     "checkout",     "payment",
    "shipping", "catalog",   "search",  "recommender", "currency", "email",        "ads",
    "frontend", "inventory", "orders",  "users",       "auth",     "notifications"};
static const char *const namespaces[] = {"shop", "bookinfo", "payments", "media", "platform"};
static const int ports[] = {9080, 8080, 3000, 50051};
#define NAPPS (sizeof(apps) / sizeof(apps[0]))
#define NNS   (sizeof(namespaces) / sizeof(namespaces[0]))

typedef struct source {
    pthread_mutex_t mu; /* the Canaries' status (changed by the main thread) and the figures */
    cJSON **canaries;   /* R */
    cJSON **services;   /* 3 per Canary: apex, primary, canary */
    size_t n;
    long changes;
    long builds;
    double build_start_ms, build_end_ms; /* of the last build */
    size_t table_bytes;
} source;

/* One Canary's Service lookups while its route is made, as a cache lookup would answer. */
typedef struct walk {
    source *s;
    size_t i;
} walk;

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static const cJSON *service_cb(void *ud, const char *ns, const char *name)
{
    (void)ns;
    walk *w = ud;
    size_t k = ends_with(name, "-primary") ? 1 : ends_with(name, "-canary") ? 2 : 0;
    return w->s->services[3 * w->i + k];
}

/* A ClusterIP from 10.96.0.0/16, unique per Service. */
static void cluster_ip(char *buf, size_t len, size_t j)
{
    j += 2; /* not .0 or .1 */
    snprintf(buf, len, "10.96.%zu.%zu", (j >> 8) & 255, j & 255);
}

static int source_init(source *s, size_t n)
{
    *s = (source){.n = n};
    pthread_mutex_init(&s->mu, NULL);
    s->canaries = calloc(n, sizeof(*s->canaries));
    s->services = calloc(3 * n, sizeof(*s->services));
    if (!s->canaries || !s->services)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char name[64], text[2048];
        const char *ns = namespaces[(i / NAPPS) % NNS];
        if (i < NAPPS * NNS)
            snprintf(name, sizeof name, "%s", apps[i % NAPPS]);
        else
            snprintf(name, sizeof name, "%s-%zu", apps[i % NAPPS], i / (NAPPS * NNS));
        snprintf(text, sizeof text,
                 "{\"apiVersion\":\"nutshell.io/v1alpha1\",\"kind\":\"Canary\","
                 "\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\","
                 "\"uid\":\"0c7e1f52-93a4-4b6e-8d21-%012zu\",\"generation\":2},"
                 "\"spec\":{\"targetRef\":{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\","
                 "\"name\":\"%s\"},\"service\":{\"port\":%d},"
                 "\"strategy\":{\"canary\":{\"stepWeight\":10,\"maxWeight\":50,"
                 "\"interval\":\"1m\"}},"
                 "\"analysis\":{\"threshold\":5,\"metrics\":[{\"name\":\"error-rate\","
                 "\"address\":\"http://prometheus.monitoring:9090\",\"query\":\"100 * "
                 "sum(rate(http_requests_total{app=\\\"%s\\\",code=~\\\"5..\\\"}[{{interval}}]))"
                 " / sum(rate(http_requests_total{app=\\\"%s\\\"}[{{interval}}]))\","
                 "\"thresholdRange\":{\"max\":1}}]}},"
                 "\"status\":{\"phase\":\"Progressing\",\"desiredWeight\":10}}",
                 name, ns, i, name, ports[i % 4], name, name);
        s->canaries[i] = cJSON_Parse(text);
        for (size_t k = 0; k < 3; k++) {
            char ip[32], ip6[64] = "";
            cluster_ip(ip, sizeof ip, 3 * i + k);
            if (k == 0 && i % 10 == 0) /* some apex Services are dual-stack */
                snprintf(ip6, sizeof ip6, ",\"fd00:10:96::%zx\"", 3 * i + 2);
            snprintf(text, sizeof text,
                     "{\"spec\":{\"clusterIP\":\"%s\",\"clusterIPs\":[\"%s\"%s]}}", ip, ip, ip6);
            s->services[3 * i + k] = cJSON_Parse(text);
            if (!s->services[3 * i + k])
                return -ENOMEM;
        }
        if (!s->canaries[i])
            return -ENOMEM;
    }
    return 0;
}

static void source_free(source *s)
{
    for (size_t i = 0; s->canaries && i < s->n; i++)
        cJSON_Delete(s->canaries[i]);
    for (size_t i = 0; s->services && i < 3 * s->n; i++)
        cJSON_Delete(s->services[i]);
    free(s->canaries);
    free(s->services);
    pthread_mutex_destroy(&s->mu);
}

/* route_build_fn: on the server's thread. -EINVAL when a Canary gives no route, which
 * would be a mistake in the fixtures above, so the benchmark would not measure R routes. */
static int build_cb(void *ud, char **table, uint64_t *version)
{
    source *s = ud;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    double t0 = bench_now_ms();
    cJSON *routes = cJSON_CreateArray();
    if (!routes)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < s->n; i++) {
        walk w = {.s = s, .i = i};
        int r = canary_route_append(routes, s->canaries[i], "cluster.local", service_cb, &w);
        rc = r < 0 ? r : r == 0 ? -EINVAL : 0;
    }
    if (rc == 0) {
        *table = canary_routes_render(routes, version);
        rc = *table ? 0 : -ENOMEM;
    }
    cJSON_Delete(routes);
    if (rc == 0) {
        s->builds++;
        s->build_start_ms = t0;
        s->build_end_ms = bench_now_ms();
        s->table_bytes = strlen(*table);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* One rollout step of one Canary: a new table. */
static void source_change(source *s)
{
    pthread_mutex_lock(&s->mu);
    size_t i = (size_t)s->changes % s->n;
    cJSON *st = cJSON_GetObjectItem(s->canaries[i], "status");
    cJSON *w = cJSON_GetObjectItem(st, "desiredWeight");
    int next = (int)cJSON_GetNumberValue(w) % 50 + 10; /* 10, 20, ... 50, 10 */
    cJSON_SetNumberValue(w, next);
    s->changes++;
    pthread_mutex_unlock(&s->mu);
}

/* The value of the series `key` ("name" or "name{labels}") in exposition text, or -1. */
static long long metric_value(const char *text, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, kl) != 0 || p[kl] != ' ')
            continue;
        char num[24];
        size_t n = strcspn(p + kl + 1, "\n");
        int64_t v;
        if (n == 0 || n >= sizeof num)
            return -1;
        memcpy(num, p + kl + 1, n);
        num[n] = '\0';
        return ns_parse_i64(num, INT64_MIN, INT64_MAX, &v) == 0 ? (long long)v : -1;
    }
    return -1;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int reply_line(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int reply_line(int fd, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line)
        return -EINVAL;
    return write_all(fd, line, (size_t)n);
}

/* The server process: serves until 'q' or the end of the command pipe. */
static int child_main(int cmd_fd, int rep_fd, long routes)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the benchmark */
    if (getppid() == 1)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    ns_log_setup(NS_LOG_WARN, NS_LOG_TEXT, "bench-discovery");
    source src;
    ns_metrics reg = NS_METRICS_INIT;
    route_server *rs = NULL;
    ns_err err = {0};
    int rc = source_init(&src, (size_t)routes);
    if (rc == 0) {
        route_server_opts ro = {
            .host = "127.0.0.1", .port = 0, .build = build_cb, .ud = &src, .metrics = &reg};
        rc = route_server_start(&ro, &rs, &err);
    }
    if (rc != 0) {
        reply_line(rep_fd, "error %s\n", err.msg[0] ? err.msg : strerror(-rc));
        source_free(&src);
        return 1;
    }
    reply_line(rep_fd, "port %u\n", route_server_port(rs));
    for (;;) {
        char cmd;
        ssize_t r = read(cmd_fd, &cmd, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || cmd == 'q')
            break;
        if (cmd == 'c') {
            source_change(&src);
            double t = bench_now_ms();
            route_server_invalidate(rs);
            reply_line(rep_fd, "ok %.3f\n", t);
        } else if (cmd == 's') {
            ns_buf b;
            ns_buf_init(&b);
            ns_metrics_render(&reg, &b);
            const char *t = ns_buf_cstr(&b);
            pthread_mutex_lock(&src.mu);
            reply_line(rep_fd,
                       "held %lld r200 %lld r304 %lld builds %ld start %.3f end %.3f bytes %zu\n",
                       metric_value(t, "nutshell_operator_route_requests_held"),
                       metric_value(t, "nutshell_operator_route_responses_total{code=\"200\"}"),
                       metric_value(t, "nutshell_operator_route_responses_total{code=\"304\"}"),
                       src.builds, src.build_start_ms, src.build_end_ms, src.table_bytes);
            pthread_mutex_unlock(&src.mu);
            ns_buf_free(&b);
        }
    }
    route_server_stop(rs);
    source_free(&src);
    return 0;
}

/* ---- the server as the parent sees it ---- */

typedef struct server {
    pid_t pid;
    int cmd, rep;
    uint16_t port;
} server;

typedef struct server_stats {
    long long held, r200, r304;
    long builds;
    double build_start_ms, build_end_ms;
    size_t table_bytes;
} server_stats;

/* Sends `cmd` and reads the one-line answer into `line` (bounded by CALL_TIMEOUT). */
static int server_call(server *s, char cmd, char *line, size_t len)
{
    if (cmd && write_all(s->cmd, &cmd, 1) != 0)
        return -EIO;
    size_t n = 0;
    double deadline = bench_now_ms() + CALL_TIMEOUT;
    while (n + 1 < len) {
        struct pollfd p = {.fd = s->rep, .events = POLLIN};
        int left = (int)(deadline - bench_now_ms());
        if (left <= 0 || poll(&p, 1, left) <= 0)
            return -ETIMEDOUT;
        ssize_t r = read(s->rep, line + n, 1);
        if (r <= 0)
            return -EIO;
        if (line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    return 0;
}

static int server_stats_get(server *s, server_stats *st)
{
    char line[512];
    int rc = server_call(s, 's', line, sizeof line);
    if (rc)
        return rc;
    if (sscanf(line, "held %lld r200 %lld r304 %lld builds %ld start %lf end %lf bytes %zu",
               &st->held, &st->r200, &st->r304, &st->builds, &st->build_start_ms, &st->build_end_ms,
               &st->table_bytes) != 7)
        return -EPROTO;
    return 0;
}

static int server_start(server *s, long routes)
{
    int cmd[2], rep[2];
    if (pipe2(cmd, O_CLOEXEC) != 0)
        return -errno;
    if (pipe2(rep, O_CLOEXEC) != 0) {
        close(cmd[0]);
        close(cmd[1]);
        return -errno;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        close(cmd[1]);
        close(rep[0]);
        _exit(child_main(cmd[0], rep[1], routes));
    }
    close(cmd[0]);
    close(rep[1]);
    *s = (server){.pid = pid, .cmd = cmd[1], .rep = rep[0]};
    char line[512];
    int rc = server_call(s, 0, line, sizeof line);
    unsigned port;
    if (rc == 0 && sscanf(line, "port %u", &port) == 1 && port > 0 && port < 65536) {
        s->port = (uint16_t)port;
        return 0;
    }
    fprintf(stderr, "nutshell-bench-discovery: the server did not start: %s\n",
            rc ? strerror(-rc) : line);
    return rc ? rc : -EIO;
}

/* Stops the child: 'q' (it answers what is held and exits), then SIGKILL after 10 s. */
static void server_stop(server *s)
{
    if (s->pid <= 0)
        return;
    char q = 'q';
    (void)write_all(s->cmd, &q, 1);
    close(s->cmd);
    close(s->rep);
    int st;
    for (int i = 0; i < 1000; i++) {
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return;
        }
        usleep(10000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
    s->pid = 0;
}

/* ---- /proc ---- */

static long proc_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/fd", (long)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* utime + stime of `pid` in ms, or -1. */
static double proc_cpu_ms(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long ut, stime;
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stime) != 2)
        return -1;
    return (double)(ut + stime) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

typedef struct mem_point {
    long rss_kb, hwm_kb, fds, threads;
} mem_point;

static mem_point mem_read(pid_t pid)
{
    return (mem_point){.rss_kb = nbi_proc_status_kb(pid, "VmRSS"),
                       .hwm_kb = nbi_proc_status_kb(pid, "VmHWM"),
                       .fds = proc_fds(pid),
                       .threads = nbi_proc_status_kb(pid, "Threads")};
}

/* Resets VmHWM to the current RSS (so that a phase's peak is its own). Returns 0 or -errno. */
static int hwm_reset(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/clear_refs", (long)pid);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = write(fd, "5", 1) == 1 ? 0 : -errno;
    close(fd);
    return rc;
}

/* ---- HTTP/1.1 responses (pure) ---- */

typedef struct http_head {
    int status;
    long long content_length; /* -1: absent */
    size_t head_len;          /* status line and headers with the blank line */
} http_head;

/* Parses the status line and headers at the start of buf[0..len). Returns 1 when they
 * are complete (*h filled), 0 when more bytes are needed, -EINVAL for a malformed head. */
static int http_head_parse(const char *buf, size_t len, http_head *h)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return len >= HEAD_MAX ? -EINVAL : 0;
    if (end - buf < 12 || (memcmp(buf, "HTTP/1.1 ", 9) != 0 && memcmp(buf, "HTTP/1.0 ", 9) != 0))
        return -EINVAL;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return -EINVAL;
        status = status * 10 + (buf[i] - '0');
    }
    long long cl = -1;
    static const char key[] = "\r\ncontent-length:";
    for (const char *p = buf; p < end; p++) {
        if (strncasecmp(p, key, sizeof key - 1) != 0)
            continue;
        char num[24];
        const char *v = p + sizeof key - 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t n = strcspn(v, " \t\r");
        int64_t x;
        if (n == 0 || n >= sizeof num)
            return -EINVAL;
        memcpy(num, v, n);
        num[n] = '\0';
        if (ns_parse_i64(num, 0, INT64_MAX, &x) != 0)
            return -EINVAL;
        cl = x;
        break;
    }
    *h = (http_head){.status = status, .content_length = cl, .head_len = (size_t)(end - buf) + 4};
    return 1;
}

/* The version at the start of a table body: {"version":N,... Returns 0 or -EINVAL. */
static int body_version(const char *p, size_t n, uint64_t *v)
{
    static const char pre[] = "{\"version\":";
    char num[24];
    size_t k = sizeof pre - 1, d = 0;
    if (n < k || memcmp(p, pre, k) != 0)
        return -EINVAL;
    while (k + d < n && d + 1 < sizeof num && p[k + d] >= '0' && p[k + d] <= '9') {
        num[d] = p[k + d];
        d++;
    }
    num[d] = '\0';
    int64_t x;
    if (d == 0 || k + d >= n || ns_parse_i64(num, 0, INT64_MAX, &x) != 0)
        return -EINVAL;
    *v = (uint64_t)x;
    return 0;
}

/* ---- client connections ---- */

typedef enum conn_state { C_FREE, C_CONNECTING, C_SENT, C_DONE, C_FAILED } conn_state;

typedef struct conn {
    int fd;
    conn_state st;
    size_t sent;
    char head[HEAD_MAX];
    size_t hlen;
    long long got; /* response bytes so far */
    http_head h;
    bool have_head;
    double sent_ms, done_ms; /* monotonic */
    uint64_t version;        /* of a 200's table */
    const char *why;         /* of a failure */
} conn;

typedef struct pool {
    conn *c;
    size_t n;
    int epfd;
    struct sockaddr_in dst;
    struct in_addr src;
    char req[256];
    size_t req_len;
    size_t sent, done, failed;
} pool;

static uint32_t next_src = 2; /* 127.0.0.x: one source address per phase, so that the
                               * TIME_WAIT of a phase never takes ports from the next */

static struct in_addr take_src(void)
{
    struct in_addr a = {.s_addr = htonl(0x7f000000u | (next_src < 250 ? next_src++ : 250))};
    return a;
}

static int pool_init(pool *p, size_t n, const server *s, const char *path)
{
    *p = (pool){.n = n, .epfd = -1};
    p->c = calloc(n ? n : 1, sizeof(*p->c));
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!p->c || p->epfd < 0)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        p->c[i].fd = -1;
    p->dst = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(s->port)};
    p->dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->src = take_src();
    int len = snprintf(p->req, sizeof p->req,
                       "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nConnection: close\r\n"
                       "Accept: application/json\r\nUser-Agent: nutshell-bench-discovery\r\n\r\n",
                       path, s->port);
    if (len < 0 || (size_t)len >= sizeof p->req)
        return -EINVAL;
    p->req_len = (size_t)len;
    return 0;
}

static void conn_close(conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static void conn_fail(pool *p, conn *c, const char *why)
{
    conn_close(c);
    c->st = C_FAILED;
    c->why = why;
    p->failed++;
}

static void pool_free(pool *p)
{
    for (size_t i = 0; p->c && i < p->n; i++)
        conn_close(&p->c[i]);
    free(p->c);
    p->c = NULL;
    if (p->epfd >= 0)
        close(p->epfd);
    p->epfd = -1;
}

/* A TCP socket from `src` (port chosen at connect time), blocking or not. */
static int tcp_socket(struct in_addr src, bool nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = src};
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static void conn_open(pool *p, size_t i)
{
    conn *c = &p->c[i];
    c->fd = tcp_socket(p->src, true);
    if (c->fd < 0) {
        c->fd = -1;
        conn_fail(p, c, "socket");
        return;
    }
    if (connect(c->fd, (struct sockaddr *)&p->dst, sizeof p->dst) != 0 && errno != EINPROGRESS) {
        conn_fail(p, c, "connect");
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = i};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        conn_fail(p, c, "epoll_ctl");
        return;
    }
    c->st = C_CONNECTING;
}

/* Writable: sends (the rest of) the request. */
static void conn_writable(pool *p, size_t i)
{
    conn *c = &p->c[i];
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (c->sent == 0 && (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr)) {
        conn_fail(p, c, "connect");
        return;
    }
    while (c->sent < p->req_len) {
        ssize_t w = send(c->fd, p->req + c->sent, p->req_len - c->sent, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN)
            return;
        if (w <= 0) {
            conn_fail(p, c, "send");
            return;
        }
        c->sent += (size_t)w;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
    if (epoll_ctl(p->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
        conn_fail(p, c, "epoll_ctl");
        return;
    }
    c->st = C_SENT;
    c->sent_ms = bench_now_ms();
    p->sent++;
}

/* Readable: reads what is there; a complete response (by Content-Length, or EOF without
 * one) ends the connection. */
static void conn_readable(pool *p, size_t i, char *scratch, size_t len)
{
    conn *c = &p->c[i];
    for (;;) {
        ssize_t r = recv(c->fd, scratch, len, 0);
        if (r < 0 && errno == EAGAIN)
            return;
        if (r < 0) {
            conn_fail(p, c, "recv");
            return;
        }
        if (r == 0) {
            if (c->have_head && c->h.content_length < 0)
                break;
            conn_fail(p, c, c->got ? "closed mid-response" : "closed without an answer");
            return;
        }
        if (c->hlen < HEAD_MAX) {
            size_t k = (size_t)r < HEAD_MAX - c->hlen ? (size_t)r : HEAD_MAX - c->hlen;
            memcpy(c->head + c->hlen, scratch, k);
            c->hlen += k;
        }
        c->got += r;
        if (!c->have_head) {
            int h = http_head_parse(c->head, c->hlen, &c->h);
            if (h < 0) {
                conn_fail(p, c, "bad response head");
                return;
            }
            c->have_head = h == 1;
        }
        if (c->have_head && c->h.content_length >= 0 &&
            c->got >= (long long)c->h.head_len + c->h.content_length)
            break;
    }
    c->done_ms = bench_now_ms();
    if (c->h.status == 200 &&
        body_version(c->head + c->h.head_len, c->hlen - c->h.head_len, &c->version) != 0) {
        conn_fail(p, c, "200 without a table version");
        return;
    }
    conn_close(c);
    c->st = C_DONE;
    p->done++;
}

static void pool_event(pool *p, const struct epoll_event *ev, char *scratch, size_t len)
{
    size_t i = (size_t)ev->data.u64;
    conn *c = &p->c[i];
    if (c->st == C_CONNECTING)
        conn_writable(p, i);
    else if (c->st == C_SENT)
        conn_readable(p, i, scratch, len);
}

/* One epoll_wait of at most `ms` and its events. Returns the events handled. */
static int pool_poll(pool *p, int ms)
{
    static char scratch[256 * 1024];
    struct epoll_event evs[512];
    int n = epoll_wait(p->epfd, evs, 512, ms);
    for (int k = 0; k < n; k++)
        pool_event(p, &evs[k], scratch, sizeof scratch);
    return n < 0 ? 0 : n;
}

/* Opens every connection and sends every request, OPEN_BATCH connecting at a time, until
 * `deadline`. Returns 0 when all were sent. */
static int pool_open(pool *p, double deadline)
{
    size_t next = 0;
    while (p->sent + p->failed < p->n && bench_now_ms() < deadline) {
        while (next < p->n && next - p->sent - p->failed < OPEN_BATCH)
            conn_open(p, next++);
        pool_poll(p, 20);
    }
    return p->sent == p->n ? 0 : -ETIMEDOUT;
}

/* Reads answers until every connection is done or failed, or `deadline`. */
static void pool_collect(pool *p, double deadline)
{
    while (p->done + p->failed < p->n && bench_now_ms() < deadline)
        pool_poll(p, 10);
}

/* Waits until the server holds `want` requests (its own gauge), watching for answers that
 * should not come. Returns 0, or -ETIMEDOUT / -EPROTO (something was answered). */
static int wait_held(server *s, pool *p, long long want, double deadline, server_stats *st)
{
    for (;;) {
        int rc = server_stats_get(s, st);
        if (rc)
            return rc;
        if (st->held >= want) {
            pool_poll(p, 200); /* a little more, to see that none is answered */
            return p->done + p->failed ? -EPROTO : 0;
        }
        if (p->done + p->failed)
            return -EPROTO;
        if (bench_now_ms() >= deadline)
            return -ETIMEDOUT;
        pool_poll(p, 50);
    }
}

static void describe_failures(const pool *p, const char *what)
{
    const char *seen[8] = {0};
    size_t count[8] = {0}, k = 0;
    for (size_t i = 0; i < p->n; i++) {
        const conn *c = &p->c[i];
        const char *why = c->st == C_FAILED ? c->why
                          : c->st == C_DONE ? NULL
                          : c->st == C_SENT ? "no answer in time"
                                            : "never sent";
        if (!why)
            continue;
        size_t j = 0;
        while (j < k && strcmp(seen[j], why) != 0)
            j++;
        if (j == k && k < 8)
            seen[k++] = why;
        if (j < k)
            count[j]++;
    }
    for (size_t j = 0; j < k; j++)
        printf("  %s: %zu %s\n", what, count[j], seen[j]);
}

/* ---- a plain GET over a new blocking connection ---- */

typedef struct fetch_result {
    int status;
    long long bytes; /* body */
    uint64_t version;
} fetch_result;

static int fetch(const struct sockaddr_in *dst, struct in_addr src, const char *req, size_t req_len,
                 fetch_result *out)
{
    char buf[64 * 1024], head[HEAD_MAX];
    size_t hlen = 0;
    long long got = 0;
    http_head h = {0};
    bool have = false;
    int rc = 0, fd = tcp_socket(src, false);
    if (fd < 0)
        return fd;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (const struct sockaddr *)dst, sizeof *dst) != 0 ||
        send(fd, req, req_len, MSG_NOSIGNAL) != (ssize_t)req_len) {
        rc = -errno;
        goto out;
    }
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r < 0) {
            rc = -errno;
            goto out;
        }
        if (r == 0)
            break;
        if (hlen < HEAD_MAX) {
            size_t k = (size_t)r < HEAD_MAX - hlen ? (size_t)r : HEAD_MAX - hlen;
            memcpy(head + hlen, buf, k);
            hlen += k;
        }
        got += r;
        if (!have) {
            int hp = http_head_parse(head, hlen, &h);
            if (hp < 0) {
                rc = hp;
                goto out;
            }
            have = hp == 1;
        }
        if (have && h.content_length >= 0 && got >= (long long)h.head_len + h.content_length)
            break;
    }
    if (!have || (h.content_length >= 0 && got < (long long)h.head_len + h.content_length)) {
        rc = -EPROTO;
        goto out;
    }
    *out = (fetch_result){.status = h.status, .bytes = got - (long long)h.head_len};
    if (h.status == 200 && body_version(head + h.head_len, hlen - h.head_len, &out->version) != 0)
        rc = -EPROTO;
out:
    close(fd);
    return rc;
}

static int current_version(const server *s, uint64_t *v, long long *bytes)
{
    pool p;
    int rc = pool_init(&p, 0, s, "/v1/routes");
    fetch_result fr;
    if (rc == 0)
        rc = fetch(&p.dst, p.src, p.req, p.req_len, &fr);
    if (rc == 0 && fr.status != 200)
        rc = -EPROTO;
    if (rc == 0) {
        *v = fr.version;
        *bytes = fr.bytes;
    }
    pool_free(&p);
    return rc;
}

/* ---- statistics ---- */

typedef struct summary {
    long n;
    double min, p50, p99, max;
} summary;

/* Sorts `v` in place. */
static summary summarize(double *v, long n)
{
    summary s = {.n = n};
    if (n <= 0)
        return s;
    qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
    s.min = v[0];
    s.p50 = bench_pct(v, n, 50);
    s.p99 = bench_pct(v, n, 99);
    s.max = v[n - 1];
    return s;
}

static double mib(long kb)
{
    return (double)kb / 1024.0;
}

/* ---- fan-out ---- */

typedef struct fanout_result {
    long clients;
    double setup_s;
    mem_point before, held, after; /* after: its VmHWM is the round's peak */
    bool hwm_own;                  /* VmHWM was reset before the round */
    summary lat;                   /* ms from the change to each complete 200 */
    long answered, errors;
    double build_after_ms, build_ms; /* change -> build start; the build itself */
    double server_cpu_ms, client_cpu_ms;
    long long held_after;
    bool ok;
} fanout_result;

static double self_cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* Sends 'c' (a new table) and returns the parent's clock when it was sent. */
static int trigger_change(server *s, double *t0)
{
    char line[128];
    *t0 = bench_now_ms();
    int rc = server_call(s, 'c', line, sizeof line);
    return rc ? rc : strncmp(line, "ok ", 3) == 0 ? 0 : -EPROTO;
}

static int fanout_round(server *s, const opts *o, long clients, fanout_result *res)
{
    *res = (fanout_result){.clients = clients};
    uint64_t v;
    long long bytes;
    int rc = current_version(s, &v, &bytes);
    if (rc) {
        printf("fan-out %ld: cannot read the current table: %s\n", clients, strerror(-rc));
        return rc;
    }
    usleep(300000); /* let the server settle after the last round's answers */
    res->hwm_own = hwm_reset(s->pid) == 0;
    res->before = mem_read(s->pid);
    char path[96];
    snprintf(path, sizeof path, "/v1/routes?version=%llu&wait=%ld", (unsigned long long)v,
             o->wait_s);
    pool p;
    double *lat = NULL;
    server_stats st0, st1;
    rc = pool_init(&p, (size_t)clients, s, path);
    if (rc)
        goto out;
    double t_open = bench_now_ms(), deadline = t_open + (double)o->setup_timeout_s * 1e3;
    rc = pool_open(&p, deadline);
    if (rc == 0)
        rc = wait_held(s, &p, clients, deadline, &st0);
    res->setup_s = (bench_now_ms() - t_open) / 1e3;
    if (rc) {
        printf("fan-out %ld: %zu of %ld requests sent, %zu answered or failed before the change "
               "(%s)\n",
               clients, p.sent, clients, p.done + p.failed,
               rc == -EPROTO ? "answered early" : strerror(-rc));
        describe_failures(&p, "before the change");
        goto out;
    }
    res->held = mem_read(s->pid);
    double cpu0 = proc_cpu_ms(s->pid), mycpu0 = self_cpu_ms(), t0;
    rc = trigger_change(s, &t0);
    if (rc)
        goto out;
    pool_collect(&p, t0 + (double)o->fanout_timeout_s * 1e3);
    res->server_cpu_ms = proc_cpu_ms(s->pid) - cpu0;
    res->client_cpu_ms = self_cpu_ms() - mycpu0;
    rc = server_stats_get(s, &st1);
    if (rc)
        goto out;
    res->held_after = st1.held;
    usleep(300000);
    res->after = mem_read(s->pid);
    res->build_after_ms = st1.build_start_ms - t0;
    res->build_ms = st1.build_end_ms - st1.build_start_ms;

    lat = calloc((size_t)clients, sizeof(*lat));
    if (!lat) {
        rc = -ENOMEM;
        goto out;
    }
    uint64_t nv = 0;
    for (size_t i = 0; i < p.n; i++) {
        conn *c = &p.c[i];
        if (c->st != C_DONE)
            continue;
        if (c->h.status != 200 || c->version == v || (nv && c->version != nv)) {
            res->errors++;
            continue;
        }
        nv = c->version;
        lat[res->answered++] = c->done_ms - t0;
    }
    res->errors += (long)(p.n - p.done);
    res->lat = summarize(lat, res->answered);
    res->ok = res->answered == clients && res->errors == 0;
    if (!res->ok) {
        printf("fan-out %ld: %ld answered with the new table, %ld errors\n", clients, res->answered,
               res->errors);
        describe_failures(&p, "after the change");
    }
out:
    free(lat);
    pool_free(&p);
    return rc;
}

/* ---- abandoned requests ---- */

typedef struct abandon_result {
    long n;
    mem_point held, closed, after;
    long long held_closed, held_after;
    double release_ms; /* change -> the server's fds back to where they were */
    bool ok;
} abandon_result;

static int abandon_phase(server *s, const opts *o, abandon_result *res)
{
    *res = (abandon_result){.n = o->abandon, .release_ms = -1};
    uint64_t v;
    long long bytes;
    int rc = current_version(s, &v, &bytes);
    if (rc)
        return rc;
    usleep(300000);
    mem_point base = mem_read(s->pid);
    char path[96];
    snprintf(path, sizeof path, "/v1/routes?version=%llu&wait=%ld", (unsigned long long)v,
             o->wait_s);
    pool p;
    server_stats st;
    rc = pool_init(&p, (size_t)o->abandon, s, path);
    double deadline = bench_now_ms() + (double)o->setup_timeout_s * 1e3;
    if (rc == 0)
        rc = pool_open(&p, deadline);
    if (rc == 0)
        rc = wait_held(s, &p, o->abandon, deadline, &st);
    if (rc) {
        printf("abandoned: could not get %ld requests held: %s\n", o->abandon, strerror(-rc));
        goto out;
    }
    res->held = mem_read(s->pid);
    for (size_t i = 0; i < p.n; i++) /* the proxies go away */
        conn_close(&p.c[i]);
    usleep(2000000);
    rc = server_stats_get(s, &st);
    if (rc)
        goto out;
    res->held_closed = st.held;
    res->closed = mem_read(s->pid);
    double t0;
    rc = trigger_change(s, &t0);
    if (rc)
        goto out;
    while (bench_now_ms() - t0 < 10000) {
        mem_point m = mem_read(s->pid);
        if (m.fds <= base.fds) {
            res->release_ms = bench_now_ms() - t0;
            break;
        }
        usleep(10000);
    }
    usleep(200000);
    rc = server_stats_get(s, &st);
    res->held_after = st.held;
    res->after = mem_read(s->pid);
    res->ok = rc == 0 && res->held_after == 0 && res->release_ms >= 0;
out:
    pool_free(&p);
    return rc;
}

/* ---- a wait past the connection timeout ---- */

typedef struct check_result {
    long n, got304, other;
    summary lat; /* s from each request to its answer */
    bool ok;
} check_result;

static int check_phase(server *s, const opts *o, check_result *res)
{
    *res = (check_result){.n = o->check_conns};
    uint64_t v;
    long long bytes;
    int rc = current_version(s, &v, &bytes);
    if (rc)
        return rc;
    char path[96];
    snprintf(path, sizeof path, "/v1/routes?version=%llu&wait=%ld", (unsigned long long)v,
             o->check_wait_s);
    pool p;
    server_stats st;
    double *lat = calloc((size_t)o->check_conns, sizeof(*lat));
    rc = lat ? pool_init(&p, (size_t)o->check_conns, s, path) : -ENOMEM;
    if (rc) {
        free(lat);
        return rc;
    }
    double deadline = bench_now_ms() + (double)o->setup_timeout_s * 1e3;
    rc = pool_open(&p, deadline);
    if (rc == 0)
        rc = wait_held(s, &p, o->check_conns, deadline, &st);
    if (rc == 0) {
        pool_collect(&p, bench_now_ms() + (double)(o->check_wait_s + 10) * 1e3);
        long k = 0;
        for (size_t i = 0; i < p.n; i++) {
            const conn *c = &p.c[i];
            if (c->st == C_DONE && c->h.status == 304) {
                res->got304++;
                lat[k++] = (c->done_ms - c->sent_ms) / 1e3;
            } else {
                res->other++;
            }
        }
        res->lat = summarize(lat, k);
        res->ok = res->got304 == res->n;
        if (!res->ok)
            describe_failures(&p, "held to the end of the wait");
    }
    free(lat);
    pool_free(&p);
    return rc;
}

/* ---- throughput ---- */

typedef struct tp_worker {
    pthread_t th;
    const pool *p; /* destination and request only */
    struct in_addr src;
    double deadline;
    double *lat;
    long n, errors;
    long long bytes;
} tp_worker;

static void *tp_main(void *arg)
{
    tp_worker *w = arg;
    while (w->n < TP_MAX_REQS && bench_now_ms() < w->deadline) {
        fetch_result fr;
        double t = bench_now_ms();
        int rc = fetch(&w->p->dst, w->src, w->p->req, w->p->req_len, &fr);
        if (rc || fr.status != 200) {
            w->errors++;
            continue;
        }
        w->lat[w->n++] = bench_now_ms() - t;
        w->bytes += fr.bytes;
    }
    return NULL;
}

typedef struct tp_result {
    long requests, errors;
    double seconds, rps, mib_s, server_cores;
    summary lat;
} tp_result;

static int throughput_phase(server *s, const opts *o, tp_result *res)
{
    *res = (tp_result){0};
    pool p;
    tp_worker w[MAX_THREADS] = {0};
    long started = 0;
    double *all = NULL;
    int rc = pool_init(&p, 0, s, "/v1/routes");
    for (long i = 0; rc == 0 && i < o->threads; i++) {
        w[i].lat = calloc(TP_MAX_REQS, sizeof(double));
        if (!w[i].lat)
            rc = -ENOMEM;
    }
    double cpu0 = proc_cpu_ms(s->pid), t0 = bench_now_ms();
    for (long i = 0; rc == 0 && i < o->threads; i++) {
        w[i].p = &p;
        w[i].src = take_src();
        w[i].deadline = t0 + (double)o->duration_s * 1e3;
        rc = -pthread_create(&w[i].th, NULL, tp_main, &w[i]);
        if (rc == 0)
            started++;
    }
    for (long i = 0; i < started; i++)
        pthread_join(w[i].th, NULL);
    res->seconds = (bench_now_ms() - t0) / 1e3;
    res->server_cores = (proc_cpu_ms(s->pid) - cpu0) / 1e3 / res->seconds;
    long long bytes = 0;
    for (long i = 0; i < started; i++) {
        res->requests += w[i].n;
        res->errors += w[i].errors;
        bytes += w[i].bytes;
    }
    all = calloc((size_t)(res->requests ? res->requests : 1), sizeof(*all));
    if (rc == 0 && !all)
        rc = -ENOMEM;
    for (long i = 0, k = 0; all && i < started; i++) {
        memcpy(all + k, w[i].lat, (size_t)w[i].n * sizeof(*all));
        k += w[i].n;
    }
    if (all)
        res->lat = summarize(all, res->requests);
    res->rps = (double)res->requests / res->seconds;
    res->mib_s = (double)bytes / 1048576.0 / res->seconds;
    free(all);
    for (long i = 0; i < o->threads; i++)
        free(w[i].lat);
    pool_free(&p);
    return rc;
}

/* ---- main ---- */

static void print_loadavg(const char *when)
{
    char buf[128] = "";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(buf, sizeof buf, f))
            buf[0] = '\0';
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = '\0';
    printf("load average %s: %s\n", when, buf);
}

static int raise_nofile(long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    if (rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur < need) {
        fprintf(stderr,
                "nutshell-bench-discovery: %ld clients need %ld file descriptors; the hard limit "
                "is %ld (ulimit -Hn)\n",
                need - 64, need, (long)rl.rlim_max);
        return -EMFILE;
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse_opts(argc, argv, &o) != 0)
        return 2;
    long most = o.abandon;
    for (int i = 0; i < o.nrounds; i++)
        most = o.clients[i] > most ? o.clients[i] : most;
    if (raise_nofile(most + 64) != 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("command:");
    for (int i = 0; i < argc; i++)
        printf(" %s", i ? argv[i] : "nutshell-bench-discovery");
    printf("\nparameters: routes %ld; clients", o.routes);
    for (int i = 0; i < o.nrounds; i++)
        printf("%s%ld", i ? "," : " ", o.clients[i]);
    printf("; wait %ld s; abandon %ld; check %ld x wait %ld s; throughput %ld threads x %ld s\n",
           o.wait_s, o.abandon, o.check_conns, o.check_wait_s, o.threads, o.duration_s);
    bench_print_machine();
    print_loadavg("at the start");
    printf("peer: none (no other server speaks this discovery protocol)\n");

    server s = {0};
    if (server_start(&s, o.routes) != 0)
        return 1;
    int status = 0;
    uint64_t v;
    long long table_bytes = 0;
    /* 503 until the server's first build */
    double t_start = bench_now_ms(), t_table = -1;
    while (bench_now_ms() - t_start < 5000) {
        if (current_version(&s, &v, &table_bytes) == 0) {
            t_table = bench_now_ms() - t_start;
            break;
        }
        usleep(10000);
    }
    if (t_table < 0) {
        fprintf(stderr, "nutshell-bench-discovery: no table from the server\n");
        server_stop(&s);
        return 1;
    }
    usleep(300000);
    mem_point idle = mem_read(s.pid);
    printf("server: pid %ld on 127.0.0.1:%u, table of %ld routes, %lld bytes, version %llu, "
           "first served %.0f ms after the server started\n",
           (long)s.pid, s.port, o.routes, table_bytes, (unsigned long long)v, t_table);
    printf("server idle, table loaded: VmRSS %.1f MiB, %ld fds, %ld threads\n", mib(idle.rss_kb),
           idle.fds, idle.threads);

    fanout_result fr[MAX_ROUNDS];
    int nfr = 0;
    for (int i = 0; i < o.nrounds; i++) {
        printf("\n== fan-out: %ld held requests, one table change ==\n", o.clients[i]);
        int rc = fanout_round(&s, &o, o.clients[i], &fr[nfr]);
        if (rc == 0)
            nfr++;
        if (rc || !fr[nfr - 1].ok)
            status = 1;
        if (rc == 0) {
            const fanout_result *r = &fr[nfr - 1];
            printf("held after %.2f s; change -> build start %.1f ms, build %.1f ms; answered %ld, "
                   "errors %ld, still held after %lld; CPU: server %.0f ms, client %.0f ms\n",
                   r->setup_s, r->build_after_ms, r->build_ms, r->answered, r->errors,
                   r->held_after, r->server_cpu_ms, r->client_cpu_ms);
        }
    }
    abandon_result ab = {0};
    if (o.abandon > 0) {
        printf("\n== abandoned: %ld held requests whose clients close ==\n", o.abandon);
        if (abandon_phase(&s, &o, &ab) != 0 || !ab.ok)
            status = 1;
    }
    tp_result tp = {0};
    if (o.threads > 0) {
        printf("\n== throughput: GET /v1/routes, a new connection each, %ld threads, %ld s ==\n",
               o.threads, o.duration_s);
        if (throughput_phase(&s, &o, &tp) != 0 || tp.errors)
            status = 1;
    }
    check_result ck = {0};
    if (o.check_conns > 0) {
        printf("\n== wait end: %ld requests with wait=%ld, no change (about %ld s) ==\n",
               o.check_conns, o.check_wait_s, o.check_wait_s);
        if (check_phase(&s, &o, &ck) != 0 || !ck.ok)
            status = 1;
    }
    mem_point end = mem_read(s.pid);
    long hwm = nbi_proc_status_kb(s.pid, "VmHWM");
    print_loadavg("at the end");
    server_stop(&s);

    printf("\n== results (table: %ld routes, %lld bytes) ==\n", o.routes, table_bytes);
    printf("fan-out, ms from the change to each complete 200 (the change waits %s):\n",
           "the server's 50 ms coalescing");
    printf("%8s %9s %9s %9s %9s %12s %7s %12s\n", "held", "setup s", "first", "median", "p99",
           "max (all)", "errors", "server CPU");
    for (int i = 0; i < nfr; i++)
        printf("%8ld %9.2f %9.1f %9.1f %9.1f %12.1f %7ld %9.0f ms\n", fr[i].clients, fr[i].setup_s,
               fr[i].lat.min, fr[i].lat.p50, fr[i].lat.p99, fr[i].lat.max, fr[i].errors,
               fr[i].server_cpu_ms);
    printf("server process, VmRSS in MiB (per held request: (held - before) / held; peak: VmHWM "
           "%s):\n",
           nfr && fr[0].hwm_own ? "from just before the requests to just after the answers"
                                : "since the start (could not reset it)");
    printf("%8s %8s %8s %12s %12s %8s %6s %8s\n", "held", "before", "held", "per request",
           "peak (fan)", "after", "fds", "threads");
    printf("%8s %8.1f %8s %12s %12s %8s %6ld %8ld   (idle, table loaded)\n", "0", mib(idle.rss_kb),
           "", "", "", "", idle.fds, idle.threads);
    for (int i = 0; i < nfr; i++) {
        char per[32];
        snprintf(per, sizeof per, "%.1f KiB",
                 (double)(fr[i].held.rss_kb - fr[i].before.rss_kb) / (double)fr[i].clients);
        printf("%8ld %8.1f %8.1f %12s %12.1f %8.1f %6ld %8ld\n", fr[i].clients,
               mib(fr[i].before.rss_kb), mib(fr[i].held.rss_kb), per, mib(fr[i].after.hwm_kb),
               mib(fr[i].after.rss_kb), fr[i].held.fds, fr[i].held.threads);
    }
    long peak = hwm;
    for (int i = 0; i < nfr; i++)
        peak = fr[i].after.hwm_kb > peak ? fr[i].after.hwm_kb : peak;
    printf("at the end: VmRSS %.1f MiB, %ld fds, %ld threads; highest VmHWM of the run %.1f MiB\n",
           mib(end.rss_kb), end.fds, end.threads, mib(peak));
    if (o.abandon > 0)
        printf("abandoned: %ld held, clients closed: after 2 s the server still held %lld (%ld "
               "fds, was %ld); after a change: %lld held, fds %ld, released in %.0f ms%s\n",
               ab.n, ab.held_closed, ab.closed.fds, ab.held.fds, ab.held_after, ab.after.fds,
               ab.release_ms, ab.ok ? "" : " (NOT released)");
    if (o.threads > 0)
        printf("throughput: %ld GETs in %.1f s = %.0f /s (%.1f MiB/s), latency median %.2f ms, "
               "p99 %.2f ms, max %.2f ms; %ld errors; server %.2f cores\n",
               tp.requests, tp.seconds, tp.rps, tp.mib_s, tp.lat.p50, tp.lat.p99, tp.lat.max,
               tp.errors, tp.server_cores);
    if (o.check_conns > 0)
        printf("wait end: %ld of %ld got 304 after %.1f-%.1f s (wait=%ld); %ld otherwise\n",
               ck.got304, ck.n, ck.lat.min, ck.lat.max, o.check_wait_s, ck.other);
    printf("%s\n", status ? "result: FAILURES (see above)"
                          : "result: all requests answered as "
                            "expected");
    return status;
}

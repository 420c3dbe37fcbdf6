/* loadgen.c - nutshell-bench-proxy: an HTTP/1.1 keep-alive load generator for the proxy
 * benchmark (bench/proxy/run.sh), in two modes:
 *
 *   --rate R   open loop: requests are due at fixed intervals (1/R s) whatever the server
 *              does, spread over the connections; latency runs from when a request was
 *              due, not from when it could be sent, so a stall shows up in the tail
 *              instead of silently lowering the rate (no coordinated omission);
 *   --max      closed loop: every connection sends its next request as soon as the last
 *              response is in; throughput is what comes back.
 *
 * One thread, one epoll; every request is "GET PATH HTTP/1.1" and every response must
 * carry Content-Length (what the benchmark's nginx backend sends). Prints human lines and
 * one JSON line with percentiles (exact: every latency is kept), the rate achieved, and
 * optionally the RSS and CPU time of a server process (--pid). Bounded: --duration.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 256
#define BUF_SIZE  16384

typedef struct conn {
    int fd;
    bool busy;
    int64_t due_ns; /* when the request in flight was due (rate) or sent (max) */
    char buf[BUF_SIZE];
    size_t len;
} conn;

typedef struct opts {
    const char *host;
    int port;
    const char *path;
    int connections;
    double rate; /* 0: --max */
    double duration, warmup;
    long pid;
} opts;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: nutshell-bench-proxy --port P (--rate R | --max) [--host 127.0.0.1]\n"
                    "         [--path /] [--connections 8] [--duration 10] [--warmup 1] "
                    "[--pid PID]\n");
}

static int parse_opts(int argc, char **argv, opts *o)
{
    *o = (opts){.host = "127.0.0.1",
                .path = "/",
                .connections = 8,
                .duration = 10,
                .warmup = 1,
                .rate = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
        if (strcmp(a, "--max") == 0) {
            o->rate = 0;
            continue;
        }
        if (!v) {
            usage();
            return -1;
        }
        i++;
        if (strcmp(a, "--host") == 0) {
            o->host = v;
        } else if (strcmp(a, "--path") == 0) {
            o->path = v;
        } else if (strcmp(a, "--port") == 0 && parse_num(v, 1, 65535, &d) == 0) {
            o->port = (int)d;
        } else if (strcmp(a, "--connections") == 0 && parse_num(v, 1, MAX_CONNS, &d) == 0) {
            o->connections = (int)d;
        } else if (strcmp(a, "--rate") == 0 && parse_num(v, 1, 1e6, &d) == 0) {
            o->rate = d;
        } else if (strcmp(a, "--duration") == 0 && parse_num(v, 0.1, 3600, &d) == 0) {
            o->duration = d;
        } else if (strcmp(a, "--warmup") == 0 && parse_num(v, 0, 600, &d) == 0) {
            o->warmup = d;
        } else if (strcmp(a, "--pid") == 0 && parse_num(v, 1, 1e9, &d) == 0) {
            o->pid = (long)d;
        } else {
            fprintf(stderr, "nutshell-bench-proxy: bad option %s %s\n", a, v);
            usage();
            return -1;
        }
    }
    if (o->port == 0 || o->rate < 0) {
        usage();
        return -1;
    }
    return 0;
}

/* /proc/PID/status field in kB, or -1. */
static long proc_kb(long pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return v;
}

/* utime + stime of PID in seconds, or -1. */
static double proc_cpu(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long ut = 0, st = 0;
    /* fields after ")": state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int connect_one(const opts *o)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->host, &a.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Returns the length of the complete response at the start of c->buf, 0 if incomplete,
 * -1 if it is not a 200 with Content-Length. */
static long response_len(const conn *c)
{
    const char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end)
        return c->len >= BUF_SIZE ? -1 : 0;
    size_t head = (size_t)(end - c->buf) + 4;
    if (c->len < 12 || memcmp(c->buf + 9, "200", 3) != 0)
        return -1;
    long body = -1;
    for (const char *p = c->buf; p < end; p++) {
        if ((p == c->buf || p[-1] == '\n') && (size_t)(end - p) > 15 &&
            strncasecmp(p, "content-length:", 15) == 0) {
            body = strtol(p + 15, NULL, 10);
            break;
        }
    }
    if (body < 0)
        return -1;
    return c->len >= head + (size_t)body ? (long)(head + (size_t)body) : 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const int64_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return (double)v[i] / 1000.0; /* microseconds */
}

int main(int argc, char **argv)
{
    opts o;
    if (parse_opts(argc, argv, &o) != 0)
        return 2;
    char req[512];
    int reqlen = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: bench\r\n\r\n", o.path);

    static conn conns[MAX_CONNS];
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < o.connections; i++) {
        conns[i].fd = connect_one(&o);
        if (conns[i].fd < 0) {
            fprintf(stderr, "nutshell-bench-proxy: connect %s:%d: %s\n", o.host, o.port,
                    strerror(errno));
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

    size_t cap = o.rate > 0 ? (size_t)(o.rate * o.duration * 1.2) + 1024 : 1 << 20;
    int64_t *lat = malloc(cap * sizeof(int64_t));
    if (!lat)
        return 1;
    size_t nlat = 0;
    uint64_t errors = 0, late_sends = 0, done_total = 0;
    int64_t start = now_ns();
    int64_t measure_from = start + (int64_t)(o.warmup * 1e9);
    int64_t stop = measure_from + (int64_t)(o.duration * 1e9);
    int64_t interval = o.rate > 0 ? (int64_t)(1e9 / o.rate) : 0;
    int64_t next_due = start;
    uint64_t backlog = 0; /* rate mode: requests due that found no idle connection */
    int64_t backlog_due[4096];
    double cpu0 = -1, cpu1 = -1;
    bool measuring = false;

    /* Sends on connection i a request that was due at `due`. */
#define SEND(i, due)                                                                               \
    do {                                                                                           \
        if (send(conns[i].fd, req, (size_t)reqlen, MSG_NOSIGNAL) != reqlen) {                      \
            errors++;                                                                              \
            goto out;                                                                              \
        }                                                                                          \
        conns[i].busy = true;                                                                      \
        conns[i].due_ns = (due);                                                                   \
    } while (0)

    if (o.rate == 0)
        for (int i = 0; i < o.connections; i++)
            SEND(i, now_ns());

    for (;;) {
        int64_t now = now_ns();
        if (!measuring && now >= measure_from) {
            measuring = true;
            if (o.pid)
                cpu0 = proc_cpu(o.pid);
        }
        if (now >= stop)
            break;
        if (o.rate > 0) {
            /* Everything due by now goes out on idle connections; the rest waits. */
            while (next_due <= now) {
                int idle = -1;
                for (int i = 0; i < o.connections; i++)
                    if (!conns[i].busy) {
                        idle = i;
                        break;
                    }
                if (idle < 0) {
                    if (backlog < sizeof(backlog_due) / sizeof(backlog_due[0]))
                        backlog_due[backlog++] = next_due;
                    else
                        errors++;
                } else {
                    SEND(idle, next_due);
                }
                next_due += interval;
            }
            struct itimerspec its = {
                .it_value = {.tv_sec = next_due / 1000000000, .tv_nsec = next_due % 1000000000}};
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 100);
        for (int k = 0; k < n; k++) {
            uint32_t i = evs[k].data.u32;
            if (i == UINT32_MAX) {
                uint64_t exp;
                if (read(tfd, &exp, sizeof(exp)) < 0) {
                    /* nothing: the loop looks at the clock anyway */
                }
                continue;
            }
            conn *c = &conns[i];
            ssize_t r = recv(c->fd, c->buf + c->len, BUF_SIZE - c->len, 0);
            if (r <= 0) {
                fprintf(stderr, "nutshell-bench-proxy: connection %u closed by the server\n", i);
                errors++;
                goto out;
            }
            c->len += (size_t)r;
            long l;
            while ((l = response_len(c)) > 0) {
                int64_t t = now_ns();
                if (c->due_ns >= measure_from && t < stop && nlat < cap)
                    lat[nlat++] = t - c->due_ns;
                done_total++;
                memmove(c->buf, c->buf + l, c->len - (size_t)l);
                c->len -= (size_t)l;
                c->busy = false;
                if (o.rate == 0) {
                    SEND(i, t);
                } else if (backlog > 0) {
                    int64_t due = backlog_due[0];
                    memmove(backlog_due, backlog_due + 1, (backlog - 1) * sizeof(int64_t));
                    backlog--;
                    late_sends++;
                    SEND(i, due);
                }
            }
            if (l < 0) {
                fprintf(stderr, "nutshell-bench-proxy: bad response: %.60s\n", c->buf);
                errors++;
                goto out;
            }
        }
    }
out:;
    double secs = (double)(now_ns() - measure_from) / 1e9;
    if (secs > o.duration)
        secs = o.duration;
    if (o.pid && cpu0 >= 0)
        cpu1 = proc_cpu(o.pid);
    qsort(lat, nlat, sizeof(int64_t), cmp_i64);
    double rps = secs > 0 ? (double)nlat / secs : 0;
    double cpu_util = cpu1 >= 0 && secs > 0 ? (cpu1 - cpu0) / secs : -1;
    long rss = o.pid ? proc_kb(o.pid, "VmRSS") : -1;
    long hwm = o.pid ? proc_kb(o.pid, "VmHWM") : -1;
    printf("requests %zu in %.2f s: %.0f req/s, errors %llu, late sends %llu\n", nlat, secs, rps,
           (unsigned long long)errors, (unsigned long long)late_sends);
    printf("latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", pct(lat, nlat, 50),
           pct(lat, nlat, 90), pct(lat, nlat, 99), pct(lat, nlat, 99.9),
           nlat ? (double)lat[nlat - 1] / 1000.0 : 0);
    if (o.pid)
        printf("server pid %ld: RSS %ld kB (peak %ld kB), CPU %.2f cores\n", o.pid, rss, hwm,
               cpu_util);
    printf("{\"mode\":\"%s\",\"rate\":%.0f,\"connections\":%d,\"requests\":%zu,\"seconds\":%.2f,"
           "\"rps\":%.0f,\"errors\":%llu,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
           "\"p999_us\":%.1f,\"max_us\":%.1f,\"server_rss_kb\":%ld,\"server_peak_rss_kb\":%ld,"
           "\"server_cpu_cores\":%.3f}\n",
           o.rate > 0 ? "rate" : "max", o.rate, o.connections, nlat, secs, rps,
           (unsigned long long)errors, pct(lat, nlat, 50), pct(lat, nlat, 90), pct(lat, nlat, 99),
           pct(lat, nlat, 99.9), nlat ? (double)lat[nlat - 1] / 1000.0 : 0, rss, hwm, cpu_util);
    free(lat);
    (void)done_total;
    return errors ? 1 : 0;
}

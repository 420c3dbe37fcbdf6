/* main.c - nutshell-proxy: start-up, signals, the admin loop, drain; and `wait`. */
#include "admin.h"
#include "config.h"
#include "log.h"
#include "net.h"
#include "discovery_client.h"
#include "routing.h"
#include "stats.h"
#include "strconv.h"
#include "worker.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *env(const char *name)
{
    return getenv(name);
}

/* The CPU quota of this container's cgroup (v2 cpu.max, else v1 cfs), rounded up, or 0
 * if none: a pod limited to 2 CPUs on a 64-core node wants 2 loops, not 64. */
static unsigned cgroup_cpus(void)
{
    char buf[64] = {0};
    long long quota = -1, period = 0;
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f) {
        if (fgets(buf, sizeof(buf), f) && strncmp(buf, "max", 3) != 0 &&
            sscanf(buf, "%lld %lld", &quota, &period) != 2)
            quota = -1;
        fclose(f);
    } else if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r"))) {
        if (fscanf(f, "%lld", &quota) != 1)
            quota = -1;
        fclose(f);
        f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r");
        if (!f || fscanf(f, "%lld", &period) != 1)
            quota = -1;
        if (f)
            fclose(f);
    }
    if (quota <= 0 || period <= 0)
        return 0;
    return (unsigned)((quota + period - 1) / period);
}

static unsigned usable_cpus(void)
{
    unsigned n = 1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) {
        n = (unsigned)CPU_COUNT(&set);
    } else {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online > 0 ? (unsigned)online : 1;
    }
    unsigned quota = cgroup_cpus();
    return quota && quota < n ? quota : n;
}

/* True if this namespace can use ::6 as a source (nutshell-init does not add it; a pod
 * spec or a future init step might). */
static bool have_v6_source(struct sockaddr_storage *out)
{
    if (px_addr_parse("::6", 0, out) != 0)
        return false;
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool ok = bind(fd, (struct sockaddr *)out, px_addr_len(out)) == 0;
    close(fd);
    if (!ok)
        memset(out, 0, sizeof(*out));
    return ok;
}

typedef struct main_ctx {
    px_proxy *px;
    px_loop loop;
    px_io sig;
    px_io wake;
    bool draining;
    int64_t drain_started_ms;
} main_ctx;

static void start_drain(void *arg)
{
    main_ctx *m = arg;
    if (m->draining)
        return;
    m->draining = true;
    m->drain_started_ms = px_now_ms();
    ns_gauge_set(&px_st.draining, 1);
    ns_log(NS_LOG_INFO, "draining: no new connections; finishing in-flight requests", NULL);
    px_workers_drain(m->px);
}

/* Hands `t` to the workers and records it; `key`/`from` name the source in the log. On
 * the main thread for a file, on the discovery thread for the operator's tables (never
 * both: the flags are exclusive). */
static int use_table(px_proxy *px, const px_routes *t, const char *key, const char *from)
{
    int rc = px_workers_set_routes(px, t);
    if (rc) {
        px_stat_add(&px_st.routes_errors, 1);
        ns_log(NS_LOG_ERROR, "route table refused: out of memory", key, from, NULL);
        return rc;
    }
    char v[24], n[24];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)t->version);
    snprintf(n, sizeof(n), "%zu", t->nroutes);
    ns_gauge_set(&px_st.routes_version, (int64_t)t->version);
    px_stat_add(&px_st.routes_reloads, 1);
    ns_log(NS_LOG_INFO, "route table loaded", key, from, "version", v, "routes", n, NULL);
    return 0;
}

static int discovery_apply(void *ctx, const px_routes *t)
{
    px_proxy *px = ctx;
    return use_table(px, t, "server", px->cfg.discovery_address);
}

static void load_routes(px_proxy *px)
{
    const char *path = px->cfg.routes_file;
    px_routes *t = NULL;
    ns_err err = {0};
    int rc = px_routes_load(path, &t, &err);
    if (rc) {
        px_stat_add(&px_st.routes_errors, 1);
        ns_log(NS_LOG_ERROR, "route table refused; keeping the table in use", "file", path, "error",
               err.msg, NULL);
        return;
    }
    use_table(px, t, "file", path);
    px_routes_free(t);
}

static void sig_cb(px_io *io, uint32_t events)
{
    main_ctx *m = (main_ctx *)(void *)((char *)io - offsetof(main_ctx, sig));
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP) {
            if (m->px->cfg.routes_file[0])
                load_routes(m->px);
        } else {
            start_drain(m);
        }
    }
}

static void wake_cb(px_io *io, uint32_t events)
{
    uint64_t v;
    while (read(io->fd, &v, sizeof(v)) > 0) {
    }
}

static int serve(int argc, char **argv)
{
    static px_proxy px; /* the workers hold pointers to it until they are joined */
    px_config_defaults(&px.cfg);
    ns_err err = {0};
    int rc = px_config_parse(&px.cfg, argc, argv, env, &err);
    if (rc == 1) {
        fputs(px_config_usage(), stdout);
        return 0;
    }
    if (rc) {
        fprintf(stderr, "nutshell-proxy: %s\n", err.msg);
        fputs(px_config_usage(), stderr);
        return 2;
    }
    ns_log_setup(px.cfg.log_level, px.cfg.log_format, "nutshell-proxy");
    signal(SIGPIPE, SIG_IGN);

    /* Signals go to the main loop through a signalfd: block them before any thread
     * starts so that every thread inherits the mask. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);

    /* Each connection takes two descriptors (six while splicing): use what the container
     * allows, not the default soft limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    px_stats_init();
    if (px.cfg.discovery_address[0])
        px_stats_discovery_init();
    px.nworkers = px.cfg.concurrency ? px.cfg.concurrency : usable_cpus();
    px.started_ms = px_now_ms();
    atomic_init(&px.nconns, 0);
    atomic_init(&px.running, 0);
    px_addr_parse(px.cfg.inbound_source, 0, &px.inbound_src4);
    if (px.inbound_src4.ss_family != AF_INET) {
        fprintf(stderr, "nutshell-proxy: --inbound-source must be an IPv4 address\n");
        return 2;
    }
    have_v6_source(&px.inbound_src6);

    static main_ctx m;
    m.px = &px;
    rc = px_loop_init(&m.loop);
    px.main_wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    m.sig.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (rc || px.main_wake_fd < 0 || m.sig.fd < 0) {
        ns_log(NS_LOG_ERROR, "cannot set up the main loop", "error", strerror(errno), NULL);
        return 1;
    }
    m.sig.cb = sig_cb;
    m.wake.fd = px.main_wake_fd;
    m.wake.cb = wake_cb;
    px_loop_add(&m.loop, &m.sig, EPOLLIN);
    px_loop_add(&m.loop, &m.wake, EPOLLIN);

    rc = px_workers_create(&px, &err);
    if (rc) {
        ns_log(NS_LOG_ERROR, "cannot start", "error", err.msg, NULL);
        px_workers_destroy(&px);
        return 1;
    }
    if (px.cfg.routes_file[0])
        load_routes(&px);
    px_admin *admin = NULL;
    px_discovery *disc = NULL;
    rc = px_admin_start(&px, &m.loop, start_drain, &m, &admin, &err);
    if (rc == 0)
        rc = px_workers_start(&px, &err);
    if (rc == 0 && px.cfg.discovery_address[0]) {
        const px_discovery_opts dopts = {
            .address = px.cfg.discovery_address,
            .wait_s = px.cfg.discovery_wait_s,
            .connect_timeout_ms = px.cfg.connect_timeout_ms,
            .apply = discovery_apply,
            .ctx = &px,
        };
        rc = px_discovery_start(&dopts, &disc, &err);
    }
    if (rc) {
        ns_log(NS_LOG_ERROR, "cannot start", "error", err.msg, NULL);
        px_workers_drain(&px);
        px_workers_destroy(&px);
        px_admin_stop(admin);
        return 1;
    }
    atomic_store(&px.ready, true);
    char nw[16], ports[48];
    snprintf(nw, sizeof(nw), "%u", px.nworkers);
    snprintf(ports, sizeof(ports), "%u,%u,%u", px.cfg.outbound_port, px.cfg.inbound_port,
             px.cfg.admin_port);
    const char *routes = px.cfg.discovery_address[0] ? px.cfg.discovery_address
                         : px.cfg.routes_file[0]     ? px.cfg.routes_file
                                                     : "none";
    ns_log(NS_LOG_INFO, "nutshell-proxy ready", "version", NUTSHELL_VERSION, "workers", nw, "ports",
           ports, "splice", px.cfg.splice ? "on" : "off", "routes", routes, NULL);

    int status = 0;
    for (;;) {
        px_loop_poll(&m.loop, 200);
        px_admin_collect(admin);
        if (!m.draining)
            continue;
        if (atomic_load(&px.running) == 0)
            break;
        /* Workers enforce the drain timeout themselves; this is the backstop. */
        if (px_now_ms() - m.drain_started_ms > px.cfg.drain_timeout_ms + 5000) {
            ns_log(NS_LOG_ERROR, "workers did not finish draining; exiting", NULL);
            status = 1;
            fflush(stderr);
            _exit(status);
        }
    }
    /* The discovery thread hands tables to the workers: it goes first. */
    px_discovery_stop(disc);
    px_workers_destroy(&px);
    px_admin_stop(admin);
    close(m.sig.fd);
    close(px.main_wake_fd);
    px_loop_close(&m.loop);
    ns_log(NS_LOG_INFO, "drained; exiting", NULL);
    return status;
}

/* `nutshell-proxy wait`: polls the local /healthz/ready until it answers 200, for a
 * postStart hook that holds the app until the proxy is up. */
static int wait_ready(int argc, char **argv)
{
    int64_t timeout_ms = 60000;
    uint16_t port = 15020;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--timeout=", 10) == 0) {
            if (px_parse_duration_ms(a + 10, &timeout_ms) != 0) {
                fprintf(stderr, "nutshell-proxy wait: --timeout: \"%s\" is not a duration\n",
                        a + 10);
                return 2;
            }
        } else if (strncmp(a, "--admin-port=", 13) == 0) {
            if (ns_parse_port(a + 13, &port) != 0) {
                fprintf(stderr, "nutshell-proxy wait: --admin-port: \"%s\" is not a port\n",
                        a + 13);
                return 2;
            }
        } else {
            fprintf(stderr, "nutshell-proxy wait: unknown argument %s\n", a);
            return 2;
        }
    }
    struct sockaddr_storage dst;
    px_addr_parse("127.0.0.1", port, &dst);
    int64_t deadline = px_now_ms() + timeout_ms;
    do {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&dst, px_addr_len(&dst)) == 0) {
            static const char req[] =
                "GET /healthz/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
            char resp[64] = {0};
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof(req) - 1) &&
                poll(&pfd, 1, 1000) == 1 && recv(fd, resp, sizeof(resp) - 1, 0) > 12 &&
                strncmp(resp + 9, "200", 3) == 0) {
                close(fd);
                return 0;
            }
        }
        if (fd >= 0)
            close(fd);
        usleep(100 * 1000);
    } while (px_now_ms() < deadline);
    fprintf(stderr, "nutshell-proxy wait: not ready on 127.0.0.1:%u after %lld ms\n", port,
            (long long)timeout_ms);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "wait") == 0)
        return wait_ready(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0)) {
        printf("nutshell-proxy %s\n", NUTSHELL_VERSION);
        return 0;
    }
    return serve(argc, argv);
}

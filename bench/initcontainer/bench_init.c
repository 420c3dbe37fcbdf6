/* bench_init.c - time to program the default capture rule set: libiptc vs iptables-restore.
 *
 * Compares, in the same run and on the same machine, the three ways to get the injector's
 * default rule set into a pod's nat table:
 *   libiptc      nutshell-init's code path in-process (kernel preflight + one commit per table)
 *   nutshell-init  the whole binary, fork+exec included (what the pod's init container costs)
 *   restore      `iptables-legacy-restore --noflush` fed the same rules as text (what
 *                istio-iptables does), fork+exec included
 * each for IPv4 only and for dual stack (IPv4 + IPv6). Every sample runs in a fresh network
 * namespace made by unshare(2) in a forked child ("cold", as in a new pod), or in one reused
 * namespace whose Nutshell rules are removed between samples ("warm"). Namespace creation is
 * not timed. Root only; nothing outside the throwaway namespaces is touched.
 *
 * Usage: bench_initcontainer [-n ITERATIONS (1..2000, default 100)] [--gap-ms MS (0..1000,
 *        default 0)] [--settle-ms MS (0..1000, default 20)] [--init PATH]
 * --gap-ms sleeps (untimed) between iterations, so that the kernel's asynchronous teardown of
 * the previous samples' namespaces does not compete with the next sample.
 * --settle-ms sleeps (untimed) in each fresh namespace before a cold sample: a container
 * runtime creates the pod's namespace well before the init container starts, so the work the
 * kernel does for a new namespace is normally over by then (default 20).
 */
#include "config.h"
#include "extcheck.h"
#include "ip6tc_apply.h"
#include "iptc_apply.h"
#include "plan.h"
#include "render.h"
#include "strconv.h"
#include "table.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef NSI_INIT_PATH
#define NSI_INIT_PATH "nutshell-init"
#endif

#define MAX_ITER        2000
#define TIME_BUDGET_S   300.0 /* stop early rather than run for ever on a slow machine */
#define CHILD_TIMEOUT_S 10

static char *const injector_args[] = {
    "--proxy-port=15001",         "--inbound-port=15006",
    "--proxy-uid=1337",           "--proxy-gid=1337",
    "--include-inbound-ports=*",  "--exclude-inbound-ports=15020,15090",
    "--include-outbound-cidrs=*", "--exclude-outbound-cidrs=",
    "--exclude-outbound-ports=",  "--include-outbound-ports=",
};
#define N_INJECTOR_ARGS (sizeof(injector_args) / sizeof(injector_args[0]))

typedef enum mode {
    MODE_LIBIPTC,
    MODE_BINARY,
    MODE_RESTORE,
    MODE_TRUE, /* fork+exec of /bin/true: the floor under any out-of-process method */
    MODE_COUNT_,
} mode;

static const char *const mode_names[MODE_COUNT_] = {
    "libiptc, in-process",
    "nutshell-init binary",
    "iptables-legacy-restore",
    "(fork+exec /bin/true)",
};

typedef struct bench {
    const char *init_path;
    nsi_plan v4, v6;
    char *text4, *text6; /* iptables-restore input */
} bench;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Runs argv with `input` on stdin (NULL: /dev/null) and stdout/stderr discarded; returns the
 * exit status or -1. Killed after CHILD_TIMEOUT_S so that a hung tool cannot hang the bench. */
static int run(char *const argv[], const char *input)
{
    int fds[2] = {-1, -1};
    if (input && pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(input ? fds[0] : devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        alarm(CHILD_TIMEOUT_S);
        execvp(argv[0], argv);
        _exit(127);
    }
    if (input) {
        close(fds[0]);
        size_t len = strlen(input), off = 0;
        while (off < len) {
            ssize_t w = write(fds[1], input + off, len - off);
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        close(fds[1]);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Programs the rule set once with `m`; returns 0 on success. */
static int program(const bench *b, mode m, bool dual)
{
    ns_err err = {0};
    switch (m) {
    case MODE_LIBIPTC: {
        /* What nutshell-init does after parsing: preflight, then one commit per table. */
        if (nsi_extcheck(AF_INET, &err) || (dual && nsi_extcheck(AF_INET6, &err)))
            return -1;
        if (nsi_table_sync(&nsi_iptc4_ops, &b->v4, &err))
            return -1;
        if (dual && nsi_table_sync(&nsi_iptc6_ops, &b->v6, &err))
            return -1;
        return 0;
    }
    case MODE_BINARY: {
        char *argv[N_INJECTOR_ARGS + 3];
        size_t n = 0;
        argv[n++] = (char *)b->init_path;
        for (size_t i = 0; i < N_INJECTOR_ARGS; i++)
            argv[n++] = injector_args[i];
        argv[n++] = dual ? "--ipv6=on" : "--ipv6=off";
        argv[n] = NULL;
        return run(argv, NULL) == 0 ? 0 : -1;
    }
    case MODE_RESTORE: {
        char *argv4[] = {"iptables-legacy-restore", "--noflush", NULL};
        char *argv6[] = {"ip6tables-legacy-restore", "--noflush", NULL};
        if (run(argv4, b->text4) != 0)
            return -1;
        if (dual && run(argv6, b->text6) != 0)
            return -1;
        return 0;
    }
    case MODE_TRUE: {
        char *argv[] = {"/bin/true", NULL};
        return run(argv, NULL) == 0 ? 0 : -1;
    }
    default:
        return -1;
    }
}

/* Removes our rules (untimed) so that the next warm sample starts from an empty table. */
static int reset(bool dual)
{
    ns_err err = {0};
    if (nsi_table_sync(&nsi_iptc4_ops, NULL, &err))
        return -1;
    if (dual && nsi_table_sync(&nsi_iptc6_ops, NULL, &err))
        return -1;
    return 0;
}

/* Counts the rules of one family's nat table that belong to Nutshell, through libiptc's
 * reader (for the correctness check after each method). */
static long count_own_rules(const nsi_iptc_ops *ops)
{
    void *h = ops->init("nat");
    if (!h)
        return -1;
    long n = 0;
    for (int c = 0; c < NSI_CHAIN_COUNT_; c++) {
        const char *name = nsi_chain_name((nsi_chain)c);
        if (!ops->is_chain(name, h))
            continue;
        for (const char *t = ops->first_rule_target(name, h); t; t = ops->next_rule_target(h))
            if (!nsi_chain_is_builtin((nsi_chain)c) || nsi_is_own_chain_name(t))
                n++;
    }
    ops->free(h);
    return n;
}

/* One cold sample: a child in a brand-new network namespace programs the rules and reports
 * the elapsed time (and whether the result was complete) through a pipe. */
static int cold_sample(const bench *b, mode m, bool dual, bool verify, int settle_ms, double *ms)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fds[0]);
        double r[2] = {-1, 0};
        if (unshare(CLONE_NEWNET) == 0) {
            if (settle_ms)
                nanosleep(&(struct timespec){.tv_nsec = settle_ms * 1000000L}, NULL);
            double t0 = now_ms();
            int rc = program(b, m, dual);
            r[0] = rc == 0 ? now_ms() - t0 : -1;
            if (rc == 0 && verify && m != MODE_TRUE) {
                long n4 = count_own_rules(&nsi_iptc4_ops);
                long n6 = dual ? count_own_rules(&nsi_iptc6_ops) : 0;
                r[1] = (n4 == (long)b->v4.n && (!dual || n6 == (long)b->v6.n)) ? 1 : -1;
            }
        }
        (void)!write(fds[1], r, sizeof(r));
        _exit(0);
    }
    close(fds[1]);
    double r[2] = {-1, 0};
    ssize_t got = read(fds[0], r, sizeof(r));
    close(fds[0]);
    waitpid(pid, NULL, 0);
    if (got != (ssize_t)sizeof(r) || r[0] < 0 || r[1] < 0)
        return -1;
    *ms = r[0];
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples. */
static double pct(const double *s, int n, double p)
{
    int rank = (int)(p / 100.0 * n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return s[rank - 1];
}

static void print_machine(void)
{
    struct utsname u;
    uname(&u);
    char model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *colon = strchr(line, ':');
                if (colon) {
                    snprintf(model, sizeof(model), "%s", colon + 2);
                    model[strcspn(model, "\n")] = '\0';
                }
                break;
            }
        }
        fclose(f);
    }
    printf("machine: %s %s %s | cpu: %s | cores: %ld\n", u.sysname, u.release, u.machine, model,
           sysconf(_SC_NPROCESSORS_ONLN));
}

int main(int argc, char **argv)
{
    int iters = 100, gap_ms = 0, settle_ms = 20;
    bench b = {.init_path = NSI_INIT_PATH};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            int64_t v;
            if (ns_parse_i64(argv[++i], 1, MAX_ITER, &v) != 0) {
                fprintf(stderr, "-n must be 1..%d\n", MAX_ITER);
                return 2;
            }
            iters = (int)v;
        } else if (strcmp(argv[i], "--gap-ms") == 0 && i + 1 < argc) {
            int64_t v;
            if (ns_parse_i64(argv[++i], 0, 1000, &v) != 0) {
                fprintf(stderr, "--gap-ms must be 0..1000\n");
                return 2;
            }
            gap_ms = (int)v;
        } else if (strcmp(argv[i], "--settle-ms") == 0 && i + 1 < argc) {
            int64_t v;
            if (ns_parse_i64(argv[++i], 0, 1000, &v) != 0) {
                fprintf(stderr, "--settle-ms must be 0..1000\n");
                return 2;
            }
            settle_ms = (int)v;
        } else if (strcmp(argv[i], "--init") == 0 && i + 1 < argc) {
            b.init_path = argv[++i];
        } else {
            fprintf(stderr,
                    "usage: %s [-n ITERATIONS] [--gap-ms MS] [--settle-ms MS] [--init PATH]\n",
                    argv[0]);
            return 2;
        }
    }
    if (geteuid() != 0) {
        fprintf(stderr, "bench_initcontainer: needs root (network namespaces, iptables)\n");
        return 77;
    }

    nsi_config cfg;
    nsi_config_defaults(&cfg);
    char *pargv[N_INJECTOR_ARGS + 1];
    pargv[0] = "bench";
    for (size_t i = 0; i < N_INJECTOR_ARGS; i++)
        pargv[i + 1] = injector_args[i];
    ns_err err = {0};
    if (nsi_config_parse(&cfg, (int)N_INJECTOR_ARGS + 1, pargv, NULL, NULL, &err) != 0 ||
        nsi_plan_build(&cfg, AF_INET, &b.v4) != 0 || nsi_plan_build(&cfg, AF_INET6, &b.v6) != 0) {
        fprintf(stderr, "cannot plan the default rule set: %s\n", err.msg);
        return 1;
    }
    ns_buf t;
    ns_buf_init(&t);
    nsi_render_table(&b.v4, &t);
    b.text4 = ns_buf_take(&t);
    nsi_render_table(&b.v6, &t);
    b.text6 = ns_buf_take(&t);
    if (!b.text4 || !b.text6)
        return 1;

    /* The warm runs share one throwaway namespace: this process's own. */
    if (unshare(CLONE_NEWNET) != 0) {
        perror("unshare(CLONE_NEWNET)");
        return 1;
    }

    print_machine();
    printf("rule set: injector defaults (%zu IPv4 rules, %zu IPv6 rules), %d iterations per "
           "row, %d ms gap, %d ms settle, nutshell-init at %s\n",
           b.v4.n, b.v6.n, iters, gap_ms, settle_ms, b.init_path);
    printf("%-6s %-10s %-26s %6s %10s %10s %10s %10s\n", "state", "tables", "method", "n",
           "median_ms", "p99_ms", "min_ms", "max_ms");

    /* Methods take turns within each iteration, so that background work (namespace teardown,
     * RCU) falls on all of them alike. */
    double *samples[MODE_COUNT_];
    for (int m = 0; m < MODE_COUNT_; m++)
        samples[m] = calloc((size_t)iters, sizeof(double));
    double start = now_ms();
    int failures = 0;
    for (int cold = 1; cold >= 0; cold--) {
        for (int dual = 0; dual <= 1; dual++) {
            int n[MODE_COUNT_] = {0};
            bool broken[MODE_COUNT_] = {false};
            for (int i = 0; i < iters && (now_ms() - start) / 1e3 < TIME_BUDGET_S; i++) {
                if (gap_ms)
                    nanosleep(&(struct timespec){.tv_nsec = gap_ms * 1000000L}, NULL);
                for (int m = 0; m < MODE_COUNT_; m++) {
                    if (broken[m])
                        continue;
                    double ms = 0;
                    int rc;
                    if (cold) {
                        rc = cold_sample(&b, (mode)m, dual, i == 0, settle_ms, &ms);
                    } else if (reset(dual) != 0) {
                        rc = -1;
                    } else {
                        double t0 = now_ms();
                        rc = program(&b, (mode)m, dual);
                        ms = now_ms() - t0;
                        if (rc == 0 && i == 0 && m != MODE_TRUE &&
                            (count_own_rules(&nsi_iptc4_ops) != (long)b.v4.n ||
                             (dual && count_own_rules(&nsi_iptc6_ops) != (long)b.v6.n)))
                            rc = -1;
                    }
                    if (rc != 0) {
                        failures++;
                        broken[m] = true;
                        fprintf(stderr, "sample failed: %s %s %s\n", cold ? "cold" : "warm",
                                dual ? "ipv4+ipv6" : "ipv4", mode_names[m]);
                        continue;
                    }
                    samples[m][n[m]++] = ms;
                }
            }
            for (int m = 0; m < MODE_COUNT_; m++) {
                if (n[m] == 0)
                    continue;
                qsort(samples[m], (size_t)n[m], sizeof(double), cmp_double);
                printf("%-6s %-10s %-26s %6d %10.3f %10.3f %10.3f %10.3f\n", cold ? "cold" : "warm",
                       dual ? "ipv4+ipv6" : "ipv4", mode_names[m], n[m], pct(samples[m], n[m], 50),
                       pct(samples[m], n[m], 99), samples[m][0], samples[m][n[m] - 1]);
            }
            fflush(stdout);
        }
    }
    reset(true);
    for (int m = 0; m < MODE_COUNT_; m++)
        free(samples[m]);
    free(b.text4);
    free(b.text6);
    nsi_plan_free(&b.v4);
    nsi_plan_free(&b.v6);
    return failures ? 1 : 0;
}

/* bench_util.c - clocks, the machine line, /proc memory figures and percentiles. */
#include "bench_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

double bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

double bench_epoch_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The value of the first "key: value" line of `path` whose key is `key`, trimmed. */
static void proc_field(const char *path, const char *key, char *out, size_t outlen)
{
    char line[512];
    size_t kl = strlen(key);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (colon && strncmp(line, key, kl) == 0 &&
            (line[kl] == ':' || line[kl] == ' ' || line[kl] == '\t')) {
            char *v = colon + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            v[strcspn(v, "\n")] = '\0';
            snprintf(out, outlen, "%s", v);
            break;
        }
    }
    if (f)
        fclose(f);
}

void bench_print_machine(void)
{
    struct utsname u;
    char cpu[200] = "unknown", mem[64] = "";
    proc_field("/proc/cpuinfo", "model name", cpu, sizeof cpu);
    proc_field("/proc/meminfo", "MemTotal", mem, sizeof mem);
    char *end = NULL;
    errno = 0;
    long kb = strtol(mem, &end, 10);
    if (errno || end == mem)
        kb = -1;
    if (uname(&u) != 0)
        memset(&u, 0, sizeof u);
    printf("machine: %s %s %s; %s; %ld cores; %.0f MiB RAM\n", u.sysname, u.release, u.machine, cpu,
           sysconf(_SC_NPROCESSORS_ONLN), kb > 0 ? (double)kb / 1024.0 : -1.0);
}

long bench_proc_status_kb(long pid, const char *field)
{
    char path[64], line[256];
    size_t fl = strlen(field);
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            char *end = NULL;
            errno = 0;
            kb = strtol(line + fl + 1, &end, 10);
            if (errno || end == line + fl + 1)
                kb = -1;
            break;
        }
    }
    fclose(f);
    return kb;
}

void bench_print_rss(long pid, const char *label)
{
    long rss = bench_proc_status_kb(pid, "VmRSS"), hwm = bench_proc_status_kb(pid, "VmHWM");
    printf("rss %s: pid %ld VmRSS %.1f MiB (%ld kB), VmHWM %.1f MiB (%ld kB)\n", label, pid,
           (double)rss / 1024.0, rss, (double)hwm / 1024.0, hwm);
}

void bench_deadline_ts(long ms, struct timespec *ts)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_pct(const double *sorted, long n, double p)
{
    long r = (long)(p / 100.0 * (double)n + 0.999999); /* nearest rank */
    if (r < 1)
        r = 1;
    if (r > n)
        r = n;
    return sorted[r - 1];
}

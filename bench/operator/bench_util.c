/* bench_util.c - clocks, the machine line, /proc memory figures and percentiles. */
#include "bench_util.h"

#include "sysinfo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* MemTotal of /proc/meminfo in kB, or -1. */
static long mem_total_kb(void)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "MemTotal:", 9) == 0) {
            char *end = NULL;
            errno = 0;
            kb = strtol(line + 9, &end, 10);
            if (errno || end == line + 9)
                kb = -1;
            break;
        }
    }
    if (f)
        fclose(f);
    return kb;
}

void bench_print_machine(void)
{
    struct nbi_machine m;
    nbi_machine_read(&m);
    long kb = mem_total_kb();
    printf("machine: %s; %s; %ld cores; %.0f MiB RAM\n", m.uname, m.cpu, m.cores,
           kb > 0 ? (double)kb / 1024.0 : -1.0);
}

void bench_print_rss(long pid, const char *label)
{
    long rss = nbi_proc_status_kb(pid, "VmRSS"), hwm = nbi_proc_status_kb(pid, "VmHWM");
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

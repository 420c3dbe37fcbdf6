/* bench_util.h - what every nutshell-bench-operator mode shares: clocks, the machine line,
 * /proc memory figures (with sysinfo.h) and percentiles. */
#ifndef BENCH_OPERATOR_UTIL_H
#define BENCH_OPERATOR_UTIL_H

#include <time.h>

/* CLOCK_MONOTONIC in milliseconds. */
double bench_now_ms(void);

/* CLOCK_REALTIME in milliseconds (comparable with `date +%s%3N`). */
double bench_epoch_ms(void);

/* "machine: Linux 6.1.0 x86_64; CPU model; N cores; M MiB RAM" on stdout. */
void bench_print_machine(void);

/* "rss LABEL: pid P VmRSS ... VmHWM ..." on stdout. */
void bench_print_rss(long pid, const char *label);

/* An absolute CLOCK_REALTIME deadline `ms` from now, for pthread_cond_timedwait. */
void bench_deadline_ts(long ms, struct timespec *ts);

/* qsort comparator for doubles, ascending. */
int bench_cmp_double(const void *a, const void *b);

/* The nearest-rank percentile `p` (0-100) of `n` sorted values (n > 0). */
double bench_pct(const double *sorted, long n, double p);

#endif

/* sysinfo.c - the machine and /proc/PID figures (see sysinfo.h). */
#include "sysinfo.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

void nbi_machine_read(struct nbi_machine *m)
{
    struct utsname u;
    FILE *f;
    char line[512];
    cpu_set_t set;

    snprintf(m->uname, sizeof m->uname, "unknown");
    snprintf(m->cpu, sizeof m->cpu, "unknown");
    if (uname(&u) == 0)
        snprintf(m->uname, sizeof m->uname, "%s %s %s", u.sysname, u.release, u.machine);
    f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            char *v = colon + 1;
            size_t l;
            while (*v == ' ' || *v == '\t')
                v++;
            l = strcspn(v, "\n");
            v[l] = '\0';
            snprintf(m->cpu, sizeof m->cpu, "%s", v);
            break;
        }
    }
    if (f)
        fclose(f);
    m->cores = sysconf(_SC_NPROCESSORS_ONLN);
    m->usable = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)m->cores;
}

/* Reads a "Name:   123 kB" field of /proc/PID/status. Returns kB, or -1. */
long nbi_proc_status_kb(long pid, const char *field)
{
    char path[64], line[256];
    size_t fl = strlen(field);
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    f = fopen(path, "r");
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

/* utime + stime of a process in seconds, or -1. */
double nbi_proc_cpu_s(long pid)
{
    char path[64], buf[1024];
    unsigned long long v[2];
    char *p;
    FILE *f;
    size_t n;

    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: start after the last
     * ')'. Then come field 3 (state) to 13, and utime (14) and stime (15) in ticks. */
    p = strrchr(buf, ')');
    if (!p)
        return -1;
    p++;
    for (int field = 3; field <= 15; field++) {
        while (*p == ' ')
            p++;
        if (field >= 14) {
            char *end = NULL;
            errno = 0;
            v[field - 14] = strtoull(p, &end, 10);
            if (errno || end == p)
                return -1;
            p = end;
        } else {
            p += strcspn(p, " ");
        }
        if (*p == '\0')
            return -1;
    }
    return (double)(v[0] + v[1]) / (double)sysconf(_SC_CLK_TCK);
}

double nbi_self_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* sysinfo.h - what the benchmarks report about the machine and the process under test:
 * uname, CPU model and cores, and /proc/PID figures (RSS, CPU time). Plain libc, so that
 * every benchmark program can link it (benchsys). */
#ifndef NBI_SYSINFO_H
#define NBI_SYSINFO_H

struct nbi_machine {
    char uname[200]; /* as `uname -srm` prints it */
    char cpu[160];   /* "model name" of /proc/cpuinfo, or "unknown" */
    long cores;      /* online */
    int usable;      /* in this process's affinity mask */
};

/* Fills *m; fields it cannot read say "unknown". */
void nbi_machine_read(struct nbi_machine *m);

/* A "Name:  123 kB" field of /proc/PID/status (VmRSS, VmHWM...) in kB, or -1 if the
 * process or the field is not there. */
long nbi_proc_status_kb(long pid, const char *field);

/* User + system CPU time of process pid in seconds (from /proc/PID/stat), or -1. */
double nbi_proc_cpu_s(long pid);

/* User + system CPU time of this process in seconds. */
double nbi_self_cpu_s(void);

#endif

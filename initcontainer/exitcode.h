/* exitcode.h - the process exit codes of nutshell-init (documented in --help and docs/init.md). */
#ifndef NSI_EXITCODE_H
#define NSI_EXITCODE_H

#include <errno.h>

/* Distinct codes so that a failing init container says what is wrong from its status alone.
 * Values are part of the public contract: never renumber, only add. */
enum nsi_exit {
    NSI_EXIT_OK = 0,         /* rules programmed, removed, or printed */
    NSI_EXIT_FAILURE = 1,    /* unexpected failure; no table was left half-programmed */
    NSI_EXIT_USAGE = 2,      /* bad flag, environment variable, port, CIDR or id */
    NSI_EXIT_PERMISSION = 3, /* no CAP_NET_ADMIN in the pod's network namespace */
    NSI_EXIT_KERNEL = 4,     /* nat table, or a needed match/target, missing in the kernel */
    NSI_EXIT_CONFLICT = 5,   /* NUTSHELL_* state owned by someone else (nftables, foreign jumps) */
    NSI_EXIT_ROLLEDBACK = 6, /* IPv6 commit failed after IPv4 succeeded; IPv4 was undone */
};

/* Maps a negative errno from the kernel-facing layers (libiptc, netlink) to an exit code. */
static inline int nsi_exit_from_errno(int rc)
{
    switch (-rc) {
    case 0:
        return NSI_EXIT_OK;
    case EPERM:
    case EACCES:
        return NSI_EXIT_PERMISSION;
    case ENOENT:
    case ENOPROTOOPT:
    case EPROTONOSUPPORT:
    case EAFNOSUPPORT:
        return NSI_EXIT_KERNEL;
    case EEXIST:
    case EMLINK:
        return NSI_EXIT_CONFLICT;
    default:
        return NSI_EXIT_FAILURE;
    }
}

#endif

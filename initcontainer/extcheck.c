/* extcheck.c - kernel support check for the tcp, owner and REDIRECT extensions. */
#include "extcheck.h"

#include "entry.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int nsi_extcheck(int family, ns_err *err)
{
    const char *tool = family == AF_INET ? "iptables" : "ip6tables";
    int fd = socket(family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) {
        int e = errno;
        if (e == EPERM || e == EACCES)
            return ns_errorf(err, -EPERM,
                             "%s: cannot open a raw socket: nutshell-init needs CAP_NET_RAW and "
                             "CAP_NET_ADMIN (%s)",
                             tool, strerror(e));
        return ns_errorf(err, -ENOENT, "%s: the kernel has no %s support (%s)", tool,
                         family == AF_INET ? "IPv4" : "IPv6", strerror(e));
    }
    int rc = 0;
    for (size_t i = 0; i < nsi_entry_extensions_n && rc == 0; i++) {
        const nsi_ext *x = &nsi_entry_extensions[i];
        struct xt_get_revision rev;
        memset(&rev, 0, sizeof(rev));
        memcpy(rev.name, x->name, strlen(x->name));
        rev.revision = x->revision;
        socklen_t len = sizeof(rev);
        int level = family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
        int opt;
        if (family == AF_INET)
            opt = x->is_target ? IPT_SO_GET_REVISION_TARGET : IPT_SO_GET_REVISION_MATCH;
        else
            opt = x->is_target ? IP6T_SO_GET_REVISION_TARGET : IP6T_SO_GET_REVISION_MATCH;
        if (getsockopt(fd, level, opt, &rev, &len) == 0)
            continue;
        int e = errno;
        const char *kind = x->is_target ? "target" : "match";
        switch (e) {
        case EPERM:
        case EACCES:
            rc = ns_errorf(err, -EPERM,
                           "%s: permission denied querying the kernel: nutshell-init needs "
                           "CAP_NET_ADMIN in the pod's network namespace",
                           tool);
            break;
        case ENOENT:
            rc = ns_errorf(err, -ENOENT,
                           "%s: the kernel has no \"%s\" %s: load the xt_%s module (needed by "
                           "the capture rules)",
                           tool, x->name, kind, x->name);
            break;
        case EPROTONOSUPPORT:
            rc = ns_errorf(err, -ENOENT,
                           "%s: the kernel's \"%s\" %s is older than revision %u, which the "
                           "rules need",
                           tool, x->name, kind, (unsigned)x->revision);
            break;
        case ENOPROTOOPT:
            rc = ns_errorf(err, -ENOENT,
                           "%s: the kernel has no legacy %s support: load the %s module", tool,
                           tool, family == AF_INET ? "ip_tables" : "ip6_tables");
            break;
        default:
            rc = ns_errorf(err, -e, "%s: cannot query the kernel for the \"%s\" %s: %s", tool,
                           x->name, kind, strerror(e));
        }
    }
    close(fd);
    return rc;
}

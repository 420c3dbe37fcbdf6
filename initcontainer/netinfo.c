/* netinfo.c - IPv6 address discovery for --ipv6=auto. */
#include "netinfo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdio.h>

bool nsi_ipv6_is_global(const struct in6_addr *a)
{
    if (IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_LINKLOCAL(a) ||
        IN6_IS_ADDR_SITELOCAL(a) || IN6_IS_ADDR_MULTICAST(a) || IN6_IS_ADDR_V4MAPPED(a))
        return false;
    return true;
}

int nsi_has_global_ipv6(char *found, size_t len)
{
    struct ifaddrs *list;
    if (getifaddrs(&list) != 0)
        return -errno;
    int rc = 0;
    for (struct ifaddrs *i = list; i && rc == 0; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET6)
            continue;
        /* Addresses on lo (such as ::6 for the proxy's passthrough) say nothing about
         * whether the pod talks IPv6 to the world. */
        if (i->ifa_flags & IFF_LOOPBACK)
            continue;
        const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)i->ifa_addr;
        if (!nsi_ipv6_is_global(&sa->sin6_addr))
            continue;
        rc = 1;
        if (found && len) {
            char text[INET6_ADDRSTRLEN];
            inet_ntop(AF_INET6, &sa->sin6_addr, text, sizeof(text));
            snprintf(found, len, "%s %s", i->ifa_name, text);
        }
    }
    freeifaddrs(list);
    return rc;
}

/* netinfo.h - what the pod's network namespace looks like (for --ipv6=auto). */
#ifndef NSI_NETINFO_H
#define NSI_NETINFO_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

/* True if `a` is what the kernel calls a global-scope address: not unspecified, loopback,
 * link-local, site-local, multicast or IPv4-mapped. Unique local addresses (fc00::/7) count as
 * global, as in `ip -6 addr show scope global`. Pure. */
bool nsi_ipv6_is_global(const struct in6_addr *a);

/* Looks for a global IPv6 address on a non-loopback interface of the current network
 * namespace. Returns 1 (and writes "ifname addr" into `found` if not NULL), 0 if there is none,
 * or a negative errno if the interfaces cannot be listed. */
int nsi_has_global_ipv6(char *found, size_t len);

#endif

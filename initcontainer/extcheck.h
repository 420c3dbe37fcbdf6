/* extcheck.h - preflight: does the kernel know every match and target the rules will use? */
#ifndef NSI_EXTCHECK_H
#define NSI_EXTCHECK_H

#include "err.h"

/* Asks the kernel (IPT_SO_GET_REVISION_* / IP6T_SO_GET_REVISION_*, which also loads modules on
 * demand) for each extension in nsi_entry_extensions, for `family` (AF_INET or AF_INET6).
 * Returns 0; -EPERM without CAP_NET_RAW/CAP_NET_ADMIN; -ENOENT naming the missing match or
 * target (or the missing ip_tables/ip6_tables support) in `err`. Touches no rule. */
int nsi_extcheck(int family, ns_err *err);

#endif

/* ip6tc_apply.h - the IPv6 binding of table.h to libip6tc. */
#ifndef NSI_IP6TC_APPLY_H
#define NSI_IP6TC_APPLY_H

#include "table.h"

/* libip6tc behind the nsi_iptc_ops vtable (family AF_INET6, name "ip6tables"). */
extern const nsi_iptc_ops nsi_iptc6_ops;

#endif

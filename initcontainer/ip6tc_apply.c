/* ip6tc_apply.c - nsi_iptc_ops over libip6tc (IPv6 nat table). */
#include "ip6tc_apply.h"

#include <libiptc/libip6tc.h>

#define TC(fn)         ip6tc_##fn
#define TC_ENTRY       struct ip6t_entry
#define TC_ENTRY_FIELD v6
#define TC_FAMILY      AF_INET6
#define TC_NAME        "ip6tables"
#define TC_OPS         nsi_iptc6_ops
#include "iptc_template.h"

/* iptc_apply.c - nsi_iptc_ops over libip4tc (IPv4 nat table). */
#include "iptc_apply.h"

#include <libiptc/libiptc.h>

#define TC(fn)         iptc_##fn
#define TC_ENTRY       struct ipt_entry
#define TC_ENTRY_FIELD v4
#define TC_FAMILY      AF_INET
#define TC_NAME        "iptables"
#define TC_OPS         nsi_iptc4_ops
#include "iptc_template.h"

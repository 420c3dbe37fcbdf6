/* iptc_apply.h - the IPv4 binding of table.h to libip4tc. */
#ifndef NSI_IPTC_APPLY_H
#define NSI_IPTC_APPLY_H

#include "table.h"

/* libip4tc behind the nsi_iptc_ops vtable (family AF_INET, name "iptables"). */
extern const nsi_iptc_ops nsi_iptc4_ops;

#endif

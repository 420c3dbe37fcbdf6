/* entry.h - one planned rule encoded as the binary ipt_entry/ip6t_entry that libiptc takes (pure).
 */
#ifndef NSI_ENTRY_H
#define NSI_ENTRY_H

#include "plan.h"

#include <limits.h>
/* glibc's net/if.h must come before the kernel headers, which then skip their own copy. */
#include <net/if.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <stddef.h>
#include <stdint.h>

/* Big enough for an ip6t_entry with a tcp and an owner match and a REDIRECT target (~350). */
#define NSI_ENTRY_MAX 512

typedef struct nsi_entry {
    size_t len; /* == next_offset of the entry */
    union {
        struct ipt_entry v4;
        struct ip6t_entry v6;
        uint64_t align_; /* entries hold 64-bit counters */
        unsigned char bytes[NSI_ENTRY_MAX];
    } u;
} nsi_entry;

/* Encodes `r` for `family` (AF_INET: struct ipt_entry, AF_INET6: struct ip6t_entry) the way
 * iptables would: "-p tcp" sets the protocol (and IP6T_F_PROTO), "--dport" adds the "tcp"
 * match (revision 0), an owner test the "owner" match (revision 1), REDIRECT the "REDIRECT"
 * target (revision 0), and jumps/RETURN a standard target named after the chain or verdict,
 * which libiptc resolves when the entry is added. Returns 0, or -EINVAL for a rule the encoder
 * cannot express (a port without -p tcp). */
int nsi_entry_build(const nsi_rule *r, int family, nsi_entry *out);

/* The matches and target this file's encoder may use, for the kernel preflight check. */
typedef struct nsi_ext {
    const char *name;
    uint8_t revision;
    int is_target;
} nsi_ext;
extern const nsi_ext nsi_entry_extensions[];
extern const size_t nsi_entry_extensions_n;

#endif

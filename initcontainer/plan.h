/* plan.h - the rule planner: nutshell-init's config in, the nat rules to install out (pure). */
#ifndef NSI_PLAN_H
#define NSI_PLAN_H

#include "config.h"
#include "strconv.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The chains a plan touches. The order of the values is iptables-save's order: built-in chains
 * in kernel order, then user chains sorted by name, which is how libiptc keeps them. */
typedef enum nsi_chain {
    NSI_CHAIN_PREROUTING = 0,
    NSI_CHAIN_INPUT,
    NSI_CHAIN_OUTPUT,
    NSI_CHAIN_POSTROUTING,
    NSI_CHAIN_INBOUND,     /* NUTSHELL_INBOUND */
    NSI_CHAIN_IN_REDIRECT, /* NUTSHELL_IN_REDIRECT */
    NSI_CHAIN_OUTBOUND,    /* NUTSHELL_OUTPUT */
    NSI_CHAIN_REDIRECT,    /* NUTSHELL_REDIRECT */
    NSI_CHAIN_COUNT_,
} nsi_chain;

#define NSI_FIRST_OWN_CHAIN NSI_CHAIN_INBOUND

/* "PREROUTING", "NUTSHELL_INBOUND", ... */
const char *nsi_chain_name(nsi_chain c);
bool nsi_chain_is_builtin(nsi_chain c);
/* True if `name` is one of the four chains Nutshell creates (exact match). */
bool nsi_is_own_chain_name(const char *name);

typedef enum nsi_target {
    NSI_TARGET_JUMP = 0, /* to rule.jump */
    NSI_TARGET_RETURN,
    NSI_TARGET_REDIRECT, /* to rule.to_port */
} nsi_target;

typedef enum nsi_owner {
    NSI_OWNER_NONE = 0,
    NSI_OWNER_UID,
    NSI_OWNER_GID,
} nsi_owner;

/* One rule, limited to what the rule set needs: addresses, "-o lo", "-p tcp", one destination
 * port, one owner match, and a jump, RETURN or REDIRECT. */
typedef struct nsi_rule {
    nsi_chain chain;
    bool has_src, src_inv;
    ns_cidr src;
    bool has_dst, dst_inv;
    ns_cidr dst;
    bool out_lo;    /* -o lo */
    bool tcp;       /* -p tcp */
    uint16_t dport; /* -m tcp [!] --dport, 0 = none (needs tcp) */
    bool dport_inv;
    nsi_owner owner; /* -m owner [!] --uid-owner/--gid-owner */
    bool owner_inv;
    uint32_t owner_id;
    nsi_target target;
    nsi_chain jump;   /* NSI_TARGET_JUMP */
    uint16_t to_port; /* NSI_TARGET_REDIRECT */
} nsi_rule;

/* The rules for one address family, in the order they are appended to their chains. */
typedef struct nsi_plan {
    int family; /* AF_INET or AF_INET6 */
    size_t n, cap;
    nsi_rule *rules; /* owned */
} nsi_plan;

/* Builds the rule set for `family` from `cfg` (Istio's istio-iptables in REDIRECT mode, with
 * Nutshell's chain names). CIDRs of the other family are skipped. Returns 0, or -ENOMEM (then
 * `out` holds nothing to free). On success the caller frees with nsi_plan_free. */
int nsi_plan_build(const nsi_config *cfg, int family, nsi_plan *out);

/* Frees the rules; accepts NULL and a zeroed plan. */
void nsi_plan_free(nsi_plan *p);

#endif

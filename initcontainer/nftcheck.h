/* nftcheck.h - refusing to run when nftables (iptables-nft) already holds NUTSHELL_* chains.
 *
 * nutshell-init programs the legacy iptables nat table. If the same namespace also has
 * NUTSHELL_* chains in nftables (from an iptables-nft based init, or a CNI doing the same job),
 * both rule sets would see every packet and connections would be redirected twice or in ways
 * no one can read from iptables-legacy-save. The check lists nftables chains over netlink
 * (NFT_MSG_GETCHAIN dump, no nft binary or libnftnl needed).
 */
#ifndef NSI_NFTCHECK_H
#define NSI_NFTCHECK_H

#include "err.h"

#include <stddef.h>

/* Called once per nftables chain; `family` is NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_INET... */
typedef void (*nsi_nft_chain_cb)(int family, const char *table, const char *chain, void *ctx);

/* Parses one datagram of an NFT_MSG_GETCHAIN dump answer (pure). Returns 1 if it ended the dump
 * (NLMSG_DONE), 0 if more datagrams follow, or the negative errno of an NLMSG_ERROR. Malformed
 * messages and attributes are skipped, never read past `len`. */
int nsi_nft_parse(const void *buf, size_t len, nsi_nft_chain_cb cb, void *ctx);

/* "ip", "ip6", "inet", ... for messages. */
const char *nsi_nft_family_name(int family);

/* Asks the kernel for the nftables chains of the current network namespace. Returns 0 if none
 * is named NUTSHELL_* (or nf_tables is not available at all), -EEXIST with `err` naming the
 * first such chain, -EPERM without CAP_NET_ADMIN, or another negative errno (with `err`) if the
 * question could not be asked. Bounded: at most a few seconds and a fixed number of reads. */
int nsi_nft_check(ns_err *err);

#endif

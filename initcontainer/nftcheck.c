/* nftcheck.c - NUTSHELL_* chains in nftables, found through a raw nfnetlink chain dump. */
#include "nftcheck.h"

#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define OWN_PREFIX "NUTSHELL_"
#define MAX_READS  4096 /* datagrams per dump; a namespace with more chains than this is absurd */

const char *nsi_nft_family_name(int family)
{
    switch (family) {
    case NFPROTO_IPV4:
        return "ip";
    case NFPROTO_IPV6:
        return "ip6";
    case NFPROTO_INET:
        return "inet";
    case NFPROTO_ARP:
        return "arp";
    case NFPROTO_BRIDGE:
        return "bridge";
    case NFPROTO_NETDEV:
        return "netdev";
    default:
        return "unknown";
    }
}

/* Copies a string attribute (NUL-terminated by the kernel, but do not trust it). */
static void attr_string(const struct nlattr *a, char *out, size_t outlen)
{
    size_t n = a->nla_len - NLA_HDRLEN;
    const char *s = (const char *)a + NLA_HDRLEN;
    size_t len = strnlen(s, n);
    if (len >= outlen)
        len = outlen - 1;
    memcpy(out, s, len);
    out[len] = '\0';
}

static void parse_chain(const struct nlmsghdr *nh, nsi_nft_chain_cb cb, void *ctx)
{
    size_t hdr = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
    if (nh->nlmsg_len < hdr)
        return;
    const struct nfgenmsg *g = (const struct nfgenmsg *)((const char *)nh + NLMSG_HDRLEN);
    char table[256] = "", chain[256] = "";
    size_t off = hdr;
    while (off + NLA_HDRLEN <= nh->nlmsg_len) {
        const struct nlattr *a = (const struct nlattr *)((const char *)nh + off);
        if (a->nla_len < NLA_HDRLEN || off + a->nla_len > nh->nlmsg_len)
            break;
        switch (a->nla_type & NLA_TYPE_MASK) {
        case NFTA_CHAIN_TABLE:
            attr_string(a, table, sizeof(table));
            break;
        case NFTA_CHAIN_NAME:
            attr_string(a, chain, sizeof(chain));
            break;
        default:
            break;
        }
        off += NLA_ALIGN(a->nla_len);
    }
    if (chain[0])
        cb(g->nfgen_family, table, chain, ctx);
}

int nsi_nft_parse(const void *buf, size_t len, nsi_nft_chain_cb cb, void *ctx)
{
    const uint16_t newchain = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWCHAIN;
    size_t off = 0;
    while (off + NLMSG_HDRLEN <= len) {
        const struct nlmsghdr *nh = (const struct nlmsghdr *)((const char *)buf + off);
        if (nh->nlmsg_len < NLMSG_HDRLEN || nh->nlmsg_len > len - off)
            return 0; /* truncated: nothing sane to read further */
        if (nh->nlmsg_type == NLMSG_DONE)
            return 1;
        if (nh->nlmsg_type == NLMSG_ERROR) {
            if (nh->nlmsg_len < NLMSG_HDRLEN + sizeof(struct nlmsgerr))
                return -EIO;
            const struct nlmsgerr *e = (const struct nlmsgerr *)NLMSG_DATA(nh);
            if (e->error != 0)
                return e->error;
        } else if (nh->nlmsg_type == newchain) {
            parse_chain(nh, cb, ctx);
        }
        off += NLMSG_ALIGN(nh->nlmsg_len);
    }
    return 0;
}

typedef struct finding {
    bool found;
    int family;
    char table[256];
    char chain[256];
} finding;

static void find_own_cb(int family, const char *table, const char *chain, void *ctx)
{
    finding *f = ctx;
    if (f->found || strncmp(chain, OWN_PREFIX, strlen(OWN_PREFIX)) != 0)
        return;
    f->found = true;
    f->family = family;
    snprintf(f->table, sizeof(f->table), "%s", table);
    snprintf(f->chain, sizeof(f->chain), "%s", chain);
}

int nsi_nft_check(ns_err *err)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fd < 0) {
        if (errno == EPROTONOSUPPORT || errno == EAFNOSUPPORT)
            return 0; /* no nfnetlink: no nftables either */
        return ns_errorf(err, -errno, "nftables check: cannot open a netlink socket: %s",
                         strerror(errno));
    }
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

    struct {
        struct nlmsghdr nh;
        struct nfgenmsg g;
    } req;
    memset(&req, 0, sizeof(req));
    req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct nfgenmsg));
    req.nh.nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN;
    req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.nh.nlmsg_seq = 1;
    req.g.nfgen_family = AF_UNSPEC;
    req.g.version = NFNETLINK_V0;

    int rc = 0;
    finding f = {0};
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(fd, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        rc = ns_errorf(err, -errno, "nftables check: cannot send the request: %s", strerror(errno));
        goto out;
    }
    /* Large enough for the kernel's dump skbs (at most 32 KiB, more with big pages). */
    char buf[65536];
    for (int reads = 0;; reads++) {
        if (reads == MAX_READS) {
            rc = ns_errorf(err, -E2BIG, "nftables check: the chain list did not end");
            goto out;
        }
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = ns_errorf(err, -errno, "nftables check: cannot read the chain list: %s",
                           strerror(errno));
            goto out;
        }
        int st = nsi_nft_parse(buf, (size_t)n, find_own_cb, &f);
        if (st == 1)
            break;
        if (st < 0) {
            /* nf_tables not built or not loadable: nothing can conflict. */
            if (st == -EOPNOTSUPP || st == -EPROTONOSUPPORT || st == -ENOENT)
                goto out;
            if (st == -EPERM) {
                rc = ns_errorf(err, -EPERM,
                               "nftables check: permission denied: nutshell-init needs "
                               "CAP_NET_ADMIN in the pod's network namespace");
                goto out;
            }
            rc = ns_errorf(err, st, "nftables check: the kernel answered: %s", strerror(-st));
            goto out;
        }
        if (n == 0)
            break;
    }
    if (f.found)
        rc = ns_errorf(err, -EEXIST,
                       "nftables already has chain %s in table %s %s (iptables-nft or another "
                       "tool programmed this pod): two rule sets would both redirect traffic; "
                       "remove them (e.g. `iptables-nft -t nat -F %s` and `-X`) or use one "
                       "backend only",
                       f.chain, nsi_nft_family_name(f.family), f.table, f.chain);
out:
    close(fd);
    return rc;
}

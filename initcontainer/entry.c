/* entry.c - binary iptables entries from planned rules (what iptables' parser would build). */
#include "entry.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/xt_owner.h>
#include <linux/netfilter/xt_tcpudp.h>
#include <string.h>

const nsi_ext nsi_entry_extensions[] = {
    {"tcp", 0, 0},
    {"owner", 1, 0},
    {"REDIRECT", 0, 1},
};
const size_t nsi_entry_extensions_n =
    sizeof(nsi_entry_extensions) / sizeof(nsi_entry_extensions[0]);

/* Appends an xt_entry_match or xt_entry_target header plus `size` bytes of data at `*off`;
 * both have the same layout (size, 29-byte name, revision). Returns a pointer to the data or
 * NULL if the entry would overflow. */
static void *put_ext(nsi_entry *e, size_t *off, const char *name, uint8_t revision,
                     const void *data, size_t size)
{
    size_t total = XT_ALIGN(sizeof(struct xt_entry_match)) + XT_ALIGN(size);
    if (*off + total > sizeof(e->u.bytes))
        return NULL;
    struct xt_entry_match *m = (struct xt_entry_match *)(e->u.bytes + *off);
    m->u.user.match_size = (uint16_t)total;
    /* Names are at most XT_EXTENSION_MAXNAMELEN-1 bytes; ours are constants well below. */
    size_t n = strlen(name);
    memcpy(m->u.user.name, name, n < XT_EXTENSION_MAXNAMELEN ? n : XT_EXTENSION_MAXNAMELEN - 1);
    m->u.user.revision = revision;
    if (size)
        memcpy(m->data, data, size);
    *off += total;
    return m->data;
}

static void v6_mask(struct in6_addr *mask, unsigned prefix)
{
    memset(mask, 0, sizeof(*mask));
    for (unsigned i = 0; i < 16 && prefix > 0; i++) {
        unsigned bits = prefix >= 8 ? 8 : prefix;
        mask->s6_addr[i] = (uint8_t)(0xff << (8 - bits));
        prefix -= bits;
    }
}

static uint32_t v4_mask(unsigned prefix)
{
    return prefix == 0 ? 0 : htonl(0xffffffffu << (32 - prefix));
}

static void fill_v4_header(const nsi_rule *r, struct ipt_entry *e)
{
    struct ipt_ip *ip = &e->ip;
    if (r->has_src) {
        ip->src = r->src.addr.v4;
        ip->smsk.s_addr = v4_mask(r->src.prefix);
        if (r->src_inv)
            ip->invflags |= IPT_INV_SRCIP;
    }
    if (r->has_dst) {
        ip->dst = r->dst.addr.v4;
        ip->dmsk.s_addr = v4_mask(r->dst.prefix);
        if (r->dst_inv)
            ip->invflags |= IPT_INV_DSTIP;
    }
    if (r->out_lo) {
        /* An exact interface name: mask covers the name and its terminating NUL. */
        memcpy(ip->outiface, "lo", 3);
        memset(ip->outiface_mask, 0xff, 3);
    }
    if (r->tcp)
        ip->proto = IPPROTO_TCP;
}

static void fill_v6_header(const nsi_rule *r, struct ip6t_entry *e)
{
    struct ip6t_ip6 *ip = &e->ipv6;
    if (r->has_src) {
        ip->src = r->src.addr.v6;
        v6_mask(&ip->smsk, r->src.prefix);
        if (r->src_inv)
            ip->invflags |= IP6T_INV_SRCIP;
    }
    if (r->has_dst) {
        ip->dst = r->dst.addr.v6;
        v6_mask(&ip->dmsk, r->dst.prefix);
        if (r->dst_inv)
            ip->invflags |= IP6T_INV_DSTIP;
    }
    if (r->out_lo) {
        memcpy(ip->outiface, "lo", 3);
        memset(ip->outiface_mask, 0xff, 3);
    }
    if (r->tcp) {
        ip->proto = IPPROTO_TCP;
        ip->flags |= IP6T_F_PROTO; /* ip6tables only checks the protocol with this flag */
    }
}

int nsi_entry_build(const nsi_rule *r, int family, nsi_entry *out)
{
    memset(out, 0, sizeof(*out));
    if (r->dport && !r->tcp)
        return -EINVAL;
    if (family != AF_INET && family != AF_INET6)
        return -EAFNOSUPPORT;

    size_t off;
    if (family == AF_INET) {
        fill_v4_header(r, &out->u.v4);
        off = sizeof(struct ipt_entry);
    } else {
        fill_v6_header(r, &out->u.v6);
        off = sizeof(struct ip6t_entry);
    }

    if (r->dport) {
        struct xt_tcp tcp = {.spts = {0, 0xffff}, .dpts = {r->dport, r->dport}};
        if (r->dport_inv)
            tcp.invflags |= XT_TCP_INV_DSTPT;
        if (!put_ext(out, &off, "tcp", 0, &tcp, sizeof(tcp)))
            return -EINVAL;
    }
    if (r->owner != NSI_OWNER_NONE) {
        struct xt_owner_match_info own = {0};
        uint8_t bit = r->owner == NSI_OWNER_UID ? XT_OWNER_UID : XT_OWNER_GID;
        if (r->owner == NSI_OWNER_UID)
            own.uid_min = own.uid_max = r->owner_id;
        else
            own.gid_min = own.gid_max = r->owner_id;
        own.match = bit;
        if (r->owner_inv)
            own.invert = bit;
        if (!put_ext(out, &off, "owner", 1, &own, sizeof(own)))
            return -EINVAL;
    }

    size_t target_offset = off;
    switch (r->target) {
    case NSI_TARGET_JUMP:
    case NSI_TARGET_RETURN: {
        /* libiptc maps the name to a verdict or a jump and fills the verdict itself. */
        int verdict = 0;
        const char *name = r->target == NSI_TARGET_RETURN ? "RETURN" : nsi_chain_name(r->jump);
        if (!put_ext(out, &off, name, 0, &verdict, sizeof(verdict)))
            return -EINVAL;
        break;
    }
    case NSI_TARGET_REDIRECT:
        if (family == AF_INET) {
            struct nf_nat_ipv4_multi_range_compat mr = {.rangesize = 1};
            mr.range[0].flags = NF_NAT_RANGE_PROTO_SPECIFIED;
            mr.range[0].min.tcp.port = mr.range[0].max.tcp.port = htons(r->to_port);
            if (!put_ext(out, &off, "REDIRECT", 0, &mr, sizeof(mr)))
                return -EINVAL;
        } else {
            struct nf_nat_range nr = {.flags = NF_NAT_RANGE_PROTO_SPECIFIED};
            nr.min_proto.tcp.port = nr.max_proto.tcp.port = htons(r->to_port);
            if (!put_ext(out, &off, "REDIRECT", 0, &nr, sizeof(nr)))
                return -EINVAL;
        }
        break;
    }

    if (family == AF_INET) {
        out->u.v4.target_offset = (uint16_t)target_offset;
        out->u.v4.next_offset = (uint16_t)off;
    } else {
        out->u.v6.target_offset = (uint16_t)target_offset;
        out->u.v6.next_offset = (uint16_t)off;
    }
    out->len = off;
    return 0;
}

/* test_entry.c - binary ipt_entry/ip6t_entry encoding of planned rules (what the kernel gets). */
#include "tests.h"

#include "entry.h"

#include <arpa/inet.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/xt_owner.h>
#include <linux/netfilter/xt_tcpudp.h>

static ns_cidr cidr(const char *s)
{
    ns_cidr c;
    CU_ASSERT_EQUAL_FATAL(ns_parse_cidr(s, &c), 0);
    return c;
}

/* The proxy-to-own-address rule: every header field, both matches and the jump. */
static void test_v4_owner_rule(void)
{
    nsi_rule r = {.chain = NSI_CHAIN_OUTBOUND,
                  .out_lo = true,
                  .has_dst = true,
                  .dst_inv = true,
                  .dst = cidr("127.0.0.1/32"),
                  .tcp = true,
                  .dport = 15008,
                  .dport_inv = true,
                  .owner = NSI_OWNER_UID,
                  .owner_id = 1337,
                  .target = NSI_TARGET_JUMP,
                  .jump = NSI_CHAIN_IN_REDIRECT};
    nsi_entry e;
    NS_ASSERT_INT_EQ(nsi_entry_build(&r, AF_INET, &e), 0);
    const struct ipt_entry *ie = &e.u.v4;
    size_t match_tcp = XT_ALIGN(sizeof(struct xt_entry_match)) + XT_ALIGN(sizeof(struct xt_tcp));
    size_t match_owner =
        XT_ALIGN(sizeof(struct xt_entry_match)) + XT_ALIGN(sizeof(struct xt_owner_match_info));
    NS_ASSERT_INT_EQ(ie->target_offset, sizeof(struct ipt_entry) + match_tcp + match_owner);
    NS_ASSERT_INT_EQ(ie->next_offset,
                     ie->target_offset + XT_ALIGN(sizeof(struct xt_standard_target)));
    NS_ASSERT_INT_EQ(e.len, ie->next_offset);
    NS_ASSERT_INT_EQ(ie->ip.proto, IPPROTO_TCP);
    NS_ASSERT_INT_EQ(ie->ip.invflags, IPT_INV_DSTIP);
    NS_ASSERT_INT_EQ(ntohl(ie->ip.dst.s_addr), 0x7f000001);
    NS_ASSERT_INT_EQ(ie->ip.dmsk.s_addr, 0xffffffffu);
    NS_ASSERT_INT_EQ(ie->ip.smsk.s_addr, 0);
    NS_ASSERT_STR_EQ(ie->ip.outiface, "lo");
    NS_ASSERT_INT_EQ(ie->ip.outiface_mask[0], 0xff);
    NS_ASSERT_INT_EQ(ie->ip.outiface_mask[2], 0xff);
    NS_ASSERT_INT_EQ(ie->ip.outiface_mask[3], 0);
    NS_ASSERT_INT_EQ(ie->ip.iniface[0], 0);

    const struct xt_entry_match *m = (const void *)ie->elems;
    NS_ASSERT_STR_EQ(m->u.user.name, "tcp");
    NS_ASSERT_INT_EQ(m->u.user.match_size, match_tcp);
    NS_ASSERT_INT_EQ(m->u.user.revision, 0);
    const struct xt_tcp *tcp = (const void *)m->data;
    NS_ASSERT_INT_EQ(tcp->spts[0], 0);
    NS_ASSERT_INT_EQ(tcp->spts[1], 0xffff);
    NS_ASSERT_INT_EQ(tcp->dpts[0], 15008); /* host order, as the kernel compares */
    NS_ASSERT_INT_EQ(tcp->dpts[1], 15008);
    NS_ASSERT_INT_EQ(tcp->invflags, XT_TCP_INV_DSTPT);

    m = (const void *)((const char *)m + m->u.user.match_size);
    NS_ASSERT_STR_EQ(m->u.user.name, "owner");
    NS_ASSERT_INT_EQ(m->u.user.revision, 1);
    const struct xt_owner_match_info *own = (const void *)m->data;
    NS_ASSERT_INT_EQ(own->uid_min, 1337);
    NS_ASSERT_INT_EQ(own->uid_max, 1337);
    NS_ASSERT_INT_EQ(own->match, XT_OWNER_UID);
    NS_ASSERT_INT_EQ(own->invert, 0);

    const struct xt_entry_target *t = (const void *)((const char *)ie + ie->target_offset);
    NS_ASSERT_STR_EQ(t->u.user.name, "NUTSHELL_IN_REDIRECT");
    NS_ASSERT_INT_EQ(t->u.user.target_size, XT_ALIGN(sizeof(struct xt_standard_target)));
}

static void test_v6_header_and_redirect(void)
{
    nsi_rule r = {.chain = NSI_CHAIN_OUTBOUND,
                  .has_src = true,
                  .src = cidr("2001:db8::/33"),
                  .tcp = true,
                  .owner = NSI_OWNER_GID,
                  .owner_inv = true,
                  .owner_id = 42,
                  .target = NSI_TARGET_REDIRECT,
                  .to_port = 15001};
    nsi_entry e;
    NS_ASSERT_INT_EQ(nsi_entry_build(&r, AF_INET6, &e), 0);
    const struct ip6t_entry *ie = &e.u.v6;
    NS_ASSERT_INT_EQ(ie->ipv6.proto, IPPROTO_TCP);
    NS_ASSERT_INT_EQ(ie->ipv6.flags, IP6T_F_PROTO);
    NS_ASSERT_INT_EQ(ie->ipv6.invflags, 0);
    NS_ASSERT_INT_EQ(ie->ipv6.smsk.s6_addr[3], 0xff);
    NS_ASSERT_INT_EQ(ie->ipv6.smsk.s6_addr[4], 0x80);
    NS_ASSERT_INT_EQ(ie->ipv6.smsk.s6_addr[5], 0);
    NS_ASSERT_INT_EQ(ie->ipv6.src.s6_addr[0], 0x20);

    const struct xt_entry_match *m = (const void *)ie->elems;
    NS_ASSERT_STR_EQ(m->u.user.name, "owner");
    const struct xt_owner_match_info *own = (const void *)m->data;
    NS_ASSERT_INT_EQ(own->gid_min, 42);
    NS_ASSERT_INT_EQ(own->match, XT_OWNER_GID);
    NS_ASSERT_INT_EQ(own->invert, XT_OWNER_GID);

    const struct xt_entry_target *t = (const void *)((const char *)ie + ie->target_offset);
    NS_ASSERT_STR_EQ(t->u.user.name, "REDIRECT");
    NS_ASSERT_INT_EQ(t->u.user.target_size, XT_ALIGN(sizeof(struct xt_entry_target)) +
                                                XT_ALIGN(sizeof(struct nf_nat_range)));
    const struct nf_nat_range *nr = (const void *)t->data;
    NS_ASSERT_INT_EQ(nr->flags, NF_NAT_RANGE_PROTO_SPECIFIED);
    NS_ASSERT_INT_EQ(ntohs(nr->min_proto.tcp.port), 15001);
    NS_ASSERT_INT_EQ(ntohs(nr->max_proto.tcp.port), 15001);
    NS_ASSERT_INT_EQ(ie->next_offset, e.len);
}

static void test_v4_redirect_and_return(void)
{
    nsi_rule r = {.chain = NSI_CHAIN_IN_REDIRECT,
                  .tcp = true,
                  .target = NSI_TARGET_REDIRECT,
                  .to_port = 15006};
    nsi_entry e;
    NS_ASSERT_INT_EQ(nsi_entry_build(&r, AF_INET, &e), 0);
    NS_ASSERT_INT_EQ(e.u.v4.target_offset, sizeof(struct ipt_entry));
    const struct xt_entry_target *t = (const void *)e.u.v4.elems;
    NS_ASSERT_STR_EQ(t->u.user.name, "REDIRECT");
    const struct nf_nat_ipv4_multi_range_compat *mr = (const void *)t->data;
    NS_ASSERT_INT_EQ(mr->rangesize, 1);
    NS_ASSERT_INT_EQ(mr->range[0].flags, NF_NAT_RANGE_PROTO_SPECIFIED);
    NS_ASSERT_INT_EQ(ntohs(mr->range[0].min.tcp.port), 15006);

    r = (nsi_rule){.chain = NSI_CHAIN_OUTBOUND,
                   .has_src = true,
                   .src = cidr("127.0.0.6/32"),
                   .out_lo = true,
                   .target = NSI_TARGET_RETURN};
    NS_ASSERT_INT_EQ(nsi_entry_build(&r, AF_INET, &e), 0);
    NS_ASSERT_INT_EQ(e.u.v4.ip.proto, 0);
    NS_ASSERT_INT_EQ(ntohl(e.u.v4.ip.src.s_addr), 0x7f000006);
    t = (const void *)e.u.v4.elems;
    NS_ASSERT_STR_EQ(t->u.user.name, "RETURN");
}

static void test_rejects(void)
{
    nsi_entry e;
    nsi_rule r = {.chain = NSI_CHAIN_OUTBOUND, .dport = 80, .target = NSI_TARGET_RETURN};
    NS_ASSERT_INT_EQ(nsi_entry_build(&r, AF_INET, &e), -EINVAL); /* --dport needs -p tcp */
    r.tcp = true;
    NS_ASSERT_INT_EQ(nsi_entry_build(&r, AF_UNIX, &e), -EAFNOSUPPORT);
}

/* Every rule of a large dual-stack plan fits and is self-consistent. */
static void test_every_planned_rule_encodes(void)
{
    nsi_config c;
    nsi_config_defaults(&c);
    char *argv[] = {"nutshell-init",
                    "-u",
                    "1,2,3",
                    "-x",
                    "10.0.0.0/8,fd00::/8",
                    "-o",
                    "22,25",
                    "-q",
                    "443",
                    "--inbound-tunnel-port=15008",
                    NULL};
    ns_err err;
    NS_ASSERT_INT_EQ(nsi_config_parse(&c, 10, argv, NULL, NULL, &err), 0);
    for (int f = 0; f < 2; f++) {
        int family = f ? AF_INET6 : AF_INET;
        nsi_plan p;
        CU_ASSERT_EQUAL_FATAL(nsi_plan_build(&c, family, &p), 0);
        for (size_t i = 0; i < p.n; i++) {
            nsi_entry e;
            NS_ASSERT_INT_EQ(nsi_entry_build(&p.rules[i], family, &e), 0);
            CU_ASSERT_TRUE(e.len <= NSI_ENTRY_MAX);
            CU_ASSERT_EQUAL(e.len % 8, 0);
        }
        nsi_plan_free(&p);
    }
}

const ns_test nsi_entry_tests[] = {
    {"v4 owner rule", test_v4_owner_rule},
    {"v6 header and REDIRECT", test_v6_header_and_redirect},
    {"v4 REDIRECT and RETURN", test_v4_redirect_and_return},
    {"rejects", test_rejects},
    {"every planned rule encodes", test_every_planned_rule_encodes},
    {NULL, NULL},
};

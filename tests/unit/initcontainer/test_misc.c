/* test_misc.c - the nftables dump parser, IPv6 scope classification and exit code mapping. */
#include "tests.h"

#include "exitcode.h"
#include "netinfo.h"
#include "nftcheck.h"

#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <stdint.h>

static size_t put_attr(char *buf, size_t off, uint16_t type, const void *data, size_t len)
{
    struct nlattr a = {.nla_len = (uint16_t)(NLA_HDRLEN + len), .nla_type = type};
    memcpy(buf + off, &a, sizeof(a));
    memcpy(buf + off + NLA_HDRLEN, data, len);
    size_t end = off + NLA_ALIGN(a.nla_len);
    memset(buf + off + a.nla_len, 0, end - off - a.nla_len);
    return end;
}

/* Appends one NFT_MSG_NEWCHAIN message as the kernel sends it in a dump. */
static size_t put_chain(char *buf, size_t off, int family, const char *table, const char *chain)
{
    size_t start = off;
    struct nlmsghdr nh = {.nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWCHAIN,
                          .nlmsg_flags = NLM_F_MULTI};
    struct nfgenmsg g = {.nfgen_family = (uint8_t)family, .version = NFNETLINK_V0};
    off += NLMSG_HDRLEN;
    memcpy(buf + off, &g, sizeof(g));
    off += NLMSG_ALIGN(sizeof(g));
    off = put_attr(buf, off, NFTA_CHAIN_TABLE, table, strlen(table) + 1);
    uint64_t handle = 42;
    off = put_attr(buf, off, NFTA_CHAIN_HANDLE, &handle, sizeof(handle));
    off = put_attr(buf, off, NFTA_CHAIN_NAME, chain, strlen(chain) + 1);
    nh.nlmsg_len = (uint32_t)(off - start);
    memcpy(buf + start, &nh, sizeof(nh));
    return off;
}

static size_t put_done(char *buf, size_t off)
{
    struct nlmsghdr nh = {.nlmsg_len = NLMSG_LENGTH(sizeof(int)), .nlmsg_type = NLMSG_DONE};
    memcpy(buf + off, &nh, sizeof(nh));
    memset(buf + off + NLMSG_HDRLEN, 0, sizeof(int));
    return off + NLMSG_ALIGN(nh.nlmsg_len);
}

typedef struct seen {
    int n;
    char last[128];
} seen;

static void seen_cb(int family, const char *table, const char *chain, void *ctx)
{
    seen *s = ctx;
    s->n++;
    snprintf(s->last, sizeof(s->last), "%s/%s/%s", nsi_nft_family_name(family), table, chain);
}

static void test_nft_parse(void)
{
    _Alignas(4) char buf[1024];
    size_t off = put_chain(buf, 0, NFPROTO_IPV4, "nat", "PREROUTING");
    off = put_chain(buf, off, NFPROTO_IPV4, "nat", "NUTSHELL_OUTPUT");
    seen s = {0};
    NS_ASSERT_INT_EQ(nsi_nft_parse(buf, off, seen_cb, &s), 0); /* more to come */
    NS_ASSERT_INT_EQ(s.n, 2);
    NS_ASSERT_STR_EQ(s.last, "ip/nat/NUTSHELL_OUTPUT");

    off = put_chain(buf, 0, NFPROTO_IPV6, "nat", "OUTPUT");
    off = put_done(buf, off);
    s = (seen){0};
    NS_ASSERT_INT_EQ(nsi_nft_parse(buf, off, seen_cb, &s), 1); /* end of dump */
    NS_ASSERT_STR_EQ(s.last, "ip6/nat/OUTPUT");

    /* Truncated input: whatever was complete is reported, nothing is read past the end. */
    off = put_chain(buf, 0, NFPROTO_INET, "filter", "input");
    for (size_t cut = 0; cut < off; cut++) {
        s = (seen){0};
        NS_ASSERT_INT_EQ(nsi_nft_parse(buf, cut, seen_cb, &s), 0);
        NS_ASSERT_INT_EQ(s.n, 0);
    }
    /* An attribute claiming more than its message holds is dropped, not followed. */
    off = put_chain(buf, 0, NFPROTO_IPV4, "nat", "X");
    struct nlattr *first = (struct nlattr *)(buf + NLMSG_HDRLEN + NLMSG_ALIGN(4));
    first->nla_len = 0xffff;
    s = (seen){0};
    NS_ASSERT_INT_EQ(nsi_nft_parse(buf, off, seen_cb, &s), 0);
    NS_ASSERT_INT_EQ(s.n, 0);
}

static void test_nft_error(void)
{
    _Alignas(4) char buf[64];
    struct nlmsghdr nh = {.nlmsg_len = NLMSG_LENGTH(sizeof(struct nlmsgerr)),
                          .nlmsg_type = NLMSG_ERROR};
    struct nlmsgerr e = {.error = -EPERM};
    memcpy(buf, &nh, sizeof(nh));
    memcpy(buf + NLMSG_HDRLEN, &e, sizeof(e));
    seen s = {0};
    NS_ASSERT_INT_EQ(nsi_nft_parse(buf, nh.nlmsg_len, seen_cb, &s), -EPERM);
    /* An error record too short to hold the error is itself an error. */
    NS_ASSERT_INT_EQ(nsi_nft_parse(buf, NLMSG_HDRLEN + 4, seen_cb, &s), 0);
    ((struct nlmsghdr *)buf)->nlmsg_len = NLMSG_HDRLEN + 4;
    NS_ASSERT_INT_EQ(nsi_nft_parse(buf, NLMSG_HDRLEN + 4, seen_cb, &s), -EIO);
}

static bool global(const char *text)
{
    struct in6_addr a;
    CU_ASSERT_EQUAL_FATAL(inet_pton(AF_INET6, text, &a), 1);
    return nsi_ipv6_is_global(&a);
}

static void test_ipv6_scope(void)
{
    CU_ASSERT_TRUE(global("2001:db8::1"));
    CU_ASSERT_TRUE(global("fd00:10:244::5")); /* ULA: what most dual-stack clusters use */
    CU_ASSERT_FALSE(global("::1"));
    CU_ASSERT_FALSE(global("::"));
    CU_ASSERT_FALSE(global("fe80::1"));
    CU_ASSERT_FALSE(global("fec0::1"));
    CU_ASSERT_FALSE(global("ff02::1"));
    CU_ASSERT_FALSE(global("::ffff:10.0.0.1"));
}

static void test_exit_codes(void)
{
    NS_ASSERT_INT_EQ(nsi_exit_from_errno(0), NSI_EXIT_OK);
    NS_ASSERT_INT_EQ(nsi_exit_from_errno(-EPERM), NSI_EXIT_PERMISSION);
    NS_ASSERT_INT_EQ(nsi_exit_from_errno(-EACCES), NSI_EXIT_PERMISSION);
    NS_ASSERT_INT_EQ(nsi_exit_from_errno(-ENOENT), NSI_EXIT_KERNEL);
    NS_ASSERT_INT_EQ(nsi_exit_from_errno(-ENOPROTOOPT), NSI_EXIT_KERNEL);
    NS_ASSERT_INT_EQ(nsi_exit_from_errno(-EEXIST), NSI_EXIT_CONFLICT);
    NS_ASSERT_INT_EQ(nsi_exit_from_errno(-EMLINK), NSI_EXIT_CONFLICT);
    NS_ASSERT_INT_EQ(nsi_exit_from_errno(-EINVAL), NSI_EXIT_FAILURE);
    NS_ASSERT_INT_EQ(nsi_exit_from_errno(-EAGAIN), NSI_EXIT_FAILURE);
    /* The documented numbers are a contract. */
    NS_ASSERT_INT_EQ(NSI_EXIT_USAGE, 2);
    NS_ASSERT_INT_EQ(NSI_EXIT_PERMISSION, 3);
    NS_ASSERT_INT_EQ(NSI_EXIT_KERNEL, 4);
    NS_ASSERT_INT_EQ(NSI_EXIT_CONFLICT, 5);
    NS_ASSERT_INT_EQ(NSI_EXIT_ROLLEDBACK, 6);
}

const ns_test nsi_misc_tests[] = {
    {"nft dump parse", test_nft_parse},
    {"nft error record", test_nft_error},
    {"ipv6 scope", test_ipv6_scope},
    {"exit codes", test_exit_codes},
    {NULL, NULL},
};

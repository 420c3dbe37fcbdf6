/* test_strconv.c - strict integer, port, CIDR and list parsing. */
#include "strconv.h"
#include "suites.h"

static void test_ports(void)
{
    uint16_t p = 7;
    NS_ASSERT_INT_EQ(ns_parse_port("15001", &p), 0);
    NS_ASSERT_INT_EQ(p, 15001);
    NS_ASSERT_INT_EQ(ns_parse_port("65535", &p), 0);
    NS_ASSERT_INT_EQ(ns_parse_port("0", &p), -ERANGE);
    NS_ASSERT_INT_EQ(ns_parse_port("65536", &p), -ERANGE);
    NS_ASSERT_INT_EQ(ns_parse_port("-1", &p), -EINVAL);
    NS_ASSERT_INT_EQ(ns_parse_port("80a", &p), -EINVAL);
    NS_ASSERT_INT_EQ(ns_parse_port("", &p), -EINVAL);
    NS_ASSERT_INT_EQ(ns_parse_port(" 80", &p), -EINVAL);
    NS_ASSERT_INT_EQ(ns_parse_port("99999999999999999999999", &p), -ERANGE);
    NS_ASSERT_INT_EQ(p, 65535); /* untouched by failures */
}

static void test_cidrs(void)
{
    ns_cidr c;
    char buf[64];
    NS_ASSERT_INT_EQ(ns_parse_cidr("10.0.0.0/8", &c), 0);
    NS_ASSERT_INT_EQ(c.family, AF_INET);
    NS_ASSERT_INT_EQ(c.prefix, 8);
    NS_ASSERT_INT_EQ(ns_parse_cidr("192.168.1.7", &c), 0);
    ns_cidr_format(&c, buf, sizeof(buf));
    NS_ASSERT_STR_EQ(buf, "192.168.1.7/32");
    NS_ASSERT_INT_EQ(ns_parse_cidr("fd00::/8", &c), 0);
    NS_ASSERT_INT_EQ(c.family, AF_INET6);
    ns_cidr_format(&c, buf, sizeof(buf));
    NS_ASSERT_STR_EQ(buf, "fd00::/8");
    NS_ASSERT_INT_EQ(ns_parse_cidr("10.0.0.1/8", &c), -EINVAL); /* host bits set */
    NS_ASSERT_INT_EQ(ns_parse_cidr("10.0.0.0/33", &c), -EINVAL);
    NS_ASSERT_INT_EQ(ns_parse_cidr("10.0.0/8", &c), -EINVAL);
    NS_ASSERT_INT_EQ(ns_parse_cidr("10.0.0.0/", &c), -EINVAL);
    NS_ASSERT_INT_EQ(ns_parse_cidr("abc", &c), -EINVAL);
    NS_ASSERT_INT_EQ(ns_parse_cidr("0.0.0.0/0", &c), 0);
    NS_ASSERT_INT_EQ(ns_parse_cidr("::/0", &c), 0);
}

static void test_lists(void)
{
    const char *p = " 80, ,443 ,8080,";
    char item[8];
    NS_ASSERT_INT_EQ(ns_list_next(&p, item, sizeof(item)), 2);
    NS_ASSERT_STR_EQ(item, "80");
    NS_ASSERT_INT_EQ(ns_list_next(&p, item, sizeof(item)), 3);
    NS_ASSERT_STR_EQ(item, "443");
    NS_ASSERT_INT_EQ(ns_list_next(&p, item, sizeof(item)), 4);
    NS_ASSERT_STR_EQ(item, "8080");
    NS_ASSERT_INT_EQ(ns_list_next(&p, item, sizeof(item)), 0);
    const char *q = "123456789,1";
    NS_ASSERT_INT_EQ(ns_list_next(&q, item, sizeof(item)), -ERANGE);
    NS_ASSERT_INT_EQ(ns_list_next(&q, item, sizeof(item)), 1);
    NS_ASSERT_STR_EQ(item, "1");
}

static void test_listen(void)
{
    char host[64];
    uint16_t port = 1;
    NS_ASSERT_INT_EQ(ns_parse_listen("0.0.0.0:9443", host, sizeof(host), &port), 0);
    NS_ASSERT_STR_EQ(host, "0.0.0.0");
    NS_ASSERT_INT_EQ(port, 9443);
    NS_ASSERT_INT_EQ(ns_parse_listen("[::1]:0", host, sizeof(host), &port), 0);
    NS_ASSERT_STR_EQ(host, "::1");
    NS_ASSERT_INT_EQ(port, 0);
    NS_ASSERT_INT_EQ(ns_parse_listen("9443", host, sizeof(host), &port), -EINVAL);
    NS_ASSERT_INT_EQ(ns_parse_listen(":9443", host, sizeof(host), &port), -EINVAL);
    NS_ASSERT_INT_EQ(ns_parse_listen("[::1]9443", host, sizeof(host), &port), -EINVAL);
    NS_ASSERT_INT_EQ(ns_parse_listen("h:70000", host, sizeof(host), &port), -EINVAL);
    NS_ASSERT_INT_EQ(ns_parse_listen("h:x", host, sizeof(host), &port), -EINVAL);
}

const ns_test strconv_tests[] = {
    {"listen addresses", test_listen},
    {"ports", test_ports},
    {"cidrs", test_cidrs},
    {"lists", test_lists},
    {NULL, NULL},
};

/* test_config.c - flag and NUTSHELL_* variable parsing, and the messages of bad values. */
#include "tests.h"

#include "buf.h"
#include "config.h"

#include <arpa/inet.h>
#include <stdarg.h>

typedef struct env_kv {
    const char *k, *v;
} env_kv;

static const char *fake_env(const char *name, void *ctx)
{
    for (const env_kv *e = ctx; e && e->k; e++)
        if (strcmp(e->k, name) == 0)
            return e->v;
    return NULL;
}

/* Parses the NULL-terminated flags over the defaults with `env` as the environment. */
static int parse(nsi_config *c, ns_err *err, const env_kv *env, ...)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "nutshell-init";
    va_list ap;
    va_start(ap, env);
    char *a;
    while ((a = va_arg(ap, char *)) != NULL && argc < 63)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    nsi_config_defaults(c);
    ns_err_clear(err);
    return nsi_config_parse(c, argc, argv, fake_env, (void *)env, err);
}

/* The message must name both the flag (or variable) and the bad value. */
#define ASSERT_ERR_NAMES(err, what, value)                                                         \
    do {                                                                                           \
        bool ok_ = strstr((err).msg, (what)) && strstr((err).msg, (value));                        \
        if (!ok_)                                                                                  \
            fprintf(stderr, "\n  %s:%d: message \"%s\" does not name %s and %s\n", __FILE__,       \
                    __LINE__, (err).msg, (what), (value));                                         \
        CU_ASSERT_TRUE(ok_);                                                                       \
    } while (0)

static void test_defaults(void)
{
    nsi_config c;
    nsi_config_defaults(&c);
    NS_ASSERT_INT_EQ(c.proxy_port, 15001);
    NS_ASSERT_INT_EQ(c.inbound_port, 15006);
    NS_ASSERT_INT_EQ(c.tunnel_port, 0);
    NS_ASSERT_INT_EQ(c.uids.n, 1);
    NS_ASSERT_INT_EQ(c.uids.v[0], 1337);
    NS_ASSERT_INT_EQ(c.gids.v[0], 1337);
    CU_ASSERT_TRUE(c.include_inbound.all);
    NS_ASSERT_INT_EQ(c.exclude_inbound.n, 1);
    NS_ASSERT_INT_EQ(c.exclude_inbound.v[0], 15020);
    CU_ASSERT_TRUE(c.include_outbound.all);
    NS_ASSERT_INT_EQ(c.ipv6, NSI_IPV6_AUTO);
    NS_ASSERT_INT_EQ(c.action, NSI_ACT_APPLY);
    CU_ASSERT_FALSE(c.dry_run);
}

static void test_injector_flags(void)
{
    nsi_config c;
    ns_err err;
    int rc = parse(&c, &err, NULL, "--proxy-port=15001", "--inbound-port=15006", "--proxy-uid=1337",
                   "--proxy-gid=1337", "--include-inbound-ports=*",
                   "--exclude-inbound-ports=15020,15090", "--include-outbound-cidrs=*",
                   "--exclude-outbound-cidrs=", "--exclude-outbound-ports=",
                   "--include-outbound-ports=", "--ipv6=auto", NULL);
    NS_ASSERT_INT_EQ(rc, 0);
    NS_ASSERT_STR_EQ(err.msg, "");
    CU_ASSERT_TRUE(c.include_inbound.all);
    NS_ASSERT_INT_EQ(c.exclude_inbound.n, 2);
    NS_ASSERT_INT_EQ(c.exclude_inbound.v[1], 15090);
    CU_ASSERT_TRUE(c.include_outbound.all);
    NS_ASSERT_INT_EQ(c.exclude_outbound.n, 0);
    NS_ASSERT_INT_EQ(c.exclude_outbound_ports.n, 0);
    NS_ASSERT_INT_EQ(c.include_outbound_ports.n, 0);
}

static void test_istio_short_flags(void)
{
    nsi_config c;
    ns_err err;
    int rc = parse(&c, &err, NULL, "-p", "15101", "-z", "15106", "-u", "3,4", "-g", "1,2", "-m",
                   "REDIRECT", "-i", "10.0.0.0/8", "-x", "10.1.0.0/16", "-b", "80,8080", "-d",
                   "9090", "-o", "22", "-q", "443", "-n", NULL);
    NS_ASSERT_INT_EQ(rc, 0);
    NS_ASSERT_INT_EQ(c.proxy_port, 15101);
    NS_ASSERT_INT_EQ(c.inbound_port, 15106);
    NS_ASSERT_INT_EQ(c.uids.n, 2);
    NS_ASSERT_INT_EQ(c.uids.v[1], 4);
    NS_ASSERT_INT_EQ(c.gids.v[0], 1);
    CU_ASSERT_FALSE(c.include_outbound.all);
    NS_ASSERT_INT_EQ(c.include_outbound.n, 1);
    NS_ASSERT_INT_EQ(c.include_outbound.v[0].prefix, 8);
    NS_ASSERT_INT_EQ(c.exclude_outbound.v[0].prefix, 16);
    NS_ASSERT_INT_EQ(c.include_inbound.n, 2);
    NS_ASSERT_INT_EQ(c.include_inbound.v[1], 8080);
    NS_ASSERT_INT_EQ(c.exclude_inbound.v[0], 9090);
    NS_ASSERT_INT_EQ(c.exclude_outbound_ports.v[0], 22);
    NS_ASSERT_INT_EQ(c.include_outbound_ports.v[0], 443);
    CU_ASSERT_TRUE(c.dry_run);

    /* Glued short values work too. */
    rc = parse(&c, &err, NULL, "-p15002", NULL);
    NS_ASSERT_INT_EQ(rc, 0);
    NS_ASSERT_INT_EQ(c.proxy_port, 15002);
}

static void test_env_and_precedence(void)
{
    nsi_config c;
    ns_err err;
    const env_kv env[] = {{"NUTSHELL_PROXY_PORT", "16001"},
                          {"NUTSHELL_INBOUND_PORT", "16006"},
                          {"NUTSHELL_EXCLUDE_OUTBOUND_CIDRS", "192.168.0.0/16, fd00::/8"},
                          {"NUTSHELL_INCLUDE_OUTBOUND_CIDRS", ""},
                          {"NUTSHELL_IPV6", "off"},
                          {NULL, NULL}};
    int rc = parse(&c, &err, env, "--inbound-port", "17006", NULL);
    NS_ASSERT_INT_EQ(rc, 0);
    NS_ASSERT_INT_EQ(c.proxy_port, 16001);   /* from the environment */
    NS_ASSERT_INT_EQ(c.inbound_port, 17006); /* the flag wins */
    NS_ASSERT_INT_EQ(c.exclude_outbound.n, 2);
    NS_ASSERT_INT_EQ(c.exclude_outbound.v[1].family, AF_INET6);
    /* Set but empty is an explicit empty list: no CIDR capture (Istio semantics). */
    CU_ASSERT_FALSE(c.include_outbound.all);
    NS_ASSERT_INT_EQ(c.include_outbound.n, 0);
    NS_ASSERT_INT_EQ(c.ipv6, NSI_IPV6_OFF);

    /* A bad variable that a flag overrides is never looked at. */
    const env_kv bad[] = {{"NUTSHELL_PROXY_PORT", "nope"}, {NULL, NULL}};
    rc = parse(&c, &err, bad, "--proxy-port=15001", NULL);
    NS_ASSERT_INT_EQ(rc, 0);
    /* ... but on its own it is an error naming the variable. */
    rc = parse(&c, &err, bad, NULL);
    NS_ASSERT_INT_EQ(rc, -EINVAL);
    ASSERT_ERR_NAMES(err, "NUTSHELL_PROXY_PORT", "\"nope\"");
}

static void test_gid_defaults_to_uid(void)
{
    nsi_config c;
    ns_err err;
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--proxy-uid=2000", NULL), 0);
    NS_ASSERT_INT_EQ(c.gids.n, 1);
    NS_ASSERT_INT_EQ(c.gids.v[0], 2000);
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--proxy-uid=2000", "--proxy-gid=3000", NULL), 0);
    NS_ASSERT_INT_EQ(c.gids.v[0], 3000);
}

static void test_bad_ports_name_value(void)
{
    nsi_config c;
    ns_err err;
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--proxy-port=abc", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--proxy-port", "\"abc\"");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "-z", "0", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--inbound-port", "\"0\"");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--exclude-inbound-ports=15020,99999", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--exclude-inbound-ports", "\"99999\"");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--include-outbound-ports=80,-1", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--include-outbound-ports", "\"-1\"");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--exclude-outbound-ports=8O", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--exclude-outbound-ports", "\"8O\"");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--include-inbound-ports=80 81", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--include-inbound-ports", "\"80 81\"");
}

static void test_bad_cidrs_name_value(void)
{
    nsi_config c;
    ns_err err;
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--exclude-outbound-cidrs=10.0.0.0/33", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--exclude-outbound-cidrs", "\"10.0.0.0/33\"");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--include-outbound-cidrs=10.0.0.0/8,bogus", NULL),
                     -EINVAL);
    ASSERT_ERR_NAMES(err, "--include-outbound-cidrs", "\"bogus\"");
    /* Host bits below the prefix: refused rather than guessed. */
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "-x", "10.0.0.1/8", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--exclude-outbound-cidrs", "\"10.0.0.1/8\"");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "-x", "fd00::1/8", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--exclude-outbound-cidrs", "\"fd00::1/8\"");
    const env_kv env[] = {{"NUTSHELL_INCLUDE_OUTBOUND_CIDRS", "300.1.1.1/32"}, {NULL, NULL}};
    NS_ASSERT_INT_EQ(parse(&c, &err, env, NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "NUTSHELL_INCLUDE_OUTBOUND_CIDRS", "\"300.1.1.1/32\"");
    /* Bare addresses are single hosts. */
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "-x", "10.0.0.1,fd00::1", NULL), 0);
    NS_ASSERT_INT_EQ(c.exclude_outbound.v[0].prefix, 32);
    NS_ASSERT_INT_EQ(c.exclude_outbound.v[1].prefix, 128);
}

static void test_wildcards(void)
{
    nsi_config c;
    ns_err err;
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "-b", " * ", "-i", "*", NULL), 0);
    CU_ASSERT_TRUE(c.include_inbound.all);
    CU_ASSERT_TRUE(c.include_outbound.all);
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--exclude-outbound-cidrs=*", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--exclude-outbound-cidrs", "\"*\"");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--exclude-inbound-ports=*", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--exclude-inbound-ports", "\"*\"");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--include-inbound-ports=80,*", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--include-inbound-ports", "\"80,*\"");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--include-outbound-cidrs=*,10.0.0.0/8", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--include-outbound-cidrs", "\"*,10.0.0.0/8\"");
}

static void test_lists_dedupe_and_limits(void)
{
    nsi_config c;
    ns_err err;
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "-d", "15020, 15020,,15090 ,", NULL), 0);
    NS_ASSERT_INT_EQ(c.exclude_inbound.n, 2);
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "-x", "10.0.0.0/8,10.0.0.0/8", NULL), 0);
    NS_ASSERT_INT_EQ(c.exclude_outbound.n, 1);

    char big[NSI_MAX_PORTS * 7 + 64];
    ns_buf b;
    ns_buf_init_static(&b, big, sizeof(big));
    for (int i = 1; i <= NSI_MAX_PORTS + 1; i++)
        ns_buf_printf(&b, "%s%d", i > 1 ? "," : "", i);
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "-o", big, NULL), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "more than"));
    ns_buf_free(&b);
}

static void test_ids(void)
{
    nsi_config c;
    ns_err err;
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--proxy-uid=", NULL), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "--proxy-uid"));
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--proxy-gid=root", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--proxy-gid", "\"root\"");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--proxy-uid=4294967295", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--proxy-uid", "\"4294967295\"");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--proxy-uid=0", NULL), 0);
    NS_ASSERT_INT_EQ(c.uids.v[0], 0);
}

static void test_modes_and_switches(void)
{
    nsi_config c;
    ns_err err;
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--ipv6=on", NULL), 0);
    NS_ASSERT_INT_EQ(c.ipv6, NSI_IPV6_ON);
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--ipv6=false", NULL), 0);
    NS_ASSERT_INT_EQ(c.ipv6, NSI_IPV6_OFF);
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--ipv6=maybe", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--ipv6", "\"maybe\"");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "-m", "TPROXY", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--interception-mode", "\"TPROXY\"");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--log-format=json", NULL), 0);
    NS_ASSERT_INT_EQ(c.log_format, NS_LOG_JSON);
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--log-format=xml", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--log-format", "\"xml\"");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--cleanup", NULL), 0);
    NS_ASSERT_INT_EQ(c.action, NSI_ACT_CLEANUP);
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--cleanup", "--dry-run", NULL), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "--cleanup"));
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--dry-run=maybe", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--dry-run", "\"maybe\"");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--inbound-tunnel-port=15008", NULL), 0);
    NS_ASSERT_INT_EQ(c.tunnel_port, 15008);
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--inbound-tunnel-port=", NULL), 0);
    NS_ASSERT_INT_EQ(c.tunnel_port, 0);
}

static void test_usage_errors(void)
{
    nsi_config c;
    ns_err err;
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--proxy-prot=1", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "unknown flag", "--proxy-prot");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "-Z", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "unknown flag", "-Z");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--proxy-port", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "--proxy-port", "needs a value");
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "stray", NULL), -EINVAL);
    ASSERT_ERR_NAMES(err, "unexpected argument", "stray");
    /* --help wins over bad values, so that a user can always read it. */
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--proxy-port=bad", "--help", NULL), 0);
    NS_ASSERT_INT_EQ(c.action, NSI_ACT_HELP);
    NS_ASSERT_INT_EQ(parse(&c, &err, NULL, "--version", NULL), 0);
    NS_ASSERT_INT_EQ(c.action, NSI_ACT_VERSION);
}

static void test_usage_text(void)
{
    const char *u = nsi_config_usage();
    /* Every flag and every variable of the injector contract is documented. */
    static const char *const must[] = {
        "--proxy-port",
        "NUTSHELL_PROXY_PORT",
        "--inbound-port",
        "NUTSHELL_INBOUND_PORT",
        "--proxy-uid",
        "NUTSHELL_PROXY_UID",
        "--proxy-gid",
        "NUTSHELL_PROXY_GID",
        "--include-inbound-ports",
        "NUTSHELL_INCLUDE_INBOUND_PORTS",
        "--exclude-inbound-ports",
        "NUTSHELL_EXCLUDE_INBOUND_PORTS",
        "--include-outbound-cidrs",
        "NUTSHELL_INCLUDE_OUTBOUND_CIDRS",
        "--exclude-outbound-cidrs",
        "NUTSHELL_EXCLUDE_OUTBOUND_CIDRS",
        "--exclude-outbound-ports",
        "NUTSHELL_EXCLUDE_OUTBOUND_PORTS",
        "--include-outbound-ports",
        "NUTSHELL_INCLUDE_OUTBOUND_PORTS",
        "--ipv6",
        "NUTSHELL_IPV6",
        "--dry-run",
        "--cleanup",
        "--help",
        "--version",
        "--log-format",
        "Exit codes",
    };
    for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++) {
        if (!strstr(u, must[i]))
            fprintf(stderr, "\n  usage text lacks %s\n", must[i]);
        CU_ASSERT_PTR_NOT_NULL(strstr(u, must[i]));
    }
}

const ns_test nsi_config_tests[] = {
    {"defaults", test_defaults},
    {"injector flags", test_injector_flags},
    {"istio short flags", test_istio_short_flags},
    {"environment and precedence", test_env_and_precedence},
    {"gid defaults to uid", test_gid_defaults_to_uid},
    {"bad ports name flag and value", test_bad_ports_name_value},
    {"bad cidrs name flag and value", test_bad_cidrs_name_value},
    {"wildcards", test_wildcards},
    {"lists dedupe and limits", test_lists_dedupe_and_limits},
    {"ids", test_ids},
    {"modes and switches", test_modes_and_switches},
    {"usage errors", test_usage_errors},
    {"usage text", test_usage_text},
    {NULL, NULL},
};

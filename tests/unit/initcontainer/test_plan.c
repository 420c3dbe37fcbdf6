/* test_plan.c - the rule planner, config in and rules out, against golden iptables-save files.
 *
 * testdata/<case>.golden is what `nutshell-init --dry-run` prints for the flags in its first
 * line (NS_UPDATE_GOLDEN=1 rewrites them; review the diff by eye). The .save files under
 * testdata/istio are not ours: they are iptables-legacy-save dumps of Istio's own rule lists
 * (the .rules files beside them, taken from istio-iptables' golden files with the chains
 * renamed, applied by generate.sh there), and are never rewritten by the tests.
 */
#include "tests.h"

#include "buf.h"
#include "config.h"
#include "plan.h"
#include "render.h"

#include <arpa/inet.h>
#include <stdlib.h>

static bool update_mode(void)
{
    const char *v = getenv("NS_UPDATE_GOLDEN");
    return v && strcmp(v, "1") == 0;
}

/* Prints the first line where the texts differ, instead of two whole tables. */
static void report_diff(const char *file, const char *actual, const char *expected)
{
    int line = 1;
    const char *a = actual, *e = expected;
    while (*a && *e && *a == *e) {
        if (*a == '\n')
            line++;
        a++, e++;
    }
    const char *al = a, *el = e;
    while (al > actual && al[-1] != '\n')
        al--;
    while (el > expected && el[-1] != '\n')
        el--;
    fprintf(stderr, "\n  %s differs at line %d\n  expected: %.*s\n  actual:   %.*s\n", file, line,
            (int)strcspn(el, "\n"), el, (int)strcspn(al, "\n"), al);
}

static void compare_file(const char *file, const char *actual, bool may_update)
{
    if (may_update && update_mode()) {
        CU_ASSERT_EQUAL(ns_test_write(file, actual), 0);
        return;
    }
    char *expected = ns_test_read(file);
    if (!expected) {
        fprintf(stderr, "\n  missing %s/%s (NS_UPDATE_GOLDEN=1 writes it)\n", NS_TESTDATA_DIR,
                file);
        CU_FAIL("golden file missing");
        return;
    }
    bool same = strcmp(actual, expected) == 0;
    if (!same)
        report_diff(file, actual, expected);
    CU_ASSERT_TRUE(same);
    free(expected);
}

/* Parses a space-separated flag string (no value holds a space) over the defaults. */
static void config_from(const char *flags, nsi_config *c)
{
    char copy[512];
    char *argv[32];
    int argc = 0;
    snprintf(copy, sizeof(copy), "%s", flags);
    argv[argc++] = "nutshell-init";
    for (char *p = copy; *p && argc < 31;) {
        while (*p == ' ')
            *p++ = '\0';
        if (!*p)
            break;
        argv[argc++] = p;
        while (*p && *p != ' ')
            p++;
    }
    argv[argc] = NULL;
    nsi_config_defaults(c);
    ns_err err = {0};
    int rc = nsi_config_parse(c, argc, argv, NULL, NULL, &err);
    if (rc)
        fprintf(stderr, "\n  flags \"%s\": %s\n", flags, err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
}

/* Appends the rendered nat table of `family` for `c`. */
static void render_family(const nsi_config *c, int family, ns_buf *b)
{
    nsi_plan p;
    CU_ASSERT_EQUAL_FATAL(nsi_plan_build(c, family, &p), 0);
    nsi_render_table(&p, b);
    nsi_plan_free(&p);
}

typedef struct golden_case {
    const char *name;
    const char *flags;
    bool ipv6;
} golden_case;

/* Istio's testdata names where the case mirrors one of istio-iptables' golden tests. */
static const golden_case cases[] = {
    {"defaults", "", false},
    {"injector",
     "--proxy-port=15001 --inbound-port=15006 --proxy-uid=1337 --proxy-gid=1337 "
     "--include-inbound-ports=* --exclude-inbound-ports=15020,15090 "
     "--include-outbound-cidrs=* --exclude-outbound-cidrs= "
     "--exclude-outbound-ports= --include-outbound-ports= --ipv6=auto",
     false},
    {"dual-stack",
     "--proxy-port=15001 --inbound-port=15006 --proxy-uid=1337 --proxy-gid=1337 "
     "--include-inbound-ports=* --exclude-inbound-ports=15020,15090 "
     "--include-outbound-cidrs=* --exclude-outbound-cidrs= "
     "--exclude-outbound-ports= --include-outbound-ports= --ipv6=on",
     true},
    {"inbound-wildcard-exclude", "-b * -d 22,80,443", false},
    {"inbound-ports-include", "-b 32000,31000", false},
    {"inbound-ports-empty", "--include-inbound-ports=", false},
    {"outbound-ports-include", "-i= -q 32000,31000 --ipv6=on", true},
    {"outbound-ports-exclude", "-o 22,80,443", false},
    {"ipnets", "-i 10.0.0.0/8", false},
    {"ip-range", "-x 1.1.0.0/16 -i 9.9.0.0/16 -u 3,4 -g 1,2", false},
    {"ipv6-ipnets", "-b 4000,5000 -d 6000,7000 -x 2001:db8::/32 -i 2001:db8::/32 --ipv6=on", true},
    {"dual-stack-cidrs", "-i 10.0.0.0/8,fd00::/8 -x 10.1.0.0/16,fd00:1::/32 --ipv6=on", true},
    {"loopback-outbound-iprange", "-i 127.1.2.3/32 -u 3,4 -g 1,2", false},
    {"tunnel-port", "--inbound-tunnel-port=15008", true},
    {"custom-ports", "-p 15101 -z 15106 -u 2000", false},
};

static void test_goldens(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const golden_case *gc = &cases[i];
        nsi_config c;
        config_from(gc->flags, &c);
        ns_buf b;
        ns_buf_init(&b);
        ns_buf_printf(&b, "# nutshell-init --dry-run %s\n# IPv4\n", gc->flags);
        render_family(&c, AF_INET, &b);
        if (gc->ipv6) {
            ns_buf_puts(&b, "# IPv6\n");
            render_family(&c, AF_INET6, &b);
        }
        CU_ASSERT_FALSE(b.failed);
        char file[128];
        snprintf(file, sizeof(file), "%s.golden", gc->name);
        compare_file(file, ns_buf_cstr(&b), true);
        ns_buf_free(&b);
    }
}

typedef struct istio_case {
    const char *save; /* testdata/istio/<save> */
    const char *flags;
    int family;
} istio_case;

/* Nutshell has no HBONE tunnel, so it leaves out Istio's 15008 rules unless asked; with
 * --inbound-tunnel-port=15008 the rule set must be Istio's to the byte. */
static const istio_case istio_cases[] = {
    {"istio/default-v4.save", "--inbound-tunnel-port=15008", AF_INET},
    {"istio/default-v6.save", "--inbound-tunnel-port=15008", AF_INET6},
    {"istio/ipnets-v4.save", "--inbound-tunnel-port=15008 -b= -i 10.0.0.0/8", AF_INET},
    {"istio/inbound-ports-include-v4.save",
     "--inbound-tunnel-port=15008 -b 32000,31000 -d= -i=", AF_INET},
    {"istio/outbound-ports-v4.save", "--inbound-tunnel-port=15008 -b= -d= -i= -q 32000,31000",
     AF_INET},
    {"istio/outbound-ports-v6.save", "--inbound-tunnel-port=15008 -b= -d= -i= -q 32000,31000",
     AF_INET6},
};

static void test_equals_istio(void)
{
    for (size_t i = 0; i < sizeof(istio_cases) / sizeof(istio_cases[0]); i++) {
        const istio_case *ic = &istio_cases[i];
        nsi_config c;
        config_from(ic->flags, &c);
        ns_buf b;
        ns_buf_init(&b);
        render_family(&c, ic->family, &b);
        compare_file(ic->save, ns_buf_cstr(&b), false);
        ns_buf_free(&b);
    }
}

/* Properties that hold for every configuration, checked on the rules rather than the text. */
static void test_invariants(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        nsi_config c;
        config_from(cases[i].flags, &c);
        for (int f = 0; f < 2; f++) {
            int family = f ? AF_INET6 : AF_INET;
            nsi_plan p;
            CU_ASSERT_EQUAL_FATAL(nsi_plan_build(&c, family, &p), 0);
            int redirects = 0;
            for (size_t r = 0; r < p.n; r++) {
                const nsi_rule *ru = &p.rules[r];
                if (ru->has_src)
                    CU_ASSERT_EQUAL(ru->src.family, family);
                if (ru->has_dst)
                    CU_ASSERT_EQUAL(ru->dst.family, family);
                if (ru->dport)
                    CU_ASSERT_TRUE(ru->tcp);
                if (ru->target == NSI_TARGET_REDIRECT) {
                    redirects++;
                    CU_ASSERT_TRUE(ru->chain == NSI_CHAIN_REDIRECT ||
                                   ru->chain == NSI_CHAIN_IN_REDIRECT);
                }
                /* Owner matches only work in OUTPUT's path. */
                if (ru->owner != NSI_OWNER_NONE)
                    CU_ASSERT_EQUAL(ru->chain, NSI_CHAIN_OUTBOUND);
                /* Built-in chains only ever get a jump into ours. */
                if (nsi_chain_is_builtin(ru->chain)) {
                    CU_ASSERT_EQUAL(ru->target, NSI_TARGET_JUMP);
                    CU_ASSERT_FALSE(nsi_chain_is_builtin(ru->jump));
                }
            }
            NS_ASSERT_INT_EQ(redirects, 2);
            nsi_plan_free(&p);
        }
    }
}

static void test_chain_names(void)
{
    NS_ASSERT_STR_EQ(nsi_chain_name(NSI_CHAIN_INBOUND), "NUTSHELL_INBOUND");
    NS_ASSERT_STR_EQ(nsi_chain_name(NSI_CHAIN_IN_REDIRECT), "NUTSHELL_IN_REDIRECT");
    NS_ASSERT_STR_EQ(nsi_chain_name(NSI_CHAIN_OUTBOUND), "NUTSHELL_OUTPUT");
    NS_ASSERT_STR_EQ(nsi_chain_name(NSI_CHAIN_REDIRECT), "NUTSHELL_REDIRECT");
    CU_ASSERT_TRUE(nsi_is_own_chain_name("NUTSHELL_OUTPUT"));
    CU_ASSERT_FALSE(nsi_is_own_chain_name("NUTSHELL_OUTPUT2"));
    CU_ASSERT_FALSE(nsi_is_own_chain_name("ISTIO_OUTPUT"));
    CU_ASSERT_FALSE(nsi_is_own_chain_name("OUTPUT"));
    /* Save order is libiptc's order: user chains sorted by name. */
    for (int c = NSI_FIRST_OWN_CHAIN + 1; c < NSI_CHAIN_COUNT_; c++)
        CU_ASSERT_TRUE(strcmp(nsi_chain_name((nsi_chain)(c - 1)), nsi_chain_name((nsi_chain)c)) <
                       0);
    CU_ASSERT_EQUAL(nsi_plan_build(NULL, AF_UNIX, &(nsi_plan){0}), -EAFNOSUPPORT);
}

static void test_render_edge_cases(void)
{
    /* A /0 address is left out, as iptables-save does; an inverted /0 is not. */
    nsi_rule r = {.chain = NSI_CHAIN_OUTBOUND,
                  .has_dst = true,
                  .dst = {.family = AF_INET, .prefix = 0},
                  .target = NSI_TARGET_JUMP,
                  .jump = NSI_CHAIN_REDIRECT};
    ns_buf b;
    ns_buf_init(&b);
    nsi_render_rule(&r, &b);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&b), "-A NUTSHELL_OUTPUT -j NUTSHELL_REDIRECT\n");
    ns_buf_reset(&b);
    r.dst_inv = true;
    nsi_render_rule(&r, &b);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&b), "-A NUTSHELL_OUTPUT ! -d 0.0.0.0/0 -j NUTSHELL_REDIRECT\n");
    ns_buf_reset(&b);
    r = (nsi_rule){.chain = NSI_CHAIN_INBOUND,
                   .tcp = true,
                   .dport = 8080,
                   .dport_inv = true,
                   .owner = NSI_OWNER_GID,
                   .owner_id = 7,
                   .owner_inv = true,
                   .target = NSI_TARGET_REDIRECT,
                   .to_port = 1};
    nsi_render_rule(&r, &b);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&b), "-A NUTSHELL_INBOUND -p tcp -m tcp ! --dport 8080 -m owner "
                                      "! --gid-owner 7 -j REDIRECT --to-ports 1\n");
    ns_buf_free(&b);
}

const ns_test nsi_plan_tests[] = {
    {"golden rule sets", test_goldens},
    {"equal to istio-iptables", test_equals_istio},
    {"invariants", test_invariants},
    {"chain names", test_chain_names},
    {"render edge cases", test_render_edge_cases},
    {NULL, NULL},
};

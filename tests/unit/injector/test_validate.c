/* test_validate.c - quantities, lists, images, booleans; and config parsing. */
#include "config.h"
#include "suites.h"
#include "validate.h"

#include <math.h>

static void test_quantities(void)
{
    static const struct {
        const char *in;
        double want;
    } ok[] = {{"100m", 0.1},        {"1", 1},      {"1.5", 1.5},
              {"64Mi", 67108864},   {"1G", 1e9},   {"2e3", 2000},
              {"0.5Gi", 536870912}, {"+3k", 3000}, {"250u", 0.00025}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
        double v = -1;
        NS_ASSERT_INT_EQ(inj_quantity_parse(ok[i].in, &v), 0);
        CU_ASSERT_TRUE(fabs(v - ok[i].want) < 1e-9 * (ok[i].want + 1));
    }
    static const char *const bad[] = {"",  "m",  "1mm",  "lots", "1.2.3",
                                      ".", "-1", "1 Mi", "Mi1",  "1KiB"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        double v;
        if (inj_quantity_parse(bad[i], &v) == 0)
            fprintf(stderr, "\n  accepted bad quantity \"%s\"\n", bad[i]);
        CU_ASSERT_NOT_EQUAL(inj_quantity_parse(bad[i], &v), 0);
    }
}

static void test_lists(void)
{
    ns_err err = {0};
    NS_ASSERT_INT_EQ(inj_port_list_check("", false, &err), 0);
    NS_ASSERT_INT_EQ(inj_port_list_check("*", true, &err), 0);
    NS_ASSERT_INT_EQ(inj_port_list_check("*", false, &err), -EINVAL);
    NS_ASSERT_INT_EQ(inj_port_list_check("80,*", true, &err), -EINVAL);
    NS_ASSERT_INT_EQ(inj_port_list_check("80, 443", false, &err), 0);
    NS_ASSERT_INT_EQ(inj_port_list_check("80,70000", false, &err), -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "\"70000\" is not a port (1-65535)");
    NS_ASSERT_INT_EQ(inj_cidr_list_check("10.0.0.0/8, ::1", false, &err), 0);
    NS_ASSERT_INT_EQ(inj_cidr_list_check("10.0.0.0/8,nope", false, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "\"nope\""));
}

static void test_scalars(void)
{
    bool b = false;
    NS_ASSERT_INT_EQ(inj_bool_parse("true", &b), 0);
    CU_ASSERT_TRUE(b);
    NS_ASSERT_INT_EQ(inj_bool_parse("True", &b), -EINVAL);
    CU_ASSERT_TRUE(inj_image_valid("docker.io/istio/proxyv2:1.20@sha256:abc"));
    CU_ASSERT_FALSE(inj_image_valid(""));
    CU_ASSERT_FALSE(inj_image_valid("nginx latest"));
    CU_ASSERT_TRUE(inj_log_level_valid("warn"));
    CU_ASSERT_FALSE(inj_log_level_valid("verbose"));
}

static void test_config(void)
{
    inj_config cfg;
    ns_err err = {0};
    inj_config_defaults(&cfg);
    NS_ASSERT_STR_EQ(cfg.proxy_resources.memory_limit, "64Mi");
    const char *good = "{\"proxy\":{\"image\":\"x/y:1\",\"nativeSidecar\":true}}";
    NS_ASSERT_INT_EQ(inj_config_parse(&cfg, good, strlen(good), &err), 0);
    NS_ASSERT_STR_EQ(cfg.proxy_image, "x/y:1");
    CU_ASSERT_TRUE(cfg.native_sidecar);

    /* a bad value names its key and changes nothing */
    const char *bad =
        "{\"proxy\":{\"image\":\"z:2\",\"resources\":{\"limits\":{\"memory\":\"big\"}}}}";
    NS_ASSERT_INT_EQ(inj_config_parse(&cfg, bad, strlen(bad), &err), -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "config proxy.resources.memory: invalid value");
    NS_ASSERT_STR_EQ(cfg.proxy_image, "x/y:1");
    const char *badport = "{\"traffic\":{\"excludeInboundPorts\":\"1,2,x\"}}";
    NS_ASSERT_INT_EQ(inj_config_parse(&cfg, badport, strlen(badport), &err), -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "config traffic.excludeInboundPorts: \"x\" is not a port (1-65535)");
    NS_ASSERT_INT_EQ(inj_config_parse(&cfg, "[]", 2, &err), -EINVAL);

    /* a missing file means defaults */
    NS_ASSERT_INT_EQ(inj_config_load(&cfg, "/nonexistent/config.json", &err), 0);
    NS_ASSERT_STR_EQ(cfg.proxy_image, "nutshell/proxy:" NUTSHELL_VERSION);
}

const ns_test validate_tests[] = {
    {"quantities", test_quantities},
    {"port and CIDR lists", test_lists},
    {"booleans, images, log levels", test_scalars},
    {"config parsing", test_config},
    {NULL, NULL},
};

/* test_config.c - nutshell-proxy's flags: the defaults, every flag with good values (both
 * --flag=value and --flag value), bad values refused with a message naming the flag and
 * the value, durations, the environment (and flags over it), the checks across flags,
 * and --help; the usage text lists every flag the parser knows. */
#include "config.h"
#include "suites.h"

#include <errno.h>
#include <stdlib.h>

typedef struct env_var {
    const char *name, *value;
} env_var;

static const env_var *test_env;

static const char *fake_getenv(const char *name)
{
    for (const env_var *e = test_env; e && e->name; e++)
        if (strcmp(e->name, name) == 0)
            return e->value;
    return NULL;
}

/* Parses argv (NULL-terminated, without the program name) over the defaults with `env`
 * (NULL: no environment at all). */
static int parse_with(px_config *c, const env_var *env, ns_err *err, const char *const *args)
{
    const char *argv[64] = {"nutshell-proxy"};
    int argc = 1;
    while (args && args[argc - 1] && argc < 63) {
        argv[argc] = args[argc - 1];
        argc++;
    }
    px_config_defaults(c);
    test_env = env;
    memset(err, 0, sizeof(*err));
    return px_config_parse(c, argc, (char **)argv, env ? fake_getenv : NULL, err);
}

#define PARSE(c, env, err, ...) parse_with(c, env, err, (const char *const[]){__VA_ARGS__, NULL})

static void test_defaults(void)
{
    px_config c;
    ns_err err;
    NS_ASSERT_INT_EQ(parse_with(&c, NULL, &err, NULL), 0);
    NS_ASSERT_INT_EQ(c.outbound_port, 15001);
    NS_ASSERT_INT_EQ(c.inbound_port, 15006);
    NS_ASSERT_INT_EQ(c.admin_port, 15020);
    NS_ASSERT_STR_EQ(c.admin_address, "0.0.0.0");
    NS_ASSERT_STR_EQ(c.inbound_source, "127.0.0.6");
    NS_ASSERT_INT_EQ(c.concurrency, 0);
    NS_ASSERT_INT_EQ(c.max_connections, 16384);
    NS_ASSERT_INT_EQ(c.max_head, 65536);
    NS_ASSERT_INT_EQ(c.buffer_size, 16384);
    NS_ASSERT_INT_EQ(c.connect_timeout_ms, 5000);
    NS_ASSERT_INT_EQ(c.idle_timeout_ms, 3600 * 1000);
    NS_ASSERT_INT_EQ(c.http_idle_timeout_ms, 3600 * 1000);
    NS_ASSERT_INT_EQ(c.header_timeout_ms, 30 * 1000);
    NS_ASSERT_INT_EQ(c.sniff_timeout_ms, 1000);
    NS_ASSERT_INT_EQ(c.drain_timeout_ms, 5000);
    NS_ASSERT_INT_EQ(c.request_timeout_ms, 0);
    NS_ASSERT_INT_EQ(c.max_retries, 2);
    NS_ASSERT_INT_EQ(c.ejection_time_ms, 30000);
    CU_ASSERT_TRUE(c.splice);
    CU_ASSERT_TRUE(c.trace);
    NS_ASSERT_STR_EQ(c.routes_file, "");
    NS_ASSERT_STR_EQ(c.discovery_address, "");
    NS_ASSERT_INT_EQ(c.discovery_wait_s, 30);
    NS_ASSERT_STR_EQ(c.pod_namespace, "");
    NS_ASSERT_INT_EQ(c.log_level, NS_LOG_INFO);
    NS_ASSERT_INT_EQ(c.log_format, NS_LOG_TEXT);
    /* An empty environment is the same as none. */
    static const env_var none[] = {{NULL, NULL}};
    px_config d;
    NS_ASSERT_INT_EQ(parse_with(&d, none, &err, NULL), 0);
    CU_ASSERT_TRUE(memcmp(&c, &d, sizeof(c)) == 0);
}

static void test_ports_and_addresses(void)
{
    px_config c;
    ns_err err;
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--outbound-port=1", "--inbound-port=65535",
                           "--admin-port", "9000",
                           "--admin-address=::", "--inbound-source=127.0.0.7"),
                     0);
    NS_ASSERT_INT_EQ(c.outbound_port, 1);
    NS_ASSERT_INT_EQ(c.inbound_port, 65535);
    NS_ASSERT_INT_EQ(c.admin_port, 9000);
    NS_ASSERT_STR_EQ(c.admin_address, "::");
    NS_ASSERT_STR_EQ(c.inbound_source, "127.0.0.7");
    NS_ASSERT_INT_EQ(
        PARSE(&c, NULL, &err, "--admin-address=fd00:1:2:3:4:5:6:7", "--inbound-source", "::6"), 0);
    NS_ASSERT_STR_EQ(c.admin_address, "fd00:1:2:3:4:5:6:7");
    NS_ASSERT_STR_EQ(c.inbound_source, "::6");
    /* The last of a repeated flag wins. */
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--admin-port=9000", "--admin-port=9001"), 0);
    NS_ASSERT_INT_EQ(c.admin_port, 9001);
}

static void test_numbers(void)
{
    px_config c;
    ns_err err;
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--concurrency=256", "--max-connections=1",
                           "--max-head-size=1024", "--buffer-size=1048576"),
                     0);
    NS_ASSERT_INT_EQ(c.concurrency, 256);
    NS_ASSERT_INT_EQ(c.max_connections, 1);
    NS_ASSERT_INT_EQ(c.max_head, 1024);
    NS_ASSERT_INT_EQ(c.buffer_size, 1048576);
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--concurrency", "0", "--max-connections=1000000",
                           "--max-head-size=1048576", "--buffer-size=1024"),
                     0);
    NS_ASSERT_INT_EQ(c.concurrency, 0);
    NS_ASSERT_INT_EQ(c.max_connections, 1000000);
    NS_ASSERT_INT_EQ(c.max_head, 1048576);
    NS_ASSERT_INT_EQ(c.buffer_size, 1024);
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--max-retries=0"), 0);
    NS_ASSERT_INT_EQ(c.max_retries, 0);
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--max-retries", "10"), 0);
    NS_ASSERT_INT_EQ(c.max_retries, 10);
}

static void test_durations(void)
{
    static const struct {
        const char *s;
        int64_t ms;
    } good[] = {
        {"250ms", 250},   {"5s", 5000},
        {"2m", 120000},   {"1h", 3600000},
        {"7", 7000},      {"0ms", 0},
        {"0", 0},         {"007s", 7000},
        {"1000ms", 1000}, {"999999999999h", 999999999999ll * 3600000},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t ms = -1;
        NS_ASSERT_INT_EQ(px_parse_duration_ms(good[i].s, &ms), 0);
        NS_ASSERT_INT_EQ(ms, good[i].ms);
    }
    static const char *const bad[] = {"",    "s",    "ms", "5 s",  " 5s",  "5s ",           "-5s",
                                      "+5s", "5d",   "5S", "5sec", "1.5s", "1000000000000", "5ms5",
                                      "0x5", "5h1m", NULL};
    for (size_t i = 0; bad[i]; i++) {
        int64_t ms = 42;
        NS_ASSERT_INT_EQ(px_parse_duration_ms(bad[i], &ms), -EINVAL);
        NS_ASSERT_INT_EQ(ms, 42);
    }
    NS_ASSERT_INT_EQ(px_parse_duration_ms(NULL, NULL), -EINVAL);

    px_config c;
    ns_err err;
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--connect-timeout=250ms", "--idle-timeout=2m",
                           "--http-idle-timeout=1h", "--header-timeout=10", "--sniff-timeout=0ms",
                           "--drain-timeout", "0s", "--request-timeout=1500ms"),
                     0);
    NS_ASSERT_INT_EQ(c.connect_timeout_ms, 250);
    NS_ASSERT_INT_EQ(c.idle_timeout_ms, 120000);
    NS_ASSERT_INT_EQ(c.http_idle_timeout_ms, 3600000);
    NS_ASSERT_INT_EQ(c.header_timeout_ms, 10000);
    /* Zero is allowed where it has a meaning: decide at once, reset at once. */
    NS_ASSERT_INT_EQ(c.sniff_timeout_ms, 0);
    NS_ASSERT_INT_EQ(c.drain_timeout_ms, 0);
    NS_ASSERT_INT_EQ(c.request_timeout_ms, 1500);
    /* No request timeout at all (the default): long polls and streams are left alone. */
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--request-timeout=15s", "--request-timeout=0"), 0);
    NS_ASSERT_INT_EQ(c.request_timeout_ms, 0);
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--ejection-time=1ms"), 0);
    NS_ASSERT_INT_EQ(c.ejection_time_ms, 1);
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--ejection-time", "24h"), 0);
    NS_ASSERT_INT_EQ(c.ejection_time_ms, 24 * 3600 * 1000);
}

static void test_bools_paths_logs(void)
{
    static const struct {
        const char *s;
        bool v;
    } bools[] = {{"on", true},   {"true", true},   {"1", true},
                 {"off", false}, {"false", false}, {"0", false}};
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        char splice[32], trace[32];
        snprintf(splice, sizeof(splice), "--splice=%s", bools[i].s);
        snprintf(trace, sizeof(trace), "--trace=%s", bools[i].s);
        px_config c;
        ns_err err;
        NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, splice, trace), 0);
        NS_ASSERT_INT_EQ(c.splice, bools[i].v);
        NS_ASSERT_INT_EQ(c.trace, bools[i].v);
    }
    px_config c;
    ns_err err;
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--routes-file=/etc/nutshell/routes.json",
                           "--log-level=debug", "--log-format=json"),
                     0);
    NS_ASSERT_STR_EQ(c.routes_file, "/etc/nutshell/routes.json");
    NS_ASSERT_INT_EQ(c.log_level, NS_LOG_DEBUG);
    NS_ASSERT_INT_EQ(c.log_format, NS_LOG_JSON);
    static const struct {
        const char *s;
        ns_log_level v;
    } levels[] = {{"debug", NS_LOG_DEBUG},
                  {"info", NS_LOG_INFO},
                  {"warn", NS_LOG_WARN},
                  {"warning", NS_LOG_WARN},
                  {"error", NS_LOG_ERROR}};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--log-level", levels[i].s, "--log-format=text"), 0);
        NS_ASSERT_INT_EQ(c.log_level, levels[i].v);
        NS_ASSERT_INT_EQ(c.log_format, NS_LOG_TEXT);
    }
    /* An empty value clears the file. */
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--routes-file=/x", "--routes-file="), 0);
    NS_ASSERT_STR_EQ(c.routes_file, "");
}

static void test_discovery_flags(void)
{
    px_config c;
    ns_err err;
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err,
                           "--discovery-address=nutshell-operator.nutshell-system.svc:15010",
                           "--discovery-wait=300s"),
                     0);
    NS_ASSERT_STR_EQ(c.discovery_address, "nutshell-operator.nutshell-system.svc:15010");
    NS_ASSERT_INT_EQ(c.discovery_wait_s, 300);
    NS_ASSERT_INT_EQ(
        PARSE(&c, NULL, &err, "--discovery-address", "[fd00::1]:15010", "--discovery-wait", "1s"),
        0);
    NS_ASSERT_STR_EQ(c.discovery_address, "[fd00::1]:15010");
    NS_ASSERT_INT_EQ(c.discovery_wait_s, 1);
    NS_ASSERT_INT_EQ(
        PARSE(&c, NULL, &err, "--discovery-address=10.1.2.3:15010", "--discovery-wait=2m"), 0);
    NS_ASSERT_STR_EQ(c.discovery_address, "10.1.2.3:15010");
    NS_ASSERT_INT_EQ(c.discovery_wait_s, 120);
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--discovery-wait=45", "--discovery-wait=2000ms"), 0);
    NS_ASSERT_INT_EQ(c.discovery_wait_s, 2);
    /* Empty: no discovery. */
    NS_ASSERT_INT_EQ(
        PARSE(&c, NULL, &err, "--discovery-address=10.1.2.3:1", "--discovery-address="), 0);
    NS_ASSERT_STR_EQ(c.discovery_address, "");
}

/* Each bad value: the message names the flag and quotes the value (or says why). */
static void test_bad_values(void)
{
    char long_path[PATH_MAX + 20];
    memcpy(long_path, "--routes-file=", 14);
    memset(long_path + 14, 'a', PATH_MAX);
    long_path[14 + PATH_MAX] = '\0';
    const struct {
        const char *arg, *msg;
    } cases[] = {
        {"--outbound-port=0", "--outbound-port: \"0\" is not a valid port"},
        {"--inbound-port=65536", "--inbound-port: \"65536\" is not a valid port"},
        {"--admin-port=http", "--admin-port: \"http\" is not a valid port"},
        {"--admin-port=", "--admin-port: \"\" is not a valid port"},
        {"--admin-address=localhost", "--admin-address: \"localhost\" is not an IPv4 or IPv6"},
        {"--admin-address=10.0.0.1:80", "--admin-address: \"10.0.0.1:80\" is not an IPv4"},
        {"--inbound-source=[::6]", "--inbound-source: \"[::6]\" is not an IPv4 or IPv6"},
        {"--concurrency=257", "--concurrency: \"257\" is not a number from 0 to 256"},
        {"--concurrency=-1", "--concurrency: \"-1\" is not a number from 0 to 256"},
        {"--max-connections=0", "--max-connections: \"0\" is not a number from 1 to 1000000"},
        {"--max-head-size=1023", "--max-head-size: \"1023\" is not a number from 1024 to 1048576"},
        {"--buffer-size=1048577", "--buffer-size: \"1048577\" is not a number from 1024"},
        {"--buffer-size=16k", "--buffer-size: \"16k\" is not a number"},
        {"--connect-timeout=5x", "--connect-timeout: \"5x\" is not a duration"},
        {"--idle-timeout=", "--idle-timeout: \"\" is not a duration"},
        {"--http-idle-timeout=1d", "--http-idle-timeout: \"1d\" is not a duration"},
        {"--header-timeout=-1s", "--header-timeout: \"-1s\" is not a duration"},
        {"--sniff-timeout=1.5s", "--sniff-timeout: \"1.5s\" is not a duration"},
        {"--drain-timeout=forever", "--drain-timeout: \"forever\" is not a duration"},
        {"--request-timeout=-1s", "--request-timeout: \"-1s\" is not a duration"},
        {"--request-timeout=", "--request-timeout: \"\" is not a duration"},
        {"--max-retries=11", "--max-retries: \"11\" is not a number from 0 to 10"},
        {"--max-retries=-1", "--max-retries: \"-1\" is not a number from 0 to 10"},
        {"--max-retries=two", "--max-retries: \"two\" is not a number"},
        {"--ejection-time=soon", "--ejection-time: \"soon\" is not a duration"},
        {"--splice=yes", "--splice: \"yes\" is not on or off"},
        {"--trace=", "--trace: \"\" is not on or off"},
        {long_path, "--routes-file: path too long"},
        {"--log-level=verbose", "--log-level: \"verbose\" is not one of debug, info, warn, error"},
        {"--log-format=xml", "--log-format: \"xml\" is not text or json"},
        {"--discovery-address=operator", "--discovery-address: \"operator\": no port"},
        {"--discovery-address=fd00::1:15010", "--discovery-address: \"fd00::1:15010\": an IPv6"},
        {"--discovery-address=http://op:15010", "--discovery-address: \"http://op:15010\""},
        {"--discovery-address=op:0", "--discovery-address: \"op:0\": \"0\" is not a port"},
        {"--discovery-wait=0s", "--discovery-wait: \"0s\" is not a whole number of seconds from "
                                "1s to 300s"},
        {"--discovery-wait=301s", "--discovery-wait: \"301s\" is not a whole number"},
        {"--discovery-wait=6m", "--discovery-wait: \"6m\" is not a whole number"},
        {"--discovery-wait=1500ms", "--discovery-wait: \"1500ms\" is not a whole number"},
        {"--discovery-wait=soon", "--discovery-wait: \"soon\" is not a whole number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        px_config c;
        ns_err err;
        int rc = PARSE(&c, NULL, &err, cases[i].arg);
        NS_ASSERT_INT_EQ(rc, -EINVAL);
        if (!strstr(err.msg, cases[i].msg))
            fprintf(stderr, "\n  %.60s: message \"%s\",\n  expected \"%s\" in it\n", cases[i].arg,
                    err.msg, cases[i].msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, cases[i].msg));
    }
}

static void test_command_line_shape(void)
{
    px_config c;
    ns_err err;
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--no-such-flag=1"), -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "unknown flag --no-such-flag");
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--admin"), -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "unknown flag --admin");
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "serve"), -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "unexpected argument \"serve\"");
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "-admin-port=1"), -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "unexpected argument \"-admin-port=1\"");
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--trace=on", "--concurrency"), -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "--concurrency needs a value");
    /* A flag without "=" takes the next argument, whatever it looks like. */
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--splice", "--trace=off"), -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "--splice: \"--trace=off\" is not on or off");

    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--help"), 1);
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--trace=off", "-h", "--bogus"), 1);
    /* Arguments are read in order: an error before --help is reported. */
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--bogus", "--help"), -EINVAL);
}

static void test_cross_checks(void)
{
    px_config c;
    ns_err err;
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--inbound-port=15001"), -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "--outbound-port, --inbound-port and --admin-port must differ "
                              "(15001, 15001, 15020)");
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--admin-port=15001"), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "must differ (15001, 15006, 15001)"));
    NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, "--outbound-port=15020"), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "must differ"));

    static const char *const zero[] = {"--connect-timeout=0s", "--header-timeout=0",
                                       "--idle-timeout=0ms", "--http-idle-timeout=0h"};
    for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++) {
        NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, zero[i]), -EINVAL);
        NS_ASSERT_STR_EQ(err.msg, "connect, header and idle timeouts must be above zero");
    }
    static const char *const ejection[] = {"--ejection-time=0", "--ejection-time=25h"};
    for (size_t i = 0; i < sizeof(ejection) / sizeof(ejection[0]); i++) {
        NS_ASSERT_INT_EQ(PARSE(&c, NULL, &err, ejection[i]), -EINVAL);
        NS_ASSERT_STR_EQ(err.msg, "--ejection-time: must be from 1ms to 24h");
    }

    /* One source of route tables. */
    NS_ASSERT_INT_EQ(
        PARSE(&c, NULL, &err, "--routes-file=/r.json", "--discovery-address=op.svc:15010"),
        -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "--routes-file"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "--discovery-address"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "cannot be used together"));
    static const env_var env[] = {{"NUTSHELL_DISCOVERY_ADDRESS", "op.svc:15010"}, {NULL, NULL}};
    NS_ASSERT_INT_EQ(PARSE(&c, env, &err, "--routes-file=/r.json"), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "NUTSHELL_DISCOVERY_ADDRESS"));
    /* ... unless the flag clears what the environment says. */
    NS_ASSERT_INT_EQ(PARSE(&c, env, &err, "--routes-file=/r.json", "--discovery-address="), 0);
    NS_ASSERT_STR_EQ(c.routes_file, "/r.json");
    NS_ASSERT_STR_EQ(c.discovery_address, "");
}

static void test_environment(void)
{
    px_config c;
    ns_err err;
    static const env_var env[] = {{"POD_NAMESPACE", "shop"},
                                  {"NUTSHELL_LOG_LEVEL", "warn"},
                                  {"NUTSHELL_LOG_FORMAT", "json"},
                                  {"NUTSHELL_DISCOVERY_ADDRESS", "[fd00::5]:15010"},
                                  {NULL, NULL}};
    NS_ASSERT_INT_EQ(parse_with(&c, env, &err, NULL), 0);
    NS_ASSERT_STR_EQ(c.pod_namespace, "shop");
    NS_ASSERT_INT_EQ(c.log_level, NS_LOG_WARN);
    NS_ASSERT_INT_EQ(c.log_format, NS_LOG_JSON);
    NS_ASSERT_STR_EQ(c.discovery_address, "[fd00::5]:15010");
    /* Flags win over the environment. */
    NS_ASSERT_INT_EQ(PARSE(&c, env, &err, "--log-level=error", "--log-format=text",
                           "--discovery-address=op.svc:1"),
                     0);
    NS_ASSERT_INT_EQ(c.log_level, NS_LOG_ERROR);
    NS_ASSERT_INT_EQ(c.log_format, NS_LOG_TEXT);
    NS_ASSERT_STR_EQ(c.discovery_address, "op.svc:1");
    NS_ASSERT_STR_EQ(c.pod_namespace, "shop");

    /* Empty variables count as unset. */
    static const env_var empty[] = {{"NUTSHELL_LOG_LEVEL", ""},
                                    {"NUTSHELL_LOG_FORMAT", ""},
                                    {"NUTSHELL_DISCOVERY_ADDRESS", ""},
                                    {"POD_NAMESPACE", ""},
                                    {NULL, NULL}};
    NS_ASSERT_INT_EQ(parse_with(&c, empty, &err, NULL), 0);
    NS_ASSERT_INT_EQ(c.log_level, NS_LOG_INFO);
    NS_ASSERT_INT_EQ(c.log_format, NS_LOG_TEXT);
    NS_ASSERT_STR_EQ(c.discovery_address, "");
    NS_ASSERT_STR_EQ(c.pod_namespace, "");

    /* Bad values name the variable. */
    static const struct {
        env_var env[2];
        const char *msg;
    } bad[] = {
        {{{"NUTSHELL_LOG_LEVEL", "loud"}, {NULL, NULL}},
         "NUTSHELL_LOG_LEVEL: \"loud\" is not one of debug, info, warn, error"},
        {{{"NUTSHELL_LOG_FORMAT", "yaml"}, {NULL, NULL}},
         "NUTSHELL_LOG_FORMAT: \"yaml\" is not text or json"},
        {{{"NUTSHELL_DISCOVERY_ADDRESS", "op.svc"}, {NULL, NULL}},
         "NUTSHELL_DISCOVERY_ADDRESS: \"op.svc\": no port"},
        {{{"POD_NAMESPACE", "a-namespace-name-that-is-much-longer-than-sixty-four-characters-x"},
          {NULL, NULL}},
         "POD_NAMESPACE: \"a-namespace-name"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        NS_ASSERT_INT_EQ(parse_with(&c, bad[i].env, &err, NULL), -EINVAL);
        if (!strstr(err.msg, bad[i].msg))
            fprintf(stderr, "\n  message \"%s\", expected \"%s\" in it\n", err.msg, bad[i].msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].msg));
    }
    /* The longest namespace Kubernetes allows (63) fits. */
    static const env_var ns63[] = {
        {"POD_NAMESPACE", "abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefgh"},
        {NULL, NULL}};
    NS_ASSERT_INT_EQ(strlen(ns63[0].value), 63);
    NS_ASSERT_INT_EQ(parse_with(&c, ns63, &err, NULL), 0);
    NS_ASSERT_STR_EQ(c.pod_namespace, ns63[0].value);
    /* A bad variable is refused even when a flag would replace it: the pod spec that
     * set it gets fixed rather than carried along. */
    NS_ASSERT_INT_EQ(PARSE(&c, bad[0].env, &err, "--log-level=info"), -EINVAL);
}

/* Every flag the parser knows is in --help, and every flag --help shows is known. */
static void test_usage_matches_flags(void)
{
    static const char *const good[] = {
        "--outbound-port=1",    "--inbound-port=2",
        "--admin-port=3",       "--admin-address=::1",
        "--inbound-source=::6", "--concurrency=4",
        "--max-connections=5",  "--max-head-size=2048",
        "--buffer-size=4096",   "--connect-timeout=1s",
        "--idle-timeout=1s",    "--http-idle-timeout=1s",
        "--header-timeout=1s",  "--sniff-timeout=1s",
        "--drain-timeout=1s",   "--request-timeout=1s",
        "--max-retries=1",      "--ejection-time=1s",
        "--splice=off",         "--trace=off",
        "--routes-file=/r",     "--discovery-address=a:1",
        "--discovery-wait=1s",  "--log-level=warn",
        "--log-format=json",
    };
    const char *usage = px_config_usage();
    size_t shown = 0;
    for (const char *p = usage; (p = strstr(p, "  --")); p += 4)
        shown++;
    NS_ASSERT_INT_EQ(shown, sizeof(good) / sizeof(good[0]));
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        px_config c;
        ns_err err;
        int rc = PARSE(&c, NULL, &err, good[i]);
        if (rc)
            fprintf(stderr, "\n  %s: %s\n", good[i], err.msg);
        NS_ASSERT_INT_EQ(rc, 0);
        char name[64];
        size_t n = strcspn(good[i], "=");
        snprintf(name, sizeof(name), "  %.*s=", (int)n, good[i]);
        if (!strstr(usage, name))
            fprintf(stderr, "\n  %s is not in the usage text\n", name);
        CU_ASSERT_PTR_NOT_NULL(strstr(usage, name));
    }
}

const ns_test config_tests[] = {
    {"defaults", test_defaults},
    {"ports and addresses", test_ports_and_addresses},
    {"numbers", test_numbers},
    {"durations", test_durations},
    {"switches, paths, logs", test_bools_paths_logs},
    {"discovery flags", test_discovery_flags},
    {"bad values named", test_bad_values},
    {"command line shape", test_command_line_shape},
    {"checks across flags", test_cross_checks},
    {"environment", test_environment},
    {"usage lists every flag", test_usage_matches_flags},
    {NULL, NULL},
};

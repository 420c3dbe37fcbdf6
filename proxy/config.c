/* config.c - nutshell-proxy's flags and environment. */
#include "config.h"

#include "http1.h"
#include "strconv.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

void px_config_defaults(px_config *c)
{
    memset(c, 0, sizeof(*c));
    c->outbound_port = 15001;
    c->inbound_port = 15006;
    c->admin_port = 15020;
    memcpy(c->admin_address, "0.0.0.0", sizeof("0.0.0.0"));
    c->max_connections = 16384;
    c->max_head = PX_H1_MAX_HEAD;
    c->buffer_size = 16384;
    c->connect_timeout_ms = 5000;
    c->idle_timeout_ms = 3600 * 1000;
    c->http_idle_timeout_ms = 3600 * 1000;
    c->header_timeout_ms = 30 * 1000;
    c->sniff_timeout_ms = 1000;
    c->drain_timeout_ms = 5000;
    c->request_timeout_ms = 0;
    c->max_retries = 2;
    c->ejection_time_ms = 30 * 1000;
    c->splice = true;
    c->trace = true;
    c->discovery_wait_s = PX_DISC_WAIT_DEFAULT;
    memcpy(c->inbound_source, "127.0.0.6", sizeof("127.0.0.6"));
    c->log_level = NS_LOG_INFO;
    c->log_format = NS_LOG_TEXT;
}

int px_parse_duration_ms(const char *s, int64_t *out)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}, {"", 1000}};
    if (!s || !*s)
        return -EINVAL;
    size_t digits = strspn(s, "0123456789");
    if (digits == 0 || digits > 12)
        return -EINVAL;
    char num[16];
    memcpy(num, s, digits);
    num[digits] = '\0';
    int64_t v;
    if (ns_parse_i64(num, 0, INT64_MAX, &v) != 0)
        return -EINVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(s + digits, units[i].unit) == 0) {
            *out = v * units[i].ms;
            return 0;
        }
    }
    return -EINVAL;
}

static int parse_bool(const char *s, bool *out)
{
    if (strcmp(s, "on") == 0 || strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
        *out = true;
    else if (strcmp(s, "off") == 0 || strcmp(s, "false") == 0 || strcmp(s, "0") == 0)
        *out = false;
    else
        return -EINVAL;
    return 0;
}

static int copy_str(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap)
        return -EINVAL;
    memcpy(dst, s, n + 1);
    return 0;
}

static bool is_ip(const char *s)
{
    unsigned char tmp[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

enum {
    F_PORT,
    F_ADDR,
    F_UINT,
    F_DURATION,
    F_BOOL,
    F_PATH,
    F_SECONDS, /* a duration in whole seconds from min to max, kept as unsigned seconds */
    F_DISCOVERY,
    F_LOG_LEVEL,
    F_LOG_FORMAT,
};

typedef struct flag {
    const char *name;
    int kind;
    size_t offset;
    uint32_t min, max; /* F_UINT, F_SECONDS */
} flag;

#define OFF(field) offsetof(px_config, field)
static const flag flags[] = {
    {"outbound-port", F_PORT, OFF(outbound_port), 0, 0},
    {"inbound-port", F_PORT, OFF(inbound_port), 0, 0},
    {"admin-port", F_PORT, OFF(admin_port), 0, 0},
    {"admin-address", F_ADDR, OFF(admin_address), 0, 0},
    {"inbound-source", F_ADDR, OFF(inbound_source), 0, 0},
    {"concurrency", F_UINT, OFF(concurrency), 0, 256},
    {"max-connections", F_UINT, OFF(max_connections), 1, 1000000},
    {"max-head-size", F_UINT, OFF(max_head), 1024, 1024 * 1024},
    {"buffer-size", F_UINT, OFF(buffer_size), 1024, 1024 * 1024},
    {"connect-timeout", F_DURATION, OFF(connect_timeout_ms), 0, 0},
    {"idle-timeout", F_DURATION, OFF(idle_timeout_ms), 0, 0},
    {"http-idle-timeout", F_DURATION, OFF(http_idle_timeout_ms), 0, 0},
    {"header-timeout", F_DURATION, OFF(header_timeout_ms), 0, 0},
    {"sniff-timeout", F_DURATION, OFF(sniff_timeout_ms), 0, 0},
    {"drain-timeout", F_DURATION, OFF(drain_timeout_ms), 0, 0},
    {"request-timeout", F_DURATION, OFF(request_timeout_ms), 0, 0},
    {"max-retries", F_UINT, OFF(max_retries), 0, 10},
    {"ejection-time", F_DURATION, OFF(ejection_time_ms), 0, 0},
    {"splice", F_BOOL, OFF(splice), 0, 0},
    {"trace", F_BOOL, OFF(trace), 0, 0},
    {"routes-file", F_PATH, OFF(routes_file), 0, 0},
    {"discovery-address", F_DISCOVERY, OFF(discovery_address), 0, 0},
    {"discovery-wait", F_SECONDS, OFF(discovery_wait_s), PX_DISC_WAIT_MIN, PX_DISC_WAIT_MAX},
    {"log-level", F_LOG_LEVEL, OFF(log_level), 0, 0},
    {"log-format", F_LOG_FORMAT, OFF(log_format), 0, 0},
};

/* Sets one flag from its text; the message names the flag and the value. */
static int set_flag(px_config *c, const flag *f, const char *v, ns_err *err)
{
    char *base = (char *)c + f->offset;
    int rc = 0;
    switch (f->kind) {
    case F_PORT:
        rc = ns_parse_port(v, (uint16_t *)(void *)base);
        if (rc)
            return ns_errorf(err, -EINVAL, "--%s: \"%s\" is not a valid port (expected 1-65535)",
                             f->name, v);
        return 0;
    case F_ADDR:
        if (!is_ip(v) || copy_str(base, 64, v) != 0)
            return ns_errorf(err, -EINVAL, "--%s: \"%s\" is not an IPv4 or IPv6 address", f->name,
                             v);
        return 0;
    case F_UINT: {
        uint32_t u;
        rc = ns_parse_u32(v, f->max, &u);
        if (rc || u < f->min)
            return ns_errorf(err, -EINVAL, "--%s: \"%s\" is not a number from %u to %u", f->name, v,
                             f->min, f->max);
        if (f->offset == OFF(concurrency) || f->offset == OFF(max_connections))
            *(unsigned *)(void *)base = u;
        else
            *(uint32_t *)(void *)base = u;
        return 0;
    }
    case F_DURATION: {
        int64_t ms;
        if (px_parse_duration_ms(v, &ms) != 0)
            return ns_errorf(err, -EINVAL,
                             "--%s: \"%s\" is not a duration (a number with ms, s, m or h)",
                             f->name, v);
        *(int64_t *)(void *)base = ms;
        return 0;
    }
    case F_BOOL:
        if (parse_bool(v, (bool *)(void *)base) != 0)
            return ns_errorf(err, -EINVAL, "--%s: \"%s\" is not on or off", f->name, v);
        return 0;
    case F_PATH:
        if (copy_str(base, PATH_MAX, v) != 0)
            return ns_errorf(err, -EINVAL, "--%s: path too long", f->name);
        return 0;
    case F_SECONDS: {
        int64_t ms;
        if (px_parse_duration_ms(v, &ms) != 0 || ms % 1000 != 0 || ms / 1000 < f->min ||
            ms / 1000 > f->max)
            return ns_errorf(err, -EINVAL,
                             "--%s: \"%s\" is not a whole number of seconds from %us to %us",
                             f->name, v, f->min, f->max);
        *(unsigned *)(void *)base = (unsigned)(ms / 1000);
        return 0;
    }
    case F_DISCOVERY: {
        px_disc_addr a;
        ns_err aerr = {0};
        if (*v && px_disc_parse_address(v, &a, &aerr) != 0)
            return ns_errorf(err, -EINVAL, "--%s: \"%.300s\": %s", f->name, v, aerr.msg);
        memcpy(base, v, strlen(v) + 1); /* fits: the parser refuses longer */
        return 0;
    }
    case F_LOG_LEVEL:
        if (ns_log_level_parse(v, (ns_log_level *)(void *)base) != 0)
            return ns_errorf(err, -EINVAL, "--%s: \"%s\" is not one of debug, info, warn, error",
                             f->name, v);
        return 0;
    default:
        if (ns_log_format_parse(v, (ns_log_format *)(void *)base) != 0)
            return ns_errorf(err, -EINVAL, "--%s: \"%s\" is not text or json", f->name, v);
        return 0;
    }
}

static const flag *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        if (strlen(flags[i].name) == len && memcmp(flags[i].name, name, len) == 0)
            return &flags[i];
    return NULL;
}

int px_config_parse(px_config *c, int argc, char **argv, const char *(*getenv_fn)(const char *),
                    ns_err *err)
{
    if (getenv_fn) {
        const char *ns = getenv_fn("POD_NAMESPACE");
        if (ns && copy_str(c->pod_namespace, sizeof(c->pod_namespace), ns) != 0)
            return ns_errorf(err, -EINVAL, "POD_NAMESPACE: \"%.80s\" is too long", ns);
        const char *lv = getenv_fn("NUTSHELL_LOG_LEVEL");
        if (lv && *lv && ns_log_level_parse(lv, &c->log_level) != 0)
            return ns_errorf(err, -EINVAL,
                             "NUTSHELL_LOG_LEVEL: \"%.80s\" is not one of debug, info, warn, error",
                             lv);
        const char *lf = getenv_fn("NUTSHELL_LOG_FORMAT");
        if (lf && *lf && ns_log_format_parse(lf, &c->log_format) != 0)
            return ns_errorf(err, -EINVAL, "NUTSHELL_LOG_FORMAT: \"%.80s\" is not text or json",
                             lf);
        const char *da = getenv_fn("NUTSHELL_DISCOVERY_ADDRESS");
        if (da && *da) {
            px_disc_addr a;
            ns_err aerr = {0};
            if (px_disc_parse_address(da, &a, &aerr) != 0)
                return ns_errorf(err, -EINVAL, "NUTSHELL_DISCOVERY_ADDRESS: \"%.300s\": %s", da,
                                 aerr.msg);
            memcpy(c->discovery_address, da, strlen(da) + 1);
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (strncmp(a, "--", 2) != 0)
            return ns_errorf(err, -EINVAL, "unexpected argument \"%.100s\"", a);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const flag *f = find_flag(name, nlen);
        if (!f)
            return ns_errorf(err, -EINVAL, "unknown flag --%.*s", (int)(nlen > 100 ? 100 : nlen),
                             name);
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc)
                return ns_errorf(err, -EINVAL, "--%s needs a value", f->name);
            v = argv[++i];
        }
        int rc = set_flag(c, f, v, err);
        if (rc)
            return rc;
    }
    if (c->outbound_port == c->inbound_port || c->outbound_port == c->admin_port ||
        c->inbound_port == c->admin_port)
        return ns_errorf(
            err, -EINVAL,
            "--outbound-port, --inbound-port and --admin-port must differ (%u, %u, %u)",
            c->outbound_port, c->inbound_port, c->admin_port);
    /* Two sources of tables would overwrite each other's; a pod that gets
     * NUTSHELL_DISCOVERY_ADDRESS from the injector can still use a file with
     * --discovery-address= (empty). */
    if (c->routes_file[0] && c->discovery_address[0])
        return ns_errorf(err, -EINVAL,
                         "--routes-file and --discovery-address (or NUTSHELL_DISCOVERY_ADDRESS) "
                         "cannot be used together");
    if (c->connect_timeout_ms <= 0 || c->header_timeout_ms <= 0 || c->idle_timeout_ms <= 0 ||
        c->http_idle_timeout_ms <= 0)
        return ns_errorf(err, -EINVAL, "connect, header and idle timeouts must be above zero");
    if (c->ejection_time_ms <= 0 || c->ejection_time_ms > 24 * 3600 * 1000)
        return ns_errorf(err, -EINVAL, "--ejection-time: must be from 1ms to 24h");
    return 0;
}

const char *px_config_usage(void)
{
    return "usage: nutshell-proxy [flags]           run the sidecar\n"
           "       nutshell-proxy wait [--timeout=60s] [--admin-port=15020]\n"
           "                                         wait until the local proxy is ready\n"
           "       nutshell-proxy version\n"
           "\n"
           "flags (defaults in brackets; durations take ms, s, m or h):\n"
           "  --outbound-port=PORT       outbound capture listener [15001]\n"
           "  --inbound-port=PORT        inbound capture listener [15006]\n"
           "  --admin-port=PORT          admin server [15020]\n"
           "  --admin-address=IP         admin server address [0.0.0.0]\n"
           "  --inbound-source=IP        source of connections to the app [127.0.0.6]\n"
           "  --concurrency=N            event loop threads; 0 = one per usable CPU [0]\n"
           "  --max-connections=N        accepted connections at once [16384]\n"
           "  --max-head-size=BYTES      largest HTTP head (431 above) [65536]\n"
           "  --buffer-size=BYTES        read buffer per socket [16384]\n"
           "  --connect-timeout=D        upstream connect [5s]\n"
           "  --idle-timeout=D           TCP connection without traffic [1h]\n"
           "  --http-idle-timeout=D      keep-alive connection between requests [1h]\n"
           "  --header-timeout=D         reading one request head (slowloris) [30s]\n"
           "  --sniff-timeout=D          deciding whether a connection speaks HTTP [1s]\n"
           "  --drain-timeout=D          SIGTERM or /quitquitquit: wait for work [5s]\n"
           "  --request-timeout=D        request head sent to response head, then 504;\n"
           "                             0 = none [0]\n"
           "  --max-retries=N            retries of a routed request, 0..10 [2]\n"
           "  --ejection-time=D          a failing route backend's first ejection [30s]\n"
           "  --splice=on|off            opaque TCP through splice(2) [on]\n"
           "  --trace=on|off             traceparent/B3 span per request [on]\n"
           "  --routes-file=FILE         static route table (JSON), re-read on SIGHUP\n"
           "  --discovery-address=HOST:PORT\n"
           "                             the operator's route discovery server; empty = none\n"
           "  --discovery-wait=D         long-poll wait asked of it, 1s..300s [30s]\n"
           "  --log-level=LEVEL          debug, info, warn, error [info]\n"
           "  --log-format=FORMAT        text or json [text]\n"
           "environment: POD_NAMESPACE, NUTSHELL_LOG_LEVEL, NUTSHELL_LOG_FORMAT,\n"
           "  NUTSHELL_DISCOVERY_ADDRESS (flags win)\n"
           "signals: SIGTERM/SIGINT drain and exit 0; SIGHUP re-reads --routes-file\n"
           "exit codes: 0 drained, 1 runtime failure, 2 bad usage\n";
}

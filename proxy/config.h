/* config.h - nutshell-proxy's command line (pure: argv and environment in, settings out).
 *
 * Every setting has a default that matches the mesh's public contract (DESIGN.md: ports
 * 15001, 15006, 15020; UID 1337 is the container's business, not a flag). Durations take
 * a unit: "250ms", "5s", "2m", "1h".
 */
#ifndef PX_CONFIG_H
#define PX_CONFIG_H

#include "discovery.h"
#include "err.h"
#include "log.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct px_config {
    uint16_t outbound_port; /* 15001: connections captured by NUTSHELL_REDIRECT */
    uint16_t inbound_port;  /* 15006: connections captured by NUTSHELL_IN_REDIRECT */
    uint16_t admin_port;    /* 15020: /healthz/ready, /metrics, /stats, /quitquitquit */
    char admin_address[64]; /* "0.0.0.0": the kubelet probes the pod IP */
    unsigned concurrency;   /* event loop threads; 0 = the CPUs this process may use */
    unsigned max_connections;
    uint32_t max_head;    /* largest HTTP head accepted (431 above) */
    uint32_t buffer_size; /* per socket read buffer */
    int64_t connect_timeout_ms;
    int64_t idle_timeout_ms;      /* TCP connection with no traffic either way */
    int64_t http_idle_timeout_ms; /* keep-alive connection between requests */
    int64_t header_timeout_ms;    /* from the first byte of a request head to its end */
    int64_t sniff_timeout_ms;     /* longest wait for bytes that decide HTTP or not */
    int64_t drain_timeout_ms;     /* SIGTERM: longest wait for in-flight work */
    /* From the end of a request head to its response head (504 after); 0 = none. */
    int64_t request_timeout_ms;
    uint32_t max_retries;       /* per routed request (connect failure, 503, reset); 0 = none */
    int64_t ejection_time_ms;   /* a route backend's first ejection (then 2x, 3x... 10x) */
    bool splice;                /* relay opaque TCP with splice(2) through a pipe */
    bool trace;                 /* add a span to traceparent/B3 of forwarded requests */
    char routes_file[PATH_MAX]; /* "" = no static route table */
    /* The operator's route discovery server, HOST:PORT ("" = none; exclusive with
     * routes_file), and the long-poll wait asked of it. */
    char discovery_address[PX_DISC_ADDR_MAX];
    unsigned discovery_wait_s;
    char inbound_source[64]; /* source address of connections to the app: 127.0.0.6 */
    char pod_namespace[64];  /* $POD_NAMESPACE: resolves short Host names in routes */
    ns_log_level log_level;
    ns_log_format log_format;
} px_config;

void px_config_defaults(px_config *c);

/* Parses "NUMBER[ms|s|m|h]" (a bare number is seconds) into milliseconds. Returns 0 or
 * -EINVAL. */
int px_parse_duration_ms(const char *s, int64_t *out);

/* Reads `argv` (argv[0] is the program) and the environment (`getenv_fn`, NULL for
 * none; POD_NAMESPACE, NUTSHELL_LOG_LEVEL, NUTSHELL_LOG_FORMAT,
 * NUTSHELL_DISCOVERY_ADDRESS: an empty variable counts as unset, a flag overrides its
 * variable) over the defaults. Returns 0, 1 if --help was asked (usage printed by the
 * caller), or -EINVAL with a message naming the flag (or variable) and the value. */
int px_config_parse(px_config *c, int argc, char **argv, const char *(*getenv_fn)(const char *),
                    ns_err *err);

/* The --help text. */
const char *px_config_usage(void);

#endif

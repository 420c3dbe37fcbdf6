/* config.h - nutshell-init's settings: flags and NUTSHELL_* environment variables, parsed and
 * checked. */
#ifndef NSI_CONFIG_H
#define NSI_CONFIG_H

#include "err.h"
#include "log.h"
#include "strconv.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits keep the config a plain value (no allocation); a pod annotation listing more is refused
 * with a message rather than truncated. */
#define NSI_MAX_PORTS 256
#define NSI_MAX_CIDRS 256
#define NSI_MAX_IDS   16

typedef struct nsi_ports {
    bool all; /* "*" */
    size_t n;
    uint16_t v[NSI_MAX_PORTS];
} nsi_ports;

typedef struct nsi_cidrs {
    bool all; /* "*" */
    size_t n;
    ns_cidr v[NSI_MAX_CIDRS];
} nsi_cidrs;

typedef struct nsi_ids {
    size_t n;
    uint32_t v[NSI_MAX_IDS];
} nsi_ids;

typedef enum nsi_ipv6_mode {
    NSI_IPV6_AUTO = 0, /* program ip6tables if the namespace has a global IPv6 address */
    NSI_IPV6_ON,
    NSI_IPV6_OFF,
} nsi_ipv6_mode;

typedef enum nsi_action {
    NSI_ACT_APPLY = 0,
    NSI_ACT_CLEANUP,
    NSI_ACT_HELP,
    NSI_ACT_VERSION,
} nsi_action;

typedef struct nsi_config {
    uint16_t proxy_port;   /* outbound capture, NUTSHELL_REDIRECT --to-ports */
    uint16_t inbound_port; /* inbound capture, NUTSHELL_IN_REDIRECT --to-ports */
    uint16_t tunnel_port;  /* Istio's HBONE port (15008) kept out of capture; 0 = none */
    nsi_ids uids;          /* proxy identities whose traffic is never captured */
    nsi_ids gids;
    nsi_ports include_inbound;
    nsi_ports exclude_inbound; /* only used when include_inbound.all (Istio semantics) */
    nsi_ports include_outbound_ports;
    nsi_ports exclude_outbound_ports;
    nsi_cidrs include_outbound; /* empty: capture only include_outbound_ports */
    nsi_cidrs exclude_outbound;
    nsi_ipv6_mode ipv6;
    nsi_action action;
    bool dry_run;
    ns_log_format log_format;
} nsi_config;

/* Looks an environment variable up; returns NULL when unset. `ctx` is passed through, so tests
 * can hand in a fixed table instead of the process environment. */
typedef const char *(*nsi_getenv_fn)(const char *name, void *ctx);

/* Fills `c` with Nutshell's defaults: the injector's arguments minus the 15090 exclusion, i.e.
 * Istio's `-p 15001 -z 15006 -u 1337 -g 1337 -m REDIRECT -i '*' -b '*' -d 15020`, IPv6 auto. */
void nsi_config_defaults(nsi_config *c);

/* Parses argv[1..argc-1] over the defaults, after the NUTSHELL_* variables read through
 * `get` (which may be NULL: no environment). A flag wins over its variable. Each value is
 * checked strictly; on error returns -EINVAL and `err` names the flag or variable and the
 * offending value, and `c` is left partly filled (do not use it). Returns 0 on success; for
 * --help/--version it returns 0 with c->action set and skips checking the other values. */
int nsi_config_parse(nsi_config *c, int argc, char *const argv[], nsi_getenv_fn get, void *ctx,
                     ns_err *err);

/* The --help text (flags, environment variables, exit codes). Static storage. */
const char *nsi_config_usage(void);

#endif

/* config.h - the injector's sidecar template settings, read from a JSON file that the
 * operator writes from the Mesh resource (or a user writes by hand).
 *
 * Every field has a documented default (docs/injector.md), so a missing file or a
 * missing key still yields a complete configuration.
 */
#ifndef INJ_CONFIG_H
#define INJ_CONFIG_H

#include "err.h"

#include <stdbool.h>
#include <stdint.h>

#define INJ_STR_MAX 256

typedef struct inj_resources {
    char cpu_request[32];
    char memory_request[32];
    char cpu_limit[32];
    char memory_limit[32];
} inj_resources;

typedef struct inj_config {
    char revision[64];
    char proxy_image[INJ_STR_MAX];
    char init_image[INJ_STR_MAX];
    char image_pull_policy[16];
    char log_level[16];
    char discovery_address[INJ_STR_MAX]; /* where sidecars fetch route tables */
    inj_resources proxy_resources;
    inj_resources init_resources;
    bool native_sidecar;
    bool hold_application;
    uint16_t outbound_port; /* 15001 */
    uint16_t inbound_port;  /* 15006 */
    uint16_t admin_port;    /* 15020 */
    uint32_t proxy_uid;     /* 1337 */
    uint32_t proxy_gid;     /* 1337 */
    /* traffic defaults, in the annotations' syntax (comma lists, "*" for all) */
    char include_inbound_ports[INJ_STR_MAX];
    char exclude_inbound_ports[INJ_STR_MAX];
    char exclude_outbound_ports[INJ_STR_MAX];
    char include_outbound_cidrs[INJ_STR_MAX];
    char exclude_outbound_cidrs[INJ_STR_MAX];
} inj_config;

/* Fills *cfg with the built-in defaults. */
void inj_config_defaults(inj_config *cfg);

/* Overlays the settings in JSON text `json` onto *cfg (start from defaults). Unknown
 * keys are ignored for forward compatibility; known keys with bad values are an error
 * naming the key. Returns 0 or -EINVAL. */
int inj_config_parse(inj_config *cfg, const char *json, size_t len, ns_err *err);

/* Defaults, then the file at `path` if it exists. A missing file is not an error (the
 * operator may not have written it yet); an unreadable or invalid one is. */
int inj_config_load(inj_config *cfg, const char *path, ns_err *err);

#endif

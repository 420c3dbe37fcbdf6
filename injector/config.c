/* config.c - sidecar template settings: built-in defaults overlaid by a JSON file. */
#include "config.h"

#include "json.h"
#include "files.h"
#include "validate.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_FILE_MAX (256 * 1024)

void inj_config_defaults(inj_config *cfg)
{
    *cfg = (inj_config){
        .revision = "default",
        .proxy_image = "nutshell/proxy:" NUTSHELL_VERSION,
        .init_image = "nutshell/proxy:" NUTSHELL_VERSION,
        .image_pull_policy = "IfNotPresent",
        .log_level = "info",
        .discovery_address = "nutshell-operator.nutshell-system.svc:15010",
        .proxy_resources = {"10m", "16Mi", "1", "64Mi"},
        .init_resources = {"10m", "8Mi", "100m", "32Mi"},
        .outbound_port = 15001,
        .inbound_port = 15006,
        .admin_port = 15020,
        .proxy_uid = 1337,
        .proxy_gid = 1337,
        .include_inbound_ports = "*",
        .include_outbound_cidrs = "*",
    };
}

/* Copies a string setting if present; `check` (may be NULL) validates it. */
typedef bool (*str_check_fn)(const char *);

static bool quantity_ok(const char *s)
{
    double v;
    return inj_quantity_parse(s, &v) == 0;
}

static bool pull_policy_ok(const char *s)
{
    return !strcmp(s, "Always") || !strcmp(s, "IfNotPresent") || !strcmp(s, "Never");
}

static int take_str(const cJSON *obj, const char *key, const char *where, char *dst, size_t len,
                    str_check_fn check, ns_err *err)
{
    const cJSON *v = ns_json_get(obj, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= len || (check && !check(v->valuestring)))
        return ns_errorf(err, -EINVAL, "config %s%s: invalid value", where, key);
    memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

static int take_bool(const cJSON *obj, const char *key, const char *where, bool *dst, ns_err *err)
{
    const cJSON *v = ns_json_get(obj, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsBool(v))
        return ns_errorf(err, -EINVAL, "config %s%s: must be true or false", where, key);
    *dst = cJSON_IsTrue(v);
    return 0;
}

static int take_resources(const cJSON *obj, const char *where, inj_resources *r, ns_err *err)
{
    const cJSON *res = ns_json_get(obj, "resources");
    const cJSON *req = ns_json_get(res, "requests"), *lim = ns_json_get(res, "limits");
    int rc = 0;
    if (!rc)
        rc = take_str(req, "cpu", where, r->cpu_request, sizeof(r->cpu_request), quantity_ok, err);
    if (!rc)
        rc = take_str(req, "memory", where, r->memory_request, sizeof(r->memory_request),
                      quantity_ok, err);
    if (!rc)
        rc = take_str(lim, "cpu", where, r->cpu_limit, sizeof(r->cpu_limit), quantity_ok, err);
    if (!rc)
        rc = take_str(lim, "memory", where, r->memory_limit, sizeof(r->memory_limit), quantity_ok,
                      err);
    return rc;
}

static int take_list(const cJSON *obj, const char *key, char *dst, size_t len, bool cidr,
                     bool allow_star, ns_err *err)
{
    int rc = take_str(obj, key, "traffic.", dst, len, NULL, err);
    if (rc)
        return rc;
    ns_err why = {0};
    rc = cidr ? inj_cidr_list_check(dst, allow_star, &why)
              : inj_port_list_check(dst, allow_star, &why);
    if (rc)
        return ns_errorf(err, rc, "config traffic.%s: %s", key, why.msg);
    return 0;
}

int inj_config_parse(inj_config *cfg, const char *json, size_t len, ns_err *err)
{
    cJSON *root;
    int rc = ns_json_parse(json, len, &root, err);
    if (rc)
        return rc;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ns_errorf(err, -EINVAL, "config must be a JSON object");
    }
    inj_config c = *cfg;
    const cJSON *proxy = ns_json_get(root, "proxy");
    const cJSON *init = ns_json_get(root, "init");
    const cJSON *traffic = ns_json_get(root, "traffic");

    rc = take_str(root, "revision", "", c.revision, sizeof(c.revision), NULL, err);
    if (!rc)
        rc = take_str(root, "discoveryAddress", "", c.discovery_address,
                      sizeof(c.discovery_address), NULL, err);
    if (!rc)
        rc = take_str(proxy, "image", "proxy.", c.proxy_image, sizeof(c.proxy_image),
                      inj_image_valid, err);
    if (!rc)
        rc = take_str(proxy, "imagePullPolicy", "proxy.", c.image_pull_policy,
                      sizeof(c.image_pull_policy), pull_policy_ok, err);
    if (!rc)
        rc = take_str(proxy, "logLevel", "proxy.", c.log_level, sizeof(c.log_level),
                      inj_log_level_valid, err);
    if (!rc)
        rc = take_bool(proxy, "nativeSidecar", "proxy.", &c.native_sidecar, err);
    if (!rc)
        rc = take_bool(proxy, "holdApplication", "proxy.", &c.hold_application, err);
    if (!rc)
        rc = take_resources(proxy, "proxy.resources.", &c.proxy_resources, err);
    if (!rc)
        rc = take_str(init, "image", "init.", c.init_image, sizeof(c.init_image), inj_image_valid,
                      err);
    if (!rc)
        rc = take_resources(init, "init.resources.", &c.init_resources, err);
    if (!rc)
        rc = take_list(traffic, "includeInboundPorts", c.include_inbound_ports,
                       sizeof(c.include_inbound_ports), false, true, err);
    if (!rc)
        rc = take_list(traffic, "excludeInboundPorts", c.exclude_inbound_ports,
                       sizeof(c.exclude_inbound_ports), false, false, err);
    if (!rc)
        rc = take_list(traffic, "excludeOutboundPorts", c.exclude_outbound_ports,
                       sizeof(c.exclude_outbound_ports), false, false, err);
    if (!rc)
        rc = take_list(traffic, "includeOutboundCIDRs", c.include_outbound_cidrs,
                       sizeof(c.include_outbound_cidrs), true, true, err);
    if (!rc)
        rc = take_list(traffic, "excludeOutboundCIDRs", c.exclude_outbound_cidrs,
                       sizeof(c.exclude_outbound_cidrs), true, false, err);
    cJSON_Delete(root);
    if (rc == 0)
        *cfg = c;
    return rc;
}

int inj_config_load(inj_config *cfg, const char *path, ns_err *err)
{
    inj_config_defaults(cfg);
    if (!path || !*path)
        return 0;
    char *text;
    size_t len;
    ns_err rerr = {0};
    int rc = ns_read_file(path, CONFIG_FILE_MAX, &text, &len, &rerr);
    if (rc == -ENOENT)
        return 0;
    if (rc)
        return ns_errorf(err, rc, "%s", rerr.msg);
    if (len == 0) { /* an empty file (or /dev/null) means "all defaults" */
        free(text);
        return 0;
    }
    rc = inj_config_parse(cfg, text, len, err);
    free(text);
    if (rc && err) {
        char why[NS_ERR_MSG_MAX];
        snprintf(why, sizeof(why), "%s", err->msg);
        ns_errorf(err, rc, "%s: %s", path, why);
    }
    return rc;
}

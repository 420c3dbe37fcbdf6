/* annotations.c - pod annotations overlaid on the injector config. */
#include "annotations.h"

#include "json.h"
#include "strconv.h"
#include "validate.h"

#include <stdio.h>
#include <string.h>

#define PROXY_PREFIX   "proxy.nutshell.io/"
#define TRAFFIC_PREFIX "traffic.nutshell.io/"

typedef enum kind { K_IMAGE, K_QUANTITY, K_LOG_LEVEL, K_BOOL, K_PORTS, K_CIDRS } kind;

/* What each known annotation sets. `star` allows "*"; `merge` appends to the config
 * default instead of replacing it (exclusions add up, inclusions replace). */
typedef struct known {
    const char *key;
    kind kind;
    size_t offset; /* into inj_settings */
    size_t size;
    bool star, merge;
} known;

#define FIELD(f) offsetof(inj_settings, f), sizeof(((inj_settings *)0)->f)

static const known known_annotations[] = {
    {PROXY_PREFIX "image", K_IMAGE, FIELD(image), false, false},
    {PROXY_PREFIX "cpu-request", K_QUANTITY, FIELD(resources.cpu_request), false, false},
    {PROXY_PREFIX "memory-request", K_QUANTITY, FIELD(resources.memory_request), false, false},
    {PROXY_PREFIX "cpu-limit", K_QUANTITY, FIELD(resources.cpu_limit), false, false},
    {PROXY_PREFIX "memory-limit", K_QUANTITY, FIELD(resources.memory_limit), false, false},
    {PROXY_PREFIX "log-level", K_LOG_LEVEL, FIELD(log_level), false, false},
    {PROXY_PREFIX "native-sidecar", K_BOOL, FIELD(native_sidecar), false, false},
    {PROXY_PREFIX "hold-application", K_BOOL, FIELD(hold_application), false, false},
    {TRAFFIC_PREFIX "include-inbound-ports", K_PORTS, FIELD(include_inbound_ports), true, false},
    {TRAFFIC_PREFIX "exclude-inbound-ports", K_PORTS, FIELD(exclude_inbound_ports), false, true},
    {TRAFFIC_PREFIX "exclude-outbound-ports", K_PORTS, FIELD(exclude_outbound_ports), false, true},
    {TRAFFIC_PREFIX "include-outbound-cidrs", K_CIDRS, FIELD(include_outbound_cidrs), true, false},
    {TRAFFIC_PREFIX "exclude-outbound-cidrs", K_CIDRS, FIELD(exclude_outbound_cidrs), false, true},
};

#define N_KNOWN (sizeof(known_annotations) / sizeof(known_annotations[0]))

static void copy_str(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src);
}

static void defaults_from_config(const inj_config *cfg, inj_settings *s)
{
    *s = (inj_settings){0};
    copy_str(s->image, sizeof(s->image), cfg->proxy_image);
    copy_str(s->log_level, sizeof(s->log_level), cfg->log_level);
    s->resources = cfg->proxy_resources;
    s->native_sidecar = cfg->native_sidecar;
    s->hold_application = cfg->hold_application;
    copy_str(s->include_inbound_ports, INJ_LIST_MAX, cfg->include_inbound_ports);
    copy_str(s->exclude_inbound_ports, INJ_LIST_MAX, cfg->exclude_inbound_ports);
    copy_str(s->exclude_outbound_ports, INJ_LIST_MAX, cfg->exclude_outbound_ports);
    copy_str(s->include_outbound_cidrs, INJ_LIST_MAX, cfg->include_outbound_cidrs);
    copy_str(s->exclude_outbound_cidrs, INJ_LIST_MAX, cfg->exclude_outbound_cidrs);
}

/* Validates `value` for annotation `k` and stores it. */
static int apply_one(const known *k, const char *value, inj_settings *s, ns_err *err)
{
    char *field = (char *)s + k->offset;
    ns_err why = {0};
    double q;
    switch (k->kind) {
    case K_IMAGE:
        if (!inj_image_valid(value))
            return ns_errorf(err, -EINVAL, "annotation %s: \"%.64s\" is not a container image",
                             k->key, value);
        break;
    case K_QUANTITY:
        if (inj_quantity_parse(value, &q) != 0 || strlen(value) >= k->size)
            return ns_errorf(err, -EINVAL,
                             "annotation %s: \"%.64s\" is not a resource quantity (such as 100m "
                             "or 64Mi)",
                             k->key, value);
        break;
    case K_LOG_LEVEL:
        if (!inj_log_level_valid(value))
            return ns_errorf(err, -EINVAL,
                             "annotation %s: \"%.64s\" is not one of debug, info, warn, error",
                             k->key, value);
        break;
    case K_BOOL:
        if (inj_bool_parse(value, (bool *)field) != 0)
            return ns_errorf(err, -EINVAL, "annotation %s: \"%.64s\" must be \"true\" or \"false\"",
                             k->key, value);
        return 0;
    case K_PORTS:
    case K_CIDRS: {
        int rc = k->kind == K_PORTS ? inj_port_list_check(value, k->star, &why)
                                    : inj_cidr_list_check(value, k->star, &why);
        if (rc)
            return ns_errorf(err, rc, "annotation %s: %s", k->key, why.msg);
        /* Stored canonical ("a,b,c") so that nutshell-init sees one spelling. */
        size_t used = k->merge ? strlen(field) : 0;
        const char *cur = value;
        char item[64];
        int n;
        while ((n = ns_list_next(&cur, item, sizeof(item))) > 0) {
            int w = snprintf(field + used, k->size - used, "%s%s", used ? "," : "", item);
            if (w < 0 || (size_t)w >= k->size - used)
                return ns_errorf(err, -EINVAL, "annotation %s: list too long", k->key);
            used += (size_t)w;
        }
        field[used] = '\0';
        return 0;
    }
    }
    if (strlen(value) >= k->size)
        return ns_errorf(err, -EINVAL, "annotation %s: value too long", k->key);
    memcpy(field, value, strlen(value) + 1);
    return 0;
}

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Requests above limits would be refused by the API server with a message about the
 * container, not the annotation; say it in our words first. */
static int check_request_within_limit(const char *what, const char *req, const char *lim,
                                      ns_err *err)
{
    double r, l;
    if (!*req || !*lim || inj_quantity_parse(req, &r) || inj_quantity_parse(lim, &l))
        return 0;
    if (r > l)
        return ns_errorf(err, -EINVAL,
                         "proxy %s request %s is above its limit %s (annotations "
                         "proxy.nutshell.io/%s-request and -limit)",
                         what, req, lim, what);
    return 0;
}

int inj_settings_resolve(const inj_config *cfg, const cJSON *annotations, inj_settings *out,
                         cJSON *warnings, ns_err *err)
{
    inj_settings s;
    defaults_from_config(cfg, &s);
    const cJSON *a;
    cJSON_ArrayForEach(a, (cJSON_IsObject(annotations) ? annotations : NULL))
    {
        if (!has_prefix(a->string, PROXY_PREFIX) && !has_prefix(a->string, TRAFFIC_PREFIX))
            continue;
        const known *k = NULL;
        for (size_t i = 0; i < N_KNOWN && !k; i++)
            if (strcmp(a->string, known_annotations[i].key) == 0)
                k = &known_annotations[i];
        if (!k) {
            char msg[320];
            snprintf(msg, sizeof(msg), "nutshell: unknown annotation %.200s is ignored", a->string);
            cJSON *w = cJSON_CreateString(msg);
            if (!w || !cJSON_AddItemToArray(warnings, w)) {
                cJSON_Delete(w);
                return -ENOMEM;
            }
            continue;
        }
        if (!cJSON_IsString(a))
            return ns_errorf(err, -EINVAL, "annotation %s: value must be a string", k->key);
        int rc = apply_one(k, a->valuestring, &s, err);
        if (rc)
            return rc;
    }
    int rc = check_request_within_limit("cpu", s.resources.cpu_request, s.resources.cpu_limit, err);
    if (!rc)
        rc = check_request_within_limit("memory", s.resources.memory_request,
                                        s.resources.memory_limit, err);
    if (rc)
        return rc;
    *out = s;
    return 0;
}

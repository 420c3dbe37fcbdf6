/* annotations.h - per-pod overrides: the effective sidecar settings for one pod, from
 * the injector config and the pod's proxy.nutshell.io/ and traffic.nutshell.io/
 * annotations.
 *
 * Rule: a value we cannot honour is an error naming the annotation (the pod is refused
 * with that message); a key under our prefixes that we do not know is a warning (most
 * likely a typo the user wants to hear about), and is otherwise ignored.
 */
#ifndef INJ_ANNOTATIONS_H
#define INJ_ANNOTATIONS_H

#include "config.h"
#include "err.h"

#include <cjson/cJSON.h>

#define INJ_LIST_MAX 1024

typedef struct inj_settings {
    char image[INJ_STR_MAX];
    char log_level[16];
    inj_resources resources;
    bool native_sidecar;
    bool hold_application;
    char include_inbound_ports[INJ_LIST_MAX];
    char exclude_inbound_ports[INJ_LIST_MAX];
    char exclude_outbound_ports[INJ_LIST_MAX];
    char include_outbound_cidrs[INJ_LIST_MAX];
    char exclude_outbound_cidrs[INJ_LIST_MAX];
} inj_settings;

/* Resolves the settings for a pod whose metadata.annotations is `annotations` (may be
 * NULL). Appends warning strings to the JSON array `warnings`. Returns 0, or -EINVAL
 * with err naming the annotation and the value, or -ENOMEM. */
int inj_settings_resolve(const inj_config *cfg, const cJSON *annotations, inj_settings *out,
                         cJSON *warnings, ns_err *err);

#endif

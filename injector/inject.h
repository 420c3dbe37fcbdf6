/* inject.h - the heart of the injector: a pod in, a JSON Patch out. Pure: no I/O.
 *
 * Given the injector config and a Pod (or a pod template: anything with metadata and
 * spec), decides whether the pod is in scope and, if so, builds the RFC 6902 patch that
 * adds the nutshell-init init container, the nutshell-proxy sidecar (a regular
 * container, or a native sidecar: an init container with restartPolicy Always), their
 * volumes and the nutshell.io/status annotation.
 */
#ifndef INJ_INJECT_H
#define INJ_INJECT_H

#include "config.h"
#include "err.h"

#include <cjson/cJSON.h>

#define INJ_INIT_NAME         "nutshell-init"
#define INJ_PROXY_NAME        "nutshell-proxy"
#define INJ_STATUS_ANNOTATION "nutshell.io/status"
#define INJ_INJECT_LABEL      "nutshell.io/inject"

typedef enum inj_outcome {
    INJ_PATCHED,  /* patch holds the operations to apply */
    INJ_SKIPPED,  /* out of scope or already injected; reason says why */
    INJ_REJECTED, /* the pod asks for something we cannot do; reason says what */
} inj_outcome;

typedef struct inj_result {
    inj_outcome outcome;
    cJSON *patch;    /* JSON array of operations (PATCHED), else NULL */
    cJSON *warnings; /* JSON array of strings, never NULL after inj_pod returns 0 */
    char reason[NS_ERR_MSG_MAX];
} inj_result;

/* Decides and builds the patch for `pod` in `namespace` (the namespace may be NULL for
 * a template outside any namespace). Returns 0 with *out filled (free with
 * inj_result_free), or -ENOMEM. Malformed pods (no spec.containers) are REJECTED. */
int inj_pod(const inj_config *cfg, const cJSON *pod, const char *namespace, inj_result *out);

void inj_result_free(inj_result *r);

/* True for the namespaces that are never injected (kube-system, kube-public,
 * kube-node-lease, nutshell-system). */
bool inj_namespace_excluded(const char *namespace);

#endif

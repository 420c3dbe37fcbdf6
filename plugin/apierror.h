/* apierror.h - one sentence for a failed API call, kubectl's way: the Canary that does
 * not exist, a Canary CRD that is not installed, a refusal, an unreachable server. Pure. */
#ifndef KN_APIERROR_H
#define KN_APIERROR_H

#include "buf.h"
#include "kube.h"

/* Appends the message (no "Error: " prefix, no newline) for `rc` (a negative errno from
 * a kube.h call) and `st` (may be NULL) about the Canary `name` (NULL: the collection)
 * in `namespace` (NULL: all namespaces), with `server` (may be NULL) named when it could
 * not be reached. */
void kn_api_error(int rc, const ns_kube_status *st, const char *name, const char *namespace,
                  const char *server, ns_buf *out);

#endif

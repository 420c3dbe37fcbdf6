/* apierror.c - messages for failed API calls. */
#include "apierror.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void kn_api_error(int rc, const ns_kube_status *st, const char *name, const char *namespace,
                  const char *server, ns_buf *out)
{
    const char *msg = st && st->message[0] ? st->message : strerror(rc < 0 ? -rc : rc);
    if (st && st->http == 404) {
        /* A missing Canary comes with a Status naming it; a missing resource type (the CRD
         * is not installed) with the server's plain "404 page not found". */
        char needle[300];
        snprintf(needle, sizeof(needle), "\"%s\" not found", name ? name : "");
        if (name && strstr(st->message, needle)) {
            ns_buf_printf(out, "canary \"%s\" not found in namespace \"%s\"", name,
                          namespace ? namespace : "");
            return;
        }
        ns_buf_puts(out, "the server doesn't have the resource type canaries.nutshell.io "
                         "(is the Canary CRD installed? kubectl apply -f "
                         "manifests/crds/canaries.nutshell.io.yaml)");
        return;
    }
    /* No answer, and not a request refused before sending (a name the path cannot hold). */
    if ((!st || st->http == 0) && rc != -EINVAL && rc != -ENOMEM) {
        ns_buf_printf(out, "cannot reach the API server%s%s: %s", server ? " at " : "",
                      server ? server : "", msg);
        return;
    }
    ns_buf_puts(out, msg);
}

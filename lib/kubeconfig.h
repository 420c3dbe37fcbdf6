/* kubeconfig.h - where the Kubernetes API server is and how to authenticate to it: from a
 * kubeconfig file or from the pod's service account (in-cluster).
 *
 * Parsing is pure (text in, config out, no file reads) so that it can be unit-tested and
 * fuzzed; the loaders around it find and read the files. Nothing here logs, and error
 * messages name files and kubeconfig entries, never tokens or key material.
 */
#ifndef NS_KUBECONFIG_H
#define NS_KUBECONFIG_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>

/* Where the kubelet mounts a pod's service-account credentials. */
#define NS_KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* Credentials and endpoint of one API server. Every string is malloc'd and owned by the
 * config (free with ns_kube_config_free); NULL means "not set". PEM material set from a
 * *-data field lives in memory (`*_pem`, `*_len`); material named by a file keeps the
 * path (`*_file`, absolute or relative to the process's working directory), which the
 * client reads on every new connection, so rotated files are picked up. */
typedef struct ns_kube_config {
    char *server;          /* "https://host:port" with any path prefix, no trailing '/' */
    char *tls_server_name; /* name to verify the server certificate against, or NULL */
    char *ca_file;         /* CA bundle file (certificate-authority) */
    char *ca_pem;          /* CA bundle PEM (certificate-authority-data) */
    size_t ca_len;
    char *cert_file; /* client certificate chain (client-certificate) */
    char *cert_pem;  /* (client-certificate-data) */
    size_t cert_len;
    char *key_file; /* client key (client-key) */
    char *key_pem;  /* (client-key-data) */
    size_t key_len;
    char *token;      /* bearer token (token), used when token_file is NULL */
    char *token_file; /* bearer token file (tokenFile, or the service-account token),
                       * re-read by the client whenever the file changes */
    bool insecure_skip_tls_verify;
    char *namespace;    /* the context's namespace (in-cluster: the pod's); "default" if unset */
    char *context_name; /* the context that was used (NULL in-cluster) */
} ns_kube_config;

/* Frees every member and zeroes *cfg. Accepts NULL. */
void ns_kube_config_free(ns_kube_config *cfg);

/* Deep-copies `src` into *dst. Returns 0 or -ENOMEM (then *dst is zeroed). */
int ns_kube_config_copy(const ns_kube_config *src, ns_kube_config *dst);

/* Parses kubeconfig YAML `text` (`len` bytes) and fills *out from context `context`, or
 * from the file's current-context when `context` is NULL or "". Relative file names
 * (certificate-authority, client-certificate, client-key, tokenFile) are resolved against
 * `base_dir` (the kubeconfig's directory; NULL leaves them as written), as kubectl does.
 * Base64 *-data fields are decoded. Where a file and its -data are both given, -data wins
 * and the file is dropped. A `token` and a `tokenFile` both set: tokenFile wins.
 *
 * Returns 0 and fills *out (free with ns_kube_config_free), or, with *out zeroed:
 * -EINVAL for YAML that is not a kubeconfig, a missing or unknown context, cluster or
 * user, no server, bad base64, or an http(s)-less server; -ENOTSUP for a user that only
 * has an exec plugin or an auth-provider (not supported); -ENOMEM. */
int ns_kubeconfig_parse(const char *text, size_t len, const char *context, const char *base_dir,
                        ns_kube_config *out, ns_err *err);

/* The kubeconfig file kubectl would read: the first non-empty entry of the colon-separated
 * $KUBECONFIG, else $HOME/.kube/config. Writes it into `path` (`size` bytes). Returns 0,
 * -ENOENT when neither KUBECONFIG nor HOME is set, -ENAMETOOLONG. Does not check that the
 * file exists. */
int ns_kubeconfig_default_path(char *path, size_t size);

/* Reads and parses the kubeconfig at `path` (NULL: ns_kubeconfig_default_path) with
 * `context` (NULL: current-context). Returns what ns_kubeconfig_parse returns, or -errno
 * when the file cannot be read. */
int ns_kubeconfig_load(const char *path, const char *context, ns_kube_config *out, ns_err *err);

/* In-cluster config from a service-account directory `sa_dir` (NULL: NS_KUBE_SA_DIR,
 * holding token, ca.crt, namespace) and the API server address `host`/`port` (NULL: the
 * KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT variables; an IPv6 host gets brackets).
 * The token is referenced by file (so rotations are followed) and must be readable now.
 * Returns 0, -ENOENT when not running in a cluster (no host/port, or no token file),
 * -EINVAL for a bad port, -errno for unreadable files, -ENOMEM. */
int ns_kube_config_in_cluster(const char *sa_dir, const char *host, const char *port,
                              ns_kube_config *out, ns_err *err);

/* The config a controller would use, in controller-runtime's order: the kubeconfig at
 * `kubeconfig_path` if not NULL; else $KUBECONFIG if set; else in-cluster if
 * KUBERNETES_SERVICE_HOST is set; else ~/.kube/config. Returns what the chosen loader
 * returns. */
int ns_kube_config_auto(const char *kubeconfig_path, const char *context, ns_kube_config *out,
                        ns_err *err);

/* Decodes standard base64 with padding (RFC 4648 section 4), ignoring ASCII white space,
 * as Go's encoding/base64 does for kubeconfig's []byte fields. On success *out is a
 * malloc'd buffer of *out_len bytes plus a NUL (caller frees). Returns 0, -EINVAL or
 * -ENOMEM. */
int ns_base64_decode(const char *s, size_t len, char **out, size_t *out_len);

#endif

/* kubeconfig.c - kubeconfig parsing and in-cluster service-account configuration. */
#include "kubeconfig.h"

#include "files.h"
#include "json.h"
#include "strconv.h"
#include "yamljson.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A kubeconfig bigger than this is not one. */
#define KUBECONFIG_MAX (4u << 20)
/* Service-account files (token, namespace) are small. */
#define SA_FILE_MAX (64u << 10)

static void free_secret(char *p, size_t len)
{
    if (p) {
        explicit_bzero(p, len);
        free(p);
    }
}

void ns_kube_config_free(ns_kube_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->server);
    free(cfg->tls_server_name);
    free(cfg->ca_file);
    free(cfg->ca_pem);
    free(cfg->cert_file);
    free(cfg->cert_pem);
    free(cfg->key_file);
    free_secret(cfg->key_pem, cfg->key_len);
    free_secret(cfg->token, cfg->token ? strlen(cfg->token) : 0);
    free(cfg->token_file);
    free(cfg->namespace);
    free(cfg->context_name);
    *cfg = (ns_kube_config){0};
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Copies a string member; returns false on allocation failure. */
static bool copy_str(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return true;
    *dst = strdup(src);
    return *dst != NULL;
}

static bool copy_bytes(char **dst, size_t *dlen, const char *src, size_t len)
{
    *dst = NULL;
    *dlen = 0;
    if (!src)
        return true;
    *dst = dup_n(src, len);
    if (!*dst)
        return false;
    *dlen = len;
    return true;
}

int ns_kube_config_copy(const ns_kube_config *src, ns_kube_config *dst)
{
    *dst = (ns_kube_config){.insecure_skip_tls_verify = src->insecure_skip_tls_verify};
    bool ok = copy_str(&dst->server, src->server) &&
              copy_str(&dst->tls_server_name, src->tls_server_name) &&
              copy_str(&dst->ca_file, src->ca_file) &&
              copy_bytes(&dst->ca_pem, &dst->ca_len, src->ca_pem, src->ca_len) &&
              copy_str(&dst->cert_file, src->cert_file) &&
              copy_bytes(&dst->cert_pem, &dst->cert_len, src->cert_pem, src->cert_len) &&
              copy_str(&dst->key_file, src->key_file) &&
              copy_bytes(&dst->key_pem, &dst->key_len, src->key_pem, src->key_len) &&
              copy_str(&dst->token, src->token) && copy_str(&dst->token_file, src->token_file) &&
              copy_str(&dst->namespace, src->namespace) &&
              copy_str(&dst->context_name, src->context_name);
    if (!ok) {
        ns_kube_config_free(dst);
        return -ENOMEM;
    }
    return 0;
}

/* ---- base64 ---- */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

int ns_base64_decode(const char *s, size_t len, char **out, size_t *out_len)
{
    size_t cap = len / 4 * 3 + 3;
    unsigned char *d = malloc(cap);
    if (!d)
        return -ENOMEM;
    size_t n = 0, pad = 0, quad = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_space(c))
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad) /* not base64, or data after padding */
            goto bad;
        acc = acc << 6 | (uint32_t)v;
        if (++quad == 4) {
            d[n++] = (unsigned char)(acc >> 16);
            d[n++] = (unsigned char)(acc >> 8);
            d[n++] = (unsigned char)acc;
            acc = 0;
            quad = 0;
        }
    }
    /* A final group of 2 or 3 characters must be padded to 4; a full one must not be. */
    if (quad == 0 && pad != 0)
        goto bad;
    if (quad == 1 || (quad && quad + pad != 4))
        goto bad;
    if (quad == 2) {
        d[n++] = (unsigned char)(acc >> 4);
    } else if (quad == 3) {
        d[n++] = (unsigned char)(acc >> 10);
        d[n++] = (unsigned char)(acc >> 2);
    }
    d[n] = '\0';
    *out = (char *)d;
    *out_len = n;
    return 0;
bad:
    free_secret((char *)d, cap);
    return -EINVAL;
}

/* ---- kubeconfig ---- */

/* The `sub` object ("cluster", "user", "context") of the entry named `name` in the
 * kubeconfig list `list` ("clusters", ...), or NULL. */
static const cJSON *named_entry(const cJSON *root, const char *list, const char *name,
                                const char *sub)
{
    const cJSON *arr = ns_json_get(root, list);
    const cJSON *it;
    if (!cJSON_IsArray(arr))
        return NULL;
    cJSON_ArrayForEach(it, arr)
    {
        const char *n = ns_json_str(it, "name");
        if (n && strcmp(n, name) == 0) {
            const cJSON *s = ns_json_get(it, sub);
            /* "user: {}" or "user:" (null) are both an empty entry. */
            static const cJSON empty = {.type = cJSON_Object};
            return cJSON_IsObject(s) ? s : &empty;
        }
    }
    return NULL;
}

/* Sets *dst to `path` resolved against `base_dir`. Returns 0 or -ENOMEM. */
static int resolve_path(char **dst, const char *path, const char *base_dir)
{
    if (path[0] == '/' || !base_dir || !base_dir[0]) {
        *dst = strdup(path);
        return *dst ? 0 : -ENOMEM;
    }
    size_t bl = strlen(base_dir), pl = strlen(path);
    bool slash = base_dir[bl - 1] == '/';
    char *p = malloc(bl + pl + 2);
    if (!p)
        return -ENOMEM;
    memcpy(p, base_dir, bl);
    if (!slash)
        p[bl++] = '/';
    memcpy(p + bl, path, pl + 1);
    *dst = p;
    return 0;
}

/* Reads a file field and its -data twin from `obj`: -data (base64) into *pem and *pem_len,
 * else the file into *file. Returns 0, -EINVAL (bad base64 or type) or -ENOMEM. */
static int file_or_data(const cJSON *obj, const char *file_key, const char *data_key,
                        const char *base_dir, char **file, char **pem, size_t *pem_len,
                        const char *what, const char *entry, ns_err *err)
{
    const cJSON *data = ns_json_get(obj, data_key);
    if (data && !cJSON_IsNull(data)) {
        if (!cJSON_IsString(data))
            return ns_errorf(err, -EINVAL, "%s \"%s\": %s must be a base64 string", what, entry,
                             data_key);
        int rc = ns_base64_decode(data->valuestring, strlen(data->valuestring), pem, pem_len);
        if (rc == -EINVAL)
            return ns_errorf(err, rc, "%s \"%s\": %s is not valid base64", what, entry, data_key);
        return rc;
    }
    const cJSON *f = ns_json_get(obj, file_key);
    if (!f || cJSON_IsNull(f) || (cJSON_IsString(f) && f->valuestring[0] == '\0'))
        return 0;
    if (!cJSON_IsString(f))
        return ns_errorf(err, -EINVAL, "%s \"%s\": %s must be a file name", what, entry, file_key);
    return resolve_path(file, f->valuestring, base_dir);
}

/* A string field that may be absent; a non-string is an error. */
static int opt_string(const cJSON *obj, const char *key, const char **out, const char *what,
                      const char *entry, ns_err *err)
{
    const cJSON *v = ns_json_get(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v))
        return ns_errorf(err, -EINVAL, "%s \"%s\": %s must be a string", what, entry, key);
    *out = v->valuestring;
    return 0;
}

static int parse_cluster(const cJSON *cluster, const char *name, const char *base_dir,
                         ns_kube_config *out, ns_err *err)
{
    const char *server, *tls_name;
    int rc = opt_string(cluster, "server", &server, "cluster", name, err);
    if (rc == 0)
        rc = opt_string(cluster, "tls-server-name", &tls_name, "cluster", name, err);
    if (rc)
        return rc;
    if (!server || !server[0])
        return ns_errorf(err, -EINVAL, "cluster \"%s\" has no server", name);
    size_t scheme = strncmp(server, "https://", 8) == 0  ? 8
                    : strncmp(server, "http://", 7) == 0 ? 7
                                                         : 0;
    if (!scheme)
        return ns_errorf(err, -EINVAL, "cluster \"%s\": server must be an http(s) URL", name);
    if (server[scheme] == '\0' || server[scheme] == '/')
        return ns_errorf(err, -EINVAL, "cluster \"%s\": server \"%s\" has no host", name, server);
    size_t sl = strlen(server);
    while (sl > scheme && server[sl - 1] == '/') /* "https://host/" is "https://host" */
        sl--;
    out->server = dup_n(server, sl);
    if (!out->server || (tls_name && tls_name[0] && !(out->tls_server_name = strdup(tls_name))))
        return -ENOMEM;
    const cJSON *insecure = ns_json_get(cluster, "insecure-skip-tls-verify");
    if (insecure && !cJSON_IsBool(insecure) && !cJSON_IsNull(insecure))
        return ns_errorf(err, -EINVAL, "cluster \"%s\": insecure-skip-tls-verify must be a boolean",
                         name);
    out->insecure_skip_tls_verify = cJSON_IsTrue(insecure);
    rc = file_or_data(cluster, "certificate-authority", "certificate-authority-data", base_dir,
                      &out->ca_file, &out->ca_pem, &out->ca_len, "cluster", name, err);
    if (rc)
        return rc;
    if (out->insecure_skip_tls_verify && (out->ca_file || out->ca_pem))
        return ns_errorf(err, -EINVAL,
                         "cluster \"%s\": a certificate authority together with "
                         "insecure-skip-tls-verify is not allowed",
                         name);
    return 0;
}

static int parse_user(const cJSON *user, const char *name, const char *base_dir,
                      ns_kube_config *out, ns_err *err)
{
    int rc = file_or_data(user, "client-certificate", "client-certificate-data", base_dir,
                          &out->cert_file, &out->cert_pem, &out->cert_len, "user", name, err);
    if (rc == 0)
        rc = file_or_data(user, "client-key", "client-key-data", base_dir, &out->key_file,
                          &out->key_pem, &out->key_len, "user", name, err);
    if (rc)
        return rc;
    bool has_cert = out->cert_file || out->cert_pem;
    bool has_key = out->key_file || out->key_pem;
    if (has_cert != has_key)
        return ns_errorf(err, -EINVAL, "user \"%s\": %s without %s", name,
                         has_cert ? "client certificate" : "client key",
                         has_cert ? "client key" : "client certificate");

    const char *token, *token_file;
    rc = opt_string(user, "token", &token, "user", name, err);
    if (rc == 0)
        rc = opt_string(user, "tokenFile", &token_file, "user", name, err);
    if (rc)
        return rc;
    if (token_file && token_file[0]) {
        rc = resolve_path(&out->token_file, token_file, base_dir);
        if (rc)
            return rc;
    } else if (token && token[0]) {
        out->token = strdup(token);
        if (!out->token)
            return -ENOMEM;
    }
    bool has_token = out->token || out->token_file;
    if (!has_cert && !has_token) {
        if (ns_json_get(user, "exec"))
            return ns_errorf(err, -ENOTSUP,
                             "user \"%s\" uses an exec credential plugin, which is not supported",
                             name);
        if (ns_json_get(user, "auth-provider"))
            return ns_errorf(err, -ENOTSUP,
                             "user \"%s\" uses an auth-provider, which is not supported", name);
    }
    return 0;
}

static int parse_root(const cJSON *root, const char *context, const char *base_dir,
                      ns_kube_config *out, ns_err *err)
{
    if (!cJSON_IsObject(root))
        return ns_errorf(err, -EINVAL, "kubeconfig is not a YAML mapping");
    const char *kind = ns_json_str(root, "kind");
    if (kind && strcmp(kind, "Config") != 0)
        return ns_errorf(err, -EINVAL, "kubeconfig has kind \"%s\", expected Config", kind);

    const char *ctx_name = context && context[0] ? context : ns_json_str(root, "current-context");
    if (!ctx_name || !ctx_name[0])
        return ns_errorf(err, -EINVAL, "kubeconfig has no current-context and none was given");
    const cJSON *ctx = named_entry(root, "contexts", ctx_name, "context");
    if (!ctx)
        return ns_errorf(err, -EINVAL, "context \"%s\" not found in kubeconfig", ctx_name);

    const char *cluster_name, *user_name, *ns;
    int rc = opt_string(ctx, "cluster", &cluster_name, "context", ctx_name, err);
    if (rc == 0)
        rc = opt_string(ctx, "user", &user_name, "context", ctx_name, err);
    if (rc == 0)
        rc = opt_string(ctx, "namespace", &ns, "context", ctx_name, err);
    if (rc)
        return rc;
    if (!cluster_name || !cluster_name[0])
        return ns_errorf(err, -EINVAL, "context \"%s\" names no cluster", ctx_name);
    const cJSON *cluster = named_entry(root, "clusters", cluster_name, "cluster");
    if (!cluster)
        return ns_errorf(err, -EINVAL, "cluster \"%s\" of context \"%s\" not found", cluster_name,
                         ctx_name);

    out->context_name = strdup(ctx_name);
    out->namespace = strdup(ns && ns[0] ? ns : "default");
    if (!out->context_name || !out->namespace)
        return -ENOMEM;
    rc = parse_cluster(cluster, cluster_name, base_dir, out, err);
    if (rc)
        return rc;
    if (user_name && user_name[0]) {
        const cJSON *user = named_entry(root, "users", user_name, "user");
        if (!user)
            return ns_errorf(err, -EINVAL, "user \"%s\" of context \"%s\" not found", user_name,
                             ctx_name);
        rc = parse_user(user, user_name, base_dir, out, err);
    }
    return rc;
}

int ns_kubeconfig_parse(const char *text, size_t len, const char *context, const char *base_dir,
                        ns_kube_config *out, ns_err *err)
{
    cJSON *docs = NULL;
    *out = (ns_kube_config){0};
    ns_err yerr = {0};
    int rc = ns_yaml_parse(text, len, &docs, &yerr);
    if (rc) {
        /* yamljson messages quote positions, never values; still say where it came from. */
        return ns_errorf(err, rc, "kubeconfig is not valid YAML: %s", yerr.msg);
    }
    if (cJSON_GetArraySize(docs) != 1) {
        rc = ns_errorf(err, -EINVAL, "kubeconfig must hold exactly one YAML document");
        goto out;
    }
    rc = parse_root(cJSON_GetArrayItem(docs, 0), context, base_dir, out, err);
out:
    cJSON_Delete(docs);
    if (rc)
        ns_kube_config_free(out);
    return rc;
}

int ns_kubeconfig_default_path(char *path, size_t size)
{
    const char *env = getenv("KUBECONFIG");
    if (env) {
        /* First non-empty entry of the list. */
        const char *p = env;
        while (*p == ':')
            p++;
        if (*p) {
            size_t n = strcspn(p, ":");
            if (n >= size)
                return -ENAMETOOLONG;
            memcpy(path, p, n);
            path[n] = '\0';
            return 0;
        }
    }
    const char *home = getenv("HOME");
    if (!home || !home[0])
        return -ENOENT;
    int n = snprintf(path, size, "%s/.kube/config", home);
    if (n < 0 || (size_t)n >= size)
        return -ENAMETOOLONG;
    return 0;
}

int ns_kubeconfig_load(const char *path, const char *context, ns_kube_config *out, ns_err *err)
{
    char def[4096], dir[4096];
    *out = (ns_kube_config){0};
    if (!path) {
        int rc = ns_kubeconfig_default_path(def, sizeof(def));
        if (rc)
            return ns_errorf(err, rc, "no kubeconfig: neither KUBECONFIG nor HOME is set");
        path = def;
    }
    char *text = NULL;
    size_t len = 0;
    int rc = ns_read_file(path, KUBECONFIG_MAX, &text, &len, err);
    if (rc)
        return rc;
    /* Relative names inside are relative to the file's directory. */
    const char *slash = strrchr(path, '/');
    const char *base = NULL;
    if (slash) {
        size_t dl = slash == path ? 1 : (size_t)(slash - path);
        if (dl < sizeof(dir)) {
            memcpy(dir, path, dl);
            dir[dl] = '\0';
            base = dir;
        }
    } else {
        base = ".";
    }
    ns_err perr = {0};
    rc = ns_kubeconfig_parse(text, len, context, base, out, &perr);
    free_secret(text, len);
    if (rc)
        return ns_errorf(err, rc, "%s: %s", path, perr.msg[0] ? perr.msg : strerror(-rc));
    return 0;
}

/* Joins dir and name into a new string. */
static char *join(const char *dir, const char *name)
{
    char *p = NULL;
    return resolve_path(&p, name, dir) == 0 ? p : NULL;
}

/* Reads a small file and trims white space at both ends. */
static int read_trimmed(const char *path, char **out, ns_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = ns_read_file(path, SA_FILE_MAX, &text, &len, err);
    if (rc)
        return rc;
    size_t start = 0;
    while (start < len && is_space((unsigned char)text[start]))
        start++;
    while (len > start && is_space((unsigned char)text[len - 1]))
        len--;
    memmove(text, text + start, len - start);
    text[len - start] = '\0';
    *out = text;
    return 0;
}

int ns_kube_config_in_cluster(const char *sa_dir, const char *host, const char *port,
                              ns_kube_config *out, ns_err *err)
{
    *out = (ns_kube_config){0};
    if (!sa_dir)
        sa_dir = NS_KUBE_SA_DIR;
    if (!host)
        host = getenv("KUBERNETES_SERVICE_HOST");
    if (!port)
        port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !host[0] || !port || !port[0])
        return ns_errorf(err, -ENOENT,
                         "not in a cluster: KUBERNETES_SERVICE_HOST and _PORT are not set");
    uint16_t p;
    if (ns_parse_port(port, &p) != 0)
        return ns_errorf(err, -EINVAL, "KUBERNETES_SERVICE_PORT \"%s\" is not a port", port);

    int rc = -ENOMEM;
    char server[300];
    bool v6 = strchr(host, ':') != NULL;
    int n = snprintf(server, sizeof(server), "https://%s%s%s:%u", v6 ? "[" : "", host,
                     v6 ? "]" : "", (unsigned)p);
    if (n < 0 || (size_t)n >= sizeof(server))
        return ns_errorf(err, -EINVAL, "KUBERNETES_SERVICE_HOST is too long");
    out->server = strdup(server);
    out->token_file = join(sa_dir, "token");
    char *ca = join(sa_dir, "ca.crt");
    char *ns_file = join(sa_dir, "namespace");
    if (!out->server || !out->token_file || !ca || !ns_file)
        goto out;
    if (access(out->token_file, R_OK) != 0) {
        int e = errno;
        rc = ns_errorf(err, e == ENOENT ? -ENOENT : -e, "cannot read service-account token %s: %s",
                       out->token_file, strerror(e));
        goto out;
    }
    if (access(ca, R_OK) == 0) {
        out->ca_file = ca;
        ca = NULL;
    }
    char *ns = NULL;
    if (read_trimmed(ns_file, &ns, NULL) == 0 && ns[0]) {
        out->namespace = ns;
    } else {
        free(ns);
        out->namespace = strdup("default");
        if (!out->namespace)
            goto out;
    }
    rc = 0;
out:
    free(ca);
    free(ns_file);
    if (rc)
        ns_kube_config_free(out);
    return rc;
}

int ns_kube_config_auto(const char *kubeconfig_path, const char *context, ns_kube_config *out,
                        ns_err *err)
{
    if (kubeconfig_path)
        return ns_kubeconfig_load(kubeconfig_path, context, out, err);
    const char *env = getenv("KUBECONFIG");
    if (env && strspn(env, ":") != strlen(env))
        return ns_kubeconfig_load(NULL, context, out, err);
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    if (host && host[0])
        return ns_kube_config_in_cluster(NULL, NULL, NULL, out, err);
    return ns_kubeconfig_load(NULL, context, out, err);
}

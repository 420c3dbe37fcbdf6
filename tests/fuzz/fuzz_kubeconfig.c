/* fuzz_kubeconfig.c - libFuzzer target: arbitrary bytes as a kubeconfig
 * (ns_kubeconfig_parse, lib/kubeconfig.h), read from "/etc/kube" with its current-context.
 *
 * A refused file must leave the config zeroed with a message. An accepted one must keep
 * kubeconfig.h's promises (an http(s) server without a trailing '/', never a file and its
 * -data both, a client key only with a client certificate, absolute paths), read the same
 * when its context is named explicitly and without a base directory (relative names then
 * stay as written), and survive ns_kube_config_copy unchanged. Any disagreement aborts (a
 * crash for libFuzzer), as do out-of-bounds reads and leaks (ASan). */
#include "kubeconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BASE "/etc/kube"

/* Member by member: padding bytes need not be zero. */
static bool is_zero(const ns_kube_config *c)
{
    return !c->server && !c->tls_server_name && !c->ca_file && !c->ca_pem && !c->ca_len &&
           !c->cert_file && !c->cert_pem && !c->cert_len && !c->key_file && !c->key_pem &&
           !c->key_len && !c->token && !c->token_file && !c->insecure_skip_tls_verify &&
           !c->namespace && !c->context_name;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    return (!a && !b && alen == 0 && blen == 0) ||
           (a && b && alen == blen && memcmp(a, b, alen) == 0);
}

/* A -data field decoded: NUL-terminated after its length, and alone (no file twin). */
static void check_material(const char *file, const char *pem, size_t len)
{
    if ((file && pem) || (!pem && len) || (pem && pem[len] != '\0'))
        abort();
    if (file && file[0] != '/')
        abort();
}

static void check_config(const ns_kube_config *c)
{
    if (!c->server || !c->namespace || !c->namespace[0] || !c->context_name ||
        !c->context_name[0] || (c->tls_server_name && !c->tls_server_name[0]))
        abort();
    size_t sl = strlen(c->server);
    if ((strncmp(c->server, "https://", 8) != 0 && strncmp(c->server, "http://", 7) != 0) ||
        (sl > 8 && c->server[sl - 1] == '/'))
        abort();
    check_material(c->ca_file, c->ca_pem, c->ca_len);
    check_material(c->cert_file, c->cert_pem, c->cert_len);
    check_material(c->key_file, c->key_pem, c->key_len);
    bool has_cert = c->cert_file || c->cert_pem, has_key = c->key_file || c->key_pem;
    if (has_cert != has_key || (c->insecure_skip_tls_verify && (c->ca_file || c->ca_pem)))
        abort();
    if ((c->token && (!c->token[0] || c->token_file)) || (c->token_file && c->token_file[0] != '/'))
        abort();
}

/* What both reads of one file share: everything but the resolved file names. */
static bool same_but_files(const ns_kube_config *a, const ns_kube_config *b)
{
    return same_str(a->server, b->server) && same_str(a->tls_server_name, b->tls_server_name) &&
           same_bytes(a->ca_pem, a->ca_len, b->ca_pem, b->ca_len) &&
           same_bytes(a->cert_pem, a->cert_len, b->cert_pem, b->cert_len) &&
           same_bytes(a->key_pem, a->key_len, b->key_pem, b->key_len) &&
           same_str(a->token, b->token) && same_str(a->namespace, b->namespace) &&
           same_str(a->context_name, b->context_name) &&
           a->insecure_skip_tls_verify == b->insecure_skip_tls_verify;
}

/* `resolved` is `as_written` (read without a base directory) resolved against BASE. */
static void check_resolved(const char *resolved, const char *as_written)
{
    if (!resolved || !as_written) {
        if (resolved || as_written)
            abort();
        return;
    }
    if (as_written[0] == '/') {
        if (strcmp(resolved, as_written) != 0)
            abort();
        return;
    }
    size_t bl = strlen(BASE);
    if (strncmp(resolved, BASE "/", bl + 1) != 0 || strcmp(resolved + bl + 1, as_written) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A buffer of exactly `size` bytes, so that ASan sees a read past the end. */
    char *text = malloc(size ? size : 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    ns_kube_config c;
    ns_err err = {0};
    int rc = ns_kubeconfig_parse(text, size, NULL, BASE, &c, &err);
    if (rc != 0) {
        if ((rc != -EINVAL && rc != -ENOTSUP && rc != -ENOMEM) || err.code != rc ||
            err.msg[0] == '\0' || !is_zero(&c))
            abort();
        free(text);
        return 0;
    }
    check_config(&c);

    ns_kube_config named;
    if (ns_kubeconfig_parse(text, size, c.context_name, NULL, &named, NULL) != 0 ||
        !same_but_files(&c, &named))
        abort();
    check_resolved(c.ca_file, named.ca_file);
    check_resolved(c.cert_file, named.cert_file);
    check_resolved(c.key_file, named.key_file);
    check_resolved(c.token_file, named.token_file);
    ns_kube_config_free(&named);
    if (!is_zero(&named))
        abort();

    ns_kube_config copy;
    if (ns_kube_config_copy(&c, &copy) != 0 || !same_but_files(&c, &copy) ||
        !same_str(c.ca_file, copy.ca_file) || !same_str(c.cert_file, copy.cert_file) ||
        !same_str(c.key_file, copy.key_file) || !same_str(c.token_file, copy.token_file) ||
        (c.server == copy.server))
        abort();
    ns_kube_config_free(&copy);
    ns_kube_config_free(&c);
    free(text);
    return 0;
}

/* mesh_certs.c - certificate lifecycle planner, CA store, facts and minting helpers. */
#include "mesh_certs.h"

#include "buf.h"
#include "json.h"
#include "kubeconfig.h"

#include <limits.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the planner ---- */

static mesh_cert_plan plan(mesh_cert_action action, const char *reason, time_t next)
{
    return (mesh_cert_plan){.action = action, .reason = reason, .next = next};
}

mesh_cert_plan mesh_certs_plan(const mesh_cert_facts *f, const mesh_cert_policy *p)
{
    const time_t now = f->now;
    if (!f->has_ca)
        return plan(MESH_CERT_MINT_CA, "there is no CA yet", 0);
    /* Nothing signed by an expired CA verifies, so there is no trust left to carry over:
     * start again. Rotation normally makes this unreachable. */
    if (now >= f->ca_not_after)
        return plan(MESH_CERT_MINT_CA, "the CA has expired and is replaced by a new one", 0);

    /* With no valid certificate being served there is nothing a careful order could
     * protect, so issuing comes before waiting for the webhook. */
    bool cert_valid = f->has_cert && now < f->cert_not_after;

    if (f->has_prev_ca) {
        if (now >= f->prev_ca_not_after)
            return plan(MESH_CERT_DROP_PREVIOUS, "the previous CA has expired", 0);
        if (!cert_valid)
            return plan(MESH_CERT_MINT_SERVING,
                        "there is no valid serving certificate; issuing one from the new CA", 0);
        /* Step 2 needs the old CA (it signed what is served now) and the new one (it
         * will sign what is served next) both trusted by the live configuration. */
        if (!f->webhook_trusts_ca || !f->webhook_trusts_prev_ca)
            return plan(MESH_CERT_WAIT,
                        "waiting for the webhook configuration to trust both the new and the "
                        "previous CA",
                        0);
        if (f->cert_issuer != MESH_CA_CURRENT || now >= f->cert_not_after - p->renew_before)
            return plan(MESH_CERT_MINT_SERVING,
                        "the webhook configuration trusts the new CA; issuing the serving "
                        "certificate from it",
                        0);
        if (f->served == MESH_SERVED_CERT)
            return plan(MESH_CERT_DROP_PREVIOUS,
                        "the injector serves the certificate from the new CA; the previous CA "
                        "is no longer needed",
                        0);
        if (f->served == MESH_SERVED_OTHER)
            return plan(MESH_CERT_WAIT,
                        "waiting for the injector to serve the certificate from the new CA",
                        now + MESH_CERT_PROBE_INTERVAL);
        time_t deadline = f->cert_not_before + (time_t)p->serve_grace;
        if (now < deadline)
            return plan(MESH_CERT_WAIT,
                        "waiting a grace period for the injector to pick up the certificate "
                        "from the new CA",
                        deadline);
        return plan(MESH_CERT_DROP_PREVIOUS,
                    "the grace period for the injector to pick up the certificate from the new "
                    "CA has passed; the previous CA is no longer needed",
                    0);
    }

    /* Rotate while a certificate issued now, and its renewal window, still fit in the
     * CA's life: the old CA then outlives everything it signed. */
    time_t rotate_at = f->ca_not_after - (time_t)(p->validity + p->renew_before);
    if (now >= rotate_at)
        return plan(MESH_CERT_ROTATE_CA,
                    "the CA expires within validity + renewBefore; adding a new CA to the "
                    "bundle",
                    0);
    if (!cert_valid)
        return plan(MESH_CERT_MINT_SERVING,
                    f->has_cert ? "the serving certificate has expired"
                                : "there is no serving certificate yet",
                    0);
    time_t renew_at = f->cert_not_after - (time_t)p->renew_before;
    bool foreign = f->cert_issuer != MESH_CA_CURRENT;
    if (!foreign && now < renew_at)
        return plan(MESH_CERT_NOTHING, "the CA and the serving certificate are valid",
                    renew_at < rotate_at ? renew_at : rotate_at);
    if (!f->webhook_trusts_ca)
        return plan(MESH_CERT_WAIT,
                    "waiting for the webhook configuration to trust the CA before issuing a "
                    "serving certificate from it",
                    0);
    return plan(MESH_CERT_MINT_SERVING,
                foreign ? "the serving certificate was not issued by the current CA"
                        : "the serving certificate is due for renewal",
                0);
}

const char *mesh_cert_action_name(mesh_cert_action a)
{
    switch (a) {
    case MESH_CERT_NOTHING:
        return "Nothing";
    case MESH_CERT_MINT_CA:
        return "MintCA";
    case MESH_CERT_ROTATE_CA:
        return "RotateCA";
    case MESH_CERT_MINT_SERVING:
        return "MintServing";
    case MESH_CERT_DROP_PREVIOUS:
        return "DropPreviousCA";
    case MESH_CERT_WAIT:
        return "Wait";
    }
    return "Unknown";
}

/* ---- OpenSSL helpers ---- */

static time_t asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
}

/* The first certificate of `pem`, or NULL. */
static X509 *x509_from_pem(const char *pem, size_t len)
{
    if (!pem || len == 0 || len > INT_MAX)
        return NULL;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    ERR_clear_error();
    return x;
}

/* Every certificate of a bundle; NULL if none parses. */
static STACK_OF(X509) * bundle_from_pem(const char *pem, size_t len)
{
    if (!pem || len == 0 || len > INT_MAX)
        return NULL;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509 *x;
    while (b && sk && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        if (!sk_X509_push(sk, x))
            X509_free(x);
    BIO_free(b);
    ERR_clear_error();
    if (sk && sk_X509_num(sk) == 0) {
        sk_X509_free(sk);
        sk = NULL;
    }
    return sk;
}

static bool bundle_has(STACK_OF(X509) * sk, X509 *ca)
{
    for (int i = 0; ca && i < sk_X509_num(sk); i++)
        if (X509_cmp(sk_X509_value(sk, i), ca) == 0)
            return true;
    return false;
}

/* Signed by `ca`: names and key identifiers line up, and the signature verifies. */
static bool issued_by(X509 *cert, X509 *ca)
{
    if (!cert || !ca)
        return false;
    bool ok =
        X509_check_issued(ca, cert) == X509_V_OK && X509_verify(cert, X509_get0_pubkey(ca)) == 1;
    ERR_clear_error();
    return ok;
}

static char *dup_bytes(const char *p, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

/* Like ns_tls_pair_from_pem, minus the expiry check: the planner must see an expired
 * certificate to replace it. `what` names the Secret key pair in messages. */
static int pair_from_pem(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                         const char *what, ns_tls_pair *out, ns_err *err)
{
    int rc = 0;
    X509 *cert = x509_from_pem(cert_pem, cert_len);
    EVP_PKEY *key = NULL;
    BIO *kb = key_len <= INT_MAX ? BIO_new_mem_buf(key_pem, (int)key_len) : NULL;
    if (kb)
        key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    if (!cert)
        rc = ns_errorf(err, -EINVAL, "%s: the certificate is not PEM", what);
    else if (!key)
        rc = ns_errorf(err, -EINVAL, "%s: the private key is not PEM", what);
    else if (X509_check_private_key(cert, key) != 1)
        rc = ns_errorf(err, -EINVAL, "%s: the private key does not match the certificate", what);
    if (!rc) {
        *out = (ns_tls_pair){.cert_pem = dup_bytes(cert_pem, cert_len),
                             .cert_len = cert_len,
                             .key_pem = dup_bytes(key_pem, key_len),
                             .key_len = key_len,
                             .not_after = asn1_time(X509_get0_notAfter(cert))};
        if (!out->cert_pem || !out->key_pem) {
            ns_tls_pair_free(out);
            rc = ns_errorf(err, -ENOMEM, "out of memory");
        }
    }
    ERR_clear_error();
    X509_free(cert);
    EVP_PKEY_free(key);
    BIO_free(kb);
    return rc;
}

/* data[key] of a Secret, base64-decoded into *out (caller frees, and wipes if secret).
 * Returns 0, -ENOENT if absent, -EINVAL if not base64, -ENOMEM. */
static int secret_value(const cJSON *secret, const char *key, char **out, size_t *len)
{
    const char *b64 = ns_json_path_str(secret, "data", key, NULL);
    if (!b64)
        return -ENOENT;
    return ns_base64_decode(b64, strlen(b64), out, len);
}

static void wipe_free(char *p, size_t len)
{
    if (p)
        OPENSSL_cleanse(p, len);
    free(p);
}

/* ---- the CA store ---- */

int mesh_ca_store_parse(const cJSON *secret, mesh_ca_store *out, ns_err *err)
{
    *out = (mesh_ca_store){0};
    if (!secret)
        return 0;
    char *cert = NULL, *key = NULL, *prev = NULL;
    size_t clen = 0, klen = 0, plen = 0;
    int rc = secret_value(secret, "ca.crt", &cert, &clen);
    if (!rc)
        rc = secret_value(secret, "ca.key", &key, &klen);
    /* Minting a new CA over a store we cannot read would silently break trust in what
     * the old CA signed; a human decides, and deleting the Secret is the way out. */
    if (rc == -ENOENT || rc == -EINVAL)
        rc = ns_errorf(err, -EINVAL,
                       "the CA store Secret lacks a base64 ca.crt or ca.key; delete it to start "
                       "over with a new CA");
    if (!rc)
        rc = pair_from_pem(cert, clen, key, klen, "the CA store Secret's ca.crt/ca.key", &out->ca,
                           err);
    if (!rc) {
        int prc = secret_value(secret, "prev.crt", &prev, &plen);
        X509 *x = prc == 0 ? x509_from_pem(prev, plen) : NULL;
        if (prc == -ENOMEM)
            rc = ns_errorf(err, -ENOMEM, "out of memory");
        else if (prc != -ENOENT && !x)
            rc = ns_errorf(err, -EINVAL, "the CA store Secret's prev.crt is not a PEM certificate");
        else if (x) {
            out->prev_ca_pem = prev;
            prev = NULL;
        }
        X509_free(x);
    }
    if (rc == -ENOMEM && err && !err->msg[0])
        ns_errorf(err, rc, "out of memory");
    if (rc)
        mesh_ca_store_free(out);
    free(cert);
    wipe_free(key, klen);
    free(prev);
    return rc;
}

static void add_b64(cJSON *data, const char *key, const char *text, bool *oom)
{
    ns_buf b;
    ns_buf_init(&b);
    ns_buf_base64(&b, text, strlen(text));
    if (b.failed || !cJSON_AddStringToObject(data, key, ns_buf_cstr(&b)))
        *oom = true;
    if (b.data)
        OPENSSL_cleanse(b.data, b.cap);
    ns_buf_free(&b);
}

cJSON *mesh_ca_store_render(const mesh_ca_store *store, const mesh_spec *spec,
                            const char *namespace)
{
    if (!store->ca.cert_pem || !store->ca.key_pem)
        return NULL;
    cJSON *s = mesh_object_new(spec, "v1", "Secret", spec->names.ca, namespace);
    bool oom = !s;
    cJSON *data = NULL;
    if (!oom) {
        /* Its own type, so that nothing that looks for kubernetes.io/tls Secrets (ingress
         * controllers, backup tools) picks the CA key up by accident. */
        oom = !cJSON_AddStringToObject(s, "type", "nutshell.io/ca") ||
              !(data = cJSON_AddObjectToObject(s, "data"));
    }
    if (!oom) {
        add_b64(data, "ca.crt", store->ca.cert_pem, &oom);
        add_b64(data, "ca.key", store->ca.key_pem, &oom);
        if (store->prev_ca_pem)
            add_b64(data, "prev.crt", store->prev_ca_pem, &oom);
    }
    if (oom) {
        cJSON_Delete(s);
        return NULL;
    }
    return s;
}

char *mesh_ca_store_bundle(const mesh_ca_store *store)
{
    ns_buf b;
    ns_buf_init(&b);
    const char *parts[2] = {store->ca.cert_pem, store->prev_ca_pem};
    for (int i = 0; i < 2; i++) {
        if (!parts[i] || !*parts[i])
            continue;
        ns_buf_puts(&b, parts[i]);
        if (parts[i][strlen(parts[i]) - 1] != '\n')
            ns_buf_putc(&b, '\n');
    }
    if (b.failed) {
        ns_buf_free(&b);
        return NULL;
    }
    char *out = b.len ? ns_buf_take(&b) : calloc(1, 1);
    ns_buf_free(&b);
    return out;
}

void mesh_ca_store_set_ca(mesh_ca_store *store, ns_tls_pair *new_ca, bool keep_previous)
{
    free(store->prev_ca_pem);
    store->prev_ca_pem = NULL;
    if (keep_previous && store->ca.cert_pem) {
        store->prev_ca_pem = store->ca.cert_pem; /* the certificate moves, the key goes */
        store->ca.cert_pem = NULL;
    }
    ns_tls_pair_free(&store->ca);
    store->ca = *new_ca;
    *new_ca = (ns_tls_pair){0};
}

void mesh_ca_store_drop_previous(mesh_ca_store *store)
{
    free(store->prev_ca_pem);
    store->prev_ca_pem = NULL;
}

void mesh_ca_store_free(mesh_ca_store *store)
{
    if (!store)
        return;
    ns_tls_pair_free(&store->ca);
    free(store->prev_ca_pem);
    store->prev_ca_pem = NULL;
}

/* ---- facts ---- */

/* True if every webhook of `config` has a caBundle holding `ca`. */
static int webhook_trusts(const cJSON *config, X509 *ca, bool *out)
{
    *out = false;
    const cJSON *hooks = ns_json_get(config, "webhooks");
    if (!ca || cJSON_GetArraySize(hooks) == 0)
        return 0;
    const cJSON *w;
    cJSON_ArrayForEach(w, hooks)
    {
        const char *b64 = ns_json_path_str(w, "clientConfig", "caBundle", NULL);
        char *pem = NULL;
        size_t len = 0;
        int rc = b64 ? ns_base64_decode(b64, strlen(b64), &pem, &len) : -EINVAL;
        if (rc == -ENOMEM)
            return rc;
        STACK_OF(X509) *sk = rc == 0 ? bundle_from_pem(pem, len) : NULL;
        bool has = sk && bundle_has(sk, ca);
        sk_X509_pop_free(sk, X509_free);
        free(pem);
        if (!has)
            return 0;
    }
    *out = true;
    return 0;
}

int mesh_certs_facts(const mesh_cert_material *m, time_t now, mesh_cert_facts *out, ns_err *err)
{
    *out = (mesh_cert_facts){.now = now};
    const mesh_ca_store *st = m->store;
    X509 *ca = st && st->ca.cert_pem ? x509_from_pem(st->ca.cert_pem, st->ca.cert_len) : NULL;
    X509 *prev =
        st && st->prev_ca_pem ? x509_from_pem(st->prev_ca_pem, strlen(st->prev_ca_pem)) : NULL;
    X509 *cert = m->cert_pem ? x509_from_pem(m->cert_pem, strlen(m->cert_pem)) : NULL;
    X509 *served = m->served_pem ? x509_from_pem(m->served_pem, strlen(m->served_pem)) : NULL;
    int rc = 0;

    if (ca) {
        out->has_ca = true;
        out->ca_not_after = asn1_time(X509_get0_notAfter(ca));
    }
    if (ca && prev) { /* a previous CA without a current one means nothing */
        out->has_prev_ca = true;
        out->prev_ca_not_after = asn1_time(X509_get0_notAfter(prev));
    }
    if (cert) {
        out->has_cert = true;
        out->cert_not_before = asn1_time(X509_get0_notBefore(cert));
        out->cert_not_after = asn1_time(X509_get0_notAfter(cert));
        out->cert_issuer = issued_by(cert, ca)                         ? MESH_CA_CURRENT
                           : out->has_prev_ca && issued_by(cert, prev) ? MESH_CA_PREVIOUS
                                                                       : MESH_CA_OTHER;
    }
    if (m->served_pem)
        out->served =
            cert && served && X509_cmp(cert, served) == 0 ? MESH_SERVED_CERT : MESH_SERVED_OTHER;
    rc = webhook_trusts(m->webhook, ca, &out->webhook_trusts_ca);
    if (!rc && out->has_prev_ca)
        rc = webhook_trusts(m->webhook, prev, &out->webhook_trusts_prev_ca);
    if (rc)
        ns_errorf(err, rc, "out of memory reading the webhook configuration's caBundle");
    X509_free(ca);
    X509_free(prev);
    X509_free(cert);
    X509_free(served);
    return rc;
}

int mesh_tls_secret_read(const cJSON *secret, ns_tls_pair *out, ns_err *err)
{
    char *cert = NULL, *key = NULL;
    size_t clen = 0, klen = 0;
    int rc = secret ? secret_value(secret, "tls.crt", &cert, &clen) : -ENOENT;
    if (!rc)
        rc = secret_value(secret, "tls.key", &key, &klen);
    if (rc == -ENOENT)
        ns_errorf(err, rc, "the injector's Secret has no tls.crt or tls.key");
    else if (rc == -EINVAL)
        ns_errorf(err, rc, "the injector's Secret's tls.crt or tls.key is not base64");
    else if (rc)
        ns_errorf(err, rc, "out of memory");
    else
        rc = pair_from_pem(cert, clen, key, klen, "the injector's Secret", out, err);
    free(cert);
    wipe_free(key, klen);
    return rc;
}

/* ---- minting ---- */

/* Certificates are minted to the second: a lifetime shorter than a day stays short. */
static long seconds_of(int64_t seconds)
{
    return seconds < 1 ? 1 : seconds > LONG_MAX ? LONG_MAX : (long)seconds;
}

int mesh_certs_mint_ca(int64_t validity, time_t now, ns_tls_pair *out, ns_err *err)
{
    char cn[64];
    snprintf(cn, sizeof(cn), "nutshell-injector-ca@%lld", (long long)now);
    ns_cert_request req = {.common_name = cn, .valid_seconds = seconds_of(validity), .is_ca = true};
    return ns_tls_mint(&req, NULL, out, err);
}

int mesh_certs_mint_serving(const ns_tls_pair *ca, const char *service, const char *namespace,
                            int64_t validity, ns_tls_pair *out, ns_err *err)
{
    return mesh_certs_mint_serving_sans(ca, service, namespace, NULL, NULL, validity, out, err);
}

#define EXTRA_SANS_MAX 8

int mesh_certs_mint_serving_sans(const ns_tls_pair *ca, const char *service, const char *namespace,
                                 const char *const *extra_dns, const char *const *extra_ips,
                                 int64_t validity, ns_tls_pair *out, ns_err *err)
{
    if (!ca || !ca->cert_pem || !ca->key_pem)
        return ns_errorf(err, -EINVAL, "no CA to sign the serving certificate with");
    char svc[300], fqdn[320];
    snprintf(svc, sizeof(svc), "%s.%s.svc", service, namespace);
    snprintf(fqdn, sizeof(fqdn), "%s.%s.svc.cluster.local", service, namespace);
    const char *dns[2 + EXTRA_SANS_MAX + 1] = {svc, fqdn};
    size_t n = 2;
    for (size_t i = 0; extra_dns && extra_dns[i]; i++) {
        if (n >= 2 + EXTRA_SANS_MAX)
            return ns_errorf(err, -EINVAL, "too many extra DNS names");
        dns[n++] = extra_dns[i];
    }
    dns[n] = NULL;
    for (size_t i = 0; extra_ips && extra_ips[i]; i++)
        if (i >= EXTRA_SANS_MAX)
            return ns_errorf(err, -EINVAL, "too many extra IP addresses");
    /* The common name is only a label (clients check the DNS names), and X.509 caps it at
     * 64 characters, which a revision's full host name can exceed. */
    ns_cert_request req = {.common_name = service,
                           .dns_names = dns,
                           .ip_addrs = extra_ips && extra_ips[0] ? extra_ips : NULL,
                           .valid_seconds = seconds_of(validity)};
    return ns_tls_mint(&req, ca, out, err);
}

bool mesh_certs_cert_covers(const char *cert_pem, const char *host)
{
    if (!cert_pem || !host || !*host)
        return false;
    BIO *bio = BIO_new_mem_buf(cert_pem, -1);
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!x) {
        ERR_clear_error();
        return false;
    }
    int ok = X509_check_ip_asc(x, host, 0);
    if (ok == -2) /* not an IP address: a host name */
        ok = X509_check_host(x, host, strlen(host), 0, NULL);
    X509_free(x);
    return ok == 1;
}

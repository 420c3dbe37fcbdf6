/* tlsfiles.c - PEM pair loading/validation and certificate minting (OpenSSL). */
#include "tlsfiles.h"

#include <limits.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PEM files bigger than this are not certificates we want to parse. */
#define TLS_FILE_MAX (1 << 20)

static time_t asn1_to_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
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

int ns_tls_pair_from_pem(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                         ns_tls_pair *out, ns_err *err)
{
    int rc = 0;
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    BIO *cb = BIO_new_mem_buf(cert_pem, (int)cert_len);
    BIO *kb = BIO_new_mem_buf(key_pem, (int)key_len);
    if (!cb || !kb) {
        rc = -ENOMEM;
        goto out;
    }
    leaf = PEM_read_bio_X509(cb, NULL, NULL, NULL);
    if (!leaf) {
        rc = ns_errorf(err, -EINVAL, "certificate is not a PEM X.509 certificate");
        goto out;
    }
    key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    if (!key) {
        rc = ns_errorf(err, -EINVAL, "private key is not a PEM private key");
        goto out;
    }
    if (X509_check_private_key(leaf, key) != 1) {
        rc = ns_errorf(err, -EINVAL, "private key does not match the certificate");
        goto out;
    }
    time_t not_after = asn1_to_time(X509_get0_notAfter(leaf));
    if (not_after <= time(NULL)) {
        rc = ns_errorf(err, -EINVAL, "certificate expired");
        goto out;
    }
    *out = (ns_tls_pair){.cert_pem = dup_bytes(cert_pem, cert_len),
                         .cert_len = cert_len,
                         .key_pem = dup_bytes(key_pem, key_len),
                         .key_len = key_len,
                         .not_after = not_after};
    if (!out->cert_pem || !out->key_pem) {
        ns_tls_pair_free(out);
        rc = -ENOMEM;
    }
out:
    ERR_clear_error();
    X509_free(leaf);
    EVP_PKEY_free(key);
    BIO_free(cb);
    BIO_free(kb);
    return rc;
}

int ns_tls_pair_load(const char *cert_file, const char *key_file, ns_tls_pair *out, ns_err *err)
{
    char *cert = NULL, *key = NULL;
    size_t clen = 0, klen = 0;
    int rc = ns_read_file(cert_file, TLS_FILE_MAX, &cert, &clen, err);
    if (rc == 0)
        rc = ns_read_file(key_file, TLS_FILE_MAX, &key, &klen, err);
    if (rc == 0) {
        rc = ns_tls_pair_from_pem(cert, clen, key, klen, out, err);
        if (rc && err) {
            char why[NS_ERR_MSG_MAX];
            snprintf(why, sizeof(why), "%s", err->msg);
            ns_errorf(err, rc, "%s / %s: %s", cert_file, key_file, why);
        }
    }
    if (key)
        OPENSSL_cleanse(key, klen);
    free(cert);
    free(key);
    return rc;
}

void ns_tls_pair_free(ns_tls_pair *p)
{
    if (!p)
        return;
    if (p->key_pem)
        OPENSSL_cleanse(p->key_pem, p->key_len);
    free(p->cert_pem);
    free(p->key_pem);
    *p = (ns_tls_pair){0};
}

/* ---- minting ---- */

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return -EINVAL;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -ENOMEM;
}

static char *bio_to_string(BIO *b, size_t *len)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    *len = n > 0 ? (size_t)n : 0;
    return n > 0 ? dup_bytes(p, (size_t)n) : NULL;
}

int ns_tls_mint(const ns_cert_request *req, const ns_tls_pair *issuer, ns_tls_pair *out,
                ns_err *err)
{
    int rc = -ENOMEM;
    EVP_PKEY *key = NULL, *ikey = NULL;
    X509 *cert = NULL, *icert = NULL;
    BIO *cb = NULL, *kb = NULL, *ib = NULL;
    char san[2048] = "";
    size_t sl = 0;

    key = EVP_EC_gen("P-256");
    cert = X509_new();
    if (!key || !cert)
        goto out;
    if (issuer) {
        ib = BIO_new_mem_buf(issuer->cert_pem, (int)issuer->cert_len);
        icert = ib ? PEM_read_bio_X509(ib, NULL, NULL, NULL) : NULL;
        BIO_free(ib);
        ib = BIO_new_mem_buf(issuer->key_pem, (int)issuer->key_len);
        ikey = ib ? PEM_read_bio_PrivateKey(ib, NULL, NULL, NULL) : NULL;
        if (!icert || !ikey) {
            rc = ns_errorf(err, -EINVAL, "issuer certificate or key does not parse");
            goto out;
        }
    }

    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof(serial)) != 1)
        goto out;
    serial[0] &= 0x7f; /* positive */
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert))) {
        BN_free(bn);
        goto out;
    }
    BN_free(bn);

    X509_set_version(cert, 2);
    /* Backdate a little so that a clock a few minutes behind still accepts it. */
    X509_gmtime_adj(X509_getm_notBefore(cert), -300);
    /* Days and seconds apart, so that a long lifetime cannot overflow a 32-bit long. */
    long days = req->valid_seconds > 0 ? req->valid_seconds / 86400L : (long)req->valid_days;
    long secs = req->valid_seconds > 0 ? req->valid_seconds % 86400L : 0;
    if (days > INT_MAX)
        days = INT_MAX;
    if (!X509_time_adj_ex(X509_getm_notAfter(cert), (int)days, secs, NULL))
        goto out;
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)req->common_name,
                               -1, -1, 0);
    X509_set_issuer_name(cert, icert ? X509_get_subject_name(icert) : name);
    X509_set_pubkey(cert, key);

    X509 *signer = icert ? icert : cert;
    if (req->is_ca) {
        if (add_ext(cert, signer, NID_basic_constraints, "critical,CA:TRUE") ||
            add_ext(cert, signer, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"))
            goto out;
    } else {
        if (add_ext(cert, signer, NID_basic_constraints, "critical,CA:FALSE") ||
            add_ext(cert, signer, NID_key_usage, "critical,digitalSignature,keyEncipherment") ||
            add_ext(cert, signer, NID_ext_key_usage, "serverAuth,clientAuth"))
            goto out;
    }
    add_ext(cert, signer, NID_subject_key_identifier, "hash");
    if (icert)
        add_ext(cert, signer, NID_authority_key_identifier, "keyid:always");

    for (const char *const *d = req->dns_names; d && *d; d++)
        sl += (size_t)snprintf(san + sl, sl < sizeof(san) ? sizeof(san) - sl : 0, "%sDNS:%s",
                               sl ? "," : "", *d);
    for (const char *const *a = req->ip_addrs; a && *a; a++)
        sl += (size_t)snprintf(san + sl, sl < sizeof(san) ? sizeof(san) - sl : 0, "%sIP:%s",
                               sl ? "," : "", *a);
    if (sl >= sizeof(san)) {
        rc = ns_errorf(err, -EINVAL, "too many subject alternative names");
        goto out;
    }
    if (sl && add_ext(cert, signer, NID_subject_alt_name, san)) {
        rc = ns_errorf(err, -EINVAL, "bad subject alternative name list: %s", san);
        goto out;
    }
    if (!X509_sign(cert, ikey ? ikey : key, EVP_sha256()))
        goto out;

    cb = BIO_new(BIO_s_mem());
    kb = BIO_new(BIO_s_mem());
    if (!cb || !kb || !PEM_write_bio_X509(cb, cert) ||
        !PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL))
        goto out;
    *out = (ns_tls_pair){0};
    out->cert_pem = bio_to_string(cb, &out->cert_len);
    out->key_pem = bio_to_string(kb, &out->key_len);
    out->not_after = asn1_to_time(X509_get0_notAfter(cert));
    if (!out->cert_pem || !out->key_pem) {
        ns_tls_pair_free(out);
        goto out;
    }
    rc = 0;
out:
    if (rc == -ENOMEM && err && err->code == 0)
        ns_errorf(err, rc, "cannot mint certificate for %s", req->common_name);
    ERR_clear_error();
    EVP_PKEY_free(key);
    EVP_PKEY_free(ikey);
    X509_free(cert);
    X509_free(icert);
    BIO_free(ib);
    BIO_free(cb);
    BIO_free(kb);
    return rc;
}

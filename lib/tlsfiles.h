/* tlsfiles.h - TLS material with OpenSSL: loading and checking PEM pairs, and minting a
 * CA and serving certificates.
 *
 * Nothing here logs key material; error messages name files, never their contents.
 */
#ifndef NS_TLSFILES_H
#define NS_TLSFILES_H

#include "err.h"
#include "files.h"

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* A certificate chain and its private key, as PEM text, checked to belong together. */
typedef struct ns_tls_pair {
    char *cert_pem;
    size_t cert_len;
    char *key_pem;
    size_t key_len;
    time_t not_after; /* expiry of the leaf certificate */
} ns_tls_pair;

/* Reads `cert_file` (leaf first, then intermediates) and `key_file`, and checks that
 * both parse, that the key matches the leaf, and that the leaf has not expired.
 * On success fills *out (free with ns_tls_pair_free). Returns 0, -ENOENT/-EACCES for
 * unreadable files, -EINVAL for bad or mismatched material. */
int ns_tls_pair_load(const char *cert_file, const char *key_file, ns_tls_pair *out, ns_err *err);

/* Same, from PEM text in memory. */
int ns_tls_pair_from_pem(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                         ns_tls_pair *out, ns_err *err);

void ns_tls_pair_free(ns_tls_pair *p);

/* ---- minting ---- */

typedef struct ns_cert_request {
    const char *common_name;
    const char *const *dns_names; /* NULL-terminated, may be NULL */
    const char *const *ip_addrs;  /* NULL-terminated, may be NULL */
    int valid_days;               /* lifetime in days, used when valid_seconds is 0 */
    long valid_seconds;           /* lifetime in seconds; when > 0 it wins over valid_days */
    bool is_ca;
} ns_cert_request;

/* Makes an ECDSA P-256 key and a certificate for `req`, signed by the CA in
 * `issuer` (or self-signed when `issuer` is NULL). PEM results are malloc'd into *out,
 * whose not_after is set. Returns 0, -EINVAL or -ENOMEM. */
int ns_tls_mint(const ns_cert_request *req, const ns_tls_pair *issuer, ns_tls_pair *out,
                ns_err *err);

#endif

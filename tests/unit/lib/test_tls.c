/* test_tls.c - minting a CA and a serving certificate, loading and checking pairs. */
#include "suites.h"
#include "tlsfiles.h"

#include <stdlib.h>
#include <time.h>

static void test_mint_and_verify_pair(void)
{
    ns_cert_request ca_req = {.common_name = "nutshell-test-ca", .valid_days = 10, .is_ca = true};
    ns_tls_pair ca, leaf, other;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(ns_tls_mint(&ca_req, NULL, &ca, &err), 0);
    static const char *const dns[] = {"nutshell-injector.nutshell-system.svc", NULL};
    static const char *const ips[] = {"127.0.0.1", NULL};
    ns_cert_request leaf_req = {
        .common_name = "injector", .dns_names = dns, .ip_addrs = ips, .valid_days = 1};
    NS_ASSERT_INT_EQ(ns_tls_mint(&leaf_req, &ca, &leaf, &err), 0);
    NS_ASSERT_INT_EQ(ns_tls_mint(&leaf_req, &ca, &other, &err), 0);
    time_t day = time(NULL) + 86400;
    CU_ASSERT_TRUE(leaf.not_after > day - 600 && leaf.not_after <= day + 600);

    /* valid_seconds, when set, wins over valid_days and is exact */
    ns_tls_pair brief;
    ns_cert_request brief_req = {
        .common_name = "injector", .ip_addrs = ips, .valid_days = 5, .valid_seconds = 90};
    time_t before = time(NULL);
    NS_ASSERT_INT_EQ(ns_tls_mint(&brief_req, &ca, &brief, &err), 0);
    CU_ASSERT_TRUE(brief.not_after >= before + 90 && brief.not_after <= time(NULL) + 90);
    ns_tls_pair_free(&brief);

    ns_tls_pair loaded;
    NS_ASSERT_INT_EQ(ns_tls_pair_from_pem(leaf.cert_pem, leaf.cert_len, leaf.key_pem, leaf.key_len,
                                          &loaded, &err),
                     0);
    ns_tls_pair_free(&loaded);

    /* a key from another pair must be refused, with a message and no key material */
    NS_ASSERT_INT_EQ(ns_tls_pair_from_pem(leaf.cert_pem, leaf.cert_len, other.key_pem,
                                          other.key_len, &loaded, &err),
                     -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "private key does not match the certificate");
    NS_ASSERT_INT_EQ(ns_tls_pair_from_pem("junk", 4, leaf.key_pem, leaf.key_len, &loaded, &err),
                     -EINVAL);

    ns_tls_pair_free(&ca);
    ns_tls_pair_free(&leaf);
    ns_tls_pair_free(&other);
    ns_tls_pair_free(NULL);
}

static void test_load_missing_files(void)
{
    ns_tls_pair p;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(ns_tls_pair_load("/nonexistent/cert.pem", "/nonexistent/key.pem", &p, &err),
                     -ENOENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "/nonexistent/cert.pem"));
}

const ns_test tls_tests[] = {
    {"mint and verify pair", test_mint_and_verify_pair},
    {"load missing files", test_load_missing_files},
    {NULL, NULL},
};

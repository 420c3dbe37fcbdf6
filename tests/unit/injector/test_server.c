/* test_server.c - the real webhook server over TLS, driven by libcurl: reviews, HTTP
 * errors, health and metrics, and a certificate rotation under traffic. */
#include "buf.h"
#include "json.h"
#include "server.h"
#include "suites.h"
#include "tlsfiles.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static char dir[64];
static char cert_path[128], key_path[128], ca1_path[128], ca2_path[128], both_path[128];

static const char *review_body =
    "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{"
    "\"uid\":\"u-1\",\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},"
    "\"namespace\":\"default\",\"operation\":\"CREATE\",\"object\":{\"metadata\":{\"name\":\"p\"},"
    "\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"a\"}]}}}}";

static size_t collect_cb(char *p, size_t size, size_t n, void *ud)
{
    ns_buf_append(ud, p, size * n);
    return size * n;
}

typedef struct call {
    const char *method;
    const char *url;
    const char *cafile;
    const char *ctype;
    const char *body;
    size_t body_len;
    long status; /* out */
    ns_buf resp; /* out */
    CURLcode rc; /* out */
} call;

static void perform(CURL *h, call *c)
{
    struct curl_slist *hdr = NULL;
    ns_buf_init(&c->resp);
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &c->resp);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (c->cafile)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->cafile);
    if (c->ctype) {
        char line[128];
        snprintf(line, sizeof(line), "Content-Type: %s", c->ctype);
        hdr = curl_slist_append(hdr, line);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    }
    if (c->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
    }
    if (c->method)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
    c->rc = curl_easy_perform(h);
    c->status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
    curl_slist_free_all(hdr);
}

static int write_pair(const ns_tls_pair *leaf, const ns_tls_pair *ca, const char *ca_path)
{
    ns_err err = {0};
    if (ns_write_file_atomic(key_path, leaf->key_pem, leaf->key_len, &err) ||
        ns_write_file_atomic(cert_path, leaf->cert_pem, leaf->cert_len, &err) ||
        ns_write_file_atomic(ca_path, ca->cert_pem, ca->cert_len, &err)) {
        fprintf(stderr, "\n  %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int mint(ns_tls_pair *ca, ns_tls_pair *leaf, const char *cn)
{
    static const char *const ips[] = {"127.0.0.1", NULL};
    ns_cert_request ca_req = {.common_name = cn, .valid_days = 2, .is_ca = true};
    ns_cert_request leaf_req = {.common_name = "injector", .ip_addrs = ips, .valid_days = 1};
    ns_err err = {0};
    if (ns_tls_mint(&ca_req, NULL, ca, &err) || ns_tls_mint(&leaf_req, ca, leaf, &err)) {
        fprintf(stderr, "\n  %s\n", err.msg);
        return -1;
    }
    return 0;
}

static inj_server *start(void)
{
    inj_server_opts o = {.host = "127.0.0.1",
                         .metrics_host = "127.0.0.1",
                         .cert_file = cert_path,
                         .key_file = key_path,
                         .threads = 2,
                         .reload_ms = 100};
    inj_server *s = NULL;
    ns_err err = {0};
    int rc = inj_server_start(&o, &s, &err);
    if (rc)
        fprintf(stderr, "\n  cannot start server: %s\n", err.msg);
    return s;
}

static void setup_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/nutshell-test-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(cert_path, sizeof(cert_path), "%s/tls.crt", dir);
    snprintf(key_path, sizeof(key_path), "%s/tls.key", dir);
    snprintf(ca1_path, sizeof(ca1_path), "%s/ca1.crt", dir);
    snprintf(ca2_path, sizeof(ca2_path), "%s/ca2.crt", dir);
    snprintf(both_path, sizeof(both_path), "%s/both.crt", dir);
}

static void cleanup_dir(void)
{
    const char *files[] = {cert_path, key_path, ca1_path, ca2_path, both_path};
    for (size_t i = 0; i < 5; i++)
        unlink(files[i]);
    rmdir(dir);
}

static void test_reviews_and_errors(void)
{
    setup_dir();
    ns_tls_pair ca, leaf;
    CU_ASSERT_EQUAL_FATAL(mint(&ca, &leaf, "ca-one"), 0);
    CU_ASSERT_EQUAL_FATAL(write_pair(&leaf, &ca, ca1_path), 0);
    inj_server *s = start();
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    char url[96], murl[96];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/inject", inj_server_port(s));
    CURL *h = curl_easy_init();

    call ok = {.url = url,
               .cafile = ca1_path,
               .ctype = "application/json",
               .body = review_body,
               .body_len = strlen(review_body)};
    perform(h, &ok);
    NS_ASSERT_INT_EQ(ok.rc, CURLE_OK);
    NS_ASSERT_INT_EQ(ok.status, 200);
    cJSON *r = cJSON_Parse(ns_buf_cstr(&ok.resp));
    NS_ASSERT_STR_EQ(ns_json_path_str(r, "response", "uid", NULL), "u-1");
    NS_ASSERT_STR_EQ(ns_json_path_str(r, "response", "patchType", NULL), "JSONPatch");
    cJSON_Delete(r);
    ns_buf_free(&ok.resp);

    /* an untrusted client CA must not verify our certificate */
    call untrusted = {.url = url,
                      .cafile = key_path,
                      .ctype = "application/json",
                      .body = review_body,
                      .body_len = strlen(review_body)};
    perform(h, &untrusted);
    CU_ASSERT_NOT_EQUAL(untrusted.rc, CURLE_OK);
    ns_buf_free(&untrusted.resp);

    struct {
        const char *method, *path, *ctype, *body;
        size_t len;
        long want;
    } cases[] = {
        {"GET", "/inject", NULL, NULL, 0, 405},
        {NULL, "/inject", "text/plain", review_body, strlen(review_body), 415},
        {NULL, "/mutate", "application/json", review_body, strlen(review_body), 404},
        {NULL, "/inject", "application/json", "{broken", 7, 400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char u[128];
        snprintf(u, sizeof(u), "https://127.0.0.1:%u%s", inj_server_port(s), cases[i].path);
        call c = {.method = cases[i].method,
                  .url = u,
                  .cafile = ca1_path,
                  .ctype = cases[i].ctype,
                  .body = cases[i].body,
                  .body_len = cases[i].len};
        perform(h, &c);
        NS_ASSERT_INT_EQ(c.status, cases[i].want);
        ns_buf_free(&c.resp);
    }

    /* a body over the limit is refused with 413 and the server stays up */
    size_t big_len = 4u << 20;
    char *big = malloc(big_len);
    memset(big, ' ', big_len);
    call huge = {.url = url,
                 .cafile = ca1_path,
                 .ctype = "application/json",
                 .body = big,
                 .body_len = big_len};
    perform(h, &huge);
    NS_ASSERT_INT_EQ(huge.status, 413);
    ns_buf_free(&huge.resp);
    free(big);

    snprintf(murl, sizeof(murl), "http://127.0.0.1:%u/readyz", inj_server_metrics_port(s));
    call ready = {.url = murl};
    perform(h, &ready);
    NS_ASSERT_INT_EQ(ready.status, 200);
    ns_buf_free(&ready.resp);
    snprintf(murl, sizeof(murl), "http://127.0.0.1:%u/metrics", inj_server_metrics_port(s));
    call metrics = {.url = murl};
    perform(h, &metrics);
    NS_ASSERT_INT_EQ(metrics.status, 200);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(ns_buf_cstr(&metrics.resp), "nutshell_injector_reviews_total{result=\"injected\"}"));
    CU_ASSERT_PTR_NOT_NULL(strstr(ns_buf_cstr(&metrics.resp),
                                  "nutshell_injector_reviews_total{result=\"invalid\"} 1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(ns_buf_cstr(&metrics.resp),
                                  "nutshell_injector_certificate_expiry_timestamp_seconds 1"));
    ns_buf_free(&metrics.resp);

    curl_easy_cleanup(h);
    inj_server_stop(s);
    ns_tls_pair_free(&ca);
    ns_tls_pair_free(&leaf);
    cleanup_dir();
}

/* Certificate rotation: a client that trusts both CAs keeps sending reviews on fresh
 * connections while the files are replaced; none may fail, and after the swap the
 * server presents the new certificate. */
typedef struct traffic {
    const char *url;
    volatile int stop;
    int sent, failed;
} traffic;

static void *traffic_main(void *arg)
{
    traffic *t = arg;
    CURL *h = curl_easy_init();
    for (int i = 0; i < 2000 && !t->stop; i++) {
        call c = {.url = t->url,
                  .cafile = both_path,
                  .ctype = "application/json",
                  .body = review_body,
                  .body_len = strlen(review_body)};
        perform(h, &c);
        curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
        t->sent++;
        if (c.rc != CURLE_OK || c.status != 200)
            t->failed++;
        ns_buf_free(&c.resp);
    }
    curl_easy_cleanup(h);
    return NULL;
}

static void test_certificate_rotation_under_traffic(void)
{
    setup_dir();
    ns_tls_pair ca1, leaf1, ca2, leaf2;
    CU_ASSERT_EQUAL_FATAL(mint(&ca1, &leaf1, "ca-one"), 0);
    CU_ASSERT_EQUAL_FATAL(mint(&ca2, &leaf2, "ca-two"), 0);
    CU_ASSERT_EQUAL_FATAL(write_pair(&leaf1, &ca1, ca1_path), 0);
    ns_buf both;
    ns_buf_init(&both);
    ns_buf_append(&both, ca1.cert_pem, ca1.cert_len);
    ns_buf_append(&both, ca2.cert_pem, ca2.cert_len);
    ns_err err = {0};
    CU_ASSERT_EQUAL_FATAL(ns_write_file_atomic(both_path, both.data, both.len, &err), 0);
    ns_buf_free(&both);

    inj_server *s = start();
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    char url[96];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/inject", inj_server_port(s));

    traffic t = {.url = url};
    pthread_t th;
    pthread_create(&th, NULL, traffic_main, &t);
    usleep(300 * 1000);
    /* Key first, then certificate: between the two writes the pair mismatches and must
     * be refused while the old pair keeps serving. */
    CU_ASSERT_EQUAL(write_pair(&leaf2, &ca2, ca2_path), 0);

    /* Within a few reload periods, a client trusting only the new CA gets through. */
    CURL *h = curl_easy_init();
    bool switched = false;
    for (int i = 0; i < 50 && !switched; i++) {
        call c = {.url = url,
                  .cafile = ca2_path,
                  .ctype = "application/json",
                  .body = review_body,
                  .body_len = strlen(review_body)};
        perform(h, &c);
        switched = c.rc == CURLE_OK && c.status == 200;
        ns_buf_free(&c.resp);
        if (!switched)
            usleep(100 * 1000);
    }
    CU_ASSERT_TRUE(switched);
    usleep(300 * 1000);
    t.stop = 1;
    pthread_join(th, NULL);
    CU_ASSERT_TRUE(t.sent > 5);
    if (t.failed)
        fprintf(stderr, "\n  %d of %d requests failed during rotation\n", t.failed, t.sent);
    NS_ASSERT_INT_EQ(t.failed, 0);

    curl_easy_cleanup(h);
    inj_server_stop(s);
    ns_tls_pair_free(&ca1);
    ns_tls_pair_free(&leaf1);
    ns_tls_pair_free(&ca2);
    ns_tls_pair_free(&leaf2);
    cleanup_dir();
}

const ns_test server_tests[] = {
    {"reviews and HTTP errors over TLS", test_reviews_and_errors},
    {"certificate rotation under traffic", test_certificate_rotation_under_traffic},
    {NULL, NULL},
};

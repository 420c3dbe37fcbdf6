/* test_kubeconfig.c - kubeconfig parsing (contexts, -data fields, paths), base64, the
 * default kubeconfig path and the in-cluster service-account config. */
#include "kubeconfig.h"
#include "suites.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* base64 of "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" */
#define CA_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
#define CA_PEM "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

static const char kubeconfig[] =
    "apiVersion: v1\n"
    "kind: Config\n"
    "current-context: dev\n"
    "clusters:\n"
    "- name: dev-cluster\n"
    "  cluster:\n"
    "    server: https://127.0.0.1:16443/\n"
    "    certificate-authority-data: " CA_B64 "\n"
    "- name: prod\n"
    "  cluster:\n"
    "    server: https://10.0.0.1:6443\n"
    "    certificate-authority: pki/ca.crt\n"
    "    tls-server-name: kubernetes\n"
    "- name: lab\n"
    "  cluster:\n"
    "    server: http://localhost:8080\n"
    "    insecure-skip-tls-verify: true\n"
    "contexts:\n"
    "- name: dev\n"
    "  context: {cluster: dev-cluster, user: admin, namespace: team-a}\n"
    "- name: prod\n"
    "  context:\n"
    "    cluster: prod\n"
    "    user: robot\n"
    "- name: lab\n"
    "  context: {cluster: lab, user: files}\n"
    "- name: gke\n"
    "  context: {cluster: lab, user: gcloud}\n"
    "- name: nouser\n"
    "  context: {cluster: lab}\n"
    "- name: ghost\n"
    "  context: {cluster: lab, user: nobody}\n"
    "users:\n"
    "- name: admin\n"
    "  user:\n"
    "    client-certificate-data: " CA_B64 "\n"
    "    client-key-data: |\n"
    "      LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCmFiYwotLS0tLUVORCBQUklW\n"
    "      QVRFIEtFWS0tLS0tCg==\n"
    "- name: robot\n"
    "  user:\n"
    "    token: static-token\n"
    "    tokenFile: /var/run/robot/token\n"
    "- name: files\n"
    "  user:\n"
    "    client-certificate: /etc/kube/admin.crt\n"
    "    client-key: admin.key\n"
    "    token: abc.def\n"
    "- name: gcloud\n"
    "  user:\n"
    "    exec: {apiVersion: client.authentication.k8s.io/v1, command: gke-gcloud-auth-plugin}\n";

static void test_current_context_with_data(void)
{
    ns_kube_config c;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(
        ns_kubeconfig_parse(kubeconfig, sizeof(kubeconfig) - 1, NULL, "/home/u/.kube", &c, &err),
        0);
    NS_ASSERT_STR_EQ(c.server, "https://127.0.0.1:16443");
    NS_ASSERT_STR_EQ(c.context_name, "dev");
    NS_ASSERT_STR_EQ(c.namespace, "team-a");
    NS_ASSERT_STR_EQ(c.ca_pem, CA_PEM);
    NS_ASSERT_INT_EQ(c.ca_len, strlen(CA_PEM));
    CU_ASSERT_PTR_NULL(c.ca_file);
    NS_ASSERT_STR_EQ(c.cert_pem, CA_PEM);
    NS_ASSERT_STR_EQ(c.key_pem, "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n");
    CU_ASSERT_PTR_NULL(c.token);
    CU_ASSERT_PTR_NULL(c.token_file);
    CU_ASSERT_FALSE(c.insecure_skip_tls_verify);

    ns_kube_config copy;
    NS_ASSERT_INT_EQ(ns_kube_config_copy(&c, &copy), 0);
    NS_ASSERT_STR_EQ(copy.key_pem, c.key_pem);
    NS_ASSERT_INT_EQ(copy.key_len, c.key_len);
    CU_ASSERT_PTR_NOT_EQUAL(copy.key_pem, c.key_pem);
    ns_kube_config_free(&copy);
    ns_kube_config_free(&c);
    CU_ASSERT_PTR_NULL(c.server);
    ns_kube_config_free(NULL);
}

static void test_named_context_and_relative_paths(void)
{
    ns_kube_config c;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(
        ns_kubeconfig_parse(kubeconfig, sizeof(kubeconfig) - 1, "prod", "/etc/kube", &c, &err), 0);
    NS_ASSERT_STR_EQ(c.server, "https://10.0.0.1:6443");
    NS_ASSERT_STR_EQ(c.tls_server_name, "kubernetes");
    NS_ASSERT_STR_EQ(c.ca_file, "/etc/kube/pki/ca.crt");
    CU_ASSERT_PTR_NULL(c.ca_pem);
    NS_ASSERT_STR_EQ(c.token_file, "/var/run/robot/token"); /* tokenFile wins over token */
    CU_ASSERT_PTR_NULL(c.token);
    NS_ASSERT_STR_EQ(c.namespace, "default");
    ns_kube_config_free(&c);

    NS_ASSERT_INT_EQ(
        ns_kubeconfig_parse(kubeconfig, sizeof(kubeconfig) - 1, "lab", "/etc/kube/", &c, &err), 0);
    NS_ASSERT_STR_EQ(c.server, "http://localhost:8080");
    CU_ASSERT_TRUE(c.insecure_skip_tls_verify);
    NS_ASSERT_STR_EQ(c.cert_file, "/etc/kube/admin.crt");
    NS_ASSERT_STR_EQ(c.key_file, "/etc/kube/admin.key");
    NS_ASSERT_STR_EQ(c.token, "abc.def");
    ns_kube_config_free(&c);

    /* no base directory: relative names stay as written */
    NS_ASSERT_INT_EQ(ns_kubeconfig_parse(kubeconfig, sizeof(kubeconfig) - 1, "lab", NULL, &c, &err),
                     0);
    NS_ASSERT_STR_EQ(c.key_file, "admin.key");
    ns_kube_config_free(&c);

    /* a context without a user is anonymous */
    NS_ASSERT_INT_EQ(
        ns_kubeconfig_parse(kubeconfig, sizeof(kubeconfig) - 1, "nouser", NULL, &c, &err), 0);
    CU_ASSERT_PTR_NULL(c.token);
    CU_ASSERT_PTR_NULL(c.cert_file);
    ns_kube_config_free(&c);
}

/* Parses `text` and expects `rc` with `needle` in the message; nothing leaks. */
static void expect_error(const char *text, const char *context, int rc, const char *needle)
{
    ns_kube_config c;
    ns_err err = {0};
    int got = ns_kubeconfig_parse(text, strlen(text), context, NULL, &c, &err);
    NS_ASSERT_INT_EQ(got, rc);
    if (needle && !strstr(err.msg, needle))
        fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", err.msg, needle);
    CU_ASSERT_TRUE(!needle || strstr(err.msg, needle) != NULL);
    CU_ASSERT_PTR_NULL(c.server);
    CU_ASSERT_PTR_NULL(c.namespace);
}

static void test_errors(void)
{
    expect_error(kubeconfig, "nope", -EINVAL, "context \"nope\" not found");
    expect_error(kubeconfig, "ghost", -EINVAL, "user \"nobody\"");
    expect_error(kubeconfig, "gke", -ENOTSUP, "exec credential plugin");
    expect_error("apiVersion: v1\nkind: Config\n", NULL, -EINVAL, "no current-context");
    expect_error("a: [1, 2\n", NULL, -EINVAL, "not valid YAML");
    expect_error("- 1\n- 2\n", NULL, -EINVAL, "not a YAML mapping");
    expect_error("kind: Pod\n", NULL, -EINVAL, "kind \"Pod\"");
    expect_error("", NULL, -EINVAL, "exactly one");

    static const char base[] = "current-context: c\n"
                               "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                               "users: [{name: u, user: {token: t}}]\n";
    char text[1024];
    snprintf(text, sizeof(text), "%sclusters: [{name: k, cluster: {}}]\n", base);
    expect_error(text, NULL, -EINVAL, "has no server");
    snprintf(text, sizeof(text), "%sclusters: [{name: k, cluster: {server: 'ftp://x'}}]\n", base);
    expect_error(text, NULL, -EINVAL, "http(s) URL");
    snprintf(text, sizeof(text), "%sclusters: [{name: k, cluster: {server: 'https://'}}]\n", base);
    expect_error(text, NULL, -EINVAL, "has no host");
    snprintf(text, sizeof(text), "%sclusters: [{name: k, cluster: {server: 'http:///x'}}]\n", base);
    expect_error(text, NULL, -EINVAL, "has no host");
    snprintf(text, sizeof(text),
             "%sclusters: [{name: k, cluster: {server: 'https://x', "
             "certificate-authority-data: 'not base64!'}}]\n",
             base);
    expect_error(text, NULL, -EINVAL, "certificate-authority-data is not valid base64");
    snprintf(text, sizeof(text),
             "%sclusters: [{name: k, cluster: {server: 'https://x', certificate-authority: ca, "
             "insecure-skip-tls-verify: true}}]\n",
             base);
    expect_error(text, NULL, -EINVAL, "insecure-skip-tls-verify is not allowed");
    snprintf(text, sizeof(text),
             "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
             "clusters: [{name: k, cluster: {server: 'https://x'}}]\n"
             "users: [{name: u, user: {client-certificate: a.crt}}]\n");
    expect_error(text, NULL, -EINVAL, "client certificate without client key");
    snprintf(text, sizeof(text),
             "current-context: c\ncontexts: [{name: c, context: {cluster: missing}}]\n");
    expect_error(text, NULL, -EINVAL, "cluster \"missing\"");
    snprintf(text, sizeof(text),
             "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n"
             "clusters: [{name: k, cluster: {server: 42}}]\n");
    expect_error(text, NULL, -EINVAL, "server must be a string");
}

static void expect_b64(const char *in, int rc, const char *out, size_t out_len)
{
    char *d = NULL;
    size_t n = 0;
    NS_ASSERT_INT_EQ(ns_base64_decode(in, strlen(in), &d, &n), rc);
    if (rc == 0) {
        NS_ASSERT_INT_EQ(n, out_len);
        CU_ASSERT_TRUE(d && memcmp(d, out, out_len) == 0 && d[n] == '\0');
    }
    free(d);
}

static void test_base64(void)
{
    expect_b64("", 0, "", 0);
    expect_b64("Zg==", 0, "f", 1);
    expect_b64("Zm8=", 0, "fo", 2);
    expect_b64("Zm9v", 0, "foo", 3);
    expect_b64("Zm9vYmFy", 0, "foobar", 6);
    expect_b64("Zm9v\nYmFy\r\n", 0, "foobar", 6);
    expect_b64(" Zm9v YmE= ", 0, "fooba", 5);
    expect_b64("AP8A", 0, "\x00\xff\x00", 3);
    expect_b64("+/+/", 0, "\xfb\xff\xbf", 3);
    expect_b64("Zm9", -EINVAL, NULL, 0);      /* unpadded tail */
    expect_b64("Zg=", -EINVAL, NULL, 0);      /* short padding */
    expect_b64("Z===", -EINVAL, NULL, 0);     /* one char + three pads */
    expect_b64("====", -EINVAL, NULL, 0);     /* only padding */
    expect_b64("Zg==Zg==", -EINVAL, NULL, 0); /* data after padding */
    expect_b64("Zm9v=", -EINVAL, NULL, 0);    /* padding after a full group */
    expect_b64("Zm9-", -EINVAL, NULL, 0);     /* URL alphabet is not standard */
    expect_b64("Zm9v!", -EINVAL, NULL, 0);
}

/* Saves and restores an environment variable around a test. */
typedef struct saved_env {
    const char *name;
    char *value;
} saved_env;

static saved_env env_save(const char *name)
{
    const char *v = getenv(name);
    return (saved_env){.name = name, .value = v ? strdup(v) : NULL};
}

static void env_restore(saved_env *s)
{
    if (s->value)
        setenv(s->name, s->value, 1);
    else
        unsetenv(s->name);
    free(s->value);
}

static void test_default_path(void)
{
    saved_env kc = env_save("KUBECONFIG"), home = env_save("HOME");
    char p[256];
    setenv("KUBECONFIG", "::/first/config:/second/config", 1);
    NS_ASSERT_INT_EQ(ns_kubeconfig_default_path(p, sizeof(p)), 0);
    NS_ASSERT_STR_EQ(p, "/first/config");
    NS_ASSERT_INT_EQ(ns_kubeconfig_default_path(p, 5), -ENAMETOOLONG);
    setenv("KUBECONFIG", "", 1);
    setenv("HOME", "/home/dev", 1);
    NS_ASSERT_INT_EQ(ns_kubeconfig_default_path(p, sizeof(p)), 0);
    NS_ASSERT_STR_EQ(p, "/home/dev/.kube/config");
    unsetenv("KUBECONFIG");
    unsetenv("HOME");
    NS_ASSERT_INT_EQ(ns_kubeconfig_default_path(p, sizeof(p)), -ENOENT);
    env_restore(&kc);
    env_restore(&home);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

static void remove_file(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unlink(path);
}

static void test_load_file(void)
{
    char dir[] = "/tmp/ns-kubeconfig-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    write_file(dir, "config", kubeconfig);
    char path[512];
    snprintf(path, sizeof(path), "%s/config", dir);
    ns_kube_config c;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(ns_kubeconfig_load(path, "lab", &c, &err), 0);
    char want[600];
    snprintf(want, sizeof(want), "%s/admin.key", dir); /* relative to the file's folder */
    NS_ASSERT_STR_EQ(c.key_file, want);
    ns_kube_config_free(&c);

    /* KUBECONFIG picks the file; errors name it */
    saved_env kc = env_save("KUBECONFIG");
    setenv("KUBECONFIG", path, 1);
    NS_ASSERT_INT_EQ(ns_kube_config_auto(NULL, "nope", &c, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, path));
    NS_ASSERT_INT_EQ(ns_kube_config_auto(NULL, NULL, &c, &err), 0);
    NS_ASSERT_STR_EQ(c.context_name, "dev");
    ns_kube_config_free(&c);
    env_restore(&kc);

    NS_ASSERT_INT_EQ(ns_kubeconfig_load("/nonexistent/kubeconfig", NULL, &c, &err), -ENOENT);
    remove_file(dir, "config");
    rmdir(dir);
}

static void test_in_cluster(void)
{
    char dir[] = "/tmp/ns-sa-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    ns_kube_config c;
    ns_err err = {0};

    /* no token yet: not (properly) in a cluster */
    NS_ASSERT_INT_EQ(ns_kube_config_in_cluster(dir, "10.96.0.1", "443", &c, &err), -ENOENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "token"));

    write_file(dir, "token", "eyJhbGciOi.secret\n");
    NS_ASSERT_INT_EQ(ns_kube_config_in_cluster(dir, "10.96.0.1", "443", &c, &err), 0);
    NS_ASSERT_STR_EQ(c.server, "https://10.96.0.1:443");
    CU_ASSERT_PTR_NULL(c.ca_file); /* no ca.crt: system roots */
    CU_ASSERT_PTR_NULL(c.token);   /* by file, so that rotation is followed */
    char want[600];
    snprintf(want, sizeof(want), "%s/token", dir);
    NS_ASSERT_STR_EQ(c.token_file, want);
    NS_ASSERT_STR_EQ(c.namespace, "default");
    ns_kube_config_free(&c);

    write_file(dir, "ca.crt", CA_PEM);
    write_file(dir, "namespace", "nutshell-system\n");
    NS_ASSERT_INT_EQ(ns_kube_config_in_cluster(dir, "fd00::1", "6443", &c, &err), 0);
    NS_ASSERT_STR_EQ(c.server, "https://[fd00::1]:6443");
    snprintf(want, sizeof(want), "%s/ca.crt", dir);
    NS_ASSERT_STR_EQ(c.ca_file, want);
    NS_ASSERT_STR_EQ(c.namespace, "nutshell-system");
    ns_kube_config_free(&c);

    NS_ASSERT_INT_EQ(ns_kube_config_in_cluster(dir, "10.96.0.1", "https", &c, &err), -EINVAL);
    saved_env host = env_save("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_HOST");
    NS_ASSERT_INT_EQ(ns_kube_config_in_cluster(dir, NULL, "443", &c, &err), -ENOENT);
    env_restore(&host);

    remove_file(dir, "token");
    remove_file(dir, "ca.crt");
    remove_file(dir, "namespace");
    rmdir(dir);
}

const ns_test kubeconfig_tests[] = {
    {"current context with -data fields", test_current_context_with_data},
    {"named context and relative paths", test_named_context_and_relative_paths},
    {"errors", test_errors},
    {"base64", test_base64},
    {"default path", test_default_path},
    {"load file", test_load_file},
    {"in-cluster", test_in_cluster},
    {NULL, NULL},
};

/* test_kubewatch.c - watch streams: line framing across every chunk boundary, the line
 * limit, event parsing and watch request paths. */
#include "kubewatch.h"
#include "suites.h"

#include <stdlib.h>

/* Collects lines as "line|line|..." */
typedef struct collect {
    ns_buf out;
    int lines;
    int stop_at; /* return 99 from this line (1-based), 0: never */
    const char *data_lo, *data_hi;
    int zero_copy; /* lines passed straight from the fed bytes */
} collect;

static int collect_cb(void *ud, const char *line, size_t len)
{
    collect *c = ud;
    c->lines++;
    if (c->out.len)
        ns_buf_putc(&c->out, '|');
    ns_buf_append(&c->out, line, len);
    if (line >= c->data_lo && line < c->data_hi)
        c->zero_copy++;
    return c->lines == c->stop_at ? 99 : 0;
}

static void collect_init(collect *c)
{
    *c = (collect){0};
    ns_buf_init(&c->out);
}

static const char stream[] =
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"10\"}}}\n"
    "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"11\"},"
    "\"data\":{\"k\":\"line\\nbreak\"}}}\r\n"
    "\n"
    "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"12\"}}}\n"
    "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"13\"}}}"
    "\n";

static const char expected[] =
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"10\"}}}|"
    "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"11\"},"
    "\"data\":{\"k\":\"line\\nbreak\"}}}|"
    "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"12\"}}}|"
    "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"13\"}}}";

/* Feeds `stream` cut at positions i <= j into three chunks. */
static bool feed_split(size_t i, size_t j)
{
    size_t n = sizeof(stream) - 1;
    ns_kube_lines l;
    ns_kube_lines_init(&l, 0);
    collect c;
    collect_init(&c);
    bool ok = ns_kube_lines_feed(&l, stream, i, collect_cb, &c) == 0 &&
              ns_kube_lines_feed(&l, stream + i, j - i, collect_cb, &c) == 0 &&
              ns_kube_lines_feed(&l, stream + j, n - j, collect_cb, &c) == 0;
    ok = ok && c.lines == 4 && strcmp(ns_buf_cstr(&c.out), expected) == 0 && l.partial.len == 0;
    if (!ok)
        fprintf(stderr, "\n  split at %zu, %zu: got %d lines \"%s\"\n", i, j, c.lines,
                ns_buf_cstr(&c.out));
    ns_buf_free(&c.out);
    ns_kube_lines_free(&l);
    return ok;
}

static void test_every_chunk_boundary(void)
{
    size_t n = sizeof(stream) - 1;
    size_t bad = 0;
    for (size_t i = 0; i <= n; i++)
        for (size_t j = i; j <= n; j++)
            bad += !feed_split(i, j);
    NS_ASSERT_INT_EQ(bad, 0);
}

static void test_byte_by_byte(void)
{
    ns_kube_lines l;
    ns_kube_lines_init(&l, 0);
    collect c;
    collect_init(&c);
    for (size_t i = 0; i < sizeof(stream) - 1; i++)
        NS_ASSERT_INT_EQ(ns_kube_lines_feed(&l, stream + i, 1, collect_cb, &c), 0);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&c.out), expected);
    ns_buf_free(&c.out);
    ns_kube_lines_free(&l);
}

static void test_zero_copy_and_pending(void)
{
    ns_kube_lines l;
    ns_kube_lines_init(&l, 0);
    collect c;
    collect_init(&c);
    static const char two[] = "one\ntwo\nthr";
    c.data_lo = two;
    c.data_hi = two + sizeof(two);
    NS_ASSERT_INT_EQ(ns_kube_lines_feed(&l, two, sizeof(two) - 1, collect_cb, &c), 0);
    NS_ASSERT_INT_EQ(c.zero_copy, 2);
    NS_ASSERT_INT_EQ(l.partial.len, 3); /* "thr" waits for its end */
    NS_ASSERT_INT_EQ(ns_kube_lines_feed(&l, "ee\n", 3, collect_cb, &c), 0);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&c.out), "one|two|three");
    /* a new connection forgets the partial line */
    NS_ASSERT_INT_EQ(ns_kube_lines_feed(&l, "half", 4, collect_cb, &c), 0);
    ns_kube_lines_reset(&l);
    NS_ASSERT_INT_EQ(ns_kube_lines_feed(&l, "new\n", 4, collect_cb, &c), 0);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&c.out), "one|two|three|new");
    /* empty input is fine */
    NS_ASSERT_INT_EQ(ns_kube_lines_feed(&l, "", 0, collect_cb, &c), 0);
    ns_buf_free(&c.out);
    ns_kube_lines_free(&l);
}

static void test_callback_stops(void)
{
    ns_kube_lines l;
    ns_kube_lines_init(&l, 0);
    collect c;
    collect_init(&c);
    c.stop_at = 2;
    NS_ASSERT_INT_EQ(ns_kube_lines_feed(&l, "a\nb\nc\n", 6, collect_cb, &c), 99);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&c.out), "a|b");
    ns_buf_free(&c.out);
    ns_kube_lines_free(&l);
}

static void test_line_limit(void)
{
    ns_kube_lines l;
    ns_kube_lines_init(&l, 10);
    collect c;
    collect_init(&c);
    /* exactly the limit is fine, in one piece or several */
    NS_ASSERT_INT_EQ(ns_kube_lines_feed(&l, "0123456789\n", 11, collect_cb, &c), 0);
    NS_ASSERT_INT_EQ(ns_kube_lines_feed(&l, "01234", 5, collect_cb, &c), 0);
    NS_ASSERT_INT_EQ(ns_kube_lines_feed(&l, "56789\r\n", 7, collect_cb, &c), 0);
    NS_ASSERT_INT_EQ(c.lines, 2);
    /* a longer line is refused as soon as it cannot fit (even with a '\r' to strip),
     * without waiting for its newline */
    NS_ASSERT_INT_EQ(ns_kube_lines_feed(&l, "0123456", 7, collect_cb, &c), 0);
    NS_ASSERT_INT_EQ(ns_kube_lines_feed(&l, "78901", 5, collect_cb, &c), -EMSGSIZE);
    /* sticky until reset */
    NS_ASSERT_INT_EQ(ns_kube_lines_feed(&l, "ok\n", 3, collect_cb, &c), -EMSGSIZE);
    ns_kube_lines_reset(&l);
    NS_ASSERT_INT_EQ(ns_kube_lines_feed(&l, "ok\n", 3, collect_cb, &c), 0);
    NS_ASSERT_INT_EQ(ns_kube_lines_feed(&l, "01234567890\n", 12, collect_cb, &c), -EMSGSIZE);
    NS_ASSERT_INT_EQ(c.lines, 3);
    ns_buf_free(&c.out);
    ns_kube_lines_free(&l);

    /* a 5 MiB line in 4 KiB chunks under the default limit */
    size_t big = (size_t)5 << 20;
    char *line = malloc(big + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(line);
    memset(line, 'x', big);
    line[big] = '\n';
    ns_kube_lines_init(&l, 0);
    collect_init(&c);
    int rc = 0;
    for (size_t off = 0; off < big + 1 && rc == 0; off += 4096) {
        size_t n = big + 1 - off < 4096 ? big + 1 - off : 4096;
        rc = ns_kube_lines_feed(&l, line + off, n, collect_cb, &c);
    }
    NS_ASSERT_INT_EQ(rc, 0);
    NS_ASSERT_INT_EQ(c.lines, 1);
    NS_ASSERT_INT_EQ(c.out.len, big);
    ns_buf_free(&c.out);
    ns_kube_lines_free(&l);
    free(line);
}

static void test_event_parse(void)
{
    ns_kube_event ev;
    ns_err err = {0};
    static const char added[] = "{\"type\":\"ADDED\",\"object\":{\"kind\":\"ConfigMap\","
                                "\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"42\"}}}";
    NS_ASSERT_INT_EQ(ns_kube_event_parse(added, strlen(added), &ev, &err), 0);
    NS_ASSERT_INT_EQ(ev.type, NS_KUBE_EVENT_ADDED);
    NS_ASSERT_STR_EQ(ev.resource_version, "42");
    NS_ASSERT_STR_EQ(cJSON_GetObjectItem(ev.object, "kind")->valuestring, "ConfigMap");
    NS_ASSERT_STR_EQ(ns_kube_event_type_name(ev.type), "ADDED");
    ns_kube_event_clear(&ev);
    CU_ASSERT_PTR_NULL(ev.object);

    static const char bookmark[] =
        "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":"
        "{\"resourceVersion\":\"77\",\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}}}}";
    NS_ASSERT_INT_EQ(ns_kube_event_parse(bookmark, strlen(bookmark), &ev, &err), 0);
    NS_ASSERT_INT_EQ(ev.type, NS_KUBE_EVENT_BOOKMARK);
    NS_ASSERT_STR_EQ(ev.resource_version, "77");
    ns_kube_event_clear(&ev);

    static const char gone[] =
        "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
        "\"status\":\"Failure\",\"message\":\"too old resource version: 5 (9)\","
        "\"reason\":\"Expired\",\"code\":410}}";
    NS_ASSERT_INT_EQ(ns_kube_event_parse(gone, strlen(gone), &ev, &err), 0);
    NS_ASSERT_INT_EQ(ev.type, NS_KUBE_EVENT_ERROR);
    NS_ASSERT_INT_EQ(ev.status.code, 410);
    NS_ASSERT_STR_EQ(ev.status.reason, "Expired");
    NS_ASSERT_STR_EQ(ev.status.message, "too old resource version: 5 (9)");
    CU_ASSERT_TRUE(ns_kube_is_gone(&ev.status));
    CU_ASSERT_PTR_NULL(ev.resource_version);
    ns_kube_event_clear(&ev);

    static const char *const bad[] = {
        "{\"type\":\"ADDED\"}",
        "{\"type\":\"RESYNC\",\"object\":{}}",
        "{\"object\":{}}",
        "{\"type\":\"ADDED\",\"object\":[]}",
        "{\"type\":\"ADDED\",\"object\":{}",
        "[]",
        "not json",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = ns_kube_event_parse(bad[i], strlen(bad[i]), &ev, &err);
        if (rc != -EINVAL)
            fprintf(stderr, "\n  \"%s\" gave %d\n", bad[i], rc);
        CU_ASSERT_EQUAL(rc, -EINVAL);
        CU_ASSERT_PTR_NULL(ev.object);
    }
    NS_ASSERT_STR_EQ(ns_kube_event_type_name((ns_kube_event_type)42), "UNKNOWN");
}

static void expect_watch_path(const ns_kube_ref *ref, const ns_kube_watch_opts *opts,
                              const char *rv, long timeout, const char *want)
{
    ns_buf b;
    ns_buf_init(&b);
    NS_ASSERT_INT_EQ(ns_kube_watch_path(ref, opts, rv, timeout, &b, NULL), 0);
    NS_ASSERT_STR_EQ(ns_buf_cstr(&b), want);
    ns_buf_free(&b);
}

static void test_watch_path(void)
{
    ns_kube_ref cms = {.version = "v1", .resource = "configmaps", .namespace = "team-a"};
    expect_watch_path(&cms, NULL, NULL, 0,
                      "/api/v1/namespaces/team-a/configmaps?watch=1&allowWatchBookmarks=true");
    expect_watch_path(&cms, &(ns_kube_watch_opts){.label_selector = "app=web,tier!=db"}, "123", 300,
                      "/api/v1/namespaces/team-a/configmaps?watch=1&allowWatchBookmarks=true"
                      "&labelSelector=app%3Dweb%2Ctier%21%3Ddb&resourceVersion=123"
                      "&timeoutSeconds=300");
    /* a named watch narrows by field selector; bookmarks can be turned off */
    cms.name = "cfg";
    expect_watch_path(&cms, &(ns_kube_watch_opts){.no_bookmarks = true, .field_selector = "type=x"},
                      "", 60,
                      "/api/v1/namespaces/team-a/configmaps?watch=1"
                      "&fieldSelector=metadata.name%3Dcfg%2Ctype%3Dx&timeoutSeconds=60");
    expect_watch_path(
        &(ns_kube_ref){.group = "nutshell.io", .version = "v1alpha1", .resource = "canaries"},
        &(ns_kube_watch_opts){.field_selector = "metadata.namespace!=kube-system"}, "9", 0,
        "/apis/nutshell.io/v1alpha1/canaries?watch=1&allowWatchBookmarks=true"
        "&fieldSelector=metadata.namespace%21%3Dkube-system&resourceVersion=9");
    ns_buf b;
    ns_buf_init(&b);
    ns_err err = {0};
    NS_ASSERT_INT_EQ(
        ns_kube_watch_path(&(ns_kube_ref){.version = "v1", .resource = "pods", .name = "a,b"}, NULL,
                           NULL, 0, &b, &err),
        -EINVAL);
    NS_ASSERT_INT_EQ(ns_kube_watch_path(&(ns_kube_ref){.version = "v1"}, NULL, NULL, 0, &b, &err),
                     -EINVAL);
    ns_buf_free(&b);
}

const ns_test kubewatch_tests[] = {
    {"every chunk boundary", test_every_chunk_boundary},
    {"byte by byte", test_byte_by_byte},
    {"zero copy and pending line", test_zero_copy_and_pending},
    {"callback stops", test_callback_stops},
    {"line limit", test_line_limit},
    {"event parse", test_event_parse},
    {"watch path", test_watch_path},
    {NULL, NULL},
};

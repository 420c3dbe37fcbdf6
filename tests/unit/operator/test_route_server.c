/* test_route_server.c - the discovery server on loopback, fed by a table source the test
 * controls: 503 before the first table, 200 with the table, a long-poll held until the
 * table changes (and answered at once when the client's version is old), 304 when its wait
 * ends, 400/404/405 for bad requests, and a stop that answers the requests still held.
 */
#include "route_server.h"
#include "suites.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct source {
    pthread_mutex_t mu;
    char table[128];
    uint64_t version;
    bool ready;
    atomic_int builds;
} source;

static int build(void *ud, char **table, uint64_t *version)
{
    source *s = ud;
    atomic_fetch_add(&s->builds, 1);
    pthread_mutex_lock(&s->mu);
    int rc = -EAGAIN;
    if (s->ready) {
        *table = strdup(s->table);
        *version = s->version;
        rc = *table ? 0 : -ENOMEM;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void source_set(source *s, uint64_t version)
{
    pthread_mutex_lock(&s->mu);
    snprintf(s->table, sizeof(s->table), "{\"version\":%llu,\"routes\":[]}",
             (unsigned long long)version);
    s->version = version;
    s->ready = true;
    pthread_mutex_unlock(&s->mu);
}

typedef struct answer {
    long status;
    char body[256];
    size_t len;
    int64_t took_ms;
} answer;

static size_t write_cb(char *p, size_t size, size_t n, void *ud)
{
    answer *a = ud;
    size_t len = size * n;
    size_t room = sizeof(a->body) - 1 - a->len;
    memcpy(a->body + a->len, p, len < room ? len : room);
    a->len += len < room ? len : room;
    a->body[a->len] = '\0';
    return len;
}

static void fetch(uint16_t port, const char *method, const char *path, answer *a)
{
    memset(a, 0, sizeof(*a));
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 15000L);
    int64_t t0 = test_now_ms();
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
    a->took_ms = test_now_ms() - t0;
    curl_easy_cleanup(c);
}

typedef struct bg_fetch {
    pthread_t t;
    uint16_t port;
    char path[128];
    answer a;
    atomic_bool done;
} bg_fetch;

static void *bg_main(void *arg)
{
    bg_fetch *b = arg;
    fetch(b->port, "GET", b->path, &b->a);
    atomic_store(&b->done, true);
    return NULL;
}

static void bg_start(bg_fetch *b, uint16_t port, const char *path)
{
    memset(b, 0, sizeof(*b));
    b->port = port;
    snprintf(b->path, sizeof(b->path), "%s", path);
    atomic_init(&b->done, false);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&b->t, NULL, bg_main, b), 0);
}

static route_server *start(source *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->builds, 0);
    route_server_opts o = {.host = "127.0.0.1", .port = 0, .build = build, .ud = s};
    route_server *rs = NULL;
    ns_err err = {0};
    int rc = route_server_start(&o, &rs, &err);
    if (rc)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_NOT_EQUAL(route_server_port(rs), 0);
    return rs;
}

static void test_not_ready_then_table(void)
{
    source s;
    route_server *rs = start(&s);
    uint16_t port = route_server_port(rs);
    answer a;
    fetch(port, "GET", "/v1/routes", &a);
    NS_ASSERT_INT_EQ(a.status, 503);
    /* the server keeps trying to build (once a second) until the source is ready */
    source_set(&s, 7);
    CU_ASSERT(WAIT_UNTIL((fetch(port, "GET", "/v1/routes", &a), a.status == 200), 5000));
    NS_ASSERT_STR_EQ(a.body, "{\"version\":7,\"routes\":[]}");
    fetch(port, "GET", "/v1/routes?version=3", &a); /* an old version: answered at once */
    NS_ASSERT_INT_EQ(a.status, 200);
    CU_ASSERT(a.took_ms < 1000);
    fetch(port, "GET", "/v1/routes?version=7&wait=0", &a); /* no wait asked: 304 now */
    NS_ASSERT_INT_EQ(a.status, 304);
    route_server_stop(rs);
}

static void test_long_poll(void)
{
    source s;
    route_server *rs = start(&s);
    uint16_t port = route_server_port(rs);
    source_set(&s, 1);
    route_server_invalidate(rs);
    answer a;
    CU_ASSERT(WAIT_UNTIL((fetch(port, "GET", "/v1/routes", &a), a.status == 200), 5000));

    /* Held: nothing changes for a while, then the table does. */
    bg_fetch b[3];
    for (int i = 0; i < 3; i++)
        bg_start(&b[i], port, "/v1/routes?version=1&wait=30");
    usleep(300 * 1000);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_FALSE(atomic_load(&b[i].done));
    int builds = atomic_load(&s.builds);
    route_server_invalidate(rs); /* an event that does not change the table */
    CU_ASSERT(WAIT_UNTIL(atomic_load(&s.builds) > builds, 2000));
    usleep(200 * 1000);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_FALSE(atomic_load(&b[i].done)); /* same version: still held */
    source_set(&s, 2);
    route_server_invalidate(rs);
    for (int i = 0; i < 3; i++) {
        pthread_join(b[i].t, NULL);
        NS_ASSERT_INT_EQ(b[i].a.status, 200);
        NS_ASSERT_STR_EQ(b[i].a.body, "{\"version\":2,\"routes\":[]}");
        CU_ASSERT(b[i].a.took_ms >= 400 && b[i].a.took_ms < 5000);
    }

    /* The wait ends: 304 after about `wait` seconds. */
    fetch(port, "GET", "/v1/routes?version=2&wait=1", &a);
    NS_ASSERT_INT_EQ(a.status, 304);
    CU_ASSERT(a.took_ms >= 900 && a.took_ms < 3500);
    route_server_stop(rs);
}

static void test_bad_requests(void)
{
    source s;
    route_server *rs = start(&s);
    uint16_t port = route_server_port(rs);
    answer a;
    fetch(port, "GET", "/v1/routes?version=abc", &a);
    NS_ASSERT_INT_EQ(a.status, 400);
    fetch(port, "GET", "/v1/routes?version=-1", &a);
    NS_ASSERT_INT_EQ(a.status, 400);
    fetch(port, "GET", "/v1/routes?version=1&wait=301", &a);
    NS_ASSERT_INT_EQ(a.status, 400);
    fetch(port, "GET", "/v2/routes", &a);
    NS_ASSERT_INT_EQ(a.status, 404);
    fetch(port, "DELETE", "/v1/routes", &a);
    NS_ASSERT_INT_EQ(a.status, 405);
    route_server_stop(rs);
}

static void test_stop_answers_held(void)
{
    source s;
    route_server *rs = start(&s);
    uint16_t port = route_server_port(rs);
    source_set(&s, 5);
    route_server_invalidate(rs);
    answer a;
    CU_ASSERT(WAIT_UNTIL((fetch(port, "GET", "/v1/routes", &a), a.status == 200), 5000));
    bg_fetch b;
    bg_start(&b, port, "/v1/routes?version=5&wait=60");
    usleep(300 * 1000);
    CU_ASSERT_FALSE(atomic_load(&b.done));
    int64_t t0 = test_now_ms();
    route_server_stop(rs); /* must not wait for the 60 s */
    CU_ASSERT(test_now_ms() - t0 < 5000);
    pthread_join(b.t, NULL);
    /* Answered (304: nothing changed) or cut by the stop; never left hanging. */
    CU_ASSERT(b.a.status == 304 || b.a.status == 0);
    CU_ASSERT(b.a.took_ms < 5000);
}

/* A client that goes away while held: its connection is released within about a
 * second (the server polls held sockets for hang-ups once a second), not at the next
 * change or the end of its wait. */
static void test_client_gone(void)
{
    source s;
    route_server *rs = start(&s);
    uint16_t port = route_server_port(rs);
    source_set(&s, 9);
    route_server_invalidate(rs);
    answer a;
    CU_ASSERT(WAIT_UNTIL((fetch(port, "GET", "/v1/routes", &a), a.status == 200), 5000));
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CU_ASSERT_EQUAL_FATAL(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
        static const char req[] = "GET /v1/routes?version=9&wait=120 HTTP/1.1\r\n"
                                  "Host: x\r\nConnection: close\r\n\r\n";
        CU_ASSERT_EQUAL(send(fds[i], req, sizeof(req) - 1, 0), (ssize_t)(sizeof(req) - 1));
    }
    CU_ASSERT(WAIT_UNTIL(route_server_held(rs) == 3, 3000));
    close(fds[0]);
    close(fds[1]);
    int64_t t0 = test_now_ms();
    CU_ASSERT(WAIT_UNTIL(route_server_held(rs) == 1, 3000));
    CU_ASSERT(test_now_ms() - t0 < 2500);
    usleep(1200 * 1000);
    NS_ASSERT_INT_EQ(route_server_held(rs), 1); /* the one still connected stays held */
    close(fds[2]);
    CU_ASSERT(WAIT_UNTIL(route_server_held(rs) == 0, 3000));
    route_server_stop(rs);
}

static void test_bad_listen(void)
{
    source s = {0};
    route_server_opts o = {.host = "not-an-ip", .build = build, .ud = &s};
    route_server *rs = NULL;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(route_server_start(&o, &rs, &err), -EINVAL);
    CU_ASSERT_PTR_NULL(rs);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "not-an-ip"));
}

const ns_test route_server_tests[] = {
    {"503 until the first table, then 200", test_not_ready_then_table},
    {"long-poll: held until the version changes; 304 after the wait", test_long_poll},
    {"bad requests", test_bad_requests},
    {"stop answers the held requests", test_stop_answers_held},
    {"a client that goes away while held is released", test_client_gone},
    {"a listen address that is not an IP", test_bad_listen},
    {NULL, NULL},
};

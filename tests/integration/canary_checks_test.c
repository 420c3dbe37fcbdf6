/* canary_checks_test.c - the Canary's network checks (operator/canary_checks.h) against a
 * real Prometheus and a webhook receiver served from this process: what passes, what
 * fails and with which words, and that every wait is bounded.
 *
 * Usage: canary_checks_test PROMETHEUS_URL  (canary_checks_test.sh starts Prometheus
 * through hack/lib/prometheus.sh and passes its URL; it must scrape itself, so that
 * up{job="prometheus"} exists.)
 */
#include "canary_checks.h"
#include "log.h"
#include "strconv.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *prom_url;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ the receiver */

/* What the receiver does for each path: the webhooks a user would run, well and badly
 * behaved, and a "Prometheus" that accepts the query and never answers. */
enum route {
    ROUTE_OK,
    ROUTE_ACCEPTED,
    ROUTE_FAIL,
    ROUTE_REDIRECT,
    ROUTE_SLOW,
    ROUTE_HANG,
    ROUTE_RECORD,
    ROUTE_UNKNOWN,
    ROUTE_N
};
static const char *const route_path[ROUTE_N] = {
    "/ok", "/accepted", "/fail", "/redirect", "/slow", "/hang/api/v1/query", "/record", "",
};
#define SLOW_MS     3000
#define HANG_MS     13000
#define MAX_CONNS   128
#define MAX_REQUEST (64 * 1024)

static struct receiver {
    int fd;
    uint16_t port;
    pthread_t acceptor;
    atomic_bool stop;
    pthread_mutex_t mu;
    int calls[ROUTE_N];
    char last_method[16];
    char last_content_type[128];
    char last_body[8192];
    pthread_t conns[MAX_CONNS];
    size_t n_conns;
} rx = {.fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER};

static char hook_url[ROUTE_N][96];

static int calls(enum route r)
{
    pthread_mutex_lock(&rx.mu);
    int n = rx.calls[r];
    pthread_mutex_unlock(&rx.mu);
    return n;
}

/* Sleeps up to ms, cut short when the receiver stops. */
static void nap(int ms)
{
    for (int i = 0; i < ms / 10 && !atomic_load(&rx.stop); i++)
        usleep(10000);
}

/* The value of header `name` in the header block `head`, copied into out. */
static bool header_value(const char *head, const char *name, char *out, size_t len)
{
    size_t nlen = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        const char *p = line + 2;
        if (strncasecmp(p, name, nlen) != 0 || p[nlen] != ':')
            continue;
        p += nlen + 1;
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, "\r\n");
        if (n >= len)
            n = len - 1;
        memcpy(out, p, n);
        out[n] = '\0';
        return true;
    }
    return false;
}

static void reply(int fd, int status, const char *extra_headers, const char *body)
{
    char msg[512];
    int n = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 %d X\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n%s\r\n%s",
                     status, strlen(body), extra_headers, body);
    if (n > 0)
        (void)send(fd, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1, MSG_NOSIGNAL);
}

/* One connection: one request, one answer, close. */
static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char *req = malloc(MAX_REQUEST + 1);
    size_t len = 0;
    const char *body = NULL;
    int64_t want = -1;
    while (req && len < MAX_REQUEST) {
        ssize_t n = recv(fd, req + len, MAX_REQUEST - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        req[len] = '\0';
        if (!body) {
            char *end = strstr(req, "\r\n\r\n");
            if (!end)
                continue;
            *end = '\0'; /* the header block becomes its own string */
            body = end + 4;
            char cl[32] = "0";
            header_value(req, "Content-Length", cl, sizeof(cl));
            if (ns_parse_i64(cl, 0, MAX_REQUEST, &want) != 0)
                break;
        }
        if ((int64_t)(len - (size_t)(body - req)) >= want)
            break;
    }
    if (!req || !body || (int64_t)(len - (size_t)(body - req)) < want) {
        free(req);
        close(fd);
        return NULL;
    }
    char method[16] = "", path[256] = "";
    size_t mlen = strcspn(req, " ");
    if (mlen < sizeof(method))
        memcpy(method, req, mlen);
    const char *p = req + mlen + (req[mlen] == ' ');
    size_t plen = strcspn(p, " ?");
    if (plen < sizeof(path))
        memcpy(path, p, plen);
    enum route r = ROUTE_UNKNOWN;
    for (int i = 0; i < ROUTE_UNKNOWN; i++)
        if (strcmp(path, route_path[i]) == 0)
            r = (enum route)i;

    pthread_mutex_lock(&rx.mu);
    rx.calls[r]++;
    if (r == ROUTE_RECORD) {
        snprintf(rx.last_method, sizeof(rx.last_method), "%s", method);
        rx.last_content_type[0] = '\0';
        header_value(req, "Content-Type", rx.last_content_type, sizeof(rx.last_content_type));
        snprintf(rx.last_body, sizeof(rx.last_body), "%.*s", (int)want, body);
    }
    pthread_mutex_unlock(&rx.mu);

    switch (r) {
    case ROUTE_OK:
    case ROUTE_RECORD:
        reply(fd, 200, "", "ok");
        break;
    case ROUTE_ACCEPTED:
        reply(fd, 202, "", "");
        break;
    case ROUTE_FAIL:
        reply(fd, 500, "", "database on fire");
        break;
    case ROUTE_REDIRECT:
        reply(fd, 302, "Location: /ok\r\n", "");
        break;
    case ROUTE_SLOW:
        nap(SLOW_MS);
        reply(fd, 200, "", "late");
        break;
    case ROUTE_HANG:
        nap(HANG_MS);
        reply(fd, 200, "",
              "{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\","
              "\"result\":[0,\"1\"]}}");
        break;
    default:
        reply(fd, 404, "", "no such webhook");
        break;
    }
    free(req);
    close(fd);
    return NULL;
}

static void *acceptor_main(void *arg)
{
    while (!atomic_load(&rx.stop)) {
        struct pollfd pfd = {.fd = rx.fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        int c = accept(rx.fd, NULL, NULL);
        if (c < 0)
            continue;
        pthread_mutex_lock(&rx.mu);
        bool room = rx.n_conns < MAX_CONNS;
        if (room &&
            pthread_create(&rx.conns[rx.n_conns], NULL, conn_main, (void *)(intptr_t)c) == 0)
            rx.n_conns++;
        else
            close(c);
        pthread_mutex_unlock(&rx.mu);
    }
    return NULL;
}

/* A loopback port nobody listens on: bound, then released. */
static uint16_t dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    uint16_t port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int receiver_start(void)
{
    rx.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (rx.fd < 0 || bind(rx.fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(rx.fd, 64) != 0 ||
        getsockname(rx.fd, (struct sockaddr *)&a, &alen) != 0)
        return -errno;
    rx.port = ntohs(a.sin_port);
    for (int i = 0; i < ROUTE_N; i++)
        snprintf(hook_url[i], sizeof(hook_url[i]), "http://127.0.0.1:%u%s", rx.port,
                 route_path[i][0] ? route_path[i] : "/nowhere");
    return -pthread_create(&rx.acceptor, NULL, acceptor_main, NULL);
}

static void receiver_stop(void)
{
    atomic_store(&rx.stop, true);
    pthread_join(rx.acceptor, NULL);
    for (size_t i = 0; i < rx.n_conns; i++)
        pthread_join(rx.conns[i], NULL);
    close(rx.fd);
}

/* ------------------------------------------------------------------ spec building */

static canary_spec new_spec(void)
{
    canary_spec s = {.name = "podinfo", .namespace = "canary-it", .interval_ms = 60000};
    snprintf(s.interval_text, sizeof(s.interval_text), "1m");
    return s;
}

static canary_metric *add_metric(canary_spec *s, const char *name, const char *query)
{
    canary_metric *m = &s->metrics[s->n_metrics++];
    *m = (canary_metric){.name = name, .query = query, .address = prom_url};
    snprintf(m->interval_text, sizeof(m->interval_text), "%s", s->interval_text);
    return m;
}

static canary_webhook *add_hook(canary_spec *s, const char *name, canary_hook_type t,
                                const char *url)
{
    canary_webhook *wh = &s->webhooks[s->n_webhooks++];
    *wh = (canary_webhook){.name = name, .type = t, .url = url, .timeout_ms = 5000};
    return wh;
}

static canary_status progressing(void)
{
    canary_status st = {.phase = CANARY_PHASE_PROGRESSING, .canary_weight = 30};
    snprintf(st.current_revision, sizeof(st.current_revision), "7c5d9f8b6");
    return st;
}

/* Runs the checks and returns how long they took; prints the message of a failure. */
static int64_t run(const canary_spec *s, canary_checks_kind kind, canary_check_results *res)
{
    canary_status st = progressing();
    int64_t t0 = now_ms();
    canary_checks_run(s, &st, kind, res);
    int64_t took = now_ms() - t0;
    printf("\n    %s in %lld ms%s%s\n  ", res->passed ? "passed" : "failed", (long long)took,
           res->message[0] ? ": " : "", res->message);
    NS_ASSERT_INT_EQ(res->kind, kind);
    return took;
}

#define ASSERT_MSG_HAS(res, text)                                                                  \
    do {                                                                                           \
        bool has_ = strstr((res).message, (text)) != NULL;                                         \
        if (!has_)                                                                                 \
            fprintf(stderr, "\n  %s:%d: message lacks \"%s\"", __FILE__, __LINE__, (text));        \
        CU_ASSERT_TRUE(has_);                                                                      \
    } while (0)

/* ------------------------------------------------------------------ metrics */

static void test_metric_in_range(void)
{
    canary_spec s = new_spec();
    canary_metric *m = add_metric(&s, "answer", "vector(42)");
    m->has_min = m->has_max = true;
    m->min = 41.5;
    m->max = 42;
    m = add_metric(&s, "prometheus-up", "scalar(up{job=\"prometheus\"})");
    m->has_min = m->has_max = true;
    m->min = m->max = 1;
    canary_check_results res;
    run(&s, CANARY_CHECKS_ANALYSIS, &res);
    CU_ASSERT_TRUE(res.passed);
    CU_ASSERT_FALSE(res.rollback_requested);
    NS_ASSERT_STR_EQ(res.message, "");
}

static void test_metric_out_of_range(void)
{
    canary_spec s = new_spec();
    canary_metric *m = add_metric(&s, "error-rate", "vector(42)");
    m->has_max = true;
    m->max = 41.9;
    canary_check_results res;
    run(&s, CANARY_CHECKS_ANALYSIS, &res);
    CU_ASSERT_FALSE(res.passed);
    ASSERT_MSG_HAS(res, "\"error-rate\"");
    ASSERT_MSG_HAS(res, "42");
    ASSERT_MSG_HAS(res, "41.9");

    /* below a minimum, through a scalar answer */
    s = new_spec();
    m = add_metric(&s, "prometheus-up", "scalar(up{job=\"prometheus\"})");
    m->has_min = true;
    m->min = 2;
    run(&s, CANARY_CHECKS_ANALYSIS, &res);
    CU_ASSERT_FALSE(res.passed);
    ASSERT_MSG_HAS(res, "\"prometheus-up\" is 1,");
}

static void test_metric_empty(void)
{
    canary_spec s = new_spec();
    canary_metric *m = add_metric(&s, "nope-up", "sum(up{job=\"nope\"})");
    m->has_max = true;
    m->max = 1e9; /* any number would do: there is none */
    canary_check_results res;
    run(&s, CANARY_CHECKS_ANALYSIS, &res);
    CU_ASSERT_FALSE(res.passed);
    ASSERT_MSG_HAS(res, "\"nope-up\"");
    ASSERT_MSG_HAS(res, "no data");
}

static void test_metric_query_errors(void)
{
    static const struct {
        const char *query, *says;
    } cases[] = {
        {"sum(", "parse error"},                  /* HTTP 400 bad_data */
        {"up{job=\"prometheus\"}[5s]", "matrix"}, /* a range, not a number */
        {"label_replace(vector(1), \"a\", \"x\", \"\", \"\") or "
         "label_replace(vector(2), \"a\", \"y\", \"\", \"\")",
         "2 series"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        canary_spec s = new_spec();
        canary_metric *m = add_metric(&s, "bad-query", cases[i].query);
        m->has_min = true;
        m->min = -1e9;
        canary_check_results res;
        run(&s, CANARY_CHECKS_ANALYSIS, &res);
        CU_ASSERT_FALSE(res.passed);
        ASSERT_MSG_HAS(res, "\"bad-query\"");
        ASSERT_MSG_HAS(res, cases[i].says);
    }
}

/* The count of a 1 s subquery over the interval is the interval in seconds (one more
 * when the evaluation time falls on a whole second): only a substituted interval gives
 * 5 or 6, and a wrong one gives another number. */
static void test_metric_interval(void)
{
    static const char *const queries[] = {
        "count_over_time(vector(1)[{{interval}}:1s])",
        "count_over_time(vector(1)[{{ interval }}:1s])",
    };
    for (size_t i = 0; i < 2; i++) {
        canary_spec s = new_spec();
        canary_metric *m = add_metric(&s, "samples", queries[i]);
        snprintf(m->interval_text, sizeof(m->interval_text), "5s");
        m->has_min = m->has_max = true;
        m->min = 5;
        m->max = 6;
        canary_check_results res;
        run(&s, CANARY_CHECKS_ANALYSIS, &res);
        CU_ASSERT_TRUE(res.passed);

        snprintf(m->interval_text, sizeof(m->interval_text), "30s");
        run(&s, CANARY_CHECKS_ANALYSIS, &res);
        CU_ASSERT_FALSE(res.passed);
        CU_ASSERT_TRUE(strstr(res.message, " is 30,") || strstr(res.message, " is 31,"));
    }
}

static void test_metric_address_forms(void)
{
    /* a trailing slash on the base URL is the same Prometheus */
    char with_slash[256];
    snprintf(with_slash, sizeof(with_slash), "%s/", prom_url);
    canary_spec s = new_spec();
    canary_metric *m = add_metric(&s, "answer", "vector(42)");
    m->address = with_slash;
    m->has_min = true;
    m->min = 42;
    canary_check_results res;
    run(&s, CANARY_CHECKS_ANALYSIS, &res);
    CU_ASSERT_TRUE(res.passed);

    /* a server that is not Prometheus: its status is quoted */
    m->address = hook_url[ROUTE_OK];
    run(&s, CANARY_CHECKS_ANALYSIS, &res);
    CU_ASSERT_FALSE(res.passed);
    ASSERT_MSG_HAS(res, "HTTP 404");
}

static void test_metric_prometheus_down(void)
{
    char addr[64];
    snprintf(addr, sizeof(addr), "http://127.0.0.1:%u", dead_port());
    canary_spec s = new_spec();
    canary_metric *m = add_metric(&s, "answer", "vector(42)");
    m->address = addr;
    m->has_min = true;
    canary_check_results res;
    int64_t took = run(&s, CANARY_CHECKS_ANALYSIS, &res);
    CU_ASSERT_FALSE(res.passed);
    ASSERT_MSG_HAS(res, "\"answer\"");
    ASSERT_MSG_HAS(res, addr);
    CU_ASSERT_TRUE(took < 1000);
}

/* Accepts the query and never answers: the 10 s of the contract, not forever. */
static void test_metric_prometheus_hangs(void)
{
    char addr[128];
    snprintf(addr, sizeof(addr), "http://127.0.0.1:%u/hang", rx.port);
    canary_spec s = new_spec();
    canary_metric *m = add_metric(&s, "answer", "vector(42)");
    m->address = addr;
    m->has_min = true;
    int before = calls(ROUTE_HANG);
    canary_check_results res;
    int64_t took = run(&s, CANARY_CHECKS_ANALYSIS, &res);
    CU_ASSERT_FALSE(res.passed);
    NS_ASSERT_INT_EQ(calls(ROUTE_HANG), before + 1);
    ASSERT_MSG_HAS(res, "\"answer\"");
    ASSERT_MSG_HAS(res, "10000 ms");
    CU_ASSERT_TRUE(took >= 9900 && took < 11500);
}

static void test_metrics_stop_at_first_failure(void)
{
    canary_spec s = new_spec();
    canary_metric *m = add_metric(&s, "first", "vector(1)");
    m->has_max = true;
    m->max = 1;
    m = add_metric(&s, "second", "vector(2)");
    m->has_max = true;
    m->max = 1;
    m = add_metric(&s, "third", "vector(3)");
    m->has_max = true;
    m->max = 1;
    add_hook(&s, "load", CANARY_HOOK_ROLLOUT, hook_url[ROUTE_ACCEPTED]);
    int before = calls(ROUTE_ACCEPTED);
    canary_check_results res;
    run(&s, CANARY_CHECKS_ANALYSIS, &res);
    CU_ASSERT_FALSE(res.passed);
    ASSERT_MSG_HAS(res, "\"second\" is 2");
    CU_ASSERT_PTR_NULL(strstr(res.message, "third"));
    NS_ASSERT_INT_EQ(calls(ROUTE_ACCEPTED), before);
}

/* ------------------------------------------------------------------ webhooks */

static void test_webhooks_2xx_pass(void)
{
    canary_spec s = new_spec();
    add_hook(&s, "smoke", CANARY_HOOK_PRE_ROLLOUT, hook_url[ROUTE_OK]);
    add_hook(&s, "queue", CANARY_HOOK_PRE_ROLLOUT, hook_url[ROUTE_ACCEPTED]);
    add_hook(&s, "gate", CANARY_HOOK_CONFIRM_PROMOTION, hook_url[ROUTE_FAIL]);
    int ok = calls(ROUTE_OK), acc = calls(ROUTE_ACCEPTED), fail = calls(ROUTE_FAIL);
    canary_check_results res;
    run(&s, CANARY_CHECKS_PRE_ROLLOUT, &res);
    CU_ASSERT_TRUE(res.passed);
    NS_ASSERT_STR_EQ(res.message, "");
    NS_ASSERT_INT_EQ(calls(ROUTE_OK), ok + 1);
    NS_ASSERT_INT_EQ(calls(ROUTE_ACCEPTED), acc + 1);
    NS_ASSERT_INT_EQ(calls(ROUTE_FAIL), fail); /* not of this kind */
}

static void test_webhook_500_fails(void)
{
    canary_spec s = new_spec();
    add_hook(&s, "db-check", CANARY_HOOK_CONFIRM_PROMOTION, hook_url[ROUTE_FAIL]);
    add_hook(&s, "after", CANARY_HOOK_CONFIRM_PROMOTION, hook_url[ROUTE_ACCEPTED]);
    int acc = calls(ROUTE_ACCEPTED);
    canary_check_results res;
    run(&s, CANARY_CHECKS_CONFIRM_PROMOTION, &res);
    CU_ASSERT_FALSE(res.passed);
    ASSERT_MSG_HAS(res, "\"db-check\"");
    ASSERT_MSG_HAS(res, "500");
    ASSERT_MSG_HAS(res, "database on fire");
    NS_ASSERT_INT_EQ(calls(ROUTE_ACCEPTED), acc); /* stopped at the first failure */

    /* a redirect is not followed: not 2xx */
    s = new_spec();
    add_hook(&s, "moved", CANARY_HOOK_ROLLOUT, hook_url[ROUTE_REDIRECT]);
    int ok = calls(ROUTE_OK);
    run(&s, CANARY_CHECKS_ANALYSIS, &res);
    CU_ASSERT_FALSE(res.passed);
    ASSERT_MSG_HAS(res, "\"moved\"");
    ASSERT_MSG_HAS(res, "302");
    NS_ASSERT_INT_EQ(calls(ROUTE_OK), ok);
}

static void test_webhook_timeout(void)
{
    canary_spec s = new_spec();
    add_hook(&s, "slowpoke", CANARY_HOOK_PRE_ROLLOUT, hook_url[ROUTE_SLOW])->timeout_ms = 500;
    int before = calls(ROUTE_SLOW);
    canary_check_results res;
    int64_t took = run(&s, CANARY_CHECKS_PRE_ROLLOUT, &res);
    CU_ASSERT_FALSE(res.passed);
    NS_ASSERT_INT_EQ(calls(ROUTE_SLOW), before + 1);
    ASSERT_MSG_HAS(res, "\"slowpoke\"");
    ASSERT_MSG_HAS(res, "500 ms");
    CU_ASSERT_TRUE(took >= 480 && took < 1500);

    /* the same receiver within a longer timeout passes */
    s.webhooks[0].timeout_ms = SLOW_MS + 2000;
    took = run(&s, CANARY_CHECKS_PRE_ROLLOUT, &res);
    CU_ASSERT_TRUE(res.passed);
    CU_ASSERT_TRUE(took >= SLOW_MS - 100);
}

static void test_webhook_unreachable(void)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/hook", dead_port());
    canary_spec s = new_spec();
    add_hook(&s, "gone", CANARY_HOOK_ROLLOUT, url);
    canary_check_results res;
    int64_t took = run(&s, CANARY_CHECKS_ANALYSIS, &res);
    CU_ASSERT_FALSE(res.passed);
    ASSERT_MSG_HAS(res, "\"gone\"");
    CU_ASSERT_TRUE(took < 1000);
}

static void test_rollback_webhook(void)
{
    /* 2xx: rollback requested, whatever the metrics say (they are not asked) */
    canary_spec s = new_spec();
    add_hook(&s, "rb-no", CANARY_HOOK_ROLLBACK, hook_url[ROUTE_FAIL]);
    add_hook(&s, "rb-yes", CANARY_HOOK_ROLLBACK, hook_url[ROUTE_OK]);
    canary_metric *m = add_metric(&s, "answer", "vector(42)");
    m->has_max = true;
    m->max = 0;
    canary_check_results res;
    run(&s, CANARY_CHECKS_ANALYSIS, &res);
    CU_ASSERT_TRUE(res.rollback_requested);
    CU_ASSERT_FALSE(res.passed);
    ASSERT_MSG_HAS(res, "\"rb-yes\"");
    ASSERT_MSG_HAS(res, "(rollback) answered HTTP 200");

    /* not 2xx: no request, and no failure either */
    s = new_spec();
    add_hook(&s, "rb-no", CANARY_HOOK_ROLLBACK, hook_url[ROUTE_FAIL]);
    add_hook(&s, "load", CANARY_HOOK_ROLLOUT, hook_url[ROUTE_ACCEPTED]);
    int fail = calls(ROUTE_FAIL), acc = calls(ROUTE_ACCEPTED);
    run(&s, CANARY_CHECKS_ANALYSIS, &res);
    CU_ASSERT_FALSE(res.rollback_requested);
    CU_ASSERT_TRUE(res.passed);
    NS_ASSERT_INT_EQ(calls(ROUTE_FAIL), fail + 1);
    NS_ASSERT_INT_EQ(calls(ROUTE_ACCEPTED), acc + 1);

    /* rollback webhooks belong to the analysis only */
    s = new_spec();
    add_hook(&s, "rb-yes", CANARY_HOOK_ROLLBACK, hook_url[ROUTE_OK]);
    int ok = calls(ROUTE_OK);
    run(&s, CANARY_CHECKS_PRE_ROLLOUT, &res);
    CU_ASSERT_TRUE(res.passed);
    CU_ASSERT_FALSE(res.rollback_requested);
    NS_ASSERT_INT_EQ(calls(ROUTE_OK), ok);
}

static void test_webhook_payload(void)
{
    cJSON *md = cJSON_Parse("{\"cmd\":\"hey -z 1m http://podinfo-canary:9898/\",\"team\":\"web\"}");
    canary_spec s = new_spec();
    add_hook(&s, "load-test", CANARY_HOOK_ROLLOUT, hook_url[ROUTE_RECORD])->metadata = md;
    canary_check_results res;
    run(&s, CANARY_CHECKS_ANALYSIS, &res);
    CU_ASSERT_TRUE(res.passed);

    pthread_mutex_lock(&rx.mu);
    char method[16], ct[128], body[8192];
    snprintf(method, sizeof(method), "%s", rx.last_method);
    snprintf(ct, sizeof(ct), "%s", rx.last_content_type);
    snprintf(body, sizeof(body), "%s", rx.last_body);
    pthread_mutex_unlock(&rx.mu);
    printf("\n    payload: %s", body);
    NS_ASSERT_STR_EQ(method, "POST");
    NS_ASSERT_STR_EQ(ct, "application/json");
    cJSON *doc = cJSON_Parse(body);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "name")), "podinfo");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "namespace")), "canary-it");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "phase")), "Progressing");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "type")), "rollout");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "revision")), "7c5d9f8b6");
    const cJSON *w = cJSON_GetObjectItem(doc, "canaryWeight");
    CU_ASSERT_TRUE(cJSON_IsNumber(w) && w->valueint == 30);
    const cJSON *got = cJSON_GetObjectItem(doc, "metadata");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(got, "cmd")),
                     "hey -z 1m http://podinfo-canary:9898/");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(got, "team")), "web");
    cJSON_Delete(doc);
    cJSON_Delete(md);
}

static void test_notify(void)
{
    char gone[64];
    snprintf(gone, sizeof(gone), "http://127.0.0.1:%u/hook", dead_port());
    canary_spec s = new_spec();
    add_hook(&s, "tell-ok", CANARY_HOOK_POST_ROLLOUT, hook_url[ROUTE_OK]);
    add_hook(&s, "tell-fail", CANARY_HOOK_POST_ROLLOUT, hook_url[ROUTE_FAIL]);
    add_hook(&s, "tell-gone", CANARY_HOOK_POST_ROLLOUT, gone);
    add_hook(&s, "tell-last", CANARY_HOOK_POST_ROLLOUT, hook_url[ROUTE_RECORD]);
    add_hook(&s, "not-now", CANARY_HOOK_ROLLOUT, hook_url[ROUTE_ACCEPTED]);
    canary_status st = progressing();
    st.phase = CANARY_PHASE_SUCCEEDED;
    int ok = calls(ROUTE_OK), fail = calls(ROUTE_FAIL), rec = calls(ROUTE_RECORD),
        acc = calls(ROUTE_ACCEPTED);
    NS_ASSERT_INT_EQ(canary_webhooks_notify(&s, &st, CANARY_HOOK_POST_ROLLOUT), 2);
    /* every one is called: a failure does not stop the others */
    NS_ASSERT_INT_EQ(calls(ROUTE_OK), ok + 1);
    NS_ASSERT_INT_EQ(calls(ROUTE_FAIL), fail + 1);
    NS_ASSERT_INT_EQ(calls(ROUTE_RECORD), rec + 1);
    NS_ASSERT_INT_EQ(calls(ROUTE_ACCEPTED), acc);
    pthread_mutex_lock(&rx.mu);
    bool succeeded = strstr(rx.last_body, "\"phase\":\"Succeeded\"") &&
                     strstr(rx.last_body, "\"type\":\"post-rollout\"");
    pthread_mutex_unlock(&rx.mu);
    CU_ASSERT_TRUE(succeeded);
}

static void test_analysis_all_pass(void)
{
    canary_spec s = new_spec();
    canary_metric *m = add_metric(&s, "prometheus-up", "sum(up{job=\"prometheus\"})");
    m->has_min = true;
    m->min = 1;
    add_hook(&s, "rb", CANARY_HOOK_ROLLBACK, hook_url[ROUTE_FAIL]);
    add_hook(&s, "load", CANARY_HOOK_ROLLOUT, hook_url[ROUTE_OK]);
    add_hook(&s, "queue", CANARY_HOOK_ROLLOUT, hook_url[ROUTE_ACCEPTED]);
    canary_check_results res;
    run(&s, CANARY_CHECKS_ANALYSIS, &res);
    CU_ASSERT_TRUE(res.passed);
    CU_ASSERT_FALSE(res.rollback_requested);
    NS_ASSERT_STR_EQ(res.message, "");
}

static const ns_test metric_tests[] = {
    {"in range", test_metric_in_range},
    {"out of range", test_metric_out_of_range},
    {"empty result", test_metric_empty},
    {"query errors", test_metric_query_errors},
    {"{{interval}} reaches Prometheus", test_metric_interval},
    {"address forms", test_metric_address_forms},
    {"Prometheus down", test_metric_prometheus_down},
    {"Prometheus hangs", test_metric_prometheus_hangs},
    {"stop at the first failure", test_metrics_stop_at_first_failure},
    {NULL, NULL},
};

static const ns_test webhook_tests[] = {
    {"2xx passes", test_webhooks_2xx_pass},
    {"500 and 302 fail", test_webhook_500_fails},
    {"timeout honoured", test_webhook_timeout},
    {"unreachable", test_webhook_unreachable},
    {"rollback", test_rollback_webhook},
    {"payload", test_webhook_payload},
    {"notify", test_notify},
    {"analysis: all pass", test_analysis_all_pass},
    {NULL, NULL},
};

static void watchdog_cb(int sig)
{
    static const char msg[] = "\nFAIL: canary_checks_test still running after 120 s\n";
    (void)sig;
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(1);
}

int main(int argc, char **argv)
{
    signal(SIGALRM, watchdog_cb);
    signal(SIGPIPE, SIG_IGN);
    alarm(120);
    setvbuf(stdout, NULL, _IOLBF, 0); /* in order with stderr when piped to ctest */
    ns_log_setup(getenv("NS_TEST_VERBOSE") ? NS_LOG_DEBUG : NS_LOG_ERROR, NS_LOG_TEXT,
                 "canary-checks-test");
    if (argc < 2 || strncmp(argv[1], "http", 4) != 0) {
        printf("SKIP: no Prometheus URL given; run tests/integration/canary_checks_test.sh\n");
        return 77;
    }
    prom_url = argv[1];
    int rc = receiver_start();
    if (rc != 0) {
        fprintf(stderr, "FAIL: cannot start the webhook receiver: %s\n", strerror(-rc));
        return 1;
    }
    static const ns_suite suites[] = {
        {"canary_metrics", metric_tests},
        {"canary_webhooks", webhook_tests},
        {NULL, NULL},
    };
    rc = ns_test_main(suites);
    receiver_stop();
    return rc;
}

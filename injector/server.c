/* server.c - the webhook process: TLS admission endpoint, health and metrics, config
 * reload, graceful shutdown. */
#include "server.h"

#include "admission.h"
#include "arena.h"
#include "buf.h"
#include "config.h"
#include "https.h"
#include "log.h"
#include "metrics.h"
#include "strconv.h"
#include "files.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct inj_server {
    pthread_rwlock_t cfg_lock; /* guards cfg: reviews read it, the reloader swaps it */
    inj_config cfg;
    const char *cfg_path;
    ns_file_stamp cfg_stamp;
    ns_http_server *webhook;
    ns_http_server *health;
    atomic_bool ready;
};

static ns_metrics metrics = NS_METRICS_INIT;

static ns_metric m_reviews[] = {
    {.name = "nutshell_injector_reviews_total",
     .help = "AdmissionReviews answered, by result.",
     .labels = "result=\"injected\"",
     .type = NS_METRIC_COUNTER},
    {.name = "nutshell_injector_reviews_total",
     .help = "",
     .labels = "result=\"skipped\"",
     .type = NS_METRIC_COUNTER},
    {.name = "nutshell_injector_reviews_total",
     .help = "",
     .labels = "result=\"rejected\"",
     .type = NS_METRIC_COUNTER},
    {.name = "nutshell_injector_reviews_total",
     .help = "",
     .labels = "result=\"invalid\"",
     .type = NS_METRIC_COUNTER},
};
static ns_metric m_duration = {.name = "nutshell_injector_review_duration_seconds",
                               .help = "Time to answer one AdmissionReview, body read to reply.",
                               .type = NS_METRIC_HISTOGRAM};
static ns_metric m_http_errors = {.name = "nutshell_injector_http_errors_total",
                                  .help = "Requests refused before review (wrong path, method, "
                                          "content type or size).",
                                  .type = NS_METRIC_COUNTER};
static ns_metric m_cert_expiry = {.name = "nutshell_injector_certificate_expiry_timestamp_seconds",
                                  .help = "Expiry of the serving certificate (Unix time).",
                                  .type = NS_METRIC_GAUGE};
static ns_metric m_config_errors = {.name = "nutshell_injector_config_reload_errors_total",
                                    .help = "Config file changes refused as invalid.",
                                    .type = NS_METRIC_COUNTER};
static ns_metric m_build = {.name = "nutshell_build_info",
                            .help = "Build information; the value is always 1.",
                            .labels = "component=\"injector\",version=\"" NUTSHELL_VERSION "\"",
                            .type = NS_METRIC_GAUGE,
                            .value = 1};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool is_json(const char *ctype)
{
    return ctype && strncmp(ctype, "application/json", 16) == 0 &&
           (ctype[16] == '\0' || ctype[16] == ';');
}

static void webhook_cb(void *ctx, const ns_http_request *req, ns_http_response *resp)
{
    inj_server *inj = ctx;
    if (strcmp(req->path, "/inject") != 0) {
        ns_counter_add(&m_http_errors, 1);
        ns_http_reply_text(resp, 404, "not found: the webhook path is /inject\n");
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        ns_counter_add(&m_http_errors, 1);
        ns_http_reply_text(resp, 405, "method not allowed: POST an AdmissionReview\n");
        return;
    }
    if (!is_json(req->content_type)) {
        ns_counter_add(&m_http_errors, 1);
        ns_http_reply_text(resp, 415, "unsupported media type: send application/json\n");
        return;
    }

    double t0 = now_s();
    inj_review_reply reply;
    pthread_rwlock_rdlock(&inj->cfg_lock);
    int rc = inj_review(&inj->cfg, req->body, req->body_len, &reply);
    pthread_rwlock_unlock(&inj->cfg_lock);
    if (rc) {
        ns_log(NS_LOG_ERROR, "out of memory answering a review", NULL);
        ns_http_reply_text(resp, 500, "out of memory\n");
        return;
    }
    ns_histogram_observe(&m_duration, now_s() - t0);
    ns_counter_add(&m_reviews[reply.result], 1);

    ns_log_level level = reply.result == INJ_REVIEW_INJECTED || reply.result == INJ_REVIEW_SKIPPED
                             ? NS_LOG_DEBUG
                             : NS_LOG_WARN;
    if (ns_log_enabled(level))
        ns_log(level, "review", "result", inj_review_result_name(reply.result), "pod", reply.pod,
               "uid", reply.uid, "reason", reply.message, NULL);
    resp->status = reply.http_status;
    resp->content_type = "application/json";
    resp->body = reply.body;
    resp->body_len = reply.body_len;
}

static void health_cb(void *ctx, const ns_http_request *req, ns_http_response *resp)
{
    inj_server *inj = ctx;
    if (strcmp(req->path, "/healthz") == 0) {
        ns_http_reply_text(resp, 200, "ok\n");
    } else if (strcmp(req->path, "/readyz") == 0) {
        if (atomic_load(&inj->ready))
            ns_http_reply_text(resp, 200, "ok\n");
        else
            ns_http_reply_text(resp, 503, "not ready\n");
    } else if (strcmp(req->path, "/metrics") == 0) {
        ns_gauge_set(&m_cert_expiry, (int64_t)ns_http_cert_not_after(inj->webhook));
        ns_http_reply_metrics(resp, &metrics);
    } else {
        ns_http_reply_text(resp, 404, "not found: /healthz, /readyz, /metrics\n");
    }
}

/* Reloads the config file if it changed; an invalid new config is refused. */
static void maybe_reload_config(inj_server *inj)
{
    ns_file_stamp st;
    if (!inj->cfg_path || ns_file_stamp_get(inj->cfg_path, &st) != 0 ||
        ns_file_stamp_equal(&st, &inj->cfg_stamp))
        return;
    inj_config next;
    ns_err err = {0};
    inj->cfg_stamp = st;
    if (inj_config_load(&next, inj->cfg_path, &err) != 0) {
        ns_counter_add(&m_config_errors, 1);
        ns_log(NS_LOG_ERROR, "config change refused; keeping the previous config", "reason",
               err.msg, NULL);
        return;
    }
    pthread_rwlock_wrlock(&inj->cfg_lock);
    inj->cfg = next;
    pthread_rwlock_unlock(&inj->cfg_lock);
    ns_log(NS_LOG_INFO, "config reloaded", "file", inj->cfg_path, NULL);
}

/* Process-wide start-up: metrics are statics, and cJSON's allocator hooks are global. */
static void init_once(void)
{
    ns_arena_install();

    for (size_t i = 0; i < sizeof(m_reviews) / sizeof(*m_reviews); i++)
        ns_metrics_register(&metrics, &m_reviews[i]);
    m_duration.bounds = ns_latency_buckets;
    m_duration.nbounds = ns_latency_buckets_len;
    ns_metrics_register(&metrics, &m_duration);
    ns_metrics_register(&metrics, &m_http_errors);
    ns_metrics_register(&metrics, &m_cert_expiry);
    ns_metrics_register(&metrics, &m_config_errors);
    ns_metrics_register(&metrics, &m_build);
}

int inj_server_start(const inj_server_opts *o, inj_server **out, ns_err *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_once);

    inj_server *inj = calloc(1, sizeof(*inj));
    if (!inj)
        return -ENOMEM;
    pthread_rwlock_init(&inj->cfg_lock, NULL);
    inj->cfg_path = o->config_path;
    int rc = inj_config_load(&inj->cfg, o->config_path, err);
    if (rc)
        goto fail;
    if (o->config_path)
        ns_file_stamp_get(o->config_path, &inj->cfg_stamp);

    ns_http_config wcfg = {.host = o->host,
                           .port = o->port,
                           .cert_file = o->cert_file,
                           .key_file = o->key_file,
                           .reload_ms = o->reload_ms,
                           .max_body = INJ_MAX_BODY,
                           .threads = o->threads,
                           .handler = webhook_cb,
                           .ctx = inj};
    rc = ns_http_start(&wcfg, &inj->webhook, err);
    if (rc)
        goto fail;
    ns_http_config hcfg = {.host = o->metrics_host,
                           .port = o->metrics_port,
                           .threads = 1,
                           .max_body = 4096,
                           .handler = health_cb,
                           .ctx = inj};
    rc = ns_http_start(&hcfg, &inj->health, err);
    if (rc) {
        ns_http_stop(inj->webhook);
        goto fail;
    }
    atomic_store(&inj->ready, true);
    *out = inj;
    return 0;
fail:
    pthread_rwlock_destroy(&inj->cfg_lock);
    free(inj);
    return rc;
}

uint16_t inj_server_port(const inj_server *s)
{
    return ns_http_port(s->webhook);
}

uint16_t inj_server_metrics_port(const inj_server *s)
{
    return ns_http_port(s->health);
}

void inj_server_tick(inj_server *s)
{
    maybe_reload_config(s);
}

void inj_server_stop(inj_server *s)
{
    if (!s)
        return;
    atomic_store(&s->ready, false);
    ns_http_stop(s->webhook);
    ns_http_stop(s->health);
    pthread_rwlock_destroy(&s->cfg_lock);
    free(s);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nutshell-injector serve [options]\n"
            "\n"
            "  --listen ADDR:PORT          webhook address (default 0.0.0.0:9443)\n"
            "  --metrics-listen ADDR:PORT  health and metrics, plain HTTP (default "
            "0.0.0.0:9090)\n"
            "  --tls-cert FILE             serving certificate chain, PEM (reloaded on change)\n"
            "  --tls-key FILE              its private key, PEM\n"
            "  --config FILE               sidecar template settings, JSON (default "
            "/etc/nutshell/injector/config.json;\n"
            "                              missing file: built-in defaults; reloaded on change)\n"
            "  --threads N                 worker threads (default 2)\n"
            "  --log-level LEVEL           debug, info, warn, error (default info)\n"
            "  --log-format FORMAT         text or json (default text)\n");
}

int inj_serve_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"metrics-listen", required_argument, NULL, 'm'},
        {"tls-cert", required_argument, NULL, 'c'},
        {"tls-key", required_argument, NULL, 'k'},
        {"config", required_argument, NULL, 'f'},
        {"threads", required_argument, NULL, 't'},
        {"log-level", required_argument, NULL, 'L'},
        {"log-format", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen = "0.0.0.0:9443", *mlisten = "0.0.0.0:9090";
    inj_server_opts o = {.config_path = "/etc/nutshell/injector/config.json", .threads = 2};
    ns_log_level level = NS_LOG_INFO;
    ns_log_format format = NS_LOG_TEXT;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            listen = optarg;
            break;
        case 'm':
            mlisten = optarg;
            break;
        case 'c':
            o.cert_file = optarg;
            break;
        case 'k':
            o.key_file = optarg;
            break;
        case 'f':
            o.config_path = optarg;
            break;
        case 't':
            if (ns_parse_u32(optarg, 64, &o.threads) != 0 || o.threads == 0) {
                fprintf(stderr, "nutshell-injector: --threads wants 1 to 64, got %s\n", optarg);
                return 2;
            }
            break;
        case 'L':
            if (ns_log_level_parse(optarg, &level) != 0) {
                fprintf(stderr, "nutshell-injector: bad --log-level %s\n", optarg);
                return 2;
            }
            break;
        case 'F':
            if (ns_log_format_parse(optarg, &format) != 0) {
                fprintf(stderr, "nutshell-injector: bad --log-format %s\n", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!o.cert_file || !o.key_file || optind != argc) {
        fprintf(stderr, "nutshell-injector: --tls-cert and --tls-key are required\n");
        usage(stderr);
        return 2;
    }
    char host[64], mhost[64];
    if (ns_parse_listen(listen, host, sizeof(host), &o.port) != 0 ||
        ns_parse_listen(mlisten, mhost, sizeof(mhost), &o.metrics_port) != 0) {
        fprintf(stderr, "nutshell-injector: --listen and --metrics-listen want ADDR:PORT\n");
        return 2;
    }
    o.host = host;
    o.metrics_host = mhost;
    ns_log_setup(level, format, "injector");

    /* Signals are taken synchronously by the loop below, not by handlers; block them
     * before any thread starts so that every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    inj_server *srv;
    ns_err err = {0};
    if (inj_server_start(&o, &srv, &err) != 0) {
        ns_log(NS_LOG_ERROR, "cannot start", "reason", err.msg, NULL);
        return 1;
    }
    char ports[16], mports[16];
    snprintf(ports, sizeof(ports), "%u", inj_server_port(srv));
    snprintf(mports, sizeof(mports), "%u", inj_server_metrics_port(srv));
    ns_log(NS_LOG_INFO, "serving", "address", host, "port", ports, "metrics_port", mports,
           "version", NUTSHELL_VERSION, NULL);

    struct timespec tick = {.tv_sec = 2};
    for (;;) {
        int sig = sigtimedwait(&sigs, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        inj_server_tick(srv);
    }
    ns_log(NS_LOG_INFO, "shutting down", NULL);
    inj_server_stop(srv);
    return 0;
}

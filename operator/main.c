/* main.c - nutshell-operator: flags, the API client, the Mesh controller, leader
 * election, health and metrics, and an orderly stop on SIGTERM. */
#include "canary_controller.h"
#include "events.h"
#include "https.h"
#include "kube.h"
#include "kubeconfig.h"
#include "leader.h"
#include "log.h"
#include "mesh_controller.h"
#include "metrics.h"
#include "route_server.h"
#include "strconv.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* Exit codes (also in --help). */
enum {
    EXIT_OK = 0,        /* stopped by SIGTERM or SIGINT */
    EXIT_START = 1,     /* could not start: config, client, port, caches never synced */
    EXIT_USAGE = 2,     /* bad flags */
    EXIT_LOST_LEASE = 3 /* lost leadership: restart as a candidate (controller-runtime does) */
};

#define LEASE_NAME      "nutshell-operator"
#define SYNC_TIMEOUT_MS 120000L

static ns_metrics metrics = NS_METRICS_INIT;
static ns_metric m_writes = {.name = "nutshell_operator_writes_total",
                             .help = "Writes to the Kubernetes API made by a controller "
                                     "(apply, patch, delete, status).",
                             .labels = "controller=\"mesh\"",
                             .type = NS_METRIC_COUNTER};
static ns_metric m_canary_writes = {.name = "nutshell_operator_writes_total",
                                    .help = "Writes to the Kubernetes API made by a controller "
                                            "(apply, patch, delete, status).",
                                    .labels = "controller=\"canary\"",
                                    .type = NS_METRIC_COUNTER};
static ns_metric m_leader = {.name = "nutshell_operator_leader",
                             .help = "1 while this replica holds the leader Lease (or leader "
                                     "election is off).",
                             .type = NS_METRIC_GAUGE};
static ns_metric m_synced = {.name = "nutshell_operator_caches_synced",
                             .help = "1 once every informer has made its first list.",
                             .type = NS_METRIC_GAUGE};
static ns_metric m_build = {.name = "nutshell_operator_build_info",
                            .help = "The operator's version.",
                            .labels = "version=\"" NUTSHELL_VERSION "\"",
                            .type = NS_METRIC_GAUGE};

typedef struct app {
    mesh_controller *mesh;     /* NULL when --controllers leaves it out */
    canary_controller *canary; /* likewise */
    atomic_bool ready;         /* caches synced and workers started (or standing by) */
    atomic_bool stopping;      /* SIGTERM: losing the Lease now is expected */
    atomic_bool lost_leader;   /* leadership lost while running: exit EXIT_LOST_LEASE */
} app;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nutshell-operator [options]\n"
            "\n"
            "Reconciles Mesh resources (nutshell.io/v1alpha1): the sidecar injector, its\n"
            "certificates and its MutatingWebhookConfiguration; and Canary resources:\n"
            "progressive rollouts of Deployments. See docs/operator.md and docs/canary.md.\n"
            "\n"
            "  --kubeconfig FILE          kubeconfig to use (default: $KUBECONFIG, else the pod's\n"
            "                             service account in a cluster, else ~/.kube/config)\n"
            "  --namespace NS             control-plane namespace (default nutshell-system)\n"
            "  --metrics-listen ADDR:PORT /healthz, /readyz, /metrics over plain HTTP\n"
            "                             (default 0.0.0.0:9090)\n"
            "  --leader-elect[=BOOL]      take the Lease " LEASE_NAME " in NS before reconciling\n"
            "                             (default: true in a cluster, false outside)\n"
            "  --workers N                reconcile workers (default 2)\n"
            "  --controllers LIST         controllers to run, comma-separated: mesh, canary\n"
            "                             (default mesh,canary)\n"
            "  --canary-namespace NS      watch Canaries (and their Deployments) in NS only\n"
            "                             (default: every namespace)\n"
            "  --routes-listen ADDR:PORT  serve the proxies' route tables (made from the\n"
            "                             Canaries) on this address; off: do not\n"
            "                             (default 0.0.0.0:15010; needs the canary controller)\n"
            "  --cluster-domain DOMAIN    the cluster's DNS suffix, for the route tables' host\n"
            "                             names (default cluster.local)\n"
            "  --resync-period SECONDS    reconcile every Mesh this often even without changes\n"
            "                             (default 600; 0: never)\n"
            "  --webhook-url URL          local mode: the webhook configuration calls this\n"
            "                             https:// URL (clientConfig.url) instead of the\n"
            "                             injector's Service; the serving certificate also\n"
            "                             names the URL's host\n"
            "                             (e.g. https://127.0.0.1:19443/inject)\n"
            "  --local-injector-dir DIR   local mode: after each reconcile, write the injector's\n"
            "                             tls.crt, tls.key, ca.crt and config.json into DIR when\n"
            "                             they change, as a kubelet mounts its Secret and\n"
            "                             ConfigMap, for `nutshell-injector serve` run by hand\n"
            "                             (for development clusters without a container runtime)\n"
            "  --log-level LEVEL          debug, info, warn, error (default info)\n"
            "  --log-format FORMAT        text or json (default text)\n"
            "  --version                  print the version and exit\n"
            "  --help                     this text\n"
            "\n"
            "Exit status: 0 stopped by SIGTERM/SIGINT; 1 could not start (kubeconfig, API\n"
            "client, metrics port, caches not synced within 120 s: are the CRDs installed?);\n"
            "2 bad flags; 3 lost the leader Lease (restart to stand again).\n");
}

static int parse_bool(const char *s, bool *out)
{
    if (!s || strcmp(s, "true") == 0 || strcmp(s, "1") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0) {
        *out = false;
        return 0;
    }
    return -EINVAL;
}

static void health_cb(void *ctx, const ns_http_request *req, ns_http_response *resp)
{
    app *a = ctx;
    if (strcmp(req->path, "/healthz") == 0) {
        ns_http_reply_text(resp, 200, "ok\n");
    } else if (strcmp(req->path, "/readyz") == 0) {
        if (atomic_load(&a->ready))
            ns_http_reply_text(resp, 200, "ok\n");
        else
            ns_http_reply_text(resp, 503, "not ready: caches not synced\n");
    } else if (strcmp(req->path, "/metrics") == 0) {
        ns_http_reply_metrics(resp, &metrics);
    } else {
        ns_http_reply_text(resp, 404, "not found: /healthz, /readyz, /metrics\n");
    }
}

static void leader_started_cb(void *ud)
{
    app *a = ud;
    ns_log(NS_LOG_INFO, "leading: reconciling", NULL);
    if (a->mesh)
        mesh_controller_resume(a->mesh);
    if (a->canary)
        canary_controller_resume(a->canary);
}

static void leader_stopped_cb(void *ud)
{
    app *a = ud;
    if (a->mesh)
        mesh_controller_pause(a->mesh);
    if (a->canary)
        canary_controller_pause(a->canary);
    if (!atomic_load(&a->stopping)) {
        ns_log(NS_LOG_ERROR, "lost the leader Lease; stopping", NULL);
        atomic_store(&a->lost_leader, true);
    }
}

static void leader_new_cb(void *ud, const char *identity)
{
    ns_log(NS_LOG_INFO, "leader", "identity", identity, NULL);
}

/* "mesh", "canary" or "mesh,canary" (any order, no repeats needed). */
static int parse_controllers(const char *s, bool *mesh, bool *canary)
{
    *mesh = *canary = false;
    const char *p = s;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n == 4 && strncmp(p, "mesh", 4) == 0)
            *mesh = true;
        else if (n == 6 && strncmp(p, "canary", 6) == 0)
            *canary = true;
        else
            return -EINVAL;
        p += n;
        if (*p == ',')
            p++;
    }
    return *mesh || *canary ? 0 : -EINVAL;
}

/* The loop's wait: a signal, or `tick` passing. Returns the signal or 0. */
static int wait_signal(const sigset_t *sigs, long tick_ms)
{
    struct timespec ts = {.tv_sec = tick_ms / 1000, .tv_nsec = (tick_ms % 1000) * 1000000L};
    int sig = sigtimedwait(sigs, NULL, &ts);
    return sig == SIGTERM || sig == SIGINT ? sig : 0;
}

typedef struct routes_source {
    canary_controller *cc;
    const char *domain;
} routes_source;

static int build_routes(void *ud, char **table, uint64_t *version)
{
    routes_source *src = ud;
    return canary_controller_routes(src->cc, src->domain, table, version);
}

static void routes_changed(void *ud)
{
    route_server_invalidate(ud);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"kubeconfig", required_argument, NULL, 'k'},
        {"namespace", required_argument, NULL, 'n'},
        {"metrics-listen", required_argument, NULL, 'm'},
        {"leader-elect", optional_argument, NULL, 'e'},
        {"workers", required_argument, NULL, 'w'},
        {"resync-period", required_argument, NULL, 'r'},
        {"log-level", required_argument, NULL, 'L'},
        {"log-format", required_argument, NULL, 'F'},
        {"webhook-url", required_argument, NULL, 'u'},
        {"local-injector-dir", required_argument, NULL, 'D'},
        {"controllers", required_argument, NULL, 'C'},
        {"canary-namespace", required_argument, NULL, 'N'},
        {"routes-listen", required_argument, NULL, 'R'},
        {"cluster-domain", required_argument, NULL, 'd'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *kubeconfig = NULL, *ns = "nutshell-system", *mlisten = "0.0.0.0:9090";
    const char *webhook_url = NULL, *local_dir = NULL, *canary_ns = NULL;
    const char *rlisten = "0.0.0.0:15010", *domain = "cluster.local";
    bool run_mesh = true, run_canary = true;
    bool leader_elect = false, leader_set = false;
    uint32_t workers = 2, resync_s = 600;
    ns_log_level level = NS_LOG_INFO;
    ns_log_format format = NS_LOG_TEXT;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            kubeconfig = optarg;
            break;
        case 'n':
            ns = optarg;
            break;
        case 'm':
            mlisten = optarg;
            break;
        case 'e':
            if (parse_bool(optarg, &leader_elect) != 0) {
                fprintf(stderr, "nutshell-operator: --leader-elect wants true or false\n");
                return EXIT_USAGE;
            }
            leader_set = true;
            break;
        case 'w':
            if (ns_parse_u32(optarg, 64, &workers) != 0 || workers == 0) {
                fprintf(stderr, "nutshell-operator: --workers wants 1 to 64, got %s\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'r':
            if (ns_parse_u32(optarg, 86400, &resync_s) != 0) {
                fprintf(stderr, "nutshell-operator: --resync-period wants 0 to 86400, got %s\n",
                        optarg);
                return EXIT_USAGE;
            }
            break;
        case 'L':
            if (ns_log_level_parse(optarg, &level) != 0) {
                fprintf(stderr, "nutshell-operator: bad --log-level %s\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'F':
            if (ns_log_format_parse(optarg, &format) != 0) {
                fprintf(stderr, "nutshell-operator: bad --log-format %s\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'u':
            if (strncmp(optarg, "https://", 8) != 0 || !optarg[8]) {
                fprintf(stderr,
                        "nutshell-operator: --webhook-url wants https://HOST[:PORT]/PATH\n");
                return EXIT_USAGE;
            }
            webhook_url = optarg;
            break;
        case 'D':
            if (!*optarg) {
                fprintf(stderr, "nutshell-operator: --local-injector-dir must not be empty\n");
                return EXIT_USAGE;
            }
            local_dir = optarg;
            break;
        case 'C':
            if (parse_controllers(optarg, &run_mesh, &run_canary) != 0) {
                fprintf(stderr,
                        "nutshell-operator: --controllers wants a comma-separated list of "
                        "mesh and canary, got %s\n",
                        optarg);
                return EXIT_USAGE;
            }
            break;
        case 'N':
            if (!*optarg) {
                fprintf(stderr, "nutshell-operator: --canary-namespace must not be empty\n");
                return EXIT_USAGE;
            }
            canary_ns = optarg;
            break;
        case 'R':
            rlisten = optarg;
            break;
        case 'd':
            if (!*optarg || strchr(optarg, '/') || optarg[strlen(optarg) - 1] == '.') {
                fprintf(stderr, "nutshell-operator: --cluster-domain wants a DNS suffix such as "
                                "cluster.local\n");
                return EXIT_USAGE;
            }
            domain = optarg;
            break;
        case 'V':
            printf("nutshell-operator %s\n", NUTSHELL_VERSION);
            return EXIT_OK;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    char mhost[64], rhost[64];
    uint16_t mport, rport = 0;
    bool routes_on = run_canary && strcmp(rlisten, "off") != 0;
    const char *bad = optind != argc ? "unexpected arguments"
                      : !*ns         ? "--namespace must not be empty"
                      : ns_parse_listen(mlisten, mhost, sizeof(mhost), &mport) != 0
                          ? "--metrics-listen wants ADDR:PORT"
                      : routes_on && ns_parse_listen(rlisten, rhost, sizeof(rhost), &rport) != 0
                          ? "--routes-listen wants ADDR:PORT or off"
                          : NULL;
    if (bad) {
        fprintf(stderr, "nutshell-operator: %s\n", bad);
        usage(stderr);
        return EXIT_USAGE;
    }
    /* ns_kube_config_auto's order: it is in-cluster exactly in this case. */
    bool in_cluster = !kubeconfig && !(getenv("KUBECONFIG") && *getenv("KUBECONFIG")) &&
                      getenv("KUBERNETES_SERVICE_HOST");
    if (!leader_set)
        leader_elect = in_cluster;
    ns_log_setup(level, format, "operator");

    /* Signals are taken synchronously by the loop below; block them before any thread
     * starts so that every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Every sidecar of the mesh holds a long-poll open on the discovery port: use every
     * descriptor the container allows, not the default soft limit of 1024. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    int exit_code = EXIT_START;
    ns_err err = {0};
    ns_kube_config cfg = {0};
    ns_kube *k = NULL;
    op_recorder *rec = NULL;
    op_leader *el = NULL;
    ns_http_server *http = NULL;
    route_server *routes = NULL;
    static routes_source routes_ctx;
    app a = {0};
    atomic_init(&a.ready, false);
    atomic_init(&a.stopping, false);
    atomic_init(&a.lost_leader, false);

    if (ns_kube_config_auto(kubeconfig, NULL, &cfg, &err) != 0) {
        ns_log(NS_LOG_ERROR, "no usable Kubernetes config", "reason", err.msg, NULL);
        goto out;
    }
    ns_kube_options ko = {.user_agent = "nutshell-operator/" NUTSHELL_VERSION,
                          .field_manager = MESH_FIELD_MANAGER};
    if (ns_kube_new(&cfg, &ko, &k, &err) != 0) {
        ns_log(NS_LOG_ERROR, "cannot make the API client", "reason", err.msg, NULL);
        goto out;
    }

    ns_metrics_register(&metrics, &m_writes);
    ns_metrics_register(&metrics, &m_canary_writes);
    ns_metrics_register(&metrics, &m_leader);
    ns_metrics_register(&metrics, &m_synced);
    ns_metrics_register(&metrics, &m_build);
    ns_gauge_set(&m_build, 1);

    char identity[OP_LEADER_IDENTITY_MAX];
    if (op_leader_default_identity(identity, sizeof(identity)) != 0)
        snprintf(identity, sizeof(identity), "nutshell-operator");
    op_recorder_opts ro = {.cache = {.host = identity}};
    if (op_recorder_new(k, &ro, &rec, &err) != 0) {
        ns_log(NS_LOG_ERROR, "cannot start the Event recorder", "reason", err.msg, NULL);
        goto out;
    }

    mesh_controller_opts mo = {.kube = k,
                               .namespace = ns,
                               .version = NUTSHELL_VERSION,
                               .recorder = rec,
                               .metrics = &metrics,
                               .writes = &m_writes,
                               .workers = workers,
                               .resync_ms = (long)resync_s * 1000L,
                               .start_paused = leader_elect,
                               .webhook_url = webhook_url,
                               .local_dir = local_dir};
    if (run_mesh && mesh_controller_new(&mo, &a.mesh, &err) != 0) {
        ns_log(NS_LOG_ERROR, "cannot make the Mesh controller", "reason", err.msg, NULL);
        goto out;
    }
    canary_controller_opts co = {.kube = k,
                                 .namespace = canary_ns,
                                 .recorder = rec,
                                 .metrics = &metrics,
                                 .writes = &m_canary_writes,
                                 .workers = workers,
                                 .resync_ms = (long)resync_s * 1000L,
                                 .start_paused = leader_elect};
    if (run_canary && canary_controller_new(&co, &a.canary, &err) != 0) {
        ns_log(NS_LOG_ERROR, "cannot make the Canary controller", "reason", err.msg, NULL);
        goto out;
    }

    if (routes_on) {
        routes_ctx.cc = a.canary;
        routes_ctx.domain = domain;
        route_server_opts rso = {.host = rhost,
                                 .port = rport,
                                 .build = build_routes,
                                 .ud = &routes_ctx,
                                 .metrics = &metrics};
        if (route_server_start(&rso, &routes, &err) != 0 ||
            canary_controller_on_change(a.canary, routes_changed, routes) != 0) {
            ns_log(NS_LOG_ERROR, "cannot serve route tables", "listen", rlisten, "reason", err.msg,
                   NULL);
            goto out;
        }
        char rport_s[16];
        snprintf(rport_s, sizeof(rport_s), "%u", route_server_port(routes));
        ns_log(NS_LOG_INFO, "serving route tables", "address", rhost, "port", rport_s, NULL);
    }

    ns_http_config hc = {.host = mhost, .port = mport, .handler = health_cb, .ctx = &a};
    if (ns_http_start(&hc, &http, &err) != 0) {
        ns_log(NS_LOG_ERROR, "cannot serve health and metrics", "listen", mlisten, "reason",
               err.msg, NULL);
        goto out;
    }
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%u", ns_http_port(http));
    ns_log(NS_LOG_INFO, "starting", "version", NUTSHELL_VERSION, "server", cfg.server, "namespace",
           ns, "metrics_port", portbuf, "leader_elect", leader_elect ? "true" : "false", "identity",
           identity, NULL);
    if (webhook_url || local_dir)
        ns_log(NS_LOG_INFO, "local mode", "webhook_url", webhook_url ? webhook_url : "(service)",
               "local_injector_dir", local_dir ? local_dir : "(none)", NULL);

    if ((a.mesh && mesh_controller_start_informers(a.mesh, &err) != 0) ||
        (a.canary && canary_controller_start_informers(a.canary, &err) != 0)) {
        ns_log(NS_LOG_ERROR, "cannot start", "reason", err.msg, NULL);
        goto out;
    }
    /* Waited for here rather than in op_controller_start so that SIGTERM still works
     * while the caches fill (or never do, when the CRDs are missing). */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while ((a.mesh && !mesh_controller_synced(a.mesh)) ||
           (a.canary && !canary_controller_synced(a.canary))) {
        if (wait_signal(&sigs, 100)) {
            exit_code = EXIT_OK;
            goto stop;
        }
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000L > SYNC_TIMEOUT_MS) {
            ns_log(NS_LOG_ERROR,
                   "caches did not sync in 120 s; are the CRDs installed and the "
                   "RBAC rules granted?",
                   NULL);
            goto stop;
        }
    }
    ns_gauge_set(&m_synced, 1);
    if ((a.mesh && mesh_controller_start(a.mesh, 1000, &err) != 0) ||
        (a.canary && canary_controller_start(a.canary, 1000, &err) != 0)) {
        ns_log(NS_LOG_ERROR, "cannot start the workers", "reason", err.msg, NULL);
        goto stop;
    }

    if (leader_elect) {
        op_leader_opts lo = {.namespace = ns,
                             .name = LEASE_NAME,
                             .identity = identity,
                             .on_started = leader_started_cb,
                             .on_stopped = leader_stopped_cb,
                             .on_new_leader = leader_new_cb,
                             .ud = &a,
                             .is_leader = &m_leader};
        if (op_leader_new(k, &lo, &el, &err) != 0 || op_leader_start(el) != 0) {
            ns_log(NS_LOG_ERROR, "cannot start leader election", "reason", err.msg, NULL);
            goto stop;
        }
    } else {
        ns_gauge_set(&m_leader, 1);
    }
    atomic_store(&a.ready, true);
    ns_log(NS_LOG_INFO, "caches synced; running", NULL);

    exit_code = EXIT_OK;
    while (!wait_signal(&sigs, 200)) {
        if (atomic_load(&a.lost_leader)) {
            exit_code = EXIT_LOST_LEASE;
            break;
        }
    }

stop:
    /* The order of controller.h: no new events, no new reconciles (running ones finish),
     * last Events out, and only then the Lease, so the next leader never overlaps us. */
    ns_log(NS_LOG_INFO, "shutting down", NULL);
    atomic_store(&a.stopping, true);
    atomic_store(&a.ready, false);
    mesh_controller_stop(a.mesh);
    canary_controller_stop(a.canary);
    if (rec)
        op_recorder_flush(rec, 2000);
    if (el)
        op_leader_stop(el);
out:
    route_server_stop(routes);
    ns_http_stop(http);
    op_leader_free(el);
    mesh_controller_free(a.mesh);
    canary_controller_free(a.canary);
    op_recorder_free(rec);
    ns_kube_free(k);
    ns_kube_config_free(&cfg);
    ns_log(NS_LOG_INFO, "stopped", "exit_code",
           exit_code == EXIT_OK      ? "0"
           : exit_code == EXIT_START ? "1"
                                     : "3",
           NULL);
    return exit_code;
}

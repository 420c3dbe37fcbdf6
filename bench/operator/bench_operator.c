/* bench_operator.c - nutshell-bench-operator: measures nutshell-operator against a live API
 * server (see run.sh).
 *
 *   latency     changes a Mesh's spec N times (merge patch: spec.injector.replicas 2 <-> 3)
 *               and, with a watch on the Mesh opened before the first change, measures the
 *               time from sending the patch until an event shows status.observedGeneration
 *               equal to the generation the patch produced. Prints median, p90, p99, max.
 *   configmaps  creates (--create N) or deletes (--delete) ConfigMaps that the operator's
 *               informer caches (label app.kubernetes.io/managed-by=nutshell-operator,
 *               plus nutshell.io/bench=operator to find them again), from a thread pool.
 *   rss         prints VmRSS and VmHWM of --pid.
 *   machine     prints the machine (CPU, cores, memory, kernel).
 *   canaries-wait, canaries-rollout, canaries-unfinalize: see bench_canary.h (canaries.sh).
 *
 * Every run prints the machine first. Every wait is bounded.
 */
#include "bench_canary.h"
#include "bench_util.h"
#include "sysinfo.h"
#include "err.h"
#include "json.h"
#include "kube.h"
#include "kubeconfig.h"
#include "kubewatch.h"
#include "strconv.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BENCH_LABEL     "nutshell.io/bench"
#define BENCH_LABEL_VAL "operator"
#define MANAGED_LABEL   "app.kubernetes.io/managed-by"
#define MANAGED_VAL     "nutshell-operator"

/* ---- options ---- */

struct opts {
    const char *mode;
    const char *kubeconfig;
    const char *mesh;
    const char *namespace;
    long iterations;
    long timeout_ms;
    long gap_ms;
    long create;
    bool delete;
    long size;
    long threads;
    long pid;
    const char *label;
    bench_canary_opts canary; /* the canaries-* modes' own flags */
    bool namespace_set;
};

static int parse_long(const char *flag, const char *s, long min, long max, long *out)
{
    int64_t v;
    if (!s || ns_parse_i64(s, min, max, &v) != 0) {
        fprintf(stderr, "nutshell-bench-operator: %s wants an integer in [%ld, %ld]\n", flag, min,
                max);
        return -1;
    }
    *out = (long)v;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: nutshell-bench-operator latency [--mesh NAME] [--iterations N] "
               "[--timeout-ms MS] [--gap-ms MS] [--pid PID] [--label TEXT]\n"
               "       nutshell-bench-operator configmaps (--create N [--size BYTES] | --delete) "
               "[--threads N]\n"
               "       nutshell-bench-operator rss --pid PID [--label TEXT]\n"
               "       nutshell-bench-operator machine\n"
               "       nutshell-bench-operator canaries-wait --count N --phase PHASE "
               "[--prefix P] [--timeout-ms MS] [--since-ms EPOCH_MS] [--pid PID]\n"
               "       nutshell-bench-operator canaries-rollout --count K --image IMAGE "
               "[--prefix P] [--timeout-ms MS] [--gap-ms MS] [--rollout-timeout-ms MS] "
               "[--pid PID]\n"
               "       nutshell-bench-operator canaries-unfinalize\n"
               "(the canaries-* modes need --namespace)\n"
               "common: [--kubeconfig FILE] [--namespace NS]  (defaults: $KUBECONFIG, "
               "nutshell-system)\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.mesh = "default",
                       .namespace = "nutshell-system",
                       .iterations = 50,
                       .timeout_ms = 10000,
                       .gap_ms = 100,
                       .size = 1024,
                       .threads = 8,
                       .label = ""};
    o->canary = (bench_canary_opts){
        .prefix = "bench-", .count = 1000, .phase = "Initialized", .rollout_timeout_ms = 300000};
    if (argc < 2) {
        usage(stderr);
        return -1;
    }
    o->mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (strcmp(a, "--delete") == 0) {
            o->delete = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "nutshell-bench-operator: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--kubeconfig") == 0)
            o->kubeconfig = v;
        else if (strcmp(a, "--mesh") == 0)
            o->mesh = v;
        else if (strcmp(a, "--namespace") == 0) {
            o->namespace = v;
            o->namespace_set = true;
        } else if (strcmp(a, "--label") == 0)
            o->label = v;
        else if (strcmp(a, "--iterations") == 0)
            rc = parse_long(a, v, 1, 100000, &o->iterations);
        else if (strcmp(a, "--timeout-ms") == 0)
            rc = parse_long(a, v, 1, 3600000, &o->timeout_ms);
        else if (strcmp(a, "--prefix") == 0)
            o->canary.prefix = v;
        else if (strcmp(a, "--phase") == 0)
            o->canary.phase = v;
        else if (strcmp(a, "--image") == 0)
            o->canary.image = v;
        else if (strcmp(a, "--count") == 0)
            rc = parse_long(a, v, 1, 100000, &o->canary.count);
        else if (strcmp(a, "--rollout-timeout-ms") == 0)
            rc = parse_long(a, v, 1, 3600000, &o->canary.rollout_timeout_ms);
        else if (strcmp(a, "--since-ms") == 0) {
            long ms = 0;
            rc = parse_long(a, v, 1, 9000000000000000L, &ms);
            o->canary.since_epoch_ms = (double)ms;
        } else if (strcmp(a, "--gap-ms") == 0)
            rc = parse_long(a, v, 0, 60000, &o->gap_ms);
        else if (strcmp(a, "--create") == 0)
            rc = parse_long(a, v, 1, 100000, &o->create);
        else if (strcmp(a, "--size") == 0)
            rc = parse_long(a, v, 0, 1000000, &o->size);
        else if (strcmp(a, "--threads") == 0)
            rc = parse_long(a, v, 1, 64, &o->threads);
        else if (strcmp(a, "--pid") == 0)
            rc = parse_long(a, v, 1, 4194304, &o->pid);
        else {
            fprintf(stderr, "nutshell-bench-operator: unknown flag %s\n", a);
            usage(stderr);
            return -1;
        }
        if (rc)
            return -1;
    }
    return 0;
}

static int make_client(const struct opts *o, ns_kube **out)
{
    ns_kube_config cfg;
    ns_err err = {0};
    memset(&cfg, 0, sizeof cfg);
    int rc = ns_kube_config_auto(o->kubeconfig, NULL, &cfg, &err);
    if (rc) {
        fprintf(stderr, "nutshell-bench-operator: kubeconfig: %s\n", err.msg);
        return rc;
    }
    ns_kube_options ko = {.user_agent = "nutshell-bench-operator",
                          .field_manager = "nutshell-bench-operator",
                          .pool_size = 16};
    rc = ns_kube_new(&cfg, &ko, out, &err);
    ns_kube_config_free(&cfg);
    if (rc)
        fprintf(stderr, "nutshell-bench-operator: client: %s\n", err.msg);
    return rc;
}

/* ---- latency ---- */

struct watcher {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    long events;
    long observed;      /* highest status.observedGeneration seen */
    double observed_at; /* when `observed` was first seen (ms, monotonic) */
    ns_kube_watch *w;
    int rc;
};

static long json_long(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = ns_json_path(o, a, b, NULL);
    return cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
}

static int on_event(void *ud, ns_kube_event *ev)
{
    struct watcher *wt = ud;
    double t = bench_now_ms();
    if (ev->type != NS_KUBE_EVENT_ADDED && ev->type != NS_KUBE_EVENT_MODIFIED)
        return 0;
    long obs = json_long(ev->object, "status", "observedGeneration");
    pthread_mutex_lock(&wt->mu);
    wt->events++;
    if (obs > wt->observed) {
        wt->observed = obs;
        wt->observed_at = t;
    }
    pthread_cond_broadcast(&wt->cond);
    pthread_mutex_unlock(&wt->mu);
    return 0;
}

static void *watch_thread(void *ud)
{
    struct watcher *wt = ud;
    ns_kube_status st;
    int rc;
    /* Bounded: at most a few relists; each run ends when ns_kube_watch_stop is called. */
    for (int i = 0; i < 5; i++) {
        rc = ns_kube_watch_run(wt->w, on_event, wt, &st);
        if (rc != -ESTALE)
            break;
        ns_kube_watch_set_resource_version(wt->w, NULL);
    }
    pthread_mutex_lock(&wt->mu);
    wt->rc = rc ? rc : 1;
    pthread_cond_broadcast(&wt->cond);
    pthread_mutex_unlock(&wt->mu);
    return NULL;
}

static int run_latency(const struct opts *o, ns_kube *k)
{
    ns_kube_ref ref = {
        .group = "nutshell.io", .version = "v1alpha1", .resource = "meshes", .name = o->mesh};
    ns_kube_status st;
    cJSON *mesh = NULL;
    int rc = ns_kube_get(k, &ref, &mesh, &st);
    if (rc) {
        fprintf(stderr, "nutshell-bench-operator: get mesh %s: %s\n", o->mesh, st.message);
        return 1;
    }
    long replicas = json_long(ns_json_path(mesh, "spec", "injector", NULL), "replicas", NULL);
    long gen0 = json_long(mesh, "metadata", "generation");
    cJSON_Delete(mesh);
    if (replicas < 0)
        replicas = 2;

    struct watcher wt = {.observed = -1, .rc = 0};
    pthread_mutex_init(&wt.mu, NULL);
    pthread_cond_init(&wt.cond, NULL);
    ns_err err = {0};
    ns_kube_watch_opts wo = {.timeout_seconds = 600};
    ns_kube_ref wref = ref; /* narrowed to the Mesh by fieldSelector */
    if (ns_kube_watch_new(k, &wref, &wo, &wt.w, &err) != 0) {
        fprintf(stderr, "nutshell-bench-operator: watch: %s\n", err.msg);
        return 1;
    }
    pthread_t th;
    if (pthread_create(&th, NULL, watch_thread, &wt) != 0) {
        ns_kube_watch_free(wt.w);
        return 1;
    }
    /* The watch starts "now": its synthetic ADDED says it is connected. */
    struct timespec dl;
    bench_deadline_ts(o->timeout_ms, &dl);
    pthread_mutex_lock(&wt.mu);
    while (wt.events == 0 && wt.rc == 0)
        if (pthread_cond_timedwait(&wt.cond, &wt.mu, &dl) == ETIMEDOUT)
            break;
    bool connected = wt.events > 0;
    pthread_mutex_unlock(&wt.mu);
    if (!connected) {
        fprintf(stderr, "nutshell-bench-operator: the watch on mesh %s saw nothing in %ld ms\n",
                o->mesh, o->timeout_ms);
        ns_kube_watch_stop(wt.w);
        pthread_join(th, NULL);
        ns_kube_watch_free(wt.w);
        return 1;
    }

    double *lat = calloc((size_t)o->iterations, sizeof *lat);
    long n = 0, timeouts = 0, errors = 0;
    if (!lat)
        return 1;
    printf("latency%s%s: mesh %s, %ld changes of spec.injector.replicas (2 <-> 3), generation "
           "%ld at start, timeout %ld ms each, %ld ms between\n",
           *o->label ? " " : "", o->label, o->mesh, o->iterations, gen0, o->timeout_ms, o->gap_ms);
    fflush(stdout);
    for (long i = 0; i < o->iterations; i++) {
        long want = replicas == 2 ? 3 : 2;
        cJSON *patch = cJSON_CreateObject();
        cJSON *spec = cJSON_AddObjectToObject(patch, "spec");
        cJSON *inj = cJSON_AddObjectToObject(spec, "injector");
        cJSON_AddNumberToObject(inj, "replicas", (double)want);
        cJSON *out = NULL;
        double t0 = bench_now_ms();
        rc = ns_kube_patch(k, &ref, NS_KUBE_PATCH_MERGE, patch, NULL, &out, &st);
        cJSON_Delete(patch);
        if (rc) {
            fprintf(stderr, "nutshell-bench-operator: patch: %s\n", st.message);
            errors++;
            cJSON_Delete(out);
            if (errors > 5)
                break;
            continue;
        }
        long gen = json_long(out, "metadata", "generation");
        cJSON_Delete(out);
        replicas = want;
        bench_deadline_ts(o->timeout_ms, &dl);
        pthread_mutex_lock(&wt.mu);
        while (wt.observed < gen && wt.rc == 0)
            if (pthread_cond_timedwait(&wt.cond, &wt.mu, &dl) == ETIMEDOUT)
                break;
        bool ok = wt.observed >= gen;
        double t1 = wt.observed_at;
        pthread_mutex_unlock(&wt.mu);
        if (!ok) {
            timeouts++;
            fprintf(stderr,
                    "nutshell-bench-operator: iteration %ld: generation %ld not observed in %ld "
                    "ms\n",
                    i, gen, o->timeout_ms);
            if (timeouts > 3)
                break;
        } else {
            lat[n++] = t1 - t0;
        }
        if (o->gap_ms > 0) {
            struct timespec g = {.tv_sec = o->gap_ms / 1000,
                                 .tv_nsec = (o->gap_ms % 1000) * 1000000L};
            nanosleep(&g, NULL);
        }
    }
    ns_kube_watch_stop(wt.w);
    pthread_join(th, NULL);
    ns_kube_watch_free(wt.w);

    if (n > 0) {
        double sum = 0;
        for (long i = 0; i < n; i++)
            sum += lat[i];
        qsort(lat, (size_t)n, sizeof *lat, bench_cmp_double);
        printf("latency%s%s: spec change -> status.observedGeneration, %ld samples: median %.1f "
               "ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms (min %.1f, mean %.1f); timeouts %ld, "
               "errors %ld\n",
               *o->label ? " " : "", o->label, n, bench_pct(lat, n, 50), bench_pct(lat, n, 90),
               bench_pct(lat, n, 99), lat[n - 1], lat[0], sum / (double)n, timeouts, errors);
        printf(
            "{\"bench\":\"operator-latency\",\"label\":\"%s\",\"samples\":%ld,\"median_ms\":%.2f,"
            "\"p90_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,\"timeouts\":%ld,\"errors\":%ld}\n",
            o->label, n, bench_pct(lat, n, 50), bench_pct(lat, n, 90), bench_pct(lat, n, 99),
            lat[n - 1], timeouts, errors);
    }
    free(lat);
    if (o->pid > 0)
        bench_print_rss(o->pid, *o->label ? o->label : "after latency");
    return (n == o->iterations && timeouts == 0 && errors == 0) ? 0 : 1;
}

/* ---- ConfigMaps ---- */

struct pool {
    ns_kube *k;
    const struct opts *o;
    pthread_mutex_t mu;
    long next;
    long created, exists, failed;
    char *filler;
};

static void *create_worker(void *ud)
{
    struct pool *p = ud;
    ns_kube_ref ref = {.version = "v1", .resource = "configmaps", .namespace = p->o->namespace};
    for (;;) {
        pthread_mutex_lock(&p->mu);
        long i = p->next < p->o->create ? p->next++ : -1;
        pthread_mutex_unlock(&p->mu);
        if (i < 0)
            break;
        char name[64];
        snprintf(name, sizeof name, "nutshell-bench-cm-%05ld", i);
        cJSON *cm = cJSON_CreateObject();
        cJSON_AddStringToObject(cm, "apiVersion", "v1");
        cJSON_AddStringToObject(cm, "kind", "ConfigMap");
        cJSON *md = cJSON_AddObjectToObject(cm, "metadata");
        cJSON_AddStringToObject(md, "name", name);
        cJSON *labels = cJSON_AddObjectToObject(md, "labels");
        cJSON_AddStringToObject(labels, MANAGED_LABEL, MANAGED_VAL);
        cJSON_AddStringToObject(labels, BENCH_LABEL, BENCH_LABEL_VAL);
        cJSON *data = cJSON_AddObjectToObject(cm, "data");
        cJSON_AddStringToObject(data, "payload", p->filler);
        ns_kube_status st;
        int rc = ns_kube_create(p->k, &ref, cm, NULL, NULL, &st);
        cJSON_Delete(cm);
        pthread_mutex_lock(&p->mu);
        if (rc == 0)
            p->created++;
        else if (rc == -EEXIST)
            p->exists++;
        else {
            if (p->failed++ < 3)
                fprintf(stderr, "nutshell-bench-operator: create %s: %s\n", name, st.message);
        }
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

static int run_configmaps(const struct opts *o, ns_kube *k)
{
    if (o->delete) {
        /* One DELETE of the collection, by the bench label. */
        ns_buf path;
        ns_err err = {0};
        ns_kube_ref ref = {.version = "v1", .resource = "configmaps", .namespace = o->namespace};
        ns_buf_init(&path);
        if (ns_kube_path(&ref, &path, &err) != 0) {
            fprintf(stderr, "nutshell-bench-operator: %s\n", err.msg);
            ns_buf_free(&path);
            return 1;
        }
        ns_kube_query_add(&path, "labelSelector", BENCH_LABEL "=" BENCH_LABEL_VAL);
        ns_kube_status st;
        double t0 = bench_now_ms();
        int rc = ns_kube_request(k, "DELETE", path.data, NULL, NULL, 0, true, NULL, &st);
        ns_buf_free(&path);
        if (rc) {
            fprintf(stderr, "nutshell-bench-operator: delete ConfigMaps: %s\n", st.message);
            return 1;
        }
        printf("configmaps: deleted those labelled %s=%s in %s in %.0f ms\n", BENCH_LABEL,
               BENCH_LABEL_VAL, o->namespace, bench_now_ms() - t0);
        return 0;
    }
    if (o->create <= 0) {
        usage(stderr);
        return 2;
    }
    struct pool p = {.k = k, .o = o};
    pthread_mutex_init(&p.mu, NULL);
    p.filler = malloc((size_t)o->size + 1);
    if (!p.filler)
        return 1;
    for (long i = 0; i < o->size; i++)
        p.filler[i] = (char)('a' + i % 26);
    p.filler[o->size] = '\0';
    pthread_t th[64];
    long nt = o->threads;
    double t0 = bench_now_ms();
    long started = 0;
    for (long i = 0; i < nt; i++)
        if (pthread_create(&th[started], NULL, create_worker, &p) == 0)
            started++;
    if (started == 0)
        create_worker(&p);
    for (long i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double dt = bench_now_ms() - t0;
    free(p.filler);
    printf("configmaps: %ld created, %ld already there, %ld failed (%ld-byte payload each, "
           "labels %s=%s) in %s with %ld threads in %.0f ms\n",
           p.created, p.exists, p.failed, o->size, MANAGED_LABEL, MANAGED_VAL, o->namespace,
           started, dt);
    return p.failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (parse_opts(argc, argv, &o) != 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(o.mode, "rss") == 0) {
        if (o.pid <= 0) {
            usage(stderr);
            return 2;
        }
        bench_print_rss(o.pid, *o.label ? o.label : "now");
        return nbi_proc_status_kb(o.pid, "VmRSS") < 0;
    }
    if (strcmp(o.mode, "machine") == 0) {
        bench_print_machine();
        return 0;
    }
    bool canary_mode = strncmp(o.mode, "canaries-", 9) == 0;
    if (strcmp(o.mode, "latency") != 0 && strcmp(o.mode, "configmaps") != 0 &&
        strcmp(o.mode, "canaries-wait") != 0 && strcmp(o.mode, "canaries-rollout") != 0 &&
        strcmp(o.mode, "canaries-unfinalize") != 0) {
        usage(stderr);
        return 2;
    }
    if (strcmp(o.mode, "canaries-rollout") == 0 && !o.canary.image) {
        fprintf(stderr, "nutshell-bench-operator: canaries-rollout needs --image\n");
        return 2;
    }
    if (canary_mode && !o.namespace_set) {
        /* They write to every Canary of the namespace: never by default. */
        fprintf(stderr, "nutshell-bench-operator: %s needs --namespace\n", o.mode);
        return 2;
    }
    if (canary_mode) {
        o.canary.namespace = o.namespace;
        o.canary.timeout_ms = o.timeout_ms;
        o.canary.gap_ms = o.gap_ms;
        o.canary.pid = o.pid;
        o.canary.label = o.label;
    }
    ns_kube *k = NULL;
    if (make_client(&o, &k) != 0)
        return 1;
    int rc;
    if (strcmp(o.mode, "latency") == 0) {
        bench_print_machine();
        rc = run_latency(&o, k);
    } else if (strcmp(o.mode, "configmaps") == 0) {
        rc = run_configmaps(&o, k);
    } else if (strcmp(o.mode, "canaries-wait") == 0) {
        rc = bench_canary_wait(k, &o.canary);
    } else if (strcmp(o.mode, "canaries-rollout") == 0) {
        rc = bench_canary_rollout(k, &o.canary);
    } else {
        rc = bench_canary_unfinalize(k, &o.canary);
    }
    ns_kube_free(k);
    return rc;
}

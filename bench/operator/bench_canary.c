/* bench_canary.c - Canary modes of nutshell-bench-operator: wait for a phase across many
 * Canaries, time target changes to Progressing and rollouts to their end, drop
 * finalizers. One collection watch per run; every wait is bounded. */
#include "bench_canary.h"

#include "bench_util.h"
#include "err.h"
#include "json.h"
#include "kubewatch.h"
#include "strconv.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ns_kube_ref canary_ref = {
    .group = "nutshell.io", .version = "v1alpha1", .resource = "canaries"};
static const ns_kube_ref deploy_ref = {.group = "apps", .version = "v1", .resource = "deployments"};

enum phase {
    PH_NONE, /* no status yet, or deleted */
    PH_INITIALIZING,
    PH_INITIALIZED,
    PH_PROGRESSING,
    PH_PROMOTING,
    PH_FINALISING,
    PH_SUCCEEDED,
    PH_FAILED,
    PH_OTHER,
    PH_COUNT
};

static const char *const phase_names[PH_COUNT] = {"none",        "Initializing", "Initialized",
                                                  "Progressing", "Promoting",    "Finalising",
                                                  "Succeeded",   "Failed",       "other"};

static enum phase phase_of(const char *s)
{
    if (!s || !*s)
        return PH_NONE;
    for (int p = PH_INITIALIZING; p < PH_OTHER; p++)
        if (strcmp(s, phase_names[p]) == 0)
            return (enum phase)p;
    return PH_OTHER;
}

/* What the watch has seen of the Canaries PREFIX00000 .. PREFIX(count-1). */
typedef struct canary_watch {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    const char *prefix;
    size_t prefix_len;
    long count;
    unsigned char *phase; /* enum phase, per index */
    double *patched;      /* when the target was patched (monotonic ms), 0: not yet */
    double *progressing;  /* first Progressing seen after the patch, 0: not yet */
    double *finished;     /* first Succeeded or Failed after that, 0: not yet */
    unsigned char *outcome;
    long counts[PH_COUNT];
    long events;
    int rc; /* the watch thread's end: 0 running, else its return value (1 for 0) */
    ns_kube_watch *w;
    pthread_t th;
} canary_watch;

/* The index of a Canary named PREFIX%05ld, or -1. */
static long index_of(const canary_watch *cw, const char *name)
{
    int64_t i;
    if (!name || strncmp(name, cw->prefix, cw->prefix_len) != 0 ||
        ns_parse_i64(name + cw->prefix_len, 0, cw->count - 1, &i) != 0)
        return -1;
    return (long)i;
}

/* Records one Canary's phase; the caller holds the lock. */
static void note_phase(canary_watch *cw, long i, enum phase p, double t)
{
    cw->counts[cw->phase[i]]--;
    cw->phase[i] = (unsigned char)p;
    cw->counts[p]++;
    if (cw->patched[i] > 0 && cw->progressing[i] == 0 && p == PH_PROGRESSING)
        cw->progressing[i] = t;
    if (cw->progressing[i] > 0 && cw->finished[i] == 0 && (p == PH_SUCCEEDED || p == PH_FAILED)) {
        cw->finished[i] = t;
        cw->outcome[i] = (unsigned char)p;
    }
}

static int on_event(void *ud, ns_kube_event *ev)
{
    canary_watch *cw = ud;
    double t = bench_now_ms();
    if (ev->type != NS_KUBE_EVENT_ADDED && ev->type != NS_KUBE_EVENT_MODIFIED &&
        ev->type != NS_KUBE_EVENT_DELETED)
        return 0;
    long i = index_of(cw, ns_json_path_str(ev->object, "metadata", "name", NULL));
    if (i < 0)
        return 0;
    enum phase p = ev->type == NS_KUBE_EVENT_DELETED
                       ? PH_NONE
                       : phase_of(ns_json_path_str(ev->object, "status", "phase", NULL));
    pthread_mutex_lock(&cw->mu);
    cw->events++;
    note_phase(cw, i, p, t);
    pthread_cond_broadcast(&cw->cond);
    pthread_mutex_unlock(&cw->mu);
    return 0;
}

static void *watch_thread(void *ud)
{
    canary_watch *cw = ud;
    ns_kube_status st;
    int rc;
    /* A 410 restarts the watch from "now" (a synthetic ADDED per Canary); bounded. */
    for (int i = 0; i < 5; i++) {
        rc = ns_kube_watch_run(cw->w, on_event, cw, &st);
        if (rc != -ESTALE)
            break;
        ns_kube_watch_set_resource_version(cw->w, NULL);
    }
    if (rc && rc != -ESTALE)
        fprintf(stderr, "nutshell-bench-operator: canary watch ended: %s\n",
                st.message[0] ? st.message : strerror(-rc));
    pthread_mutex_lock(&cw->mu);
    cw->rc = rc ? rc : 1;
    pthread_cond_broadcast(&cw->cond);
    pthread_mutex_unlock(&cw->mu);
    return NULL;
}

static void watch_free(canary_watch *cw)
{
    free(cw->phase);
    free(cw->patched);
    free(cw->progressing);
    free(cw->finished);
    free(cw->outcome);
    ns_kube_watch_free(cw->w);
}

/* Starts a watch of the namespace's Canaries after `rv` (NULL: from now, with a synthetic
 * ADDED for every Canary). Returns 0 or -1 (message printed). */
static int watch_start(ns_kube *k, const bench_canary_opts *o, const char *rv, canary_watch *cw)
{
    memset(cw, 0, sizeof *cw);
    pthread_mutex_init(&cw->mu, NULL);
    pthread_cond_init(&cw->cond, NULL);
    cw->prefix = o->prefix;
    cw->prefix_len = strlen(o->prefix);
    cw->count = o->count;
    size_t n = (size_t)o->count;
    cw->phase = calloc(n, 1);
    cw->outcome = calloc(n, 1);
    cw->patched = calloc(n, sizeof(double));
    cw->progressing = calloc(n, sizeof(double));
    cw->finished = calloc(n, sizeof(double));
    if (!cw->phase || !cw->outcome || !cw->patched || !cw->progressing || !cw->finished) {
        watch_free(cw);
        fprintf(stderr, "nutshell-bench-operator: out of memory\n");
        return -1;
    }
    cw->counts[PH_NONE] = o->count;
    ns_kube_ref ref = canary_ref;
    ref.namespace = o->namespace;
    ns_kube_watch_opts wo = {.timeout_seconds = 600, .resource_version = rv};
    ns_err err = {0};
    if (ns_kube_watch_new(k, &ref, &wo, &cw->w, &err) != 0) {
        fprintf(stderr, "nutshell-bench-operator: watch: %s\n", err.msg);
        watch_free(cw);
        return -1;
    }
    if (pthread_create(&cw->th, NULL, watch_thread, cw) != 0) {
        fprintf(stderr, "nutshell-bench-operator: cannot start the watch thread\n");
        watch_free(cw);
        return -1;
    }
    return 0;
}

static void watch_end(canary_watch *cw)
{
    ns_kube_watch_stop(cw->w);
    pthread_join(cw->th, NULL);
    watch_free(cw);
}

static void print_counts(const canary_watch *cw, double elapsed_s)
{
    printf("  %6.1f s:", elapsed_s);
    for (int p = 0; p < PH_COUNT; p++)
        if (cw->counts[p])
            printf(" %s %ld", phase_names[p], cw->counts[p]);
    printf(" (%ld events)\n", cw->events);
}

/* ---- canaries-wait ---- */

int bench_canary_wait(ns_kube *k, const bench_canary_opts *o)
{
    enum phase want = phase_of(o->phase);
    if (want == PH_NONE || want == PH_OTHER) {
        fprintf(stderr, "nutshell-bench-operator: unknown phase %s\n", o->phase);
        return 1;
    }
    double t0 = o->since_epoch_ms > 0 ? o->since_epoch_ms : bench_epoch_ms();
    canary_watch cw;
    if (watch_start(k, o, NULL, &cw) != 0)
        return 1;
    printf("canaries-wait%s%s: %ld Canaries %s* in %s to be %s, timeout %ld ms\n",
           *o->label ? " " : "", o->label, o->count, o->prefix, o->namespace, o->phase,
           o->timeout_ms);
    double next_report = 10000;
    bool done = false;
    pthread_mutex_lock(&cw.mu);
    for (;;) {
        double elapsed = bench_epoch_ms() - t0;
        done = cw.counts[want] >= o->count;
        if (done || cw.rc != 0 || elapsed >= (double)o->timeout_ms)
            break;
        if (elapsed >= next_report) {
            print_counts(&cw, elapsed / 1000.0);
            next_report += 10000;
        }
        struct timespec dl;
        bench_deadline_ts(200, &dl);
        pthread_cond_timedwait(&cw.cond, &cw.mu, &dl);
    }
    double elapsed = bench_epoch_ms() - t0;
    print_counts(&cw, elapsed / 1000.0);
    pthread_mutex_unlock(&cw.mu);
    watch_end(&cw);
    if (done)
        printf("canaries-wait%s%s: all %ld %s after %.1f s\n", *o->label ? " " : "", o->label,
               o->count, o->phase, elapsed / 1000.0);
    else
        printf("canaries-wait%s%s: NOT all %s after %.1f s\n", *o->label ? " " : "", o->label,
               o->phase, elapsed / 1000.0);
    printf("{\"bench\":\"canaries-wait\",\"label\":\"%s\",\"count\":%ld,\"phase\":\"%s\","
           "\"done\":%s,\"seconds\":%.2f}\n",
           o->label, o->count, o->phase, done ? "true" : "false", elapsed / 1000.0);
    if (o->pid > 0)
        bench_print_rss(o->pid, *o->label ? o->label : "after canaries-wait");
    return done ? 0 : 1;
}

/* ---- canaries-rollout ---- */

static void canary_name(const bench_canary_opts *o, long i, char *out, size_t len)
{
    snprintf(out, len, "%s%05ld", o->prefix, i);
}

static int patch_image(ns_kube *k, const bench_canary_opts *o, const char *name)
{
    cJSON *patch = cJSON_CreateArray();
    cJSON *op = cJSON_CreateObject();
    cJSON_AddItemToArray(patch, op);
    cJSON_AddStringToObject(op, "op", "replace");
    cJSON_AddStringToObject(op, "path", "/spec/template/spec/containers/0/image");
    cJSON_AddStringToObject(op, "value", o->image);
    ns_kube_ref ref = deploy_ref;
    ref.namespace = o->namespace;
    ref.name = name;
    ns_kube_status st;
    int rc = ns_kube_patch(k, &ref, NS_KUBE_PATCH_JSON, patch, NULL, NULL, &st);
    cJSON_Delete(patch);
    if (rc)
        fprintf(stderr, "nutshell-bench-operator: patch deployment %s: %s\n", name,
                st.message[0] ? st.message : strerror(-rc));
    return rc;
}

/* Sorts `v` (n values) and prints its median, p90, p99, max; returns nothing. */
static void print_stats(const char *what, double *v, long n)
{
    if (n <= 0) {
        printf("%s: no samples\n", what);
        return;
    }
    double sum = 0;
    for (long i = 0; i < n; i++)
        sum += v[i];
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    printf("%s, %ld samples: median %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms (min %.1f, "
           "mean %.1f)\n",
           what, n, bench_pct(v, n, 50), bench_pct(v, n, 90), bench_pct(v, n, 99), v[n - 1], v[0],
           sum / (double)n);
}

int bench_canary_rollout(ns_kube *k, const bench_canary_opts *o)
{
    /* The watch starts at the version of a LIST: only what happens after it is seen,
     * and nothing between the LIST and the first patch is missed. */
    ns_kube_ref ref = canary_ref;
    ref.namespace = o->namespace;
    ns_kube_list_opts lo = {.limit = 500};
    ns_kube_status st;
    cJSON *list = NULL;
    if (ns_kube_list(k, &ref, &lo, &list, &st) != 0) {
        fprintf(stderr, "nutshell-bench-operator: list canaries: %s\n", st.message);
        return 1;
    }
    canary_watch cw;
    int rc = watch_start(k, o, ns_json_path_str(list, "metadata", "resourceVersion", NULL), &cw);
    long idle = 0, listed = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, ns_json_get(list, "items"))
    {
        long i = index_of(&cw, ns_json_path_str(item, "metadata", "name", NULL));
        if (rc == 0 && i >= 0) {
            enum phase p = phase_of(ns_json_path_str(item, "status", "phase", NULL));
            listed++;
            idle += p == PH_INITIALIZED || p == PH_SUCCEEDED || p == PH_FAILED;
            pthread_mutex_lock(&cw.mu);
            note_phase(&cw, i, p, 0);
            pthread_mutex_unlock(&cw.mu);
        }
    }
    cJSON_Delete(list);
    if (rc)
        return 1;
    if (listed < o->count || idle < o->count)
        fprintf(stderr,
                "nutshell-bench-operator: of the first %ld Canaries, %ld exist and %ld are idle "
                "(Initialized, Succeeded or Failed)\n",
                o->count, listed, idle);
    /* Let the watch connect before the first patch, so that its latency is not the
     * connection's (events after the LIST's version would arrive anyway). */
    for (int i = 0; i < 50 && ns_kube_watch_connects(cw.w) == 0; i++) {
        struct timespec d = {.tv_nsec = 20 * 1000000L};
        nanosleep(&d, NULL);
    }
    struct timespec settle = {.tv_nsec = 300 * 1000000L};
    nanosleep(&settle, NULL);

    printf("canaries-rollout%s%s: %ld targets %s* in %s set to image %s one at a time, %ld ms "
           "apart; Progressing timeout %ld ms each\n",
           *o->label ? " " : "", o->label, o->count, o->prefix, o->namespace, o->image, o->gap_ms,
           o->timeout_ms);
    double *lat = calloc((size_t)o->count, sizeof *lat);
    double *dur = calloc((size_t)o->count, sizeof *dur);
    if (!lat || !dur) {
        free(lat);
        free(dur);
        watch_end(&cw);
        return 1;
    }
    long n = 0, timeouts = 0, errors = 0;
    double first_patch = 0;
    for (long i = 0; i < o->count; i++) {
        char name[256];
        canary_name(o, i, name, sizeof name);
        double t0 = bench_now_ms();
        pthread_mutex_lock(&cw.mu);
        cw.patched[i] = t0;
        pthread_mutex_unlock(&cw.mu);
        if (first_patch == 0)
            first_patch = t0;
        if (patch_image(k, o, name) != 0) {
            pthread_mutex_lock(&cw.mu);
            cw.patched[i] = 0;
            pthread_mutex_unlock(&cw.mu);
            if (++errors > 5)
                break;
            continue;
        }
        struct timespec dl;
        bench_deadline_ts(o->timeout_ms, &dl);
        pthread_mutex_lock(&cw.mu);
        while (cw.progressing[i] == 0 && cw.rc == 0)
            if (pthread_cond_timedwait(&cw.cond, &cw.mu, &dl) == ETIMEDOUT)
                break;
        double t1 = cw.progressing[i];
        pthread_mutex_unlock(&cw.mu);
        if (t1 > 0) {
            lat[n++] = t1 - t0;
        } else {
            fprintf(stderr, "nutshell-bench-operator: %s not Progressing within %ld ms\n", name,
                    o->timeout_ms);
            if (++timeouts > 3)
                break;
        }
        if (o->gap_ms > 0) {
            struct timespec g = {.tv_sec = o->gap_ms / 1000,
                                 .tv_nsec = (o->gap_ms % 1000) * 1000000L};
            nanosleep(&g, NULL);
        }
    }
    double last_patch = bench_now_ms();
    /* In order, so that a latency growing with the rollouts already running shows. */
    printf("canaries-rollout: Progressing latencies in the order of the changes (ms):");
    for (long i = 0; i < n; i++)
        printf(" %.0f", lat[i]);
    printf("\n");
    print_stats("canaries-rollout: target change -> status.phase Progressing (watch)", lat, n);

    /* The rollouts end by themselves: wait for every started one, bounded. */
    long started = 0, ok = 0, failed = 0, nd = 0;
    double last_end = 0;
    double deadline = last_patch + (double)o->rollout_timeout_ms;
    pthread_mutex_lock(&cw.mu);
    for (;;) {
        started = ok = failed = 0;
        for (long i = 0; i < o->count; i++) {
            if (cw.progressing[i] == 0)
                continue;
            started++;
            ok += cw.finished[i] > 0 && cw.outcome[i] == PH_SUCCEEDED;
            failed += cw.finished[i] > 0 && cw.outcome[i] == PH_FAILED;
        }
        if (ok + failed == started || cw.rc != 0 || bench_now_ms() >= deadline)
            break;
        struct timespec dl;
        bench_deadline_ts(200, &dl);
        pthread_cond_timedwait(&cw.cond, &cw.mu, &dl);
    }
    for (long i = 0; i < o->count; i++) {
        if (cw.finished[i] > 0 && cw.outcome[i] == PH_SUCCEEDED)
            dur[nd++] = cw.finished[i] - cw.patched[i];
        if (cw.finished[i] > last_end)
            last_end = cw.finished[i];
    }
    pthread_mutex_unlock(&cw.mu);
    watch_end(&cw);
    printf("canaries-rollout: %ld rollouts started, %ld Succeeded, %ld Failed, %ld unfinished "
           "after %.1f s; first change -> last end %.1f s\n",
           started, ok, failed, started - ok - failed, (bench_now_ms() - last_patch) / 1000.0,
           last_end > 0 ? (last_end - first_patch) / 1000.0 : 0.0);
    print_stats("canaries-rollout: target change -> Succeeded", dur, nd);
    if (n > 0)
        printf("{\"bench\":\"canary-progressing-latency\",\"label\":\"%s\",\"samples\":%ld,"
               "\"median_ms\":%.2f,\"p90_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,"
               "\"timeouts\":%ld,\"errors\":%ld,\"succeeded\":%ld,\"failed\":%ld,"
               "\"rollouts_s\":%.2f}\n",
               o->label, n, bench_pct(lat, n, 50), bench_pct(lat, n, 90), bench_pct(lat, n, 99),
               lat[n - 1], timeouts, errors, ok, failed,
               last_end > 0 ? (last_end - first_patch) / 1000.0 : 0.0);
    free(lat);
    free(dur);
    if (o->pid > 0)
        bench_print_rss(o->pid, *o->label ? o->label : "after the rollouts");
    return (n == o->count && timeouts == 0 && errors == 0 && ok == started) ? 0 : 1;
}

/* ---- canaries-unfinalize ---- */

int bench_canary_unfinalize(ns_kube *k, const bench_canary_opts *o)
{
    ns_kube_ref ref = canary_ref;
    ref.namespace = o->namespace;
    ns_kube_list_opts lo = {.limit = 500};
    ns_kube_status st;
    cJSON *list = NULL;
    if (ns_kube_list(k, &ref, &lo, &list, &st) != 0) {
        fprintf(stderr, "nutshell-bench-operator: list canaries: %s\n", st.message);
        return 1;
    }
    long patched = 0, failed = 0;
    double t0 = bench_now_ms();
    const cJSON *item;
    cJSON_ArrayForEach(item, ns_json_get(list, "items"))
    {
        if (cJSON_GetArraySize(ns_json_path(item, "metadata", "finalizers", NULL)) == 0)
            continue;
        ns_kube_ref one = ref;
        one.name = ns_json_path_str(item, "metadata", "name", NULL);
        cJSON *patch = cJSON_CreateObject();
        cJSON_AddNullToObject(cJSON_AddObjectToObject(patch, "metadata"), "finalizers");
        int rc = ns_kube_patch(k, &one, NS_KUBE_PATCH_MERGE, patch, NULL, NULL, &st);
        cJSON_Delete(patch);
        if (rc == 0 || rc == -ENOENT)
            patched++;
        else if (failed++ < 3)
            fprintf(stderr, "nutshell-bench-operator: patch canary %s: %s\n", one.name, st.message);
        if (failed > 20) /* the API server is gone: stop here */
            break;
    }
    cJSON_Delete(list);
    printf("canaries-unfinalize: finalizers dropped from %ld Canaries in %s (%ld failed) in %.0f "
           "ms\n",
           patched, o->namespace, failed, bench_now_ms() - t0);
    return failed ? 1 : 0;
}

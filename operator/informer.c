/* informer.c - the LIST+WATCH loop that keeps a cache current and tells handlers. */
#include "informer.h"

#include "json.h"
#include "log.h"
#include "strconv.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* client-go's reflector asks for pages of 500 so that a large first list does not make
 * the API server build one huge response. */
#define LIST_PAGE_SIZE  500
#define BACKOFF_BASE_MS 200
#define BACKOFF_MAX_MS  30000
/* A watch that lived this long was healthy: the next failure starts the backoff over. */
#define HEALTHY_WATCH_MS 30000

/* ------------------------------------------------------------------ the Kubernetes source */

typedef struct kube_source {
    ns_kube *k;
    char *group, *version, *resource, *namespace;
    char *label_selector, *field_selector;
    ns_kube_watch *w;
} kube_source;

static int kube_list(void *ud, cJSON **out, ns_kube_status *st)
{
    kube_source *s = ud;
    ns_kube_ref ref = {.group = s->group,
                       .version = s->version,
                       .resource = s->resource,
                       .namespace = s->namespace};
    ns_kube_list_opts lo = {.label_selector = s->label_selector,
                            .field_selector = s->field_selector,
                            .limit = LIST_PAGE_SIZE};
    return ns_kube_list(s->k, &ref, &lo, out, st);
}

static int kube_watch(void *ud, const char *rv, ns_kube_watch_cb cb, void *cb_ud,
                      ns_kube_status *st)
{
    kube_source *s = ud;
    int rc = ns_kube_watch_set_resource_version(s->w, rv);
    return rc ? rc : ns_kube_watch_run(s->w, cb, cb_ud, st);
}

static void kube_stop(void *ud)
{
    kube_source *s = ud;
    ns_kube_watch_stop(s->w);
}

static void kube_free(void *ud)
{
    kube_source *s = ud;
    if (!s)
        return;
    ns_kube_watch_free(s->w);
    free(s->group);
    free(s->version);
    free(s->resource);
    free(s->namespace);
    free(s->label_selector);
    free(s->field_selector);
    free(s);
}

static bool dup_or_null(char **dst, const char *src)
{
    *dst = src ? strdup(src) : NULL;
    return !src || *dst;
}

/* ------------------------------------------------------------------ the informer */

typedef struct handler {
    op_informer_handler_fn fn;
    void *ud;
} handler;

struct op_informer {
    char *name;
    op_informer_source src;
    long resync_ms;
    bool strip_managed;
    void (*transform)(cJSON *obj);
    ns_kube_backoff backoff;

    /* Readers take `lock` shared. The one writer (the informer thread) takes `write_mu`,
     * then `lock` exclusively only while it changes the cache, and keeps `write_mu` while
     * it calls handlers. So handlers are serialised, and a handler (or the resync thread,
     * which also holds write_mu) can use cached pointers without the rwlock: nobody else
     * can change the cache meanwhile. */
    pthread_rwlock_t lock;
    pthread_mutex_t write_mu;
    op_cache *cache;

    handler *handlers;
    size_t nhandlers;

    pthread_mutex_t state_mu;
    pthread_cond_t state_cv; /* synced, stopping */
    bool started, stopping, synced, joined;
    pthread_t thread, resync_thread;
    bool have_resync_thread;

    atomic_ulong lists, events;
};

int op_informer_new_source(const op_informer_source *src, const op_informer_opts *opts,
                           op_informer **out, ns_err *err)
{
    *out = NULL;
    op_informer_opts none = {0};
    if (!opts)
        opts = &none;
    op_informer *inf = calloc(1, sizeof(*inf));
    if (!inf || !(inf->name = strdup(opts->name ? opts->name : "informer")) ||
        op_cache_new(&inf->cache) != 0) {
        if (inf) {
            free(inf->name);
            free(inf);
        }
        if (src->free)
            src->free(src->ud);
        return ns_errorf(err, -ENOMEM, "out of memory creating an informer");
    }
    inf->src = *src;
    inf->resync_ms = opts->resync_ms > 0 ? opts->resync_ms : 0;
    inf->strip_managed = !opts->keep_managed_fields;
    inf->transform = opts->transform;
    inf->backoff = opts->backoff;
    if (inf->backoff.base_ms <= 0)
        inf->backoff.base_ms = BACKOFF_BASE_MS;
    if (inf->backoff.max_ms <= 0)
        inf->backoff.max_ms = BACKOFF_MAX_MS;
    pthread_rwlock_init(&inf->lock, NULL);
    pthread_mutex_init(&inf->write_mu, NULL);
    pthread_mutex_init(&inf->state_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&inf->state_cv, &ca);
    pthread_condattr_destroy(&ca);
    *out = inf;
    return 0;
}

int op_informer_new(ns_kube *k, const ns_kube_ref *ref, const op_informer_opts *opts,
                    op_informer **out, ns_err *err)
{
    *out = NULL;
    if (ref->name || ref->subresource)
        return ns_errorf(err, -EINVAL, "an informer watches a collection: no name or subresource");
    ns_buf probe;
    ns_buf_init(&probe);
    int rc = ns_kube_path(ref, &probe, err);
    ns_buf_free(&probe);
    if (rc)
        return rc;
    kube_source *s = calloc(1, sizeof(*s));
    if (!s)
        return ns_errorf(err, -ENOMEM, "out of memory creating an informer");
    s->k = k;
    bool ok = dup_or_null(&s->group, ref->group) && dup_or_null(&s->version, ref->version) &&
              dup_or_null(&s->resource, ref->resource) &&
              dup_or_null(&s->namespace, ref->namespace) &&
              dup_or_null(&s->label_selector, opts ? opts->label_selector : NULL) &&
              dup_or_null(&s->field_selector, opts ? opts->field_selector : NULL);
    if (!ok) {
        kube_free(s);
        return ns_errorf(err, -ENOMEM, "out of memory creating an informer");
    }
    ns_kube_watch_opts wo = {.label_selector = s->label_selector,
                             .field_selector = s->field_selector,
                             .timeout_seconds = opts ? opts->watch_timeout_s : 0};
    if (opts)
        wo.backoff = opts->backoff;
    rc = ns_kube_watch_new(k, ref, &wo, &s->w, err);
    if (rc) {
        kube_free(s);
        return rc;
    }
    op_informer_source src = {
        .list = kube_list, .watch = kube_watch, .stop = kube_stop, .free = kube_free, .ud = s};
    op_informer_opts o = opts ? *opts : (op_informer_opts){0};
    if (!o.name)
        o.name = ref->resource;
    return op_informer_new_source(&src, &o, out, err);
}

int op_informer_add_handler(op_informer *inf, op_informer_handler_fn fn, void *ud)
{
    pthread_mutex_lock(&inf->state_mu);
    int rc = 0;
    if (inf->started) {
        rc = -EBUSY;
    } else {
        handler *h = realloc(inf->handlers, (inf->nhandlers + 1) * sizeof(*h));
        if (!h) {
            rc = -ENOMEM;
        } else {
            inf->handlers = h;
            h[inf->nhandlers++] = (handler){.fn = fn, .ud = ud};
        }
    }
    pthread_mutex_unlock(&inf->state_mu);
    return rc;
}

/* With write_mu held. */
static void dispatch(op_informer *inf, const op_informer_event *ev)
{
    for (size_t i = 0; i < inf->nhandlers; i++)
        inf->handlers[i].fn(inf->handlers[i].ud, ev);
}

static bool stopping(op_informer *inf)
{
    pthread_mutex_lock(&inf->state_mu);
    bool s = inf->stopping;
    pthread_mutex_unlock(&inf->state_mu);
    return s;
}

/* Sleeps `ms` unless stopped first. Returns 0, or -ECANCELED when stopped. */
static int sleep_unless_stopped(op_informer *inf, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&inf->state_mu);
    while (!inf->stopping)
        if (pthread_cond_timedwait(&inf->state_cv, &inf->state_mu, &until) == ETIMEDOUT)
            break;
    int rc = inf->stopping ? -ECANCELED : 0;
    pthread_mutex_unlock(&inf->state_mu);
    return rc;
}

/* Replaces the cache by the list's items and tells handlers the difference. */
static int apply_list(op_informer *inf, cJSON *list)
{
    if (inf->transform) {
        cJSON *item;
        cJSON_ArrayForEach(item, ns_json_get(list, "items")) inf->transform(item);
    }
    op_cache *fresh = NULL;
    int rc = op_cache_from_list(list, inf->strip_managed, &fresh);
    if (rc)
        return rc;
    pthread_mutex_lock(&inf->write_mu);
    op_informer_event *changes = NULL;
    size_t n = 0;
    rc = op_cache_diff(inf->cache, fresh, &changes, &n);
    if (rc) {
        pthread_mutex_unlock(&inf->write_mu);
        op_cache_free(fresh);
        return rc;
    }
    /* Readers see the old list or the new one, never a mix. */
    pthread_rwlock_wrlock(&inf->lock);
    op_cache *old = inf->cache;
    inf->cache = fresh;
    pthread_rwlock_unlock(&inf->lock);
    for (size_t i = 0; i < n; i++)
        dispatch(inf, &changes[i]);
    pthread_mutex_unlock(&inf->write_mu);
    free(changes);
    op_cache_free(old);
    return 0;
}

static int on_watch_event(void *ud, ns_kube_event *ev)
{
    op_informer *inf = ud;
    if (ev->type != NS_KUBE_EVENT_ADDED && ev->type != NS_KUBE_EVENT_MODIFIED &&
        ev->type != NS_KUBE_EVENT_DELETED)
        return 0; /* BOOKMARK only moves the version (the watch tracks it); ERROR is the
                   * watch's business (410 ends it with -ESTALE, others reconnect) */
    char key[OP_KEY_MAX];
    if (op_object_key(ev->object, key, sizeof(key)) != 0) {
        ns_log(NS_LOG_WARN, "watch event without a usable metadata.name ignored", "informer",
               inf->name, "type", ns_kube_event_type_name(ev->type), NULL);
        return 0;
    }
    atomic_fetch_add(&inf->events, 1);
    op_informer_event out = {.key = key};
    cJSON *old = NULL;
    int rc = 0;
    pthread_mutex_lock(&inf->write_mu);
    if (ev->type == NS_KUBE_EVENT_DELETED) {
        pthread_rwlock_wrlock(&inf->lock);
        old = op_cache_take(inf->cache, key);
        pthread_rwlock_unlock(&inf->lock);
        /* Deleted before we ever saw it (a relist raced the watch): the event's object is
         * still the best last state to hand out. */
        out = (op_informer_event){
            .type = OP_INFORMER_DELETE, .key = key, .old = old ? old : ev->object};
        dispatch(inf, &out);
    } else {
        cJSON *obj = ev->object;
        ev->object = NULL; /* the cache keeps it: no copy */
        if (inf->strip_managed)
            op_object_strip_managed(obj);
        if (inf->transform)
            inf->transform(obj);
        pthread_rwlock_wrlock(&inf->lock);
        rc = op_cache_put(inf->cache, key, obj, &old);
        pthread_rwlock_unlock(&inf->lock);
        /* the same version again (a resumed watch replaying what a list already had) is
         * not a change */
        if (rc == 0 && !(old && !op_objects_differ(old, obj))) {
            out = (op_informer_event){.type = old ? OP_INFORMER_UPDATE : OP_INFORMER_ADD,
                                      .key = key,
                                      .old = old,
                                      .obj = obj};
            dispatch(inf, &out);
        }
    }
    pthread_mutex_unlock(&inf->write_mu);
    cJSON_Delete(old);
    return rc;
}

static long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *informer_main(void *arg)
{
    op_informer *inf = arg;
    unsigned attempt = 0;
    char nbuf[32], dbuf[32];
    while (!stopping(inf)) {
        ns_kube_status st = {.retry_after_s = -1};
        cJSON *list = NULL;
        const char *phase = "list";
        int rc = inf->src.list(inf->src.ud, &list, &st);
        char *rv = NULL;
        if (rc == 0) {
            const char *v = ns_json_path_str(list, "metadata", "resourceVersion", NULL);
            rv = strdup(v ? v : "");
            rc = rv ? apply_list(inf, list) : -ENOMEM;
        }
        cJSON_Delete(list);
        if (rc == 0) {
            atomic_fetch_add(&inf->lists, 1);
            pthread_mutex_lock(&inf->state_mu);
            bool first = !inf->synced;
            inf->synced = true;
            pthread_cond_broadcast(&inf->state_cv);
            pthread_mutex_unlock(&inf->state_mu);
            pthread_rwlock_rdlock(&inf->lock);
            snprintf(nbuf, sizeof(nbuf), "%zu", op_cache_len(inf->cache));
            pthread_rwlock_unlock(&inf->lock);
            ns_log(first ? NS_LOG_INFO : NS_LOG_DEBUG, first ? "informer synced" : "relisted",
                   "informer", inf->name, "objects", nbuf, "resource_version", rv, NULL);

            long started = mono_ms();
            phase = "watch";
            st = (ns_kube_status){.retry_after_s = -1};
            rc = inf->src.watch(inf->src.ud, rv, on_watch_event, inf, &st);
            free(rv);
            if (rc == 0)
                break; /* stopped */
            if (rc == -ESTALE) {
                /* The API server no longer has the history we would resume from: relist
                 * at once and let op_cache_diff say what we missed. */
                ns_log(NS_LOG_INFO, "watch expired (410 Gone), relisting", "informer", inf->name,
                       "message", st.message, NULL);
                attempt = 0;
                continue;
            }
            if (mono_ms() - started >= HEALTHY_WATCH_MS)
                attempt = 0;
        } else {
            free(rv);
        }
        if (stopping(inf))
            break;
        long delay = ns_kube_backoff_delay_ms(&inf->backoff, attempt++, st.retry_after_s,
                                              ns_kube_jitter_random());
        snprintf(dbuf, sizeof(dbuf), "%ld", delay);
        snprintf(nbuf, sizeof(nbuf), "%d", rc);
        ns_log(NS_LOG_WARN, "informer list or watch failed, retrying", "informer", inf->name,
               "phase", phase, "errno", nbuf, "error", st.message, "delay_ms", dbuf, NULL);
        if (sleep_unless_stopped(inf, delay) != 0)
            break;
    }
    return NULL;
}

static int resync_cb(void *ud, const char *key, const cJSON *obj)
{
    op_informer *inf = ud;
    op_informer_event ev = {.type = OP_INFORMER_RESYNC, .key = key, .old = obj, .obj = obj};
    dispatch(inf, &ev);
    return 0;
}

static void *resync_main(void *arg)
{
    op_informer *inf = arg;
    while (sleep_unless_stopped(inf, inf->resync_ms) == 0) {
        if (!op_informer_has_synced(inf))
            continue;
        /* write_mu keeps the cache still, so no rwlock is needed to read it here */
        pthread_mutex_lock(&inf->write_mu);
        op_cache_foreach(inf->cache, resync_cb, inf);
        pthread_mutex_unlock(&inf->write_mu);
    }
    return NULL;
}

int op_informer_start(op_informer *inf)
{
    pthread_mutex_lock(&inf->state_mu);
    int rc = 0;
    if (inf->started || inf->stopping) {
        rc = -EBUSY;
        goto out;
    }
    rc = -pthread_create(&inf->thread, NULL, informer_main, inf);
    if (rc)
        goto out;
    inf->started = true;
    if (inf->resync_ms > 0) {
        if (pthread_create(&inf->resync_thread, NULL, resync_main, inf) == 0)
            inf->have_resync_thread = true;
        else
            ns_log(NS_LOG_WARN, "cannot start the resync thread; resync disabled", "informer",
                   inf->name, NULL);
    }
out:
    pthread_mutex_unlock(&inf->state_mu);
    return rc;
}

bool op_informer_has_synced(op_informer *inf)
{
    pthread_mutex_lock(&inf->state_mu);
    bool s = inf->synced;
    pthread_mutex_unlock(&inf->state_mu);
    return s;
}

int op_informer_wait_synced(op_informer *inf, long timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    if (timeout_ms > 0) {
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&inf->state_mu);
    int rc = 0;
    while (!inf->synced && !inf->stopping) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&inf->state_cv, &inf->state_mu);
        } else if (pthread_cond_timedwait(&inf->state_cv, &inf->state_mu, &until) == ETIMEDOUT) {
            break;
        }
    }
    if (!inf->synced)
        rc = inf->stopping ? -ECANCELED : -ETIMEDOUT;
    pthread_mutex_unlock(&inf->state_mu);
    return rc;
}

void op_informer_stop(op_informer *inf)
{
    pthread_mutex_lock(&inf->state_mu);
    inf->stopping = true;
    bool join = inf->started && !inf->joined;
    inf->joined = true;
    pthread_cond_broadcast(&inf->state_cv);
    pthread_mutex_unlock(&inf->state_mu);
    inf->src.stop(inf->src.ud);
    if (join) {
        pthread_join(inf->thread, NULL);
        if (inf->have_resync_thread)
            pthread_join(inf->resync_thread, NULL);
    }
}

void op_informer_free(op_informer *inf)
{
    if (!inf)
        return;
    op_informer_stop(inf);
    if (inf->src.free)
        inf->src.free(inf->src.ud);
    op_cache_free(inf->cache);
    free(inf->handlers);
    free(inf->name);
    pthread_rwlock_destroy(&inf->lock);
    pthread_mutex_destroy(&inf->write_mu);
    pthread_mutex_destroy(&inf->state_mu);
    pthread_cond_destroy(&inf->state_cv);
    free(inf);
}

int op_informer_get(op_informer *inf, const char *key, cJSON **out)
{
    *out = NULL;
    pthread_rwlock_rdlock(&inf->lock);
    const cJSON *obj = op_cache_get(inf->cache, key);
    int rc = -ENOENT;
    if (obj) {
        *out = cJSON_Duplicate(obj, true);
        rc = *out ? 0 : -ENOMEM;
    }
    pthread_rwlock_unlock(&inf->lock);
    return rc;
}

typedef struct list_ctx {
    const char *ns;
    size_t nslen;
    const op_selector *sel;
    cJSON *arr;
} list_ctx;

static int list_cb(void *ud, const char *key, const cJSON *obj)
{
    list_ctx *l = ud;
    if (l->ns && !(strncmp(key, l->ns, l->nslen) == 0 && key[l->nslen] == '/'))
        return 0;
    if (!op_selector_matches_object(l->sel, obj))
        return 0;
    cJSON *copy = cJSON_Duplicate(obj, true);
    if (!copy || !cJSON_AddItemToArray(l->arr, copy)) {
        cJSON_Delete(copy);
        return -ENOMEM;
    }
    return 0;
}

int op_informer_list(op_informer *inf, const char *ns, const op_selector *sel, cJSON **out)
{
    *out = NULL;
    list_ctx l = {.ns = ns, .nslen = ns ? strlen(ns) : 0, .sel = sel, .arr = cJSON_CreateArray()};
    if (!l.arr)
        return -ENOMEM;
    pthread_rwlock_rdlock(&inf->lock);
    int rc = op_cache_foreach(inf->cache, list_cb, &l);
    pthread_rwlock_unlock(&inf->lock);
    if (rc) {
        cJSON_Delete(l.arr);
        return rc;
    }
    *out = l.arr;
    return 0;
}

int op_informer_foreach(op_informer *inf, op_cache_visit_fn fn, void *ud)
{
    pthread_rwlock_rdlock(&inf->lock);
    int rc = op_cache_foreach(inf->cache, fn, ud);
    pthread_rwlock_unlock(&inf->lock);
    return rc;
}

int op_informer_view(op_informer *inf, const char *key, op_cache_visit_fn fn, void *ud)
{
    pthread_rwlock_rdlock(&inf->lock);
    const cJSON *obj = op_cache_get(inf->cache, key);
    int rc = obj ? fn(ud, key, obj) : -ENOENT;
    pthread_rwlock_unlock(&inf->lock);
    return rc;
}

size_t op_informer_len(op_informer *inf)
{
    pthread_rwlock_rdlock(&inf->lock);
    size_t n = op_cache_len(inf->cache);
    pthread_rwlock_unlock(&inf->lock);
    return n;
}

void op_informer_get_stats(op_informer *inf, op_informer_stats *out)
{
    out->lists = atomic_load(&inf->lists);
    out->events = atomic_load(&inf->events);
}

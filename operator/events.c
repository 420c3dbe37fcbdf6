/* events.c - Kubernetes Events: de-duplication cache, token buckets, Event bodies, and
 * the sender thread that writes them. */
#include "events.h"

#include "json.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <search.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_MAX_ENTRIES  4096
#define DEFAULT_OBJECT_BURST 25.0
#define DEFAULT_OBJECT_PER_S (1.0 / 300.0)
#define DEFAULT_QPS          10.0
#define DEFAULT_BURST        25.0
#define DEFAULT_MAX_QUEUE    1024

/* ------------------------------------------------------------------ pure helpers */

int op_event_ref_from_object(const cJSON *obj, op_event_ref *ref)
{
    *ref = (op_event_ref){
        .api_version = ns_json_str(obj, "apiVersion"),
        .kind = ns_json_str(obj, "kind"),
        .namespace = ns_json_path_str(obj, "metadata", "namespace", NULL),
        .name = ns_json_path_str(obj, "metadata", "name", NULL),
        .uid = ns_json_path_str(obj, "metadata", "uid", NULL),
        .resource_version = ns_json_path_str(obj, "metadata", "resourceVersion", NULL),
    };
    return ref->kind && ref->kind[0] && ref->name && ref->name[0] ? 0 : -EINVAL;
}

const char *op_event_namespace(const op_event_ref *ref)
{
    return ref->namespace && ref->namespace[0] ? ref->namespace : "default";
}

/* Length-prefixed fields: "a|b" + "c" and "a" + "b|c" must not collide. */
static void key_field(ns_buf *out, const char *s)
{
    if (!s)
        s = "";
    ns_buf_printf(out, "%zu:", strlen(s));
    ns_buf_puts(out, s);
    ns_buf_putc(out, '|');
}

static void object_key(const op_event_ref *ref, ns_buf *out)
{
    key_field(out, ref->kind);
    key_field(out, ref->namespace);
    key_field(out, ref->name);
    key_field(out, ref->uid);
}

void op_event_dedup_key(const op_event_ref *ref, const char *type, const char *reason,
                        const char *message, ns_buf *out)
{
    object_key(ref, out);
    key_field(out, type);
    key_field(out, reason);
    key_field(out, message);
}

void op_token_bucket_init(op_token_bucket *b, double burst, double per_s)
{
    *b = (op_token_bucket){.tokens = burst, .burst = burst, .per_s = per_s};
}

static void refill(op_token_bucket *b, int64_t now_ms)
{
    if (!b->started) {
        b->started = true;
        b->last_ms = now_ms;
        return;
    }
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) / 1000.0 * b->per_s;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ms = now_ms;
    }
}

bool op_token_bucket_take(op_token_bucket *b, int64_t now_ms)
{
    refill(b, now_ms);
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

int64_t op_token_bucket_wait_ms(op_token_bucket *b, int64_t now_ms)
{
    refill(b, now_ms);
    if (b->tokens >= 1.0)
        return 0;
    if (b->per_s <= 0)
        return INT64_MAX;
    double ms = (1.0 - b->tokens) / b->per_s * 1000.0;
    return (int64_t)ms + 1;
}

/* Cuts `s` to at most `max` bytes without splitting a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len <= max)
        return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

static int format_time_s(int64_t s, char *buf, size_t size)
{
    time_t t = (time_t)s;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return -EINVAL;
    return 0;
}

/* ------------------------------------------------------------------ the cache */

typedef struct bucket {
    char *key;
    op_token_bucket tb;
    struct bucket *prev, *next; /* LRU */
} bucket;

struct op_event_cache {
    void *root; /* tsearch of op_event_entry*, by key */
    size_t len, max;
    op_event_entry *lru_head, *lru_tail; /* head: most recently used */
    void *broot;                         /* tsearch of bucket*, by key */
    size_t blen;
    bucket *bhead, *btail;
    double object_burst, object_per_s;
    int64_t window_s;
    char *component, *host;
    uint32_t seq; /* makes Event names unique within a second */
};

static int cmp_entry_key(const void *a, const void *b)
{
    return strcmp(((const op_event_entry *)a)->key, ((const op_event_entry *)b)->key);
}

static int cmp_bucket_key(const void *a, const void *b)
{
    return strcmp(((const bucket *)a)->key, ((const bucket *)b)->key);
}

static void entry_free(void *p)
{
    op_event_entry *e = p;
    free(e->key);
    free(e->name);
    free(e->namespace);
    cJSON_Delete(e->body);
    free(e);
}

static void bucket_free(void *p)
{
    bucket *b = p;
    free(b->key);
    free(b);
}

int op_event_cache_new(const op_event_cache_opts *o, op_event_cache **out)
{
    op_event_cache_opts none = {0};
    if (!o)
        o = &none;
    op_event_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->max = o->max_entries ? o->max_entries : DEFAULT_MAX_ENTRIES;
    c->object_burst = o->object_burst > 0 ? o->object_burst : DEFAULT_OBJECT_BURST;
    c->object_per_s = o->object_per_s > 0 ? o->object_per_s : DEFAULT_OBJECT_PER_S;
    c->window_s = o->window_s > 0 ? o->window_s : OP_EVENT_DEDUP_WINDOW_S;
    c->component = strdup(o->component ? o->component : OP_EVENT_COMPONENT);
    c->host = o->host ? strdup(o->host) : NULL;
    c->seq = ns_kube_jitter_random();
    if (!c->component || (o->host && !c->host)) {
        op_event_cache_free(c);
        return -ENOMEM;
    }
    *out = c;
    return 0;
}

void op_event_cache_free(op_event_cache *c)
{
    if (!c)
        return;
    tdestroy(c->root, entry_free);
    tdestroy(c->broot, bucket_free);
    free(c->component);
    free(c->host);
    free(c);
}

size_t op_event_cache_len(const op_event_cache *c)
{
    return c->len;
}

op_event_entry *op_event_cache_find(op_event_cache *c, const char *key)
{
    op_event_entry probe = {.key = (char *)key};
    void *node = tfind(&probe, &c->root, cmp_entry_key);
    return node ? *(op_event_entry **)node : NULL;
}

static void lru_unlink(op_event_cache *c, op_event_entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push(op_event_cache *c, op_event_entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    c->lru_head = e;
    if (!c->lru_tail)
        c->lru_tail = e;
}

static void entry_remove(op_event_cache *c, op_event_entry *e)
{
    lru_unlink(c, e);
    tdelete(e, &c->root, cmp_entry_key);
    c->len--;
    entry_free(e);
}

/* The per-object token bucket, made on first use; least recently used ones are dropped
 * beyond `max`, which only forgets how chatty a long-quiet object was. */
static bucket *object_bucket(op_event_cache *c, const char *key)
{
    bucket probe = {.key = (char *)key};
    void *node = tfind(&probe, &c->broot, cmp_bucket_key);
    bucket *b = node ? *(bucket **)node : NULL;
    if (b) {
        /* move to the front */
        if (b->prev) {
            b->prev->next = b->next;
            if (b->next)
                b->next->prev = b->prev;
            else
                c->btail = b->prev;
            b->prev = NULL;
            b->next = c->bhead;
            c->bhead->prev = b;
            c->bhead = b;
        }
        return b;
    }
    b = calloc(1, sizeof(*b));
    if (!b || !(b->key = strdup(key)) || !tsearch(b, &c->broot, cmp_bucket_key)) {
        if (b)
            free(b->key);
        free(b);
        return NULL;
    }
    op_token_bucket_init(&b->tb, c->object_burst, c->object_per_s);
    b->next = c->bhead;
    if (c->bhead)
        c->bhead->prev = b;
    c->bhead = b;
    if (!c->btail)
        c->btail = b;
    if (++c->blen > c->max) {
        bucket *old = c->btail;
        c->btail = old->prev;
        c->btail->next = NULL;
        tdelete(old, &c->broot, cmp_bucket_key);
        bucket_free(old);
        c->blen--;
    }
    return b;
}

static cJSON *base_body(const op_event_cache *c, const op_event_ref *ref, const char *type,
                        const char *reason, const char *message, size_t msglen, const char *name)
{
    cJSON *ev = cJSON_CreateObject();
    cJSON *md = cJSON_AddObjectToObject(ev, "metadata");
    cJSON *io = cJSON_AddObjectToObject(ev, "involvedObject");
    cJSON *src = cJSON_AddObjectToObject(ev, "source");
    char *msg = strndup(message, msglen);
    bool ok = ev && md && io && src && msg && !ns_json_set_str(ev, "apiVersion", "v1") &&
              !ns_json_set_str(ev, "kind", "Event") && !ns_json_set_str(md, "name", name) &&
              !ns_json_set_str(md, "namespace", op_event_namespace(ref)) &&
              !ns_json_set_str(io, "kind", ref->kind) && !ns_json_set_str(io, "name", ref->name) &&
              !ns_json_set_str(ev, "reason", reason) && !ns_json_set_str(ev, "message", msg) &&
              !ns_json_set_str(ev, "type", type) &&
              !ns_json_set_str(src, "component", c->component) &&
              !ns_json_set_str(ev, "reportingComponent", c->component) &&
              !ns_json_set_str(ev, "reportingInstance", c->host ? c->host : c->component);
    if (ok && ref->api_version)
        ok = !ns_json_set_str(io, "apiVersion", ref->api_version);
    if (ok && ref->namespace && ref->namespace[0])
        ok = !ns_json_set_str(io, "namespace", ref->namespace);
    if (ok && ref->uid)
        ok = !ns_json_set_str(io, "uid", ref->uid);
    if (ok && ref->resource_version)
        ok = !ns_json_set_str(io, "resourceVersion", ref->resource_version);
    if (ok && c->host)
        ok = !ns_json_set_str(src, "host", c->host);
    free(msg);
    if (!ok) {
        cJSON_Delete(ev);
        return NULL;
    }
    return ev;
}

int op_event_cache_observe(op_event_cache *c, const op_event_ref *ref, const char *type,
                           const char *reason, const char *message, int64_t now_s,
                           op_event_entry **entry)
{
    *entry = NULL;
    if (!type || (strcmp(type, "Normal") != 0 && strcmp(type, "Warning") != 0) || !reason ||
        !reason[0] || !ref->kind || !ref->name || !ref->name[0])
        return -EINVAL;
    if (!message)
        message = "";
    size_t msglen = utf8_cut(message, OP_EVENT_MESSAGE_MAX);

    ns_buf key;
    ns_buf_init(&key);
    char *cut = strndup(message, msglen);
    if (cut)
        op_event_dedup_key(ref, type, reason, cut, &key);
    free(cut);
    int rc = 0;
    if (!cut || key.failed) {
        rc = -ENOMEM;
        goto out;
    }
    op_event_entry *e = op_event_cache_find(c, ns_buf_cstr(&key));
    if (e && now_s - e->last_s <= c->window_s) {
        e->count++;
        if (now_s > e->last_s)
            e->last_s = now_s;
        lru_unlink(c, e);
        lru_push(c, e);
        *entry = e;
        rc = OP_EVENT_REPEAT;
        goto out;
    }
    if (e)
        entry_remove(c, e); /* too old to count on: a new Event starts */

    ns_buf okey;
    ns_buf_init(&okey);
    object_key(ref, &okey);
    bucket *b = okey.failed ? NULL : object_bucket(c, ns_buf_cstr(&okey));
    ns_buf_free(&okey);
    if (!b) {
        rc = -ENOMEM;
        goto out;
    }
    if (!op_token_bucket_take(&b->tb, now_s * 1000)) {
        rc = OP_EVENT_DROPPED;
        goto out;
    }

    /* client-go names Events "<object>.<hex nanoseconds>"; we have seconds, so a
     * sequence number fills the low half. */
    char name[254];
    unsigned long long suffix =
        ((unsigned long long)(uint32_t)now_s << 32) | (unsigned long long)c->seq++;
    snprintf(name, sizeof(name), "%.*s.%016llx", 236, ref->name, suffix);
    e = calloc(1, sizeof(*e));
    if (!e) {
        rc = -ENOMEM;
        goto out;
    }
    e->key = ns_buf_take(&key);
    e->name = strdup(name);
    e->namespace = strdup(op_event_namespace(ref));
    e->body = base_body(c, ref, type, reason, message, msglen, name);
    e->count = 1;
    e->first_s = e->last_s = now_s;
    if (!e->key || !e->name || !e->namespace || !e->body || !tsearch(e, &c->root, cmp_entry_key)) {
        entry_free(e);
        rc = -ENOMEM;
        goto out;
    }
    c->len++;
    lru_push(c, e);
    if (c->len > c->max)
        entry_remove(c, c->lru_tail);
    *entry = e;
    rc = OP_EVENT_NEW;
out:
    ns_buf_free(&key);
    return rc;
}

cJSON *op_event_build(const op_event_entry *e)
{
    char first[32], last[32];
    if (format_time_s(e->first_s, first, sizeof(first)) ||
        format_time_s(e->last_s, last, sizeof(last)))
        return NULL;
    cJSON *ev = cJSON_Duplicate(e->body, true);
    if (!ev || ns_json_set_str(ev, "firstTimestamp", first) ||
        ns_json_set_str(ev, "lastTimestamp", last) ||
        !cJSON_AddNumberToObject(ev, "count", (double)e->count)) {
        cJSON_Delete(ev);
        return NULL;
    }
    return ev;
}

cJSON *op_event_build_patch(const op_event_entry *e)
{
    char last[32];
    if (format_time_s(e->last_s, last, sizeof(last)))
        return NULL;
    cJSON *p = cJSON_CreateObject();
    if (!p || ns_json_set_str(p, "lastTimestamp", last) ||
        !cJSON_AddNumberToObject(p, "count", (double)e->count)) {
        cJSON_Delete(p);
        return NULL;
    }
    return p;
}

/* ------------------------------------------------------------------ the recorder */

struct op_recorder {
    ns_kube *k;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* work queued, stop */
    pthread_cond_t idle_cv; /* queue empty and nothing in flight */
    op_event_cache *cache;
    char **fifo; /* ring of de-duplication keys with a write pending */
    size_t head, len, cap;
    op_token_bucket global;
    bool stopping, inflight;
    pthread_t thread;
    op_recorder_stats stats;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_s(void)
{
    return (int64_t)time(NULL);
}

static struct timespec deadline_in(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Sends one queued write (lock held on entry and exit; released during I/O). */
static void send_one(op_recorder *r)
{
    char *key = r->fifo[r->head];
    r->head = (r->head + 1) % r->cap;
    r->len--;
    op_event_entry *e = op_event_cache_find(r->cache, key);
    if (!e) { /* evicted meanwhile */
        free(key);
        return;
    }
    e->pending = false;
    bool created = e->created;
    char *name = strdup(e->name), *ns = strdup(e->namespace);
    cJSON *full = op_event_build(e);
    cJSON *patch = op_event_build_patch(e);
    r->inflight = true;
    pthread_mutex_unlock(&r->mu);

    int rc = -ENOMEM;
    bool did_create = false;
    ns_kube_status st = {0};
    if (name && ns && full && patch) {
        ns_kube_ref ref = {.version = "v1", .resource = "events", .namespace = ns, .name = name};
        if (created) {
            rc = ns_kube_patch(r->k, &ref, NS_KUBE_PATCH_MERGE, patch, NULL, NULL, &st);
            if (rc == -ENOENT) { /* expired (the API server keeps Events for an hour) */
                rc = ns_kube_create(r->k, &ref, full, NULL, NULL, &st);
                did_create = true;
            }
        } else {
            rc = ns_kube_create(r->k, &ref, full, NULL, NULL, &st);
            did_create = true;
            if (rc == -EEXIST) { /* our own earlier create got through after all */
                rc = ns_kube_patch(r->k, &ref, NS_KUBE_PATCH_MERGE, patch, NULL, NULL, &st);
                did_create = false;
            }
        }
    }
    if (rc)
        ns_log(NS_LOG_WARN, "cannot write an Event", "namespace", ns, "event", name, "error",
               rc == -ENOMEM ? "out of memory" : st.message, NULL);

    pthread_mutex_lock(&r->mu);
    e = op_event_cache_find(r->cache, key);
    /* the entry may have been replaced by a newer Event with the same key: only mark
     * the one we wrote */
    if (rc == 0 && e && name && strcmp(e->name, name) == 0)
        e->created = true;
    if (rc)
        r->stats.failed++;
    else if (did_create)
        r->stats.created++;
    else
        r->stats.patched++;
    r->inflight = false;
    free(key);
    free(name);
    free(ns);
    cJSON_Delete(full);
    cJSON_Delete(patch);
}

static void *sender_main(void *arg)
{
    op_recorder *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        if (r->len == 0) {
            pthread_cond_broadcast(&r->idle_cv);
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        int64_t wait = op_token_bucket_wait_ms(&r->global, mono_ms());
        if (wait > 0) {
            /* queued repeats keep folding into their entries meanwhile */
            struct timespec until = deadline_in(wait > 60000 ? 60000 : wait);
            pthread_cond_timedwait(&r->cv, &r->mu, &until);
            continue;
        }
        op_token_bucket_take(&r->global, mono_ms());
        send_one(r);
    }
    pthread_cond_broadcast(&r->idle_cv);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int op_recorder_new(ns_kube *k, const op_recorder_opts *opts, op_recorder **out, ns_err *err)
{
    *out = NULL;
    op_recorder_opts none = {0};
    if (!opts)
        opts = &none;
    op_recorder *r = calloc(1, sizeof(*r));
    if (!r)
        return ns_errorf(err, -ENOMEM, "out of memory creating an event recorder");
    r->cap = opts->max_queue ? opts->max_queue : DEFAULT_MAX_QUEUE;
    r->fifo = calloc(r->cap, sizeof(*r->fifo));
    int rc = r->fifo ? op_event_cache_new(&opts->cache, &r->cache) : -ENOMEM;
    if (rc) {
        free(r->fifo);
        free(r);
        return ns_errorf(err, -ENOMEM, "out of memory creating an event recorder");
    }
    op_token_bucket_init(&r->global, opts->burst > 0 ? opts->burst : DEFAULT_BURST,
                         opts->qps > 0 ? opts->qps : DEFAULT_QPS);
    ns_kube_options ko = {.timeout_ms = 5000, .connect_timeout_ms = 2000, .max_retries = 1};
    rc = ns_kube_new(ns_kube_get_config(k), &ko, &r->k, err);
    if (rc) {
        op_event_cache_free(r->cache);
        free(r->fifo);
        free(r);
        return rc;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_cond_init(&r->idle_cv, &ca);
    pthread_condattr_destroy(&ca);
    rc = -pthread_create(&r->thread, NULL, sender_main, r);
    if (rc) {
        ns_kube_free(r->k);
        op_event_cache_free(r->cache);
        free(r->fifo);
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
        pthread_cond_destroy(&r->idle_cv);
        free(r);
        return ns_errorf(err, rc, "cannot start the event sender thread");
    }
    *out = r;
    return 0;
}

int op_recorder_event(op_recorder *r, const cJSON *obj, const char *type, const char *reason,
                      const char *fmt, ...)
{
    op_event_ref ref;
    if (!r || op_event_ref_from_object(obj, &ref) != 0 || !fmt)
        return -EINVAL;
    char msg[OP_EVENT_MESSAGE_MAX + 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&r->mu);
    op_event_entry *e = NULL;
    int rc = op_event_cache_observe(r->cache, &ref, type, reason, msg, wall_s(), &e);
    if (rc == OP_EVENT_DROPPED) {
        r->stats.dropped++;
    } else if (rc >= 0 && !e->pending) {
        char *key = r->len < r->cap ? strdup(e->key) : NULL;
        if (!key) {
            r->stats.dropped++;
        } else {
            r->fifo[(r->head + r->len) % r->cap] = key;
            r->len++;
            e->pending = true;
            pthread_cond_signal(&r->cv);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc == -EINVAL ? -EINVAL : 0;
}

int op_recorder_flush(op_recorder *r, long timeout_ms)
{
    struct timespec until = deadline_in(timeout_ms > 0 ? timeout_ms : 0);
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    while ((r->len > 0 || r->inflight) && !r->stopping) {
        if (pthread_cond_timedwait(&r->idle_cv, &r->mu, &until) == ETIMEDOUT) {
            rc = r->len > 0 || r->inflight ? -ETIMEDOUT : 0;
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void op_recorder_get_stats(op_recorder *r, op_recorder_stats *out)
{
    pthread_mutex_lock(&r->mu);
    *out = r->stats;
    pthread_mutex_unlock(&r->mu);
}

void op_recorder_free(op_recorder *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    for (size_t i = 0; i < r->len; i++)
        free(r->fifo[(r->head + i) % r->cap]);
    free(r->fifo);
    op_event_cache_free(r->cache);
    ns_kube_free(r->k);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    pthread_cond_destroy(&r->idle_cv);
    free(r);
}

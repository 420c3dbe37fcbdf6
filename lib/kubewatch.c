/* kubewatch.c - watch framing, event parsing and the reconnecting watch loop. */
#include "kubewatch.h"

#include "json.h"
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WATCH_BACKOFF_BASE_MS 200L
#define WATCH_BACKOFF_MAX_MS  30000L
/* Client-side margin over the server's timeoutSeconds before a silent connection is
 * given up on (a half-open TCP connection would otherwise hang the watch). */
#define WATCH_TIMEOUT_MARGIN_S 30L
/* An accepted watch that lasted less than this and delivered nothing counts as a failure
 * for backoff, so that a server closing watches at once is not hammered. */
#define WATCH_HEALTHY_MS 1000L

/* ------------------------------------------------------------------ framing */

void ns_kube_lines_init(ns_kube_lines *l, size_t max_line)
{
    ns_buf_init(&l->partial);
    l->max_line = max_line ? max_line : NS_KUBE_WATCH_MAX_LINE;
    l->overflow = false;
}

void ns_kube_lines_reset(ns_kube_lines *l)
{
    ns_buf_reset(&l->partial);
    l->overflow = false;
}

void ns_kube_lines_free(ns_kube_lines *l)
{
    if (l)
        ns_buf_free(&l->partial);
}

int ns_kube_lines_feed(ns_kube_lines *l, const char *data, size_t len, ns_kube_line_cb cb, void *ud)
{
    if (l->overflow)
        return -EMSGSIZE;
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t n = nl ? (size_t)(nl - data) : len;
        /* +1: room for the '\r' of a "\r\n" ending, which is not part of the line. */
        if (l->partial.len + n > l->max_line + 1)
            goto overflow;
        if (!nl) {
            ns_buf_append(&l->partial, data, len);
            return l->partial.failed ? -ENOMEM : 0;
        }
        const char *line = data;
        size_t ll = n;
        if (l->partial.len) {
            ns_buf_append(&l->partial, data, n);
            if (l->partial.failed)
                return -ENOMEM;
            line = l->partial.data;
            ll = l->partial.len;
        }
        if (ll && line[ll - 1] == '\r')
            ll--;
        if (ll > l->max_line)
            goto overflow;
        int rc = ll ? cb(ud, line, ll) : 0;
        ns_buf_reset(&l->partial);
        data = nl + 1;
        len -= n + 1;
        if (rc)
            return rc;
    }
    return 0;
overflow:
    l->overflow = true;
    ns_buf_reset(&l->partial);
    return -EMSGSIZE;
}

/* ------------------------------------------------------------------ events */

static const char *const type_names[] = {
    [NS_KUBE_EVENT_ADDED] = "ADDED",     [NS_KUBE_EVENT_MODIFIED] = "MODIFIED",
    [NS_KUBE_EVENT_DELETED] = "DELETED", [NS_KUBE_EVENT_BOOKMARK] = "BOOKMARK",
    [NS_KUBE_EVENT_ERROR] = "ERROR",
};

const char *ns_kube_event_type_name(ns_kube_event_type type)
{
    if ((unsigned)type < sizeof(type_names) / sizeof(type_names[0]))
        return type_names[type];
    return "UNKNOWN";
}

int ns_kube_event_parse(const char *line, size_t len, ns_kube_event *ev, ns_err *err)
{
    *ev = (ns_kube_event){.status.retry_after_s = -1};
    cJSON *root = NULL;
    int rc = ns_json_parse(line, len, &root, err);
    if (rc)
        return rc;
    const char *type = ns_json_str(root, "type");
    if (!type) {
        rc = ns_errorf(err, -EINVAL, "watch event has no type");
        goto out;
    }
    size_t i = 0;
    for (; i < sizeof(type_names) / sizeof(type_names[0]); i++)
        if (strcmp(type, type_names[i]) == 0)
            break;
    if (i == sizeof(type_names) / sizeof(type_names[0])) {
        rc = ns_errorf(err, -EINVAL, "unknown watch event type \"%.64s\"", type);
        goto out;
    }
    cJSON *obj = ns_json_get(root, "object");
    if (!cJSON_IsObject(obj)) {
        rc = ns_errorf(err, -EINVAL, "%s watch event has no object", type);
        goto out;
    }
    ev->type = (ns_kube_event_type)i;
    ev->object = cJSON_DetachItemViaPointer(root, obj);
    ev->resource_version = ns_json_path_str(ev->object, "metadata", "resourceVersion", NULL);
    if (ev->type == NS_KUBE_EVENT_ERROR)
        ns_kube_status_from_json(0, ev->object, &ev->status);
out:
    cJSON_Delete(root);
    return rc;
}

void ns_kube_event_clear(ns_kube_event *ev)
{
    if (!ev)
        return;
    cJSON_Delete(ev->object);
    *ev = (ns_kube_event){0};
}

/* ------------------------------------------------------------------ paths */

int ns_kube_watch_path(const ns_kube_ref *ref, const ns_kube_watch_opts *opts, const char *rv,
                       long timeout_s, ns_buf *out, ns_err *err)
{
    ns_kube_ref coll = *ref;
    coll.name = NULL;
    coll.subresource = NULL;
    if (ref->name && (!ref->name[0] || strchr(ref->name, ',')))
        return ns_errorf(err, -EINVAL, "bad object name to watch");
    int rc = ns_kube_path(&coll, out, err);
    if (rc)
        return rc;
    ns_kube_query_add(out, "watch", "1");
    if (!opts || !opts->no_bookmarks)
        ns_kube_query_add(out, "allowWatchBookmarks", "true");
    if (opts && opts->label_selector && opts->label_selector[0])
        ns_kube_query_add(out, "labelSelector", opts->label_selector);
    const char *fs =
        opts && opts->field_selector && opts->field_selector[0] ? opts->field_selector : NULL;
    if (ref->name) {
        ns_buf sel;
        ns_buf_init(&sel);
        ns_buf_printf(&sel, "metadata.name=%s%s%s", ref->name, fs ? "," : "", fs ? fs : "");
        ns_kube_query_add(out, "fieldSelector", ns_buf_cstr(&sel));
        if (sel.failed)
            out->failed = true;
        ns_buf_free(&sel);
    } else if (fs) {
        ns_kube_query_add(out, "fieldSelector", fs);
    }
    if (rv && rv[0])
        ns_kube_query_add(out, "resourceVersion", rv);
    if (timeout_s > 0) {
        char t[24];
        snprintf(t, sizeof(t), "%ld", timeout_s);
        ns_kube_query_add(out, "timeoutSeconds", t);
    }
    return out->failed ? -ENOMEM : 0;
}

/* ------------------------------------------------------------------ the loop */

/* Why the line callback stopped a transfer, beyond the user's own return value. */
typedef enum stop_why {
    STOP_NONE,
    STOP_USER,      /* the user's callback returned non-zero */
    STOP_GONE,      /* ERROR event with code 410 */
    STOP_ERROR,     /* another ERROR event: reconnect */
    STOP_MALFORMED, /* a line that is not a watch event: reconnect */
} stop_why;

/* The value our callbacks return to abort a transfer; the reason is in w->why. */
#define WATCH_ABORT (-ECANCELED)

struct ns_kube_watch {
    ns_kube *k;
    ns_kube_stream *stream;
    /* copies of the ref and options */
    char *group, *version, *resource, *namespace, *name;
    char *label_selector, *field_selector;
    ns_kube_watch_opts opts; /* string members point at the copies above */
    char *rv;                /* last resourceVersion, "" if none */
    ns_kube_lines lines;
    /* the running transfer */
    ns_kube_watch_cb cb;
    void *ud;
    int user_rc;
    stop_why why;
    ns_kube_status event_status;
    char parse_error[NS_ERR_MSG_MAX];
    unsigned long conn_events; /* events on the current connection */
    atomic_ulong connects;     /* read from other threads */
    atomic_ulong events;
};

static bool dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return true;
    *dst = strdup(src);
    return *dst != NULL;
}

int ns_kube_watch_new(ns_kube *k, const ns_kube_ref *ref, const ns_kube_watch_opts *opts,
                      ns_kube_watch **out, ns_err *err)
{
    static const ns_kube_watch_opts none = {0};
    if (!opts)
        opts = &none;
    *out = NULL;
    /* Validate once, so that a bad ref fails here and not on every reconnect. */
    ns_buf probe;
    ns_buf_init(&probe);
    int rc = ns_kube_watch_path(ref, opts, NULL, 0, &probe, err);
    ns_buf_free(&probe);
    if (rc)
        return rc;
    ns_kube_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->k = k;
    w->opts = *opts;
    ns_kube_lines_init(&w->lines, opts->max_line);
    bool ok = dup_opt(&w->group, ref->group) && dup_opt(&w->version, ref->version) &&
              dup_opt(&w->resource, ref->resource) && dup_opt(&w->namespace, ref->namespace) &&
              dup_opt(&w->name, ref->name) && dup_opt(&w->label_selector, opts->label_selector) &&
              dup_opt(&w->field_selector, opts->field_selector) &&
              dup_opt(&w->rv, opts->resource_version ? opts->resource_version : "");
    if (!ok || ns_kube_stream_new(k, &w->stream) != 0) {
        ns_kube_watch_free(w);
        return ns_errorf(err, -ENOMEM, "out of memory creating a watch");
    }
    w->opts.label_selector = w->label_selector;
    w->opts.field_selector = w->field_selector;
    w->opts.resource_version = NULL;
    if (w->opts.backoff.base_ms <= 0)
        w->opts.backoff.base_ms = WATCH_BACKOFF_BASE_MS;
    if (w->opts.backoff.max_ms <= 0)
        w->opts.backoff.max_ms = WATCH_BACKOFF_MAX_MS;
    *out = w;
    return 0;
}

void ns_kube_watch_free(ns_kube_watch *w)
{
    if (!w)
        return;
    ns_kube_stream_free(w->stream);
    free(w->group);
    free(w->version);
    free(w->resource);
    free(w->namespace);
    free(w->name);
    free(w->label_selector);
    free(w->field_selector);
    free(w->rv);
    ns_kube_lines_free(&w->lines);
    free(w);
}

void ns_kube_watch_stop(ns_kube_watch *w)
{
    ns_kube_stream_stop(w->stream);
}

const char *ns_kube_watch_resource_version(const ns_kube_watch *w)
{
    return w->rv ? w->rv : "";
}

int ns_kube_watch_set_resource_version(ns_kube_watch *w, const char *rv)
{
    char *copy = strdup(rv ? rv : "");
    if (!copy)
        return -ENOMEM;
    free(w->rv);
    w->rv = copy;
    return 0;
}

unsigned long ns_kube_watch_connects(const ns_kube_watch *w)
{
    return atomic_load(&((ns_kube_watch *)w)->connects);
}

unsigned long ns_kube_watch_events(const ns_kube_watch *w)
{
    return atomic_load(&((ns_kube_watch *)w)->events);
}

static int line_cb(void *ud, const char *line, size_t len)
{
    ns_kube_watch *w = ud;
    ns_kube_event ev;
    ns_err err = {0};
    int rc = ns_kube_event_parse(line, len, &ev, &err);
    if (rc) {
        snprintf(w->parse_error, sizeof(w->parse_error), "%s", err.msg);
        w->why = STOP_MALFORMED;
        return WATCH_ABORT;
    }
    if (ev.type != NS_KUBE_EVENT_ERROR && ev.resource_version && ev.resource_version[0]) {
        if (ns_kube_watch_set_resource_version(w, ev.resource_version) != 0) {
            ns_kube_event_clear(&ev);
            w->why = STOP_USER;
            w->user_rc = -ENOMEM;
            return WATCH_ABORT;
        }
    }
    atomic_fetch_add(&w->events, 1);
    w->conn_events++;
    bool is_error = ev.type == NS_KUBE_EVENT_ERROR;
    if (is_error)
        w->event_status = ev.status;
    rc = w->cb(w->ud, &ev);
    ns_kube_event_clear(&ev);
    if (rc) {
        w->why = STOP_USER;
        w->user_rc = rc;
        return WATCH_ABORT;
    }
    if (is_error) {
        /* 410: the version is too old to resume from; anything else: reconnect. */
        w->why = w->event_status.code == 410 ? STOP_GONE : STOP_ERROR;
        return WATCH_ABORT;
    }
    return 0;
}

static int data_cb(void *ud, const char *data, size_t len)
{
    ns_kube_watch *w = ud;
    int rc = ns_kube_lines_feed(&w->lines, data, len, line_cb, w);
    if (rc == -EMSGSIZE || rc == -ENOMEM) {
        w->why = STOP_USER;
        w->user_rc = rc;
        return WATCH_ABORT;
    }
    return rc;
}

static long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Errors a reconnect may cure. */
static bool retryable(int rc, long http)
{
    /* The connection failed or broke (mid-stream too, after a 200). */
    if (rc == -ECONNREFUSED || rc == -ECONNRESET || rc == -ETIMEDOUT || rc == -EHOSTUNREACH)
        return true;
    return http == 429 || (http >= 500 && http < 600 && http != 501);
}

int ns_kube_watch_run(ns_kube_watch *w, ns_kube_watch_cb cb, void *ud, ns_kube_status *st_out)
{
    ns_kube_status local;
    ns_kube_status *st = st_out ? st_out : &local;
    *st = (ns_kube_status){.retry_after_s = -1};
    ns_kube_ref ref = {.group = w->group,
                       .version = w->version,
                       .resource = w->resource,
                       .namespace = w->namespace,
                       .name = w->name};
    unsigned attempt = 0;
    int unauthorized = 0;
    ns_buf path;
    ns_buf_init(&path);
    int rc;
    w->cb = cb;
    w->ud = ud;
    for (;;) {
        if (ns_kube_stream_stopped(w->stream)) {
            rc = 0;
            break;
        }
        long timeout = w->opts.timeout_seconds > 0 ? w->opts.timeout_seconds
                                                   : 300 + (long)(ns_kube_jitter_random() % 300);
        ns_buf_reset(&path);
        rc = ns_kube_watch_path(&ref, &w->opts, w->rv, timeout, &path, NULL);
        if (rc)
            break;
        ns_kube_lines_reset(&w->lines);
        w->why = STOP_NONE;
        w->user_rc = 0;
        w->conn_events = 0;
        w->event_status = (ns_kube_status){.retry_after_s = -1};
        w->parse_error[0] = '\0';
        atomic_fetch_add(&w->connects, 1);
        long started = mono_ms();
        rc = ns_kube_stream_get(w->stream, ns_buf_cstr(&path), timeout + WATCH_TIMEOUT_MARGIN_S,
                                data_cb, w, st);
        /* Healthy: the server accepted the watch and it delivered or lasted. */
        bool healthy = w->conn_events > 0 || (st->http >= 200 && st->http < 300 &&
                                              mono_ms() - started >= WATCH_HEALTHY_MS);

        if (rc == -ECANCELED && ns_kube_stream_stopped(w->stream)) {
            rc = 0;
            break;
        }
        if (rc == WATCH_ABORT && w->why != STOP_NONE) {
            if (w->why == STOP_USER) {
                rc = w->user_rc;
                if (rc == -EMSGSIZE)
                    snprintf(st->message, sizeof(st->message), "watch event longer than %zu bytes",
                             w->lines.max_line);
                break;
            }
            if (w->why == STOP_GONE) {
                *st = w->event_status;
                rc = -ESTALE;
                break;
            }
            if (w->why == STOP_ERROR) {
                *st = w->event_status;
            } else {
                snprintf(st->message, sizeof(st->message), "malformed watch event: %.400s",
                         w->parse_error);
            }
            rc = -EPROTO; /* reconnect below */
        } else if (rc == 0) {
            /* The server ended the watch (timeoutSeconds): resume from the last version. */
            unauthorized = 0;
            if (healthy) {
                attempt = 0;
                continue;
            }
        } else if (st->http == 410) {
            rc = -ESTALE;
            break;
        } else if (st->http == 401 && unauthorized++ == 0) {
            /* Perhaps the token was just rotated; the next request re-reads it. */
        } else if (!retryable(rc, st->http)) {
            break;
        }
        if (healthy && w->why == STOP_NONE)
            attempt = 0;
        long delay = ns_kube_backoff_delay_ms(&w->opts.backoff, attempt++, st->retry_after_s,
                                              ns_kube_jitter_random());
        char dbuf[24];
        snprintf(dbuf, sizeof(dbuf), "%ld", delay);
        ns_log(NS_LOG_WARN, "kubernetes watch interrupted, reconnecting", "resource", w->resource,
               "namespace", w->namespace, "error", st->message, "delay_ms", dbuf, NULL);
        if (ns_kube_stream_sleep(w->stream, delay) == -ECANCELED) {
            rc = 0;
            break;
        }
    }
    ns_buf_free(&path);
    return rc;
}

/* kube.h - a Kubernetes API client over libcurl and cJSON: typed requests (get, list,
 * create, update, patch, server-side apply, delete, status), Status errors, retries, and a
 * cancellable streaming GET that watches (kubewatch.h) are built on.
 *
 * Threads: an ns_kube handle may be used by any number of threads at once. Each call
 * borrows an easy handle from a small pool; a pooled handle keeps its connection to the
 * API server open, so back-to-back calls reuse a warm TLS connection. DNS results and
 * TLS sessions are shared across handles. HTTP/1.1 is used; TLS 1.2 is the minimum.
 *
 * Errors: every call returns 0 or a negative errno (see ns_kube_http_errno for the
 * mapping of HTTP answers) and, when `st` is not NULL, fills an ns_kube_status with the
 * HTTP code and the API server's Status (reason, message). 429, 5xx and connection
 * failures are retried in one place (ns_kube_request) with bounded, jittered exponential
 * backoff that honours Retry-After; a 409 is returned at once (controllers re-read and
 * retry). Non-idempotent requests (POST, JSON patch) are retried only when the server
 * cannot have acted on them (429, or no connection was made).
 *
 * Secrets: tokens, keys and Authorization headers are never logged nor put into a
 * status message; curl's verbose mode is never enabled.
 */
#ifndef NS_KUBE_H
#define NS_KUBE_H

#include "buf.h"
#include "err.h"
#include "kubeconfig.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- addressing ---- */

/* Which object or collection a request is about. Strings are borrowed for the call.
 * Paths: core group "/api/v1/...", others "/apis/GROUP/VERSION/...". */
typedef struct ns_kube_ref {
    const char *group;       /* NULL or "" for the core group */
    const char *version;     /* "v1" */
    const char *resource;    /* plural, lower case: "configmaps", "deployments" */
    const char *namespace;   /* NULL: cluster-scoped, or all namespaces for list/watch */
    const char *name;        /* NULL: the collection */
    const char *subresource; /* NULL, or "status", "scale", ... (needs a name) */
} ns_kube_ref;

/* Appends the request path for `ref` to `out` ("/apis/apps/v1/namespaces/a/deployments/b").
 * Every segment is percent-escaped. Returns 0, or -EINVAL (message in err) when version or
 * resource is missing, a subresource has no name, or a segment is empty, ".", "..", or
 * holds '/' or '%' (the API server refuses such names), or -ENOMEM. */
int ns_kube_path(const ns_kube_ref *ref, ns_buf *out, ns_err *err);

/* Appends `s` percent-escaped (all but A-Z a-z 0-9 - . _ ~), for a path segment or a
 * query value. */
void ns_kube_escape(ns_buf *out, const char *s);

/* Appends "?key=value" (or "&key=value" when `out` already holds a '?'), value escaped.
 * A NULL value appends nothing. */
void ns_kube_query_add(ns_buf *out, const char *key, const char *value);

/* ---- results ---- */

#define NS_KUBE_REASON_MAX  64
#define NS_KUBE_MESSAGE_MAX 512

/* What the API server (or the network) said about a request. */
typedef struct ns_kube_status {
    long http;                         /* HTTP status of the last answer, 0 if none came */
    int code;                          /* Status.code from the body, else `http` */
    char reason[NS_KUBE_REASON_MAX];   /* Status.reason: "NotFound", "Conflict", ... or
                                        * derived from `http`; "" on success */
    char message[NS_KUBE_MESSAGE_MAX]; /* Status.message, or the transport error */
    long retry_after_s;                /* Retry-After / details.retryAfterSeconds, or -1 */
    int attempts;                      /* requests sent, retries included */
} ns_kube_status;

/* Fills `st` from an error answer: from `body` when it is a Status object (kind "Status"),
 * else reason derived from `http` as client-go does (404 "NotFound", 409 "Conflict",
 * 410 "Gone", 422 "Invalid", 429 "TooManyRequests", 500 "InternalError",
 * 503 "ServiceUnavailable", 504 "Timeout", ...) and a message quoting the start of a
 * non-JSON body. `body` may be NULL. Overwrites all of *st. Returns ns_kube_http_errno of
 * the result. */
int ns_kube_status_parse(long http, const char *body, size_t len, ns_kube_status *st);

/* Same from an already parsed Status object (a watch ERROR event). */
int ns_kube_status_from_json(long http, const cJSON *status, ns_kube_status *st);

/* The errno for an HTTP answer: 2xx 0; 400/422 -EINVAL; 401/403 -EACCES; 404 -ENOENT;
 * 405 -EOPNOTSUPP; 409 with reason AlreadyExists -EEXIST, other 409 (a write conflict)
 * -EBUSY; 410 -ESTALE; 413 -E2BIG; 415/406 -ENOTSUP; 429 -EAGAIN; 504 -ETIMEDOUT; other
 * 5xx -EIO; anything else -EPROTO. */
int ns_kube_http_errno(long http, const char *reason);

bool ns_kube_is_not_found(const ns_kube_status *st);      /* 404 */
bool ns_kube_is_already_exists(const ns_kube_status *st); /* 409 AlreadyExists */
bool ns_kube_is_conflict(const ns_kube_status *st);       /* 409, not AlreadyExists */
bool ns_kube_is_gone(const ns_kube_status *st);           /* 410 Gone/Expired */

/* ---- backoff ---- */

typedef struct ns_kube_backoff {
    long base_ms; /* first delay; 0: 100 ms */
    long max_ms;  /* cap of the exponential part; 0: 10 s */
} ns_kube_backoff;

/* The longest Retry-After that is honoured; longer ones are cut to this. */
#define NS_KUBE_RETRY_AFTER_MAX_MS 60000L

/* Delay before retry number `attempt` (0 for the first retry): d = min(max, base * 2^attempt)
 * with "equal jitter", uniformly in [d/2, d] as chosen by `rnd` (any 32-bit random value);
 * and at least `retry_after_s` seconds when that is > 0 (cut to
 * NS_KUBE_RETRY_AFTER_MAX_MS). Pure, for tests. */
long ns_kube_backoff_delay_ms(const ns_kube_backoff *b, unsigned attempt, long retry_after_s,
                              uint32_t rnd);

/* A random 32-bit value for jitter (not for secrets). Thread-safe. */
uint32_t ns_kube_jitter_random(void);

/* ---- the client ---- */

typedef struct ns_kube ns_kube;

typedef struct ns_kube_options {
    const char *user_agent;    /* NULL: "nutshell/VERSION" */
    const char *field_manager; /* default fieldManager for writes; NULL: "nutshell" */
    long timeout_ms;           /* one attempt of a non-streaming request; 0: 30 s */
    long connect_timeout_ms;   /* 0: 5 s */
    int max_retries;           /* retries after the first attempt; 0: 5; negative: none */
    ns_kube_backoff backoff;   /* zeros: 100 ms doubling up to 10 s */
    size_t max_response;       /* largest response body accepted; 0: 256 MiB */
    int pool_size;             /* idle connections kept; 0: 8 */
} ns_kube_options;

/* Makes a client for `cfg` (copied; the caller keeps and frees its own) with `opts` (NULL:
 * all defaults). Checks that PEM data looks like PEM but does not connect. Returns 0 and
 * *out (free with ns_kube_free), -EINVAL for an unusable config, or -ENOMEM. */
int ns_kube_new(const ns_kube_config *cfg, const ns_kube_options *opts, ns_kube **out, ns_err *err);

/* Closes pooled connections and frees the client. No call may be running, and every
 * stream and watch made from it must be freed first. Accepts NULL. */
void ns_kube_free(ns_kube *k);

/* The config the client uses (its own copy), e.g. for the default namespace. */
const ns_kube_config *ns_kube_get_config(const ns_kube *k);

/* One request with retries, the primitive under every typed call. `path_query` starts with
 * '/' and is already escaped (build it with ns_kube_path and ns_kube_query_add). `body` may
 * be NULL. `idempotent` allows retries after the request may have reached the server.
 * On a 2xx answer, returns 0 and, when `out` is not NULL, the parsed JSON body in *out
 * (NULL for an empty body; caller frees). On failure returns the negative errno (HTTP
 * errors mapped by ns_kube_http_errno; -ECONNREFUSED, -ETIMEDOUT, -ECONNRESET,
 * -EHOSTUNREACH, -EPROTO (TLS or malformed answer), -EFBIG (body over max_response),
 * -ENOMEM) with *out NULL. `st` (may be NULL) is filled either way. Retries sleep on the
 * calling thread (at most max_retries times, each delay bounded by the backoff and
 * NS_KUBE_RETRY_AFTER_MAX_MS); a 401 after the token file changed is retried once at once. */
int ns_kube_request(ns_kube *k, const char *method, const char *path_query,
                    const char *content_type, const char *body, size_t body_len, bool idempotent,
                    cJSON **out, ns_kube_status *st);

/* ---- typed calls: `out` may be NULL when the answer is not needed; `st` may be NULL ---- */

/* GET one object (ref->name set). -ENOENT when absent (ns_kube_is_not_found). */
int ns_kube_get(ns_kube *k, const ns_kube_ref *ref, cJSON **out, ns_kube_status *st);

typedef struct ns_kube_list_opts {
    const char *label_selector;   /* "app=x,tier!=db", NULL: all */
    const char *field_selector;   /* "metadata.name=x", NULL: all */
    long limit;                   /* page size; 0: one request for everything */
    const char *resource_version; /* NULL: most recent (consistent read); "0": any (cache) */
} ns_kube_list_opts;

/* Lists a collection (ref->name NULL; ref->namespace NULL lists all namespaces), following
 * `continue` tokens until every page is in: *out is one List object whose "items" hold all
 * pages and whose metadata.resourceVersion is the snapshot's (use it to start a watch).
 * If a continue token expires (410) mid-way, the list restarts once without a limit, as
 * client-go's pager does. `opts` may be NULL. */
int ns_kube_list(ns_kube *k, const ns_kube_ref *ref, const ns_kube_list_opts *opts, cJSON **out,
                 ns_kube_status *st);

typedef struct ns_kube_write_opts {
    const char *field_manager; /* NULL: the client's default */
    bool dry_run;              /* dryRun=All: validate and admit, persist nothing */
    bool force;                /* apply only: take ownership of conflicting fields */
} ns_kube_write_opts;

/* POST `obj` to the collection of `ref` (ref->name is ignored). -EEXIST when the name is
 * taken (ns_kube_is_already_exists). Not retried once the request may have been sent. */
int ns_kube_create(ns_kube *k, const ns_kube_ref *ref, const cJSON *obj,
                   const ns_kube_write_opts *opts, cJSON **out, ns_kube_status *st);

/* PUT `obj` (ref->name set; ref->subresource e.g. "status"). With a stale
 * metadata.resourceVersion: -EBUSY and ns_kube_is_conflict(st). */
int ns_kube_update(ns_kube *k, const ns_kube_ref *ref, const cJSON *obj,
                   const ns_kube_write_opts *opts, cJSON **out, ns_kube_status *st);

/* ns_kube_update on the "status" subresource of `ref`. */
int ns_kube_update_status(ns_kube *k, const ns_kube_ref *ref, const cJSON *obj,
                          const ns_kube_write_opts *opts, cJSON **out, ns_kube_status *st);

typedef enum ns_kube_patch_type {
    NS_KUBE_PATCH_MERGE,     /* application/merge-patch+json (RFC 7386) */
    NS_KUBE_PATCH_JSON,      /* application/json-patch+json (RFC 6902), an array */
    NS_KUBE_PATCH_STRATEGIC, /* application/strategic-merge-patch+json (built-in types) */
    NS_KUBE_PATCH_APPLY,     /* application/apply-patch+yaml (server-side apply) */
} ns_kube_patch_type;

/* The Content-Type of a patch type. */
const char *ns_kube_patch_content_type(ns_kube_patch_type type);

/* PATCH `ref` (name set; subresource allowed) with `patch`. A JSON patch is not retried
 * once it may have been applied (it need not be idempotent). */
int ns_kube_patch(ns_kube *k, const ns_kube_ref *ref, ns_kube_patch_type type, const cJSON *patch,
                  const ns_kube_write_opts *opts, cJSON **out, ns_kube_status *st);

/* ns_kube_patch on the "status" subresource of `ref`. */
int ns_kube_patch_status(ns_kube *k, const ns_kube_ref *ref, ns_kube_patch_type type,
                         const cJSON *patch, const ns_kube_write_opts *opts, cJSON **out,
                         ns_kube_status *st);

/* Server-side apply of the fully specified intent `obj` (apiVersion, kind, metadata.name
 * set) to `ref`, creating it if absent, with opts->field_manager (or the client's) and
 * opts->force. A field owned by another manager without force: -EBUSY, reason Conflict. */
int ns_kube_apply(ns_kube *k, const ns_kube_ref *ref, const cJSON *obj,
                  const ns_kube_write_opts *opts, cJSON **out, ns_kube_status *st);

typedef struct ns_kube_delete_opts {
    const char *propagation_policy;            /* "Foreground", "Background", "Orphan", NULL */
    bool grace_period_set;                     /* send grace_period_seconds */
    long grace_period_seconds;                 /* 0 = now */
    const char *precondition_uid;              /* delete only this incarnation, or NULL */
    const char *precondition_resource_version; /* delete only this version, or NULL */
    bool dry_run;
} ns_kube_delete_opts;

/* DELETE `ref` (name set). *out is the object (being deleted, with finalizers) or a
 * Status. -ENOENT when already gone. `opts` may be NULL. */
int ns_kube_delete(ns_kube *k, const ns_kube_ref *ref, const ns_kube_delete_opts *opts, cJSON **out,
                   ns_kube_status *st);

/* ---- streaming ---- */

/* One long-running GET at a time (a watch, logs with follow=true), cancellable from any
 * thread. It keeps its connection between calls, so reconnecting is cheap. */
typedef struct ns_kube_stream ns_kube_stream;

/* Called with each piece of a 2xx body as it arrives; pieces split anywhere. Returning
 * non-zero ends the transfer and ns_kube_stream_get returns that value. */
typedef int (*ns_kube_data_cb)(void *ud, const char *data, size_t len);

int ns_kube_stream_new(ns_kube *k, ns_kube_stream **out);
void ns_kube_stream_free(ns_kube_stream *s);

/* GETs `path_query` once (no retries) and streams a 2xx body to `cb`. `timeout_s` > 0
 * bounds the whole transfer. Returns 0 when the server ended the body, the callback's
 * value, -ECANCELED when stopped, or as ns_kube_request for errors (a non-2xx answer's
 * Status goes into `st`, never to `cb`). */
int ns_kube_stream_get(ns_kube_stream *s, const char *path_query, long timeout_s,
                       ns_kube_data_cb cb, void *ud, ns_kube_status *st);

/* Sleeps `ms` milliseconds unless stopped first. Returns 0, or -ECANCELED when stopped. */
int ns_kube_stream_sleep(ns_kube_stream *s, long ms);

/* Stops the running and every later ns_kube_stream_get/_sleep of `s` promptly (the poll
 * loop is woken up). Callable from any thread; `s` must stay alive until the call returns. */
void ns_kube_stream_stop(ns_kube_stream *s);
bool ns_kube_stream_stopped(const ns_kube_stream *s);

#endif

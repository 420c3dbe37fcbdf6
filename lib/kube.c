/* kube.c - the Kubernetes API client: paths, Status errors, retries, typed calls, streams. */
#include "kube.h"

#include "files.h"
#include "json.h"
#include "log.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef NUTSHELL_VERSION
#define NUTSHELL_VERSION "dev"
#endif

#define DEFAULT_TIMEOUT_MS         30000L
#define DEFAULT_CONNECT_TIMEOUT_MS 5000L
#define DEFAULT_MAX_RETRIES        5
#define DEFAULT_BACKOFF_BASE_MS    100L
#define DEFAULT_BACKOFF_MAX_MS     10000L
#define DEFAULT_MAX_RESPONSE       ((size_t)256 << 20)
#define DEFAULT_POOL_SIZE          8
/* A service-account token file is checked for changes at most this often. */
#define TOKEN_RECHECK_MS 1000
#define TOKEN_FILE_MAX   (64u << 10)
/* How long libcurl may reuse a parsed CA file before reading it again. */
#define CA_CACHE_S 60
/* Error bodies are Status objects, small; keep no more of them than this. */
#define ERROR_BODY_MAX (64u << 10)

/* ------------------------------------------------------------------ paths */

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

void ns_kube_escape(ns_buf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (is_unreserved(*p)) {
            ns_buf_putc(out, (char)*p);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            ns_buf_append(out, e, sizeof(e));
        }
    }
}

void ns_kube_query_add(ns_buf *out, const char *key, const char *value)
{
    if (!value)
        return;
    ns_buf_putc(out, memchr(out->data ? out->data : "", '?', out->len) ? '&' : '?');
    ns_kube_escape(out, key);
    ns_buf_putc(out, '=');
    ns_kube_escape(out, value);
}

/* The API server refuses these as names (client-go IsValidPathSegmentName). */
static int check_segment(const char *what, const char *s, ns_err *err)
{
    if (!s || !s[0])
        return ns_errorf(err, -EINVAL, "empty %s", what);
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return ns_errorf(err, -EINVAL, "%s may not be \"%s\"", what, s);
    if (strpbrk(s, "/%"))
        return ns_errorf(err, -EINVAL, "%s \"%s\" may not contain '/' or '%%'", what, s);
    return 0;
}

static void put_segment(ns_buf *out, const char *s)
{
    ns_buf_putc(out, '/');
    ns_kube_escape(out, s);
}

int ns_kube_path(const ns_kube_ref *ref, ns_buf *out, ns_err *err)
{
    bool core = !ref->group || !ref->group[0];
    int rc = 0;
    if (!core)
        rc = check_segment("API group", ref->group, err);
    if (rc == 0)
        rc = check_segment("API version", ref->version, err);
    if (rc == 0)
        rc = check_segment("resource", ref->resource, err);
    if (rc == 0 && ref->namespace)
        rc = check_segment("namespace", ref->namespace, err);
    if (rc == 0 && ref->name)
        rc = check_segment("name", ref->name, err);
    if (rc == 0 && ref->subresource) {
        if (!ref->name)
            return ns_errorf(err, -EINVAL, "subresource \"%s\" needs an object name",
                             ref->subresource);
        rc = check_segment("subresource", ref->subresource, err);
    }
    if (rc)
        return rc;
    if (core) {
        ns_buf_puts(out, "/api");
    } else {
        ns_buf_puts(out, "/apis");
        put_segment(out, ref->group);
    }
    put_segment(out, ref->version);
    if (ref->namespace) {
        ns_buf_puts(out, "/namespaces");
        put_segment(out, ref->namespace);
    }
    put_segment(out, ref->resource);
    if (ref->name)
        put_segment(out, ref->name);
    if (ref->subresource)
        put_segment(out, ref->subresource);
    return out->failed ? -ENOMEM : 0;
}

/* ------------------------------------------------------------------ status */

static const char *reason_for(long http)
{
    switch (http) {
    case 400:
        return "BadRequest";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "NotFound";
    case 405:
        return "MethodNotAllowed";
    case 406:
        return "NotAcceptable";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 413:
        return "RequestEntityTooLarge";
    case 415:
        return "UnsupportedMediaType";
    case 422:
        return "Invalid";
    case 429:
        return "TooManyRequests";
    case 500:
        return "InternalError";
    case 503:
        return "ServiceUnavailable";
    case 504:
        return "Timeout";
    default:
        return http >= 500 ? "InternalError" : "Unknown";
    }
}

int ns_kube_http_errno(long http, const char *reason)
{
    if (http >= 200 && http < 300)
        return 0;
    switch (http) {
    case 400:
    case 422:
        return -EINVAL;
    case 401:
    case 403:
        return -EACCES;
    case 404:
        return -ENOENT;
    case 405:
        return -EOPNOTSUPP;
    case 406:
    case 415:
        return -ENOTSUP;
    case 409:
        return reason && strcmp(reason, "AlreadyExists") == 0 ? -EEXIST : -EBUSY;
    case 410:
        return -ESTALE;
    case 413:
        return -E2BIG;
    case 429:
        return -EAGAIN;
    case 504:
        return -ETIMEDOUT;
    default:
        return http >= 500 && http < 600 ? -EIO : -EPROTO;
    }
}

static void copy_text(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

int ns_kube_status_from_json(long http, const cJSON *status, ns_kube_status *st)
{
    const cJSON *code = ns_json_get(status, "code");
    *st = (ns_kube_status){.retry_after_s = -1};
    st->http = http;
    st->code = cJSON_IsNumber(code) ? (int)code->valuedouble : (int)http;
    const char *reason = ns_json_str(status, "reason");
    long eff = http ? http : st->code;
    copy_text(st->reason, sizeof(st->reason), reason && reason[0] ? reason : reason_for(eff));
    const char *msg = ns_json_str(status, "message");
    copy_text(st->message, sizeof(st->message), msg ? msg : "");
    const cJSON *ra = ns_json_path(status, "details", "retryAfterSeconds", NULL);
    if (cJSON_IsNumber(ra) && ra->valuedouble > 0 && ra->valuedouble < 1e9)
        st->retry_after_s = (long)ra->valuedouble;
    return ns_kube_http_errno(eff, st->reason);
}

int ns_kube_status_parse(long http, const char *body, size_t len, ns_kube_status *st)
{
    cJSON *obj = NULL;
    if (body && len && ns_json_parse(body, len, &obj, NULL) == 0) {
        const char *kind = ns_json_str(obj, "kind");
        if (kind && strcmp(kind, "Status") == 0) {
            int rc = ns_kube_status_from_json(http, obj, st);
            cJSON_Delete(obj);
            return rc;
        }
    }
    cJSON_Delete(obj);
    *st = (ns_kube_status){.retry_after_s = -1};
    st->http = http;
    st->code = (int)http;
    copy_text(st->reason, sizeof(st->reason), reason_for(http));
    if (body && len) {
        /* Quote the start of what came back, printable bytes only. */
        size_t n = 0;
        char snippet[200];
        for (size_t i = 0; i < len && n + 1 < sizeof(snippet); i++)
            snippet[n++] = body[i] >= 0x20 && body[i] < 0x7f ? body[i] : ' ';
        snippet[n] = '\0';
        snprintf(st->message, sizeof(st->message), "HTTP %ld: %s", http, snippet);
    } else {
        snprintf(st->message, sizeof(st->message), "HTTP %ld", http);
    }
    return ns_kube_http_errno(http, st->reason);
}

bool ns_kube_is_not_found(const ns_kube_status *st)
{
    return st && st->http == 404;
}

bool ns_kube_is_already_exists(const ns_kube_status *st)
{
    return st && st->http == 409 && strcmp(st->reason, "AlreadyExists") == 0;
}

bool ns_kube_is_conflict(const ns_kube_status *st)
{
    return st && st->http == 409 && strcmp(st->reason, "AlreadyExists") != 0;
}

bool ns_kube_is_gone(const ns_kube_status *st)
{
    return st && (st->http == 410 || st->code == 410);
}

static void status_reset(ns_kube_status *st)
{
    *st = (ns_kube_status){.retry_after_s = -1};
}

/* ------------------------------------------------------------------ backoff */

long ns_kube_backoff_delay_ms(const ns_kube_backoff *b, unsigned attempt, long retry_after_s,
                              uint32_t rnd)
{
    long base = b && b->base_ms > 0 ? b->base_ms : DEFAULT_BACKOFF_BASE_MS;
    long max = b && b->max_ms > 0 ? b->max_ms : DEFAULT_BACKOFF_MAX_MS;
    if (base > max)
        base = max;
    long d = base;
    for (unsigned i = 0; i < attempt && d < max; i++)
        d = d > max / 2 ? max : d * 2;
    if (d > max)
        d = max;
    long half = d / 2;
    long delay = half + (long)(rnd % (uint32_t)(d - half + 1));
    if (retry_after_s > 0) {
        long ra = retry_after_s > NS_KUBE_RETRY_AFTER_MAX_MS / 1000 ? NS_KUBE_RETRY_AFTER_MAX_MS
                                                                    : retry_after_s * 1000;
        if (ra > delay)
            delay = ra;
    }
    return delay;
}

uint32_t ns_kube_jitter_random(void)
{
    /* splitmix64 per thread, seeded from the clock and the thread's own address. */
    static _Thread_local uint64_t state;
    if (state == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        state = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&state ^
                (uint64_t)getpid() << 16;
        state |= 1;
    }
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ------------------------------------------------------------------ client */

struct ns_kube {
    ns_kube_config cfg;
    char *base_url; /* scheme://host:port/prefix, host replaced by tls-server-name */
    struct curl_slist *connect_to;
    char *user_agent;
    char *field_manager;
    long timeout_ms;
    long connect_timeout_ms;
    int max_retries;
    ns_kube_backoff backoff;
    size_t max_response;
    int pool_size;

    CURLSH *share;
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];

    pthread_mutex_t pool_mu;
    CURL **pool;
    int pool_n;

    pthread_mutex_t token_mu;
    char *token;        /* current bearer token, or NULL */
    unsigned token_gen; /* bumped whenever the token changes */
    ns_file_stamp token_stamp;
    bool token_stamped;
    long token_checked_ms; /* when the file was last stat()ed */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock_cb(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
    ns_kube *k = ud;
    if (data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&k->share_mu[data]);
}

static void share_unlock_cb(CURL *h, curl_lock_data data, void *ud)
{
    ns_kube *k = ud;
    if (data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&k->share_mu[data]);
}

static bool looks_like_pem(const char *p, size_t len)
{
    return p && len > 10 && memmem(p, len, "-----BEGIN ", 11) != NULL;
}

/* Splits "scheme://host[:port][/prefix]" and builds the base URL and CONNECT_TO entry
 * needed to verify the server as `tls_name` while connecting to `host`. */
static int build_base(ns_kube *k, ns_err *err)
{
    const char *server = k->cfg.server;
    const char *tls_name = k->cfg.tls_server_name;
    if (!tls_name || !tls_name[0]) {
        k->base_url = strdup(server);
        return k->base_url ? 0 : -ENOMEM;
    }
    bool https = strncmp(server, "https://", 8) == 0;
    const char *host = server + (https ? 8 : 7);
    const char *host_end, *port_start = NULL;
    if (*host == '[') {
        host_end = strchr(host, ']');
        if (!host_end)
            return ns_errorf(err, -EINVAL, "server URL has an unterminated IPv6 address");
        host_end++;
    } else {
        host_end = host + strcspn(host, ":/");
    }
    const char *rest = host_end;
    if (*rest == ':') {
        port_start = rest + 1;
        rest = port_start + strcspn(port_start, "/");
    }
    char port[8];
    size_t plen = port_start ? (size_t)(rest - port_start) : 0;
    if (port_start && (plen == 0 || plen >= sizeof(port)))
        return ns_errorf(err, -EINVAL, "server URL has a bad port");
    if (port_start) {
        memcpy(port, port_start, plen);
        port[plen] = '\0';
    } else {
        snprintf(port, sizeof(port), "%s", https ? "443" : "80");
    }
    ns_buf b, c;
    ns_buf_init(&b);
    ns_buf_init(&c);
    ns_buf_printf(&b, "%s://%s:%s%s", https ? "https" : "http", tls_name, port, rest);
    ns_buf_printf(&c, "%s:%s:%.*s:%s", tls_name, port, (int)(host_end - host), host, port);
    int rc = -ENOMEM;
    if (!b.failed && !c.failed) {
        k->base_url = ns_buf_take(&b);
        k->connect_to = curl_slist_append(NULL, ns_buf_cstr(&c));
        if (k->base_url && k->connect_to)
            rc = 0;
    }
    ns_buf_free(&b);
    ns_buf_free(&c);
    return rc;
}

int ns_kube_new(const ns_kube_config *cfg, const ns_kube_options *opts, ns_kube **out, ns_err *err)
{
    static const ns_kube_options defaults = {0};
    if (!opts)
        opts = &defaults;
    *out = NULL;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return ns_errorf(err, -ENOMEM, "libcurl failed to initialise");
    if (!cfg->server || !cfg->server[0])
        return ns_errorf(err, -EINVAL, "the Kubernetes config has no server");
    if (strncmp(cfg->server, "https://", 8) != 0 && strncmp(cfg->server, "http://", 7) != 0)
        return ns_errorf(err, -EINVAL, "the Kubernetes server must be an http(s) URL");
    if (cfg->ca_pem && !looks_like_pem(cfg->ca_pem, cfg->ca_len))
        return ns_errorf(err, -EINVAL, "the certificate authority data is not PEM");
    if (cfg->cert_pem && !looks_like_pem(cfg->cert_pem, cfg->cert_len))
        return ns_errorf(err, -EINVAL, "the client certificate data is not PEM");
    if (cfg->key_pem && !looks_like_pem(cfg->key_pem, cfg->key_len))
        return ns_errorf(err, -EINVAL, "the client key data is not PEM");

    ns_kube *k = calloc(1, sizeof(*k));
    if (!k)
        return -ENOMEM;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&k->share_mu[i], NULL);
    pthread_mutex_init(&k->pool_mu, NULL);
    pthread_mutex_init(&k->token_mu, NULL);
    int rc = ns_kube_config_copy(cfg, &k->cfg);
    if (rc)
        goto fail;
    k->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    k->connect_timeout_ms =
        opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    k->max_retries = opts->max_retries > 0   ? opts->max_retries
                     : opts->max_retries < 0 ? 0
                                             : DEFAULT_MAX_RETRIES;
    k->backoff = opts->backoff;
    k->max_response = opts->max_response ? opts->max_response : DEFAULT_MAX_RESPONSE;
    k->pool_size = opts->pool_size > 0 ? opts->pool_size : DEFAULT_POOL_SIZE;
    k->user_agent = strdup(opts->user_agent ? opts->user_agent : "nutshell/" NUTSHELL_VERSION);
    k->field_manager = strdup(opts->field_manager ? opts->field_manager : "nutshell");
    k->pool = calloc((size_t)k->pool_size, sizeof(*k->pool));
    rc = -ENOMEM;
    if (!k->user_agent || !k->field_manager || !k->pool)
        goto fail;
    rc = build_base(k, err);
    if (rc)
        goto fail;
    /* Paths start with '/': "https://h:1/" must not give "https://h:1//api". */
    for (size_t n = strlen(k->base_url); n > 0 && k->base_url[n - 1] == '/'; n--)
        k->base_url[n - 1] = '\0';
    if (k->cfg.token && !k->cfg.token_file) {
        k->token = strdup(k->cfg.token);
        if (!k->token) {
            rc = -ENOMEM;
            goto fail;
        }
    }
    k->share = curl_share_init();
    if (!k->share) {
        rc = -ENOMEM;
        goto fail;
    }
    curl_share_setopt(k->share, CURLSHOPT_USERDATA, k);
    curl_share_setopt(k->share, CURLSHOPT_LOCKFUNC, share_lock_cb);
    curl_share_setopt(k->share, CURLSHOPT_UNLOCKFUNC, share_unlock_cb);
    curl_share_setopt(k->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(k->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    *out = k;
    return 0;
fail:
    ns_kube_free(k);
    if (rc == -ENOMEM)
        ns_errorf(err, rc, "out of memory creating the Kubernetes client");
    return rc;
}

void ns_kube_free(ns_kube *k)
{
    if (!k)
        return;
    for (int i = 0; i < k->pool_n; i++)
        curl_easy_cleanup(k->pool[i]);
    free(k->pool);
    if (k->share)
        curl_share_cleanup(k->share);
    curl_slist_free_all(k->connect_to);
    if (k->token) {
        explicit_bzero(k->token, strlen(k->token));
        free(k->token);
    }
    free(k->base_url);
    free(k->user_agent);
    free(k->field_manager);
    ns_kube_config_free(&k->cfg);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&k->share_mu[i]);
    pthread_mutex_destroy(&k->pool_mu);
    pthread_mutex_destroy(&k->token_mu);
    free(k);
}

const ns_kube_config *ns_kube_get_config(const ns_kube *k)
{
    return &k->cfg;
}

static CURL *pool_get(ns_kube *k)
{
    CURL *h = NULL;
    pthread_mutex_lock(&k->pool_mu);
    if (k->pool_n > 0)
        h = k->pool[--k->pool_n];
    pthread_mutex_unlock(&k->pool_mu);
    if (h)
        curl_easy_reset(h); /* keeps the open connection */
    else
        h = curl_easy_init();
    return h;
}

static void pool_put(ns_kube *k, CURL *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&k->pool_mu);
    if (k->pool_n < k->pool_size) {
        k->pool[k->pool_n++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&k->pool_mu);
    if (h)
        curl_easy_cleanup(h);
}

/* ------------------------------------------------------------------ tokens */

static void free_token(char *t)
{
    if (t) {
        explicit_bzero(t, strlen(t));
        free(t);
    }
}

/* Re-reads the token file if it changed (or `force`). Called with token_mu held. */
static int token_refresh_locked(ns_kube *k, bool force, ns_err *err)
{
    long now = now_ms();
    if (!force && k->token && now - k->token_checked_ms < TOKEN_RECHECK_MS)
        return 0;
    k->token_checked_ms = now;
    ns_file_stamp stamp;
    int rc = ns_file_stamp_get(k->cfg.token_file, &stamp);
    if (rc == 0 && k->token && k->token_stamped && ns_file_stamp_equal(&stamp, &k->token_stamp))
        return 0;
    char *text = NULL;
    size_t len = 0;
    ns_err rerr = {0};
    if (rc == 0)
        rc = ns_read_file(k->cfg.token_file, TOKEN_FILE_MAX, &text, &len, &rerr);
    if (rc) {
        if (k->token)
            return 0; /* keep the token we have; the file may be mid-rotation */
        return ns_errorf(err, rc, "cannot read token file %s: %s", k->cfg.token_file,
                         strerror(-rc));
    }
    size_t start = 0;
    while (start < len && (text[start] == ' ' || text[start] == '\n' || text[start] == '\r' ||
                           text[start] == '\t'))
        start++;
    while (len > start && (text[len - 1] == ' ' || text[len - 1] == '\n' || text[len - 1] == '\r' ||
                           text[len - 1] == '\t'))
        len--;
    if (len == start) {
        free_token(text);
        if (k->token)
            return 0;
        return ns_errorf(err, -EACCES, "token file %s is empty", k->cfg.token_file);
    }
    memmove(text, text + start, len - start);
    text[len - start] = '\0';
    if (!k->token || strcmp(k->token, text) != 0) {
        free_token(k->token);
        k->token = text;
        k->token_gen++;
    } else {
        free_token(text);
    }
    k->token_stamp = stamp;
    k->token_stamped = true;
    return 0;
}

/* Appends the Authorization header to *headers (if the client uses a token) and reports
 * the token generation. */
static int add_auth_header(ns_kube *k, struct curl_slist **headers, bool force, unsigned *gen,
                           ns_err *err)
{
    int rc = 0;
    pthread_mutex_lock(&k->token_mu);
    if (k->cfg.token_file)
        rc = token_refresh_locked(k, force, err);
    if (rc == 0 && k->token) {
        static const char prefix[] = "Authorization: Bearer ";
        size_t tl = strlen(k->token);
        char *h = malloc(sizeof(prefix) + tl);
        if (h) {
            memcpy(h, prefix, sizeof(prefix) - 1);
            memcpy(h + sizeof(prefix) - 1, k->token, tl + 1);
            struct curl_slist *n = curl_slist_append(*headers, h);
            explicit_bzero(h, sizeof(prefix) + tl);
            free(h);
            if (n)
                *headers = n;
            else
                rc = -ENOMEM;
        } else {
            rc = -ENOMEM;
        }
    }
    if (gen)
        *gen = k->token_gen;
    pthread_mutex_unlock(&k->token_mu);
    return rc;
}

/* Frees a header list, wiping it first: it may hold the bearer token. */
static void free_headers(struct curl_slist *headers)
{
    for (struct curl_slist *n = headers; n; n = n->next)
        explicit_bzero(n->data, strlen(n->data));
    curl_slist_free_all(headers);
}

/* Forces a token re-read; true if that changed the token. */
static bool token_changed_after_reload(ns_kube *k, unsigned gen)
{
    if (!k->cfg.token_file)
        return false;
    pthread_mutex_lock(&k->token_mu);
    token_refresh_locked(k, true, NULL);
    bool changed = k->token_gen != gen;
    pthread_mutex_unlock(&k->token_mu);
    return changed;
}

/* ------------------------------------------------------------------ transfers */

/* A response body being received. */
typedef struct sink {
    ns_buf buf;
    size_t max;
    bool too_big;
} sink;

static size_t sink_write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    sink *s = ud;
    size_t n = size * nmemb;
    if (s->buf.len + n > s->max) {
        s->too_big = true;
        return 0;
    }
    ns_buf_append(&s->buf, data, n);
    return s->buf.failed ? 0 : n;
}

/* Options every request shares: where, who, TLS. */
static void setup_handle(ns_kube *k, CURL *h, const char *url, struct curl_slist *headers,
                         char *errbuf)
{
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_SHARE, k->share);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_USERAGENT, k->user_agent);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, k->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 10L);
    if (k->connect_to)
        curl_easy_setopt(h, CURLOPT_CONNECT_TO, k->connect_to);
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    const ns_kube_config *c = &k->cfg;
    if (c->insecure_skip_tls_verify) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (c->ca_pem || c->ca_file) {
        /* Trust exactly the cluster's CA, not the system store. */
        curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
        if (c->ca_pem) {
            struct curl_blob blob = {
                .data = c->ca_pem, .len = c->ca_len, .flags = CURL_BLOB_NOCOPY};
            curl_easy_setopt(h, CURLOPT_CAINFO, NULL); /* not the built-in bundle too */
            curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
        } else {
            curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
            /* libcurl caches a parsed CA file for a day by default; a rotated cluster CA
             * (in-cluster ca.crt) must show up on the next new connection instead. */
            curl_easy_setopt(h, CURLOPT_CA_CACHE_TIMEOUT, (long)CA_CACHE_S);
        }
    }
    if (c->cert_pem) {
        struct curl_blob blob = {
            .data = c->cert_pem, .len = c->cert_len, .flags = CURL_BLOB_NOCOPY};
        curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &blob);
        curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
    } else if (c->cert_file) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert_file);
        curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (c->key_pem) {
        struct curl_blob blob = {.data = c->key_pem, .len = c->key_len, .flags = CURL_BLOB_NOCOPY};
        curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &blob);
        curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    } else if (c->key_file) {
        curl_easy_setopt(h, CURLOPT_SSLKEY, c->key_file);
        curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    }
}

static int curl_errno(CURLcode c, bool too_big)
{
    switch (c) {
    case CURLE_OK:
        return 0;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    /* A handshake that fails is most often a connection reset while the API server goes
     * down or comes up; a certificate we cannot trust is reported apart (below), so
     * treating this one as a broken connection lets watches and retries reconnect. */
    case CURLE_SSL_CONNECT_ERROR:
        return -ECONNRESET;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
        return -EPROTO;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_WRITE_ERROR:
        return too_big ? -EFBIG : -EIO;
    case CURLE_ABORTED_BY_CALLBACK:
        return -ECANCELED;
    default:
        return -EIO;
    }
}

/* True when the request cannot have reached the server's handlers. */
static bool never_sent(CURLcode c)
{
    return c == CURLE_COULDNT_CONNECT || c == CURLE_COULDNT_RESOLVE_HOST ||
           c == CURLE_SSL_CONNECT_ERROR;
}

/* Transport failures worth another attempt when the request is idempotent. */
static bool transient(CURLcode c)
{
    return never_sent(c) || c == CURLE_OPERATION_TIMEDOUT || c == CURLE_SEND_ERROR ||
           c == CURLE_RECV_ERROR || c == CURLE_GOT_NOTHING || c == CURLE_PARTIAL_FILE;
}

static void transport_status(ns_kube_status *st, const char *method, const char *path, CURLcode c,
                             const char *errbuf, bool too_big, size_t max)
{
    st->http = 0;
    st->code = 0;
    copy_text(st->reason, sizeof(st->reason), "");
    if (too_big)
        snprintf(st->message, sizeof(st->message), "%s %s: response larger than %zu bytes", method,
                 path, max);
    else
        snprintf(st->message, sizeof(st->message), "%s %s: %s", method, path,
                 errbuf[0] ? errbuf : curl_easy_strerror(c));
}

int ns_kube_request(ns_kube *k, const char *method, const char *path_query,
                    const char *content_type, const char *body, size_t body_len, bool idempotent,
                    cJSON **out, ns_kube_status *st_out)
{
    ns_kube_status local;
    ns_kube_status *st = st_out ? st_out : &local;
    status_reset(st);
    if (out)
        *out = NULL;

    ns_buf url;
    ns_buf_init(&url);
    ns_buf_puts(&url, k->base_url);
    ns_buf_puts(&url, path_query);
    if (url.failed) {
        ns_buf_free(&url);
        return -ENOMEM;
    }
    sink body_in = {.max = k->max_response};
    ns_buf_init(&body_in.buf);
    bool token_retry_done = false;
    int rc = 0;
    for (int attempt = 0;; attempt++) {
        char errbuf[CURL_ERROR_SIZE] = "";
        struct curl_slist *headers = NULL, *n;
        ns_err aerr = {0};
        unsigned gen = 0;
        ns_buf_reset(&body_in.buf);
        body_in.too_big = false;
        status_reset(st);
        st->attempts = attempt + 1;

        n = curl_slist_append(headers, "Accept: application/json");
        headers = n ? n : headers;
        n = n ? curl_slist_append(headers, "Expect:") : NULL;
        if (n && content_type) {
            char ct[128];
            snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
            n = curl_slist_append(headers, ct);
        }
        if (!n) {
            free_headers(headers);
            rc = -ENOMEM;
            break;
        }
        rc = add_auth_header(k, &headers, false, &gen, &aerr);
        CURL *h = rc ? NULL : pool_get(k);
        if (rc || !h) {
            free_headers(headers);
            rc = rc ? rc : -ENOMEM;
            copy_text(st->message, sizeof(st->message), aerr.msg[0] ? aerr.msg : strerror(-rc));
            break;
        }
        setup_handle(k, h, ns_buf_cstr(&url), headers, errbuf);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, k->timeout_ms);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write_cb);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &body_in);
        if (strcmp(method, "GET") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        if (body) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        }
        CURLcode cc = curl_easy_perform(h);
        long http = 0;
        curl_off_t retry_after = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
        curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &retry_after);
        /* Drop the pointers into this frame before the handle goes back to the pool. */
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
        pool_put(k, h);
        free_headers(headers);

        bool retry;
        if (cc != CURLE_OK) {
            rc = curl_errno(cc, body_in.too_big);
            transport_status(st, method, path_query, cc, errbuf, body_in.too_big, k->max_response);
            retry = idempotent ? transient(cc) : never_sent(cc);
        } else if (http >= 200 && http < 300) {
            st->http = http;
            st->code = (int)http;
            rc = 0;
            if (out && body_in.buf.len) {
                ns_err perr = {0};
                rc = ns_json_parse(body_in.buf.data, body_in.buf.len, out, &perr);
                if (rc) {
                    rc = -EPROTO;
                    snprintf(st->message, sizeof(st->message),
                             "%s %s: the API server answered with malformed JSON (%.200s)", method,
                             path_query, perr.msg);
                }
            }
            break;
        } else {
            rc = ns_kube_status_parse(http, body_in.buf.data, body_in.buf.len, st);
            st->attempts = attempt + 1;
            if (retry_after > 0) /* the header wins over details.retryAfterSeconds */
                st->retry_after_s = (long)retry_after;
            if (http == 401 && !token_retry_done && token_changed_after_reload(k, gen)) {
                /* The token was rotated under us: try once more with the new one. */
                token_retry_done = true;
                attempt--;
                continue;
            }
            retry = http == 429 || (idempotent && http >= 500 && http != 501 && http < 600);
        }
        if (!retry || attempt >= k->max_retries)
            break;
        long delay = ns_kube_backoff_delay_ms(&k->backoff, (unsigned)attempt, st->retry_after_s,
                                              ns_kube_jitter_random());
        char dbuf[24], abuf[16];
        snprintf(dbuf, sizeof(dbuf), "%ld", delay);
        snprintf(abuf, sizeof(abuf), "%d", attempt + 1);
        ns_log(NS_LOG_WARN, "kubernetes request failed, retrying", "method", method, "path",
               path_query, "error", st->message, "attempt", abuf, "delay_ms", dbuf, NULL);
        sleep_ms(delay);
    }
    ns_buf_free(&body_in.buf);
    ns_buf_free(&url);
    if (rc && out) {
        cJSON_Delete(*out);
        *out = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------------ typed calls */

static int fail_status(ns_kube_status *st, int rc, const char *msg)
{
    if (st) {
        status_reset(st);
        copy_text(st->message, sizeof(st->message), msg);
    }
    return rc;
}

/* Builds the path of `ref` into `b`; on error fills st. */
static int build_path(const ns_kube_ref *ref, ns_buf *b, ns_kube_status *st)
{
    ns_err err = {0};
    int rc = ns_kube_path(ref, b, &err);
    if (rc)
        return fail_status(st, rc, err.msg[0] ? err.msg : "out of memory");
    return 0;
}

static void add_write_query(ns_kube *k, ns_buf *path, const ns_kube_write_opts *opts, bool apply)
{
    const char *fm = opts && opts->field_manager ? opts->field_manager : k->field_manager;
    ns_kube_query_add(path, "fieldManager", fm);
    if (opts && opts->dry_run)
        ns_kube_query_add(path, "dryRun", "All");
    if (apply && opts && opts->force)
        ns_kube_query_add(path, "force", "true");
}

/* Sends `obj` serialised as JSON. */
static int send_json(ns_kube *k, const char *method, ns_buf *path, const char *content_type,
                     const cJSON *obj, bool idempotent, cJSON **out, ns_kube_status *st)
{
    if (path->failed)
        return fail_status(st, -ENOMEM, "out of memory");
    if (!obj)
        return fail_status(st, -EINVAL, "no object to send");
    char *body = ns_json_print(obj);
    if (!body)
        return fail_status(st, -ENOMEM, "out of memory serialising the request");
    int rc = ns_kube_request(k, method, ns_buf_cstr(path), content_type, body, strlen(body),
                             idempotent, out, st);
    cJSON_free(body);
    return rc;
}

int ns_kube_get(ns_kube *k, const ns_kube_ref *ref, cJSON **out, ns_kube_status *st)
{
    if (out)
        *out = NULL;
    if (!ref->name)
        return fail_status(st, -EINVAL, "get needs an object name");
    ns_buf path;
    ns_buf_init(&path);
    int rc = build_path(ref, &path, st);
    if (rc == 0)
        rc = ns_kube_request(k, "GET", ns_buf_cstr(&path), NULL, NULL, 0, true, out, st);
    ns_buf_free(&path);
    return rc;
}

/* Moves every item of page.items to the end of `items`. */
static void move_items(cJSON *items, cJSON *page)
{
    cJSON *from = ns_json_get(page, "items");
    if (!cJSON_IsArray(from))
        return;
    while (from->child) {
        cJSON *it = cJSON_DetachItemViaPointer(from, from->child);
        cJSON_AddItemToArray(items, it);
    }
}

int ns_kube_list(ns_kube *k, const ns_kube_ref *ref, const ns_kube_list_opts *opts, cJSON **out,
                 ns_kube_status *st)
{
    static const ns_kube_list_opts none = {0};
    if (!opts)
        opts = &none;
    *out = NULL;
    if (ref->name || ref->subresource)
        return fail_status(st, -EINVAL, "list takes a collection, not a name");
    ns_buf base, path;
    ns_buf_init(&base);
    ns_buf_init(&path);
    int rc = build_path(ref, &base, st);
    long limit = opts->limit > 0 ? opts->limit : 0;
    char *cont = NULL;
    bool restarted = false;
    cJSON *result = NULL, *items = NULL;
    while (rc == 0) {
        char lim[24];
        ns_buf_reset(&path);
        ns_buf_puts(&path, ns_buf_cstr(&base));
        ns_kube_query_add(&path, "labelSelector", opts->label_selector);
        ns_kube_query_add(&path, "fieldSelector", opts->field_selector);
        if (limit > 0) {
            snprintf(lim, sizeof(lim), "%ld", limit);
            ns_kube_query_add(&path, "limit", lim);
        }
        if (cont)
            ns_kube_query_add(&path, "continue", cont);
        else
            ns_kube_query_add(&path, "resourceVersion", opts->resource_version);
        if (path.failed) {
            rc = fail_status(st, -ENOMEM, "out of memory");
            break;
        }
        cJSON *page = NULL;
        rc = ns_kube_request(k, "GET", ns_buf_cstr(&path), NULL, NULL, 0, true, &page, st);
        if (rc == -ESTALE && cont && !restarted) {
            /* The continue token expired: list everything in one go instead. */
            restarted = true;
            limit = 0;
            free(cont);
            cont = NULL;
            cJSON_Delete(result);
            result = items = NULL;
            rc = 0;
            continue;
        }
        if (rc)
            break;
        if (!cJSON_IsObject(page)) {
            cJSON_Delete(page);
            rc = fail_status(st, -EPROTO, "the API server answered a list with no object");
            break;
        }
        const char *next = ns_json_path_str(page, "metadata", "continue", NULL);
        char *next_copy = next && next[0] ? strdup(next) : NULL;
        if (next && next[0] && !next_copy) {
            cJSON_Delete(page);
            rc = fail_status(st, -ENOMEM, "out of memory");
            break;
        }
        if (!result) {
            result = page;
            items = ns_json_get(result, "items");
            if (!cJSON_IsArray(items)) {
                cJSON_DeleteItemFromObjectCaseSensitive(result, "items");
                items = cJSON_AddArrayToObject(result, "items");
            }
        } else {
            move_items(items, page);
            cJSON_Delete(page);
        }
        if (!items) {
            free(next_copy);
            rc = fail_status(st, -ENOMEM, "out of memory");
            break;
        }
        if (next_copy && cont && strcmp(next_copy, cont) == 0) {
            free(next_copy);
            rc = fail_status(st, -EPROTO, "the API server repeated a continue token");
            break;
        }
        free(cont);
        cont = next_copy;
        if (!cont)
            break;
    }
    free(cont);
    ns_buf_free(&base);
    ns_buf_free(&path);
    if (rc) {
        cJSON_Delete(result);
        return rc;
    }
    cJSON *meta = ns_json_get(result, "metadata");
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "continue");
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "remainingItemCount");
    *out = result;
    return 0;
}

int ns_kube_create(ns_kube *k, const ns_kube_ref *ref, const cJSON *obj,
                   const ns_kube_write_opts *opts, cJSON **out, ns_kube_status *st)
{
    if (out)
        *out = NULL;
    ns_kube_ref coll = *ref;
    coll.name = NULL;
    coll.subresource = NULL;
    ns_buf path;
    ns_buf_init(&path);
    int rc = build_path(&coll, &path, st);
    if (rc == 0) {
        add_write_query(k, &path, opts, false);
        rc = send_json(k, "POST", &path, "application/json", obj, false, out, st);
    }
    ns_buf_free(&path);
    return rc;
}

int ns_kube_update(ns_kube *k, const ns_kube_ref *ref, const cJSON *obj,
                   const ns_kube_write_opts *opts, cJSON **out, ns_kube_status *st)
{
    if (out)
        *out = NULL;
    if (!ref->name)
        return fail_status(st, -EINVAL, "update needs an object name");
    ns_buf path;
    ns_buf_init(&path);
    int rc = build_path(ref, &path, st);
    if (rc == 0) {
        add_write_query(k, &path, opts, false);
        rc = send_json(k, "PUT", &path, "application/json", obj, true, out, st);
    }
    ns_buf_free(&path);
    return rc;
}

int ns_kube_update_status(ns_kube *k, const ns_kube_ref *ref, const cJSON *obj,
                          const ns_kube_write_opts *opts, cJSON **out, ns_kube_status *st)
{
    ns_kube_ref r = *ref;
    r.subresource = "status";
    return ns_kube_update(k, &r, obj, opts, out, st);
}

const char *ns_kube_patch_content_type(ns_kube_patch_type type)
{
    switch (type) {
    case NS_KUBE_PATCH_MERGE:
        return "application/merge-patch+json";
    case NS_KUBE_PATCH_JSON:
        return "application/json-patch+json";
    case NS_KUBE_PATCH_STRATEGIC:
        return "application/strategic-merge-patch+json";
    case NS_KUBE_PATCH_APPLY:
        return "application/apply-patch+yaml";
    }
    return NULL;
}

int ns_kube_patch(ns_kube *k, const ns_kube_ref *ref, ns_kube_patch_type type, const cJSON *patch,
                  const ns_kube_write_opts *opts, cJSON **out, ns_kube_status *st)
{
    if (out)
        *out = NULL;
    const char *ct = ns_kube_patch_content_type(type);
    if (!ct)
        return fail_status(st, -EINVAL, "unknown patch type");
    if (!ref->name)
        return fail_status(st, -EINVAL, "patch needs an object name");
    if (type == NS_KUBE_PATCH_JSON && !cJSON_IsArray(patch))
        return fail_status(st, -EINVAL, "a JSON patch must be an array of operations");
    if (type != NS_KUBE_PATCH_JSON && !cJSON_IsObject(patch))
        return fail_status(st, -EINVAL, "a merge patch or apply configuration must be an object");
    ns_buf path;
    ns_buf_init(&path);
    int rc = build_path(ref, &path, st);
    if (rc == 0) {
        add_write_query(k, &path, opts, type == NS_KUBE_PATCH_APPLY);
        rc = send_json(k, "PATCH", &path, ct, patch, type != NS_KUBE_PATCH_JSON, out, st);
    }
    ns_buf_free(&path);
    return rc;
}

int ns_kube_patch_status(ns_kube *k, const ns_kube_ref *ref, ns_kube_patch_type type,
                         const cJSON *patch, const ns_kube_write_opts *opts, cJSON **out,
                         ns_kube_status *st)
{
    ns_kube_ref r = *ref;
    r.subresource = "status";
    return ns_kube_patch(k, &r, type, patch, opts, out, st);
}

int ns_kube_apply(ns_kube *k, const ns_kube_ref *ref, const cJSON *obj,
                  const ns_kube_write_opts *opts, cJSON **out, ns_kube_status *st)
{
    return ns_kube_patch(k, ref, NS_KUBE_PATCH_APPLY, obj, opts, out, st);
}

int ns_kube_delete(ns_kube *k, const ns_kube_ref *ref, const ns_kube_delete_opts *opts, cJSON **out,
                   ns_kube_status *st)
{
    if (out)
        *out = NULL;
    if (!ref->name)
        return fail_status(st, -EINVAL, "delete needs an object name");
    ns_buf path;
    ns_buf_init(&path);
    int rc = build_path(ref, &path, st);
    if (rc) {
        ns_buf_free(&path);
        return rc;
    }
    cJSON *body = cJSON_CreateObject();
    bool ok = body && cJSON_AddStringToObject(body, "kind", "DeleteOptions") &&
              cJSON_AddStringToObject(body, "apiVersion", "v1");
    if (ok && opts && opts->propagation_policy)
        ok = cJSON_AddStringToObject(body, "propagationPolicy", opts->propagation_policy);
    if (ok && opts && opts->grace_period_set)
        ok =
            cJSON_AddNumberToObject(body, "gracePeriodSeconds", (double)opts->grace_period_seconds);
    if (ok && opts && (opts->precondition_uid || opts->precondition_resource_version)) {
        cJSON *pre = cJSON_AddObjectToObject(body, "preconditions");
        ok = pre != NULL;
        if (ok && opts->precondition_uid)
            ok = cJSON_AddStringToObject(pre, "uid", opts->precondition_uid);
        if (ok && opts->precondition_resource_version)
            ok = cJSON_AddStringToObject(pre, "resourceVersion",
                                         opts->precondition_resource_version);
    }
    if (ok && opts && opts->dry_run) {
        cJSON *dr = cJSON_AddArrayToObject(body, "dryRun");
        ok = dr && cJSON_AddItemToArray(dr, cJSON_CreateString("All"));
    }
    rc = ok ? send_json(k, "DELETE", &path, "application/json", body, true, out, st)
            : fail_status(st, -ENOMEM, "out of memory");
    cJSON_Delete(body);
    ns_buf_free(&path);
    return rc;
}

/* ------------------------------------------------------------------ streams */

struct ns_kube_stream {
    ns_kube *k;
    CURLM *multi;
    CURL *easy;
    atomic_bool stop;
    /* the running transfer */
    ns_kube_data_cb cb;
    void *ud;
    int cb_rc;
    sink err_body; /* a non-2xx answer's body */
};

int ns_kube_stream_new(ns_kube *k, ns_kube_stream **out)
{
    ns_kube_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->k = k;
    atomic_init(&s->stop, false);
    s->multi = curl_multi_init();
    s->easy = curl_easy_init();
    ns_buf_init(&s->err_body.buf);
    s->err_body.max = ERROR_BODY_MAX;
    if (!s->multi || !s->easy) {
        ns_kube_stream_free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

void ns_kube_stream_free(ns_kube_stream *s)
{
    if (!s)
        return;
    if (s->easy)
        curl_easy_cleanup(s->easy);
    if (s->multi)
        curl_multi_cleanup(s->multi);
    ns_buf_free(&s->err_body.buf);
    free(s);
}

void ns_kube_stream_stop(ns_kube_stream *s)
{
    atomic_store(&s->stop, true);
    curl_multi_wakeup(s->multi);
}

bool ns_kube_stream_stopped(const ns_kube_stream *s)
{
    return atomic_load(&((ns_kube_stream *)s)->stop);
}

static size_t stream_write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    ns_kube_stream *s = ud;
    size_t n = size * nmemb;
    if (atomic_load(&s->stop))
        return 0;
    long http = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &http);
    if (http < 200 || http >= 300)
        return sink_write_cb(data, 1, n, &s->err_body) == n ? n : 0;
    int rc = s->cb(s->ud, data, n);
    if (rc) {
        s->cb_rc = rc;
        return 0;
    }
    return n;
}

int ns_kube_stream_sleep(ns_kube_stream *s, long ms)
{
    long deadline = now_ms() + ms;
    for (;;) {
        if (atomic_load(&s->stop))
            return -ECANCELED;
        long left = deadline - now_ms();
        if (left <= 0)
            return 0;
        curl_multi_poll(s->multi, NULL, 0, (int)(left > 1000 ? 1000 : left), NULL);
    }
}

int ns_kube_stream_get(ns_kube_stream *s, const char *path_query, long timeout_s,
                       ns_kube_data_cb cb, void *ud, ns_kube_status *st_out)
{
    ns_kube_status local;
    ns_kube_status *st = st_out ? st_out : &local;
    ns_kube *k = s->k;
    status_reset(st);
    st->attempts = 1;
    if (atomic_load(&s->stop))
        return -ECANCELED;

    ns_buf url;
    ns_buf_init(&url);
    ns_buf_puts(&url, k->base_url);
    ns_buf_puts(&url, path_query);
    struct curl_slist *headers = curl_slist_append(NULL, "Accept: application/json");
    ns_err aerr = {0};
    int rc = url.failed || !headers ? -ENOMEM : add_auth_header(k, &headers, false, NULL, &aerr);
    if (rc) {
        ns_buf_free(&url);
        free_headers(headers);
        copy_text(st->message, sizeof(st->message), aerr.msg[0] ? aerr.msg : strerror(-rc));
        return rc;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    s->cb = cb;
    s->ud = ud;
    s->cb_rc = 0;
    ns_buf_reset(&s->err_body.buf);
    s->err_body.too_big = false;
    CURL *h = s->easy;
    curl_easy_reset(h);
    setup_handle(k, h, ns_buf_cstr(&url), headers, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, stream_write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    if (timeout_s > 0)
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_s * 1000);

    CURLcode cc = CURLE_OK;
    bool cancelled = false;
    CURLMcode mc = curl_multi_add_handle(s->multi, h);
    if (mc != CURLM_OK) {
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        int running = 0;
        mc = curl_multi_perform(s->multi, &running);
        if (mc != CURLM_OK)
            break;
        if (!running)
            break;
        if (atomic_load(&s->stop)) {
            cancelled = true;
            break;
        }
        mc = curl_multi_poll(s->multi, NULL, 0, 1000, NULL);
        if (mc != CURLM_OK)
            break;
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(s->multi, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == h)
            cc = msg->data.result;
    curl_multi_remove_handle(s->multi, h);
    if (atomic_load(&s->stop))
        cancelled = true;

    long http = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
    if (cancelled) {
        rc = -ECANCELED;
        snprintf(st->message, sizeof(st->message), "GET %s: stopped", path_query);
    } else if (s->cb_rc) {
        rc = s->cb_rc;
        st->http = http;
        st->code = (int)http;
    } else if (mc != CURLM_OK) {
        rc = -EIO;
        snprintf(st->message, sizeof(st->message), "GET %s: %s", path_query,
                 curl_multi_strerror(mc));
    } else if (cc != CURLE_OK && (http < 300 || s->err_body.too_big)) {
        rc = curl_errno(cc, s->err_body.too_big);
        transport_status(st, "GET", path_query, cc, errbuf, s->err_body.too_big, ERROR_BODY_MAX);
        st->http = http;
    } else if (http >= 200 && http < 300) {
        st->http = http;
        st->code = (int)http;
        rc = 0;
    } else {
        curl_off_t retry_after = 0;
        curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &retry_after);
        rc = ns_kube_status_parse(http, s->err_body.buf.data, s->err_body.buf.len, st);
        st->attempts = 1;
        if (retry_after > 0)
            st->retry_after_s = (long)retry_after;
        if (http == 401)
            token_changed_after_reload(k, 0); /* pick up a rotated token next time */
    }
out:
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    free_headers(headers);
    ns_buf_free(&url);
    return rc;
}

/* https.c - libmicrohttpd glue: whole-body requests, TLS 1.2+ with hot certificate reload. */
#include "https.h"
#include "strconv.h"

#include "log.h"
#include "metrics.h"
#include "buf.h"
#include "files.h"

#include <arpa/inet.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Only TLS 1.3 and 1.2: the webhook's clients are Kubernetes API servers. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/* A retired certificate generation is kept this long, since GnuTLS holds on to the
 * pointers our callback returned for the life of the session that received them. */
#define TLS_RETIRE_GRACE_S 600

/* How long ns_http_stop waits for in-flight requests. */
#define DRAIN_MAX_MS 5000

/* PEM files bigger than this are not certificates we want to parse. */
#define TLS_FILE_MAX (1 << 20)

/* ---- certificate generations ---- */

typedef struct tls_gen {
    gnutls_pcert_st pcerts[8];
    unsigned npcerts;
    gnutls_privkey_t key;
    time_t not_after;
    time_t retired_at; /* 0 while current */
    struct tls_gen *older;
} tls_gen;

/* GnuTLS's retrieve callback has no user pointer, so the current generation lives here. */
static pthread_rwlock_t tls_lock = PTHREAD_RWLOCK_INITIALIZER;
static tls_gen *tls_current;
static atomic_bool tls_in_use;

static void tls_gen_free(tls_gen *g)
{
    if (!g)
        return;
    for (unsigned i = 0; i < g->npcerts; i++)
        gnutls_pcert_deinit(&g->pcerts[i]);
    gnutls_privkey_deinit(g->key);
    free(g);
}

/* Loads and checks a certificate chain and key with GnuTLS (the library that serves
 * them, so the injector needs no second TLS library): both parse, the key matches the
 * leaf, the leaf has not expired. */
static int tls_gen_load(const char *cert_file, const char *key_file, tls_gen **out, ns_err *err)
{
    char *cert_pem = NULL, *key_pem = NULL;
    size_t cert_len = 0, key_len = 0;
    gnutls_certificate_credentials_t check = NULL;
    gnutls_x509_crt_t leaf = NULL;
    tls_gen *g = NULL;
    int rc = ns_read_file(cert_file, TLS_FILE_MAX, &cert_pem, &cert_len, err);
    if (!rc)
        rc = ns_read_file(key_file, TLS_FILE_MAX, &key_pem, &key_len, err);
    if (rc)
        goto out;

    gnutls_datum_t cert = {.data = (unsigned char *)cert_pem, .size = (unsigned)cert_len};
    gnutls_datum_t key = {.data = (unsigned char *)key_pem, .size = (unsigned)key_len};
    rc = -ENOMEM;
    g = calloc(1, sizeof(*g));
    if (!g)
        goto out;
    g->npcerts = sizeof(g->pcerts) / sizeof(g->pcerts[0]);
    int r =
        gnutls_pcert_list_import_x509_raw(g->pcerts, &g->npcerts, &cert, GNUTLS_X509_FMT_PEM, 0);
    if (r < 0) {
        g->npcerts = 0;
        rc = ns_errorf(err, -EINVAL, "%s: %s", cert_file, gnutls_strerror(r));
        goto out;
    }
    if ((r = gnutls_privkey_init(&g->key)) < 0 ||
        (r = gnutls_privkey_import_x509_raw(g->key, &key, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
        rc = ns_errorf(err, -EINVAL, "%s: %s", key_file, gnutls_strerror(r));
        goto out;
    }
    /* The credentials call is GnuTLS's own cert/key consistency check. */
    if ((r = gnutls_certificate_allocate_credentials(&check)) < 0 ||
        (r = gnutls_certificate_set_x509_key_mem2(check, &cert, &key, GNUTLS_X509_FMT_PEM, NULL,
                                                  0)) < 0) {
        rc = ns_errorf(err, -EINVAL, "%s does not go with %s: %s", key_file, cert_file,
                       gnutls_strerror(r));
        goto out;
    }
    if (gnutls_x509_crt_init(&leaf) < 0 ||
        gnutls_x509_crt_import(leaf, &g->pcerts[0].cert, GNUTLS_X509_FMT_DER) < 0) {
        rc = ns_errorf(err, -EINVAL, "%s: cannot read the leaf certificate", cert_file);
        goto out;
    }
    g->not_after = gnutls_x509_crt_get_expiration_time(leaf);
    if (g->not_after <= time(NULL)) {
        rc = ns_errorf(err, -EINVAL, "%s: certificate expired", cert_file);
        goto out;
    }
    *out = g;
    g = NULL;
    rc = 0;
out:
    if (key_pem)
        gnutls_memset(key_pem, 0, key_len);
    free(cert_pem);
    free(key_pem);
    gnutls_x509_crt_deinit(leaf);
    if (check)
        gnutls_certificate_free_credentials(check);
    tls_gen_free(g);
    return rc;
}

static int cert_cb(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                   const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                   gnutls_pcert_st **pcert, unsigned int *pcert_length, gnutls_privkey_t *privkey)
{
    pthread_rwlock_rdlock(&tls_lock);
    tls_gen *g = tls_current;
    if (g) {
        *pcert = g->pcerts;
        *pcert_length = g->npcerts;
        *privkey = g->key;
    }
    pthread_rwlock_unlock(&tls_lock);
    return g ? 0 : -1;
}

/* Makes `g` current, retires the old one and frees generations past their grace time. */
static void tls_install(tls_gen *g)
{
    time_t now = time(NULL);
    pthread_rwlock_wrlock(&tls_lock);
    if (tls_current)
        tls_current->retired_at = now;
    g->older = tls_current;
    tls_current = g;
    for (tls_gen **pp = &g->older; *pp;) {
        tls_gen *o = *pp;
        if (now - o->retired_at > TLS_RETIRE_GRACE_S) {
            *pp = o->older;
            tls_gen_free(o);
        } else {
            pp = &o->older;
        }
    }
    pthread_rwlock_unlock(&tls_lock);
}

static void tls_uninstall_all(void)
{
    pthread_rwlock_wrlock(&tls_lock);
    tls_gen *g = tls_current;
    tls_current = NULL;
    pthread_rwlock_unlock(&tls_lock);
    while (g) {
        tls_gen *o = g->older;
        tls_gen_free(g);
        g = o;
    }
}

/* ---- replies ---- */

void ns_http_reply_text(ns_http_response *resp, int status, const char *msg)
{
    resp->status = status;
    resp->content_type = "text/plain; charset=utf-8";
    resp->body_len = strlen(msg);
    resp->body = malloc(resp->body_len + 1);
    if (resp->body)
        memcpy(resp->body, msg, resp->body_len + 1);
    else
        resp->body_len = 0;
}

void ns_http_reply_metrics(ns_http_response *resp, struct ns_metrics *reg)
{
    ns_buf b;
    ns_buf_init(&b);
    ns_metrics_render(reg, &b);
    resp->status = b.failed ? 500 : 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp->body_len = b.len;
    resp->body = ns_buf_take(&b);
    if (!resp->body)
        resp->body_len = 0;
}

/* ---- server ---- */

struct ns_http_server {
    ns_http_config cfg;
    struct MHD_Daemon *daemon;
    bool tls;
    ns_file_stamp cert_stamp, key_stamp;
    atomic_llong not_after;
    pthread_mutex_t reload_lock;
    pthread_t reloader;
    bool reloader_running;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    bool stopping;
    atomic_int in_flight; /* requests between their first byte and their reply */
};

typedef struct request_state {
    char *body;
    size_t len, cap;
    bool too_large;
} request_state;

static enum MHD_Result queue(struct MHD_Connection *c, int status, const char *ctype, char *body,
                             size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body ? body : (char *)"", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    if (ctype)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static char *static_body(const char *s, size_t *len)
{
    *len = strlen(s);
    char *b = malloc(*len + 1);
    if (b)
        memcpy(b, s, *len + 1);
    return b;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    ns_http_server *s = cls;
    request_state *st = *con_cls;

    if (!st) {
        st = calloc(1, sizeof(*st));
        if (!st)
            return MHD_NO;
        *con_cls = st;
        atomic_fetch_add(&s->in_flight, 1);
        /* Refuse a declared oversize body before reading any of it. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->cfg.max_body)
            st->too_large = true;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (st->too_large || st->len + n > s->cfg.max_body) {
            st->too_large = true; /* keep draining, answer once the body is over */
            return MHD_YES;
        }
        if (st->len + n + 1 > st->cap) {
            size_t cap = st->cap ? st->cap : 4096;
            while (cap < st->len + n + 1)
                cap *= 2;
            char *p = realloc(st->body, cap);
            if (!p)
                return MHD_NO;
            st->body = p;
            st->cap = cap;
        }
        memcpy(st->body + st->len, upload_data, n);
        st->len += n;
        st->body[st->len] = '\0';
        return MHD_YES;
    }

    size_t len;
    if (st->too_large) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request body larger than %zu bytes\n", s->cfg.max_body);
        char *b = static_body(msg, &len);
        return queue(conn, 413, "text/plain", b, len);
    }
    ns_http_request req = {
        .method = method,
        .path = url,
        .content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type"),
        .body = st->body ? st->body : "",
        .body_len = st->len,
    };
    ns_http_response resp = {0};
    s->cfg.handler(s->cfg.ctx, &req, &resp);
    if (resp.status == 0)
        resp.status = 500;
    return queue(conn, resp.status, resp.content_type, resp.body, resp.body_len);
}

static void completed_cb(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    ns_http_server *s = cls;
    request_state *st = *con_cls;
    if (st) {
        free(st->body);
        free(st);
        *con_cls = NULL;
        atomic_fetch_sub(&s->in_flight, 1);
    }
}

/* libmicrohttpd hands us printf-style messages; they go out as debug log lines. */
static void mhd_log_cb(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void mhd_log_cb(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    ns_log(NS_LOG_DEBUG, "http server", "detail", msg, NULL);
}

/* Loads the pair from disk and installs it if it differs from what is served. */
static int reload_locked(ns_http_server *s, bool force, ns_err *err)
{
    ns_file_stamp cs, ks;
    int rc = ns_file_stamp_get(s->cfg.cert_file, &cs);
    if (rc == 0)
        rc = ns_file_stamp_get(s->cfg.key_file, &ks);
    if (rc)
        return ns_errorf(err, rc, "cannot stat TLS files: %s", strerror(-rc));
    if (!force && ns_file_stamp_equal(&cs, &s->cert_stamp) &&
        ns_file_stamp_equal(&ks, &s->key_stamp))
        return 0;

    tls_gen *g = NULL;
    rc = tls_gen_load(s->cfg.cert_file, s->cfg.key_file, &g, err);
    if (rc)
        return rc;
    tls_install(g);
    s->cert_stamp = cs;
    s->key_stamp = ks;
    atomic_store(&s->not_after, (long long)g->not_after);
    return 1;
}

int ns_http_reload_tls(ns_http_server *s, ns_err *err)
{
    if (!s->tls)
        return 0;
    pthread_mutex_lock(&s->reload_lock);
    int rc = reload_locked(s, false, err);
    pthread_mutex_unlock(&s->reload_lock);
    return rc;
}

static void *reloader_main(void *arg)
{
    ns_http_server *s = arg;
    pthread_mutex_lock(&s->stop_lock);
    while (!s->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += s->cfg.reload_ms / 1000;
        ts.tv_nsec += (long)(s->cfg.reload_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->stop_cond, &s->stop_lock, &ts);
        if (s->stopping)
            break;
        pthread_mutex_unlock(&s->stop_lock);
        ns_err err = {0};
        int rc = ns_http_reload_tls(s, &err);
        if (rc == 1)
            ns_log(NS_LOG_INFO, "reloaded TLS certificate", "cert", s->cfg.cert_file, NULL);
        else if (rc < 0)
            ns_log(NS_LOG_WARN, "kept serving the previous TLS certificate", "reason", err.msg,
                   NULL);
        pthread_mutex_lock(&s->stop_lock);
    }
    pthread_mutex_unlock(&s->stop_lock);
    return NULL;
}

int ns_http_start(const ns_http_config *cfg, ns_http_server **out, ns_err *err)
{
    if (!cfg->handler || !cfg->host)
        return ns_errorf(err, -EINVAL, "http server needs a host and a handler");
    if (!cfg->cert_file != !cfg->key_file)
        return ns_errorf(err, -EINVAL, "TLS needs both a certificate and a key file");

    ns_http_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->cfg = *cfg;
    if (!s->cfg.reload_ms)
        s->cfg.reload_ms = 1000;
    if (!s->cfg.max_body)
        s->cfg.max_body = 1 << 20;
    if (!s->cfg.threads)
        s->cfg.threads = 1;
    if (!s->cfg.idle_timeout_s)
        s->cfg.idle_timeout_s = 30;
    if (!s->cfg.max_connections)
        s->cfg.max_connections = 1024;
    s->tls = cfg->cert_file != NULL;
    pthread_mutex_init(&s->reload_lock, NULL);
    pthread_mutex_init(&s->stop_lock, NULL);
    pthread_cond_init(&s->stop_cond, NULL);

    int rc;
    struct sockaddr_storage ss;
    bool v6;
    if (ns_parse_sockaddr(cfg->host, cfg->port, &ss, &v6) != 0) {
        rc = ns_errorf(err, -EINVAL, "not an IP address: %s", cfg->host);
        goto fail;
    }
    if (s->tls) {
        if (atomic_exchange(&tls_in_use, true)) {
            rc = ns_errorf(err, -EBUSY, "a TLS server is already running in this process");
            goto fail;
        }
        rc = reload_locked(s, true, err);
        if (rc < 0) {
            atomic_store(&tls_in_use, false);
            goto fail;
        }
    }

    /* ITC lets ns_http_stop quiesce the daemon (stop accepting) before it drains. */
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    if (v6)
        flags |= MHD_USE_IPv6;
    if (s->tls)
        flags |= MHD_USE_TLS;
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_SOCK_ADDR, 0, &ss},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed_cb, s},
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log_cb, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.idle_timeout_s, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, s->cfg.max_connections, NULL},
        {s->cfg.threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, s->cfg.threads, NULL},
        {MHD_OPTION_END, 0, NULL},
        {MHD_OPTION_END, 0, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    if (s->tls) {
        /* Place the TLS options over the first END so the list stays terminated. */
        size_t i = s->cfg.threads > 1 ? 6 : 5;
        opts[i] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)TLS_PRIORITIES};
        opts[i + 1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)cert_cb};
    }
    s->daemon = MHD_start_daemon(flags, cfg->port, NULL, NULL, access_cb, s, MHD_OPTION_ARRAY, opts,
                                 MHD_OPTION_END);
    if (!s->daemon) {
        rc = ns_errorf(err, -EADDRINUSE, "cannot listen on %s:%u (in use, or not permitted)",
                       cfg->host, cfg->port);
        if (s->tls) {
            tls_uninstall_all();
            atomic_store(&tls_in_use, false);
        }
        goto fail;
    }
    if (s->tls) {
        if (pthread_create(&s->reloader, NULL, reloader_main, s) == 0)
            s->reloader_running = true;
    }
    *out = s;
    return 0;
fail:
    pthread_mutex_destroy(&s->reload_lock);
    pthread_mutex_destroy(&s->stop_lock);
    pthread_cond_destroy(&s->stop_cond);
    free(s);
    return rc;
}

uint16_t ns_http_port(const ns_http_server *s)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return i ? i->port : 0;
}

time_t ns_http_cert_not_after(ns_http_server *s)
{
    return (time_t)atomic_load(&s->not_after);
}

void ns_http_stop(ns_http_server *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->stop_lock);
    s->stopping = true;
    pthread_cond_broadcast(&s->stop_cond);
    pthread_mutex_unlock(&s->stop_lock);
    if (s->reloader_running)
        pthread_join(s->reloader, NULL);
    /* Graceful: stop accepting, let requests already being read or answered finish
     * (an API server would otherwise see a failed admission call), then close what is
     * left, idle keep-alive connections included, which clients retry on their own. */
    MHD_socket listener = MHD_quiesce_daemon(s->daemon);
    if (listener != MHD_INVALID_SOCKET)
        close(listener);
    for (int waited_ms = 0; atomic_load(&s->in_flight) > 0 && waited_ms < DRAIN_MAX_MS;
         waited_ms += 10)
        usleep(10 * 1000);
    MHD_stop_daemon(s->daemon);
    if (s->tls) {
        tls_uninstall_all();
        atomic_store(&tls_in_use, false);
    }
    pthread_mutex_destroy(&s->reload_lock);
    pthread_mutex_destroy(&s->stop_lock);
    pthread_cond_destroy(&s->stop_cond);
    free(s);
}

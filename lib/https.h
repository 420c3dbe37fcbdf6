/* https.h - an HTTP/1.1 server over libmicrohttpd, plain or TLS 1.2+, whose certificate
 * is reloaded from its files when they change, without dropping a request.
 *
 * The server reads a whole request body (up to a limit) and then calls one handler with
 * it; the handler fills a response. Bodies over the limit are answered 413 without
 * calling the handler. Handlers run on the server's worker threads.
 */
#ifndef NS_HTTPS_H
#define NS_HTTPS_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct ns_http_request {
    const char *method;
    const char *path;
    const char *content_type; /* NULL if absent */
    const char *body;         /* NUL-terminated for convenience; may hold NULs */
    size_t body_len;
} ns_http_request;

typedef struct ns_http_response {
    int status;               /* defaults to 500 if the handler leaves it 0 */
    const char *content_type; /* a static string, e.g. "application/json" */
    char *body;               /* malloc'd by the handler; the server frees it */
    size_t body_len;
} ns_http_response;

/* Fills `resp` with `status` and a copy of `msg` as text/plain. */
void ns_http_reply_text(ns_http_response *resp, int status, const char *msg);

/* Fills `resp` with the Prometheus text exposition of `reg` (500 if out of memory). */
struct ns_metrics;
void ns_http_reply_metrics(ns_http_response *resp, struct ns_metrics *reg);

typedef void (*ns_http_handler_cb)(void *ctx, const ns_http_request *req, ns_http_response *resp);

typedef struct ns_http_config {
    const char *host;      /* address to bind, e.g. "0.0.0.0", "127.0.0.1", "::" */
    uint16_t port;         /* 0 picks a free port (see ns_http_port) */
    const char *cert_file; /* both NULL: plain HTTP */
    const char *key_file;
    unsigned reload_ms;       /* how often to look at the TLS files; 0 means 1000 */
    size_t max_body;          /* larger bodies get 413; 0 means 1 MiB */
    unsigned threads;         /* worker threads; 0 means 1 */
    unsigned idle_timeout_s;  /* closes idle or stalled connections; 0 means 30 */
    unsigned max_connections; /* 0 means 1024 */
    ns_http_handler_cb handler;
    void *ctx;
} ns_http_config;

typedef struct ns_http_server ns_http_server;

/* Loads the TLS pair (if any), binds and starts serving. Only one TLS server may run
 * per process (GnuTLS's certificate callback carries no user pointer).
 * Returns 0, -EINVAL for bad config or TLS material, -EADDRINUSE, -EBUSY if a TLS server
 * is already running, -ENOMEM. */
int ns_http_start(const ns_http_config *cfg, ns_http_server **out, ns_err *err);

/* The bound port. */
uint16_t ns_http_port(const ns_http_server *s);

/* Looks at the TLS files now and reloads them if they changed. A bad new pair is
 * refused (the old one keeps serving) and reported. Returns 0 if nothing changed,
 * 1 if reloaded, or a negative errno. Also called periodically by the server. */
int ns_http_reload_tls(ns_http_server *s, ns_err *err);

/* Expiry of the certificate being served (0 for plain HTTP). */
time_t ns_http_cert_not_after(ns_http_server *s);

/* Stops accepting, finishes in-flight requests and frees everything. NULL is fine. */
void ns_http_stop(ns_http_server *s);

#endif

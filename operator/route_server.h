/* route_server.h - the route discovery server the proxies long-poll (port 15010).
 *
 *   GET /v1/routes                      the table now (200, JSON: proxy/routes.h)
 *   GET /v1/routes?version=V&wait=S     held until the table's version is not V, then
 *                                       200 with the table; 304 after S seconds
 *                                       (default 30, at most 300) if nothing changed
 *   503 until the first table is built (the caches are still filling)
 *
 * Versions are opaque (canary_routes.h: a hash of the content); only equality counts.
 * A held request costs no thread: the connection is suspended (libmicrohttpd) and
 * resumed when the table changes or its wait ends, so thousands of sidecars can wait on
 * one server thread. The table is rebuilt by a callback on the server's own thread,
 * after route_server_invalidate (coalescing bursts of informer events) and once a
 * second until the first build succeeds.
 */
#ifndef OP_ROUTE_SERVER_H
#define OP_ROUTE_SERVER_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

struct ns_metrics;

/* Builds the table: 0 with a malloc'd JSON text in *table and its version; -EAGAIN when
 * it cannot be built yet (caches not synced); -ENOMEM. */
typedef int (*route_build_fn)(void *ud, char **table, uint64_t *version);

typedef struct route_server_opts {
    const char *host; /* address to bind: "0.0.0.0", "::", "127.0.0.1" */
    uint16_t port;    /* 0: a free port (see route_server_port) */
    route_build_fn build;
    void *ud;
    struct ns_metrics *metrics; /* NULL: none */
    unsigned max_connections;   /* 0: 10000 */
} route_server_opts;

typedef struct route_server route_server;

/* Binds and starts serving (the first build happens on the server's thread). Returns 0,
 * -EADDRINUSE, -EINVAL, -ENOMEM, with a message in err. */
int route_server_start(const route_server_opts *o, route_server **out, ns_err *err);

uint16_t route_server_port(const route_server *rs);

/* Requests held now (long-polls waiting for a change). */
size_t route_server_held(route_server *rs);

/* Something the table is made from changed: rebuild soon. Any thread; cheap. */
void route_server_invalidate(route_server *rs);

/* Answers every held request (with what it would get now), stops and frees. NULL is
 * fine. */
void route_server_stop(route_server *rs);

#endif

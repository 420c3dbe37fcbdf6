/* routes.h - the route table: which backends serve a service host, and with what weight
 * (pure: JSON in, table out; selection state kept in the table, no clock, no I/O).
 *
 * The operator serves the table on port 15010 (long-poll with a version number,
 * discovery.h); the proxy parses each new body into a new table and swaps it in only if
 * it parsed: a bad body returns an error and leaves the table in use untouched. The JSON
 * form:
 *
 *   {"version": 7,
 *    "routes": [
 *      {"host": "reviews.default.svc.cluster.local",   apex service, full name
 *       "port": 9080,                                   optional: 0 or absent = any port
 *       "addresses": ["10.96.0.12"],                    optional: its ClusterIPs
 *       "backends": [
 *         {"host": "reviews-primary.default.svc.cluster.local", "port": 9080,
 *          "address": "10.96.0.13", "weight": 95},
 *         {"host": "reviews-canary.default.svc.cluster.local", "weight": 5}]}]}
 *
 *   version   integer 0 .. 2^53, opaque: chosen by the server (a hash of the content, so
 *             replicas agree and a restart does not go backwards). The proxy only
 *             compares versions for equality: it asks for a table whose version differs
 *             from the one it has, and skips the swap when a table's equals it.
 *   host      a DNS name (lower-cased when parsed; a trailing dot is dropped). Names of
 *             the form <svc>.<ns>.svc.<domain> also match the short forms a client may
 *             put in Host: <svc> (from a pod in <ns>), <svc>.<ns>, <svc>.<ns>.svc.
 *   port      1..65535. A route with a port wins over one without for the same host.
 *   addresses IP literals (v4 or v6); a connection whose original destination is one
 *             of them (and the port, if set) takes this route even without a Host.
 *   backends  1 .. PX_ROUTE_MAX_BACKENDS entries; "host" required, "port" optional (the
 *             request's port when absent), "address" an optional IP literal to connect
 *             to without a DNS lookup, "weight" an integer 0 .. 1000000 (default 1),
 *             at least one weight > 0 per route.
 * Unknown keys are ignored (forward compatibility); wrong types, out-of-range values,
 * duplicate (host, port) routes and duplicate addresses are errors.
 *
 * Weighted selection is smooth weighted round-robin (the algorithm nginx uses): over
 * every run of sum(weights) consecutive picks from a route, backend i is picked exactly
 * weight(i) times, and picks of different backends interleave as evenly as possible
 * (weights 95/5: one canary pick about every 20 requests, never 5 in a row).
 *
 * Threads: parsing and lookup only read the table, but px_routes_pick updates the
 * route's selection state. Give each worker thread its own table (px_routes_dup), and
 * free a table only when no thread uses it.
 */
#ifndef PX_ROUTES_H
#define PX_ROUTES_H

#include "err.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PX_ROUTE_MAX_BACKENDS 64
#define PX_ROUTE_MAX_WEIGHT   1000000
/* Longest host name accepted (DNS: 253 characters). */
#define PX_ROUTE_HOST_MAX 253
/* Most routes and addresses in one table; a bigger table is refused. */
#define PX_ROUTES_MAX 10000

/* An IP address without a port; family 0 means "none". */
typedef struct px_ip {
    int family; /* 0, AF_INET or AF_INET6 */
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } a;
} px_ip;

/* Parses an IPv4 or IPv6 literal (no brackets, no port). Returns 0 or -EINVAL. */
int px_ip_parse(const char *s, size_t len, px_ip *out);
bool px_ip_eq(const px_ip *a, const px_ip *b);

typedef struct px_backend {
    char *host;      /* NUL-terminated, lower case */
    uint16_t port;   /* 0: use the request's port */
    px_ip addr;      /* family 0 when absent: resolve `host` */
    uint32_t weight; /* 0 .. PX_ROUTE_MAX_WEIGHT */
    int64_t current; /* smooth WRR state (internal) */
} px_backend;

typedef struct px_route {
    char *host;    /* full name, lower case, no trailing dot */
    uint16_t port; /* 0: any port */
    size_t nbackends;
    px_backend *backends;
    size_t naddrs;
    px_ip *addrs;
    uint64_t total; /* sum of weights (> 0) */
    /* Where the short forms of `host` end, 0 if host is not <svc>.<ns>.svc.<domain>:
     * host[0..svc_len) is <svc>, host[0..ns_end) is <svc>.<ns>, host[0..svc_end) is
     * <svc>.<ns>.svc. */
    uint16_t svc_len, ns_end, svc_end;
} px_route;

typedef struct px_routes {
    uint64_t version;
    size_t nroutes;
    px_route *routes;
} px_routes;

/* Parses a route table from `len` bytes of JSON. On success returns 0 and sets *out to a
 * new table (free with px_routes_free). On failure returns -EINVAL (or -ENOMEM), sets
 * *out to NULL and writes one sentence naming the bad field into `err` ("routes[2]
 * .backends[0].weight: must be an integer from 0 to 1000000"). Never touches any
 * existing table: swapping the new one in is the caller's move. */
int px_routes_parse(const char *json, size_t len, px_routes **out, ns_err *err);

/* A deep copy of `t` with its selection state (for another worker thread). NULL on
 * allocation failure. */
px_routes *px_routes_dup(const px_routes *t);

/* Frees `t`; NULL is allowed. */
void px_routes_free(px_routes *t);

/* Carries the selection state of routes that are unchanged (same host, port, backend
 * hosts, ports and weights, in the same order) from `old` into `next`, so that a table
 * update that does not touch a route does not restart its round-robin. Either may be
 * NULL. */
void px_routes_adopt_state(px_routes *next, const px_routes *old);

/* The route for a request whose Host header value is host[0..hostlen) (may carry
 * ":port", may end with a dot, any case) sent to destination port `port`; `ns` is the
 * namespace of the client pod (for single-label names like "reviews"), may be NULL.
 * An exact route for the port wins over an any-port route. Returns NULL if none
 * matches (forward to the original destination). */
px_route *px_routes_match(px_routes *t, const char *host, size_t hostlen, uint16_t port,
                          const char *ns);

/* The route whose `addresses` hold `dst` (the connection's original destination) and
 * whose port is `port` or any. NULL if none. */
px_route *px_routes_match_addr(px_routes *t, const px_ip *dst, uint16_t port);

/* Picks a backend of `r` by smooth weighted round-robin and returns its index, skipping
 * backends whose bit is set in `exclude` (bit i = backend i: ejected ones, or the one
 * that just failed when retrying). Returns -1 if every backend with a weight is
 * excluded. Updates the route's selection state. */
int px_routes_pick(px_route *r, uint64_t exclude);

#endif

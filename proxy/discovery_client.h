/* discovery_client.h - the thread that long-polls the operator's discovery server for
 * route tables (the protocol's pure parts are discovery.h) and hands each new table that
 * parses and resolves to the workers.
 */
#ifndef PX_DISCOVERY_CLIENT_H
#define PX_DISCOVERY_CLIENT_H

#include "err.h"
#include "routes.h"

#include <stdint.h>

/* Hands a table that parsed and resolved to the workers (px_workers_set_routes) and
 * records it; the callee copies what it keeps. Returns 0 or -ENOMEM. */
typedef int (*px_routes_apply_fn)(void *ctx, const px_routes *t);

typedef struct px_discovery_opts {
    const char *address;        /* --discovery-address: HOST:PORT, already validated */
    unsigned wait_s;            /* --discovery-wait */
    int64_t connect_timeout_ms; /* --connect-timeout */
    px_routes_apply_fn apply;   /* called on the discovery thread only */
    void *ctx;
} px_discovery_opts;

typedef struct px_discovery px_discovery;

/* Starts the discovery thread: it fetches the table, then long-polls for other versions
 * and calls `apply` with each new one that parses (a table that does not parse, or any
 * failure, leaves the table in use alone: logged when the kind of failure changes,
 * counted, retried after a backoff). Start it after px_workers_start: it is then the only
 * caller of px_workers_set_routes. Updates the discovery metrics (stats.h). Returns 0 or
 * -errno with a message. */
int px_discovery_start(const px_discovery_opts *o, px_discovery **out, ns_err *err);

/* Wakes the thread at once (whatever it waits on, except a DNS lookup in progress, which
 * runs to its own timeout), joins it and frees it. Call before px_workers_destroy. NULL
 * is fine. */
void px_discovery_stop(px_discovery *d);

#endif

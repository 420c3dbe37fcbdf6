/* admin.h - the proxy's admin server on port 15020: /healthz/ready, /metrics, /stats and
 * POST /quitquitquit. It runs on the main thread's own event loop, away from the data
 * path, with a few connections at most (the kubelet and a Prometheus scraper).
 *
 * Every answer closes its connection ("connection: close"): probes and scrapes do not
 * need keep-alive, and nothing has to be kept per idle client. /quitquitquit starts
 * the same drain as SIGTERM; it is accepted only from loopback peers (the pod's own
 * containers), since 15020 is reachable from the whole cluster for the probes.
 */
#ifndef PX_ADMIN_H
#define PX_ADMIN_H

#include "err.h"
#include "loop.h"

struct px_proxy;

typedef struct px_admin px_admin;

/* Starts listening on cfg.admin_address:cfg.admin_port in `loop`. `on_quit` is called
 * (on the loop's thread) for an accepted /quitquitquit. Returns 0 or -errno with a
 * message. */
int px_admin_start(struct px_proxy *px, px_loop *loop, void (*on_quit)(void *), void *ctx,
                   px_admin **out, ns_err *err);

/* Frees connections that ended during the last loop iteration. */
void px_admin_collect(px_admin *a);

/* Closes the listener and every connection. NULL is fine. */
void px_admin_stop(px_admin *a);

#endif

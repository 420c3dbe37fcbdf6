/* routing.h - the route table as the proxy gets and uses it: from a file (parse, then
 * resolve backend names once, off the data path; the operator's discovery server is
 * discovery_client.h), and turning a picked backend into an address.
 */
#ifndef PX_ROUTING_H
#define PX_ROUTING_H

#include "err.h"
#include "routes.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Resolves the backends of `t` that have no "address" (getaddrinfo: blocking, so never
 * on a worker thread). A backend that does not resolve stays without an address and is
 * never picked (logged). Checks `*stop` (NULL: never stop) before each name and returns
 * -ECANCELED once it is set; else 0. */
int px_routes_resolve(px_routes *t, const atomic_bool *stop);

/* Reads and parses the JSON table at `path`, then resolves it (px_routes_resolve; the
 * main thread calls this). Returns 0 and a new table in *out, or -errno with a message
 * (and *out NULL): the caller keeps its table. */
int px_routes_load(const char *path, px_routes **out, ns_err *err);

/* Picks a backend of `r` (weighted, never an unresolved one; ejected ones and `tried`
 * ones only when nothing else is left: px_outlier_pick) for a request or connection
 * whose original destination is `orig`: fills the address to connect to and a label
 * for metrics ("host:port"). Returns the backend's index, or -EHOSTUNREACH. */
int px_route_target(px_route *r, uint64_t ejected, uint64_t tried,
                    const struct sockaddr_storage *orig, struct sockaddr_storage *out, char *label,
                    size_t labellen);

/* Converts a routes.h address to a sockaddr with `port`. */
void px_ip_to_sockaddr(const px_ip *ip, uint16_t port, struct sockaddr_storage *out);
/* And back (port dropped). */
void px_sockaddr_to_ip(const struct sockaddr_storage *a, px_ip *out);

#endif

/* canary_routes.h - the proxies' route table, made from Canaries (pure: objects in,
 * JSON out; no clock, no I/O).
 *
 * Without the mesh, a Canary shifts traffic by endpoints (canary_render.h): only about
 * w% of requests reach the canary. With the mesh, each client's nutshell-proxy splits
 * the requests for the apex host itself, exactly: while a rollout gives the canary
 * traffic (phase Progressing or Promoting), the apex <svc>.<ns>.svc.<domain> on the
 * Service's port goes to <svc>-primary with weight 100 - w and to <svc>-canary with
 * weight w, where w is status.desiredWeight (the step: not the by-endpoints weight in
 * effect, which the mesh makes irrelevant). The status is the rollout's memory, written
 * by the leader; any operator replica that sees it serves the same table.
 *
 * Outside a rollout a Canary has no route: requests go where they were sent, the apex
 * Service, which then selects only the primary's pods.
 *
 * The table is in proxy/routes.h's JSON form. Its version is a hash of the routes, so
 * two replicas serving the same Canaries give the same version, and a restarted
 * operator does not make every proxy fetch an identical table again.
 */
#ifndef OP_CANARY_ROUTES_H
#define OP_CANARY_ROUTES_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* Looks up a Service of the Canary's namespace by name in the caller's cache; NULL when
 * it does not exist (yet). */
typedef const cJSON *(*canary_service_fn)(void *ud, const char *ns, const char *name);

/* Appends to `routes` (a JSON array) the route of `canary` if its rollout gives the
 * canary traffic now. Services missing from the cache leave their addresses out (the
 * proxy then resolves the names); a spec that does not parse gives no route (the
 * controller reports it on the Canary). Returns 1 if a route was added, 0 if not,
 * -ENOMEM. */
int canary_route_append(cJSON *routes, const cJSON *canary, const char *domain,
                        canary_service_fn service, void *ud);

/* The table for `routes` (consumed: the array is sorted by host and port, so that the
 * order of a cache walk does not change the version), as a JSON text (caller frees),
 * with its version in *version. NULL on ENOMEM. */
char *canary_routes_render(cJSON *routes, uint64_t *version);

#endif

/* canary_routes.c - see canary_routes.h. */
#include "canary_routes.h"

#include "canary.h"
#include "canary_render.h"
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Versions keep 48 bits of the hash: below routes.h's 2^53, and short enough that
 * cJSON prints them as plain integers (15 digits). */
#define VERSION_MASK ((1ULL << 48) - 1)

/* A ClusterIP worth routing to: an address, not "None" (headless) or empty. */
static bool routable_ip(const char *ip)
{
    return ip && ip[0] && strcmp(ip, "None") != 0;
}

/* The Service's first routable ClusterIP (the first family of a dual-stack one), or
 * NULL. */
static const char *first_cluster_ip(const cJSON *svc)
{
    const cJSON *ip;
    cJSON_ArrayForEach(ip, ns_json_path(svc, "spec", "clusterIPs", NULL))
    {
        if (cJSON_IsString(ip) && routable_ip(ip->valuestring))
            return ip->valuestring;
    }
    const char *one = ns_json_path_str(svc, "spec", "clusterIP", NULL);
    return routable_ip(one) ? one : NULL;
}

/* Adds the Service's ClusterIPs (both families of a dual-stack one) to `arr`. */
static void add_cluster_ips(ns_jb *b, cJSON *arr, const cJSON *svc)
{
    const cJSON *ip;
    size_t n = 0;
    cJSON_ArrayForEach(ip, ns_json_path(svc, "spec", "clusterIPs", NULL))
    {
        if (cJSON_IsString(ip) && routable_ip(ip->valuestring)) {
            ns_jb_add(b, arr, NULL, cJSON_CreateString(ip->valuestring));
            n++;
        }
    }
    const char *one = first_cluster_ip(svc);
    if (n == 0 && one)
        ns_jb_add(b, arr, NULL, cJSON_CreateString(one));
}

static void fqdn(char *buf, size_t size, const char *svc, const char *ns, const char *domain)
{
    snprintf(buf, size, "%s.%s.svc.%s", svc, ns, domain);
}

static void add_backend(ns_jb *b, cJSON *backends, const char *host, int32_t port, const cJSON *svc,
                        int32_t weight)
{
    cJSON *be = ns_jb_add(b, backends, NULL, cJSON_CreateObject());
    ns_jb_str(b, be, "host", host);
    ns_jb_num(b, be, "port", port);
    /* One address is enough to connect. */
    const char *ip = svc ? first_cluster_ip(svc) : NULL;
    if (ip)
        ns_jb_str(b, be, "address", ip);
    ns_jb_num(b, be, "weight", weight);
}

int canary_route_append(cJSON *routes, const cJSON *canary, const char *domain,
                        canary_service_fn service, void *ud)
{
    canary_spec spec;
    ns_err perr = {0};
    if (canary_spec_parse(canary, &spec, &perr) != 0 || spec.deleting)
        return 0;
    canary_status st;
    canary_status_parse(canary, &st);
    if (st.phase != CANARY_PHASE_PROGRESSING && st.phase != CANARY_PHASE_PROMOTING)
        return 0;
    int32_t w = st.desired_weight < 0 ? 0 : st.desired_weight > 100 ? 100 : st.desired_weight;

    canary_names names;
    canary_names_init(&spec, &names);
    char host[320], primary[320], canary_host[320];
    fqdn(host, sizeof(host), names.apex, spec.namespace, domain);
    fqdn(primary, sizeof(primary), names.svc_primary, spec.namespace, domain);
    fqdn(canary_host, sizeof(canary_host), names.svc_canary, spec.namespace, domain);

    ns_jb b = {0};
    cJSON *r = ns_jb_add(&b, routes, NULL, cJSON_CreateObject());
    ns_jb_str(&b, r, "host", host);
    ns_jb_num(&b, r, "port", spec.port);
    const cJSON *apex = service(ud, spec.namespace, names.apex);
    cJSON *addrs = ns_jb_arr(&b, r, "addresses");
    if (apex && addrs)
        add_cluster_ips(&b, addrs, apex);
    cJSON *backends = ns_jb_arr(&b, r, "backends");
    add_backend(&b, backends, primary, spec.port, service(ud, spec.namespace, names.svc_primary),
                100 - w);
    add_backend(&b, backends, canary_host, spec.port, service(ud, spec.namespace, names.svc_canary),
                w);
    return b.oom ? -ENOMEM : 1;
}

static int route_cmp(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    int c = strcmp(ns_json_str(x, "host") ? ns_json_str(x, "host") : "",
                   ns_json_str(y, "host") ? ns_json_str(y, "host") : "");
    if (c)
        return c;
    double px = cJSON_GetNumberValue(cJSON_GetObjectItem(x, "port"));
    double py = cJSON_GetNumberValue(cJSON_GetObjectItem(y, "port"));
    return (px > py) - (px < py);
}

char *canary_routes_render(cJSON *routes, uint64_t *version)
{
    size_t n = (size_t)cJSON_GetArraySize(routes);
    cJSON **v = calloc(n ? n : 1, sizeof(*v));
    cJSON *table = cJSON_CreateObject();
    char *body = NULL, *text = NULL;
    if (!v || !table)
        goto out;
    /* Detach, sort, re-attach: cJSON arrays are linked lists. */
    for (size_t i = 0; i < n; i++)
        v[i] = cJSON_DetachItemFromArray(routes, 0);
    qsort(v, n, sizeof(*v), route_cmp);
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(routes, v[i]);

    body = cJSON_PrintUnformatted(routes);
    if (!body)
        goto out;
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64 */
    for (const char *p = body; *p; p++) {
        h ^= (unsigned char)*p;
        h *= 0x100000001b3ULL;
    }
    h &= VERSION_MASK;
    ns_jb b = {0};
    ns_jb_num(&b, table, "version", (double)h);
    ns_jb_add(&b, table, "routes", cJSON_Duplicate(routes, true));
    if (!b.oom) {
        text = cJSON_PrintUnformatted(table);
        *version = h;
    }
out:
    free(v);
    free(body);
    cJSON_Delete(table);
    return text;
}

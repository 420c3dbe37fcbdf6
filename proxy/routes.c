/* routes.c - route table parsing, host matching and smooth weighted round-robin. */
#include "routes.h"

#include "json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int px_ip_parse(const char *s, size_t len, px_ip *out)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    if (len == 0 || len >= sizeof tmp || memchr(s, '\0', len))
        return -EINVAL;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    px_ip ip = {0};
    if (inet_pton(AF_INET, tmp, &ip.a.v4) == 1)
        ip.family = AF_INET;
    else if (inet_pton(AF_INET6, tmp, &ip.a.v6) == 1)
        ip.family = AF_INET6;
    else
        return -EINVAL;
    *out = ip;
    return 0;
}

bool px_ip_eq(const px_ip *a, const px_ip *b)
{
    if (a->family != b->family)
        return false;
    if (a->family == AF_INET)
        return a->a.v4.s_addr == b->a.v4.s_addr;
    if (a->family == AF_INET6)
        return memcmp(&a->a.v6, &b->a.v6, sizeof a->a.v6) == 0;
    return true;
}

static void route_clear(px_route *r)
{
    free(r->host);
    for (size_t i = 0; i < r->nbackends; i++)
        free(r->backends[i].host);
    free(r->backends);
    free(r->addrs);
    memset(r, 0, sizeof *r);
}

void px_routes_free(px_routes *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nroutes; i++)
        route_clear(&t->routes[i]);
    free(t->routes);
    free(t);
}

/* A DNS name as routes and Host headers use it: labels of letters, digits, '-' and '_'
 * (some in-cluster names carry it), 1..63 bytes each, 253 in all, an optional trailing
 * dot. Writes the lower-case form without the dot into out (PX_ROUTE_HOST_MAX + 1
 * bytes) and returns its length, or -EINVAL. */
static int normalize_host(const char *s, size_t len, char *out)
{
    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > PX_ROUTE_HOST_MAX)
        return -EINVAL;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0)
                return -EINVAL;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            label++;
        } else if (c >= 'A' && c <= 'Z') {
            c = (unsigned char)(c | 0x20);
            label++;
        } else {
            return -EINVAL;
        }
        if (label > 63)
            return -EINVAL;
        out[i] = (char)c;
    }
    if (label == 0)
        return -EINVAL;
    out[len] = '\0';
    return (int)len;
}

/* Records where the short forms of a <svc>.<ns>.svc.<domain> name end. */
static void split_service(px_route *r)
{
    const char *h = r->host;
    const char *d1 = strchr(h, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d2 || strncmp(d2, ".svc.", 5) != 0 || d2[5] == '\0')
        return;
    r->svc_len = (uint16_t)(d1 - h);
    r->ns_end = (uint16_t)(d2 - h);
    r->svc_end = (uint16_t)(r->ns_end + 4);
}

/* An integer JSON number in [min, max], else false. */
static bool json_int(const cJSON *v, double min, double max, int64_t *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!(d >= min && d <= max))
        return false;
    int64_t i = (int64_t)d;
    if ((double)i != d)
        return false;
    *out = i;
    return true;
}

static int parse_backend(const cJSON *b, px_backend *out, const char *where, size_t bi, ns_err *err)
{
    char name[PX_ROUTE_HOST_MAX + 1];
    if (!cJSON_IsObject(b))
        return ns_errorf(err, -EINVAL, "%s.backends[%zu]: must be an object", where, bi);
    const char *host = ns_json_str(b, "host");
    if (!host)
        return ns_errorf(err, -EINVAL, "%s.backends[%zu].host: a string is required", where, bi);
    if (normalize_host(host, strlen(host), name) < 0)
        return ns_errorf(err, -EINVAL, "%s.backends[%zu].host: \"%.64s\" is not a DNS name", where,
                         bi, host);
    int64_t v = 0;
    const cJSON *port = ns_json_get(b, "port");
    if (port && !json_int(port, 0, 65535, &v))
        return ns_errorf(err, -EINVAL, "%s.backends[%zu].port: must be an integer from 0 to 65535",
                         where, bi);
    out->port = (uint16_t)(port ? v : 0);
    const cJSON *weight = ns_json_get(b, "weight");
    v = 1;
    if (weight && !json_int(weight, 0, PX_ROUTE_MAX_WEIGHT, &v))
        return ns_errorf(err, -EINVAL, "%s.backends[%zu].weight: must be an integer from 0 to %d",
                         where, bi, PX_ROUTE_MAX_WEIGHT);
    out->weight = (uint32_t)v;
    const cJSON *addr = ns_json_get(b, "address");
    if (addr) {
        if (!cJSON_IsString(addr) ||
            px_ip_parse(addr->valuestring, strlen(addr->valuestring), &out->addr) < 0)
            return ns_errorf(err, -EINVAL, "%s.backends[%zu].address: must be an IP address", where,
                             bi);
    }
    out->host = strdup(name);
    if (!out->host)
        return ns_errorf(err, -ENOMEM, "out of memory");
    return 0;
}

static int parse_route(const cJSON *r, px_route *out, size_t ri, ns_err *err)
{
    char where[32], name[PX_ROUTE_HOST_MAX + 1];
    snprintf(where, sizeof where, "routes[%zu]", ri);
    if (!cJSON_IsObject(r))
        return ns_errorf(err, -EINVAL, "%s: must be an object", where);
    const char *host = ns_json_str(r, "host");
    if (!host)
        return ns_errorf(err, -EINVAL, "%s.host: a string is required", where);
    if (normalize_host(host, strlen(host), name) < 0)
        return ns_errorf(err, -EINVAL, "%s.host: \"%.64s\" is not a DNS name", where, host);
    int64_t v = 0;
    const cJSON *port = ns_json_get(r, "port");
    if (port && !json_int(port, 0, 65535, &v))
        return ns_errorf(err, -EINVAL, "%s.port: must be an integer from 0 to 65535", where);
    out->port = (uint16_t)(port ? v : 0);
    out->host = strdup(name);
    if (!out->host)
        return ns_errorf(err, -ENOMEM, "out of memory");
    split_service(out);

    const cJSON *addrs = ns_json_get(r, "addresses");
    if (addrs) {
        if (!cJSON_IsArray(addrs))
            return ns_errorf(err, -EINVAL, "%s.addresses: must be an array", where);
        int n = cJSON_GetArraySize(addrs);
        if (n > PX_ROUTES_MAX)
            return ns_errorf(err, -EINVAL, "%s.addresses: more than %d", where, PX_ROUTES_MAX);
        if (n > 0) {
            out->addrs = calloc((size_t)n, sizeof *out->addrs);
            if (!out->addrs)
                return ns_errorf(err, -ENOMEM, "out of memory");
        }
        const cJSON *a;
        cJSON_ArrayForEach(a, addrs)
        {
            if (!cJSON_IsString(a) ||
                px_ip_parse(a->valuestring, strlen(a->valuestring), &out->addrs[out->naddrs]) < 0)
                return ns_errorf(err, -EINVAL, "%s.addresses[%zu]: must be an IP address", where,
                                 out->naddrs);
            out->naddrs++;
        }
    }

    const cJSON *backends = ns_json_get(r, "backends");
    int n = cJSON_IsArray(backends) ? cJSON_GetArraySize(backends) : -1;
    if (n < 1 || n > PX_ROUTE_MAX_BACKENDS)
        return ns_errorf(err, -EINVAL, "%s.backends: must be an array of 1 to %d backends", where,
                         PX_ROUTE_MAX_BACKENDS);
    out->backends = calloc((size_t)n, sizeof *out->backends);
    if (!out->backends)
        return ns_errorf(err, -ENOMEM, "out of memory");
    const cJSON *b;
    cJSON_ArrayForEach(b, backends)
    {
        int rc = parse_backend(b, &out->backends[out->nbackends], where, out->nbackends, err);
        if (rc < 0)
            return rc;
        out->total += out->backends[out->nbackends].weight;
        out->nbackends++;
    }
    if (out->total == 0)
        return ns_errorf(err, -EINVAL, "%s.backends: at least one weight must be above 0", where);
    return 0;
}

/* Duplicate detection by sorting: a table may hold thousands of routes. */
typedef struct key {
    const px_route *r;
    const px_ip *ip; /* NULL for (host, port) keys */
    size_t ri;
} key;

static int key_cmp(const void *a, const void *b)
{
    const key *x = a, *y = b;
    if (x->r->port != y->r->port)
        return x->r->port < y->r->port ? -1 : 1;
    if (!x->ip) {
        int c = strcmp(x->r->host, y->r->host);
        if (c)
            return c;
    } else {
        if (x->ip->family != y->ip->family)
            return x->ip->family < y->ip->family ? -1 : 1;
        int c = memcmp(&x->ip->a, &y->ip->a,
                       x->ip->family == AF_INET ? sizeof x->ip->a.v4 : sizeof x->ip->a.v6);
        if (c)
            return c;
    }
    return x->ri < y->ri ? -1 : (x->ri > y->ri);
}

static int check_duplicates(const px_routes *t, ns_err *err)
{
    size_t naddrs = 0;
    for (size_t i = 0; i < t->nroutes; i++)
        naddrs += t->routes[i].naddrs;
    size_t n = t->nroutes > naddrs ? t->nroutes : naddrs;
    if (n < 2)
        return 0;
    key *keys = calloc(n, sizeof *keys);
    if (!keys)
        return ns_errorf(err, -ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < t->nroutes; i++)
        keys[i] = (key){&t->routes[i], NULL, i};
    qsort(keys, t->nroutes, sizeof *keys, key_cmp);
    for (size_t i = 1; i < t->nroutes && !rc; i++)
        if (keys[i].r->port == keys[i - 1].r->port &&
            strcmp(keys[i].r->host, keys[i - 1].r->host) == 0)
            rc = ns_errorf(err, -EINVAL, "routes[%zu]: host %s port %u repeats routes[%zu]",
                           keys[i].ri, keys[i].r->host, keys[i].r->port, keys[i - 1].ri);
    size_t k = 0;
    for (size_t i = 0; i < t->nroutes; i++)
        for (size_t j = 0; j < t->routes[i].naddrs; j++)
            keys[k++] = (key){&t->routes[i], &t->routes[i].addrs[j], i};
    qsort(keys, naddrs, sizeof *keys, key_cmp);
    for (size_t i = 1; i < naddrs && !rc; i++)
        if (keys[i].r->port == keys[i - 1].r->port && px_ip_eq(keys[i].ip, keys[i - 1].ip))
            rc = ns_errorf(err, -EINVAL,
                           "routes[%zu].addresses: an address of port %u repeats one of "
                           "routes[%zu]",
                           keys[i].ri, keys[i].r->port, keys[i - 1].ri);
    free(keys);
    return rc;
}

int px_routes_parse(const char *json, size_t len, px_routes **out, ns_err *err)
{
    *out = NULL;
    cJSON *root = NULL;
    px_routes *t = NULL;
    int rc = ns_json_parse(json, len, &root, err);
    if (rc < 0)
        return rc;
    if (!cJSON_IsObject(root)) {
        rc = ns_errorf(err, -EINVAL, "route table: must be a JSON object");
        goto out;
    }
    t = calloc(1, sizeof *t);
    if (!t) {
        rc = ns_errorf(err, -ENOMEM, "out of memory");
        goto out;
    }
    int64_t version;
    if (!json_int(ns_json_get(root, "version"), 0, 9007199254740992.0, &version)) {
        rc = ns_errorf(err, -EINVAL, "version: an integer from 0 to 2^53 is required");
        goto out;
    }
    t->version = (uint64_t)version;
    const cJSON *routes = ns_json_get(root, "routes");
    if (!cJSON_IsArray(routes)) {
        rc = ns_errorf(err, -EINVAL, "routes: an array is required");
        goto out;
    }
    int n = cJSON_GetArraySize(routes);
    if (n > PX_ROUTES_MAX) {
        rc = ns_errorf(err, -EINVAL, "routes: more than %d routes", PX_ROUTES_MAX);
        goto out;
    }
    if (n > 0) {
        t->routes = calloc((size_t)n, sizeof *t->routes);
        if (!t->routes) {
            rc = ns_errorf(err, -ENOMEM, "out of memory");
            goto out;
        }
    }
    const cJSON *r;
    cJSON_ArrayForEach(r, routes)
    {
        /* Counted before parsing so that a half-parsed route is freed too. */
        px_route *dst = &t->routes[t->nroutes++];
        rc = parse_route(r, dst, t->nroutes - 1, err);
        if (rc < 0)
            goto out;
    }
    rc = check_duplicates(t, err);
out:
    cJSON_Delete(root);
    if (rc < 0) {
        px_routes_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

px_routes *px_routes_dup(const px_routes *t)
{
    px_routes *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->version = t->version;
    if (t->nroutes) {
        d->routes = calloc(t->nroutes, sizeof *d->routes);
        if (!d->routes)
            goto fail;
    }
    for (size_t i = 0; i < t->nroutes; i++) {
        const px_route *s = &t->routes[i];
        px_route *r = &d->routes[d->nroutes++];
        *r = *s;
        r->host = NULL;
        r->backends = NULL;
        r->addrs = NULL;
        r->nbackends = 0;
        r->naddrs = 0;
        r->host = strdup(s->host);
        r->backends = calloc(s->nbackends, sizeof *r->backends);
        if (!r->host || !r->backends)
            goto fail;
        for (size_t j = 0; j < s->nbackends; j++) {
            r->backends[j] = s->backends[j];
            r->backends[j].host = strdup(s->backends[j].host);
            if (!r->backends[j].host)
                goto fail;
            r->nbackends++;
        }
        if (s->naddrs) {
            r->addrs = malloc(s->naddrs * sizeof *r->addrs);
            if (!r->addrs)
                goto fail;
            memcpy(r->addrs, s->addrs, s->naddrs * sizeof *r->addrs);
            r->naddrs = s->naddrs;
        }
    }
    return d;
fail:
    px_routes_free(d);
    return NULL;
}

static bool same_route(const px_route *a, const px_route *b)
{
    if (a->port != b->port || a->nbackends != b->nbackends || strcmp(a->host, b->host) != 0)
        return false;
    for (size_t i = 0; i < a->nbackends; i++) {
        const px_backend *x = &a->backends[i], *y = &b->backends[i];
        if (x->weight != y->weight || x->port != y->port || strcmp(x->host, y->host) != 0)
            return false;
    }
    return true;
}

void px_routes_adopt_state(px_routes *next, const px_routes *old)
{
    if (!next || !old)
        return;
    for (size_t i = 0; i < next->nroutes; i++) {
        px_route *r = &next->routes[i];
        const px_route *o = NULL;
        /* The operator writes routes in a stable order: try the same index first. */
        if (i < old->nroutes && same_route(r, &old->routes[i]))
            o = &old->routes[i];
        for (size_t j = 0; !o && j < old->nroutes; j++)
            if (same_route(r, &old->routes[j]))
                o = &old->routes[j];
        if (o)
            for (size_t k = 0; k < r->nbackends; k++)
                r->backends[k].current = o->backends[k].current;
    }
}

static bool prefix_is(const char *host, size_t n, const char *name, size_t namelen)
{
    return n == namelen && memcmp(host, name, n) == 0;
}

/* Does `name` (lower case, no dot, no port) address route r from namespace ns? */
static bool host_matches(const px_route *r, const char *name, size_t n, const char *ns)
{
    const char *h = r->host;
    if (prefix_is(h, strlen(h), name, n))
        return true;
    if (!r->svc_len)
        return false;
    if (prefix_is(h, r->svc_end, name, n) || prefix_is(h, r->ns_end, name, n))
        return true;
    if (ns && prefix_is(h, r->svc_len, name, n)) {
        size_t nslen = (size_t)(r->ns_end - r->svc_len - 1);
        return strlen(ns) == nslen && memcmp(h + r->svc_len + 1, ns, nslen) == 0;
    }
    return false;
}

px_route *px_routes_match(px_routes *t, const char *host, size_t hostlen, uint16_t port,
                          const char *ns)
{
    if (!t || !host)
        return NULL;
    /* Drop ":port" (the connection's destination port decides) and an IPv6 literal's
     * brackets never match a DNS route anyway. */
    size_t n = hostlen;
    for (size_t i = hostlen; i > 0; i--) {
        if (host[i - 1] == ':') {
            n = i - 1;
            break;
        }
        if (host[i - 1] < '0' || host[i - 1] > '9')
            break;
    }
    char name[PX_ROUTE_HOST_MAX + 1];
    int len = normalize_host(host, n, name);
    if (len < 0)
        return NULL;
    px_route *any = NULL;
    for (size_t i = 0; i < t->nroutes; i++) {
        px_route *r = &t->routes[i];
        if (r->port != port && r->port != 0)
            continue;
        if (r->port == 0 && any)
            continue;
        if (!host_matches(r, name, (size_t)len, ns))
            continue;
        if (r->port == port)
            return r;
        any = r;
    }
    return any;
}

px_route *px_routes_match_addr(px_routes *t, const px_ip *dst, uint16_t port)
{
    if (!t || !dst)
        return NULL;
    px_route *any = NULL;
    for (size_t i = 0; i < t->nroutes; i++) {
        px_route *r = &t->routes[i];
        if (r->port != port && r->port != 0)
            continue;
        for (size_t j = 0; j < r->naddrs; j++) {
            if (!px_ip_eq(&r->addrs[j], dst))
                continue;
            if (r->port == port)
                return r;
            if (!any)
                any = r;
        }
    }
    return any;
}

/* Smooth weighted round-robin: every backend gains its weight, the richest is picked
 * and pays the total back. Over sum(weights) picks each backend gains weight*sum and
 * pays sum per pick, so the counts come out exactly equal to the weights. */
int px_routes_pick(px_route *r, uint64_t exclude)
{
    int best = -1;
    int64_t total = 0;
    for (size_t i = 0; i < r->nbackends; i++) {
        px_backend *b = &r->backends[i];
        if (!b->weight || (i < 64 && (exclude >> i) & 1))
            continue;
        b->current += b->weight;
        total += b->weight;
        if (best < 0 || b->current > r->backends[best].current)
            best = (int)i;
    }
    if (best >= 0)
        r->backends[best].current -= total;
    return best;
}

/* fuzz_routes.c - libFuzzer target for the proxy's route tables (proxy/routes.h).
 *
 * The input is a table, or two separated by a NUL byte: the one in use and the next one
 * the proxy swaps in (without a NUL the same text is parsed twice, as after a reload that
 * changed nothing). Each table that parses goes through what the proxy does with one:
 * a copy per worker (px_routes_dup), Host and address lookups, weighted picks, and the
 * hand-over of round-robin state to the next table. Lookups are checked against the
 * contract in routes.h, re-derived here from the table's strings, and picks against the
 * exactness of smooth weighted round-robin. Any disagreement aborts (a crash for
 * libFuzzer), as do out-of-bounds reads and leaks (ASan). */
#include "routes.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Routes looked up per table, and picks per input: lookups cost O(routes) each. */
#define CHECK_ROUTES 16
#define PICK_BUDGET  20000

static bool host_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

static bool same_ip(const px_ip *a, const px_ip *b)
{
    if (a->family != b->family)
        return false;
    if (a->family == AF_INET)
        return a->a.v4.s_addr == b->a.v4.s_addr;
    return a->family != AF_INET6 || memcmp(&a->a.v6, &b->a.v6, sizeof a->a.v6) == 0;
}

static void check_host(const char *h)
{
    size_t n = h ? strlen(h) : 0;
    if (n == 0 || n > PX_ROUTE_HOST_MAX || h[0] == '.' || h[n - 1] == '.' || strstr(h, ".."))
        abort();
    for (size_t i = 0; i < n; i++)
        if (!host_char_ok(h[i]))
            abort();
}

/* What routes.h promises of every table that parsed. */
static void check_table(const px_routes *t)
{
    if (t->nroutes > PX_ROUTES_MAX || (t->nroutes && !t->routes) || t->version > (1ull << 53))
        abort();
    for (size_t i = 0; i < t->nroutes; i++) {
        const px_route *r = &t->routes[i];
        check_host(r->host);
        if (r->nbackends < 1 || r->nbackends > PX_ROUTE_MAX_BACKENDS || r->naddrs > PX_ROUTES_MAX)
            abort();
        uint64_t total = 0;
        for (size_t j = 0; j < r->nbackends; j++) {
            const px_backend *b = &r->backends[j];
            check_host(b->host);
            if (b->weight > PX_ROUTE_MAX_WEIGHT || b->current != 0)
                abort();
            if (b->addr.family != 0 && b->addr.family != AF_INET && b->addr.family != AF_INET6)
                abort();
            total += b->weight;
        }
        if (total == 0 || total != r->total)
            abort();
        for (size_t j = 0; j < r->naddrs; j++)
            if (r->addrs[j].family != AF_INET && r->addrs[j].family != AF_INET6)
                abort();
        if (r->svc_len) {
            size_t n = strlen(r->host);
            if (r->host[r->svc_len] != '.' || r->ns_end <= r->svc_len + 1 ||
                r->svc_end != r->ns_end + 4 || r->svc_end >= n ||
                memcmp(r->host + r->ns_end, ".svc.", 5) != 0)
                abort();
        }
    }
}

static void same_table(const px_routes *a, const px_routes *b)
{
    if (a->version != b->version || a->nroutes != b->nroutes)
        abort();
    for (size_t i = 0; i < a->nroutes; i++) {
        const px_route *x = &a->routes[i], *y = &b->routes[i];
        if (x->host == y->host || strcmp(x->host, y->host) != 0 || x->port != y->port ||
            x->nbackends != y->nbackends || x->naddrs != y->naddrs || x->total != y->total ||
            x->svc_len != y->svc_len || x->ns_end != y->ns_end || x->svc_end != y->svc_end)
            abort();
        for (size_t j = 0; j < x->nbackends; j++) {
            const px_backend *p = &x->backends[j], *q = &y->backends[j];
            if (p->host == q->host || strcmp(p->host, q->host) != 0 || p->port != q->port ||
                p->weight != q->weight || p->current != q->current || !same_ip(&p->addr, &q->addr))
                abort();
        }
        for (size_t j = 0; j < x->naddrs; j++)
            if (!same_ip(&x->addrs[j], &y->addrs[j]))
                abort();
    }
}

/* The label `k` (0-based) of a dotted name: its offset and length, or false. */
static bool label_at(const char *h, size_t k, size_t *off, size_t *len)
{
    size_t start = 0;
    for (size_t i = 0;; i++) {
        if (h[i] == '.' || h[i] == '\0') {
            if (k == 0) {
                *off = start;
                *len = i - start;
                return true;
            }
            if (h[i] == '\0')
                return false;
            k--;
            start = i + 1;
        }
    }
}

/* routes.h's naming rule, from the strings alone: name (lower case, no dot) addresses
 * route host h from namespace ns if it is h, or h is <svc>.<ns>.svc.<domain> and name is
 * <svc>.<ns>.svc, <svc>.<ns>, or <svc> asked from <ns>. */
static bool names_route(const char *h, const char *name, size_t n, const char *ns)
{
    if (strlen(h) == n && memcmp(h, name, n) == 0)
        return true;
    size_t off[4], len[4];
    for (size_t k = 0; k < 4; k++)
        if (!label_at(h, k, &off[k], &len[k]))
            return false;
    if (len[2] != 3 || memcmp(h + off[2], "svc", 3) != 0)
        return false;
    size_t svc_end = off[2] + 3, ns_end = off[1] + len[1];
    if ((n == svc_end || n == ns_end) && memcmp(h, name, n) == 0)
        return true;
    return ns && n == len[0] && memcmp(h, name, n) == 0 && strlen(ns) == len[1] &&
           memcmp(h + off[1], ns, len[1]) == 0;
}

/* Looks `name` up under three spellings a client may send (as is; upper case with a
 * trailing dot; with ":port"), which must all agree with each other, with the copy `d`,
 * and with the naming rule: an exact-port route when one is named, else an any-port one,
 * else none. */
static void check_match(px_routes *t, px_routes *d, const char *name, uint16_t port, const char *ns)
{
    size_t n = strlen(name);
    px_route *r = px_routes_match(t, name, n, port, ns);
    char alt[PX_ROUTE_HOST_MAX + 16];
    if (n > PX_ROUTE_HOST_MAX)
        abort();
    for (size_t i = 0; i < n; i++)
        alt[i] = name[i] >= 'a' && name[i] <= 'z' ? (char)(name[i] - 32) : name[i];
    alt[n] = '.';
    if (px_routes_match(t, alt, n + 1, port, ns) != r)
        abort();
    memcpy(alt, name, n);
    alt[n] = ':';
    alt[n + 1] = '1';
    alt[n + 2] = '7';
    if (px_routes_match(t, alt, n + 3, port, ns) != r)
        abort();
    px_route *rd = px_routes_match(d, name, n, port, ns);
    if ((r == NULL) != (rd == NULL) || (r && r - t->routes != rd - d->routes))
        abort();

    bool exact = false, any = false;
    for (size_t i = 0; i < t->nroutes; i++) {
        const px_route *x = &t->routes[i];
        if ((x->port == port || x->port == 0) && names_route(x->host, name, n, ns)) {
            exact |= x->port == port;
            any |= x->port == 0;
        }
    }
    if (!r) {
        if (exact || any)
            abort();
        return;
    }
    if (!names_route(r->host, name, n, ns) || (exact && r->port != port) ||
        (!exact && r->port != 0))
        abort();
}

/* The route holding `ip` for `port`: unique, since addresses may not repeat per port. */
static void check_match_addr(px_routes *t, px_routes *d, const px_ip *ip, uint16_t port)
{
    const px_route *want = NULL;
    for (size_t i = 0; i < t->nroutes && !(want && want->port == port); i++) {
        const px_route *x = &t->routes[i];
        if (x->port != port && (x->port != 0 || want))
            continue;
        for (size_t j = 0; j < x->naddrs; j++)
            if (same_ip(&x->addrs[j], ip))
                want = x;
    }
    px_route *r = px_routes_match_addr(t, ip, port);
    px_route *rd = px_routes_match_addr(d, ip, port);
    if (r != want || (r == NULL) != (rd == NULL) || (r && r - t->routes != rd - d->routes))
        abort();
}

static void check_lookups(px_routes *t, px_routes *d)
{
    for (size_t i = 0; i < t->nroutes && i < CHECK_ROUTES; i++) {
        const px_route *r = &t->routes[i];
        uint16_t port = r->port ? r->port : 80;
        check_match(t, d, r->host, port, NULL);
        check_match(t, d, r->host, (uint16_t)(port + 1), NULL);
        if (r->svc_len) {
            char name[PX_ROUTE_HOST_MAX + 1], ns[64];
            size_t nslen = (size_t)(r->ns_end - r->svc_len - 1);
            if (nslen >= sizeof ns)
                abort();
            memcpy(ns, r->host + r->svc_len + 1, nslen);
            ns[nslen] = '\0';
            const uint16_t ends[] = {r->svc_end, r->ns_end, r->svc_len};
            for (size_t k = 0; k < 3; k++) {
                memcpy(name, r->host, ends[k]);
                name[ends[k]] = '\0';
                check_match(t, d, name, port, ns);
                check_match(t, d, name, port, NULL);
                check_match(t, d, name, port, "other");
            }
        }
        /* Backend names are arbitrary names too: most route nowhere, some loop back. */
        for (size_t j = 0; j < r->nbackends && j < 4; j++)
            check_match(t, d, r->backends[j].host, port, "default");
        for (size_t j = 0; j < r->naddrs && j < 4; j++) {
            check_match_addr(t, d, &r->addrs[j], port);
            check_match_addr(t, d, &r->addrs[j], (uint16_t)(port + 1));
        }
        for (size_t j = 0; j < r->nbackends && j < 4; j++)
            if (r->backends[j].addr.family)
                check_match_addr(t, d, &r->backends[j].addr, port);
    }
    px_ip none = {0};
    if (px_routes_match_addr(t, &none, 80) || px_routes_match_addr(t, NULL, 80) ||
        px_routes_match_addr(NULL, &none, 80) || px_routes_match(NULL, "a", 1, 80, NULL) ||
        px_routes_match(t, NULL, 0, 80, NULL))
        abort();
}

static void check_zero_sum(const px_route *r)
{
    int64_t sum = 0;
    for (size_t i = 0; i < r->nbackends; i++)
        sum += r->backends[i].current;
    if (sum != 0)
        abort();
}

/* One pick with `exclude`: -1 exactly when no backend with a weight is left. */
static int pick(px_route *r, uint64_t exclude, size_t *budget)
{
    int i = px_routes_pick(r, exclude);
    bool left = false;
    for (size_t j = 0; j < r->nbackends; j++)
        left |= r->backends[j].weight && !((exclude >> j) & 1);
    if ((i < 0) == left ||
        (i >= 0 && ((size_t)i >= r->nbackends || !r->backends[i].weight || ((exclude >> i) & 1))))
        abort();
    check_zero_sum(r);
    if (*budget)
        (*budget)--;
    return i;
}

/* From a fresh state, one run of total picks hits each backend exactly weight times and
 * returns every backend's state to zero (the sequence repeats). */
static void check_exact(px_route *r, size_t *budget)
{
    if (r->total > *budget)
        return;
    uint32_t count[PX_ROUTE_MAX_BACKENDS] = {0};
    for (uint64_t k = 0; k < r->total; k++)
        count[pick(r, 0, budget)]++;
    for (size_t j = 0; j < r->nbackends; j++)
        if (count[j] != r->backends[j].weight || r->backends[j].current != 0)
            abort();
}

/* What routing.c asks (skip backends that still need a DNS answer), then a few masks. */
static void pick_masks(px_route *r, size_t *budget)
{
    uint64_t unresolved = 0;
    for (size_t j = 0; j < r->nbackends; j++)
        if (r->backends[j].addr.family == 0)
            unresolved |= 1ull << j;
    const uint64_t masks[] = {unresolved, ~0ull, 1, 0x5555555555555555ull, ~unresolved, 0};
    for (size_t m = 0; m < sizeof masks / sizeof masks[0]; m++)
        for (size_t k = 0; k < 3 && *budget; k++)
            pick(r, masks[m], budget);
}

/* Same host, port, and backends (hosts, ports, weights, in order): state carries over. */
static bool unchanged(const px_route *a, const px_route *b)
{
    if (a->port != b->port || a->nbackends != b->nbackends || strcmp(a->host, b->host) != 0)
        return false;
    for (size_t j = 0; j < a->nbackends; j++)
        if (a->backends[j].weight != b->backends[j].weight ||
            a->backends[j].port != b->backends[j].port ||
            strcmp(a->backends[j].host, b->backends[j].host) != 0)
            return false;
    return true;
}

static void check_adopt(px_routes *next, const px_routes *old)
{
    px_routes_adopt_state(next, old);
    for (size_t i = 0; i < next->nroutes; i++) {
        const px_route *r = &next->routes[i], *o = NULL;
        /* (host, port) is unique in a table, so at most one old route is unchanged. */
        for (size_t j = 0; j < old->nroutes && !o; j++)
            if (unchanged(r, &old->routes[j]))
                o = &old->routes[j];
        for (size_t k = 0; k < r->nbackends; k++)
            if (r->backends[k].current != (o ? o->backends[k].current : 0))
                abort();
    }
}

static px_routes *parse(const uint8_t *data, size_t size)
{
    /* A buffer of exactly `size` bytes, so that ASan sees a read past the end. */
    char *json = malloc(size ? size : 1);
    if (!json)
        abort();
    memcpy(json, data, size);
    px_routes *t = NULL;
    ns_err err = {0};
    int rc = px_routes_parse(json, size, &t, &err);
    free(json);
    if (rc == 0) {
        if (!t)
            abort();
        check_table(t);
        return t;
    }
    if (t || (rc != -EINVAL && rc != -ENOMEM) || err.code != rc || err.msg[0] == '\0')
        abort();
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    size_t first = nul ? (size_t)(nul - data) : size;
    px_routes *old = parse(data, first);
    px_routes *next = nul ? parse(nul + 1, size - first - 1) : parse(data, size);
    size_t budget = PICK_BUDGET;

    if (old) {
        /* A worker's copy: equal, independent (picks on it leave `old` as it was). */
        px_routes *d = px_routes_dup(old);
        if (!d)
            abort();
        same_table(old, d);
        check_lookups(old, d);
        for (size_t i = 0; i < d->nroutes && budget; i++)
            check_exact(&d->routes[i], &budget);
        for (size_t i = 0; i < old->nroutes; i++)
            for (size_t j = 0; j < old->routes[i].nbackends; j++)
                if (old->routes[i].backends[j].current != 0)
                    abort();
        /* The table in use has served some requests before the next one arrives. */
        for (size_t i = 0; i < old->nroutes && budget; i++)
            pick_masks(&old->routes[i], &budget);
        px_routes *d2 = px_routes_dup(old);
        if (!d2)
            abort();
        same_table(old, d2);
        px_routes_free(d2);
        px_routes_free(d);
    }
    if (next && old)
        check_adopt(next, old);
    if (next) {
        px_routes_adopt_state(next, NULL);
        for (size_t i = 0; i < next->nroutes && budget; i++)
            pick_masks(&next->routes[i], &budget);
    }
    px_routes_adopt_state(NULL, old);
    px_routes_free(next);
    px_routes_free(old);
    px_routes_free(NULL);
    return 0;
}

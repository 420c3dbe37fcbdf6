/* routing.c - route tables from a file, resolving backend names; backend addresses. */
#include "routing.h"

#include "budget.h"
#include "files.h"
#include "log.h"
#include "net.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUTES_FILE_MAX (16 * 1024 * 1024)

void px_ip_to_sockaddr(const px_ip *ip, uint16_t port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (ip->family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)out;
        a->sin_family = AF_INET;
        a->sin_addr = ip->a.v4;
        a->sin_port = htons(port);
    } else if (ip->family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
        a->sin6_family = AF_INET6;
        a->sin6_addr = ip->a.v6;
        a->sin6_port = htons(port);
    }
}

void px_sockaddr_to_ip(const struct sockaddr_storage *a, px_ip *out)
{
    memset(out, 0, sizeof(*out));
    if (a->ss_family == AF_INET) {
        out->family = AF_INET;
        out->a.v4 = ((const struct sockaddr_in *)a)->sin_addr;
    } else if (a->ss_family == AF_INET6) {
        out->family = AF_INET6;
        out->a.v6 = ((const struct sockaddr_in6 *)a)->sin6_addr;
    }
}

static void resolve(px_backend *b)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(b->host, NULL, &hints, &res);
    if (rc != 0 || !res) {
        ns_log(NS_LOG_WARN, "route backend does not resolve; it gets no traffic", "host", b->host,
               "error", gai_strerror(rc), NULL);
        return;
    }
    px_sockaddr_to_ip((const struct sockaddr_storage *)(void *)res->ai_addr, &b->addr);
    freeaddrinfo(res);
}

int px_routes_resolve(px_routes *t, const atomic_bool *stop)
{
    for (size_t i = 0; i < t->nroutes; i++) {
        for (size_t j = 0; j < t->routes[i].nbackends; j++) {
            if (stop && atomic_load(stop))
                return -ECANCELED;
            if (t->routes[i].backends[j].addr.family == 0)
                resolve(&t->routes[i].backends[j]);
        }
    }
    return 0;
}

int px_routes_load(const char *path, px_routes **out, ns_err *err)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = ns_read_file(path, ROUTES_FILE_MAX, &text, &len, err);
    if (rc)
        return rc;
    px_routes *t = NULL;
    ns_err perr = {0};
    rc = px_routes_parse(text, len, &t, &perr);
    free(text);
    if (rc)
        return ns_errorf(err, rc, "%s: %s", path, perr.msg);
    px_routes_resolve(t, NULL);
    *out = t;
    return 0;
}

int px_route_target(px_route *r, uint64_t ejected, uint64_t tried,
                    const struct sockaddr_storage *orig, struct sockaddr_storage *out, char *label,
                    size_t labellen)
{
    uint64_t unresolved = 0;
    for (size_t i = 0; i < r->nbackends && i < 64; i++)
        if (r->backends[i].addr.family == 0)
            unresolved |= 1ull << i;
    int i = px_outlier_pick(r, unresolved, ejected, tried);
    if (i < 0)
        return -EHOSTUNREACH;
    const px_backend *b = &r->backends[i];
    uint16_t port = b->port ? b->port : px_addr_port(orig);
    px_ip_to_sockaddr(&b->addr, port, out);
    snprintf(label, labellen, "%s:%u", b->host, port);
    return i;
}

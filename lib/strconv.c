/* strconv.c - strict parsing of integers, ports, CIDRs and comma lists. */
#include "strconv.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int ns_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0')
        return -EINVAL;
    if (errno == ERANGE || v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

int ns_parse_u32(const char *s, uint32_t max, uint32_t *out)
{
    int64_t v;
    if (s && *s == '-')
        return -EINVAL;
    int rc = ns_parse_i64(s, 0, max, &v);
    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

int ns_parse_port(const char *s, uint16_t *out)
{
    uint32_t v;
    int rc = ns_parse_u32(s, 65535, &v);
    if (rc)
        return rc;
    if (v == 0)
        return -ERANGE;
    *out = (uint16_t)v;
    return 0;
}

int ns_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *h = s, *colon;
    size_t hl;
    if (!s)
        return -EINVAL;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -EINVAL;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hostlen)
        return -EINVAL;
    uint32_t p;
    if (ns_parse_u32(colon + 1, 65535, &p) != 0)
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)p;
    return 0;
}

/* True if any bit after the first `prefix` bits of the `n`-byte address is set. */
static bool host_bits_set(const unsigned char *a, size_t n, unsigned prefix)
{
    for (size_t i = 0; i < n; i++) {
        unsigned bit = (unsigned)i * 8;
        unsigned char mask;
        if (bit + 8 <= prefix)
            continue;
        mask = bit >= prefix ? 0xff : (unsigned char)(0xff >> (prefix - bit));
        if (a[i] & mask)
            return true;
    }
    return false;
}

int ns_parse_cidr(const char *s, ns_cidr *out)
{
    char tmp[INET6_ADDRSTRLEN + 8];
    if (!s || strlen(s) >= sizeof(tmp))
        return -EINVAL;
    memcpy(tmp, s, strlen(s) + 1);

    ns_cidr c = {0};
    char *slash = strchr(tmp, '/');
    if (slash)
        *slash = '\0';
    if (inet_pton(AF_INET, tmp, &c.addr.v4) == 1)
        c.family = AF_INET;
    else if (inet_pton(AF_INET6, tmp, &c.addr.v6) == 1)
        c.family = AF_INET6;
    else
        return -EINVAL;

    uint32_t maxp = c.family == AF_INET ? 32 : 128, p = maxp;
    if (slash && ns_parse_u32(slash + 1, maxp, &p) != 0)
        return -EINVAL;
    c.prefix = (uint8_t)p;

    const unsigned char *bytes =
        c.family == AF_INET ? (const unsigned char *)&c.addr.v4 : c.addr.v6.s6_addr;
    if (host_bits_set(bytes, maxp / 8, p))
        return -EINVAL;
    *out = c;
    return 0;
}

void ns_cidr_format(const ns_cidr *c, char *buf, size_t len)
{
    char a[INET6_ADDRSTRLEN];
    inet_ntop(c->family, c->family == AF_INET ? (const void *)&c->addr.v4 : &c->addr.v6, a,
              sizeof(a));
    snprintf(buf, len, "%s/%u", a, c->prefix);
}

int ns_list_next(const char **cursor, char *item, size_t itemlen)
{
    const char *p = *cursor;
    for (;;) {
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        if (!*p) {
            *cursor = p;
            return 0;
        }
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && isspace((unsigned char)end[-1]))
            end--;
        size_t n = (size_t)(end - start);
        *cursor = p;
        if (n + 1 > itemlen)
            return -ERANGE;
        memcpy(item, start, n);
        item[n] = '\0';
        return (int)n;
    }
}

int ns_parse_sockaddr(const char *host, uint16_t port, struct sockaddr_storage *ss, bool *v6)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        *v6 = false;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        *v6 = true;
        return 0;
    }
    return -EINVAL;
}

/* strconv.h - strict number, port and CIDR parsing (the project's atoi replacement).
 *
 * Parsers accept the whole string or nothing: trailing garbage, signs where none is
 * allowed, empty strings and overflow are errors. They return 0 or -EINVAL/-ERANGE and
 * write the value only on success.
 */
#ifndef NS_STRCONV_H
#define NS_STRCONV_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int ns_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
int ns_parse_u32(const char *s, uint32_t max, uint32_t *out);
/* A TCP/UDP port, 1..65535. */
int ns_parse_port(const char *s, uint16_t *out);

/* Splits a listen address "host:port" or "[v6 host]:port" into `host` (at most
 * `hostlen` - 1 bytes, brackets removed) and `port`; port 0 means "any free port".
 * Returns 0 or -EINVAL. */
int ns_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port);

/* An IP literal (v4 or v6, no brackets) and a port as a socket address; *v6 tells the
 * family. Returns 0 or -EINVAL (not an IP literal). */
struct sockaddr_storage;
int ns_parse_sockaddr(const char *host, uint16_t port, struct sockaddr_storage *ss, bool *v6);

/* An IPv4 or IPv6 network in CIDR notation ("10.0.0.0/8", "fd00::/8"); a bare address
 * means a single host (/32 or /128). Host bits set below the prefix are an error, as
 * Kubernetes and iptables-restore would otherwise disagree about what was meant. */
typedef struct ns_cidr {
    int family; /* AF_INET or AF_INET6 */
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } addr;
    uint8_t prefix;
} ns_cidr;

int ns_parse_cidr(const char *s, ns_cidr *out);
/* Writes "a.b.c.d/n" or "x::y/n" into buf (at least INET6_ADDRSTRLEN + 4 bytes). */
void ns_cidr_format(const ns_cidr *c, char *buf, size_t len);

/* Iterates over a comma-separated list, skipping spaces around items and empty items.
 * Usage:  const char *p = list; char item[64];
 *         while (ns_list_next(&p, item, sizeof item) > 0) ...
 * Returns the item length (> 0), 0 at the end, or -ERANGE if an item does not fit
 * (the iterator then skips it). */
int ns_list_next(const char **cursor, char *item, size_t itemlen);

#endif

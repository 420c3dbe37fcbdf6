/* net.h - socket helpers of the proxy: listeners, original destinations, non-blocking
 * connects, resets, and address formatting. Thin wrappers; every fallible one returns a
 * descriptor or 0, or a negative errno.
 */
#ifndef PX_NET_H
#define PX_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest "[v6]:port" text plus NUL. */
#define PX_ADDR_MAX 56

/* A non-blocking listening socket on the wildcard address of `family` (v6: IPV6_V6ONLY,
 * so that a v4 listener can sit beside it), or on `host` if not NULL. With `reuseport`,
 * several sockets share the port and the kernel spreads connections over them. */
int px_listen_tcp(int family, const char *host, uint16_t port, bool reuseport, int backlog);

/* The destination a connection had before iptables REDIRECT sent it to us
 * (SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST). -ENOENT when conntrack knows no NAT for it
 * (a direct connection to the listener). */
int px_original_dst(int fd, int family, struct sockaddr_storage *out);

/* Starts a non-blocking TCP connect to `dst`, from `src` if not NULL (port 0). Returns
 * the socket (connect in progress or done: wait for EPOLLOUT), or a negative errno. */
int px_connect_start(const struct sockaddr_storage *dst, const struct sockaddr_storage *src);

/* The pending error of a socket whose connect finished (0 = connected). */
int px_socket_error(int fd);

void px_set_nodelay(int fd);

/* Closes `fd` with a TCP reset (SO_LINGER 0): how the proxy tells a peer that the other
 * side failed, as the peer would have seen without a proxy. */
void px_close_reset(int fd);

/* "1.2.3.4:80" or "[::1]:80". */
void px_addr_format(const struct sockaddr_storage *a, char *buf, size_t len);
/* The address alone ("1.2.3.4", "::1"). */
void px_addr_format_ip(const struct sockaddr_storage *a, char *buf, size_t len);

bool px_addr_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
uint16_t px_addr_port(const struct sockaddr_storage *a);
void px_addr_set_port(struct sockaddr_storage *a, uint16_t port);
socklen_t px_addr_len(const struct sockaddr_storage *a);
bool px_addr_is_loopback(const struct sockaddr_storage *a);

/* Parses an IP literal into `out` with `port`. Returns 0 or -EINVAL. */
int px_addr_parse(const char *ip, uint16_t port, struct sockaddr_storage *out);

#endif

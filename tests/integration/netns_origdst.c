/* netns_origdst.c - tiny TCP listener/client for tests/integration/netns_init.sh.
 *
 *   netns_origdst listen PORT READY_FILE [TIMEOUT_S]
 *       Listens on 0.0.0.0:PORT and [::]:PORT, writes READY_FILE once listening, accepts ONE
 *       connection, answers "ok\n", and prints one line:
 *         local=ADDR:PORT orig=ADDR:PORT peer=ADDR:PORT
 *       where orig is what SO_ORIGINAL_DST (IP6T_SO_ORIGINAL_DST for IPv6) reports, i.e. the
 *       destination the client asked for before a REDIRECT ("-" if conntrack has none).
 *       Exits 0, or 3 if nothing connected within TIMEOUT_S (default 10).
 *   netns_origdst connect ADDR PORT [TIMEOUT_S]
 *       Connects, reads the answer, prints "connected reply=..." and exits 0; exits 1 if the
 *       connection or the answer fails within TIMEOUT_S (default 5).
 *
 * Every wait is bounded by the timeout; the program never loops forever.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static void format_addr(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char a[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
        snprintf(buf, len, "%s:%u", a, ntohs(s4->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
        snprintf(buf, len, "[%s]:%u", a, ntohs(s6->sin6_port));
    } else {
        snprintf(buf, len, "-");
    }
}

static int listen_on(int family, int port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        len = sizeof(*s4);
    } else {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        len = sizeof(*s6);
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 4) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int do_listen(int port, const char *ready, int timeout_s)
{
    int fds[2] = {listen_on(AF_INET, port), listen_on(AF_INET6, port)};
    if (fds[0] < 0) {
        fprintf(stderr, "listen 0.0.0.0:%d: %s\n", port, strerror(errno));
        return 2;
    }
    /* IPv6 may be off in the namespace; IPv4 alone is still a useful listener. */
    int f = open(ready, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f < 0) {
        fprintf(stderr, "ready file %s: %s\n", ready, strerror(errno));
        return 2;
    }
    close(f);

    struct pollfd p[2] = {{.fd = fds[0], .events = POLLIN}, {.fd = fds[1], .events = POLLIN}};
    int n = poll(p, fds[1] >= 0 ? 2 : 1, timeout_s * 1000);
    if (n <= 0) {
        printf("timeout\n");
        return 3;
    }
    int lfd = (p[0].revents & POLLIN) ? fds[0] : fds[1];
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    int c = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
    if (c < 0) {
        fprintf(stderr, "accept: %s\n", strerror(errno));
        return 2;
    }
    struct sockaddr_storage local, orig;
    socklen_t llen = sizeof(local), olen = sizeof(orig);
    getsockname(c, (struct sockaddr *)&local, &llen);
    memset(&orig, 0, sizeof(orig));
    int rc;
    if (local.ss_family == AF_INET)
        rc = getsockopt(c, SOL_IP, SO_ORIGINAL_DST, &orig, &olen);
    else
        rc = getsockopt(c, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &orig, &olen);
    if (rc != 0)
        orig.ss_family = AF_UNSPEC;

    char l[80], o[80], r[80];
    format_addr(&local, l, sizeof(l));
    format_addr(&orig, o, sizeof(o));
    format_addr(&peer, r, sizeof(r));
    printf("local=%s orig=%s peer=%s\n", l, o, r);
    fflush(stdout);
    (void)!write(c, "ok\n", 3);
    close(c);
    close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    return 0;
}

static int do_connect(const char *addr, int port, int timeout_s)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        len = sizeof(*s4);
    } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        len = sizeof(*s6);
    } else {
        fprintf(stderr, "bad address %s\n", addr);
        return 2;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    if (connect(fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS) {
        fprintf(stderr, "connect %s:%d: %s\n", addr, port, strerror(errno));
        return 1;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (poll(&p, 1, timeout_s * 1000) != 1) {
        fprintf(stderr, "connect %s:%d: timeout\n", addr, port);
        return 1;
    }
    int soerr = 0;
    socklen_t elen = sizeof(soerr);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen);
    if (soerr) {
        fprintf(stderr, "connect %s:%d: %s\n", addr, port, strerror(soerr));
        return 1;
    }
    char reply[64];
    size_t got = 0;
    for (int rounds = 0; rounds < 16 && got < sizeof(reply) - 1; rounds++) {
        p.events = POLLIN;
        if (poll(&p, 1, timeout_s * 1000) != 1)
            break;
        ssize_t n = read(fd, reply + got, sizeof(reply) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    reply[got] = '\0';
    close(fd);
    if (got == 0) {
        fprintf(stderr, "connect %s:%d: no answer\n", addr, port);
        return 1;
    }
    reply[strcspn(reply, "\n")] = '\0';
    printf("connected reply=%s\n", reply);
    return 0;
}

int main(int argc, char **argv)
{
    int port, timeout;
    if (argc >= 4 && strcmp(argv[1], "listen") == 0 && parse_int(argv[2], 1, 65535, &port) == 0) {
        timeout = 10;
        if (argc >= 5 && parse_int(argv[4], 1, 600, &timeout) != 0)
            return 2;
        return do_listen(port, argv[3], timeout);
    }
    if (argc >= 4 && strcmp(argv[1], "connect") == 0 && parse_int(argv[3], 1, 65535, &port) == 0) {
        timeout = 5;
        if (argc >= 5 && parse_int(argv[4], 1, 600, &timeout) != 0)
            return 2;
        return do_connect(argv[2], port, timeout);
    }
    fprintf(stderr,
            "usage: %s listen PORT READY_FILE [TIMEOUT_S] | connect ADDR PORT "
            "[TIMEOUT_S]\n",
            argv[0]);
    return 2;
}

/* relay.c - socket reads and writes of a session, and the opaque TCP relay. */
#include "relay.h"

#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* A pipe holds 16 pages by default; asking splice for more than that is pointless. */
#define PIPE_CHUNK (64 * 1024)

int px_end_read(px_session *s, px_end *e, uint32_t max_len)
{
    const px_config *cfg = &s->w->px->cfg;
    if (e->eof || !e->readable || e->io.fd < 0)
        return 0;
    uint32_t room = px_bytes_room(&e->in, cfg->buffer_size, max_len);
    if (room == 0)
        return 0;
    for (;;) {
        ssize_t n = recv(e->io.fd, e->in.data + e->in.end, room, 0);
        if (n > 0) {
            e->in.end += (uint32_t)n;
            /* Edge-triggered: a short read emptied the socket, and anything arriving
             * from now on raises a new event, so no second read just to see EAGAIN;
             * unless the FIN is already here, whose end of stream needs that read. */
            if ((uint32_t)n < room && !e->rdhup)
                e->readable = false;
            px_session_count(s, e, false, (uint64_t)n);
            return (int)n;
        }
        if (n == 0) {
            e->eof = true;
            e->readable = false;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            e->readable = false;
            return 0;
        }
        return -errno;
    }
}

int px_end_flush(px_session *s, px_end *src, px_end *dst)
{
    while (src->pre_off < src->pre_len || src->fwd > 0) {
        if (!dst->writable || dst->io.fd < 0 || dst->connecting)
            return 0;
        struct iovec iov[2];
        int n = 0;
        size_t want = 0;
        if (src->pre_off < src->pre_len) {
            iov[n].iov_base = src->pre + src->pre_off;
            iov[n].iov_len = src->pre_len - src->pre_off;
            want += iov[n++].iov_len;
        }
        if (src->fwd > 0) {
            iov[n].iov_base = src->in.data + src->in.start;
            iov[n].iov_len = src->fwd;
            want += iov[n++].iov_len;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(dst->io.fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                dst->writable = false;
                return 0;
            }
            return -errno;
        }
        px_session_count(s, dst, true, (uint64_t)w);
        size_t k = (size_t)w;
        if (src->pre_off < src->pre_len) {
            size_t p = src->pre_len - src->pre_off;
            size_t t = k < p ? k : p;
            src->pre_off += (uint32_t)t;
            k -= t;
            if (src->pre_off == src->pre_len) {
                free(src->pre);
                src->pre = NULL;
                src->pre_len = src->pre_off = 0;
            }
        }
        if (k > 0) {
            src->fwd -= (uint32_t)k;
            px_bytes_consume(&src->in, (uint32_t)k);
        }
        if ((size_t)w < want) /* the socket buffer is full: EPOLLOUT will say when not */
            dst->writable = false;
    }
    return 1;
}

void px_end_close_pipe(px_end *e)
{
    for (int i = 0; i < 2; i++) {
        if (e->pipe[i] >= 0)
            close(e->pipe[i]);
        e->pipe[i] = -1;
    }
    e->piped = 0;
}

/* One direction, src -> dst. Returns 1 when finished (EOF passed on), 0 to wait, -errno. */
static int relay_dir(px_session *s, px_end *src, px_end *dst, bool use_splice)
{
    for (;;) {
        /* Bytes read before the relay started (sniffing, HTTP before an Upgrade) first. */
        if (src->pre_off < src->pre_len || px_bytes_len(&src->in) > 0) {
            src->fwd = px_bytes_len(&src->in);
            int r = px_end_flush(s, src, dst);
            if (r <= 0)
                return r;
            continue;
        }
        if (src->piped > 0) {
            if (!dst->writable || dst->connecting)
                return 0;
            ssize_t n = splice(src->pipe[0], NULL, dst->io.fd, NULL, src->piped,
                               SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
            if (n > 0) {
                src->piped -= (uint32_t)n;
                px_session_count(s, dst, true, (uint64_t)n);
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                dst->writable = false;
                return 0;
            }
            return n < 0 ? -errno : -EIO;
        }
        if (src->eof) {
            if (!dst->shut && dst->io.fd >= 0 && !dst->connecting) {
                shutdown(dst->io.fd, SHUT_WR);
                dst->shut = true;
            }
            return dst->shut ? 1 : 0;
        }
        if (!src->readable)
            return 0;
        if (use_splice && src->pipe[0] < 0 && pipe2(src->pipe, O_NONBLOCK | O_CLOEXEC) != 0)
            src->pipe[0] = src->pipe[1] = -1; /* out of descriptors: copy instead */
        if (use_splice && src->pipe[0] >= 0) {
            ssize_t n = splice(src->io.fd, NULL, src->pipe[1], NULL, PIPE_CHUNK,
                               SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
            if (n > 0) {
                src->piped += (uint32_t)n;
                px_session_count(s, src, false, (uint64_t)n);
                continue;
            }
            if (n == 0) {
                src->eof = true;
                src->readable = false;
                continue;
            }
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                /* The pipe was empty, so the socket is: wait for EPOLLIN. */
                src->readable = false;
                return 0;
            }
            return -errno;
        }
        int r = px_end_read(s, src, s->w->px->cfg.buffer_size);
        if (r < 0)
            return r;
        if (r == 0 && !src->eof)
            return 0;
    }
}

int px_relay_run(px_session *s)
{
    bool use_splice = s->w->px->cfg.splice;
    int a = relay_dir(s, &s->down, &s->up, use_splice);
    if (a < 0)
        return a;
    int b = relay_dir(s, &s->up, &s->down, use_splice);
    if (b < 0)
        return b;
    return a == 1 && b == 1 ? 1 : 0;
}

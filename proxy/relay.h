/* relay.h - moving bytes between the two sockets of a session: reads into a socket's
 * buffer, writes of what is cleared to go, and the opaque TCP relay (RAW state).
 *
 * The opaque relay keeps TCP's semantics end to end: bytes pass unchanged and in order;
 * an EOF from one side becomes a shutdown(SHUT_WR) towards the other once everything
 * before it was written (half-close), and the session ends when both directions have
 * ended; a reset or write error on one side resets the other. A side whose peer cannot
 * take more is not read (backpressure): at most one buffer (or one pipe) per direction
 * is held. With splice, bytes go socket -> pipe -> socket without entering user space.
 */
#ifndef PX_RELAY_H
#define PX_RELAY_H

#include "session.h"

/* Reads from `e` into e->in (holding at most `max_len` bytes). Returns the bytes read (> 0),
 * 0 if there is nothing to read now (check e->eof for the end of stream), or -errno. */
int px_end_read(px_session *s, px_end *e, uint32_t max_len);

/* Writes what `src` holds for `dst`: src->pre (then frees it), then src->fwd bytes of
 * src->in. Returns 1 when nothing is left, 0 if dst cannot take more now, -errno if
 * writing failed (the peer reset or closed). */
int px_end_flush(px_session *s, px_end *src, px_end *dst);

/* Runs the opaque relay both ways. Returns 1 when both directions are finished (close
 * the session), 0 to wait for events, -errno when a side failed (reset the other). */
int px_relay_run(px_session *s);

/* Frees the pipes of `e`. */
void px_end_close_pipe(px_end *e);

#endif

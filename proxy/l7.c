/* l7.c - the HTTP/1.1 state of a session: requests down -> up, responses up -> down. */
#include "l7.h"

#include "h1edit.h"
#include "http1.h"
#include "log.h"
#include "net.h"
#include "relay.h"
#include "routing.h"
#include "trace.h"
#include "worker.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Requests forwarded and not yet answered; more pipelined ones wait in the buffer. */
#define PIPELINE_MAX 32
/* Largest request head kept for sending again after a 503 (bigger ones are not retried
 * then; connect failures need no copy). */
#define REPLAY_MAX (16 * 1024)

typedef struct px_req {
    uint8_t method; /* px_h1_method */
    bool close;     /* the client will not send more: close after the response */
    bool upgrade;   /* Upgrade or CONNECT: the response may open a tunnel */
    bool bodiless;  /* no request body */
    bool replay;    /* its head is in px_http.replay (it was alone when sent) */
    bool answered;  /* an interim (1xx) response went to the client */
    int64_t t0_ns;
} px_req;

enum rq_state {
    RQ_HEAD,         /* reading the next request head */
    RQ_BODY,         /* rq_left body bytes to forward */
    RQ_CHUNKED,      /* chunked body */
    RQ_WAIT_UP,      /* head parsed; waits for the responses before switching upstream */
    RQ_WAIT_UPGRADE, /* an Upgrade/CONNECT went out: nothing more until its answer */
    RQ_STOP,         /* no more requests on this connection */
};

enum rs_state {
    RS_HEAD,    /* reading a response head */
    RS_BODY,    /* rs_left body bytes */
    RS_CHUNKED, /* chunked body */
    RS_CLOSE,   /* body until the server closes */
};

typedef struct px_http {
    px_h1_parser rq_p;
    px_h1_msg rq_m;
    int rq_state;
    uint64_t rq_left;
    px_chunked rq_ch;
    struct sockaddr_storage rq_target; /* where the parsed head goes */
    char rq_dest[80];
    px_backend_ref rq_via; /* its route backend, and the backends whose connect failed */
    uint64_t rq_tried;
    unsigned rq_retries;
    /* The same for the last request sent. Every request in flight went to the same
     * upstream, so its backend is theirs; a retry only happens to a request alone in
     * flight, which is then the last one sent. */
    px_backend_ref up_via;
    uint64_t up_tried;
    unsigned up_retries;

    px_h1_parser rs_p;
    px_h1_msg rs_m;
    int rs_state;
    uint64_t rs_left;
    px_chunked rs_ch;
    int rs_status;
    bool rs_keep_alive;

    px_req q[PIPELINE_MAX]; /* in flight, oldest at qhead */
    unsigned qhead, qlen;

    int pending_error;    /* a local answer owed once the in-flight responses are out */
    bool close_after;     /* close the client once what is queued for it is written */
    bool tunnel;          /* switch to RAW once what is queued is written */
    bool draining;        /* answer in-flight requests with "connection: close" */
    bool up_write_failed; /* the server stopped reading: forward no more requests */
    uint64_t rng;

    px_session *s;
    px_timer rq_timer; /* --request-timeout: armed while the oldest request awaits its head */
    char *replay;      /* the head of the request in flight alone, as sent (retries) */
    uint32_t replay_len, replay_cap;
} px_http;

static const px_config *cfg_of(const px_session *s)
{
    return &s->w->px->cfg;
}

/* ---------------------------------------------------------------- pieces */

static void rs_reset(px_http *h)
{
    px_h1_method m = h->qlen ? h->q[h->qhead].method : PX_M_GET;
    px_h1_init(&h->rs_p, PX_H1_RESPONSE, m);
    h->rs_state = RS_HEAD;
}

static void rq_reset(px_session *s)
{
    px_http *h = s->http;
    px_h1_init(&h->rq_p, PX_H1_REQUEST, PX_M_NONE);
    px_h1_set_max_head(&h->rq_p, cfg_of(s)->max_head);
}

int px_http_start(px_session *s)
{
    px_http *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    s->http = h;
    h->s = s;
    h->rq_via.route = -1;
    h->up_via.route = -1;
    h->rng = s->w->rng ^ (uint64_t)(uintptr_t)s;
    s->w->rng = px_rng_next(&s->w->rng);
    rq_reset(s);
    rs_reset(h);
    h->rq_state = RQ_HEAD;
    h->draining = s->draining;
    return 0;
}

void px_http_stop_timer(px_http *h)
{
    px_timer_stop(&h->rq_timer);
}

void px_http_free(px_http *h)
{
    if (!h)
        return;
    px_timer_stop(&h->rq_timer);
    free(h->replay);
    free(h);
}

/* Starts --request-timeout for the oldest request: the time its answer may take to
 * begin (for a pipelined request, from when the answer before it ended). */
static void arm_request_timer(px_session *s)
{
    if (cfg_of(s)->request_timeout_ms > 0)
        px_timer_arm(&s->w->loop, &s->w->queues[PX_T_REQUEST], &s->http->rq_timer);
}

/* Counts the oldest in-flight request as answered with `status` and forgets it. */
static void pop_request(px_session *s, int status)
{
    px_http *h = s->http;
    if (h->qlen == 0)
        return;
    px_req *r = &h->q[h->qhead];
    double secs = (double)(px_now_ns() - r->t0_ns) / 1e9;
    px_stats_request(s->dir, status, s->dest, secs);
    h->qhead = (h->qhead + 1) % PIPELINE_MAX;
    h->qlen--;
    if (h->qlen > 0)
        arm_request_timer(s);
    else
        px_timer_stop(&h->rq_timer);
}

/* Answers the client from the proxy itself, then closes. Only at a response boundary:
 * nothing of the current response has reached the client. */
static void local_reply(px_session *s, int status, const char *body)
{
    px_http *h = s->http;
    if (h->qlen > 0)
        pop_request(s, status);
    else
        px_stats_request(s->dir, status, s->dest, 0);
    /* Requests behind it stay unanswered: "connection: close" tells the client so. */
    h->qlen = 0;
    px_timer_stop(&h->rq_timer);
    px_session_close_up(s);
    char *out = malloc(512);
    size_t n = out ? px_h1_local_reply(status, body, out, 512) : 0;
    if (n == 0) {
        free(out);
        px_session_kill(s, true);
        return;
    }
    s->up.pre = out;
    s->up.pre_len = (uint32_t)n;
    s->up.pre_off = 0;
    s->up.fwd = 0;
    h->close_after = true;
    h->rq_state = RQ_STOP;
    h->rs_state = RS_HEAD;
}

/* A refused request: answered once the requests before it are answered. */
static void request_error(px_session *s, int status, const char *why)
{
    px_http *h = s->http;
    char peer[PX_ADDR_MAX];
    px_addr_format(&s->orig, peer, sizeof(peer));
    char code[8];
    snprintf(code, sizeof(code), "%d", status);
    ns_log(NS_LOG_WARN, "refused a malformed HTTP request", "direction", px_dir_name(s->dir),
           "destination", peer, "status", code, "reason", why, NULL);
    px_stat_add(&px_st.dir[s->dir].req_errors, 1);
    h->rq_state = RQ_STOP;
    h->pending_error = status;
}

/* Sends the answer owed for a refused request (400, 408, 431...). */
static void owed_reply(px_session *s)
{
    char body[64];
    snprintf(body, sizeof(body), "%s\n", px_h1_reason_phrase(s->http->pending_error));
    local_reply(s, s->http->pending_error, body);
}

/* True when nothing is in flight, owed, or half-read: the connection may close now. */
static bool http_idle(const px_session *s)
{
    const px_http *h = s->http;
    return h->qlen == 0 && h->rq_state == RQ_HEAD && px_bytes_len(&s->down.in) == 0 &&
           s->up.pre_len == 0 && s->up.fwd == 0 && s->down.pre_len == 0 && !h->pending_error;
}

/* True while bytes of an earlier response still wait to be written to the client: the
 * upstream connection (and its buffer) must stay until then. */
static bool response_pending(const px_session *s)
{
    return s->http->qlen > 0 || s->up.pre_len > 0 || s->up.fwd > 0;
}

/* ---------------------------------------------------------------- requests */

/* Where a request goes: a routed backend, else the original destination. */
static int choose_target(px_session *s, const char *buf, const px_h1_msg *m)
{
    px_http *h = s->http;
    px_routes *t = s->w->routes;
    px_route *r = NULL;
    if (t && s->dir == PX_OUTBOUND) {
        uint16_t port = px_addr_port(&s->orig);
        const char *ns = cfg_of(s)->pod_namespace[0] ? cfg_of(s)->pod_namespace : NULL;
        if (m->host >= 0) {
            px_span v = m->headers[m->host].value;
            r = px_routes_match(t, buf + v.off, v.len, port, ns);
        }
        if (!r) {
            px_ip ip;
            px_sockaddr_to_ip(&s->orig, &ip);
            r = px_routes_match_addr(t, &ip, port);
        }
    }
    h->rq_tried = 0;
    h->rq_retries = 0;
    if (r) {
        /* Every routed request earns the budget its share of retries. */
        px_budget_request(&s->w->budget, s->w->loop.now_ms);
        return px_worker_pick(s->w, r, 0, &s->orig, &h->rq_via, &h->rq_target, h->rq_dest,
                              sizeof(h->rq_dest));
    }
    h->rq_via.route = -1;
    h->rq_target = s->orig;
    px_addr_format(&s->orig, h->rq_dest, sizeof(h->rq_dest));
    return 0;
}

/* Connects to the target of the parsed head. A connect that fails at once is retried
 * like one that fails later: another backend of its route, within the limits. Returns
 * 0, or -1 when there is no connection to be had (answer 503). */
static int connect_head(px_session *s)
{
    px_http *h = s->http;
    for (;;) {
        if (px_session_connect(s, &h->rq_target, h->rq_dest) == 0)
            return 0;
        px_worker_backend_result(s->w, &h->rq_via, false);
        px_retry_req rr = {.method = h->rq_m.method_id, .retries = h->rq_retries};
        if (px_worker_retry(s->w, s->dir, PX_RETRY_CONNECT, &rr, &s->orig, &h->rq_via, &h->rq_tried,
                            &h->rq_target, h->rq_dest, sizeof(h->rq_dest)) != 0)
            return -1;
        h->rq_retries++;
    }
}

/* Keeps a copy of the head of a request sent alone, for sending it again after a 503
 * or a connection closed before an answer. The buffer lives as long as the connection:
 * no allocation per request. */
static bool keep_head(px_http *h, const char *head, uint32_t len)
{
    if (len > REPLAY_MAX)
        return false;
    if (len > h->replay_cap) {
        uint32_t cap = len < 1024 ? 1024 : len;
        char *p = realloc(h->replay, cap);
        if (!p)
            return false;
        h->replay = p;
        h->replay_cap = cap;
    }
    memcpy(h->replay, head, len);
    h->replay_len = len;
    return true;
}

/* The request head in down.in is parsed and its target chosen: send it on its way.
 * Returns false if it has to wait (another upstream is still answering). */
static bool dispatch_head(px_session *s)
{
    px_http *h = s->http;
    const px_h1_msg *m = &h->rq_m;
    const char *buf = s->down.in.data + s->down.in.start;

    bool other = s->target.ss_family == 0 || !px_addr_eq(&s->target, &h->rq_target);
    if (other && response_pending(s)) {
        h->rq_state = RQ_WAIT_UP;
        return false;
    }
    if ((other || s->up.io.fd < 0) && connect_head(s) != 0) {
        local_reply(s, 503, "upstream connect error\n");
        return true;
    }

    px_req *r = &h->q[(h->qhead + h->qlen) % PIPELINE_MAX];
    r->method = (uint8_t)m->method_id;
    r->close = !(m->flags & PX_H1_KEEP_ALIVE) || h->draining;
    r->upgrade = (m->flags & PX_H1_UPGRADE) || m->method_id == PX_M_CONNECT;
    r->bodiless = m->body == PX_BODY_NONE;
    r->replay = false;
    r->answered = false;
    r->t0_ns = px_now_ns();
    h->up_via = h->rq_via;
    h->up_tried = h->rq_tried;
    h->up_retries = h->rq_retries;
    bool alone = h->qlen++ == 0;
    if (alone) {
        rs_reset(h);
        arm_request_timer(s);
    }
    /* Only a request that could be retried after a 503 needs its head kept. */
    bool keep = alone && h->up_via.route >= 0 && cfg_of(s)->max_retries > 0 && r->bodiless &&
                !r->upgrade && px_h1_method_idempotent(m->method_id);

    if (cfg_of(s)->trace) {
        px_trace_ctx in, out;
        unsigned forms = 0;
        int found = px_trace_extract(m, buf, &in, &forms) == 0;
        px_trace_child(found ? &in : NULL, &h->rng, &out);
        char extra[PX_TRACE_HEADERS_MAX];
        size_t extra_len = px_trace_write(&out, forms, extra, sizeof(extra));
        s->down.pre =
            px_h1_rewrite_head(buf, m, px_trace_is_header, extra, extra_len, &s->down.pre_len);
        if (!s->down.pre) {
            px_session_kill(s, true);
            return true;
        }
        s->down.pre_off = 0;
        if (keep)
            r->replay = keep_head(h, s->down.pre, s->down.pre_len);
        px_bytes_consume(&s->down.in, m->head_len);
    } else {
        if (keep)
            r->replay = keep_head(h, buf, m->head_len);
        s->down.fwd = m->head_len;
    }

    switch (m->body) {
    case PX_BODY_LENGTH:
        h->rq_left = m->content_length;
        h->rq_state = RQ_BODY;
        break;
    case PX_BODY_CHUNKED:
        px_chunked_init(&h->rq_ch);
        h->rq_state = RQ_CHUNKED;
        break;
    default:
        h->rq_state = r->upgrade ? RQ_WAIT_UPGRADE : r->close ? RQ_STOP : RQ_HEAD;
        break;
    }
    rq_reset(s);
    return true;
}

/* After a request body: what may come next on the connection. */
static void request_done(px_session *s)
{
    px_http *h = s->http;
    if (h->close_after || h->rq_state == RQ_STOP) {
        h->rq_state = RQ_STOP; /* answered already, with a close */
        return;
    }
    const px_req *r = &h->q[(h->qhead + h->qlen + PIPELINE_MAX - 1) % PIPELINE_MAX];
    if (h->qlen == 0)
        h->rq_state = RQ_HEAD;
    else
        h->rq_state = r->upgrade ? RQ_WAIT_UPGRADE : r->close ? RQ_STOP : RQ_HEAD;
}

/* The client finished sending: pass the half-close on once its bytes are out. */
static void client_eof(px_session *s)
{
    px_http *h = s->http;
    if (h->qlen == 0 && s->up.pre_len == 0 && s->up.fwd == 0 && h->pending_error == 0 &&
        s->down.pre_len == 0) {
        px_session_kill(s, false);
        return;
    }
    if (s->up.io.fd >= 0 && !s->up.connecting && !s->up.shut && s->down.pre_len == 0 &&
        s->down.fwd == 0) {
        shutdown(s->up.io.fd, SHUT_WR);
        s->up.shut = true;
    }
}

/* Moves request bytes down -> up: clears as many bytes as the framing allows, then writes
 * them in one go; returns when it would block. */
static void rq_step(px_session *s)
{
    px_http *h = s->http;
    const px_config *cfg = cfg_of(s);
    for (;;) {
        if (s->state != PX_S_HTTP)
            return;
        bool pending = s->down.pre_len > s->down.pre_off || s->down.fwd > 0;
        if (pending && h->up_write_failed) {
            /* The server stopped reading; what it already answered still counts. */
            s->down.fwd = 0;
            px_bytes_consume(&s->down.in, px_bytes_len(&s->down.in));
            free(s->down.pre);
            s->down.pre = NULL;
            s->down.pre_len = s->down.pre_off = 0;
            h->rq_state = RQ_STOP;
            return;
        }
        uint32_t off = s->down.fwd;
        uint32_t avail = px_bytes_len(&s->down.in) - off;
        const char *data = s->down.in.data + s->down.in.start + off;
        uint32_t limit = cfg->buffer_size;
        bool advanced = false;
        switch (h->rq_state) {
        case RQ_BODY:
            if (avail > 0) {
                uint32_t n = avail < h->rq_left ? avail : (uint32_t)h->rq_left;
                s->down.fwd += n;
                h->rq_left -= n;
                if (h->rq_left == 0)
                    request_done(s);
                advanced = true;
            }
            break;
        case RQ_CHUNKED:
            if (avail > 0) {
                size_t used = 0;
                int r = px_chunked_feed(&h->rq_ch, data, avail, &used);
                if (r < 0) {
                    /* Part of the body is already upstream: nothing sane to answer. */
                    request_error(s, 400, h->rq_ch.why ? h->rq_ch.why : "bad chunked body");
                    px_session_kill(s, true);
                    return;
                }
                s->down.fwd += (uint32_t)used;
                if (r == 1)
                    request_done(s);
                advanced = true;
            }
            break;
        case RQ_HEAD:
            /* A head may be rewritten or go to another upstream: what is before it goes
             * out first. */
            if (pending)
                break;
            if (avail == 0) {
                if (h->draining && http_idle(s)) {
                    px_session_kill(s, false);
                    return;
                }
                break;
            }
            if (h->qlen >= PIPELINE_MAX)
                return;
            {
                int r = px_h1_parse(&h->rq_p, data, avail, &h->rq_m);
                if (r < 0) {
                    request_error(s, px_h1_status(&h->rq_p), px_h1_reason(&h->rq_p));
                    advanced = true;
                } else if (r == 0) {
                    limit = cfg->max_head + 1024;
                    if (avail >= limit) {
                        request_error(s, 431, "request head too large");
                        advanced = true;
                    }
                } else if (choose_target(s, data, &h->rq_m) != 0) {
                    h->rq_state = RQ_STOP;
                    h->pending_error = 503;
                    advanced = true;
                } else {
                    dispatch_head(s);
                    advanced = true;
                }
            }
            break;
        case RQ_WAIT_UP:
            if (pending)
                break;
            if (response_pending(s))
                return;
            dispatch_head(s);
            advanced = true;
            break;
        default: /* RQ_WAIT_UPGRADE, RQ_STOP */
            if (pending)
                break;
            if (s->down.eof)
                client_eof(s);
            return;
        }
        if (advanced)
            continue;
        if (pending) {
            int r = px_end_flush(s, &s->down, &s->up);
            if (r < 0)
                h->up_write_failed = true;
            else if (r == 0)
                return;
            continue;
        }
        /* Need more bytes from the client. */
        int r = px_end_read(s, &s->down, limit);
        if (r < 0) {
            px_session_kill(s, true);
            return;
        }
        if (r == 0) {
            if (s->down.eof)
                client_eof(s);
            else if (h->rq_state == RQ_HEAD && px_bytes_len(&s->down.in) == 0)
                px_bytes_trim(&s->down.in); /* idle keep-alive: give the buffer back */
            return;
        }
    }
}

/* ---------------------------------------------------------------- retries */

/* The oldest request failed for `why` before anything of its answer reached the client:
 * sends it again on a new connection, to another backend of its route when there is
 * one. Returns true if it did, or if it answered 503 itself (every connect failed at
 * once); false: the caller passes on the failure (the 503, or its own answer). */
static bool retry_oldest(px_session *s, px_retry_reason why)
{
    px_http *h = s->http;
    if (h->qlen != 1)
        return false;
    const px_req *q = &h->q[h->qhead];
    if (h->up_via.route < 0)
        return false;
    px_retry_req rr = {
        .method = (px_h1_method)q->method,
        .bodiless = q->bodiless && !q->upgrade,
        .alone = true,
        .answered = q->answered,
        .replayable = q->replay,
        .retries = h->up_retries,
    };
    struct sockaddr_storage t;
    char label[80];
    if (px_worker_retry(s->w, s->dir, why, &rr, &s->orig, &h->up_via, &h->up_tried, &t, label,
                        sizeof(label)) != 0)
        return false;
    h->up_retries++;
    if (why != PX_RETRY_CONNECT) {
        /* The server has seen the head (or part of it): what is still queued for it is
         * the rest of that head, and the kept copy replaces it. After a failed connect
         * everything is still queued, body included. */
        free(s->down.pre);
        s->down.pre = NULL;
        s->down.pre_len = s->down.pre_off = 0;
        px_bytes_consume(&s->down.in, s->down.fwd);
        s->down.fwd = 0;
        s->down.pre = malloc(h->replay_len);
        if (!s->down.pre) {
            px_session_kill(s, true);
            return true;
        }
        memcpy(s->down.pre, h->replay, h->replay_len);
        s->down.pre_len = h->replay_len;
    }
    px_session_close_up(s);
    h->up_write_failed = false;
    rs_reset(h);
    px_timer_stop(&s->timer); /* a fresh --connect-timeout for this attempt */
    for (;;) {
        if (px_session_connect(s, &t, label) == 0)
            return true;
        px_worker_backend_result(s->w, &h->up_via, false);
        rr.retries = h->up_retries;
        if (px_worker_retry(s->w, s->dir, PX_RETRY_CONNECT, &rr, &s->orig, &h->up_via, &h->up_tried,
                            &t, label, sizeof(label)) != 0) {
            local_reply(s, 503, "upstream connect error\n");
            return true;
        }
        h->up_retries++;
    }
}

/* ---------------------------------------------------------------- responses */

/* A whole response went to the client. */
static void response_done(px_session *s)
{
    px_http *h = s->http;
    bool close = !h->rs_keep_alive || h->rs_state == RS_CLOSE || h->draining;
    if (h->qlen > 0 && h->q[h->qhead].close)
        close = true;
    bool was_upgrade = h->qlen > 0 && h->q[h->qhead].upgrade;
    pop_request(s, h->rs_status);
    rs_reset(h);
    if (close) {
        h->close_after = true;
        h->rq_state = RQ_STOP;
        return;
    }
    if (was_upgrade && h->rq_state == RQ_WAIT_UPGRADE)
        h->rq_state = RQ_HEAD; /* the server said no to the upgrade: still HTTP */
    /* An answer owed for a refused request goes out from px_http_run, once the last
     * bytes of this response are written. */
}

/* No usable response: 502 for a malformed one, 503 when the server reset or closed
 * before sending anything (what Envoy answers too, so clients retry the same way). */
static void response_error(px_session *s, int status, const char *why)
{
    char dst[PX_ADDR_MAX];
    px_addr_format(&s->target, dst, sizeof(dst));
    ns_log(NS_LOG_WARN, "bad or missing HTTP response from upstream", "direction",
           px_dir_name(s->dir), "upstream", dst, "reason", why, NULL);
    px_stat_add(&px_st.dir[s->dir].resp_errors, 1);
    local_reply(s, status,
                status == 502 ? "bad response from upstream\n"
                              : "upstream closed before a response\n");
}

/* A response head is parsed at `buf` (after the up.fwd bytes already cleared): clear it
 * (rewritten when draining, then nothing else is pending) and set up its body. */
static void response_head(px_session *s, const char *buf)
{
    px_http *h = s->http;
    const px_h1_msg *m = &h->rs_m;
    h->rs_status = m->status;
    h->rs_keep_alive = (m->flags & PX_H1_KEEP_ALIVE) != 0;
    bool interim = (m->flags & PX_H1_INTERIM) != 0;
    px_timer_stop(&h->rq_timer); /* the answer has begun */
    if (interim && h->qlen > 0)
        h->q[h->qhead].answered = true;
    if (h->draining && !interim && m->body != PX_BODY_TUNNEL) {
        static const char cc[] = "connection: close\r\n";
        s->up.pre = px_h1_rewrite_head(buf, m, px_h1_is_connection_header, cc, sizeof(cc) - 1,
                                       &s->up.pre_len);
        if (!s->up.pre) {
            px_session_kill(s, true);
            return;
        }
        s->up.pre_off = 0;
        px_bytes_consume(&s->up.in, m->head_len);
    } else {
        s->up.fwd += m->head_len;
    }
    if (interim) { /* 100 Continue and friends: the final response follows */
        rs_reset(h);
        return;
    }
    switch (m->body) {
    case PX_BODY_LENGTH:
        h->rs_left = m->content_length;
        h->rs_state = RS_BODY;
        break;
    case PX_BODY_CHUNKED:
        px_chunked_init(&h->rs_ch);
        h->rs_state = RS_CHUNKED;
        break;
    case PX_BODY_CLOSE:
        h->rs_state = RS_CLOSE;
        break;
    case PX_BODY_TUNNEL:
        pop_request(s, h->rs_status);
        h->tunnel = true;
        break;
    default:
        response_done(s);
        break;
    }
}

/* The server closed its side (or reset). */
static void upstream_eof(px_session *s, bool reset)
{
    px_http *h = s->http;
    uint32_t avail = px_bytes_len(&s->up.in);
    if (h->rs_state == RS_CLOSE && !reset) {
        response_done(s);
        h->close_after = true;
        return;
    }
    if (h->rs_state == RS_HEAD && h->qlen == 0 && avail == 0) {
        /* An idle keep-alive connection closed by the server: the next request opens
         * another one. */
        px_session_close_up(s);
        if (h->pending_error)
            owed_reply(s);
        return;
    }
    if (h->rs_state == RS_HEAD) {
        if (h->qlen > 0)
            px_worker_backend_result(s->w, &h->up_via, false);
        if (avail == 0 && retry_oldest(s, PX_RETRY_RESET))
            return;
        if (avail == 0)
            response_error(s, 503,
                           reset ? "connection reset before a response"
                                 : "connection closed before a response");
        else
            response_error(s, 502, "connection closed in the middle of a response head");
        return;
    }
    /* Part of the body is with the client already: only a reset says it is cut. */
    px_session_kill(s, true);
}

/* Moves response bytes up -> down, clearing as much as the framing allows before each
 * write (a head and its body go out in one). */
static void rs_step(px_session *s)
{
    px_http *h = s->http;
    const px_config *cfg = cfg_of(s);
    for (;;) {
        if (s->state != PX_S_HTTP)
            return;
        bool pending = s->up.pre_len > s->up.pre_off || s->up.fwd > 0;
        uint32_t off = s->up.fwd;
        uint32_t avail = px_bytes_len(&s->up.in) - off;
        const char *data = s->up.in.data + s->up.in.start + off;
        uint32_t limit = cfg->buffer_size;
        bool advanced = false;
        switch (h->tunnel || h->close_after || s->up.pre ? -1 : h->rs_state) {
        case RS_BODY:
            if (avail > 0) {
                uint32_t n = avail < h->rs_left ? avail : (uint32_t)h->rs_left;
                s->up.fwd += n;
                h->rs_left -= n;
                if (h->rs_left == 0)
                    response_done(s);
                advanced = true;
            }
            break;
        case RS_CHUNKED:
            if (avail > 0) {
                size_t used = 0;
                int r = px_chunked_feed(&h->rs_ch, data, avail, &used);
                if (r < 0) {
                    px_stat_add(&px_st.dir[s->dir].resp_errors, 1);
                    px_session_kill(s, true);
                    return;
                }
                s->up.fwd += (uint32_t)used;
                if (r == 1)
                    response_done(s);
                advanced = true;
            }
            break;
        case RS_CLOSE:
            if (avail > 0) {
                s->up.fwd += avail;
                advanced = true;
            }
            break;
        case RS_HEAD:
            if (avail == 0)
                break;
            if (h->qlen == 0) {
                if (pending)
                    break;
                /* Bytes nobody asked for (a server's "408" before closing an idle
                 * connection): drop them with the connection. */
                px_session_close_up(s);
                return;
            }
            if (pending && h->draining)
                break; /* the rewritten head must come first in the buffer */
            {
                int r = px_h1_parse(&h->rs_p, data, avail, &h->rs_m);
                if (r == 0) {
                    limit = cfg->max_head + 1024;
                    if (avail < limit)
                        break;
                }
                if (r <= 0) {
                    if (pending)
                        break; /* answer 502 after what the client is owed */
                    px_worker_backend_result(s->w, &h->up_via, false);
                    response_error(s, 502,
                                   r < 0 ? px_h1_reason(&h->rs_p) : "response head too large");
                    advanced = true;
                    break;
                }
                if (!(h->rs_m.flags & PX_H1_INTERIM)) {
                    /* A 503 may be retried on another connection: decide once what went
                     * before it is out to the client. */
                    if (h->rs_m.status == 503 && pending)
                        break;
                    px_worker_backend_result(s->w, &h->up_via, h->rs_m.status < 500);
                    if (h->rs_m.status == 503 && retry_oldest(s, PX_RETRY_503)) {
                        advanced = true;
                        break;
                    }
                }
                response_head(s, data);
                advanced = true;
            }
            break;
        default:
            break;
        }
        if (s->state != PX_S_HTTP)
            return;
        if (advanced)
            continue;
        if (pending) {
            int r = px_end_flush(s, &s->up, &s->down);
            if (r < 0) {
                px_session_kill(s, true); /* the client is gone */
                return;
            }
            if (r == 0)
                return;
            continue;
        }
        if (h->tunnel) {
            s->state = PX_S_RAW;
            return;
        }
        if (h->close_after) {
            px_session_linger(s);
            return;
        }
        if (s->up.io.fd < 0 || s->up.connecting)
            return;
        int r = px_end_read(s, &s->up, limit);
        if (r < 0) {
            upstream_eof(s, true);
            continue;
        }
        if (r == 0) {
            if (s->up.eof) {
                upstream_eof(s, false);
                continue;
            }
            if (h->qlen == 0 && px_bytes_len(&s->up.in) == 0)
                px_bytes_trim(&s->up.in);
            return;
        }
    }
}

void px_http_run(px_session *s)
{
    px_http *h = s->http;
    /* Responses first: they free pipeline slots and may unblock the request side. */
    while (s->state == PX_S_HTTP) {
        unsigned before_q = h->qlen;
        int before_rq = h->rq_state;
        rs_step(s);
        if (s->state != PX_S_HTTP)
            return;
        if (h->qlen == 0 && h->pending_error && h->rs_state == RS_HEAD && !h->close_after &&
            s->up.pre_len == 0 && s->up.fwd == 0) {
            owed_reply(s);
            continue;
        }
        rq_step(s);
        if (h->qlen == before_q && h->rq_state == before_rq)
            break;
    }
}

void px_http_up_failed(px_session *s, int err)
{
    px_http *h = s->http;
    const char *why = err == ETIMEDOUT ? "upstream connect timeout\n" : "upstream connect error\n";
    if (h->qlen == 0) {
        px_session_close_up(s); /* the next request tries again */
        return;
    }
    px_worker_backend_result(s->w, &h->up_via, false);
    if (retry_oldest(s, PX_RETRY_CONNECT))
        return;
    local_reply(s, 503, why);
}

void px_http_request_timer_cb(px_timer *t)
{
    px_http *h = (px_http *)(void *)((char *)t - offsetof(px_http, rq_timer));
    px_session *s = h->s;
    if (s->state != PX_S_HTTP || h->qlen == 0 || h->rs_state != RS_HEAD || h->close_after)
        return;
    if ((s->up.pre_len > 0 || s->up.fwd > 0) && s->up.readable) {
        /* The server has sent more, unread only because the client is slow to take the
         * answer before it: not the server's delay. */
        arm_request_timer(s);
        return;
    }
    px_stat_add(&px_st.dir[s->dir].timeouts_req, 1);
    px_worker_backend_result(s->w, &h->up_via, false);
    char dst[PX_ADDR_MAX];
    px_addr_format(&s->target, dst, sizeof(dst));
    ns_log(NS_LOG_DEBUG, "no response within --request-timeout: 504", "direction",
           px_dir_name(s->dir), "upstream", dst, NULL);
    if (s->up.pre_len == 0 && s->up.fwd == 0) {
        local_reply(s, 504, "upstream request timeout\n");
    } else {
        /* The end of the answer before it is still on its way to the client: the 504
         * follows it, and whatever this upstream still sends is dropped with it. */
        h->qlen = 0;
        h->rq_state = RQ_STOP;
        h->pending_error = 504;
    }
    px_session_run(s);
}

void px_http_header_timeout(px_session *s)
{
    px_http *h = s->http;
    if (h->qlen == 0 && s->up.pre_len == 0 && s->up.fwd == 0) {
        local_reply(s, 408, "request head not received in time\n");
        px_session_run(s);
        return;
    }
    h->rq_state = RQ_STOP;
    h->pending_error = 408;
}

void px_http_drain(px_session *s)
{
    px_http *h = s->http;
    h->draining = true;
    if (http_idle(s))
        px_session_kill(s, false);
}

int px_http_timer_kind(const px_session *s)
{
    const px_http *h = s->http;
    if (h->qlen > 0 || h->close_after || h->rq_state != RQ_HEAD)
        return PX_T_IDLE;
    if (px_bytes_len(&s->down.in) > 0)
        return PX_T_HEADER;
    return PX_T_HTTP_IDLE;
}

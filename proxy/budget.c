/* budget.c - retry budget over one-second buckets; consecutive-failure ejection; retry
 * rules. */
#include "budget.h"

#include <string.h>

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

void px_budget_init(px_budget *b, const px_budget_cfg *cfg)
{
    memset(b, 0, sizeof *b);
    b->cfg = (px_budget_cfg){.ratio_pct = 20, .min_per_sec = 3, .window_s = 10};
    if (cfg) {
        if (cfg->ratio_pct)
            b->cfg.ratio_pct = cfg->ratio_pct;
        if (cfg->min_per_sec)
            b->cfg.min_per_sec = cfg->min_per_sec;
        if (cfg->window_s)
            b->cfg.window_s = cfg->window_s > PX_BUDGET_BUCKETS ? PX_BUDGET_BUCKETS : cfg->window_s;
    }
    for (int i = 0; i < PX_BUDGET_BUCKETS; i++)
        b->epoch[i] = INT64_MIN;
}

/* The bucket counting second `sec`, emptied first if it still holds an older second. */
static int bucket(px_budget *b, int64_t sec)
{
    int64_t w = b->cfg.window_s;
    int i = (int)(((sec % w) + w) % w);
    if (b->epoch[i] != sec) {
        b->epoch[i] = sec;
        b->requests[i] = 0;
        b->retries[i] = 0;
    }
    return i;
}

static void add(uint32_t *x)
{
    if (*x < UINT32_MAX)
        (*x)++;
}

void px_budget_request(px_budget *b, int64_t now_ms)
{
    add(&b->requests[bucket(b, floor_div(now_ms, 1000))]);
}

void px_budget_counts(const px_budget *b, int64_t now_ms, uint64_t *requests, uint64_t *retries)
{
    int64_t sec = floor_div(now_ms, 1000);
    uint64_t req = 0, ret = 0;
    for (uint32_t i = 0; i < b->cfg.window_s; i++) {
        /* Buckets of seconds (sec - window, sec] are in the window; older ones are stale,
         * newer ones (a clock that went back) are ignored rather than trusted. */
        if (b->epoch[i] != INT64_MIN && b->epoch[i] <= sec &&
            b->epoch[i] > sec - (int64_t)b->cfg.window_s) {
            req += b->requests[i];
            ret += b->retries[i];
        }
    }
    if (requests)
        *requests = req;
    if (retries)
        *retries = ret;
}

bool px_budget_try_retry(px_budget *b, int64_t now_ms)
{
    uint64_t req, ret;
    px_budget_counts(b, now_ms, &req, &ret);
    /* retries + 1 <= ratio * requests + min_per_sec * window, in hundredths. */
    uint64_t allowed =
        (uint64_t)b->cfg.ratio_pct * req + 100u * (uint64_t)b->cfg.min_per_sec * b->cfg.window_s;
    if (100u * (ret + 1) > allowed)
        return false;
    add(&b->retries[bucket(b, floor_div(now_ms, 1000))]);
    return true;
}

void px_outlier_init(px_outlier *o, size_t n, const px_outlier_cfg *cfg)
{
    memset(o, 0, sizeof *o);
    o->n = n > PX_OUTLIER_MAX ? PX_OUTLIER_MAX : n;
    o->cfg = (px_outlier_cfg){.consecutive = 5, .base_ms = 30000, .max_ms = 300000, .max_pct = 50};
    if (cfg) {
        if (cfg->consecutive)
            o->cfg.consecutive = cfg->consecutive;
        if (cfg->base_ms > 0)
            o->cfg.base_ms = cfg->base_ms;
        if (cfg->max_ms > 0)
            o->cfg.max_ms = cfg->max_ms;
        if (cfg->max_pct)
            o->cfg.max_pct = cfg->max_pct > 100 ? 100 : cfg->max_pct;
    }
    if (o->cfg.max_ms < o->cfg.base_ms)
        o->cfg.max_ms = o->cfg.base_ms;
}

/* Brings host i back if its time is over (noting it for px_outlier_update), and lowers
 * its multiplier by one per base period it has stayed back since. */
static void refresh(px_outlier *o, size_t i, int64_t now)
{
    px_outlier_host *h = &o->hosts[i];
    if (h->until_ms) {
        if (now < h->until_ms)
            return;
        h->back_ms = h->until_ms;
        h->until_ms = 0;
        h->came_back = true;
    }
    if (h->times && now > h->back_ms) {
        int64_t periods = (now - h->back_ms) / o->cfg.base_ms;
        if (periods > 0) {
            h->times = (int64_t)h->times > periods ? h->times - (uint32_t)periods : 0;
            h->back_ms += periods * o->cfg.base_ms;
        }
    }
}

uint64_t px_outlier_ejected(px_outlier *o, int64_t now_ms)
{
    uint64_t mask = 0;
    for (size_t i = 0; i < o->n; i++) {
        refresh(o, i, now_ms);
        if (o->hosts[i].until_ms)
            mask |= 1ull << i;
    }
    return mask;
}

void px_outlier_success(px_outlier *o, size_t i, int64_t now_ms)
{
    if (i >= o->n)
        return;
    refresh(o, i, now_ms);
    o->hosts[i].failures = 0;
}

bool px_outlier_failure(px_outlier *o, size_t i, int64_t now_ms)
{
    if (i >= o->n)
        return false;
    px_outlier_host *h = &o->hosts[i];
    refresh(o, i, now_ms);
    if (h->until_ms)
        return false;
    if (h->failures < UINT32_MAX)
        h->failures++;
    if (h->failures < o->cfg.consecutive)
        return false;
    /* Over the cap the host stays in, its failure count kept, so that it goes out as
     * soon as another comes back. */
    uint64_t ejected = px_outlier_ejected(o, now_ms);
    size_t count = (size_t)__builtin_popcountll(ejected);
    if ((count + 1) * 100 > o->n * o->cfg.max_pct)
        return false;
    int64_t cap = o->cfg.max_ms / o->cfg.base_ms + 1;
    if ((int64_t)h->times < cap)
        h->times++;
    int64_t d = o->cfg.base_ms * h->times;
    if (d > o->cfg.max_ms)
        d = o->cfg.max_ms;
    h->until_ms = now_ms + d;
    if (h->until_ms == 0)
        h->until_ms = 1; /* 0 means "not ejected" */
    h->failures = 0;
    return true;
}

uint64_t px_outlier_update(px_outlier *o, int64_t now_ms, uint64_t *back)
{
    uint64_t mask = px_outlier_ejected(o, now_ms);
    uint64_t came = 0;
    for (size_t i = 0; i < o->n; i++) {
        if (o->hosts[i].came_back)
            came |= 1ull << i;
        o->hosts[i].came_back = false;
    }
    if (back)
        *back = came;
    return mask;
}

size_t px_outlier_pending(const px_outlier *o)
{
    size_t n = 0;
    for (size_t i = 0; i < o->n; i++)
        n += (o->hosts[i].until_ms != 0) + o->hosts[i].came_back;
    return n;
}

int px_outlier_pick(px_route *r, uint64_t unusable, uint64_t ejected, uint64_t tried)
{
    int i = px_routes_pick(r, unusable | ejected | tried);
    if (i < 0 && tried)
        i = px_routes_pick(r, unusable | ejected);
    if (i < 0 && ejected)
        i = px_routes_pick(r, unusable);
    return i;
}

static bool same_host(const px_route *a, const px_route *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

static bool same_backend(const px_backend *a, const px_backend *b)
{
    return a->port == b->port && px_ip_eq(&a->addr, &b->addr) && strcmp(a->host, b->host) == 0;
}

/* Re-indexes `o` from the backends of route `from` to those of route `to`. */
static void reindex(px_outlier *o, const px_route *from, const px_route *to)
{
    px_outlier_host hosts[PX_OUTLIER_MAX];
    size_t n = to->nbackends > PX_OUTLIER_MAX ? PX_OUTLIER_MAX : to->nbackends;
    memset(hosts, 0, sizeof(hosts));
    for (size_t k = 0; k < n; k++) {
        /* Same position first: most updates only change weights. */
        if (k < o->n && k < from->nbackends && same_backend(&to->backends[k], &from->backends[k])) {
            hosts[k] = o->hosts[k];
            continue;
        }
        for (size_t j = 0; j < o->n && j < from->nbackends; j++) {
            if (same_backend(&to->backends[k], &from->backends[j])) {
                hosts[k] = o->hosts[j];
                break;
            }
        }
    }
    memcpy(o->hosts, hosts, sizeof(hosts));
    o->n = n;
}

void px_outlier_adopt(px_outlier **next_st, const px_routes *next, px_outlier **old_st,
                      const px_routes *old)
{
    if (!next || !old || !next_st || !old_st)
        return;
    for (size_t i = 0; i < old->nroutes; i++) {
        if (!old_st[i])
            continue;
        const px_route *o = &old->routes[i];
        size_t j = i;
        /* The operator writes routes in a stable order: try the same index first. */
        if (j >= next->nroutes || !same_host(&next->routes[j], o)) {
            for (j = 0; j < next->nroutes; j++)
                if (same_host(&next->routes[j], o))
                    break;
        }
        if (j >= next->nroutes || next_st[j])
            continue;
        reindex(old_st[i], o, &next->routes[j]);
        next_st[j] = old_st[i];
        old_st[i] = NULL;
    }
}

bool px_retry_allowed(px_retry_reason why, const px_retry_req *r, unsigned max_retries)
{
    if (r->retries >= max_retries)
        return false;
    if (why == PX_RETRY_CONNECT)
        return true;
    if (why != PX_RETRY_503 && why != PX_RETRY_RESET)
        return false;
    /* The server may have acted on the request: only what RFC 9110 lets a client send
     * twice, and only when sending it again changes nothing the client has seen. */
    return px_h1_method_idempotent(r->method) && r->bodiless && r->alone && !r->answered &&
           r->replayable;
}

const char *px_retry_reason_name(px_retry_reason why)
{
    switch (why) {
    case PX_RETRY_CONNECT:
        return "connect";
    case PX_RETRY_503:
        return "503";
    case PX_RETRY_RESET:
        return "reset";
    default:
        return "other";
    }
}

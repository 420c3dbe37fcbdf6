/* budget.c - retry budget over one-second buckets; consecutive-failure ejection. */
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

/* Brings host h back if its time is over, and lowers its multiplier by one per base
 * period it has stayed back since. */
static void refresh(const px_outlier *o, px_outlier_host *h, int64_t now)
{
    if (h->until_ms) {
        if (now < h->until_ms)
            return;
        h->back_ms = h->until_ms;
        h->until_ms = 0;
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
        refresh(o, &o->hosts[i], now_ms);
        if (o->hosts[i].until_ms)
            mask |= 1ull << i;
    }
    return mask;
}

void px_outlier_success(px_outlier *o, size_t i, int64_t now_ms)
{
    if (i >= o->n)
        return;
    refresh(o, &o->hosts[i], now_ms);
    o->hosts[i].failures = 0;
}

bool px_outlier_failure(px_outlier *o, size_t i, int64_t now_ms)
{
    if (i >= o->n)
        return false;
    px_outlier_host *h = &o->hosts[i];
    refresh(o, h, now_ms);
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

/* test_resilience.c - what the data path decides with budget.h when a backend fails: which
 * requests may be retried and why, picks that avoid ejected and already-tried backends
 * (and ignore ejections when nothing else is left), ejections that end being reported
 * once, and outlier state carried over a route table swap backend by backend. */
#include "budget.h"
#include "suites.h"

#include <stdlib.h>

static px_routes *parse(const char *json)
{
    px_routes *t = NULL;
    ns_err err = {0};
    int rc = px_routes_parse(json, strlen(json), &t, &err);
    if (rc != 0)
        fprintf(stderr, "\n  unexpected error: %s\n", err.msg);
    NS_ASSERT_INT_EQ(rc, 0);
    return t;
}

/* ---------------------------------------------------------------- retry rules */

static px_retry_req retryable_get(void)
{
    return (px_retry_req){
        .method = PX_M_GET,
        .bodiless = true,
        .alone = true,
        .answered = false,
        .replayable = true,
        .retries = 0,
    };
}

static void test_retry_after_connect_failure(void)
{
    /* Nothing reached the server: any request, body or not, pipelined or not. */
    px_retry_req post = {.method = PX_M_POST, .bodiless = false, .alone = false};
    CU_ASSERT_TRUE(px_retry_allowed(PX_RETRY_CONNECT, &post, 2));
    post.retries = 1;
    CU_ASSERT_TRUE(px_retry_allowed(PX_RETRY_CONNECT, &post, 2));
    post.retries = 2;
    CU_ASSERT_FALSE(px_retry_allowed(PX_RETRY_CONNECT, &post, 2));
    post.retries = 0;
    CU_ASSERT_FALSE(px_retry_allowed(PX_RETRY_CONNECT, &post, 0));
    px_retry_req get = retryable_get();
    CU_ASSERT_FALSE(px_retry_allowed(PX_RETRY_CONNECT, &get, 0));
}

static void test_retry_after_503_or_reset(void)
{
    static const px_h1_method idempotent[] = {PX_M_GET,    PX_M_HEAD,    PX_M_PUT,
                                              PX_M_DELETE, PX_M_OPTIONS, PX_M_TRACE};
    static const px_h1_method unsafe[] = {PX_M_POST, PX_M_PATCH, PX_M_CONNECT, PX_M_OTHER,
                                          PX_M_NONE};
    const px_retry_reason whys[] = {PX_RETRY_503, PX_RETRY_RESET};
    for (size_t w = 0; w < 2; w++) {
        px_retry_reason why = whys[w];
        for (size_t i = 0; i < sizeof(idempotent) / sizeof(idempotent[0]); i++) {
            px_retry_req r = retryable_get();
            r.method = idempotent[i];
            CU_ASSERT_TRUE(px_retry_allowed(why, &r, 2));
        }
        for (size_t i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++) {
            px_retry_req r = retryable_get();
            r.method = unsafe[i];
            CU_ASSERT_FALSE(px_retry_allowed(why, &r, 2));
        }
        /* Each condition alone forbids it. */
        px_retry_req r = retryable_get();
        r.bodiless = false;
        CU_ASSERT_FALSE(px_retry_allowed(why, &r, 2));
        r = retryable_get();
        r.alone = false;
        CU_ASSERT_FALSE(px_retry_allowed(why, &r, 2));
        r = retryable_get();
        r.answered = true;
        CU_ASSERT_FALSE(px_retry_allowed(why, &r, 2));
        r = retryable_get();
        r.replayable = false;
        CU_ASSERT_FALSE(px_retry_allowed(why, &r, 2));
        r = retryable_get();
        r.retries = 2;
        CU_ASSERT_FALSE(px_retry_allowed(why, &r, 2));
        r.retries = 1;
        CU_ASSERT_TRUE(px_retry_allowed(why, &r, 2));
        CU_ASSERT_FALSE(px_retry_allowed(why, &r, 1));
    }
    px_retry_req r = retryable_get();
    CU_ASSERT_FALSE(px_retry_allowed(PX_RETRY_NREASONS, &r, 2));
    NS_ASSERT_STR_EQ(px_retry_reason_name(PX_RETRY_CONNECT), "connect");
    NS_ASSERT_STR_EQ(px_retry_reason_name(PX_RETRY_503), "503");
    NS_ASSERT_STR_EQ(px_retry_reason_name(PX_RETRY_RESET), "reset");
}

const ns_test retry_tests[] = {
    {"after a failed connect", test_retry_after_connect_failure},
    {"after a 503 or a close", test_retry_after_503_or_reset},
    {NULL, NULL},
};

/* ---------------------------------------------------------------- picks */

static const char *three =
    "{\"version\": 1, \"routes\": [{\"host\": \"svc.ns.svc.cluster.local\", \"backends\": ["
    " {\"host\": \"a\", \"address\": \"10.0.0.1\", \"port\": 80, \"weight\": 1},"
    " {\"host\": \"b\", \"address\": \"10.0.0.2\", \"port\": 80, \"weight\": 1},"
    " {\"host\": \"c\", \"address\": \"10.0.0.3\", \"port\": 80, \"weight\": 2}]}]}";

/* How many times each backend is picked in `n` picks. */
static void count_picks(px_route *r, uint64_t unusable, uint64_t ejected, uint64_t tried, int n,
                        int counts[4])
{
    memset(counts, 0, 4 * sizeof(int));
    for (int i = 0; i < n; i++) {
        int b = px_outlier_pick(r, unusable, ejected, tried);
        counts[b >= 0 && b < 3 ? b : 3]++;
    }
}

static void test_pick_avoids_ejected_and_tried(void)
{
    px_routes *t = parse(three);
    if (!t)
        return;
    px_route *r = &t->routes[0];
    int c[4];
    count_picks(r, 0, 0, 0, 400, c);
    NS_ASSERT_INT_EQ(c[0], 100);
    NS_ASSERT_INT_EQ(c[1], 100);
    NS_ASSERT_INT_EQ(c[2], 200);
    /* b ejected: a and c share its traffic by their weights, exactly. */
    count_picks(r, 0, 1u << 1, 0, 300, c);
    NS_ASSERT_INT_EQ(c[0], 100);
    NS_ASSERT_INT_EQ(c[1], 0);
    NS_ASSERT_INT_EQ(c[2], 200);
    /* A retry after c failed, b ejected: a. */
    count_picks(r, 0, 1u << 1, 1u << 2, 10, c);
    NS_ASSERT_INT_EQ(c[0], 10);
    /* a and c both failed it, b ejected: back to one that failed it rather than to the
     * ejected one. */
    count_picks(r, 0, 1u << 1, 1u << 0 | 1u << 2, 30, c);
    NS_ASSERT_INT_EQ(c[1], 0);
    NS_ASSERT_INT_EQ(c[0], 10);
    NS_ASSERT_INT_EQ(c[2], 20);
    /* Everything usable ejected: ejections are ignored (panic), unusable never picked. */
    count_picks(r, 1u << 0, 1u << 1 | 1u << 2, 0, 30, c);
    NS_ASSERT_INT_EQ(c[0], 0);
    NS_ASSERT_INT_EQ(c[1], 10);
    NS_ASSERT_INT_EQ(c[2], 20);
    count_picks(r, 0, 0x7, 0x7, 40, c);
    NS_ASSERT_INT_EQ(c[0], 10);
    NS_ASSERT_INT_EQ(c[1], 10);
    NS_ASSERT_INT_EQ(c[2], 20);
    /* Nothing usable: -1. */
    NS_ASSERT_INT_EQ(px_outlier_pick(r, 0x7, 0, 0), -1);
    NS_ASSERT_INT_EQ(px_outlier_pick(r, 0x7, 0x7, 0x7), -1);
    px_routes_free(t);

    /* Only a zero-weight backend left after an ejection: the ejected one still serves. */
    t = parse("{\"version\": 1, \"routes\": [{\"host\": \"x\", \"backends\": ["
              " {\"host\": \"a\", \"weight\": 1}, {\"host\": \"b\", \"weight\": 0}]}]}");
    if (!t)
        return;
    NS_ASSERT_INT_EQ(px_outlier_pick(&t->routes[0], 0, 1u << 0, 0), 0);
    NS_ASSERT_INT_EQ(px_outlier_pick(&t->routes[0], 0, 1u << 0, 1u << 0), 0);
    px_routes_free(t);
}

const ns_test pick_tests[] = {
    {"ejected and tried backends avoided", test_pick_avoids_ejected_and_tried},
    {NULL, NULL},
};

/* ---------------------------------------------------------------- reporting */

static void eject(px_outlier *o, size_t i, int64_t t)
{
    for (uint32_t k = 0; k < o->cfg.consecutive; k++)
        px_outlier_failure(o, i, t);
}

static void test_returns_reported_once(void)
{
    px_outlier o;
    px_outlier_init(&o, 2, NULL);
    uint64_t back = 99;
    NS_ASSERT_INT_EQ(px_outlier_update(&o, 0, &back), 0);
    NS_ASSERT_INT_EQ(back, 0);
    eject(&o, 1, 1000);
    NS_ASSERT_INT_EQ(px_outlier_pending(&o), 1);
    NS_ASSERT_INT_EQ(px_outlier_update(&o, 30999, &back), 2);
    NS_ASSERT_INT_EQ(back, 0);
    /* Its time is over: reported back once, and nothing pending after. */
    NS_ASSERT_INT_EQ(px_outlier_update(&o, 31000, &back), 0);
    NS_ASSERT_INT_EQ(back, 2);
    NS_ASSERT_INT_EQ(px_outlier_pending(&o), 0);
    NS_ASSERT_INT_EQ(px_outlier_update(&o, 31001, &back), 0);
    NS_ASSERT_INT_EQ(back, 0);

    /* A return noticed by a success (or failure) is still reported by the next update. */
    eject(&o, 0, 40000);
    NS_ASSERT_INT_EQ(px_outlier_update(&o, 40000, NULL), 1);
    px_outlier_success(&o, 0, 100000);
    NS_ASSERT_INT_EQ(px_outlier_pending(&o), 1);
    NS_ASSERT_INT_EQ(px_outlier_update(&o, 100000, &back), 0);
    NS_ASSERT_INT_EQ(back, 1);
    NS_ASSERT_INT_EQ(px_outlier_pending(&o), 0);

    /* Back and out again before any update: pending counts both (a gauge fed with +1 per
     * ejection and -1 per report holds 2), the update reports one return. */
    px_outlier_init(&o, 2, NULL);
    eject(&o, 0, 0);
    eject(&o, 0, 30000);
    NS_ASSERT_INT_EQ(px_outlier_pending(&o), 2);
    NS_ASSERT_INT_EQ(px_outlier_update(&o, 30000, &back), 1);
    NS_ASSERT_INT_EQ(back, 1);
    NS_ASSERT_INT_EQ(px_outlier_pending(&o), 1);
}

/* ---------------------------------------------------------------- table swaps */

static const char *old_table =
    "{\"version\": 1, \"routes\": ["
    " {\"host\": \"reviews.default.svc.cluster.local\", \"port\": 80, \"backends\": ["
    "  {\"host\": \"v1\", \"address\": \"10.0.0.1\", \"port\": 8081, \"weight\": 90},"
    "  {\"host\": \"v2\", \"address\": \"10.0.0.2\", \"port\": 8082, \"weight\": 10},"
    "  {\"host\": \"v3\", \"address\": \"10.0.0.3\", \"port\": 8083, \"weight\": 1}]},"
    " {\"host\": \"ratings.default.svc.cluster.local\", \"backends\": ["
    "  {\"host\": \"r1\", \"address\": \"10.0.1.1\", \"weight\": 1},"
    "  {\"host\": \"r2\", \"address\": \"10.0.1.2\", \"weight\": 1}]},"
    " {\"host\": \"gone.default.svc.cluster.local\", \"backends\": ["
    "  {\"host\": \"g1\", \"address\": \"10.0.2.1\", \"weight\": 1},"
    "  {\"host\": \"g2\", \"address\": \"10.0.2.2\", \"weight\": 1}]}]}";

/* Reordered routes; reviews: v1 removed, v2 reweighted and moved, v3 re-addressed, v4
 * new; ratings on a port now (another route); gone removed. */
static const char *new_table =
    "{\"version\": 2, \"routes\": ["
    " {\"host\": \"ratings.default.svc.cluster.local\", \"port\": 9080, \"backends\": ["
    "  {\"host\": \"r1\", \"address\": \"10.0.1.1\", \"weight\": 1},"
    "  {\"host\": \"r2\", \"address\": \"10.0.1.2\", \"weight\": 1}]},"
    " {\"host\": \"reviews.default.svc.cluster.local\", \"port\": 80, \"backends\": ["
    "  {\"host\": \"v3\", \"address\": \"10.0.0.99\", \"port\": 8083, \"weight\": 1},"
    "  {\"host\": \"v4\", \"address\": \"10.0.0.4\", \"port\": 8084, \"weight\": 50},"
    "  {\"host\": \"v2\", \"address\": \"10.0.0.2\", \"port\": 8082, \"weight\": 50}]}]}";

static px_outlier *state(size_t n)
{
    px_outlier *o = malloc(sizeof(*o));
    if (o)
        px_outlier_init(o, n, NULL);
    return o;
}

static void test_adopt_by_backend(void)
{
    px_routes *old = parse(old_table), *next = parse(new_table);
    px_outlier *old_st[3] = {state(3), state(2), state(2)};
    px_outlier *next_st[2] = {NULL, NULL};
    if (!old || !next || !old_st[0] || !old_st[1] || !old_st[2])
        goto out;
    px_outlier *reviews = old_st[0];
    eject(old_st[0], 1, 1000); /* v2 out until 31000 */
    eject(old_st[0], 2, 1000); /* v3: kept in (one of three at most), 5 failures */
    px_outlier_failure(old_st[0], 0, 1000);
    eject(old_st[1], 0, 1000);
    px_outlier_adopt(next_st, next, old_st, old);

    /* reviews moved from index 0 to 1, with its object. */
    CU_ASSERT_PTR_NULL(old_st[0]);
    CU_ASSERT_PTR_EQUAL(next_st[1], reviews);
    if (next_st[1]) {
        px_outlier *o = next_st[1];
        NS_ASSERT_INT_EQ(o->n, 3);
        /* v3 (new address) and v4 (new) start clean; v2 keeps its ejection. */
        NS_ASSERT_INT_EQ(o->hosts[0].until_ms, 0);
        NS_ASSERT_INT_EQ(o->hosts[0].failures, 0);
        NS_ASSERT_INT_EQ(o->hosts[1].until_ms, 0);
        NS_ASSERT_INT_EQ(o->hosts[2].until_ms, 31000);
        NS_ASSERT_INT_EQ(o->hosts[2].times, 1);
        NS_ASSERT_INT_EQ(px_outlier_update(o, 30999, NULL), 1u << 2);
        NS_ASSERT_INT_EQ(px_outlier_pending(o), 1);
    }
    /* ratings changed its port: another route, which starts clean; gone is gone. */
    CU_ASSERT_PTR_NULL(next_st[0]);
    CU_ASSERT_PTR_NOT_NULL(old_st[1]);
    CU_ASSERT_PTR_NOT_NULL(old_st[2]);

    /* The same table again (a reload that changed nothing): every state stays in place,
     * failure counts included. */
    px_outlier *again[2] = {NULL, NULL};
    px_routes *same = parse(new_table);
    if (same && next_st[1]) {
        px_outlier_failure(next_st[1], 1, 2000);
        px_outlier_failure(next_st[1], 1, 2000);
        px_outlier_adopt(again, same, next_st, next);
        CU_ASSERT_PTR_NULL(again[0]);
        CU_ASSERT_PTR_EQUAL(again[1], reviews);
        NS_ASSERT_INT_EQ(reviews->hosts[1].failures, 2);
        NS_ASSERT_INT_EQ(reviews->hosts[2].until_ms, 31000);
        CU_ASSERT_PTR_NULL(next_st[1]);
    }
    /* A route that already has state is not overwritten; NULLs are fine. */
    px_outlier *taken = state(3);
    px_outlier *into[2] = {NULL, taken};
    if (same && again[1]) {
        px_outlier_adopt(into, same, again, same);
        CU_ASSERT_PTR_EQUAL(into[1], taken);
        CU_ASSERT_PTR_EQUAL(again[1], reviews);
    }
    px_outlier_adopt(NULL, same, again, same);
    px_outlier_adopt(into, NULL, again, same);
    px_outlier_adopt(into, same, again, NULL);
    free(taken);
    free(again[0]);
    free(again[1]);
    px_routes_free(same);
out:
    for (int i = 0; i < 3; i++)
        free(old_st[i]);
    for (int i = 0; i < 2; i++)
        free(next_st[i]);
    px_routes_free(old);
    px_routes_free(next);
}

const ns_test health_tests[] = {
    {"returns reported once", test_returns_reported_once},
    {"state kept per backend over a swap", test_adopt_by_backend},
    {NULL, NULL},
};

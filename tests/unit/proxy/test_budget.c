/* test_budget.c - retry budget and outlier ejection over a simulated clock. */
#include "budget.h"
#include "suites.h"

/* Retries granted out of `asks` tries at time t. */
static int retries(px_budget *b, int64_t t, int asks)
{
    int n = 0;
    for (int i = 0; i < asks; i++)
        n += px_budget_try_retry(b, t);
    return n;
}

static void test_budget_floor(void)
{
    /* No traffic at all: the floor of 3 per second over 10 s is 30 retries. */
    px_budget b;
    px_budget_init(&b, NULL);
    NS_ASSERT_INT_EQ(retries(&b, 1000, 100), 30);
    uint64_t req, ret;
    px_budget_counts(&b, 1000, &req, &ret);
    NS_ASSERT_INT_EQ(req, 0);
    NS_ASSERT_INT_EQ(ret, 30);
    /* Still spent 9.999 s later, back once their second leaves the window. */
    NS_ASSERT_INT_EQ(retries(&b, 10999, 1), 0);
    NS_ASSERT_INT_EQ(retries(&b, 11000, 100), 30);
}

static void test_budget_ratio(void)
{
    /* 100 requests in the window: 20 % of them on top of the floor. */
    px_budget b;
    px_budget_init(&b, NULL);
    for (int i = 0; i < 100; i++)
        px_budget_request(&b, 5000);
    NS_ASSERT_INT_EQ(retries(&b, 5000, 1000), 50);
    /* Five more requests earn exactly one more retry. */
    for (int i = 0; i < 4; i++)
        px_budget_request(&b, 5500);
    NS_ASSERT_INT_EQ(retries(&b, 5500, 1), 0);
    px_budget_request(&b, 5500);
    NS_ASSERT_INT_EQ(retries(&b, 5500, 10), 1);

    /* Custom: 10 %, 1 per second, 2 s window. */
    px_budget_cfg cfg = {.ratio_pct = 10, .min_per_sec = 1, .window_s = 2};
    px_budget_init(&b, &cfg);
    for (int i = 0; i < 30; i++)
        px_budget_request(&b, 0);
    NS_ASSERT_INT_EQ(retries(&b, 0, 100), 5); /* 3 + 2 */
    NS_ASSERT_INT_EQ(retries(&b, 1999, 100), 0);
    NS_ASSERT_INT_EQ(retries(&b, 2000, 100), 2); /* second 0 left the window */
}

/* Steady load where every request fails: retries never exceed the budget in any window,
 * and the budget is used (the proxy still retries what it may). */
static void test_budget_sliding(void)
{
    px_budget b;
    px_budget_init(&b, NULL);
    int64_t t = 0;
    int per_sec[60] = {0};
    for (int s = 0; s < 60; s++) {
        for (int i = 0; i < 100; i++, t += 10) {
            px_budget_request(&b, t);
            if (px_budget_try_retry(&b, t))
                per_sec[s]++;
            uint64_t req, ret;
            px_budget_counts(&b, t, &req, &ret);
            CU_ASSERT_TRUE(100 * ret <= 20 * req + 100 * 30);
        }
    }
    /* In steady state (window full of 1000 requests) about 230 retries per 10 s. */
    int last10 = 0;
    for (int s = 50; s < 60; s++)
        last10 += per_sec[s];
    CU_ASSERT_TRUE(last10 >= 200 && last10 <= 230);
    if (last10 < 200 || last10 > 230)
        fprintf(stderr, "\n  retries in the last 10 s: %d\n", last10);
}

static void test_budget_clock_oddities(void)
{
    px_budget b;
    px_budget_init(&b, NULL);
    px_budget_request(&b, 50000);
    /* A clock that went back sees none of the future buckets. */
    uint64_t req = 99;
    px_budget_counts(&b, 40000, &req, NULL);
    NS_ASSERT_INT_EQ(req, 0);
    /* Negative times (a monotonic clock near its origin in tests) work too. */
    px_budget_init(&b, NULL);
    NS_ASSERT_INT_EQ(retries(&b, -1, 100), 30);
    NS_ASSERT_INT_EQ(retries(&b, 8998, 1), 0);
    NS_ASSERT_INT_EQ(retries(&b, 9000, 100), 30);
}

const ns_test budget_tests[] = {
    {"floor of 3 per second", test_budget_floor},
    {"20 percent of requests", test_budget_ratio},
    {"sliding window under load", test_budget_sliding},
    {"clock oddities", test_budget_clock_oddities},
    {NULL, NULL},
};

static int fail_n(px_outlier *o, size_t i, int64_t t, int n)
{
    int ejected = 0;
    for (int k = 0; k < n; k++)
        ejected += px_outlier_failure(o, i, t);
    return ejected;
}

static void test_eject_and_return(void)
{
    px_outlier o;
    px_outlier_init(&o, 4, NULL);
    NS_ASSERT_INT_EQ(fail_n(&o, 1, 1000, 4), 0);
    NS_ASSERT_INT_EQ(px_outlier_ejected(&o, 1000), 0);
    CU_ASSERT_TRUE(px_outlier_failure(&o, 1, 1000));
    NS_ASSERT_INT_EQ(px_outlier_ejected(&o, 1000), 1u << 1);
    NS_ASSERT_INT_EQ(px_outlier_ejected(&o, 30999), 1u << 1);
    /* In-flight failures of an ejected backend change nothing. */
    NS_ASSERT_INT_EQ(fail_n(&o, 1, 20000, 10), 0);
    NS_ASSERT_INT_EQ(px_outlier_ejected(&o, 31000), 0);
    /* Second time out: twice as long. */
    NS_ASSERT_INT_EQ(fail_n(&o, 1, 32000, 5), 1);
    NS_ASSERT_INT_EQ(px_outlier_ejected(&o, 91999), 1u << 1);
    NS_ASSERT_INT_EQ(px_outlier_ejected(&o, 92000), 0);
}

static void test_success_resets(void)
{
    px_outlier o;
    px_outlier_init(&o, 3, NULL);
    fail_n(&o, 0, 0, 4);
    px_outlier_success(&o, 0, 1);
    NS_ASSERT_INT_EQ(fail_n(&o, 0, 2, 4), 0);
    NS_ASSERT_INT_EQ(px_outlier_ejected(&o, 2), 0);
    NS_ASSERT_INT_EQ(fail_n(&o, 0, 3, 1), 1);
    /* Out-of-range indexes are ignored. */
    CU_ASSERT_FALSE(px_outlier_failure(&o, 3, 4));
    px_outlier_success(&o, 99, 4);
}

static void test_max_percent(void)
{
    px_outlier o;
    px_outlier_init(&o, 4, NULL);
    NS_ASSERT_INT_EQ(fail_n(&o, 0, 0, 5), 1);
    NS_ASSERT_INT_EQ(fail_n(&o, 1, 0, 5), 1);
    /* Half are out: the third failing backend stays in ... */
    NS_ASSERT_INT_EQ(fail_n(&o, 2, 0, 20), 0);
    NS_ASSERT_INT_EQ(px_outlier_ejected(&o, 0), 0x3);
    /* ... until one comes back; its next failure ejects it at once. */
    NS_ASSERT_INT_EQ(px_outlier_ejected(&o, 30000), 0);
    NS_ASSERT_INT_EQ(fail_n(&o, 2, 30000, 1), 1);
    NS_ASSERT_INT_EQ(px_outlier_ejected(&o, 30000), 0x4);

    /* One backend is never ejected; one of two may be. */
    px_outlier_init(&o, 1, NULL);
    NS_ASSERT_INT_EQ(fail_n(&o, 0, 0, 100), 0);
    px_outlier_init(&o, 2, NULL);
    NS_ASSERT_INT_EQ(fail_n(&o, 0, 0, 5), 1);
    NS_ASSERT_INT_EQ(fail_n(&o, 1, 0, 100), 0);
}

static void test_decay_and_cap(void)
{
    px_outlier o;
    px_outlier_init(&o, 2, NULL);
    int64_t t = 0;
    fail_n(&o, 0, t, 5); /* out 30 s, back at 30 s */
    t = 30000;
    fail_n(&o, 0, t, 5); /* out 60 s, back at 90 s */
    NS_ASSERT_INT_EQ(o.hosts[0].times, 2);
    /* Healthy for two base periods after coming back: the multiplier is gone. */
    t = 90000 + 60000;
    NS_ASSERT_INT_EQ(px_outlier_ejected(&o, t), 0);
    NS_ASSERT_INT_EQ(o.hosts[0].times, 0);
    fail_n(&o, 0, t, 5);
    NS_ASSERT_INT_EQ(px_outlier_ejected(&o, t + 29999), 1);
    NS_ASSERT_INT_EQ(px_outlier_ejected(&o, t + 30000), 0);

    /* Failing right after each return: 30, 60, ..., capped at 300 s. */
    px_outlier_init(&o, 2, NULL);
    t = 0;
    int64_t longest = 0;
    for (int k = 1; k <= 15; k++) {
        NS_ASSERT_INT_EQ(fail_n(&o, 0, t, 5), 1);
        int64_t d = o.hosts[0].until_ms - t;
        NS_ASSERT_INT_EQ(d, k <= 10 ? 30000 * k : 300000);
        longest = d > longest ? d : longest;
        t = o.hosts[0].until_ms;
    }
    NS_ASSERT_INT_EQ(longest, 300000);

    /* Custom settings. */
    px_outlier_cfg cfg = {.consecutive = 2, .base_ms = 1000, .max_ms = 1500, .max_pct = 100};
    px_outlier_init(&o, 1, &cfg);
    NS_ASSERT_INT_EQ(fail_n(&o, 0, 0, 2), 1);
    NS_ASSERT_INT_EQ(px_outlier_ejected(&o, 999), 1);
    NS_ASSERT_INT_EQ(fail_n(&o, 0, 1000, 2), 1);
    NS_ASSERT_INT_EQ(px_outlier_ejected(&o, 2499), 1);
    NS_ASSERT_INT_EQ(px_outlier_ejected(&o, 2500), 0);
}

const ns_test outlier_tests[] = {
    {"eject and return", test_eject_and_return},
    {"success resets the count", test_success_resets},
    {"at most half ejected", test_max_percent},
    {"multiplier decay and cap", test_decay_and_cap},
    {NULL, NULL},
};

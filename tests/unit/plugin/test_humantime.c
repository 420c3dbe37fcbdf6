/* test_humantime.c - RFC 3339 parsing and kubectl's AGE format at each of its edges. */
#include "humantime.h"
#include "suites.h"

#include <errno.h>

static void test_parse_valid(void)
{
    static const struct {
        const char *in;
        int64_t ms;
    } cases[] = {
        {"2026-11-25T20:00:00Z", TEST_NOW_MS},
        {"2026-11-25T19:55:00.250Z", TEST_NOW_MS - 299750},
        {"2026-11-25T19:59:59.123456789Z", TEST_NOW_MS - 877}, /* cut, not rounded */
        {"2026-11-25T19:59:59.9Z", TEST_NOW_MS - 100},
        {"2026-11-25T21:00:00+01:00", TEST_NOW_MS},
        {"2026-11-25T14:30:00-05:30", TEST_NOW_MS},
        {"2026-11-25t20:00:00z", TEST_NOW_MS},
        {"1970-01-01T00:00:00Z", 0},
        {"1969-12-31T23:59:59Z", -1000},
        {"2028-02-29T00:00:00Z", 1835395200000LL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t got = 42;
        int rc = kn_time_parse(cases[i].in, &got);
        if (rc || got != cases[i].ms)
            fprintf(stderr, "\n  \"%s\"", cases[i].in);
        NS_ASSERT_INT_EQ(rc, 0);
        NS_ASSERT_INT_EQ(got, cases[i].ms);
    }
}

static void test_parse_invalid(void)
{
    static const char *const cases[] = {
        "",
        "2026-11-25",
        "2026-11-25 20:00:00Z", /* RFC 3339 allows it, the API server never writes it */
        "2026-11-25T20:00:00",  /* no zone */
        "2026-11-25T20:00:00.Z",
        "2026-11-25T20:00:00Zjunk",
        "2026-11-25T20:00:00+1:00",
        "2026-11-25T20:00:00+24:00",
        "2026-02-31T00:00:00Z",
        "2026-02-29T00:00:00Z", /* not a leap year */
        "2026-13-01T00:00:00Z",
        "2026-00-10T00:00:00Z",
        "2026-11-25T24:00:00Z",
        "2026-11-25T20:60:00Z",
        "26-11-25T20:00:00Z",
        "2026-11-25T20:00:0Z",
        "-026-11-25T20:00:00Z",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t got = 42;
        int rc = kn_time_parse(cases[i], &got);
        if (rc != -EINVAL)
            fprintf(stderr, "\n  \"%s\" accepted", cases[i]);
        NS_ASSERT_INT_EQ(rc, -EINVAL);
        NS_ASSERT_INT_EQ(got, 42);
    }
    int64_t got = 42;
    NS_ASSERT_INT_EQ(kn_time_parse(NULL, &got), -EINVAL);
}

#define S 1000LL
#define M (60 * S)
#define H (60 * M)
#define D (24 * H)
#define Y (365 * D)

static void test_age_format(void)
{
    static const struct {
        int64_t ms;
        const char *want;
    } cases[] = {
        {0, "0s"},
        {999, "0s"},
        {1500, "1s"},
        {-1000, "0s"}, /* a clock a second behind is "now" */
        {-1999, "0s"},
        {-2000, "<invalid>"},
        {119 * S + 999, "119s"},
        {2 * M, "2m"},
        {2 * M + S, "2m1s"},
        {5 * M + 3 * S, "5m3s"},
        {9 * M + 59 * S, "9m59s"},
        {10 * M, "10m"},
        {10 * M + 30 * S, "10m"},
        {179 * M + 59 * S, "179m"},
        {3 * H, "3h"},
        {3 * H + 20 * M, "3h20m"},
        {7 * H + 59 * M, "7h59m"},
        {8 * H, "8h"},
        {8 * H + 30 * M, "8h"},
        {47 * H + 59 * M, "47h"},
        {2 * D, "2d"},
        {2 * D + 5 * H, "2d5h"},
        {7 * D + 23 * H, "7d23h"},
        {8 * D, "8d"},
        {8 * D + 5 * H, "8d"},
        {729 * D, "729d"},
        {2 * Y, "2y"},
        {2 * Y + 15 * D, "2y15d"},
        {7 * Y + 364 * D, "7y364d"},
        {8 * Y, "8y"},
        {9 * Y + 100 * D, "9y"},
        {INT64_MAX, "292471208y"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[KN_AGE_MAX];
        kn_age_format(cases[i].ms, buf, sizeof(buf));
        NS_ASSERT_STR_EQ(buf, cases[i].want);
    }
}

static void test_age_since(void)
{
    char buf[KN_AGE_MAX];
    kn_age_since(0, TEST_NOW_MS, buf, sizeof(buf));
    NS_ASSERT_STR_EQ(buf, "<unknown>");
    kn_age_since(TEST_NOW_MS - 5 * M - 3 * S, TEST_NOW_MS, buf, sizeof(buf));
    NS_ASSERT_STR_EQ(buf, "5m3s");
    kn_age_since(TEST_NOW_MS + 10 * S, TEST_NOW_MS, buf, sizeof(buf));
    NS_ASSERT_STR_EQ(buf, "<invalid>");
    /* A short buffer is cut, never overrun. */
    char small[3];
    kn_age_format(2 * D + 5 * H, small, sizeof(small));
    NS_ASSERT_STR_EQ(small, "2d");
}

const ns_test humantime_tests[] = {
    {"parse valid", test_parse_valid},
    {"parse invalid", test_parse_invalid},
    {"age format", test_age_format},
    {"age since", test_age_since},
    {NULL, NULL},
};

/* test_timefmt.c - RFC 3339: what the parser takes and refuses, the three formatters
 * against libc's gmtime_r, and round trips through the years 0000-9999. */
#include "suites.h"
#include "timefmt.h"

#include <errno.h>
#include <stdint.h>
#include <time.h>

#define S  1000000LL          /* a second in microseconds */
#define T0 1700000000123456LL /* 2023-11-14T22:13:20.123456Z */

/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z in Unix seconds. */
#define YEAR0_S    (-62167219200LL)
#define YEAR9999_S 253402300799LL

static void test_parse_valid(void)
{
    static const struct {
        const char *in;
        int64_t us;
    } cases[] = {
        {"2023-11-14T22:13:20.123456Z", T0},
        {"2023-11-14T22:13:20Z", T0 - 123456},
        {"2023-11-14T22:13:20.1Z", T0 - 23456},
        {"2023-11-14T22:13:20.123456789Z", T0},        /* cut to microseconds, */
        {"2023-11-14T22:13:20.1234569999999999Z", T0}, /* never rounded, any length */
        {"2023-11-14t22:13:20.123456z", T0},           /* either case for T and Z */
        {"2023-11-14T22:13:20.123456z", T0},
        {"2023-11-14t22:13:20.123456Z", T0},
        {"2023-11-14T23:13:20.123456+01:00", T0},
        {"2023-11-14T21:43:20.123456-00:30", T0},
        {"2023-11-15T22:12:20.123456+23:59", T0},
        {"2023-11-14T22:13:20.123456+00:00", T0},
        {"2023-11-14T22:13:20.123456-00:00", T0},
        {"2016-12-31T23:59:60Z", 1483228799LL * S}, /* a leap second reads as :59 */
        {"2016-12-31T23:59:60.5Z", 1483228799LL * S + 500000},
        {"1970-01-01T00:00:00Z", 0},
        {"1969-12-31T23:59:59Z", -S},
        {"1969-12-31T23:59:59.999999Z", -1},
        {"2024-02-29T00:00:00Z", 1709164800LL * S},
        {"2000-02-29T00:00:00Z", 951782400LL * S},
        {"0000-01-01T00:00:00Z", YEAR0_S * S},
        {"0000-02-29T00:00:00Z", (YEAR0_S + 59 * 86400) * S}, /* year 0 is a leap year */
        {"9999-12-31T23:59:59.999999Z", YEAR9999_S * S + 999999},
        {"9999-12-31T23:59:59-23:59", (YEAR9999_S + 86340) * S},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t us = 42;
        int rc = ns_time_parse(cases[i].in, &us);
        if (rc || us != cases[i].us)
            fprintf(stderr, "\n  \"%s\": rc %d, %lld", cases[i].in, rc, (long long)us);
        NS_ASSERT_INT_EQ(rc, 0);
        NS_ASSERT_INT_EQ(us, cases[i].us);
    }
}

static void test_parse_invalid(void)
{
    static const char *const cases[] = {
        "",
        "2023-11-14",
        "2023-11-14T22:13:20",  /* no zone */
        "2023-11-14 22:13:20Z", /* RFC 3339 allows it, the API server never writes it */
        "2023-11-14x22:13:20Z",
        "2023-11-14T22:13:20X",
        "2023-11-14T22:13:20.Z", /* empty fraction */
        "2023-11-14T22:13:20,5Z",
        "2023-11-14T22:13:20Zjunk",
        "2023-11-14T22:13:20Z ",
        "2023-11-14T22:13:20+0100",
        "2023-11-14T22:13:20+1:00",
        "2023-11-14T22:13:20+01",
        "2023-11-14T22:13:20+24:00",
        "2023-11-14T22:13:20+01:60",
        "2023-13-01T00:00:00Z",
        "2023-00-10T00:00:00Z",
        "2023-11-00T00:00:00Z",
        "2023-11-31T00:00:00Z", /* November has 30 days */
        "2023-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z", /* not a leap year */
        "1900-02-29T00:00:00Z", /* nor is 1900 */
        "2023-11-14T24:00:00Z",
        "2023-11-14T22:60:00Z",
        "2023-11-14T22:13:61Z",
        "20231114T221320Z",
        "23-11-14T22:13:20Z",
        "2023-1-14T22:13:20Z",
        "2023-11-14T22:13:2Z",
        "-023-11-14T22:13:20Z",
        "+2023-11-14T22:13:20Z",
        "10000-01-01T00:00:00Z",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t us = 42, ms = 42;
        int rc = ns_time_parse(cases[i], &us);
        if (rc != -EINVAL)
            fprintf(stderr, "\n  \"%s\" accepted", cases[i]);
        NS_ASSERT_INT_EQ(rc, -EINVAL);
        NS_ASSERT_INT_EQ(us, 42); /* untouched */
        NS_ASSERT_INT_EQ(ns_time_parse_ms(cases[i], &ms), -EINVAL);
        NS_ASSERT_INT_EQ(ms, 42);
    }
    NS_ASSERT_INT_EQ(ns_time_parse(NULL, NULL), -EINVAL);
    NS_ASSERT_INT_EQ(ns_time_parse_ms(NULL, NULL), -EINVAL);
}

/* Milliseconds are the microseconds' floor, so a time before 1970 keeps its second. */
static void test_parse_ms(void)
{
    static const struct {
        const char *in;
        int64_t ms;
    } cases[] = {
        {"2026-11-25T19:47:06.123456Z", 1795636026123},
        {"2026-11-25T19:47:06.999999999Z", 1795636026999},
        {"1969-12-31T23:59:59.999Z", -1},
        {"1969-12-31T23:59:59.9995Z", -1},
        {"1969-12-31T23:59:59.0005Z", -1000},
        {"1969-12-31T23:59:58.9999Z", -1001},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = 42;
        NS_ASSERT_INT_EQ(ns_time_parse_ms(cases[i].in, &ms), 0);
        NS_ASSERT_INT_EQ(ms, cases[i].ms);
    }
}

static void test_format_known(void)
{
    char buf[NS_TIME_MAX];
    NS_ASSERT_INT_EQ(ns_time_format_us(0, buf, sizeof(buf)), 0);
    NS_ASSERT_STR_EQ(buf, "1970-01-01T00:00:00.000000Z");
    NS_ASSERT_INT_EQ(ns_time_format_us(T0, buf, sizeof(buf)), 0);
    NS_ASSERT_STR_EQ(buf, "2023-11-14T22:13:20.123456Z");
    NS_ASSERT_INT_EQ(ns_time_format_us(-1, buf, sizeof(buf)), 0);
    NS_ASSERT_STR_EQ(buf, "1969-12-31T23:59:59.999999Z");
    NS_ASSERT_INT_EQ(ns_time_format_s(1738324800, buf, sizeof(buf)), 0);
    NS_ASSERT_STR_EQ(buf, "2025-01-31T12:00:00Z");

    static const struct {
        int64_t ms;
        const char *text;
    } ms[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {1, "1970-01-01T00:00:00.001Z"},
        {-1, "1969-12-31T23:59:59.999Z"},
        {951782400000, "2000-02-29T00:00:00.000Z"},
        {1795636026123, "2026-11-25T19:47:06.123Z"},
        {4102444799999, "2099-12-31T23:59:59.999Z"},
        {253402300799000, "9999-12-31T23:59:59.000Z"},
        {YEAR0_S * 1000, "0000-01-01T00:00:00.000Z"},
    };
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
        NS_ASSERT_INT_EQ(ns_time_format_ms(ms[i].ms, buf, sizeof(buf)), 0);
        NS_ASSERT_STR_EQ(buf, ms[i].text);
        int64_t back = 0;
        NS_ASSERT_INT_EQ(ns_time_parse_ms(ms[i].text, &back), 0);
        NS_ASSERT_INT_EQ(back, ms[i].ms);
    }
}

/* Too small a buffer, or a year of five digits or below zero: refused, nothing written. */
static void test_format_refused(void)
{
    char buf[NS_TIME_MAX] = "untouched";
    NS_ASSERT_INT_EQ(ns_time_format_us(T0, buf, 27), -EINVAL);
    NS_ASSERT_INT_EQ(ns_time_format_ms(T0 / 1000, buf, 24), -EINVAL);
    NS_ASSERT_INT_EQ(ns_time_format_s(T0 / S, buf, 20), -EINVAL);
    NS_ASSERT_INT_EQ(ns_time_format_s(T0 / S, NULL, 64), -EINVAL);
    NS_ASSERT_INT_EQ(ns_time_format_s(YEAR9999_S + 1, buf, sizeof(buf)), -EINVAL);
    NS_ASSERT_INT_EQ(ns_time_format_s(YEAR0_S - 1, buf, sizeof(buf)), -EINVAL);
    NS_ASSERT_INT_EQ(ns_time_format_us(YEAR0_S * S - 1, buf, sizeof(buf)), -EINVAL);
    NS_ASSERT_INT_EQ(ns_time_format_ms(INT64_MAX, buf, sizeof(buf)), -EINVAL);
    NS_ASSERT_INT_EQ(ns_time_format_ms(INT64_MIN, buf, sizeof(buf)), -EINVAL);
    NS_ASSERT_STR_EQ(buf, "untouched");
    /* the exact sizes suffice */
    NS_ASSERT_INT_EQ(ns_time_format_us(T0, buf, 28), 0);
    NS_ASSERT_INT_EQ(ns_time_format_ms(T0 / 1000, buf, 25), 0);
    NS_ASSERT_INT_EQ(ns_time_format_s(T0 / S, buf, 21), 0);
    NS_ASSERT_INT_EQ(ns_time_format_s(YEAR9999_S, buf, sizeof(buf)), 0);
    NS_ASSERT_STR_EQ(buf, "9999-12-31T23:59:59Z");
}

/* The whole seconds agree with gmtime_r and strftime (what the operator used before) on
 * a walk over 0000-9999 that lands on every month and day of the week. */
static void test_format_matches_libc(void)
{
    int checked = 0;
    for (int64_t s = YEAR0_S; s <= YEAR9999_S; s += 9876543 + (s & 0xff)) {
        time_t t = (time_t)s;
        struct tm tm;
        char want[NS_TIME_MAX], got[NS_TIME_MAX];
        CU_ASSERT_PTR_NOT_NULL_FATAL(gmtime_r(&t, &tm));
        CU_ASSERT_FATAL(strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%SZ", &tm) > 0);
        /* glibc writes years below 1000 without zeros */
        if (tm.tm_year + 1900 < 1000)
            continue;
        NS_ASSERT_INT_EQ(ns_time_format_s(s, got, sizeof(got)), 0);
        if (strcmp(got, want) != 0) {
            NS_ASSERT_STR_EQ(got, want);
            break;
        }
        checked++;
    }
    CU_ASSERT(checked > 25000);
}

/* Whatever is written reads back as the same time, in each precision. */
static void test_round_trip(void)
{
    char buf[NS_TIME_MAX];
    for (int64_t us = YEAR0_S * S; us <= YEAR9999_S * S; us += 98765432101234LL) {
        int64_t back = -1;
        NS_ASSERT_INT_EQ(ns_time_format_us(us, buf, sizeof(buf)), 0);
        NS_ASSERT_INT_EQ(ns_time_parse(buf, &back), 0);
        if (back != us) {
            NS_ASSERT_INT_EQ(back, us);
            break;
        }
        int64_t ms = us / 1000 + 7, back_ms = -1;
        NS_ASSERT_INT_EQ(ns_time_format_ms(ms, buf, sizeof(buf)), 0);
        NS_ASSERT_INT_EQ(ns_time_parse_ms(buf, &back_ms), 0);
        if (back_ms != ms) {
            NS_ASSERT_INT_EQ(back_ms, ms);
            break;
        }
    }
    /* every day of a leap year and a common year */
    for (int64_t ms = 946684800000; ms < 1009843200000; ms += 86400000 + 3723004) {
        int64_t back = 0;
        NS_ASSERT_INT_EQ(ns_time_format_ms(ms, buf, sizeof(buf)), 0);
        NS_ASSERT_INT_EQ(ns_time_parse_ms(buf, &back), 0);
        if (back != ms) {
            fprintf(stderr, "\n  %lld -> %s -> %lld\n", (long long)ms, buf, (long long)back);
            NS_ASSERT_INT_EQ(back, ms);
            break;
        }
    }
}

const ns_test timefmt_tests[] = {
    {"parse valid", test_parse_valid},        {"parse invalid", test_parse_invalid},
    {"parse to milliseconds", test_parse_ms}, {"format known times", test_format_known},
    {"format refused", test_format_refused},  {"format matches gmtime_r", test_format_matches_libc},
    {"round trip", test_round_trip},          {NULL, NULL},
};

/* test_duration.c - Go-style duration parsing: what Go accepts and we need, nothing else. */
#include "duration.h"
#include "suites.h"

#include <errno.h>

static void test_valid(void)
{
    static const struct {
        const char *in;
        int64_t seconds;
    } cases[] = {
        {"720h", 720 * 3600},
        {"2160h", 2160 * 3600},
        {"87600h", 87600LL * 3600},
        {"1h30m", 5400},
        {"90s", 90},
        {"1h2m3s", 3723},
        {"0", 0},
        {"0s", 0},
        {"1.5h", 5400},
        {".5h", 1800},     /* Go accepts a missing integer part */
        {"5.h", 5 * 3600}, /* ... and a missing fraction */
        {"0.5m", 30},
        {"30m1h", 5400}, /* Go sums parts in any order */
        {"1h1h", 7200},  /* ... and repeated units */
        {"001h", 3600},
        {"2562047h", 2562047LL * 3600}, /* Go's largest whole-hour duration */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t got = -1;
        int rc = op_duration_parse(cases[i].in, &got);
        if (rc)
            fprintf(stderr, "\n  \"%s\" refused (%d)", cases[i].in, rc);
        NS_ASSERT_INT_EQ(rc, 0);
        NS_ASSERT_INT_EQ(got, cases[i].seconds);
    }
}

static void test_invalid(void)
{
    static const struct {
        const char *in;
        int rc;
    } cases[] = {
        {"", -EINVAL},
        {"h", -EINVAL},
        {"10", -EINVAL}, /* a unit is required, except for a bare 0 */
        {"00", -EINVAL},
        {"10d", -EINVAL}, /* Go has no days: write 240h */
        {"1w", -EINVAL},
        {"-1h", -EINVAL}, /* no sign: lifetimes are not negative */
        {"+1h", -EINVAL},
        {" 1h", -EINVAL},
        {"1h ", -EINVAL},
        {"1h 30m", -EINVAL},
        {"1H", -EINVAL},
        {"1.5s", -EINVAL},         /* not a whole number of seconds */
        {"0.000000001h", -EINVAL}, /* 3.6 µs */
        {"100ms", -EINVAL},        /* finer than seconds */
        {"1000ms", -EINVAL},       /* even when whole: "ms" must not read as minutes */
        {"5us", -EINVAL},
        {"5ns", -EINVAL},
        {"1h30", -EINVAL},
        {"1..5h", -EINVAL},
        {".h", -EINVAL},
        {"1.h30", -EINVAL},
        {"1.0000000000h", -EINVAL}, /* more fraction digits than we keep */
        {"1hm", -EINVAL},
        {"2562048h", -ERANGE}, /* beyond Go's int64 nanoseconds */
        {"99999999999999999999h", -ERANGE},
        {"9223372037s", -ERANGE},
        {"2562047h2562047h", -ERANGE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t got = 12345;
        int rc = op_duration_parse(cases[i].in, &got);
        if (rc != cases[i].rc)
            fprintf(stderr, "\n  \"%s\"", cases[i].in);
        NS_ASSERT_INT_EQ(rc, cases[i].rc);
        NS_ASSERT_INT_EQ(got, 12345); /* untouched on error */
    }
    int64_t got = 7;
    NS_ASSERT_INT_EQ(op_duration_parse(NULL, &got), -EINVAL);
    NS_ASSERT_INT_EQ(got, 7);
}

const ns_test duration_tests[] = {
    {"valid durations", test_valid},
    {"invalid durations", test_invalid},
    {NULL, NULL},
};

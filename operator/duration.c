/* duration.c - strict Go-style duration parsing into seconds. */
#include "duration.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

/* Go's limit is INT64_MAX nanoseconds; stay below it in whole seconds. */
#define DURATION_MAX_SECONDS (INT64_MAX / 1000000000)

/* Fraction digits kept: nine are enough to tell whether "0.000000001h" (3.6 µs) comes
 * to whole seconds, and keep frac * unit far from overflow. */
#define FRAC_DIGITS_MAX 9

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int64_t unit_seconds(char u)
{
    switch (u) {
    case 'h':
        return 3600;
    case 'm':
        return 60;
    case 's':
        return 1;
    default:
        return 0;
    }
}

int op_duration_parse(const char *s, int64_t *out)
{
    if (!s || !*s)
        return -EINVAL;
    if (s[0] == '0' && s[1] == '\0') { /* Go's special case: a bare zero needs no unit */
        *out = 0;
        return 0;
    }
    int64_t total = 0;
    const char *p = s;
    while (*p) {
        int64_t whole = 0, frac = 0, scale = 1;
        int frac_digits = 0;
        bool have_whole = false;
        for (; is_digit(*p); p++) {
            if (whole > (DURATION_MAX_SECONDS - (*p - '0')) / 10)
                return -ERANGE;
            whole = whole * 10 + (*p - '0');
            have_whole = true;
        }
        if (*p == '.') {
            p++;
            for (; is_digit(*p); p++) {
                if (++frac_digits > FRAC_DIGITS_MAX)
                    return -EINVAL;
                frac = frac * 10 + (*p - '0');
                scale *= 10;
            }
        }
        if (!have_whole && frac_digits == 0)
            return -EINVAL;
        /* "ms" must not read as minutes followed by a stray "s". */
        int64_t unit = unit_seconds(*p);
        if (!unit || (*p == 'm' && p[1] == 's'))
            return -EINVAL;
        p++;
        if (frac * unit % scale != 0)
            return -EINVAL; /* not a whole number of seconds */
        if (whole > DURATION_MAX_SECONDS / unit)
            return -ERANGE;
        int64_t part = whole * unit + frac * unit / scale;
        if (part > DURATION_MAX_SECONDS - total)
            return -ERANGE;
        total += part;
    }
    *out = total;
    return 0;
}

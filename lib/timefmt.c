/* timefmt.c - RFC 3339 timestamps over proleptic Gregorian day arithmetic. */
#include "timefmt.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>

#define S_PER_DAY 86400LL
#define US_PER_S  1000000LL

/* 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z in Unix seconds: the years a
 * four-digit field can hold. */
#define FIRST_S (-62167219200LL)
#define END_S   253402300800LL

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* Days since 1970-01-01 of a date (Howard Hinnant's algorithm), and back: timegm and
 * gmtime_r would bring in time_t's range and, for timegm, normalise 31 February. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return days[m - 1] + (m == 2 && leap);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Exactly `n` digits at *p (advancing it) into *out. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit((*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool expect(const char **p, char c)
{
    if (**p != c)
        return false;
    (*p)++;
    return true;
}

/* RFC 3339 lets "T" and "Z" be written in either case. */
static bool expect_letter(const char **p, char upper)
{
    return expect(p, upper) || expect(p, (char)(upper - 'A' + 'a'));
}

int ns_time_parse(const char *s, int64_t *us)
{
    if (!s)
        return -EINVAL;
    const char *p = s;
    int y, mo, d, h, mi, sec;
    if (!digits(&p, 4, &y) || !expect(&p, '-') || !digits(&p, 2, &mo) || !expect(&p, '-') ||
        !digits(&p, 2, &d) || !expect_letter(&p, 'T') || !digits(&p, 2, &h) || !expect(&p, ':') ||
        !digits(&p, 2, &mi) || !expect(&p, ':') || !digits(&p, 2, &sec))
        return -EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60)
        return -EINVAL;
    int64_t frac_us = 0;
    if (expect(&p, '.')) {
        bool any = false;
        /* scale reaches 0 after the sixth digit: the rest is read and cut */
        for (int64_t scale = US_PER_S / 10; is_digit(*p); p++, scale /= 10) {
            frac_us += (*p - '0') * scale;
            any = true;
        }
        if (!any)
            return -EINVAL;
    }
    int64_t offset_s = 0;
    if (!expect_letter(&p, 'Z')) {
        if (*p != '+' && *p != '-')
            return -EINVAL;
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (!digits(&p, 2, &oh) || !expect(&p, ':') || !digits(&p, 2, &om) || oh > 23 || om > 59)
            return -EINVAL;
        offset_s = sign * (oh * 3600 + om * 60);
    }
    if (*p)
        return -EINVAL;
    if (sec == 60)
        sec = 59; /* Unix time has no room for a leap second */
    int64_t secs = days_from_civil(y, mo, d) * S_PER_DAY + h * 3600 + mi * 60 + sec - offset_s;
    *us = secs * US_PER_S + frac_us;
    return 0;
}

int ns_time_parse_ms(const char *s, int64_t *ms)
{
    int64_t us;
    int rc = ns_time_parse(s, &us);
    if (rc == 0)
        *ms = floor_div(us, 1000);
    return rc;
}

/* `t` counts `per_s` to the second; written with `digits` fraction digits (0: none). */
static int format(int64_t t, int64_t per_s, int digits, char *buf, size_t size)
{
    size_t need = sizeof("2006-01-02T15:04:05Z") + (digits ? (size_t)digits + 1 : 0);
    int64_t secs = floor_div(t, per_s);
    if (!buf || size < need || secs < FIRST_S || secs >= END_S)
        return -EINVAL;
    int frac = (int)(t - secs * per_s);
    int64_t days = floor_div(secs, S_PER_DAY), sod = secs - days * S_PER_DAY, y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    int h = (int)(sod / 3600), mi = (int)(sod / 60 % 60), s = (int)(sod % 60);
    int n = digits ? snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%0*dZ", (int)y, m, d, h, mi,
                              s, digits, frac)
                   : snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)y, m, d, h, mi, s);
    return n > 0 && (size_t)n < size ? 0 : -EINVAL;
}

int ns_time_format_s(int64_t s, char *buf, size_t size)
{
    return format(s, 1, 0, buf, size);
}

int ns_time_format_ms(int64_t ms, char *buf, size_t size)
{
    return format(ms, 1000, 3, buf, size);
}

int ns_time_format_us(int64_t us, char *buf, size_t size)
{
    return format(us, US_PER_S, 6, buf, size);
}

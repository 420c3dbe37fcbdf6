/* humantime.c - RFC 3339 parsing and kubectl-style ages. */
#include "humantime.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

/* Reads exactly `n` digits at *p (advancing it) into *out. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
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

int kn_time_parse(const char *s, int64_t *out_ms)
{
    if (!s)
        return -EINVAL;
    const char *p = s;
    int year, mon, day, hour, min, sec;
    if (!digits(&p, 4, &year) || !expect(&p, '-') || !digits(&p, 2, &mon) || !expect(&p, '-') ||
        !digits(&p, 2, &day) || !(expect(&p, 'T') || expect(&p, 't')) || !digits(&p, 2, &hour) ||
        !expect(&p, ':') || !digits(&p, 2, &min) || !expect(&p, ':') || !digits(&p, 2, &sec))
        return -EINVAL;
    int ms = 0;
    if (*p == '.') {
        p++;
        int n = 0;
        for (; *p >= '0' && *p <= '9'; p++, n++)
            if (n < 3)
                ms = ms * 10 + (*p - '0');
        if (n == 0)
            return -EINVAL;
        for (; n < 3; n++)
            ms *= 10;
    }
    int offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (!digits(&p, 2, &oh) || !expect(&p, ':') || !digits(&p, 2, &om) || oh > 23 || om > 59)
            return -EINVAL;
        offset_s = sign * (oh * 3600 + om * 60);
    } else {
        return -EINVAL;
    }
    if (*p || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
        return -EINVAL;
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = mon - 1,
                    .tm_mday = day,
                    .tm_hour = hour,
                    .tm_min = min,
                    .tm_sec = sec == 60 ? 59 : sec}; /* a leap second reads as :59 */
    time_t t = timegm(&tm);
    /* timegm normalises 31 February into March: refuse dates that moved. */
    if (tm.tm_mday != day || tm.tm_mon != mon - 1)
        return -EINVAL;
    *out_ms = ((int64_t)t - offset_s) * 1000 + ms;
    return 0;
}

void kn_age_format(int64_t ms, char *buf, size_t len)
{
    /* Whole seconds, cut towards zero as Go's int(d.Seconds()) does. */
    int64_t s = ms / 1000;
    if (s < -1) {
        snprintf(buf, len, "<invalid>");
        return;
    }
    if (s < 0)
        s = 0;
    int64_t m = s / 60, h = s / 3600, d = h / 24, y = d / 365;
    if (s < 120)
        snprintf(buf, len, "%llds", (long long)s);
    else if (m < 10 && s % 60)
        snprintf(buf, len, "%lldm%llds", (long long)m, (long long)(s % 60));
    else if (m < 180)
        snprintf(buf, len, "%lldm", (long long)m);
    else if (h < 8 && m % 60)
        snprintf(buf, len, "%lldh%lldm", (long long)h, (long long)(m % 60));
    else if (h < 48)
        snprintf(buf, len, "%lldh", (long long)h);
    else if (d < 8 && h % 24)
        snprintf(buf, len, "%lldd%lldh", (long long)d, (long long)(h % 24));
    else if (d < 730)
        snprintf(buf, len, "%lldd", (long long)d);
    else if (y < 8 && d % 365)
        snprintf(buf, len, "%lldy%lldd", (long long)y, (long long)(d % 365));
    else
        snprintf(buf, len, "%lldy", (long long)y);
}

void kn_age_since(int64_t then_ms, int64_t now_ms, char *buf, size_t len)
{
    if (then_ms == 0) {
        snprintf(buf, len, "<unknown>");
        return;
    }
    kn_age_format(now_ms - then_ms, buf, len);
}

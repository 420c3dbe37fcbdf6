/* humantime.c - kubectl-style ages. */
#include "humantime.h"

#include "timefmt.h"

#include <stdio.h>

int kn_time_parse(const char *s, int64_t *out_ms)
{
    return ns_time_parse_ms(s, out_ms);
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

/* validate.c - value checks shared by annotation parsing and config loading. */
#include "validate.h"

#include "log.h"
#include "strconv.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Suffixes of resource.Quantity: binary (Ki..Ei), decimal (n..E) and "m"/"u"/"n". */
static const struct {
    const char *suffix;
    double factor;
} quantity_suffixes[] = {
    {"Ki", 1024.0},
    {"Mi", 1048576.0},
    {"Gi", 1073741824.0},
    {"Ti", 1099511627776.0},
    {"Pi", 1125899906842624.0},
    {"Ei", 1152921504606846976.0},
    {"n", 1e-9},
    {"u", 1e-6},
    {"m", 1e-3},
    {"k", 1e3},
    {"M", 1e6},
    {"G", 1e9},
    {"T", 1e12},
    {"P", 1e15},
    {"E", 1e18},
    {"", 1.0},
};

int inj_quantity_parse(const char *s, double *out)
{
    if (!s || !*s || strlen(s) > 63)
        return -EINVAL;
    /* The numeric part: optional sign, digits with at most one '.', at least one digit. */
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    const char *digits = p;
    bool dot = false;
    while (isdigit((unsigned char)*p) || (*p == '.' && !dot)) {
        dot |= *p == '.';
        p++;
    }
    if (p == digits || (p == digits + 1 && dot))
        return -EINVAL;
    char num[64];
    size_t n = (size_t)(p - s);
    memcpy(num, s, n);
    num[n] = '\0';
    double v = strtod(num, NULL);

    /* A decimal exponent ("1e3", "2E-1") is its own suffix form. */
    if ((*p == 'e' || *p == 'E') && p[1] != '\0') {
        int64_t exp;
        if (ns_parse_i64(p + 1, -30, 30, &exp) == 0) {
            *out = v * pow(10.0, (double)exp);
            return *out < 0 ? -EINVAL : 0;
        }
    }
    for (size_t i = 0; i < sizeof(quantity_suffixes) / sizeof(quantity_suffixes[0]); i++) {
        if (strcmp(p, quantity_suffixes[i].suffix) == 0) {
            *out = v * quantity_suffixes[i].factor;
            return *out < 0 ? -EINVAL : 0;
        }
    }
    return -EINVAL;
}

int inj_port_list_check(const char *s, bool allow_star, ns_err *err)
{
    if (allow_star && strcmp(s, "*") == 0)
        return 0;
    const char *cur = s;
    char item[32];
    int n;
    while ((n = ns_list_next(&cur, item, sizeof(item))) != 0) {
        uint16_t port;
        if (n < 0)
            return ns_errorf(err, -EINVAL, "a list item is too long to be a port");
        if (strcmp(item, "*") == 0)
            return ns_errorf(err, -EINVAL, "\"*\" must stand alone");
        if (ns_parse_port(item, &port) != 0)
            return ns_errorf(err, -EINVAL, "\"%s\" is not a port (1-65535)", item);
    }
    return 0;
}

int inj_cidr_list_check(const char *s, bool allow_star, ns_err *err)
{
    if (allow_star && strcmp(s, "*") == 0)
        return 0;
    const char *cur = s;
    char item[64];
    int n;
    while ((n = ns_list_next(&cur, item, sizeof(item))) != 0) {
        ns_cidr c;
        if (n < 0)
            return ns_errorf(err, -EINVAL, "a list item is too long to be a CIDR");
        if (strcmp(item, "*") == 0)
            return ns_errorf(err, -EINVAL, "\"*\" must stand alone");
        if (ns_parse_cidr(item, &c) != 0)
            return ns_errorf(err, -EINVAL, "\"%s\" is not a CIDR (such as 10.0.0.0/8 or fd00::/8)",
                             item);
    }
    return 0;
}

bool inj_log_level_valid(const char *s)
{
    ns_log_level l;
    return ns_log_level_parse(s, &l) == 0;
}

bool inj_image_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 255)
        return false;
    for (const char *p = s; *p; p++)
        if (!isgraph((unsigned char)*p))
            return false;
    return true;
}

int inj_bool_parse(const char *s, bool *out)
{
    if (s && strcmp(s, "true") == 0)
        *out = true;
    else if (s && strcmp(s, "false") == 0)
        *out = false;
    else
        return -EINVAL;
    return 0;
}

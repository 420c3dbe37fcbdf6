/* log.c - structured text/JSON log lines on stderr. */
#include "log.h"

#include "buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static ns_log_level min_level = NS_LOG_INFO;
static ns_log_format out_format = NS_LOG_TEXT;
static const char *component_name = "nutshell";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void ns_log_setup(ns_log_level level, ns_log_format format, const char *component)
{
    min_level = level;
    out_format = format;
    if (component)
        component_name = component;
}

int ns_log_level_parse(const char *s, ns_log_level *out)
{
    if (!s)
        return -EINVAL;
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (ns_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = NS_LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

int ns_log_format_parse(const char *s, ns_log_format *out)
{
    if (s && strcmp(s, "text") == 0)
        *out = NS_LOG_TEXT;
    else if (s && strcmp(s, "json") == 0)
        *out = NS_LOG_JSON;
    else
        return -EINVAL;
    return 0;
}

bool ns_log_enabled(ns_log_level level)
{
    return level >= min_level;
}

/* Text values are quoted only when they hold spaces, quotes, '=' or control bytes. */
static void text_value(ns_buf *b, const char *v)
{
    bool plain = *v != '\0';
    for (const char *p = v; *p && plain; p++)
        plain = (unsigned char)*p > ' ' && *p != '"' && *p != '=' && *p != 0x7f;
    if (plain)
        ns_buf_puts(b, v);
    else
        ns_buf_json_string(b, v);
}

void ns_log(ns_log_level level, const char *msg, ...)
{
    if (level < min_level)
        return;

    char stamp[32];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ", ts.tv_nsec / 1000000);

    char stackbuf[1024];
    ns_buf b;
    ns_buf_init_static(&b, stackbuf, sizeof(stackbuf));

    va_list ap;
    va_start(ap, msg);
    if (out_format == NS_LOG_JSON) {
        ns_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":", stamp,
                      level_names[level]);
        ns_buf_json_string(&b, component_name);
        ns_buf_puts(&b, ",\"msg\":");
        ns_buf_json_string(&b, msg);
        const char *k;
        while ((k = va_arg(ap, const char *)) != NULL) {
            const char *v = va_arg(ap, const char *);
            ns_buf_putc(&b, ',');
            ns_buf_json_string(&b, k);
            ns_buf_putc(&b, ':');
            ns_buf_json_string(&b, v ? v : "");
        }
        ns_buf_puts(&b, "}\n");
    } else {
        ns_buf_printf(&b, "%s %-5s %s: ", stamp, level_names[level], component_name);
        ns_buf_puts(&b, msg);
        const char *k;
        while ((k = va_arg(ap, const char *)) != NULL) {
            const char *v = va_arg(ap, const char *);
            ns_buf_putc(&b, ' ');
            ns_buf_puts(&b, k);
            ns_buf_putc(&b, '=');
            text_value(&b, v ? v : "");
        }
        ns_buf_putc(&b, '\n');
    }
    va_end(ap);

    const char *out = ns_buf_cstr(&b);
    size_t len = b.len;
    while (len > 0) {
        ssize_t w = write(STDERR_FILENO, out, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        out += w;
        len -= (size_t)w;
    }
    ns_buf_free(&b);
}

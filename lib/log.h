/* log.h - structured logging to stderr, as text (key=value) or one JSON object a line.
 *
 * A log call names a level, a message and a NULL-terminated list of key/value string
 * pairs:  ns_log(NS_LOG_INFO, "pod injected", "namespace", ns, "pod", name, NULL);
 * Values are escaped for the chosen format, so user-supplied strings cannot forge
 * fields or lines. Keys and certificates never belong in a log line.
 */
#ifndef NS_LOG_H
#define NS_LOG_H

#include <stdbool.h>

typedef enum ns_log_level {
    NS_LOG_DEBUG = 0,
    NS_LOG_INFO = 1,
    NS_LOG_WARN = 2,
    NS_LOG_ERROR = 3,
} ns_log_level;

typedef enum ns_log_format {
    NS_LOG_TEXT = 0,
    NS_LOG_JSON = 1,
} ns_log_format;

/* Sets the minimum level and the output format. Not thread-safe: call at start-up. */
void ns_log_setup(ns_log_level level, ns_log_format format, const char *component);

/* Parses "debug", "info", "warn"/"warning", "error". Returns 0 or -EINVAL. */
int ns_log_level_parse(const char *s, ns_log_level *out);

/* Parses "text" or "json". Returns 0 or -EINVAL. */
int ns_log_format_parse(const char *s, ns_log_format *out);

bool ns_log_enabled(ns_log_level level);

/* Writes one line atomically (a single write(2)); pairs are key, value, ..., NULL.
 * A NULL value is written as an empty string. */
void ns_log(ns_log_level level, const char *msg, ...) __attribute__((sentinel));

#endif

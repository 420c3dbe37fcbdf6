/* timefmt.h - RFC 3339 timestamps as Kubernetes writes them (metav1.Time, MicroTime):
 * parsed into Unix microseconds, formatted in UTC. Pure: no time zone, no libc state,
 * the same answer for any year 0000 to 9999.
 */
#ifndef NS_TIMEFMT_H
#define NS_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

/* Room for any text the formatters write, NUL included. */
#define NS_TIME_MAX 32

/* Parses "YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm|-hh:mm)" into Unix microseconds.
 * Lenient where readers of the API server's output should be (Go writes none of these,
 * but RFC 3339 allows them): "t" and "z" in lower case, a fraction of any length (cut to
 * microseconds, never rounded), a leap second :60 (read as :59). Strict elsewhere: every
 * field its exact width, no space for "T", no offset without a colon, no date that does
 * not exist (31 February, 29 February of a common year). Returns 0, or -EINVAL (s NULL
 * or anything else) leaving *us untouched. */
int ns_time_parse(const char *s, int64_t *us);

/* The same in Unix milliseconds, the fraction cut (floor, so 1969 reads right too). */
int ns_time_parse_ms(const char *s, int64_t *ms);

/* Write `t` in UTC with "Z": ns_time_format_s "2006-01-02T15:04:05Z" (metav1.Time, at
 * least 21 bytes), _ms "2006-01-02T15:04:05.000Z" (25), _us "2006-01-02T15:04:05.000000Z"
 * (MicroTime, 28). Returns 0, or -EINVAL, writing nothing, when `size` is too small or
 * the time falls outside the years 0000-9999 that RFC 3339 can write. */
int ns_time_format_s(int64_t s, char *buf, size_t size);
int ns_time_format_ms(int64_t ms, char *buf, size_t size);
int ns_time_format_us(int64_t us, char *buf, size_t size);

#endif

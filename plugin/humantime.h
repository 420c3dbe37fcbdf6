/* humantime.h - times as kubectl shows them: RFC 3339 timestamps in, short ages such as
 * "5m3s" or "2d" out. Pure (the caller passes the clock). */
#ifndef KN_HUMANTIME_H
#define KN_HUMANTIME_H

#include <stddef.h>
#include <stdint.h>

/* Longest text kn_age_format writes, NUL included ("<invalid>", "2562047y"...). */
#define KN_AGE_MAX 24

/* Parses an RFC 3339 timestamp as the API server writes them ("2026-11-25T19:47:06Z",
 * with an optional fraction of any length and a "Z" or "+hh:mm"/"-hh:mm" offset) into
 * Unix milliseconds (the fraction is cut, not rounded): ns_time_parse_ms of timefmt.h,
 * kept under the plugin's name. Returns 0, or -EINVAL for NULL, anything else, or an
 * impossible date (31 February). */
int kn_time_parse(const char *s, int64_t *out_ms);

/* Writes a duration the way kubectl's AGE column does (apimachinery's HumanDuration):
 * about two significant figures, "45s", "5m3s", "42m", "3h20m", "20h", "2d5h", "30d",
 * "2y15d", "9y". Below -1 s (a clock far behind): "<invalid>"; -1 s to 0: "0s".
 * `len` >= KN_AGE_MAX always suffices. */
void kn_age_format(int64_t ms, char *buf, size_t len);

/* The age of something that happened at `then_ms` seen at `now_ms`; "<unknown>" when
 * then_ms is 0 (not set), as kubectl prints for a missing timestamp. */
void kn_age_since(int64_t then_ms, int64_t now_ms, char *buf, size_t len);

#endif

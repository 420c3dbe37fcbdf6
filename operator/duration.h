/* duration.h - Go-style durations ("720h", "1h30m", "90s") as whole seconds.
 *
 * The Mesh resource writes certificate lifetimes the way Kubernetes users know them
 * from Go (cert-manager's `duration`, kubelet flags). We keep seconds because
 * certificates have no use for anything finer.
 */
#ifndef OP_DURATION_H
#define OP_DURATION_H

#include <stdint.h>

/* Parses `s` into whole seconds in *out (written only on success).
 *
 * Grammar: Go's time.ParseDuration restricted to what a certificate lifetime needs:
 * one or more "<number><unit>" parts, unit h, m or s, number digits with an optional
 * fraction (".5h", "1.5h", "5.h" as in Go), parts in any order, summed; "0" alone is
 * zero. The whole string must match: no sign, no spaces, no "d" (Go has none either:
 * write "2160h" for 90 days), no ms/us/ns. Every part must come to a whole number of
 * seconds ("1.5s" is refused rather than rounded), and the sum may not exceed Go's own
 * limit (about 2562047h), so whatever we accept Go accepts too.
 *
 * Returns 0, -EINVAL for bad syntax (including NULL or ""), -ERANGE for overflow. */
int op_duration_parse(const char *s, int64_t *out);

#endif

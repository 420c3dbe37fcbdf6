/* jsonpatch.h - RFC 6902 JSON Patch: building operations and applying them.
 *
 * Paths are RFC 6901 JSON Pointers. Object keys that contain '~' or '/' (such as the
 * annotation key "nutshell.io/status") must be escaped as "~0" and "~1"; build paths
 * with ns_jsonptr() so that escaping is never forgotten.
 */
#ifndef NS_JSONPATCH_H
#define NS_JSONPATCH_H

#include "buf.h"
#include "err.h"

#include <cjson/cJSON.h>

/* Appends "/" + the escaped `token` to `out`. */
void ns_jsonptr_append(ns_buf *out, const char *token);

/* Builds a pointer from a NULL-terminated list of unescaped tokens into `out`
 * (reset first): ns_jsonptr(&b, "metadata", "annotations", "nutshell.io/status", NULL)
 * gives "/metadata/annotations/nutshell.io~1status". Returns the C string. */
const char *ns_jsonptr(ns_buf *out, ...) __attribute__((sentinel));

/* Appends {"op": op, "path": path, "value": value} to the array `ops`. Takes ownership
 * of `value` (may be NULL for "remove"), also on failure. Returns 0 or -ENOMEM. */
int ns_patch_op(cJSON *ops, const char *op, const char *path, cJSON *value);

/* Shorthand for ns_patch_op(ops, "add", path, value). */
int ns_patch_add(cJSON *ops, const char *path, cJSON *value);

/* Applies the operations in `ops` to *doc in order (add, remove, replace, move, copy,
 * test). All or nothing: on failure *doc is left unchanged and err names the failing
 * operation. *doc may be replaced (a patch on the root path ""). Returns 0, -EINVAL for
 * a malformed patch or a path that does not resolve, -ECANCELED for a failed "test",
 * -ENOMEM. */
int ns_patch_apply(cJSON **doc, const cJSON *ops, ns_err *err);

#endif

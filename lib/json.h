/* json.h - small helpers over cJSON for reading Kubernetes objects safely, and a
 * builder for writing them.
 *
 * Every getter tolerates NULL and wrong types: asking for a string where the object
 * holds a number returns NULL, never crashes. Lookups are case-sensitive, as
 * Kubernetes field names are.
 */
#ifndef NS_JSON_H
#define NS_JSON_H

#include "err.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* Parses `len` bytes of JSON. On success *out is a new tree (caller frees with
 * cJSON_Delete). Trailing bytes other than white space are an error. */
int ns_json_parse(const char *text, size_t len, cJSON **out, ns_err *err);

/* Child `key` of object `obj`, or NULL if obj is not an object or has no such key. */
cJSON *ns_json_get(const cJSON *obj, const char *key);
/* Follows a NULL-terminated list of object keys: ns_json_path(pod, "metadata", "labels", NULL). */
cJSON *ns_json_path(const cJSON *root, ...) __attribute__((sentinel));
/* The string value of `obj[key]`, or NULL if absent or not a string. */
const char *ns_json_str(const cJSON *obj, const char *key);
/* Like ns_json_path, returning the final string or NULL. */
const char *ns_json_path_str(const cJSON *root, ...) __attribute__((sentinel));
/* True if `obj[key]` is JSON true. */
bool ns_json_true(const cJSON *obj, const char *key);

/* Returns obj[key], first creating it as an empty object/array if absent.
 * Returns NULL on allocation failure or if the existing member has another type. */
cJSON *ns_json_ensure_object(cJSON *obj, const char *key);
cJSON *ns_json_ensure_array(cJSON *obj, const char *key);
/* Sets obj[key] to a string, replacing any old value. Returns 0 or -ENOMEM. */
int ns_json_set_str(cJSON *obj, const char *key, const char *value);

/* Inserts `item` at position `idx` (0..size; size appends) of `array`, taking ownership.
 * Returns 0, -EINVAL or -ENOMEM. */
int ns_json_array_insert(cJSON *array, int idx, cJSON *item);

/* Serialises compactly; caller frees with cJSON_free() (cJSON may have an arena
 * allocator installed, see arena.h). NULL on allocation failure. */
char *ns_json_print(const cJSON *item);

/* ---- building ----
 *
 * cJSON reports allocation failure by returning NULL, which a long chain of adds would
 * silently drop. A builder remembers the first failure instead, so an object is written
 * straight through and checked once at the end (like ns_buf's `failed`):
 *
 *     ns_jb b = {0};
 *     cJSON *o = cJSON_CreateObject();
 *     ns_jb_str(&b, ns_jb_obj(&b, o, "metadata"), "name", name);
 *     if (!o || b.oom) { cJSON_Delete(o); return -ENOMEM; }
 *
 * Every function accepts a NULL parent (an add that failed before) and then only sets
 * oom. */
typedef struct ns_jb {
    bool oom; /* an allocation failed, or something was added to a NULL parent */
} ns_jb;

/* Adds `item` to `parent`, taking ownership: appended if parent is an array, else as
 * member `key`. Returns item, or NULL (item freed, oom set) if item or parent is NULL or
 * the add fails. */
cJSON *ns_jb_add(ns_jb *b, cJSON *parent, const char *key, cJSON *item);
/* Adds a new empty object / array and returns it (NULL on failure, oom set). */
cJSON *ns_jb_obj(ns_jb *b, cJSON *parent, const char *key);
cJSON *ns_jb_arr(ns_jb *b, cJSON *parent, const char *key);
/* Add a string (copied), a number or a boolean. */
void ns_jb_str(ns_jb *b, cJSON *parent, const char *key, const char *value);
void ns_jb_num(ns_jb *b, cJSON *parent, const char *key, double value);
void ns_jb_bool(ns_jb *b, cJSON *parent, const char *key, bool value);
/* Adds an array of the NULL-terminated list of strings `values`. */
void ns_jb_strs(ns_jb *b, cJSON *parent, const char *key, const char *const *values);
/* Sets parent[key] to a string, replacing any old value (object parents only). */
void ns_jb_set_str(ns_jb *b, cJSON *parent, const char *key, const char *value);

#endif

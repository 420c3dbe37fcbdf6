/* cache.h - the informer's object store: objects by key ("ns/name" or "name"), and the
 * diff between two stores that a relist turns into handler events. Pure. */
#ifndef OP_CACHE_H
#define OP_CACHE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* Longest key: a 63-byte namespace, '/', a 253-byte name, NUL. */
#define OP_KEY_MAX 320

/* Writes the cache key of `obj` ("ns/name" or "name") into `buf`. Returns 0, -EINVAL when
 * metadata.name is missing or empty, -ENAMETOOLONG when it does not fit. */
int op_object_key(const cJSON *obj, char *buf, size_t size);

/* Splits a key into namespace ("" for a cluster-scoped key) and name. Returns 0,
 * -EINVAL for an empty key or part, -ENAMETOOLONG when a part does not fit. */
int op_key_split(const char *key, char *ns, size_t ns_size, char *name, size_t name_size);

/* Not thread-safe by itself: the informer guards its cache with a rwlock. */
typedef struct op_cache op_cache;

int op_cache_new(op_cache **out); /* 0 or -ENOMEM */
void op_cache_free(op_cache *c);  /* frees every object; accepts NULL */

/* Stores `obj` (ownership taken, even on failure) under `key`. The object it replaces is
 * handed to *old when `old` is not NULL (caller frees; NULL if there was none), else
 * freed. Returns 0 or -ENOMEM. */
int op_cache_put(op_cache *c, const char *key, cJSON *obj, cJSON **old);

/* Removes `key` and returns its object (caller frees), or NULL if absent. */
cJSON *op_cache_take(op_cache *c, const char *key);

/* The object under `key` (borrowed, valid until the cache changes), or NULL. */
const cJSON *op_cache_get(const op_cache *c, const char *key);

size_t op_cache_len(const op_cache *c);

/* Called in key order; returning non-zero stops the walk and is returned. */
typedef int (*op_cache_visit_fn)(void *ud, const char *key, const cJSON *obj);
int op_cache_foreach(const op_cache *c, op_cache_visit_fn fn, void *ud);

/* Builds a cache from a List object's "items", moving them out of `list` (which the caller
 * still frees). Items without metadata.name are skipped. With `strip_managed_fields`,
 * metadata.managedFields is dropped from each (it is most of a small object's size and no
 * controller reads it). Returns 0 or -ENOMEM. */
int op_cache_from_list(cJSON *list, bool strip_managed_fields, op_cache **out);

/* ---- what handlers see ---- */

typedef enum op_informer_event_type {
    OP_INFORMER_ADD,    /* obj is new; old NULL */
    OP_INFORMER_UPDATE, /* old -> obj */
    OP_INFORMER_DELETE, /* old is the last state known; obj NULL */
    OP_INFORMER_RESYNC, /* periodic replay: old == obj, nothing changed */
} op_informer_event_type;

typedef struct op_informer_event {
    op_informer_event_type type;
    const char *key;
    const cJSON *old; /* borrowed for the duration of the handler call */
    const cJSON *obj;
} op_informer_event;

/* "add", "update", "delete", "resync". */
const char *op_informer_event_type_name(op_informer_event_type type);

/* The changes that turn `old` into `fresh`: a DELETE for each key only in old, then, in
 * key order, an ADD for each key only in fresh and an UPDATE for each key in both whose
 * object differs (by metadata.resourceVersion; by content when either has none).
 * Unchanged keys yield nothing. *out (free with free(); NULL when *n is 0) points into
 * both caches, which must outlive its use. Returns 0 or -ENOMEM. Pure. */
int op_cache_diff(const op_cache *old, const op_cache *fresh, op_informer_event **out, size_t *n);

/* Drops metadata.managedFields, which informers do not need and which can be most of an
 * object's size. */
void op_object_strip_managed(cJSON *obj);

/* True if `a` and `b` are different versions: by resourceVersion when both have one,
 * else by content. */
bool op_objects_differ(const cJSON *a, const cJSON *b);

#endif

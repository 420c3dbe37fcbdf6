/* cache.c - the object store and the relist diff. */
#include "cache.h"

#include "json.h"

#include <errno.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ keys */

int op_object_key(const cJSON *obj, char *buf, size_t size)
{
    const char *name = ns_json_path_str(obj, "metadata", "name", NULL);
    const char *ns = ns_json_path_str(obj, "metadata", "namespace", NULL);
    if (!name || !name[0])
        return -EINVAL;
    int n = ns && ns[0] ? snprintf(buf, size, "%s/%s", ns, name) : snprintf(buf, size, "%s", name);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int op_key_split(const char *key, char *ns, size_t ns_size, char *name, size_t name_size)
{
    if (!key || !key[0])
        return -EINVAL;
    const char *slash = strchr(key, '/');
    const char *n = slash ? slash + 1 : key;
    size_t nslen = slash ? (size_t)(slash - key) : 0;
    if ((slash && nslen == 0) || !n[0] || strchr(n, '/'))
        return -EINVAL;
    if (nslen >= ns_size || strlen(n) >= name_size)
        return -ENAMETOOLONG;
    memcpy(ns, key, nslen);
    ns[nslen] = '\0';
    memcpy(name, n, strlen(n) + 1);
    return 0;
}

/* ------------------------------------------------------------------ the cache */

typedef struct cache_entry {
    char *key;
    cJSON *obj;
} cache_entry;

struct op_cache {
    void *root; /* tsearch tree of cache_entry*, by key */
    size_t len;
};

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const cache_entry *)a)->key, ((const cache_entry *)b)->key);
}

static void free_entry(void *p)
{
    cache_entry *e = p;
    cJSON_Delete(e->obj);
    free(e->key);
    free(e);
}

int op_cache_new(op_cache **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : -ENOMEM;
}

void op_cache_free(op_cache *c)
{
    if (!c)
        return;
    tdestroy(c->root, free_entry);
    free(c);
}

static cache_entry *cache_find(const op_cache *c, const char *key)
{
    cache_entry probe = {.key = (char *)key};
    void *node = tfind(&probe, (void *const *)&c->root, cmp_entry);
    return node ? *(cache_entry **)node : NULL;
}

int op_cache_put(op_cache *c, const char *key, cJSON *obj, cJSON **old)
{
    if (old)
        *old = NULL;
    cache_entry *e = cache_find(c, key);
    if (e) {
        if (old)
            *old = e->obj;
        else
            cJSON_Delete(e->obj);
        e->obj = obj;
        return 0;
    }
    e = calloc(1, sizeof(*e));
    if (e)
        e->key = strdup(key);
    if (!e || !e->key || !tsearch(e, &c->root, cmp_entry)) {
        if (e)
            free(e->key);
        free(e);
        cJSON_Delete(obj);
        return -ENOMEM;
    }
    e->obj = obj;
    c->len++;
    return 0;
}

cJSON *op_cache_take(op_cache *c, const char *key)
{
    cache_entry *e = cache_find(c, key);
    if (!e)
        return NULL;
    tdelete(e, &c->root, cmp_entry);
    c->len--;
    cJSON *obj = e->obj;
    free(e->key);
    free(e);
    return obj;
}

const cJSON *op_cache_get(const op_cache *c, const char *key)
{
    cache_entry *e = cache_find(c, key);
    return e ? e->obj : NULL;
}

size_t op_cache_len(const op_cache *c)
{
    return c->len;
}

typedef struct walk_ctx {
    op_cache_visit_fn fn;
    void *ud;
    int rc;
} walk_ctx;

/* twalk visits inner nodes three times; `postorder` (and `leaf` for leaves) is the
 * in-order visit, so keys come out sorted. */
static void walk_cb(const void *nodep, VISIT which, void *closure)
{
    walk_ctx *w = closure;
    if (w->rc || (which != postorder && which != leaf))
        return;
    const cache_entry *e = *(cache_entry *const *)nodep;
    w->rc = w->fn(w->ud, e->key, e->obj);
}

int op_cache_foreach(const op_cache *c, op_cache_visit_fn fn, void *ud)
{
    walk_ctx w = {.fn = fn, .ud = ud};
    twalk_r(c->root, walk_cb, &w);
    return w.rc;
}

void op_object_strip_managed(cJSON *obj)
{
    cJSON *md = ns_json_get(obj, "metadata");
    if (md)
        cJSON_DeleteItemFromObjectCaseSensitive(md, "managedFields");
}

int op_cache_from_list(cJSON *list, bool strip_managed_fields, op_cache **out)
{
    int rc = op_cache_new(out);
    if (rc)
        return rc;
    cJSON *items = ns_json_get(list, "items");
    if (!cJSON_IsArray(items))
        return 0;
    while (cJSON_GetArraySize(items) > 0) {
        cJSON *obj = cJSON_DetachItemFromArray(items, 0);
        char key[OP_KEY_MAX];
        if (op_object_key(obj, key, sizeof(key)) != 0) {
            cJSON_Delete(obj);
            continue;
        }
        if (strip_managed_fields)
            op_object_strip_managed(obj);
        rc = op_cache_put(*out, key, obj, NULL);
        if (rc) {
            op_cache_free(*out);
            *out = NULL;
            return rc;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ diff */

typedef struct flat {
    const cache_entry **v;
    size_t n, cap;
    bool failed;
} flat;

static void flatten_walk(const void *nodep, VISIT which, void *closure)
{
    flat *f = closure;
    if (f->failed || (which != postorder && which != leaf))
        return;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        const cache_entry **v = realloc(f->v, cap * sizeof(*v));
        if (!v) {
            f->failed = true;
            return;
        }
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = *(cache_entry *const *)nodep;
}

bool op_objects_differ(const cJSON *a, const cJSON *b)
{
    const char *ra = ns_json_path_str(a, "metadata", "resourceVersion", NULL);
    const char *rb = ns_json_path_str(b, "metadata", "resourceVersion", NULL);
    if (ra && rb)
        return strcmp(ra, rb) != 0;
    return !cJSON_Compare(a, b, true);
}

int op_cache_diff(const op_cache *old, const op_cache *fresh, op_informer_event **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    flat a = {0}, b = {0};
    twalk_r(old->root, flatten_walk, &a);
    twalk_r(fresh->root, flatten_walk, &b);
    int rc = 0;
    op_informer_event *ev = NULL;
    if (a.failed || b.failed) {
        rc = -ENOMEM;
        goto out;
    }
    ev = malloc((a.n + b.n + 1) * sizeof(*ev));
    if (!ev) {
        rc = -ENOMEM;
        goto out;
    }
    size_t k = 0;
    /* deletes first, so that a handler never sees a new object before the removal of the
     * one it replaces (a recreated name appears as an update, not as delete + add) */
    for (size_t i = 0, j = 0; i < a.n; i++) {
        while (j < b.n && strcmp(b.v[j]->key, a.v[i]->key) < 0)
            j++;
        if (j == b.n || strcmp(b.v[j]->key, a.v[i]->key) != 0)
            ev[k++] = (op_informer_event){
                .type = OP_INFORMER_DELETE, .key = a.v[i]->key, .old = a.v[i]->obj};
    }
    for (size_t i = 0, j = 0; j < b.n; j++) {
        while (i < a.n && strcmp(a.v[i]->key, b.v[j]->key) < 0)
            i++;
        if (i < a.n && strcmp(a.v[i]->key, b.v[j]->key) == 0) {
            if (op_objects_differ(a.v[i]->obj, b.v[j]->obj))
                ev[k++] = (op_informer_event){.type = OP_INFORMER_UPDATE,
                                              .key = b.v[j]->key,
                                              .old = a.v[i]->obj,
                                              .obj = b.v[j]->obj};
        } else {
            ev[k++] = (op_informer_event){
                .type = OP_INFORMER_ADD, .key = b.v[j]->key, .obj = b.v[j]->obj};
        }
    }
    if (k == 0) {
        free(ev);
        ev = NULL;
    }
    *out = ev;
    *n = k;
out:
    free(a.v);
    free(b.v);
    return rc;
}

const char *op_informer_event_type_name(op_informer_event_type type)
{
    switch (type) {
    case OP_INFORMER_ADD:
        return "add";
    case OP_INFORMER_UPDATE:
        return "update";
    case OP_INFORMER_DELETE:
        return "delete";
    case OP_INFORMER_RESYNC:
        return "resync";
    }
    return "unknown";
}

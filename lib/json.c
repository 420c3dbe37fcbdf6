/* json.c - defensive accessors over cJSON, and the builder that checks once. */
#include "json.h"

#include <ctype.h>
#include <stdarg.h>
#include <string.h>

int ns_json_parse(const char *text, size_t len, cJSON **out, ns_err *err)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root) {
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        return ns_errorf(err, -EINVAL, "malformed JSON near byte %zu", off);
    }
    for (const char *p = end; p && p < text + len; p++) {
        if (*p == '\0' && p == text + len - 1)
            break; /* a counted buffer may include its terminator */
        if (!isspace((unsigned char)*p)) {
            cJSON_Delete(root);
            return ns_errorf(err, -EINVAL, "unexpected data after JSON at byte %zu",
                             (size_t)(p - text));
        }
    }
    *out = root;
    return 0;
}

cJSON *ns_json_get(const cJSON *obj, const char *key)
{
    if (!cJSON_IsObject(obj))
        return NULL;
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static cJSON *walk(const cJSON *root, va_list ap)
{
    const cJSON *cur = root;
    const char *key;
    while (cur && (key = va_arg(ap, const char *)) != NULL)
        cur = ns_json_get(cur, key);
    return (cJSON *)cur;
}

cJSON *ns_json_path(const cJSON *root, ...)
{
    va_list ap;
    va_start(ap, root);
    cJSON *r = walk(root, ap);
    va_end(ap);
    return r;
}

const char *ns_json_str(const cJSON *obj, const char *key)
{
    const cJSON *v = ns_json_get(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

const char *ns_json_path_str(const cJSON *root, ...)
{
    va_list ap;
    va_start(ap, root);
    const cJSON *v = walk(root, ap);
    va_end(ap);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool ns_json_true(const cJSON *obj, const char *key)
{
    return cJSON_IsTrue(ns_json_get(obj, key));
}

static cJSON *ensure(cJSON *obj, const char *key, bool array)
{
    if (!cJSON_IsObject(obj))
        return NULL;
    cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v)
        return (array ? cJSON_IsArray(v) : cJSON_IsObject(v)) ? v : NULL;
    v = array ? cJSON_CreateArray() : cJSON_CreateObject();
    if (v && !cJSON_AddItemToObject(obj, key, v)) {
        cJSON_Delete(v);
        v = NULL;
    }
    return v;
}

cJSON *ns_json_ensure_object(cJSON *obj, const char *key)
{
    return ensure(obj, key, false);
}

cJSON *ns_json_ensure_array(cJSON *obj, const char *key)
{
    return ensure(obj, key, true);
}

int ns_json_set_str(cJSON *obj, const char *key, const char *value)
{
    cJSON *s = cJSON_CreateString(value);
    if (!s)
        return -ENOMEM;
    if (cJSON_GetObjectItemCaseSensitive(obj, key)) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(obj, key, s)) {
            cJSON_Delete(s);
            return -ENOMEM;
        }
        return 0;
    }
    if (!cJSON_AddItemToObject(obj, key, s)) {
        cJSON_Delete(s);
        return -ENOMEM;
    }
    return 0;
}

/* Done by hand: cJSON_InsertItemInArray of Debian's cJSON 1.7.15 refuses an insert that
 * follows an earlier insert at index 0 (its corrupted-list check misreads the list it
 * built itself). */
int ns_json_array_insert(cJSON *array, int idx, cJSON *item)
{
    if (!cJSON_IsArray(array) || !item || idx < 0)
        return -EINVAL;
    cJSON *tail = cJSON_CreateArray();
    if (!tail)
        return -ENOMEM;
    while (cJSON_GetArraySize(array) > idx)
        cJSON_AddItemToArray(tail, cJSON_DetachItemFromArray(array, idx));
    cJSON_AddItemToArray(array, item);
    while (tail->child)
        cJSON_AddItemToArray(array, cJSON_DetachItemViaPointer(tail, tail->child));
    cJSON_Delete(tail);
    return 0;
}

char *ns_json_print(const cJSON *item)
{
    return cJSON_PrintUnformatted(item);
}

cJSON *ns_jb_add(ns_jb *b, cJSON *parent, const char *key, cJSON *item)
{
    bool ok = item && parent &&
              (cJSON_IsArray(parent) ? cJSON_AddItemToArray(parent, item)
                                     : cJSON_AddItemToObject(parent, key, item));
    if (!ok) {
        cJSON_Delete(item);
        b->oom = true;
        return NULL;
    }
    return item;
}

cJSON *ns_jb_obj(ns_jb *b, cJSON *parent, const char *key)
{
    return ns_jb_add(b, parent, key, cJSON_CreateObject());
}

cJSON *ns_jb_arr(ns_jb *b, cJSON *parent, const char *key)
{
    return ns_jb_add(b, parent, key, cJSON_CreateArray());
}

void ns_jb_str(ns_jb *b, cJSON *parent, const char *key, const char *value)
{
    ns_jb_add(b, parent, key, cJSON_CreateString(value));
}

void ns_jb_num(ns_jb *b, cJSON *parent, const char *key, double value)
{
    ns_jb_add(b, parent, key, cJSON_CreateNumber(value));
}

void ns_jb_bool(ns_jb *b, cJSON *parent, const char *key, bool value)
{
    ns_jb_add(b, parent, key, cJSON_CreateBool(value));
}

void ns_jb_strs(ns_jb *b, cJSON *parent, const char *key, const char *const *values)
{
    cJSON *a = ns_jb_arr(b, parent, key);
    for (; a && *values; values++)
        ns_jb_str(b, a, NULL, *values);
}

void ns_jb_set_str(ns_jb *b, cJSON *parent, const char *key, const char *value)
{
    if (!parent || ns_json_set_str(parent, key, value))
        b->oom = true;
}

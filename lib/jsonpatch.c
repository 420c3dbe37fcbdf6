/* jsonpatch.c - RFC 6902 patch construction and application over cJSON trees. */
#include "jsonpatch.h"

#include "json.h"
#include "strconv.h"

#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

void ns_jsonptr_append(ns_buf *out, const char *token)
{
    ns_buf_putc(out, '/');
    for (const char *p = token; *p; p++) {
        if (*p == '~')
            ns_buf_puts(out, "~0");
        else if (*p == '/')
            ns_buf_puts(out, "~1");
        else
            ns_buf_putc(out, *p);
    }
}

const char *ns_jsonptr(ns_buf *out, ...)
{
    ns_buf_reset(out);
    va_list ap;
    va_start(ap, out);
    const char *tok;
    while ((tok = va_arg(ap, const char *)) != NULL)
        ns_jsonptr_append(out, tok);
    va_end(ap);
    return ns_buf_cstr(out);
}

int ns_patch_op(cJSON *ops, const char *op, const char *path, cJSON *value)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "op", op) || !cJSON_AddStringToObject(o, "path", path))
        goto nomem;
    if (value && !cJSON_AddItemToObject(o, "value", value)) {
        cJSON_Delete(o);
        return -ENOMEM; /* value not attached: still ours to free, done below */
    }
    value = NULL;
    if (!cJSON_AddItemToArray(ops, o))
        goto nomem;
    return 0;
nomem:
    cJSON_Delete(o);
    cJSON_Delete(value);
    return -ENOMEM;
}

int ns_patch_add(cJSON *ops, const char *path, cJSON *value)
{
    return ns_patch_op(ops, "add", path, value);
}

/* ---- pointer resolution ---- */

/* Decodes the next reference token of `*ptr` (which points at a '/') into `tok`. */
static int next_token(const char **ptr, ns_buf *tok)
{
    const char *p = *ptr;
    if (*p != '/')
        return -EINVAL;
    p++;
    ns_buf_reset(tok);
    for (; *p && *p != '/'; p++) {
        if (*p == '~') {
            if (p[1] == '0')
                ns_buf_putc(tok, '~');
            else if (p[1] == '1')
                ns_buf_putc(tok, '/');
            else
                return -EINVAL;
            p++;
        } else {
            ns_buf_putc(tok, *p);
        }
    }
    *ptr = p;
    return tok->failed ? -ENOMEM : 0;
}

/* An array index token: digits without leading zeros. "-" is handled by callers. */
static int array_index(const char *tok, int size, bool allow_end, int *out)
{
    if (allow_end && strcmp(tok, "-") == 0) {
        *out = size;
        return 0;
    }
    if (tok[0] == '0' && tok[1] != '\0')
        return -EINVAL;
    uint32_t v;
    if (ns_parse_u32(tok, 0x7fffffff, &v) != 0)
        return -EINVAL;
    if ((int)v > size || (!allow_end && (int)v == size))
        return -EINVAL;
    *out = (int)v;
    return 0;
}

/* Resolves `path` up to its last token. On success *parent is the container holding
 * the target and `last` the decoded final token. The root path "" has no parent:
 * *parent is NULL. */
static int resolve_parent(cJSON *doc, const char *path, cJSON **parent, ns_buf *last)
{
    *parent = NULL;
    if (*path == '\0')
        return 0;
    cJSON *cur = doc;
    const char *p = path;
    char tokstore[128];
    ns_buf tok;
    ns_buf_init_static(&tok, tokstore, sizeof(tokstore));
    int rc = 0;
    for (;;) {
        rc = next_token(&p, &tok);
        if (rc)
            break;
        if (*p == '\0') {
            ns_buf_reset(last);
            ns_buf_append(last, tok.data, tok.len);
            *parent = cur;
            break;
        }
        if (cJSON_IsObject(cur)) {
            cur = cJSON_GetObjectItemCaseSensitive(cur, ns_buf_cstr(&tok));
        } else if (cJSON_IsArray(cur)) {
            int idx;
            rc = array_index(ns_buf_cstr(&tok), cJSON_GetArraySize(cur), false, &idx);
            if (rc)
                break;
            cur = cJSON_GetArrayItem(cur, idx);
        } else {
            cur = NULL;
        }
        if (!cur) {
            rc = -EINVAL;
            break;
        }
    }
    ns_buf_free(&tok);
    return rc;
}

/* Returns the value at `path`, or NULL. */
static cJSON *lookup(cJSON *doc, const char *path)
{
    cJSON *parent;
    char store[128];
    ns_buf last;
    ns_buf_init_static(&last, store, sizeof(store));
    cJSON *r = NULL;
    if (resolve_parent(doc, path, &parent, &last) == 0) {
        if (!parent) {
            r = doc;
        } else if (cJSON_IsObject(parent)) {
            r = cJSON_GetObjectItemCaseSensitive(parent, ns_buf_cstr(&last));
        } else if (cJSON_IsArray(parent)) {
            int idx;
            if (array_index(ns_buf_cstr(&last), cJSON_GetArraySize(parent), false, &idx) == 0)
                r = cJSON_GetArrayItem(parent, idx);
        }
    }
    ns_buf_free(&last);
    return r;
}

/* Detaches and returns the value at `path` (NULL if absent or the root). */
static cJSON *detach(cJSON *doc, const char *path)
{
    cJSON *parent, *r = NULL;
    char store[128];
    ns_buf last;
    ns_buf_init_static(&last, store, sizeof(store));
    if (resolve_parent(doc, path, &parent, &last) == 0 && parent) {
        if (cJSON_IsObject(parent)) {
            r = cJSON_DetachItemFromObjectCaseSensitive(parent, ns_buf_cstr(&last));
        } else if (cJSON_IsArray(parent)) {
            int idx;
            if (array_index(ns_buf_cstr(&last), cJSON_GetArraySize(parent), false, &idx) == 0)
                r = cJSON_DetachItemFromArray(parent, idx);
        }
    }
    ns_buf_free(&last);
    return r;
}

/* Inserts `value` at `path` with "add" semantics; takes ownership on success only. */
static int insert(cJSON **doc, const char *path, cJSON *value)
{
    cJSON *parent;
    char store[128];
    ns_buf last;
    ns_buf_init_static(&last, store, sizeof(store));
    int rc = resolve_parent(*doc, path, &parent, &last);
    if (rc)
        goto out;
    if (!parent) {
        cJSON_Delete(*doc);
        *doc = value;
    } else if (cJSON_IsObject(parent)) {
        const char *key = ns_buf_cstr(&last);
        if (cJSON_GetObjectItemCaseSensitive(parent, key))
            rc = cJSON_ReplaceItemInObjectCaseSensitive(parent, key, value) ? 0 : -ENOMEM;
        else
            rc = cJSON_AddItemToObject(parent, key, value) ? 0 : -ENOMEM;
    } else if (cJSON_IsArray(parent)) {
        int idx, size = cJSON_GetArraySize(parent);
        rc = array_index(ns_buf_cstr(&last), size, true, &idx);
        if (rc == 0) {
            if (idx == size)
                rc = cJSON_AddItemToArray(parent, value) ? 0 : -ENOMEM;
            else
                rc = ns_json_array_insert(parent, idx, value);
        }
    } else {
        rc = -EINVAL;
    }
out:
    ns_buf_free(&last);
    return rc;
}

/* True if `from` is a proper prefix of `path` at a token boundary (RFC 6902 4.4). */
static bool is_proper_prefix(const char *from, const char *path)
{
    size_t n = strlen(from);
    return strncmp(from, path, n) == 0 && path[n] == '/';
}

static int apply_one(cJSON **doc, const cJSON *op, ns_err *err, int i)
{
    const char *name = ns_json_str(op, "op");
    const char *path = ns_json_str(op, "path");
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(op, "value");
    const char *from = ns_json_str(op, "from");
    if (!cJSON_IsObject(op) || !name || !path)
        return ns_errorf(err, -EINVAL, "operation %d: needs \"op\" and \"path\" strings", i);

    bool needs_value = !strcmp(name, "add") || !strcmp(name, "replace") || !strcmp(name, "test");
    if (needs_value && !value)
        return ns_errorf(err, -EINVAL, "operation %d (%s %s): missing \"value\"", i, name, path);

    if (!strcmp(name, "test")) {
        cJSON *cur = lookup(*doc, path);
        if (!cur || !cJSON_Compare(cur, value, true))
            return ns_errorf(err, -ECANCELED, "operation %d: test failed at %s", i, path);
        return 0;
    }
    if (!strcmp(name, "remove") || !strcmp(name, "replace")) {
        if (*path == '\0' && !strcmp(name, "replace")) {
            cJSON *copy = cJSON_Duplicate(value, true);
            if (!copy)
                return -ENOMEM;
            cJSON_Delete(*doc);
            *doc = copy;
            return 0;
        }
        cJSON *old = detach(*doc, path);
        if (!old)
            return ns_errorf(err, -EINVAL, "operation %d (%s): no value at %s", i, name, path);
        cJSON_Delete(old);
        if (!strcmp(name, "remove"))
            return 0;
        /* replace = remove + add at the same place */
    }
    if (!strcmp(name, "add") || !strcmp(name, "replace")) {
        cJSON *copy = cJSON_Duplicate(value, true);
        if (!copy)
            return -ENOMEM;
        int rc = insert(doc, path, copy);
        if (rc) {
            cJSON_Delete(copy);
            return ns_errorf(err, rc, "operation %d (%s): cannot add at %s", i, name, path);
        }
        return 0;
    }
    if (!strcmp(name, "move") || !strcmp(name, "copy")) {
        if (!from)
            return ns_errorf(err, -EINVAL, "operation %d (%s): missing \"from\"", i, name);
        if (!strcmp(name, "move") && is_proper_prefix(from, path))
            return ns_errorf(err, -EINVAL, "operation %d: cannot move %s into itself", i, from);
        cJSON *v;
        if (!strcmp(name, "move")) {
            if (!strcmp(from, path))
                return lookup(*doc, from)
                           ? 0
                           : ns_errorf(err, -EINVAL, "operation %d: no value at %s", i, from);
            v = detach(*doc, from);
        } else {
            cJSON *src = lookup(*doc, from);
            v = src ? cJSON_Duplicate(src, true) : NULL;
        }
        if (!v)
            return ns_errorf(err, -EINVAL, "operation %d (%s): no value at %s", i, name, from);
        int rc = insert(doc, path, v);
        if (rc) {
            cJSON_Delete(v);
            return ns_errorf(err, rc, "operation %d (%s): cannot add at %s", i, name, path);
        }
        return 0;
    }
    return ns_errorf(err, -EINVAL, "operation %d: unknown op \"%s\"", i, name);
}

int ns_patch_apply(cJSON **doc, const cJSON *ops, ns_err *err)
{
    if (!cJSON_IsArray(ops))
        return ns_errorf(err, -EINVAL, "a JSON patch must be an array of operations");
    /* Work on a copy so that a failure half-way leaves the caller's document intact. */
    cJSON *work = cJSON_Duplicate(*doc, true);
    if (!work && *doc)
        return -ENOMEM;
    int i = 0, rc = 0;
    const cJSON *op;
    cJSON_ArrayForEach(op, ops)
    {
        rc = apply_one(&work, op, err, i++);
        if (rc)
            break;
    }
    if (rc) {
        cJSON_Delete(work);
        return rc;
    }
    cJSON_Delete(*doc);
    *doc = work;
    return 0;
}

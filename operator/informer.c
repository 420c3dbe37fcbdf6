/* informer.c - label selectors, the object cache and its relist diff, and the LIST+WATCH
 * loop that keeps the cache current. */
#include "informer.h"

#include "json.h"
#include "log.h"
#include "strconv.h"

#include <errno.h>
#include <pthread.h>
#include <search.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* client-go's reflector asks for pages of 500 so that a large first list does not make
 * the API server build one huge response. */
#define LIST_PAGE_SIZE  500
#define BACKOFF_BASE_MS 200
#define BACKOFF_MAX_MS  30000
/* A watch that lived this long was healthy: the next failure starts the backoff over. */
#define HEALTHY_WATCH_MS 30000

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

/* ------------------------------------------------------------------ selectors */

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A label value, and the name part of a key: at most 63 of [A-Za-z0-9-_.], alphanumeric
 * at both ends. Empty is a valid value but not a valid name. */
static bool valid_label_name(const char *s, size_t len, bool allow_empty)
{
    if (len == 0)
        return allow_empty;
    if (len > 63 || !is_alnum(s[0]) || !is_alnum(s[len - 1]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

/* A DNS-1123 subdomain: the optional prefix of a key ("app.kubernetes.io"). */
static bool valid_dns_subdomain(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool lower_alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!lower_alnum && c != '-' && c != '.')
            return false;
        if ((i == 0 || i == len - 1) && !lower_alnum)
            return false;
    }
    return true;
}

static bool valid_label_key(const char *s)
{
    const char *slash = strchr(s, '/');
    if (!slash)
        return valid_label_name(s, strlen(s), false);
    return valid_dns_subdomain(s, (size_t)(slash - s)) &&
           valid_label_name(slash + 1, strlen(slash + 1), false);
}

void op_selector_free(op_selector *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->reqs[i].key);
        for (size_t j = 0; j < s->reqs[i].nvalues; j++)
            free(s->reqs[i].values[j]);
        free(s->reqs[i].values);
    }
    free(s->reqs);
    *s = (op_selector){0};
}

/* Appends a requirement with no values yet. */
static op_selector_req *add_req(op_selector *s, const char *key, size_t keylen, op_selector_op op)
{
    op_selector_req *r = realloc(s->reqs, (s->n + 1) * sizeof(*r));
    if (!r)
        return NULL;
    s->reqs = r;
    op_selector_req *req = &s->reqs[s->n];
    *req = (op_selector_req){.op = op};
    req->key = strndup(key, keylen);
    if (!req->key)
        return NULL;
    s->n++;
    return req;
}

static int add_value(op_selector_req *req, const char *v, size_t len)
{
    char **vals = realloc(req->values, (req->nvalues + 1) * sizeof(*vals));
    if (!vals)
        return -ENOMEM;
    req->values = vals;
    vals[req->nvalues] = strndup(v, len);
    if (!vals[req->nvalues])
        return -ENOMEM;
    req->nvalues++;
    return 0;
}

static bool ident_char(char c)
{
    return c && !strchr(" \t\r\n,()!=<>", c);
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    return p;
}

/* Reads an identifier at *p; returns its length (0 if none) and advances *p. */
static size_t read_ident(const char **p, const char **start)
{
    *start = *p;
    while (ident_char(**p))
        (*p)++;
    return (size_t)(*p - *start);
}

static int check_value(const char *v, size_t len, const char *sel, ns_err *err)
{
    if (valid_label_name(v, len, true))
        return 0;
    return ns_errorf(err, -EINVAL,
                     "label selector \"%s\": invalid value \"%.*s\" (at most 63 characters of "
                     "A-Z, a-z, 0-9, '-', '_', '.', alphanumeric at both ends)",
                     sel, (int)(len > 80 ? 80 : len), v);
}

static int parse_values_list(const char **pp, op_selector_req *req, const char *sel, ns_err *err)
{
    const char *p = skip_ws(*pp);
    if (*p != '(')
        return ns_errorf(err, -EINVAL, "label selector \"%s\": expected '(' after \"%s\"", sel,
                         req->op == OP_SEL_IN ? "in" : "notin");
    p++;
    for (;;) {
        p = skip_ws(p);
        const char *v;
        size_t len = read_ident(&p, &v);
        int rc = check_value(v, len, sel, err);
        if (rc)
            return rc;
        if (add_value(req, v, len))
            return ns_errorf(err, -ENOMEM, "out of memory parsing a label selector");
        p = skip_ws(p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == ')') {
            p++;
            break;
        }
        return ns_errorf(err, -EINVAL, "label selector \"%s\": expected ',' or ')' in a value set",
                         sel);
    }
    /* "in ()" and "in (,)" name no value, which Kubernetes refuses */
    bool any = false;
    for (size_t i = 0; i < req->nvalues; i++)
        any = any || req->values[i][0];
    if (!any)
        return ns_errorf(err, -EINVAL, "label selector \"%s\": empty value set", sel);
    *pp = p;
    return 0;
}

static int parse_requirement(const char **pp, op_selector *s, const char *sel, ns_err *err)
{
    const char *p = skip_ws(*pp);
    bool negated = false;
    if (*p == '!') {
        negated = true;
        p = skip_ws(p + 1);
    }
    const char *key;
    size_t keylen = read_ident(&p, &key);
    if (keylen == 0)
        return ns_errorf(err, -EINVAL, "label selector \"%s\": expected a label key", sel);
    char keybuf[320];
    if (keylen >= sizeof(keybuf))
        return ns_errorf(err, -EINVAL, "label selector \"%s\": key too long", sel);
    memcpy(keybuf, key, keylen);
    keybuf[keylen] = '\0';
    if (!valid_label_key(keybuf))
        return ns_errorf(err, -EINVAL,
                         "label selector \"%s\": invalid key \"%s\" (an optional DNS subdomain "
                         "and '/', then at most 63 characters of A-Z, a-z, 0-9, '-', '_', '.')",
                         sel, keybuf);
    p = skip_ws(p);
    op_selector_op op;
    if (negated || *p == '\0' || *p == ',') {
        op = negated ? OP_SEL_NOT_EXISTS : OP_SEL_EXISTS;
    } else if (p[0] == '=' && p[1] == '=') {
        op = OP_SEL_EQ;
        p += 2;
    } else if (p[0] == '=') {
        op = OP_SEL_EQ;
        p += 1;
    } else if (p[0] == '!' && p[1] == '=') {
        op = OP_SEL_NEQ;
        p += 2;
    } else if (p[0] == '>' || p[0] == '<') {
        op = p[0] == '>' ? OP_SEL_GT : OP_SEL_LT;
        p += 1;
    } else {
        const char *word;
        size_t wlen = read_ident(&p, &word);
        if (wlen == 2 && memcmp(word, "in", 2) == 0)
            op = OP_SEL_IN;
        else if (wlen == 5 && memcmp(word, "notin", 5) == 0)
            op = OP_SEL_NOTIN;
        else
            return ns_errorf(err, -EINVAL,
                             "label selector \"%s\": expected an operator (=, ==, !=, in, notin, "
                             ">, <) after \"%s\"",
                             sel, keybuf);
    }
    op_selector_req *req = add_req(s, key, keylen, op);
    if (!req)
        return ns_errorf(err, -ENOMEM, "out of memory parsing a label selector");
    int rc = 0;
    if (op == OP_SEL_IN || op == OP_SEL_NOTIN) {
        rc = parse_values_list(&p, req, sel, err);
    } else if (op != OP_SEL_EXISTS && op != OP_SEL_NOT_EXISTS) {
        p = skip_ws(p);
        const char *v;
        size_t len = read_ident(&p, &v);
        rc = check_value(v, len, sel, err);
        if (!rc && (op == OP_SEL_GT || op == OP_SEL_LT)) {
            char num[64];
            int64_t x;
            snprintf(num, sizeof(num), "%.*s", (int)(len < 63 ? len : 63), v);
            if (len == 0 || len > 63 || ns_parse_i64(num, INT64_MIN, INT64_MAX, &x) != 0)
                rc = ns_errorf(err, -EINVAL,
                               "label selector \"%s\": '>' and '<' need an integer, not \"%s\"",
                               sel, num);
        }
        if (!rc && add_value(req, v, len))
            rc = ns_errorf(err, -ENOMEM, "out of memory parsing a label selector");
    }
    *pp = p;
    return rc;
}

int op_selector_parse(const char *text, op_selector *out, ns_err *err)
{
    *out = (op_selector){0};
    if (!text)
        return 0;
    const char *p = skip_ws(text);
    if (!*p)
        return 0;
    for (;;) {
        int rc = parse_requirement(&p, out, text, err);
        if (rc) {
            op_selector_free(out);
            return rc;
        }
        p = skip_ws(p);
        if (*p == '\0')
            return 0;
        if (*p != ',') {
            op_selector_free(out);
            return ns_errorf(err, -EINVAL, "label selector \"%s\": unexpected \"%.20s\"", text, p);
        }
        p++;
    }
}

int op_selector_from_json(const cJSON *ls, op_selector *out, ns_err *err)
{
    *out = (op_selector){0};
    if (!ls || cJSON_IsNull(ls)) {
        out->nothing = true;
        return 0;
    }
    if (!cJSON_IsObject(ls))
        return ns_errorf(err, -EINVAL, "a label selector must be an object");
    int rc = 0;
    const cJSON *ml = ns_json_get(ls, "matchLabels");
    const cJSON *kv;
    cJSON_ArrayForEach(kv, ml)
    {
        if (!cJSON_IsString(kv) || !valid_label_key(kv->string) ||
            !valid_label_name(kv->valuestring, strlen(kv->valuestring), true)) {
            rc = ns_errorf(err, -EINVAL, "matchLabels: invalid label \"%s\"",
                           kv->string ? kv->string : "");
            goto out;
        }
        op_selector_req *req = add_req(out, kv->string, strlen(kv->string), OP_SEL_EQ);
        if (!req || add_value(req, kv->valuestring, strlen(kv->valuestring))) {
            rc = ns_errorf(err, -ENOMEM, "out of memory reading a label selector");
            goto out;
        }
    }
    const cJSON *ex;
    cJSON_ArrayForEach(ex, ns_json_get(ls, "matchExpressions"))
    {
        const char *key = ns_json_str(ex, "key");
        const char *opname = ns_json_str(ex, "operator");
        const cJSON *values = ns_json_get(ex, "values");
        int nvalues = cJSON_IsArray(values) ? cJSON_GetArraySize(values) : 0;
        op_selector_op op;
        if (!key || !valid_label_key(key)) {
            rc = ns_errorf(err, -EINVAL, "matchExpressions: invalid key \"%s\"", key ? key : "");
            goto out;
        }
        if (opname && strcmp(opname, "In") == 0)
            op = OP_SEL_IN;
        else if (opname && strcmp(opname, "NotIn") == 0)
            op = OP_SEL_NOTIN;
        else if (opname && strcmp(opname, "Exists") == 0)
            op = OP_SEL_EXISTS;
        else if (opname && strcmp(opname, "DoesNotExist") == 0)
            op = OP_SEL_NOT_EXISTS;
        else {
            rc = ns_errorf(err, -EINVAL, "matchExpressions: key \"%s\": unknown operator \"%s\"",
                           key, opname ? opname : "");
            goto out;
        }
        bool set_op = op == OP_SEL_IN || op == OP_SEL_NOTIN;
        if (set_op != (nvalues > 0)) {
            rc = ns_errorf(err, -EINVAL, "matchExpressions: key \"%s\": operator %s %s values", key,
                           opname, set_op ? "needs" : "takes no");
            goto out;
        }
        op_selector_req *req = add_req(out, key, strlen(key), op);
        if (!req) {
            rc = ns_errorf(err, -ENOMEM, "out of memory reading a label selector");
            goto out;
        }
        const cJSON *v;
        cJSON_ArrayForEach(v, values)
        {
            if (!cJSON_IsString(v) ||
                !valid_label_name(v->valuestring, strlen(v->valuestring), true)) {
                rc = ns_errorf(err, -EINVAL, "matchExpressions: key \"%s\": invalid value", key);
                goto out;
            }
            if (add_value(req, v->valuestring, strlen(v->valuestring))) {
                rc = ns_errorf(err, -ENOMEM, "out of memory reading a label selector");
                goto out;
            }
        }
    }
out:
    if (rc)
        op_selector_free(out);
    return rc;
}

static bool in_values(const op_selector_req *r, const char *v)
{
    for (size_t i = 0; i < r->nvalues; i++)
        if (strcmp(r->values[i], v) == 0)
            return true;
    return false;
}

static bool req_matches(const op_selector_req *r, const cJSON *labels)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(labels, r->key);
    const char *v = cJSON_IsString(item) ? item->valuestring : NULL;
    switch (r->op) {
    case OP_SEL_EQ:
        return v && r->nvalues == 1 && strcmp(v, r->values[0]) == 0;
    case OP_SEL_NEQ:
        return !v || r->nvalues != 1 || strcmp(v, r->values[0]) != 0;
    case OP_SEL_IN:
        return v && in_values(r, v);
    case OP_SEL_NOTIN:
        return !v || !in_values(r, v);
    case OP_SEL_EXISTS:
        return v != NULL;
    case OP_SEL_NOT_EXISTS:
        return v == NULL;
    case OP_SEL_GT:
    case OP_SEL_LT: {
        int64_t have, want;
        if (!v || r->nvalues != 1 || ns_parse_i64(v, INT64_MIN, INT64_MAX, &have) ||
            ns_parse_i64(r->values[0], INT64_MIN, INT64_MAX, &want))
            return false;
        return r->op == OP_SEL_GT ? have > want : have < want;
    }
    }
    return false;
}

bool op_selector_matches(const op_selector *s, const cJSON *labels)
{
    if (!s)
        return true;
    if (s->nothing)
        return false;
    for (size_t i = 0; i < s->n; i++)
        if (!req_matches(&s->reqs[i], labels))
            return false;
    return true;
}

bool op_selector_matches_object(const op_selector *s, const cJSON *obj)
{
    return op_selector_matches(s, ns_json_path(obj, "metadata", "labels", NULL));
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

static void strip_managed(cJSON *obj)
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
            strip_managed(obj);
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

static bool objects_differ(const cJSON *a, const cJSON *b)
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
            if (objects_differ(a.v[i]->obj, b.v[j]->obj))
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

/* ------------------------------------------------------------------ the Kubernetes source */

typedef struct kube_source {
    ns_kube *k;
    char *group, *version, *resource, *namespace;
    char *label_selector, *field_selector;
    ns_kube_watch *w;
} kube_source;

static int kube_list(void *ud, cJSON **out, ns_kube_status *st)
{
    kube_source *s = ud;
    ns_kube_ref ref = {.group = s->group,
                       .version = s->version,
                       .resource = s->resource,
                       .namespace = s->namespace};
    ns_kube_list_opts lo = {.label_selector = s->label_selector,
                            .field_selector = s->field_selector,
                            .limit = LIST_PAGE_SIZE};
    return ns_kube_list(s->k, &ref, &lo, out, st);
}

static int kube_watch(void *ud, const char *rv, ns_kube_watch_cb cb, void *cb_ud,
                      ns_kube_status *st)
{
    kube_source *s = ud;
    int rc = ns_kube_watch_set_resource_version(s->w, rv);
    return rc ? rc : ns_kube_watch_run(s->w, cb, cb_ud, st);
}

static void kube_stop(void *ud)
{
    kube_source *s = ud;
    ns_kube_watch_stop(s->w);
}

static void kube_free(void *ud)
{
    kube_source *s = ud;
    if (!s)
        return;
    ns_kube_watch_free(s->w);
    free(s->group);
    free(s->version);
    free(s->resource);
    free(s->namespace);
    free(s->label_selector);
    free(s->field_selector);
    free(s);
}

static bool dup_or_null(char **dst, const char *src)
{
    *dst = src ? strdup(src) : NULL;
    return !src || *dst;
}

/* ------------------------------------------------------------------ the informer */

typedef struct handler {
    op_informer_handler_fn fn;
    void *ud;
} handler;

struct op_informer {
    char *name;
    op_informer_source src;
    long resync_ms;
    bool strip_managed;
    ns_kube_backoff backoff;

    /* Readers take `lock` shared. The one writer (the informer thread) takes `write_mu`,
     * then `lock` exclusively only while it changes the cache, and keeps `write_mu` while
     * it calls handlers. So handlers are serialised, and a handler (or the resync thread,
     * which also holds write_mu) can use cached pointers without the rwlock: nobody else
     * can change the cache meanwhile. */
    pthread_rwlock_t lock;
    pthread_mutex_t write_mu;
    op_cache *cache;

    handler *handlers;
    size_t nhandlers;

    pthread_mutex_t state_mu;
    pthread_cond_t state_cv; /* synced, stopping */
    bool started, stopping, synced, joined;
    pthread_t thread, resync_thread;
    bool have_resync_thread;

    atomic_ulong lists, events;
};

int op_informer_new_source(const op_informer_source *src, const op_informer_opts *opts,
                           op_informer **out, ns_err *err)
{
    *out = NULL;
    op_informer_opts none = {0};
    if (!opts)
        opts = &none;
    op_informer *inf = calloc(1, sizeof(*inf));
    if (!inf || !(inf->name = strdup(opts->name ? opts->name : "informer")) ||
        op_cache_new(&inf->cache) != 0) {
        if (inf) {
            free(inf->name);
            free(inf);
        }
        if (src->free)
            src->free(src->ud);
        return ns_errorf(err, -ENOMEM, "out of memory creating an informer");
    }
    inf->src = *src;
    inf->resync_ms = opts->resync_ms > 0 ? opts->resync_ms : 0;
    inf->strip_managed = !opts->keep_managed_fields;
    inf->backoff = opts->backoff;
    if (inf->backoff.base_ms <= 0)
        inf->backoff.base_ms = BACKOFF_BASE_MS;
    if (inf->backoff.max_ms <= 0)
        inf->backoff.max_ms = BACKOFF_MAX_MS;
    pthread_rwlock_init(&inf->lock, NULL);
    pthread_mutex_init(&inf->write_mu, NULL);
    pthread_mutex_init(&inf->state_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&inf->state_cv, &ca);
    pthread_condattr_destroy(&ca);
    *out = inf;
    return 0;
}

int op_informer_new(ns_kube *k, const ns_kube_ref *ref, const op_informer_opts *opts,
                    op_informer **out, ns_err *err)
{
    *out = NULL;
    if (ref->name || ref->subresource)
        return ns_errorf(err, -EINVAL, "an informer watches a collection: no name or subresource");
    ns_buf probe;
    ns_buf_init(&probe);
    int rc = ns_kube_path(ref, &probe, err);
    ns_buf_free(&probe);
    if (rc)
        return rc;
    kube_source *s = calloc(1, sizeof(*s));
    if (!s)
        return ns_errorf(err, -ENOMEM, "out of memory creating an informer");
    s->k = k;
    bool ok = dup_or_null(&s->group, ref->group) && dup_or_null(&s->version, ref->version) &&
              dup_or_null(&s->resource, ref->resource) &&
              dup_or_null(&s->namespace, ref->namespace) &&
              dup_or_null(&s->label_selector, opts ? opts->label_selector : NULL) &&
              dup_or_null(&s->field_selector, opts ? opts->field_selector : NULL);
    if (!ok) {
        kube_free(s);
        return ns_errorf(err, -ENOMEM, "out of memory creating an informer");
    }
    ns_kube_watch_opts wo = {.label_selector = s->label_selector,
                             .field_selector = s->field_selector,
                             .timeout_seconds = opts ? opts->watch_timeout_s : 0};
    if (opts)
        wo.backoff = opts->backoff;
    rc = ns_kube_watch_new(k, ref, &wo, &s->w, err);
    if (rc) {
        kube_free(s);
        return rc;
    }
    op_informer_source src = {
        .list = kube_list, .watch = kube_watch, .stop = kube_stop, .free = kube_free, .ud = s};
    op_informer_opts o = opts ? *opts : (op_informer_opts){0};
    if (!o.name)
        o.name = ref->resource;
    return op_informer_new_source(&src, &o, out, err);
}

int op_informer_add_handler(op_informer *inf, op_informer_handler_fn fn, void *ud)
{
    pthread_mutex_lock(&inf->state_mu);
    int rc = 0;
    if (inf->started) {
        rc = -EBUSY;
    } else {
        handler *h = realloc(inf->handlers, (inf->nhandlers + 1) * sizeof(*h));
        if (!h) {
            rc = -ENOMEM;
        } else {
            inf->handlers = h;
            h[inf->nhandlers++] = (handler){.fn = fn, .ud = ud};
        }
    }
    pthread_mutex_unlock(&inf->state_mu);
    return rc;
}

/* With write_mu held. */
static void dispatch(op_informer *inf, const op_informer_event *ev)
{
    for (size_t i = 0; i < inf->nhandlers; i++)
        inf->handlers[i].fn(inf->handlers[i].ud, ev);
}

static bool stopping(op_informer *inf)
{
    pthread_mutex_lock(&inf->state_mu);
    bool s = inf->stopping;
    pthread_mutex_unlock(&inf->state_mu);
    return s;
}

/* Sleeps `ms` unless stopped first. Returns 0, or -ECANCELED when stopped. */
static int sleep_unless_stopped(op_informer *inf, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&inf->state_mu);
    while (!inf->stopping)
        if (pthread_cond_timedwait(&inf->state_cv, &inf->state_mu, &until) == ETIMEDOUT)
            break;
    int rc = inf->stopping ? -ECANCELED : 0;
    pthread_mutex_unlock(&inf->state_mu);
    return rc;
}

/* Replaces the cache by the list's items and tells handlers the difference. */
static int apply_list(op_informer *inf, cJSON *list)
{
    op_cache *fresh = NULL;
    int rc = op_cache_from_list(list, inf->strip_managed, &fresh);
    if (rc)
        return rc;
    pthread_mutex_lock(&inf->write_mu);
    op_informer_event *changes = NULL;
    size_t n = 0;
    rc = op_cache_diff(inf->cache, fresh, &changes, &n);
    if (rc) {
        pthread_mutex_unlock(&inf->write_mu);
        op_cache_free(fresh);
        return rc;
    }
    /* Readers see the old list or the new one, never a mix. */
    pthread_rwlock_wrlock(&inf->lock);
    op_cache *old = inf->cache;
    inf->cache = fresh;
    pthread_rwlock_unlock(&inf->lock);
    for (size_t i = 0; i < n; i++)
        dispatch(inf, &changes[i]);
    pthread_mutex_unlock(&inf->write_mu);
    free(changes);
    op_cache_free(old);
    return 0;
}

static int on_watch_event(void *ud, ns_kube_event *ev)
{
    op_informer *inf = ud;
    if (ev->type != NS_KUBE_EVENT_ADDED && ev->type != NS_KUBE_EVENT_MODIFIED &&
        ev->type != NS_KUBE_EVENT_DELETED)
        return 0; /* BOOKMARK only moves the version (the watch tracks it); ERROR is the
                   * watch's business (410 ends it with -ESTALE, others reconnect) */
    char key[OP_KEY_MAX];
    if (op_object_key(ev->object, key, sizeof(key)) != 0) {
        ns_log(NS_LOG_WARN, "watch event without a usable metadata.name ignored", "informer",
               inf->name, "type", ns_kube_event_type_name(ev->type), NULL);
        return 0;
    }
    atomic_fetch_add(&inf->events, 1);
    op_informer_event out = {.key = key};
    cJSON *old = NULL;
    int rc = 0;
    pthread_mutex_lock(&inf->write_mu);
    if (ev->type == NS_KUBE_EVENT_DELETED) {
        pthread_rwlock_wrlock(&inf->lock);
        old = op_cache_take(inf->cache, key);
        pthread_rwlock_unlock(&inf->lock);
        /* Deleted before we ever saw it (a relist raced the watch): the event's object is
         * still the best last state to hand out. */
        out = (op_informer_event){
            .type = OP_INFORMER_DELETE, .key = key, .old = old ? old : ev->object};
        dispatch(inf, &out);
    } else {
        cJSON *obj = ev->object;
        ev->object = NULL; /* the cache keeps it: no copy */
        if (inf->strip_managed)
            strip_managed(obj);
        pthread_rwlock_wrlock(&inf->lock);
        rc = op_cache_put(inf->cache, key, obj, &old);
        pthread_rwlock_unlock(&inf->lock);
        /* the same version again (a resumed watch replaying what a list already had) is
         * not a change */
        if (rc == 0 && !(old && !objects_differ(old, obj))) {
            out = (op_informer_event){.type = old ? OP_INFORMER_UPDATE : OP_INFORMER_ADD,
                                      .key = key,
                                      .old = old,
                                      .obj = obj};
            dispatch(inf, &out);
        }
    }
    pthread_mutex_unlock(&inf->write_mu);
    cJSON_Delete(old);
    return rc;
}

static long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *informer_main(void *arg)
{
    op_informer *inf = arg;
    unsigned attempt = 0;
    char nbuf[32], dbuf[32];
    while (!stopping(inf)) {
        ns_kube_status st = {.retry_after_s = -1};
        cJSON *list = NULL;
        const char *phase = "list";
        int rc = inf->src.list(inf->src.ud, &list, &st);
        char *rv = NULL;
        if (rc == 0) {
            const char *v = ns_json_path_str(list, "metadata", "resourceVersion", NULL);
            rv = strdup(v ? v : "");
            rc = rv ? apply_list(inf, list) : -ENOMEM;
        }
        cJSON_Delete(list);
        if (rc == 0) {
            atomic_fetch_add(&inf->lists, 1);
            pthread_mutex_lock(&inf->state_mu);
            bool first = !inf->synced;
            inf->synced = true;
            pthread_cond_broadcast(&inf->state_cv);
            pthread_mutex_unlock(&inf->state_mu);
            pthread_rwlock_rdlock(&inf->lock);
            snprintf(nbuf, sizeof(nbuf), "%zu", op_cache_len(inf->cache));
            pthread_rwlock_unlock(&inf->lock);
            ns_log(first ? NS_LOG_INFO : NS_LOG_DEBUG, first ? "informer synced" : "relisted",
                   "informer", inf->name, "objects", nbuf, "resource_version", rv, NULL);

            long started = mono_ms();
            phase = "watch";
            st = (ns_kube_status){.retry_after_s = -1};
            rc = inf->src.watch(inf->src.ud, rv, on_watch_event, inf, &st);
            free(rv);
            if (rc == 0)
                break; /* stopped */
            if (rc == -ESTALE) {
                /* The API server no longer has the history we would resume from: relist
                 * at once and let op_cache_diff say what we missed. */
                ns_log(NS_LOG_INFO, "watch expired (410 Gone), relisting", "informer", inf->name,
                       "message", st.message, NULL);
                attempt = 0;
                continue;
            }
            if (mono_ms() - started >= HEALTHY_WATCH_MS)
                attempt = 0;
        } else {
            free(rv);
        }
        if (stopping(inf))
            break;
        long delay = ns_kube_backoff_delay_ms(&inf->backoff, attempt++, st.retry_after_s,
                                              ns_kube_jitter_random());
        snprintf(dbuf, sizeof(dbuf), "%ld", delay);
        snprintf(nbuf, sizeof(nbuf), "%d", rc);
        ns_log(NS_LOG_WARN, "informer list or watch failed, retrying", "informer", inf->name,
               "phase", phase, "errno", nbuf, "error", st.message, "delay_ms", dbuf, NULL);
        if (sleep_unless_stopped(inf, delay) != 0)
            break;
    }
    return NULL;
}

static int resync_cb(void *ud, const char *key, const cJSON *obj)
{
    op_informer *inf = ud;
    op_informer_event ev = {.type = OP_INFORMER_RESYNC, .key = key, .old = obj, .obj = obj};
    dispatch(inf, &ev);
    return 0;
}

static void *resync_main(void *arg)
{
    op_informer *inf = arg;
    while (sleep_unless_stopped(inf, inf->resync_ms) == 0) {
        if (!op_informer_has_synced(inf))
            continue;
        /* write_mu keeps the cache still, so no rwlock is needed to read it here */
        pthread_mutex_lock(&inf->write_mu);
        op_cache_foreach(inf->cache, resync_cb, inf);
        pthread_mutex_unlock(&inf->write_mu);
    }
    return NULL;
}

int op_informer_start(op_informer *inf)
{
    pthread_mutex_lock(&inf->state_mu);
    int rc = 0;
    if (inf->started || inf->stopping) {
        rc = -EBUSY;
        goto out;
    }
    rc = -pthread_create(&inf->thread, NULL, informer_main, inf);
    if (rc)
        goto out;
    inf->started = true;
    if (inf->resync_ms > 0) {
        if (pthread_create(&inf->resync_thread, NULL, resync_main, inf) == 0)
            inf->have_resync_thread = true;
        else
            ns_log(NS_LOG_WARN, "cannot start the resync thread; resync disabled", "informer",
                   inf->name, NULL);
    }
out:
    pthread_mutex_unlock(&inf->state_mu);
    return rc;
}

bool op_informer_has_synced(op_informer *inf)
{
    pthread_mutex_lock(&inf->state_mu);
    bool s = inf->synced;
    pthread_mutex_unlock(&inf->state_mu);
    return s;
}

int op_informer_wait_synced(op_informer *inf, long timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    if (timeout_ms > 0) {
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&inf->state_mu);
    int rc = 0;
    while (!inf->synced && !inf->stopping) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&inf->state_cv, &inf->state_mu);
        } else if (pthread_cond_timedwait(&inf->state_cv, &inf->state_mu, &until) == ETIMEDOUT) {
            break;
        }
    }
    if (!inf->synced)
        rc = inf->stopping ? -ECANCELED : -ETIMEDOUT;
    pthread_mutex_unlock(&inf->state_mu);
    return rc;
}

void op_informer_stop(op_informer *inf)
{
    pthread_mutex_lock(&inf->state_mu);
    inf->stopping = true;
    bool join = inf->started && !inf->joined;
    inf->joined = true;
    pthread_cond_broadcast(&inf->state_cv);
    pthread_mutex_unlock(&inf->state_mu);
    inf->src.stop(inf->src.ud);
    if (join) {
        pthread_join(inf->thread, NULL);
        if (inf->have_resync_thread)
            pthread_join(inf->resync_thread, NULL);
    }
}

void op_informer_free(op_informer *inf)
{
    if (!inf)
        return;
    op_informer_stop(inf);
    if (inf->src.free)
        inf->src.free(inf->src.ud);
    op_cache_free(inf->cache);
    free(inf->handlers);
    free(inf->name);
    pthread_rwlock_destroy(&inf->lock);
    pthread_mutex_destroy(&inf->write_mu);
    pthread_mutex_destroy(&inf->state_mu);
    pthread_cond_destroy(&inf->state_cv);
    free(inf);
}

int op_informer_get(op_informer *inf, const char *key, cJSON **out)
{
    *out = NULL;
    pthread_rwlock_rdlock(&inf->lock);
    const cJSON *obj = op_cache_get(inf->cache, key);
    int rc = -ENOENT;
    if (obj) {
        *out = cJSON_Duplicate(obj, true);
        rc = *out ? 0 : -ENOMEM;
    }
    pthread_rwlock_unlock(&inf->lock);
    return rc;
}

typedef struct list_ctx {
    const char *ns;
    size_t nslen;
    const op_selector *sel;
    cJSON *arr;
} list_ctx;

static int list_cb(void *ud, const char *key, const cJSON *obj)
{
    list_ctx *l = ud;
    if (l->ns && !(strncmp(key, l->ns, l->nslen) == 0 && key[l->nslen] == '/'))
        return 0;
    if (!op_selector_matches_object(l->sel, obj))
        return 0;
    cJSON *copy = cJSON_Duplicate(obj, true);
    if (!copy || !cJSON_AddItemToArray(l->arr, copy)) {
        cJSON_Delete(copy);
        return -ENOMEM;
    }
    return 0;
}

int op_informer_list(op_informer *inf, const char *ns, const op_selector *sel, cJSON **out)
{
    *out = NULL;
    list_ctx l = {.ns = ns, .nslen = ns ? strlen(ns) : 0, .sel = sel, .arr = cJSON_CreateArray()};
    if (!l.arr)
        return -ENOMEM;
    pthread_rwlock_rdlock(&inf->lock);
    int rc = op_cache_foreach(inf->cache, list_cb, &l);
    pthread_rwlock_unlock(&inf->lock);
    if (rc) {
        cJSON_Delete(l.arr);
        return rc;
    }
    *out = l.arr;
    return 0;
}

int op_informer_foreach(op_informer *inf, op_cache_visit_fn fn, void *ud)
{
    pthread_rwlock_rdlock(&inf->lock);
    int rc = op_cache_foreach(inf->cache, fn, ud);
    pthread_rwlock_unlock(&inf->lock);
    return rc;
}

int op_informer_view(op_informer *inf, const char *key, op_cache_visit_fn fn, void *ud)
{
    pthread_rwlock_rdlock(&inf->lock);
    const cJSON *obj = op_cache_get(inf->cache, key);
    int rc = obj ? fn(ud, key, obj) : -ENOENT;
    pthread_rwlock_unlock(&inf->lock);
    return rc;
}

size_t op_informer_len(op_informer *inf)
{
    pthread_rwlock_rdlock(&inf->lock);
    size_t n = op_cache_len(inf->cache);
    pthread_rwlock_unlock(&inf->lock);
    return n;
}

void op_informer_get_stats(op_informer *inf, op_informer_stats *out)
{
    out->lists = atomic_load(&inf->lists);
    out->events = atomic_load(&inf->events);
}

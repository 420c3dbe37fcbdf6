/* selector.c - label selector parsing and matching. */
#include "selector.h"

#include "json.h"
#include "strconv.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

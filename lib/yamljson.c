/* yamljson.c - YAML <-> cJSON over libyaml's event parser and emitter.
 *
 * Design: parsing consumes libyaml events and builds cJSON as they come, with an explicit
 * stack of open collections instead of recursion, so the depth limit is checked before
 * libyaml is asked for anything deeper. Scalars are typed by resolve_plain(), a port of
 * go-yaml v2's resolver (the one behind sigs.k8s.io/yaml); the emitter asks the same
 * function whether a string would read back as a string, which is what makes
 * parse(emit(x)) == x hold. Mapping entries are collected first and turned into an object
 * at the mapping's end, after sorting a copy of them by key: that finds duplicate keys
 * and applies merge keys ("<<") in O(n log n) however large the mapping is.
 */
#include "yamljson.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define TAG_PREFIX     "tag:yaml.org,2002:"
#define TAG_PREFIX_LEN (sizeof(TAG_PREFIX) - 1)

/* ---- small helpers ------------------------------------------------------------------ */

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)))
            return false;
        if (k == 3 && (cp < 0x10000 || cp > 0x10FFFF))
            return false;
        i += k + 1;
    }
    return true;
}

/* ---- scalar typing (go-yaml v2's resolve.go) ---------------------------------------- */

typedef enum rkind {
    RK_STR,
    RK_NULL,
    RK_BOOL,
    RK_INT,
    RK_UINT,
    RK_FLOAT,
    RK_MERGE,  /* "<<" as a key: go-yaml tells it apart before typing (isMerge) */
    RK_BINARY, /* !!binary: base64 text to decode */
} rkind;

typedef struct resolved {
    rkind kind;
    bool b;
    int64_t i;
    uint64_t u;
    double f;
} resolved;

/* Words go-yaml v2 looks up before trying numbers. Floats: 1 is +inf, -1 -inf, 0 NaN. */
static const struct {
    const char *text;
    rkind kind;
    int value;
} special_words[] = {
    {"y", RK_BOOL, 1},       {"Y", RK_BOOL, 1},       {"yes", RK_BOOL, 1},
    {"Yes", RK_BOOL, 1},     {"YES", RK_BOOL, 1},     {"true", RK_BOOL, 1},
    {"True", RK_BOOL, 1},    {"TRUE", RK_BOOL, 1},    {"on", RK_BOOL, 1},
    {"On", RK_BOOL, 1},      {"ON", RK_BOOL, 1},      {"n", RK_BOOL, 0},
    {"N", RK_BOOL, 0},       {"no", RK_BOOL, 0},      {"No", RK_BOOL, 0},
    {"NO", RK_BOOL, 0},      {"false", RK_BOOL, 0},   {"False", RK_BOOL, 0},
    {"FALSE", RK_BOOL, 0},   {"off", RK_BOOL, 0},     {"Off", RK_BOOL, 0},
    {"OFF", RK_BOOL, 0},     {"", RK_NULL, 0},        {"~", RK_NULL, 0},
    {"null", RK_NULL, 0},    {"Null", RK_NULL, 0},    {"NULL", RK_NULL, 0},
    {".nan", RK_FLOAT, 0},   {".NaN", RK_FLOAT, 0},   {".NAN", RK_FLOAT, 0},
    {".inf", RK_FLOAT, 1},   {".Inf", RK_FLOAT, 1},   {".INF", RK_FLOAT, 1},
    {"+.inf", RK_FLOAT, 1},  {"+.Inf", RK_FLOAT, 1},  {"+.INF", RK_FLOAT, 1},
    {"-.inf", RK_FLOAT, -1}, {"-.Inf", RK_FLOAT, -1}, {"-.INF", RK_FLOAT, -1},
};

static int digit_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'Z')
        return c - 'A' + 10;
    return 99;
}

/* Go's strconv.ParseUint(s, 0, 64) for a string without '_': a 0x/0o/0b prefix needs at
 * least one more character, and otherwise a leading 0 means octal. */
static bool go_parse_uint(const char *s, uint64_t *out)
{
    size_t n = strlen(s);
    unsigned base = 10;
    if (n == 0)
        return false;
    if (s[0] == '0') {
        char p = (char)(s[1] | 0x20);
        if (n >= 3 && p == 'x') {
            base = 16;
            s += 2;
        } else if (n >= 3 && p == 'o') {
            base = 8;
            s += 2;
        } else if (n >= 3 && p == 'b') {
            base = 2;
            s += 2;
        } else {
            base = 8;
            s += 1;
        }
    }
    uint64_t v = 0;
    for (; *s; s++) {
        unsigned d = (unsigned)digit_value(*s);
        if (d >= base || v > (UINT64_MAX - d) / base)
            return false;
        v = v * base + d;
    }
    *out = v;
    return true;
}

/* Go's strconv.ParseInt(s, 0, 64). */
static bool go_parse_int(const char *s, int64_t *out)
{
    bool neg = false;
    if (*s == '+' || *s == '-') {
        neg = *s == '-';
        s++;
    }
    uint64_t u;
    if (!go_parse_uint(s, &u))
        return false;
    if (u > (uint64_t)INT64_MAX + (neg ? 1u : 0u))
        return false;
    if (!neg)
        *out = (int64_t)u;
    else if (u == (uint64_t)INT64_MAX + 1)
        *out = INT64_MIN;
    else
        *out = -(int64_t)u;
    return true;
}

/* go-yaml's yamlStyleFloat: ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$ */
static bool yaml_style_float(const char *s)
{
    if (*s == '+' || *s == '-')
        s++;
    if (*s == '.') {
        s++;
        if (!is_digit(*s))
            return false;
        while (is_digit(*s))
            s++;
    } else {
        if (!is_digit(*s))
            return false;
        while (is_digit(*s))
            s++;
        if (*s == '.') {
            s++;
            while (is_digit(*s))
                s++;
        }
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!is_digit(*s))
            return false;
        while (is_digit(*s))
            s++;
    }
    return *s == '\0';
}

/* Types the plain scalar s[0..len) as go-yaml v2 does. Returns 0 or -ENOMEM. */
static int resolve_plain(const char *s, size_t len, resolved *r)
{
    *r = (resolved){.kind = RK_STR};
    unsigned char c = len ? (unsigned char)s[0] : 'N';
    char hint;
    if (c == '+' || c == '-')
        hint = 'S';
    else if (is_digit(c))
        hint = 'D';
    else if (c == '.')
        hint = '.';
    else if (c != '\0' && strchr("yYnNtTfFoO~", c))
        hint = 'M';
    else
        return 0;

    for (size_t i = 0; i < sizeof(special_words) / sizeof(special_words[0]); i++) {
        const char *w = special_words[i].text;
        if (strlen(w) == len && memcmp(w, s, len) == 0) {
            r->kind = special_words[i].kind;
            r->b = special_words[i].value != 0;
            if (r->kind == RK_FLOAT)
                r->f = special_words[i].value ? special_words[i].value * (double)INFINITY : NAN;
            return 0;
        }
    }
    if (hint == 'M' || memchr(s, '\0', len))
        return 0;

    /* Numbers: go-yaml drops '_' first (except for the ".5" form, which it hands to
     * strconv.ParseFloat as is, and which then rejects any '_'). */
    char small[64];
    char *t = len < sizeof(small) ? small : malloc(len + 1);
    if (!t)
        return -ENOMEM;
    size_t n = 0;
    bool underscore = false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '_')
            underscore = true;
        else
            t[n++] = s[i];
    }
    t[n] = '\0';

    if (hint == '.') {
        if (!underscore && yaml_style_float(t)) {
            double d = strtod(t, NULL);
            if (!isinf(d)) {
                r->kind = RK_FLOAT;
                r->f = d;
            }
        }
    } else if (go_parse_int(t, &r->i)) {
        r->kind = RK_INT;
    } else if (go_parse_uint(t, &r->u)) {
        r->kind = RK_UINT;
    } else if (yaml_style_float(t)) {
        double d = strtod(t, NULL);
        if (!isinf(d)) { /* go-yaml keeps out-of-range numbers as strings */
            r->kind = RK_FLOAT;
            r->f = d;
        }
    }
    if (t != small)
        free(t);
    return 0;
}

/* go-yaml's encoder quotes these for YAML 1.1 readers: base 60 numbers ("1:20"). */
static bool is_base60(const char *s)
{
    if (*s == '+' || *s == '-')
        s++;
    if (!is_digit(*s))
        return false;
    while (is_digit(*s) || *s == '_')
        s++;
    bool group = false;
    while (*s == ':') {
        s++;
        if (!is_digit(*s))
            return false;
        s++;
        if (is_digit(*s)) {
            if (s[-1] > '5')
                return false;
            s++;
        }
        group = true;
    }
    if (!group)
        return false;
    if (*s == '.') {
        s++;
        while (is_digit(*s) || *s == '_')
            s++;
    }
    return *s == '\0';
}

/* Dates start with "YYYY-"; YAML 1.1 readers turn them into timestamps, kubectl quotes. */
static bool looks_like_timestamp(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (!is_digit(s[i]))
            return false;
    return s[4] == '-';
}

/* Go's strconv.FormatFloat(v, 'g', -1, 32), the form sigs.k8s.io/yaml gives float keys. */
static void format_float32_key(double v, char *buf, size_t size)
{
    float f = (float)v;
    if (isnan(f)) {
        snprintf(buf, size, ".nan");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, size, "%s", f > 0 ? ".inf" : "-.inf");
        return;
    }
    char e[48];
    int digits = 1;
    for (; digits < 9; digits++) {
        snprintf(e, sizeof(e), "%.*e", digits - 1, (double)f);
        if (strtof(e, NULL) == f)
            break;
    }
    snprintf(e, sizeof(e), "%.*e", digits - 1, (double)f);
    const char *x = strchr(e, 'e');
    long exp = x ? strtol(x + 1, NULL, 10) : 0;
    if (exp < -4 || exp >= 6) {
        snprintf(buf, size, "%s", e);
    } else {
        long decimals = digits - 1 - exp;
        snprintf(buf, size, "%.*f", (int)(decimals > 0 ? decimals : 0), (double)f);
    }
}

/* Decodes base64 (RFC 4648 with padding; CR and LF ignored, as Go's StdEncoding). */
static int base64_decode(const char *s, size_t len, char **out, size_t *outlen)
{
    char *o = malloc(len / 4 * 3 + 4);
    if (!o)
        return -ENOMEM;
    size_t n = 0, chars = 0, pad = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int v;
        if (c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            pad++;
            chars++;
            continue;
        }
        if (pad)
            goto bad;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (is_digit(c))
            v = c - '0' + 52;
        else if (c == '+')
            v = 62;
        else if (c == '/')
            v = 63;
        else
            goto bad;
        acc = ((acc << 6) | (uint32_t)v) & 0xFFFFFF;
        bits += 6;
        chars++;
        if (bits >= 8) {
            bits -= 8;
            o[n++] = (char)((acc >> bits) & 0xFF);
        }
    }
    if (chars % 4 != 0 || pad > 2 || (pad && (chars - pad) % 4 != 4 - pad))
        goto bad;
    o[n] = '\0';
    *out = o;
    *outlen = n;
    return 0;
bad:
    free(o);
    return -EINVAL;
}

/* ---- parser state -------------------------------------------------------------------- */

/* One key/value of a mapping being read. */
typedef struct entry {
    char *key;
    cJSON *val;
    unsigned rank;    /* 0: written in this mapping; n > 0: from its n-th merge source */
    size_t order;     /* position, to keep the written order */
    yaml_mark_t mark; /* of the key, for messages */
    bool keep;
} entry;

/* An open collection. */
typedef struct frame {
    bool is_map;
    cJSON *seq; /* sequences: the array being filled */
    entry *ents;
    size_t n, cap;
    char *key; /* mappings: the key waiting for its value */
    bool has_key, key_is_merge;
    yaml_mark_t key_mark;
    unsigned merges;
    char *anchor;
    size_t nodes; /* values in this subtree so far, itself included */
    int height;   /* collection levels in this subtree, itself included */
} frame;

/* A scalar as the event gave it: aliases of scalars re-read it, as a key if need be. */
typedef struct scalar {
    const char *text;
    size_t len;
    const char *tag; /* NULL when untagged */
    bool plain;      /* untagged and plain: typed by resolve_plain() */
} scalar;

typedef struct anchor {
    char *name;
    bool is_scalar;
    char *text, *tag; /* scalars */
    size_t len;
    bool plain;
    cJSON *node; /* collections: a private copy */
    size_t nodes;
    int height;
} anchor;

typedef struct parser {
    yaml_parser_t yp;
    ns_err *err;
    cJSON *docs;
    cJSON *root;
    bool root_empty; /* the document has no content, only an implied empty scalar */
    int depth;
    frame stack[NS_YAML_MAX_DEPTH];
    anchor **anchors; /* open addressing, power-of-two capacity */
    size_t anchors_cap, anchors_n;
    size_t nodes, alias_nodes;
} parser;

static size_t line_of(const yaml_mark_t *m)
{
    return m->line + 1;
}

static size_t col_of(const yaml_mark_t *m)
{
    return m->column + 1;
}

static int oom(parser *p)
{
    return ns_errorf(p->err, -ENOMEM, "out of memory while reading YAML");
}

static void anchor_free(anchor *a)
{
    if (!a)
        return;
    free(a->name);
    free(a->text);
    free(a->tag);
    cJSON_Delete(a->node);
    free(a);
}

static void anchors_clear(parser *p)
{
    for (size_t i = 0; i < p->anchors_cap; i++)
        anchor_free(p->anchors[i]);
    free(p->anchors);
    p->anchors = NULL;
    p->anchors_cap = p->anchors_n = 0;
}

static size_t hash_str(const char *s)
{
    uint64_t h = 14695981039346656037u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return (size_t)h;
}

/* The slot holding `name`, or the empty slot where it would go. Needs a table. */
static anchor **anchor_slot(anchor **table, size_t cap, const char *name)
{
    size_t mask = cap - 1, i = hash_str(name) & mask;
    while (table[i] && strcmp(table[i]->name, name) != 0)
        i = (i + 1) & mask;
    return &table[i];
}

static anchor *anchor_find(parser *p, const char *name)
{
    return p->anchors_cap ? *anchor_slot(p->anchors, p->anchors_cap, name) : NULL;
}

/* Adds or replaces (YAML lets a later anchor reuse a name) `a`, taking it. */
static int anchor_put(parser *p, anchor *a)
{
    if ((p->anchors_n + 1) * 2 > p->anchors_cap) {
        size_t cap = p->anchors_cap ? p->anchors_cap * 2 : 16;
        anchor **t = calloc(cap, sizeof(*t));
        if (!t) {
            anchor_free(a);
            return oom(p);
        }
        for (size_t i = 0; i < p->anchors_cap; i++)
            if (p->anchors[i])
                *anchor_slot(t, cap, p->anchors[i]->name) = p->anchors[i];
        free(p->anchors);
        p->anchors = t;
        p->anchors_cap = cap;
    }
    anchor **slot = anchor_slot(p->anchors, p->anchors_cap, a->name);
    if (*slot)
        anchor_free(*slot);
    else
        p->anchors_n++;
    *slot = a;
    return 0;
}

static void frame_release(frame *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->ents[i].key);
        cJSON_Delete(f->ents[i].val);
    }
    free(f->ents);
    free(f->key);
    free(f->anchor);
    cJSON_Delete(f->seq);
    *f = (frame){0};
}

static frame *top(parser *p)
{
    return p->depth ? &p->stack[p->depth - 1] : NULL;
}

/* True when the next value read is a key of the innermost mapping. */
static bool at_key(parser *p)
{
    frame *f = top(p);
    return f && f->is_map && !f->has_key;
}

static int count_nodes(parser *p, size_t n, const yaml_mark_t *m)
{
    if (n > NS_YAML_MAX_NODES - p->nodes)
        return ns_errorf(p->err, -EINVAL,
                         "line %zu, column %zu: the YAML has more than %d values; refusing it",
                         line_of(m), col_of(m), NS_YAML_MAX_NODES);
    p->nodes += n;
    return 0;
}

static int count_alias(parser *p, size_t n, const char *name, const yaml_mark_t *m)
{
    if (n > NS_YAML_MAX_ALIAS_NODES - p->alias_nodes)
        return ns_errorf(p->err, -EINVAL,
                         "line %zu, column %zu: alias *%.64s makes aliases expand to more than %d "
                         "values (an alias bomb?); refusing the YAML",
                         line_of(m), col_of(m), name, NS_YAML_MAX_ALIAS_NODES);
    p->alias_nodes += n;
    return count_nodes(p, n, m);
}

static int too_deep(parser *p, const yaml_mark_t *m)
{
    return ns_errorf(p->err, -EINVAL,
                     "line %zu, column %zu: collections nest deeper than %d levels; refusing the "
                     "YAML",
                     line_of(m), col_of(m), NS_YAML_MAX_DEPTH);
}

/* ---- scalars ------------------------------------------------------------------------- */

/* Types `sc` per its tag, or resolve_plain() when it is plain and untagged. */
static int scalar_resolve(parser *p, const scalar *sc, const yaml_mark_t *m, resolved *r)
{
    *r = (resolved){.kind = RK_STR};
    bool is_merge_text = sc->len == 2 && memcmp(sc->text, "<<", 2) == 0;
    if (!sc->tag) {
        if (sc->plain && is_merge_text) {
            r->kind = RK_MERGE;
            return 0;
        }
        return sc->plain && resolve_plain(sc->text, sc->len, r) ? oom(p) : 0;
    }
    if (strncmp(sc->tag, TAG_PREFIX, TAG_PREFIX_LEN) != 0)
        return 0; /* local tags ("!foo", "!") leave a string */
    const char *t = sc->tag + TAG_PREFIX_LEN;
    if (strcmp(t, "binary") == 0) {
        r->kind = RK_BINARY;
        return 0;
    }
    if (strcmp(t, "merge") == 0) {
        if (is_merge_text)
            r->kind = RK_MERGE;
        return 0;
    }
    rkind want;
    if (strcmp(t, "int") == 0)
        want = RK_INT;
    else if (strcmp(t, "float") == 0)
        want = RK_FLOAT;
    else if (strcmp(t, "bool") == 0)
        want = RK_BOOL;
    else if (strcmp(t, "null") == 0)
        want = RK_NULL;
    else
        return 0; /* !!str, !!timestamp, !!map on a scalar, unknown: a string */
    if (resolve_plain(sc->text, sc->len, r))
        return oom(p);
    if (r->kind == RK_UINT && want == RK_INT)
        return 0;
    if (want == RK_FLOAT && (r->kind == RK_INT || r->kind == RK_UINT)) {
        r->f = r->kind == RK_INT ? (double)r->i : (double)r->u;
        r->kind = RK_FLOAT;
    }
    if (r->kind != want)
        return ns_errorf(p->err, -EINVAL, "line %zu, column %zu: the value does not read as !!%s",
                         line_of(m), col_of(m), t);
    return 0;
}

/* The string value of a string or !!binary scalar, malloc'd. */
static int scalar_text(parser *p, const scalar *sc, rkind kind, const yaml_mark_t *m, char **out)
{
    const char *s = sc->text;
    size_t n = sc->len;
    char *dec = NULL;
    if (kind == RK_BINARY) {
        int rc = base64_decode(sc->text, sc->len, &dec, &n);
        if (rc == -ENOMEM)
            return oom(p);
        if (rc)
            return ns_errorf(p->err, -EINVAL,
                             "line %zu, column %zu: !!binary value is not valid base64", line_of(m),
                             col_of(m));
        if (!utf8_valid((const unsigned char *)dec, n)) {
            free(dec);
            return ns_errorf(p->err, -EINVAL,
                             "line %zu, column %zu: !!binary value is not UTF-8 text, which "
                             "JSON needs",
                             line_of(m), col_of(m));
        }
        s = dec;
    }
    if (memchr(s, '\0', n)) {
        free(dec);
        return ns_errorf(p->err, -EINVAL,
                         "line %zu, column %zu: a string contains a NUL character, which this "
                         "reader cannot represent",
                         line_of(m), col_of(m));
    }
    if (dec) {
        *out = dec;
        return 0;
    }
    *out = dupn(s, n);
    return *out ? 0 : oom(p);
}

static int scalar_value(parser *p, const scalar *sc, const yaml_mark_t *m, cJSON **out)
{
    resolved r;
    int rc = scalar_resolve(p, sc, m, &r);
    if (rc)
        return rc;
    cJSON *v = NULL;
    switch (r.kind) {
    case RK_NULL:
        v = cJSON_CreateNull();
        break;
    case RK_BOOL:
        v = cJSON_CreateBool(r.b);
        break;
    case RK_INT:
        v = cJSON_CreateNumber((double)r.i);
        break;
    case RK_UINT:
        v = cJSON_CreateNumber((double)r.u);
        break;
    case RK_FLOAT:
        if (!isfinite(r.f))
            return ns_errorf(p->err, -EINVAL,
                             "line %zu, column %zu: infinity and NaN have no JSON form", line_of(m),
                             col_of(m));
        v = cJSON_CreateNumber(r.f);
        break;
    case RK_STR:
    case RK_MERGE: /* "<<" in value position is just text */
    case RK_BINARY: {
        char *s;
        rc = scalar_text(p, sc, r.kind, m, &s);
        if (rc)
            return rc;
        v = cJSON_CreateString(s);
        free(s);
        break;
    }
    }
    if (!v)
        return oom(p);
    *out = v;
    return 0;
}

/* The key string of a scalar in key position, as sigs.k8s.io/yaml converts keys; or
 * *merge = true for a merge key. */
static int scalar_key(parser *p, const scalar *sc, const yaml_mark_t *m, char **out, bool *merge)
{
    resolved r;
    char num[64];
    *merge = false;
    *out = NULL;
    int rc = scalar_resolve(p, sc, m, &r);
    if (rc)
        return rc;
    switch (r.kind) {
    case RK_MERGE:
        *merge = true;
        return 0;
    case RK_NULL:
        return ns_errorf(p->err, -EINVAL,
                         "line %zu, column %zu: a mapping key is null; keys must be strings",
                         line_of(m), col_of(m));
    case RK_BOOL:
        snprintf(num, sizeof(num), "%s", r.b ? "true" : "false");
        break;
    case RK_INT:
        snprintf(num, sizeof(num), "%" PRId64, r.i);
        break;
    case RK_UINT:
        snprintf(num, sizeof(num), "%" PRIu64, r.u);
        break;
    case RK_FLOAT:
        format_float32_key(r.f, num, sizeof(num));
        break;
    case RK_STR:
    case RK_BINARY:
        return scalar_text(p, sc, r.kind, m, out);
    }
    *out = dupn(num, strlen(num));
    return *out ? 0 : oom(p);
}

/* ---- building collections ---------------------------------------------------------- */

static int add_entry(parser *p, frame *f, char *key, cJSON *val, unsigned rank,
                     const yaml_mark_t *m)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        entry *e = realloc(f->ents, cap * sizeof(*e));
        if (!e) {
            free(key);
            cJSON_Delete(val);
            return oom(p);
        }
        f->ents = e;
        f->cap = cap;
    }
    f->ents[f->n] = (entry){.key = key, .val = val, .rank = rank, .order = f->n, .mark = *m};
    f->n++;
    return 0;
}

/* Moves the members of the object `src` into `f` as merge source number `rank`. */
static int merge_object(parser *p, frame *f, cJSON *src, unsigned rank, const yaml_mark_t *m)
{
    while (src->child) {
        cJSON *c = cJSON_DetachItemViaPointer(src, src->child);
        char *k = dupn(c->string, strlen(c->string));
        if (!k) {
            cJSON_Delete(c);
            return oom(p);
        }
        int rc = add_entry(p, f, k, c, rank, m);
        if (rc)
            return rc;
    }
    return 0;
}

/* Handles the value `v` (taken) of a "<<" key. */
static int merge_value(parser *p, frame *f, cJSON *v, const yaml_mark_t *m)
{
    int rc = 0;
    if (cJSON_IsArray(v)) {
        for (cJSON *c = v->child; c; c = c->next)
            if (!cJSON_IsObject(c))
                goto bad;
        for (cJSON *c = v->child; c && !rc; c = c->next)
            rc = merge_object(p, f, c, ++f->merges, m);
    } else if (cJSON_IsObject(v)) {
        rc = merge_object(p, f, v, ++f->merges, m);
    } else {
        goto bad;
    }
    cJSON_Delete(v);
    return rc;
bad:
    cJSON_Delete(v);
    return ns_errorf(p->err, -EINVAL,
                     "line %zu, column %zu: the value of a merge key (<<) must be a mapping or a "
                     "sequence of mappings",
                     line_of(m), col_of(m));
}

/* Hands a finished value (taken) to the innermost open collection, or makes it the root. */
static int deliver(parser *p, cJSON *v, size_t nodes, int height)
{
    frame *f = top(p);
    if (!f) {
        cJSON_Delete(p->root);
        p->root = v;
        return 0;
    }
    f->nodes += nodes;
    if (height + 1 > f->height)
        f->height = height + 1;
    if (!f->is_map) {
        cJSON_AddItemToArray(f->seq, v);
        return 0;
    }
    f->has_key = false;
    if (f->key_is_merge) {
        f->key_is_merge = false;
        return merge_value(p, f, v, &f->key_mark);
    }
    char *key = f->key;
    f->key = NULL;
    return add_entry(p, f, key, v, 0, &f->key_mark);
}

static int entry_cmp(const void *a, const void *b)
{
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Turns the entries of the mapping `f` into an object: per key the written entry wins,
 * else the one from the earliest merge source; a key written twice is an error. */
static int finish_map(parser *p, frame *f, cJSON **out)
{
    int rc = 0;
    entry **sorted = NULL;
    cJSON *obj = cJSON_CreateObject();
    if (!obj)
        return oom(p);
    if (f->n == 1)
        f->ents[0].keep = true;
    if (f->n > 1) {
        sorted = malloc(f->n * sizeof(*sorted));
        if (!sorted) {
            rc = oom(p);
            goto out;
        }
        for (size_t i = 0; i < f->n; i++)
            sorted[i] = &f->ents[i];
        qsort(sorted, f->n, sizeof(*sorted), entry_cmp);
        const entry *dup = NULL, *first = NULL;
        for (size_t i = 0; i < f->n;) {
            size_t j = i + 1;
            while (j < f->n && strcmp(sorted[j]->key, sorted[i]->key) == 0)
                j++;
            sorted[i]->keep = true;
            if (j - i > 1 && sorted[i + 1]->rank == 0 &&
                (!dup || sorted[i + 1]->order < dup->order)) {
                first = sorted[i];
                dup = sorted[i + 1];
            }
            i = j;
        }
        if (dup) {
            rc = ns_errorf(p->err, -EINVAL,
                           "line %zu, column %zu: duplicate key \"%.64s\" (first at line %zu, "
                           "column %zu)",
                           line_of(&dup->mark), col_of(&dup->mark), dup->key, line_of(&first->mark),
                           col_of(&first->mark));
            goto out;
        }
    }
    for (size_t i = 0; i < f->n; i++) {
        entry *e = &f->ents[i];
        if (!e->keep)
            continue;
        if (!cJSON_AddItemToObject(obj, e->key, e->val)) {
            rc = oom(p);
            goto out;
        }
        e->val = NULL;
    }
out:
    free(sorted);
    if (rc) {
        cJSON_Delete(obj);
        obj = NULL;
    }
    *out = obj;
    return rc;
}

/* ---- events -------------------------------------------------------------------------- */

/* A scalar, read from an event or from the anchor an alias names. */
static int take_scalar(parser *p, const scalar *sc, const yaml_mark_t *m)
{
    frame *f = top(p);
    if (at_key(p)) {
        char *key;
        bool merge;
        int rc = scalar_key(p, sc, m, &key, &merge);
        if (rc)
            return rc;
        f->key = key;
        f->key_is_merge = merge;
        f->has_key = true;
        f->key_mark = *m;
        return 0;
    }
    cJSON *v = NULL;
    int rc = scalar_value(p, sc, m, &v);
    return rc ? rc : deliver(p, v, 1, 0);
}

static int on_scalar(parser *p, const yaml_event_t *ev)
{
    const yaml_mark_t *m = &ev->start_mark;
    scalar sc = {
        .text = (const char *)ev->data.scalar.value,
        .len = ev->data.scalar.length,
        .tag = (const char *)ev->data.scalar.tag,
        .plain = ev->data.scalar.plain_implicit != 0,
    };
    int rc = count_nodes(p, 1, m);
    if (rc)
        return rc;
    if (!top(p))
        p->root_empty = sc.len == 0 && !sc.tag && sc.plain && !ev->data.scalar.anchor;
    rc = take_scalar(p, &sc, m);
    if (rc || !ev->data.scalar.anchor)
        return rc;
    anchor *a = calloc(1, sizeof(*a));
    if (!a)
        return oom(p);
    a->is_scalar = true;
    a->name =
        dupn((const char *)ev->data.scalar.anchor, strlen((const char *)ev->data.scalar.anchor));
    a->text = dupn(sc.text, sc.len);
    a->tag = sc.tag ? dupn(sc.tag, strlen(sc.tag)) : NULL;
    a->len = sc.len;
    a->plain = sc.plain;
    if (!a->name || !a->text || (sc.tag && !a->tag)) {
        anchor_free(a);
        return oom(p);
    }
    return anchor_put(p, a);
}

static int on_alias(parser *p, const yaml_event_t *ev)
{
    const yaml_mark_t *m = &ev->start_mark;
    const char *name = (const char *)ev->data.alias.anchor;
    anchor *a = anchor_find(p, name);
    if (!a)
        return ns_errorf(p->err, -EINVAL,
                         "line %zu, column %zu: alias *%.64s names no anchor before it (a node "
                         "cannot contain itself)",
                         line_of(m), col_of(m), name);
    if (!top(p))
        p->root_empty = false;
    if (a->is_scalar) {
        scalar sc = {.text = a->text, .len = a->len, .tag = a->tag, .plain = a->plain};
        int rc = count_alias(p, 1, name, m);
        return rc ? rc : take_scalar(p, &sc, m);
    }
    if (at_key(p))
        return ns_errorf(p->err, -EINVAL,
                         "line %zu, column %zu: a mapping key must be a scalar, not a collection",
                         line_of(m), col_of(m));
    if (p->depth + a->height > NS_YAML_MAX_DEPTH)
        return too_deep(p, m);
    int rc = count_alias(p, a->nodes, name, m);
    if (rc)
        return rc;
    cJSON *copy = cJSON_Duplicate(a->node, 1);
    if (!copy)
        return oom(p);
    return deliver(p, copy, a->nodes, a->height);
}

static int on_start(parser *p, bool is_map, const yaml_char_t *anchor_name, const yaml_mark_t *m)
{
    if (at_key(p))
        return ns_errorf(p->err, -EINVAL,
                         "line %zu, column %zu: a mapping key must be a scalar, not a collection",
                         line_of(m), col_of(m));
    if (p->depth >= NS_YAML_MAX_DEPTH)
        return too_deep(p, m);
    int rc = count_nodes(p, 1, m);
    if (rc)
        return rc;
    if (!top(p))
        p->root_empty = false;
    frame *f = &p->stack[p->depth++];
    *f = (frame){.is_map = is_map, .nodes = 1, .height = 1};
    if (!is_map && !(f->seq = cJSON_CreateArray()))
        return oom(p);
    if (anchor_name &&
        !(f->anchor = dupn((const char *)anchor_name, strlen((const char *)anchor_name))))
        return oom(p);
    return 0;
}

static int on_end(parser *p, const yaml_mark_t *m)
{
    frame *f = top(p);
    if (!f)
        return 0;
    cJSON *v = NULL;
    int rc = 0;
    if (f->is_map) {
        rc = finish_map(p, f, &v);
    } else {
        v = f->seq;
        f->seq = NULL;
    }
    char *name = f->anchor;
    f->anchor = NULL;
    size_t nodes = f->nodes;
    int height = f->height;
    frame_release(f);
    p->depth--;
    if (!rc && name) {
        /* The anchor keeps its own copy: the value itself may be merged apart later. */
        rc = count_nodes(p, nodes, m);
        anchor *a = rc ? NULL : calloc(1, sizeof(*a));
        if (!rc && !a)
            rc = oom(p);
        if (a) {
            *a = (anchor){.name = name, .nodes = nodes, .height = height};
            name = NULL;
            a->node = cJSON_Duplicate(v, 1);
            rc = a->node ? anchor_put(p, a) : (anchor_free(a), oom(p));
        }
    }
    free(name);
    if (rc) {
        cJSON_Delete(v);
        return rc;
    }
    return deliver(p, v, nodes, height);
}

static int on_document_end(parser *p)
{
    anchors_clear(p); /* anchors do not cross documents */
    cJSON *root = p->root;
    p->root = NULL;
    if (!root)
        return 0;
    if (p->root_empty) {
        cJSON_Delete(root);
        return 0;
    }
    cJSON_AddItemToArray(p->docs, root);
    return 0;
}

static int parser_error(parser *p)
{
    const yaml_parser_t *y = &p->yp;
    const char *problem = y->problem ? y->problem : "invalid YAML";
    switch (y->error) {
    case YAML_MEMORY_ERROR:
        return oom(p);
    case YAML_READER_ERROR:
        if (y->problem_value != -1)
            return ns_errorf(p->err, -EINVAL, "byte %zu: %s (#%X)", y->problem_offset + 1, problem,
                             (unsigned)y->problem_value);
        return ns_errorf(p->err, -EINVAL, "byte %zu: %s", y->problem_offset + 1, problem);
    default:
        if (y->context)
            return ns_errorf(p->err, -EINVAL,
                             "line %zu, column %zu: %s (%s at line %zu, column %zu)",
                             line_of(&y->problem_mark), col_of(&y->problem_mark), problem,
                             y->context, line_of(&y->context_mark), col_of(&y->context_mark));
        return ns_errorf(p->err, -EINVAL, "line %zu, column %zu: %s", line_of(&y->problem_mark),
                         col_of(&y->problem_mark), problem);
    }
}

static int on_event(parser *p, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        p->root_empty = false;
        return 0;
    case YAML_DOCUMENT_END_EVENT:
        return on_document_end(p);
    case YAML_SCALAR_EVENT:
        return on_scalar(p, ev);
    case YAML_ALIAS_EVENT:
        return on_alias(p, ev);
    case YAML_SEQUENCE_START_EVENT:
        return on_start(p, false, ev->data.sequence_start.anchor, &ev->start_mark);
    case YAML_MAPPING_START_EVENT:
        return on_start(p, true, ev->data.mapping_start.anchor, &ev->start_mark);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return on_end(p, &ev->start_mark);
    default:
        return 0;
    }
}

int ns_yaml_parse(const char *text, size_t len, cJSON **docs_out, ns_err *err)
{
    ns_err_clear(err);
    if (!docs_out)
        return ns_errorf(err, -EINVAL, "no place to store the parsed YAML");
    *docs_out = NULL;
    if (!text && len)
        return ns_errorf(err, -EINVAL, "no YAML text");
    parser *p = calloc(1, sizeof(*p));
    if (!p)
        return ns_errorf(err, -ENOMEM, "out of memory while reading YAML");
    p->err = err;
    int rc = 0;
    if (!yaml_parser_initialize(&p->yp)) {
        free(p);
        return ns_errorf(err, -ENOMEM, "out of memory while reading YAML");
    }
    yaml_parser_set_input_string(&p->yp, (const unsigned char *)(text ? text : ""), len);
    p->docs = cJSON_CreateArray();
    if (!p->docs) {
        rc = oom(p);
        goto out;
    }
    for (bool done = false; !done && !rc;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p->yp, &ev)) {
            rc = parser_error(p);
            break;
        }
        rc = on_event(p, &ev);
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
out:
    while (p->depth > 0)
        frame_release(&p->stack[--p->depth]);
    anchors_clear(p);
    cJSON_Delete(p->root);
    if (rc)
        cJSON_Delete(p->docs);
    else
        *docs_out = p->docs;
    yaml_parser_delete(&p->yp);
    free(p);
    return rc;
}

/* ---- emitter ------------------------------------------------------------------------- */

typedef struct emitter {
    yaml_emitter_t ye;
    ns_buf *out;
    ns_err *err;
} emitter;

static int write_cb(void *data, unsigned char *buffer, size_t size)
{
    ns_buf *out = data;
    ns_buf_append(out, buffer, size);
    return !out->failed;
}

/* Hands `ev` to libyaml, which takes it whatever happens. */
static int emit_event(emitter *e, yaml_event_t *ev)
{
    if (yaml_emitter_emit(&e->ye, ev))
        return 0;
    if (e->ye.error == YAML_EMITTER_ERROR)
        return ns_errorf(e->err, -EINVAL, "cannot write YAML: %s",
                         e->ye.problem ? e->ye.problem : "emitter error");
    return ns_errorf(e->err, -ENOMEM, "out of memory while writing YAML");
}

static int emit_scalar(emitter *e, const char *s, size_t len, yaml_scalar_style_t style)
{
    yaml_event_t ev;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)len, 1, 1, style))
        return ns_errorf(e->err, -ENOMEM, "out of memory while writing YAML");
    return emit_event(e, &ev);
}

/* Line breaks other than LF (CR, NEL, LS, PS) would be read back as LF or folded: only
 * double quotes with escapes keep them. */
static bool has_odd_break(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r')
            return true;
        if (c == 0xC2 && i + 1 < len && (unsigned char)s[i + 1] == 0x85)
            return true;
        if (c == 0xE2 && i + 2 < len && (unsigned char)s[i + 1] == 0x80 &&
            ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9))
            return true;
    }
    return false;
}

/* The style a string needs to read back as the same string. libyaml still downgrades a
 * plain or literal style it cannot write (": ", leading space, '*', trailing spaces...) to
 * single or double quotes. */
static yaml_scalar_style_t string_style(const char *s, size_t len)
{
    resolved r;
    if (has_odd_break(s, len))
        return YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    if (memchr(s, '\n', len))
        return YAML_LITERAL_SCALAR_STYLE;
    if (resolve_plain(s, len, &r) || r.kind != RK_STR || is_base60(s) || looks_like_timestamp(s) ||
        strcmp(s, "<<") == 0)
        return YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    return YAML_PLAIN_SCALAR_STYLE;
}

static int emit_string(emitter *e, const char *s)
{
    if (!s)
        return ns_errorf(e->err, -EINVAL, "cannot write a cJSON string or key that is NULL");
    size_t len = strlen(s);
    if (len > INT_MAX)
        return ns_errorf(e->err, -EINVAL, "cannot write a string of %zu bytes as YAML", len);
    if (!utf8_valid((const unsigned char *)s, len))
        return ns_errorf(e->err, -EINVAL, "cannot write a string that is not valid UTF-8 as YAML");
    return emit_scalar(e, s, len, string_style(s, len));
}

/* Integral numbers as integers, others with the fewest digits that read back exactly. */
static void format_number(double v, char *buf, size_t size)
{
    if (v > -9.2e18 && v < 9.2e18 && (double)(long long)v == v) {
        snprintf(buf, size, "%lld", (long long)v);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static int emit_node(emitter *e, const cJSON *item, int depth)
{
    char num[64];
    yaml_event_t ev;
    int rc;
    if (cJSON_IsNull(item))
        return emit_scalar(e, "null", 4, YAML_PLAIN_SCALAR_STYLE);
    if (cJSON_IsTrue(item))
        return emit_scalar(e, "true", 4, YAML_PLAIN_SCALAR_STYLE);
    if (cJSON_IsFalse(item))
        return emit_scalar(e, "false", 5, YAML_PLAIN_SCALAR_STYLE);
    if (cJSON_IsNumber(item)) {
        if (!isfinite(item->valuedouble))
            return ns_errorf(e->err, -EINVAL, "cannot write an infinite or NaN number as YAML");
        format_number(item->valuedouble, num, sizeof(num));
        return emit_scalar(e, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
    }
    if (cJSON_IsString(item))
        return emit_string(e, item->valuestring);
    bool is_map = cJSON_IsObject(item);
    if (!is_map && !cJSON_IsArray(item))
        return ns_errorf(e->err, -EINVAL, "cannot write a raw or invalid cJSON item as YAML");
    if (depth >= NS_YAML_MAX_DEPTH)
        return ns_errorf(e->err, -EINVAL, "cannot write JSON nested deeper than %d levels",
                         NS_YAML_MAX_DEPTH);
    int ok;
    if (is_map)
        ok = yaml_mapping_start_event_initialize(
            &ev, NULL, NULL, 1, item->child ? YAML_BLOCK_MAPPING_STYLE : YAML_FLOW_MAPPING_STYLE);
    else
        ok = yaml_sequence_start_event_initialize(
            &ev, NULL, NULL, 1, item->child ? YAML_BLOCK_SEQUENCE_STYLE : YAML_FLOW_SEQUENCE_STYLE);
    if (!ok)
        return ns_errorf(e->err, -ENOMEM, "out of memory while writing YAML");
    if ((rc = emit_event(e, &ev)))
        return rc;
    for (const cJSON *c = item->child; c; c = c->next) {
        if (is_map && (rc = emit_string(e, c->string)))
            return rc;
        if ((rc = emit_node(e, c, depth + 1)))
            return rc;
    }
    if (is_map)
        yaml_mapping_end_event_initialize(&ev);
    else
        yaml_sequence_end_event_initialize(&ev);
    return emit_event(e, &ev);
}

int ns_yaml_emit(const cJSON *doc, ns_buf *out, ns_err *err)
{
    ns_err_clear(err);
    if (!doc || !out)
        return ns_errorf(err, -EINVAL, "nothing to write as YAML");
    emitter e = {.out = out, .err = err};
    if (!yaml_emitter_initialize(&e.ye))
        return ns_errorf(err, -ENOMEM, "out of memory while writing YAML");
    yaml_emitter_set_output(&e.ye, write_cb, out);
    yaml_emitter_set_unicode(&e.ye, 1);
    yaml_emitter_set_indent(&e.ye, 2);
    yaml_emitter_set_width(&e.ye, -1);
    yaml_emitter_set_break(&e.ye, YAML_LN_BREAK);

    yaml_event_t ev;
    int rc;
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    if ((rc = emit_event(&e, &ev)))
        goto out;
    if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1)) {
        rc = ns_errorf(err, -ENOMEM, "out of memory while writing YAML");
        goto out;
    }
    if ((rc = emit_event(&e, &ev)) || (rc = emit_node(&e, doc, 0)))
        goto out;
    yaml_document_end_event_initialize(&ev, 1);
    if ((rc = emit_event(&e, &ev)))
        goto out;
    yaml_stream_end_event_initialize(&ev);
    if ((rc = emit_event(&e, &ev)))
        goto out;
    if (!yaml_emitter_flush(&e.ye))
        rc = ns_errorf(err, -ENOMEM, "out of memory while writing YAML");
out:
    yaml_emitter_delete(&e.ye);
    if (!rc && out->failed)
        rc = ns_errorf(err, -ENOMEM, "out of memory while writing YAML");
    return rc;
}

int ns_yaml_emit_all(const cJSON *docs_array, ns_buf *out, ns_err *err)
{
    ns_err_clear(err);
    if (!cJSON_IsArray(docs_array) || !out)
        return ns_errorf(err, -EINVAL, "YAML documents must come as a JSON array");
    for (const cJSON *d = docs_array->child; d; d = d->next) {
        if (d != docs_array->child)
            ns_buf_puts(out, "---\n");
        int rc = ns_yaml_emit(d, out, err);
        if (rc)
            return rc;
    }
    return out->failed ? ns_errorf(err, -ENOMEM, "out of memory while writing YAML") : 0;
}

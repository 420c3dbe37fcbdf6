/* selector.h - Kubernetes label selectors: parsing (kubectl -l syntax and LabelSelector
 * objects) and matching. Pure. */
#ifndef OP_SELECTOR_H
#define OP_SELECTOR_H

#include "err.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum op_selector_op {
    OP_SEL_EQ,         /* key=value, key==value */
    OP_SEL_NEQ,        /* key!=value (also true when the label is absent) */
    OP_SEL_IN,         /* key in (a,b) */
    OP_SEL_NOTIN,      /* key notin (a,b) (also true when absent) */
    OP_SEL_EXISTS,     /* key */
    OP_SEL_NOT_EXISTS, /* !key */
    OP_SEL_GT,         /* key>3 (integer values) */
    OP_SEL_LT,         /* key<3 */
} op_selector_op;

typedef struct op_selector_req {
    char *key;
    op_selector_op op;
    char **values;
    size_t nvalues;
} op_selector_req;

/* A conjunction of requirements. No requirement: matches everything. `nothing`: matches
 * nothing (a NULL LabelSelector, as Kubernetes reads it). */
typedef struct op_selector {
    op_selector_req *reqs;
    size_t n;
    bool nothing;
} op_selector;

/* Parses the label selector syntax of kubectl -l and ?labelSelector=. NULL or "" selects
 * everything. Keys and values are checked as Kubernetes checks them (qualified names,
 * values of at most 63 characters). Returns 0 and fills *out (free with op_selector_free),
 * -EINVAL (message in err), or -ENOMEM. */
int op_selector_parse(const char *text, op_selector *out, ns_err *err);

/* Reads a LabelSelector object {matchLabels, matchExpressions [{key, operator In|NotIn|
 * Exists|DoesNotExist, values}]}: a Deployment's spec.selector. NULL selects nothing and
 * {} everything, as in Kubernetes. Returns as op_selector_parse. */
int op_selector_from_json(const cJSON *label_selector, op_selector *out, ns_err *err);

void op_selector_free(op_selector *s);

/* True if `labels` (a JSON object of strings, or NULL for none) satisfies `s`. A NULL
 * selector matches everything. */
bool op_selector_matches(const op_selector *s, const cJSON *labels);

/* op_selector_matches on obj.metadata.labels. */
bool op_selector_matches_object(const op_selector *s, const cJSON *obj);

#endif

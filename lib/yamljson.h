/* yamljson.h - YAML <-> cJSON conversion for Kubernetes manifests and kubeconfig files.
 *
 * Reading follows what Kubernetes does with YAML (sigs.k8s.io/yaml over go-yaml v2, which
 * kubectl and the API server use), so a manifest means the same thing to Nutshell as to
 * the cluster:
 *
 *  - Plain (unquoted) scalars are typed by go-yaml v2's YAML 1.1 rules:
 *      booleans  true/True/TRUE, false/False/FALSE, and also yes/Yes/YES, no/No/NO,
 *                on/On/ON, off/Off/OFF, y/Y, n/N (go-yaml v2 reads these as booleans);
 *      null      null/Null/NULL, ~ and the empty scalar;
 *      integers  decimal with optional sign, 0x hex, 0o octal, 0b binary, and a leading
 *                0 means octal ("defaultMode: 0644" is 420); '_' separators are ignored;
 *      floats    1.5, .5, 1e3, 1.5E-3 ... ; .inf/-.inf/.nan are rejected as values
 *                because JSON cannot hold them (Kubernetes fails the same way);
 *      anything else, including timestamps ("2024-01-01"), is a string, as is a number
 *      too large for a double ("1e400").
 *  - Quoted scalars ('single', "double") and block scalars (| and >) are strings.
 *  - Tags: !!str, !!int, !!float, !!bool, !!null coerce or check the value ("!!int abc"
 *    is an error), !!binary is base64-decoded into a string (which must be UTF-8 text),
 *    !!timestamp is kept as a string; other tags ("!foo", "!") make a scalar a string and
 *    are ignored on collections.
 *  - Numbers become cJSON numbers, i.e. doubles: integers beyond 2^53 lose precision.
 *  - Mapping keys must be scalars. Non-string keys take their string form as Kubernetes
 *    does ("yes: x" has key "true", "0x10: x" has key "16", "1.50: x" has key "1.5"); a null
 *    key is an error. A key written twice in one mapping is an error naming both lines
 *    (Kubernetes' strict decoding rejects it too; non-strict would keep the last).
 *  - Merge keys ("<<: *base", "<<: [*a, *b]") follow the YAML merge spec: keys written in
 *    the mapping win over merged ones wherever the "<<" stands, and earlier sources win
 *    over later ones. (go-yaml v2's strict mode instead rejects overriding a merged key.)
 *  - Anchors and aliases are resolved by copying the anchored value. An alias must follow
 *    its anchor's complete node, so a node cannot contain itself.
 *  - Key order is kept as written; emitted YAML keeps cJSON's order (kubectl sorts).
 *
 * Limits, so that hostile input costs bounded time and memory and never overflows the
 * stack: nesting deeper than NS_YAML_MAX_DEPTH collections, more than NS_YAML_MAX_NODES
 * values in one stream (copies made for anchors and aliases included), or more than
 * NS_YAML_MAX_ALIAS_NODES values created by aliases ("billion laughs") make the parse
 * fail with -EINVAL.
 *
 * JSON is YAML, so JSON text parses too, with libyaml's YAML 1.1 limits: a surrogate
 * pair escape such as "\ud83d\ude00" is rejected. Use cJSON_Parse for text known to be
 * JSON.
 *
 * Numbers are read and written in the "C" numeric locale (strtod/snprintf): processes
 * using this module must not switch LC_NUMERIC.
 */
#ifndef NS_YAMLJSON_H
#define NS_YAMLJSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "buf.h"
#include "err.h"

/* Collections may nest this deep; one level deeper is an error. */
#define NS_YAML_MAX_DEPTH 200
/* Values (scalars and collections) one call may create, anchor and alias copies included. */
#define NS_YAML_MAX_NODES 1000000
/* Values one call may create by expanding aliases. */
#define NS_YAML_MAX_ALIAS_NODES 100000

/* Parses every document of the YAML stream `text` (`len` bytes, need not be
 * NUL-terminated; UTF-8, UTF-16 with a BOM also accepted) into a new cJSON array with one
 * element per document, in order. Documents without content ("", only comments, a bare
 * "---") are skipped, so empty input yields an empty array; a document that is just
 * "null" or "~" yields a JSON null element.
 *
 * On success returns 0 and stores the array in *docs_out (caller frees with
 * cJSON_Delete). On failure stores NULL, returns -EINVAL for input that is not valid YAML
 * or breaks the rules or limits above (the message in `err` gives the 1-based line and
 * column, e.g. "line 3, column 5: mapping values are not allowed in this context"), or
 * -ENOMEM. Messages give positions and may name keys and anchors, never scalar values
 * (a kubeconfig's values can be secrets). `text` may be NULL only when `len` is 0. */
int ns_yaml_parse(const char *text, size_t len, cJSON **docs_out, ns_err *err);

/* Appends `doc` to `out` as one YAML block document, without a leading "---" and ending
 * in a newline, in kubectl's layout: 2-space indentation, sequence items at the
 * indentation of their parent key ("containers:\n- name: x"), "{}" and "[]" for empty
 * collections, long lines never wrapped.
 *
 * Strings are quoted whenever a YAML reader could take them for something else: "true",
 * "yes", "1337", "0644", "", "~", "1:20", timestamps ... are double-quoted; strings that
 * YAML syntax would misread ("a: b", " x", "*", "{...}") are single- or double-quoted;
 * multi-line strings use literal blocks ("|") where that reads back exactly, escaped
 * double quotes otherwise. Integral numbers are written as integers (15001, not
 * 15001.0), others with the fewest digits that read back to the same double.
 *
 * For every JSON value x without duplicate object keys and nesting at most
 * NS_YAML_MAX_DEPTH deep, ns_yaml_parse of the output gives back [x] (cJSON_Compare).
 *
 * Returns 0, -EINVAL (NULL doc, NaN or infinite number, string that is not UTF-8, raw or
 * invalid cJSON item, nesting deeper than NS_YAML_MAX_DEPTH) or -ENOMEM (including
 * `out` having failed); on failure `out` may hold part of the document: discard it. */
int ns_yaml_emit(const cJSON *doc, ns_buf *out, ns_err *err);

/* Appends every element of the array `docs_array` as with ns_yaml_emit, separated by
 * "---\n" lines (nothing for an empty array). Same returns as ns_yaml_emit; -EINVAL also
 * when `docs_array` is not an array. */
int ns_yaml_emit_all(const cJSON *docs_array, ns_buf *out, ns_err *err);

#endif

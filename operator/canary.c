/* canary.c - the Canary's spec (defaults and checks), its status and their JSON forms. */
#include "canary.h"

#include "json.h"
#include "timefmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names of enums ---- */

static const char *const phase_names[] = {
    [CANARY_PHASE_NONE] = "",
    [CANARY_PHASE_INITIALIZING] = "Initializing",
    [CANARY_PHASE_INITIALIZED] = "Initialized",
    [CANARY_PHASE_PROGRESSING] = "Progressing",
    [CANARY_PHASE_PROMOTING] = "Promoting",
    [CANARY_PHASE_FINALISING] = "Finalising",
    [CANARY_PHASE_SUCCEEDED] = "Succeeded",
    [CANARY_PHASE_FAILED] = "Failed",
};
#define N_PHASES (sizeof(phase_names) / sizeof(phase_names[0]))

const char *canary_phase_name(canary_phase p)
{
    return (size_t)p < N_PHASES ? phase_names[p] : "";
}

canary_phase canary_phase_parse(const char *s)
{
    if (!s || !*s)
        return CANARY_PHASE_NONE;
    for (size_t i = 1; i < N_PHASES; i++)
        if (strcmp(s, phase_names[i]) == 0)
            return (canary_phase)i;
    return CANARY_PHASE_NONE;
}

static const char *const hook_names[] = {
    [CANARY_HOOK_PRE_ROLLOUT] = "pre-rollout",
    [CANARY_HOOK_ROLLOUT] = "rollout",
    [CANARY_HOOK_CONFIRM_PROMOTION] = "confirm-promotion",
    [CANARY_HOOK_POST_ROLLOUT] = "post-rollout",
    [CANARY_HOOK_ROLLBACK] = "rollback",
};
#define N_HOOKS (sizeof(hook_names) / sizeof(hook_names[0]))

const char *canary_hook_type_name(canary_hook_type t)
{
    return (size_t)t < N_HOOKS ? hook_names[t] : "";
}

/* ---- durations ---- */

#define NS_PER_MS 1000000LL

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A unit's length as mantissa * 10^e10 nanoseconds, so that a fraction can be scaled
 * exactly by powers of ten; 0 for no unit. Sets *len to the unit's length in text. */
static int64_t unit_of(const char *p, int *e10, size_t *len)
{
    static const struct {
        const char *name;
        int64_t mantissa;
        int e10;
    } units[] = {
        /* two-letter units first: "ms" is not minutes followed by a stray "s" */
        {"ns", 1, 0}, {"us", 1, 3}, {"ms", 1, 6}, {"s", 1, 9}, {"m", 6, 10}, {"h", 36, 11},
    };
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        size_t n = strlen(units[i].name);
        if (strncmp(p, units[i].name, n) == 0) {
            *e10 = units[i].e10;
            *len = n;
            return units[i].mantissa;
        }
    }
    return 0;
}

static int64_t pow10_i64(int e)
{
    int64_t v = 1;
    while (e-- > 0)
        v *= 10;
    return v;
}

/* Go's grammar without its sign: a negative interval means nothing here, and the CRD's
 * rule refuses signs too. Go keeps nanoseconds and truncates below; we keep them too but
 * remember whether anything was cut, so that rounding up to milliseconds never turns a
 * positive duration into 0. */
int canary_duration_ms(const char *s, int64_t *out)
{
    /* Seventeen fraction digits times a mantissa of at most 36 stays below INT64_MAX. */
    enum { FRAC_DIGITS_KEPT = 17 };
    if (!s || !*s)
        return -EINVAL;
    if (strcmp(s, "0") == 0) { /* Go's special case: a bare zero needs no unit */
        *out = 0;
        return 0;
    }
    int64_t total = 0;
    bool inexact = false;
    for (const char *p = s; *p;) {
        int64_t whole = 0, frac = 0;
        int frac_digits = 0;
        bool have_whole = false, have_frac = false, frac_cut = false;
        bool whole_overflow = false;
        for (; is_digit(*p); p++) {
            have_whole = true;
            if (whole > (INT64_MAX - (*p - '0')) / 10)
                whole_overflow = true;
            else
                whole = whole * 10 + (*p - '0');
        }
        if (*p == '.') {
            for (p++; is_digit(*p); p++) {
                have_frac = true;
                if (frac_digits < FRAC_DIGITS_KEPT) {
                    frac = frac * 10 + (*p - '0');
                    frac_digits++;
                } else if (*p != '0') {
                    frac_cut = true;
                }
            }
        }
        if (!have_whole && !have_frac)
            return -EINVAL;
        int e10 = 0;
        size_t ulen = 0;
        int64_t mantissa = unit_of(p, &e10, &ulen);
        if (!mantissa)
            return -EINVAL;
        p += ulen;
        if (whole_overflow)
            return -ERANGE;
        int64_t unit = mantissa * pow10_i64(e10);
        if (whole > INT64_MAX / unit)
            return -ERANGE;
        /* frac / 10^digits of a unit, in ns: exact while digits <= e10 */
        int64_t part = whole * unit, fpart;
        if (frac_digits <= e10) {
            fpart = frac * mantissa * pow10_i64(e10 - frac_digits);
        } else {
            int64_t div = pow10_i64(frac_digits - e10), scaled = frac * mantissa;
            fpart = scaled / div;
            if (scaled % div)
                inexact = true;
        }
        if (frac_cut)
            inexact = true;
        if (fpart > INT64_MAX - part)
            return -ERANGE;
        part += fpart;
        if (part > INT64_MAX - total)
            return -ERANGE;
        total += part;
    }
    int64_t ms = total / NS_PER_MS;
    if (total % NS_PER_MS || inexact)
        ms++;
    *out = ms;
    return 0;
}

/* ---- reading the spec ----
 *
 * Every helper takes the dotted path of its parent, so that a message names the field
 * the user wrote ("spec.strategy.canary.maxWeight"). Absent and null keep the default. */

/* A short rendering of a JSON value for messages: strings quoted and cut. */
static void value_text(const cJSON *v, char *buf, size_t len)
{
    if (cJSON_IsString(v)) {
        size_t n = strlen(v->valuestring);
        snprintf(buf, len, "\"%.40s%s\"", v->valuestring, n > 40 ? "..." : "");
    } else if (cJSON_IsNumber(v)) {
        snprintf(buf, len, "%.15g", v->valuedouble);
    } else if (cJSON_IsBool(v)) {
        snprintf(buf, len, "%s", cJSON_IsTrue(v) ? "true" : "false");
    } else if (cJSON_IsArray(v)) {
        snprintf(buf, len, "a list");
    } else if (cJSON_IsObject(v)) {
        snprintf(buf, len, "an object");
    } else {
        snprintf(buf, len, "null");
    }
}

/* "path.key", or "key" at the top. */
static const char *field(char *buf, size_t len, const char *path, const char *key)
{
    snprintf(buf, len, "%s%s%s", path, *path ? "." : "", key);
    return buf;
}

static int wrong_type(const cJSON *v, const char *path, const char *key, const char *want,
                      ns_err *err)
{
    char got[64], f[128];
    value_text(v, got, sizeof(got));
    return ns_errorf(err, -EINVAL, "%s must be %s, not %s", field(f, sizeof(f), path, key), want,
                     got);
}

static int missing(const char *path, const char *key, ns_err *err)
{
    char f[128];
    return ns_errorf(err, -EINVAL, "%s is required", field(f, sizeof(f), path, key));
}

static const cJSON *present(const cJSON *obj, const char *key)
{
    const cJSON *v = ns_json_get(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int take_obj(const cJSON *obj, const char *key, const char *path, bool required,
                    const cJSON **out, ns_err *err)
{
    const cJSON *v = present(obj, key);
    *out = NULL;
    if (!v)
        return required ? missing(path, key, err) : 0;
    if (!cJSON_IsObject(v))
        return wrong_type(v, path, key, "an object", err);
    *out = v;
    return 0;
}

static int take_str(const cJSON *obj, const char *key, const char *path, bool required,
                    const char **dst, ns_err *err)
{
    const cJSON *v = present(obj, key);
    if (!v)
        return required ? missing(path, key, err) : 0;
    if (!cJSON_IsString(v))
        return wrong_type(v, path, key, "a string", err);
    if (!*v->valuestring)
        return ns_errorf(err, -EINVAL, "%s.%s must not be empty", path, key);
    *dst = v->valuestring;
    return 0;
}

static int take_bool(const cJSON *obj, const char *key, const char *path, bool *dst, ns_err *err)
{
    const cJSON *v = present(obj, key);
    if (!v)
        return 0;
    if (!cJSON_IsBool(v))
        return wrong_type(v, path, key, "true or false", err);
    *dst = cJSON_IsTrue(v);
    return 0;
}

static bool is_int_in(const cJSON *v, double min, double max)
{
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && v->valuedouble >= min &&
           v->valuedouble <= max;
}

static int take_int(const cJSON *obj, const char *key, const char *path, int32_t min, int32_t max,
                    bool required, int32_t *dst, ns_err *err)
{
    const cJSON *v = present(obj, key);
    if (!v)
        return required ? missing(path, key, err) : 0;
    if (!is_int_in(v, INT32_MIN, INT32_MAX))
        return wrong_type(v, path, key, "an integer", err);
    if (v->valuedouble < min || v->valuedouble > max) {
        if (max == INT32_MAX)
            return ns_errorf(err, -EINVAL, "%s.%s (%d) must be at least %d", path, key,
                             (int)v->valuedouble, (int)min);
        return ns_errorf(err, -EINVAL, "%s.%s (%d) must be between %d and %d", path, key,
                         (int)v->valuedouble, (int)min, (int)max);
    }
    *dst = (int32_t)v->valuedouble;
    return 0;
}

/* A positive duration into text (kept for queries' {{interval}}) and ms. dflt is used
 * when the field is absent. */
static int take_duration(const cJSON *obj, const char *key, const char *path, const char *dflt,
                         char *text, size_t len, int64_t *ms, ns_err *err)
{
    const char *s = dflt;
    int rc = take_str(obj, key, path, false, &s, err);
    if (rc)
        return rc;
    if (strlen(s) >= len)
        return ns_errorf(err, -EINVAL, "%s.%s (\"%.40s...\") is too long (at most %zu characters)",
                         path, key, s, len - 1);
    int64_t v = 0;
    rc = canary_duration_ms(s, &v);
    if (rc == -ERANGE)
        return ns_errorf(err, -EINVAL, "%s.%s (\"%s\") is too long a duration", path, key, s);
    if (rc || v <= 0)
        return ns_errorf(err, -EINVAL,
                         "%s.%s (\"%s\") is not a positive duration: use a number and a unit, "
                         "such as 30s, 5m, 1h or 1h30m (units: h, m, s, ms, us, ns)",
                         path, key, s);
    memcpy(text, s, strlen(s) + 1);
    *ms = v;
    return 0;
}

/* A DNS-1035 label (a Service name): lower-case letters, digits and '-', starting with
 * a letter, not ending with '-'. */
static bool dns1035_label(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || !(s[0] >= 'a' && s[0] <= 'z') || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

static int parse_metadata(const cJSON *canary, canary_spec *s, ns_err *err)
{
    const cJSON *meta;
    int rc = take_obj(canary, "metadata", "", true, &meta, err);
    if (!rc)
        rc = take_str(meta, "name", "metadata", true, &s->name, err);
    if (!rc)
        rc = take_str(meta, "namespace", "metadata", true, &s->namespace, err);
    if (!rc)
        rc = take_str(meta, "uid", "metadata", true, &s->uid, err);
    if (rc)
        return rc;
    const cJSON *gen = present(meta, "generation");
    if (is_int_in(gen, 0, 9e15))
        s->generation = (int64_t)gen->valuedouble;
    s->deleting = present(meta, "deletionTimestamp") != NULL;

    const cJSON *req = ns_json_get(ns_json_get(meta, "annotations"), CANARY_ANN_REQUEST);
    if (cJSON_IsString(req)) {
        /* kubectl annotate writes what was typed; a stray space or newline from a script
         * should not turn "promote" into a refusal. Case is kept: Kubernetes values are
         * case-sensitive everywhere else too. */
        const char *v = req->valuestring, *end = v + strlen(v);
        while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')
            v++;
        while (end > v && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
            end--;
        size_t n = (size_t)(end - v);
        s->request_text = req->valuestring;
        s->request = CANARY_REQUEST_UNKNOWN;
        if (n == 7 && strncmp(v, "promote", n) == 0)
            s->request = CANARY_REQUEST_PROMOTE;
        else if (n == 5 && strncmp(v, "abort", n) == 0)
            s->request = CANARY_REQUEST_ABORT;
        else if (n == 5 && strncmp(v, "retry", n) == 0)
            s->request = CANARY_REQUEST_RETRY;
    }
    return 0;
}

static int parse_service(const cJSON *spec, canary_spec *s, ns_err *err)
{
    const cJSON *ref, *svc;
    const char *api = "apps/v1", *kind = "Deployment";
    int rc = take_obj(spec, "targetRef", "spec", true, &ref, err);
    if (!rc)
        rc = take_str(ref, "name", "spec.targetRef", true, &s->target, err);
    if (!rc)
        rc = take_str(ref, "apiVersion", "spec.targetRef", false, &api, err);
    if (!rc)
        rc = take_str(ref, "kind", "spec.targetRef", false, &kind, err);
    if (rc)
        return rc;
    if (strcmp(api, "apps/v1") != 0 || strcmp(kind, "Deployment") != 0)
        return ns_errorf(
            err, -EINVAL,
            "spec.targetRef (%s %s) is not a Deployment: only Deployments (apps/v1) can be "
            "delivered progressively",
            api, kind);
    /* <target>-primary must be a valid object name */
    if (strlen(s->target) > 245)
        return ns_errorf(err, -EINVAL,
                         "spec.targetRef.name (\"%.40s...\") is longer than 245 characters",
                         s->target);

    rc = take_obj(spec, "service", "spec", true, &svc, err);
    if (!rc)
        rc = take_str(svc, "name", "spec.service", false, &s->service, err);
    if (!rc)
        rc = take_int(svc, "port", "spec.service", 1, 65535, true, &s->port, err);
    if (!rc)
        rc = take_str(svc, "portName", "spec.service", false, &s->port_name, err);
    if (rc)
        return rc;
    if (!s->service) {
        s->service = s->target;
        if (!dns1035_label(s->service, 55))
            return ns_errorf(err, -EINVAL,
                             "spec.service.name is required: the default, targetRef.name "
                             "\"%s\", is not a valid Service name (a DNS label starting with a "
                             "letter, at most 55 characters)",
                             s->target);
    } else if (!dns1035_label(s->service, 55)) {
        return ns_errorf(err, -EINVAL,
                         "spec.service.name (\"%.60s\") is not a valid Service name (a DNS label "
                         "starting with a letter, at most 55 characters)",
                         s->service);
    }
    const cJSON *tp = present(svc, "targetPort");
    if (tp) {
        char got[64];
        value_text(tp, got, sizeof(got));
        if (cJSON_IsNumber(tp)
                ? !is_int_in(tp, 1, 65535)
                : !cJSON_IsString(tp) || !*tp->valuestring || strlen(tp->valuestring) > 15)
            return ns_errorf(err, -EINVAL,
                             "spec.service.targetPort (%s) is neither a port number (1-65535) "
                             "nor a container port name (up to 15 characters)",
                             got);
        s->target_port = tp;
    }
    return 0;
}

static int parse_step_weights(const cJSON *c, canary_spec *s, ns_err *err)
{
    const char *path = "spec.strategy.canary";
    const cJSON *one = present(c, "stepWeight"), *list = present(c, "stepWeights");
    if (!one == !list)
        return ns_errorf(err, -EINVAL,
                         "%s: set exactly one of stepWeight (a fixed step) or stepWeights (a "
                         "list of weights)",
                         path);
    if (one) {
        int32_t step = 0;
        int rc = take_int(c, "stepWeight", path, 1, 100, true, &step, err);
        if (rc)
            return rc;
        if (step > s->max_weight)
            return ns_errorf(err, -EINVAL,
                             "%s.stepWeight (%d) must not be greater than maxWeight "
                             "(%d)",
                             path, (int)step, (int)s->max_weight);
        /* 10 with a maximum of 45 gives 10..40 and then 45: the rollout ends exactly at
         * maxWeight, never above it. */
        s->n_steps = 0;
        for (int32_t w = step; w < s->max_weight; w += step)
            s->steps[s->n_steps++] = w;
        s->steps[s->n_steps++] = s->max_weight;
        return 0;
    }
    if (!cJSON_IsArray(list))
        return wrong_type(list, path, "stepWeights", "a list of weights", err);
    int n = cJSON_GetArraySize(list);
    if (n < 1 || n > CANARY_MAX_STEPS)
        return ns_errorf(err, -EINVAL, "%s.stepWeights must have 1 to %d weights, not %d", path,
                         CANARY_MAX_STEPS, n);
    const cJSON *w;
    s->n_steps = 0;
    cJSON_ArrayForEach(w, list)
    {
        char got[64];
        value_text(w, got, sizeof(got));
        if (!is_int_in(w, 1, 100))
            return ns_errorf(err, -EINVAL,
                             "%s.stepWeights[%zu] (%s) must be a weight between 1 and 100", path,
                             s->n_steps, got);
        int32_t v = (int32_t)w->valuedouble;
        if (s->n_steps > 0 && v <= s->steps[s->n_steps - 1])
            return ns_errorf(err, -EINVAL,
                             "%s.stepWeights must be in strictly ascending order, such as [5, "
                             "10, 25, 50]: %d follows %d",
                             path, (int)v, (int)s->steps[s->n_steps - 1]);
        if (v > s->max_weight)
            return ns_errorf(err, -EINVAL,
                             "%s.stepWeights must not be greater than maxWeight (%d): raise "
                             "maxWeight to the last step (%d)",
                             path, (int)s->max_weight, (int)v);
        s->steps[s->n_steps++] = v;
    }
    /* The list says where the rollout stops: promotion follows its last step, so that is
     * the maximum the machine works with (the CRD only asks maxWeight to be >= it). */
    s->max_weight = s->steps[s->n_steps - 1];
    return 0;
}

static int parse_strategy(const cJSON *spec, canary_spec *s, ns_err *err)
{
    const cJSON *st, *c, *bg;
    int rc = take_obj(spec, "strategy", "spec", true, &st, err);
    if (!rc)
        rc = take_obj(st, "canary", "spec.strategy", false, &c, err);
    if (!rc)
        rc = take_obj(st, "blueGreen", "spec.strategy", false, &bg, err);
    if (rc)
        return rc;
    if (!c == !bg)
        return ns_errorf(err, -EINVAL,
                         "spec.strategy: set exactly one of strategy.canary or "
                         "strategy.blueGreen");
    if (c) {
        s->strategy = CANARY_STRATEGY_CANARY;
        rc = take_int(c, "maxWeight", "spec.strategy.canary", 1, 100, false, &s->max_weight, err);
        if (!rc)
            rc = take_duration(c, "interval", "spec.strategy.canary", "1m", s->interval_text,
                               sizeof(s->interval_text), &s->interval_ms, err);
        if (!rc)
            rc = parse_step_weights(c, s, err);
        return rc;
    }
    /* Blue-green has no steps: the one switch sends everything to the new version. */
    s->strategy = CANARY_STRATEGY_BLUE_GREEN;
    s->n_steps = 0;
    s->max_weight = 100;
    rc = take_int(bg, "iterations", "spec.strategy.blueGreen", 1, INT32_MAX, false, &s->iterations,
                  err);
    if (!rc)
        rc = take_bool(bg, "autoPromote", "spec.strategy.blueGreen", &s->auto_promote, err);
    if (!rc)
        rc = take_duration(bg, "interval", "spec.strategy.blueGreen", "1m", s->interval_text,
                           sizeof(s->interval_text), &s->interval_ms, err);
    return rc;
}

static int take_list(const cJSON *obj, const char *key, const char *path, int max,
                     const cJSON **out, ns_err *err)
{
    const cJSON *v = present(obj, key);
    *out = NULL;
    if (!v)
        return 0;
    if (!cJSON_IsArray(v))
        return wrong_type(v, path, key, "a list", err);
    int n = cJSON_GetArraySize(v);
    if (n > max)
        return ns_errorf(err, -EINVAL, "%s.%s has %d entries; at most %d are allowed", path, key, n,
                         max);
    *out = v;
    return 0;
}

static int parse_metric(const cJSON *m, const canary_spec *s, size_t i, canary_metric *out,
                        ns_err *err)
{
    char path[64];
    snprintf(path, sizeof(path), "spec.analysis.metrics[%zu]", i);
    if (!cJSON_IsObject(m))
        return ns_errorf(err, -EINVAL, "%s must be an object", path);
    *out = (canary_metric){0};
    const cJSON *range;
    int64_t ms;
    int rc = take_str(m, "name", path, true, &out->name, err);
    if (!rc)
        rc = take_str(m, "query", path, true, &out->query, err);
    if (!rc)
        rc = take_str(m, "address", path, true, &out->address, err);
    if (!rc)
        rc = take_obj(m, "thresholdRange", path, true, &range, err);
    if (!rc)
        rc = take_duration(m, "interval", path, s->interval_text, out->interval_text,
                           sizeof(out->interval_text), &ms, err);
    if (rc)
        return rc;
    const cJSON *min = present(range, "min"), *max = present(range, "max");
    char rpath[96];
    snprintf(rpath, sizeof(rpath), "%s.thresholdRange", path);
    if (min && !cJSON_IsNumber(min))
        return wrong_type(min, rpath, "min", "a number", err);
    if (max && !cJSON_IsNumber(max))
        return wrong_type(max, rpath, "max", "a number", err);
    if (!min && !max)
        return ns_errorf(err, -EINVAL, "%s needs min, max or both", rpath);
    out->has_min = min != NULL;
    out->has_max = max != NULL;
    out->min = min ? min->valuedouble : 0;
    out->max = max ? max->valuedouble : 0;
    if (min && max && out->min > out->max)
        return ns_errorf(err, -EINVAL,
                         "%s.min (%.15g) must not be greater than thresholdRange.max (%.15g)",
                         rpath, out->min, out->max);
    return 0;
}

static int parse_webhook(const cJSON *h, size_t i, canary_webhook *out, ns_err *err)
{
    char path[64];
    snprintf(path, sizeof(path), "spec.analysis.webhooks[%zu]", i);
    if (!cJSON_IsObject(h))
        return ns_errorf(err, -EINVAL, "%s must be an object", path);
    *out = (canary_webhook){0};
    const char *type = NULL;
    char timeout_text[33];
    int rc = take_str(h, "name", path, true, &out->name, err);
    if (!rc)
        rc = take_str(h, "type", path, true, &type, err);
    if (!rc)
        rc = take_str(h, "url", path, true, &out->url, err);
    if (!rc)
        rc = take_duration(h, "timeout", path, "10s", timeout_text, sizeof(timeout_text),
                           &out->timeout_ms, err);
    if (!rc)
        rc = take_obj(h, "metadata", path, false, &out->metadata, err);
    if (rc)
        return rc;
    size_t t;
    for (t = 0; t < N_HOOKS && strcmp(type, hook_names[t]) != 0; t++)
        ;
    if (t == N_HOOKS)
        return ns_errorf(err, -EINVAL,
                         "%s.type (\"%.40s\") must be pre-rollout, rollout, confirm-promotion, "
                         "post-rollout or rollback",
                         path, type);
    out->type = (canary_hook_type)t;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, out->metadata)
    {
        if (!cJSON_IsString(kv))
            return ns_errorf(err, -EINVAL, "%s.metadata.%s must be a string", path, kv->string);
    }
    return 0;
}

static int parse_analysis(const cJSON *spec, canary_spec *s, ns_err *err)
{
    const cJSON *an, *metrics, *hooks, *item;
    int rc = take_obj(spec, "analysis", "spec", false, &an, err);
    if (!rc)
        rc = take_int(an, "threshold", "spec.analysis", 1, INT32_MAX, false, &s->threshold, err);
    if (!rc)
        rc = take_list(an, "metrics", "spec.analysis", CANARY_MAX_METRICS, &metrics, err);
    if (!rc)
        rc = take_list(an, "webhooks", "spec.analysis", CANARY_MAX_WEBHOOKS, &hooks, err);
    if (rc)
        return rc;
    /* Names identify checks in Events and the status; the CRD's list-map keys keep them
     * unique, checked again here for objects stored before that. */
    cJSON_ArrayForEach(item, metrics)
    {
        canary_metric *m = &s->metrics[s->n_metrics];
        rc = parse_metric(item, s, s->n_metrics, m, err);
        if (rc)
            return rc;
        for (size_t j = 0; j < s->n_metrics; j++)
            if (strcmp(s->metrics[j].name, m->name) == 0)
                return ns_errorf(err, -EINVAL, "spec.analysis.metrics has two entries named %s",
                                 m->name);
        s->n_metrics++;
    }
    cJSON_ArrayForEach(item, hooks)
    {
        canary_webhook *h = &s->webhooks[s->n_webhooks];
        rc = parse_webhook(item, s->n_webhooks, h, err);
        if (rc)
            return rc;
        for (size_t j = 0; j < s->n_webhooks; j++)
            if (strcmp(s->webhooks[j].name, h->name) == 0)
                return ns_errorf(err, -EINVAL, "spec.analysis.webhooks has two entries named %s",
                                 h->name);
        s->n_webhooks++;
    }
    return 0;
}

int canary_spec_parse(const cJSON *canary, canary_spec *out, ns_err *err)
{
    if (!cJSON_IsObject(canary))
        return ns_errorf(err, -EINVAL, "the Canary is not a JSON object");
    /* Large (the metrics and webhooks arrays): built on the heap, copied out on success
     * so that *out is untouched by a failure. */
    canary_spec *s = calloc(1, sizeof(*s));
    if (!s)
        return ns_errorf(err, -ENOMEM, "out of memory reading the Canary");
    s->port_name = "http";
    s->max_weight = 50;
    s->iterations = 10;
    s->auto_promote = true;
    s->threshold = 5;
    s->progress_deadline_ms = 600 * 1000LL;

    const cJSON *spec = NULL;
    int32_t deadline = 600;
    int rc = parse_metadata(canary, s, err);
    if (!rc)
        rc = take_obj(canary, "spec", "", true, &spec, err);
    if (!rc)
        rc = parse_service(spec, s, err);
    if (!rc)
        rc = parse_strategy(spec, s, err);
    if (!rc)
        rc = parse_analysis(spec, s, err);
    if (!rc)
        rc = take_int(spec, "progressDeadlineSeconds", "spec", 1, INT32_MAX, false, &deadline, err);
    if (!rc)
        rc = take_bool(spec, "suspend", "spec", &s->suspend, err);
    if (!rc) {
        s->progress_deadline_ms = deadline * 1000LL;
        *out = *s;
    }
    free(s);
    return rc;
}

/* ---- times ---- */

int canary_time_parse(const char *s, int64_t *out)
{
    return ns_time_parse_ms(s, out);
}

/* ---- status ---- */

/* Copies at most len - 1 bytes, backing off so as not to cut a UTF-8 sequence: the API
 * server refuses invalid UTF-8 in a string. */
static void copy_text(char *dst, size_t len, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= len) {
        n = len - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

static int32_t lenient_i32(const cJSON *obj, const char *key)
{
    const cJSON *v = ns_json_get(obj, key);
    return is_int_in(v, INT32_MIN, INT32_MAX) ? (int32_t)v->valuedouble : 0;
}

static int64_t lenient_time(const cJSON *obj, const char *key)
{
    int64_t t = 0;
    if (ns_time_parse_ms(ns_json_str(obj, key), &t))
        return 0;
    return t;
}

/* A revision longer than ours is not one we wrote: taken as absent, not cut. */
static void lenient_revision(char *dst, const cJSON *obj, const char *key)
{
    const char *v = ns_json_str(obj, key);
    dst[0] = '\0';
    if (v && strlen(v) <= CANARY_REVISION_MAX)
        copy_text(dst, CANARY_REVISION_MAX + 1, v);
}

void canary_status_parse(const cJSON *canary, canary_status *out)
{
    *out = (canary_status){0};
    const cJSON *st = ns_json_get(canary, "status");
    if (!cJSON_IsObject(st))
        return;
    const cJSON *gen = ns_json_get(st, "observedGeneration");
    if (is_int_in(gen, 0, 9e15))
        out->observed_generation = (int64_t)gen->valuedouble;
    out->phase = canary_phase_parse(ns_json_str(st, "phase"));
    out->canary_weight = lenient_i32(st, "canaryWeight");
    out->desired_weight = lenient_i32(st, "desiredWeight");
    out->failed_checks = lenient_i32(st, "failedChecks");
    out->iterations = lenient_i32(st, "iterations");
    lenient_revision(out->current_revision, st, "currentRevision");
    lenient_revision(out->last_promoted_revision, st, "lastPromotedRevision");
    out->last_transition_ms = lenient_time(st, "lastTransitionTime");
    out->last_step_ms = lenient_time(st, "lastStepTime");
    copy_text(out->message, sizeof(out->message), ns_json_str(st, "message"));

    const cJSON *c;
    cJSON_ArrayForEach(c, ns_json_get(st, "conditions"))
    {
        const char *type = ns_json_str(c, "type");
        if (!type || strcmp(type, "Promoted") != 0)
            continue;
        const char *status = ns_json_str(c, "status");
        out->promoted = status && strcmp(status, "True") == 0;
        copy_text(out->promoted_reason, sizeof(out->promoted_reason), ns_json_str(c, "reason"));
        copy_text(out->promoted_message, sizeof(out->promoted_message), ns_json_str(c, "message"));
        out->promoted_transition_ms = lenient_time(c, "lastTransitionTime");
        break;
    }
}

/* The CRD's (metav1.Condition's) pattern for reason: ^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$ */
static bool reason_valid(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n > 1024)
        return false;
    if (!((r[0] >= 'A' && r[0] <= 'Z') || (r[0] >= 'a' && r[0] <= 'z')))
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = r[i];
        bool word = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '_';
        if (!word && !((c == ',' || c == ':') && i + 1 < n))
            return false;
    }
    return true;
}

/* Adds item to parent (object member `key`, or array element when key is NULL);
 * false, with the item freed, on failure. */
static bool add(cJSON *parent, const char *key, cJSON *item)
{
    bool ok = item &&
              (key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item));
    if (!ok)
        cJSON_Delete(item);
    return ok;
}

static bool add_text(cJSON *parent, const char *key, const char *value)
{
    return !*value || add(parent, key, cJSON_CreateString(value));
}

/* A time RFC 3339 cannot write (outside the years 0000-9999) is left out, as absent. */
static bool add_time(cJSON *parent, const char *key, int64_t ms)
{
    char t[NS_TIME_MAX];
    if (!ms || ns_time_format_ms(ms, t, sizeof(t)) != 0)
        return true;
    return add(parent, key, cJSON_CreateString(t));
}

cJSON *canary_status_to_json(const canary_status *st)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    bool ok = add(o, "observedGeneration", cJSON_CreateNumber((double)st->observed_generation)) &&
              add_text(o, "phase", canary_phase_name(st->phase)) &&
              add(o, "canaryWeight", cJSON_CreateNumber(st->canary_weight)) &&
              add(o, "desiredWeight", cJSON_CreateNumber(st->desired_weight)) &&
              add(o, "failedChecks", cJSON_CreateNumber(st->failed_checks)) &&
              add(o, "iterations", cJSON_CreateNumber(st->iterations)) &&
              add_text(o, "currentRevision", st->current_revision) &&
              add_text(o, "lastPromotedRevision", st->last_promoted_revision) &&
              add_time(o, "lastTransitionTime", st->last_transition_ms) &&
              add_time(o, "lastStepTime", st->last_step_ms) && add_text(o, "message", st->message);

    /* metav1.Condition requires lastTransitionTime: without any time (a status never
     * written by the machine) there is no condition to report yet. */
    int64_t when = st->promoted_transition_ms ? st->promoted_transition_ms : st->last_transition_ms;
    if (ok && when) {
        cJSON *conds = cJSON_AddArrayToObject(o, "conditions"), *c = cJSON_CreateObject();
        ok = conds && add(conds, NULL, c);
        if (!conds)
            cJSON_Delete(c);
        const char *reason = reason_valid(st->promoted_reason) ? st->promoted_reason : "Pending";
        ok = ok && add(c, "type", cJSON_CreateString("Promoted")) &&
             add(c, "status", cJSON_CreateString(st->promoted ? "True" : "False")) &&
             add(c, "observedGeneration", cJSON_CreateNumber((double)st->observed_generation)) &&
             add_time(c, "lastTransitionTime", when) &&
             add(c, "reason", cJSON_CreateString(reason)) &&
             add(c, "message", cJSON_CreateString(st->promoted_message));
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* canary_view.c - the Canary's fields, its table and its detailed view. */
#include "canary_view.h"

#include "canary.h"
#include "humantime.h"
#include "json.h"
#include "table.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NONE "<none>"

/* obj[key] as an int32 when it is a whole number in range. */
static bool get_i32(const cJSON *obj, const char *key, int32_t *out)
{
    const cJSON *v = ns_json_get(obj, key);
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < INT32_MIN || d > INT32_MAX)
        return false;
    *out = (int32_t)d;
    return true;
}

static int64_t time_ms(const char *s)
{
    int64_t ms = 0;
    return s && kn_time_parse(s, &ms) == 0 ? ms : 0;
}

void kn_canary_read(const cJSON *obj, kn_canary *out)
{
    *out = (kn_canary){.threshold = KN_DEFAULT_THRESHOLD};
    const cJSON *meta = ns_json_get(obj, "metadata");
    out->name = ns_json_str(meta, "name");
    out->namespace = ns_json_str(meta, "namespace");
    out->uid = ns_json_str(meta, "uid");
    out->resource_version = ns_json_str(meta, "resourceVersion");
    out->created_ms = time_ms(ns_json_str(meta, "creationTimestamp"));
    out->deleting = ns_json_str(meta, "deletionTimestamp") != NULL;
    out->request = ns_json_path_str(meta, "annotations", CANARY_ANN_REQUEST, NULL);

    const cJSON *spec = ns_json_get(obj, "spec");
    out->target = ns_json_path_str(spec, "targetRef", "name", NULL);
    const cJSON *strategy = ns_json_get(spec, "strategy");
    if (cJSON_IsObject(ns_json_get(strategy, "canary")))
        out->strategy = "canary";
    else if (cJSON_IsObject(ns_json_get(strategy, "blueGreen")))
        out->strategy = "blueGreen";
    out->suspend = ns_json_true(spec, "suspend");
    int32_t threshold;
    if (get_i32(ns_json_get(spec, "analysis"), "threshold", &threshold) && threshold > 0)
        out->threshold = threshold;

    const cJSON *st = ns_json_get(obj, "status");
    out->phase = ns_json_str(st, "phase");
    if (out->phase && !*out->phase)
        out->phase = NULL;
    out->has_canary_weight = get_i32(st, "canaryWeight", &out->canary_weight);
    out->has_desired_weight = get_i32(st, "desiredWeight", &out->desired_weight);
    if (!get_i32(st, "failedChecks", &out->failed_checks))
        out->failed_checks = 0;
    out->has_iterations = get_i32(st, "iterations", &out->iterations);
    out->current_revision = ns_json_str(st, "currentRevision");
    out->last_promoted_revision = ns_json_str(st, "lastPromotedRevision");
    out->last_transition = ns_json_str(st, "lastTransitionTime");
    out->last_transition_ms = time_ms(out->last_transition);
    out->message = ns_json_str(st, "message");
    const cJSON *conds = ns_json_get(st, "conditions");
    if (cJSON_IsArray(conds)) {
        out->conditions = conds;
        const cJSON *c;
        cJSON_ArrayForEach(c, conds)
        {
            const char *type = ns_json_str(c, "type");
            if (type && strcmp(type, "Promoted") == 0)
                out->promoted = ns_json_str(c, "status");
        }
    }
}

/* s, or "<none>" when NULL or empty. */
static const char *or_none(const char *s)
{
    return s && *s ? s : NONE;
}

void kn_status_table(const cJSON *items, bool all_namespaces, int64_t now_ms, ns_buf *out)
{
    kn_table t;
    size_t first = all_namespaces ? 0 : 1;
    kn_table_init(&t, 8 - first);
    static const char *const header[] = {"NAMESPACE", "NAME",     "PHASE",    "WEIGHT",
                                         "FAILED",    "REVISION", "PROMOTED", "AGE"};
    int rc = kn_table_add(&t, header + first);
    const cJSON *list = cJSON_IsArray(items) ? items : NULL, *item;
    cJSON_ArrayForEach(item, list)
    {
        if (rc)
            break;
        kn_canary c;
        kn_canary_read(item, &c);
        char weight[16], failed[32], age[KN_AGE_MAX];
        snprintf(weight, sizeof(weight), "%s", NONE);
        if (c.has_canary_weight)
            snprintf(weight, sizeof(weight), "%d", (int)c.canary_weight);
        snprintf(failed, sizeof(failed), "%s", NONE);
        if (c.phase)
            snprintf(failed, sizeof(failed), "%d/%d", (int)c.failed_checks, (int)c.threshold);
        kn_age_since(c.created_ms, now_ms, age, sizeof(age));
        const char *row[] = {or_none(c.namespace),
                             or_none(c.name),
                             or_none(c.phase),
                             weight,
                             failed,
                             or_none(c.current_revision),
                             or_none(c.promoted),
                             age};
        rc = kn_table_add(&t, row + first);
    }
    if (rc)
        out->failed = true;
    else
        kn_table_render(&t, NULL, 6, 3, out);
    kn_table_free(&t);
}

int64_t kn_event_time_ms(const cJSON *event)
{
    const char *candidates[] = {
        ns_json_str(event, "lastTimestamp"),
        ns_json_path_str(event, "series", "lastObservedTime", NULL),
        ns_json_str(event, "eventTime"),
        ns_json_str(event, "firstTimestamp"),
        ns_json_path_str(event, "metadata", "creationTimestamp", NULL),
    };
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
        int64_t ms = time_ms(candidates[i]);
        if (ms)
            return ms;
    }
    return 0;
}

typedef struct timed {
    int64_t ms;
    size_t index;
    const cJSON *event;
} timed;

static int timed_cmp(const void *a, const void *b)
{
    const timed *x = a, *y = b;
    if (x->ms != y->ms)
        return x->ms < y->ms ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

size_t kn_events_recent(const cJSON *items, const cJSON **out, size_t max)
{
    int n = cJSON_IsArray(items) ? cJSON_GetArraySize(items) : 0;
    if (n <= 0 || max == 0)
        return 0;
    timed *all = calloc((size_t)n, sizeof(*all));
    if (!all)
        return 0;
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, items)
    {
        all[i] = (timed){.ms = kn_event_time_ms(e), .index = i, .event = e};
        i++;
    }
    qsort(all, i, sizeof(*all), timed_cmp);
    size_t from = i > max ? i - max : 0;
    for (size_t k = from; k < i; k++)
        out[k - from] = all[k].event;
    free(all);
    return i - from;
}

static void field(ns_buf *out, const char *label, const char *value)
{
    ns_buf_printf(out, "%-18s%s\n", label, or_none(value));
}

static void conditions(const kn_canary *c, int64_t now_ms, ns_buf *out)
{
    if (cJSON_GetArraySize(c->conditions) == 0) {
        field(out, "Conditions:", NULL);
        return;
    }
    ns_buf_puts(out, "Conditions:\n");
    kn_table t;
    kn_table_init(&t, 5);
    static const char *const header[] = {"TYPE", "STATUS", "REASON", "AGE", "MESSAGE"};
    int rc = kn_table_add(&t, header);
    const cJSON *cond;
    cJSON_ArrayForEach(cond, c->conditions)
    {
        if (rc)
            break;
        char age[KN_AGE_MAX];
        kn_age_since(time_ms(ns_json_str(cond, "lastTransitionTime")), now_ms, age, sizeof(age));
        const char *row[] = {
            or_none(ns_json_str(cond, "type")), or_none(ns_json_str(cond, "status")),
            or_none(ns_json_str(cond, "reason")), age, ns_json_str(cond, "message")};
        rc = kn_table_add(&t, row);
    }
    if (rc)
        out->failed = true;
    else
        kn_table_render(&t, "  ", 0, 2, out);
    kn_table_free(&t);
}

static void events_table(const cJSON *events, int64_t now_ms, ns_buf *out)
{
    const cJSON *recent[KN_EVENTS_SHOWN];
    size_t n = kn_events_recent(events, recent, KN_EVENTS_SHOWN);
    if (n == 0) {
        field(out, "Events:", NULL);
        return;
    }
    ns_buf_puts(out, "Events:\n");
    kn_table t;
    kn_table_init(&t, 4);
    static const char *const header[] = {"AGE", "TYPE", "REASON", "MESSAGE"};
    int rc = kn_table_add(&t, header);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const cJSON *e = recent[i];
        char last[KN_AGE_MAX], age[3 * KN_AGE_MAX + 16];
        kn_age_since(kn_event_time_ms(e), now_ms, last, sizeof(last));
        int32_t count = 0;
        int64_t first_ms = time_ms(ns_json_str(e, "firstTimestamp"));
        if (get_i32(e, "count", &count) && count > 1 && first_ms) {
            char first[KN_AGE_MAX];
            kn_age_since(first_ms, now_ms, first, sizeof(first));
            snprintf(age, sizeof(age), "%s (x%d over %s)", last, (int)count, first);
        } else {
            snprintf(age, sizeof(age), "%s", last);
        }
        const char *row[] = {age, or_none(ns_json_str(e, "type")),
                             or_none(ns_json_str(e, "reason")), ns_json_str(e, "message")};
        rc = kn_table_add(&t, row);
    }
    if (rc)
        out->failed = true;
    else
        kn_table_render(&t, "  ", 0, 2, out);
    kn_table_free(&t);
}

void kn_status_detail(const kn_canary *c, const cJSON *events, const char *events_error,
                      int64_t now_ms, ns_buf *out)
{
    char line[512];
    field(out, "Name:", c->name);
    field(out, "Namespace:", c->namespace);
    snprintf(line, sizeof(line), "Deployment/%s", c->target ? c->target : "");
    field(out, "Target:", c->target ? line : NULL);
    field(out, "Strategy:", c->strategy);
    field(out, "Phase:", c->phase);

    if (c->has_canary_weight && c->has_desired_weight)
        snprintf(line, sizeof(line), "%d%% in effect, %d%% desired", (int)c->canary_weight,
                 (int)c->desired_weight);
    else if (c->has_canary_weight)
        snprintf(line, sizeof(line), "%d%% in effect", (int)c->canary_weight);
    else if (c->has_desired_weight)
        snprintf(line, sizeof(line), "%d%% desired", (int)c->desired_weight);
    else
        line[0] = '\0';
    field(out, "Weight:", line);

    snprintf(line, sizeof(line), "%d (threshold %d)", (int)c->failed_checks, (int)c->threshold);
    field(out, "Failed checks:", c->phase ? line : NULL);
    if (c->has_iterations && c->strategy && strcmp(c->strategy, "blueGreen") == 0) {
        snprintf(line, sizeof(line), "%d", (int)c->iterations);
        field(out, "Iterations:", line);
    }
    field(out, "Revision:", c->current_revision);
    field(out, "Last promoted:", c->last_promoted_revision);
    if (c->last_transition && c->last_transition_ms) {
        char age[KN_AGE_MAX];
        kn_age_since(c->last_transition_ms, now_ms, age, sizeof(age));
        snprintf(line, sizeof(line), "%s (%s ago)", c->last_transition, age);
        field(out, "Last transition:", line);
    } else {
        field(out, "Last transition:", c->last_transition);
    }
    field(out, "Message:", c->message);
    if (c->request) {
        snprintf(line, sizeof(line), "%.64s (not yet acted on by the operator)", c->request);
        field(out, "Pending request:", line);
    }
    if (c->suspend)
        field(out, "Suspended:", "yes: the operator moves nothing until spec.suspend is false");
    if (c->deleting)
        field(out, "Deleting:", "yes");
    conditions(c, now_ms, out);
    if (events_error)
        ns_buf_printf(out, "%-18s(cannot list them: %s)\n", "Events:", events_error);
    else
        events_table(events, now_ms, out);
}

/* test_canary_render.c - template revisions, the primary Deployment and the Services a
 * Canary owns (golden files), selector overlap, weights by replicas, pod labelling and
 * pod facts.
 *
 * testdata/canary/: reviews.canary.json and reviews.deployment.json (the Bookinfo
 * reviews Deployment as the API server returns it) render to primary.golden.json and
 * services.golden.json; pods.json is a pod list with one pod of each interesting kind.
 * NS_UPDATE_GOLDEN=1 rewrites the golden files (review the diff).
 */
#include "canary_render.h"
#include "selector.h"
#include "suites.h"

#include "json.h"

#include <stdlib.h>

#define REVISION "5b2c0e7a9d4f1e38"

typedef struct fixture {
    cJSON *canary, *target;
    canary_spec spec;
} fixture;

static void fixture_load(fixture *f)
{
    f->canary = ns_test_read_json("canary/reviews.canary.json");
    f->target = ns_test_read_json("canary/reviews.deployment.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->canary);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->target);
    ns_err err = {0};
    int rc = canary_spec_parse(f->canary, &f->spec, &err);
    if (rc)
        fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
}

static void fixture_free(fixture *f)
{
    cJSON_Delete(f->canary);
    cJSON_Delete(f->target);
}

static const cJSON *at(const cJSON *o, const char *path)
{
    /* "a.b.c"; a segment that is a number indexes an array */
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    char *save = NULL;
    for (char *seg = strtok_r(buf, ".", &save); seg && o; seg = strtok_r(NULL, ".", &save)) {
        if (cJSON_IsArray(o))
            o = cJSON_GetArrayItem(o, (int)strtol(seg, NULL, 10));
        else
            o = cJSON_GetObjectItemCaseSensitive(o, seg);
    }
    return o;
}

static const char *str_at(const cJSON *o, const char *path)
{
    return cJSON_GetStringValue(at(o, path));
}

/* ---- revision ---- */

static void test_revision_known_value(void)
{
    /* The expected hash is FNV-1a 64 of the canonical text
     * {"a":[true,null,"x",2.5],"b":{"c":1,"d":"\u0001"}}, computed outside this code
     * (Python: h ^= byte; h = h * 0x100000001b3 mod 2^64, from 0xcbf29ce484222325). */
    cJSON *t = cJSON_Parse("{\"b\":{\"d\":\"\\u0001\",\"c\":1.0},\"a\":[true,null,\"x\",2.5]}");
    char rev[17];
    NS_ASSERT_INT_EQ(canary_template_revision(t, rev, sizeof(rev)), 0);
    NS_ASSERT_STR_EQ(rev, "47a1380c1a0e63fe");
    char small[16];
    NS_ASSERT_INT_EQ(canary_template_revision(t, small, sizeof(small)), -EINVAL);
    cJSON_Delete(t);
}

/* A deep copy with every object's members in reverse order. */
static cJSON *reversed(const cJSON *v)
{
    if (cJSON_IsObject(v)) {
        cJSON *o = cJSON_CreateObject();
        const cJSON *c = v->child;
        while (c && c->next)
            c = c->next;
        for (; c; c = c == v->child ? NULL : c->prev)
            cJSON_AddItemToObject(o, c->string, reversed(c));
        return o;
    }
    if (cJSON_IsArray(v)) {
        cJSON *a = cJSON_CreateArray();
        const cJSON *c;
        cJSON_ArrayForEach(c, v) cJSON_AddItemToArray(a, reversed(c));
        return a;
    }
    return cJSON_Duplicate(v, false);
}

static void test_revision_stable(void)
{
    fixture f;
    fixture_load(&f);
    cJSON *tmpl = cJSON_GetObjectItem(cJSON_GetObjectItem(f.target, "spec"), "template");
    char a[17], b[17];
    NS_ASSERT_INT_EQ(canary_template_revision(tmpl, a, sizeof(a)), 0);
    NS_ASSERT_INT_EQ(strlen(a), 16);
    NS_ASSERT_INT_EQ(strspn(a, "0123456789abcdef"), 16);

    /* the same template, members in another order */
    cJSON *rev = reversed(tmpl);
    char *t1 = cJSON_PrintUnformatted(tmpl), *t2 = cJSON_PrintUnformatted(rev);
    CU_ASSERT_NOT_EQUAL(strcmp(t1, t2), 0); /* the texts do differ */
    cJSON_free(t1);
    cJSON_free(t2);
    NS_ASSERT_INT_EQ(canary_template_revision(rev, b, sizeof(b)), 0);
    NS_ASSERT_STR_EQ(b, a);
    cJSON_Delete(rev);

    /* numbers written another way: 9080 and 9.08e3 are one value */
    char *text = cJSON_PrintUnformatted(tmpl);
    char *p = strstr(text, "\"containerPort\":9080");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    size_t n = strlen(text);
    char *other = malloc(n + 8);
    size_t head = (size_t)(p - text) + strlen("\"containerPort\":");
    memcpy(other, text, head);
    memcpy(other + head, "9.08e3", 6);
    memcpy(other + head + 6, text + head + 4, n - head - 4 + 1);
    cJSON *renum = cJSON_Parse(other);
    CU_ASSERT_PTR_NOT_NULL_FATAL(renum);
    NS_ASSERT_INT_EQ(canary_template_revision(renum, b, sizeof(b)), 0);
    NS_ASSERT_STR_EQ(b, a);
    cJSON_Delete(renum);
    free(other);
    cJSON_free(text);

    /* real changes give another revision */
    cJSON *container = (cJSON *)at(tmpl, "spec.containers.0");
    cJSON_ReplaceItemInObjectCaseSensitive(
        container, "image",
        cJSON_CreateString("docker.io/istio/examples-bookinfo-reviews-v3:1.20.2"));
    NS_ASSERT_INT_EQ(canary_template_revision(tmpl, b, sizeof(b)), 0);
    CU_ASSERT_NOT_EQUAL(strcmp(a, b), 0);
    char c[17];
    /* arrays keep their order: swapping two env entries is a change */
    cJSON *env = cJSON_GetObjectItem(container, "env");
    cJSON *first = cJSON_DetachItemFromArray(env, 0);
    cJSON_AddItemToArray(env, first);
    NS_ASSERT_INT_EQ(canary_template_revision(tmpl, c, sizeof(c)), 0);
    CU_ASSERT_NOT_EQUAL(strcmp(b, c), 0);
    /* a key renamed with the same value */
    cJSON *labels = (cJSON *)at(tmpl, "metadata.labels");
    cJSON_DeleteItemFromObject(labels, "version");
    cJSON_AddStringToObject(labels, "versio", "v2");
    NS_ASSERT_INT_EQ(canary_template_revision(tmpl, b, sizeof(b)), 0);
    CU_ASSERT_NOT_EQUAL(strcmp(b, c), 0);
    /* a number against the same digits as a string */
    cJSON *port = (cJSON *)at(container, "ports.0");
    NS_ASSERT_INT_EQ(canary_template_revision(tmpl, c, sizeof(c)), 0);
    cJSON_ReplaceItemInObjectCaseSensitive(port, "containerPort", cJSON_CreateString("9080"));
    NS_ASSERT_INT_EQ(canary_template_revision(tmpl, b, sizeof(b)), 0);
    CU_ASSERT_NOT_EQUAL(strcmp(b, c), 0);
    fixture_free(&f);
}

/* ---- names and checks ---- */

static void test_names(void)
{
    fixture f;
    fixture_load(&f);
    canary_names n;
    canary_names_init(&f.spec, &n);
    NS_ASSERT_STR_EQ(n.primary, "reviews-primary");
    NS_ASSERT_STR_EQ(n.apex, "reviews");
    NS_ASSERT_STR_EQ(n.svc_primary, "reviews-primary");
    NS_ASSERT_STR_EQ(n.svc_canary, "reviews-canary");
    f.spec.service = "bookinfo-reviews";
    f.spec.target = "reviews.v2";
    canary_names_init(&f.spec, &n);
    NS_ASSERT_STR_EQ(n.primary, "reviews.v2-primary");
    NS_ASSERT_STR_EQ(n.apex, "bookinfo-reviews");
    NS_ASSERT_STR_EQ(n.svc_primary, "bookinfo-reviews-primary");
    NS_ASSERT_STR_EQ(n.svc_canary, "bookinfo-reviews-canary");
    fixture_free(&f);
}

static void test_target_check(void)
{
    static const struct {
        const char *spec; /* the target's spec */
        const char *want;
    } cases[] = {
        {"{\"selector\":{\"matchLabels\":{\"app\":\"reviews\"}},"
         "\"template\":{\"metadata\":{\"labels\":{\"app\":\"reviews\"}}}}",
         NULL},
        {"{\"selector\":{\"matchLabels\":{\"app\":\"reviews\"},\"matchExpressions\":[]},"
         "\"template\":{\"metadata\":{\"labels\":{\"app\":\"reviews\",\"v\":\"1\"}}}}",
         NULL},
        {"{\"selector\":{\"matchExpressions\":[{\"key\":\"app\",\"operator\":\"In\","
         "\"values\":[\"reviews\"]}]},\"template\":{\"metadata\":{\"labels\":{\"app\":"
         "\"reviews\"}}}}",
         "Deployment reviews selects its pods with matchExpressions"},
        {"{\"selector\":{\"matchLabels\":{\"app\":\"reviews\"},\"matchExpressions\":[{\"key\":"
         "\"v\",\"operator\":\"Exists\"}]},\"template\":{\"metadata\":{\"labels\":{\"app\":"
         "\"reviews\",\"v\":\"1\"}}}}",
         "matchExpressions"},
        {"{\"selector\":{},\"template\":{\"metadata\":{\"labels\":{\"app\":\"reviews\"}}}}",
         "Deployment reviews has no spec.selector.matchLabels"},
        {"{\"selector\":{\"matchLabels\":{}},\"template\":{\"metadata\":{\"labels\":{}}}}",
         "has no spec.selector.matchLabels"},
        {"{\"template\":{\"metadata\":{\"labels\":{\"app\":\"reviews\"}}}}",
         "has no spec.selector.matchLabels"},
        {"{\"selector\":{\"matchLabels\":{\"app\":"
         "\"reviews-with-a-label-value-of-fifty-six-characters-abcdef\"}},\"template\":{"
         "\"metadata\":{\"labels\":{\"app\":"
         "\"reviews-with-a-label-value-of-fifty-six-characters-abcdef\"}}}}",
         "is too long to take the suffix \"-primary\""},
        {"{\"selector\":{\"matchLabels\":{\"app\":\"reviews\"}},"
         "\"template\":{\"metadata\":{\"labels\":{\"app\":\"ratings\"}}}}",
         "its pod template does not carry the selector label app=reviews"},
        {"{\"selector\":{\"matchLabels\":{\"app\":\"reviews\"}},\"template\":{}}",
         "does not carry the selector label app=reviews"},
        {"{\"selector\":{\"matchLabels\":{\"app\":\"reviews\"}},\"template\":{\"metadata\":{"
         "\"labels\":{\"app\":\"reviews\",\"nutshell.io/apex\":\"reviews\"}}}}",
         "its pod template carries the label nutshell.io/apex"},
        {"{\"selector\":{\"matchLabels\":{\"nutshell.io/apex\":\"reviews\"}},\"template\":{"
         "\"metadata\":{\"labels\":{\"nutshell.io/apex\":\"reviews\"}}}}",
         "selects on nutshell.io/apex"},
        {"{\"selector\":{\"matchLabels\":{\"app\":1}},\"template\":{\"metadata\":{\"labels\":"
         "{\"app\":1}}}}",
         "spec.selector.matchLabels.app is not a string"},
    };
    fixture f;
    fixture_load(&f);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[1024];
        snprintf(text, sizeof(text), "{\"metadata\":{\"name\":\"reviews\"},\"spec\":%s}",
                 cases[i].spec);
        cJSON *t = cJSON_Parse(text);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        ns_err err = {0};
        int rc = canary_target_check(&f.spec, t, &err);
        bool ok = cases[i].want ? rc == -EINVAL && strstr(err.msg, cases[i].want) : rc == 0;
        if (!ok)
            fprintf(stderr, "\n  case %zu: rc %d \"%s\"\n", i, rc, err.msg);
        CU_ASSERT_TRUE(ok);
        /* rendering refuses the same targets with the same message */
        cJSON *out = NULL;
        ns_err err2 = {0};
        NS_ASSERT_INT_EQ(canary_render_primary(&f.spec, t, REVISION, 1, &out, &err2), rc);
        NS_ASSERT_STR_EQ(err2.msg, err.msg);
        cJSON_Delete(out);
        out = NULL;
        NS_ASSERT_INT_EQ(canary_render_services(&f.spec, t, &out, &err2), rc);
        cJSON_Delete(out);
        cJSON_Delete(t);
    }
    ns_err err = {0};
    NS_ASSERT_INT_EQ(canary_target_check(&f.spec, NULL, &err), -EINVAL);
    fixture_free(&f);
}

/* ---- rendering ---- */

static void expect_owner(const cJSON *o, const char *kind, const char *name)
{
    NS_ASSERT_STR_EQ(str_at(o, "kind"), kind);
    NS_ASSERT_STR_EQ(str_at(o, "metadata.name"), name);
    NS_ASSERT_STR_EQ(str_at(o, "metadata.namespace"), "bookinfo");
    const cJSON *labels = at(o, "metadata.labels");
    NS_ASSERT_STR_EQ(
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(labels, CANARY_LABEL_CANARY)),
        "reviews");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(
                         cJSON_GetObjectItemCaseSensitive(labels, "app.kubernetes.io/managed-by")),
                     "nutshell-operator");
    const cJSON *refs = at(o, "metadata.ownerReferences");
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(refs), 1);
    NS_ASSERT_STR_EQ(str_at(refs, "0.apiVersion"), "nutshell.io/v1alpha1");
    NS_ASSERT_STR_EQ(str_at(refs, "0.kind"), "Canary");
    NS_ASSERT_STR_EQ(str_at(refs, "0.name"), "reviews");
    NS_ASSERT_STR_EQ(str_at(refs, "0.uid"), "0c7e1f52-93a4-4b6e-8d21-7f3a9b0c4e15");
    CU_ASSERT_TRUE(cJSON_IsTrue(at(refs, "0.controller")));
    CU_ASSERT_TRUE(cJSON_IsTrue(at(refs, "0.blockOwnerDeletion")));
}

static void test_render_primary(void)
{
    fixture f;
    fixture_load(&f);
    char *before = cJSON_PrintUnformatted(f.target);
    cJSON *d = NULL;
    ns_err err = {0};
    int rc = canary_render_primary(&f.spec, f.target, REVISION, 3, &d, &err);
    if (rc)
        fprintf(stderr, "\n  %s\n", err.msg);
    NS_ASSERT_INT_EQ(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    ns_test_expect_json(d, "canary/primary.golden.json");

    expect_owner(d, "Deployment", "reviews-primary");
    NS_ASSERT_STR_EQ(str_at(d, "apiVersion"), "apps/v1");
    /* only our annotation: the target's describe the target */
    const cJSON *ann = at(d, "metadata.annotations");
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(ann), 1);
    NS_ASSERT_STR_EQ(
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ann, CANARY_ANN_REVISION)), REVISION);
    NS_ASSERT_INT_EQ(at(d, "spec.replicas")->valuedouble, 3);
    NS_ASSERT_STR_EQ(str_at(d, "spec.selector.matchLabels.app"), "reviews-primary");
    const cJSON *labels = at(d, "spec.template.metadata.labels");
    NS_ASSERT_STR_EQ(str_at(labels, "app"), "reviews-primary");
    NS_ASSERT_STR_EQ(str_at(labels, "version"), "v2"); /* not a selector key: kept */
    NS_ASSERT_STR_EQ(
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(labels, CANARY_LABEL_APEX)),
        "reviews");
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(labels, "pod-template-hash"));
    CU_ASSERT_PTR_NULL(at(d, "spec.template.metadata.creationTimestamp"));
    /* the template's own annotations are the pods', and stay */
    CU_ASSERT_PTR_NOT_NULL(cJSON_GetObjectItemCaseSensitive(
        at(d, "spec.template.metadata.annotations"), "kubectl.kubernetes.io/restartedAt"));
    /* the rest of the template and the rollout settings are the target's */
    CU_ASSERT_TRUE(
        cJSON_Compare(at(d, "spec.template.spec"), at(f.target, "spec.template.spec"), true));
    CU_ASSERT_TRUE(cJSON_Compare(at(d, "spec.strategy"), at(f.target, "spec.strategy"), true));
    NS_ASSERT_INT_EQ(at(d, "spec.minReadySeconds")->valuedouble, 5);
    NS_ASSERT_INT_EQ(at(d, "spec.revisionHistoryLimit")->valuedouble, 10);
    NS_ASSERT_INT_EQ(at(d, "spec.progressDeadlineSeconds")->valuedouble, 600);
    CU_ASSERT_PTR_NULL(at(d, "status"));
    CU_ASSERT_PTR_NULL(at(d, "metadata.uid"));
    CU_ASSERT_PTR_NULL(at(d, "metadata.resourceVersion"));
    CU_ASSERT_PTR_NULL(at(d, "metadata.managedFields"));
    /* the target's labels are not copied (tools that own it would claim the copy) */
    CU_ASSERT_PTR_NULL(
        cJSON_GetObjectItemCaseSensitive(at(d, "metadata.labels"), "app.kubernetes.io/instance"));
    cJSON_Delete(d);

    /* the target is not modified */
    char *after = cJSON_PrintUnformatted(f.target);
    NS_ASSERT_STR_EQ(after, before);
    cJSON_free(after);
    cJSON_free(before);

    /* a sparse target: no rollout settings to copy, replicas 0 */
    cJSON *t = cJSON_Parse("{\"spec\":{\"selector\":{\"matchLabels\":{\"app\":\"reviews\","
                           "\"track\":\"stable\"}},\"template\":{\"metadata\":{\"labels\":{"
                           "\"app\":\"reviews\",\"track\":\"stable\"}},\"spec\":{}}}}");
    NS_ASSERT_INT_EQ(canary_render_primary(&f.spec, t, REVISION, 0, &d, &err), 0);
    NS_ASSERT_INT_EQ(at(d, "spec.replicas")->valuedouble, 0);
    NS_ASSERT_STR_EQ(str_at(d, "spec.selector.matchLabels.track"), "stable-primary");
    NS_ASSERT_STR_EQ(str_at(d, "spec.template.metadata.labels.track"), "stable-primary");
    CU_ASSERT_PTR_NULL(at(d, "spec.strategy"));
    CU_ASSERT_PTR_NULL(at(d, "spec.minReadySeconds"));
    cJSON_Delete(d);
    cJSON_Delete(t);
    fixture_free(&f);
}

static void test_render_services(void)
{
    fixture f;
    fixture_load(&f);
    cJSON *list = NULL;
    ns_err err = {0};
    int rc = canary_render_services(&f.spec, f.target, &list, &err);
    if (rc)
        fprintf(stderr, "\n  %s\n", err.msg);
    NS_ASSERT_INT_EQ(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(list);
    ns_test_expect_json(list, "canary/services.golden.json");
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(list), 3);
    static const char *const names[] = {"reviews", "reviews-primary", "reviews-canary"};
    for (int i = 0; i < 3; i++) {
        const cJSON *s = cJSON_GetArrayItem(list, i);
        expect_owner(s, "Service", names[i]);
        NS_ASSERT_STR_EQ(str_at(s, "apiVersion"), "v1");
        NS_ASSERT_STR_EQ(str_at(s, "spec.type"), "ClusterIP");
        const cJSON *ports = at(s, "spec.ports");
        NS_ASSERT_INT_EQ(cJSON_GetArraySize(ports), 1);
        NS_ASSERT_STR_EQ(str_at(ports, "0.name"), "http");
        NS_ASSERT_INT_EQ(at(ports, "0.port")->valuedouble, 9080);
        NS_ASSERT_STR_EQ(str_at(ports, "0.targetPort"), "http");
        NS_ASSERT_STR_EQ(str_at(ports, "0.protocol"), "TCP");
    }
    const cJSON *apex_sel = at(cJSON_GetArrayItem(list, 0), "spec.selector");
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(apex_sel), 1);
    NS_ASSERT_STR_EQ(
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(apex_sel, CANARY_LABEL_APEX)),
        "reviews");
    NS_ASSERT_STR_EQ(str_at(cJSON_GetArrayItem(list, 1), "spec.selector.app"), "reviews-primary");
    NS_ASSERT_STR_EQ(str_at(cJSON_GetArrayItem(list, 2), "spec.selector.app"), "reviews");
    cJSON_Delete(list);

    /* targetPort: the port by default, a number as a number */
    f.spec.target_port = NULL;
    f.spec.port = 80;
    f.spec.port_name = "web";
    f.spec.service = "bookinfo-reviews";
    NS_ASSERT_INT_EQ(canary_render_services(&f.spec, f.target, &list, &err), 0);
    const cJSON *s = cJSON_GetArrayItem(list, 1);
    NS_ASSERT_STR_EQ(str_at(s, "metadata.name"), "bookinfo-reviews-primary");
    CU_ASSERT_TRUE(cJSON_IsNumber(at(s, "spec.ports.0.targetPort")));
    NS_ASSERT_INT_EQ(at(s, "spec.ports.0.targetPort")->valuedouble, 80);
    NS_ASSERT_STR_EQ(str_at(s, "spec.ports.0.name"), "web");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                         at(cJSON_GetArrayItem(list, 0), "spec.selector"), CANARY_LABEL_APEX)),
                     "bookinfo-reviews");
    cJSON_Delete(list);
    cJSON *num = cJSON_CreateNumber(9080);
    f.spec.target_port = num;
    NS_ASSERT_INT_EQ(canary_render_services(&f.spec, f.target, &list, &err), 0);
    s = cJSON_GetArrayItem(list, 2);
    CU_ASSERT_TRUE(cJSON_IsNumber(at(s, "spec.ports.0.targetPort")));
    NS_ASSERT_INT_EQ(at(s, "spec.ports.0.targetPort")->valuedouble, 9080);
    NS_ASSERT_INT_EQ(at(s, "spec.ports.0.port")->valuedouble, 80);
    cJSON_Delete(list);
    cJSON_Delete(num);
    fixture_free(&f);
}

static bool selects(const cJSON *label_selector, const cJSON *labels)
{
    op_selector sel;
    ns_err err = {0};
    CU_ASSERT_EQUAL_FATAL(op_selector_from_json(label_selector, &sel, &err), 0);
    bool m = op_selector_matches(&sel, labels);
    op_selector_free(&sel);
    return m;
}

/* A selector given as a Service's spec.selector (a plain map). */
static bool service_selects(const cJSON *service, const cJSON *labels)
{
    cJSON *ls = cJSON_CreateObject();
    cJSON_AddItemToObject(ls, "matchLabels", cJSON_Duplicate(at(service, "spec.selector"), true));
    bool m = selects(ls, labels);
    cJSON_Delete(ls);
    return m;
}

static void overlap_case(const canary_spec *spec, const cJSON *target, const cJSON *pods)
{
    cJSON *d = NULL, *svcs = NULL;
    CU_ASSERT_EQUAL_FATAL(canary_render_primary(spec, target, REVISION, 2, &d, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(canary_render_services(spec, target, &svcs, NULL), 0);
    const cJSON *tsel = at(target, "spec.selector"), *psel = at(d, "spec.selector");
    const cJSON *tlabels = at(target, "spec.template.metadata.labels");
    const cJSON *plabels = at(d, "spec.template.metadata.labels");
    /* each Deployment owns its own pods (the API server insists) ... */
    CU_ASSERT_TRUE(selects(tsel, tlabels));
    CU_ASSERT_TRUE(selects(psel, plabels));
    /* ... and never the other's */
    CU_ASSERT_FALSE(selects(psel, tlabels));
    CU_ASSERT_FALSE(selects(tsel, plabels));
    const cJSON *pod;
    cJSON_ArrayForEach(pod, pods)
    {
        const cJSON *labels = at(pod, "metadata.labels");
        if (selects(tsel, labels))
            CU_ASSERT_FALSE(selects(psel, labels));
    }
    /* the Services: apex takes primary pods (and labelled canary pods), -primary only
     * the primary's, -canary only the target's */
    const cJSON *apex = cJSON_GetArrayItem(svcs, 0), *sp = cJSON_GetArrayItem(svcs, 1),
                *sc = cJSON_GetArrayItem(svcs, 2);
    CU_ASSERT_TRUE(service_selects(apex, plabels));
    CU_ASSERT_FALSE(service_selects(apex, tlabels));
    CU_ASSERT_TRUE(service_selects(sp, plabels));
    CU_ASSERT_FALSE(service_selects(sp, tlabels));
    CU_ASSERT_TRUE(service_selects(sc, tlabels));
    CU_ASSERT_FALSE(service_selects(sc, plabels));
    /* a canary pod given the apex label joins the apex and stays out of -primary */
    cJSON *labelled = cJSON_Duplicate(tlabels, true);
    cJSON_AddStringToObject(labelled, CANARY_LABEL_APEX, spec->service);
    CU_ASSERT_TRUE(service_selects(apex, labelled));
    CU_ASSERT_FALSE(service_selects(sp, labelled));
    CU_ASSERT_FALSE(selects(psel, labelled));
    cJSON_Delete(labelled);
    cJSON_Delete(d);
    cJSON_Delete(svcs);
}

static void test_selectors_disjoint(void)
{
    fixture f;
    fixture_load(&f);
    cJSON *pods = ns_test_read_json("canary/pods.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(pods);
    overlap_case(&f.spec, f.target, pods);
    /* two selector labels, one of them also rewritten in a label the primary's pods
     * carry: still disjoint both ways */
    cJSON *t = cJSON_Parse("{\"spec\":{\"selector\":{\"matchLabels\":{\"app\":\"reviews\","
                           "\"version\":\"v1\"}},\"template\":{\"metadata\":{\"labels\":{"
                           "\"app\":\"reviews\",\"version\":\"v1\",\"tier\":\"backend\"}},"
                           "\"spec\":{}}}}");
    overlap_case(&f.spec, t, pods);
    cJSON_Delete(t);
    cJSON_Delete(pods);
    fixture_free(&f);
}

/* ---- weights ---- */

static void test_replicas_for_weight(void)
{
    static const struct {
        int32_t primary, w, want;
    } cases[] = {
        {4, 0, 0},      {4, -5, 0},                  /* no weight, no pods */
        {4, 100, 4},    {4, 150, 4},                 /* the switch: as many as the primary */
        {0, 100, 1},    {0, 10, 1},                  /* a primary of 0 still gets one canary */
        {9, 10, 1},                                  /* 9 * 10 / 90 = 1 */
        {10, 10, 1},                                 /* 1.11 */
        {10, 20, 3},                                 /* 2.5 rounds up */
        {10, 30, 4},                                 /* 4.29 */
        {10, 50, 10},                                /* equal halves */
        {3, 50, 3},     {1, 50, 1},       {1, 1, 1}, /* 0.01, at least one */
        {2, 33, 1},                                  /* 0.985 */
        {2, 34, 1},                                  /* 1.03 */
        {3, 60, 5},                                  /* 4.5 rounds up */
        {4, 80, 16},                                 /* 16 = 4 * P, the cap exactly */
        {4, 90, 16},                                 /* 36, capped */
        {4, 99, 16},                                 /* 396, capped */
        {1, 90, 4},                                  /* 9, capped at 4 */
        {100, 50, 100}, {1000, 75, 3000}, {1000000, 50, 1000000}, /* no overflow */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int32_t got = canary_replicas_for_weight(cases[i].primary, cases[i].w);
        if (got != cases[i].want)
            fprintf(stderr, "\n  P %d, w %d: %d, want %d\n", (int)cases[i].primary, (int)cases[i].w,
                    (int)got, (int)cases[i].want);
        NS_ASSERT_INT_EQ(got, cases[i].want);
    }
    /* Below the cap, one replica more or less would pass the weight asked for: the
     * weight in effect is bracketed by those of c - 1 and c + 1 (rounding is in replicas,
     * so it is not always the nearest weight: P 2, w 42 gives 1 replica, 33%, where 2
     * would give 50%). More weight never means fewer replicas. */
    for (int32_t p = 1; p <= 10; p++) {
        int32_t prev = 0;
        for (int32_t w = 1; w <= 80; w++) {
            int32_t c = canary_replicas_for_weight(p, w);
            int32_t below = canary_effective_weight(c - 1, p);
            int32_t above = canary_effective_weight(c + 1, p);
            bool bracketed = (c == 1 || below <= w) && w <= above && c >= prev;
            if (!bracketed)
                fprintf(stderr, "\n  P %d w %d: c %d (after %d)\n", (int)p, (int)w, (int)c,
                        (int)prev);
            CU_ASSERT_TRUE(bracketed);
            prev = c;
        }
    }
}

static void test_effective_weight(void)
{
    static const struct {
        int32_t canary, primary, want;
    } cases[] = {
        {0, 0, 0},  {0, 5, 0},    {5, 0, 100}, {1, 1, 50}, {1, 9, 10},
        {1, 3, 25}, {1, 2, 33},   {2, 1, 67},  {1, 7, 13}, /* 12.5 rounds up */
        {3, 7, 30}, {1, 199, 1},  {1, 201, 0},             /* 0.498 */
        {-1, 4, 0}, {4, -1, 100},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int32_t got = canary_effective_weight(cases[i].canary, cases[i].primary);
        if (got != cases[i].want)
            fprintf(stderr, "\n  %d/%d: %d\n", (int)cases[i].canary, (int)cases[i].primary,
                    (int)got);
        NS_ASSERT_INT_EQ(got, cases[i].want);
    }
}

/* ---- pods ---- */

static void expect_names(const cJSON *names, const char *const *want, size_t n)
{
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(names), n);
    for (size_t i = 0; i < n; i++)
        NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetArrayItem(names, (int)i)), want[i]);
}

static void test_pods_to_label(void)
{
    cJSON *pods = ns_test_read_json("canary/pods.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(pods);
    /* a: in; b: out; c: in (not ready, still labelled); d: being deleted; e: another
     * apex's; f: no labels at all */
    cJSON *out = cJSON_CreateArray();
    NS_ASSERT_INT_EQ(canary_pods_to_label(pods, "reviews", true, out), 3);
    static const char *const add[] = {"reviews-7d9f8b6c5-b2b2b", "reviews-7d9f8b6c5-e5e5e",
                                      "reviews-7d9f8b6c5-f6f6f"};
    expect_names(out, add, 3);
    cJSON_Delete(out);

    out = cJSON_CreateArray();
    NS_ASSERT_INT_EQ(canary_pods_to_label(pods, "reviews", false, out), 2);
    static const char *const drop[] = {"reviews-7d9f8b6c5-a1a1a", "reviews-7d9f8b6c5-c3c3c"};
    expect_names(out, drop, 2);
    cJSON_Delete(out);

    /* appends to what is there */
    out = cJSON_CreateArray();
    cJSON_AddItemToArray(out, cJSON_CreateString("earlier"));
    NS_ASSERT_INT_EQ(canary_pods_to_label(pods, "ratings", false, out), 1);
    static const char *const appended[] = {"earlier", "reviews-7d9f8b6c5-e5e5e"};
    expect_names(out, appended, 2);
    cJSON_Delete(out);

    /* nothing to do: every pod already right */
    out = cJSON_CreateArray();
    NS_ASSERT_INT_EQ(canary_pods_to_label(pods, "details", false, out), 0);
    NS_ASSERT_INT_EQ(canary_pods_to_label(NULL, "reviews", true, out), 0);
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(out), 0);
    cJSON_Delete(out);
    cJSON_Delete(pods);
}

static void test_pod_stats(void)
{
    cJSON *pods = ns_test_read_json("canary/pods.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(pods);
    canary_pod_stats st;
    memset(&st, 0x5a, sizeof(st));
    canary_pod_stats_of(pods, "reviews", &st);
    NS_ASSERT_INT_EQ(st.pods, 5);          /* d is being deleted */
    NS_ASSERT_INT_EQ(st.ready, 3);         /* a, b, e */
    NS_ASSERT_INT_EQ(st.ready_in_apex, 1); /* a; c is labelled but not ready */
    /* a 1 + c 2 + e's sidecar 1; not e's plain init container (3), not d (5) */
    NS_ASSERT_INT_EQ(st.restarts, 4);

    canary_pod_stats_of(pods, "ratings", &st);
    NS_ASSERT_INT_EQ(st.ready_in_apex, 1); /* e */
    canary_pod_stats_of(NULL, "reviews", &st);
    NS_ASSERT_INT_EQ(st.pods + st.ready + st.ready_in_apex + st.restarts, 0);
    cJSON_Delete(pods);
}

const ns_test canary_render_tests[] = {
    {"revision: a known value", test_revision_known_value},
    {"revision: stable and sensitive", test_revision_stable},
    {"names", test_names},
    {"target check", test_target_check},
    {"primary Deployment (golden)", test_render_primary},
    {"Services (golden)", test_render_services},
    {"selectors never overlap", test_selectors_disjoint},
    {"replicas for a weight", test_replicas_for_weight},
    {"weight in effect", test_effective_weight},
    {"pods to label", test_pods_to_label},
    {"pod stats", test_pod_stats},
    {NULL, NULL},
};

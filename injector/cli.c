/* cli.c - manual injection of manifest files. */
#include "cli.h"

#include "inject.h"
#include "json.h"
#include "jsonpatch.h"
#include "log.h"
#include "files.h"
#include "yamljson.h"

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MANIFEST_MAX (64u * 1024u * 1024u)

/* Workload kinds whose pods come from spec.template. */
static const char *const template_kinds[] = {"Deployment", "StatefulSet", "DaemonSet",
                                             "ReplicaSet", "Job",         "ReplicationController"};

/* The JSON Pointer of the pod inside an object of `kind`, or NULL for kinds without one. */
static const char *pod_pointer(const char *kind)
{
    if (!kind)
        return NULL;
    if (strcmp(kind, "Pod") == 0)
        return "";
    for (size_t i = 0; i < sizeof(template_kinds) / sizeof(*template_kinds); i++)
        if (strcmp(kind, template_kinds[i]) == 0)
            return "/spec/template";
    if (strcmp(kind, "CronJob") == 0)
        return "/spec/jobTemplate/spec/template";
    return NULL;
}

static cJSON *pod_at(const cJSON *obj, const char *kind)
{
    if (strcmp(kind, "Pod") == 0)
        return (cJSON *)obj;
    if (strcmp(kind, "CronJob") == 0)
        return ns_json_path(obj, "spec", "jobTemplate", "spec", "template", NULL);
    return ns_json_path(obj, "spec", "template", NULL);
}

/* Re-roots each operation's path under `prefix`, so that a patch computed for a pod
 * template applies to the workload that holds it. */
static int prefix_paths(cJSON *ops, const char *prefix)
{
    cJSON *op;
    cJSON_ArrayForEach(op, ops)
    {
        const char *path = ns_json_str(op, "path");
        ns_buf b;
        ns_buf_init(&b);
        ns_buf_puts(&b, prefix);
        ns_buf_puts(&b, path ? path : "");
        int rc = b.failed ? -ENOMEM : ns_json_set_str(op, "path", ns_buf_cstr(&b));
        ns_buf_free(&b);
        if (rc)
            return rc;
    }
    return 0;
}

static void note(ns_buf *notes, const char *what, const cJSON *obj, const char *msg)
{
    const char *kind = ns_json_str(obj, "kind");
    const char *name = ns_json_path_str(obj, "metadata", "name", NULL);
    ns_buf_printf(notes, "%s %s/%s: %s\n", what, kind ? kind : "?", name ? name : "?", msg);
}

static int inject_each(const inj_config *cfg, cJSON *array, const char *namespace, ns_buf *notes,
                       ns_err *err, int doc);

/* Injects the object *objp, which may be replaced by a new tree: the caller must own it
 * (not hold it linked in a parent). */
static int inject_object(const inj_config *cfg, cJSON **objp, const char *namespace, ns_buf *notes,
                         ns_err *err, int doc)
{
    cJSON *obj = *objp;
    const char *kind = ns_json_str(obj, "kind");
    if (kind && strcmp(kind, "List") == 0) {
        cJSON *items = ns_json_get(obj, "items");
        return cJSON_IsArray(items) ? inject_each(cfg, items, namespace, notes, err, doc) : 0;
    }
    const char *prefix = pod_pointer(kind);
    if (!prefix)
        return 0;
    const char *ns = ns_json_path_str(obj, "metadata", "namespace", NULL);
    if (!ns)
        ns = namespace;

    inj_result r;
    if (inj_pod(cfg, pod_at(obj, kind), ns, &r) != 0)
        return ns_errorf(err, -ENOMEM, "out of memory");
    int rc = 0;
    const cJSON *w;
    cJSON_ArrayForEach(w, r.warnings)
    {
        note(notes, "warning:", obj, w->valuestring);
    }
    if (r.outcome == INJ_REJECTED) {
        const char *name = ns_json_path_str(obj, "metadata", "name", NULL);
        rc = ns_errorf(err, -EINVAL, "document %d (%s %s): %s", doc, kind, name ? name : "?",
                       r.reason);
    } else if (r.outcome == INJ_SKIPPED) {
        note(notes, "skipped", obj, r.reason);
    } else {
        rc = prefix_paths(r.patch, prefix);
        if (rc == 0)
            rc = ns_patch_apply(objp, r.patch, err);
    }
    inj_result_free(&r);
    return rc;
}

/* Injects every element of `array`, each detached while it is worked on and put back in
 * its place. `doc` numbers the elements for messages when 0 (top-level documents). */
static int inject_each(const inj_config *cfg, cJSON *array, const char *namespace, ns_buf *notes,
                       ns_err *err, int doc)
{
    int i = 0, rc = 0;
    for (cJSON *item = array->child; item && rc == 0; i++) {
        cJSON *next = item->next;
        cJSON *obj = cJSON_DetachItemViaPointer(array, item);
        rc = inject_object(cfg, &obj, namespace, notes, err, doc ? doc : i + 1);
        if (ns_json_array_insert(array, i, obj) != 0) {
            cJSON_Delete(obj);
            rc = ns_errorf(err, -ENOMEM, "out of memory");
        }
        item = next;
    }
    return rc;
}

/* True if the text's first meaningful byte opens a JSON value. */
static bool looks_like_json(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)text[i]))
            return text[i] == '{' || text[i] == '[';
    return false;
}

/* One document prints as itself; several as a v1 List, as `kubectl get -o json` does, so
 * that the output is one JSON value any tool can read. */
static int emit_json(cJSON *docs, ns_buf *out)
{
    cJSON *list = NULL, *value = docs->child;
    if (cJSON_GetArraySize(docs) != 1) {
        list = cJSON_CreateObject();
        if (!list || !cJSON_AddStringToObject(list, "apiVersion", "v1") ||
            !cJSON_AddStringToObject(list, "kind", "List") ||
            !cJSON_AddItemReferenceToObject(list, "items", docs)) {
            cJSON_Delete(list);
            return -ENOMEM;
        }
        value = list;
    }
    char *s = value ? cJSON_Print(value) : NULL;
    cJSON_Delete(list); /* holds only a reference to docs */
    if (!s)
        return -ENOMEM;
    ns_buf_puts(out, s);
    ns_buf_putc(out, '\n');
    cJSON_free(s);
    return 0;
}

int inj_manifests(const inj_config *cfg, const char *text, size_t len, const char *namespace,
                  bool force_json, ns_buf *out, ns_buf *notes, ns_err *err)
{
    bool json = looks_like_json(text, len);
    cJSON *docs = NULL;
    int rc;
    if (json) {
        cJSON *one;
        rc = ns_json_parse(text, len, &one, err);
        if (rc)
            return rc;
        docs = cJSON_CreateArray();
        if (!docs || !cJSON_AddItemToArray(docs, one)) {
            cJSON_Delete(one);
            cJSON_Delete(docs);
            return -ENOMEM;
        }
    } else {
        rc = ns_yaml_parse(text, len, &docs, err);
        if (rc)
            return rc;
    }

    rc = inject_each(cfg, docs, namespace, notes, err, 0);
    if (rc == 0) {
        if (json || force_json) {
            rc = emit_json(docs, out);
        } else {
            rc = ns_yaml_emit_all(docs, out, err);
        }
        if (rc == 0 && out->failed)
            rc = -ENOMEM;
    }
    cJSON_Delete(docs);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: nutshell-injector inject -f FILE [-o json|yaml] [--config FILE] "
               "[--namespace NS]\n"
               "\n"
               "Prints FILE (YAML or JSON; '-' for standard input) with the Nutshell sidecar\n"
               "injected into every Pod and pod template (Deployment, StatefulSet, DaemonSet,\n"
               "ReplicaSet, Job, CronJob, List). Other objects pass through unchanged.\n"
               "\n"
               "  -f, --filename FILE   manifest to inject\n"
               "  -o, --output FORMAT   json or yaml (default: the input's format)\n"
               "      --config FILE     injector config (default: built-in defaults)\n"
               "  -n, --namespace NS    namespace for objects that name none\n");
}

int inj_cli_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"filename", required_argument, NULL, 'f'}, {"output", required_argument, NULL, 'o'},
        {"config", required_argument, NULL, 'c'},   {"namespace", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    const char *file = NULL, *output = NULL, *config = NULL, *namespace = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:o:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            file = optarg;
            break;
        case 'o':
            output = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'n':
            namespace
            = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!file || optind != argc || (output && strcmp(output, "json") && strcmp(output, "yaml"))) {
        usage(stderr);
        return 2;
    }

    inj_config cfg;
    ns_err err = {0};
    if (inj_config_load(&cfg, config, &err) != 0) {
        fprintf(stderr, "nutshell-injector: %s\n", err.msg);
        return 1;
    }
    char *text;
    size_t len;
    int rc =
        ns_read_file(strcmp(file, "-") == 0 ? "/dev/stdin" : file, MANIFEST_MAX, &text, &len, &err);
    if (rc) {
        fprintf(stderr, "nutshell-injector: %s\n", err.msg);
        return 1;
    }
    ns_buf out, notes;
    ns_buf_init(&out);
    ns_buf_init(&notes);
    bool json_out = output && strcmp(output, "json") == 0;
    rc = inj_manifests(&cfg, text, len, namespace, json_out, &out, &notes, &err);
    free(text);
    fputs(ns_buf_cstr(&notes), stderr);
    if (rc == 0 && output && strcmp(output, "yaml") == 0 && looks_like_json(out.data, out.len)) {
        /* JSON in, YAML asked for: convert the JSON we produced. */
        cJSON *docs;
        ns_buf y;
        ns_buf_init(&y);
        rc = ns_yaml_parse(out.data, out.len, &docs, &err);
        if (rc == 0) {
            rc = ns_yaml_emit_all(docs, &y, &err);
            cJSON_Delete(docs);
        }
        ns_buf_free(&out);
        out = y;
    }
    if (rc == 0)
        fwrite(out.data ? out.data : "", 1, out.len, stdout);
    else
        fprintf(stderr, "nutshell-injector: %s\n", err.msg[0] ? err.msg : strerror(-rc));
    ns_buf_free(&out);
    ns_buf_free(&notes);
    return rc == 0 ? 0 : 1;
}

/* test_cli.c - manual injection of manifests (`nutshell-injector inject -f`). */
#include "cli.h"
#include "json.h"
#include "suites.h"
#include "yamljson.h"

#include <stdlib.h>

static int run(const char *text, bool force_json, ns_buf *out, ns_buf *notes, ns_err *err)
{
    inj_config cfg;
    inj_config_defaults(&cfg);
    ns_buf_init(out);
    ns_buf_init(notes);
    return inj_manifests(&cfg, text, strlen(text), "default", force_json, out, notes, err);
}

static void test_yaml_deployment_and_service(void)
{
    char *in = ns_test_read("cli/bookinfo-reviews.yaml");
    CU_ASSERT_PTR_NOT_NULL_FATAL(in);
    ns_buf out, notes;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(run(in, false, &out, &notes, &err), 0);
    cJSON *docs = NULL;
    NS_ASSERT_INT_EQ(ns_yaml_parse(out.data, out.len, &docs, &err), 0);
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(docs), 2);
    const cJSON *svc = cJSON_GetArrayItem(docs, 0), *dep = cJSON_GetArrayItem(docs, 1);
    /* the Service is untouched; the Deployment's template is injected */
    cJSON *orig = NULL;
    NS_ASSERT_INT_EQ(ns_yaml_parse(in, strlen(in), &orig, &err), 0);
    CU_ASSERT_TRUE(cJSON_Compare(svc, cJSON_GetArrayItem(orig, 0), true));
    const cJSON *tmpl = ns_json_path(dep, "spec", "template", NULL);
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(ns_json_path(tmpl, "spec", "containers", NULL)), 2);
    NS_ASSERT_STR_EQ(
        ns_json_str(cJSON_GetArrayItem(ns_json_path(tmpl, "spec", "initContainers", NULL), 0),
                    "name"),
        "nutshell-init");
    CU_ASSERT_PTR_NOT_NULL(
        ns_json_path(tmpl, "metadata", "annotations", "nutshell.io/status", NULL));
    /* the rest of the Deployment is as it was */
    NS_ASSERT_INT_EQ(ns_json_path(dep, "spec", "replicas", NULL)->valueint, 1);
    /* output is YAML, like the input */
    CU_ASSERT_TRUE(out.len > 0 && out.data[0] != '{');

    /* running it again changes nothing (already injected) */
    ns_buf out2, notes2;
    NS_ASSERT_INT_EQ(run(out.data, false, &out2, &notes2, &err), 0);
    cJSON *docs2 = NULL;
    NS_ASSERT_INT_EQ(ns_yaml_parse(out2.data, out2.len, &docs2, &err), 0);
    CU_ASSERT_TRUE(cJSON_Compare(docs, docs2, true));
    CU_ASSERT_PTR_NOT_NULL(strstr(ns_buf_cstr(&notes2), "already injected"));

    cJSON_Delete(docs);
    cJSON_Delete(docs2);
    cJSON_Delete(orig);
    ns_buf_free(&out);
    ns_buf_free(&notes);
    ns_buf_free(&out2);
    ns_buf_free(&notes2);
    free(in);
}

static void test_json_list_and_cronjob(void)
{
    const char *in =
        "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":["
        "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"},"
        "\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"a\"}]}},"
        "{\"apiVersion\":\"batch/v1\",\"kind\":\"CronJob\",\"metadata\":{\"name\":\"c\"},"
        "\"spec\":{\"schedule\":\"* * * * *\",\"jobTemplate\":{\"spec\":{\"template\":{\"spec\":{"
        "\"restartPolicy\":\"Never\",\"containers\":[{\"name\":\"j\",\"image\":\"j\"}]}}}}}},"
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"cm\"}}]}";
    ns_buf out, notes;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(run(in, false, &out, &notes, &err), 0);
    CU_ASSERT_EQUAL(out.data[0], '{');
    cJSON *list = cJSON_Parse(out.data);
    const cJSON *items = ns_json_get(list, "items");
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(items), 3);
    NS_ASSERT_INT_EQ(
        cJSON_GetArraySize(ns_json_path(cJSON_GetArrayItem(items, 0), "spec", "containers", NULL)),
        2);
    const cJSON *job = ns_json_path(cJSON_GetArrayItem(items, 1), "spec", "jobTemplate", "spec",
                                    "template", "spec", NULL);
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(ns_json_get(job, "containers")), 2);
    NS_ASSERT_STR_EQ(ns_json_path_str(cJSON_GetArrayItem(items, 2), "metadata", "name", NULL),
                     "cm");
    cJSON_Delete(list);
    ns_buf_free(&out);
    ns_buf_free(&notes);
}

static void test_refusal_names_the_document(void)
{
    const char *in = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n"
                     "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  annotations:\n"
                     "    proxy.nutshell.io/log-level: loud\n"
                     "spec:\n  containers:\n  - name: a\n    image: a\n";
    ns_buf out, notes;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(run(in, false, &out, &notes, &err), -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "document 2 (Pod bad): annotation proxy.nutshell.io/log-level: "
                              "\"loud\" is not one of debug, info, warn, error");
    ns_buf_free(&out);
    ns_buf_free(&notes);

    NS_ASSERT_INT_EQ(run("key: [unclosed", false, &out, &notes, &err) < 0, 1);
    CU_ASSERT_TRUE(err.msg[0] != '\0');
    ns_buf_free(&out);
    ns_buf_free(&notes);
}

const ns_test cli_tests[] = {
    {"YAML deployment and service", test_yaml_deployment_and_service},
    {"JSON list and cronjob", test_json_list_and_cronjob},
    {"refusal names the document", test_refusal_names_the_document},
    {NULL, NULL},
};

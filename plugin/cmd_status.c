/* cmd_status.c - status [NAME]: list or get Canaries, and a Canary's Events. */
#include "commands.h"

#include "canary_view.h"

#include <stdio.h>
#include <time.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int print_json(const cJSON *obj)
{
    char *text = cJSON_Print(obj);
    if (!text) {
        fprintf(stderr, "Error: out of memory\n");
        return KN_EXIT_ERROR;
    }
    puts(text);
    cJSON_free(text);
    return KN_EXIT_OK;
}

static int print_buf(ns_buf *b)
{
    int rc = KN_EXIT_OK;
    if (b->failed) {
        fprintf(stderr, "Error: out of memory\n");
        rc = KN_EXIT_ERROR;
    } else {
        fputs(ns_buf_cstr(b), stdout);
    }
    ns_buf_free(b);
    return rc;
}

static int status_list(ns_kube *k, const kn_cli *cli, const char *namespace)
{
    const char *ns = cli->all_namespaces ? NULL : namespace;
    ns_kube_ref ref = kn_canary_ref(ns, NULL);
    ns_kube_status st;
    cJSON *list = NULL;
    int rc = ns_kube_list(k, &ref, NULL, &list, &st);
    if (rc)
        return kn_report_api_error(k, rc, &st, NULL, ns);
    if (cli->json) {
        rc = print_json(list);
    } else if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(list, "items")) == 0) {
        if (ns)
            fprintf(stderr, "No resources found in %s namespace.\n", ns);
        else
            fprintf(stderr, "No resources found\n");
        rc = KN_EXIT_OK;
    } else {
        ns_buf out;
        ns_buf_init(&out);
        kn_status_table(cJSON_GetObjectItemCaseSensitive(list, "items"), cli->all_namespaces,
                        now_ms(), &out);
        rc = print_buf(&out);
    }
    cJSON_Delete(list);
    return rc;
}

static int status_one(ns_kube *k, const kn_cli *cli, const char *namespace)
{
    ns_kube_ref ref = kn_canary_ref(namespace, cli->name);
    ns_kube_status st;
    cJSON *obj = NULL, *events = NULL;
    int rc = ns_kube_get(k, &ref, &obj, &st);
    if (rc)
        return kn_report_api_error(k, rc, &st, cli->name, namespace);
    if (cli->json) {
        rc = print_json(obj);
        cJSON_Delete(obj);
        return rc;
    }
    kn_canary c;
    kn_canary_read(obj, &c);

    /* The Events of this Canary, not of an earlier one of the same name (kubectl
     * describe selects by uid too). */
    ns_buf sel;
    ns_buf_init(&sel);
    ns_buf_printf(&sel, "involvedObject.kind=Canary,involvedObject.name=%s", cli->name);
    ns_buf_printf(&sel, ",involvedObject.namespace=%s", namespace);
    if (c.uid)
        ns_buf_printf(&sel, ",involvedObject.uid=%s", c.uid);
    ns_kube_list_opts opts = {.field_selector = ns_buf_cstr(&sel)};
    ns_kube_ref events_ref = {.version = "v1", .resource = "events", .namespace = namespace};
    ns_kube_status est;
    int erc = ns_kube_list(k, &events_ref, &opts, &events, &est);
    ns_buf_free(&sel);

    ns_buf out;
    ns_buf_init(&out);
    kn_status_detail(&c, cJSON_GetObjectItemCaseSensitive(events, "items"),
                     erc ? (est.message[0] ? est.message : "no answer") : NULL, now_ms(), &out);
    rc = print_buf(&out);
    cJSON_Delete(events);
    cJSON_Delete(obj);
    return rc;
}

int kn_run_status(ns_kube *k, const kn_cli *cli, const char *namespace)
{
    return cli->name ? status_one(k, cli, namespace) : status_list(k, cli, namespace);
}

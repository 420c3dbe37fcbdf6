/* cmd_request.c - promote, abort, retry: read the Canary, check, patch the annotation. */
#include "commands.h"

#include "apierror.h"
#include "canary_view.h"
#include "request.h"

#include <stdio.h>
#include <string.h>

/* A status write between our read and our patch makes the patch conflict; each retry
 * re-reads and re-checks. The operator writes status at most every few seconds per
 * Canary, so a handful of tries is plenty. */
#define REQUEST_TRIES 5

ns_kube_ref kn_canary_ref(const char *namespace, const char *name)
{
    return (ns_kube_ref){.group = "nutshell.io",
                         .version = "v1alpha1",
                         .resource = "canaries",
                         .namespace = namespace,
                         .name = name};
}

int kn_report_api_error(ns_kube *k, int rc, const ns_kube_status *st, const char *name,
                        const char *namespace)
{
    ns_buf msg;
    ns_buf_init(&msg);
    const ns_kube_config *cfg = ns_kube_get_config(k);
    kn_api_error(rc, st, name, namespace, cfg ? cfg->server : NULL, &msg);
    fprintf(stderr, "Error: %s\n", ns_buf_cstr(&msg));
    ns_buf_free(&msg);
    return KN_EXIT_ERROR;
}

/* One read-check-patch round. Returns an exit code, or -EAGAIN when the Canary changed
 * under us and the round should be run again. */
static int request_once(ns_kube *k, const kn_cli *cli, const char *namespace)
{
    kn_verb verb = kn_cli_verb(cli->cmd);
    ns_kube_ref ref = kn_canary_ref(namespace, cli->name);
    ns_kube_status st;
    cJSON *obj = NULL, *patch = NULL;
    int rc = ns_kube_get(k, &ref, &obj, &st);
    if (rc)
        return kn_report_api_error(k, rc, &st, cli->name, namespace);

    kn_canary c;
    kn_canary_read(obj, &c);
    ns_err err = {0};
    ns_buf line;
    ns_buf_init(&line);
    if (!cli->force && kn_request_check(verb, &c, &err) != 0) {
        fprintf(stderr, "Error: %s\n", err.msg);
        rc = KN_EXIT_ERROR;
        goto out;
    }
    if (c.request && strcmp(c.request, kn_verb_name(verb)) == 0) {
        /* Already asked and not yet acted on: writing it again changes nothing. */
        kn_request_summary(verb, &c, cli->force, &line);
        fputs(ns_buf_cstr(&line), stdout);
        rc = KN_EXIT_OK;
        goto out;
    }
    /* Forced requests go to whatever version is there; checked ones only to the version
     * that was checked. */
    patch = kn_request_patch(verb, cli->force ? NULL : c.resource_version);
    if (!patch) {
        fprintf(stderr, "Error: out of memory\n");
        rc = KN_EXIT_ERROR;
        goto out;
    }
    rc = ns_kube_patch(k, &ref, NS_KUBE_PATCH_MERGE, patch, NULL, NULL, &st);
    if (rc == -EBUSY && ns_kube_is_conflict(&st)) {
        rc = -EAGAIN;
        goto out;
    }
    if (rc) {
        rc = kn_report_api_error(k, rc, &st, cli->name, namespace);
        goto out;
    }
    kn_request_summary(verb, &c, cli->force, &line);
    fputs(ns_buf_cstr(&line), stdout);
    if (c.suspend)
        fprintf(stderr,
                "Warning: canary \"%s\" is suspended (spec.suspend); the operator acts "
                "on the request once it is resumed\n",
                c.name ? c.name : cli->name);
    rc = KN_EXIT_OK;
out:
    ns_buf_free(&line);
    cJSON_Delete(patch);
    cJSON_Delete(obj);
    return rc;
}

int kn_run_request(ns_kube *k, const kn_cli *cli, const char *namespace)
{
    for (int i = 0; i < REQUEST_TRIES; i++) {
        int rc = request_once(k, cli, namespace);
        if (rc != -EAGAIN)
            return rc;
    }
    fprintf(stderr,
            "Error: canary \"%s\" kept changing while the request was checked; "
            "try again\n",
            cli->name);
    return KN_EXIT_ERROR;
}

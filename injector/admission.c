/* admission.c - admission.k8s.io/v1 AdmissionReview handling for Pod CREATE. */
#include "admission.h"

#include "inject.h"
#include "json.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REVIEW_API_VERSION "admission.k8s.io/v1"

const char *inj_review_result_name(inj_review_result r)
{
    static const char *const names[] = {"injected", "skipped", "rejected", "invalid"};
    return names[r];
}

/* base64 of `in`; caller frees. */
static char *base64(const char *in, size_t len)
{
    size_t out_len = 4 * ((len + 2) / 3) + 1;
    char *out = malloc(out_len);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)len);
    return out;
}

/* Builds {"apiVersion","kind","response":{...}} around `response` (taken). */
static int finish(inj_review_reply *reply, int http_status, cJSON *response)
{
    cJSON *root = cJSON_CreateObject();
    if (!root || !response || !cJSON_AddStringToObject(root, "apiVersion", REVIEW_API_VERSION) ||
        !cJSON_AddStringToObject(root, "kind", "AdmissionReview") ||
        !cJSON_AddItemToObject(root, "response", response)) {
        cJSON_Delete(root);
        cJSON_Delete(response);
        return -ENOMEM;
    }
    reply->body = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!reply->body)
        return -ENOMEM;
    reply->body_len = strlen(reply->body);
    reply->http_status = http_status;
    return 0;
}

static cJSON *new_response(const char *uid, bool allowed)
{
    cJSON *r = cJSON_CreateObject();
    if (r && (!cJSON_AddStringToObject(r, "uid", uid) ||
              !cJSON_AddBoolToObject(r, "allowed", allowed))) {
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

/* allowed:false with a Status the API server shows to the user verbatim. */
static int deny(inj_review_reply *reply, int http_status, inj_review_result result, int code,
                const char *reason, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int deny(inj_review_reply *reply, int http_status, inj_review_result result, int code,
                const char *reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reply->message, sizeof(reply->message), fmt, ap);
    va_end(ap);
    reply->result = result;
    cJSON *resp = new_response(reply->uid, false);
    cJSON *status = resp ? cJSON_AddObjectToObject(resp, "status") : NULL;
    if (!status || !cJSON_AddNumberToObject(status, "code", code) ||
        !cJSON_AddStringToObject(status, "reason", reason) ||
        !cJSON_AddStringToObject(status, "message", reply->message)) {
        cJSON_Delete(resp);
        return -ENOMEM;
    }
    return finish(reply, http_status, resp);
}

static int allow(inj_review_reply *reply, inj_review_result result, cJSON *patch, cJSON *warnings)
{
    reply->result = result;
    cJSON *resp = new_response(reply->uid, true);
    if (!resp)
        return -ENOMEM;
    if (patch) {
        char *text = cJSON_PrintUnformatted(patch);
        char *b64 = text ? base64(text, strlen(text)) : NULL;
        free(text);
        if (!b64 || !cJSON_AddStringToObject(resp, "patchType", "JSONPatch") ||
            !cJSON_AddStringToObject(resp, "patch", b64)) {
            free(b64);
            cJSON_Delete(resp);
            return -ENOMEM;
        }
        free(b64);
    }
    if (warnings && cJSON_GetArraySize(warnings) > 0) {
        cJSON *w = cJSON_Duplicate(warnings, true);
        if (!w || !cJSON_AddItemToObject(resp, "warnings", w)) {
            cJSON_Delete(w);
            cJSON_Delete(resp);
            return -ENOMEM;
        }
    }
    return finish(reply, 200, resp);
}

static int allow_with_warning(inj_review_reply *reply, const char *why)
{
    snprintf(reply->message, sizeof(reply->message), "%s", why);
    cJSON *w = cJSON_CreateArray();
    cJSON *s = cJSON_CreateString(why);
    if (!w || !s || !cJSON_AddItemToArray(w, s)) {
        cJSON_Delete(w);
        cJSON_Delete(s);
        return -ENOMEM;
    }
    int rc = allow(reply, INJ_REVIEW_SKIPPED, NULL, w);
    cJSON_Delete(w);
    return rc;
}

static void describe_pod(inj_review_reply *reply, const cJSON *req, const cJSON *pod)
{
    const char *ns = ns_json_str(req, "namespace");
    const char *name = ns_json_str(req, "name");
    if (!name || !*name)
        name = ns_json_path_str(pod, "metadata", "name", NULL);
    if (!name || !*name)
        name = ns_json_path_str(pod, "metadata", "generateName", NULL);
    snprintf(reply->pod, sizeof(reply->pod), "%.100s/%.140s", ns ? ns : "", name ? name : "");
}

int inj_review(const inj_config *cfg, const char *body, size_t len, inj_review_reply *reply)
{
    *reply = (inj_review_reply){0};
    cJSON *root = NULL;
    ns_err err = {0};
    int rc;

    if (len > INJ_MAX_BODY) {
        rc = deny(reply, 413, INJ_REVIEW_INVALID, 413, "RequestEntityTooLarge",
                  "nutshell-injector: AdmissionReview larger than %u bytes", INJ_MAX_BODY);
        goto out;
    }
    if (ns_json_parse(body, len, &root, &err) != 0) {
        rc = deny(reply, 400, INJ_REVIEW_INVALID, 400, "BadRequest",
                  "nutshell-injector: request is not JSON (%s)", err.msg);
        goto out;
    }
    const char *api = ns_json_str(root, "apiVersion");
    const char *kind = ns_json_str(root, "kind");
    const cJSON *req = ns_json_get(root, "request");
    const char *uid = ns_json_str(req, "uid");
    if (uid)
        snprintf(reply->uid, sizeof(reply->uid), "%s", uid);
    if (!kind || strcmp(kind, "AdmissionReview") != 0) {
        rc = deny(reply, 400, INJ_REVIEW_INVALID, 400, "BadRequest",
                  "nutshell-injector: expected kind AdmissionReview, got %.64s",
                  kind ? kind : "none");
        goto out;
    }
    if (!api || strcmp(api, REVIEW_API_VERSION) != 0) {
        rc = deny(
            reply, 400, INJ_REVIEW_INVALID, 400, "BadRequest",
            "nutshell-injector: unsupported AdmissionReview version %.64s (only " REVIEW_API_VERSION
            ")",
            api ? api : "none");
        goto out;
    }
    if (!cJSON_IsObject(req) || !uid || !*uid) {
        rc = deny(reply, 400, INJ_REVIEW_INVALID, 400, "BadRequest",
                  "nutshell-injector: AdmissionReview has no request or no request.uid");
        goto out;
    }

    const cJSON *pod = ns_json_get(req, "object");
    describe_pod(reply, req, pod);
    const char *group = ns_json_path_str(req, "kind", "group", NULL);
    const char *rkind = ns_json_path_str(req, "kind", "kind", NULL);
    const char *op = ns_json_str(req, "operation");
    const char *sub = ns_json_str(req, "subResource");

    /* A misconfigured webhook must not block the cluster: objects we do not mutate are
     * allowed untouched, with a warning that points at the configuration. */
    if (!rkind || strcmp(rkind, "Pod") != 0 || (group && *group) || (sub && *sub)) {
        char why[256];
        snprintf(why, sizeof(why),
                 "nutshell-injector only mutates Pods; %.64s%s%.64s passed through unchanged",
                 group && *group ? group : "", group && *group ? "/" : "",
                 rkind ? rkind : "unknown kind");
        rc = allow_with_warning(reply, why);
        goto out;
    }
    if (!op || strcmp(op, "CREATE") != 0) {
        snprintf(reply->message, sizeof(reply->message), "operation %s is not injected",
                 op ? op : "none");
        rc = allow(reply, INJ_REVIEW_SKIPPED, NULL, NULL);
        goto out;
    }
    if (!cJSON_IsObject(pod)) {
        rc = deny(reply, 200, INJ_REVIEW_REJECTED, 400, "BadRequest",
                  "nutshell-injector: request.object is missing or not a Pod");
        goto out;
    }

    const char *ns = ns_json_str(req, "namespace");
    if (!ns || !*ns)
        ns = ns_json_path_str(pod, "metadata", "namespace", NULL);
    inj_result result;
    rc = inj_pod(cfg, pod, ns, &result);
    if (rc)
        goto out;
    switch (result.outcome) {
    case INJ_PATCHED:
        rc = allow(reply, INJ_REVIEW_INJECTED, result.patch, result.warnings);
        break;
    case INJ_SKIPPED:
        snprintf(reply->message, sizeof(reply->message), "%s", result.reason);
        rc = allow(reply, INJ_REVIEW_SKIPPED, NULL, result.warnings);
        break;
    case INJ_REJECTED:
        rc = deny(reply, 200, INJ_REVIEW_REJECTED, 400, "BadRequest", "nutshell-injector: %s",
                  result.reason);
        break;
    }
    inj_result_free(&result);
out:
    cJSON_Delete(root);
    if (rc) {
        free(reply->body);
        reply->body = NULL;
    }
    return rc;
}

/* admission.c - admission.k8s.io/v1 AdmissionReview handling for Pod CREATE. */
#include "admission.h"

#include "arena.h"
#include "buf.h"
#include "inject.h"
#include "json.h"

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

/* Replies are written as text straight into a malloc'd buffer: building a cJSON tree
 * around a 4 KB base64 string only to print it again would double the work. */

static void begin_reply(ns_buf *b, const char *uid, bool allowed)
{
    ns_buf_puts(b, "{\"apiVersion\":\"" REVIEW_API_VERSION "\",\"kind\":\"AdmissionReview\","
                   "\"response\":{\"uid\":");
    ns_buf_json_string(b, uid);
    ns_buf_puts(b, allowed ? ",\"allowed\":true" : ",\"allowed\":false");
}

static int end_reply(inj_review_reply *reply, ns_buf *b, int http_status)
{
    ns_buf_puts(b, "}}");
    reply->body_len = b->len;
    reply->body = ns_buf_take(b);
    if (!reply->body)
        return -ENOMEM;
    reply->http_status = http_status;
    return 0;
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
    ns_buf b;
    ns_buf_init(&b);
    begin_reply(&b, reply->uid, false);
    ns_buf_printf(&b, ",\"status\":{\"code\":%d,\"reason\":", code);
    ns_buf_json_string(&b, reason);
    ns_buf_puts(&b, ",\"message\":");
    ns_buf_json_string(&b, reply->message);
    ns_buf_putc(&b, '}');
    return end_reply(reply, &b, http_status);
}

static int allow(inj_review_reply *reply, inj_review_result result, const cJSON *patch,
                 const cJSON *warnings)
{
    reply->result = result;
    ns_buf b;
    ns_buf_init(&b);
    begin_reply(&b, reply->uid, true);
    if (patch) {
        /* One pre-sized print instead of cJSON's grow-and-copy. */
        char *text = cJSON_PrintBuffered(patch, 8192, false);
        if (!text) {
            ns_buf_free(&b);
            return -ENOMEM;
        }
        ns_buf_puts(&b, ",\"patchType\":\"JSONPatch\",\"patch\":\"");
        ns_buf_base64(&b, text, strlen(text));
        ns_buf_putc(&b, '"');
        cJSON_free(text);
    }
    if (cJSON_GetArraySize(warnings) > 0) {
        ns_buf_puts(&b, ",\"warnings\":[");
        const cJSON *w;
        cJSON_ArrayForEach(w, warnings)
        {
            if (w != warnings->child)
                ns_buf_putc(&b, ',');
            ns_buf_json_string(&b, cJSON_IsString(w) ? w->valuestring : "");
        }
        ns_buf_putc(&b, ']');
    }
    return end_reply(reply, &b, 200);
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

static int review(const inj_config *cfg, const char *body, size_t len, inj_review_reply *reply)
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

int inj_review(const inj_config *cfg, const char *body, size_t len, inj_review_reply *reply)
{
    /* Every cJSON node of the review lives in this thread's arena and goes at once;
     * the reply body is an ns_buf (malloc) and outlives it. */
    ns_arena_begin();
    int rc = review(cfg, body, len, reply);
    ns_arena_end();
    return rc;
}

/* canary_checks.c - PromQL queries and webhooks of a Canary's analysis: the judgements
 * first (pure), then the libcurl calls that feed them. */
#include "canary_checks.h"

#include "buf.h"
#include "json.h"
#include "kube.h"
#include "log.h"

#include <ctype.h>
#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef NUTSHELL_VERSION
#define NUTSHELL_VERSION "dev"
#endif

/* The contract's 10 s for a query; Prometheus is told the same so that it gives up on
 * its side too instead of evaluating for nobody. */
#define METRIC_TIMEOUT_MS   10000L
#define METRIC_TIMEOUT_TEXT "10s"
/* A connection that takes longer than this is not coming (webhooks with a shorter
 * timeout get theirs). */
#define CONNECT_TIMEOUT_MS 5000L
/* One number's answer is a few hundred bytes; anything near this is the wrong query. */
#define METRIC_ANSWER_MAX ((size_t)1 << 20)
/* Of a webhook's answer only the start is kept, to quote in a failure message. */
#define WEBHOOK_SNIPPET_MAX 200

/* ------------------------------------------------------------------ pure */

/* Length of a "{{ interval }}" placeholder at p, or 0 if there is none. */
static size_t placeholder_len(const char *p)
{
    static const char word[] = "interval";
    const char *q = p;
    if (q[0] != '{' || q[1] != '{')
        return 0;
    q += 2;
    while (*q == ' ' || *q == '\t')
        q++;
    if (strncmp(q, word, sizeof(word) - 1) != 0)
        return 0;
    q += sizeof(word) - 1;
    while (*q == ' ' || *q == '\t')
        q++;
    if (q[0] != '}' || q[1] != '}')
        return 0;
    return (size_t)(q + 2 - p);
}

char *canary_metric_query(const canary_metric *m)
{
    ns_buf b;
    ns_buf_init(&b);
    const char *q = m->query ? m->query : "";
    const char *run = q;
    for (const char *p = q; *p; p++) {
        size_t n = placeholder_len(p);
        if (n == 0)
            continue;
        ns_buf_append(&b, run, (size_t)(p - run));
        ns_buf_puts(&b, m->interval_text);
        p += n - 1;
        run = p + 1;
    }
    ns_buf_puts(&b, run);
    return ns_buf_take(&b);
}

/* The API writes sample values as strings: decimal, "NaN", "+Inf", "-Inf". */
static int sample_value(const cJSON *sample, double *out, ns_err *err)
{
    const cJSON *v = cJSON_IsArray(sample) ? cJSON_GetArrayItem(sample, 1) : NULL;
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return ns_errorf(err, -EINVAL, "Prometheus's answer has a sample without a value");
    char *end = NULL;
    double d = strtod(v->valuestring, &end);
    /* strtod skips leading white space; the API never writes any */
    if (*end != '\0' || isspace((unsigned char)v->valuestring[0]))
        return ns_errorf(err, -EINVAL, "Prometheus's answer has the value \"%.64s\", not a number",
                         v->valuestring);
    *out = d;
    return 0;
}

int canary_prometheus_value(const char *body, size_t len, double *out, ns_err *err)
{
    cJSON *doc = NULL;
    if (!body || len == 0 || ns_json_parse(body, len, &doc, NULL) != 0)
        return ns_errorf(err, -EINVAL, "Prometheus's answer is not JSON");
    int rc;
    const char *status = ns_json_str(doc, "status");
    const char *type = ns_json_path_str(doc, "data", "resultType", NULL);
    const cJSON *result = ns_json_path(doc, "data", "result", NULL);
    if (!status || strcmp(status, "success") != 0) {
        const char *etype = ns_json_str(doc, "errorType");
        const char *emsg = ns_json_str(doc, "error");
        if (status && strcmp(status, "error") == 0)
            rc = ns_errorf(err, -EINVAL, "Prometheus refused the query (%s): %s",
                           etype ? etype : "error", emsg ? emsg : "no reason given");
        else
            rc = ns_errorf(err, -EINVAL, "Prometheus's answer has no status \"success\"");
    } else if (!type) {
        rc = ns_errorf(err, -EINVAL, "Prometheus's answer has no data.resultType");
    } else if (strcmp(type, "scalar") == 0) {
        rc = sample_value(result, out, err);
    } else if (strcmp(type, "vector") == 0) {
        int n = cJSON_IsArray(result) ? cJSON_GetArraySize(result) : -1;
        if (n == 0)
            rc = ns_errorf(err, -ENODATA, "the query returned no data");
        else if (n == 1)
            rc = sample_value(ns_json_get(cJSON_GetArrayItem(result, 0), "value"), out, err);
        else if (n > 1)
            rc = ns_errorf(err, -EINVAL,
                           "the query returned %d series; it must return one (aggregate it, "
                           "e.g. with sum())",
                           n);
        else
            rc = ns_errorf(err, -EINVAL, "Prometheus's answer has no data.result list");
    } else {
        rc = ns_errorf(err, -EINVAL,
                       "the query returned a %.16s; it must return a single number (a scalar "
                       "or one sample)",
                       type);
    }
    cJSON_Delete(doc);
    return rc;
}

bool canary_metric_in_range(const canary_metric *m, double v)
{
    if (isnan(v))
        return false;
    if (m->has_min && v < m->min)
        return false;
    if (m->has_max && v > m->max)
        return false;
    return true;
}

char *canary_webhook_payload(const canary_spec *spec, const canary_status *st,
                             const canary_webhook *wh)
{
    ns_buf b;
    ns_buf_init(&b);
    ns_buf_puts(&b, "{\"name\":");
    ns_buf_json_string(&b, spec->name ? spec->name : "");
    ns_buf_puts(&b, ",\"namespace\":");
    ns_buf_json_string(&b, spec->namespace ? spec->namespace : "");
    ns_buf_puts(&b, ",\"phase\":");
    ns_buf_json_string(&b, canary_phase_name(st->phase));
    ns_buf_puts(&b, ",\"type\":");
    ns_buf_json_string(&b, canary_hook_type_name(wh->type));
    ns_buf_puts(&b, ",\"revision\":");
    ns_buf_json_string(&b, st->current_revision);
    ns_buf_printf(&b, ",\"canaryWeight\":%d,\"metadata\":{", (int)st->canary_weight);
    bool first = true;
    const cJSON *md = cJSON_IsObject(wh->metadata) ? wh->metadata : NULL;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, md)
    {
        /* The schema allows strings only; anything else was not written through it. */
        if (!cJSON_IsString(kv) || !kv->string)
            continue;
        if (!first)
            ns_buf_putc(&b, ',');
        first = false;
        ns_buf_json_string(&b, kv->string);
        ns_buf_putc(&b, ':');
        ns_buf_json_string(&b, kv->valuestring);
    }
    ns_buf_puts(&b, "}}");
    return ns_buf_take(&b);
}

/* "(min 1, max 5)", "(min 1)", "(max 5)". */
static void range_text(const canary_metric *m, char *buf, size_t len)
{
    if (m->has_min && m->has_max)
        snprintf(buf, len, "(min %g, max %g)", m->min, m->max);
    else if (m->has_min)
        snprintf(buf, len, "(min %g)", m->min);
    else if (m->has_max)
        snprintf(buf, len, "(max %g)", m->max);
    else
        snprintf(buf, len, "(no bounds)");
}

/* ------------------------------------------------------------------ HTTP */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* A body being received, kept up to `max` bytes; the rest is dropped, or ends the
 * transfer if `stop_when_full`. */
typedef struct sink {
    ns_buf buf;
    size_t max;
    bool stop_when_full;
    bool truncated;
} sink;

static size_t sink_write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    sink *s = ud;
    size_t n = size * nmemb;
    size_t room = s->buf.len < s->max ? s->max - s->buf.len : 0;
    if (n > room) {
        s->truncated = true;
        if (s->stop_when_full)
            return 0;
    }
    ns_buf_append(&s->buf, data, n < room ? n : room);
    return s->buf.failed ? 0 : n;
}

typedef struct http_result {
    long status;   /* 0: no answer */
    CURLcode code; /* CURLE_OK: an answer came */
    char error[CURL_ERROR_SIZE];
} http_result;

/* POSTs `body` to `url` and waits at most timeout_ms for the whole exchange. */
static void http_post(const char *url, const char *content_type, const char *body, long timeout_ms,
                      sink *in, http_result *res)
{
    *res = (http_result){.code = CURLE_FAILED_INIT};
    pthread_once(&curl_once, curl_init_once);
    CURL *h = curl_easy_init();
    char ct[128];
    snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
    struct curl_slist *headers = curl_slist_append(NULL, ct);
    struct curl_slist *more =
        headers ? curl_slist_append(headers, "Accept: application/json") : NULL;
    /* Without this curl waits a second for "100 Continue" before sending a larger
     * payload, out of the receiver's timeout. */
    if (more)
        more = curl_slist_append(more, "Expect:");
    if (!h || !more) {
        snprintf(res->error, sizeof(res->error), "out of memory");
        curl_slist_free_all(headers);
        curl_easy_cleanup(h);
        return;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, res->error);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "nutshell-operator/" NUTSHELL_VERSION);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     timeout_ms < CONNECT_TIMEOUT_MS ? timeout_ms : CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, in);
    res->code = curl_easy_perform(h);
    if (res->code == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
    if (!res->error[0])
        snprintf(res->error, sizeof(res->error), "%s", curl_easy_strerror(res->code));
    curl_easy_cleanup(h);
    curl_slist_free_all(headers);
}

/* `url` as messages may show it: without user:password@ and without the query and
 * fragment, where tokens tend to be. */
static void url_for_message(const char *url, char *out, size_t len)
{
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    size_t auth_len = strcspn(auth, "/?#");
    const char *at = memchr(auth, '@', auth_len);
    const char *host = at ? at + 1 : auth;
    snprintf(out, len, "%.*s%.*s", (int)(auth - url), url, (int)strcspn(host, "?#"), host);
}

/* Printable start of a body, for messages. */
static void snippet_of(const ns_buf *b, char *out, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < b->len && n + 1 < len; i++) {
        char c = b->data[i];
        out[n++] = c >= 0x20 && c < 0x7f ? c : ' ';
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

static bool is_2xx(long status)
{
    return status >= 200 && status < 300;
}

/* ------------------------------------------------------------------ metrics */

/* Whether a non-2xx answer is Prometheus's own error document (worth quoting) rather
 * than, say, a proxy's error page. */
static bool is_prometheus_error(const ns_buf *b)
{
    cJSON *doc = NULL;
    if (b->len == 0 || ns_json_parse(b->data, b->len, &doc, NULL) != 0)
        return false;
    const char *status = ns_json_str(doc, "status");
    bool yes = status && strcmp(status, "error") == 0;
    cJSON_Delete(doc);
    return yes;
}

/* Judges one finished query; true if the metric passed, else the reason is in msg. */
/* A check's message: truncated to fit, which is what a status message wants (the
 * compiler's truncation warning does not apply to a vsnprintf). */
static void say(char *msg, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *msg, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, len, fmt, ap);
    va_end(ap);
}

static bool judge_metric(const canary_metric *m, const char *query, const http_result *res,
                         const sink *in, char *msg, size_t msglen)
{
    char addr[256];
    url_for_message(m->address ? m->address : "", addr, sizeof(addr));
    double v = NAN;
    ns_err err = {0};
    if (in->truncated) {
        say(msg, msglen, "metric \"%s\": Prometheus's answer is larger than %zu bytes", m->name,
            METRIC_ANSWER_MAX);
    } else if (res->code == CURLE_OPERATION_TIMEDOUT) {
        say(msg, msglen, "metric \"%s\": Prometheus at %s did not answer within %ld ms", m->name,
            addr, METRIC_TIMEOUT_MS);
    } else if (res->code != CURLE_OK) {
        say(msg, msglen, "metric \"%s\": cannot query Prometheus at %s: %s", m->name, addr,
            res->error);
    } else if (!is_2xx(res->status) && !is_prometheus_error(&in->buf)) {
        char snip[WEBHOOK_SNIPPET_MAX];
        snippet_of(&in->buf, snip, sizeof(snip));
        say(msg, msglen, "metric \"%s\": Prometheus at %s answered HTTP %ld%s%s", m->name, addr,
            res->status, snip[0] ? ": " : "", snip);
    } else if (canary_prometheus_value(in->buf.data, in->buf.len, &v, &err) != 0) {
        say(msg, msglen, "metric \"%s\": %s (query: %s)", m->name, err.msg, query);
    } else if (!canary_metric_in_range(m, v)) {
        char range[96];
        range_text(m, range, sizeof(range));
        say(msg, msglen, "metric \"%s\" is %g, outside its thresholdRange %s", m->name, v, range);
    } else {
        return true;
    }
    return false;
}

/* Runs one metric; true if it passed, else the reason is in msg. */
static bool run_metric(const canary_metric *m, char *msg, size_t msglen)
{
    char *query = canary_metric_query(m);
    ns_buf url, form;
    ns_buf_init(&url);
    ns_buf_init(&form);
    sink in = {.max = METRIC_ANSWER_MAX, .stop_when_full = true};
    ns_buf_init(&in.buf);
    /* The address is a base URL, perhaps with a path prefix and a trailing slash. */
    const char *addr = m->address ? m->address : "";
    size_t alen = strlen(addr);
    while (alen > 0 && addr[alen - 1] == '/')
        alen--;
    ns_buf_append(&url, addr, alen);
    ns_buf_puts(&url, "/api/v1/query");
    /* POSTed as a form: a long query does not fit every proxy's URL limit. */
    ns_buf_puts(&form, "query=");
    ns_kube_escape(&form, query ? query : "");
    ns_buf_puts(&form, "&timeout=" METRIC_TIMEOUT_TEXT);
    bool ok = false;
    if (!query || url.failed || form.failed) {
        say(msg, msglen, "metric \"%s\": out of memory", m->name);
    } else {
        http_result res;
        http_post(ns_buf_cstr(&url), "application/x-www-form-urlencoded", ns_buf_cstr(&form),
                  METRIC_TIMEOUT_MS, &in, &res);
        ok = judge_metric(m, query, &res, &in, msg, msglen);
        if (ok)
            ns_log(NS_LOG_DEBUG, "metric in range", "metric", m->name, "query", query, NULL);
    }
    ns_buf_free(&in.buf);
    free(query);
    ns_buf_free(&url);
    ns_buf_free(&form);
    return ok;
}

/* ------------------------------------------------------------------ webhooks */

/* Calls one webhook; true on 2xx, else the reason is in msg. */
static bool call_webhook(const canary_spec *spec, const canary_status *st, const canary_webhook *wh,
                         char *msg, size_t msglen)
{
    const char *type = canary_hook_type_name(wh->type);
    char *payload = canary_webhook_payload(spec, st, wh);
    if (!payload) {
        say(msg, msglen, "webhook \"%s\" (%s): out of memory", wh->name, type);
        return false;
    }
    long timeout = wh->timeout_ms > 0 ? (long)wh->timeout_ms : 10000L;
    sink in = {.max = WEBHOOK_SNIPPET_MAX};
    ns_buf_init(&in.buf);
    http_result res;
    http_post(wh->url, "application/json", payload, timeout, &in, &res);
    char url[256];
    url_for_message(wh->url ? wh->url : "", url, sizeof(url));
    bool ok = false;
    if (res.code == CURLE_OPERATION_TIMEDOUT) {
        say(msg, msglen, "webhook \"%s\" (%s): no answer from %s within %ld ms", wh->name, type,
            url, timeout);
    } else if (res.code != CURLE_OK) {
        say(msg, msglen, "webhook \"%s\" (%s): cannot call %s: %s", wh->name, type, url, res.error);
    } else if (!is_2xx(res.status)) {
        char snip[WEBHOOK_SNIPPET_MAX];
        snippet_of(&in.buf, snip, sizeof(snip));
        say(msg, msglen, "webhook \"%s\" (%s) answered HTTP %ld%s%s", wh->name, type, res.status,
            snip[0] ? ": " : "", snip);
    } else {
        ok = true;
        say(msg, msglen, "webhook \"%s\" (%s) answered HTTP %ld", wh->name, type, res.status);
    }
    ns_buf_free(&in.buf);
    free(payload);
    return ok;
}

/* Runs every webhook of `type`, stopping at the first that is not 2xx. */
static bool run_webhooks(const canary_spec *spec, const canary_status *st, canary_hook_type type,
                         canary_check_results *out)
{
    for (size_t i = 0; i < spec->n_webhooks; i++) {
        const canary_webhook *wh = &spec->webhooks[i];
        if (wh->type != type)
            continue;
        if (!call_webhook(spec, st, wh, out->message, sizeof(out->message))) {
            out->passed = false;
            return false;
        }
    }
    return true;
}

void canary_checks_run(const canary_spec *spec, const canary_status *st, canary_checks_kind kind,
                       canary_check_results *out)
{
    *out = (canary_check_results){.kind = kind, .passed = true};
    switch (kind) {
    case CANARY_CHECKS_PRE_ROLLOUT:
        run_webhooks(spec, st, CANARY_HOOK_PRE_ROLLOUT, out);
        break;
    case CANARY_CHECKS_CONFIRM_PROMOTION:
        run_webhooks(spec, st, CANARY_HOOK_CONFIRM_PROMOTION, out);
        break;
    case CANARY_CHECKS_ANALYSIS:
        /* Rollback webhooks go first: a failing metric must not keep a rollback request
         * from being heard. A request is reported as not passed too, so a caller that
         * looks only at `passed` never advances the rollout past it. */
        for (size_t i = 0; i < spec->n_webhooks; i++) {
            const canary_webhook *wh = &spec->webhooks[i];
            char msg[sizeof(out->message)];
            if (wh->type != CANARY_HOOK_ROLLBACK || !call_webhook(spec, st, wh, msg, sizeof(msg)))
                continue;
            /* "webhook "x" (rollback) answered HTTP 200" says it all */
            out->rollback_requested = true;
            out->passed = false;
            memcpy(out->message, msg, sizeof(msg));
            return;
        }
        for (size_t i = 0; i < spec->n_metrics; i++) {
            if (!run_metric(&spec->metrics[i], out->message, sizeof(out->message))) {
                out->passed = false;
                return;
            }
        }
        run_webhooks(spec, st, CANARY_HOOK_ROLLOUT, out);
        break;
    case CANARY_CHECKS_NONE:
        break;
    }
    if (out->passed)
        out->message[0] = '\0';
}

int canary_webhooks_notify(const canary_spec *spec, const canary_status *st, canary_hook_type type)
{
    int failed = 0;
    for (size_t i = 0; i < spec->n_webhooks; i++) {
        const canary_webhook *wh = &spec->webhooks[i];
        if (wh->type != type)
            continue;
        char msg[512];
        if (call_webhook(spec, st, wh, msg, sizeof(msg)))
            continue;
        failed++;
        ns_log(NS_LOG_WARN, "webhook failed", "namespace", spec->namespace, "canary", spec->name,
               "webhook", wh->name, "error", msg, NULL);
    }
    return failed;
}

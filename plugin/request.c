/* request.c - manual requests: applicability, patch, report. */
#include "request.h"

#include "canary.h"
#include "json.h"

#include <string.h>

const char *kn_verb_name(kn_verb v)
{
    switch (v) {
    case KN_VERB_PROMOTE:
        return "promote";
    case KN_VERB_ABORT:
        return "abort";
    case KN_VERB_RETRY:
        return "retry";
    }
    return "";
}

const char *kn_verb_noun(kn_verb v)
{
    return v == KN_VERB_PROMOTE ? "promotion" : kn_verb_name(v);
}

static const char *phase_text(const kn_canary *c)
{
    return c->phase ? c->phase : "<none>";
}

int kn_request_check(kn_verb v, const kn_canary *c, ns_err *err)
{
    const char *name = c->name ? c->name : "";
    if (c->deleting)
        return ns_errorf(err, -EPERM, "cannot %s canary \"%s\": it is being deleted",
                         kn_verb_name(v), name);
    /* The phases in which the operator acts on each request rather than dropping it
     * with a RequestIgnored Event (operator/canary_machine.c). */
    bool ok = c->phase && (v == KN_VERB_RETRY   ? strcmp(c->phase, "Failed") == 0
                           : v == KN_VERB_ABORT ? strcmp(c->phase, "Progressing") == 0 ||
                                                      strcmp(c->phase, "Promoting") == 0
                                                : strcmp(c->phase, "Progressing") == 0);
    if (ok)
        return 0;
    const char *noun = v == KN_VERB_PROMOTE ? "a promotion"
                       : v == KN_VERB_ABORT ? "an abort"
                                            : "a retry";
    const char *when = v == KN_VERB_RETRY   ? "when Failed"
                       : v == KN_VERB_ABORT ? "while Progressing or Promoting"
                                            : "while Progressing";
    if (!c->phase)
        return ns_errorf(err, -EPERM,
                         "cannot %s canary \"%s\": it has no status yet; %s applies only %s "
                         "(use --force to request it anyway)",
                         kn_verb_name(v), name, noun, when);
    return ns_errorf(err, -EPERM,
                     "cannot %s canary \"%s\" in phase %s: %s applies only %s "
                     "(use --force to request it anyway)",
                     kn_verb_name(v), name, c->phase, noun, when);
}

cJSON *kn_request_patch(kn_verb v, const char *resource_version)
{
    cJSON *patch = cJSON_CreateObject();
    cJSON *meta = ns_json_ensure_object(patch, "metadata");
    cJSON *ann = ns_json_ensure_object(meta, "annotations");
    if (!ann || ns_json_set_str(ann, CANARY_ANN_REQUEST, kn_verb_name(v)) != 0 ||
        (resource_version && ns_json_set_str(meta, "resourceVersion", resource_version) != 0)) {
        cJSON_Delete(patch);
        return NULL;
    }
    return patch;
}

void kn_request_summary(kn_verb v, const kn_canary *c, bool forced, ns_buf *out)
{
    bool again = c->request && strcmp(c->request, kn_verb_name(v)) == 0;
    ns_buf_printf(out, "canary.nutshell.io/%s: %s %srequested (phase %s", c->name ? c->name : "",
                  kn_verb_noun(v), again ? "already " : "", phase_text(c));
    if (c->has_canary_weight)
        ns_buf_printf(out, ", weight %d", (int)c->canary_weight);
    ns_buf_puts(out, ")");
    if (c->request && !again)
        ns_buf_printf(out, "; replaces the pending request \"%.64s\"", c->request);
    if (forced)
        ns_buf_puts(out, "; forced past the phase check");
    ns_buf_putc(out, '\n');
}

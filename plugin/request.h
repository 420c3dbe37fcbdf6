/* request.h - promote, abort and retry: manual requests to the operator, made by setting
 * the nutshell.io/request annotation on a Canary (the operator acts on it once and
 * removes it). Whether a request can apply now, the patch that makes it, and what to
 * tell the user. Pure. */
#ifndef KN_REQUEST_H
#define KN_REQUEST_H

#include "buf.h"
#include "canary_view.h"
#include "err.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

typedef enum kn_verb {
    KN_VERB_PROMOTE,
    KN_VERB_ABORT,
    KN_VERB_RETRY,
} kn_verb;

/* The annotation's value: "promote", "abort", "retry". */
const char *kn_verb_name(kn_verb v);
/* For messages: "promotion", "abort", "retry". */
const char *kn_verb_noun(kn_verb v);

/* Whether the operator would act on `v` for `c` as it is now: promote only while
 * Progressing (a rollout is running), abort while Progressing or Promoting (the new
 * revision is not yet all on the primary), retry only when Failed (the last rollout was
 * rolled back), and none on a Canary being deleted. What the phase cannot tell (a
 * canary not ready yet, a target reverted to the promoted revision) the operator still
 * refuses, with a RequestIgnored Event. Returns 0, or -EPERM with one
 * sentence in err saying why not and what to do. */
int kn_request_check(kn_verb v, const kn_canary *c, ns_err *err);

/* The merge patch that sets the annotation. With `resource_version` (not NULL) the
 * API server applies it only to that version of the object (409 Conflict otherwise),
 * so that a request checked against one state is not sent to another. NULL on ENOMEM;
 * caller frees. */
cJSON *kn_request_patch(kn_verb v, const char *resource_version);

/* Appends the line reporting a request made for `c` (its state before the patch):
 * "canary.nutshell.io/reviews: promotion requested (phase Progressing, weight 20)",
 * noting a pending request of another kind that it replaces, one of the same kind
 * already there, and `forced` when the check was skipped. */
void kn_request_summary(kn_verb v, const kn_canary *c, bool forced, ns_buf *out);

#endif

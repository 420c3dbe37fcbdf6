/* canary_checks.h - the checks a rollout runs over the network: PromQL queries against
 * Prometheus's HTTP API and webhooks. The I/O is libcurl; the decisions (what a
 * Prometheus answer means, whether a value is in range, the payload) are pure functions
 * below, unit tested on their own.
 */
#ifndef OP_CANARY_CHECKS_H
#define OP_CANARY_CHECKS_H

#include "canary.h"
#include "canary_machine.h"
#include "err.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* ---- pure ---- */

/* The query with every "{{interval}}" (spaces inside the braces allowed) replaced by
 * m->interval_text, in a new string (caller frees); NULL on ENOMEM. */
char *canary_metric_query(const canary_metric *m);

/* The single number a Prometheus /api/v1/query answer holds: status "success" and a
 * result of type scalar, or a vector with exactly one sample. Values are strings in
 * the API ("0.5", "NaN", "+Inf"). Returns 0 and *out; -ENODATA for an empty vector;
 * -EINVAL for anything else (error status, several samples, a matrix, bad JSON) with
 * a sentence in err. */
int canary_prometheus_value(const char *body, size_t len, double *out, ns_err *err);

/* True if v is within the metric's thresholdRange (inclusive); NaN never is. */
bool canary_metric_in_range(const canary_metric *m, double v);

/* The JSON body POSTed to a webhook (caller frees):
 *   {"name", "namespace", "phase", "type", "revision", "canaryWeight", "metadata"}
 * NULL on ENOMEM. */
char *canary_webhook_payload(const canary_spec *spec, const canary_status *st,
                             const canary_webhook *wh);

/* ---- I/O ---- */

/* Runs the checks of `kind` for the Canary (spec, with status st) and fills *out:
 *   PRE_ROLLOUT, CONFIRM_PROMOTION: every webhook of that type must answer 2xx within its
 *     timeout;
 *   ANALYSIS: every metric's query must give a value in range; every rollout webhook
 *     must answer 2xx; any rollback webhook answering 2xx sets rollback_requested.
 * Checks run one after another and stop at the first failure (its message, naming the
 * metric or webhook and what it got, goes to out->message). A check that cannot be
 * made (connection refused, timeout, bad answer) is a failed check, not an error.
 * Metric queries time out after 10 s. */
void canary_checks_run(const canary_spec *spec, const canary_status *st, canary_checks_kind kind,
                       canary_check_results *out);

/* Calls every webhook of `type` and returns without judging (post-rollout). Returns
 * the number that failed; their messages are logged. */
int canary_webhooks_notify(const canary_spec *spec, const canary_status *st, canary_hook_type type);

#endif

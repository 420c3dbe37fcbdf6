/* cli.h - `nutshell-injector inject -f FILE`: manual injection of manifests, like
 * `istioctl kube-inject`, for users who render manifests in CI or GitOps. */
#ifndef INJ_CLI_H
#define INJ_CLI_H

#include "buf.h"
#include "config.h"
#include "err.h"

#include <stdbool.h>
#include <stddef.h>

/* Injects every pod and pod template found in `text` (YAML or JSON; several YAML
 * documents, a List, Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs,
 * CronJobs) and appends the result to `out` in the input's format (or JSON when
 * `force_json`). Objects of other kinds pass through unchanged. `namespace` (may be
 * NULL) is used for objects that do not name theirs. Notes for the user (skipped pods,
 * warnings) are appended to `notes`, one per line. Returns 0, or -EINVAL with err saying
 * which document was refused and why. Pure: no I/O. */
int inj_manifests(const inj_config *cfg, const char *text, size_t len, const char *namespace,
                  bool force_json, ns_buf *out, ns_buf *notes, ns_err *err);

int inj_cli_main(int argc, char **argv);

#endif

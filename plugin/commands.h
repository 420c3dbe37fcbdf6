/* commands.h - the commands that talk to the API server. Each prints its result to
 * stdout, its errors to stderr prefixed "Error: ", and returns the exit code. */
#ifndef KN_COMMANDS_H
#define KN_COMMANDS_H

#include "cli.h"
#include "kube.h"

/* promote, abort, retry NAME in `namespace`. */
int kn_run_request(ns_kube *k, const kn_cli *cli, const char *namespace);

/* status [NAME] in `namespace` (ignored with -A). */
int kn_run_status(ns_kube *k, const kn_cli *cli, const char *namespace);

/* The Canary resource, addressed in `namespace` (NULL: all) by `name` (NULL: all). */
ns_kube_ref kn_canary_ref(const char *namespace, const char *name);

/* Prints "Error: " and kn_api_error's message to stderr; returns KN_EXIT_ERROR. */
int kn_report_api_error(ns_kube *k, int rc, const ns_kube_status *st, const char *name,
                        const char *namespace);

#endif

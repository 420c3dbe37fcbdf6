/* cli.h - the command line of `kubectl nutshell`: commands, flags, usage texts. Pure:
 * argv in, options or a usage error out (exit code 2), so it can be unit tested.
 *
 * Flags may come before or after the command and its NAME, as kubectl allows:
 * `kubectl nutshell promote reviews -n test`, `--namespace=test`, `-ntest`; "--" ends
 * the flags. */
#ifndef KN_CLI_H
#define KN_CLI_H

#include "buf.h"
#include "err.h"
#include "request.h"

#include <stdbool.h>

/* Exit codes. */
#define KN_EXIT_OK    0
#define KN_EXIT_ERROR 1 /* the API server said no, or could not be reached */
#define KN_EXIT_USAGE 2

typedef enum kn_command {
    KN_CMD_NONE = 0, /* no command given: usage */
    KN_CMD_PROMOTE,
    KN_CMD_ABORT,
    KN_CMD_RETRY,
    KN_CMD_STATUS,
    KN_CMD_VERSION,
} kn_command;

typedef struct kn_cli {
    kn_command cmd;
    bool help;              /* -h/--help or `help [COMMAND]`: print usage of cmd, exit 0 */
    const char *name;       /* the Canary, or NULL */
    const char *namespace;  /* -n; NULL: the kubeconfig context's */
    const char *kubeconfig; /* --kubeconfig; NULL: $KUBECONFIG, else ~/.kube/config */
    const char *context;    /* --context; NULL: current-context */
    bool all_namespaces;    /* status -A */
    bool json;              /* status -o json */
    bool force;             /* promote/abort/retry --force */
} kn_cli;

/* Parses `argc` arguments (argv[0] is the first one after the program name). Strings
 * point into argv. Returns 0, or -EINVAL with one sentence in err (an unknown flag or
 * command, a missing or extra NAME, a flag that the command does not take). */
int kn_cli_parse(int argc, char *const *argv, kn_cli *out, ns_err *err);

/* The verb of a request command (cmd is PROMOTE, ABORT or RETRY). */
kn_verb kn_cli_verb(kn_command cmd);

/* "promote", ..., "" for NONE. */
const char *kn_command_name(kn_command cmd);

/* Appends the help of `cmd` (NONE: the overview). */
void kn_cli_usage(kn_command cmd, ns_buf *out);

#endif

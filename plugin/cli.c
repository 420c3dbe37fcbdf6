/* cli.c - argument parsing and help texts of kubectl-nutshell. */
#include "cli.h"

#include <string.h>

enum {
    F_NAMESPACE = 1 << 0,
    F_KUBECONFIG = 1 << 1,
    F_CONTEXT = 1 << 2,
    F_ALL = 1 << 3,
    F_OUTPUT = 1 << 4,
    F_FORCE = 1 << 5,
    F_HELP = 1 << 6,
};

typedef struct flag_def {
    const char *name;
    char shorthand; /* 0: none */
    bool takes_value;
    unsigned id;
} flag_def;

static const flag_def flags[] = {
    {"namespace", 'n', true, F_NAMESPACE}, {"kubeconfig", 0, true, F_KUBECONFIG},
    {"context", 0, true, F_CONTEXT},       {"all-namespaces", 'A', false, F_ALL},
    {"output", 'o', true, F_OUTPUT},       {"force", 0, false, F_FORCE},
    {"help", 'h', false, F_HELP},
};
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

static const struct {
    const char *name;
    kn_command cmd;
} commands[] = {
    {"promote", KN_CMD_PROMOTE}, {"abort", KN_CMD_ABORT},     {"retry", KN_CMD_RETRY},
    {"status", KN_CMD_STATUS},   {"version", KN_CMD_VERSION},
};

const char *kn_command_name(kn_command cmd)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (commands[i].cmd == cmd)
            return commands[i].name;
    return "";
}

kn_verb kn_cli_verb(kn_command cmd)
{
    return cmd == KN_CMD_ABORT   ? KN_VERB_ABORT
           : cmd == KN_CMD_RETRY ? KN_VERB_RETRY
                                 : KN_VERB_PROMOTE;
}

static const flag_def *find_long(const char *name, size_t len)
{
    for (size_t i = 0; i < NFLAGS; i++)
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
            return &flags[i];
    return NULL;
}

static const flag_def *find_short(char c)
{
    for (size_t i = 0; i < NFLAGS; i++)
        if (flags[i].shorthand == c)
            return &flags[i];
    return NULL;
}

/* Records flag `f` with `value` (NULL for a flag without one). */
static int set_flag(kn_cli *out, const flag_def *f, const char *value, unsigned *seen, ns_err *err)
{
    *seen |= f->id;
    switch (f->id) {
    case F_NAMESPACE:
        if (!*value)
            return ns_errorf(err, -EINVAL, "--namespace must not be empty");
        out->namespace = value;
        break;
    case F_KUBECONFIG:
        if (!*value)
            return ns_errorf(err, -EINVAL, "--kubeconfig must not be empty");
        out->kubeconfig = value;
        break;
    case F_CONTEXT:
        if (!*value)
            return ns_errorf(err, -EINVAL, "--context must not be empty");
        out->context = value;
        break;
    case F_OUTPUT:
        if (strcmp(value, "json") != 0)
            return ns_errorf(err, -EINVAL, "unsupported output format \"%s\": use -o json", value);
        out->json = true;
        break;
    case F_ALL:
        out->all_namespaces = !value || strcmp(value, "true") == 0;
        break;
    case F_FORCE:
        out->force = !value || strcmp(value, "true") == 0;
        break;
    case F_HELP:
        out->help = !value || strcmp(value, "true") == 0;
        break;
    }
    return 0;
}

/* A boolean flag written --flag=VALUE takes true or false only. */
static int bool_value(const flag_def *f, const char *value, ns_err *err)
{
    if (value && strcmp(value, "true") != 0 && strcmp(value, "false") != 0)
        return ns_errorf(err, -EINVAL, "invalid argument \"%s\" for --%s: want true or false",
                         value, f->name);
    return 0;
}

/* Parses the flag at argv[*i] ("--..." or "-..."), consuming its value from the next
 * argument when it needs one. */
static int parse_flag(int argc, char *const *argv, int *i, kn_cli *out, unsigned *seen, ns_err *err)
{
    const char *arg = argv[*i];
    if (arg[1] == '-') {
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const flag_def *f = find_long(name, len);
        if (!f)
            return ns_errorf(err, -EINVAL, "unknown flag: --%.*s", (int)len, name);
        const char *value = eq ? eq + 1 : NULL;
        if (!f->takes_value) {
            int rc = bool_value(f, value, err);
            return rc ? rc : set_flag(out, f, value, seen, err);
        }
        if (!value) {
            if (*i + 1 >= argc)
                return ns_errorf(err, -EINVAL, "flag needs an argument: --%s", f->name);
            value = argv[++*i];
        }
        return set_flag(out, f, value, seen, err);
    }
    /* Shorthands: "-A", "-Ah", "-n test", "-ntest", "-n=test". */
    for (const char *p = arg + 1; *p; p++) {
        const flag_def *f = find_short(*p);
        if (!f)
            return ns_errorf(err, -EINVAL, "unknown shorthand flag: '%c' in %s", *p, arg);
        if (!f->takes_value) {
            int rc = set_flag(out, f, NULL, seen, err);
            if (rc)
                return rc;
            continue;
        }
        const char *value = p[1] == '=' ? p + 2 : p[1] ? p + 1 : NULL;
        if (!value) {
            if (*i + 1 >= argc)
                return ns_errorf(err, -EINVAL, "flag needs an argument: '%c' in -%c", *p, *p);
            value = argv[++*i];
        }
        return set_flag(out, f, value, seen, err);
    }
    return 0;
}

/* The flags each command takes besides -n, --kubeconfig, --context and -h. */
static unsigned own_flags(kn_command cmd)
{
    switch (cmd) {
    case KN_CMD_PROMOTE:
    case KN_CMD_ABORT:
    case KN_CMD_RETRY:
        return F_FORCE;
    case KN_CMD_STATUS:
        return F_ALL | F_OUTPUT;
    default:
        return 0;
    }
}

static const char *flag_spelling(unsigned id)
{
    return id == F_FORCE ? "--force" : id == F_ALL ? "-A/--all-namespaces" : "-o/--output";
}

/* The command named by the first of `npos` positional arguments, after an optional
 * "help"; NONE if there is none or it is unknown. */
static kn_command find_command(const char *const *pos, int npos)
{
    int i = npos > 0 && strcmp(pos[0], "help") == 0 ? 1 : 0;
    if (i >= npos)
        return KN_CMD_NONE;
    for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++)
        if (strcmp(pos[i], commands[c].name) == 0)
            return commands[c].cmd;
    return KN_CMD_NONE;
}

int kn_cli_parse(int argc, char *const *argv, kn_cli *out, ns_err *err)
{
    *out = (kn_cli){0};
    const char *pos[4];
    int npos = 0, extra = 0;
    unsigned seen = 0;
    bool dashdash = false;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!dashdash && strcmp(arg, "--") == 0) {
            dashdash = true;
            continue;
        }
        if (!dashdash && arg[0] == '-' && arg[1]) {
            int rc = parse_flag(argc, argv, &i, out, &seen, err);
            if (rc) {
                /* For the "See 'kubectl nutshell CMD --help'" hint. */
                out->cmd = find_command(pos, npos);
                return rc;
            }
            continue;
        }
        if (npos < (int)(sizeof(pos) / sizeof(pos[0])))
            pos[npos++] = arg;
        else
            extra++;
    }

    int first = 0;
    if (npos > 0 && strcmp(pos[0], "help") == 0) {
        out->help = true;
        first = 1;
    }
    if (npos > first) {
        out->cmd = find_command(pos + first, 1);
        if (out->cmd == KN_CMD_NONE)
            return ns_errorf(err, -EINVAL, "unknown command \"%s\" for \"kubectl nutshell\"",
                             pos[first]);
        first++;
    }
    if (out->help)
        return 0;

    int nargs = npos - first + extra;
    const char *cmd = kn_command_name(out->cmd);
    unsigned stray = seen & (F_FORCE | F_ALL | F_OUTPUT) & ~own_flags(out->cmd);
    if (stray && out->cmd != KN_CMD_NONE) {
        unsigned bit = stray & -stray;
        return ns_errorf(err, -EINVAL, "%s does not take %s", cmd, flag_spelling(bit));
    }
    switch (out->cmd) {
    case KN_CMD_NONE:
        return 0;
    case KN_CMD_PROMOTE:
    case KN_CMD_ABORT:
    case KN_CMD_RETRY:
        if (nargs == 0)
            return ns_errorf(err, -EINVAL, "%s needs the Canary's name: kubectl nutshell %s NAME",
                             cmd, cmd);
        if (nargs > 1)
            return ns_errorf(err, -EINVAL, "%s takes one NAME, got %d arguments", cmd, nargs);
        out->name = pos[first];
        break;
    case KN_CMD_STATUS:
        if (nargs > 1)
            return ns_errorf(err, -EINVAL, "status takes at most one NAME, got %d arguments",
                             nargs);
        if (nargs == 1 && out->all_namespaces)
            return ns_errorf(err, -EINVAL,
                             "a Canary cannot be named across all namespaces: drop -A or NAME");
        out->name = nargs ? pos[first] : NULL;
        break;
    case KN_CMD_VERSION:
        if (nargs)
            return ns_errorf(err, -EINVAL, "version takes no arguments, got %d", nargs);
        break;
    }
    return 0;
}

static const char common_flags[] =
    "  -n, --namespace NS    the Canary's namespace (default: the kubeconfig context's, else\n"
    "                        \"default\")\n"
    "      --kubeconfig FILE the kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config)\n"
    "      --context NAME    the kubeconfig context to use (default: its current-context)\n"
    "  -h, --help            this help\n";

static const char request_exits[] = "\nExit status: 0 requested, 1 refused or API error, 2 usage "
                                    "error.\n";

void kn_cli_usage(kn_command cmd, ns_buf *out)
{
    switch (cmd) {
    case KN_CMD_NONE:
        ns_buf_puts(out, "Manage Nutshell Canaries (canaries.nutshell.io).\n"
                         "\n"
                         "Usage:\n"
                         "  kubectl nutshell promote NAME   promote the running rollout now\n"
                         "  kubectl nutshell abort NAME     roll the running rollout back\n"
                         "  kubectl nutshell retry NAME     start the failed rollout again\n"
                         "  kubectl nutshell status [NAME]  Canaries, or one Canary in detail\n"
                         "  kubectl nutshell version        the plugin's version\n"
                         "\n"
                         "Flags:\n");
        ns_buf_puts(out, common_flags);
        ns_buf_puts(out, "\nRun 'kubectl nutshell COMMAND --help' for a command's flags.\n");
        return;
    case KN_CMD_PROMOTE:
    case KN_CMD_ABORT:
    case KN_CMD_RETRY: {
        const char *name = kn_command_name(cmd);
        const char *what =
            cmd == KN_CMD_PROMOTE ? "Asks the operator to promote the canary now, skipping the\n"
                                    "remaining steps and checks. Applies while the Canary is\n"
                                    "Progressing.\n"
            : cmd == KN_CMD_ABORT ? "Asks the operator to roll the running rollout back: traffic\n"
                                    "returns to the primary and the Canary becomes Failed.\n"
                                    "Applies while the Canary is Progressing or Promoting.\n"
                                  : "Asks the operator to start the failed rollout again with the\n"
                                    "same revision. Applies when the Canary is Failed.\n";
        ns_buf_printf(out,
                      "%s"
                      "\n"
                      "The request is the annotation nutshell.io/request=%s on the Canary; the\n"
                      "operator acts on it once and removes it.\n"
                      "\n"
                      "Usage:\n"
                      "  kubectl nutshell %s NAME [flags]\n"
                      "\n"
                      "Flags:\n"
                      "      --force           request it whatever the Canary's phase\n",
                      what, name, name);
        ns_buf_puts(out, common_flags);
        ns_buf_puts(out, request_exits);
        return;
    }
    case KN_CMD_STATUS:
        ns_buf_puts(out, "Shows the Canaries of a namespace as a table, or one Canary in detail:\n"
                         "phase, weights, failed checks, revisions, message, conditions and its\n"
                         "last 10 Events.\n"
                         "\n"
                         "Usage:\n"
                         "  kubectl nutshell status [NAME] [flags]\n"
                         "\n"
                         "Flags:\n"
                         "  -A, --all-namespaces  list the Canaries of every namespace\n"
                         "  -o, --output json     print the Canary (or the list) as JSON\n");
        ns_buf_puts(out, common_flags);
        return;
    case KN_CMD_VERSION:
        ns_buf_puts(out, "Prints the plugin's version.\n"
                         "\n"
                         "Usage:\n"
                         "  kubectl nutshell version\n");
        return;
    }
}

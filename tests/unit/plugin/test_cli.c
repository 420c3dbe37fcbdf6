/* test_cli.c - the command line: commands, flags anywhere, usage errors. */
#include "cli.h"
#include "suites.h"

#include <errno.h>

/* Parses the space-separated `line` (no quoting; "''" stands for an empty argument). */
static int parse(const char *line, kn_cli *cli, ns_err *err)
{
    static char storage[512];
    static char *argv[32];
    int argc = 0;
    snprintf(storage, sizeof(storage), "%s", line);
    for (char *save = NULL, *tok = strtok_r(storage, " ", &save); tok && argc < 32;
         tok = strtok_r(NULL, " ", &save))
        argv[argc++] = strcmp(tok, "''") == 0 ? tok + 2 : tok;
    *err = (ns_err){0};
    return kn_cli_parse(argc, argv, cli, err);
}

static void test_requests(void)
{
    kn_cli cli;
    ns_err err;
    NS_ASSERT_INT_EQ(parse("promote reviews -n test", &cli, &err), 0);
    NS_ASSERT_INT_EQ(cli.cmd, KN_CMD_PROMOTE);
    NS_ASSERT_STR_EQ(cli.name, "reviews");
    NS_ASSERT_STR_EQ(cli.namespace, "test");
    CU_ASSERT_FALSE(cli.force);
    CU_ASSERT_FALSE(cli.help);
    NS_ASSERT_INT_EQ(kn_cli_verb(cli.cmd), KN_VERB_PROMOTE);

    /* Flags before the command, every spelling of a value. */
    NS_ASSERT_INT_EQ(parse("--namespace=prod abort reviews --force", &cli, &err), 0);
    NS_ASSERT_INT_EQ(cli.cmd, KN_CMD_ABORT);
    NS_ASSERT_STR_EQ(cli.namespace, "prod");
    CU_ASSERT_TRUE(cli.force);
    NS_ASSERT_INT_EQ(kn_cli_verb(cli.cmd), KN_VERB_ABORT);
    NS_ASSERT_INT_EQ(parse("retry -nstage x --kubeconfig /tmp/kc --context=c1", &cli, &err), 0);
    NS_ASSERT_INT_EQ(cli.cmd, KN_CMD_RETRY);
    NS_ASSERT_STR_EQ(cli.namespace, "stage");
    NS_ASSERT_STR_EQ(cli.kubeconfig, "/tmp/kc");
    NS_ASSERT_STR_EQ(cli.context, "c1");
    NS_ASSERT_STR_EQ(cli.name, "x");
    NS_ASSERT_INT_EQ(kn_cli_verb(cli.cmd), KN_VERB_RETRY);
    NS_ASSERT_INT_EQ(parse("retry -n=stage x --force=false", &cli, &err), 0);
    NS_ASSERT_STR_EQ(cli.namespace, "stage");
    CU_ASSERT_FALSE(cli.force);
    /* "--" ends the flags: a name may then start with '-'. */
    NS_ASSERT_INT_EQ(parse("promote -- -odd", &cli, &err), 0);
    NS_ASSERT_STR_EQ(cli.name, "-odd");
}

static void test_status(void)
{
    kn_cli cli;
    ns_err err;
    NS_ASSERT_INT_EQ(parse("status", &cli, &err), 0);
    NS_ASSERT_INT_EQ(cli.cmd, KN_CMD_STATUS);
    CU_ASSERT_PTR_NULL(cli.name);
    CU_ASSERT_PTR_NULL(cli.namespace);
    NS_ASSERT_INT_EQ(parse("status -A", &cli, &err), 0);
    CU_ASSERT_TRUE(cli.all_namespaces);
    NS_ASSERT_INT_EQ(parse("status --all-namespaces -o json", &cli, &err), 0);
    CU_ASSERT_TRUE(cli.all_namespaces && cli.json);
    NS_ASSERT_INT_EQ(parse("status reviews -ojson", &cli, &err), 0);
    NS_ASSERT_STR_EQ(cli.name, "reviews");
    CU_ASSERT_TRUE(cli.json);
    NS_ASSERT_INT_EQ(parse("status reviews --output=json -n a", &cli, &err), 0);
    CU_ASSERT_TRUE(cli.json);
    NS_ASSERT_STR_EQ(cli.namespace, "a");
    NS_ASSERT_INT_EQ(parse("version", &cli, &err), 0);
    NS_ASSERT_INT_EQ(cli.cmd, KN_CMD_VERSION);
    NS_ASSERT_INT_EQ(parse("", &cli, &err), 0);
    NS_ASSERT_INT_EQ(cli.cmd, KN_CMD_NONE);
    CU_ASSERT_FALSE(cli.help);
}

static void test_help(void)
{
    kn_cli cli;
    ns_err err;
    static const struct {
        const char *line;
        kn_command cmd;
    } cases[] = {
        {"-h", KN_CMD_NONE},
        {"--help", KN_CMD_NONE},
        {"help", KN_CMD_NONE},
        {"promote -h", KN_CMD_PROMOTE},
        {"abort --help", KN_CMD_ABORT},
        {"help retry", KN_CMD_RETRY},
        {"status -h", KN_CMD_STATUS},
        {"-h status too many args", KN_CMD_STATUS},
        {"version --help", KN_CMD_VERSION},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = parse(cases[i].line, &cli, &err);
        if (rc || !cli.help || cli.cmd != cases[i].cmd)
            fprintf(stderr, "\n  \"%s\"", cases[i].line);
        NS_ASSERT_INT_EQ(rc, 0);
        CU_ASSERT_TRUE(cli.help);
        NS_ASSERT_INT_EQ(cli.cmd, cases[i].cmd);
    }
}

static void test_usage_errors(void)
{
    static const struct {
        const char *line;
        kn_command cmd; /* for the "See ... --help" hint */
        const char *msg;
    } cases[] = {
        {"promote", KN_CMD_PROMOTE,
         "promote needs the Canary's name: kubectl nutshell promote NAME"},
        {"abort a b", KN_CMD_ABORT, "abort takes one NAME, got 2 arguments"},
        {"retry a b c d e f", KN_CMD_RETRY, "retry takes one NAME, got 6 arguments"},
        {"status a b", KN_CMD_STATUS, "status takes at most one NAME, got 2 arguments"},
        {"status a -A", KN_CMD_STATUS,
         "a Canary cannot be named across all namespaces: drop -A or NAME"},
        {"status -o yaml", KN_CMD_STATUS, "unsupported output format \"yaml\": use -o json"},
        {"status --force", KN_CMD_STATUS, "status does not take --force"},
        {"promote x -A", KN_CMD_PROMOTE, "promote does not take -A/--all-namespaces"},
        {"retry x -o json", KN_CMD_RETRY, "retry does not take -o/--output"},
        {"version x", KN_CMD_VERSION, "version takes no arguments, got 1"},
        {"version --force", KN_CMD_VERSION, "version does not take --force"},
        {"frobnicate x", KN_CMD_NONE, "unknown command \"frobnicate\" for \"kubectl nutshell\""},
        {"promote x --bogus", KN_CMD_PROMOTE, "unknown flag: --bogus"},
        {"promote x --bogus=1", KN_CMD_PROMOTE, "unknown flag: --bogus"},
        {"status -x", KN_CMD_STATUS, "unknown shorthand flag: 'x' in -x"},
        {"status -Ax", KN_CMD_STATUS, "unknown shorthand flag: 'x' in -Ax"},
        {"promote x -n", KN_CMD_PROMOTE, "flag needs an argument: 'n' in -n"},
        {"promote x --namespace", KN_CMD_PROMOTE, "flag needs an argument: --namespace"},
        {"promote x -n ''", KN_CMD_PROMOTE, "--namespace must not be empty"},
        {"promote x --kubeconfig=", KN_CMD_PROMOTE, "--kubeconfig must not be empty"},
        {"promote x --force=yes", KN_CMD_PROMOTE,
         "invalid argument \"yes\" for --force: want true or false"},
        {"--bogus promote x", KN_CMD_NONE, "unknown flag: --bogus"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kn_cli cli;
        ns_err err;
        int rc = parse(cases[i].line, &cli, &err);
        if (rc != -EINVAL)
            fprintf(stderr, "\n  \"%s\" accepted", cases[i].line);
        NS_ASSERT_INT_EQ(rc, -EINVAL);
        NS_ASSERT_STR_EQ(err.msg, cases[i].msg);
        NS_ASSERT_INT_EQ(cli.cmd, cases[i].cmd);
    }
}

static void test_usage_texts(void)
{
    static const kn_command cmds[] = {KN_CMD_NONE,  KN_CMD_PROMOTE, KN_CMD_ABORT,
                                      KN_CMD_RETRY, KN_CMD_STATUS,  KN_CMD_VERSION};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        ns_buf b;
        ns_buf_init(&b);
        kn_cli_usage(cmds[i], &b);
        const char *s = ns_buf_cstr(&b);
        /* Each help names its own usage line. */
        char want[64];
        snprintf(want, sizeof(want), "kubectl nutshell %s", kn_command_name(cmds[i]));
        CU_ASSERT_PTR_NOT_NULL(strstr(s, want));
        bool request =
            cmds[i] == KN_CMD_PROMOTE || cmds[i] == KN_CMD_ABORT || cmds[i] == KN_CMD_RETRY;
        CU_ASSERT_EQUAL(strstr(s, "--force") != NULL, request);
        CU_ASSERT_EQUAL(strstr(s, "--all-namespaces") != NULL, cmds[i] == KN_CMD_STATUS);
        if (request) {
            snprintf(want, sizeof(want), "nutshell.io/request=%s", kn_command_name(cmds[i]));
            CU_ASSERT_PTR_NOT_NULL(strstr(s, want));
        }
        ns_buf_free(&b);
    }
}

const ns_test cli_tests[] = {
    {"request commands", test_requests}, {"status and version", test_status}, {"help", test_help},
    {"usage errors", test_usage_errors}, {"usage texts", test_usage_texts},   {NULL, NULL},
};

/* main.c - nutshell-injector: the sidecar injection webhook and its manual CLI. */
#include "cli.h"
#include "server.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: nutshell-injector serve [options]     run the admission webhook\n"
               "       nutshell-injector inject -f FILE     print FILE with sidecars injected\n"
               "       nutshell-injector version\n"
               "Run a command with --help for its options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return inj_serve_main(argc - 1, argv + 1);
    if (strcmp(cmd, "inject") == 0 || strcmp(cmd, "kube-inject") == 0)
        return inj_cli_main(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("nutshell-injector %s\n", NUTSHELL_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "nutshell-injector: unknown command %s\n", cmd);
    usage(stderr);
    return 2;
}

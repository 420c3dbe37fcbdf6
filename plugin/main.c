/* main.c - kubectl-nutshell, the kubectl plugin for Nutshell Canaries: arguments, the
 * kubeconfig, and the command. See docs/kubectl-nutshell.md. */
#include "cli.h"
#include "commands.h"
#include "kube.h"
#include "kubeconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* kubectl's order: --kubeconfig; else $KUBECONFIG; else ~/.kube/config if it exists;
 * else the pod's service account when running in a cluster. */
static int load_config(const kn_cli *cli, ns_kube_config *cfg, ns_err *err)
{
    if (cli->kubeconfig)
        return ns_kubeconfig_load(cli->kubeconfig, cli->context, cfg, err);
    const char *env = getenv("KUBECONFIG");
    if (env && strspn(env, ":") != strlen(env))
        return ns_kubeconfig_load(NULL, cli->context, cfg, err);
    char path[4096];
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    if (host && *host && !cli->context &&
        (ns_kubeconfig_default_path(path, sizeof(path)) != 0 || access(path, F_OK) != 0))
        return ns_kube_config_in_cluster(NULL, NULL, NULL, cfg, err);
    return ns_kubeconfig_load(NULL, cli->context, cfg, err);
}

static void usage(kn_command cmd, FILE *f)
{
    ns_buf b;
    ns_buf_init(&b);
    kn_cli_usage(cmd, &b);
    fputs(ns_buf_cstr(&b), f);
    ns_buf_free(&b);
}

int main(int argc, char **argv)
{
    kn_cli cli;
    ns_err err = {0};
    if (kn_cli_parse(argc - 1, argv + 1, &cli, &err) != 0) {
        const char *cmd = kn_command_name(cli.cmd);
        fprintf(stderr, "Error: %s\nSee 'kubectl nutshell %s%s--help' for usage.\n", err.msg, cmd,
                *cmd ? " " : "");
        return KN_EXIT_USAGE;
    }
    if (cli.help) {
        usage(cli.cmd, stdout);
        return KN_EXIT_OK;
    }
    if (cli.cmd == KN_CMD_NONE) {
        usage(KN_CMD_NONE, stderr);
        return KN_EXIT_USAGE;
    }
    if (cli.cmd == KN_CMD_VERSION) {
        printf("kubectl-nutshell %s\n", NUTSHELL_VERSION);
        return KN_EXIT_OK;
    }

    ns_kube_config cfg;
    if (load_config(&cli, &cfg, &err) != 0) {
        fprintf(stderr, "Error: %s\n", err.msg[0] ? err.msg : "cannot load the kubeconfig");
        return KN_EXIT_ERROR;
    }
    /* A person is waiting: fail in seconds, not after the controllers' long backoff. */
    ns_kube_options opts = {
        .user_agent = "kubectl-nutshell/" NUTSHELL_VERSION,
        .field_manager = "kubectl-nutshell",
        .timeout_ms = 30000,
        .connect_timeout_ms = 5000,
        .max_retries = 2,
    };
    ns_kube *k = NULL;
    int rc = ns_kube_new(&cfg, &opts, &k, &err);
    if (rc != 0) {
        fprintf(stderr, "Error: %s\n", err.msg);
        ns_kube_config_free(&cfg);
        return KN_EXIT_ERROR;
    }
    const char *namespace = cli.namespace                     ? cli.namespace
                            : cfg.namespace && *cfg.namespace ? cfg.namespace
                                                              : "default";
    if (cli.cmd == KN_CMD_STATUS)
        rc = kn_run_status(k, &cli, namespace);
    else
        rc = kn_run_request(k, &cli, namespace);
    ns_kube_free(k);
    ns_kube_config_free(&cfg);
    return rc;
}

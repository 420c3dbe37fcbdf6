/* server.h - `nutshell-injector serve`: the webhook on 9443 (TLS) and health/metrics on 9090. */
#ifndef INJ_SERVER_H
#define INJ_SERVER_H

#include "err.h"

#include <stdint.h>

typedef struct inj_server_opts {
    const char *host; /* webhook address */
    uint16_t port;    /* 0: any free port */
    const char *metrics_host;
    uint16_t metrics_port;
    const char *cert_file;
    const char *key_file;
    const char *config_path; /* may be NULL: built-in defaults */
    uint32_t threads;
    unsigned reload_ms; /* how often TLS files are checked; 0: every second */
} inj_server_opts;

typedef struct inj_server inj_server;

/* Loads the config and TLS pair and starts both listeners. Returns 0 or a negative
 * errno with err saying what failed. */
int inj_server_start(const inj_server_opts *opts, inj_server **out, ns_err *err);
uint16_t inj_server_port(const inj_server *s);
uint16_t inj_server_metrics_port(const inj_server *s);
/* Periodic housekeeping: reloads the config file if it changed. */
void inj_server_tick(inj_server *s);
/* Marks the server not ready, stops both listeners, frees it. NULL is fine. */
void inj_server_stop(inj_server *s);

/* `serve` subcommand: runs until SIGTERM or SIGINT. Returns the process exit code. */
int inj_serve_main(int argc, char **argv);

#endif

/* main.c - nutshell-init: program (or print, or remove) the pod's traffic capture rules. */
#include "config.h"
#include "exitcode.h"
#include "extcheck.h"
#include "ip6tc_apply.h"
#include "iptc_apply.h"
#include "log.h"
#include "netinfo.h"
#include "nftcheck.h"
#include "plan.h"
#include "render.h"
#include "table.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef NUTSHELL_VERSION
#define NUTSHELL_VERSION "dev"
#endif

#define APPLY_ATTEMPTS 5 /* whole-run retries when another writer races us (-EAGAIN) */

static const char *env_cb(const char *name, void *ctx)
{
    (void)ctx;
    return getenv(name);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Logs `err` and returns the exit code for `rc`. */
static int fail(int rc, const ns_err *err, const char *what)
{
    int code = nsi_exit_from_errno(rc);
    char codestr[8];
    snprintf(codestr, sizeof(codestr), "%d", code);
    ns_log(NS_LOG_ERROR, what, "error", err->msg, "exit_code", codestr, NULL);
    return code;
}

/* Decides whether ip6tables is programmed. Returns 0 and sets *on (and, for auto, the address
 * that decided it in `why`), or an exit code. */
static int decide_ipv6(const nsi_config *cfg, bool *on, char *why, size_t whylen)
{
    *on = false;
    snprintf(why, whylen, "%s", cfg->ipv6 == NSI_IPV6_AUTO ? "no global IPv6 address" : "flag");
    if (cfg->ipv6 == NSI_IPV6_OFF)
        return 0;
    if (cfg->ipv6 == NSI_IPV6_ON) {
        *on = true;
        return 0;
    }
    char found[128] = "";
    int rc = nsi_has_global_ipv6(found, sizeof(found));
    if (rc < 0) {
        /* Guessing "no" would leave IPv6 traffic uncaptured without anyone noticing. */
        ns_log(NS_LOG_ERROR, "cannot list the namespace's addresses for --ipv6=auto", "error",
               strerror(-rc), "hint", "pass --ipv6=on or --ipv6=off", NULL);
        return NSI_EXIT_FAILURE;
    }
    *on = rc == 1;
    ns_log(NS_LOG_DEBUG, "ipv6 auto-detection", "ipv6", *on ? "on" : "off", "address", found, NULL);
    return 0;
}

static int dry_run(const nsi_plan *v4, const nsi_plan *v6)
{
    ns_buf b;
    ns_buf_init(&b);
    ns_buf_puts(&b, "# nutshell-init --dry-run: IPv4 nat table (iptables-save format)\n");
    nsi_render_table(v4, &b);
    if (v6) {
        ns_buf_puts(&b, "# nutshell-init --dry-run: IPv6 nat table (ip6tables-save format)\n");
        nsi_render_table(v6, &b);
    }
    int code = NSI_EXIT_OK;
    if (b.failed || fwrite(ns_buf_cstr(&b), 1, b.len, stdout) != b.len || fflush(stdout) != 0) {
        ns_log(NS_LOG_ERROR, "cannot write the dry-run output", NULL);
        code = NSI_EXIT_FAILURE;
    }
    ns_buf_free(&b);
    return code;
}

/* Both tables are prepared before either is committed, so that a problem found while reading
 * IPv6 (no table, no permission) stops the run before IPv4 changes. */
static int apply(const nsi_plan *v4, const nsi_plan *v6)
{
    ns_err err = {0};
    int rc = -EAGAIN;
    for (int attempt = 0; attempt < APPLY_ATTEMPTS && rc == -EAGAIN; attempt++) {
        void *h4 = NULL, *h6 = NULL;
        bool changed;
        rc = nsi_table_prepare(&nsi_iptc4_ops, v4, &h4, &changed, &err);
        if (rc)
            return fail(rc, &err, "cannot prepare the IPv4 nat table");
        if (v6) {
            rc = nsi_table_prepare(&nsi_iptc6_ops, v6, &h6, &changed, &err);
            if (rc) {
                nsi_table_abort(&nsi_iptc4_ops, h4);
                return fail(rc, &err, "cannot prepare the IPv6 nat table");
            }
        }
        rc = nsi_table_commit(&nsi_iptc4_ops, h4, &err);
        if (rc) {
            nsi_table_abort(&nsi_iptc6_ops, h6);
            if (rc == -EAGAIN)
                continue;
            return fail(rc, &err, "cannot commit the IPv4 nat table");
        }
        if (!v6)
            return NSI_EXIT_OK;
        rc = nsi_table_commit(&nsi_iptc6_ops, h6, &err);
        if (rc == -EAGAIN)
            rc = nsi_table_sync(&nsi_iptc6_ops, v6, &err);
        if (rc == 0)
            return NSI_EXIT_OK;
        /* IPv4 is in, IPv6 is not: undo IPv4 rather than leave a pod half captured. */
        ns_err rb = {0};
        int rbrc = nsi_table_sync(&nsi_iptc4_ops, NULL, &rb);
        ns_log(NS_LOG_ERROR, "cannot commit the IPv6 nat table; IPv4 rules rolled back", "error",
               err.msg, "rollback", rbrc == 0 ? "done" : rb.msg, "exit_code", "6", NULL);
        return NSI_EXIT_ROLLEDBACK;
    }
    return fail(rc, &err, "the nat table kept changing while being programmed");
}

static int cleanup(bool v6_on, bool v6_optional)
{
    ns_err err = {0};
    int rc = nsi_table_sync(&nsi_iptc4_ops, NULL, &err);
    if (rc)
        return fail(rc, &err, "cannot remove the IPv4 rules");
    if (!v6_on)
        return NSI_EXIT_OK;
    rc = nsi_table_sync(&nsi_iptc6_ops, NULL, &err);
    /* With --ipv6=auto a kernel without ip6tables simply has nothing of ours to remove. */
    if (rc == -ENOENT && v6_optional)
        return NSI_EXIT_OK;
    if (rc)
        return fail(rc, &err, "cannot remove the IPv6 rules");
    return NSI_EXIT_OK;
}

int main(int argc, char **argv)
{
    nsi_config cfg;
    nsi_config_defaults(&cfg);
    ns_err err = {0};
    ns_log_setup(NS_LOG_INFO, NS_LOG_TEXT, "nutshell-init");
    int rc = nsi_config_parse(&cfg, argc, argv, env_cb, NULL, &err);
    ns_log_setup(NS_LOG_INFO, cfg.log_format, "nutshell-init");
    if (rc) {
        ns_log(NS_LOG_ERROR, "invalid configuration", "error", err.msg, "exit_code", "2", NULL);
        return NSI_EXIT_USAGE;
    }
    if (cfg.action == NSI_ACT_HELP) {
        fputs(nsi_config_usage(), stdout);
        return NSI_EXIT_OK;
    }
    if (cfg.action == NSI_ACT_VERSION) {
        printf("nutshell-init %s\n", NUTSHELL_VERSION);
        return NSI_EXIT_OK;
    }

    double t0 = now_ms();
    int code;
    if (cfg.action == NSI_ACT_CLEANUP) {
        /* A previous run may have programmed IPv6 even if the pod has no address now. */
        bool try_v6 = cfg.ipv6 != NSI_IPV6_OFF;
        code = cleanup(try_v6, cfg.ipv6 == NSI_IPV6_AUTO);
        if (code == NSI_EXIT_OK)
            ns_log(NS_LOG_INFO, "Nutshell rules removed", "ipv6", try_v6 ? "checked" : "skipped",
                   NULL);
        return code;
    }

    bool v6_on;
    char v6_why[160];
    code = decide_ipv6(&cfg, &v6_on, v6_why, sizeof(v6_why));
    if (code)
        return code;
    nsi_plan v4 = {0}, v6 = {0};
    if (nsi_plan_build(&cfg, AF_INET, &v4) != 0 ||
        (v6_on && nsi_plan_build(&cfg, AF_INET6, &v6) != 0)) {
        nsi_plan_free(&v4);
        ns_log(NS_LOG_ERROR, "out of memory while planning rules", NULL);
        return NSI_EXIT_FAILURE;
    }

    if (cfg.dry_run) {
        code = dry_run(&v4, v6_on ? &v6 : NULL);
        goto out;
    }

    rc = nsi_nft_check(&err);
    if (rc == -EEXIST || rc == -EPERM) {
        code = fail(rc, &err,
                    rc == -EEXIST ? "rules from another backend are present"
                                  : "cannot inspect nftables");
        goto out;
    }
    if (rc)
        ns_log(NS_LOG_WARN, "nftables check skipped", "error", err.msg, NULL);

    rc = nsi_extcheck(AF_INET, &err);
    if (rc == 0 && v6_on)
        rc = nsi_extcheck(AF_INET6, &err);
    if (rc) {
        code = fail(rc, &err, "the kernel cannot run the capture rules");
        goto out;
    }

    code = apply(&v4, v6_on ? &v6 : NULL);
    if (code == NSI_EXIT_OK) {
        char n4[16], n6[16], ms[32];
        snprintf(n4, sizeof(n4), "%zu", v4.n);
        snprintf(n6, sizeof(n6), "%zu", v6_on ? v6.n : (size_t)0);
        snprintf(ms, sizeof(ms), "%.3f", now_ms() - t0);
        ns_log(NS_LOG_INFO, "traffic capture programmed", "ipv4_rules", n4, "ipv6_rules", n6,
               "ipv6", v6_on ? "on" : "off", "ipv6_reason", v6_why, "elapsed_ms", ms, NULL);
    }
out:
    nsi_plan_free(&v4);
    nsi_plan_free(&v6);
    return code;
}

/* table.c - reconcile one nat table with the plan (or with nothing) through an nsi_iptc_ops. */
#include "table.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHAIN_NAME_MAX 32 /* xt_chainlabel */
#define SYNC_ATTEMPTS  5  /* -EAGAIN means someone else committed between our read and write */
/* Upper bound on rule deletions in one built-in chain: a table cannot hold more rules than
 * this in any sane pod, and it keeps the loop below bounded whatever the backend reports. */
#define MAX_DELETIONS 100000

static int init_error(const nsi_iptc_ops *ops, int e, ns_err *err)
{
    switch (e) {
    case EPERM:
    case EACCES:
        return ns_errorf(err, -EPERM,
                         "%s: permission denied reading the nat table: nutshell-init needs "
                         "CAP_NET_ADMIN in the pod's network namespace (%s)",
                         ops->name, ops->strerror(e));
    case ENOENT:
        return ns_errorf(err, -ENOENT,
                         "%s: the kernel has no legacy nat table (%s): load the %s module or "
                         "build the kernel with it",
                         ops->name, ops->strerror(e),
                         ops->family == AF_INET ? "iptable_nat" : "ip6table_nat");
    case ENOPROTOOPT:
    case EPROTONOSUPPORT:
    case EAFNOSUPPORT:
        return ns_errorf(err, -ENOENT,
                         "%s: the kernel has no legacy %s support (%s): load the %s module",
                         ops->name, ops->name, ops->strerror(e),
                         ops->family == AF_INET ? "ip_tables" : "ip6_tables");
    default:
        return ns_errorf(err, e > 0 ? -e : -EIO, "%s: cannot read the nat table: %s", ops->name,
                         ops->strerror(e));
    }
}

static int op_error(const nsi_iptc_ops *ops, const char *what, const char *chain, ns_err *err)
{
    int e = errno ? errno : EIO;
    return ns_errorf(err, -e, "%s: %s %s: %s", ops->name, what, chain, ops->strerror(e));
}

/* Copies the table's chain names, because deleting rules may disturb libiptc's iterator. */
static int list_chains(const nsi_iptc_ops *ops, void *h, char (**out)[CHAIN_NAME_MAX], size_t *n)
{
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    for (const char *c = ops->first_chain(h); c; c = ops->next_chain(h)) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char(*nl)[CHAIN_NAME_MAX] = realloc(*out, cap * sizeof(**out));
            if (!nl) {
                free(*out);
                *out = NULL;
                return -ENOMEM;
            }
            *out = nl;
        }
        snprintf((*out)[*n], CHAIN_NAME_MAX, "%s", c);
        (*n)++;
    }
    return 0;
}

/* Index of the first rule in `chain` that jumps to a Nutshell chain, or -1. */
static long first_own_jump(const nsi_iptc_ops *ops, const char *chain, void *h)
{
    long i = 0;
    for (const char *t = ops->first_rule_target(chain, h); t; t = ops->next_rule_target(h), i++)
        if (nsi_is_own_chain_name(t))
            return i;
    return -1;
}

/* Removes the jumps to Nutshell chains from the built-in chains; refuses (cleanup) or
 * tolerates (apply) jumps from foreign user chains. */
static int remove_jumps(const nsi_iptc_ops *ops, void *h, bool cleanup, bool *changed, ns_err *err)
{
    char(*chains)[CHAIN_NAME_MAX];
    size_t n;
    int rc = list_chains(ops, h, &chains, &n);
    if (rc)
        return ns_errorf(err, rc, "%s: out of memory", ops->name);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *c = chains[i];
        if (nsi_is_own_chain_name(c))
            continue;
        if (!ops->builtin(c, h)) {
            if (cleanup && first_own_jump(ops, c, h) >= 0)
                rc = ns_errorf(err, -EMLINK,
                               "%s: chain %s (not created by Nutshell) jumps into a NUTSHELL_* "
                               "chain; remove that rule first, --cleanup only removes "
                               "Nutshell's own rules",
                               ops->name, c);
            continue;
        }
        long idx;
        int guard = 0;
        while (rc == 0 && (idx = first_own_jump(ops, c, h)) >= 0) {
            if (++guard > MAX_DELETIONS || !ops->delete_num_entry(c, (unsigned)idx, h))
                rc = op_error(ops, "cannot delete a jump from", c, err);
            else
                *changed = true;
        }
    }
    free(chains);
    return rc;
}

int nsi_table_prepare(const nsi_iptc_ops *ops, const nsi_plan *plan, void **handle, bool *changed,
                      ns_err *err)
{
    *handle = NULL;
    *changed = false;
    errno = 0;
    void *h = ops->init("nat");
    if (!h)
        return init_error(ops, errno, err);

    int rc = remove_jumps(ops, h, plan == NULL, changed, err);
    if (rc)
        goto fail;

    if (plan) {
        /* Reuse existing chains (flushed) so that a second run replaces, never duplicates. */
        for (int c = NSI_FIRST_OWN_CHAIN; c < NSI_CHAIN_COUNT_; c++) {
            const char *name = nsi_chain_name((nsi_chain)c);
            errno = 0;
            if (ops->is_chain(name, h)) {
                if (!ops->flush_entries(name, h)) {
                    rc = op_error(ops, "cannot flush chain", name, err);
                    goto fail;
                }
            } else if (!ops->create_chain(name, h)) {
                rc = op_error(ops, "cannot create chain", name, err);
                goto fail;
            }
        }
        for (size_t i = 0; i < plan->n; i++) {
            errno = 0;
            if (!ops->append_rule(&plan->rules[i], h)) {
                rc = op_error(ops, "cannot append a rule to", nsi_chain_name(plan->rules[i].chain),
                              err);
                goto fail;
            }
        }
        *changed = true;
    } else {
        /* Flush all first: our chains jump to each other, and a referenced chain cannot go. */
        for (int c = NSI_FIRST_OWN_CHAIN; c < NSI_CHAIN_COUNT_; c++) {
            const char *name = nsi_chain_name((nsi_chain)c);
            errno = 0;
            if (ops->is_chain(name, h) && !ops->flush_entries(name, h)) {
                rc = op_error(ops, "cannot flush chain", name, err);
                goto fail;
            }
        }
        for (int c = NSI_FIRST_OWN_CHAIN; c < NSI_CHAIN_COUNT_; c++) {
            const char *name = nsi_chain_name((nsi_chain)c);
            errno = 0;
            if (!ops->is_chain(name, h))
                continue;
            if (!ops->delete_chain(name, h)) {
                rc = op_error(ops, "cannot delete chain", name, err);
                goto fail;
            }
            *changed = true;
        }
    }
    *handle = h;
    return 0;
fail:
    ops->free(h);
    *changed = false;
    return rc;
}

int nsi_table_commit(const nsi_iptc_ops *ops, void *handle, ns_err *err)
{
    errno = 0;
    int ok = ops->commit(handle);
    int e = errno ? errno : EIO;
    ops->free(handle);
    if (ok)
        return 0;
    switch (e) {
    case EPERM:
    case EACCES:
        return ns_errorf(err, -EPERM,
                         "%s: permission denied writing the nat table: nutshell-init needs "
                         "CAP_NET_ADMIN (%s)",
                         ops->name, ops->strerror(e));
    case ENOENT:
        return ns_errorf(err, -ENOENT,
                         "%s: the kernel refused the rules because a match or target is missing "
                         "(tcp, owner or REDIRECT; %s)",
                         ops->name, ops->strerror(e));
    case EAGAIN:
        return ns_errorf(err, -EAGAIN, "%s: the nat table changed while being programmed",
                         ops->name);
    default:
        return ns_errorf(err, -e, "%s: the kernel refused the nat table: %s", ops->name,
                         ops->strerror(e));
    }
}

void nsi_table_abort(const nsi_iptc_ops *ops, void *handle)
{
    if (handle)
        ops->free(handle);
}

int nsi_table_sync(const nsi_iptc_ops *ops, const nsi_plan *plan, ns_err *err)
{
    int rc = -EAGAIN;
    for (int attempt = 0; attempt < SYNC_ATTEMPTS && rc == -EAGAIN; attempt++) {
        void *h;
        bool changed;
        rc = nsi_table_prepare(ops, plan, &h, &changed, err);
        if (rc)
            return rc;
        if (!changed) {
            nsi_table_abort(ops, h);
            return 0;
        }
        rc = nsi_table_commit(ops, h, err);
    }
    return rc;
}

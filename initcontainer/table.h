/* table.h - bringing one nat table to "exactly our rule set" or "none of our state", atomically.
 *
 * The logic is written once against a small vtable (nsi_iptc_ops): iptc_apply.c binds it to
 * libip4tc, ip6tc_apply.c to libip6tc, and the unit tests to an in-memory fake. All changes are
 * made to a libiptc snapshot and reach the kernel in one commit, so a table is never seen half
 * programmed; a concurrent writer makes the commit fail with -EAGAIN instead of being lost.
 */
#ifndef NSI_TABLE_H
#define NSI_TABLE_H

#include "err.h"
#include "plan.h"

#include <stdbool.h>

typedef struct nsi_iptc_ops {
    const char *name; /* "iptables" or "ip6tables", for messages */
    int family;       /* AF_INET or AF_INET6 */
    /* libiptc semantics: NULL/0 on failure with errno set. */
    void *(*init)(const char *table);
    void (*free)(void *h);
    const char *(*first_chain)(void *h);
    const char *(*next_chain)(void *h);
    int (*builtin)(const char *chain, void *h);
    int (*is_chain)(const char *chain, void *h);
    int (*create_chain)(const char *chain, void *h);
    int (*flush_entries)(const char *chain, void *h);
    int (*delete_chain)(const char *chain, void *h);
    int (*delete_num_entry)(const char *chain, unsigned int num, void *h);
    /* Target name of each rule of `chain` in order (NULL at the end): a chain name for jumps,
     * "RETURN"/"ACCEPT"... for verdicts, the extension name otherwise. */
    const char *(*first_rule_target)(const char *chain, void *h);
    const char *(*next_rule_target)(void *h);
    /* Appends the planned rule (encoded by the binding) to its chain. */
    int (*append_rule)(const nsi_rule *r, void *h);
    int (*commit)(void *h);
    const char *(*strerror)(int err);
} nsi_iptc_ops;

/* Opens the nat table and changes the snapshot so that committing it leaves `plan` installed
 * (plan != NULL) or no Nutshell state at all (plan == NULL, --cleanup). Nutshell state is: the
 * four NUTSHELL_* chains and the rules of built-in chains that jump to them; nothing else is
 * touched. On success *handle is the prepared snapshot (commit or free it with the functions
 * below) and *changed says whether the snapshot differs from the kernel's state in a way that
 * needs a commit (cleanup with nothing to remove: false). Returns 0 or a negative errno with
 * `err` set: -EPERM (no CAP_NET_ADMIN), -ENOENT (no nat table), -EMLINK (a foreign chain jumps
 * into a NUTSHELL_* chain, on cleanup), -EINVAL/-ENOMEM. */
int nsi_table_prepare(const nsi_iptc_ops *ops, const nsi_plan *plan, void **handle, bool *changed,
                      ns_err *err);

/* Commits a prepared snapshot in one atomic replace and frees it. Returns 0 or a negative errno
 * with `err` set (-EAGAIN if the table changed since prepare: prepare again). */
int nsi_table_commit(const nsi_iptc_ops *ops, void *handle, ns_err *err);

/* Frees a prepared snapshot without committing; accepts NULL. */
void nsi_table_abort(const nsi_iptc_ops *ops, void *handle);

/* Prepare + commit, retrying a few times on -EAGAIN. For --cleanup pass plan == NULL. */
int nsi_table_sync(const nsi_iptc_ops *ops, const nsi_plan *plan, ns_err *err);

#endif

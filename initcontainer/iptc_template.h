/* iptc_template.h - nsi_iptc_ops over one libiptc flavour, written once for both.
 *
 * libip4tc and libip6tc have the same API under different names (iptc_commit,
 * ip6tc_commit) and entry types, so iptc_apply.c and ip6tc_apply.c each define these
 * macros and include this file, as iptables' own libip6tc.c does with libiptc.c:
 *   TC(fn)          the library's function: iptc_##fn or ip6tc_##fn
 *   TC_ENTRY        struct ipt_entry or struct ip6t_entry
 *   TC_ENTRY_FIELD  the member of nsi_entry.u holding that entry (v4 or v6)
 *   TC_FAMILY       AF_INET or AF_INET6
 *   TC_NAME         "iptables" or "ip6tables", for messages
 *   TC_OPS          the name of the nsi_iptc_ops to define
 * Not a normal header: no include guard, include it once per .c file, last.
 */
#include "entry.h"

#include <errno.h>
#include <stdlib.h>

/* libiptc's rule iterator needs the previous entry; keep it beside the handle. */
typedef struct tc_handle {
    struct xtc_handle *h;
    const TC_ENTRY *cur;
} tc_handle;

static void *tc_init(const char *table)
{
    tc_handle *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->h = TC(init)(table);
    if (!w->h) {
        int e = errno;
        free(w);
        errno = e;
        return NULL;
    }
    return w;
}

static void tc_free(void *p)
{
    tc_handle *w = p;
    if (!w)
        return;
    if (w->h)
        TC(free)(w->h);
    free(w);
}

static const char *tc_first_chain(void *p)
{
    return TC(first_chain)(((tc_handle *)p)->h);
}

static const char *tc_next_chain(void *p)
{
    return TC(next_chain)(((tc_handle *)p)->h);
}

static int tc_builtin(const char *chain, void *p)
{
    return TC(builtin)(chain, ((tc_handle *)p)->h);
}

static int tc_is_chain(const char *chain, void *p)
{
    return TC(is_chain)(chain, ((tc_handle *)p)->h);
}

static int tc_create_chain(const char *chain, void *p)
{
    return TC(create_chain)(chain, ((tc_handle *)p)->h);
}

static int tc_flush_entries(const char *chain, void *p)
{
    return TC(flush_entries)(chain, ((tc_handle *)p)->h);
}

static int tc_delete_chain(const char *chain, void *p)
{
    return TC(delete_chain)(chain, ((tc_handle *)p)->h);
}

static int tc_delete_num_entry(const char *chain, unsigned int num, void *p)
{
    return TC(delete_num_entry)(chain, num, ((tc_handle *)p)->h);
}

static const char *tc_first_rule_target(const char *chain, void *p)
{
    tc_handle *w = p;
    w->cur = TC(first_rule)(chain, w->h);
    return w->cur ? TC(get_target)(w->cur, w->h) : NULL;
}

static const char *tc_next_rule_target(void *p)
{
    tc_handle *w = p;
    if (!w->cur)
        return NULL;
    w->cur = TC(next_rule)(w->cur, w->h);
    return w->cur ? TC(get_target)(w->cur, w->h) : NULL;
}

static int tc_append_rule(const nsi_rule *r, void *p)
{
    nsi_entry e;
    if (nsi_entry_build(r, TC_FAMILY, &e) != 0) {
        errno = EINVAL;
        return 0;
    }
    return TC(append_entry)(nsi_chain_name(r->chain), &e.u.TC_ENTRY_FIELD, ((tc_handle *)p)->h);
}

static int tc_commit(void *p)
{
    return TC(commit)(((tc_handle *)p)->h);
}

const nsi_iptc_ops TC_OPS = {
    .name = TC_NAME,
    .family = TC_FAMILY,
    .init = tc_init,
    .free = tc_free,
    .first_chain = tc_first_chain,
    .next_chain = tc_next_chain,
    .builtin = tc_builtin,
    .is_chain = tc_is_chain,
    .create_chain = tc_create_chain,
    .flush_entries = tc_flush_entries,
    .delete_chain = tc_delete_chain,
    .delete_num_entry = tc_delete_num_entry,
    .first_rule_target = tc_first_rule_target,
    .next_rule_target = tc_next_rule_target,
    .append_rule = tc_append_rule,
    .commit = tc_commit,
    .strerror = TC(strerror),
};

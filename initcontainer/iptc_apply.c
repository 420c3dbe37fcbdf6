/* iptc_apply.c - nsi_iptc_ops over libip4tc (IPv4 nat table). Twin: ip6tc_apply.c. */
#include "iptc_apply.h"

#include "entry.h"

#include <errno.h>
#include <libiptc/libiptc.h>
#include <stdlib.h>

/* libiptc's rule iterator needs the previous entry; keep it beside the handle. */
typedef struct v4_handle {
    struct xtc_handle *h;
    const struct ipt_entry *cur;
} v4_handle;

static void *v4_init(const char *table)
{
    v4_handle *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->h = iptc_init(table);
    if (!w->h) {
        int e = errno;
        free(w);
        errno = e;
        return NULL;
    }
    return w;
}

static void v4_free(void *p)
{
    v4_handle *w = p;
    if (!w)
        return;
    if (w->h)
        iptc_free(w->h);
    free(w);
}

static const char *v4_first_chain(void *p)
{
    return iptc_first_chain(((v4_handle *)p)->h);
}

static const char *v4_next_chain(void *p)
{
    return iptc_next_chain(((v4_handle *)p)->h);
}

static int v4_builtin(const char *chain, void *p)
{
    return iptc_builtin(chain, ((v4_handle *)p)->h);
}

static int v4_is_chain(const char *chain, void *p)
{
    return iptc_is_chain(chain, ((v4_handle *)p)->h);
}

static int v4_create_chain(const char *chain, void *p)
{
    return iptc_create_chain(chain, ((v4_handle *)p)->h);
}

static int v4_flush_entries(const char *chain, void *p)
{
    return iptc_flush_entries(chain, ((v4_handle *)p)->h);
}

static int v4_delete_chain(const char *chain, void *p)
{
    return iptc_delete_chain(chain, ((v4_handle *)p)->h);
}

static int v4_delete_num_entry(const char *chain, unsigned int num, void *p)
{
    return iptc_delete_num_entry(chain, num, ((v4_handle *)p)->h);
}

static const char *v4_first_rule_target(const char *chain, void *p)
{
    v4_handle *w = p;
    w->cur = iptc_first_rule(chain, w->h);
    return w->cur ? iptc_get_target(w->cur, w->h) : NULL;
}

static const char *v4_next_rule_target(void *p)
{
    v4_handle *w = p;
    if (!w->cur)
        return NULL;
    w->cur = iptc_next_rule(w->cur, w->h);
    return w->cur ? iptc_get_target(w->cur, w->h) : NULL;
}

static int v4_append_rule(const nsi_rule *r, void *p)
{
    nsi_entry e;
    if (nsi_entry_build(r, AF_INET, &e) != 0) {
        errno = EINVAL;
        return 0;
    }
    return iptc_append_entry(nsi_chain_name(r->chain), &e.u.v4, ((v4_handle *)p)->h);
}

static int v4_commit(void *p)
{
    return iptc_commit(((v4_handle *)p)->h);
}

const nsi_iptc_ops nsi_iptc4_ops = {
    .name = "iptables",
    .family = AF_INET,
    .init = v4_init,
    .free = v4_free,
    .first_chain = v4_first_chain,
    .next_chain = v4_next_chain,
    .builtin = v4_builtin,
    .is_chain = v4_is_chain,
    .create_chain = v4_create_chain,
    .flush_entries = v4_flush_entries,
    .delete_chain = v4_delete_chain,
    .delete_num_entry = v4_delete_num_entry,
    .first_rule_target = v4_first_rule_target,
    .next_rule_target = v4_next_rule_target,
    .append_rule = v4_append_rule,
    .commit = v4_commit,
    .strerror = iptc_strerror,
};

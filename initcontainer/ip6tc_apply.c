/* ip6tc_apply.c - nsi_iptc_ops over libip6tc (IPv6 nat table). Twin: iptc_apply.c. */
#include "ip6tc_apply.h"

#include "entry.h"

#include <errno.h>
#include <libiptc/libip6tc.h>
#include <stdlib.h>

/* libiptc's rule iterator needs the previous entry; keep it beside the handle. */
typedef struct v6_handle {
    struct xtc_handle *h;
    const struct ip6t_entry *cur;
} v6_handle;

static void *v6_init(const char *table)
{
    v6_handle *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->h = ip6tc_init(table);
    if (!w->h) {
        int e = errno;
        free(w);
        errno = e;
        return NULL;
    }
    return w;
}

static void v6_free(void *p)
{
    v6_handle *w = p;
    if (!w)
        return;
    if (w->h)
        ip6tc_free(w->h);
    free(w);
}

static const char *v6_first_chain(void *p)
{
    return ip6tc_first_chain(((v6_handle *)p)->h);
}

static const char *v6_next_chain(void *p)
{
    return ip6tc_next_chain(((v6_handle *)p)->h);
}

static int v6_builtin(const char *chain, void *p)
{
    return ip6tc_builtin(chain, ((v6_handle *)p)->h);
}

static int v6_is_chain(const char *chain, void *p)
{
    return ip6tc_is_chain(chain, ((v6_handle *)p)->h);
}

static int v6_create_chain(const char *chain, void *p)
{
    return ip6tc_create_chain(chain, ((v6_handle *)p)->h);
}

static int v6_flush_entries(const char *chain, void *p)
{
    return ip6tc_flush_entries(chain, ((v6_handle *)p)->h);
}

static int v6_delete_chain(const char *chain, void *p)
{
    return ip6tc_delete_chain(chain, ((v6_handle *)p)->h);
}

static int v6_delete_num_entry(const char *chain, unsigned int num, void *p)
{
    return ip6tc_delete_num_entry(chain, num, ((v6_handle *)p)->h);
}

static const char *v6_first_rule_target(const char *chain, void *p)
{
    v6_handle *w = p;
    w->cur = ip6tc_first_rule(chain, w->h);
    return w->cur ? ip6tc_get_target(w->cur, w->h) : NULL;
}

static const char *v6_next_rule_target(void *p)
{
    v6_handle *w = p;
    if (!w->cur)
        return NULL;
    w->cur = ip6tc_next_rule(w->cur, w->h);
    return w->cur ? ip6tc_get_target(w->cur, w->h) : NULL;
}

static int v6_append_rule(const nsi_rule *r, void *p)
{
    nsi_entry e;
    if (nsi_entry_build(r, AF_INET6, &e) != 0) {
        errno = EINVAL;
        return 0;
    }
    return ip6tc_append_entry(nsi_chain_name(r->chain), &e.u.v6, ((v6_handle *)p)->h);
}

static int v6_commit(void *p)
{
    return ip6tc_commit(((v6_handle *)p)->h);
}

const nsi_iptc_ops nsi_iptc6_ops = {
    .name = "ip6tables",
    .family = AF_INET6,
    .init = v6_init,
    .free = v6_free,
    .first_chain = v6_first_chain,
    .next_chain = v6_next_chain,
    .builtin = v6_builtin,
    .is_chain = v6_is_chain,
    .create_chain = v6_create_chain,
    .flush_entries = v6_flush_entries,
    .delete_chain = v6_delete_chain,
    .delete_num_entry = v6_delete_num_entry,
    .first_rule_target = v6_first_rule_target,
    .next_rule_target = v6_next_rule_target,
    .append_rule = v6_append_rule,
    .commit = v6_commit,
    .strerror = ip6tc_strerror,
};

/* test_table.c - the table reconciler (idempotent apply, exact cleanup, errors) over a fake
 * libiptc that behaves like the real one where it matters: sorted user chains, reference
 * counting on delete, and a commit that fails with EAGAIN when told to. */
#include "tests.h"

#include "buf.h"
#include "plan.h"
#include "render.h"
#include "table.h"

#include <arpa/inet.h>
#include <stdlib.h>

#define FAKE_CHAINS 16
#define FAKE_RULES  64

typedef struct fake_rule {
    char target[32];
    char text[256];
} fake_rule;

typedef struct fake_chain {
    char name[32];
    bool builtin;
    size_t n;
    fake_rule rules[FAKE_RULES];
} fake_chain;

typedef struct fake_table {
    size_t n;
    fake_chain chains[FAKE_CHAINS];
} fake_table;

typedef struct fake_handle {
    fake_table t;
    size_t chain_it;
    const fake_chain *rule_chain;
    size_t rule_it;
} fake_handle;

/* The "kernel" and the failures it should produce. */
static fake_table kernel;
static int init_errno;
static int commit_errno;
static int commit_eagain; /* fail this many commits with EAGAIN first */
static int commits;

static fake_chain *find(fake_table *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->chains[i].name, name) == 0)
            return &t->chains[i];
    return NULL;
}

static void add_chain(fake_table *t, const char *name, bool builtin)
{
    /* libiptc keeps built-ins first, then user chains sorted by name. */
    size_t at = t->n;
    if (!builtin)
        for (size_t i = 0; i < t->n; i++)
            if (!t->chains[i].builtin && strcmp(t->chains[i].name, name) > 0) {
                at = i;
                break;
            }
    memmove(&t->chains[at + 1], &t->chains[at], (t->n - at) * sizeof(fake_chain));
    memset(&t->chains[at], 0, sizeof(fake_chain));
    snprintf(t->chains[at].name, sizeof(t->chains[at].name), "%s", name);
    t->chains[at].builtin = builtin;
    t->n++;
}

static void add_raw_rule(fake_table *t, const char *chain, const char *target, const char *text)
{
    fake_chain *c = find(t, chain);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    fake_rule *r = &c->rules[c->n++];
    snprintf(r->target, sizeof(r->target), "%s", target);
    snprintf(r->text, sizeof(r->text), "%s", text);
}

static void reset_kernel(void)
{
    memset(&kernel, 0, sizeof(kernel));
    add_chain(&kernel, "PREROUTING", true);
    add_chain(&kernel, "INPUT", true);
    add_chain(&kernel, "OUTPUT", true);
    add_chain(&kernel, "POSTROUTING", true);
    init_errno = commit_errno = commit_eagain = commits = 0;
}

static void *f_init(const char *table)
{
    if (init_errno) {
        errno = init_errno;
        return NULL;
    }
    CU_ASSERT_STRING_EQUAL(table, "nat");
    fake_handle *h = calloc(1, sizeof(*h));
    h->t = kernel;
    return h;
}

static void f_free(void *h)
{
    free(h);
}

static const char *f_first_chain(void *p)
{
    fake_handle *h = p;
    h->chain_it = 0;
    return h->t.n ? h->t.chains[0].name : NULL;
}

static const char *f_next_chain(void *p)
{
    fake_handle *h = p;
    return ++h->chain_it < h->t.n ? h->t.chains[h->chain_it].name : NULL;
}

static int f_builtin(const char *chain, void *p)
{
    fake_chain *c = find(&((fake_handle *)p)->t, chain);
    return c && c->builtin;
}

static int f_is_chain(const char *chain, void *p)
{
    return find(&((fake_handle *)p)->t, chain) != NULL;
}

static int f_create_chain(const char *chain, void *p)
{
    fake_handle *h = p;
    if (find(&h->t, chain)) {
        errno = EEXIST;
        return 0;
    }
    add_chain(&h->t, chain, false);
    return 1;
}

static int f_flush_entries(const char *chain, void *p)
{
    fake_chain *c = find(&((fake_handle *)p)->t, chain);
    if (!c) {
        errno = ENOENT;
        return 0;
    }
    c->n = 0;
    return 1;
}

static int f_delete_chain(const char *chain, void *p)
{
    fake_handle *h = p;
    fake_chain *c = find(&h->t, chain);
    if (!c || c->builtin) {
        errno = c ? EINVAL : ENOENT;
        return 0;
    }
    for (size_t i = 0; i < h->t.n; i++)
        for (size_t j = 0; j < h->t.chains[i].n; j++)
            if (strcmp(h->t.chains[i].rules[j].target, chain) == 0) {
                errno = EMLINK;
                return 0;
            }
    if (c->n) {
        errno = ENOTEMPTY;
        return 0;
    }
    size_t at = (size_t)(c - h->t.chains);
    memmove(c, c + 1, (h->t.n - at - 1) * sizeof(fake_chain));
    h->t.n--;
    return 1;
}

static int f_delete_num_entry(const char *chain, unsigned int num, void *p)
{
    fake_chain *c = find(&((fake_handle *)p)->t, chain);
    if (!c || num >= c->n) {
        errno = E2BIG;
        return 0;
    }
    memmove(&c->rules[num], &c->rules[num + 1], (c->n - num - 1) * sizeof(fake_rule));
    c->n--;
    return 1;
}

static const char *f_first_rule_target(const char *chain, void *p)
{
    fake_handle *h = p;
    h->rule_chain = find(&h->t, chain);
    h->rule_it = 0;
    return h->rule_chain && h->rule_chain->n ? h->rule_chain->rules[0].target : NULL;
}

static const char *f_next_rule_target(void *p)
{
    fake_handle *h = p;
    if (!h->rule_chain || ++h->rule_it >= h->rule_chain->n)
        return NULL;
    return h->rule_chain->rules[h->rule_it].target;
}

static int f_append_rule(const nsi_rule *r, void *p)
{
    fake_handle *h = p;
    fake_chain *c = find(&h->t, nsi_chain_name(r->chain));
    if (!c || c->n == FAKE_RULES) {
        errno = c ? ENOMEM : ENOENT;
        return 0;
    }
    const char *target = r->target == NSI_TARGET_JUMP     ? nsi_chain_name(r->jump)
                         : r->target == NSI_TARGET_RETURN ? "RETURN"
                                                          : "REDIRECT";
    if (r->target == NSI_TARGET_JUMP && !find(&h->t, target)) {
        errno = ENOENT;
        return 0;
    }
    ns_buf b;
    char store[256];
    ns_buf_init_static(&b, store, sizeof(store));
    nsi_render_rule(r, &b);
    add_raw_rule(&h->t, c->name, target, ns_buf_cstr(&b));
    return 1;
}

static int f_commit(void *p)
{
    commits++;
    if (commit_eagain > 0) {
        commit_eagain--;
        errno = EAGAIN;
        return 0;
    }
    if (commit_errno) {
        errno = commit_errno;
        return 0;
    }
    kernel = ((fake_handle *)p)->t;
    return 1;
}

static const char *f_strerror(int e)
{
    return strerror(e);
}

static const nsi_iptc_ops fake_ops = {
    .name = "fake-iptables",
    .family = AF_INET,
    .init = f_init,
    .free = f_free,
    .first_chain = f_first_chain,
    .next_chain = f_next_chain,
    .builtin = f_builtin,
    .is_chain = f_is_chain,
    .create_chain = f_create_chain,
    .flush_entries = f_flush_entries,
    .delete_chain = f_delete_chain,
    .delete_num_entry = f_delete_num_entry,
    .first_rule_target = f_first_rule_target,
    .next_rule_target = f_next_rule_target,
    .append_rule = f_append_rule,
    .commit = f_commit,
    .strerror = f_strerror,
};

/* The kernel's table as text: ":CHAIN" lines then each rule, like a tiny iptables-save. */
static char *dump(void)
{
    ns_buf b;
    ns_buf_init(&b);
    for (size_t i = 0; i < kernel.n; i++) {
        const fake_chain *c = &kernel.chains[i];
        ns_buf_printf(&b, ":%s\n", c->name);
        for (size_t j = 0; j < c->n; j++)
            ns_buf_printf(&b, "%s|%s\n", c->rules[j].target, c->rules[j].text);
    }
    return ns_buf_take(&b);
}

static size_t count_target(const char *chain, const char *target)
{
    fake_chain *c = find(&kernel, chain);
    size_t n = 0;
    for (size_t j = 0; c && j < c->n; j++)
        n += strcmp(c->rules[j].target, target) == 0;
    return n;
}

/* Someone else's state that must survive every apply and cleanup. */
static void add_foreign_state(void)
{
    add_chain(&kernel, "CNI_HOSTPORT", false);
    add_raw_rule(&kernel, "CNI_HOSTPORT", "DNAT", "-A CNI_HOSTPORT -j DNAT");
    add_raw_rule(&kernel, "PREROUTING", "CNI_HOSTPORT", "-A PREROUTING -j CNI_HOSTPORT");
    add_raw_rule(&kernel, "POSTROUTING", "MASQUERADE", "-A POSTROUTING -j MASQUERADE");
    /* Looks like ours, is not: cleanup must leave it. */
    add_chain(&kernel, "NUTSHELL_EXTRA", false);
    add_raw_rule(&kernel, "NUTSHELL_EXTRA", "RETURN", "-A NUTSHELL_EXTRA -j RETURN");
}

static void default_plan(nsi_plan *p)
{
    nsi_config c;
    nsi_config_defaults(&c);
    CU_ASSERT_EQUAL_FATAL(nsi_plan_build(&c, AF_INET, p), 0);
}

static void test_apply_twice_then_cleanup(void)
{
    reset_kernel();
    add_foreign_state();
    char *before = dump();
    nsi_plan p;
    default_plan(&p);
    ns_err err = {0};

    NS_ASSERT_INT_EQ(nsi_table_sync(&fake_ops, &p, &err), 0);
    NS_ASSERT_INT_EQ(count_target("PREROUTING", "NUTSHELL_INBOUND"), 1);
    NS_ASSERT_INT_EQ(count_target("OUTPUT", "NUTSHELL_OUTPUT"), 1);
    size_t own = 0;
    for (int c = NSI_FIRST_OWN_CHAIN; c < NSI_CHAIN_COUNT_; c++) {
        fake_chain *fc = find(&kernel, nsi_chain_name((nsi_chain)c));
        CU_ASSERT_PTR_NOT_NULL_FATAL(fc);
        own += fc->n;
    }
    NS_ASSERT_INT_EQ(own + 2, p.n); /* + the two jumps from built-ins */
    char *once = dump();

    NS_ASSERT_INT_EQ(nsi_table_sync(&fake_ops, &p, &err), 0);
    char *twice = dump();
    NS_ASSERT_STR_EQ(twice, once); /* exactly one rule set */

    NS_ASSERT_INT_EQ(nsi_table_sync(&fake_ops, NULL, &err), 0);
    char *after = dump();
    NS_ASSERT_STR_EQ(after, before); /* everything ours gone, nothing else touched */

    /* Cleanup of a clean table commits nothing. */
    int c0 = commits;
    NS_ASSERT_INT_EQ(nsi_table_sync(&fake_ops, NULL, &err), 0);
    NS_ASSERT_INT_EQ(commits, c0);

    free(before);
    free(once);
    free(twice);
    free(after);
    nsi_plan_free(&p);
}

static void test_apply_repairs_stale_state(void)
{
    reset_kernel();
    /* A crashed or older run: junk in our chain, a duplicated jump, a missing chain. */
    add_chain(&kernel, "NUTSHELL_OUTPUT", false);
    add_raw_rule(&kernel, "NUTSHELL_OUTPUT", "DROP", "-A NUTSHELL_OUTPUT -j DROP");
    add_raw_rule(&kernel, "OUTPUT", "NUTSHELL_OUTPUT", "-A OUTPUT -j NUTSHELL_OUTPUT");
    add_raw_rule(&kernel, "OUTPUT", "ACCEPT", "-A OUTPUT -j ACCEPT");
    add_raw_rule(&kernel, "OUTPUT", "NUTSHELL_OUTPUT", "-A OUTPUT -j NUTSHELL_OUTPUT");
    nsi_plan p;
    default_plan(&p);
    ns_err err = {0};
    NS_ASSERT_INT_EQ(nsi_table_sync(&fake_ops, &p, &err), 0);
    NS_ASSERT_INT_EQ(count_target("OUTPUT", "NUTSHELL_OUTPUT"), 1);
    NS_ASSERT_INT_EQ(count_target("OUTPUT", "ACCEPT"), 1);
    NS_ASSERT_INT_EQ(count_target("NUTSHELL_OUTPUT", "DROP"), 0);
    /* The foreign ACCEPT keeps its place before our (re-appended) jump. */
    NS_ASSERT_STR_EQ(find(&kernel, "OUTPUT")->rules[0].target, "ACCEPT");
    nsi_plan_free(&p);
}

static void test_cleanup_refuses_foreign_jump(void)
{
    reset_kernel();
    nsi_plan p;
    default_plan(&p);
    ns_err err = {0};
    NS_ASSERT_INT_EQ(nsi_table_sync(&fake_ops, &p, &err), 0);
    add_chain(&kernel, "OTHER", false);
    add_raw_rule(&kernel, "OTHER", "NUTSHELL_REDIRECT", "-A OTHER -j NUTSHELL_REDIRECT");
    char *before = dump();
    /* Apply tolerates it (the chain is flushed and refilled, never deleted). */
    NS_ASSERT_INT_EQ(nsi_table_sync(&fake_ops, &p, &err), 0);
    /* Cleanup would have to break someone else's rule: refuse, change nothing. */
    NS_ASSERT_INT_EQ(nsi_table_sync(&fake_ops, NULL, &err), -EMLINK);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "OTHER"));
    char *after = dump();
    NS_ASSERT_STR_EQ(after, before);
    free(before);
    free(after);
    nsi_plan_free(&p);
}

static void test_init_errors(void)
{
    reset_kernel();
    ns_err err = {0};
    nsi_plan p;
    default_plan(&p);
    init_errno = EPERM;
    NS_ASSERT_INT_EQ(nsi_table_sync(&fake_ops, &p, &err), -EPERM);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "CAP_NET_ADMIN"));
    init_errno = ENOENT;
    NS_ASSERT_INT_EQ(nsi_table_sync(&fake_ops, &p, &err), -ENOENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "iptable_nat"));
    init_errno = ENOPROTOOPT;
    NS_ASSERT_INT_EQ(nsi_table_sync(&fake_ops, &p, &err), -ENOENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "ip_tables"));
    nsi_plan_free(&p);
}

static void test_commit_errors_and_retry(void)
{
    reset_kernel();
    nsi_plan p;
    default_plan(&p);
    ns_err err = {0};
    char *empty = dump();

    commit_eagain = 2; /* someone else wrote twice: we re-read and win the third time */
    NS_ASSERT_INT_EQ(nsi_table_sync(&fake_ops, &p, &err), 0);
    NS_ASSERT_INT_EQ(commits, 3);
    NS_ASSERT_INT_EQ(count_target("PREROUTING", "NUTSHELL_INBOUND"), 1);

    reset_kernel();
    commit_eagain = 100;
    NS_ASSERT_INT_EQ(nsi_table_sync(&fake_ops, &p, &err), -EAGAIN);
    CU_ASSERT_TRUE(commits < 10); /* bounded */

    reset_kernel();
    commit_errno = ENOENT;
    NS_ASSERT_INT_EQ(nsi_table_sync(&fake_ops, &p, &err), -ENOENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "match or target"));
    char *after = dump();
    NS_ASSERT_STR_EQ(after, empty); /* a failed commit changes nothing */

    reset_kernel();
    commit_errno = EPERM;
    NS_ASSERT_INT_EQ(nsi_table_sync(&fake_ops, &p, &err), -EPERM);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "CAP_NET_ADMIN"));
    free(empty);
    free(after);
    nsi_plan_free(&p);
}

static void test_prepare_abort(void)
{
    reset_kernel();
    nsi_plan p;
    default_plan(&p);
    ns_err err = {0};
    void *h;
    bool changed;
    NS_ASSERT_INT_EQ(nsi_table_prepare(&fake_ops, &p, &h, &changed, &err), 0);
    CU_ASSERT_TRUE(changed);
    nsi_table_abort(&fake_ops, h);
    NS_ASSERT_INT_EQ(kernel.n, 4); /* nothing reached the kernel */
    nsi_table_abort(&fake_ops, NULL);
    NS_ASSERT_INT_EQ(nsi_table_prepare(&fake_ops, NULL, &h, &changed, &err), 0);
    CU_ASSERT_FALSE(changed);
    nsi_table_abort(&fake_ops, h);
    nsi_plan_free(&p);
}

const ns_test nsi_table_tests[] = {
    {"apply twice then cleanup", test_apply_twice_then_cleanup},
    {"apply repairs stale state", test_apply_repairs_stale_state},
    {"cleanup refuses foreign jump", test_cleanup_refuses_foreign_jump},
    {"init errors", test_init_errors},
    {"commit errors and retry", test_commit_errors_and_retry},
    {"prepare and abort", test_prepare_abort},
    {NULL, NULL},
};

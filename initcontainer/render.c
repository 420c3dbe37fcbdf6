/* render.c - iptables-save text from planned rules (pure). */
#include "render.h"

#include <arpa/inet.h>

static void put_addr(ns_buf *b, const char *flag, bool inv, const ns_cidr *c)
{
    /* iptables-save leaves out a match-everything address, so must we. */
    if (c->prefix == 0 && !inv)
        return;
    char text[INET6_ADDRSTRLEN + 8];
    ns_cidr_format(c, text, sizeof(text));
    ns_buf_printf(b, "%s %s %s", inv ? " !" : "", flag, text);
}

void nsi_render_rule(const nsi_rule *r, ns_buf *b)
{
    ns_buf_printf(b, "-A %s", nsi_chain_name(r->chain));
    if (r->has_src)
        put_addr(b, "-s", r->src_inv, &r->src);
    if (r->has_dst)
        put_addr(b, "-d", r->dst_inv, &r->dst);
    if (r->out_lo)
        ns_buf_puts(b, " -o lo");
    if (r->tcp)
        ns_buf_puts(b, " -p tcp");
    if (r->dport)
        ns_buf_printf(b, " -m tcp%s --dport %u", r->dport_inv ? " !" : "", (unsigned)r->dport);
    if (r->owner != NSI_OWNER_NONE)
        ns_buf_printf(b, " -m owner%s --%s-owner %u", r->owner_inv ? " !" : "",
                      r->owner == NSI_OWNER_UID ? "uid" : "gid", (unsigned)r->owner_id);
    switch (r->target) {
    case NSI_TARGET_JUMP:
        ns_buf_printf(b, " -j %s", nsi_chain_name(r->jump));
        break;
    case NSI_TARGET_RETURN:
        ns_buf_puts(b, " -j RETURN");
        break;
    case NSI_TARGET_REDIRECT:
        ns_buf_printf(b, " -j REDIRECT --to-ports %u", (unsigned)r->to_port);
        break;
    }
    ns_buf_putc(b, '\n');
}

void nsi_render_table(const nsi_plan *p, ns_buf *b)
{
    ns_buf_puts(b, "*nat\n");
    for (int c = 0; c < NSI_CHAIN_COUNT_; c++)
        ns_buf_printf(b, ":%s %s [0:0]\n", nsi_chain_name((nsi_chain)c),
                      nsi_chain_is_builtin((nsi_chain)c) ? "ACCEPT" : "-");
    for (int c = 0; c < NSI_CHAIN_COUNT_; c++)
        for (size_t i = 0; i < p->n; i++)
            if (p->rules[i].chain == (nsi_chain)c)
                nsi_render_rule(&p->rules[i], b);
    ns_buf_puts(b, "COMMIT\n");
}

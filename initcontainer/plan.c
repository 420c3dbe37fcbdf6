/* plan.c - Istio's REDIRECT-mode rule set, planned as data for iptables-save text and libiptc. */
#include "plan.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const chain_names[NSI_CHAIN_COUNT_] = {
    [NSI_CHAIN_PREROUTING] = "PREROUTING",
    [NSI_CHAIN_INPUT] = "INPUT",
    [NSI_CHAIN_OUTPUT] = "OUTPUT",
    [NSI_CHAIN_POSTROUTING] = "POSTROUTING",
    [NSI_CHAIN_INBOUND] = "NUTSHELL_INBOUND",
    [NSI_CHAIN_IN_REDIRECT] = "NUTSHELL_IN_REDIRECT",
    [NSI_CHAIN_OUTBOUND] = "NUTSHELL_OUTPUT",
    [NSI_CHAIN_REDIRECT] = "NUTSHELL_REDIRECT",
};

const char *nsi_chain_name(nsi_chain c)
{
    return (unsigned)c < NSI_CHAIN_COUNT_ ? chain_names[c] : "?";
}

bool nsi_chain_is_builtin(nsi_chain c)
{
    return c < NSI_FIRST_OWN_CHAIN;
}

bool nsi_is_own_chain_name(const char *name)
{
    for (int c = NSI_FIRST_OWN_CHAIN; c < NSI_CHAIN_COUNT_; c++)
        if (strcmp(name, chain_names[c]) == 0)
            return true;
    return false;
}

/* Appends `r` (growing the array); returns 0 or -ENOMEM. */
static int add(nsi_plan *p, const nsi_rule *r)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 32;
        nsi_rule *nr = realloc(p->rules, cap * sizeof(*nr));
        if (!nr)
            return -ENOMEM;
        p->rules = nr;
        p->cap = cap;
    }
    p->rules[p->n++] = *r;
    return 0;
}

/* A host address of `family` (127.0.0.6, ::1, ...) as a full-length CIDR. */
static ns_cidr host(int family, const char *text)
{
    ns_cidr c = {.family = family};
    if (family == AF_INET) {
        inet_pton(AF_INET, text, &c.addr.v4);
        c.prefix = 32;
    } else {
        inet_pton(AF_INET6, text, &c.addr.v6);
        c.prefix = 128;
    }
    return c;
}

static bool is_loopback(const ns_cidr *c)
{
    if (c->family == AF_INET)
        return (ntohl(c->addr.v4.s_addr) >> 24) == 127;
    return IN6_IS_ADDR_LOOPBACK(&c->addr.v6);
}

/* Istio skips "app to app over lo stays direct" when the user asked to capture a loopback
 * destination, in either family, so that the capture actually happens. */
static bool includes_loopback(const nsi_cidrs *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (is_loopback(&l->v[i]))
            return true;
    return false;
}

/* The two rules per proxy identity that keep the proxy's own traffic out of capture, while
 * sending the proxy's connections to the pod's own (non-loopback) addresses back through
 * inbound capture, and leaving the app's own lo traffic alone. */
static int add_owner_rules(nsi_plan *p, const nsi_config *cfg, nsi_owner kind, uint32_t id,
                           bool keep_lo_direct)
{
    int family = p->family;
    int rc;
    /* proxy -> pod's own address over lo (e.g. a Service VIP resolved to this pod):
     * send it through inbound capture, as app -> proxy -> proxy -> app. */
    nsi_rule r = {.chain = NSI_CHAIN_OUTBOUND,
                  .out_lo = true,
                  .has_dst = true,
                  .dst_inv = true,
                  .dst = host(family, family == AF_INET ? "127.0.0.1" : "::1"),
                  .tcp = true,
                  .dport = cfg->tunnel_port,
                  .dport_inv = cfg->tunnel_port != 0,
                  .owner = kind,
                  .owner_id = id,
                  .target = NSI_TARGET_JUMP,
                  .jump = NSI_CHAIN_IN_REDIRECT};
    if ((rc = add(p, &r)))
        return rc;
    if (keep_lo_direct) {
        /* app -> app over lo: not the proxy, stays direct. */
        r = (nsi_rule){.chain = NSI_CHAIN_OUTBOUND,
                       .out_lo = true,
                       .owner = kind,
                       .owner_inv = true,
                       .owner_id = id,
                       .target = NSI_TARGET_RETURN};
        if ((rc = add(p, &r)))
            return rc;
    }
    /* Everything else the proxy sends goes out directly (avoids a redirect loop). */
    r = (nsi_rule){
        .chain = NSI_CHAIN_OUTBOUND, .owner = kind, .owner_id = id, .target = NSI_TARGET_RETURN};
    return add(p, &r);
}

static int build(const nsi_config *cfg, nsi_plan *p)
{
    int family = p->family;
    int rc;
    nsi_rule r;

    /* Inbound: the tunnel port, then the per-port or wildcard capture. */
    if (cfg->tunnel_port) {
        r = (nsi_rule){.chain = NSI_CHAIN_INBOUND,
                       .tcp = true,
                       .dport = cfg->tunnel_port,
                       .target = NSI_TARGET_RETURN};
        if ((rc = add(p, &r)))
            return rc;
    }
    r = (nsi_rule){.chain = NSI_CHAIN_REDIRECT,
                   .tcp = true,
                   .target = NSI_TARGET_REDIRECT,
                   .to_port = cfg->proxy_port};
    if ((rc = add(p, &r)))
        return rc;
    r = (nsi_rule){.chain = NSI_CHAIN_IN_REDIRECT,
                   .tcp = true,
                   .target = NSI_TARGET_REDIRECT,
                   .to_port = cfg->inbound_port};
    if ((rc = add(p, &r)))
        return rc;

    if (cfg->include_inbound.all || cfg->include_inbound.n > 0) {
        r = (nsi_rule){.chain = NSI_CHAIN_PREROUTING,
                       .tcp = true,
                       .target = NSI_TARGET_JUMP,
                       .jump = NSI_CHAIN_INBOUND};
        if ((rc = add(p, &r)))
            return rc;
        if (cfg->include_inbound.all) {
            for (size_t i = 0; i < cfg->exclude_inbound.n; i++) {
                r = (nsi_rule){.chain = NSI_CHAIN_INBOUND,
                               .tcp = true,
                               .dport = cfg->exclude_inbound.v[i],
                               .target = NSI_TARGET_RETURN};
                if ((rc = add(p, &r)))
                    return rc;
            }
            r = (nsi_rule){.chain = NSI_CHAIN_INBOUND,
                           .tcp = true,
                           .target = NSI_TARGET_JUMP,
                           .jump = NSI_CHAIN_IN_REDIRECT};
            if ((rc = add(p, &r)))
                return rc;
        } else {
            for (size_t i = 0; i < cfg->include_inbound.n; i++) {
                r = (nsi_rule){.chain = NSI_CHAIN_INBOUND,
                               .tcp = true,
                               .dport = cfg->include_inbound.v[i],
                               .target = NSI_TARGET_JUMP,
                               .jump = NSI_CHAIN_IN_REDIRECT};
                if ((rc = add(p, &r)))
                    return rc;
            }
        }
    }

    /* Outbound. Only TCP is ever redirected, so only TCP enters NUTSHELL_OUTPUT (Istio jumps
     * for all protocols because of its UDP DNS capture, which Nutshell does not do). */
    r = (nsi_rule){.chain = NSI_CHAIN_OUTPUT,
                   .tcp = true,
                   .target = NSI_TARGET_JUMP,
                   .jump = NSI_CHAIN_OUTBOUND};
    if ((rc = add(p, &r)))
        return rc;

    /* Port exclusions come before the loopback handling, as in Istio. */
    for (size_t i = 0; i < cfg->exclude_outbound_ports.n; i++) {
        r = (nsi_rule){.chain = NSI_CHAIN_OUTBOUND,
                       .tcp = true,
                       .dport = cfg->exclude_outbound_ports.v[i],
                       .target = NSI_TARGET_RETURN};
        if ((rc = add(p, &r)))
            return rc;
    }

    /* The proxy's passthrough connections to the app use source 127.0.0.6 (::6). */
    r = (nsi_rule){.chain = NSI_CHAIN_OUTBOUND,
                   .has_src = true,
                   .src = host(family, family == AF_INET ? "127.0.0.6" : "::6"),
                   .out_lo = true,
                   .target = NSI_TARGET_RETURN};
    if ((rc = add(p, &r)))
        return rc;

    bool keep_lo_direct = !includes_loopback(&cfg->include_outbound);
    for (size_t i = 0; i < cfg->uids.n; i++)
        if ((rc = add_owner_rules(p, cfg, NSI_OWNER_UID, cfg->uids.v[i], keep_lo_direct)))
            return rc;
    for (size_t i = 0; i < cfg->gids.n; i++)
        if ((rc = add_owner_rules(p, cfg, NSI_OWNER_GID, cfg->gids.v[i], keep_lo_direct)))
            return rc;

    /* Apps talking to localhost (including to the proxy itself) stay direct. */
    r = (nsi_rule){.chain = NSI_CHAIN_OUTBOUND,
                   .has_dst = true,
                   .dst = host(family, family == AF_INET ? "127.0.0.1" : "::1"),
                   .target = NSI_TARGET_RETURN};
    if ((rc = add(p, &r)))
        return rc;

    for (size_t i = 0; i < cfg->exclude_outbound.n; i++) {
        if (cfg->exclude_outbound.v[i].family != family)
            continue;
        r = (nsi_rule){.chain = NSI_CHAIN_OUTBOUND,
                       .has_dst = true,
                       .dst = cfg->exclude_outbound.v[i],
                       .target = NSI_TARGET_RETURN};
        if ((rc = add(p, &r)))
            return rc;
    }

    for (size_t i = 0; i < cfg->include_outbound_ports.n; i++) {
        r = (nsi_rule){.chain = NSI_CHAIN_OUTBOUND,
                       .tcp = true,
                       .dport = cfg->include_outbound_ports.v[i],
                       .target = NSI_TARGET_JUMP,
                       .jump = NSI_CHAIN_REDIRECT};
        if ((rc = add(p, &r)))
            return rc;
    }

    if (cfg->include_outbound.all) {
        r = (nsi_rule){
            .chain = NSI_CHAIN_OUTBOUND, .target = NSI_TARGET_JUMP, .jump = NSI_CHAIN_REDIRECT};
        if ((rc = add(p, &r)))
            return rc;
    } else {
        for (size_t i = 0; i < cfg->include_outbound.n; i++) {
            if (cfg->include_outbound.v[i].family != family)
                continue;
            r = (nsi_rule){.chain = NSI_CHAIN_OUTBOUND,
                           .has_dst = true,
                           .dst = cfg->include_outbound.v[i],
                           .target = NSI_TARGET_JUMP,
                           .jump = NSI_CHAIN_REDIRECT};
            if ((rc = add(p, &r)))
                return rc;
        }
    }
    return 0;
}

int nsi_plan_build(const nsi_config *cfg, int family, nsi_plan *out)
{
    *out = (nsi_plan){.family = family};
    if (family != AF_INET && family != AF_INET6)
        return -EAFNOSUPPORT;
    int rc = build(cfg, out);
    if (rc)
        nsi_plan_free(out);
    return rc;
}

void nsi_plan_free(nsi_plan *p)
{
    if (!p)
        return;
    free(p->rules);
    p->rules = NULL;
    p->n = p->cap = 0;
}

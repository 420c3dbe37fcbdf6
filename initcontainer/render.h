/* render.h - planned rules as iptables-save text (for --dry-run, tests and iptables-restore). */
#ifndef NSI_RENDER_H
#define NSI_RENDER_H

#include "buf.h"
#include "plan.h"

/* Appends `r` exactly as iptables-save (legacy, v1.8) prints it once committed, e.g.
 * "-A NUTSHELL_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN\n". Addresses carry their family. */
void nsi_render_rule(const nsi_rule *r, ns_buf *b);

/* Appends the whole nat table as iptables-save prints it after the plan is committed to an
 * otherwise empty nat table: "*nat", the built-in chains with ACCEPT policy, the Nutshell
 * chains, the rules grouped by chain in save order, "COMMIT". The text is valid input for
 * iptables-restore (ip6tables-restore for an AF_INET6 plan). No comment or date lines, so that
 * the output is reproducible. */
void nsi_render_table(const nsi_plan *p, ns_buf *b);

#endif

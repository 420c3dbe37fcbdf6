/* config.c - flag and environment parsing for nutshell-init (pure: no I/O, no globals). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* What an option sets. The order is also the order in which values are checked, so that the
 * first error a user sees is the first flag in --help. */
typedef enum opt_kind {
    OPT_PROXY_PORT,
    OPT_INBOUND_PORT,
    OPT_TUNNEL_PORT,
    OPT_PROXY_UID,
    OPT_PROXY_GID,
    OPT_INCLUDE_INBOUND_PORTS,
    OPT_EXCLUDE_INBOUND_PORTS,
    OPT_INCLUDE_OUTBOUND_CIDRS,
    OPT_EXCLUDE_OUTBOUND_CIDRS,
    OPT_INCLUDE_OUTBOUND_PORTS,
    OPT_EXCLUDE_OUTBOUND_PORTS,
    OPT_IPV6,
    OPT_MODE,
    OPT_LOG_FORMAT,
    OPT_DRY_RUN,
    OPT_CLEANUP,
    OPT_HELP,
    OPT_VERSION,
    OPT_COUNT_,
} opt_kind;

typedef struct opt_def {
    opt_kind kind;
    const char *long_name; /* without the leading "--" */
    char short_name;       /* Istio's alias, 0 if none */
    const char *env;       /* NULL if the option has no variable */
    bool is_bool;          /* takes no value */
} opt_def;

static const opt_def opts[] = {
    {OPT_PROXY_PORT, "proxy-port", 'p', "NUTSHELL_PROXY_PORT", false},
    {OPT_INBOUND_PORT, "inbound-port", 'z', "NUTSHELL_INBOUND_PORT", false},
    {OPT_TUNNEL_PORT, "inbound-tunnel-port", 0, "NUTSHELL_INBOUND_TUNNEL_PORT", false},
    {OPT_PROXY_UID, "proxy-uid", 'u', "NUTSHELL_PROXY_UID", false},
    {OPT_PROXY_GID, "proxy-gid", 'g', "NUTSHELL_PROXY_GID", false},
    {OPT_INCLUDE_INBOUND_PORTS, "include-inbound-ports", 'b', "NUTSHELL_INCLUDE_INBOUND_PORTS",
     false},
    {OPT_EXCLUDE_INBOUND_PORTS, "exclude-inbound-ports", 'd', "NUTSHELL_EXCLUDE_INBOUND_PORTS",
     false},
    {OPT_INCLUDE_OUTBOUND_CIDRS, "include-outbound-cidrs", 'i', "NUTSHELL_INCLUDE_OUTBOUND_CIDRS",
     false},
    {OPT_EXCLUDE_OUTBOUND_CIDRS, "exclude-outbound-cidrs", 'x', "NUTSHELL_EXCLUDE_OUTBOUND_CIDRS",
     false},
    {OPT_INCLUDE_OUTBOUND_PORTS, "include-outbound-ports", 'q', "NUTSHELL_INCLUDE_OUTBOUND_PORTS",
     false},
    {OPT_EXCLUDE_OUTBOUND_PORTS, "exclude-outbound-ports", 'o', "NUTSHELL_EXCLUDE_OUTBOUND_PORTS",
     false},
    {OPT_IPV6, "ipv6", 0, "NUTSHELL_IPV6", false},
    {OPT_MODE, "interception-mode", 'm', NULL, false},
    {OPT_LOG_FORMAT, "log-format", 0, "NUTSHELL_LOG_FORMAT", false},
    {OPT_DRY_RUN, "dry-run", 'n', NULL, true},
    {OPT_CLEANUP, "cleanup", 0, NULL, true},
    {OPT_HELP, "help", 'h', NULL, true},
    {OPT_VERSION, "version", 0, NULL, true},
};
_Static_assert(sizeof(opts) / sizeof(opts[0]) == OPT_COUNT_, "one definition per option");

/* A value waiting to be checked, and where it came from (for error messages). */
typedef struct raw_value {
    const char *value;
    const char *source; /* "--proxy-port" or "NUTSHELL_PROXY_PORT" */
    char label[48];     /* storage for the "--name" spelling */
} raw_value;

static const char usage_text[] =
    "Usage: nutshell-init [flags]\n"
    "\n"
    "Programs the nat table of the current network namespace (iptables through libiptc, and\n"
    "ip6tables when IPv6 is in use) so that every TCP connection of the pod goes through the\n"
    "Nutshell proxy. Chains: NUTSHELL_INBOUND, NUTSHELL_IN_REDIRECT, NUTSHELL_OUTPUT,\n"
    "NUTSHELL_REDIRECT. Each table is replaced in one atomic commit; running twice leaves one\n"
    "rule set. Each flag may also be given as the environment variable shown; a flag wins.\n"
    "Lists are comma-separated; '*' means all; a set but empty value is an empty list.\n"
    "\n"
    "  -p, --proxy-port=PORT             outbound capture port\n"
    "                                    env NUTSHELL_PROXY_PORT, default 15001\n"
    "  -z, --inbound-port=PORT           inbound capture port\n"
    "                                    env NUTSHELL_INBOUND_PORT, default 15006\n"
    "      --inbound-tunnel-port=PORT    port kept out of inbound capture and of the proxy's\n"
    "                                    loopback redirect, as Istio does for HBONE (15008)\n"
    "                                    env NUTSHELL_INBOUND_TUNNEL_PORT, default none\n"
    "  -u, --proxy-uid=UID[,UID...]      the proxy's user: its traffic is never captured\n"
    "                                    env NUTSHELL_PROXY_UID, default 1337\n"
    "  -g, --proxy-gid=GID[,GID...]      the proxy's group: its traffic is never captured\n"
    "                                    env NUTSHELL_PROXY_GID, default the UIDs\n"
    "  -b, --include-inbound-ports=LIST  inbound ports to capture, '*' all, empty none\n"
    "                                    env NUTSHELL_INCLUDE_INBOUND_PORTS, default *\n"
    "  -d, --exclude-inbound-ports=LIST  inbound ports never captured (used with '*' only)\n"
    "                                    env NUTSHELL_EXCLUDE_INBOUND_PORTS, default 15020\n"
    "  -i, --include-outbound-cidrs=LIST destinations to capture, '*' all; empty captures\n"
    "                                    only --include-outbound-ports\n"
    "                                    env NUTSHELL_INCLUDE_OUTBOUND_CIDRS, default *\n"
    "  -x, --exclude-outbound-cidrs=LIST destinations never captured\n"
    "                                    env NUTSHELL_EXCLUDE_OUTBOUND_CIDRS, default none\n"
    "  -q, --include-outbound-ports=LIST destination ports captured whatever the CIDRs say\n"
    "                                    env NUTSHELL_INCLUDE_OUTBOUND_PORTS, default none\n"
    "  -o, --exclude-outbound-ports=LIST destination ports never captured\n"
    "                                    env NUTSHELL_EXCLUDE_OUTBOUND_PORTS, default none\n"
    "      --ipv6=auto|on|off            also program ip6tables; auto: if the namespace has a\n"
    "                                    global IPv6 address\n"
    "                                    env NUTSHELL_IPV6, default auto\n"
    "  -m, --interception-mode=REDIRECT  accepted for Istio compatibility; TPROXY is refused\n"
    "      --log-format=text|json        format of the log lines on stderr\n"
    "                                    env NUTSHELL_LOG_FORMAT, default text\n"
    "  -n, --dry-run                     print the planned rules in iptables-save format\n"
    "                                    (IPv4, then IPv6) and touch nothing\n"
    "      --cleanup                     remove the NUTSHELL_* chains and the jumps to them,\n"
    "                                    and nothing else\n"
    "  -h, --help                        this text\n"
    "      --version                     print the version\n"
    "\n"
    "Exit codes:\n"
    "  0  success\n"
    "  1  unexpected failure (no table is left half-programmed)\n"
    "  2  bad usage: unknown flag, or a bad port, CIDR, id or mode (the message names the\n"
    "     flag or variable and the value)\n"
    "  3  no permission: CAP_NET_ADMIN and CAP_NET_RAW are needed in the pod's network\n"
    "     namespace\n"
    "  4  kernel support missing: the legacy nat table, or a match/target the rules use\n"
    "     (tcp, owner, REDIRECT)\n"
    "  5  conflict: NUTSHELL_* chains exist in nftables (iptables-nft), or a foreign rule\n"
    "     jumps into a NUTSHELL_* chain (--cleanup)\n"
    "  6  IPv6 could not be committed after IPv4 was; IPv4 was rolled back to no rules\n"
    "\n"
    "See docs/init.md for the rule set and the design.\n";

const char *nsi_config_usage(void)
{
    return usage_text;
}

void nsi_config_defaults(nsi_config *c)
{
    memset(c, 0, sizeof(*c));
    c->proxy_port = 15001;
    c->inbound_port = 15006;
    c->uids.n = 1;
    c->uids.v[0] = 1337;
    c->gids.n = 1;
    c->gids.v[0] = 1337;
    c->include_inbound.all = true;
    c->exclude_inbound.n = 1;
    c->exclude_inbound.v[0] = 15020;
    c->include_outbound.all = true;
    c->ipv6 = NSI_IPV6_AUTO;
    c->action = NSI_ACT_APPLY;
    c->log_format = NS_LOG_TEXT;
}

/* True if `s` is only spaces and tabs (an explicitly empty list). */
static bool is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t')
            return false;
    return true;
}

/* True if `s` is "*" with optional surrounding blanks. */
static bool is_star(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s != '*')
        return false;
    return is_blank(s + 1);
}

static int parse_port_value(const raw_value *rv, bool allow_empty, uint16_t *out, ns_err *err)
{
    if (allow_empty && is_blank(rv->value)) {
        *out = 0;
        return 0;
    }
    if (ns_parse_port(rv->value, out) != 0)
        return ns_errorf(err, -EINVAL, "%s: \"%s\" is not a valid port (expected 1-65535)",
                         rv->source, rv->value);
    return 0;
}

static int parse_ports(const raw_value *rv, bool allow_all, nsi_ports *out, ns_err *err)
{
    memset(out, 0, sizeof(*out));
    if (is_star(rv->value)) {
        if (!allow_all)
            return ns_errorf(err, -EINVAL, "%s: \"*\" is not allowed here; list the ports",
                             rv->source);
        out->all = true;
        return 0;
    }
    const char *cur = rv->value;
    char item[64];
    int n;
    while ((n = ns_list_next(&cur, item, sizeof(item))) != 0) {
        if (n < 0)
            return ns_errorf(err, -EINVAL, "%s: \"%s\" holds an item that is not a valid port",
                             rv->source, rv->value);
        if (strcmp(item, "*") == 0)
            return ns_errorf(err, -EINVAL, "%s: \"*\" must be the only value, got \"%s\"",
                             rv->source, rv->value);
        uint16_t port;
        if (ns_parse_port(item, &port) != 0)
            return ns_errorf(err, -EINVAL, "%s: \"%s\" is not a valid port (expected 1-65535)",
                             rv->source, item);
        bool dup = false;
        for (size_t i = 0; i < out->n && !dup; i++)
            dup = out->v[i] == port;
        if (dup)
            continue; /* a repeated port would only repeat a rule */
        if (out->n == NSI_MAX_PORTS)
            return ns_errorf(err, -EINVAL, "%s: more than %d ports", rv->source, NSI_MAX_PORTS);
        out->v[out->n++] = port;
    }
    return 0;
}

static bool same_cidr(const ns_cidr *a, const ns_cidr *b)
{
    if (a->family != b->family || a->prefix != b->prefix)
        return false;
    if (a->family == AF_INET)
        return a->addr.v4.s_addr == b->addr.v4.s_addr;
    return memcmp(&a->addr.v6, &b->addr.v6, sizeof(a->addr.v6)) == 0;
}

static int parse_cidrs(const raw_value *rv, bool allow_all, nsi_cidrs *out, ns_err *err)
{
    memset(out, 0, sizeof(*out));
    if (is_star(rv->value)) {
        if (!allow_all)
            return ns_errorf(err, -EINVAL, "%s: \"*\" is not allowed here; list the CIDRs",
                             rv->source);
        out->all = true;
        return 0;
    }
    const char *cur = rv->value;
    char item[INET6_ADDRSTRLEN + 16];
    int n;
    while ((n = ns_list_next(&cur, item, sizeof(item))) != 0) {
        if (n < 0)
            return ns_errorf(err, -EINVAL, "%s: \"%s\" holds an item that is not a valid CIDR",
                             rv->source, rv->value);
        if (strcmp(item, "*") == 0)
            return ns_errorf(err, -EINVAL, "%s: \"*\" must be the only value, got \"%s\"",
                             rv->source, rv->value);
        ns_cidr c;
        if (ns_parse_cidr(item, &c) != 0)
            return ns_errorf(err, -EINVAL,
                             "%s: \"%s\" is not a valid CIDR (expected a.b.c.d/n or x:y::/n "
                             "with no address bits set after the prefix)",
                             rv->source, item);
        bool dup = false;
        for (size_t i = 0; i < out->n && !dup; i++)
            dup = same_cidr(&out->v[i], &c);
        if (dup)
            continue;
        if (out->n == NSI_MAX_CIDRS)
            return ns_errorf(err, -EINVAL, "%s: more than %d CIDRs", rv->source, NSI_MAX_CIDRS);
        out->v[out->n++] = c;
    }
    return 0;
}

static int parse_ids(const raw_value *rv, nsi_ids *out, ns_err *err)
{
    memset(out, 0, sizeof(*out));
    const char *cur = rv->value;
    char item[32];
    int n;
    while ((n = ns_list_next(&cur, item, sizeof(item))) != 0) {
        uint32_t id;
        /* (uid_t)-1 means "no change" to the kernel, so it cannot name the proxy. */
        if (n < 0 || ns_parse_u32(item, UINT32_MAX - 1, &id) != 0)
            return ns_errorf(err, -EINVAL,
                             "%s: \"%s\" is not a valid numeric id (expected 0-4294967294)",
                             rv->source, n < 0 ? rv->value : item);
        if (out->n == NSI_MAX_IDS)
            return ns_errorf(err, -EINVAL, "%s: more than %d ids", rv->source, NSI_MAX_IDS);
        out->v[out->n++] = id;
    }
    if (out->n == 0)
        return ns_errorf(err, -EINVAL, "%s: must name at least one id", rv->source);
    return 0;
}

static int parse_ipv6(const raw_value *rv, nsi_ipv6_mode *out, ns_err *err)
{
    const char *v = rv->value;
    if (strcasecmp(v, "auto") == 0)
        *out = NSI_IPV6_AUTO;
    else if (strcasecmp(v, "on") == 0 || strcasecmp(v, "true") == 0)
        *out = NSI_IPV6_ON;
    else if (strcasecmp(v, "off") == 0 || strcasecmp(v, "false") == 0)
        *out = NSI_IPV6_OFF;
    else
        return ns_errorf(err, -EINVAL, "%s: \"%s\" is not one of auto, on, off", rv->source, v);
    return 0;
}

/* Checks one collected value and stores it in `c`. */
static int apply_value(nsi_config *c, opt_kind kind, const raw_value *rv, ns_err *err)
{
    switch (kind) {
    case OPT_PROXY_PORT:
        return parse_port_value(rv, false, &c->proxy_port, err);
    case OPT_INBOUND_PORT:
        return parse_port_value(rv, false, &c->inbound_port, err);
    case OPT_TUNNEL_PORT:
        return parse_port_value(rv, true, &c->tunnel_port, err);
    case OPT_PROXY_UID:
        return parse_ids(rv, &c->uids, err);
    case OPT_PROXY_GID:
        return parse_ids(rv, &c->gids, err);
    case OPT_INCLUDE_INBOUND_PORTS:
        return parse_ports(rv, true, &c->include_inbound, err);
    case OPT_EXCLUDE_INBOUND_PORTS:
        return parse_ports(rv, false, &c->exclude_inbound, err);
    case OPT_INCLUDE_OUTBOUND_CIDRS:
        return parse_cidrs(rv, true, &c->include_outbound, err);
    case OPT_EXCLUDE_OUTBOUND_CIDRS:
        return parse_cidrs(rv, false, &c->exclude_outbound, err);
    case OPT_INCLUDE_OUTBOUND_PORTS:
        return parse_ports(rv, false, &c->include_outbound_ports, err);
    case OPT_EXCLUDE_OUTBOUND_PORTS:
        return parse_ports(rv, false, &c->exclude_outbound_ports, err);
    case OPT_IPV6:
        return parse_ipv6(rv, &c->ipv6, err);
    case OPT_MODE:
        if (strcasecmp(rv->value, "REDIRECT") != 0)
            return ns_errorf(err, -EINVAL,
                             "%s: \"%s\" is not supported; nutshell-init only does REDIRECT",
                             rv->source, rv->value);
        return 0;
    case OPT_LOG_FORMAT:
        if (ns_log_format_parse(rv->value, &c->log_format) != 0)
            return ns_errorf(err, -EINVAL, "%s: \"%s\" is not one of text, json", rv->source,
                             rv->value);
        return 0;
    default:
        return 0; /* booleans are handled while scanning argv */
    }
}

static const opt_def *find_long(const char *name, size_t len)
{
    for (size_t i = 0; i < OPT_COUNT_; i++)
        if (strlen(opts[i].long_name) == len && strncmp(opts[i].long_name, name, len) == 0)
            return &opts[i];
    return NULL;
}

static const opt_def *find_short(char ch)
{
    for (size_t i = 0; i < OPT_COUNT_; i++)
        if (opts[i].short_name && opts[i].short_name == ch)
            return &opts[i];
    return NULL;
}

static int set_bool(nsi_config *c, bool *help, bool *version, const opt_def *o, const char *arg,
                    const char *spelled, ns_err *err)
{
    bool on = true;
    if (arg) {
        if (strcasecmp(arg, "true") == 0)
            on = true;
        else if (strcasecmp(arg, "false") == 0)
            on = false;
        else
            return ns_errorf(err, -EINVAL, "%s: \"%s\" is not true or false", spelled, arg);
    }
    switch (o->kind) {
    case OPT_DRY_RUN:
        c->dry_run = on;
        break;
    case OPT_CLEANUP:
        c->action = on ? NSI_ACT_CLEANUP : NSI_ACT_APPLY;
        break;
    case OPT_HELP:
        *help = on;
        break;
    case OPT_VERSION:
        *version = on;
        break;
    default:
        break;
    }
    return 0;
}

int nsi_config_parse(nsi_config *c, int argc, char *const argv[], nsi_getenv_fn get, void *ctx,
                     ns_err *err)
{
    raw_value raw[OPT_COUNT_];
    memset(raw, 0, sizeof(raw));
    bool help = false, version = false;

    /* Environment first, so that flags read later replace it. */
    for (size_t i = 0; get && i < OPT_COUNT_; i++) {
        if (!opts[i].env)
            continue;
        const char *v = get(opts[i].env, ctx);
        if (v) {
            raw[opts[i].kind].value = v;
            raw[opts[i].kind].source = opts[i].env;
        }
    }

    for (int ai = 1; ai < argc; ai++) {
        const char *a = argv[ai];
        const opt_def *o = NULL;
        const char *inline_val = NULL;
        if (a[0] == '-' && a[1] == '-' && a[2] != '\0') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            o = find_long(name, len);
            if (!o)
                return ns_errorf(err, -EINVAL, "unknown flag \"%.*s\" (see --help)", (int)(len + 2),
                                 a);
            inline_val = eq ? eq + 1 : NULL;
        } else if (a[0] == '-' && a[1] != '\0' && a[1] != '-') {
            o = find_short(a[1]);
            if (!o)
                return ns_errorf(err, -EINVAL, "unknown flag \"-%c\" (see --help)", a[1]);
            inline_val = a[2] ? a + 2 : NULL;
            if (inline_val && *inline_val == '=')
                inline_val++;
        } else {
            return ns_errorf(err, -EINVAL, "unexpected argument \"%s\" (see --help)", a);
        }

        raw_value *rv = &raw[o->kind];
        snprintf(rv->label, sizeof(rv->label), "--%s", o->long_name);
        if (o->is_bool) {
            int rc = set_bool(c, &help, &version, o, inline_val, rv->label, err);
            if (rc)
                return rc;
            continue;
        }
        if (!inline_val) {
            if (ai + 1 >= argc)
                return ns_errorf(err, -EINVAL, "%s needs a value (see --help)", rv->label);
            inline_val = argv[++ai];
        }
        rv->value = inline_val;
        rv->source = rv->label;
    }

    if (help) {
        c->action = NSI_ACT_HELP;
        return 0;
    }
    if (version) {
        c->action = NSI_ACT_VERSION;
        return 0;
    }

    /* The log format first, so that an error in any other value is logged as asked. */
    if (raw[OPT_LOG_FORMAT].value) {
        int rc = apply_value(c, OPT_LOG_FORMAT, &raw[OPT_LOG_FORMAT], err);
        if (rc)
            return rc;
    }
    bool gid_given = raw[OPT_PROXY_GID].value != NULL;
    for (int k = 0; k < OPT_COUNT_; k++) {
        if (!raw[k].value || k == OPT_LOG_FORMAT)
            continue;
        int rc = apply_value(c, (opt_kind)k, &raw[k], err);
        if (rc)
            return rc;
    }
    /* Istio: the proxy GID defaults to the proxy UID. */
    if (!gid_given && raw[OPT_PROXY_UID].value)
        c->gids = c->uids;

    if (c->dry_run && c->action == NSI_ACT_CLEANUP)
        return ns_errorf(err, -EINVAL,
                         "--dry-run and --cleanup cannot be combined: what --cleanup removes "
                         "depends on the kernel's current rules");
    return 0;
}

/* test_routes.c - route tables: good and bad JSON (a bad table is refused whole and the
 * old one keeps working), host matching with short names and ports, address matching,
 * and the exactness and smoothness of weighted selection. */
#include "routes.h"
#include "suites.h"

#include <arpa/inet.h>
#include <stdlib.h>

static const char *canary_table =
    "{\"version\": 7, \"routes\": ["
    " {\"host\": \"Reviews.Default.svc.cluster.local.\", \"port\": 9080,"
    "  \"addresses\": [\"10.96.0.12\", \"fd00::12\"],"
    "  \"backends\": ["
    "   {\"host\": \"reviews-primary.default.svc.cluster.local\", \"port\": 9080,"
    "    \"address\": \"10.96.0.13\", \"weight\": 95},"
    "   {\"host\": \"reviews-canary.default.svc.cluster.local\", \"weight\": 5}]},"
    " {\"host\": \"ratings.default.svc.cluster.local\","
    "  \"backends\": [{\"host\": \"ratings.default.svc.cluster.local\"}]},"
    " {\"host\": \"example.com\", \"port\": 443, \"future\": {\"ignored\": true},"
    "  \"backends\": [{\"host\": \"a.example.com\", \"weight\": 1},"
    "                 {\"host\": \"b.example.com\", \"weight\": 2},"
    "                 {\"host\": \"c.example.com\", \"weight\": 7}]}]}";

static px_routes *parse_ok(const char *json)
{
    px_routes *t = NULL;
    ns_err err = {0};
    int rc = px_routes_parse(json, strlen(json), &t, &err);
    if (rc != 0)
        fprintf(stderr, "\n  unexpected error: %s\n", err.msg);
    NS_ASSERT_INT_EQ(rc, 0);
    return t;
}

static void test_parse_good(void)
{
    px_routes *t = parse_ok(canary_table);
    if (!t)
        return;
    NS_ASSERT_INT_EQ(t->version, 7);
    NS_ASSERT_INT_EQ(t->nroutes, 3);
    px_route *r = &t->routes[0];
    NS_ASSERT_STR_EQ(r->host, "reviews.default.svc.cluster.local");
    NS_ASSERT_INT_EQ(r->port, 9080);
    NS_ASSERT_INT_EQ(r->nbackends, 2);
    NS_ASSERT_INT_EQ(r->total, 100);
    NS_ASSERT_INT_EQ(r->naddrs, 2);
    NS_ASSERT_INT_EQ(r->addrs[0].family, AF_INET);
    NS_ASSERT_INT_EQ(r->addrs[1].family, AF_INET6);
    NS_ASSERT_STR_EQ(r->backends[0].host, "reviews-primary.default.svc.cluster.local");
    NS_ASSERT_INT_EQ(r->backends[0].port, 9080);
    NS_ASSERT_INT_EQ(r->backends[0].weight, 95);
    NS_ASSERT_INT_EQ(r->backends[0].addr.family, AF_INET);
    NS_ASSERT_INT_EQ(r->backends[1].port, 0);
    NS_ASSERT_INT_EQ(r->backends[1].addr.family, 0);
    /* Short-name boundaries: "reviews", "reviews.default", "reviews.default.svc". */
    NS_ASSERT_INT_EQ(r->svc_len, 7);
    NS_ASSERT_INT_EQ(r->ns_end, 15);
    NS_ASSERT_INT_EQ(r->svc_end, 19);
    /* Defaults: any port, weight 1. */
    NS_ASSERT_INT_EQ(t->routes[1].port, 0);
    NS_ASSERT_INT_EQ(t->routes[1].backends[0].weight, 1);
    NS_ASSERT_INT_EQ(t->routes[2].svc_len, 0);
    px_routes_free(t);

    /* An empty table is valid (no routes: everything goes to its original destination). */
    t = parse_ok("{\"version\": 0, \"routes\": []}");
    if (t)
        NS_ASSERT_INT_EQ(t->nroutes, 0);
    px_routes_free(t);
    px_routes_free(NULL);
}

static void test_parse_bad(void)
{
    static const struct {
        const char *json, *msg;
    } cases[] = {
        {"", "malformed JSON"},
        {"{\"version\": 1, \"routes\": []", "malformed JSON"},
        {"{\"version\": 1, \"routes\": []} x", "unexpected data"},
        {"[]", "must be a JSON object"},
        {"{\"routes\": []}", "version"},
        {"{\"version\": -1, \"routes\": []}", "version"},
        {"{\"version\": 1.5, \"routes\": []}", "version"},
        {"{\"version\": \"7\", \"routes\": []}", "version"},
        {"{\"version\": 1}", "routes: an array"},
        {"{\"version\": 1, \"routes\": {}}", "routes: an array"},
        {"{\"version\": 1, \"routes\": [7]}", "routes[0]: must be an object"},
        {"{\"version\": 1, \"routes\": [{\"backends\": [{\"host\": \"b\"}]}]}",
         "routes[0].host: a string"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"a..b\", \"backends\": [{\"host\": \"b\"}]}]}",
         "routes[0].host"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"a b\", \"backends\": [{\"host\": \"b\"}]}]}",
         "routes[0].host"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"\", \"backends\": [{\"host\": \"b\"}]}]}",
         "routes[0].host"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"a\", \"port\": 70000, \"backends\": "
         "[{\"host\": \"b\"}]}]}",
         "routes[0].port"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"a\", \"port\": \"80\", \"backends\": "
         "[{\"host\": \"b\"}]}]}",
         "routes[0].port"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"a\"}]}", "routes[0].backends"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"a\", \"backends\": []}]}",
         "routes[0].backends"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"a\", \"backends\": [{\"host\": \"b\", "
         "\"weight\": -1}]}]}",
         "routes[0].backends[0].weight"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"a\", \"backends\": [{\"host\": \"b\", "
         "\"weight\": 1000001}]}]}",
         "routes[0].backends[0].weight"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"a\", \"backends\": [{\"host\": \"b\", "
         "\"weight\": 1}, {\"host\": \"c\", \"weight\": 2.5}]}]}",
         "routes[0].backends[1].weight"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"a\", \"backends\": [{\"host\": \"b\", "
         "\"weight\": 0}, {\"host\": \"c\", \"weight\": 0}]}]}",
         "at least one weight"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"a\", \"backends\": [{\"weight\": 1}]}]}",
         "routes[0].backends[0].host"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"a\", \"backends\": [{\"host\": \"b\", "
         "\"address\": \"999.1.1.1\"}]}]}",
         "routes[0].backends[0].address"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"a\", \"addresses\": \"10.0.0.1\", "
         "\"backends\": [{\"host\": \"b\"}]}]}",
         "routes[0].addresses"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"a\", \"addresses\": [\"10.0.0.1/8\"], "
         "\"backends\": [{\"host\": \"b\"}]}]}",
         "routes[0].addresses[0]"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"a\", \"backends\": [{\"host\": \"b\"}]},"
         "{\"host\": \"A.\", \"backends\": [{\"host\": \"c\"}]}]}",
         "routes[1]: host a port 0 repeats routes[0]"},
        {"{\"version\": 1, \"routes\": [{\"host\": \"a\", \"addresses\": [\"10.0.0.1\"], "
         "\"backends\": [{\"host\": \"b\"}]},"
         "{\"host\": \"c\", \"addresses\": [\"10.0.0.1\"], \"backends\": [{\"host\": \"c\"}]}]}",
         "repeats one of routes[0]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        px_routes *t = (px_routes *)&cases; /* must be reset to NULL */
        ns_err err = {0};
        int rc = px_routes_parse(cases[i].json, strlen(cases[i].json), &t, &err);
        if (rc != -EINVAL || !strstr(err.msg, cases[i].msg))
            fprintf(stderr, "\n  case %zu: rc %d msg \"%s\"\n", i, rc, err.msg);
        NS_ASSERT_INT_EQ(rc, -EINVAL);
        CU_ASSERT_PTR_NULL(t);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, cases[i].msg));
    }

    /* 65 backends is one too many. */
    char json[8192];
    size_t n = (size_t)snprintf(json, sizeof json,
                                "{\"version\": 1, \"routes\": [{\"host\": \"a\", \"backends\": [");
    for (int i = 0; i <= PX_ROUTE_MAX_BACKENDS; i++)
        n += (size_t)snprintf(json + n, sizeof json - n, "%s{\"host\": \"b%d\"}", i ? "," : "", i);
    snprintf(json + n, sizeof json - n, "]}]}");
    px_routes *t = NULL;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(px_routes_parse(json, strlen(json), &t, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "routes[0].backends"));
}

/* The caller's swap: a bad update is refused and the table in use keeps its routes,
 * version and round-robin position. */
static void test_bad_update_keeps_old(void)
{
    px_routes *cur = parse_ok(canary_table);
    if (!cur)
        return;
    px_route *r = px_routes_match(cur, "reviews", 7, 9080, "default");
    CU_ASSERT_PTR_NOT_NULL(r);
    int counts[2] = {0};
    for (int i = 0; i < 50; i++)
        counts[px_routes_pick(r, 0)]++;

    const char *bad = "{\"version\": 8, \"routes\": [{\"host\": \"reviews\", \"backends\": "
                      "[{\"host\": \"x\", \"weight\": 0}]}]}";
    px_routes *next = cur;
    ns_err err = {0};
    int rc = px_routes_parse(bad, strlen(bad), &next, &err);
    NS_ASSERT_INT_EQ(rc, -EINVAL);
    CU_ASSERT_PTR_NULL(next);
    if (rc == 0) {
        px_routes_free(cur);
        cur = next;
    }
    NS_ASSERT_INT_EQ(cur->version, 7);
    r = px_routes_match(cur, "reviews", 7, 9080, "default");
    CU_ASSERT_PTR_NOT_NULL(r);
    for (int i = 0; i < 50; i++)
        counts[px_routes_pick(r, 0)]++;
    NS_ASSERT_INT_EQ(counts[0], 95);
    NS_ASSERT_INT_EQ(counts[1], 5);
    px_routes_free(cur);
}

static void test_match_hosts(void)
{
    px_routes *t = parse_ok(canary_table);
    if (!t)
        return;
    px_route *reviews = &t->routes[0], *ratings = &t->routes[1], *example = &t->routes[2];
    static const struct {
        const char *host;
        uint16_t port;
        const char *ns;
        int want; /* 0 reviews, 1 ratings, 2 example, -1 none */
    } cases[] = {
        {"reviews.default.svc.cluster.local", 9080, NULL, 0},
        {"reviews.default.svc.cluster.local:9080", 9080, NULL, 0},
        {"REVIEWS.Default.Svc.Cluster.Local.", 9080, NULL, 0},
        {"reviews.default.svc", 9080, NULL, 0},
        {"reviews.default", 9080, "other", 0},
        {"reviews", 9080, "default", 0},
        {"reviews:9080", 9080, "default", 0},
        {"reviews", 9080, "other", -1},
        {"reviews", 9080, NULL, -1},
        {"reviews.default.svc.cluster.local", 9081, NULL, -1},
        {"reviews.default.svc.cluster", 9080, NULL, -1},
        {"reviews.defaul", 9080, NULL, -1},
        {"review", 9080, "default", -1},
        {"reviews.other", 9080, NULL, -1},
        {"ratings", 1234, "default", 1},
        {"ratings.default", 80, NULL, 1},
        {"example.com", 443, NULL, 2},
        {"example.com:443", 443, NULL, 2},
        {"example.com", 80, NULL, -1},
        {"example", 443, "com", -1},
        {"", 443, NULL, -1},
        {"[::1]:443", 443, NULL, -1},
        {"bad host", 443, NULL, -1},
    };
    px_route *routes[] = {reviews, ratings, example};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        px_route *got =
            px_routes_match(t, cases[i].host, strlen(cases[i].host), cases[i].port, cases[i].ns);
        px_route *want = cases[i].want < 0 ? NULL : routes[cases[i].want];
        if (got != want)
            fprintf(stderr, "\n  match case %zu (%s) wrong\n", i, cases[i].host);
        CU_ASSERT_PTR_EQUAL(got, want);
    }
    CU_ASSERT_PTR_NULL(px_routes_match(NULL, "a", 1, 80, NULL));
    px_routes_free(t);

    /* A route for the port wins over an any-port route, whatever their order. */
    t = parse_ok("{\"version\": 1, \"routes\": ["
                 "{\"host\": \"s.n.svc.cluster.local\", \"backends\": [{\"host\": \"any\"}]},"
                 "{\"host\": \"s.n.svc.cluster.local\", \"port\": 81, "
                 "\"backends\": [{\"host\": \"p81\"}]}]}");
    if (!t)
        return;
    px_route *r = px_routes_match(t, "s.n", 3, 81, NULL);
    CU_ASSERT_TRUE(r && strcmp(r->backends[0].host, "p81") == 0);
    r = px_routes_match(t, "s", 1, 82, "n");
    CU_ASSERT_TRUE(r && strcmp(r->backends[0].host, "any") == 0);
    px_routes_free(t);
}

static void test_match_addresses(void)
{
    px_routes *t = parse_ok(canary_table);
    if (!t)
        return;
    px_ip ip;
    NS_ASSERT_INT_EQ(px_ip_parse("10.96.0.12", 10, &ip), 0);
    CU_ASSERT_PTR_EQUAL(px_routes_match_addr(t, &ip, 9080), &t->routes[0]);
    CU_ASSERT_PTR_NULL(px_routes_match_addr(t, &ip, 9081));
    NS_ASSERT_INT_EQ(px_ip_parse("fd00:0::12", 10, &ip), 0);
    CU_ASSERT_PTR_EQUAL(px_routes_match_addr(t, &ip, 9080), &t->routes[0]);
    NS_ASSERT_INT_EQ(px_ip_parse("10.96.0.13", 10, &ip), 0);
    CU_ASSERT_PTR_NULL(px_routes_match_addr(t, &ip, 9080));
    NS_ASSERT_INT_EQ(px_ip_parse("10.96.0.1x", 10, &ip), -EINVAL);
    NS_ASSERT_INT_EQ(px_ip_parse("", 0, &ip), -EINVAL);
    NS_ASSERT_INT_EQ(px_ip_parse("[::1]", 5, &ip), -EINVAL);
    px_routes_free(t);
}

/* The sequence of picks of `r` over `n` requests. */
static void picks(px_route *r, int *out, int n, uint64_t exclude)
{
    for (int i = 0; i < n; i++)
        out[i] = px_routes_pick(r, exclude);
}

/* Every window of `total` consecutive picks holds exactly weight(i) picks of backend i. */
static bool every_window_exact(const px_route *r, const int *seq, int n)
{
    int total = (int)r->total;
    for (int start = 0; start + total <= n; start++) {
        int counts[PX_ROUTE_MAX_BACKENDS] = {0};
        for (int k = start; k < start + total; k++)
            counts[seq[k]]++;
        for (size_t b = 0; b < r->nbackends; b++)
            if (counts[b] != (int)r->backends[b].weight) {
                fprintf(stderr, "\n  window at %d: backend %zu picked %d times\n", start, b,
                        counts[b]);
                return false;
            }
    }
    return true;
}

static void test_weights_exact(void)
{
    px_routes *t = parse_ok(canary_table);
    if (!t)
        return;
    px_route *r = &t->routes[0];
    int seq[1000], counts[2] = {0};
    picks(r, seq, 1000, 0);
    for (int i = 0; i < 1000; i++)
        counts[seq[i]]++;
    NS_ASSERT_INT_EQ(counts[0], 950);
    NS_ASSERT_INT_EQ(counts[1], 50);
    CU_ASSERT_TRUE(every_window_exact(r, seq, 1000));
    /* Smooth: the canary is never picked twice within 19 requests. */
    int last = -100;
    for (int i = 0; i < 1000; i++)
        if (seq[i] == 1) {
            CU_ASSERT_TRUE(i - last >= 19);
            last = i;
        }

    /* Odd weights over many windows. */
    px_routes *u = parse_ok("{\"version\": 1, \"routes\": [{\"host\": \"w\", \"backends\": ["
                            "{\"host\": \"a\", \"weight\": 13}, {\"host\": \"b\", \"weight\": 0},"
                            "{\"host\": \"c\", \"weight\": 29}, {\"host\": \"d\", \"weight\": 1},"
                            "{\"host\": \"e\", \"weight\": 999}]}]}");
    if (u) {
        static int big[5000];
        picks(&u->routes[0], big, 5000, 0);
        CU_ASSERT_TRUE(every_window_exact(&u->routes[0], big, 5000));
        for (int i = 0; i < 5000; i++)
            CU_ASSERT_TRUE(big[i] != 1); /* weight 0 is never picked */
    }
    px_routes_free(u);
    px_routes_free(t);
}

static void test_weights_smooth(void)
{
    px_routes *t = parse_ok(canary_table);
    if (!t)
        return;
    px_route *r = &t->routes[2]; /* weights 1, 2, 7 */
    int seq[100];
    picks(r, seq, 100, 0);
    CU_ASSERT_TRUE(every_window_exact(r, seq, 100));
    /* nginx's smooth round-robin for 1/2/7 (worked by hand): c b c c a c c b c c. */
    static const int period[10] = {2, 1, 2, 2, 0, 2, 2, 1, 2, 2};
    for (int i = 0; i < 100; i++)
        NS_ASSERT_INT_EQ(seq[i], period[i % 10]);
    int run = 0, longest = 0;
    for (int i = 0; i < 100; i++) {
        run = seq[i] == 2 ? run + 1 : 0;
        longest = run > longest ? run : longest;
        if (i > 0)
            CU_ASSERT_FALSE(seq[i] != 2 && seq[i] == seq[i - 1]);
    }
    /* Seven picks of c around three others: runs of 3 somewhere are unavoidable (here
     * across the period boundary), never more. */
    NS_ASSERT_INT_EQ(longest, 3);
    px_routes_free(t);
}

static void test_pick_exclude(void)
{
    px_routes *t = parse_ok(canary_table);
    if (!t)
        return;
    px_route *r = &t->routes[2];
    for (int i = 0; i < 30; i++)
        NS_ASSERT_INT_EQ(px_routes_pick(r, 1u << 2), i % 3 == 1 ? 0 : 1);
    NS_ASSERT_INT_EQ(px_routes_pick(r, 0x7), -1);
    /* 30 picks of a and b brought their state back to zero, and the excluded backend's
     * was untouched: exact again over every window of 10. */
    int seq[50];
    picks(r, seq, 50, 0);
    CU_ASSERT_TRUE(every_window_exact(r, seq, 50));
    px_routes_free(t);
}

static void test_dup_and_adopt(void)
{
    px_routes *a = parse_ok(canary_table);
    if (!a)
        return;
    px_route *r = &a->routes[0];
    int seq[100];
    picks(r, seq, 37, 0);
    /* A copy continues from the same state, independently of the original. */
    px_routes *d = px_routes_dup(a);
    CU_ASSERT_PTR_NOT_NULL(d);
    if (d) {
        NS_ASSERT_STR_EQ(d->routes[0].backends[1].host, a->routes[0].backends[1].host);
        CU_ASSERT_PTR_NOT_EQUAL(d->routes[0].host, a->routes[0].host);
        NS_ASSERT_INT_EQ(d->routes[0].naddrs, 2);
        int x = px_routes_pick(&d->routes[0], 0), y = px_routes_pick(r, 0);
        NS_ASSERT_INT_EQ(x, y);
        px_routes_free(d);
        seq[37] = y;
    } else {
        seq[37] = px_routes_pick(r, 0);
    }
    /* A new version with the same route adopts the state: the 100-request window
     * spanning the swap is still exact. */
    px_routes *b = parse_ok(canary_table);
    if (b) {
        px_routes_adopt_state(b, a);
        picks(&b->routes[0], seq + 38, 62, 0);
        int counts[2] = {0};
        for (int i = 0; i < 100; i++)
            counts[seq[i]]++;
        NS_ASSERT_INT_EQ(counts[0], 95);
        NS_ASSERT_INT_EQ(counts[1], 5);
    }
    /* A changed weight does not adopt (it starts afresh). */
    px_routes *c = parse_ok("{\"version\": 8, \"routes\": [{\"host\": "
                            "\"reviews.default.svc.cluster.local\", \"port\": 9080, "
                            "\"backends\": [{\"host\": "
                            "\"reviews-primary.default.svc.cluster.local\", \"port\": 9080, "
                            "\"weight\": 90}, {\"host\": "
                            "\"reviews-canary.default.svc.cluster.local\", \"weight\": 10}]}]}");
    if (c && b) {
        px_routes_adopt_state(c, b);
        NS_ASSERT_INT_EQ(c->routes[0].backends[0].current, 0);
        NS_ASSERT_INT_EQ(c->routes[0].backends[1].current, 0);
    }
    px_routes_adopt_state(NULL, a);
    px_routes_adopt_state(a, NULL);
    px_routes_free(a);
    px_routes_free(b);
    px_routes_free(c);
}

const ns_test routes_tests[] = {
    {"good table", test_parse_good},
    {"bad tables refused", test_parse_bad},
    {"bad update keeps the old table", test_bad_update_keeps_old},
    {"host matching", test_match_hosts},
    {"address matching", test_match_addresses},
    {"weights exact over every window", test_weights_exact},
    {"weights interleave smoothly", test_weights_smooth},
    {"pick with exclusions", test_pick_exclude},
    {"dup and adopt state", test_dup_and_adopt},
    {NULL, NULL},
};

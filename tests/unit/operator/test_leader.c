/* test_leader.c - MicroTime, Lease reading, the election decision, Lease bodies, and an
 * elector that cannot reach any server. */
#include "leader.h"
#include "suites.h"

#include "json.h"
#include "timefmt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define T0 1700000000123456LL /* 2023-11-14T22:13:20.123456Z */
#define S  1000000LL

static void test_time_parse(void)
{
    static const struct {
        const char *in;
        long long us;
    } ok[] = {
        {"2023-11-14T22:13:20.123456Z", T0},
        {"2023-11-14T22:13:20Z", T0 - 123456},
        {"2023-11-14t22:13:20.123456z", T0},
        {"2023-11-14T23:13:20.123456+01:00", T0},
        {"2023-11-14T21:43:20.123456-00:30", T0},
        {"2023-11-14T22:13:20.123456789Z", T0}, /* nanoseconds are cut to microseconds */
        {"2023-11-14T22:13:20.1Z", T0 - 23456},
        {"1970-01-01T00:00:00Z", 0},
        {"2024-02-29T00:00:00Z", 1709164800LL * S},
        /* refused before op_time_parse became ns_time_parse: RFC 3339 sets no limit */
        {"2023-11-14T22:13:20.1234567890Z", T0},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t us = -1;
        int rc = op_time_parse(ok[i].in, &us);
        if (rc || us != ok[i].us)
            fprintf(stderr, "\n  %s: rc %d, %lld\n", ok[i].in, rc, (long long)us);
        NS_ASSERT_INT_EQ(rc, 0);
        NS_ASSERT_INT_EQ(us, ok[i].us);
    }
    static const char *const bad[] = {
        "",
        "2023-11-14",
        "2023-11-14T22:13:20",
        "2023-11-14 22:13:20Z",
        "2023-13-01T00:00:00Z",
        "2023-02-30T00:00:00Z",
        "2023-11-14T24:00:00Z",
        "2023-11-14T22:13:20.Z",
        "2023-11-14T22:13:20Zjunk",
        "2023-11-14T22:13:20+0100",
        "20231114T221320Z",
        "2023-1-14T22:13:20Z",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t us = 7;
        int rc = op_time_parse(bad[i], &us);
        if (rc != -EINVAL)
            fprintf(stderr, "\n  \"%s\" parsed\n", bad[i]);
        NS_ASSERT_INT_EQ(rc, -EINVAL);
        NS_ASSERT_INT_EQ(us, 7);
    }
    NS_ASSERT_INT_EQ(op_time_parse(NULL, NULL), -EINVAL);
    /* writing MicroTime, and the round trip, are ns_time_format_us's (tests/unit/lib) */
}

static cJSON *lease(const char *holder, int dur, const char *renew, int transitions)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{"
             "\"name\":\"nutshell-operator\",\"namespace\":\"nutshell-system\","
             "\"resourceVersion\":\"77\",\"managedFields\":[{}]},\"spec\":{"
             "\"holderIdentity\":\"%s\",\"leaseDurationSeconds\":%d,"
             "\"acquireTime\":\"2023-11-14T22:00:00.000000Z\",\"renewTime\":\"%s\","
             "\"leaseTransitions\":%d}}",
             holder, dur, renew, transitions);
    return cJSON_Parse(text);
}

static void test_parse_lease(void)
{
    cJSON *l = lease("pod-a", 15, "2023-11-14T22:13:20.123456Z", 3);
    op_lease_record r;
    NS_ASSERT_INT_EQ(op_lease_parse(l, &r), 0);
    NS_ASSERT_STR_EQ(r.holder, "pod-a");
    NS_ASSERT_INT_EQ(r.lease_duration_s, 15);
    NS_ASSERT_INT_EQ(r.renew_us, T0);
    NS_ASSERT_INT_EQ(r.acquire_us, 1699999200LL * S);
    NS_ASSERT_INT_EQ(r.transitions, 3);
    cJSON_Delete(l);

    /* a Lease with nothing in it, or with garbage, reads as absent fields */
    cJSON *empty = cJSON_Parse("{\"metadata\":{\"name\":\"x\"}}");
    NS_ASSERT_INT_EQ(op_lease_parse(empty, &r), 0);
    NS_ASSERT_STR_EQ(r.holder, "");
    NS_ASSERT_INT_EQ(r.lease_duration_s, 0);
    NS_ASSERT_INT_EQ(r.renew_us, 0);
    cJSON_Delete(empty);
    cJSON *junk = cJSON_Parse("{\"spec\":{\"holderIdentity\":5,\"leaseDurationSeconds\":\"15\","
                              "\"renewTime\":\"yesterday\",\"leaseTransitions\":-4}}");
    NS_ASSERT_INT_EQ(op_lease_parse(junk, &r), 0);
    NS_ASSERT_STR_EQ(r.holder, "");
    NS_ASSERT_INT_EQ(r.lease_duration_s, 0);
    NS_ASSERT_INT_EQ(r.renew_us, 0);
    NS_ASSERT_INT_EQ(r.transitions, 0);
    cJSON_Delete(junk);
    NS_ASSERT_INT_EQ(op_lease_parse(NULL, &r), -EINVAL);
}

static void test_expiry(void)
{
    op_lease_record r = {.lease_duration_s = 15, .renew_us = T0};
    CU_ASSERT_FALSE(op_lease_expired(&r, T0));
    CU_ASSERT_FALSE(op_lease_expired(&r, T0 + 15 * S)); /* renewTime + duration < now: strict */
    CU_ASSERT_TRUE(op_lease_expired(&r, T0 + 15 * S + 1));
    /* acquireTime stands in for a missing renewTime */
    r = (op_lease_record){.lease_duration_s = 15, .acquire_us = T0};
    CU_ASSERT_FALSE(op_lease_expired(&r, T0 + S));
    CU_ASSERT_TRUE(op_lease_expired(&r, T0 + 16 * S));
    /* no duration or no time at all: expired, so a broken Lease can be taken over */
    r = (op_lease_record){.renew_us = T0};
    CU_ASSERT_TRUE(op_lease_expired(&r, T0));
    r = (op_lease_record){.lease_duration_s = 15};
    CU_ASSERT_TRUE(op_lease_expired(&r, T0));
}

static void test_decide(void)
{
    op_lease_record mine = {.lease_duration_s = 15, .renew_us = T0};
    snprintf(mine.holder, sizeof(mine.holder), "me");
    op_lease_record theirs = mine;
    snprintf(theirs.holder, sizeof(theirs.holder), "them");
    op_lease_record nobody = mine;
    nobody.holder[0] = '\0';

    NS_ASSERT_INT_EQ(op_lease_decide(NULL, T0, "me"), OP_LEASE_CREATE);
    NS_ASSERT_INT_EQ(op_lease_decide(&mine, T0 + S, "me"), OP_LEASE_RENEW);
    /* still ours even if we were late: nobody took it */
    NS_ASSERT_INT_EQ(op_lease_decide(&mine, T0 + 100 * S, "me"), OP_LEASE_RENEW);
    NS_ASSERT_INT_EQ(op_lease_decide(&theirs, T0 + S, "me"), OP_LEASE_WAIT);
    NS_ASSERT_INT_EQ(op_lease_decide(&theirs, T0 + 15 * S, "me"), OP_LEASE_WAIT);
    NS_ASSERT_INT_EQ(op_lease_decide(&theirs, T0 + 15 * S + 1, "me"), OP_LEASE_ACQUIRE);
    /* released (empty holder): take it at once, however fresh */
    NS_ASSERT_INT_EQ(op_lease_decide(&nobody, T0, "me"), OP_LEASE_ACQUIRE);
    /* identities compare exactly */
    NS_ASSERT_INT_EQ(op_lease_decide(&theirs, T0, "them2"), OP_LEASE_WAIT);
    NS_ASSERT_STR_EQ(op_lease_action_name(OP_LEASE_ACQUIRE), "acquire");
}

static void test_build(void)
{
    int64_t now = T0 + 20 * S;
    char nowtext[NS_TIME_MAX];
    ns_time_format_us(now, nowtext, sizeof(nowtext));

    /* create */
    cJSON *c = op_lease_build(NULL, OP_LEASE_CREATE, false, "nutshell-system", "op", "me", 15, now);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    NS_ASSERT_STR_EQ(ns_json_str(c, "apiVersion"), "coordination.k8s.io/v1");
    NS_ASSERT_STR_EQ(ns_json_str(c, "kind"), "Lease");
    NS_ASSERT_STR_EQ(ns_json_path_str(c, "metadata", "name", NULL), "op");
    NS_ASSERT_STR_EQ(ns_json_path_str(c, "metadata", "namespace", NULL), "nutshell-system");
    NS_ASSERT_STR_EQ(ns_json_path_str(c, "spec", "holderIdentity", NULL), "me");
    NS_ASSERT_STR_EQ(ns_json_path_str(c, "spec", "renewTime", NULL), nowtext);
    NS_ASSERT_STR_EQ(ns_json_path_str(c, "spec", "acquireTime", NULL), nowtext);
    op_lease_record r;
    op_lease_parse(c, &r);
    NS_ASSERT_INT_EQ(r.lease_duration_s, 15);
    NS_ASSERT_INT_EQ(r.transitions, 0);
    NS_ASSERT_INT_EQ(op_lease_decide(&r, now, "me"), OP_LEASE_RENEW);
    NS_ASSERT_INT_EQ(op_lease_decide(&r, now, "other"), OP_LEASE_WAIT);
    cJSON_Delete(c);

    /* acquire an expired Lease: holder, times, transitions + 1, resourceVersion kept for a
     * conditional update, managedFields dropped */
    cJSON *old = lease("them", 15, "2023-11-14T22:13:20.123456Z", 3);
    cJSON *a = op_lease_build(old, OP_LEASE_ACQUIRE, false, "x", "y", "me", 10, now);
    op_lease_parse(a, &r);
    NS_ASSERT_STR_EQ(r.holder, "me");
    NS_ASSERT_INT_EQ(r.transitions, 4);
    NS_ASSERT_INT_EQ(r.lease_duration_s, 10);
    NS_ASSERT_INT_EQ(r.acquire_us, now);
    NS_ASSERT_INT_EQ(r.renew_us, now);
    NS_ASSERT_STR_EQ(ns_json_path_str(a, "metadata", "resourceVersion", NULL), "77");
    NS_ASSERT_STR_EQ(ns_json_path_str(a, "metadata", "name", NULL), "nutshell-operator");
    CU_ASSERT_PTR_NULL(ns_json_path(a, "metadata", "managedFields", NULL));
    CU_ASSERT_PTR_NOT_NULL(ns_json_path(old, "metadata", "managedFields", NULL)); /* a copy */

    /* renew: only renewTime moves */
    cJSON *n = op_lease_build(a, OP_LEASE_RENEW, false, "x", "y", "me", 10, now + 2 * S);
    op_lease_record r2;
    op_lease_parse(n, &r2);
    NS_ASSERT_INT_EQ(r2.transitions, 4);
    NS_ASSERT_INT_EQ(r2.acquire_us, now);
    NS_ASSERT_INT_EQ(r2.renew_us, now + 2 * S);
    NS_ASSERT_STR_EQ(r2.holder, "me");

    /* release: no holder, a 1 s duration, transitions unchanged; anyone acquires at once */
    cJSON *rel = op_lease_build(n, OP_LEASE_RENEW, true, "x", "y", "me", 10, now + 3 * S);
    op_lease_parse(rel, &r2);
    NS_ASSERT_STR_EQ(r2.holder, "");
    NS_ASSERT_INT_EQ(r2.lease_duration_s, 1);
    NS_ASSERT_INT_EQ(r2.transitions, 4);
    NS_ASSERT_INT_EQ(op_lease_decide(&r2, now + 3 * S, "other"), OP_LEASE_ACQUIRE);
    cJSON_Delete(old);
    cJSON_Delete(a);
    cJSON_Delete(n);
    cJSON_Delete(rel);
}

static void test_identity(void)
{
    char id[OP_LEADER_IDENTITY_MAX];
    setenv("POD_NAME", "nutshell-operator-7d9f-x2x", 1);
    NS_ASSERT_INT_EQ(op_leader_default_identity(id, sizeof(id)), 0);
    NS_ASSERT_STR_EQ(id, "nutshell-operator-7d9f-x2x");
    NS_ASSERT_INT_EQ(op_leader_default_identity(id, 5), -ENAMETOOLONG);
    unsetenv("POD_NAME");
    NS_ASSERT_INT_EQ(op_leader_default_identity(id, sizeof(id)), 0);
    char pid[32];
    snprintf(pid, sizeof(pid), "_%ld", (long)getpid());
    CU_ASSERT_TRUE(strlen(id) > strlen(pid) && strcmp(id + strlen(id) - strlen(pid), pid) == 0);
}

/* ---- the elector, with no server to talk to ---- */

static ns_kube *unreachable_client(void)
{
    ns_kube_config cfg = {0};
    cfg.server = strdup("https://127.0.0.1:1");
    cfg.insecure_skip_tls_verify = true;
    ns_kube *k = NULL;
    ns_err err = {0};
    ns_kube_options ko = {.max_retries = -1};
    int rc = ns_kube_new(&cfg, &ko, &k, &err);
    if (rc)
        fprintf(stderr, "\n  ns_kube_new: %s\n", err.msg);
    ns_kube_config_free(&cfg);
    return k;
}

static int started_calls;

static void started_cb(void *ud)
{
    (void)ud;
    started_calls++;
}

static void test_elector_options_and_unreachable(void)
{
    ns_kube *k = unreachable_client();
    CU_ASSERT_PTR_NOT_NULL_FATAL(k);
    op_leader *l = NULL;
    ns_err err = {0};
    op_leader_opts o = {.namespace = "ns", .name = "lease"};
    o.lease_duration_s = 10;
    o.renew_deadline_ms = 10000;
    NS_ASSERT_INT_EQ(op_leader_new(k, &o, &l, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "renew deadline"));
    o.renew_deadline_ms = 2000;
    o.retry_period_ms = 2000;
    NS_ASSERT_INT_EQ(op_leader_new(k, &o, &l, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "retry period"));
    op_leader_opts noname = {.namespace = "ns"};
    NS_ASSERT_INT_EQ(op_leader_new(k, &noname, &l, &err), -EINVAL);

    ns_metric gauge = {.name = "leader", .type = NS_METRIC_GAUGE, .value = 7};
    o = (op_leader_opts){.namespace = "ns",
                         .name = "lease",
                         .identity = "me",
                         .lease_duration_s = 1,
                         .renew_deadline_ms = 200,
                         .retry_period_ms = 20,
                         .on_started = started_cb,
                         .is_leader = &gauge};
    NS_ASSERT_INT_EQ(op_leader_new(k, &o, &l, &err), 0);
    NS_ASSERT_STR_EQ(op_leader_identity(l), "me");
    NS_ASSERT_INT_EQ(atomic_load(&gauge.value), 0);
    NS_ASSERT_INT_EQ(op_leader_start(l), 0);
    NS_ASSERT_INT_EQ(op_leader_start(l), -EBUSY);
    usleep(150000); /* several failed tries */
    CU_ASSERT_FALSE(op_leader_is_leader(l));
    NS_ASSERT_INT_EQ(started_calls, 0);
    char holder[64] = "x";
    op_leader_holder(l, holder, sizeof(holder));
    NS_ASSERT_STR_EQ(holder, "");
    int64_t t0 = test_now_ms();
    op_leader_stop(l);
    CU_ASSERT_TRUE(test_now_ms() - t0 < 1000);
    op_leader_free(l);
    ns_kube_free(k);
}

const ns_test leader_tests[] = {
    {"RFC 3339 parsing", test_time_parse},
    {"reading a Lease", test_parse_lease},
    {"expiry: renewTime + duration < now", test_expiry},
    {"decision: create, acquire, renew, wait", test_decide},
    {"Lease bodies: create, acquire, renew, release", test_build},
    {"identity: POD_NAME or hostname_pid", test_identity},
    {"elector: option checks, unreachable server", test_elector_options_and_unreachable},
    {NULL, NULL},
};

/* test_mesh_certs.c - the certificate planner through whole rotation timelines, and the
 * OpenSSL helpers (minting, the CA store, facts from real certificates).
 *
 * The timelines drive a small model of the cluster: the CA store, the injector's Secret,
 * the webhook configuration's caBundle (re-applied after every step, unless the test
 * makes the apply fail) and what the injector serves (the Secret's certificate, picked
 * up after a lag, as the kubelet refreshes Secret volumes). After every step the model
 * checks the one rule that matters: the webhook trusts the CA that issued the
 * certificate being served, and that certificate has not expired. Otherwise an
 * admission request would fail.
 */
#include "mesh_certs.h"
#include "suites.h"

#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#define MIN  60
#define HOUR 3600
#define DAY  86400

/* Short lifetimes keep the timelines readable: a CA lives 120 days and rotates at day 80
 * (when 30 days of validity plus 10 of renewal no longer fit); certificates live 30
 * days and are renewed at day 20 of their life. */
static const mesh_cert_policy policy = {
    .ca_validity = 120 * DAY,
    .validity = 30 * DAY,
    .renew_before = 10 * DAY,
    .serve_grace = 30 * MIN,
};

/* ---- the cluster model ---- */

typedef struct sim_ca {
    int id; /* 0: none */
    time_t not_after;
} sim_ca;

typedef struct sim_cert {
    int issuer; /* CA id, 0: none */
    time_t not_before;
    time_t not_after;
} sim_cert;

typedef struct sim {
    time_t now;
    int next_id;
    sim_ca ca, prev;    /* the CA store */
    sim_cert secret;    /* the injector's Secret */
    sim_cert served;    /* what the injector presents */
    time_t pickup_at;   /* when the injector loads the Secret's certificate; 0: done */
    time_t pickup_lag;  /* the kubelet's volume refresh plus the injector's reload */
    int webhook[2];     /* CA ids in the live caBundle */
    bool webhook_fails; /* applying the webhook configuration fails */
    bool observable;    /* the controller can probe what the injector serves */
    bool quiet;         /* violations are expected: do not print them */
    int violations;     /* steps at which an admission request would have failed */
    int rotations;
} sim;

static bool trusted(const sim *s, int id)
{
    return id && (s->webhook[0] == id || s->webhook[1] == id);
}

static mesh_cert_facts facts_of(const sim *s)
{
    mesh_cert_facts f = {.now = s->now};
    f.has_ca = s->ca.id != 0;
    f.ca_not_after = s->ca.not_after;
    f.has_prev_ca = s->prev.id != 0;
    f.prev_ca_not_after = s->prev.not_after;
    f.has_cert = s->secret.issuer != 0;
    f.cert_not_before = s->secret.not_before;
    f.cert_not_after = s->secret.not_after;
    f.cert_issuer = !f.has_cert                      ? MESH_CA_NONE
                    : s->secret.issuer == s->ca.id   ? MESH_CA_CURRENT
                    : s->secret.issuer == s->prev.id ? MESH_CA_PREVIOUS
                                                     : MESH_CA_OTHER;
    f.webhook_trusts_ca = trusted(s, s->ca.id);
    f.webhook_trusts_prev_ca = trusted(s, s->prev.id);
    if (s->observable && s->served.issuer)
        f.served = memcmp(&s->served, &s->secret, sizeof(s->served)) == 0 ? MESH_SERVED_CERT
                                                                          : MESH_SERVED_OTHER;
    return f;
}

static void check(sim *s, const char *when)
{
    if (!s->served.issuer)
        return;
    if (!trusted(s, s->served.issuer) || s->served.not_after <= s->now) {
        if (s->violations++ < 3 && !s->quiet)
            fprintf(stderr,
                    "\n  day %.3f (%s): injector serves a certificate of CA %d (expires day "
                    "%.3f), webhook trusts {%d, %d}",
                    (double)s->now / DAY, when, s->served.issuer, (double)s->served.not_after / DAY,
                    s->webhook[0], s->webhook[1]);
    }
}

/* Re-applying the rendered webhook configuration; true if it changed. */
static bool apply_webhook(sim *s)
{
    if (s->webhook_fails)
        return false;
    bool changed = s->webhook[0] != s->ca.id || s->webhook[1] != s->prev.id;
    s->webhook[0] = s->ca.id;
    s->webhook[1] = s->prev.id;
    return changed;
}

static void pickup(sim *s)
{
    if (s->pickup_at && s->now >= s->pickup_at) {
        s->served = s->secret;
        s->pickup_at = 0;
    }
}

static void advance(sim *s, time_t t)
{
    s->now = t;
    pickup(s);
    check(s, "time passes");
}

static void act(sim *s, mesh_cert_action a)
{
    switch (a) {
    case MESH_CERT_MINT_CA:
        s->ca = (sim_ca){++s->next_id, s->now + policy.ca_validity};
        s->prev = (sim_ca){0};
        break;
    case MESH_CERT_ROTATE_CA:
        s->prev = s->ca;
        s->ca = (sim_ca){++s->next_id, s->now + policy.ca_validity};
        s->rotations++;
        break;
    case MESH_CERT_MINT_SERVING:
        /* ns_tls_mint backdates notBefore by 5 minutes */
        s->secret = (sim_cert){s->ca.id, s->now - 5 * MIN, s->now + policy.validity};
        s->pickup_at = s->now + s->pickup_lag;
        break;
    case MESH_CERT_DROP_PREVIOUS:
        s->prev = (sim_ca){0};
        break;
    case MESH_CERT_NOTHING:
    case MESH_CERT_WAIT:
        break;
    }
}

/* One reconcile, as the controller runs it: plan, carry the step out, render and apply,
 * and again until the plan is to do nothing or to wait (a WAIT may be answered by the
 * apply that follows it). Writes the actions taken, comma-separated, into trace. */
static mesh_cert_plan reconcile(sim *s, char *trace, size_t len)
{
    mesh_cert_plan p = {0};
    size_t used = 0;
    trace[0] = '\0';
    for (int i = 0; i < 12; i++) {
        mesh_cert_facts f = facts_of(s);
        p = mesh_certs_plan(&f, &policy);
        used += (size_t)snprintf(trace + used, used < len ? len - used : 0, "%s%s", used ? "," : "",
                                 mesh_cert_action_name(p.action));
        act(s, p.action);
        bool changed = apply_webhook(s);
        pickup(s); /* a zero lag picks up at once */
        check(s, mesh_cert_action_name(p.action));
        if (p.action == MESH_CERT_NOTHING || (p.action == MESH_CERT_WAIT && !changed))
            break;
    }
    return p;
}

typedef struct step {
    time_t at;
    int webhook_fails; /* -1: unchanged */
    const char *expect;
} step;

static void run_timeline(sim *s, const step *steps, size_t n)
{
    char trace[256];
    for (size_t i = 0; i < n; i++) {
        advance(s, steps[i].at);
        if (steps[i].webhook_fails >= 0)
            s->webhook_fails = steps[i].webhook_fails;
        reconcile(s, trace, sizeof(trace));
        if (strcmp(trace, steps[i].expect) != 0)
            fprintf(stderr, "\n  step %zu (day %.3f):", i, (double)steps[i].at / DAY);
        NS_ASSERT_STR_EQ(trace, steps[i].expect);
    }
    NS_ASSERT_INT_EQ(s->violations, 0);
}

/* The injector is observed; the webhook apply fails for a while at the rotation. */
static void test_timeline_observed(void)
{
    sim s = {.observable = true, .pickup_lag = HOUR};
    static const step steps[] = {
        {0, 0, "MintCA,MintServing,Nothing"}, /* install: nothing to protect yet */
        {1 * HOUR, -1, "Nothing"},            /* the injector picks its certificate up */
        {19 * DAY, -1, "Nothing"},
        {20 * DAY, -1, "MintServing,Nothing"}, /* renewal, 10 days before expiry */
        {20 * DAY + HOUR, -1, "Nothing"},
        {40 * DAY, -1, "MintServing,Nothing"},
        {60 * DAY, -1, "MintServing,Nothing"}, /* valid until day 90 */
        {61 * DAY, -1, "Nothing"},
        {62 * DAY, -1, "Nothing"},
        {79 * DAY + 23 * HOUR, -1, "Nothing"},
        /* Day 80: a certificate issued now (30 days) plus its renewal window (10) would
         * outlive the CA (day 120). A new CA joins the bundle, but the webhook apply
         * fails, so the serving certificate stays with the old CA. */
        {80 * DAY, 1, "RotateCA,Wait"},
        {80 * DAY + 5 * MIN, -1, "Wait"},
        /* The apply goes through: both CAs trusted, so the certificate moves to the new
         * CA; then wait for the injector to serve it. */
        {80 * DAY + 10 * MIN, 0, "Wait,MintServing,Wait"},
        {80 * DAY + 40 * MIN, -1, "Wait"}, /* past the grace, but seen serving the old one */
        {80 * DAY + 70 * MIN, -1, "DropPreviousCA,Nothing"},
        {100 * DAY, -1, "Nothing"},
        {100 * DAY + 10 * MIN, -1, "MintServing,Nothing"}, /* 20 days after day 80 + 10 min */
        {120 * DAY + 10 * MIN, -1, "MintServing,Nothing"}, /* day 120: the first CA expires */
        {140 * DAY + 10 * MIN, -1, "MintServing,Nothing"}, /* valid until day 170 */
        {159 * DAY, -1, "Nothing"},
        /* the second CA (made on day 80, expires day 200) is near expiry on day 160 */
        {160 * DAY, -1, "RotateCA,MintServing,Wait"},
        {160 * DAY + 59 * MIN, -1, "Wait"}, /* the injector picks up after an hour */
        {160 * DAY + 60 * MIN, -1, "DropPreviousCA,Nothing"},
    };
    run_timeline(&s, steps, sizeof(steps) / sizeof(steps[0]));
    NS_ASSERT_INT_EQ(s.rotations, 2);
    NS_ASSERT_INT_EQ(s.ca.id, 3);
}

/* What the injector serves cannot be observed: the grace period decides. */
static void test_timeline_grace(void)
{
    sim s = {.observable = false, .pickup_lag = 10 * MIN};
    static const step steps[] = {
        {0, 0, "MintCA,MintServing,Nothing"},
        {20 * DAY, -1, "MintServing,Nothing"},
        {40 * DAY, -1, "MintServing,Nothing"},
        {60 * DAY, -1, "MintServing,Nothing"},
        {80 * DAY, -1, "RotateCA,MintServing,Wait"},
        {80 * DAY + 20 * MIN, -1, "Wait"}, /* notBefore is day 80 - 5 min: grace ends +25 */
        {80 * DAY + 25 * MIN, -1, "DropPreviousCA,Nothing"},
    };
    run_timeline(&s, steps, sizeof(steps) / sizeof(steps[0]));
}

/* A tiny deterministic generator, so that a failure replays. */
static uint32_t lcg(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u;
    return *state >> 8;
}

/* Three years, a reconcile every hour or so, webhook applies failing a fifth of the time
 * and the injector taking anything from zero to three hours to pick a certificate up. */
static void long_run(bool observable, time_t max_lag, bool quiet, int *violations, int *rotations)
{
    sim s = {.observable = observable, .quiet = quiet};
    uint32_t seed = 42;
    char trace[256];
    for (time_t t = 0; t < 3 * 365 * DAY; t += HOUR + (time_t)(lcg(&seed) % (20 * MIN))) {
        advance(&s, t);
        s.webhook_fails = lcg(&seed) % 5 == 0;
        s.pickup_lag = (time_t)(lcg(&seed) % (uint32_t)(max_lag + 1));
        mesh_cert_plan p = reconcile(&s, trace, sizeof(trace));
        CU_ASSERT_TRUE(p.action == MESH_CERT_NOTHING || p.action == MESH_CERT_WAIT);
        CU_ASSERT_TRUE(s.ca.not_after > s.now);
    }
    *violations = s.violations;
    *rotations = s.rotations;
}

static void test_long_run(void)
{
    int violations, rotations;
    long_run(true, 3 * HOUR, false, &violations, &rotations);
    NS_ASSERT_INT_EQ(violations, 0);
    NS_ASSERT_INT_EQ(rotations, 13); /* day 80, then every 80 days or so */

    /* Unobserved, with pickups well inside the grace period: still safe. */
    long_run(false, 20 * MIN, false, &violations, &rotations);
    NS_ASSERT_INT_EQ(violations, 0);

    /* The model can fail: unobserved injectors slower than the grace period break
     * admission. This is the one assumption the grace period makes. */
    long_run(false, 3 * HOUR, true, &violations, &rotations);
    CU_ASSERT_TRUE(violations > 0);
}

static void test_plan_edges(void)
{
    const time_t now = 1000 * DAY;
    mesh_cert_facts ok = {
        .now = now,
        .has_ca = true,
        .ca_not_after = now + 100 * DAY,
        .has_cert = true,
        .cert_not_before = now - DAY,
        .cert_not_after = now + 25 * DAY,
        .cert_issuer = MESH_CA_CURRENT,
        .webhook_trusts_ca = true,
        .served = MESH_SERVED_CERT,
    };
    mesh_cert_plan p = mesh_certs_plan(&ok, &policy);
    NS_ASSERT_STR_EQ(mesh_cert_action_name(p.action), "Nothing");
    NS_ASSERT_INT_EQ(p.next, now + 15 * DAY); /* renewal comes before rotation (day 60) */

    mesh_cert_facts f = ok;
    f.cert_not_after = now + 90 * DAY; /* a long certificate: rotation comes first */
    p = mesh_certs_plan(&f, &policy);
    NS_ASSERT_INT_EQ(p.next, now + 60 * DAY);

    f = ok;
    f.has_ca = false;
    NS_ASSERT_STR_EQ(mesh_cert_action_name(mesh_certs_plan(&f, &policy).action), "MintCA");
    f = ok;
    f.ca_not_after = now;
    p = mesh_certs_plan(&f, &policy);
    NS_ASSERT_STR_EQ(mesh_cert_action_name(p.action), "MintCA");
    NS_ASSERT_STR_EQ(p.reason, "the CA has expired and is replaced by a new one");

    /* a certificate from an unknown CA (the store was re-made) waits for the webhook to
     * trust the new CA, then is replaced */
    f = ok;
    f.cert_issuer = MESH_CA_OTHER;
    f.webhook_trusts_ca = false;
    NS_ASSERT_STR_EQ(mesh_cert_action_name(mesh_certs_plan(&f, &policy).action), "Wait");
    f.webhook_trusts_ca = true;
    p = mesh_certs_plan(&f, &policy);
    NS_ASSERT_STR_EQ(mesh_cert_action_name(p.action), "MintServing");
    NS_ASSERT_STR_EQ(p.reason, "the serving certificate was not issued by the current CA");
    /* an expired certificate protects nothing: re-issue without waiting */
    f = ok;
    f.cert_not_after = now;
    f.webhook_trusts_ca = false;
    NS_ASSERT_STR_EQ(mesh_cert_action_name(mesh_certs_plan(&f, &policy).action), "MintServing");

    /* during a rotation */
    mesh_cert_facts r = ok;
    r.has_prev_ca = true;
    r.prev_ca_not_after = now + 20 * DAY;
    r.cert_issuer = MESH_CA_PREVIOUS;
    r.webhook_trusts_prev_ca = true;
    f = r;
    f.webhook_trusts_prev_ca = false; /* both must be trusted before step 2 */
    NS_ASSERT_STR_EQ(mesh_cert_action_name(mesh_certs_plan(&f, &policy).action), "Wait");
    f = r;
    f.prev_ca_not_after = now;
    NS_ASSERT_STR_EQ(mesh_cert_action_name(mesh_certs_plan(&f, &policy).action), "DropPreviousCA");
    f = r;
    f.has_cert = false;
    f.webhook_trusts_ca = false;
    NS_ASSERT_STR_EQ(mesh_cert_action_name(mesh_certs_plan(&f, &policy).action), "MintServing");
    f = r;
    f.cert_issuer = MESH_CA_CURRENT;
    f.served = MESH_SERVED_OTHER; /* long past the grace: still waits, and re-probes */
    p = mesh_certs_plan(&f, &policy);
    NS_ASSERT_STR_EQ(mesh_cert_action_name(p.action), "Wait");
    NS_ASSERT_INT_EQ(p.next, now + MESH_CERT_PROBE_INTERVAL);
    f.served = MESH_SERVED_UNKNOWN;
    NS_ASSERT_STR_EQ(mesh_cert_action_name(mesh_certs_plan(&f, &policy).action), "DropPreviousCA");
    f.cert_not_before = now - 10 * MIN;
    p = mesh_certs_plan(&f, &policy);
    NS_ASSERT_STR_EQ(mesh_cert_action_name(p.action), "Wait");
    NS_ASSERT_INT_EQ(p.next, now + 20 * MIN);

    NS_ASSERT_STR_EQ(mesh_cert_action_name((mesh_cert_action)99), "Unknown");
}

/* ---- real certificates ---- */

#define TEST_NS "nutshell-system"

static cJSON *test_mesh(void)
{
    return cJSON_Parse("{\"metadata\":{\"name\":\"default\",\"uid\":\"u-1\",\"generation\":1},"
                       "\"spec\":{\"certificates\":{\"caValidity\":\"2400h\",\"validity\":\"240h\","
                       "\"renewBefore\":\"48h\"}}}");
}

static X509 *pem_x509(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    return x;
}

/* Renders with the store's bundle and `serving`, returns the webhook configuration and
 * the injector's Secret (from the same rendering), caller frees `list`. */
static cJSON *render(const mesh_spec *spec, const mesh_ca_store *store, const ns_tls_pair *serving,
                     const cJSON **webhook, const cJSON **secret)
{
    char *bundle = mesh_ca_store_bundle(store);
    mesh_tls tls = {bundle, serving->cert_pem, serving->key_pem};
    cJSON *list = NULL;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(mesh_render_spec(spec, TEST_NS, &tls, &list, &err), 0);
    free(bundle);
    *webhook = cJSON_GetArrayItem(list, cJSON_GetArraySize(list) - 1);
    *secret = cJSON_GetArrayItem(list, 2);
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(*secret, "kind")),
                     "Secret");
    return list;
}

static mesh_cert_facts facts(const mesh_ca_store *store, const ns_tls_pair *cert,
                             const cJSON *webhook, const char *served)
{
    mesh_cert_material m = {store, cert ? cert->cert_pem : NULL, webhook, served};
    mesh_cert_facts f;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(mesh_certs_facts(&m, time(NULL), &f, &err), 0);
    return f;
}

static const char *next_action(const mesh_cert_facts *f, const mesh_spec *spec)
{
    mesh_cert_policy p = {spec->certs.ca_validity, spec->certs.validity, spec->certs.renew_before,
                          MESH_CERT_SERVE_GRACE};
    return mesh_cert_action_name(mesh_certs_plan(f, &p).action);
}

static void test_real_rotation(void)
{
    cJSON *mesh = test_mesh();
    mesh_spec spec;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(mesh_spec_resolve(mesh, "0.1.0", &spec, &err), 0);
    time_t now = time(NULL);

    mesh_ca_store store = {0};
    CU_ASSERT_STRING_EQUAL(next_action((mesh_cert_facts[]){facts(&store, NULL, NULL, NULL)}, &spec),
                           "MintCA");
    ns_tls_pair ca1, cert1, ca2, cert2;
    NS_ASSERT_INT_EQ(mesh_certs_mint_ca(spec.certs.ca_validity, now, &ca1, &err), 0);
    mesh_ca_store_set_ca(&store, &ca1, false);
    CU_ASSERT_PTR_NULL(ca1.cert_pem); /* taken over by the store */
    /* exact to the second (minting reads the clock a moment after `now`) */
    CU_ASSERT_TRUE(store.ca.not_after >= now + 100 * DAY &&
                   store.ca.not_after <= now + 100 * DAY + 2);

    NS_ASSERT_INT_EQ(mesh_certs_mint_serving(&store.ca, spec.names.injector, TEST_NS,
                                             spec.certs.validity, &cert1, &err),
                     0);
    X509 *x = pem_x509(cert1.cert_pem);
    CU_ASSERT_EQUAL(X509_check_host(x, "nutshell-injector.nutshell-system.svc", 0, 0, NULL), 1);
    CU_ASSERT_EQUAL(
        X509_check_host(x, "nutshell-injector.nutshell-system.svc.cluster.local", 0, 0, NULL), 1);
    CU_ASSERT_EQUAL(X509_check_host(x, "nutshell-injector.default.svc", 0, 0, NULL), 0);
    X509_free(x);

    /* steady state: the rendered webhook trusts the CA, the injector serves cert1 */
    const cJSON *webhook, *secret;
    cJSON *list1 = render(&spec, &store, &cert1, &webhook, &secret);
    mesh_cert_facts f = facts(&store, &cert1, webhook, cert1.cert_pem);
    CU_ASSERT_TRUE(f.has_ca && f.has_cert && f.webhook_trusts_ca && !f.has_prev_ca);
    NS_ASSERT_INT_EQ(f.cert_issuer, MESH_CA_CURRENT);
    NS_ASSERT_INT_EQ(f.served, MESH_SERVED_CERT);
    NS_ASSERT_STR_EQ(next_action(&f, &spec), "Nothing");

    /* the Secret the render produced reads back as the same pair */
    ns_tls_pair back;
    NS_ASSERT_INT_EQ(mesh_tls_secret_read(secret, &back, &err), 0);
    NS_ASSERT_STR_EQ(back.cert_pem, cert1.cert_pem);
    NS_ASSERT_STR_EQ(back.key_pem, cert1.key_pem);
    ns_tls_pair_free(&back);

    /* step 1: a new CA joins the bundle; the live webhook does not carry it yet */
    NS_ASSERT_INT_EQ(mesh_certs_mint_ca(spec.certs.ca_validity, now + 1, &ca2, &err), 0);
    mesh_ca_store_set_ca(&store, &ca2, true);
    f = facts(&store, &cert1, webhook, cert1.cert_pem);
    CU_ASSERT_TRUE(f.has_prev_ca && !f.webhook_trusts_ca && f.webhook_trusts_prev_ca);
    NS_ASSERT_INT_EQ(f.cert_issuer, MESH_CA_PREVIOUS);
    NS_ASSERT_STR_EQ(next_action(&f, &spec), "Wait");

    /* step 2: the webhook carries both, the certificate moves to the new CA */
    cJSON *list2 = render(&spec, &store, &cert1, &webhook, &secret);
    f = facts(&store, &cert1, webhook, cert1.cert_pem);
    CU_ASSERT_TRUE(f.webhook_trusts_ca && f.webhook_trusts_prev_ca);
    NS_ASSERT_STR_EQ(next_action(&f, &spec), "MintServing");
    NS_ASSERT_INT_EQ(mesh_certs_mint_serving(&store.ca, spec.names.injector, TEST_NS,
                                             spec.certs.validity, &cert2, &err),
                     0);
    f = facts(&store, &cert2, webhook, cert1.cert_pem); /* still serving cert1 */
    NS_ASSERT_INT_EQ(f.cert_issuer, MESH_CA_CURRENT);
    NS_ASSERT_INT_EQ(f.served, MESH_SERVED_OTHER);
    NS_ASSERT_STR_EQ(next_action(&f, &spec), "Wait");

    /* step 3: the injector serves cert2; the old CA goes */
    f = facts(&store, &cert2, webhook, cert2.cert_pem);
    NS_ASSERT_STR_EQ(next_action(&f, &spec), "DropPreviousCA");
    mesh_ca_store_drop_previous(&store);
    cJSON *list3 = render(&spec, &store, &cert2, &webhook, &secret);
    f = facts(&store, &cert2, webhook, cert2.cert_pem);
    CU_ASSERT_TRUE(f.webhook_trusts_ca && !f.has_prev_ca);
    NS_ASSERT_STR_EQ(next_action(&f, &spec), "Nothing");

    /* a served certificate that does not parse is not the Secret's */
    f = facts(&store, &cert2, webhook, "garbage");
    NS_ASSERT_INT_EQ(f.served, MESH_SERVED_OTHER);
    f = facts(&store, &cert2, NULL, NULL);
    CU_ASSERT_FALSE(f.webhook_trusts_ca);
    NS_ASSERT_INT_EQ(f.served, MESH_SERVED_UNKNOWN);

    cJSON_Delete(list1);
    cJSON_Delete(list2);
    cJSON_Delete(list3);
    ns_tls_pair_free(&cert1);
    ns_tls_pair_free(&cert2);
    mesh_ca_store_free(&store);
    cJSON_Delete(mesh);
}

static void test_store_round_trip(void)
{
    cJSON *mesh = test_mesh();
    mesh_spec spec;
    ns_err err = {0};
    NS_ASSERT_INT_EQ(mesh_spec_resolve(mesh, "0.1.0", &spec, &err), 0);
    mesh_ca_store store = {0}, back;
    ns_tls_pair ca;

    /* no Secret yet: an empty store, which renders to nothing */
    NS_ASSERT_INT_EQ(mesh_ca_store_parse(NULL, &back, &err), 0);
    CU_ASSERT_PTR_NULL(back.ca.cert_pem);
    CU_ASSERT_PTR_NULL(mesh_ca_store_render(&back, &spec, TEST_NS));
    char *empty = mesh_ca_store_bundle(&back);
    NS_ASSERT_STR_EQ(empty, "");
    free(empty);

    for (int i = 0; i < 2; i++) {
        NS_ASSERT_INT_EQ(mesh_certs_mint_ca(spec.certs.ca_validity, 1000 + i, &ca, &err), 0);
        mesh_ca_store_set_ca(&store, &ca, true);
    }
    cJSON *secret = mesh_ca_store_render(&store, &spec, TEST_NS);
    CU_ASSERT_PTR_NOT_NULL_FATAL(secret);
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(secret, "type")),
                     "nutshell.io/ca");
    NS_ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                         cJSON_GetObjectItemCaseSensitive(secret, "metadata"), "name")),
                     "nutshell-ca");
    NS_ASSERT_INT_EQ(mesh_ca_store_parse(secret, &back, &err), 0);
    NS_ASSERT_STR_EQ(back.ca.cert_pem, store.ca.cert_pem);
    NS_ASSERT_STR_EQ(back.ca.key_pem, store.ca.key_pem);
    NS_ASSERT_STR_EQ(back.prev_ca_pem, store.prev_ca_pem);
    NS_ASSERT_INT_EQ(back.ca.not_after, store.ca.not_after);
    char *b1 = mesh_ca_store_bundle(&store), *b2 = mesh_ca_store_bundle(&back);
    NS_ASSERT_STR_EQ(b1, b2);
    CU_ASSERT_PTR_NOT_NULL(strstr(b1, store.prev_ca_pem));
    CU_ASSERT_TRUE(strncmp(b1, store.ca.cert_pem, strlen(store.ca.cert_pem)) == 0);
    free(b1);
    free(b2);
    mesh_ca_store_free(&back);

    /* a damaged store is an error for a human, not a reason to mint over it */
    cJSON *bad = cJSON_Duplicate(secret, true);
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(bad, "data"),
                                            "ca.key");
    NS_ASSERT_INT_EQ(mesh_ca_store_parse(bad, &back, &err), -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "the CA store Secret lacks a base64 ca.crt or ca.key; delete it to "
                              "start over with a new CA");
    cJSON_Delete(bad);

    bad = cJSON_Duplicate(secret, true); /* the key of another CA */
    NS_ASSERT_INT_EQ(mesh_certs_mint_ca(DAY, 5, &ca, &err), 0);
    cJSON *other = mesh_ca_store_render(&(mesh_ca_store){.ca = ca}, &spec, TEST_NS);
    cJSON_ReplaceItemInObjectCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(bad, "data"), "ca.key",
        cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(
                            cJSON_GetObjectItemCaseSensitive(other, "data"), "ca.key"),
                        true));
    NS_ASSERT_INT_EQ(mesh_ca_store_parse(bad, &back, &err), -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "the CA store Secret's ca.crt/ca.key: the private key does not "
                              "match the certificate");
    CU_ASSERT_PTR_NULL(strstr(err.msg, "PRIVATE")); /* never key material in messages */
    cJSON_Delete(bad);
    cJSON_Delete(other);
    ns_tls_pair_free(&ca);

    bad = cJSON_Duplicate(secret, true);
    cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(bad, "data"),
                                           "prev.crt", cJSON_CreateString("bm90IGEgY2VydA=="));
    NS_ASSERT_INT_EQ(mesh_ca_store_parse(bad, &back, &err), -EINVAL);
    NS_ASSERT_STR_EQ(err.msg, "the CA store Secret's prev.crt is not a PEM certificate");
    cJSON_Delete(bad);

    /* the injector's Secret without its key */
    ns_tls_pair pair;
    NS_ASSERT_INT_EQ(mesh_tls_secret_read(NULL, &pair, &err), -ENOENT);

    mesh_ca_store_drop_previous(&store);
    CU_ASSERT_PTR_NULL(store.prev_ca_pem);
    mesh_ca_store_free(&store);
    mesh_ca_store_free(NULL);
    cJSON_Delete(secret);
    cJSON_Delete(mesh);
}

/* not_after is `now` plus the lifetime to the second; minting reads the clock itself. */
static void assert_lifetime(const ns_tls_pair *p, time_t before, time_t after, int64_t validity)
{
    CU_ASSERT_TRUE(p->not_after >= before + validity && p->not_after <= after + validity);
    X509 *x = pem_x509(p->cert_pem);
    const ASN1_TIME *nb = X509_get0_notBefore(x), *na = X509_get0_notAfter(x);
    int days = -1, secs = -1;
    CU_ASSERT_EQUAL(ASN1_TIME_diff(&days, &secs, nb, na), 1);
    /* notBefore is backdated 5 minutes (ns_tls_mint); both are read from one clock */
    CU_ASSERT_TRUE((int64_t)days * DAY + secs >= validity + 300 &&
                   (int64_t)days * DAY + secs <= validity + 300 + 1);
    X509_free(x);
}

static void test_mint_lifetimes(void)
{
    ns_tls_pair ca, leaf;
    ns_err err = {0};
    time_t now = time(NULL);
    NS_ASSERT_INT_EQ(mesh_certs_mint_ca(HOUR + 7, now, &ca, &err), 0); /* exact, not a day */
    assert_lifetime(&ca, now, time(NULL), HOUR + 7);
    X509 *x = pem_x509(ca.cert_pem);
    char cn[128];
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    char want[64];
    snprintf(want, sizeof(want), "nutshell-injector-ca@%lld", (long long)now);
    NS_ASSERT_STR_EQ(cn, want);
    X509_free(x);
    /* a revision's host names are longer than X.509 allows a common name */
    time_t t = time(NULL);
    NS_ASSERT_INT_EQ(
        mesh_certs_mint_serving(&ca, "nutshell-injector-a-revision-of-forty-five-characters-xx",
                                "nutshell-system", 2 * DAY + 1, &leaf, &err),
        0);
    assert_lifetime(&leaf, t, time(NULL), 2 * DAY + 1);
    ns_tls_pair_free(&leaf);
    /* sub-day and sub-minute lifetimes, as a test Mesh forcing rotations uses */
    t = time(NULL);
    NS_ASSERT_INT_EQ(mesh_certs_mint_serving(&ca, "s", "n", 60, &leaf, &err), 0);
    assert_lifetime(&leaf, t, time(NULL), 60);
    ns_tls_pair_free(&leaf);
    t = time(NULL);
    NS_ASSERT_INT_EQ(mesh_certs_mint_serving(&ca, "s", "n", 1, &leaf, &err), 0);
    assert_lifetime(&leaf, t, time(NULL), 1);
    ns_tls_pair_free(&leaf);
    NS_ASSERT_INT_EQ(mesh_certs_mint_serving(NULL, "s", "n", DAY, &leaf, &err), -EINVAL);
    ns_tls_pair_free(&ca);
}

const ns_test mesh_certs_tests[] = {
    {"timeline: observed injector, failing webhook apply", test_timeline_observed},
    {"timeline: unobserved injector, grace period", test_timeline_grace},
    {"three years of random lags and failures", test_long_run},
    {"planner edge cases", test_plan_edges},
    {"real certificates through a rotation", test_real_rotation},
    {"CA store round trip and damage", test_store_round_trip},
    {"minting: lifetimes in exact seconds, names", test_mint_lifetimes},
    {NULL, NULL},
};

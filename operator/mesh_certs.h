/* mesh_certs.h - the injector's certificate lifecycle: a pure planner that decides the
 * next step, the CA store it works on, and OpenSSL helpers that carry the steps out.
 * Nothing here does I/O (no network, no files) or reads the clock: `now` is an input.
 *
 * The rule the planner keeps: the API server must trust, at every moment, the CA that
 * signed the certificate the injector is serving, so that no admission request fails
 * during a rotation. The trusted set is the webhook configuration's caBundle, and the
 * injector picks up a new certificate only after the kubelet refreshes its Secret
 * volume (up to a minute or two), so a CA rotation goes in three observed steps:
 *
 *   1. ROTATE_CA: a new CA is minted and ADDED to the bundle (the old one stays);
 *      rendering puts both into the webhook's caBundle.
 *   2. MINT_SERVING: once the live webhook configuration carries both CAs, the serving
 *      certificate is re-issued from the new CA (the old certificate stays trusted while
 *      the injector still serves it).
 *   3. DROP_PREVIOUS: once the injector is seen serving the new certificate (or a grace
 *      period after it was issued, when what it serves cannot be observed at all), the
 *      old CA leaves the bundle.
 *
 * A serving certificate is renewed from the current CA `renewBefore` ahead of its expiry;
 * the CA is rotated once a freshly issued certificate plus its renewal window would no
 * longer fit in the CA's remaining life (mesh_spec_validate guarantees that a new CA
 * starts well outside that window).
 */
#ifndef OP_MESH_CERTS_H
#define OP_MESH_CERTS_H

#include "err.h"
#include "mesh_render.h"
#include "tlsfiles.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* ---- the planner ---- */

/* Which CA signed a certificate. */
typedef enum mesh_ca_ref {
    MESH_CA_NONE,     /* no certificate */
    MESH_CA_CURRENT,  /* the current CA of the store */
    MESH_CA_PREVIOUS, /* the previous CA, still in the bundle during a rotation */
    MESH_CA_OTHER,    /* neither: a store that was deleted and re-made, a hand-made Secret */
} mesh_ca_ref;

/* What the injector was seen serving. Only UNKNOWN falls back to the grace period:
 * an injector seen serving an older certificate is waited for (it may have refused a
 * bad new pair and kept the old one, docs/injector.md), until the old CA expires. */
typedef enum mesh_served {
    MESH_SERVED_UNKNOWN, /* not observed (no probe yet, no ready pod) */
    MESH_SERVED_OTHER,   /* an injector pod presents another certificate */
    MESH_SERVED_CERT,    /* every probed injector pod presents the Secret's certificate */
} mesh_served;

/* What the controller knows this round (mesh_certs_facts() builds it from PEM text). */
typedef struct mesh_cert_facts {
    time_t now;
    bool has_ca; /* the store holds a CA (and its key) */
    time_t ca_not_after;
    bool has_prev_ca; /* a rotation is in progress: the previous CA is still trusted */
    time_t prev_ca_not_after;
    bool has_cert;          /* the injector's Secret holds a serving certificate */
    time_t cert_not_before; /* minted ones are backdated by 5 minutes (ns_tls_mint) */
    time_t cert_not_after;
    mesh_ca_ref cert_issuer;
    bool webhook_trusts_ca;      /* every webhook of the live configuration trusts the CA */
    bool webhook_trusts_prev_ca; /* ... and the previous CA */
    mesh_served served;          /* what the injector presents */
} mesh_cert_facts;

/* Lifetimes in seconds (mesh_spec.certs) and how long to wait for the injector to pick
 * up a new certificate when it cannot be observed. */
typedef struct mesh_cert_policy {
    int64_t ca_validity;
    int64_t validity;
    int64_t renew_before;
    int64_t serve_grace;
} mesh_cert_policy;

/* The kubelet refreshes Secret volumes within its sync period (1 minute by default) plus
 * cache delay, and the injector checks its files every second; 15 minutes from the
 * certificate's notBefore (itself 5 minutes in the past) leaves a wide margin. */
#define MESH_CERT_SERVE_GRACE (15 * 60)

/* How soon to probe the injector again while waiting for it to pick up a certificate. */
#define MESH_CERT_PROBE_INTERVAL 30

typedef enum mesh_cert_action {
    MESH_CERT_NOTHING,       /* all is well until `next` */
    MESH_CERT_MINT_CA,       /* no usable CA: mint one, which becomes the whole bundle */
    MESH_CERT_ROTATE_CA,     /* mint a new CA; the current one becomes the previous one */
    MESH_CERT_MINT_SERVING,  /* issue a serving certificate from the current CA */
    MESH_CERT_DROP_PREVIOUS, /* remove the previous CA from the store and the bundle */
    MESH_CERT_WAIT,          /* a step waits for the webhook or the injector to catch up */
} mesh_cert_action;

typedef struct mesh_cert_plan {
    mesh_cert_action action;
    const char *reason; /* a static sentence for logs, Events and the status */
    time_t next;        /* look again at this time even if nothing changes; 0: no deadline (the
                         * controller's watches on the webhook and the Deployment wake it) */
} mesh_cert_plan;

/* Decides the one next step from `f` and `p`. Call it again after carrying the step out
 * (and re-rendering), until it says NOTHING or WAIT. Pure and total: any facts give a
 * plan. */
mesh_cert_plan mesh_certs_plan(const mesh_cert_facts *f, const mesh_cert_policy *p);

/* "Nothing", "MintCA", "RotateCA", "MintServing", "DropPreviousCA", "Wait". */
const char *mesh_cert_action_name(mesh_cert_action a);

/* ---- the CA store ----
 *
 * Secret `names.ca` in the control-plane namespace, type "nutshell.io/ca", data ca.crt
 * and ca.key (the current CA) and, during a rotation, prev.crt (the previous CA's
 * certificate; its key is no longer needed). It is the only certificate state the
 * operator keeps, and it is never mounted into a pod: the injector's Secret carries only
 * the serving pair and the bundle. The controller writes the store before it uses a CA
 * it has just minted, so a restart never loses the key of a CA already in a bundle. */
typedef struct mesh_ca_store {
    ns_tls_pair ca;    /* cert_pem NULL when there is no CA */
    char *prev_ca_pem; /* NULL when no rotation is in progress */
} mesh_ca_store;

/* Reads the live store Secret (NULL: none yet, an empty store). An expired CA is
 * returned as it is, for the planner to replace. Returns 0, or -EINVAL (err says which
 * key is bad: not base64, not PEM, key not matching) or -ENOMEM; on error *out is empty. */
int mesh_ca_store_parse(const cJSON *secret, mesh_ca_store *out, ns_err *err);

/* The store as a Secret for server-side apply, owned by the Mesh of `spec`. NULL on
 * ENOMEM or if the store has no CA. Caller frees. */
cJSON *mesh_ca_store_render(const mesh_ca_store *store, const mesh_spec *spec,
                            const char *namespace);

/* The PEM bundle to trust: the current CA, then the previous one if any. Malloc'd (caller
 * frees); "" for an empty store; NULL on ENOMEM. */
char *mesh_ca_store_bundle(const mesh_ca_store *store);

/* ROTATE_CA / MINT_CA: makes `new_ca` the current CA (the store takes ownership of its
 * strings and clears *new_ca). With `keep_previous` the old current CA's certificate
 * becomes the previous one; without, the old CAs are forgotten. */
void mesh_ca_store_set_ca(mesh_ca_store *store, ns_tls_pair *new_ca, bool keep_previous);

/* DROP_PREVIOUS. */
void mesh_ca_store_drop_previous(mesh_ca_store *store);

/* Frees the store's strings (the CA key is wiped first). NULL is fine. */
void mesh_ca_store_free(mesh_ca_store *store);

/* ---- facts from PEM text ---- */

typedef struct mesh_cert_material {
    const mesh_ca_store *store;
    const char *cert_pem;   /* the serving certificate in the injector's Secret, or NULL */
    const cJSON *webhook;   /* the live MutatingWebhookConfiguration, or NULL */
    const char *served_pem; /* the certificate the injector presented (the controller
                             * probes each ready pod and passes one that differs from the
                             * Secret's, if any), NULL if not observed */
} mesh_cert_material;

/* Fills *out from `m` at time `now`: lifetimes from the certificates, the serving
 * certificate's issuer by signature, webhook trust by comparing each CA with every
 * certificate of every webhook's caBundle (all webhooks of the configuration must trust
 * it), and whether the served certificate is the Secret's. Material that does not parse
 * counts as absent (so the planner replaces it), except a served certificate, which
 * counts as OTHER. Returns 0 or -ENOMEM. */
int mesh_certs_facts(const mesh_cert_material *m, time_t now, mesh_cert_facts *out, ns_err *err);

/* Reads tls.crt and tls.key of the live injector Secret into *out (not checked for
 * expiry: the planner looks at that). Returns 0, -ENOENT if the Secret or a key is
 * missing, -EINVAL if they do not decode, parse or match, -ENOMEM. */
int mesh_tls_secret_read(const cJSON *secret, ns_tls_pair *out, ns_err *err);

/* ---- minting (OpenSSL, via ns_tls_mint) ----
 * Lifetimes are exact seconds (ns_cert_request.valid_seconds): notAfter is the minting
 * time plus the lifetime, notBefore 5 minutes before the minting time. */

/* A self-signed CA named "nutshell-injector-ca@<now>", following the API server's own
 * "<name>-ca@<unix time>": the CAs of a bundle then never share a subject. */
int mesh_certs_mint_ca(int64_t validity, time_t now, ns_tls_pair *out, ns_err *err);

/* A serving certificate for the injector's Service `service` in `namespace`, signed by
 * `ca`: DNS names <service>.<namespace>.svc, which is the name the API server dials for
 * a service clientConfig, and <service>.<namespace>.svc.cluster.local; common name
 * <service>. */
int mesh_certs_mint_serving(const ns_tls_pair *ca, const char *service, const char *namespace,
                            int64_t validity, ns_tls_pair *out, ns_err *err);

/* As mesh_certs_mint_serving, with more subject alternative names: `extra_dns` and
 * `extra_ips` (NULL-terminated, each may be NULL), for a webhook the API server reaches
 * by URL (the operator's local mode: --webhook-url). */
int mesh_certs_mint_serving_sans(const ns_tls_pair *ca, const char *service, const char *namespace,
                                 const char *const *extra_dns, const char *const *extra_ips,
                                 int64_t validity, ns_tls_pair *out, ns_err *err);

/* True if the PEM certificate `cert_pem` is valid for `host`: an IP address (checked
 * against its IP SANs) or a DNS name. False if it does not parse. */
bool mesh_certs_cert_covers(const char *cert_pem, const char *host);

#endif

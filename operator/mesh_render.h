/* mesh_render.h - the Mesh controller's pure core: spec defaults and checks, the desired
 * objects, the status, and the drift predicate. No I/O: objects in, objects out.
 *
 * The controller's loop is: resolve and validate the spec; read the CA store and the
 * injector's Secret (mesh_certs.h) and act on the certificate plan; render; for each
 * desired object, server-side apply it only if mesh_object_needs_update() says the live
 * object differs; prune owned objects that are no longer desired (the PodDisruptionBudget
 * when replicas drop to 1); build the status from what it observed.
 *
 * Rendering is deterministic (no clock, no randomness): the same Mesh, version and TLS
 * material give byte-identical objects, which is what makes a second reconcile of an
 * unchanged state write nothing.
 */
#ifndef OP_MESH_RENDER_H
#define OP_MESH_RENDER_H

#include "err.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define MESH_API_VERSION "nutshell.io/v1alpha1"
#define MESH_KIND        "Mesh"

/* Label keys every owned object carries; the revision label also tells two Meshes'
 * objects apart when the controller prunes. */
#define MESH_LABEL_NAME       "app.kubernetes.io/name"
#define MESH_LABEL_PART_OF    "app.kubernetes.io/part-of"
#define MESH_LABEL_MANAGED_BY "app.kubernetes.io/managed-by"
#define MESH_LABEL_REVISION   "nutshell.io/revision"

/* The longest revision: "nutshell-injector-<rev>" names a Service, and Service names are
 * DNS-1035 labels of at most 63 characters. */
#define MESH_REVISION_MAX 45

/* Names of the objects of one revision. The "default" revision has the bare names; any
 * other gets "-<revision>" on each, so that two Meshes never fight over one object. */
typedef struct mesh_names {
    char injector[64]; /* Deployment, Service, ServiceAccount, PDB: nutshell-injector */
    char config[80];   /* ConfigMap nutshell-injector-config */
    char tls[80];      /* Secret nutshell-injector-tls (mounted by the injector) */
    char ca[80];       /* Secret nutshell-ca: the CA store, never mounted (mesh_certs.h) */
    char webhook[80];  /* MutatingWebhookConfiguration nutshell-sidecar-injector */
} mesh_names;

/* Fills *out for `revision` (which must be a valid revision, see mesh_spec_validate). */
void mesh_names_init(mesh_names *out, const char *revision);

/* Quantities as strings; "" means "not set" (only possible for the injector's own). */
typedef struct mesh_resources {
    char cpu_request[32];
    char memory_request[32];
    char cpu_limit[32];
    char memory_limit[32];
} mesh_resources;

/* A Mesh with every default applied: what the CRD would have defaulted, plus the
 * operator's own defaults for what the CRD leaves open (images, resources, traffic).
 * Self-contained (no pointers into the Mesh object), so it outlives it. */
typedef struct mesh_spec {
    char name[254]; /* metadata.name */
    char uid[64];   /* metadata.uid, for ownerReferences */
    int64_t generation;
    char revision[64];
    mesh_names names;
    struct {
        char image[256];
        char image_pull_policy[16];
        char log_level[16];
        bool native_sidecar;
        bool hold_application;
        mesh_resources resources;
    } proxy;
    struct {
        char image[256];
        mesh_resources resources;
    } init;
    struct {
        char image[256];
        int32_t replicas;
        char failure_policy[8];
        int32_t timeout_seconds;
        mesh_resources resources;
    } injector;
    struct {
        char include_inbound_ports[256];
        char exclude_inbound_ports[256];
        char exclude_outbound_ports[256];
        char include_outbound_cidrs[256];
        char exclude_outbound_cidrs[256];
    } traffic;
    struct {
        /* as written (for messages), and in seconds */
        char ca_validity_text[32];
        char validity_text[32];
        char renew_before_text[32];
        int64_t ca_validity;
        int64_t validity;
        int64_t renew_before;
    } certs;
} mesh_spec;

/* Reads the Mesh object `mesh` (as the API server returns it) into *out, applying
 * defaults to every absent or null field:
 *   revision "default"; proxy.image "nutshell/proxy:<version>", imagePullPolicy
 *   IfNotPresent, logLevel info, nativeSidecar and holdApplication false, resources
 *   10m/16Mi requests, 1/64Mi limits; init.image = the proxy image (it carries
 *   nutshell-init), resources 10m/8Mi, 100m/32Mi; injector.image
 *   "nutshell/injector:<version>", replicas 2, failurePolicy Fail, timeoutSeconds 10,
 *   resources 10m/16Mi requests, 64Mi memory limit, no CPU limit; traffic "*", "", "",
 *   "*", ""; certificates 87600h, 2160h, 720h.
 * Each resource value defaults on its own: setting only limits.memory keeps the other
 * three. Quantities may be strings or numbers (int-or-string), and come out as strings.
 * A field of the wrong JSON type, or a string too long for *out, is an error naming its
 * path ("spec.injector.replicas must be an integer"). Durations are parsed here.
 * Values are not checked beyond that: see mesh_spec_validate.
 * Returns 0, or -EINVAL with err set (then *out is unspecified). */
int mesh_spec_resolve(const cJSON *mesh, const char *version, mesh_spec *out, ns_err *err);

/* Checks what the CRD schema cannot express, or what we must not trust it to have
 * checked (an old CRD, a Mesh written before a schema change):
 *   - revision is a DNS-1123 label of at most MESH_REVISION_MAX characters;
 *   - images, pull policy, log level, quantities, port and CIDR lists are what the
 *     injector's config parser accepts (the same functions, injector/validate.h), so
 *     the injector never refuses a config the operator wrote;
 *   - each resource request is at most its limit (else every injected pod would be
 *     refused by the API server);
 *   - replicas >= 0, and 0 only with failurePolicy Ignore (no injector plus Fail blocks
 *     every pod creation in opted-in namespaces); timeoutSeconds 1..30 (the API
 *     server's range); failurePolicy Fail or Ignore;
 *   - certificate durations (exact seconds): 0 < renewBefore < validity, and
 *     validity + renewBefore < caValidity (a CA must outlive every certificate it
 *     signs, with room to rotate).
 * Returns 0, or -EINVAL with one sentence in err naming the field(s) and value(s). */
int mesh_spec_validate(const mesh_spec *spec, ns_err *err);

/* The TLS material the objects carry, as PEM text (not base64). */
typedef struct mesh_tls {
    const char *ca_bundle_pem; /* the CAs the webhook trusts: one, or two while rotating */
    const char *cert_pem;      /* the injector's serving certificate (chain) */
    const char *key_pem;       /* its private key */
} mesh_tls;

/* Renders the desired objects of `mesh` into *out, a new cJSON array the caller frees
 * with cJSON_Delete. Each item is complete for server-side apply (apiVersion, kind,
 * metadata.name, namespace where namespaced), labelled (MESH_LABEL_*) and owned by the
 * Mesh (controller ownerReference with blockOwnerDeletion). In apply order:
 *   ServiceAccount, ConfigMap (config.json, the injector's config file), Secret
 *   (kubernetes.io/tls: tls.crt, tls.key, ca.crt), Deployment, Service,
 *   PodDisruptionBudget (only when replicas > 1), MutatingWebhookConfiguration.
 * The webhook configuration comes last so that it never points at an injector that
 * has not been given its Secret and config yet.
 *
 * The Deployment's pod template depends on the spec and version only, never on the TLS
 * material or the config file's contents: the injector reloads both from its mounted
 * volumes by itself (docs/injector.md), so rotating a certificate or editing the proxy
 * settings must not roll the injector pods. (Hence no config-hash annotation, and no
 * subPath mounts, which the kubelet never refreshes.)
 *
 * `namespace` is the control-plane namespace ("nutshell-system"), `version` the
 * operator's version (default image tags). `tls` and its three strings must be set.
 * Returns 0; -EINVAL with err set if the spec does not resolve or validate; -ENOMEM. */
int mesh_render(const cJSON *mesh, const char *namespace, const char *version, const mesh_tls *tls,
                cJSON **out, ns_err *err);

/* Same as mesh_render from an already resolved and validated spec. */
int mesh_render_spec(const mesh_spec *spec, const char *namespace, const mesh_tls *tls, cJSON **out,
                     ns_err *err);

/* A new object {apiVersion, kind, metadata: {name, namespace (if not NULL), labels,
 * ownerReferences}} owned by the Mesh of `spec`; what every rendered object starts
 * from (mesh_certs.c uses it for the CA store). Caller frees; NULL on ENOMEM. */
cJSON *mesh_object_new(const mesh_spec *spec, const char *api_version, const char *kind,
                       const char *name, const char *namespace);

/* The drift-repair predicate: true when `observed` (the live object, NULL if absent)
 * differs from `desired` in any field that `desired` sets. Only fields present in
 * `desired` are compared, recursively, so whatever the API server fills in (uid,
 * resourceVersion, managedFields, status, defaulted fields, other managers' labels) is
 * ignored. Objects compare member by member; arrays must have the same length and
 * compare element by element (all our arrays are atomic or ordered); scalars must be
 * equal, except resource quantities under "requests"/"limits", which compare by value
 * because the API server canonicalises them ("1000m" comes back as "1"). The top-level
 * apiVersion and kind are skipped: list responses omit them from items. */
bool mesh_object_needs_update(const cJSON *desired, const cJSON *observed);

/* What the controller saw this round, for the status. */
typedef struct mesh_observed {
    time_t now;              /* for lastTransitionTime of conditions that change */
    int64_t generation;      /* metadata.generation of the Mesh that was reconciled */
    int32_t replicas;        /* desired injector replicas */
    int32_t ready_replicas;  /* the Deployment's status.readyReplicas */
    time_t cert_not_after;   /* the serving certificate's expiry, 0 if none */
    int64_t renew_before;    /* spec.certificates.renewBefore, seconds */
    time_t ca_not_after;     /* the current CA's expiry, 0 if none */
    bool webhook_present;    /* the MutatingWebhookConfiguration exists */
    bool webhook_ca_matches; /* ... and its caBundle is the bundle we hold */
    const char *error;       /* why the last reconcile failed; NULL or "" if it did not */
} mesh_observed;

/* Builds the Mesh's new status into *out (caller frees):
 *   {observedGeneration, phase, conditions: [Ready, WebhookReady, CertificateReady],
 *    injector: {replicas, readyReplicas}, certificate: {notAfter, caNotAfter}}
 * with times in RFC 3339 UTC, as docs/crds.md describes them:
 *   CertificateReady: the serving certificate and the CA are valid and the certificate
 *     is not due for renewal (reasons Valid, NotIssued, Expired, RenewalDue);
 *   WebhookReady: the configuration exists, carries the current bundle, and at least
 *     one injector replica is ready to answer it (Configured, WebhookMissing,
 *     CABundleMismatch, NoInjectorReady);
 *   Ready: both, every injector replica ready, and no reconcile error (Ready,
 *     ReconcileError, CertificateNotReady, WebhookNotReady, InjectorNotReady), the
 *     first failing cause giving reason and message.
 * Conditions follow metav1.Condition (type, status,
 * observedGeneration, lastTransitionTime, reason, message); a condition whose status
 * is the same as in `prev_status` (the Mesh's current status, may be NULL) keeps its
 * lastTransitionTime, even when its reason or message changed, as Kubernetes does.
 * Phase: Ready when Ready holds; Installing while the Mesh has never been Ready and no
 * reconcile error is reported; Degraded otherwise. (Pending and Deleting, the CRD's
 * other phases, are the controller's to set: before the first reconcile, and while the
 * finalizer runs.)
 * Returns 0 or -ENOMEM. */
int mesh_status_build(const cJSON *prev_status, const mesh_observed *obs, cJSON **out);

/* Formats `t` as RFC 3339 UTC ("2025-01-31T12:00:00Z") into buf (>= 21 bytes). */
void mesh_time_format(time_t t, char *buf, size_t len);

#endif

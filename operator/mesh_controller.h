/* mesh_controller.h - the Mesh controller: the I/O around the Mesh's pure core
 * (mesh_render.h, mesh_certs.h). It reads the Mesh and the objects it owns from
 * informer caches, writes through the Kubernetes API only what differs, and records the
 * status and Events. Every decision (defaults, validation, desired objects, drift, the
 * certificate plan, the status) is made by the pure functions; this file only gathers
 * their inputs and carries out their answers.
 *
 * One reconcile of the Mesh `name`, level-triggered and idempotent:
 *   gone -> nothing; being deleted -> delete the MutatingWebhookConfiguration, then drop
 *   the finalizer; else ensure the finalizer, resolve and validate the spec (a bad spec:
 *   status Degraded, a Warning Event, no retry), run the certificate plan, apply the
 *   rendered objects that differ from the cache, prune owned objects no longer desired,
 *   and write the status if it changed. The same state reconciled twice writes nothing.
 *
 * Informers: the Meshes (cluster-scoped) and, in the control-plane namespace, the owned
 * kinds labelled app.kubernetes.io/managed-by=nutshell-operator, plus the
 * MutatingWebhookConfigurations with that label. An event on an owned object enqueues its
 * owning Mesh, so an edited or deleted object is put back by the next reconcile.
 */
#ifndef OP_MESH_CONTROLLER_H
#define OP_MESH_CONTROLLER_H

#include "controller.h"
#include "err.h"
#include "events.h"
#include "kube.h"
#include "metrics.h"

#include <stdbool.h>

/* The finalizer that keeps a Mesh until its webhook configuration is gone. */
#define MESH_FINALIZER "nutshell.io/webhook-cleanup"
/* The fieldManager of every write. */
#define MESH_FIELD_MANAGER "nutshell-operator"
/* The label selector of the owned-object informers. */
#define MESH_MANAGED_SELECTOR "app.kubernetes.io/managed-by=nutshell-operator"

typedef struct mesh_controller mesh_controller;

typedef struct mesh_controller_opts {
    ns_kube *kube;         /* required; must outlive the controller */
    const char *namespace; /* control-plane namespace; required */
    const char *version;   /* the operator's version (default image tags); required */
    op_recorder *recorder; /* Events; NULL: none */
    ns_metrics *metrics;   /* registry for the controller's metrics; NULL: none */
    ns_metric *writes;     /* optional counter: every API write the controller makes */
    unsigned workers;      /* 0: 1 */
    long resync_ms;        /* > 0: reconcile every Mesh this often even if nothing changed */
    bool start_paused;     /* leader election: wait for mesh_controller_resume */
    /* Local mode, for clusters without a container runtime (docs/operator.md):
     * webhook_url: the webhook configuration calls this https:// URL (clientConfig.url)
     *   instead of the injector's Service, and the serving certificate also names the
     *   URL's host (an IP SAN for an address). NULL: the Service.
     * local_dir: after each reconcile, the injector's tls.crt, tls.key (0600), ca.crt and
     *   config.json are written there atomically when they changed, as a kubelet mounts
     *   the Secret and the ConfigMap, for an injector run by hand. NULL: none. */
    const char *webhook_url;
    const char *local_dir;
} mesh_controller_opts;

/* Makes the controller and its informers (not started). Strings are copied. Returns 0 and
 * *out (free with mesh_controller_free), -EINVAL (message in err) or -ENOMEM. */
int mesh_controller_new(const mesh_controller_opts *opts, mesh_controller **out, ns_err *err);

/* Starts the informers' threads. Returns 0 or -errno (message in err). */
int mesh_controller_start_informers(mesh_controller *mc, ns_err *err);

/* True once every informer has applied its first list. */
bool mesh_controller_synced(mesh_controller *mc);

/* Starts the workers, after waiting up to `sync_timeout_ms` for the informers to sync
 * (call mesh_controller_start_informers first). Returns as op_controller_start. */
int mesh_controller_start(mesh_controller *mc, long sync_timeout_ms, ns_err *err);

/* Leader election callbacks: stop handing keys out, or start again. Any thread. */
void mesh_controller_pause(mesh_controller *mc);
void mesh_controller_resume(mesh_controller *mc);

/* Stops the informers, then the workers (running reconciles finish). Idempotent. */
void mesh_controller_stop(mesh_controller *mc);

/* Stops (if needed) and frees. Accepts NULL. */
void mesh_controller_free(mesh_controller *mc);

#endif

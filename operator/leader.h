/* leader.h - leader election with a coordination.k8s.io/v1 Lease (client-go's
 * leaderelection with a LeaseLock), so that of several operator replicas only one
 * reconciles at a time.
 *
 * The decision is a pure function of (the Lease as read, now, our identity): create it,
 * take it over, renew it, or wait. Around it, one thread per elector reads and writes the
 * Lease: a candidate retries every retry period; the leader renews every retry period
 * and, if it cannot renew for renew_deadline, or finds the Lease taken (409 Conflict, or
 * another holder), calls on_stopped at once. Since renew_deadline < lease_duration, the
 * old leader has stopped before any other replica may consider the Lease expired.
 *
 * Expiry is judged on the Lease's own renewTime + leaseDurationSeconds against this
 * host's wall clock, so replicas' clocks must agree to well within
 * lease_duration - renew_deadline (NTP does far better).
 */
#ifndef OP_LEADER_H
#define OP_LEADER_H

#include "err.h"
#include "kube.h"
#include "metrics.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* client-go's defaults. */
#define OP_LEADER_LEASE_DURATION_S  15
#define OP_LEADER_RENEW_DEADLINE_MS 10000L
#define OP_LEADER_RETRY_PERIOD_MS   2000L

#define OP_LEADER_IDENTITY_MAX 256

/* ---- pure parts ---- */

/* The Lease fields the decision needs. Times are Unix microseconds, 0 when absent. */
typedef struct op_lease_record {
    char holder[OP_LEADER_IDENTITY_MAX]; /* spec.holderIdentity, "" if none */
    int64_t lease_duration_s;            /* spec.leaseDurationSeconds, 0 if absent */
    int64_t acquire_us;                  /* spec.acquireTime */
    int64_t renew_us;                    /* spec.renewTime */
    int64_t transitions;                 /* spec.leaseTransitions */
} op_lease_record;

/* Reads `lease` (a Lease object). Missing or malformed fields read as absent, so a Lease
 * someone broke can still be taken over. Returns 0, or -EINVAL when `lease` is not an
 * object. */
int op_lease_parse(const cJSON *lease, op_lease_record *out);

typedef enum op_lease_action {
    OP_LEASE_CREATE,  /* no Lease: create one holding it */
    OP_LEASE_ACQUIRE, /* free (no holder) or expired: take it over, transitions + 1 */
    OP_LEASE_RENEW,   /* ours: push renewTime forward */
    OP_LEASE_WAIT,    /* someone else holds a live Lease */
} op_lease_action;

const char *op_lease_action_name(op_lease_action a);

/* True if `rec` was not renewed within its duration: renewTime (or acquireTime when
 * renewTime is absent) + leaseDurationSeconds < now. A Lease without a duration or
 * without any time has expired. */
bool op_lease_expired(const op_lease_record *rec, int64_t now_us);

/* What `identity` should do about the Lease `rec` (NULL: it does not exist) at `now_us`. */
op_lease_action op_lease_decide(const op_lease_record *rec, int64_t now_us, const char *identity);

/* The Lease body to write for `action` (CREATE, ACQUIRE, RENEW), or for a release
 * (`release` true: holderIdentity "", leaseDurationSeconds 1, times now, so that others
 * take over at their next try). Starts from a copy of `current` (NULL for CREATE) so that
 * metadata.resourceVersion makes the update conditional. Returns a new object (caller
 * frees) or NULL on allocation failure. */
cJSON *op_lease_build(const cJSON *current, op_lease_action action, bool release, const char *ns,
                      const char *name, const char *identity, int64_t lease_duration_s,
                      int64_t now_us);

/* ns_time_parse (timefmt.h), kept under the operator's name for its callers: RFC 3339
 * into Unix microseconds, 0 or -EINVAL. */
int op_time_parse(const char *s, int64_t *us);

/* $POD_NAME if set, else "<hostname>_<pid>". Returns 0 or -ENAMETOOLONG. */
int op_leader_default_identity(char *buf, size_t size);

/* ---- the elector ---- */

typedef struct op_leader op_leader;

typedef struct op_leader_opts {
    const char *namespace;  /* of the Lease; required */
    const char *name;       /* of the Lease; required */
    const char *identity;   /* NULL: op_leader_default_identity() */
    int lease_duration_s;   /* 0: OP_LEADER_LEASE_DURATION_S */
    long renew_deadline_ms; /* 0: OP_LEADER_RENEW_DEADLINE_MS */
    long retry_period_ms;   /* 0: OP_LEADER_RETRY_PERIOD_MS */
    bool keep_on_stop;      /* op_leader_stop leaves the Lease held (default: release it) */
    /* Called on the elector's thread, one at a time, and must not call op_leader_stop.
     * on_stopped is called at once when leadership is lost, and by op_leader_stop (on its
     * caller's thread) if leading. */
    void (*on_started)(void *ud);
    void (*on_stopped)(void *ud);
    void (*on_new_leader)(void *ud, const char *identity); /* holder changed; may be NULL */
    void *ud;
    ns_metric *is_leader; /* optional gauge, 1 while leading */
} op_leader_opts;

/* Makes an elector. It talks to the API server through its own client, made from `k`'s
 * config with a per-request timeout of the retry period (at most 5 s) and no retries of
 * its own, so that a hung request cannot outlast the renew deadline. Checks
 * lease_duration > renew_deadline > retry_period. Returns 0 and *out (free with
 * op_leader_free), -EINVAL (message in err), or -ENOMEM. */
int op_leader_new(ns_kube *k, const op_leader_opts *opts, op_leader **out, ns_err *err);

/* Starts the election thread. Returns 0, -EBUSY, or -errno from pthread_create. */
int op_leader_start(op_leader *l);

bool op_leader_is_leader(op_leader *l);

/* The holder last seen on the Lease ("" if none or not read yet). */
void op_leader_holder(op_leader *l, char *buf, size_t size);

const char *op_leader_identity(const op_leader *l);

/* Ends the election: wakes and joins the thread, then, if leading, releases the Lease
 * (unless keep_on_stop) and calls on_stopped. Call it after the controllers have stopped
 * so that the next leader never overlaps a reconcile of ours. Idempotent. */
void op_leader_stop(op_leader *l);

/* Stops (if needed) and frees. Accepts NULL. */
void op_leader_free(op_leader *l);

#endif

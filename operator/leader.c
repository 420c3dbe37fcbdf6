/* leader.c - Lease-based leader election: the pure decision and Lease bodies, and the
 * thread that acquires, renews and releases the Lease. */
#include "leader.h"

#include "json.h"
#include "log.h"
#include "timefmt.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ time */

int op_time_parse(const char *s, int64_t *us)
{
    return ns_time_parse(s, us);
}

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ decisions */

static int64_t json_int(const cJSON *obj, const char *key)
{
    const cJSON *v = ns_json_get(obj, key);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9.0e15
               ? (int64_t)v->valuedouble
               : 0;
}

static int64_t json_time(const cJSON *obj, const char *key)
{
    int64_t us = 0;
    return ns_time_parse(ns_json_str(obj, key), &us) == 0 ? us : 0;
}

int op_lease_parse(const cJSON *lease, op_lease_record *out)
{
    *out = (op_lease_record){0};
    if (!cJSON_IsObject(lease))
        return -EINVAL;
    const cJSON *spec = ns_json_get(lease, "spec");
    const char *holder = ns_json_str(spec, "holderIdentity");
    snprintf(out->holder, sizeof(out->holder), "%s", holder ? holder : "");
    out->lease_duration_s = json_int(spec, "leaseDurationSeconds");
    out->acquire_us = json_time(spec, "acquireTime");
    out->renew_us = json_time(spec, "renewTime");
    out->transitions = json_int(spec, "leaseTransitions");
    return 0;
}

const char *op_lease_action_name(op_lease_action a)
{
    switch (a) {
    case OP_LEASE_CREATE:
        return "create";
    case OP_LEASE_ACQUIRE:
        return "acquire";
    case OP_LEASE_RENEW:
        return "renew";
    case OP_LEASE_WAIT:
        return "wait";
    }
    return "unknown";
}

bool op_lease_expired(const op_lease_record *rec, int64_t now_us)
{
    int64_t last = rec->renew_us ? rec->renew_us : rec->acquire_us;
    if (last <= 0 || rec->lease_duration_s <= 0)
        return true;
    return last + rec->lease_duration_s * 1000000 < now_us;
}

op_lease_action op_lease_decide(const op_lease_record *rec, int64_t now_us, const char *identity)
{
    if (!rec)
        return OP_LEASE_CREATE;
    if (strcmp(rec->holder, identity) == 0)
        return OP_LEASE_RENEW;
    if (rec->holder[0] == '\0' || op_lease_expired(rec, now_us))
        return OP_LEASE_ACQUIRE;
    return OP_LEASE_WAIT;
}

cJSON *op_lease_build(const cJSON *current, op_lease_action action, bool release, const char *ns,
                      const char *name, const char *identity, int64_t lease_duration_s,
                      int64_t now_us)
{
    char now[NS_TIME_MAX];
    if (ns_time_format_us(now_us, now, sizeof(now)) != 0)
        return NULL;
    cJSON *lease = current ? cJSON_Duplicate(current, true) : cJSON_CreateObject();
    if (!lease)
        return NULL;
    op_lease_record old;
    op_lease_parse(current, &old);
    if (!current) {
        cJSON *md = ns_json_ensure_object(lease, "metadata");
        if (ns_json_set_str(lease, "apiVersion", "coordination.k8s.io/v1") ||
            ns_json_set_str(lease, "kind", "Lease") || !md || ns_json_set_str(md, "name", name) ||
            ns_json_set_str(md, "namespace", ns))
            goto fail;
    }
    /* the server fills these; sending a stale copy back only costs bytes */
    cJSON *md = ns_json_get(lease, "metadata");
    if (md)
        cJSON_DeleteItemFromObjectCaseSensitive(md, "managedFields");
    cJSON *spec = ns_json_ensure_object(lease, "spec");
    if (!spec)
        goto fail;
    int64_t transitions = old.transitions;
    const char *acquire = NULL; /* NULL: keep */
    if (release) {
        identity = "";
        lease_duration_s = 1;
        acquire = now;
    } else if (action == OP_LEASE_CREATE) {
        transitions = 0;
        acquire = now;
    } else if (action == OP_LEASE_ACQUIRE) {
        transitions++;
        acquire = now;
    } else if (!ns_json_str(spec, "acquireTime")) {
        acquire = now;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(spec, "leaseDurationSeconds");
    cJSON_DeleteItemFromObjectCaseSensitive(spec, "leaseTransitions");
    if (ns_json_set_str(spec, "holderIdentity", identity) ||
        ns_json_set_str(spec, "renewTime", now) ||
        (acquire && ns_json_set_str(spec, "acquireTime", acquire)) ||
        !cJSON_AddNumberToObject(spec, "leaseDurationSeconds", (double)lease_duration_s) ||
        !cJSON_AddNumberToObject(spec, "leaseTransitions", (double)transitions))
        goto fail;
    return lease;
fail:
    cJSON_Delete(lease);
    return NULL;
}

int op_leader_default_identity(char *buf, size_t size)
{
    const char *pod = getenv("POD_NAME");
    int n;
    if (pod && pod[0]) {
        n = snprintf(buf, size, "%s", pod);
    } else {
        char host[256] = "unknown";
        if (gethostname(host, sizeof(host)) != 0)
            snprintf(host, sizeof(host), "unknown");
        host[sizeof(host) - 1] = '\0';
        n = snprintf(buf, size, "%s_%ld", host, (long)getpid());
    }
    return n > 0 && (size_t)n < size ? 0 : -ENAMETOOLONG;
}

/* ------------------------------------------------------------------ the elector */

struct op_leader {
    ns_kube *k; /* our own client: short timeout, no retries */
    char *ns, *name;
    char identity[OP_LEADER_IDENTITY_MAX];
    int lease_s;
    long renew_deadline_ms, retry_ms;
    bool keep_on_stop;
    void (*on_started)(void *ud);
    void (*on_stopped)(void *ud);
    void (*on_new_leader)(void *ud, const char *identity);
    void *ud;
    ns_metric *m_leader;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started, stopping, joined;
    pthread_t thread;
    char holder[OP_LEADER_IDENTITY_MAX]; /* under mu */

    atomic_bool leading;
    /* elector thread only (and op_leader_stop after the join) */
    cJSON *lease;    /* the Lease as last read or written */
    int64_t last_ok; /* monotonic ms of the last successful acquire/renew */
};

int op_leader_new(ns_kube *k, const op_leader_opts *o, op_leader **out, ns_err *err)
{
    *out = NULL;
    if (!o->namespace || !o->namespace[0] || !o->name || !o->name[0])
        return ns_errorf(err, -EINVAL, "leader election needs the Lease's namespace and name");
    int lease_s = o->lease_duration_s > 0 ? o->lease_duration_s : OP_LEADER_LEASE_DURATION_S;
    long renew = o->renew_deadline_ms > 0 ? o->renew_deadline_ms : OP_LEADER_RENEW_DEADLINE_MS;
    long retry = o->retry_period_ms > 0 ? o->retry_period_ms : OP_LEADER_RETRY_PERIOD_MS;
    if ((long)lease_s * 1000 <= renew)
        return ns_errorf(err, -EINVAL,
                         "lease duration (%d s) must be longer than the renew deadline (%ld ms)",
                         lease_s, renew);
    if (renew <= retry)
        return ns_errorf(err, -EINVAL,
                         "renew deadline (%ld ms) must be longer than the retry period (%ld ms)",
                         renew, retry);
    op_leader *l = calloc(1, sizeof(*l));
    if (!l)
        return ns_errorf(err, -ENOMEM, "out of memory creating a leader elector");
    int rc = 0;
    if (o->identity && o->identity[0]) {
        if (strlen(o->identity) >= sizeof(l->identity)) {
            rc = ns_errorf(err, -EINVAL, "leader identity longer than %d bytes",
                           OP_LEADER_IDENTITY_MAX - 1);
            goto fail;
        }
        snprintf(l->identity, sizeof(l->identity), "%s", o->identity);
    } else if (op_leader_default_identity(l->identity, sizeof(l->identity)) != 0) {
        rc = ns_errorf(err, -EINVAL,
                       "cannot make a leader identity (POD_NAME or hostname too long)");
        goto fail;
    }
    l->ns = strdup(o->namespace);
    l->name = strdup(o->name);
    if (!l->ns || !l->name) {
        rc = ns_errorf(err, -ENOMEM, "out of memory creating a leader elector");
        goto fail;
    }
    /* A request may not outlast a retry period: the renew deadline is checked between
     * requests, so a hung one would otherwise postpone noticing that we lost the Lease. */
    long timeout = retry < 5000 ? retry : 5000;
    ns_kube_options ko = {
        .timeout_ms = timeout, .connect_timeout_ms = timeout, .max_retries = -1, .pool_size = 1};
    rc = ns_kube_new(ns_kube_get_config(k), &ko, &l->k, err);
    if (rc)
        goto fail;
    l->lease_s = lease_s;
    l->renew_deadline_ms = renew;
    l->retry_ms = retry;
    l->keep_on_stop = o->keep_on_stop;
    l->on_started = o->on_started;
    l->on_stopped = o->on_stopped;
    l->on_new_leader = o->on_new_leader;
    l->ud = o->ud;
    l->m_leader = o->is_leader;
    if (l->m_leader)
        ns_gauge_set(l->m_leader, 0);
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
    *out = l;
    return 0;
fail:
    free(l->ns);
    free(l->name);
    free(l);
    return rc;
}

const char *op_leader_identity(const op_leader *l)
{
    return l->identity;
}

bool op_leader_is_leader(op_leader *l)
{
    return atomic_load(&l->leading);
}

void op_leader_holder(op_leader *l, char *buf, size_t size)
{
    pthread_mutex_lock(&l->mu);
    snprintf(buf, size, "%s", l->holder);
    pthread_mutex_unlock(&l->mu);
}

static ns_kube_ref lease_ref(const op_leader *l)
{
    return (ns_kube_ref){.group = "coordination.k8s.io",
                         .version = "v1",
                         .resource = "leases",
                         .namespace = l->ns,
                         .name = l->name};
}

/* Remembers the Lease just read or written (taking `lease`) and reports a new holder. */
static void observe(op_leader *l, cJSON *lease)
{
    cJSON_Delete(l->lease);
    l->lease = lease;
    const char *h = ns_json_path_str(lease, "spec", "holderIdentity", NULL);
    if (!h)
        h = "";
    pthread_mutex_lock(&l->mu);
    bool changed = strcmp(h, l->holder) != 0;
    if (changed)
        snprintf(l->holder, sizeof(l->holder), "%s", h);
    pthread_mutex_unlock(&l->mu);
    if (changed && h[0]) {
        ns_log(NS_LOG_INFO, "lease holder changed", "lease", l->name, "namespace", l->ns, "holder",
               h, "identity", l->identity, NULL);
        if (l->on_new_leader)
            l->on_new_leader(l->ud, h);
    }
}

/* One try. Returns 1 when we hold the Lease now, 0 when someone else does (or won a race
 * with us), or a negative errno when we could not tell. */
static int try_acquire_or_renew(op_leader *l)
{
    ns_kube_ref ref = lease_ref(l);
    ns_kube_status st;
    cJSON *out = NULL, *body = NULL;
    int rc;
    if (atomic_load(&l->leading) && l->lease) {
        /* Leading: renew from the version we wrote last, without reading first. */
        body = op_lease_build(l->lease, OP_LEASE_RENEW, false, l->ns, l->name, l->identity,
                              l->lease_s, wall_us());
        if (!body)
            return -ENOMEM;
        rc = ns_kube_update(l->k, &ref, body, NULL, &out, &st);
        cJSON_Delete(body);
        if (rc == 0) {
            observe(l, out);
            return 1;
        }
        if (rc != -EBUSY)
            goto failed;
        /* 409: the Lease changed under us. Read it and decide again: usually someone took
         * it, but it may only be an edit of its labels. */
    }
    cJSON *cur = NULL;
    rc = ns_kube_get(l->k, &ref, &cur, &st);
    if (rc == -ENOENT) {
        body = op_lease_build(NULL, OP_LEASE_CREATE, false, l->ns, l->name, l->identity, l->lease_s,
                              wall_us());
        if (!body)
            return -ENOMEM;
        rc = ns_kube_create(l->k, &ref, body, NULL, &out, &st);
        cJSON_Delete(body);
        if (rc == 0) {
            observe(l, out);
            return 1;
        }
        if (rc == -EEXIST)
            return 0; /* another candidate created it first */
        goto failed;
    }
    if (rc)
        goto failed;
    op_lease_record rec;
    op_lease_parse(cur, &rec);
    op_lease_action action = op_lease_decide(&rec, wall_us(), l->identity);
    if (action == OP_LEASE_WAIT) {
        observe(l, cur);
        return 0;
    }
    body = op_lease_build(cur, action, false, l->ns, l->name, l->identity, l->lease_s, wall_us());
    cJSON_Delete(cur);
    if (!body)
        return -ENOMEM;
    rc = ns_kube_update(l->k, &ref, body, NULL, &out, &st);
    cJSON_Delete(body);
    if (rc == 0) {
        observe(l, out);
        return 1;
    }
    if (rc == -EBUSY)
        return 0; /* someone else updated it between our read and write: they won */
failed:
    ns_log(NS_LOG_WARN, "lease request failed", "lease", l->name, "namespace", l->ns, "identity",
           l->identity, "error", st.message, NULL);
    return rc;
}

static void set_leading(op_leader *l, bool leading)
{
    atomic_store(&l->leading, leading);
    if (l->m_leader)
        ns_gauge_set(l->m_leader, leading ? 1 : 0);
}

static void lose(op_leader *l, const char *why)
{
    if (!atomic_load(&l->leading))
        return;
    set_leading(l, false);
    ns_log(NS_LOG_WARN, "lost leadership", "lease", l->name, "namespace", l->ns, "identity",
           l->identity, "reason", why, NULL);
    if (l->on_stopped)
        l->on_stopped(l->ud);
}

/* Sleeps until `ms` passed or we are stopped. Returns true when stopped. */
static bool wait_or_stop(op_leader *l, int64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    if (ms < 0)
        ms = 0;
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&l->mu);
    while (!l->stopping)
        if (pthread_cond_timedwait(&l->cv, &l->mu, &until) == ETIMEDOUT)
            break;
    bool s = l->stopping;
    pthread_mutex_unlock(&l->mu);
    return s;
}

static bool deadline_passed(op_leader *l)
{
    return mono_ms() - l->last_ok >= l->renew_deadline_ms;
}

static void *elector_main(void *arg)
{
    op_leader *l = arg;
    for (;;) {
        if (atomic_load(&l->leading) && deadline_passed(l))
            lose(l, "could not renew the lease within the renew deadline");
        int rc = try_acquire_or_renew(l);
        if (rc == 1) {
            l->last_ok = mono_ms();
            if (!atomic_load(&l->leading)) {
                set_leading(l, true);
                ns_log(NS_LOG_INFO, "became leader", "lease", l->name, "namespace", l->ns,
                       "identity", l->identity, NULL);
                if (l->on_started)
                    l->on_started(l->ud);
            }
        } else if (rc == 0) {
            lose(l, "the lease is held by another replica");
        } else if (atomic_load(&l->leading) && deadline_passed(l)) {
            lose(l, "could not renew the lease within the renew deadline");
        }
        int64_t delay = l->retry_ms;
        if (atomic_load(&l->leading)) {
            /* wake up no later than the deadline, to give up on time */
            int64_t left = l->last_ok + l->renew_deadline_ms - mono_ms();
            if (left < delay)
                delay = left;
        } else {
            /* candidates spread their tries (client-go's JitterFactor 1.2) */
            delay += (int64_t)(ns_kube_jitter_random() % (uint32_t)(l->retry_ms / 5 + 1));
        }
        if (wait_or_stop(l, delay))
            break;
    }
    return NULL;
}

int op_leader_start(op_leader *l)
{
    pthread_mutex_lock(&l->mu);
    int rc =
        l->started || l->stopping ? -EBUSY : -pthread_create(&l->thread, NULL, elector_main, l);
    if (rc == 0)
        l->started = true;
    pthread_mutex_unlock(&l->mu);
    return rc;
}

void op_leader_stop(op_leader *l)
{
    pthread_mutex_lock(&l->mu);
    l->stopping = true;
    bool join = l->started && !l->joined;
    l->joined = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    if (!join)
        return;
    pthread_join(l->thread, NULL);
    if (!atomic_load(&l->leading))
        return;
    if (!l->keep_on_stop && l->lease) {
        /* Hand over now rather than after the lease duration: an empty holder is free
         * for the next candidate's next try. */
        ns_kube_ref ref = lease_ref(l);
        ns_kube_status st;
        cJSON *body = op_lease_build(l->lease, OP_LEASE_RENEW, true, l->ns, l->name, l->identity,
                                     l->lease_s, wall_us());
        int rc = body ? ns_kube_update(l->k, &ref, body, NULL, NULL, &st) : -ENOMEM;
        cJSON_Delete(body);
        if (rc)
            ns_log(NS_LOG_WARN, "cannot release the lease; others take over when it expires",
                   "lease", l->name, "namespace", l->ns, "error",
                   rc == -ENOMEM ? "out of memory" : st.message, NULL);
        else
            ns_log(NS_LOG_INFO, "released the lease", "lease", l->name, "namespace", l->ns,
                   "identity", l->identity, NULL);
    }
    set_leading(l, false);
    if (l->on_stopped)
        l->on_stopped(l->ud);
}

void op_leader_free(op_leader *l)
{
    if (!l)
        return;
    op_leader_stop(l);
    cJSON_Delete(l->lease);
    ns_kube_free(l->k);
    free(l->ns);
    free(l->name);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* agent/agent.c — the node agent loop (see agent.h and docs/agent.md). */
#define _GNU_SOURCE
#include "agent.h"

#include <ctype.h>
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../engine/backup.h"
#include "../engine/policy.h"
#include "../engine/prune.h"
#include "../catalog/catalog.h"
#include "annotations.h"
#include "cron.h"
#include "kube.h"
#include "metrics.h"
#include "quiesce.h"
#include "snapshot.h"
#include "volumes.h"

#define NS_PER_S 1000000000LL
#define ANN_LAST_BACKUP CAIRN_ANN_PREFIX "last-backup"
#define ANN_LAST_STATUS CAIRN_ANN_PREFIX "last-status"
#define EVENT_MSG_MAX 1024
#define STATUS_REASON_MAX 200

/* One PVC mounted by pods of this node. Fixed-size: the map's memory is
 * max_pvcs * sizeof(struct pvc_entry), whatever the cluster holds. */
#define PVC_MOUNTERS 4 /* pods remembered per PVC (ReadWriteMany: more are not needed) */
struct mounter {
    char pod[254];
    char uid[64];
};

struct pvc_entry {
    char ns[64];          /* namespaces are DNS labels (63) */
    char name[254];       /* PVC names are DNS subdomains (253) */
    struct mounter m[PVC_MOUNTERS]; /* m[0] is the pod the backup reads through */
    int used;             /* slot in use */
    int mounted;          /* number of live pods of this node in m[] */
    uint64_t problem_hash;     /* annotation problems last reported (0: none) */
    uint64_t unsupported_hash; /* "not supported yet" last reported */
};

/* A snapshot retention chose to forget, kept because deleting its
 * VolumeSnapshot failed: retried on later ticks (see retry_vs_deletions).
 * Only a reminder: the record itself stays in the repository, so after a
 * restart the next backup's retention finds it again. */
#define VS_PENDING_MAX 256
#define VS_RETRY_MAX_S 300
struct vs_pending {
    char ns[64];
    char pvc[254];
    char id[CAIRN_HEX_LEN + 1];
    int64_t next_ns; /* next try */
    unsigned tries;
    int exec;        /* an exec storage snapshot, not a VolumeSnapshot */
};

struct agent {
    const struct cairn_agent_config *cfg;
    cairn_repo *repo;
    cairn_kube *kube;       /* the scheduler's handle */
    cairn_kube *watch_kube; /* the watch thread's handle */
    cairn_metrics *metrics;
    const volatile sig_atomic_t *stop; /* the caller's */
    volatile sig_atomic_t quit;        /* the threads': set once *stop is seen */
    struct cairn_snap_config snap; /* quiesce and snapshot settings (snapshot.h) */
    int64_t stop_seen_ns;   /* scheduler thread: when *stop was first seen (0: not yet) */
    pthread_mutex_t mu;     /* guards e[] */
    struct pvc_entry *e;
    size_t max;
    uint64_t map_full_logged;
    struct vs_pending *pend; /* scheduler thread only: VolumeSnapshot deletions to retry */
    size_t n_pend;
    int pend_full_logged;
    int copy_gc_due;         /* scheduler thread: leftovers of CSI copies to delete */
    int64_t copy_gc_next_ns;
};

/* ---- logging ---- */

static void alog(struct agent *a, enum cairn_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void alog(struct agent *a, enum cairn_log_level lvl, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    if (!a->cfg->log || lvl > a->cfg->log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    a->cfg->log(a->cfg->log_arg, lvl, msg);
}

/* ---- configuration ---- */

static int env_copy(const char *var, const char *def, char *out, size_t outlen, cairn_err *err)
{
    const char *v = getenv(var);
    if (!v || !*v)
        v = def;
    if (strlen(v) >= outlen)
        return cairn_error(err, CAIRN_FAILED, "%s is longer than %zu bytes", var, outlen - 1);
    memcpy(out, v, strlen(v) + 1);
    return CAIRN_OK;
}

static int env_seconds(const char *var, int64_t def, int64_t *out, cairn_err *err)
{
    const char *v = getenv(var);
    const char *p;
    cairn_err e;
    *out = def;
    if (!v || !*v)
        return CAIRN_OK;
    for (p = v; isdigit((unsigned char)*p); p++)
        ;
    if (!*p && p - v <= 9) {
        *out = strtoll(v, NULL, 10);
        return CAIRN_OK;
    }
    if (cairn_parse_duration(v, out, &e) != CAIRN_OK)
        return cairn_error(err, CAIRN_FAILED, "%s: %s", var, e.msg);
    return CAIRN_OK;
}

static int env_int(const char *var, long def, long lo, long hi, long *out, cairn_err *err)
{
    const char *v = getenv(var);
    char *end;
    long n;
    *out = def;
    if (!v || !*v)
        return CAIRN_OK;
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno || *end || end == v || n < lo || n > hi)
        return cairn_error(err, CAIRN_FAILED, "%s '%.32s' is not a number in %ld-%ld", var, v,
                           lo, hi);
    *out = n;
    return CAIRN_OK;
}

int cairn_agent_config_from_env(struct cairn_agent_config *cfg, cairn_err *err)
{
    const char *lvl = getenv("CAIRN_LOG_LEVEL");
    long n;
    int rc;
    cairn_agent_log_fn log = cfg->log;
    void *log_arg = cfg->log_arg;
    memset(cfg, 0, sizeof *cfg);
    cfg->log = log;
    cfg->log_arg = log_arg;
    if ((rc = env_copy("NODE_NAME", "", cfg->node, sizeof cfg->node, err)) != CAIRN_OK)
        return rc;
    if (!cfg->node[0])
        return cairn_error(err, CAIRN_FAILED,
                           "NODE_NAME is not set (the DaemonSet sets it from spec.nodeName)");
    if ((rc = env_copy("POD_NAMESPACE", "", cfg->pod_namespace, sizeof cfg->pod_namespace,
                       err)) != CAIRN_OK ||
        (rc = env_copy("CAIRN_KUBELET_PODS_DIR", CAIRN_KUBELET_PODS_DIR, cfg->pods_dir,
                       sizeof cfg->pods_dir, err)) != CAIRN_OK ||
        (rc = env_copy("CAIRN_METRICS_ADDR", "0.0.0.0", cfg->metrics_addr,
                       sizeof cfg->metrics_addr, err)) != CAIRN_OK ||
        (rc = env_copy("CAIRN_DEFAULT_RETENTION", "", cfg->default_retention,
                       sizeof cfg->default_retention, err)) != CAIRN_OK)
        return rc;
    if ((rc = env_int("CAIRN_METRICS_PORT", 9464, 0, 65535, &n, err)) != CAIRN_OK)
        return rc;
    cfg->metrics_port = (int)n;
    if ((rc = env_int("CAIRN_AGENT_MAX_PVCS", CAIRN_AGENT_MAX_PVCS, 1, 1000000, &n, err)) !=
        CAIRN_OK)
        return rc;
    cfg->max_pvcs = (size_t)n;
    if ((rc = env_int("CAIRN_AGENT_WORKERS", 2, 1, 64, &n, err)) != CAIRN_OK)
        return rc;
    cfg->workers = (int)n;
    if ((rc = env_seconds("CAIRN_AGENT_TICK", 30, &cfg->tick_s, err)) != CAIRN_OK ||
        (rc = env_seconds("CAIRN_JITTER_MAX", 300, &cfg->jitter_max_s, err)) != CAIRN_OK ||
        (rc = env_seconds("CAIRN_PRUNE_INTERVAL", 86400, &cfg->prune_interval_s, err)) !=
            CAIRN_OK ||
        (rc = env_seconds("CAIRN_PRUNE_GRACE", 3600, &cfg->prune_grace_s, err)) != CAIRN_OK ||
        (rc = env_seconds("CAIRN_STOP_GRACE", 60, &cfg->stop_grace_s, err)) != CAIRN_OK)
        return rc;
    if (cfg->tick_s < 1)
        return cairn_error(err, CAIRN_FAILED, "CAIRN_AGENT_TICK must be at least 1 second");
    if (cfg->default_retention[0]) {
        struct cairn_policy p;
        cairn_err e;
        memset(&p, 0, sizeof p);
        rc = cairn_policy_parse(cfg->default_retention, &p, &e);
        cairn_policy_clear(&p);
        if (rc != CAIRN_OK)
            return cairn_error(err, CAIRN_FAILED, "CAIRN_DEFAULT_RETENTION: %s", e.msg);
    }
    cfg->log_level = CAIRN_LOG_INFO;
    if (lvl && *lvl) {
        if (strcmp(lvl, "error") == 0)
            cfg->log_level = CAIRN_LOG_ERROR;
        else if (strcmp(lvl, "warn") == 0 || strcmp(lvl, "warning") == 0)
            cfg->log_level = CAIRN_LOG_WARN;
        else if (strcmp(lvl, "info") == 0)
            cfg->log_level = CAIRN_LOG_INFO;
        else if (strcmp(lvl, "debug") == 0)
            cfg->log_level = CAIRN_LOG_DEBUG;
        else
            return cairn_error(err, CAIRN_FAILED,
                               "CAIRN_LOG_LEVEL '%.32s' is not error, warn, info or debug", lvl);
    }
    return CAIRN_OK;
}

/* ---- the PVC map (watch thread writes, scheduler reads) ---- */

static int fits(const char *s, size_t n) { return s && *s && strlen(s) < n; }

/* mu held */
static struct pvc_entry *map_find(struct agent *a, const char *ns, const char *name)
{
    size_t i;
    for (i = 0; i < a->max; i++)
        if (a->e[i].used && strcmp(a->e[i].ns, ns) == 0 && strcmp(a->e[i].name, name) == 0)
            return &a->e[i];
    return NULL;
}

/* mu held: a free slot, else the slot of a PVC no longer mounted. */
static struct pvc_entry *map_slot(struct agent *a)
{
    size_t i;
    for (i = 0; i < a->max; i++)
        if (!a->e[i].used)
            return &a->e[i];
    for (i = 0; i < a->max; i++)
        if (!a->e[i].mounted)
            return &a->e[i];
    return NULL;
}

static int on_relist(void *arg)
{
    struct agent *a = arg;
    size_t i;
    pthread_mutex_lock(&a->mu);
    for (i = 0; i < a->max; i++)
        a->e[i].mounted = 0;
    pthread_mutex_unlock(&a->mu);
    alog(a, CAIRN_LOG_DEBUG, "listing the pods of node '%s' again", a->cfg->node);
    return 0;
}

static int pod_terminal(const json_t *pod)
{
    const char *phase = json_string_value(json_object_get(json_object_get(pod, "status"),
                                                          "phase"));
    return phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0);
}

static int on_pod(void *arg, enum cairn_kube_event ev, json_t *pod)
{
    struct agent *a = arg;
    struct cairn_pod_pvcs pp;
    cairn_err err;
    size_t i;
    memset(&pp, 0, sizeof pp);
    if (cairn_pod_pvcs_get(pod, &pp, &err) != CAIRN_OK) {
        alog(a, CAIRN_LOG_DEBUG, "pod skipped: %s", err.msg);
        cairn_pod_pvcs_free(&pp);
        return 0;
    }
    pthread_mutex_lock(&a->mu);
    for (i = 0; i < a->max; i++) { /* forget what this pod mounted before */
        struct pvc_entry *e = &a->e[i];
        int j, k = 0;
        if (!e->used)
            continue;
        for (j = 0; j < e->mounted; j++)
            if (strcmp(e->m[j].uid, pp.uid) != 0)
                e->m[k++] = e->m[j];
        e->mounted = k;
    }
    if (ev != CAIRN_KUBE_DELETED && !pod_terminal(pod)) {
        for (i = 0; i < pp.n; i++) {
            struct pvc_entry *e;
            if (!fits(pp.ns, sizeof e->ns) || !fits(pp.v[i].claim, sizeof e->name) ||
                !fits(pp.pod, sizeof e->m[0].pod) || !fits(pp.uid, sizeof e->m[0].uid))
                continue;
            if (!(e = map_find(a, pp.ns, pp.v[i].claim))) {
                if (!(e = map_slot(a))) {
                    if (a->map_full_logged++ % 1000 == 0)
                        alog(a, CAIRN_LOG_WARN,
                             "more than %zu PVCs mounted on node '%s': PVC '%s/%s' is not "
                             "protected (raise CAIRN_AGENT_MAX_PVCS)",
                             a->max, a->cfg->node, pp.ns, pp.v[i].claim);
                    continue;
                }
                memset(e, 0, sizeof *e);
                e->used = 1;
                snprintf(e->ns, sizeof e->ns, "%s", pp.ns);
                snprintf(e->name, sizeof e->name, "%s", pp.v[i].claim);
            }
            if (e->mounted < PVC_MOUNTERS) { /* a pod mounting one claim twice: once */
                int j, seen = 0;
                for (j = 0; j < e->mounted; j++)
                    seen |= strcmp(e->m[j].uid, pp.uid) == 0;
                if (!seen) {
                    snprintf(e->m[e->mounted].pod, sizeof e->m[0].pod, "%s", pp.pod);
                    snprintf(e->m[e->mounted].uid, sizeof e->m[0].uid, "%s", pp.uid);
                    e->mounted++;
                }
            }
        }
    }
    pthread_mutex_unlock(&a->mu);
    alog(a, CAIRN_LOG_DEBUG, "pod %s/%s %s (%zu PVCs)", pp.ns, pp.pod,
         cairn_kube_event_name(ev), pp.n);
    cairn_pod_pvcs_free(&pp);
    return 0;
}

static int on_synced(void *arg, const char *rv)
{
    struct agent *a = arg;
    cairn_metrics_set_ready(a->metrics, 1);
    alog(a, CAIRN_LOG_DEBUG, "pod list of node '%s' complete (resourceVersion %s)",
         a->cfg->node, rv ? rv : "");
    return 0;
}

static int on_error(void *arg, const cairn_err *err, unsigned delay_ms)
{
    struct agent *a = arg;
    alog(a, CAIRN_LOG_WARN, "watching pods: %s (retrying in %.1f s)", err->msg,
         delay_ms / 1000.0);
    return 0;
}

static void *watch_main(void *arg)
{
    struct agent *a = arg;
    struct cairn_kube_pod_handler h = {on_relist, on_pod, on_synced, on_error};
    cairn_err err;
    int rc;
    cairn_err_clear(&err);
    rc = cairn_kube_pods_run(a->watch_kube, a->cfg->node, &h, a, &err);
    if (rc != CAIRN_OK)
        alog(a, CAIRN_LOG_ERROR, "the pod watch stopped: %s", err.msg);
    return NULL;
}

static void *metrics_main(void *arg)
{
    struct agent *a = ((void **)arg)[0];
    int fd = *(int *)((void **)arg)[1];
    cairn_metrics_serve(a->metrics, fd, &a->quit);
    return NULL;
}

/* ---- one PVC ---- */

static uint64_t fnv(uint64_t h, const char *s)
{
    if (!h)
        h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static const char *ann_get(const json_t *pvc, const char *key)
{
    return json_string_value(
        json_object_get(json_object_get(json_object_get(pvc, "metadata"), "annotations"), key));
}

static void event(struct agent *a, const struct pvc_entry *e, const char *uid, const char *type,
                  const char *reason, const char *msg)
{
    cairn_err err;
    if (cairn_kube_post_pvc_event(a->kube, e->ns, e->name, uid, type, reason, msg, &err) !=
        CAIRN_OK)
        alog(a, CAIRN_LOG_WARN, "pvc %s/%s: cannot post the %s event: %s", e->ns, e->name,
             reason, err.msg);
}

/* Reports annotation problems once per distinct set. Returns the new hash. */
static uint64_t report_problems(struct agent *a, const struct pvc_entry *e, const char *uid,
                                const struct cairn_pvc_policy *p, uint64_t old)
{
    char msg[EVENT_MSG_MAX];
    size_t i, len = 0;
    uint64_t h = 0;
    int errors = 0;
    msg[0] = 0;
    for (i = 0; i < p->n_problems; i++) {
        const struct cairn_ann_problem *pr = &p->problems[i];
        if (pr->severity == CAIRN_ANN_NOTE)
            continue;
        errors += pr->severity == CAIRN_ANN_ERROR;
        h = fnv(h, pr->msg);
        if (len < sizeof msg - 1) {
            int n = snprintf(msg + len, sizeof msg - len, "%s%s", len ? "; " : "", pr->msg);
            len = n < 0 ? len : len + (size_t)n;
            if (len >= sizeof msg)
                len = sizeof msg - 1;
        }
    }
    if (p->n_dropped)
        h = fnv(h, "+");
    if (h && h != old) {
        alog(a, errors ? CAIRN_LOG_WARN : CAIRN_LOG_INFO, "pvc %s/%s: %s", e->ns, e->name, msg);
        event(a, e, uid, "Warning", "InvalidAnnotation", msg);
    }
    return h;
}

/* ---- shutdown: the abort hook of the job path ---- */

#define STOP_REQUEST_TIMEOUT_S 10 /* each API call after the stop request */

/* The stop request was first seen at now: API calls from here on (the
 * result of the job in flight) are bounded tighter, so that the agent exits
 * within the DaemonSet's grace period even with a slow API server. */
static void stop_seen(struct agent *a, int64_t now)
{
    struct cairn_kube_tuning t;
    a->stop_seen_ns = now;
    cairn_kube_get_tuning(a->kube, &t);
    t.request_timeout_s = STOP_REQUEST_TIMEOUT_S;
    cairn_kube_set_tuning(a->kube, &t);
}

/* Nonzero once the in-flight job must stop: the agent was asked to stop
 * (SIGTERM/SIGINT) and cfg->stop_grace_s has passed since. Every long step
 * of a job (reading data, waiting for a snapshot, a database backup) polls
 * this and unwinds cleanly: thaw whatever it froze, write no snapshot.
 * Scheduler thread only. */
static int job_abort_requested(struct agent *a)
{
    int64_t now;
    if (!*a->stop)
        return 0;
    now = cairn_now_ns();
    if (!a->stop_seen_ns)
        stop_seen(a, now);
    return now - a->stop_seen_ns >= a->cfg->stop_grace_s * NS_PER_S;
}

/* The same as an engine cancel hook (cairn_backup_opts.cancel). */
static int job_cancel_hook(void *arg) { return job_abort_requested(arg); }

/* An aborted job: cairn.io/last-status says so; cairn.io/last-backup is not
 * touched, so the run is due again when an agent starts. */
static void record_aborted(struct agent *a, const struct pvc_entry *e, const char *pvc_uid,
                           const char *source)
{
    char msg[EVENT_MSG_MAX];
    struct cairn_kube_kv kv;
    cairn_err err;
    snprintf(msg, sizeof msg,
             "aborted: the agent on node %.200s was stopped during the backup of %.300s; no "
             "snapshot was written (the next run takes it)",
             a->cfg->node, source);
    kv.key = ANN_LAST_STATUS;
    kv.value = msg;
    alog(a, CAIRN_LOG_WARN, "pvc %s/%s: %s", e->ns, e->name, msg);
    if (cairn_kube_patch_pvc_annotations(a->kube, e->ns, e->name, &kv, 1, NULL, &err) !=
        CAIRN_OK)
        alog(a, CAIRN_LOG_WARN, "pvc %s/%s: cannot record the abort in its annotations: %s",
             e->ns, e->name, err.msg);
    event(a, e, pvc_uid, "Warning", "BackupAborted", msg);
}

struct job {
    struct agent *a;
    const struct pvc_entry *e;
};

static void backup_warn(void *arg, const char *msg)
{
    struct job *j = arg;
    alog(j->a, CAIRN_LOG_WARN, "pvc %s/%s: %s", j->e->ns, j->e->name, msg);
}

static void snap_log(void *arg, enum cairn_snap_log_level lvl, const char *msg)
{
    struct agent *a = arg;
    alog(a, lvl == CAIRN_SNAP_LOG_WARN ? CAIRN_LOG_WARN
            : lvl == CAIRN_SNAP_LOG_INFO ? CAIRN_LOG_INFO
                                         : CAIRN_LOG_DEBUG,
         "%s", msg);
}

/* A hold of the workload ended (agent/snapshot.c): the quiesce histogram,
 * and a warning when writes or commits were blocked long (PostgreSQL's
 * backup mode blocks nothing: it may span a whole copy). */
static void job_quiesced(void *arg, enum cairn_quiesce q, double sec)
{
    struct job *j = arg;
    struct agent *a = j->a;
    cairn_metrics_quiesce(a->metrics, j->e->ns, j->e->name,
                          q == CAIRN_QUIESCE_POSTGRES ? CAIRN_QUIESCE_M_POSTGRES
                          : q == CAIRN_QUIESCE_MYSQL  ? CAIRN_QUIESCE_M_MYSQL
                                                      : CAIRN_QUIESCE_M_FSFREEZE,
                          sec);
    if (q != CAIRN_QUIESCE_POSTGRES && sec * 1000 >= (double)a->snap.quiesce_warn_ms)
        alog(a, CAIRN_LOG_WARN,
             "pvc %s/%s: %s for %.1f s (more than CAIRN_QUIESCE_WARN, %.0f s): is the "
             "snapshot step slow?",
             j->e->ns, j->e->name,
             q == CAIRN_QUIESCE_MYSQL ? "commits were blocked (BACKUP STAGE BLOCK_COMMIT)"
                                      : "the filesystem was frozen",
             sec, (double)a->snap.quiesce_warn_ms / 1000);
}

/* ---- retention and the VolumeSnapshots of forgotten snapshots ----
 * Order: the VolumeSnapshot is deleted first, the record forgotten after (in
 * forget's before_remove hook). A deletion that fails keeps the record
 * (deferred) and puts it in a.pend for a retry on a later tick; so a
 * VolumeSnapshot is never deleted while its record is kept by retention, and
 * a record never disappears while its VolumeSnapshot may still exist. */

static void pending_drop(struct agent *a, const char *id)
{
    size_t i;
    for (i = 0; i < a->n_pend; i++)
        if (strcmp(a->pend[i].id, id) == 0) {
            a->pend[i] = a->pend[--a->n_pend];
            break;
        }
    cairn_metrics_vs_pending(a->metrics, a->n_pend);
}

/* Notes a failed deletion; returns the seconds until the next try (0: the
 * table is full, the next backup's retention tries again). */
static int64_t pending_note(struct agent *a, const char *ns, const char *pvc, const char *id,
                            int exec)
{
    struct vs_pending *v = NULL;
    int64_t delay;
    size_t i;
    for (i = 0; i < a->n_pend && !v; i++)
        if (strcmp(a->pend[i].id, id) == 0)
            v = &a->pend[i];
    if (!v) {
        if (!a->pend && !(a->pend = calloc(VS_PENDING_MAX, sizeof *a->pend)))
            return 0;
        if (a->n_pend == VS_PENDING_MAX) {
            if (!a->pend_full_logged)
                alog(a, CAIRN_LOG_WARN,
                     "retention: %d VolumeSnapshot deletions or storage snapshot releases wait "
                     "already; snapshot %.12s is kept and tried again after the next backup of "
                     "%s/%s",
                     VS_PENDING_MAX, id, ns, pvc);
            a->pend_full_logged = 1;
            return 0;
        }
        v = &a->pend[a->n_pend++];
        memset(v, 0, sizeof *v);
        snprintf(v->ns, sizeof v->ns, "%s", ns);
        snprintf(v->pvc, sizeof v->pvc, "%s", pvc);
        snprintf(v->id, sizeof v->id, "%s", id);
    }
    v->exec = exec;
    delay = a->cfg->tick_s > 0 ? a->cfg->tick_s : 1;
    for (i = 0; i < v->tries && delay < VS_RETRY_MAX_S; i++)
        delay *= 2;
    if (delay > VS_RETRY_MAX_S)
        delay = VS_RETRY_MAX_S;
    v->tries++;
    v->next_ns = cairn_now_ns() + delay * NS_PER_S;
    cairn_metrics_vs_pending(a->metrics, a->n_pend);
    return delay;
}

struct vs_hook {
    struct agent *a;
    const char *ns, *pvc;
};

/* forget's before_remove: release what the snapshot's manifest records
 * outside the repository -- delete its VolumeSnapshot if Cairn created one
 * (csi), run the configured release command for its storage snapshot
 * (exec, handle=) -- and keep the snapshot while that fails. */
static int vs_before_remove(void *arg, cairn_repo *r, const char *id, cairn_err *err)
{
    struct vs_hook *h = arg;
    struct agent *a = h->a;
    struct cairn_snapshot *s = NULL;
    enum cairn_vs_outcome out = CAIRN_VS_NONE;
    struct cairn_snap_release rl = {&a->snap, a->cfg->node, job_cancel_hook, a, snap_log, a};
    const char *kept;
    char what[700];
    int64_t delay;
    cairn_err e;
    int rc, exec = 0;
    what[0] = 0;
    rc = cairn_repo_snapshot_get(r, id, NULL, &s, &e);
    if (rc == CAIRN_OK) {
        rc = cairn_snap_vs_release(a->kube, s->json, &out, what, sizeof what, &e);
        if (rc == CAIRN_OK && out == CAIRN_VS_NONE) {
            rc = cairn_snap_exec_release(&rl, id, s->json, &out, what, sizeof what, &e);
            exec = rc != CAIRN_OK || out != CAIRN_VS_NONE;
        }
        cairn_snapshot_free(s);
        if (rc == CAIRN_FATAL)
            return cairn_error(err, rc, "%s", e.msg);
        if (rc != CAIRN_OK && exec)
            cairn_metrics_exec_release(a->metrics, 0);
        else if (rc != CAIRN_OK)
            cairn_metrics_vs_deletion(a->metrics, 0);
    } else {
        cairn_error_prefix(&e, "cannot read its manifest to find its VolumeSnapshot or storage "
                           "snapshot");
    }
    if (rc != CAIRN_OK) {
        kept = exec ? "its storage snapshot is released" : "its VolumeSnapshot is deleted";
        delay = pending_note(a, h->ns, h->pvc, id, exec);
        if (delay)
            alog(a, CAIRN_LOG_WARN,
                 "pvc %s/%s: retention: snapshot %.12s is kept until %s: %s (next try in %lld "
                 "s)",
                 h->ns, h->pvc, id, kept, e.msg, (long long)delay);
        else
            alog(a, CAIRN_LOG_WARN, "pvc %s/%s: retention: snapshot %.12s is kept until %s: %s",
                 h->ns, h->pvc, id, kept, e.msg);
        return CAIRN_RETRY;
    }
    pending_drop(a, id);
    switch (out) {
    case CAIRN_VS_NONE:
        break;
    case CAIRN_VS_DELETED:
        if (exec) {
            cairn_metrics_exec_release(a->metrics, 1);
            alog(a, CAIRN_LOG_INFO, "pvc %s/%s: retention: released the storage snapshot %s of "
                 "snapshot %.12s", h->ns, h->pvc, what, id);
        } else {
            cairn_metrics_vs_deletion(a->metrics, 1);
            alog(a, CAIRN_LOG_INFO, "pvc %s/%s: retention: deleted the VolumeSnapshot %s of "
                 "snapshot %.12s", h->ns, h->pvc, what, id);
        }
        break;
    case CAIRN_VS_GONE:
        alog(a, CAIRN_LOG_INFO, "pvc %s/%s: retention: the VolumeSnapshot %s of snapshot %.12s "
             "is already gone", h->ns, h->pvc, what, id);
        break;
    case CAIRN_VS_NOT_OURS:
        alog(a, exec ? CAIRN_LOG_INFO : CAIRN_LOG_WARN, "pvc %s/%s: retention: snapshot %.12s "
             "forgotten; its %s %s", h->ns, h->pvc, id, exec ? "storage snapshot" :
             "VolumeSnapshot", what);
        break;
    }
    return CAIRN_OK;
}

/* The deletions that failed before, when due: forget exactly that snapshot
 * again (the same hook deletes its VolumeSnapshot first). */
static void retry_vs_deletions(struct agent *a)
{
    struct vs_pending *due;
    size_t i, n = 0;
    int64_t now = cairn_now_ns();
    if (!a->n_pend || !(due = malloc(a->n_pend * sizeof *due)))
        return;
    for (i = 0; i < a->n_pend; i++)
        if (a->pend[i].next_ns <= now)
            due[n++] = a->pend[i];
    for (i = 0; i < n && !*a->stop; i++) {
        struct vs_hook h = {a, due[i].ns, due[i].pvc};
        struct cairn_forget_opts fo;
        struct cairn_forget_result fr;
        const char *ids[1] = {due[i].id};
        cairn_err err;
        int rc;
        memset(&fo, 0, sizeof fo);
        memset(&fr, 0, sizeof fr);
        fo.ids = ids;
        fo.n_ids = 1;
        fo.before_remove = vs_before_remove;
        fo.before_remove_arg = &h;
        rc = cairn_forget(a->repo, &fo, &fr, &err);
        if (rc != CAIRN_OK) {
            /* gone (forgotten by someone else) or pinned since: not ours to
             * retry; the next backup's retention decides again */
            alog(a, rc == CAIRN_NOTFOUND ? CAIRN_LOG_INFO : CAIRN_LOG_WARN,
                 "pvc %s/%s: retention: no more retries for snapshot %.12s: %s", due[i].ns,
                 due[i].pvc, due[i].id, err.msg);
            pending_drop(a, due[i].id);
        } else if (fr.removed) {
            alog(a, CAIRN_LOG_INFO, "pvc %s/%s: retention removed snapshot %.12s after its %s",
                 due[i].ns, due[i].pvc, due[i].id,
                 due[i].exec ? "storage snapshot was released" : "VolumeSnapshot was deleted");
        }
    }
    free(due);
}

static void apply_retention(struct agent *a, const struct pvc_entry *e,
                            const struct cairn_pvc_policy *p, const char *source)
{
    struct cairn_policy def;
    const struct cairn_policy *pol = NULL;
    struct cairn_forget_opts fo;
    struct cairn_forget_result fr;
    cairn_err err;
    memset(&def, 0, sizeof def);
    if (cairn_pvc_policy_can_prune(p)) {
        pol = &p->retention;
    } else if (!(p->present & CAIRN_ANN_RETENTION) && (p->valid & CAIRN_ANN_DELETE_VS) &&
               a->cfg->default_retention[0] &&
               cairn_policy_parse(a->cfg->default_retention, &def, &err) == CAIRN_OK &&
               !cairn_policy_is_empty(&def)) {
        pol = &def;
    }
    if (pol) {
        struct vs_hook h = {a, e->ns, e->name};
        memset(&fo, 0, sizeof fo);
        memset(&fr, 0, sizeof fr);
        fo.policy = pol;
        fo.source = source;
        if (!p->keep_volume_snapshots) {
            fo.before_remove = vs_before_remove;
            fo.before_remove_arg = &h;
        }
        if (cairn_forget(a->repo, &fo, &fr, &err) != CAIRN_OK)
            alog(a, CAIRN_LOG_WARN, "pvc %s/%s: retention: %s", e->ns, e->name, err.msg);
        else if (fr.deferred)
            alog(a, CAIRN_LOG_INFO,
                 "pvc %s/%s: retention removed %llu snapshots, kept %llu (%llu of them until "
                 "their VolumeSnapshots are deleted or storage snapshots released)",
                 e->ns, e->name, (unsigned long long)fr.removed, (unsigned long long)fr.kept,
                 (unsigned long long)fr.deferred);
        else if (fr.removed)
            alog(a, CAIRN_LOG_INFO, "pvc %s/%s: retention removed %llu snapshots, kept %llu",
                 e->ns, e->name, (unsigned long long)fr.removed, (unsigned long long)fr.kept);
    }
    cairn_policy_clear(&def);
}

/* Runs one backup of e from host_path; writes the result back. */
static void run_backup(struct agent *a, const struct pvc_entry *e, const char *pvc_uid,
                       const char *pv, const char *host_path, const struct cairn_pvc_policy *p,
                       int64_t start_ns, const char *setup_error)
{
    char source[400], when[48], status[CAIRN_HEX_LEN + STATUS_REASON_MAX + 64];
    char msg[EVENT_MSG_MAX], size[32], newsize[32];
    struct cairn_backup_opts bo;
    struct cairn_backup_result res;
    struct cairn_kube_kv kv[2];
    struct job j = {a, e};
    const char *paths[1];
    json_t *extra = NULL;
    cairn_err err;
    double t0 = cairn_mono();
    int rc, ok;

    snprintf(source, sizeof source, "k8s:%s/%s", e->ns, e->name);
    memset(&res, 0, sizeof res);
    cairn_err_clear(&err);
    cairn_metrics_job_start(a->metrics);
    if (setup_error) {
        rc = cairn_error(&err, CAIRN_FAILED, "%s", setup_error);
    } else {
        extra = json_pack("{s:{s:s,s:s,s:s,s:s,s:s}}", "kubernetes", "namespace", e->ns, "pvc",
                          e->name, "pv", pv, "pod", e->m[0].pod, "node", a->cfg->node);
        memset(&bo, 0, sizeof bo);
        paths[0] = host_path;
        bo.paths = paths;
        bo.n_paths = 1;
        bo.source = source;
        bo.excludes = (const char *const *)p->exclude;
        bo.n_excludes = p->n_exclude;
        bo.workers = a->cfg->workers;
        bo.extra = extra;
        bo.warn = backup_warn;
        bo.warn_arg = &j;
        bo.cancel = job_cancel_hook;
        bo.cancel_arg = a;
        {
            /* quiesce, snapshot, copy, clean up: agent/snapshot.c */
            struct cairn_snap_job sj = {a->repo, a->kube, &a->snap, p, e->ns, e->name, pv,
                                        e->m[0].pod, a->cfg->node, host_path, &bo, snap_log, a,
                                        job_quiesced, &j, &a->copy_gc_due};
            rc = extra ? cairn_snap_run(&sj, &res, &err)
                       : cairn_error(&err, CAIRN_FATAL, "out of memory");
        }
        json_decref(extra);
    }
    ok = rc == CAIRN_OK;
    cairn_metrics_job_end(a->metrics, e->ns, e->name, ok, cairn_mono() - t0, res.duration,
                          res.bytes_read, res.bytes_new, res.bytes_stored,
                          (double)cairn_now_ns() / 1e9);
    if (!ok && job_abort_requested(a)) {
        record_aborted(a, e, pvc_uid, source);
        return;
    }
    if (ok) {
        cairn_format_size(res.total_size, size, sizeof size);
        cairn_format_size(res.bytes_new, newsize, sizeof newsize);
        if (res.partial)
            snprintf(status, sizeof status, "ok %s (partial: %llu files unreadable)", res.id,
                     (unsigned long long)res.errors);
        else
            snprintf(status, sizeof status, "ok %s", res.id);
        snprintf(msg, sizeof msg,
                 "snapshot %.12s of %s: %llu files, %s (%s new) in %.1f s%s", res.id, source,
                 (unsigned long long)res.files, size, newsize, res.duration,
                 res.partial ? " (partial: some files unreadable, see the agent's log)" : "");
        alog(a, CAIRN_LOG_INFO, "pvc %s/%s: %s", e->ns, e->name, msg);
    } else {
        snprintf(status, sizeof status, "failed: %.*s", STATUS_REASON_MAX, err.msg);
        snprintf(msg, sizeof msg, "backup of %.330s failed: %.600s", source, err.msg);
        alog(a, CAIRN_LOG_ERROR, "pvc %s/%s: %s", e->ns, e->name, msg);
    }
    if (ok) /* before the result is published: "ok" means retention ran too */
        apply_retention(a, e, p, source);
    /* with nanoseconds: a request made in the same second as the start of the
     * run that served it must not look newer than the run */
    cairn_format_time(start_ns, when, sizeof when);
    kv[0].key = ANN_LAST_BACKUP;
    kv[0].value = when;
    kv[1].key = ANN_LAST_STATUS;
    kv[1].value = status;
    if (cairn_kube_patch_pvc_annotations(a->kube, e->ns, e->name, kv, 2, NULL, &err) !=
        CAIRN_OK)
        alog(a, CAIRN_LOG_WARN, "pvc %s/%s: cannot record the result in its annotations: %s",
             e->ns, e->name, err.msg);
    event(a, e, pvc_uid, ok ? "Normal" : "Warning", ok ? "BackupSucceeded" : "BackupFailed",
          msg);
}

/* Collects the PVC's cairn.io/ annotations (borrowed from pvc). */
static struct cairn_annotation *annotations(const json_t *pvc, size_t *n)
{
    json_t *ann = json_object_get(json_object_get(pvc, "metadata"), "annotations");
    struct cairn_annotation *v;
    const char *key;
    json_t *val;
    *n = 0;
    if (!json_is_object(ann) || !json_object_size(ann))
        return NULL;
    if (!(v = calloc(json_object_size(ann), sizeof *v)))
        return NULL;
    json_object_foreach(ann, key, val)
    {
        if (strncmp(key, CAIRN_ANN_PREFIX, strlen(CAIRN_ANN_PREFIX)) != 0 ||
            !json_is_string(val))
            continue;
        v[*n].key = key;
        v[*n].value = json_string_value(val);
        (*n)++;
    }
    return v;
}

static void process(struct agent *a, struct pvc_entry *e)
{
    json_t *pvc = NULL, *pv = NULL;
    struct cairn_annotation *ann = NULL;
    struct cairn_pvc_policy p;
    size_t n_ann = 0;
    const char *uid, *pvname, *last;
    char *host_path = NULL;
    char setup[CAIRN_ERRMSG_MAX + 64];
    int64_t now_ns = cairn_now_ns(), last_ns = 0, now_s = now_ns / NS_PER_S, due_at = 0;
    int due = 0, rc;
    cairn_err err;

    memset(&p, 0, sizeof p);
    setup[0] = 0;
    rc = cairn_kube_get_pvc(a->kube, e->ns, e->name, &pvc, &err);
    if (rc == CAIRN_NOTFOUND) {
        alog(a, CAIRN_LOG_DEBUG, "pvc %s/%s: not found", e->ns, e->name);
        return;
    }
    if (rc != CAIRN_OK) {
        alog(a, CAIRN_LOG_WARN, "pvc %s/%s: %s", e->ns, e->name, err.msg);
        return;
    }
    uid = json_string_value(json_object_get(json_object_get(pvc, "metadata"), "uid"));
    ann = annotations(pvc, &n_ann);
    rc = cairn_pvc_policy_parse(ann, n_ann, &p, &err);
    if (rc == CAIRN_FATAL) {
        alog(a, CAIRN_LOG_ERROR, "pvc %s/%s: %s", e->ns, e->name, err.msg);
        goto out;
    }
    e->problem_hash = report_problems(a, e, uid, &p, e->problem_hash);
    if (!(p.present & (CAIRN_ANN_SCHEDULE | CAIRN_ANN_REQUESTED_AT)) ||
        !cairn_pvc_policy_can_backup(&p))
        goto out;

    if ((last = ann_get(pvc, ANN_LAST_BACKUP)) && cairn_parse_time(last, &last_ns) != 0)
        last_ns = 0;
    if ((p.valid & CAIRN_ANN_REQUESTED_AT) && p.requested_at_ns > last_ns)
        due = 1;
    if (!due && (p.valid & CAIRN_ANN_SCHEDULE) && (p.present & CAIRN_ANN_SCHEDULE)) {
        char key[400];
        snprintf(key, sizeof key, "%s/%s", e->ns, e->name);
        rc = cairn_cron_due(&p.schedule, last_ns / NS_PER_S,
                            now_s - cairn_jitter(key, a->cfg->jitter_max_s), &due_at, &err);
        if (rc < 0)
            alog(a, CAIRN_LOG_WARN, "pvc %s/%s: schedule: %s", e->ns, e->name, err.msg);
        due = rc == 1;
    }
    if (!due)
        goto out;

    {
        char msg[512];
        uint64_t h;
        if (cairn_snap_plan_check(&p, &a->snap, msg, sizeof msg) != 0) {
            h = fnv(0, msg);
            if (h != e->unsupported_hash) {
                alog(a, CAIRN_LOG_WARN, "pvc %s/%s: %s", e->ns, e->name, msg);
                event(a, e, uid, "Warning", "NotSupported", msg);
                e->unsupported_hash = h;
            }
            goto out;
        }
    }
    e->unsupported_hash = 0;

    pvname = json_string_value(json_object_get(json_object_get(pvc, "spec"), "volumeName"));
    if (!pvname || !*pvname) {
        alog(a, CAIRN_LOG_DEBUG, "pvc %s/%s: not bound yet", e->ns, e->name);
        goto out;
    }
    if ((rc = cairn_kube_get_pv(a->kube, pvname, &pv, &err)) != CAIRN_OK) {
        snprintf(setup, sizeof setup, "cannot read PV '%s': %s", pvname, err.msg);
    } else if ((rc = cairn_pvc_host_path(a->cfg->pods_dir, e->m[0].uid, pv, &host_path, &err)) !=
               CAIRN_OK) {
        snprintf(setup, sizeof setup, "%s", err.msg);
    } else {
        struct stat st;
        if (stat(host_path, &st) != 0 || !S_ISDIR(st.st_mode))
            snprintf(setup, sizeof setup,
                     "the volume is not at '%s' (is the agent's hostPath %s mounted?)",
                     host_path, a->cfg->pods_dir);
    }
    run_backup(a, e, uid, pvname, host_path ? host_path : "", &p, now_ns,
               setup[0] ? setup : NULL);
#ifdef __GLIBC__
    /* A job frees its chunk buffers (megabytes each) into the middle of the
     * heap, where later small allocations touch a few of their pages: job
     * after job the resident set would creep up. Give free pages back. */
    malloc_trim(0);
#endif
out:
    free(host_path);
    json_decref(pv);
    free(ann);
    cairn_pvc_policy_clear(&p);
    json_decref(pvc);
}

static void tick(struct agent *a)
{
    size_t i;
    for (i = 0; i < a->max && !*a->stop; i++) {
        struct pvc_entry copy;
        pthread_mutex_lock(&a->mu);
        copy = a->e[i];
        pthread_mutex_unlock(&a->mu);
        if (!copy.used || !copy.mounted)
            continue;
        process(a, &copy);
        /* keep what was reported, if the slot still holds this PVC */
        pthread_mutex_lock(&a->mu);
        if (a->e[i].used && strcmp(a->e[i].ns, copy.ns) == 0 &&
            strcmp(a->e[i].name, copy.name) == 0) {
            a->e[i].problem_hash = copy.problem_hash;
            a->e[i].unsupported_hash = copy.unsupported_hash;
        }
        pthread_mutex_unlock(&a->mu);
    }
}

/* ---- archive-lag metrics ---- */

struct newest {
    struct cairn_archive_time v[CAIRN_METRICS_MAX_ARCHIVES + 1]; /* +1: "more" */
    size_t n;
};

/* mu-free: scheduler thread. Keeps the max time per database id. */
static void newest_add(struct newest *t, const char *id, int64_t ns)
{
    size_t i;
    for (i = 0; i < t->n; i++) {
        if (strcmp(t->v[i].id, id) == 0) {
            if (ns > t->v[i].newest_ns)
                t->v[i].newest_ns = ns;
            return;
        }
    }
    if (t->n == CAIRN_METRICS_MAX_ARCHIVES + 1)
        return; /* beyond the limit: counted as one dropped series */
    snprintf(t->v[t->n].id, sizeof t->v[t->n].id, "%s", id);
    t->v[t->n].newest_ns = ns;
    t->n++;
}

static int wal_row(void *arg, const struct cairn_walrow *row)
{
    if (row->has_commit)
        newest_add(arg, row->system_id, row->max_commit_ns);
    return 0;
}

static int binlog_row(void *arg, const struct cairn_binlogrow *row)
{
    if (row->has_times)
        newest_add(arg, row->server_uuid, row->last_event_ns);
    return 0;
}

/* The newest archived commit (WAL) and event (binlog) per database, from the
 * catalog, for cairn_wal_archive_lag_seconds and
 * cairn_binlog_archive_lag_seconds. One pass over the log rows of the
 * catalog (no object-store access), once per tick. */
static void refresh_archive_metrics(struct agent *a)
{
    cairn_catalog *cat = cairn_repo_catalog(a->repo);
    struct newest *t = calloc(1, sizeof *t);
    cairn_err err;
    if (!t || !cat) {
        free(t);
        return;
    }
    if (cairn_catalog_wal_list(cat, NULL, 0, wal_row, t, &err) == CAIRN_OK)
        cairn_metrics_set_archives(a->metrics, CAIRN_ARCHIVE_WAL, t->v, t->n);
    else
        alog(a, CAIRN_LOG_WARN, "WAL archive lag: %s", err.msg);
    memset(t, 0, sizeof *t);
    if (cairn_catalog_binlog_list(cat, NULL, binlog_row, t, &err) == CAIRN_OK)
        cairn_metrics_set_archives(a->metrics, CAIRN_ARCHIVE_BINLOG, t->v, t->n);
    else
        alog(a, CAIRN_LOG_WARN, "binlog archive lag: %s", err.msg);
    free(t);
}

/* ---- leftovers of CSI copies (agent/csi_copy.h): at start, and after a
 * temporary object could not be deleted; a failing GC is retried every
 * COPY_GC_RETRY_S, a forbidden one (RBAC of an older install, no copies
 * made) only after the next copy's failure. ---- */

#define COPY_GC_RETRY_S 300

static void copy_log(void *arg, int warn, const char *msg)
{
    alog(arg, warn ? CAIRN_LOG_WARN : CAIRN_LOG_INFO, "csi copy: %s", msg);
}

static void copy_gc(struct agent *a)
{
    cairn_err err;
    size_t n = 0;
    int64_t now = cairn_now_ns();
    if (!a->copy_gc_due || now < a->copy_gc_next_ns || *a->stop)
        return;
    if (cairn_copy_gc(a->kube, a->repo, a->cfg->node, copy_log, a, &n, &err) == CAIRN_OK) {
        a->copy_gc_due = 0;
        if (n)
            alog(a, CAIRN_LOG_INFO, "csi copy: %zu leftover objects deleted", n);
        return;
    }
    if (cairn_kube_last_status(a->kube) == 403) {
        a->copy_gc_due = 0;
        alog(a, CAIRN_LOG_INFO, "csi copy: leftovers of earlier copies not looked for: %s",
             err.msg);
        return;
    }
    a->copy_gc_next_ns = now + COPY_GC_RETRY_S * NS_PER_S;
    alog(a, CAIRN_LOG_WARN, "csi copy: leftovers of earlier copies: %s (next try in %d s)",
         err.msg, COPY_GC_RETRY_S);
}

static void prune_report(void *arg, const char *line)
{
    alog(arg, CAIRN_LOG_DEBUG, "prune: %s", line);
}

/* ---- prune: at most once per prune_interval_s, after the tick's backups ----
 * The time of the last prune is kept beside the catalog (on the node's
 * /var/lib/cairn), so restarts of the agent do not prune more often. Forget
 * runs per PVC after each backup (apply_retention); prune gives back the
 * space of what any forget removed, here or on other nodes. */

#define PRUNE_STAMP_SUFFIX ".last-prune"

static int prune_stamp_path(struct agent *a, char *out, size_t len)
{
    const char *cat = cairn_repo_catalog_path(a->repo);
    int n;
    if (!cat)
        return -1;
    n = snprintf(out, len, "%s%s", cat, PRUNE_STAMP_SUFFIX);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* The last prune's time (Unix ns), 0 when unknown. */
static int64_t prune_stamp_read(struct agent *a)
{
    char path[4200], buf[32];
    FILE *f;
    int64_t v = 0, now = cairn_now_ns();
    if (prune_stamp_path(a, path, sizeof path) != 0 || !(f = fopen(path, "re")))
        return 0;
    if (fgets(buf, sizeof buf, f))
        v = strtoll(buf, NULL, 10);
    fclose(f);
    return v > 0 && v <= now ? v : 0; /* a stamp from the future: prune when due from now */
}

static void prune_stamp_write(struct agent *a, int64_t ns)
{
    char path[4200], tmp[4300];
    FILE *f;
    if (prune_stamp_path(a, path, sizeof path) != 0)
        return;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (!(f = fopen(tmp, "we"))) {
        alog(a, CAIRN_LOG_WARN, "prune: cannot write '%s': %s (the next start may prune "
             "again before the interval)", tmp, strerror(errno));
        return;
    }
    fprintf(f, "%lld\n", (long long)ns);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        alog(a, CAIRN_LOG_WARN, "prune: cannot write '%s': %s", path, strerror(errno));
        unlink(tmp);
    }
}

static void maybe_prune(struct agent *a, int64_t *last_ns)
{
    struct cairn_prune_opts po;
    struct cairn_prune_result pr;
    cairn_err err;
    int64_t now = cairn_now_ns();
    int ok;
    if (a->cfg->prune_interval_s <= 0 || *a->stop ||
        now - *last_ns < a->cfg->prune_interval_s * NS_PER_S)
        return;
    *last_ns = now;
    prune_stamp_write(a, now); /* first: a crash in prune does not make a restart loop prune */
    cairn_prune_opts_init(&po);
    po.grace_ns = a->cfg->prune_grace_s * NS_PER_S;
    po.report = prune_report;
    po.report_arg = a;
    memset(&pr, 0, sizeof pr);
    alog(a, CAIRN_LOG_INFO, "prune: starting (every %lld s)", (long long)a->cfg->prune_interval_s);
    ok = cairn_prune(a->repo, &po, &pr, &err) == CAIRN_OK;
    if (!ok)
        alog(a, CAIRN_LOG_WARN, "prune: %s (next try in %lld s)", err.msg,
             (long long)a->cfg->prune_interval_s);
    else
        alog(a, CAIRN_LOG_INFO, "prune: %llu packs deleted, %llu repacked, %llu bytes freed",
             (unsigned long long)pr.deleted_packs, (unsigned long long)pr.repacked_packs,
             (unsigned long long)pr.freed_bytes);
    cairn_metrics_prune_end(a->metrics, ok, (double)cairn_now_ns() / 1e9, pr.freed_bytes);
}

static void freeze_log(void *arg, const char *msg)
{
    alog(arg, CAIRN_LOG_WARN, "%s", msg);
}

int cairn_agent_run(cairn_repo *repo, const struct cairn_agent_config *cfg,
                    const volatile sig_atomic_t *stop, cairn_err *err)
{
    struct agent a;
    pthread_t watch_t, metrics_t;
    int rc, fd = -1, port = 0, watch_started = 0, metrics_started = 0;
    void *margs[2];
    int64_t last_prune;

    memset(&a, 0, sizeof a);
    a.cfg = cfg;
    a.repo = repo;
    a.stop = stop;
    a.max = cfg->max_pvcs ? cfg->max_pvcs : CAIRN_AGENT_MAX_PVCS;
    pthread_mutex_init(&a.mu, NULL);
    if (!(a.e = calloc(a.max, sizeof *a.e))) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    if ((rc = cairn_metrics_new(a.max, &a.metrics, err)) != CAIRN_OK)
        goto out;
    if ((rc = cairn_kube_open_env(&a.kube, err)) != CAIRN_OK ||
        (rc = cairn_kube_open_env(&a.watch_kube, err)) != CAIRN_OK)
        goto out;
    cairn_kube_set_stop_flag(a.watch_kube, &a.quit);
    if ((rc = cairn_snap_config_from_env(&a.snap, err)) != CAIRN_OK)
        goto out;
    { /* a previous agent killed mid-freeze with its watchdog: thaw now */
        cairn_err ferr;
        if (cairn_freeze_recover(a.snap.state_dir, freeze_log, &a, &ferr) < 0)
            alog(&a, CAIRN_LOG_WARN, "%s", ferr.msg);
        if (getpid() == 1)
            alog(&a, CAIRN_LOG_WARN,
                 "the agent is PID 1 of its PID namespace: if it dies mid-freeze its fsfreeze "
                 "watchdog dies with it (set shareProcessNamespace: true in the pod, as "
                 "daemonset/daemonset.yaml does)");
    }
    if ((rc = cairn_metrics_listen(cfg->metrics_addr, cfg->metrics_port, &fd, &port, err)) !=
        CAIRN_OK)
        goto out;
    alog(&a, CAIRN_LOG_INFO,
         "agent on node '%s': API server %s (%s), volumes under '%s', /metrics on %s:%d, "
         "tick %lld s",
         cfg->node, cairn_kube_server(a.kube), cairn_kube_token_source(a.kube), cfg->pods_dir,
         cfg->metrics_addr, port, (long long)cfg->tick_s);
    cairn_metrics_set_live(a.metrics, 1);
    margs[0] = &a;
    margs[1] = &fd;
    if (pthread_create(&metrics_t, NULL, metrics_main, margs) != 0) {
        rc = cairn_error(err, CAIRN_FATAL, "cannot start the metrics thread");
        goto out;
    }
    metrics_started = 1;
    if (pthread_create(&watch_t, NULL, watch_main, &a) != 0) {
        rc = cairn_error(err, CAIRN_FATAL, "cannot start the watch thread");
        goto out;
    }
    watch_started = 1;

    last_prune = prune_stamp_read(&a);
    if (cfg->prune_interval_s > 0)
        alog(&a, CAIRN_LOG_INFO, "prune every %lld s (packs younger than %lld s are kept); %s",
             (long long)cfg->prune_interval_s, (long long)cfg->prune_grace_s,
             last_prune ? "the last prune's time is known" : "no prune recorded on this node");
    a.copy_gc_due = 1; /* an agent stopped in the middle of a copy left them */
    while (!*stop) {
        int64_t until;
        copy_gc(&a);
        tick(&a);
        if (*stop)
            break;
        retry_vs_deletions(&a);
        maybe_prune(&a, &last_prune);
        refresh_archive_metrics(&a);
        until = cairn_now_ns() + cfg->tick_s * NS_PER_S;
        while (!*stop && cairn_now_ns() < until) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    if (!a.stop_seen_ns)
        stop_seen(&a, cairn_now_ns());
    alog(&a, CAIRN_LOG_INFO, "stopping: no new jobs start; %.1f s since the stop request "
         "(an in-flight job may use %lld s)",
         (double)(cairn_now_ns() - a.stop_seen_ns) / 1e9, (long long)cfg->stop_grace_s);
    rc = CAIRN_OK;
out:
    if (a.metrics)
        cairn_metrics_set_live(a.metrics, 0);
    a.quit = 1;
    if (watch_started || metrics_started) {
        if (watch_started)
            pthread_join(watch_t, NULL);
        if (metrics_started)
            pthread_join(metrics_t, NULL);
    }
    if (fd >= 0)
        close(fd);
    cairn_kube_free(a.watch_kube);
    cairn_kube_free(a.kube);
    cairn_metrics_free(a.metrics);
    free(a.pend);
    free(a.e);
    pthread_mutex_destroy(&a.mu);
    return rc;
}

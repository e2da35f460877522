/* agent/agent.h — the node agent behind `cairn agent`: watches the pods of
 * its node, keeps a map of the PVCs they mount, and on each tick backs up
 * the PVCs whose cairn.io/ annotations ask for it (schedule due, or
 * cairn.io/backup-requested-at newer than cairn.io/last-backup), writes the
 * result back (annotations cairn.io/last-backup and cairn.io/last-status,
 * an Event), applies retention, and serves /metrics, /healthz and /readyz.
 * See docs/agent.md.
 *
 * Threads: cairn_agent_run() starts a watch thread (its own cairn_kube
 * handle) and a metrics server thread, and runs the scheduler itself; only
 * the scheduler touches the repository. Backups run one at a time.
 *
 * Memory: the PVC map holds at most max_pvcs entries (small fixed-size
 * records); the engine's queues are bounded by `workers`; nothing grows with
 * the number of files.
 *
 * Ownership: the configuration and the repository stay the caller's.
 * Messages go to cfg->log (never secrets). Nothing here prints or exits. */
#ifndef CAIRN_AGENT_AGENT_H
#define CAIRN_AGENT_AGENT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "../engine/repo.h"
#include "../engine/util.h"

enum cairn_log_level { CAIRN_LOG_ERROR, CAIRN_LOG_WARN, CAIRN_LOG_INFO, CAIRN_LOG_DEBUG };

typedef void (*cairn_agent_log_fn)(void *arg, enum cairn_log_level level, const char *msg);

#define CAIRN_AGENT_MAX_PVCS 1024 /* default map size */

struct cairn_agent_config {
    char node[254];              /* NODE_NAME (required) */
    char pod_namespace[254];     /* POD_NAMESPACE (informational) */
    char pods_dir[1024];         /* CAIRN_KUBELET_PODS_DIR or the default */
    char metrics_addr[64];       /* CAIRN_METRICS_ADDR, default 0.0.0.0 */
    int metrics_port;            /* CAIRN_METRICS_PORT, default 9464 */
    int64_t tick_s;              /* CAIRN_AGENT_TICK, default 30 */
    int64_t jitter_max_s;        /* CAIRN_JITTER_MAX, default 5m */
    int64_t prune_interval_s;    /* CAIRN_PRUNE_INTERVAL, default 24h; 0 = never */
    int64_t prune_grace_s;       /* CAIRN_PRUNE_GRACE, default 1h: packs younger than this
                                    are never pruned (other nodes' backups in flight) */
    int64_t stop_grace_s;        /* CAIRN_STOP_GRACE, default 60: after SIGTERM a running
                                    job may finish within this, then it is aborted */
    char default_retention[4097];/* CAIRN_DEFAULT_RETENTION, "" = none */
    size_t max_pvcs;             /* CAIRN_AGENT_MAX_PVCS, default 1024 */
    int workers;                 /* CAIRN_AGENT_WORKERS, default 2 */
    enum cairn_log_level log_level; /* CAIRN_LOG_LEVEL, default info */
    cairn_agent_log_fn log;
    void *log_arg;
};

/* Fills cfg from the environment (defaults above). CAIRN_FAILED with a
 * message naming the variable when one is missing or malformed. Durations
 * take cairn_parse_duration's forms ("30", "5m", "24h"; a bare number is
 * seconds). */
int cairn_agent_config_from_env(struct cairn_agent_config *cfg, cairn_err *err);

/* Runs until *stop becomes nonzero: then no new job starts, the watch stops,
 * a running backup may finish within cfg->stop_grace_s and is aborted after
 * that (the engine's cancel hook, polled at least every 1 MiB read: no
 * snapshot is written, the PVC's cairn.io/last-status says "aborted: ..."
 * and cairn.io/last-backup is left alone so the next agent runs it again),
 * and CAIRN_OK is returned. A prune that is running is finished (each of its
 * steps is crash-safe, so a SIGKILL at the end of the grace period is safe
 * too). An error before the loop starts (Kubernetes configuration, metrics
 * port) is returned. */
int cairn_agent_run(cairn_repo *repo, const struct cairn_agent_config *cfg,
                    const volatile sig_atomic_t *stop, cairn_err *err);

#endif

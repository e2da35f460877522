/* agent/metrics.h — the agent's Prometheus metrics and its tiny HTTP server
 * for GET /metrics (text format 0.0.4), /healthz and /readyz.
 *
 * Series (docs/agent.md):
 *   cairn_backup_duration_seconds{namespace,pvc}        gauge, the last job
 *   cairn_backup_bytes{namespace,pvc,kind="read|new|stored"}  gauge, the last job
 *   cairn_last_success_timestamp_seconds{namespace,pvc} gauge
 *   cairn_backup_failures_total{namespace,pvc}          counter
 *   cairn_backups_total{namespace,pvc}                  counter (successes)
 *   cairn_backup_job_duration_seconds{result="success|failure"}  histogram, every job
 *   cairn_quiesce_duration_seconds{method="fsfreeze|postgres|mysql"}  histogram, every hold
 *   cairn_last_quiesce_duration_seconds{namespace,pvc,method}  gauge, the PVC's last hold
 *   cairn_jobs_in_flight                                gauge
 *   cairn_agent_ready                                   gauge (0/1)
 *   cairn_wal_archive_lag_seconds{system_id}            gauge, now - newest archived commit
 *   cairn_wal_archive_last_commit_timestamp_seconds{system_id}   gauge
 *   cairn_binlog_archive_lag_seconds{server}            gauge, now - newest archived event
 *   cairn_binlog_archive_last_event_timestamp_seconds{server}    gauge
 *   cairn_prunes_total{result="ok|failed"}              counter
 *   cairn_last_prune_timestamp_seconds                  gauge (successful prunes)
 *   cairn_prune_freed_bytes_total                       counter
 *   cairn_volume_snapshots_deleted_total                counter (retention)
 *   cairn_volume_snapshot_delete_failures_total         counter
 *   cairn_volume_snapshot_deletions_pending             gauge (VolumeSnapshots and exec)
 *   cairn_exec_snapshots_released_total                 counter (retention)
 *   cairn_exec_snapshot_release_failures_total          counter
 * The archive series are computed at scrape time from the times the agent
 * last set (cairn_metrics_set_archives), at most CAIRN_METRICS_MAX_ARCHIVES
 * databases per kind.
 * Per-PVC series are kept for at most max_series PVCs (the first ones seen);
 * beyond that a PVC is counted in cairn_metrics_dropped_series and not
 * exported, so memory is bounded by configuration.
 *
 * The server is single-threaded: one connection at a time, a request of at
 * most CAIRN_METRICS_MAX_REQUEST bytes read within a short timeout, one
 * response, then the connection is closed.
 *
 * Ownership: cairn_metrics_new() returns a handle freed by
 * cairn_metrics_free() (NULL is fine). Threading: every function may be
 * called from any thread (one mutex inside); cairn_metrics_serve() runs in
 * the thread that calls it until *stop becomes nonzero. Nothing here prints
 * or exits. */
#ifndef CAIRN_AGENT_METRICS_H
#define CAIRN_AGENT_METRICS_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "../engine/util.h"

#define CAIRN_METRICS_MAX_REQUEST 4096
#define CAIRN_METRICS_MAX_RESPONSE (4u << 20)

typedef struct cairn_metrics cairn_metrics;

int cairn_metrics_new(size_t max_series, cairn_metrics **out, cairn_err *err);
void cairn_metrics_free(cairn_metrics *m);

/* A job on namespace/pvc started (in-flight + 1) or ended (in-flight - 1;
 * job_s: the whole job's wall time, observed in the histogram whatever the
 * result; ok: success at end_s epoch seconds, with the backup's duration and
 * bytes). */
void cairn_metrics_job_start(cairn_metrics *m);
void cairn_metrics_job_end(cairn_metrics *m, const char *ns, const char *pvc, int ok,
                           double job_s, double duration_s, uint64_t bytes_read,
                           uint64_t bytes_new, uint64_t bytes_stored, double end_s);
/* A job on namespace/pvc held its workload for seconds (a freeze, a
 * database backup mode), whatever the job's result: observed in the
 * histogram and kept as the PVC's last hold of that method. */
enum cairn_quiesce_method { CAIRN_QUIESCE_M_FSFREEZE, CAIRN_QUIESCE_M_POSTGRES,
                            CAIRN_QUIESCE_M_MYSQL };
#define CAIRN_QUIESCE_METHODS 3
void cairn_metrics_quiesce(cairn_metrics *m, const char *ns, const char *pvc,
                           enum cairn_quiesce_method method, double seconds);
/* A prune ended (ok or failed) at end_s, giving back freed bytes. */
void cairn_metrics_prune_end(cairn_metrics *m, int ok, double end_s, uint64_t freed);
/* A VolumeSnapshot of a forgotten snapshot was deleted (ok) or its deletion
 * failed; n deletions wait for a retry. */
void cairn_metrics_vs_deletion(cairn_metrics *m, int ok);
void cairn_metrics_vs_pending(cairn_metrics *m, size_t n);
/* The storage snapshot of a forgotten exec snapshot was released by the
 * configured release command (ok), or the command failed. n above counts
 * these waiting for a retry too. */
void cairn_metrics_exec_release(cairn_metrics *m, int ok);
/* /healthz answers 200 while live is set, /readyz while ready is set. */
void cairn_metrics_set_live(cairn_metrics *m, int live);
void cairn_metrics_set_ready(cairn_metrics *m, int ready);

/* The log archives the agent knows: for each database (PostgreSQL system
 * id, or MariaDB/MySQL server uuid/id) the time of the newest commit/event
 * in its archived log files. Replaces the previous set of that kind (a
 * database no longer listed disappears from /metrics); entries beyond
 * CAIRN_METRICS_MAX_ARCHIVES are ignored and counted as dropped series. */
#define CAIRN_METRICS_MAX_ARCHIVES 64
#define CAIRN_METRICS_ARCHIVE_ID_MAX 64
enum cairn_archive_kind { CAIRN_ARCHIVE_WAL, CAIRN_ARCHIVE_BINLOG };
struct cairn_archive_time {
    char id[CAIRN_METRICS_ARCHIVE_ID_MAX];
    int64_t newest_ns; /* Unix ns */
};
void cairn_metrics_set_archives(cairn_metrics *m, enum cairn_archive_kind kind,
                                const struct cairn_archive_time *v, size_t n);

/* The exposition text into out (appended). */
int cairn_metrics_render(cairn_metrics *m, cairn_buf *out, cairn_err *err);

/* Binds a listening TCP socket to addr ("0.0.0.0", "127.0.0.1", "::") and
 * port (0: any; the bound port goes to *bound_port if not NULL). */
int cairn_metrics_listen(const char *addr, int port, int *fd_out, int *bound_port,
                         cairn_err *err);
/* Serves fd until *stop is nonzero (checked at least every 200 ms); closes
 * nothing (the caller closes fd). Errors on one connection are ignored. */
int cairn_metrics_serve(cairn_metrics *m, int fd, const volatile sig_atomic_t *stop);

#endif

/* agent/snapshot.h — one backup job of the agent: quiesce (none, fsfreeze,
 * postgres, mysql), cut the snapshot the PVC asks for (file, btrfs, exec,
 * csi), back it up, clean up. See docs/agent.md ("Snapshots and
 * consistency") and docs/annotations.md. The consistency levels are those of
 * docs/repository-format.md: none, crash, fs, app.
 *
 *   file   the mounted volume is read live: consistency "none" (a file copy
 *          of a live filesystem is not a point in time); with postgres
 *          quiesce, a base backup (pg_backup_start/stop around the copy):
 *          "app".
 *   btrfs  a read-only subvolume snapshot (BTRFS_IOC_SNAP_CREATE_V2), atomic
 *          by itself, created in the volume as .cairn-snapshot-<random>, read,
 *          then deleted: "crash".
 *   exec   a command from the agent's configuration (CAIRN_SNAPSHOT_EXEC, or
 *          CAIRN_SNAPSHOT_EXEC_<NAME> for cairn.io/snapshot: exec:<name>),
 *          never from the annotation, run while the filesystem is frozen:
 *          "fs". If it writes "path=<dir>" to $CAIRN_SNAPSHOT_OUT the
 *          agent backs up that directory; otherwise the storage snapshot is
 *          the artifact and the Cairn snapshot records it ("data":
 *          "reference", no files).
 *   csi    a snapshot.storage.k8s.io/v1 VolumeSnapshot, frozen (quiesce
 *          fsfreeze/postgres/mysql) only until status.creationTime is set,
 *          then waited for until readyToUse; the Cairn snapshot records its
 *          name, uid, content name and snapshotHandle ("data": "reference"):
 *          "crash", or "fs" when frozen. With cairn.io/csi-copy
 *          "true" or "keep" its data is copied into the repository by a
 *          Job (agent/csi_copy.h): the Cairn snapshot then holds the
 *          files ("data": "files", "copy": {...}) and the VolumeSnapshot
 *          is deleted ("true") or kept and referenced ("keep").
 *   postgres / mysql quiesce around any of them: "app".
 *
 * Database credentials come from the Secret named by
 * cairn.io/credentials-secret in the PVC's namespace; they are wiped from
 * memory after use and never appear in messages.
 *
 * Ownership: the job's fields are borrowed; bo->extra (a JSON object, the
 * caller's) gets "snapshot" (and "postgres"/"mysql") sections added.
 * Threading: one job at a time per kube handle; jobs fork (the watchdog,
 * exec commands). Nothing here prints or exits: lines go to job->log. */
#ifndef CAIRN_AGENT_SNAPSHOT_H
#define CAIRN_AGENT_SNAPSHOT_H

#include <limits.h>
#include <stdint.h>

#include "../engine/backup.h"
#include "annotations.h"
#include "csi_copy.h"
#include "kube.h"

struct cairn_snap_config {
    char state_dir[PATH_MAX];      /* CAIRN_STATE_DIR, default /var/lib/cairn */
    int64_t freeze_timeout_ms;     /* CAIRN_FREEZE_TIMEOUT, default 30 s */
    int64_t csi_ready_timeout_ms;  /* CAIRN_CSI_READY_TIMEOUT, default 10 min */
    int64_t poll_ms;               /* CAIRN_SNAPSHOT_POLL_MS, default 1000 */
    int64_t quiesce_warn_ms;       /* CAIRN_QUIESCE_WARN, default 10 s: a longer freeze or
                                      BACKUP STAGE hold is logged as a warning */
    int64_t release_timeout_ms;    /* CAIRN_RELEASE_TIMEOUT, default 2 min */
    struct cairn_copy_config copy; /* cairn.io/csi-copy (csi_copy.h) */
};

/* Defaults, then the environment. Durations as cairn_parse_duration (a bare
 * number is seconds). CAIRN_FAILED naming the variable when malformed. */
int cairn_snap_config_from_env(struct cairn_snap_config *c, cairn_err *err);

/* Whether this agent can run the policy's method at all (before anything is
 * touched): an exec command configured, a supported quiesce. 0 yes; -1 no,
 * with a message for an Event in msg. */
int cairn_snap_plan_check(const struct cairn_pvc_policy *p, const struct cairn_snap_config *c,
                          char *msg, size_t msglen);

enum cairn_snap_log_level { CAIRN_SNAP_LOG_WARN, CAIRN_SNAP_LOG_INFO, CAIRN_SNAP_LOG_DEBUG };

struct cairn_snap_job {
    cairn_repo *repo;
    cairn_kube *kube;
    const struct cairn_snap_config *cfg;
    const struct cairn_pvc_policy *policy;
    const char *ns, *pvc, *pv, *pod, *node;
    const char *host_path;         /* the mounted volume */
    /* Prepared by the caller (source, excludes, workers, extra, warn); paths,
     * consistency and before_manifest are set here. */
    struct cairn_backup_opts *bo;
    void (*log)(void *arg, enum cairn_snap_log_level lvl, const char *msg);
    void *log_arg;
    /* Called when a hold of the workload ends, whatever the job's result:
     * method CAIRN_QUIESCE_FSFREEZE (the filesystem was frozen, with any
     * quiesce: exec always freezes), POSTGRES (pg_backup_start returned ..
     * pg_backup_stop, or the session's end on failure) or MYSQL (BACKUP STAGE
     * BLOCK_COMMIT sent .. BACKUP STAGE END, or the session's end), with its
     * monotonic duration. NULL: not reported. */
    void (*quiesced)(void *arg, enum cairn_quiesce method, double seconds);
    void *quiesced_arg;
    int *copy_leftovers;           /* csi copy: set to 1 when a temporary object could
                                      not be deleted (cairn_copy_gc() is due); may be NULL */
};

/* Runs the job. On CAIRN_OK res describes the snapshot; on error nothing is
 * left frozen, no temporary snapshot is left behind (a failed VolumeSnapshot
 * is deleted) and err says what failed. */
int cairn_snap_run(const struct cairn_snap_job *j, struct cairn_backup_result *res,
                   cairn_err *err);

/* ---- retention: the VolumeSnapshots the agent created ----
 * When retention forgets a Cairn snapshot whose manifest records a
 * VolumeSnapshot (method "csi", data "reference", or a copy that kept it:
 * data "files" with copy.volume_snapshot_kept true), the agent deletes that
 * VolumeSnapshot first and forgets the record only once it is gone (see
 * docs/agent.md, "Retention of VolumeSnapshots"). Only objects Cairn created
 * are deleted: label app.kubernetes.io/managed-by=cairn, and the uid recorded
 * in the manifest (snapshot.uid) or, for manifests older than that field,
 * the cairn.io/pvc annotation naming the snapshot's PVC; the DELETE carries
 * the uid as a precondition. */
enum cairn_vs_outcome {
    CAIRN_VS_NONE,     /* the manifest records no VolumeSnapshot */
    CAIRN_VS_DELETED,  /* DELETE accepted */
    CAIRN_VS_GONE,     /* already gone (404) */
    CAIRN_VS_NOT_OURS, /* not Cairn's (label, uid, name): left alone */
};

/* Deletes the VolumeSnapshot the manifest man records, if Cairn made it.
 * CAIRN_OK with *out saying what happened (the record may go), or an error
 * (CAIRN_RETRY: network, 429, 5xx; CAIRN_FAILED: 401, 403, ...) when it may
 * still exist (the record must stay). what gets "'NS/NAME'", and for
 * CAIRN_VS_NOT_OURS "'NS/NAME' was left alone: <why>", for the log. man is
 * borrowed. */
int cairn_snap_vs_release(cairn_kube *k, const json_t *man, enum cairn_vs_outcome *out,
                          char *what, size_t whatlen, cairn_err *err);

/* ---- retention: the storage snapshots of exec ----
 * An exec snapshot without path= (data "reference") records the storage
 * snapshot's handle=; the platform team may configure a release command for
 * it: CAIRN_SNAPSHOT_RELEASE for the command CAIRN_SNAPSHOT_EXEC, and
 * CAIRN_SNAPSHOT_RELEASE_<NAME> for CAIRN_SNAPSHOT_EXEC_<NAME> (the variable
 * the manifest's snapshot.command names). Run like the exec command
 * (no shell, no arguments, its own process group, output to the log) with
 * CAIRN_SNAPSHOT_HANDLE, CAIRN_SNAPSHOT_ID, CAIRN_SNAPSHOT_TIME,
 * CAIRN_SNAPSHOT_COMMAND, CAIRN_SNAPSHOT_NODE, CAIRN_PVC_NAMESPACE,
 * CAIRN_PVC_NAME, CAIRN_PV_NAME, CAIRN_NODE_NAME and PATH only, killed after
 * cfg->release_timeout_ms or when abort(abort_arg) says so. */
struct cairn_snap_release {
    const struct cairn_snap_config *cfg;
    const char *node;        /* this agent's node */
    int (*abort)(void *arg); /* may be NULL */
    void *abort_arg;
    void (*log)(void *arg, enum cairn_snap_log_level lvl, const char *msg);
    void *log_arg;
};

/* Releases the storage snapshot the manifest man (of snapshot id) records.
 * CAIRN_OK with *out: CAIRN_VS_NONE (not an exec reference with a handle:
 * nothing to release, e.g. path= snapshots, whose data is in the
 * repository), CAIRN_VS_DELETED (the command exited 0), CAIRN_VS_NOT_OURS
 * (no release command configured: the storage snapshot stays, the record
 * may go). An error (CAIRN_FAILED: non-zero exit, killed, timeout, a
 * configured path that is not an executable) when it may still exist (the
 * record must stay). what gets "'HANDLE' (VAR)" or, for CAIRN_VS_NOT_OURS,
 * "'HANDLE' stays: <why>", for the log. man is borrowed. */
int cairn_snap_exec_release(const struct cairn_snap_release *rl, const char *id,
                            const json_t *man, enum cairn_vs_outcome *out, char *what,
                            size_t whatlen, cairn_err *err);

#endif

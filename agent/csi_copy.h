/* agent/csi_copy.h — the CSI data mover: copies a ready VolumeSnapshot's data
 * into the repository (cairn.io/csi-copy, docs/agent.md "Copying CSI
 * snapshots into the repository").
 *
 *   1. a temporary PVC in the source PVC's namespace, restored from the
 *      VolumeSnapshot (spec.dataSource), with the source's storage class and
 *      access modes and the size of status.restoreSize (else the source's
 *      request);
 *   2. a batch/v1 Job there (agent/restore_job.h's shape) mounting it
 *      read-only at /source and running the agent's image as
 *      `cairn backup /source --source k8s:NS/PVC --consistency C
 *      --ignore-device --meta JSON [--exclude G]...`: the snapshot gets the
 *      same source and manifest sections (kubernetes, snapshot, postgres,
 *      mysql) as any backup the agent makes of that PVC, plus
 *      snapshot.copy.id, a random token that is how the agent finds it in
 *      the repository afterwards (the repository is the truth, not the log);
 *   3. the Job is followed until it completes, fails, cannot start its pod
 *      (CreateContainerConfigError...), is refused (FailedCreate events),
 *      or the timeout; then the Job (propagationPolicy Background) and the
 *      PVC are deleted, whatever happened.
 * The repository reaches the Job as it reaches restore-pvc's: the Secret
 * (CAIRN_COPY_SECRET, default cairn-repository) and the ConfigMap
 * (CAIRN_COPY_CONFIGMAP, default cairn-agent-config) of the PVC's namespace.
 *
 * Temporary objects carry the labels app.kubernetes.io/managed-by=cairn,
 * app.kubernetes.io/component=csi-copy and cairn.io/copy-job=NAME, and the
 * annotations cairn.io/node (the agent's node), cairn.io/pvc,
 * cairn.io/volume-snapshot, cairn.io/copy-id and cairn.io/csi-copy. An agent
 * that dies in the middle leaves them: cairn_copy_gc() (at start, and on a
 * later tick when a deletion failed) deletes those of its node.
 *
 * Ownership: everything passed in is borrowed; json_t objects returned
 * through out belong to the caller. Threading: one call at a time per kube
 * handle and repository. Nothing here prints or exits: lines go to log. */
#ifndef CAIRN_AGENT_CSI_COPY_H
#define CAIRN_AGENT_CSI_COPY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "../engine/backup.h"
#include "annotations.h"
#include "kube.h"

#define CAIRN_COPY_MOUNT "/source"
#define CAIRN_COPY_PREFIX "cairn-copy-"
#define CAIRN_COPY_COMPONENT "csi-copy"
#define CAIRN_COPY_TOKEN_LEN 16 /* hex digits of the copy id */

struct cairn_copy_config {
    char image[513];       /* CAIRN_COPY_IMAGE; "" = the agent pod's own image */
    char secret[254];      /* CAIRN_COPY_SECRET, default cairn-repository */
    char config_map[254];  /* CAIRN_COPY_CONFIGMAP, default cairn-agent-config */
    char pod_ns[64];       /* POD_NAMESPACE, POD_NAME: the agent's pod, for its image */
    char pod_name[254];
    int64_t timeout_s;     /* CAIRN_COPY_TIMEOUT, default 6h; also the Job's deadline */
};

/* Defaults, then the environment; CAIRN_FAILED naming a bad variable. */
int cairn_copy_config_from_env(struct cairn_copy_config *c, cairn_err *err);

/* The temporary PVC's and the Job's name: "cairn-copy-<pvc>-<token[0..8)>",
 * a DNS-1123 label of at most 63 characters (the pods' job-name label). */
void cairn_copy_name(const char *pvc, const char *token, char out[64]);

/* What the objects are made of (all borrowed). */
struct cairn_copy_spec {
    const char *ns, *pvc, *node;
    const char *name;              /* cairn_copy_name() */
    const char *token;             /* the copy id */
    const char *volume_snapshot;   /* the ready VolumeSnapshot */
    enum cairn_csi_copy mode;      /* ON or KEEP */
    const char *storage_class;     /* NULL: none (the cluster's default) */
    const json_t *access_modes;    /* a JSON array of strings */
    const char *size;              /* a quantity */
    const char *image;
    const char *secret, *config_map; /* NULL: the defaults */
    const char *subdir;            /* "" or a directory of the volume to back up */
    const char *source;            /* "k8s:NS/PVC" */
    const char *consistency;       /* none, crash, fs, app */
    const char *const *excludes;
    size_t n_excludes;
    const json_t *meta;            /* the manifest's sections (--meta) */
    int64_t deadline_s;
};
int cairn_copy_pvc_build(const struct cairn_copy_spec *s, json_t **out, cairn_err *err);
int cairn_copy_job_build(const struct cairn_copy_spec *s, json_t **out, cairn_err *err);

struct cairn_copy_job {
    cairn_repo *repo;
    cairn_kube *kube;
    const struct cairn_copy_config *cfg;
    int64_t poll_ms;
    const char *ns, *pvc, *node;
    const char *volume_snapshot;
    const json_t *vs;              /* the ready VolumeSnapshot (status.restoreSize) */
    enum cairn_csi_copy mode;
    const char *subdir, *source, *consistency;
    const char *const *excludes;
    size_t n_excludes;
    json_t *extra;                 /* the manifest's sections; "snapshot" gets "data"
                                      and "copy" here */
    int (*cancel)(void *arg);      /* nonzero: stop now (NULL: never) */
    void *cancel_arg;
    void (*log)(void *arg, int warn, const char *msg);
    void *log_arg;
    int *leftovers;                /* set to 1 when a temporary object could not be
                                      deleted (cairn_copy_gc() is due); may be NULL */
};

/* Runs the copy. CAIRN_OK: res describes the Cairn snapshot the Job wrote
 * (read back from the repository; partial when the Job failed but wrote a
 * partial snapshot). Otherwise err says what failed and no temporary
 * object is left (unless deleting it failed too: then *leftovers). */
int cairn_csi_copy_run(const struct cairn_copy_job *j, struct cairn_backup_result *res,
                   cairn_err *err);

/* Deletes the temporary PVCs and Jobs of node (cairn.io/node) left by an
 * agent that stopped in the middle of a copy, and the VolumeSnapshots of
 * copies of that node that are no longer needed: csi-copy "true" ones, and
 * "keep" ones no Cairn snapshot references. *deleted counts what went. No
 * copy of this node may be running. */
int cairn_copy_gc(cairn_kube *k, cairn_repo *repo, const char *node,
                  void (*log)(void *arg, int warn, const char *msg), void *log_arg,
                  size_t *deleted, cairn_err *err);

#endif

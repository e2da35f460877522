/* agent/restore_job.h — the Kubernetes objects behind `cairn restore-pvc`:
 * the PersistentVolumeClaim it may create and the batch/v1 Job that mounts
 * the PVC and runs `cairn restore SNAP --target /restore --overwrite` there
 * (a new volume is not empty either: ext4's lost+found), and how to
 * read the Job's and its pod's state. Pure functions: no I/O (cli/
 * cmd_restore_pvc.c talks to the API server through agent/kube.h).
 *
 * The Job gets the repository exactly as the agent's DaemonSet does
 * (daemonset/daemonset.yaml): CAIRN_REPO from the repository Secret
 * (secretKeyRef), the credentials as files of that Secret mounted read-only
 * at /etc/cairn/secret (the *_FILE variables), and the non-secret settings
 * (region, endpoint) from the agent's ConfigMap (envFrom, optional). No
 * secret value is ever part of the Job. Pods reach only Secrets of their own
 * namespace, so the Secret (and ConfigMap) must exist in the PVC's namespace
 * (docs/kubernetes.md, "Restoring into the cluster").
 *
 * Ownership: json_t objects returned through `out` belong to the caller
 * (json_decref). Thread-safe (no state). Nothing here prints or exits. */
#ifndef CAIRN_AGENT_RESTORE_JOB_H
#define CAIRN_AGENT_RESTORE_JOB_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "../engine/util.h"

#define CAIRN_RESTORE_SECRET "cairn-repository"
#define CAIRN_RESTORE_CONFIGMAP "cairn-agent-config"
#define CAIRN_RESTORE_MOUNT "/restore"
#define CAIRN_RESTORE_JOB_PREFIX "cairn-restore-"

struct cairn_restore_job_spec {
    const char *snapshot;     /* id or unique prefix, as the user gave it */
    const char *ns;           /* the PVC's namespace: the Job runs there */
    const char *pvc;          /* the target PVC */
    const char *image;        /* the cairn image (the agent's) */
    const char *repo_secret;  /* NULL: CAIRN_RESTORE_SECRET */
    const char *config_map;   /* NULL: CAIRN_RESTORE_CONFIGMAP */
    int64_t deadline_s;       /* spec.activeDeadlineSeconds; 0: none */
};

/* 1 when s is a DNS-1123 label of at most max characters (namespaces,
 * Secret/ConfigMap keys are not labels: see cairn_k8s_subdomain_ok). */
int cairn_k8s_label_ok(const char *s, size_t max);
/* 1 when s is a DNS-1123 subdomain (PVC, Job, Secret names; <= 253). */
int cairn_k8s_subdomain_ok(const char *s);
/* 1 when s is a plain resource quantity for a size: digits with an optional
 * fraction and an optional suffix Ki Mi Gi Ti Pi Ei k M G T P E ("10Gi"). */
int cairn_k8s_quantity_ok(const char *s);

/* The shape every Job of Cairn shares (restore-pvc's restore, the agent's
 * CSI copy, agent/csi_copy.h): one container running the cairn image with
 * args, the repository wired as above (CAIRN_REPO from the Secret's key, the
 * Secret's files at /etc/cairn/secret, the ConfigMap as envFrom, a catalog on
 * an emptyDir), one PVC mounted at mount, backoffLimit 0, restartPolicy
 * Never, no ServiceAccount token, all capabilities dropped but caps, seccomp
 * RuntimeDefault, read-only root filesystem. labels go to the Job and its
 * pod template, annotations (may be NULL) to the Job; both borrowed. */
struct cairn_k8s_job_spec {
    const char *ns;
    const char *name;           /* metadata.name, or */
    const char *generate_name;  /* metadata.generateName (exactly one of them) */
    const char *container;      /* the container's name */
    const char *image;
    const char *const *args;    /* the container's args (the image's entrypoint is cairn) */
    size_t n_args;
    const char *volume;         /* the volume's name in the pod */
    const char *claim;          /* the PVC mounted */
    const char *mount;          /* at this path */
    int read_only;              /* mounted (and claimed) read-only */
    const char *const *caps;    /* capabilities added */
    size_t n_caps;
    const char *repo_secret;    /* NULL: CAIRN_RESTORE_SECRET */
    const char *config_map;     /* NULL: CAIRN_RESTORE_CONFIGMAP */
    json_t *labels;
    json_t *annotations;
    int64_t deadline_s;         /* spec.activeDeadlineSeconds; 0: none */
    int64_t ttl_s;              /* spec.ttlSecondsAfterFinished */
    const char *cpu_request, *memory_request, *cpu_limit, *memory_limit;
};
int cairn_k8s_job_build(const struct cairn_k8s_job_spec *s, json_t **out, cairn_err *err);

/* The Job (metadata.generateName "cairn-restore-<pvc>-", labels naming the
 * PVC, annotation cairn.io/snapshot; backoffLimit 0, restartPolicy Never).
 * CAIRN_FAILED with a message naming the bad field. */
int cairn_restore_job_build(const struct cairn_restore_job_spec *s, json_t **out,
                            cairn_err *err);

/* The PVC to create: ReadWriteOnce, spec.resources.requests.storage = size,
 * storageClassName when storage_class is not NULL, annotation
 * cairn.io/restored-from = snapshot. */
int cairn_restore_pvc_build(const char *ns, const char *name, const char *size,
                            const char *storage_class, const char *snapshot, json_t **out,
                            cairn_err *err);

enum cairn_job_state { CAIRN_JOB_RUNNING, CAIRN_JOB_SUCCEEDED, CAIRN_JOB_FAILED };
/* The Job's state from status.conditions (Complete / Failed with status
 * "True"), else status.succeeded / status.failed. On FAILED the condition's
 * reason and message go to why (may be empty). */
enum cairn_job_state cairn_job_state(const json_t *job, char *why, size_t whylen);

/* 1 when a container of the pod waits for a reason that does not go away by
 * waiting (CreateContainerConfigError: a missing Secret or ConfigMap key,
 * ErrImagePull, ImagePullBackOff, InvalidImageName, CreateContainerError):
 * "reason: message" goes to why. 0 otherwise. */
int cairn_job_pod_stuck(const json_t *pod, char *why, size_t whylen);

/* ---- admission: why the Job's pod may never be created ----
 * The restore pod meets the "baseline" Pod Security Standard, not
 * "restricted" (it runs as root with CHOWN, DAC_OVERRIDE, FOWNER, FSETID). */

#define CAIRN_PSS_LABEL "pod-security.kubernetes.io/"

enum cairn_pss_verdict {
    CAIRN_PSS_OK,       /* no restricted label: baseline, privileged or none */
    CAIRN_PSS_WARN,     /* restricted only in the "warn" or "audit" label */
    CAIRN_PSS_ENFORCED, /* "enforce" is restricted: the pod would be refused */
};
/* Reads the Pod Security admission labels of a core/v1 Namespace object.
 * The label that decided (a static string such as
 * "pod-security.kubernetes.io/enforce") goes to *label when label is not
 * NULL (NULL for CAIRN_PSS_OK). */
enum cairn_pss_verdict cairn_restore_pss_check(const json_t *ns, const char **label);

/* Looks in a core/v1 EventList for a "FailedCreate" event about the Job
 * job (involvedObject kind "Job" and name job; and uid when both job_uid
 * and the event have one): events about other objects do not count. Of
 * several, the most recent (lastTimestamp, else eventTime, else
 * metadata.creationTimestamp) wins: its message goes to why (control
 * characters replaced by spaces, cut to whylen) and its count (at least 1)
 * to *count when count is not NULL. 1 when one was found, else 0. */
int cairn_job_failed_create(const json_t *events, const char *job, const char *job_uid,
                            char *why, size_t whylen, int64_t *count);

#endif

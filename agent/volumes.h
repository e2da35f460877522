/* agent/volumes.h — which PVCs a pod mounts, and where each one's files are
 * on the node: the kubelet mounts a pod's volume at
 *   <pods dir>/<pod uid>/volumes/<plugin dir>/<volume dir>
 * where the pods dir is $CAIRN_KUBELET_PODS_DIR (default
 * /var/lib/kubelet/pods), the plugin dir is the volume plugin's name with '/'
 * written '~' (kubernetes.io~csi, kubernetes.io~local-volume, ...) and, for a
 * volume from a PVC, the volume dir is the PV's name. CSI volumes add
 * "/mount" (the kubelet keeps vol_data.json beside it). A hostPath PV is not
 * mounted under the pod at all: its files are at spec.hostPath.path.
 *
 * A pod's volume refers to a PVC through spec.volumes[].persistentVolumeClaim
 * .claimName, or is a generic ephemeral volume (spec.volumes[].ephemeral),
 * whose PVC is named "<pod name>-<volume name>". emptyDir, configMap,
 * secret, projected... are not PVCs and are not listed.
 *
 * Ownership: a cairn_pod_pvcs array is owned by the caller and released
 * with cairn_pod_pvcs_free(); strings inside are owned by it. Inputs (json_t)
 * are borrowed. Threading: no shared state. Nothing here prints or exits. */
#ifndef CAIRN_AGENT_VOLUMES_H
#define CAIRN_AGENT_VOLUMES_H

#include <jansson.h>
#include <stddef.h>

#include "../engine/util.h"

#define CAIRN_KUBELET_PODS_DIR "/var/lib/kubelet/pods"
#define CAIRN_POD_MAX_VOLUMES 256 /* more PVC volumes in one pod: refused */

struct cairn_pod_pvc {
    char *volume;     /* the pod's volume name (spec.volumes[].name) */
    char *claim;      /* the PVC's name, in the pod's namespace */
    int read_only;    /* persistentVolumeClaim.readOnly */
    int ephemeral;    /* a generic ephemeral volume */
};

struct cairn_pod_pvcs {
    char *ns, *pod, *uid, *node;  /* metadata.namespace, .name, .uid, spec.nodeName */
    struct cairn_pod_pvc *v;
    size_t n;
};

/* The PVC volumes of pod (a core/v1 Pod object). CAIRN_CORRUPT when the pod
 * lacks metadata.name, .namespace or .uid; a pod without PVCs is CAIRN_OK
 * with n = 0. */
int cairn_pod_pvcs_get(const json_t *pod, struct cairn_pod_pvcs *out, cairn_err *err);
void cairn_pod_pvcs_free(struct cairn_pod_pvcs *p); /* zeroed or NULL is fine */

/* The pods dir: $CAIRN_KUBELET_PODS_DIR, or the default. Not owned. */
const char *cairn_kubelet_pods_dir(void);

/* The plugin directory name for a PV ("kubernetes.io~csi", ...), or NULL
 * when the PV's source is not one we know. Static string. */
const char *cairn_pv_plugin_dir(const json_t *pv);

/* The host path of a PVC volume of the pod with uid pod_uid, backed by pv
 * (core/v1 PersistentVolume), under pods_dir (NULL: the default above).
 * In-tree cloud volumes that Kubernetes 1.27+ migrates to CSI drivers
 * (awsElasticBlockStore, gcePersistentDisk, azureDisk, azureFile,
 * vsphereVolume, cinder) map to kubernetes.io~csi like any CSI PV. *out is malloc'd (caller frees). CAIRN_WARN for a PV that
 * is not a filesystem (volumeMode: Block) or of an unknown plugin (the
 * message says which); CAIRN_CORRUPT for names that would escape the
 * directory ('/', "..", empty). */
int cairn_pvc_host_path(const char *pods_dir, const char *pod_uid, const json_t *pv,
                        char **out, cairn_err *err);

#endif

/* agent/volumes.c — pod → PVC → host path (agent/volumes.h). */
#define _GNU_SOURCE
#include "volumes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* A single path component we may put under the pods dir. */
static int component_ok(const char *s)
{
    return s && *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 &&
           strlen(s) <= 253;
}

void cairn_pod_pvcs_free(struct cairn_pod_pvcs *p)
{
    size_t i;
    if (!p)
        return;
    for (i = 0; i < p->n; i++) {
        free(p->v[i].volume);
        free(p->v[i].claim);
    }
    free(p->v);
    free(p->ns);
    free(p->pod);
    free(p->uid);
    free(p->node);
    memset(p, 0, sizeof *p);
}

int cairn_pod_pvcs_get(const json_t *pod, struct cairn_pod_pvcs *out, cairn_err *err)
{
    const json_t *md = json_object_get(pod, "metadata");
    const json_t *spec = json_object_get(pod, "spec");
    const json_t *vols = json_object_get(spec, "volumes"), *vol;
    const char *ns = jstr(md, "namespace"), *name = jstr(md, "name"), *uid = jstr(md, "uid");
    size_t i;

    memset(out, 0, sizeof *out);
    if (!ns || !name || !uid)
        return cairn_error(err, CAIRN_CORRUPT, "pod '%.64s/%.253s' without metadata.%s",
                           ns ? ns : "?", name ? name : "?",
                           !ns ? "namespace" : !name ? "name" : "uid");
    if (!(out->ns = strdup(ns)) || !(out->pod = strdup(name)) || !(out->uid = strdup(uid)) ||
        (jstr(spec, "nodeName") && !(out->node = strdup(jstr(spec, "nodeName")))))
        goto oom;
    json_array_foreach(vols, i, vol) {
        const char *vname = jstr(vol, "name"), *claim;
        const json_t *pvc = json_object_get(vol, "persistentVolumeClaim");
        char *cl = NULL;
        int ro = 0, eph = 0;
        if (!vname)
            continue;
        if (json_is_object(pvc) && (claim = jstr(pvc, "claimName"))) {
            cl = strdup(claim);
            ro = json_is_true(json_object_get(pvc, "readOnly"));
        } else if (json_is_object(json_object_get(vol, "ephemeral"))) {
            eph = 1;
            if (asprintf(&cl, "%s-%s", name, vname) < 0)
                cl = NULL;
        } else {
            continue; /* emptyDir, configMap, secret, hostPath...: not a PVC */
        }
        if (!cl)
            goto oom;
        if (out->n >= CAIRN_POD_MAX_VOLUMES) {
            free(cl);
            cairn_pod_pvcs_free(out);
            return cairn_error(err, CAIRN_FAILED, "pod '%s/%s' has more than %d PVC volumes",
                               ns, name, CAIRN_POD_MAX_VOLUMES);
        }
        {
            struct cairn_pod_pvc *nv = realloc(out->v, (out->n + 1) * sizeof *nv);
            if (!nv) {
                free(cl);
                goto oom;
            }
            out->v = nv;
            nv[out->n].claim = cl;
            nv[out->n].read_only = ro;
            nv[out->n].ephemeral = eph;
            if (!(nv[out->n].volume = strdup(vname))) {
                free(cl);
                goto oom;
            }
            out->n++;
        }
    }
    return CAIRN_OK;
oom:
    cairn_pod_pvcs_free(out);
    return cairn_error(err, CAIRN_FATAL, "out of memory");
}

const char *cairn_kubelet_pods_dir(void)
{
    const char *d = getenv("CAIRN_KUBELET_PODS_DIR");
    return d && *d ? d : CAIRN_KUBELET_PODS_DIR;
}

/* spec.<source> → kubelet plugin directory. */
static const struct {
    const char *source;
    const char *dir;
} plugins[] = {
    {"csi", "kubernetes.io~csi"},
    /* migrated to CSI drivers (GA and on by default in Kubernetes 1.27+) */
    {"awsElasticBlockStore", "kubernetes.io~csi"},
    {"gcePersistentDisk", "kubernetes.io~csi"},
    {"azureDisk", "kubernetes.io~csi"},
    {"azureFile", "kubernetes.io~csi"},
    {"vsphereVolume", "kubernetes.io~csi"},
    {"cinder", "kubernetes.io~csi"},
    /* in-tree */
    {"local", "kubernetes.io~local-volume"},
    {"nfs", "kubernetes.io~nfs"},
    {"iscsi", "kubernetes.io~iscsi"},
    {"fc", "kubernetes.io~fc"},
    {"rbd", "kubernetes.io~rbd"},
    {"cephfs", "kubernetes.io~cephfs"},
    {"glusterfs", "kubernetes.io~glusterfs"},
    {"portworxVolume", "kubernetes.io~portworx-volume"},
};

const char *cairn_pv_plugin_dir(const json_t *pv)
{
    const json_t *spec = json_object_get(pv, "spec");
    size_t i;
    for (i = 0; i < sizeof plugins / sizeof plugins[0]; i++)
        if (json_is_object(json_object_get(spec, plugins[i].source)))
            return plugins[i].dir;
    return NULL;
}

int cairn_pvc_host_path(const char *pods_dir, const char *pod_uid, const json_t *pv,
                        char **out, cairn_err *err)
{
    const json_t *spec = json_object_get(pv, "spec"), *flex;
    const char *pvname = jstr(json_object_get(pv, "metadata"), "name");
    const char *mode = jstr(spec, "volumeMode"), *dir;
    char flexdir[300];
    int r;

    *out = NULL;
    if (!pods_dir)
        pods_dir = cairn_kubelet_pods_dir();
    if (!component_ok(pvname))
        return cairn_error(err, CAIRN_CORRUPT, "PV name '%.253s' is not a valid name",
                           pvname ? pvname : "");
    if (!component_ok(pod_uid))
        return cairn_error(err, CAIRN_CORRUPT, "pod uid '%.64s' is not a valid uid",
                           pod_uid ? pod_uid : "");
    if (mode && strcmp(mode, "Block") == 0)
        return cairn_error(err, CAIRN_WARN,
                           "PV '%s' is a raw block device (volumeMode: Block), not a "
                           "filesystem: cairn.io/snapshot: file cannot read it (use csi)",
                           pvname);
    if (json_is_object(json_object_get(spec, "hostPath"))) {
        const char *hp = jstr(json_object_get(spec, "hostPath"), "path");
        if (!hp || hp[0] != '/')
            return cairn_error(err, CAIRN_CORRUPT, "PV '%s': hostPath without an absolute "
                               "path", pvname);
        /* The files are at the host path itself, not under the pod. */
        if (!(*out = strdup(hp)))
            return cairn_error(err, CAIRN_FATAL, "out of memory");
        return CAIRN_OK;
    }
    if ((flex = json_object_get(spec, "flexVolume")) && json_is_object(flex)) {
        const char *drv = jstr(flex, "driver");
        size_t i;
        if (!drv || !*drv || strlen(drv) >= sizeof flexdir)
            return cairn_error(err, CAIRN_CORRUPT, "PV '%s': flexVolume without a driver",
                               pvname);
        for (i = 0; drv[i]; i++)
            flexdir[i] = drv[i] == '/' ? '~' : drv[i]; /* vendor/driver → vendor~driver */
        flexdir[i] = 0;
        if (!component_ok(flexdir))
            return cairn_error(err, CAIRN_CORRUPT, "PV '%s': bad flexVolume driver", pvname);
        dir = flexdir;
    } else if (!(dir = cairn_pv_plugin_dir(pv))) {
        return cairn_error(err, CAIRN_WARN,
                           "PV '%s' uses a volume plugin cairn does not know (not csi, local, "
                           "nfs, iscsi, fc, rbd, cephfs, glusterfs, portworxVolume, "
                           "flexVolume, hostPath): its host path is unknown",
                           pvname);
    }
    r = asprintf(out, "%s/%s/volumes/%s/%s%s", pods_dir, pod_uid, dir, pvname,
                 strcmp(dir, "kubernetes.io~csi") == 0 ? "/mount" : "");
    if (r < 0) {
        *out = NULL;
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    return CAIRN_OK;
}

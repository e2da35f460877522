/* tests/unit/test_kube_volumes.c — agent/volumes.c: the PVCs a pod mounts
 * and each one's host path under the kubelet's pods dir, per volume plugin;
 * names that could escape the directory are refused. */
#define _GNU_SOURCE
#include "../../agent/volumes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define UID "0f3c8a52-5d1e-4c1b-9d7e-3f2a1b0c9d8e"

static const char pod_json[] =
    "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"db-0\",\"namespace\":"
    "\"shop\",\"uid\":\"" UID "\"},\"spec\":{\"nodeName\":\"node-a\",\"volumes\":["
    "{\"name\":\"data\",\"persistentVolumeClaim\":{\"claimName\":\"data-db-0\"}},"
    "{\"name\":\"cache\",\"emptyDir\":{}},"
    "{\"name\":\"conf\",\"configMap\":{\"name\":\"db\"}},"
    "{\"name\":\"logs\",\"persistentVolumeClaim\":{\"claimName\":\"logs\",\"readOnly\":true}},"
    "{\"name\":\"scratch\",\"ephemeral\":{\"volumeClaimTemplate\":{\"spec\":{}}}},"
    "{\"name\":\"kube-api-access-x\",\"projected\":{\"sources\":[]}}]}}";

static json_t *pv(const char *name, const char *spec)
{
    char buf[1024];
    json_t *j;
    snprintf(buf, sizeof buf,
             "{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolume\",\"metadata\":{\"name\":\"%s\"},"
             "\"spec\":%s}",
             name, spec);
    j = json_loads(buf, 0, NULL);
    if (!j)
        fprintf(stderr, "bad test json: %s\n", buf);
    return j;
}

static void expect_path(const char *pvname, const char *spec, const char *want)
{
    json_t *v = pv(pvname, spec);
    char *out = NULL;
    cairn_err err;
    int rc = cairn_pvc_host_path("/var/lib/kubelet/pods", UID, v, &out, &err);
    CHECK(rc == CAIRN_OK && out && strcmp(out, want) == 0, "%s: got %s (%s), want %s", pvname,
          out ? out : "NULL", rc ? err.msg : "ok", want);
    free(out);
    json_decref(v);
}

static void expect_rc(const char *uid, const char *pvname, const char *spec, int want_rc,
                      const char *in_msg)
{
    json_t *v = pv(pvname, spec);
    char *out = NULL;
    cairn_err err;
    int rc;
    err.msg[0] = 0;
    rc = cairn_pvc_host_path("/pods", uid, v, &out, &err);
    CHECK(rc == want_rc && out == NULL && strstr(err.msg, in_msg), "%s: rc %d msg '%s'", pvname,
          rc, err.msg);
    free(out);
    json_decref(v);
}

static void test_pod(void)
{
    json_t *pod = json_loads(pod_json, 0, NULL);
    struct cairn_pod_pvcs p;
    cairn_err err;
    CHECK(cairn_pod_pvcs_get(pod, &p, &err) == CAIRN_OK, "%s", err.msg);
    CHECK(p.n == 3, "3 PVC volumes, got %zu", p.n);
    CHECK(strcmp(p.ns, "shop") == 0 && strcmp(p.pod, "db-0") == 0 && strcmp(p.uid, UID) == 0 &&
              strcmp(p.node, "node-a") == 0, "pod identity");
    if (p.n == 3) {
        CHECK(strcmp(p.v[0].volume, "data") == 0 && strcmp(p.v[0].claim, "data-db-0") == 0 &&
                  !p.v[0].read_only && !p.v[0].ephemeral, "data");
        CHECK(strcmp(p.v[1].claim, "logs") == 0 && p.v[1].read_only, "logs read-only");
        CHECK(strcmp(p.v[2].volume, "scratch") == 0 && strcmp(p.v[2].claim, "db-0-scratch") == 0 &&
                  p.v[2].ephemeral, "generic ephemeral volume: <pod>-<volume>");
    }
    cairn_pod_pvcs_free(&p);
    cairn_pod_pvcs_free(&p); /* twice is fine */
    cairn_pod_pvcs_free(NULL);
    json_decref(pod);

    pod = json_loads("{\"metadata\":{\"name\":\"x\",\"namespace\":\"y\"},\"spec\":{}}", 0, NULL);
    CHECK(cairn_pod_pvcs_get(pod, &p, &err) == CAIRN_CORRUPT && strstr(err.msg, "uid"),
          "no uid: %s", err.msg);
    json_decref(pod);
    pod = json_loads("{\"metadata\":{\"name\":\"x\",\"namespace\":\"y\",\"uid\":\"u\"}}", 0, NULL);
    CHECK(cairn_pod_pvcs_get(pod, &p, &err) == CAIRN_OK && p.n == 0, "no volumes");
    cairn_pod_pvcs_free(&p);
    json_decref(pod);
}

static void test_paths(void)
{
    const char *base = "/var/lib/kubelet/pods/" UID "/volumes/";
    char want[512];

    snprintf(want, sizeof want, "%skubernetes.io~csi/pvc-1234/mount", base);
    expect_path("pvc-1234", "{\"csi\":{\"driver\":\"ebs.csi.aws.com\",\"volumeHandle\":\"vol-1\"}}",
                want);
    /* in-tree EBS is migrated to the CSI driver: mounted by kubernetes.io~csi */
    expect_path("pvc-1234", "{\"awsElasticBlockStore\":{\"volumeID\":\"vol-1\"}}", want);
    snprintf(want, sizeof want, "%skubernetes.io~local-volume/local-pv-7", base);
    expect_path("local-pv-7", "{\"local\":{\"path\":\"/mnt/disks/ssd1\"},\"volumeMode\":"
                              "\"Filesystem\"}", want);
    snprintf(want, sizeof want, "%skubernetes.io~nfs/nfs-pv", base);
    expect_path("nfs-pv", "{\"nfs\":{\"server\":\"10.0.0.5\",\"path\":\"/exports\"}}", want);
    snprintf(want, sizeof want, "%skubernetes.io~rbd/rbd-pv", base);
    expect_path("rbd-pv", "{\"rbd\":{\"image\":\"i\",\"monitors\":[]}}", want);
    snprintf(want, sizeof want, "%sexample.com~lvm/flex-pv", base);
    expect_path("flex-pv", "{\"flexVolume\":{\"driver\":\"example.com/lvm\"}}", want);
    /* hostPath: the files are at the path itself */
    expect_path("hp", "{\"hostPath\":{\"path\":\"/srv/data\"}}", "/srv/data");

    /* the pods dir from the environment */
    {
        json_t *v = pv("pvc-9", "{\"csi\":{\"driver\":\"d\",\"volumeHandle\":\"h\"}}");
        char *out = NULL;
        cairn_err err;
        setenv("CAIRN_KUBELET_PODS_DIR", "/tmp/fake-kubelet/pods", 1);
        CHECK(strcmp(cairn_kubelet_pods_dir(), "/tmp/fake-kubelet/pods") == 0, "env pods dir");
        CHECK(cairn_pvc_host_path(NULL, UID, v, &out, &err) == CAIRN_OK && out &&
                  strcmp(out, "/tmp/fake-kubelet/pods/" UID
                              "/volumes/kubernetes.io~csi/pvc-9/mount") == 0,
              "env: %s", out ? out : err.msg);
        free(out);
        unsetenv("CAIRN_KUBELET_PODS_DIR");
        CHECK(strcmp(cairn_kubelet_pods_dir(), "/var/lib/kubelet/pods") == 0, "default dir");
        json_decref(v);
    }

    expect_rc(UID, "blk", "{\"csi\":{\"driver\":\"d\"},\"volumeMode\":\"Block\"}", CAIRN_WARN,
              "volumeMode: Block");
    expect_rc(UID, "odd", "{\"quobyte\":{}}", CAIRN_WARN, "volume plugin");
    expect_rc(UID, "..", "{\"csi\":{}}", CAIRN_CORRUPT, "PV name");
    expect_rc("../../etc", "ok", "{\"csi\":{}}", CAIRN_CORRUPT, "pod uid");
    expect_rc(UID, "f", "{\"flexVolume\":{\"driver\":\"..\"}}", CAIRN_CORRUPT, "flexVolume");
    expect_rc(UID, "h", "{\"hostPath\":{\"path\":\"rel\"}}", CAIRN_CORRUPT, "absolute");
    {
        json_t *v = json_loads("{\"spec\":{\"csi\":{}}}", 0, NULL);
        char *out = NULL;
        cairn_err err;
        CHECK(cairn_pvc_host_path("/p", UID, v, &out, &err) == CAIRN_CORRUPT, "no PV name");
        json_decref(v);
    }
}

int main(void)
{
    test_pod();
    test_paths();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_kube_volumes: all passed\n");
    return 0;
}

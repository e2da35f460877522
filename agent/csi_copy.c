/* agent/csi_copy.c — the CSI data mover (see csi_copy.h). */
#define _GNU_SOURCE
#include "csi_copy.h"

#include <ctype.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../catalog/catalog.h"
#include "restore_job.h"

#define SNAP_API "/apis/snapshot.storage.k8s.io/v1"
#define JOB_API "/apis/batch/v1"
#define CONTAINER "copy"
#define LOG_TAIL_LINES 20
#define LOG_TAIL_MAX (16u << 10)
#define CHECK_EVERY 5          /* polls of the Job between looks at its pods and events */
#define MAX_ITEMS 10000        /* objects looked at per list in the GC */
/* labelSelector=app.kubernetes.io/managed-by=cairn,app.kubernetes.io/component=csi-copy */
#define COPY_SELECTOR "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dcairn%2C" \
                      "app.kubernetes.io%2Fcomponent%3D" CAIRN_COPY_COMPONENT
#define OURS_SELECTOR "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dcairn"
#define RBAC_HINT "(the agent's ClusterRole in daemonset/clusterrole.yaml grants it)"

/* ---- configuration ---- */

int cairn_copy_config_from_env(struct cairn_copy_config *c, cairn_err *err)
{
    const char *t = getenv("CAIRN_COPY_TIMEOUT");
    const struct {
        const char *var, *def;
        char *out;
        size_t len;
    } vars[] = {
        {"CAIRN_COPY_IMAGE", "", c->image, sizeof c->image},
        {"CAIRN_COPY_SECRET", CAIRN_RESTORE_SECRET, c->secret, sizeof c->secret},
        {"CAIRN_COPY_CONFIGMAP", CAIRN_RESTORE_CONFIGMAP, c->config_map, sizeof c->config_map},
        {"POD_NAMESPACE", "", c->pod_ns, sizeof c->pod_ns},
        {"POD_NAME", "", c->pod_name, sizeof c->pod_name},
    };
    size_t i;
    memset(c, 0, sizeof *c);
    for (i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i].var);
        if (!v || !*v)
            v = vars[i].def;
        if (strlen(v) >= vars[i].len)
            return cairn_error(err, CAIRN_FAILED, "%s is longer than %zu bytes", vars[i].var,
                               vars[i].len - 1);
        memcpy(vars[i].out, v, strlen(v) + 1);
    }
    if (c->image[0] && (strpbrk(c->image, " \t\n") != NULL))
        return cairn_error(err, CAIRN_FAILED, "CAIRN_COPY_IMAGE '%.80s' is not an image name",
                           c->image);
    if (!cairn_k8s_subdomain_ok(c->secret))
        return cairn_error(err, CAIRN_FAILED, "CAIRN_COPY_SECRET '%.80s' is not a Secret name",
                           c->secret);
    if (!cairn_k8s_subdomain_ok(c->config_map))
        return cairn_error(err, CAIRN_FAILED,
                           "CAIRN_COPY_CONFIGMAP '%.80s' is not a ConfigMap name", c->config_map);
    c->timeout_s = 6 * 3600;
    if (t && *t) {
        const char *p;
        cairn_err e;
        for (p = t; isdigit((unsigned char)*p); p++)
            ;
        if (!*p && p - t <= 9)
            c->timeout_s = strtoll(t, NULL, 10);
        else if (cairn_parse_duration(t, &c->timeout_s, &e) != CAIRN_OK)
            return cairn_error(err, CAIRN_FAILED, "CAIRN_COPY_TIMEOUT: %s", e.msg);
        if (c->timeout_s < 1)
            return cairn_error(err, CAIRN_FAILED, "CAIRN_COPY_TIMEOUT must be at least 1 second");
    }
    return CAIRN_OK;
}

/* ---- the objects ---- */

void cairn_copy_name(const char *pvc, const char *token, char out[64])
{
    /* "cairn-copy-" + pvc + "-" + 8 hex: at most 63 */
    size_t room = 63 - strlen(CAIRN_COPY_PREFIX) - 1 - 8, n, i, o;
    o = (size_t)snprintf(out, 64, "%s", CAIRN_COPY_PREFIX);
    for (i = 0, n = 0; pvc && pvc[i] && n < room; i++, n++)
        out[o++] = pvc[i] == '.' ? '-' : pvc[i];
    while (o > strlen(CAIRN_COPY_PREFIX) && out[o - 1] == '-')
        o--;
    snprintf(out + o, 64 - o, "-%.8s", token);
}

static json_t *copy_labels(const char *name)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "app.kubernetes.io/name", "cairn",
                     "app.kubernetes.io/component", CAIRN_COPY_COMPONENT,
                     "app.kubernetes.io/part-of", "cairn", "app.kubernetes.io/managed-by",
                     "cairn", "cairn.io/copy-job", name);
}

static json_t *copy_annotations(const struct cairn_copy_spec *s)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "cairn.io/pvc", s->pvc, "cairn.io/node", s->node,
                     "cairn.io/volume-snapshot", s->volume_snapshot, "cairn.io/copy-id",
                     s->token, "cairn.io/csi-copy", cairn_csi_copy_name(s->mode));
}

static int spec_check(const struct cairn_copy_spec *s, cairn_err *err)
{
    if (!cairn_k8s_label_ok(s->ns, 63))
        return cairn_error(err, CAIRN_FAILED, "namespace '%.80s' is not a valid namespace name",
                           s->ns ? s->ns : "");
    if (!cairn_k8s_subdomain_ok(s->pvc) || !cairn_k8s_label_ok(s->name, 63))
        return cairn_error(err, CAIRN_FAILED, "PVC name '%.80s' is not a valid name",
                           s->pvc ? s->pvc : "");
    if (!cairn_k8s_subdomain_ok(s->volume_snapshot))
        return cairn_error(err, CAIRN_FAILED, "VolumeSnapshot name '%.80s' is not a valid name",
                           s->volume_snapshot ? s->volume_snapshot : "");
    if (!s->token || strlen(s->token) != CAIRN_COPY_TOKEN_LEN || !s->node || !*s->node ||
        strlen(s->node) > 253 || !s->source)
        return cairn_error(err, CAIRN_FAILED, "a copy needs a token, a node and a source");
    return CAIRN_OK;
}

int cairn_copy_pvc_build(const struct cairn_copy_spec *s, json_t **out, cairn_err *err)
{
    json_t *pvc, *spec, *modes = NULL, *m;
    size_t i;
    int rc;
    *out = NULL;
    if ((rc = spec_check(s, err)) != CAIRN_OK)
        return rc;
    if (!cairn_k8s_quantity_ok(s->size))
        return cairn_error(err, CAIRN_FAILED,
                           "size '%.40s' is not a quantity such as 10Gi or 500Mi",
                           s->size ? s->size : "");
    if (s->storage_class && !cairn_k8s_subdomain_ok(s->storage_class))
        return cairn_error(err, CAIRN_FAILED, "storage class '%.80s' is not a valid name",
                           s->storage_class);
    if (!json_is_array(s->access_modes) || !json_array_size(s->access_modes) ||
        json_array_size(s->access_modes) > 4)
        return cairn_error(err, CAIRN_FAILED, "the source PVC has no spec.accessModes");
    json_array_foreach(s->access_modes, i, m) {
        const char *v = json_string_value(m);
        if (!v || (strcmp(v, "ReadWriteOnce") != 0 && strcmp(v, "ReadOnlyMany") != 0 &&
                   strcmp(v, "ReadWriteMany") != 0 && strcmp(v, "ReadWriteOncePod") != 0))
            return cairn_error(err, CAIRN_FAILED,
                               "the source PVC's access mode '%.40s' is not one of "
                               "ReadWriteOnce, ReadOnlyMany, ReadWriteMany, ReadWriteOncePod",
                               v ? v : "?");
    }
    modes = json_deep_copy(s->access_modes);
    spec = modes ? json_pack("{s:o,s:{s:{s:s}},s:s,s:{s:s,s:s,s:s}}", "accessModes", modes,
                             "resources", "requests", "storage", s->size, "volumeMode",
                             "Filesystem", "dataSource", "apiGroup", "snapshot.storage.k8s.io",
                             "kind", "VolumeSnapshot", "name", s->volume_snapshot)
                 : NULL;
    if (spec && s->storage_class)
        json_object_set_new(spec, "storageClassName", json_string(s->storage_class));
    pvc = spec ? json_pack("{s:s,s:s,s:{s:s,s:s,s:o,s:o},s:o}", "apiVersion", "v1", "kind",
                           "PersistentVolumeClaim", "metadata", "name", s->name, "namespace",
                           s->ns, "labels", copy_labels(s->name), "annotations",
                           copy_annotations(s), "spec", spec)
               : NULL;
    if (!pvc)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    *out = pvc;
    return CAIRN_OK;
}

int cairn_copy_job_build(const struct cairn_copy_spec *s, json_t **out, cairn_err *err)
{
    /* root in the pod reads every file whatever its mode: DAC_OVERRIDE (in the
     * "baseline" Pod Security Standard; DAC_READ_SEARCH is not) */
    static const char *const caps[] = {"DAC_OVERRIDE"};
    struct cairn_k8s_job_spec js;
    const char **args = NULL;
    char path[600], *meta = NULL;
    json_t *lab = NULL, *ann = NULL;
    size_t n = 0, i;
    int rc;

    *out = NULL;
    if ((rc = spec_check(s, err)) != CAIRN_OK)
        return rc;
    if (s->subdir && *s->subdir &&
        (strchr(s->subdir, '/') || strcmp(s->subdir, "..") == 0 || strcmp(s->subdir, ".") == 0 ||
         strlen(s->subdir) > 255))
        return cairn_error(err, CAIRN_FAILED, "'%.80s' is not a directory name of the volume",
                           s->subdir);
    snprintf(path, sizeof path, "%s%s%s", CAIRN_COPY_MOUNT, s->subdir && *s->subdir ? "/" : "",
             s->subdir ? s->subdir : "");
    if (s->n_excludes > 1000 ||
        !(meta = json_dumps(s->meta, JSON_COMPACT | JSON_SORT_KEYS)) ||
        !(args = calloc(12 + 2 * s->n_excludes, sizeof *args))) {
        free(meta);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    args[n++] = "backup";
    args[n++] = path;
    args[n++] = "--source";
    args[n++] = s->source;
    args[n++] = "--consistency";
    args[n++] = s->consistency ? s->consistency : "crash";
    /* a volume restored from a snapshot keeps inodes and times, not the device */
    args[n++] = "--ignore-device";
    args[n++] = "--workers";
    args[n++] = "2";
    args[n++] = "--meta";
    args[n++] = meta;
    for (i = 0; i < s->n_excludes; i++) {
        args[n++] = "--exclude";
        args[n++] = s->excludes[i];
    }
    memset(&js, 0, sizeof js);
    js.ns = s->ns;
    js.name = s->name;
    js.container = CONTAINER;
    js.image = s->image;
    js.args = args;
    js.n_args = n;
    js.volume = "source";
    js.claim = s->name;
    js.mount = CAIRN_COPY_MOUNT;
    js.read_only = 1;
    js.caps = caps;
    js.n_caps = 1;
    js.repo_secret = s->secret;
    js.config_map = s->config_map;
    js.labels = lab = copy_labels(s->name);
    js.annotations = ann = copy_annotations(s);
    js.deadline_s = s->deadline_s;
    js.ttl_s = 86400; /* the agent deletes it; this is for an agent that never comes back */
    js.cpu_request = "100m";
    js.memory_request = "128Mi";
    js.cpu_limit = "2";
    js.memory_limit = "1Gi";
    rc = lab && ann ? cairn_k8s_job_build(&js, out, err)
                    : cairn_error(err, CAIRN_FATAL, "out of memory");
    json_decref(lab);
    json_decref(ann);
    free(args);
    free(meta);
    return rc;
}

/* ---- helpers ---- */

typedef void (*log_fn)(void *arg, int warn, const char *msg);

static void say(log_fn log, void *arg, int warn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void say(log_fn log, void *arg, int warn, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;
    if (!log)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log(arg, warn, msg);
}
#define cplog(j, warn, ...) say((j)->log, (j)->log_arg, warn, __VA_ARGS__)

static const char *meta_str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(json_object_get(o, "metadata"), key));
}

static const char *ann_str(const json_t *o, const char *key)
{
    return json_string_value(
        json_object_get(json_object_get(json_object_get(o, "metadata"), "annotations"), key));
}

/* What a 401/403 means here, appended to err. */
static int api_error(cairn_kube *k, cairn_err *err, const char *verb, const char *resource,
                     const char *ns, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int api_error(cairn_kube *k, cairn_err *err, const char *verb, const char *resource,
                     const char *ns, const char *fmt, ...)
{
    char what[600];
    va_list ap;
    long st = cairn_kube_last_status(k);
    int rc = err->code;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (st == 403)
        return cairn_error(err, CAIRN_FAILED,
                           "%s: the agent is not allowed to %s %s in namespace '%s' %s", what,
                           verb, resource, ns, RBAC_HINT);
    cairn_error_prefix(err, "%s", what);
    return rc < 0 ? rc : CAIRN_FAILED;
}

static int post_json(cairn_kube *k, const char *path, json_t *obj, json_t **out, cairn_err *err)
{
    char *body = json_dumps(obj, JSON_COMPACT);
    int rc;
    if (!body)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    rc = cairn_kube_request(k, "POST", path, "application/json", body, strlen(body), out, err);
    free(body);
    return rc;
}

/* DELETE with propagationPolicy Background (a Job's pods go with it) and,
 * when uid is not NULL, that uid as a precondition (a namesake made since
 * the object was listed stays). 0 when gone (also 404), 1 when the
 * precondition failed (409: left alone), -1 with err. */
static int delete_obj(cairn_kube *k, const char *path, const char *uid, cairn_err *err)
{
    json_t *o = json_pack("{s:s,s:s,s:s}", "apiVersion", "v1", "kind", "DeleteOptions",
                          "propagationPolicy", "Background");
    char *body;
    int rc;
    if (o && uid)
        json_object_set_new(o, "preconditions", json_pack("{s:s}", "uid", uid));
    body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!body) {
        cairn_error(err, CAIRN_FATAL, "out of memory");
        return -1;
    }
    rc = cairn_kube_request(k, "DELETE", path, "application/json", body, strlen(body), NULL,
                            err);
    free(body);
    if (rc == CAIRN_EXISTS) /* 409: the uid precondition failed: not that object */
        return 1;
    return rc == CAIRN_OK || rc == CAIRN_NOTFOUND ? 0 : -1;
}

/* ---- finding the copy in the repository ---- */

struct find {
    const char *token;      /* by snapshot.copy.id, or */
    const char *vs;         /* by snapshot.volume_snapshot (kept copies) */
    struct cairn_backup_result *res;
    int found;
};

static int find_row(void *arg, const struct cairn_snaprow *row)
{
    struct find *f = arg;
    json_t *m = json_loads(row->manifest ? row->manifest : "", 0, NULL), *s, *c;
    const char *id, *vs;
    int hit;
    s = json_object_get(m, "snapshot");
    c = json_object_get(s, "copy");
    id = json_string_value(json_object_get(c, "id"));
    vs = json_string_value(json_object_get(s, "volume_snapshot"));
    hit = f->token ? id && strcmp(id, f->token) == 0
                   : c && vs && strcmp(vs, f->vs) == 0 &&
                         json_is_true(json_object_get(c, "volume_snapshot_kept"));
    if (hit && f->res) {
        struct cairn_backup_result *r = f->res;
        int64_t t0 = json_integer_value(json_object_get(m, "time_ns"));
        int64_t t1 = json_integer_value(json_object_get(m, "end_ns"));
        memset(r, 0, sizeof *r);
        snprintf(r->id, sizeof r->id, "%s", row->id);
        snprintf(r->parent, sizeof r->parent, "%s", row->parent ? row->parent : "");
        r->files = row->files;
        r->bytes_read = row->bytes_read;
        r->bytes_new = row->bytes_new;
        r->bytes_stored = row->bytes_stored;
        r->total_size = row->total_size;
        r->partial = row->partial;
        r->errors = (uint64_t)json_array_size(json_object_get(m, "errors"));
        r->duration = t1 > t0 && t0 > 0 ? (double)(t1 - t0) / 1e9 : 0;
    }
    json_decref(m);
    if (hit)
        f->found = 1;
    return hit ? 1 : 0;
}

/* 1 found, 0 not, or an error. The catalog is brought up to date first. */
static int find_copy(cairn_repo *repo, const char *source, struct find *f, cairn_err *err)
{
    cairn_catalog *cat;
    int rc;
    if ((rc = cairn_repo_sync(repo, 0, err)) != CAIRN_OK)
        return cairn_error_prefix(err, "cannot read the repository's new snapshots");
    if (!(cat = cairn_repo_catalog(repo)))
        return cairn_error(err, CAIRN_FAILED, "the repository has no catalog");
    f->found = 0;
    rc = cairn_catalog_list_snapshots(cat, source, find_row, f, err);
    if (rc < 0)
        return rc;
    return f->found;
}

/* ---- the Job's pods: stuck, refused, the log ---- */

/* The newest pod of the Job (json_decref), or NULL; *npods = how many (-1:
 * they cannot be listed). A stuck one's reason goes to why. */
static json_t *job_pod(const struct cairn_copy_job *j, const char *name, int *npods, int *stuck,
                       char *why, size_t whylen)
{
    char path[600];
    json_t *list = NULL, *items, *pod, *newest = NULL;
    const char *newest_ts = "";
    cairn_err e;
    size_t i;
    *npods = -1;
    *stuck = 0;
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/pods?labelSelector=job-name%%3D%s", j->ns,
             name);
    if (cairn_kube_get_json(j->kube, path, &list, &e) != CAIRN_OK)
        return NULL;
    items = json_object_get(list, "items");
    *npods = (int)json_array_size(items);
    json_array_foreach(items, i, pod) {
        const char *ts = meta_str(pod, "creationTimestamp");
        if (!*stuck && cairn_job_pod_stuck(pod, why, whylen))
            *stuck = 1;
        if (!newest || (ts && strcmp(ts, newest_ts) > 0)) {
            newest = pod;
            newest_ts = ts ? ts : "";
        }
    }
    if (newest)
        json_incref(newest);
    json_decref(list);
    return newest;
}

/* The last lines of the Job's pod's log, to the agent's log; its last
 * non-empty line to last. */
static void log_tail(const struct cairn_copy_job *j, const char *name, char *last, size_t lastlen)
{
    char path[700], why[256];
    int npods, stuck;
    json_t *pod = job_pod(j, name, &npods, &stuck, why, sizeof why);
    cairn_buf b;
    cairn_err e;
    last[0] = 0;
    if (!pod || !meta_str(pod, "name")) {
        json_decref(pod);
        return;
    }
    cairn_buf_init(&b, LOG_TAIL_MAX + 1);
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/pods/%s/log?container=" CONTAINER
             "&tailLines=%d", j->ns, meta_str(pod, "name"), LOG_TAIL_LINES);
    if (cairn_kube_get_text(j->kube, path, LOG_TAIL_MAX, &b, &e) == CAIRN_OK && b.len) {
        char *s = (char *)cairn_buf_cstr(&b), *nl, *p;
        for (; s && *s; s = nl + 1) {
            nl = strchr(s, '\n');
            if (nl)
                *nl = 0;
            for (p = s; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                    *p = ' ';
            if (*s) {
                cplog(j, 1, "pvc %s/%s: copy Job %s: | %.400s", j->ns, j->pvc, name, s);
                snprintf(last, lastlen, "%s", s);
            }
            if (!nl)
                break;
        }
    } else {
        cplog(j, 1, "pvc %s/%s: cannot read the log of pod %s/%s of the copy Job", j->ns, j->pvc,
             j->ns, meta_str(pod, "name"));
    }
    cairn_buf_free(&b);
    json_decref(pod);
}

/* A FailedCreate event about the Job: 1 and the message in why. */
static int failed_create(const struct cairn_copy_job *j, const char *name, const char *uid,
                         char *why, size_t whylen)
{
    char path[600];
    json_t *list = NULL;
    cairn_err e;
    int found;
    snprintf(path, sizeof path,
             "/api/v1/namespaces/%s/events?fieldSelector=involvedObject.kind%%3DJob%%2C"
             "involvedObject.name%%3D%s",
             j->ns, name);
    if (cairn_kube_get_json(j->kube, path, &list, &e) != CAIRN_OK)
        return 0;
    found = cairn_job_failed_create(list, name, uid, why, whylen, NULL);
    json_decref(list);
    return found;
}

/* ---- the copy ---- */

/* The image of the agent's own pod: container "agent", else the first. */
static int own_image(const struct cairn_copy_job *j, char *out, size_t outlen, cairn_err *err)
{
    char path[400];
    json_t *pod = NULL, *cs, *c, *pick = NULL;
    const char *img;
    size_t i;
    int rc;
    if (j->cfg->image[0]) {
        snprintf(out, outlen, "%s", j->cfg->image);
        return CAIRN_OK;
    }
    if (!j->cfg->pod_ns[0] || !j->cfg->pod_name[0])
        return cairn_error(err, CAIRN_FAILED,
                           "the copy Job's image is unknown: set CAIRN_COPY_IMAGE, or POD_NAME "
                           "and POD_NAMESPACE (the DaemonSet sets them) so the agent reads its "
                           "own");
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/pods/%s", j->cfg->pod_ns,
             j->cfg->pod_name);
    if ((rc = cairn_kube_get_json(j->kube, path, &pod, err)) != CAIRN_OK)
        return cairn_error_prefix(err, "cannot read the agent's pod %s/%s for the copy Job's "
                                  "image (or set CAIRN_COPY_IMAGE)",
                                  j->cfg->pod_ns, j->cfg->pod_name);
    cs = json_object_get(json_object_get(pod, "spec"), "containers");
    json_array_foreach(cs, i, c) {
        const char *n = json_string_value(json_object_get(c, "name"));
        if (!pick || (n && strcmp(n, "agent") == 0))
            pick = c;
    }
    img = json_string_value(json_object_get(pick, "image"));
    if (!img || !*img || strlen(img) >= outlen) {
        json_decref(pod);
        return cairn_error(err, CAIRN_FAILED, "the agent's pod %s/%s names no container image "
                           "(set CAIRN_COPY_IMAGE)", j->cfg->pod_ns, j->cfg->pod_name);
    }
    snprintf(out, outlen, "%s", img);
    json_decref(pod);
    return CAIRN_OK;
}

/* The manifest sections for the Job: the caller's, with the snapshot
 * section saying this is a copy. */
static json_t *copy_meta(const struct cairn_copy_job *j, const char *name, const char *token)
{
    json_t *m = json_deep_copy(j->extra), *s, *c;
    if (!m)
        return NULL;
    if (!(s = json_object_get(m, "snapshot"))) {
        json_object_set_new(m, "snapshot", json_object());
        s = json_object_get(m, "snapshot");
    }
    c = json_pack("{s:s,s:s,s:s,s:b}", "id", token, "job", name, "pvc", name,
                  "volume_snapshot_kept", j->mode == CAIRN_CSI_COPY_KEEP);
    if (!s || !c) {
        json_decref(c);
        json_decref(m);
        return NULL;
    }
    json_object_set_new(s, "data", json_string("files"));
    json_object_set_new(s, "copy", c);
    return m;
}

static void cleanup(const struct cairn_copy_job *j, const char *name, int job_made, int pvc_made)
{
    char path[600];
    cairn_err e;
    if (job_made) {
        snprintf(path, sizeof path, JOB_API "/namespaces/%s/jobs/%s", j->ns, name);
        if (delete_obj(j->kube, path, NULL, &e) != 0) {
            cplog(j, 1, "pvc %s/%s: cannot delete the copy Job %s/%s: %s (deleted later)", j->ns,
                 j->pvc, j->ns, name, e.msg);
            if (j->leftovers)
                *j->leftovers = 1;
        } else {
            cplog(j, 0, "pvc %s/%s: deleted the copy Job %s/%s", j->ns, j->pvc, j->ns, name);
        }
    }
    if (pvc_made) {
        snprintf(path, sizeof path, "/api/v1/namespaces/%s/persistentvolumeclaims/%s", j->ns,
                 name);
        if (delete_obj(j->kube, path, NULL, &e) != 0) {
            cplog(j, 1, "pvc %s/%s: cannot delete the temporary PVC %s/%s: %s (deleted later)",
                 j->ns, j->pvc, j->ns, name, e.msg);
            if (j->leftovers)
                *j->leftovers = 1;
        } else {
            cplog(j, 0, "pvc %s/%s: deleted the temporary PVC %s/%s", j->ns, j->pvc, j->ns, name);
        }
    }
}

/* Follows the Job: CAIRN_OK when it completed (or failed after writing a
 * partial snapshot, found in f), else an error. */
static int follow(const struct cairn_copy_job *j, const char *name, const char *uid,
                  struct find *f, cairn_err *err)
{
    char path[600], why[1024], last[512];
    double t0 = cairn_mono();
    unsigned polls = 0;
    int rc, warned = 0;
    snprintf(path, sizeof path, JOB_API "/namespaces/%s/jobs/%s", j->ns, name);
    for (;;) {
        json_t *job = NULL;
        enum cairn_job_state st;
        if (j->cancel && j->cancel(j->cancel_arg))
            return cairn_error(err, CAIRN_FAILED, "backup cancelled: the agent is stopping "
                               "(the copy Job %s/%s is deleted)", j->ns, name);
        if (cairn_mono() - t0 > (double)j->cfg->timeout_s)
            return cairn_error(err, CAIRN_FAILED,
                               "the copy Job %s/%s did not complete within %lld s "
                               "(CAIRN_COPY_TIMEOUT): deleted",
                               j->ns, name, (long long)j->cfg->timeout_s);
        poll(NULL, 0, (int)j->poll_ms); /* a signal only ends the wait early */
        rc = cairn_kube_get_json(j->kube, path, &job, err);
        if (rc == CAIRN_NOTFOUND)
            return cairn_error(err, CAIRN_FAILED,
                               "the copy Job %s/%s was deleted before it finished", j->ns, name);
        if (rc != CAIRN_OK) {
            long s = cairn_kube_last_status(j->kube);
            if (s == 401 || s == 403)
                return api_error(j->kube, err, "get", "jobs.batch", j->ns,
                                 "cannot read the copy Job %s/%s", j->ns, name);
            if (!warned++)
                cplog(j, 1, "pvc %s/%s: cannot read the copy Job %s/%s (retrying): %s", j->ns,
                     j->pvc, j->ns, name, err->msg);
            continue;
        }
        st = cairn_job_state(job, why, sizeof why);
        json_decref(job);
        if (st == CAIRN_JOB_SUCCEEDED)
            return CAIRN_OK;
        if (st == CAIRN_JOB_FAILED) {
            log_tail(j, name, last, sizeof last);
            /* a partial backup (files unreadable) fails the pod but is written */
            rc = find_copy(j->repo, j->source, f, err);
            if (rc == 1) {
                cplog(j, 1, "pvc %s/%s: the copy Job %s/%s failed (%s) but wrote snapshot %.12s",
                     j->ns, j->pvc, j->ns, name, why, f->res->id);
                return CAIRN_OK;
            }
            return cairn_error(err, CAIRN_FAILED, "the copy Job %s/%s failed%s%.200s%s%.300s",
                               j->ns, name, why[0] ? ": " : "", why,
                               last[0] ? "; its log ends: " : "", last);
        }
        if (++polls % CHECK_EVERY == 1) {
            int npods, stuck;
            json_t *pod = job_pod(j, name, &npods, &stuck, why, sizeof why);
            json_decref(pod);
            if (stuck)
                return cairn_error(err, CAIRN_FAILED,
                                   "the pod of the copy Job %s/%s cannot start: %.300s%s", j->ns,
                                   name, why,
                                   strncmp(why, "CreateContainerConfigError", 26) == 0
                                       ? " (the repository Secret and ConfigMap must exist in "
                                         "the PVC's namespace: docs/agent.md)"
                                       : "");
            if (npods == 0 && failed_create(j, name, uid, why, sizeof why))
                return cairn_error(err, CAIRN_FAILED,
                                   "the copy Job %s/%s cannot create its pod: %.500s", j->ns,
                                   name, why);
        }
    }
}

int cairn_csi_copy_run(const struct cairn_copy_job *j, struct cairn_backup_result *res,
                   cairn_err *err)
{
    struct cairn_copy_spec s;
    struct find f;
    char token[CAIRN_COPY_TOKEN_LEN + 1], name[64], image[513], path[600];
    uint8_t rnd[CAIRN_COPY_TOKEN_LEN / 2];
    json_t *src = NULL, *obj = NULL, *created = NULL, *meta = NULL;
    const char *size, *sc, *mode, *uid;
    int rc, pvc_made = 0, job_made = 0;
    char *job_uid = NULL;

    memset(res, 0, sizeof *res);
    cairn_random(rnd, sizeof rnd);
    cairn_hex(rnd, sizeof rnd, token);
    cairn_copy_name(j->pvc, token, name);

    /* the source PVC: class, access modes, size */
    if ((rc = cairn_kube_get_pvc(j->kube, j->ns, j->pvc, &src, err)) != CAIRN_OK) {
        cairn_error_prefix(err, "cannot read PVC %s/%s for the copy", j->ns, j->pvc);
        goto out;
    }
    mode = json_string_value(json_object_get(json_object_get(src, "spec"), "volumeMode"));
    if (mode && strcmp(mode, "Block") == 0) {
        rc = cairn_error(err, CAIRN_FAILED,
                         "cairn.io/csi-copy: PVC %s/%s is a raw block volume (volumeMode "
                         "Block): only filesystem volumes can be copied as files",
                         j->ns, j->pvc);
        goto out;
    }
    size = json_string_value(json_object_get(json_object_get(j->vs, "status"), "restoreSize"));
    if (!size || !cairn_k8s_quantity_ok(size))
        size = json_string_value(json_object_get(
            json_object_get(json_object_get(json_object_get(src, "spec"), "resources"),
                            "requests"),
            "storage"));
    if (!size || !cairn_k8s_quantity_ok(size))
        size = json_string_value(json_object_get(
            json_object_get(json_object_get(src, "status"), "capacity"), "storage"));
    if (!size || !cairn_k8s_quantity_ok(size)) {
        rc = cairn_error(err, CAIRN_FAILED,
                         "cairn.io/csi-copy: no size for the temporary PVC: the "
                         "VolumeSnapshot '%s' has no status.restoreSize and PVC %s/%s no "
                         "spec.resources.requests.storage",
                         j->volume_snapshot, j->ns, j->pvc);
        goto out;
    }
    sc = json_string_value(json_object_get(json_object_get(src, "spec"), "storageClassName"));
    if ((rc = own_image(j, image, sizeof image, err)) != CAIRN_OK ||
        !(meta = copy_meta(j, name, token))) {
        if (rc == CAIRN_OK)
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    memset(&s, 0, sizeof s);
    s.ns = j->ns;
    s.pvc = j->pvc;
    s.node = j->node;
    s.name = name;
    s.token = token;
    s.volume_snapshot = j->volume_snapshot;
    s.mode = j->mode;
    s.storage_class = sc && *sc ? sc : NULL;
    s.access_modes = json_object_get(json_object_get(src, "spec"), "accessModes");
    s.size = size;
    s.image = image;
    s.secret = j->cfg->secret;
    s.config_map = j->cfg->config_map;
    s.subdir = j->subdir;
    s.source = j->source;
    s.consistency = j->consistency;
    s.excludes = j->excludes;
    s.n_excludes = j->n_excludes;
    s.meta = meta;
    s.deadline_s = j->cfg->timeout_s;

    /* 1. the temporary PVC */
    if ((rc = cairn_copy_pvc_build(&s, &obj, err)) != CAIRN_OK)
        goto out;
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/persistentvolumeclaims", j->ns);
    rc = post_json(j->kube, path, obj, NULL, err);
    json_decref(obj);
    obj = NULL;
    if (rc != CAIRN_OK) {
        rc = api_error(j->kube, err, "create", "persistentvolumeclaims", j->ns,
                       "cannot create the temporary PVC %s/%s", j->ns, name);
        goto out;
    }
    pvc_made = 1;
    cplog(j, 0, "pvc %s/%s: created the temporary PVC %s/%s from VolumeSnapshot '%s' (%s%s%s)",
         j->ns, j->pvc, j->ns, name, j->volume_snapshot, size, s.storage_class ? ", class " : "",
         s.storage_class ? s.storage_class : "");

    /* 2. the Job */
    if ((rc = cairn_copy_job_build(&s, &obj, err)) != CAIRN_OK)
        goto out;
    snprintf(path, sizeof path, JOB_API "/namespaces/%s/jobs", j->ns);
    rc = post_json(j->kube, path, obj, &created, err);
    json_decref(obj);
    obj = NULL;
    if (rc != CAIRN_OK) {
        rc = api_error(j->kube, err, "create", "jobs.batch", j->ns,
                       "cannot create the copy Job %s/%s", j->ns, name);
        goto out;
    }
    job_made = 1;
    uid = meta_str(created, "uid");
    if (uid && !(job_uid = strdup(uid))) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    cplog(j, 0, "pvc %s/%s: created the copy Job %s/%s (image %s, copy id %s)", j->ns, j->pvc,
         j->ns, name, image, token);

    /* 3. wait, then find what it wrote */
    memset(&f, 0, sizeof f);
    f.token = token;
    f.res = res;
    if ((rc = follow(j, name, job_uid, &f, err)) != CAIRN_OK)
        goto out;
    if (!f.found) {
        rc = find_copy(j->repo, j->source, &f, err);
        if (rc == 0)
            rc = cairn_error(err, CAIRN_FAILED,
                             "the copy Job %s/%s completed but the repository holds no "
                             "snapshot of %s with copy id %s (does the Secret '%s' of "
                             "namespace '%s' name this repository?)",
                             j->ns, name, j->source, token, j->cfg->secret, j->ns);
        if (rc < 0)
            goto out;
    }
    rc = CAIRN_OK;
    cplog(j, 0, "pvc %s/%s: the copy Job %s/%s wrote snapshot %.12s", j->ns, j->pvc, j->ns, name,
         res->id);
out:
    cleanup(j, name, job_made, pvc_made);
    json_decref(src);
    json_decref(obj);
    json_decref(created);
    json_decref(meta);
    free(job_uid);
    return rc;
}

/* ---- leftovers ---- */

struct gc_ctx {
    cairn_kube *k;
    cairn_repo *repo;
    const char *node;
    void (*log)(void *arg, int warn, const char *msg);
    void *log_arg;
    size_t deleted;
    int failed;
    cairn_err first;
};

#define gc_log(g, warn, ...) say((g)->log, (g)->log_arg, warn, __VA_ARGS__)

static void gc_fail(struct gc_ctx *g, const cairn_err *e)
{
    if (!g->failed++)
        g->first = *e;
}

/* Deletes the listed objects of our node; what = "copy Job" etc. */
static void gc_list(struct gc_ctx *g, const char *collection, const char *base, const char *what,
                    int vs)
{
    char path[700];
    json_t *list = NULL, *it;
    cairn_err e;
    size_t i;
    snprintf(path, sizeof path, "%s?%s", collection, vs ? OURS_SELECTOR : COPY_SELECTOR);
    if (cairn_kube_get_json(g->k, path, &list, &e) != CAIRN_OK) {
        if (cairn_kube_last_status(g->k) == 403)
            cairn_error_prefix(&e, "cannot list the %ss of earlier copies %s", what, RBAC_HINT);
        else
            cairn_error_prefix(&e, "cannot list the %ss of earlier copies", what);
        gc_fail(g, &e);
        return;
    }
    json_array_foreach(json_object_get(list, "items"), i, it) {
        const char *ns = meta_str(it, "namespace"), *name = meta_str(it, "name");
        const char *node = ann_str(it, "cairn.io/node"), *mode = ann_str(it, "cairn.io/csi-copy");
        int rc;
        if (i >= MAX_ITEMS)
            break;
        if (!ns || !name || !node || strcmp(node, g->node) != 0 ||
            !cairn_k8s_label_ok(ns, 63) || !cairn_k8s_subdomain_ok(name))
            continue;
        if (vs) {
            /* only the VolumeSnapshots of copies; kept ones while a record
             * references them */
            const char *pvc = ann_str(it, "cairn.io/pvc");
            if (!mode || (strcmp(mode, "true") != 0 && strcmp(mode, "keep") != 0))
                continue;
            if (strcmp(mode, "keep") == 0) {
                char source[400];
                struct find f;
                if (!pvc)
                    continue;
                memset(&f, 0, sizeof f);
                f.vs = name;
                snprintf(source, sizeof source, "k8s:%s/%s", ns, pvc);
                rc = find_copy(g->repo, source, &f, &e);
                if (rc != 0) {
                    if (rc < 0)
                        gc_fail(g, &e);
                    continue; /* referenced (or unknown): kept */
                }
            }
        }
        snprintf(path, sizeof path, "%s/namespaces/%s/%s/%s", base, ns,
                 vs ? "volumesnapshots" : strstr(collection, "jobs") ? "jobs"
                                                                     : "persistentvolumeclaims",
                 name);
        rc = delete_obj(g->k, path, meta_str(it, "uid"), &e);
        if (rc < 0) {
            cairn_error_prefix(&e, "cannot delete the %s %s/%s", what, ns, name);
            gc_fail(g, &e);
            continue;
        }
        if (rc > 0)
            continue; /* replaced since the list: not the leftover */
        g->deleted++;
        gc_log(g, 0, "deleted the %s %s/%s left by an earlier copy on node '%s'", what, ns,
               name, g->node);
    }
    json_decref(list);
}

int cairn_copy_gc(cairn_kube *k, cairn_repo *repo, const char *node,
                  void (*log)(void *arg, int warn, const char *msg), void *log_arg,
                  size_t *deleted, cairn_err *err)
{
    struct gc_ctx g;
    memset(&g, 0, sizeof g);
    g.k = k;
    g.repo = repo;
    g.node = node;
    g.log = log;
    g.log_arg = log_arg;
    gc_list(&g, JOB_API "/jobs", JOB_API, "copy Job", 0);
    gc_list(&g, "/api/v1/persistentvolumeclaims", "/api/v1", "temporary PVC", 0);
    gc_list(&g, SNAP_API "/volumesnapshots", SNAP_API, "VolumeSnapshot", 1);
    if (deleted)
        *deleted = g.deleted;
    if (g.failed) {
        *err = g.first;
        return g.first.code < 0 ? g.first.code : CAIRN_FAILED;
    }
    return CAIRN_OK;
}

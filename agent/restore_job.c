/* agent/restore_job.c — the PVC and Job of `cairn restore-pvc` (see
 * restore_job.h). Keep the Job's repository wiring in step with
 * daemonset/daemonset.yaml. */
#include "restore_job.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define SECRET_DIR "/etc/cairn/secret"
#define STATE_DIR "/var/lib/cairn"

int cairn_k8s_label_ok(const char *s, size_t max)
{
    size_t i, n;
    if (!s || !(n = strlen(s)) || n > max)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(islower(c) || isdigit(c) || (c == '-' && i > 0 && i < n - 1)))
            return 0;
    }
    return 1;
}

int cairn_k8s_subdomain_ok(const char *s)
{
    char part[254];
    const char *p, *dot;
    if (!s || !*s || strlen(s) > 253)
        return 0;
    for (p = s;; p = dot + 1) {
        size_t n;
        dot = strchr(p, '.');
        n = dot ? (size_t)(dot - p) : strlen(p);
        if (n == 0 || n > 63)
            return 0;
        memcpy(part, p, n);
        part[n] = 0;
        if (!cairn_k8s_label_ok(part, 63))
            return 0;
        if (!dot)
            return 1;
    }
}

int cairn_k8s_quantity_ok(const char *s)
{
    static const char *const suffixes[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
                                           "k", "M", "G", "T", "P", "E"};
    const char *p = s;
    size_t i, digits = 0;
    if (!s || strlen(s) > 32)
        return 0;
    while (isdigit((unsigned char)*p)) {
        p++;
        digits++;
    }
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) {
            p++;
            digits++;
        }
    }
    if (!digits)
        return 0;
    for (i = 0; i < sizeof suffixes / sizeof *suffixes; i++)
        if (strcmp(p, suffixes[i]) == 0)
            return 1;
    return 0;
}

static json_t *labels(const char *pvc)
{
    return json_pack("{s:s,s:s,s:s,s:s}", "app.kubernetes.io/name", "cairn",
                     "app.kubernetes.io/component", "restore", "app.kubernetes.io/part-of",
                     "cairn", "cairn.io/restore-pvc", pvc);
}

/* name, value env entry */
static json_t *env_value(const char *name, const char *value)
{
    return json_pack("{s:s,s:s}", "name", name, "value", value);
}

int cairn_k8s_job_build(const struct cairn_k8s_job_spec *s, json_t **out, cairn_err *err)
{
    const char *secret = s->repo_secret ? s->repo_secret : CAIRN_RESTORE_SECRET;
    const char *cm = s->config_map ? s->config_map : CAIRN_RESTORE_CONFIGMAP;
    json_t *job, *env, *container, *spec, *args, *caps, *md, *mount, *claim;
    size_t i;

    *out = NULL;
    if (!cairn_k8s_label_ok(s->ns, 63))
        return cairn_error(err, CAIRN_FAILED, "namespace '%.80s' is not a valid namespace name",
                           s->ns ? s->ns : "");
    if (!cairn_k8s_subdomain_ok(s->claim))
        return cairn_error(err, CAIRN_FAILED, "PVC name '%.80s' is not a valid name",
                           s->claim ? s->claim : "");
    if (!cairn_k8s_subdomain_ok(secret))
        return cairn_error(err, CAIRN_FAILED, "Secret name '%.80s' is not a valid name", secret);
    if (!cairn_k8s_subdomain_ok(cm))
        return cairn_error(err, CAIRN_FAILED, "ConfigMap name '%.80s' is not a valid name", cm);
    if (!s->image || !*s->image || strlen(s->image) > 512 || strpbrk(s->image, " \t\n"))
        return cairn_error(err, CAIRN_FAILED, "image '%.80s' is not a container image name",
                           s->image ? s->image : "");
    if (s->deadline_s < 0)
        return cairn_error(err, CAIRN_FAILED, "the Job's deadline must not be negative");
    if ((!s->name) == (!s->generate_name) || !s->container || !s->mount || !s->labels)
        return cairn_error(err, CAIRN_FAILED, "a Job needs exactly one of name and generateName, "
                           "a container name, a mount path and labels");

    args = json_array();
    caps = json_array();
    for (i = 0; args && i < s->n_args; i++)
        json_array_append_new(args, json_string(s->args[i]));
    for (i = 0; caps && i < s->n_caps; i++)
        json_array_append_new(caps, json_string(s->caps[i]));
    env = json_pack("[{s:s,s:{s:{s:s,s:s}}},o,o,o,o]", "name", "CAIRN_REPO", "valueFrom",
                    "secretKeyRef", "name", secret, "key", "CAIRN_REPO",
                    env_value("AWS_ACCESS_KEY_ID_FILE", SECRET_DIR "/AWS_ACCESS_KEY_ID"),
                    env_value("AWS_SECRET_ACCESS_KEY_FILE", SECRET_DIR "/AWS_SECRET_ACCESS_KEY"),
                    env_value("CAIRN_PASSWORD_FILE", SECRET_DIR "/CAIRN_PASSWORD"),
                    env_value("CAIRN_CATALOG", STATE_DIR "/catalog.db"));
    mount = json_pack("{s:s,s:s}", "name", s->volume, "mountPath", s->mount);
    if (mount && s->read_only)
        json_object_set_new(mount, "readOnly", json_true());
    container = args && caps && env && mount ? json_pack(
        "{s:s,s:s,s:s,s:o,s:[{s:{s:s,s:b}}],s:o,"
        "s:[o,{s:s,s:s,s:b},{s:s,s:s},{s:s,s:s}],"
        "s:{s:{s:s,s:s},s:{s:s,s:s}},"
        "s:{s:b,s:b,s:{s:[s],s:o}}}",
        "name", s->container, "image", s->image, "imagePullPolicy", "IfNotPresent", "args",
        args, "envFrom", "configMapRef", "name", cm, "optional", 1, "env", env, "volumeMounts",
        mount, "name", "repository-secret", "mountPath", SECRET_DIR, "readOnly", 1, "name",
        "cairn-state", "mountPath", STATE_DIR, "name", "tmp", "mountPath", "/tmp", "resources",
        "requests", "cpu", s->cpu_request, "memory", s->memory_request, "limits", "cpu",
        s->cpu_limit, "memory", s->memory_limit, "securityContext", "allowPrivilegeEscalation",
        0, "readOnlyRootFilesystem", 1, "capabilities", "drop", "ALL", "add", caps)
        : NULL;
    if (!container) {
        if (!args || !caps || !env || !mount) {
            json_decref(args);
            json_decref(caps);
            json_decref(env);
            json_decref(mount);
        }
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    claim = json_pack("{s:s}", "claimName", s->claim);
    if (claim && s->read_only)
        json_object_set_new(claim, "readOnly", json_true());
    spec = claim ? json_pack("{s:i,s:i,s:{s:{s:O},s:{s:s,s:b,s:[o],s:[{s:s,s:o},"
                             "{s:s,s:{s:s,s:i}},{s:s,s:{}},{s:s,s:{s:s}}]}}}",
                             "backoffLimit", 0, "ttlSecondsAfterFinished", (int)s->ttl_s,
                             "template", "metadata", "labels", s->labels, "spec",
                             "restartPolicy", "Never", "automountServiceAccountToken", 0,
                             "containers", container, "volumes", "name", s->volume,
                             "persistentVolumeClaim", claim, "name", "repository-secret",
                             "secret", "secretName", secret, "defaultMode", 0400, "name",
                             "cairn-state", "emptyDir", "name", "tmp", "emptyDir", "sizeLimit",
                             "64Mi")
                 : NULL;
    if (!claim)
        json_decref(container);
    if (spec) /* the baseline Pod Security Standard, and the runtime's seccomp filter */
        json_object_set_new(json_object_get(json_object_get(spec, "template"), "spec"),
                            "securityContext",
                            json_pack("{s:{s:s}}", "seccompProfile", "type", "RuntimeDefault"));
    if (spec && s->deadline_s > 0)
        json_object_set_new(spec, "activeDeadlineSeconds", json_integer(s->deadline_s));
    md = spec ? json_pack("{s:s,s:s,s:O}", s->name ? "name" : "generateName",
                          s->name ? s->name : s->generate_name, "namespace", s->ns, "labels",
                          s->labels)
              : NULL;
    if (md && s->annotations)
        json_object_set(md, "annotations", s->annotations);
    job = md ? json_pack("{s:s,s:s,s:o,s:o}", "apiVersion", "batch/v1", "kind", "Job",
                         "metadata", md, "spec", spec)
             : NULL;
    if (!job) {
        if (!md)
            json_decref(spec);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    *out = job;
    return CAIRN_OK;
}

int cairn_restore_job_build(const struct cairn_restore_job_spec *s, json_t **out,
                            cairn_err *err)
{
    static const char *const caps[] = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"};
    struct cairn_k8s_job_spec js;
    const char *args[5];
    char prefix[64];
    json_t *lab, *ann;
    size_t n;
    int rc;

    *out = NULL;
    if (!s->snapshot || !*s->snapshot || strlen(s->snapshot) > CAIRN_HEX_LEN ||
        (strspn(s->snapshot, "0123456789abcdef") != strlen(s->snapshot) &&
         strcmp(s->snapshot, "latest") != 0))
        return cairn_error(err, CAIRN_FAILED,
                           "snapshot '%.80s' is not a snapshot id, id prefix (hex, as "
                           "'cairn snapshots' prints it) or 'latest'",
                           s->snapshot ? s->snapshot : "");
    if (!cairn_k8s_label_ok(s->ns, 63))
        return cairn_error(err, CAIRN_FAILED, "namespace '%.80s' is not a valid namespace name",
                           s->ns ? s->ns : "");
    if (!cairn_k8s_subdomain_ok(s->pvc))
        return cairn_error(err, CAIRN_FAILED, "PVC name '%.80s' is not a valid name",
                           s->pvc ? s->pvc : "");

    /* Job names end up in the job-name label of its pods: at most 63 characters,
     * of which generateName's random suffix takes 5. */
    n = strlen(s->pvc);
    if (n > 63 - 5 - 1 - strlen(CAIRN_RESTORE_JOB_PREFIX))
        n = 63 - 5 - 1 - strlen(CAIRN_RESTORE_JOB_PREFIX);
    snprintf(prefix, sizeof prefix, "%s%.*s", CAIRN_RESTORE_JOB_PREFIX, (int)n, s->pvc);
    n = strlen(prefix);
    while (n && (prefix[n - 1] == '.' || prefix[n - 1] == '-'))
        prefix[--n] = 0;
    for (n = 0; prefix[n]; n++)
        if (prefix[n] == '.')
            prefix[n] = '-';
    strncat(prefix, "-", sizeof prefix - strlen(prefix) - 1);

    args[0] = "restore";
    args[1] = s->snapshot;
    args[2] = "--target";
    args[3] = CAIRN_RESTORE_MOUNT;
    args[4] = "--overwrite";
    memset(&js, 0, sizeof js);
    js.ns = s->ns;
    js.generate_name = prefix;
    js.container = "restore";
    js.image = s->image;
    js.args = args;
    js.n_args = 5;
    js.volume = "target";
    js.claim = s->pvc;
    js.mount = CAIRN_RESTORE_MOUNT;
    js.caps = caps;
    js.n_caps = 4;
    js.repo_secret = s->repo_secret;
    js.config_map = s->config_map;
    js.labels = lab = labels(s->pvc);
    js.annotations = ann = json_pack("{s:s}", "cairn.io/snapshot", s->snapshot);
    js.deadline_s = s->deadline_s;
    js.ttl_s = 7 * 86400;
    js.cpu_request = "100m";
    js.memory_request = "64Mi";
    js.cpu_limit = "1";
    js.memory_limit = "256Mi";
    rc = lab && ann ? cairn_k8s_job_build(&js, out, err)
                    : cairn_error(err, CAIRN_FATAL, "out of memory");
    json_decref(lab);
    json_decref(ann);
    return rc;
}

int cairn_restore_pvc_build(const char *ns, const char *name, const char *size,
                            const char *storage_class, const char *snapshot, json_t **out,
                            cairn_err *err)
{
    json_t *pvc;
    *out = NULL;
    if (!cairn_k8s_label_ok(ns, 63))
        return cairn_error(err, CAIRN_FAILED, "namespace '%.80s' is not a valid namespace name",
                           ns ? ns : "");
    if (!cairn_k8s_subdomain_ok(name))
        return cairn_error(err, CAIRN_FAILED, "PVC name '%.80s' is not a valid name",
                           name ? name : "");
    if (!cairn_k8s_quantity_ok(size))
        return cairn_error(err, CAIRN_FAILED,
                           "size '%.40s' is not a quantity such as 10Gi or 500Mi",
                           size ? size : "");
    if (storage_class && !cairn_k8s_subdomain_ok(storage_class))
        return cairn_error(err, CAIRN_FAILED, "storage class '%.80s' is not a valid name",
                           storage_class);
    pvc = json_pack("{s:s,s:s,s:{s:s,s:s,s:o,s:{s:s}},s:{s:[s],s:{s:{s:s}}}}", "apiVersion",
                    "v1", "kind", "PersistentVolumeClaim", "metadata", "name", name,
                    "namespace", ns, "labels", labels(name), "annotations",
                    "cairn.io/restored-from", snapshot ? snapshot : "", "spec", "accessModes",
                    "ReadWriteOnce", "resources", "requests", "storage", size);
    if (pvc && storage_class)
        json_object_set_new(json_object_get(pvc, "spec"), "storageClassName",
                            json_string(storage_class));
    if (!pvc)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    *out = pvc;
    return CAIRN_OK;
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

enum cairn_job_state cairn_job_state(const json_t *job, char *why, size_t whylen)
{
    const json_t *st = json_object_get(job, "status"), *conds = json_object_get(st, "conditions");
    const json_t *c;
    size_t i;
    if (whylen)
        why[0] = 0;
    json_array_foreach(conds, i, c) {
        if (strcmp(jstr(c, "status"), "True") != 0)
            continue;
        if (strcmp(jstr(c, "type"), "Complete") == 0)
            return CAIRN_JOB_SUCCEEDED;
        if (strcmp(jstr(c, "type"), "Failed") == 0) {
            if (whylen)
                snprintf(why, whylen, "%s%s%s", jstr(c, "reason"),
                         *jstr(c, "reason") && *jstr(c, "message") ? ": " : "",
                         jstr(c, "message"));
            return CAIRN_JOB_FAILED;
        }
    }
    if (json_integer_value(json_object_get(st, "succeeded")) > 0)
        return CAIRN_JOB_SUCCEEDED;
    if (json_integer_value(json_object_get(st, "failed")) > 0)
        return CAIRN_JOB_FAILED;
    return CAIRN_JOB_RUNNING;
}

int cairn_job_pod_stuck(const json_t *pod, char *why, size_t whylen)
{
    static const char *const stuck[] = {"CreateContainerConfigError", "ErrImagePull",
                                        "ImagePullBackOff", "InvalidImageName",
                                        "CreateContainerError"};
    const json_t *cs = json_object_get(json_object_get(pod, "status"), "containerStatuses"), *c;
    size_t i, k;
    json_array_foreach(cs, i, c) {
        const json_t *w = json_object_get(json_object_get(c, "state"), "waiting");
        const char *reason = jstr(w, "reason");
        for (k = 0; k < sizeof stuck / sizeof *stuck; k++) {
            if (strcmp(reason, stuck[k]) != 0)
                continue;
            if (whylen)
                snprintf(why, whylen, "%s%s%s", reason, *jstr(w, "message") ? ": " : "",
                         jstr(w, "message"));
            return 1;
        }
    }
    return 0;
}

enum cairn_pss_verdict cairn_restore_pss_check(const json_t *ns, const char **label)
{
    static const char *const modes[] = {CAIRN_PSS_LABEL "enforce", CAIRN_PSS_LABEL "warn",
                                        CAIRN_PSS_LABEL "audit"};
    const json_t *labels = json_object_get(json_object_get(ns, "metadata"), "labels");
    enum cairn_pss_verdict v = CAIRN_PSS_OK;
    size_t i;
    if (label)
        *label = NULL;
    for (i = 0; i < sizeof modes / sizeof *modes && v != CAIRN_PSS_ENFORCED; i++) {
        if (strcmp(jstr(labels, modes[i]), "restricted") != 0 || v == CAIRN_PSS_WARN)
            continue;
        v = i == 0 ? CAIRN_PSS_ENFORCED : CAIRN_PSS_WARN;
        if (label)
            *label = modes[i];
    }
    return v;
}

/* When the event happened, for ordering (RFC 3339 strings compare as text). */
static const char *event_time(const json_t *ev)
{
    if (*jstr(ev, "lastTimestamp"))
        return jstr(ev, "lastTimestamp");
    if (*jstr(ev, "eventTime"))
        return jstr(ev, "eventTime");
    return jstr(json_object_get(ev, "metadata"), "creationTimestamp");
}

int cairn_job_failed_create(const json_t *events, const char *job, const char *job_uid,
                            char *why, size_t whylen, int64_t *count)
{
    const json_t *ev, *best = NULL;
    size_t i;
    json_array_foreach(json_object_get(events, "items"), i, ev) {
        const json_t *inv = json_object_get(ev, "involvedObject");
        const char *uid = jstr(inv, "uid");
        if (strcmp(jstr(ev, "reason"), "FailedCreate") != 0 ||
            strcmp(jstr(inv, "kind"), "Job") != 0 || !job || strcmp(jstr(inv, "name"), job) != 0)
            continue;
        if (job_uid && *job_uid && *uid && strcmp(uid, job_uid) != 0)
            continue; /* an older Job of the same name */
        if (!best || strcmp(event_time(ev), event_time(best)) >= 0)
            best = ev;
    }
    if (!best)
        return 0;
    if (whylen) {
        unsigned char *p;
        snprintf(why, whylen, "%s", jstr(best, "message"));
        for (p = (unsigned char *)why; *p; p++)
            if (*p < 0x20 || *p == 0x7f)
                *p = ' ';
    }
    if (count) {
        *count = json_integer_value(json_object_get(best, "count"));
        if (*count < 1)
            *count = 1;
    }
    return 1;
}

/* cli/cmd_restore_pvc.c — cairn restore-pvc SNAP --to NS/PVC: restore a
 * snapshot into a PVC of the cluster. Optionally creates the PVC, then
 * creates a batch/v1 Job in the PVC's namespace that mounts it and runs
 * `cairn restore SNAP --target /restore` with the agent's repository
 * settings (agent/restore_job.h builds the objects), and with --wait follows
 * the Job to its end. Before anything is created it refuses a namespace
 * that enforces the "restricted" Pod Security Standard (the restore pod
 * meets "baseline"); while the Job has no pod, its FailedCreate events end
 * the wait (a pod refused by a quota, a LimitRange, a webhook). RBAC:
 * daemonset/clusterrole-restore.yaml. See docs/kubernetes.md, "Restoring
 * into the cluster". */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "../agent/kube.h"
#include "../agent/restore_job.h"
#include "cli.h"

#define POLL_S 1.0
#define LOG_TAIL_LINES 20
#define LOG_TAIL_MAX (16u << 10)
#define RBAC_HINT "daemonset/clusterrole-restore.yaml"
#define POD_NEEDS "it runs as root with the capabilities CHOWN, DAC_OVERRIDE, FOWNER and " \
                  "FSETID, to restore owners and modes"

static void sleep_s(double s)
{
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
}

/* A clear message for a failed API call; the RBAC rule it needs on 403. */
static void api_error(cairn_kube *k, const char *what, const char *verb, const char *resource,
                      const char *ns, const cairn_err *err)
{
    long st = cairn_kube_last_status(k);
    if (st == 401)
        cli_error("%s: the API server rejected the credentials (%s): is the token current and "
                  "meant for this cluster?",
                  what, cairn_kube_token_source(k));
    else if (st == 403)
        cli_error("%s: not allowed to %s %s in namespace '%s' (%s): bind the ClusterRole "
                  "'cairn-restore' (%s) to this user or ServiceAccount",
                  what, verb, resource, ns, cairn_kube_token_source(k), RBAC_HINT);
    else
        cli_error("%s: %s", what, err->msg);
}

static const char *meta(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(json_object_get(o, "metadata"), key));
}

/* The image of the agent DaemonSet's "agent" container (else its first). */
static int agent_image(cairn_kube *k, const char *agent_ns, char **out)
{
    char path[400], what[200];
    json_t *ds = NULL, *cs, *ct, *pick = NULL;
    const char *img;
    cairn_err err;
    size_t i;
    int rc;
    *out = NULL;
    snprintf(path, sizeof path, "/apis/apps/v1/namespaces/%s/daemonsets/cairn-agent", agent_ns);
    snprintf(what, sizeof what, "cannot read the agent's image from DaemonSet %s/cairn-agent",
             agent_ns);
    rc = cairn_kube_get_json(k, path, &ds, &err);
    if (rc != CAIRN_OK) {
        if (rc == CAIRN_NOTFOUND)
            cli_error("%s: it does not exist (pass --image IMAGE, set CAIRN_RESTORE_IMAGE, or "
                      "--agent-namespace where the agent runs)",
                      what);
        else
            api_error(k, what, "get", "daemonsets", agent_ns, &err);
        return EXIT_ERR;
    }
    cs = json_object_get(json_object_get(json_object_get(json_object_get(ds, "spec"),
                                                         "template"), "spec"), "containers");
    json_array_foreach(cs, i, ct) {
        const char *n = json_string_value(json_object_get(ct, "name"));
        if (!pick || (n && strcmp(n, "agent") == 0))
            pick = ct;
    }
    img = json_string_value(json_object_get(pick, "image"));
    if (!img || !*img || !(*out = strdup(img))) {
        cli_error("%s: it has no container image (pass --image IMAGE)", what);
        json_decref(ds);
        return EXIT_ERR;
    }
    json_decref(ds);
    return EXIT_OK;
}

/* Before anything is created: a namespace that enforces the "restricted"
 * Pod Security Standard would never let the Job create its pod. EXIT_OK to go
 * on (also when the Namespace cannot be read: the FailedCreate events catch
 * it while waiting). */
static int namespace_check(cairn_kube *k, const char *ns)
{
    char path[128];
    json_t *nso = NULL;
    const char *label;
    cairn_err err;
    int rc;
    snprintf(path, sizeof path, "/api/v1/namespaces/%s", ns);
    rc = cairn_kube_get_json(k, path, &nso, &err);
    if (rc == CAIRN_NOTFOUND) {
        cli_error("namespace '%s' does not exist: nothing was changed (check --to "
                  "NAMESPACE/PVC)",
                  ns);
        return EXIT_ERR;
    }
    if (rc != CAIRN_OK) {
        if (cairn_kube_last_status(k) == 401) {
            api_error(k, "cannot read the target namespace", "get", "namespaces", ns, &err);
            return EXIT_ERR;
        }
        if (cairn_kube_last_status(k) == 403)
            cli_warn("not allowed to get namespace '%s' (%s): its Pod Security level is not "
                     "checked before the Job is created (the 'cairn-restore' ClusterRole of %s "
                     "has the rule)",
                     ns, cairn_kube_token_source(k), RBAC_HINT);
        else
            cli_warn("cannot read namespace '%s' to check its Pod Security level (going on): "
                     "%s",
                     ns, err.msg);
        return EXIT_OK;
    }
    switch (cairn_restore_pss_check(nso, &label)) {
    case CAIRN_PSS_ENFORCED:
        cli_error("namespace '%s' enforces the 'restricted' Pod Security Standard (label %s="
                  "restricted), which the restore pod cannot meet (%s; it meets 'baseline'): "
                  "its Job could never start, so nothing was changed. Restore into a namespace "
                  "at 'baseline' and copy from there, or relax this one for the restore: "
                  "'kubectl label --overwrite namespace %s %s=baseline' (and set it back to "
                  "restricted afterwards)",
                  ns, label, POD_NEEDS, ns, label);
        json_decref(nso);
        return EXIT_ERR;
    case CAIRN_PSS_WARN:
        cli_warn("namespace '%s' has %s=restricted: the restore pod meets 'baseline', not "
                 "'restricted' (%s), so the API server warns about or audits it; it is not "
                 "refused",
                 ns, label, POD_NEEDS);
        break;
    case CAIRN_PSS_OK:
        break;
    }
    json_decref(nso);
    return EXIT_OK;
}

/* While the Job has no pod: a FailedCreate event on it means the pod was
 * refused (Pod Security, a ResourceQuota or LimitRange, an admission
 * webhook) and the Job will not get further. 1 when one was found (and
 * reported); *events_ok goes to 0 when the events cannot be read (one
 * warning; not asked again). */
static int job_failed_create(cairn_kube *k, const char *ns, const char *job, const char *uid,
                             const char *pvc, int pvc_created, int *events_ok)
{
    char path[400], why[2048], hint[512], times[32] = "";
    json_t *list = NULL;
    cairn_err err;
    int64_t count = 0;
    int found;
    /* fieldSelector=involvedObject.kind=Job,involvedObject.name=JOB, URL-encoded;
     * the namespace is the path's. */
    snprintf(path, sizeof path,
             "/api/v1/namespaces/%s/events?fieldSelector=involvedObject.kind%%3DJob%%2C"
             "involvedObject.name%%3D%s",
             ns, job);
    if (cairn_kube_get_json(k, path, &list, &err) != CAIRN_OK) {
        long st = cairn_kube_last_status(k);
        if (st == 401 || st == 403) {
            cli_warn("cannot read the events of Job %s/%s (%s: 'list' on 'events' in namespace "
                     "'%s' is missing, see %s): a pod that the namespace refuses (Pod "
                     "Security, a quota, a policy) is only noticed at the timeout; 'kubectl -n "
                     "%s describe job %s' shows it",
                     ns, job, st == 401 ? "401 Unauthorized" : "403 Forbidden", ns, RBAC_HINT,
                     ns, job);
            *events_ok = 0;
        }
        return 0; /* other errors: asked again at the next poll */
    }
    found = cairn_job_failed_create(list, job, uid, why, sizeof why, &count);
    json_decref(list);
    if (!found)
        return 0;
    if (count > 1)
        snprintf(times, sizeof times, ", %lld times", (long long)count);
    if (strstr(why, "PodSecurity"))
        snprintf(hint, sizeof hint,
                 "the namespace's Pod Security level refuses the restore pod (%s; it meets "
                 "'baseline', not 'restricted'): restore into a namespace at 'baseline', or for "
                 "the restore 'kubectl label --overwrite namespace %s "
                 "pod-security.kubernetes.io/enforce=baseline'",
                 POD_NEEDS, ns);
    else if (strstr(why, "quota") || strstr(why, "LimitRange") || strstr(why, "limit"))
        snprintf(hint, sizeof hint,
                 "a ResourceQuota or LimitRange of namespace '%s' refuses the restore pod (it "
                 "requests cpu 100m and memory 64Mi, limits cpu 1 and memory 256Mi): 'kubectl -n "
                 "%s describe quota,limitrange'; free or raise the quota",
                 ns, ns);
    else
        snprintf(hint, sizeof hint,
                 "an admission policy (a webhook: Kyverno, Gatekeeper...) refuses the restore "
                 "pod (the message names it): ask for an exception for the pods of the restore "
                 "Job (label app.kubernetes.io/component=restore)");
    cli_error("the restore Job %s/%s cannot create its pod (event FailedCreate%s): %s\n  %s\n"
              "  nothing was restored into PVC %s/%s%s; the Job stays and keeps retrying: "
              "delete it with 'kubectl -n %s delete job %s' before trying again",
              ns, job, times, why, hint, ns, pvc, pvc_created ? " (created above: it stays)" : "",
              ns, job);
    return 1;
}

/* Prints the last lines of the log of the Job's newest pod, and why a pod
 * is stuck; returns 1 when a pod is stuck (stuck_only: print nothing else).
 * The number of pods goes to *npods (-1: they cannot be listed). */
static int job_pods(cairn_kube *k, const char *ns, const char *job, int stuck_only,
                    int *config_error, int *npods)
{
    char path[600], why[1024];
    json_t *list = NULL, *items, *pod, *newest = NULL;
    const char *newest_ts = "";
    cairn_err err;
    size_t i;
    int stuck = 0, rc;
    if (npods)
        *npods = -1;
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/pods?labelSelector=job-name%%3D%s", ns,
             job);
    if (cairn_kube_get_json(k, path, &list, &err) != CAIRN_OK) {
        if (!stuck_only)
            cli_warn("cannot list the pods of Job %s/%s for their log: %s", ns, job, err.msg);
        return 0;
    }
    items = json_object_get(list, "items");
    if (npods)
        *npods = (int)json_array_size(items);
    json_array_foreach(items, i, pod) {
        const char *ts = meta(pod, "creationTimestamp");
        if (cairn_job_pod_stuck(pod, why, sizeof why)) {
            cli_error("pod %s/%s of Job %s cannot start: %s", ns, meta(pod, "name"), job, why);
            stuck = 1;
            if (config_error && strncmp(why, "CreateContainerConfigError", 26) == 0)
                *config_error = 1;
        }
        if (!newest || (ts && strcmp(ts, newest_ts) > 0)) {
            newest = pod;
            newest_ts = ts ? ts : "";
        }
    }
    if (!stuck_only && newest && meta(newest, "name")) {
        cairn_buf b;
        cairn_buf_init(&b, LOG_TAIL_MAX + 1);
        snprintf(path, sizeof path,
                 "/api/v1/namespaces/%s/pods/%s/log?container=restore&tailLines=%d", ns,
                 meta(newest, "name"), LOG_TAIL_LINES);
        rc = cairn_kube_get_text(k, path, LOG_TAIL_MAX, &b, &err);
        if (rc == CAIRN_OK && b.len) {
            const char *s = cairn_buf_cstr(&b), *nl;
            fprintf(stderr, "last lines of the log of pod %s/%s:\n", ns, meta(newest, "name"));
            for (; s && *s; s = nl + 1) {
                nl = strchr(s, '\n');
                fprintf(stderr, "  | %.*s\n", (int)(nl ? nl - s : (long)strlen(s)), s);
                if (!nl)
                    break;
            }
        } else if (rc == CAIRN_OK) {
            cli_warn("the log of pod %s/%s is empty", ns, meta(newest, "name"));
        } else {
            cli_warn("cannot read the log of pod %s/%s: %s", ns, meta(newest, "name"), err.msg);
        }
        cairn_buf_free(&b);
    }
    json_decref(list);
    return stuck;
}

/* POSTs obj (decref'd here) as JSON to path; the created object to *out
 * when out is not NULL. */
static int post_json(cairn_kube *k, const char *path, json_t *obj, json_t **out, cairn_err *err)
{
    char *body = json_dumps(obj, JSON_COMPACT);
    int rc;
    json_decref(obj);
    if (!body)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    rc = cairn_kube_request(k, "POST", path, "application/json", body, strlen(body), out, err);
    free(body);
    return rc;
}

int cmd_restore_pvc(struct cli *c, int argc, char **argv)
{
    static const char usage[] =
        "cairn restore-pvc SNAPSHOT --to NAMESPACE/PVC [--create --size SIZE\n"
        "                  [--storage-class CLASS]] [--wait] [--timeout DURATION]\n"
        "                  [--image IMAGE] [--agent-namespace NS] [--repo-secret NAME]\n"
        "                  [--config-map NAME]\n"
        "Restores a snapshot into a PVC of the cluster: creates a Job in the PVC's namespace\n"
        "that mounts it and runs 'cairn restore SNAPSHOT --target /restore --overwrite' with\n"
        "the agent's repository Secret and ConfigMap (which must exist in that namespace).\n"
        "--create creates the PVC first (it must not exist); without it the PVC must exist.\n"
        "--wait follows the Job (default timeout 6h, also the Job's deadline) and ends at\n"
        "once when its pod cannot start or is refused (FailedCreate). A namespace that\n"
        "enforces the 'restricted' Pod Security Standard is refused up front. Image:\n"
        "--image, $CAIRN_RESTORE_IMAGE, else the agent DaemonSet's. KUBECONFIG or in-cluster\n"
        "credentials. See docs/kubernetes.md.";
    const char *to = NULL, *size = NULL, *sc = NULL, *timeout_opt = NULL, *image_opt = NULL;
    const char *agent_ns = "cairn-system", *secret = NULL, *cm = NULL;
    int create = 0, wait = 0, cfg_err, npods, events_ok = 1;
    const struct opt opts[] = {
        {"to", 1, 0, &to, NULL, NULL, NULL},
        {"create", 0, 0, NULL, NULL, NULL, &create},
        {"size", 1, 0, &size, NULL, NULL, NULL},
        {"wait", 0, 0, NULL, NULL, NULL, &wait},
        {"timeout", 1, 0, &timeout_opt, NULL, NULL, NULL},
        {"image", 1, 0, &image_opt, NULL, NULL, NULL},
        {"agent-namespace", 1, 0, &agent_ns, NULL, NULL, NULL},
        {"repo-secret", 1, 0, &secret, NULL, NULL, NULL},
        {"config-map", 1, 0, &cm, NULL, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, NULL},
    };
    struct cairn_restore_job_spec spec;
    char ns[64], pvc[254], path[600], what[400], why[1024], *image = NULL, *job_name = NULL;
    char *job_uid = NULL;
    const char *slash, *snap;
    json_t *obj = NULL, *created = NULL;
    cairn_kube *k = NULL;
    cairn_err err;
    int64_t timeout_s = 6 * 3600;
    double t0;
    int rc, ret = EXIT_ERR;

    if ((rc = cli_parse(c, argc, argv, opts, usage)) != 0)
        return rc;
    /* --storage-class is parsed as the global (S3) option: here it is the PVC's. */
    sc = c->store.storage_class;
    c->store.storage_class = NULL;
    if (c->nargs != 1) {
        cli_error("restore-pvc takes one snapshot id (usage: %s)", usage);
        return EXIT_USAGE;
    }
    snap = c->args[0];
    if (!to || !(slash = strchr(to, '/')) || slash == to || !slash[1] ||
        (size_t)(slash - to) >= sizeof ns || strlen(slash + 1) >= sizeof pvc) {
        cli_error("--to NAMESPACE/PVC is required (e.g. --to shop/data-restored)");
        return EXIT_USAGE;
    }
    snprintf(ns, sizeof ns, "%.*s", (int)(slash - to), to);
    snprintf(pvc, sizeof pvc, "%s", slash + 1);
    if (!cairn_k8s_label_ok(ns, 63)) {
        cli_error("--to: '%s' is not a valid namespace name", ns);
        return EXIT_USAGE;
    }
    if (!cairn_k8s_subdomain_ok(pvc)) {
        cli_error("--to: '%s' is not a valid PVC name", pvc);
        return EXIT_USAGE;
    }
    if (!create && (size || sc)) {
        cli_error("--size and --storage-class go with --create (the PVC is created only then)");
        return EXIT_USAGE;
    }
    if (create && !size) {
        cli_error("--create needs --size (e.g. --size 10Gi: at least the snapshot's size)");
        return EXIT_USAGE;
    }
    if (size && !cairn_k8s_quantity_ok(size)) {
        cli_error("--size '%s' is not a quantity such as 10Gi or 500Mi", size);
        return EXIT_USAGE;
    }
    if (sc && !cairn_k8s_subdomain_ok(sc)) {
        cli_error("--storage-class '%s' is not a valid name", sc);
        return EXIT_USAGE;
    }
    if (!cairn_k8s_label_ok(agent_ns, 63)) {
        cli_error("--agent-namespace '%s' is not a valid namespace name", agent_ns);
        return EXIT_USAGE;
    }
    if (timeout_opt && (rc = cli_duration("timeout", timeout_opt, 1, &timeout_s)) != EXIT_OK)
        return rc;
    if (!image_opt && getenv("CAIRN_RESTORE_IMAGE") && *getenv("CAIRN_RESTORE_IMAGE"))
        image_opt = getenv("CAIRN_RESTORE_IMAGE");

    /* Check what can be checked before touching the cluster. */
    memset(&spec, 0, sizeof spec);
    spec.snapshot = snap;
    spec.ns = ns;
    spec.pvc = pvc;
    spec.image = image_opt ? image_opt : "placeholder";
    spec.repo_secret = secret;
    spec.config_map = cm;
    spec.deadline_s = timeout_s;
    if (cairn_restore_job_build(&spec, &obj, &err) != CAIRN_OK) {
        cli_error("%s", err.msg);
        return EXIT_USAGE;
    }
    json_decref(obj);
    obj = NULL;

    if (cairn_kube_open_env(&k, &err) != CAIRN_OK) {
        cli_error("%s", err.msg);
        return EXIT_ERR;
    }
    if (namespace_check(k, ns) != EXIT_OK)
        goto out;
    if (image_opt) {
        if (!(image = strdup(image_opt))) {
            cli_error("out of memory");
            goto out;
        }
    } else if (agent_image(k, agent_ns, &image) != EXIT_OK) {
        goto out;
    }
    spec.image = image;

    /* ---- the PVC ---- */
    snprintf(what, sizeof what, "cannot read PVC %s/%s", ns, pvc);
    rc = cairn_kube_get_pvc(k, ns, pvc, &obj, &err);
    if (rc == CAIRN_OK && create) {
        cli_error("PVC %s/%s already exists and --create was given: nothing was changed (drop "
                  "--create to restore into it, or pick a new name)",
                  ns, pvc);
        goto out;
    }
    if (rc == CAIRN_NOTFOUND && !create) {
        cli_error("PVC %s/%s does not exist: nothing was changed (add --create --size SIZE to "
                  "create it, or check the namespace and name)",
                  ns, pvc);
        goto out;
    }
    if (rc != CAIRN_OK && rc != CAIRN_NOTFOUND) {
        api_error(k, what, "get", "persistentvolumeclaims", ns, &err);
        goto out;
    }
    json_decref(obj);
    obj = NULL;
    if (create) {
        if (cairn_restore_pvc_build(ns, pvc, size, sc, snap, &obj, &err) != CAIRN_OK) {
            cli_error("%s", err.msg);
            goto out;
        }
        snprintf(path, sizeof path, "/api/v1/namespaces/%s/persistentvolumeclaims", ns);
        rc = post_json(k, path, obj, NULL, &err);
        obj = NULL;
        if (rc == CAIRN_EXISTS) {
            cli_error("PVC %s/%s was created by someone else meanwhile (409 AlreadyExists): "
                      "nothing was changed (drop --create to restore into it)",
                      ns, pvc);
            goto out;
        }
        if (rc != CAIRN_OK) {
            snprintf(what, sizeof what, "cannot create PVC %s/%s", ns, pvc);
            api_error(k, what, "create", "persistentvolumeclaims", ns, &err);
            goto out;
        }
        if (!c->quiet)
            printf("created PVC %s/%s (%s%s%s)\n", ns, pvc, size, sc ? ", storage class " : "",
                   sc ? sc : "");
    }

    /* ---- the Job ---- */
    {
        if (cairn_restore_job_build(&spec, &obj, &err) != CAIRN_OK) {
            cli_error("%s", err.msg);
            goto out;
        }
        snprintf(path, sizeof path, "/apis/batch/v1/namespaces/%s/jobs", ns);
        rc = post_json(k, path, obj, &created, &err);
        obj = NULL;
        if (rc != CAIRN_OK) {
            snprintf(what, sizeof what, "cannot create the restore Job in namespace '%s'%s", ns,
                     create ? " (the new PVC stays)" : "");
            api_error(k, what, "create", "jobs.batch", ns, &err);
            goto out;
        }
        if (!meta(created, "name") || !cairn_k8s_subdomain_ok(meta(created, "name")) ||
            !(job_name = strdup(meta(created, "name")))) {
            cli_error("the API server's answer to the Job creation has no valid metadata.name");
            goto out;
        }
        if (meta(created, "uid") && !(job_uid = strdup(meta(created, "uid")))) {
            cli_error("out of memory");
            goto out;
        }
    }
    if (!c->quiet)
        printf("created Job %s/%s: restoring snapshot %s into PVC %s/%s with image %s\n", ns,
               job_name, snap, ns, pvc, image);
    fflush(stdout);
    if (!wait) {
        ret = EXIT_OK;
        goto out;
    }

    /* ---- wait ---- */
    t0 = cairn_mono();
    snprintf(path, sizeof path, "/apis/batch/v1/namespaces/%s/jobs/%s", ns, job_name);
    for (;;) {
        json_t *job = NULL;
        enum cairn_job_state st;
        double left = t0 + (double)timeout_s - cairn_mono();
        if (left <= 0) {
            cli_error("timed out after %s waiting for Job %s/%s (it keeps running until its "
                      "deadline: 'kubectl -n %s get job %s'; stop it with 'kubectl -n %s "
                      "delete job %s')",
                      timeout_opt ? timeout_opt : "6h", ns, job_name, ns, job_name, ns,
                      job_name);
            goto out;
        }
        sleep_s(left < POLL_S ? left : POLL_S);
        rc = cairn_kube_get_json(k, path, &job, &err);
        if (rc == CAIRN_NOTFOUND) {
            cli_error("Job %s/%s was deleted before it finished: the PVC may hold a partial "
                      "restore",
                      ns, job_name);
            goto out;
        }
        if (rc != CAIRN_OK) {
            if (cairn_kube_last_status(k) == 401 || cairn_kube_last_status(k) == 403) {
                snprintf(what, sizeof what, "cannot read Job %s/%s", ns, job_name);
                api_error(k, what, "get", "jobs.batch", ns, &err);
                goto out;
            }
            cli_warn("cannot read Job %s/%s (will retry): %s", ns, job_name, err.msg);
            continue;
        }
        st = cairn_job_state(job, why, sizeof why);
        json_decref(job);
        if (st == CAIRN_JOB_SUCCEEDED) {
            if (!c->quiet)
                printf("restored snapshot %s into PVC %s/%s (Job %s/%s succeeded after %.0f "
                       "s)\n",
                       snap, ns, pvc, ns, job_name, cairn_mono() - t0);
            ret = EXIT_OK;
            goto out;
        }
        if (st == CAIRN_JOB_FAILED) {
            job_pods(k, ns, job_name, 0, NULL, NULL);
            cli_error("the restore Job %s/%s failed%s%s: PVC %s/%s may hold a partial restore "
                      "(the Job and its pod stay for inspection: 'kubectl -n %s describe job "
                      "%s')",
                      ns, job_name, why[0] ? ": " : "", why, ns, pvc, ns, job_name);
            goto out;
        }
        cfg_err = 0;
        if (job_pods(k, ns, job_name, 1, &cfg_err, &npods)) {
            if (cfg_err)
                cli_error("the restore Job %s/%s cannot start its pod (above): the repository "
                          "Secret '%s' (and ConfigMap '%s', if its keys are referenced) must "
                          "exist in namespace '%s', as in the agent's namespace "
                          "(docs/kubernetes.md); the Job stays: 'kubectl -n %s delete job %s'",
                          ns, job_name, secret ? secret : CAIRN_RESTORE_SECRET,
                          cm ? cm : CAIRN_RESTORE_CONFIGMAP, ns, ns, job_name);
            else
                cli_error("the restore Job %s/%s cannot start its pod (above: check --image); "
                          "the Job stays: 'kubectl -n %s delete job %s'",
                          ns, job_name, ns, job_name);
            goto out;
        }
        /* No pod (or the pods cannot be listed): was it refused? */
        if (npods <= 0 && events_ok &&
            job_failed_create(k, ns, job_name, job_uid, pvc, create, &events_ok))
            goto out;
    }
out:
    json_decref(obj);
    json_decref(created);
    free(job_name);
    free(job_uid);
    free(image);
    cairn_kube_free(k);
    return ret;
}

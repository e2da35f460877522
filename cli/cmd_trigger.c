/* cli/cmd_trigger.c — cairn trigger: request a backup now of the PVCs that
 * match a namespace and label selector, by setting cairn.io/backup-requested-at
 * on them (the agents on their nodes act on it), and with --wait read the
 * results back from cairn.io/last-backup and cairn.io/last-status. Only
 * "list" and "patch" on persistentvolumeclaims are needed (daemonset/
 * cronjob.yaml): --wait polls with lists, no GET or watch. See docs/agent.md. */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "../agent/kube.h"
#include "../engine/policy.h"
#include "cli.h"

#define ANN_PREFIX "cairn.io/"
#define ANN_REQUESTED ANN_PREFIX "backup-requested-at"
#define ANN_LAST_BACKUP ANN_PREFIX "last-backup"
#define ANN_LAST_STATUS ANN_PREFIX "last-status"
#define POLL_S 3

enum state { ST_REQUESTED, ST_OK, ST_FAILED, ST_PENDING };

struct target {
    char *ns, *name;
    enum state st;
    int reported; /* the --wait line was printed */
    char *result; /* "ok ID ..." / "failed: ..." / patch error */
};

struct targets {
    struct target *v;
    size_t n, cap;
    size_t matched; /* PVCs the selector matched, annotated or not */
};

static void targets_free(struct targets *t)
{
    size_t i;
    for (i = 0; i < t->n; i++) {
        free(t->v[i].ns);
        free(t->v[i].name);
        free(t->v[i].result);
    }
    free(t->v);
}

static const char *meta_str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(json_object_get(obj, "metadata"), key));
}

static const char *ann_str(json_t *obj, const char *key)
{
    json_t *ann = json_object_get(json_object_get(obj, "metadata"), "annotations");
    return json_string_value(json_object_get(ann, key));
}

static int has_cairn_annotation(json_t *obj)
{
    json_t *ann = json_object_get(json_object_get(obj, "metadata"), "annotations");
    const char *key;
    json_t *val;
    json_object_foreach(ann, key, val)
    {
        if (strncmp(key, ANN_PREFIX, strlen(ANN_PREFIX)) == 0)
            return 1;
    }
    return 0;
}

/* Percent-encodes s for a query string (malloc'd). */
static char *qescape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(strlen(s) * 3 + 1), *p = out;
    if (!out)
        return NULL;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            *p++ = (char)ch;
        } else {
            *p++ = '%';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        }
    }
    *p = 0;
    return out;
}

/* One object of a list: return 0 to go on, nonzero (a cairn_rc) to stop. */
typedef int (*item_fn)(void *arg, json_t *pvc);

/* Lists the PVCs (collection) with the label selector, page by page. */
static int list_pvcs(cairn_kube *k, const char *collection, const char *selector, item_fn fn,
                     void *arg, cairn_err *err)
{
    char *sel = qescape(selector ? selector : ""), *cont = NULL;
    int rc = CAIRN_OK;
    if (!sel)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    for (;;) {
        char *path = NULL, *ec = NULL;
        json_t *list = NULL, *items, *obj;
        const char *c;
        size_t i;
        if (cont && !(ec = qescape(cont))) {
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
            break;
        }
        if (asprintf(&path, "%s?%s%s%slimit=%u%s%s", collection, *sel ? "labelSelector=" : "",
                     sel, *sel ? "&" : "", (unsigned)CAIRN_KUBE_PAGE, ec ? "&continue=" : "",
                     ec ? ec : "") < 0) {
            free(ec);
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
            break;
        }
        free(ec);
        rc = cairn_kube_get_json(k, path, &list, err);
        free(path);
        if (rc != CAIRN_OK)
            break;
        items = json_object_get(list, "items");
        if (!json_is_array(items)) {
            json_decref(list);
            rc = cairn_error(err, CAIRN_CORRUPT, "GET %s: no items in the list", collection);
            break;
        }
        json_array_foreach(items, i, obj) {
            if ((rc = fn(arg, obj)) != 0)
                break;
        }
        c = json_string_value(json_object_get(json_object_get(list, "metadata"), "continue"));
        free(cont);
        cont = (rc == 0 && c && *c) ? strdup(c) : NULL;
        json_decref(list);
        if (rc != 0 || !cont)
            break;
    }
    free(cont);
    free(sel);
    return rc;
}

static int collect(void *arg, json_t *pvc)
{
    struct targets *t = arg;
    const char *ns = meta_str(pvc, "namespace"), *name = meta_str(pvc, "name");
    if (!ns || !name)
        return 0;
    t->matched++;
    if (!has_cairn_annotation(pvc))
        return 0;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct target *v = realloc(t->v, cap * sizeof *v);
        if (!v)
            return CAIRN_FATAL;
        t->v = v;
        t->cap = cap;
    }
    memset(&t->v[t->n], 0, sizeof t->v[t->n]);
    if (!(t->v[t->n].ns = strdup(ns)) || !(t->v[t->n].name = strdup(name))) {
        free(t->v[t->n].ns);
        return CAIRN_FATAL;
    }
    t->n++;
    return 0;
}

struct poll {
    struct targets *t;
    int64_t req_ns;
    unsigned char *seen;
};

static void set_result(struct target *tg, enum state st, const char *fmt, const char *s)
{
    char *r = NULL;
    if (asprintf(&r, fmt, s) < 0)
        r = NULL;
    free(tg->result);
    tg->result = r;
    tg->st = st;
}

static int check_one(void *arg, json_t *pvc)
{
    struct poll *p = arg;
    const char *ns = meta_str(pvc, "namespace"), *name = meta_str(pvc, "name");
    const char *last, *status;
    int64_t last_ns;
    size_t i;
    if (!ns || !name)
        return 0;
    for (i = 0; i < p->t->n; i++) {
        struct target *tg = &p->t->v[i];
        if (strcmp(tg->ns, ns) != 0 || strcmp(tg->name, name) != 0)
            continue;
        p->seen[i] = 1;
        if (tg->st != ST_PENDING)
            break;
        last = ann_str(pvc, ANN_LAST_BACKUP);
        if (!last || cairn_parse_time(last, &last_ns) != 0 || last_ns < p->req_ns)
            break;
        status = ann_str(pvc, ANN_LAST_STATUS);
        if (status && strncmp(status, "ok ", 3) == 0)
            set_result(tg, ST_OK, "%s", status);
        else if (status && strncmp(status, "failed", 6) == 0)
            set_result(tg, ST_FAILED, "%s", status);
        else
            set_result(tg, ST_FAILED, "failed: unexpected cairn.io/last-status '%s'",
                       status ? status : "(none)");
        break;
    }
    return 0;
}

static int auth_hint(cairn_kube *k, const char *ns, const char *verb)
{
    long st = cairn_kube_last_status(k);
    if (st == 401) {
        cli_error("the API server rejected the credentials (%s): is the token current and "
                  "meant for this cluster?", cairn_kube_token_source(k));
        return 1;
    }
    if (st == 403) {
        if (ns)
            cli_error("not allowed to %s persistentvolumeclaims in namespace '%s': check the "
                      "RBAC of the trigger's ServiceAccount (Role and RoleBinding "
                      "'cairn-trigger' in '%s' allowing list and patch on "
                      "persistentvolumeclaims, daemonset/cronjob.yaml; credentials: %s)",
                      verb, ns, ns, cairn_kube_token_source(k));
        else
            cli_error("not allowed to %s persistentvolumeclaims cluster-wide "
                      "(--all-namespaces): the trigger's ServiceAccount needs a ClusterRole "
                      "and ClusterRoleBinding allowing list and patch on "
                      "persistentvolumeclaims (daemonset/cronjob.yaml has a namespaced Role; "
                      "credentials: %s)",
                      verb, cairn_kube_token_source(k));
        return 1;
    }
    return 0;
}

static void sleep_s(double s)
{
    struct timespec ts;
    if (s <= 0)
        return;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
}

static const char *state_name(enum state s)
{
    switch (s) {
    case ST_OK:
        return "ok";
    case ST_FAILED:
        return "failed";
    case ST_PENDING:
        return "pending";
    default:
        return "requested";
    }
}

int cmd_trigger(struct cli *c, int argc, char **argv)
{
    static const char usage[] =
        "cairn trigger [--namespace NS | --all-namespaces] [--selector LABELSELECTOR] [--wait]\n"
        "              [--timeout DURATION] [--json]\n"
        "Requests a backup now of the PVCs that match (and carry a cairn.io/ annotation) by\n"
        "setting cairn.io/backup-requested-at; the agents take them. --wait polls until each\n"
        "has a result (default timeout 1h). Exit 0 all ok, 1 any failed or timed out, 2 usage.\n"
        "Namespace default: the kubeconfig context's or the ServiceAccount's. KUBECONFIG or\n"
        "in-cluster credentials. See docs/agent.md.";
    const char *ns_opt = NULL, *selector = NULL, *timeout_opt = NULL;
    int all_ns = 0, wait = 0;
    const struct opt opts[] = {
        {"namespace", 1, 0, &ns_opt, NULL, NULL, NULL},
        {"n", 1, 0, &ns_opt, NULL, NULL, NULL},
        {"all-namespaces", 0, 0, NULL, NULL, NULL, &all_ns},
        {"A", 0, 0, NULL, NULL, NULL, &all_ns},
        {"selector", 1, 0, &selector, NULL, NULL, NULL},
        {"l", 1, 0, &selector, NULL, NULL, NULL},
        {"wait", 0, 0, NULL, NULL, NULL, &wait},
        {"timeout", 1, 0, &timeout_opt, NULL, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, NULL},
    };
    struct targets t;
    struct cairn_kube_kv kv;
    cairn_kube *k = NULL;
    cairn_err err;
    char *collection = NULL, when[32], where[400];
    const char *ns = NULL;
    int64_t timeout_s = 3600, req_ns;
    size_t i, n_failed = 0, n_pending = 0;
    struct tm tm;
    time_t now;
    int rc, ret = EXIT_ERR;

    memset(&t, 0, sizeof t);
    if ((rc = cli_parse(c, argc, argv, opts, usage)) != 0)
        return rc;
    if (c->nargs) {
        cli_error("trigger takes no arguments ('%s'); usage: %s", c->args[0], usage);
        return EXIT_USAGE;
    }
    if (all_ns && ns_opt) {
        cli_error("--namespace and --all-namespaces exclude each other");
        return EXIT_USAGE;
    }
    if (ns_opt && !*ns_opt) {
        cli_error("--namespace needs a namespace name");
        return EXIT_USAGE;
    }
    if (timeout_opt && (rc = cli_duration("timeout", timeout_opt, 1, &timeout_s)) != EXIT_OK)
        return rc;

    if (cairn_kube_open_env(&k, &err) != CAIRN_OK) {
        cli_error("%s", err.msg);
        return EXIT_ERR;
    }
    if (!all_ns)
        ns = ns_opt ? ns_opt : cairn_kube_namespace(k);
    if (ns && (strchr(ns, '/') || strlen(ns) > 63)) {
        cli_error("invalid namespace '%.80s'", ns);
        ret = EXIT_USAGE;
        goto out;
    }
    if (asprintf(&collection, ns ? "/api/v1/namespaces/%s/persistentvolumeclaims"
                                 : "/api/v1/persistentvolumeclaims%s",
                 ns ? ns : "") < 0) {
        collection = NULL;
        cli_error("out of memory");
        goto out;
    }
    snprintf(where, sizeof where, "%s%s%s%s%s", ns ? "namespace '" : "all namespaces",
             ns ? ns : "", ns ? "'" : "", selector && *selector ? " with selector " : "",
             selector && *selector ? selector : "");

    /* ---- find ---- */
    rc = list_pvcs(k, collection, selector, collect, &t, &err);
    if (rc != CAIRN_OK) {
        if (rc == CAIRN_FATAL)
            cli_error("out of memory");
        else if (!auth_hint(k, ns, "list"))
            cli_error("cannot list the PVCs of %s: %s", where, err.msg);
        goto out;
    }
    if (t.n == 0) {
        if (t.matched)
            cli_error("%zu PVC%s matched in %s, but none has a cairn.io/ annotation (add "
                      "cairn.io/schedule or another cairn.io/ annotation to back one up)",
                      t.matched, t.matched == 1 ? "" : "s", where);
        else
            cli_error("no PVC matched in %s", where);
        goto out;
    }

    /* ---- request ---- */
    now = time(NULL);
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    req_ns = (int64_t)now * 1000000000LL;
    kv.key = ANN_REQUESTED;
    kv.value = when;
    for (i = 0; i < t.n; i++) {
        struct target *tg = &t.v[i];
        if (cairn_kube_patch_pvc_annotations(k, tg->ns, tg->name, &kv, 1, NULL, &err) !=
            CAIRN_OK) {
            if (!auth_hint(k, tg->ns, "patch"))
                cli_error("%s/%s: cannot request a backup: %s", tg->ns, tg->name, err.msg);
            set_result(tg, ST_FAILED, "failed: cannot set " ANN_REQUESTED ": %s", err.msg);
            n_failed++;
            tg->reported = 1;
            continue;
        }
        tg->st = wait ? ST_PENDING : ST_REQUESTED;
        n_pending += wait ? 1u : 0u;
        if (!c->json) {
            printf("%s/%s: backup requested at %s\n", tg->ns, tg->name, when);
            fflush(stdout);
        }
    }

    /* ---- wait ---- */
    if (wait && n_pending) {
        double deadline = cairn_mono() + (double)timeout_s;
        struct poll p;
        p.t = &t;
        p.req_ns = req_ns;
        p.seen = calloc(t.n, 1);
        if (!p.seen) {
            cli_error("out of memory");
            goto out;
        }
        while (n_pending) {
            double left = deadline - cairn_mono();
            if (left <= 0)
                break;
            sleep_s(left < POLL_S ? left : POLL_S);
            memset(p.seen, 0, t.n);
            rc = list_pvcs(k, collection, selector, check_one, &p, &err);
            if (rc != CAIRN_OK) {
                if (auth_hint(k, ns, "list")) {
                    free(p.seen);
                    goto out;
                }
                cli_warn("cannot list the PVCs (will retry): %s", err.msg);
                continue;
            }
            n_pending = 0;
            for (i = 0; i < t.n; i++) {
                struct target *tg = &t.v[i];
                if (tg->st == ST_PENDING && !p.seen[i])
                    set_result(tg, ST_FAILED, "%s",
                               "failed: the PVC no longer matches (deleted or relabelled)");
                if (tg->st == ST_PENDING) {
                    n_pending++;
                } else if (tg->result && !tg->reported) {
                    if (!c->json) {
                        printf("%s/%s: %s\n", tg->ns, tg->name, tg->result);
                        fflush(stdout);
                    }
                    n_failed += tg->st == ST_FAILED;
                    tg->reported = 1;
                }
            }
        }
        free(p.seen);
    }

    if (c->json) {
        json_t *arr = json_array();
        for (i = 0; arr && i < t.n; i++) {
            struct target *tg = &t.v[i];
            json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "namespace", tg->ns, "name", tg->name,
                                  "requested_at", when, "state", state_name(tg->st));
            if (o && tg->st == ST_OK) {
                char id[CAIRN_HEX_LEN + 1];
                snprintf(id, sizeof id, "%s", tg->result + 3);
                id[strcspn(id, " ")] = 0;
                json_object_set_new(o, "snapshot", json_string(id));
            }
            if (o && tg->result)
                json_object_set_new(o, "status", json_string(tg->result));
            if (o)
                json_array_append_new(arr, o);
        }
        if (arr)
            cli_print_json(arr);
    }
    if (n_pending) {
        size_t len = 0, shown = 0;
        char list[1024];
        list[0] = 0;
        for (i = 0; i < t.n; i++) {
            int m;
            if (t.v[i].st != ST_PENDING)
                continue;
            if (shown == 20 || len >= sizeof list - 1) {
                snprintf(list + len, sizeof list - len, ", ...");
                break;
            }
            m = snprintf(list + len, sizeof list - len, "%s%s/%s", shown ? ", " : "", t.v[i].ns,
                         t.v[i].name);
            len = m < 0 ? len : len + (size_t)m;
            if (len >= sizeof list)
                len = sizeof list - 1;
            shown++;
        }
        cli_error("timed out after %s waiting for %zu PVC%s: %s (no result at or after %s; "
                  "is an agent running on the node that mounts %s? the request stays and the "
                  "agent takes it when it can)",
                  timeout_opt ? timeout_opt : "1h", n_pending, n_pending == 1 ? "" : "s", list,
                  when, n_pending == 1 ? "it" : "them");
        goto out;
    }
    if (n_failed) {
        cli_error("%zu of %zu PVC%s failed", n_failed, t.n, t.n == 1 ? "" : "s");
        goto out;
    }
    ret = EXIT_OK;
out:
    targets_free(&t);
    free(collection);
    cairn_kube_free(k);
    return ret;
}

/* tests/unit/test_kube.c — agent/kube.c against tests/k8s/fake_apiserver.py,
 * started here on a free port (exit 77 when python3 is missing). Asserts what
 * the client sends, read back through the fake server's control API: the
 * node's pods only, page by page; watch events in order; a re-list after
 * 410 Gone; backoff after a 500; 401 and 403 messages naming the token source
 * and RBAC (and never the token); a merge-patch with exactly the annotations
 * sent; an Event with the PVC as involvedObject; in-cluster configuration
 * over TLS with the ServiceAccount's CA. */
#define _GNU_SOURCE
#include "../../agent/kube.h"
#include "../../uploaders/curl_dl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define TOKEN "s3cr3t-t0ken-abc"

static char tmpdir[256];
static char script[1024];

struct server {
    pid_t pid;
    int port;
    int tls;
};

/* ---- the fake server ---- */

static int find_script(void)
{
    const char *src = getenv("CAIRN_SRC");
    if (src && *src) {
        snprintf(script, sizeof script, "%s/tests/k8s/fake_apiserver.py", src);
    } else {
        /* __FILE__ is .../tests/unit/test_kube.c (cmake passes absolute paths) */
        const char *f = __FILE__;
        const char *p = strstr(f, "tests/unit/test_kube.c");
        if (!p)
            return -1;
        snprintf(script, sizeof script, "%.*stests/k8s/fake_apiserver.py", (int)(p - f), f);
    }
    return access(script, R_OK);
}

static int start_server(struct server *s, const char *cert, const char *key)
{
    char pf[300];
    int i;
    snprintf(pf, sizeof pf, "%s/port.%d", tmpdir, cert ? 1 : 0);
    unlink(pf);
    s->tls = cert != NULL;
    s->pid = fork();
    if (s->pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0 && !getenv("TEST_KUBE_VERBOSE"))
            dup2(fd, 2);
        if (cert)
            execlp("python3", "python3", script, "--token", TOKEN, "--port-file", pf,
                   "--tls-cert", cert, "--tls-key", key, (char *)NULL);
        else
            execlp("python3", "python3", script, "--token", TOKEN, "--port-file", pf,
                   (char *)NULL);
        _exit(127);
    }
    for (i = 0; i < 200; i++) {
        FILE *f = fopen(pf, "r");
        int st;
        if (f) {
            int ok = fscanf(f, "%d", &s->port) == 1;
            fclose(f);
            if (ok)
                return 0;
        }
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return -1;
        }
        usleep(50 * 1000);
    }
    return -1;
}

static void stop_server(struct server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

/* ---- the control API (plain libcurl) ---- */

static struct server srv;

static size_t grow(char *p, size_t sz, size_t nm, void *arg)
{
    cairn_buf *b = arg;
    return cairn_buf_append(b, p, sz * nm) == CAIRN_OK ? sz * nm : 0;
}

static json_t *ctl(const char *method, const char *what, const char *body)
{
    CURL *h = curl_easy_init();
    cairn_buf b = CAIRN_BUF_INIT;
    char url[256];
    long code = 0;
    json_t *j = NULL;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/_control/%s", srv.port, what);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, grow);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (code == 200)
        j = json_loadb(b.data ? (const char *)b.data : "", b.len, 0, NULL);
    CHECK(code == 200, "control %s %s: HTTP %ld", method, what, code);
    cairn_buf_free(&b);
    curl_easy_cleanup(h);
    return j;
}

static void ctlv(const char *method, const char *what, const char *body)
{
    json_decref(ctl(method, what, body));
}

static void add_pod(const char *ns, const char *name, const char *node)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\","
             "\"namespace\":\"%s\"},\"spec\":{\"nodeName\":\"%s\",\"volumes\":[]}}",
             name, ns, node);
    ctlv("POST", "pod", body);
}

static void pod_event(const char *type, const char *ns, const char *name, const char *node)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"type\":\"%s\",\"object\":{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":"
             "{\"name\":\"%s\",\"namespace\":\"%s\",\"labels\":{\"v\":\"2\"}},\"spec\":"
             "{\"nodeName\":\"%s\"}}}",
             type, name, ns, node);
    ctlv("POST", "event", body);
}

/* Requests in the fake server's log matching method and path. */
static size_t count_log(json_t *log, const char *method, const char *path, int watch)
{
    size_t i, n = 0;
    json_t *e;
    json_array_foreach(log, i, e) {
        const char *w = json_string_value(json_object_get(json_object_get(e, "query"), "watch"));
        if (strcmp(json_string_value(json_object_get(e, "method")), method) == 0 &&
            strcmp(json_string_value(json_object_get(e, "path")), path) == 0 &&
            (watch < 0 || (w != NULL) == watch))
            n++;
    }
    return n;
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static cairn_kube *open_with_token(const char *token, char *cfgpath, size_t cfglen)
{
    char text[1024];
    cairn_kube *k = NULL;
    cairn_err err;
    struct cairn_kube_tuning t;
    static int n;
    snprintf(cfgpath, cfglen, "%s/kubeconfig.%d", tmpdir, n++);
    /* kubectl's layout: sequences at the indentation of their key */
    snprintf(text, sizeof text,
             "apiVersion: v1\n"
             "kind: Config\n"
             "clusters:\n"
             "- cluster:\n"
             "    server: http://127.0.0.1:%d   # the fake API server\n"
             "  name: fake\n"
             "contexts:\n"
             "- context:\n"
             "    cluster: fake\n"
             "    namespace: shop\n"
             "    user: \"agent\"\n"
             "  name: fake-ctx\n"
             "current-context: fake-ctx\n"
             "preferences: {}\n"
             "users:\n"
             "- name: agent\n"
             "  user:\n"
             "    token: '%s'\n",
             srv.port, token);
    if (write_text(cfgpath, text) != 0)
        return NULL;
    setenv("KUBECONFIG", cfgpath, 1);
    if (cairn_kube_open_env(&k, &err) != CAIRN_OK) {
        CHECK(0, "open kubeconfig: %s", err.msg);
        return NULL;
    }
    cairn_kube_get_tuning(k, &t);
    t.page = 2;
    t.base_ms = 20;
    t.max_ms = 80;
    t.auth_ms = 200;
    t.watch_timeout_s = 5;
    cairn_kube_set_tuning(k, &t);
    return k;
}

/* ---- kubeconfig parsing ---- */

static void test_config_parse(void)
{
    static const char yaml[] =
        "# comment\n"
        "apiVersion: v1\n"
        "clusters:\n"
        "  - name: \"a b\"\n"
        "    cluster:\n"
        "      server: https://10.0.0.1:6443\n"
        "      insecure-skip-tls-verify: true\n"
        "users:\n"
        "- name: u\n"
        "  user: {}\n"
        "list:\n"
        "- x\n"
        "- 'it''s'\n"
        "- \"q\\\"d\"\n"
        "empty:\n"
        "current-context: c\n";
    json_t *j = NULL;
    cairn_err err;
    json_t *c0;
    CHECK(cairn_kube_parse_config_text(yaml, sizeof yaml - 1, &j, &err) == CAIRN_OK, "%s",
          err.msg);
    c0 = json_array_get(json_object_get(j, "clusters"), 0);
    CHECK(strcmp(json_string_value(json_object_get(c0, "name")), "a b") == 0, "name");
    CHECK(strcmp(json_string_value(json_object_get(json_object_get(c0, "cluster"), "server")),
                 "https://10.0.0.1:6443") == 0, "server");
    CHECK(json_is_object(json_object_get(json_array_get(json_object_get(j, "users"), 0),
                                         "user")), "user {}");
    CHECK(json_array_size(json_object_get(j, "list")) == 3, "list");
    CHECK(strcmp(json_string_value(json_array_get(json_object_get(j, "list"), 1)), "it's") == 0,
          "single quotes");
    CHECK(strcmp(json_string_value(json_array_get(json_object_get(j, "list"), 2)), "q\"d") == 0,
          "double quotes");
    CHECK(json_is_null(json_object_get(j, "empty")), "empty value");
    CHECK(strcmp(json_string_value(json_object_get(j, "current-context")), "c") == 0, "cc");
    json_decref(j);

    CHECK(cairn_kube_parse_config_text("{\"a\": 1}", 8, &j, &err) == CAIRN_OK, "json");
    json_decref(j);
    CHECK(cairn_kube_parse_config_text("a: [1, 2]\n", 10, &j, &err) == CAIRN_FAILED, "flow");
    CHECK(strstr(err.msg, "line 1") != NULL, "%s", err.msg);
    CHECK(cairn_kube_parse_config_text("a: 1\n   b: 2\n", 12, &j, &err) == CAIRN_FAILED,
          "indent");
    CHECK(strstr(err.msg, "line 2") != NULL, "%s", err.msg);
    CHECK(cairn_kube_parse_config_text("a: |\n  x\n", 9, &j, &err) == CAIRN_FAILED, "block");
    CHECK(cairn_kube_parse_config_text("a:\n\tb: 1\n", 9, &j, &err) == CAIRN_FAILED, "tab");
}

/* ---- list ---- */

static int collect(void *arg, enum cairn_kube_event ev, json_t *pod)
{
    json_t *names = arg;
    json_array_append_new(names, json_string(json_string_value(
                                     json_object_get(json_object_get(pod, "metadata"), "name"))));
    return 0;
}

static void test_list(cairn_kube *k)
{
    json_t *names = json_array(), *log;
    char rv[CAIRN_KUBE_RV_MAX];
    cairn_err err;
    size_t i;
    int rc;
    json_t *e;

    ctlv("POST", "reset-log", NULL);
    rc = cairn_kube_list_pods(k, "node-a", collect, names, rv, &err);
    CHECK(rc == CAIRN_OK, "list: %s", err.msg);
    {
        char *s = json_dumps(names, JSON_COMPACT);
        CHECK(strcmp(s, "[\"a1\",\"a2\",\"a3\",\"a4\",\"a5\"]") == 0, "list gave %s", s);
        free(s);
    }
    CHECK(rv[0] != 0, "list resourceVersion");
    log = ctl("GET", "log", NULL);
    CHECK(json_array_size(log) == 3, "5 pods in pages of 2: %zu requests",
          json_array_size(log));
    json_array_foreach(log, i, e) {
        json_t *q = json_object_get(e, "query");
        const char *fs = json_string_value(json_object_get(q, "fieldSelector"));
        CHECK(fs && strcmp(fs, "spec.nodeName=node-a") == 0, "fieldSelector %s", fs ? fs : "");
        CHECK(strcmp(json_string_value(json_object_get(q, "limit")), "2") == 0, "limit");
        CHECK((json_object_get(q, "continue") != NULL) == (i > 0), "continue on page %zu", i);
        CHECK(strcmp(json_string_value(json_object_get(e, "auth")), "ok") == 0, "auth");
    }
    json_decref(log);
    json_decref(names);
}

/* ---- the informer loop ---- */

struct loop {
    int relists, synced, errors;
    unsigned last_delay;
    int phase;
    json_t *seen;     /* event strings in phase 1 and 3 */
    json_t *current;  /* names after the latest list */
    char rv2[CAIRN_KUBE_RV_MAX];
};

static int on_relist(void *arg)
{
    struct loop *l = arg;
    l->relists++;
    json_array_clear(l->current);
    return 0;
}

static int on_pod(void *arg, enum cairn_kube_event ev, json_t *pod)
{
    struct loop *l = arg;
    const char *name = json_string_value(json_object_get(json_object_get(pod, "metadata"), "name"));
    char s[128];
    if (l->phase == 0 || l->phase == 2) { /* inside a list */
        CHECK(ev == CAIRN_KUBE_ADDED, "list items are ADDED");
        json_array_append_new(l->current, json_string(name));
        return 0;
    }
    snprintf(s, sizeof s, "%s %s", cairn_kube_event_name(ev), name);
    json_array_append_new(l->seen, json_string(s));
    if (l->phase == 1 && ev == CAIRN_KUBE_DELETED) {
        /* the server forgets old resourceVersions: the watch gets ERROR 410 */
        ctlv("POST", "gone", NULL);
        /* changes made while the client re-lists are in the new list */
        add_pod("shop", "a6", "node-a");
        l->phase = 2;
    }
    if (l->phase == 3 && strcmp(name, "a7") == 0)
        return 1; /* done */
    return 0;
}

static int on_synced(void *arg, const char *rv)
{
    struct loop *l = arg;
    char *s = json_dumps(l->current, JSON_COMPACT);
    l->synced++;
    if (l->synced == 1) {
        CHECK(strcmp(s, "[\"a1\",\"a2\",\"a3\",\"a4\",\"a5\"]") == 0, "first list %s", s);
        /* events for the watch: one on another node must not arrive */
        add_pod("shop", "new1", "node-a");
        add_pod("shop", "b9", "node-b");
        pod_event("MODIFIED", "shop", "a1", "node-a");
        pod_event("DELETED", "shop", "a2", "node-a");
        l->phase = 1;
    } else if (l->synced == 2) {
        CHECK(strcmp(s, "[\"a1\",\"a3\",\"a4\",\"a6\",\"new1\",\"a5\"]") == 0,
              "list after 410: %s", s);
        snprintf(l->rv2, sizeof l->rv2, "%s", rv);
        add_pod("shop", "a7", "node-a");
        l->phase = 3;
    } else {
        CHECK(0, "unexpected list %d", l->synced);
    }
    free(s);
    return 0;
}

static int on_error(void *arg, const cairn_err *e, unsigned delay_ms)
{
    struct loop *l = arg;
    l->errors++;
    l->last_delay = delay_ms;
    CHECK(strstr(e->msg, "500") != NULL, "error: %s", e->msg);
    return l->errors > 5 ? 2 : 0;
}

static void test_loop(cairn_kube *k)
{
    struct loop l;
    struct cairn_kube_pod_handler h = {on_relist, on_pod, on_synced, on_error};
    cairn_err err;
    json_t *log, *e;
    size_t i;
    int rc, watch_after = 0;
    char *s;

    memset(&l, 0, sizeof l);
    l.seen = json_array();
    l.current = json_array();
    ctlv("POST", "reset-log", NULL);
    /* the first list fails once: backoff, then it goes on */
    ctlv("POST", "fail", "{\"method\":\"GET\",\"path\":\"/api/v1/pods\",\"status\":500,"
                         "\"count\":1}");
    rc = cairn_kube_pods_run(k, "node-a", &h, &l, &err);
    CHECK(rc == 1, "loop ended with %d (%s)", rc, err.msg);
    CHECK(l.errors == 1, "one error, got %d", l.errors);
    CHECK(l.last_delay >= 10 && l.last_delay <= 20, "backoff %u ms not in [10,20]", l.last_delay);
    CHECK(l.relists == 3, "lists started: %d (failed, first, after 410)", l.relists);
    CHECK(l.synced == 2, "complete lists: %d", l.synced);
    s = json_dumps(l.seen, JSON_COMPACT);
    CHECK(strcmp(s, "[\"ADDED new1\",\"MODIFIED a1\",\"DELETED a2\",\"ADDED a7\"]") == 0,
          "watch events in order, node-a only: %s", s);
    free(s);
    log = ctl("GET", "log", NULL);
    /* 1 failed + 3 pages + 3 pages (6 pods) lists; watches: before and after the 410 */
    CHECK(count_log(log, "GET", "/api/v1/pods", 0) == 7, "list requests: %zu",
          count_log(log, "GET", "/api/v1/pods", 0));
    CHECK(count_log(log, "GET", "/api/v1/pods", 1) >= 2, "watch requests: %zu",
          count_log(log, "GET", "/api/v1/pods", 1));
    json_array_foreach(log, i, e) {
        json_t *q = json_object_get(e, "query");
        const char *rv = json_string_value(json_object_get(q, "resourceVersion"));
        if (!json_object_get(q, "watch"))
            continue;
        CHECK(strcmp(json_string_value(json_object_get(q, "allowWatchBookmarks")), "true") == 0,
              "bookmarks");
        CHECK(strcmp(json_string_value(json_object_get(q, "fieldSelector")),
                     "spec.nodeName=node-a") == 0, "watch fieldSelector");
        if (rv && strcmp(rv, l.rv2) == 0)
            watch_after = 1;
    }
    CHECK(watch_after, "a watch from the new list's resourceVersion %s", l.rv2);
    json_decref(log);
    json_decref(l.seen);
    json_decref(l.current);
}

/* A watch event longer than max_line is an error, not a crash nor a huge
 * allocation; bookmarks advance the resourceVersion. */
static void test_watch_limits(cairn_kube *k)
{
    char rv[CAIRN_KUBE_RV_MAX], big[9000], body[9300], before[CAIRN_KUBE_RV_MAX];
    struct cairn_kube_tuning t, saved;
    json_t *names = json_array();
    cairn_err err;
    int rc;

    CHECK(cairn_kube_list_pods(k, "node-a", NULL, NULL, rv, &err) == CAIRN_OK, "%s", err.msg);
    snprintf(before, sizeof before, "%s", rv);
    /* a change on another node moves the resourceVersion; only a bookmark
     * tells this node's watch about it */
    add_pod("shop", "b3", "node-b");
    ctlv("POST", "bookmark", NULL);
    cairn_kube_get_tuning(k, &saved);
    t = saved;
    t.watch_timeout_s = 1;
    cairn_kube_set_tuning(k, &t);
    rc = cairn_kube_watch_pods(k, "node-a", rv, collect, names, &err);
    CHECK(rc == CAIRN_OK, "watch with a bookmark: %d %s", rc, err.msg);
    CHECK(json_array_size(names) == 0, "a bookmark is not a pod event");
    CHECK(strcmp(rv, before) != 0, "the bookmark advanced the resourceVersion (%s)", rv);

    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    snprintf(body, sizeof body,
             "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"huge\",\"namespace\":"
             "\"shop\",\"annotations\":{\"x\":\"%s\"}},\"spec\":{\"nodeName\":\"node-a\"}}}",
             big);
    ctlv("POST", "event", body);
    t.max_line = 4096;
    cairn_kube_set_tuning(k, &t);
    rc = cairn_kube_watch_pods(k, "node-a", rv, collect, names, &err);
    CHECK(rc == CAIRN_FAILED && strstr(err.msg, "longer than 4096"), "long line: %d %s", rc,
          err.msg);
    CHECK(json_array_size(names) == 0, "no event from a cut line");
    /* a watch refused with HTTP 410 (not an ERROR event) also means: list again */
    cairn_kube_set_tuning(k, &saved);
    CHECK(cairn_kube_list_pods(k, "node-a", NULL, NULL, rv, &err) == CAIRN_OK, "%s", err.msg);
    ctlv("POST", "fail", "{\"method\":\"GET\",\"path\":\"/api/v1/pods\",\"status\":410,"
                         "\"watch\":true}");
    rc = cairn_kube_watch_pods(k, "node-a", rv, collect, names, &err);
    CHECK(rc == CAIRN_NOTFOUND && cairn_kube_last_status(k) == 410, "HTTP 410: %d %s", rc,
          err.msg);
    json_decref(names);
}

/* The stop flag ends the loop during a watch that would otherwise block. */
static volatile sig_atomic_t stop_flag;

static void *raise_stop(void *arg)
{
    usleep(300 * 1000);
    stop_flag = 1;
    return NULL;
}

static void test_stop(cairn_kube *k)
{
    struct cairn_kube_pod_handler h = {NULL, NULL, NULL, NULL};
    cairn_err err;
    pthread_t th;
    double t0;
    int rc;
    stop_flag = 0;
    cairn_kube_set_stop_flag(k, &stop_flag);
    pthread_create(&th, NULL, raise_stop, NULL);
    t0 = cairn_mono();
    rc = cairn_kube_pods_run(k, "node-a", &h, NULL, &err); /* watch_timeout_s is 5 */
    pthread_join(th, NULL);
    CHECK(rc == CAIRN_OK, "stopped loop: %d %s", rc, err.msg);
    CHECK(cairn_mono() - t0 < 2.0, "stopped within 2 s, took %.1f s", cairn_mono() - t0);
    cairn_kube_set_stop_flag(k, NULL);
}

/* ---- errors ---- */

struct auth_seen {
    int calls;
    unsigned delay;
    char msg[CAIRN_ERRMSG_MAX];
};

static int auth_error(void *arg, const cairn_err *e, unsigned delay_ms)
{
    struct auth_seen *a = arg;
    a->calls++;
    a->delay = delay_ms;
    snprintf(a->msg, sizeof a->msg, "%s", e->msg);
    return 3;
}

static void test_auth_errors(void)
{
    char cfg[300];
    cairn_kube *k = open_with_token("wrong-token-xyz", cfg, sizeof cfg), *good;
    char rv[CAIRN_KUBE_RV_MAX], expect[400];
    cairn_err err;
    int rc;

    if (!k)
        return;
    rc = cairn_kube_list_pods(k, "node-a", NULL, NULL, rv, &err);
    CHECK(rc == CAIRN_FAILED, "401 rc %d", rc);
    CHECK(cairn_kube_last_status(k) == 401, "status %ld", cairn_kube_last_status(k));
    snprintf(expect, sizeof expect, "kubeconfig '%s' user 'agent'", cfg);
    CHECK(strstr(err.msg, "401") && strstr(err.msg, expect), "401 message: %s", err.msg);
    CHECK(!strstr(err.msg, "wrong-token-xyz") && !strstr(err.msg, TOKEN), "token in message");
    {
        struct cairn_kube_tuning t;
        struct cairn_kube_pod_handler h = {NULL, NULL, NULL, auth_error};
        struct auth_seen a = {0, 0, ""};
        cairn_kube_get_tuning(k, &t);
        CHECK(cairn_kube_backoff_ms(&t, 0, 1) >= t.auth_ms / 2, "401/403 not retried fast");
        /* the loop reports it with the long delay (auth_ms 200: 100..200 ms,
         * where a 500 waits 10..20 ms) */
        rc = cairn_kube_pods_run(k, "node-a", &h, &a, &err);
        CHECK(rc == 3 && a.calls == 1, "loop stopped by on_error: %d", rc);
        CHECK(a.delay >= 100 && a.delay <= 200, "401 delay %u ms", a.delay);
        CHECK(strstr(a.msg, "401") && strstr(a.msg, expect), "loop 401 message: %s", a.msg);
    }
    cairn_kube_free(k);

    good = open_with_token(TOKEN, cfg, sizeof cfg);
    if (!good)
        return;
    ctlv("POST", "fail", "{\"method\":\"GET\",\"path\":\"/api/v1/pods\",\"status\":403}");
    rc = cairn_kube_list_pods(good, "node-a", NULL, NULL, rv, &err);
    CHECK(rc == CAIRN_FAILED && cairn_kube_last_status(good) == 403, "403 rc %d", rc);
    CHECK(strstr(err.msg, "forbidden (403)") && strstr(err.msg, "ClusterRole") &&
              strstr(err.msg, "system:serviceaccount:cairn-system:cairn-agent"),
          "403 message: %s", err.msg);
    ctlv("POST", "fail", "{\"method\":\"GET\",\"path\":\"/api/v1/pods\",\"status\":503}");
    rc = cairn_kube_list_pods(good, "node-a", NULL, NULL, rv, &err);
    CHECK(rc == CAIRN_RETRY, "503 is RETRY: %d %s", rc, err.msg);
    cairn_kube_free(good);
}

/* ---- PVCs, PVs, events ---- */

/* The Event as sent, against the Kubernetes OpenAPI schema (unknown fields
 * too) with tests/k8s/validate.js (kubernetes-models), when node and the
 * npm modules are installed (tests/e2e/k8s_manifests.sh installs them). */
static void validate_event(json_t *ev)
{
    char dir[1100], path[400], cmd[2000];
    const char *slash = strrchr(script, '/');
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - script), script);
    snprintf(cmd, sizeof cmd, "%s/node_modules/kubernetes-models", dir);
    if (system("command -v node >/dev/null 2>&1") != 0 || access(cmd, R_OK) != 0) {
        fprintf(stderr, "note: node or tests/k8s/node_modules missing: Event schema check "
                        "skipped\n");
        return;
    }
    snprintf(path, sizeof path, "%s/event.yaml", tmpdir); /* JSON is YAML */
    CHECK(json_dump_file(ev, path, JSON_COMPACT) == 0, "write %s", path);
    snprintf(cmd, sizeof cmd, "node '%s/validate.js' '%s' >&2", dir, path);
    CHECK(system(cmd) == 0, "the Event the client sent fails the Kubernetes schema");
}

static void test_pvc(cairn_kube *k)
{
    json_t *pvc = NULL, *log, *last = NULL, *e, *want, *stored;
    cairn_err err;
    size_t i;
    int rc;
    const char *uid;
    struct cairn_kube_kv kv[] = {
        {"cairn.io/last-backup", "2026-11-21T22:00:00Z"},
        {"cairn.io/last-status", "ok"},
        {"cairn.io/backup-requested-at", NULL},
    };

    ctlv("POST", "pvc", "{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolumeClaim\",\"metadata\":"
                        "{\"name\":\"data\",\"namespace\":\"shop\",\"annotations\":{"
                        "\"cairn.io/schedule\":\"@daily\",\"cairn.io/last-status\":\"failed\","
                        "\"cairn.io/backup-requested-at\":\"2026-11-21T21:00:00Z\"}},"
                        "\"spec\":{\"volumeName\":\"pv-1\"}}");
    ctlv("POST", "pv", "{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolume\",\"metadata\":"
                       "{\"name\":\"pv-1\"},\"spec\":{\"csi\":{\"driver\":\"d\","
                       "\"volumeHandle\":\"h\"}}}");
    rc = cairn_kube_get_pvc(k, "shop", "data", &pvc, &err);
    CHECK(rc == CAIRN_OK, "get pvc: %s", err.msg);
    uid = json_string_value(json_object_get(json_object_get(pvc, "metadata"), "uid"));
    CHECK(uid != NULL, "pvc uid");
    {
        json_t *pv = NULL;
        CHECK(cairn_kube_get_pv(k, "pv-1", &pv, &err) == CAIRN_OK, "get pv: %s", err.msg);
        CHECK(json_is_object(json_object_get(json_object_get(pv, "spec"), "csi")), "pv csi");
        json_decref(pv);
        CHECK(cairn_kube_get_pv(k, "nope", &pv, &err) == CAIRN_NOTFOUND, "404: %s", err.msg);
        CHECK(cairn_kube_get_pvc(k, "shop", "../x", &pv, &err) == CAIRN_FAILED, "bad name");
    }

    ctlv("POST", "reset-log", NULL);
    rc = cairn_kube_patch_pvc_annotations(k, "shop", "data", kv, 3, NULL, &err);
    CHECK(rc == CAIRN_OK, "patch: %s", err.msg);
    rc = cairn_kube_post_pvc_event(k, "shop", "data", uid, "Normal", "BackupSucceeded",
                                   "snapshot 1a2b3c: 1.5 GiB read, 12 MiB new", &err);
    CHECK(rc == CAIRN_OK, "event: %s", err.msg);
    log = ctl("GET", "log", NULL);
    CHECK(json_array_size(log) == 2, "two requests, got %zu", json_array_size(log));

    last = json_array_get(log, 0);
    CHECK(strcmp(json_string_value(json_object_get(last, "method")), "PATCH") == 0, "PATCH");
    CHECK(strcmp(json_string_value(json_object_get(last, "path")),
                 "/api/v1/namespaces/shop/persistentvolumeclaims/data") == 0, "patch path");
    CHECK(strcmp(json_string_value(json_object_get(last, "content_type")),
                 "application/merge-patch+json") == 0, "merge-patch content type");
    want = json_loads("{\"metadata\":{\"annotations\":{\"cairn.io/last-backup\":"
                      "\"2026-11-21T22:00:00Z\",\"cairn.io/last-status\":\"ok\","
                      "\"cairn.io/backup-requested-at\":null}}}", 0, NULL);
    CHECK(json_equal(json_object_get(last, "body"), want), "patch body is exactly the fields");
    json_decref(want);
    stored = ctl("GET", "pvc/shop/data", NULL);
    e = json_object_get(json_object_get(stored, "metadata"), "annotations");
    CHECK(json_object_size(e) == 3, "annotations after merge: %zu", json_object_size(e));
    CHECK(strcmp(json_string_value(json_object_get(e, "cairn.io/schedule")), "@daily") == 0,
          "others kept");
    CHECK(strcmp(json_string_value(json_object_get(e, "cairn.io/last-status")), "ok") == 0,
          "replaced");
    CHECK(!json_object_get(e, "cairn.io/backup-requested-at"), "null removes");
    CHECK(json_is_object(json_object_get(stored, "spec")), "spec untouched");
    json_decref(stored);

    last = json_array_get(log, 1);
    CHECK(strcmp(json_string_value(json_object_get(last, "method")), "POST") == 0, "POST");
    CHECK(strcmp(json_string_value(json_object_get(last, "path")),
                 "/api/v1/namespaces/shop/events") == 0, "event path");
    e = json_object_get(last, "body");
    {
        json_t *inv = json_object_get(e, "involvedObject");
        CHECK(strcmp(json_string_value(json_object_get(inv, "kind")), "PersistentVolumeClaim") == 0,
              "involvedObject.kind");
        CHECK(strcmp(json_string_value(json_object_get(inv, "name")), "data") == 0, "name");
        CHECK(strcmp(json_string_value(json_object_get(inv, "namespace")), "shop") == 0, "ns");
        CHECK(strcmp(json_string_value(json_object_get(inv, "apiVersion")), "v1") == 0, "apiv");
        CHECK(json_string_value(json_object_get(inv, "uid")) &&
                  strcmp(json_string_value(json_object_get(inv, "uid")), uid) == 0, "uid");
        CHECK(strcmp(json_string_value(json_object_get(e, "type")), "Normal") == 0, "type");
        CHECK(strcmp(json_string_value(json_object_get(e, "reason")), "BackupSucceeded") == 0,
              "reason");
        CHECK(strcmp(json_string_value(json_object_get(json_object_get(e, "source"), "host")),
                     "node-a") == 0, "source.host");
        CHECK(json_string_value(json_object_get(e, "firstTimestamp")) != NULL, "timestamp");
    }
    validate_event(json_object_get(last, "body"));
    i = 0;
    json_array_foreach(log, i, e)
        CHECK(strcmp(json_string_value(json_object_get(e, "auth")), "ok") == 0, "auth");
    json_decref(log);
    {
        json_t *evs = ctl("GET", "events", NULL);
        CHECK(json_array_size(evs) == 1, "event stored (201)");
        json_decref(evs);
    }
    CHECK(cairn_kube_post_pvc_event(k, "shop", "data", uid, "Bad", "X", "m", &err) ==
              CAIRN_FAILED, "bad event type");
    json_decref(pvc);
}

/* ---- any collection: PVCs, whose annotation changes the agent follows ---- */

struct pvcw {
    cairn_kube *writer; /* a second handle: one thread at a time per handle */
    int synced, seen_patch;
    size_t listed;
};

static int pvcw_relist(void *arg)
{
    ((struct pvcw *)arg)->listed = 0;
    return 0;
}

static int pvcw_obj(void *arg, enum cairn_kube_event ev, json_t *obj)
{
    struct pvcw *w = arg;
    const char *v = json_string_value(json_object_get(
        json_object_get(json_object_get(obj, "metadata"), "annotations"),
        "cairn.io/backup-requested-at"));
    if (!w->synced) {
        w->listed++;
        return 0;
    }
    if (ev == CAIRN_KUBE_MODIFIED && v && strcmp(v, "2026-11-21T23:00:00Z") == 0) {
        w->seen_patch = 1;
        return 7;
    }
    return 0;
}

static int pvcw_synced(void *arg, const char *rv)
{
    struct pvcw *w = arg;
    struct cairn_kube_kv kv = {"cairn.io/backup-requested-at", "2026-11-21T23:00:00Z"};
    cairn_err err;
    w->synced = 1;
    CHECK(cairn_kube_patch_pvc_annotations(w->writer, "shop", "data", &kv, 1, NULL, &err) ==
              CAIRN_OK, "patch: %s", err.msg);
    return 0;
}

static void test_pvc_watch(cairn_kube *k)
{
    char cfg[300];
    struct pvcw w;
    struct cairn_kube_pod_handler h = {pvcw_relist, pvcw_obj, pvcw_synced, NULL};
    cairn_err err;
    json_t *log, *e;
    size_t i;
    int rc;

    memset(&w, 0, sizeof w);
    w.writer = open_with_token(TOKEN, cfg, sizeof cfg);
    if (!w.writer)
        return;
    ctlv("POST", "pvc", "{\"metadata\":{\"name\":\"other\",\"namespace\":\"web\"}}");
    ctlv("POST", "reset-log", NULL);
    rc = cairn_kube_informer_run(k, "/api/v1/persistentvolumeclaims", NULL, &h, &w, &err);
    CHECK(rc == 7 && w.seen_patch, "PVC watch saw the annotation change: %d %s", rc, err.msg);
    CHECK(w.listed == 2, "PVCs listed: %zu", w.listed);
    log = ctl("GET", "log", NULL);
    json_array_foreach(log, i, e) {
        json_t *q = json_object_get(e, "query");
        if (strcmp(json_string_value(json_object_get(e, "method")), "GET") != 0)
            continue;
        CHECK(strcmp(json_string_value(json_object_get(e, "path")),
                     "/api/v1/persistentvolumeclaims") == 0, "PVC collection");
        CHECK(json_object_get(q, "fieldSelector") == NULL, "no field selector");
    }
    json_decref(log);
    CHECK(cairn_kube_informer_run(k, "/api/v1/../x", NULL, &h, &w, &err) == CAIRN_FAILED,
          "bad collection refused");
    cairn_kube_free(w.writer);
}

/* ---- in-cluster over TLS ---- */

static void test_incluster_tls(void)
{
    char cmd[2048], cert[300], key[300], sa[300], p[400], portstr[16];
    struct server tls = {0, 0, 0}, saved;
    cairn_kube *k = NULL;
    cairn_err err;
    char rv[CAIRN_KUBE_RV_MAX];
    int rc;

    snprintf(cert, sizeof cert, "%s/tls.crt", tmpdir);
    snprintf(key, sizeof key, "%s/tls.key", tmpdir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 2 "
             "-subj /CN=kubernetes -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
             key, cert);
    if (system(cmd) != 0) {
        fprintf(stderr, "note: openssl cannot make a certificate: in-cluster TLS test skipped\n");
        return;
    }
    if (start_server(&tls, cert, key) != 0) {
        CHECK(0, "TLS fake server did not start");
        return;
    }
    snprintf(sa, sizeof sa, "%s/sa", tmpdir);
    mkdir(sa, 0700);
    snprintf(p, sizeof p, "%s/token", sa);
    write_text(p, TOKEN "\n");
    snprintf(p, sizeof p, "%s/namespace", sa);
    write_text(p, "cairn-system");
    snprintf(cmd, sizeof cmd, "cp %s %s/ca.crt", cert, sa);
    CHECK(system(cmd) == 0, "cp ca");
    snprintf(portstr, sizeof portstr, "%d", tls.port);
    unsetenv("KUBECONFIG");
    setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", portstr, 1);
    setenv("CAIRN_KUBE_SA_DIR", sa, 1);
    rc = cairn_kube_open_env(&k, &err);
    CHECK(rc == CAIRN_OK, "in-cluster: %s", err.msg);
    if (k) {
        CHECK(strcmp(cairn_kube_namespace(k), "cairn-system") == 0, "namespace file");
        rc = cairn_kube_list_pods(k, "node-a", NULL, NULL, rv, &err);
        CHECK(rc == CAIRN_OK, "list over TLS with the SA CA: %s", err.msg);
        /* a rotated (here: wrong) token is read again and the 401 names the file */
        snprintf(p, sizeof p, "%s/token", sa);
        write_text(p, "rotated-but-wrong\n");
        rc = cairn_kube_list_pods(k, "node-a", NULL, NULL, rv, &err);
        CHECK(rc == CAIRN_FAILED && strstr(err.msg, "401") &&
                  strstr(err.msg, "ServiceAccount token '") && strstr(err.msg, "/sa/token'"),
              "401 names the token file: %s", err.msg);
        CHECK(!strstr(err.msg, "rotated-but-wrong"), "token in message");
        cairn_kube_free(k);
    }
    /* without the CA the server's certificate is refused */
    snprintf(p, sizeof p, "%s/ca.crt", sa);
    unlink(p);
    if (cairn_kube_open_incluster(NULL, &k, &err) == CAIRN_OK) {
        rc = cairn_kube_list_pods(k, "node-a", NULL, NULL, rv, &err);
        CHECK(rc == CAIRN_RETRY, "unverified certificate refused: %d %s", rc, err.msg);
        cairn_kube_free(k);
    }
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    CHECK(cairn_kube_open_env(&k, &err) == CAIRN_FAILED && strstr(err.msg, "KUBECONFIG"),
          "no config: %s", err.msg);
    saved = srv;
    srv = tls;
    stop_server(&srv);
    srv = saved;
}

/* ---- watch timeout: watch again from the same resourceVersion, no re-list ---- */

struct wt {
    char rv[CAIRN_KUBE_RV_MAX];
    int synced, late, relists;
    pthread_t th;
    int th_started;
};

static void *add_late(void *arg)
{
    (void)arg;
    usleep(2600 * 1000); /* two 1 s watches end meanwhile */
    add_pod("shop", "late", "node-a");
    return NULL;
}

static int wt_relist(void *arg)
{
    ((struct wt *)arg)->relists++;
    return 0;
}

static int wt_pod(void *arg, enum cairn_kube_event ev, json_t *pod)
{
    struct wt *w = arg;
    const char *name = json_string_value(json_object_get(json_object_get(pod, "metadata"), "name"));
    if (w->synced && ev == CAIRN_KUBE_ADDED && name && strcmp(name, "late") == 0) {
        w->late = 1;
        return 1;
    }
    return 0;
}

static int wt_synced(void *arg, const char *rv)
{
    struct wt *w = arg;
    w->synced++;
    snprintf(w->rv, sizeof w->rv, "%s", rv);
    if (w->synced == 1 && pthread_create(&w->th, NULL, add_late, NULL) == 0)
        w->th_started = 1;
    return 0;
}

static void test_watch_timeout(cairn_kube *k)
{
    struct cairn_kube_tuning t, saved;
    struct cairn_kube_pod_handler h = {wt_relist, wt_pod, wt_synced, NULL};
    struct wt w;
    cairn_err err;
    json_t *log, *e;
    size_t i, watches = 0, lists = 0;
    int rc;

    memset(&w, 0, sizeof w);
    cairn_kube_get_tuning(k, &saved);
    t = saved;
    t.watch_timeout_s = 1;
    cairn_kube_set_tuning(k, &t);
    ctlv("POST", "reset-log", NULL);
    rc = cairn_kube_pods_run(k, "node-a", &h, &w, &err);
    if (w.th_started)
        pthread_join(w.th, NULL);
    cairn_kube_set_tuning(k, &saved);
    CHECK(rc == 1 && w.late, "the loop saw the late pod: rc %d late %d", rc, w.late);
    CHECK(w.relists == 1 && w.synced == 1, "a watch timeout is not a re-list: %d lists",
          w.relists);
    log = ctl("GET", "log", NULL);
    json_array_foreach(log, i, e) {
        json_t *q = json_object_get(e, "query");
        const char *rv = json_string_value(json_object_get(q, "resourceVersion"));
        const char *fs = json_string_value(json_object_get(q, "fieldSelector"));
        if (strcmp(json_string_value(json_object_get(e, "path")), "/api/v1/pods") != 0)
            continue;
        CHECK(fs && strcmp(fs, "spec.nodeName=node-a") == 0, "fieldSelector %s", fs ? fs : "");
        if (!json_object_get(q, "watch")) {
            lists++;
            continue;
        }
        watches++;
        CHECK(rv && strcmp(rv, w.rv) == 0, "watch %zu from resourceVersion %s, not the list's %s",
              watches, rv ? rv : "(none)", w.rv);
        CHECK(strcmp(json_string_value(json_object_get(q, "timeoutSeconds")), "1") == 0,
              "timeoutSeconds");
    }
    CHECK(watches >= 3, "watches: %zu (two timed out, then the event)", watches);
    json_decref(log);
    (void)lists;
}

/* ---- an unreachable API server: backoff, doubling, with jitter ---- */

struct unreach {
    unsigned delays[4];
    int n;
    char msg[CAIRN_ERRMSG_MAX];
};

static int unreach_error(void *arg, const cairn_err *e, unsigned delay_ms)
{
    struct unreach *u = arg;
    u->delays[u->n++] = delay_ms;
    snprintf(u->msg, sizeof u->msg, "%s", e->msg);
    return u->n == 4 ? 3 : 0;
}

static void test_unreachable(void)
{
    char path[300];
    struct cairn_kube_tuning t;
    struct cairn_kube_pod_handler h = {NULL, NULL, NULL, unreach_error};
    struct unreach u;
    cairn_kube *k = NULL;
    cairn_err err;
    int rc, i, s, port;

    /* a port nobody listens on: bind one, note it, close it */
    s = socket(AF_INET, SOCK_STREAM, 0);
    {
        struct sockaddr_in a;
        socklen_t len = sizeof a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bind(s, (struct sockaddr *)&a, sizeof a);
        getsockname(s, (struct sockaddr *)&a, &len);
        port = ntohs(a.sin_port);
        close(s);
    }
    snprintf(path, sizeof path, "%s/kubeconfig.unreachable", tmpdir);
    {
        char text[600];
        snprintf(text, sizeof text,
                 "{\"apiVersion\":\"v1\",\"kind\":\"Config\",\"current-context\":\"c\","
                 "\"clusters\":[{\"name\":\"x\",\"cluster\":{\"server\":"
                 "\"http://127.0.0.1:%d\"}}],\"users\":[{\"name\":\"u\",\"user\":{\"token\":"
                 "\"t\"}}],\"contexts\":[{\"name\":\"c\",\"context\":{\"cluster\":\"x\","
                 "\"user\":\"u\"}}]}",
                 port);
        CHECK(write_text(path, text) == 0, "write %s", path);
    }
    if (cairn_kube_open_kubeconfig(path, &k, &err) != CAIRN_OK) {
        CHECK(0, "open: %s", err.msg);
        return;
    }
    cairn_kube_get_tuning(k, &t);
    t.base_ms = 20;
    t.max_ms = 80;
    cairn_kube_set_tuning(k, &t);
    memset(&u, 0, sizeof u);
    rc = cairn_kube_pods_run(k, "node-a", &h, &u, &err);
    CHECK(rc == 3 && u.n == 4, "stopped by on_error: rc %d after %d errors", rc, u.n);
    for (i = 0; i < 4; i++) {
        unsigned d = 20u << i;
        if (d > 80)
            d = 80;
        CHECK(u.delays[i] >= d / 2 && u.delays[i] <= d, "delay %d: %u ms not in [%u,%u]", i,
              u.delays[i], d / 2, d);
    }
    CHECK(strstr(u.msg, "reachable") && strstr(u.msg, "127.0.0.1"),
          "the message names the server: %s", u.msg);
    cairn_kube_free(k);
}

int main(void)
{
    cairn_kube *k;
    char cfg[300];

    if (system("python3 -c 'import http.server' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP: python3 is not available for the fake API server\n");
        return 77;
    }
    if (find_script() != 0) {
        fprintf(stderr, "SKIP: cannot find tests/k8s/fake_apiserver.py (set CAIRN_SRC)\n");
        return 77;
    }
    snprintf(tmpdir, sizeof tmpdir, "%s/test_kube.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    alarm(120); /* a hung watch fails the test instead of hanging ctest */
    {
        cairn_err e = {0};
        if (cairn_curl_load(&e) != CAIRN_OK) {
            fprintf(stderr, "FAIL: %s\n", e.msg);
            return 1;
        }
    }
    setenv("NODE_NAME", "node-a", 1);

    test_config_parse();
    if (start_server(&srv, NULL, NULL) != 0) {
        fprintf(stderr, "FAIL: the fake API server did not start (%s)\n", script);
        return 1;
    }
    add_pod("shop", "a1", "node-a");
    add_pod("shop", "b1", "node-b");
    add_pod("shop", "a2", "node-a");
    add_pod("web", "a5", "node-a");
    add_pod("shop", "a3", "node-a");
    add_pod("shop", "b2", "node-b");
    add_pod("shop", "a4", "node-a");

    k = open_with_token(TOKEN, cfg, sizeof cfg);
    if (k) {
        CHECK(strcmp(cairn_kube_namespace(k), "shop") == 0, "context namespace");
        test_list(k);
        test_loop(k);
        test_watch_limits(k);
        test_stop(k);
        test_pvc(k);
        test_pvc_watch(k);
        test_watch_timeout(k);
        cairn_kube_free(k);
    }
    test_auth_errors();
    test_unreachable();
    test_incluster_tls();
    stop_server(&srv);
    {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "note: cannot remove %s\n", tmpdir);
    }
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_kube: all passed\n");
    return 0;
}

/* agent/kube.c — the Kubernetes API client (agent/kube.h). */
#define _GNU_SOURCE
#include "kube.h"

#include "../uploaders/curl_dl.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SRC_MAX 512

struct cairn_kube {
    CURL *h;
    char *server;        /* no trailing '/' */
    char *token;         /* literal token (kubeconfig), or NULL */
    char *token_file;    /* re-read before each request, or NULL */
    char *ca_file;       /* PEM file, or NULL */
    cairn_buf ca_blob;   /* PEM in memory (certificate-authority-data) */
    int insecure;
    char ns[254];
    char source[SRC_MAX];
    long last_status;
    struct cairn_kube_tuning t;
    const volatile sig_atomic_t *stop;
};

static int stopping(const cairn_kube *k)
{
    return k->stop && *k->stop;
}

/* ---- names ---- */

/* A namespace / object name safe to put in a path: DNS-1123 characters. */
static int name_ok(const char *s)
{
    size_t n = 0;
    if (!s || !*s)
        return 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return 0;
        if (n >= 253)
            return 0;
    }
    return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* ---- handle and configuration ---- */

static cairn_kube *kube_new(void)
{
    cairn_kube *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    cairn_buf_init(&k->ca_blob, 1u << 20);
    k->t.max_response = CAIRN_KUBE_MAX_RESPONSE;
    k->t.max_line = CAIRN_KUBE_MAX_LINE;
    k->t.page = CAIRN_KUBE_PAGE;
    k->t.base_ms = 500;
    k->t.max_ms = 30000;
    k->t.auth_ms = 60000;
    k->t.watch_timeout_s = 300;
    k->t.request_timeout_s = 60;
    snprintf(k->ns, sizeof k->ns, "default");
    return k;
}

static int kube_finish(cairn_kube *k, cairn_kube **out, cairn_err *err)
{
    size_t n;
    int rc;
    if ((rc = cairn_curl_load(err)) != CAIRN_OK) {
        cairn_kube_free(k);
        return rc;
    }
    n = strlen(k->server);
    while (n > 0 && k->server[n - 1] == '/')
        k->server[--n] = 0;
    if (strncmp(k->server, "https://", 8) != 0 && strncmp(k->server, "http://", 7) != 0) {
        rc = cairn_error(err, CAIRN_FAILED, "API server '%s' is not an http:// or https:// URL",
                         k->server);
        cairn_kube_free(k);
        return rc;
    }
    k->h = curl_easy_init();
    if (!k->h) {
        cairn_kube_free(k);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    *out = k;
    return CAIRN_OK;
}

void cairn_kube_free(cairn_kube *k)
{
    if (!k)
        return;
    if (k->h)
        curl_easy_cleanup(k->h);
    if (k->token) {
        explicit_bzero(k->token, strlen(k->token));
        free(k->token);
    }
    free(k->server);
    free(k->token_file);
    free(k->ca_file);
    cairn_buf_free(&k->ca_blob);
    free(k);
}

int cairn_kube_open_incluster(const char *sa_dir, cairn_kube **out, cairn_err *err)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    cairn_kube *k;
    cairn_buf b = CAIRN_BUF_INIT;
    char *p;
    int rc;

    *out = NULL;
    if (!sa_dir || !*sa_dir)
        sa_dir = getenv("CAIRN_KUBE_SA_DIR");
    if (!sa_dir || !*sa_dir)
        sa_dir = CAIRN_KUBE_SA_DIR;
    if (!host || !*host || !port || !*port)
        return cairn_error(err, CAIRN_FAILED,
                           "not running in a cluster: KUBERNETES_SERVICE_HOST and "
                           "KUBERNETES_SERVICE_PORT are not set (set KUBECONFIG to use a "
                           "kubeconfig file)");
    if (!(k = kube_new()))
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    /* An IPv6 address needs brackets in a URL. */
    if (asprintf(&k->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
                 port) < 0) {
        k->server = NULL;
        cairn_kube_free(k);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    k->token_file = cairn_path_join(sa_dir, "token");
    p = cairn_path_join(sa_dir, "ca.crt");
    if (!k->token_file || !p) {
        free(p);
        cairn_kube_free(k);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    if (access(k->token_file, R_OK) != 0) {
        rc = cairn_error(err, CAIRN_FAILED,
                         "cannot read the ServiceAccount token '%s': %s (is "
                         "automountServiceAccountToken disabled for the agent's pod?)",
                         k->token_file, strerror(errno));
        free(p);
        cairn_kube_free(k);
        return rc;
    }
    if (access(p, R_OK) == 0)
        k->ca_file = p;
    else
        free(p); /* then the system CA bundle verifies the server */
    p = cairn_path_join(sa_dir, "namespace");
    if (p && cairn_read_file(p, &b, 512, NULL) == CAIRN_OK) {
        const char *s = cairn_buf_cstr(&b);
        size_t n = strcspn(s, " \t\r\n");
        if (n > 0 && n < sizeof k->ns) {
            memcpy(k->ns, s, n);
            k->ns[n] = 0;
        }
    }
    free(p);
    cairn_buf_free(&b);
    snprintf(k->source, sizeof k->source, "ServiceAccount token '%s'", k->token_file);
    return kube_finish(k, out, err);
}

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* The entry named name in the kubeconfig list `list` (clusters, users,
 * contexts), its inner object under `inner`. */
static json_t *named(json_t *cfg, const char *list, const char *name, const char *inner)
{
    json_t *arr = json_object_get(cfg, list), *e;
    size_t i;
    if (!name)
        return NULL;
    json_array_foreach(arr, i, e) {
        const char *n = jstr(e, "name");
        if (n && strcmp(n, name) == 0)
            return json_object_get(e, inner);
    }
    return NULL;
}

/* A relative file path in a kubeconfig is relative to the kubeconfig's dir. */
static char *config_path(const char *cfgpath, const char *p)
{
    const char *slash;
    char *dir, *r;
    if (p[0] == '/' || !(slash = strrchr(cfgpath, '/')))
        return strdup(p);
    dir = strndup(cfgpath, (size_t)(slash - cfgpath));
    if (!dir)
        return NULL;
    r = cairn_path_join(dir, p);
    free(dir);
    return r;
}

static int truthy(const json_t *v)
{
    const char *s;
    if (json_is_true(v))
        return 1;
    s = json_string_value(v);
    return s && strcmp(s, "true") == 0;
}

int cairn_kube_open_kubeconfig(const char *path, cairn_kube **out, cairn_err *err)
{
    cairn_buf b = CAIRN_BUF_INIT;
    json_t *cfg = NULL, *ctx, *cluster, *user;
    const char *cur, *s, *uname;
    cairn_kube *k = NULL;
    int rc;

    *out = NULL;
    if ((rc = cairn_read_file(path, &b, 4u << 20, err)) != CAIRN_OK) {
        cairn_buf_free(&b);
        return cairn_error_prefix(err, "kubeconfig");
    }
    rc = cairn_kube_parse_config_text(cairn_buf_cstr(&b), b.len, &cfg, err);
    cairn_buf_free(&b);
    if (rc != CAIRN_OK)
        return cairn_error_prefix(err, "kubeconfig '%s'", path);
    cur = jstr(cfg, "current-context");
    ctx = named(cfg, "contexts", cur, "context");
    if (!ctx) {
        rc = cairn_error(err, CAIRN_FAILED,
                         "kubeconfig '%s': no current-context, or context '%s' not found "
                         "(kubectl config use-context NAME)",
                         path, cur ? cur : "");
        goto out;
    }
    cluster = named(cfg, "clusters", jstr(ctx, "cluster"), "cluster");
    uname = jstr(ctx, "user");
    user = named(cfg, "users", uname, "user");
    if (!cluster || !jstr(cluster, "server")) {
        rc = cairn_error(err, CAIRN_FAILED, "kubeconfig '%s': context '%s' has no cluster "
                         "with a server", path, cur);
        goto out;
    }
    if (!(k = kube_new()) || !(k->server = strdup(jstr(cluster, "server")))) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    k->insecure = truthy(json_object_get(cluster, "insecure-skip-tls-verify"));
    if ((s = jstr(cluster, "certificate-authority-data"))) {
        if (cairn_b64_decode(s, &k->ca_blob) != CAIRN_OK) {
            rc = cairn_error(err, CAIRN_FAILED, "kubeconfig '%s': cluster '%s': "
                             "certificate-authority-data is not base64", path,
                             jstr(ctx, "cluster"));
            goto out;
        }
    } else if ((s = jstr(cluster, "certificate-authority"))) {
        k->ca_file = config_path(path, s);
    }
    if (user && (json_object_get(user, "client-certificate-data") ||
                 json_object_get(user, "client-certificate") ||
                 json_object_get(user, "exec") || json_object_get(user, "auth-provider")) &&
        !jstr(user, "token") && !jstr(user, "tokenFile")) {
        rc = cairn_error(err, CAIRN_FAILED,
                         "kubeconfig '%s': user '%s' authenticates with a client certificate "
                         "or a plugin, which cairn does not support: give it a token "
                         "(e.g. kubectl create token SERVICEACCOUNT)", path, uname ? uname : "");
        goto out;
    }
    if (user && (s = jstr(user, "token"))) {
        k->token = strdup(s);
    } else if (user && (s = jstr(user, "tokenFile"))) {
        k->token_file = config_path(path, s);
    }
    if ((s = jstr(ctx, "namespace")) && strlen(s) < sizeof k->ns)
        snprintf(k->ns, sizeof k->ns, "%s", s);
    snprintf(k->source, sizeof k->source, "kubeconfig '%s' user '%s'", path,
             uname ? uname : "");
    json_decref(cfg);
    return kube_finish(k, out, err);
out:
    json_decref(cfg);
    cairn_kube_free(k);
    return rc;
}

int cairn_kube_open_env(cairn_kube **out, cairn_err *err)
{
    const char *kc = getenv("KUBECONFIG");
    if (kc && *kc) {
        char first[4096];
        size_t n = strcspn(kc, ":");
        if (n >= sizeof first)
            return cairn_error(err, CAIRN_FAILED, "KUBECONFIG is too long");
        memcpy(first, kc, n);
        first[n] = 0;
        return cairn_kube_open_kubeconfig(first, out, err);
    }
    return cairn_kube_open_incluster(NULL, out, err);
}

const char *cairn_kube_server(const cairn_kube *k) { return k->server; }
const char *cairn_kube_token_source(const cairn_kube *k) { return k->source; }
const char *cairn_kube_namespace(const cairn_kube *k) { return k->ns; }
long cairn_kube_last_status(const cairn_kube *k) { return k->last_status; }
void cairn_kube_get_tuning(const cairn_kube *k, struct cairn_kube_tuning *t) { *t = k->t; }

void cairn_kube_set_tuning(cairn_kube *k, const struct cairn_kube_tuning *t)
{
    k->t = *t;
    if (k->t.page == 0)
        k->t.page = CAIRN_KUBE_PAGE;
    if (k->t.max_response < 4096)
        k->t.max_response = 4096;
    if (k->t.max_line < 4096)
        k->t.max_line = 4096;
    if (k->t.base_ms == 0)
        k->t.base_ms = 1;
    if (k->t.max_ms < k->t.base_ms)
        k->t.max_ms = k->t.base_ms;
    if (k->t.watch_timeout_s == 0)
        k->t.watch_timeout_s = 300;
    if (k->t.request_timeout_s == 0)
        k->t.request_timeout_s = 60;
}

void cairn_kube_set_stop_flag(cairn_kube *k, const volatile sig_atomic_t *flag)
{
    k->stop = flag;
}

/* ---- one transfer ---- */

struct xfer {
    cairn_kube *k;
    cairn_buf body;          /* the whole body (plain requests, error bodies) */
    int streaming;           /* watch: events go to on_line */
    int (*on_line)(struct xfer *x, const char *line, size_t len);
    cairn_buf line;          /* watch: the partial line */
    int abort_rc;            /* why the write callback stopped the transfer */
    cairn_err abort_err;
    void *ctx;               /* watch state */
};

static size_t on_write(char *p, size_t sz, size_t nm, void *arg)
{
    struct xfer *x = arg;
    size_t n = sz * nm, i, start = 0;
    long status = 0;

    curl_easy_getinfo(x->k->h, CURLINFO_RESPONSE_CODE, &status);
    if (!x->streaming || status != 200) {
        if (x->body.len + n > x->k->t.max_response) {
            x->abort_rc = cairn_error(&x->abort_err, CAIRN_FAILED,
                                      "response larger than %zu bytes",
                                      x->k->t.max_response);
            return 0;
        }
        if (cairn_buf_append(&x->body, p, n) != CAIRN_OK) {
            x->abort_rc = cairn_error(&x->abort_err, CAIRN_FATAL, "out of memory");
            return 0;
        }
        return n;
    }
    for (i = 0; i < n; i++) {
        if (p[i] != '\n')
            continue;
        if (cairn_buf_append(&x->line, p + start, i - start) != CAIRN_OK) {
            x->abort_rc = cairn_error(&x->abort_err, CAIRN_FAILED,
                                      "watch event longer than %zu bytes", x->k->t.max_line);
            return 0;
        }
        start = i + 1;
        if (x->line.len > 0) {
            int rc = x->on_line(x, (const char *)x->line.data, x->line.len);
            cairn_buf_reset(&x->line);
            if (rc != 0) {
                x->abort_rc = rc;
                return 0;
            }
        }
    }
    if (start < n && cairn_buf_append(&x->line, p + start, n - start) != CAIRN_OK) {
        x->abort_rc = cairn_error(&x->abort_err, CAIRN_FAILED,
                                  "watch event longer than %zu bytes", x->k->t.max_line);
        return 0;
    }
    return n;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    struct xfer *x = arg;
    return stopping(x->k) ? 1 : 0;
}

/* The API server's message from a Status body, if any, into out. */
static void status_message(const cairn_buf *body, char *out, size_t outlen)
{
    json_t *j;
    const char *m;
    out[0] = 0;
    if (body->len == 0)
        return;
    j = json_loadb((const char *)body->data, body->len, 0, NULL);
    if (j && (m = jstr(j, "message")))
        snprintf(out, outlen, "%s", m);
    else
        snprintf(out, outlen, "%.*s", (int)(body->len > 200 ? 200 : body->len),
                 (const char *)body->data);
    json_decref(j);
    /* one line */
    for (char *c = out; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
}

/* The path without its query string, for messages (bounded). */
static void short_path(const char *path, char *out, size_t outlen)
{
    size_t n = strcspn(path, "?");
    snprintf(out, outlen, "%.*s", (int)(n > 300 ? 300 : n), path);
}

static int http_error(cairn_kube *k, const char *method, const char *path, long status,
                      const cairn_buf *body, cairn_err *err)
{
    char msg[512], sp[320];
    status_message(body, msg, sizeof msg);
    short_path(path, sp, sizeof sp);
    switch (status) {
    case 401:
        return cairn_error(err, CAIRN_FAILED,
                           "%s %s: unauthorized (401) from %s: the %s was rejected (%s) -- is "
                           "the token current and meant for this cluster?",
                           method, sp, k->server, k->source, msg[0] ? msg : "no message");
    case 403:
        return cairn_error(err, CAIRN_FAILED,
                           "%s %s: forbidden (403): %s -- check the RBAC of the agent's "
                           "ServiceAccount (ClusterRole and ClusterRoleBinding 'cairn-agent', "
                           "daemonset/clusterrole.yaml; credentials: %s)",
                           method, sp, msg[0] ? msg : "no message", k->source);
    case 404:
        return cairn_error(err, CAIRN_NOTFOUND, "%s %s: not found (404)%s%s", method, sp,
                           msg[0] ? ": " : "", msg);
    case 409:
        return cairn_error(err, CAIRN_EXISTS, "%s %s: conflict (409): %s", method, sp, msg);
    case 410:
        return cairn_error(err, CAIRN_RETRY, "%s %s: gone (410): %s", method, sp, msg);
    default:
        return cairn_error(err, (status == 429 || status >= 500) ? CAIRN_RETRY : CAIRN_FAILED,
                           "%s %s: HTTP %ld from %s: %s", method, sp, status, k->server,
                           msg[0] ? msg : "no message");
    }
}

static int load_token(cairn_kube *k, char **tok, cairn_err *err)
{
    cairn_buf b = CAIRN_BUF_INIT;
    size_t n;
    *tok = NULL;
    if (k->token) {
        *tok = strdup(k->token);
        return *tok ? CAIRN_OK : cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    if (!k->token_file)
        return CAIRN_OK; /* anonymous */
    if (cairn_read_file(k->token_file, &b, 64 * 1024, err) != CAIRN_OK) {
        cairn_buf_free(&b);
        return cairn_error_prefix(err, "cannot read the %s", k->source);
    }
    cairn_buf_cstr(&b);
    n = b.len;
    while (n > 0 && (b.data[n - 1] == '\n' || b.data[n - 1] == '\r' || b.data[n - 1] == ' '))
        n--;
    b.data[n] = 0;
    *tok = cairn_buf_detach(&b, NULL);
    if (!*tok || !**tok) {
        free(*tok);
        *tok = NULL;
        return cairn_error(err, CAIRN_FAILED, "the %s is empty", k->source);
    }
    return CAIRN_OK;
}

/* Performs one transfer. Headers: Accept, Content-Type if body, Authorization. */
static int perform(cairn_kube *k, struct xfer *x, const char *method, const char *path,
                   const char *ctype, const char *body, size_t blen, long timeout_s,
                   cairn_err *err)
{
    CURL *h = k->h;
    struct curl_slist *hdr = NULL, *t;
    char *url = NULL, *tok = NULL, *auth = NULL, cerr[CURL_ERROR_SIZE] = "";
    char sp[320];
    CURLcode cc;
    int rc;

    k->last_status = 0;
    short_path(path, sp, sizeof sp);
    if ((rc = load_token(k, &tok, err)) != CAIRN_OK)
        return rc;
    if (asprintf(&url, "%s%s", k->server, path) < 0) {
        url = NULL;
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    if (tok && asprintf(&auth, "Authorization: Bearer %s", tok) < 0) {
        auth = NULL;
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    if (!(t = curl_slist_append(hdr, "Accept: application/json")))
        goto oom;
    hdr = t;
    if (!(t = curl_slist_append(hdr, "User-Agent: cairn-agent/" CAIRN_VERSION)))
        goto oom;
    hdr = t;
    if (ctype) {
        char ct[128];
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        if (!(t = curl_slist_append(hdr, ct)))
            goto oom;
        hdr = t;
    }
    if (auth) {
        if (!(t = curl_slist_append(hdr, auth)))
            goto oom;
        hdr = t;
    }
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (k->insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    } else {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    }
    if (k->ca_blob.len) {
        struct curl_blob blob = {k->ca_blob.data, k->ca_blob.len, CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
    } else if (k->ca_file) {
        curl_easy_setopt(h, CURLOPT_CAINFO, k->ca_file);
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
    if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        if (body) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
        }
    }
    cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &k->last_status);
    if (cc == CURLE_WRITE_ERROR && x->abort_rc != 0) {
        rc = x->abort_rc;
        if (err && x->abort_err.msg[0])
            *err = x->abort_err;
        if (x->abort_err.msg[0])
            cairn_error_prefix(err, "%s %s", method, sp);
        goto out;
    }
    if (cc == CURLE_ABORTED_BY_CALLBACK && stopping(k)) {
        rc = cairn_error(err, CAIRN_RETRY, "%s %s: stopped", method, sp);
        goto out;
    }
    if (cc == CURLE_OPERATION_TIMEDOUT && x->streaming && k->last_status == 200) {
        rc = CAIRN_OK; /* the client-side bound on a watch: watch again */
        goto out;
    }
    if (cc != CURLE_OK) {
        rc = cairn_error(err, CAIRN_RETRY, "%s %s%s: %s (is the API server %s reachable?)",
                         method, k->server, sp, cerr[0] ? cerr : curl_easy_strerror(cc),
                         k->server);
        goto out;
    }
    if (k->last_status < 200 || k->last_status > 299)
        rc = http_error(k, method, path, k->last_status, &x->body, err);
    else
        rc = CAIRN_OK;
    goto out;
oom:
    rc = cairn_error(err, CAIRN_FATAL, "out of memory");
out:
    curl_slist_free_all(hdr);  /* frees its copy of the Authorization line */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    if (auth) {
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    if (tok) {
        explicit_bzero(tok, strlen(tok));
        free(tok);
    }
    free(url);
    return rc;
}

int cairn_kube_request(cairn_kube *k, const char *method, const char *path,
                       const char *content_type, const char *body, size_t body_len,
                       json_t **out, cairn_err *err)
{
    struct xfer x;
    int rc;
    if (out)
        *out = NULL;
    memset(&x, 0, sizeof x);
    x.k = k;
    cairn_buf_init(&x.body, k->t.max_response + 1);
    rc = perform(k, &x, method, path, content_type, body, body_len, (long)k->t.request_timeout_s,
                 err);
    if (rc == CAIRN_OK && out) {
        json_error_t je;
        char sp[320];
        *out = json_loadb((const char *)x.body.data, x.body.len, 0, &je);
        if (!*out) {
            short_path(path, sp, sizeof sp);
            rc = cairn_error(err, CAIRN_CORRUPT, "%s %s: the response is not JSON: %s",
                             method, sp, je.text);
        }
    }
    cairn_buf_free(&x.body);
    return rc;
}

int cairn_kube_get_text(cairn_kube *k, const char *path, size_t max, cairn_buf *out,
                        cairn_err *err)
{
    struct xfer x;
    int rc;
    memset(&x, 0, sizeof x);
    x.k = k;
    cairn_buf_init(&x.body, k->t.max_response + 1);
    rc = perform(k, &x, "GET", path, NULL, NULL, 0, (long)k->t.request_timeout_s, err);
    if (rc == CAIRN_OK) {
        size_t n = x.body.len, off = n > max ? n - max : 0;
        if (cairn_buf_append(out, x.body.data + off, n - off) != CAIRN_OK)
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    cairn_buf_free(&x.body);
    return rc;
}

int cairn_kube_get_json(cairn_kube *k, const char *path, json_t **out, cairn_err *err)
{
    return cairn_kube_request(k, "GET", path, NULL, NULL, 0, out, err);
}

int cairn_kube_get_pvc(cairn_kube *k, const char *ns, const char *name, json_t **out,
                       cairn_err *err)
{
    char path[600];
    if (!name_ok(ns) || !name_ok(name))
        return cairn_error(err, CAIRN_FAILED, "invalid PVC name '%.64s/%.253s'", ns ? ns : "",
                           name ? name : "");
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/persistentvolumeclaims/%s", ns, name);
    return cairn_kube_get_json(k, path, out, err);
}

int cairn_kube_get_pv(cairn_kube *k, const char *name, json_t **out, cairn_err *err)
{
    char path[400];
    if (!name_ok(name))
        return cairn_error(err, CAIRN_FAILED, "invalid PV name '%.253s'", name ? name : "");
    snprintf(path, sizeof path, "/api/v1/persistentvolumes/%s", name);
    return cairn_kube_get_json(k, path, out, err);
}

/* Sends a JSON body built by the caller (decref'd here). */
static int send_json(cairn_kube *k, const char *method, const char *path, const char *ctype,
                     json_t *body, json_t **out, cairn_err *err)
{
    char *s;
    int rc;
    if (!body)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!s)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    rc = cairn_kube_request(k, method, path, ctype, s, strlen(s), out, err);
    free(s);
    return rc;
}

int cairn_kube_patch_pvc_annotations(cairn_kube *k, const char *ns, const char *name,
                                     const struct cairn_kube_kv *kv, size_t n, json_t **out,
                                     cairn_err *err)
{
    char path[600];
    json_t *ann, *body;
    size_t i;
    if (out)
        *out = NULL;
    if (!name_ok(ns) || !name_ok(name))
        return cairn_error(err, CAIRN_FAILED, "invalid PVC name '%.64s/%.253s'", ns ? ns : "",
                           name ? name : "");
    if (!(ann = json_object()))
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    for (i = 0; i < n; i++) {
        if (!kv[i].key || !*kv[i].key) {
            json_decref(ann);
            return cairn_error(err, CAIRN_FAILED, "empty annotation key");
        }
        if (json_object_set_new(ann, kv[i].key,
                                kv[i].value ? json_string(kv[i].value) : json_null()) != 0) {
            json_decref(ann);
            return cairn_error(err, CAIRN_FAILED, "annotation '%.64s' is not valid UTF-8",
                               kv[i].key);
        }
    }
    body = json_pack("{s:{s:o}}", "metadata", "annotations", ann);
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/persistentvolumeclaims/%s", ns, name);
    return send_json(k, "PATCH", path, "application/merge-patch+json", body, out, err);
}

int cairn_kube_post_pvc_event(cairn_kube *k, const char *ns, const char *name,
                              const char *uid, const char *type, const char *reason,
                              const char *message, cairn_err *err)
{
    char path[400], now[48], gen[300];
    const char *node = getenv("NODE_NAME");
    json_t *inv, *body;
    if (!name_ok(ns) || !name_ok(name))
        return cairn_error(err, CAIRN_FAILED, "invalid PVC name '%.64s/%.253s'", ns ? ns : "",
                           name ? name : "");
    if (!type || (strcmp(type, "Normal") != 0 && strcmp(type, "Warning") != 0))
        return cairn_error(err, CAIRN_FAILED, "event type must be Normal or Warning");
    if (!node || !*node)
        node = "unknown";
    {
        /* seconds precision: the API's metav1.Time */
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    snprintf(gen, sizeof gen, "%.200s.", name);
    inv = json_pack("{s:s, s:s, s:s, s:s}", "apiVersion", "v1", "kind",
                    "PersistentVolumeClaim", "namespace", ns, "name", name);
    if (inv && uid && *uid)
        json_object_set_new(inv, "uid", json_string(uid));
    body = json_pack("{s:s, s:s, s:{s:s, s:s}, s:o, s:s, s:s, s:s, s:{s:s, s:s}, s:s, s:s, "
                     "s:s, s:s, s:i}",
                     "apiVersion", "v1", "kind", "Event", "metadata", "generateName", gen,
                     "namespace", ns, "involvedObject", inv, "type", type, "reason",
                     reason ? reason : "Backup", "message", message ? message : "", "source",
                     "component", "cairn-agent", "host", node, "reportingComponent",
                     "cairn.io/agent", "reportingInstance", node, "firstTimestamp", now,
                     "lastTimestamp", now, "count", 1);
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/events", ns);
    return send_json(k, "POST", path, "application/json", body, NULL, err);
}

/* ---- pods: list ---- */

const char *cairn_kube_event_name(enum cairn_kube_event e)
{
    switch (e) {
    case CAIRN_KUBE_ADDED: return "ADDED";
    case CAIRN_KUBE_MODIFIED: return "MODIFIED";
    case CAIRN_KUBE_DELETED: return "DELETED";
    }
    return "?";
}

/* The field selector, URL-escaped (malloc'd), or "" when none. */
static char *escaped_selector(cairn_kube *k, const char *sel)
{
    char *esc, *r;
    if (!sel || !*sel)
        return strdup("");
    esc = curl_easy_escape(k->h, sel, 0);
    if (!esc)
        return NULL;
    r = strdup(esc);
    curl_free(esc);
    return r;
}

/* A collection path we build URLs from: "/api/..." or "/apis/...", no query. */
static int collection_ok(const char *c)
{
    size_t i;
    if (!c || (strncmp(c, "/api/", 5) != 0 && strncmp(c, "/apis/", 6) != 0))
        return 0;
    for (i = 0; c[i]; i++)
        if (!((c[i] >= 'a' && c[i] <= 'z') || (c[i] >= '0' && c[i] <= '9') || c[i] == '/' ||
              c[i] == '-' || c[i] == '.'))
            return 0;
    return strstr(c, "..") == NULL && i < 512;
}

static void copy_rv(char rv[CAIRN_KUBE_RV_MAX], const char *s)
{
    if (s && strlen(s) < CAIRN_KUBE_RV_MAX)
        snprintf(rv, CAIRN_KUBE_RV_MAX, "%s", s);
}

int cairn_kube_list(cairn_kube *k, const char *collection, const char *field_selector,
                    cairn_kube_pod_cb cb, void *arg, char rv[CAIRN_KUBE_RV_MAX], cairn_err *err)
{
    char *sel, *cont = NULL, *path = NULL;
    int rc = CAIRN_OK;

    rv[0] = 0;
    if (!collection_ok(collection))
        return cairn_error(err, CAIRN_FAILED, "invalid collection path '%.128s'",
                           collection ? collection : "");
    if (!(sel = escaped_selector(k, field_selector)))
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    for (;;) {
        json_t *list = NULL, *items, *obj;
        const char *c;
        size_t i;
        char *ec = NULL;
        if (cont && !(ec = curl_easy_escape(k->h, cont, 0))) {
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
            break;
        }
        free(path);
        if (asprintf(&path, "%s?%s%s%slimit=%u%s%s", collection, *sel ? "fieldSelector=" : "",
                     sel, *sel ? "&" : "", k->t.page, ec ? "&continue=" : "",
                     ec ? ec : "") < 0) {
            path = NULL;
            curl_free(ec);
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
            break;
        }
        curl_free(ec);
        if ((rc = cairn_kube_get_json(k, path, &list, err)) != CAIRN_OK)
            break;
        items = json_object_get(list, "items");
        if (!json_is_array(items)) {
            json_decref(list);
            rc = cairn_error(err, CAIRN_CORRUPT, "GET %s: no items in the list", collection);
            break;
        }
        json_array_foreach(items, i, obj) {
            if (cb && (rc = cb(arg, CAIRN_KUBE_ADDED, obj)) != 0)
                break;
        }
        copy_rv(rv, jstr(json_object_get(list, "metadata"), "resourceVersion"));
        c = jstr(json_object_get(list, "metadata"), "continue");
        free(cont);
        cont = (c && *c && rc == 0) ? strdup(c) : NULL;
        json_decref(list);
        if (rc != 0 || !cont)
            break;
    }
    free(cont);
    free(path);
    free(sel);
    if (rc == CAIRN_OK && !rv[0])
        rc = cairn_error(err, CAIRN_CORRUPT, "GET %s: the list has no resourceVersion",
                         collection);
    return rc;
}

/* "spec.nodeName=NODE" into sel. */
static int node_selector(const char *node, char *sel, size_t len, cairn_err *err)
{
    if (!node || !*node)
        return cairn_error(err, CAIRN_FAILED, "no node name (is NODE_NAME set from the "
                           "downward API, spec.nodeName?)");
    if ((size_t)snprintf(sel, len, "spec.nodeName=%s", node) >= len)
        return cairn_error(err, CAIRN_FAILED, "node name '%.64s...' is too long", node);
    return CAIRN_OK;
}

int cairn_kube_list_pods(cairn_kube *k, const char *node, cairn_kube_pod_cb cb, void *arg,
                         char rv[CAIRN_KUBE_RV_MAX], cairn_err *err)
{
    char sel[300];
    int rc;
    rv[0] = 0;
    if ((rc = node_selector(node, sel, sizeof sel, err)) != CAIRN_OK)
        return rc;
    return cairn_kube_list(k, "/api/v1/pods", sel, cb, arg, rv, err);
}

/* ---- pods: watch ---- */

struct watch {
    char *rv;
    cairn_kube_pod_cb cb;
    void *arg;
    int gone;
    int n_events;
};

static int on_event_line(struct xfer *x, const char *line, size_t len)
{
    struct watch *w = x->ctx;
    json_error_t je;
    json_t *ev = json_loadb(line, len, 0, &je), *obj;
    const char *type;
    int rc = 0;

    if (!ev)
        return cairn_error(&x->abort_err, CAIRN_CORRUPT, "watch event is not JSON: %s",
                           je.text);
    type = jstr(ev, "type");
    obj = json_object_get(ev, "object");
    if (!type || !json_is_object(obj)) {
        json_decref(ev);
        return cairn_error(&x->abort_err, CAIRN_CORRUPT, "watch event without type or object");
    }
    w->n_events++;
    if (strcmp(type, "ERROR") == 0) {
        json_int_t code = json_integer_value(json_object_get(obj, "code"));
        const char *m = jstr(obj, "message");
        if (code == 410) {
            w->gone = 1;
            rc = cairn_error(&x->abort_err, CAIRN_NOTFOUND,
                             "resourceVersion %s is gone (410): %s", w->rv, m ? m : "");
        } else {
            rc = cairn_error(&x->abort_err, code == 429 || code >= 500 ? CAIRN_RETRY
                                                                       : CAIRN_FAILED,
                             "watch error %lld: %s", (long long)code, m ? m : "");
        }
        json_decref(ev);
        return rc;
    }
    if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0 ||
        strcmp(type, "DELETED") == 0) {
        enum cairn_kube_event e = type[0] == 'A' ? CAIRN_KUBE_ADDED
                                  : type[0] == 'M' ? CAIRN_KUBE_MODIFIED
                                                   : CAIRN_KUBE_DELETED;
        if (w->cb)
            rc = w->cb(w->arg, e, obj);
        if (rc != 0) {
            x->abort_err.msg[0] = 0;
            json_decref(ev);
            return rc;
        }
    } else if (strcmp(type, "BOOKMARK") != 0) {
        json_decref(ev);
        return 0; /* an event type of a newer API server: skipped */
    }
    copy_rv(w->rv, jstr(json_object_get(obj, "metadata"), "resourceVersion"));
    json_decref(ev);
    return 0;
}

int cairn_kube_watch(cairn_kube *k, const char *collection, const char *field_selector,
                     char rv[CAIRN_KUBE_RV_MAX], cairn_kube_pod_cb cb, void *arg,
                     cairn_err *err)
{
    struct xfer x;
    struct watch w;
    char *sel, *path = NULL, *erv;
    int rc;

    if (!collection_ok(collection))
        return cairn_error(err, CAIRN_FAILED, "invalid collection path '%.128s'",
                           collection ? collection : "");
    if (!(sel = escaped_selector(k, field_selector)))
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    erv = curl_easy_escape(k->h, rv, 0);
    if (!erv || asprintf(&path, "%s?%s%s%swatch=1&allowWatchBookmarks=true&"
                         "resourceVersion=%s&timeoutSeconds=%u",
                         collection, *sel ? "fieldSelector=" : "", sel, *sel ? "&" : "", erv,
                         k->t.watch_timeout_s) < 0) {
        curl_free(erv);
        free(sel);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    curl_free(erv);
    free(sel);
    memset(&x, 0, sizeof x);
    memset(&w, 0, sizeof w);
    w.rv = rv;
    w.cb = cb;
    w.arg = arg;
    x.k = k;
    x.streaming = 1;
    x.on_line = on_event_line;
    x.ctx = &w;
    cairn_buf_init(&x.body, k->t.max_response + 1);
    cairn_buf_init(&x.line, k->t.max_line);
    rc = perform(k, &x, "GET", path, NULL, NULL, 0, (long)k->t.watch_timeout_s + 30, err);
    if (rc == CAIRN_OK && x.line.len > 0)
        rc = on_event_line(&x, (const char *)x.line.data, x.line.len) == 0
                 ? CAIRN_OK
                 : cairn_error(err, CAIRN_CORRUPT, "watch ended inside an event");
    if (rc != CAIRN_OK && k->last_status == 410)
        rc = CAIRN_NOTFOUND;
    else if (rc == CAIRN_NOTFOUND && !w.gone)
        rc = CAIRN_FAILED; /* a 404 on the collection: not a gone resourceVersion */
    cairn_buf_free(&x.body);
    cairn_buf_free(&x.line);
    free(path);
    return rc;
}

int cairn_kube_watch_pods(cairn_kube *k, const char *node, char rv[CAIRN_KUBE_RV_MAX],
                          cairn_kube_pod_cb cb, void *arg, cairn_err *err)
{
    char sel[300];
    int rc;
    if ((rc = node_selector(node, sel, sizeof sel, err)) != CAIRN_OK)
        return rc;
    return cairn_kube_watch(k, "/api/v1/pods", sel, rv, cb, arg, err);
}

/* ---- the loop ---- */

static unsigned rand_below(unsigned n)
{
    uint32_t r;
    if (n == 0)
        return 0;
    cairn_random(&r, sizeof r);
    return r % n;
}

unsigned cairn_kube_backoff_ms(const struct cairn_kube_tuning *t, unsigned attempt, int auth)
{
    unsigned long long d = t->base_ms ? t->base_ms : 1;
    unsigned i;
    for (i = 0; i < attempt && d < t->max_ms; i++)
        d *= 2;
    if (d > t->max_ms)
        d = t->max_ms;
    if (auth && d < t->auth_ms)
        d = t->auth_ms;
    return (unsigned)(d / 2 + rand_below((unsigned)(d - d / 2) + 1));
}

static void nap(cairn_kube *k, unsigned ms)
{
    while (ms > 0 && !stopping(k)) {
        unsigned s = ms > 100 ? 100 : ms;
        struct timespec ts = {0, (long)s * 1000000L};
        nanosleep(&ts, NULL);
        ms -= s;
    }
}

struct relay {
    const struct cairn_kube_pod_handler *h;
    void *arg;
};

static int relay_pod(void *arg, enum cairn_kube_event ev, json_t *pod)
{
    struct relay *r = arg;
    return r->h->on_pod ? r->h->on_pod(r->arg, ev, pod) : 0;
}

int cairn_kube_informer_run(cairn_kube *k, const char *collection, const char *field_selector,
                            const struct cairn_kube_pod_handler *h, void *arg, cairn_err *err)
{
    struct relay r = {h, arg};
    char rv[CAIRN_KUBE_RV_MAX] = "", what[700];
    unsigned fails = 0;
    int need_list = 1, rc;
    cairn_err e;

    if (!collection_ok(collection))
        return cairn_error(err, CAIRN_FAILED, "invalid collection path '%.128s'",
                           collection ? collection : "");
    snprintf(what, sizeof what, "%s%s%.300s%s", collection,
             field_selector && *field_selector ? " (" : "",
             field_selector ? field_selector : "", field_selector && *field_selector ? ")" : "");
    while (!stopping(k)) {
        cairn_err_clear(&e);
        if (need_list) {
            if (h->on_relist && (rc = h->on_relist(arg)) != 0)
                return rc;
            rc = cairn_kube_list(k, collection, field_selector, relay_pod, &r, rv, &e);
            if (rc == CAIRN_OK) {
                need_list = 0;
                fails = 0;
                if (h->on_synced && (rc = h->on_synced(arg, rv)) != 0)
                    return rc;
                continue;
            }
            if (rc > 0)
                return rc;
            cairn_error_prefix(&e, "cannot list %s", what);
        } else {
            rc = cairn_kube_watch(k, collection, field_selector, rv, relay_pod, &r, &e);
            if (rc > 0)
                return rc;
            if (rc == CAIRN_OK) {
                fails = 0;
                continue; /* the server closed the watch: watch again from rv */
            }
            if (rc == CAIRN_NOTFOUND) {
                need_list = 1; /* 410 Gone: list again, no delay */
                continue;
            }
            cairn_error_prefix(&e, "watch of %s", what);
            /* after other errors the events in between may be lost: list again */
            need_list = 1;
        }
        if (stopping(k))
            break;
        if (rc == CAIRN_FATAL) {
            if (err)
                *err = e;
            return rc;
        }
        {
            long st = k->last_status;
            unsigned d = cairn_kube_backoff_ms(&k->t, fails, st == 401 || st == 403);
            fails++;
            if (h->on_error && (rc = h->on_error(arg, &e, d)) != 0) {
                if (err)
                    *err = e;
                return rc;
            }
            nap(k, d);
        }
    }
    return CAIRN_OK;
}

int cairn_kube_pods_run(cairn_kube *k, const char *node, const struct cairn_kube_pod_handler *h,
                        void *arg, cairn_err *err)
{
    char sel[300];
    int rc;
    if ((rc = node_selector(node, sel, sizeof sel, err)) != CAIRN_OK)
        return rc;
    return cairn_kube_informer_run(k, "/api/v1/pods", sel, h, arg, err);
}

/* uploaders/s3_creds.c — the credentials an S3 store signs with, kept fresh:
 * static keys (environment, shared credentials file; re-read after an
 * ExpiredToken answer), STS AssumeRoleWithWebIdentity (IRSA: the token file
 * is read again at every refresh, since the kubelet rotates it) and container
 * credentials (EKS Pod Identity, ECS: a JSON endpoint with an authorization
 * token, also re-read at every refresh) and the EC2 instance role (IMDSv2:
 * a session token first, then the role's keys). See s3.h for the provider's
 * rules.
 *
 * Secrets (keys, session tokens, web identity and authorization tokens) are
 * wiped when freed and never put into a message or a log line. */
#define _GNU_SOURCE
#include "curl_dl.h"
#include "s3.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CREDS_BODY_MAX ((size_t)64 << 10) /* an STS or container answer */
#define TOKEN_FILE_MAX ((size_t)64 << 10) /* a web identity / authorization token */
#define KEY_MAX 256
#define SESSION_TOKEN_MAX ((size_t)16 << 10)
#define REFRESH_MARGIN 300 /* seconds before expiry */
#define RETRY_LATER 15     /* seconds between tries when a refresh failed early */

static void wipe_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* Frees a buffer that may hold a secret, wiping all of its capacity. */
static void wipe_buf(cairn_buf *b)
{
    if (b->data)
        OPENSSL_cleanse(b->data, b->cap);
    cairn_buf_free(b);
}

void s3_creds_free(struct s3_creds *c)
{
    if (!c)
        return;
    wipe_free(c->access_key);
    wipe_free(c->secret_key);
    wipe_free(c->session_token);
    memset(c, 0, sizeof *c);
}

int s3_creds_copy(struct s3_creds *dst, const struct s3_creds *src, cairn_err *err)
{
    memset(dst, 0, sizeof *dst);
    dst->expiration = src->expiration;
    if ((src->access_key && !(dst->access_key = strdup(src->access_key))) ||
        (src->secret_key && !(dst->secret_key = strdup(src->secret_key))) ||
        (src->session_token && !(dst->session_token = strdup(src->session_token)))) {
        s3_creds_free(dst);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    return CAIRN_OK;
}

static int header_safe(const char *s, size_t max)
{
    size_t n = 0;
    for (; *s; s++, n++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7F || n >= max)
            return 0;
    return n > 0;
}

int s3_creds_valid(const struct s3_creds *c, const char *what, cairn_err *err)
{
    if (!c->access_key || !header_safe(c->access_key, KEY_MAX))
        return cairn_error(err, CAIRN_CORRUPT, "bad %s: the access key id is empty, too long "
                                               "or has characters a key cannot have",
                           what);
    if (!c->secret_key || !header_safe(c->secret_key, KEY_MAX))
        return cairn_error(err, CAIRN_CORRUPT, "bad %s: the secret access key is empty, too "
                                               "long or has characters a key cannot have",
                           what);
    if (c->session_token && !header_safe(c->session_token, SESSION_TOKEN_MAX))
        return cairn_error(err, CAIRN_CORRUPT, "bad %s: the session token is empty, longer "
                                               "than 16 KiB or has characters a token cannot "
                                               "have",
                           what);
    return CAIRN_OK;
}

static const char *json_str(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int s3_parse_container_creds(const char *json, size_t len, struct s3_creds *out, cairn_err *err)
{
    json_error_t je;
    json_t *o;
    const char *ak, *sk, *tok, *exp;
    int64_t ns;
    int rc = CAIRN_OK;
    memset(out, 0, sizeof *out);
    if (len > CREDS_BODY_MAX)
        return cairn_error(err, CAIRN_CORRUPT, "bad container credentials: %zu bytes, more "
                                               "than the %zu allowed",
                           len, CREDS_BODY_MAX);
    o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        /* je.text may quote the input: only the position */
        return cairn_error(err, CAIRN_CORRUPT,
                           "bad container credentials: not JSON (at line %d, column %d)",
                           je.line, je.column);
    if (!json_is_object(o)) {
        json_decref(o);
        return cairn_error(err, CAIRN_CORRUPT, "bad container credentials: not a JSON object");
    }
    exp = json_str(o, "Code"); /* IMDS: "Success", or why not */
    if (exp && strcmp(exp, "Success") != 0) {
        char code[64];
        size_t i;
        snprintf(code, sizeof code, "%s", exp);
        for (i = 0; code[i]; i++)
            if ((unsigned char)code[i] < 0x20 || code[i] == 0x7F)
                code[i] = ' ';
        rc = cairn_error(err, CAIRN_CORRUPT, "credentials not available: Code '%s'", code);
        goto out;
    }
    ak = json_str(o, "AccessKeyId");
    sk = json_str(o, "SecretAccessKey");
    tok = json_str(o, "Token");
    exp = json_str(o, "Expiration");
    if (!ak || !sk || !*ak || !*sk) {
        rc = cairn_error(err, CAIRN_CORRUPT,
                         "bad container credentials: no AccessKeyId or SecretAccessKey");
        goto out;
    }
    if (exp && *exp) {
        if (cairn_parse_time(exp, &ns) != CAIRN_OK || ns <= 0) {
            rc = cairn_error(err, CAIRN_CORRUPT,
                             "bad container credentials: Expiration '%.64s' is not a time", exp);
            goto out;
        }
        out->expiration = ns / 1000000000;
    }
    out->access_key = strdup(ak);
    out->secret_key = strdup(sk);
    if (tok && *tok)
        out->session_token = strdup(tok);
    if (!out->access_key || !out->secret_key || (tok && *tok && !out->session_token))
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
    else
        rc = s3_creds_valid(out, "container credentials", err);
out:
    json_decref(o);
    if (rc != CAIRN_OK)
        s3_creds_free(out);
    return rc;
}

/* ---- the provider ---- */

struct s3_provider {
    pthread_mutex_t mu;
    const struct s3_conf *conf;
    char *ca_file;
    int attempts;
    void (*log)(void *arg, const char *msg);
    void *log_arg;
    struct s3_creds cur;
    int64_t obtained; /* when cur was fetched */
    int64_t next_try; /* after a failed early refresh: not before */
    unsigned gen;
    int stale;        /* the server said cur expired */
};

static void plog(struct s3_provider *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void plog(struct s3_provider *p, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    if (!p->log)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->log(p->log_arg, msg);
}

static void sleep_s(double s)
{
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Reads a token file (trailing whitespace trimmed); var names it in messages. */
static int read_token(const char *var, const char *path, char **out, cairn_err *err)
{
    cairn_buf b = CAIRN_BUF_INIT;
    cairn_err e2;
    char *s;
    size_t n;
    *out = NULL;
    if (cairn_read_file(path, &b, TOKEN_FILE_MAX, &e2) != CAIRN_OK) {
        cairn_buf_free(&b);
        return cairn_error(err, CAIRN_FATAL, "cannot read the token file '%s' (%s): %s", path,
                           var, e2.msg);
    }
    if (!cairn_buf_cstr(&b) || memchr(b.data, 0, b.len)) {
        OPENSSL_cleanse(b.data, b.len);
        cairn_buf_free(&b);
        return cairn_error(err, CAIRN_FATAL, "the token file '%s' (%s) is not a text file", path,
                           var);
    }
    s = cairn_buf_detach(&b, NULL);
    n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    if (!n || strpbrk(s, "\r\n")) {
        wipe_free(s);
        return cairn_error(err, CAIRN_FATAL, "the token file '%s' (%s) is %s", path, var,
                           n ? "more than one line" : "empty");
    }
    *out = s;
    return CAIRN_OK;
}

static size_t on_body(char *d, size_t size, size_t nmemb, void *arg)
{
    cairn_buf *b = arg;
    size_t n = size * nmemb;
    return cairn_buf_append(b, d, n) == CAIRN_OK ? n : 0;
}

/* One HTTP request; body capped at CREDS_BODY_MAX. post NULL = GET; method
 * NULL = POST when there is a body. */
static CURLcode http_call(struct s3_provider *p, const char *url, const char *method,
                          const char *post, struct curl_slist *hdrs, long *status,
                          cairn_buf *body, char curlmsg[CURL_ERROR_SIZE])
{
    CURL *h = curl_easy_init();
    CURLcode cres;
    *status = 0;
    curlmsg[0] = 0;
    cairn_buf_free(body);
    cairn_buf_init(body, CREDS_BODY_MAX);
    if (!h) {
        snprintf(curlmsg, CURL_ERROR_SIZE, "cannot create a curl handle");
        return CURLE_OUT_OF_MEMORY;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curlmsg);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    /* IMDS answers at once or not at all (not on EC2, or a hop limit of 1) */
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, p->conf->cred_kind == S3_CRED_IMDS ? 1L : 5L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, p->conf->cred_kind == S3_CRED_IMDS ? 5L : 30L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (p->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, p->ca_file);
    if (hdrs)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (post) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(post));
        if (method)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
    cres = curl_easy_perform(h);
    if (cres == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    if (!curlmsg[0])
        snprintf(curlmsg, CURL_ERROR_SIZE, "%s", curl_easy_strerror(cres));
    curl_easy_cleanup(h);
    return cres;
}

static int transient_curl(CURLcode c)
{
    return c == CURLE_COULDNT_RESOLVE_HOST || c == CURLE_COULDNT_CONNECT ||
           c == CURLE_OPERATION_TIMEDOUT || c == CURLE_SEND_ERROR || c == CURLE_RECV_ERROR ||
           c == CURLE_GOT_NOTHING || c == CURLE_PARTIAL_FILE || c == CURLE_SSL_CONNECT_ERROR ||
           c == CURLE_WEIRD_SERVER_REPLY;
}

/* A message from a server, unless it quotes the secret we sent. */
static const char *safe_msg(const char *msg, const char *secret)
{
    char probe[17];
    if (!msg || !*msg)
        return "";
    if (secret && strlen(secret) >= 8) {
        snprintf(probe, sizeof probe, "%s", secret);
        if (strstr(msg, probe))
            return "(message withheld: it quotes the token)";
    }
    return msg;
}

static int fetch_web_identity(struct s3_provider *p, struct s3_creds *out, int *retry,
                              cairn_err *err)
{
    const struct s3_conf *c = p->conf;
    char *token = NULL, curlmsg[CURL_ERROR_SIZE], url[600];
    cairn_buf form = CAIRN_BUF_INIT, body = CAIRN_BUF_INIT;
    struct curl_slist *hdrs = NULL, *nl;
    struct s3_error_info e;
    CURLcode cres;
    long status;
    int rc;
    *retry = 0;
    if ((rc = read_token("AWS_WEB_IDENTITY_TOKEN_FILE", c->token_file, &token, err)) !=
        CAIRN_OK)
        return cairn_error_prefix(err, "web identity for role '%s'", c->role_arn);
    if (cairn_buf_appendf(&form, "Action=AssumeRoleWithWebIdentity&Version=2011-06-15") !=
            CAIRN_OK ||
        (c->duration && cairn_buf_appendf(&form, "&DurationSeconds=%ld", c->duration) !=
                            CAIRN_OK) ||
        cairn_buf_appendf(&form, "&RoleArn=") != CAIRN_OK ||
        s3_uri_encode(&form, c->role_arn, strlen(c->role_arn), 0) != CAIRN_OK ||
        cairn_buf_appendf(&form, "&RoleSessionName=") != CAIRN_OK ||
        s3_uri_encode(&form, c->session_name, strlen(c->session_name), 0) != CAIRN_OK ||
        cairn_buf_appendf(&form, "&WebIdentityToken=") != CAIRN_OK ||
        s3_uri_encode(&form, token, strlen(token), 0) != CAIRN_OK || !cairn_buf_cstr(&form) ||
        !(nl = curl_slist_append(hdrs, "Content-Type: application/x-www-form-urlencoded")) ||
        !(hdrs = nl, nl = curl_slist_append(hdrs, "Accept: text/xml")) ||
        !(hdrs = nl, nl = curl_slist_append(hdrs, "Expect:"))) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    hdrs = nl;
    snprintf(url, sizeof url, "%s/", c->sts_endpoint);
    cres = http_call(p, url, NULL, (const char *)form.data, hdrs, &status, &body, curlmsg);
    if (cres != CURLE_OK) {
        *retry = transient_curl(cres);
        rc = cairn_error(err, CAIRN_FATAL,
                         "cannot reach STS at %s to assume role '%s' (web identity): %s (check "
                         "the network, AWS_STS_REGIONAL_ENDPOINTS and AWS_ENDPOINT_URL_STS)",
                         c->sts_endpoint, c->role_arn, curlmsg);
        goto out;
    }
    rc = s3_parse_sts_response((const char *)body.data, body.len, out, &e, err);
    if (rc == CAIRN_OK && status == 200)
        goto out;
    if (rc == CAIRN_OK) { /* credentials in an error status: refuse them */
        s3_creds_free(out);
        rc = CAIRN_NOTFOUND;
        memset(&e, 0, sizeof e);
    }
    if (rc == CAIRN_CORRUPT && status == 200) {
        cairn_error_prefix(err, "STS at %s, role '%s'", c->sts_endpoint, c->role_arn);
        goto out;
    }
    if (!strcmp(e.code, "InvalidIdentityToken"))
        rc = cairn_error(err, CAIRN_FATAL,
                         "STS refused the web identity token in '%s' (AWS_WEB_IDENTITY_TOKEN_FILE) "
                         "for role '%s': InvalidIdentityToken (%s); check the role's trust policy: "
                         "this cluster's OIDC provider and this service account must be allowed",
                         c->token_file, c->role_arn, safe_msg(e.message, token));
    else if (!strcmp(e.code, "ExpiredTokenException") || !strcmp(e.code, "ExpiredToken")) {
        *retry = 1; /* the kubelet may be rotating it right now */
        rc = cairn_error(err, CAIRN_FATAL,
                         "the web identity token in '%s' (AWS_WEB_IDENTITY_TOKEN_FILE) for role "
                         "'%s' has expired (the kubelet rotates a projected service account "
                         "token: is the volume mounted and the kubelet running?)",
                         c->token_file, c->role_arn);
    } else if (!strcmp(e.code, "AccessDenied"))
        rc = cairn_error(err, CAIRN_FATAL,
                         "STS denied AssumeRoleWithWebIdentity on role '%s' with the token in "
                         "'%s' (AWS_WEB_IDENTITY_TOKEN_FILE): %s (check the role's trust policy "
                         "and the service account's eks.amazonaws.com/role-arn annotation)",
                         c->role_arn, c->token_file, safe_msg(e.message, token));
    else if (!strcmp(e.code, "IDPRejectedClaim"))
        rc = cairn_error(err, CAIRN_FATAL,
                         "the identity provider rejected the token in '%s' "
                         "(AWS_WEB_IDENTITY_TOKEN_FILE) for role '%s': %s",
                         c->token_file, c->role_arn, safe_msg(e.message, token));
    else {
        *retry = status >= 500 || status == 429 || !strcmp(e.code, "IDPCommunicationError") ||
                 !strcmp(e.code, "Throttling") || !strcmp(e.code, "ServiceUnavailable") ||
                 !strcmp(e.code, "InternalFailure");
        rc = cairn_error(err, CAIRN_FATAL,
                         "STS at %s: AssumeRoleWithWebIdentity on role '%s' (token file '%s') "
                         "failed: HTTP %ld %s%s%s%s",
                         c->sts_endpoint, c->role_arn, c->token_file, status,
                         e.code[0] ? e.code : "(no error document)", e.message[0] ? " (" : "",
                         safe_msg(e.message, token), e.message[0] ? ")" : "");
    }
out:
    curl_slist_free_all(hdrs);
    wipe_buf(&form);
    wipe_buf(&body);
    wipe_free(token);
    return rc;
}

static int fetch_container(struct s3_provider *p, struct s3_creds *out, int *retry,
                           cairn_err *err)
{
    const struct s3_conf *c = p->conf;
    char *auth = NULL, curlmsg[CURL_ERROR_SIZE], code[64] = "", msg[256] = "";
    cairn_buf line = CAIRN_BUF_INIT, body = CAIRN_BUF_INIT;
    struct curl_slist *hdrs = NULL, *nl;
    CURLcode cres;
    long status;
    int rc = CAIRN_OK;
    *retry = 0;
    if (c->container_auth_file) {
        if ((rc = read_token("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", c->container_auth_file,
                             &auth, err)) != CAIRN_OK)
            return cairn_error_prefix(err, "container credentials from %s", c->container_uri);
    } else if (c->container_auth && !(auth = strdup(c->container_auth))) {
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    if (!(nl = curl_slist_append(hdrs, "Accept: application/json")))
        goto oom;
    hdrs = nl;
    if (auth) {
        if (cairn_buf_appendf(&line, "Authorization: %s", auth) != CAIRN_OK ||
            !(nl = curl_slist_append(hdrs, cairn_buf_cstr(&line))))
            goto oom;
        hdrs = nl;
    }
    cres = http_call(p, c->container_uri, NULL, NULL, hdrs, &status, &body, curlmsg);
    if (cres != CURLE_OK) {
        *retry = transient_curl(cres);
        rc = cairn_error(err, CAIRN_FATAL,
                         "cannot reach the container credentials endpoint %s: %s (is the EKS "
                         "Pod Identity agent running on this node?)",
                         c->container_uri, curlmsg);
        goto out;
    }
    if (status == 200) {
        rc = s3_parse_container_creds((const char *)body.data, body.len, out, err);
        if (rc != CAIRN_OK)
            cairn_error_prefix(err, "%s", c->container_uri);
        goto out;
    }
    {
        /* {"code": ..., "message": ...} when the agent says why */
        json_t *o = body.len ? json_loadb((const char *)body.data, body.len, 0, NULL) : NULL;
        const char *s;
        size_t i;
        if (o && json_is_object(o)) {
            if ((s = json_str(o, "code")) || (s = json_str(o, "Code")))
                snprintf(code, sizeof code, " %s", s);
            if ((s = json_str(o, "message")) || (s = json_str(o, "Message")))
                snprintf(msg, sizeof msg, " (%s)", safe_msg(s, auth));
        }
        json_decref(o);
        for (i = 0; msg[i]; i++)
            if ((unsigned char)msg[i] < 0x20)
                msg[i] = ' ';
        for (i = 0; code[i]; i++)
            if ((unsigned char)code[i] < 0x20)
                code[i] = ' ';
    }
    *retry = status >= 500 || status == 429;
    rc = cairn_error(err, CAIRN_FATAL,
                     "the container credentials endpoint %s answered HTTP %ld%s%s%s", c->container_uri,
                     status, code, msg,
                     status == 401 || status == 403
                         ? (c->container_auth_file
                                ? " (check the token in AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)"
                                : " (check AWS_CONTAINER_AUTHORIZATION_TOKEN)")
                         : "");
    goto out;
oom:
    rc = cairn_error(err, CAIRN_FATAL, "out of memory");
out:
    curl_slist_free_all(hdrs);
    wipe_buf(&line);
    wipe_buf(&body);
    wipe_free(auth);
    return rc;
}

#define IMDS_HINT                                                                         \
    "no other S3 credentials are configured: set AWS_ACCESS_KEY_ID and "                    \
    "AWS_SECRET_ACCESS_KEY, AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, or "              \
    "AWS_CONTAINER_CREDENTIALS_FULL_URI; AWS_EC2_METADATA_DISABLED=true skips IMDS"

/* IMDSv2: PUT /latest/api/token, then the role name, then its keys, each
 * with the session token in X-aws-ec2-metadata-token. No IMDSv1 fallback. */
static int fetch_imds(struct s3_provider *p, struct s3_creds *out, int *retry, cairn_err *err)
{
    const struct s3_conf *c = p->conf;
    char curlmsg[CURL_ERROR_SIZE], role[256] = "", url[1024];
    const char *step = "a session token";
    cairn_buf body = CAIRN_BUF_INIT, line = CAIRN_BUF_INIT;
    struct curl_slist *hdrs = NULL, *nl;
    CURLcode cres;
    long status;
    int rc = CAIRN_OK, i;
    *retry = 0;
    for (i = 0; i < 3; i++) {
        if (i == 0) {
            snprintf(url, sizeof url, "%s/latest/api/token", c->imds_endpoint);
            if (!(nl = curl_slist_append(NULL, "X-aws-ec2-metadata-token-ttl-seconds: 21600")))
                goto oom;
            hdrs = nl;
            cres = http_call(p, url, "PUT", "", hdrs, &status, &body, curlmsg);
        } else {
            step = i == 1 ? "the instance role name" : "the instance role's credentials";
            snprintf(url, sizeof url, "%s/latest/meta-data/iam/security-credentials/%s",
                     c->imds_endpoint, role);
            cres = http_call(p, url, NULL, NULL, hdrs, &status, &body, curlmsg);
        }
        if (cres != CURLE_OK) {
            /* not retried: off EC2 (or behind a hop limit) it never answers */
            rc = cairn_error(err, CAIRN_FATAL,
                             "cannot reach the instance metadata service at %s for %s: %s (%s)",
                             c->imds_endpoint, step, curlmsg, IMDS_HINT);
            goto out;
        }
        if (status != 200) {
            *retry = status >= 500 || status == 429;
            rc = cairn_error(err, CAIRN_FATAL,
                             "the instance metadata service at %s answered HTTP %ld for %s (%s)",
                             c->imds_endpoint, status, step,
                             i == 1 && status == 404 ? "no IAM role is attached to this instance"
                             : i == 0 ? IMDS_HINT
                                      : "is the instance role's trust policy right?");
            goto out;
        }
        if (i == 0) {
            /* the session token: one header-safe line */
            if (!cairn_buf_cstr(&body) || !header_safe((const char *)body.data, 4096) ||
                cairn_buf_appendf(&line, "X-aws-ec2-metadata-token: %s",
                                  (const char *)body.data) != CAIRN_OK ||
                !cairn_buf_cstr(&line)) {
                rc = cairn_error(err, CAIRN_CORRUPT,
                                 "the instance metadata service at %s sent a bad session token",
                                 c->imds_endpoint);
                goto out;
            }
            curl_slist_free_all(hdrs);
            if (!(hdrs = curl_slist_append(NULL, (const char *)line.data)))
                goto oom;
        } else if (i == 1) {
            size_t n;
            const char *b = cairn_buf_cstr(&body) ? (const char *)body.data : "";
            n = strcspn(b, "\r\n");
            if (n == 0 || n >= sizeof role || strspn(b, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                                        "qrstuvwxyz0123456789+=,.@_-") < n) {
                rc = cairn_error(err, CAIRN_CORRUPT,
                                 "the instance metadata service at %s sent no usable role name",
                                 c->imds_endpoint);
                goto out;
            }
            memcpy(role, b, n);
            role[n] = 0;
        } else {
            rc = s3_parse_container_creds((const char *)body.data, body.len, out, err);
            if (rc != CAIRN_OK)
                cairn_error_prefix(err, "instance role '%s' from %s", role, c->imds_endpoint);
        }
    }
    goto out;
oom:
    rc = cairn_error(err, CAIRN_FATAL, "out of memory");
out:
    if (hdrs)
        OPENSSL_cleanse(hdrs->data, strlen(hdrs->data));
    curl_slist_free_all(hdrs);
    wipe_buf(&line);
    wipe_buf(&body);
    return rc;
}

static const char *kind_name(const struct s3_conf *c)
{
    switch (c->cred_kind) {
    case S3_CRED_ENV:
        return "the environment";
    case S3_CRED_WEB_IDENTITY:
        return "STS (web identity)";
    case S3_CRED_FILE:
        return "the shared credentials file";
    case S3_CRED_CONTAINER:
        return "the container credentials endpoint";
    case S3_CRED_IMDS:
        return "the instance metadata service";
    }
    return "?";
}

/* Fresh keys from the source, with retries for transient failures. */
static int fetch(struct s3_provider *p, struct s3_creds *out, cairn_err *err)
{
    int attempt, rc = CAIRN_FATAL, retry = 0;
    memset(out, 0, sizeof *out);
    for (attempt = 1; attempt <= p->attempts; attempt++) {
        double d;
        switch (p->conf->cred_kind) {
        case S3_CRED_ENV:
        case S3_CRED_FILE:
            return s3_conf_read_static(p->conf, out, err);
        case S3_CRED_WEB_IDENTITY:
            rc = fetch_web_identity(p, out, &retry, err);
            break;
        case S3_CRED_CONTAINER:
            rc = fetch_container(p, out, &retry, err);
            break;
        case S3_CRED_IMDS:
            rc = fetch_imds(p, out, &retry, err);
            break;
        }
        if (rc == CAIRN_OK || !retry)
            return rc;
        if (attempt == p->attempts)
            break;
        d = 0.2 * pow(2.0, attempt - 1);
        if (d > 5.0)
            d = 5.0;
        plog(p, "s3: retrying the credentials request to %s (attempt %d of %d, in %.1fs): %s",
             kind_name(p->conf), attempt + 1, p->attempts, d, err ? err->msg : "");
        sleep_s(d);
    }
    if (err && p->attempts > 1) {
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n, " (gave up after %d attempts)",
                 p->attempts);
    }
    return rc;
}

int s3_provider_new(const struct s3_conf *conf, const struct s3_provider_opts *o,
                    struct s3_provider **out, cairn_err *err)
{
    struct s3_provider *p = calloc(1, sizeof *p);
    int rc;
    *out = NULL;
    if (!p)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    pthread_mutex_init(&p->mu, NULL);
    p->conf = conf;
    p->attempts = o && o->attempts > 0 ? o->attempts : 1;
    if (p->attempts > 5)
        p->attempts = 5;
    p->log = o ? o->log : NULL;
    p->log_arg = o ? o->log_arg : NULL;
    if (o && o->ca_file && !(p->ca_file = strdup(o->ca_file))) {
        s3_provider_free(p);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    if (conf->cred_kind == S3_CRED_ENV || conf->cred_kind == S3_CRED_FILE) {
        struct s3_creds k = {conf->access_key, conf->secret_key, conf->session_token, 0};
        rc = s3_creds_copy(&p->cur, &k, err);
    } else {
        rc = fetch(p, &p->cur, err);
    }
    if (rc != CAIRN_OK) {
        s3_provider_free(p);
        return rc;
    }
    p->obtained = (int64_t)time(NULL);
    *out = p;
    return CAIRN_OK;
}

void s3_provider_free(struct s3_provider *p)
{
    if (!p)
        return;
    s3_creds_free(&p->cur);
    free(p->ca_file);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static void fmt_time(int64_t t, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!t || !gmtime_r(&tt, &tm) || !strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, n, "(no expiry)");
}

/* When temporary keys should be replaced: 5 minutes before they expire, or
 * half-way through their life when that is shorter. */
static int64_t refresh_at(const struct s3_provider *p)
{
    int64_t life = p->cur.expiration - p->obtained, margin = REFRESH_MARGIN;
    if (life / 2 < margin)
        margin = life > 0 ? life / 2 : 0;
    return p->cur.expiration - margin;
}

int s3_provider_get(struct s3_provider *p, struct s3_creds *out, unsigned *gen, cairn_err *err)
{
    int64_t now = (int64_t)time(NULL);
    int rc = CAIRN_OK;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&p->mu);
    if (p->stale || !p->cur.access_key ||
        (p->cur.expiration && now >= refresh_at(p) && now >= p->next_try)) {
        struct s3_creds fresh;
        cairn_err e2;
        char when[40];
        cairn_err_clear(&e2);
        rc = fetch(p, &fresh, &e2);
        now = (int64_t)time(NULL);
        if (rc == CAIRN_OK) {
            s3_creds_free(&p->cur);
            p->cur = fresh;
            p->obtained = now;
            p->next_try = 0;
            p->gen++;
            if (fresh.expiration) {
                fmt_time(fresh.expiration, when, sizeof when);
                plog(p, "s3: refreshed the credentials from %s (valid until %s)",
                     kind_name(p->conf), when);
            } else {
                plog(p, "s3: read the credentials again from %s", kind_name(p->conf));
            }
            p->stale = 0;
        } else if (!p->stale && p->cur.access_key &&
                   (!p->cur.expiration || now < p->cur.expiration)) {
            /* the current keys still work: use them, try again later */
            p->next_try = now + RETRY_LATER;
            fmt_time(p->cur.expiration, when, sizeof when);
            plog(p, "s3: cannot refresh the credentials yet (%s); the current ones are valid "
                    "until %s, trying again in %d s",
                 e2.msg, when, RETRY_LATER);
            rc = CAIRN_OK;
        } else {
            if (err)
                *err = e2;
        }
    }
    if (rc == CAIRN_OK) {
        rc = s3_creds_copy(out, &p->cur, err);
        if (gen)
            *gen = p->gen;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void s3_provider_expired(struct s3_provider *p, unsigned gen)
{
    pthread_mutex_lock(&p->mu);
    if (gen == p->gen)
        p->stale = 1;
    pthread_mutex_unlock(&p->mu);
}

/* uploaders/s3_conf.c — where an S3 store is and who we are there: the
 * s3://BUCKET/PREFIX URL and the AWS_* configuration, from the environment,
 * from NAME_FILE files (mounted Kubernetes Secrets) or from the shared
 * credentials file. Secrets are wiped on free and never put in a message. */
#define _GNU_SOURCE
#include "s3.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define ENV_FILE_MAX ((size_t)64 << 10)
#define CRED_FILE_MAX ((size_t)1 << 20)

static void wipe_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void rtrim(char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
}

/* The content of the file `path` that variable fname names, trimmed. */
static int read_value_file(const char *fname, const char *path, char **out, cairn_err *err)
{
    cairn_buf b = CAIRN_BUF_INIT;
    cairn_err e2;
    *out = NULL;
    if (cairn_read_file(path, &b, ENV_FILE_MAX, &e2) != CAIRN_OK) {
        cairn_buf_free(&b);
        return cairn_error(err, CAIRN_FATAL, "cannot read %s '%s' (%s)", fname, path, e2.msg);
    }
    if (!cairn_buf_cstr(&b) || memchr(b.data, 0, b.len)) {
        OPENSSL_cleanse(b.data, b.len);
        cairn_buf_free(&b);
        return cairn_error(err, CAIRN_FATAL, "%s '%s' is not a text file", fname, path);
    }
    *out = cairn_buf_detach(&b, NULL);
    rtrim(*out);
    if (!**out) {
        free(*out);
        *out = NULL;
        return cairn_error(err, CAIRN_FATAL, "%s '%s' is empty", fname, path);
    }
    return CAIRN_OK;
}

int s3_env_or_file(s3_getenv_fn env, const char *name, char **out, cairn_err *err)
{
    const char *v = env(name), *path;
    char fname[128];
    *out = NULL;
    if (v && *v) {
        if (!(*out = strdup(v)))
            return cairn_error(err, CAIRN_FATAL, "out of memory");
        return CAIRN_OK;
    }
    snprintf(fname, sizeof fname, "%s_FILE", name);
    path = env(fname);
    if (!path || !*path)
        return CAIRN_OK;
    return read_value_file(fname, path, out, err);
}

/* Reads profile `profile` from an INI-style credentials file. CAIRN_NOTFOUND if
 * the file does not exist; the profile missing is an error naming both. */
static int read_cred_file(const char *path, const char *profile, struct s3_creds *c,
                          cairn_err *err)
{
    cairn_buf b = CAIRN_BUF_INIT;
    cairn_err e2;
    char *line, *next;
    int in = 0, found = 0, rc = CAIRN_OK;
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return CAIRN_NOTFOUND;
    if (cairn_read_file(path, &b, CRED_FILE_MAX, &e2) != CAIRN_OK || !cairn_buf_cstr(&b)) {
        cairn_buf_free(&b);
        return cairn_error(err, CAIRN_FATAL, "cannot read the credentials file '%s' (%s)", path,
                           e2.msg);
    }
    for (line = (char *)b.data; line; line = next) {
        char *p = line, *eq, *k, *v;
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        while (isspace((unsigned char)*p))
            p++;
        rtrim(p);
        if (!*p || *p == '#' || *p == ';')
            continue;
        if (*p == '[') {
            char *end = strchr(p, ']');
            if (!end)
                continue;
            *end = 0;
            p++;
            while (isspace((unsigned char)*p))
                p++;
            rtrim(p);
            if (strncmp(p, "profile ", 8) == 0) /* tolerated, as in the config file */
                p += 8;
            while (isspace((unsigned char)*p))
                p++;
            in = strcmp(p, profile) == 0;
            found |= in;
            continue;
        }
        if (!in || !(eq = strchr(p, '=')))
            continue;
        *eq = 0;
        k = p;
        rtrim(k);
        v = eq + 1;
        while (isspace((unsigned char)*v))
            v++;
        if (strcasecmp(k, "aws_access_key_id") == 0) {
            wipe_free(c->access_key);
            c->access_key = strdup(v);
        } else if (strcasecmp(k, "aws_secret_access_key") == 0) {
            wipe_free(c->secret_key);
            c->secret_key = strdup(v);
        } else if (strcasecmp(k, "aws_session_token") == 0) {
            wipe_free(c->session_token);
            c->session_token = strdup(v);
        }
    }
    if (c->session_token && !*c->session_token) {
        wipe_free(c->session_token);
        c->session_token = NULL;
    }
    OPENSSL_cleanse(b.data, b.len);
    cairn_buf_free(&b);
    if (!found)
        rc = cairn_error(err, CAIRN_FATAL, "no profile '%s' in the credentials file '%s'",
                         profile, path);
    else if (!c->access_key || !c->secret_key || !*c->access_key || !*c->secret_key)
        rc = cairn_error(err, CAIRN_FATAL,
                         "profile '%s' in '%s' lacks aws_access_key_id or aws_secret_access_key",
                         profile, path);
    return rc;
}

/* Moves keys into the conf (the conf owns them from then on). */
static void take_creds(struct s3_conf *c, struct s3_creds *k)
{
    c->access_key = k->access_key;
    c->secret_key = k->secret_key;
    c->session_token = k->session_token;
    memset(k, 0, sizeof *k);
}

/* AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN (or _FILE).
 * CAIRN_NOTFOUND when neither key is set. */
static int read_env_keys(s3_getenv_fn env, struct s3_creds *k, cairn_err *err)
{
    int rc;
    memset(k, 0, sizeof *k);
    if ((rc = s3_env_or_file(env, "AWS_ACCESS_KEY_ID", &k->access_key, err)) != CAIRN_OK ||
        (rc = s3_env_or_file(env, "AWS_SECRET_ACCESS_KEY", &k->secret_key, err)) != CAIRN_OK ||
        (rc = s3_env_or_file(env, "AWS_SESSION_TOKEN", &k->session_token, err)) != CAIRN_OK) {
        s3_creds_free(k);
        return rc;
    }
    if (!k->access_key && !k->secret_key) {
        s3_creds_free(k); /* a session token alone means nothing without a key */
        return CAIRN_NOTFOUND;
    }
    if (!k->access_key)
        rc = cairn_error(err, CAIRN_FATAL,
                         "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not");
    else if (!k->secret_key)
        rc = cairn_error(err, CAIRN_FATAL,
                         "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not "
                         "(nor AWS_SECRET_ACCESS_KEY_FILE)");
    if (rc != CAIRN_OK)
        s3_creds_free(k);
    return rc;
}

static const char *const key_vars[3] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                        "AWS_SESSION_TOKEN"};

/* The _FILE paths the environment's keys came from (see struct s3_conf). */
static int note_key_files(s3_getenv_fn env, struct s3_conf *c, cairn_err *err)
{
    int i;
    for (i = 0; i < 3; i++) {
        const char *v = env(key_vars[i]), *path;
        char fname[64];
        if (v && *v)
            continue;
        snprintf(fname, sizeof fname, "%s_FILE", key_vars[i]);
        path = env(fname);
        if (path && *path && !(c->key_files[i] = strdup(path)))
            return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    return CAIRN_OK;
}

int s3_conf_read_static(const struct s3_conf *c, struct s3_creds *out, cairn_err *err)
{
    int rc, i;
    memset(out, 0, sizeof *out);
    if (c->cred_kind == S3_CRED_ENV) {
        struct s3_creds k = {c->access_key, c->secret_key, c->session_token, 0};
        char **field[3] = {&out->access_key, &out->secret_key, &out->session_token};
        if ((rc = s3_creds_copy(out, &k, err)) != CAIRN_OK)
            return rc;
        for (i = 0; i < 3; i++) {
            char *v = NULL, fname[64];
            if (!c->key_files[i])
                continue;
            snprintf(fname, sizeof fname, "%s_FILE", key_vars[i]);
            if ((rc = read_value_file(fname, c->key_files[i], &v, err)) != CAIRN_OK) {
                s3_creds_free(out);
                return rc;
            }
            if (*field[i]) {
                OPENSSL_cleanse(*field[i], strlen(*field[i]));
                free(*field[i]);
            }
            *field[i] = v;
        }
        return CAIRN_OK;
    }
    if (c->cred_kind != S3_CRED_FILE || !c->cred_file)
        return cairn_error(err, CAIRN_FATAL, "no static credentials to read");
    rc = read_cred_file(c->cred_file, c->profile, out, err);
    if (rc == CAIRN_NOTFOUND)
        rc = cairn_error(err, CAIRN_FATAL, "the credentials file '%s' no longer exists",
                         c->cred_file);
    if (rc != CAIRN_OK)
        s3_creds_free(out);
    return rc;
}

/* A role session name STS accepts ([\w+=,.@-]{2,64}): AWS_ROLE_SESSION_NAME,
 * or cairn-HOST-PID with other characters replaced by '-'. */
static int session_name(s3_getenv_fn env, struct s3_conf *c, cairn_err *err)
{
    const char *v = env("AWS_ROLE_SESSION_NAME");
    char host[256] = "", buf[80];
    size_t i, n;
    if (v && *v) {
        n = strlen(v);
        for (i = 0; i < n; i++)
            if (!isalnum((unsigned char)v[i]) && !strchr("_+=,.@-", v[i]))
                break;
        if (n < 2 || n > 64 || i < n)
            return cairn_error(err, CAIRN_FATAL,
                               "AWS_ROLE_SESSION_NAME '%.80s' is not a valid role session name "
                               "(2 to 64 of letters, digits and _+=,.@-)",
                               v);
        c->session_name = strdup(v);
    } else {
        if (gethostname(host, sizeof host - 1) != 0 || !*host)
            snprintf(host, sizeof host, "host");
        snprintf(buf, sizeof buf, "cairn-%.40s-%ld", host, (long)getpid());
        for (i = 0; buf[i]; i++)
            if (!isalnum((unsigned char)buf[i]) && !strchr("_+=,.@-", buf[i]))
                buf[i] = '-';
        c->session_name = strdup(buf);
    }
    return c->session_name ? CAIRN_OK : cairn_error(err, CAIRN_FATAL, "out of memory");
}

/* An http(s)://host[:port] endpoint without credentials or path, for STS. */
static int check_url(const char *var, const char *v, int allow_path, cairn_err *err)
{
    const char *auth, *slash;
    size_t alen;
    if (strncasecmp(v, "https://", 8) == 0)
        auth = v + 8;
    else if (strncasecmp(v, "http://", 7) == 0)
        auth = v + 7;
    else
        return cairn_error(err, CAIRN_FATAL,
                           "%s must start with http:// or https:// (it is '%.200s')", var, v);
    slash = strchr(auth, '/');
    alen = slash ? (size_t)(slash - auth) : strlen(auth);
    if (memchr(auth, '@', alen))
        return cairn_error(err, CAIRN_FATAL, "%s must not contain user:password", var);
    if (alen == 0)
        return cairn_error(err, CAIRN_FATAL, "%s has no host ('%.200s')", var, v);
    if (!allow_path && slash && slash[1])
        return cairn_error(err, CAIRN_FATAL, "%s must be a bare endpoint without a path "
                                             "('%.200s')",
                           var, v);
    for (; *v; v++)
        if ((unsigned char)*v <= 0x20 || *v == 0x7F)
            return cairn_error(err, CAIRN_FATAL, "%s has spaces or control characters", var);
    return CAIRN_OK;
}

static int web_identity(s3_getenv_fn env, struct s3_conf *c, cairn_err *err)
{
    const char *role = env("AWS_ROLE_ARN"), *file = env("AWS_WEB_IDENTITY_TOKEN_FILE");
    const char *ep = env("AWS_ENDPOINT_URL_STS"), *reg = env("AWS_STS_REGIONAL_ENDPOINTS");
    const char *dur = env("CAIRN_S3_ROLE_DURATION_SECONDS");
    int rc;
    if (strncmp(role, "arn:", 4) != 0 || strlen(role) > 2048 || strpbrk(role, " \t\r\n"))
        return cairn_error(err, CAIRN_FATAL,
                           "AWS_ROLE_ARN '%.200s' is not a role ARN "
                           "(arn:aws:iam::ACCOUNT:role/NAME)",
                           role);
    c->cred_kind = S3_CRED_WEB_IDENTITY;
    c->cred_source = "web identity (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE)";
    if (!(c->role_arn = strdup(role)) || !(c->token_file = strdup(file)))
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    if ((rc = session_name(env, c, err)) != CAIRN_OK)
        return rc;
    if (dur && *dur) {
        char *end;
        long v = strtol(dur, &end, 10);
        if (*end || v < 900 || v > 43200)
            return cairn_error(err, CAIRN_FATAL,
                               "CAIRN_S3_ROLE_DURATION_SECONDS takes 900 to 43200, not '%.40s'",
                               dur);
        c->duration = v;
    }
    if (ep && *ep) {
        if ((rc = check_url("AWS_ENDPOINT_URL_STS", ep, 0, err)) != CAIRN_OK)
            return rc;
        c->sts_endpoint = strdup(ep);
        if (c->sts_endpoint && c->sts_endpoint[strlen(c->sts_endpoint) - 1] == '/')
            c->sts_endpoint[strlen(c->sts_endpoint) - 1] = 0;
    } else if (reg && strcasecmp(reg, "regional") == 0) {
        if (asprintf(&c->sts_endpoint, "https://sts.%s.amazonaws.com", c->region) < 0)
            c->sts_endpoint = NULL;
    } else {
        c->sts_endpoint = strdup("https://sts.amazonaws.com");
    }
    if (!c->sts_endpoint)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    return CAIRN_OK;
}

/* 127.0.0.0/8, ::1, localhost, and the ECS / EKS Pod Identity agents. */
static int loopback_or_agent(const char *host, size_t n)
{
    char h[64];
    unsigned a, b, cc, d;
    char tail;
    if (n == 0 || n >= sizeof h)
        return 0;
    memcpy(h, host, n);
    h[n] = 0;
    if (!strcasecmp(h, "localhost") || !strcmp(h, "[::1]") || !strcmp(h, "169.254.170.2") ||
        !strcmp(h, "169.254.170.23") || !strcasecmp(h, "[fd00:ec2::23]"))
        return 1;
    if (sscanf(h, "%u.%u.%u.%u%c", &a, &b, &cc, &d, &tail) == 4 && a == 127 && b < 256 &&
        cc < 256 && d < 256)
        return 1;
    return 0;
}

int s3_container_uri_check(const char *var, const char *uri, cairn_err *err)
{
    const char *auth, *end;
    size_t alen;
    int rc;
    if ((rc = check_url(var, uri, 1, err)) != CAIRN_OK)
        return rc;
    if (strncasecmp(uri, "https://", 8) == 0)
        return CAIRN_OK;
    auth = uri + 7;
    alen = strcspn(auth, "/?#");
    /* the host without the port */
    if (auth[0] == '[') {
        end = memchr(auth, ']', alen);
        if (!end)
            return cairn_error(err, CAIRN_FATAL, "%s has a bad host ('%.200s')", var, uri);
        alen = (size_t)(end - auth) + 1;
    } else {
        end = memchr(auth, ':', alen);
        if (end)
            alen = (size_t)(end - auth);
    }
    if (!loopback_or_agent(auth, alen))
        return cairn_error(err, CAIRN_FATAL,
                           "%s '%.200s' uses http:// to a host that is neither loopback nor "
                           "the ECS / EKS Pod Identity agent (169.254.170.2, 169.254.170.23, "
                           "fd00:ec2::23): credentials would cross the network in clear; use "
                           "https://",
                           var, uri);
    return CAIRN_OK;
}

/* AWS_CONTAINER_CREDENTIALS_FULL_URI, or _RELATIVE_URI on the ECS agent.
 * CAIRN_NOTFOUND when neither is set. */
static int container_creds(s3_getenv_fn env, struct s3_conf *c, cairn_err *err)
{
    const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *tokfile = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *tok = env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    int rc;
    if (rel && *rel) {
        if (rel[0] != '/')
            return cairn_error(err, CAIRN_FATAL,
                               "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must start with '/' "
                               "(it is '%.200s')",
                               rel);
        if (asprintf(&c->container_uri, "http://169.254.170.2%s", rel) < 0)
            c->container_uri = NULL;
        if ((rc = check_url("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", c->container_uri
                            ? c->container_uri : "", 1, err)) != CAIRN_OK)
            return rc;
    } else if (full && *full) {
        if ((rc = s3_container_uri_check("AWS_CONTAINER_CREDENTIALS_FULL_URI", full, err)) !=
            CAIRN_OK)
            return rc;
        c->container_uri = strdup(full);
    } else {
        return CAIRN_NOTFOUND;
    }
    if (!c->container_uri)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    if (tokfile && *tokfile) {
        if (!(c->container_auth_file = strdup(tokfile)))
            return cairn_error(err, CAIRN_FATAL, "out of memory");
    } else if (tok && *tok) {
        if (strpbrk(tok, "\r\n"))
            return cairn_error(err, CAIRN_FATAL,
                               "AWS_CONTAINER_AUTHORIZATION_TOKEN has a line break");
        if (!(c->container_auth = strdup(tok)))
            return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    c->cred_kind = S3_CRED_CONTAINER;
    c->cred_source = "container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI)";
    if (rel && *rel)
        c->cred_source = "container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)";
    return CAIRN_OK;
}

/* The EC2 instance role through IMDSv2: the endpoint only; s3_creds.c asks. */
static int imds(s3_getenv_fn env, struct s3_conf *c, cairn_err *err)
{
    const char *ep = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    const char *mode = env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
    int rc;
    if (ep && *ep) {
        if ((rc = check_url("AWS_EC2_METADATA_SERVICE_ENDPOINT", ep, 0, err)) != CAIRN_OK)
            return rc;
        c->imds_endpoint = strdup(ep);
        if (c->imds_endpoint && c->imds_endpoint[strlen(c->imds_endpoint) - 1] == '/')
            c->imds_endpoint[strlen(c->imds_endpoint) - 1] = 0;
    } else if (mode && strcasecmp(mode, "IPv6") == 0) {
        c->imds_endpoint = strdup("http://[fd00:ec2::254]");
    } else {
        c->imds_endpoint = strdup("http://169.254.169.254");
    }
    if (!c->imds_endpoint)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    c->cred_kind = S3_CRED_IMDS;
    c->cred_source = "the instance metadata service (IMDSv2)";
    return CAIRN_OK;
}

/* Picks the source, as the AWS SDKs' default chain does: environment keys,
 * web identity, the shared credentials file, container credentials, and
 * the instance metadata service unless AWS_EC2_METADATA_DISABLED=true. */
static int load_credentials(s3_getenv_fn env, struct s3_conf *c, cairn_err *err)
{
    const char *file = env("AWS_SHARED_CREDENTIALS_FILE"), *profile = env("AWS_PROFILE");
    const char *role = env("AWS_ROLE_ARN"), *tokfile = env("AWS_WEB_IDENTITY_TOKEN_FILE");
    const char *cfull = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *crel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    int have_container = (cfull && *cfull) || (crel && *crel);
    struct s3_creds k;
    char path[4096];
    int rc;
    rc = read_env_keys(env, &k, err);
    if (rc == CAIRN_OK) {
        take_creds(c, &k);
        if ((rc = note_key_files(env, c, err)) != CAIRN_OK)
            return rc;
        c->cred_kind = S3_CRED_ENV;
        c->cred_source = "the environment";
        return CAIRN_OK;
    }
    if (rc != CAIRN_NOTFOUND)
        return rc;
    if ((role && *role) || (tokfile && *tokfile)) {
        if (!role || !*role)
            return cairn_error(err, CAIRN_FATAL,
                               "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not (web "
                               "identity needs both; on EKS, annotate the service account with "
                               "eks.amazonaws.com/role-arn)");
        if (!tokfile || !*tokfile)
            return cairn_error(err, CAIRN_FATAL,
                               "AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not (web "
                               "identity needs both)");
        return web_identity(env, c, err);
    }
    if (!profile || !*profile)
        profile = "default";
    if (file && *file) {
        snprintf(path, sizeof path, "%s", file);
    } else {
        const char *home = env("HOME");
        if (!home || !*home) {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (!home)
            goto container;
        snprintf(path, sizeof path, "%s/.aws/credentials", home);
    }
    memset(&k, 0, sizeof k);
    rc = read_cred_file(path, profile, &k, err);
    if (rc == CAIRN_NOTFOUND) {
        if (file && *file && !have_container)
            return cairn_error(err, CAIRN_FATAL,
                               "the credentials file '%s' (AWS_SHARED_CREDENTIALS_FILE) does "
                               "not exist",
                               path);
        goto container;
    }
    if (rc != CAIRN_OK) {
        s3_creds_free(&k);
        return rc;
    }
    take_creds(c, &k);
    c->cred_kind = S3_CRED_FILE;
    c->cred_source = "the shared credentials file";
    if (!(c->cred_file = strdup(path)) || !(c->profile = strdup(profile)))
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    return CAIRN_OK;
container:
    rc = container_creds(env, c, err);
    if (rc != CAIRN_NOTFOUND)
        return rc;
    {
        const char *off = env("AWS_EC2_METADATA_DISABLED");
        if (!off || strcasecmp(off, "true") != 0)
            return imds(env, c, err);
    }
    return cairn_error(err, CAIRN_FATAL,
                       "no S3 credentials for %s (set AWS_ACCESS_KEY_ID and "
                       "AWS_SECRET_ACCESS_KEY, or their _FILE forms; or AWS_ROLE_ARN and "
                       "AWS_WEB_IDENTITY_TOKEN_FILE (IRSA); or add a [%s] profile to "
                       "~/.aws/credentials; or AWS_CONTAINER_CREDENTIALS_FULL_URI (EKS Pod "
                       "Identity); the instance metadata service (IMDS) is off: "
                       "AWS_EC2_METADATA_DISABLED=true)",
                       c->bucket, profile);
}

static int parse_endpoint(const char *var, const char *v, struct s3_conf *c, cairn_err *err)
{
    const char *auth, *slash;
    size_t alen;
    int https;
    if (strncasecmp(v, "https://", 8) == 0) {
        https = 1;
        auth = v + 8;
    } else if (strncasecmp(v, "http://", 7) == 0) {
        https = 0;
        auth = v + 7;
    } else {
        return cairn_error(err, CAIRN_FATAL,
                           "%s must start with http:// or https:// (it is '%.200s')", var, v);
    }
    slash = strchr(auth, '/');
    alen = slash ? (size_t)(slash - auth) : strlen(auth);
    if (memchr(auth, '@', alen))
        /* do not echo it: it holds a password */
        return cairn_error(err, CAIRN_FATAL,
                           "%s must not contain user:password (give credentials in "
                           "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)",
                           var);
    if (alen == 0)
        return cairn_error(err, CAIRN_FATAL, "%s has no host ('%.200s')", var, v);
    if (slash && slash[1])
        return cairn_error(err, CAIRN_FATAL,
                           "%s must be a bare endpoint without a path ('%.200s'); put the "
                           "bucket in the repository URL s3://BUCKET/PREFIX",
                           var, v);
    c->host = strndup(auth, alen);
    if (!c->host || asprintf(&c->endpoint, "%s://%s", https ? "https" : "http", c->host) < 0) {
        c->endpoint = NULL;
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    return CAIRN_OK;
}

static int valid_bucket(const char *b)
{
    size_t n = strlen(b), i;
    if (n < 1 || n > 255)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)b[i];
        if (!isalnum(ch) && ch != '.' && ch != '-' && ch != '_')
            return 0;
    }
    return 1;
}

int s3_conf_load(const char *url, s3_getenv_fn env, struct s3_conf *c, cairn_err *err)
{
    const char *p, *slash;
    char *ep = NULL, *region = NULL;
    const char *ep_var = "AWS_ENDPOINT_URL_S3";
    size_t n;
    int rc;
    memset(c, 0, sizeof *c);
    if (strncmp(url, "s3://", 5) != 0)
        return cairn_error(err, CAIRN_FATAL, "'%s' is not an s3:// URL", url);
    p = url + 5;
    slash = strchr(p, '/');
    c->bucket = slash ? strndup(p, (size_t)(slash - p)) : strdup(p);
    c->prefix = strdup(slash ? slash + 1 : "");
    if (!c->bucket || !c->prefix) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto fail;
    }
    if (!valid_bucket(c->bucket)) {
        rc = cairn_error(err, CAIRN_FATAL,
                         "invalid bucket name in '%s' (use s3://BUCKET/PREFIX; a bucket name "
                         "has letters, digits, '.', '-')",
                         url);
        goto fail;
    }
    /* prefix: no leading or trailing '/', no empty or dot segments */
    {
        char *q = c->prefix;
        while (*q == '/')
            memmove(q, q + 1, strlen(q));
        n = strlen(q);
        while (n && q[n - 1] == '/')
            q[--n] = 0;
        if (strstr(q, "//") || strcmp(q, ".") == 0 || strcmp(q, "..") == 0 ||
            strncmp(q, "./", 2) == 0 || strncmp(q, "../", 3) == 0 || strstr(q, "/./") ||
            strstr(q, "/../") || (n >= 2 && strcmp(q + n - 2, "/.") == 0) ||
            (n >= 3 && strcmp(q + n - 3, "/..") == 0)) {
            rc = cairn_error(err, CAIRN_FATAL, "invalid prefix in '%s' (empty or dot segments)",
                             url);
            goto fail;
        }
    }
    if ((rc = s3_env_or_file(env, "AWS_REGION", &region, err)) != CAIRN_OK)
        goto fail;
    if (!region && (rc = s3_env_or_file(env, "AWS_DEFAULT_REGION", &region, err)) != CAIRN_OK)
        goto fail;
    c->region = region ? region : strdup("us-east-1");
    if (!c->region) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto fail;
    }
    for (p = c->region; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-') {
            rc = cairn_error(err, CAIRN_FATAL, "invalid AWS region '%.64s'", c->region);
            goto fail;
        }
    if ((rc = s3_env_or_file(env, "AWS_ENDPOINT_URL_S3", &ep, err)) != CAIRN_OK)
        goto fail;
    if (!ep) {
        ep_var = "AWS_ENDPOINT_URL";
        if ((rc = s3_env_or_file(env, "AWS_ENDPOINT_URL", &ep, err)) != CAIRN_OK)
            goto fail;
    }
    if (ep) {
        rc = parse_endpoint(ep_var, ep, c, err);
        free(ep);
        if (rc != CAIRN_OK)
            goto fail;
        c->custom_endpoint = 1;
        c->path_style = 1;
    } else if (strchr(c->bucket, '.')) {
        /* a dotted bucket name breaks the *.s3 TLS wildcard: path-style */
        c->path_style = 1;
        if (asprintf(&c->host, "s3.%s.amazonaws.com", c->region) < 0)
            c->host = NULL;
    } else {
        if (asprintf(&c->host, "%s.s3.%s.amazonaws.com", c->bucket, c->region) < 0)
            c->host = NULL;
    }
    if (!c->endpoint && c->host && asprintf(&c->endpoint, "https://%s", c->host) < 0)
        c->endpoint = NULL;
    if (c->path_style) {
        if (asprintf(&c->base_path, "/%s", c->bucket) < 0)
            c->base_path = NULL;
    } else {
        c->base_path = strdup("");
    }
    if (!c->host || !c->endpoint || !c->base_path) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto fail;
    }
    if ((rc = load_credentials(env, c, err)) != CAIRN_OK)
        goto fail;
    return CAIRN_OK;
fail:
    s3_conf_free(c);
    return rc;
}

void s3_conf_free(struct s3_conf *c)
{
    if (!c)
        return;
    free(c->bucket);
    free(c->prefix);
    free(c->region);
    wipe_free(c->access_key);
    wipe_free(c->secret_key);
    wipe_free(c->session_token);
    free(c->key_files[0]);
    free(c->key_files[1]);
    free(c->key_files[2]);
    free(c->cred_file);
    free(c->profile);
    free(c->role_arn);
    free(c->token_file);
    free(c->session_name);
    free(c->sts_endpoint);
    free(c->container_uri);
    free(c->container_auth_file);
    wipe_free(c->container_auth);
    free(c->imds_endpoint);
    free(c->endpoint);
    free(c->host);
    free(c->base_path);
    memset(c, 0, sizeof *c);
}

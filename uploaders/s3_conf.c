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

int s3_env_or_file(s3_getenv_fn env, const char *name, char **out, cairn_err *err)
{
    const char *v = env(name), *path;
    char fname[128];
    cairn_buf b = CAIRN_BUF_INIT;
    cairn_err e2;
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

/* Reads profile `profile` from an INI-style credentials file. CAIRN_NOTFOUND if
 * the file does not exist; the profile missing is an error naming both. */
static int read_cred_file(const char *path, const char *profile, struct s3_conf *c,
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

static int load_credentials(s3_getenv_fn env, struct s3_conf *c, cairn_err *err)
{
    const char *file = env("AWS_SHARED_CREDENTIALS_FILE"), *profile = env("AWS_PROFILE");
    char path[4096];
    int rc;
    if ((rc = s3_env_or_file(env, "AWS_ACCESS_KEY_ID", &c->access_key, err)) != CAIRN_OK ||
        (rc = s3_env_or_file(env, "AWS_SECRET_ACCESS_KEY", &c->secret_key, err)) != CAIRN_OK ||
        (rc = s3_env_or_file(env, "AWS_SESSION_TOKEN", &c->session_token, err)) != CAIRN_OK)
        return rc;
    if (c->access_key || c->secret_key) {
        if (!c->access_key)
            return cairn_error(err, CAIRN_FATAL,
                               "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not");
        if (!c->secret_key)
            return cairn_error(err, CAIRN_FATAL,
                               "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not "
                               "(nor AWS_SECRET_ACCESS_KEY_FILE)");
        c->cred_source = "the environment";
        return CAIRN_OK;
    }
    /* a session token alone means nothing without a key */
    wipe_free(c->session_token);
    c->session_token = NULL;
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
            goto none;
        snprintf(path, sizeof path, "%s/.aws/credentials", home);
    }
    rc = read_cred_file(path, profile, c, err);
    if (rc == CAIRN_NOTFOUND) {
        if (file && *file)
            return cairn_error(err, CAIRN_FATAL,
                               "the credentials file '%s' (AWS_SHARED_CREDENTIALS_FILE) does "
                               "not exist",
                               path);
        goto none;
    }
    if (rc == CAIRN_OK)
        c->cred_source = "the shared credentials file";
    return rc;
none:
    return cairn_error(err, CAIRN_FATAL,
                       "no S3 credentials for %s (set AWS_ACCESS_KEY_ID and "
                       "AWS_SECRET_ACCESS_KEY, or their _FILE forms, or add a [%s] profile to "
                       "~/.aws/credentials)",
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
    free(c->endpoint);
    free(c->host);
    free(c->base_path);
    memset(c, 0, sizeof *c);
}

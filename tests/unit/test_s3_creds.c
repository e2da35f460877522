/* tests/unit/test_s3_creds.c — where S3 credentials come from, without a
 * server: the STS AssumeRoleWithWebIdentity and container-credentials answer
 * parsers (good, error, malformed and hostile documents; no secret in any
 * message), the container URI rule (http only to loopback or the agents),
 * the precedence of the sources in s3_conf_load (environment keys, web
 * identity, shared credentials file, container credentials), the STS
 * endpoint and session name, re-reading a rotated credentials file, and the
 * provider's refresh after ExpiredToken under many threads.
 * Exit 0 when every check passes; each failure prints "FAIL: ..." on stderr. */
#define _GNU_SOURCE
#include "../../uploaders/s3.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
#define TOKEN "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN+/=="

/* ---- STS answers ---- */

static const char sts_ok[] =
    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
    "  <AssumeRoleWithWebIdentityResult>\n"
    "    <SubjectFromWebIdentityToken>system:serviceaccount:cairn:agent</SubjectFromWebIdentityToken>\n"
    "    <AssumedRoleUser><Arn>arn:aws:sts::1:assumed-role/r/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>\n"
    "    <Credentials>\n"
    "      <SessionToken>" TOKEN "</SessionToken>\n"
    "      <SecretAccessKey>" SECRET "</SecretAccessKey>\n"
    "      <Expiration>2026-11-22T06:00:00Z</Expiration>\n"
    "      <AccessKeyId>ASIAEXAMPLE123</AccessKeyId>\n"
    "    </Credentials>\n"
    "    <Audience>sts.amazonaws.com</Audience>\n"
    "  </AssumeRoleWithWebIdentityResult>\n"
    "  <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata>\n"
    "</AssumeRoleWithWebIdentityResponse>\n";

static int sts(const char *doc, struct s3_creds *k, struct s3_error_info *e, cairn_err *err)
{
    return s3_parse_sts_response(doc, strlen(doc), k, e, err);
}

static void test_sts(void)
{
    struct s3_creds k;
    struct s3_error_info e;
    cairn_err err;
    int rc = sts(sts_ok, &k, &e, &err);
    CHECK(rc == CAIRN_OK, "a real STS answer parses: %s", err.msg);
    if (rc == CAIRN_OK) {
        CHECK(!strcmp(k.access_key, "ASIAEXAMPLE123"), "AccessKeyId");
        CHECK(!strcmp(k.secret_key, SECRET), "SecretAccessKey");
        CHECK(!strcmp(k.session_token, TOKEN), "SessionToken");
        CHECK(k.expiration == 1795327200, "Expiration 2026-11-22T06:00:00Z = %lld",
              (long long)k.expiration);
    }
    s3_creds_free(&k);
    CHECK(!k.access_key && !k.session_token, "free clears");

    rc = sts("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>"
             "<Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>No OpenIDConnect "
             "provider found</Message></Error><RequestId>x</RequestId></ErrorResponse>",
             &k, &e, &err);
    CHECK(rc == CAIRN_NOTFOUND, "an STS error document is CAIRN_NOTFOUND (%d)", rc);
    CHECK(!strcmp(e.code, "InvalidIdentityToken"), "error code '%s'", e.code);
    CHECK(!strcmp(e.message, "No OpenIDConnect provider found"), "message '%s'", e.message);
    CHECK(!k.access_key, "no keys with an error");
    rc = sts("<Error><Code>ExpiredTokenException</Code><Message>m</Message></Error>", &k, &e,
             &err);
    CHECK(rc == CAIRN_NOTFOUND && !strcmp(e.code, "ExpiredTokenException"), "bare <Error>");

    /* broken or hostile answers: refused, and the message never quotes a secret */
    {
        static const char *bad[] = {
            "",
            "not xml",
            "<AssumeRoleWithWebIdentityResponse/>",
            "<SomethingElse><Credentials><AccessKeyId>A</AccessKeyId></Credentials></SomethingElse>",
            "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
            "<AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>" SECRET "</SecretAccessKey>"
            "<Expiration>2026-11-22T06:00:00Z</Expiration></Credentials>"
            "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
            "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
            "<AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>" SECRET "</SecretAccessKey>"
            "<SessionToken>" TOKEN "</SessionToken><Expiration>tomorrow</Expiration>"
            "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
            "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
            "<AccessKeyId>ASIA 1</AccessKeyId><SecretAccessKey>" SECRET "</SecretAccessKey>"
            "<SessionToken>" TOKEN "</SessionToken><Expiration>2026-11-22T06:00:00Z</Expiration>"
            "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
            "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
            "<AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>" SECRET "</SecretAccessKey>"
            "<SessionToken>" TOKEN "&#10;X-Evil: 1</SessionToken><Expiration>2026-11-22T06:00:00Z"
            "</Expiration></Credentials></AssumeRoleWithWebIdentityResult>"
            "</AssumeRoleWithWebIdentityResponse>",
            "<!DOCTYPE x [<!ENTITY a \"b\">]><AssumeRoleWithWebIdentityResponse/>",
            NULL};
        size_t i;
        for (i = 0; bad[i]; i++) {
            cairn_err_clear(&err);
            rc = sts(bad[i], &k, &e, &err);
            CHECK(rc == CAIRN_CORRUPT, "bad STS answer %zu refused (rc %d)", i, rc);
            CHECK(!k.access_key && !k.secret_key && !k.session_token, "no keys left (%zu)", i);
            CHECK(!strstr(err.msg, SECRET) && !strstr(err.msg, TOKEN),
                  "no secret in the message (%zu): %s", i, err.msg);
            CHECK(err.msg[0], "a message (%zu)", i);
        }
    }
}

/* ---- container credentials ---- */

static void test_container(void)
{
    struct s3_creds k;
    cairn_err err;
    const char *ok = "{\"AccessKeyId\":\"ASIAPOD\",\"SecretAccessKey\":\"" SECRET "\","
                     "\"Token\":\"" TOKEN "\",\"AccountId\":\"123456789012\","
                     "\"Expiration\":\"2026-11-22T06:00:00Z\"}";
    int rc = s3_parse_container_creds(ok, strlen(ok), &k, &err);
    CHECK(rc == CAIRN_OK, "a Pod Identity answer parses: %s", err.msg);
    if (rc == CAIRN_OK) {
        CHECK(!strcmp(k.access_key, "ASIAPOD") && !strcmp(k.secret_key, SECRET) &&
                  !strcmp(k.session_token, TOKEN),
              "fields");
        CHECK(k.expiration == 1795327200, "Expiration");
    }
    s3_creds_free(&k);
    {
        const char *im = "{\"Code\":\"Success\",\"LastUpdated\":\"2026-11-22T05:00:00Z\","
                         "\"Type\":\"AWS-HMAC\",\"AccessKeyId\":\"ASIAEC2\",\"SecretAccessKey\""
                         ":\"s\",\"Token\":\"t\",\"Expiration\":\"2026-11-22T11:00:00Z\"}";
        rc = s3_parse_container_creds(im, strlen(im), &k, &err);
        CHECK(rc == CAIRN_OK && !strcmp(k.access_key, "ASIAEC2") && k.expiration == 1795345200,
              "an IMDS answer (Code Success): %s", err.msg);
        s3_creds_free(&k);
    }
    {
        const char *nt = "{\"AccessKeyId\":\"AKIA\",\"SecretAccessKey\":\"s\"}";
        rc = s3_parse_container_creds(nt, strlen(nt), &k, &err);
        CHECK(rc == CAIRN_OK && !k.session_token && k.expiration == 0,
              "no Token and no Expiration: long-term keys");
        s3_creds_free(&k);
    }
    {
        static const char *bad[] = {
            "",
            "[]",
            "{\"AccessKeyId\":\"A\"",
            "{\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"" TOKEN "\"}",
            "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"" TOKEN
            "\",\"Expiration\":\"soon\"}",
            "{\"AccessKeyId\":\"A\",\"AccessKeyId\":\"B\",\"SecretAccessKey\":\"" SECRET "\"}",
            "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"a\\r\\nX: y\"}",
            "{\"AccessKeyId\":7,\"SecretAccessKey\":\"" SECRET "\"}",
            "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\" " SECRET,
            "{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"AccessKeyId\":\"A\","
            "\"SecretAccessKey\":\"" SECRET "\"}",
            NULL};
        size_t i;
        for (i = 0; bad[i]; i++) {
            cairn_err_clear(&err);
            rc = s3_parse_container_creds(bad[i], strlen(bad[i]), &k, &err);
            CHECK(rc == CAIRN_CORRUPT, "bad container answer %zu refused (rc %d)", i, rc);
            CHECK(!k.access_key, "no keys left (%zu)", i);
            CHECK(!strstr(err.msg, SECRET) && !strstr(err.msg, TOKEN),
                  "no secret in the message (%zu): %s", i, err.msg);
        }
    }
    {
        static const char *good[] = {"https://creds.example.com/v1/credentials",
                                     "http://127.0.0.1:8080/v1/credentials",
                                     "http://127.9.8.7/x",
                                     "http://localhost:1/creds",
                                     "http://169.254.170.2/v2/credentials/abc",
                                     "http://169.254.170.23/v1/credentials",
                                     "http://[fd00:ec2::23]/v1/credentials",
                                     "http://[::1]:9000/x",
                                     NULL};
        static const char *badu[] = {"http://10.0.0.1/v1/credentials",
                                     "http://169.254.169.254/latest/meta-data",
                                     "http://127.0.0.1.evil.example/x",
                                     "http://localhost.evil.example/x",
                                     "http://evil.example/?host=127.0.0.1",
                                     "http://user:pw@127.0.0.1/x",
                                     "ftp://127.0.0.1/x",
                                     "http://127.0.0.1/a b",
                                     "http:///x",
                                     NULL};
        size_t i;
        for (i = 0; good[i]; i++)
            CHECK(s3_container_uri_check("V", good[i], &err) == CAIRN_OK, "accepted: %s (%s)",
                  good[i], err.msg);
        for (i = 0; badu[i]; i++) {
            cairn_err_clear(&err);
            CHECK(s3_container_uri_check("V", badu[i], &err) != CAIRN_OK, "refused: %s",
                  badu[i]);
            CHECK(strstr(err.msg, "V") != NULL, "names the variable: %s", err.msg);
        }
        CHECK(s3_container_uri_check("V", "http://user:pw@127.0.0.1/x", &err) != CAIRN_OK &&
                  !strstr(err.msg, "pw"),
              "user:password not echoed: %s", err.msg);
    }
}

/* ---- configuration: which source wins ---- */

/* The real environment, replaced as a whole for each case. */
static const char *env(const char *name)
{
    return getenv(name);
}

static void set_env(const char *const *kv)
{
    size_t i;
    clearenv();
    for (i = 0; kv[2 * i]; i++)
        setenv(kv[2 * i], kv[2 * i + 1], 1);
}
static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_precedence(const char *dir)
{
    struct s3_conf c;
    cairn_err err;
    char credfile[300], nofile[300];
    int rc;
    snprintf(credfile, sizeof credfile, "%s/credentials", dir);
    snprintf(nofile, sizeof nofile, "%s/none", dir);
    write_text(credfile, "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = FS\n");
    {
        const char *kv[] = {"AWS_ACCESS_KEY_ID", "ENVKEY", "AWS_SECRET_ACCESS_KEY", "ES",
                            "AWS_ROLE_ARN", "arn:aws:iam::1:role/r",
                            "AWS_WEB_IDENTITY_TOKEN_FILE", "/t", "AWS_SHARED_CREDENTIALS_FILE",
                            credfile, NULL};
        set_env(kv);
        rc = s3_conf_load("s3://b/p", env, &c, &err);
        CHECK(rc == CAIRN_OK && c.cred_kind == S3_CRED_ENV && !strcmp(c.access_key, "ENVKEY"),
              "environment keys come first: %s", err.msg);
        s3_conf_free(&c);
    }
    {
        const char *kv[] = {"AWS_ROLE_ARN", "arn:aws:iam::1:role/r",
                            "AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks/token",
                            "AWS_SHARED_CREDENTIALS_FILE", credfile,
                            "AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/x",
                            "AWS_REGION", "eu-west-1", NULL};
        set_env(kv);
        rc = s3_conf_load("s3://b/p", env, &c, &err);
        CHECK(rc == CAIRN_OK && c.cred_kind == S3_CRED_WEB_IDENTITY,
              "web identity before the shared file: %s", err.msg);
        if (rc == CAIRN_OK) {
            CHECK(!c.access_key, "no keys before STS answers");
            CHECK(!strcmp(c.role_arn, "arn:aws:iam::1:role/r"), "role");
            CHECK(!strcmp(c.token_file, "/var/run/secrets/eks/token"), "token file");
            CHECK(!strcmp(c.sts_endpoint, "https://sts.amazonaws.com"), "global STS: %s",
                  c.sts_endpoint);
            CHECK(!strncmp(c.session_name, "cairn-", 6) && strlen(c.session_name) <= 64 &&
                      strspn(c.session_name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                             "0123456789_+=,.@-") == strlen(c.session_name),
                  "generated session name '%s'", c.session_name);
            CHECK(c.duration == 0, "no DurationSeconds by default");
        }
        s3_conf_free(&c);
        setenv("AWS_STS_REGIONAL_ENDPOINTS", "regional", 1);
        setenv("AWS_ROLE_SESSION_NAME", "node-1@cluster", 1);
        setenv("CAIRN_S3_ROLE_DURATION_SECONDS", "3600", 1);
        rc = s3_conf_load("s3://b/p", env, &c, &err);
        CHECK(rc == CAIRN_OK && !strcmp(c.sts_endpoint, "https://sts.eu-west-1.amazonaws.com"),
              "regional STS: %s", rc == CAIRN_OK ? c.sts_endpoint : err.msg);
        CHECK(rc == CAIRN_OK && !strcmp(c.session_name, "node-1@cluster"), "session name");
        CHECK(rc == CAIRN_OK && c.duration == 3600, "duration");
        s3_conf_free(&c);
        setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:4566/", 1);
        rc = s3_conf_load("s3://b/p", env, &c, &err);
        CHECK(rc == CAIRN_OK && !strcmp(c.sts_endpoint, "http://127.0.0.1:4566"),
              "AWS_ENDPOINT_URL_STS wins: %s", rc == CAIRN_OK ? c.sts_endpoint : err.msg);
        s3_conf_free(&c);
        setenv("AWS_ROLE_SESSION_NAME", "bad name with spaces", 1);
        CHECK(s3_conf_load("s3://b/p", env, &c, &err) == CAIRN_FATAL &&
                  strstr(err.msg, "AWS_ROLE_SESSION_NAME"),
              "a bad session name is refused: %s", err.msg);
        setenv("AWS_ROLE_SESSION_NAME", "ok-name", 1);
        setenv("CAIRN_S3_ROLE_DURATION_SECONDS", "60", 1);
        CHECK(s3_conf_load("s3://b/p", env, &c, &err) == CAIRN_FATAL &&
                  strstr(err.msg, "CAIRN_S3_ROLE_DURATION_SECONDS"),
              "a too short duration is refused: %s", err.msg);
        setenv("CAIRN_S3_ROLE_DURATION_SECONDS", "3600", 1);
        setenv("AWS_ROLE_ARN", "not-an-arn", 1);
        CHECK(s3_conf_load("s3://b/p", env, &c, &err) == CAIRN_FATAL &&
                  strstr(err.msg, "AWS_ROLE_ARN"),
              "a bad role ARN is refused: %s", err.msg);
    }
    {
        const char *kv[] = {"AWS_ROLE_ARN", "arn:aws:iam::1:role/r", NULL};
        set_env(kv);
        CHECK(s3_conf_load("s3://b/p", env, &c, &err) == CAIRN_FATAL &&
                  strstr(err.msg, "AWS_WEB_IDENTITY_TOKEN_FILE"),
              "a role without a token file: %s", err.msg);
        unsetenv("AWS_ROLE_ARN");
        setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/t", 1);
        CHECK(s3_conf_load("s3://b/p", env, &c, &err) == CAIRN_FATAL &&
                  strstr(err.msg, "AWS_ROLE_ARN"),
              "a token file without a role: %s", err.msg);
    }
    {
        const char *kv[] = {"AWS_SHARED_CREDENTIALS_FILE", credfile,
                            "AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/x", NULL};
        set_env(kv);
        rc = s3_conf_load("s3://b/p", env, &c, &err);
        CHECK(rc == CAIRN_OK && c.cred_kind == S3_CRED_FILE && !strcmp(c.access_key, "FILEKEY"),
              "the shared file before container credentials: %s", err.msg);
        CHECK(rc == CAIRN_OK && !strcmp(c.cred_file, credfile) && !strcmp(c.profile, "default"),
              "file and profile kept for a re-read");
        s3_conf_free(&c);
        setenv("AWS_SHARED_CREDENTIALS_FILE", nofile, 1);
        rc = s3_conf_load("s3://b/p", env, &c, &err);
        CHECK(rc == CAIRN_OK && c.cred_kind == S3_CRED_CONTAINER &&
                  !strcmp(c.container_uri, "http://127.0.0.1:1/x"),
              "a missing shared file falls through to container credentials: %s", err.msg);
        s3_conf_free(&c);
        setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok", 1);
        setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
               "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token", 1);
        rc = s3_conf_load("s3://b/p", env, &c, &err);
        CHECK(rc == CAIRN_OK && c.container_auth_file && !c.container_auth,
              "the token file wins over the token value");
        s3_conf_free(&c);
        setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://192.168.1.10/v1/credentials", 1);
        CHECK(s3_conf_load("s3://b/p", env, &c, &err) == CAIRN_FATAL &&
                  strstr(err.msg, "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
              "plain http to another host is refused: %s", err.msg);
        setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/uuid", 1);
        rc = s3_conf_load("s3://b/p", env, &c, &err);
        CHECK(rc == CAIRN_OK && !strcmp(c.container_uri, "http://169.254.170.2/v2/credentials/uuid"),
              "ECS relative URI: %s", rc == CAIRN_OK ? c.container_uri : err.msg);
        s3_conf_free(&c);
    }
    {
        const char *kv[] = {"AWS_SHARED_CREDENTIALS_FILE", nofile, NULL};
        set_env(kv);
        CHECK(s3_conf_load("s3://b/p", env, &c, &err) == CAIRN_FATAL && strstr(err.msg, nofile),
              "an explicit missing file alone is an error: %s", err.msg);
        kv[0] = "HOME";
        kv[1] = dir;
        set_env(kv);
        rc = s3_conf_load("s3://b/p", env, &c, &err);
        CHECK(rc == CAIRN_OK && c.cred_kind == S3_CRED_IMDS &&
                  !strcmp(c.imds_endpoint, "http://169.254.169.254"),
              "nothing else configured: the instance metadata service: %s", err.msg);
        s3_conf_free(&c);
        setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6", 1);
        rc = s3_conf_load("s3://b/p", env, &c, &err);
        CHECK(rc == CAIRN_OK && !strcmp(c.imds_endpoint, "http://[fd00:ec2::254]"), "IMDS IPv6");
        s3_conf_free(&c);
        setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1338/", 1);
        rc = s3_conf_load("s3://b/p", env, &c, &err);
        CHECK(rc == CAIRN_OK && !strcmp(c.imds_endpoint, "http://127.0.0.1:1338"),
              "IMDS endpoint override");
        s3_conf_free(&c);
        setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
        CHECK(s3_conf_load("s3://b/p", env, &c, &err) == CAIRN_FATAL &&
                  strstr(err.msg, "AWS_ROLE_ARN") && strstr(err.msg, "AWS_EC2_METADATA_DISABLED"),
              "nothing configured and IMDS off lists the ways: %s", err.msg);
    }
    unlink(credfile);
}

/* ---- re-reading static keys; the provider ---- */

/* The key itself, and the session token through a file. After the load the
 * function answers for another store (cairn copy's destination): a refresh
 * must not ask it again. */
static const char *env_key = "K1";
static char env_token_file[256];
static const char *fenv2(const char *name)
{
    if (!strcmp(name, "AWS_ACCESS_KEY_ID"))
        return env_key;
    if (!strcmp(name, "AWS_SECRET_ACCESS_KEY"))
        return "S";
    if (!strcmp(name, "AWS_SESSION_TOKEN_FILE"))
        return env_token_file;
    return NULL;
}

struct worker_arg {
    struct s3_provider *p;
    int bad;
};

static void *worker(void *arg)
{
    struct worker_arg *w = arg;
    int i;
    for (i = 0; i < 2000; i++) {
        struct s3_creds k;
        unsigned gen;
        cairn_err err;
        if (s3_provider_get(w->p, &k, &gen, &err) != CAIRN_OK || !k.access_key ||
            !k.session_token || strcmp(k.secret_key, "S") != 0)
            w->bad++;
        if (i % 50 == 0)
            s3_provider_expired(w->p, gen);
        s3_creds_free(&k);
    }
    return NULL;
}

static void test_reread(const char *dir)
{
    struct s3_conf c;
    struct s3_creds k;
    cairn_err err;
    char credfile[300];
    int rc;
    snprintf(credfile, sizeof credfile, "%s/rotating", dir);
    write_text(credfile, "[p]\naws_access_key_id = A1\naws_secret_access_key = S1\n"
                         "aws_session_token = OLD\n");
    {
        const char *kv[] = {"AWS_SHARED_CREDENTIALS_FILE", credfile, "AWS_PROFILE", "p", NULL};
        set_env(kv);
        rc = s3_conf_load("s3://b/p", env, &c, &err);
        CHECK(rc == CAIRN_OK && !strcmp(c.session_token, "OLD"), "first read: %s", err.msg);
        if (rc != CAIRN_OK)
            return;
        write_text(credfile, "[p]\naws_access_key_id = A2\naws_secret_access_key = S2\n"
                             "aws_session_token = NEW\n");
        rc = s3_conf_read_static(&c, &k, &err);
        CHECK(rc == CAIRN_OK && !strcmp(k.access_key, "A2") && !strcmp(k.session_token, "NEW"),
              "the rotated file is read again: %s", err.msg);
        s3_creds_free(&k);
        {
            struct s3_provider *p;
            unsigned gen = 0, gen2 = 0;
            rc = s3_provider_new(&c, NULL, &p, &err);
            CHECK(rc == CAIRN_OK, "provider: %s", err.msg);
            if (rc == CAIRN_OK) {
                CHECK(s3_provider_get(p, &k, &gen, &err) == CAIRN_OK &&
                          !strcmp(k.session_token, "OLD"),
                      "the keys read at open are used first");
                s3_creds_free(&k);
                s3_provider_expired(p, gen);
                CHECK(s3_provider_get(p, &k, &gen2, &err) == CAIRN_OK &&
                          !strcmp(k.session_token, "NEW") && gen2 != gen,
                      "ExpiredToken: the file is read again");
                s3_creds_free(&k);
                s3_provider_expired(p, gen); /* an old generation: nothing to do */
                unlink(credfile);
                CHECK(s3_provider_get(p, &k, &gen, &err) == CAIRN_OK && gen == gen2,
                      "a report about older keys does not refresh again");
                s3_creds_free(&k);
                s3_provider_expired(p, gen);
                CHECK(s3_provider_get(p, &k, &gen, &err) != CAIRN_OK &&
                          strstr(err.msg, credfile),
                      "a vanished file is an error naming it: %s", err.msg);
                s3_provider_free(p);
            }
        }
        s3_conf_free(&c);
    }
    /* many threads getting keys while some report them expired */
    snprintf(env_token_file, sizeof env_token_file, "%s/token", dir);
    write_text(env_token_file, "T1\n");
    rc = s3_conf_load("s3://b/p", fenv2, &c, &err);
    CHECK(rc == CAIRN_OK && c.cred_kind == S3_CRED_ENV && !strcmp(c.session_token, "T1"),
          "env keys: %s", err.msg);
    if (rc == CAIRN_OK) {
        struct s3_provider *p;
        if (s3_provider_new(&c, NULL, &p, &err) == CAIRN_OK) {
            pthread_t t[8];
            struct worker_arg w[8];
            int i, bad = 0;
            unsigned gen;
            for (i = 0; i < 8; i++) {
                w[i].p = p;
                w[i].bad = 0;
                pthread_create(&t[i], NULL, worker, &w[i]);
            }
            for (i = 0; i < 8; i++) {
                pthread_join(t[i], NULL);
                bad += w[i].bad;
            }
            CHECK(bad == 0, "%d bad copies under concurrent refreshes", bad);
            env_key = "OTHER-STORE-KEY";
            write_text(env_token_file, "T2\n");
            CHECK(s3_provider_get(p, &k, &gen, &err) == CAIRN_OK, "get");
            s3_provider_expired(p, gen);
            s3_creds_free(&k);
            CHECK(s3_provider_get(p, &k, &gen, &err) == CAIRN_OK && !strcmp(k.access_key, "K1") &&
                      !strcmp(k.secret_key, "S") && !strcmp(k.session_token, "T2"),
                  "after ExpiredToken the _FILE named at load is read again, the variables "
                  "are not asked again: %s / %s",
                  k.access_key ? k.access_key : "-", k.session_token ? k.session_token : "-");
            s3_creds_free(&k);
            s3_provider_free(p);
        }
        s3_conf_free(&c);
    }
}

int main(void)
{
    char dir[] = "/tmp/cairn-test-s3creds-XXXXXX";
    test_sts();
    test_container();
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_precedence(dir);
    test_reread(dir);
    rmdir(dir);
    if (failures) {
        fprintf(stderr, "test_s3_creds: %d checks failed\n", failures);
        return 1;
    }
    printf("test_s3_creds: all checks passed\n");
    return 0;
}

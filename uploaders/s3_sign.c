/* uploaders/s3_sign.c — AWS Signature Version 4 for S3, written against the
 * published algorithm: canonical request, string to sign, the derived signing
 * key (HMAC-SHA256 chain date → region → service → "aws4_request") and the
 * Authorization header. OpenSSL supplies SHA-256, HMAC and MD5. */
#define _GNU_SOURCE
#include "s3.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char HEXU[] = "0123456789ABCDEF";

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

int s3_uri_encode(cairn_buf *out, const char *s, size_t n, int keep_slash)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            if (cairn_buf_putc(out, (char)c) != CAIRN_OK)
                return CAIRN_FAILED;
        } else {
            char e[3] = {'%', HEXU[c >> 4], HEXU[c & 15]};
            if (cairn_buf_append(out, e, 3) != CAIRN_OK)
                return CAIRN_FAILED;
        }
    }
    return CAIRN_OK;
}

struct enc_param {
    char *name;
    char *value;
};

static int cmp_param(const void *a, const void *b)
{
    const struct enc_param *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

static char *encode_dup(const char *s)
{
    cairn_buf b = CAIRN_BUF_INIT;
    if (!s)
        s = "";
    if (s3_uri_encode(&b, s, strlen(s), 0) != CAIRN_OK || !cairn_buf_cstr(&b)) {
        cairn_buf_free(&b);
        return NULL;
    }
    return cairn_buf_detach(&b, NULL);
}

int s3_canonical_query(const struct s3_param *p, size_t n, cairn_buf *out)
{
    struct enc_param *e;
    size_t i;
    int rc = CAIRN_OK;
    cairn_buf_reset(out);
    if (n == 0)
        return cairn_buf_cstr(out) ? CAIRN_OK : CAIRN_FAILED;
    e = calloc(n, sizeof *e);
    if (!e)
        return CAIRN_FAILED;
    for (i = 0; i < n && rc == CAIRN_OK; i++) {
        e[i].name = encode_dup(p[i].name);
        e[i].value = encode_dup(p[i].value);
        if (!e[i].name || !e[i].value)
            rc = CAIRN_FAILED;
    }
    if (rc == CAIRN_OK) {
        qsort(e, n, sizeof *e, cmp_param);
        for (i = 0; i < n && rc == CAIRN_OK; i++)
            rc = cairn_buf_appendf(out, "%s%s=%s", i ? "&" : "", e[i].name, e[i].value);
        if (rc == CAIRN_OK && !cairn_buf_cstr(out))
            rc = CAIRN_FAILED;
    }
    for (i = 0; i < n; i++) {
        free(e[i].name);
        free(e[i].value);
    }
    free(e);
    return rc;
}

static void hexlify(const unsigned char *in, size_t n, char *out)
{
    static const char h[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = h[in[i] >> 4];
        out[2 * i + 1] = h[in[i] & 15];
    }
    out[2 * n] = 0;
}

void s3_sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL);
    hexlify(md, 32, out);
}

void s3_md5_b64(const void *p, size_t n, char out[32])
{
    unsigned char md[16];
    unsigned int mdlen = 0;
    EVP_Digest(p, n, md, &mdlen, EVP_md5(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, 16); /* 24 chars + NUL */
}

void s3_amz_date(int64_t t, char out[17])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

struct sorted_header {
    const char *name;
    const char *value;
};

static int cmp_header(const void *a, const void *b)
{
    return strcmp(((const struct sorted_header *)a)->name,
                  ((const struct sorted_header *)b)->name);
}

/* Header values are trimmed and runs of spaces folded to one (SigV4 rule). */
static int append_trimmed(cairn_buf *b, const char *v)
{
    int space = 0, any = 0;
    for (; *v == ' ' || *v == '\t'; v++)
        ;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = 1;
            continue;
        }
        if (space && any && cairn_buf_putc(b, ' ') != CAIRN_OK)
            return CAIRN_FAILED;
        space = 0;
        any = 1;
        if (cairn_buf_putc(b, *v) != CAIRN_OK)
            return CAIRN_FAILED;
    }
    return CAIRN_OK;
}

static int hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int olen = 0;
    return HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out,
                &olen) && olen == 32
               ? 0
               : -1;
}

int s3_sign(const struct s3_sign_input *in, cairn_buf *canonical_out, cairn_buf *sts_out,
            char sig_hex[65], cairn_buf *auth)
{
    cairn_buf can = CAIRN_BUF_INIT, sts = CAIRN_BUF_INIT, signed_names = CAIRN_BUF_INIT;
    struct sorted_header *h = NULL;
    char date[9], can_hash[65], sig[65];
    unsigned char k1[32], k2[32], k3[32], k4[32], mac[32];
    char *ksecret = NULL;
    size_t i, klen;
    int rc = CAIRN_FAILED;

    if (!in->amz_date || strlen(in->amz_date) != 16 || !in->secret_key || !in->access_key)
        return CAIRN_FAILED;
    memcpy(date, in->amz_date, 8);
    date[8] = 0;
    h = calloc(in->nheaders ? in->nheaders : 1, sizeof *h);
    if (!h)
        return CAIRN_FAILED;
    for (i = 0; i < in->nheaders; i++) {
        h[i].name = in->headers[i].name;
        h[i].value = in->headers[i].value ? in->headers[i].value : "";
    }
    qsort(h, in->nheaders, sizeof *h, cmp_header);

    /* canonical request */
    if (cairn_buf_appendf(&can, "%s\n%s\n%s\n", in->method,
                          in->path && *in->path ? in->path : "/",
                          in->query ? in->query : "") != CAIRN_OK)
        goto out;
    for (i = 0; i < in->nheaders; i++) {
        if (cairn_buf_appendf(&can, "%s:", h[i].name) != CAIRN_OK ||
            append_trimmed(&can, h[i].value) != CAIRN_OK || cairn_buf_putc(&can, '\n') != CAIRN_OK)
            goto out;
        if (cairn_buf_appendf(&signed_names, "%s%s", i ? ";" : "", h[i].name) != CAIRN_OK)
            goto out;
    }
    if (!cairn_buf_cstr(&signed_names) ||
        cairn_buf_appendf(&can, "\n%s\n%s", (const char *)signed_names.data,
                          in->payload_hash) != CAIRN_OK)
        goto out;
    s3_sha256_hex(can.data, can.len, can_hash);

    /* string to sign */
    if (cairn_buf_appendf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", in->amz_date,
                          date, in->region, in->service, can_hash) != CAIRN_OK ||
        !cairn_buf_cstr(&sts))
        goto out;

    /* signing key and signature */
    klen = 4 + strlen(in->secret_key);
    ksecret = malloc(klen + 1);
    if (!ksecret)
        goto out;
    memcpy(ksecret, "AWS4", 4);
    memcpy(ksecret + 4, in->secret_key, klen - 4 + 1);
    if (hmac(ksecret, klen, date, k1) || hmac(k1, 32, in->region, k2) ||
        hmac(k2, 32, in->service, k3) || hmac(k3, 32, "aws4_request", k4) ||
        hmac(k4, 32, (const char *)sts.data, mac))
        goto out;
    hexlify(mac, 32, sig);

    cairn_buf_reset(auth);
    if (cairn_buf_appendf(auth,
                          "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, "
                          "SignedHeaders=%s, Signature=%s",
                          in->access_key, date, in->region, in->service,
                          (const char *)signed_names.data, sig) != CAIRN_OK ||
        !cairn_buf_cstr(auth))
        goto out;
    if (sig_hex)
        memcpy(sig_hex, sig, 65);
    if (canonical_out) {
        cairn_buf_reset(canonical_out);
        if (cairn_buf_append(canonical_out, can.data, can.len) != CAIRN_OK ||
            !cairn_buf_cstr(canonical_out))
            goto out;
    }
    if (sts_out) {
        cairn_buf_reset(sts_out);
        if (cairn_buf_append(sts_out, sts.data, sts.len) != CAIRN_OK || !cairn_buf_cstr(sts_out))
            goto out;
    }
    rc = CAIRN_OK;
out:
    if (ksecret) {
        OPENSSL_cleanse(ksecret, klen);
        free(ksecret);
    }
    OPENSSL_cleanse(k1, sizeof k1);
    OPENSSL_cleanse(k2, sizeof k2);
    OPENSSL_cleanse(k3, sizeof k3);
    OPENSSL_cleanse(k4, sizeof k4);
    free(h);
    cairn_buf_free(&can);
    cairn_buf_free(&sts);
    cairn_buf_free(&signed_names);
    return rc;
}

/* engine/crypto.c — see crypto.h. */
#define _GNU_SOURCE
#include "crypto.h"
#include "repo.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

static const char ENV_MAGIC[8] = {'C', 'A', 'I', 'R', 'N', 'E', 'N', 'C'};
static const char MK_MAGIC[8] = {'C', 'A', 'I', 'R', 'N', 'M', 'K', '1'};
#define SEG CAIRN_CRYPT_SEG
#define TAG CAIRN_CRYPT_TAG
#define HDR CAIRN_CRYPT_HDR
#define SEALED_SEG ((uint64_t)SEG + TAG)
#define MK_LEN 136
#define CONFIG_MAX (1u << 20)
#define MAX_KEYS 256 /* each key tried costs one scrypt */

static const char AUTH_FAIL[] =
    "failed authentication (damaged, truncated, moved from another name, or not written "
    "with this repository's key)";

void cairn_master_wipe(struct cairn_master *m)
{
    if (m)
        OPENSSL_cleanse(m, sizeof *m);
}

/* ---- sizes ---- */

static uint64_t nsegs(uint64_t plain)
{
    return plain == 0 ? 1 : (plain + SEG - 1) / SEG;
}

uint64_t cairn_crypt_sealed_size(uint64_t plain)
{
    return HDR + plain + TAG * nsegs(plain);
}

int cairn_crypt_plain_size(uint64_t sealed, uint64_t *plain)
{
    uint64_t d, k, rem;
    if (sealed < HDR + TAG)
        return CAIRN_CORRUPT;
    d = sealed - HDR;
    k = d / SEALED_SEG;
    rem = d % SEALED_SEG;
    if (rem == 0)
        *plain = k * SEG;
    else if (rem < TAG || (rem == TAG && k > 0))
        return CAIRN_CORRUPT;
    else
        *plain = k * SEG + rem - TAG;
    return CAIRN_OK;
}

int cairn_crypt_header_parse(const uint8_t *d, size_t n, uint8_t salt[32], cairn_err *err)
{
    if (n < HDR || memcmp(d, ENV_MAGIC, 8) != 0)
        return cairn_error(err, CAIRN_CORRUPT, "not an encrypted object (no CAIRNENC header)");
    if (d[8] != 1 || d[9] || d[10] || d[11])
        return cairn_error(err, CAIRN_CORRUPT,
                           "encrypted object of an unknown version %u (this cairn reads 1)",
                           d[8]);
    memcpy(salt, d + 12, 32);
    return CAIRN_OK;
}

/* ---- primitives ---- */

/* HKDF-SHA256(key, salt, info) -> 32 bytes. */
static int hkdf(const uint8_t key[32], const uint8_t *salt, size_t saltlen, const void *info,
                size_t infolen, uint8_t out[32])
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM p[5], *q = p;
    int ok;
    *q++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key, 32);
    if (saltlen)
        *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen);
    *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, infolen);
    *q = OSSL_PARAM_construct_end();
    ok = kc && EVP_KDF_derive(kc, out, 32, p) == 1;
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
    return ok ? 0 : -1;
}

static int object_key(const struct cairn_master *m, const uint8_t salt[32], const char *name,
                      uint8_t out[32])
{
    char info[600];
    size_t nl = strlen(name);
    if (nl > 512)
        return -1;
    memcpy(info, "cairn-object-v1", 16); /* with its NUL as separator */
    memcpy(info + 16, name, nl);
    return hkdf(m->enc_key, salt, 32, info, 16 + nl, out);
}

/* One GCM context keyed for an object; the nonce is set per segment. */
static EVP_CIPHER_CTX *gcm_new(const uint8_t key[32], int enc)
{
    EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
    if (cx && EVP_CipherInit_ex(cx, EVP_aes_256_gcm(), NULL, key, NULL, enc) != 1) {
        EVP_CIPHER_CTX_free(cx);
        cx = NULL;
    }
    return cx;
}

/* Seals (enc = 1: tag written) or opens (enc = 0: tag checked) one segment. */
static int seg_do(EVP_CIPHER_CTX *cx, int enc, uint64_t idx, int last, const uint8_t *in,
                  size_t n, uint8_t *out, uint8_t *tag)
{
    uint8_t nonce[12], dummy[16];
    int l = 0, i;
    memset(nonce, 0, 4);
    nonce[3] = last ? 1 : 0;
    for (i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(idx >> (56 - 8 * i));
    if (EVP_CipherInit_ex(cx, NULL, NULL, NULL, nonce, enc) != 1)
        return -1;
    if (n && EVP_CipherUpdate(cx, out, &l, in, (int)n) != 1)
        return -1;
    if (!enc && EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_SET_TAG, (int)TAG, tag) != 1)
        return -1;
    if (EVP_CipherFinal_ex(cx, dummy, &l) != 1)
        return -1;
    if (enc && EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_GET_TAG, (int)TAG, tag) != 1)
        return -1;
    return 0;
}

static void header_make(uint8_t h[HDR], const uint8_t salt[32])
{
    memcpy(h, ENV_MAGIC, 8);
    h[8] = 1;
    h[9] = h[10] = h[11] = 0;
    memcpy(h + 12, salt, 32);
}

/* ---- whole objects ---- */

int cairn_crypt_seal(const struct cairn_master *m, const char *name, const void *in, size_t len,
                     cairn_buf *out, cairn_err *err)
{
    const uint8_t *p = in;
    uint8_t salt[32], key[32], *o;
    uint64_t i, n = nsegs(len), total = cairn_crypt_sealed_size(len);
    EVP_CIPHER_CTX *cx = NULL;
    int rc = CAIRN_OK;
    cairn_buf_reset(out);
    if (total > SIZE_MAX / 2 || cairn_buf_reserve(out, (size_t)total) != CAIRN_OK)
        return cairn_error(err, CAIRN_FATAL, "out of memory encrypting '%s'", name);
    cairn_random(salt, sizeof salt);
    if (object_key(m, salt, name, key) != 0 || !(cx = gcm_new(key, 1))) {
        OPENSSL_cleanse(key, sizeof key);
        return cairn_error(err, CAIRN_FATAL, "cannot set up encryption of '%s' (OpenSSL)", name);
    }
    o = out->data;
    header_make(o, salt);
    o += HDR;
    for (i = 0; i < n; i++) {
        size_t sl = len - i * SEG < SEG ? len - i * SEG : SEG;
        if (seg_do(cx, 1, i, i + 1 == n, p + i * SEG, sl, o, o + sl) != 0) {
            rc = cairn_error(err, CAIRN_FATAL, "cannot encrypt '%s' (OpenSSL)", name);
            break;
        }
        o += sl + TAG;
    }
    out->len = rc == CAIRN_OK ? (size_t)total : 0;
    EVP_CIPHER_CTX_free(cx);
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

int cairn_crypt_unseal(const struct cairn_master *m, const char *name, const void *in,
                       size_t len, size_t max, cairn_buf *out, cairn_err *err)
{
    const uint8_t *c = in;
    uint8_t salt[32], key[32];
    uint64_t plain, i, n;
    EVP_CIPHER_CTX *cx;
    int rc = CAIRN_OK;
    cairn_buf_reset(out);
    if (cairn_crypt_plain_size(len, &plain) != CAIRN_OK)
        return cairn_error(err, CAIRN_CORRUPT, "object '%s' %s (impossible size %zu)", name,
                           AUTH_FAIL, len);
    if (cairn_crypt_header_parse(c, len, salt, err) != CAIRN_OK)
        return cairn_error_prefix(err, "object '%s'", name);
    if (plain > max)
        return cairn_error(err, CAIRN_FAILED, "object '%s' is larger than %zu bytes", name, max);
    if (cairn_buf_reserve(out, (size_t)plain + 1) != CAIRN_OK)
        return cairn_error(err, CAIRN_FATAL, "out of memory decrypting '%s'", name);
    if (object_key(m, salt, name, key) != 0 || !(cx = gcm_new(key, 0))) {
        OPENSSL_cleanse(key, sizeof key);
        return cairn_error(err, CAIRN_FATAL, "cannot set up decryption of '%s' (OpenSSL)", name);
    }
    n = nsegs(plain);
    c += HDR;
    for (i = 0; i < n; i++) {
        size_t sl = plain - i * SEG < SEG ? (size_t)(plain - i * SEG) : SEG;
        if (seg_do(cx, 0, i, i + 1 == n, c, sl, out->data + i * SEG, (uint8_t *)c + sl) != 0) {
            rc = cairn_error(err, CAIRN_CORRUPT, "object '%s' %s (segment %llu)", name,
                             AUTH_FAIL, (unsigned long long)i);
            break;
        }
        c += sl + TAG;
    }
    EVP_CIPHER_CTX_free(cx);
    OPENSSL_cleanse(key, sizeof key);
    if (rc != CAIRN_OK) {
        OPENSSL_cleanse(out->data, (size_t)plain);
        out->len = 0;
        return rc;
    }
    out->len = (size_t)plain;
    return CAIRN_OK;
}

int cairn_crypt_name_key(const struct cairn_master *m, uint8_t out[32])
{
    return hkdf(m->enc_key, NULL, 0, "cairn-object-names-v1", 21, out) == 0 ? CAIRN_OK
                                                                           : CAIRN_FATAL;
}

/* ---- passwords ---- */

const char *cairn_password_file(const struct cairn_store_opts *opts)
{
    const char *env = getenv("CAIRN_PASSWORD_FILE");
    if (opts && opts->password_file && *opts->password_file)
        return opts->password_file;
    return env && *env ? env : NULL;
}

int cairn_password_read(const char *path, cairn_buf *out, cairn_err *err)
{
    int rc;
    cairn_buf_reset(out);
    rc = cairn_read_file(path, out, CAIRN_PASSWORD_MAX, err);
    if (rc != CAIRN_OK) {
        cairn_password_free(out);
        return cairn_error_prefix(err, "password file");
    }
    if (out->len && out->data[out->len - 1] == '\n')
        out->len--;
    if (out->len && out->data[out->len - 1] == '\r')
        out->len--;
    if (out->len == 0) {
        cairn_password_free(out);
        return cairn_error(err, CAIRN_FATAL, "password file '%s' is empty", path);
    }
    return CAIRN_OK;
}

void cairn_password_free(cairn_buf *pw)
{
    if (pw->data)
        OPENSSL_cleanse(pw->data, pw->cap);
    cairn_buf_free(pw);
}

/* ---- key files ---- */

static int scrypt_ok(int n_log2, int r, int p)
{
    return n_log2 >= 10 && n_log2 <= 20 && r >= 1 && r <= 32 && p >= 1 && p <= 16 &&
           (uint64_t)128 * (uint64_t)r * ((uint64_t)1 << n_log2) <= ((uint64_t)1 << 30);
}

static int derive(const uint8_t *pw, size_t pwlen, const uint8_t salt[32], int n_log2, int r,
                  int p, uint8_t out[32])
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    uint64_t n = (uint64_t)1 << n_log2, maxmem = (uint64_t)3 << 29;
    uint32_t rr = (uint32_t)r, pp = (uint32_t)p;
    OSSL_PARAM ps[7];
    int ok;
    ps[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)pw, pwlen);
    ps[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, 32);
    ps[2] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n);
    ps[3] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &rr);
    ps[4] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &pp);
    ps[5] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem);
    ps[6] = OSSL_PARAM_construct_end();
    ok = kc && EVP_KDF_derive(kc, out, 32, ps) == 1;
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
    return ok ? 0 : -1;
}

/* AES-256-GCM of the 136-byte master, AAD = "cairn-key-v1:" + key id. */
static int wrap_do(int enc, const uint8_t key[32], const uint8_t nonce[12], const char *id,
                   const uint8_t *in, uint8_t *out, uint8_t *tag)
{
    EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
    char aad[64];
    int l = 0, ok;
    uint8_t dummy[16];
    snprintf(aad, sizeof aad, "cairn-key-v1:%s", id);
    ok = cx && EVP_CipherInit_ex(cx, EVP_aes_256_gcm(), NULL, key, nonce, enc) == 1 &&
         EVP_CipherUpdate(cx, NULL, &l, (const uint8_t *)aad, (int)strlen(aad)) == 1 &&
         EVP_CipherUpdate(cx, out, &l, in, MK_LEN) == 1 &&
         (enc || EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_SET_TAG, (int)TAG, tag) == 1) &&
         EVP_CipherFinal_ex(cx, dummy, &l) == 1 &&
         (!enc || EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_GET_TAG, (int)TAG, tag) == 1);
    EVP_CIPHER_CTX_free(cx);
    return ok ? 0 : -1;
}

static int hex_field(json_t *o, const char *name, uint8_t *out, size_t n)
{
    const char *s = json_string_value(json_object_get(o, name));
    return s && strlen(s) == 2 * n && cairn_unhex(s, out, n) == CAIRN_OK ? 0 : -1;
}

static int int_field(json_t *o, const char *name, int lo, int hi, int *out)
{
    json_t *v = json_object_get(o, name);
    json_int_t x;
    if (!json_is_integer(v))
        return -1;
    x = json_integer_value(v);
    if (x < lo || x > hi)
        return -1;
    *out = (int)x;
    return 0;
}

int cairn_keyfile_parse(const uint8_t *d, size_t n, struct cairn_keyfile *k, cairn_err *err)
{
    json_error_t je;
    json_t *o, *kdf;
    const char *id, *created, *host, *s;
    int version = 0;
    size_t i;
    memset(k, 0, sizeof *k);
    if (n > CAIRN_KEYFILE_MAX)
        return cairn_error(err, CAIRN_CORRUPT, "key file is larger than %u bytes",
                           CAIRN_KEYFILE_MAX);
    o = json_loadb((const char *)d, n, JSON_REJECT_DUPLICATES, &je);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return cairn_error(err, CAIRN_CORRUPT, "key file is not a JSON object");
    }
    kdf = json_object_get(o, "kdf");
    id = json_string_value(json_object_get(o, "id"));
    created = json_string_value(json_object_get(o, "created"));
    host = json_string_value(json_object_get(o, "host"));
    if (int_field(o, "version", 1, 1, &version) != 0) {
        json_decref(o);
        return cairn_error(err, CAIRN_CORRUPT, "key file of an unknown version (this cairn reads 1)");
    }
    if (!id || strlen(id) != CAIRN_KEY_ID_HEX)
        goto bad;
    for (i = 0; i < CAIRN_KEY_ID_HEX; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            goto bad;
    memcpy(k->id, id, CAIRN_KEY_ID_HEX + 1);
    if (!created || cairn_parse_time(created, &k->created_ns) != CAIRN_OK)
        goto bad;
    if (!host || strlen(host) >= sizeof k->host)
        goto bad;
    memcpy(k->host, host, strlen(host) + 1);
    s = json_string_value(json_object_get(o, "cipher"));
    if (!s || strcmp(s, CAIRN_CRYPT_CIPHER) != 0)
        goto bad;
    s = json_string_value(json_object_get(kdf, "name"));
    if (!json_is_object(kdf) || !s || strcmp(s, "scrypt") != 0 ||
        int_field(kdf, "n_log2", 10, 20, &k->n_log2) != 0 ||
        int_field(kdf, "r", 1, 32, &k->r) != 0 || int_field(kdf, "p", 1, 16, &k->p) != 0 ||
        !scrypt_ok(k->n_log2, k->r, k->p) || hex_field(kdf, "salt", k->salt, 32) != 0)
        goto bad;
    if (hex_field(o, "nonce", k->nonce, 12) != 0 ||
        hex_field(o, "master", k->sealed, sizeof k->sealed) != 0)
        goto bad;
    json_decref(o);
    return CAIRN_OK;
bad:
    json_decref(o);
    return cairn_error(err, CAIRN_CORRUPT,
                       "key file is invalid (a field is missing, malformed or out of range)");
}

int cairn_keyfile_unlock(const struct cairn_keyfile *k, const uint8_t *pw, size_t pwlen,
                         struct cairn_master *m, cairn_err *err)
{
    uint8_t key[32], plain[MK_LEN], tag[TAG];
    int rc = CAIRN_OK;
    memset(m, 0, sizeof *m);
    if (!scrypt_ok(k->n_log2, k->r, k->p))
        return cairn_error(err, CAIRN_CORRUPT, "key %s: scrypt parameters out of range", k->id);
    if (derive(pw, pwlen, k->salt, k->n_log2, k->r, k->p, key) != 0)
        return cairn_error(err, CAIRN_FATAL, "key %s: scrypt failed (OpenSSL; out of memory?)",
                           k->id);
    memcpy(tag, k->sealed + MK_LEN, TAG);
    if (wrap_do(0, key, k->nonce, k->id, k->sealed, plain, tag) != 0 ||
        memcmp(plain, MK_MAGIC, 8) != 0) {
        rc = cairn_error(err, CAIRN_FATAL, "wrong password or not a key of this repository");
    } else {
        cairn_hex(plain + 8, 32, m->repo_id);
        memcpy(m->enc_key, plain + 40, 32);
        memcpy(m->chunk_key, plain + 72, 32);
        memcpy(m->gear_key, plain + 104, 32);
    }
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(plain, sizeof plain);
    return rc;
}

int cairn_keyfile_make(const struct cairn_master *m, const uint8_t *pw, size_t pwlen,
                       int n_log2, char **json, char id_out[CAIRN_KEY_ID_HEX + 1],
                       cairn_err *err)
{
    uint8_t idb[8], salt[32], nonce[12], key[32], plain[MK_LEN], sealed[MK_LEN + TAG];
    char saltx[65], noncex[25], sealedx[2 * sizeof sealed + 1], created[48], host[256];
    const char *env = getenv("CAIRN_TEST_SCRYPT_N_LOG2");
    json_t *o;
    int rc = CAIRN_OK;
    if (n_log2 == 0)
        n_log2 = env && *env ? atoi(env) : CAIRN_SCRYPT_N_LOG2;
    if (!scrypt_ok(n_log2, 8, 1))
        return cairn_error(err, CAIRN_FATAL, "scrypt cost 2^%d is out of range (10..20)", n_log2);
    *json = NULL;
    cairn_random(idb, sizeof idb);
    cairn_hex(idb, sizeof idb, id_out);
    cairn_random(salt, sizeof salt);
    cairn_random(nonce, sizeof nonce);
    memcpy(plain, MK_MAGIC, 8);
    if (cairn_unhex(m->repo_id, plain + 8, 32) != CAIRN_OK)
        return cairn_error(err, CAIRN_FATAL, "invalid repository id");
    memcpy(plain + 40, m->enc_key, 32);
    memcpy(plain + 72, m->chunk_key, 32);
    memcpy(plain + 104, m->gear_key, 32);
    if (derive(pw, pwlen, salt, n_log2, 8, 1, key) != 0 ||
        wrap_do(1, key, nonce, id_out, plain, sealed, sealed + MK_LEN) != 0)
        rc = cairn_error(err, CAIRN_FATAL, "cannot wrap the master key (OpenSSL; out of memory?)");
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(plain, sizeof plain);
    if (rc != CAIRN_OK)
        return rc;
    cairn_hex(salt, sizeof salt, saltx);
    cairn_hex(nonce, sizeof nonce, noncex);
    cairn_hex(sealed, sizeof sealed, sealedx);
    cairn_format_time(cairn_now_ns(), created, sizeof created);
    if (gethostname(host, sizeof host) != 0)
        strcpy(host, "unknown");
    host[sizeof host - 1] = 0;
    if (!cairn_utf8_valid(host, strlen(host)))
        strcpy(host, "unknown");
    o = json_pack("{s:i, s:s, s:s, s:s, s:{s:s, s:i, s:i, s:i, s:s}, s:s, s:s, s:s}", "version", 1,
                  "id", id_out, "created", created, "host", host, "kdf", "name", "scrypt",
                  "n_log2", n_log2, "r", 8, "p", 1, "salt", saltx, "cipher", CAIRN_CRYPT_CIPHER,
                  "nonce", noncex, "master", sealedx);
    *json = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (!*json)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    return CAIRN_OK;
}

/* ---- the encrypting store ---- */

#define CACHE_N 64

struct cache_ent {
    char *key;
    uint8_t okey[32];     /* the object's derived key */
    uint64_t csize, psize;
    uint64_t used;
};

/* Decrypted segments kept for ranged reads: a restore reads the small blobs
 * of a pack one after the other, often several from one 64 KiB segment. */
#define SEGCACHE_N 32

struct seg_ent {
    char *key;
    uint64_t idx, used;
    size_t len;
    uint8_t *data; /* SEG bytes */
};

struct crypt_ctx {
    cairn_store *inner;
    struct cairn_master m;
    char key_id[CAIRN_KEY_ID_HEX + 1];
    struct cairn_store_ops ops;
    pthread_mutex_t mu;
    struct cache_ent cache[CACHE_N];
    struct seg_ent segs[SEGCACHE_N];
    uint64_t clock;
};

/* Copies bytes [a, z) of cached segment idx of key to out; 1 if found. */
static int seg_find(struct crypt_ctx *c, const char *key, uint64_t idx, size_t a, size_t z,
                    cairn_buf *out)
{
    int i, found = 0;
    pthread_mutex_lock(&c->mu);
    for (i = 0; i < SEGCACHE_N; i++) {
        struct seg_ent *e = &c->segs[i];
        if (e->key && e->idx == idx && z <= e->len && strcmp(e->key, key) == 0) {
            memcpy(out->data + out->len, e->data + a, z - a);
            out->len += z - a;
            e->used = ++c->clock;
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return found;
}

static void seg_put(struct crypt_ctx *c, const char *key, uint64_t idx, const uint8_t *d,
                    size_t len)
{
    int i, victim = 0;
    struct seg_ent *e;
    pthread_mutex_lock(&c->mu);
    for (i = 0; i < SEGCACHE_N; i++) {
        if (c->segs[i].key && c->segs[i].idx == idx && strcmp(c->segs[i].key, key) == 0) {
            pthread_mutex_unlock(&c->mu);
            return;
        }
        if (!c->segs[i].key) {
            victim = i;
            break;
        }
        if (c->segs[i].used < c->segs[victim].used)
            victim = i;
    }
    e = &c->segs[victim];
    if (!e->data)
        e->data = malloc(SEG);
    free(e->key);
    e->key = e->data ? strdup(key) : NULL;
    if (e->key) {
        memcpy(e->data, d, len);
        e->len = len;
        e->idx = idx;
        e->used = ++c->clock;
    }
    pthread_mutex_unlock(&c->mu);
}

static void seg_drop_locked(struct crypt_ctx *c, const char *key)
{
    int i;
    for (i = 0; i < SEGCACHE_N; i++)
        if (c->segs[i].key && strcmp(c->segs[i].key, key) == 0) {
            free(c->segs[i].key);
            c->segs[i].key = NULL;
            OPENSSL_cleanse(c->segs[i].data, SEG);
        }
}

/* `config` and the key files are never encrypted. */
static int plain_key(const char *key)
{
    return strcmp(key, "config") == 0 || strncmp(key, "keys/", 5) == 0;
}

static void cache_drop(struct crypt_ctx *c, const char *key)
{
    int i;
    pthread_mutex_lock(&c->mu);
    seg_drop_locked(c, key);
    for (i = 0; i < CACHE_N; i++)
        if (c->cache[i].key && strcmp(c->cache[i].key, key) == 0) {
            free(c->cache[i].key);
            OPENSSL_cleanse(&c->cache[i], sizeof c->cache[i]);
        }
    pthread_mutex_unlock(&c->mu);
}

static int cache_find(struct crypt_ctx *c, const char *key, struct cache_ent *out)
{
    int i, found = 0;
    pthread_mutex_lock(&c->mu);
    for (i = 0; i < CACHE_N; i++)
        if (c->cache[i].key && strcmp(c->cache[i].key, key) == 0) {
            c->cache[i].used = ++c->clock;
            *out = c->cache[i];
            out->key = NULL;
            found = 1;
            break;
        }
    pthread_mutex_unlock(&c->mu);
    return found;
}

static void cache_put(struct crypt_ctx *c, const char *key, const struct cache_ent *e)
{
    int i, victim = 0;
    char *k = strdup(key);
    if (!k)
        return;
    pthread_mutex_lock(&c->mu);
    for (i = 0; i < CACHE_N; i++) {
        if (!c->cache[i].key) {
            victim = i;
            break;
        }
        if (c->cache[i].used < c->cache[victim].used)
            victim = i;
    }
    free(c->cache[victim].key);
    c->cache[victim] = *e;
    c->cache[victim].key = k;
    c->cache[victim].used = ++c->clock;
    pthread_mutex_unlock(&c->mu);
}

static int c_put(void *ctx, const char *key, const void *buf, size_t len, int overwrite,
                 cairn_err *err)
{
    struct crypt_ctx *c = ctx;
    cairn_buf b = CAIRN_BUF_INIT;
    int rc;
    if (plain_key(key))
        return cairn_store_put(c->inner, key, buf, len, overwrite, err);
    if ((rc = cairn_crypt_seal(&c->m, key, buf, len, &b, err)) != CAIRN_OK)
        return rc;
    cache_drop(c, key);
    rc = cairn_store_put(c->inner, key, b.data, b.len, overwrite, err);
    cairn_buf_free(&b);
    return rc;
}

static int read_full(int fd, uint8_t *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = read(fd, p + done, n - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        done += (size_t)r;
    }
    return 0;
}

/* Encrypts the spool file into path.enc segment by segment (bounded memory),
 * hands that to the backend and removes the plaintext spool file. */
static int c_put_file(void *ctx, const char *key, const char *path, cairn_err *err)
{
    struct crypt_ctx *c = ctx;
    char *encpath = NULL;
    uint8_t salt[32], okey[32], hdr[HDR], *in = NULL, *out = NULL;
    EVP_CIPHER_CTX *cx = NULL;
    struct stat st;
    uint64_t i, n;
    int ifd = -1, ofd = -1, rc = CAIRN_OK;
    if (plain_key(key))
        return cairn_store_put_file(c->inner, key, path, err);
    if ((ifd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(ifd, &st) != 0) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot read spool file '%s': %s", path,
                         strerror(errno));
        goto out;
    }
    /* the sealed copy goes where the backend takes files from (the
     * repository's tmp/ for a local directory: same file system) */
    {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        if (c->inner->tmpdir) {
            cairn_mkdir_p(c->inner->tmpdir, 0700, NULL);
            if (asprintf(&encpath, "%s/%s.enc", c->inner->tmpdir, base) < 0)
                encpath = NULL;
        } else if (asprintf(&encpath, "%s.enc", path) < 0) {
            encpath = NULL;
        }
    }
    if (!encpath || !(in = malloc(SEG)) || !(out = malloc(SEG + TAG))) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    ofd = open(encpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (ofd < 0) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot create '%s': %s", encpath, strerror(errno));
        goto out;
    }
    cairn_random(salt, sizeof salt);
    if (object_key(&c->m, salt, key, okey) != 0 || !(cx = gcm_new(okey, 1))) {
        rc = cairn_error(err, CAIRN_FATAL, "cannot set up encryption of '%s' (OpenSSL)", key);
        goto out;
    }
    header_make(hdr, salt);
    if (cairn_write_all(ofd, hdr, HDR) != 0)
        goto werr;
    n = nsegs((uint64_t)st.st_size);
    for (i = 0; i < n; i++) {
        uint64_t left = (uint64_t)st.st_size - i * SEG;
        size_t sl = left < SEG ? (size_t)left : SEG;
        if (read_full(ifd, in, sl) != 0) {
            rc = cairn_error(err, CAIRN_FAILED, "cannot read spool file '%s' (changed while "
                             "encrypting?)", path);
            goto out;
        }
        if (seg_do(cx, 1, i, i + 1 == n, in, sl, out, out + sl) != 0) {
            rc = cairn_error(err, CAIRN_FATAL, "cannot encrypt '%s' (OpenSSL)", key);
            goto out;
        }
        if (cairn_write_all(ofd, out, sl + TAG) != 0)
            goto werr;
    }
    if (close(ofd) != 0) {
        ofd = -1;
        goto werr;
    }
    ofd = -1;
    cache_drop(c, key);
    rc = cairn_store_put_file(c->inner, key, encpath, err);
    if (rc == CAIRN_OK)
        unlink(path);
    goto out;
werr:
    rc = cairn_error(err, CAIRN_FAILED, "cannot write '%s': %s", encpath, strerror(errno));
out:
    if (ifd >= 0)
        close(ifd);
    if (ofd >= 0)
        close(ofd);
    if (rc != CAIRN_OK && encpath)
        unlink(encpath);
    EVP_CIPHER_CTX_free(cx);
    OPENSSL_cleanse(okey, sizeof okey);
    if (in)
        OPENSSL_cleanse(in, SEG);
    free(in);
    free(out);
    free(encpath);
    return rc;
}

static int c_get(void *ctx, const char *key, cairn_buf *out, size_t max, cairn_err *err)
{
    struct crypt_ctx *c = ctx;
    cairn_buf b = CAIRN_BUF_INIT;
    uint64_t cmax;
    int rc;
    if (plain_key(key))
        return cairn_store_get(c->inner, key, out, max, err);
    cmax = max > SIZE_MAX / 2 ? SIZE_MAX / 2 : cairn_crypt_sealed_size(max);
    if ((rc = cairn_store_get(c->inner, key, &b, (size_t)cmax, err)) != CAIRN_OK) {
        cairn_buf_free(&b);
        return rc;
    }
    rc = cairn_crypt_unseal(&c->m, key, b.data, b.len, max, out, err);
    cairn_buf_free(&b);
    return rc;
}

/* The object's derived key and sizes, from the cache or the store. */
static int object_info(struct crypt_ctx *c, const char *key, struct cache_ent *e, cairn_err *err)
{
    cairn_buf h = CAIRN_BUF_INIT;
    uint8_t salt[32];
    int rc;
    if (cache_find(c, key, e))
        return CAIRN_OK;
    memset(e, 0, sizeof *e);
    if ((rc = cairn_store_stat(c->inner, key, &e->csize, err)) != CAIRN_OK)
        return rc;
    if (cairn_crypt_plain_size(e->csize, &e->psize) != CAIRN_OK)
        return cairn_error(err, CAIRN_CORRUPT, "object '%s' %s (impossible size %llu)", key,
                           AUTH_FAIL, (unsigned long long)e->csize);
    rc = cairn_store_get_range(c->inner, key, 0, HDR, &h, err);
    if (rc == CAIRN_OK && (rc = cairn_crypt_header_parse(h.data, h.len, salt, err)) != CAIRN_OK)
        cairn_error_prefix(err, "object '%s'", key);
    cairn_buf_free(&h);
    if (rc != CAIRN_OK)
        return rc;
    if (object_key(&c->m, salt, key, e->okey) != 0)
        return cairn_error(err, CAIRN_FATAL, "cannot derive the key of '%s' (OpenSSL)", key);
    cache_put(c, key, e);
    return CAIRN_OK;
}

static int c_get_range(void *ctx, const char *key, uint64_t off, size_t len, cairn_buf *out,
                       cairn_err *err)
{
    struct crypt_ctx *c = ctx;
    struct cache_ent e;
    cairn_buf b = CAIRN_BUF_INIT;
    uint64_t s0, s1, ns, coff, cend, i;
    uint8_t *tmp = NULL;
    EVP_CIPHER_CTX *cx = NULL;
    int rc;
    if (plain_key(key))
        return cairn_store_get_range(c->inner, key, off, len, out, err);
    cairn_buf_reset(out);
    if ((rc = object_info(c, key, &e, err)) != CAIRN_OK)
        return rc;
    if (off > e.psize || len > e.psize - off) {
        OPENSSL_cleanse(&e, sizeof e);
        return cairn_error(err, CAIRN_CORRUPT,
                           "object '%s' is shorter than expected (%llu bytes, wanted %zu at %llu)",
                           key, (unsigned long long)e.psize, len, (unsigned long long)off);
    }
    if (len == 0) {
        OPENSSL_cleanse(&e, sizeof e);
        return cairn_buf_reserve(out, 1) == CAIRN_OK ? CAIRN_OK
                                                     : cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    ns = nsegs(e.psize);
    s0 = off / SEG;
    s1 = (off + len - 1) / SEG;
    if (cairn_buf_reserve(out, len + 1) != CAIRN_OK) {
        OPENSSL_cleanse(&e, sizeof e);
        return cairn_error(err, CAIRN_FATAL, "out of memory decrypting '%s'", key);
    }
    /* leading segments already decrypted by an earlier read */
    while (s0 <= s1) {
        uint64_t pstart = s0 * SEG;
        size_t sl = e.psize - pstart < SEG ? (size_t)(e.psize - pstart) : SEG;
        size_t a = off > pstart ? (size_t)(off - pstart) : 0;
        size_t z = off + len < pstart + sl ? (size_t)(off + len - pstart) : sl;
        if (!seg_find(c, key, s0, a, z, out))
            break;
        s0++;
    }
    if (s0 > s1) {
        OPENSSL_cleanse(&e, sizeof e);
        return CAIRN_OK;
    }
    coff = HDR + s0 * SEALED_SEG;
    cend = HDR + (s1 + 1) * SEALED_SEG;
    if (cend > e.csize)
        cend = e.csize;
    rc = cairn_store_get_range(c->inner, key, coff, (size_t)(cend - coff), &b, err);
    if (rc == CAIRN_OK && (!(tmp = malloc(SEG)) || !(cx = gcm_new(e.okey, 0))))
        rc = cairn_error(err, CAIRN_FATAL, "out of memory decrypting '%s'", key);
    for (i = s0; rc == CAIRN_OK && i <= s1; i++) {
        uint64_t pstart = i * SEG;
        size_t sl = e.psize - pstart < SEG ? (size_t)(e.psize - pstart) : SEG;
        uint8_t *seg = b.data + (i - s0) * SEALED_SEG;
        uint64_t a = off > pstart ? off - pstart : 0;
        uint64_t z = off + len < pstart + sl ? off + len - pstart : sl;
        if ((size_t)((i - s0) * SEALED_SEG) + sl + TAG > b.len ||
            seg_do(cx, 0, i, i + 1 == ns, seg, sl, tmp, seg + sl) != 0) {
            rc = cairn_error(err, CAIRN_CORRUPT, "object '%s' %s (segment %llu)", key, AUTH_FAIL,
                             (unsigned long long)i);
            cache_drop(c, key);
            break;
        }
        memcpy(out->data + out->len, tmp + a, (size_t)(z - a));
        out->len += (size_t)(z - a);
        /* a segment this read used only partly: the next blob is likely in it */
        if (z < sl || (a > 0 && i == s0))
            seg_put(c, key, i, tmp, sl);
    }
    if (rc != CAIRN_OK)
        out->len = 0;
    EVP_CIPHER_CTX_free(cx);
    if (tmp)
        OPENSSL_cleanse(tmp, SEG);
    free(tmp);
    cairn_buf_free(&b);
    OPENSSL_cleanse(&e, sizeof e);
    return rc;
}

static int c_stat(void *ctx, const char *key, uint64_t *size, cairn_err *err)
{
    struct crypt_ctx *c = ctx;
    uint64_t cs;
    int rc;
    if (plain_key(key))
        return cairn_store_stat(c->inner, key, size, err);
    if ((rc = cairn_store_stat(c->inner, key, &cs, err)) != CAIRN_OK)
        return rc;
    if (cairn_crypt_plain_size(cs, size) != CAIRN_OK)
        return cairn_error(err, CAIRN_CORRUPT, "object '%s' %s (impossible size %llu)", key,
                           AUTH_FAIL, (unsigned long long)cs);
    return CAIRN_OK;
}

struct list_arg {
    cairn_list_cb cb;
    void *arg;
};

static int list_one(void *arg, const char *key, uint64_t size)
{
    struct list_arg *la = arg;
    uint64_t p = size;
    /* an impossible size shows as 0: check and restore then name the object */
    if (!plain_key(key) && cairn_crypt_plain_size(size, &p) != CAIRN_OK)
        p = 0;
    return la->cb(la->arg, key, p);
}

static int c_list(void *ctx, const char *prefix, cairn_list_cb cb, void *arg, cairn_err *err)
{
    struct crypt_ctx *c = ctx;
    struct list_arg la = {cb, arg};
    return cairn_store_list(c->inner, prefix, list_one, &la, err);
}

static int c_del(void *ctx, const char *key, cairn_err *err)
{
    struct crypt_ctx *c = ctx;
    cache_drop(c, key);
    return cairn_store_del(c->inner, key, err);
}

static int c_del_many(void *ctx, const char *const *keys, size_t n, cairn_err *err)
{
    struct crypt_ctx *c = ctx;
    size_t i;
    for (i = 0; i < n; i++)
        cache_drop(c, keys[i]);
    return cairn_store_del_many(c->inner, keys, n, err);
}

static int c_flush(void *ctx, cairn_err *err)
{
    struct crypt_ctx *c = ctx;
    return cairn_store_flush(c->inner, err);
}

static void c_free(void *ctx)
{
    struct crypt_ctx *c = ctx;
    int i;
    if (!c)
        return;
    cairn_store_free(c->inner);
    for (i = 0; i < CACHE_N; i++)
        free(c->cache[i].key);
    for (i = 0; i < SEGCACHE_N; i++) {
        free(c->segs[i].key);
        if (c->segs[i].data)
            OPENSSL_cleanse(c->segs[i].data, SEG);
        free(c->segs[i].data);
    }
    pthread_mutex_destroy(&c->mu);
    OPENSSL_cleanse(c, sizeof *c);
    free(c);
}

static const struct cairn_store_ops crypt_ops = {
    "crypt", c_put, c_put_file, c_get, c_get_range, c_stat, c_list, c_del, c_flush, c_free,
    c_del_many,
};

int cairn_crypt_store_wrap(cairn_store *inner, const struct cairn_master *m, const char *key_id,
                           cairn_store **out, cairn_err *err)
{
    struct crypt_ctx *c = calloc(1, sizeof *c);
    cairn_store *s = calloc(1, sizeof *s);
    *out = NULL;
    if (!c || !s) {
        free(c);
        free(s);
        cairn_store_free(inner);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    c->inner = inner;
    c->m = *m;
    snprintf(c->key_id, sizeof c->key_id, "%s", key_id ? key_id : "");
    pthread_mutex_init(&c->mu, NULL);
    c->ops = crypt_ops;
    c->ops.scheme = inner->ops->scheme; /* callers that look at the scheme see the backend */
    s->ops = &c->ops;
    s->ctx = c;
    s->url = inner->url ? strdup(inner->url) : NULL;
    s->tmpdir = inner->tmpdir ? strdup(inner->tmpdir) : NULL;
    if ((inner->url && !s->url) || (inner->tmpdir && !s->tmpdir)) {
        cairn_store_free(s);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    *out = s;
    return CAIRN_OK;
}

const struct cairn_master *cairn_crypt_store_master(const cairn_store *s)
{
    return s && s->ops->put == c_put ? &((const struct crypt_ctx *)s->ctx)->m : NULL;
}

const char *cairn_crypt_store_key_id(const cairn_store *s)
{
    return s && s->ops->put == c_put ? ((const struct crypt_ctx *)s->ctx)->key_id : NULL;
}

/* The plain store under an encrypting one (key files live there). */
static cairn_store *inner_of(cairn_store *s)
{
    return s->ops->put == c_put ? ((struct crypt_ctx *)s->ctx)->inner : s;
}

/* ---- key files in the store ---- */

struct keynames {
    char **v;
    size_t n;
    int overflow;
};

static int collect_key(void *arg, const char *key, uint64_t size)
{
    struct keynames *l = arg;
    char **p;
    (void)size;
    if (strlen(key) != 5 + CAIRN_KEY_ID_HEX)
        return 0; /* not a key file of ours */
    if (l->n >= MAX_KEYS) {
        l->overflow = 1;
        return 1;
    }
    p = realloc(l->v, (l->n + 1) * sizeof *p);
    if (!p)
        return 1;
    l->v = p;
    if (!(l->v[l->n] = strdup(key)))
        return 1;
    l->n++;
    return 0;
}

static void keynames_free(struct keynames *l)
{
    size_t i;
    for (i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_keys(cairn_store *s, struct keynames *l, cairn_err *err)
{
    int rc;
    memset(l, 0, sizeof *l);
    rc = cairn_store_list(s, "keys/", collect_key, l, err);
    if (rc == CAIRN_OK && l->overflow)
        rc = cairn_error(err, CAIRN_FATAL, "more than %d key files in keys/", MAX_KEYS);
    if (rc != CAIRN_OK) {
        keynames_free(l);
        return cairn_error_prefix(err, "cannot list the keys of '%s'", s->url);
    }
    if (l->n > 1)
        qsort(l->v, l->n, sizeof *l->v, str_cmp);
    return CAIRN_OK;
}

static int put_key(cairn_store *s, const struct cairn_master *m, const cairn_buf *pw,
                   char id_out[CAIRN_KEY_ID_HEX + 1], cairn_err *err)
{
    char *json = NULL, name[64];
    int rc = cairn_keyfile_make(m, pw->data, pw->len, 0, &json, id_out, err);
    if (rc != CAIRN_OK)
        return rc;
    snprintf(name, sizeof name, "keys/%s", id_out);
    rc = cairn_store_put(s, name, json, strlen(json), 0, err);
    if (rc == CAIRN_OK)
        rc = cairn_store_flush(s, err);
    free(json);
    if (rc != CAIRN_OK)
        cairn_error_prefix(err, "cannot write key file '%s'", name);
    return rc;
}

int cairn_crypt_init(cairn_store *s, const char *repo_id, const char *password_file,
                     struct cairn_master *m, cairn_err *err)
{
    cairn_buf pw = CAIRN_BUF_INIT;
    char id[CAIRN_KEY_ID_HEX + 1];
    int rc;
    memset(m, 0, sizeof *m);
    if (!password_file)
        return cairn_error(err, CAIRN_FATAL,
                           "an encrypted repository needs a password: give --password-file FILE "
                           "or set CAIRN_PASSWORD_FILE to a file holding it");
    if ((rc = cairn_password_read(password_file, &pw, err)) != CAIRN_OK)
        return rc;
    snprintf(m->repo_id, sizeof m->repo_id, "%s", repo_id);
    cairn_random(m->enc_key, 32);
    cairn_random(m->chunk_key, 32);
    cairn_random(m->gear_key, 32);
    rc = put_key(s, m, &pw, id, err);
    cairn_password_free(&pw);
    return rc;
}

/* One remembered unlock per process, so that opening the same repository
 * again with the same password and an unchanged key file (wal-push --batch
 * threads, the agent's jobs) costs no second scrypt. Held only in this
 * process's memory, like the master of any open repository. Unlocks are
 * serialized, so threads opening at once derive once. */
static pthread_mutex_t unlock_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    int valid;
    char key_id[CAIRN_KEY_ID_HEX + 1];
    uint8_t keyfile_hash[32], pw_hash[32];
    struct cairn_master m;
} unlock_cache;

static void sha256(const void *d, size_t n, uint8_t out[32])
{
    unsigned int l = 32;
    if (EVP_Digest(d, n, out, &l, EVP_sha256(), NULL) != 1)
        memset(out, 0, 32);
}

static int load_key_raw(cairn_store *s, const char *name, struct cairn_keyfile *k,
                        uint8_t hash[32], cairn_err *err)
{
    cairn_buf b = CAIRN_BUF_INIT;
    int rc = cairn_store_get(s, name, &b, CAIRN_KEYFILE_MAX, err);
    if (rc == CAIRN_OK) {
        sha256(b.data, b.len, hash);
        rc = cairn_keyfile_parse(b.data, b.len, k, err);
    }
    cairn_buf_free(&b);
    if (rc == CAIRN_OK && strcmp(name + 5, k->id) != 0)
        rc = cairn_error(err, CAIRN_CORRUPT, "its id is %s", k->id);
    if (rc != CAIRN_OK)
        cairn_error_prefix(err, "key file '%s'", name);
    return rc;
}

/* Tries every key file with the password. */
static int unlock(cairn_store *s, const char *url, const char *repo_id, const char *pwfile,
                  struct cairn_master *m, char key_id[CAIRN_KEY_ID_HEX + 1], cairn_err *err)
{
    struct keynames l;
    cairn_buf pw = CAIRN_BUF_INIT;
    cairn_err kerr;
    uint8_t pwh[32];
    size_t i, damaged = 0;
    int rc;
    if ((rc = cairn_password_read(pwfile, &pw, err)) != CAIRN_OK)
        return rc;
    if ((rc = list_keys(s, &l, err)) != CAIRN_OK) {
        cairn_password_free(&pw);
        return rc;
    }
    cairn_err_clear(&kerr);
    sha256(pw.data, pw.len, pwh);
    rc = CAIRN_NOTFOUND;
    pthread_mutex_lock(&unlock_mu);
    for (i = 0; i < l.n && rc != CAIRN_OK; i++) {
        struct cairn_keyfile k;
        uint8_t kh[32];
        cairn_err e;
        int lrc = load_key_raw(s, l.v[i], &k, kh, &e);
        if (lrc == CAIRN_NOTFOUND)
            continue;
        if (lrc != CAIRN_OK) {
            if (!damaged++)
                kerr = e;
            continue;
        }
        if (unlock_cache.valid && strcmp(unlock_cache.key_id, k.id) == 0 &&
            CRYPTO_memcmp(unlock_cache.keyfile_hash, kh, 32) == 0 &&
            CRYPTO_memcmp(unlock_cache.pw_hash, pwh, 32) == 0 &&
            strcmp(unlock_cache.m.repo_id, repo_id) == 0) {
            *m = unlock_cache.m;
        } else {
            if (cairn_keyfile_unlock(&k, pw.data, pw.len, m, &e) != CAIRN_OK)
                continue;
            if (strcmp(m->repo_id, repo_id) != 0) {
                cairn_master_wipe(m);
                continue;
            }
            unlock_cache.valid = 1;
            memcpy(unlock_cache.key_id, k.id, sizeof unlock_cache.key_id);
            memcpy(unlock_cache.keyfile_hash, kh, 32);
            memcpy(unlock_cache.pw_hash, pwh, 32);
            unlock_cache.m = *m;
        }
        memcpy(key_id, k.id, CAIRN_KEY_ID_HEX + 1);
        rc = CAIRN_OK;
    }
    pthread_mutex_unlock(&unlock_mu);
    OPENSSL_cleanse(pwh, sizeof pwh);
    cairn_password_free(&pw);
    if (rc != CAIRN_OK) {
        if (l.n == 0)
            rc = cairn_error(err, CAIRN_FATAL,
                             "repository '%s' is encrypted but has no key files (keys/ is empty)",
                             url);
        else
            rc = cairn_error(err, CAIRN_FATAL,
                             "repository '%s': wrong password or not a key of this repository "
                             "(password file '%s', %zu key(s) tried%s%s)",
                             url, pwfile, l.n, damaged ? "; " : "", damaged ? kerr.msg : "");
    }
    keynames_free(&l);
    return rc;
}

/* A private directory for plaintext spool files, next to the repository's
 * default catalog ($CAIRN_CATALOG's directory, else ~/.cache/cairn/<id>/);
 * NULL when it cannot be made (then the backend's tmp/ is used). */
static char *private_spool(const char *repo_id)
{
    char *cat = cairn_default_catalog_path(repo_id), *slash, *dir = NULL;
    if (cat && (slash = strrchr(cat, '/')) != NULL) {
        *slash = 0;
        dir = cairn_path_join(*cat ? cat : "/", "cairn-spool");
        if (dir && (cairn_mkdir_p(dir, 0700, NULL) != CAIRN_OK || access(dir, W_OK) != 0)) {
            free(dir);
            dir = NULL;
        }
    }
    free(cat);
    return dir;
}

int cairn_repo_store_open(const char *url, const struct cairn_store_opts *opts,
                          cairn_buf *config_out, cairn_store **out, cairn_err *err)
{
    cairn_store *s = NULL;
    cairn_buf b = CAIRN_BUF_INIT;
    json_t *cfg = NULL;
    const char *enc, *id, *pwfile = cairn_password_file(opts);
    struct cairn_master m;
    char key_id[CAIRN_KEY_ID_HEX + 1];
    int rc;
    *out = NULL;
    if ((rc = cairn_store_open_with(url, opts, 0, &s, err)) != CAIRN_OK)
        return rc;
    rc = cairn_store_get(s, "config", &b, CONFIG_MAX, err);
    if (rc == CAIRN_NOTFOUND)
        rc = cairn_error(err, CAIRN_NOTFOUND,
                         "no repository at '%s' (no 'config' object; create one with 'cairn "
                         "init')",
                         url);
    if (rc != CAIRN_OK)
        goto fail;
    cfg = json_loadb((const char *)b.data, b.len, 0, NULL);
    enc = json_string_value(json_object_get(cfg, "encryption"));
    id = json_string_value(json_object_get(cfg, "id"));
    if (!cfg || !id || strlen(id) != CAIRN_HEX_LEN) {
        rc = cairn_error(err, CAIRN_CORRUPT, "repository '%s': config is not valid", url);
        goto fail;
    }
    if (!enc || strcmp(enc, "none") == 0) {
        if (pwfile) {
            rc = cairn_error(err, CAIRN_FATAL,
                             "repository '%s' is not encrypted, but a password file was given "
                             "(refusing: its config may have been altered; to use it "
                             "unencrypted, drop --password-file / CAIRN_PASSWORD_FILE)",
                             url);
            goto fail;
        }
    } else if (strcmp(enc, CAIRN_CRYPT_CIPHER) != 0) {
        rc = cairn_error(err, CAIRN_FATAL,
                         "repository '%s' uses encryption '%s', which this cairn does not know",
                         url, enc);
        goto fail;
    } else {
        if (!pwfile) {
            rc = cairn_error(err, CAIRN_FATAL,
                             "repository '%s' is encrypted: give its password file with "
                             "--password-file FILE or CAIRN_PASSWORD_FILE=FILE",
                             url);
            goto fail;
        }
        if ((rc = unlock(s, url, id, pwfile, &m, key_id, err)) != CAIRN_OK)
            goto fail;
        rc = cairn_crypt_store_wrap(s, &m, key_id, &s, err);
        cairn_master_wipe(&m);
        if (rc != CAIRN_OK)
            goto fail;
        /* plaintext spool files (packs being filled) of a local repository
         * stay out of it, so that not even a crash leaves plaintext there */
        if (strcmp(s->ops->scheme, "file") == 0) {
            char *sp = private_spool(id);
            if (sp) {
                free(s->tmpdir);
                s->tmpdir = sp;
            }
        }
    }
    json_decref(cfg);
    if (config_out) {
        cairn_buf_free(config_out);
        *config_out = b;
    } else {
        cairn_buf_free(&b);
    }
    *out = s;
    return CAIRN_OK;
fail:
    json_decref(cfg);
    cairn_buf_free(&b);
    cairn_store_free(s);
    return rc;
}

/* ---- key management ---- */

static int by_created(const void *a, const void *b)
{
    const struct cairn_keyfile *x = a, *y = b;
    if (x->created_ns != y->created_ns)
        return x->created_ns < y->created_ns ? -1 : 1;
    return strcmp(x->id, y->id);
}

static int load_all(cairn_store *s, struct cairn_keyfile **out, size_t *n, cairn_err *err)
{
    struct keynames l;
    size_t i;
    int rc;
    *out = NULL;
    *n = 0;
    if ((rc = list_keys(s, &l, err)) != CAIRN_OK)
        return rc;
    *out = calloc(l.n + 1, sizeof **out);
    if (!*out) {
        keynames_free(&l);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    for (i = 0; i < l.n; i++) {
        uint8_t h[32];
        rc = load_key_raw(s, l.v[i], &(*out)[*n], h, err);
        if (rc == CAIRN_NOTFOUND)
            continue;
        if (rc != CAIRN_OK)
            break;
        (*n)++;
    }
    keynames_free(&l);
    if (rc != CAIRN_OK && rc != CAIRN_NOTFOUND) {
        free(*out);
        *out = NULL;
        return rc;
    }
    qsort(*out, *n, sizeof **out, by_created);
    return CAIRN_OK;
}

int cairn_crypt_key_list(cairn_store *s, cairn_key_cb cb, void *arg, cairn_err *err)
{
    struct cairn_keyfile *v;
    const char *cur = cairn_crypt_store_key_id(s);
    size_t n, i;
    int rc;
    if (!cur)
        return cairn_error(err, CAIRN_FATAL, "repository '%s' is not encrypted (it has no keys)",
                           s->url);
    if ((rc = load_all(inner_of(s), &v, &n, err)) != CAIRN_OK)
        return rc;
    for (i = 0; i < n; i++)
        if (cb(arg, &v[i], strcmp(v[i].id, cur) == 0) != 0)
            break;
    free(v);
    return CAIRN_OK;
}

int cairn_crypt_key_add(cairn_store *s, const char *new_password_file,
                        char id_out[CAIRN_KEY_ID_HEX + 1], cairn_err *err)
{
    const struct cairn_master *m = cairn_crypt_store_master(s);
    cairn_buf pw = CAIRN_BUF_INIT;
    int rc;
    if (!m)
        return cairn_error(err, CAIRN_FATAL, "repository '%s' is not encrypted (it has no keys)",
                           s->url);
    if (!new_password_file)
        return cairn_error(err, CAIRN_FATAL, "give the new password with --new-password-file FILE");
    if ((rc = cairn_password_read(new_password_file, &pw, err)) != CAIRN_OK)
        return rc;
    rc = put_key(inner_of(s), m, &pw, id_out, err);
    cairn_password_free(&pw);
    return rc;
}

int cairn_crypt_key_remove(cairn_store *s, const char *id, char id_out[CAIRN_KEY_ID_HEX + 1],
                           cairn_err *err)
{
    struct cairn_keyfile *v;
    const char *cur = cairn_crypt_store_key_id(s);
    size_t n, i, hits = 0, at = 0, idlen = strlen(id);
    char name[64];
    int rc;
    if (!cur)
        return cairn_error(err, CAIRN_FATAL, "repository '%s' is not encrypted (it has no keys)",
                           s->url);
    if (idlen == 0 || idlen > CAIRN_KEY_ID_HEX)
        return cairn_error(err, CAIRN_FATAL, "'%s' is not a key id (see 'cairn key list')", id);
    if ((rc = load_all(inner_of(s), &v, &n, err)) != CAIRN_OK)
        return rc;
    for (i = 0; i < n; i++)
        if (strncmp(v[i].id, id, idlen) == 0) {
            hits++;
            at = i;
        }
    if (hits != 1) {
        rc = cairn_error(err, CAIRN_NOTFOUND,
                         hits ? "key id '%s' is ambiguous (give more of it)"
                              : "no key '%s' in this repository (see 'cairn key list')",
                         id);
    } else if (strcmp(v[at].id, cur) == 0) {
        rc = cairn_error(err, CAIRN_FATAL,
                         "refusing to remove key %s: it is the key this command was unlocked "
                         "with (give another key's password file to remove it)",
                         v[at].id);
    } else if (n < 2) {
        rc = cairn_error(err, CAIRN_FATAL, "refusing to remove the last key");
    } else {
        memcpy(id_out, v[at].id, CAIRN_KEY_ID_HEX + 1);
        snprintf(name, sizeof name, "keys/%s", v[at].id);
        rc = cairn_store_del(inner_of(s), name, err);
        if (rc == CAIRN_OK)
            rc = cairn_store_flush(inner_of(s), err);
        if (rc != CAIRN_OK)
            cairn_error_prefix(err, "cannot delete '%s'", name);
    }
    free(v);
    return rc;
}

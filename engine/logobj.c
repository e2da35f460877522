/* engine/logobj.c — see logobj.h. */
#include "logobj.h"

#include <inttypes.h>
#include <stdlib.h>
#include <openssl/evp.h>
#include <string.h>
#include <zstd.h>

int cairn_logobj_head(const uint8_t *obj, size_t len, const char *magic, size_t max_head,
                      const char *what, json_t **meta, size_t *payload_off, cairn_err *err)
{
    size_t ml = strlen(magic), scan;
    const uint8_t *nl;
    json_error_t je;
    *meta = NULL;
    if (len < ml || memcmp(obj, magic, ml) != 0)
        return cairn_error(err, CAIRN_CORRUPT, "not an archived %s object (bad magic)", what);
    scan = len - ml < max_head ? len - ml : max_head;
    nl = memchr(obj + ml, '\n', scan);
    if (!nl)
        return cairn_error(err, CAIRN_CORRUPT, "archived %s object: metadata line is missing",
                           what);
    *meta = json_loadb((const char *)obj + ml, (size_t)(nl - obj) - ml, 0, &je);
    if (!*meta)
        return cairn_error(err, CAIRN_CORRUPT, "archived %s object: metadata: %s", what,
                           je.text);
    *payload_off = (size_t)(nl - obj) + 1;
    return CAIRN_OK;
}

int cairn_logobj_payload(const uint8_t *obj, size_t len, size_t off, uint64_t size,
                         const uint8_t sha256[32], const char *key, cairn_buf *raw,
                         cairn_err *err)
{
    uint8_t sum[32];
    unsigned int sl = 32;
    unsigned long long fsz;
    size_t n;
    fsz = off <= len ? ZSTD_getFrameContentSize(obj + off, len - off) : ZSTD_CONTENTSIZE_ERROR;
    if (fsz == ZSTD_CONTENTSIZE_ERROR || fsz == ZSTD_CONTENTSIZE_UNKNOWN || fsz != size)
        return cairn_error(err, CAIRN_CORRUPT,
                           "object '%s' is damaged: its compressed frame does not hold %llu "
                           "bytes",
                           key, (unsigned long long)size);
    cairn_buf_reset(raw);
    if (cairn_buf_reserve(raw, (size_t)size + 1) != CAIRN_OK)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    n = ZSTD_decompress(raw->data, (size_t)size, obj + off, len - off);
    if (ZSTD_isError(n) || n != size) {
        cairn_buf_reset(raw);
        return cairn_error(err, CAIRN_CORRUPT, "object '%s' is damaged: %s", key,
                           ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong size");
    }
    raw->len = n;
    EVP_Digest(raw->data, raw->len, sum, &sl, EVP_sha256(), NULL);
    if (memcmp(sum, sha256, 32) != 0) {
        cairn_buf_reset(raw);
        return cairn_error(err, CAIRN_CORRUPT,
                           "object '%s' is damaged: SHA-256 of the content does not match its "
                           "metadata",
                           key);
    }
    return CAIRN_OK;
}

int cairn_logobj_same(cairn_store *s, const char *key, const char *magic, size_t max_head,
                      const char *what, uint64_t size, const uint8_t sha256[32],
                      struct cairn_logobj_sum *old, cairn_buf *head, cairn_err *err)
{
    struct cairn_logobj_sum dummy;
    cairn_buf own = CAIRN_BUF_INIT, *b = head ? head : &own;
    json_t *meta = NULL;
    const char *hex;
    json_t *sz;
    uint64_t osize;
    size_t off, want;
    int rc, same = 0;
    if (!old)
        old = &dummy;
    memset(old, 0, sizeof *old);
    if ((rc = cairn_store_stat(s, key, &osize, err)) != CAIRN_OK)
        return rc;
    want = osize < max_head ? (size_t)osize : max_head;
    rc = cairn_store_get_range(s, key, 0, want, b, err);
    if (rc == CAIRN_OK) {
        cairn_err e2;
        rc = cairn_logobj_head(b->data, b->len, magic, max_head, what, &meta, &off, &e2);
        if (rc == CAIRN_CORRUPT)
            rc = CAIRN_OK; /* unreadable metadata: never the same file */
        sz = json_object_get(meta, "size");
        hex = json_string_value(json_object_get(meta, "sha256"));
        if (meta && json_is_integer(sz) && json_integer_value(sz) >= 0 && hex &&
            strlen(hex) == 64 && cairn_unhex(hex, old->sha256, 32) == CAIRN_OK) {
            old->size = (uint64_t)json_integer_value(sz);
            same = old->size == size && memcmp(old->sha256, sha256, 32) == 0;
        } else {
            memset(old, 0, sizeof *old);
        }
        json_decref(meta);
    }
    cairn_buf_free(&own);
    return rc != CAIRN_OK ? rc : same;
}

int cairn_logobj_put_once(cairn_store *s, const char *key, const char *magic, size_t max_head,
                          const char *what, const char *path, uint64_t size,
                          const uint8_t sha256[32], cairn_buf *obj, cairn_logobj_build_fn build,
                          void *arg, const char *hint, struct cairn_logobj_sum *old,
                          uint64_t *stored, cairn_err *err)
{
    struct cairn_logobj_sum dummy;
    int rc;
    if (!old)
        old = &dummy;
    *stored = 0;
    rc = cairn_logobj_same(s, key, magic, max_head, what, size, sha256, old, NULL, err);
    if (rc == CAIRN_NOTFOUND) {
        if (build && (rc = build(arg, obj, err)) != CAIRN_OK)
            return rc;
        rc = cairn_store_put(s, key, obj->data, obj->len, 0, err);
        if (rc == CAIRN_EXISTS) { /* raced with another push */
            rc = cairn_logobj_same(s, key, magic, max_head, what, size, sha256, old, NULL, err);
        } else if (rc == CAIRN_OK && (rc = cairn_store_flush(s, err)) == CAIRN_OK) {
            *stored = obj->len;
            return CAIRN_OK;
        }
    }
    if (rc == 0) {
        char h1[65], h2[65];
        cairn_hex(old->sha256, 32, h1);
        cairn_hex(sha256, 32, h2);
        return cairn_error(err, CAIRN_EXISTS,
                           "REFUSING to archive '%s': the archive already holds a DIFFERENT "
                           "file under that name ('%s': %" PRIu64 " bytes, sha256 %.16s…; "
                           "this file: %" PRIu64 " bytes, sha256 %.16s…). %s",
                           path, key, old->size, h1, size, h2, hint);
    }
    return rc == 1 ? CAIRN_OK : rc;
}

int cairn_logobj_encode(const char *magic, size_t max_head, const char *what, const char *name,
                        const json_t *meta, const void *zfr, size_t zlen, cairn_buf *out,
                        cairn_err *err)
{
    char *text = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    size_t tlen;
    int rc;
    if (!text)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    tlen = strlen(text);
    if (tlen + strlen(magic) + 1 > max_head) {
        free(text);
        return cairn_error(err, CAIRN_FAILED, "%s file '%s': metadata too large", what, name);
    }
    cairn_buf_reset(out);
    rc = cairn_buf_reserve(out, tlen + zlen + 32);
    if (rc == CAIRN_OK)
        rc = cairn_buf_append(out, magic, strlen(magic));
    if (rc == CAIRN_OK)
        rc = cairn_buf_append(out, text, tlen);
    if (rc == CAIRN_OK)
        rc = cairn_buf_putc(out, '\n');
    if (rc == CAIRN_OK)
        rc = cairn_buf_append(out, zfr, zlen);
    free(text);
    if (rc != CAIRN_OK)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    return CAIRN_OK;
}

/* engine/logobj.c — see logobj.h. */
#include "logobj.h"

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

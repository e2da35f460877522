/* engine/pack.c — see pack.h. */
#define _GNU_SOURCE
#include "pack.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <zstd.h>

/* One zstd context per thread, freed when the thread exits. */
static pthread_key_t cctx_key, dctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

static void free_cctx(void *p)
{
    ZSTD_freeCCtx(p);
}

static void free_dctx(void *p)
{
    ZSTD_freeDCtx(p);
}

static void make_keys(void)
{
    pthread_key_create(&cctx_key, free_cctx);
    pthread_key_create(&dctx_key, free_dctx);
}

static ZSTD_CCtx *thread_cctx(void)
{
    ZSTD_CCtx *c;
    pthread_once(&ctx_once, make_keys);
    c = pthread_getspecific(cctx_key);
    if (!c && (c = ZSTD_createCCtx()) != NULL)
        pthread_setspecific(cctx_key, c);
    return c;
}

static ZSTD_DCtx *thread_dctx(void)
{
    ZSTD_DCtx *d;
    pthread_once(&ctx_once, make_keys);
    d = pthread_getspecific(dctx_key);
    if (!d && (d = ZSTD_createDCtx()) != NULL)
        pthread_setspecific(dctx_key, d);
    return d;
}

static const char PACK_MAGIC[8] = {'C', 'A', 'I', 'R', 'N', 'P', 'K', '1'};

struct cairn_pack_writer {
    int fd;
    char *path;
    uint64_t size;
    struct cairn_pack_entry *entries;
    size_t n, cap;
};

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int cairn_pack_writer_new(const char *tmpdir, cairn_pack_writer **out, cairn_err *err)
{
    cairn_pack_writer *w = calloc(1, sizeof *w);
    uint8_t r[12];
    char hex[25], path[PATH_MAX];
    if (!w)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    cairn_random(r, sizeof r);
    cairn_hex(r, sizeof r, hex);
    snprintf(path, sizeof path, "%s/pack-%s", tmpdir, hex);
    w->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (w->fd < 0 && errno == ENOENT) {
        cairn_mkdir_p(tmpdir, 0755, NULL);
        w->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (w->fd < 0) {
        int e = errno;
        free(w);
        return cairn_error(err, CAIRN_FATAL, "cannot create pack file '%s': %s", path,
                           strerror(e));
    }
    w->path = strdup(path);
    *out = w;
    return CAIRN_OK;
}

int cairn_pack_writer_add(cairn_pack_writer *w, const cairn_id *id, uint8_t type,
                          uint8_t flags, uint32_t raw_len, const void *stored,
                          uint32_t stored_len, cairn_err *err)
{
    struct cairn_pack_entry *e;
    if (w->n == w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 256;
        struct cairn_pack_entry *p = realloc(w->entries, ncap * sizeof *p);
        if (!p)
            return cairn_error(err, CAIRN_FATAL, "out of memory");
        w->entries = p;
        w->cap = ncap;
    }
    if (cairn_write_all(w->fd, stored, stored_len) != 0)
        return cairn_error(err, CAIRN_FATAL, "cannot write pack file '%s': %s%s", w->path,
                           strerror(errno),
                           errno == ENOSPC || errno == EDQUOT
                               ? " (free space where the repository is, then run the backup "
                                 "again: what was already stored is reused)"
                               : "");
    e = &w->entries[w->n++];
    e->id = *id;
    e->type = type;
    e->flags = flags;
    e->raw_len = raw_len;
    e->stored_len = stored_len;
    e->offset = w->size;
    w->size += stored_len;
    return CAIRN_OK;
}

uint64_t cairn_pack_writer_size(const cairn_pack_writer *w)
{
    return w->size;
}

size_t cairn_pack_writer_count(const cairn_pack_writer *w)
{
    return w->n;
}

void cairn_pack_writer_abort(cairn_pack_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (w->path)
        unlink(w->path);
    free(w->path);
    free(w->entries);
    free(w);
}

int cairn_pack_writer_finish(cairn_pack_writer *w, cairn_id *pack_id, char **path,
                             uint64_t *size, struct cairn_pack_entry **entries, size_t *n,
                             cairn_err *err)
{
    size_t tlen = w->n * CAIRN_PACK_ENTRY_LEN + CAIRN_PACK_FOOTER_LEN, i;
    uint8_t *t = malloc(tlen), *p;
    if (!t) {
        cairn_pack_writer_abort(w);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    p = t;
    for (i = 0; i < w->n; i++) {
        const struct cairn_pack_entry *e = &w->entries[i];
        p[0] = e->type;
        p[1] = e->flags;
        put32(p + 2, e->stored_len);
        put32(p + 6, e->raw_len);
        memcpy(p + 10, e->id.b, CAIRN_ID_LEN);
        p += CAIRN_PACK_ENTRY_LEN;
    }
    put32(p, (uint32_t)w->n);
    put32(p + 4, 1);
    crypto_generichash(p + 8, 8, t, (size_t)(p + 4 - t), NULL, 0);
    memcpy(p + 16, PACK_MAGIC, 8);
    if (cairn_write_all(w->fd, t, tlen) != 0 || fsync(w->fd) != 0 || close(w->fd) != 0) {
        int e = errno;
        w->fd = -1;
        free(t);
        cairn_error(err, CAIRN_FATAL, "cannot write pack file '%s': %s", w->path, strerror(e));
        cairn_pack_writer_abort(w);
        return CAIRN_FATAL;
    }
    free(t);
    w->fd = -1;
    cairn_random(pack_id->b, CAIRN_ID_LEN);
    *path = w->path;
    *size = w->size + tlen;
    *entries = w->entries;
    *n = w->n;
    free(w);
    return CAIRN_OK;
}

int cairn_pack_parse_trailer(const uint8_t *tail, size_t tail_len, uint64_t pack_size,
                             struct cairn_pack_entry **entries, size_t *n, size_t *need,
                             cairn_err *err)
{
    const uint8_t *f, *p;
    uint32_t count;
    uint64_t tlen, off = 0;
    uint8_t check[8];
    struct cairn_pack_entry *es;
    size_t i;
    *need = 0;
    if (pack_size < CAIRN_PACK_FOOTER_LEN || tail_len < CAIRN_PACK_FOOTER_LEN)
        return cairn_error(err, CAIRN_CORRUPT, "pack too short to hold a trailer");
    f = tail + tail_len - CAIRN_PACK_FOOTER_LEN;
    if (memcmp(f + 16, PACK_MAGIC, 8) != 0)
        return cairn_error(err, CAIRN_CORRUPT, "pack trailer magic missing");
    count = get32(f);
    if (get32(f + 4) != 1)
        return cairn_error(err, CAIRN_CORRUPT, "unknown pack version %u", get32(f + 4));
    if (count > CAIRN_PACK_MAX_BLOBS)
        return cairn_error(err, CAIRN_CORRUPT, "pack declares %u blobs (too many)", count);
    tlen = (uint64_t)count * CAIRN_PACK_ENTRY_LEN + CAIRN_PACK_FOOTER_LEN;
    if (tlen > pack_size)
        return cairn_error(err, CAIRN_CORRUPT, "pack trailer larger than the pack");
    if (tail_len < tlen) {
        *need = (size_t)tlen;
        return CAIRN_OK;
    }
    p = tail + tail_len - tlen;
    crypto_generichash(check, 8, p, (size_t)(tlen - CAIRN_PACK_FOOTER_LEN + 4), NULL, 0);
    if (memcmp(check, f + 8, 8) != 0)
        return cairn_error(err, CAIRN_CORRUPT, "pack trailer checksum mismatch");
    es = calloc(count ? count : 1, sizeof *es);
    if (!es)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    for (i = 0; i < count; i++, p += CAIRN_PACK_ENTRY_LEN) {
        es[i].type = p[0];
        es[i].flags = p[1];
        es[i].stored_len = get32(p + 2);
        es[i].raw_len = get32(p + 6);
        memcpy(es[i].id.b, p + 10, CAIRN_ID_LEN);
        es[i].offset = off;
        off += es[i].stored_len;
    }
    if (off + tlen != pack_size) {
        free(es);
        return cairn_error(err, CAIRN_CORRUPT,
                           "pack size %llu does not match its trailer (%llu + %llu)",
                           (unsigned long long)pack_size, (unsigned long long)off,
                           (unsigned long long)tlen);
    }
    *entries = es;
    *n = count;
    return CAIRN_OK;
}

void cairn_pack_key(const cairn_id *pack, char *out, size_t outlen)
{
    char hex[CAIRN_HEX_LEN + 1];
    cairn_id_hex(pack, hex);
    snprintf(out, outlen, "data/%.2s/%s", hex, hex);
}

int cairn_blob_encode(const void *raw, size_t len, int level, cairn_buf *out, uint8_t *flags)
{
    size_t bound = ZSTD_compressBound(len), n;
    ZSTD_CCtx *cctx = thread_cctx();
    cairn_buf_reset(out);
    *flags = 0;
    /* A compressed blob is one zstd frame with its content checksum (XXH64),
     * so a read can detect damage without rehashing the content. */
    if (!cctx || cairn_buf_reserve(out, bound) != CAIRN_OK)
        return CAIRN_FAILED;
    ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
    if (len >= 64) {
        n = ZSTD_compress2(cctx, out->data, bound, raw, len);
        /* Kept as a frame when it saves 3%, and also when zstd could not
         * shrink it: then the frame is raw blocks (3 bytes a block, a header
         * and the checksum: under 0.1% more than the bytes), which restore
         * copies and checks by XXH64 instead of rehashing them with BLAKE2b. */
        if (!ZSTD_isError(n) && (n < len - len / 32 || n <= len + len / 1024 + 32)) {
            out->len = n;
            *flags = CAIRN_BLOB_ZSTD;
            return CAIRN_OK;
        }
    }
    /* incompressible (or tiny): stored raw; readers verify those by hash */
    return cairn_buf_append(out, raw, len);
}

int cairn_blob_decode(const void *stored, size_t len, uint8_t flags, uint32_t raw_len,
                      cairn_buf *out, cairn_err *err)
{
    cairn_buf_reset(out);
    if (raw_len > CAIRN_BLOB_MAX)
        return cairn_error(err, CAIRN_CORRUPT, "blob declares %u bytes (too large)", raw_len);
    if (!(flags & CAIRN_BLOB_ZSTD)) {
        if (len != raw_len)
            return cairn_error(err, CAIRN_CORRUPT, "blob length %zu, expected %u", len, raw_len);
        return cairn_buf_append(out, stored, len) == CAIRN_OK
                   ? CAIRN_OK
                   : cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    {
        ZSTD_DCtx *dctx;
        size_t n;
        unsigned long long fsz = ZSTD_getFrameContentSize(stored, len);
        if (fsz != raw_len)
            return cairn_error(err, CAIRN_CORRUPT, "compressed blob declares %llu bytes, expected %u",
                               fsz, raw_len);
        dctx = thread_dctx();
        if (!dctx || cairn_buf_reserve(out, raw_len) != CAIRN_OK)
            return cairn_error(err, CAIRN_FATAL, "out of memory");
        /* verifies the frame's content checksum when it has one */
        n = ZSTD_decompressDCtx(dctx, out->data, raw_len, stored, len);
        if (ZSTD_isError(n) || n != raw_len)
            return cairn_error(err, CAIRN_CORRUPT, "blob does not decompress: %s",
                               ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short");
        out->len = n;
    }
    return CAIRN_OK;
}

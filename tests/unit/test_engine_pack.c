/* tests/unit/test_engine_pack.c — engine/pack.c: the pack writer and its
 * trailer, the trailer parser's `need` protocol and its corruption checks, and
 * blob encode/decode. */
#define _XOPEN_SOURCE 700
#include "../../engine/pack.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char tmpdir[] = "/tmp/cairn-test-engine-pack-XXXXXX";
static int have_tmpdir;

static void cleanup(void)
{
    if (have_tmpdir)
        test_rm_tree(tmpdir);
}

static uint64_t rng_state = 0x0123456789abcdefULL;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static int contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m)
{
    size_t i;
    for (i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return 1;
    return 0;
}

static void fill_random(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static int read_whole(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long n;
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc(n > 0 ? (size_t)n : 1);
    if (!*out || fread(*out, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        return -1;
    }
    fclose(f);
    *len = (size_t)n;
    return 0;
}

#define NBLOBS 6

struct blob {
    cairn_id id;
    uint8_t type, flags;
    uint32_t raw_len;
    uint8_t *stored;
    uint32_t stored_len;
};

/* Parses with the whole pack as the tail; expects rc. */
static int parse_whole(const uint8_t *p, size_t len, uint64_t pack_size,
                       struct cairn_pack_entry **es, size_t *n, cairn_err *err)
{
    size_t need = 0;
    int rc;
    *es = NULL;
    *n = 0;
    cairn_err_clear(err);
    rc = cairn_pack_parse_trailer(p, len, pack_size, es, n, &need, err);
    if (rc == CAIRN_OK && need) {
        fprintf(stderr, "FAIL: parse asked for %zu bytes although it had all %zu\n", need, len);
        failures++;
        return CAIRN_FAILED;
    }
    return rc;
}

static void expect_corrupt(const uint8_t *p, size_t len, uint64_t pack_size, const char *what)
{
    struct cairn_pack_entry *es = NULL;
    size_t n = 0, need = 0;
    cairn_err err;
    int rc;
    cairn_err_clear(&err);
    rc = cairn_pack_parse_trailer(p, len, pack_size, &es, &n, &need, &err);
    CHECK(rc == CAIRN_CORRUPT, "%s: parse_trailer returned %d (need %zu), want CAIRN_CORRUPT", what,
          rc, need);
    if (rc == CAIRN_CORRUPT)
        CHECK(err.msg[0] != 0, "%s: CORRUPT without a message", what);
    if (rc == CAIRN_OK)
        free(es);
}

static void test_writer_and_trailer(void)
{
    struct blob b[NBLOBS];
    static const uint32_t sizes[NBLOBS] = {1, 100, 4096, 70000, 42, 3};
    cairn_pack_writer *w = NULL;
    cairn_err err;
    cairn_id pack_id;
    char *path = NULL;
    uint64_t size = 0, expect_off = 0;
    struct cairn_pack_entry *wes = NULL, *es = NULL;
    size_t wn = 0, n = 0, need = 0, i, plen = 0, tlen;
    uint8_t *pack = NULL, *mod;
    struct stat st;
    int rc;

    cairn_err_clear(&err);
    CHECK(cairn_pack_writer_new(tmpdir, &w, &err) == CAIRN_OK, "writer_new: %s", err.msg);
    if (!w)
        return;
    for (i = 0; i < NBLOBS; i++) {
        b[i].stored_len = sizes[i];
        b[i].stored = malloc(sizes[i]);
        fill_random(b[i].stored, sizes[i]);
        fill_random(b[i].id.b, CAIRN_ID_LEN);
        b[i].type = (uint8_t)(i & 1);
        b[i].flags = (uint8_t)(i == 2 ? CAIRN_BLOB_ZSTD : 0);
        b[i].raw_len = sizes[i] * (b[i].flags ? 3 : 1);
        CHECK(cairn_pack_writer_add(w, &b[i].id, b[i].type, b[i].flags, b[i].raw_len, b[i].stored,
                                    b[i].stored_len, &err) == CAIRN_OK,
              "writer_add #%zu: %s", i, err.msg);
        expect_off += sizes[i];
        CHECK(cairn_pack_writer_size(w) == expect_off, "writer_size %llu after %zu blobs, want %llu",
              (unsigned long long)cairn_pack_writer_size(w), i + 1,
              (unsigned long long)expect_off);
        CHECK(cairn_pack_writer_count(w) == i + 1, "writer_count %zu, want %zu",
              cairn_pack_writer_count(w), i + 1);
    }
    memset(&pack_id, 0, sizeof pack_id);
    rc = cairn_pack_writer_finish(w, &pack_id, &path, &size, &wes, &wn, &err);
    CHECK(rc == CAIRN_OK, "writer_finish: %s", err.msg);
    if (rc != CAIRN_OK)
        return;
    tlen = NBLOBS * CAIRN_PACK_ENTRY_LEN + CAIRN_PACK_FOOTER_LEN;
    CHECK(size == expect_off + tlen, "finish: size %llu, want %llu", (unsigned long long)size,
          (unsigned long long)(expect_off + tlen));
    CHECK(wn == NBLOBS, "finish: %zu entries", wn);
    CHECK(!cairn_id_is_zero(&pack_id), "finish: zero pack id");
    CHECK(path && strncmp(path, tmpdir, strlen(tmpdir)) == 0, "finish: spool path '%s' not in tmpdir",
          path ? path : "(null)");
    CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size == size, "spool file size %lld != %llu",
          (long long)st.st_size, (unsigned long long)size);
    CHECK(read_whole(path, &pack, &plen) == 0 && plen == size, "cannot read the spool file");
    if (!pack)
        return;

    /* the layout: blobs back to back, then entries, then the footer */
    expect_off = 0;
    for (i = 0; i < NBLOBS && i < wn; i++) {
        CHECK(wes[i].offset == expect_off, "finish entry %zu offset %llu, want %llu", i,
              (unsigned long long)wes[i].offset, (unsigned long long)expect_off);
        CHECK(memcmp(pack + expect_off, b[i].stored, b[i].stored_len) == 0,
              "blob %zu bytes not at their offset in the pack", i);
        expect_off += b[i].stored_len;
    }
    CHECK(memcmp(pack + plen - 8, "CAIRNPK1", 8) == 0, "footer magic missing");
    CHECK(get32(pack + plen - 24) == NBLOBS, "footer count %u", get32(pack + plen - 24));
    CHECK(get32(pack + plen - 20) == 1, "footer version %u", get32(pack + plen - 20));
    CHECK(pack[expect_off] == b[0].type && pack[expect_off + 1] == b[0].flags &&
              get32(pack + expect_off + 2) == b[0].stored_len &&
              get32(pack + expect_off + 6) == b[0].raw_len &&
              memcmp(pack + expect_off + 10, b[0].id.b, CAIRN_ID_LEN) == 0,
          "first trailer entry does not follow the documented layout");

    /* parse with the whole pack */
    rc = parse_whole(pack, plen, plen, &es, &n, &err);
    CHECK(rc == CAIRN_OK, "parse_trailer of a good pack: %s", err.msg);
    if (rc == CAIRN_OK) {
        CHECK(n == NBLOBS, "parsed %zu entries, want %d", n, NBLOBS);
        for (i = 0; i < n && i < NBLOBS; i++) {
            CHECK(memcmp(es[i].id.b, b[i].id.b, CAIRN_ID_LEN) == 0 &&
                      memcmp(es[i].id.b, wes[i].id.b, CAIRN_ID_LEN) == 0,
                  "entry %zu: id differs", i);
            CHECK(es[i].type == b[i].type && es[i].flags == b[i].flags &&
                      es[i].stored_len == b[i].stored_len && es[i].raw_len == b[i].raw_len,
                  "entry %zu: type/flags/lengths differ (%u/%u/%u/%u)", i, es[i].type,
                  es[i].flags, es[i].stored_len, es[i].raw_len);
            CHECK(es[i].offset == wes[i].offset, "entry %zu: offset %llu, writer said %llu", i,
                  (unsigned long long)es[i].offset, (unsigned long long)wes[i].offset);
        }
        free(es);
    }

    /* the need protocol: only the 24-byte footer first */
    es = NULL;
    n = 12345;
    cairn_err_clear(&err);
    rc = cairn_pack_parse_trailer(pack + plen - CAIRN_PACK_FOOTER_LEN, CAIRN_PACK_FOOTER_LEN, plen,
                                  &es, &n, &need, &err);
    CHECK(rc == CAIRN_OK && need == tlen, "footer only: rc %d need %zu, want OK and %zu (%s)", rc,
          need, tlen, err.msg);
    if (rc == CAIRN_OK && need == tlen) {
        size_t need2 = 99;
        rc = cairn_pack_parse_trailer(pack + plen - need, need, plen, &es, &n, &need2, &err);
        CHECK(rc == CAIRN_OK && need2 == 0 && n == NBLOBS,
              "second call with the asked %zu bytes: rc %d need %zu n %zu (%s)", need, rc, need2,
              n, err.msg);
        if (rc == CAIRN_OK) {
            for (i = 0; i < n && i < NBLOBS; i++)
                CHECK(es[i].offset == wes[i].offset &&
                          memcmp(es[i].id.b, b[i].id.b, CAIRN_ID_LEN) == 0,
                      "need protocol: entry %zu differs", i);
            free(es);
        }
    } else if (rc == CAIRN_OK && !need) {
        free(es);
    }
    /* a tail between the footer and the full trailer also asks */
    need = 0;
    rc = cairn_pack_parse_trailer(pack + plen - 100, 100, plen, &es, &n, &need, &err);
    CHECK(rc == CAIRN_OK && need == tlen, "100-byte tail: rc %d need %zu", rc, need);
    if (rc == CAIRN_OK && need == 0)
        free(es);

    /* ---- corruption ---- */
    mod = malloc(plen);
    /* a flipped byte inside each trailer entry (checksum) */
    for (i = 0; i < NBLOBS; i++) {
        size_t at = expect_off + i * CAIRN_PACK_ENTRY_LEN + (i * 7) % CAIRN_PACK_ENTRY_LEN;
        memcpy(mod, pack, plen);
        mod[at] ^= 0x01;
        {
            char what[64];
            snprintf(what, sizeof what, "flipped trailer byte at %zu", at);
            expect_corrupt(mod, plen, plen, what);
        }
    }
    /* the checksum itself */
    memcpy(mod, pack, plen);
    mod[plen - 12] ^= 0x80;
    expect_corrupt(mod, plen, plen, "flipped checksum byte");
    /* wrong magic */
    memcpy(mod, pack, plen);
    mod[plen - 1] = '2';
    expect_corrupt(mod, plen, plen, "magic CAIRNPK2");
    memcpy(mod, pack, plen);
    memset(mod + plen - 8, 0, 8);
    expect_corrupt(mod, plen, plen, "zeroed magic");
    /* unknown version */
    memcpy(mod, pack, plen);
    put32(mod + plen - 20, 2);
    expect_corrupt(mod, plen, plen, "version 2");
    /* count claiming more entries than the pack can hold */
    memcpy(mod, pack, plen);
    put32(mod + plen - 24, (uint32_t)(plen / CAIRN_PACK_ENTRY_LEN + 1));
    expect_corrupt(mod, plen, plen, "count larger than the pack");
    memcpy(mod, pack, plen);
    put32(mod + plen - 24, 0xFFFFFFFFu);
    expect_corrupt(mod, plen, plen, "count 0xFFFFFFFF");
    memcpy(mod, pack, plen);
    put32(mod + plen - 24, CAIRN_PACK_MAX_BLOBS + 1);
    expect_corrupt(mod, plen, (uint64_t)1 << 40, "count above CAIRN_PACK_MAX_BLOBS");
    /* a count that fits but is not what the checksum covers */
    memcpy(mod, pack, plen);
    put32(mod + plen - 24, NBLOBS + 1);
    expect_corrupt(mod, plen, plen, "count one too many");
    memcpy(mod, pack, plen);
    put32(mod + plen - 24, NBLOBS - 1);
    expect_corrupt(mod, plen, plen, "count one too few");
    /* size mismatch */
    expect_corrupt(pack, plen, plen + 1, "pack_size one larger than the blobs + trailer");
    expect_corrupt(pack + 1, plen - 1, plen - 1, "pack missing its first byte");
    expect_corrupt(pack + 100, plen - 100, plen - 100, "pack missing its first 100 bytes");
    /* a stored_len in an entry that does not add up (checksum recomputed is
     * not possible here, so this is caught by the checksum or the size) */
    memcpy(mod, pack, plen);
    put32(mod + expect_off + 2, b[0].stored_len + 1);
    expect_corrupt(mod, plen, plen, "stored_len off by one");
    /* truncated packs */
    expect_corrupt(pack, plen - 1, plen - 1, "pack missing its last byte");
    expect_corrupt(pack, plen - 30, plen - 30, "pack missing its last 30 bytes");
    expect_corrupt(pack, 23, 23, "23-byte pack");
    expect_corrupt(pack, 0, 0, "empty pack");
    expect_corrupt(pack + plen - 10, 10, plen, "10-byte tail of a good pack");
    free(mod);

    free(pack);
    unlink(path);
    free(path);
    free(wes);
    for (i = 0; i < NBLOBS; i++)
        free(b[i].stored);
}

static int count_spool_files(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    int n = 0;
    while (d && (de = readdir(d)) != NULL)
        if (strncmp(de->d_name, "pack-", 5) == 0)
            n++;
    if (d)
        closedir(d);
    return n;
}

static void test_empty_pack_and_abort(void)
{
    cairn_pack_writer *w = NULL;
    cairn_err err;
    cairn_id pid;
    char *path = NULL, key[80], hex[CAIRN_HEX_LEN + 1], want[80];
    uint64_t size = 0;
    struct cairn_pack_entry *es = NULL, *pes = NULL;
    size_t n = 99, pn = 99;
    uint8_t *p = NULL;
    size_t plen = 0;
    struct stat st;

    CHECK(cairn_pack_writer_new(tmpdir, &w, &err) == CAIRN_OK, "writer_new: %s", err.msg);
    if (!w)
        return;
    CHECK(cairn_pack_writer_finish(w, &pid, &path, &size, &es, &n, &err) == CAIRN_OK,
          "finish of an empty pack: %s", err.msg);
    CHECK(size == CAIRN_PACK_FOOTER_LEN && n == 0, "empty pack: size %llu n %zu",
          (unsigned long long)size, n);
    if (path && read_whole(path, &p, &plen) == 0) {
        CHECK(parse_whole(p, plen, plen, &pes, &pn, &err) == CAIRN_OK && pn == 0,
              "empty pack does not parse: %s", err.msg);
        free(pes);
        free(p);
        unlink(path);
    }
    free(path);
    free(es);

    /* abort deletes the spool file */
    w = NULL;
    CHECK(cairn_pack_writer_new(tmpdir, &w, &err) == CAIRN_OK, "writer_new: %s", err.msg);
    if (w) {
        cairn_id id;
        memset(&id, 7, sizeof id);
        CHECK(cairn_pack_writer_add(w, &id, 0, 0, 5, "hello", 5, &err) == CAIRN_OK,
              "writer_add: %s", err.msg);
        CHECK(count_spool_files() == 1, "expected one spool file before abort, found %d",
              count_spool_files());
        cairn_pack_writer_abort(w);
        CHECK(count_spool_files() == 0, "abort left %d spool file(s) in %s", count_spool_files(),
              tmpdir);
    }
    /* writer_new creates a missing tmpdir */
    {
        char sub[300];
        snprintf(sub, sizeof sub, "%s/a/b", tmpdir);
        w = NULL;
        CHECK(cairn_pack_writer_new(sub, &w, &err) == CAIRN_OK && stat(sub, &st) == 0,
              "writer_new did not create its tmpdir: %s", err.msg);
        cairn_pack_writer_abort(w);
    }

    /* the object key */
    memset(&pid, 0, sizeof pid);
    pid.b[0] = 0xab;
    pid.b[31] = 0x01;
    cairn_id_hex(&pid, hex);
    cairn_pack_key(&pid, key, sizeof key);
    snprintf(want, sizeof want, "data/ab/%s", hex);
    CHECK(strcmp(key, want) == 0, "pack_key = '%s', want '%s'", key, want);
}

static void test_blobs(void)
{
    const size_t N = 1 << 20;
    uint8_t *text = malloc(N), *rnd_data = malloc(N);
    cairn_buf enc = CAIRN_BUF_INIT, dec = CAIRN_BUF_INIT;
    uint8_t flags = 0xee;
    cairn_err err;
    int rc;

    for (size_t i = 0; i < N; i++)
        text[i] = (uint8_t)("the quick brown fox jumps over the lazy dog. "[i % 45]);
    fill_random(rnd_data, N);

    /* compressible */
    CHECK(cairn_blob_encode(text, N, 3, &enc, &flags) == CAIRN_OK, "encode of text failed");
    CHECK(flags == CAIRN_BLOB_ZSTD, "compressible data: flags %u, want ZSTD", flags);
    CHECK(enc.len < N / 10, "compressible data stored in %zu bytes", enc.len);
    rc = cairn_blob_decode(enc.data, enc.len, flags, (uint32_t)N, &dec, &err);
    CHECK(rc == CAIRN_OK && dec.len == N && memcmp(dec.data, text, N) == 0,
          "decode of compressed text: rc %d len %zu (%s)", rc, dec.len, rc ? err.msg : "");
    /* wrong raw_len for a compressed blob, both ways */
    cairn_err_clear(&err);
    CHECK(cairn_blob_decode(enc.data, enc.len, flags, (uint32_t)N - 1, &dec, &err) == CAIRN_CORRUPT,
          "compressed blob with raw_len one short accepted");
    CHECK(cairn_blob_decode(enc.data, enc.len, flags, (uint32_t)N + 1, &dec, &err) == CAIRN_CORRUPT,
          "compressed blob with raw_len one long accepted");
    /* truncated frame */
    CHECK(cairn_blob_decode(enc.data, enc.len / 2, flags, (uint32_t)N, &dec, &err) == CAIRN_CORRUPT,
          "truncated zstd frame accepted");
    CHECK(cairn_blob_decode(enc.data, 3, flags, (uint32_t)N, &dec, &err) == CAIRN_CORRUPT,
          "3-byte zstd frame accepted");
    /* garbage marked as zstd */
    CHECK(cairn_blob_decode(rnd_data, 1000, CAIRN_BLOB_ZSTD, 1000, &dec, &err) == CAIRN_CORRUPT,
          "random bytes flagged ZSTD accepted");
    /* raw_len above the cap, compressed */
    CHECK(cairn_blob_decode(enc.data, enc.len, flags, CAIRN_BLOB_MAX + 1, &dec, &err) ==
              CAIRN_CORRUPT,
          "compressed blob declaring CAIRN_BLOB_MAX+1 accepted");

    /* incompressible: a frame of raw blocks (the bytes as they are, with the
     * frame's checksum), at most 0.1% + 32 bytes larger */
    flags = 0xee;
    CHECK(cairn_blob_encode(rnd_data, N, 3, &enc, &flags) == CAIRN_OK, "encode of random failed");
    CHECK(flags == CAIRN_BLOB_ZSTD, "random data: flags %u, want a zstd frame", flags);
    CHECK(enc.len > N && enc.len <= N + N / 1024 + 32, "random data: %zu bytes stored", enc.len);
    CHECK(enc.len > 4096 && contains(enc.data, enc.len, rnd_data, 4096),
          "random data is not kept uncompressed in the frame");
    rc = cairn_blob_decode(enc.data, enc.len, flags, (uint32_t)N, &dec, &err);
    CHECK(rc == CAIRN_OK && dec.len == N && memcmp(dec.data, rnd_data, N) == 0,
          "decode of a raw-block frame: rc %d", rc);
    enc.data[enc.len / 2] ^= 1; /* a flipped byte in a raw block: the checksum says so */
    cairn_err_clear(&err);
    CHECK(cairn_blob_decode(enc.data, enc.len, flags, (uint32_t)N, &dec, &err) == CAIRN_CORRUPT,
          "a damaged raw-block frame decoded");
    /* tiny blobs and repositories written before: raw bytes, flags 0 */
    CHECK(cairn_blob_encode(rnd_data, 40, 3, &enc, &flags) == CAIRN_OK && flags == 0 &&
              enc.len == 40 && memcmp(enc.data, rnd_data, 40) == 0,
          "a 40-byte blob is not stored raw");
    cairn_buf_reset(&enc);
    CHECK(cairn_buf_append(&enc, rnd_data, N) == CAIRN_OK, "out of memory");
    flags = 0;
    cairn_err_clear(&err);
    rc = cairn_blob_decode(enc.data, enc.len, flags, (uint32_t)N, &dec, &err);
    CHECK(rc == CAIRN_OK && dec.len == N && memcmp(dec.data, rnd_data, N) == 0,
          "decode of raw blob: rc %d", rc);
    cairn_err_clear(&err);
    CHECK(cairn_blob_decode(enc.data, enc.len, 0, (uint32_t)N + 1, &dec, &err) == CAIRN_CORRUPT,
          "raw blob with raw_len one long accepted");
    CHECK(cairn_blob_decode(enc.data, enc.len, 0, (uint32_t)N - 1, &dec, &err) == CAIRN_CORRUPT,
          "raw blob with raw_len one short accepted");
    CHECK(cairn_blob_decode(enc.data, enc.len, 0, CAIRN_BLOB_MAX + 1, &dec, &err) == CAIRN_CORRUPT,
          "raw blob declaring CAIRN_BLOB_MAX+1 accepted");
    CHECK(cairn_blob_decode(enc.data, enc.len, 0, 0xFFFFFFFFu, &dec, &err) == CAIRN_CORRUPT,
          "raw blob declaring 4 GiB accepted");

    /* small and empty blobs */
    CHECK(cairn_blob_encode("", 0, 3, &enc, &flags) == CAIRN_OK && flags == 0 && enc.len == 0,
          "empty blob encode");
    CHECK(cairn_blob_decode("", 0, 0, 0, &dec, &err) == CAIRN_OK && dec.len == 0,
          "empty blob decode");
    CHECK(cairn_blob_encode("abc", 3, 3, &enc, &flags) == CAIRN_OK && enc.len == 3 &&
              cairn_blob_decode(enc.data, enc.len, flags, 3, &dec, &err) == CAIRN_OK &&
              dec.len == 3 && memcmp(dec.data, "abc", 3) == 0,
          "3-byte blob round trip");
    /* a whole range of sizes round-trips */
    for (size_t len = 0; len < 300; len += 7) {
        uint8_t f;
        if (cairn_blob_encode(text, len, 1, &enc, &f) != CAIRN_OK ||
            cairn_blob_decode(enc.data, enc.len, f, (uint32_t)len, &dec, &err) != CAIRN_OK ||
            dec.len != len || (len && memcmp(dec.data, text, len) != 0)) {
            CHECK(0, "round trip of a %zu-byte text blob", len);
            break;
        }
        CHECK(f == 0 || enc.len < len, "%zu-byte blob flagged ZSTD but not smaller (%zu)", len,
              enc.len);
    }
    cairn_buf_free(&enc);
    cairn_buf_free(&dec);
    free(text);
    free(rnd_data);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "FAIL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    have_tmpdir = 1;
    test_writer_and_trailer();
    test_empty_pack_and_abort();
    test_blobs();
    cleanup();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("test_engine_pack: all checks passed\n");
    return 0;
}

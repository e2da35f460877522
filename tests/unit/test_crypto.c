/* tests/unit/test_crypto.c — engine/crypto.c: the object envelope (round trips
 * of many sizes, segment boundaries, every byte tampered, truncation,
 * extension, wrong name, wrong key), the encrypting store over a real local
 * directory store (ranged reads across segments, plaintext sizes in stat and
 * list, put_file consuming its spool file, objects renamed or damaged on
 * disk), key files (make, parse, unlock, wrong password, damaged fields) and
 * password files. Exit 0 when every check passes; each failure prints a
 * "FAIL: ..." line on stderr. */
#define _GNU_SOURCE
#include "../../engine/crypto.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../engine/internal.h"
#include "../../engine/repo.h"

#include "check.h"

static char tmpdir[] = "/tmp/cairn-test-crypto-XXXXXX";
static int have_tmpdir;

static void cleanup(void)
{
    if (have_tmpdir)
        test_rm_tree(tmpdir);
}

static char *P(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    size_t i;
    for (i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

static void master(struct cairn_master *m, int which)
{
    memset(m, 0, sizeof *m);
    memset(m->repo_id, 'a' + which, CAIRN_HEX_LEN);
    fill(m->enc_key, 32, 1 + (uint32_t)which);
    fill(m->chunk_key, 32, 100 + (uint32_t)which);
    fill(m->gear_key, 32, 200 + (uint32_t)which);
}

/* ---- sizes ---- */

static void test_sizes(void)
{
    uint64_t n, p;
    for (n = 0; n < 4 * CAIRN_CRYPT_SEG + 40; n += (n < 300 ? 1 : 997)) {
        uint64_t s = cairn_crypt_sealed_size(n);
        CHECK(cairn_crypt_plain_size(s, &p) == CAIRN_OK && p == n,
              "sizes: %llu -> %llu -> %llu", (unsigned long long)n, (unsigned long long)s,
              (unsigned long long)p);
    }
    for (n = CAIRN_CRYPT_SEG - 2; n <= CAIRN_CRYPT_SEG + 2; n++) {
        uint64_t s = cairn_crypt_sealed_size(n);
        CHECK(cairn_crypt_plain_size(s, &p) == CAIRN_OK && p == n, "sizes at a boundary: %llu",
              (unsigned long long)n);
    }
    CHECK(cairn_crypt_sealed_size(0) == CAIRN_CRYPT_HDR + CAIRN_CRYPT_TAG, "empty object size");
    CHECK(cairn_crypt_plain_size(0, &p) != CAIRN_OK, "size 0 accepted");
    CHECK(cairn_crypt_plain_size(CAIRN_CRYPT_HDR + 15, &p) != CAIRN_OK, "size HDR+15 accepted");
    /* a full segment plus an empty tagged one is never written */
    CHECK(cairn_crypt_plain_size(CAIRN_CRYPT_HDR + CAIRN_CRYPT_SEG + 2 * CAIRN_CRYPT_TAG, &p) !=
              CAIRN_OK,
          "full segment + empty segment size accepted");
    CHECK(cairn_crypt_plain_size(CAIRN_CRYPT_HDR + CAIRN_CRYPT_SEG + CAIRN_CRYPT_TAG + 5, &p) !=
              CAIRN_OK,
          "segment + 5 bytes (shorter than a tag) accepted");
}

/* ---- the envelope ---- */

static void test_envelope(void)
{
    static const size_t sizes[] = {0,
                                   1,
                                   15,
                                   16,
                                   17,
                                   1000,
                                   CAIRN_CRYPT_SEG - 1,
                                   CAIRN_CRYPT_SEG,
                                   CAIRN_CRYPT_SEG + 1,
                                   2 * CAIRN_CRYPT_SEG,
                                   3 * CAIRN_CRYPT_SEG + 5,
                                   (1u << 20) + 3};
    struct cairn_master m, m2;
    cairn_buf sealed = CAIRN_BUF_INIT, back = CAIRN_BUF_INIT;
    uint8_t *plain = malloc((1u << 20) + 8);
    cairn_err err;
    size_t i, j;
    master(&m, 0);
    master(&m2, 1);
    for (i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        fill(plain, n, (uint32_t)n);
        CHECK(cairn_crypt_seal(&m, "data/ab/x", plain, n, &sealed, &err) == CAIRN_OK,
              "seal %zu: %s", n, err.msg);
        CHECK(sealed.len == cairn_crypt_sealed_size(n), "sealed size of %zu is %zu", n,
              sealed.len);
        CHECK(n < 64 || !memmem(sealed.data, sealed.len, plain, 32), "plaintext visible (%zu)",
              n);
        CHECK(cairn_crypt_unseal(&m, "data/ab/x", sealed.data, sealed.len, n, &back, &err) ==
                      CAIRN_OK &&
                  back.len == n && memcmp(back.data, plain, n) == 0,
              "round trip of %zu bytes: %s", n, err.msg);
        if (n > 0)
            CHECK(cairn_crypt_unseal(&m, "data/ab/x", sealed.data, sealed.len, n - 1, &back,
                                     &err) == CAIRN_FAILED,
                  "max below the size accepted (%zu)", n);
        /* the name is bound */
        CHECK(cairn_crypt_unseal(&m, "data/ab/y", sealed.data, sealed.len, n, &back, &err) ==
                      CAIRN_CORRUPT &&
                  strstr(err.msg, "data/ab/y") && strstr(err.msg, "authentication"),
              "another name accepted (%zu): %s", n, err.msg);
        /* the key is bound */
        CHECK(cairn_crypt_unseal(&m2, "data/ab/x", sealed.data, sealed.len, n, &back, &err) ==
                  CAIRN_CORRUPT,
              "another key accepted (%zu)", n);
        /* truncation by one byte, and extension by one byte */
        CHECK(cairn_crypt_unseal(&m, "data/ab/x", sealed.data, sealed.len - 1, n, &back, &err) ==
                  CAIRN_CORRUPT,
              "truncated by one byte accepted (%zu)", n);
        cairn_buf_putc(&sealed, 0);
        CHECK(cairn_crypt_unseal(&m, "data/ab/x", sealed.data, sealed.len, n + 1, &back, &err) ==
                  CAIRN_CORRUPT,
              "extended by one byte accepted (%zu)", n);
        sealed.len--;
        /* truncation at a segment boundary: the last segment flag catches it */
        if (n > CAIRN_CRYPT_SEG) {
            size_t cut = CAIRN_CRYPT_HDR + CAIRN_CRYPT_SEG + CAIRN_CRYPT_TAG;
            CHECK(cairn_crypt_unseal(&m, "data/ab/x", sealed.data, cut, n, &back, &err) ==
                      CAIRN_CORRUPT,
                  "truncated at a segment boundary accepted (%zu)", n);
        }
        /* every byte tampered (sampled for large objects) */
        for (j = 0; j < sealed.len; j += (sealed.len < 3000 ? 1 : 509)) {
            sealed.data[j] ^= 0x40;
            CHECK(cairn_crypt_unseal(&m, "data/ab/x", sealed.data, sealed.len, n, &back, &err) ==
                      CAIRN_CORRUPT,
                  "byte %zu of %zu flipped, accepted", j, sealed.len);
            sealed.data[j] ^= 0x40;
        }
    }
    /* two segments swapped inside an object */
    fill(plain, 2 * CAIRN_CRYPT_SEG + 10, 7);
    cairn_crypt_seal(&m, "k", plain, 2 * CAIRN_CRYPT_SEG + 10, &sealed, &err);
    {
        size_t sl = CAIRN_CRYPT_SEG + CAIRN_CRYPT_TAG;
        uint8_t *tmp = malloc(sl);
        memcpy(tmp, sealed.data + CAIRN_CRYPT_HDR, sl);
        memmove(sealed.data + CAIRN_CRYPT_HDR, sealed.data + CAIRN_CRYPT_HDR + sl, sl);
        memcpy(sealed.data + CAIRN_CRYPT_HDR + sl, tmp, sl);
        free(tmp);
        CHECK(cairn_crypt_unseal(&m, "k", sealed.data, sealed.len, 1u << 22, &back, &err) ==
                  CAIRN_CORRUPT,
              "swapped segments accepted");
    }
    /* header checks */
    {
        uint8_t h[CAIRN_CRYPT_HDR], salt[32];
        memset(h, 0, sizeof h);
        CHECK(cairn_crypt_header_parse(h, sizeof h, salt, &err) == CAIRN_CORRUPT,
              "zero header accepted");
        cairn_crypt_seal(&m, "k", "", 0, &sealed, &err);
        CHECK(cairn_crypt_header_parse(sealed.data, sealed.len, salt, &err) == CAIRN_OK,
              "header of a sealed object refused: %s", err.msg);
        sealed.data[8] = 2;
        CHECK(cairn_crypt_header_parse(sealed.data, sealed.len, salt, &err) == CAIRN_CORRUPT &&
                  strstr(err.msg, "version"),
              "version 2 accepted: %s", err.msg);
        CHECK(cairn_crypt_header_parse(sealed.data, 10, salt, &err) == CAIRN_CORRUPT,
              "short header accepted");
    }
    /* two seals of one plaintext differ (random salt) */
    {
        cairn_buf a = CAIRN_BUF_INIT;
        cairn_crypt_seal(&m, "k", plain, 100, &a, &err);
        cairn_crypt_seal(&m, "k", plain, 100, &sealed, &err);
        CHECK(a.len == sealed.len && memcmp(a.data, sealed.data, a.len) != 0,
              "two seals are identical");
        cairn_buf_free(&a);
    }
    free(plain);
    cairn_buf_free(&sealed);
    cairn_buf_free(&back);
}

/* ---- the encrypting store over a directory store ---- */

static int write_file(const char *path, const void *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    if (n && fwrite(d, 1, n, f) != n) {
        fclose(f);
        return -1;
    }
    return fclose(f);
}

struct listed {
    char key[128];
    uint64_t size;
    int n;
};

static int on_list(void *arg, const char *key, uint64_t size)
{
    struct listed *l = arg;
    if (strcmp(key, l->key) == 0) {
        l->size = size;
        l->n++;
    }
    return 0;
}

static void test_store(void)
{
    struct cairn_master m;
    cairn_store *inner = NULL, *s = NULL, *raw = NULL;
    cairn_buf b = CAIRN_BUF_INIT;
    cairn_err err;
    const size_t n = 5 * CAIRN_CRYPT_SEG + 1234;
    uint8_t *plain = malloc(n);
    uint64_t sz;
    size_t k;
    struct stat st;
    static const struct {
        uint64_t off;
        size_t len;
    } ranges[] = {{0, 1},
                  {0, CAIRN_CRYPT_SEG},
                  {1, CAIRN_CRYPT_SEG},
                  {CAIRN_CRYPT_SEG - 1, 2},
                  {CAIRN_CRYPT_SEG, CAIRN_CRYPT_SEG},
                  {100, 3 * CAIRN_CRYPT_SEG + 77},
                  {5 * CAIRN_CRYPT_SEG, 1234},
                  {5 * CAIRN_CRYPT_SEG + 1233, 1},
                  {0, 5 * CAIRN_CRYPT_SEG + 1234},
                  {4 * CAIRN_CRYPT_SEG + 10, CAIRN_CRYPT_SEG + 1000},
                  {777, 0}};
    master(&m, 0);
    fill(plain, n, 42);
    CHECK(cairn_fs_store_open(P("repo"), 1, &inner, &err) == CAIRN_OK, "open fs store: %s",
          err.msg);
    if (!inner)
        return;
    CHECK(cairn_crypt_store_wrap(inner, &m, "0123456789abcdef", &s, &err) == CAIRN_OK,
          "wrap: %s", err.msg);
    if (!s)
        return;
    CHECK(cairn_crypt_store_master(s) != NULL && cairn_crypt_store_master(inner) == NULL,
          "master of the stores");
    CHECK(strcmp(s->ops->scheme, "file") == 0, "scheme of the wrapper is '%s'", s->ops->scheme);
    CHECK(cairn_store_put(s, "data/aa/obj", plain, n, 0, &err) == CAIRN_OK, "put: %s", err.msg);
    CHECK(cairn_store_put(s, "data/aa/obj", plain, n, 0, &err) == CAIRN_EXISTS,
          "second put not refused");
    CHECK(cairn_store_stat(s, "data/aa/obj", &sz, &err) == CAIRN_OK && sz == n,
          "stat gives %llu, not %zu", (unsigned long long)sz, n);
    CHECK(stat(P("repo/data/aa/obj"), &st) == 0 &&
              (uint64_t)st.st_size == cairn_crypt_sealed_size(n),
          "file on disk is not the sealed size");
    {
        struct listed l = {"data/aa/obj", 0, 0};
        CHECK(cairn_store_list(s, "data/", on_list, &l, &err) == CAIRN_OK && l.n == 1 &&
                  l.size == n,
              "list gives %llu", (unsigned long long)l.size);
    }
    CHECK(cairn_store_get(s, "data/aa/obj", &b, n, &err) == CAIRN_OK && b.len == n &&
              memcmp(b.data, plain, n) == 0,
          "get: %s", err.msg);
    CHECK(cairn_store_get(s, "data/aa/obj", &b, n - 1, &err) != CAIRN_OK,
          "get with a max below the size accepted");
    for (k = 0; k < sizeof ranges / sizeof *ranges; k++) {
        int rc = cairn_store_get_range(s, "data/aa/obj", ranges[k].off, ranges[k].len, &b, &err);
        CHECK(rc == CAIRN_OK && b.len == ranges[k].len &&
                  memcmp(b.data, plain + ranges[k].off, ranges[k].len) == 0,
              "range %llu+%zu: %s", (unsigned long long)ranges[k].off, ranges[k].len, err.msg);
    }
    CHECK(cairn_store_get_range(s, "data/aa/obj", n - 10, 11, &b, &err) == CAIRN_CORRUPT,
          "range past the end accepted");
    /* small reads one after the other, as a restore reads a pack's blobs
     * (served partly from decrypted segments kept by the store) */
    {
        uint64_t off = 0;
        size_t step = 1;
        int bad = 0;
        CHECK(cairn_store_put(s, "data/aa/seq", plain, n, 0, &err) == CAIRN_OK, "put: %s",
              err.msg);
        while (off < n && !bad) {
            size_t l = off + step > n ? n - off : step;
            if (cairn_store_get_range(s, "data/aa/seq", off, l, &b, &err) != CAIRN_OK ||
                b.len != l || memcmp(b.data, plain + off, l) != 0)
                bad = 1;
            off += l;
            step = step * 3 + 7 > 40000 ? 1 : step * 3 + 7;
        }
        CHECK(!bad, "sequential small reads differ at %llu: %s", (unsigned long long)off,
              err.msg);
    }
    /* the raw store sees no plaintext */
    CHECK(cairn_fs_store_open(P("repo"), 0, &raw, &err) == CAIRN_OK, "open raw: %s", err.msg);
    CHECK(cairn_store_get(raw, "data/aa/obj", &b, 1u << 24, &err) == CAIRN_OK &&
              !memmem(b.data, b.len, plain + 1000, 64),
          "plaintext visible in the raw object");
    /* config and keys/ stay plain */
    CHECK(cairn_store_put(s, "config", "{}", 2, 0, &err) == CAIRN_OK &&
              cairn_store_get(raw, "config", &b, 100, &err) == CAIRN_OK && b.len == 2 &&
              memcmp(b.data, "{}", 2) == 0,
          "config is not plain");
    /* put_file consumes its spool file and stores it sealed */
    {
        char *spool = P("repo/tmp/spool-1");
        mkdir(P("repo/tmp"), 0700);
        write_file(spool, plain, 3 * CAIRN_CRYPT_SEG);
        CHECK(cairn_store_put_file(s, "data/bb/f", spool, &err) == CAIRN_OK, "put_file: %s",
              err.msg);
        CHECK(access(spool, F_OK) != 0, "spool file left behind");
        CHECK(access(P("repo/tmp/spool-1.enc"), F_OK) != 0, "encrypted spool file left behind");
        CHECK(cairn_store_get(s, "data/bb/f", &b, 1u << 24, &err) == CAIRN_OK &&
                  b.len == 3 * CAIRN_CRYPT_SEG && memcmp(b.data, plain, b.len) == 0,
              "put_file round trip: %s", err.msg);
        CHECK(cairn_store_get_range(s, "data/bb/f", 2 * CAIRN_CRYPT_SEG - 5, 10, &b, &err) ==
                      CAIRN_OK &&
                  memcmp(b.data, plain + 2 * CAIRN_CRYPT_SEG - 5, 10) == 0,
              "put_file range: %s", err.msg);
        write_file(spool, "", 0);
        CHECK(cairn_store_put_file(s, "data/bb/empty", spool, &err) == CAIRN_OK &&
                  cairn_store_get(s, "data/bb/empty", &b, 10, &err) == CAIRN_OK && b.len == 0,
              "empty put_file: %s", err.msg);
    }
    /* an object moved to another name fails, naming that name */
    CHECK(rename(P("repo/data/bb/f"), P("repo/data/bb/g")) == 0, "rename");
    CHECK(cairn_store_get(s, "data/bb/g", &b, 1u << 24, &err) == CAIRN_CORRUPT &&
              strstr(err.msg, "data/bb/g"),
          "renamed object accepted: %s", err.msg);
    CHECK(cairn_store_get_range(s, "data/bb/g", 0, 10, &b, &err) == CAIRN_CORRUPT &&
              strstr(err.msg, "data/bb/g"),
          "renamed object accepted by a ranged read: %s", err.msg);
    /* damage on disk after a ranged read cached the object's key */
    {
        FILE *f = fopen(P("repo/data/aa/obj"), "r+b");
        CHECK(cairn_store_get_range(s, "data/aa/obj", 0, 10, &b, &err) == CAIRN_OK,
              "range before damage: %s", err.msg);
        long at = CAIRN_CRYPT_HDR + 2 * (CAIRN_CRYPT_SEG + CAIRN_CRYPT_TAG) + 5;
        int ch;
        fseek(f, at, SEEK_SET);
        ch = fgetc(f);
        fseek(f, at, SEEK_SET);
        fputc(ch ^ 0x21, f); /* always a change */
        fclose(f);
        CHECK(cairn_store_get_range(s, "data/aa/obj", 2 * CAIRN_CRYPT_SEG, 10, &b, &err) ==
                  CAIRN_CORRUPT,
              "damaged segment accepted by a ranged read");
        CHECK(cairn_store_get_range(s, "data/aa/obj", 0, 10, &b, &err) == CAIRN_OK,
              "an undamaged segment of a damaged object is refused: %s", err.msg);
        CHECK(cairn_store_get(s, "data/aa/obj", &b, n, &err) == CAIRN_CORRUPT,
              "damaged object accepted by get");
        /* a size no plaintext seals to: 10 bytes after the last full segment */
        CHECK(truncate(P("repo/data/aa/obj"),
                       (off_t)(CAIRN_CRYPT_HDR + 5 * (CAIRN_CRYPT_SEG + CAIRN_CRYPT_TAG) + 10)) ==
                  0,
              "truncate");
        CHECK(cairn_store_stat(s, "data/aa/obj", &sz, &err) == CAIRN_CORRUPT,
              "impossible size accepted by stat");
    }
    CHECK(cairn_store_del(s, "data/aa/obj", &err) == CAIRN_OK, "del: %s", err.msg);
    CHECK(cairn_store_get_range(s, "data/aa/obj", 0, 10, &b, &err) == CAIRN_NOTFOUND,
          "deleted object still readable (stale cache)");
    cairn_store_free(raw);
    cairn_store_free(s);
    cairn_buf_free(&b);
    free(plain);
}

/* ---- key files and passwords ---- */

static void test_keyfiles(void)
{
    struct cairn_master m, got;
    struct cairn_keyfile k;
    char *json = NULL, id[CAIRN_KEY_ID_HEX + 1];
    cairn_buf pw = CAIRN_BUF_INIT;
    cairn_err err;
    master(&m, 3);
    CHECK(cairn_keyfile_make(&m, (const uint8_t *)"hunter2", 7, 10, &json, id, &err) == CAIRN_OK,
          "make: %s", err.msg);
    if (!json)
        return;
    CHECK(!strstr(json, "hunter2"), "password in the key file");
    CHECK(cairn_keyfile_parse((const uint8_t *)json, strlen(json), &k, &err) == CAIRN_OK,
          "parse: %s", err.msg);
    CHECK(strcmp(k.id, id) == 0 && k.n_log2 == 10 && k.r == 8 && k.p == 1, "parsed fields");
    CHECK(cairn_keyfile_unlock(&k, (const uint8_t *)"hunter2", 7, &got, &err) == CAIRN_OK &&
              memcmp(&got, &m, sizeof m) == 0,
          "unlock: %s", err.msg);
    CHECK(cairn_keyfile_unlock(&k, (const uint8_t *)"hunter3", 7, &got, &err) == CAIRN_FATAL &&
              strstr(err.msg, "wrong password"),
          "wrong password accepted: %s", err.msg);
    k.sealed[5] ^= 1;
    CHECK(cairn_keyfile_unlock(&k, (const uint8_t *)"hunter2", 7, &got, &err) != CAIRN_OK,
          "tampered master accepted");
    k.sealed[5] ^= 1;
    k.id[0] = k.id[0] == '0' ? '1' : '0'; /* the id is bound */
    CHECK(cairn_keyfile_unlock(&k, (const uint8_t *)"hunter2", 7, &got, &err) != CAIRN_OK,
          "key with another id accepted");
    {
        static const char *const bad[] = {
            "", "[]", "{}", "{\"version\":2}", "nonsense",
            "{\"version\":1,\"id\":\"0123456789abcdef\"}",
        };
        size_t i;
        for (i = 0; i < sizeof bad / sizeof *bad; i++)
            CHECK(cairn_keyfile_parse((const uint8_t *)bad[i], strlen(bad[i]), &k, &err) ==
                      CAIRN_CORRUPT,
                  "bad key file %zu accepted", i);
    }
    {
        /* each field damaged in turn */
        static const char *const fields[] = {"\"n_log2\": 10", "\"r\": 8", "\"p\": 1",
                                             "\"scrypt\"", "\"aes-256-gcm\"", "\"version\": 1"};
        static const char *const repl[] = {"\"n_log2\": 30", "\"r\": 0", "\"p\": 99",
                                           "\"bcrypt\"", "\"aes-128-gcm\"", "\"version\": 7"};
        size_t i;
        for (i = 0; i < sizeof fields / sizeof *fields; i++) {
            char *copy = strdup(json), *at = strstr(copy, fields[i]);
            cairn_buf t = CAIRN_BUF_INIT;
            CHECK(at != NULL, "field %s not in the key file", fields[i]);
            if (at) {
                cairn_buf_append(&t, copy, (size_t)(at - copy));
                cairn_buf_append(&t, repl[i], strlen(repl[i]));
                cairn_buf_append(&t, at + strlen(fields[i]), strlen(at + strlen(fields[i])));
                CHECK(cairn_keyfile_parse(t.data, t.len, &k, &err) == CAIRN_CORRUPT,
                      "key file with %s accepted", repl[i]);
            }
            cairn_buf_free(&t);
            free(copy);
        }
    }
    free(json);
    /* password files */
    write_file(P("pw1"), "secret\n", 7);
    CHECK(cairn_password_read(P("pw1"), &pw, &err) == CAIRN_OK && pw.len == 6 &&
              memcmp(pw.data, "secret", 6) == 0,
          "password with newline: %s", err.msg);
    cairn_password_free(&pw);
    write_file(P("pw2"), "secret\r\n", 8);
    CHECK(cairn_password_read(P("pw2"), &pw, &err) == CAIRN_OK && pw.len == 6,
          "password with CRLF");
    cairn_password_free(&pw);
    write_file(P("pw3"), "\n", 1);
    CHECK(cairn_password_read(P("pw3"), &pw, &err) != CAIRN_OK && strstr(err.msg, "empty"),
          "empty password accepted: %s", err.msg);
    {
        char big[CAIRN_PASSWORD_MAX + 10];
        memset(big, 'x', sizeof big);
        write_file(P("pw4"), big, sizeof big);
        CHECK(cairn_password_read(P("pw4"), &pw, &err) != CAIRN_OK, "huge password accepted");
    }
    CHECK(cairn_password_read(P("nope"), &pw, &err) != CAIRN_OK && strstr(err.msg, "nope"),
          "missing password file: %s", err.msg);
}

/* ---- a whole encrypted repository ---- */

static void test_repo(void)
{
    struct cairn_store_opts so;
    cairn_repo *r = NULL;
    cairn_err err;
    memset(&so, 0, sizeof so);
    write_file(P("pw"), "correct horse\n", 14);
    write_file(P("badpw"), "wrong horse\n", 12);
    char pwpath[600], badpath[600];
    snprintf(pwpath, sizeof pwpath, "%s/pw", tmpdir);
    snprintf(badpath, sizeof badpath, "%s/badpw", tmpdir);
    so.password_file = pwpath; /* P() reuses its buffers */
    setenv("CAIRN_TEST_SCRYPT_N_LOG2", "10", 1);
    unsetenv("CAIRN_PASSWORD_FILE");
    CHECK(cairn_repo_init_ex(P("erepo"), &so, 1, &err) == CAIRN_OK, "init: %s", err.msg);
    CHECK(cairn_repo_open_with(P("erepo"), P("cat.db"), &so, &r, &err) == CAIRN_OK, "open: %s",
          err.msg);
    if (r) {
        const struct cairn_repo_config *c = cairn_repo_config(r);
        static const uint8_t zero[32];
        CHECK(c->encrypted && memcmp(c->chunk_key, zero, 32) != 0 &&
                  memcmp(c->gear_key, c->chunk_key, 32) != 0,
              "keys of an encrypted repository");
        /* snapshot names are keyed: not the plain hash of the manifest */
        {
            json_t *man = json_pack("{s:s, s:s, s:I}", "tree",
                                    "00000000000000000000000000000000000000000000000000000000"
                                    "00000000",
                                    "source", "unit-test", "time_ns", (json_int_t)1);
            char id[CAIRN_HEX_LEN + 1], plainhex[CAIRN_HEX_LEN + 1], *text;
            cairn_id plain_id;
            cairn_buf raw = CAIRN_BUF_INIT;
            CHECK(cairn_repo_put_snapshot(r, man, id, &err) == CAIRN_OK, "put snapshot: %s",
                  err.msg);
            text = json_dumps(man, JSON_INDENT(1) | JSON_SORT_KEYS);
            cairn_object_id(text, strlen(text), &plain_id);
            cairn_id_hex(&plain_id, plainhex);
            CHECK(strcmp(id, plainhex) != 0, "snapshot named by the unkeyed hash of its content");
            {
                char path[600];
                snprintf(path, sizeof path, "%s/erepo/snapshots/%s", tmpdir, id);
                CHECK(cairn_read_file(path, &raw, 1u << 20, &err) == CAIRN_OK && raw.len > 8 &&
                          memcmp(raw.data, "CAIRNENC", 8) == 0 &&
                          !memmem(raw.data, raw.len, "unit-test", 9),
                      "snapshot object is not sealed: %s", err.msg);
            }
            cairn_buf_free(&raw);
            free(text);
            json_decref(man);
        }
        cairn_repo_free(r);
        r = NULL;
        /* a fresh catalog loads it (the keyed name verifies) */
        CHECK(cairn_repo_open_with(P("erepo"), P("cat-b.db"), &so, &r, &err) == CAIRN_OK,
              "reopen with a new catalog: %s", err.msg);
        if (r) {
            struct cairn_snapshot *sn = NULL;
            CHECK(cairn_repo_snapshot_get(r, "latest", NULL, &sn, &err) == CAIRN_OK && sn &&
                      strcmp(sn->source, "unit-test") == 0,
                  "snapshot not loaded from the store: %s", err.msg);
            cairn_snapshot_free(sn);
            cairn_repo_free(r);
            r = NULL;
        }
    }
    CHECK(cairn_repo_open_with(P("erepo"), P("cat2.db"), NULL, &r, &err) == CAIRN_FATAL &&
              strstr(err.msg, "password"),
          "opened without a password: %s", err.msg);
    so.password_file = badpath;
    CHECK(cairn_repo_open_with(P("erepo"), P("cat2.db"), &so, &r, &err) == CAIRN_FATAL &&
              strstr(err.msg, "wrong password or not a key of this repository"),
          "opened with a wrong password: %s", err.msg);
    CHECK(access(P("cat2.db"), F_OK) != 0, "a wrong password created a catalog");
    cairn_repo_free(r);
    /* an unencrypted repository refuses a password file (downgrade) */
    CHECK(cairn_repo_init(P("prepo"), &err) == CAIRN_OK, "init plain: %s", err.msg);
    so.password_file = pwpath;
    r = NULL;
    CHECK(cairn_repo_open_with(P("prepo"), P("cat3.db"), &so, &r, &err) == CAIRN_FATAL &&
              strstr(err.msg, "not encrypted"),
          "plain repository opened with a password file: %s", err.msg);
    cairn_repo_free(r);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    have_tmpdir = 1;
    test_sizes();
    test_envelope();
    test_store();
    test_keyfiles();
    test_repo();
    cleanup();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all crypto checks passed\n");
    return 0;
}

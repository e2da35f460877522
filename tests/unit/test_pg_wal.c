/* tests/unit/test_pg_wal.c — PostgreSQL WAL helpers: file-name parsing,
 * segment numbers and names, LSN text, timeline history files, the archived
 * object format (round trip, damage detection, header-only reads), segment
 * scanning on a synthetic segment (long header checks, records spanning
 * pages, commit times, restore points, a continuation record at the start),
 * and the catalog's wal_segments rows. Exit 0 when every check passes. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "../../agent/pg.h"
#include "../../restore/pitr_pg.h"

#include "check.h"

static void test_names(void)
{
    struct cairn_pg_walname w;
    char n[25];
    CHECK(cairn_pg_walname_parse("000000010000000A000000FE", &w) == 0 &&
              w.kind == CAIRN_PG_SEGMENT && w.tli == 1 && w.log == 10 && w.seg == 0xFE,
          "segment name");
    CHECK(cairn_pg_walname_parse("000000020000000000000003.partial", &w) == 0 &&
              w.kind == CAIRN_PG_PARTIAL && w.tli == 2 && w.seg == 3,
          "partial name");
    CHECK(cairn_pg_walname_parse("0000000A.history", &w) == 0 && w.kind == CAIRN_PG_HISTORY &&
              w.tli == 10,
          "history name");
    CHECK(cairn_pg_walname_parse("000000010000000000000002.00000028.backup", &w) == 0 &&
              w.kind == CAIRN_PG_BACKUP && w.offset == 0x28 && w.seg == 2,
          "backup name");
    CHECK(cairn_pg_walname_parse("000000010000000a000000fe", &w) != 0, "lower case refused");
    CHECK(cairn_pg_walname_parse("00000001000000000000000", &w) != 0, "23 chars refused");
    CHECK(cairn_pg_walname_parse("0000000100000000000000001", &w) != 0, "25 chars refused");
    CHECK(cairn_pg_walname_parse("000000000000000000000001", &w) != 0, "timeline 0 refused");
    CHECK(cairn_pg_walname_parse("RECOVERYXLOG", &w) != 0, "RECOVERYXLOG refused");
    CHECK(cairn_pg_walname_parse("../000000010000000000000001", &w) != 0, "paths refused");
    CHECK(cairn_pg_walname_parse("000000010000000000000001.partial.x", &w) != 0,
          "trailing junk refused");
    CHECK(cairn_pg_walname_parse("", &w) != 0 && cairn_pg_walname_parse(NULL, &w) != 0,
          "empty refused");

    /* 16 MiB: 256 segments per xlogid; 1 GiB: 4; 1 MiB: 4096 */
    CHECK(cairn_pg_segno(1, 2, 16u << 20) == 258, "segno 16 MiB");
    CHECK(cairn_pg_segno(3, 1, 1u << 30) == 13, "segno 1 GiB");
    cairn_pg_segname(1, 255, 16u << 20, n);
    CHECK(strcmp(n, "0000000100000000000000FF") == 0, "segname %s", n);
    cairn_pg_segname(3, 256, 16u << 20, n);
    CHECK(strcmp(n, "000000030000000100000000") == 0, "segname wraps to next xlogid: %s", n);
    cairn_pg_segname(2, 4097, 1u << 20, n);
    CHECK(strcmp(n, "000000020000000100000001") == 0, "segname 1 MiB: %s", n);
    CHECK(cairn_pg_segsize_valid(16u << 20) && cairn_pg_segsize_valid(1u << 20) &&
              cairn_pg_segsize_valid(1u << 30),
          "valid segment sizes");
    CHECK(!cairn_pg_segsize_valid(3u << 20) && !cairn_pg_segsize_valid(512 * 1024) &&
              !cairn_pg_segsize_valid(2ull << 30),
          "invalid segment sizes");
}

static void test_lsn(void)
{
    uint64_t l;
    char s[24];
    CHECK(cairn_pg_lsn_parse("16/B374D848", &l) == 0 && l == 0x16B374D848ull, "parse");
    CHECK(cairn_pg_lsn_parse("0/0", &l) == 0 && l == 0, "zero");
    CHECK(cairn_pg_lsn_parse("ffffffff/ffffffff", &l) == 0 && l == UINT64_MAX, "max, lower case");
    CHECK(cairn_pg_lsn_parse("1/", &l) != 0, "missing low half");
    CHECK(cairn_pg_lsn_parse("/1", &l) != 0, "missing high half");
    CHECK(cairn_pg_lsn_parse("100000000/0", &l) != 0, "high half overflow");
    CHECK(cairn_pg_lsn_parse("1/2x", &l) != 0, "junk");
    CHECK(cairn_pg_lsn_parse("-1/2", &l) != 0, "sign");
    cairn_pg_lsn_format(0x16B374D848ull, s, sizeof s);
    CHECK(strcmp(s, "16/B374D848") == 0, "format %s", s);
    cairn_pg_lsn_format(0x3000000, s, sizeof s);
    CHECK(strcmp(s, "0/3000000") == 0, "format %s", s);
    /* LSN -> segment: 0/3000060 is in segment 3 at 16 MiB */
    CHECK(0x3000060ull / (16u << 20) == 3, "lsn to segno");
}

static void test_history(void)
{
    struct cairn_pg_tlentry e[8];
    size_t n = 0;
    cairn_err err;
    const char *h = "1\t0/3000000\tno recovery target specified\n\n"
                    "# comment\n"
                    "2\t0/5000A00\tat restore point \"rp\"\n";
    CHECK(cairn_pg_history_parse(h, strlen(h), e, 8, &n, &err) == CAIRN_OK && n == 2 &&
              e[0].tli == 1 && e[0].end == 0x3000000 && e[1].tli == 2 && e[1].end == 0x5000A00,
          "parse two entries");
    h = "2\t0/3000000\tx\n1\t0/5000000\ty\n";
    CHECK(cairn_pg_history_parse(h, strlen(h), e, 8, &n, &err) == CAIRN_CORRUPT,
          "out of order refused");
    h = "x\t0/3000000\n";
    CHECK(cairn_pg_history_parse(h, strlen(h), e, 8, &n, &err) == CAIRN_CORRUPT,
          "bad timeline refused");
    h = "1\t0/zz\n";
    CHECK(cairn_pg_history_parse(h, strlen(h), e, 8, &n, &err) == CAIRN_CORRUPT,
          "bad LSN refused");
    h = "1\t0/1\n2\t0/2\n3\t0/3\n";
    CHECK(cairn_pg_history_parse(h, strlen(h), e, 2, &n, &err) == CAIRN_CORRUPT,
          "too many entries refused");
    CHECK(cairn_pg_history_parse("", 0, e, 8, &n, &err) == CAIRN_OK && n == 0, "empty");
}

static void test_object(void)
{
    struct cairn_pg_walmeta m, back;
    cairn_buf obj = CAIRN_BUF_INIT, raw = CAIRN_BUF_INIT;
    cairn_err err;
    size_t n = 1 << 20, zl, off;
    uint8_t *data = malloc(n), *z = malloc(ZSTD_compressBound(n));
    char key[CAIRN_WAL_KEY_MAX];
    size_t i;
    for (i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 7 + (i >> 9));
    zl = ZSTD_compress(z, ZSTD_compressBound(n), data, n, 1);
    memset(&m, 0, sizeof m);
    strcpy(m.name, "000000010000000000000001");
    strcpy(m.system_id, "7301234567890123456");
    m.timeline = 1;
    m.kind = CAIRN_PG_SEGMENT;
    m.size = n;
    m.start_lsn = 0x1000000;
    m.end_lsn = 0x2000000;
    m.segment_size = 16u << 20;
    m.has_commit = 1;
    m.min_commit_ns = 1795000000000000000LL;
    m.max_commit_ns = 1795000001000000000LL;
    cairn_pg_sha256(data, n, m.sha256);
    CHECK(cairn_pg_walobj_build(&m, "{\"restore_points\":[{\"name\":\"a\"}]}", z, zl, &obj,
                                &err) == CAIRN_OK,
          "build: %s", err.msg);
    CHECK(cairn_pg_walobj_decode(obj.data, obj.len, "k", &back, &raw, &err) == CAIRN_OK,
          "decode: %s", err.msg);
    CHECK(raw.len == n && memcmp(raw.data, data, n) == 0, "round trip content");
    CHECK(strcmp(back.name, m.name) == 0 && strcmp(back.system_id, m.system_id) == 0 &&
              back.start_lsn == m.start_lsn && back.end_lsn == m.end_lsn &&
              back.has_commit && back.min_commit_ns == m.min_commit_ns &&
              back.max_commit_ns == m.max_commit_ns && back.n_restore_points == 1 &&
              back.segment_size == m.segment_size,
          "round trip metadata");
    /* header-only read, as catalog sync does */
    CHECK(cairn_pg_walobj_head(obj.data, obj.len < 4096 ? obj.len : 4096, &back, &off, &err) ==
                  CAIRN_OK &&
              off < 4096,
          "head from the first 4 KiB: %s", err.msg);
    /* damage anywhere in the payload is caught */
    obj.data[obj.len / 2] ^= 0x40;
    CHECK(cairn_pg_walobj_decode(obj.data, obj.len, "k", &back, &raw, &err) == CAIRN_CORRUPT &&
              raw.len == 0,
          "damaged payload");
    obj.data[obj.len / 2] ^= 0x40;
    /* a valid frame of other content: only SHA-256 can tell */
    {
        cairn_buf other = CAIRN_BUF_INIT;
        data[100] ^= 1;
        zl = ZSTD_compress(z, ZSTD_compressBound(n), data, n, 1);
        CHECK(cairn_pg_walobj_build(&m, NULL, z, zl, &other, &err) == CAIRN_OK, "build 2");
        CHECK(cairn_pg_walobj_decode(other.data, other.len, "k", &back, &raw, &err) ==
                      CAIRN_CORRUPT &&
                  strstr(err.msg, "SHA-256"),
              "swapped content caught by SHA-256: %s", err.msg);
        cairn_buf_free(&other);
    }
    obj.data[3] = 'X';
    CHECK(cairn_pg_walobj_decode(obj.data, obj.len, "k", &back, &raw, &err) == CAIRN_CORRUPT,
          "bad magic");
    CHECK(cairn_pg_walobj_key("42", "000000030000000000000001", key, sizeof key) == 0 &&
              strcmp(key, "wal/42/00000003/000000030000000000000001") == 0,
          "object key %s", key);
    CHECK(cairn_pg_walobj_key("42", "00000003.history", key, sizeof key) == 0 &&
              strcmp(key, "wal/42/00000003/00000003.history") == 0,
          "history key %s", key);
    CHECK(cairn_pg_walobj_key("42", "../x", key, sizeof key) != 0, "bad name has no key");
    cairn_buf_free(&obj);
    cairn_buf_free(&raw);
    free(data);
    free(z);
}

/* ---- a synthetic segment ---- */

#define BLCK 8192
static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

struct seg {
    uint8_t *d;
    size_t len;
    uint64_t start;
    uint64_t l;  /* logical write position */
    uint64_t last;
};

static size_t seg_phys(uint64_t l)
{
    size_t p0 = BLCK - 40, pn = BLCK - 24;
    if (l < p0)
        return 40 + l;
    l -= p0;
    return (1 + l / pn) * BLCK + 24 + l % pn;
}

static void seg_write(struct seg *s, const uint8_t *b, size_t n)
{
    while (n--)
        s->d[seg_phys(s->l++)] = *b++;
}

/* appends a record with only main data; returns its LSN */
static uint64_t seg_record(struct seg *s, uint8_t rmid, uint8_t info, const uint8_t *main,
                           uint32_t mlen, uint32_t pad)
{
    uint8_t h[24 + 5];
    uint32_t hl, tot;
    uint64_t lsn = s->start + seg_phys(s->l);
    uint8_t *filler = calloc(1, pad + 1);
    hl = mlen < 256 ? 2 : 5;
    tot = 24 + hl + pad + mlen;
    memset(h, 0, sizeof h);
    put32(h, tot);
    put64(h + 8, s->last);
    h[16] = info;
    h[17] = rmid;
    if (pad) { /* pretend filler is an origin header chain: use TOPLEVEL_XID ids */
        uint32_t i;
        for (i = 0; i + 5 <= pad; i += 5)
            filler[i] = 252;
        pad = i;
        tot = 24 + hl + pad + mlen;
        put32(h, tot);
    }
    seg_write(s, h, 24);
    seg_write(s, filler, pad);
    if (hl == 2) {
        uint8_t x[2] = {255, (uint8_t)mlen};
        seg_write(s, x, 2);
    } else {
        uint8_t x[5] = {254};
        put32(x + 1, mlen);
        seg_write(s, x, 5);
    }
    seg_write(s, main, mlen);
    s->l = (s->l + 7) & ~7ull;
    s->last = lsn;
    free(filler);
    return lsn;
}

static void test_scan(void)
{
    struct seg s;
    struct cairn_pg_segscan sc;
    cairn_err err;
    size_t segsize = 1u << 20, p;
    uint64_t us1 = 848000000000000LL, us2 = us1 + 5000000, lsn_rp;
    uint8_t commit[40], rp[8 + 64];
    int i;
    memset(&s, 0, sizeof s);
    s.len = segsize;
    s.d = calloc(1, segsize);
    s.start = 5 * (uint64_t)segsize;
    s.last = 0xDEAD;
    /* page headers on the first 40 pages; the rest is "not yet written" */
    for (p = 0; p < 40; p++) {
        uint8_t *h = s.d + p * BLCK;
        put16(h, 0xD110);
        put16(h + 2, p == 0 ? 0x0003 : 0); /* long header, first is contrecord */
        put32(h + 4, 1);
        put64(h + 8, s.start + p * BLCK);
        if (p == 0) {
            put32(h + 20, 100); /* 100 bytes of a record from segment 4 */
            put64(h + 24, 7301234567890123456ull);
            put32(h + 32, (uint32_t)segsize);
            put32(h + 36, BLCK);
        }
    }
    s.l = 104; /* MAXALIGN(100) */
    {
        uint8_t junk[100];
        memset(junk, 0x77, sizeof junk);
        s.l = 0;
        seg_write(&s, junk, 100);
        s.l = 104;
    }
    memset(commit, 0, sizeof commit);
    put64(commit, us1);
    seg_record(&s, 1, 0x00, commit, 16, 0); /* commit */
    for (i = 0; i < 30; i++) {                /* filler records, some crossing pages */
        static uint8_t big[3000];
        seg_record(&s, 10, 0x00, big, sizeof big, 0);
    }
    memset(rp, 0, sizeof rp);
    put64(rp, us1 + 1000);
    strcpy((char *)rp + 8, "before-upgrade");
    lsn_rp = seg_record(&s, 0, 0x70, rp, sizeof rp, 0);
    /* a commit whose headers straddle a page boundary */
    while (seg_phys(s.l) % BLCK < BLCK - 16)
        seg_record(&s, 10, 0, commit, 8, 0);
    put64(commit, us2);
    seg_record(&s, 1, 0x30, commit, 24, 10); /* commit prepared, with extra headers */
    put64(commit, us1 - 7);
    seg_record(&s, 1, 0x20, commit, 16, 0); /* abort: earlier time */

    CHECK(cairn_pg_segment_scan(s.d, s.len, s.start, &sc, &err) == CAIRN_OK, "scan: %s",
          err.msg);
    CHECK(sc.sysid == 7301234567890123456ull && sc.segment_size == segsize &&
              sc.block_size == BLCK && sc.page_magic == 0xD110,
          "header fields");
    CHECK(sc.has_commit, "commits found");
    CHECK(sc.min_commit_ns == (int64_t)(us1 - 7 + 946684800000000LL) * 1000,
          "min commit %lld", (long long)sc.min_commit_ns);
    CHECK(sc.max_commit_ns == (int64_t)(us2 + 946684800000000LL) * 1000,
          "max commit %lld (the record across a page boundary)", (long long)sc.max_commit_ns);
    CHECK(sc.n_rp == 1 && strcmp(sc.rp[0].name, "before-upgrade") == 0 && sc.rp[0].lsn == lsn_rp,
          "restore point");
    CHECK(sc.end_lsn > lsn_rp && sc.end_lsn < s.start + 40 * BLCK, "end lsn");
    /* a record whose xl_prev does not chain ends the scan */
    {
        uint32_t before = sc.records;
        s.last = 12345;
        put64(commit, us2 + 999999);
        seg_record(&s, 1, 0, commit, 16, 0);
        CHECK(cairn_pg_segment_scan(s.d, s.len, s.start, &sc, &err) == CAIRN_OK &&
                  sc.records == before && sc.max_commit_ns == (int64_t)(us2 + 946684800000000LL) * 1000,
              "broken chain stops the scan");
    }
    /* header checks */
    CHECK(cairn_pg_segment_scan(s.d, s.len, s.start + segsize, &sc, &err) == CAIRN_CORRUPT,
          "wrong position refused");
    CHECK(cairn_pg_segment_scan(s.d, s.len / 2, s.start, &sc, &err) == CAIRN_CORRUPT,
          "wrong size refused");
    put16(s.d + 2, 0);
    CHECK(cairn_pg_segment_scan(s.d, s.len, s.start, &sc, &err) == CAIRN_CORRUPT,
          "short header refused");
    free(s.d);
}

static void test_catalog(void)
{
    cairn_catalog *cat = NULL;
    cairn_err err;
    struct cairn_walrow r, g;
    uint64_t n = 0;
    CHECK(cairn_catalog_open(":memory:", &cat, &err) == CAIRN_OK, "open: %s", err.msg);
    if (!cat)
        return;
    memset(&r, 0, sizeof r);
    strcpy(r.system_id, "42");
    r.timeline = 1;
    strcpy(r.segment, "000000010000000000000002");
    r.start_lsn = 0x2000000;
    r.end_lsn = 0x3000000;
    r.size = 16u << 20;
    strcpy(r.checksum, "sha256:00");
    strcpy(r.object_key, "wal/42/00000001/000000010000000000000002");
    CHECK(cairn_catalog_wal_put(cat, &r, &err) == CAIRN_OK, "put");
    strcpy(r.segment, "000000010000000000000001");
    r.has_commit = 1;
    r.min_commit_ns = 5;
    r.max_commit_ns = 9;
    CHECK(cairn_catalog_wal_put(cat, &r, &err) == CAIRN_OK, "put 2");
    CHECK(cairn_catalog_wal_put(cat, &r, &err) == CAIRN_OK, "put again replaces");
    CHECK(cairn_catalog_count(cat, "wal_segments", &n, &err) == CAIRN_OK && n == 2, "count %llu",
          (unsigned long long)n);
    CHECK(cairn_catalog_wal_get(cat, "42", 1, "000000010000000000000001", &g, &err) ==
                  CAIRN_OK &&
              g.has_commit && g.min_commit_ns == 5 && g.end_lsn == 0x3000000,
          "get");
    CHECK(cairn_catalog_wal_get(cat, "42", 2, "000000010000000000000001", &g, &err) ==
              CAIRN_NOTFOUND,
          "get other timeline");
    CHECK(cairn_catalog_wal_get(cat, "42", 1, "000000010000000000000002", &g, &err) ==
                  CAIRN_OK &&
              !g.has_commit,
          "no commit range is NULL");
    CHECK(cairn_catalog_wal_remove(cat, "42", 1, "000000010000000000000002", &err) == CAIRN_OK &&
              cairn_catalog_count(cat, "wal_segments", &n, &err) == CAIRN_OK && n == 1,
          "remove");
    CHECK(cairn_catalog_clear(cat, &err) == CAIRN_OK &&
              cairn_catalog_count(cat, "wal_segments", &n, &err) == CAIRN_OK && n == 0,
          "clear empties wal_segments");
    cairn_catalog_free(cat);
}

int main(void)
{
    test_names();
    test_lsn();
    test_history();
    test_object();
    test_scan();
    test_catalog();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("test_pg_wal: all checks passed\n");
    return 0;
}

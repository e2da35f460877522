/* tests/unit/test_mysql_binlog.c — MariaDB/MySQL binlog helpers: CRC-32,
 * file-name parsing, the event scanner on a crafted binlog (Format
 * description with CRC32, Gtid_list, GTID events in two domains, a MySQL GTID
 * event, Rotate at the end; damaged, truncated and foreign files refused;
 * a server without checksums), the archived object format (round trip,
 * header-only reads, damage detection) and the catalog's binlogs rows.
 * Exit 0 when every check passes. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "../../agent/mysql.h"

#include "check.h"

/* ---- building a binlog ---- */

struct bl {
    uint8_t d[8192];
    size_t len;
    int crc;
};

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)v);
    put16(p + 2, (uint16_t)(v >> 16));
}
static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* Appends an event: header, body, and the CRC32 when b->crc. */
static void event(struct bl *b, uint8_t type, uint32_t ts, uint32_t server, const void *body,
                  size_t blen, uint16_t flags)
{
    uint8_t *e = b->d + b->len;
    size_t len = 19 + blen + (b->crc ? 4 : 0);
    put32(e, ts);
    e[4] = type;
    put32(e + 5, server);
    put32(e + 9, (uint32_t)len);
    put32(e + 13, (uint32_t)(b->len + len));
    put16(e + 17, flags);
    memcpy(e + 19, body, blen);
    if (b->crc)
        put32(e + 19 + blen, cairn_my_crc32(0, e, len - 4));
    b->len += len;
}

static void make_binlog(struct bl *b, int crc, int gtids)
{
    uint8_t body[256];
    size_t n;
    memset(b, 0, sizeof *b);
    memcpy(b->d, "\xfe" "bin", 4);
    b->len = 4;
    /* Format_description: version 4, server version, create time, header
     * length 19, post-header lengths, checksum alg (+ CRC added by event()) */
    memset(body, 0, sizeof body);
    put16(body, 4);
    strcpy((char *)body + 2, "10.11.19-MariaDB-log");
    put32(body + 52, 1700000000);
    body[56] = 19;
    memset(body + 57, 8, 40); /* post-header lengths (not looked at) */
    body[97] = crc ? 1 : 0;
    b->crc = crc;
    if (crc) {
        event(b, CAIRN_MY_EV_FORMAT_DESCRIPTION, 1700000000, 7, body, 98, 0);
    } else { /* alg OFF: 4 zero bytes where the checksum would be */
        memset(body + 98, 0, 4);
        event(b, CAIRN_MY_EV_FORMAT_DESCRIPTION, 1700000000, 7, body, 102, 0);
    }
    if (gtids) {
        /* Gtid_list: 2 entries (0-7-10, 1-9-4) */
        memset(body, 0, sizeof body);
        put32(body, 2);
        put32(body + 4, 0), put32(body + 8, 7), put64(body + 12, 10);
        put32(body + 20, 1), put32(body + 24, 9), put64(body + 28, 4);
        event(b, CAIRN_MY_EV_GTID_LIST, 1700000000, 7, body, 36, 0);
        /* GTIDs 0-7-11, 1-7-5, 0-7-12 with a row-ish event and Xid after each */
        {
            static const struct {
                uint32_t dom;
                uint64_t seq;
                uint32_t ts;
            } g[] = {{0, 11, 1700000010}, {1, 5, 1700000020}, {0, 12, 1700000030}};
            size_t i;
            for (i = 0; i < 3; i++) {
                memset(body, 0, sizeof body);
                put64(body, g[i].seq);
                put32(body + 8, g[i].dom);
                body[12] = 1;
                event(b, CAIRN_MY_EV_GTID, g[i].ts, 7, body, 19, 0);
                memset(body, 0xAB, 40);
                event(b, 30 /* WRITE_ROWS */, g[i].ts, 7, body, 40, 0);
                put64(body, 100 + i);
                event(b, CAIRN_MY_EV_XID, g[i].ts, 7, body, 8, 0);
            }
        }
    }
    /* MySQL GTID event: flags, SID, GNO */
    memset(body, 0, sizeof body);
    body[0] = 1;
    for (n = 0; n < 16; n++)
        body[1 + n] = (uint8_t)(0x10 + n);
    put64(body + 17, 42);
    event(b, CAIRN_MY_EV_MYSQL_GTID, 1700000040, 7, body, 25, 0);
    /* Rotate to the next file */
    memset(body, 0, sizeof body);
    put64(body, 4);
    memcpy(body + 8, "binlog.000008", 13);
    event(b, CAIRN_MY_EV_ROTATE, 1700000050, 7, body, 21, 0);
}

/* ---- tests ---- */

static void test_crc_names(void)
{
    char base[64];
    uint64_t seq;
    int w;
    CHECK(cairn_my_crc32(0, "123456789", 9) == 0xCBF43926u, "crc32 check value");
    CHECK(cairn_my_crc32(cairn_my_crc32(0, "1234", 4), "56789", 5) == 0xCBF43926u,
          "crc32 in pieces");
    CHECK(cairn_my_binlog_name_parse("binlog.000042", base, sizeof base, &seq, &w) == 0 &&
              strcmp(base, "binlog") == 0 && seq == 42 && w == 6,
          "binlog.000042");
    CHECK(cairn_my_binlog_name_parse("my.host-bin.1234567", base, sizeof base, &seq, &w) == 0 &&
              strcmp(base, "my.host-bin") == 0 && seq == 1234567 && w == 7,
          "dotted base, 7 digits");
    CHECK(cairn_my_binlog_name_parse("binlog.index", base, sizeof base, &seq, &w) != 0,
          "index refused");
    CHECK(cairn_my_binlog_name_parse("binlog.", base, sizeof base, &seq, &w) != 0,
          "no number refused");
    CHECK(cairn_my_binlog_name_parse(".000001", base, sizeof base, &seq, &w) != 0,
          "no base refused");
    CHECK(cairn_my_binlog_name_parse("a/binlog.000001", base, sizeof base, &seq, &w) != 0,
          "paths refused");
}

static void test_scan(void)
{
    struct bl *b = malloc(sizeof *b);
    struct cairn_my_binscan *s = malloc(sizeof *s);
    cairn_err err;
    char t[512];
    uint8_t save;

    make_binlog(b, 1, 1);
    CHECK(cairn_my_binlog_scan(b->d, b->len, s, &err) == CAIRN_OK, "scan: %s", err.msg);
    CHECK(s->crc32 == 1 && s->server_id == 7 &&
              strcmp(s->server_version, "10.11.19-MariaDB-log") == 0,
          "format description (server %u, '%s')", s->server_id, s->server_version);
    CHECK(s->start_pos == 4 && s->end_pos == b->len, "positions %llu..%llu",
          (unsigned long long)s->start_pos, (unsigned long long)s->end_pos);
    CHECK(s->events == 1 + 1 + 9 + 1 + 1, "events %llu", (unsigned long long)s->events);
    CHECK(s->has_times && s->first_event_ns == 1700000000LL * 1000000000 &&
              s->last_event_ns == 1700000050LL * 1000000000,
          "times");
    CHECK(s->closed_by == CAIRN_MY_EV_ROTATE && strcmp(s->next_file, "binlog.000008") == 0,
          "rotate to '%s'", s->next_file);
    CHECK(s->has_gtid_list && s->n_list == 2 && s->list[1].domain == 1 &&
              s->list[1].server == 9 && s->list[1].seq == 4,
          "gtid list");
    CHECK(s->n_gtids == 3 && s->first_gtid.seq == 11 && s->last_gtid.seq == 12 &&
              s->last_gtid.server == 7 && s->n_dom == 2,
          "gtids");
    cairn_my_gtids_text(s, t, sizeof t);
    CHECK(strcmp(t, "0-7-10,1-9-4;0-7-11..0-7-12,1-7-5..1-7-5") == 0, "gtids text '%s'", t);
    CHECK(strcmp(s->mysql_first_gtid, "10111213-1415-1617-1819-1a1b1c1d1e1f:42") == 0,
          "mysql gtid '%s'", s->mysql_first_gtid);
    CHECK(!s->in_use && !s->encrypted, "flags");

    /* no checksums */
    make_binlog(b, 0, 1);
    CHECK(cairn_my_binlog_scan(b->d, b->len, s, &err) == CAIRN_OK && !s->crc32 &&
              s->n_gtids == 3 && s->end_pos == b->len,
          "no checksums: %s", err.msg);

    /* no GTIDs at all: empty parts */
    make_binlog(b, 1, 0);
    CHECK(cairn_my_binlog_scan(b->d, b->len, s, &err) == CAIRN_OK, "no gtids: %s", err.msg);
    cairn_my_gtids_text(s, t, sizeof t);
    CHECK(strcmp(t, ";") == 0, "empty gtids text '%s'", t);

    /* damage: one byte in the middle of an event fails its CRC32 */
    make_binlog(b, 1, 1);
    save = b->d[b->len / 2];
    b->d[b->len / 2] ^= 0x40;
    CHECK(cairn_my_binlog_scan(b->d, b->len, s, &err) == CAIRN_CORRUPT &&
              strstr(err.msg, "CRC32"),
          "damaged event: %s", err.msg);
    b->d[b->len / 2] = save;
    /* the Format_description's own CRC */
    b->d[30] ^= 1;
    CHECK(cairn_my_binlog_scan(b->d, b->len, s, &err) == CAIRN_CORRUPT, "damaged FDE");
    b->d[30] ^= 1;
    /* truncated: the last event cut short */
    CHECK(cairn_my_binlog_scan(b->d, b->len - 3, s, &err) == CAIRN_CORRUPT &&
              strstr(err.msg, "truncated"),
          "truncated: %s", err.msg);
    CHECK(cairn_my_binlog_scan(b->d, b->len - 40, s, &err) == CAIRN_CORRUPT,
          "truncated header");
    /* not a binlog */
    CHECK(cairn_my_binlog_scan((const uint8_t *)"hello world, not a binlog", 25, s, &err) ==
                  CAIRN_CORRUPT &&
              strstr(err.msg, "not a binlog"),
          "foreign file: %s", err.msg);
    CHECK(cairn_my_binlog_scan(b->d, 3, s, &err) == CAIRN_CORRUPT, "3 bytes");
    CHECK(cairn_my_binlog_scan(b->d, 4, s, &err) == CAIRN_CORRUPT, "magic only");
    /* a first event that is not a Format_description */
    b->d[8] = CAIRN_MY_EV_ROTATE;
    CHECK(cairn_my_binlog_scan(b->d, b->len, s, &err) == CAIRN_CORRUPT, "no FDE first");
    b->d[8] = CAIRN_MY_EV_FORMAT_DESCRIPTION;
    /* an event whose log_pos disagrees with its place (CRC fixed up) */
    make_binlog(b, 0, 0); /* no checksums: the position check must catch it */
    b->d[4 + (19 + 102) + 13] ^= 0x01; /* log_pos of the second event */
    CHECK(cairn_my_binlog_scan(b->d, b->len, s, &err) == CAIRN_CORRUPT &&
              strstr(err.msg, "ends at"),
          "bad log_pos: %s", err.msg);
    free(b);
    free(s);
}

static void test_object(void)
{
    struct bl *b = malloc(sizeof *b);
    struct cairn_my_binscan *s = malloc(sizeof *s);
    struct cairn_my_binmeta m, m2;
    struct cairn_binlogrow row;
    cairn_buf obj = CAIRN_BUF_INIT, raw = CAIRN_BUF_INIT;
    uint8_t z[16384];
    size_t zl, off;
    cairn_err err;
    char key[512];

    make_binlog(b, 1, 1);
    CHECK(cairn_my_binlog_scan(b->d, b->len, s, &err) == CAIRN_OK, "scan");
    memset(&m, 0, sizeof m);
    strcpy(m.name, "binlog.000007");
    strcpy(m.server, "7");
    m.server_id = 7;
    m.size = b->len;
    m.start_pos = 4;
    m.end_pos = b->len;
    m.has_times = 1;
    m.first_event_ns = s->first_event_ns;
    m.last_event_ns = s->last_event_ns;
    cairn_my_gtids_text(s, m.gtids, sizeof m.gtids);
    cairn_pg_sha256(b->d, b->len, m.sha256);
    zl = ZSTD_compress(z, sizeof z, b->d, b->len, 3);
    CHECK(!ZSTD_isError(zl), "compress");
    CHECK(cairn_my_binobj_key("7", "binlog.000007", key, sizeof key) == 0 &&
              strcmp(key, "binlog/7/binlog.000007") == 0,
          "key %s", key);
    CHECK(cairn_my_binobj_key("7", "..x", key, sizeof key) == 0, "a name with dots is fine");
    CHECK(cairn_my_binobj_key("a/b", "binlog.1", key, sizeof key) != 0 &&
              cairn_my_binobj_key("7", "../x", key, sizeof key) != 0 &&
              cairn_my_binobj_key("7", "..", key, sizeof key) != 0 &&
              cairn_my_binobj_key("", "binlog.1", key, sizeof key) != 0,
          "bad key parts refused");
    CHECK(cairn_my_binobj_build(&m, s, z, zl, &obj, &err) == CAIRN_OK, "build: %s", err.msg);
    CHECK(memcmp(obj.data, CAIRN_MY_BINOBJ_MAGIC, strlen(CAIRN_MY_BINOBJ_MAGIC)) == 0, "magic");
    /* the header alone is enough for the metadata */
    CHECK(cairn_my_binobj_head(obj.data, obj.len < 2048 ? obj.len : 2048, &m2, &off, &err) ==
                  CAIRN_OK,
          "head: %s", err.msg);
    CHECK(strcmp(m2.name, m.name) == 0 && strcmp(m2.server, "7") == 0 && m2.size == m.size &&
              m2.end_pos == m.end_pos && m2.has_times &&
              m2.last_event_ns == m.last_event_ns && strcmp(m2.gtids, m.gtids) == 0 &&
              memcmp(m2.sha256, m.sha256, 32) == 0,
          "metadata round trip");
    CHECK(cairn_my_binobj_decode(obj.data, obj.len, "k", &m2, &raw, &err) == CAIRN_OK &&
              raw.len == b->len && memcmp(raw.data, b->d, b->len) == 0,
          "decode: %s", err.msg);
    cairn_my_binrow_from_meta(&m2, "binlog/7/binlog.000007", &row);
    CHECK(strncmp(row.checksum, "sha256:", 7) == 0 && row.size == b->len &&
              strcmp(row.server_uuid, "7") == 0,
          "row from meta");
    /* damage: in the frame, and in the metadata */
    obj.data[obj.len - 10] ^= 0x55;
    CHECK(cairn_my_binobj_decode(obj.data, obj.len, "k", &m2, &raw, &err) == CAIRN_CORRUPT &&
              raw.len == 0 && strstr(err.msg, "damaged"),
          "damaged frame: %s", err.msg);
    obj.data[obj.len - 10] ^= 0x55;
    obj.data[strlen(CAIRN_MY_BINOBJ_MAGIC)] = '#';
    CHECK(cairn_my_binobj_decode(obj.data, obj.len, "k", &m2, &raw, &err) == CAIRN_CORRUPT,
          "damaged metadata");
    CHECK(cairn_my_binobj_head((const uint8_t *)"CAIRN-WAL1\n{}\n", 14, &m2, NULL, &err) ==
              CAIRN_CORRUPT,
          "a WAL object is not a binlog object");
    /* a different SHA-256 in otherwise good metadata */
    m.sha256[0] ^= 1;
    CHECK(cairn_my_binobj_build(&m, NULL, z, zl, &obj, &err) == CAIRN_OK, "build 2");
    CHECK(cairn_my_binobj_decode(obj.data, obj.len, "k", &m2, &raw, &err) == CAIRN_CORRUPT &&
              strstr(err.msg, "SHA-256"),
          "sha mismatch: %s", err.msg);
    cairn_buf_free(&obj);
    cairn_buf_free(&raw);
    free(b);
    free(s);
}

static int count_row(void *arg, const struct cairn_binlogrow *r)
{
    (void)r;
    (*(int *)arg)++;
    return 0;
}

static void record(void *arg, const char *msg)
{
    cairn_buf *b = arg;
    cairn_buf_appendf(b, "%s\n", msg);
}

static void test_catalog(void)
{
    char path[] = "/tmp/cairn-test-binlog-XXXXXX";
    char db[128];
    cairn_catalog *cat = NULL;
    struct cairn_binlogrow r, got;
    cairn_buf out = CAIRN_BUF_INIT;
    cairn_err err;
    uint64_t problems = 9;
    int n = 0, i;
    static const int seqs[] = {1, 2, 4, 5, 9};
    CHECK(mkdtemp(path) != NULL, "mkdtemp");
    snprintf(db, sizeof db, "%s/c.db", path);
    CHECK(cairn_catalog_open(db, &cat, &err) == CAIRN_OK, "open: %s", err.msg);
    if (!cat)
        return;
    for (i = 0; i < 5; i++) {
        memset(&r, 0, sizeof r);
        strcpy(r.server_uuid, "1");
        snprintf(r.file, sizeof r.file, "binlog.%06d", seqs[i]);
        r.start_pos = 4;
        r.end_pos = 1000 + (uint64_t)i;
        r.has_times = i != 2;
        r.first_event_ns = 10;
        r.last_event_ns = 20;
        strcpy(r.gtids, "0-1-1;0-1-2..0-1-3");
        snprintf(r.object_key, sizeof r.object_key, "binlog/1/%s", r.file);
        r.size = r.end_pos;
        strcpy(r.checksum, "sha256:00");
        CHECK(cairn_catalog_binlog_put(cat, &r, &err) == CAIRN_OK, "put: %s", err.msg);
    }
    strcpy(r.server_uuid, "2");
    strcpy(r.file, "binlog.000003");
    CHECK(cairn_catalog_binlog_put(cat, &r, &err) == CAIRN_OK, "put other server");
    CHECK(cairn_catalog_binlog_get(cat, "1", "binlog.000004", &got, &err) == CAIRN_OK &&
              got.end_pos == 1002 && !got.has_times &&
              strcmp(got.gtids, "0-1-1;0-1-2..0-1-3") == 0,
          "get: %s", err.msg);
    CHECK(cairn_catalog_binlog_get(cat, "1", "binlog.000003", &got, &err) == CAIRN_NOTFOUND,
          "missing row");
    CHECK(cairn_catalog_binlog_list(cat, "1", count_row, &n, &err) == CAIRN_OK && n == 5,
          "list one server: %d", n);
    n = 0;
    CHECK(cairn_catalog_binlog_list(cat, NULL, count_row, &n, &err) == CAIRN_OK && n == 6,
          "list all: %d", n);
    CHECK(cairn_my_binlog_verify(cat, NULL, record, NULL, &out, &problems, &err) == CAIRN_OK,
          "verify: %s", err.msg);
    CHECK(problems == 2, "two gaps, got %llu", (unsigned long long)problems);
    CHECK(strstr(cairn_buf_cstr(&out), "server 1: binlog.000003 is missing") &&
              strstr(cairn_buf_cstr(&out), "binlog.000006 is missing") &&
              strstr(cairn_buf_cstr(&out), "binlog.000008 is missing") &&
              !strstr(cairn_buf_cstr(&out), "server 2"),
          "gap messages:\n%s", cairn_buf_cstr(&out));
    CHECK(cairn_catalog_binlog_remove(cat, "1", "binlog.000004", &err) == CAIRN_OK, "remove");
    CHECK(cairn_catalog_binlog_get(cat, "1", "binlog.000004", &got, &err) == CAIRN_NOTFOUND,
          "removed");
    cairn_buf_free(&out);
    cairn_catalog_free(cat);
    unlink(db);
    {
        char p2[160];
        snprintf(p2, sizeof p2, "%s-wal", db);
        unlink(p2);
        snprintf(p2, sizeof p2, "%s-shm", db);
        unlink(p2);
    }
    rmdir(path);
}

int main(void)
{
    test_crc_names();
    test_scan();
    test_object();
    test_catalog();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("test_mysql_binlog: all checks passed\n");
    return 0;
}

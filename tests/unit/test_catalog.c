/* tests/unit/test_catalog.c — the SQLite catalog: schema, migrations, every
 * query, the consistent copy, and two processes writing one file. Prints the
 * per-operation cost of the hot paths (informational). */
#define _XOPEN_SOURCE 700
#include "../../catalog/catalog.h"

#include <errno.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/cairn-test-catalog-XXXXXX";
static pid_t main_pid;
static int failures;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);              \
            failures++;                                                                  \
            return;                                                                      \
        }                                                                                \
    } while (0)

/* Checks that a call returned `want`; prints the error message if not. */
#define CHECK_RC(call, want)                                                             \
    do {                                                                                 \
        int rc_ = (call);                                                                \
        if (rc_ != (want)) {                                                             \
            fprintf(stderr, "FAIL %s:%d: %s returned %d, want %d (%s)\n", __FILE__,      \
                    __LINE__, #call, rc_, (want), err.msg);                              \
            failures++;                                                                  \
            return;                                                                      \
        }                                                                                \
    } while (0)

#define CHECK_OK(call) CHECK_RC(call, CAIRN_OK)

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void cleanup(void)
{
    if (getpid() == main_pid)
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *path_in(const char *name)
{
    static char buf[8][512];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

static void make_id(cairn_id *id, unsigned seed)
{
    unsigned i;
    for (i = 0; i < CAIRN_ID_LEN; i++)
        id->b[i] = (uint8_t)((seed * 2654435761u) >> (i % 4 * 8)) ^ (uint8_t)i;
    memcpy(id->b, &seed, sizeof seed);
}

static void make_snap(struct cairn_snaprow *r, const char *id, int64_t t, const char *source)
{
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", id);
    r->time_ns = t;
    r->source = (char *)source;
    r->hostname = "node-1";
    r->tags = "daily,pg";
    r->tree = "7e57";
    r->parent = "";
    r->files = 42;
    r->bytes_read = 1000;
    r->bytes_new = 100;
    r->bytes_stored = 60;
    r->total_size = 5000000000ULL;
    r->manifest = "{\"v\":1}";
}

/* 64-char ids made of a 4-char prefix repeated. */
static const char *snap_id(const char *four)
{
    static char buf[4][CAIRN_HEX_LEN + 1];
    static int next;
    char *p = buf[next++ % 4];
    int i;
    for (i = 0; i < 16; i++)
        memcpy(p + 4 * i, four, 4);
    p[CAIRN_HEX_LEN] = 0;
    return p;
}

static int file_mode(const char *p)
{
    struct stat st;
    if (stat(p, &st) != 0)
        return -1;
    return (int)(st.st_mode & 07777);
}

static int raw_int(const char *db, const char *sql, long long *out)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *s = NULL;
    int rc = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
        rc = 0;
    }
    sqlite3_finalize(s);
    sqlite3_close(h);
    return rc;
}

static int raw_text(const char *db, const char *sql, char *out, size_t n)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *s = NULL;
    int rc = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
        snprintf(out, n, "%s", (const char *)sqlite3_column_text(s, 0));
        rc = 0;
    }
    sqlite3_finalize(s);
    sqlite3_close(h);
    return rc;
}

static int raw_exec(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    int rc = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_exec(h, sql, NULL, NULL, NULL) == SQLITE_OK)
        rc = 0;
    sqlite3_close(h);
    return rc;
}

/* ---- open, migrations, errors ---- */

static void test_open(void)
{
    cairn_err err = {0, ""};
    cairn_catalog *cat = NULL;
    const char *p = path_in("deep/er/catalog.db");
    long long v = -1;
    uint64_t n;

    umask(0);
    CHECK_OK(cairn_catalog_open(p, &cat, &err));
    umask(022);
    CHECK(file_mode(p) == 0600);
    CHECK_OK(cairn_catalog_set_meta(cat, "repo_id", "r1", &err));
    CHECK(file_mode(path_in("deep/er/catalog.db-wal")) == 0600);
    cairn_catalog_free(cat);
    cat = NULL;

    CHECK(raw_int(p, "PRAGMA user_version", &v) == 0 && v == 1);
    {
        char mode[32] = "";
        CHECK(raw_text(p, "PRAGMA journal_mode", mode, sizeof mode) == 0);
        CHECK(strcmp(mode, "wal") == 0);
    }
    /* Reopening does not migrate again and keeps the data. */
    CHECK_OK(cairn_catalog_open(p, &cat, &err));
    CHECK_OK(cairn_catalog_count(cat, "meta", &n, &err));
    CHECK(n == 1);
    cairn_catalog_free(cat);
    cat = NULL;
    CHECK(raw_int(p, "PRAGMA user_version", &v) == 0 && v == 1);

    /* A schema from the future is refused, naming the file. */
    CHECK(raw_exec(p, "PRAGMA user_version = 99") == 0);
    CHECK_RC(cairn_catalog_open(p, &cat, &err), CAIRN_FAILED);
    CHECK(cat == NULL);
    CHECK(strstr(err.msg, p) != NULL && strstr(err.msg, "newer") != NULL);
    CHECK(raw_exec(p, "PRAGMA user_version = 1") == 0);

    /* Not a database: CAIRN_CORRUPT, the path and what to do. */
    {
        const char *junk = path_in("junk.db");
        FILE *f = fopen(junk, "w");
        CHECK(f != NULL);
        fputs("this is not an sqlite database, not at all, no, not even close......", f);
        fclose(f);
        CHECK_RC(cairn_catalog_open(junk, &cat, &err), CAIRN_CORRUPT);
        CHECK(strstr(err.msg, junk) != NULL && strstr(err.msg, "rebuild") != NULL);
    }

    cairn_catalog_free(NULL);
}

/* ---- meta and indexes ---- */

static int collect_str(void *arg, const char *s)
{
    char *acc = arg;
    strcat(acc, s);
    strcat(acc, ";");
    return 0;
}

static void test_meta_indexes(cairn_catalog *cat)
{
    cairn_err err = {0, ""};
    char *val = NULL, acc[256] = "";

    CHECK_RC(cairn_catalog_get_meta(cat, "nope", &val, &err), CAIRN_NOTFOUND);
    CHECK(val == NULL);
    CHECK_OK(cairn_catalog_set_meta(cat, "repo_id", "abc", &err));
    CHECK_OK(cairn_catalog_set_meta(cat, "repo_id", "def", &err));
    CHECK_OK(cairn_catalog_get_meta(cat, "repo_id", &val, &err));
    CHECK(strcmp(val, "def") == 0);
    free(val);
    val = NULL;
    CHECK_OK(cairn_catalog_set_meta(cat, "repo_id", NULL, &err));
    CHECK_RC(cairn_catalog_get_meta(cat, "repo_id", &val, &err), CAIRN_NOTFOUND);

    CHECK(cairn_catalog_has_index(cat, "i2", &err) == 0);
    CHECK_OK(cairn_catalog_add_index(cat, "i2", &err));
    CHECK_OK(cairn_catalog_add_index(cat, "i1", &err));
    CHECK_OK(cairn_catalog_add_index(cat, "i1", &err)); /* again: no-op */
    CHECK(cairn_catalog_has_index(cat, "i2", &err) == 1);
    CHECK_OK(cairn_catalog_list_indexes(cat, collect_str, acc, &err));
    CHECK(strcmp(acc, "i1;i2;") == 0);
    CHECK_OK(cairn_catalog_remove_index(cat, "i1", &err));
    CHECK_OK(cairn_catalog_remove_index(cat, "i2", &err));
    CHECK(cairn_catalog_has_index(cat, "i1", &err) == 0);
}

/* ---- packs and blobs ---- */

struct blob_seen {
    int n;
    cairn_id ids[8];
    uint64_t offsets[8];
};

static int collect_blob(void *arg, const cairn_id *blob, const struct cairn_blob_loc *loc)
{
    struct blob_seen *s = arg;
    if (s->n < 8) {
        s->ids[s->n] = *blob;
        s->offsets[s->n] = loc->offset;
    }
    s->n++;
    return 0;
}

static int count_pack(void *arg, const cairn_id *pack, uint64_t size)
{
    (void)pack;
    *(uint64_t *)arg += size;
    return 0;
}

static int stop_at_first(void *arg, const cairn_id *pack, uint64_t size)
{
    (void)arg;
    (void)pack;
    (void)size;
    return 7;
}

static void test_blobs(cairn_catalog *cat)
{
    cairn_err err = {0, ""};
    cairn_id p1, p2, p3, a, b, c, d;
    struct cairn_blob_loc loc, got;
    struct blob_seen seen;
    uint64_t n, total = 0;

    make_id(&p1, 101);
    make_id(&p2, 102);
    make_id(&p3, 103);
    make_id(&a, 1);
    make_id(&b, 2);
    make_id(&c, 3);
    make_id(&d, 4);

    CHECK_OK(cairn_catalog_begin(cat, &err));
    CHECK_RC(cairn_catalog_begin(cat, &err), CAIRN_FAILED); /* no nesting */
    CHECK_OK(cairn_catalog_add_index(cat, "idx1", &err));
    CHECK_OK(cairn_catalog_add_index(cat, "idx2", &err));
    CHECK_OK(cairn_catalog_add_index(cat, "idx3", &err));
    CHECK_OK(cairn_catalog_add_pack(cat, &p1, 1000, "idx1", &err));
    CHECK_OK(cairn_catalog_add_pack(cat, &p2, 2000, "idx2", &err));
    /* p3 is listed by two indexes */
    CHECK_OK(cairn_catalog_add_pack(cat, &p3, 3000, "idx2", &err));
    CHECK_OK(cairn_catalog_add_pack(cat, &p3, 3000, "idx3", &err));

    memset(&loc, 0, sizeof loc);
    loc.pack = p1;
    loc.type = CAIRN_BLOB_DATA;
    loc.flags = 1;
    loc.offset = 100, loc.stored_len = 10, loc.raw_len = 20;
    CHECK_OK(cairn_catalog_add_blob(cat, &a, &loc, &err));
    loc.offset = 0, loc.stored_len = 50, loc.raw_len = 70;
    CHECK_OK(cairn_catalog_add_blob(cat, &b, &loc, &err));
    loc.offset = 50, loc.stored_len = 50, loc.raw_len = 0xfffffff0u, loc.type = CAIRN_BLOB_TREE;
    CHECK_OK(cairn_catalog_add_blob(cat, &c, &loc, &err));
    /* a also in p2; d only in p3 */
    loc.pack = p2, loc.offset = 5000000000ULL, loc.stored_len = 10, loc.raw_len = 20;
    loc.type = CAIRN_BLOB_DATA;
    CHECK_OK(cairn_catalog_add_blob(cat, &a, &loc, &err));
    loc.pack = p3, loc.offset = 0;
    CHECK_OK(cairn_catalog_add_blob(cat, &d, &loc, &err));
    CHECK_OK(cairn_catalog_commit(cat, &err));
    CHECK_RC(cairn_catalog_commit(cat, &err), CAIRN_FAILED);

    CHECK_OK(cairn_catalog_count(cat, "blob_locs", &n, &err));
    CHECK(n == 5);
    CHECK_OK(cairn_catalog_count(cat, "packs", &n, &err));
    CHECK(n == 3);
    CHECK_RC(cairn_catalog_count(cat, "packs; DROP TABLE packs", &n, &err), CAIRN_FAILED);
    CHECK(strstr(err.msg, "no such table") != NULL);
    CHECK_RC(cairn_catalog_count(cat, "sqlite_master", &n, &err), CAIRN_FAILED);

    CHECK_OK(cairn_catalog_find_blob(cat, &c, &got, &err));
    CHECK(memcmp(&got.pack, &p1, sizeof p1) == 0);
    CHECK(got.offset == 50 && got.stored_len == 50 && got.raw_len == 0xfffffff0u);
    CHECK(got.type == CAIRN_BLOB_TREE && got.flags == 1);
    CHECK_OK(cairn_catalog_find_blob(cat, &a, &got, &err));
    CHECK(memcmp(&got.pack, &p1, sizeof p1) == 0 || memcmp(&got.pack, &p2, sizeof p2) == 0);
    {
        cairn_id none;
        make_id(&none, 999);
        CHECK_RC(cairn_catalog_find_blob(cat, &none, &got, &err), CAIRN_NOTFOUND);
        CHECK(strstr(err.msg, "catalog '") != NULL);
    }

    /* pack_blobs: offset order */
    memset(&seen, 0, sizeof seen);
    CHECK_OK(cairn_catalog_pack_blobs(cat, &p1, collect_blob, &seen, &err));
    CHECK(seen.n == 3);
    CHECK(memcmp(&seen.ids[0], &b, sizeof b) == 0 && seen.offsets[0] == 0);
    CHECK(memcmp(&seen.ids[1], &c, sizeof c) == 0 && seen.offsets[1] == 50);
    CHECK(memcmp(&seen.ids[2], &a, sizeof a) == 0 && seen.offsets[2] == 100);

    CHECK_OK(cairn_catalog_list_packs(cat, count_pack, &total, &err));
    CHECK(total == 6000);
    CHECK(cairn_catalog_list_packs(cat, stop_at_first, NULL, &err) == 7);

    /* removing idx1 drops p1 and its blobs; a survives through p2 */
    CHECK_OK(cairn_catalog_remove_index(cat, "idx1", &err));
    CHECK(cairn_catalog_has_index(cat, "idx1", &err) == 0);
    CHECK_RC(cairn_catalog_find_blob(cat, &b, &got, &err), CAIRN_NOTFOUND);
    CHECK_RC(cairn_catalog_find_blob(cat, &c, &got, &err), CAIRN_NOTFOUND);
    CHECK_OK(cairn_catalog_find_blob(cat, &a, &got, &err));
    CHECK(memcmp(&got.pack, &p2, sizeof p2) == 0 && got.offset == 5000000000ULL);
    memset(&seen, 0, sizeof seen);
    CHECK_OK(cairn_catalog_pack_blobs(cat, &p1, collect_blob, &seen, &err));
    CHECK(seen.n == 0);
    CHECK_OK(cairn_catalog_count(cat, "packs", &n, &err));
    CHECK(n == 2);

    /* p3 is still listed by idx3 after idx2 goes, and goes with idx3 */
    CHECK_OK(cairn_catalog_remove_index(cat, "idx2", &err));
    CHECK_RC(cairn_catalog_find_blob(cat, &a, &got, &err), CAIRN_NOTFOUND);
    CHECK_OK(cairn_catalog_find_blob(cat, &d, &got, &err));
    CHECK_OK(cairn_catalog_count(cat, "packs", &n, &err));
    CHECK(n == 1);
    CHECK_OK(cairn_catalog_remove_index(cat, "idx3", &err));
    CHECK_RC(cairn_catalog_find_blob(cat, &d, &got, &err), CAIRN_NOTFOUND);
    CHECK_OK(cairn_catalog_count(cat, "packs", &n, &err));
    CHECK(n == 0);
    CHECK_OK(cairn_catalog_count(cat, "blob_locs", &n, &err));
    CHECK(n == 0);
    CHECK_OK(cairn_catalog_count(cat, "pack_refs", &n, &err));
    CHECK(n == 0);

    /* rollback really undoes */
    CHECK_OK(cairn_catalog_begin(cat, &err));
    CHECK_OK(cairn_catalog_add_pack(cat, &p1, 1, NULL, &err));
    cairn_catalog_rollback(cat);
    CHECK_OK(cairn_catalog_count(cat, "packs", &n, &err));
    CHECK(n == 0);
}

static void test_pending(cairn_catalog *cat)
{
    cairn_err err = {0, ""};
    cairn_id x, y;
    uint64_t n;
    make_id(&x, 77);
    make_id(&y, 78);
    CHECK(cairn_catalog_pending_mark(cat, &x, &err) == 0);
    CHECK(cairn_catalog_pending_mark(cat, &x, &err) == 1);
    CHECK(cairn_catalog_pending_mark(cat, &y, &err) == 0);
    CHECK(cairn_catalog_pending_mark(cat, &x, &err) == 1);
    CHECK_OK(cairn_catalog_count(cat, "pending", &n, &err));
    CHECK(n == 2);
    CHECK_OK(cairn_catalog_pending_clear(cat, &err));
    CHECK(cairn_catalog_pending_mark(cat, &x, &err) == 0);
    /* inside a transaction too */
    CHECK_OK(cairn_catalog_begin(cat, &err));
    CHECK(cairn_catalog_pending_mark(cat, &y, &err) == 0);
    CHECK(cairn_catalog_pending_mark(cat, &y, &err) == 1);
    CHECK_OK(cairn_catalog_commit(cat, &err));
}

/* ---- snapshots ---- */

static int collect_snap(void *arg, const struct cairn_snaprow *r)
{
    char *acc = arg;
    size_t n = strlen(acc);
    memcpy(acc + n, r->id, 4);
    memcpy(acc + n + 4, ";", 2);
    return 0;
}

static int stop_snap(void *arg, const struct cairn_snaprow *r)
{
    (void)arg;
    (void)r;
    return 3;
}

static void test_snapshots(cairn_catalog *cat)
{
    cairn_err err = {0, ""};
    struct cairn_snaprow r, got;
    char acc[256];
    uint64_t n;

    make_snap(&r, snap_id("aaa1"), 300, "s1");
    CHECK_OK(cairn_catalog_add_snapshot(cat, &r, &err));
    make_snap(&r, snap_id("aaa2"), 100, "s2");
    CHECK_OK(cairn_catalog_add_snapshot(cat, &r, &err));
    make_snap(&r, snap_id("bbbb"), 200, "s1");
    CHECK_OK(cairn_catalog_add_snapshot(cat, &r, &err));
    /* same id replaces */
    r.files = 43;
    CHECK_OK(cairn_catalog_add_snapshot(cat, &r, &err));
    CHECK_OK(cairn_catalog_count(cat, "snapshots", &n, &err));
    CHECK(n == 3);
    /* ids must be hex */
    make_snap(&r, "not-hex", 1, "s1");
    CHECK_RC(cairn_catalog_add_snapshot(cat, &r, &err), CAIRN_FAILED);

    acc[0] = 0;
    CHECK_OK(cairn_catalog_list_snapshots(cat, NULL, collect_snap, acc, &err));
    CHECK(strcmp(acc, "aaa2;bbbb;aaa1;") == 0);
    acc[0] = 0;
    CHECK_OK(cairn_catalog_list_snapshots(cat, "s1", collect_snap, acc, &err));
    CHECK(strcmp(acc, "bbbb;aaa1;") == 0);
    acc[0] = 0;
    CHECK_OK(cairn_catalog_list_snapshots(cat, "nobody", collect_snap, acc, &err));
    CHECK(acc[0] == 0);
    CHECK(cairn_catalog_list_snapshots(cat, NULL, stop_snap, NULL, &err) == 3);

    CHECK_OK(cairn_catalog_get_snapshot(cat, "bb", NULL, &got, &err));
    CHECK(strcmp(got.id, snap_id("bbbb")) == 0);
    CHECK(got.time_ns == 200 && strcmp(got.source, "s1") == 0);
    CHECK(strcmp(got.hostname, "node-1") == 0 && strcmp(got.tags, "daily,pg") == 0);
    CHECK(strcmp(got.tree, "7e57") == 0 && strcmp(got.parent, "") == 0);
    CHECK(got.files == 43 && got.bytes_read == 1000 && got.bytes_new == 100);
    CHECK(got.bytes_stored == 60 && got.total_size == 5000000000ULL && got.partial == 0);
    CHECK(strcmp(got.manifest, "{\"v\":1}") == 0);
    cairn_snaprow_free(&got);
    cairn_snaprow_free(&got); /* twice is fine */

    CHECK_OK(cairn_catalog_get_snapshot(cat, "BBBB", NULL, &got, &err));
    cairn_snaprow_free(&got);
    CHECK_OK(cairn_catalog_get_snapshot(cat, snap_id("aaa1"), NULL, &got, &err));
    CHECK(got.time_ns == 300);
    cairn_snaprow_free(&got);
    CHECK_OK(cairn_catalog_get_snapshot(cat, "aaa2", NULL, &got, &err));
    CHECK(got.time_ns == 100);
    cairn_snaprow_free(&got);

    CHECK_OK(cairn_catalog_get_snapshot(cat, "latest", NULL, &got, &err));
    CHECK(strcmp(got.id, snap_id("aaa1")) == 0);
    cairn_snaprow_free(&got);
    CHECK_OK(cairn_catalog_get_snapshot(cat, "latest", "s2", &got, &err));
    CHECK(strcmp(got.id, snap_id("aaa2")) == 0);
    cairn_snaprow_free(&got);
    CHECK_RC(cairn_catalog_get_snapshot(cat, "latest", "nobody", &got, &err), CAIRN_NOTFOUND);

    CHECK_RC(cairn_catalog_get_snapshot(cat, "aaa", NULL, &got, &err), CAIRN_FAILED);
    CHECK(strcmp(err.msg, "snapshot prefix 'aaa' is ambiguous (2 matches)") == 0);
    CHECK(got.source == NULL);
    CHECK_RC(cairn_catalog_get_snapshot(cat, "a", NULL, &got, &err), CAIRN_FAILED);
    CHECK(strstr(err.msg, "ambiguous") != NULL);
    CHECK_RC(cairn_catalog_get_snapshot(cat, "cccc", NULL, &got, &err), CAIRN_NOTFOUND);
    CHECK(strcmp(err.msg, "no snapshot matches 'cccc'") == 0);
    CHECK_RC(cairn_catalog_get_snapshot(cat, "f", NULL, &got, &err), CAIRN_NOTFOUND);
    CHECK_RC(cairn_catalog_get_snapshot(cat, "xyz", NULL, &got, &err), CAIRN_FAILED);
    CHECK_RC(cairn_catalog_get_snapshot(cat, "", NULL, &got, &err), CAIRN_FAILED);
    {
        char long_spec[70];
        memset(long_spec, 'a', 65);
        long_spec[65] = 0;
        CHECK_RC(cairn_catalog_get_snapshot(cat, long_spec, NULL, &got, &err), CAIRN_FAILED);
    }

    CHECK(cairn_catalog_has_snapshot(cat, snap_id("aaa2"), &err) == 1);
    CHECK_OK(cairn_catalog_remove_snapshot(cat, snap_id("aaa2"), &err));
    CHECK(cairn_catalog_has_snapshot(cat, snap_id("aaa2"), &err) == 0);
    CHECK_OK(cairn_catalog_get_snapshot(cat, "aaa", NULL, &got, &err)); /* unique now */
    CHECK(strcmp(got.id, snap_id("aaa1")) == 0);
    cairn_snaprow_free(&got);
    make_snap(&r, snap_id("aaa2"), 100, "s2");
    CHECK_OK(cairn_catalog_add_snapshot(cat, &r, &err));
}

/* ---- jobs ---- */

static void test_jobs(cairn_catalog *cat, const char *path)
{
    cairn_err err = {0, ""};
    int64_t j1 = 0, j2 = 0;
    long long v = -1;
    char status[32] = "", sql[160];

    CHECK_OK(cairn_catalog_job_start(cat, "backup", "ns/pvc", &j1, &err));
    CHECK_OK(cairn_catalog_job_start(cat, "prune", NULL, &j2, &err));
    CHECK(j1 > 0 && j2 > j1);
    CHECK_OK(cairn_catalog_job_finish(cat, j1, "ok", NULL, snap_id("aaa1"), &err));
    CHECK_OK(cairn_catalog_job_finish(cat, j2, "failed", "store unreachable", NULL, &err));
    CHECK_RC(cairn_catalog_job_finish(cat, j2 + 100, "ok", NULL, NULL, &err), CAIRN_NOTFOUND);

    snprintf(sql, sizeof sql, "SELECT status FROM jobs WHERE id = %lld", (long long)j2);
    CHECK(raw_text(path, sql, status, sizeof status) == 0 && strcmp(status, "failed") == 0);
    snprintf(sql, sizeof sql, "SELECT finished_ns >= started_ns FROM jobs WHERE id = %lld",
             (long long)j1);
    CHECK(raw_int(path, sql, &v) == 0 && v == 1);
}

/* ---- backup_to ---- */

static int list_ids(cairn_catalog *cat, char *acc)
{
    cairn_err err = {0, ""};
    acc[0] = 0;
    return cairn_catalog_list_snapshots(cat, NULL, collect_snap, acc, &err);
}

static void test_backup_to(cairn_catalog *cat)
{
    cairn_err err = {0, ""};
    const char *dest = path_in("copy.db");
    char before[256], after[256], mode[32] = "";
    cairn_catalog *copy = NULL;
    uint64_t n;

    CHECK(list_ids(cat, before) == 0 && before[0] != 0);
    CHECK_OK(cairn_catalog_backup_to(cat, dest, &err));
    CHECK(file_mode(dest) == 0600);
    CHECK(access(path_in("copy.db-wal"), F_OK) != 0);
    CHECK(raw_text(dest, "PRAGMA journal_mode", mode, sizeof mode) == 0);
    CHECK(strcmp(mode, "delete") == 0);
    /* again, over the existing copy */
    CHECK_OK(cairn_catalog_backup_to(cat, dest, &err));

    CHECK_OK(cairn_catalog_open(dest, &copy, &err));
    CHECK(list_ids(copy, after) == 0);
    CHECK(strcmp(before, after) == 0);
    CHECK_OK(cairn_catalog_count(copy, "jobs", &n, &err));
    CHECK(n == 2);
    cairn_catalog_free(copy);

    /* refused inside a transaction */
    CHECK_OK(cairn_catalog_begin(cat, &err));
    CHECK_RC(cairn_catalog_backup_to(cat, dest, &err), CAIRN_FAILED);
    cairn_catalog_rollback(cat);

    /* a destination that cannot be written */
    CHECK(cairn_catalog_backup_to(cat, path_in("no/such/dir/copy.db"), &err) == CAIRN_FAILED);
    CHECK(strstr(err.msg, "no/such/dir") != NULL);
}

static void test_clear(cairn_catalog *cat)
{
    cairn_err err = {0, ""};
    cairn_id p;
    uint64_t n;
    int64_t j;
    make_id(&p, 5);
    CHECK_OK(cairn_catalog_add_pack(cat, &p, 10, "ix", &err));
    CHECK_OK(cairn_catalog_add_index(cat, "ix", &err));
    CHECK_OK(cairn_catalog_set_meta(cat, "repo_id", "keep", &err));
    CHECK_OK(cairn_catalog_job_start(cat, "rebuild", NULL, &j, &err));
    CHECK_OK(cairn_catalog_clear(cat, &err));
    CHECK_OK(cairn_catalog_count(cat, "packs", &n, &err));
    CHECK(n == 0);
    CHECK_OK(cairn_catalog_count(cat, "snapshots", &n, &err));
    CHECK(n == 0);
    CHECK_OK(cairn_catalog_count(cat, "indexes", &n, &err));
    CHECK(n == 0);
    CHECK_OK(cairn_catalog_count(cat, "meta", &n, &err));
    CHECK(n == 1);
    CHECK_OK(cairn_catalog_count(cat, "jobs", &n, &err));
    CHECK(n == 3);
}

/* ---- two processes ---- */

/* The child opens its own handle (never one from before fork), waits until the
 * parent holds the write lock, then writes inside its own transaction: its
 * BEGIN IMMEDIATE waits on busy_timeout until the parent commits. */
static int child_writer(const char *path, int rfd, int wfd)
{
    cairn_err err = {0, ""};
    cairn_catalog *cat = NULL;
    struct cairn_snaprow r;
    char c;
    double t0, waited;
    if (cairn_catalog_open(path, &cat, &err) != CAIRN_OK) {
        fprintf(stderr, "child: %s\n", err.msg);
        return 2;
    }
    if (write(wfd, "r", 1) != 1 || read(rfd, &c, 1) != 1)
        return 3;
    t0 = cairn_mono();
    if (cairn_catalog_begin(cat, &err) != CAIRN_OK) {
        fprintf(stderr, "child: %s\n", err.msg);
        return 4;
    }
    waited = cairn_mono() - t0;
    make_snap(&r, snap_id("c0de"), 2, "child");
    if (cairn_catalog_add_snapshot(cat, &r, &err) != CAIRN_OK ||
        cairn_catalog_commit(cat, &err) != CAIRN_OK) {
        fprintf(stderr, "child: %s\n", err.msg);
        return 5;
    }
    cairn_catalog_free(cat);
    if (write(wfd, &waited, sizeof waited) != (ssize_t)sizeof waited)
        return 6;
    return 0;
}

static void test_two_processes(void)
{
    cairn_err err = {0, ""};
    const char *path = path_in("shared/catalog.db");
    cairn_catalog *cat = NULL;
    struct cairn_snaprow r;
    int p2c[2], c2p[2], status = 0;
    double waited = 0;
    uint64_t n;
    pid_t pid;

    CHECK(pipe(p2c) == 0 && pipe(c2p) == 0);
    fflush(NULL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(child_writer(path, p2c[0], c2p[1]));

    CHECK_OK(cairn_catalog_open(path, &cat, &err));
    {
        char c = 0;
        CHECK(read(c2p[0], &c, 1) == 1 && c == 'r'); /* the child has opened */
    }
    CHECK_OK(cairn_catalog_begin(cat, &err));
    make_snap(&r, snap_id("0a0a"), 1, "parent");
    CHECK_OK(cairn_catalog_add_snapshot(cat, &r, &err));
    CHECK(write(p2c[1], "x", 1) == 1);
    {
        struct timespec ts = {0, 300 * 1000 * 1000};
        nanosleep(&ts, NULL); /* the child is now waiting for the lock */
    }
    CHECK_OK(cairn_catalog_commit(cat, &err));

    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(read(c2p[0], &waited, sizeof waited) == (ssize_t)sizeof waited);
    close(p2c[0]), close(p2c[1]), close(c2p[0]), close(c2p[1]);
    if (waited <= 0.1)
        fprintf(stderr, "waited %.3f s\n", waited);
    CHECK(waited > 0.1); /* it really waited for the parent */
    CHECK_OK(cairn_catalog_count(cat, "snapshots", &n, &err));
    CHECK(n == 2);
    CHECK(cairn_catalog_has_snapshot(cat, snap_id("c0de"), &err) == 1);
    cairn_catalog_free(cat);
}

/* Several processes creating and migrating one fresh file at once. */
static void test_concurrent_create(void)
{
    cairn_err err = {0, ""};
    const char *path = path_in("race/catalog.db");
    cairn_catalog *cat = NULL;
    pid_t pids[6];
    uint64_t n;
    int i, status;

    fflush(NULL);
    for (i = 0; i < 6; i++) {
        pids[i] = fork();
        CHECK(pids[i] >= 0);
        if (pids[i] == 0) {
            struct cairn_snaprow r;
            char id[5];
            int rc;
            snprintf(id, sizeof id, "%04x", i + 1);
            if ((rc = cairn_catalog_open(path, &cat, &err)) == CAIRN_OK &&
                (rc = cairn_catalog_begin(cat, &err)) == CAIRN_OK) {
                make_snap(&r, snap_id(id), i, "race");
                if ((rc = cairn_catalog_add_snapshot(cat, &r, &err)) == CAIRN_OK)
                    rc = cairn_catalog_commit(cat, &err);
            }
            if (rc != CAIRN_OK)
                fprintf(stderr, "child %d: %s\n", i, err.msg);
            cairn_catalog_free(cat);
            _exit(rc == CAIRN_OK ? 0 : 1);
        }
    }
    for (i = 0; i < 6; i++) {
        CHECK(waitpid(pids[i], &status, 0) == pids[i]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    CHECK_OK(cairn_catalog_open(path, &cat, &err));
    CHECK_OK(cairn_catalog_count(cat, "snapshots", &n, &err));
    cairn_catalog_free(cat);
    CHECK(n == 6);
}

/* ---- timings (informational) ---- */

static void bench(void)
{
    cairn_err err = {0, ""};
    enum { N = 100000 };
    cairn_catalog *cat = NULL;
    cairn_id *ids = malloc(N * sizeof *ids), pack;
    struct cairn_blob_loc loc;
    double t0, t_add, t_find, t_find_miss, t_pending;
    int i, misses = 0;

    CHECK(ids != NULL);
    for (i = 0; i < N; i++)
        cairn_random(ids[i].b, CAIRN_ID_LEN);
    CHECK_OK(cairn_catalog_open(path_in("bench/catalog.db"), &cat, &err));
    memset(&loc, 0, sizeof loc);
    cairn_random(pack.b, CAIRN_ID_LEN);

    t0 = cairn_mono();
    CHECK_OK(cairn_catalog_begin(cat, &err));
    for (i = 0; i < N; i++) {
        if (i % 1000 == 0)
            cairn_random(loc.pack.b, CAIRN_ID_LEN);
        loc.offset = (uint64_t)(i % 1000) * 16384;
        loc.stored_len = 16000;
        loc.raw_len = 32768;
        CHECK_OK(cairn_catalog_add_blob(cat, &ids[i], &loc, &err));
    }
    CHECK_OK(cairn_catalog_commit(cat, &err));
    t_add = cairn_mono() - t0;

    t0 = cairn_mono();
    for (i = 0; i < N; i++)
        if (cairn_catalog_find_blob(cat, &ids[(i * 7919) % N], &loc, &err) != CAIRN_OK)
            misses++;
    t_find = cairn_mono() - t0;
    CHECK(misses == 0);

    t0 = cairn_mono();
    for (i = 0; i < N; i++) {
        cairn_id x = ids[i];
        x.b[0] ^= 0x5a;
        if (cairn_catalog_find_blob(cat, &x, &loc, &err) == CAIRN_NOTFOUND)
            misses++;
    }
    t_find_miss = cairn_mono() - t0;

    t0 = cairn_mono();
    for (i = 0; i < N; i++)
        if (cairn_catalog_pending_mark(cat, &ids[i], &err) != 0)
            misses = -1;
    t_pending = cairn_mono() - t0;
    CHECK(misses == N);

    printf("catalog timings (%d ops each):\n", N);
    printf("  add_blob (one transaction): %.2f us/op\n", t_add * 1e6 / N);
    printf("  find_blob (hit):            %.2f us/op\n", t_find * 1e6 / N);
    printf("  find_blob (miss):           %.2f us/op\n", t_find_miss * 1e6 / N);
    printf("  pending_mark (new):         %.2f us/op\n", t_pending * 1e6 / N);
    cairn_catalog_free(cat);
    free(ids);
}

int main(void)
{
    cairn_err err = {0, ""};
    cairn_catalog *cat = NULL;
    const char *path;

    main_pid = getpid();
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "FAIL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    atexit(cleanup);

    test_open();
    path = path_in("main/catalog.db");
    if (cairn_catalog_open(path, &cat, &err) != CAIRN_OK) {
        fprintf(stderr, "FAIL: open '%s': %s\n", path, err.msg);
        return 1;
    }
    test_meta_indexes(cat);
    test_blobs(cat);
    test_pending(cat);
    test_snapshots(cat);
    test_jobs(cat, path);
    test_backup_to(cat);
    test_clear(cat);
    cairn_catalog_free(cat);
    test_two_processes();
    test_concurrent_create();
    bench();

    if (failures) {
        fprintf(stderr, "test_catalog: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_catalog: all checks passed\n");
    return 0;
}

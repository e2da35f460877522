/* tests/unit/test_engine_repo.c — engine/repo.c, backup.c and check.c together
 * on a real repository in a temp dir: init/open errors, the keyed chunk hash,
 * backups (first, unchanged, one file changed), snapshot lookup, walking,
 * loading blobs, catalog rebuild, check (clean and with a damaged pack), a
 * backup after a failed backup on the same handle, and a missing source path. */
#define _GNU_SOURCE
#include "../../engine/backup.h"
#include "../../engine/check.h"
#include "../../engine/pack.h"
#include "../../engine/repo.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char base[] = "/tmp/cairn-test-engine-repo-XXXXXX";
static int have_base;

static void cleanup(void)
{
    if (have_base)
        test_rm_tree(base);
}

static char *in_base(const char *rel)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", base, rel) < 0) {
        fprintf(stderr, "FAIL: out of memory\n");
        exit(1);
    }
    return p;
}

static uint64_t rng_state = 42;

static void fill_random(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        p[i] = (uint8_t)(z ^ (z >> 31));
    }
}

static int write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    if (len && write(fd, data, len) != (ssize_t)len) {
        close(fd);
        return -1;
    }
    return close(fd);
}

static int read_whole(const char *path, cairn_buf *out)
{
    cairn_err e;
    cairn_buf_reset(out);
    return cairn_read_file(path, out, 0, &e);
}

/* ---- walking ---- */

struct walked {
    char *path[64];
    struct cairn_node node[64];
    size_t n;
    int errors;
};

static int walk_cb(void *arg, const char *path, const struct cairn_node *n)
{
    struct walked *w = arg;
    if (w->n >= 64)
        return -1;
    w->path[w->n] = strdup(path);
    if (cairn_node_copy(&w->node[w->n], n) != CAIRN_OK)
        return -1;
    w->n++;
    return 0;
}

static void walk_err(void *arg, const char *path, const cairn_err *e)
{
    struct walked *w = arg;
    fprintf(stderr, "walk error at '%s': %s\n", path, e->msg);
    w->errors++;
}

static void walked_free(struct walked *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free(w->path[i]);
        cairn_node_free(&w->node[i]);
    }
    w->n = 0;
}

/* ---- snapshot lists ---- */

struct idlist {
    char ids[16][CAIRN_HEX_LEN + 1];
    size_t n;
};

static int collect_snap(void *arg, const struct cairn_snaprow *row)
{
    struct idlist *l = arg;
    if (l->n < 16)
        memcpy(l->ids[l->n++], row->id, CAIRN_HEX_LEN + 1);
    return 0;
}

static int cmp_ids(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int list_snapshots(cairn_repo *r, struct idlist *l)
{
    cairn_err e;
    int rc;
    memset(l, 0, sizeof *l);
    rc = cairn_catalog_list_snapshots(cairn_repo_catalog(r), NULL, collect_snap, l, &e);
    qsort(l->ids, l->n, sizeof l->ids[0], cmp_ids);
    return rc;
}

/* ---- reports ---- */

struct msgs {
    char *v[256];
    size_t n;
};

static void collect_msg(void *arg, const char *msg)
{
    struct msgs *m = arg;
    if (m->n < 256)
        m->v[m->n++] = strdup(msg);
}

static int msgs_contain(const struct msgs *m, const char *needle)
{
    for (size_t i = 0; i < m->n; i++)
        if (strstr(m->v[i], needle))
            return 1;
    return 0;
}

static void msgs_free(struct msgs *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->v[i]);
    m->n = 0;
}

static void msgs_print(const struct msgs *m, const char *title)
{
    fprintf(stderr, "%s (%zu):\n", title, m->n);
    for (size_t i = 0; i < m->n; i++)
        fprintf(stderr, "  | %s\n", m->v[i]);
}

/* ---- the source tree ---- */

#define BIG_LEN (3u << 20)
static const char *const expect_paths[] = {"a.txt", "big.bin",    "empty",         "link",
                                           "sub",   "sub/c.txt",  "sub/nested",    "sub/nested/d.txt"};
#define N_EXPECT (sizeof expect_paths / sizeof *expect_paths)
#define N_FILES 5 /* a.txt big.bin empty sub/c.txt sub/nested/d.txt */

static uint64_t make_source(const char *src)
{
    char p[512];
    uint8_t *big = malloc(BIG_LEN);
    uint64_t total = 0;
    if (!big || mkdir(src, 0755) != 0)
        return 0;
    fill_random(big, BIG_LEN);
    snprintf(p, sizeof p, "%s/a.txt", src);
    write_file(p, "hello, cairn\n", 13);
    total += 13;
    snprintf(p, sizeof p, "%s/big.bin", src);
    write_file(p, big, BIG_LEN);
    total += BIG_LEN;
    snprintf(p, sizeof p, "%s/empty", src);
    write_file(p, "", 0);
    snprintf(p, sizeof p, "%s/link", src);
    if (symlink("a.txt", p) != 0)
        return 0;
    snprintf(p, sizeof p, "%s/sub", src);
    mkdir(p, 0750);
    snprintf(p, sizeof p, "%s/sub/c.txt", src);
    write_file(p, "the c file\n", 11);
    total += 11;
    snprintf(p, sizeof p, "%s/sub/nested", src);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/sub/nested/d.txt", src);
    write_file(p, big + 12345, 70000); /* shares no chunk boundary with big.bin */
    total += 70000;
    free(big);
    return total;
}

static int run_backup(cairn_repo *r, const char *src, struct cairn_backup_result *res,
                      struct msgs *warns, cairn_err *err)
{
    struct cairn_backup_opts o;
    const char *paths[1];
    paths[0] = src;
    memset(&o, 0, sizeof o);
    o.paths = paths;
    o.n_paths = 1;
    o.workers = 2;
    o.warn = collect_msg;
    o.warn_arg = warns;
    cairn_err_clear(err);
    return cairn_backup_run(r, &o, res, err);
}

/* Walks the snapshot's tree and checks paths, types and every file's content
 * against the source directory. */
static void verify_snapshot(cairn_repo *r, const cairn_id *tree, const char *src, const char *label)
{
    struct walked w;
    cairn_err err;
    cairn_buf blob = CAIRN_BUF_INIT, all = CAIRN_BUF_INIT, disk = CAIRN_BUF_INIT;
    size_t i, k;
    int rc;
    memset(&w, 0, sizeof w);
    rc = cairn_repo_walk(r, tree, walk_cb, walk_err, &w, &err);
    CHECK(rc == CAIRN_OK && w.errors == 0, "%s: walk rc %d, %d tree error(s): %s", label, rc,
          w.errors, rc ? err.msg : "");
    CHECK(w.n == N_EXPECT, "%s: walk listed %zu paths, want %zu", label, w.n, N_EXPECT);
    for (i = 0; i < w.n && i < N_EXPECT; i++)
        CHECK(strcmp(w.path[i], expect_paths[i]) == 0, "%s: walk path %zu is '%s', want '%s'", label,
              i, w.path[i], expect_paths[i]);
    for (i = 0; i < w.n; i++) {
        const struct cairn_node *n = &w.node[i];
        char diskpath[512];
        snprintf(diskpath, sizeof diskpath, "%s/%s", src, w.path[i]);
        if (strcmp(w.path[i], "link") == 0)
            CHECK(n->type == CAIRN_T_SYMLINK && n->target && strcmp(n->target, "a.txt") == 0,
                  "%s: 'link' is not a symlink to a.txt", label);
        if (strcmp(w.path[i], "sub") == 0)
            CHECK(n->type == CAIRN_T_DIR && n->mode == 0750, "%s: 'sub' type %d mode %o", label,
                  n->type, n->mode);
        if (n->type != CAIRN_T_FILE)
            continue;
        CHECK(!n->hardlink, "%s: '%s' recorded as a hardlink", label, w.path[i]);
        cairn_buf_reset(&all);
        for (k = 0; k < n->n_chunks; k++) {
            cairn_id got;
            cairn_err_clear(&err);
            rc = cairn_repo_load_blob(r, &n->chunks[k], &blob, &err);
            if (rc != CAIRN_OK) {
                CHECK(0, "%s: '%s' chunk %zu does not load: %s", label, w.path[i], k, err.msg);
                break;
            }
            cairn_repo_hash(r, blob.data, blob.len, &got);
            CHECK(memcmp(got.b, n->chunks[k].b, CAIRN_ID_LEN) == 0,
                  "%s: '%s' chunk %zu hashes to another id", label, w.path[i], k);
            CHECK(blob.len <= cairn_repo_config(r)->chunk_max, "%s: chunk of %zu bytes", label,
                  blob.len);
            cairn_buf_append(&all, blob.data, blob.len);
        }
        CHECK(read_whole(diskpath, &disk) == CAIRN_OK, "%s: cannot read '%s'", label, diskpath);
        CHECK(all.len == disk.len && n->size == disk.len &&
                  (disk.len == 0 || memcmp(all.data, disk.data, disk.len) == 0),
              "%s: '%s' content from the repository (%zu bytes, size %llu) differs from disk "
              "(%zu bytes)",
              label, w.path[i], all.len, (unsigned long long)n->size, disk.len);
        if (strcmp(w.path[i], "big.bin") == 0)
            CHECK(n->n_chunks >= 1 && n->n_chunks <= 12, "%s: big.bin has %zu chunks", label,
                  n->n_chunks);
        if (strcmp(w.path[i], "empty") == 0)
            CHECK(n->n_chunks == 0, "%s: the empty file has %zu chunks", label, n->n_chunks);
    }
    walked_free(&w);
    cairn_buf_free(&blob);
    cairn_buf_free(&all);
    cairn_buf_free(&disk);
}

/* Finds a chunk of the named file in the snapshot tree. */
static int find_chunk(cairn_repo *r, const cairn_id *tree, const char *path, cairn_id *out)
{
    struct walked w;
    cairn_err err;
    int found = 0;
    memset(&w, 0, sizeof w);
    if (cairn_repo_walk(r, tree, walk_cb, NULL, &w, &err) == CAIRN_OK)
        for (size_t i = 0; i < w.n; i++)
            if (strcmp(w.path[i], path) == 0 && w.node[i].n_chunks) {
                *out = w.node[i].chunks[w.node[i].n_chunks / 2];
                found = 1;
            }
    walked_free(&w);
    return found;
}

static void test_init_open(const char *repo, const char *cat)
{
    cairn_err err;
    cairn_repo *r = NULL;
    char *empty = in_base("not-a-repo"), *cat2 = in_base("cat-other.db");
    char *nowhere = in_base("does/not/exist");
    int rc;

    cairn_err_clear(&err);
    rc = cairn_repo_init(repo, &err);
    REQUIRE(rc == CAIRN_OK, "repo_init: rc %d: %s", rc, err.msg);
    cairn_err_clear(&err);
    rc = cairn_repo_init(repo, &err);
    CHECK(rc == CAIRN_EXISTS, "second repo_init: rc %d, want CAIRN_EXISTS (%s)", rc, err.msg);
    CHECK(strstr(err.msg, repo) != NULL, "second repo_init: message does not name the path: %s",
          err.msg);

    mkdir(empty, 0755);
    cairn_err_clear(&err);
    rc = cairn_repo_open(empty, cat2, &r, &err);
    CHECK(rc == CAIRN_NOTFOUND, "open of a dir without config: rc %d, want CAIRN_NOTFOUND", rc);
    CHECK(strstr(err.msg, "cairn init") != NULL, "open without config: message lacks 'cairn init': %s",
          err.msg);
    if (rc == CAIRN_OK)
        cairn_repo_free(r);
    r = NULL;
    cairn_err_clear(&err);
    rc = cairn_repo_open(nowhere, cat2, &r, &err);
    CHECK(rc != CAIRN_OK && err.msg[0], "open of a missing directory: rc %d", rc);
    if (rc == CAIRN_OK)
        cairn_repo_free(r);
    r = NULL;

    cairn_err_clear(&err);
    rc = cairn_repo_open(repo, cat, &r, &err);
    REQUIRE(rc == CAIRN_OK, "repo_open: %s", err.msg);
    CHECK(strcmp(cairn_repo_catalog_path(r), cat) == 0, "catalog path '%s', want '%s'",
          cairn_repo_catalog_path(r), cat);
    {
        struct stat st;
        CHECK(stat(cat, &st) == 0, "the catalog was not created at '%s'", cat);
    }
    {
        const struct cairn_repo_config *c = cairn_repo_config(r);
        uint8_t zero[32] = {0};
        CHECK(c->version == CAIRN_FORMAT_VERSION, "config version %d", c->version);
        CHECK(strlen(c->id) == CAIRN_HEX_LEN, "config id '%s'", c->id);
        CHECK(c->chunk_min == 128 * 1024 && c->chunk_avg == 512 * 1024 &&
                  c->chunk_max == 2 * 1024 * 1024,
              "chunker %u/%u/%u, want 128K/512K/2M defaults", c->chunk_min, c->chunk_avg,
              c->chunk_max);
        CHECK(memcmp(c->chunk_key, zero, 32) != 0, "chunk key is all zero");
    }
    cairn_repo_free(r);
    free(empty);
    free(cat2);
    free(nowhere);
}

static void test_hash(cairn_repo *r)
{
    static const size_t lens[] = {0, 1, 63, 64, 127, 128, 129, 4096, 1 << 20};
    const size_t max = 1 << 20;
    uint8_t *data = malloc(max), ref[32], unkeyed[32];
    const struct cairn_repo_config *c = cairn_repo_config(r);
    cairn_id got, again;
    fill_random(data, max);
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        size_t n = lens[i];
        crypto_generichash(ref, 32, data, n, c->chunk_key, 32);
        cairn_repo_hash(r, data, n, &got);
        CHECK(memcmp(got.b, ref, 32) == 0,
              "repo_hash of %zu bytes differs from keyed BLAKE2b-256 (crypto_generichash)", n);
        cairn_repo_hash(r, data, n, &again);
        CHECK(memcmp(got.b, again.b, 32) == 0, "repo_hash of %zu bytes not deterministic", n);
        crypto_generichash(unkeyed, 32, data, n, NULL, 0);
        CHECK(memcmp(got.b, unkeyed, 32) != 0, "repo_hash of %zu bytes is unkeyed", n);
    }
    free(data);
}

/* A backup on a handle whose previous backup failed half-way must still store
 * every blob it references. */
static void test_backup_after_failure(void)
{
    char *repo = in_base("repo2"), *cat = in_base("cat2.db"), *src = in_base("src2");
    char *data_dir = NULL, p[512];
    cairn_repo *r = NULL;
    cairn_err err;
    struct cairn_backup_result res;
    struct cairn_check_result cres;
    struct msgs warns = {0}, report = {0};
    struct cairn_snapshot *snap = NULL;
    uint8_t *buf = malloc(1 << 20);
    int rc;

    REQUIRE(cairn_repo_init(repo, &err) == CAIRN_OK, "init repo2: %s", err.msg);
    REQUIRE(cairn_repo_open(repo, cat, &r, &err) == CAIRN_OK, "open repo2: %s", err.msg);
    /* check of an empty repository: no packs, no snapshots */
    rc = cairn_check(r, 1, collect_msg, &report, &cres, &err);
    CHECK(rc == CAIRN_OK && cres.problems == 0 && cres.packs == 0 && cres.snapshots == 0,
          "check of an empty repository: rc %d, %llu problem(s): %s", rc,
          (unsigned long long)cres.problems, rc ? err.msg : "");
    {
        struct cairn_snapshot *none = NULL;
        cairn_err_clear(&err);
        rc = cairn_repo_snapshot_get(r, "latest", NULL, &none, &err);
        CHECK(rc == CAIRN_NOTFOUND, "latest of an empty repository: rc %d", rc);
        if (rc == CAIRN_OK)
            cairn_snapshot_free(none);
    }
    msgs_free(&report);
    mkdir(src, 0755);
    fill_random(buf, 1 << 20);
    snprintf(p, sizeof p, "%s/x.bin", src);
    write_file(p, buf, 1 << 20);
    snprintf(p, sizeof p, "%s/y.txt", src);
    write_file(p, "yyy\n", 4);

    /* make storing packs fail: 'data' is a file, so data/xx/ cannot be made */
    if (asprintf(&data_dir, "%s/data", repo) < 0)
        return;
    rmdir(data_dir);
    write_file(data_dir, "in the way", 10);
    rc = run_backup(r, src, &res, &warns, &err);
    CHECK(rc != CAIRN_OK, "backup with an unwritable data/ succeeded");
    if (rc == CAIRN_OK) {
        unlink(data_dir);
        goto out;
    }
    unlink(data_dir);

    /* same handle, storage works again */
    rc = run_backup(r, src, &res, &warns, &err);
    CHECK(rc == CAIRN_OK, "backup after the failed one: %s", err.msg);
    if (rc != CAIRN_OK)
        goto out;
    CHECK(res.files == 2, "backup after failure: %llu files", (unsigned long long)res.files);
    rc = cairn_repo_snapshot_get(r, "latest", NULL, &snap, &err);
    CHECK(rc == CAIRN_OK, "latest after failure: %s", err.msg);
    if (rc == CAIRN_OK) {
        struct walked w;
        cairn_buf blob = CAIRN_BUF_INIT;
        size_t i, k, bad = 0;
        memset(&w, 0, sizeof w);
        rc = cairn_repo_walk(r, &snap->tree, walk_cb, walk_err, &w, &err);
        CHECK(rc == CAIRN_OK && w.errors == 0 && w.n == 2,
              "backup after a failed backup on the same handle: the snapshot's tree cannot be "
              "read (walk rc %d, %d error(s), %zu entries): %s",
              rc, w.errors, w.n, err.msg);
        for (i = 0; i < w.n; i++)
            for (k = 0; k < w.node[i].n_chunks; k++)
                if (cairn_repo_load_blob(r, &w.node[i].chunks[k], &blob, &err) != CAIRN_OK) {
                    if (bad++ == 0)
                        fprintf(stderr, "  chunk of '%s': %s\n", w.path[i], err.msg);
                }
        CHECK(bad == 0,
              "backup after a failed backup on the same handle: %zu chunk(s) referenced by the "
              "snapshot were never stored",
              bad);
        walked_free(&w);
        cairn_buf_free(&blob);
        cairn_snapshot_free(snap);
    }
    rc = cairn_check(r, 0, collect_msg, &report, &cres, &err);
    CHECK(rc == CAIRN_OK && cres.problems == 0,
          "check after backup-after-failure: rc %d, %llu problem(s)", rc,
          (unsigned long long)cres.problems);
    if (cres.problems)
        msgs_print(&report, "check report (repo2)");
out:
    msgs_free(&warns);
    msgs_free(&report);
    cairn_repo_free(r);
    free(data_dir);
    free(buf);
    free(repo);
    free(cat);
    free(src);
}

static void test_repo(void)
{
    char *repo = in_base("repo"), *cat = in_base("catalog.db"), *src = in_base("src");
    char *missing = in_base("no-such-source-dir"), p[600];
    cairn_repo *r = NULL;
    cairn_err err;
    struct cairn_backup_result r1, r2, r3;
    struct cairn_snapshot *snap = NULL;
    struct msgs warns = {0}, report = {0};
    struct idlist before, after, reopened;
    struct cairn_check_result cres;
    uint64_t total;
    cairn_id tree1, tree2, tree3;
    int rc;

    test_init_open(repo, cat);
    if (failures)
        goto out;
    REQUIRE(cairn_repo_open(repo, cat, &r, &err) == CAIRN_OK, "reopen: %s", err.msg);
    test_hash(r);

    /* ---- first backup ---- */
    total = make_source(src);
    if (!total) {
        CHECK(0, "cannot create the source tree in %s", src);
        goto out;
    }
    rc = run_backup(r, src, &r1, &warns, &err);
    if (rc != CAIRN_OK) {
        CHECK(0, "first backup: rc %d: %s", rc, err.msg);
        goto out;
    }
    CHECK(strlen(r1.id) == CAIRN_HEX_LEN, "first backup: snapshot id '%s'", r1.id);
    CHECK(r1.parent[0] == 0, "first backup has a parent '%s'", r1.parent);
    CHECK(r1.files == N_FILES, "first backup: %llu files, want %d", (unsigned long long)r1.files,
          N_FILES);
    CHECK(r1.dirs == 2, "first backup: %llu dirs, want 2", (unsigned long long)r1.dirs);
    CHECK(r1.reused == 0, "first backup reused %llu", (unsigned long long)r1.reused);
    CHECK(r1.bytes_read == total, "first backup read %llu bytes, want %llu",
          (unsigned long long)r1.bytes_read, (unsigned long long)total);
    CHECK(r1.total_size == total, "first backup total_size %llu", (unsigned long long)r1.total_size);
    CHECK(r1.bytes_new > 0 && r1.bytes_stored > 0, "first backup stored nothing");
    CHECK(!r1.partial && r1.errors == 0 && warns.n == 0, "first backup partial/warnings: %zu",
          warns.n);
    if (warns.n)
        msgs_print(&warns, "warnings");

    rc = cairn_repo_snapshot_get(r, "latest", NULL, &snap, &err);
    CHECK(rc == CAIRN_OK, "snapshot_get(latest): %s", err.msg);
    if (rc != CAIRN_OK)
        goto out;
    CHECK(strcmp(snap->id, r1.id) == 0, "latest is %s, backup said %s", snap->id, r1.id);
    CHECK(!snap->partial && snap->source && snap->time_ns > 0, "latest snapshot fields");
    CHECK(snap->root.type == CAIRN_T_DIR, "snapshot root is not a directory");
    tree1 = snap->tree;
    cairn_snapshot_free(snap);
    snap = NULL;
    /* by id prefix too */
    {
        char prefix[13];
        memcpy(prefix, r1.id, 12);
        prefix[12] = 0;
        rc = cairn_repo_snapshot_get(r, prefix, NULL, &snap, &err);
        CHECK(rc == CAIRN_OK && strcmp(snap->id, r1.id) == 0, "snapshot_get(prefix): %s", err.msg);
        cairn_snapshot_free(snap);
        snap = NULL;
    }
    verify_snapshot(r, &tree1, src, "first backup");

    /* ---- second backup: nothing changed ---- */
    rc = run_backup(r, src, &r2, &warns, &err);
    if (rc != CAIRN_OK) {
        CHECK(0, "second backup: %s", err.msg);
        goto out;
    }
    CHECK(strcmp(r2.parent, r1.id) == 0, "second backup's parent '%s', want %s", r2.parent, r1.id);
    CHECK(r2.reused == N_FILES, "second backup reused %llu files, want %d",
          (unsigned long long)r2.reused, N_FILES);
    CHECK(r2.bytes_read == 0, "second backup read %llu bytes, want 0",
          (unsigned long long)r2.bytes_read);
    CHECK(r2.bytes_new == 0, "second backup found %llu new bytes", (unsigned long long)r2.bytes_new);
    CHECK(r2.files == N_FILES, "second backup: %llu files", (unsigned long long)r2.files);
    rc = cairn_repo_snapshot_get(r, "latest", NULL, &snap, &err);
    if (rc == CAIRN_OK) {
        tree2 = snap->tree;
        CHECK(strcmp(snap->id, r2.id) == 0, "latest after the second backup is not it");
        CHECK(memcmp(tree1.b, tree2.b, CAIRN_ID_LEN) == 0,
              "unchanged source gave a different root tree");
        cairn_snapshot_free(snap);
        snap = NULL;
        verify_snapshot(r, &tree2, src, "second backup");
    } else {
        CHECK(0, "latest after the second backup: %s", err.msg);
    }

    /* ---- third backup: one file changed ---- */
    snprintf(p, sizeof p, "%s/sub/c.txt", src);
    CHECK(write_file(p, "the c file, now longer than before\n", 35) == 0, "cannot modify c.txt");
    rc = run_backup(r, src, &r3, &warns, &err);
    if (rc != CAIRN_OK) {
        CHECK(0, "third backup: %s", err.msg);
        goto out;
    }
    CHECK(strcmp(r3.parent, r2.id) == 0, "third backup's parent '%s', want %s", r3.parent, r2.id);
    CHECK(r3.bytes_read == 35, "third backup read %llu bytes, want 35 (only sub/c.txt)",
          (unsigned long long)r3.bytes_read);
    CHECK(r3.reused == N_FILES - 1, "third backup reused %llu, want %d",
          (unsigned long long)r3.reused, N_FILES - 1);
    rc = cairn_repo_snapshot_get(r, "latest", NULL, &snap, &err);
    if (rc == CAIRN_OK) {
        tree3 = snap->tree;
        CHECK(strcmp(snap->id, r3.id) == 0, "latest after the third backup is not it");
        CHECK(memcmp(tree1.b, tree3.b, CAIRN_ID_LEN) != 0, "changed source kept the root tree id");
        cairn_snapshot_free(snap);
        snap = NULL;
        verify_snapshot(r, &tree3, src, "third backup");
    } else {
        CHECK(0, "latest after the third backup: %s", err.msg);
    }
    /* the old snapshot still has the old content of c.txt */
    {
        struct walked w;
        cairn_buf b = CAIRN_BUF_INIT;
        memset(&w, 0, sizeof w);
        cairn_repo_walk(r, &tree1, walk_cb, NULL, &w, &err);
        for (size_t i = 0; i < w.n; i++)
            if (strcmp(w.path[i], "sub/c.txt") == 0)
                CHECK(w.node[i].n_chunks == 1 &&
                          cairn_repo_load_blob(r, &w.node[i].chunks[0], &b, &err) == CAIRN_OK &&
                          b.len == 11 && memcmp(b.data, "the c file\n", 11) == 0,
                      "first snapshot lost the old content of sub/c.txt");
        walked_free(&w);
        cairn_buf_free(&b);
    }

    /* ---- catalog rebuild ---- */
    CHECK(list_snapshots(r, &before) == CAIRN_OK && before.n == 3, "catalog lists %zu snapshots",
          before.n);
    /* a full sync with the catalog in place */
    cairn_err_clear(&err);
    rc = cairn_repo_sync(r, 1, &err);
    CHECK(rc == CAIRN_OK, "repo_sync(full) with the catalog in place: %s", err.msg);
    CHECK(list_snapshots(r, &after) == CAIRN_OK && after.n == before.n &&
              memcmp(after.ids, before.ids, sizeof after.ids[0] * before.n) == 0,
          "snapshot list after an in-place rebuild differs (%zu vs %zu)", after.n, before.n);
    /* and with the catalog file deleted */
    CHECK(unlink(cat) == 0, "cannot delete the catalog: %s", strerror(errno));
    snprintf(p, sizeof p, "%s-wal", cat);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", cat);
    unlink(p);
    cairn_err_clear(&err);
    rc = cairn_repo_sync(r, 1, &err);
    CHECK(rc == CAIRN_OK, "repo_sync(full): %s", err.msg);
    CHECK(list_snapshots(r, &after) == CAIRN_OK && after.n == before.n &&
              memcmp(after.ids, before.ids, sizeof after.ids[0] * before.n) == 0,
          "snapshot list after rebuild differs (%zu vs %zu)", after.n, before.n);
    verify_snapshot(r, &tree3, src, "after catalog rebuild");
    /* and by reopening without a catalog */
    cairn_repo_free(r);
    r = NULL;
    unlink(cat);
    snprintf(p, sizeof p, "%s-wal", cat);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", cat);
    unlink(p);
    rc = cairn_repo_open(repo, cat, &r, &err);
    if (rc != CAIRN_OK) {
        CHECK(0, "open with a deleted catalog: %s", err.msg);
        goto out;
    }
    CHECK(list_snapshots(r, &reopened) == CAIRN_OK && reopened.n == before.n &&
              memcmp(reopened.ids, before.ids, sizeof reopened.ids[0] * before.n) == 0,
          "snapshot list after reopen without catalog differs (%zu)", reopened.n);
    rc = cairn_repo_snapshot_get(r, "latest", NULL, &snap, &err);
    CHECK(rc == CAIRN_OK && strcmp(snap->id, r3.id) == 0, "latest after reopen");
    cairn_snapshot_free(snap);
    snap = NULL;

    /* a catalog of another repository is refused */
    {
        char *repo_b = in_base("repo-b");
        cairn_repo *rb = NULL;
        if (cairn_repo_init(repo_b, &err) == CAIRN_OK) {
            rc = cairn_repo_open(repo_b, cat, &rb, &err);
            CHECK(rc != CAIRN_OK, "opening repo-b with repo's catalog was accepted");
            if (rc != CAIRN_OK)
                CHECK(strstr(err.msg, "another repository") != NULL,
                      "foreign catalog message: %s", err.msg);
            cairn_repo_free(rb);
        }
        free(repo_b);
    }

    /* ---- check: clean ---- */
    rc = cairn_check(r, 0, collect_msg, &report, &cres, &err);
    CHECK(rc == CAIRN_OK && cres.problems == 0, "check: rc %d, %llu problem(s)", rc,
          (unsigned long long)cres.problems);
    CHECK(cres.snapshots == 3 && cres.packs > 0 && cres.trees > 0 && cres.files > 0,
          "check counted snapshots %llu packs %llu trees %llu files %llu",
          (unsigned long long)cres.snapshots, (unsigned long long)cres.packs,
          (unsigned long long)cres.trees, (unsigned long long)cres.files);
    if (cres.problems)
        msgs_print(&report, "check report");
    msgs_free(&report);
    rc = cairn_check(r, 1, collect_msg, &report, &cres, &err);
    CHECK(rc == CAIRN_OK && cres.problems == 0 && cres.affected_files == 0,
          "check --read-data: rc %d, %llu problem(s)", rc, (unsigned long long)cres.problems);
    CHECK(cres.blobs_read > 0, "check --read-data read no blobs");
    if (cres.problems)
        msgs_print(&report, "check --read-data report");
    msgs_free(&report);

    /* ---- check: one flipped byte in a pack ---- */
    {
        cairn_id chunk;
        struct cairn_blob_loc loc;
        char key[128], packhex[CAIRN_HEX_LEN + 1];
        cairn_buf b = CAIRN_BUF_INIT;
        int fd;
        uint8_t byte;
        off_t at;
        if (!find_chunk(r, &tree3, "big.bin", &chunk) ||
            cairn_catalog_find_blob(cairn_repo_catalog(r), &chunk, &loc, &err) != CAIRN_OK) {
            CHECK(0, "cannot locate a chunk of big.bin");
            goto out;
        }
        cairn_pack_key(&loc.pack, key, sizeof key);
        cairn_id_hex(&loc.pack, packhex);
        snprintf(p, sizeof p, "%s/%s", repo, key);
        at = (off_t)(loc.offset + loc.stored_len / 2);
        fd = open(p, O_RDWR);
        CHECK(fd >= 0, "cannot open pack file %s: %s", p, strerror(errno));
        if (fd < 0)
            goto out;
        CHECK(pread(fd, &byte, 1, at) == 1, "cannot read the pack");
        byte ^= 0x20;
        CHECK(pwrite(fd, &byte, 1, at) == 1, "cannot write the pack");
        close(fd);

        cairn_err_clear(&err);
        rc = cairn_repo_load_blob(r, &chunk, &b, &err);
        CHECK(rc == CAIRN_CORRUPT, "load_blob of the damaged chunk: rc %d, want CAIRN_CORRUPT", rc);
        CHECK(strstr(err.msg, packhex) != NULL, "load_blob error does not name the pack: %s",
              err.msg);
        cairn_buf_free(&b);

        /* evidence for what follows: everything else still loads and verifies */
        {
            struct walked w;
            cairn_buf ok = CAIRN_BUF_INIT;
            size_t i, k, bad = 0;
            memset(&w, 0, sizeof w);
            rc = cairn_repo_walk(r, &tree1, walk_cb, walk_err, &w, &err);
            CHECK(rc == CAIRN_OK && w.errors == 0 && w.n == N_EXPECT,
                  "after the damage: the first snapshot's trees no longer load (%s)", err.msg);
            for (i = 0; i < w.n; i++)
                for (k = 0; k < w.node[i].n_chunks; k++)
                    if (memcmp(w.node[i].chunks[k].b, chunk.b, CAIRN_ID_LEN) != 0 &&
                        cairn_repo_load_blob(r, &w.node[i].chunks[k], &ok, &err) != CAIRN_OK)
                        bad++;
            CHECK(bad == 0, "after the damage: %zu undamaged chunk(s) no longer load", bad);
            walked_free(&w);
            cairn_buf_free(&ok);
        }

        rc = cairn_check(r, 1, collect_msg, &report, &cres, &err);
        CHECK(rc == CAIRN_OK, "check --read-data on a damaged repo: rc %d: %s", rc, err.msg);
        CHECK(cres.problems > 0, "check --read-data found no problem in a damaged pack");
        CHECK(cres.affected_files > 0, "check --read-data names no affected file");
        CHECK(msgs_contain(&report, packhex), "no report message names the damaged pack %s",
              packhex);
        CHECK(msgs_contain(&report, "big.bin"), "no report message names big.bin");
        /* Only that one chunk is damaged: every other blob of the pack was read
         * and verified. big.bin is in all 3 snapshots, nothing else needs the
         * chunk, so exactly 3 file entries are affected, and intact files and
         * directory listings that share the pack must not be reported. */
        CHECK(cres.affected_files == 3,
              "one damaged chunk (of big.bin, in 3 snapshots) reported as affecting %llu file "
              "entries, want 3",
              (unsigned long long)cres.affected_files);
        CHECK(!msgs_contain(&report, "'a.txt'"),
              "check reports the intact file a.txt as damaged (its chunk verified; it only shares "
              "the pack with the damaged chunk)");
        CHECK(!msgs_contain(&report, "unreadable"),
              "check reports intact directory listings as unreadable (they verified; they only "
              "share the pack with the damaged chunk)");
        if (failures)
            msgs_print(&report, "check report (damaged)");
        msgs_free(&report);
    }

    /* ---- a source path that does not exist ---- */
    rc = run_backup(r, missing, &r3, &warns, &err);
    CHECK(rc != CAIRN_OK, "backup of a missing path succeeded");
    CHECK(strstr(err.msg, missing) != NULL, "missing-path error does not name the path: %s",
          err.msg);

out:
    msgs_free(&warns);
    msgs_free(&report);
    cairn_snapshot_free(snap);
    cairn_repo_free(r);
    free(repo);
    free(cat);
    free(src);
    free(missing);
}

int main(void)
{
    double t0;
    if (sodium_init() < 0 || !mkdtemp(base)) {
        fprintf(stderr, "FAIL: setup: %s\n", strerror(errno));
        return 1;
    }
    have_base = 1;
    umask(022);
    t0 = cairn_mono();
    test_repo();
    test_backup_after_failure();
    printf("test_engine_repo: %.2f s\n", cairn_mono() - t0);
    cleanup();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("test_engine_repo: all checks passed\n");
    return 0;
}

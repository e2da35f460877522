/* tests/unit/test_engine_copy.c — the blob writer (engine/backup.h) and
 * cairn_copy_run (engine/copy.h) on real repositories in a temp dir:
 *  - the writer gives the repository's keyed ids (data blobs hashed by the
 *    workers, trees at once), stores each distinct blob once, counts new
 *    bytes, and after finish every blob loads back from the catalog; a second
 *    writer stores nothing for the same blobs; a writer freed without finish
 *    still indexes what it stored; add after finish is refused;
 *  - copy: the copy's tree has the destination's ids and the same content,
 *    the manifest names copied_from, a rerun skips, a tag filter selects,
 *    an unknown spec and the same repository are refused. */
#define _GNU_SOURCE
#include "../../engine/backup.h"
#include "../../engine/copy.h"
#include "../../engine/pack.h"
#include "../../engine/repo.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char base[] = "/tmp/cairn-test-engine-copy-XXXXXX";

static char *in_base(const char *rel)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", base, rel) < 0)
        exit(1);
    return p;
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (seed += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        p[i] = (uint8_t)(z ^ (z >> 31));
    }
}

static cairn_repo *new_repo(const char *name)
{
    char *url = in_base(name), cat[600];
    cairn_repo *r = NULL;
    cairn_err e;
    snprintf(cat, sizeof cat, "%s.db", url);
    if (cairn_repo_init(url, &e) != CAIRN_OK || cairn_repo_open(url, cat, &r, &e) != CAIRN_OK) {
        fprintf(stderr, "FAIL: repository %s: %s\n", name, e.msg);
        exit(1);
    }
    free(url);
    return r;
}

#define NBLOBS 40
#define BLOB_LEN 50000

static void test_writer(void)
{
    cairn_repo *r = new_repo("w");
    cairn_blob_writer *w = NULL;
    struct cairn_blob_writer_stats st;
    static uint8_t data[NBLOBS][BLOB_LEN];
    cairn_id ids[NBLOBS], tree_id, want;
    cairn_buf b = CAIRN_BUF_INIT;
    const char *tree = "{\"not\":\"parsed\"}";
    cairn_err e;
    size_t i;

    for (i = 0; i < NBLOBS; i++) /* every blob twice: 20 distinct */
        fill(data[i], BLOB_LEN, i % (NBLOBS / 2) + 1);
    REQUIRE(cairn_blob_writer_new(r, 2, &w, &e) == CAIRN_OK, "writer: %s", e.msg);
    for (i = 0; i < NBLOBS; i++)
        REQUIRE(cairn_blob_writer_add(w, CAIRN_BLOB_DATA, data[i], BLOB_LEN, &ids[i], &e) ==
                    CAIRN_OK,
                "add %zu: %s", i, e.msg);
    REQUIRE(cairn_blob_writer_add(w, CAIRN_BLOB_TREE, tree, strlen(tree), &tree_id, &e) ==
                CAIRN_OK,
            "add tree: %s", e.msg);
    cairn_repo_hash(r, tree, strlen(tree), &want);
    CHECK(memcmp(want.b, tree_id.b, CAIRN_ID_LEN) == 0, "a tree's id is set at once");
    REQUIRE(cairn_blob_writer_wait(w, &e) == CAIRN_OK, "wait: %s", e.msg);
    for (i = 0; i < NBLOBS; i++) {
        cairn_repo_hash(r, data[i], BLOB_LEN, &want);
        CHECK(memcmp(want.b, ids[i].b, CAIRN_ID_LEN) == 0, "blob %zu: keyed id after wait", i);
    }
    REQUIRE(cairn_blob_writer_finish(w, &st, &e) == CAIRN_OK, "finish: %s", e.msg);
    CHECK(st.bytes_new == (uint64_t)NBLOBS / 2 * BLOB_LEN, "new bytes %llu: each blob once",
          (unsigned long long)st.bytes_new);
    CHECK(st.bytes_stored > (uint64_t)NBLOBS / 2 * BLOB_LEN, "stored %llu",
          (unsigned long long)st.bytes_stored);
    CHECK(cairn_blob_writer_add(w, CAIRN_BLOB_DATA, data[0], BLOB_LEN, &want, &e) != CAIRN_OK,
          "add after finish is refused");
    cairn_blob_writer_free(w);
    for (i = 0; i < NBLOBS; i++) {
        CHECK(cairn_repo_load_blob(r, &ids[i], &b, &e) == CAIRN_OK, "load %zu: %s", i, e.msg);
        CHECK(b.len == BLOB_LEN && memcmp(b.data, data[i], BLOB_LEN) == 0, "blob %zu bytes", i);
    }
    CHECK(cairn_repo_load_blob(r, &tree_id, &b, &e) == CAIRN_OK && b.len == strlen(tree),
          "tree loads back");

    /* the same blobs again: nothing new, nothing stored */
    REQUIRE(cairn_blob_writer_new(r, 1, &w, &e) == CAIRN_OK, "writer 2: %s", e.msg);
    for (i = 0; i < NBLOBS; i++)
        CHECK(cairn_blob_writer_add(w, CAIRN_BLOB_DATA, data[i], BLOB_LEN, &ids[i], &e) ==
                  CAIRN_OK,
              "add again %zu", i);
    CHECK(cairn_blob_writer_finish(w, &st, &e) == CAIRN_OK, "finish 2: %s", e.msg);
    CHECK(st.bytes_new == 0 && st.bytes_stored == 0, "a second writer stored %llu bytes",
          (unsigned long long)st.bytes_stored);
    cairn_blob_writer_free(w);

    /* freed without finish: what it stored is indexed */
    REQUIRE(cairn_blob_writer_new(r, 1, &w, &e) == CAIRN_OK, "writer 3: %s", e.msg);
    fill(data[0], BLOB_LEN, 999);
    CHECK(cairn_blob_writer_add(w, CAIRN_BLOB_DATA, data[0], BLOB_LEN, &ids[0], &e) == CAIRN_OK,
          "add new");
    CHECK(cairn_blob_writer_wait(w, &e) == CAIRN_OK, "wait 3");
    cairn_blob_writer_free(w);
    {
        /* the last pack of an unfinished writer is dropped (never half
         * indexed): the blob is either loadable or absent, never broken */
        int rc = cairn_repo_load_blob(r, &ids[0], &b, &e);
        CHECK(rc == CAIRN_OK || rc == CAIRN_NOTFOUND, "after free: %s", e.msg);
    }
    cairn_buf_free(&b);
    cairn_repo_free(r);
}

/* ---- copy ---- */

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

struct seen {
    int n[4];
    char last_dst[CAIRN_HEX_LEN + 1];
};

static void on_item(void *arg, const struct cairn_copy_item *it)
{
    struct seen *s = arg;
    s->n[it->status]++;
    snprintf(s->last_dst, sizeof s->last_dst, "%s", it->dst_id);
}

static void test_copy(void)
{
    cairn_repo *src = new_repo("src"), *dst = new_repo("dst");
    char *dir = in_base("data"), *sub = in_base("data/sub"), *f1 = in_base("data/a.bin"),
         *f2 = in_base("data/sub/b.txt");
    const char *paths[1], *tag[] = {"t"};
    static uint8_t big[3 << 20];
    struct cairn_backup_opts bo;
    struct cairn_backup_result br;
    struct cairn_copy_opts co;
    struct cairn_copy_result res;
    struct cairn_snapshot *s1 = NULL, *s2 = NULL;
    struct cairn_tree t1, t2;
    struct seen seen;
    cairn_err e;
    char id1[CAIRN_HEX_LEN + 1];
    const char *spec[1];

    memset(&t1, 0, sizeof t1);
    memset(&t2, 0, sizeof t2);
    fill(big, sizeof big, 7);
    REQUIRE(mkdir(dir, 0755) == 0 && mkdir(sub, 0755) == 0, "mkdir");
    REQUIRE(write_file(f1, big, sizeof big) == 0 && write_file(f2, "hello\n", 6) == 0, "files");
    paths[0] = dir;
    memset(&bo, 0, sizeof bo);
    bo.paths = paths;
    bo.n_paths = 1;
    bo.workers = 2;
    bo.tags = tag;
    bo.n_tags = 1;
    REQUIRE(cairn_backup_run(src, &bo, &br, &e) == CAIRN_OK, "backup: %s", e.msg);
    memcpy(id1, br.id, sizeof id1);
    bo.n_tags = 0;
    REQUIRE(cairn_backup_run(src, &bo, &br, &e) == CAIRN_OK, "backup 2: %s", e.msg);

    /* refused: the same repository, an unknown snapshot */
    memset(&co, 0, sizeof co);
    CHECK(cairn_copy_run(src, src, &co, &res, &e) == CAIRN_FATAL &&
              strstr(e.msg, "is the source repository"),
          "same repository: %s", e.msg);
    spec[0] = "ffffffff";
    co.snaps = spec;
    co.n_snaps = 1;
    CHECK(cairn_copy_run(src, dst, &co, &res, &e) == CAIRN_NOTFOUND && strstr(e.msg, "ffffffff"),
          "unknown snapshot: %s", e.msg);

    /* the tagged one only */
    memset(&co, 0, sizeof co);
    memset(&seen, 0, sizeof seen);
    co.tags = tag;
    co.n_tags = 1;
    co.on_item = on_item;
    co.arg = &seen;
    REQUIRE(cairn_copy_run(src, dst, &co, &res, &e) == CAIRN_OK, "copy: %s", e.msg);
    CHECK(res.selected == 1 && res.copied == 1 && seen.n[CAIRN_COPY_COPIED] == 1,
          "tag filter: %llu selected, %llu copied", (unsigned long long)res.selected,
          (unsigned long long)res.copied);
    CHECK(res.bytes_new >= sizeof big, "new bytes %llu", (unsigned long long)res.bytes_new);

    /* the copy: other ids, same content, copied_from */
    REQUIRE(cairn_repo_snapshot_get(src, id1, NULL, &s1, &e) == CAIRN_OK, "get src");
    REQUIRE(cairn_repo_snapshot_get(dst, seen.last_dst, NULL, &s2, &e) == CAIRN_OK, "get dst: %s",
            e.msg);
    CHECK(memcmp(s1->tree.b, s2->tree.b, CAIRN_ID_LEN) != 0, "the tree id is the destination's");
    {
        json_t *cf = json_object_get(s2->json, "copied_from");
        const char *rid = json_string_value(json_object_get(cf, "repo"));
        const char *sid = json_string_value(json_object_get(cf, "snapshot"));
        CHECK(rid && strcmp(rid, cairn_repo_config(src)->id) == 0, "copied_from.repo");
        CHECK(sid && strcmp(sid, id1) == 0, "copied_from.snapshot");
        CHECK(s1->time_ns == s2->time_ns && strcmp(s1->source, s2->source) == 0,
              "time and source kept");
    }
    REQUIRE(cairn_repo_load_tree(src, &s1->tree, &t1, &e) == CAIRN_OK, "src tree");
    REQUIRE(cairn_repo_load_tree(dst, &s2->tree, &t2, &e) == CAIRN_OK, "dst tree: %s", e.msg);
    REQUIRE(t1.n == t2.n && t1.n == 2, "entries %zu/%zu", t1.n, t2.n);
    {
        const struct cairn_node *a1 = cairn_tree_find(&t1, "a.bin"),
                                *a2 = cairn_tree_find(&t2, "a.bin");
        cairn_buf b1 = CAIRN_BUF_INIT, b2 = CAIRN_BUF_INIT;
        REQUIRE(a1 && a2 && a1->n_chunks == a2->n_chunks && a1->n_chunks > 0, "a.bin chunks");
        CHECK(a1->mtime_ns == a2->mtime_ns && a1->mode == a2->mode && a1->size == a2->size,
              "metadata kept");
        for (size_t k = 0; k < a1->n_chunks; k++) {
            CHECK(memcmp(a1->chunks[k].b, a2->chunks[k].b, CAIRN_ID_LEN) != 0,
                  "chunk %zu has the destination's id", k);
            CHECK(cairn_repo_load_blob(src, &a1->chunks[k], &b1, &e) == CAIRN_OK &&
                      cairn_repo_load_blob(dst, &a2->chunks[k], &b2, &e) == CAIRN_OK &&
                      b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0,
                  "chunk %zu: same bytes", k);
        }
        cairn_buf_free(&b1);
        cairn_buf_free(&b2);
    }

    /* everything: the first is skipped, the second copied reading nothing
     * (its tree is the first one's, copied before) */
    memset(&co, 0, sizeof co);
    memset(&seen, 0, sizeof seen);
    co.on_item = on_item;
    co.arg = &seen;
    REQUIRE(cairn_copy_run(src, dst, &co, &res, &e) == CAIRN_OK, "copy all: %s", e.msg);
    CHECK(res.copied == 1 && res.skipped == 1, "copy all: %llu copied, %llu skipped",
          (unsigned long long)res.copied, (unsigned long long)res.skipped);
    CHECK(res.bytes_read == 0 && res.bytes_stored == 0, "unchanged: read %llu, stored %llu",
          (unsigned long long)res.bytes_read, (unsigned long long)res.bytes_stored);
    co.dry_run = 1;
    REQUIRE(cairn_copy_run(src, dst, &co, &res, &e) == CAIRN_OK, "dry run: %s", e.msg);
    CHECK(res.skipped == 2 && res.copied == 0, "dry run after copying: all skipped");

    cairn_tree_free(&t1);
    cairn_tree_free(&t2);
    cairn_snapshot_free(s1);
    cairn_snapshot_free(s2);
    free(dir);
    free(sub);
    free(f1);
    free(f2);
    cairn_repo_free(src);
    cairn_repo_free(dst);
}

int main(void)
{
    if (sodium_init() < 0 || !mkdtemp(base)) {
        fprintf(stderr, "FAIL: setup: %s\n", strerror(errno));
        return 1;
    }
    umask(022);
    test_writer();
    test_copy();
    test_rm_tree(base);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("test_engine_copy: all checks passed\n");
    return 0;
}

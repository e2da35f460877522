/* tests/unit/test_prune.c — engine/lock.c and engine/prune.c through their
 * APIs on a real repository in a temp dir: lease conflicts (shared with
 * shared, exclusive against anything, expiry), backups refusing under an
 * exclusive lease, forget by policy and by id (with the log-retention and
 * before-remove hooks),
 * prune (plan in dry run, grace period, deletion and repacking, a damaged
 * repository refused), retagging, and the option parsers. */
#define _GNU_SOURCE
#include "../../engine/backup.h"
#include "../../engine/check.h"
#include "../../engine/lock.h"
#include "../../engine/pack.h"
#include "../../engine/prune.h"
#include "../../engine/repo.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char base[] = "/tmp/cairn-test-prune-XXXXXX";
static char repo_dir[256], cat_path[256], src_dir[256];

static void put_file(const char *name, size_t len, unsigned seed)
{
    char path[512];
    uint8_t *b = malloc(len ? len : 1);
    uint64_t z = seed * 0x9E3779B97F4A7C15ULL + 1;
    size_t i;
    FILE *f;
    for (i = 0; i < len; i++) {
        z ^= z << 13, z ^= z >> 7, z ^= z << 17;
        b[i] = (uint8_t)z;
    }
    snprintf(path, sizeof path, "%s/%s", src_dir, name);
    f = fopen(path, "wb");
    if (!f || fwrite(b, 1, len, f) != len) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        failures++;
    }
    if (f)
        fclose(f);
    free(b);
}

static int backup(cairn_repo *r, char id[CAIRN_HEX_LEN + 1], cairn_err *err)
{
    const char *paths[] = {src_dir};
    struct cairn_backup_opts o;
    struct cairn_backup_result res;
    int rc;
    memset(&o, 0, sizeof o);
    o.paths = paths;
    o.n_paths = 1;
    o.source = "unit";
    o.workers = 2;
    rc = cairn_backup_run(r, &o, &res, err);
    if (rc == CAIRN_OK)
        memcpy(id, res.id, CAIRN_HEX_LEN + 1);
    return rc;
}

static uint64_t count_snapshots(cairn_repo *r)
{
    uint64_t n = 0;
    cairn_catalog_count(cairn_repo_catalog(r), "snapshots", &n, NULL);
    return n;
}

static void test_parsers(void)
{
    struct cairn_prune_opts o;
    uint64_t b;
    cairn_err err;
    cairn_prune_opts_init(&o);
    CHECK(o.max_unused_pct == 10 && o.max_unused_bytes < 0 && o.grace_ns == 3600000000000LL,
          "defaults");
    CHECK(cairn_parse_size("512M", &b, &err) == CAIRN_OK && b == 512ull << 20, "512M");
    CHECK(cairn_parse_size("2GiB", &b, &err) == CAIRN_OK && b == 2ull << 30, "2GiB");
    CHECK(cairn_parse_size("1.5K", &b, &err) == CAIRN_OK && b == 1536, "1.5K");
    CHECK(cairn_parse_size("123", &b, &err) == CAIRN_OK && b == 123, "123");
    CHECK(cairn_parse_size("12Q", &b, &err) != CAIRN_OK && strstr(err.msg, "'12Q'"), "12Q");
    CHECK(cairn_parse_size("-1", &b, &err) != CAIRN_OK, "-1");
    CHECK(cairn_prune_parse_unused("5%", &o, &err) == CAIRN_OK && o.max_unused_pct == 5 &&
              o.max_unused_bytes < 0,
          "5%%");
    CHECK(cairn_prune_parse_unused("200M", &o, &err) == CAIRN_OK &&
              o.max_unused_bytes == 200 << 20,
          "200M");
    CHECK(cairn_prune_parse_unused("unlimited", &o, &err) == CAIRN_OK && o.max_unused_pct == 100 &&
              o.max_unused_bytes < 0,
          "unlimited");
    CHECK(cairn_prune_parse_unused("150%", &o, &err) != CAIRN_OK, "150%%");
    CHECK(cairn_prune_parse_unused("x%", &o, &err) != CAIRN_OK, "x%%");
}

static void test_locks(cairn_repo *r)
{
    cairn_lock *a = NULL, *b = NULL, *x = NULL;
    struct cairn_lock_opts bk = {"backup", 0, 0, 1}, pr = {"prune", 0, 0, 1};
    char id[CAIRN_HEX_LEN + 1];
    cairn_err err;
    int rc;
    CHECK(cairn_lock_acquire(r, CAIRN_LOCK_SHARED, &bk, &a, &err) == CAIRN_OK, "shared: %s",
          err.msg);
    CHECK(cairn_lock_acquire(r, CAIRN_LOCK_SHARED, &bk, &b, &err) == CAIRN_OK,
          "second shared: %s", err.msg);
    rc = cairn_lock_acquire(r, CAIRN_LOCK_EXCLUSIVE, &pr, &x, &err);
    CHECK(rc == CAIRN_RETRY && !x, "exclusive while shared held: rc %d", rc);
    CHECK(rc != CAIRN_RETRY || (strstr(err.msg, "shared lock 'locks/") &&
                                strstr(err.msg, "of backup")),
          "refusal names the lease: %s", err.msg);
    CHECK(a && cairn_lock_check(a, &err) == CAIRN_OK, "check of a fresh lease: %s", err.msg);
    cairn_lock_release(a, NULL);
    cairn_lock_release(b, NULL);
    CHECK(cairn_lock_acquire(r, CAIRN_LOCK_EXCLUSIVE, &pr, &x, &err) == CAIRN_OK,
          "exclusive once free: %s", err.msg);
    rc = cairn_lock_acquire(r, CAIRN_LOCK_SHARED, &bk, &a, &err);
    CHECK(rc == CAIRN_RETRY && strstr(err.msg, "exclusive lock") && strstr(err.msg, "of prune"),
          "shared while exclusive held: rc %d %s", rc, err.msg);
    /* a backup refuses to start under the exclusive lease and writes nothing */
    {
        uint64_t before = count_snapshots(r);
        rc = backup(r, id, &err);
        CHECK(rc == CAIRN_RETRY && strstr(err.msg, "exclusive lock"),
              "backup under prune's lease: rc %d %s", rc, err.msg);
        CHECK(count_snapshots(r) == before, "no snapshot written");
    }
    cairn_lock_release(x, NULL);
    /* an expired lease is ignored */
    {
        struct cairn_lock_opts shortl = {"prune", 0, 1, 1};
        CHECK(cairn_lock_acquire(r, CAIRN_LOCK_EXCLUSIVE, &shortl, &x, &err) == CAIRN_OK,
              "short lease: %s", err.msg);
        usleep(2000);
        CHECK(cairn_lock_acquire(r, CAIRN_LOCK_EXCLUSIVE, &pr, &a, &err) == CAIRN_OK,
              "an expired lease does not block: %s", err.msg);
        CHECK(x && cairn_lock_check(x, &err) != CAIRN_OK, "check of an expired lease fails");
        cairn_lock_release(a, NULL);
        cairn_lock_release(x, NULL);
    }
    /* a held lease is refreshed: with a 2 s lease (rewritten every second),
     * it is still valid 3 s later, and others still see it */
    {
        struct cairn_lock_opts two = {"backup", 0, 2000000000LL, 1};
        CHECK(cairn_lock_acquire(r, CAIRN_LOCK_SHARED, &two, &a, &err) == CAIRN_OK,
              "2 s lease: %s", err.msg);
        sleep(3);
        CHECK(a && cairn_lock_check(a, &err) == CAIRN_OK, "refreshed lease valid: %s", err.msg);
        rc = cairn_lock_acquire(r, CAIRN_LOCK_EXCLUSIVE, &pr, &x, &err);
        CHECK(rc == CAIRN_RETRY, "a refreshed lease still blocks prune: rc %d", rc);
        cairn_lock_release(a, NULL);
    }
    {
        char p[512];
        struct stat st;
        snprintf(p, sizeof p, "%s/locks", repo_dir);
        CHECK(stat(p, &st) != 0 || st.st_nlink == 2, "every lease removed on release");
    }
}

struct hook_calls {
    int n;
    char oldest[CAIRN_HEX_LEN + 1];
    int64_t oldest_ns;
};

static int hook(void *arg, cairn_repo *r, const char *source, const char *oldest_id,
                int64_t oldest_ns, int dry_run, cairn_err *err)
{
    struct hook_calls *h = arg;
    (void)r;
    (void)dry_run;
    (void)err;
    h->n++;
    snprintf(h->oldest, sizeof h->oldest, "%s", oldest_id ? oldest_id : "");
    h->oldest_ns = oldest_ns;
    return strcmp(source, "unit") == 0 ? CAIRN_OK : CAIRN_FAILED;
}

/* before_remove: mode 1 defers the first id asked about, mode 2 fails. */
struct br_calls {
    int mode, n;
    char first[CAIRN_HEX_LEN + 1];
};

static int before_remove(void *arg, cairn_repo *r, const char *id, cairn_err *err)
{
    struct br_calls *b = arg;
    (void)r;
    if (b->n++ == 0)
        snprintf(b->first, sizeof b->first, "%s", id);
    if (b->mode == 2)
        return cairn_error(err, CAIRN_FAILED, "refused by the hook");
    return b->mode == 1 && b->n == 1 ? CAIRN_RETRY : CAIRN_OK;
}

static void test_forget_prune(cairn_repo *r)
{
    char id[5][CAIRN_HEX_LEN + 1], old_id[CAIRN_HEX_LEN + 1], new_id[CAIRN_HEX_LEN + 1];
    struct cairn_policy pol;
    struct cairn_forget_opts fo;
    struct cairn_forget_result fr;
    struct cairn_prune_opts po;
    struct cairn_prune_result pres;
    struct cairn_check_result cr;
    struct hook_calls h;
    cairn_err err;
    int i;
    const char *add[] = {"keep"};
    char name[32];
    put_file("shared.bin", 300000, 1);
    for (i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "u%d.bin", i);
        put_file(name, 1500000, 10 + (unsigned)i);
        if (i) {
            char p[512];
            snprintf(p, sizeof p, "%s/u%d.bin", src_dir, i - 1);
            unlink(p);
        }
        CHECK(backup(r, id[i], &err) == CAIRN_OK, "backup %d: %s", i, err.msg);
    }
    /* pin the first one */
    CHECK(cairn_snapshot_retag(r, id[0], add, 1, NULL, 0, old_id, new_id, &err) == CAIRN_OK,
          "retag: %s", err.msg);
    CHECK(strcmp(old_id, id[0]) == 0 && strcmp(new_id, id[0]) != 0, "retag gave a new id");
    memcpy(id[0], new_id, sizeof new_id);
    CHECK(cairn_snapshot_retag(r, id[0], add, 1, NULL, 0, old_id, new_id, &err) == CAIRN_OK &&
              strcmp(old_id, new_id) == 0,
          "retag without change keeps the id");

    /* an empty policy is refused */
    memset(&pol, 0, sizeof pol);
    memset(&fo, 0, sizeof fo);
    fo.policy = &pol;
    CHECK(cairn_forget(r, &fo, &fr, &err) == CAIRN_FAILED && strstr(err.msg, "refusing"),
          "empty policy refused");
    /* keep-last 1: the pinned one and the newest stay */
    pol.last = 1;
    { /* before_remove: a deferred snapshot stays (kept); an error stops forget */
        struct br_calls b;
        memset(&b, 0, sizeof b);
        b.mode = 2;
        fo.before_remove = before_remove;
        fo.before_remove_arg = &b;
        CHECK(cairn_forget(r, &fo, &fr, &err) == CAIRN_FAILED &&
                  strstr(err.msg, "refused by the hook") && count_snapshots(r) == 4,
              "a hook error stops forget: %s", err.msg);
        memset(&b, 0, sizeof b);
        b.mode = 1;
        CHECK(cairn_forget(r, &fo, &fr, &err) == CAIRN_OK && fr.removed == 1 &&
                  fr.deferred == 1 && fr.kept == 3 && b.n == 2,
              "deferred: %s removed %llu deferred %llu", err.msg, (unsigned long long)fr.removed,
              (unsigned long long)fr.deferred);
        CHECK(strcmp(b.first, id[2]) == 0 && count_snapshots(r) == 3,
              "the newer candidate was deferred and kept");
        fo.dry_run = 1;
        b.n = 0;
        CHECK(cairn_forget(r, &fo, &fr, &err) == CAIRN_OK && b.n == 0, "no hook in a dry run");
        fo.before_remove = NULL;
        fo.dry_run = 0;
    }
    memset(&h, 0, sizeof h);
    fo.log_retention = hook;
    fo.log_retention_arg = &h;
    fo.dry_run = 1;
    CHECK(cairn_forget(r, &fo, &fr, &err) == CAIRN_OK && fr.removed == 1 && fr.kept == 2,
          "dry run: %s removed %llu", err.msg, (unsigned long long)fr.removed);
    CHECK(count_snapshots(r) == 3, "dry run removed nothing");
    fo.dry_run = 0;
    CHECK(cairn_forget(r, &fo, &fr, &err) == CAIRN_OK && fr.removed == 1, "forget: %s",
          err.msg);
    CHECK(count_snapshots(r) == 2, "two left");
    CHECK(h.n == 2 && strcmp(h.oldest, id[0]) == 0, "hook told the oldest kept (%d, %.12s)",
          h.n, h.oldest);

    /* prune: dry run, then the default grace keeps everything young */
    cairn_prune_opts_init(&po);
    po.dry_run = 1;
    po.grace_ns = 0;
    CHECK(cairn_prune(r, &po, &pres, &err) == CAIRN_OK, "dry run: %s", err.msg);
    CHECK(pres.deleted_packs + pres.repacked_packs >= 1 && pres.written_packs == 0,
          "dry run plans work and does none");
    cairn_prune_opts_init(&po);
    CHECK(cairn_prune(r, &po, &pres, &err) == CAIRN_OK && pres.deleted_packs == 0 &&
              pres.repacked_packs == 0 && pres.young_packs >= 1,
          "grace keeps young packs: %s", err.msg);
    po.grace_ns = 0;
    po.max_unused_pct = 0;
    CHECK(cairn_prune(r, &po, &pres, &err) == CAIRN_OK, "prune: %s", err.msg);
    CHECK(pres.freed_bytes > 2000000 && pres.unused_after == 0, "freed %llu, unused left %llu",
          (unsigned long long)pres.freed_bytes, (unsigned long long)pres.unused_after);
    CHECK(cairn_check(r, 1, NULL, NULL, &cr, &err) == CAIRN_OK && cr.problems == 0 &&
              cr.unindexed_packs == 0,
          "check after prune: %llu problems", (unsigned long long)cr.problems);
    CHECK(cairn_prune(r, &po, &pres, &err) == CAIRN_OK && pres.freed_bytes == 0 &&
              pres.indexes_deleted == 0,
          "second prune has nothing to do");

    /* forget by id */
    {
        const char *ids[] = {id[3]};
        struct cairn_forget_opts fi;
        memset(&fi, 0, sizeof fi);
        fi.ids = ids;
        fi.n_ids = 1;
        CHECK(cairn_forget(r, &fi, &fr, &err) == CAIRN_OK && fr.removed == 1, "by id: %s",
              err.msg);
        CHECK(count_snapshots(r) == 1, "one left");
        ids[0] = "ffffffffffff";
        CHECK(cairn_forget(r, &fi, &fr, &err) == CAIRN_NOTFOUND, "unknown id refused");
        ids[0] = id[0];
        CHECK(cairn_forget(r, &fi, &fr, &err) == CAIRN_FAILED && strstr(err.msg, "pinned"),
              "a pinned snapshot is not removed by id: %s", err.msg);
        CHECK(count_snapshots(r) == 1, "still one");
    }
    /* a damaged repository: prune refuses and deletes nothing */
    {
        char p[600], key[128];
        struct cairn_blob_loc loc;
        cairn_id tree;
        struct cairn_snapshot *s = NULL;
        CHECK(cairn_repo_snapshot_get(r, "latest", NULL, &s, &err) == CAIRN_OK, "latest");
        if (s) {
            tree = s->tree;
            cairn_snapshot_free(s);
            CHECK(cairn_catalog_find_blob(cairn_repo_catalog(r), &tree, &loc, &err) == CAIRN_OK,
                  "tree located");
            cairn_pack_key(&loc.pack, key, sizeof key);
            snprintf(p, sizeof p, "%s/%s", repo_dir, key);
            CHECK(unlink(p) == 0, "remove a pack");
            po.grace_ns = 0;
            CHECK(cairn_prune(r, &po, &pres, &err) != CAIRN_OK &&
                      strstr(err.msg, "prune deletes nothing"),
                  "prune refuses a damaged repository: %s", err.msg);
        }
    }
    cairn_policy_clear(&pol);
}

int main(void)
{
    cairn_repo *r = NULL;
    cairn_err err;
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(repo_dir, sizeof repo_dir, "%s/repo", base);
    snprintf(cat_path, sizeof cat_path, "%s/catalog.db", base);
    snprintf(src_dir, sizeof src_dir, "%s/src", base);
    mkdir(src_dir, 0755);
    test_parsers();
    if (cairn_repo_init(repo_dir, &err) != CAIRN_OK ||
        cairn_repo_open(repo_dir, cat_path, &r, &err) != CAIRN_OK) {
        fprintf(stderr, "FAIL: repository: %s\n", err.msg);
        failures++;
    } else {
        test_locks(r);
        test_forget_prune(r);
    }
    cairn_repo_free(r);
    test_rm_tree(base);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_prune: ok\n");
    return 0;
}

/* tests/unit/test_restore.c — cairn_restore() and cairn_dump(): round trips
 * through real backups (cairn_backup_run), and the security checks with crafted
 * snapshots whose blobs are written here with the public pack/catalog APIs:
 * names the tree decoder must refuse, hard link targets that leave the target,
 * symlinks in the target where the snapshot has a directory, a missing pack,
 * include globs, sparse files (holes stay holes, trailing holes keep the size),
 * and tar/pax/zip dumps read back with libarchive (and GNU tar when present). */
#define _GNU_SOURCE
#include "../../engine/archive_dl.h"
#include "../../engine/backup.h"
#include "../../engine/pack.h"
#include "../../restore/restore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static char base[] = "/tmp/cairn-test-restore-XXXXXX";
static int failures;
static cairn_err err;
static cairn_repo *repo;
static cairn_buf warnings = CAIRN_BUF_INIT;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);              \
            failures++;                                                                  \
            return;                                                                      \
        }                                                                                \
    } while (0)

#define CHECK_RC(call, want)                                                             \
    do {                                                                                 \
        int rc_ = (call);                                                                \
        if (rc_ != (want)) {                                                             \
            fprintf(stderr, "FAIL %s:%d: %s returned %d, want %d (%s)\nwarnings:\n%s\n", \
                    __FILE__, __LINE__, #call, rc_, (want), err.msg,                     \
                    warnings.len ? cairn_buf_cstr(&warnings) : "");                      \
            failures++;                                                                  \
            return;                                                                      \
        }                                                                                \
    } while (0)

#define CHECK_OK(call) CHECK_RC(call, CAIRN_OK)

/* A warning containing all the given fragments. */
#define CHECK_WARNED(...)                                                                \
    do {                                                                                 \
        if (!warned(__VA_ARGS__, NULL)) {                                                \
            fprintf(stderr, "FAIL %s:%d: no warning with %s\nwarnings:\n%s\n", __FILE__, \
                    __LINE__, #__VA_ARGS__, warnings.len ? cairn_buf_cstr(&warnings) : ""); \
            failures++;                                                                  \
            return;                                                                      \
        }                                                                                \
    } while (0)

/* ---- helpers ---- */

static void (*warn_hook)(void); /* runs on the first warning, then is cleared */

static void on_warn(void *arg, const char *msg)
{
    (void)arg;
    if (warn_hook) {
        void (*h)(void) = warn_hook;
        warn_hook = NULL;
        h();
    }
    cairn_buf_append(&warnings, msg, strlen(msg));
    cairn_buf_putc(&warnings, '\n');
}

static int warned(const char *first, ...)
{
    const char *all = warnings.len ? cairn_buf_cstr(&warnings) : "";
    const char *line = all;
    while (*line) {
        const char *end = strchr(line, '\n');
        char *l = strndup(line, end ? (size_t)(end - line) : strlen(line));
        const char *frag;
        int ok = 1;
        va_list ap;
        va_start(ap, first);
        for (frag = first; frag; frag = va_arg(ap, const char *))
            if (!strstr(l, frag))
                ok = 0;
        va_end(ap);
        free(l);
        if (ok)
            return 1;
        if (!end)
            break;
        line = end + 1;
    }
    return 0;
}

__attribute__((format(printf, 1, 2))) static char *P(const char *fmt, ...)
{
    static char buf[16][1024];
    static int next;
    char *p = buf[next++ % 16];
    va_list ap;
    int n = snprintf(p, sizeof buf[0], "%s/", base);
    va_start(ap, fmt);
    vsnprintf(p + n, sizeof buf[0] - (size_t)n, fmt, ap);
    va_end(ap);
    return p;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(p) != 0) {
        chmod(p, 0700);
        remove(p);
    }
    return 0;
}

static int make_writable(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_D || flag == FTW_DP)
        chmod(p, (st->st_mode & 07777) | 0700);
    return 0;
}

static void rm_rf(const char *p)
{
    nftw(p, make_writable, 16, FTW_PHYS);
    nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot create %s: %s\n", path, strerror(errno));
        exit(1);
    }
    if (len)
        fwrite(data, 1, len, f);
    fclose(f);
}

static void write_random(const char *path, size_t len, unsigned seed)
{
    uint8_t *b = malloc(len);
    size_t i;
    uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (uint8_t)x;
    }
    write_file(path, b, len);
    free(b);
}

static void pwrite_at(const char *path, const char *data, off_t off)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0 || pwrite(fd, data, strlen(data), off) != (ssize_t)strlen(data)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    close(fd);
}

static void make_sparse(const char *path, off_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, size) != 0) {
        fprintf(stderr, "cannot create %s\n", path);
        exit(1);
    }
    close(fd);
}

static void set_mtime(const char *path, time_t t)
{
    struct timespec ts[2] = {{t, 0}, {t, 123456789}};
    utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
}

static int same_content(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    char ba[65536], bb[65536];
    while (same) {
        size_t na = fread(ba, 1, sizeof ba, fa), nb = fread(bb, 1, sizeof bb, fb);
        if (na != nb || memcmp(ba, bb, na) != 0)
            same = 0;
        if (na == 0)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

static int file_is(const char *path, const char *content)
{
    char buf[4096];
    FILE *f = fopen(path, "rb");
    size_t n;
    if (!f)
        return 0;
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return n == strlen(content) && memcmp(buf, content, n) == 0;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    int empty = 1;
    if (!d)
        return 0;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            empty = 0;
    closedir(d);
    return empty;
}

/* Recursively compares a restored tree with its source: types, modes, sizes,
 * mtimes (not of symlinks), content, link targets. Returns the first mismatch
 * or NULL. */
static const char *compare_trees(const char *a, const char *b)
{
    static char why[2048];
    DIR *d = opendir(a);
    struct dirent *de;
    const char *res = NULL;
    if (!d) {
        snprintf(why, sizeof why, "cannot open %s", a);
        return why;
    }
    while (!res && (de = readdir(d)) != NULL) {
        char pa[1024], pb[1024];
        struct stat sa, sb;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(pa, sizeof pa, "%s/%s", a, de->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, de->d_name);
        if (lstat(pa, &sa) != 0 || lstat(pb, &sb) != 0) {
            snprintf(why, sizeof why, "%s missing", pb);
            res = why;
            break;
        }
        if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT) ||
            (!S_ISLNK(sa.st_mode) && (sa.st_mode & 07777) != (sb.st_mode & 07777))) {
            snprintf(why, sizeof why, "%s: mode %o, want %o", pb, sb.st_mode, sa.st_mode);
            res = why;
        } else if (S_ISREG(sa.st_mode) &&
                   (sa.st_size != sb.st_size || !same_content(pa, pb))) {
            snprintf(why, sizeof why, "%s: content differs", pb);
            res = why;
        } else if (!S_ISLNK(sa.st_mode) && (sa.st_mtim.tv_sec != sb.st_mtim.tv_sec ||
                                            sa.st_mtim.tv_nsec != sb.st_mtim.tv_nsec)) {
            snprintf(why, sizeof why, "%s: mtime differs", pb);
            res = why;
        } else if (S_ISLNK(sa.st_mode)) {
            char la[1024] = {0}, lb[1024] = {0};
            if (readlink(pa, la, sizeof la - 1) < 0 || readlink(pb, lb, sizeof lb - 1) < 0 ||
                strcmp(la, lb)) {
                snprintf(why, sizeof why, "%s: link target differs", pb);
                res = why;
            }
        } else if (S_ISDIR(sa.st_mode)) {
            res = compare_trees(pa, pb);
        }
    }
    closedir(d);
    return res;
}

static int have_tool(const char *name)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    int st;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- repositories ---- */

static int backup_dir(const char *dir, char id[CAIRN_HEX_LEN + 1])
{
    struct cairn_backup_opts o;
    struct cairn_backup_result res;
    const char *paths[1];
    int rc;
    memset(&o, 0, sizeof o);
    paths[0] = dir;
    o.paths = paths;
    o.n_paths = 1;
    o.source = dir;
    o.force_read = 1;
    o.warn = on_warn;
    rc = cairn_backup_run(repo, &o, &res, &err);
    if (rc == CAIRN_OK)
        memcpy(id, res.id, CAIRN_HEX_LEN + 1);
    return rc;
}

/* Stores one blob in its own pack and records it in the local catalog. */
static int put_blob(uint8_t type, const void *data, size_t len, cairn_id *id)
{
    cairn_store *s = cairn_repo_store(repo);
    cairn_catalog *cat = cairn_repo_catalog(repo);
    cairn_pack_writer *w;
    struct cairn_pack_entry *entries = NULL;
    cairn_id pack;
    char *path = NULL, key[128];
    uint64_t size;
    size_t n = 0, i;
    int rc;
    cairn_repo_hash(repo, data, len, id);
    if ((rc = cairn_pack_writer_new(s->tmpdir, &w, &err)) != CAIRN_OK)
        return rc;
    if ((rc = cairn_pack_writer_add(w, id, type, 0, (uint32_t)len, data, (uint32_t)len, &err)) !=
        CAIRN_OK) {
        cairn_pack_writer_abort(w);
        return rc;
    }
    if ((rc = cairn_pack_writer_finish(w, &pack, &path, &size, &entries, &n, &err)) != CAIRN_OK)
        return rc;
    cairn_pack_key(&pack, key, sizeof key);
    rc = cairn_store_put_file(s, key, path, &err);
    if (rc == CAIRN_OK)
        rc = cairn_catalog_add_pack(cat, &pack, size, "test", &err);
    for (i = 0; rc == CAIRN_OK && i < n; i++) {
        struct cairn_blob_loc loc;
        memset(&loc, 0, sizeof loc);
        loc.pack = pack;
        loc.offset = entries[i].offset;
        loc.stored_len = entries[i].stored_len;
        loc.raw_len = entries[i].raw_len;
        loc.type = entries[i].type;
        loc.flags = entries[i].flags;
        rc = cairn_catalog_add_blob(cat, &entries[i].id, &loc, &err);
    }
    free(path);
    free(entries);
    return rc;
}

static void node_file(struct cairn_tree *t, const char *name, const char *content)
{
    struct cairn_node n;
    memset(&n, 0, sizeof n);
    n.name = strdup(name);
    n.type = CAIRN_T_FILE;
    n.mode = 0644;
    n.nlink = 1;
    n.mtime_ns = n.atime_ns = 1600000000LL * 1000000000LL;
    n.size = strlen(content);
    if (n.size) {
        n.chunks = calloc(1, sizeof *n.chunks);
        n.n_chunks = 1;
        put_blob(CAIRN_BLOB_DATA, content, n.size, &n.chunks[0]);
    }
    cairn_tree_add(t, &n);
}

static void node_link(struct cairn_tree *t, const char *name, const char *target, uint64_t size)
{
    struct cairn_node n;
    memset(&n, 0, sizeof n);
    n.name = strdup(name);
    n.type = CAIRN_T_FILE;
    n.mode = 0644;
    n.nlink = 2;
    n.size = size;
    n.hardlink = strdup(target);
    cairn_tree_add(t, &n);
}

static void node_dir(struct cairn_tree *t, const char *name, const cairn_id *sub)
{
    struct cairn_node n;
    memset(&n, 0, sizeof n);
    n.name = strdup(name);
    n.type = CAIRN_T_DIR;
    n.mode = 0755;
    n.subtree = *sub;
    cairn_tree_add(t, &n);
}

/* Encodes, stores and frees a tree. */
static int put_tree(struct cairn_tree *t, cairn_id *id)
{
    cairn_buf b = CAIRN_BUF_INIT;
    int rc;
    cairn_tree_sort(t);
    rc = cairn_tree_encode(t, &b);
    if (rc == CAIRN_OK)
        rc = put_blob(CAIRN_BLOB_TREE, b.data, b.len, id);
    cairn_buf_free(&b);
    cairn_tree_free(t);
    return rc;
}

static struct cairn_snapshot *crafted_snapshot(const cairn_id *tree)
{
    struct cairn_snapshot *s = NULL;
    char hex[CAIRN_HEX_LEN + 1], *text;
    json_t *m;
    cairn_id_hex(tree, hex);
    m = json_pack("{s:s, s:s, s:I, s:s}", "tree", hex, "source", "crafted", "time_ns",
                  (json_int_t)1, "hostname", "test");
    text = json_dumps(m, 0);
    json_decref(m);
    if (cairn_snapshot_parse("c0ffee", (const uint8_t *)text, strlen(text), &s, &err) != CAIRN_OK)
        s = NULL;
    free(text);
    return s;
}

static int do_restore(const struct cairn_snapshot *snap, const char *target, int overwrite,
                      const char *const *inc, size_t n_inc, int workers,
                      struct cairn_restore_stats *st)
{
    struct cairn_restore_opts o;
    memset(&o, 0, sizeof o);
    o.target = target;
    o.overwrite = overwrite;
    o.includes = inc;
    o.n_includes = n_inc;
    o.workers = workers;
    o.warn = on_warn;
    cairn_buf_reset(&warnings);
    cairn_err_clear(&err);
    return cairn_restore(repo, snap, &o, st, &err);
}

static int do_dump(const struct cairn_snapshot *snap, const char *path, const char *format,
                   const char *out)
{
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), rc;
    if (fd < 0)
        return -1000;
    cairn_buf_reset(&warnings);
    cairn_err_clear(&err);
    rc = cairn_dump(repo, snap, path, format, fd, on_warn, NULL, &err);
    close(fd);
    return rc;
}

/* ---- the source tree used for the round trips ---- */

static char main_id[CAIRN_HEX_LEN + 1];
static const off_t SPARSE_SIZE = 1LL << 30;

static void make_source(void)
{
    char src[1100];
    snprintf(src, sizeof src, "%s", P("src"));
    mkdir(src, 0755);
    mkdir(P("src/etc"), 0755);
    mkdir(P("src/sub"), 0755);
    mkdir(P("src/sub/deep"), 0755);
    mkdir(P("src/ro"), 0755);
    write_file(P("src/a.txt"), "hello\n", 6);
    write_file(P("src/empty"), "", 0);
    write_random(P("src/big.bin"), 5u << 20, 1);
    write_file(P("src/etc/x.conf"), "x=1\n", 4);
    write_file(P("src/etc/y.conf"), "y=2\n", 4);
    write_file(P("src/etc/z.txt"), "z\n", 2);
    write_file(P("src/etc/deeper.conf.d"), "not a dir\n", 10);
    write_file(P("src/sub/deep/f"), "deep\n", 5);
    write_file(P("src/ro/file"), "read only dir\n", 14);
    link(P("src/a.txt"), P("src/sub/hard.txt"));
    link(P("src/a.txt"), P("src/sub/hard2.txt"));
    symlink("../a.txt", P("src/sub/link"));
    /* 1 GiB with two small data extents and a trailing hole */
    make_sparse(P("src/sparse"), SPARSE_SIZE);
    pwrite_at(P("src/sparse"), "first extent", 8192);
    pwrite_at(P("src/sparse"), "second extent", 300LL << 20);
    make_sparse(P("src/allhole"), 64LL << 20);
    /* a small sparse file in sub/ for the tar/zip dumps (holes as zeros) */
    make_sparse(P("src/sub/small-sparse"), 3LL << 20);
    pwrite_at(P("src/sub/small-sparse"), "middle", 1LL << 20);
    chmod(P("src/ro/file"), 0444);
    chmod(P("src/ro"), 0555);
    chmod(P("src/etc"), 0710);
    set_mtime(P("src/sub/deep/f"), 1500000000);
    set_mtime(P("src/sub/deep"), 1500000001);
    set_mtime(P("src/sub"), 1500000002);
    set_mtime(P("src/etc"), 1500000003);
    set_mtime(P("src/ro"), 1500000004);
    chmod(src, 0751);
    set_mtime(src, 1500000005);
}

/* ---- tests ---- */

static void test_decoder_refuses_bad_names(void)
{
    static const char *bad[] = {"..", ".", "a/b", "", "/etc"};
    size_t i;
    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct cairn_tree t, back;
        cairn_buf b = CAIRN_BUF_INIT;
        memset(&t, 0, sizeof t);
        node_file(&t, "fine", "x");
        node_file(&t, bad[i], "y");
        cairn_tree_sort(&t);
        CHECK_OK(cairn_tree_encode(&t, &b));
        cairn_tree_free(&t);
        cairn_err_clear(&err);
        CHECK_RC(cairn_tree_decode(b.data, b.len, &back, &err), CAIRN_CORRUPT);
        CHECK(strstr(err.msg, "invalid entry name") != NULL);
        cairn_buf_free(&b);
    }
}

/* A subtree with a ".." entry: its directory is reported and skipped, the rest
 * restored, nothing written outside. */
static void test_bad_subtree(void)
{
    struct cairn_tree t;
    struct cairn_restore_stats st;
    struct cairn_snapshot *snap;
    cairn_id sub, root;
    mkdir(P("bad"), 0755);
    mkdir(P("bad/outside"), 0755);
    memset(&t, 0, sizeof t);
    node_file(&t, "..", "escaped");
    node_file(&t, "ok", "fine");
    CHECK_OK(put_tree(&t, &sub));
    memset(&t, 0, sizeof t);
    node_dir(&t, "d", &sub);
    node_file(&t, "top", "top file");
    CHECK_OK(put_tree(&t, &root));
    CHECK((snap = crafted_snapshot(&root)) != NULL);
    CHECK_RC(do_restore(snap, P("bad/target"), 0, NULL, 0, 0, &st), CAIRN_WARN);
    CHECK_WARNED("cannot restore the contents of 'd'", "invalid entry name");
    CHECK(st.failed == 1);
    CHECK(file_is(P("bad/target/top"), "top file"));
    CHECK(!exists(P("bad/target/d/ok")));
    CHECK(!exists(P("bad/escaped")));
    CHECK(dir_is_empty(P("bad/outside")));
    cairn_snapshot_free(snap);

    /* a root tree the decoder refuses: the restore cannot run at all */
    memset(&t, 0, sizeof t);
    node_file(&t, "..", "escaped");
    CHECK_OK(put_tree(&t, &root));
    CHECK((snap = crafted_snapshot(&root)) != NULL);
    CHECK(do_restore(snap, P("bad/target2"), 0, NULL, 0, 0, &st) < CAIRN_WARN);
    CHECK(strstr(err.msg, "root tree") != NULL);
    CHECK(!exists(P("bad/escaped")));
    cairn_snapshot_free(snap);
}

static void test_hardlink_escape(void)
{
    struct cairn_tree t;
    struct cairn_restore_stats st;
    struct cairn_snapshot *snap;
    struct stat s1, s2;
    cairn_id root;
    mkdir(P("hl"), 0755);
    mkdir(P("hl/x"), 0755);
    memset(&t, 0, sizeof t);
    node_file(&t, "a_ok", "hello");
    node_link(&t, "evil", "../../etc/passwd", 0);
    node_link(&t, "evil2", "/etc/passwd", 0);
    node_link(&t, "evil3", "a_ok/./x", 0);
    node_link(&t, "good", "a_ok", 5);
    CHECK_OK(put_tree(&t, &root));
    CHECK((snap = crafted_snapshot(&root)) != NULL);
    CHECK_RC(do_restore(snap, P("hl/x/target"), 0, NULL, 0, 0, &st), CAIRN_WARN);
    CHECK_WARNED("'evil'", "../../etc/passwd", "'..' path component");
    CHECK_WARNED("'evil2'", "/etc/passwd", "absolute path");
    CHECK_WARNED("'evil3'", "'.' path component");
    CHECK(st.failed == 3);
    CHECK(!exists(P("hl/x/target/evil")));
    CHECK(!exists(P("hl/x/target/evil2")));
    CHECK(!exists(P("hl/x/target/evil3")));
    CHECK(stat(P("hl/x/target/a_ok"), &s1) == 0 && stat(P("hl/x/target/good"), &s2) == 0);
    CHECK(s1.st_ino == s2.st_ino && s1.st_nlink == 2);
    CHECK(file_is(P("hl/x/target/good"), "hello"));

    /* the dump leaves them out too */
    CHECK_RC(do_dump(snap, NULL, "pax", P("hl/d.tar")), CAIRN_WARN);
    CHECK_WARNED("cannot dump 'evil'", "'..' path component");
    {
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        int n = 0, links = 0;
        archive_read_support_format_all(a);
        CHECK(archive_read_open_filename(a, P("hl/d.tar"), 10240) == ARCHIVE_OK);
        while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
            n++;
            if (archive_entry_hardlink(e)) {
                links++;
                CHECK(strcmp(archive_entry_hardlink(e), "a_ok") == 0);
            }
            CHECK(strncmp(archive_entry_pathname(e), "evil", 4) != 0);
        }
        archive_read_free(a);
        CHECK(n == 2 && links == 1);
    }
    cairn_snapshot_free(snap);
}

static void test_roundtrip(struct cairn_snapshot *snap)
{
    struct cairn_restore_stats st;
    struct stat s1, s2;
    const char *why;

    CHECK_OK(do_restore(snap, P("rt1"), 0, NULL, 0, 2, &st));
    why = compare_trees(P("src"), P("rt1"));
    if (why)
        fprintf(stderr, "mismatch: %s\n", why);
    CHECK(why == NULL);
    CHECK(st.failed == 0 && st.files == 14 && st.dirs == 4 && st.other == 1);
    /* the root's metadata went onto the target itself */
    CHECK(stat(P("rt1"), &s1) == 0);
    CHECK((s1.st_mode & 07777) == 0751 && s1.st_mtim.tv_sec == 1500000005);
    /* hard link kept */
    CHECK(stat(P("rt1/a.txt"), &s1) == 0 && stat(P("rt1/sub/hard.txt"), &s2) == 0);
    CHECK(s1.st_ino == s2.st_ino);
    /* holes stay holes, and the trailing hole keeps the size */
    CHECK(stat(P("rt1/sparse"), &s1) == 0);
    CHECK(s1.st_size == SPARSE_SIZE);
    CHECK((long long)s1.st_blocks * 512 < (1LL << 20));
    CHECK(stat(P("rt1/allhole"), &s1) == 0);
    CHECK(s1.st_size == (64LL << 20) && s1.st_blocks * 512 < (1LL << 20));

    /* more workers than chunks, same result */
    CHECK_OK(do_restore(snap, P("rt2"), 0, NULL, 0, 16, &st));
    why = compare_trees(P("src"), P("rt2"));
    CHECK(why == NULL);

    /* a non-empty target is refused unless --overwrite */
    CHECK_RC(do_restore(snap, P("rt1"), 0, NULL, 0, 0, &st), CAIRN_FAILED);
    CHECK(strstr(err.msg, "is not empty (use --overwrite to restore into it)") != NULL);
    write_file(P("rt1/a.txt"), "changed", 7);
    CHECK_OK(do_restore(snap, P("rt1"), 1, NULL, 0, 0, &st));
    CHECK(compare_trees(P("src"), P("rt1")) == NULL);
}

struct prog {
    int calls;
    uint64_t files, bytes;
};

static void on_progress(void *arg, uint64_t files, uint64_t bytes, uint64_t tf, uint64_t tb)
{
    struct prog *p = arg;
    (void)tf;
    (void)tb;
    p->calls++;
    p->files = files;
    p->bytes = bytes;
}

static void test_progress(struct cairn_snapshot *snap)
{
    struct cairn_restore_opts o;
    struct cairn_restore_stats st;
    struct prog pr;
    memset(&o, 0, sizeof o);
    memset(&pr, 0, sizeof pr);
    o.target = P("prog");
    o.progress = on_progress;
    o.progress_arg = &pr;
    CHECK_OK(cairn_restore(repo, snap, &o, &st, &err));
    CHECK(pr.calls >= 1 && pr.calls < 100);
    CHECK(pr.files == st.files && pr.bytes == st.bytes);
}

static void test_includes(struct cairn_snapshot *snap)
{
    static const char *inc1[] = {"etc/*.conf", "/sub/hard*.txt"};
    static const char *inc2[] = {"./sub/"};
    struct cairn_restore_stats st;
    struct stat s;

    CHECK_OK(do_restore(snap, P("inc1"), 0, inc1, 2, 0, &st));
    CHECK(file_is(P("inc1/etc/x.conf"), "x=1\n"));
    CHECK(file_is(P("inc1/etc/y.conf"), "y=2\n"));
    CHECK(!exists(P("inc1/etc/z.txt")));
    CHECK(file_is(P("inc1/etc/deeper.conf.d"), "not a dir\n") == 0);
    /* the links' target a.txt is not included: the first link gets the
     * content, the second links to it */
    CHECK(file_is(P("inc1/sub/hard.txt"), "hello\n"));
    {
        struct stat s1, s2;
        CHECK(stat(P("inc1/sub/hard.txt"), &s1) == 0 && stat(P("inc1/sub/hard2.txt"), &s2) == 0);
        CHECK(s1.st_ino == s2.st_ino && s1.st_nlink == 2);
    }
    CHECK(!exists(P("inc1/a.txt")) && !exists(P("inc1/sub/deep")) && !exists(P("inc1/big.bin")));
    /* parent directories carry their snapshot metadata */
    CHECK(stat(P("inc1/etc"), &s) == 0 && (s.st_mode & 07777) == 0710);
    CHECK(s.st_mtim.tv_sec == 1500000003);
    CHECK(stat(P("inc1/sub"), &s) == 0 && s.st_mtim.tv_sec == 1500000002);
    CHECK(st.files == 4 && st.dirs == 2);

    CHECK_OK(do_restore(snap, P("inc2"), 0, inc2, 1, 0, &st));
    CHECK(compare_trees(P("src/sub"), P("inc2/sub")) == NULL);
    CHECK(!exists(P("inc2/etc")) && !exists(P("inc2/a.txt")));

    /* wildcards in directory components, brackets (never pruned), no match */
    {
        static const char *inc3[] = {"*/deep/f", "e[t]c/x.conf", "nothing/*"};
        CHECK_OK(do_restore(snap, P("inc3"), 0, inc3, 3, 0, &st));
        CHECK(file_is(P("inc3/sub/deep/f"), "deep\n"));
        CHECK(file_is(P("inc3/etc/x.conf"), "x=1\n"));
        CHECK(!exists(P("inc3/sub/hard.txt")) && !exists(P("inc3/etc/y.conf")));
        CHECK(st.files == 2 && st.dirs == 3);
    }
}

/* The target holds symlinks pointing outside where the snapshot has a
 * directory and a file: with --overwrite they are replaced, never followed. */
static void test_symlink_in_target(void)
{
    char id[CAIRN_HEX_LEN + 1];
    struct cairn_snapshot *snap = NULL;
    struct cairn_restore_stats st;
    struct stat s;
    mkdir(P("sl"), 0755);
    mkdir(P("sl/src"), 0755);
    mkdir(P("sl/src/d"), 0755);
    mkdir(P("sl/src/h"), 0755);
    mkdir(P("sl/src/h/sub"), 0755);
    write_file(P("sl/src/d/f"), "inside\n", 7);
    write_file(P("sl/src/g"), "gfile\n", 6);
    write_file(P("sl/src/h/sub/deep.txt"), "deep\n", 5);
    CHECK_OK(backup_dir(P("sl/src"), id));
    CHECK_OK(cairn_repo_snapshot_get(repo, id, NULL, &snap, &err));

    mkdir(P("sl/sentinel"), 0755);
    write_file(P("sl/outside-file"), "orig\n", 5);
    mkdir(P("sl/target"), 0755);
    CHECK(symlink(P("sl/sentinel"), P("sl/target/d")) == 0);
    CHECK(symlink(P("sl/outside-file"), P("sl/target/g")) == 0);
    CHECK(symlink("../sentinel", P("sl/target/h")) == 0);

    CHECK_RC(do_restore(snap, P("sl/target"), 0, NULL, 0, 0, &st), CAIRN_FAILED);
    CHECK(strstr(err.msg, "is not empty") != NULL);
    CHECK_OK(do_restore(snap, P("sl/target"), 1, NULL, 0, 0, &st));
    CHECK(lstat(P("sl/target/d"), &s) == 0 && S_ISDIR(s.st_mode));
    CHECK(lstat(P("sl/target/h"), &s) == 0 && S_ISDIR(s.st_mode));
    CHECK(lstat(P("sl/target/g"), &s) == 0 && S_ISREG(s.st_mode));
    CHECK(file_is(P("sl/target/d/f"), "inside\n"));
    CHECK(file_is(P("sl/target/g"), "gfile\n"));
    CHECK(file_is(P("sl/target/h/sub/deep.txt"), "deep\n"));
    CHECK(dir_is_empty(P("sl/sentinel")));
    CHECK(file_is(P("sl/outside-file"), "orig\n"));
    cairn_snapshot_free(snap);
}

/* Symlinks that appear in the target while a restore runs (another process
 * racing it), where the snapshot has a directory, files inside it and a file:
 * nothing may be written through them, whichever writer (libarchive or the
 * direct one) handles the entries. The symlinks are made from the warning
 * callback, which runs on the writing thread after the entry 'a_bad' (a
 * refused hard link) and before 'd', 'e' and 'x'. */
static void plant_symlinks(void)
{
    CHECK(symlink(P("dup/outside"), P("dup/target/d")) == 0);
    CHECK(symlink("../outside", P("dup/target/e")) == 0);
    CHECK(symlink(P("dup/outside-file"), P("dup/target/x")) == 0);
}

static void test_symlinks_planted_during_restore(void)
{
    struct cairn_tree t;
    struct cairn_restore_stats st;
    struct cairn_snapshot *snap;
    cairn_id sub, deeper, root;
    int rc;
    mkdir(P("dup"), 0755);
    mkdir(P("dup/outside"), 0755);
    write_file(P("dup/outside-file"), "orig\n", 5);
    memset(&t, 0, sizeof t);
    node_file(&t, "g", "deeper file");
    CHECK_OK(put_tree(&t, &deeper));
    memset(&t, 0, sizeof t);
    node_file(&t, "f", "escaped");
    node_dir(&t, "sub", &deeper);
    CHECK_OK(put_tree(&t, &sub));
    memset(&t, 0, sizeof t);
    node_link(&t, "a_bad", "../nowhere", 0);
    node_dir(&t, "d", &sub);
    node_dir(&t, "e", &sub);
    node_file(&t, "x", "overwritten");
    node_file(&t, "z", "last");
    CHECK_OK(put_tree(&t, &root));
    CHECK((snap = crafted_snapshot(&root)) != NULL);
    warn_hook = plant_symlinks;
    rc = do_restore(snap, P("dup/target"), 0, NULL, 0, 1, &st);
    warn_hook = NULL;
    CHECK(rc == CAIRN_WARN);
    CHECK(dir_is_empty(P("dup/outside")));
    CHECK(file_is(P("dup/outside-file"), "orig\n"));
    CHECK(file_is(P("dup/target/z"), "last"));
    cairn_snapshot_free(snap);
}

/* Reads a whole archive; calls check for each entry with its data streamed
 * into a sparse-aware callback. Returns the number of entries or -1. */
typedef void (*entry_fn)(struct archive *a, struct archive_entry *e, void *arg);
static int read_archive(const char *path, entry_fn fn, void *arg)
{
    struct archive *a = archive_read_new();
    struct archive_entry *e;
    int n = 0, r;
    archive_read_support_format_all(a);
    if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK) {
        archive_read_free(a);
        return -1;
    }
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        n++;
        fn(a, e, arg);
    }
    if (r != ARCHIVE_EOF)
        n = -1;
    archive_read_free(a);
    return n;
}

struct dump_check {
    int names_ok, hardlink_ok, sparse_ok, small_sparse_ok, hard_content_ok, dirs, hard2_ok;
    char bad[256];
};

static void check_entry(struct archive *a, struct archive_entry *e, void *arg)
{
    struct dump_check *c = arg;
    const char *p = archive_entry_pathname(e);
    const void *buf;
    size_t len;
    la_int64_t off;
    if (!strncmp(p, "./", 2) || p[0] == '/') {
        c->names_ok = 0;
        snprintf(c->bad, sizeof c->bad, "%s", p);
    }
    if (archive_entry_filetype(e) == AE_IFDIR)
        c->dirs++;
    if (!strcmp(p, "sub/hard.txt") && archive_entry_hardlink(e) &&
        !strcmp(archive_entry_hardlink(e), "a.txt"))
        c->hardlink_ok = 1;
    if (!strcmp(p, "sub/hard2.txt") && archive_entry_hardlink(e))
        c->hard2_ok = !strcmp(archive_entry_hardlink(e), "a.txt") ? 1 : !strcmp(archive_entry_hardlink(e), "sub/hard.txt") ? 2 : 0;
    if (!strcmp(p, "sub/hard2.txt") && !archive_entry_hardlink(e)) {
        char b[16] = {0};
        if (archive_read_data(a, b, sizeof b) == 6 && !memcmp(b, "hello\n", 6))
            c->hard2_ok = 3;
    }
    if (!strcmp(p, "sub/hard.txt") && !archive_entry_hardlink(e)) {
        char b[16] = {0};
        if (archive_read_data(a, b, sizeof b) == 6 && !memcmp(b, "hello\n", 6))
            c->hard_content_ok = 1;
    }
    if (!strcmp(p, "sparse") && archive_entry_size(e) == SPARSE_SIZE) {
        int seen = 0;
        while (archive_read_data_block(a, &buf, &len, &off) == ARCHIVE_OK) {
            if (off <= 8192 && off + (la_int64_t)len >= 8192 + 12 &&
                !memcmp((const char *)buf + (8192 - off), "first extent", 12))
                seen |= 1;
            if (off <= (300LL << 20) && off + (la_int64_t)len >= (300LL << 20) + 13 &&
                !memcmp((const char *)buf + ((300LL << 20) - off), "second extent", 13))
                seen |= 2;
        }
        c->sparse_ok = seen == 3;
    }
    if (!strcmp(p, "sub/small-sparse") && archive_entry_size(e) == (3LL << 20)) {
        /* read logically: holes as zeros, data in the middle */
        static uint8_t all[3u << 20];
        int ok = 1;
        memset(all, 0xAA, sizeof all);
        while (archive_read_data_block(a, &buf, &len, &off) == ARCHIVE_OK)
            memcpy(all + off, buf, len);
        /* anything not delivered stayed 0xAA: treat as hole (zero) */
        for (size_t i = 0; i < sizeof all; i++) {
            uint8_t want = i >= (1u << 20) && i < (1u << 20) + 6 ? (uint8_t)"middle"[i - (1u << 20)] : 0;
            uint8_t got = all[i] == 0xAA ? 0 : all[i];
            if (got != want) {
                ok = 0;
                break;
            }
        }
        c->small_sparse_ok = ok;
    }
}

/* For test_missing_pack: counts dirs, and files whose data reads back whole
 * at their declared size (in names_ok). */
static void count_entry(struct archive *a, struct archive_entry *e, void *arg)
{
    struct dump_check *c = arg;
    char buf[65536];
    la_ssize_t n;
    int64_t total = 0;
    if (archive_entry_filetype(e) == AE_IFDIR) {
        c->dirs++;
        return;
    }
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0)
        total += n;
    if (n == 0 && total == archive_entry_size(e) && total > 0)
        c->names_ok++;
}

static void test_dump(struct cairn_snapshot *snap)
{
    struct dump_check c;
    struct stat s;

    /* pax: the whole snapshot; sparse files stay small */
    CHECK_OK(do_dump(snap, NULL, NULL, P("d.pax")));
    CHECK(stat(P("d.pax"), &s) == 0 && s.st_size < (16LL << 20));
    memset(&c, 0, sizeof c);
    c.names_ok = 1;
    CHECK(read_archive(P("d.pax"), check_entry, &c) == 19);
    if (!c.names_ok)
        fprintf(stderr, "bad name %s\n", c.bad);
    CHECK(c.names_ok && c.hardlink_ok && c.sparse_ok && c.small_sparse_ok && c.dirs == 4);
    CHECK(c.hard2_ok == 1);

    if (have_tool("tar") && run("tar --version 2>/dev/null | grep -q GNU") == 0) {
        mkdir(P("gnu"), 0755);
        CHECK(run("tar -xf %s -C %s 2>&1", P("d.pax"), P("gnu")) == 0);
        CHECK(compare_trees(P("src/sub"), P("gnu/sub")) == NULL);
        CHECK(same_content(P("src/sparse"), P("gnu/sparse")));
        CHECK(stat(P("gnu/sparse"), &s) == 0 && s.st_size == SPARSE_SIZE &&
              s.st_blocks * 512 < (1LL << 20));
        CHECK(stat(P("gnu/allhole"), &s) == 0 && s.st_size == (64LL << 20) &&
              s.st_blocks * 512 < (1LL << 20));
        CHECK(same_content(P("src/big.bin"), P("gnu/big.bin")));
    }

    /* gnu tar of a subtree: names stay snapshot-relative; the link's target is
     * outside, so it carries the content; holes written as zeros */
    CHECK_OK(do_dump(snap, "sub", "tar", P("d.tar")));
    memset(&c, 0, sizeof c);
    c.names_ok = 1;
    CHECK(read_archive(P("d.tar"), check_entry, &c) == 7);
    CHECK(c.names_ok && c.hard_content_ok && c.small_sparse_ok && c.dirs == 2);
    CHECK(c.hard2_ok == 2); /* the second link points at the first inside */

    /* zip: no hard links, content instead */
    CHECK_OK(do_dump(snap, "/sub/", "zip", P("d.zip")));
    memset(&c, 0, sizeof c);
    c.names_ok = 1;
    CHECK(read_archive(P("d.zip"), check_entry, &c) == 7);
    CHECK(c.names_ok && c.hard_content_ok && c.small_sparse_ok && c.hard2_ok == 3);

    /* a single file */
    CHECK_OK(do_dump(snap, "etc/x.conf", "pax", P("d1.tar")));
    memset(&c, 0, sizeof c);
    c.names_ok = 1;
    CHECK(read_archive(P("d1.tar"), check_entry, &c) == 1);

    CHECK_RC(do_dump(snap, "nope/x", "pax", P("dn.tar")), CAIRN_NOTFOUND);
    CHECK(strstr(err.msg, "'nope/x'") != NULL);
    CHECK_RC(do_dump(snap, NULL, "cpio", P("dn.tar")), CAIRN_FAILED);
    CHECK(strstr(err.msg, "'cpio'") && strstr(err.msg, "tar, pax, zip"));
}

/* Snapshot B shares unchanged files and directories with A; A's packs are
 * deleted: B's new file restores, the rest is reported by name and no partial
 * file remains. */
static void test_missing_pack(void)
{
    char ida[CAIRN_HEX_LEN + 1], idb[CAIRN_HEX_LEN + 1];
    struct cairn_snapshot *snap = NULL;
    struct cairn_restore_stats st;
    char cmd[2048];
    mkdir(P("mp"), 0755);
    mkdir(P("mp/src"), 0755);
    mkdir(P("mp/src/dir"), 0755);
    write_random(P("mp/src/old.bin"), 3u << 20, 77);
    write_file(P("mp/src/dir/inner"), "only in pack A\n", 15);
    /* list the packs before and after A */
    snprintf(cmd, sizeof cmd, "find %s/repo/data -type f | sort > %s", base, P("mp/before"));
    CHECK(system(cmd) == 0);
    CHECK_OK(backup_dir(P("mp/src"), ida));
    snprintf(cmd, sizeof cmd, "find %s/repo/data -type f | sort > %s", base, P("mp/after"));
    CHECK(system(cmd) == 0);
    write_random(P("mp/src/new.bin"), 2u << 20, 78);
    CHECK_OK(backup_dir(P("mp/src"), idb));
    snprintf(cmd, sizeof cmd, "comm -13 %s %s | xargs -r rm -f", P("mp/before"), P("mp/after"));
    CHECK(system(cmd) == 0);

    CHECK_OK(cairn_repo_snapshot_get(repo, idb, NULL, &snap, &err));
    CHECK_RC(do_restore(snap, P("mp/target"), 0, NULL, 0, 0, &st), CAIRN_WARN);
    CHECK_WARNED("cannot restore 'old.bin': ", "pack ", "missing");
    CHECK_WARNED("'dir'", "pack ", "missing");
    CHECK(st.failed == 2);
    CHECK(!exists(P("mp/target/old.bin")));
    CHECK(!exists(P("mp/target/dir/inner")));
    CHECK(same_content(P("mp/src/new.bin"), P("mp/target/new.bin")));

    /* the dump goes on too, says what is missing, and the archive stays
     * readable (the missing content as zeros, the rest intact) */
    {
        static const char *fmts[] = {"pax", "tar", "zip"};
        for (size_t i = 0; i < 3; i++) {
            struct dump_check c;
            memset(&c, 0, sizeof c);
            CHECK_RC(do_dump(snap, NULL, fmts[i], P("mp/d.%s", fmts[i])), CAIRN_WARN);
            CHECK_WARNED("cannot dump 'old.bin'", "missing", "zeros");
            CHECK_WARNED("cannot dump the contents of 'dir'", "missing");
            CHECK(read_archive(P("mp/d.%s", fmts[i]), count_entry, &c) == 3); /* dir, new, old */
            CHECK(c.dirs == 1 && c.names_ok == 2);
        }
    }
    cairn_snapshot_free(snap);
}

int main(void)
{
    struct cairn_snapshot *snap = NULL;
    char url[1100];

    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    /* the tests read dumps with libarchive themselves */
    if (cairn_archive_load(&err) != CAIRN_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    snprintf(url, sizeof url, "%s/repo", base);
    if (cairn_repo_init(url, &err) != CAIRN_OK ||
        cairn_repo_open(url, P("catalog.db"), &repo, &err) != CAIRN_OK) {
        fprintf(stderr, "cannot set up a repository: %s\n", err.msg);
        return 1;
    }
    make_source();
    if (backup_dir(P("src"), main_id) != CAIRN_OK ||
        cairn_repo_snapshot_get(repo, main_id, NULL, &snap, &err) != CAIRN_OK) {
        fprintf(stderr, "cannot back up the test tree: %s\n", err.msg);
        return 1;
    }

    test_decoder_refuses_bad_names();
    test_bad_subtree();
    test_hardlink_escape();
    test_roundtrip(snap);
    test_progress(snap);
    test_includes(snap);
    test_symlink_in_target();
    test_symlinks_planted_during_restore();
    test_dump(snap);
    test_missing_pack(); /* last: it deletes packs */

    cairn_snapshot_free(snap);
    cairn_repo_free(repo);
    cairn_buf_free(&warnings);
    if (!failures)
        rm_rf(base);
    else
        fprintf(stderr, "test files left in %s\n", base);
    fprintf(stderr, "%s: %d failure(s)\n", failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}

/* tests/unit/test_engine_tree.c — engine/tree.c: tree objects round-trip every
 * node type and field (including bytes that are not UTF-8), and hostile input is
 * refused with CAIRN_CORRUPT without crashing. */
#define _GNU_SOURCE
#include "../../engine/tree.h"

#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"

static int streq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static void set_id(cairn_id *id, uint8_t seed)
{
    for (int i = 0; i < CAIRN_ID_LEN; i++)
        id->b[i] = (uint8_t)(seed * 31 + i * 7 + 1);
}

static void base_node(struct cairn_node *n, const char *name, enum cairn_ftype type)
{
    memset(n, 0, sizeof *n);
    n->name = strdup(name);
    n->type = type;
    n->mode = 0644;
    n->uid = 1000;
    n->gid = 100;
    n->mtime_ns = 1795294901123456789LL;
    n->atime_ns = 1795294902000000001LL;
    n->ctime_ns = -14182940000000007LL; /* before 1970 */
    n->dev = 0xFFFFFFFFFFFFFFF0ULL;       /* high bit set: stored as a negative JSON int */
    n->ino = 1234567890123ULL;
    n->nlink = 1;
}

static struct cairn_xattr mkx(const char *name, const void *val, size_t len)
{
    struct cairn_xattr x;
    x.name = strdup(name);
    x.value = malloc(len ? len : 1);
    memcpy(x.value, val, len);
    x.len = len;
    return x;
}

/* Builds a tree with every type and every optional field. */
static void build_tree(struct cairn_tree *t)
{
    struct cairn_node n;
    memset(t, 0, sizeof *t);

    /* regular file with everything */
    base_node(&n, "file", CAIRN_T_FILE);
    n.mode = 04755;
    n.user = strdup("alice");
    n.group = strdup("staff");
    n.size = 3 * 1048576 + 17;
    n.nlink = 2;
    n.n_xattrs = 4;
    n.xattrs = calloc(4, sizeof *n.xattrs);
    n.xattrs[0] = mkx("user.bin", "\0\x01\xff\xfe\0z", 6);
    n.xattrs[1] = mkx("user.empty", "", 0);
    n.xattrs[2] = mkx("user.text", "hello", 5);
    n.xattrs[3] = mkx("user.\xff\xfename", "v", 1); /* xattr name not UTF-8 */
    n.acl = strdup("user::rw-\nuser:bob:r--:1001\ngroup::r--\nmask::r--\nother::---\n"
                   "default:user::rwx\ndefault:group::r-x\ndefault:other::---");
    n.fflags = strdup("nodump,uappnd");
    n.n_sparse = 3;
    n.sparse = calloc(3, sizeof *n.sparse);
    n.sparse[0].off = 0;
    n.sparse[0].len = 4096;
    n.sparse[1].off = 4096; /* adjacent is allowed */
    n.sparse[1].len = 100;
    n.sparse[2].off = 2 * 1048576;
    n.sparse[2].len = 1048576 + 17;
    n.n_chunks = 3;
    n.chunks = calloc(3, sizeof *n.chunks);
    set_id(&n.chunks[0], 1);
    set_id(&n.chunks[1], 2);
    set_id(&n.chunks[2], 1); /* repeated chunk */
    cairn_tree_add(t, &n);

    /* an empty file: no chunks */
    base_node(&n, "empty", CAIRN_T_FILE);
    cairn_tree_add(t, &n);

    /* a file that is all hole: sparse map present but empty */
    base_node(&n, "hole", CAIRN_T_FILE);
    n.size = 1 << 30;
    n.sparse = calloc(1, sizeof *n.sparse);
    n.n_sparse = 0;
    cairn_tree_add(t, &n);

    /* a hardlink to "file" (in a subdirectory path) */
    base_node(&n, "hardlink", CAIRN_T_FILE);
    n.hardlink = strdup("sub dir/file \xe2\x82\xac");
    n.size = 3 * 1048576 + 17;
    n.nlink = 2;
    cairn_tree_add(t, &n);

    /* a hardlink whose path is not UTF-8 */
    base_node(&n, "hardlink2", CAIRN_T_FILE);
    n.hardlink = strdup("d\xff/f\xfe");
    cairn_tree_add(t, &n);

    /* directory */
    base_node(&n, "dir", CAIRN_T_DIR);
    n.mode = 01777;
    set_id(&n.subtree, 9);
    cairn_tree_add(t, &n);

    /* symlinks: UTF-8 and not */
    base_node(&n, "link", CAIRN_T_SYMLINK);
    n.mode = 0777;
    n.target = strdup("../some/where \xc3\xa9");
    cairn_tree_add(t, &n);
    base_node(&n, "link2", CAIRN_T_SYMLINK);
    n.mode = 0777;
    n.target = strdup("/tmp/\xff\xfe\x80target");
    cairn_tree_add(t, &n);

    base_node(&n, "fifo", CAIRN_T_FIFO);
    cairn_tree_add(t, &n);
    base_node(&n, "chr", CAIRN_T_CHR);
    n.rdev = (136ULL << 8) | 3;
    cairn_tree_add(t, &n);
    base_node(&n, "blk", CAIRN_T_BLK);
    n.rdev = 0x0000000800000001ULL; /* large major/minor */
    cairn_tree_add(t, &n);
    base_node(&n, "sock", CAIRN_T_SOCK);
    n.uid = 0xFFFFFFFEu;
    n.gid = 0xFFFFFFFFu;
    cairn_tree_add(t, &n);

    /* names that are not UTF-8, or unusual */
    base_node(&n, "\xff\xfe", CAIRN_T_FILE);
    cairn_tree_add(t, &n);
    base_node(&n, "caf\xc3\xa9 with spaces, \"quotes\" and \\", CAIRN_T_FILE);
    cairn_tree_add(t, &n);
    base_node(&n, "\x01\x7f", CAIRN_T_FILE);
    cairn_tree_add(t, &n);
    base_node(&n, "...", CAIRN_T_FILE); /* not "." or ".." */
    cairn_tree_add(t, &n);
    base_node(&n, "a\xe2\x82", CAIRN_T_FILE); /* truncated UTF-8 */
    cairn_tree_add(t, &n);

    cairn_tree_sort(t);
}

static void compare_nodes(const struct cairn_node *a, const struct cairn_node *b)
{
    const char *nm = a->name;
    size_t i;
    CHECK(streq(a->name, b->name), "node name differs after round trip");
    CHECK(a->type == b->type, "'%s': type %d vs %d", nm, a->type, b->type);
    CHECK(a->mode == b->mode, "'%s': mode %o vs %o", nm, a->mode, b->mode);
    CHECK(a->uid == b->uid && a->gid == b->gid, "'%s': uid/gid %u/%u vs %u/%u", nm, a->uid,
          a->gid, b->uid, b->gid);
    CHECK(streq(a->user, b->user) && streq(a->group, b->group), "'%s': user/group differ", nm);
    CHECK(a->mtime_ns == b->mtime_ns && a->atime_ns == b->atime_ns && a->ctime_ns == b->ctime_ns,
          "'%s': times differ", nm);
    CHECK(a->size == b->size, "'%s': size %llu vs %llu", nm, (unsigned long long)a->size,
          (unsigned long long)b->size);
    CHECK(a->dev == b->dev && a->ino == b->ino, "'%s': dev/ino %llx/%llu vs %llx/%llu", nm,
          (unsigned long long)a->dev, (unsigned long long)a->ino, (unsigned long long)b->dev,
          (unsigned long long)b->ino);
    CHECK(a->nlink == b->nlink, "'%s': nlink %u vs %u", nm, a->nlink, b->nlink);
    CHECK(a->rdev == b->rdev, "'%s': rdev %llx vs %llx", nm, (unsigned long long)a->rdev,
          (unsigned long long)b->rdev);
    CHECK(streq(a->target, b->target), "'%s': target '%s' vs '%s'", nm,
          a->target ? a->target : "(null)", b->target ? b->target : "(null)");
    CHECK(streq(a->hardlink, b->hardlink), "'%s': hardlink differs", nm);
    CHECK(streq(a->acl, b->acl), "'%s': acl differs", nm);
    CHECK(streq(a->fflags, b->fflags), "'%s': fflags differ", nm);
    CHECK(a->n_xattrs == b->n_xattrs, "'%s': %zu xattrs vs %zu", nm, a->n_xattrs, b->n_xattrs);
    for (i = 0; i < a->n_xattrs && i < b->n_xattrs; i++) {
        CHECK(streq(a->xattrs[i].name, b->xattrs[i].name), "'%s': xattr %zu name differs", nm, i);
        CHECK(a->xattrs[i].len == b->xattrs[i].len &&
                  (a->xattrs[i].len == 0 ||
                   memcmp(a->xattrs[i].value, b->xattrs[i].value, a->xattrs[i].len) == 0),
              "'%s': xattr %zu value differs (%zu vs %zu bytes)", nm, i, a->xattrs[i].len,
              b->xattrs[i].len);
    }
    CHECK(!a->sparse == !b->sparse, "'%s': sparse map presence differs (%p vs %p)", nm,
          (void *)a->sparse, (void *)b->sparse);
    CHECK(a->n_sparse == b->n_sparse, "'%s': %zu extents vs %zu", nm, a->n_sparse, b->n_sparse);
    for (i = 0; i < a->n_sparse && i < b->n_sparse; i++)
        CHECK(a->sparse[i].off == b->sparse[i].off && a->sparse[i].len == b->sparse[i].len,
              "'%s': extent %zu differs", nm, i);
    CHECK(a->n_chunks == b->n_chunks, "'%s': %zu chunks vs %zu", nm, a->n_chunks, b->n_chunks);
    for (i = 0; i < a->n_chunks && i < b->n_chunks; i++)
        CHECK(memcmp(a->chunks[i].b, b->chunks[i].b, CAIRN_ID_LEN) == 0, "'%s': chunk %zu differs",
              nm, i);
    if (a->type == CAIRN_T_DIR)
        CHECK(memcmp(a->subtree.b, b->subtree.b, CAIRN_ID_LEN) == 0, "'%s': subtree differs", nm);
}

static void test_round_trip(void)
{
    struct cairn_tree t, d, d2;
    cairn_buf enc = CAIRN_BUF_INIT, enc2 = CAIRN_BUF_INIT;
    cairn_err err;
    int rc;
    size_t i;

    build_tree(&t);
    for (i = 1; i < t.n; i++)
        CHECK(strcmp(t.nodes[i - 1].name, t.nodes[i].name) < 0, "tree_sort left entries unsorted");
    CHECK(cairn_tree_encode(&t, &enc) == CAIRN_OK, "tree_encode failed");
    cairn_err_clear(&err);
    rc = cairn_tree_decode(enc.data, enc.len, &d, &err);
    CHECK(rc == CAIRN_OK, "decode of an encoded tree failed: %s", err.msg);
    if (rc != CAIRN_OK) {
        fprintf(stderr, "encoded: %.*s\n", (int)enc.len, (const char *)enc.data);
        cairn_tree_free(&t);
        cairn_buf_free(&enc);
        return;
    }
    CHECK(d.n == t.n, "decoded %zu nodes, encoded %zu", d.n, t.n);
    for (i = 0; i < t.n && i < d.n; i++)
        compare_nodes(&t.nodes[i], &d.nodes[i]);
    /* encoding is deterministic: same tree, same bytes (trees dedup by id) */
    CHECK(cairn_tree_encode(&d, &enc2) == CAIRN_OK && enc2.len == enc.len &&
              memcmp(enc.data, enc2.data, enc.len) == 0,
          "re-encoding the decoded tree gives different bytes");
    /* lookups */
    for (i = 0; i < t.n; i++) {
        const struct cairn_node *f = cairn_tree_find(&d, t.nodes[i].name);
        CHECK(f && f == &d.nodes[i], "tree_find('%s') failed", t.nodes[i].name);
    }
    CHECK(cairn_tree_find(&d, "nope") == NULL, "tree_find of a missing name");
    CHECK(cairn_tree_find(&d, "fil") == NULL, "tree_find of a prefix");
    /* node_copy is deep */
    {
        struct cairn_node c;
        const struct cairn_node *f = cairn_tree_find(&d, "file");
        if (f && cairn_node_copy(&c, f) == CAIRN_OK) {
            compare_nodes(f, &c);
            CHECK(c.xattrs != f->xattrs && c.chunks != f->chunks && c.name != f->name,
                  "node_copy shares memory");
            cairn_node_free(&c);
        } else {
            CHECK(0, "node_copy failed");
        }
    }
    /* an empty tree */
    memset(&d2, 0, sizeof d2);
    {
        struct cairn_tree e;
        memset(&e, 0, sizeof e);
        CHECK(cairn_tree_encode(&e, &enc2) == CAIRN_OK &&
                  cairn_tree_decode(enc2.data, enc2.len, &d2, &err) == CAIRN_OK && d2.n == 0,
              "empty tree round trip");
        cairn_tree_free(&d2);
    }
    cairn_tree_free(&t);
    cairn_tree_free(&d);
    cairn_buf_free(&enc);
    cairn_buf_free(&enc2);
}

/* Owner names, ACL text and file flags come from the system (NSS, libarchive)
 * and are bytes, like names: ones that are not UTF-8 must survive a round trip
 * (or the encode must fail loudly), never vanish silently. */
static void test_non_utf8_metadata(void)
{
    struct cairn_tree t, d;
    struct cairn_node n;
    cairn_buf enc = CAIRN_BUF_INIT;
    cairn_err err;
    int rc;
    memset(&t, 0, sizeof t);
    base_node(&n, "f", CAIRN_T_FILE);
    n.user = strdup("j\xf6rg");                    /* Latin-1 user name */
    n.group = strdup("gr\xfcn");
    n.acl = strdup("user::rw-\nuser:j\xf6rg:r--:1001\ngroup::r--\nmask::r--\nother::---");
    n.fflags = strdup("nodump");
    cairn_tree_add(&t, &n);
    rc = cairn_tree_encode(&t, &enc);
    if (rc != CAIRN_OK) {
        /* refusing is acceptable; losing data silently is not */
        cairn_tree_free(&t);
        cairn_buf_free(&enc);
        return;
    }
    cairn_err_clear(&err);
    rc = cairn_tree_decode(enc.data, enc.len, &d, &err);
    CHECK(rc == CAIRN_OK, "decode of a tree with non-UTF-8 owner names: %s", err.msg);
    if (rc == CAIRN_OK) {
        CHECK(d.n == 1 && streq(d.nodes[0].user, "j\xf6rg"),
              "user name \"j\\xf6rg\" (not UTF-8) silently lost by encode/decode (got %s)",
              d.n && d.nodes[0].user ? d.nodes[0].user : "(null)");
        CHECK(d.n == 1 && streq(d.nodes[0].group, "gr\xfcn"),
              "group name \"gr\\xfcn\" (not UTF-8) silently lost by encode/decode (got %s)",
              d.n && d.nodes[0].group ? d.nodes[0].group : "(null)");
        CHECK(d.n == 1 && streq(d.nodes[0].acl, t.nodes[0].acl),
              "ACL text naming user \"j\\xf6rg\" (not UTF-8) silently lost by encode/decode");
        CHECK(d.n == 1 && streq(d.nodes[0].fflags, "nodump"), "fflags lost next to them");
        cairn_tree_free(&d);
    }
    cairn_tree_free(&t);
    cairn_buf_free(&enc);
}

/* ---- hostile input ---- */

static void expect_corrupt_n(const char *json, size_t len, const char *what)
{
    struct cairn_tree t;
    cairn_err err;
    int rc;
    memset(&t, 0x5a, sizeof t);
    cairn_err_clear(&err);
    rc = cairn_tree_decode((const uint8_t *)json, len, &t, &err);
    CHECK(rc == CAIRN_CORRUPT, "%s: decode returned %d (%s), want CAIRN_CORRUPT", what, rc,
          rc == CAIRN_OK ? "accepted" : err.msg);
    if (rc != CAIRN_OK)
        CHECK(t.n == 0 && t.nodes == NULL, "%s: a refused decode left nodes behind", what);
    if (rc == CAIRN_CORRUPT)
        CHECK(err.msg[0] != 0, "%s: no message", what);
    cairn_tree_free(&t); /* must be safe after a failure */
}

static void expect_corrupt(const char *json, const char *what)
{
    expect_corrupt_n(json, strlen(json), what);
}

static void expect_ok(const char *json, const char *what)
{
    struct cairn_tree t;
    cairn_err err;
    int rc;
    cairn_err_clear(&err);
    rc = cairn_tree_decode((const uint8_t *)json, strlen(json), &t, &err);
    CHECK(rc == CAIRN_OK, "%s: a valid tree was refused: %s", what, err.msg);
    if (rc == CAIRN_OK)
        cairn_tree_free(&t);
}

#define CH64 "0101010101010101010101010101010101010101010101010101010101010101"
#define FILE_NODE(name) "{\"name\":\"" name "\",\"type\":\"file\",\"mode\":420,\"chunks\":[]}"

static sigjmp_buf segv_jmp;
static volatile sig_atomic_t in_guarded;

static void on_segv(int sig)
{
    (void)sig;
    if (in_guarded)
        siglongjmp(segv_jmp, 1);
    _exit(99);
}

static void test_hostile(void)
{
    char buf[600];

    /* sanity: the base form is valid */
    expect_ok("{\"nodes\":[" FILE_NODE("a") "]}", "one file");
    expect_ok("{\"nodes\":[" FILE_NODE("a") "," FILE_NODE("b") "]}", "two sorted files");
    expect_ok("{\"nodes\":[{\"name_b64\":\"//4=\",\"type\":\"file\"}]}", "name_b64 \\xff\\xfe");

    /* names */
    expect_corrupt("{\"nodes\":[" FILE_NODE("..") "]}", "name '..'");
    expect_corrupt("{\"nodes\":[" FILE_NODE(".") "]}", "name '.'");
    expect_corrupt("{\"nodes\":[" FILE_NODE("a/b") "]}", "name 'a/b'");
    expect_corrupt("{\"nodes\":[" FILE_NODE("/") "]}", "name '/'");
    expect_corrupt("{\"nodes\":[" FILE_NODE("") "]}", "empty name");
    expect_corrupt("{\"nodes\":[" FILE_NODE("a\\u0000b") "]}", "name with an escaped NUL");
    expect_corrupt("{\"nodes\":[{\"name_b64\":\"Li4=\",\"type\":\"file\"}]}", "name_b64 '..'");
    expect_corrupt("{\"nodes\":[{\"name_b64\":\"YS9i\",\"type\":\"file\"}]}", "name_b64 'a/b'");
    expect_corrupt("{\"nodes\":[{\"name_b64\":\"YQBi\",\"type\":\"file\"}]}", "name_b64 with NUL");
    expect_corrupt("{\"nodes\":[{\"name_b64\":\"\",\"type\":\"file\"}]}", "empty name_b64");
    expect_corrupt("{\"nodes\":[{\"name_b64\":\"!!!!\",\"type\":\"file\"}]}", "bad base64 name");
    expect_corrupt("{\"nodes\":[{\"name\":5,\"type\":\"file\"}]}", "numeric name");
    expect_corrupt("{\"nodes\":[{\"type\":\"file\"}]}", "no name");
    {
        /* CAIRN_TREE_MAX_NAME bytes is fine, one more is not */
        size_t n = CAIRN_TREE_MAX_NAME + 64;
        char *big = malloc(n + 100);
        char *name = malloc(CAIRN_TREE_MAX_NAME + 2);
        memset(name, 'x', CAIRN_TREE_MAX_NAME + 1);
        name[CAIRN_TREE_MAX_NAME] = 0;
        snprintf(big, n + 100, "{\"nodes\":[{\"name\":\"%s\",\"type\":\"file\"}]}", name);
        expect_ok(big, "name of CAIRN_TREE_MAX_NAME bytes");
        name[CAIRN_TREE_MAX_NAME] = 'x';
        name[CAIRN_TREE_MAX_NAME + 1] = 0;
        snprintf(big, n + 100, "{\"nodes\":[{\"name\":\"%s\",\"type\":\"file\"}]}", name);
        expect_corrupt(big, "name of CAIRN_TREE_MAX_NAME+1 bytes");
        free(big);
        free(name);
    }

    /* order */
    expect_corrupt("{\"nodes\":[" FILE_NODE("b") "," FILE_NODE("a") "]}", "unsorted names");
    expect_corrupt("{\"nodes\":[" FILE_NODE("a") "," FILE_NODE("a") "]}", "duplicate names");
    expect_corrupt("{\"nodes\":[" FILE_NODE("a") "," FILE_NODE("c") "," FILE_NODE("b") "]}",
                   "unsorted third name");
    expect_corrupt("{\"nodes\":[" FILE_NODE("\\u00e9") "," FILE_NODE("z") "]}",
                   "unsorted bytewise (e-acute before z)");
    expect_corrupt("{\"nodes\":[" FILE_NODE("a") ",{\"name_b64\":\"YQ==\",\"type\":\"file\"}]}",
                   "duplicate through name_b64");

    /* type and fields */
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"door\"}]}", "unknown type");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"\"}]}", "empty type");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":3}]}", "numeric type");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\"}]}", "no type");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"mode\":4096}]}", "mode 010000");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"mode\":-1}]}", "mode -1");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"mode\":\"0644\"}]}",
                   "mode as a string");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"mode\":420.5}]}", "mode real");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"uid\":4294967296}]}",
                   "uid 2^32");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"size\":-1}]}", "size -1");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"nlink\":-3}]}", "nlink -3");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"symlink\"}]}", "symlink without target");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"symlink\",\"target\":7}]}",
                   "numeric target");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"symlink\",\"target_b64\":\"AA==\"}]}",
                   "target_b64 with NUL");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"hardlink\":\"x\\u0000y\"}]}",
                   "hardlink with NUL");

    /* sparse maps */
    expect_ok("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"size\":100,"
              "\"sparse\":[[0,10],[10,10],[90,10]]}]}",
              "valid sparse map");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"size\":100,"
                   "\"sparse\":[[0,10],[5,10]]}]}",
                   "overlapping extents");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"size\":100,"
                   "\"sparse\":[[50,10],[0,10]]}]}",
                   "extents out of order");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"size\":100,"
                   "\"sparse\":[[90,20]]}]}",
                   "extent beyond size");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"size\":100,"
                   "\"sparse\":[[200,0]]}]}",
                   "empty extent beyond size");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"size\":100,"
                   "\"sparse\":[[-1,10]]}]}",
                   "negative offset");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"size\":100,"
                   "\"sparse\":[[10,-5]]}]}",
                   "negative length");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"size\":9223372036854775807,"
                   "\"sparse\":[[9223372036854775807,9223372036854775807]]}]}",
                   "extent whose end overflows int64");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"size\":100,"
                   "\"sparse\":[[0]]}]}",
                   "one-element extent");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"size\":100,"
                   "\"sparse\":[5]}]}",
                   "extent not an array");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"size\":100,"
                   "\"sparse\":{}}]}",
                   "sparse map not an array");

    /* chunks */
    expect_ok("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"chunks\":[\"" CH64 "\"]}]}",
              "one chunk");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"chunks\":[\"zz"
                   "01010101010101010101010101010101010101010101010101010101010101\"]}]}",
                   "chunk id with 'z'");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"chunks\":[\"abcd\"]}]}",
                   "short chunk id");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"chunks\":[\"" CH64 "00\"]}]}",
                   "long chunk id");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"chunks\":[5]}]}",
                   "numeric chunk id");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"chunks\":\"" CH64 "\"}]}",
                   "chunks not an array");

    /* xattrs */
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"xattrs\":[{\"name\":\"user.a\","
                   "\"value\":\"!!\"}]}]}",
                   "xattr value not base64");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"xattrs\":[{\"name\":\"user.a\"}]}]}",
                   "xattr without value");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"xattrs\":[5]}]}",
                   "xattr not an object");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"xattrs\":{}}]}",
                   "xattrs not an array");
    {
        /* more than CAIRN_NODE_MAX_XATTRS */
        size_t cap = (CAIRN_NODE_MAX_XATTRS + 1) * 40 + 200, i;
        char *big = malloc(cap), *p = big;
        p += sprintf(p, "{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"xattrs\":[");
        for (i = 0; i <= CAIRN_NODE_MAX_XATTRS; i++)
            p += sprintf(p, "%s{\"name\":\"u.%zu\",\"value\":\"\"}", i ? "," : "", i);
        sprintf(p, "]}]}");
        expect_corrupt(big, "too many xattrs");
        free(big);
    }

    /* directories */
    expect_ok("{\"nodes\":[{\"name\":\"d\",\"type\":\"dir\",\"subtree\":\"" CH64 "\"}]}",
              "directory with subtree");
    expect_corrupt("{\"nodes\":[{\"name\":\"d\",\"type\":\"dir\"}]}", "directory without subtree");
    expect_corrupt("{\"nodes\":[{\"name\":\"d\",\"type\":\"dir\",\"subtree\":\"xyz\"}]}",
                   "directory with a bad subtree id");
    expect_corrupt("{\"nodes\":[{\"name\":\"d\",\"type\":\"dir\",\"subtree\":null}]}",
                   "directory with a null subtree");

    /* not a tree at all */
    expect_corrupt("not json", "non-JSON text");
    expect_corrupt("{", "truncated JSON");
    expect_corrupt_n("", 0, "empty input");
    expect_corrupt_n("{\"nodes\":[]}\0garbage", 20, "JSON followed by NUL and garbage");
    expect_corrupt("[]", "an array");
    expect_corrupt("{}", "no nodes");
    expect_corrupt("{\"nodes\":{}}", "nodes not an array");
    expect_corrupt("{\"nodes\":[1]}", "node not an object");
    expect_corrupt("{\"nodes\":[null]}", "null node");
    expect_corrupt("{\"nodes\":[],\"nodes\":[]}", "duplicate key 'nodes'");
    expect_corrupt("{\"nodes\":[{\"name\":\"a\",\"name\":\"b\",\"type\":\"file\"}]}",
                   "duplicate key in a node");
    expect_corrupt("{\"nodes\":[" FILE_NODE("a\xff") "]}", "raw invalid UTF-8 inside JSON");
    snprintf(buf, sizeof buf, "{\"nodes\":[" FILE_NODE("a") "]}");
    expect_corrupt_n(buf, strlen(buf) - 1, "tree cut by one byte");

    /* deep nesting must not exhaust the stack */
    {
        const size_t depth = 100000;
        char *deep = malloc(2 * depth + 64), *p = deep;
        size_t i;
        p += sprintf(p, "{\"nodes\":");
        for (i = 0; i < depth; i++)
            *p++ = '[';
        for (i = 0; i < depth; i++)
            *p++ = ']';
        *p++ = '}';
        *p = 0;
        expect_corrupt(deep, "arrays nested 100000 deep");
        p = deep;
        for (i = 0; i < depth / 5; i++)
            p += sprintf(p, "{\"a\":");
        p += sprintf(p, "1");
        for (i = 0; i < depth / 5; i++)
            *p++ = '}';
        *p = 0;
        expect_corrupt(deep, "objects nested 20000 deep");
        p = deep;
        for (i = 0; i < depth; i++)
            *p++ = '[';
        *p = 0;
        expect_corrupt(deep, "100000 unclosed '['");
        free(deep);
    }

    /* an oversize length is refused before anything is read: the bytes are
     * behind PROT_NONE, so reading even one of them faults */
    {
        size_t len = (size_t)CAIRN_TREE_MAX_BYTES + 1;
        void *m = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        struct sigaction sa, old_segv, old_bus;
        struct cairn_tree t;
        cairn_err err;
        int rc = 12345;
        CHECK(m != MAP_FAILED, "mmap of a guard region failed");
        if (m != MAP_FAILED) {
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_segv;
            sigemptyset(&sa.sa_mask);
            sigaction(SIGSEGV, &sa, &old_segv);
            sigaction(SIGBUS, &sa, &old_bus);
            cairn_err_clear(&err);
            in_guarded = 1;
            if (sigsetjmp(segv_jmp, 1) == 0) {
                rc = cairn_tree_decode(m, len, &t, &err);
                in_guarded = 0;
                CHECK(rc == CAIRN_CORRUPT,
                      "a tree of CAIRN_TREE_MAX_BYTES+1 bytes: rc %d, want CAIRN_CORRUPT", rc);
                if (rc == CAIRN_OK)
                    cairn_tree_free(&t);
            } else {
                in_guarded = 0;
                CHECK(0, "tree_decode read the bytes of a tree larger than CAIRN_TREE_MAX_BYTES "
                         "instead of refusing it first");
            }
            sigaction(SIGSEGV, &old_segv, NULL);
            sigaction(SIGBUS, &old_bus, NULL);
            munmap(m, len);
        }
        /* SIZE_MAX too */
        {
            static const char tiny[] = "{\"nodes\":[]}";
            rc = cairn_tree_decode((const uint8_t *)tiny, SIZE_MAX, &t, &err);
            CHECK(rc == CAIRN_CORRUPT, "length SIZE_MAX: rc %d", rc);
        }
    }
}

static void test_misc(void)
{
    struct cairn_node n;
    char m[11];
    memset(&n, 0, sizeof n);
    n.type = CAIRN_T_DIR;
    n.mode = 01777;
    cairn_mode_string(&n, m);
    CHECK(strcmp(m, "drwxrwxrwt") == 0, "mode_string(dir 01777) = '%s'", m);
    n.type = CAIRN_T_FILE;
    n.mode = 04644;
    cairn_mode_string(&n, m);
    CHECK(strcmp(m, "-rwSr--r--") == 0, "mode_string(file 04644) = '%s'", m);
    CHECK(strcmp(cairn_ftype_name(CAIRN_T_SYMLINK), "symlink") == 0, "ftype_name(symlink)");
    CHECK(strcmp(cairn_ftype_name((enum cairn_ftype)99), "unknown") == 0, "ftype_name(99)");
}

int main(void)
{
    test_round_trip();
    test_non_utf8_metadata();
    test_hostile();
    test_misc();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("test_engine_tree: all checks passed\n");
    return 0;
}

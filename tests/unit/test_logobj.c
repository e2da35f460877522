/* tests/unit/test_logobj.c — push-if-absent of log objects (engine/logobj):
 * a new object is stored and flushed, an identical one is success without
 * building anything, a different one is refused naming both checksums and
 * leaves the archived copy alone, unreadable metadata is never taken for the
 * same file; and the binlog partial-object names (agent/mysql.h).
 * Exit 0 when every check passes. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../agent/mysql.h"
#include "../../engine/logobj.h"

#include "check.h"

#define MAGIC "TEST-LOG1\n"

struct builder {
    const char *meta;
    int calls;
};

static int build(void *arg, cairn_buf *obj, cairn_err *err)
{
    struct builder *b = arg;
    (void)err;
    b->calls++;
    cairn_buf_reset(obj);
    cairn_buf_append(obj, MAGIC, strlen(MAGIC));
    cairn_buf_append(obj, b->meta, strlen(b->meta));
    cairn_buf_append(obj, "\npayload", 8);
    return CAIRN_OK;
}

static void meta_for(char *out, size_t n, uint64_t size, const uint8_t sha[32])
{
    char hex[65];
    cairn_hex(sha, 32, hex);
    snprintf(out, n, "{\"size\":%llu,\"sha256\":\"%s\"}", (unsigned long long)size, hex);
}

static void test_put_once(const char *dir)
{
    cairn_store *s = NULL;
    cairn_err err;
    cairn_buf obj = CAIRN_BUF_INIT, got = CAIRN_BUF_INIT;
    struct cairn_logobj_sum old;
    struct builder b = {NULL, 0};
    uint8_t sha1[32], sha2[32];
    char meta[200];
    uint64_t stored = 0;
    int rc;
    memset(sha1, 0x11, 32);
    memset(sha2, 0x22, 32);
    cairn_err_clear(&err);
    CHECK(cairn_fs_store_open(dir, 1, &s, &err) == CAIRN_OK, "open store: %s", err.msg);
    if (!s)
        return;
    meta_for(meta, sizeof meta, 100, sha1);
    b.meta = meta;

    /* absent: built, stored */
    rc = cairn_logobj_put_once(s, "log/a", MAGIC, 4096, "test", "/x/a", 100, sha1, &obj, build,
                               &b, "hint", NULL, &stored, &err);
    CHECK(rc == CAIRN_OK && stored > 0 && b.calls == 1, "first put: rc %d stored %llu: %s", rc,
          (unsigned long long)stored, err.msg);
    CHECK(cairn_logobj_same(s, "log/a", MAGIC, 4096, "test", 100, sha1, &old, NULL, &err) == 1,
          "same file");
    CHECK(old.size == 100 && memcmp(old.sha256, sha1, 32) == 0, "old sum read back");

    /* identical: success, nothing built */
    rc = cairn_logobj_put_once(s, "log/a", MAGIC, 4096, "test", "/x/a", 100, sha1, &obj, build,
                               &b, "hint", NULL, &stored, &err);
    CHECK(rc == CAIRN_OK && stored == 0 && b.calls == 1, "identical re-push: rc %d calls %d",
          rc, b.calls);

    /* different: refused, archived copy untouched */
    CHECK(cairn_store_get(s, "log/a", &got, 1 << 20, &err) == CAIRN_OK, "get");
    rc = cairn_logobj_put_once(s, "log/a", MAGIC, 4096, "test", "/x/a", 100, sha2, &obj, build,
                               &b, "it is a test", &old, &stored, &err);
    CHECK(rc == CAIRN_EXISTS, "different file: rc %d", rc);
    CHECK(strstr(err.msg, "REFUSING") && strstr(err.msg, "/x/a") && strstr(err.msg, "log/a") &&
              strstr(err.msg, "1111111111111111") && strstr(err.msg, "2222222222222222") &&
              strstr(err.msg, "it is a test"),
          "refusal names both: %s", err.msg);
    CHECK(b.calls == 1, "nothing built for a refused push");
    {
        cairn_buf now = CAIRN_BUF_INIT;
        CHECK(cairn_store_get(s, "log/a", &now, 1 << 20, &err) == CAIRN_OK &&
                  now.len == got.len && memcmp(now.data, got.data, got.len) == 0,
              "the archived copy is unchanged");
        cairn_buf_free(&now);
    }
    CHECK(cairn_logobj_same(s, "log/a", MAGIC, 4096, "test", 101, sha1, NULL, NULL, &err) == 0,
          "another size is another file");

    /* missing */
    CHECK(cairn_logobj_same(s, "log/none", MAGIC, 4096, "test", 100, sha1, NULL, NULL, &err) ==
              CAIRN_NOTFOUND,
          "absent object");

    /* unreadable metadata: never the same, refused */
    CHECK(cairn_store_put(s, "log/bad", "garbage\nxx", 10, 0, &err) == CAIRN_OK, "put garbage");
    CHECK(cairn_logobj_same(s, "log/bad", MAGIC, 4096, "test", 100, sha1, &old, NULL, &err) == 0,
          "garbage is not the same file");
    CHECK(old.size == 0, "old zeroed for garbage");
    rc = cairn_logobj_put_once(s, "log/bad", MAGIC, 4096, "test", "/x/bad", 100, sha1, &obj,
                               build, &b, "hint", NULL, &stored, &err);
    CHECK(rc == CAIRN_EXISTS, "a push over garbage is refused: rc %d", rc);

    /* a prebuilt object (no builder) */
    cairn_buf_reset(&obj);
    cairn_buf_append(&obj, MAGIC, strlen(MAGIC));
    meta_for(meta, sizeof meta, 7, sha2);
    cairn_buf_append(&obj, meta, strlen(meta));
    cairn_buf_append(&obj, "\n", 1);
    rc = cairn_logobj_put_once(s, "log/b", MAGIC, 4096, "test", "/x/b", 7, sha2, &obj, NULL,
                               NULL, "hint", NULL, &stored, &err);
    CHECK(rc == CAIRN_OK && stored == obj.len, "prebuilt put: rc %d", rc);

    cairn_buf_free(&obj);
    cairn_buf_free(&got);
    cairn_store_free(s);
}

static void test_partial_names(void)
{
    char file[CAIRN_BINLOG_NAME_MAX];
    uint64_t end = 0;
    CHECK(cairn_my_binlog_partial_name("binlog.000042.partial.1234", file, sizeof file, &end) ==
                  0 &&
              strcmp(file, "binlog.000042") == 0 && end == 1234,
          "partial name parsed");
    CHECK(cairn_my_binlog_partial_name("binlog.000042", file, sizeof file, &end) != 0,
          "a whole file is not partial");
    CHECK(cairn_my_binlog_partial_name("binlog.000042.partial.", file, sizeof file, &end) != 0,
          "no length");
    CHECK(cairn_my_binlog_partial_name("binlog.000042.partial.12x", file, sizeof file, &end) !=
              0,
          "bad length");
    CHECK(cairn_my_binlog_partial_name("binlog.partial.12", file, sizeof file, &end) != 0,
          "not a binlog file's partial");
    CHECK(cairn_my_binlog_partial_name("binlog.000001.partial.1", file, 5, &end) != 0,
          "too long for the buffer");
}

int main(void)
{
    char dir[] = "/tmp/cairn-test-logobj.XXXXXX";
    char cmd[128];
    if (!mkdtemp(dir)) {
        fprintf(stderr, "FAIL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    test_put_once(dir);
    test_partial_names();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "note: could not remove %s\n", dir);
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    else
        printf("PASS: test_logobj\n");
    return failures ? 1 : 0;
}

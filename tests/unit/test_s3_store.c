/* tests/unit/test_s3_store.c — the S3 store through its public interface
 * (uploaders/store.h) against a real s3rver started here on a free loopback
 * port: create-if-absent of config, caps on whole reads, ranged reads across
 * read-ahead blocks and past the end, background put_file with flush, multipart
 * uploads, ListObjectsV2 pagination (over 1000 keys), batch delete, concurrent
 * readers, an upload error reported by flush with its key, and the spool
 * directory's life.
 *
 * s3rver comes from tests/s3/node_modules (the e2e harness installs it with
 * `npm ci`) or $CAIRN_S3RVER (the path of bin/s3rver.js). Without it and node
 * the test prints "SKIP" and passes: tests/e2e/s3_*.sh cover the same ground. */
#define _GNU_SOURCE
#include "../../uploaders/store.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures, checks;

#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        checks++;                                                                        \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "FAIL: %s:%d: ", __FILE__, __LINE__);                        \
            fprintf(stderr, __VA_ARGS__);                                                \
            fprintf(stderr, "  [%s]\n", #cond);                                          \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

static pid_t server = -1;
static char datadir[] = "/tmp/cairn-test-s3store-XXXXXX";
static int port;

static void rm_rf(const char *p)
{
    DIR *d = opendir(p);
    struct dirent *de;
    if (!d) {
        unlink(p);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        char *q;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (asprintf(&q, "%s/%s", p, de->d_name) >= 0) {
            rm_rf(q);
            free(q);
        }
    }
    closedir(d);
    rmdir(p);
}

static void stop_server(void)
{
    if (server > 0) {
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
        server = -1;
    }
    rm_rf(datadir);
}

static int free_port(void)
{
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), p = 0;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &l) == 0)
        p = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return p;
}

static int can_connect(void)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Returns 0 when s3rver runs with bucket "tb", -1 to skip. */
static int start_server(void)
{
    char js[4096], portstr[16];
    const char *env = getenv("CAIRN_S3RVER");
    int i, rc = -2, lockfd;
    if (env && *env) {
        snprintf(js, sizeof js, "%s", env);
    } else {
        /* this file is tests/unit/test_s3_store.c in the source tree */
        const char *src = __FILE__, *slash = strrchr(src, '/');
        snprintf(js, sizeof js, "%.*s/../s3/node_modules/s3rver/bin/s3rver.js",
                 slash ? (int)(slash - src) : 1, slash ? src : ".");
    }
    /* tests/e2e/lib_s3.sh runs 'npm ci' under this lock: never start s3rver
     * from a half-installed tree */
    lockfd = open("/tmp/cairn-s3-npm-ci.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (lockfd >= 0)
        flock(lockfd, LOCK_EX);
    if (access(js, R_OK) != 0) {
        printf("SKIP: no s3rver at '%s' (run 'npm ci' in tests/s3 or set CAIRN_S3RVER)\n", js);
        rc = -1;
        goto out;
    }
    if (system("node --version >/dev/null 2>&1") != 0) {
        printf("SKIP: node is not installed\n");
        rc = -1;
        goto out;
    }
    if (!mkdtemp(datadir))
        goto out;
    port = free_port();
    snprintf(portstr, sizeof portstr, "%d", port);
    server = fork();
    if (server == 0) {
        const char *log = getenv("CAIRN_S3RVER_LOG"); /* for debugging */
        int fd = open(log && *log ? log : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        /* s3rver makes continuation tokens with DES, which Node's OpenSSL 3
         * only offers through the legacy provider: without it every listing
         * of more than 1000 keys answers 500 */
        execlp("node", "node", "--openssl-legacy-provider", js, "-d", datadir, "-a", "127.0.0.1", "-p", portstr,
               "--no-vhost-buckets", "--configure-bucket", "tb", (char *)NULL);
        _exit(127);
    }
    for (i = 0; i < 300; i++) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        int st;
        if (can_connect()) {
            rc = 0;
            goto out;
        }
        if (waitpid(server, &st, WNOHANG) == server) {
            server = -1;
            fprintf(stderr, "FAIL: s3rver exited at start\n");
            goto out;
        }
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "FAIL: s3rver did not listen on %d within 15 s\n", port);
out:
    if (lockfd >= 0)
        close(lockfd);
    return rc;
}

/* ---- helpers ---- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static int log_lines;
static void on_log(void *arg, const char *msg)
{
    (void)arg;
    pthread_mutex_lock(&log_mu);
    log_lines++;
    pthread_mutex_unlock(&log_mu);
    fprintf(stderr, "log: %s\n", msg);
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    size_t i;
    for (i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (uint8_t)(seed >> 24);
    }
}

static int write_spool(const char *dir, const char *name, const uint8_t *p, size_t n,
                       char *path, size_t plen)
{
    FILE *f;
    snprintf(path, plen, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f)
        return -1;
    if (n && fwrite(p, 1, n, f) != n) {
        fclose(f);
        return -1;
    }
    return fclose(f);
}

static cairn_store *open_store(const char *url, int create, int conns, cairn_err *err)
{
    struct cairn_store_opts o;
    cairn_store *s = NULL;
    memset(&o, 0, sizeof o);
    o.connections = conns;
    o.log = on_log;
    if (cairn_store_open_with(url, &o, create, &s, err) != CAIRN_OK)
        return NULL;
    return s;
}

struct counter {
    size_t n;
    int prefixed;
    size_t stop_at;
};
static int count_cb(void *arg, const char *key, uint64_t size)
{
    struct counter *c = arg;
    (void)size;
    if (!strncmp(key, "pre/", 4))
        c->prefixed++;
    c->n++;
    return c->stop_at && c->n >= c->stop_at;
}

struct reader {
    cairn_store *s;
    const uint8_t *want;
    size_t size;
    int bad;
    uint32_t seed;
};
static void *reader_main(void *arg)
{
    struct reader *r = arg;
    cairn_buf b = CAIRN_BUF_INIT;
    cairn_err e;
    int i;
    for (i = 0; i < 60; i++) {
        size_t off, len;
        r->seed = r->seed * 1664525u + 1013904223u;
        off = (r->seed >> 8) % (r->size - 1);
        len = 1 + (r->seed >> 4) % 300000;
        if (off + len > r->size)
            len = r->size - off;
        if (cairn_store_get_range(r->s, "data/00/big", off, len, &b, &e) != CAIRN_OK ||
            b.len != len || memcmp(b.data, r->want + off, len) != 0)
            r->bad++;
    }
    cairn_buf_free(&b);
    return NULL;
}

static void test_store(void)
{
    cairn_store *s, *s2;
    cairn_err e;
    cairn_buf b = CAIRN_BUF_INIT;
    uint64_t sz = 0;
    size_t big_n = 5 * 1024 * 1024 + 12345, i;
    uint8_t *big = malloc(big_n);
    char path[4096], spool[4096];
    struct stat st;
    int rc;

    fill(big, big_n, 7);
    cairn_err_clear(&e);
    s = open_store("s3://nobucket/x", 1, 2, &e);
    CHECK(!s && e.code == CAIRN_FATAL && strstr(e.msg, "'nobucket' does not exist"),
          "init on a missing bucket: %s", e.msg);
    cairn_store_free(s);

    s = open_store("s3://tb/pre", 1, 3, &e);
    CHECK(s != NULL, "open: %s", e.msg);
    if (!s)
        return;
    snprintf(spool, sizeof spool, "%s", s->tmpdir);
    CHECK(stat(spool, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700,
          "spool '%s' is a private directory", spool);

    /* config: create-if-absent */
    rc = cairn_store_put(s, "config", "one", 3, 0, &e);
    CHECK(rc == CAIRN_OK, "put config: %s", e.msg);
    rc = cairn_store_put(s, "config", "two", 3, 0, &e);
    CHECK(rc == CAIRN_EXISTS, "put config again without overwrite: %d %s", rc, e.msg);
    rc = cairn_store_put(s, "config", "three", 5, 1, &e);
    CHECK(rc == CAIRN_OK, "overwrite config: %s", e.msg);
    rc = cairn_store_put(s, "wal/a", "1", 1, 0, &e);
    CHECK(rc == CAIRN_OK && cairn_store_put(s, "wal/a", "2", 1, 0, &e) == CAIRN_EXISTS,
          "create-if-absent for other keys too: %s", e.msg);
    rc = cairn_store_put(s, "index/i1", "1", 1, 0, &e);
    CHECK(rc == CAIRN_OK && cairn_store_put(s, "index/i1", "1", 1, 0, &e) == CAIRN_OK,
          "content-addressed keys are written again without a check");
    rc = cairn_store_get(s, "config", &b, 100, &e);
    CHECK(rc == CAIRN_OK && b.len == 5 && !memcmp(b.data, "three", 5), "get config");
    rc = cairn_store_get(s, "config", &b, 4, &e);
    CHECK(rc == CAIRN_CORRUPT && strstr(e.msg, "config"), "get over the cap: %d %s", rc, e.msg);
    rc = cairn_store_stat(s, "config", &sz, &e);
    CHECK(rc == CAIRN_OK && sz == 5, "stat config");
    rc = cairn_store_stat(s, "nope", &sz, &e);
    CHECK(rc == CAIRN_NOTFOUND, "stat missing: %d %s", rc, e.msg);
    rc = cairn_store_get(s, "nope/x", &b, 100, &e);
    CHECK(rc == CAIRN_NOTFOUND, "get missing: %d %s", rc, e.msg);
    rc = cairn_store_put(s, "../x", "a", 1, 0, &e);
    CHECK(rc == CAIRN_FATAL, "a bad key is refused");
    rc = cairn_store_put(s, "empty", "", 0, 0, &e);
    CHECK(rc == CAIRN_OK && cairn_store_get(s, "empty", &b, 10, &e) == CAIRN_OK && b.len == 0,
          "an empty object");

    /* ranges, through the read-ahead blocks and around them */
    rc = cairn_store_put(s, "data/00/big", big, big_n, 0, &e);
    CHECK(rc == CAIRN_OK, "put big: %s", e.msg);
    {
        static const size_t offs[][2] = {{0, 1}, {0, 100}, {2097150, 10}, {2097152, 2097152},
                                         {1, 4194304}, {5242880, 12345}, {5242879, 12346},
                                         {100, 3000000}};
        for (i = 0; i < sizeof offs / sizeof offs[0]; i++) {
            rc = cairn_store_get_range(s, "data/00/big", offs[i][0], offs[i][1], &b, &e);
            CHECK(rc == CAIRN_OK && b.len == offs[i][1] &&
                      !memcmp(b.data, big + offs[i][0], offs[i][1]),
                  "range %zu+%zu: %d %s", offs[i][0], offs[i][1], rc, e.msg);
        }
        rc = cairn_store_get_range(s, "data/00/big", big_n - 10, 11, &b, &e);
        CHECK(rc == CAIRN_CORRUPT && strstr(e.msg, "truncated"), "a range past the end: %d %s",
              rc, e.msg);
        rc = cairn_store_get_range(s, "data/00/big", big_n + 10, 5, &b, &e);
        CHECK(rc == CAIRN_CORRUPT, "a range after the end: %d %s", rc, e.msg);
        rc = cairn_store_get_range(s, "config", 1, 3, &b, &e);
        CHECK(rc == CAIRN_OK && b.len == 3 && !memcmp(b.data, "hre", 3), "uncached range");
        rc = cairn_store_get_range(s, "config", 3, 5, &b, &e);
        CHECK(rc == CAIRN_CORRUPT, "uncached range past the end: %d %s", rc, e.msg);
        rc = cairn_store_get_range(s, "data/00/missing", 0, 5, &b, &e);
        CHECK(rc == CAIRN_NOTFOUND, "range of a missing pack: %d %s", rc, e.msg);
        rc = cairn_store_get(s, "data/00/big", &b, big_n, &e);
        CHECK(rc == CAIRN_OK && b.len == big_n && !memcmp(b.data, big, big_n), "whole get");
    }
    {
        pthread_t t[4];
        struct reader r[4];
        for (i = 0; i < 4; i++) {
            r[i] = (struct reader){s, big, big_n, 0, (uint32_t)(i * 77 + 1)};
            pthread_create(&t[i], NULL, reader_main, &r[i]);
        }
        for (i = 0; i < 4; i++) {
            pthread_join(t[i], NULL);
            CHECK(r[i].bad == 0, "reader %zu: %d bad ranges", i, r[i].bad);
        }
    }

    /* background uploads: more than 2 x connections queued, then flush */
    for (i = 0; i < 12; i++) {
        char name[32], key[64];
        snprintf(name, sizeof name, "pack-%zu", i);
        snprintf(key, sizeof key, "data/%02zu/p%zu", i, i);
        if (write_spool(s->tmpdir, name, big, 300000 + i, path, sizeof path) != 0) {
            CHECK(0, "spool write");
            break;
        }
        rc = cairn_store_put_file(s, key, path, &e);
        CHECK(rc == CAIRN_OK, "put_file %zu: %s", i, e.msg);
    }
    rc = cairn_store_flush(s, &e);
    CHECK(rc == CAIRN_OK, "flush: %s", e.msg);
    for (i = 0; i < 12; i++) {
        char key[64];
        snprintf(key, sizeof key, "data/%02zu/p%zu", i, i);
        rc = cairn_store_stat(s, key, &sz, &e);
        CHECK(rc == CAIRN_OK && sz == 300000 + i, "uploaded %s: %d", key, rc);
    }
    {
        DIR *d = opendir(s->tmpdir);
        struct dirent *de;
        int left = 0;
        while (d && (de = readdir(d)) != NULL)
            left += de->d_name[0] != '.';
        if (d)
            closedir(d);
        CHECK(left == 0, "%d spool files left after flush", left);
    }

    /* listing: over 1000 keys (two pages), keys without the prefix */
    for (i = 0; i < 1005; i++) {
        char key[64];
        snprintf(key, sizeof key, "snapshots/s%04zu", i);
        if (cairn_store_put(s, key, "x", 1, 0, &e) != CAIRN_OK) {
            CHECK(0, "put %s: %s", key, e.msg);
            break;
        }
    }
    {
        struct counter c = {0, 0, 0};
        rc = cairn_store_list(s, "snapshots/", count_cb, &c, &e);
        CHECK(rc == CAIRN_OK && c.n == 1005 && c.prefixed == 0, "list 1005: %d n=%zu pre=%d %s",
              rc, c.n, c.prefixed, e.msg);
        c = (struct counter){0, 0, 3};
        rc = cairn_store_list(s, "snapshots/", count_cb, &c, &e);
        CHECK(rc == CAIRN_OK && c.n == 3, "the callback stops the listing");
        c = (struct counter){0, 0, 0};
        rc = cairn_store_list(s, "data/", count_cb, &c, &e);
        CHECK(rc == CAIRN_OK && c.n == 13, "list data/: %zu", c.n);
    }
    {
        const char **keys = calloc(1005, sizeof *keys);
        char (*names)[64] = calloc(1005, sizeof *names);
        struct counter c = {0, 0, 0};
        for (i = 0; i < 1005; i++) {
            snprintf(names[i], sizeof names[i], "snapshots/s%04zu", i);
            keys[i] = names[i];
        }
        CHECK(s->ops->del_many != NULL, "S3 has a batch delete");
        rc = cairn_store_del_many(s, keys, 1005, &e);
        CHECK(rc == CAIRN_OK, "del_many: %s", e.msg);
        rc = cairn_store_list(s, "snapshots/", count_cb, &c, &e);
        CHECK(rc == CAIRN_OK && c.n == 0, "after del_many: %zu left", c.n);
        rc = cairn_store_del(s, "empty", &e);
        CHECK(rc == CAIRN_OK && cairn_store_stat(s, "empty", &sz, &e) == CAIRN_NOTFOUND, "del");
        free(keys);
        free(names);
    }
    cairn_store_free(s);
    CHECK(stat(spool, &st) != 0 && errno == ENOENT, "the spool directory is removed on free");

    /* multipart above CAIRN_S3_MULTIPART_THRESHOLD (parts of 5 MiB) */
    setenv("CAIRN_S3_MULTIPART_THRESHOLD", "5242880", 1);
    s2 = open_store("s3://tb/mp", 0, 2, &e);
    unsetenv("CAIRN_S3_MULTIPART_THRESHOLD");
    CHECK(s2 != NULL, "open mp: %s", e.msg);
    if (s2) {
        size_t n = 12 * 1024 * 1024 + 7;
        uint8_t *p = malloc(n);
        fill(p, n, 99);
        if (write_spool(s2->tmpdir, "mp", p, n, path, sizeof path) == 0) {
            rc = cairn_store_put_file(s2, "data/mp/one", path, &e);
            CHECK(rc == CAIRN_OK, "put_file mp: %s", e.msg);
            rc = cairn_store_flush(s2, &e);
            CHECK(rc == CAIRN_OK, "flush mp: %s", e.msg);
            rc = cairn_store_get(s2, "data/mp/one", &b, n, &e);
            CHECK(rc == CAIRN_OK && b.len == n && !memcmp(b.data, p, n),
                  "multipart object reads back: %d %s", rc, e.msg);
        }
        free(p);
        cairn_store_free(s2);
    }

    /* an upload that cannot succeed: flush reports it with its key */
    s2 = open_store("s3://nobucket/x", 0, 2, &e);
    CHECK(s2 != NULL, "open nobucket (no probe without create): %s", e.msg);
    if (s2) {
        write_spool(s2->tmpdir, "f", big, 1000, path, sizeof path);
        rc = cairn_store_put_file(s2, "data/ff/lost", path, &e);
        CHECK(rc == CAIRN_OK, "queued: %s", e.msg);
        rc = cairn_store_flush(s2, &e);
        CHECK(rc == CAIRN_FATAL && strstr(e.msg, "'nobucket' does not exist"),
              "flush reports the failure: %d %s", rc, e.msg);
        CHECK(access(path, F_OK) != 0, "the failed spool file is removed");
        rc = cairn_store_flush(s2, &e);
        CHECK(rc == CAIRN_OK, "the error is reported once");
        cairn_store_free(s2);
    }
    /* CAIRN_SPOOL: used as given and left in place */
    {
        char sp[4200];
        snprintf(sp, sizeof sp, "%s-spool", datadir);
        setenv("CAIRN_SPOOL", sp, 1);
        s2 = open_store("s3://tb/sp", 0, 1, &e);
        unsetenv("CAIRN_SPOOL");
        CHECK(s2 && !strcmp(s2->tmpdir, sp), "CAIRN_SPOOL is the spool");
        cairn_store_free(s2);
        CHECK(stat(sp, &st) == 0, "CAIRN_SPOOL is kept");
        rmdir(sp);
    }
    cairn_buf_free(&b);
    free(big);
}

int main(void)
{
    int rc;
    setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
    setenv("AWS_REGION", "us-east-1", 1);
    setenv("CAIRN_S3_RETRIES", "4", 1);
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("CAIRN_SPOOL");
    rc = start_server();
    if (rc == -1)
        return 0;
    if (rc != 0) {
        stop_server();
        return 1;
    }
    {
        char ep[64];
        snprintf(ep, sizeof ep, "http://127.0.0.1:%d", port);
        setenv("AWS_ENDPOINT_URL_S3", ep, 1);
    }
    test_store();
    stop_server();
    if (failures) {
        fprintf(stderr, "%d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("test_s3_store: %d checks passed (%d retries logged)\n", checks, log_lines);
    return 0;
}

/* uploaders/fs.c — the local directory store (the embedded default).
 *
 * Objects are files under the repository directory. Writes go to a temp file
 * in <repo>/tmp, are fsync'ed, then linked into place (link() fails if the
 * name exists, which gives create-if-absent without a race) and the directory
 * is fsync'ed. Readers therefore never see a partial object. */
#define _GNU_SOURCE
#include "store.h"

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FD_CACHE 32

/* Open pack files kept for ranged reads (a restore reads thousands of chunks
 * from a few packs); refs > 0 while a reader uses the fd. */
struct fd_slot {
    char key[160];
    int fd;
    int refs;
    uint64_t size, dev, ino;
    uint64_t used; /* LRU clock */
};

struct fs_ctx {
    char *dir;
    mode_t dir_mode, file_mode; /* from the repository directory's own mode */
    pthread_mutex_t mu;
    struct fd_slot fds[FD_CACHE];
    uint64_t clock;
};

static int bad_key(const char *key)
{
    /* keys are ours, but never let one escape the directory */
    if (!*key || key[0] == '/' || strstr(key, "..") || strlen(key) > 512)
        return 1;
    return 0;
}

static int full_path(struct fs_ctx *c, const char *key, char *out, size_t n, cairn_err *err)
{
    if (bad_key(key))
        return cairn_error(err, CAIRN_FATAL, "invalid object key '%s'", key);
    if ((size_t)snprintf(out, n, "%s/%s", c->dir, key) >= n)
        return cairn_error(err, CAIRN_FAILED, "path too long for key '%s'", key);
    return CAIRN_OK;
}

static int ensure_parent(const char *path, mode_t mode, cairn_err *err)
{
    char dir[PATH_MAX];
    char *slash;
    struct stat st;
    snprintf(dir, sizeof dir, "%s", path);
    slash = strrchr(dir, '/');
    if (!slash)
        return CAIRN_OK;
    *slash = 0;
    if (stat(dir, &st) == 0)
        return CAIRN_OK;
    return cairn_mkdir_p(dir, (int)mode, err);
}

static void fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    char *slash;
    snprintf(dir, sizeof dir, "%s", path);
    slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        cairn_fsync_dir(dir);
    }
}

static int make_tmp(struct fs_ctx *c, char *tmp, size_t n, cairn_err *err)
{
    uint8_t r[8];
    char hex[17];
    int fd;
    cairn_random(r, sizeof r);
    cairn_hex(r, sizeof r, hex);
    snprintf(tmp, n, "%s/tmp/obj-%s", c->dir, hex);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, c->file_mode);
    if (fd < 0 && errno == ENOENT) {
        char d[PATH_MAX];
        snprintf(d, sizeof d, "%s/tmp", c->dir);
        mkdir(d, c->dir_mode);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, c->file_mode);
    }
    if (fd < 0)
        return cairn_error(err, errno == EACCES || errno == EROFS ? CAIRN_FATAL : CAIRN_FAILED,
                           "cannot create a file in repository '%s': %s", c->dir,
                           strerror(errno));
    return fd;
}

/* Moves tmp to path: link (no overwrite) or rename (overwrite). */
static int publish(struct fs_ctx *c, const char *tmp, const char *path, const char *key,
                   int overwrite,
                   cairn_err *err)
{
    int rc;
    if ((rc = ensure_parent(path, c->dir_mode, err)) != CAIRN_OK) {
        unlink(tmp);
        return rc;
    }
    if (overwrite) {
        if (rename(tmp, path) != 0) {
            int e = errno;
            unlink(tmp);
            return cairn_error(err, CAIRN_FAILED, "cannot store '%s': %s", key, strerror(e));
        }
    } else {
        if (link(tmp, path) != 0) {
            int e = errno;
            unlink(tmp);
            if (e == EEXIST)
                return cairn_error(err, CAIRN_EXISTS, "object '%s' already exists", key);
            return cairn_error(err, CAIRN_FAILED, "cannot store '%s': %s", key, strerror(e));
        }
        unlink(tmp);
    }
    fsync_parent(path);
    return CAIRN_OK;
}

static int fs_put(void *ctx, const char *key, const void *buf, size_t len, int overwrite,
                  cairn_err *err)
{
    struct fs_ctx *c = ctx;
    char path[PATH_MAX], tmp[PATH_MAX];
    int fd, rc;
    if ((rc = full_path(c, key, path, sizeof path, err)) != CAIRN_OK)
        return rc;
    fd = make_tmp(c, tmp, sizeof tmp, err);
    if (fd < 0)
        return fd;
    if (cairn_write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return cairn_error(err, e == ENOSPC ? CAIRN_FATAL : CAIRN_FAILED,
                           "cannot write '%s' in repository '%s': %s", key, c->dir,
                           strerror(e));
    }
    close(fd);
    return publish(c, tmp, path, key, overwrite, err);
}

static int fs_put_file(void *ctx, const char *key, const char *src, cairn_err *err)
{
    struct fs_ctx *c = ctx;
    char path[PATH_MAX];
    int fd, rc;
    if ((rc = full_path(c, key, path, sizeof path, err)) != CAIRN_OK)
        return rc;
    fd = open(src, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_error(err, CAIRN_FAILED, "cannot open '%s': %s", src, strerror(errno));
    /* the spool file takes the repository's file mode */
    if (fchmod(fd, c->file_mode) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return cairn_error(err, CAIRN_FATAL, "cannot write '%s': %s", src, strerror(e));
    }
    close(fd);
    rc = publish(c, src, path, key, 0, err);
    if (rc == CAIRN_EXISTS)
        unlink(src);
    return rc;
}

static int fs_get_range_impl(struct fs_ctx *c, const char *key, uint64_t off, size_t len,
                             int whole, size_t max, cairn_buf *out, cairn_err *err)
{
    char path[PATH_MAX];
    struct stat st;
    int fd, rc;
    size_t got = 0;
    if ((rc = full_path(c, key, path, sizeof path, err)) != CAIRN_OK)
        return rc;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_error(err, errno == ENOENT ? CAIRN_NOTFOUND : CAIRN_FAILED,
                           "cannot read object '%s': %s", key, strerror(errno));
    if (fstat(fd, &st) != 0) {
        close(fd);
        return cairn_error(err, CAIRN_FAILED, "cannot stat '%s': %s", key, strerror(errno));
    }
    if (whole) {
        off = 0;
        if ((uint64_t)st.st_size > max) {
            close(fd);
            return cairn_error(err, CAIRN_CORRUPT,
                               "object '%s' is %lld bytes, more than the %zu allowed", key,
                               (long long)st.st_size, max);
        }
        len = (size_t)st.st_size;
    } else if (off + len > (uint64_t)st.st_size) {
        close(fd);
        return cairn_error(err, CAIRN_CORRUPT,
                           "object '%s' is truncated (%lld bytes, wanted %llu..%llu)", key,
                           (long long)st.st_size, (unsigned long long)off,
                           (unsigned long long)(off + len));
    }
    cairn_buf_reset(out);
    if (cairn_buf_reserve(out, len) != CAIRN_OK) {
        close(fd);
        return cairn_error(err, CAIRN_FAILED, "out of memory reading '%s'", key);
    }
    while (got < len) {
        ssize_t n = pread(fd, out->data + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            return cairn_error(err, n < 0 ? CAIRN_FAILED : CAIRN_CORRUPT,
                               "cannot read object '%s': %s", key, strerror(e));
        }
        got += (size_t)n;
    }
    out->len = len;
    close(fd);
    return CAIRN_OK;
}

/* Returns a cached fd for key (opening it if needed) and its slot, or -1. */
static int fd_acquire(struct fs_ctx *c, const char *key, const char *path, int *slot,
                      uint64_t *size)
{
    int i, victim = -1, fd;
    struct stat st;
    if (strlen(key) >= sizeof c->fds[0].key)
        return -1;
    /* the cached fd must still be the file at that name (another process may
     * have deleted or replaced it): one stat instead of open+fstat+close */
    if (stat(path, &st) != 0)
        return -1;
    pthread_mutex_lock(&c->mu);
    for (i = 0; i < FD_CACHE; i++)
        if (c->fds[i].fd > 0 && strcmp(c->fds[i].key, key) == 0 &&
            c->fds[i].ino == (uint64_t)st.st_ino && c->fds[i].dev == (uint64_t)st.st_dev) {
            c->fds[i].refs++;
            c->fds[i].used = ++c->clock;
            *slot = i;
            *size = c->fds[i].size;
            fd = c->fds[i].fd;
            pthread_mutex_unlock(&c->mu);
            return fd;
        }
    pthread_mutex_unlock(&c->mu);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    for (i = 0; i < FD_CACHE; i++) {
        if (c->fds[i].refs)
            continue;
        if (victim < 0 || c->fds[i].fd <= 0 || c->fds[i].used < c->fds[victim].used)
            victim = i;
        if (c->fds[i].fd <= 0)
            break;
    }
    if (victim < 0) { /* every slot busy: use the fd uncached */
        pthread_mutex_unlock(&c->mu);
        *slot = -1;
        *size = (uint64_t)st.st_size;
        return fd;
    }
    if (c->fds[victim].fd > 0)
        close(c->fds[victim].fd);
    snprintf(c->fds[victim].key, sizeof c->fds[victim].key, "%s", key);
    c->fds[victim].fd = fd;
    c->fds[victim].refs = 1;
    c->fds[victim].size = (uint64_t)st.st_size;
    c->fds[victim].dev = (uint64_t)st.st_dev;
    c->fds[victim].ino = (uint64_t)st.st_ino;
    c->fds[victim].used = ++c->clock;
    pthread_mutex_unlock(&c->mu);
    *slot = victim;
    *size = (uint64_t)st.st_size;
    return fd;
}

static void fd_release(struct fs_ctx *c, int slot, int fd)
{
    if (slot < 0) {
        close(fd);
        return;
    }
    pthread_mutex_lock(&c->mu);
    c->fds[slot].refs--;
    pthread_mutex_unlock(&c->mu);
}

static void fd_forget(struct fs_ctx *c, const char *key)
{
    int i;
    pthread_mutex_lock(&c->mu);
    for (i = 0; i < FD_CACHE; i++)
        if (c->fds[i].fd > 0 && !c->fds[i].refs && strcmp(c->fds[i].key, key) == 0) {
            close(c->fds[i].fd);
            c->fds[i].fd = 0;
            c->fds[i].key[0] = 0;
        }
    pthread_mutex_unlock(&c->mu);
}

static int fs_get(void *ctx, const char *key, cairn_buf *out, size_t max, cairn_err *err)
{
    return fs_get_range_impl(ctx, key, 0, 0, 1, max, out, err);
}

static int fs_get_range(void *ctx, const char *key, uint64_t off, size_t len, cairn_buf *out,
                        cairn_err *err)
{
    struct fs_ctx *c = ctx;
    char path[PATH_MAX];
    uint64_t size;
    size_t got = 0;
    int slot, fd, rc;
    if ((rc = full_path(c, key, path, sizeof path, err)) != CAIRN_OK)
        return rc;
    fd = fd_acquire(c, key, path, &slot, &size);
    if (fd < 0) /* the slow path names the error */
        return fs_get_range_impl(ctx, key, off, len, 0, 0, out, err);
    if (off + len > size) {
        fd_release(c, slot, fd);
        return cairn_error(err, CAIRN_CORRUPT,
                           "object '%s' is truncated (%llu bytes, wanted %llu..%llu)", key,
                           (unsigned long long)size, (unsigned long long)off,
                           (unsigned long long)(off + len));
    }
    cairn_buf_reset(out);
    if (cairn_buf_reserve(out, len) != CAIRN_OK) {
        fd_release(c, slot, fd);
        return cairn_error(err, CAIRN_FAILED, "out of memory reading '%s'", key);
    }
    while (got < len) {
        ssize_t n = pread(fd, out->data + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            fd_release(c, slot, fd);
            return cairn_error(err, n < 0 ? CAIRN_FAILED : CAIRN_CORRUPT,
                               "cannot read object '%s': %s", key, strerror(e));
        }
        got += (size_t)n;
    }
    out->len = len;
    fd_release(c, slot, fd);
    return CAIRN_OK;
}

static int fs_stat(void *ctx, const char *key, uint64_t *size, cairn_err *err)
{
    struct fs_ctx *c = ctx;
    char path[PATH_MAX];
    struct stat st;
    int rc;
    if ((rc = full_path(c, key, path, sizeof path, err)) != CAIRN_OK)
        return rc;
    if (stat(path, &st) != 0)
        return cairn_error(err, errno == ENOENT ? CAIRN_NOTFOUND : CAIRN_FAILED,
                           "cannot stat object '%s': %s", key, strerror(errno));
    if (size)
        *size = (uint64_t)st.st_size;
    return CAIRN_OK;
}

static int walk(const char *root, const char *rel, cairn_list_cb cb, void *arg, cairn_err *err)
{
    char path[PATH_MAX];
    DIR *d;
    struct dirent *de;
    int rc = CAIRN_OK;
    snprintf(path, sizeof path, "%s/%s", root, rel);
    d = opendir(path);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR)
            return CAIRN_OK;
        return cairn_error(err, CAIRN_FAILED, "cannot list '%s': %s", path, strerror(errno));
    }
    while ((de = readdir(d)) != NULL) {
        char key[PATH_MAX];
        struct stat st;
        if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp."))
            continue;
        if ((size_t)snprintf(key, sizeof key, "%s%s%s", rel, *rel ? "/" : "", de->d_name) >=
            sizeof key)
            continue;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", root, key) >= sizeof path ||
            lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (!*rel && strcmp(de->d_name, "tmp") == 0)
                continue;
            rc = walk(root, key, cb, arg, err);
        } else if (S_ISREG(st.st_mode)) {
            if (cb(arg, key, (uint64_t)st.st_size))
                rc = 1;
        }
        if (rc != CAIRN_OK)
            break;
    }
    closedir(d);
    return rc;
}

static int fs_list(void *ctx, const char *prefix, cairn_list_cb cb, void *arg, cairn_err *err)
{
    struct fs_ctx *c = ctx;
    char rel[PATH_MAX];
    size_t n;
    int rc;
    snprintf(rel, sizeof rel, "%s", prefix);
    n = strlen(rel);
    while (n && rel[n - 1] == '/')
        rel[--n] = 0;
    if (n && bad_key(rel))
        return cairn_error(err, CAIRN_FATAL, "invalid list prefix '%s'", prefix);
    rc = walk(c->dir, rel, cb, arg, err);
    return rc > 0 ? CAIRN_OK : rc;
}

static int fs_del(void *ctx, const char *key, cairn_err *err)
{
    struct fs_ctx *c = ctx;
    char path[PATH_MAX];
    int rc;
    if ((rc = full_path(c, key, path, sizeof path, err)) != CAIRN_OK)
        return rc;
    fd_forget(c, key);
    if (unlink(path) != 0) {
        if (errno == ENOENT)
            return cairn_error(err, CAIRN_NOTFOUND, "object '%s' does not exist", key);
        return cairn_error(err, CAIRN_FAILED, "cannot delete '%s': %s", key, strerror(errno));
    }
    fsync_parent(path);
    return CAIRN_OK;
}

static void fs_free(void *ctx)
{
    struct fs_ctx *c = ctx;
    int i;
    if (c) {
        for (i = 0; i < FD_CACHE; i++)
            if (c->fds[i].fd > 0)
                close(c->fds[i].fd);
        pthread_mutex_destroy(&c->mu);
        free(c->dir);
        free(c);
    }
}

static const struct cairn_store_ops fs_ops = {
    "file", fs_put, fs_put_file, fs_get, fs_get_range, fs_stat, fs_list, fs_del, NULL, fs_free,
    NULL, /* del_many: the generic one-by-one loop is as good as any for files */
};

int cairn_fs_store_open(const char *dir, int create, cairn_store **out, cairn_err *err)
{
    struct stat st;
    struct fs_ctx *c;
    cairn_store *s;
    char abs[PATH_MAX];
    if (create) {
        /* private unless the user makes the directory otherwise: objects then
         * follow the directory's mode (chmod 0750 to share it with a group) */
        int rc = cairn_mkdir_p(dir, 0700, err);
        if (rc != CAIRN_OK)
            return rc;
    }
    if (stat(dir, &st) != 0)
        return cairn_error(err, errno == ENOENT ? CAIRN_NOTFOUND : CAIRN_FAILED,
                           "repository '%s' does not exist (create it with 'cairn init')",
                           dir);
    if (!S_ISDIR(st.st_mode))
        return cairn_error(err, CAIRN_FAILED, "repository '%s' is not a directory", dir);
    if (!realpath(dir, abs))
        return cairn_error(err, CAIRN_FAILED, "cannot resolve '%s': %s", dir, strerror(errno));
    c = calloc(1, sizeof *c);
    s = calloc(1, sizeof *s);
    if (!c || !s) {
        free(c);
        free(s);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    pthread_mutex_init(&c->mu, NULL);
    c->dir = strdup(abs);
    c->dir_mode = st.st_mode & 07777;
    c->file_mode = st.st_mode & 0666;
    s->ops = &fs_ops;
    s->ctx = c;
    s->url = strdup(dir);
    s->tmpdir = cairn_path_join(abs, "tmp");
    if (!c->dir || !s->url || !s->tmpdir) {
        cairn_store_free(s);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    *out = s;
    return CAIRN_OK;
}

int cairn_store_open_with(const char *url, const struct cairn_store_opts *opts, int create,
                          cairn_store **out, cairn_err *err)
{
    if (strncmp(url, "s3://", 5) == 0)
        return cairn_s3_store_open(url, opts, create, out, err);
    if (strncmp(url, "file://", 7) == 0)
        return cairn_fs_store_open(url + 7, create, out, err);
    if (strstr(url, "://"))
        return cairn_error(err, CAIRN_FATAL,
                           "unsupported repository URL '%s' (use a path, file:///path or s3://BUCKET/PREFIX)", url);
    return cairn_fs_store_open(url, create, out, err);
}

int cairn_store_open(const char *url, cairn_store **out, cairn_err *err)
{
    return cairn_store_open_with(url, NULL, 0, out, err);
}

int cairn_store_create(const char *url, cairn_store **out, cairn_err *err)
{
    return cairn_store_open_with(url, NULL, 1, out, err);
}

void cairn_store_free(cairn_store *s)
{
    if (!s)
        return;
    if (s->ops && s->ops->free)
        s->ops->free(s->ctx);
    free(s->url);
    free(s->tmpdir);
    free(s);
}

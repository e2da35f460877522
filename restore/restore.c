/* restore/restore.c — cairn_restore(): a snapshot (or part of it) onto disk.
 *
 * Into an empty target (no --overwrite), regular files and directories are
 * written by a direct writer here (dirfd-relative openat/mkdirat with
 * O_NOFOLLOW/O_EXCL; see "the direct writer" below); everything else, and
 * every entry of a restore with --overwrite, through libarchive's
 * archive_write_disk.
 *
 * The snapshot is walked in depth-first name order by restore/pipeline.c, whose
 * worker threads read and decompress chunks ahead of this (the calling) thread,
 * which only writes. Paths are written relative to the target after a chdir
 * into it, with archive_write_disk's secure flags; on top of that every path and
 * hard link target is checked here ("..", ".", empty components and absolute
 * paths are refused with a warning naming the entry and the reason).
 *
 * Choices:
 * - Include globs: fnmatch(3) with FNM_PATHNAME on snapshot-relative paths (see
 *   pipeline.h), so '*' does not cross '/': the glob etc/\*.conf (backslash
 *   only to keep this comment valid C) matches etc/a.conf, not etc/x/b.conf; a
 *   plain path "etc/hosts" or a directory "etc" (everything under it) works;
 *   the directories above a selected entry are restored with their metadata.
 * - A file whose content cannot be read (missing pack, corrupt chunk, content
 *   not matching its size) is reported as "cannot restore 'path': why", counted
 *   in st->failed, and the partial file is REMOVED, so no silently wrong file
 *   remains; later hard links to it fail (reported too). The restore goes on and
 *   returns CAIRN_WARN.
 * - A tree that cannot be read: reported naming the directory (which is
 *   restored empty), its contents skipped, counted in st->failed.
 * - Sparse files: each data extent is written at its offset (pwrite, or
 *   archive_write_data_block()), so the holes stay holes; the file is then
 *   truncated to its size (ftruncate, or archive_write_disk at the end of the
 *   entry), which covers a trailing hole. (ARCHIVE_EXTRACT_SPARSE is not used: the stored map already
 *   says where the holes are, and scanning every block for zeros costs CPU.)
 * - Sockets are skipped without a warning (the program that listens creates
 *   them), as tar does.
 * - Errors that make every later write fail too (ARCHIVE_FATAL, a full disk, a
 *   read-only file system, quota) stop the restore with CAIRN_FAILED.
 * - The snapshot root's mode, owner (when root) and times are applied to the
 *   target directory itself at the very end. A target created here is made
 *   0700 until then, so nobody sees a half-restored tree with open permissions.
 * - With overwrite, a directory that already exists is kept (libarchive never
 *   follows or removes it; a symlink or file in the way of a directory or file
 *   is removed, ARCHIVE_EXTRACT_UNLINK). libarchive defers mode and times only
 *   for directories it creates, so for existing ones this file does it after
 *   archive_write_close(): kept writable (mode | 0700) while restoring, the
 *   snapshot's mode and times set at the end, deepest first.
 * - Warnings from the metadata (times, xattrs, ACLs, file flags the target file
 *   system refuses) are reported but do not count as failed; they still make
 *   the result CAIRN_WARN. */
#define _GNU_SOURCE
#include "restore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../engine/archive_dl.h"
#include "pipeline.h"

#define PROGRESS_INTERVAL 0.1 /* seconds */

/* A directory that already existed (restore with overwrite): libarchive defers
 * mode and times only for directories it creates, so for these we do it. */
struct dirfix {
    char *path;
    uint32_t mode;
    int64_t atime_ns, mtime_ns;
};

#define FAST_MAX_DEPTH 64 /* directory fds kept open by the direct writer */

struct rctx {
    const struct cairn_restore_opts *o;
    struct cairn_restore_stats *st;
    struct archive *a;
    struct archive_entry *e;
    rs_pipe *p;
    double last_progress;
    uint64_t total_files, total_bytes;
    int warned;   /* something was reported: the result is CAIRN_WARN */
    int fatal;    /* the writer cannot go on */
    struct dirfix *fix;
    size_t n_fix, cap_fix;
    /* The direct writer (see fast_file()): on when restoring into a target
     * that was empty, without --overwrite. */
    int fast;
    int tfd;             /* the target directory */
    int is_root;
    mode_t umask;
    /* fds of the directories along dpath: dfd[i] is the directory dpath[0,
     * dend[i]), opened one component at a time from tfd with O_NOFOLLOW */
    char *dpath;
    size_t dpath_cap;
    int dfd[FAST_MAX_DEPTH + 1];
    size_t dend[FAST_MAX_DEPTH + 1];
    /* 1 when the directory is known not to be set-group-ID, so a new entry
     * gets our egid (then a chown to ourselves can be skipped) */
    unsigned char dplain[FAST_MAX_DEPTH + 1];
    uid_t euid;
    gid_t egid;
    int depth;
};

__attribute__((format(printf, 2, 3))) static void warnf(struct rctx *c, const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    c->warned = 1;
    if (!c->o->warn)
        return;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    c->o->warn(c->o->warn_arg, s ? s : "restore: out of memory formatting a warning");
    free(s);
}

/* libarchive's message, with the system error when it does not say it (a
 * full disk shows as "Write failed" alone otherwise). Valid until the next
 * call on this thread. */
static const char *aerr(struct archive *a)
{
    static __thread char buf[1024];
    const char *s = archive_error_string(a);
    int e = archive_errno(a);
    if (!s || !*s)
        s = "unknown libarchive error";
    if (e > 0 && !strstr(s, strerror(e))) {
        snprintf(buf, sizeof buf, "%s: %s", s, strerror(e));
        return buf;
    }
    return s;
}

static void progress(struct rctx *c, int force)
{
    double now;
    if (!c->o->progress)
        return;
    now = cairn_mono();
    if (!force && now - c->last_progress < PROGRESS_INTERVAL)
        return;
    c->last_progress = now;
    c->o->progress(c->o->progress_arg, c->st->files,
                   c->st->bytes, c->total_files, c->total_bytes);
}

/* Totals for the progress line, if the manifest has them (0 = unknown). */
static uint64_t manifest_u64(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!v) {
        json_t *stats = json_object_get(o, "stats");
        v = json_is_object(stats) ? json_object_get(stats, key) : NULL;
    }
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v)
                                                             : 0;
}

/* After a write error: whether the next writes would all fail the same way. */
static int write_error_is_fatal(struct archive *a, int ar)
{
    int e = archive_errno(a);
    return ar == ARCHIVE_FATAL || e == ENOSPC || e == EDQUOT || e == EROFS || e == EIO;
}

static int write_block(struct rctx *c, const void *buf, size_t len, uint64_t off, cairn_err *ce)
{
    la_ssize_t ar = archive_write_data_block(c->a, buf, len, (la_int64_t)off);
    if (ar == ARCHIVE_OK)
        return CAIRN_OK;
    if (write_error_is_fatal(c->a, (int)ar))
        c->fatal = 1;
    return cairn_error(ce, CAIRN_FAILED, "%s", aerr(c->a));
}

/* Writes one block of a file at off: through libarchive (arg NULL) or the
 * direct writer (arg points at the fd). */
typedef int (*block_fn)(struct rctx *c, void *arg, const uint8_t *d, size_t len, uint64_t off,
                        cairn_err *ce);

static int archive_block(struct rctx *c, void *arg, const uint8_t *d, size_t len, uint64_t off,
                         cairn_err *ce)
{
    (void)arg;
    return write_block(c, d, len, off, ce);
}

/* Writes a file's content: the chunks in order, spread over the data extents
 * of a sparse file. */
static int write_content(struct rctx *c, const struct cairn_node *n, block_fn fn, void *arg,
                         cairn_err *ce)
{
    uint64_t expected = n->size, pos = 0, xdone = 0;
    size_t x = 0, i;
    const uint8_t *d;
    size_t len;
    int rc;

    if (n->sparse) {
        expected = 0;
        for (i = 0; i < n->n_sparse; i++)
            expected += n->sparse[i].len;
    }
    while ((rc = rs_pipe_chunk(c->p, &d, &len, ce)) == CAIRN_OK) {
        if (len > expected - pos)
            return cairn_error(ce, CAIRN_CORRUPT,
                               "its stored content is longer than its size (%" PRIu64 " bytes)",
                               expected);
        if (!n->sparse) {
            if ((rc = fn(c, arg, d, len, pos, ce)) != CAIRN_OK)
                return rc;
        } else {
            size_t done = 0;
            while (done < len) {
                uint64_t take;
                while (x < n->n_sparse && xdone == n->sparse[x].len) {
                    x++;
                    xdone = 0;
                }
                if (x == n->n_sparse) /* cannot happen: pos + len <= expected */
                    return cairn_error(ce, CAIRN_CORRUPT, "its sparse map is inconsistent");
                take = n->sparse[x].len - xdone;
                if (take > len - done)
                    take = len - done;
                rc = fn(c, arg, d + done, (size_t)take, n->sparse[x].off + xdone, ce);
                if (rc != CAIRN_OK)
                    return rc;
                done += (size_t)take;
                xdone += take;
            }
        }
        pos += len;
        c->st->bytes += len;
        progress(c, 0);
    }
    if (rc != RS_END)
        return rc;
    if (pos != expected)
        return cairn_error(ce, CAIRN_CORRUPT,
                           "its stored content is shorter than its size (%" PRIu64 " of %" PRIu64
                           " bytes)",
                           pos, expected);
    return CAIRN_OK;
}

static void count(struct rctx *c, const struct cairn_node *n)
{
    if (n->type == CAIRN_T_FILE)
        c->st->files++;
    else if (n->type == CAIRN_T_DIR)
        c->st->dirs++;
    else
        c->st->other++;
}

static int add_dirfix(struct rctx *c, const char *path, const struct cairn_node *n);
static void ns_to_timespec(int64_t ns, struct timespec *ts);

/* ---- the direct writer ----
 *
 * Regular files and directories of a restore into an empty target are written
 * here instead of through archive_write_disk, whose secure-path checks cost
 * several openat/fstatat per entry. Safety does not depend on those checks:
 * every directory is reached from the target's fd one component at a time with
 * O_DIRECTORY | O_NOFOLLOW (a symlink anywhere on the way fails the open), and
 * the entry itself is made with mkdirat or O_CREAT | O_EXCL | O_NOFOLLOW, which
 * never follow or reuse anything already there. Paths passed rs_path_problem()
 * first (no "..", ".", empty or absolute components). Whatever this writer does
 * not handle (hard links, symlinks, devices, ACLs, xattrs, file flags, a name
 * that already exists, nesting deeper than FAST_MAX_DEPTH) goes to libarchive
 * as before. Directories are made 0700 and get their mode and times at the end
 * (the dirfix list), like the ones that existed before. */

#define FAST_FALLBACK 2 /* not handled here: use archive_write_disk */

static void fast_pop(struct rctx *c)
{
    close(c->dfd[c->depth]);
    c->depth--;
}

static void fast_close_all(struct rctx *c)
{
    while (c->depth > 0)
        fast_pop(c);
}

/* Opens one directory below the top of the stack and pushes it; 0 or -1. */
static int fast_push(struct rctx *c, const char *name, size_t end)
{
    int fd;
    if (c->depth >= FAST_MAX_DEPTH)
        return -1;
    fd = openat(c->dfd[c->depth], name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    c->depth++;
    c->dfd[c->depth] = fd;
    c->dend[c->depth] = end;
    c->dplain[c->depth] = 0; /* not made here: unknown */
    return 0;
}

/* The fd of the directory that holds path (snapshot-relative, checked), with
 * *base set to its last component; -1 when it cannot be reached this way. */
static int fast_parent(struct rctx *c, const char *path, const char **base)
{
    const char *slash = strrchr(path, '/');
    size_t plen = slash ? (size_t)(slash - path) : 0, pos;
    char comp[NAME_MAX + 1];

    *base = slash ? slash + 1 : path;
    /* keep the levels that are a prefix of the parent */
    while (c->depth > 0) {
        size_t e = c->dend[c->depth];
        if (e <= plen && memcmp(c->dpath, path, e) == 0 && (e == plen || path[e] == '/'))
            break;
        fast_pop(c);
    }
    if (plen + 1 > c->dpath_cap) {
        size_t cap = plen + 256;
        char *np = realloc(c->dpath, cap);
        if (!np)
            return -1;
        c->dpath = np;
        c->dpath_cap = cap;
    }
    memcpy(c->dpath, path, plen);
    c->dpath[plen] = 0;
    pos = c->dend[c->depth];
    while (pos < plen) {
        size_t start = pos == 0 ? 0 : pos + 1, end = start;
        while (end < plen && path[end] != '/')
            end++;
        if (end - start > NAME_MAX)
            return -1;
        memcpy(comp, path + start, end - start);
        comp[end - start] = 0;
        if (fast_push(c, comp, end) != 0)
            return -1;
        pos = end;
    }
    return c->dfd[c->depth];
}

static uid_t fast_uid(struct rctx *c, const struct cairn_node *n)
{
    return c->o->numeric_owner ? n->uid : (uid_t)archive_write_disk_uid(c->a, n->user, n->uid);
}

static gid_t fast_gid(struct rctx *c, const struct cairn_node *n)
{
    return c->o->numeric_owner ? n->gid : (gid_t)archive_write_disk_gid(c->a, n->group, n->gid);
}

static int errno_is_fatal(int e)
{
    return e == ENOSPC || e == EDQUOT || e == EROFS || e == EIO;
}

/* The direct writer's block_fn: all of d at off (arg: the fd). */
static int fast_block(struct rctx *c, void *arg, const uint8_t *d, size_t len, uint64_t off,
                      cairn_err *ce)
{
    int fd = *(int *)arg;
    if (off > (uint64_t)INT64_MAX - len)
        return cairn_error(ce, CAIRN_CORRUPT, "its sparse map is out of range");
    while (len > 0) {
        ssize_t w = pwrite(fd, d, len, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            if (errno_is_fatal(e))
                c->fatal = 1;
            return cairn_error(ce, CAIRN_FAILED, "write failed: %s", strerror(e));
        }
        d += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return CAIRN_OK;
}

/* The content of a file onto fd; holes are left unwritten and the size set
 * by ftruncate. */
static int fast_content(struct rctx *c, int fd, const struct cairn_node *n, cairn_err *ce)
{
    int rc = write_content(c, n, fast_block, &fd, ce);
    if (rc != CAIRN_OK || !n->sparse)
        return rc;
    if (n->size > (uint64_t)INT64_MAX)
        return cairn_error(ce, CAIRN_CORRUPT, "its size is out of range");
    if (ftruncate(fd, (off_t)n->size) != 0) {
        if (errno_is_fatal(errno))
            c->fatal = 1;
        return cairn_error(ce, CAIRN_FAILED, "cannot set its size: %s", strerror(errno));
    }
    return CAIRN_OK;
}

/* Whether an entry just made in the directory at the top of the stack (the
 * parent at level `level`) needs a chown to get n's owner: not when that is
 * who made it (a new entry gets our euid, and our egid unless the directory
 * is set-group-ID). */
static int fast_chown_needed(struct rctx *c, const struct cairn_node *n, int level)
{
    return !c->dplain[level] || fast_uid(c, n) != c->euid || fast_gid(c, n) != c->egid;
}

/* Owner, mode and times of a file just written (fd open on it). */
static void fast_file_meta(struct rctx *c, int fd, const char *path, const struct cairn_node *n,
                           int mode_set)
{
    uint32_t mode = n->mode & 07777;
    struct timespec ts[2];
    if (c->is_root && fast_chown_needed(c, n, c->depth) &&
        fchown(fd, fast_uid(c, n), fast_gid(c, n)) != 0) {
        warnf(c, "cannot fully restore '%s': cannot set its owner: %s", path, strerror(errno));
        mode &= ~(uint32_t)06000; /* no set-id bits for the wrong owner */
        mode_set = 0;
    }
    /* chown clears the set-id bits: the mode goes after it */
    if ((!mode_set || (mode & 07000)) && fchmod(fd, mode) != 0)
        warnf(c, "cannot fully restore '%s': cannot set its mode: %s", path, strerror(errno));
    ns_to_timespec(n->atime_ns, &ts[0]);
    ns_to_timespec(n->mtime_ns, &ts[1]);
    if (futimens(fd, ts) != 0)
        warnf(c, "cannot fully restore '%s': cannot set its times: %s", path, strerror(errno));
}

/* A regular file through the direct writer: CAIRN_OK (written, or reported and
 * counted as failed), FAST_FALLBACK, or CAIRN_FAILED (err set) when the restore
 * cannot go on. */
static int fast_file(struct rctx *c, struct rs_item *it, cairn_err *err)
{
    const struct cairn_node *n = &it->node;
    const char *base;
    int pfd = fast_parent(c, it->path, &base), fd, rc, mode_set;
    uint32_t create;
    cairn_err ce;

    if (pfd < 0)
        return FAST_FALLBACK;
    /* created with its final permissions when the umask leaves them alone */
    create = n->mode & 0777;
    mode_set = (create & ~(uint32_t)c->umask) == (n->mode & 07777);
    fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                (mode_t)(mode_set ? create : 0600));
    if (fd < 0) {
        if (errno_is_fatal(errno))
            return cairn_error(err, CAIRN_FAILED, "cannot restore '%s': %s", it->path,
                               strerror(errno));
        return FAST_FALLBACK; /* e.g. it exists: libarchive decides */
    }
    cairn_err_clear(&ce);
    rc = fast_content(c, fd, n, &ce);
    if (rc == CAIRN_OK) {
        fast_file_meta(c, fd, it->path, n, mode_set);
        if (close(fd) != 0) {
            if (errno_is_fatal(errno))
                c->fatal = 1;
            rc = cairn_error(&ce, CAIRN_FAILED, "write failed: %s", strerror(errno));
        }
        fd = -1;
    }
    if (rc != CAIRN_OK) {
        if (fd >= 0)
            close(fd);
        if (c->fatal)
            return cairn_error(err, CAIRN_FAILED, "cannot restore '%s': %s", it->path, ce.msg);
        /* no silently wrong file: remove what was written */
        if (unlinkat(pfd, base, 0) != 0 && errno != ENOENT)
            warnf(c, "cannot remove the partly restored '%s': %s", it->path, strerror(errno));
        warnf(c, "cannot restore '%s': %s", it->path, ce.msg);
        c->st->failed++;
        return CAIRN_OK;
    }
    count(c, n);
    progress(c, 0);
    return CAIRN_OK;
}

/* A directory through the direct writer: made 0700, owned as in the snapshot,
 * its mode and times set at the end. Returns CAIRN_OK when it was made and
 * needs nothing else, 1 when it was made but its xattrs/ACLs/flags still go
 * through libarchive (as an existing directory), FAST_FALLBACK, or
 * CAIRN_FAILED (err set). */
static int fast_dir(struct rctx *c, struct rs_item *it, cairn_err *err)
{
    const struct cairn_node *n = &it->node;
    const char *base;
    int pfd = fast_parent(c, it->path, &base);
    size_t plen = strlen(it->path);

    if (pfd < 0)
        return FAST_FALLBACK;
    /* ACLs, xattrs and flags: libarchive makes the directory itself. Handed an
     * existing directory instead, it drops a default ACL (seen with umask 077,
     * tests/e2e/encrypt.sh). */
    if (n->n_xattrs || n->acl || n->fflags)
        return FAST_FALLBACK;
    if (mkdirat(pfd, base, 0700) != 0) {
        if (errno_is_fatal(errno))
            return cairn_error(err, CAIRN_FAILED, "cannot restore '%s': %s", it->path,
                               strerror(errno));
        return FAST_FALLBACK;
    }
    if (add_dirfix(c, it->path, n) != CAIRN_OK)
        return cairn_error(err, CAIRN_FAILED, "out of memory");
    /* the next entries are most likely inside it */
    if (plen + 1 > c->dpath_cap) {
        char *np = realloc(c->dpath, plen + 256);
        if (np) {
            c->dpath = np;
            c->dpath_cap = plen + 256;
        }
    }
    if (plen + 1 <= c->dpath_cap && fast_push(c, base, plen) == 0) {
        memcpy(c->dpath, it->path, plen + 1);
        /* made 0700, so set-group-ID only if inherited from its parent, or
         * later through libarchive (the return 1 below) */
        c->dplain[c->depth] = c->dplain[c->depth - 1] && (!(n->mode & S_ISGID) ||
                                                          !(n->n_xattrs || n->acl || n->fflags));
        if (c->is_root && fast_chown_needed(c, n, c->depth - 1) &&
            fchown(c->dfd[c->depth], fast_uid(c, n), fast_gid(c, n)) != 0)
            warnf(c, "cannot fully restore '%s': cannot set its owner: %s", it->path,
                  strerror(errno));
    } else if (c->is_root) {
        /* not reachable by fd (too deep): libarchive sets owner and the rest */
        return 1;
    }
    if (n->n_xattrs || n->acl || n->fflags)
        return 1;
    count(c, n);
    progress(c, 0);
    return CAIRN_OK;
}

/* Restores one item. Returns CAIRN_OK (also when the entry was skipped and
 * reported) or CAIRN_FAILED when the restore cannot go on (err set). */
static int restore_item(struct rctx *c, struct rs_item *it, cairn_err *err)
{
    const struct cairn_node *n = &it->node;
    const char *why;
    cairn_err ce;
    int ar, rc, existing_dir_locked = 0, made_dir = 0;

    if (it->kind == RS_WARN) {
        warnf(c, "%s", it->msg);
        c->st->failed++;
        return CAIRN_OK;
    }
    if (n->type == CAIRN_T_SOCK)
        return CAIRN_OK;
    if ((why = rs_path_problem(it->path)) != NULL) {
        warnf(c, "cannot restore '%s': refusing unsafe path (%s)", it->path, why);
        c->st->failed++;
        return CAIRN_OK;
    }
    if (it->link && (why = rs_path_problem(it->link)) != NULL) {
        warnf(c, "cannot restore '%s': refusing hard link target '%s' (%s)", it->path, it->link,
              why);
        c->st->failed++;
        return CAIRN_OK;
    }

    if (c->fast && !it->link) {
        int fr = FAST_FALLBACK;
        if (n->type == CAIRN_T_FILE && !n->n_xattrs && !n->acl && !n->fflags)
            fr = fast_file(c, it, err);
        else if (n->type == CAIRN_T_DIR)
            fr = fast_dir(c, it, err);
        if (fr == 1)
            made_dir = 1; /* made here; its other metadata through libarchive */
        else if (fr != FAST_FALLBACK)
            return fr;
    }

    archive_entry_clear(c->e);
    cairn_err_clear(&ce);
    rc = cairn_node_to_entry(n, c->e, &ce);
    if (rc == CAIRN_WARN) {
        warnf(c, "cannot restore all metadata of '%s': %s", it->path, ce.msg);
    } else if (rc != CAIRN_OK) {
        warnf(c, "cannot restore '%s': %s", it->path, ce.msg[0] ? ce.msg : cairn_rc_name(rc));
        c->st->failed++;
        return CAIRN_OK;
    }
    archive_entry_copy_pathname(c->e, it->path);
    if (made_dir) {
        /* an existing directory to libarchive: its mode and times are set at
         * the end (dirfix), writable until then */
        archive_entry_set_perm(c->e, (n->mode & 07777) | 0700);
    } else if ((c->o->overwrite || c->fast) && n->type == CAIRN_T_DIR) {
        struct stat sb;
        if (lstat(it->path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            if (add_dirfix(c, it->path, n) != CAIRN_OK)
                return cairn_error(err, CAIRN_FAILED, "out of memory");
            /* writable for now, whatever the snapshot says; fixed at the end */
            archive_entry_set_perm(c->e, (n->mode & 07777) | 0700);
            existing_dir_locked = (sb.st_mode & 0700) != 0700;
        }
    }
    if (it->link) {
        archive_entry_copy_hardlink(c->e, it->link);
        archive_entry_set_size(c->e, 0);
        archive_entry_sparse_clear(c->e);
    }

    ar = archive_write_header(c->a, c->e);
    if (ar < ARCHIVE_WARN) {
        if (ar == ARCHIVE_FATAL)
            return cairn_error(err, CAIRN_FAILED, "cannot restore '%s': %s", it->path,
                               aerr(c->a));
        warnf(c, "cannot restore '%s': %s", it->path, aerr(c->a));
        c->st->failed++;
        return CAIRN_OK;
    }
    if (ar == ARCHIVE_WARN)
        warnf(c, "cannot fully restore '%s': %s", it->path, aerr(c->a));
    if (existing_dir_locked) {
        /* libarchive defers the mode of an existing directory to the end, so
         * open it up now or its entries cannot be replaced (when not root) */
        int fd = open(it->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), bad;
        struct stat sb;
        if (fd >= 0)
            bad = fstat(fd, &sb) != 0 || fchmod(fd, (sb.st_mode & 07777) | 0700) != 0;
        else /* unreadable (e.g. mode 0): lstat says it is our directory */
            bad = errno != EACCES || lstat(it->path, &sb) != 0 || !S_ISDIR(sb.st_mode) ||
                  chmod(it->path, (sb.st_mode & 07777) | 0700) != 0;
        if (bad)
            warnf(c, "cannot make '%s' writable: %s", it->path, strerror(errno));
        if (fd >= 0)
            close(fd);
    }

    if (n->type == CAIRN_T_FILE && !it->link) {
        cairn_err_clear(&ce);
        rc = write_content(c, n, archive_block, NULL, &ce);
        if (rc != CAIRN_OK) {
            archive_write_finish_entry(c->a);
            if (c->fatal)
                return cairn_error(err, CAIRN_FAILED, "cannot restore '%s': %s", it->path,
                                   ce.msg);
            /* no silently wrong file: remove what was written */
            if (unlink(it->path) != 0 && errno != ENOENT)
                warnf(c, "cannot remove the partly restored '%s': %s", it->path,
                      strerror(errno));
            warnf(c, "cannot restore '%s': %s", it->path, ce.msg);
            c->st->failed++;
            return CAIRN_OK;
        }
    }
    ar = archive_write_finish_entry(c->a);
    if (ar == ARCHIVE_FATAL || (ar < ARCHIVE_OK && write_error_is_fatal(c->a, ar)))
        return cairn_error(err, CAIRN_FAILED, "cannot restore '%s': %s", it->path, aerr(c->a));
    if (ar < ARCHIVE_OK)
        warnf(c, "cannot fully restore '%s': %s", it->path, aerr(c->a));
    count(c, n);
    progress(c, 0);
    return CAIRN_OK;
}

static int add_dirfix(struct rctx *c, const char *path, const struct cairn_node *n)
{
    struct dirfix *f;
    if (c->n_fix == c->cap_fix) {
        size_t nc = c->cap_fix ? c->cap_fix * 2 : 64;
        struct dirfix *nf = realloc(c->fix, nc * sizeof *nf);
        if (!nf)
            return CAIRN_FAILED;
        c->fix = nf;
        c->cap_fix = nc;
    }
    f = &c->fix[c->n_fix];
    if (!(f->path = strdup(path)))
        return CAIRN_FAILED;
    f->mode = n->mode & 07777;
    f->atime_ns = n->atime_ns;
    f->mtime_ns = n->mtime_ns;
    c->n_fix++;
    return CAIRN_OK;
}

static void ns_to_timespec(int64_t ns, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ns / 1000000000LL);
    ts->tv_nsec = (long)(ns % 1000000000LL);
    if (ts->tv_nsec < 0) {
        ts->tv_nsec += 1000000000L;
        ts->tv_sec--;
    }
}

static int dirfix_cmp(const void *a, const void *b)
{
    /* deepest first, as libarchive does with its own fixups */
    return strcmp(((const struct dirfix *)b)->path, ((const struct dirfix *)a)->path);
}

/* Opens a directory below tfd without following any symlink on the way. */
static int open_dir_beneath(int tfd, const char *path)
{
    const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    const char *p = path;
    char comp[NAME_MAX + 1];
    int fd = -1, dfd = tfd;
#ifdef SYS_openat2
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)flags;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    fd = (int)syscall(SYS_openat2, tfd, path, &how, sizeof how);
    if (fd >= 0 || (errno != ENOSYS && errno != EPERM && errno != E2BIG))
        return fd;
#endif
    /* one component at a time */
    for (;;) {
        size_t len = strcspn(p, "/");
        if (len == 0 || len > NAME_MAX) {
            errno = len ? ENAMETOOLONG : EINVAL;
            fd = -1;
            break;
        }
        memcpy(comp, p, len);
        comp[len] = 0;
        fd = openat(dfd, comp, flags);
        if (dfd != tfd)
            close(dfd);
        if (fd < 0 || !p[len])
            break;
        dfd = fd;
        p += len + 1;
    }
    return fd;
}

static void apply_dirfixes(struct rctx *c)
{
    size_t i;
    if (c->n_fix > 1)
        qsort(c->fix, c->n_fix, sizeof *c->fix, dirfix_cmp);
    for (i = 0; i < c->n_fix; i++) {
        struct dirfix *f = &c->fix[i];
        struct timespec ts[2];
        int fd = open_dir_beneath(c->tfd, f->path);
        if (fd < 0) {
            warnf(c, "cannot set the mode and times of '%s': %s", f->path, strerror(errno));
            continue;
        }
        ns_to_timespec(f->atime_ns, &ts[0]);
        ns_to_timespec(f->mtime_ns, &ts[1]);
        if (fchmod(fd, f->mode) != 0 || futimens(fd, ts) != 0)
            warnf(c, "cannot set the mode and times of '%s': %s", f->path, strerror(errno));
        close(fd);
    }
}

static void free_dirfixes(struct rctx *c)
{
    size_t i;
    for (i = 0; i < c->n_fix; i++)
        free(c->fix[i].path);
    free(c->fix);
    c->fix = NULL;
    c->n_fix = c->cap_fix = 0;
}

/* The root's own metadata onto the target directory. */
static void apply_root(struct rctx *c, const struct cairn_node *n, int tfd)
{
    const char *t = c->o->target;
    struct timespec ts[2];
    if (n->type != CAIRN_T_DIR)
        return; /* the manifest has no root metadata */
    if (geteuid() == 0) {
        uid_t uid = c->o->numeric_owner ? n->uid
                                        : (uid_t)archive_write_disk_uid(c->a, n->user, n->uid);
        gid_t gid = c->o->numeric_owner
                        ? n->gid
                        : (gid_t)archive_write_disk_gid(c->a, n->group, n->gid);
        if (fchown(tfd, uid, gid) != 0)
            warnf(c, "cannot set the owner of target '%s': %s", t, strerror(errno));
    }
    if (fchmod(tfd, n->mode & 07777) != 0)
        warnf(c, "cannot set the mode of target '%s': %s", t, strerror(errno));
    ns_to_timespec(n->atime_ns, &ts[0]);
    ns_to_timespec(n->mtime_ns, &ts[1]);
    if (futimens(tfd, ts) != 0)
        warnf(c, "cannot set the times of target '%s': %s", t, strerror(errno));
}

/* 1 = exists and has entries, 0 = exists and is empty, CAIRN_NOTFOUND = absent. */
static int target_state(const char *target, cairn_err *err)
{
    struct stat sb;
    DIR *d;
    struct dirent *de;
    int nonempty = 0;
    if (stat(target, &sb) != 0) {
        if (errno == ENOENT)
            return CAIRN_NOTFOUND;
        return cairn_error(err, CAIRN_FAILED, "cannot access target '%s': %s", target,
                           strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode))
        return cairn_error(err, CAIRN_FAILED, "target '%s' is not a directory", target);
    if (!(d = opendir(target)))
        return cairn_error(err, CAIRN_FAILED, "cannot read target '%s': %s", target,
                           strerror(errno));
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            nonempty = 1;
            break;
        }
    }
    closedir(d);
    return nonempty;
}

/* mkdir -p: missing parents 0755 (less the umask), the target itself 0700
 * until the root's mode is applied at the end. */
static int make_target(const char *target, cairn_err *err)
{
    char *parent = strdup(target), *slash;
    size_t n;
    int rc = CAIRN_OK;
    if (!parent)
        return cairn_error(err, CAIRN_FAILED, "out of memory");
    n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/')
        parent[--n] = 0;
    slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = 0;
        rc = cairn_mkdir_p(parent, 0755, err);
    }
    free(parent);
    if (rc == CAIRN_OK && mkdir(target, 0700) != 0 && errno != EEXIST)
        rc = cairn_error(err, CAIRN_FAILED, "cannot create target '%s': %s", target,
                         strerror(errno));
    return rc;
}

int cairn_restore(cairn_repo *r, const struct cairn_snapshot *snap,
                  const struct cairn_restore_opts *opts, struct cairn_restore_stats *st,
                  cairn_err *err)
{
    struct cairn_restore_stats dummy;
    struct rctx c;
    struct rs_select sel;
    struct rs_item *it;
    int tfd = -1, cwd = -1, moved = 0, rc, ar, flags;

    if (!st)
        st = &dummy;
    memset(st, 0, sizeof *st);
    memset(&c, 0, sizeof c);
    c.o = opts;
    c.st = st;
    if (!opts || !opts->target || !*opts->target)
        return cairn_error(err, CAIRN_FAILED, "restore: no target directory given");
    {
        char where[768];
        if (!cairn_snapshot_has_data(snap, where, sizeof where))
            return cairn_error(err, CAIRN_FAILED,
                               "snapshot %.12s holds no files, nothing was restored: %s",
                               snap->id, where);
    }
    /* before the target is created or touched */
    if ((rc = cairn_archive_load(err)) != CAIRN_OK)
        return rc;

    rc = target_state(opts->target, err);
    if (rc < 0 && rc != CAIRN_NOTFOUND)
        return rc;
    if (rc == 1 && !opts->overwrite)
        return cairn_error(err, CAIRN_FAILED,
                           "target '%s' is not empty (use --overwrite to restore into it)",
                           opts->target);
    if (rc == CAIRN_NOTFOUND && (rc = make_target(opts->target, err)) != CAIRN_OK)
        return rc;
    tfd = open(opts->target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (tfd < 0)
        return cairn_error(err, CAIRN_FAILED, "cannot open target '%s': %s", opts->target,
                           strerror(errno));
    cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
#ifdef O_PATH
    if (cwd < 0)
        cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
#endif
    if (cwd < 0) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot open the current directory: %s",
                         strerror(errno));
        goto out;
    }

    memset(&sel, 0, sizeof sel);
    sel.globs = opts->includes;
    sel.n_globs = opts->includes ? opts->n_includes : 0;
    sel.verb = "restore";
    sel.verify_full = opts->verify_full;
    if ((rc = rs_pipe_start(r, snap, &sel, opts->workers, &c.p, err)) != CAIRN_OK)
        goto out;
    if (!sel.n_globs && snap->json) {
        c.total_files = manifest_u64(snap->json, "files");
        c.total_bytes = manifest_u64(snap->json, "total_size");
    }

    c.a = archive_write_disk_new();
    c.e = archive_entry_new();
    if (!c.a || !c.e) {
        rc = cairn_error(err, CAIRN_FAILED, "out of memory");
        goto out;
    }
    flags = ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
            ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS | ARCHIVE_EXTRACT_PERM |
            ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_XATTR |
            ARCHIVE_EXTRACT_FFLAGS;
    if (geteuid() == 0)
        flags |= ARCHIVE_EXTRACT_OWNER;
    if (opts->overwrite)
        flags |= ARCHIVE_EXTRACT_UNLINK; /* replace a symlink in the way, never follow it */
    archive_write_disk_set_options(c.a, flags);
    if (!opts->numeric_owner)
        archive_write_disk_set_standard_lookup(c.a);

    if (fchdir(tfd) != 0) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot change into target '%s': %s", opts->target,
                         strerror(errno));
        goto out;
    }
    moved = 1;
    c.last_progress = cairn_mono();
    c.tfd = tfd;
    c.dfd[0] = tfd;
    c.fast = !opts->overwrite;
    c.is_root = geteuid() == 0;
    c.euid = geteuid();
    c.egid = getegid();
    {
        struct stat tsb;
        c.dplain[0] = fstat(tfd, &tsb) == 0 && !(tsb.st_mode & S_ISGID);
    }
    c.umask = umask(077);
    umask(c.umask);

    rc = CAIRN_OK;
    while ((it = rs_pipe_next(c.p)) != NULL) {
        if ((rc = restore_item(&c, it, err)) != CAIRN_OK)
            break;
    }
    /* directory permissions and times are applied here (libarchive's fixups) */
    fast_close_all(&c);
    ar = archive_write_close(c.a);
    if (rc == CAIRN_OK && ar < ARCHIVE_OK)
        warnf(&c, "cannot fully restore the directories under '%s': %s", opts->target,
              aerr(c.a));
    apply_dirfixes(&c);
    if (rc == CAIRN_OK) {
        apply_root(&c, &snap->root, tfd);
        progress(&c, 1);
        rc = c.warned || st->failed ? CAIRN_WARN : CAIRN_OK;
        if (st->failed)
            cairn_error(err, CAIRN_WARN, "%" PRIu64 " entries could not be restored",
                        st->failed);
        else if (c.warned)
            cairn_error(err, CAIRN_WARN, "some metadata could not be restored");
    }

out:
    fast_close_all(&c);
    free(c.dpath);
    free_dirfixes(&c);
    rs_pipe_free(c.p);
    if (c.a)
        archive_write_free(c.a);
    archive_entry_free(c.e);
    if (moved && fchdir(cwd) != 0 && rc == CAIRN_OK)
        rc = cairn_error(err, CAIRN_FAILED, "cannot change back to the working directory: %s",
                         strerror(errno));
    if (cwd >= 0)
        close(cwd);
    if (tfd >= 0)
        close(tfd);
    return rc;
}

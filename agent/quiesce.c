/* agent/quiesce.c — fsfreeze with a watchdog and a freeze record (see
 * quiesce.h). */
#define _GNU_SOURCE
#include "quiesce.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define THAWED_BYTE 'T'
#define RECORD_MAX 4096

struct cairn_freeze {
    char mount[PATH_MAX];
    char record[PATH_MAX];
    int dirfd;   /* the mount point */
    int wfd;     /* write end of the watchdog's pipe */
    double t0;   /* cairn_mono() at the freeze */
};

/* ---- which filesystems may be frozen ---- */

/* Undoes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
    char *o = s;
    while (*s) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 4;
        } else {
            *o++ = *s++;
        }
    }
    *o = 0;
}

/* The root (field 4) and fstype of the mount at exactly `path` (the last
 * such line: the top of a stack of mounts). 0 found, -1 not a mount point. */
static int mount_of(const char *path, char *root, size_t rootlen, char *fstype, size_t fslen)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char *line = NULL;
    size_t cap = 0;
    int found = -1;
    if (!f)
        return -1;
    while (getline(&line, &cap, f) > 0) {
        char *fld[6], *save = NULL, *p, *dash;
        int i;
        if (!(dash = strstr(line, " - ")))
            continue;
        *dash = 0;
        for (i = 0, p = strtok_r(line, " ", &save); p && i < 6;
             p = strtok_r(NULL, " ", &save))
            fld[i++] = p;
        if (i < 5)
            continue;
        unescape(fld[4]);
        if (strcmp(fld[4], path) != 0)
            continue;
        unescape(fld[3]);
        snprintf(root, rootlen, "%s", fld[3]);
        p = dash + 3;
        snprintf(fstype, fslen, "%.*s", (int)strcspn(p, " \n"), p);
        found = 0;
    }
    free(line);
    fclose(f);
    return found;
}

int cairn_freeze_check(const char *mount, const char *state_dir, cairn_err *err)
{
    char real[PATH_MAX], root[PATH_MAX], fstype[64];
    struct stat st, rs;
    if (!realpath(mount, real))
        return cairn_error(err, CAIRN_FAILED, "cannot resolve '%s' to freeze it: %s", mount,
                           strerror(errno));
    if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode))
        return cairn_error(err, CAIRN_FAILED, "'%s' is not a directory: it cannot be frozen",
                           real);
    if (mount_of(real, root, sizeof root, fstype, sizeof fstype) != 0)
        return cairn_error(err, CAIRN_FAILED,
                           "'%s' is not a mount point: fsfreeze would freeze the whole "
                           "filesystem it is on, so it is refused (fsfreeze needs a volume "
                           "that is a filesystem of its own)",
                           real);
    if (strcmp(root, "/") != 0)
        return cairn_error(err, CAIRN_FAILED,
                           "'%s' is a bind mount of the directory '%s' of a %s filesystem, not "
                           "a filesystem of its own: fsfreeze would freeze all of that "
                           "filesystem, so it is refused",
                           real, root, fstype);
    if (stat("/", &rs) == 0 && rs.st_dev == st.st_dev)
        return cairn_error(err, CAIRN_FAILED,
                           "'%s' is on the same filesystem as '/': it is never frozen", real);
    if (state_dir && stat(state_dir, &rs) == 0 && rs.st_dev == st.st_dev)
        return cairn_error(err, CAIRN_FAILED,
                           "'%s' is on the same filesystem as the agent's state directory "
                           "'%s': it is never frozen",
                           real, state_dir);
    return CAIRN_OK;
}

/* ---- the watchdog ---- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_others(int a, int b)
{
    int lo = a < b ? a : b, hi = a < b ? b : a;
    if (lo > 3)
        close_range(3, (unsigned)lo - 1, 0);
    if (hi > lo + 1)
        close_range((unsigned)lo + 1, (unsigned)hi - 1, 0);
    close_range((unsigned)hi + 1, ~0u, 0);
}

static void say(const char *a, const char *b)
{
    /* write(2) only: this runs in a child of a threaded process */
    if (write(2, a, strlen(a)) < 0 || write(2, b, strlen(b)) < 0 || write(2, "\n", 1) < 0)
        return;
}

/* The grandchild: async-signal-safe calls only. */
static void watchdog(int rfd, int dirfd, int64_t timeout_ms, const char *mount)
{
    int64_t deadline = mono_ms() + timeout_ms;
    char c;
    close_others(rfd, dirfd);
    for (;;) {
        struct pollfd p = {rfd, POLLIN, 0};
        int64_t left = deadline - mono_ms();
        int n;
        if (left <= 0) {
            if (ioctl(dirfd, FITHAW, 0) == 0)
                say("cairn freeze watchdog: the freeze deadline passed, thawed ", mount);
            _exit(0);
        }
        n = poll(&p, 1, left > 1000 ? 1000 : (int)left);
        if (n < 0 && errno != EINTR)
            break;
        if (n <= 0)
            continue;
        n = (int)read(rfd, &c, 1);
        if (n == 1 && c == THAWED_BYTE)
            _exit(0); /* the agent thawed it */
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            break; /* EOF: the agent is gone */
    }
    if (ioctl(dirfd, FITHAW, 0) == 0)
        say("cairn freeze watchdog: the agent went away during a freeze, thawed ", mount);
    _exit(0);
}

/* Starts the detached watchdog; 0 or an errno. */
static int start_watchdog(int rfd, int dirfd, int64_t timeout_ms, const char *mount)
{
    pid_t pid = fork(), w;
    int status;
    if (pid < 0)
        return errno;
    if (pid == 0) {
        pid_t g;
        if (setsid() < 0)
            _exit(1);
        g = fork();
        if (g < 0)
            _exit(1);
        if (g == 0)
            watchdog(rfd, dirfd, timeout_ms, mount);
        _exit(0);
    }
    do
        w = waitpid(pid, &status, 0);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return errno;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : ECHILD;
}

/* ---- records ---- */

static int record_write(const char *state_dir, const char *mount, char *out, size_t outlen,
                        cairn_err *err)
{
    char dir[PATH_MAX];
    uint8_t rnd[8];
    char hex[17];
    int rc;
    snprintf(dir, sizeof dir, "%s/freeze", state_dir);
    if ((rc = cairn_mkdir_p(dir, 0700, err)) != CAIRN_OK)
        return cairn_error_prefix(err, "cannot record the freeze of '%s'", mount);
    cairn_random(rnd, sizeof rnd);
    cairn_hex(rnd, sizeof rnd, hex);
    if ((size_t)snprintf(out, outlen, "%s/%s", dir, hex) >= outlen)
        return cairn_error(err, CAIRN_FAILED, "the state directory path '%s' is too long",
                           state_dir);
    if ((rc = cairn_write_file_atomic(out, mount, strlen(mount), 0600, err)) != CAIRN_OK)
        return cairn_error_prefix(err, "cannot record the freeze of '%s'", mount);
    return CAIRN_OK;
}

static void record_remove(const char *path)
{
    char dir[PATH_MAX], *s;
    if (!path[0] || unlink(path) != 0)
        return;
    snprintf(dir, sizeof dir, "%s", path);
    if ((s = strrchr(dir, '/'))) {
        *s = 0;
        cairn_fsync_dir(dir);
    }
}

/* ---- freeze, thaw ---- */

int cairn_freeze_begin(const char *mount, const char *state_dir, int64_t timeout_ms,
                       cairn_freeze **out, cairn_err *err)
{
    cairn_freeze *f;
    int p[2], rc, e;
    *out = NULL;
    if (timeout_ms <= 0)
        timeout_ms = CAIRN_FREEZE_TIMEOUT_MS;
    if (!state_dir)
        state_dir = CAIRN_STATE_DIR;
    if ((rc = cairn_freeze_check(mount, state_dir, err)) != CAIRN_OK)
        return rc;
    if (!(f = calloc(1, sizeof *f)))
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    f->dirfd = f->wfd = -1;
    if (!realpath(mount, f->mount)) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot resolve '%s': %s", mount, strerror(errno));
        goto fail;
    }
    if ((f->dirfd = open(f->mount, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot open '%s' to freeze it: %s", f->mount,
                         strerror(errno));
        goto fail;
    }
    if ((rc = record_write(state_dir, f->mount, f->record, sizeof f->record, err)) != CAIRN_OK)
        goto fail;
    if (pipe2(p, O_CLOEXEC) != 0) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot create the watchdog's pipe: %s",
                         strerror(errno));
        goto fail;
    }
    e = start_watchdog(p[0], f->dirfd, timeout_ms, f->mount);
    close(p[0]);
    f->wfd = p[1];
    if (e) {
        rc = cairn_error(err, CAIRN_FAILED,
                         "cannot start the freeze watchdog: %s (nothing was frozen)",
                         strerror(e));
        goto fail;
    }
    if (ioctl(f->dirfd, FIFREEZE, 0) != 0) {
        e = errno;
        rc = cairn_error(err, CAIRN_FAILED, "cannot freeze '%s': %s%s", f->mount, strerror(e),
                         e == EBUSY    ? " (it is frozen already: by whom?)"
                         : e == EPERM  ? " (the agent needs CAP_SYS_ADMIN: a privileged container)"
                         : e == EOPNOTSUPP ? " (this filesystem cannot be frozen)"
                                       : "");
        goto fail;
    }
    f->t0 = cairn_mono();
    *out = f;
    return CAIRN_OK;
fail:
    if (f->wfd >= 0) {
        char c = THAWED_BYTE; /* nothing frozen: the watchdog may go */
        if (write(f->wfd, &c, 1) < 0) { /* it thaws nothing that is not frozen */
        }
        close(f->wfd);
    }
    if (f->dirfd >= 0)
        close(f->dirfd);
    record_remove(f->record);
    free(f);
    return rc;
}

int cairn_freeze_end(cairn_freeze *f, cairn_err *err)
{
    int rc = CAIRN_OK, e = 0;
    char c = THAWED_BYTE;
    if (!f)
        return CAIRN_OK;
    if (ioctl(f->dirfd, FITHAW, 0) != 0) {
        e = errno;
        if (e == EINVAL)
            rc = cairn_error(err, CAIRN_FAILED,
                             "'%s' was thawed before the snapshot was done (after %.1f s: the "
                             "freeze watchdog's deadline passed, or someone ran fsfreeze -u): "
                             "the snapshot is not trusted",
                             f->mount, cairn_mono() - f->t0);
        else
            rc = cairn_error(err, CAIRN_FAILED,
                             "cannot thaw '%s': %s (the freeze watchdog thaws it when its "
                             "deadline passes)",
                             f->mount, strerror(e));
    }
    if (rc == CAIRN_OK || e == EINVAL) {
        if (write(f->wfd, &c, 1) < 0) { /* the watchdog thaws on EOF: harmless */
        }
        record_remove(f->record);
    }
    close(f->wfd); /* else the watchdog sees EOF and tries again */
    close(f->dirfd);
    free(f);
    return rc;
}

int64_t cairn_freeze_elapsed_ms(const cairn_freeze *f)
{
    return f ? (int64_t)((cairn_mono() - f->t0) * 1000) : 0;
}

int cairn_freeze_recover(const char *state_dir, cairn_freeze_log_fn log, void *arg,
                         cairn_err *err)
{
    char dir[PATH_MAX], path[PATH_MAX + 256], msg[2 * PATH_MAX + 512];
    DIR *d;
    struct dirent *de;
    int thawed = 0;
    if (!state_dir)
        state_dir = CAIRN_STATE_DIR;
    snprintf(dir, sizeof dir, "%s/freeze", state_dir);
    if (!(d = opendir(dir))) {
        if (errno == ENOENT)
            return 0;
        return cairn_error(err, CAIRN_FAILED, "cannot read the freeze records in '%s': %s", dir,
                           strerror(errno));
    }
    while ((de = readdir(d))) {
        cairn_buf b = CAIRN_BUF_INIT;
        cairn_err e;
        const char *mount;
        int fd;
        if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp"))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (cairn_read_file(path, &b, RECORD_MAX, &e) != CAIRN_OK) {
            snprintf(msg, sizeof msg, "freeze record '%s': %s", path, e.msg);
            if (log)
                log(arg, msg);
            cairn_buf_free(&b);
            continue;
        }
        mount = cairn_buf_cstr(&b);
        if ((fd = open(mount, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
            snprintf(msg, sizeof msg,
                     "a previous agent froze '%s' and did not record its thaw; it cannot be "
                     "opened now (%s): nothing to thaw",
                     mount, strerror(errno));
        } else if (ioctl(fd, FITHAW, 0) == 0) {
            thawed++;
            snprintf(msg, sizeof msg,
                     "a previous agent left '%s' frozen (killed mid-freeze with its "
                     "watchdog?): thawed it",
                     mount);
        } else {
            snprintf(msg, sizeof msg,
                     "a previous agent froze '%s' and did not record its thaw; it is not "
                     "frozen now (%s)",
                     mount, strerror(errno));
        }
        if (fd >= 0)
            close(fd);
        if (log)
            log(arg, msg);
        unlink(path);
        cairn_buf_free(&b);
    }
    closedir(d);
    cairn_fsync_dir(dir);
    return thawed;
}

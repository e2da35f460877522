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
#include <signal.h>
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

/* ---- MariaDB BACKUP STAGE through a client coprocess ---- */

#define MY_LINE_MAX 2048

struct cairn_my_quiesce {
    pid_t pid;
    int in, out;          /* the client's stdin (we write), stdout+stderr (we read) */
    int64_t timeout_ms;
    char buf[MY_LINE_MAX + 1];
    size_t len;
    unsigned marker;
    double blocked_at;    /* cairn_mono() when BACKUP STAGE BLOCK_COMMIT was sent */
};

/* One option-file value, quoted ("..." with \\ and \" escaped). */
static void opt_line(cairn_buf *b, const char *key, const char *v)
{
    if (!v || !*v)
        return;
    cairn_buf_appendf(b, "%s=\"", key);
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            cairn_buf_putc(b, '\\');
        if (*v == '\n')
            cairn_buf_append(b, "\\n", 2);
        else
            cairn_buf_putc(b, *v);
    }
    cairn_buf_append(b, "\"\n", 2);
}

/* Reads one line (without its newline) before the deadline. */
static int my_line(cairn_my_quiesce *q, int64_t deadline, char *out, size_t outlen,
                   cairn_err *err)
{
    for (;;) {
        char *nl = memchr(q->buf, '\n', q->len);
        struct pollfd p = {q->out, POLLIN, 0};
        int64_t left;
        ssize_t r;
        if (nl || q->len == MY_LINE_MAX) {
            size_t n = nl ? (size_t)(nl - q->buf) : q->len;
            snprintf(out, outlen, "%.*s", (int)n, q->buf);
            n = nl ? n + 1 : n;
            memmove(q->buf, q->buf + n, q->len - n);
            q->len -= n;
            return CAIRN_OK;
        }
        if ((left = deadline - mono_ms()) <= 0)
            return cairn_error(err, CAIRN_FAILED,
                               "MariaDB: no answer within %lld ms (a long statement holding "
                               "the backup stage?)",
                               (long long)q->timeout_ms);
        if (poll(&p, 1, left > 1000 ? 1000 : (int)left) <= 0)
            continue;
        r = read(q->out, q->buf + q->len, MY_LINE_MAX - q->len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return cairn_error(err, CAIRN_FAILED, "MariaDB: the client exited%s%s",
                               q->len ? ": " : "", q->len ? q->buf : "");
        q->len += (size_t)r;
        q->buf[q->len] = 0;
    }
}

/* Sends sql followed by a marker query and collects the rows before the
 * marker (at most max_rows lines, each into rows[i]). */
static int my_exec(cairn_my_quiesce *q, const char *sql, char rows[][MY_LINE_MAX + 1],
                   size_t max_rows, size_t *n_rows, cairn_err *err)
{
    char cmd[1024], marker[32], line[MY_LINE_MAX + 1];
    int64_t deadline = mono_ms() + q->timeout_ms;
    int n;
    if (n_rows)
        *n_rows = 0;
    snprintf(marker, sizeof marker, "cairn-marker-%u", ++q->marker);
    n = snprintf(cmd, sizeof cmd, "%s;\nSELECT '%s';\n", sql, marker);
    if (cairn_write_all(q->in, cmd, (size_t)n) != 0)
        return cairn_error(err, CAIRN_FAILED, "MariaDB: the client went away (%s)",
                           strerror(errno));
    for (;;) {
        int rc = my_line(q, deadline, line, sizeof line, err);
        if (rc != CAIRN_OK)
            return cairn_error_prefix(err, "%s", sql);
        if (strcmp(line, marker) == 0)
            return CAIRN_OK;
        if (strncmp(line, "ERROR ", 6) == 0)
            return cairn_error(err, CAIRN_FAILED, "MariaDB: %s: %.500s", sql, line);
        if (n_rows && *n_rows < max_rows)
            snprintf(rows[(*n_rows)++], MY_LINE_MAX + 1, "%s", line);
    }
}

static void my_field(const char *row, int idx, char *out, size_t outlen)
{
    const char *p = row, *e;
    int i;
    for (i = 0; i < idx && p; i++)
        p = (p = strchr(p, '\t')) ? p + 1 : NULL;
    if (!p) {
        out[0] = 0;
        return;
    }
    e = strchr(p, '\t');
    snprintf(out, outlen, "%.*s", (int)(e ? (size_t)(e - p) : strlen(p)), p);
}

int cairn_my_quiesce_start(const struct cairn_my_conn *c, const char *client,
                           const char *state_dir, int64_t timeout_ms, cairn_my_quiesce **out,
                           struct cairn_my_coords *coords, cairn_err *err)
{
    cairn_my_quiesce *q;
    cairn_buf opts = CAIRN_BUF_INIT;
    char cnf[PATH_MAX], arg[PATH_MAX + 32], hex[17], pos[32];
    char (*rows)[MY_LINE_MAX + 1] = NULL;
    uint8_t rnd[8];
    int in[2] = {-1, -1}, outp[2] = {-1, -1}, rc;
    size_t n;
    char *argv[6];

    *out = NULL;
    memset(coords, 0, sizeof *coords);
    if (!client)
        client = getenv("CAIRN_MARIADB_CLIENT");
    if (!client || !*client)
        client = "mariadb";
    if (!state_dir)
        state_dir = CAIRN_STATE_DIR;
    if (!(q = calloc(1, sizeof *q)) || !(rows = calloc(4, sizeof *rows))) {
        free(q);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    q->pid = -1;
    q->in = q->out = -1;
    q->timeout_ms = timeout_ms > 0 ? timeout_ms : CAIRN_FREEZE_TIMEOUT_MS;
    if ((rc = cairn_mkdir_p(state_dir, 0700, err)) != CAIRN_OK)
        goto fail;
    cairn_random(rnd, sizeof rnd);
    cairn_hex(rnd, sizeof rnd, hex);
    snprintf(cnf, sizeof cnf, "%s/mariadb-%s.cnf", state_dir, hex);
    cairn_buf_appendf(&opts, "[client]\n");
    opt_line(&opts, "host", c->host);
    opt_line(&opts, "port", c->port);
    opt_line(&opts, "socket", c->socket);
    opt_line(&opts, "user", c->user);
    opt_line(&opts, "password", c->password);
    rc = cairn_write_file_atomic(cnf, opts.data, opts.len, 0600, err);
    if (opts.data)
        explicit_bzero(opts.data, opts.cap);
    cairn_buf_free(&opts);
    if (rc != CAIRN_OK)
        goto fail;
    snprintf(arg, sizeof arg, "--defaults-file=%s", cnf);
    argv[0] = (char *)client;
    argv[1] = arg;
    argv[2] = "--batch";
    argv[3] = "--skip-column-names";
    argv[4] = "--unbuffered";
    argv[5] = NULL;
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(outp, O_CLOEXEC) != 0) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot create pipes: %s", strerror(errno));
        goto fail_cnf;
    }
    if ((q->pid = fork()) < 0) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot start '%s': %s", client, strerror(errno));
        goto fail_cnf;
    }
    if (q->pid == 0) {
        dup2(in[0], 0);
        dup2(outp[1], 1);
        dup2(outp[1], 2);
        execvp(client, argv);
        if (write(2, "ERROR cannot run the MariaDB client\n", 36) < 0)
            _exit(127);
        _exit(127);
    }
    close(in[0]);
    close(outp[1]);
    q->in = in[1];
    q->out = outp[0];
    in[0] = in[1] = outp[0] = outp[1] = -1;
    rc = my_exec(q, "BACKUP STAGE START", NULL, 0, NULL, err);
    unlink(cnf); /* the client has connected: it needs the file no more */
    if (rc != CAIRN_OK)
        goto fail;
    q->blocked_at = cairn_mono();
    if ((rc = my_exec(q, "BACKUP STAGE BLOCK_COMMIT", NULL, 0, NULL, err)) != CAIRN_OK)
        goto fail;
    if ((rc = my_exec(q, "SHOW MASTER STATUS", rows, 4, &n, err)) != CAIRN_OK)
        goto fail;
    if (n) {
        my_field(rows[0], 0, coords->file, sizeof coords->file);
        my_field(rows[0], 1, pos, sizeof pos);
        coords->pos = strtoull(pos, NULL, 10);
    }
    if ((rc = my_exec(q, "SELECT @@gtid_binlog_pos, @@server_id, @@version", rows, 4, &n,
                      err)) != CAIRN_OK)
        goto fail;
    if (n) {
        my_field(rows[0], 0, coords->gtid, sizeof coords->gtid);
        my_field(rows[0], 1, coords->server_id, sizeof coords->server_id);
        my_field(rows[0], 2, coords->version, sizeof coords->version);
    }
    free(rows);
    *out = q;
    return CAIRN_OK;
fail_cnf:
    unlink(cnf);
fail:
    if (in[0] >= 0)
        close(in[0]);
    if (in[1] >= 0)
        close(in[1]);
    if (outp[0] >= 0)
        close(outp[0]);
    if (outp[1] >= 0)
        close(outp[1]);
    free(rows);
    cairn_my_quiesce_free(q);
    return rc;
}

void cairn_my_quiesce_free(cairn_my_quiesce *q)
{
    int status;
    if (!q)
        return;
    if (q->in >= 0)
        close(q->in);
    if (q->pid > 0) {
        int i;
        /* stdin closed: the client quits and the session ends */
        for (i = 0; i < 100 && waitpid(q->pid, &status, WNOHANG) == 0; i++) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (i == 100) {
            kill(q->pid, SIGKILL);
            waitpid(q->pid, &status, 0);
        }
    }
    if (q->out >= 0)
        close(q->out);
    free(q);
}

double cairn_my_quiesce_blocked_since(const cairn_my_quiesce *q)
{
    return q ? q->blocked_at : 0;
}

int cairn_my_quiesce_end(cairn_my_quiesce *q, cairn_err *err)
{
    int rc = my_exec(q, "BACKUP STAGE END", NULL, 0, NULL, err);
    cairn_my_quiesce_free(q);
    return rc;
}

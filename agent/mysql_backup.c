/* agent/mysql_backup.c — MariaDB base backups through mariabackup's
 * xbstream (see mysql_pitr.h), and the process helpers restore-mysql uses.
 *
 * mariabackup writes the stream to a pipe the engine reads as one file
 * (nothing is spooled to disk). The binlog coordinates come from the
 * xtrabackup_binlog_info file inside the stream, found by a small xbstream
 * chunk parser that watches the bytes as the engine reads them; mariabackup's
 * "MySQL binlog position:" log line is the fallback and a cross-check. The
 * coordinates are taken by mariabackup under BACKUP STAGE BLOCK_COMMIT, so
 * they match the data a --prepare'd copy holds. */
#define _GNU_SOURCE
#include "mysql_pitr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ---- process helpers ---- */

int cairn_my_find_prog(const char *name, char *out, size_t n)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    char *save = NULL, *d;
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin",
             path && *path ? path : "/bin");
    for (d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        if (!*d)
            continue;
        if ((size_t)snprintf(out, n, "%s/%s", d, name) >= n)
            continue;
        if (access(out, X_OK) == 0)
            return 0;
    }
    out[0] = 0;
    return -1;
}

int cairn_my_spawn(const char *const *argv, int in_fd, int out_fd, const char *log, int utc,
                   pid_t *pid, cairn_err *err)
{
    char **envp = NULL;
    size_t ne = 0, i, k = 0;
    int logfd = -1, nullfd;
    pid_t p;
    if (utc) {
        while (environ[ne])
            ne++;
        if (!(envp = calloc(ne + 2, sizeof *envp)))
            return cairn_error(err, CAIRN_FATAL, "out of memory");
        for (i = 0; i < ne; i++)
            if (strncmp(environ[i], "TZ=", 3) != 0)
                envp[k++] = environ[i];
        envp[k++] = "TZ=UTC";
        envp[k] = NULL;
    }
    if (log && (logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0) {
        free(envp);
        return cairn_error(err, CAIRN_FAILED, "cannot create '%s': %s", log, strerror(errno));
    }
    nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    p = fork();
    if (p == 0) {
        int fd;
        dup2(in_fd >= 0 ? in_fd : nullfd, 0);
        dup2(out_fd >= 0 ? out_fd : nullfd, 1);
        dup2(logfd >= 0 ? logfd : nullfd, 2);
        for (fd = 3; fd < 1024; fd++)
            close(fd);
        signal(SIGPIPE, SIG_DFL);
        execve(argv[0], (char *const *)argv, envp ? envp : environ);
        _exit(127);
    }
    if (logfd >= 0)
        close(logfd);
    if (nullfd >= 0)
        close(nullfd);
    free(envp);
    if (p < 0)
        return cairn_error(err, CAIRN_FAILED, "cannot start '%s': %s", argv[0], strerror(errno));
    *pid = p;
    return CAIRN_OK;
}

void cairn_my_log_line(const char *log, const char *prefix, char *out, size_t n)
{
    FILE *f = log ? fopen(log, "r") : NULL;
    char line[1024];
    out[0] = 0;
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r' || line[l - 1] == ' '))
            line[--l] = 0;
        if (!l || (prefix && !strstr(line, prefix)))
            continue;
        snprintf(out, n, "%s", line);
    }
    fclose(f);
}

int cairn_my_wait(pid_t pid, const char *what, const char *log, cairn_err *err)
{
    int st = 0;
    char last[512];
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return cairn_error(err, CAIRN_FAILED, "%s: cannot wait for it: %s", what,
                               strerror(errno));
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return CAIRN_OK;
    cairn_my_log_line(log, NULL, last, sizeof last);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127 && !last[0])
        return cairn_error(err, CAIRN_FAILED, "%s could not be run (is it installed?)", what);
    if (WIFSIGNALED(st))
        return cairn_error(err, CAIRN_FAILED, "%s was killed by signal %d%s%s", what,
                           WTERMSIG(st), last[0] ? ": " : "", last);
    return cairn_error(err, CAIRN_FAILED, "%s failed (exit %d)%s%s", what, WEXITSTATUS(st),
                       last[0] ? ": " : "", last);
}

int cairn_my_tempdir(const char *what, char *out, size_t n, cairn_err *err)
{
    const char *t = getenv("TMPDIR");
    if ((size_t)snprintf(out, n, "%s/cairn-%s.XXXXXX", t && *t ? t : "/tmp", what) >= n)
        return cairn_error(err, CAIRN_FAILED, "TMPDIR is too long");
    if (!mkdtemp(out))
        return cairn_error(err, CAIRN_FAILED, "cannot create a temporary directory '%s': %s",
                           out, strerror(errno));
    return CAIRN_OK;
}

static void rm_at(int dfd, const char *name)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *de;
        if (!d) {
            if (fd >= 0)
                close(fd);
        } else {
            while ((de = readdir(d)) != NULL)
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                    rm_at(dirfd(d), de->d_name);
            closedir(d);
        }
        unlinkat(dfd, name, AT_REMOVEDIR);
    } else {
        unlinkat(dfd, name, 0);
    }
}

void cairn_my_rmtree(const char *path, int keep_top)
{
    DIR *d;
    struct dirent *de;
    if (!keep_top) {
        rm_at(AT_FDCWD, path);
        return;
    }
    if (!(d = opendir(path)))
        return;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            rm_at(dirfd(d), de->d_name);
    closedir(d);
}

/* ---- base backup manifests ---- */

static int jstr(json_t *o, const char *k, char *out, size_t n)
{
    json_t *v = json_object_get(o, k);
    if (json_is_integer(v)) {
        snprintf(out, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return 0;
    }
    if (!json_is_string(v) || strlen(json_string_value(v)) >= n)
        return -1;
    snprintf(out, n, "%s", json_string_value(v));
    return 0;
}

int cairn_my_basebackup_parse(const char *manifest_json, const char *snapshot_id,
                              struct cairn_my_basebackup *out, cairn_err *err)
{
    json_error_t je;
    json_t *o = json_loads(manifest_json, 0, &je), *my, *v;
    int ok = 1;
    memset(out, 0, sizeof *out);
    if (!o)
        return cairn_error(err, CAIRN_CORRUPT, "snapshot %.12s: manifest: %s", snapshot_id,
                           je.text);
    my = json_object_get(o, "mysql");
    if (!json_is_object(my) || !json_is_string(json_object_get(my, "stream")) ||
        json_is_true(json_object_get(o, "partial"))) {
        json_decref(o);
        return cairn_error(err, CAIRN_NOTFOUND,
                           "snapshot %.12s is not a complete MariaDB base backup", snapshot_id);
    }
    snprintf(out->snapshot, sizeof out->snapshot, "%s", snapshot_id);
    if (jstr(my, "server", out->server, sizeof out->server) ||
        jstr(my, "binlog_file", out->binlog_file, sizeof out->binlog_file) ||
        jstr(my, "stream", out->stream, sizeof out->stream))
        ok = 0;
    jstr(my, "server_uuid", out->server_uuid, sizeof out->server_uuid);
    jstr(my, "server_version", out->server_version, sizeof out->server_version);
    jstr(my, "gtid", out->gtid, sizeof out->gtid);
    if (!json_is_integer(v = json_object_get(my, "binlog_pos")) || json_integer_value(v) < 4)
        ok = 0;
    else
        out->binlog_pos = (uint64_t)json_integer_value(v);
    out->server_id = (uint32_t)json_integer_value(json_object_get(my, "server_id"));
    out->start_ns = json_integer_value(json_object_get(my, "start_ns"));
    out->stop_ns = json_integer_value(json_object_get(my, "stop_ns"));
    json_decref(o);
    if (!ok || !out->stop_ns)
        return cairn_error(err, CAIRN_CORRUPT,
                           "snapshot %.12s: the MariaDB part of its manifest is invalid",
                           snapshot_id);
    return CAIRN_OK;
}

struct bb_list {
    const char *server;
    cairn_my_basebackup_cb cb;
    void *arg;
};

static int bb_row(void *arg, const struct cairn_snaprow *row)
{
    struct bb_list *l = arg;
    struct cairn_my_basebackup b;
    cairn_err e;
    if (!row->manifest || !strstr(row->manifest, "\"mysql\""))
        return 0;
    if (cairn_my_basebackup_parse(row->manifest, row->id, &b, &e) != CAIRN_OK)
        return 0;
    if (l->server && strcmp(l->server, b.server) != 0)
        return 0;
    return l->cb(l->arg, &b);
}

int cairn_my_basebackup_list(cairn_catalog *cat, const char *server, cairn_my_basebackup_cb cb,
                             void *arg, cairn_err *err)
{
    struct bb_list l = {server, cb, arg};
    return cairn_catalog_list_snapshots(cat, NULL, bb_row, &l, err);
}

/* ---- the xbstream watcher ---- */

#define XBS_MAGIC "XBSTCK01"
#define XBS_PATH_MAX 4096
#define XBS_INFO_MAX 4096
#define XBS_INFO_FILE "xtrabackup_binlog_info"

struct cairn_my_xbs {
    uint8_t hdr[8 + 1 + 1 + 4 + XBS_PATH_MAX + 20];
    size_t have;
    uint64_t skip;     /* payload bytes still to pass */
    int capture;       /* the payload belongs to xtrabackup_binlog_info */
    int broken;        /* not a stream we understand: stop looking */
    char info[XBS_INFO_MAX + 1];
    size_t info_len;
    int seen_info;
};

static uint32_t xle32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

cairn_my_xbs *cairn_my_xbs_new(void)
{
    return calloc(1, sizeof(struct cairn_my_xbs));
}

void cairn_my_xbs_free(cairn_my_xbs *x)
{
    free(x);
}

const char *cairn_my_xbs_binlog_info(const cairn_my_xbs *x)
{
    return x->seen_info && !x->broken ? x->info : NULL;
}

static int xbs_tap(void *arg, const uint8_t *d, size_t len, cairn_err *err)
{
    (void)err;
    cairn_my_xbs_feed(arg, d, len);
    return CAIRN_OK;
}

void cairn_my_xbs_feed(cairn_my_xbs *x, const uint8_t *d, size_t len)
{
    while (len && !x->broken) {
        size_t need, take;
        int len_known;
        if (x->skip) {
            take = x->skip < len ? (size_t)x->skip : len;
            if (x->capture && x->info_len < XBS_INFO_MAX) {
                size_t c = XBS_INFO_MAX - x->info_len < take ? XBS_INFO_MAX - x->info_len : take;
                memcpy(x->info + x->info_len, d, c);
                x->info_len += c;
                x->info[x->info_len] = 0;
            }
            x->skip -= take;
            d += take;
            len -= take;
            continue;
        }
        need = 14;
        len_known = x->have >= 14;
        if (len_known) {
            uint32_t pl = xle32(x->hdr + 10);
            if (memcmp(x->hdr, XBS_MAGIC, 8) != 0 || pl > XBS_PATH_MAX ||
                (x->hdr[9] != 'P' && x->hdr[9] != 'E')) {
                x->broken = 1;
                break;
            }
            need = 14 + pl + (x->hdr[9] == 'P' ? 20 : 0);
        }
        take = need - x->have < len ? need - x->have : len;
        memcpy(x->hdr + x->have, d, take);
        x->have += take;
        d += take;
        len -= take;
        if (!len_known || x->have < need)
            continue; /* more header bytes, or now its length is known */
        {
            uint32_t pl = xle32(x->hdr + 10);
            int is_info = pl == strlen(XBS_INFO_FILE) &&
                          memcmp(x->hdr + 14, XBS_INFO_FILE, pl) == 0;
            if (x->hdr[9] == 'P') {
                const uint8_t *q = x->hdr + 14 + pl;
                x->skip = (uint64_t)xle32(q) | (uint64_t)xle32(q + 4) << 32;
                x->capture = is_info;
                if (is_info)
                    x->seen_info = 1;
            }
            x->have = 0;
        }
    }
}

int cairn_my_binlog_info_parse(const char *s, char *file, size_t nf, uint64_t *pos, char *gtid,
                               size_t ng)
{
    const char *t1 = strchr(s, '\t'), *t2;
    char *end;
    if (!t1 || (size_t)(t1 - s) >= nf || t1 == s)
        return -1;
    memcpy(file, s, (size_t)(t1 - s));
    file[t1 - s] = 0;
    errno = 0;
    *pos = strtoull(t1 + 1, &end, 10);
    if (errno || end == t1 + 1 || *pos < 4)
        return -1;
    gtid[0] = 0;
    if (*end == '\t') {
        size_t l;
        t2 = end + 1;
        l = strcspn(t2, "\r\n");
        if (l >= ng)
            return -1;
        memcpy(gtid, t2, l);
        gtid[l] = 0;
    }
    return 0;
}

/* "... MySQL binlog position: filename 'binlog.000001', position '627', GTID of the last
 * change '0-1-2'" */
static int parse_log_coords(const char *line, char *file, size_t nf, uint64_t *pos, char *gtid,
                            size_t ng)
{
    const char *p = strstr(line, "filename '"), *q;
    size_t l;
    if (!p)
        return -1;
    p += 10;
    if (!(q = strchr(p, '\'')) || (l = (size_t)(q - p)) == 0 || l >= nf)
        return -1;
    memcpy(file, p, l);
    file[l] = 0;
    if (!(p = strstr(q, "position '")))
        return -1;
    *pos = strtoull(p + 10, NULL, 10);
    gtid[0] = 0;
    if ((p = strstr(p, "change '")) != NULL) {
        p += 8;
        if ((q = strchr(p, '\'')) != NULL && (l = (size_t)(q - p)) < ng) {
            memcpy(gtid, p, l);
            gtid[l] = 0;
        }
    }
    return *pos >= 4 ? 0 : -1;
}

/* ---- backup-mysql ---- */

struct server_info {
    int log_bin;
    uint32_t server_id;
    char version[96];
    char datadir[PATH_MAX];
    char gtid[1024];
};

static int ask_server(const char *client, const char *defaults, const char *tmp,
                      struct server_info *si, cairn_err *err)
{
    char opt[PATH_MAX + 32], outp[PATH_MAX], logp[PATH_MAX], what[PATH_MAX + 64];
    const char *argv[] = {client, opt, "--batch", "--skip-column-names",
                          "--connect-timeout=10", "-e",
                          "SELECT @@log_bin, @@server_id, @@version, @@datadir, "
                          "IFNULL(@@gtid_binlog_pos, '')",
                          NULL};
    cairn_buf out = CAIRN_BUF_INIT;
    pid_t pid;
    int fd, rc;
    char *f[5], *p;
    size_t i;
    snprintf(opt, sizeof opt, "--defaults-file=%s", defaults);
    snprintf(outp, sizeof outp, "%s/server.out", tmp);
    snprintf(logp, sizeof logp, "%s/client.log", tmp);
    if ((fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
        return cairn_error(err, CAIRN_FAILED, "cannot create '%s': %s", outp, strerror(errno));
    rc = cairn_my_spawn(argv, -1, fd, logp, 0, &pid, err);
    close(fd);
    if (rc != CAIRN_OK)
        return rc;
    snprintf(what, sizeof what, "the mariadb client (--defaults-file '%s')", defaults);
    if ((rc = cairn_my_wait(pid, what, logp, err)) != CAIRN_OK)
        return cairn_error_prefix(err, "cannot query the server");
    if ((rc = cairn_read_file(outp, &out, 65536, err)) != CAIRN_OK)
        return rc;
    p = (char *)cairn_buf_cstr(&out);
    for (i = 0; i < 5; i++) {
        f[i] = p;
        p += strcspn(p, i < 4 ? "\t" : "\n");
        if (i < 4 && *p != '\t') {
            cairn_buf_free(&out);
            return cairn_error(err, CAIRN_FAILED, "unexpected answer from the server: '%.100s'",
                               cairn_buf_cstr(&out));
        }
        *p++ = 0;
        if (i == 4)
            break;
    }
    si->log_bin = strcmp(f[0], "1") == 0;
    si->server_id = (uint32_t)strtoul(f[1], NULL, 10);
    snprintf(si->version, sizeof si->version, "%s", f[2]);
    snprintf(si->datadir, sizeof si->datadir, "%s", f[3]);
    snprintf(si->gtid, sizeof si->gtid, "%s", f[4]);
    cairn_buf_free(&out);
    return CAIRN_OK;
}

struct finish_ctx {
    pid_t *pid;
    const char *mblog;
    struct cairn_my_xbs *x;
    struct cairn_my_backup_result *res;
};

/* before_manifest: every byte of the stream is stored; mariabackup must have
 * succeeded and told its coordinates. */
static int finish_backup(void *arg, json_t *man, cairn_err *err)
{
    struct finish_ctx *f = arg;
    struct cairn_my_basebackup *b = &f->res->base;
    json_t *my = json_object_get(man, "mysql");
    char line[1024], lfile[CAIRN_BINLOG_NAME_MAX], lgtid[1024];
    uint64_t lpos = 0;
    int have_log, rc;
    pid_t pid = *f->pid;
    *f->pid = -1;
    if ((rc = cairn_my_wait(pid, "mariabackup", f->mblog, err)) != CAIRN_OK)
        return cairn_error_prefix(err, "the base backup is not usable, none was recorded");
    if (!my)
        return cairn_error(err, CAIRN_FATAL, "the manifest has no 'mysql' section");
    cairn_my_log_line(f->mblog, "MySQL binlog position:", line, sizeof line);
    have_log = line[0] && parse_log_coords(line, lfile, sizeof lfile, &lpos, lgtid,
                                           sizeof lgtid) == 0;
    if (cairn_my_xbs_binlog_info(f->x) &&
        cairn_my_binlog_info_parse(f->x->info, b->binlog_file, sizeof b->binlog_file, &b->binlog_pos, b->gtid,
                   sizeof b->gtid) == 0) {
        f->res->coords_from_stream = 1;
        if (have_log && (strcmp(lfile, b->binlog_file) != 0 || lpos != b->binlog_pos))
            return cairn_error(err, CAIRN_FAILED,
                               "mariabackup's stream says the binlog coordinates are %s:%" PRIu64
                               " but its log says %s:%" PRIu64 ": no base backup was recorded",
                               b->binlog_file, b->binlog_pos, lfile, lpos);
    } else if (have_log) {
        snprintf(b->binlog_file, sizeof b->binlog_file, "%s", lfile);
        b->binlog_pos = lpos;
        snprintf(b->gtid, sizeof b->gtid, "%s", lgtid);
    } else {
        return cairn_error(err, CAIRN_FAILED,
                           "mariabackup did not report binlog coordinates (no "
                           "xtrabackup_binlog_info in its stream, no 'MySQL binlog position' in "
                           "its log): the backup cannot be rolled forward, none was recorded");
    }
    b->stop_ns = cairn_now_ns();
    json_object_set_new(my, "binlog_file", json_string(b->binlog_file));
    json_object_set_new(my, "binlog_pos", json_integer((json_int_t)b->binlog_pos));
    json_object_set_new(my, "gtid", json_string(b->gtid));
    json_object_set_new(my, "stop_ns", json_integer(b->stop_ns));
    json_object_set_new(my, "coordinates_from",
                        json_string(f->res->coords_from_stream ? XBS_INFO_FILE
                                                               : "mariabackup log"));
    return CAIRN_OK;
}

int cairn_my_backup(cairn_repo *r, const struct cairn_my_backup_opts *o,
                    struct cairn_my_backup_result *res, cairn_err *err)
{
    char tmp[PATH_MAX] = "", client[PATH_MAX], mb[PATH_MAX], target[PATH_MAX + 16];
    char mblog[PATH_MAX + 32], dfo[PATH_MAX + 32], tdo[PATH_MAX + 32], ddo[PATH_MAX + 32];
    char source[128];
    struct server_info si;
    struct cairn_my_xbs *x = NULL;
    struct cairn_backup_opts bo;
    json_t *extra = NULL, *my;
    pid_t pid = -1;
    int p[2] = {-1, -1}, rc;
    const char *argv[8];
    size_t na = 0;

    memset(res, 0, sizeof *res);
    memset(&si, 0, sizeof si);
    if (!o->defaults_file)
        return cairn_error(err, CAIRN_FAILED, "backup-mysql needs --defaults-file");
    if (access(o->defaults_file, R_OK) != 0)
        return cairn_error(err, CAIRN_FAILED, "cannot read the defaults file '%s': %s",
                           o->defaults_file, strerror(errno));
    if (cairn_my_find_prog("mariadb", client, sizeof client) != 0 &&
        cairn_my_find_prog("mysql", client, sizeof client) != 0)
        return cairn_error(err, CAIRN_FAILED,
                           "the mariadb client is not installed (apt-get install mariadb-client)");
    if (cairn_my_find_prog("mariabackup", mb, sizeof mb) != 0)
        return cairn_error(err, CAIRN_FAILED,
                           "mariabackup is not installed (apt-get install mariadb-backup)");
    if ((rc = cairn_my_tempdir("backup-mysql", tmp, sizeof tmp, err)) != CAIRN_OK)
        return rc;
    if ((rc = ask_server(client, o->defaults_file, tmp, &si, err)) != CAIRN_OK)
        goto out;
    if (!si.log_bin) {
        rc = cairn_error(err, CAIRN_FAILED,
                         "binary logging is disabled on the server (start it with --log-bin): "
                         "a base backup could not be rolled forward to a point in time");
        goto out;
    }
    res->base.server_id = si.server_id;
    snprintf(res->base.server, sizeof res->base.server, "%" PRIu32, si.server_id);
    snprintf(res->base.server_version, sizeof res->base.server_version, "%s", si.version);
    if (o->datadir)
        cairn_my_server_uuid(o->datadir, res->base.server_uuid, sizeof res->base.server_uuid);
    else
        cairn_my_server_uuid(si.datadir, res->base.server_uuid, sizeof res->base.server_uuid);
    if (res->base.server_uuid[0]) /* MySQL: binlogs are archived under the UUID */
        snprintf(res->base.server, sizeof res->base.server, "%s", res->base.server_uuid);
    snprintf(res->base.stream, sizeof res->base.stream, "%s", CAIRN_MY_STREAM_NAME);

    snprintf(target, sizeof target, "%s/target", tmp);
    snprintf(mblog, sizeof mblog, "%s/mariabackup.log", tmp);
    if (mkdir(target, 0700) != 0) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot create '%s': %s", target, strerror(errno));
        goto out;
    }
    snprintf(dfo, sizeof dfo, "--defaults-file=%s", o->defaults_file);
    snprintf(tdo, sizeof tdo, "--target-dir=%s", target);
    argv[na++] = mb;
    argv[na++] = dfo; /* must come first */
    argv[na++] = "--backup";
    argv[na++] = "--stream=xbstream";
    argv[na++] = tdo;
    if (o->datadir) {
        snprintf(ddo, sizeof ddo, "--datadir=%s", o->datadir);
        argv[na++] = ddo;
    }
    argv[na] = NULL;
    if (pipe2(p, O_CLOEXEC) != 0) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot create a pipe: %s", strerror(errno));
        goto out;
    }
    fcntl(p[0], F_SETPIPE_SZ, 1 << 20); /* fewer, larger reads; a hint, may fail */
    res->base.start_ns = cairn_now_ns();
    if ((rc = cairn_my_spawn(argv, -1, p[1], mblog, 0, &pid, err)) != CAIRN_OK)
        goto out;
    close(p[1]);
    p[1] = -1;

    if (!(x = cairn_my_xbs_new()) || !(extra = json_object()) || !(my = json_object())) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    json_object_set_new(my, "server", json_string(res->base.server));
    json_object_set_new(my, "server_id", json_integer(si.server_id));
    json_object_set_new(my, "server_uuid", json_string(res->base.server_uuid));
    json_object_set_new(my, "server_version", json_string(si.version));
    json_object_set_new(my, "datadir", json_string(o->datadir ? o->datadir : si.datadir));
    json_object_set_new(my, "method", json_string("mariabackup"));
    json_object_set_new(my, "stream", json_string(CAIRN_MY_STREAM_NAME));
    json_object_set_new(my, "start_ns", json_integer(res->base.start_ns));
    json_object_set_new(extra, "mysql", my);

    if (o->source)
        snprintf(source, sizeof source, "%s", o->source);
    else
        snprintf(source, sizeof source, "mysql:%s", res->base.server);
    memset(&bo, 0, sizeof bo);
    bo.source = source;
    bo.tags = o->tags;
    bo.n_tags = o->n_tags;
    bo.workers = o->workers;
    bo.consistency = "app";
    bo.extra = extra;
    bo.progress = o->progress;
    bo.progress_arg = o->progress_arg;
    bo.stream_name = CAIRN_MY_STREAM_NAME;
    bo.stream_fd = p[0];
    bo.stream_tap = xbs_tap;
    bo.stream_tap_arg = x;
    {
        struct finish_ctx fc = {&pid, mblog, x, res};
        bo.before_manifest = finish_backup;
        bo.before_manifest_arg = &fc;
        rc = cairn_backup_run(r, &bo, &res->backup, err);
    }
out:
    if (p[0] >= 0)
        close(p[0]); /* a mariabackup still writing gets EPIPE */
    if (p[1] >= 0)
        close(p[1]);
    if (pid > 0) {
        kill(pid, SIGTERM);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    json_decref(extra);
    cairn_my_xbs_free(x);
    if (tmp[0])
        cairn_my_rmtree(tmp, 0);
    return rc;
}

/* agent/mysql_stream.c — binlog-stream: continuous binlog shipping over the
 * replication protocol, by supervising mariadb-binlog (see mysql.h and
 * docs/mysql.md), and the mariadb client helper it shares with binlog-push.
 *
 * One session = one mariadb-binlog child writing raw binlog files into the
 * spool. The parent polls every 200 ms: a file is complete once the child
 * has opened the next one (the server rotated past it) or, when the child
 * has exited, once it ends with a Rotate or Stop event. Complete files are
 * shipped in order and removed from the spool. */
#define _GNU_SOURCE
#include "mysql.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define OUT_MAX (1u << 20)
#define ERRTXT_MAX 1024
#define POLL_MS 200
#define BACKOFF_MAX 30

/* ---- running a child ---- */

/* Reads what fd gives into b (at most cap bytes kept; the rest drained). */
static void drain(int fd, cairn_buf *b, size_t cap)
{
    char tmp[4096];
    ssize_t r;
    while ((r = read(fd, tmp, sizeof tmp)) > 0 || (r < 0 && errno == EINTR)) {
        if (r > 0 && b->len < cap) {
            size_t take = (size_t)r < cap - b->len ? (size_t)r : cap - b->len;
            cairn_buf_append(b, tmp, take);
        }
    }
}

/* The first non-empty line of text, trimmed, into out. */
static void first_line(const cairn_buf *b, char *out, size_t n)
{
    const char *p = b->len ? cairn_buf_cstr((cairn_buf *)b) : "";
    size_t l;
    while (*p == '\n' || *p == '\r' || *p == ' ')
        p++;
    l = strcspn(p, "\r\n");
    if (l >= n)
        l = n - 1;
    memcpy(out, p, l);
    out[l] = 0;
}

int cairn_my_client_query(const char *defaults, const char *sql, cairn_buf *out,
                          cairn_err *err)
{
    static const char *const clients[] = {"mariadb", "mysql"};
    char opt[PATH_MAX + 32], msg[ERRTXT_MAX];
    cairn_buf eb = CAIRN_BUF_INIT;
    size_t k;
    int status = 0;
    if ((size_t)snprintf(opt, sizeof opt, "--defaults-file=%s", defaults) >= sizeof opt)
        return cairn_error(err, CAIRN_FAILED, "defaults file path '%s' is too long", defaults);
    if (access(defaults, R_OK) != 0)
        return cairn_error(err, CAIRN_FAILED, "cannot read defaults file '%s': %s", defaults,
                           strerror(errno));
    for (k = 0; k < 2; k++) {
        int po[2], pe[2];
        pid_t pid;
        cairn_buf_reset(out);
        cairn_buf_reset(&eb);
        if (pipe2(po, O_CLOEXEC) != 0)
            return cairn_error(err, CAIRN_FAILED, "cannot run the mariadb client: %s",
                               strerror(errno));
        if (pipe2(pe, O_CLOEXEC) != 0) {
            close(po[0]);
            close(po[1]);
            return cairn_error(err, CAIRN_FAILED, "cannot run the mariadb client: %s",
                               strerror(errno));
        }
        pid = fork();
        if (pid == 0) {
            int nul = open("/dev/null", O_RDONLY);
            if (nul >= 0)
                dup2(nul, 0);
            dup2(po[1], 1);
            dup2(pe[1], 2);
            execlp(clients[k], clients[k], opt, "--batch", "--skip-column-names",
                   "--connect-timeout=10", "-e", sql, (char *)NULL);
            _exit(127);
        }
        close(po[1]);
        close(pe[1]);
        if (pid < 0) {
            close(po[0]);
            close(pe[0]);
            cairn_buf_free(&eb);
            return cairn_error(err, CAIRN_FAILED, "cannot run the mariadb client: %s",
                               strerror(errno));
        }
        /* the answers are small: read stdout, then stderr (the client writes
         * errors only after its output) */
        drain(po[0], out, OUT_MAX);
        drain(pe[0], &eb, ERRTXT_MAX);
        close(po[0]);
        close(pe[0]);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 127))
            break;
    }
    if (k == 2) {
        cairn_buf_free(&eb);
        return cairn_error(err, CAIRN_NOTFOUND,
                           "cannot run the mariadb (or mysql) client: is mariadb-client "
                           "installed?");
    }
    first_line(&eb, msg, sizeof msg);
    cairn_buf_free(&eb);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return cairn_error(err, CAIRN_FAILED,
                           "the server could not be queried with defaults file '%s': %s",
                           defaults, msg[0] ? msg : "the client failed");
    cairn_buf_cstr(out);
    return CAIRN_OK;
}

int cairn_my_server_logs(const char *defaults, struct cairn_my_server_logs *o, cairn_err *err)
{
    cairn_buf b = CAIRN_BUF_INIT;
    char *p, *line;
    size_t cap = 0;
    int rc;
    memset(o, 0, sizeof *o);
    rc = cairn_my_client_query(defaults, "SELECT @@log_bin, @@server_id", &b, err);
    if (rc == CAIRN_OK) {
        unsigned long on = 0, id = 0;
        if (sscanf(cairn_buf_cstr(&b), "%lu\t%lu", &on, &id) != 2)
            rc = cairn_error(err, CAIRN_FAILED, "unexpected answer from the server to "
                                                "SELECT @@log_bin, @@server_id");
        else if (on != 1)
            rc = cairn_error(err, CAIRN_FAILED,
                             "binary logging is disabled on the server (start it with "
                             "--log-bin): there are no binlogs to stream");
        o->server_id = (uint32_t)id;
    }
    if (rc == CAIRN_OK)
        rc = cairn_my_client_query(defaults, "SHOW BINARY LOGS", &b, err);
    p = rc == CAIRN_OK ? (char *)cairn_buf_cstr(&b) : NULL;
    while (p && (line = strsep(&p, "\n")) != NULL) {
        char base[CAIRN_BINLOG_NAME_MAX];
        uint64_t seq;
        line[strcspn(line, "\t\r")] = 0;
        if (!*line)
            continue;
        if (cairn_my_binlog_name_parse(line, base, sizeof base, &seq, NULL) != 0) {
            rc = cairn_error(err, CAIRN_FAILED,
                             "SHOW BINARY LOGS names '%.100s', not a binlog file name", line);
            break;
        }
        if (o->n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            void *nv = realloc(o->names, nc * sizeof *o->names);
            if (!nv) {
                rc = cairn_error(err, CAIRN_FATAL, "out of memory");
                break;
            }
            o->names = nv;
            cap = nc;
        }
        snprintf(o->names[o->n++], CAIRN_BINLOG_NAME_MAX, "%s", line);
    }
    cairn_buf_free(&b);
    if (rc != CAIRN_OK) {
        free(o->names);
        memset(o, 0, sizeof *o);
    }
    return rc;
}

/* ---- the streamer ---- */

struct spooled {
    char name[CAIRN_BINLOG_NAME_MAX];
    uint64_t seq;
};

struct streamer {
    cairn_pg_archive *a;
    const struct cairn_my_stream_opts *o;
    struct cairn_my_stream_stats *st;
    char server[CAIRN_BINLOG_SERVER_MAX];
    char base[CAIRN_BINLOG_NAME_MAX]; /* of this session's files */
    uint64_t start_seq;               /* this session began at this file */
    char partial_file[CAIRN_BINLOG_NAME_MAX];
    uint64_t partial_end;             /* of the last partial stored */
    struct cairn_my_push_result *res;
    pid_t child;
    int errfd;                        /* the child's stderr */
    int streamed;                     /* some session wrote a file */
    char lastmsg[ERRTXT_MAX];         /* the child's last words */
    cairn_buf childerr;
};

static void logf_(struct streamer *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct streamer *s, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;
    if (!s->o->log)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->o->log(s->o->arg, msg);
}

static int stopping(const struct streamer *s) { return s->o->stop && *s->o->stop; }

/* Sleeps secs seconds, waking early when asked to stop. */
static void nap(struct streamer *s, double secs)
{
    double end = cairn_mono() + secs;
    while (!stopping(s) && cairn_mono() < end) {
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static int spooled_cmp(const void *x, const void *y)
{
    const struct spooled *a = x, *b = y;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* The binlog files in the spool (of base, or any when base is ""), in file
 * number order. *v is malloc'd. */
static int list_spool(const char *dir, const char *base, struct spooled **v, size_t *n,
                      cairn_err *err)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t cap = 0;
    *v = NULL;
    *n = 0;
    if (!d)
        return cairn_error(err, CAIRN_FAILED, "cannot read spool directory '%s': %s", dir,
                           strerror(errno));
    while ((de = readdir(d)) != NULL) {
        char b[CAIRN_BINLOG_NAME_MAX];
        uint64_t seq;
        if (cairn_my_binlog_name_parse(de->d_name, b, sizeof b, &seq, NULL) != 0 ||
            (base[0] && strcmp(b, base) != 0))
            continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct spooled *nv = realloc(*v, nc * sizeof *nv);
            if (!nv) {
                closedir(d);
                free(*v);
                *v = NULL;
                return cairn_error(err, CAIRN_FATAL, "out of memory");
            }
            *v = nv;
            cap = nc;
        }
        snprintf((*v)[*n].name, sizeof(*v)[*n].name, "%s", de->d_name);
        (*v)[(*n)++].seq = seq;
    }
    closedir(d);
    if (*n > 1)
        qsort(*v, *n, sizeof **v, spooled_cmp);
    return CAIRN_OK;
}

/* The length of the longest prefix of d made of complete events. */
static size_t complete_prefix(const uint8_t *d, size_t len)
{
    size_t pos = 4;
    if (len < 4 || memcmp(d, "\xfe" "bin", 4) != 0)
        return 0;
    while (len - pos >= 19) {
        uint32_t elen = (uint32_t)d[pos + 9] | (uint32_t)d[pos + 10] << 8 |
                        (uint32_t)d[pos + 11] << 16 | (uint32_t)d[pos + 12] << 24;
        if (elen < 19 || elen > len - pos)
            break;
        pos += elen;
    }
    return pos;
}

static int is_permanent(int rc) { return rc == CAIRN_EXISTS || rc == CAIRN_CORRUPT; }

/* Ships one spooled file: whole (it is complete) or, partial, its complete
 * prefix. Then drops the spool copy (whole) and superseded partials. */
static int ship(struct streamer *s, const char *name, int partial, cairn_err *err)
{
    char *path = cairn_path_join(s->o->spool, name);
    cairn_buf raw = CAIRN_BUF_INIT;
    cairn_store *store = cairn_pg_archive_store(s->a);
    size_t len;
    int rc, had_partial;
    if (!path)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    if ((rc = cairn_read_file(path, &raw, (size_t)CAIRN_MY_MAX_FILE, err)) != CAIRN_OK)
        goto out;
    len = raw.len;
    if (partial) {
        len = complete_prefix(raw.data, raw.len);
        if (len <= 4 || (strcmp(s->partial_file, name) == 0 && len <= s->partial_end)) {
            rc = 1; /* nothing new */
            goto out;
        }
        rc = cairn_my_binlog_push_partial(s->a, name, path, raw.data, len, s->server,
                                          s->o->level, s->res, err);
    } else {
        rc = cairn_my_binlog_push_buf(s->a, name, path, raw.data, len, s->server, s->o->level,
                                      s->res, err);
    }
    if (rc != CAIRN_OK)
        goto out;
    /* the partial this one supersedes: the one stored last, known here
     * (others an earlier run left are pruned at each session start) */
    had_partial = strcmp(s->partial_file, name) == 0 && (!partial || s->partial_end != len);
    if (had_partial) {
        char old[CAIRN_BINLOG_NAME_MAX + 32], key[CAIRN_WAL_KEY_MAX + CAIRN_BINLOG_NAME_MAX + 32];
        snprintf(old, sizeof old, "%s.partial.%" PRIu64, name, s->partial_end);
        if (cairn_my_binobj_key(s->server, old, key, sizeof key) == 0) {
            rc = cairn_store_del(store, key, err);
            if (rc == CAIRN_NOTFOUND)
                rc = CAIRN_OK;
            else if (rc != CAIRN_OK)
                cairn_error_prefix(err, "cannot delete the superseded partial binlog '%s'", key);
        }
    }
    if (partial) {
        s->st->partials++;
        snprintf(s->partial_file, sizeof s->partial_file, "%s", name);
        s->partial_end = len;
    } else {
        if (s->res->already)
            s->st->already++;
        else
            s->st->shipped++;
        if (unlink(path) != 0 && errno != ENOENT)
            logf_(s, "cannot remove '%s' from the spool: %s", path, strerror(errno));
        if (strcmp(s->partial_file, name) == 0)
            s->partial_file[0] = 0;
    }
    if (s->o->shipped)
        s->o->shipped(s->o->arg, s->res, partial);
out:
    cairn_buf_free(&raw);
    free(path);
    return rc;
}

/* Whether a spooled file (the child has exited) ends with Rotate or Stop. */
static int ends_closed(struct streamer *s, const char *name)
{
    char *path = cairn_path_join(s->o->spool, name);
    cairn_buf raw = CAIRN_BUF_INIT;
    struct cairn_my_binscan *scan = malloc(sizeof *scan);
    cairn_err e2;
    int closed = 0;
    if (path && scan && cairn_read_file(path, &raw, (size_t)CAIRN_MY_MAX_FILE, &e2) == CAIRN_OK &&
        cairn_my_binlog_scan(raw.data, raw.len, scan, &e2) == CAIRN_OK)
        closed = scan->closed_by != 0 && scan->end_pos == raw.len;
    cairn_buf_free(&raw);
    free(scan);
    free(path);
    return closed;
}

/* Ships the complete files of the spool, in order. running: the child is
 * still writing, so a file is complete once a later one exists; else (the
 * child has exited) the last file counts only when it ends with Rotate or
 * Stop. Returns the first error. */
static int ship_ready(struct streamer *s, int running, cairn_err *err)
{
    struct spooled *v;
    size_t n, i;
    int rc = list_spool(s->o->spool, s->base, &v, &n, err);
    for (i = 0; rc == CAIRN_OK && i < n; i++) {
        if (v[i].seq < s->start_seq)
            continue; /* not of this session (removed when it began) */
        if (i + 1 == n && (running || !ends_closed(s, v[i].name)))
            break;
        rc = ship(s, v[i].name, 0, err);
    }
    free(v);
    return rc;
}

/* The newest spooled file of this session, as a partial. */
static int ship_partial(struct streamer *s, cairn_err *err)
{
    struct spooled *v;
    size_t n;
    int rc = list_spool(s->o->spool, s->base, &v, &n, err);
    if (rc == CAIRN_OK && n && v[n - 1].seq >= s->start_seq) {
        rc = ship(s, v[n - 1].name, 1, err);
        if (rc == 1)
            rc = CAIRN_OK;
    }
    free(v);
    return rc;
}

/* Before a session: ships what an earlier run left complete in the spool
 * (ends with Rotate or Stop: whole whatever happened to the run), then
 * removes every other spooled binlog file (the session re-reads them). */
static int clean_spool(struct streamer *s, cairn_err *err)
{
    struct spooled *v;
    size_t n, i;
    int rc = list_spool(s->o->spool, "", &v, &n, err);
    for (i = 0; rc == CAIRN_OK && i < n; i++) {
        char *path;
        if (ends_closed(s, v[i].name)) {
            rc = ship(s, v[i].name, 0, err);
            if (rc == CAIRN_OK)
                continue;
            if (is_permanent(rc))
                break;
            logf_(s, "leftover spooled file '%s' not shipped (%s); it is streamed again",
                  v[i].name, err->msg);
            rc = CAIRN_OK;
        }
        if ((path = cairn_path_join(s->o->spool, v[i].name)) != NULL) {
            unlink(path);
            free(path);
        }
    }
    free(v);
    return rc;
}

static int archived(struct streamer *s, const char *name)
{
    struct cairn_binlogrow *row = malloc(sizeof *row);
    cairn_err e2;
    int yes;
    if (!row)
        return 0;
    yes = cairn_catalog_binlog_get(cairn_pg_archive_catalog(s->a), s->server, name, row,
                                   &e2) == CAIRN_OK;
    free(row);
    return yes;
}

struct oldest {
    const char *base;
    int found;
    uint64_t seq, newest;
};

static int oldest_row(void *arg, const struct cairn_binlogrow *r)
{
    struct oldest *o = arg;
    char b[CAIRN_BINLOG_NAME_MAX];
    uint64_t seq;
    if (cairn_my_binlog_name_parse(r->file, b, sizeof b, &seq, NULL) == 0 &&
        strcmp(b, o->base) == 0) {
        if (!o->found || seq < o->seq)
            o->seq = seq;
        if (!o->found || seq > o->newest)
            o->newest = seq;
        o->found = 1;
    }
    return 0;
}

/* The file to start from (see mysql.h); -1 when the server lists none. */
static int pick_start(struct streamer *s, const struct cairn_my_server_logs *sl, size_t *at,
                      cairn_err *err)
{
    struct oldest old;
    char base[CAIRN_BINLOG_NAME_MAX];
    uint64_t seq;
    size_t i;
    int rc;
    if (sl->n == 0)
        return -1;
    cairn_my_binlog_name_parse(sl->names[sl->n - 1], base, sizeof base, &seq, NULL);
    memset(&old, 0, sizeof old);
    old.base = base;
    rc = cairn_catalog_binlog_list(cairn_pg_archive_catalog(s->a), s->server, oldest_row, &old,
                                   err);
    if (rc != CAIRN_OK)
        return rc > 0 ? cairn_error(err, CAIRN_FATAL, "out of memory") : rc;
    for (i = 0; i < sl->n; i++) {
        char b[CAIRN_BINLOG_NAME_MAX];
        if (cairn_my_binlog_name_parse(sl->names[i], b, sizeof b, &seq, NULL) != 0 ||
            strcmp(b, base) != 0)
            continue;
        if (old.found && seq < old.seq)
            continue; /* before the archive's oldest: forgotten, or before it began */
        if (i + 1 == sl->n || !archived(s, sl->names[i]))
            break;
    }
    if (i == sl->n)
        i = sl->n - 1;
    if (old.found && cairn_my_binlog_name_parse(sl->names[i], base, sizeof base, &seq, NULL) == 0 &&
        seq > old.newest + 1 && !archived(s, sl->names[i]))
        logf_(s,
              "WARNING: the server no longer has the binlog files after %s.%06" PRIu64
              " up to %s: they were purged before they were archived, and binlog-verify "
              "will report the gap",
              base, old.newest, sl->names[i]);
    *at = i;
    return CAIRN_OK;
}

static int spawn(struct streamer *s, const char *start, cairn_err *err)
{
    char defopt[PATH_MAX + 32], resopt[PATH_MAX + 32], idopt[64];
    const char *cmd = s->o->binlog_cmd ? s->o->binlog_cmd : "mariadb-binlog";
    const char *argv[10];
    int pe[2], i = 0;
    pid_t parent = getpid();
    snprintf(defopt, sizeof defopt, "--defaults-file=%s", s->o->defaults_file);
    snprintf(resopt, sizeof resopt, "--result-file=%s/", s->o->spool);
    snprintf(idopt, sizeof idopt, "--stop-never-slave-server-id=%" PRIu32,
             s->o->client_server_id);
    argv[i++] = cmd;
    argv[i++] = defopt; /* first, as MariaDB tools want it */
    argv[i++] = "--read-from-remote-server";
    argv[i++] = "--raw";
    argv[i++] = "--stop-never";
    argv[i++] = resopt;
    if (s->o->client_server_id)
        argv[i++] = idopt;
    argv[i++] = start;
    argv[i] = NULL;
    if (pipe2(pe, O_CLOEXEC) != 0)
        return cairn_error(err, CAIRN_FAILED, "cannot start %s: %s", cmd, strerror(errno));
    s->child = fork();
    if (s->child == 0) {
        int nul = open("/dev/null", O_RDWR);
        /* the child dies with us, even on kill -9 */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
        }
        dup2(pe[1], 2);
        signal(SIGPIPE, SIG_DFL);
        umask(077); /* spooled binlogs are the database's data */
        execvp(cmd, (char *const *)argv);
        _exit(127);
    }
    close(pe[1]);
    if (s->child < 0) {
        close(pe[0]);
        return cairn_error(err, CAIRN_FAILED, "cannot start %s: %s", cmd, strerror(errno));
    }
    fcntl(pe[0], F_SETFL, O_NONBLOCK);
    s->errfd = pe[0];
    cairn_buf_reset(&s->childerr);
    return CAIRN_OK;
}

/* Reaps the child; kill: stop it first. Returns its exit text in msg. */
static void reap(struct streamer *s, int kill_it, char *msg, size_t n)
{
    int status = 0;
    if (s->child > 0) {
        if (kill_it)
            kill(s->child, SIGTERM);
        while (waitpid(s->child, &status, 0) < 0 && errno == EINTR)
            ;
    }
    if (s->errfd >= 0) {
        drain(s->errfd, &s->childerr, ERRTXT_MAX);
        close(s->errfd);
    }
    s->errfd = -1;
    s->child = -1;
    first_line(&s->childerr, msg, n);
    if (!msg[0] && WIFEXITED(status) && WEXITSTATUS(status) == 127)
        snprintf(msg, n, "cannot run '%s' (is mariadb-client installed?)",
                 s->o->binlog_cmd ? s->o->binlog_cmd : "mariadb-binlog");
}

/* One session: spawn, ship as files complete, until the child exits or a
 * stop. CAIRN_OK when the session ended (lost connection or a stop), else a
 * shipping error (the child is stopped). */
static int session(struct streamer *s, const char *start, double *began, cairn_err *err)
{
    double last_flush = cairn_mono();
    char msg[ERRTXT_MAX];
    int rc, status, exited = 0;
    if ((rc = spawn(s, start, err)) != CAIRN_OK)
        return rc;
    *began = cairn_mono();
    s->st->sessions++;
    logf_(s, "streaming from %s (server %s)", start, s->server);
    for (;;) {
        struct timespec ts = {0, POLL_MS * 1000000};
        pid_t w;
        if (stopping(s)) {
            reap(s, 1, msg, sizeof msg);
            rc = ship_ready(s, 0, err);
            if (rc == CAIRN_OK && s->o->flush_interval)
                rc = ship_partial(s, err);
            return rc;
        }
        w = waitpid(s->child, &status, WNOHANG);
        if (w == s->child) {
            exited = 1;
            s->child = -1;
        }
        drain(s->errfd, &s->childerr, ERRTXT_MAX);
        rc = ship_ready(s, !exited, err);
        if (rc == CAIRN_OK && s->o->flush_interval &&
            cairn_mono() - last_flush >= s->o->flush_interval) {
            rc = ship_partial(s, err);
            last_flush = cairn_mono();
        }
        if (!s->streamed) {
            struct spooled *v;
            size_t n;
            cairn_err e2;
            if (list_spool(s->o->spool, s->base, &v, &n, &e2) == CAIRN_OK && n)
                s->streamed = 1;
            free(v);
        }
        if (rc != CAIRN_OK || exited) {
            reap(s, rc != CAIRN_OK, msg, sizeof msg);
            snprintf(s->lastmsg, sizeof s->lastmsg, "%s", msg);
            if (rc == CAIRN_OK)
                logf_(s, "the stream ended: %s", msg[0] ? msg : "mariadb-binlog exited");
            return rc;
        }
        nanosleep(&ts, NULL);
    }
}

static int lock_spool(const char *spool, int *fd, cairn_err *err)
{
    char *p;
    struct stat sb;
    if (cairn_mkdir_p(spool, 0700, err) != CAIRN_OK)
        return cairn_error_prefix(err, "spool directory");
    if (stat(spool, &sb) == 0 && (sb.st_mode & 077))
        chmod(spool, sb.st_mode & 0700);
    if (!(p = cairn_path_join(spool, ".cairn-stream.lock")))
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    *fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(p);
    if (*fd < 0)
        return cairn_error(err, CAIRN_FAILED, "cannot create a lock file in spool '%s': %s",
                           spool, strerror(errno));
    if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
        close(*fd);
        *fd = -1;
        return cairn_error(err, CAIRN_EXISTS,
                           "spool '%s' is in use by another binlog-stream (give each "
                           "streamer its own --spool)",
                           spool);
    }
    return CAIRN_OK;
}

int cairn_my_binlog_stream(cairn_pg_archive *a, const struct cairn_my_stream_opts *o,
                           struct cairn_my_stream_stats *st, cairn_err *err)
{
    struct streamer s;
    struct cairn_my_stream_stats dummy;
    unsigned backoff = 1;
    int first = 1, lockfd = -1, rc;
    if (!st)
        st = &dummy;
    memset(st, 0, sizeof *st);
    memset(&s, 0, sizeof s);
    s.a = a;
    s.o = o;
    s.st = st;
    s.child = -1;
    s.errfd = -1;
    if (!o->defaults_file || !o->spool)
        return cairn_error(err, CAIRN_FAILED, "binlog-stream needs a defaults file and a spool");
    if (!cairn_pg_archive_catalog(a))
        return cairn_error(err, CAIRN_FAILED, "binlog-stream needs a catalog");
    if (!(s.res = malloc(sizeof *s.res)))
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    if ((rc = lock_spool(o->spool, &lockfd, err)) != CAIRN_OK)
        goto out;
    /* the archive as the store has it (another streamer or push may have added) */
    if ((rc = cairn_my_binlog_sync(cairn_pg_archive_store(a), cairn_pg_archive_catalog(a), NULL,
                                   err)) != CAIRN_OK)
        goto out;
    while (!stopping(&s)) {
        struct cairn_my_server_logs sl;
        double began = cairn_mono();
        size_t at = 0;
        uint64_t seq;
        rc = cairn_my_server_logs(o->defaults_file, &sl, err);
        if (rc != CAIRN_OK) {
            if (first || rc == CAIRN_FATAL)
                goto out;
            st->reconnects++;
            logf_(&s, "%s; retrying in %u s", err->msg, backoff);
            nap(&s, backoff);
            backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
            continue;
        }
        first = 0;
        if (o->server)
            snprintf(s.server, sizeof s.server, "%s", o->server);
        else
            snprintf(s.server, sizeof s.server, "%" PRIu32, sl.server_id);
        rc = clean_spool(&s, err);
        if (rc == CAIRN_OK) /* partials an earlier run left of files archived since */
            rc = cairn_my_binlog_partials_prune(cairn_pg_archive_store(a),
                                                cairn_pg_archive_catalog(a), s.server, NULL,
                                                err);
        if (rc == CAIRN_OK)
            rc = pick_start(&s, &sl, &at, err);
        if (rc == -1) { /* no binlog files listed (yet) */
            free(sl.names);
            logf_(&s, "the server lists no binlog files; asking again in %u s", backoff);
            nap(&s, backoff);
            continue;
        }
        if (rc != CAIRN_OK) {
            free(sl.names);
            if (is_permanent(rc) || rc == CAIRN_FATAL)
                goto out;
            logf_(&s, "%s; retrying in %u s", err->msg, backoff);
            nap(&s, backoff);
            continue;
        }
        cairn_my_binlog_name_parse(sl.names[at], s.base, sizeof s.base, &seq, NULL);
        s.start_seq = seq;
        rc = session(&s, sl.names[at], &began, err);
        if (rc == CAIRN_OK && st->sessions == 1 && !s.streamed && !stopping(&s)) {
            /* the very first session got nothing: a setup problem (no
             * replication privilege, no such tool), not a lost server */
            rc = cairn_error(err, CAIRN_FAILED, "mariadb-binlog could not stream from %s: %s",
                             sl.names[at], s.lastmsg[0] ? s.lastmsg : "it exited");
            free(sl.names);
            goto out;
        }
        free(sl.names);
        if (rc != CAIRN_OK) {
            if (is_permanent(rc) || rc == CAIRN_FATAL)
                goto out;
            logf_(&s, "shipping failed: %s", err->msg);
        }
        if (stopping(&s))
            break;
        if (cairn_mono() - began > 60)
            backoff = 1; /* it ran a while: a new problem */
        st->reconnects++;
        logf_(&s, "reconnecting in %u s", backoff);
        nap(&s, backoff);
        backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
    }
    rc = CAIRN_OK;
out:
    if (s.child > 0) {
        char msg[ERRTXT_MAX];
        reap(&s, 1, msg, sizeof msg);
    }
    if (s.errfd >= 0)
        close(s.errfd);
    cairn_buf_free(&s.childerr);
    free(s.res);
    if (lockfd >= 0)
        close(lockfd);
    return rc;
}

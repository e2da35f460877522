/* cli/cmd_pg.c — PostgreSQL: wal-push, wal-fetch, wal-verify, wal-list,
 * backup-pg, restore-pg, pg-backups. See docs/postgresql.md. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../agent/pg.h"
#include "../restore/pitr_pg.h"
#include "cli.h"

/* wal-fetch exit codes: PostgreSQL takes 1..125 as "not in the archive" (and
 * ends recovery), above 125 as fatal (recovery aborts, nothing is promoted). */
#define FETCH_NOTFOUND 1
#define FETCH_FAILED 128   /* transient errors persisted through the retries */
#define FETCH_CORRUPT 129  /* the archived copy fails verification */
#define FETCH_CONFIG 130   /* usage or configuration error */

static void kill_hook(void *arg, const char *stage)
{
    const char *want = getenv("CAIRN_TEST_WAL_PUSH_KILL");
    (void)arg;
    if (want && strcmp(want, stage) == 0)
        raise(SIGKILL); /* tests: a crash between storing and recording */
}

static int parse_segsize_level(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

int cmd_wal_push(struct cli *c, int argc, char **argv)
{
    const char *pgdata = NULL, *sysid = NULL, *level = NULL, *batch = NULL;
    struct opt opts[] = {
        {"pgdata", 1, 0, &pgdata, NULL, NULL, NULL},
        {"system-id", 1, 0, &sysid, NULL, NULL, NULL},
        {"level", 1, 0, &level, NULL, NULL, NULL},
        {"batch", 1, 0, &batch, NULL, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, NULL},
    };
    struct cairn_pg_batch_opts bo;
    struct cairn_pg_batch_result br;
    struct cairn_pg_push_opts po;
    struct cairn_pg_push_result res;
    cairn_pg_archive *a = NULL;
    cairn_err err;
    int rc = cli_parse(c, argc, argv, opts,
                       "cairn wal-push PATH [--pgdata DIR] [--system-id N] [--level 1..19] "
                       "[--batch JOBS]");
    if (rc)
        return rc;
    if (c->nargs != 1) {
        cli_error("usage: cairn wal-push PATH (as archive_command: 'cairn wal-push %%p')");
        return EXIT_USAGE;
    }
    if (!c->repo || !*c->repo) {
        cli_error("no repository given (use --repo PATH or set CAIRN_REPO)");
        return EXIT_USAGE;
    }
    memset(&po, 0, sizeof po);
    po.pgdata = pgdata;
    po.system_id = sysid ? sysid : getenv("CAIRN_PG_SYSTEM_ID");
    if (po.system_id && !*po.system_id)
        po.system_id = NULL;
    if (level && parse_segsize_level(level, 1, 19, &po.level) != 0) {
        cli_error("--level takes 1..19, not '%s'", level);
        return EXIT_USAGE;
    }
    po.stage = kill_hook;
    cairn_err_clear(&err);
    if (batch) {
        memset(&bo, 0, sizeof bo);
        if (parse_segsize_level(batch, 1, CAIRN_PG_BATCH_MAX_JOBS, &bo.jobs) != 0) {
            cli_error("--batch takes a number of threads, 1..%d, not '%s'",
                      CAIRN_PG_BATCH_MAX_JOBS, batch);
            return EXIT_USAGE;
        }
        rc = cairn_pg_wal_push_batch(c->repo, &c->store, c->catalog, c->args[0], &po, &bo, &res,
                                     &br, &err);
        if (rc != CAIRN_OK) {
            cli_error("wal-push: %s", err.msg);
            return EXIT_ERR;
        }
        if (!c->quiet && (br.fast || br.extra_pushed || br.extra_failed))
            fprintf(stderr,
                    "cairn: '%s' %s; batch: %llu more pushed, %llu already archived, %llu "
                    "failed (pushed when PostgreSQL asks)\n",
                    c->args[0], br.fast ? "was archived by an earlier batch" : "archived",
                    (unsigned long long)br.extra_pushed, (unsigned long long)br.extra_already,
                    (unsigned long long)br.extra_failed);
        return EXIT_OK;
    }
    if (cairn_pg_archive_open(c->repo, &c->store, c->catalog, 1, &a, &err) != CAIRN_OK) {
        cli_error("wal-push '%s': %s", c->args[0], err.msg);
        return EXIT_ERR;
    }
    rc = cairn_pg_wal_push(a, c->args[0], &po, &res, &err);
    cairn_pg_archive_free(a);
    if (rc != CAIRN_OK) {
        cli_error("wal-push: %s", err.msg);
        return EXIT_ERR;
    }
    if (res.already && !c->quiet)
        fprintf(stderr, "cairn: '%s' was already archived (identical copy in '%s')\n",
                res.meta.name, res.key);
    return EXIT_OK;
}

/* ---- wal-fetch ---- */

static int resolve_sysid(const char *opt, const char *pgdata, char *out, size_t n)
{
    const char *env = getenv("CAIRN_PG_SYSTEM_ID");
    uint64_t v;
    cairn_err err;
    if (opt && *opt) {
        snprintf(out, n, "%s", opt);
        return 0;
    }
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return 0;
    }
    if (cairn_pg_control_sysid(pgdata ? pgdata : ".", &v, &err) != CAIRN_OK) {
        cli_error("cannot tell which cluster's WAL to use: %s (give --system-id, or run in the "
                  "data directory as restore_command does)",
                  err.msg);
        return -1;
    }
    snprintf(out, n, "%" PRIu64, v);
    return 0;
}

static void dir_of(const char *path, char *out, size_t n)
{
    const char *s = strrchr(path, '/');
    if (!s)
        snprintf(out, n, ".");
    else if (s == path)
        snprintf(out, n, "/");
    else
        snprintf(out, n, "%.*s", (int)(s - path), path);
}

/* Starts a detached `cairn wal-fetch --prefetch-worker` that keeps the next n
 * segments after name spooled (a fresh process: nothing of this one's state
 * is shared, and PostgreSQL does not wait for it). Not when one is running
 * already (it holds <spool>/<sysid>.lock and follows recovery by itself). */
#define PREFETCH_NICE 10

static void start_prefetch(struct cli *c, const char *sysid, const char *name, uint64_t segsize,
                           int n, const char *spool)
{
    struct cairn_pg_walname wn;
    char exe[PATH_MAX], conn[16], jobs[16], segs[32], count[16], lockpath[PATH_MAX + 64];
    const char *args[32];
    int k = 0, lfd;
    ssize_t el;
    pid_t pid;
    if (cairn_pg_walname_parse(name, &wn) != 0 || wn.kind != CAIRN_PG_SEGMENT ||
        !cairn_pg_segsize_valid(segsize))
        return;
    if (n > 64)
        n = 64;
    snprintf(lockpath, sizeof lockpath, "%s/%s.lock", spool, sysid);
    if ((lfd = open(lockpath, O_RDONLY | O_CLOEXEC)) >= 0) {
        int busy = flock(lfd, LOCK_EX | LOCK_NB) != 0;
        close(lfd);
        if (busy)
            return;
    }
    el = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (el <= 0)
        return;
    exe[el] = 0;
    args[k++] = exe;
    if (c->repo) {
        args[k++] = "--repo";
        args[k++] = c->repo;
    }
    if (c->store.connections) {
        snprintf(conn, sizeof conn, "%d", c->store.connections);
        args[k++] = "--connections";
        args[k++] = conn;
    }
    args[k++] = "wal-fetch";
    args[k++] = "--prefetch-worker";
    args[k++] = "--system-id";
    args[k++] = sysid;
    args[k++] = "--spool";
    args[k++] = spool;
    {
        /* a local repository is read at disk speed and the work is CPU
         * (decompression, SHA-256): more threads than CPUs only delay the
         * next segment; a remote store waits per request: 8 at once */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        int j = c->repo && strncmp(c->repo, "s3://", 5) == 0 ? 8 : (int)(cpus < 1 ? 1 : cpus);
        if (j > n)
            j = n;
        if (j > 8)
            j = 8;
        snprintf(jobs, sizeof jobs, "%d", j);
    }
    args[k++] = "--jobs";
    args[k++] = jobs;
    snprintf(segs, sizeof segs, "%" PRIu64, segsize);
    args[k++] = "--segsize";
    args[k++] = segs;
    snprintf(count, sizeof count, "%d", n);
    args[k++] = "--prefetch";
    args[k++] = count;
    args[k++] = name;
    args[k] = NULL;
    pid = fork();
    if (pid < 0)
        return;
    if (pid == 0) {
        int fd;
        setsid();
        if (fork() != 0)
            _exit(0);
        /* background work: where CPUs are short, the server's replay and the
         * next restore_command (a spool hit) go first; the worker has the
         * time replay takes to stay ahead */
        (void)setpriority(PRIO_PROCESS, 0, PREFETCH_NICE); /* best effort */
        fd = open("/dev/null", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
            if (fd > 2)
                close(fd);
        }
        execv(exe, (char *const *)args);
        _exit(127);
    }
    waitpid(pid, NULL, 0);
}

static int prefetch_worker(struct cli *c, const char *sysid, const char *spool, const char *jobs,
                           const char *segsize, const char *count)
{
    cairn_store *s = NULL;
    cairn_err err;
    int j = jobs ? atoi(jobs) : 4, n = count ? atoi(count) : 8;
    uint64_t segsz = segsize ? strtoull(segsize, NULL, 10) : 0;
    if (!sysid || !spool || c->nargs != 1 || !cairn_pg_segsize_valid(segsz) ||
        cairn_repo_store_open(c->repo, &c->store, NULL, &s, &err) != CAIRN_OK)
        return EXIT_ERR;
    cairn_pg_wal_prefetch(s, sysid, c->args[0], segsz, n, spool, j, &err);
    cairn_store_free(s);
    return EXIT_OK;
}

int cmd_wal_fetch(struct cli *c, int argc, char **argv)
{
    const char *sysid_opt = NULL, *pgdata = NULL, *prefetch = NULL, *spool = NULL,
               *jobs = NULL, *segsize = NULL;
    int worker = 0, nprefetch = 8, rc, attempt, use_spool;
    struct opt opts[] = {
        {"system-id", 1, 0, &sysid_opt, NULL, NULL, NULL},
        {"pgdata", 1, 0, &pgdata, NULL, NULL, NULL},
        {"prefetch", 1, 0, &prefetch, NULL, NULL, NULL},
        {"prefetch-worker", 0, 0, NULL, NULL, NULL, &worker},
        {"spool", 1, 0, &spool, NULL, NULL, NULL},
        {"jobs", 1, 0, &jobs, NULL, NULL, NULL},
        {"segsize", 1, 0, &segsize, NULL, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, NULL},
    };
    char sysid[CAIRN_WAL_SYSID_MAX], spooldir[PATH_MAX + 32], dir[PATH_MAX];
    cairn_store *s = NULL;
    cairn_err err;
    struct cairn_pg_walname wn;
    rc = cli_parse(c, argc, argv, opts,
                   "cairn wal-fetch NAME DEST [--system-id N] [--prefetch N]");
    if (rc)
        return FETCH_CONFIG;
    if (worker)
        return prefetch_worker(c, sysid_opt, spool, jobs, segsize, prefetch);
    if (c->nargs != 2) {
        cli_error("usage: cairn wal-fetch NAME DEST (as restore_command: 'cairn wal-fetch %%f "
                  "%%p')");
        return FETCH_CONFIG;
    }
    if (prefetch && parse_segsize_level(prefetch, 0, 64, &nprefetch) != 0) {
        cli_error("--prefetch takes 0..64, not '%s'", prefetch);
        return FETCH_CONFIG;
    }
    if (!c->repo || !*c->repo) {
        cli_error("no repository given (use --repo PATH or set CAIRN_REPO)");
        return FETCH_CONFIG;
    }
    if (cairn_pg_walname_parse(c->args[0], &wn) != 0) {
        /* not something we archive (e.g. a probe for another file): not here */
        return FETCH_NOTFOUND;
    }
    if (resolve_sysid(sysid_opt, pgdata, sysid, sizeof sysid) != 0)
        return FETCH_CONFIG;
    cairn_err_clear(&err);
    dir_of(c->args[1], dir, sizeof dir);
    snprintf(spooldir, sizeof spooldir, "%s/.cairn-prefetch", dir);
    /* a spool hit needs no repository: the spooled segment was verified when
     * it was spooled and is checked against its CRC-32C check file now */
    if (wn.kind == CAIRN_PG_SEGMENT && access(spooldir, F_OK) == 0 &&
        cairn_pg_wal_fetch_spooled(sysid, c->args[0], c->args[1], spooldir, &err) == CAIRN_OK) {
        struct stat st;
        if (nprefetch > 0 && stat(c->args[1], &st) == 0)
            start_prefetch(c, sysid, c->args[0], (uint64_t)st.st_size, nprefetch, spooldir);
        return EXIT_OK;
    }
    cairn_err_clear(&err);
    /* the repository must be there: a wrong --repo must never look like the
     * normal end of the archive (PostgreSQL would then promote too early) */
    for (attempt = 0;; attempt++) {
        /* reads config (unlocking an encrypted repository) */
        rc = cairn_repo_store_open(c->repo, &c->store, NULL, &s, &err);
        if (rc == CAIRN_NOTFOUND || rc == CAIRN_FATAL) { /* no repository, wrong password */
            cli_error("wal-fetch: %s", err.msg);
            return FETCH_CONFIG;
        }
        if (rc == CAIRN_OK)
            break;
        cairn_store_free(s);
        s = NULL;
        if (attempt >= 3) {
            cli_error("wal-fetch '%s': %s (gave up after %d attempts)", c->args[0], err.msg,
                      attempt + 1);
            return FETCH_FAILED;
        }
        usleep((useconds_t)(250000u << attempt));
    }
    if (nprefetch > 0 && mkdir(spooldir, 0700) != 0 && errno != EEXIST)
        nprefetch = 0;
    use_spool = wn.kind == CAIRN_PG_SEGMENT && access(spooldir, F_OK) == 0;
    for (attempt = 0;; attempt++) {
        rc = cairn_pg_wal_fetch_spool(s, sysid, c->args[0], c->args[1],
                                      use_spool ? spooldir : NULL, &err);
        if (rc == CAIRN_OK || rc == CAIRN_NOTFOUND)
            break;
        if (attempt >= (rc == CAIRN_CORRUPT ? 1 : 3))
            break;
        if (!c->quiet)
            cli_warn("wal-fetch '%s': %s (retrying)", c->args[0], err.msg);
        usleep((useconds_t)(250000u << attempt));
    }
    if (rc == CAIRN_OK) {
        struct stat st;
        if (nprefetch > 0 && wn.kind == CAIRN_PG_SEGMENT && stat(c->args[1], &st) == 0)
            start_prefetch(c, sysid, c->args[0], (uint64_t)st.st_size, nprefetch, spooldir);
        cairn_store_free(s);
        return EXIT_OK;
    }
    cairn_store_free(s);
    if (rc == CAIRN_NOTFOUND)
        return FETCH_NOTFOUND;
    if (rc == CAIRN_CORRUPT) {
        cli_error("wal-fetch: %s — NOT handing it to PostgreSQL; recovery must stop here "
                  "(restore the object from another copy of the repository)",
                  err.msg);
        return FETCH_CORRUPT;
    }
    cli_error("wal-fetch '%s': %s (gave up after retries; recovery stops here rather than "
              "ending early)",
              c->args[0], err.msg);
    return FETCH_FAILED;
}

/* ---- wal-verify, wal-list ---- */

static void print_line(void *arg, const char *msg)
{
    FILE *f = arg;
    fprintf(f, "%s\n", msg);
}

static int open_and_sync(struct cli *c, const char *sysid, cairn_repo **repo)
{
    struct cairn_pg_sync_stats st;
    cairn_err err;
    int rc = cli_open_repo(c, repo);
    if (rc)
        return rc;
    cairn_err_clear(&err);
    if (cairn_pg_wal_sync(cairn_repo_store(*repo), cairn_repo_catalog(*repo), sysid, &st,
                          &err) != CAIRN_OK) {
        cli_error("cannot read the WAL archive: %s", err.msg);
        return EXIT_ERR;
    }
    if (st.unreadable)
        cli_warn("%llu archived WAL objects have unreadable metadata (not counted; see 'cairn "
                 "wal-verify')",
                 (unsigned long long)st.unreadable);
    return 0;
}

int cmd_wal_verify(struct cli *c, int argc, char **argv)
{
    const char *sysid = NULL;
    struct opt opts[] = {{"system-id", 1, 0, &sysid, NULL, NULL, NULL},
                         {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    cairn_repo *repo = NULL;
    uint64_t problems = 0;
    cairn_err err;
    int rc = cli_parse(c, argc, argv, opts, "cairn wal-verify [--system-id N]");
    if (rc)
        return rc;
    if ((rc = open_and_sync(c, sysid, &repo)) != 0)
        goto out;
    cairn_err_clear(&err);
    if (cairn_pg_wal_verify(cairn_repo_store(repo), cairn_repo_catalog(repo), sysid, print_line,
                            c->quiet ? NULL : print_line, stdout, &problems,
                            &err) != CAIRN_OK) {
        cli_error("wal-verify could not run: %s", err.msg);
        rc = EXIT_ERR;
        goto out;
    }
    if (problems) {
        printf("%llu problem(s) found\n", (unsigned long long)problems);
        rc = EXIT_ERR;
    } else {
        printf("no problems found\n");
        rc = EXIT_OK;
    }
out:
    cairn_repo_free(repo);
    return rc;
}

struct list_ctx {
    json_t *arr;
};

static int list_row(void *arg, const struct cairn_walrow *r)
{
    struct list_ctx *l = arg;
    char a[24], b[24], t1[64] = "", t2[64] = "";
    cairn_pg_lsn_format(r->start_lsn, a, sizeof a);
    cairn_pg_lsn_format(r->end_lsn, b, sizeof b);
    if (r->has_commit) {
        cairn_format_time(r->min_commit_ns, t1, sizeof t1);
        cairn_format_time(r->max_commit_ns, t2, sizeof t2);
    }
    if (l->arr) {
        json_t *o = json_pack("{s:s, s:i, s:s, s:s, s:s, s:I, s:s, s:s}", "system_id",
                              r->system_id, "timeline", (int)r->timeline, "name", r->segment,
                              "start_lsn", a, "end_lsn", b, "size", (json_int_t)r->size,
                              "checksum", r->checksum, "key", r->object_key);
        if (r->has_commit) {
            json_object_set_new(o, "min_commit", json_string(t1));
            json_object_set_new(o, "max_commit", json_string(t2));
        }
        json_array_append_new(l->arr, o);
    } else {
        printf("%s  %s  %-12s %-12s %s%s%s\n", r->system_id, r->segment, a, b,
               r->has_commit ? t1 : "", r->has_commit ? " .. " : "", r->has_commit ? t2 : "");
    }
    return 0;
}

int cmd_wal_list(struct cli *c, int argc, char **argv)
{
    const char *sysid = NULL;
    struct opt opts[] = {{"system-id", 1, 0, &sysid, NULL, NULL, NULL},
                         {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    cairn_repo *repo = NULL;
    struct list_ctx l = {NULL};
    cairn_err err;
    int rc = cli_parse(c, argc, argv, opts, "cairn wal-list [--system-id N] [--json]");
    if (rc)
        return rc;
    if ((rc = open_and_sync(c, sysid, &repo)) != 0)
        goto out;
    if (c->json)
        l.arr = json_array();
    cairn_err_clear(&err);
    if (cairn_catalog_wal_list(cairn_repo_catalog(repo), sysid, 0, list_row, &l, &err) !=
        CAIRN_OK) {
        cli_error("%s", err.msg);
        json_decref(l.arr);
        rc = EXIT_ERR;
        goto out;
    }
    if (l.arr)
        cli_print_json(l.arr);
    rc = EXIT_OK;
out:
    cairn_repo_free(repo);
    return rc;
}

/* ---- base backups ---- */

int cmd_backup_pg(struct cli *c, int argc, char **argv)
{
    const char *pgdata = NULL, *dsn = NULL, *source = NULL, *label = NULL, **tags = NULL;
    size_t ntags = 0;
    struct opt opts[] = {
        {"pgdata", 1, 0, &pgdata, NULL, NULL, NULL},
        {"dsn", 1, 0, &dsn, NULL, NULL, NULL},
        {"source", 1, 0, &source, NULL, NULL, NULL},
        {"label", 1, 0, &label, NULL, NULL, NULL},
        {"tag", 1, 1, NULL, &tags, &ntags, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, NULL},
    };
    struct cairn_pg_backup_opts bo;
    struct cairn_pg_backup_result res;
    cairn_repo *repo = NULL;
    cairn_err err;
    char pd[PATH_MAX];
    int rc = cli_parse(c, argc, argv, opts,
                       "cairn backup-pg --pgdata DIR --dsn CONNINFO [--source NAME] "
                       "[--label L] [--tag T]... [--json]");
    if (rc)
        goto out;
    if (!pgdata || !dsn || c->nargs) {
        cli_error("usage: cairn backup-pg --pgdata DIR --dsn CONNINFO");
        rc = EXIT_USAGE;
        goto out;
    }
    if (!realpath(pgdata, pd)) {
        cli_error("cannot open data directory '%s': %s", pgdata, strerror(errno));
        rc = EXIT_ERR;
        goto out;
    }
    if ((rc = cli_open_repo(c, &repo)) != 0)
        goto out;
    memset(&bo, 0, sizeof bo);
    bo.pgdata = pd;
    bo.dsn = dsn;
    bo.source = source;
    bo.label = label;
    bo.tags = tags;
    bo.n_tags = ntags;
    bo.warn = cli_warn_cb;
    bo.warn_arg = c;
    cairn_err_clear(&err);
    if (cairn_pg_backup(repo, &bo, &res, &err) != CAIRN_OK) {
        cli_progress(c, "", 0);
        cli_error("backup-pg failed: %s", err.msg);
        rc = EXIT_ERR;
        goto out;
    }
    {
        char a[24], b[24], sz[32];
        cairn_pg_lsn_format(res.start_lsn, a, sizeof a);
        cairn_pg_lsn_format(res.stop_lsn, b, sizeof b);
        cairn_format_size(res.backup.bytes_stored, sz, sizeof sz);
        if (!c->quiet)
            fprintf(stderr,
                    "base backup %.12s of system %s: timeline %" PRIu32 ", WAL %s .. %s, %llu "
                    "files, %s stored, %.1fs\n",
                    res.backup.id, res.system_id, res.timeline, a, b,
                    (unsigned long long)res.backup.files, sz, res.backup.duration);
        if (c->json)
            cli_print_json(json_pack("{s:s, s:s, s:i, s:s, s:s, s:i, s:I, s:I}", "id",
                                     res.backup.id, "system_id", res.system_id, "timeline",
                                     (int)res.timeline, "start_lsn", a, "stop_lsn", b,
                                     "server_version", res.server_version, "files",
                                     (json_int_t)res.backup.files, "bytes_stored",
                                     (json_int_t)res.backup.bytes_stored));
        else
            printf("%s\n", res.backup.id);
    }
    rc = EXIT_OK;
out:
    cairn_repo_free(repo);
    free(tags);
    return rc;
}

struct bb_print {
    json_t *arr;
};

static int bb_print(void *arg, const struct cairn_pg_basebackup *b)
{
    struct bb_print *p = arg;
    char a[24], s[24], t1[64], t2[64];
    cairn_pg_lsn_format(b->start_lsn, a, sizeof a);
    cairn_pg_lsn_format(b->stop_lsn, s, sizeof s);
    cairn_format_time(b->start_ns, t1, sizeof t1);
    cairn_format_time(b->stop_ns, t2, sizeof t2);
    if (p->arr)
        json_array_append_new(p->arr,
                              json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:s, s:i, s:s}", "id",
                                        b->snapshot, "system_id", b->system_id, "timeline",
                                        (int)b->timeline, "start_lsn", a, "stop_lsn", s,
                                        "start_time", t1, "stop_time", t2, "server_version",
                                        b->server_version, "data",
                                        b->reference ? "reference" : "files"));
    else
        printf("%.12s  system %s  timeline %" PRIu32 "  WAL %s .. %s  %s .. %s%s\n", b->snapshot,
               b->system_id, b->timeline, a, s, t1, t2,
               b->reference ? "  (storage snapshot: files not in the repository)" : "");
    return 0;
}

int cmd_pg_backups(struct cli *c, int argc, char **argv)
{
    const char *sysid = NULL;
    struct opt opts[] = {{"system-id", 1, 0, &sysid, NULL, NULL, NULL},
                         {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    cairn_repo *repo = NULL;
    struct bb_print p = {NULL};
    cairn_err err;
    int rc = cli_parse(c, argc, argv, opts, "cairn pg-backups [--system-id N] [--json]");
    if (rc)
        return rc;
    if ((rc = cli_open_repo(c, &repo)) != 0)
        return rc;
    if (c->json)
        p.arr = json_array();
    cairn_err_clear(&err);
    rc = cairn_pg_basebackup_list(cairn_repo_catalog(repo), sysid, bb_print, &p, &err);
    if (rc != CAIRN_OK) {
        cli_error("%s", err.msg);
        json_decref(p.arr);
        cairn_repo_free(repo);
        return EXIT_ERR;
    }
    if (p.arr)
        cli_print_json(p.arr);
    cairn_repo_free(repo);
    return EXIT_OK;
}

/* ---- restore-pg ---- */

static int shq(cairn_buf *b, const char *s)
{
    int rc = cairn_buf_putc(b, '\'');
    for (; rc == CAIRN_OK && *s; s++)
        rc = *s == '\'' ? cairn_buf_append(b, "'\\''", 4) : cairn_buf_putc(b, *s);
    return rc == CAIRN_OK ? cairn_buf_putc(b, '\'') : rc;
}

int cmd_restore_pg(struct cli *c, int argc, char **argv)
{
    const char *target = NULL, *to_time = NULL, *to_lsn = NULL, *to_xid = NULL, *to_name = NULL,
               *timeline = NULL, *action = NULL, *sysid = NULL, *from = NULL, *cairn_path = NULL,
               *prefetch = NULL;
    int latest = 0, dry = 0, rc, nt = 0;
    const char **tsmap = NULL;
    size_t n_tsmap = 0;
    struct opt opts[] = {
        {"target", 1, 0, &target, NULL, NULL, NULL},
        {"to-time", 1, 0, &to_time, NULL, NULL, NULL},
        {"to-lsn", 1, 0, &to_lsn, NULL, NULL, NULL},
        {"to-xid", 1, 0, &to_xid, NULL, NULL, NULL},
        {"to-name", 1, 0, &to_name, NULL, NULL, NULL},
        {"latest", 0, 0, NULL, NULL, NULL, &latest},
        {"to-timeline", 1, 0, &timeline, NULL, NULL, NULL},
        {"action", 1, 0, &action, NULL, NULL, NULL},
        {"system-id", 1, 0, &sysid, NULL, NULL, NULL},
        {"from", 1, 0, &from, NULL, NULL, NULL},
        {"cairn", 1, 0, &cairn_path, NULL, NULL, NULL},
        {"prefetch", 1, 0, &prefetch, NULL, NULL, NULL},
        {"dry-run", 0, 0, NULL, NULL, NULL, &dry},
        {"tablespace-map", 1, 1, NULL, &tsmap, &n_tsmap, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, NULL},
    };
    const char *usage = "cairn restore-pg --target DIR (--to-time T | --to-lsn L | --to-xid X | "
                        "--to-name N | --latest) [--to-timeline latest|current|N] "
                        "[--action promote|pause|shutdown] [--system-id N] [--from SNAP] "
                        "[--tablespace-map OLD=NEW]... [--dry-run]";
    struct cairn_pg_target t;
    struct cairn_pg_plan plan;
    struct cairn_pg_restore_opts ro;
    cairn_repo *repo = NULL;
    cairn_buf cmd = CAIRN_BUF_INIT;
    cairn_err err;
    char exe[PATH_MAX], repo_abs[PATH_MAX], a[24], b[24];
    rc = cli_parse(c, argc, argv, opts, usage);
    if (rc)
        goto out;
    nt = !!to_time + !!to_lsn + !!to_xid + !!to_name + !!latest;
    if (!target || nt != 1 || c->nargs) {
        cli_error(nt > 1 ? "give exactly one recovery target" : "usage: %s", usage);
        rc = EXIT_USAGE;
        goto out;
    }
    memset(&t, 0, sizeof t);
    t.timeline = timeline;
    t.action = action;
    t.system_id = sysid;
    t.snapshot = from;
    if (action && strcmp(action, "promote") && strcmp(action, "pause") &&
        strcmp(action, "shutdown")) {
        cli_error("--action takes promote, pause or shutdown, not '%s'", action);
        rc = EXIT_USAGE;
        goto out;
    }
    if (to_time) {
        t.kind = CAIRN_PG_TARGET_TIME;
        if (cairn_parse_time(to_time, &t.time_ns) != CAIRN_OK) {
            cli_error("--to-time: cannot parse '%s' (use e.g. '2026-11-21 10:42:00+00')",
                      to_time);
            rc = EXIT_USAGE;
            goto out;
        }
    } else if (to_lsn) {
        t.kind = CAIRN_PG_TARGET_LSN;
        if (cairn_pg_lsn_parse(to_lsn, &t.lsn) != 0) {
            cli_error("--to-lsn: '%s' is not an LSN (like 0/3000060)", to_lsn);
            rc = EXIT_USAGE;
            goto out;
        }
    } else if (to_xid) {
        char *end;
        t.kind = CAIRN_PG_TARGET_XID;
        t.xid = to_xid;
        if (!strtoull(to_xid, &end, 10) || *end) {
            cli_error("--to-xid: '%s' is not a transaction id", to_xid);
            rc = EXIT_USAGE;
            goto out;
        }
    } else if (to_name) {
        t.kind = CAIRN_PG_TARGET_NAME;
        t.name = to_name;
    } else {
        t.kind = CAIRN_PG_TARGET_LATEST;
    }
    if ((rc = open_and_sync(c, sysid, &repo)) != 0)
        goto out;
    cairn_err_clear(&err);
    if (cairn_pg_plan_restore(cairn_repo_store(repo), cairn_repo_catalog(repo), &t, &plan,
                              &err) != CAIRN_OK) {
        cli_error("restore-pg: %s", err.msg);
        rc = EXIT_ERR;
        goto out;
    }
    cairn_pg_lsn_format(plan.base.start_lsn, a, sizeof a);
    cairn_pg_lsn_format(plan.base.stop_lsn, b, sizeof b);
    fprintf(stderr,
            "base backup %.12s (system %s, timeline %" PRIu32 ", WAL %s .. %s); recovery to "
            "timeline %" PRIu32 " needs %llu archived segments %s .. %s: all present\n",
            plan.base.snapshot, plan.base.system_id, plan.base.timeline, a, b, plan.target_tli,
            (unsigned long long)plan.n_segments, plan.first_segment, plan.last_segment);
    if (dry) {
        rc = EXIT_OK;
        goto out;
    }
    /* restore_command: this binary, the repository as an absolute location */
    if (cairn_path) {
        snprintf(exe, sizeof exe, "%s", cairn_path);
    } else {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0) {
            cli_error("cannot find this program's path (give --cairn PATH)");
            rc = EXIT_ERR;
            goto out;
        }
        exe[n] = 0;
    }
    if (strstr(c->repo, "://") || !realpath(c->repo, repo_abs))
        snprintf(repo_abs, sizeof repo_abs, "%s", c->repo);
    rc = shq(&cmd, exe);
    if (rc == CAIRN_OK)
        rc = cairn_buf_appendf(&cmd, " --repo ");
    if (rc == CAIRN_OK)
        rc = shq(&cmd, repo_abs);
    if (rc == CAIRN_OK)
        rc = cairn_buf_appendf(&cmd, " wal-fetch --system-id %s%s%s %%f %%p",
                               plan.base.system_id, prefetch ? " --prefetch " : "",
                               prefetch ? prefetch : "");
    if (rc != CAIRN_OK) {
        cli_error("out of memory");
        rc = EXIT_ERR;
        goto out;
    }
    memset(&ro, 0, sizeof ro);
    ro.target_dir = target;
    ro.restore_command = cairn_buf_cstr(&cmd);
    ro.tablespace_map = tsmap;
    ro.n_tablespace_map = n_tsmap;
    ro.warn = cli_warn_cb;
    ro.warn_arg = c;
    if (cairn_pg_restore(repo, &plan, &t, &ro, &err) != CAIRN_OK) {
        cli_progress(c, "", 0);
        cli_error("restore-pg: %s", err.msg);
        rc = EXIT_ERR;
        goto out;
    }
    if (!c->quiet)
        fprintf(stderr,
                "restored into '%s' with backup_label, recovery.signal and recovery settings "
                "in postgresql.auto.conf\n"
                "start the server as its owner, e.g.:\n"
                "  runuser -u postgres -- pg_ctl -D '%s' -l '%s/recovery.log' start\n"
                "it fetches WAL with: %s\n"
                "watch the log for 'recovery stopping' / 'archive recovery complete'\n",
                target, target, target, ro.restore_command);
    printf("%s\n", plan.base.snapshot);
    rc = EXIT_OK;
out:
    free(tsmap);
    cairn_buf_free(&cmd);
    cairn_repo_free(repo);
    return rc;
}

/* agent/mysql_restore.c — MariaDB point-in-time restore (see mysql_pitr.h).
 *
 * Order of work, so that nothing is written to the target before every input
 * is known good:
 *   1. plan: the base backup, and every binlog from its coordinates to the
 *      target present in the catalog (first missing file named);
 *   2. fetch every binlog needed into a private temporary directory (each
 *      verified: zstd checksum, size, SHA-256) and walk every event (CRC32),
 *      computing the stop position with our own event walk: a transaction
 *      counts at the time of its commit event (XID, or the COMMIT/DDL query);
 *   3. restore the xbstream into the target (mbstream -x), mariabackup
 *      --prepare;
 *   4. replay: a private mariadbd on the target (no network, own socket, no
 *      grant tables, no binlog), `mariadb-binlog` (TZ=UTC) piped into the
 *      `mariadb` client, then a clean shutdown (SIGTERM, exit status 0).
 * A failure in 3 or 4 empties the target again. */
#define _GNU_SOURCE
#include "mysql_pitr.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../restore/restore.h"

/* ---- targets ---- */

int cairn_my_target_position(const char *s, struct cairn_my_target *t)
{
    const char *c = strrchr(s, ':');
    char *end;
    size_t l;
    if (!c || c == s || !c[1])
        return -1;
    l = (size_t)(c - s);
    if (l >= sizeof t->file || memchr(s, '/', l))
        return -1;
    memcpy(t->file, s, l);
    t->file[l] = 0;
    errno = 0;
    t->pos = strtoull(c + 1, &end, 10);
    if (errno || *end || c[1] == '-' || t->pos < 4)
        return -1;
    t->kind = CAIRN_MY_TARGET_POSITION;
    return 0;
}

static int parse_gtid(const char *s, size_t n, struct cairn_my_gtid *g)
{
    char buf[80], *p, *end;
    unsigned long long v[3];
    int i;
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    p = buf;
    for (i = 0; i < 3; i++) {
        if (*p < '0' || *p > '9')
            return -1;
        errno = 0;
        v[i] = strtoull(p, &end, 10);
        if (errno || (i < 2 && *end != '-') || (i == 2 && *end) || (i < 2 && v[i] > UINT32_MAX))
            return -1;
        p = end + 1;
    }
    g->domain = (uint32_t)v[0];
    g->server = (uint32_t)v[1];
    g->seq = v[2];
    return 0;
}

int cairn_my_target_gtid(const char *s, struct cairn_my_target *t)
{
    if (parse_gtid(s, strlen(s), &t->gtid) != 0 || t->gtid.seq == 0)
        return -1;
    t->kind = CAIRN_MY_TARGET_GTID;
    return 0;
}

/* ---- GTID states: "D-S-N,D-S-N" ---- */

struct gstate {
    size_t n;
    struct cairn_my_gtid g[CAIRN_MY_MAX_DOMAINS];
};

static void gstate_parse(const char *s, struct gstate *st)
{
    memset(st, 0, sizeof *st);
    while (*s && st->n < CAIRN_MY_MAX_DOMAINS) {
        size_t l = strcspn(s, ",");
        if (parse_gtid(s, l, &st->g[st->n]) == 0)
            st->n++;
        s += l;
        if (*s == ',')
            s++;
    }
}

static void gstate_set(struct gstate *st, const struct cairn_my_gtid *g)
{
    size_t i;
    for (i = 0; i < st->n; i++)
        if (st->g[i].domain == g->domain) {
            st->g[i] = *g;
            return;
        }
    if (st->n < CAIRN_MY_MAX_DOMAINS)
        st->g[st->n++] = *g;
}

static uint64_t gstate_seq(const struct gstate *st, uint32_t domain)
{
    size_t i;
    for (i = 0; i < st->n; i++)
        if (st->g[i].domain == domain)
            return st->g[i].seq;
    return 0;
}

static void gstate_format(const struct gstate *st, char *out, size_t n)
{
    size_t i, at = 0;
    out[0] = 0;
    for (i = 0; i < st->n && at + 1 < n; i++) {
        int w = snprintf(out + at, n - at, "%s%" PRIu32 "-%" PRIu32 "-%" PRIu64, i ? "," : "",
                         st->g[i].domain, st->g[i].server, st->g[i].seq);
        if (w < 0 || (size_t)w >= n - at)
            break;
        at += (size_t)w;
    }
}

/* ---- planning ---- */

struct bbset {
    struct cairn_my_basebackup *v;
    size_t n, cap;
    int several;
    char first_server[CAIRN_BINLOG_SERVER_MAX];
};

static int bb_add(void *arg, const struct cairn_my_basebackup *b)
{
    struct bbset *s = arg;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 16;
        struct cairn_my_basebackup *v = realloc(s->v, nc * sizeof *v);
        if (!v)
            return -1;
        s->v = v;
        s->cap = nc;
    }
    if (!s->n)
        snprintf(s->first_server, sizeof s->first_server, "%s", b->server);
    else if (strcmp(s->first_server, b->server) != 0)
        s->several = 1;
    s->v[s->n++] = *b;
    return 0;
}

struct binfile {
    char name[CAIRN_BINLOG_NAME_MAX];
    uint64_t seq, end_pos;
    int has_times;
    int64_t last_ns;
    char gtids[CAIRN_BINLOG_GTIDS_MAX];
};

struct binset {
    char base[CAIRN_BINLOG_NAME_MAX];
    struct binfile *v;
    size_t n, cap;
};

static int bin_add(void *arg, const struct cairn_binlogrow *r)
{
    struct binset *s = arg;
    char base[CAIRN_BINLOG_NAME_MAX];
    uint64_t seq;
    int w;
    if (cairn_my_binlog_name_parse(r->file, base, sizeof base, &seq, &w) != 0 ||
        strcmp(base, s->base) != 0)
        return 0;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        struct binfile *v = realloc(s->v, nc * sizeof *v);
        if (!v)
            return -1;
        s->v = v;
        s->cap = nc;
    }
    memset(&s->v[s->n], 0, sizeof s->v[s->n]);
    snprintf(s->v[s->n].name, sizeof s->v[s->n].name, "%s", r->file);
    s->v[s->n].seq = seq;
    s->v[s->n].end_pos = r->end_pos;
    s->v[s->n].has_times = r->has_times;
    s->v[s->n].last_ns = r->last_event_ns;
    snprintf(s->v[s->n].gtids, sizeof s->v[s->n].gtids, "%s", r->gtids);
    s->n++;
    return 0;
}

static int bin_cmp(const void *a, const void *b)
{
    const struct binfile *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static const struct binfile *bin_find(const struct binset *s, uint64_t seq)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        if (s->v[m].seq == seq)
            return &s->v[m];
        if (s->v[m].seq < seq)
            lo = m + 1;
        else
            hi = m;
    }
    return NULL;
}

/* The last GTID seq of domain in the file's ranges ("list;D-S-N..D-S-M,..."); 0 if none. */
static uint64_t file_last_seq(const char *gtids, uint32_t domain)
{
    const char *p = strchr(gtids, ';');
    if (!p)
        return 0;
    p++;
    while (*p) {
        size_t l = strcspn(p, ","), dots;
        const char *dd = strstr(p, "..");
        struct cairn_my_gtid g;
        if (dd && (size_t)(dd - p) < l) {
            dots = (size_t)(dd - p) + 2;
            if (parse_gtid(p + dots, l - dots, &g) == 0 && g.domain == domain)
                return g.seq;
        }
        p += l;
        if (*p == ',')
            p++;
    }
    return 0;
}

/* Is base b before target t? */
static int base_fits(const struct cairn_my_basebackup *b, const struct cairn_my_target *t,
                     uint64_t tseq)
{
    char bn[CAIRN_BINLOG_NAME_MAX];
    uint64_t bseq;
    int w;
    struct gstate st;
    switch (t->kind) {
    case CAIRN_MY_TARGET_LATEST:
        return 1;
    case CAIRN_MY_TARGET_TIME:
        return b->stop_ns <= t->time_ns;
    case CAIRN_MY_TARGET_POSITION:
        if (cairn_my_binlog_name_parse(b->binlog_file, bn, sizeof bn, &bseq, &w) != 0)
            return 0;
        return bseq < tseq || (bseq == tseq && b->binlog_pos <= t->pos);
    case CAIRN_MY_TARGET_GTID:
        gstate_parse(b->gtid, &st);
        return gstate_seq(&st, t->gtid.domain) <= t->gtid.seq;
    }
    return 0;
}

struct plan {
    struct cairn_my_basebackup base;
    char bname[CAIRN_BINLOG_NAME_MAX];
    uint64_t first_seq, last_seq; /* files needed */
    struct binset bins;
};

static int plan_restore(cairn_repo *r, const struct cairn_my_target *t,
                        const struct cairn_my_restore_opts *o, struct plan *pl, cairn_err *err)
{
    cairn_catalog *cat = cairn_repo_catalog(r);
    struct bbset bbs;
    struct cairn_my_sync_stats sst;
    char tbase[CAIRN_BINLOG_NAME_MAX], tstr[64] = "";
    uint64_t tseq = 0, seq;
    int w, rc, chosen = -1;
    size_t i;
    memset(&bbs, 0, sizeof bbs);
    if (t->kind == CAIRN_MY_TARGET_POSITION &&
        cairn_my_binlog_name_parse(t->file, tbase, sizeof tbase, &tseq, &w) != 0)
        return cairn_error(err, CAIRN_FAILED,
                           "--to-position: '%s' is not a binlog file name (<base>.<number>)",
                           t->file);
    if (t->kind == CAIRN_MY_TARGET_TIME)
        cairn_format_time(t->time_ns, tstr, sizeof tstr);
    if ((rc = cairn_my_binlog_sync(cairn_repo_store(r), cat, &sst, err)) != CAIRN_OK)
        return cairn_error_prefix(err, "cannot read the binlog archive");
    if ((rc = cairn_my_basebackup_list(cat, o->server, bb_add, &bbs, err)) != CAIRN_OK) {
        free(bbs.v);
        return rc > 0 ? cairn_error(err, CAIRN_FATAL, "out of memory") : rc;
    }
    if (!bbs.n) {
        free(bbs.v);
        return cairn_error(err, CAIRN_NOTFOUND,
                           "the repository has no MariaDB base backup%s%s (make one with "
                           "'cairn backup-mysql')",
                           o->server ? " of server " : "", o->server ? o->server : "");
    }
    if (bbs.several) {
        free(bbs.v);
        return cairn_error(err, CAIRN_FAILED,
                           "the repository has base backups of several MariaDB servers: "
                           "choose one with --server");
    }
    for (i = 0; i < bbs.n; i++) {
        if (o->snapshot) {
            if (strncmp(bbs.v[i].snapshot, o->snapshot, strlen(o->snapshot)) == 0) {
                if (chosen >= 0) {
                    free(bbs.v);
                    return cairn_error(err, CAIRN_FAILED,
                                       "--from '%s' matches several base backups", o->snapshot);
                }
                chosen = (int)i;
            }
            continue;
        }
        if (base_fits(&bbs.v[i], t, tseq) &&
            (chosen < 0 || bbs.v[i].stop_ns >= bbs.v[chosen].stop_ns))
            chosen = (int)i;
    }
    if (chosen < 0) {
        char first[64];
        cairn_format_time(bbs.v[0].stop_ns, first, sizeof first);
        if (o->snapshot)
            rc = cairn_error(err, CAIRN_NOTFOUND, "no MariaDB base backup has the id '%s'",
                             o->snapshot);
        else if (t->kind == CAIRN_MY_TARGET_TIME)
            rc = cairn_error(err, CAIRN_NOTFOUND,
                             "no base backup of server %s ended before %s: the oldest kept "
                             "one (%.12s) ended at %s, so that time cannot be restored",
                             bbs.v[0].server, tstr, bbs.v[0].snapshot, first);
        else
            rc = cairn_error(err, CAIRN_NOTFOUND,
                             "no base backup of server %s is before the target: the oldest "
                             "kept one (%.12s) is at %s:%" PRIu64 " (GTID %s)",
                             bbs.v[0].server, bbs.v[0].snapshot, bbs.v[0].binlog_file,
                             bbs.v[0].binlog_pos, bbs.v[0].gtid);
        free(bbs.v);
        return rc;
    }
    pl->base = bbs.v[chosen];
    free(bbs.v);
    if (o->snapshot && !base_fits(&pl->base, t, tseq))
        return cairn_error(err, CAIRN_FAILED,
                           "base backup %.12s is not before the target (it is at %s:%" PRIu64
                           ")",
                           pl->base.snapshot, pl->base.binlog_file, pl->base.binlog_pos);
    if (cairn_my_binlog_name_parse(pl->base.binlog_file, pl->bname, sizeof pl->bname,
                                   &pl->first_seq, &w) != 0)
        return cairn_error(err, CAIRN_CORRUPT, "base backup %.12s: bad binlog file name '%s'",
                           pl->base.snapshot, pl->base.binlog_file);
    if (t->kind == CAIRN_MY_TARGET_POSITION && strcmp(tbase, pl->bname) != 0)
        return cairn_error(err, CAIRN_FAILED,
                           "--to-position names '%s', but the base backup's binlogs are "
                           "named '%s.*'",
                           t->file, pl->bname);
    snprintf(pl->bins.base, sizeof pl->bins.base, "%s", pl->bname);
    if ((rc = cairn_catalog_binlog_list(cat, pl->base.server, bin_add, &pl->bins, err)) !=
        CAIRN_OK)
        return rc > 0 ? cairn_error(err, CAIRN_FATAL, "out of memory") : rc;
    if (pl->bins.n > 1)
        qsort(pl->bins.v, pl->bins.n, sizeof *pl->bins.v, bin_cmp);
    if (!bin_find(&pl->bins, pl->first_seq))
        return cairn_error(err, CAIRN_FAILED,
                           "binlog %s of server %s, where base backup %.12s starts, is not "
                           "archived (forgotten, or never shipped: run 'cairn binlog-push')",
                           pl->base.binlog_file, pl->base.server, pl->base.snapshot);
    /* walk forward to the file the target lies in, requiring every file */
    for (seq = pl->first_seq;; seq++) {
        const struct binfile *f = bin_find(&pl->bins, seq);
        int last_archived = pl->bins.n && seq >= pl->bins.v[pl->bins.n - 1].seq;
        if (!f) {
            char nm[CAIRN_BINLOG_NAME_MAX + 32];
            int width = (int)strlen(pl->base.binlog_file) - (int)strlen(pl->bname) - 1;
            snprintf(nm, sizeof nm, "%s.%0*" PRIu64, pl->bname, width, seq);
            return cairn_error(err, CAIRN_FAILED,
                               "binlog %s of server %s is not archived: restoring from base "
                               "backup %.12s (%s:%" PRIu64 ") to the target needs every file "
                               "from %s on (run 'cairn binlog-push' while the server still has "
                               "it, or choose an earlier target)",
                               nm, pl->base.server, pl->base.snapshot, pl->base.binlog_file,
                               pl->base.binlog_pos, pl->base.binlog_file);
        }
        if (t->kind == CAIRN_MY_TARGET_POSITION) {
            if (seq == tseq) {
                if (t->pos > f->end_pos)
                    return cairn_error(err, CAIRN_FAILED,
                                       "--to-position %s:%" PRIu64 " is past the end of the "
                                       "archived file (%" PRIu64 ")",
                                       t->file, t->pos, f->end_pos);
                break;
            }
        } else if (t->kind == CAIRN_MY_TARGET_TIME) {
            if (f->has_times && f->last_ns >= t->time_ns)
                break;
            if (last_archived) {
                char le[64] = "?";
                if (f->has_times)
                    cairn_format_time(f->last_ns, le, sizeof le);
                return cairn_error(err, CAIRN_FAILED,
                                   "the archived binlogs of server %s end at %s (%s), before "
                                   "the target %s: ship the newer binlogs first (FLUSH BINARY "
                                   "LOGS, then 'cairn binlog-push'), or use --latest",
                                   pl->base.server, le, f->name, tstr);
            }
        } else if (t->kind == CAIRN_MY_TARGET_GTID) {
            if (file_last_seq(f->gtids, t->gtid.domain) >= t->gtid.seq)
                break;
            if (last_archived)
                return cairn_error(err, CAIRN_FAILED,
                                   "GTID %" PRIu32 "-%" PRIu32 "-%" PRIu64 " is not in the "
                                   "archived binlogs of server %s (the last is %s)",
                                   t->gtid.domain, t->gtid.server, t->gtid.seq,
                                   pl->base.server, f->name);
        } else if (last_archived) {
            break;
        }
        if (t->kind == CAIRN_MY_TARGET_POSITION && seq > tseq)
            break;
    }
    pl->last_seq = seq;
    return CAIRN_OK;
}

/* ---- the stop position ---- */

struct walk {
    const struct cairn_my_target *t;
    int is_first, is_target_file;
    uint64_t start_pos;       /* first file: the base's position */
    /* the transaction being read */
    int in_tx, tx_has_commit, tx_has_gtid;
    struct cairn_my_gtid tx_gtid;
    uint64_t tx_commit_end;
    uint32_t tx_commit_when;
    /* the replay so far */
    int done;                 /* the target is reached: stop */
    int found;                /* GTID target seen */
    uint64_t cur_seq;         /* the file being walked */
    uint64_t stop_seq, stop_pos; /* replay up to here */
    uint64_t txs;
    int has_last;
    uint32_t last_when;
    struct cairn_my_gtid last_gtid;
    int last_has_gtid;
    struct gstate gs;
};

/* A transaction is complete: take it, or stop before it. */
static void tx_close(struct walk *w)
{
    const struct cairn_my_target *t = w->t;
    if (!w->in_tx || !w->tx_has_commit || w->done) {
        w->in_tx = 0;
        return;
    }
    w->in_tx = 0;
    if (t->kind == CAIRN_MY_TARGET_TIME && (int64_t)w->tx_commit_when * 1000000000LL > t->time_ns) {
        w->done = 1;
        return;
    }
    if (t->kind == CAIRN_MY_TARGET_POSITION && w->is_target_file && w->tx_commit_end > t->pos) {
        w->done = 1;
        return;
    }
    w->stop_seq = w->cur_seq;
    w->stop_pos = w->tx_commit_end;
    w->txs++;
    w->has_last = 1;
    w->last_when = w->tx_commit_when;
    w->last_has_gtid = w->tx_has_gtid;
    if (w->tx_has_gtid) {
        w->last_gtid = w->tx_gtid;
        gstate_set(&w->gs, &w->tx_gtid);
    }
    if (t->kind == CAIRN_MY_TARGET_GTID && w->tx_has_gtid && w->tx_gtid.domain == t->gtid.domain &&
        w->tx_gtid.seq == t->gtid.seq) {
        w->found = 1;
        w->done = 1;
    }
}

static int on_event(void *arg, const struct cairn_my_event *ev)
{
    struct walk *w = arg;
    if (w->done)
        return 1;
    if (w->is_first && ev->pos < w->start_pos)
        return 0;
    switch (ev->type) {
    case CAIRN_MY_EV_GTID:
    case CAIRN_MY_EV_MYSQL_GTID:
        tx_close(w);
        if (w->done)
            return 1;
        w->in_tx = 1;
        w->tx_has_commit = 0;
        w->tx_has_gtid = ev->has_gtid;
        if (ev->has_gtid)
            w->tx_gtid = ev->gtid;
        break;
    case CAIRN_MY_EV_XID:
    case 2: /* Query: BEGIN, COMMIT, or a DDL statement on its own */
        if (w->in_tx) {
            w->tx_has_commit = 1;
            w->tx_commit_end = ev->end;
            w->tx_commit_when = ev->when;
        }
        break;
    case CAIRN_MY_EV_ROTATE:
    case CAIRN_MY_EV_STOP:
        tx_close(w);
        return w->done ? 1 : 0;
    default:
        break;
    }
    return 0;
}

/* ---- restore steps ---- */

static void info(const struct cairn_my_restore_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void info(const struct cairn_my_restore_opts *o, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    if (!o->info)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    o->info(o->info_arg, msg);
}

static int dir_empty_or_absent(const char *path, int *existed, cairn_err *err)
{
    DIR *d = opendir(path);
    struct dirent *de;
    *existed = 0;
    if (!d) {
        if (errno == ENOENT)
            return CAIRN_OK;
        return cairn_error(err, CAIRN_FAILED, "cannot use '%s' as the target: %s", path,
                           strerror(errno));
    }
    *existed = 1;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        closedir(d);
        return cairn_error(err, CAIRN_EXISTS,
                           "the target directory '%s' is not empty: restore into an empty or "
                           "new directory",
                           path);
    }
    closedir(d);
    return CAIRN_OK;
}

/* nftw() has no callback argument: the owner travels in these (one restore
 * at a time per process, as the header says) */
static uid_t own_uid;
static gid_t own_gid;

static int chown_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return lchown(p, own_uid, own_gid) != 0 ? -1 : 0;
}

static int chown_tree(const char *path, uid_t u, gid_t g, cairn_err *err)
{
    own_uid = u;
    own_gid = g;
    if (nftw(path, chown_one, 32, FTW_PHYS) != 0)
        return cairn_error(err, CAIRN_FAILED, "cannot change the owner of '%s': %s", path,
                           strerror(errno));
    return CAIRN_OK;
}

static int extract_base(cairn_repo *r, const struct plan *pl, const char *target,
                        const char *tmp, cairn_err *err)
{
    char mbs[PATH_MAX], log[PATH_MAX + 32];
    const char *argv[] = {mbs, "-x", "-C", target, NULL};
    struct cairn_snapshot *snap = NULL;
    void (*old)(int);
    int p[2], rc, rc2;
    pid_t pid;
    uint64_t n = 0;
    if (cairn_my_find_prog("mbstream", mbs, sizeof mbs) != 0)
        return cairn_error(err, CAIRN_FAILED,
                           "mbstream is not installed (apt-get install mariadb-backup)");
    snprintf(log, sizeof log, "%s/mbstream.log", tmp);
    if ((rc = cairn_repo_snapshot_get(r, pl->base.snapshot, NULL, &snap, err)) != CAIRN_OK)
        return rc;
    if (pipe2(p, O_CLOEXEC) != 0) {
        cairn_snapshot_free(snap);
        return cairn_error(err, CAIRN_FAILED, "cannot create a pipe: %s", strerror(errno));
    }
    if ((rc = cairn_my_spawn(argv, p[0], -1, log, 0, &pid, err)) != CAIRN_OK) {
        close(p[0]);
        close(p[1]);
        cairn_snapshot_free(snap);
        return rc;
    }
    close(p[0]);
    old = signal(SIGPIPE, SIG_IGN);
    rc = cairn_cat_file(r, snap, pl->base.stream, p[1], &n, err);
    close(p[1]);
    signal(SIGPIPE, old);
    cairn_snapshot_free(snap);
    {
        cairn_err e2;
        rc2 = cairn_my_wait(pid, "mbstream -x", log, rc == CAIRN_OK ? err : &e2);
    }
    if (rc == CAIRN_OK)
        rc = rc2;
    return rc;
}

static int prepare_base(const char *target, const char *tmp, cairn_err *err)
{
    char mb[PATH_MAX], log[PATH_MAX + 32], td[PATH_MAX + 16];
    const char *argv[] = {mb, "--prepare", td, NULL};
    pid_t pid;
    int rc;
    if (cairn_my_find_prog("mariabackup", mb, sizeof mb) != 0)
        return cairn_error(err, CAIRN_FAILED,
                           "mariabackup is not installed (apt-get install mariadb-backup)");
    snprintf(log, sizeof log, "%s/prepare.log", tmp);
    snprintf(td, sizeof td, "--target-dir=%s", target);
    if ((rc = cairn_my_spawn(argv, -1, -1, log, 0, &pid, err)) != CAIRN_OK)
        return rc;
    return cairn_my_wait(pid, "mariabackup --prepare", log, err);
}

static int sock_ready(const char *path)
{
    struct sockaddr_un a;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;
    if (fd < 0)
        return 0;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof a.sun_path) {
        close(fd);
        return 0;
    }
    memcpy(a.sun_path, path, strlen(path));
    ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Stops the private server cleanly: SIGTERM, then its exit status must be 0.
 * SIGTERM is sent again every 5 s (harmless once it shuts down); a server
 * still there after timeout_s is killed, and that is an error (seen once: a
 * mariadbd told to stop just after it opened its socket hung in shutdown,
 * and restore-mysql with it). */
static int stop_server(pid_t pid, const char *log, int timeout_s, cairn_err *err)
{
    double start = cairn_mono(), last = start;
    kill(pid, SIGTERM);
    for (;;) {
        siginfo_t si;
        double now;
        memset(&si, 0, sizeof si);
        /* WNOWAIT: look without reaping; cairn_my_wait reaps and explains */
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0 ? errno != EINTR
                                                                             : si.si_pid == pid)
            return cairn_my_wait(pid, "the temporary mariadbd (shutdown)", log, err);
        now = cairn_mono();
        if (now - start > timeout_s) {
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
            return cairn_error(err, CAIRN_FAILED,
                               "the temporary mariadbd did not shut down within %d s; it was "
                               "killed (its log: %s)",
                               timeout_s, log);
        }
        if (now - last >= 5) {
            kill(pid, SIGTERM);
            last = now;
        }
        usleep(50000);
    }
}

/* How long the private server may take to shut down by default: after a
 * replay (it flushes what it replayed), and when the restore failed anyway. */
#define STOP_TIMEOUT_S 600
#define STOP_TIMEOUT_FAILED_S 30

static int replay(const struct plan *pl, const char *target, const char *tmp,
                  const char *bindir, const char *user, uint64_t stop_pos, uint64_t last_seq,
                  const struct cairn_my_restore_opts *o, cairn_err *err)
{
    char mysqld[PATH_MAX], mbin[PATH_MAX], cli[PATH_MAX];
    char dd[PATH_MAX + 16], so[PATH_MAX + 16], po[PATH_MAX + 16], le[PATH_MAX + 16];
    char uo[128], sp[64], ep[64], sock[PATH_MAX], slog[PATH_MAX], blog[PATH_MAX],
        clog[PATH_MAX];
    const char *sargv[16];
    const char **bargv = NULL;
    const char *cargv[] = {cli, "--no-defaults", so, "--user=root", "--binary-mode", "--batch",
                           NULL};
    size_t na = 0, nb = 0, i, nfiles = (size_t)(last_seq - pl->first_seq + 1);
    pid_t spid = -1, bpid = -1, cpid = -1;
    int p[2] = {-1, -1}, rc, k, stop_s = o->stop_timeout_s > 0 ? o->stop_timeout_s : STOP_TIMEOUT_S;
    cairn_err e2;
    char **names = NULL;

    if (cairn_my_find_prog("mariadbd", mysqld, sizeof mysqld) != 0 &&
        cairn_my_find_prog("mysqld", mysqld, sizeof mysqld) != 0)
        return cairn_error(err, CAIRN_FAILED,
                           "mariadbd is not installed (apt-get install mariadb-server)");
    if (cairn_my_find_prog("mariadb-binlog", mbin, sizeof mbin) != 0 &&
        cairn_my_find_prog("mysqlbinlog", mbin, sizeof mbin) != 0)
        return cairn_error(err, CAIRN_FAILED,
                           "mariadb-binlog is not installed (apt-get install mariadb-client)");
    if (cairn_my_find_prog("mariadb", cli, sizeof cli) != 0 &&
        cairn_my_find_prog("mysql", cli, sizeof cli) != 0)
        return cairn_error(err, CAIRN_FAILED,
                           "the mariadb client is not installed (apt-get install mariadb-client)");
    snprintf(sock, sizeof sock, "%s/run/mysqld.sock", tmp);
    if (strlen(sock) >= sizeof ((struct sockaddr_un *)0)->sun_path)
        return cairn_error(err, CAIRN_FAILED,
                           "the socket path '%s' is too long: set TMPDIR to a shorter directory",
                           sock);
    snprintf(slog, sizeof slog, "%s/run/mariadbd.log", tmp);
    snprintf(blog, sizeof blog, "%s/mariadb-binlog.log", tmp);
    snprintf(clog, sizeof clog, "%s/mariadb-client.log", tmp);
    snprintf(dd, sizeof dd, "--datadir=%s", target);
    snprintf(so, sizeof so, "--socket=%s", sock);
    snprintf(po, sizeof po, "--pid-file=%s/run/mariadbd.pid", tmp);
    snprintf(le, sizeof le, "--log-error=%s", slog);
    sargv[na++] = mysqld;
    sargv[na++] = "--no-defaults";
    if (user) {
        snprintf(uo, sizeof uo, "--user=%s", user);
        sargv[na++] = uo;
    }
    sargv[na++] = dd;
    sargv[na++] = so;
    sargv[na++] = po;
    sargv[na++] = le;
    sargv[na++] = "--skip-networking";
    sargv[na++] = "--skip-grant-tables";
    sargv[na++] = "--skip-log-bin";
    sargv[na++] = "--skip-slave-start";
    sargv[na] = NULL;

    if (!(names = calloc(nfiles, sizeof *names)) ||
        !(bargv = calloc(nfiles + 8, sizeof *bargv)))
        return free(names), cairn_error(err, CAIRN_FATAL, "out of memory");
    snprintf(sp, sizeof sp, "--start-position=%" PRIu64, pl->base.binlog_pos);
    snprintf(ep, sizeof ep, "--stop-position=%" PRIu64, stop_pos);
    bargv[nb++] = mbin;
    bargv[nb++] = "--no-defaults";
    bargv[nb++] = sp;
    bargv[nb++] = ep;
    for (i = 0; i < nfiles; i++) {
        const struct binfile *f = bin_find(&pl->bins, pl->first_seq + i);
        if (!f || !(names[i] = cairn_path_join(bindir, f->name))) {
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
            goto out;
        }
        bargv[nb++] = names[i];
    }
    bargv[nb] = NULL;

    info(o, "starting a private mariadbd on '%s' (no network, socket %s)", target, sock);
    if ((rc = cairn_my_spawn(sargv, -1, -1, slog, 0, &spid, err)) != CAIRN_OK)
        goto out;
    for (k = 0; k < 1200; k++) {
        int st;
        if (sock_ready(sock))
            break;
        if (waitpid(spid, &st, WNOHANG) == spid) {
            char last[512];
            spid = -1;
            cairn_my_log_line(slog, "[ERROR]", last, sizeof last);
            rc = cairn_error(err, CAIRN_FAILED,
                             "the temporary mariadbd on '%s' did not start: %s", target,
                             last[0] ? last : "(see its log)");
            goto out;
        }
        usleep(100000);
    }
    if (k == 1200) {
        rc = cairn_error(err, CAIRN_FAILED, "the temporary mariadbd did not answer within 120 s");
        goto out;
    }
    info(o, "replaying %zu binlog file(s) from %s:%" PRIu64 " to %s:%" PRIu64, nfiles,
         pl->base.binlog_file, pl->base.binlog_pos, bargv[nb - 1] + strlen(bindir) + 1,
         stop_pos);
    if (pipe2(p, O_CLOEXEC) != 0) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot create a pipe: %s", strerror(errno));
        goto out;
    }
    if ((rc = cairn_my_spawn(bargv, -1, p[1], blog, 1, &bpid, err)) != CAIRN_OK)
        goto out;
    if ((rc = cairn_my_spawn(cargv, p[0], -1, clog, 1, &cpid, err)) != CAIRN_OK)
        goto out;
    close(p[0]);
    close(p[1]);
    p[0] = p[1] = -1;
    rc = cairn_my_wait(cpid, "the replay (mariadb client)", clog, err);
    cpid = -1;
    {
        int rb = cairn_my_wait(bpid, "mariadb-binlog", blog, rc == CAIRN_OK ? err : &e2);
        bpid = -1;
        if (rc == CAIRN_OK)
            rc = rb;
    }
    if (rc != CAIRN_OK)
        goto out;
    rc = stop_server(spid, slog, stop_s, err);
    spid = -1;
out:
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
    if (cpid > 0) {
        kill(cpid, SIGTERM);
        waitpid(cpid, NULL, 0);
    }
    if (bpid > 0) {
        kill(bpid, SIGTERM);
        waitpid(bpid, NULL, 0);
    }
    if (spid > 0)
        stop_server(spid, slog, stop_s < STOP_TIMEOUT_FAILED_S ? stop_s : STOP_TIMEOUT_FAILED_S,
                    &e2);
    for (i = 0; names && i < nfiles; i++)
        free(names[i]);
    free(names);
    free(bargv);
    return rc;
}

int cairn_my_restore(cairn_repo *r, const struct cairn_my_target *t,
                     const struct cairn_my_restore_opts *o, struct cairn_my_restore_result *res,
                     cairn_err *err)
{
    struct plan pl;
    struct walk w;
    char tmp[PATH_MAX] = "", bindir[PATH_MAX + 16], run[PATH_MAX + 16], tdir[PATH_MAX];
    const char *user = o->user;
    struct passwd *pw = NULL;
    uint64_t seq, stop_seq;
    int rc, existed = 0, touched = 0;
    cairn_buf buf = CAIRN_BUF_INIT;

    memset(res, 0, sizeof *res);
    memset(&pl, 0, sizeof pl);
    if (!o->target_dir || !*o->target_dir)
        return cairn_error(err, CAIRN_FAILED, "restore-mysql needs --target DIR");
    if ((rc = dir_empty_or_absent(o->target_dir, &existed, err)) != CAIRN_OK)
        return rc;
    if (!user && geteuid() == 0)
        user = "mysql";
    if (user) {
        if (!(pw = getpwnam(user)))
            return cairn_error(err, CAIRN_FAILED,
                               "no user '%s' to run the temporary mariadbd as (give --user)",
                               user);
        snprintf(res->user, sizeof res->user, "%s", user);
    }
    if ((rc = plan_restore(r, t, o, &pl, err)) != CAIRN_OK)
        goto out;
    res->base = pl.base;
    info(o, "base backup %.12s (server %s, %s:%" PRIu64 ", GTID %s); binlogs %s .. up to file "
            "number %" PRIu64 " all archived",
         pl.base.snapshot, pl.base.server, pl.base.binlog_file, pl.base.binlog_pos,
         pl.base.gtid[0] ? pl.base.gtid : "-", pl.base.binlog_file, pl.last_seq);

    /* fetch and walk everything before the target is touched */
    if ((rc = cairn_my_tempdir("restore-mysql", tmp, sizeof tmp, err)) != CAIRN_OK)
        goto out;
    snprintf(bindir, sizeof bindir, "%s/binlogs", tmp);
    snprintf(run, sizeof run, "%s/run", tmp);
    if (mkdir(bindir, 0700) != 0 || mkdir(run, 0700) != 0) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot create '%s': %s", bindir, strerror(errno));
        goto out;
    }
    memset(&w, 0, sizeof w);
    w.t = t;
    w.start_pos = pl.base.binlog_pos;
    w.stop_pos = pl.base.binlog_pos;
    gstate_parse(pl.base.gtid, &w.gs);
    if (t->kind == CAIRN_MY_TARGET_GTID && gstate_seq(&w.gs, t->gtid.domain) == t->gtid.seq)
        w.found = w.done = 1; /* the base backup ends exactly at that transaction */
    w.stop_seq = pl.first_seq;
    for (seq = pl.first_seq; seq <= pl.last_seq && !w.done; seq++) {
        const struct binfile *f = bin_find(&pl.bins, seq);
        char path[PATH_MAX + CAIRN_BINLOG_NAME_MAX + 32];
        snprintf(path, sizeof path, "%s/%s", bindir, f->name);
        rc = cairn_my_binlog_fetch(cairn_repo_store(r), pl.base.server, f->name, path, err);
        if (rc != CAIRN_OK) {
            cairn_error_prefix(err, "binlog %s %s; nothing was written to '%s'", f->name,
                               rc == CAIRN_CORRUPT ? "failed verification" : "cannot be fetched",
                               o->target_dir);
            goto out;
        }
        cairn_buf_reset(&buf);
        if ((rc = cairn_read_file(path, &buf, (size_t)CAIRN_MY_MAX_FILE, err)) != CAIRN_OK)
            goto out;
        w.cur_seq = seq;
        w.is_first = seq == pl.first_seq;
        w.is_target_file = t->kind == CAIRN_MY_TARGET_POSITION && seq == pl.last_seq;
        w.in_tx = 0;
        rc = cairn_my_binlog_walk(buf.data, buf.len, on_event, &w, err);
        if (rc < 0) {
            cairn_error_prefix(err, "archived binlog %s is damaged; nothing was written to '%s'",
                               f->name, o->target_dir);
            goto out;
        }
        rc = CAIRN_OK;
        tx_close(&w); /* the file ended: a transaction never spans files */
    }
    if (t->kind == CAIRN_MY_TARGET_GTID && !w.found) {
        rc = cairn_error(err, CAIRN_FAILED,
                         "GTID %" PRIu32 "-%" PRIu32 "-%" PRIu64 " is not in the archived "
                         "binlogs after base backup %.12s (the base already holds GTID %s)",
                         t->gtid.domain, t->gtid.server, t->gtid.seq, pl.base.snapshot,
                         pl.base.gtid);
        goto out;
    }
    stop_seq = w.stop_seq;
    snprintf(res->stop_file, sizeof res->stop_file, "%s", bin_find(&pl.bins, stop_seq)->name);
    res->stop_pos = w.stop_pos;
    snprintf(res->first_file, sizeof res->first_file, "%s", pl.base.binlog_file);
    res->files = stop_seq - pl.first_seq + 1;
    res->transactions = w.txs;
    res->has_last = w.has_last;
    res->last_commit_ns = (int64_t)w.last_when * 1000000000LL;
    if (w.last_has_gtid)
        cairn_my_gtid_format(&w.last_gtid, res->last_gtid, sizeof res->last_gtid);
    gstate_format(&w.gs, res->gtid_pos, sizeof res->gtid_pos);
    info(o, "stop point: %s:%" PRIu64 " (%" PRIu64 " transaction(s) to replay after the base)",
         res->stop_file, res->stop_pos, res->transactions);

    /* from here on the target is written */
    if (!existed) { /* parents 0755: the server's user must reach the directory */
        if ((rc = cairn_mkdir_p(o->target_dir, 0755, err)) != CAIRN_OK)
            goto out;
        chmod(o->target_dir, 0750);
    }
    touched = 1;
    if (!realpath(o->target_dir, tdir)) { /* the programs get an absolute path */
        rc = cairn_error(err, CAIRN_FAILED, "cannot resolve '%s': %s", o->target_dir,
                         strerror(errno));
        goto out;
    }
    info(o, "restoring base backup %.12s into '%s' (mbstream -x)", pl.base.snapshot,
         o->target_dir);
    if ((rc = extract_base(r, &pl, tdir, tmp, err)) != CAIRN_OK)
        goto out;
    info(o, "preparing it (mariabackup --prepare)");
    if ((rc = prepare_base(tdir, tmp, err)) != CAIRN_OK)
        goto out;
    if (pw && ((rc = chown_tree(tdir, pw->pw_uid, pw->pw_gid, err)) != CAIRN_OK ||
               (rc = chown_tree(run, pw->pw_uid, pw->pw_gid, err)) != CAIRN_OK))
        goto out;
    if (pw)
        chmod(tmp, 0711); /* the server reaches its socket directory through it */
    if (res->transactions) {
        if ((rc = replay(&pl, tdir, tmp, bindir, user, res->stop_pos, stop_seq, o,
                         err)) != CAIRN_OK)
            goto out;
    } else {
        info(o, "nothing to replay: the base backup is the target state");
    }
    rc = CAIRN_OK;
out:
    if (rc != CAIRN_OK && touched) {
        cairn_my_rmtree(o->target_dir, 1);
        if (!existed)
            rmdir(o->target_dir);
        {
            char m[CAIRN_ERRMSG_MAX];
            memcpy(m, err->msg, sizeof m);
            cairn_error(err, rc, "%.700s (what was restored into '%.200s' was removed again%s)",
                        m, o->target_dir, existed ? ": it is empty" : "");
        }
    }
    cairn_buf_free(&buf);
    free(pl.bins.v);
    if (tmp[0])
        cairn_my_rmtree(tmp, 0);
    return rc;
}

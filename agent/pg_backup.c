/* agent/pg_backup.c — app-consistent PostgreSQL base backups (see pg.h).
 *
 * One libpq session is held open from pg_backup_start to pg_backup_stop (a
 * non-exclusive backup ends, and is aborted, when its session ends). The
 * engine copies PGDATA in between; pg_backup_stop runs in the engine's
 * before_manifest hook, once every byte is stored, so backup_label and
 * tablespace_map go into the one manifest the backup writes. If anything
 * fails before that, no snapshot is written at all. */
#define _GNU_SOURCE
#include "pg.h"
#include "pq_dl.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


/* What pg_basebackup leaves out too: runtime state PostgreSQL rebuilds at
 * start, temporary files, and pg_wal's contents (recovery fetches WAL from the
 * archive; the empty pg_wal/ directory itself is kept). */
static const char *const excludes[] = {
    "pg_wal/*",       "postmaster.pid",     "postmaster.opts",   "pg_replslot/*",
    "pg_stat_tmp/*",  "pg_dynshmem/*",      "pg_notify/*",       "pg_serial/*",
    "pg_snapshots/*", "pg_subtrans/*",      "pgsql_tmp*",        "pg_internal.init",
    "backup_label",   "backup_label.old",   "tablespace_map",    "tablespace_map.old",
    "postgresql.auto.conf.tmp", "current_logfiles.tmp", "recovery.signal", "standby.signal",
};

static int pq_fail(cairn_err *err, PGconn *c, PGresult *r, const char *what)
{
    const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
    char msg[512];
    size_t n;
    snprintf(msg, sizeof msg, "%s", m && *m ? m : "unknown error");
    n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = 0;
    if (r)
        PQclear(r);
    return cairn_error(err, CAIRN_FAILED, "PostgreSQL: %s: %s", what, msg);
}

/* Runs a query with text parameters; returns the result (one row expected). */
static PGresult *query1(PGconn *c, const char *sql, int n, const char *const *params,
                        const char *what, cairn_err *err)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        pq_fail(err, c, r, what);
        return NULL;
    }
    return r;
}

static int label_line(const char *label, const char *key, char *out, size_t n)
{
    const char *p = strstr(label, key), *e;
    if (!p)
        return -1;
    p += strlen(key);
    while (*p == ' ')
        p++;
    e = strchr(p, '\n');
    if (!e)
        e = p + strlen(p);
    if ((size_t)(e - p) >= n)
        return -1;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = 0;
    return 0;
}

/* The tablespaces: pg_tblspc/<oid> symlinks to their directories (in-place
 * tablespaces, plain directories there, are part of PGDATA already). */
#define MAX_TS 64
struct tsinfo {
    char oid[32];
    char *location; /* realpath of the link's target */
    const char *root; /* its name at the top of the snapshot (basename) */
};

static const char *base_of(const char *p)
{
    const char *s = strrchr(p, '/');
    return s && s[1] ? s + 1 : p;
}

static int list_tablespaces(const char *pgdata, const char *pg_real, struct tsinfo *ts,
                            size_t *n, cairn_err *err)
{
    char p[PATH_MAX], lp[PATH_MAX + 512];
    DIR *d;
    struct dirent *de;
    int rc = CAIRN_OK;
    *n = 0;
    snprintf(p, sizeof p, "%s/pg_tblspc", pgdata);
    if (!(d = opendir(p)))
        return CAIRN_OK;
    while (rc == CAIRN_OK && (de = readdir(d)) != NULL) {
        struct stat st;
        size_t i;
        char *real;
        if (de->d_name[0] == '.')
            continue;
        snprintf(lp, sizeof lp, "%s/%s", p, de->d_name);
        if (lstat(lp, &st) != 0 || !S_ISLNK(st.st_mode))
            continue; /* an in-place tablespace: backed up with PGDATA */
        if (strspn(de->d_name, "0123456789") != strlen(de->d_name) || strlen(de->d_name) > 20) {
            rc = cairn_error(err, CAIRN_FAILED, "'%s' is not a tablespace link (not an OID)", lp);
            break;
        }
        if (*n == MAX_TS) {
            rc = cairn_error(err, CAIRN_FAILED, "more than %d tablespaces", MAX_TS);
            break;
        }
        if (!(real = realpath(lp, NULL))) {
            rc = cairn_error(err, CAIRN_FAILED, "tablespace %s: cannot resolve '%s': %s",
                             de->d_name, lp, strerror(errno));
            break;
        }
        snprintf(ts[*n].oid, sizeof ts[*n].oid, "%s", de->d_name);
        ts[*n].location = real;
        ts[*n].root = base_of(real);
        if (strcmp(ts[*n].root, base_of(pg_real)) == 0)
            rc = cairn_error(err, CAIRN_FAILED,
                             "tablespace %s at '%s' has the same directory name as the data "
                             "directory '%s': backup-pg stores each under its name",
                             ts[*n].oid, real, pg_real);
        for (i = 0; rc == CAIRN_OK && i < *n; i++)
            if (strcmp(ts[i].root, ts[*n].root) == 0)
                rc = cairn_error(err, CAIRN_FAILED,
                                 "tablespaces %s ('%s') and %s ('%s') have the same directory "
                                 "name: backup-pg stores each under its name",
                                 ts[i].oid, ts[i].location, ts[*n].oid, real);
        (*n)++;
    }
    closedir(d);
    return rc;
}

struct cairn_pg_session {
    PGconn *c;
    int v;
    int started;
    char pgdata[PATH_MAX];
    uint64_t start_lsn, stop_lsn;
    uint32_t timeline;
    char system_id[CAIRN_WAL_SYSID_MAX];
};

int cairn_pg_session_start(const char *const *keywords, const char *const *values,
                           const char *pgdata, const char *label, json_t *pg,
                           cairn_pg_session **out, cairn_err *err)
{
    cairn_pg_session *s;
    PGresult *q = NULL;
    char sysid_s[32], tl[32], start_lsn[32], lbl[256], ts[64];
    uint64_t ctl_sysid = 0, segsize = 0;
    int64_t start_ns;
    int rc, v;

    *out = NULL;
    {
        char p[PATH_MAX];
        struct stat st;
        snprintf(p, sizeof p, "%s/PG_VERSION", pgdata);
        if (stat(p, &st) != 0)
            return cairn_error(err, CAIRN_FAILED,
                               "'%s' is not a PostgreSQL data directory (no PG_VERSION): %s",
                               pgdata, strerror(errno));
    }
    if ((rc = cairn_pg_control_sysid(pgdata, &ctl_sysid, err)) != CAIRN_OK)
        return rc;
    if ((rc = cairn_pq_load(err)) != CAIRN_OK)
        return rc;
    if (!(s = calloc(1, sizeof *s)))
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    snprintf(s->pgdata, sizeof s->pgdata, "%s", pgdata);
    s->c = PQconnectdbParams(keywords, values, 1);
    if (!s->c || PQstatus(s->c) != CONNECTION_OK) {
        rc = pq_fail(err, s->c, NULL, "cannot connect");
        goto fail;
    }
    v = s->v = PQserverVersion(s->c);
    if (v < 100000) {
        rc = cairn_error(err, CAIRN_FAILED,
                         "PostgreSQL %d.%d is too old for a base backup (10 or later is needed)",
                         v / 10000, v / 100 % 100);
        goto fail;
    }
    if (!(q = query1(s->c,
                     "SELECT s.system_identifier::text, c.timeline_id::text,"
                     " current_setting('archive_mode'),"
                     " (SELECT setting::bigint * CASE unit WHEN '8kB' THEN 8192 WHEN 'kB' THEN"
                     " 1024 WHEN 'MB' THEN 1048576 ELSE 1 END FROM pg_settings"
                     " WHERE name = 'wal_segment_size')::text"
                     " FROM pg_control_system() s, pg_control_checkpoint() c",
                     0, NULL, "cannot read the cluster's identity", err))) {
        rc = err->code;
        goto fail;
    }
    snprintf(sysid_s, sizeof sysid_s, "%s", PQgetvalue(q, 0, 0));
    snprintf(tl, sizeof tl, "%s", PQgetvalue(q, 0, 1));
    if (strcmp(PQgetvalue(q, 0, 2), "on") != 0 && strcmp(PQgetvalue(q, 0, 2), "always") != 0) {
        rc = cairn_error(err, CAIRN_FAILED,
                         "WAL archiving is off on the server (archive_mode = %s): a base backup "
                         "cannot be restored without its WAL; set archive_mode = on and "
                         "archive_command = 'cairn wal-push %%p' (docs/postgresql.md)",
                         PQgetvalue(q, 0, 2));
        goto fail;
    }
    segsize = strtoull(PQgetvalue(q, 0, 3), NULL, 10);
    PQclear(q);
    q = NULL;
    if (strtoull(sysid_s, NULL, 10) != ctl_sysid) {
        rc = cairn_error(err, CAIRN_FAILED,
                         "the data directory '%s' belongs to system %" PRIu64 ", but the server "
                         "connected to is system %s: give the data directory of that server",
                         pgdata, ctl_sysid, sysid_s);
        goto fail;
    }
    snprintf(s->system_id, sizeof s->system_id, "%.23s", sysid_s);
    s->timeline = (uint32_t)strtoul(tl, NULL, 10);
    cairn_format_time(cairn_now_ns(), ts, sizeof ts);
    if (label)
        snprintf(lbl, sizeof lbl, "%s", label);
    else
        snprintf(lbl, sizeof lbl, "cairn %s", ts);
    {
        const char *params[1] = {lbl};
        q = query1(s->c,
                   v >= 150000
                       ? "SELECT pg_backup_start($1, true)::text,"
                         " (extract(epoch from clock_timestamp()) * 1000000)::bigint::text"
                       : "SELECT pg_start_backup($1, true, false)::text,"
                         " (extract(epoch from clock_timestamp()) * 1000000)::bigint::text",
                   1, params, "cannot start the backup", err);
        if (!q) {
            rc = err->code;
            goto fail;
        }
    }
    s->started = 1;
    snprintf(start_lsn, sizeof start_lsn, "%s", PQgetvalue(q, 0, 0));
    start_ns = strtoll(PQgetvalue(q, 0, 1), NULL, 10) * 1000;
    PQclear(q);
    q = NULL;
    if (cairn_pg_lsn_parse(start_lsn, &s->start_lsn) != 0) {
        rc = cairn_error(err, CAIRN_FAILED, "PostgreSQL returned a bad start LSN '%s'", start_lsn);
        goto fail;
    }
    json_object_set_new(pg, "system_id", json_string(sysid_s));
    json_object_set_new(pg, "timeline", json_integer(s->timeline));
    json_object_set_new(pg, "start_lsn", json_string(start_lsn));
    json_object_set_new(pg, "start_time_ns", json_integer(start_ns));
    json_object_set_new(pg, "server_version", json_integer(v));
    json_object_set_new(pg, "segment_size", json_integer((json_int_t)segsize));
    json_object_set_new(pg, "label", json_string(lbl));
    json_object_set_new(pg, "pgdata", json_string(pgdata));
    *out = s;
    return CAIRN_OK;
fail:
    if (q)
        PQclear(q);
    cairn_pg_session_free(s);
    return rc;
}

int cairn_pg_session_stop(cairn_pg_session *s, json_t *pg, cairn_err *err)
{
    PGresult *q;
    char stop_lsn[64], line[64];
    int64_t stop_ns;
    q = PQexecParams(s->c,
                     s->v >= 150000
                         ? "SELECT lsn::text, labelfile, spcmapfile,"
                           " (extract(epoch from clock_timestamp()) * 1000000)::bigint::text"
                           " FROM pg_backup_stop(true)"
                         : "SELECT lsn::text, labelfile, spcmapfile,"
                           " (extract(epoch from clock_timestamp()) * 1000000)::bigint::text"
                           " FROM pg_stop_backup(false, true)",
                     0, NULL, NULL, NULL, NULL, 0);
    if (!q || PQresultStatus(q) != PGRES_TUPLES_OK || PQntuples(q) != 1)
        return pq_fail(err, s->c, q, "cannot stop the backup (no snapshot was recorded)");
    s->started = 0;
    snprintf(stop_lsn, sizeof stop_lsn, "%s", PQgetvalue(q, 0, 0));
    stop_ns = strtoll(PQgetvalue(q, 0, 3), NULL, 10) * 1000;
    if (cairn_pg_lsn_parse(stop_lsn, &s->stop_lsn) != 0) {
        PQclear(q);
        return cairn_error(err, CAIRN_FAILED, "PostgreSQL returned a bad stop position '%s'",
                           stop_lsn);
    }
    if (label_line(PQgetvalue(q, 0, 1), "START TIMELINE:", line, sizeof line) == 0)
        s->timeline = (uint32_t)strtoul(line, NULL, 10);
    json_object_set_new(pg, "timeline", json_integer(s->timeline));
    json_object_set_new(pg, "stop_lsn", json_string(stop_lsn));
    json_object_set_new(pg, "stop_time_ns", json_integer(stop_ns));
    json_object_set_new(pg, "backup_label", json_string(PQgetvalue(q, 0, 1)));
    json_object_set_new(pg, "tablespace_map",
                        json_string(PQgetisnull(q, 0, 2) ? "" : PQgetvalue(q, 0, 2)));
    PQclear(q);
    return CAIRN_OK;
}

void cairn_pg_session_free(cairn_pg_session *s)
{
    if (!s)
        return;
    if (s->c) /* an unfinished backup ends with its session */
        PQfinish(s->c);
    free(s);
}

void cairn_pg_session_info(const cairn_pg_session *s, struct cairn_pg_backup_result *res)
{
    snprintf(res->system_id, sizeof res->system_id, "%s", s->system_id);
    res->timeline = s->timeline;
    res->start_lsn = s->start_lsn;
    res->stop_lsn = s->stop_lsn;
    res->server_version = s->v;
}

const char *const *cairn_pg_backup_excludes(size_t *n)
{
    *n = sizeof excludes / sizeof *excludes;
    return excludes;
}

struct stop_ctx {
    cairn_pg_session *s;
    const char *pgdata;
};

/* before_manifest: every byte is stored; stop the backup and put its labels
 * into the manifest. */
static int stop_backup(void *arg, json_t *man, cairn_err *err)
{
    struct stop_ctx *x = arg;
    json_t *pg = json_object_get(man, "postgres");
    int rc;
    if (!pg)
        return cairn_error(err, CAIRN_FATAL, "the manifest has no 'postgres' section");
    if (json_is_true(json_object_get(man, "partial")))
        return cairn_error(err, CAIRN_FAILED,
                           "%lld files of '%s' could not be read (named above): a base backup "
                           "with missing files is not usable, so none was recorded",
                           (long long)json_integer_value(json_object_get(man, "error_count")),
                           x->pgdata);
    if ((rc = cairn_pg_session_stop(x->s, pg, err)) != CAIRN_OK)
        return rc;
    {
        char t1[64];
        int64_t now = cairn_now_ns();
        cairn_format_time(now, t1, sizeof t1);
        json_object_set_new(man, "end_time", json_string(t1));
        json_object_set_new(man, "end_ns", json_integer(now));
    }
    return CAIRN_OK;
}

int cairn_pg_backup(cairn_repo *r, const struct cairn_pg_backup_opts *o,
                    struct cairn_pg_backup_result *res, cairn_err *err)
{
    cairn_pg_session *sess = NULL;
    struct cairn_backup_opts bo;
    json_t *extra = NULL, *pg;
    char source[128], pg_real[PATH_MAX];
    struct tsinfo tsp[MAX_TS];
    size_t n_ts = 0, i;
    const char *paths[MAX_TS + 1];
    char **xs = NULL;
    size_t n_xs = 0;
    int rc;

    memset(res, 0, sizeof *res);
    if (!o->pgdata || !o->dsn)
        return cairn_error(err, CAIRN_FAILED, "backup-pg needs --pgdata and --dsn");
    extra = json_object();
    pg = json_object();
    if (!extra || !pg || json_object_set_new(extra, "postgres", pg) != 0) {
        json_decref(extra);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    {
        const char *kw[2] = {"dbname", NULL}, *val[2] = {o->dsn, NULL};
        if ((rc = cairn_pg_session_start(kw, val, o->pgdata, o->label, pg, &sess, err)) !=
            CAIRN_OK)
            goto out;
    }
    cairn_pg_session_info(sess, res);
    if (!realpath(o->pgdata, pg_real)) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot resolve '%s': %s", o->pgdata,
                         strerror(errno));
        goto out;
    }
    if ((rc = list_tablespaces(o->pgdata, pg_real, tsp, &n_ts, err)) != CAIRN_OK)
        goto out;
    if (o->source)
        snprintf(source, sizeof source, "%s", o->source);
    else
        snprintf(source, sizeof source, "postgres:%s", res->system_id);
    if (n_ts) {
        /* several roots: the snapshot holds <pgdata name>/ and one directory
         * per tablespace, each under its name; the excludes that name a path
         * get the data directory's name in front */
        json_t *arr = json_array();
        json_object_set_new(pg, "pgdata_root", json_string(base_of(pg_real)));
        for (i = 0; i < n_ts; i++)
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "oid", tsp[i].oid,
                                                 "location", tsp[i].location, "root",
                                                 tsp[i].root));
        json_object_set_new(pg, "tablespaces", arr);
        paths[0] = pg_real;
        for (i = 0; i < n_ts; i++)
            paths[i + 1] = tsp[i].location;
        if (!(xs = calloc(sizeof excludes / sizeof *excludes, sizeof *xs))) {
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
            goto out;
        }
        for (i = 0; i < sizeof excludes / sizeof *excludes; i++) {
            if (strchr(excludes[i], '/')) {
                if (asprintf(&xs[n_xs], "%s/%s", base_of(pg_real), excludes[i]) < 0) {
                    xs[n_xs] = NULL;
                    rc = cairn_error(err, CAIRN_FATAL, "out of memory");
                    goto out;
                }
            } else if (!(xs[n_xs] = strdup(excludes[i]))) {
                rc = cairn_error(err, CAIRN_FATAL, "out of memory");
                goto out;
            }
            n_xs++;
        }
    }

    memset(&bo, 0, sizeof bo);
    bo.paths = n_ts ? paths : &o->pgdata;
    bo.n_paths = 1 + n_ts;
    bo.source = source;
    bo.tags = o->tags;
    bo.n_tags = o->n_tags;
    bo.excludes = n_ts ? (const char *const *)xs : excludes;
    bo.n_excludes = sizeof excludes / sizeof *excludes;
    bo.workers = o->workers;
    bo.consistency = "app";
    bo.extra = extra;
    bo.warn = o->warn;
    bo.warn_arg = o->warn_arg;
    bo.progress = o->progress;
    bo.progress_arg = o->progress_arg;
    {
        struct stop_ctx sx = {sess, o->pgdata};
        bo.before_manifest = stop_backup;
        bo.before_manifest_arg = &sx;
        /* on any failure the session's end aborts the server-side backup */
        if ((rc = cairn_backup_run(r, &bo, &res->backup, err)) != CAIRN_OK)
            goto out;
    }
    cairn_pg_session_info(sess, res);
    rc = CAIRN_OK;
out:
    for (i = 0; i < n_ts; i++)
        free(tsp[i].location);
    for (i = 0; xs && i < n_xs; i++)
        free(xs[i]);
    free(xs);
    cairn_pg_session_free(sess);
    json_decref(extra);
    return rc;
}

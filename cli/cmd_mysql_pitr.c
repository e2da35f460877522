/* cli/cmd_mysql_pitr.c — MariaDB base backups and point-in-time restore:
 * backup-mysql, mysql-backups, restore-mysql. See docs/mysql.md. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../agent/mysql_pitr.h"
#include "../engine/lock.h"
#include "cli.h"

int cmd_backup_mysql(struct cli *c, int argc, char **argv)
{
    const char *defaults = NULL, *datadir = NULL, *source = NULL, *workers = NULL;
    const char **tags = NULL;
    size_t ntags = 0;
    struct opt opts[] = {
        {"defaults-file", 1, 0, &defaults, NULL, NULL, NULL},
        {"datadir", 1, 0, &datadir, NULL, NULL, NULL},
        {"source", 1, 0, &source, NULL, NULL, NULL},
        {"tag", 1, 1, NULL, &tags, &ntags, NULL},
        {"workers", 1, 0, &workers, NULL, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, NULL},
    };
    struct cairn_my_backup_opts bo;
    struct cairn_my_backup_result res;
    cairn_repo *repo = NULL;
    cairn_err err;
    int rc = cli_parse(c, argc, argv, opts,
                       "cairn backup-mysql --defaults-file FILE [--datadir DIR] [--tag T]... "
                       "[--source NAME] [--json]");
    if (rc)
        goto out;
    if (!defaults || c->nargs) {
        cli_error("usage: cairn backup-mysql --defaults-file FILE [--datadir DIR] (connection "
                  "settings only come from the defaults file)");
        rc = EXIT_USAGE;
        goto out;
    }
    if ((rc = cli_open_repo(c, &repo)) != 0)
        goto out;
    memset(&bo, 0, sizeof bo);
    bo.defaults_file = defaults;
    bo.datadir = datadir;
    bo.source = source;
    bo.tags = tags;
    bo.n_tags = ntags;
    bo.workers = workers ? atoi(workers) : 0;
    if (c->progress && !c->quiet) {
        bo.progress = cli_backup_progress_cb;
        bo.progress_arg = c;
    }
    cairn_err_clear(&err);
    if (cairn_my_backup(repo, &bo, &res, &err) != CAIRN_OK) {
        cli_progress(c, "", 0);
        cli_error("backup-mysql failed: %s", err.msg);
        rc = EXIT_ERR;
        goto out;
    }
    cli_progress(c, "", 0);
    if (!c->quiet) {
        char r[32], n[32], s[32];
        cairn_format_size(res.backup.bytes_read, r, sizeof r);
        cairn_format_size(res.backup.bytes_new, n, sizeof n);
        cairn_format_size(res.backup.bytes_stored, s, sizeof s);
        fprintf(stderr,
                "snapshot %.12s: MariaDB base backup of server %s (%s), binlog %s:%" PRIu64
                ", GTID %s; %s streamed, %s new, %s stored, %.1fs\n",
                res.backup.id, res.base.server, res.base.server_version, res.base.binlog_file,
                res.base.binlog_pos, res.base.gtid[0] ? res.base.gtid : "-", r, n, s,
                res.backup.duration);
    }
    if (c->json)
        cli_print_json(json_pack(
            "{s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:f, s:s}", "id", res.backup.id,
            "server", res.base.server, "server_version", res.base.server_version, "binlog_file",
            res.base.binlog_file, "binlog_pos", (json_int_t)res.base.binlog_pos, "gtid",
            res.base.gtid, "bytes_read", (json_int_t)res.backup.bytes_read, "bytes_new",
            (json_int_t)res.backup.bytes_new, "bytes_stored",
            (json_int_t)res.backup.bytes_stored, "duration", res.backup.duration,
            "coordinates_from",
            res.coords_from_stream ? "xtrabackup_binlog_info" : "mariabackup log"));
    else
        printf("%s\n", res.backup.id);
    rc = EXIT_OK;
out:
    cairn_repo_free(repo);
    free(tags);
    return rc;
}

struct list_ctx {
    json_t *arr;
    size_t n;
};

static int list_bb(void *arg, const struct cairn_my_basebackup *b)
{
    struct list_ctx *l = arg;
    char t[64];
    cairn_format_time(b->stop_ns, t, sizeof t);
    l->n++;
    if (l->arr)
        json_array_append_new(
            l->arr, json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:I}", "snapshot",
                              b->snapshot, "server", b->server, "server_version",
                              b->server_version, "binlog_file", b->binlog_file, "binlog_pos",
                              (json_int_t)b->binlog_pos, "gtid", b->gtid, "start_ns",
                              (json_int_t)b->start_ns, "stop_ns", (json_int_t)b->stop_ns));
    else
        printf("%.12s  server %s  %s  %s:%" PRIu64 "  GTID %s\n", b->snapshot, b->server, t,
               b->binlog_file, b->binlog_pos, b->gtid[0] ? b->gtid : "-");
    return 0;
}

int cmd_mysql_backups(struct cli *c, int argc, char **argv)
{
    const char *server = NULL;
    struct opt opts[] = {{"server", 1, 0, &server, NULL, NULL, NULL},
                         {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    struct list_ctx l = {NULL, 0};
    cairn_repo *repo = NULL;
    cairn_err err;
    int rc = cli_parse(c, argc, argv, opts, "cairn mysql-backups [--server ID] [--json]");
    if (rc)
        return rc;
    if ((rc = cli_open_repo(c, &repo)) != 0)
        return rc;
    if (c->json)
        l.arr = json_array();
    cairn_err_clear(&err);
    rc = cairn_my_basebackup_list(cairn_repo_catalog(repo), server, list_bb, &l, &err);
    cairn_repo_free(repo);
    if (rc != CAIRN_OK) {
        json_decref(l.arr);
        cli_error("%s", err.msg);
        return EXIT_ERR;
    }
    if (l.arr)
        cli_print_json(l.arr);
    else if (!l.n && !c->quiet)
        fprintf(stderr, "no MariaDB base backups (make one with 'cairn backup-mysql')\n");
    return EXIT_OK;
}

static void on_info(void *arg, const char *msg)
{
    struct cli *c = arg;
    if (!c->quiet)
        fprintf(stderr, "cairn: %s\n", msg);
}

int cmd_restore_mysql(struct cli *c, int argc, char **argv)
{
    const char *target = NULL, *to_time = NULL, *to_pos = NULL, *to_gtid = NULL, *server = NULL,
               *from = NULL, *user = NULL, *stop_timeout = NULL;
    int latest = 0, nt;
    struct opt opts[] = {
        {"target", 1, 0, &target, NULL, NULL, NULL},
        {"to-time", 1, 0, &to_time, NULL, NULL, NULL},
        {"to-position", 1, 0, &to_pos, NULL, NULL, NULL},
        {"to-gtid", 1, 0, &to_gtid, NULL, NULL, NULL},
        {"latest", 0, 0, NULL, NULL, NULL, &latest},
        {"server", 1, 0, &server, NULL, NULL, NULL},
        {"from", 1, 0, &from, NULL, NULL, NULL},
        {"user", 1, 0, &user, NULL, NULL, NULL},
        {"stop-timeout", 1, 0, &stop_timeout, NULL, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, NULL},
    };
    const char *usage = "cairn restore-mysql --target DIR (--to-time T | --to-position FILE:POS "
                        "| --to-gtid D-S-N | --latest) [--server ID] [--from SNAPSHOT] "
                        "[--user USER] [--stop-timeout DURATION]";
    int64_t stop_s = 0;
    struct cairn_my_target t;
    struct cairn_my_restore_opts ro;
    struct cairn_my_restore_result res;
    struct cairn_lock *lease = NULL;
    cairn_repo *repo = NULL;
    cairn_err err;
    int rc = cli_parse(c, argc, argv, opts, usage);
    if (rc)
        return rc;
    nt = !!to_time + !!to_pos + !!to_gtid + !!latest;
    if (!target || nt != 1 || c->nargs) {
        cli_error("usage: %s", usage);
        return EXIT_USAGE;
    }
    if (stop_timeout && (rc = cli_duration("stop-timeout", stop_timeout, 1, &stop_s)) != EXIT_OK)
        return rc;
    if (stop_s > 86400)
        stop_s = 86400;
    memset(&t, 0, sizeof t);
    if (to_time) {
        t.kind = CAIRN_MY_TARGET_TIME;
        if (cairn_parse_time(to_time, &t.time_ns) != CAIRN_OK) {
            cli_error("--to-time: cannot parse '%s' (use e.g. '2026-11-21 10:42:00' (UTC) or "
                      "'2026-11-21T12:42:00+02:00')",
                      to_time);
            return EXIT_USAGE;
        }
    } else if (to_pos && cairn_my_target_position(to_pos, &t) != 0) {
        cli_error("--to-position: '%s' is not FILE:POS (e.g. binlog.000042:1234)", to_pos);
        return EXIT_USAGE;
    } else if (to_gtid && cairn_my_target_gtid(to_gtid, &t) != 0) {
        cli_error("--to-gtid: '%s' is not a MariaDB GTID (domain-server-sequence, e.g. 0-1-42)",
                  to_gtid);
        return EXIT_USAGE;
    } else if (latest) {
        t.kind = CAIRN_MY_TARGET_LATEST;
    }
    if ((rc = cli_open_repo(c, &repo)) != 0)
        return rc;
    if ((rc = cli_read_lease(repo, "restore-mysql", &lease)) != 0) {
        cairn_repo_free(repo);
        return rc;
    }
    memset(&ro, 0, sizeof ro);
    ro.target_dir = target;
    ro.server = server;
    ro.snapshot = from;
    ro.user = user;
    ro.stop_timeout_s = (int)stop_s;
    ro.info = on_info;
    ro.info_arg = c;
    cairn_err_clear(&err);
    rc = cairn_my_restore(repo, &t, &ro, &res, &err);
    cairn_lock_release(lease, NULL);
    cairn_repo_free(repo);
    if (rc != CAIRN_OK) {
        cli_error("restore-mysql: %s", err.msg);
        return EXIT_ERR;
    }
    if (c->json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:s, s:s}", "target", target,
                              "base", res.base.snapshot, "first_file", res.first_file,
                              "files", (json_int_t)res.files, "stop_file", res.stop_file,
                              "stop_pos", (json_int_t)res.stop_pos, "transactions",
                              (json_int_t)res.transactions, "last_gtid", res.last_gtid,
                              "gtid_pos", res.gtid_pos);
        if (res.has_last) {
            char ts[64];
            cairn_format_time(res.last_commit_ns, ts, sizeof ts);
            json_object_set_new(o, "last_commit", json_string(ts));
        }
        cli_print_json(o);
    }
    if (!c->quiet) {
        char ts[64] = "-";
        if (res.has_last)
            cairn_format_time(res.last_commit_ns, ts, sizeof ts);
        fprintf(stderr,
                "cairn: restored base backup %.12s into '%s' and replayed %" PRIu64
                " transaction(s) up to %s:%" PRIu64 " (last commit %s, GTID %s)\n"
                "cairn: start it with:\n"
                "  mariadbd --no-defaults%s%s --datadir=%s --socket=... --port=...\n"
                "cairn: binary logging starts empty there; GTID position reached: %s (for a "
                "replica: SET GLOBAL gtid_slave_pos = '%s')\n",
                res.base.snapshot, target, res.transactions, res.stop_file, res.stop_pos, ts,
                res.last_gtid[0] ? res.last_gtid : "-", res.user[0] ? " --user=" : "",
                res.user, target, res.gtid_pos[0] ? res.gtid_pos : "-", res.gtid_pos);
    }
    return EXIT_OK;
}

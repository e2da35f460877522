/* cli/cmd_mysql.c — MariaDB/MySQL binlogs: binlog-push, binlog-stream,
 * binlog-fetch, binlog-list, binlog-verify, binlog-forget. See docs/mysql.md. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "../agent/mysql.h"
#include "cli.h"

static int parse_level(const char *s, int *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < 1 || v > 19)
        return -1;
    *out = (int)v;
    return 0;
}

static int need_repo(struct cli *c)
{
    if (!c->repo || !*c->repo) {
        cli_error("no repository given (use --repo PATH or set CAIRN_REPO)");
        return EXIT_USAGE;
    }
    return 0;
}

/* Asks the server (through the mariadb client and a defaults file, so no
 * password is on any command line) whether binary logging is on and where
 * its index is. 0, or prints and returns an exit code. */
static int ask_server(const char *defaults, char *index, size_t n)
{
    cairn_buf out = CAIRN_BUF_INIT;
    cairn_err err;
    char *tab, *nl, *text;
    cairn_err_clear(&err);
    if (cairn_my_client_query(defaults, "SELECT @@log_bin, @@log_bin_index", &out, &err) !=
        CAIRN_OK) {
        cli_error("--defaults-file: %s", err.msg);
        cairn_buf_free(&out);
        return EXIT_ERR;
    }
    text = (char *)cairn_buf_cstr(&out);
    if (!(tab = strchr(text, '\t'))) {
        cli_error("--defaults-file '%s': unexpected answer from the server", defaults);
        cairn_buf_free(&out);
        return EXIT_ERR;
    }
    *tab = 0;
    if (strcmp(text, "1") != 0) {
        cli_error("binary logging is disabled on the server (start it with --log-bin): "
                  "there are no binlogs to ship");
        cairn_buf_free(&out);
        return EXIT_ERR;
    }
    if ((nl = strchr(tab + 1, '\n')) != NULL)
        *nl = 0;
    if (strcmp(tab + 1, "NULL") != 0 && tab[1])
        snprintf(index, n, "%s", tab + 1);
    cairn_buf_free(&out);
    return 0;
}

struct push_ctx {
    struct cli *c;
    json_t *arr;
};

static void on_pushed(void *arg, const struct cairn_my_push_result *r)
{
    struct push_ctx *p = arg;
    char t1[64] = "", t2[64] = "";
    if (r->meta.has_times) {
        cairn_format_time(r->meta.first_event_ns, t1, sizeof t1);
        cairn_format_time(r->meta.last_event_ns, t2, sizeof t2);
    }
    if (p->arr) {
        json_array_append_new(
            p->arr, json_pack("{s:s, s:s, s:s, s:b, s:I, s:I, s:I, s:s}", "name", r->meta.name,
                              "server", r->meta.server, "key", r->key, "already", r->already,
                              "size", (json_int_t)r->meta.size, "start_pos",
                              (json_int_t)r->meta.start_pos, "end_pos",
                              (json_int_t)r->meta.end_pos, "gtids", r->meta.gtids));
        return;
    }
    if (p->c->quiet)
        return;
    printf("%s %s  server %s  %" PRIu64 " bytes  pos %" PRIu64 "..%" PRIu64 "  %s .. %s%s%s\n",
           r->already ? "already" : "shipped", r->meta.name, r->meta.server, r->meta.size,
           r->meta.start_pos, r->meta.end_pos, t1, t2, r->meta.gtids[0] ? "  gtids " : "",
           r->meta.gtids);
}

int cmd_binlog_push(struct cli *c, int argc, char **argv)
{
    const char *defaults = NULL, *index = NULL, *server = NULL, *level = NULL;
    struct opt opts[] = {
        {"defaults-file", 1, 0, &defaults, NULL, NULL, NULL},
        {"index", 1, 0, &index, NULL, NULL, NULL},
        {"server", 1, 0, &server, NULL, NULL, NULL},
        {"level", 1, 0, &level, NULL, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, NULL},
    };
    char asked[PATH_MAX] = "";
    struct cairn_my_push_stats st;
    struct push_ctx pc = {c, NULL};
    cairn_pg_archive *a = NULL;
    cairn_err err;
    int lv = 0;
    int rc = cli_parse(c, argc, argv, opts,
                       "cairn binlog-push [--defaults-file FILE] [--index FILE] [--server ID] "
                       "[--level 1..19] DATADIR");
    if (rc)
        return rc;
    if (c->nargs != 1) {
        cli_error("usage: cairn binlog-push [--defaults-file FILE] DATADIR");
        return EXIT_USAGE;
    }
    if ((rc = need_repo(c)) != 0)
        return rc;
    if (level && parse_level(level, &lv) != 0) {
        cli_error("--level takes 1..19, not '%s'", level);
        return EXIT_USAGE;
    }
    if (defaults && !index) {
        if ((rc = ask_server(defaults, asked, sizeof asked)) != 0)
            return rc;
        if (asked[0] == '/') {
            index = asked;
        } else if (asked[0]) { /* relative to the data directory */
            char *j = cairn_path_join(c->args[0], asked);
            if (j)
                snprintf(asked, sizeof asked, "%s", j);
            free(j);
            index = asked;
        }
    }
    cairn_err_clear(&err);
    if (cairn_pg_archive_open(c->repo, &c->store, c->catalog, 1, &a, &err) != CAIRN_OK) {
        cli_error("binlog-push: %s", err.msg);
        return EXIT_ERR;
    }
    if (c->json)
        pc.arr = json_array();
    rc = cairn_my_binlog_push_dir(a, c->args[0], index, server, lv, on_pushed, &pc, &st, &err);
    cairn_pg_archive_free(a);
    if (pc.arr) {
        json_t *o = json_pack("{s:o, s:s, s:b}", "files", pc.arr, "active", st.active, "ok",
                              rc == CAIRN_OK);
        cli_print_json(o);
    }
    if (rc != CAIRN_OK) {
        cli_error("binlog-push: %s", err.msg);
        if (st.files)
            cli_warn("%" PRIu64 " earlier file(s) were archived; nothing after the failed one "
                     "was shipped",
                     st.files);
        return EXIT_ERR;
    }
    if (!c->quiet)
        fprintf(stderr,
                "cairn: %" PRIu64 " binlog file(s) shipped, %" PRIu64
                " already archived; %s%s%s\n",
                st.pushed, st.already, st.active[0] ? "the active file " : "no binlog files",
                st.active, st.active[0] ? " is left for a later run" : "");
    return EXIT_OK;
}

static volatile int stream_stop;

static void on_stop_signal(int sig)
{
    (void)sig;
    stream_stop = 1;
}

static void stream_log(void *arg, const char *msg)
{
    char ts[64];
    (void)arg;
    cairn_format_time(cairn_now_ns(), ts, sizeof ts);
    fprintf(stderr, "%.19sZ cairn binlog-stream: %s\n", ts, msg);
    fflush(stderr);
}

static void stream_shipped(void *arg, const struct cairn_my_push_result *r, int partial)
{
    struct push_ctx *p = arg;
    if (partial) {
        if (!p->c->quiet) {
            printf("partial %s  server %s  %" PRIu64 " bytes (events up to position %" PRIu64
                   ")\n",
                   r->meta.name, r->meta.server, r->meta.size, r->meta.end_pos);
            fflush(stdout);
        }
        return;
    }
    on_pushed(arg, r);
    fflush(stdout);
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || !*s || *s == '-' || v > max)
        return -1;
    *out = v;
    return 0;
}

int cmd_binlog_stream(struct cli *c, int argc, char **argv)
{
    const char *defaults = NULL, *spool = NULL, *server = NULL, *sid = NULL, *flush = NULL,
               *level = NULL;
    struct opt opts[] = {
        {"defaults-file", 1, 0, &defaults, NULL, NULL, NULL},
        {"spool", 1, 0, &spool, NULL, NULL, NULL},
        {"server", 1, 0, &server, NULL, NULL, NULL},
        {"server-id", 1, 0, &sid, NULL, NULL, NULL},
        {"flush-interval", 1, 0, &flush, NULL, NULL, NULL},
        {"level", 1, 0, &level, NULL, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, NULL},
    };
    struct cairn_my_stream_opts so;
    struct cairn_my_stream_stats st;
    struct push_ctx pc = {c, NULL};
    struct sigaction sa;
    cairn_pg_archive *a = NULL;
    char defspool[PATH_MAX];
    unsigned long v;
    cairn_err err;
    int lv = 0;
    int rc = cli_parse(c, argc, argv, opts,
                       "cairn binlog-stream --defaults-file FILE [--spool DIR] [--server ID] "
                       "[--server-id N] [--flush-interval SECONDS] [--level 1..19]");
    if (rc)
        return rc;
    if (!defaults || c->nargs) {
        cli_error("usage: cairn binlog-stream --defaults-file FILE [--spool DIR] "
                  "[--server-id N] [--flush-interval SECONDS]");
        return EXIT_USAGE;
    }
    if ((rc = need_repo(c)) != 0)
        return rc;
    memset(&so, 0, sizeof so);
    if (level && parse_level(level, &lv) != 0) {
        cli_error("--level takes 1..19, not '%s'", level);
        return EXIT_USAGE;
    }
    if (sid) {
        if (parse_uint(sid, 4294967295ul, &v) != 0 || v == 0) {
            cli_error("--server-id takes 1..4294967295 (a replication client id no other "
                      "replica uses), not '%s'",
                      sid);
            return EXIT_USAGE;
        }
        so.client_server_id = (uint32_t)v;
    }
    if (flush) {
        if (parse_uint(flush, 86400, &v) != 0 || v == 0) {
            cli_error("--flush-interval takes seconds, 1..86400, not '%s'", flush);
            return EXIT_USAGE;
        }
        so.flush_interval = (unsigned)v;
    }
    if (!spool) {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && *xdg)
            snprintf(defspool, sizeof defspool, "%s/cairn/binlog-spool", xdg);
        else
            snprintf(defspool, sizeof defspool, "%s/.cache/cairn/binlog-spool",
                     home && *home ? home : "/tmp");
        spool = defspool;
    }
    so.defaults_file = defaults;
    so.spool = spool;
    so.server = server;
    so.level = lv;
    so.binlog_cmd = getenv("CAIRN_MARIADB_BINLOG");
    so.stop = &stream_stop;
    so.log = c->quiet ? NULL : stream_log;
    so.shipped = stream_shipped;
    so.arg = &pc;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    cairn_err_clear(&err);
    if (cairn_pg_archive_open(c->repo, &c->store, c->catalog, 1, &a, &err) != CAIRN_OK) {
        cli_error("binlog-stream: %s", err.msg);
        return EXIT_ERR;
    }
    rc = cairn_my_binlog_stream(a, &so, &st, &err);
    cairn_pg_archive_free(a);
    if (rc != CAIRN_OK) {
        cli_error("binlog-stream: %s", err.msg);
        return EXIT_ERR;
    }
    if (!c->quiet)
        stream_log(NULL, "stopped");
    if (!c->quiet)
        fprintf(stderr,
                "cairn: binlog-stream stopped: %" PRIu64 " file(s) shipped, %" PRIu64
                " already archived, %" PRIu64 " partial object(s), %" PRIu64 " session(s)\n",
                st.shipped, st.already, st.partials, st.sessions);
    return EXIT_OK;
}

int cmd_binlog_fetch(struct cli *c, int argc, char **argv)
{
    const char *server = NULL;
    struct opt opts[] = {{"server", 1, 0, &server, NULL, NULL, NULL},
                         {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    cairn_store *s = NULL;
    cairn_err err;
    int rc = cli_parse(c, argc, argv, opts, "cairn binlog-fetch [--server ID] NAME DEST");
    if (rc)
        return rc;
    if (c->nargs != 2) {
        cli_error("usage: cairn binlog-fetch [--server ID] NAME DEST");
        return EXIT_USAGE;
    }
    if ((rc = need_repo(c)) != 0)
        return rc;
    cairn_err_clear(&err);
    /* reads config (unlocking an encrypted repository) */
    rc = cairn_repo_store_open(c->repo, &c->store, NULL, &s, &err);
    if (rc == CAIRN_OK)
        rc = cairn_my_binlog_fetch(s, server, c->args[0], c->args[1], &err);
    cairn_store_free(s);
    if (rc == CAIRN_CORRUPT) {
        cli_error("binlog-fetch: %s — NOT written to '%s'", err.msg, c->args[1]);
        return EXIT_ERR;
    }
    if (rc != CAIRN_OK) {
        cli_error("binlog-fetch: %s", err.msg);
        return EXIT_ERR;
    }
    return EXIT_OK;
}

static void print_line(void *arg, const char *msg)
{
    fprintf(arg, "%s\n", msg);
}

/* The light handle, its catalog brought in line with the store. */
static int open_synced(struct cli *c, cairn_pg_archive **a)
{
    struct cairn_my_sync_stats st;
    cairn_err err;
    int rc;
    if ((rc = need_repo(c)) != 0)
        return rc;
    cairn_err_clear(&err);
    if (cairn_pg_archive_open(c->repo, &c->store, c->catalog, 1, a, &err) != CAIRN_OK) {
        cli_error("%s", err.msg);
        return EXIT_ERR;
    }
    if (cairn_my_binlog_sync(cairn_pg_archive_store(*a), cairn_pg_archive_catalog(*a), &st,
                             &err) != CAIRN_OK) {
        cli_error("cannot read the binlog archive: %s", err.msg);
        cairn_pg_archive_free(*a);
        *a = NULL;
        return EXIT_ERR;
    }
    if (st.unreadable)
        cli_warn("%" PRIu64 " archived binlog objects have unreadable metadata (not listed)",
                 st.unreadable);
    return 0;
}

int cmd_binlog_verify(struct cli *c, int argc, char **argv)
{
    const char *server = NULL;
    int read_data = 0;
    struct opt opts[] = {{"server", 1, 0, &server, NULL, NULL, NULL},
                         {"read-data", 0, 0, NULL, NULL, NULL, &read_data},
                         {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    cairn_pg_archive *a = NULL;
    struct cairn_my_sync_stats st;
    uint64_t problems = 0, checked = 0, damaged = 0;
    cairn_err err;
    int rc = cli_parse(c, argc, argv, opts, "cairn binlog-verify [--server ID] [--read-data]");
    if (rc)
        return rc;
    if ((rc = need_repo(c)) != 0)
        return rc;
    cairn_err_clear(&err);
    if (cairn_pg_archive_open(c->repo, &c->store, c->catalog, 1, &a, &err) != CAIRN_OK) {
        cli_error("%s", err.msg);
        return EXIT_ERR;
    }
    if (cairn_my_binlog_sync(cairn_pg_archive_store(a), cairn_pg_archive_catalog(a), &st,
                             &err) != CAIRN_OK ||
        cairn_my_binlog_verify(cairn_pg_archive_catalog(a), server, print_line,
                               c->quiet ? NULL : print_line, stdout, &problems,
                               &err) != CAIRN_OK) {
        cli_error("binlog-verify could not run: %s", err.msg);
        cairn_pg_archive_free(a);
        return EXIT_ERR;
    }
    if (read_data) {
        if (cairn_my_binlog_read_all(cairn_pg_archive_store(a), cairn_pg_archive_catalog(a),
                                     server, print_line, stdout, &checked, &damaged,
                                     &err) != CAIRN_OK) {
            cli_error("binlog-verify --read-data could not run: %s", err.msg);
            cairn_pg_archive_free(a);
            return EXIT_ERR;
        }
        if (!c->quiet)
            printf("%" PRIu64 " archived binlog file(s) read back, %" PRIu64 " damaged\n",
                   checked, damaged);
        problems += damaged;
    }
    cairn_pg_archive_free(a);
    if (st.unreadable) {
        printf("%" PRIu64 " archived binlog object(s) have unreadable metadata\n",
               st.unreadable);
        problems += st.unreadable;
    }
    if (problems) {
        printf("%" PRIu64 " problem(s) found\n", problems);
        return EXIT_ERR;
    }
    printf("no problems found\n");
    return EXIT_OK;
}

struct list_ctx {
    json_t *arr;
};

static int list_row(void *arg, const struct cairn_binlogrow *r)
{
    struct list_ctx *l = arg;
    char t1[64] = "", t2[64] = "";
    if (r->has_times) {
        cairn_format_time(r->first_event_ns, t1, sizeof t1);
        cairn_format_time(r->last_event_ns, t2, sizeof t2);
    }
    if (l->arr) {
        json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s, s:s, s:s}", "server",
                              r->server_uuid, "name", r->file, "start_pos",
                              (json_int_t)r->start_pos, "end_pos", (json_int_t)r->end_pos,
                              "size", (json_int_t)r->size, "gtids", r->gtids, "checksum",
                              r->checksum, "key", r->object_key);
        if (r->has_times) {
            json_object_set_new(o, "first_event", json_string(t1));
            json_object_set_new(o, "last_event", json_string(t2));
            json_object_set_new(o, "first_event_ns", json_integer(r->first_event_ns));
            json_object_set_new(o, "last_event_ns", json_integer(r->last_event_ns));
        }
        json_array_append_new(l->arr, o);
    } else {
        printf("%s  %s  %" PRIu64 "..%" PRIu64 "  %s .. %s  %s\n", r->server_uuid, r->file,
               r->start_pos, r->end_pos, t1, t2, r->gtids);
    }
    return 0;
}

/* A partial object (binlog-stream --flush-interval): not in the catalog. */
static int list_partial(void *arg, const char *key, uint64_t size)
{
    struct list_ctx *l = arg;
    const char *name = strrchr(key, '/') + 1;
    char file[CAIRN_BINLOG_NAME_MAX];
    uint64_t end = 0;
    cairn_my_binlog_partial_name(name, file, sizeof file, &end);
    if (l->arr)
        json_array_append_new(l->arr, json_pack("{s:s, s:s, s:s, s:I, s:I, s:b}", "name", name,
                                                "file", file, "key", key, "end_pos",
                                                (json_int_t)end, "object_size",
                                                (json_int_t)size, "partial", 1));
    else
        printf("%s  (partial: %s up to position %" PRIu64 ", not in the catalog)\n", key, file,
               end);
    return 0;
}

int cmd_binlog_list(struct cli *c, int argc, char **argv)
{
    const char *server = NULL;
    int partials = 0;
    struct opt opts[] = {{"server", 1, 0, &server, NULL, NULL, NULL},
                         {"partial", 0, 0, NULL, NULL, NULL, &partials},
                         {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    cairn_pg_archive *a = NULL;
    struct list_ctx l = {NULL};
    cairn_err err;
    int rc = cli_parse(c, argc, argv, opts, "cairn binlog-list [--server ID] [--partial] [--json]");
    if (rc)
        return rc;
    if ((rc = open_synced(c, &a)) != 0)
        return rc;
    if (c->json)
        l.arr = json_array();
    cairn_err_clear(&err);
    rc = cairn_catalog_binlog_list(cairn_pg_archive_catalog(a), server, list_row, &l, &err);
    if (rc == CAIRN_OK && partials)
        rc = cairn_my_binlog_partials_list(cairn_pg_archive_store(a), server, list_partial, &l,
                                           &err);
    cairn_pg_archive_free(a);
    if (rc != CAIRN_OK) {
        cli_error("%s", err.msg);
        json_decref(l.arr);
        return EXIT_ERR;
    }
    if (l.arr)
        cli_print_json(l.arr);
    return EXIT_OK;
}

static void forget_report(void *arg, const char *msg)
{
    (void)arg;
    printf("%s\n", msg);
}

int cmd_binlog_forget(struct cli *c, int argc, char **argv)
{
    const char *server = NULL, *before = NULL;
    int dry_run = 0;
    struct opt opts[] = {{"server", 1, 0, &server, NULL, NULL, NULL},
                         {"before", 1, 0, &before, NULL, NULL, NULL},
                         {"dry-run", 0, 0, NULL, NULL, NULL, &dry_run},
                         {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    cairn_pg_archive *a = NULL;
    struct cairn_my_forget_stats st;
    cairn_err err;
    int rc = cli_parse(c, argc, argv, opts,
                       "cairn binlog-forget --server ID --before FILE [--dry-run]");
    if (rc)
        return rc;
    if (!server || !before || c->nargs) {
        cli_error("usage: cairn binlog-forget --server ID --before FILE [--dry-run]");
        return EXIT_USAGE;
    }
    if ((rc = open_synced(c, &a)) != 0)
        return rc;
    memset(&st, 0, sizeof st);
    cairn_err_clear(&err);
    rc = cairn_my_binlog_forget(cairn_pg_archive_store(a), cairn_pg_archive_catalog(a), server,
                                before, dry_run, forget_report, NULL, &st, &err);
    cairn_pg_archive_free(a);
    if (rc != CAIRN_OK) {
        cli_error("%s", err.msg);
        return EXIT_ERR;
    }
    if (!c->quiet)
        fprintf(stderr, "%s %llu binlog file(s) of server %s before '%s'; %llu kept (newest '%s')\n",
                dry_run ? "would delete" : "deleted", (unsigned long long)st.deleted, server,
                before, (unsigned long long)st.kept, st.newest);
    return EXIT_OK;
}

/* cli/main.c — the cairn command: global options and the command table. */
#define _GNU_SOURCE
#include <locale.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"

struct command {
    const char *name;
    cmd_fn fn;
    const char *summary;
};

static const struct command commands[] = {
    {"init", cmd_init, "create a repository (--encrypt --password-file FILE: encrypted)"},
    {"key", cmd_key, "passwords of an encrypted repository: key list|add|remove"},
    {"backup", cmd_backup, "back up files and directories into a new snapshot"},
    {"snapshots", cmd_snapshots, "list snapshots"},
    {"ls", cmd_ls, "list the files of a snapshot"},
    {"diff", cmd_diff, "show what changed between two snapshots"},
    {"restore", cmd_restore, "restore a snapshot (or part of it) into a directory"},
    {"dump", cmd_dump, "write a snapshot as a tar, pax or zip archive to stdout"},
    {"check", cmd_check, "verify the repository (--read-data: every byte; --read-data-subset 3/7: a part)"},
    {"catalog", cmd_catalog, "catalog maintenance: 'catalog rebuild'"},
    {"forget", cmd_forget, "remove snapshots by a retention policy (--keep-daily 7 ...)"},
    {"prune", cmd_prune, "delete data no snapshot uses; repack partly used packs"},
    {"tag", cmd_tag, "add or remove tags of a snapshot (--add keep pins it)"},
    {"unlock", cmd_unlock, "remove stale repository locks (--list, --remove-all)"},
    {"wal-push", cmd_wal_push, "archive a PostgreSQL WAL file (archive_command)"},
    {"wal-fetch", cmd_wal_fetch, "fetch an archived WAL file (restore_command)"},
    {"wal-verify", cmd_wal_verify, "report gaps and timeline problems in the WAL archive"},
    {"wal-list", cmd_wal_list, "list archived WAL files"},
    {"backup-pg", cmd_backup_pg, "app-consistent base backup of a PostgreSQL server"},
    {"pg-backups", cmd_pg_backups, "list PostgreSQL base backups with their WAL range"},
    {"restore-pg", cmd_restore_pg, "restore PostgreSQL to a point in time"},
    {"agent", cmd_agent, "run the Kubernetes node agent (docs/agent.md)"},
    {"trigger", cmd_trigger, "request a backup now of matching PVCs (--wait for results)"},
    {"restore-pvc", cmd_restore_pvc, "restore a snapshot into a PVC of the cluster through a Job"},
    {"binlog-push", cmd_binlog_push, "ship the closed binlog files of a MariaDB/MySQL data directory"},
    {"binlog-stream", cmd_binlog_stream, "stream binlogs from a MariaDB/MySQL server continuously"},
    {"binlog-fetch", cmd_binlog_fetch, "fetch an archived binlog file, verified"},
    {"binlog-verify", cmd_binlog_verify, "report gaps in the binlog archive"},
    {"binlog-forget", cmd_binlog_forget, "delete archived binlogs before a file (--server ID --before FILE)"},
    {"binlog-list", cmd_binlog_list, "list archived binlog files"},
    {"backup-mysql", cmd_backup_mysql, "consistent MariaDB base backup (mariabackup stream)"},
    {"mysql-backups", cmd_mysql_backups, "list MariaDB base backups with their binlog coordinates"},
    {"restore-mysql", cmd_restore_mysql, "restore MariaDB to a point in time"},
    {"copy", cmd_copy, "copy snapshots into a second repository (--to URL; off-site copies)"},
};

/* Store messages (retries) go to stderr, once each. */
static void store_log(void *arg, const char *msg)
{
    (void)arg;
    fprintf(stderr, "cairn: %s\n", msg);
}

static void usage(FILE *f)
{
    size_t i;
    fprintf(f, "usage: cairn [--repo URL] [--catalog PATH] COMMAND [ARGS]\n\ncommands:\n");
    for (i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nThe repository comes from --repo or CAIRN_REPO (a path or file:///path).\n"
               "Exit codes: 0 ok, 1 error, 2 usage error, 3 partial (some files unreadable).\n"
               "See docs/user-guide.md.\n");
}

int main(int argc, char **argv)
{
    struct cli c;
    int i, cmd_at = -1;
    size_t k;
    memset(&c, 0, sizeof c);
    /* few malloc arenas: worker threads otherwise each grow their own, and
     * peak memory would follow the thread count rather than the queues */
    mallopt(M_ARENA_MAX, 2);
    mallopt(M_MMAP_THRESHOLD, 512 * 1024);
    if (sodium_init() < 0) {
        cli_error("cannot initialize libsodium");
        return EXIT_ERR;
    }
    /* libarchive converts names through the locale: use the user's, and a
     * UTF-8 one where none is set, so non-ASCII names survive tar/pax/zip */
    {
        const char *loc = setlocale(LC_ALL, "");
        if (!loc || strcmp(loc, "C") == 0 || strcmp(loc, "POSIX") == 0)
            setlocale(LC_CTYPE, "C.UTF-8");
    }
    c.prog = "cairn";
    c.store.log = store_log;
    c.repo = getenv("CAIRN_REPO");
    c.catalog = getenv("CAIRN_CATALOG");
    if (c.catalog && !*c.catalog)
        c.catalog = NULL;
    /* the command is the first argument that is not a global option (or its value) */
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--repo") == 0 || strcmp(argv[i], "--catalog") == 0 ||
            strcmp(argv[i], "-r") == 0 || strcmp(argv[i], "--connections") == 0 ||
            strcmp(argv[i], "--limit-upload") == 0 || strcmp(argv[i], "--limit-download") == 0 ||
            strcmp(argv[i], "--ca-file") == 0 || strcmp(argv[i], "--storage-class") == 0 ||
            strcmp(argv[i], "--sse") == 0 || strcmp(argv[i], "--sse-kms-key") == 0 ||
            strcmp(argv[i], "--password-file") == 0) {
            i++;
            continue;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
            strcmp(argv[i], "help") == 0) {
            usage(stdout);
            return EXIT_OK;
        }
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "version") == 0) {
            printf("cairn %s\n", CAIRN_VERSION);
            return EXIT_OK;
        }
        if (argv[i][0] == '-')
            continue;
        cmd_at = i;
        break;
    }
    if (cmd_at < 0) {
        usage(stderr);
        return EXIT_USAGE;
    }
    for (k = 0; k < sizeof commands / sizeof *commands; k++) {
        if (strcmp(commands[k].name, argv[cmd_at]) == 0) {
            /* hand the command every other argument (global options included) */
            char **rest = calloc((size_t)argc, sizeof *rest);
            int n = 0, rc;
            if (!rest) {
                cli_error("out of memory");
                return EXIT_ERR;
            }
            for (i = 1; i < argc; i++)
                if (i != cmd_at)
                    rest[n++] = argv[i];
            c.progress = isatty(2);
            rc = commands[k].fn(&c, n, rest);
            free(rest);
            free(c.args);
            return rc;
        }
    }
    cli_error("unknown command '%s' (see 'cairn --help')", argv[cmd_at]);
    return EXIT_USAGE;
}

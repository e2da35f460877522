/* cli/cli.h — shared pieces of the command-line front end: option parsing,
 * opening the repository, messages, exit codes.
 *
 * Only cli/ prints and exits. Exit codes: 0 ok, 1 error, 2 usage, 3 partial. */
#ifndef CAIRN_CLI_H
#define CAIRN_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "../engine/crypto.h"
#include "../engine/repo.h"

#define EXIT_OK 0
#define EXIT_ERR 1
#define EXIT_USAGE 2
#define EXIT_PARTIAL 3

struct cli {
    const char *prog;
    const char *repo;      /* --repo / CAIRN_REPO */
    const char *catalog;   /* --catalog / CAIRN_CATALOG */
    int json;              /* --json */
    int quiet;             /* --quiet */
    int progress;          /* stderr is a terminal and not --quiet */
    struct cairn_store_opts store; /* --connections, --limit-upload, --password-file, ... */
    /* positional arguments after the command */
    char **args;
    int nargs;
};

/* Option table for a command: name ("tag"), whether it takes a value, and
 * where values go (appended to a list when multi). */
struct opt {
    const char *name;
    int has_value;
    int multi;
    const char **value;     /* single value */
    const char ***list;     /* multi: malloc'd array */
    size_t *count;
    int *flag;
};

/* Parses argv (after the command name): global options (--repo, --catalog,
 * --json, --quiet) and the command's own; the rest are positional. Returns 0,
 * or prints a usage error and returns EXIT_USAGE. */
int cli_parse(struct cli *c, int argc, char **argv, const struct opt *opts, const char *usage);

/* Opens the repository named by --repo/CAIRN_REPO, printing the error. */
int cli_open_repo(struct cli *c, cairn_repo **out);

/* A shared lease for a reader (restore, dump, check) so that a prune does not
 * delete what it reads. Refuses (prints, EXIT_ERR) while a prune runs; goes on
 * without a lease when the repository cannot be written. *out may be NULL. */
struct cairn_lock;
int cli_read_lease(cairn_repo *repo, const char *operation, struct cairn_lock **out);

/* The value of a duration option --NAME: "90" (seconds), "90s", "5m", "24h",
 * "1d12h" into *seconds. Prints the error and returns EXIT_USAGE when it does
 * not parse, or (positive set) when it is not more than 0; else EXIT_OK. */
int cli_duration(const char *name, const char *text, int positive, int64_t *seconds);

void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Progress line on stderr (only on a terminal); done = finish with newline. */
void cli_progress(struct cli *c, const char *line, int done);

/* Callbacks for the engine (arg: the struct cli): a warning clears the progress
 * line first; a backup's progress line (files, bytes read and new, rate, ETA
 * from the expected bytes, the current path). */
void cli_warn_cb(void *arg, const char *msg);
void cli_backup_progress_cb(void *arg, uint64_t files, uint64_t bytes_read, uint64_t bytes_new,
                            uint64_t done, uint64_t expected, const char *current);

/* "12.3 MiB" per second since start, and "  ETA m:ss" when total is known. */
void cli_rate_eta(double start, uint64_t done, uint64_t total, char *rate, size_t rlen,
                  char *eta, size_t elen);

/* Prints a JSON value to stdout (and frees it). */
void cli_print_json(json_t *v);

typedef int (*cmd_fn)(struct cli *c, int argc, char **argv);
int cmd_init(struct cli *c, int argc, char **argv);
int cmd_key(struct cli *c, int argc, char **argv);
int cmd_backup(struct cli *c, int argc, char **argv);
int cmd_snapshots(struct cli *c, int argc, char **argv);
int cmd_ls(struct cli *c, int argc, char **argv);
int cmd_diff(struct cli *c, int argc, char **argv);
int cmd_restore(struct cli *c, int argc, char **argv);
int cmd_dump(struct cli *c, int argc, char **argv);
int cmd_check(struct cli *c, int argc, char **argv);
int cmd_catalog(struct cli *c, int argc, char **argv);
int cmd_forget(struct cli *c, int argc, char **argv);
int cmd_prune(struct cli *c, int argc, char **argv);
int cmd_tag(struct cli *c, int argc, char **argv);
int cmd_unlock(struct cli *c, int argc, char **argv);
int cmd_wal_push(struct cli *c, int argc, char **argv);
int cmd_wal_fetch(struct cli *c, int argc, char **argv);
int cmd_wal_verify(struct cli *c, int argc, char **argv);
int cmd_wal_list(struct cli *c, int argc, char **argv);
int cmd_backup_pg(struct cli *c, int argc, char **argv);
int cmd_pg_backups(struct cli *c, int argc, char **argv);
int cmd_restore_pg(struct cli *c, int argc, char **argv);
int cmd_agent(struct cli *c, int argc, char **argv);
int cmd_trigger(struct cli *c, int argc, char **argv);
int cmd_restore_pvc(struct cli *c, int argc, char **argv);
int cmd_binlog_push(struct cli *c, int argc, char **argv);
int cmd_binlog_stream(struct cli *c, int argc, char **argv);
int cmd_binlog_fetch(struct cli *c, int argc, char **argv);
int cmd_binlog_verify(struct cli *c, int argc, char **argv);
int cmd_binlog_forget(struct cli *c, int argc, char **argv);
int cmd_binlog_list(struct cli *c, int argc, char **argv);
int cmd_backup_mysql(struct cli *c, int argc, char **argv);
int cmd_mysql_backups(struct cli *c, int argc, char **argv);
int cmd_restore_mysql(struct cli *c, int argc, char **argv);
int cmd_copy(struct cli *c, int argc, char **argv);

#endif

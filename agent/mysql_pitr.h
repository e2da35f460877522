/* agent/mysql_pitr.h — MariaDB consistent base backups (backup-mysql) and
 * point-in-time restore (restore-mysql). See docs/mysql.md.
 *
 * It lives in agent/ next to the binlog archive (agent/mysql.h) because the
 * restore replays binlogs fetched and walked by that code, and restore/ may
 * not reach up into agent/.
 *
 * A base backup is `mariabackup --backup --stream=xbstream` read through the
 * engine as one stream (the file mariabackup.xbstream of a snapshot). Its
 * manifest has
 *   "mysql": {"server": "<binlog/<server>/ part>", "server_id": N,
 *             "server_uuid": "", "server_version": "...",
 *             "binlog_file": "binlog.000042", "binlog_pos": N, "gtid": "0-1-7",
 *             "method": "mariabackup", "stream": "mariabackup.xbstream",
 *             "start_ns": N, "stop_ns": N, "datadir": "..."}
 * so the catalog (its snapshots table keeps every manifest) knows every base
 * backup, and `catalog rebuild` restores that knowledge from the store.
 *
 * External programs (mariadb, mariabackup, mbstream, mariadbd,
 * mariadb-binlog) are found on PATH, then in /usr/sbin and /usr/bin.
 * Passwords only ever travel in the --defaults-file the caller gives.
 *
 * Ownership: structs are plain values, filled by the callee; options stay
 * the caller's. Nothing here prints or exits: errors come back in cairn_err
 * (naming the program or object that failed and, for programs, the last
 * line they wrote to stderr); progress lines go to the caller's report
 * function. Threading: one call at a time per repository handle; these
 * functions fork and wait for their own children only. */
#ifndef CAIRN_AGENT_MYSQL_PITR_H
#define CAIRN_AGENT_MYSQL_PITR_H

#include <stdint.h>
#include <sys/types.h>

#include "../engine/backup.h"
#include "mysql.h"

#define CAIRN_MY_STREAM_NAME "mariabackup.xbstream"

typedef void (*cairn_my_info_fn)(void *arg, const char *msg);

/* ---- base backups ---- */

struct cairn_my_basebackup {
    char snapshot[CAIRN_HEX_LEN + 1];
    char server[CAIRN_BINLOG_SERVER_MAX];   /* as in binlog/<server>/ */
    uint32_t server_id;
    char server_uuid[64];                   /* MySQL auto.cnf, "" for MariaDB */
    char server_version[96];
    char binlog_file[CAIRN_BINLOG_NAME_MAX];
    uint64_t binlog_pos;
    char gtid[1024];                        /* gtid_binlog_pos at the coordinates */
    char stream[256];                       /* file name of the stream in the snapshot */
    int64_t start_ns, stop_ns;              /* mariabackup started / finished */
};

/* CAIRN_NOTFOUND when the manifest is not a complete MariaDB base backup. */
int cairn_my_basebackup_parse(const char *manifest_json, const char *snapshot_id,
                              struct cairn_my_basebackup *out, cairn_err *err);
typedef int (*cairn_my_basebackup_cb)(void *arg, const struct cairn_my_basebackup *b);
/* Every complete base backup in the catalog (of server, or all), oldest first. */
int cairn_my_basebackup_list(cairn_catalog *cat, const char *server, cairn_my_basebackup_cb cb,
                             void *arg, cairn_err *err);

/* The xbstream watcher: fed the stream's bytes in order (any split), it
 * follows the chunk headers ("XBSTCK01", flags, type 'P'/'E', path, payload
 * length/offset/checksum) and keeps the first 4 KiB of the file
 * xtrabackup_binlog_info. A stream it does not understand makes it stop
 * looking (binlog_info is then NULL); it never fails the backup. */
typedef struct cairn_my_xbs cairn_my_xbs;
cairn_my_xbs *cairn_my_xbs_new(void);          /* NULL on out of memory */
void cairn_my_xbs_feed(cairn_my_xbs *x, const uint8_t *d, size_t len);
const char *cairn_my_xbs_binlog_info(const cairn_my_xbs *x); /* owned by x, or NULL */
void cairn_my_xbs_free(cairn_my_xbs *x);       /* NULL is fine */
/* "binlog.000003\t627\t0-1-2" (file, position, optional GTID state). */
int cairn_my_binlog_info_parse(const char *s, char *file, size_t nf, uint64_t *pos, char *gtid,
                               size_t ng);

struct cairn_my_backup_opts {
    const char *defaults_file;   /* required: [client] user, password, socket/host/port */
    const char *datadir;         /* NULL = the server's @@datadir (mariabackup's default) */
    const char *source;          /* NULL = "mysql:<server_id>" */
    const char *const *tags;
    size_t n_tags;
    int workers;
    cairn_backup_progress_fn progress;
    void *progress_arg;
};

struct cairn_my_backup_result {
    struct cairn_backup_result backup;
    struct cairn_my_basebackup base;
    int coords_from_stream;      /* read from xtrabackup_binlog_info in the stream (else
                                    from mariabackup's log) */
};

/* Asks the server (the mariadb client, --defaults-file) for its identity and
 * refuses when binary logging is off; runs mariabackup into the engine;
 * records the coordinates in the manifest. On any failure (server, program,
 * store) no snapshot is written. */
int cairn_my_backup(cairn_repo *r, const struct cairn_my_backup_opts *o,
                    struct cairn_my_backup_result *res, cairn_err *err);

/* ---- point-in-time restore ---- */

enum cairn_my_target_kind {
    CAIRN_MY_TARGET_LATEST = 0,
    CAIRN_MY_TARGET_TIME,      /* time_ns: transactions whose commit event time <= it */
    CAIRN_MY_TARGET_POSITION,  /* file + pos: transactions ending at or before pos */
    CAIRN_MY_TARGET_GTID       /* gtid: up to and including that transaction */
};

struct cairn_my_target {
    enum cairn_my_target_kind kind;
    int64_t time_ns;
    char file[CAIRN_BINLOG_NAME_MAX];
    uint64_t pos;
    struct cairn_my_gtid gtid;
};

/* "binlog.000042:1234" or "D-S-N" -> target; -1 when malformed. */
int cairn_my_target_position(const char *s, struct cairn_my_target *t);
int cairn_my_target_gtid(const char *s, struct cairn_my_target *t);

struct cairn_my_restore_opts {
    const char *target_dir;      /* absent or empty; created */
    const char *server;          /* NULL: the only server with base backups */
    const char *snapshot;        /* NULL: choose; else this base backup (id prefix) */
    const char *user;            /* owner for mariadbd --user; NULL = "mysql" when root */
    int stop_timeout_s;          /* the private server's shutdown, at most (0: 600 s;
                                  * after a failure at most 30 s) */
    cairn_my_info_fn info;       /* progress lines (may be NULL) */
    void *info_arg;
};

struct cairn_my_restore_result {
    struct cairn_my_basebackup base;
    uint64_t files;                          /* binlog files replayed (from) */
    char first_file[CAIRN_BINLOG_NAME_MAX];
    char stop_file[CAIRN_BINLOG_NAME_MAX];   /* replay stops here ... */
    uint64_t stop_pos;                       /* ... at this position */
    uint64_t transactions;                   /* transactions replayed */
    int has_last;                            /* the last one replayed: */
    int64_t last_commit_ns;
    char last_gtid[64];
    char gtid_pos[1024];                     /* the GTID state the result ends at */
    char user[64];                           /* who owns the directory */
};

/* Plans (newest base backup before the target; every binlog from its
 * coordinates to the target archived, else CAIRN_FAILED naming the first
 * missing file), fetches and verifies every binlog needed and computes the
 * stop position before anything is written, then restores and prepares the
 * base into target_dir and replays the binlogs through a private temporary
 * mariadbd. On a failure after target_dir was written, its contents are
 * removed again (the message says so). */
int cairn_my_restore(cairn_repo *r, const struct cairn_my_target *t,
                     const struct cairn_my_restore_opts *o, struct cairn_my_restore_result *res,
                     cairn_err *err);

/* ---- helpers shared by mysql_backup.c and mysql_restore.c ---- */

/* The program's path (PATH, then /usr/sbin, /usr/bin) into out; -1 if none. */
int cairn_my_find_prog(const char *name, char *out, size_t n);
/* Starts argv[0] (a path) with stdin from in_fd and stdout to out_fd (-1:
 * /dev/null), stderr appended to log (NULL: /dev/null), every other
 * descriptor closed, and TZ=UTC in its environment when utc is set. */
int cairn_my_spawn(const char *const *argv, int in_fd, int out_fd, const char *log, int utc,
                   pid_t *pid, cairn_err *err);
/* Waits for pid: CAIRN_OK on exit status 0, else CAIRN_FAILED "<what> failed
 * (exit N): <last line of log>". */
int cairn_my_wait(pid_t pid, const char *what, const char *log, cairn_err *err);
/* The last non-empty line of a log file that starts with prefix (NULL: any). */
void cairn_my_log_line(const char *log, const char *prefix, char *out, size_t n);
/* A private 0700 directory under $TMPDIR (or /tmp). */
int cairn_my_tempdir(const char *what, char *out, size_t n, cairn_err *err);
/* Removes everything under path, and path itself unless keep_top. */
void cairn_my_rmtree(const char *path, int keep_top);

#endif

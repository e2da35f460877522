/* agent/mysql.h — MariaDB/MySQL: shipping closed binlog files into the
 * repository (binlog-push), streaming them from the server (binlog-stream,
 * agent/mysql_stream.c), reading them back verified (binlog-fetch), the
 * catalog view of the archive (binlog-list) and gap checks (binlog-verify).
 * See docs/mysql.md.
 *
 * Object: binlog/<server>/<file name>, where <server> is the server's UUID
 * (MySQL, from auto.cnf in the data directory) or its decimal server_id (as
 * the binlog's Format_description event says), holding
 *   "CAIRN-BINLOG1\n" <one line of JSON metadata> "\n" <one zstd frame of the file>
 * so the catalog can be rebuilt from the objects alone (the metadata is within
 * the first CAIRN_MY_BINOBJ_HEAD_MAX bytes). Objects are never overwritten: an
 * identical re-push is success, a different file under an archived name is
 * refused (CAIRN_EXISTS).
 *
 * The repository is opened with the light archive handle of agent/pg.h
 * (config + store + catalog), which is not PostgreSQL-specific.
 *
 * Ownership: structs are plain values filled by the callee; buffers are the
 * caller's. Nothing here prints or exits: errors come back in cairn_err,
 * naming the file or object. Threading: reentrant; one archive handle per
 * thread. cairn_my_binlog_stream() runs in the calling thread, forks child
 * processes (the mariadb client, mariadb-binlog) and reaps only those. */
#ifndef CAIRN_AGENT_MYSQL_H
#define CAIRN_AGENT_MYSQL_H

#include <stddef.h>
#include <stdint.h>

#include "../catalog/catalog.h"
#include "../engine/prune.h"
#include "../uploaders/store.h"
#include "pg.h"

#define CAIRN_MY_MAX_FILE (4ull << 30) /* a binlog larger than this is refused */
#define CAIRN_MY_MAX_DOMAINS 64        /* GTID domains tracked per file */

/* Event types the scanner looks at (binlog format v4). */
enum {
    CAIRN_MY_EV_STOP = 3,
    CAIRN_MY_EV_ROTATE = 4,
    CAIRN_MY_EV_FORMAT_DESCRIPTION = 15,
    CAIRN_MY_EV_XID = 16,
    CAIRN_MY_EV_MYSQL_GTID = 33,          /* MySQL 5.6+: flags, SID, GNO */
    CAIRN_MY_EV_BINLOG_CHECKPOINT = 161,  /* MariaDB */
    CAIRN_MY_EV_GTID = 162,               /* MariaDB: seq_no, domain_id, flags */
    CAIRN_MY_EV_GTID_LIST = 163,          /* MariaDB: the GTID state at the file's start */
    CAIRN_MY_EV_START_ENCRYPTION = 164    /* MariaDB: the rest of the file is encrypted */
};

/* A MariaDB GTID: domain-server-seq. */
struct cairn_my_gtid {
    uint32_t domain, server;
    uint64_t seq;
};

/* What cairn_my_binlog_scan() learns from a binlog file. */
struct cairn_my_binscan {
    uint32_t server_id;        /* of the Format_description event */
    char server_version[51];
    int crc32;                 /* events carry CRC32 checksums (every one verified) */
    uint64_t start_pos;        /* 4: the first event */
    uint64_t end_pos;          /* just past the last complete event */
    uint64_t events;
    int has_times;
    int64_t first_event_ns, last_event_ns; /* event header timestamps (seconds) */
    int in_use;                /* the Format_description event says "in use" */
    int closed_by;             /* CAIRN_MY_EV_ROTATE, CAIRN_MY_EV_STOP or 0 */
    char next_file[256];       /* the Rotate event's target */
    int encrypted;             /* stopped at a Start_encryption event */
    /* MariaDB: the Gtid_list event (the state when the file began) */
    int has_gtid_list;
    size_t n_list;
    struct cairn_my_gtid list[CAIRN_MY_MAX_DOMAINS];
    /* MariaDB: the GTIDs of the file, first and last per domain */
    uint64_t n_gtids;
    size_t n_dom;
    struct {
        struct cairn_my_gtid first, last;
    } dom[CAIRN_MY_MAX_DOMAINS];
    struct cairn_my_gtid first_gtid, last_gtid; /* in file order */
    /* MySQL: "uuid:gno" of the first and last GTID events ("" if none) */
    char mysql_first_gtid[64], mysql_last_gtid[64];
};

/* Walks every event of a binlog file: checks the magic (\xfe"bin"), the
 * Format_description event, event lengths and positions, and (when the file
 * uses them) every event's CRC32. CAIRN_CORRUPT, naming the position, when
 * the file is not a binlog or an event is damaged or truncated. */
int cairn_my_binlog_scan(const uint8_t *d, size_t len, struct cairn_my_binscan *out,
                         cairn_err *err);
/* CRC-32 (the zlib polynomial) as binlog events use it. */
uint32_t cairn_my_crc32(uint32_t crc, const void *data, size_t len);
/* "D-S-N" */
void cairn_my_gtid_format(const struct cairn_my_gtid *g, char *out, size_t n);
/* The catalog's gtids text: "<Gtid_list>;<ranges>" (see catalog.h). */
void cairn_my_gtids_text(const struct cairn_my_binscan *s, char *out, size_t n);

/* "binlog.000042" -> base "binlog", seq 42, width 6. 0, or -1 when the name
 * has no ".<digits>" suffix or holds a '/'. */
int cairn_my_binlog_name_parse(const char *name, char *base, size_t nbase, uint64_t *seq,
                               int *width);

/* ---- archived objects ---- */

#define CAIRN_MY_BINOBJ_MAGIC "CAIRN-BINLOG1\n"
#define CAIRN_MY_BINOBJ_HEAD_MAX 16384

struct cairn_my_binmeta {
    char name[CAIRN_BINLOG_NAME_MAX];
    char server[CAIRN_BINLOG_SERVER_MAX]; /* the key's <server> part */
    uint32_t server_id;
    uint64_t size;
    uint8_t sha256[32];
    uint64_t start_pos, end_pos;
    int has_times;
    int64_t first_event_ns, last_event_ns;
    char gtids[CAIRN_BINLOG_GTIDS_MAX];   /* as in the catalog */
};

/* "binlog/<server>/<name>"; -1 when a part is unusable or it does not fit. */
int cairn_my_binobj_key(const char *server, const char *name, char *out, size_t n);
/* Builds the object: magic, metadata (from m and, when not NULL, the scan),
 * then zfr, an already-compressed zstd frame of the file. */
int cairn_my_binobj_build(const struct cairn_my_binmeta *m, const struct cairn_my_binscan *s,
                          const void *zfr, size_t zlen, cairn_buf *out, cairn_err *err);
/* Reads the metadata from the start of an object (len may be only the first
 * CAIRN_MY_BINOBJ_HEAD_MAX bytes). *payload_off = where the zstd frame starts. */
int cairn_my_binobj_head(const uint8_t *obj, size_t len, struct cairn_my_binmeta *m,
                         size_t *payload_off, cairn_err *err);
/* Whole object -> raw file, verified (zstd checksum, size, SHA-256); else
 * CAIRN_CORRUPT and raw is emptied. key is for messages. */
int cairn_my_binobj_decode(const uint8_t *obj, size_t len, const char *key,
                           struct cairn_my_binmeta *m, cairn_buf *raw, cairn_err *err);
void cairn_my_binrow_from_meta(const struct cairn_my_binmeta *m, const char *key,
                               struct cairn_binlogrow *row);

/* ---- binlog-push ---- */

/* The binlog files of a data directory in index order (paths as the index
 * gives them, made absolute against datadir). index NULL = the one *.index
 * file in datadir whose entries look like binlog files (relay-log indexes
 * skipped); several candidates are an error asking for one. *files is
 * malloc'd (free each, then the array). */
int cairn_my_binlog_index(const char *datadir, const char *index, char ***files, size_t *n,
                          cairn_err *err);
/* The server UUID from datadir/auto.cnf (MySQL) into out; -1 if there is none. */
int cairn_my_server_uuid(const char *datadir, char *out, size_t n);

struct cairn_my_push_result {
    struct cairn_my_binmeta meta;
    struct cairn_my_binscan scan;
    char key[CAIRN_WAL_KEY_MAX + CAIRN_BINLOG_NAME_MAX];
    int already;        /* an identical copy was archived before */
    uint64_t stored;    /* object bytes (0 when already) */
};

/* Archives one binlog file: scan (it must be a valid binlog), compress, store
 * under binlog/<server>/<name> (server NULL = the Format_description event's
 * server_id), flush, then record in the catalog (if the handle has one).
 * Identical copy already archived: success, already = 1. A different file
 * under that name: CAIRN_EXISTS, nothing written. res is heap-sized: allocate
 * it (it holds the scan). */
int cairn_my_binlog_push_file(cairn_pg_archive *a, const char *path, const char *server,
                              int level, struct cairn_my_push_result *res, cairn_err *err);

/* The same for a file already in memory (data, len: the whole file); name is
 * its archived name, path names it in messages (NULL = name). binlog-stream
 * ships through this. */
int cairn_my_binlog_push_buf(cairn_pg_archive *a, const char *name, const char *path,
                             const uint8_t *data, size_t len, const char *server, int level,
                             struct cairn_my_push_result *res, cairn_err *err);

/* ---- partial objects (binlog-stream --flush-interval) ----
 * binlog/<server>/<file>.partial.<len>: the first len bytes of the file
 * <file> (every event in it complete), in the same object format, the
 * metadata's name being the partial name. They are never recorded in the
 * catalog (binlog-list and binlog-verify skip them); binlog-fetch fetches one
 * by its full name. The streamer deletes a file's partials once a longer
 * partial or the whole file is archived. */

/* "binlog.000042.partial.1234" -> file "binlog.000042", endpos 1234. 0, or
 * -1 when name is not a partial name. endpos may be NULL. */
int cairn_my_binlog_partial_name(const char *name, char *file, size_t nfile,
                                 uint64_t *endpos);
/* Archives data[0..len) (a prefix of the binlog file name, ending on an event
 * boundary) as binlog/<server>/<name>.partial.<len>; no catalog row. As
 * cairn_my_binlog_push_buf otherwise. */
int cairn_my_binlog_push_partial(cairn_pg_archive *a, const char *name, const char *path,
                                 const uint8_t *data, size_t len, const char *server,
                                 int level, struct cairn_my_push_result *res, cairn_err *err);
/* Deletes the partials of server (NULL: all) whose whole file cat records. */
int cairn_my_binlog_partials_prune(cairn_store *s, cairn_catalog *cat, const char *server,
                                   uint64_t *deleted, cairn_err *err);
/* Lists the partial objects (of server, or all): cb gets key and size. */
int cairn_my_binlog_partials_list(cairn_store *s, const char *server, cairn_list_cb cb,
                                  void *arg, cairn_err *err);

/* binlog-push: every closed file of the index, oldest first (never the last
 * one listed: the server is writing it). Stops at the first failure so the
 * archive never gets a hole; then deletes the partial objects of the files
 * now archived whole (cairn_my_binlog_partials_prune). A file the catalog records with the same size,
 * first event time and a matching modification time, whose object is in the
 * store, is reported as already archived without being read whole. cb (may be NULL) is told about each file pushed
 * or already archived. server NULL = auto.cnf's UUID, else the server_id. */
struct cairn_my_push_stats {
    uint64_t files, pushed, already;
    char active[CAIRN_BINLOG_NAME_MAX]; /* the file left for later */
};
typedef void (*cairn_my_push_cb)(void *arg, const struct cairn_my_push_result *r);
int cairn_my_binlog_push_dir(cairn_pg_archive *a, const char *datadir, const char *index,
                             const char *server, int level, cairn_my_push_cb cb, void *arg,
                             struct cairn_my_push_stats *st, cairn_err *err);

/* ---- the server, through its client (agent/mysql_stream.c) ---- */

/* Runs the mariadb client (else mysql) with --defaults-file=defaults first
 * (so no password is on any command line), --batch --skip-column-names, and
 * sql; *out gets its standard output (tab-separated rows, at most 1 MiB).
 * CAIRN_FAILED naming the client's own message (its stderr, first line) when
 * it fails: wrong password, server unreachable...; CAIRN_NOTFOUND when no
 * client is installed. */
int cairn_my_client_query(const char *defaults, const char *sql, cairn_buf *out,
                          cairn_err *err);

/* What binlog-stream learns from the server at each (re)connection. */
struct cairn_my_server_logs {
    uint32_t server_id;
    size_t n;                              /* SHOW BINARY LOGS, oldest first */
    char (*names)[CAIRN_BINLOG_NAME_MAX];  /* malloc'd: free() */
};
/* @@log_bin, @@server_id, then SHOW BINARY LOGS. Binary logging off is
 * CAIRN_FAILED saying so. */
int cairn_my_server_logs(const char *defaults, struct cairn_my_server_logs *out,
                         cairn_err *err);

/* ---- binlog-stream (agent/mysql_stream.c, docs/mysql.md) ----
 * Supervises `mariadb-binlog --defaults-file=F --read-from-remote-server
 * --raw --stop-never --result-file=SPOOL/ FILE`: every file the server has
 * rotated past (the next file appeared in the spool, or the file ends with a
 * Rotate or Stop event) is shipped through cairn_my_binlog_push_buf() and
 * removed from the spool. A lost connection (server restart) ends the
 * session: what is complete is shipped, and after a backoff (1 s doubling to
 * 30 s) a new session asks the server again (SHOW BINARY LOGS) and starts
 * from the first file not yet archived (always from its beginning, so a
 * file is never pieced together from two connections).
 * Where to start: with nothing of that server and base name archived, at the
 * oldest file the server still has; else at the first file the server lists
 * after the oldest archived one that is not archived (older files the
 * archive lacks were forgotten by retention or predate it: not re-shipped). */
struct cairn_my_stream_opts {
    const char *defaults_file;   /* required: the [client] settings */
    const char *spool;           /* directory (created 0700); a lock file keeps
                                  * one streamer per spool */
    const char *server;          /* the key's <server> part; NULL: @@server_id */
    uint32_t client_server_id;   /* --stop-never-slave-server-id; 0: the tool's default */
    unsigned flush_interval;     /* seconds; 0: whole files only */
    int level;                   /* zstd level (0: default) */
    const char *binlog_cmd;      /* NULL: "mariadb-binlog" */
    volatile int *stop;          /* set (from a signal handler) to stop */
    void (*log)(void *arg, const char *msg);  /* progress and retries (may be NULL) */
    void (*shipped)(void *arg, const struct cairn_my_push_result *r, int partial);
    void *arg;                   /* for log and shipped */
};
struct cairn_my_stream_stats {
    uint64_t shipped, already, partials, sessions, reconnects;
};
/* Runs until *stop is set: then stops the child, ships what is complete (and,
 * with a flush interval, the in-progress file's prefix as a partial) and
 * returns CAIRN_OK. Errors: the server cannot be queried at the start
 * (wrong password, unreachable, binary logging off: fails fast, nothing
 * retried), the spool is unusable or locked, or a complete file is refused
 * (CAIRN_EXISTS: a different file under an archived name; CAIRN_CORRUPT).
 * Once streaming, a lost server is retried forever, each retry logged. */
int cairn_my_binlog_stream(cairn_pg_archive *a, const struct cairn_my_stream_opts *o,
                           struct cairn_my_stream_stats *st, cairn_err *err);

/* ---- the read side ---- */

/* Gets binlog/<server>/<name> (server NULL = the only server holding that
 * name; several are an error asking for one) and writes the verified file to
 * dest atomically (dest.cairn-tmp.PID, fsync, rename). CAIRN_NOTFOUND: not
 * archived. CAIRN_CORRUPT: verification failed, dest is not written. */
int cairn_my_binlog_fetch(cairn_store *s, const char *server, const char *name,
                          const char *dest, cairn_err *err);

struct cairn_my_sync_stats {
    uint64_t objects, added, removed, unreadable;
};
/* Brings the binlogs table in line with the store's binlog/ objects. */
int cairn_my_binlog_sync(cairn_store *s, cairn_catalog *cat, struct cairn_my_sync_stats *st,
                         cairn_err *err);

/* Gaps: per server and base name, every file number missing between the
 * first and the last archived one, one message each through report; a
 * summary line per server and base name through info (may be NULL).
 * *problems gets the count (unreadable objects are not counted here: see the
 * sync stats). */
typedef void (*cairn_my_report_fn)(void *arg, const char *msg);
int cairn_my_binlog_verify(cairn_catalog *cat, const char *server, cairn_my_report_fn report,
                           cairn_my_report_fn info, void *arg, uint64_t *problems,
                           cairn_err *err);

/* binlog-verify --read-data: downloads every archived object (of server, or
 * all) and verifies it whole, as binlog-fetch would; one message per damaged
 * or missing object through report; *damaged gets the count. */
int cairn_my_binlog_read_all(cairn_store *s, cairn_catalog *cat, const char *server,
                             cairn_my_report_fn report, void *arg, uint64_t *checked,
                             uint64_t *damaged, cairn_err *err);

/* ---- retention (see docs/mysql.md, "Retention") ----
 * A snapshot whose manifest has a "mysql" object with binlog coordinates,
 *   "mysql": {"server": "<the binlog/<server>/ part>", "binlog_file": "<name>",
 *             "binlog_pos": N}
 * (server may also be a JSON integer, the server_id), is a MariaDB/MySQL base
 * backup: restoring it and replaying needs binlog_file and every later file
 * of that server. */

/* Reads the coordinates of a manifest: 0 when it has them, -1 otherwise
 * (no "mysql" object, or server/binlog_file missing or unusable). pos may be
 * NULL; it gets 0 when binlog_pos is absent. */
int cairn_my_snapshot_coords(const char *manifest_json, char *server, size_t nserver,
                             char *file, size_t nfile, uint64_t *pos);

struct cairn_my_forget_stats {
    uint64_t deleted, deleted_bytes, kept;   /* deleted: would be, with dry_run */
    char newest[CAIRN_BINLOG_NAME_MAX];      /* the newest archived file of that base name */
};
/* binlog-forget: after syncing the catalog with the store, deletes (object
 * first, then its catalog row) every archived binlog of server whose base
 * name is before's and whose file number is strictly below before's.
 * before need not be archived itself, but the newest archived file of that
 * base name is never deleted: a before past it is refused (CAIRN_EXISTS,
 * nothing deleted). CAIRN_NOTFOUND: no file of that base name is archived
 * for server. report (may be NULL) gets one line per file deleted (or that
 * would be, with dry_run). */
int cairn_my_binlog_forget(cairn_store *s, cairn_catalog *cat, const char *server,
                           const char *before, int dry_run, cairn_my_report_fn report,
                           void *arg, struct cairn_my_forget_stats *st, cairn_err *err);

/* The forget hook for binlogs (cairn_log_retention_fn of engine/prune.h; arg:
 * a struct cairn_my_retention or NULL). next, when set, is called first with
 * next_arg (so cairn forget can chain the PostgreSQL hook); its error is
 * returned and the binlogs are then left alone. For a source named
 * "mysql:<server>" or holding snapshots with coordinates: per server of those
 * snapshots, the oldest coordinates over every snapshot still kept in the
 * repository (any source) are found, and archived binlogs of that server and
 * base name with a lower file number are deleted (object, then row). When no
 * kept snapshot has coordinates for a server, nothing of it is deleted and a
 * line says so. Other sources: nothing. dry_run: counts and reports only. */
struct cairn_my_retention {
    cairn_my_report_fn report; /* one line per server (may be NULL) */
    void *report_arg;
    cairn_log_retention_fn next;
    void *next_arg;
    uint64_t deleted, deleted_bytes, kept; /* accumulated over calls */
};
int cairn_my_log_retention(void *arg, cairn_repo *r, const char *source,
                           const char *oldest_kept_id, int64_t oldest_kept_ns, int dry_run,
                           cairn_err *err);

/* ---- event walk (for restore-mysql's stop positions) ---- */

struct cairn_my_event {
    uint8_t type;
    uint32_t when;              /* header timestamp, seconds since the epoch (UTC) */
    uint32_t server_id;
    uint64_t pos, end;          /* the event's first byte and the byte after it */
    int has_gtid;               /* MariaDB GTID event (type 162): gtid and flags set */
    struct cairn_my_gtid gtid;
    uint8_t gtid_flags;         /* bit 0: standalone (no BEGIN/COMMIT) */
};
typedef int (*cairn_my_event_fn)(void *arg, const struct cairn_my_event *ev);
/* Checks the whole file as cairn_my_binlog_scan() does (CAIRN_CORRUPT naming
 * the position), then calls cb for every event in file order, the
 * Format_description event included; a non-zero return from cb stops the
 * walk and is returned. Events after a Start_encryption event are not
 * walked. */
int cairn_my_binlog_walk(const uint8_t *d, size_t len, cairn_my_event_fn cb, void *arg,
                         cairn_err *err);

#endif

/* restore/pitr_pg.h — PostgreSQL point-in-time recovery: the WAL archive as
 * the read side sees it, and restore planning.
 *
 * This module owns the format of archived WAL objects (written by
 * agent/pg_wal.c through cairn_pg_walobj_encode(), read here), WAL file-name
 * and LSN arithmetic, timeline history files, fetching for restore_command,
 * bringing the catalog's wal_segments rows in line with the store, checking
 * the archive for gaps, choosing a base backup and the WAL range a recovery
 * target needs, and preparing a data directory for recovery.
 * See docs/postgresql.md for the object format and the guarantees.
 *
 * Object: wal/<system-id>/<timeline, 8 hex>/<file name>, holding
 *   "CAIRN-WAL1\n" <one line of JSON metadata> "\n" <one zstd frame of the file>
 * so the catalog can be rebuilt from the objects alone (the metadata is within
 * the first CAIRN_PG_WALOBJ_HEAD_MAX bytes).
 *
 * Ownership: structs are plain values filled by the callee; buffers (cairn_buf)
 * are the caller's. Nothing here prints or exits; errors name the file or
 * object. Threading: functions are reentrant; a store handle may be shared, a
 * catalog handle may not (one per thread). */
#ifndef CAIRN_PITR_PG_H
#define CAIRN_PITR_PG_H

#include <stddef.h>
#include <stdint.h>

#include "../catalog/catalog.h"
#include "../uploaders/store.h"
#include "restore.h"

/* ---- names and LSNs ---- */

#define CAIRN_PG_SEGSIZE_DEFAULT (16u << 20)
#define CAIRN_PG_MAX_FILE (1024u << 20) /* largest WAL segment PostgreSQL allows */

enum cairn_pg_walkind {
    CAIRN_PG_SEGMENT = 0, /* 000000010000000000000003 */
    CAIRN_PG_PARTIAL = 1, /* 000000010000000000000003.partial */
    CAIRN_PG_HISTORY = 2, /* 00000002.history */
    CAIRN_PG_BACKUP = 3   /* 000000010000000000000003.00000028.backup */
};

struct cairn_pg_walname {
    enum cairn_pg_walkind kind;
    uint32_t tli;
    uint32_t log, seg;  /* segment, partial, backup: the two halves of the number */
    uint32_t offset;    /* backup: byte offset of the start LSN in its segment */
};

/* 0 when name is a WAL file name PostgreSQL archives, -1 otherwise. */
int cairn_pg_walname_parse(const char *name, struct cairn_pg_walname *out);
const char *cairn_pg_walkind_name(enum cairn_pg_walkind k); /* "segment", ... */
/* segsize: a power of two from 1 MiB to 1 GiB. */
int cairn_pg_segsize_valid(uint64_t segsize);
uint64_t cairn_pg_segno(uint32_t log, uint32_t seg, uint64_t segsize);
/* The 24-character segment file name (out: 25 bytes). */
void cairn_pg_segname(uint32_t tli, uint64_t segno, uint64_t segsize, char out[25]);
/* "16/B374D848" <-> 64-bit LSN. parse: 0 ok, -1 malformed. out: >= 20 bytes. */
int cairn_pg_lsn_parse(const char *s, uint64_t *lsn);
void cairn_pg_lsn_format(uint64_t lsn, char *out, size_t n);

/* ---- timeline history files ---- */

struct cairn_pg_tlentry {
    uint32_t tli;  /* an ancestor timeline */
    uint64_t end;  /* the LSN where it was left (the next timeline starts there) */
};
/* Parses "<parent tli>\t<switch LSN>\t<reason>" lines (comments and blank
 * lines skipped), oldest first. CAIRN_CORRUPT if malformed, out of order, or
 * more than max entries. */
int cairn_pg_history_parse(const char *text, size_t len, struct cairn_pg_tlentry *out,
                           size_t max, size_t *n, cairn_err *err);

/* The system identifier in DIR/global/pg_control (its first 8 bytes). */
int cairn_pg_control_sysid(const char *pgdata, uint64_t *sysid, cairn_err *err);

/* ---- archived objects ---- */

#define CAIRN_PG_WALOBJ_MAGIC "CAIRN-WAL1\n"
#define CAIRN_PG_WALOBJ_HEAD_MAX 16384 /* magic + metadata line, at most */

struct cairn_pg_walmeta {
    char name[CAIRN_WAL_NAME_MAX];
    char system_id[CAIRN_WAL_SYSID_MAX]; /* decimal */
    uint32_t timeline;
    enum cairn_pg_walkind kind;
    uint64_t size;           /* raw bytes */
    uint8_t sha256[32];      /* of the raw bytes */
    uint64_t start_lsn, end_lsn;
    uint64_t segment_size;   /* 0 when unknown (history, backup files) */
    int has_commit;
    int64_t min_commit_ns, max_commit_ns;
    uint32_t n_restore_points; /* restore points (pg_create_restore_point) in it */
};

/* The object key: "wal/<system id>/<timeline %08X>/<name>". */
int cairn_pg_walobj_key(const char *system_id, const char *name, char *out, size_t n);
/* Builds the object: magic, metadata JSON (m->sha256 must be filled), then
 * zfr (an already-compressed zstd frame of the raw file). extra_json, if not
 * NULL, is a JSON object whose members are added to the metadata (e.g. the
 * restore point list). */
int cairn_pg_walobj_build(const struct cairn_pg_walmeta *m, const char *extra_json,
                          const void *zfr, size_t zlen, cairn_buf *out, cairn_err *err);
/* Reads the metadata from the start of an object (len may be just the first
 * CAIRN_PG_WALOBJ_HEAD_MAX bytes). *payload_off = where the zstd frame starts. */
int cairn_pg_walobj_head(const uint8_t *obj, size_t len, struct cairn_pg_walmeta *m,
                         size_t *payload_off, cairn_err *err);
/* Whole object -> raw file, verified: the zstd frame checksum, the size and
 * the SHA-256 must match the metadata, else CAIRN_CORRUPT (raw is then
 * emptied). key is for messages. */
int cairn_pg_walobj_decode(const uint8_t *obj, size_t len, const char *key,
                           struct cairn_pg_walmeta *m, cairn_buf *raw, cairn_err *err);
void cairn_pg_sha256(const void *data, size_t len, uint8_t out[32]);
/* A catalog row for an archived object. */
void cairn_pg_walrow_from_meta(const struct cairn_pg_walmeta *m, const char *key,
                               struct cairn_walrow *row);

/* ---- fetching (restore_command) ---- */

/* Gets wal/<sysid>/../<name> and writes the verified raw file to dest
 * atomically (dest.cairn-tmp.PID, then rename). Does not retry.
 * CAIRN_NOTFOUND: not archived. CAIRN_CORRUPT: the object fails verification
 * (dest is not written). Other codes: store or file errors. */
int cairn_pg_wal_fetch(cairn_store *s, const char *system_id, const char *name,
                       const char *dest, cairn_err *err);
/* The same, but first from spool_dir (where cairn_pg_wal_prefetch() puts
 * verified segments) when it is not NULL: a spool entry is the raw segment
 * and a check file beside it (a CRC-32C digest of the bytes whose SHA-256 was
 * checked against the archived object when it was spooled); a hit checks the
 * digest again and renames the segment to dest. A damaged spool entry is
 * removed and the segment fetched from the store. Waits up to 60 s for a prefetcher still
 * downloading it; spooled files of earlier segments are removed. */
int cairn_pg_wal_fetch_spool(cairn_store *s, const char *system_id, const char *name,
                             const char *dest, const char *spool_dir, cairn_err *err);
/* Only the spool part of the above, without a store: CAIRN_OK when name was
 * served from spool_dir, CAIRN_NOTFOUND when it is not there (or was damaged
 * and removed, or could not be moved to dest). err is left alone. */
int cairn_pg_wal_fetch_spooled(const char *system_id, const char *name, const char *dest,
                               const char *spool_dir, cairn_err *err);
/* The same, from an object already read. */
int cairn_pg_wal_write_verified(const uint8_t *obj, size_t len, const char *key,
                                const char *dest, cairn_err *err);
/* Keeps the n (<= 64) segments after the one last served (the later of name
 * and spool_dir/<sysid>.served; segsize gives the names) in spool_dir, with
 * `jobs` threads, each through <file>.part (locked with flock while written)
 * and rename; segments already spooled or being fetched are skipped, as are
 * segments not in the archive (asked for once per position of the window). Runs while recovery moves on: returns when the
 * window is spooled and the served mark has not moved for 2 s (or after an
 * hour, or on the first hard error). Only one runs per spool and system:
 * another one holding spool_dir/<sysid>.lock makes this return CAIRN_OK at
 * once. */
int cairn_pg_wal_prefetch(cairn_store *s, const char *system_id, const char *name,
                          uint64_t segsize, int n, const char *spool_dir, int jobs,
                          cairn_err *err);

/* ---- the catalog view of the archive ---- */

struct cairn_pg_sync_stats {
    uint64_t objects, added, removed, unreadable;
};
/* Brings wal_segments in line with the store's wal/ objects (of system_id, or
 * all when NULL): new objects are added from their metadata, rows whose object
 * is gone are removed. Unreadable objects are counted and skipped. */
int cairn_pg_wal_sync(cairn_store *s, cairn_catalog *cat, const char *system_id,
                      struct cairn_pg_sync_stats *st, cairn_err *err);

/* wal-verify: gaps and timeline problems, one message per problem through
 * report (e.g. "system 7301...: timeline 1: segment 00000001...05 is missing
 * (between ...04 and ...06)"), and a summary line per timeline through info.
 * *problems gets the count. */
typedef void (*cairn_pg_report_fn)(void *arg, const char *msg);
int cairn_pg_wal_verify(cairn_store *s, cairn_catalog *cat, const char *system_id,
                        cairn_pg_report_fn report, cairn_pg_report_fn info, void *arg,
                        uint64_t *problems, cairn_err *err);

/* ---- base backups (snapshots made by backup-pg) ---- */

struct cairn_pg_basebackup {
    char snapshot[CAIRN_HEX_LEN + 1];
    char system_id[CAIRN_WAL_SYSID_MAX];
    uint32_t timeline;
    uint64_t start_lsn, stop_lsn;
    int64_t start_ns, stop_ns;  /* server clock at pg_backup_start / after pg_backup_stop */
    uint64_t segment_size;
    int server_version;         /* server_version_num */
    int reference;              /* an agent snapshot whose data is a storage snapshot
                                 * (csi or exec): not restorable from the repository */
};
/* CAIRN_NOTFOUND when the manifest is not a complete PostgreSQL base backup. */
int cairn_pg_basebackup_parse(const char *manifest_json, const char *snapshot_id,
                              struct cairn_pg_basebackup *out, cairn_err *err);
typedef int (*cairn_pg_basebackup_cb)(void *arg, const struct cairn_pg_basebackup *b);
/* Every complete base backup in the catalog (of system_id, or all), oldest first. */
int cairn_pg_basebackup_list(cairn_catalog *cat, const char *system_id,
                             cairn_pg_basebackup_cb cb, void *arg, cairn_err *err);

/* ---- point-in-time restore ---- */

enum cairn_pg_target_kind {
    CAIRN_PG_TARGET_LATEST = 0,
    CAIRN_PG_TARGET_TIME,
    CAIRN_PG_TARGET_LSN,
    CAIRN_PG_TARGET_XID,
    CAIRN_PG_TARGET_NAME
};

struct cairn_pg_target {
    enum cairn_pg_target_kind kind;
    int64_t time_ns;          /* TIME */
    uint64_t lsn;             /* LSN */
    const char *xid;          /* XID (decimal) */
    const char *name;         /* NAME (restore point) */
    const char *timeline;     /* "latest" (NULL = default), "current" or a number */
    const char *action;       /* "promote" (NULL = default), "pause", "shutdown" */
    const char *system_id;    /* NULL: the only system with base backups */
    const char *snapshot;     /* NULL: choose; else this base backup (id prefix) */
};

struct cairn_pg_plan {
    struct cairn_pg_basebackup base;
    uint32_t target_tli;         /* the timeline recovery will follow to */
    uint64_t n_segments;         /* WAL segments the recovery needs, all archived */
    char first_segment[CAIRN_WAL_NAME_MAX];
    char last_segment[CAIRN_WAL_NAME_MAX];
};

/* Chooses the newest base backup that ends before the target (for a time
 * target: stopped before it; for an LSN: stop LSN at or before it) on the
 * target timeline's history, and checks in the catalog that every WAL segment
 * from the backup's start to the target is archived. CAIRN_NOTFOUND: no base
 * backup fits (the message says why); CAIRN_FAILED with the first missing
 * segment named when the WAL range has a gap. The catalog should be synced
 * first (cairn_pg_wal_sync). */
int cairn_pg_plan_restore(cairn_store *s, cairn_catalog *cat, const struct cairn_pg_target *t,
                          struct cairn_pg_plan *plan, cairn_err *err);

struct cairn_pg_restore_opts {
    const char *target_dir;       /* must be absent or empty */
    const char *restore_command;  /* written to postgresql.auto.conf as is */
    /* Tablespaces: "OLD=NEW" (OLD: the original location or the OID) puts that
     * tablespace into NEW instead of its original location. */
    const char *const *tablespace_map;
    size_t n_tablespace_map;
    cairn_warn_fn warn;           /* per-file restore warnings */
    void *warn_arg;
    cairn_progress_fn progress;
    void *progress_arg;
};

/* Restores the plan's base backup into target_dir, each tablespace into its
 * original location or the one o->tablespace_map gives (every destination
 * must be absent or empty: checked before anything is written; pg_tblspc/
 * links point there), writes backup_label and tablespace_map byte for byte
 * (tablespace_map with the remapped lines changed), recreates pg_wal/ (archive_status), removes
 * earlier recovery settings from postgresql.auto.conf and appends
 * restore_command and the recovery target, and creates recovery.signal.
 * The directory ends up mode 0700, owned like its PG_VERSION file. */
int cairn_pg_restore(cairn_repo *r, const struct cairn_pg_plan *plan,
                     const struct cairn_pg_target *t, const struct cairn_pg_restore_opts *o,
                     cairn_err *err);

/* ---- WAL retention (cairn_log_retention_fn of engine/prune.h) ---- */

struct cairn_pg_retention {
    cairn_pg_report_fn report; /* one summary line per system (may be NULL) */
    void *report_arg;
    uint64_t deleted, deleted_bytes, kept; /* accumulated over calls */
};
/* The forget hook for PostgreSQL sources (arg: a struct cairn_pg_retention or
 * NULL). For a source named "postgres:<system id>" or holding base backups:
 * after syncing the catalog with wal/<system id>/, deletes every archived
 * segment, .partial and .backup file whose segment number is below the start
 * segment of the oldest base backup of that system still in the repository
 * (under any source), on every timeline, object first, then its catalog row.
 * .history files are always kept (recovery to a later timeline reads them).
 * With no base backup of the system left, nothing is deleted. Other sources:
 * nothing. dry_run: counts and reports only. */
int cairn_pg_log_retention(void *arg, cairn_repo *r, const char *source,
                           const char *oldest_kept_id, int64_t oldest_kept_ns, int dry_run,
                           cairn_err *err);

#endif

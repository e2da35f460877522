/* catalog/catalog.h — the SQLite catalog: a fast, queryable index of a repository.
 *
 * The repository is the truth; the catalog can be deleted and rebuilt from it
 * (engine/repo.c does the syncing). This module is pure SQLite: schema,
 * migrations by PRAGMA user_version, inserts and queries. It knows nothing of
 * object formats.
 *
 * Ownership: cairn_catalog_open() returns a handle freed by cairn_catalog_free()
 * (NULL is fine). Strings in rows handed to callbacks are valid only during the
 * callback; cairn_catalog_get_snapshot() fills a row the caller releases with
 * cairn_snaprow_free().
 * Threading: one handle per thread (SQLite connections are not shared). Several
 * processes may use the same file at once (WAL mode, busy_timeout).
 * Files are created with mode 0600. */
#ifndef CAIRN_CATALOG_H
#define CAIRN_CATALOG_H

#include "../engine/util.h"

typedef struct cairn_catalog cairn_catalog;

/* Blob types stored in packs. */
enum cairn_blob_type { CAIRN_BLOB_DATA = 0, CAIRN_BLOB_TREE = 1 };

struct cairn_blob_loc {
    cairn_id pack;
    uint64_t offset;     /* within the pack */
    uint32_t stored_len; /* bytes in the pack */
    uint32_t raw_len;    /* bytes after decompression */
    uint8_t type;        /* enum cairn_blob_type */
    uint8_t flags;       /* bit 0: zstd-compressed */
};

/* A snapshot row. Strings are owned by the row (cairn_snaprow_free). */
struct cairn_snaprow {
    char id[CAIRN_HEX_LEN + 1];
    int64_t time_ns;
    char *source;
    char *hostname;
    char *tags;          /* comma-separated, may be "" */
    char *tree;          /* hex id of the root tree */
    char *parent;        /* hex id or "" */
    int partial;
    uint64_t files, bytes_read, bytes_new, bytes_stored, total_size;
    char *manifest;      /* the manifest JSON as stored in the repository */
};

typedef int (*cairn_snaprow_cb)(void *arg, const struct cairn_snaprow *row);
typedef int (*cairn_str_cb)(void *arg, const char *s);

/* Opens (creating if absent) and migrates. busy_timeout 30 s, WAL mode. */
int cairn_catalog_open(const char *path, cairn_catalog **out, cairn_err *err);
void cairn_catalog_free(cairn_catalog *cat);

/* Transactions (BEGIN IMMEDIATE); nesting is not supported. */
int cairn_catalog_begin(cairn_catalog *cat, cairn_err *err);
int cairn_catalog_commit(cairn_catalog *cat, cairn_err *err);
void cairn_catalog_rollback(cairn_catalog *cat);

/* Key/value facts about the repository (e.g. "repo_id"). get: *val malloc'd. */
int cairn_catalog_get_meta(cairn_catalog *cat, const char *key, char **val, cairn_err *err);
int cairn_catalog_set_meta(cairn_catalog *cat, const char *key, const char *val,
                           cairn_err *err);

/* Index objects loaded so far (by object name, e.g. the hex id). */
int cairn_catalog_has_index(cairn_catalog *cat, const char *index_id, cairn_err *err);
/* 1 = present, 0 = absent, <0 error */
int cairn_catalog_add_index(cairn_catalog *cat, const char *index_id, cairn_err *err);
int cairn_catalog_list_indexes(cairn_catalog *cat, cairn_str_cb cb, void *arg, cairn_err *err);
/* Removes the index and every pack/blob location recorded from it. */
int cairn_catalog_remove_index(cairn_catalog *cat, const char *index_id, cairn_err *err);

/* Packs and blob locations. A blob may live in several packs (two concurrent
 * backups may both store it); find returns any one of them. */
int cairn_catalog_add_pack(cairn_catalog *cat, const cairn_id *pack, uint64_t size,
                           const char *index_id, cairn_err *err);
int cairn_catalog_add_blob(cairn_catalog *cat, const cairn_id *blob,
                           const struct cairn_blob_loc *loc, cairn_err *err);
int cairn_catalog_find_blob(cairn_catalog *cat, const cairn_id *blob,
                            struct cairn_blob_loc *loc, cairn_err *err); /* CAIRN_NOTFOUND */
/* Every location of every blob in one pack, in offset order. */
typedef int (*cairn_blob_cb)(void *arg, const cairn_id *blob, const struct cairn_blob_loc *loc);
int cairn_catalog_pack_blobs(cairn_catalog *cat, const cairn_id *pack, cairn_blob_cb cb,
                             void *arg, cairn_err *err);
/* Every pack: id and size. */
typedef int (*cairn_pack_cb)(void *arg, const cairn_id *pack, uint64_t size);
int cairn_catalog_list_packs(cairn_catalog *cat, cairn_pack_cb cb, void *arg, cairn_err *err);
int cairn_catalog_count(cairn_catalog *cat, const char *table, uint64_t *n, cairn_err *err);

/* Session scratch for a backup in progress: blobs already queued for storing by
 * this process but not yet in any pack (a TEMP table, spills to disk, so memory
 * stays bounded). mark returns 1 if it was already marked, 0 if newly marked. */
int cairn_catalog_pending_mark(cairn_catalog *cat, const cairn_id *blob, cairn_err *err);
/* Forgets every mark. Call at the start of each backup on a reused handle, so
 * marks left by a failed backup (blobs never stored) do not hide blobs. */
int cairn_catalog_pending_clear(cairn_catalog *cat, cairn_err *err);

/* Snapshots. */
int cairn_catalog_add_snapshot(cairn_catalog *cat, const struct cairn_snaprow *row,
                               cairn_err *err); /* replaces a row with the same id */
int cairn_catalog_has_snapshot(cairn_catalog *cat, const char *id, cairn_err *err);
int cairn_catalog_remove_snapshot(cairn_catalog *cat, const char *id, cairn_err *err);
/* Oldest first. source NULL = all. */
int cairn_catalog_list_snapshots(cairn_catalog *cat, const char *source, cairn_snaprow_cb cb,
                                 void *arg, cairn_err *err);
/* By unique id prefix (>= 1 char), or "latest" (newest, of source if given).
 * CAIRN_NOTFOUND if none; CAIRN_FAILED with "ambiguous" in the message if the
 * prefix matches several. */
int cairn_catalog_get_snapshot(cairn_catalog *cat, const char *spec, const char *source,
                               struct cairn_snaprow *out, cairn_err *err);
void cairn_snaprow_free(struct cairn_snaprow *row);

/* Empties everything derived from the store (indexes, packs, blob locations,
 * snapshots, WAL segments, binlogs) for a full rebuild; keeps meta, jobs and
 * policies. One transaction (a savepoint inside an open one). */
int cairn_catalog_clear(cairn_catalog *cat, cairn_err *err);

/* Job history. */
int cairn_catalog_job_start(cairn_catalog *cat, const char *kind, const char *source,
                            int64_t *job_id, cairn_err *err);
int cairn_catalog_job_finish(cairn_catalog *cat, int64_t job_id, const char *status,
                             const char *message, const char *snapshot_id, cairn_err *err);

/* A consistent copy of the live database (SQLite backup API) into dest. */
int cairn_catalog_backup_to(cairn_catalog *cat, const char *dest, cairn_err *err);

/* ---- PostgreSQL WAL archive (catalog_wal.c): the wal_segments table ----
 * One row per file archived under wal/<system-id>/<timeline>/<name>: WAL
 * segments, .partial segments, timeline .history and .backup history files.
 * Rows are plain values (no pointers): fixed-size strings, NUL-terminated.
 * The key is (system_id, timeline, segment); WAL file names have a fixed
 * width, so listing in key order is LSN order within a timeline. */
#define CAIRN_WAL_SYSID_MAX 24   /* decimal uint64 + NUL */
#define CAIRN_WAL_NAME_MAX 64
#define CAIRN_WAL_KEY_MAX 160
#define CAIRN_WAL_SUM_MAX 80

struct cairn_walrow {
    char system_id[CAIRN_WAL_SYSID_MAX];   /* decimal */
    uint32_t timeline;
    char segment[CAIRN_WAL_NAME_MAX];      /* the file name as PostgreSQL names it */
    uint64_t start_lsn, end_lsn;           /* byte positions (LSNs) it covers */
    uint64_t size;                         /* raw size in bytes */
    char checksum[CAIRN_WAL_SUM_MAX];      /* "sha256:<hex>" of the raw file */
    char object_key[CAIRN_WAL_KEY_MAX];
    int has_commit;                        /* min/max_commit_ns are set */
    int64_t min_commit_ns, max_commit_ns;  /* commit/abort record times seen in it */
};
typedef int (*cairn_walrow_cb)(void *arg, const struct cairn_walrow *row);

/* Inserts or replaces the row with the same key. */
int cairn_catalog_wal_put(cairn_catalog *cat, const struct cairn_walrow *row, cairn_err *err);
/* CAIRN_NOTFOUND if there is no such row. */
int cairn_catalog_wal_get(cairn_catalog *cat, const char *system_id, uint32_t timeline,
                          const char *segment, struct cairn_walrow *out, cairn_err *err);
int cairn_catalog_wal_remove(cairn_catalog *cat, const char *system_id, uint32_t timeline,
                             const char *segment, cairn_err *err);
/* In key order. system_id NULL = every system; timeline 0 = every timeline.
 * cb returns non-zero to stop (that value is returned). */
int cairn_catalog_wal_list(cairn_catalog *cat, const char *system_id, uint32_t timeline,
                           cairn_walrow_cb cb, void *arg, cairn_err *err);

/* ---- prune working set (catalog_prune.c) ----
 * engine/prune.c decides what to delete with SQL over TEMP tables of this
 * handle's connection: trees visited and blobs referenced by the snapshots,
 * the packs present in the store, and per pack its used and unused bytes.
 * temp_store=FILE, so they spill to disk and memory does not grow with the
 * number of blobs. The persistent tables are only read.
 *
 * A session is opened on a catalog handle and freed before it (free accepts
 * NULL and drops the TEMP tables). One session per handle at a time, used by
 * the handle's thread. List functions read a page of rows, close the
 * statement, then call cb per row: a callback may call into the catalog (even
 * write to it), but must not start another list of the same session. */
typedef struct cairn_catalog_prune cairn_catalog_prune;

enum cairn_prune_action {
    CAIRN_PRUNE_KEEP = 0,        /* indexed pack, stays as it is */
    CAIRN_PRUNE_KEEP_YOUNG = 1,  /* would go, but is younger than the grace period */
    CAIRN_PRUNE_DELETE = 2,      /* indexed, no used blob: deleted */
    CAIRN_PRUNE_REPACK = 3,      /* used blobs copied into new packs, then deleted */
    CAIRN_PRUNE_FORGET = 4,      /* indexed but missing from the store, no used blob:
                                    dropped from the indexes */
    CAIRN_PRUNE_UNINDEXED = 5,   /* in the store, in no index: deleted */
    CAIRN_PRUNE_UNINDEXED_YOUNG = 6 /* ... but younger than the grace period: left */
};

struct cairn_prune_pack {
    cairn_id id;
    uint64_t size;                /* as indexed; as listed for unindexed packs */
    uint64_t blobs, used_blobs;   /* blob entries, and those chosen as the live copy */
    uint64_t blob_bytes, used_bytes; /* their stored bytes */
    int in_store, indexed;
    int64_t first_seen_ns;        /* when this catalog first loaded an index naming it */
    int action;                   /* enum cairn_prune_action */
};
typedef int (*cairn_prune_pack_cb)(void *arg, const struct cairn_prune_pack *p);

struct cairn_prune_totals {
    uint64_t live_blobs;     /* distinct blobs the snapshots reference */
    uint64_t missing_blobs;  /* ... of which no pack present in the store holds a copy */
    cairn_id first_missing;  /* one of them, for the message */
};

int cairn_catalog_prune_open(cairn_catalog *cat, cairn_catalog_prune **out, cairn_err *err);
void cairn_catalog_prune_free(cairn_catalog_prune *pr);
/* Groups the marking statements into one transaction (deferred: the main
 * tables are only read). begin = 1 starts, 0 commits. */
int cairn_catalog_prune_batch(cairn_catalog_prune *pr, int begin, cairn_err *err);
/* A tree reached by the walk: 1 = first visit (it is now marked live too),
 * 0 = already visited (skip its subtrees), <0 error. */
int cairn_catalog_prune_visit(cairn_catalog_prune *pr, const cairn_id *tree, cairn_err *err);
/* A blob some snapshot references. */
int cairn_catalog_prune_live(cairn_catalog_prune *pr, const cairn_id *blob, cairn_err *err);
/* A pack present in the store (from a listing of data/). */
int cairn_catalog_prune_store_pack(cairn_catalog_prune *pr, const cairn_id *pack, uint64_t size,
                                   cairn_err *err);
/* After the walk and the listing: picks one copy of every live blob (in a
 * pack present in the store: the one with the most live bytes, then the
 * lowest id) as "used", and computes per pack
 * (indexed or present) its used and unused bytes. Actions start as KEEP for
 * indexed packs and UNINDEXED for the others. */
int cairn_catalog_prune_analyze(cairn_catalog_prune *pr, struct cairn_prune_totals *t,
                                cairn_err *err);

enum cairn_prune_list {
    CAIRN_PRUNE_LIST_ALL = 0,    /* every pack, by id */
    CAIRN_PRUNE_LIST_WASTE = 1,  /* indexed, present, partly used: largest unused share first */
    CAIRN_PRUNE_LIST_ACTION = 2, /* with the given action, by id */
    CAIRN_PRUNE_LIST_REINDEX = 3 /* kept (KEEP, KEEP_YOUNG) packs that some index being
                                    removed names: they need a new index entry */
};
int cairn_catalog_prune_list(cairn_catalog_prune *pr, enum cairn_prune_list which, int action,
                             cairn_prune_pack_cb cb, void *arg, cairn_err *err);
int cairn_catalog_prune_set_action(cairn_catalog_prune *pr, const cairn_id *pack, int action,
                                   cairn_err *err);
/* The used blobs of one pack, in offset order (paged, so cb may write). */
int cairn_catalog_prune_used_blobs(cairn_catalog_prune *pr, const cairn_id *pack,
                                   cairn_blob_cb cb, void *arg, cairn_err *err);
/* Marks every index object that names a pack leaving the index (DELETE,
 * REPACK, FORGET); *n = how many. Then lists them by name. */
int cairn_catalog_prune_mark_indexes(cairn_catalog_prune *pr, uint64_t *n, cairn_err *err);
int cairn_catalog_prune_list_indexes(cairn_catalog_prune *pr, cairn_str_cb cb, void *arg,
                                     cairn_err *err);

/* ---- MariaDB/MySQL binlog archive (catalog_binlog.c): the binlogs table ----
 * One row per binlog file archived under binlog/<server>/<file name>.
 * server_uuid holds the server's UUID (MySQL, from auto.cnf) or its decimal
 * server_id (MariaDB). gtids is text: "<Gtid_list at the start>;<ranges>",
 * each part comma-separated MariaDB GTIDs, ranges "D-S-N..D-S-M" per domain
 * (either part may be empty). Plain values, fixed-size NUL-terminated strings.
 * Listing is in (server_uuid, file) order; binlog file names have a
 * fixed-width number, so that is sequence order per base name. */
#define CAIRN_BINLOG_SERVER_MAX 64
#define CAIRN_BINLOG_NAME_MAX 256
#define CAIRN_BINLOG_GTIDS_MAX 2048

struct cairn_binlogrow {
    char server_uuid[CAIRN_BINLOG_SERVER_MAX];
    char file[CAIRN_BINLOG_NAME_MAX];
    uint64_t start_pos, end_pos;          /* first and past-the-last event byte */
    int has_times;                        /* first/last_event_ns are set */
    int64_t first_event_ns, last_event_ns;
    char gtids[CAIRN_BINLOG_GTIDS_MAX];
    char object_key[CAIRN_WAL_KEY_MAX + CAIRN_BINLOG_NAME_MAX];
    uint64_t size;
    char checksum[CAIRN_WAL_SUM_MAX];     /* "sha256:<hex>" of the raw file */
};
typedef int (*cairn_binlogrow_cb)(void *arg, const struct cairn_binlogrow *row);

/* Inserts or replaces the row with the same (server_uuid, file). */
int cairn_catalog_binlog_put(cairn_catalog *cat, const struct cairn_binlogrow *row,
                             cairn_err *err);
/* CAIRN_NOTFOUND if there is no such row. */
int cairn_catalog_binlog_get(cairn_catalog *cat, const char *server, const char *file,
                             struct cairn_binlogrow *out, cairn_err *err);
int cairn_catalog_binlog_remove(cairn_catalog *cat, const char *server, const char *file,
                                cairn_err *err);
/* In key order; server NULL = every server. cb returns non-zero to stop (that
 * value is returned). */
int cairn_catalog_binlog_list(cairn_catalog *cat, const char *server, cairn_binlogrow_cb cb,
                              void *arg, cairn_err *err);

#endif

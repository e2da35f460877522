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

#endif

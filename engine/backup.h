/* engine/backup.h — the backup pipeline: walk, read, chunk, hash, dedup,
 * compress, pack, store; then index objects and the snapshot manifest.
 *
 * Threads: the calling thread walks the tree, reads files, chunks and hashes
 * them and looks each chunk up in the catalog; `workers` threads compress new
 * chunks, append them to packs and store finished packs. The queue between
 * them is bounded, so memory does not depend on the amount of data.
 * Files whose dev/inode/size/mtime/ctime match the parent snapshot (the newest
 * of the same source) are reused without being read.
 *
 * Ownership: options stay the caller's. The result is filled in.
 * Nothing is printed: warnings (one per file that could not be read, naming it)
 * go to opts->warn; the snapshot is then marked partial with the list. */
#ifndef CAIRN_BACKUP_H
#define CAIRN_BACKUP_H

#include <jansson.h>

#include "repo.h"

typedef void (*cairn_backup_warn_fn)(void *arg, const char *msg);
/* done = logical bytes of the files covered so far (read or reused);
 * expected = the parent snapshot's total, 0 when there is no parent. */
typedef void (*cairn_backup_progress_fn)(void *arg, uint64_t files, uint64_t bytes_read,
                                         uint64_t bytes_new, uint64_t done, uint64_t expected,
                                         const char *current);

struct cairn_backup_opts {
    const char *const *paths;
    size_t n_paths;
    const char *source;              /* NULL = "<hostname>:<absolute paths>" */
    const char *const *tags;
    size_t n_tags;
    const char *const *excludes;     /* globs: on the relative path, or on the name */
    size_t n_excludes;
    int workers;                     /* 0 = online CPUs */
    int force_read;                  /* read every file even if unchanged */
    int ignore_device;               /* match the parent by inode without the device
                                      * number: each btrfs/LVM snapshot mounts with a
                                      * new one while inodes and times are kept */
    const char *consistency;         /* NULL = "none" (a live read) */
    json_t *extra;                   /* merged into the manifest (borrowed) */
    cairn_backup_warn_fn warn;
    void *warn_arg;
    cairn_backup_progress_fn progress;
    void *progress_arg;
    /* Called once every byte is stored and indexed, just before the manifest
     * is written; it may add to or change the manifest (a database's stop
     * position and backup_label, say). Anything but CAIRN_OK aborts the
     * backup: no snapshot is written (the stored data stays indexed). */
    int (*before_manifest)(void *arg, json_t *manifest, cairn_err *err);
    void *before_manifest_arg;
    /* A stream instead of paths (n_paths must then be 0): everything read
     * from stream_fd until end of file is stored as the one file stream_name
     * at the top of the snapshot (mode 0600, the caller's uid/gid, the time
     * of the backup), chunked and deduplicated like any file, with bounded
     * memory (nothing is spooled to disk). The fd stays the caller's.
     * stream_tap (may be NULL) sees every block as it is read, in order;
     * anything but CAIRN_OK from it aborts the backup. The manifest gets
     * "stream": stream_name and an empty "paths". */
    const char *stream_name;
    int stream_fd;
    int (*stream_tap)(void *arg, const uint8_t *data, size_t len, cairn_err *err);
    void *stream_tap_arg;
    /* Polled before each directory entry and every read block (1 MiB), and
     * once more before the manifest: nonzero cancels the backup with
     * CAIRN_FAILED ("backup cancelled"), and no snapshot is written (data
     * already stored stays indexed, as after any error). NULL: never. */
    int (*cancel)(void *arg);
    void *cancel_arg;
};

struct cairn_backup_result {
    char id[CAIRN_HEX_LEN + 1];
    char parent[CAIRN_HEX_LEN + 1];
    uint64_t files, dirs, others, reused;
    uint64_t bytes_read;    /* file bytes read from disk */
    uint64_t bytes_new;     /* bytes of chunks not yet in the repository */
    uint64_t bytes_stored;  /* bytes written into packs (after compression) */
    uint64_t total_size;    /* logical size of all files in the snapshot */
    uint64_t errors;
    int partial;
    double duration;
};

/* CAIRN_OK (check result->partial) or an error; on error no snapshot is
 * written (packs already stored are indexed, so a rerun reuses them). */
int cairn_backup_run(cairn_repo *r, const struct cairn_backup_opts *opts,
                     struct cairn_backup_result *result, cairn_err *err);

/* ---- the pipeline's packer and index writer, for other engine code ----
 * A blob writer stores blobs of a repository the way a backup does: blobs
 * the repository (or this writer) already has are skipped, new ones are
 * compressed by `workers` threads into packs of the repository's pack size,
 * stored, and named by index objects (every 16 packs or 8192 blobs, and at
 * finish). Memory is bounded by the queue, not by the amount of data.
 * Used by engine/copy.c; cairn_backup_run() runs on the same pipeline.
 *
 * Ownership: the writer is freed by cairn_blob_writer_free() (NULL is fine),
 * which stops the workers and indexes what was stored if finish was not
 * called (nothing half-written is ever indexed). Bytes given to add are
 * copied. Threading: one thread calls these functions; the repository's
 * catalog is shared with the workers under its lock (engine/internal.h). */
typedef struct cairn_blob_writer cairn_blob_writer;

struct cairn_blob_writer_stats {
    uint64_t bytes_new;    /* raw bytes of data blobs the repository lacked */
    uint64_t bytes_stored; /* bytes of the packs written */
};

/* Starts the workers (0 = online CPUs). Clears the catalog's pending marks of
 * earlier writers on this handle. */
int cairn_blob_writer_new(cairn_repo *r, int workers, cairn_blob_writer **out, cairn_err *err);
/* Queues one blob of `type` (CAIRN_BLOB_DATA or CAIRN_BLOB_TREE) and gives its
 * id in the repository's keyed hash. A tree is hashed here, so *id is set on
 * return; a data blob is hashed by a worker, which writes *id later: *id
 * must stay valid, and is only to be read, after cairn_blob_writer_wait() or
 * _finish() returned CAIRN_OK. Returns a store or catalog error of any
 * worker (the writer is then failed). */
int cairn_blob_writer_add(cairn_blob_writer *w, uint8_t type, const void *data, size_t len,
                          cairn_id *id, cairn_err *err);
/* Waits until every data blob queued so far has its id. */
int cairn_blob_writer_wait(cairn_blob_writer *w, cairn_err *err);
/* Stores the last pack and writes index objects for every pack stored: once
 * this returns CAIRN_OK, every blob added is stored, indexed and in the
 * catalog, so a snapshot may name it. The writer then only accepts free. */
int cairn_blob_writer_finish(cairn_blob_writer *w, struct cairn_blob_writer_stats *st,
                             cairn_err *err);
void cairn_blob_writer_free(cairn_blob_writer *w);

#endif

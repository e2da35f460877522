/* engine/copy.h — copy snapshots from one repository into another (an
 * off-site copy: 3-2-1 backups).
 *
 * Two repositories hash with different chunk keys (and may differ in
 * encryption, chunker parameters, compression level and pack size), so a blob
 * keeps its bytes but not its id: every data blob a snapshot names is read
 * from the source (verified against its source id), hashed with the
 * destination's key and stored there unless the destination already has it
 * (the backup pipeline's blob writer, engine/backup.h); every tree is then
 * rewritten with the new ids and stored the same way. Chunk boundaries stay
 * as they are. The destination manifest is the source's with "tree" and
 * "parent" translated and "copied_from": {"repo", "snapshot"} added
 * (docs/repository-format.md), so a rerun skips what was copied.
 *
 * Reading is saved where the destination already holds the data: within a
 * run, a memo maps source ids to destination ids (trees and chunks; bounded,
 * forgotten when full); across runs, a snapshot whose source parent was
 * copied before is walked beside that parent and its copy, so unchanged
 * directories and files are taken from the earlier copy without reading them
 * (the same idea as backup's parent snapshot), and changed files reuse the
 * chunks they share with it.
 *
 * Crash safety: a snapshot's manifest is written only after all its blobs are
 * stored and indexed; data stored by a killed copy is indexed (or left as
 * unindexed packs that prune removes), and a rerun reuses what is indexed.
 * Leases: a shared lease on the destination (operation "copy"), like a
 * backup, and a shared lease on the source, like restore (skipped when the
 * source cannot be written), so a prune on either side waits.
 *
 * Ownership: options and callbacks stay the caller's; nothing is printed.
 * Threading: one thread calls; the blob writer runs its own workers, and
 * `readers` threads read source blobs (cairn_repo_load_blob_v is thread-safe). */
#ifndef CAIRN_COPY_H
#define CAIRN_COPY_H

#include "repo.h"

enum cairn_copy_status {
    CAIRN_COPY_COPIED = 0,  /* written into the destination */
    CAIRN_COPY_SKIPPED = 1, /* the destination has a copy already (dst_id names it) */
    CAIRN_COPY_WOULD = 2,   /* dry run: would be copied */
    CAIRN_COPY_FAILED = 3   /* err says why; nothing was written for it */
};

struct cairn_copy_item {
    enum cairn_copy_status status;
    const char *src_id;     /* full hex ids */
    const char *dst_id;     /* "" unless COPIED or SKIPPED */
    const char *source;     /* the snapshot's source name */
    int64_t time_ns;
    uint64_t files;         /* files in the snapshot (its manifest's count) */
    uint64_t bytes_read;    /* raw bytes of data blobs read from the source */
    uint64_t bytes_new;     /* ... of which the destination lacked */
    uint64_t bytes_stored;  /* pack bytes written into the destination */
    const cairn_err *err;   /* FAILED only */
};

typedef void (*cairn_copy_cb)(void *arg, const struct cairn_copy_item *it);

struct cairn_copy_opts {
    const char *const *snaps;  /* snapshot specs (id prefix, "latest"); none = all */
    size_t n_snaps;
    const char *source;        /* only snapshots of this source (and "latest" of it) */
    const char *const *tags;   /* only snapshots carrying one of these tags */
    size_t n_tags;
    int dry_run;               /* decide and report, write nothing (no leases taken) */
    int workers;               /* destination blob writer threads; 0 = online CPUs */
    int readers;               /* threads reading the source in parallel; 0 = 4 */
    cairn_copy_cb on_item;     /* once per selected snapshot, in copy order */
    void *arg;
    /* While a snapshot is copied, at most 4 times a second: which one (n of
     * count), the source bytes read for it so far, and the file being read. */
    void (*progress)(void *arg, size_t n, size_t count, const char *src_id,
                     uint64_t bytes_read, const char *path);
};

struct cairn_copy_result {
    uint64_t selected, copied, skipped, failed;
    uint64_t bytes_read, bytes_new, bytes_stored;
};

/* Copies the selected snapshots of src into dst, oldest first. CAIRN_OK when
 * every one was copied or skipped; CAIRN_FAILED when some failed (each
 * reported through on_item, naming the damaged object; the others went on);
 * another code (err set) when nothing could be done: the two are the same
 * repository, an unknown snapshot spec, a lease refused, a destination
 * store error. */
int cairn_copy_run(cairn_repo *src, cairn_repo *dst, const struct cairn_copy_opts *opts,
                   struct cairn_copy_result *res, cairn_err *err);

#endif

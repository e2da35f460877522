/* restore/restore.h — restoring snapshots to disk and streaming them as archives.
 *
 * cairn_restore() writes a snapshot (or the parts matching include globs) under
 * a target directory: plain files and directories of a restore into an empty
 * target by dirfd-relative system calls that never follow a symlink, the rest
 * through libarchive's archive_write_disk with the secure flags. Nothing is
 * ever written outside the target (no "..", no absolute paths, no writes
 * through symlinks). cairn_dump() writes a snapshot (or one
 * path in it) as a tar/pax/zip stream to a file descriptor.
 *
 * Ownership: options and snapshots stay the caller's. Warnings (one per file
 * that could not be restored, naming it and why) go to opts->warn.
 * Threading: one call at a time per repository handle; a restore starts its own
 * worker threads that read and decompress blobs ahead of the writer.
 * Note: cairn_restore() changes the process's working directory for its
 * duration (archive_write_disk resolves relative paths from it) and puts it back. */
#ifndef CAIRN_RESTORE_H
#define CAIRN_RESTORE_H

#include "../engine/repo.h"

typedef void (*cairn_warn_fn)(void *arg, const char *msg);
/* Progress: called now and then with totals so far (for a progress line). */
typedef void (*cairn_progress_fn)(void *arg, uint64_t files, uint64_t bytes,
                                  uint64_t total_files, uint64_t total_bytes);

struct cairn_restore_opts {
    const char *target;          /* created if missing */
    const char *const *includes; /* fnmatch globs on snapshot-relative paths; NULL/0 = all */
    size_t n_includes;
    int overwrite;               /* allow a non-empty target; replace entries */
    int workers;                 /* blob readers; 0 = default (number of CPUs, >= 2) */
    int numeric_owner;           /* ignore user/group names, use uid/gid */
    int verify_full;             /* recompute every chunk's keyed hash (default: the
                                  * zstd frame checksum and size, see repo.h) */
    cairn_warn_fn warn;
    void *warn_arg;
    cairn_progress_fn progress;
    void *progress_arg;
};

struct cairn_restore_stats {
    uint64_t files, dirs, other, bytes, failed;
};

/* CAIRN_OK; CAIRN_WARN when some entries failed (each reported through warn,
 * the rest restored); other codes when the restore could not run at all. */
int cairn_restore(cairn_repo *r, const struct cairn_snapshot *snap,
                  const struct cairn_restore_opts *opts, struct cairn_restore_stats *st,
                  cairn_err *err);

/* format: "tar" (GNU tar), "pax" (POSIX pax, the default), "zip". path NULL or
 * "" = the whole snapshot. */
int cairn_dump(cairn_repo *r, const struct cairn_snapshot *snap, const char *path,
               const char *format, int fd, cairn_warn_fn warn, void *warn_arg, cairn_err *err);

/* The bytes of one regular file of the snapshot (path as in the snapshot,
 * e.g. "mariabackup.xbstream"), verified chunk by chunk, written to fd in
 * order with bounded memory. *written (may be NULL) = bytes written. The
 * caller should ignore SIGPIPE when fd is a pipe to another program. */
int cairn_cat_file(cairn_repo *r, const struct cairn_snapshot *snap, const char *path, int fd,
                   uint64_t *written, cairn_err *err);

#endif

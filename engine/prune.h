/* engine/prune.h — forgetting snapshots, retagging them, and pruning: giving
 * back the space of data no snapshot references (docs/retention.md).
 *
 * forget removes snapshot manifests (snapshots/<id>) chosen by a retention
 * policy (policy.h), per source; nothing else is touched, so it is quick and
 * needs no lock. prune then deletes what no remaining snapshot references:
 *
 *   1. under the exclusive lease (lock.h; the catalog is synced after taking
 *      it), every snapshot's trees are walked once — visited trees and every
 *      referenced blob go into TEMP tables of the catalog, so memory does not
 *      grow with the repository;
 *   2. data/ is listed; per pack, SQL over the catalog gives used and unused
 *      bytes (one copy of each live blob counts as used);
 *   3. packs with no used blob are deleted; partly used packs are repacked
 *      (their used blobs copied, verified, into new packs), most wasteful
 *      first, until the unused share left is at most --max-unused, within
 *      --max-repack-size; packs in no index (left by interrupted runs) are
 *      deleted; nothing younger than the grace period is deleted or repacked.
 *
 * Crash-safe order — a kill -9 anywhere leaves a repository `check
 * --read-data` passes, every snapshot intact:
 *   (a) new packs, then index objects naming the new packs and every kept
 *       pack of each index object that names a pack being removed;
 *   (b) those old index objects are deleted;
 *   (c) the removed packs are deleted.
 * Before (b) a pack being removed is still fully indexed; during (b) every
 * live blob is indexed by a new object; during (c) no index names a pack
 * being deleted. Leftovers of a crash are packs in no index (harmless, the
 * next prune deletes them) and blobs indexed twice (harmless).
 *
 * Test hook: with CAIRN_PRUNE_CRASH_AT=N in the environment, prune calls
 * _exit(137) right before its Nth store mutation (each pack or index put,
 * each delete, and the release of its lock count as one), as a kill -9 would.
 * Only the crash tests set it.
 *
 * Log retention (WAL, binlog objects) belongs to the database layers: forget
 * calls opts->log_retention once per source after removing its snapshots
 * (see cairn_log_retention_fn). prune never touches wal/ or binlog/.
 *
 * Ownership: options are the caller's; results are filled in; reports are
 * passed as strings valid during the call. Nothing here prints or exits
 * (except the test hook above).
 * Threading: one call at a time per repo handle. */
#ifndef CAIRN_PRUNE_H
#define CAIRN_PRUNE_H

#include "policy.h"
#include "repo.h"

/* ---- forget ---- */

/* One snapshot of a group, as forget decided. */
struct cairn_forget_item {
    char id[CAIRN_HEX_LEN + 1];
    int64_t time_ns;
    const char *hostname;                 /* valid during the report */
    const char *tags;                     /* comma-separated, valid during the report */
    struct cairn_policy_result decision;  /* decision.keep; reasons */
};

/* The snapshots of one source, newest first. */
struct cairn_forget_group {
    const char *source;
    const struct cairn_forget_item *items;
    size_t n, n_keep, n_remove;
    const char *refused; /* non-NULL: nothing removed in this group, and why */
};
typedef void (*cairn_forget_report_fn)(void *arg, const struct cairn_forget_group *g);

/* The log retention hook. Called once per source that forget looked at, after
 * its snapshots were removed (also with dry_run, to report), with the oldest
 * snapshot of that source still kept (oldest_kept_id NULL and time 0 when
 * none is left). The database layers remove WAL segments / binlogs older than
 * what restoring that snapshot (and any point after it) needs; nothing needed
 * by a kept snapshot may go. Return CAIRN_OK or an error (forget reports it;
 * the snapshots stay removed). */
typedef int (*cairn_log_retention_fn)(void *arg, cairn_repo *r, const char *source,
                                      const char *oldest_kept_id, int64_t oldest_kept_ns,
                                      int dry_run, cairn_err *err);

/* Called (not with dry_run) right before a snapshot chosen for removal is
 * removed, with its id: the caller releases what the snapshot records
 * outside the repository (the agent deletes the CSI VolumeSnapshot it
 * created) so that nothing is released while its record is kept. Return
 * CAIRN_OK to remove the snapshot, CAIRN_RETRY to keep it this time (counted
 * in deferred; it is then treated as kept, also for log retention), anything
 * else to stop forget with that error. */
typedef int (*cairn_before_remove_fn)(void *arg, cairn_repo *r, const char *id, cairn_err *err);

struct cairn_forget_opts {
    const struct cairn_policy *policy; /* NULL with ids */
    const char *source;                /* NULL = every source, each by itself */
    const char *const *ids;            /* or: remove exactly these (unique id prefixes) */
    size_t n_ids;
    int dry_run;
    int64_t now_ns;                    /* 0 = the clock */
    cairn_forget_report_fn report;     /* per group, before anything is removed */
    void *report_arg;
    cairn_log_retention_fn log_retention; /* NULL = none registered */
    void *log_retention_arg;
    cairn_before_remove_fn before_remove; /* NULL = remove without asking */
    void *before_remove_arg;
};

struct cairn_forget_result {
    uint64_t groups, kept, removed, refused_groups;
    uint64_t deferred; /* chosen for removal, kept because before_remove said not yet */
};

/* Refuses an empty policy (CAIRN_FAILED, nothing removed): without any rule
 * every snapshot not tagged would go. A policy of keep tags only that would
 * remove every snapshot of a source refuses that source (reported). By ids:
 * every id is resolved first (an unknown or ambiguous one removes nothing),
 * and a pinned snapshot (tag "keep") is refused until the tag is removed. */
int cairn_forget(cairn_repo *r, const struct cairn_forget_opts *o,
                 struct cairn_forget_result *res, cairn_err *err);

/* ---- tags ---- */

/* Snapshots are immutable: this writes a new manifest with the tags changed
 * and "original" set to the first manifest's id, then deletes the old object.
 * A crash in between leaves both (the same tree twice: harmless; `cairn tag`
 * again or `forget` tidies up). new_id gets the new id (the old one when the
 * tags did not change). */
int cairn_snapshot_retag(cairn_repo *r, const char *spec, const char *const *add, size_t n_add,
                         const char *const *remove, size_t n_remove,
                         char old_id[CAIRN_HEX_LEN + 1], char new_id[CAIRN_HEX_LEN + 1],
                         cairn_err *err);

/* ---- prune ---- */

struct cairn_prune_opts {
    double max_unused_pct;    /* unused share tolerated after prune, of all pack data
                                 (default 10; >= 100 = unlimited) ... */
    int64_t max_unused_bytes; /* ... or, when >= 0, an absolute number of bytes */
    uint64_t max_repack_bytes;/* total size of packs repacked; 0 = no limit */
    int64_t grace_ns;         /* packs younger than this are never deleted (default 1 h) */
    int64_t lock_wait_ns;     /* wait this long for other leases to go (default 0) */
    int dry_run;              /* plan and report only: no lock, no change */
    int verbose;              /* report every pack, not only the summary */
    void (*report)(void *arg, const char *line);
    void *report_arg;
};

struct cairn_prune_result {
    uint64_t snapshots, trees, live_blobs;
    uint64_t packs, pack_bytes;           /* packs present and indexed before */
    uint64_t used_bytes, unused_bytes;    /* their blob bytes, before */
    uint64_t deleted_packs, deleted_bytes;     /* packs with no used blob */
    uint64_t repacked_packs, repacked_bytes;   /* packs rewritten (their old size) */
    uint64_t written_packs, written_bytes;     /* new packs */
    uint64_t unindexed_packs, unindexed_bytes; /* leftovers in no index, deleted */
    uint64_t young_packs, young_bytes;         /* spared by the grace period */
    uint64_t forgotten_packs;                  /* missing, unused: dropped from the indexes */
    uint64_t indexes_written, indexes_deleted;
    uint64_t freed_bytes;                      /* net bytes given back */
    uint64_t unused_after;                     /* unused bytes left in kept packs */
};

void cairn_prune_opts_init(struct cairn_prune_opts *o);
/* "10%", "0", "200M", "unlimited" into o->max_unused_*. */
int cairn_prune_parse_unused(const char *text, struct cairn_prune_opts *o, cairn_err *err);
/* "1G", "512M", "100K", "123" (binary multiples; B, KiB, MiB... accepted). */
int cairn_parse_size(const char *text, uint64_t *bytes, cairn_err *err);

int cairn_prune(cairn_repo *r, const struct cairn_prune_opts *o, struct cairn_prune_result *res,
                cairn_err *err);

#endif

/* restore/pipeline.h — internal to restore/: walks a snapshot in depth-first
 * name order and reads its file content ahead on worker threads.
 *
 * A walker thread loads trees and queues one item per selected entry (and one
 * chunk job per content chunk, in order); worker threads load and decompress
 * the chunks (cairn_repo_load_blob) into a bounded ring; the consumer (the
 * thread that called rs_pipe_start) takes items and their chunks in walk order.
 * At most RS_BYTES_IN_FLIGHT bytes of loaded chunks wait in the ring, so memory
 * does not grow with the size of the snapshot.
 *
 * Selection: either everything under one start path (dump), or the entries
 * matching include globs (restore). Glob semantics: fnmatch(3) with
 * FNM_PATHNAME on the snapshot-relative path ("etc/hosts"), after dropping a
 * leading "/" or "./" and trailing "/" from the glob; '*' does not cross '/',
 * and a leading '.' needs no special match. An entry is selected when it
 * matches a glob or lies under a matched directory; the directories above a
 * selected entry are queued too (with their metadata from the snapshot), just
 * before the first selected entry under them.
 *
 * Hard links: a link whose target (its first occurrence) is selected is queued
 * as a link (item->link). When the target is not selected, the target's node is
 * looked up in the trees and this first selected link gets its content; later
 * links to the same target point at it instead. With links_as_copies (zip,
 * which has no hard links) every link is queued with the target's content.
 *
 * Ownership: items and chunk data belong to the pipeline; an item is valid until
 * the next rs_pipe_next(), chunk data until the next rs_pipe_chunk()/next().
 * Threading: all rs_pipe_* calls from the thread that started it. Warnings found
 * by the walker (a tree that cannot be read, an unusable hard link) come out as
 * RS_WARN items, in walk order, so callbacks only ever run on that thread. */
#ifndef CAIRN_RESTORE_PIPELINE_H
#define CAIRN_RESTORE_PIPELINE_H

#include "../engine/repo.h"

#define RS_BYTES_IN_FLIGHT (16u << 20)

enum rs_kind { RS_ENTRY = 0, RS_WARN };

struct rs_item {
    enum rs_kind kind;
    char *path;             /* snapshot-relative, no leading '/' */
    char *link;             /* RS_ENTRY: hard link to this path (no content), or NULL */
    char *msg;              /* RS_WARN: "cannot restore 'x': why" style text */
    struct cairn_node node; /* RS_ENTRY: the entry's metadata and chunk list */
    /* internal */
    uint64_t chunk_first;   /* sequence number of its first chunk job */
    size_t n_jobs;          /* chunk jobs queued for it */
};

struct rs_select {
    const char *start;             /* dump: a path; NULL/"" = the whole snapshot */
    const char *const *globs;      /* restore: include globs; NULL/0 = everything */
    size_t n_globs;
    int links_as_copies;
    const char *verb;              /* for messages: "restore", "dump" */
    int verify_full;               /* recompute every chunk's keyed hash */
};

typedef struct rs_pipe rs_pipe;

/* Loads the start tree (and resolves sel->start) before returning, so a
 * missing path (CAIRN_NOTFOUND, naming it) or an unreadable root tree is
 * returned here. workers <= 0 = the number of online CPUs (at least 2). */
int rs_pipe_start(cairn_repo *r, const struct cairn_snapshot *snap,
                  const struct rs_select *sel, int workers, rs_pipe **out, cairn_err *err);

/* The next item, or NULL at the end. Chunks of the previous item that were not
 * taken are dropped. */
struct rs_item *rs_pipe_next(rs_pipe *p);

/* The next content chunk of the current item: CAIRN_OK with *data and *len (valid
 * until the next call); RS_END when it has no more; otherwise the load error
 * (< 0; the message names the pack) — the item's remaining chunks are then
 * dropped without being read. */
#define RS_END 1
int rs_pipe_chunk(rs_pipe *p, const uint8_t **data, size_t *len, cairn_err *err);

/* Stops the threads and frees everything. NULL is fine. */
void rs_pipe_free(rs_pipe *p);

/* Why a snapshot-relative path may not be written, or NULL if it is fine:
 * absolute, empty, "." or ".." components. */
const char *rs_path_problem(const char *path);

#endif

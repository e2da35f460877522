/* engine/repo.h — an open repository: store + config + catalog, and the blob
 * and snapshot layer the rest of Cairn builds on.
 *
 * Opening a repository reads `config`, opens the local catalog and brings it up
 * to date with the store (new index/ and snapshots/ objects are loaded, vanished
 * ones dropped). The store is the truth; the catalog is a cache of it.
 *
 * Ownership: cairn_repo_open() returns a handle freed by cairn_repo_free()
 * (NULL is fine). Snapshots from cairn_repo_snapshot_get() are freed with
 * cairn_snapshot_free(). Blob buffers belong to the caller.
 * Threading: cairn_repo_load_blob() and cairn_repo_load_tree() may be called from
 * several threads at once (the catalog connection is guarded inside). Everything
 * else: one thread at a time. */
#ifndef CAIRN_REPO_H
#define CAIRN_REPO_H

#include <jansson.h>

#include "../catalog/catalog.h"
#include "../uploaders/store.h"
#include "tree.h"
#include "util.h"

#define CAIRN_FORMAT_VERSION 1

typedef struct cairn_repo cairn_repo;

struct cairn_repo_config {
    char id[CAIRN_HEX_LEN + 1];
    int version;
    uint8_t chunk_key[32];   /* key of the keyed chunk-id hash */
    uint8_t gear_key[32];    /* the chunker's gear table key (= chunk_key unless encrypted) */
    int encrypted;           /* objects are sealed (engine/crypto.h); keys from keys/ */
    uint32_t chunk_min, chunk_avg, chunk_max;
    int zstd_level;
    uint64_t pack_size;      /* target pack size */
};

/* Creates a repository at url. CAIRN_EXISTS if one is already there. */
int cairn_repo_init(const char *url, cairn_err *err);
int cairn_repo_init_with(const char *url, const struct cairn_store_opts *opts, cairn_err *err);
/* The same, encrypted when `encrypt` is set: the password comes from
 * opts->password_file or $CAIRN_PASSWORD_FILE (engine/crypto.h). */
int cairn_repo_init_ex(const char *url, const struct cairn_store_opts *opts, int encrypt,
                       cairn_err *err);

/* catalog_path NULL = the default ($CAIRN_CATALOG, else
 * $XDG_CACHE_HOME/cairn/<repo-id>/catalog.db, else ~/.cache/...). */
int cairn_repo_open(const char *url, const char *catalog_path, cairn_repo **out,
                    cairn_err *err);
/* The same with store options (NULL = defaults). An encrypted repository is
 * unlocked with opts->password_file or $CAIRN_PASSWORD_FILE. */
int cairn_repo_open_with(const char *url, const char *catalog_path,
                         const struct cairn_store_opts *opts, cairn_repo **out, cairn_err *err);
void cairn_repo_free(cairn_repo *r);
/* The default catalog path for a repository id (see cairn_repo_open); the
 * caller frees it. */
char *cairn_default_catalog_path(const char *repo_id);

cairn_store *cairn_repo_store(cairn_repo *r);
cairn_catalog *cairn_repo_catalog(cairn_repo *r);
const struct cairn_repo_config *cairn_repo_config(cairn_repo *r);
const char *cairn_repo_catalog_path(cairn_repo *r);

/* Loads the catalog from the store: index/ and snapshots/ objects not yet
 * loaded are read, ones no longer in the store are dropped. `full` empties the
 * catalog first (catalog rebuild). */
int cairn_repo_sync(cairn_repo *r, int full, cairn_err *err);

/* The keyed chunk-id hash. */
void cairn_repo_hash(const cairn_repo *r, const void *data, size_t len, cairn_id *out);

/* Reads a blob by id: finds it in the catalog, reads its bytes from the pack,
 * decompresses, and verifies the id. CAIRN_NOTFOUND (not in any index),
 * CAIRN_CORRUPT (verification failed; the message names the pack), or a store
 * error (e.g. the pack is missing: the message names the pack). */
int cairn_repo_load_blob(cairn_repo *r, const cairn_id *id, cairn_buf *out, cairn_err *err);
/* How much a load verifies: FULL recomputes the keyed hash and compares it with
 * the id (what check --read-data and log fetches use); FRAME trusts the zstd
 * frame's content checksum and the recorded size (about twice as fast; the
 * restore default for file data — damage is still detected, only a blob
 * deliberately replaced by someone who can write the repository is not). */
enum cairn_verify { CAIRN_VERIFY_FULL = 0, CAIRN_VERIFY_FRAME = 1 };
int cairn_repo_load_blob_v(cairn_repo *r, const cairn_id *id, enum cairn_verify v, cairn_buf *out,
                           cairn_err *err);
int cairn_repo_load_tree(cairn_repo *r, const cairn_id *id, struct cairn_tree *t,
                         cairn_err *err);

/* Snapshot manifests. The JSON object is the manifest as stored; accessors
 * below read the common fields. */
struct cairn_snapshot {
    char id[CAIRN_HEX_LEN + 1];
    json_t *json;       /* owned */
    int64_t time_ns;
    cairn_id tree;
    const char *source; /* point into json */
    const char *hostname;
    int partial;
    struct cairn_node root; /* the root directory's own metadata (name "") */
};

/* By spec: a unique id prefix, or "latest" (of source, if given). */
int cairn_repo_snapshot_get(cairn_repo *r, const char *spec, const char *source,
                            struct cairn_snapshot **out, cairn_err *err);
/* Parses a manifest object (for sync, check and rebuild). */
int cairn_snapshot_parse(const char *id, const uint8_t *data, size_t len,
                         struct cairn_snapshot **out, cairn_err *err);
void cairn_snapshot_free(struct cairn_snapshot *s);

/* Whether the snapshot's data is in the repository. 1: yes (a normal
 * snapshot). 0: the snapshot only records a storage snapshot (an agent
 * snapshot with "snapshot": {"data": "reference"}: a CSI VolumeSnapshot or an
 * exec command's handle) and its tree is empty; `where` (if given) then says
 * which storage snapshot holds the data and how to restore it. */
int cairn_snapshot_has_data(const struct cairn_snapshot *s, char *where, size_t where_len);

/* Walks a snapshot's tree depth-first in name order, calling cb for every node
 * with its path relative to the snapshot root ("a/b/c"). The root itself is not
 * passed. cb returns 0 to go on, 1 to skip a directory's children, <0 to stop.
 * A tree that cannot be loaded is reported through on_error (path of the
 * directory, message) and skipped, unless on_error is NULL (then it stops). */
typedef int (*cairn_walk_cb)(void *arg, const char *path, const struct cairn_node *n);
typedef void (*cairn_walk_err_cb)(void *arg, const char *path, const cairn_err *e);
int cairn_repo_walk(cairn_repo *r, const cairn_id *tree, cairn_walk_cb cb,
                    cairn_walk_err_cb on_error, void *arg, cairn_err *err);

#endif

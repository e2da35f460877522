/* engine/lock.h — repository leases: what keeps prune and backups apart.
 *
 * Everything in a repository is immutable except during prune, which deletes
 * packs and indexes. A backup must not dedup against a blob that a prune is
 * about to delete, and a prune must not delete what a running backup is about
 * to reference. So:
 *   - a backup holds a SHARED lease (any number at once);
 *   - prune holds the EXCLUSIVE lease: it refuses while any other live lease
 *     exists, and backups refuse while it holds it.
 * A lease is an object `locks/<random id>` holding JSON
 *   {"version":1, "kind":"shared"|"exclusive", "operation":"backup",
 *    "host":..., "pid":..., "time_ns":..., "expires_ns":..., "boot_id":...,
 *    "pid_ns":..., "start_ticks":...}
 * Acquiring writes one's own lease first and then lists the others: of two
 * processes racing, at least one sees the other (the store must give
 * read-after-write listings, as local directories and S3 do), and a refused
 * process removes its lease again. After a lease is acquired, the catalog is
 * brought up to date with the store (cairn_repo_sync), so everything decided
 * from it afterwards (a backup's dedup, prune's plan) reflects every prune or
 * backup that finished before.
 *
 * A lease expires at expires_ns (time_ns + ttl, default 1 h) unless its
 * holder refreshes it: a background thread rewrites it every ttl/12 (5 min),
 * so a long backup keeps it. A lease is stale — ignored, and removed by
 * `cairn unlock` — when it has expired, or when it was written on this host
 * (same boot, same PID namespace) by a process that no longer exists (a
 * kill -9). Clocks of different hosts should agree to well within the ttl.
 *
 * Ownership: cairn_lock_acquire() returns a handle; cairn_lock_release()
 * removes the lease and frees the handle (NULL is fine).
 * Threading: a handle is used by the thread that took it (its refresher is
 * internal); the repo's store must be thread-safe (every backend is). Nothing
 * here prints. */
#ifndef CAIRN_LOCK_H
#define CAIRN_LOCK_H

#include "repo.h"

#define CAIRN_LOCK_TTL_NS (3600LL * 1000000000LL)
#define CAIRN_LOCK_MAX (64u << 10) /* largest lock object read */

enum cairn_lock_kind { CAIRN_LOCK_SHARED = 0, CAIRN_LOCK_EXCLUSIVE = 1 };

typedef struct cairn_lock cairn_lock;

struct cairn_lock_opts {
    const char *operation; /* "backup", "prune": named to whoever is refused */
    int64_t wait_ns;       /* keep retrying this long while refused (0 = refuse at once) */
    int64_t ttl_ns;        /* lease length; 0 = CAIRN_LOCK_TTL_NS */
    int no_sync;           /* do not bring the catalog up to date after acquiring */
};

/* Takes a lease (opts NULL = defaults). CAIRN_RETRY when a conflicting live
 * lease exists: the message names it (kind, operation, host, pid, since when,
 * until when) and says what to do. */
int cairn_lock_acquire(cairn_repo *r, enum cairn_lock_kind kind,
                       const struct cairn_lock_opts *opts, cairn_lock **out, cairn_err *err);
/* CAIRN_OK while the lease is known to be held: the last refresh succeeded
 * recently enough that it cannot have expired. Call before destructive steps. */
int cairn_lock_check(cairn_lock *l, cairn_err *err);
/* Stops refreshing, deletes the lease object, frees l. err may be NULL. */
int cairn_lock_release(cairn_lock *l, cairn_err *err);
/* The lease's object key ("locks/<id>"). */
const char *cairn_lock_key(const cairn_lock *l);

/* Every lease in the repository. */
struct cairn_lock_info {
    char key[128];          /* "locks/<id>" */
    int readable;           /* 0: the object could not be parsed (fields empty) */
    int exclusive;
    char operation[32];
    char host[256];
    int64_t pid;
    int64_t time_ns, expires_ns;
    int stale;              /* expired, or its local process is gone */
    const char *why_stale;  /* "expired", "process is gone" (static), or NULL */
};
typedef int (*cairn_lock_cb)(void *arg, const struct cairn_lock_info *info);
int cairn_lock_list(cairn_repo *r, cairn_lock_cb cb, void *arg, cairn_err *err);
/* Deletes one lease object by key (for `cairn unlock`). */
int cairn_lock_remove(cairn_repo *r, const char *key, cairn_err *err);
/* "exclusive lock 'locks/ab12…' of prune on host h (pid 12), since <time>,
 * expires <time>" into out. */
void cairn_lock_describe(const struct cairn_lock_info *info, char *out, size_t outlen);

#endif

/* agent/pg.h — PostgreSQL: continuous WAL archiving (archive_command) and
 * app-consistent base backups.
 *
 * The format of archived WAL objects, name and LSN arithmetic and the read
 * side (fetch, catalog sync, restore planning) live in restore/pitr_pg.h,
 * which this module uses to write the same format.
 *
 * Ownership: cairn_pg_archive_open() returns a handle freed with
 * cairn_pg_archive_free() (NULL is fine). Options stay the caller's; results
 * are filled in. Nothing here prints or exits: errors come back in cairn_err,
 * naming the file, object or server that failed.
 * Threading: one thread per archive handle (it holds a catalog connection). */
#ifndef CAIRN_AGENT_PG_H
#define CAIRN_AGENT_PG_H

#include <stdint.h>

#include "../engine/backup.h"
#include "../restore/pitr_pg.h"

/* ---- WAL segment contents ---- */

#define CAIRN_PG_MAX_RP 16

struct cairn_pg_segscan {
    uint64_t sysid;          /* xlp_sysid of the long page header */
    uint64_t segment_size;   /* xlp_seg_size */
    uint32_t block_size;     /* xlp_xlog_blcksz */
    uint16_t page_magic;     /* XLOG_PAGE_MAGIC: tells the server version */
    uint64_t end_lsn;        /* end of the last complete record that starts here */
    uint32_t records;        /* records that start in this file */
    int switched;            /* an XLOG_SWITCH record ends the useful part */
    int has_commit;          /* commit/abort records seen: their time range */
    int64_t min_commit_ns, max_commit_ns;
    uint32_t n_rp;           /* restore points (pg_create_restore_point) */
    struct {
        char name[64];
        uint64_t lsn;
        int64_t time_ns;
    } rp[CAIRN_PG_MAX_RP];
};

/* Reads a segment's long page header (it must describe a segment starting at
 * start_lsn of len bytes) and walks the records that start in it, collecting
 * commit times and restore points. CAIRN_CORRUPT when the header is not a
 * valid first page for that position. */
int cairn_pg_segment_scan(const uint8_t *d, size_t len, uint64_t start_lsn,
                          struct cairn_pg_segscan *out, cairn_err *err);

/* ---- the archive, opened lightly (config + store + catalog) ---- */

typedef struct cairn_pg_archive cairn_pg_archive;

/* Opens the store at url and reads its config (no index or snapshot sync, so
 * it costs a few milliseconds). catalog_path NULL = the default catalog
 * ($CAIRN_CATALOG, else $XDG_CACHE_HOME/cairn/<repo id>/catalog.db, else
 * ~/.cache/...); with_catalog 0 = no catalog at all. */
int cairn_pg_archive_open(const char *url, const struct cairn_store_opts *so,
                          const char *catalog_path, int with_catalog, cairn_pg_archive **out,
                          cairn_err *err);
void cairn_pg_archive_free(cairn_pg_archive *a);
cairn_store *cairn_pg_archive_store(cairn_pg_archive *a);
cairn_catalog *cairn_pg_archive_catalog(cairn_pg_archive *a); /* NULL without one */

/* ---- wal-push ---- */

struct cairn_pg_push_opts {
    const char *pgdata;     /* for global/pg_control; NULL = the current directory
                             * (archive_command runs there) */
    const char *system_id;  /* NULL = from pg_control / the segment header */
    int level;              /* zstd level, 0 = 1 */
    /* Test hook: called at "stored" (object durable, catalog not yet written). */
    void (*stage)(void *arg, const char *stage);
    void *stage_arg;
};

struct cairn_pg_push_result {
    struct cairn_pg_walmeta meta;
    char key[CAIRN_WAL_KEY_MAX];
    int already;            /* an identical copy was archived before */
    uint64_t stored;        /* object bytes */
};

/* Archives the file at path: compress, store under wal/<sysid>/<tli>/<name>,
 * flush, then record in the catalog (if the handle has one). An identical
 * file already archived is success (already = 1); a different file under an
 * existing name is CAIRN_EXISTS and nothing is written. */
int cairn_pg_wal_push(cairn_pg_archive *a, const char *path, const struct cairn_pg_push_opts *o,
                      struct cairn_pg_push_result *res, cairn_err *err);

/* ---- base backups ---- */

struct cairn_pg_backup_opts {
    const char *pgdata;     /* the server's data directory, readable by us */
    const char *dsn;        /* libpq connection string */
    const char *source;     /* NULL = "postgres:<system id>" */
    const char *label;      /* NULL = "cairn <time>" */
    const char *const *tags;
    size_t n_tags;
    int workers;
    cairn_backup_warn_fn warn;
    void *warn_arg;
    cairn_backup_progress_fn progress;
    void *progress_arg;
};

struct cairn_pg_backup_result {
    struct cairn_backup_result backup; /* backup.id is the snapshot */
    char system_id[CAIRN_WAL_SYSID_MAX];
    uint32_t timeline;
    uint64_t start_lsn, stop_lsn;
    int server_version;
};

/* pg_backup_start (fast checkpoint) in one session held open, the data
 * directory through the engine (without pg_wal/ contents, postmaster.pid,
 * temporary and runtime files), pg_backup_stop waiting for the WAL to be
 * archived, then the snapshot manifest with backup_label and tablespace_map
 * byte for byte, the LSN range, timeline, system id and server version
 * (consistency "app"). */
int cairn_pg_backup(cairn_repo *r, const struct cairn_pg_backup_opts *o,
                    struct cairn_pg_backup_result *res, cairn_err *err);

/* ---- the session alone (the agent's snapshot-based base backups) ----
 *
 * cairn_pg_backup() is these with a file copy of PGDATA in between. The agent
 * cuts a snapshot of the volume between start and stop instead, and stores
 * the same "postgres" manifest section, so `cairn restore-pg` restores either.
 * A session is one libpq connection held open; freeing it before stop aborts
 * the server-side backup. One thread per session. */
typedef struct cairn_pg_session cairn_pg_session;

/* Connects with PQconnectdbParams(keywords, values, expand_dbname=1) (the
 * values may hold a password: they are never copied into messages), checks
 * the server (10+, archive_mode on, the system id of pgdata's pg_control),
 * runs pg_backup_start(label or "cairn <time>", fast checkpoint) and fills pg
 * (a JSON object) with system_id, timeline, start_lsn, start_time_ns,
 * server_version, segment_size, label, pgdata. */
int cairn_pg_session_start(const char *const *keywords, const char *const *values,
                           const char *pgdata, const char *label, json_t *pg,
                           cairn_pg_session **out, cairn_err *err);
/* pg_backup_stop (waiting for the WAL to be archived); adds timeline,
 * stop_lsn, stop_time_ns, backup_label and tablespace_map to pg. */
int cairn_pg_session_stop(cairn_pg_session *s, json_t *pg, cairn_err *err);
void cairn_pg_session_free(cairn_pg_session *s); /* NULL is fine */
/* Fills system_id, timeline, start/stop LSN and server_version of res. */
void cairn_pg_session_info(const cairn_pg_session *s, struct cairn_pg_backup_result *res);
/* What a base backup leaves out of PGDATA (globs for cairn_backup_opts). */
const char *const *cairn_pg_backup_excludes(size_t *n);

/* ---- wal-push --batch ---- */

/* Was this very file archived before (by a batch, say)? 1 when the catalog
 * records it with the same size and SHA-256 AND the stored object's metadata
 * says the same (res filled, already = 1); 0 when not known (push it);
 * < 0 on errors. Needs the system id (o->system_id or pg_control). */
int cairn_pg_wal_already(cairn_pg_archive *a, const char *path,
                         const struct cairn_pg_push_opts *o, struct cairn_pg_push_result *res,
                         cairn_err *err);

#define CAIRN_PG_BATCH_MAX_JOBS 16

struct cairn_pg_batch_opts {
    int jobs;       /* threads, 0 = 4 (at most CAIRN_PG_BATCH_MAX_JOBS) */
    int max_extra;  /* other .ready segments pushed per call, 0 = 4 x jobs */
};

struct cairn_pg_batch_result {
    int fast;                      /* answered from an earlier push */
    uint64_t extra_pushed, extra_already, extra_failed;
};

/* archive_command with a batch: if `path` is already archived
 * (cairn_pg_wal_already) returns at once; otherwise pushes it together with
 * up to max_extra other files marked .ready in <dir of path>/archive_status
 * (oldest first), with `jobs` threads, each with its own archive handle.
 * The result and error are those of `path` alone: a failed extra push is
 * only counted (PostgreSQL asks for that file later and it is pushed then).
 * .ready files are left alone (PostgreSQL renames them itself). */
int cairn_pg_wal_push_batch(const char *url, const struct cairn_store_opts *so,
                            const char *catalog_path, const char *path,
                            const struct cairn_pg_push_opts *o,
                            const struct cairn_pg_batch_opts *bo,
                            struct cairn_pg_push_result *res, struct cairn_pg_batch_result *br,
                            cairn_err *err);

#endif

/* catalog/catalog.c — see catalog.h.
 *
 * Layout of this file: the handle and its error helper; the schema as an array
 * of migrations (PRAGMA user_version counts how many are applied); open/free;
 * transactions; then one section per table. Statements run once per chunk
 * (find_blob, add_blob, pending_mark) and the other single-row statements are
 * prepared once and cached on the handle; queries that walk many rows through a
 * callback are prepared per call, so a callback may call back into the catalog
 * (even into the same query) without clobbering a cursor. */
#define _POSIX_C_SOURCE 200809L
#include "catalog.h"
#include "catalog_int.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUSY_TIMEOUT_MS 30000

/* ---- schema ----
 *
 * Migration i (0-based) takes the schema from user_version i to i + 1. Never
 * edit an entry once released: append a new one. All pending entries run in
 * one BEGIN IMMEDIATE transaction together with the user_version update, so a
 * crash or a concurrent opener never sees half a schema. */
static const char *const migrations[] = {
    /* 1: the initial schema */
    "CREATE TABLE meta("
    "  key   TEXT PRIMARY KEY NOT NULL,"
    "  value TEXT NOT NULL"
    ") WITHOUT ROWID;"

    "CREATE TABLE indexes("
    "  id        TEXT PRIMARY KEY NOT NULL,"
    "  loaded_ns INTEGER NOT NULL"
    ") WITHOUT ROWID;"

    "CREATE TABLE packs("
    "  id       BLOB PRIMARY KEY NOT NULL,"
    "  size     INTEGER NOT NULL,"
    "  index_id TEXT"
    ") WITHOUT ROWID;"

    "CREATE TABLE pack_refs("
    "  index_id TEXT NOT NULL,"
    "  pack     BLOB NOT NULL,"
    "  PRIMARY KEY(index_id, pack)"
    ") WITHOUT ROWID;"
    "CREATE INDEX pack_refs_pack ON pack_refs(pack);"

    "CREATE TABLE blob_locs("
    "  blob       BLOB NOT NULL,"
    "  pack       BLOB NOT NULL,"
    "  offset     INTEGER NOT NULL,"
    "  stored_len INTEGER NOT NULL,"
    "  raw_len    INTEGER NOT NULL,"
    "  type       INTEGER NOT NULL,"
    "  flags      INTEGER NOT NULL,"
    "  PRIMARY KEY(blob, pack)"
    ") WITHOUT ROWID;"
    "CREATE INDEX blob_locs_pack ON blob_locs(pack, offset);"

    "CREATE TABLE snapshots("
    "  id           TEXT PRIMARY KEY NOT NULL,"
    "  time_ns      INTEGER NOT NULL,"
    "  source       TEXT NOT NULL,"
    "  hostname     TEXT NOT NULL DEFAULT '',"
    "  tags         TEXT NOT NULL DEFAULT '',"
    "  tree         TEXT NOT NULL DEFAULT '',"
    "  parent       TEXT NOT NULL DEFAULT '',"
    "  partial      INTEGER NOT NULL DEFAULT 0,"
    "  files        INTEGER NOT NULL DEFAULT 0,"
    "  bytes_read   INTEGER NOT NULL DEFAULT 0,"
    "  bytes_new    INTEGER NOT NULL DEFAULT 0,"
    "  bytes_stored INTEGER NOT NULL DEFAULT 0,"
    "  total_size   INTEGER NOT NULL DEFAULT 0,"
    "  manifest     TEXT NOT NULL DEFAULT ''"
    ");"
    "CREATE INDEX snapshots_source_time ON snapshots(source, time_ns);"
    "CREATE INDEX snapshots_time ON snapshots(time_ns);"
    "CREATE VIEW sources AS"
    "  SELECT source, count(*) AS snapshots, min(time_ns) AS first_ns,"
    "         max(time_ns) AS last_ns, sum(total_size) AS total_size"
    "  FROM snapshots GROUP BY source;"

    "CREATE TABLE jobs("
    "  id          INTEGER PRIMARY KEY,"
    "  kind        TEXT NOT NULL,"
    "  source      TEXT,"
    "  started_ns  INTEGER NOT NULL,"
    "  finished_ns INTEGER,"
    "  status      TEXT NOT NULL,"
    "  message     TEXT,"
    "  snapshot_id TEXT"
    ");"
    "CREATE INDEX jobs_started ON jobs(started_ns);"

    "CREATE TABLE wal_segments("
    "  system_id     TEXT NOT NULL,"
    "  timeline      INTEGER NOT NULL,"
    "  segment       TEXT NOT NULL,"
    "  start_lsn     INTEGER NOT NULL,"
    "  end_lsn       INTEGER NOT NULL,"
    "  size          INTEGER NOT NULL,"
    "  checksum      TEXT NOT NULL,"
    "  object_key    TEXT NOT NULL,"
    "  min_commit_ns INTEGER,"
    "  max_commit_ns INTEGER,"
    "  PRIMARY KEY(system_id, timeline, segment)"
    ") WITHOUT ROWID;"

    "CREATE TABLE binlogs("
    "  server_uuid    TEXT NOT NULL,"
    "  file           TEXT NOT NULL,"
    "  start_pos      INTEGER NOT NULL,"
    "  end_pos        INTEGER NOT NULL,"
    "  first_event_ns INTEGER,"
    "  last_event_ns  INTEGER,"
    "  gtids          TEXT NOT NULL DEFAULT '',"
    "  object_key     TEXT NOT NULL,"
    "  size           INTEGER NOT NULL,"
    "  checksum       TEXT NOT NULL,"
    "  PRIMARY KEY(server_uuid, file)"
    ") WITHOUT ROWID;"

    "CREATE TABLE policies("
    "  namespace  TEXT NOT NULL,"
    "  pvc        TEXT NOT NULL,"
    "  schedule   TEXT NOT NULL DEFAULT '',"
    "  retention  TEXT NOT NULL DEFAULT '',"
    "  quiesce    TEXT NOT NULL DEFAULT '',"
    "  snapshot   TEXT NOT NULL DEFAULT '',"
    "  updated_ns INTEGER NOT NULL,"
    "  PRIMARY KEY(namespace, pvc)"
    ") WITHOUT ROWID;",
};

#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* Tables cairn_catalog_count() accepts. "pending" is the TEMP table. */
static const char *const countable[] = {
    "meta", "indexes", "packs", "pack_refs", "blob_locs", "snapshots",
    "jobs", "wal_segments", "binlogs", "policies", "pending",
};

/* ---- cached statements ---- */

enum stmt_id {
    ST_FIND_BLOB,
    ST_ADD_BLOB,
    ST_PENDING_MARK,
    ST_ADD_PACK,
    ST_ADD_PACK_REF,
    ST_GET_META,
    ST_SET_META,
    ST_DEL_META,
    ST_HAS_INDEX,
    ST_ADD_INDEX,
    ST_ADD_SNAPSHOT,
    ST_HAS_SNAPSHOT,
    ST_DEL_SNAPSHOT,
    ST_JOB_START,
    ST_JOB_FINISH,
    ST__COUNT
};

static const char *const stmt_sql[ST__COUNT] = {
    [ST_FIND_BLOB] = "SELECT pack, offset, stored_len, raw_len, type, flags"
                     " FROM blob_locs WHERE blob = ?1 LIMIT 1",
    [ST_ADD_BLOB] = "INSERT OR REPLACE INTO blob_locs"
                    "(blob, pack, offset, stored_len, raw_len, type, flags)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_PENDING_MARK] = "INSERT OR IGNORE INTO temp.pending(blob) VALUES (?1)",
    [ST_ADD_PACK] = "INSERT INTO packs(id, size, index_id) VALUES (?1, ?2, ?3)"
                    " ON CONFLICT(id) DO UPDATE SET size = excluded.size,"
                    " index_id = coalesce(packs.index_id, excluded.index_id)",
    [ST_ADD_PACK_REF] = "INSERT OR IGNORE INTO pack_refs(index_id, pack) VALUES (?1, ?2)",
    [ST_GET_META] = "SELECT value FROM meta WHERE key = ?1",
    [ST_SET_META] = "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
    [ST_DEL_META] = "DELETE FROM meta WHERE key = ?1",
    [ST_HAS_INDEX] = "SELECT 1 FROM indexes WHERE id = ?1",
    [ST_ADD_INDEX] = "INSERT OR IGNORE INTO indexes(id, loaded_ns) VALUES (?1, ?2)",
    [ST_ADD_SNAPSHOT] = "INSERT OR REPLACE INTO snapshots(id, time_ns, source, hostname, tags,"
                        " tree, parent, partial, files, bytes_read, bytes_new, bytes_stored,"
                        " total_size, manifest)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    [ST_HAS_SNAPSHOT] = "SELECT 1 FROM snapshots WHERE id = ?1",
    [ST_DEL_SNAPSHOT] = "DELETE FROM snapshots WHERE id = ?1",
    [ST_JOB_START] = "INSERT INTO jobs(kind, source, started_ns, status)"
                     " VALUES (?1, ?2, ?3, 'running')",
    [ST_JOB_FINISH] = "UPDATE jobs SET finished_ns = ?2, status = ?3, message = ?4,"
                      " snapshot_id = ?5 WHERE id = ?1",
};

#define SNAP_COLS                                                                        \
    "id, time_ns, source, hostname, tags, tree, parent, partial, files, bytes_read,"    \
    " bytes_new, bytes_stored, total_size, manifest"

struct cairn_catalog {
    sqlite3 *db;
    char *path;
    int pending_ready; /* the TEMP table exists */
    sqlite3_stmt *st[ST__COUNT];
};

/* ---- errors ---- */

static int map_rc(int src)
{
    switch (src & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return CAIRN_RETRY;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return CAIRN_CORRUPT;
    default:
        return CAIRN_FAILED;
    }
}

static const char *hint(int src)
{
    switch (src & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return " (another process held the catalog for too long; try again)";
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return " (delete the file and run 'cairn catalog rebuild')";
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
        return " (check the permissions of the file and its directory)";
    case SQLITE_FULL:
        return " (the disk is full)";
    default:
        return "";
    }
}

/* Fills err with "catalog 'PATH': WHAT: SQLITE MESSAGE (hint)" and returns the
 * graded code. src is the SQLite result code of the call that failed; the
 * handle's message is used only when it still describes that failure. */
static int sqlerr(cairn_catalog *cat, cairn_err *err, int src, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int sqlerr(cairn_catalog *cat, cairn_err *err, int src, const char *fmt, ...)
{
    char what[512];
    const char *msg;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (cat->db && sqlite3_extended_errcode(cat->db) == src)
        msg = sqlite3_errmsg(cat->db);
    else
        msg = sqlite3_errstr(src);
    return cairn_error(err, map_rc(src), "catalog '%s': %s: %s%s", cat->path, what, msg,
                       hint(src));
}

/* ---- small helpers ---- */

static sqlite3_stmt *stmt(cairn_catalog *cat, enum stmt_id id, cairn_err *err)
{
    if (!cat->st[id]) {
        int rc = sqlite3_prepare_v3(cat->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &cat->st[id], NULL);
        if (rc != SQLITE_OK) {
            sqlerr(cat, err, rc, "cannot prepare a statement");
            cat->st[id] = NULL;
            return NULL;
        }
    }
    return cat->st[id];
}

/* A statement prepared for one call (finalized by the caller). */
static sqlite3_stmt *prepare(cairn_catalog *cat, const char *sql, cairn_err *err)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(cat->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK) {
        sqlerr(cat, err, rc, "cannot prepare a statement");
        sqlite3_finalize(s);
        return NULL;
    }
    return s;
}

static int exec(cairn_catalog *cat, const char *sql, cairn_err *err, const char *what)
{
    int rc = sqlite3_exec(cat->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return sqlerr(cat, err, rc, "%s", what);
    return CAIRN_OK;
}

/* Switching a fresh file to WAL while another process reads it fails with
 * SQLITE_BUSY without going through the busy handler (SQLite will not wait
 * for a lock upgrade it could deadlock on), so such statements are retried
 * here, within the same 30 s budget. */
static int exec_retry(cairn_catalog *cat, const char *sql, cairn_err *err, const char *what)
{
    double deadline = cairn_mono() + BUSY_TIMEOUT_MS / 1000.0;
    int src, delay = 1;
    while ((src = sqlite3_exec(cat->db, sql, NULL, NULL, NULL)) != SQLITE_OK &&
           (src & 0xff) == SQLITE_BUSY && cairn_mono() < deadline) {
        sqlite3_sleep(delay);
        if (delay < 64)
            delay *= 2;
    }
    if (src != SQLITE_OK)
        return sqlerr(cat, err, src, "%s", what);
    return CAIRN_OK;
}

static void bind_id(sqlite3_stmt *s, int i, const cairn_id *id)
{
    sqlite3_bind_blob(s, i, id->b, CAIRN_ID_LEN, SQLITE_STATIC);
}

static void bind_text(sqlite3_stmt *s, int i, const char *t)
{
    if (t)
        sqlite3_bind_text(s, i, t, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

/* Reads a 32-byte id column; 0 if the column holds something else. */
static int col_id(sqlite3_stmt *s, int i, cairn_id *out)
{
    const void *p = sqlite3_column_blob(s, i);
    if (!p || sqlite3_column_bytes(s, i) != CAIRN_ID_LEN) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    memcpy(out->b, p, CAIRN_ID_LEN);
    return 1;
}

static const char *col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? (const char *)t : "";
}

/* The hex name of an id, for messages (full length, so it can be grepped). */
static void id_name(const cairn_id *id, char out[CAIRN_HEX_LEN + 1])
{
    cairn_id_hex(id, out);
}

/* Starts a unit of work that must be atomic: its own BEGIN IMMEDIATE when no
 * transaction is open, otherwise a savepoint inside the caller's. */
static int op_begin(cairn_catalog *cat, int *own, cairn_err *err)
{
    *own = sqlite3_get_autocommit(cat->db);
    return exec(cat, *own ? "BEGIN IMMEDIATE" : "SAVEPOINT cairn_op", err,
                "cannot start a transaction");
}

static int op_end(cairn_catalog *cat, int own, int rc, cairn_err *err)
{
    if (rc == CAIRN_OK) {
        rc = exec(cat, own ? "COMMIT" : "RELEASE cairn_op", err, "cannot commit");
        if (rc == CAIRN_OK)
            return rc;
    }
    if (own) {
        if (!sqlite3_get_autocommit(cat->db))
            sqlite3_exec(cat->db, "ROLLBACK", NULL, NULL, NULL);
    } else {
        sqlite3_exec(cat->db, "ROLLBACK TO cairn_op; RELEASE cairn_op", NULL, NULL, NULL);
    }
    return rc;
}

static char *parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *d;
    size_t n;
    if (!slash)
        return strdup(".");
    n = (size_t)(slash - path);
    if (n == 0)
        n = 1; /* "/x" → "/" */
    d = malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, path, n);
    d[n] = 0;
    return d;
}

/* ---- open, migrate, free ---- */

static int user_version(cairn_catalog *cat, int *v, cairn_err *err)
{
    sqlite3_stmt *s = prepare(cat, "PRAGMA user_version", err);
    int rc;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        rc = sqlerr(cat, err, rc, "cannot read the schema version");
        sqlite3_finalize(s);
        return rc;
    }
    *v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return CAIRN_OK;
}

static int migrate(cairn_catalog *cat, cairn_err *err)
{
    int v, rc;
    char sql[64];
    if ((rc = user_version(cat, &v, err)) != CAIRN_OK)
        return rc;
    if (v == SCHEMA_VERSION)
        return CAIRN_OK;
    if (v < SCHEMA_VERSION) {
        if ((rc = exec(cat, "BEGIN IMMEDIATE", err, "cannot start the schema migration")) !=
            CAIRN_OK)
            return rc;
        /* Another process may have migrated while we waited for the lock. */
        if ((rc = user_version(cat, &v, err)) != CAIRN_OK)
            goto fail;
        for (; v < SCHEMA_VERSION; v++) {
            int src = sqlite3_exec(cat->db, migrations[v], NULL, NULL, NULL);
            if (src != SQLITE_OK) {
                rc = sqlerr(cat, err, src, "cannot migrate the schema to version %d", v + 1);
                goto fail;
            }
        }
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
        if ((rc = exec(cat, sql, err, "cannot record the schema version")) != CAIRN_OK)
            goto fail;
        if ((rc = exec(cat, "COMMIT", err, "cannot commit the schema migration")) != CAIRN_OK)
            goto fail;
        return CAIRN_OK;
    }
    return cairn_error(err, CAIRN_FAILED,
                       "catalog '%s': schema version %d is newer than this cairn knows (%d)"
                       " (upgrade cairn, or delete the file and run 'cairn catalog rebuild')",
                       cat->path, v, SCHEMA_VERSION);
fail:
    if (!sqlite3_get_autocommit(cat->db))
        sqlite3_exec(cat->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int cairn_catalog_open(const char *path, cairn_catalog **out, cairn_err *err)
{
    cairn_catalog *cat;
    int rc, src, memory;
    *out = NULL;
    if (!path || !*path)
        return cairn_error(err, CAIRN_FAILED, "catalog: empty path");
    memory = strcmp(path, ":memory:") == 0;
    cat = calloc(1, sizeof *cat);
    if (!cat || !(cat->path = strdup(path))) {
        free(cat);
        return cairn_error(err, CAIRN_FATAL, "catalog '%s': out of memory", path);
    }

    if (!memory) {
        char *dir = parent_dir(path);
        int fd;
        if (!dir) {
            rc = cairn_error(err, CAIRN_FATAL, "catalog '%s': out of memory", path);
            goto fail;
        }
        rc = cairn_mkdir_p(dir, 0700, err);
        free(dir);
        if (rc != CAIRN_OK) {
            cairn_error_prefix(err, "catalog '%s'", path);
            goto fail;
        }
        /* Create the file ourselves so it is 0600 whatever the umask; SQLite
         * gives its -wal and -shm files the same mode. */
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            rc = cairn_error(err, CAIRN_FAILED, "catalog '%s': cannot create: %s", path,
                             strerror(errno));
            goto fail;
        }
        close(fd);
    }

    src = sqlite3_open_v2(path, &cat->db,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                          NULL);
    if (src != SQLITE_OK) {
        rc = sqlerr(cat, err, src, "cannot open");
        goto fail;
    }
    sqlite3_extended_result_codes(cat->db, 1);
    sqlite3_busy_timeout(cat->db, BUSY_TIMEOUT_MS);

    /* temp_store=FILE: the pending table spills to disk, memory stays bounded.
     * foreign_keys stays off: blob locations may arrive before their pack row. */
    if ((rc = exec_retry(cat, "PRAGMA journal_mode = WAL", err, "cannot switch to WAL mode")) ||
        (rc = exec(cat, "PRAGMA synchronous = NORMAL", err, "cannot set synchronous")) ||
        (rc = exec(cat, "PRAGMA temp_store = FILE", err, "cannot set temp_store")) ||
        (rc = exec(cat, "PRAGMA cache_size = -16384", err, "cannot set the cache size")) ||
        (rc = exec(cat, "PRAGMA foreign_keys = OFF", err, "cannot set foreign_keys")))
        goto fail;
    if ((rc = migrate(cat, err)) != CAIRN_OK)
        goto fail;
    *out = cat;
    return CAIRN_OK;
fail:
    cairn_catalog_free(cat);
    return rc;
}

void cairn_catalog_free(cairn_catalog *cat)
{
    int i;
    if (!cat)
        return;
    for (i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(cat->st[i]);
    sqlite3_close_v2(cat->db);
    free(cat->path);
    free(cat);
}

/* ---- transactions ---- */

int cairn_catalog_begin(cairn_catalog *cat, cairn_err *err)
{
    if (!sqlite3_get_autocommit(cat->db))
        return cairn_error(err, CAIRN_FAILED,
                           "catalog '%s': a transaction is already open (nesting is not"
                           " supported)",
                           cat->path);
    return exec(cat, "BEGIN IMMEDIATE", err, "cannot start a transaction");
}

int cairn_catalog_commit(cairn_catalog *cat, cairn_err *err)
{
    if (sqlite3_get_autocommit(cat->db))
        return cairn_error(err, CAIRN_FAILED, "catalog '%s': commit without a transaction",
                           cat->path);
    return exec(cat, "COMMIT", err, "cannot commit");
}

void cairn_catalog_rollback(cairn_catalog *cat)
{
    int i;
    if (!cat || sqlite3_get_autocommit(cat->db))
        return;
    for (i = 0; i < ST__COUNT; i++)
        if (cat->st[i])
            sqlite3_reset(cat->st[i]);
    sqlite3_exec(cat->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- meta ---- */

int cairn_catalog_get_meta(cairn_catalog *cat, const char *key, char **val, cairn_err *err)
{
    sqlite3_stmt *s = stmt(cat, ST_GET_META, err);
    int rc;
    *val = NULL;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    bind_text(s, 1, key);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *val = strdup(col_text(s, 0));
        sqlite3_reset(s);
        if (!*val)
            return cairn_error(err, CAIRN_FATAL, "catalog '%s': out of memory", cat->path);
        return CAIRN_OK;
    }
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return cairn_error(err, CAIRN_NOTFOUND, "catalog '%s': no value for '%s'", cat->path,
                           key);
    }
    rc = sqlerr(cat, err, rc, "cannot read '%s'", key);
    sqlite3_reset(s);
    return rc;
}

int cairn_catalog_set_meta(cairn_catalog *cat, const char *key, const char *val,
                           cairn_err *err)
{
    sqlite3_stmt *s = stmt(cat, val ? ST_SET_META : ST_DEL_META, err);
    int rc;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    bind_text(s, 1, key);
    if (val)
        bind_text(s, 2, val);
    rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        rc = sqlerr(cat, err, rc, "cannot set '%s'", key);
    else
        rc = CAIRN_OK;
    sqlite3_reset(s);
    return rc;
}

/* ---- indexes ---- */

/* Runs a cached "SELECT 1 ... WHERE key = ?1": 1 if a row exists, 0 if not. */
static int exists(cairn_catalog *cat, enum stmt_id id, const char *key, const char *what,
                  cairn_err *err)
{
    sqlite3_stmt *s = stmt(cat, id, err);
    int rc;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    bind_text(s, 1, key);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        rc = 1;
    else if (rc == SQLITE_DONE)
        rc = 0;
    else
        rc = sqlerr(cat, err, rc, "cannot look up %s '%s'", what, key);
    sqlite3_reset(s);
    return rc;
}

int cairn_catalog_has_index(cairn_catalog *cat, const char *index_id, cairn_err *err)
{
    return exists(cat, ST_HAS_INDEX, index_id, "index", err);
}

int cairn_catalog_add_index(cairn_catalog *cat, const char *index_id, cairn_err *err)
{
    sqlite3_stmt *s = stmt(cat, ST_ADD_INDEX, err);
    int rc;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    bind_text(s, 1, index_id);
    sqlite3_bind_int64(s, 2, cairn_now_ns());
    rc = sqlite3_step(s);
    rc = rc == SQLITE_DONE ? CAIRN_OK : sqlerr(cat, err, rc, "cannot add index '%s'", index_id);
    sqlite3_reset(s);
    return rc;
}

int cairn_catalog_list_indexes(cairn_catalog *cat, cairn_str_cb cb, void *arg, cairn_err *err)
{
    sqlite3_stmt *s = prepare(cat, "SELECT id FROM indexes ORDER BY id", err);
    int rc;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int r = cb(arg, col_text(s, 0));
        if (r != 0) {
            sqlite3_finalize(s);
            return r;
        }
    }
    rc = rc == SQLITE_DONE ? CAIRN_OK : sqlerr(cat, err, rc, "cannot list indexes");
    sqlite3_finalize(s);
    return rc;
}

/* A pack may be listed by several indexes (pack_refs); it and its blob
 * locations go only when the last index listing it goes. */
static const char *const remove_index_sql[] = {
    "DELETE FROM blob_locs WHERE pack IN (SELECT r.pack FROM pack_refs r"
    " WHERE r.index_id = ?1 AND NOT EXISTS (SELECT 1 FROM pack_refs o"
    " WHERE o.pack = r.pack AND o.index_id <> ?1))",
    "DELETE FROM packs WHERE id IN (SELECT r.pack FROM pack_refs r"
    " WHERE r.index_id = ?1 AND NOT EXISTS (SELECT 1 FROM pack_refs o"
    " WHERE o.pack = r.pack AND o.index_id <> ?1))",
    "UPDATE packs SET index_id = (SELECT o.index_id FROM pack_refs o"
    " WHERE o.pack = packs.id AND o.index_id <> ?1 LIMIT 1)"
    " WHERE index_id = ?1 AND id IN (SELECT pack FROM pack_refs WHERE index_id = ?1)",
    "DELETE FROM pack_refs WHERE index_id = ?1",
    "DELETE FROM indexes WHERE id = ?1",
};

int cairn_catalog_remove_index(cairn_catalog *cat, const char *index_id, cairn_err *err)
{
    int own, rc;
    size_t i;
    if ((rc = op_begin(cat, &own, err)) != CAIRN_OK)
        return rc;
    for (i = 0; rc == CAIRN_OK && i < sizeof remove_index_sql / sizeof *remove_index_sql; i++) {
        sqlite3_stmt *s = prepare(cat, remove_index_sql[i], err);
        int src;
        if (!s) {
            rc = err ? err->code : CAIRN_FAILED;
            break;
        }
        bind_text(s, 1, index_id);
        src = sqlite3_step(s);
        if (src != SQLITE_DONE)
            rc = sqlerr(cat, err, src, "cannot remove index '%s'", index_id);
        sqlite3_finalize(s);
    }
    return op_end(cat, own, rc, err);
}

/* ---- packs and blobs ---- */

int cairn_catalog_add_pack(cairn_catalog *cat, const cairn_id *pack, uint64_t size,
                           const char *index_id, cairn_err *err)
{
    sqlite3_stmt *s = stmt(cat, ST_ADD_PACK, err), *r = NULL;
    char name[CAIRN_HEX_LEN + 1];
    int own, rc, src;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    if (index_id && !(r = stmt(cat, ST_ADD_PACK_REF, err)))
        return err ? err->code : CAIRN_FAILED;
    if ((rc = op_begin(cat, &own, err)) != CAIRN_OK)
        return rc;
    id_name(pack, name);
    bind_id(s, 1, pack);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)size);
    bind_text(s, 3, index_id);
    src = sqlite3_step(s);
    if (src != SQLITE_DONE)
        rc = sqlerr(cat, err, src, "cannot add pack '%s'", name);
    sqlite3_reset(s);
    if (rc == CAIRN_OK && r) {
        bind_text(r, 1, index_id);
        bind_id(r, 2, pack);
        src = sqlite3_step(r);
        if (src != SQLITE_DONE)
            rc = sqlerr(cat, err, src, "cannot add pack '%s'", name);
        sqlite3_reset(r);
    }
    return op_end(cat, own, rc, err);
}

int cairn_catalog_add_blob(cairn_catalog *cat, const cairn_id *blob,
                           const struct cairn_blob_loc *loc, cairn_err *err)
{
    sqlite3_stmt *s = stmt(cat, ST_ADD_BLOB, err);
    int rc;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    bind_id(s, 1, blob);
    bind_id(s, 2, &loc->pack);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)loc->offset);
    sqlite3_bind_int64(s, 4, loc->stored_len);
    sqlite3_bind_int64(s, 5, loc->raw_len);
    sqlite3_bind_int(s, 6, loc->type);
    sqlite3_bind_int(s, 7, loc->flags);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        rc = CAIRN_OK;
    } else {
        char name[CAIRN_HEX_LEN + 1];
        id_name(blob, name);
        rc = sqlerr(cat, err, rc, "cannot add blob '%s'", name);
    }
    sqlite3_reset(s);
    return rc;
}

static void read_loc(sqlite3_stmt *s, int first, struct cairn_blob_loc *loc)
{
    /* columns from first: [pack,] offset, stored_len, raw_len, type, flags */
    loc->offset = (uint64_t)sqlite3_column_int64(s, first);
    loc->stored_len = (uint32_t)sqlite3_column_int64(s, first + 1);
    loc->raw_len = (uint32_t)sqlite3_column_int64(s, first + 2);
    loc->type = (uint8_t)sqlite3_column_int(s, first + 3);
    loc->flags = (uint8_t)sqlite3_column_int(s, first + 4);
}

int cairn_catalog_find_blob(cairn_catalog *cat, const cairn_id *blob,
                            struct cairn_blob_loc *loc, cairn_err *err)
{
    sqlite3_stmt *s = stmt(cat, ST_FIND_BLOB, err);
    char name[CAIRN_HEX_LEN + 1];
    int rc;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    bind_id(s, 1, blob);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        col_id(s, 0, &loc->pack);
        read_loc(s, 1, loc);
        sqlite3_reset(s);
        return CAIRN_OK;
    }
    id_name(blob, name);
    if (rc == SQLITE_DONE)
        rc = cairn_error(err, CAIRN_NOTFOUND, "catalog '%s': blob '%s' is in no pack",
                         cat->path, name);
    else
        rc = sqlerr(cat, err, rc, "cannot look up blob '%s'", name);
    sqlite3_reset(s);
    return rc;
}

int cairn_catalog_pack_blobs(cairn_catalog *cat, const cairn_id *pack, cairn_blob_cb cb,
                             void *arg, cairn_err *err)
{
    sqlite3_stmt *s = prepare(cat,
                              "SELECT blob, offset, stored_len, raw_len, type, flags"
                              " FROM blob_locs WHERE pack = ?1 ORDER BY offset",
                              err);
    int rc;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    bind_id(s, 1, pack);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        cairn_id blob;
        struct cairn_blob_loc loc;
        int r;
        col_id(s, 0, &blob);
        loc.pack = *pack;
        read_loc(s, 1, &loc);
        if ((r = cb(arg, &blob, &loc)) != 0) {
            sqlite3_finalize(s);
            return r;
        }
    }
    if (rc == SQLITE_DONE) {
        rc = CAIRN_OK;
    } else {
        char name[CAIRN_HEX_LEN + 1];
        id_name(pack, name);
        rc = sqlerr(cat, err, rc, "cannot list the blobs of pack '%s'", name);
    }
    sqlite3_finalize(s);
    return rc;
}

int cairn_catalog_list_packs(cairn_catalog *cat, cairn_pack_cb cb, void *arg, cairn_err *err)
{
    sqlite3_stmt *s = prepare(cat, "SELECT id, size FROM packs ORDER BY id", err);
    int rc;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        cairn_id id;
        int r;
        col_id(s, 0, &id);
        if ((r = cb(arg, &id, (uint64_t)sqlite3_column_int64(s, 1))) != 0) {
            sqlite3_finalize(s);
            return r;
        }
    }
    rc = rc == SQLITE_DONE ? CAIRN_OK : sqlerr(cat, err, rc, "cannot list packs");
    sqlite3_finalize(s);
    return rc;
}

static int pending_ensure(cairn_catalog *cat, cairn_err *err)
{
    int rc;
    if (cat->pending_ready)
        return CAIRN_OK;
    rc = exec(cat, "CREATE TEMP TABLE IF NOT EXISTS pending(blob BLOB PRIMARY KEY) WITHOUT ROWID",
              err, "cannot create the pending table");
    if (rc == CAIRN_OK)
        cat->pending_ready = 1;
    return rc;
}

int cairn_catalog_count(cairn_catalog *cat, const char *table, uint64_t *n, cairn_err *err)
{
    const char *name = NULL;
    char sql[80];
    sqlite3_stmt *s;
    size_t i;
    int rc;
    *n = 0;
    for (i = 0; table && i < sizeof countable / sizeof *countable; i++)
        if (strcmp(table, countable[i]) == 0)
            name = countable[i];
    if (!name)
        return cairn_error(err, CAIRN_FAILED, "catalog '%s': cannot count '%s': no such table",
                           cat->path, table ? table : "(null)");
    if (strcmp(name, "pending") == 0) {
        if ((rc = pending_ensure(cat, err)) != CAIRN_OK)
            return rc;
        name = "temp.pending";
    }
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", name);
    if (!(s = prepare(cat, sql, err)))
        return err ? err->code : CAIRN_FAILED;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *n = (uint64_t)sqlite3_column_int64(s, 0);
        rc = CAIRN_OK;
    } else {
        rc = sqlerr(cat, err, rc, "cannot count '%s'", table);
    }
    sqlite3_finalize(s);
    return rc;
}

int cairn_catalog_pending_mark(cairn_catalog *cat, const cairn_id *blob, cairn_err *err)
{
    sqlite3_stmt *s;
    int rc;
    if ((rc = pending_ensure(cat, err)) != CAIRN_OK)
        return rc;
    if (!(s = stmt(cat, ST_PENDING_MARK, err)))
        return err ? err->code : CAIRN_FAILED;
    bind_id(s, 1, blob);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        rc = sqlite3_changes(cat->db) == 0 ? 1 : 0;
    } else {
        char name[CAIRN_HEX_LEN + 1];
        id_name(blob, name);
        rc = sqlerr(cat, err, rc, "cannot mark blob '%s' pending", name);
    }
    sqlite3_reset(s);
    return rc;
}

int cairn_catalog_pending_clear(cairn_catalog *cat, cairn_err *err)
{
    int rc;
    if ((rc = pending_ensure(cat, err)) != CAIRN_OK)
        return rc;
    return exec(cat, "DELETE FROM temp.pending", err, "cannot clear the pending table");
}

/* ---- snapshots ---- */

static int is_hex_lower(const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return 0;
    return 1;
}

int cairn_catalog_add_snapshot(cairn_catalog *cat, const struct cairn_snaprow *row,
                               cairn_err *err)
{
    sqlite3_stmt *s;
    int rc;
    if (!row->id[0] || strlen(row->id) > CAIRN_HEX_LEN || !is_hex_lower(row->id))
        return cairn_error(err, CAIRN_FAILED,
                           "catalog '%s': cannot insert snapshot '%.*s': the id is not"
                           " lower-case hex",
                           cat->path, CAIRN_HEX_LEN, row->id);
    if (!(s = stmt(cat, ST_ADD_SNAPSHOT, err)))
        return err ? err->code : CAIRN_FAILED;
    bind_text(s, 1, row->id);
    sqlite3_bind_int64(s, 2, row->time_ns);
    bind_text(s, 3, row->source ? row->source : "");
    bind_text(s, 4, row->hostname ? row->hostname : "");
    bind_text(s, 5, row->tags ? row->tags : "");
    bind_text(s, 6, row->tree ? row->tree : "");
    bind_text(s, 7, row->parent ? row->parent : "");
    sqlite3_bind_int(s, 8, row->partial ? 1 : 0);
    sqlite3_bind_int64(s, 9, (sqlite3_int64)row->files);
    sqlite3_bind_int64(s, 10, (sqlite3_int64)row->bytes_read);
    sqlite3_bind_int64(s, 11, (sqlite3_int64)row->bytes_new);
    sqlite3_bind_int64(s, 12, (sqlite3_int64)row->bytes_stored);
    sqlite3_bind_int64(s, 13, (sqlite3_int64)row->total_size);
    bind_text(s, 14, row->manifest ? row->manifest : "");
    rc = sqlite3_step(s);
    rc = rc == SQLITE_DONE ? CAIRN_OK
                           : sqlerr(cat, err, rc, "cannot insert snapshot '%s'", row->id);
    sqlite3_reset(s);
    return rc;
}

int cairn_catalog_has_snapshot(cairn_catalog *cat, const char *id, cairn_err *err)
{
    return exists(cat, ST_HAS_SNAPSHOT, id, "snapshot", err);
}

int cairn_catalog_remove_snapshot(cairn_catalog *cat, const char *id, cairn_err *err)
{
    sqlite3_stmt *s = stmt(cat, ST_DEL_SNAPSHOT, err);
    int rc;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    bind_text(s, 1, id);
    rc = sqlite3_step(s);
    rc = rc == SQLITE_DONE ? CAIRN_OK : sqlerr(cat, err, rc, "cannot remove snapshot '%s'", id);
    sqlite3_reset(s);
    return rc;
}

/* A row whose strings point into the statement's current row. */
static void row_view(sqlite3_stmt *s, struct cairn_snaprow *row)
{
    const char *id = col_text(s, 0);
    size_t n = strlen(id);
    if (n > CAIRN_HEX_LEN)
        n = CAIRN_HEX_LEN;
    memcpy(row->id, id, n);
    row->id[n] = 0;
    row->time_ns = sqlite3_column_int64(s, 1);
    row->source = (char *)col_text(s, 2);
    row->hostname = (char *)col_text(s, 3);
    row->tags = (char *)col_text(s, 4);
    row->tree = (char *)col_text(s, 5);
    row->parent = (char *)col_text(s, 6);
    row->partial = sqlite3_column_int(s, 7);
    row->files = (uint64_t)sqlite3_column_int64(s, 8);
    row->bytes_read = (uint64_t)sqlite3_column_int64(s, 9);
    row->bytes_new = (uint64_t)sqlite3_column_int64(s, 10);
    row->bytes_stored = (uint64_t)sqlite3_column_int64(s, 11);
    row->total_size = (uint64_t)sqlite3_column_int64(s, 12);
    row->manifest = (char *)col_text(s, 13);
}

/* Makes *row own copies of its strings. 0, or -1 when out of memory (then the
 * strings are NULL or owned, so cairn_snaprow_free() is safe). */
static int row_own(struct cairn_snaprow *row)
{
    char **f[] = {&row->source, &row->hostname, &row->tags,
                  &row->tree,   &row->parent,   &row->manifest};
    size_t i;
    int bad = 0;
    for (i = 0; i < sizeof f / sizeof *f; i++) {
        *f[i] = strdup(*f[i]);
        if (!*f[i])
            bad = -1;
    }
    return bad;
}

int cairn_catalog_list_snapshots(cairn_catalog *cat, const char *source, cairn_snaprow_cb cb,
                                 void *arg, cairn_err *err)
{
    sqlite3_stmt *s = prepare(cat,
                              source ? "SELECT " SNAP_COLS " FROM snapshots WHERE source = ?1"
                                       " ORDER BY time_ns, id"
                                     : "SELECT " SNAP_COLS " FROM snapshots ORDER BY time_ns, id",
                              err);
    int rc;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    if (source)
        bind_text(s, 1, source);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct cairn_snaprow row;
        int r;
        row_view(s, &row);
        if ((r = cb(arg, &row)) != 0) {
            sqlite3_finalize(s);
            return r;
        }
    }
    rc = rc == SQLITE_DONE ? CAIRN_OK : sqlerr(cat, err, rc, "cannot list snapshots");
    sqlite3_finalize(s);
    return rc;
}

int cairn_catalog_get_snapshot(cairn_catalog *cat, const char *spec, const char *source,
                               struct cairn_snaprow *out, cairn_err *err)
{
    char lo[CAIRN_HEX_LEN + 1], hi[CAIRN_HEX_LEN + 1];
    sqlite3_stmt *s;
    int rc, latest, matches = 0;
    size_t n, i;

    memset(out, 0, sizeof *out);
    if (!spec)
        spec = "";
    latest = strcmp(spec, "latest") == 0;
    if (latest) {
        s = prepare(cat,
                    source ? "SELECT " SNAP_COLS " FROM snapshots WHERE source = ?1"
                             " ORDER BY time_ns DESC, id DESC LIMIT 1"
                           : "SELECT " SNAP_COLS " FROM snapshots"
                             " ORDER BY time_ns DESC, id DESC LIMIT 1",
                    err);
        if (!s)
            return err ? err->code : CAIRN_FAILED;
        if (source)
            bind_text(s, 1, source);
    } else {
        n = strlen(spec);
        if (n == 0 || n > CAIRN_HEX_LEN)
            return cairn_error(err, CAIRN_FAILED,
                               "invalid snapshot '%s': expected 'latest' or an id prefix of 1"
                               " to %d hex digits",
                               spec, CAIRN_HEX_LEN);
        for (i = 0; i < n; i++) {
            char c = spec[i];
            if (c >= 'A' && c <= 'F')
                c = (char)(c - 'A' + 'a');
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                return cairn_error(err, CAIRN_FAILED,
                                   "invalid snapshot '%s': expected 'latest' or a hex id"
                                   " prefix",
                                   spec);
            lo[i] = hi[i] = c;
        }
        lo[n] = hi[n] = 0;
        hi[n - 1]++; /* every id starting with lo sorts in [lo, hi) */
        /* Two rows are enough to know the match is not unique; count them all
         * only then, for the message. */
        s = prepare(cat,
                    "SELECT " SNAP_COLS ", (SELECT count(*) FROM snapshots"
                    " WHERE id >= ?1 AND id < ?2) FROM snapshots"
                    " WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT 1",
                    err);
        if (!s)
            return err ? err->code : CAIRN_FAILED;
        bind_text(s, 1, lo);
        bind_text(s, 2, hi);
    }

    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        matches = latest ? 1 : sqlite3_column_int(s, 14);
        if (matches == 1) {
            row_view(s, out);
            if (row_own(out) != 0) {
                cairn_snaprow_free(out);
                sqlite3_finalize(s);
                return cairn_error(err, CAIRN_FATAL, "catalog '%s': out of memory",
                                   cat->path);
            }
        }
        rc = CAIRN_OK;
    } else if (rc == SQLITE_DONE) {
        rc = CAIRN_OK;
    } else {
        rc = sqlerr(cat, err, rc, "cannot look up snapshot '%s'", spec);
    }
    sqlite3_finalize(s);
    if (rc != CAIRN_OK)
        return rc;
    if (matches == 0) {
        if (latest && source)
            return cairn_error(err, CAIRN_NOTFOUND, "no snapshot matches '%s' of source '%s'",
                               spec, source);
        return cairn_error(err, CAIRN_NOTFOUND, "no snapshot matches '%s'", spec);
    }
    if (matches > 1)
        return cairn_error(err, CAIRN_FAILED, "snapshot prefix '%s' is ambiguous (%d matches)",
                           spec, matches);
    return CAIRN_OK;
}

void cairn_snaprow_free(struct cairn_snaprow *row)
{
    if (!row)
        return;
    free(row->source);
    free(row->hostname);
    free(row->tags);
    free(row->tree);
    free(row->parent);
    free(row->manifest);
    row->source = row->hostname = row->tags = row->tree = row->parent = row->manifest = NULL;
}

/* ---- rebuild ---- */

int cairn_catalog_clear(cairn_catalog *cat, cairn_err *err)
{
    int own, rc;
    if ((rc = op_begin(cat, &own, err)) != CAIRN_OK)
        return rc;
    rc = exec(cat,
              "DELETE FROM blob_locs; DELETE FROM pack_refs; DELETE FROM packs;"
              " DELETE FROM indexes; DELETE FROM snapshots; DELETE FROM wal_segments;"
              " DELETE FROM binlogs",
              err, "cannot empty the catalog");
    return op_end(cat, own, rc, err);
}

/* ---- jobs ---- */

int cairn_catalog_job_start(cairn_catalog *cat, const char *kind, const char *source,
                            int64_t *job_id, cairn_err *err)
{
    sqlite3_stmt *s = stmt(cat, ST_JOB_START, err);
    int rc;
    *job_id = 0;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    bind_text(s, 1, kind ? kind : "");
    bind_text(s, 2, source);
    sqlite3_bind_int64(s, 3, cairn_now_ns());
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        *job_id = sqlite3_last_insert_rowid(cat->db);
        rc = CAIRN_OK;
    } else {
        rc = sqlerr(cat, err, rc, "cannot record the start of a %s job", kind ? kind : "");
    }
    sqlite3_reset(s);
    return rc;
}

int cairn_catalog_job_finish(cairn_catalog *cat, int64_t job_id, const char *status,
                             const char *message, const char *snapshot_id, cairn_err *err)
{
    sqlite3_stmt *s = stmt(cat, ST_JOB_FINISH, err);
    int rc;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    sqlite3_bind_int64(s, 1, job_id);
    sqlite3_bind_int64(s, 2, cairn_now_ns());
    bind_text(s, 3, status ? status : "");
    bind_text(s, 4, message);
    bind_text(s, 5, snapshot_id);
    rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        rc = sqlerr(cat, err, rc, "cannot record the end of job %lld", (long long)job_id);
    else if (sqlite3_changes(cat->db) == 0)
        rc = cairn_error(err, CAIRN_NOTFOUND, "catalog '%s': no job %lld", cat->path,
                         (long long)job_id);
    else
        rc = CAIRN_OK;
    sqlite3_reset(s);
    return rc;
}

/* ---- consistent copy ---- */

static void unlink_db_files(const char *path)
{
    static const char *const sfx[] = {"", "-journal", "-wal", "-shm"};
    char p[4096];
    size_t i;
    for (i = 0; i < sizeof sfx / sizeof *sfx; i++)
        if ((size_t)snprintf(p, sizeof p, "%s%s", path, sfx[i]) < sizeof p)
            unlink(p);
}

int cairn_catalog_backup_to(cairn_catalog *cat, const char *dest, cairn_err *err)
{
    char tmp[4096];
    sqlite3 *dst = NULL;
    sqlite3_backup *b;
    char *dir = NULL;
    double deadline;
    int fd, src, rc = CAIRN_OK;

    if (!sqlite3_get_autocommit(cat->db))
        return cairn_error(err, CAIRN_FAILED,
                           "catalog '%s': cannot copy to '%s' inside a transaction (commit"
                           " first)",
                           cat->path, dest);
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dest, (long)getpid()) >= sizeof tmp)
        return cairn_error(err, CAIRN_FAILED, "catalog '%s': copy path '%s' is too long",
                           cat->path, dest);
    unlink_db_files(tmp);
    fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return cairn_error(err, CAIRN_FAILED, "catalog '%s': cannot create '%s': %s",
                           cat->path, tmp, strerror(errno));
    close(fd);

    src = sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        rc = cairn_error(err, map_rc(src), "catalog '%s': cannot open the copy '%s': %s",
                         cat->path, tmp, dst ? sqlite3_errmsg(dst) : sqlite3_errstr(src));
        goto fail;
    }
    b = sqlite3_backup_init(dst, "main", cat->db, "main");
    if (!b) {
        src = sqlite3_errcode(dst);
        rc = cairn_error(err, map_rc(src), "catalog '%s': cannot start the copy to '%s': %s",
                         cat->path, dest, sqlite3_errmsg(dst));
        goto fail;
    }
    deadline = cairn_mono() + BUSY_TIMEOUT_MS / 1000.0;
    do {
        src = sqlite3_backup_step(b, -1);
        if ((src == SQLITE_BUSY || src == SQLITE_LOCKED) && cairn_mono() < deadline)
            sqlite3_sleep(20);
        else if (src != SQLITE_OK)
            break;
    } while (1);
    sqlite3_backup_finish(b);
    if (src != SQLITE_DONE) {
        rc = cairn_error(err, map_rc(src), "catalog '%s': cannot copy to '%s': %s%s",
                         cat->path, dest, sqlite3_errstr(src), hint(src));
        goto fail;
    }
    /* A self-contained file: no -wal/-shm companions when someone opens it. */
    src = sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        rc = cairn_error(err, map_rc(src), "catalog '%s': cannot finish the copy '%s': %s",
                         cat->path, tmp, sqlite3_errmsg(dst));
        goto fail;
    }
    src = sqlite3_close(dst);
    dst = NULL;
    if (src != SQLITE_OK) {
        rc = cairn_error(err, CAIRN_FAILED, "catalog '%s': cannot close the copy '%s': %s",
                         cat->path, tmp, sqlite3_errstr(src));
        goto fail;
    }
    fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        rc = cairn_error(err, CAIRN_FAILED, "catalog '%s': cannot sync '%s': %s", cat->path,
                         tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto fail;
    }
    close(fd);
    if (rename(tmp, dest) != 0) {
        rc = cairn_error(err, CAIRN_FAILED, "catalog '%s': cannot rename '%s' to '%s': %s",
                         cat->path, tmp, dest, strerror(errno));
        goto fail;
    }
    if ((dir = parent_dir(dest)) != NULL)
        cairn_fsync_dir(dir);
    free(dir);
    return CAIRN_OK;
fail:
    if (dst)
        sqlite3_close_v2(dst);
    unlink_db_files(tmp);
    return rc;
}

/* ---- for the catalog's other files (catalog_int.h) ---- */

sqlite3 *cairn_catalog_db_(cairn_catalog *cat) { return cat->db; }
const char *cairn_catalog_path_(const cairn_catalog *cat) { return cat->path; }

/* ---- helpers for the catalog's other files (catalog_int.h) ---- */

int cairn_catalog_sqlerr_(cairn_catalog *cat, cairn_err *err, int src, const char *what,
                          const char *name)
{
    sqlite3 *db = cat->db;
    const char *msg =
        db && sqlite3_extended_errcode(db) == src ? sqlite3_errmsg(db) : sqlite3_errstr(src);
    int code = (src & 0xff) == SQLITE_BUSY || (src & 0xff) == SQLITE_LOCKED ? CAIRN_RETRY
               : (src & 0xff) == SQLITE_CORRUPT || (src & 0xff) == SQLITE_NOTADB
                   ? CAIRN_CORRUPT
                   : CAIRN_FAILED;
    return cairn_error(err, code, "catalog '%s': %s '%s': %s", cat->path, what,
                       name ? name : "", msg);
}

sqlite3_stmt *cairn_catalog_prepare_(cairn_catalog *cat, const char *sql, const char *table,
                                     cairn_err *err)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(cat->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK) {
        cairn_catalog_sqlerr_(cat, err, rc, "cannot prepare a statement for", table);
        sqlite3_finalize(s);
        return NULL;
    }
    return s;
}

int cairn_catalog_col_text_(sqlite3_stmt *s, int i, char *out, size_t n)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    size_t len = t ? strlen((const char *)t) : 0;
    if (len >= n)
        return -1;
    memcpy(out, t ? (const char *)t : "", len + 1);
    return 0;
}

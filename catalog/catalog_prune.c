/* catalog/catalog_prune.c — the prune working set (see catalog.h, "prune
 * working set"). Everything lives in TEMP tables of the handle's connection;
 * the persistent tables (packs, pack_refs, blob_locs, indexes) are only read.
 *
 *   prune_visited(tree)   trees the walk has entered (memo: each once)
 *   prune_live(blob)      every blob a snapshot references (data and trees)
 *   prune_store(pack)     packs present in the store, with their listed size
 *   prune_pack_live(pack) live bytes per present pack (every copy counted)
 *   prune_used(blob,pack) the one copy of each live blob that is kept
 *   prune_packs(...)      per pack: counts, bytes, presence, age, action
 *   prune_idx(id)         index objects to be replaced
 *   prune_order(rank)     the current list, materialized for paging */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_int.h"

#define PAGE 256

struct cairn_catalog_prune {
    cairn_catalog *cat;
    sqlite3 *db;
    sqlite3_stmt *visit, *live, *store;
};

static const char *const create_sql =
    "DROP TABLE IF EXISTS temp.prune_visited;"
    "DROP TABLE IF EXISTS temp.prune_live;"
    "DROP TABLE IF EXISTS temp.prune_store;"
    "DROP TABLE IF EXISTS temp.prune_used;"
    "DROP TABLE IF EXISTS temp.prune_pack_live;"
    "DROP TABLE IF EXISTS temp.prune_packs;"
    "DROP TABLE IF EXISTS temp.prune_idx;"
    "DROP TABLE IF EXISTS temp.prune_order;"
    "CREATE TEMP TABLE prune_visited(tree BLOB PRIMARY KEY NOT NULL) WITHOUT ROWID;"
    "CREATE TEMP TABLE prune_live(blob BLOB PRIMARY KEY NOT NULL) WITHOUT ROWID;"
    "CREATE TEMP TABLE prune_store(pack BLOB PRIMARY KEY NOT NULL, size INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TEMP TABLE prune_used(blob BLOB PRIMARY KEY NOT NULL, pack BLOB) WITHOUT ROWID;"
    "CREATE INDEX temp.prune_used_pack ON prune_used(pack);"
    "CREATE TEMP TABLE prune_pack_live(pack BLOB PRIMARY KEY NOT NULL, bytes INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TEMP TABLE prune_packs("
    "  pack BLOB PRIMARY KEY NOT NULL, size INTEGER NOT NULL DEFAULT 0,"
    "  blobs INTEGER NOT NULL DEFAULT 0, used_blobs INTEGER NOT NULL DEFAULT 0,"
    "  blob_bytes INTEGER NOT NULL DEFAULT 0, used_bytes INTEGER NOT NULL DEFAULT 0,"
    "  in_store INTEGER NOT NULL DEFAULT 0, indexed INTEGER NOT NULL DEFAULT 0,"
    "  first_seen INTEGER NOT NULL DEFAULT 0, action INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "CREATE TEMP TABLE prune_idx(id TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;"
    "CREATE TEMP TABLE prune_order(rank INTEGER PRIMARY KEY, pack BLOB NOT NULL);";

static const char *const drop_sql =
    "DROP TABLE IF EXISTS temp.prune_visited;"
    "DROP TABLE IF EXISTS temp.prune_live;"
    "DROP TABLE IF EXISTS temp.prune_store;"
    "DROP TABLE IF EXISTS temp.prune_used;"
    "DROP TABLE IF EXISTS temp.prune_pack_live;"
    "DROP TABLE IF EXISTS temp.prune_packs;"
    "DROP TABLE IF EXISTS temp.prune_idx;"
    "DROP TABLE IF EXISTS temp.prune_order;";

static int pr_err(cairn_catalog_prune *pr, cairn_err *err, int src, const char *what)
{
    const char *msg = sqlite3_extended_errcode(pr->db) == src ? sqlite3_errmsg(pr->db)
                                                              : sqlite3_errstr(src);
    int code = (src & 0xff) == SQLITE_BUSY || (src & 0xff) == SQLITE_LOCKED ? CAIRN_RETRY
               : (src & 0xff) == SQLITE_CORRUPT || (src & 0xff) == SQLITE_NOTADB
                   ? CAIRN_CORRUPT
               : (src & 0xff) == SQLITE_FULL ? CAIRN_FATAL
                                             : CAIRN_FAILED;
    return cairn_error(err, code, "catalog '%s': prune: %s: %s%s",
                       cairn_catalog_path_(pr->cat), what, msg,
                       (src & 0xff) == SQLITE_FULL ? " (the disk holding temporary files is full; "
                                                     "set SQLITE_TMPDIR to a larger one)"
                                                   : "");
}

static int pr_exec(cairn_catalog_prune *pr, const char *sql, const char *what, cairn_err *err)
{
    int rc = sqlite3_exec(pr->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? CAIRN_OK : pr_err(pr, err, rc, what);
}

static sqlite3_stmt *pr_prepare(cairn_catalog_prune *pr, const char *sql, cairn_err *err)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(pr->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK) {
        pr_err(pr, err, rc, "cannot prepare a statement");
        sqlite3_finalize(s);
        return NULL;
    }
    return s;
}

static void bind_id(sqlite3_stmt *s, int i, const cairn_id *id)
{
    sqlite3_bind_blob(s, i, id->b, CAIRN_ID_LEN, SQLITE_STATIC);
}

static void col_id(sqlite3_stmt *s, int i, cairn_id *out)
{
    const void *p = sqlite3_column_blob(s, i);
    if (p && sqlite3_column_bytes(s, i) == CAIRN_ID_LEN)
        memcpy(out->b, p, CAIRN_ID_LEN);
    else
        memset(out, 0, sizeof *out);
}

int cairn_catalog_prune_open(cairn_catalog *cat, cairn_catalog_prune **out, cairn_err *err)
{
    cairn_catalog_prune *pr = calloc(1, sizeof *pr);
    int rc;
    *out = NULL;
    if (!pr)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    pr->cat = cat;
    pr->db = cairn_catalog_db_(cat);
    if ((rc = pr_exec(pr, create_sql, "cannot create the working tables", err)) != CAIRN_OK) {
        free(pr);
        return rc;
    }
    pr->visit = pr_prepare(pr, "INSERT OR IGNORE INTO temp.prune_visited(tree) VALUES (?1)", err);
    pr->live = pr_prepare(pr, "INSERT OR IGNORE INTO temp.prune_live(blob) VALUES (?1)", err);
    pr->store = pr_prepare(pr, "INSERT OR REPLACE INTO temp.prune_store(pack, size) VALUES (?1, ?2)",
                           err);
    if (!pr->visit || !pr->live || !pr->store) {
        rc = err ? err->code : CAIRN_FAILED;
        cairn_catalog_prune_free(pr);
        return rc;
    }
    *out = pr;
    return CAIRN_OK;
}

void cairn_catalog_prune_free(cairn_catalog_prune *pr)
{
    if (!pr)
        return;
    sqlite3_finalize(pr->visit);
    sqlite3_finalize(pr->live);
    sqlite3_finalize(pr->store);
    if (!sqlite3_get_autocommit(pr->db))
        sqlite3_exec(pr->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_exec(pr->db, drop_sql, NULL, NULL, NULL);
    free(pr);
}

int cairn_catalog_prune_batch(cairn_catalog_prune *pr, int begin, cairn_err *err)
{
    if (begin)
        return sqlite3_get_autocommit(pr->db)
                   ? pr_exec(pr, "BEGIN", "cannot start a transaction", err)
                   : CAIRN_OK;
    return sqlite3_get_autocommit(pr->db) ? CAIRN_OK
                                          : pr_exec(pr, "COMMIT", "cannot commit", err);
}

static int insert_id(cairn_catalog_prune *pr, sqlite3_stmt *s, const cairn_id *id,
                     const char *what, cairn_err *err)
{
    int rc;
    bind_id(s, 1, id);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return pr_err(pr, err, rc, what);
    return sqlite3_changes(pr->db) > 0;
}

int cairn_catalog_prune_visit(cairn_catalog_prune *pr, const cairn_id *tree, cairn_err *err)
{
    int rc = insert_id(pr, pr->visit, tree, "cannot record a visited tree", err);
    if (rc == 1) {
        int l = insert_id(pr, pr->live, tree, "cannot record a live blob", err);
        if (l < 0)
            return l;
    }
    return rc;
}

int cairn_catalog_prune_live(cairn_catalog_prune *pr, const cairn_id *blob, cairn_err *err)
{
    int rc = insert_id(pr, pr->live, blob, "cannot record a live blob", err);
    return rc < 0 ? rc : CAIRN_OK;
}

int cairn_catalog_prune_store_pack(cairn_catalog_prune *pr, const cairn_id *pack, uint64_t size,
                                   cairn_err *err)
{
    int rc;
    bind_id(pr->store, 1, pack);
    sqlite3_bind_int64(pr->store, 2, (sqlite3_int64)size);
    rc = sqlite3_step(pr->store);
    sqlite3_reset(pr->store);
    return rc == SQLITE_DONE ? CAIRN_OK : pr_err(pr, err, rc, "cannot record a stored pack");
}

static int count_query(cairn_catalog_prune *pr, const char *sql, uint64_t *n, cairn_id *first,
                       cairn_err *err)
{
    sqlite3_stmt *s = pr_prepare(pr, sql, err);
    int rc;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *n = (uint64_t)sqlite3_column_int64(s, 0);
        if (first)
            col_id(s, 1, first);
        rc = CAIRN_OK;
    } else {
        rc = pr_err(pr, err, rc, "cannot count");
    }
    sqlite3_finalize(s);
    return rc;
}

int cairn_catalog_prune_analyze(cairn_catalog_prune *pr, struct cairn_prune_totals *t,
                                cairn_err *err)
{
    static const char *const steps[] = {
        "DELETE FROM temp.prune_used; DELETE FROM temp.prune_packs; DELETE FROM temp.prune_idx;"
        "DELETE FROM temp.prune_pack_live;",
        /* live bytes per present pack, counting every copy */
        "INSERT INTO temp.prune_pack_live(pack, bytes)"
        " SELECT b.pack, sum(b.stored_len) FROM temp.prune_live l"
        " JOIN blob_locs b ON b.blob = l.blob"
        " WHERE EXISTS (SELECT 1 FROM temp.prune_store s WHERE s.pack = b.pack)"
        " GROUP BY b.pack",
        /* the kept copy of every live blob: in the present pack with the most
         * live bytes (then the lowest id), so that after an interrupted
         * repack the new packs win and the old ones empty out */
        "INSERT INTO temp.prune_used(blob, pack)"
        " SELECT l.blob, (SELECT b.pack FROM blob_locs b"
        "                 JOIN temp.prune_pack_live c ON c.pack = b.pack"
        "                 WHERE b.blob = l.blob ORDER BY c.bytes DESC, b.pack LIMIT 1)"
        " FROM temp.prune_live l",
        /* indexed packs */
        "INSERT INTO temp.prune_packs(pack, size, blobs, blob_bytes, in_store, indexed,"
        " first_seen, action)"
        " SELECT p.id, p.size,"
        "  (SELECT count(*) FROM blob_locs b WHERE b.pack = p.id),"
        "  (SELECT coalesce(sum(b.stored_len), 0) FROM blob_locs b WHERE b.pack = p.id),"
        "  EXISTS (SELECT 1 FROM temp.prune_store s WHERE s.pack = p.id), 1,"
        "  coalesce((SELECT min(i.loaded_ns) FROM pack_refs r JOIN indexes i"
        "            ON i.id = r.index_id WHERE r.pack = p.id), 0), 0"
        " FROM packs p",
        "UPDATE temp.prune_packs SET"
        "  used_blobs = (SELECT count(*) FROM temp.prune_used u WHERE u.pack = prune_packs.pack),"
        "  used_bytes = (SELECT coalesce(sum(b.stored_len), 0) FROM temp.prune_used u"
        "                JOIN blob_locs b ON b.blob = u.blob AND b.pack = u.pack"
        "                WHERE u.pack = prune_packs.pack)",
        /* present packs no index names */
        "INSERT INTO temp.prune_packs(pack, size, in_store, indexed, action)"
        " SELECT s.pack, s.size, 1, 0, 5 FROM temp.prune_store s"
        " WHERE NOT EXISTS (SELECT 1 FROM packs p WHERE p.id = s.pack)",
    };
    size_t i;
    int rc = CAIRN_OK, own = sqlite3_get_autocommit(pr->db);
    memset(t, 0, sizeof *t);
    if (own && (rc = pr_exec(pr, "BEGIN", "cannot start a transaction", err)) != CAIRN_OK)
        return rc;
    for (i = 0; rc == CAIRN_OK && i < sizeof steps / sizeof *steps; i++)
        rc = pr_exec(pr, steps[i], "cannot compute pack usage", err);
    if (rc == CAIRN_OK)
        rc = count_query(pr, "SELECT count(*), NULL FROM temp.prune_live", &t->live_blobs, NULL,
                         err);
    if (rc == CAIRN_OK)
        rc = count_query(pr,
                         "SELECT count(*), (SELECT blob FROM temp.prune_used WHERE pack IS NULL"
                         " LIMIT 1) FROM temp.prune_used WHERE pack IS NULL",
                         &t->missing_blobs, &t->first_missing, err);
    if (own) {
        if (rc == CAIRN_OK)
            rc = pr_exec(pr, "COMMIT", "cannot commit", err);
        else
            sqlite3_exec(pr->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

int cairn_catalog_prune_set_action(cairn_catalog_prune *pr, const cairn_id *pack, int action,
                                   cairn_err *err)
{
    sqlite3_stmt *s = pr_prepare(pr, "UPDATE temp.prune_packs SET action = ?2 WHERE pack = ?1",
                                 err);
    int rc;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    bind_id(s, 1, pack);
    sqlite3_bind_int(s, 2, action);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? CAIRN_OK : pr_err(pr, err, rc, "cannot record a decision");
}

/* Materializes the list into prune_order, then pages through it. */
int cairn_catalog_prune_list(cairn_catalog_prune *pr, enum cairn_prune_list which, int action,
                             cairn_prune_pack_cb cb, void *arg, cairn_err *err)
{
    const char *fill;
    sqlite3_stmt *s;
    struct cairn_prune_pack page[PAGE];
    int64_t last = 0;
    int rc;
    switch (which) {
    case CAIRN_PRUNE_LIST_ALL:
        fill = "INSERT INTO temp.prune_order(pack) SELECT pack FROM temp.prune_packs"
               " ORDER BY pack";
        break;
    case CAIRN_PRUNE_LIST_WASTE:
        fill = "INSERT INTO temp.prune_order(pack) SELECT pack FROM temp.prune_packs"
               " WHERE indexed AND in_store AND used_blobs > 0 AND blob_bytes > used_bytes"
               " ORDER BY (blob_bytes - used_bytes) * 1.0 / max(size, 1) DESC, pack";
        break;
    case CAIRN_PRUNE_LIST_ACTION:
        fill = "INSERT INTO temp.prune_order(pack) SELECT pack FROM temp.prune_packs"
               " WHERE action = ?1 ORDER BY pack";
        break;
    case CAIRN_PRUNE_LIST_REINDEX:
        fill = "INSERT INTO temp.prune_order(pack) SELECT p.pack FROM temp.prune_packs p"
               " WHERE p.indexed AND p.action IN (0, 1) AND EXISTS (SELECT 1 FROM pack_refs r"
               "  JOIN temp.prune_idx x ON x.id = r.index_id WHERE r.pack = p.pack)"
               " ORDER BY p.pack";
        break;
    default:
        return cairn_error(err, CAIRN_FATAL, "prune: unknown list %d", (int)which);
    }
    if ((rc = pr_exec(pr, "DELETE FROM temp.prune_order", "cannot reset a list", err)) !=
        CAIRN_OK)
        return rc;
    if (!(s = pr_prepare(pr, fill, err)))
        return err ? err->code : CAIRN_FAILED;
    if (which == CAIRN_PRUNE_LIST_ACTION)
        sqlite3_bind_int(s, 1, action);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return pr_err(pr, err, rc, "cannot list packs");
    for (;;) {
        size_t n = 0, i;
        s = pr_prepare(pr,
                       "SELECT o.rank, p.pack, p.size, p.blobs, p.used_blobs, p.blob_bytes,"
                       " p.used_bytes, p.in_store, p.indexed, p.first_seen, p.action"
                       " FROM temp.prune_order o JOIN temp.prune_packs p ON p.pack = o.pack"
                       " WHERE o.rank > ?1 ORDER BY o.rank LIMIT 256",
                       err);
        if (!s)
            return err ? err->code : CAIRN_FAILED;
        sqlite3_bind_int64(s, 1, last);
        while (n < PAGE && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            struct cairn_prune_pack *p = &page[n++];
            last = sqlite3_column_int64(s, 0);
            col_id(s, 1, &p->id);
            p->size = (uint64_t)sqlite3_column_int64(s, 2);
            p->blobs = (uint64_t)sqlite3_column_int64(s, 3);
            p->used_blobs = (uint64_t)sqlite3_column_int64(s, 4);
            p->blob_bytes = (uint64_t)sqlite3_column_int64(s, 5);
            p->used_bytes = (uint64_t)sqlite3_column_int64(s, 6);
            p->in_store = sqlite3_column_int(s, 7);
            p->indexed = sqlite3_column_int(s, 8);
            p->first_seen_ns = sqlite3_column_int64(s, 9);
            p->action = sqlite3_column_int(s, 10);
        }
        sqlite3_finalize(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return pr_err(pr, err, rc, "cannot list packs");
        for (i = 0; i < n; i++) {
            int r = cb(arg, &page[i]);
            if (r != 0)
                return r;
        }
        if (n < PAGE)
            return CAIRN_OK;
    }
}

int cairn_catalog_prune_used_blobs(cairn_catalog_prune *pr, const cairn_id *pack,
                                   cairn_blob_cb cb, void *arg, cairn_err *err)
{
    struct row {
        cairn_id blob;
        struct cairn_blob_loc loc;
    } *page = malloc(PAGE * sizeof *page);
    int64_t last = -1;
    int rc = CAIRN_OK;
    if (!page)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    for (;;) {
        size_t n = 0, i;
        sqlite3_stmt *s = pr_prepare(pr,
                                     "SELECT b.blob, b.offset, b.stored_len, b.raw_len, b.type,"
                                     " b.flags FROM temp.prune_used u JOIN blob_locs b"
                                     " ON b.blob = u.blob AND b.pack = u.pack"
                                     " WHERE u.pack = ?1 AND b.offset > ?2"
                                     " ORDER BY b.offset LIMIT 256",
                                     err);
        if (!s) {
            rc = err ? err->code : CAIRN_FAILED;
            break;
        }
        bind_id(s, 1, pack);
        sqlite3_bind_int64(s, 2, last);
        while (n < PAGE && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            struct row *r = &page[n++];
            col_id(s, 0, &r->blob);
            r->loc.pack = *pack;
            r->loc.offset = (uint64_t)sqlite3_column_int64(s, 1);
            r->loc.stored_len = (uint32_t)sqlite3_column_int64(s, 2);
            r->loc.raw_len = (uint32_t)sqlite3_column_int64(s, 3);
            r->loc.type = (uint8_t)sqlite3_column_int(s, 4);
            r->loc.flags = (uint8_t)sqlite3_column_int(s, 5);
            last = (int64_t)r->loc.offset;
        }
        sqlite3_finalize(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            rc = pr_err(pr, err, rc, "cannot list the used blobs of a pack");
            break;
        }
        rc = CAIRN_OK;
        for (i = 0; i < n && rc == CAIRN_OK; i++)
            rc = cb(arg, &page[i].blob, &page[i].loc);
        if (rc != CAIRN_OK || n < PAGE)
            break;
    }
    free(page);
    return rc;
}

int cairn_catalog_prune_mark_indexes(cairn_catalog_prune *pr, uint64_t *n, cairn_err *err)
{
    int rc = pr_exec(pr,
                     "DELETE FROM temp.prune_idx;"
                     "INSERT OR IGNORE INTO temp.prune_idx(id) SELECT DISTINCT r.index_id"
                     " FROM pack_refs r JOIN temp.prune_packs p ON p.pack = r.pack"
                     " WHERE p.action IN (2, 3, 4)",
                     "cannot mark indexes", err);
    if (rc == CAIRN_OK)
        rc = count_query(pr, "SELECT count(*), NULL FROM temp.prune_idx", n, NULL, err);
    return rc;
}

int cairn_catalog_prune_list_indexes(cairn_catalog_prune *pr, cairn_str_cb cb, void *arg,
                                     cairn_err *err)
{
    char (*page)[CAIRN_HEX_LEN + 8] = malloc(PAGE * sizeof *page);
    char last[CAIRN_HEX_LEN + 8] = "";
    int rc = CAIRN_OK;
    if (!page)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    for (;;) {
        size_t n = 0, i;
        sqlite3_stmt *s = pr_prepare(pr,
                                     "SELECT id FROM temp.prune_idx WHERE id > ?1"
                                     " ORDER BY id LIMIT 256",
                                     err);
        if (!s) {
            rc = err ? err->code : CAIRN_FAILED;
            break;
        }
        sqlite3_bind_text(s, 1, last, -1, SQLITE_TRANSIENT);
        while (n < PAGE && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(s, 0);
            snprintf(page[n], sizeof page[n], "%s", t ? (const char *)t : "");
            snprintf(last, sizeof last, "%s", page[n]);
            n++;
        }
        sqlite3_finalize(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            rc = pr_err(pr, err, rc, "cannot list indexes to replace");
            break;
        }
        rc = CAIRN_OK;
        for (i = 0; i < n && rc == CAIRN_OK; i++)
            rc = cb(arg, page[i]);
        if (rc != CAIRN_OK || n < PAGE)
            break;
    }
    free(page);
    return rc;
}

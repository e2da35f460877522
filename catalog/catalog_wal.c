/* catalog/catalog_wal.c — the wal_segments table (see catalog.h, "PostgreSQL
 * WAL archive"). Statements are prepared per call: WAL rows are written once
 * per archived file (seconds apart), so caching buys nothing. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_int.h"

static sqlite3_stmt *wal_prepare(cairn_catalog *cat, const char *sql, cairn_err *err)
{
    return cairn_catalog_prepare_(cat, sql, "wal_segments", err);
}

#define WAL_COLS                                                                         \
    "system_id, timeline, segment, start_lsn, end_lsn, size, checksum, object_key,"     \
    " min_commit_ns, max_commit_ns"

static int row_from(sqlite3_stmt *s, struct cairn_walrow *r)
{
    memset(r, 0, sizeof *r);
    if (cairn_catalog_col_text_(s, 0, r->system_id, sizeof r->system_id) ||
        cairn_catalog_col_text_(s, 2, r->segment, sizeof r->segment) ||
        cairn_catalog_col_text_(s, 6, r->checksum, sizeof r->checksum) ||
        cairn_catalog_col_text_(s, 7, r->object_key, sizeof r->object_key))
        return -1;
    r->timeline = (uint32_t)sqlite3_column_int64(s, 1);
    r->start_lsn = (uint64_t)sqlite3_column_int64(s, 3);
    r->end_lsn = (uint64_t)sqlite3_column_int64(s, 4);
    r->size = (uint64_t)sqlite3_column_int64(s, 5);
    if (sqlite3_column_type(s, 8) != SQLITE_NULL && sqlite3_column_type(s, 9) != SQLITE_NULL) {
        r->has_commit = 1;
        r->min_commit_ns = sqlite3_column_int64(s, 8);
        r->max_commit_ns = sqlite3_column_int64(s, 9);
    }
    return 0;
}

int cairn_catalog_wal_put(cairn_catalog *cat, const struct cairn_walrow *row, cairn_err *err)
{
    sqlite3_stmt *s = wal_prepare(cat,
                                  "INSERT OR REPLACE INTO wal_segments(" WAL_COLS ")"
                                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                                  err);
    int src, rc = CAIRN_OK;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    sqlite3_bind_text(s, 1, row->system_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, row->timeline);
    sqlite3_bind_text(s, 3, row->segment, -1, SQLITE_STATIC);
    /* LSNs are below 2^63 in practice; SQLite integers are signed 64-bit */
    sqlite3_bind_int64(s, 4, (sqlite3_int64)row->start_lsn);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)row->end_lsn);
    sqlite3_bind_int64(s, 6, (sqlite3_int64)row->size);
    sqlite3_bind_text(s, 7, row->checksum, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, row->object_key, -1, SQLITE_STATIC);
    if (row->has_commit) {
        sqlite3_bind_int64(s, 9, row->min_commit_ns);
        sqlite3_bind_int64(s, 10, row->max_commit_ns);
    } else {
        sqlite3_bind_null(s, 9);
        sqlite3_bind_null(s, 10);
    }
    src = sqlite3_step(s);
    if (src != SQLITE_DONE)
        rc = cairn_catalog_sqlerr_(cat, err, src, "cannot record WAL file", row->segment);
    sqlite3_finalize(s);
    return rc;
}

int cairn_catalog_wal_get(cairn_catalog *cat, const char *system_id, uint32_t timeline,
                          const char *segment, struct cairn_walrow *out, cairn_err *err)
{
    sqlite3_stmt *s = wal_prepare(cat,
                                  "SELECT " WAL_COLS " FROM wal_segments"
                                  " WHERE system_id = ?1 AND timeline = ?2 AND segment = ?3",
                                  err);
    int src, rc;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    sqlite3_bind_text(s, 1, system_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, timeline);
    sqlite3_bind_text(s, 3, segment, -1, SQLITE_STATIC);
    src = sqlite3_step(s);
    if (src == SQLITE_ROW)
        rc = row_from(s, out) == 0
                 ? CAIRN_OK
                 : cairn_error(err, CAIRN_CORRUPT, "catalog '%s': WAL row '%s' is malformed",
                               cairn_catalog_path_(cat), segment);
    else if (src == SQLITE_DONE)
        rc = cairn_error(err, CAIRN_NOTFOUND, "WAL file '%s' is not in the catalog", segment);
    else
        rc = cairn_catalog_sqlerr_(cat, err, src, "cannot read WAL file", segment);
    sqlite3_finalize(s);
    return rc;
}

int cairn_catalog_wal_remove(cairn_catalog *cat, const char *system_id, uint32_t timeline,
                             const char *segment, cairn_err *err)
{
    sqlite3_stmt *s = wal_prepare(cat,
                                  "DELETE FROM wal_segments"
                                  " WHERE system_id = ?1 AND timeline = ?2 AND segment = ?3",
                                  err);
    int src, rc = CAIRN_OK;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    sqlite3_bind_text(s, 1, system_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, timeline);
    sqlite3_bind_text(s, 3, segment, -1, SQLITE_STATIC);
    src = sqlite3_step(s);
    if (src != SQLITE_DONE)
        rc = cairn_catalog_sqlerr_(cat, err, src, "cannot remove WAL file", segment);
    sqlite3_finalize(s);
    return rc;
}

int cairn_catalog_wal_list(cairn_catalog *cat, const char *system_id, uint32_t timeline,
                           cairn_walrow_cb cb, void *arg, cairn_err *err)
{
    sqlite3_stmt *s = wal_prepare(cat,
                                  "SELECT " WAL_COLS " FROM wal_segments"
                                  " WHERE (?1 IS NULL OR system_id = ?1)"
                                  " AND (?2 = 0 OR timeline = ?2)"
                                  " ORDER BY system_id, timeline, segment",
                                  err);
    int src, rc = CAIRN_OK;
    struct cairn_walrow row;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    if (system_id)
        sqlite3_bind_text(s, 1, system_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 1);
    sqlite3_bind_int64(s, 2, timeline);
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        if (row_from(s, &row) != 0)
            continue; /* not one of ours (a value too long): skip */
        if ((rc = cb(arg, &row)) != 0)
            break;
    }
    if (rc == 0 && src != SQLITE_DONE)
        rc = cairn_catalog_sqlerr_(cat, err, src, "cannot list", "wal_segments");
    sqlite3_finalize(s);
    return rc;
}

/* catalog/catalog_binlog.c — the binlogs table (see catalog.h, "MariaDB/MySQL
 * binlog archive"). Statements are prepared per call: a row is written once
 * per archived binlog file. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_int.h"

static sqlite3_stmt *bl_prepare(cairn_catalog *cat, const char *sql, cairn_err *err)
{
    return cairn_catalog_prepare_(cat, sql, "binlogs", err);
}

#define BL_COLS                                                                          \
    "server_uuid, file, start_pos, end_pos, first_event_ns, last_event_ns, gtids,"      \
    " object_key, size, checksum"

static int bl_row(sqlite3_stmt *s, struct cairn_binlogrow *r)
{
    memset(r, 0, sizeof *r);
    if (cairn_catalog_col_text_(s, 0, r->server_uuid, sizeof r->server_uuid) ||
        cairn_catalog_col_text_(s, 1, r->file, sizeof r->file) || cairn_catalog_col_text_(s, 6, r->gtids, sizeof r->gtids) ||
        cairn_catalog_col_text_(s, 7, r->object_key, sizeof r->object_key) ||
        cairn_catalog_col_text_(s, 9, r->checksum, sizeof r->checksum))
        return -1;
    r->start_pos = (uint64_t)sqlite3_column_int64(s, 2);
    r->end_pos = (uint64_t)sqlite3_column_int64(s, 3);
    if (sqlite3_column_type(s, 4) != SQLITE_NULL && sqlite3_column_type(s, 5) != SQLITE_NULL) {
        r->has_times = 1;
        r->first_event_ns = sqlite3_column_int64(s, 4);
        r->last_event_ns = sqlite3_column_int64(s, 5);
    }
    r->size = (uint64_t)sqlite3_column_int64(s, 8);
    return 0;
}

int cairn_catalog_binlog_put(cairn_catalog *cat, const struct cairn_binlogrow *row,
                             cairn_err *err)
{
    sqlite3_stmt *s = bl_prepare(cat,
                                 "INSERT OR REPLACE INTO binlogs(" BL_COLS ")"
                                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                                 err);
    int src, rc = CAIRN_OK;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    sqlite3_bind_text(s, 1, row->server_uuid, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, row->file, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)row->start_pos);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)row->end_pos);
    if (row->has_times) {
        sqlite3_bind_int64(s, 5, row->first_event_ns);
        sqlite3_bind_int64(s, 6, row->last_event_ns);
    } else {
        sqlite3_bind_null(s, 5);
        sqlite3_bind_null(s, 6);
    }
    sqlite3_bind_text(s, 7, row->gtids, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, row->object_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 9, (sqlite3_int64)row->size);
    sqlite3_bind_text(s, 10, row->checksum, -1, SQLITE_STATIC);
    src = sqlite3_step(s);
    if (src != SQLITE_DONE)
        rc = cairn_catalog_sqlerr_(cat, err, src, "cannot record binlog", row->file);
    sqlite3_finalize(s);
    return rc;
}

int cairn_catalog_binlog_get(cairn_catalog *cat, const char *server, const char *file,
                             struct cairn_binlogrow *out, cairn_err *err)
{
    sqlite3_stmt *s = bl_prepare(cat,
                                 "SELECT " BL_COLS " FROM binlogs"
                                 " WHERE server_uuid = ?1 AND file = ?2",
                                 err);
    int src, rc;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    sqlite3_bind_text(s, 1, server, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, file, -1, SQLITE_STATIC);
    src = sqlite3_step(s);
    if (src == SQLITE_ROW)
        rc = bl_row(s, out) == 0
                 ? CAIRN_OK
                 : cairn_error(err, CAIRN_CORRUPT, "catalog '%s': binlog row '%s' is malformed",
                               cairn_catalog_path_(cat), file);
    else if (src == SQLITE_DONE)
        rc = cairn_error(err, CAIRN_NOTFOUND, "binlog '%s' of server %s is not in the catalog",
                         file, server);
    else
        rc = cairn_catalog_sqlerr_(cat, err, src, "cannot read binlog", file);
    sqlite3_finalize(s);
    return rc;
}

int cairn_catalog_binlog_remove(cairn_catalog *cat, const char *server, const char *file,
                                cairn_err *err)
{
    sqlite3_stmt *s = bl_prepare(cat, "DELETE FROM binlogs WHERE server_uuid = ?1 AND file = ?2",
                                 err);
    int src, rc = CAIRN_OK;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    sqlite3_bind_text(s, 1, server, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, file, -1, SQLITE_STATIC);
    src = sqlite3_step(s);
    if (src != SQLITE_DONE)
        rc = cairn_catalog_sqlerr_(cat, err, src, "cannot remove binlog", file);
    sqlite3_finalize(s);
    return rc;
}

int cairn_catalog_binlog_list(cairn_catalog *cat, const char *server, cairn_binlogrow_cb cb,
                              void *arg, cairn_err *err)
{
    sqlite3_stmt *s = bl_prepare(cat,
                                 "SELECT " BL_COLS " FROM binlogs"
                                 " WHERE (?1 IS NULL OR server_uuid = ?1)"
                                 " ORDER BY server_uuid, file",
                                 err);
    int src, rc = CAIRN_OK;
    struct cairn_binlogrow *row;
    if (!s)
        return err ? err->code : CAIRN_FAILED;
    row = malloc(sizeof *row);
    if (!row) {
        sqlite3_finalize(s);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    if (server)
        sqlite3_bind_text(s, 1, server, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 1);
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        if (bl_row(s, row) != 0)
            continue; /* not one of ours (a value too long): skip */
        if ((rc = cb(arg, row)) != 0)
            break;
    }
    if (rc == 0 && src != SQLITE_DONE)
        rc = cairn_catalog_sqlerr_(cat, err, src, "cannot list", "binlogs");
    free(row);
    sqlite3_finalize(s);
    return rc;
}

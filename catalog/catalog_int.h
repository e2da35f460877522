/* catalog/catalog_int.h — private to catalog/: what the catalog's other source
 * files (catalog_wal.c) need from the handle defined in catalog.c. Not for use
 * outside catalog/. */
#ifndef CAIRN_CATALOG_INT_H
#define CAIRN_CATALOG_INT_H

#include <sqlite3.h>

#include "catalog.h"

/* The handle's connection and file path (both owned by the handle). */
sqlite3 *cairn_catalog_db_(cairn_catalog *cat);
const char *cairn_catalog_path_(const cairn_catalog *cat);

/* An error from SQLite result code src about `what` on `name`, graded
 * (BUSY/LOCKED -> CAIRN_RETRY, CORRUPT/NOTADB -> CAIRN_CORRUPT, else FAILED)
 * and naming the catalog file. Returns the code. */
int cairn_catalog_sqlerr_(cairn_catalog *cat, cairn_err *err, int src, const char *what,
                          const char *name);
/* Prepares sql; NULL with err set (naming table) on failure. */
sqlite3_stmt *cairn_catalog_prepare_(cairn_catalog *cat, const char *sql, const char *table,
                                     cairn_err *err);
/* Copies text column i into out[n]; -1 when it does not fit. */
int cairn_catalog_col_text_(sqlite3_stmt *s, int i, char *out, size_t n);

#endif

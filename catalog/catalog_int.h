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

#endif

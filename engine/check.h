/* engine/check.h — repository verification.
 *
 * cairn_check() verifies that every index and snapshot object is intact, that
 * every pack the indexes name exists with the recorded size, that every tree
 * of every snapshot can be read and every chunk a file needs is indexed and
 * stored; with read_data it also reads every pack and checks every blob's hash.
 * Each problem is reported once through `report`, naming the object, and then
 * the snapshots and files it affects.
 *
 * Ownership: nothing is handed over. Threading: one call at a time per repo. */
#ifndef CAIRN_CHECK_H
#define CAIRN_CHECK_H

#include "repo.h"

typedef void (*cairn_check_report_fn)(void *arg, const char *msg);

struct cairn_check_result {
    uint64_t packs, blobs_read, snapshots, trees, files;
    uint64_t problems;       /* damaged or missing objects */
    uint64_t affected_files; /* file entries (in all snapshots) that need them */
    uint64_t unindexed_packs;/* packs no index names (harmless; prune removes them) */
};

int cairn_check(cairn_repo *r, int read_data, cairn_check_report_fn report, void *arg,
                struct cairn_check_result *res, cairn_err *err);

#endif

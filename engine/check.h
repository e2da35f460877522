/* engine/check.h — repository verification.
 *
 * cairn_check() verifies that every index and snapshot object is intact, that
 * every pack the indexes name exists with the recorded size, that every tree
 * of every snapshot can be read and every chunk a file needs is indexed and
 * stored; with read_data it also reads every pack and checks every blob's hash,
 * or only a subset of the packs (struct cairn_check_opts).
 * Each problem is reported once through `report`, naming the object, and then
 * the snapshots and files it affects.
 *
 * Ownership: nothing is handed over. Threading: one call at a time per repo. */
#ifndef CAIRN_CHECK_H
#define CAIRN_CHECK_H

#include "repo.h"

typedef void (*cairn_check_report_fn)(void *arg, const char *msg);

/* Which packs a data read covers. Packs no index names are never read. */
enum cairn_check_subset {
    CAIRN_CHECK_ALL = 0,   /* every pack */
    CAIRN_CHECK_BUCKET,    /* part n of m: packs whose id's first 4 bytes (big-endian)
                            * mod m == n - 1; parts 1..m together cover every pack
                            * exactly once, the same way on every run */
    CAIRN_CHECK_PERCENT,   /* a random choice of ceil(percent% of the packs) */
    CAIRN_CHECK_BYTES,     /* random packs while their total size stays <= bytes */
};

struct cairn_check_opts {
    int read_data;
    enum cairn_check_subset subset;
    uint32_t n, m;         /* CAIRN_CHECK_BUCKET: 1 <= n <= m */
    double percent;        /* CAIRN_CHECK_PERCENT: 0 < percent <= 100 */
    uint64_t bytes;        /* CAIRN_CHECK_BYTES: > 0 */
};

/* Parses a --read-data-subset value: "N/M", "P%" (P may have decimals) or a
 * size ("500M", "2G", "1024"; K/M/G/T are powers of 1024) into o (read_data
 * set). CAIRN_FAILED with a message naming the value on anything else. */
int cairn_check_parse_subset(const char *spec, struct cairn_check_opts *o, cairn_err *err);

struct cairn_check_result {
    uint64_t packs, blobs_read, snapshots, trees, files;
    uint64_t packs_read, bytes_read; /* what the data read covered */
    uint64_t problems;       /* damaged or missing objects */
    uint64_t affected_files; /* file entries (in all snapshots) that need them */
    uint64_t unindexed_packs;/* packs no index names (harmless; prune removes them) */
};

int cairn_check(cairn_repo *r, int read_data, cairn_check_report_fn report, void *arg,
                struct cairn_check_result *res, cairn_err *err);
/* The same with a subset of the data (o may be NULL: no data read). */
int cairn_check_opts(cairn_repo *r, const struct cairn_check_opts *o,
                     cairn_check_report_fn report, void *arg, struct cairn_check_result *res,
                     cairn_err *err);

#endif

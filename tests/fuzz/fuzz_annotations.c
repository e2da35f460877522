/* Fuzz target: PVC annotation parser (agent/annotations.c).
 * Input: lines "key<TAB>value"; a key of one digit 0-9 stands for a cairn.io/
 * key from the table below, so the fuzzer reaches every annotation quickly.
 * Checks: the result is consistent (errors <=> CAIRN_FAILED, valid bits only
 * for known parts, messages start with the key they are about, globs within
 * their caps) and clearing frees everything (ASan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../agent/annotations.h"

static const char *const keys[10] = {
    "cairn.io/schedule",      "cairn.io/retention",          "cairn.io/quiesce",
    "cairn.io/snapshot",      "cairn.io/snapshot-class",     "cairn.io/credentials-secret",
    "cairn.io/exclude",       "cairn.io/backup-requested-at", "cairn.io/unknown",
    "cairn.io/last-status",
};

#define MAXA 32

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct cairn_annotation a[MAXA];
    struct cairn_pvc_policy p;
    cairn_err err;
    char *buf, *s, *line;
    size_t na = 0, i;
    int rc;
    if (n > 65536)
        return 0;
    buf = malloc(n + 1);
    if (!buf)
        return 0;
    memcpy(buf, d, n);
    buf[n] = 0;
    for (s = buf; s && *s && na < MAXA; s = line) {
        char *tab;
        line = strchr(s, '\n');
        if (line)
            *line++ = 0;
        tab = strchr(s, '\t');
        if (tab)
            *tab++ = 0;
        a[na].key = (s[0] >= '0' && s[0] <= '9' && s[1] == 0) ? keys[s[0] - '0'] : s;
        a[na].value = tab; /* NULL when the line has no tab */
        na++;
    }
    rc = cairn_pvc_policy_parse(a, na, &p, &err);
    if ((rc == CAIRN_OK) != (p.n_errors == 0) || (rc != CAIRN_OK && rc != CAIRN_FAILED))
        __builtin_trap();
    if ((p.valid | p.present) & ~CAIRN_ANN_ALL)
        __builtin_trap();
    if (p.n_problems > CAIRN_ANN_MAX_PROBLEMS)
        __builtin_trap();
    for (i = 0; i < p.n_problems; i++) {
        const struct cairn_ann_problem *pr = &p.problems[i];
        if (!pr->msg[0])
            __builtin_trap();
        if (pr->part && strncmp(pr->msg, pr->key, strlen(pr->key)) != 0)
            __builtin_trap();
    }
    if (p.n_exclude > CAIRN_ANN_MAX_EXCLUDES)
        __builtin_trap();
    for (i = 0; i < p.n_exclude; i++)
        if (!p.exclude[i][0] || strlen(p.exclude[i]) > CAIRN_ANN_MAX_GLOB)
            __builtin_trap();
    if (cairn_pvc_policy_can_backup(&p) &&
        (p.quiesce == CAIRN_QUIESCE_FSFREEZE && p.snapshot == CAIRN_SNAPSHOT_FILE))
        __builtin_trap();
    if (cairn_pvc_policy_can_backup(&p) &&
        (p.quiesce == CAIRN_QUIESCE_POSTGRES || p.quiesce == CAIRN_QUIESCE_MYSQL) &&
        !p.credentials_secret[0])
        __builtin_trap();
    cairn_pvc_policy_clear(&p);
    free(buf);
    return 0;
}

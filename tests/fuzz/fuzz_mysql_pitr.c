/* Fuzz target: what restore-mysql and backup-mysql parse (agent/mysql_*.c):
 * the binlog event walk, the xbstream watcher fed in uneven pieces,
 * xtrabackup_binlog_info lines, base backup manifests and target strings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../agent/mysql_pitr.h"

struct walk_check {
    size_t n;
    uint64_t last_end;
};

static int on_ev(void *arg, const struct cairn_my_event *ev)
{
    struct walk_check *w = arg;
    if (ev->end <= ev->pos || ev->end > w->n || ev->pos < w->last_end)
        __builtin_trap(); /* events lie inside the file, in order, not overlapping */
    w->last_end = ev->end;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct walk_check w = {n, 4};
    cairn_err err;
    char *s = malloc(n + 1);
    cairn_my_xbs *x = cairn_my_xbs_new();
    if (!s || !x) {
        free(s);
        cairn_my_xbs_free(x);
        return 0;
    }
    cairn_my_binlog_walk(d, n, on_ev, &w, &err);
    {
        size_t at = 0, step = n ? (size_t)d[0] % 37 + 1 : 1;
        while (at < n) {
            size_t k = n - at < step ? n - at : step;
            cairn_my_xbs_feed(x, d + at, k);
            at += k;
            step = step * 3 % 4099 + 1;
        }
        if (cairn_my_xbs_binlog_info(x) && strlen(cairn_my_xbs_binlog_info(x)) > 4096)
            __builtin_trap();
    }
    memcpy(s, d, n);
    s[n] = 0;
    {
        char file[256], gtid[1024];
        uint64_t pos;
        struct cairn_my_basebackup b;
        struct cairn_my_target t;
        cairn_my_binlog_info_parse(s, file, sizeof file, &pos, gtid, sizeof gtid);
        cairn_my_basebackup_parse(s, "fuzz", &b, &err);
        memset(&t, 0, sizeof t);
        cairn_my_target_position(s, &t);
        cairn_my_target_gtid(s, &t);
    }
    cairn_my_xbs_free(x);
    free(s);
    return 0;
}

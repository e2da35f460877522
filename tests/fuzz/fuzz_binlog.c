/* Fuzz target: the MariaDB/MySQL binlog event scanner and the binlog object
 * reader (agent/mysql_binlog.c). */
#include <stdint.h>

#include "../../agent/mysql.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct cairn_my_binscan s;
    struct cairn_my_binmeta m;
    cairn_buf raw = CAIRN_BUF_INIT;
    size_t off;
    cairn_err err;
    cairn_my_binlog_scan(d, n, &s, &err);
    if (cairn_my_binobj_head(d, n, &m, &off, &err) == CAIRN_OK && off > n)
        __builtin_trap(); /* the payload must start inside the object */
    cairn_my_binobj_decode(d, n, "fuzz", &m, &raw, &err);
    cairn_buf_free(&raw);
    return 0;
}

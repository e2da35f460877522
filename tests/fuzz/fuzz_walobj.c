/* Fuzz target: the PostgreSQL WAL object reader and the timeline history
 * parser (restore/pitr_pg.c). */
#include <stdint.h>
#include <stdlib.h>

#include "../../restore/pitr_pg.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct cairn_pg_walmeta m;
    cairn_buf raw = CAIRN_BUF_INIT;
    size_t off;
    cairn_err err;
    if (cairn_pg_walobj_head(d, n, &m, &off, &err) == CAIRN_OK && off > n)
        abort(); /* the payload must start inside the object */
    cairn_pg_walobj_decode(d, n, "fuzz", &m, &raw, &err);
    cairn_buf_free(&raw);
    {
        struct cairn_pg_tlentry tl[64];
        size_t cnt = 0;
        if (cairn_pg_history_parse((const char *)d, n, tl, 64, &cnt, &err) == CAIRN_OK &&
            cnt > 64)
            abort(); /* never more entries than room */
    }
    return 0;
}

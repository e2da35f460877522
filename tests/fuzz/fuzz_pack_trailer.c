/* Fuzz target: pack trailer parser (engine/pack.c), with the input taken as
 * the whole pack, and blob decoding of each entry it accepts. */
#include <stdint.h>
#include <stdlib.h>

#include "../../engine/pack.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct cairn_pack_entry *es = NULL;
    size_t cnt = 0, need = 0, i;
    cairn_err err;
    cairn_buf out = CAIRN_BUF_INIT;
    if (cairn_pack_parse_trailer(d, n, n, &es, &cnt, &need, &err) != CAIRN_OK || need)
        return 0;
    for (i = 0; i < cnt; i++) {
        if (es[i].offset + es[i].stored_len > n)
            abort(); /* accepted entries must lie inside the pack */
        cairn_blob_decode(d + es[i].offset, es[i].stored_len, es[i].flags, es[i].raw_len, &out,
                          &err);
    }
    cairn_buf_free(&out);
    free(es);
    return 0;
}

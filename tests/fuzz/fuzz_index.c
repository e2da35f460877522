/* Fuzz target: index object parser (zstd + JSON, engine/repo.c). */
#include <stdint.h>

#include "../../engine/internal.h"

static int count(void *arg, const struct cairn_index_pack *p)
{
    size_t i;
    for (i = 0; i < p->n; i++)
        if (p->entries[i].offset + p->entries[i].stored_len > p->size)
            __builtin_trap(); /* accepted entries must lie inside their pack */
    (*(size_t *)arg) += p->n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    cairn_err err;
    size_t blobs = 0;
    cairn_index_parse(d, n, count, &blobs, &err);
    return 0;
}

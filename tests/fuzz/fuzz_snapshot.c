/* Fuzz target: snapshot manifest parser (engine/repo.c). */
#include <stdint.h>

#include "../../engine/repo.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct cairn_snapshot *s;
    cairn_err err;
    if (cairn_snapshot_parse("fuzz", d, n, &s, &err) == CAIRN_OK)
        cairn_snapshot_free(s);
    return 0;
}

/* Fuzz target: tree object decoder (engine/tree.c). Also re-encodes what it
 * accepts and checks the round trip decodes to the same count. */
#include <stdint.h>
#include <stdlib.h>

#include "../../engine/tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct cairn_tree t, t2;
    cairn_err err;
    cairn_buf b = CAIRN_BUF_INIT;
    if (cairn_tree_decode(d, n, &t, &err) != CAIRN_OK)
        return 0;
    if (cairn_tree_encode(&t, &b) == CAIRN_OK) {
        if (cairn_tree_decode(b.data, b.len, &t2, &err) != CAIRN_OK || t2.n != t.n)
            abort(); /* what we accept we must be able to write back */
        cairn_tree_free(&t2);
    }
    cairn_buf_free(&b);
    cairn_tree_free(&t);
    return 0;
}

/* engine/chunker.h — content-defined chunking (FastCDC-style gear hash with
 * normalized chunking). A chunk boundary is always forced at the start of a
 * file: callers run one chunker pass per file.
 *
 * The gear table is derived from the repository's chunk key, so boundaries do
 * not reveal content to someone who does not hold the key.
 * Ownership: plain struct, no allocation. Threading: read-only after init. */
#ifndef CAIRN_CHUNKER_H
#define CAIRN_CHUNKER_H

#include <stddef.h>
#include <stdint.h>

struct cairn_chunker {
    uint64_t gear[256];
    uint64_t mask_s, mask_l;
    size_t min, avg, max;
};

/* avg must be a power of two; min < avg < max. */
void cairn_chunker_init(struct cairn_chunker *c, const uint8_t key[32], size_t min, size_t avg,
                        size_t max);
/* Returns the length of the next chunk at the start of p[0..n): a cut point
 * found by content, or max. When n < max and no cut point is found, returns n:
 * then the caller either has reached the end of the file (n is the last chunk)
 * or must supply more bytes and call again. */
size_t cairn_chunker_next(const struct cairn_chunker *c, const uint8_t *p, size_t n);

#endif

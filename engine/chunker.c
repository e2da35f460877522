/* engine/chunker.c — see chunker.h. */
#include "chunker.h"

#include <sodium.h>
#include <string.h>

static int log2_of(size_t v)
{
    int b = 0;
    while ((size_t)1 << (b + 1) <= v)
        b++;
    return b;
}

static uint64_t high_mask(int bits)
{
    if (bits <= 0)
        return 0;
    if (bits >= 64)
        return ~0ULL;
    return ((1ULL << bits) - 1) << (64 - bits);
}

void cairn_chunker_init(struct cairn_chunker *c, const uint8_t key[32], size_t min, size_t avg,
                        size_t max)
{
    uint8_t block[64];
    int i, bits;
    /* gear[i] = first 8 bytes of BLAKE2b-512(key, "cairn-gear" || i) */
    for (i = 0; i < 256; i++) {
        uint8_t msg[16] = "cairn-gear";
        msg[12] = (uint8_t)i;
        crypto_generichash(block, sizeof block, msg, sizeof msg, key, 32);
        memcpy(&c->gear[i], block, 8);
    }
    c->min = min;
    c->avg = avg;
    c->max = max;
    bits = log2_of(avg);
    c->mask_s = high_mask(bits + 2); /* harder before avg */
    c->mask_l = high_mask(bits - 2); /* easier after avg */
}

size_t cairn_chunker_next(const struct cairn_chunker *c, const uint8_t *p, size_t n)
{
    uint64_t h = 0;
    size_t i, mid, end;
    if (n <= c->min)
        return n;
    end = n < c->max ? n : c->max;
    mid = c->avg < end ? c->avg : end;
    /* the gear hash depends only on the last 64 bytes: start shortly before min */
    i = c->min - 64;
    for (; i < mid; i++) {
        h = (h << 1) + c->gear[p[i]];
        if (i >= c->min && !(h & c->mask_s))
            return i + 1;
    }
    for (; i < end; i++) {
        h = (h << 1) + c->gear[p[i]];
        if (!(h & c->mask_l))
            return i + 1;
    }
    return end;
}

/* engine/crc32c.c — CRC-32C; see crc32c.h. */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRC_X86 1
#include <nmmintrin.h>
#endif

/* ---- software: slicing by 8 over a table built at compile time ---- */

#define POLY 0x82F63B78u /* the reflected Castagnoli polynomial */

/* slice[0][b]: the CRC register after byte b; slice[k][b]: the same followed
 * by k zero bytes */
static uint32_t slice[8][256];
static pthread_once_t slice_once = PTHREAD_ONCE_INIT;

static void slice_init(void)
{
    int k, b, i;
    for (b = 0; b < 256; b++) {
        uint32_t c = (uint32_t)b;
        for (i = 0; i < 8; i++)
            c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        slice[0][b] = c;
    }
    for (b = 0; b < 256; b++)
        for (k = 1; k < 8; k++)
            slice[k][b] = (slice[k - 1][b] >> 8) ^ slice[0][slice[k - 1][b] & 0xff];
}

static uint64_t load64le(const uint8_t *p)
{
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* crc is the raw register (already inverted) */
static uint32_t sw_word(uint32_t crc, uint64_t w)
{
    w ^= crc;
    return slice[7][w & 0xff] ^ slice[6][(w >> 8) & 0xff] ^ slice[5][(w >> 16) & 0xff] ^
           slice[4][(w >> 24) & 0xff] ^ slice[3][(w >> 32) & 0xff] ^
           slice[2][(w >> 40) & 0xff] ^ slice[1][(w >> 48) & 0xff] ^ slice[0][w >> 56];
}

static uint32_t sw_bytes(uint32_t crc, const uint8_t *p, size_t n)
{
    pthread_once(&slice_once, slice_init);
    for (; n >= 8; p += 8, n -= 8)
        crc = sw_word(crc, load64le(p));
    while (n--)
        crc = (crc >> 8) ^ slice[0][(crc ^ *p++) & 0xff];
    return crc;
}

uint32_t cairn_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    return ~sw_bytes(~crc, buf, len);
}

/* ---- hardware ---- */

#ifdef CRC_X86
static int hw_state; /* 0 unknown, 1 yes, -1 no */

static int have_hw(void)
{
    int s = __atomic_load_n(&hw_state, __ATOMIC_RELAXED);
    if (s == 0) {
        __builtin_cpu_init();
        s = __builtin_cpu_supports("sse4.2") ? 1 : -1;
        __atomic_store_n(&hw_state, s, __ATOMIC_RELAXED);
    }
    return s > 0;
}

__attribute__((target("sse4.2"))) static uint32_t hw_bytes(uint32_t crc, const uint8_t *p,
                                                           size_t n)
{
    uint64_t c = crc;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
    }
    while (n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return (uint32_t)c;
}

__attribute__((target("sse4.2"))) static void hw_lanes(uint32_t lane[4], const uint8_t *p,
                                                       size_t strides)
{
    uint64_t c0 = lane[0], c1 = lane[1], c2 = lane[2], c3 = lane[3];
    for (; strides; strides--, p += 32) {
        uint64_t w[4];
        memcpy(w, p, 32);
        c0 = _mm_crc32_u64(c0, w[0]);
        c1 = _mm_crc32_u64(c1, w[1]);
        c2 = _mm_crc32_u64(c2, w[2]);
        c3 = _mm_crc32_u64(c3, w[3]);
    }
    lane[0] = (uint32_t)c0;
    lane[1] = (uint32_t)c1;
    lane[2] = (uint32_t)c2;
    lane[3] = (uint32_t)c3;
}
#endif

/* x86's crc32 instruction reads words little-endian; so does load64le */
static void sw_lanes(uint32_t lane[4], const uint8_t *p, size_t strides)
{
    pthread_once(&slice_once, slice_init);
    for (; strides; strides--, p += 32) {
        lane[0] = sw_word(lane[0], load64le(p));
        lane[1] = sw_word(lane[1], load64le(p + 8));
        lane[2] = sw_word(lane[2], load64le(p + 16));
        lane[3] = sw_word(lane[3], load64le(p + 24));
    }
}

uint32_t cairn_crc32c(uint32_t crc, const void *buf, size_t len)
{
#ifdef CRC_X86
    if (have_hw())
        return ~hw_bytes(~crc, buf, len);
#endif
    return ~sw_bytes(~crc, buf, len);
}

/* ---- four lanes ---- */

static void lanes(cairn_crc4 *c, const uint8_t *p, size_t strides)
{
#ifdef CRC_X86
    if (!c->sw && have_hw()) {
        hw_lanes(c->lane, p, strides);
        return;
    }
#endif
    sw_lanes(c->lane, p, strides);
}

void cairn_crc4_init(cairn_crc4 *c)
{
    memset(c, 0, sizeof *c);
    c->lane[0] = c->lane[1] = c->lane[2] = c->lane[3] = 0xFFFFFFFFu;
}

void cairn_crc4_update(cairn_crc4 *c, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    c->len += len;
    if (c->ncarry) {
        size_t take = 32 - c->ncarry < len ? 32 - c->ncarry : len;
        memcpy(c->carry + c->ncarry, p, take);
        c->ncarry += take;
        p += take;
        len -= take;
        if (c->ncarry < 32)
            return;
        lanes(c, c->carry, 1);
        c->ncarry = 0;
    }
    if (len >= 32) {
        lanes(c, p, len / 32);
        p += len / 32 * 32;
        len %= 32;
    }
    memcpy(c->carry, p, len);
    c->ncarry = len;
}

void cairn_crc4_final(cairn_crc4 *c, uint8_t out[CAIRN_CRC4_DIGEST])
{
    int k, i;
    uint32_t l0 = c->lane[0];
    if (c->ncarry)
        l0 = ~(c->sw ? cairn_crc32c_sw(~l0, c->carry, c->ncarry)
                     : cairn_crc32c(~l0, c->carry, c->ncarry));
    c->lane[0] = l0;
    c->ncarry = 0;
    for (k = 0; k < 4; k++) {
        uint32_t v = ~c->lane[k];
        for (i = 0; i < 4; i++)
            out[4 * k + i] = (uint8_t)(v >> (8 * i));
    }
    for (i = 0; i < 8; i++)
        out[16 + i] = (uint8_t)(c->len >> (8 * i));
}

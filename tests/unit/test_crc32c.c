/* tests/unit/test_crc32c.c — CRC-32C against the RFC 3720 vectors, hardware
 * against software, and the four-lane digest against its definition. */
#define _XOPEN_SOURCE 700
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../engine/crc32c.h"
#include "check.h"

static void test_vectors(void)
{
    uint8_t b[32];
    int i;
    CHECK(cairn_crc32c(0, "123456789", 9) == 0xE3069283u, "check value");
    CHECK(cairn_crc32c_sw(0, "123456789", 9) == 0xE3069283u, "check value (software)");
    memset(b, 0, sizeof b);
    CHECK(cairn_crc32c(0, b, 32) == 0x8A9136AAu, "32 zero bytes");
    CHECK(cairn_crc32c_sw(0, b, 32) == 0x8A9136AAu, "32 zero bytes (software)");
    memset(b, 0xff, sizeof b);
    CHECK(cairn_crc32c(0, b, 32) == 0x62A8AB43u, "32 0xff bytes");
    for (i = 0; i < 32; i++)
        b[i] = (uint8_t)i;
    CHECK(cairn_crc32c(0, b, 32) == 0x46DD794Eu, "32 incrementing bytes");
    CHECK(cairn_crc32c_sw(0, b, 32) == 0x46DD794Eu, "32 incrementing bytes (software)");
    /* continuing equals one call */
    CHECK(cairn_crc32c(cairn_crc32c(0, b, 13), b + 13, 19) == 0x46DD794Eu, "continued");
    CHECK(cairn_crc32c(0, b, 0) == 0, "empty");
}

static void test_hw_sw(void)
{
    size_t n = 70000, off, len;
    uint8_t *b = malloc(n);
    REQUIRE(b, "malloc");
    srand(7);
    for (off = 0; off < n; off++)
        b[off] = (uint8_t)rand();
    for (off = 0; off < 9; off++)
        for (len = 0; len < 100; len++)
            CHECK(cairn_crc32c(0, b + off, len) == cairn_crc32c_sw(0, b + off, len),
                  "offset %zu length %zu", off, len);
    CHECK(cairn_crc32c(0x12345678u, b + 3, n - 3) == cairn_crc32c_sw(0x12345678u, b + 3, n - 3),
          "long buffer");
    free(b);
}

/* The digest by its definition: lane k over the k-th word of every whole
 * 32-byte stride, the tail after lane 0's words, then the length. */
static void reference(const uint8_t *p, size_t len, uint8_t out[CAIRN_CRC4_DIGEST])
{
    size_t strides = len / 32, s;
    int k, i;
    for (k = 0; k < 4; k++) {
        uint32_t c = 0;
        for (s = 0; s < strides; s++)
            c = cairn_crc32c_sw(c, p + 32 * s + 8 * (size_t)k, 8);
        if (k == 0)
            c = cairn_crc32c_sw(c, p + 32 * strides, len % 32);
        for (i = 0; i < 4; i++)
            out[4 * k + i] = (uint8_t)(c >> (8 * i));
    }
    for (i = 0; i < 8; i++)
        out[16 + i] = (uint8_t)((uint64_t)len >> (8 * i));
}

static void crc4_cut(const uint8_t *p, size_t len, int sw, int cuts, uint8_t out[24])
{
    cairn_crc4 c;
    size_t done = 0;
    cairn_crc4_init(&c);
    c.sw = sw;
    while (cuts-- > 0 && done < len) {
        size_t take = (size_t)rand() % (len - done + 1);
        cairn_crc4_update(&c, p + done, take);
        done += take;
    }
    cairn_crc4_update(&c, p + done, len - done);
    cairn_crc4_final(&c, out);
}

static void test_crc4(void)
{
    size_t n = 5000, lens[] = {0, 1, 7, 31, 32, 33, 63, 64, 100, 4096, 4999};
    uint8_t *b = malloc(n), want[24], got[24], flipped[24];
    size_t i;
    REQUIRE(b, "malloc");
    srand(11);
    for (i = 0; i < n; i++)
        b[i] = (uint8_t)rand();
    for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        size_t len = lens[i];
        int sw, cuts;
        reference(b, len, want);
        for (sw = 0; sw < 2; sw++)
            for (cuts = 0; cuts < 6; cuts++) {
                crc4_cut(b, len, sw, cuts, got);
                CHECK(memcmp(got, want, 24) == 0, "length %zu sw %d cuts %d", len, sw, cuts);
            }
    }
    /* one flipped bit anywhere changes it */
    reference(b, 4096, want);
    for (i = 0; i < 4096; i += 97) {
        b[i] ^= 0x10;
        crc4_cut(b, 4096, 0, 3, flipped);
        CHECK(memcmp(flipped, want, 24) != 0, "bit flip at %zu not seen", i);
        b[i] ^= 0x10;
    }
    /* two words swapped between strides change it */
    {
        uint8_t t[8];
        memcpy(t, b, 8);
        memcpy(b, b + 32, 8);
        memcpy(b + 32, t, 8);
        crc4_cut(b, 4096, 0, 0, flipped);
        CHECK(memcmp(flipped, want, 24) != 0, "swapped words not seen");
    }
    free(b);
}

int main(void)
{
    test_vectors();
    test_hw_sw();
    test_crc4();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("crc32c: all passed\n");
    return 0;
}

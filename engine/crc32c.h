/* engine/crc32c.h — CRC-32C (Castagnoli, the checksum of iSCSI, ext4 metadata
 * and PostgreSQL's WAL records), in hardware where the CPU has it (SSE4.2)
 * and in portable table-driven code elsewhere. For detecting accidental
 * damage of local files (the WAL prefetch spool); never for authentication.
 *
 * Ownership: no allocation; callers own every buffer. Threading: no shared
 * mutable state (the software tables are constant). */
#ifndef CAIRN_CRC32C_H
#define CAIRN_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Standard CRC-32C: start with crc = 0, feed the result back in to continue.
 * cairn_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t cairn_crc32c(uint32_t crc, const void *buf, size_t len);

/* The same in software only (what runs without SSE4.2); for tests. */
uint32_t cairn_crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* Four-lane CRC-32C, about four times faster than one lane on CPUs with the
 * instruction: the data is cut into 32-byte strides; lane k is the standard
 * CRC-32C of the k-th 8-byte word of every stride, in order; the bytes after
 * the last whole stride go to lane 0 after its words. Updates may be cut
 * anywhere (a partial stride is carried). The digest is the four lanes, each
 * little-endian, followed by the total length (little-endian, 8 bytes). */
typedef struct {
    uint32_t lane[4];
    uint64_t len;
    uint8_t carry[32];
    size_t ncarry;
    int sw; /* use the software path (tests: set after cairn_crc4_init) */
} cairn_crc4;

#define CAIRN_CRC4_DIGEST 24

void cairn_crc4_init(cairn_crc4 *c);
void cairn_crc4_update(cairn_crc4 *c, const void *buf, size_t len);
void cairn_crc4_final(cairn_crc4 *c, uint8_t out[CAIRN_CRC4_DIGEST]);

#endif

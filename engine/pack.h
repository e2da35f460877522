/* engine/pack.h — packs: many blobs in one object, with a self-describing trailer.
 *
 * Layout of a pack object (docs/repository-format.md):
 *   blob 0 | blob 1 | ... | trailer entries | footer
 * Each blob is its stored bytes: a zstd frame with a content checksum (flag
 * bit 0), or raw when zstd did not help.
 * Trailer entry (42 bytes): type u8, flags u8, stored_len u32le, raw_len u32le,
 * id[32]; blobs lie back to back from offset 0 in entry order. Footer (24 bytes):
 * count u32le, version u32le, check[8] = BLAKE2b-64 of the entries and count,
 * magic "CAIRNPK1". So an index can be rebuilt from the packs alone.
 *
 * Ownership: a writer owns its spool file until cairn_pack_writer_finish()
 * hands it to the store (or _abort() deletes it).
 * Threading: a writer is used by one thread at a time (callers lock). */
#ifndef CAIRN_PACK_H
#define CAIRN_PACK_H

#include "../catalog/catalog.h"
#include "util.h"

#define CAIRN_PACK_ENTRY_LEN 42
#define CAIRN_PACK_FOOTER_LEN 24
#define CAIRN_PACK_MAX_BLOBS 1000000
#define CAIRN_BLOB_MAX (64u << 20) /* largest blob (raw or stored) we accept */

#define CAIRN_BLOB_ZSTD 1

struct cairn_pack_entry {
    cairn_id id;
    uint8_t type, flags;
    uint32_t stored_len, raw_len;
    uint64_t offset;
};

typedef struct cairn_pack_writer cairn_pack_writer;

/* Creates a spool file in tmpdir. */
int cairn_pack_writer_new(const char *tmpdir, cairn_pack_writer **out, cairn_err *err);
/* Appends stored bytes of one blob. */
int cairn_pack_writer_add(cairn_pack_writer *w, const cairn_id *id, uint8_t type,
                          uint8_t flags, uint32_t raw_len, const void *stored,
                          uint32_t stored_len, cairn_err *err);
uint64_t cairn_pack_writer_size(const cairn_pack_writer *w);
size_t cairn_pack_writer_count(const cairn_pack_writer *w);
/* Writes the trailer, closes the spool file, and returns its path and the
 * pack's random id, size and entries (caller frees *path and *entries). The
 * writer is freed. */
int cairn_pack_writer_finish(cairn_pack_writer *w, cairn_id *pack_id, char **path,
                             uint64_t *size, struct cairn_pack_entry **entries, size_t *n,
                             cairn_err *err);
void cairn_pack_writer_abort(cairn_pack_writer *w);

/* Parses a pack's trailer from its last bytes. tail holds the final tail_len
 * bytes of a pack of pack_size bytes; *need > 0 on return means "give me the
 * last *need bytes" (call again). Entries get their offsets filled in. */
int cairn_pack_parse_trailer(const uint8_t *tail, size_t tail_len, uint64_t pack_size,
                             struct cairn_pack_entry **entries, size_t *n, size_t *need,
                             cairn_err *err);

/* The object key of a pack: "data/<first 2 hex>/<hex>". out >= 72 bytes. */
void cairn_pack_key(const cairn_id *pack, char *out, size_t outlen);

/* Encodes raw into out: a zstd frame with a content checksum, or the raw bytes
 * when compression saves less than 1/32 (or the blob is tiny). Sets *flags. */
int cairn_blob_encode(const void *raw, size_t len, int level, cairn_buf *out, uint8_t *flags);
/* Decodes stored bytes into out (raw_len expected). */
int cairn_blob_decode(const void *stored, size_t len, uint8_t flags, uint32_t raw_len,
                      cairn_buf *out, cairn_err *err);

#endif

/* engine/internal.h — engine-private helpers shared by the engine's own files
 * (repo.c, backup.c, check.c). Not for use outside engine/. */
#ifndef CAIRN_ENGINE_INTERNAL_H
#define CAIRN_ENGINE_INTERNAL_H

#include <jansson.h>

#include "pack.h"
#include "repo.h"
#include "tree.h"

#define CAIRN_INDEX_MAX_STORED (256u << 20)
#define CAIRN_INDEX_MAX_RAW (1024u << 20)
#define CAIRN_SNAPSHOT_MAX (16u << 20)
#define CAIRN_CONFIG_MAX (1u << 20)

json_t *cairn_node_to_json(const struct cairn_node *n);
int cairn_node_from_json(json_t *o, struct cairn_node *n, cairn_err *err);

/* Name of an immutable object: BLAKE2b-256 of its bytes (unkeyed). */
void cairn_object_id(const void *data, size_t len, cairn_id *out);
/* The name of an index or snapshot object of this repository: cairn_object_id,
 * or BLAKE2b-256 keyed with the name key when the repository is encrypted (so
 * names reveal no hash of the plaintext). */
void cairn_repo_object_id(const cairn_repo *r, const void *data, size_t len, cairn_id *out);

/* One pack's part of an index object. */
struct cairn_index_pack {
    cairn_id id;
    uint64_t size;
    struct cairn_pack_entry *entries;
    size_t n;
};

/* Writes an index object for these packs and records it (and them) in the
 * catalog. name_out (65 bytes) gets the object's id. */
int cairn_repo_put_index(cairn_repo *r, const struct cairn_index_pack *packs, size_t n,
                         char *name_out, cairn_err *err);
/* Parses an index object's stored bytes; cb is called per pack. */
typedef int (*cairn_index_pack_cb)(void *arg, const struct cairn_index_pack *p);
int cairn_index_parse(const uint8_t *data, size_t len, cairn_index_pack_cb cb, void *arg,
                      cairn_err *err);

/* Stores a manifest (serialized canonically) and records it in the catalog. */
int cairn_repo_put_snapshot(cairn_repo *r, json_t *manifest, char id_out[CAIRN_HEX_LEN + 1],
                            cairn_err *err);

/* The catalog lock guarding the repo's catalog connection across threads. */
void cairn_repo_lock(cairn_repo *r);
void cairn_repo_unlock(cairn_repo *r);

/* zstd helpers for whole objects, with a cap on the decompressed size. */
int cairn_zstd_compress(const void *in, size_t len, int level, cairn_buf *out);
int cairn_zstd_decompress(const void *in, size_t len, size_t max, cairn_buf *out,
                          cairn_err *err);

#endif

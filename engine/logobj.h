/* engine/logobj.h — self-describing log objects (PostgreSQL WAL, MariaDB/MySQL
 * binlogs): a magic line, one line of JSON metadata, then one zstd frame of
 * the file. The metadata's meaning belongs to each database layer; this
 * module only frames and verifies.
 *
 * Ownership: *meta from cairn_logobj_head() is the caller's (json_decref);
 * raw, head and obj buffers are the caller's. Threading: no shared state. */
#ifndef CAIRN_LOGOBJ_H
#define CAIRN_LOGOBJ_H

#include <jansson.h>

#include "../uploaders/store.h"
#include "util.h"

/* Checks the magic, finds the metadata line within max_head bytes and parses
 * it. what names the kind for messages ("WAL", "binlog"). *payload_off is
 * where the zstd frame starts. CAIRN_CORRUPT with a message otherwise. */
int cairn_logobj_head(const uint8_t *obj, size_t len, const char *magic, size_t max_head,
                      const char *what, json_t **meta, size_t *payload_off, cairn_err *err);

/* Decodes the zstd frame at obj[off..len) into raw and verifies it holds
 * exactly size bytes whose SHA-256 is sha256. key names the object in
 * messages. On failure raw is emptied and CAIRN_CORRUPT returned. */
int cairn_logobj_payload(const uint8_t *obj, size_t len, size_t off, uint64_t size,
                         const uint8_t sha256[32], const char *key, cairn_buf *raw,
                         cairn_err *err);

/* Frames an object into out: magic, meta as one line of compact sorted JSON
 * (at most max_head bytes with the magic and newline, else CAIRN_FAILED
 * naming what and name), then the zstd frame zfr[0..zlen). meta is the
 * caller's. */
int cairn_logobj_encode(const char *magic, size_t max_head, const char *what, const char *name,
                        const json_t *meta, const void *zfr, size_t zlen, cairn_buf *out,
                        cairn_err *err);

/* ---- push-if-absent: log objects are written once, never overwritten ---- */

/* What an archived object's metadata says of its content ("size", "sha256"). */
struct cairn_logobj_sum {
    uint64_t size;
    uint8_t sha256[32];
};

/* Compares the object under key with a file of size bytes and SHA-256
 * sha256, reading only its head (at most max_head bytes) and the metadata's
 * "size" and "sha256". 1: the same file; 0: a different one (unreadable
 * metadata is never taken for the same file; old is then zeroed);
 * CAIRN_NOTFOUND: no object; else an error. old (may be NULL) gets what the
 * archived copy says; head (may be NULL) gets the bytes read, for the
 * caller's own metadata parser. */
int cairn_logobj_same(cairn_store *s, const char *key, const char *magic, size_t max_head,
                      const char *what, uint64_t size, const uint8_t sha256[32],
                      struct cairn_logobj_sum *old, cairn_buf *head, cairn_err *err);

/* Builds the object into obj when it is needed (the store lacks the key). */
typedef int (*cairn_logobj_build_fn)(void *arg, cairn_buf *obj, cairn_err *err);

/* Stores a log object unless the store already holds one under key: an
 * identical copy (same size and SHA-256) is success, a different one is
 * refused. obj holds the object, or build (may be NULL) fills it only when
 * it is to be stored (so a re-push compresses nothing). After a put the
 * store is flushed. CAIRN_OK with *stored = the object's bytes (0: an
 * identical copy was there); CAIRN_EXISTS, nothing written, when a DIFFERENT
 * object is under key: the message names path, key, both sizes and
 * checksums, then hint (what may have happened). old (may be NULL) gets the
 * archived copy's size and checksum. */
int cairn_logobj_put_once(cairn_store *s, const char *key, const char *magic, size_t max_head,
                          const char *what, const char *path, uint64_t size,
                          const uint8_t sha256[32], cairn_buf *obj, cairn_logobj_build_fn build,
                          void *arg, const char *hint, struct cairn_logobj_sum *old,
                          uint64_t *stored, cairn_err *err);

#endif

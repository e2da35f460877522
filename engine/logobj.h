/* engine/logobj.h — self-describing log objects (PostgreSQL WAL, MariaDB/MySQL
 * binlogs): a magic line, one line of JSON metadata, then one zstd frame of
 * the file. The metadata's meaning belongs to each database layer; this
 * module only frames and verifies.
 *
 * Ownership: *meta from cairn_logobj_head() is the caller's (json_decref);
 * raw buffers are the caller's. Threading: no shared state. */
#ifndef CAIRN_LOGOBJ_H
#define CAIRN_LOGOBJ_H

#include <jansson.h>

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

#endif

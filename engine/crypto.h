/* engine/crypto.h — encryption at rest: the object envelope, key files, and
 * the encrypting store that sits between the engine and any backend.
 *
 * Format and threat model: docs/repository-format.md ("Encryption"),
 * docs/security.md. In short:
 *  - a random master (an encryption key, the chunk-id key and the chunker's
 *    gear key) is stored only wrapped: keys/<id> holds it sealed with
 *    AES-256-GCM under a key derived from a password with scrypt;
 *  - every object except `config` and keys/ is sealed: a 44-byte header
 *    (magic "CAIRNENC", version, 32-byte random salt), then 64 KiB segments of
 *    plaintext, each AES-256-GCM with a per-object key HKDF-SHA256(enc key,
 *    salt, "cairn-object-v1" + object name), nonce = segment index + last flag.
 *    So a renamed, truncated, extended or altered object fails authentication,
 *    and ranged reads decrypt only the segments they touch.
 *
 * Ownership: cairn_repo_store_open() returns a store the caller frees with
 * cairn_store_free(); an encrypting store owns the backend store it wraps.
 * Masters are plain values; callers wipe them (cairn_master_wipe).
 * Threading: an encrypting store may be used from several threads at once,
 * like every store. Nothing here prints or exits. */
#ifndef CAIRN_CRYPTO_H
#define CAIRN_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "../uploaders/store.h"
#include "util.h"

#define CAIRN_CRYPT_CIPHER "aes-256-gcm"  /* the config's "encryption" value */
#define CAIRN_CRYPT_SEG 65536u            /* plaintext bytes per segment */
#define CAIRN_CRYPT_TAG 16u
#define CAIRN_CRYPT_HDR 44u
#define CAIRN_KEY_ID_HEX 16               /* key ids: 8 random bytes in hex */
#define CAIRN_KEYFILE_MAX 65536u          /* a key file larger than this is refused */
#define CAIRN_PASSWORD_MAX 4096u          /* longest password file accepted */
#define CAIRN_SCRYPT_N_LOG2 17            /* default scrypt cost: N = 2^17, r = 8, p = 1 */

/* What a key file protects. */
struct cairn_master {
    char repo_id[CAIRN_HEX_LEN + 1];
    uint8_t enc_key[32];    /* objects (through HKDF per object) */
    uint8_t chunk_key[32];  /* keyed BLAKE2b chunk ids */
    uint8_t gear_key[32];   /* the chunker's gear table */
};
void cairn_master_wipe(struct cairn_master *m);
/* The key of keyed object names (index/ and snapshots/ of an encrypted
 * repository): HKDF-SHA256(enc key, info "cairn-object-names-v1"). */
int cairn_crypt_name_key(const struct cairn_master *m, uint8_t out[32]);

/* ---- the object envelope ---- */

/* Sealed size of a plaintext of n bytes, and back (CAIRN_CORRUPT when no
 * plaintext seals to that size). */
uint64_t cairn_crypt_sealed_size(uint64_t plain);
int cairn_crypt_plain_size(uint64_t sealed, uint64_t *plain);
/* Checks a header (at least CAIRN_CRYPT_HDR bytes) and copies its salt. */
int cairn_crypt_header_parse(const uint8_t *d, size_t n, uint8_t salt[32], cairn_err *err);
/* Seals/opens a whole object named `name` (the store key). Open fails with
 * CAIRN_CORRUPT, naming the object, on any damage, truncation, or a name
 * that is not the one it was sealed under; max caps the plaintext. */
int cairn_crypt_seal(const struct cairn_master *m, const char *name, const void *in, size_t len,
                     cairn_buf *out, cairn_err *err);
int cairn_crypt_unseal(const struct cairn_master *m, const char *name, const void *in,
                       size_t len, size_t max, cairn_buf *out, cairn_err *err);

/* ---- key files (keys/<id>) ---- */

struct cairn_keyfile {
    char id[CAIRN_KEY_ID_HEX + 1];
    int64_t created_ns;
    char host[256];
    int n_log2, r, p;        /* scrypt parameters */
    uint8_t salt[32];
    uint8_t nonce[12];
    uint8_t sealed[136 + CAIRN_CRYPT_TAG]; /* the master, AES-256-GCM */
};
/* Parses a key file's JSON (bounded, every field checked). */
int cairn_keyfile_parse(const uint8_t *d, size_t n, struct cairn_keyfile *out, cairn_err *err);
/* Unwraps the master with a password; CAIRN_FATAL "wrong password" when the
 * derived key does not open it. */
int cairn_keyfile_unlock(const struct cairn_keyfile *k, const uint8_t *pw, size_t pwlen,
                         struct cairn_master *out, cairn_err *err);
/* A new key file for m under a password, with scrypt cost 2^n_log2 (0 = the
 * default, or $CAIRN_TEST_SCRYPT_N_LOG2, a hidden knob for fast tests).
 * *json is malloc'd (caller frees); id_out gets the new key's id. */
int cairn_keyfile_make(const struct cairn_master *m, const uint8_t *pw, size_t pwlen,
                       int n_log2, char **json, char id_out[CAIRN_KEY_ID_HEX + 1],
                       cairn_err *err);

/* Reads a password file (at most CAIRN_PASSWORD_MAX bytes; one trailing
 * newline is dropped; an empty password is refused). The buffer is the
 * caller's; wipe it with cairn_password_free(). */
int cairn_password_read(const char *path, cairn_buf *out, cairn_err *err);
void cairn_password_free(cairn_buf *pw);
/* The password file to use: opts->password_file, else $CAIRN_PASSWORD_FILE,
 * else NULL. */
const char *cairn_password_file(const struct cairn_store_opts *opts);

/* ---- the encrypting store ---- */

/* Wraps inner (ownership passes to the new store, also on failure). */
int cairn_crypt_store_wrap(cairn_store *inner, const struct cairn_master *m, const char *key_id,
                           cairn_store **out, cairn_err *err);
/* The master and the id of the key that unlocked it; NULL for a store that
 * does not encrypt. */
const struct cairn_master *cairn_crypt_store_master(const cairn_store *s);
const char *cairn_crypt_store_key_id(const cairn_store *s);

/* Opens the store of a repository for use: reads `config` (its bytes go to
 * config_out when not NULL) and, when the repository is encrypted, unlocks a
 * key with the password file (cairn_password_file) and returns the encrypting
 * store. CAIRN_NOTFOUND: no repository there. A password file given for an
 * unencrypted repository is refused (its config may have been altered). */
int cairn_repo_store_open(const char *url, const struct cairn_store_opts *opts,
                          cairn_buf *config_out, cairn_store **out, cairn_err *err);

/* Creates the key material of a new encrypted repository with id repo_id:
 * fills m and writes keys/<id> for the password file into s (a plain store). */
int cairn_crypt_init(cairn_store *s, const char *repo_id, const char *password_file,
                     struct cairn_master *m, cairn_err *err);

/* ---- key management (on an encrypting store) ---- */

typedef int (*cairn_key_cb)(void *arg, const struct cairn_keyfile *k, int current);
/* Every key file, sorted by creation time; a damaged one is reported through
 * the error and stops the listing. */
int cairn_crypt_key_list(cairn_store *s, cairn_key_cb cb, void *arg, cairn_err *err);
/* Adds a key for the password in new_password_file. */
int cairn_crypt_key_add(cairn_store *s, const char *new_password_file,
                        char id_out[CAIRN_KEY_ID_HEX + 1], cairn_err *err);
/* Removes a key by id (or unique id prefix); refuses the key in use and the
 * last key. */
int cairn_crypt_key_remove(cairn_store *s, const char *id, char id_out[CAIRN_KEY_ID_HEX + 1],
                           cairn_err *err);

#endif

/* Fuzz target: the key-file parser and the encrypted-object envelope
 * (engine/crypto.c): header, size arithmetic and opening a sealed object with
 * a fixed key. Nothing may crash, and nothing hostile may open. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../engine/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct cairn_keyfile k;
    struct cairn_master m;
    cairn_buf out = CAIRN_BUF_INIT;
    uint8_t salt[32];
    uint64_t plain;
    cairn_err err;
    if (cairn_keyfile_parse(d, n, &k, &err) == CAIRN_OK) {
        if (k.n_log2 < 10 || k.n_log2 > 20 || strlen(k.id) != CAIRN_KEY_ID_HEX)
            abort(); /* the parser must enforce its bounds */
        /* unlocking costs a scrypt: only for the cheapest parameters */
        if (k.n_log2 == 10 && k.r <= 8 && k.p == 1 &&
            cairn_keyfile_unlock(&k, (const uint8_t *)"fuzz", 4, &m, &err) == CAIRN_OK)
            abort(); /* no forged key opens without the password */
    }
    cairn_crypt_header_parse(d, n, salt, &err);
    if (cairn_crypt_plain_size(n, &plain) == CAIRN_OK && cairn_crypt_sealed_size(plain) != n)
        abort(); /* the size arithmetic must be exact both ways */
    memset(&m, 0, sizeof m);
    memset(m.repo_id, 'a', CAIRN_HEX_LEN);
    memset(m.enc_key, 7, sizeof m.enc_key);
    if (cairn_crypt_unseal(&m, "data/00/fuzz", d, n, 1u << 24, &out, &err) == CAIRN_OK)
        abort(); /* a forged object never authenticates */
    cairn_buf_free(&out);
    return 0;
}

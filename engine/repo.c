/* engine/repo.c — see repo.h. */
#define _GNU_SOURCE
#include "repo.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <zstd.h>

#include "crypto.h"
#include "internal.h"
#include "pack.h"

struct cairn_repo {
    EVP_MAC_CTX *mac;      /* keyed BLAKE2b-256, initialized; dup'ed per hash */
    cairn_store *store;
    cairn_catalog *cat;
    char *cat_path;
    struct cairn_repo_config cfg;
    int keyed_names;       /* encrypted: object names keyed with name_key */
    uint8_t name_key[32];
    pthread_mutex_t lock;
};

cairn_store *cairn_repo_store(cairn_repo *r) { return r->store; }
cairn_catalog *cairn_repo_catalog(cairn_repo *r) { return r->cat; }
const struct cairn_repo_config *cairn_repo_config(cairn_repo *r) { return &r->cfg; }
const char *cairn_repo_catalog_path(cairn_repo *r) { return r->cat_path; }
void cairn_repo_lock(cairn_repo *r) { pthread_mutex_lock(&r->lock); }
void cairn_repo_unlock(cairn_repo *r) { pthread_mutex_unlock(&r->lock); }

void cairn_object_id(const void *data, size_t len, cairn_id *out)
{
    crypto_generichash(out->b, CAIRN_ID_LEN, data, len, NULL, 0);
}

void cairn_repo_object_id(const cairn_repo *r, const void *data, size_t len, cairn_id *out)
{
    if (r->keyed_names)
        crypto_generichash(out->b, CAIRN_ID_LEN, data, len, r->name_key, sizeof r->name_key);
    else
        cairn_object_id(data, len, out);
}

/* Chunk ids are keyed BLAKE2b-256 (RFC 7693 keyed mode). OpenSSL's
 * implementation is used because it is about twice as fast as libsodium's on
 * the machines we measured; the output is the same function. */
static EVP_MAC_CTX *mac_new(const uint8_t key[32])
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "BLAKE2BMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    size_t outlen = CAIRN_ID_LEN;
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &outlen);
    params[1] = OSSL_PARAM_construct_end();
    EVP_MAC_free(mac);
    if (ctx && EVP_MAC_init(ctx, key, 32, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

void cairn_repo_hash(const cairn_repo *r, const void *data, size_t len, cairn_id *out)
{
    EVP_MAC_CTX *c = r->mac ? EVP_MAC_CTX_dup(r->mac) : NULL;
    size_t outl = 0;
    if (c && EVP_MAC_update(c, data, len) == 1 &&
        EVP_MAC_final(c, out->b, &outl, CAIRN_ID_LEN) == 1 && outl == CAIRN_ID_LEN) {
        EVP_MAC_CTX_free(c);
        return;
    }
    EVP_MAC_CTX_free(c);
    crypto_generichash(out->b, CAIRN_ID_LEN, data, len, r->cfg.chunk_key, 32);
}

/* ---- zstd helpers ---- */

int cairn_zstd_compress(const void *in, size_t len, int level, cairn_buf *out)
{
    size_t bound = ZSTD_compressBound(len), n;
    cairn_buf_reset(out);
    if (cairn_buf_reserve(out, bound) != CAIRN_OK)
        return CAIRN_FAILED;
    n = ZSTD_compress(out->data, bound, in, len, level);
    if (ZSTD_isError(n))
        return CAIRN_FAILED;
    out->len = n;
    return CAIRN_OK;
}

int cairn_zstd_decompress(const void *in, size_t len, size_t max, cairn_buf *out,
                          cairn_err *err)
{
    ZSTD_DStream *ds = ZSTD_createDStream();
    ZSTD_inBuffer ib = {in, len, 0};
    size_t rc = 1;
    cairn_buf_reset(out);
    if (!ds)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    ZSTD_initDStream(ds);
    while (ib.pos < ib.size || rc != 0) {
        ZSTD_outBuffer ob;
        if (cairn_buf_reserve(out, 1 << 17) != CAIRN_OK || out->len > max) {
            ZSTD_freeDStream(ds);
            return cairn_error(err, CAIRN_CORRUPT, "object decompresses to more than %zu bytes",
                               max);
        }
        ob.dst = out->data + out->len;
        ob.size = out->cap - out->len - 1;
        ob.pos = 0;
        rc = ZSTD_decompressStream(ds, &ob, &ib);
        if (ZSTD_isError(rc)) {
            ZSTD_freeDStream(ds);
            return cairn_error(err, CAIRN_CORRUPT, "object does not decompress: %s",
                               ZSTD_getErrorName(rc));
        }
        out->len += ob.pos;
        if (ib.pos == ib.size && ob.pos == 0 && rc != 0) {
            ZSTD_freeDStream(ds);
            return cairn_error(err, CAIRN_CORRUPT, "object is truncated (incomplete zstd frame)");
        }
    }
    ZSTD_freeDStream(ds);
    if (out->len > max)
        return cairn_error(err, CAIRN_CORRUPT, "object decompresses to more than %zu bytes", max);
    return CAIRN_OK;
}

/* ---- config ---- */

static int config_parse(const cairn_buf *b, struct cairn_repo_config *c, cairn_err *err)
{
    json_error_t je;
    json_t *o = json_loadb((const char *)b->data, b->len, 0, &je), *ch;
    const char *id, *key, *enc;
    if (!o)
        return cairn_error(err, CAIRN_CORRUPT, "repository config is not valid JSON: %s",
                           je.text);
    memset(c, 0, sizeof *c);
    c->version = (int)json_integer_value(json_object_get(o, "version"));
    id = json_string_value(json_object_get(o, "id"));
    ch = json_object_get(o, "chunker");
    key = json_string_value(json_object_get(ch, "key"));
    c->chunk_min = (uint32_t)json_integer_value(json_object_get(ch, "min"));
    c->chunk_avg = (uint32_t)json_integer_value(json_object_get(ch, "avg"));
    c->chunk_max = (uint32_t)json_integer_value(json_object_get(ch, "max"));
    c->zstd_level = (int)json_integer_value(
        json_object_get(json_object_get(o, "compression"), "level"));
    c->pack_size = (uint64_t)json_integer_value(json_object_get(o, "pack_size"));
    enc = json_string_value(json_object_get(o, "encryption"));
    c->encrypted = enc && strcmp(enc, "none") != 0;
    if (c->version != CAIRN_FORMAT_VERSION) {
        json_decref(o);
        return cairn_error(err, CAIRN_FATAL,
                           "repository format version %d is not supported (this cairn reads %d)",
                           c->version, CAIRN_FORMAT_VERSION);
    }
    /* an encrypted repository keeps its keys in keys/, never here */
    if (!id || strlen(id) != CAIRN_HEX_LEN || (c->encrypted ? key != NULL : !key) ||
        (key && cairn_unhex(key, c->chunk_key, 32) != CAIRN_OK) || c->chunk_min < 64 ||
        c->chunk_avg <= c->chunk_min || c->chunk_max <= c->chunk_avg ||
        (c->chunk_avg & (c->chunk_avg - 1)) || c->chunk_max > CAIRN_BLOB_MAX ||
        c->pack_size < (1u << 20) || c->zstd_level < -7 || c->zstd_level > 22) {
        json_decref(o);
        return cairn_error(err, CAIRN_CORRUPT, "repository config is invalid");
    }
    memcpy(c->id, id, CAIRN_HEX_LEN + 1);
    memcpy(c->gear_key, c->chunk_key, 32);
    json_decref(o);
    return CAIRN_OK;
}

int cairn_repo_init(const char *url, cairn_err *err)
{
    return cairn_repo_init_with(url, NULL, err);
}

int cairn_repo_init_with(const char *url, const struct cairn_store_opts *opts, cairn_err *err)
{
    return cairn_repo_init_ex(url, opts, 0, err);
}

int cairn_repo_init_ex(const char *url, const struct cairn_store_opts *opts, int encrypt,
                       cairn_err *err)
{
    struct cairn_master m;
    cairn_store *s = NULL;
    uint8_t id[32], key[32];
    char idhex[65], keyhex[65], *text;
    json_t *o;
    int rc;
    uint64_t sz;
    if ((rc = cairn_store_open_with(url, opts, 1, &s, err)) != CAIRN_OK)
        return rc;
    rc = cairn_store_stat(s, "config", &sz, err);
    if (rc == CAIRN_OK) {
        cairn_store_free(s);
        return cairn_error(err, CAIRN_EXISTS,
                           "a repository already exists at '%s' (refusing to overwrite it)", url);
    }
    if (rc != CAIRN_NOTFOUND) {
        cairn_store_free(s);
        return rc;
    }
    cairn_random(id, sizeof id);
    cairn_random(key, sizeof key);
    cairn_hex(id, 32, idhex);
    cairn_hex(key, 32, keyhex);
    o = json_pack("{s:i, s:s, s:I, s:{s:s, s:i, s:i, s:i}, s:{s:s, s:i}, s:I, s:s}", "version",
                  CAIRN_FORMAT_VERSION, "id", idhex, "created_ns", (json_int_t)cairn_now_ns(),
                  "chunker", "key", keyhex, "min", 128 * 1024, "avg", 512 * 1024, "max",
                  2 * 1024 * 1024, "compression", "algorithm", "zstd", "level", 1, "pack_size",
                  (json_int_t)16 * 1024 * 1024, "encryption", encrypt ? CAIRN_CRYPT_CIPHER : "none");
    if (o && encrypt) {
        /* the key material lives only in keys/, wrapped; written before the
         * config, whose existence makes the repository */
        json_object_del(json_object_get(o, "chunker"), "key");
        rc = cairn_crypt_init(s, idhex, cairn_password_file(opts), &m, err);
        cairn_master_wipe(&m);
        if (rc != CAIRN_OK) {
            json_decref(o);
            sodium_memzero(key, sizeof key);
            cairn_store_free(s);
            return cairn_error_prefix(err, "cannot create repository at '%s'", url);
        }
    }
    text = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    sodium_memzero(key, sizeof key);
    if (!text) {
        cairn_store_free(s);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    rc = cairn_store_put(s, "config", text, strlen(text), 0, err);
    if (rc == CAIRN_OK)
        rc = cairn_store_flush(s, err);
    free(text);
    if (rc == CAIRN_EXISTS)
        cairn_error(err, rc, "a repository already exists at '%s' (refusing to overwrite it)",
                    url);
    else if (rc != CAIRN_OK)
        cairn_error_prefix(err, "cannot create repository at '%s'", url);
    cairn_store_free(s);
    return rc;
}

char *cairn_default_catalog_path(const char *repo_id)
{
    const char *env = getenv("CAIRN_CATALOG"), *base = getenv("XDG_CACHE_HOME");
    char buf[PATH_MAX];
    if (env && *env)
        return strdup(env);
    if (base && *base) {
        snprintf(buf, sizeof buf, "%s/cairn/%s/catalog.db", base, repo_id);
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home) {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : "/tmp";
        }
        snprintf(buf, sizeof buf, "%s/.cache/cairn/%s/catalog.db", home, repo_id);
    }
    return strdup(buf);
}

int cairn_repo_open(const char *url, const char *catalog_path, cairn_repo **out,
                    cairn_err *err)
{
    return cairn_repo_open_with(url, catalog_path, NULL, out, err);
}

int cairn_repo_open_with(const char *url, const char *catalog_path,
                         const struct cairn_store_opts *opts, cairn_repo **out, cairn_err *err)
{
    cairn_repo *r = calloc(1, sizeof *r);
    cairn_buf b = CAIRN_BUF_INIT;
    int rc;
    if (!r)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    if (sodium_init() < 0) {
        free(r);
        return cairn_error(err, CAIRN_FATAL, "cannot initialize libsodium");
    }
    pthread_mutex_init(&r->lock, NULL);
    /* reads config and, for an encrypted repository, unlocks a key */
    if ((rc = cairn_repo_store_open(url, opts, &b, &r->store, err)) != CAIRN_OK)
        goto fail;
    rc = config_parse(&b, &r->cfg, err);
    cairn_buf_free(&b);
    if (rc != CAIRN_OK) {
        cairn_error_prefix(err, "repository '%s'", url);
        goto fail;
    }
    if (r->cfg.encrypted) {
        const struct cairn_master *m = cairn_crypt_store_master(r->store);
        if (!m || strcmp(m->repo_id, r->cfg.id) != 0) {
            rc = cairn_error(err, CAIRN_FATAL, "repository '%s': the key does not belong to it",
                             url);
            goto fail;
        }
        memcpy(r->cfg.chunk_key, m->chunk_key, 32);
        memcpy(r->cfg.gear_key, m->gear_key, 32);
        if (cairn_crypt_name_key(m, r->name_key) != CAIRN_OK) {
            rc = cairn_error(err, CAIRN_FATAL, "cannot derive the object name key (OpenSSL)");
            goto fail;
        }
        r->keyed_names = 1;
    }
    r->mac = mac_new(r->cfg.chunk_key);
    r->cat_path = catalog_path ? strdup(catalog_path) : cairn_default_catalog_path(r->cfg.id);
    if (!r->cat_path) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto fail;
    }
    if ((rc = cairn_catalog_open(r->cat_path, &r->cat, err)) != CAIRN_OK)
        goto fail;
    {
        char *rid = NULL;
        cairn_err e2;
        if (cairn_catalog_get_meta(r->cat, "repo_id", &rid, &e2) == CAIRN_OK && rid &&
            strcmp(rid, r->cfg.id) != 0) {
            rc = cairn_error(err, CAIRN_FATAL,
                             "catalog '%s' belongs to another repository (%.12s, not %.12s); "
                             "use another --catalog",
                             r->cat_path, rid, r->cfg.id);
            free(rid);
            goto fail;
        }
        free(rid);
        cairn_catalog_set_meta(r->cat, "repo_id", r->cfg.id, NULL);
    }
    if ((rc = cairn_repo_sync(r, 0, err)) != CAIRN_OK)
        goto fail;
    *out = r;
    return CAIRN_OK;
fail:
    cairn_buf_free(&b);
    cairn_repo_free(r);
    return rc;
}

void cairn_repo_free(cairn_repo *r)
{
    if (!r)
        return;
    cairn_catalog_free(r->cat);
    cairn_store_free(r->store);
    EVP_MAC_CTX_free(r->mac);
    free(r->cat_path);
    pthread_mutex_destroy(&r->lock);
    sodium_memzero(&r->cfg, sizeof r->cfg);
    sodium_memzero(r->name_key, sizeof r->name_key);
    free(r);
}

/* ---- index objects ---- */

int cairn_repo_put_index(cairn_repo *r, const struct cairn_index_pack *packs, size_t n,
                         char *name_out, cairn_err *err)
{
    /* The text is written directly, not built as a jansson tree first: a tree
     * costs several hundred bytes per blob, the text about a hundred, and an
     * index of many small chunks names tens of thousands of them. */
    cairn_buf text = CAIRN_BUF_INIT;
    char hex[CAIRN_HEX_LEN + 1], key[128];
    cairn_buf z = CAIRN_BUF_INIT;
    cairn_id oid;
    size_t i, j;
    int rc = cairn_buf_appendf(&text, "{\"version\":1,\"packs\":[");
    for (i = 0; rc == CAIRN_OK && i < n; i++) {
        cairn_id_hex(&packs[i].id, hex);
        rc = cairn_buf_appendf(&text, "%s{\"id\":\"%s\",\"size\":%llu,\"blobs\":[", i ? "," : "",
                               hex, (unsigned long long)packs[i].size);
        for (j = 0; rc == CAIRN_OK && j < packs[i].n; j++) {
            const struct cairn_pack_entry *e = &packs[i].entries[j];
            cairn_id_hex(&e->id, hex);
            rc = cairn_buf_appendf(&text, "%s[\"%s\",%u,%u,%llu,%lu,%lu]", j ? "," : "", hex,
                                   (unsigned)e->type, (unsigned)e->flags,
                                   (unsigned long long)e->offset, (unsigned long)e->stored_len,
                                   (unsigned long)e->raw_len);
        }
        if (rc == CAIRN_OK)
            rc = cairn_buf_append(&text, "]}", 2);
    }
    if (rc == CAIRN_OK)
        rc = cairn_buf_append(&text, "]}", 2);
    if (rc != CAIRN_OK || cairn_zstd_compress(text.data, text.len, 3, &z) != CAIRN_OK) {
        cairn_buf_free(&text);
        cairn_buf_free(&z);
        return cairn_error(err, CAIRN_FATAL, "out of memory writing an index");
    }
    cairn_buf_free(&text);
    /* the packs it names must be durable before the index exists */
    if ((rc = cairn_store_flush(r->store, err)) != CAIRN_OK) {
        cairn_buf_free(&z);
        return rc;
    }
    cairn_repo_object_id(r, z.data, z.len, &oid);
    cairn_id_hex(&oid, hex);
    snprintf(key, sizeof key, "index/%s", hex);
    rc = cairn_store_put(r->store, key, z.data, z.len, 0, err);
    cairn_buf_free(&z);
    if (rc == CAIRN_EXISTS)
        rc = CAIRN_OK;
    if (rc == CAIRN_OK)
        rc = cairn_store_flush(r->store, err);
    if (rc != CAIRN_OK)
        return rc;
    if (name_out)
        memcpy(name_out, hex, CAIRN_HEX_LEN + 1);
    /* record in the catalog */
    cairn_repo_lock(r);
    rc = cairn_catalog_begin(r->cat, err);
    if (rc == CAIRN_OK && cairn_catalog_has_index(r->cat, hex, err) == 0) {
        rc = cairn_catalog_add_index(r->cat, hex, err);
        for (i = 0; rc == CAIRN_OK && i < n; i++) {
            rc = cairn_catalog_add_pack(r->cat, &packs[i].id, packs[i].size, hex, err);
            for (j = 0; rc == CAIRN_OK && j < packs[i].n; j++) {
                const struct cairn_pack_entry *e = &packs[i].entries[j];
                struct cairn_blob_loc loc;
                loc.pack = packs[i].id;
                loc.offset = e->offset;
                loc.stored_len = e->stored_len;
                loc.raw_len = e->raw_len;
                loc.type = e->type;
                loc.flags = e->flags;
                rc = cairn_catalog_add_blob(r->cat, &e->id, &loc, err);
            }
        }
    }
    if (rc == CAIRN_OK)
        rc = cairn_catalog_commit(r->cat, err);
    else
        cairn_catalog_rollback(r->cat);
    cairn_repo_unlock(r);
    return rc;
}

int cairn_index_parse(const uint8_t *data, size_t len, cairn_index_pack_cb cb, void *arg,
                      cairn_err *err)
{
    cairn_buf raw = CAIRN_BUF_INIT;
    json_error_t je;
    json_t *root, *packs;
    size_t i, j;
    int rc = CAIRN_OK;
    if ((rc = cairn_zstd_decompress(data, len, CAIRN_INDEX_MAX_RAW, &raw, err)) != CAIRN_OK) {
        cairn_buf_free(&raw);
        return rc;
    }
    root = json_loadb((const char *)raw.data, raw.len, 0, &je);
    cairn_buf_free(&raw);
    if (!root)
        return cairn_error(err, CAIRN_CORRUPT, "index is not valid JSON: %s", je.text);
    packs = json_object_get(root, "packs");
    if (!json_is_array(packs) || json_integer_value(json_object_get(root, "version")) != 1) {
        json_decref(root);
        return cairn_error(err, CAIRN_CORRUPT, "index has no 'packs' array or wrong version");
    }
    for (i = 0; rc == CAIRN_OK && i < json_array_size(packs); i++) {
        json_t *p = json_array_get(packs, i), *blobs = json_object_get(p, "blobs");
        struct cairn_index_pack ip;
        const char *pid = json_string_value(json_object_get(p, "id"));
        memset(&ip, 0, sizeof ip);
        if (!pid || cairn_id_parse(pid, &ip.id) != CAIRN_OK || !json_is_array(blobs) ||
            json_array_size(blobs) > CAIRN_PACK_MAX_BLOBS) {
            rc = cairn_error(err, CAIRN_CORRUPT, "index: malformed pack record #%zu", i);
            break;
        }
        ip.size = (uint64_t)json_integer_value(json_object_get(p, "size"));
        ip.n = json_array_size(blobs);
        ip.entries = calloc(ip.n ? ip.n : 1, sizeof *ip.entries);
        if (!ip.entries) {
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
            break;
        }
        for (j = 0; j < ip.n; j++) {
            json_t *b = json_array_get(blobs, j);
            const char *bid = json_string_value(json_array_get(b, 0));
            struct cairn_pack_entry *e = &ip.entries[j];
            json_int_t t = json_integer_value(json_array_get(b, 1)),
                       f = json_integer_value(json_array_get(b, 2)),
                       off = json_integer_value(json_array_get(b, 3)),
                       sl = json_integer_value(json_array_get(b, 4)),
                       rl = json_integer_value(json_array_get(b, 5));
            if (!bid || cairn_id_parse(bid, &e->id) != CAIRN_OK || t < 0 || t > 1 || f < 0 ||
                f > 255 || off < 0 || sl < 0 || sl > CAIRN_BLOB_MAX || rl < 0 ||
                rl > CAIRN_BLOB_MAX || (uint64_t)(off + sl) > ip.size) {
                rc = cairn_error(err, CAIRN_CORRUPT, "index: malformed blob record in pack %.12s",
                                 pid);
                break;
            }
            e->type = (uint8_t)t;
            e->flags = (uint8_t)f;
            e->offset = (uint64_t)off;
            e->stored_len = (uint32_t)sl;
            e->raw_len = (uint32_t)rl;
        }
        if (rc == CAIRN_OK)
            rc = cb(arg, &ip);
        free(ip.entries);
    }
    json_decref(root);
    return rc;
}

/* ---- snapshots ---- */

void cairn_snapshot_free(struct cairn_snapshot *s)
{
    if (!s)
        return;
    json_decref(s->json);
    cairn_node_free(&s->root);
    free(s);
}

int cairn_snapshot_has_data(const struct cairn_snapshot *s, char *where, size_t where_len)
{
    json_t *sn = json_object_get(s->json, "snapshot");
    const char *data = json_string_value(json_object_get(sn, "data"));
    const char *method = json_string_value(json_object_get(sn, "method"));
    const char *handle = json_string_value(json_object_get(sn, "handle"));
    if (!data || strcmp(data, "reference") != 0)
        return 1;
    if (!where || !where_len)
        return 0;
    if (method && strcmp(method, "csi") == 0) {
        const char *vs = json_string_value(json_object_get(sn, "volume_snapshot"));
        const char *ns = json_string_value(json_object_get(sn, "namespace"));
        snprintf(where, where_len,
                 "its data is the CSI VolumeSnapshot %s/%s (storage handle %s); restore it by "
                 "creating a PVC with that VolumeSnapshot as its dataSource "
                 "(docs/annotations.md, 'csi')",
                 ns ? ns : "?", vs ? vs : "?", handle ? handle : "unknown");
    } else {
        const char *cmd = json_string_value(json_object_get(sn, "command"));
        snprintf(where, where_len,
                 "its data is the storage snapshot '%s' taken by the agent's snapshot command "
                 "%s; restore it with your storage's tools",
                 handle ? handle : "(no handle recorded)", cmd ? cmd : "(unknown)");
    }
    return 0;
}

int cairn_snapshot_parse(const char *id, const uint8_t *data, size_t len,
                         struct cairn_snapshot **out, cairn_err *err)
{
    json_error_t je;
    struct cairn_snapshot *s;
    const char *tree;
    json_t *root;
    int rc;
    if (len > CAIRN_SNAPSHOT_MAX)
        return cairn_error(err, CAIRN_CORRUPT, "snapshot %.12s is too large", id);
    s = calloc(1, sizeof *s);
    if (!s)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    snprintf(s->id, sizeof s->id, "%s", id);
    s->json = json_loadb((const char *)data, len, 0, &je);
    if (!s->json || !json_is_object(s->json)) {
        cairn_snapshot_free(s);
        return cairn_error(err, CAIRN_CORRUPT, "snapshot %.12s is not valid JSON", id);
    }
    tree = json_string_value(json_object_get(s->json, "tree"));
    s->time_ns = json_integer_value(json_object_get(s->json, "time_ns"));
    s->source = json_string_value(json_object_get(s->json, "source"));
    s->hostname = json_string_value(json_object_get(s->json, "hostname"));
    s->partial = json_is_true(json_object_get(s->json, "partial"));
    if (!tree || cairn_id_parse(tree, &s->tree) != CAIRN_OK || !s->source) {
        cairn_snapshot_free(s);
        return cairn_error(err, CAIRN_CORRUPT, "snapshot %.12s lacks a tree or source", id);
    }
    if (!s->hostname)
        s->hostname = "";
    root = json_object_get(s->json, "root");
    if (root) {
        json_t *copy = json_deep_copy(root);
        json_object_set_new(copy, "name", json_string("root"));
        rc = cairn_node_from_json(copy, &s->root, err);
        json_decref(copy);
        if (rc != CAIRN_OK) {
            cairn_snapshot_free(s);
            return cairn_error_prefix(err, "snapshot %.12s", id);
        }
        free(s->root.name);
        s->root.name = strdup("");
    }
    *out = s;
    return CAIRN_OK;
}

static char *tags_csv(json_t *tags)
{
    cairn_buf b = CAIRN_BUF_INIT;
    size_t i;
    for (i = 0; i < json_array_size(tags); i++) {
        const char *t = json_string_value(json_array_get(tags, i));
        if (!t)
            continue;
        if (b.len)
            cairn_buf_putc(&b, ',');
        cairn_buf_append(&b, t, strlen(t));
    }
    return cairn_buf_detach(&b, NULL);
}

static int snaprow_from(const struct cairn_snapshot *s, const char *text,
                        struct cairn_snaprow *row)
{
    json_t *st = json_object_get(s->json, "stats");
    char tree[CAIRN_HEX_LEN + 1];
    const char *parent = json_string_value(json_object_get(s->json, "parent"));
    memset(row, 0, sizeof *row);
    memcpy(row->id, s->id, sizeof row->id);
    row->time_ns = s->time_ns;
    row->source = (char *)s->source;
    row->hostname = (char *)s->hostname;
    row->tags = tags_csv(json_object_get(s->json, "tags"));
    cairn_id_hex(&s->tree, tree);
    row->tree = strdup(tree);
    row->parent = (char *)(parent ? parent : "");
    row->partial = s->partial;
    row->files = (uint64_t)json_integer_value(json_object_get(st, "files"));
    row->bytes_read = (uint64_t)json_integer_value(json_object_get(st, "bytes_read"));
    row->bytes_new = (uint64_t)json_integer_value(json_object_get(st, "bytes_new"));
    row->bytes_stored = (uint64_t)json_integer_value(json_object_get(st, "bytes_stored"));
    row->total_size = (uint64_t)json_integer_value(json_object_get(st, "total_size"));
    row->manifest = (char *)text;
    return row->tags && row->tree ? CAIRN_OK : CAIRN_FAILED;
}

static int record_snapshot(cairn_repo *r, const char *id, const uint8_t *data, size_t len,
                           cairn_err *err)
{
    struct cairn_snapshot *s;
    struct cairn_snaprow row;
    char *text;
    int rc = cairn_snapshot_parse(id, data, len, &s, err);
    if (rc != CAIRN_OK)
        return rc;
    text = strndup((const char *)data, len);
    rc = snaprow_from(s, text, &row);
    if (rc == CAIRN_OK)
        rc = cairn_catalog_add_snapshot(r->cat, &row, err);
    else
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
    free(row.tags);
    free(row.tree);
    free(text);
    cairn_snapshot_free(s);
    return rc;
}

int cairn_repo_put_snapshot(cairn_repo *r, json_t *manifest, char id_out[CAIRN_HEX_LEN + 1],
                            cairn_err *err)
{
    char *text = json_dumps(manifest, JSON_INDENT(1) | JSON_SORT_KEYS);
    char key[128];
    cairn_id oid;
    int rc;
    if (!text)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    cairn_repo_object_id(r, text, strlen(text), &oid);
    cairn_id_hex(&oid, id_out);
    snprintf(key, sizeof key, "snapshots/%s", id_out);
    rc = cairn_store_put(r->store, key, text, strlen(text), 0, err);
    if (rc == CAIRN_OK)
        rc = cairn_store_flush(r->store, err);
    if (rc == CAIRN_OK) {
        cairn_repo_lock(r);
        rc = record_snapshot(r, id_out, (const uint8_t *)text, strlen(text), err);
        cairn_repo_unlock(r);
    }
    free(text);
    return rc;
}

int cairn_repo_snapshot_get(cairn_repo *r, const char *spec, const char *source,
                            struct cairn_snapshot **out, cairn_err *err)
{
    struct cairn_snaprow row;
    int rc;
    memset(&row, 0, sizeof row);
    cairn_repo_lock(r);
    rc = cairn_catalog_get_snapshot(r->cat, spec, source, &row, err);
    cairn_repo_unlock(r);
    if (rc == CAIRN_NOTFOUND && strcmp(spec, "latest") == 0)
        return cairn_error(err, rc, "the repository has no snapshots%s%s%s yet",
                           source ? " of source '" : "", source ? source : "",
                           source ? "'" : "");
    if (rc != CAIRN_OK)
        return rc;
    rc = cairn_snapshot_parse(row.id, (const uint8_t *)row.manifest, strlen(row.manifest), out,
                              err);
    cairn_snaprow_free(&row);
    return rc;
}

/* ---- sync ---- */

struct namelist {
    char **v;
    size_t n, cap;
    const char *prefix;
};

static int collect(void *arg, const char *key, uint64_t size)
{
    struct namelist *l = arg;
    const char *name = key + strlen(l->prefix);
    (void)size;
    if (strlen(name) != CAIRN_HEX_LEN)
        return 0; /* not ours */
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        char **p = realloc(l->v, ncap * sizeof *p);
        if (!p)
            return 1;
        l->v = p;
        l->cap = ncap;
    }
    l->v[l->n] = strdup(name);
    if (!l->v[l->n])
        return 1;
    l->n++;
    return 0;
}

static int strp_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void namelist_free(struct namelist *l)
{
    size_t i;
    for (i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

static int namelist_has(const struct namelist *l, const char *name)
{
    return l->n && bsearch(&name, l->v, l->n, sizeof *l->v, strp_cmp) != NULL;
}

static int list_names(cairn_repo *r, const char *prefix, struct namelist *l, cairn_err *err)
{
    int rc;
    memset(l, 0, sizeof *l);
    l->prefix = prefix;
    rc = cairn_store_list(r->store, prefix, collect, l, err);
    if (rc != CAIRN_OK)
        return rc;
    if (l->n > 1)
        qsort(l->v, l->n, sizeof *l->v, strp_cmp);
    return CAIRN_OK;
}

struct load_ctx {
    cairn_repo *r;
    const char *index;
    cairn_err *err;
};

static int load_index_pack(void *arg, const struct cairn_index_pack *p)
{
    struct load_ctx *c = arg;
    size_t j;
    int rc = cairn_catalog_add_pack(c->r->cat, &p->id, p->size, c->index, c->err);
    for (j = 0; rc == CAIRN_OK && j < p->n; j++) {
        struct cairn_blob_loc loc;
        loc.pack = p->id;
        loc.offset = p->entries[j].offset;
        loc.stored_len = p->entries[j].stored_len;
        loc.raw_len = p->entries[j].raw_len;
        loc.type = p->entries[j].type;
        loc.flags = p->entries[j].flags;
        rc = cairn_catalog_add_blob(c->r->cat, &p->entries[j].id, &loc, c->err);
    }
    return rc;
}

/* Reads an object and checks that its content hashes to its name. */
static int get_verified(cairn_repo *r, const char *prefix, const char *name, size_t max,
                        cairn_buf *b, cairn_err *err)
{
    char key[128], hex[CAIRN_HEX_LEN + 1];
    cairn_id oid;
    int rc;
    snprintf(key, sizeof key, "%s%s", prefix, name);
    rc = cairn_store_get(r->store, key, b, max, err);
    if (rc != CAIRN_OK)
        return rc;
    cairn_repo_object_id(r, b->data, b->len, &oid);
    cairn_id_hex(&oid, hex);
    if (strcmp(hex, name) != 0)
        return cairn_error(err, CAIRN_CORRUPT,
                           "object '%s' is damaged (its content does not match its name)", key);
    return CAIRN_OK;
}

struct cat_names {
    struct namelist *store;
    struct namelist gone;
};

static int note_gone(void *arg, const char *s)
{
    struct cat_names *c = arg;
    if (!namelist_has(c->store, s)) {
        const char *save = c->gone.prefix;
        c->gone.prefix = "";
        collect(&c->gone, s, 0);
        c->gone.prefix = save;
    }
    return 0;
}

static int note_gone_snap(void *arg, const struct cairn_snaprow *row)
{
    return note_gone(arg, row->id);
}

int cairn_repo_sync(cairn_repo *r, int full, cairn_err *err)
{
    struct namelist idx, snaps;
    struct cat_names cn;
    cairn_buf b = CAIRN_BUF_INIT;
    size_t i;
    int rc;
    if (full && cairn_catalog_clear(r->cat, err) == CAIRN_OK) {
        full = 0; /* emptied in place: other processes may keep it open */
    }
    if (full) { /* could not empty it (damaged?): start a new file */
        char p[PATH_MAX];
        cairn_catalog_free(r->cat);
        r->cat = NULL;
        unlink(r->cat_path);
        snprintf(p, sizeof p, "%s-wal", r->cat_path);
        unlink(p);
        snprintf(p, sizeof p, "%s-shm", r->cat_path);
        unlink(p);
        if ((rc = cairn_catalog_open(r->cat_path, &r->cat, err)) != CAIRN_OK)
            return rc;
        cairn_catalog_set_meta(r->cat, "repo_id", r->cfg.id, NULL);
    }
    if ((rc = list_names(r, "index/", &idx, err)) != CAIRN_OK)
        return cairn_error_prefix(err, "cannot list indexes of '%s'", r->store->url);
    for (i = 0; rc == CAIRN_OK && i < idx.n; i++) {
        struct load_ctx lc = {r, idx.v[i], err};
        if (cairn_catalog_has_index(r->cat, idx.v[i], err) == 1)
            continue;
        rc = get_verified(r, "index/", idx.v[i], CAIRN_INDEX_MAX_STORED, &b, err);
        if (rc == CAIRN_NOTFOUND) { /* removed meanwhile (prune) */
            rc = CAIRN_OK;
            continue;
        }
        if (rc != CAIRN_OK)
            break;
        if ((rc = cairn_catalog_begin(r->cat, err)) != CAIRN_OK)
            break;
        if (cairn_catalog_has_index(r->cat, idx.v[i], err) == 1) {
            cairn_catalog_commit(r->cat, err);
            continue;
        }
        rc = cairn_catalog_add_index(r->cat, idx.v[i], err);
        if (rc == CAIRN_OK)
            rc = cairn_index_parse(b.data, b.len, load_index_pack, &lc, err);
        if (rc == CAIRN_OK)
            rc = cairn_catalog_commit(r->cat, err);
        else
            cairn_catalog_rollback(r->cat);
        if (rc != CAIRN_OK)
            cairn_error_prefix(err, "index '%.12s'", idx.v[i]);
    }
    if (rc == CAIRN_OK) {
        memset(&cn, 0, sizeof cn);
        cn.store = &idx;
        rc = cairn_catalog_list_indexes(r->cat, note_gone, &cn, err);
        for (i = 0; rc == CAIRN_OK && i < cn.gone.n; i++)
            rc = cairn_catalog_remove_index(r->cat, cn.gone.v[i], err);
        namelist_free(&cn.gone);
    }
    namelist_free(&idx);
    if (rc != CAIRN_OK) {
        cairn_buf_free(&b);
        return rc;
    }
    if ((rc = list_names(r, "snapshots/", &snaps, err)) != CAIRN_OK) {
        cairn_buf_free(&b);
        return cairn_error_prefix(err, "cannot list snapshots of '%s'", r->store->url);
    }
    for (i = 0; rc == CAIRN_OK && i < snaps.n; i++) {
        if (cairn_catalog_has_snapshot(r->cat, snaps.v[i], err) == 1)
            continue;
        rc = get_verified(r, "snapshots/", snaps.v[i], CAIRN_SNAPSHOT_MAX, &b, err);
        if (rc == CAIRN_NOTFOUND) {
            rc = CAIRN_OK;
            continue;
        }
        if (rc == CAIRN_OK)
            rc = record_snapshot(r, snaps.v[i], b.data, b.len, err);
    }
    if (rc == CAIRN_OK) {
        memset(&cn, 0, sizeof cn);
        cn.store = &snaps;
        rc = cairn_catalog_list_snapshots(r->cat, NULL, note_gone_snap, &cn, err);
        for (i = 0; rc == CAIRN_OK && i < cn.gone.n; i++)
            rc = cairn_catalog_remove_snapshot(r->cat, cn.gone.v[i], err);
        namelist_free(&cn.gone);
    }
    namelist_free(&snaps);
    cairn_buf_free(&b);
    return rc;
}

/* ---- blobs and trees ---- */

int cairn_repo_load_blob(cairn_repo *r, const cairn_id *id, cairn_buf *out, cairn_err *err)
{
    return cairn_repo_load_blob_v(r, id, CAIRN_VERIFY_FULL, out, err);
}

int cairn_repo_load_blob_v(cairn_repo *r, const cairn_id *id, enum cairn_verify v, cairn_buf *out,
                           cairn_err *err)
{
    struct cairn_blob_loc loc;
    cairn_buf stored = CAIRN_BUF_INIT;
    char key[128], hex[CAIRN_HEX_LEN + 1];
    cairn_id got;
    int rc, stored_has_checksum = 0;
    cairn_repo_lock(r);
    rc = cairn_catalog_find_blob(r->cat, id, &loc, err);
    cairn_repo_unlock(r);
    if (rc == CAIRN_NOTFOUND) {
        cairn_id_hex(id, hex);
        return cairn_error(err, rc, "blob %.16s is not in any index", hex);
    }
    if (rc != CAIRN_OK)
        return rc;
    cairn_pack_key(&loc.pack, key, sizeof key);
    rc = cairn_store_get_range(r->store, key, loc.offset, loc.stored_len, &stored, err);
    if (rc == CAIRN_OK)
        stored_has_checksum = stored.len >= 5 && stored.data[0] == 0x28 && stored.data[1] == 0xB5 &&
                              stored.data[2] == 0x2F && stored.data[3] == 0xFD &&
                              (stored.data[4] & 0x04); /* frame header: checksum flag */
    if (rc != CAIRN_OK) {
        cairn_buf_free(&stored);
        if (rc == CAIRN_NOTFOUND)
            cairn_id_hex(&loc.pack, hex), rc = cairn_error(err, CAIRN_NOTFOUND,
                                                           "pack %s is missing", hex);
        return rc;
    }
    rc = cairn_blob_decode(stored.data, stored.len, loc.flags, loc.raw_len, out, err);
    cairn_buf_free(&stored);
    /* a frame without checksum (or a raw blob) is always checked by hash */
    if (rc == CAIRN_OK && v == CAIRN_VERIFY_FRAME && (loc.flags & CAIRN_BLOB_ZSTD) &&
        stored_has_checksum)
        return CAIRN_OK;
    if (rc == CAIRN_OK) {
        cairn_repo_hash(r, out->data, out->len, &got);
        if (memcmp(got.b, id->b, CAIRN_ID_LEN) != 0)
            rc = cairn_error(err, CAIRN_CORRUPT, "data does not match its id");
    }
    if (rc != CAIRN_OK && rc != CAIRN_FATAL) {
        char bhex[CAIRN_HEX_LEN + 1];
        cairn_id_hex(&loc.pack, hex);
        cairn_id_hex(id, bhex);
        cairn_error_prefix(err, "pack %s, blob %.16s", hex, bhex);
    }
    return rc;
}

int cairn_repo_load_tree(cairn_repo *r, const cairn_id *id, struct cairn_tree *t,
                         cairn_err *err)
{
    cairn_buf b = CAIRN_BUF_INIT;
    int rc = cairn_repo_load_blob(r, id, &b, err);
    if (rc == CAIRN_OK)
        rc = cairn_tree_decode(b.data, b.len, t, err);
    cairn_buf_free(&b);
    return rc;
}

static int walk_dir(cairn_repo *r, const cairn_id *tree, cairn_buf *path, cairn_walk_cb cb,
                    cairn_walk_err_cb on_error, void *arg, int depth, cairn_err *err)
{
    struct cairn_tree t;
    size_t i, base = path->len;
    int rc;
    if (depth > 4096)
        return cairn_error(err, CAIRN_CORRUPT, "trees nest deeper than 4096 levels");
    rc = cairn_repo_load_tree(r, tree, &t, err);
    if (rc != CAIRN_OK) {
        if (on_error && rc != CAIRN_FATAL) {
            on_error(arg, path->len ? cairn_buf_cstr(path) : ".", err);
            return CAIRN_OK;
        }
        return rc;
    }
    for (i = 0; i < t.n; i++) {
        const struct cairn_node *n = &t.nodes[i];
        path->len = base;
        if (base)
            cairn_buf_putc(path, '/');
        cairn_buf_append(path, n->name, strlen(n->name));
        rc = cb(arg, cairn_buf_cstr(path), n);
        if (rc < 0)
            break;
        if (n->type == CAIRN_T_DIR && rc == 0) {
            cairn_buf_cstr(path);
            rc = walk_dir(r, &n->subtree, path, cb, on_error, arg, depth + 1, err);
            if (rc != CAIRN_OK)
                break;
        }
        rc = CAIRN_OK;
    }
    path->len = base;
    cairn_tree_free(&t);
    return rc;
}

int cairn_repo_walk(cairn_repo *r, const cairn_id *tree, cairn_walk_cb cb,
                    cairn_walk_err_cb on_error, void *arg, cairn_err *err)
{
    cairn_buf path = CAIRN_BUF_INIT;
    int rc = walk_dir(r, tree, &path, cb, on_error, arg, 0, err);
    cairn_buf_free(&path);
    return rc;
}

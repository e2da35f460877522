/* uploaders/store.h — the object-store interface and its backends.
 *
 * A store holds immutable objects under '/'-separated keys ("data/ab/<id>",
 * "snapshots/<id>", "config"). Backends: "file" (a local directory, the embedded
 * default; a plain path or a file:// URL) and later "s3".
 *
 * Ownership: cairn_store_open() returns a handle the caller frees with
 * cairn_store_free() (NULL is fine). Buffers passed to get() are the caller's.
 * Threading: a handle may be used from several threads at once; every backend
 * must make its operations thread-safe. Errors go into the caller's cairn_err.
 */
#ifndef CAIRN_STORE_H
#define CAIRN_STORE_H

#include "../engine/util.h"

typedef struct cairn_store cairn_store;

/* Called once per key found; return non-zero to stop the listing early. */
typedef int (*cairn_list_cb)(void *arg, const char *key, uint64_t size);

struct cairn_store_ops {
    const char *scheme;
    /* Writes key atomically (readers see the whole object or none). Overwrites
     * an existing object only when `overwrite` is set (only "config" and lock
     * objects use that). */
    int (*put)(void *ctx, const char *key, const void *buf, size_t len, int overwrite,
               cairn_err *err);
    /* Stores the content of a local temp file under key; the file is consumed
     * (renamed or deleted) on success. */
    int (*put_file)(void *ctx, const char *key, const char *path, cairn_err *err);
    /* Whole object, at most max bytes (CAIRN_FAILED if larger). */
    int (*get)(void *ctx, const char *key, cairn_buf *out, size_t max, cairn_err *err);
    /* len bytes at off; a short object is CAIRN_CORRUPT. */
    int (*get_range)(void *ctx, const char *key, uint64_t off, size_t len, cairn_buf *out,
                     cairn_err *err);
    int (*stat)(void *ctx, const char *key, uint64_t *size, cairn_err *err);
    int (*list)(void *ctx, const char *prefix, cairn_list_cb cb, void *arg, cairn_err *err);
    int (*del)(void *ctx, const char *key, cairn_err *err);
    /* Waits until every put/put_file accepted so far is durable in the store
     * and returns the first error of any of them (backends that upload in the
     * background report errors here). NULL = everything is synchronous. */
    int (*flush)(void *ctx, cairn_err *err);
    void (*free)(void *ctx);
    /* Optional (NULL = use del one key at a time): deletes n keys in as few
     * requests as the backend allows; a key that does not exist is not an
     * error. Returns the first failure, naming its key. */
    int (*del_many)(void *ctx, const char *const *keys, size_t n, cairn_err *err);
};

/* Options for opening a store; zero/NULL fields mean the default. Backends
 * ignore what does not apply to them. */
struct cairn_store_opts {
    int connections;          /* parallel transfers (S3: default 8) */
    double limit_upload_mbps; /* MB/s, 0 = unlimited */
    double limit_download_mbps;
    const char *ca_file;      /* private CA bundle for TLS */
    const char *storage_class;/* S3 x-amz-storage-class for data objects */
    const char *sse;          /* S3 server-side encryption: "AES256" or "aws:kms" */
    const char *sse_kms_key;  /* with "aws:kms" */
    /* Transient failures that are retried (S3: one line per retry, naming the
     * operation, key and reason). May be called from several threads, never
     * two at once for one store. NULL = not reported. */
    void (*log)(void *arg, const char *msg);
    void *log_arg;
    /* Encrypted repositories (engine/crypto.h): the file holding the
     * password; NULL = $CAIRN_PASSWORD_FILE. Backends ignore it. */
    const char *password_file;
};

struct cairn_store {
    const struct cairn_store_ops *ops;
    void *ctx;
    char *url;      /* as given, for messages */
    char *tmpdir;   /* where packs are spooled before put_file (local disk) */
};

/* Opens a store by URL: "/path", "relative/path", "file:///path". Does not
 * create anything. CAIRN_NOTFOUND if a local directory does not exist. */
int cairn_store_open(const char *url, cairn_store **out, cairn_err *err);
/* Creates the location if needed (for init). */
int cairn_store_create(const char *url, cairn_store **out, cairn_err *err);
/* The same with options (NULL = defaults); create as for cairn_store_create. */
int cairn_store_open_with(const char *url, const struct cairn_store_opts *opts, int create,
                          cairn_store **out, cairn_err *err);
void cairn_store_free(cairn_store *s);

static inline int cairn_store_put(cairn_store *s, const char *key, const void *buf,
                                  size_t len, int overwrite, cairn_err *err)
{
    return s->ops->put(s->ctx, key, buf, len, overwrite, err);
}
static inline int cairn_store_put_file(cairn_store *s, const char *key, const char *path,
                                       cairn_err *err)
{
    return s->ops->put_file(s->ctx, key, path, err);
}
static inline int cairn_store_get(cairn_store *s, const char *key, cairn_buf *out,
                                  size_t max, cairn_err *err)
{
    return s->ops->get(s->ctx, key, out, max, err);
}
static inline int cairn_store_get_range(cairn_store *s, const char *key, uint64_t off,
                                        size_t len, cairn_buf *out, cairn_err *err)
{
    return s->ops->get_range(s->ctx, key, off, len, out, err);
}
static inline int cairn_store_stat(cairn_store *s, const char *key, uint64_t *size,
                                   cairn_err *err)
{
    return s->ops->stat(s->ctx, key, size, err);
}
static inline int cairn_store_list(cairn_store *s, const char *prefix, cairn_list_cb cb,
                                   void *arg, cairn_err *err)
{
    return s->ops->list(s->ctx, prefix, cb, arg, err);
}
static inline int cairn_store_del(cairn_store *s, const char *key, cairn_err *err)
{
    return s->ops->del(s->ctx, key, err);
}
/* Deletes keys[0..n) with the backend's batch delete, or one by one. */
static inline int cairn_store_del_many(cairn_store *s, const char *const *keys, size_t n,
                                       cairn_err *err)
{
    size_t i;
    if (s->ops->del_many)
        return s->ops->del_many(s->ctx, keys, n, err);
    for (i = 0; i < n; i++) {
        int rc = s->ops->del(s->ctx, keys[i], err);
        if (rc != CAIRN_OK && rc != CAIRN_NOTFOUND)
            return rc;
    }
    return CAIRN_OK;
}
static inline int cairn_store_flush(cairn_store *s, cairn_err *err)
{
    return s->ops->flush ? s->ops->flush(s->ctx, err) : CAIRN_OK;
}

/* The local directory backend (uploaders/fs.c). */
int cairn_fs_store_open(const char *dir, int create, cairn_store **out, cairn_err *err);
/* The S3 backend (uploaders/s3.c, docs/s3.md): "s3://BUCKET/PREFIX". */
int cairn_s3_store_open(const char *url, const struct cairn_store_opts *opts, int create,
                        cairn_store **out, cairn_err *err);

#endif

/* engine/backup.c — see backup.h. */
#define _GNU_SOURCE
#include "backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive_dl.h"
#include "chunker.h"
#include "internal.h"
#include "lock.h"
#include "pack.h"

#define READ_BLOCK (1u << 20)
#define INDEX_EVERY_PACKS 16
/* Many tiny chunks: a pack closes after this many blobs whatever its size, and
 * an index is written once the stored packs name this many, so the entry lists
 * held until the index is written stay bounded (docs/agent.md, "Measured"). */
#define PACK_MAX_BLOBS 8192
#define INDEX_EVERY_BLOBS 8192
#define MAX_RECORDED_ERRORS 1000

/* ---- the work queue between the walker and the workers ---- */

struct job {
    cairn_id id;       /* set when hashed by the walker (trees) */
    cairn_id *slot;    /* data chunks: where the worker writes the id; NULL = pre-hashed */
    uint8_t type;
    uint8_t *data;
    size_t len;
};

struct finished_pack {
    struct cairn_index_pack p;
};

struct pipeline {
    cairn_repo *repo;
    int level;
    uint64_t pack_target;
    const char *tmpdir;

    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    struct job *q;
    size_t qcap, qhead, qlen;
    int closing;

    /* current pack, guarded by pack_mu */
    pthread_mutex_t pack_mu;
    cairn_pack_writer *writer;

    /* finished, stored packs not yet indexed; guarded by mu */
    struct finished_pack *done;
    size_t n_done, cap_done;
    size_t done_blobs; /* entries of the packs in done */
    uint64_t bytes_stored;

    int failed;       /* guarded by mu */
    cairn_err ferr;   /* first worker error */

    /* reusable chunk buffers of buf_size bytes (guarded by mu), so a backup
     * does not map and fault in fresh memory for every chunk */
    uint8_t **pool;
    size_t n_pool, cap_pool, buf_size;

    /* data chunks handed out vs. hashed and decided (guarded by mu) */
    uint64_t submitted, hashed, bytes_new;
    pthread_cond_t all_hashed;

    pthread_t *threads;
    int n_threads;
};

static void pipe_fail(struct pipeline *p, const cairn_err *e)
{
    pthread_mutex_lock(&p->mu);
    if (!p->failed) {
        p->failed = 1;
        p->ferr = *e;
    }
    pthread_cond_broadcast(&p->not_full);
    pthread_cond_broadcast(&p->not_empty);
    pthread_cond_broadcast(&p->all_hashed);
    pthread_mutex_unlock(&p->mu);
}

/* A buffer for a job of len bytes: from the pool when it fits. */
static uint8_t *buf_get(struct pipeline *p, size_t len)
{
    uint8_t *b = NULL;
    if (len > p->buf_size)
        return malloc(len ? len : 1);
    pthread_mutex_lock(&p->mu);
    if (p->n_pool)
        b = p->pool[--p->n_pool];
    pthread_mutex_unlock(&p->mu);
    return b ? b : malloc(p->buf_size);
}

static void buf_put(struct pipeline *p, uint8_t *b, size_t len)
{
    if (!b)
        return;
    if (len <= p->buf_size) {
        pthread_mutex_lock(&p->mu);
        if (p->n_pool < p->cap_pool) {
            p->pool[p->n_pool++] = b;
            b = NULL;
        }
        pthread_mutex_unlock(&p->mu);
    }
    free(b);
}

/* Stores a finished pack and queues it for indexing. */
static int store_pack(struct pipeline *p, cairn_pack_writer *w, cairn_err *err)
{
    struct finished_pack fp;
    char *path = NULL, key[128];
    int rc;
    memset(&fp, 0, sizeof fp);
    rc = cairn_pack_writer_finish(w, &fp.p.id, &path, &fp.p.size, &fp.p.entries, &fp.p.n, err);
    if (rc != CAIRN_OK)
        return rc;
    cairn_pack_key(&fp.p.id, key, sizeof key);
    rc = cairn_store_put_file(cairn_repo_store(p->repo), key, path, err);
    if (rc != CAIRN_OK) {
        unlink(path);
        free(path);
        free(fp.p.entries);
        return rc;
    }
    free(path);
    pthread_mutex_lock(&p->mu);
    if (p->n_done == p->cap_done) {
        size_t ncap = p->cap_done ? p->cap_done * 2 : 16;
        struct finished_pack *np = realloc(p->done, ncap * sizeof *np);
        if (!np) {
            pthread_mutex_unlock(&p->mu);
            free(fp.p.entries);
            return cairn_error(err, CAIRN_FATAL, "out of memory");
        }
        p->done = np;
        p->cap_done = ncap;
    }
    p->done[p->n_done++] = fp;
    p->done_blobs += fp.p.n;
    p->bytes_stored += fp.p.size;
    pthread_mutex_unlock(&p->mu);
    return CAIRN_OK;
}

static int add_to_pack(struct pipeline *p, const struct job *j, const cairn_buf *enc,
                       uint8_t flags, cairn_err *err)
{
    cairn_pack_writer *full = NULL;
    int rc = CAIRN_OK;
    pthread_mutex_lock(&p->pack_mu);
    if (!p->writer)
        rc = cairn_pack_writer_new(p->tmpdir, &p->writer, err);
    if (rc == CAIRN_OK)
        rc = cairn_pack_writer_add(p->writer, &j->id, j->type, flags, (uint32_t)j->len,
                                   enc->data, (uint32_t)enc->len, err);
    if (rc == CAIRN_OK && (cairn_pack_writer_size(p->writer) >= p->pack_target ||
                           cairn_pack_writer_count(p->writer) >= PACK_MAX_BLOBS)) {
        full = p->writer;
        p->writer = NULL;
    }
    pthread_mutex_unlock(&p->pack_mu);
    if (full)
        rc = store_pack(p, full, err);
    return rc;
}

/* Hashes (when data is given) and decides: 1 = the repository has it or this
 * backup already queued it, 0 = new (now marked as queued), <0 = error. */
static int is_known(cairn_repo *r, cairn_id *id, const uint8_t *data, size_t len,
                    cairn_err *err)
{
    struct cairn_blob_loc loc;
    int rc;
    if (data)
        cairn_repo_hash(r, data, len, id);
    cairn_repo_lock(r);
    rc = cairn_catalog_find_blob(cairn_repo_catalog(r), id, &loc, err);
    if (rc == CAIRN_OK)
        rc = 1;
    else if (rc == CAIRN_NOTFOUND)
        rc = cairn_catalog_pending_mark(cairn_repo_catalog(r), id, err);
    cairn_repo_unlock(r);
    return rc;
}

/* Waits until every data chunk handed out so far has its id. */
static int pipe_wait_hashed(struct pipeline *p, cairn_err *err)
{
    int rc = CAIRN_OK;
    pthread_mutex_lock(&p->mu);
    while (p->hashed != p->submitted && !p->failed)
        pthread_cond_wait(&p->all_hashed, &p->mu);
    if (p->failed) {
        *err = p->ferr;
        rc = err->code ? err->code : CAIRN_FATAL;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

static void *worker_main(void *arg)
{
    struct pipeline *p = arg;
    cairn_buf enc = CAIRN_BUF_INIT;
    cairn_err err;
    for (;;) {
        struct job j;
        uint8_t flags;
        int rc;
        pthread_mutex_lock(&p->mu);
        while (!p->qlen && !p->closing && !p->failed)
            pthread_cond_wait(&p->not_empty, &p->mu);
        if (p->failed || (!p->qlen && p->closing)) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        j = p->q[p->qhead];
        p->qhead = (p->qhead + 1) % p->qcap;
        p->qlen--;
        pthread_cond_signal(&p->not_full);
        pthread_mutex_unlock(&p->mu);

        cairn_err_clear(&err);
        if (j.slot) {
            /* a data chunk: hash it, and keep it only if the repository lacks it */
            int known = is_known(p->repo, &j.id, j.data, j.len, &err);
            pthread_mutex_lock(&p->mu);
            if (!p->failed) /* after a failure the walker may have freed the slot */
                *j.slot = j.id;
            p->hashed++;
            if (known == 0)
                p->bytes_new += j.len;
            if (p->hashed == p->submitted)
                pthread_cond_broadcast(&p->all_hashed);
            pthread_mutex_unlock(&p->mu);
            if (known < 0) {
                buf_put(p, j.data, j.len);
                pipe_fail(p, &err);
                break;
            }
            if (known) {
                buf_put(p, j.data, j.len);
                continue;
            }
        }
        if (cairn_blob_encode(j.data, j.len, p->level, &enc, &flags) != CAIRN_OK)
            rc = cairn_error(&err, CAIRN_FATAL, "out of memory compressing a chunk");
        else
            rc = add_to_pack(p, &j, &enc, flags, &err);
        buf_put(p, j.data, j.len);
        if (rc != CAIRN_OK) {
            pipe_fail(p, &err);
            break;
        }
    }
    cairn_buf_free(&enc);
    return NULL;
}

static int pipe_push(struct pipeline *p, struct job *j, cairn_err *err)
{
    pthread_mutex_lock(&p->mu);
    while (p->qlen == p->qcap && !p->failed)
        pthread_cond_wait(&p->not_full, &p->mu);
    if (p->failed) {
        *err = p->ferr;
        pthread_mutex_unlock(&p->mu);
        buf_put(p, j->data, j->len);
        return err->code ? err->code : CAIRN_FATAL;
    }
    p->q[(p->qhead + p->qlen) % p->qcap] = *j;
    p->qlen++;
    if (j->slot)
        p->submitted++;
    pthread_cond_signal(&p->not_empty);
    pthread_mutex_unlock(&p->mu);
    return CAIRN_OK;
}

static int pipe_start(struct pipeline *p, cairn_repo *r, int workers, cairn_err *err)
{
    const struct cairn_repo_config *cfg = cairn_repo_config(r);
    int i;
    memset(p, 0, sizeof *p);
    p->repo = r;
    p->level = cfg->zstd_level;
    p->pack_target = cfg->pack_size;
    p->tmpdir = cairn_repo_store(r)->tmpdir;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->pack_mu, NULL);
    pthread_cond_init(&p->not_empty, NULL);
    pthread_cond_init(&p->not_full, NULL);
    pthread_cond_init(&p->all_hashed, NULL);
    p->qcap = (size_t)workers * 2 + 2;
    p->q = calloc(p->qcap, sizeof *p->q);
    p->buf_size = cfg->chunk_max;
    p->cap_pool = p->qcap + (size_t)workers + 2;
    p->pool = calloc(p->cap_pool, sizeof *p->pool);
    p->threads = calloc((size_t)workers, sizeof *p->threads);
    if (!p->q || !p->threads || !p->pool)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    for (i = 0; i < workers; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0)
            return cairn_error(err, CAIRN_FATAL, "cannot start worker threads");
        p->n_threads++;
    }
    return CAIRN_OK;
}

/* Stops the workers (after draining the queue unless failed) and stores the
 * last pack. */
static int pipe_finish(struct pipeline *p, int abort_run, cairn_err *err)
{
    int i, rc = CAIRN_OK;
    pthread_mutex_lock(&p->mu);
    p->closing = 1;
    if (abort_run && !p->failed) {
        p->failed = 1;
        p->ferr.code = CAIRN_FATAL;
        snprintf(p->ferr.msg, sizeof p->ferr.msg, "backup aborted");
    }
    pthread_cond_broadcast(&p->not_empty);
    pthread_cond_broadcast(&p->not_full);
    pthread_mutex_unlock(&p->mu);
    for (i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    p->n_threads = 0;
    while (p->qlen) { /* leftovers after a failure */
        buf_put(p, p->q[p->qhead].data, p->q[p->qhead].len);
        p->qhead = (p->qhead + 1) % p->qcap;
        p->qlen--;
    }
    if (p->failed) {
        if (!abort_run)
            *err = p->ferr;
        rc = p->ferr.code ? p->ferr.code : CAIRN_FATAL;
        cairn_pack_writer_abort(p->writer);
        p->writer = NULL;
    } else if (p->writer) {
        cairn_pack_writer *w = p->writer;
        p->writer = NULL;
        rc = store_pack(p, w, err);
    }
    return rc;
}

/* Writes index objects for stored packs. all = also a partial batch. */
static int pipe_index(struct pipeline *p, int all, cairn_err *err)
{
    struct finished_pack *batch;
    size_t n, i;
    struct cairn_index_pack *ps;
    int rc;
    pthread_mutex_lock(&p->mu);
    n = p->n_done;
    if (n == 0 || (!all && n < INDEX_EVERY_PACKS && p->done_blobs < INDEX_EVERY_BLOBS)) {
        pthread_mutex_unlock(&p->mu);
        return CAIRN_OK;
    }
    batch = p->done;
    p->done = NULL;
    p->n_done = p->cap_done = 0;
    p->done_blobs = 0;
    pthread_mutex_unlock(&p->mu);
    ps = calloc(n, sizeof *ps);
    if (!ps) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
    } else {
        /* One index object per INDEX_EVERY_PACKS packs or INDEX_EVERY_BLOBS
         * blobs (at least one pack each), however many packs finished since
         * the last call: an index object's size stays bounded even when the
         * walk ran ahead of the uploads. */
        size_t first = 0, blobs = 0;
        rc = CAIRN_OK;
        for (i = 0; i < n && rc == CAIRN_OK; i++) {
            ps[i] = batch[i].p;
            blobs += ps[i].n;
            if (i + 1 == n || i + 1 - first >= INDEX_EVERY_PACKS || blobs >= INDEX_EVERY_BLOBS ||
                blobs + batch[i + 1].p.n > INDEX_EVERY_BLOBS) {
                rc = cairn_repo_put_index(p->repo, ps + first, i + 1 - first, NULL, err);
                first = i + 1;
                blobs = 0;
            }
        }
    }
    for (i = 0; i < n; i++)
        free(batch[i].p.entries);
    free(batch);
    free(ps);
    return rc;
}

static void pipe_free(struct pipeline *p)
{
    size_t i;
    for (i = 0; i < p->n_done; i++)
        free(p->done[i].p.entries);
    free(p->done);
    while (p->n_pool)
        free(p->pool[--p->n_pool]);
    free(p->pool);
    free(p->q);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->pack_mu);
    pthread_cond_destroy(&p->not_empty);
    pthread_cond_destroy(&p->not_full);
    pthread_cond_destroy(&p->all_hashed);
}

/* ---- hardlink map: (dev, ino) -> first snapshot path ---- */

struct hl_entry {
    uint64_t dev, ino;
    char *path;
};

struct hl_map {
    struct hl_entry *v;
    size_t n, cap; /* cap is a power of two */
};

static uint64_t hl_hash(uint64_t dev, uint64_t ino)
{
    uint64_t h = ino * 0x9E3779B97F4A7C15ULL ^ (dev + 0x632BE59BD9B4E019ULL);
    return h ^ (h >> 29);
}

static const char *hl_get(struct hl_map *m, uint64_t dev, uint64_t ino)
{
    size_t i;
    if (!m->cap)
        return NULL;
    for (i = hl_hash(dev, ino) & (m->cap - 1); m->v[i].path; i = (i + 1) & (m->cap - 1))
        if (m->v[i].dev == dev && m->v[i].ino == ino)
            return m->v[i].path;
    return NULL;
}

static int hl_put(struct hl_map *m, uint64_t dev, uint64_t ino, const char *path)
{
    size_t i;
    if ((m->n + 1) * 2 > m->cap) {
        struct hl_map nm;
        size_t k;
        nm.cap = m->cap ? m->cap * 2 : 64;
        nm.n = 0;
        nm.v = calloc(nm.cap, sizeof *nm.v);
        if (!nm.v)
            return CAIRN_FAILED;
        for (k = 0; k < m->cap; k++) {
            if (!m->v[k].path)
                continue;
            for (i = hl_hash(m->v[k].dev, m->v[k].ino) & (nm.cap - 1); nm.v[i].path;
                 i = (i + 1) & (nm.cap - 1))
                ;
            nm.v[i] = m->v[k];
            nm.n++;
        }
        free(m->v);
        *m = nm;
    }
    for (i = hl_hash(dev, ino) & (m->cap - 1); m->v[i].path; i = (i + 1) & (m->cap - 1))
        ;
    m->v[i].dev = dev;
    m->v[i].ino = ino;
    m->v[i].path = strdup(path);
    if (!m->v[i].path)
        return CAIRN_FAILED;
    m->n++;
    return CAIRN_OK;
}

static void hl_free(struct hl_map *m)
{
    size_t i;
    for (i = 0; i < m->cap; i++)
        free(m->v[i].path);
    free(m->v);
}

/* ---- the walker ---- */

struct ctx {
    cairn_repo *repo;
    const struct cairn_backup_opts *o;
    struct cairn_chunker chunker;
    struct pipeline pipe;
    struct archive *disk;
    struct archive_entry *entry;
    struct hl_map hl;
    cairn_buf rbuf;          /* read buffer for chunking */
    struct cairn_backup_result *res;
    json_t *errors;          /* array of messages */
    uint64_t expected;       /* the parent's total size, for progress */
    double last_progress;
    cairn_err *err;
};

static void warnf(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(struct ctx *c, const char *fmt, ...)
{
    char msg[CAIRN_ERRMSG_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->res->errors++;
    c->res->partial = 1;
    if (json_array_size(c->errors) < MAX_RECORDED_ERRORS)
        json_array_append_new(c->errors, json_string(msg));
    if (c->o->warn)
        c->o->warn(c->o->warn_arg, msg);
}

static void progress(struct ctx *c, const char *current)
{
    double now;
    if (!c->o->progress)
        return;
    now = cairn_mono();
    if (now - c->last_progress < 0.25)
        return;
    c->last_progress = now;
    {
        uint64_t bytes_new;
        pthread_mutex_lock(&c->pipe.mu);
        bytes_new = c->pipe.bytes_new;
        pthread_mutex_unlock(&c->pipe.mu);
        c->o->progress(c->o->progress_arg, c->res->files, c->res->bytes_read, bytes_new,
                       c->res->total_size, c->expected, current);
    }
}

/* Copies data into a pooled buffer and queues it (j has id/slot/type set);
 * writes an index object once enough stored packs wait for one. */
static int pipe_submit(struct pipeline *p, struct job *j, const uint8_t *data, size_t len,
                       cairn_err *err)
{
    int rc;
    j->len = len;
    j->data = buf_get(p, len);
    if (!j->data)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    memcpy(j->data, data, len);
    rc = pipe_push(p, j, err);
    if (rc == CAIRN_OK)
        rc = pipe_index(p, 0, err);
    return rc;
}

static int submit(struct ctx *c, struct job *j, const uint8_t *data, size_t len)
{
    return pipe_submit(&c->pipe, j, data, len, c->err);
}

/* A blob hashed by the caller's thread (trees): queued for storing unless
 * the repository has it or it is already queued. */
static int pipe_put_hashed(struct pipeline *p, uint8_t type, const uint8_t *data, size_t len,
                           cairn_id *id, cairn_err *err)
{
    struct job j;
    int rc = is_known(p->repo, id, data, len, err);
    if (rc != 0)
        return rc < 0 ? rc : CAIRN_OK;
    memset(&j, 0, sizeof j);
    j.id = *id;
    j.type = type;
    return pipe_submit(p, &j, data, len, err);
}

/* Trees: hashed here, queued for storing unless the repository has them. */
static int save_tree_blob(struct ctx *c, const uint8_t *data, size_t len, cairn_id *id)
{
    return pipe_put_hashed(&c->pipe, CAIRN_BLOB_TREE, data, len, id, c->err);
}

/* Data chunks: handed to a worker, which writes the id into n->chunks[k]. The
 * chunk array only grows after every id handed out has been written. */
static int queue_chunk(struct ctx *c, struct cairn_node *n, size_t *cap, const uint8_t *data,
                       size_t len)
{
    struct job j;
    int rc;
    if (n->n_chunks == *cap) {
        size_t ncap = *cap ? *cap * 2 : (size_t)(n->size / c->chunker.min) + 2;
        cairn_id *p;
        if (ncap > 4096 && *cap == 0)
            ncap = 4096;
        if (*cap && (rc = pipe_wait_hashed(&c->pipe, c->err)) != CAIRN_OK)
            return rc;
        p = realloc(n->chunks, ncap * sizeof *p);
        if (!p)
            return cairn_error(c->err, CAIRN_FATAL, "out of memory");
        n->chunks = p;
        *cap = ncap;
    }
    memset(&j, 0, sizeof j);
    j.slot = &n->chunks[n->n_chunks++];
    memset(j.slot, 0, sizeof *j.slot);
    j.type = CAIRN_BLOB_DATA;
    return submit(c, &j, data, len);
}

/* Emits full chunks from the read buffer; at eof also the remainder. */
static int drain(struct ctx *c, struct cairn_node *n, size_t *ccap, int eof)
{
    cairn_buf *b = &c->rbuf;
    size_t off = 0;
    int rc = CAIRN_OK;
    while (b->len - off > 0 && (eof || b->len - off >= c->chunker.max)) {
        size_t cut = cairn_chunker_next(&c->chunker, b->data + off, b->len - off);
        if ((rc = queue_chunk(c, n, ccap, b->data + off, cut)) != CAIRN_OK)
            break;
        off += cut;
    }
    if (off) {
        memmove(b->data, b->data + off, b->len - off);
        b->len -= off;
    }
    return rc;
}

/* The caller's cancel hook (engine/backup.h). */
static int cancelled(struct ctx *c)
{
    if (!c->o->cancel || !c->o->cancel(c->o->cancel_arg))
        return 0;
    cairn_error(c->err, CAIRN_FAILED, "backup cancelled: no snapshot was written");
    return 1;
}

/* Reads a file's data extents through the chunker. CAIRN_WARN = read error
 * (reported by the caller), other codes are fatal. */
static int read_file(struct ctx *c, int fd, const char *rel, struct cairn_node *n)
{
    struct cairn_extent whole = {0, n->size};
    const struct cairn_extent *ext = n->sparse ? n->sparse : &whole;
    size_t next = n->sparse ? n->n_sparse : 1, i, ccap = 0;
    uint64_t total = 0;
    int rc = CAIRN_OK;
    c->rbuf.len = 0;
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    for (i = 0; i < next && rc == CAIRN_OK; i++) {
        uint64_t pos = ext[i].off, end = ext[i].off + ext[i].len;
        while (pos < end) {
            size_t want = end - pos < READ_BLOCK ? (size_t)(end - pos) : READ_BLOCK;
            ssize_t got;
            if (cancelled(c))
                return CAIRN_FAILED;
            if (cairn_buf_reserve(&c->rbuf, want) != CAIRN_OK)
                return cairn_error(c->err, CAIRN_FATAL, "out of memory");
            got = pread(fd, c->rbuf.data + c->rbuf.len, want, (off_t)pos);
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0) {
                return cairn_error(c->err, CAIRN_WARN, "cannot read '%s': %s", rel,
                                   strerror(errno));
            }
            if (got == 0) { /* shrank while we read it */
                end = pos;
                break;
            }
            c->rbuf.len += (size_t)got;
            pos += (uint64_t)got;
            total += (uint64_t)got;
            c->res->bytes_read += (uint64_t)got;
            if (c->rbuf.len >= c->chunker.max && (rc = drain(c, n, &ccap, 0)) != CAIRN_OK)
                return rc;
        }
        if (n->sparse && end < ext[i].off + ext[i].len) {
            n->sparse[i].len = end - ext[i].off;
            n->n_sparse = i + 1;
            break;
        }
        if (!n->sparse && end < n->size) {
            char msg[PATH_MAX + 128];
            n->size = end; /* a live file shrank: keep what was read, and say so */
            snprintf(msg, sizeof msg, "'%s' shrank while it was read; stored the %llu bytes read",
                     rel, (unsigned long long)end);
            if (c->o->warn)
                c->o->warn(c->o->warn_arg, msg);
        }
    }
    (void)total;
    if (rc == CAIRN_OK)
        rc = drain(c, n, &ccap, 1);
    return rc;
}

static int save_tree(struct ctx *c, struct cairn_tree *t, cairn_id *out);

/* Reads o->stream_fd to its end through the chunker into n (a file node). */
static int read_stream(struct ctx *c, struct cairn_node *n)
{
    size_t ccap = 0;
    int rc = CAIRN_OK;
    c->rbuf.len = 0;
    for (;;) {
        ssize_t got;
        if (cairn_buf_reserve(&c->rbuf, READ_BLOCK) != CAIRN_OK)
            return cairn_error(c->err, CAIRN_FATAL, "out of memory");
        got = read(c->o->stream_fd, c->rbuf.data + c->rbuf.len, READ_BLOCK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return cairn_error(c->err, CAIRN_FATAL, "cannot read the stream '%s': %s",
                               c->o->stream_name, strerror(errno));
        if (got == 0)
            break;
        if (c->o->stream_tap &&
            (rc = c->o->stream_tap(c->o->stream_tap_arg, c->rbuf.data + c->rbuf.len,
                                   (size_t)got, c->err)) != CAIRN_OK)
            return rc;
        c->rbuf.len += (size_t)got;
        n->size += (uint64_t)got;
        c->res->bytes_read += (uint64_t)got;
        if (c->rbuf.len >= c->chunker.max && (rc = drain(c, n, &ccap, 0)) != CAIRN_OK)
            return rc;
        progress(c, c->o->stream_name);
    }
    return drain(c, n, &ccap, 1);
}

/* The snapshot of a stream: a root directory holding the one file. */
static int backup_stream(struct ctx *c, int64_t t0, struct cairn_node *root)
{
    struct cairn_tree t;
    struct cairn_node n;
    int rc;
    memset(&t, 0, sizeof t);
    memset(&n, 0, sizeof n);
    n.name = strdup(c->o->stream_name);
    if (!n.name)
        return cairn_error(c->err, CAIRN_FATAL, "out of memory");
    n.type = CAIRN_T_FILE;
    n.mode = 0600;
    n.uid = (uint32_t)getuid();
    n.gid = (uint32_t)getgid();
    n.nlink = 1;
    n.mtime_ns = n.atime_ns = n.ctime_ns = t0;
    rc = read_stream(c, &n);
    if (rc == CAIRN_OK)
        rc = pipe_wait_hashed(&c->pipe, c->err);
    if (rc != CAIRN_OK) {
        pipe_fail(&c->pipe, c->err); /* workers stop writing into n.chunks */
        cairn_node_free(&n);
        return rc;
    }
    c->res->files = 1;
    c->res->total_size = n.size;
    if (cairn_tree_add(&t, &n) != CAIRN_OK) {
        cairn_node_free(&n);
        return cairn_error(c->err, CAIRN_FATAL, "out of memory");
    }
    rc = save_tree(c, &t, &root->subtree);
    cairn_tree_free(&t);
    root->type = CAIRN_T_DIR;
    root->mode = 0755;
    root->uid = (uint32_t)getuid();
    root->gid = (uint32_t)getgid();
    root->mtime_ns = root->atime_ns = root->ctime_ns = t0;
    return rc;
}

static int excluded(const struct cairn_backup_opts *o, const char *rel, const char *name)
{
    size_t i;
    for (i = 0; i < o->n_excludes; i++) {
        const char *g = o->excludes[i];
        if (fnmatch(g, rel, FNM_PATHNAME | FNM_PERIOD) == 0 || fnmatch(g, rel, 0) == 0)
            return 1;
        if (!strchr(g, '/') && fnmatch(g, name, 0) == 0)
            return 1;
    }
    return 0;
}

static int same_sparse(const struct cairn_node *a, const struct cairn_node *b)
{
    if (!a->sparse != !b->sparse || a->n_sparse != b->n_sparse)
        return 0;
    return a->n_sparse == 0 ||
           memcmp(a->sparse, b->sparse, a->n_sparse * sizeof *a->sparse) == 0;
}

/* Can the parent's content be reused for n? Every chunk must still be known. */
static int reuse_parent(struct ctx *c, struct cairn_node *n, const struct cairn_node *pn)
{
    size_t i;
    struct cairn_blob_loc loc;
    if (!pn || pn->type != CAIRN_T_FILE || pn->hardlink || c->o->force_read)
        return 0;
    if ((pn->dev != n->dev && !c->o->ignore_device) || pn->ino != n->ino || pn->size != n->size ||
        pn->mtime_ns != n->mtime_ns || pn->ctime_ns != n->ctime_ns || !same_sparse(n, pn))
        return 0;
    cairn_repo_lock(c->repo);
    for (i = 0; i < pn->n_chunks; i++)
        if (cairn_catalog_find_blob(cairn_repo_catalog(c->repo), &pn->chunks[i], &loc, NULL) !=
            CAIRN_OK)
            break;
    cairn_repo_unlock(c->repo);
    if (i < pn->n_chunks)
        return 0;
    if (pn->n_chunks) {
        n->chunks = malloc(pn->n_chunks * sizeof *n->chunks);
        if (!n->chunks)
            return 0;
        memcpy(n->chunks, pn->chunks, pn->n_chunks * sizeof *n->chunks);
    }
    n->n_chunks = pn->n_chunks;
    return 1;
}

static int backup_dir(struct ctx *c, const char *abs, const char *rel,
                      const struct cairn_tree *ptree, const cairn_id *ptree_id, cairn_id *out);

static int entry_meta(struct ctx *c, const char *abs, const char *rel, int fd,
                      const struct stat *st, struct cairn_node *n)
{
    cairn_err e;
    archive_entry_clear(c->entry);
    archive_entry_copy_sourcepath(c->entry, abs);
    archive_entry_copy_pathname(c->entry, abs);
    if (archive_read_disk_entry_from_file(c->disk, c->entry, fd, st) < ARCHIVE_WARN) {
        warnf(c, "cannot read metadata of '%s': %s", rel, archive_error_string(c->disk));
        return CAIRN_WARN;
    }
    if (cairn_node_from_entry(n, c->entry, &e) != CAIRN_OK) {
        warnf(c, "cannot back up '%s': %s", rel, e.msg);
        return CAIRN_WARN;
    }
    return CAIRN_OK;
}

static int open_noatime(const char *path, int flags)
{
    int fd = open(path, flags | O_NOATIME | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == EPERM)
        fd = open(path, flags | O_CLOEXEC | O_NOFOLLOW);
    return fd;
}

/* Backs up one entry (abs path, snapshot path rel, entry name). Returns
 * CAIRN_OK with *n filled, CAIRN_WARN when the entry was skipped (reported),
 * or a fatal code. */
/* Does the parent snapshot's node describe this inode unchanged? A change to
 * content, xattrs or ACLs moves ctime, so dev/ino/size/mtime/ctime/mode/owner
 * equal means the parent's record can be taken as it is. */
static int stat_matches(const struct cairn_node *pn, const struct stat *st, int ignore_device)
{
    static const int types[] = {S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK};
    int64_t mt = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
    int64_t ct = (int64_t)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec;
    if (!pn || (unsigned)pn->type >= sizeof types / sizeof *types ||
        (st->st_mode & S_IFMT) != (unsigned)types[pn->type])
        return 0;
    return (ignore_device || pn->dev == (uint64_t)st->st_dev) && pn->ino == (uint64_t)st->st_ino &&
           pn->mtime_ns == mt && pn->ctime_ns == ct && pn->mode == (st->st_mode & 07777) &&
           pn->uid == st->st_uid && pn->gid == st->st_gid &&
           (pn->type != CAIRN_T_FILE || pn->size == (uint64_t)st->st_size) &&
           pn->nlink == st->st_nlink;
}

/* Takes the parent's record of an unchanged non-directory entry, if every
 * chunk it names is still in the repository. */
static int reuse_unchanged(struct ctx *c, const struct cairn_node *pn, const struct stat *st,
                           struct cairn_node *n)
{
    size_t i;
    struct cairn_blob_loc loc;
    if (c->o->force_read || S_ISDIR(st->st_mode) || st->st_nlink != 1 || pn->hardlink ||
        !stat_matches(pn, st, c->o->ignore_device))
        return 0;
    cairn_repo_lock(c->repo);
    for (i = 0; i < pn->n_chunks; i++)
        if (cairn_catalog_find_blob(cairn_repo_catalog(c->repo), &pn->chunks[i], &loc, NULL) !=
            CAIRN_OK)
            break;
    cairn_repo_unlock(c->repo);
    if (i < pn->n_chunks || cairn_node_copy(n, pn) != CAIRN_OK)
        return 0;
    return 1;
}

static int backup_entry(struct ctx *c, const char *abs, const char *rel, const char *name,
                        const struct cairn_node *pn, struct cairn_node *n, int *unchanged)
{
    struct stat st;
    int rc, fd;
    memset(n, 0, sizeof *n);
    *unchanged = 0;
    if (cancelled(c))
        return CAIRN_FAILED;
    if (lstat(abs, &st) != 0) {
        if (errno == ENOENT)
            return CAIRN_WARN; /* vanished since the listing: not an error */
        warnf(c, "cannot stat '%s': %s", rel, strerror(errno));
        return CAIRN_WARN;
    }
    if (pn && reuse_unchanged(c, pn, &st, n)) {
        *unchanged = 1;
        if (n->type == CAIRN_T_FILE) {
            c->res->files++;
            c->res->reused++;
            c->res->total_size += n->size;
            progress(c, rel);
        } else {
            c->res->others++;
        }
        return CAIRN_OK; /* name is the parent's, which is the same */
    }
    if (S_ISREG(st.st_mode)) {
        const char *first;
        fd = open_noatime(abs, O_RDONLY);
        if (fd < 0) {
            warnf(c, "cannot open '%s': %s", rel, strerror(errno));
            return CAIRN_WARN;
        }
        rc = entry_meta(c, abs, rel, fd, &st, n);
        if (rc == CAIRN_OK && st.st_nlink > 1 &&
            (first = hl_get(&c->hl, (uint64_t)st.st_dev, (uint64_t)st.st_ino)) != NULL) {
            n->hardlink = strdup(first);
            free(n->sparse);
            n->sparse = NULL;
            n->n_sparse = 0;
            close(fd);
            c->res->files++;
            goto named;
        }
        if (rc == CAIRN_OK && st.st_nlink > 1 &&
            hl_put(&c->hl, (uint64_t)st.st_dev, (uint64_t)st.st_ino, rel) != CAIRN_OK)
            rc = cairn_error(c->err, CAIRN_FATAL, "out of memory");
        if (rc == CAIRN_OK) {
            if (reuse_parent(c, n, pn)) {
                c->res->reused++;
            } else {
                rc = read_file(c, fd, rel, n);
                if (rc == CAIRN_WARN)
                    warnf(c, "%s", c->err->msg);
            }
        }
        close(fd);
        if (rc != CAIRN_OK) {
            /* workers may still be writing ids into n->chunks */
            if (rc == CAIRN_WARN)
                pipe_wait_hashed(&c->pipe, c->err);
            else
                pipe_fail(&c->pipe, c->err);
            cairn_node_free(n);
            return rc;
        }
        c->res->files++;
        c->res->total_size += n->size;
        progress(c, rel);
    } else if (S_ISDIR(st.st_mode)) {
        struct cairn_tree ptree;
        int have_parent = 0, same_meta = 0;
        if (!c->o->force_read && pn && stat_matches(pn, &st, c->o->ignore_device) &&
            cairn_node_copy(n, pn) == CAIRN_OK) {
            same_meta = 1; /* ctime unchanged: the parent's metadata holds */
        } else {
            fd = open_noatime(abs, O_RDONLY | O_DIRECTORY);
            if (fd < 0) {
                warnf(c, "cannot open directory '%s': %s", rel, strerror(errno));
                return CAIRN_WARN;
            }
            rc = entry_meta(c, abs, rel, fd, &st, n);
            close(fd);
            if (rc != CAIRN_OK)
                return rc;
        }
        memset(&ptree, 0, sizeof ptree);
        if (pn && pn->type == CAIRN_T_DIR) {
            cairn_err e2;
            have_parent = cairn_repo_load_tree(c->repo, &pn->subtree, &ptree, &e2) == CAIRN_OK;
        }
        rc = backup_dir(c, abs, rel, have_parent ? &ptree : NULL,
                        have_parent ? &pn->subtree : NULL, &n->subtree);
        cairn_tree_free(&ptree);
        if (rc != CAIRN_OK) {
            cairn_node_free(n);
            return rc;
        }
        if (same_meta && memcmp(n->subtree.b, pn->subtree.b, CAIRN_ID_LEN) == 0)
            *unchanged = 1;
        c->res->dirs++;
    } else {
        rc = entry_meta(c, abs, rel, -1, &st, n);
        if (rc != CAIRN_OK)
            return rc;
        c->res->others++;
    }
named:
    free(n->name);
    n->name = strdup(name);
    if (!n->name)
        return cairn_error(c->err, CAIRN_FATAL, "out of memory");
    return CAIRN_OK;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int save_tree(struct ctx *c, struct cairn_tree *t, cairn_id *out)
{
    cairn_buf b = CAIRN_BUF_INIT;
    int rc;
    if ((rc = pipe_wait_hashed(&c->pipe, c->err)) != CAIRN_OK)
        return rc;
    cairn_tree_sort(t);
    if (cairn_tree_encode(t, &b) != CAIRN_OK) {
        cairn_buf_free(&b);
        return cairn_error(c->err, CAIRN_FATAL, "out of memory encoding a tree");
    }
    if (b.len > CAIRN_BLOB_MAX) {
        cairn_buf_free(&b);
        return cairn_error(c->err, CAIRN_FATAL, "a directory listing is larger than %u bytes",
                           CAIRN_BLOB_MAX);
    }
    rc = save_tree_blob(c, b.data, b.len, out);
    cairn_buf_free(&b);
    return rc;
}

static int tree_known(struct ctx *c, const cairn_id *id)
{
    struct cairn_blob_loc loc;
    int rc;
    cairn_repo_lock(c->repo);
    rc = cairn_catalog_find_blob(cairn_repo_catalog(c->repo), id, &loc, NULL);
    cairn_repo_unlock(c->repo);
    return rc == CAIRN_OK;
}

static int backup_dir(struct ctx *c, const char *abs, const char *rel,
                      const struct cairn_tree *ptree, const cairn_id *ptree_id, cairn_id *out)
{
    size_t n_unchanged = 0;
    int dfd = open_noatime(abs, O_RDONLY | O_DIRECTORY);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0, i;
    struct cairn_tree t;
    int rc = CAIRN_OK;
    memset(&t, 0, sizeof t);
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        warnf(c, "cannot list directory '%s': %s", *rel ? rel : ".", strerror(errno));
        return save_tree(c, &t, out);
    }
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            char **p = realloc(names, ncap * sizeof *p);
            if (!p) {
                rc = cairn_error(c->err, CAIRN_FATAL, "out of memory");
                break;
            }
            names = p;
            cap = ncap;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = cairn_error(c->err, CAIRN_FATAL, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, name_cmp);
    for (i = 0; rc == CAIRN_OK && i < n; i++) {
        char *cabs = cairn_path_join(abs, names[i]);
        char *crel = *rel ? cairn_path_join(rel, names[i]) : strdup(names[i]);
        struct cairn_node node;
        if (!cabs || !crel) {
            rc = cairn_error(c->err, CAIRN_FATAL, "out of memory");
        } else if (strlen(cabs) >= PATH_MAX) {
            warnf(c, "cannot back up '%s': path longer than %d bytes", crel, PATH_MAX);
        } else if (!excluded(c->o, crel, names[i])) {
            int same = 0;
            rc = backup_entry(c, cabs, crel, names[i],
                              ptree ? cairn_tree_find(ptree, names[i]) : NULL, &node, &same);
            if (rc == CAIRN_OK && cairn_tree_add(&t, &node) != CAIRN_OK)
                rc = cairn_error(c->err, CAIRN_FATAL, "out of memory");
            if (rc == CAIRN_OK && same)
                n_unchanged++;
            if (rc == CAIRN_WARN)
                rc = CAIRN_OK;
        }
        free(cabs);
        free(crel);
    }
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rc == CAIRN_OK && ptree && ptree_id && n_unchanged == t.n && t.n == ptree->n &&
        tree_known(c, ptree_id)) {
        *out = *ptree_id; /* every entry as in the parent: the same listing */
    } else if (rc == CAIRN_OK) {
        rc = save_tree(c, &t, out);
    }
    if (rc != CAIRN_OK)
        pipe_fail(&c->pipe, c->err); /* stop workers writing into t's nodes */
    cairn_tree_free(&t);
    return rc;
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

static char *default_source(const struct cairn_backup_opts *o, char **abspaths)
{
    char host[256];
    cairn_buf b = CAIRN_BUF_INIT;
    size_t i;
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    cairn_buf_appendf(&b, "%s:", host);
    for (i = 0; i < o->n_paths; i++)
        cairn_buf_appendf(&b, "%s%s", i ? "," : "", abspaths[i]);
    return cairn_buf_detach(&b, NULL);
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s && s[1] ? s + 1 : p;
}

int cairn_backup_run(cairn_repo *r, const struct cairn_backup_opts *o,
                     struct cairn_backup_result *res, cairn_err *err)
{
    struct ctx c;
    char **abspaths = NULL, *source = NULL, host[256];
    struct cairn_snapshot *parent = NULL;
    struct cairn_tree ptree;
    struct cairn_node root;
    const struct cairn_repo_config *cfg = cairn_repo_config(r);
    int rc = CAIRN_OK, have_ptree = 0, started = 0;
    size_t i;
    int64_t t0 = cairn_now_ns();
    double m0 = cairn_mono();
    json_t *man = NULL, *arr;
    cairn_lock *lease = NULL;

    memset(&c, 0, sizeof c);
    memset(res, 0, sizeof *res);
    memset(&ptree, 0, sizeof ptree);
    memset(&root, 0, sizeof root);
    c.repo = r;
    c.o = o;
    c.res = res;
    c.err = err;
    c.errors = json_array();
    if (o->stream_name) {
        const char *nm = o->stream_name;
        if (o->n_paths)
            rc = cairn_error(err, CAIRN_FATAL, "a stream backup takes no paths");
        else if (!*nm || strchr(nm, '/') || strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0 ||
                 strlen(nm) > 255)
            rc = cairn_error(err, CAIRN_FATAL,
                             "'%s' cannot name the stream's file (one path component, "
                             "no '/')",
                             nm);
        else if (o->stream_fd < 0)
            rc = cairn_error(err, CAIRN_FATAL, "no stream to read (bad file descriptor)");
    } else if (o->n_paths == 0) {
        rc = cairn_error(err, CAIRN_FATAL, "nothing to back up (no path given)");
    }
    if (rc != CAIRN_OK)
        goto out;
    abspaths = calloc(o->n_paths ? o->n_paths : 1, sizeof *abspaths);
    if (!abspaths || !c.errors) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    for (i = 0; i < o->n_paths; i++) {
        struct stat st;
        char buf[PATH_MAX];
        if (lstat(o->paths[i], &st) != 0 || !realpath(o->paths[i], buf)) {
            rc = cairn_error(err, CAIRN_FATAL, "cannot back up '%s': %s", o->paths[i],
                             strerror(errno));
            goto out;
        }
        abspaths[i] = strdup(buf);
        if (!abspaths[i]) {
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
            goto out;
        }
    }
    for (i = 0; i < o->n_paths; i++) {
        size_t k;
        for (k = 0; k < i; k++)
            if (strcmp(base_name(abspaths[i]), base_name(abspaths[k])) == 0) {
                rc = cairn_error(err, CAIRN_FATAL,
                                 "'%s' and '%s' have the same name; back them up separately",
                                 o->paths[k], o->paths[i]);
                goto out;
            }
    }
    if (o->stream_name && !o->source) {
        if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "localhost");
        host[sizeof host - 1] = 0;
        source = NULL;
        if (asprintf(&source, "%s:stream:%s", host, o->stream_name) < 0)
            source = NULL;
    } else {
        source = o->source ? strdup(o->source) : default_source(o, abspaths);
    }
    if (!source) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    cairn_chunker_init(&c.chunker, cfg->gear_key, cfg->chunk_min, cfg->chunk_avg,
                       cfg->chunk_max);
    /* files and directories: their metadata (ACLs, xattrs, flags, sparse
     * maps) is read with libarchive, loaded here before anything is written;
     * a stream backup does not need it */
    if (!o->stream_name) {
        if ((rc = cairn_archive_load(err)) != CAIRN_OK)
            goto out;
        c.disk = archive_read_disk_new();
        c.entry = archive_entry_new();
        if (!c.disk || !c.entry) {
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
            goto out;
        }
        archive_read_disk_set_standard_lookup(c.disk);
        archive_read_disk_set_behavior(c.disk, 0);
    }

    /* the shared lease keeps prune away until the snapshot is written; taking
     * it brings the catalog up to date, so dedup never relies on pruned data */
    {
        struct cairn_lock_opts lo = {"backup", 0, 0, 0};
        if ((rc = cairn_lock_acquire(r, CAIRN_LOCK_SHARED, &lo, &lease, err)) != CAIRN_OK)
            goto out;
    }

    /* parent snapshot of the same source */
    {
        cairn_err pe;
        if (cairn_repo_snapshot_get(r, "latest", source, &parent, &pe) == CAIRN_OK) {
            memcpy(res->parent, parent->id, sizeof res->parent);
            c.expected = (uint64_t)json_integer_value(
                json_object_get(json_object_get(parent->json, "stats"), "total_size"));
            have_ptree = cairn_repo_load_tree(r, &parent->tree, &ptree, &pe) == CAIRN_OK;
        }
    }

    if ((rc = cairn_catalog_pending_clear(cairn_repo_catalog(r), err)) != CAIRN_OK)
        goto out;
    if ((rc = pipe_start(&c.pipe, r, o->workers > 0 ? o->workers : online_cpus(), err)) !=
        CAIRN_OK)
        goto out;
    started = 1;

    if (o->stream_name) {
        rc = backup_stream(&c, t0, &root);
    } else {
        struct stat st;
        int single_dir = o->n_paths == 1 && stat(abspaths[0], &st) == 0 && S_ISDIR(st.st_mode);
        if (single_dir) {
            int fd = open_noatime(abspaths[0], O_RDONLY | O_DIRECTORY);
            if (fd < 0 || lstat(abspaths[0], &st) != 0) {
                rc = cairn_error(err, CAIRN_FATAL, "cannot open '%s': %s", o->paths[0],
                                 strerror(errno));
                if (fd >= 0)
                    close(fd);
                goto out;
            }
            if (S_ISLNK(st.st_mode))
                fstat(fd, &st);
            rc = entry_meta(&c, abspaths[0], ".", fd, &st, &root);
            close(fd);
            if (rc != CAIRN_OK) {
                rc = cairn_error(err, CAIRN_FATAL, "cannot back up '%s'", o->paths[0]);
                goto out;
            }
            rc = backup_dir(&c, abspaths[0], "", have_ptree ? &ptree : NULL,
                            have_ptree ? &parent->tree : NULL, &root.subtree);
        } else {
            struct cairn_tree t;
            memset(&t, 0, sizeof t);
            for (i = 0; rc == CAIRN_OK && i < o->n_paths; i++) {
                struct cairn_node node;
                const char *nm = base_name(abspaths[i]);
                int same;
                rc = backup_entry(&c, abspaths[i], nm, nm,
                                  have_ptree ? cairn_tree_find(&ptree, nm) : NULL, &node, &same);
                if (rc == CAIRN_OK && cairn_tree_add(&t, &node) != CAIRN_OK)
                    rc = cairn_error(err, CAIRN_FATAL, "out of memory");
                if (rc == CAIRN_WARN)
                    rc = CAIRN_OK;
            }
            if (rc == CAIRN_OK)
                rc = save_tree(&c, &t, &root.subtree);
            cairn_tree_free(&t);
            root.type = CAIRN_T_DIR;
            root.mode = 0755;
            root.uid = (uint32_t)getuid();
            root.gid = (uint32_t)getgid();
            root.mtime_ns = root.atime_ns = root.ctime_ns = t0;
        }
    }
    {
        int frc = pipe_finish(&c.pipe, rc != CAIRN_OK, err);
        started = 0;
        if (rc == CAIRN_OK)
            rc = frc;
    }
    {
        /* index what was stored, even after a failure: a rerun reuses it */
        cairn_err ie;
        int irc = pipe_index(&c.pipe, 1, rc == CAIRN_OK ? err : &ie);
        if (rc == CAIRN_OK)
            rc = irc;
    }
    if (rc != CAIRN_OK)
        goto out;
    res->bytes_stored = c.pipe.bytes_stored;
    res->bytes_new = c.pipe.bytes_new;
    res->duration = cairn_mono() - m0;

    /* the manifest */
    free(root.name);
    root.name = strdup("root");
    man = json_object();
    if (!man || !root.name) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    {
        char ts[64], hex[CAIRN_HEX_LEN + 1];
        int64_t t1 = cairn_now_ns();
        json_t *st;
        if (o->extra)
            json_object_update(man, o->extra);
        json_object_set_new(man, "version", json_integer(1));
        json_object_set_new(man, "program", json_string("cairn " CAIRN_VERSION));
        cairn_format_time(t0, ts, sizeof ts);
        json_object_set_new(man, "time", json_string(ts));
        json_object_set_new(man, "time_ns", json_integer(t0));
        cairn_format_time(t1, ts, sizeof ts);
        json_object_set_new(man, "end_time", json_string(ts));
        json_object_set_new(man, "end_ns", json_integer(t1));
        json_object_set_new(man, "hostname", json_string(host));
        json_object_set_new(man, "source", json_string(source));
        arr = json_array();
        for (i = 0; i < o->n_paths; i++)
            json_array_append_new(arr, json_string(abspaths[i]));
        json_object_set_new(man, "paths", arr);
        if (o->stream_name)
            json_object_set_new(man, "stream", json_string(o->stream_name));
        arr = json_array();
        for (i = 0; i < o->n_tags; i++)
            json_array_append_new(arr, json_string(o->tags[i]));
        json_object_set_new(man, "tags", arr);
        cairn_id_hex(&root.subtree, hex);
        json_object_set_new(man, "tree", json_string(hex));
        json_object_set_new(man, "parent", parent ? json_string(parent->id) : json_null());
        json_object_set_new(man, "root", cairn_node_to_json(&root));
        json_object_set_new(man, "consistency",
                            json_string(o->consistency ? o->consistency : "none"));
        json_object_set_new(man, "partial", json_boolean(res->partial));
        json_object_set_new(man, "error_count", json_integer((json_int_t)res->errors));
        json_object_set_new(man, "errors", c.errors);
        c.errors = NULL;
        st = json_object();
        json_object_set_new(st, "files", json_integer((json_int_t)res->files));
        json_object_set_new(st, "dirs", json_integer((json_int_t)res->dirs));
        json_object_set_new(st, "others", json_integer((json_int_t)res->others));
        json_object_set_new(st, "reused", json_integer((json_int_t)res->reused));
        json_object_set_new(st, "bytes_read", json_integer((json_int_t)res->bytes_read));
        json_object_set_new(st, "bytes_new", json_integer((json_int_t)res->bytes_new));
        json_object_set_new(st, "bytes_stored", json_integer((json_int_t)res->bytes_stored));
        json_object_set_new(st, "total_size", json_integer((json_int_t)res->total_size));
        json_object_set_new(st, "duration_ms", json_integer((json_int_t)(res->duration * 1000)));
        json_object_set_new(man, "stats", st);
    }
    if (o->before_manifest &&
        (rc = o->before_manifest(o->before_manifest_arg, man, err)) != CAIRN_OK)
        goto out;
    if (cancelled(&c)) {
        rc = CAIRN_FAILED;
        goto out;
    }
    rc = cairn_repo_put_snapshot(r, man, res->id, err);
out:
    if (started) {
        cairn_err fe;
        pipe_finish(&c.pipe, 1, &fe);
        pipe_index(&c.pipe, 1, &fe);
    }
    cairn_lock_release(lease, NULL);
    if (c.pipe.q)
        pipe_free(&c.pipe);
    json_decref(man);
    json_decref(c.errors);
    cairn_node_free(&root);
    cairn_tree_free(&ptree);
    cairn_snapshot_free(parent);
    if (c.entry)
        archive_entry_free(c.entry);
    if (c.disk)
        archive_read_free(c.disk);
    hl_free(&c.hl);
    cairn_buf_free(&c.rbuf);
    for (i = 0; abspaths && i < o->n_paths; i++)
        free(abspaths[i]);
    free(abspaths);
    free(source);
    return rc;
}

/* ---- the pipeline as a blob writer for other engine code (copy) ---- */

struct cairn_blob_writer {
    struct pipeline pipe;
    int started;  /* workers running */
    int finished; /* cairn_blob_writer_finish() ran */
};

int cairn_blob_writer_new(cairn_repo *r, int workers, cairn_blob_writer **out, cairn_err *err)
{
    cairn_blob_writer *w;
    int rc;
    *out = NULL;
    if ((rc = cairn_catalog_pending_clear(cairn_repo_catalog(r), err)) != CAIRN_OK)
        return rc;
    if (!(w = calloc(1, sizeof *w)))
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    rc = pipe_start(&w->pipe, r, workers > 0 ? workers : online_cpus(), err);
    w->started = 1;
    if (rc != CAIRN_OK) {
        cairn_blob_writer_free(w);
        return rc;
    }
    *out = w;
    return CAIRN_OK;
}

int cairn_blob_writer_add(cairn_blob_writer *w, uint8_t type, const void *data, size_t len,
                          cairn_id *id, cairn_err *err)
{
    struct job j;
    if (!w->started || w->finished)
        return cairn_error(err, CAIRN_FATAL, "blob writer used after finish");
    if (len > CAIRN_BLOB_MAX)
        return cairn_error(err, CAIRN_FATAL, "a blob of %zu bytes is larger than %u bytes", len,
                           CAIRN_BLOB_MAX);
    if (type != CAIRN_BLOB_DATA)
        return pipe_put_hashed(&w->pipe, type, data, len, id, err);
    memset(&j, 0, sizeof j);
    memset(id, 0, sizeof *id);
    j.slot = id;
    j.type = CAIRN_BLOB_DATA;
    return pipe_submit(&w->pipe, &j, data, len, err);
}

int cairn_blob_writer_wait(cairn_blob_writer *w, cairn_err *err)
{
    return pipe_wait_hashed(&w->pipe, err);
}

int cairn_blob_writer_finish(cairn_blob_writer *w, struct cairn_blob_writer_stats *st,
                             cairn_err *err)
{
    int rc, irc;
    cairn_err ie;
    if (!w->started || w->finished)
        return cairn_error(err, CAIRN_FATAL, "blob writer finished twice");
    rc = pipe_finish(&w->pipe, 0, err);
    w->started = 0;
    w->finished = 1;
    /* index what was stored, even after a failure: a rerun reuses it */
    irc = pipe_index(&w->pipe, 1, rc == CAIRN_OK ? err : &ie);
    if (rc == CAIRN_OK)
        rc = irc;
    if (st) {
        st->bytes_new = w->pipe.bytes_new;
        st->bytes_stored = w->pipe.bytes_stored;
    }
    return rc;
}

void cairn_blob_writer_free(cairn_blob_writer *w)
{
    if (!w)
        return;
    if (w->started) {
        cairn_err e;
        pipe_finish(&w->pipe, 1, &e);
        pipe_index(&w->pipe, 1, &e);
    }
    if (w->pipe.q)
        pipe_free(&w->pipe);
    free(w);
}

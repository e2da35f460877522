/* engine/copy.c — see copy.h. */
#define _GNU_SOURCE
#include "copy.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "internal.h"
#include "lock.h"

#define MAX_DEPTH 4096
/* memo tables (open addressing, half full at most): forgotten when full */
#define TREE_MEMO_SLOTS (1u << 15)  /* 16384 trees, ~2.3 MiB */
#define CHUNK_MEMO_SLOTS (1u << 17) /* 65536 chunks, ~9 MiB */

/* ---- source id -> destination id memo ---- */

struct memo_ent {
    cairn_id src, dst;
    uint8_t used;
    uint8_t check; /* from an earlier copy: confirm the destination still has it */
};

struct memo {
    struct memo_ent *v;
    size_t n, slots;
};

static uint64_t memo_hash(const cairn_id *id)
{
    uint64_t h;
    memcpy(&h, id->b, sizeof h); /* ids are keyed hashes: already uniform */
    return h;
}

static const struct memo_ent *memo_get(const struct memo *m, const cairn_id *src)
{
    size_t i;
    if (!m->v)
        return NULL;
    for (i = memo_hash(src) & (m->slots - 1); m->v[i].used; i = (i + 1) & (m->slots - 1))
        if (memcmp(m->v[i].src.b, src->b, CAIRN_ID_LEN) == 0)
            return &m->v[i];
    return NULL;
}

static void memo_put(struct memo *m, const cairn_id *src, const cairn_id *dst, int check)
{
    size_t i;
    if (!m->v && !(m->v = calloc(m->slots, sizeof *m->v)))
        return; /* a memo is only a saving */
    if ((m->n + 1) * 2 > m->slots) {
        memset(m->v, 0, m->slots * sizeof *m->v);
        m->n = 0;
    }
    for (i = memo_hash(src) & (m->slots - 1); m->v[i].used; i = (i + 1) & (m->slots - 1))
        if (memcmp(m->v[i].src.b, src->b, CAIRN_ID_LEN) == 0)
            break;
    if (!m->v[i].used)
        m->n++;
    m->v[i].src = *src;
    m->v[i].dst = *dst;
    m->v[i].used = 1;
    m->v[i].check = (uint8_t)check;
}

static void memo_clear(struct memo *m)
{
    if (m->v)
        memset(m->v, 0, m->slots * sizeof *m->v);
    m->n = 0;
}

/* ---- snapshots already copied: source id -> destination id ---- */

struct pair {
    char src[CAIRN_HEX_LEN + 1], dst[CAIRN_HEX_LEN + 1];
    char *source;
    int64_t time_ns;
};

struct pairs {
    struct pair *v;
    size_t n, cap;
};

static int pair_cmp(const void *a, const void *b)
{
    return strcmp(((const struct pair *)a)->src, ((const struct pair *)b)->src);
}

static const struct pair *pairs_find(const struct pairs *p, const char *src)
{
    struct pair key;
    if (!p->n || strlen(src) != CAIRN_HEX_LEN)
        return NULL;
    memset(&key, 0, sizeof key);
    memcpy(key.src, src, sizeof key.src);
    return bsearch(&key, p->v, p->n, sizeof *p->v, pair_cmp);
}

static int pairs_add(struct pairs *p, const char *src, const char *dst, const char *source,
                     int64_t time_ns)
{
    if (p->n == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 64;
        struct pair *nv = realloc(p->v, ncap * sizeof *nv);
        if (!nv)
            return CAIRN_FATAL;
        p->v = nv;
        p->cap = ncap;
    }
    memset(&p->v[p->n], 0, sizeof p->v[p->n]);
    snprintf(p->v[p->n].src, sizeof p->v[p->n].src, "%s", src);
    snprintf(p->v[p->n].dst, sizeof p->v[p->n].dst, "%s", dst);
    p->v[p->n].source = strdup(source ? source : "");
    p->v[p->n].time_ns = time_ns;
    if (!p->v[p->n].source)
        return CAIRN_FATAL;
    p->n++;
    return CAIRN_OK;
}

static void pairs_sort(struct pairs *p)
{
    if (p->n > 1)
        qsort(p->v, p->n, sizeof *p->v, pair_cmp);
}

static void pairs_free(struct pairs *p)
{
    size_t i;
    for (i = 0; i < p->n; i++)
        free(p->v[i].source);
    free(p->v);
}

struct load_pairs {
    struct pairs *pairs;
    const char *src_repo;
    cairn_err *err;
};

/* A destination snapshot row: is it a copy of one of the source's? */
static int load_pair_cb(void *arg, const struct cairn_snaprow *row)
{
    struct load_pairs *lp = arg;
    json_t *m = json_loads(row->manifest ? row->manifest : "", 0, NULL);
    json_t *cf = json_object_get(m, "copied_from");
    const char *repo = json_string_value(json_object_get(cf, "repo"));
    const char *snap = json_string_value(json_object_get(cf, "snapshot"));
    int rc = 0;
    if (repo && snap && strcmp(repo, lp->src_repo) == 0 && strlen(snap) == CAIRN_HEX_LEN &&
        pairs_add(lp->pairs, snap, row->id, row->source, row->time_ns) != CAIRN_OK)
        rc = cairn_error(lp->err, CAIRN_FATAL, "out of memory");
    json_decref(m);
    return rc;
}

/* ---- selection ---- */

struct sel {
    char id[CAIRN_HEX_LEN + 1];
    int64_t time_ns;
};

struct sels {
    struct sel *v;
    size_t n, cap;
    const struct cairn_copy_opts *o;
    cairn_err *err;
};

static int has_tag(const struct cairn_copy_opts *o, const char *csv)
{
    size_t i;
    if (!o->n_tags)
        return 1;
    for (i = 0; i < o->n_tags; i++) {
        size_t tl = strlen(o->tags[i]);
        const char *p = csv;
        while (p && *p) {
            const char *e = strchr(p, ',');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            if (l == tl && strncmp(p, o->tags[i], l) == 0)
                return 1;
            p = e ? e + 1 : NULL;
        }
    }
    return 0;
}

static int sels_add(struct sels *s, const char *id, int64_t time_ns)
{
    size_t i;
    for (i = 0; i < s->n; i++)
        if (strcmp(s->v[i].id, id) == 0)
            return CAIRN_OK; /* named twice */
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 64;
        struct sel *nv = realloc(s->v, ncap * sizeof *nv);
        if (!nv)
            return cairn_error(s->err, CAIRN_FATAL, "out of memory");
        s->v = nv;
        s->cap = ncap;
    }
    snprintf(s->v[s->n].id, sizeof s->v[s->n].id, "%s", id);
    s->v[s->n].time_ns = time_ns;
    s->n++;
    return CAIRN_OK;
}

static int select_cb(void *arg, const struct cairn_snaprow *row)
{
    struct sels *s = arg;
    if (!has_tag(s->o, row->tags))
        return 0;
    return sels_add(s, row->id, row->time_ns) == CAIRN_OK ? 0 : -1;
}

static int sel_cmp(const void *a, const void *b)
{
    const struct sel *x = a, *y = b;
    if (x->time_ns != y->time_ns)
        return x->time_ns < y->time_ns ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* ---- parallel reads from the source ----
 * A directory's chunks that must be read are collected (struct need) and
 * read in batches by a few threads (remote stores answer each request after
 * a round trip), then handed to the writer in order. */

#define MAX_READERS 64
#define NEED_FLUSH 1024 /* read the collected chunks once this many wait */

struct need {
    const cairn_id *id; /* source id (in the source tree, alive meanwhile) */
    cairn_id *slot;     /* where the destination id goes */
    const char *name;   /* the file's name, for messages */
};

struct needs {
    struct need *v;
    size_t n, cap;
};

struct fetch {
    struct need nd;
    cairn_buf buf; /* reused from batch to batch */
    int rc, done;
    cairn_err err;
};

struct readers {
    cairn_repo *src;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    struct fetch *batch; /* batch_cap entries */
    size_t batch_cap, njobs, next;
    int stop;
    pthread_t th[MAX_READERS];
    int n;
};

static void *reader_main(void *arg)
{
    struct readers *rd = arg;
    pthread_mutex_lock(&rd->mu);
    for (;;) {
        struct fetch *f;
        while (!rd->stop && rd->next >= rd->njobs)
            pthread_cond_wait(&rd->work, &rd->mu);
        if (rd->stop)
            break;
        f = &rd->batch[rd->next++];
        pthread_mutex_unlock(&rd->mu);
        cairn_err_clear(&f->err);
        f->rc = cairn_repo_load_blob_v(rd->src, f->nd.id, CAIRN_VERIFY_FULL, &f->buf, &f->err);
        pthread_mutex_lock(&rd->mu);
        f->done = 1;
        pthread_cond_broadcast(&rd->done);
    }
    pthread_mutex_unlock(&rd->mu);
    return NULL;
}

static void readers_stop(struct readers *rd)
{
    size_t i;
    int k;
    if (!rd->batch)
        return;
    pthread_mutex_lock(&rd->mu);
    rd->stop = 1;
    pthread_cond_broadcast(&rd->work);
    pthread_mutex_unlock(&rd->mu);
    for (k = 0; k < rd->n; k++)
        pthread_join(rd->th[k], NULL);
    for (i = 0; i < rd->batch_cap; i++)
        cairn_buf_free(&rd->batch[i].buf);
    free(rd->batch);
    rd->batch = NULL;
    pthread_mutex_destroy(&rd->mu);
    pthread_cond_destroy(&rd->work);
    pthread_cond_destroy(&rd->done);
}

static int readers_start(struct readers *rd, cairn_repo *src, int n, cairn_err *err)
{
    size_t i;
    memset(rd, 0, sizeof *rd);
    rd->src = src;
    if (n < 1)
        n = 1;
    if (n > MAX_READERS)
        n = MAX_READERS;
    rd->batch_cap = (size_t)n * 2;
    if (!(rd->batch = calloc(rd->batch_cap, sizeof *rd->batch)))
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    for (i = 0; i < rd->batch_cap; i++)
        cairn_buf_init(&rd->batch[i].buf, CAIRN_BLOB_MAX);
    pthread_mutex_init(&rd->mu, NULL);
    pthread_cond_init(&rd->work, NULL);
    pthread_cond_init(&rd->done, NULL);
    for (rd->n = 0; rd->n < n; rd->n++)
        if (pthread_create(&rd->th[rd->n], NULL, reader_main, rd) != 0)
            break;
    if (rd->n == 0) {
        readers_stop(rd);
        return cairn_error(err, CAIRN_FATAL, "cannot start reader threads");
    }
    return CAIRN_OK;
}

static int needs_add(struct needs *l, const cairn_id *id, cairn_id *slot, const char *name)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        struct need *nv = realloc(l->v, ncap * sizeof *nv);
        if (!nv)
            return CAIRN_FATAL;
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n].id = id;
    l->v[l->n].slot = slot;
    l->v[l->n].name = name;
    l->n++;
    return CAIRN_OK;
}

/* ---- copying one snapshot ---- */

struct cctx {
    cairn_repo *src, *dst;
    cairn_blob_writer *w;
    struct memo trees, chunks;
    struct readers rd;    /* source reads */
    cairn_buf path;       /* the directory being copied, for messages */
    uint64_t files, bytes_read;
    int dst_failed;       /* the error came from the destination: stop everything */
    cairn_err *err;
    const struct cairn_copy_opts *o;
    size_t n, count;      /* which snapshot, for progress */
    const char *src_id;
    double last_progress;
    cairn_lock *dst_lease; /* checked before each manifest is written */
};

static void progress(struct cctx *c, const char *path)
{
    double now;
    if (!c->o->progress)
        return;
    now = cairn_mono();
    if (now - c->last_progress < 0.25)
        return;
    c->last_progress = now;
    c->o->progress(c->o->arg, c->n, c->count, c->src_id, c->bytes_read, path);
}

static int dst_has(struct cctx *c, const cairn_id *id)
{
    struct cairn_blob_loc loc;
    int rc;
    cairn_repo_lock(c->dst);
    rc = cairn_catalog_find_blob(cairn_repo_catalog(c->dst), id, &loc, NULL);
    cairn_repo_unlock(c->dst);
    return rc == CAIRN_OK;
}

static const char *cur_path(struct cctx *c, const char *name)
{
    size_t base = c->path.len;
    const char *s;
    if (base)
        cairn_buf_putc(&c->path, '/');
    cairn_buf_append(&c->path, name, strlen(name));
    s = cairn_buf_cstr(&c->path);
    c->path.len = base;
    return s ? s : name;
}

static int dst_error(struct cctx *c, int rc)
{
    c->dst_failed = 1;
    return rc;
}

/* Reads every collected chunk from the source (in parallel batches) and hands
 * it to the writer, which writes its destination id into the slot. On a
 * source error the message names the file (and the load error the pack). */
static int flush_needs(struct cctx *c, struct needs *l)
{
    struct readers *rd = &c->rd;
    size_t off, i, m;
    int rc = CAIRN_OK;
    for (off = 0; rc == CAIRN_OK && off < l->n; off += m) {
        m = l->n - off < rd->batch_cap ? l->n - off : rd->batch_cap;
        pthread_mutex_lock(&rd->mu);
        for (i = 0; i < m; i++) {
            rd->batch[i].nd = l->v[off + i];
            rd->batch[i].done = 0;
        }
        rd->next = 0;
        rd->njobs = m;
        pthread_cond_broadcast(&rd->work);
        pthread_mutex_unlock(&rd->mu);
        for (i = 0; i < m; i++) {
            struct fetch *f = &rd->batch[i];
            pthread_mutex_lock(&rd->mu);
            while (!f->done)
                pthread_cond_wait(&rd->done, &rd->mu);
            pthread_mutex_unlock(&rd->mu);
            if (rc != CAIRN_OK)
                continue; /* wait for the rest of the batch: it writes into it */
            if (f->rc != CAIRN_OK) {
                *c->err = f->err;
                rc = cairn_error_prefix(c->err, "cannot read '%s' from the source",
                                        cur_path(c, f->nd.name));
                continue;
            }
            c->bytes_read += f->buf.len;
            progress(c, cur_path(c, f->nd.name));
            if ((rc = cairn_blob_writer_add(c->w, CAIRN_BLOB_DATA, f->buf.data, f->buf.len,
                                            f->nd.slot, c->err)) != CAIRN_OK)
                dst_error(c, rc);
        }
        pthread_mutex_lock(&rd->mu);
        rd->njobs = rd->next = 0;
        pthread_mutex_unlock(&rd->mu);
    }
    l->n = 0;
    return rc;
}

/* Fills n->chunks (already sized like sn's) with destination ids: from the
 * earlier copy of the same file when it is unchanged, else from the memo;
 * the chunks left to read are added to l (their slots filled by flush_needs). */
static int plan_file(struct cctx *c, const struct cairn_node *sn, const struct cairn_node *hs,
                     const struct cairn_node *hd, struct cairn_node *n, struct needs *l)
{
    size_t k;
    if (hs && hd && hs->type == CAIRN_T_FILE && hd->type == CAIRN_T_FILE &&
        hs->n_chunks == hd->n_chunks && !hs->hardlink && !hd->hardlink) {
        if (sn->n_chunks == hs->n_chunks &&
            memcmp(sn->chunks, hs->chunks, sn->n_chunks * sizeof *sn->chunks) == 0) {
            for (k = 0; k < hd->n_chunks && dst_has(c, &hd->chunks[k]); k++)
                ;
            if (k == hd->n_chunks) {
                memcpy(n->chunks, hd->chunks, hd->n_chunks * sizeof *n->chunks);
                return CAIRN_OK;
            }
        }
        /* changed: the chunks it shares with its earlier copy need no reading */
        for (k = 0; k < hs->n_chunks; k++)
            memo_put(&c->chunks, &hs->chunks[k], &hd->chunks[k], 1);
    }
    for (k = 0; k < sn->n_chunks; k++) {
        const struct memo_ent *e = memo_get(&c->chunks, &sn->chunks[k]);
        if (e && (!e->check || dst_has(c, &e->dst))) {
            n->chunks[k] = e->dst;
            continue;
        }
        if (needs_add(l, &sn->chunks[k], &n->chunks[k], sn->name) != CAIRN_OK)
            return dst_error(c, cairn_error(c->err, CAIRN_FATAL, "out of memory"));
        if (l->n >= NEED_FLUSH) {
            int rc = flush_needs(c, l);
            if (rc != CAIRN_OK)
                return rc;
        }
    }
    return CAIRN_OK;
}

/* Copies the source tree sid (and everything below it) and gives its
 * destination id. hs/hd: the same directory in an earlier copied snapshot
 * and in its copy (NULL: none). */
static int copy_tree(struct cctx *c, const cairn_id *sid, const cairn_id *hs_id,
                     const cairn_id *hd_id, int depth, cairn_id *out)
{
    struct cairn_tree t, hs, hd, nt;
    struct needs need = {NULL, 0, 0};
    const struct memo_ent *e;
    cairn_buf enc = CAIRN_BUF_INIT;
    int rc = CAIRN_OK, hint = 0;
    size_t i, k, base = c->path.len;

    if (depth > MAX_DEPTH)
        return cairn_error(c->err, CAIRN_CORRUPT, "source trees nest deeper than %d levels",
                           MAX_DEPTH);
    e = memo_get(&c->trees, sid);
    if (e && (!e->check || dst_has(c, &e->dst))) {
        *out = e->dst;
        return CAIRN_OK;
    }
    if (hs_id && hd_id && memcmp(sid->b, hs_id->b, CAIRN_ID_LEN) == 0 && dst_has(c, hd_id)) {
        *out = *hd_id; /* unchanged since the earlier copy */
        memo_put(&c->trees, sid, hd_id, 1);
        return CAIRN_OK;
    }
    memset(&t, 0, sizeof t);
    memset(&hs, 0, sizeof hs);
    memset(&hd, 0, sizeof hd);
    memset(&nt, 0, sizeof nt);
    if ((rc = cairn_repo_load_tree(c->src, sid, &t, c->err)) != CAIRN_OK)
        return cairn_error_prefix(c->err, "cannot read directory '%s' from the source",
                                  base ? cairn_buf_cstr(&c->path) : ".");
    if (hs_id && hd_id) {
        cairn_err he;
        hint = cairn_repo_load_tree(c->src, hs_id, &hs, &he) == CAIRN_OK &&
               cairn_repo_load_tree(c->dst, hd_id, &hd, &he) == CAIRN_OK;
    }
    for (i = 0; rc == CAIRN_OK && i < t.n; i++) {
        const struct cairn_node *sn = &t.nodes[i];
        const struct cairn_node *hsn = hint ? cairn_tree_find(&hs, sn->name) : NULL;
        const struct cairn_node *hdn = hint ? cairn_tree_find(&hd, sn->name) : NULL;
        struct cairn_node n;
        if (cairn_node_copy(&n, sn) != CAIRN_OK) {
            rc = dst_error(c, cairn_error(c->err, CAIRN_FATAL, "out of memory"));
            break;
        }
        if (sn->type == CAIRN_T_DIR) {
            int h = hsn && hdn && hsn->type == CAIRN_T_DIR && hdn->type == CAIRN_T_DIR;
            if (base)
                cairn_buf_putc(&c->path, '/');
            cairn_buf_append(&c->path, sn->name, strlen(sn->name));
            rc = copy_tree(c, &sn->subtree, h ? &hsn->subtree : NULL, h ? &hdn->subtree : NULL,
                           depth + 1, &n.subtree);
            c->path.len = base;
        } else if (sn->n_chunks) {
            rc = plan_file(c, sn, hsn, hdn, &n, &need);
        }
        if (sn->type == CAIRN_T_FILE)
            c->files++;
        /* the node joins the tree even on error: workers may still write ids
         * into its chunk array, which must live until they are done */
        if (cairn_tree_add(&nt, &n) != CAIRN_OK) {
            cairn_node_free(&n);
            if (rc == CAIRN_OK)
                rc = dst_error(c, cairn_error(c->err, CAIRN_FATAL, "out of memory"));
        }
    }
    if (rc == CAIRN_OK)
        rc = flush_needs(c, &need);
    free(need.v);
    {
        /* every id handed to the workers is written before the tree is encoded
         * (or freed) */
        cairn_err we;
        int wrc = cairn_blob_writer_wait(c->w, rc == CAIRN_OK ? c->err : &we);
        if (rc == CAIRN_OK && wrc != CAIRN_OK)
            rc = dst_error(c, wrc);
    }
    if (rc == CAIRN_OK) {
        for (i = 0; i < t.n; i++)
            for (k = 0; k < t.nodes[i].n_chunks; k++)
                memo_put(&c->chunks, &t.nodes[i].chunks[k], &nt.nodes[i].chunks[k], 0);
        if (cairn_tree_encode(&nt, &enc) != CAIRN_OK)
            rc = dst_error(c, cairn_error(c->err, CAIRN_FATAL, "out of memory encoding a tree"));
        else if (enc.len > CAIRN_BLOB_MAX)
            rc = cairn_error(c->err, CAIRN_FAILED,
                             "directory '%s' of the source is larger than %u bytes encoded",
                             base ? cairn_buf_cstr(&c->path) : ".", CAIRN_BLOB_MAX);
        else if ((rc = cairn_blob_writer_add(c->w, CAIRN_BLOB_TREE, enc.data, enc.len, out,
                                             c->err)) != CAIRN_OK)
            dst_error(c, rc);
        else
            memo_put(&c->trees, sid, out, 0);
    }
    cairn_buf_free(&enc);
    cairn_tree_free(&t);
    cairn_tree_free(&hs);
    cairn_tree_free(&hd);
    cairn_tree_free(&nt);
    return rc;
}

/* The earlier copy to walk beside: the snapshot's parent if it was copied,
 * else the newest copied snapshot of the same source older than it. */
static const struct pair *pick_hint(const struct pairs *p, const struct cairn_snapshot *s)
{
    const char *parent = json_string_value(json_object_get(s->json, "parent"));
    const struct pair *best = parent ? pairs_find(p, parent) : NULL;
    size_t i;
    if (best)
        return best;
    for (i = 0; i < p->n; i++)
        if (s->source && strcmp(p->v[i].source, s->source) == 0 && p->v[i].time_ns <= s->time_ns &&
            (!best || p->v[i].time_ns > best->time_ns))
            best = &p->v[i];
    return best;
}

static int copy_snapshot(struct cctx *c, const struct cairn_snapshot *s, struct pairs *pairs,
                         const struct cairn_copy_opts *o, struct cairn_copy_item *it,
                         char dst_id[CAIRN_HEX_LEN + 1])
{
    const struct pair *hp = pick_hint(pairs, s);
    struct cairn_snapshot *hsnap = NULL, *hdsnap = NULL;
    struct cairn_blob_writer_stats st;
    cairn_id root;
    json_t *man = NULL, *cf;
    char hex[CAIRN_HEX_LEN + 1];
    const char *sparent;
    int rc, frc;

    c->files = c->bytes_read = 0;
    c->dst_failed = 0;
    c->path.len = 0;
    memset(&st, 0, sizeof st);
    if (hp) {
        cairn_err he;
        if (cairn_repo_snapshot_get(c->src, hp->src, NULL, &hsnap, &he) != CAIRN_OK ||
            cairn_repo_snapshot_get(c->dst, hp->dst, NULL, &hdsnap, &he) != CAIRN_OK) {
            cairn_snapshot_free(hsnap);
            cairn_snapshot_free(hdsnap);
            hsnap = hdsnap = NULL;
        }
    }
    if ((rc = cairn_blob_writer_new(c->dst, o->workers, &c->w, c->err)) != CAIRN_OK) {
        c->dst_failed = 1;
        goto out;
    }
    rc = copy_tree(c, &s->tree, hsnap ? &hsnap->tree : NULL, hdsnap ? &hdsnap->tree : NULL, 0,
                   &root);
    {
        /* store and index what was queued even when the source failed: the
         * memo names it, and a rerun reuses it */
        cairn_err fe;
        frc = cairn_blob_writer_finish(c->w, &st, rc == CAIRN_OK ? c->err : &fe);
        cairn_blob_writer_free(c->w);
        c->w = NULL;
        if (frc != CAIRN_OK) {
            if (rc == CAIRN_OK)
                rc = frc;
            else
                *c->err = fe;
            c->dst_failed = 1;
        }
    }
    {
        /* unchanged directories are taken from the earlier copy unread: the
         * manifest's count is the snapshot's */
        json_t *nf = json_object_get(json_object_get(s->json, "stats"), "files");
        it->files = json_is_integer(nf) && json_integer_value(nf) >= 0 ?
                        (uint64_t)json_integer_value(nf) : c->files;
    }
    it->bytes_read = c->bytes_read;
    it->bytes_new = st.bytes_new;
    it->bytes_stored = st.bytes_stored;
    if (rc != CAIRN_OK)
        goto out;

    /* the manifest: the source's, with the tree and parent translated */
    if (!(man = json_deep_copy(s->json)) || !(cf = json_object())) {
        rc = cairn_error(c->err, CAIRN_FATAL, "out of memory");
        c->dst_failed = 1;
        goto out;
    }
    cairn_id_hex(&root, hex);
    json_object_set_new(man, "tree", json_string(hex));
    sparent = json_string_value(json_object_get(s->json, "parent"));
    {
        const struct pair *pp = sparent ? pairs_find(pairs, sparent) : NULL;
        json_object_set_new(man, "parent", pp ? json_string(pp->dst) : json_null());
    }
    json_object_set_new(cf, "repo", json_string(cairn_repo_config(c->src)->id));
    json_object_set_new(cf, "snapshot", json_string(s->id));
    json_object_set_new(man, "copied_from", cf);
    /* a lease lost (refreshes failing for its whole ttl) may have let a prune
     * delete what this copy deduplicated against: write nothing then */
    if (c->dst_lease && (rc = cairn_lock_check(c->dst_lease, c->err)) != CAIRN_OK) {
        c->dst_failed = 1;
        cairn_error_prefix(c->err, "destination");
        goto out;
    }
    if ((rc = cairn_repo_put_snapshot(c->dst, man, dst_id, c->err)) != CAIRN_OK) {
        c->dst_failed = 1;
        cairn_error_prefix(c->err, "cannot write the snapshot into the destination");
    }
out:
    if (rc != CAIRN_OK && c->dst_failed) {
        /* what the memos name may not have been stored */
        memo_clear(&c->trees);
        memo_clear(&c->chunks);
    }
    json_decref(man);
    cairn_snapshot_free(hsnap);
    cairn_snapshot_free(hdsnap);
    return rc;
}

/* ---- the run ---- */

int cairn_copy_run(cairn_repo *src, cairn_repo *dst, const struct cairn_copy_opts *o,
                   struct cairn_copy_result *res, cairn_err *err)
{
    const char *src_id = cairn_repo_config(src)->id, *dst_repo = cairn_repo_config(dst)->id;
    struct pairs pairs;
    struct sels sels;
    struct cctx c;
    cairn_lock *src_lease = NULL, *dst_lease = NULL;
    int rc = CAIRN_OK;
    size_t i;

    memset(res, 0, sizeof *res);
    memset(&pairs, 0, sizeof pairs);
    memset(&sels, 0, sizeof sels);
    memset(&c, 0, sizeof c);
    sels.o = o;
    sels.err = err;
    c.src = src;
    c.dst = dst;
    c.err = err;
    c.o = o;
    c.trees.slots = TREE_MEMO_SLOTS;
    c.chunks.slots = CHUNK_MEMO_SLOTS;
    if (strcmp(src_id, dst_repo) == 0)
        return cairn_error(err, CAIRN_FATAL,
                           "the destination is the source repository (id %.12s); copy into "
                           "another repository ('cairn init' one first)",
                           src_id);

    /* leases: prune waits on both sides; taking them brings the catalogs up
     * to date with the stores */
    if (!o->dry_run) {
        struct cairn_lock_opts lo;
        cairn_err le;
        memset(&lo, 0, sizeof lo);
        lo.operation = "copy";
        rc = cairn_lock_acquire(src, CAIRN_LOCK_SHARED, &lo, &src_lease, &le);
        if (rc == CAIRN_RETRY) {
            *err = le;
            cairn_error_prefix(err, "source");
            goto out;
        }
        rc = CAIRN_OK; /* a source we may not write: go on without its lease */
        if ((rc = cairn_lock_acquire(dst, CAIRN_LOCK_SHARED, &lo, &dst_lease, err)) != CAIRN_OK) {
            cairn_error_prefix(err, "destination");
            goto out;
        }
    }

    c.dst_lease = dst_lease;
    if (!o->dry_run &&
        (rc = readers_start(&c.rd, src, o->readers > 0 ? o->readers : 4, err)) != CAIRN_OK)
        goto out;

    /* what to copy */
    if (o->n_snaps) {
        for (i = 0; i < o->n_snaps; i++) {
            struct cairn_snapshot *s = NULL;
            json_t *tags;
            size_t k;
            cairn_buf csv = CAIRN_BUF_INIT;
            if ((rc = cairn_repo_snapshot_get(src, o->snaps[i], o->source, &s, err)) != CAIRN_OK) {
                if (rc == CAIRN_NOTFOUND && strcmp(o->snaps[i], "latest") != 0)
                    cairn_error(err, rc, "no snapshot '%s' in the source repository%s%s%s",
                                o->snaps[i], o->source ? " (source '" : "",
                                o->source ? o->source : "", o->source ? "')" : "");
                goto out;
            }
            tags = json_object_get(s->json, "tags");
            for (k = 0; k < json_array_size(tags); k++)
                cairn_buf_appendf(&csv, "%s%s", k ? "," : "",
                                  json_string_value(json_array_get(tags, k)) ?
                                      json_string_value(json_array_get(tags, k)) : "");
            if (has_tag(o, csv.len ? cairn_buf_cstr(&csv) : ""))
                rc = sels_add(&sels, s->id, s->time_ns);
            cairn_buf_free(&csv);
            cairn_snapshot_free(s);
            if (rc != CAIRN_OK)
                goto out;
        }
    } else {
        cairn_repo_lock(src);
        rc = cairn_catalog_list_snapshots(cairn_repo_catalog(src), o->source, select_cb, &sels,
                                          err);
        cairn_repo_unlock(src);
        if (rc != CAIRN_OK)
            goto out;
    }
    if (sels.n > 1)
        qsort(sels.v, sels.n, sizeof *sels.v, sel_cmp);
    res->selected = sels.n;

    /* what was copied before */
    {
        struct load_pairs lp = {&pairs, src_id, err};
        cairn_repo_lock(dst);
        rc = cairn_catalog_list_snapshots(cairn_repo_catalog(dst), NULL, load_pair_cb, &lp, err);
        cairn_repo_unlock(dst);
        if (rc != CAIRN_OK)
            goto out;
        pairs_sort(&pairs);
    }

    for (i = 0; i < sels.n; i++) {
        struct cairn_copy_item it;
        struct cairn_snapshot *s = NULL;
        const struct pair *done = pairs_find(&pairs, sels.v[i].id);
        char dst_id[CAIRN_HEX_LEN + 1] = "";
        cairn_err se;
        int src_rc;
        memset(&it, 0, sizeof it);
        it.src_id = sels.v[i].id;
        it.dst_id = "";
        it.time_ns = sels.v[i].time_ns;
        cairn_err_clear(&se);
        src_rc = cairn_repo_snapshot_get(src, sels.v[i].id, NULL, &s, &se);
        it.source = s && s->source ? s->source : "";
        if (done) {
            it.status = CAIRN_COPY_SKIPPED;
            it.dst_id = done->dst;
            res->skipped++;
        } else if (src_rc != CAIRN_OK) {
            it.status = CAIRN_COPY_FAILED;
            it.err = &se;
            res->failed++;
        } else if (o->dry_run) {
            it.status = CAIRN_COPY_WOULD;
        } else {
            c.n = i + 1;
            c.count = sels.n;
            c.src_id = s->id;
            rc = copy_snapshot(&c, s, &pairs, o, &it, dst_id);
            res->bytes_read += it.bytes_read;
            res->bytes_new += it.bytes_new;
            res->bytes_stored += it.bytes_stored;
            if (rc == CAIRN_OK) {
                it.status = CAIRN_COPY_COPIED;
                it.dst_id = dst_id;
                res->copied++;
                if (pairs_add(&pairs, s->id, dst_id, s->source, s->time_ns) != CAIRN_OK)
                    rc = cairn_error(err, CAIRN_FATAL, "out of memory");
                pairs_sort(&pairs);
            } else if (c.dst_failed) {
                cairn_snapshot_free(s);
                cairn_error_prefix(err, "copy of snapshot %.12s failed", sels.v[i].id);
                goto out; /* the destination failed: nothing else can be copied */
            } else {
                /* the source is damaged: this snapshot fails, the others go on */
                se = *err;
                it.status = CAIRN_COPY_FAILED;
                it.err = &se;
                res->failed++;
                rc = CAIRN_OK;
            }
        }
        if (o->on_item)
            o->on_item(o->arg, &it);
        cairn_snapshot_free(s);
        if (rc != CAIRN_OK)
            goto out;
    }
    if (res->failed)
        rc = cairn_error(err, CAIRN_FAILED, "%llu of %llu snapshots could not be copied",
                         (unsigned long long)res->failed, (unsigned long long)res->selected);
out:
    cairn_lock_release(dst_lease, NULL);
    cairn_lock_release(src_lease, NULL);
    cairn_blob_writer_free(c.w);
    free(c.trees.v);
    free(c.chunks.v);
    readers_stop(&c.rd);
    cairn_buf_free(&c.path);
    pairs_free(&pairs);
    free(sels.v);
    return rc;
}

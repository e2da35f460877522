/* restore/pipeline.c — see pipeline.h.
 *
 * One mutex guards both rings. The chunk ring holds job slots in walk order:
 *   head  <= fetch <= tail
 *   [head, fetch)  claimed by a worker (loading or done), not yet consumed
 *   [fetch, tail)  queued, not yet claimed
 * Workers claim in order, so the slot the consumer needs next is always the
 * first one claimed. A worker claims a slot only while the bytes held by the
 * ring (the allocated size of each loaded chunk's buffer, plus a reservation of
 * the largest chunk size for each load in progress) stay within the limit, or
 * when the ring holds nothing at all (so a chunk larger than the limit still
 * makes progress). Buffers are reused through a small pool; a small chunk
 * loaded into a large buffer is copied into a buffer of its own size, so the
 * allocated size stays close to the data. */
#define _GNU_SOURCE
#include "pipeline.h"

#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RS_SLOTS 4096        /* chunk jobs queued ahead of the consumer */
#define RS_ITEMS 4096        /* items queued ahead of the consumer */
#define RS_BATCH 32          /* items (or chunk jobs) the walker queues at once */
#define RS_MAX_DEPTH 4096    /* directory nesting we follow */
#define RS_MAX_WORKERS 64
#define RS_DEFAULT_RESERVE (8u << 20)
#define RS_POOL 8                   /* spare chunk buffers kept for reuse */
#define RS_POOL_BYTES (16u << 20)   /* at most this much capacity kept spare: a
                                     * freed large buffer comes back as fresh
                                     * pages (a page fault each) next time */
#define RS_SHRINK_MIN (64u << 10)   /* a chunk using under half of a buffer larger
                                     * than this is copied into one of its size */

enum { SLOT_QUEUED = 0, SLOT_LOADING, SLOT_DONE };
#define SLOT_DROPPED 1 /* rc of a job dropped without loading */

struct slot {
    cairn_id id;
    int state;
    int rc;           /* CAIRN_OK, a load error, or SLOT_DROPPED */
    char *msg;        /* load error text (malloc'd) */
    cairn_buf buf;
    size_t charged;   /* bytes counted in p->used for this slot */
};

/* A string map (hard link target -> path that got its content). */
struct strmap {
    char **keys, **vals;
    size_t n, cap;
};

struct rs_pipe {
    cairn_repo *r;
    enum cairn_verify verify;
    const struct cairn_snapshot *snap;
    const char *verb;

    pthread_mutex_t mu;
    pthread_cond_t c_work;   /* workers wait for jobs / memory */
    pthread_cond_t c_cons;   /* the consumer waits for items / chunks */
    pthread_cond_t c_space;  /* the walker waits for room in the rings */

    struct slot *slots;
    uint64_t head, fetch, tail, skip_until;
    size_t used, limit, reserve;

    struct rs_item **items;
    uint64_t ihead, itail;

    /* Spare buffers: cairn_repo_load_blob() decodes into the capacity it is
     * given, so reusing them saves a malloc/free and fresh page faults per chunk. */
    cairn_buf pool[RS_POOL];
    int n_pool;
    size_t pool_bytes;       /* capacity of the spare buffers */

    int walker_done, stop;
    /* Waiters, for waking them in batches rather than once per step: the
     * walker is woken when the rings are at most half full, an idle reader
     * when half the memory is free (or whenever the consumer must wait). */
    int walker_waiting, workers_waiting;
    pthread_t walker;
    int walker_started;
    pthread_t *workers;
    int n_workers;

    /* consumer side */
    struct rs_item *cur;
    uint64_t cur_end;
    cairn_buf cur_buf;

    /* walker side */
    struct cairn_tree start_tree;
    int have_start_tree;
    struct rs_item *start_item;
    char *start;             /* normalized start path, "" = root */
    char **globs;
    size_t n_globs;
    char ***gcomp;           /* each glob split at '/' (for pruning) */
    size_t *gncomp;
    unsigned char *gprune;   /* 1 if the glob may be used to prune directories */
    int links_as_copies;
    struct strmap remap;
    struct rs_item *wbatch[RS_BATCH]; /* items not queued yet */
    int n_wbatch;
    size_t wbatch_jobs;
    struct rs_item **pending; /* ancestors not yet queued, by depth */
    size_t n_pending, cap_pending;
};

/* ---- small helpers ---- */

const char *rs_path_problem(const char *path)
{
    const char *c = path, *e;
    if (!path || !*path)
        return "empty path";
    if (*path == '/')
        return "absolute path";
    for (;;) {
        size_t n;
        e = strchr(c, '/');
        n = e ? (size_t)(e - c) : strlen(c);
        if (n == 0)
            return "empty path component";
        if (n == 1 && c[0] == '.')
            return "'.' path component";
        if (n == 2 && c[0] == '.' && c[1] == '.')
            return "'..' path component";
        if (!e)
            return NULL;
        c = e + 1;
    }
}

static void item_free(struct rs_item *it)
{
    if (!it)
        return;
    free(it->path);
    free(it->link);
    free(it->msg);
    cairn_node_free(&it->node);
    free(it);
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

static const char *strmap_get(const struct strmap *m, const char *key)
{
    size_t i;
    if (!m->cap)
        return NULL;
    for (i = str_hash(key) & (m->cap - 1); m->keys[i]; i = (i + 1) & (m->cap - 1))
        if (strcmp(m->keys[i], key) == 0)
            return m->vals[i];
    return NULL;
}

/* Takes ownership of key and val (freed on failure too). */
static int strmap_put(struct strmap *m, char *key, char *val)
{
    size_t i;
    if ((m->n + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64, j;
        char **nk = calloc(ncap, sizeof *nk), **nv = calloc(ncap, sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            free(key);
            free(val);
            return CAIRN_FAILED;
        }
        for (j = 0; j < m->cap; j++) {
            if (!m->keys[j])
                continue;
            for (i = str_hash(m->keys[j]) & (ncap - 1); nk[i]; i = (i + 1) & (ncap - 1))
                ;
            nk[i] = m->keys[j];
            nv[i] = m->vals[j];
        }
        free(m->keys);
        free(m->vals);
        m->keys = nk;
        m->vals = nv;
        m->cap = ncap;
    }
    for (i = str_hash(key) & (m->cap - 1); m->keys[i]; i = (i + 1) & (m->cap - 1))
        ;
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
    return CAIRN_OK;
}

static void strmap_free(struct strmap *m)
{
    size_t i;
    for (i = 0; i < m->cap; i++) {
        free(m->keys[i]);
        free(m->vals[i]);
    }
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* Drops leading "/" and "./" and trailing "/" (a user's way of naming a path). */
static char *normalize_path(const char *s)
{
    size_t n;
    for (;;) {
        if (s[0] == '/')
            s++;
        else if (s[0] == '.' && s[1] == '/')
            s += 2;
        else if (s[0] == '.' && s[1] == 0)
            s++;
        else
            break;
    }
    n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        n--;
    return strndup(s, n);
}

/* ---- selection ---- */

static int glob_match(const rs_pipe *p, const char *path)
{
    size_t i;
    for (i = 0; i < p->n_globs; i++)
        if (fnmatch(p->globs[i], path, FNM_PATHNAME) == 0)
            return 1;
    return 0;
}

/* Whether the entry at `path` is (or will have been) selected by the walk. */
static int path_selected(const rs_pipe *p, const char *path)
{
    if (p->start && *p->start) {
        size_t n = strlen(p->start);
        return strncmp(path, p->start, n) == 0 && (path[n] == 0 || path[n] == '/');
    }
    if (p->n_globs) {
        char *copy = strdup(path), *s;
        int hit = 0;
        if (!copy)
            return 0;
        /* the path itself, then each ancestor directory */
        for (;;) {
            if (glob_match(p, copy)) {
                hit = 1;
                break;
            }
            s = strrchr(copy, '/');
            if (!s)
                break;
            *s = 0;
        }
        free(copy);
        return hit;
    }
    return 1;
}

static int setup_globs(rs_pipe *p, const struct rs_select *sel)
{
    size_t i, j;
    if (!sel->globs || !sel->n_globs)
        return CAIRN_OK;
    for (i = 0; i < sel->n_globs; i++) {
        if (!sel->globs[i])
            continue;
        char *g = normalize_path(sel->globs[i]);
        if (!g)
            return CAIRN_FAILED;
        if (!*g) { /* "/" or "." names the whole snapshot */
            free(g);
            for (j = 0; j < p->n_globs; j++)
                free(p->globs[j]);
            p->n_globs = 0;
            return CAIRN_OK;
        }
        free(g);
    }
    p->globs = calloc(sel->n_globs, sizeof *p->globs);
    p->gcomp = calloc(sel->n_globs, sizeof *p->gcomp);
    p->gncomp = calloc(sel->n_globs, sizeof *p->gncomp);
    p->gprune = calloc(sel->n_globs, 1);
    if (!p->globs || !p->gcomp || !p->gncomp || !p->gprune)
        return CAIRN_FAILED;
    for (i = 0; i < sel->n_globs; i++) {
        char *g, *c;
        size_t n = 1;
        if (!sel->globs[i])
            continue;
        g = normalize_path(sel->globs[i]);
        if (!g)
            return CAIRN_FAILED;
        p->globs[p->n_globs] = g;
        /* Brackets and escapes could hide a '/', so such globs never prune. */
        p->gprune[p->n_globs] = !strpbrk(g, "[\\");
        for (c = g; *c; c++)
            n += *c == '/';
        p->gcomp[p->n_globs] = calloc(n + 1, sizeof(char *));
        c = strdup(g);
        if (!p->gcomp[p->n_globs] || !c) {
            free(c);
            p->n_globs++;
            return CAIRN_FAILED;
        }
        /* gcomp[k][0] owns the copy; the others point into it */
        n = 0;
        p->gcomp[p->n_globs][n++] = c;
        for (; *c; c++) {
            if (*c == '/') {
                *c = 0;
                p->gcomp[p->n_globs][n++] = c + 1;
            }
        }
        p->gncomp[p->n_globs] = n;
        p->n_globs++;
    }
    return CAIRN_OK;
}

/* Which globs may still match something below the directory `name` at
 * `depth` (0 = a child of the root). */
static int child_alive(const rs_pipe *p, const unsigned char *alive, size_t depth,
                       const char *name, unsigned char *out)
{
    size_t i;
    int any = 0;
    for (i = 0; i < p->n_globs; i++) {
        out[i] = 0;
        if (!alive[i])
            continue;
        if (!p->gprune[i])
            out[i] = 1;
        else if (p->gncomp[i] > depth + 1 && fnmatch(p->gcomp[i][depth], name, FNM_PATHNAME) == 0)
            out[i] = 1;
        any |= out[i];
    }
    return any;
}

/* ---- the walker ---- */

static void pipe_stop_locked(rs_pipe *p)
{
    p->stop = 1;
    pthread_cond_broadcast(&p->c_work);
    pthread_cond_broadcast(&p->c_cons);
    pthread_cond_broadcast(&p->c_space);
}

static void space_wait_locked(rs_pipe *p)
{
    /* what was queued so far must be worked on for room to appear */
    pthread_cond_broadcast(&p->c_work);
    pthread_cond_signal(&p->c_cons);
    p->walker_waiting = 1;
    pthread_cond_wait(&p->c_space, &p->mu);
    p->walker_waiting = 0;
}

/* Wakes the walker and the readers if they wait and there is room for them:
 * when the consumer frees something (force = 0: only once the rings or the
 * memory are half free) and before it waits itself (force = 1). */
static void wake_producers_locked(rs_pipe *p, int force)
{
    if (p->walker_waiting &&
        (force || (p->itail - p->ihead <= RS_ITEMS / 2 && p->tail - p->head <= RS_SLOTS / 2))) {
        p->walker_waiting = 0;
        pthread_cond_signal(&p->c_space);
    }
    if (p->workers_waiting && p->fetch < p->tail &&
        (force || p->used == 0 || p->used + p->reserve <= p->limit / 2)) {
        pthread_cond_broadcast(&p->c_work);
    }
}

/* The consumer waits for the pipeline. */
static void cons_wait_locked(rs_pipe *p)
{
    wake_producers_locked(p, 1);
    pthread_cond_wait(&p->c_cons, &p->mu);
}

/* Queues the walker's batch of items and their chunk jobs under one lock.
 * -1 when stopping (the items not queued are freed). */
static int emit_flush(rs_pipe *p)
{
    int k, n_items = p->n_wbatch, stopped;
    size_t jobs = 0;
    if (n_items == 0)
        return p->stop ? -1 : 0;
    p->n_wbatch = 0;
    p->wbatch_jobs = 0;
    pthread_mutex_lock(&p->mu);
    for (k = 0; k < n_items; k++) {
        struct rs_item *it = p->wbatch[k];
        const cairn_id *chunks = it->node.chunks;
        size_t i, n = it->n_jobs;
        while (p->itail - p->ihead >= RS_ITEMS && !p->stop)
            space_wait_locked(p);
        if (p->stop)
            break;
        it->chunk_first = p->tail;
        p->items[p->itail % RS_ITEMS] = it;
        p->itail++;
        p->wbatch[k] = NULL;
        /* From here the consumer may hold the item; it cannot free it before
         * all its jobs are queued and consumed, and we read chunks[] under
         * the lock. */
        for (i = 0; i < n; i++) {
            struct slot *s;
            while (p->tail - p->head >= RS_SLOTS && !p->stop)
                space_wait_locked(p);
            if (p->stop)
                break;
            s = &p->slots[p->tail % RS_SLOTS];
            s->id = chunks[i];
            s->state = SLOT_QUEUED;
            s->rc = CAIRN_OK;
            s->charged = 0;
            p->tail++;
            jobs++;
        }
    }
    if (jobs > 1)
        pthread_cond_broadcast(&p->c_work);
    else if (jobs)
        pthread_cond_signal(&p->c_work);
    pthread_cond_signal(&p->c_cons);
    stopped = p->stop;
    pthread_mutex_unlock(&p->mu);
    for (; k < n_items; k++) {
        item_free(p->wbatch[k]);
        p->wbatch[k] = NULL;
    }
    return stopped ? -1 : 0;
}

/* Queues an item and its chunk jobs (in batches of RS_BATCH items or chunk
 * jobs, so the threads meet once per batch). Takes ownership of it. -1 when
 * stopping. */
static int emit(rs_pipe *p, struct rs_item *it)
{
    p->wbatch[p->n_wbatch++] = it;
    p->wbatch_jobs += it->n_jobs;
    if (p->n_wbatch == RS_BATCH || p->wbatch_jobs >= RS_BATCH)
        return emit_flush(p);
    return 0;
}

static int emit_warn(rs_pipe *p, char *msg)
{
    struct rs_item *it = calloc(1, sizeof *it);
    if (!it || !msg) {
        free(it);
        free(msg);
        return 0; /* out of memory: the warning is lost, the walk goes on */
    }
    it->kind = RS_WARN;
    it->msg = msg;
    return emit(p, it);
}

__attribute__((format(printf, 1, 2))) static char *xasprintf(const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

static int flush_pending(rs_pipe *p)
{
    size_t i;
    for (i = 0; i < p->n_pending; i++) {
        if (p->pending[i]) {
            struct rs_item *it = p->pending[i];
            p->pending[i] = NULL;
            if (emit(p, it) < 0)
                return -1;
        }
    }
    return 0;
}

/* Finds the node at a snapshot-relative path (copied into *out). */
static int resolve_path(cairn_repo *r, const cairn_id *root, const char *path,
                        struct cairn_node *out, cairn_err *err)
{
    cairn_id cur = *root;
    char *copy = strdup(path), *c, *e;
    int rc = CAIRN_OK;
    if (!copy)
        return cairn_error(err, CAIRN_FAILED, "out of memory");
    for (c = copy;; c = e + 1) {
        struct cairn_tree t;
        const struct cairn_node *n;
        e = strchr(c, '/');
        if (e)
            *e = 0;
        if ((rc = cairn_repo_load_tree(r, &cur, &t, err)) != CAIRN_OK)
            break;
        n = cairn_tree_find(&t, c);
        if (!n || (e && n->type != CAIRN_T_DIR)) {
            cairn_tree_free(&t);
            rc = cairn_error(err, CAIRN_NOTFOUND, "'%s' not found in the snapshot", path);
            break;
        }
        if (!e) {
            rc = cairn_node_copy(out, n);
            if (rc != CAIRN_OK)
                cairn_error(err, rc, "out of memory");
            cairn_tree_free(&t);
            break;
        }
        cur = n->subtree;
        cairn_tree_free(&t);
    }
    free(copy);
    return rc;
}

/* Makes the item for a node at path; the node's members are moved into it. */
static struct rs_item *make_item(const char *path, struct cairn_node *n)
{
    struct rs_item *it = calloc(1, sizeof *it);
    if (!it || !(it->path = strdup(path))) {
        free(it);
        return NULL;
    }
    it->kind = RS_ENTRY;
    it->node = *n;
    memset(n, 0, sizeof *n);
    it->n_jobs = it->node.type == CAIRN_T_FILE && !it->node.hardlink ? it->node.n_chunks : 0;
    return it;
}

/* A hard link node: a link item, or the target's content (see pipeline.h).
 * Returns the item to emit, or NULL after emitting a warning. */
static struct rs_item *link_item(rs_pipe *p, const char *path, struct cairn_node *n, int *stop)
{
    const char *target = n->hardlink, *why, *mapped;
    struct rs_item *it;
    struct cairn_node tn;
    cairn_err e;

    *stop = 0;
    if ((why = rs_path_problem(target)) != NULL) {
        *stop = emit_warn(p, xasprintf("cannot %s '%s': refusing hard link target '%s' (%s)",
                                       p->verb, path, target, why)) < 0;
        return NULL;
    }
    if (!p->links_as_copies) {
        if (path_selected(p, target)) {
            char *link = strdup(target);
            it = make_item(path, n);
            if (!it || !link) {
                free(link);
                item_free(it);
                return NULL;
            }
            it->link = link;
            return it;
        }
        if ((mapped = strmap_get(&p->remap, target)) != NULL) {
            char *link = strdup(mapped);
            it = make_item(path, n);
            if (!it || !link) {
                free(link);
                item_free(it);
                return NULL;
            }
            it->link = link;
            return it;
        }
    }
    cairn_err_clear(&e);
    if (resolve_path(p->r, &p->snap->tree, target, &tn, &e) != CAIRN_OK) {
        *stop = emit_warn(p, xasprintf("cannot %s '%s': hard link target '%s': %s", p->verb,
                                       path, target, e.msg)) < 0;
        return NULL;
    }
    if (tn.type != CAIRN_T_FILE || tn.hardlink) {
        cairn_node_free(&tn);
        *stop = emit_warn(p, xasprintf("cannot %s '%s': hard link target '%s' is not a "
                                          "regular file with content",
                                       p->verb, path, target)) < 0;
        return NULL;
    }
    /* The content is the target's; the link's own metadata is the same inode's. */
    free(tn.name);
    tn.name = n->name;
    n->name = NULL;
    if (!p->links_as_copies) {
        /* on failure later links get their own copy of the content */
        char *k = strdup(target), *v = strdup(path);
        if (k && v)
            strmap_put(&p->remap, k, v);
        else {
            free(k);
            free(v);
        }
    }
    it = make_item(path, &tn);
    cairn_node_free(&tn);
    return it;
}

static int walk_tree(rs_pipe *p, struct cairn_tree *t, cairn_buf *path, size_t depth,
                     const unsigned char *alive);

/* Loads a directory's tree and walks it; a tree that cannot be read is a
 * warning and its contents are skipped. */
static int descend(rs_pipe *p, const cairn_id *subtree, cairn_buf *path, size_t depth,
                   const unsigned char *alive)
{
    struct cairn_tree t;
    cairn_err e;
    int rc;
    if (depth >= RS_MAX_DEPTH)
        return emit_warn(p, xasprintf("cannot %s the contents of '%s': directories nested "
                                         "deeper than %d levels",
                                      p->verb, cairn_buf_cstr(path), RS_MAX_DEPTH));
    cairn_err_clear(&e);
    /* the consumer may be waiting for what is batched while the tree loads */
    if (emit_flush(p) < 0)
        return -1;
    if (cairn_repo_load_tree(p->r, subtree, &t, &e) != CAIRN_OK)
        return emit_warn(p, xasprintf("cannot %s the contents of '%s': %s", p->verb,
                                      cairn_buf_cstr(path), e.msg));
    rc = walk_tree(p, &t, path, depth, alive);
    cairn_tree_free(&t);
    return rc;
}

static int walk_tree(rs_pipe *p, struct cairn_tree *t, cairn_buf *path, size_t depth,
                     const unsigned char *alive)
{
    size_t base = path->len, i;
    unsigned char *calive = NULL;
    int rc = 0;

    for (i = 0; i < t->n && rc == 0; i++) {
        struct cairn_node *n = &t->nodes[i];
        struct rs_item *it;
        int is_dir = n->type == CAIRN_T_DIR, stop = 0;
        cairn_id subtree = n->subtree;

        path->len = base;
        if ((base && cairn_buf_putc(path, '/') != CAIRN_OK) ||
            cairn_buf_append(path, n->name, strlen(n->name)) != CAIRN_OK ||
            !cairn_buf_cstr(path)) {
            rc = emit_warn(p, xasprintf("cannot %s '%s': out of memory", p->verb, n->name));
            continue;
        }
        if (!alive || glob_match(p, (const char *)path->data)) {
            if (n->hardlink && n->type == CAIRN_T_FILE) {
                it = link_item(p, (const char *)path->data, n, &stop);
                if (stop) {
                    rc = -1;
                    break;
                }
            } else {
                it = make_item((const char *)path->data, n);
            }
            if (!it)
                continue;
            if (flush_pending(p) < 0 || emit(p, it) < 0) {
                rc = -1;
                break;
            }
            if (is_dir)
                rc = descend(p, &subtree, path, depth + 1, NULL);
            continue;
        }
        if (!is_dir)
            continue;
        if (!calive && !(calive = malloc(p->n_globs))) {
            rc = -1;
            break;
        }
        if (!child_alive(p, alive, depth, n->name, calive))
            continue;
        if (p->n_pending == p->cap_pending) {
            size_t nc = p->cap_pending ? p->cap_pending * 2 : 32;
            struct rs_item **np = realloc(p->pending, nc * sizeof *np);
            if (!np) {
                rc = -1;
                break;
            }
            p->pending = np;
            p->cap_pending = nc;
        }
        it = make_item((const char *)path->data, n);
        if (!it)
            continue;
        p->pending[p->n_pending++] = it;
        rc = descend(p, &subtree, path, depth + 1, calive);
        p->n_pending--;
        item_free(p->pending[p->n_pending]); /* NULL if it was queued */
    }
    free(calive);
    path->len = base;
    return rc;
}

static void *walker_main(void *arg)
{
    rs_pipe *p = arg;
    cairn_buf path = CAIRN_BUF_INIT;

    if (p->start_item) {
        struct rs_item *it = p->start_item;
        int is_dir = it->node.type == CAIRN_T_DIR, stop = 0;
        p->start_item = NULL;
        if (it->node.hardlink && it->node.type == CAIRN_T_FILE) {
            /* a hard link named by itself: its target lies outside */
            struct rs_item *li = link_item(p, it->path, &it->node, &stop);
            item_free(it);
            it = li;
        }
        if (it && cairn_buf_append(&path, it->path, strlen(it->path)) != CAIRN_OK)
            item_free(it);
        else if (it && emit(p, it) == 0 && is_dir && p->have_start_tree)
            walk_tree(p, &p->start_tree, &path, 1, NULL);
    } else {
        unsigned char *alive = NULL;
        if (p->n_globs && (alive = malloc(p->n_globs)) != NULL)
            memset(alive, 1, p->n_globs);
        if (!p->n_globs || alive)
            walk_tree(p, &p->start_tree, &path, 0, alive);
        else
            emit_warn(p, xasprintf("cannot %s: out of memory", p->verb));
        free(alive);
    }
    cairn_buf_free(&path);
    emit_flush(p);
    pthread_mutex_lock(&p->mu);
    p->walker_done = 1;
    pthread_cond_broadcast(&p->c_cons);
    pthread_cond_broadcast(&p->c_work);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- the readers ---- */

/* Called with the lock held. */
static void pool_get_locked(rs_pipe *p, cairn_buf *b)
{
    if (p->n_pool > 0) {
        /* the largest: a load may need up to the largest chunk size */
        int i, best = 0;
        for (i = 1; i < p->n_pool; i++)
            if (p->pool[i].cap > p->pool[best].cap)
                best = i;
        *b = p->pool[best];
        p->pool[best] = p->pool[--p->n_pool];
        p->pool_bytes -= b->cap;
        cairn_buf_reset(b);
    } else {
        cairn_buf_init(b, 0);
    }
}

/* A spare buffer of at least len bytes but less than twice that (or len +
 * RS_SHRINK_MIN), the smallest such; b->data is NULL when there is none.
 * Called with the lock held. */
static void pool_fit_locked(rs_pipe *p, size_t len, cairn_buf *b)
{
    int i, best = -1;
    size_t top = len < RS_SHRINK_MIN ? len + RS_SHRINK_MIN : 2 * len;
    cairn_buf_init(b, 0);
    for (i = 0; i < p->n_pool; i++) {
        size_t cap = p->pool[i].cap;
        if (cap >= len && cap < top && (best < 0 || cap < p->pool[best].cap))
            best = i;
    }
    if (best < 0)
        return;
    *b = p->pool[best];
    p->pool[best] = p->pool[--p->n_pool];
    p->pool_bytes -= b->cap;
    cairn_buf_reset(b);
}

/* Called with the lock held; b is emptied. */
static void pool_put_locked(rs_pipe *p, cairn_buf *b)
{
    if (b->data && p->n_pool < RS_POOL && p->pool_bytes + b->cap <= RS_POOL_BYTES) {
        p->pool_bytes += b->cap;
        p->pool[p->n_pool++] = *b;
        cairn_buf_init(b, 0);
    } else {
        cairn_buf_free(b);
    }
}

static void *worker_main(void *arg)
{
    rs_pipe *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        if (p->fetch < p->tail) {
            uint64_t seq = p->fetch;
            struct slot *s = &p->slots[seq % RS_SLOTS];
            if (seq < p->skip_until) {
                /* its file already failed: drop without reading */
                p->fetch++;
                s->state = SLOT_DONE;
                s->rc = SLOT_DROPPED;
                if (seq == p->head)
                    pthread_cond_signal(&p->c_cons);
                continue;
            }
            if (p->used == 0 || p->used + p->reserve <= p->limit) {
                cairn_id id = s->id;
                cairn_buf b;
                cairn_err e;
                int rc;
                p->fetch++;
                s->state = SLOT_LOADING;
                s->charged = p->reserve;
                p->used += p->reserve;
                pool_get_locked(p, &b);
                pthread_mutex_unlock(&p->mu);

                cairn_err_clear(&e);
                rc = cairn_repo_load_blob_v(p->r, &id, p->verify, &b, &e);
                if (rc > 0) /* not an error code we know: keep it negative */
                    rc = CAIRN_FAILED;
                if (rc != CAIRN_OK) {
                    char hex[CAIRN_HEX_LEN + 1];
                    b.len = 0;
                    if (!e.msg[0]) {
                        cairn_id_hex(&id, hex);
                        cairn_error(&e, rc, "cannot read chunk %s: %s", hex, cairn_rc_name(rc));
                    }
                }

                if (rc == CAIRN_OK && b.cap > RS_SHRINK_MIN && b.len < b.cap / 2) {
                    /* into a spare buffer that fits (its pages are already
                     * mapped), or else one of exactly its size */
                    cairn_buf small;
                    pthread_mutex_lock(&p->mu);
                    pool_fit_locked(p, b.len, &small);
                    pthread_mutex_unlock(&p->mu);
                    if (!small.data)
                        cairn_buf_init(&small, b.len); /* max = len: exact capacity */
                    if (cairn_buf_append(&small, b.data, b.len) == CAIRN_OK) {
                        cairn_buf tmp = b;
                        small.max = 0;
                        b = small;
                        small = tmp;
                    }
                    pthread_mutex_lock(&p->mu);
                    pool_put_locked(p, &small);
                } else {
                    pthread_mutex_lock(&p->mu);
                }
                if (rc != CAIRN_OK)
                    pool_put_locked(p, &b);
                s->buf = b;
                s->rc = rc;
                s->msg = rc != CAIRN_OK ? strdup(e.msg) : NULL;
                p->used = p->used - s->charged + b.cap;
                s->charged = b.cap;
                s->state = SLOT_DONE;
                if (seq == p->head)
                    pthread_cond_signal(&p->c_cons);
                /* room for another load: wake an idle reader only when there is
                 * more than the one job this reader takes next itself */
                if (b.cap < p->reserve && p->tail - p->fetch > 1)
                    pthread_cond_signal(&p->c_work);
                continue;
            }
        }
        p->workers_waiting++;
        pthread_cond_wait(&p->c_work, &p->mu);
        p->workers_waiting--;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- the consumer ---- */

/* Frees the (done) slot at head and moves on. Called with the lock held. */
static void release_head_locked(rs_pipe *p)
{
    struct slot *s = &p->slots[p->head % RS_SLOTS];
    pool_put_locked(p, &s->buf);
    free(s->msg);
    s->msg = NULL;
    p->used -= s->charged;
    s->charged = 0;
    p->head++;
    wake_producers_locked(p, 0);
}

static void drop_rest_locked(rs_pipe *p)
{
    if (p->skip_until < p->cur_end && p->head < p->cur_end) {
        p->skip_until = p->cur_end;
        pthread_cond_broadcast(&p->c_work);
    }
    while (p->head < p->cur_end && !p->stop) {
        struct slot *s;
        if (p->head == p->tail) {
            cons_wait_locked(p);
            continue;
        }
        s = &p->slots[p->head % RS_SLOTS];
        if (p->fetch == p->head) { /* not claimed yet: drop it here */
            p->fetch++;
            s->state = SLOT_DONE;
            s->rc = SLOT_DROPPED;
        }
        if (s->state != SLOT_DONE) {
            cons_wait_locked(p);
            continue;
        }
        release_head_locked(p);
    }
}

struct rs_item *rs_pipe_next(rs_pipe *p)
{
    struct rs_item *old, *it = NULL;
    pthread_mutex_lock(&p->mu);
    drop_rest_locked(p);
    pool_put_locked(p, &p->cur_buf);
    old = p->cur;
    p->cur = NULL;
    while (p->ihead == p->itail && !p->walker_done && !p->stop)
        cons_wait_locked(p);
    if (p->ihead != p->itail && !p->stop) {
        it = p->items[p->ihead % RS_ITEMS];
        p->ihead++;
        p->cur = it;
        p->cur_end = it->chunk_first + it->n_jobs;
        wake_producers_locked(p, 0);
    }
    pthread_mutex_unlock(&p->mu);
    item_free(old);
    return it;
}

int rs_pipe_chunk(rs_pipe *p, const uint8_t **data, size_t *len, cairn_err *err)
{
    struct slot *s;
    int rc;
    pthread_mutex_lock(&p->mu);
    if (!p->cur || p->head >= p->cur_end) {
        pthread_mutex_unlock(&p->mu);
        return RS_END;
    }
    for (;;) {
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return cairn_error(err, CAIRN_FAILED, "restore pipeline stopped");
        }
        if (p->head < p->tail && p->slots[p->head % RS_SLOTS].state == SLOT_DONE)
            break;
        cons_wait_locked(p);
    }
    s = &p->slots[p->head % RS_SLOTS];
    rc = s->rc;
    if (rc == CAIRN_OK) {
        pool_put_locked(p, &p->cur_buf);
        p->cur_buf = s->buf;
        memset(&s->buf, 0, sizeof s->buf);
        *data = p->cur_buf.data;
        *len = p->cur_buf.len;
    } else {
        cairn_error(err, rc == SLOT_DROPPED ? CAIRN_FAILED : rc, "%s",
                    s->msg ? s->msg : "chunk dropped");
    }
    release_head_locked(p);
    if (rc != CAIRN_OK)
        drop_rest_locked(p);
    pthread_mutex_unlock(&p->mu);
    return rc == SLOT_DROPPED ? CAIRN_FAILED : rc;
}

/* ---- start / free ---- */

void rs_pipe_free(rs_pipe *p)
{
    int i;
    size_t j;
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    pipe_stop_locked(p);
    pthread_mutex_unlock(&p->mu);
    if (p->walker_started)
        pthread_join(p->walker, NULL);
    for (i = 0; i < p->n_workers; i++)
        pthread_join(p->workers[i], NULL);
    free(p->workers);
    if (p->slots) {
        for (j = 0; j < RS_SLOTS; j++) {
            cairn_buf_free(&p->slots[j].buf);
            free(p->slots[j].msg);
        }
        free(p->slots);
    }
    if (p->items) {
        for (; p->ihead < p->itail; p->ihead++)
            item_free(p->items[p->ihead % RS_ITEMS]);
        free(p->items);
    }
    item_free(p->cur);
    item_free(p->start_item);
    for (i = 0; i < p->n_wbatch; i++)
        item_free(p->wbatch[i]);
    cairn_buf_free(&p->cur_buf);
    for (i = 0; i < p->n_pool; i++)
        cairn_buf_free(&p->pool[i]);
    cairn_tree_free(&p->start_tree);
    for (j = 0; j < p->n_globs; j++) {
        free(p->globs[j]);
        if (p->gcomp[j])
            free(p->gcomp[j][0]);
        free(p->gcomp[j]);
    }
    free(p->globs);
    free(p->gcomp);
    free(p->gncomp);
    free(p->gprune);
    for (j = 0; j < p->n_pending; j++)
        item_free(p->pending[j]);
    free(p->pending);
    strmap_free(&p->remap);
    free(p->start);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->c_work);
    pthread_cond_destroy(&p->c_cons);
    pthread_cond_destroy(&p->c_space);
    free(p);
}

static int default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 2)
        n = 2;
    if (n > RS_MAX_WORKERS)
        n = RS_MAX_WORKERS;
    return (int)n;
}

static int load_start(rs_pipe *p, cairn_err *err)
{
    int rc;
    if (!*p->start) {
        rc = cairn_repo_load_tree(p->r, &p->snap->tree, &p->start_tree, err);
        if (rc != CAIRN_OK)
            return cairn_error_prefix(err, "cannot read the root tree of snapshot %.12s",
                                      p->snap->id);
        p->have_start_tree = 1;
        return CAIRN_OK;
    }
    {
        struct cairn_node n;
        const char *why = rs_path_problem(p->start);
        if (why)
            return cairn_error(err, CAIRN_NOTFOUND, "'%s' not found in snapshot %.12s (%s)",
                               p->start, p->snap->id, why);
        rc = resolve_path(p->r, &p->snap->tree, p->start, &n, err);
        if (rc == CAIRN_NOTFOUND)
            return cairn_error(err, rc, "'%s' not found in snapshot %.12s", p->start,
                               p->snap->id);
        if (rc != CAIRN_OK)
            return cairn_error_prefix(err, "cannot look up '%s' in snapshot %.12s", p->start,
                                      p->snap->id);
        if (n.type == CAIRN_T_DIR) {
            rc = cairn_repo_load_tree(p->r, &n.subtree, &p->start_tree, err);
            if (rc != CAIRN_OK) {
                cairn_node_free(&n);
                return cairn_error_prefix(err, "cannot read the tree of '%s'", p->start);
            }
            p->have_start_tree = 1;
        }
        p->start_item = make_item(p->start, &n);
        cairn_node_free(&n);
        if (!p->start_item)
            return cairn_error(err, CAIRN_FAILED, "out of memory");
        return CAIRN_OK;
    }
}

int rs_pipe_start(cairn_repo *r, const struct cairn_snapshot *snap,
                  const struct rs_select *sel, int workers, rs_pipe **out, cairn_err *err)
{
    rs_pipe *p = calloc(1, sizeof *p);
    const struct cairn_repo_config *cfg;
    int rc, i;

    *out = NULL;
    if (!p)
        return cairn_error(err, CAIRN_FAILED, "out of memory");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->c_work, NULL);
    pthread_cond_init(&p->c_cons, NULL);
    pthread_cond_init(&p->c_space, NULL);
    p->r = r;
    p->snap = snap;
    p->verb = sel->verb ? sel->verb : "restore";
    p->links_as_copies = sel->links_as_copies;
    p->verify = sel->verify_full ? CAIRN_VERIFY_FULL : CAIRN_VERIFY_FRAME;
    p->limit = RS_BYTES_IN_FLIGHT;
    cfg = cairn_repo_config(r);
    p->reserve = cfg && cfg->chunk_max ? cfg->chunk_max : RS_DEFAULT_RESERVE;
    if (p->reserve > p->limit)
        p->reserve = p->limit;
    p->slots = calloc(RS_SLOTS, sizeof *p->slots);
    p->items = calloc(RS_ITEMS, sizeof *p->items);
    p->start = normalize_path(sel->start ? sel->start : "");
    if (!p->slots || !p->items || !p->start || setup_globs(p, sel) != CAIRN_OK) {
        rs_pipe_free(p);
        return cairn_error(err, CAIRN_FAILED, "out of memory");
    }
    if ((rc = load_start(p, err)) != CAIRN_OK) {
        rs_pipe_free(p);
        return rc;
    }

    if (workers <= 0)
        workers = default_workers();
    if (workers > RS_MAX_WORKERS)
        workers = RS_MAX_WORKERS;
    p->workers = calloc((size_t)workers, sizeof *p->workers);
    if (!p->workers) {
        rs_pipe_free(p);
        return cairn_error(err, CAIRN_FAILED, "out of memory");
    }
    for (i = 0; i < workers; i++) {
        if ((rc = pthread_create(&p->workers[i], NULL, worker_main, p)) != 0)
            break;
        p->n_workers++;
    }
    if (p->n_workers == 0 || pthread_create(&p->walker, NULL, walker_main, p) != 0) {
        rs_pipe_free(p);
        return cairn_error(err, CAIRN_FAILED, "cannot start the reader threads");
    }
    p->walker_started = 1;
    *out = p;
    return CAIRN_OK;
}

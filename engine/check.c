/* engine/check.c — see check.h. */
#define _GNU_SOURCE
#include "check.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "pack.h"
#include "prune.h"

/* ---- a set of ids with one byte of value each ---- */

struct idmap {
    cairn_id *keys;
    uint8_t *vals; /* 0 = empty slot; stored values are v + 1 */
    size_t n, cap;
};

static size_t id_slot(const cairn_id *id, size_t cap)
{
    uint64_t h;
    memcpy(&h, id->b, sizeof h);
    return (size_t)(h & (cap - 1));
}

static int idmap_get(const struct idmap *m, const cairn_id *id)
{
    size_t i;
    if (!m->cap)
        return -1;
    for (i = id_slot(id, m->cap); m->vals[i]; i = (i + 1) & (m->cap - 1))
        if (memcmp(m->keys[i].b, id->b, CAIRN_ID_LEN) == 0)
            return m->vals[i] - 1;
    return -1;
}

static int idmap_set(struct idmap *m, const cairn_id *id, int v)
{
    size_t i;
    if ((m->n + 1) * 2 > m->cap) {
        struct idmap nm;
        size_t k;
        nm.cap = m->cap ? m->cap * 2 : 256;
        nm.n = 0;
        nm.keys = calloc(nm.cap, sizeof *nm.keys);
        nm.vals = calloc(nm.cap, 1);
        if (!nm.keys || !nm.vals) {
            free(nm.keys);
            free(nm.vals);
            return CAIRN_FATAL;
        }
        for (k = 0; k < m->cap; k++)
            if (m->vals[k]) {
                for (i = id_slot(&m->keys[k], nm.cap); nm.vals[i]; i = (i + 1) & (nm.cap - 1))
                    ;
                nm.keys[i] = m->keys[k];
                nm.vals[i] = m->vals[k];
                nm.n++;
            }
        free(m->keys);
        free(m->vals);
        *m = nm;
    }
    for (i = id_slot(id, m->cap); m->vals[i]; i = (i + 1) & (m->cap - 1))
        if (memcmp(m->keys[i].b, id->b, CAIRN_ID_LEN) == 0) {
            m->vals[i] = (uint8_t)(v + 1);
            return CAIRN_OK;
        }
    m->keys[i] = *id;
    m->vals[i] = (uint8_t)(v + 1);
    m->n++;
    return CAIRN_OK;
}

static void idmap_free(struct idmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- the check ---- */

enum { PACK_OK = 0, PACK_BAD = 1, PACK_MISSING = 2 };
enum { TREE_CLEAN = 0, TREE_BAD = 1 };

struct check {
    cairn_repo *r;
    cairn_check_report_fn report;
    void *arg;
    struct cairn_check_result *res;
    struct idmap store_packs; /* packs present in the store: size check done */
    struct idmap pack_state;  /* catalog packs: PACK_* */
    struct idmap bad_blobs;   /* blob -> 1 */
    struct idmap trees;       /* tree -> TREE_* */
    cairn_err *err;
};

static void say(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct check *c, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->report)
        c->report(c->arg, msg);
}

static void problem(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct check *c, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->res->problems++;
    if (c->report)
        c->report(c->arg, msg);
}

struct store_pack {
    cairn_id id;
    uint64_t size;
};

struct store_pack_list {
    struct check *c;
    struct store_pack *v;
    size_t n, cap;
};

static int sp_cmp(const void *a, const void *b)
{
    return memcmp(a, b, CAIRN_ID_LEN);
}

static int collect_store_pack(void *arg, const char *key, uint64_t size)
{
    struct store_pack_list *l = arg;
    const char *slash = strrchr(key, '/');
    cairn_id id;
    if (!slash || cairn_id_parse(slash + 1, &id) != CAIRN_OK)
        return 0;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 256;
        struct store_pack *nv = realloc(l->v, ncap * sizeof *nv);
        if (!nv)
            return 1;
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n].id = id;
    l->v[l->n].size = size;
    l->n++;
    return 0;
}

struct cat_pack_ctx {
    struct check *c;
    struct store_pack_list *sl;
};

static int check_cat_pack(void *arg, const cairn_id *pack, uint64_t size)
{
    struct cat_pack_ctx *x = arg;
    struct check *c = x->c;
    char hex[CAIRN_HEX_LEN + 1];
    int idx = idmap_get(&c->store_packs, pack);
    cairn_id_hex(pack, hex);
    c->res->packs++;
    if (idx < 0) {
        problem(c, "pack %s is missing from the repository", hex);
        idmap_set(&c->pack_state, pack, PACK_MISSING);
        return 0;
    }
    {
        const struct store_pack *sp = bsearch(pack, x->sl->v, x->sl->n, sizeof *x->sl->v, sp_cmp);
        if (sp && sp->size != size) {
            problem(c, "pack %s has %llu bytes, the index says %llu (truncated or damaged)", hex,
                    (unsigned long long)sp->size, (unsigned long long)size);
            idmap_set(&c->pack_state, pack, PACK_BAD);
            return 0;
        }
    }
    idmap_set(&c->pack_state, pack, PACK_OK);
    return 0;
}

/* Verifies every object under prefix hashes to its name and parses. */
struct obj_list {
    char **names;
    size_t n, cap;
};

static int collect_obj(void *arg, const char *key, uint64_t size)
{
    struct obj_list *l = arg;
    (void)size;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        char **p = realloc(l->names, ncap * sizeof *p);
        if (!p)
            return 1;
        l->names = p;
        l->cap = ncap;
    }
    l->names[l->n] = strdup(key);
    if (!l->names[l->n])
        return 1;
    l->n++;
    return 0;
}

static int noop_pack(void *arg, const struct cairn_index_pack *p)
{
    (void)arg;
    (void)p;
    return 0;
}

static int check_objects(struct check *c, const char *prefix, int is_index)
{
    struct obj_list l;
    cairn_buf b = CAIRN_BUF_INIT;
    size_t i;
    int rc;
    memset(&l, 0, sizeof l);
    rc = cairn_store_list(cairn_repo_store(c->r), prefix, collect_obj, &l, c->err);
    for (i = 0; rc == CAIRN_OK && i < l.n; i++) {
        const char *name = l.names[i] + strlen(prefix);
        char hex[CAIRN_HEX_LEN + 1];
        cairn_id oid;
        cairn_err e;
        int grc = cairn_store_get(cairn_repo_store(c->r), l.names[i], &b,
                                  is_index ? CAIRN_INDEX_MAX_STORED : CAIRN_SNAPSHOT_MAX, &e);
        if (grc == CAIRN_NOTFOUND)
            continue;
        if (grc != CAIRN_OK) {
            problem(c, "cannot read '%s': %s", l.names[i], e.msg);
            continue;
        }
        cairn_repo_object_id(c->r, b.data, b.len, &oid);
        cairn_id_hex(&oid, hex);
        if (strcmp(hex, name) != 0) {
            problem(c, "%s '%s' is damaged (its content does not match its name)",
                    is_index ? "index" : "snapshot", l.names[i]);
            continue;
        }
        if (is_index) {
            if (cairn_index_parse(b.data, b.len, noop_pack, NULL, &e) != CAIRN_OK)
                problem(c, "index '%s' is damaged: %s", l.names[i], e.msg);
        } else {
            struct cairn_snapshot *s;
            if (cairn_snapshot_parse(name, b.data, b.len, &s, &e) != CAIRN_OK)
                problem(c, "snapshot '%s' is damaged: %s", l.names[i], e.msg);
            else
                cairn_snapshot_free(s);
        }
    }
    for (i = 0; i < l.n; i++)
        free(l.names[i]);
    free(l.names);
    cairn_buf_free(&b);
    return rc;
}

/* ---- read-data ---- */

struct blob_ctx {
    struct check *c;
    const cairn_buf *pack;
    const char *packhex;
    cairn_buf out;
    int bad;
};

static int verify_blob(void *arg, const cairn_id *blob, const struct cairn_blob_loc *loc)
{
    struct blob_ctx *x = arg;
    cairn_err e;
    cairn_id got;
    char bhex[CAIRN_HEX_LEN + 1];
    int ok = 0;
    x->c->res->blobs_read++;
    if (loc->offset + loc->stored_len <= x->pack->len &&
        cairn_blob_decode(x->pack->data + loc->offset, loc->stored_len, loc->flags,
                          loc->raw_len, &x->out, &e) == CAIRN_OK) {
        cairn_repo_hash(x->c->r, x->out.data, x->out.len, &got);
        ok = memcmp(got.b, blob->b, CAIRN_ID_LEN) == 0;
    }
    if (!ok) {
        cairn_id_hex(blob, bhex);
        if (!x->bad)
            problem(x->c, "pack %s is damaged: blob %.16s at offset %llu fails verification",
                    x->packhex, bhex, (unsigned long long)loc->offset);
        x->bad++;
        idmap_set(&x->c->bad_blobs, blob, 1);
    }
    return 0;
}

/* ---- which packs a data read covers ---- */

int cairn_check_parse_subset(const char *spec, struct cairn_check_opts *o, cairn_err *err)
{
    const char *slash = strchr(spec, '/');
    size_t len = strlen(spec);
    char *end;
    memset(o, 0, sizeof *o);
    o->read_data = 1;
    if (slash) {
        unsigned long n, m;
        if (!isdigit((unsigned char)spec[0]) || !isdigit((unsigned char)slash[1]))
            goto bad;
        errno = 0;
        n = strtoul(spec, &end, 10);
        if (errno || end != slash)
            goto bad;
        m = strtoul(slash + 1, &end, 10);
        if (errno || *end)
            goto bad;
        if (m < 1 || m > 1000000 || n < 1 || n > m)
            return cairn_error(err, CAIRN_FAILED,
                               "--read-data-subset '%s': N/M needs 1 <= N <= M <= 1000000 "
                               "(e.g. 1/7 on Monday, 2/7 on Tuesday, ...)",
                               spec);
        o->subset = CAIRN_CHECK_BUCKET;
        o->n = (uint32_t)n;
        o->m = (uint32_t)m;
        return CAIRN_OK;
    }
    if (len > 1 && spec[len - 1] == '%') {
        double p;
        if (!isdigit((unsigned char)spec[0]))
            goto bad;
        errno = 0;
        p = strtod(spec, &end);
        if (errno || end != spec + len - 1)
            goto bad;
        if (!(p > 0 && p <= 100))
            return cairn_error(err, CAIRN_FAILED,
                               "--read-data-subset '%s': a percentage must be above 0 and at "
                               "most 100",
                               spec);
        o->subset = CAIRN_CHECK_PERCENT;
        o->percent = p;
        return CAIRN_OK;
    }
    if (isdigit((unsigned char)spec[0]) && cairn_parse_size(spec, &o->bytes, err) == CAIRN_OK) {
        if (!o->bytes)
            return cairn_error(err, CAIRN_FAILED,
                               "--read-data-subset '%s': the size must be above 0", spec);
        o->subset = CAIRN_CHECK_BYTES;
        return CAIRN_OK;
    }
bad:
    return cairn_error(err, CAIRN_FAILED,
                       "--read-data-subset '%s' is not N/M (e.g. 2/7), a percentage (e.g. "
                       "10%%) or a size (e.g. 500M)",
                       spec);
}

static int in_bucket(const cairn_id *id, uint32_t n, uint32_t m)
{
    uint32_t v = (uint32_t)id->b[0] << 24 | (uint32_t)id->b[1] << 16 |
                 (uint32_t)id->b[2] << 8 | id->b[3];
    return v % m == n - 1;
}

/* Marks in pick[] the indexed packs of sl the options ask for. */
static int pick_packs(struct check *c, const struct store_pack_list *sl,
                      const struct cairn_check_opts *o, unsigned char *pick)
{
    size_t i, n = 0, *order, want;
    uint64_t total = 0;
    if (o->subset == CAIRN_CHECK_ALL || o->subset == CAIRN_CHECK_BUCKET) {
        for (i = 0; i < sl->n; i++)
            pick[i] = idmap_get(&c->pack_state, &sl->v[i].id) >= 0 &&
                      (o->subset == CAIRN_CHECK_ALL || in_bucket(&sl->v[i].id, o->n, o->m));
        return CAIRN_OK;
    }
    /* a random order of the indexed packs (Fisher-Yates) */
    if (!(order = malloc((sl->n ? sl->n : 1) * sizeof *order)))
        return cairn_error(c->err, CAIRN_FATAL, "out of memory choosing packs to read");
    for (i = 0; i < sl->n; i++)
        if (idmap_get(&c->pack_state, &sl->v[i].id) >= 0)
            order[n++] = i;
    for (i = n; i > 1; i--) {
        uint64_t r;
        size_t j, t;
        cairn_random(&r, sizeof r);
        j = (size_t)(r % i);
        t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    if (o->subset == CAIRN_CHECK_PERCENT) {
        double w = (double)n * o->percent / 100.0;
        want = (size_t)w;
        if ((double)want < w)
            want++;
        for (i = 0; i < want && i < n; i++)
            pick[order[i]] = 1;
    } else {
        for (i = 0; i < n; i++)
            if (sl->v[order[i]].size <= o->bytes - total) {
                pick[order[i]] = 1;
                total += sl->v[order[i]].size;
            }
    }
    free(order);
    return CAIRN_OK;
}

static int read_data(struct check *c, struct store_pack_list *sl,
                     const struct cairn_check_opts *o)
{
    cairn_buf b = CAIRN_BUF_INIT;
    unsigned char *pick = calloc(sl->n ? sl->n : 1, 1);
    size_t i;
    if (!pick)
        return cairn_error(c->err, CAIRN_FATAL, "out of memory choosing packs to read");
    if (pick_packs(c, sl, o, pick) != CAIRN_OK) {
        free(pick);
        return CAIRN_FATAL;
    }
    for (i = 0; i < sl->n; i++) {
        const cairn_id *pack = &sl->v[i].id;
        char key[128], hex[CAIRN_HEX_LEN + 1];
        struct blob_ctx x;
        cairn_err e;
        int rc;
        if (!pick[i])
            continue; /* not asked for, or not indexed: nothing refers to it */
        cairn_pack_key(pack, key, sizeof key);
        cairn_id_hex(pack, hex);
        c->res->packs_read++;
        rc = cairn_store_get(cairn_repo_store(c->r), key, &b, (size_t)1 << 30, &e);
        if (rc != CAIRN_OK) {
            problem(c, "cannot read pack %s: %s", hex, e.msg);
            idmap_set(&c->pack_state, pack, PACK_BAD);
            continue;
        }
        c->res->bytes_read += b.len;
        {
            struct cairn_pack_entry *es = NULL;
            size_t n = 0, need = 0;
            if (cairn_pack_parse_trailer(b.data, b.len, b.len, &es, &n, &need, &e) != CAIRN_OK)
                problem(c, "pack %s is damaged: %s", hex, e.msg);
            free(es);
        }
        memset(&x, 0, sizeof x);
        x.c = c;
        x.pack = &b;
        x.packhex = hex;
        rc = cairn_catalog_pack_blobs(cairn_repo_catalog(c->r), pack, verify_blob, &x, c->err);
        cairn_buf_free(&x.out);
        if (rc != CAIRN_OK) {
            cairn_buf_free(&b);
            free(pick);
            return rc;
        }
        /* the pack was read: damage is now known blob by blob */
        idmap_set(&c->pack_state, pack, PACK_OK);
    }
    cairn_buf_free(&b);
    free(pick);
    return CAIRN_OK;
}

/* ---- trees ---- */

/* Is this blob usable? Reports nothing; returns a reason or NULL. */
static const char *blob_problem(struct check *c, const cairn_id *id, char *packhex)
{
    struct cairn_blob_loc loc;
    cairn_err e;
    int st;
    packhex[0] = 0;
    if (cairn_catalog_find_blob(cairn_repo_catalog(c->r), id, &loc, &e) != CAIRN_OK)
        return "is not in any index";
    cairn_id_hex(&loc.pack, packhex);
    if (idmap_get(&c->bad_blobs, id) == 1)
        return "is damaged in pack";
    st = idmap_get(&c->pack_state, &loc.pack);
    if (st == PACK_MISSING)
        return "is in missing pack";
    if (st == PACK_BAD)
        return "is in damaged pack";
    return NULL;
}

/* Returns TREE_CLEAN or TREE_BAD (memoized). */
static int check_tree(struct check *c, const cairn_id *tree, const char *path)
{
    struct cairn_tree t;
    cairn_err e;
    size_t i, k;
    int memo = idmap_get(&c->trees, tree), state = TREE_CLEAN;
    char packhex[CAIRN_HEX_LEN + 1], thex[CAIRN_HEX_LEN + 1];
    if (memo >= 0)
        return memo;
    c->res->trees++;
    if (blob_problem(c, tree, packhex) != NULL) {
        idmap_set(&c->trees, tree, TREE_BAD);
        return TREE_BAD;
    }
    if (cairn_repo_load_tree(c->r, tree, &t, &e) != CAIRN_OK) {
        cairn_id_hex(tree, thex);
        problem(c, "tree %.16s ('%s') cannot be read: %s", thex, *path ? path : ".", e.msg);
        idmap_set(&c->trees, tree, TREE_BAD);
        return TREE_BAD;
    }
    for (i = 0; i < t.n; i++) {
        const struct cairn_node *n = &t.nodes[i];
        if (n->type == CAIRN_T_DIR) {
            char *p = *path ? cairn_path_join(path, n->name) : strdup(n->name);
            if (check_tree(c, &n->subtree, p ? p : n->name) == TREE_BAD)
                state = TREE_BAD;
            free(p);
        } else if (n->type == CAIRN_T_FILE) {
            c->res->files++;
            for (k = 0; k < n->n_chunks; k++)
                if (blob_problem(c, &n->chunks[k], packhex)) {
                    state = TREE_BAD;
                    break;
                }
        }
    }
    cairn_tree_free(&t);
    idmap_set(&c->trees, tree, state);
    return state;
}

/* Names the files of a bad tree. */
static void report_tree(struct check *c, const char *snap, const cairn_id *tree,
                        const char *path)
{
    struct cairn_tree t;
    cairn_err e;
    size_t i, k;
    char packhex[CAIRN_HEX_LEN + 1];
    const char *why;
    if (idmap_get(&c->trees, tree) != TREE_BAD)
        return;
    if ((why = blob_problem(c, tree, packhex)) != NULL ||
        cairn_repo_load_tree(c->r, tree, &t, &e) != CAIRN_OK) {
        say(c, "  snapshot %.12s: directory '%s' is unreadable (its listing %s%s%.16s)", snap,
            *path ? path : ".", why ? why : "cannot be decoded", *packhex ? " " : "", packhex);
        c->res->affected_files++;
        return;
    }
    for (i = 0; i < t.n; i++) {
        const struct cairn_node *n = &t.nodes[i];
        char *p = *path ? cairn_path_join(path, n->name) : strdup(n->name);
        if (!p)
            break;
        if (n->type == CAIRN_T_DIR) {
            report_tree(c, snap, &n->subtree, p);
        } else if (n->type == CAIRN_T_FILE) {
            for (k = 0; k < n->n_chunks; k++)
                if ((why = blob_problem(c, &n->chunks[k], packhex)) != NULL) {
                    say(c, "  snapshot %.12s: file '%s' is damaged (a chunk %s%s%s)", snap, p,
                        why, *packhex ? " " : "", packhex);
                    c->res->affected_files++;
                    break;
                }
        }
        free(p);
    }
    cairn_tree_free(&t);
}

struct snap_list {
    char (*ids)[CAIRN_HEX_LEN + 1];
    size_t n, cap;
};

static int collect_snap(void *arg, const struct cairn_snaprow *row)
{
    struct snap_list *l = arg;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 32;
        void *p = realloc(l->ids, ncap * sizeof *l->ids);
        if (!p)
            return 1;
        l->ids = p;
        l->cap = ncap;
    }
    memcpy(l->ids[l->n++], row->id, CAIRN_HEX_LEN + 1);
    return 0;
}

int cairn_check(cairn_repo *r, int read_data_flag, cairn_check_report_fn report, void *arg,
                struct cairn_check_result *res, cairn_err *err)
{
    struct cairn_check_opts o;
    memset(&o, 0, sizeof o);
    o.read_data = read_data_flag;
    return cairn_check_opts(r, &o, report, arg, res, err);
}

int cairn_check_opts(cairn_repo *r, const struct cairn_check_opts *o,
                     cairn_check_report_fn report, void *arg, struct cairn_check_result *res,
                     cairn_err *err)
{
    struct check c;
    struct store_pack_list sl;
    struct cat_pack_ctx cp;
    struct snap_list snaps;
    size_t i;
    int rc;
    memset(&c, 0, sizeof c);
    memset(&sl, 0, sizeof sl);
    memset(&snaps, 0, sizeof snaps);
    memset(res, 0, sizeof *res);
    c.r = r;
    c.report = report;
    c.arg = arg;
    c.res = res;
    c.err = err;
    sl.c = &c;

    /* objects named by their hash */
    if ((rc = check_objects(&c, "index/", 1)) != CAIRN_OK)
        goto out;
    if ((rc = check_objects(&c, "snapshots/", 0)) != CAIRN_OK)
        goto out;
    /* packs: store vs indexes */
    if ((rc = cairn_store_list(cairn_repo_store(r), "data/", collect_store_pack, &sl, err)) !=
        CAIRN_OK)
        goto out;
    if (sl.n > 1)
        qsort(sl.v, sl.n, sizeof *sl.v, sp_cmp);
    for (i = 0; i < sl.n; i++)
        idmap_set(&c.store_packs, &sl.v[i].id, 1);
    cp.c = &c;
    cp.sl = &sl;
    if ((rc = cairn_catalog_list_packs(cairn_repo_catalog(r), check_cat_pack, &cp, err)) !=
        CAIRN_OK)
        goto out;
    for (i = 0; i < sl.n; i++)
        if (idmap_get(&c.pack_state, &sl.v[i].id) < 0)
            res->unindexed_packs++;
    if (o && o->read_data && (rc = read_data(&c, &sl, o)) != CAIRN_OK)
        goto out;
    /* snapshots and their trees */
    if ((rc = cairn_catalog_list_snapshots(cairn_repo_catalog(r), NULL, collect_snap, &snaps,
                                           err)) != CAIRN_OK)
        goto out;
    for (i = 0; i < snaps.n; i++) {
        struct cairn_snapshot *s;
        cairn_err e;
        res->snapshots++;
        if (cairn_repo_snapshot_get(r, snaps.ids[i], NULL, &s, &e) != CAIRN_OK) {
            problem(&c, "snapshot %s cannot be read: %s", snaps.ids[i], e.msg);
            continue;
        }
        check_tree(&c, &s->tree, "");
        cairn_snapshot_free(s);
    }
    /* name what the damage affects */
    if (res->problems) {
        for (i = 0; i < snaps.n; i++) {
            struct cairn_snapshot *s;
            cairn_err e;
            if (cairn_repo_snapshot_get(r, snaps.ids[i], NULL, &s, &e) != CAIRN_OK)
                continue;
            if (idmap_get(&c.trees, &s->tree) == TREE_BAD) {
                say(&c, "snapshot %s (%s) is affected:", s->id, s->source);
                report_tree(&c, s->id, &s->tree, "");
            }
            cairn_snapshot_free(s);
        }
    }
    rc = CAIRN_OK;
out:
    free(sl.v);
    free(snaps.ids);
    idmap_free(&c.store_packs);
    idmap_free(&c.pack_state);
    idmap_free(&c.bad_blobs);
    idmap_free(&c.trees);
    return rc;
}

/* engine/prune.c — see prune.h. */
#define _GNU_SOURCE
#include "prune.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "lock.h"
#include "pack.h"

#define NS 1000000000LL
#define INDEX_PACKS 16         /* packs per new index object, as backups write them */
#define INDEX_MAX_ENTRIES 65536   /* an index is built in memory (jansson): bound it */
#define PACK_MAX_ENTRIES 32768
#define DEL_BATCH 100

/* ===================================================================== */
/* forget                                                                */
/* ===================================================================== */

struct snap {
    char id[CAIRN_HEX_LEN + 1];
    int64_t time_ns;
    char *source, *hostname, *tags_csv;
    char **tags;
    size_t n_tags;
    int named; /* ids mode: to be removed */
};

struct snap_vec {
    struct snap *v;
    size_t n, cap;
    int oom;
};

static void snap_free(struct snap *s)
{
    size_t i;
    free(s->source);
    free(s->hostname);
    free(s->tags_csv);
    for (i = 0; i < s->n_tags; i++)
        free(s->tags[i]);
    free(s->tags);
}

static void snap_vec_free(struct snap_vec *sv)
{
    size_t i;
    for (i = 0; i < sv->n; i++)
        snap_free(&sv->v[i]);
    free(sv->v);
    memset(sv, 0, sizeof *sv);
}

/* Tags from the manifest (exact strings; the catalog's CSV is for display). */
static int snap_tags(struct snap *s, const char *manifest)
{
    json_t *m = json_loads(manifest, 0, NULL), *tags = json_object_get(m, "tags");
    size_t i, n = json_array_size(tags);
    int rc = 0;
    if (n) {
        s->tags = calloc(n, sizeof *s->tags);
        if (!s->tags)
            rc = -1;
        for (i = 0; !rc && i < n; i++) {
            const char *t = json_string_value(json_array_get(tags, i));
            if (!t)
                continue;
            if (!(s->tags[s->n_tags] = strdup(t)))
                rc = -1;
            else
                s->n_tags++;
        }
    }
    json_decref(m);
    return rc;
}

static int collect_snap(void *arg, const struct cairn_snaprow *row)
{
    struct snap_vec *sv = arg;
    struct snap *s;
    if (sv->n == sv->cap) {
        size_t ncap = sv->cap ? sv->cap * 2 : 64;
        struct snap *nv = realloc(sv->v, ncap * sizeof *nv);
        if (!nv) {
            sv->oom = 1;
            return 1;
        }
        sv->v = nv;
        sv->cap = ncap;
    }
    s = &sv->v[sv->n];
    memset(s, 0, sizeof *s);
    memcpy(s->id, row->id, sizeof s->id);
    s->time_ns = row->time_ns;
    s->source = strdup(row->source ? row->source : "");
    s->hostname = strdup(row->hostname ? row->hostname : "");
    s->tags_csv = strdup(row->tags ? row->tags : "");
    sv->n++;
    if (!s->source || !s->hostname || !s->tags_csv || snap_tags(s, row->manifest) != 0) {
        sv->oom = 1;
        return 1;
    }
    return 0;
}

/* By source, then newest first. */
static int snap_cmp(const void *a, const void *b)
{
    const struct snap *x = a, *y = b;
    int c = strcmp(x->source, y->source);
    if (c)
        return c;
    if (x->time_ns != y->time_ns)
        return x->time_ns > y->time_ns ? -1 : 1;
    return -strcmp(x->id, y->id);
}

static int remove_snapshot(cairn_repo *r, const char *id, cairn_err *err)
{
    char key[128];
    int rc;
    snprintf(key, sizeof key, "snapshots/%s", id);
    rc = cairn_store_del(cairn_repo_store(r), key, err);
    if (rc == CAIRN_NOTFOUND)
        rc = CAIRN_OK;
    if (rc == CAIRN_OK)
        rc = cairn_catalog_remove_snapshot(cairn_repo_catalog(r), id, err);
    if (rc != CAIRN_OK)
        cairn_error_prefix(err, "cannot remove snapshot %.12s", id);
    return rc;
}

/* Decides, reports and removes for snapshots s[0..n) of one source. */
static int forget_group(cairn_repo *r, const struct cairn_forget_opts *o, struct snap *s,
                        size_t n, int64_t now, struct cairn_forget_result *res, cairn_err *err)
{
    struct cairn_policy_snap *ps = calloc(n ? n : 1, sizeof *ps);
    struct cairn_policy_result *pres = calloc(n ? n : 1, sizeof *pres);
    struct cairn_forget_item *items = calloc(n ? n : 1, sizeof *items);
    struct cairn_forget_group g;
    struct cairn_forget_item kept_one;
    const struct cairn_forget_item *oldest_kept = NULL, *deferred = NULL;
    size_t i, k = 0;
    int rc = CAIRN_OK;
    memset(&g, 0, sizeof g);
    if (!ps || !pres || !items) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    if (o->n_ids) {
        for (i = 0; i < n; i++)
            pres[i].keep = !s[i].named;
    } else {
        for (i = 0; i < n; i++) {
            ps[i].id = s[i].id;
            ps[i].time_ns = s[i].time_ns;
            ps[i].tags = (const char *const *)s[i].tags;
            ps[i].n_tags = s[i].n_tags;
        }
        if ((rc = cairn_policy_apply(o->policy, ps, n, now, pres, err)) != CAIRN_OK)
            goto out;
    }
    /* s[] is newest first already; in ids mode only the named ones are listed */
    for (i = 0; i < n; i++) {
        if (o->n_ids && !s[i].named)
            continue;
        memcpy(items[k].id, s[i].id, sizeof items[k].id);
        items[k].time_ns = s[i].time_ns;
        items[k].hostname = s[i].hostname;
        items[k].tags = s[i].tags_csv;
        items[k].decision = pres[i];
        if (pres[i].keep)
            g.n_keep++;
        else
            g.n_remove++;
        k++;
    }
    g.source = s[0].source;
    g.items = items;
    g.n = k;
    if (!o->n_ids && g.n_keep == 0 && !cairn_policy_has_rules(o->policy))
        g.refused = "no snapshot of this source has one of the keep tags; refusing to remove "
                    "them all (add a --keep-last/--keep-daily/... rule)";
    if (o->report)
        o->report(o->report_arg, &g);
    res->groups++;
    if (g.refused) {
        res->refused_groups++;
        res->kept += g.n;
        goto out;
    }
    res->kept += g.n_keep;
    for (i = 0; i < k; i++) {
        if (items[i].decision.keep) {
            oldest_kept = &items[i]; /* newest first: the last one seen is the oldest */
            continue;
        }
        if (!o->dry_run && o->before_remove) {
            rc = o->before_remove(o->before_remove_arg, r, items[i].id, err);
            if (rc == CAIRN_RETRY) {
                rc = CAIRN_OK;
                res->deferred++;
                res->kept++;
                oldest_kept = deferred = &items[i];
                continue;
            }
            if (rc != CAIRN_OK)
                goto out;
        }
        if (!o->dry_run && (rc = remove_snapshot(r, items[i].id, err)) != CAIRN_OK)
            goto out;
        res->removed++;
    }
    if (o->n_ids) { /* the oldest kept of the whole source */
        oldest_kept = NULL;
        for (i = n; i-- > 0;)
            if (!s[i].named) {
                memcpy(kept_one.id, s[i].id, sizeof kept_one.id);
                kept_one.time_ns = s[i].time_ns;
                oldest_kept = &kept_one;
                break;
            }
        if (deferred && (!oldest_kept || deferred->time_ns < oldest_kept->time_ns))
            oldest_kept = deferred; /* a deferred one is kept too */
    }
    if (o->log_retention) {
        rc = o->log_retention(o->log_retention_arg, r, g.source,
                              oldest_kept ? oldest_kept->id : NULL,
                              oldest_kept ? oldest_kept->time_ns : 0, o->dry_run, err);
        if (rc != CAIRN_OK)
            cairn_error_prefix(err, "log retention for source '%s'", g.source);
    }
out:
    free(ps);
    free(pres);
    free(items);
    return rc;
}

int cairn_forget(cairn_repo *r, const struct cairn_forget_opts *o,
                 struct cairn_forget_result *res, cairn_err *err)
{
    struct snap_vec sv;
    cairn_catalog *cat = cairn_repo_catalog(r);
    int64_t now = o->now_ns ? o->now_ns : cairn_now_ns();
    size_t i, start;
    int rc;
    memset(res, 0, sizeof *res);
    memset(&sv, 0, sizeof sv);
    if (!o->n_ids && (!o->policy || cairn_policy_is_empty(o->policy)))
        return cairn_error(err, CAIRN_FAILED,
                           "refusing to forget without a keep rule: it would remove every "
                           "snapshot (give --keep-last, --keep-hourly, --keep-daily, "
                           "--keep-weekly, --keep-monthly, --keep-yearly, --keep-within or "
                           "--keep-tag)");
    if (o->n_ids && o->policy && !cairn_policy_is_empty(o->policy))
        return cairn_error(err, CAIRN_FAILED,
                           "give either snapshot ids or keep rules to forget, not both");
    rc = cairn_catalog_list_snapshots(cat, o->n_ids ? NULL : o->source, collect_snap, &sv, err);
    if (rc == CAIRN_OK && sv.oom)
        rc = cairn_error(err, CAIRN_FATAL, "out of memory listing snapshots");
    if (rc != CAIRN_OK)
        goto out;
    /* ids mode: resolve every id first, so a typo removes nothing */
    for (i = 0; i < o->n_ids; i++) {
        struct cairn_snaprow row;
        size_t k;
        memset(&row, 0, sizeof row);
        if (strcmp(o->ids[i], "latest") == 0) {
            rc = cairn_error(err, CAIRN_FAILED, "give snapshot ids to forget, not 'latest'");
            goto out;
        }
        rc = cairn_catalog_get_snapshot(cat, o->ids[i], NULL, &row, err);
        if (rc != CAIRN_OK) {
            if (rc == CAIRN_NOTFOUND)
                cairn_error(err, rc, "no snapshot '%s' in the repository", o->ids[i]);
            goto out;
        }
        for (k = 0; k < sv.n; k++) {
            size_t t;
            if (strcmp(sv.v[k].id, row.id) != 0)
                continue;
            for (t = 0; t < sv.v[k].n_tags; t++)
                if (strcmp(sv.v[k].tags[t], CAIRN_KEEP_TAG) == 0) {
                    rc = cairn_error(err, CAIRN_FAILED,
                                     "snapshot %.12s is pinned (tag '%s'); to remove it, "
                                     "first run 'cairn tag %.12s --remove %s'",
                                     row.id, CAIRN_KEEP_TAG, row.id, CAIRN_KEEP_TAG);
                    cairn_snaprow_free(&row);
                    goto out;
                }
            sv.v[k].named = 1;
        }
        cairn_snaprow_free(&row);
    }
    if (sv.n > 1)
        qsort(sv.v, sv.n, sizeof *sv.v, snap_cmp);
    for (start = 0; start < sv.n; start = i) {
        int any = !o->n_ids;
        for (i = start; i < sv.n && strcmp(sv.v[i].source, sv.v[start].source) == 0; i++)
            any |= sv.v[i].named;
        if (!any)
            continue;
        if ((rc = forget_group(r, o, &sv.v[start], i - start, now, res, err)) != CAIRN_OK)
            goto out;
    }
out:
    snap_vec_free(&sv);
    return rc;
}

/* ===================================================================== */
/* tags                                                                  */
/* ===================================================================== */

static int tag_ok(const char *t, cairn_err *err)
{
    if (!*t || strchr(t, ',') || strlen(t) > 256)
        return cairn_error(err, CAIRN_FAILED,
                           "invalid tag '%s' (tags are 1..256 bytes without ',')", t);
    return CAIRN_OK;
}

static int in_list(const char *t, const char *const *v, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (strcmp(t, v[i]) == 0)
            return 1;
    return 0;
}

int cairn_snapshot_retag(cairn_repo *r, const char *spec, const char *const *add, size_t n_add,
                         const char *const *remove, size_t n_remove,
                         char old_id[CAIRN_HEX_LEN + 1], char new_id[CAIRN_HEX_LEN + 1],
                         cairn_err *err)
{
    struct cairn_snapshot *s = NULL;
    json_t *man = NULL, *old_tags, *tags = NULL;
    size_t i;
    int rc, changed = 0, existed = 0;
    for (i = 0; i < n_add; i++)
        if ((rc = tag_ok(add[i], err)) != CAIRN_OK)
            return rc;
    if ((rc = cairn_repo_snapshot_get(r, spec, NULL, &s, err)) != CAIRN_OK)
        return rc;
    memcpy(old_id, s->id, CAIRN_HEX_LEN + 1);
    memcpy(new_id, s->id, CAIRN_HEX_LEN + 1);
    old_tags = json_object_get(s->json, "tags");
    tags = json_array();
    if (!tags) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    for (i = 0; i < json_array_size(old_tags); i++) {
        const char *t = json_string_value(json_array_get(old_tags, i));
        if (!t)
            continue;
        if (in_list(t, remove, n_remove))
            changed = 1;
        else
            json_array_append_new(tags, json_string(t));
    }
    for (i = 0; i < n_add; i++) {
        size_t k;
        int have = 0;
        for (k = 0; k < json_array_size(tags); k++)
            if (strcmp(json_string_value(json_array_get(tags, k)), add[i]) == 0)
                have = 1;
        if (!have) {
            json_array_append_new(tags, json_string(add[i]));
            changed = 1;
        }
    }
    if (!changed)
        goto out;
    man = json_deep_copy(s->json);
    if (!man) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    json_object_set(man, "tags", tags);
    if (!json_string_value(json_object_get(man, "original")))
        json_object_set_new(man, "original", json_string(s->id));
    /* 1. the new manifest (content-addressed: a rerun after a crash finds it) */
    rc = cairn_repo_put_snapshot(r, man, new_id, err);
    if (rc == CAIRN_EXISTS) {
        existed = 1;
        rc = CAIRN_OK;
    }
    if (rc != CAIRN_OK) {
        cairn_error_prefix(err, "cannot write the retagged snapshot");
        goto out;
    }
    /* 2. the old one (a crash before this leaves both: the same tree twice) */
    if (strcmp(new_id, old_id) != 0 && (rc = remove_snapshot(r, old_id, err)) != CAIRN_OK)
        goto out;
    if (existed)
        rc = cairn_repo_sync(r, 0, err);
out:
    json_decref(man);
    json_decref(tags);
    cairn_snapshot_free(s);
    return rc;
}

/* ===================================================================== */
/* prune                                                                 */
/* ===================================================================== */

void cairn_prune_opts_init(struct cairn_prune_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_unused_pct = 10;
    o->max_unused_bytes = -1;
    o->grace_ns = 3600LL * NS;
}

int cairn_parse_size(const char *text, uint64_t *bytes, cairn_err *err)
{
    char *end = NULL;
    double v;
    uint64_t mult = 1;
    errno = 0;
    if (!isdigit((unsigned char)*text))
        goto bad;
    v = strtod(text, &end);
    if (errno || end == text || v < 0)
        goto bad;
    switch (toupper((unsigned char)*end)) {
    case 0: break;
    case 'B': mult = 1; end++; break;
    case 'K': mult = 1ull << 10; end++; break;
    case 'M': mult = 1ull << 20; end++; break;
    case 'G': mult = 1ull << 30; end++; break;
    case 'T': mult = 1ull << 40; end++; break;
    default: goto bad;
    }
    if (mult > 1 && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0 || strcmp(end, "ib") == 0))
        end += strlen(end);
    if (*end)
        goto bad;
    if (v * (double)mult > 9.0e18)
        goto bad;
    *bytes = (uint64_t)(v * (double)mult);
    return CAIRN_OK;
bad:
    return cairn_error(err, CAIRN_FAILED, "'%s' is not a size (e.g. 500M, 2G, 1048576)", text);
}

int cairn_prune_parse_unused(const char *text, struct cairn_prune_opts *o, cairn_err *err)
{
    size_t n = strlen(text);
    if (strcmp(text, "unlimited") == 0) {
        o->max_unused_pct = 100;
        o->max_unused_bytes = -1;
        return CAIRN_OK;
    }
    if (n > 1 && text[n - 1] == '%') {
        char *end = NULL;
        double v = strtod(text, &end);
        if (end != text + n - 1 || !(v >= 0) || v > 100)
            return cairn_error(err, CAIRN_FAILED,
                               "'%s' is not a percentage between 0%% and 100%%", text);
        o->max_unused_pct = v;
        o->max_unused_bytes = -1;
        return CAIRN_OK;
    }
    {
        uint64_t b;
        if (cairn_parse_size(text, &b, err) != CAIRN_OK)
            return cairn_error(err, CAIRN_FAILED,
                               "--max-unused takes a percentage (10%%), a size (200M) or "
                               "'unlimited', not '%s'",
                               text);
        o->max_unused_bytes = (int64_t)b;
    }
    return CAIRN_OK;
}

struct prune {
    cairn_repo *r;
    cairn_store *st;
    const struct cairn_prune_opts *o;
    struct cairn_prune_result *res;
    cairn_err *err;
    cairn_catalog_prune *pr;
    cairn_lock *lock;
    long crash_at, mutations;
    char *fs_root; /* local directory store: where to stat pack ages */
    int64_t now;
    uint64_t unused_kept, limit, repack_total;
    /* repack output */
    cairn_pack_writer *w;
    struct cairn_index_pack pending[INDEX_PACKS];
    size_t n_pending, pending_entries;
    int reindexing; /* pending holds kept packs (for messages) */
    cairn_buf pack, raw;
    const cairn_id *cur_pack;
    /* batched deletes */
    char *keys[DEL_BATCH];
    size_t n_keys;
};

static void say(struct prune *p, int verbose, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(struct prune *p, int verbose, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    if (!p->o->report || (verbose && !p->o->verbose))
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    p->o->report(p->o->report_arg, line);
}

/* The test hook: "kill -9" right before the Nth store mutation. */
static void mutation(struct prune *p, long n)
{
    p->mutations += n;
    if (p->crash_at > 0 && p->mutations >= p->crash_at)
        _exit(137);
}

static void sz(uint64_t n, char *out, size_t len)
{
    cairn_format_size(n, out, len);
}

/* Whether a pack is old enough to be deleted or repacked. */
static int old_enough(struct prune *p, const struct cairn_prune_pack *pk)
{
    if (p->o->grace_ns <= 0)
        return 1;
    if (p->fs_root) {
        char key[128], path[PATH_MAX];
        struct stat st;
        int64_t mtime;
        cairn_pack_key(&pk->id, key, sizeof key);
        snprintf(path, sizeof path, "%s/%s", p->fs_root, key);
        if (stat(path, &st) != 0)
            return 0; /* cannot tell: keep */
        mtime = (int64_t)st.st_mtim.tv_sec * NS + st.st_mtim.tv_nsec;
        return p->now - mtime >= p->o->grace_ns;
    }
    /* other stores: the listing has no times; use when this catalog first
     * loaded an index naming the pack (unknown for unindexed packs: keep) */
    return pk->first_seen_ns > 0 && p->now - pk->first_seen_ns >= p->o->grace_ns;
}

/* ---- 1. the walk ---- */

static int walk_node(void *arg, const char *path, const struct cairn_node *n)
{
    struct prune *p = arg;
    size_t i;
    int rc;
    (void)path;
    if (n->type == CAIRN_T_DIR) {
        rc = cairn_catalog_prune_visit(p->pr, &n->subtree, p->err);
        if (rc < 0)
            return rc;
        if (rc == 1)
            p->res->trees++;
        return rc == 1 ? 0 : 1; /* a tree seen before: its subtrees were walked */
    }
    for (i = 0; i < n->n_chunks; i++)
        if ((rc = cairn_catalog_prune_live(p->pr, &n->chunks[i], p->err)) != CAIRN_OK)
            return rc;
    return 0;
}

struct tree_list {
    struct {
        char id[CAIRN_HEX_LEN + 1];
        cairn_id tree;
    } *v;
    size_t n, cap;
    int bad;
};

static int collect_tree(void *arg, const struct cairn_snaprow *row)
{
    struct tree_list *l = arg;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        void *nv = realloc(l->v, ncap * sizeof *l->v);
        if (!nv) {
            l->bad = 1;
            return 1;
        }
        l->v = nv;
        l->cap = ncap;
    }
    memcpy(l->v[l->n].id, row->id, sizeof l->v[l->n].id);
    if (cairn_id_parse(row->tree, &l->v[l->n].tree) != CAIRN_OK) {
        l->bad = 2;
        return 1;
    }
    l->n++;
    return 0;
}

static int walk_snapshots(struct prune *p)
{
    struct tree_list l;
    size_t i;
    int rc;
    memset(&l, 0, sizeof l);
    rc = cairn_catalog_list_snapshots(cairn_repo_catalog(p->r), NULL, collect_tree, &l, p->err);
    if (rc == CAIRN_OK && l.bad)
        rc = cairn_error(p->err, l.bad == 1 ? CAIRN_FATAL : CAIRN_CORRUPT,
                         l.bad == 1 ? "out of memory" : "a snapshot has an invalid tree id");
    for (i = 0; rc == CAIRN_OK && i < l.n; i++) {
        p->res->snapshots++;
        if ((rc = cairn_catalog_prune_batch(p->pr, 1, p->err)) != CAIRN_OK)
            break;
        rc = cairn_catalog_prune_visit(p->pr, &l.v[i].tree, p->err);
        if (rc == 1) {
            p->res->trees++;
            rc = cairn_repo_walk(p->r, &l.v[i].tree, walk_node, NULL, p, p->err);
        }
        if (rc == CAIRN_OK)
            rc = cairn_catalog_prune_batch(p->pr, 0, p->err);
        if (rc != CAIRN_OK)
            cairn_error_prefix(p->err,
                               "snapshot %.12s: cannot read all of its trees (prune deletes "
                               "nothing while it cannot tell what is used; run 'cairn check')",
                               l.v[i].id);
    }
    free(l.v);
    return rc;
}

/* ---- 2. what the store holds ---- */

struct list_ctx {
    struct prune *p;
    int rc;
};

static int note_store_pack(void *arg, const char *key, uint64_t size)
{
    struct list_ctx *c = arg;
    const char *slash = strrchr(key, '/');
    cairn_id id;
    if (!slash || cairn_id_parse(slash + 1, &id) != CAIRN_OK)
        return 0; /* not a pack */
    c->rc = cairn_catalog_prune_store_pack(c->p->pr, &id, size, c->p->err);
    return c->rc != CAIRN_OK;
}

static int list_store(struct prune *p)
{
    struct list_ctx c = {p, CAIRN_OK};
    int rc = cairn_catalog_prune_batch(p->pr, 1, p->err);
    if (rc != CAIRN_OK)
        return rc;
    rc = cairn_store_list(p->st, "data/", note_store_pack, &c, p->err);
    if (rc == CAIRN_OK)
        rc = c.rc;
    if (rc == CAIRN_OK)
        rc = cairn_catalog_prune_batch(p->pr, 0, p->err);
    else
        cairn_error_prefix(p->err, "cannot list the packs of '%s'", p->st->url);
    return rc;
}

/* ---- 3. the plan ---- */

static int classify(void *arg, const struct cairn_prune_pack *pk)
{
    struct prune *p = arg;
    char hex[CAIRN_HEX_LEN + 1], s1[32];
    int action = pk->action;
    uint64_t dead = pk->blob_bytes > pk->used_bytes ? pk->blob_bytes - pk->used_bytes : 0;
    cairn_id_hex(&pk->id, hex);
    sz(pk->size, s1, sizeof s1);
    if (!pk->indexed) {
        if (old_enough(p, pk)) {
            action = CAIRN_PRUNE_UNINDEXED;
            p->res->unindexed_packs++;
            p->res->unindexed_bytes += pk->size;
            say(p, 1, "delete pack %.16s (%s): in no index (left by an interrupted run)", hex,
                s1);
        } else {
            action = CAIRN_PRUNE_UNINDEXED_YOUNG;
            p->res->young_packs++;
            p->res->young_bytes += pk->size;
            say(p, 1, "keep pack %.16s (%s): in no index, but younger than the grace period",
                hex, s1);
        }
    } else if (!pk->in_store) {
        action = CAIRN_PRUNE_FORGET;
        p->res->forgotten_packs++;
        say(p, 0,
            "pack %.16s is missing from the repository and holds no used data: dropping it "
            "from the indexes",
            hex);
    } else {
        p->res->packs++;
        p->res->pack_bytes += pk->size;
        p->res->used_bytes += pk->used_bytes;
        p->res->unused_bytes += dead;
        if (pk->used_blobs == 0 && old_enough(p, pk)) {
            action = CAIRN_PRUNE_DELETE;
            p->res->deleted_packs++;
            p->res->deleted_bytes += pk->size;
            say(p, 1, "delete pack %.16s (%s): no snapshot uses it", hex, s1);
        } else if (pk->used_blobs == 0) {
            action = CAIRN_PRUNE_KEEP_YOUNG;
            p->res->young_packs++;
            p->res->young_bytes += pk->size;
            p->unused_kept += dead;
            say(p, 1, "keep pack %.16s (%s): unused, but younger than the grace period", hex,
                s1);
        } else {
            action = CAIRN_PRUNE_KEEP;
            p->unused_kept += dead;
        }
    }
    if (action != pk->action)
        return cairn_catalog_prune_set_action(p->pr, &pk->id, action, p->err);
    return 0;
}

static int choose_repack(void *arg, const struct cairn_prune_pack *pk)
{
    struct prune *p = arg;
    uint64_t dead = pk->blob_bytes - pk->used_bytes;
    char hex[CAIRN_HEX_LEN + 1], s1[32];
    int rc;
    if (p->unused_kept <= p->limit)
        return 1; /* enough: stop the list */
    if (pk->action != CAIRN_PRUNE_KEEP)
        return 0;
    if (!old_enough(p, pk)) {
        p->res->young_packs++;
        p->res->young_bytes += pk->size;
        cairn_id_hex(&pk->id, hex);
        say(p, 1, "keep pack %.16s: partly unused, but younger than the grace period", hex);
        return 0;
    }
    if (p->o->max_repack_bytes && p->repack_total + pk->size > p->o->max_repack_bytes)
        return 0; /* a smaller one further down may still fit */
    if ((rc = cairn_catalog_prune_set_action(p->pr, &pk->id, CAIRN_PRUNE_REPACK, p->err)) !=
        CAIRN_OK)
        return rc;
    p->unused_kept -= dead;
    p->repack_total += pk->size;
    p->res->repacked_packs++;
    p->res->repacked_bytes += pk->size;
    cairn_id_hex(&pk->id, hex);
    sz(pk->size, s1, sizeof s1);
    say(p, 1, "repack pack %.16s (%s): %.0f%% unused", hex, s1,
        100.0 * (double)dead / (double)(pk->size ? pk->size : 1));
    return 0;
}

static int plan(struct prune *p)
{
    int rc = cairn_catalog_prune_list(p->pr, CAIRN_PRUNE_LIST_ALL, 0, classify, p, p->err);
    if (rc != CAIRN_OK)
        return rc;
    if (p->o->max_unused_bytes >= 0)
        p->limit = (uint64_t)p->o->max_unused_bytes;
    else if (p->o->max_unused_pct >= 100)
        p->limit = UINT64_MAX;
    else
        p->limit = (uint64_t)((double)p->res->used_bytes * p->o->max_unused_pct /
                              (100.0 - p->o->max_unused_pct));
    rc = cairn_catalog_prune_list(p->pr, CAIRN_PRUNE_LIST_WASTE, 0, choose_repack, p, p->err);
    if (rc == 1)
        rc = CAIRN_OK;
    p->res->unused_after = p->unused_kept;
    return rc;
}

/* ---- 4a. repacking ---- */

static void free_pending(struct prune *p)
{
    size_t i;
    for (i = 0; i < p->n_pending; i++)
        free(p->pending[i].entries);
    p->n_pending = 0;
    p->pending_entries = 0;
}

static int flush_index(struct prune *p)
{
    char name[CAIRN_HEX_LEN + 1];
    int rc;
    if (!p->n_pending)
        return CAIRN_OK;
    mutation(p, 1);
    rc = cairn_repo_put_index(p->r, p->pending, p->n_pending, name, p->err);
    if (rc == CAIRN_OK) {
        p->res->indexes_written++;
        say(p, 1, "wrote index %.16s for %zu %s pack%s", name, p->n_pending,
            p->reindexing ? "kept" : "new", p->n_pending == 1 ? "" : "s");
    } else {
        cairn_error_prefix(p->err, "cannot write a new index");
    }
    free_pending(p);
    return rc;
}

static int finish_pack(struct prune *p)
{
    struct cairn_index_pack ip;
    char *path = NULL, key[128];
    int rc;
    memset(&ip, 0, sizeof ip);
    rc = cairn_pack_writer_finish(p->w, &ip.id, &path, &ip.size, &ip.entries, &ip.n, p->err);
    p->w = NULL;
    if (rc != CAIRN_OK)
        return rc;
    cairn_pack_key(&ip.id, key, sizeof key);
    mutation(p, 1);
    rc = cairn_store_put_file(p->st, key, path, p->err);
    if (rc != CAIRN_OK) {
        unlink(path);
        free(path);
        free(ip.entries);
        return cairn_error_prefix(p->err, "cannot store new pack '%s'", key);
    }
    free(path);
    p->res->written_packs++;
    p->res->written_bytes += ip.size;
    p->pending[p->n_pending++] = ip;
    p->pending_entries += ip.n;
    if (p->n_pending == INDEX_PACKS || p->pending_entries >= INDEX_MAX_ENTRIES)
        return flush_index(p);
    return CAIRN_OK;
}

static int copy_blob(void *arg, const cairn_id *blob, const struct cairn_blob_loc *loc)
{
    struct prune *p = arg;
    char phex[CAIRN_HEX_LEN + 1], bhex[CAIRN_HEX_LEN + 1];
    cairn_id got;
    int rc;
    cairn_id_hex(p->cur_pack, phex);
    cairn_id_hex(blob, bhex);
    if (loc->offset + loc->stored_len > p->pack.len)
        return cairn_error(p->err, CAIRN_CORRUPT,
                           "pack %s is shorter than its index says (blob %.16s at %llu); run "
                           "'cairn check --read-data'",
                           phex, bhex, (unsigned long long)loc->offset);
    rc = cairn_blob_decode(p->pack.data + loc->offset, loc->stored_len, loc->flags, loc->raw_len,
                           &p->raw, p->err);
    if (rc == CAIRN_OK) {
        cairn_repo_hash(p->r, p->raw.data, p->raw.len, &got);
        if (memcmp(got.b, blob->b, CAIRN_ID_LEN) != 0)
            rc = cairn_error(p->err, CAIRN_CORRUPT, "data does not match its id");
    }
    if (rc != CAIRN_OK)
        return cairn_error_prefix(p->err,
                                  "pack %s, blob %.16s is damaged; prune stopped before "
                                  "deleting anything (run 'cairn check --read-data')",
                                  phex, bhex);
    if (!p->w && (rc = cairn_pack_writer_new(p->st->tmpdir, &p->w, p->err)) != CAIRN_OK)
        return rc;
    rc = cairn_pack_writer_add(p->w, blob, loc->type, loc->flags, loc->raw_len,
                               p->pack.data + loc->offset, loc->stored_len, p->err);
    if (rc != CAIRN_OK)
        return rc;
    if (cairn_pack_writer_size(p->w) >= cairn_repo_config(p->r)->pack_size ||
        cairn_pack_writer_count(p->w) >= PACK_MAX_ENTRIES)
        return finish_pack(p);
    return CAIRN_OK;
}

static int repack_one(void *arg, const struct cairn_prune_pack *pk)
{
    struct prune *p = arg;
    char key[128];
    int rc;
    cairn_pack_key(&pk->id, key, sizeof key);
    rc = cairn_store_get(p->st, key, &p->pack, (size_t)pk->size + 1, p->err);
    if (rc == CAIRN_OK && p->pack.len != pk->size)
        rc = cairn_error(p->err, CAIRN_CORRUPT,
                         "pack '%s' has %zu bytes, its index says %llu; run 'cairn check'", key,
                         p->pack.len, (unsigned long long)pk->size);
    if (rc != CAIRN_OK)
        return cairn_error_prefix(p->err, "cannot repack '%s'", key);
    p->cur_pack = &pk->id;
    rc = cairn_catalog_prune_used_blobs(p->pr, &pk->id, copy_blob, p, p->err);
    p->cur_pack = NULL;
    return rc;
}

static int repack(struct prune *p)
{
    int rc = cairn_catalog_prune_list(p->pr, CAIRN_PRUNE_LIST_ACTION, CAIRN_PRUNE_REPACK,
                                      repack_one, p, p->err);
    if (rc == CAIRN_OK && p->w) {
        if (cairn_pack_writer_count(p->w))
            rc = finish_pack(p);
        else
            cairn_pack_writer_abort(p->w), p->w = NULL;
    }
    if (rc == CAIRN_OK)
        rc = flush_index(p);
    cairn_buf_free(&p->pack);
    cairn_buf_free(&p->raw);
    return rc;
}

/* ---- 4a'. kept packs of indexes being replaced ---- */

struct entry_vec {
    struct cairn_pack_entry *v;
    size_t n, cap;
};

static int collect_entry(void *arg, const cairn_id *blob, const struct cairn_blob_loc *loc)
{
    struct entry_vec *e = arg;
    if (e->n == e->cap) {
        size_t ncap = e->cap ? e->cap * 2 : 256;
        void *nv = realloc(e->v, ncap * sizeof *e->v);
        if (!nv)
            return 1;
        e->v = nv;
        e->cap = ncap;
    }
    e->v[e->n].id = *blob;
    e->v[e->n].type = loc->type;
    e->v[e->n].flags = loc->flags;
    e->v[e->n].stored_len = loc->stored_len;
    e->v[e->n].raw_len = loc->raw_len;
    e->v[e->n].offset = loc->offset;
    e->n++;
    return 0;
}

static int reindex_one(void *arg, const struct cairn_prune_pack *pk)
{
    struct prune *p = arg;
    struct entry_vec e;
    int rc;
    memset(&e, 0, sizeof e);
    rc = cairn_catalog_pack_blobs(cairn_repo_catalog(p->r), &pk->id, collect_entry, &e, p->err);
    if (rc == 1)
        rc = cairn_error(p->err, CAIRN_FATAL, "out of memory");
    if (rc != CAIRN_OK) {
        free(e.v);
        return rc;
    }
    p->pending[p->n_pending].id = pk->id;
    p->pending[p->n_pending].size = pk->size;
    p->pending[p->n_pending].entries = e.v;
    p->pending[p->n_pending].n = e.n;
    p->n_pending++;
    p->pending_entries += e.n;
    if (p->n_pending == INDEX_PACKS || p->pending_entries >= INDEX_MAX_ENTRIES)
        return flush_index(p);
    return CAIRN_OK;
}

/* ---- 4b/4c. deleting ---- */

static int flush_deletes(struct prune *p)
{
    size_t i;
    int rc = CAIRN_OK;
    if (!p->n_keys)
        return CAIRN_OK;
    mutation(p, (long)p->n_keys);
    rc = cairn_store_del_many(p->st, (const char *const *)p->keys, p->n_keys, p->err);
    if (rc == CAIRN_NOTFOUND)
        rc = CAIRN_OK;
    for (i = 0; i < p->n_keys; i++)
        free(p->keys[i]);
    p->n_keys = 0;
    return rc;
}

static int queue_delete(struct prune *p, const char *key)
{
    /* with the crash hook, one key per call so every delete is a crash point */
    size_t batch = p->crash_at > 0 ? 1 : DEL_BATCH;
    if (!(p->keys[p->n_keys] = strdup(key)))
        return cairn_error(p->err, CAIRN_FATAL, "out of memory");
    p->n_keys++;
    return p->n_keys >= batch ? flush_deletes(p) : CAIRN_OK;
}

static int delete_index(void *arg, const char *id)
{
    struct prune *p = arg;
    char key[128];
    int rc;
    snprintf(key, sizeof key, "index/%s", id);
    mutation(p, 1);
    rc = cairn_store_del(p->st, key, p->err);
    if (rc == CAIRN_NOTFOUND)
        rc = CAIRN_OK;
    if (rc == CAIRN_OK)
        rc = cairn_catalog_remove_index(cairn_repo_catalog(p->r), id, p->err);
    if (rc != CAIRN_OK)
        return cairn_error_prefix(p->err, "cannot delete index '%s'", key);
    p->res->indexes_deleted++;
    say(p, 1, "deleted index %.16s", id);
    return CAIRN_OK;
}

static int delete_pack(void *arg, const struct cairn_prune_pack *pk)
{
    struct prune *p = arg;
    char key[128];
    cairn_pack_key(&pk->id, key, sizeof key);
    return queue_delete(p, key);
}

/* ---- the whole run ---- */

static void summary(struct prune *p)
{
    struct cairn_prune_result *r = p->res;
    char a[32], b[32], c[32];
    sz(r->pack_bytes, a, sizeof a);
    sz(r->used_bytes, b, sizeof b);
    sz(r->unused_bytes, c, sizeof c);
    say(p, 0, "%llu snapshots, %llu trees, %llu blobs in use; %llu packs (%s): %s used, %s unused",
        (unsigned long long)r->snapshots, (unsigned long long)r->trees,
        (unsigned long long)r->live_blobs, (unsigned long long)r->packs, a, b, c);
    sz(r->deleted_bytes, a, sizeof a);
    say(p, 0, "%s %llu unused packs (%s)", p->o->dry_run ? "would delete" : "deleting",
        (unsigned long long)r->deleted_packs, a);
    sz(r->repacked_bytes, a, sizeof a);
    say(p, 0, "%s %llu partly used packs (%s)", p->o->dry_run ? "would repack" : "repacking",
        (unsigned long long)r->repacked_packs, a);
    if (r->unindexed_packs) {
        sz(r->unindexed_bytes, a, sizeof a);
        say(p, 0, "%s %llu packs in no index (%s)", p->o->dry_run ? "would delete" : "deleting",
            (unsigned long long)r->unindexed_packs, a);
    }
    if (r->young_packs) {
        char g[48];
        sz(r->young_bytes, a, sizeof a);
        cairn_format_duration(p->o->grace_ns / NS, g, sizeof g);
        say(p, 0, "keeping %llu packs (%s) younger than the grace period (%s)",
            (unsigned long long)r->young_packs, a, g);
    }
}

int cairn_prune(cairn_repo *r, const struct cairn_prune_opts *o, struct cairn_prune_result *res,
                cairn_err *err)
{
    struct prune p;
    struct cairn_prune_totals t;
    const char *hook = getenv("CAIRN_PRUNE_CRASH_AT");
    uint64_t n_idx = 0;
    int rc;
    memset(&p, 0, sizeof p);
    memset(res, 0, sizeof *res);
    p.r = r;
    p.st = cairn_repo_store(r);
    p.o = o;
    p.res = res;
    p.err = err;
    p.crash_at = hook && *hook ? strtol(hook, NULL, 10) : 0;
    if (strcmp(p.st->ops->scheme, "file") == 0 && p.st->tmpdir) {
        size_t n = strlen(p.st->tmpdir);
        if (n > 4 && strcmp(p.st->tmpdir + n - 4, "/tmp") == 0)
            p.fs_root = strndup(p.st->tmpdir, n - 4);
    }

    if (!o->dry_run) {
        struct cairn_lock_opts lo = {"prune", o->lock_wait_ns, 0, 0};
        if ((rc = cairn_lock_acquire(r, CAIRN_LOCK_EXCLUSIVE, &lo, &p.lock, err)) != CAIRN_OK)
            goto out;
    } else if ((rc = cairn_repo_sync(r, 0, err)) != CAIRN_OK) {
        goto out;
    }
    p.now = cairn_now_ns();
    if ((rc = cairn_catalog_prune_open(cairn_repo_catalog(r), &p.pr, err)) != CAIRN_OK)
        goto out;

    /* 1-2: what is used, what is there */
    if ((rc = walk_snapshots(&p)) != CAIRN_OK || (rc = list_store(&p)) != CAIRN_OK ||
        (rc = cairn_catalog_prune_analyze(p.pr, &t, err)) != CAIRN_OK)
        goto out;
    res->live_blobs = t.live_blobs;
    if (t.missing_blobs) {
        char hex[CAIRN_HEX_LEN + 1];
        cairn_id_hex(&t.first_missing, hex);
        rc = cairn_error(err, CAIRN_CORRUPT,
                         "%llu blobs that snapshots use are in no pack of the repository (e.g. "
                         "%.16s); prune deletes nothing from a damaged repository: run 'cairn "
                         "check' to see what is affected",
                         (unsigned long long)t.missing_blobs, hex);
        goto out;
    }
    /* 3: the plan */
    if ((rc = plan(&p)) != CAIRN_OK)
        goto out;
    summary(&p);
    if (o->dry_run)
        goto done;

    /* (a) new packs and their indexes; new indexes for kept packs */
    if ((rc = repack(&p)) != CAIRN_OK)
        goto out;
    if ((rc = cairn_catalog_prune_mark_indexes(p.pr, &n_idx, err)) != CAIRN_OK)
        goto out;
    p.reindexing = 1;
    rc = cairn_catalog_prune_list(p.pr, CAIRN_PRUNE_LIST_REINDEX, 0, reindex_one, &p, err);
    if (rc == CAIRN_OK)
        rc = flush_index(&p);
    if (rc != CAIRN_OK)
        goto out;
    /* (b) the replaced indexes */
    if ((rc = cairn_lock_check(p.lock, err)) != CAIRN_OK)
        goto out;
    if ((rc = cairn_catalog_prune_list_indexes(p.pr, delete_index, &p, err)) != CAIRN_OK)
        goto out;
    /* (c) the packs */
    if ((rc = cairn_lock_check(p.lock, err)) != CAIRN_OK)
        goto out;
    rc = cairn_catalog_prune_list(p.pr, CAIRN_PRUNE_LIST_ACTION, CAIRN_PRUNE_DELETE, delete_pack,
                                  &p, err);
    if (rc == CAIRN_OK)
        rc = cairn_catalog_prune_list(p.pr, CAIRN_PRUNE_LIST_ACTION, CAIRN_PRUNE_REPACK,
                                      delete_pack, &p, err);
    if (rc == CAIRN_OK)
        rc = cairn_catalog_prune_list(p.pr, CAIRN_PRUNE_LIST_ACTION, CAIRN_PRUNE_UNINDEXED,
                                      delete_pack, &p, err);
    if (rc == CAIRN_OK)
        rc = flush_deletes(&p);
    if (rc != CAIRN_OK) {
        cairn_error_prefix(err, "deleting packs");
        goto out;
    }
done:
    {
        uint64_t gone = res->deleted_bytes + res->repacked_bytes + res->unindexed_bytes;
        res->freed_bytes = gone > res->written_bytes ? gone - res->written_bytes : 0;
    }
    if (!o->dry_run) {
        char a[32];
        sz(res->freed_bytes, a, sizeof a);
        say(&p, 0, "wrote %llu new packs and %llu indexes, deleted %llu indexes; freed %s",
            (unsigned long long)res->written_packs, (unsigned long long)res->indexes_written,
            (unsigned long long)res->indexes_deleted, a);
    }
    rc = CAIRN_OK;
out:
    if (p.w)
        cairn_pack_writer_abort(p.w);
    free_pending(&p);
    {
        size_t i;
        for (i = 0; i < p.n_keys; i++)
            free(p.keys[i]);
    }
    cairn_buf_free(&p.pack);
    cairn_buf_free(&p.raw);
    cairn_catalog_prune_free(p.pr);
    if (p.lock) {
        cairn_err le;
        mutation(&p, 1);
        if (cairn_lock_release(p.lock, &le) != CAIRN_OK && rc == CAIRN_OK)
            rc = cairn_error(err, le.code, "%s", le.msg);
    }
    free(p.fs_root);
    return rc;
}

/* cli/cmd_snapshots.c — cairn snapshots, ls, diff, catalog rebuild */
#define _GNU_SOURCE
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../engine/internal.h"
#include "cli.h"

struct list_ctx {
    struct cli *c;
    json_t *arr;
    int count;
};

static json_t *row_json(const struct cairn_snaprow *row)
{
    json_t *m = json_loads(row->manifest, 0, NULL), *o = json_object(), *tags = json_array();
    char ts[64];
    json_t *paths = m ? json_object_get(m, "paths") : NULL;
    char *t, *save = NULL, *dup = strdup(row->tags ? row->tags : "");
    for (t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(tags, json_string(t));
    free(dup);
    cairn_format_time(row->time_ns, ts, sizeof ts);
    json_object_set_new(o, "id", json_string(row->id));
    json_object_set_new(o, "short_id", json_stringn(row->id, 12));
    json_object_set_new(o, "time", json_string(ts));
    json_object_set_new(o, "source", json_string(row->source));
    json_object_set_new(o, "hostname", json_string(row->hostname));
    json_object_set_new(o, "paths", paths ? json_incref(paths) : json_array());
    json_object_set_new(o, "tags", tags);
    json_object_set_new(o, "tree", json_string(row->tree));
    json_object_set_new(o, "parent", row->parent && *row->parent ? json_string(row->parent)
                                                                 : json_null());
    json_object_set_new(o, "partial", json_boolean(row->partial));
    json_object_set_new(o, "files", json_integer((json_int_t)row->files));
    json_object_set_new(o, "bytes_read", json_integer((json_int_t)row->bytes_read));
    json_object_set_new(o, "bytes_new", json_integer((json_int_t)row->bytes_new));
    json_object_set_new(o, "bytes_stored", json_integer((json_int_t)row->bytes_stored));
    json_object_set_new(o, "total_size", json_integer((json_int_t)row->total_size));
    if (m) {
        json_t *v = json_object_get(m, "consistency");
        if (v)
            json_object_set(o, "consistency", v);
        /* how the agent cut it: method, quiesce, and what it refers to */
        v = json_object_get(m, "snapshot");
        if (json_is_object(v))
            json_object_set(o, "snapshot", v);
        v = json_object_get(m, "errors");
        if (row->partial && v)
            json_object_set(o, "errors", v);
    }
    json_decref(m);
    return o;
}

static int list_cb(void *arg, const struct cairn_snaprow *row)
{
    struct list_ctx *l = arg;
    if (l->c->json) {
        json_array_append_new(l->arr, row_json(row));
    } else {
        char ts[64], sz[32];
        time_t s = (time_t)(row->time_ns / 1000000000LL);
        struct tm tm;
        localtime_r(&s, &tm);
        strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
        cairn_format_size(row->total_size, sz, sizeof sz);
        printf("%-12.12s  %s  %-10s  %8llu files  %10s  %s%s%s\n", row->id, ts,
               row->hostname ? row->hostname : "", (unsigned long long)row->files, sz,
               row->source, row->tags && *row->tags ? "  tags=" : "", row->tags ? row->tags : "");
        if (row->partial)
            printf("              (partial: some files could not be read)\n");
        if (row->manifest && strstr(row->manifest, "\"reference\"")) {
            /* an agent snapshot whose data is a storage snapshot: say where */
            struct cairn_snapshot sn;
            char where[768];
            memset(&sn, 0, sizeof sn);
            sn.json = json_loads(row->manifest, 0, NULL);
            if (sn.json && !cairn_snapshot_has_data(&sn, where, sizeof where)) {
                char *semi = strchr(where, ';'); /* the first half: which one */
                if (semi)
                    *semi = 0;
                printf("              (no files: %s)\n", where);
            }
            json_decref(sn.json);
        }
    }
    l->count++;
    return 0;
}

int cmd_snapshots(struct cli *c, int argc, char **argv)
{
    const char *source = NULL;
    struct opt opts[] = {{"source", 1, 0, &source, NULL, NULL, NULL}, {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    cairn_repo *repo = NULL;
    struct list_ctx l = {c, NULL, 0};
    cairn_err err;
    int rc = cli_parse(c, argc, argv, opts, "cairn snapshots [--source NAME] [--json]");
    if (rc || (rc = cli_open_repo(c, &repo)) != 0)
        return rc;
    if (c->json)
        l.arr = json_array();
    else
        printf("%-12s  %-19s  %-10s  %14s  %10s  %s\n", "ID", "TIME", "HOST", "FILES", "SIZE",
               "SOURCE");
    cairn_err_clear(&err);
    rc = cairn_catalog_list_snapshots(cairn_repo_catalog(repo), source, list_cb, &l, &err);
    if (rc != CAIRN_OK) {
        cli_error("%s", err.msg);
        json_decref(l.arr);
        cairn_repo_free(repo);
        return EXIT_ERR;
    }
    if (c->json)
        cli_print_json(l.arr);
    else
        printf("%d snapshot%s\n", l.count, l.count == 1 ? "" : "s");
    cairn_repo_free(repo);
    return EXIT_OK;
}

/* ---- ls ---- */

struct ls_ctx {
    const char *prefix;
    size_t plen;
    int longfmt;
    int count;
};

static void print_node(const char *path, const struct cairn_node *n, int longfmt)
{
    if (longfmt) {
        char mode[11], ts[32];
        time_t s = (time_t)(n->mtime_ns / 1000000000LL);
        struct tm tm;
        cairn_mode_string(n, mode);
        localtime_r(&s, &tm);
        strftime(ts, sizeof ts, "%Y-%m-%d %H:%M", &tm);
        printf("%s %-8s %-8s %12llu %s %s", mode, n->user ? n->user : "?",
               n->group ? n->group : "?", (unsigned long long)n->size, ts, path);
        if (n->type == CAIRN_T_SYMLINK)
            printf(" -> %s", n->target);
        if (n->hardlink)
            printf(" => %s", n->hardlink);
        putchar('\n');
    } else {
        printf("%s\n", path);
    }
}

static int ls_cb(void *arg, const char *path, const struct cairn_node *n)
{
    struct ls_ctx *l = arg;
    if (l->plen) {
        size_t len = strlen(path);
        if (len < l->plen) {
            /* an ancestor of the prefix: descend only if it leads there */
            return strncmp(l->prefix, path, len) == 0 && l->prefix[len] == '/' ? 0 : 1;
        }
        if (strncmp(path, l->prefix, l->plen) != 0 || (path[l->plen] && path[l->plen] != '/'))
            return 1;
    }
    print_node(path, n, l->longfmt);
    l->count++;
    return 0;
}

static void walk_err(void *arg, const char *path, const cairn_err *e)
{
    (void)arg;
    cli_warn("cannot read directory '%s': %s", path, e->msg);
}

int cmd_ls(struct cli *c, int argc, char **argv)
{
    int longfmt = 0, rc;
    struct opt opts[] = {{"l", 0, 0, NULL, NULL, NULL, &longfmt},
                         {"long", 0, 0, NULL, NULL, NULL, &longfmt},
                         {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    cairn_repo *repo = NULL;
    struct cairn_snapshot *snap = NULL;
    struct ls_ctx l;
    cairn_err err;
    rc = cli_parse(c, argc, argv, opts, "cairn ls SNAP [PATH] [-l]");
    if (rc)
        return rc;
    if (c->nargs < 1 || c->nargs > 2) {
        cli_error("usage: cairn ls SNAP [PATH] [-l]");
        return EXIT_USAGE;
    }
    if ((rc = cli_open_repo(c, &repo)) != 0)
        return rc;
    cairn_err_clear(&err);
    if (cairn_repo_snapshot_get(repo, c->args[0], NULL, &snap, &err) != CAIRN_OK) {
        cli_error("%s", err.msg);
        cairn_repo_free(repo);
        return EXIT_ERR;
    }
    {
        char where[768];
        if (!cairn_snapshot_has_data(snap, where, sizeof where) && !c->quiet)
            cli_warn("snapshot %.12s holds no files: %s", snap->id, where);
    }
    memset(&l, 0, sizeof l);
    l.longfmt = longfmt;
    if (c->nargs == 2) {
        l.prefix = c->args[1];
        while (*l.prefix == '/')
            l.prefix++;
        l.plen = strlen(l.prefix);
        while (l.plen && l.prefix[l.plen - 1] == '/')
            l.plen--;
    }
    rc = cairn_repo_walk(repo, &snap->tree, ls_cb, walk_err, &l, &err);
    if (rc != CAIRN_OK) {
        cli_error("%s", err.msg);
        rc = EXIT_ERR;
    } else if (l.plen && l.count == 0) {
        cli_error("'%.*s' is not in snapshot %.12s", (int)l.plen, l.prefix, snap->id);
        rc = EXIT_ERR;
    } else {
        rc = EXIT_OK;
    }
    cairn_snapshot_free(snap);
    cairn_repo_free(repo);
    return rc;
}

/* ---- diff ---- */

struct diff_ctx {
    cairn_repo *repo;
    int changes;
    int errors;
    char mark;
};

static int print_all(void *arg, const char *path, const struct cairn_node *n)
{
    struct diff_ctx *d = arg;
    (void)n;
    printf("%c %s\n", d->mark, path);
    d->changes++;
    return 0;
}

static void print_subtree(struct diff_ctx *d, char mark, const char *path,
                          const struct cairn_node *n)
{
    printf("%c %s\n", mark, path);
    d->changes++;
    if (n->type == CAIRN_T_DIR) {
        /* descendants, with their full paths */
        struct cairn_tree t;
        cairn_err e;
        size_t i;
        if (cairn_repo_load_tree(d->repo, &n->subtree, &t, &e) != CAIRN_OK) {
            cli_warn("cannot read directory '%s': %s", path, e.msg);
            d->errors++;
            return;
        }
        for (i = 0; i < t.n; i++) {
            char *p = cairn_path_join(path, t.nodes[i].name);
            if (p)
                print_subtree(d, mark, p, &t.nodes[i]);
            free(p);
        }
        cairn_tree_free(&t);
    }
    (void)print_all;
}

static int node_changed(const struct cairn_node *a, const struct cairn_node *b)
{
    if (a->type != b->type || a->mode != b->mode || a->uid != b->uid || a->gid != b->gid)
        return 1;
    if (a->type == CAIRN_T_DIR)
        return 0; /* directory times change with their contents; report the contents */
    if (a->size != b->size || a->mtime_ns != b->mtime_ns || a->n_chunks != b->n_chunks ||
        (a->n_chunks && memcmp(a->chunks, b->chunks, a->n_chunks * sizeof *a->chunks)))
        return 1;
    if ((a->target || b->target) && (!a->target || !b->target || strcmp(a->target, b->target)))
        return 1;
    if ((a->hardlink || b->hardlink) &&
        (!a->hardlink || !b->hardlink || strcmp(a->hardlink, b->hardlink)))
        return 1;
    return 0;
}

static int diff_trees(struct diff_ctx *d, const cairn_id *ta, const cairn_id *tb,
                      const char *prefix)
{
    struct cairn_tree a, b;
    cairn_err e;
    size_t i = 0, j = 0;
    if (memcmp(ta->b, tb->b, CAIRN_ID_LEN) == 0)
        return 0;
    if (cairn_repo_load_tree(d->repo, ta, &a, &e) != CAIRN_OK) {
        cli_warn("cannot read directory '%s': %s", *prefix ? prefix : ".", e.msg);
        d->errors++;
        return 0;
    }
    if (cairn_repo_load_tree(d->repo, tb, &b, &e) != CAIRN_OK) {
        cli_warn("cannot read directory '%s': %s", *prefix ? prefix : ".", e.msg);
        d->errors++;
        cairn_tree_free(&a);
        return 0;
    }
    while (i < a.n || j < b.n) {
        int cmp = i >= a.n ? 1 : j >= b.n ? -1 : strcmp(a.nodes[i].name, b.nodes[j].name);
        const char *name = cmp <= 0 ? a.nodes[i].name : b.nodes[j].name;
        char *p = *prefix ? cairn_path_join(prefix, name) : strdup(name);
        if (!p)
            break;
        if (cmp < 0) {
            print_subtree(d, '-', p, &a.nodes[i++]);
        } else if (cmp > 0) {
            print_subtree(d, '+', p, &b.nodes[j++]);
        } else {
            const struct cairn_node *x = &a.nodes[i++], *y = &b.nodes[j++];
            if (x->type != y->type) {
                print_subtree(d, '-', p, x);
                print_subtree(d, '+', p, y);
            } else {
                if (node_changed(x, y)) {
                    printf("M %s\n", p);
                    d->changes++;
                }
                if (x->type == CAIRN_T_DIR)
                    diff_trees(d, &x->subtree, &y->subtree, p);
            }
        }
        free(p);
    }
    cairn_tree_free(&a);
    cairn_tree_free(&b);
    return 0;
}

int cmd_diff(struct cli *c, int argc, char **argv)
{
    cairn_repo *repo = NULL;
    struct cairn_snapshot *s1 = NULL, *s2 = NULL;
    struct diff_ctx d;
    cairn_err err;
    int rc = cli_parse(c, argc, argv, NULL, "cairn diff SNAP1 SNAP2");
    if (rc)
        return rc;
    if (c->nargs != 2) {
        cli_error("usage: cairn diff SNAP1 SNAP2");
        return EXIT_USAGE;
    }
    if ((rc = cli_open_repo(c, &repo)) != 0)
        return rc;
    cairn_err_clear(&err);
    if (cairn_repo_snapshot_get(repo, c->args[0], NULL, &s1, &err) != CAIRN_OK ||
        cairn_repo_snapshot_get(repo, c->args[1], NULL, &s2, &err) != CAIRN_OK) {
        cli_error("%s", err.msg);
        rc = EXIT_ERR;
        goto out;
    }
    memset(&d, 0, sizeof d);
    d.repo = repo;
    diff_trees(&d, &s1->tree, &s2->tree, "");
    if (!c->quiet)
        fprintf(stderr, "%d change%s between %.12s and %.12s\n", d.changes,
                d.changes == 1 ? "" : "s", s1->id, s2->id);
    rc = d.errors ? EXIT_ERR : EXIT_OK;
out:
    cairn_snapshot_free(s1);
    cairn_snapshot_free(s2);
    cairn_repo_free(repo);
    return rc;
}

/* ---- catalog ---- */

int cmd_catalog(struct cli *c, int argc, char **argv)
{
    cairn_repo *repo = NULL;
    cairn_err err;
    uint64_t nsnap = 0, npack = 0;
    int rc = cli_parse(c, argc, argv, NULL, "cairn catalog rebuild");
    if (rc)
        return rc;
    if (c->nargs != 1 || strcmp(c->args[0], "rebuild") != 0) {
        cli_error("usage: cairn catalog rebuild");
        return EXIT_USAGE;
    }
    if ((rc = cli_open_repo(c, &repo)) != 0)
        return rc;
    cairn_err_clear(&err);
    if (cairn_repo_sync(repo, 1, &err) != CAIRN_OK) {
        cli_error("catalog rebuild failed: %s", err.msg);
        cairn_repo_free(repo);
        return EXIT_ERR;
    }
    cairn_catalog_count(cairn_repo_catalog(repo), "snapshots", &nsnap, NULL);
    cairn_catalog_count(cairn_repo_catalog(repo), "packs", &npack, NULL);
    if (!c->quiet)
        fprintf(stderr, "catalog '%s' rebuilt from the repository: %llu snapshots, %llu packs\n",
                cairn_repo_catalog_path(repo), (unsigned long long)nsnap,
                (unsigned long long)npack);
    cairn_repo_free(repo);
    return EXIT_OK;
}

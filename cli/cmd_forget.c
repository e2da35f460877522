/* cli/cmd_forget.c — cairn forget, prune, tag, unlock (docs/retention.md) */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "../engine/lock.h"
#include "../agent/mysql.h"
#include "../engine/prune.h"
#include "../restore/pitr_pg.h"
#include "cli.h"

#define NS 1000000000LL

static void utc(int64_t ns, char *out, size_t n)
{
    /* "2026-11-21 21:09:32" (UTC: the calendar rules work in UTC) */
    char full[64];
    cairn_format_time(ns, full, sizeof full);
    snprintf(out, n, "%.10s %.8s", full, full + 11);
}

/* ---- prune (also used by forget --prune) ---- */

struct prune_args {
    const char *max_unused, *max_repack, *grace, *lock_wait;
    int dry_run, verbose;
};

static void prune_line(void *arg, const char *line)
{
    struct cli *c = arg;
    if (c->quiet)
        return;
    /* with --json the report goes to stderr, stdout holds the object */
    fprintf(c->json ? stderr : stdout, "%s\n", line);
    fflush(c->json ? stderr : stdout);
}

static int prune_options(const struct prune_args *a, struct cairn_prune_opts *o)
{
    cairn_err err;
    int64_t s;
    cairn_prune_opts_init(o);
    o->dry_run = a->dry_run;
    o->verbose = a->verbose;
    if (a->max_unused && cairn_prune_parse_unused(a->max_unused, o, &err) != CAIRN_OK) {
        cli_error("--max-unused: %s", err.msg);
        return EXIT_USAGE;
    }
    if (a->max_repack && cairn_parse_size(a->max_repack, &o->max_repack_bytes, &err) != CAIRN_OK) {
        cli_error("--max-repack-size: %s", err.msg);
        return EXIT_USAGE;
    }
    if (a->grace) {
        if (cairn_parse_duration(a->grace, &s, &err) != CAIRN_OK) {
            cli_error("--grace: %s", err.msg);
            return EXIT_USAGE;
        }
        o->grace_ns = s * NS;
    }
    if (a->lock_wait) {
        if (cairn_parse_duration(a->lock_wait, &s, &err) != CAIRN_OK) {
            cli_error("--lock-wait: %s", err.msg);
            return EXIT_USAGE;
        }
        o->lock_wait_ns = s * NS;
    }
    return 0;
}

static json_t *prune_json(const struct cairn_prune_opts *o, const struct cairn_prune_result *r)
{
    json_t *j = json_object();
#define F(name) json_object_set_new(j, #name, json_integer((json_int_t)r->name))
    json_object_set_new(j, "dry_run", json_boolean(o->dry_run));
    F(snapshots);
    F(trees);
    F(live_blobs);
    F(packs);
    F(pack_bytes);
    F(used_bytes);
    F(unused_bytes);
    F(deleted_packs);
    F(deleted_bytes);
    F(repacked_packs);
    F(repacked_bytes);
    F(written_packs);
    F(written_bytes);
    F(unindexed_packs);
    F(unindexed_bytes);
    F(young_packs);
    F(young_bytes);
    F(forgotten_packs);
    F(indexes_written);
    F(indexes_deleted);
    F(freed_bytes);
    F(unused_after);
#undef F
    return j;
}

static int run_prune(struct cli *c, cairn_repo *repo, const struct cairn_prune_opts *o,
                     json_t **out_json)
{
    struct cairn_prune_opts opts = *o;
    struct cairn_prune_result res;
    cairn_err err;
    opts.report = prune_line;
    opts.report_arg = c;
    cairn_err_clear(&err);
    if (cairn_prune(repo, &opts, &res, &err) != CAIRN_OK) {
        cli_error("prune: %s", err.msg);
        return EXIT_ERR;
    }
    if (out_json)
        *out_json = prune_json(o, &res);
    return EXIT_OK;
}

int cmd_prune(struct cli *c, int argc, char **argv)
{
    struct prune_args a;
    struct opt opts[] = {{"max-unused", 1, 0, &a.max_unused, NULL, NULL, NULL},
                         {"max-repack-size", 1, 0, &a.max_repack, NULL, NULL, NULL},
                         {"grace", 1, 0, &a.grace, NULL, NULL, NULL},
                         {"lock-wait", 1, 0, &a.lock_wait, NULL, NULL, NULL},
                         {"dry-run", 0, 0, NULL, NULL, NULL, &a.dry_run},
                         {"verbose", 0, 0, NULL, NULL, NULL, &a.verbose},
                         {"v", 0, 0, NULL, NULL, NULL, &a.verbose},
                         {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    struct cairn_prune_opts o;
    cairn_repo *repo = NULL;
    json_t *j = NULL;
    int rc;
    memset(&a, 0, sizeof a);
    rc = cli_parse(c, argc, argv, opts,
                   "cairn prune [--max-unused PERCENT%|SIZE|unlimited] [--max-repack-size SIZE] "
                   "[--grace DURATION] [--lock-wait DURATION] [--dry-run] [--verbose] [--json]");
    if (rc)
        return rc;
    if (c->nargs) {
        cli_error("prune takes no arguments ('%s')", c->args[0]);
        return EXIT_USAGE;
    }
    if ((rc = prune_options(&a, &o)) != 0 || (rc = cli_open_repo(c, &repo)) != 0)
        return rc;
    rc = run_prune(c, repo, &o, c->json ? &j : NULL);
    if (rc == EXIT_OK && j)
        cli_print_json(j);
    cairn_repo_free(repo);
    return rc;
}

/* ---- forget ---- */

struct forget_ctx {
    struct cli *c;
    const struct cairn_policy *policy;
    json_t *groups;
};

static void forget_report(void *arg, const struct cairn_forget_group *g)
{
    struct forget_ctx *f = arg;
    size_t i;
    if (f->c->json) {
        json_t *o = json_object(), *keep = json_array(), *rem = json_array();
        for (i = 0; i < g->n; i++) {
            const struct cairn_forget_item *it = &g->items[i];
            json_t *e = json_object();
            char ts[64];
            cairn_format_time(it->time_ns, ts, sizeof ts);
            json_object_set_new(e, "id", json_string(it->id));
            json_object_set_new(e, "short_id", json_stringn(it->id, 12));
            json_object_set_new(e, "time", json_string(ts));
            if (it->decision.keep) {
                json_t *reasons = json_array();
                unsigned bit;
                /* one string per reason, worded as in the text output */
                for (bit = 1; bit && bit <= it->decision.reasons; bit <<= 1) {
                    struct cairn_policy_result one = it->decision;
                    char why[512];
                    if (!(it->decision.reasons & bit))
                        continue;
                    one.reasons = bit;
                    cairn_policy_reasons(f->policy, &one, why, sizeof why);
                    json_array_append_new(reasons, json_string(why));
                }
                json_object_set_new(e, "reasons", reasons);
                json_array_append_new(keep, e);
            } else {
                json_array_append_new(rem, e);
            }
        }
        json_object_set_new(o, "source", json_string(g->source));
        json_object_set_new(o, "refused", g->refused ? json_string(g->refused) : json_null());
        json_object_set_new(o, "keep", keep);
        json_object_set_new(o, "remove", rem);
        json_array_append_new(f->groups, o);
        return;
    }
    printf("source '%s': keep %zu, remove %zu\n", g->source, g->n_keep, g->n_remove);
    for (i = 0; i < g->n; i++) {
        const struct cairn_forget_item *it = &g->items[i];
        char ts[32], why[512] = "";
        utc(it->time_ns, ts, sizeof ts);
        if (it->decision.keep)
            cairn_policy_reasons(f->policy, &it->decision, why, sizeof why);
        printf("  %-6s %.12s  %s%s%s%s%s%s\n", it->decision.keep ? "keep" : "remove", it->id,
               ts, *why ? "  " : "", why, *it->tags ? "  [tags: " : "", it->tags,
               *it->tags ? "]" : "");
    }
    if (g->refused)
        printf("  refused: %s\n", g->refused);
}

int cmd_forget(struct cli *c, int argc, char **argv)
{
    const char *source = NULL, *last = NULL, *hourly = NULL, *daily = NULL, *weekly = NULL,
               *monthly = NULL, *yearly = NULL, *within = NULL, *policy_text = NULL;
    const char **tags = NULL;
    size_t n_tags = 0;
    int dry_run = 0, do_prune = 0;
    struct prune_args pa;
    struct opt opts[] = {{"source", 1, 0, &source, NULL, NULL, NULL},
                         {"keep-last", 1, 0, &last, NULL, NULL, NULL},
                         {"keep-hourly", 1, 0, &hourly, NULL, NULL, NULL},
                         {"keep-daily", 1, 0, &daily, NULL, NULL, NULL},
                         {"keep-weekly", 1, 0, &weekly, NULL, NULL, NULL},
                         {"keep-monthly", 1, 0, &monthly, NULL, NULL, NULL},
                         {"keep-yearly", 1, 0, &yearly, NULL, NULL, NULL},
                         {"keep-within", 1, 0, &within, NULL, NULL, NULL},
                         {"keep-tag", 1, 1, NULL, &tags, &n_tags, NULL},
                         {"policy", 1, 0, &policy_text, NULL, NULL, NULL},
                         {"dry-run", 0, 0, NULL, NULL, NULL, &dry_run},
                         {"prune", 0, 0, NULL, NULL, NULL, &do_prune},
                         {"max-unused", 1, 0, &pa.max_unused, NULL, NULL, NULL},
                         {"max-repack-size", 1, 0, &pa.max_repack, NULL, NULL, NULL},
                         {"grace", 1, 0, &pa.grace, NULL, NULL, NULL},
                         {"lock-wait", 1, 0, &pa.lock_wait, NULL, NULL, NULL},
                         {"verbose", 0, 0, NULL, NULL, NULL, &pa.verbose},
                         {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    const char *usage =
        "cairn forget [--source NAME] [--keep-last N] [--keep-hourly N] [--keep-daily N] "
        "[--keep-weekly N] [--keep-monthly N] [--keep-yearly N] [--keep-within DURATION] "
        "[--keep-tag TAG]... [--policy RULES] [--dry-run] [--json] [--prune [PRUNE OPTIONS]] | "
        "cairn forget SNAP... [--dry-run]";
    struct cairn_policy pol;
    struct cairn_forget_opts fo;
    struct cairn_forget_result res;
    struct forget_ctx fc;
    struct cairn_prune_opts po;
    struct cairn_pg_retention pgret;
    struct cairn_my_retention myret;
    cairn_repo *repo = NULL;
    cairn_err err;
    size_t i;
    int rc;
    memset(&pa, 0, sizeof pa);
    memset(&pol, 0, sizeof pol);
    rc = cli_parse(c, argc, argv, opts, usage);
    if (rc)
        goto out_free;
    if (policy_text && cairn_policy_parse(policy_text, &pol, &err) != CAIRN_OK) {
        cli_error("--policy: %s", err.msg);
        rc = EXIT_USAGE;
        goto out_free;
    }
    {
        const char *const vals[] = {last, hourly, daily, weekly, monthly, yearly};
        const char *const names[] = {"keep-last", "keep-hourly", "keep-daily",
                                     "keep-weekly", "keep-monthly", "keep-yearly"};
        int *slots[] = {&pol.last, &pol.hourly, &pol.daily, &pol.weekly, &pol.monthly,
                        &pol.yearly};
        for (i = 0; i < 6; i++) {
            if (!vals[i])
                continue;
            if (cairn_parse_count(vals[i], slots[i], &err) != CAIRN_OK) {
                cli_error("--%s: %s", names[i], err.msg);
                rc = EXIT_USAGE;
                goto out_free;
            }
        }
    }
    if (within && cairn_parse_duration(within, &pol.within_s, &err) != CAIRN_OK) {
        cli_error("--keep-within: %s", err.msg);
        rc = EXIT_USAGE;
        goto out_free;
    }
    for (i = 0; i < n_tags; i++)
        if (cairn_policy_add_tag(&pol, tags[i], &err) != CAIRN_OK) {
            cli_error("--keep-tag: %s", err.msg);
            rc = EXIT_USAGE;
            goto out_free;
        }
    if (c->nargs == 0 && cairn_policy_is_empty(&pol)) {
        cli_error("refusing to forget without a keep rule: that would remove every snapshot "
                  "(give --keep-last, --keep-hourly, --keep-daily, --keep-weekly, "
                  "--keep-monthly, --keep-yearly, --keep-within or --keep-tag; or snapshot ids)");
        rc = EXIT_USAGE;
        goto out_free;
    }
    if (c->nargs && !cairn_policy_is_empty(&pol)) {
        cli_error("give either snapshot ids or keep rules, not both");
        rc = EXIT_USAGE;
        goto out_free;
    }
    pa.dry_run = dry_run;
    if (!do_prune && (pa.max_unused || pa.max_repack || pa.grace || pa.lock_wait)) {
        cli_error("--max-unused, --max-repack-size, --grace and --lock-wait go with --prune");
        rc = EXIT_USAGE;
        goto out_free;
    }
    if (do_prune && (rc = prune_options(&pa, &po)) != 0)
        goto out_free;
    if ((rc = cli_open_repo(c, &repo)) != 0)
        goto out_free;

    memset(&fo, 0, sizeof fo);
    memset(&fc, 0, sizeof fc);
    fc.c = c;
    fc.policy = &pol;
    fc.groups = c->json ? json_array() : NULL;
    fo.policy = c->nargs ? NULL : &pol;
    fo.source = source;
    fo.ids = (const char *const *)c->args;
    fo.n_ids = (size_t)c->nargs;
    fo.dry_run = dry_run;
    fo.report = forget_report;
    fo.report_arg = &fc;
    /* Log retention (cairn_log_retention_fn in engine/prune.h): PostgreSQL WAL,
     * then MariaDB/MySQL binlogs (the binlog hook calls the WAL hook first). */
    memset(&pgret, 0, sizeof pgret);
    pgret.report = prune_line;
    pgret.report_arg = c;
    memset(&myret, 0, sizeof myret);
    myret.report = prune_line;
    myret.report_arg = c;
    myret.next = cairn_pg_log_retention;
    myret.next_arg = &pgret;
    fo.log_retention = cairn_my_log_retention;
    fo.log_retention_arg = &myret;
    if (!c->json && !c->nargs) {
        char p[512];
        printf("applying policy: %s (calendar rules in UTC)\n",
               cairn_policy_format(&pol, p, sizeof p));
    }
    cairn_err_clear(&err);
    rc = cairn_forget(repo, &fo, &res, &err);
    if (rc != CAIRN_OK) {
        cli_error("forget: %s", err.msg);
        json_decref(fc.groups);
        rc = EXIT_ERR;
        goto out;
    }
    if (c->json) {
        json_t *o = json_object(), *pj = NULL;
        char p[512];
        json_object_set_new(o, "dry_run", json_boolean(dry_run));
        json_object_set_new(o, "policy", json_string(cairn_policy_format(&pol, p, sizeof p)));
        json_object_set_new(o, "groups", fc.groups);
        json_object_set_new(o, "kept", json_integer((json_int_t)res.kept));
        json_object_set_new(o, "removed", json_integer((json_int_t)res.removed));
        rc = EXIT_OK;
        if (do_prune)
            rc = run_prune(c, repo, &po, &pj);
        if (pj)
            json_object_set_new(o, "prune", pj);
        cli_print_json(o);
    } else {
        printf("%s %llu snapshot%s, kept %llu%s\n", dry_run ? "would remove" : "removed",
               (unsigned long long)res.removed, res.removed == 1 ? "" : "s",
               (unsigned long long)res.kept,
               dry_run ? " (dry run: nothing was changed)"
               : res.removed && !do_prune
                   ? " (run 'cairn prune' to free the space their data takes)"
                   : "");
        rc = EXIT_OK;
        if (do_prune)
            rc = run_prune(c, repo, &po, NULL);
    }
    if (rc == EXIT_OK && res.refused_groups) {
        cli_error("%llu source%s refused (see above): nothing was removed there",
                  (unsigned long long)res.refused_groups, res.refused_groups == 1 ? "" : "s");
        rc = EXIT_ERR;
    }
out:
    cairn_repo_free(repo);
out_free:
    cairn_policy_clear(&pol);
    free(tags);
    return rc;
}

/* ---- tag ---- */

int cmd_tag(struct cli *c, int argc, char **argv)
{
    const char **add = NULL, **rem = NULL;
    size_t n_add = 0, n_rem = 0;
    struct opt opts[] = {{"add", 1, 1, NULL, &add, &n_add, NULL},
                         {"remove", 1, 1, NULL, &rem, &n_rem, NULL},
                         {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    char old_id[CAIRN_HEX_LEN + 1], new_id[CAIRN_HEX_LEN + 1];
    cairn_repo *repo = NULL;
    cairn_err err;
    int rc = cli_parse(c, argc, argv, opts, "cairn tag SNAP [--add TAG]... [--remove TAG]...");
    if (rc)
        goto out;
    if (c->nargs != 1 || (n_add == 0 && n_rem == 0)) {
        cli_error("usage: cairn tag SNAP [--add TAG]... [--remove TAG]... (one snapshot, at "
                  "least one change)");
        rc = EXIT_USAGE;
        goto out;
    }
    if ((rc = cli_open_repo(c, &repo)) != 0)
        goto out;
    cairn_err_clear(&err);
    if (cairn_snapshot_retag(repo, c->args[0], add, n_add, rem, n_rem, old_id, new_id, &err) !=
        CAIRN_OK) {
        cli_error("tag: %s", err.msg);
        rc = EXIT_ERR;
        goto out;
    }
    if (c->json) {
        json_t *o = json_object();
        json_object_set_new(o, "old", json_string(old_id));
        json_object_set_new(o, "id", json_string(new_id));
        json_object_set_new(o, "changed", json_boolean(strcmp(old_id, new_id) != 0));
        cli_print_json(o);
    } else {
        if (!c->quiet)
            fprintf(stderr, strcmp(old_id, new_id) ? "snapshot %.12s is now %.12s\n"
                                                   : "snapshot %.12s: tags unchanged\n",
                    old_id, new_id);
        printf("%s\n", new_id);
    }
    rc = EXIT_OK;
out:
    cairn_repo_free(repo);
    free(add);
    free(rem);
    return rc;
}

/* ---- unlock ---- */

struct unlock_ctx {
    struct cli *c;
    cairn_repo *repo;
    int remove_all, list_only, failed;
    unsigned removed, kept;
    json_t *arr;
};

static int unlock_one(void *arg, const struct cairn_lock_info *info)
{
    struct unlock_ctx *u = arg;
    char what[600];
    int remove = !u->list_only && (u->remove_all || (info->readable && info->stale));
    cairn_err err;
    cairn_lock_describe(info, what, sizeof what);
    if (remove && cairn_lock_remove(u->repo, info->key, &err) != CAIRN_OK) {
        cli_error("cannot remove %s: %s", what, err.msg);
        u->failed = 1;
        remove = 0;
    }
    if (remove)
        u->removed++;
    else
        u->kept++;
    if (u->arr) {
        json_t *o = json_object();
        json_object_set_new(o, "key", json_string(info->key));
        json_object_set_new(o, "kind", json_string(!info->readable  ? "unreadable"
                                                   : info->exclusive ? "exclusive"
                                                                     : "shared"));
        json_object_set_new(o, "operation", json_string(info->operation));
        json_object_set_new(o, "host", json_string(info->host));
        json_object_set_new(o, "pid", json_integer(info->pid));
        json_object_set_new(o, "time_ns", json_integer(info->time_ns));
        json_object_set_new(o, "expires_ns", json_integer(info->expires_ns));
        json_object_set_new(o, "stale", json_boolean(info->stale));
        json_object_set_new(o, "removed", json_boolean(remove));
        json_array_append_new(u->arr, o);
    } else {
        printf("%s %s%s%s%s\n", remove ? "removed" : u->list_only ? "lock" : "kept", what,
               info->stale ? " (stale: " : "", info->stale ? info->why_stale : "",
               info->stale ? ")" : "");
    }
    return 0;
}

int cmd_unlock(struct cli *c, int argc, char **argv)
{
    struct unlock_ctx u;
    struct opt opts[] = {{"remove-all", 0, 0, NULL, NULL, NULL, &u.remove_all},
                         {"list", 0, 0, NULL, NULL, NULL, &u.list_only},
                         {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    cairn_repo *repo = NULL;
    cairn_err err;
    int rc;
    memset(&u, 0, sizeof u);
    rc = cli_parse(c, argc, argv, opts, "cairn unlock [--list] [--remove-all] [--json]");
    if (rc || (rc = cli_open_repo(c, &repo)) != 0)
        return rc;
    u.c = c;
    u.repo = repo;
    u.arr = c->json ? json_array() : NULL;
    cairn_err_clear(&err);
    if (cairn_lock_list(repo, unlock_one, &u, &err) != CAIRN_OK) {
        cli_error("%s", err.msg);
        json_decref(u.arr);
        cairn_repo_free(repo);
        return EXIT_ERR;
    }
    if (u.arr)
        cli_print_json(u.arr);
    else if (!c->quiet && !u.list_only)
        printf("%u lock%s removed, %u left%s\n", u.removed, u.removed == 1 ? "" : "s", u.kept,
               u.kept && !u.remove_all ? " (live: held by running processes; --remove-all "
                                         "removes them, only if you are sure they are gone)"
                                       : "");
    cairn_repo_free(repo);
    return u.failed ? EXIT_ERR : EXIT_OK;
}

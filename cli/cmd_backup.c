/* cli/cmd_backup.c — cairn backup PATH... */
#include <stdlib.h>
#include <string.h>

#include "../engine/backup.h"
#include "cli.h"

#define META_MAX (64u << 10)

/* --meta: a JSON object whose sections are merged into the manifest. Only
 * what the agent records about a Kubernetes backup (its data-mover Job,
 * agent/csi_copy.h, passes them): nothing here can overwrite the fields the
 * engine writes (id, tree, time, source, ...). NULL after printing the
 * error. */
static json_t *parse_meta(const char *text)
{
    static const char *const allowed[] = {"kubernetes", "snapshot", "postgres", "mysql"};
    json_error_t je;
    json_t *m, *v;
    const char *key;
    size_t i;
    if (strlen(text) > META_MAX) {
        cli_error("--meta is longer than %u bytes", META_MAX);
        return NULL;
    }
    if (!(m = json_loads(text, JSON_REJECT_DUPLICATES, &je)) || !json_is_object(m)) {
        cli_error("--meta is not a JSON object%s%s", m ? "" : ": ", m ? "" : je.text);
        json_decref(m);
        return NULL;
    }
    json_object_foreach(m, key, v) {
        int ok = 0;
        for (i = 0; i < sizeof allowed / sizeof *allowed; i++)
            ok |= strcmp(key, allowed[i]) == 0;
        if (!ok || !json_is_object(v)) {
            if (ok)
                cli_error("--meta: the section '%s' is not a JSON object", key);
            else
                cli_error("--meta: '%.64s' is not one of the sections kubernetes, snapshot, "
                          "postgres, mysql", key);
            json_decref(m);
            return NULL;
        }
    }
    return m;
}

int cmd_backup(struct cli *c, int argc, char **argv)
{
    const char **tags = NULL, **excludes = NULL, *source = NULL;
    size_t ntags = 0, nexcl = 0;
    int force = 0, ignore_dev = 0, rc;
    const char *workers = NULL, *stdin_name = NULL, *meta_text = NULL, *consistency = NULL;
    int use_stdin = 0;
    json_t *meta = NULL;
    struct opt opts[] = {
        {"stdin", 0, 0, NULL, NULL, NULL, &use_stdin},
        {"stdin-filename", 1, 0, &stdin_name, NULL, NULL, NULL},
        {"tag", 1, 1, NULL, &tags, &ntags, NULL},
        {"exclude", 1, 1, NULL, &excludes, &nexcl, NULL},
        {"source", 1, 0, &source, NULL, NULL, NULL},
        {"force", 0, 0, NULL, NULL, NULL, &force},
        {"ignore-device", 0, 0, NULL, NULL, NULL, &ignore_dev},
        {"workers", 1, 0, &workers, NULL, NULL, NULL},
        {"meta", 1, 0, &meta_text, NULL, NULL, NULL},
        {"consistency", 1, 0, &consistency, NULL, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, NULL},
    };
    struct cairn_backup_opts bo;
    struct cairn_backup_result res;
    cairn_repo *repo = NULL;
    cairn_err err;
    rc = cli_parse(c, argc, argv, opts,
                   "cairn backup PATH... [--tag T]... [--source NAME] [--exclude GLOB]... "
                   "[--force] [--ignore-device] [--json]\n"
                   "       [--consistency none|crash|fs|app] [--meta JSON]\n"
                   "       cairn backup --stdin [--stdin-filename NAME] [--tag T]... [--source NAME]");
    if (rc)
        goto out;
    if (use_stdin && c->nargs) {
        cli_error("--stdin backs up standard input only: give no paths with it");
        rc = EXIT_USAGE;
        goto out;
    }
    if (stdin_name && !use_stdin) {
        cli_error("--stdin-filename goes with --stdin");
        rc = EXIT_USAGE;
        goto out;
    }
    if (!use_stdin && c->nargs == 0) {
        cli_error("nothing to back up: give one or more paths");
        rc = EXIT_USAGE;
        goto out;
    }
    if (consistency && strcmp(consistency, "none") != 0 && strcmp(consistency, "crash") != 0 &&
        strcmp(consistency, "fs") != 0 && strcmp(consistency, "app") != 0) {
        cli_error("--consistency '%.32s' is not none, crash, fs or app", consistency);
        rc = EXIT_USAGE;
        goto out;
    }
    if (meta_text && !(meta = parse_meta(meta_text))) {
        rc = EXIT_USAGE;
        goto out;
    }
    if ((rc = cli_open_repo(c, &repo)) != 0)
        goto out;
    memset(&bo, 0, sizeof bo);
    bo.paths = (const char *const *)c->args;
    bo.n_paths = (size_t)c->nargs;
    bo.source = source;
    bo.tags = tags;
    bo.n_tags = ntags;
    bo.excludes = excludes;
    bo.n_excludes = nexcl;
    bo.force_read = force;
    bo.ignore_device = ignore_dev;
    bo.consistency = consistency;
    bo.extra = meta;
    if (use_stdin) {
        bo.stream_name = stdin_name ? stdin_name : "stdin";
        bo.stream_fd = 0;
    }
    bo.workers = workers ? atoi(workers) : 0;
    bo.warn = cli_warn_cb;
    bo.warn_arg = c;
    if (c->progress && !c->quiet) {
        bo.progress = cli_backup_progress_cb;
        bo.progress_arg = c;
    }
    cairn_err_clear(&err);
    if (cairn_backup_run(repo, &bo, &res, &err) != CAIRN_OK) {
        cli_progress(c, "", 0);
        cli_error("backup failed: %s (no snapshot was recorded)", err.msg);
        rc = EXIT_ERR;
        goto out;
    }
    {
        char line[256], r[32], n[32], s[32];
        cairn_format_size(res.bytes_read, r, sizeof r);
        cairn_format_size(res.bytes_new, n, sizeof n);
        cairn_format_size(res.bytes_stored, s, sizeof s);
        snprintf(line, sizeof line,
                 "snapshot %.12s: %llu files, %llu dirs, %s read, %s new, %s stored, %.1fs%s",
                 res.id, (unsigned long long)res.files, (unsigned long long)res.dirs, r, n, s,
                 res.duration, res.partial ? " (PARTIAL: some files could not be read)" : "");
        cli_progress(c, "", 0);
        if (!c->quiet)
            fprintf(stderr, "%s\n", line);
    }
    if (c->json) {
        json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:b, s:I, s:s?}", "id",
                              res.id, "files", (json_int_t)res.files, "dirs",
                              (json_int_t)res.dirs, "bytes_read", (json_int_t)res.bytes_read,
                              "bytes_new", (json_int_t)res.bytes_new, "bytes_stored",
                              (json_int_t)res.bytes_stored, "total_size",
                              (json_int_t)res.total_size, "duration", res.duration, "partial",
                              res.partial, "errors", (json_int_t)res.errors, "parent",
                              res.parent[0] ? res.parent : NULL);
        cli_print_json(o);
    } else {
        printf("%s\n", res.id);
    }
    rc = res.partial ? EXIT_PARTIAL : EXIT_OK;
out:
    cairn_repo_free(repo);
    json_decref(meta);
    free(tags);
    free(excludes);
    return rc;
}

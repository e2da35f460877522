/* cli/cmd_restore.c — cairn restore, cairn dump */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../restore/restore.h"
#include "../engine/lock.h"
#include "cli.h"

static void on_progress(void *arg, uint64_t files, uint64_t bytes, uint64_t total_files,
                        uint64_t total_bytes)
{
    struct cli *c = arg;
    static double start;
    char line[256], b[32], t[32], rate[32], eta[32];
    if (!start)
        start = cairn_mono();
    cairn_format_size(bytes, b, sizeof b);
    cairn_format_size(total_bytes, t, sizeof t);
    cli_rate_eta(start, bytes, total_bytes, rate, sizeof rate, eta, sizeof eta);
    if (total_bytes)
        snprintf(line, sizeof line, "restored %llu/%llu files, %s of %s (%.0f%%), %s/s%s",
                 (unsigned long long)files, (unsigned long long)total_files, b, t,
                 100.0 * (double)bytes / (double)total_bytes, rate, eta);
    else
        snprintf(line, sizeof line, "restored %llu files, %s, %s/s", (unsigned long long)files,
                 b, rate);
    cli_progress(c, line, 0);
}

int cmd_restore(struct cli *c, int argc, char **argv)
{
    const char *target = NULL, **includes = NULL, *workers = NULL;
    size_t ninc = 0;
    int overwrite = 0, numeric = 0, verify = 0, rc;
    struct opt opts[] = {
        {"target", 1, 0, &target, NULL, NULL, NULL},
        {"include", 1, 1, NULL, &includes, &ninc, NULL},
        {"overwrite", 0, 0, NULL, NULL, NULL, &overwrite},
        {"numeric-owner", 0, 0, NULL, NULL, NULL, &numeric},
        {"verify", 0, 0, NULL, NULL, NULL, &verify},
        {"workers", 1, 0, &workers, NULL, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, NULL},
    };
    cairn_repo *repo = NULL;
    struct cairn_snapshot *snap = NULL;
    struct cairn_restore_opts ro;
    struct cairn_restore_stats st;
    cairn_err err;
    rc = cli_parse(c, argc, argv, opts,
                   "cairn restore SNAP --target DIR [--include GLOB]... [--overwrite] [--verify]");
    if (rc)
        goto out;
    if (c->nargs != 1 || !target) {
        cli_error("usage: cairn restore SNAP --target DIR [--include GLOB]... [--overwrite]");
        rc = EXIT_USAGE;
        goto out;
    }
    if ((rc = cli_open_repo(c, &repo)) != 0)
        goto out;
    cairn_err_clear(&err);
    if (cairn_repo_snapshot_get(repo, c->args[0], NULL, &snap, &err) != CAIRN_OK) {
        cli_error("%s", err.msg);
        rc = EXIT_ERR;
        goto out;
    }
    memset(&ro, 0, sizeof ro);
    memset(&st, 0, sizeof st);
    ro.target = target;
    ro.includes = includes;
    ro.n_includes = ninc;
    ro.overwrite = overwrite;
    ro.numeric_owner = numeric;
    ro.verify_full = verify;
    /* remote stores: one reader per connection, each request costs a round trip */
    if (strncmp(c->repo, "s3://", 5) == 0)
        ro.workers = c->store.connections ? c->store.connections : 8;
    if (workers) {
        ro.workers = atoi(workers);
        if (ro.workers < 1 || ro.workers > 64) {
            cli_error("--workers takes 1..64, not '%s'", workers);
            rc = EXIT_USAGE;
            goto out;
        }
    }
    ro.warn = cli_warn_cb;
    ro.warn_arg = c;
    if (c->progress && !c->quiet) {
        ro.progress = on_progress;
        ro.progress_arg = c;
    }
    {
        struct cairn_lock *lease = NULL;
        if (cli_read_lease(repo, "restore", &lease) != 0) {
            rc = CAIRN_FATAL;
            err.code = CAIRN_FATAL;
            snprintf(err.msg, sizeof err.msg, "a prune is running");
        } else {
            rc = cairn_restore(repo, snap, &ro, &st, &err);
            cairn_lock_release(lease, NULL);
        }
    }
    cli_progress(c, "", 0);
    if (rc != CAIRN_OK && rc != CAIRN_WARN) {
        cli_error("restore failed: %s", err.msg);
        rc = EXIT_ERR;
        goto out;
    }
    if (!c->quiet) {
        char b[32];
        cairn_format_size(st.bytes, b, sizeof b);
        fprintf(stderr, "restored snapshot %.12s into '%s': %llu files, %llu dirs, %s\n",
                snap->id, target, (unsigned long long)st.files, (unsigned long long)st.dirs, b);
    }
    if (rc == CAIRN_WARN) {
        cli_error("%llu entries could not be restored (named above); the rest were restored",
                  (unsigned long long)st.failed);
        rc = EXIT_ERR;
    } else {
        rc = EXIT_OK;
    }
out:
    cairn_snapshot_free(snap);
    cairn_repo_free(repo);
    free(includes);
    return rc;
}

int cmd_dump(struct cli *c, int argc, char **argv)
{
    const char *format = "pax";
    struct opt opts[] = {{"format", 1, 0, &format, NULL, NULL, NULL},
                         {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    cairn_repo *repo = NULL;
    struct cairn_snapshot *snap = NULL;
    cairn_err err;
    int rc = cli_parse(c, argc, argv, opts, "cairn dump SNAP [PATH] [--format tar|pax|zip]");
    if (rc)
        return rc;
    if (c->nargs < 1 || c->nargs > 2) {
        cli_error("usage: cairn dump SNAP [PATH] [--format tar|pax|zip]");
        return EXIT_USAGE;
    }
    if (isatty(1)) {
        cli_error("refusing to write an archive to a terminal (redirect stdout to a file or pipe)");
        return EXIT_USAGE;
    }
    if ((rc = cli_open_repo(c, &repo)) != 0)
        return rc;
    cairn_err_clear(&err);
    if (cairn_repo_snapshot_get(repo, c->args[0], NULL, &snap, &err) != CAIRN_OK) {
        cli_error("%s", err.msg);
        rc = EXIT_ERR;
        goto out;
    }
    {
        struct cairn_lock *lease = NULL;
        if (cli_read_lease(repo, "dump", &lease) != 0) {
            rc = CAIRN_FATAL;
            err.code = CAIRN_FATAL;
            snprintf(err.msg, sizeof err.msg, "a prune is running");
        } else {
            rc = cairn_dump(repo, snap, c->nargs == 2 ? c->args[1] : NULL, format, 1,
                            cli_warn_cb, c, &err);
            cairn_lock_release(lease, NULL);
        }
    }
    if (rc == CAIRN_WARN) {
        cli_warn("the archive is partial: some entries could not be written (named above)");
        rc = EXIT_PARTIAL;
    } else if (rc != CAIRN_OK) {
        cli_error("dump failed: %s", err.msg);
        rc = EXIT_ERR;
    } else {
        rc = EXIT_OK;
    }
out:
    cairn_snapshot_free(snap);
    cairn_repo_free(repo);
    return rc;
}

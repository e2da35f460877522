/* cli/cmd_copy.c — cairn copy: copy snapshots into a second repository. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "../engine/copy.h"
#include "cli.h"

#define USAGE                                                                                 \
    "cairn copy --to URL [--to-password-file FILE] [--to-catalog PATH] [SNAP...] "            \
    "[--source NAME] [--tag T]... [--dry-run] [--workers N] [--json]"

struct out {
    struct cli *c;
    json_t *items; /* --json */
};

static const char *status_name(enum cairn_copy_status s)
{
    switch (s) {
    case CAIRN_COPY_COPIED:
        return "copied";
    case CAIRN_COPY_SKIPPED:
        return "skipped";
    case CAIRN_COPY_WOULD:
        return "would-copy";
    case CAIRN_COPY_FAILED:
        return "failed";
    }
    return "?";
}

static void on_item(void *arg, const struct cairn_copy_item *it)
{
    struct out *o = arg;
    char nb[32], sb[32], ts[64];
    cairn_format_size(it->bytes_new, nb, sizeof nb);
    cairn_format_size(it->bytes_stored, sb, sizeof sb);
    cairn_format_time(it->time_ns, ts, sizeof ts);
    cli_progress(o->c, "", 0);
    if (it->status == CAIRN_COPY_FAILED)
        cli_error("cannot copy snapshot %.12s: %s", it->src_id, it->err ? it->err->msg : "");
    if (o->items) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "status", status_name(it->status),
                              "snapshot", it->src_id, "copy", it->dst_id, "source", it->source,
                              "time", ts);
        if (j && (it->status == CAIRN_COPY_COPIED || it->status == CAIRN_COPY_FAILED)) {
            json_object_set_new(j, "files", json_integer((json_int_t)it->files));
            json_object_set_new(j, "bytes_read", json_integer((json_int_t)it->bytes_read));
            json_object_set_new(j, "bytes_new", json_integer((json_int_t)it->bytes_new));
            json_object_set_new(j, "bytes_stored", json_integer((json_int_t)it->bytes_stored));
        }
        if (j && it->status == CAIRN_COPY_FAILED && it->err)
            json_object_set_new(j, "error", json_string(it->err->msg));
        if (j)
            json_array_append_new(o->items, j);
        return;
    }
    switch (it->status) {
    case CAIRN_COPY_COPIED:
        printf("copied %.12s -> %.12s (%llu files, %s new, %s stored)\n", it->src_id, it->dst_id,
               (unsigned long long)it->files, nb, sb);
        break;
    case CAIRN_COPY_SKIPPED:
        if (!o->c->quiet)
            printf("skipped %.12s (already copied as %.12s)\n", it->src_id, it->dst_id);
        break;
    case CAIRN_COPY_WOULD:
        printf("would copy %.12s (%s, %s)\n", it->src_id, it->source, ts);
        break;
    case CAIRN_COPY_FAILED:
        break;
    }
    fflush(stdout);
}

static void on_progress(void *arg, size_t n, size_t count, const char *src_id,
                        uint64_t bytes_read, const char *path)
{
    struct out *o = arg;
    static double start;
    char line[512], r[32], rate[32], eta[32];
    if (!start)
        start = cairn_mono();
    cairn_format_size(bytes_read, r, sizeof r);
    cli_rate_eta(start, bytes_read, 0, rate, sizeof rate, eta, sizeof eta);
    snprintf(line, sizeof line, "copying %zu/%zu %.12s: %s read, %s/s  %.50s", n, count, src_id,
             r, rate, path ? path : "");
    cli_progress(o->c, line, 0);
}

/* Sets or clears an environment variable (value NULL = unset). */
static void env_put(const char *name, const char *value)
{
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
}

static char *env_dup(const char *name)
{
    const char *v = getenv(name);
    return v ? strdup(v) : NULL;
}

/* Opens the destination with its own password file and catalog: the
 * source's (--password-file / CAIRN_PASSWORD_FILE, --catalog / CAIRN_CATALOG)
 * must not leak into it, so they are hidden from the environment while it
 * opens (keys are unlocked and the catalog opened then, not later). */
static int open_dest(struct cli *c, const char *url, const char *pwfile, const char *catalog,
                     cairn_repo **out)
{
    struct cairn_store_opts so = c->store;
    char *saved_pw = env_dup("CAIRN_PASSWORD_FILE"), *saved_cat = env_dup("CAIRN_CATALOG");
    cairn_err err;
    int rc;
    so.password_file = pwfile;
    unsetenv("CAIRN_PASSWORD_FILE");
    unsetenv("CAIRN_CATALOG");
    cairn_err_clear(&err);
    rc = cairn_repo_open_with(url, catalog, &so, out, &err);
    env_put("CAIRN_PASSWORD_FILE", saved_pw);
    env_put("CAIRN_CATALOG", saved_cat);
    free(saved_pw);
    free(saved_cat);
    if (rc == CAIRN_OK)
        return 0;
    if (strstr(err.msg, "CAIRN_PASSWORD_FILE"))
        cli_error("destination: %s (for the destination: --to-password-file FILE or "
                  "CAIRN_TO_PASSWORD_FILE)",
                  err.msg);
    else
        cli_error("destination: %s", err.msg);
    return EXIT_ERR;
}

int cmd_copy(struct cli *c, int argc, char **argv)
{
    const char *to = NULL, *to_pw = NULL, *to_cat = NULL, *source = NULL, *workers = NULL;
    const char **tags = NULL;
    size_t ntags = 0;
    int dry_run = 0, rc;
    struct opt opts[] = {
        {"to", 1, 0, &to, NULL, NULL, NULL},
        {"to-password-file", 1, 0, &to_pw, NULL, NULL, NULL},
        {"to-catalog", 1, 0, &to_cat, NULL, NULL, NULL},
        {"source", 1, 0, &source, NULL, NULL, NULL},
        {"tag", 1, 1, NULL, &tags, &ntags, NULL},
        {"dry-run", 0, 0, NULL, NULL, NULL, &dry_run},
        {"workers", 1, 0, &workers, NULL, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, NULL},
    };
    cairn_repo *src = NULL, *dst = NULL;
    struct cairn_copy_opts co;
    struct cairn_copy_result res;
    struct out o;
    cairn_err err;

    memset(&o, 0, sizeof o);
    rc = cli_parse(c, argc, argv, opts, USAGE);
    if (rc)
        goto out;
    if (!to || !*to) {
        cli_error("no destination given (use --to URL: a path, file:///path or "
                  "s3://BUCKET/PREFIX)\nusage: %s",
                  USAGE);
        rc = EXIT_USAGE;
        goto out;
    }
    memset(&co, 0, sizeof co);
    if (workers) {
        char *end;
        long v = strtol(workers, &end, 10);
        if (*end || v < 1 || v > 64) {
            cli_error("--workers takes 1..64, not '%s'", workers);
            rc = EXIT_USAGE;
            goto out;
        }
        co.workers = (int)v;
    }
    if (!to_pw && getenv("CAIRN_TO_PASSWORD_FILE") && *getenv("CAIRN_TO_PASSWORD_FILE"))
        to_pw = getenv("CAIRN_TO_PASSWORD_FILE");
    if (!to_cat && getenv("CAIRN_TO_CATALOG") && *getenv("CAIRN_TO_CATALOG"))
        to_cat = getenv("CAIRN_TO_CATALOG");
    if (to_cat && c->catalog && strcmp(to_cat, c->catalog) == 0) {
        cli_error("--to-catalog '%s' is the source's catalog; give the destination its own",
                  to_cat);
        rc = EXIT_USAGE;
        goto out;
    }
    if ((rc = cli_open_repo(c, &src)) != 0) {
        if (rc == EXIT_ERR)
            cli_error("(that was the source repository, --repo / CAIRN_REPO)");
        goto out;
    }
    if ((rc = open_dest(c, to, to_pw, to_cat, &dst)) != 0)
        goto out;

    co.snaps = (const char *const *)c->args;
    co.n_snaps = (size_t)c->nargs;
    co.source = source;
    co.tags = tags;
    co.n_tags = ntags;
    co.dry_run = dry_run;
    co.on_item = on_item;
    co.arg = &o;
    o.c = c;
    if (c->progress && !c->quiet)
        co.progress = on_progress;
    if (c->json && !(o.items = json_array())) {
        cli_error("out of memory");
        rc = EXIT_ERR;
        goto out;
    }
    cairn_err_clear(&err);
    rc = cairn_copy_run(src, dst, &co, &res, &err);
    if (rc != CAIRN_OK && rc != CAIRN_FAILED) {
        cli_error("copy failed: %s", err.msg);
        if (o.items) {
            json_decref(o.items);
            o.items = NULL;
        }
        rc = EXIT_ERR;
        goto out;
    }
    if (o.items) {
        json_t *j = json_pack("{s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "snapshots",
                              o.items, "selected", (json_int_t)res.selected, "copied",
                              (json_int_t)res.copied, "skipped", (json_int_t)res.skipped,
                              "failed", (json_int_t)res.failed, "bytes_read",
                              (json_int_t)res.bytes_read, "bytes_new", (json_int_t)res.bytes_new,
                              "bytes_stored", (json_int_t)res.bytes_stored, "dry_run", dry_run);
        o.items = NULL;
        cli_print_json(j);
    } else if (!c->quiet) {
        char rb[32], nb[32], sb[32];
        cairn_format_size(res.bytes_read, rb, sizeof rb);
        cairn_format_size(res.bytes_new, nb, sizeof nb);
        cairn_format_size(res.bytes_stored, sb, sizeof sb);
        if (dry_run)
            printf("%llu snapshots would be copied, %llu already copied\n",
                   (unsigned long long)(res.selected - res.skipped - res.failed),
                   (unsigned long long)res.skipped);
        else
            printf("copied %llu snapshots, %llu already copied, %llu failed; read %s, "
                   "%s new, %s stored\n",
                   (unsigned long long)res.copied, (unsigned long long)res.skipped,
                   (unsigned long long)res.failed, rb, nb, sb);
    }
    if (rc == CAIRN_FAILED) {
        cli_error("%s (the others were copied; see above)", err.msg);
        rc = EXIT_ERR;
    } else {
        rc = EXIT_OK;
    }
out:
    json_decref(o.items);
    cairn_repo_free(dst);
    cairn_repo_free(src);
    free(tags);
    return rc;
}

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

/* Settings of the destination's store that differ from the source's (another
 * provider, region or account): CAIRN_TO_<NAME> stands for <NAME> while the
 * destination opens (stores read them then, not later). Each group is taken
 * from CAIRN_TO_* as a whole once one of its names is set there, so a
 * destination key is never paired with the source's session token. */
static const char *const env_groups[][24] = {
    {"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID_FILE", "AWS_SECRET_ACCESS_KEY",
     "AWS_SECRET_ACCESS_KEY_FILE", "AWS_SESSION_TOKEN", "AWS_SESSION_TOKEN_FILE", "AWS_PROFILE",
     "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
     "AWS_ROLE_SESSION_NAME", "AWS_STS_REGIONAL_ENDPOINTS", "AWS_ENDPOINT_URL_STS",
     "CAIRN_S3_ROLE_DURATION_SECONDS", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
     "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
     "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_EC2_METADATA_DISABLED",
     "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", NULL},
    {"AWS_REGION", "AWS_REGION_FILE", "AWS_DEFAULT_REGION", "AWS_DEFAULT_REGION_FILE", NULL},
    {"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_S3_FILE", "AWS_ENDPOINT_URL",
     "AWS_ENDPOINT_URL_FILE", NULL},
};
#define MAX_SAVED 40

struct saved_env {
    const char *name[MAX_SAVED];
    char *value[MAX_SAVED]; /* NULL: was unset */
    size_t n;
};

static const char *to_env(const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "CAIRN_TO_%s", name);
    return getenv(buf);
}

/* Sets (value NULL: unsets) name for the destination, remembering the old value. */
static int env_swap(struct saved_env *sv, const char *name, const char *value)
{
    const char *old = getenv(name);
    char *dup = value ? strdup(value) : NULL;
    if (sv->n == MAX_SAVED || (value && !dup)) {
        free(dup);
        return -1;
    }
    sv->name[sv->n] = name;
    sv->value[sv->n] = old ? strdup(old) : NULL;
    if (old && !sv->value[sv->n]) {
        free(dup);
        return -1;
    }
    sv->n++;
    if (dup)
        setenv(name, dup, 1);
    else
        unsetenv(name);
    free(dup);
    return 0;
}

static void env_restore(struct saved_env *sv)
{
    while (sv->n) {
        sv->n--;
        if (sv->value[sv->n])
            setenv(sv->name[sv->n], sv->value[sv->n], 1);
        else
            unsetenv(sv->name[sv->n]);
        free(sv->value[sv->n]);
    }
}

/* Opens the destination with its own password file, catalog and store
 * settings: the source's (--password-file / CAIRN_PASSWORD_FILE, --catalog /
 * CAIRN_CATALOG) are hidden from the environment while it opens (keys are
 * unlocked and the catalog opened then, not later), and CAIRN_TO_AWS_* stand
 * for AWS_*. */
static int open_dest(struct cli *c, const char *url, const char *pwfile, const char *catalog,
                     cairn_repo **out)
{
    struct cairn_store_opts so = c->store;
    struct saved_env sv;
    cairn_err err;
    char buf[96];
    size_t g, k;
    int rc = 0;
    memset(&sv, 0, sizeof sv);
    so.password_file = pwfile;
    if (env_swap(&sv, "CAIRN_PASSWORD_FILE", NULL) != 0 ||
        env_swap(&sv, "CAIRN_CATALOG", NULL) != 0)
        rc = -1;
    for (g = 0; rc == 0 && g < sizeof env_groups / sizeof *env_groups; g++) {
        int any = 0;
        for (k = 0; env_groups[g][k]; k++)
            if (to_env(env_groups[g][k], buf, sizeof buf))
                any = 1;
        for (k = 0; any && rc == 0 && env_groups[g][k]; k++)
            rc = env_swap(&sv, env_groups[g][k], to_env(env_groups[g][k], buf, sizeof buf));
    }
    if (rc != 0) {
        env_restore(&sv);
        cli_error("out of memory");
        return EXIT_ERR;
    }
    cairn_err_clear(&err);
    rc = cairn_repo_open_with(url, catalog, &so, out, &err);
    env_restore(&sv);
    if (rc == CAIRN_OK)
        return 0;
    if (strstr(err.msg, "CAIRN_PASSWORD_FILE"))
        cli_error("destination: %s (for the destination: --to-password-file FILE or "
                  "CAIRN_TO_PASSWORD_FILE)",
                  err.msg);
    else if (strstr(err.msg, "AWS_"))
        cli_error("destination: %s (settings for the destination alone: CAIRN_TO_AWS_...)",
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

    /* a remote source answers each read after a round trip: one reader per
     * connection; a local one is bound by CPU (decompress, verify) */
    co.readers = strncmp(c->repo, "s3://", 5) == 0 ? (c->store.connections ? c->store.connections : 8)
                                                   : 2;
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

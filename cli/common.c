/* cli/common.c — option parsing, messages and repository opening for commands. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../engine/lock.h"
#include "../engine/policy.h"
#include "cli.h"

void cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("cairn: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    fputs("cairn: warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_progress(struct cli *c, const char *line, int done)
{
    if (!c->progress || c->quiet)
        return;
    fprintf(stderr, "\r\033[K%s%s", line, done ? "\n" : "");
    fflush(stderr);
}

void cli_print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
    json_decref(v);
}

static int set_value(const struct opt *o, const char *v)
{
    if (o->multi) {
        const char **p = realloc(*o->list, (*o->count + 2) * sizeof *p);
        if (!p)
            return -1;
        p[(*o->count)++] = v;
        p[*o->count] = NULL;
        *o->list = p;
    } else {
        *o->value = v;
    }
    return 0;
}

int cli_parse(struct cli *c, int argc, char **argv, const struct opt *opts, const char *usage)
{
    int i, only_pos = 0;
    c->args = calloc((size_t)argc + 1, sizeof *c->args);
    c->nargs = 0;
    if (!c->args)
        return EXIT_ERR;
    for (i = 0; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        char name[64];
        const struct opt *o;
        const char *eq;
        if (only_pos || a[0] != '-' || strcmp(a, "-") == 0) {
            c->args[c->nargs++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage: %s\n", usage);
            exit(EXIT_OK);
        }
        a += a[1] == '-' ? 2 : 1;
        eq = strchr(a, '=');
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
        if (eq)
            val = eq + 1;
        if (strcmp(name, "password-file") == 0) {
            /* the name of a file holding the password (never the password:
             * argv is visible to every user in the process list) */
            if (!val) {
                if (i + 1 >= argc)
                    goto missing;
                val = argv[++i];
            }
            c->store.password_file = val;
            /* children (wal-fetch prefetch workers) inherit it, as an
             * absolute path in case they run elsewhere */
            {
                char *abs = realpath(val, NULL);
                setenv("CAIRN_PASSWORD_FILE", abs ? abs : val, 1);
                free(abs);
            }
            continue;
        }
        if (strcmp(name, "repo") == 0 || strcmp(name, "r") == 0 ||
            strcmp(name, "catalog") == 0) {
            if (!val) {
                if (i + 1 >= argc)
                    goto missing;
                val = argv[++i];
            }
            if (strcmp(name, "catalog") == 0)
                c->catalog = val;
            else
                c->repo = val;
            continue;
        }
        if (strcmp(name, "connections") == 0 || strcmp(name, "limit-upload") == 0 ||
            strcmp(name, "limit-download") == 0 || strcmp(name, "ca-file") == 0 ||
            strcmp(name, "storage-class") == 0 || strcmp(name, "sse") == 0 ||
            strcmp(name, "sse-kms-key") == 0) {
            char *end = NULL;
            if (!val) {
                if (i + 1 >= argc)
                    goto missing;
                val = argv[++i];
            }
            if (strcmp(name, "connections") == 0) {
                long v = strtol(val, &end, 10);
                if (*end || v < 1 || v > 256) {
                    fprintf(stderr, "cairn: error: --connections takes 1..256, not '%s'\n", val);
                    return EXIT_USAGE;
                }
                c->store.connections = (int)v;
            } else if (strncmp(name, "limit-", 6) == 0) {
                double v = strtod(val, &end);
                if (*end || !(v > 0)) {
                    fprintf(stderr, "cairn: error: --%s takes MB/s > 0, not '%s'\n", name, val);
                    return EXIT_USAGE;
                }
                if (name[6] == 'u')
                    c->store.limit_upload_mbps = v;
                else
                    c->store.limit_download_mbps = v;
            } else if (strcmp(name, "ca-file") == 0) {
                c->store.ca_file = val;
            } else if (strcmp(name, "storage-class") == 0) {
                c->store.storage_class = val;
            } else if (strcmp(name, "sse") == 0) {
                c->store.sse = val;
            } else {
                c->store.sse_kms_key = val;
            }
            continue;
        }
        if (strcmp(name, "json") == 0) {
            c->json = 1;
            continue;
        }
        if (strcmp(name, "quiet") == 0 || strcmp(name, "q") == 0) {
            c->quiet = 1;
            continue;
        }
        for (o = opts; o && o->name; o++)
            if (strcmp(o->name, name) == 0)
                break;
        if (!o || !o->name) {
            fprintf(stderr, "cairn: error: unknown option '%s'\nusage: %s\n", argv[i], usage);
            return EXIT_USAGE;
        }
        if (!o->has_value) {
            if (val) {
                fprintf(stderr, "cairn: error: option '--%s' takes no value\n", name);
                return EXIT_USAGE;
            }
            *o->flag = 1;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc)
                goto missing;
            val = argv[++i];
        }
        if (set_value(o, val) != 0)
            return EXIT_ERR;
        continue;
    missing:
        fprintf(stderr, "cairn: error: option '%s' needs a value\nusage: %s\n", argv[i], usage);
        return EXIT_USAGE;
    }
    return 0;
}

int cli_open_repo(struct cli *c, cairn_repo **out)
{
    cairn_err err;
    cairn_err_clear(&err);
    if (!c->repo || !*c->repo) {
        cli_error("no repository given (use --repo PATH or set CAIRN_REPO)");
        return EXIT_USAGE;
    }
    if (cairn_repo_open_with(c->repo, c->catalog, &c->store, out, &err) != CAIRN_OK) {
        cli_error("%s", err.msg);
        return EXIT_ERR;
    }
    return 0;
}

int cli_read_lease(cairn_repo *repo, const char *operation, cairn_lock **out)
{
    struct cairn_lock_opts lo;
    cairn_err err;
    int rc;
    memset(&lo, 0, sizeof lo);
    lo.operation = operation;
    *out = NULL;
    cairn_err_clear(&err);
    rc = cairn_lock_acquire(repo, CAIRN_LOCK_SHARED, &lo, out, &err);
    if (rc == CAIRN_RETRY) { /* a prune holds the repository */
        cli_error("%s", err.msg);
        return EXIT_ERR;
    }
    if (rc != CAIRN_OK) {
        /* read-only credentials or medium: go on without a lease; only a
         * prune running at the same time could then disturb this reader */
        *out = NULL;
    }
    return 0;
}

void cli_rate_eta(double start, uint64_t done, uint64_t total, char *rate, size_t rlen,
                  char *eta, size_t elen)
{
    double el = cairn_mono() - start;
    if (el < 0.001)
        el = 0.001;
    cairn_format_size((uint64_t)((double)done / el), rate, rlen);
    eta[0] = 0;
    if (total > done && done > 0 && el > 1) {
        double left = (double)(total - done) / ((double)done / el);
        snprintf(eta, elen, "  ETA %d:%02d", (int)(left / 60), (int)left % 60);
    }
}

int cli_duration(const char *name, const char *text, int positive, int64_t *seconds)
{
    const char *p = text;
    cairn_err err;
    while (*p >= '0' && *p <= '9')
        p++;
    if (*text && !*p && p - text <= 9) {
        *seconds = strtoll(text, NULL, 10);
    } else if (cairn_parse_duration(text, seconds, &err) != CAIRN_OK) {
        cli_error("--%s: %s", name, err.msg);
        return EXIT_USAGE;
    }
    if (positive && *seconds <= 0) {
        cli_error("--%s must be more than 0 (e.g. 30m, 1h)", name);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

void cli_warn_cb(void *arg, const char *msg)
{
    struct cli *c = arg;
    cli_progress(c, "", 0);
    cli_warn("%s", msg);
}

void cli_backup_progress_cb(void *arg, uint64_t files, uint64_t bytes_read, uint64_t bytes_new,
                            uint64_t done, uint64_t expected, const char *current)
{
    struct cli *c = arg;
    static double start;
    char line[512], r[32], n[32], rate[32], eta[32];
    if (!start)
        start = cairn_mono();
    cairn_format_size(bytes_read, r, sizeof r);
    cairn_format_size(bytes_new, n, sizeof n);
    /* ETA from the parent snapshot's size, when there is one */
    cli_rate_eta(start, done, expected, rate, sizeof rate, eta, sizeof eta);
    snprintf(line, sizeof line, "%llu files, %s read, %s new, %s/s%s  %.50s",
             (unsigned long long)files, r, n, rate, eta, current ? current : "");
    cli_progress(c, line, 0);
}

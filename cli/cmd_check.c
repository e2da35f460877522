/* cli/cmd_check.c — cairn check [--read-data | --read-data-subset N/M|P%|SIZE] */
#include <string.h>

#include "../engine/check.h"
#include "../engine/lock.h"
#include "cli.h"

static void on_report(void *arg, const char *msg)
{
    (void)arg;
    printf("%s\n", msg);
    fflush(stdout);
}

int cmd_check(struct cli *c, int argc, char **argv)
{
    static const char usage[] = "cairn check [--read-data | --read-data-subset N/M|P%|SIZE]";
    int read_data = 0, rc;
    const char *subset = NULL;
    struct opt opts[] = {{"read-data", 0, 0, NULL, NULL, NULL, &read_data},
                         {"read-data-subset", 1, 0, &subset, NULL, NULL, NULL},
                         {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    cairn_repo *repo = NULL;
    struct cairn_check_result res;
    struct cairn_check_opts co;
    cairn_err err;
    char what[96];
    rc = cli_parse(c, argc, argv, opts, usage);
    if (rc)
        return rc;
    memset(&co, 0, sizeof co);
    co.read_data = read_data;
    if (subset) {
        if (read_data) {
            cli_error("--read-data reads every pack; --read-data-subset reads some: give one "
                      "of them\nusage: %s",
                      usage);
            return EXIT_USAGE;
        }
        if (cairn_check_parse_subset(subset, &co, &err) != CAIRN_OK) {
            cli_error("%s\nusage: %s", err.msg, usage);
            return EXIT_USAGE;
        }
    }
    if ((rc = cli_open_repo(c, &repo)) != 0)
        return rc;
    cairn_err_clear(&err);
    {
        struct cairn_lock *lease = NULL;
        if (cli_read_lease(repo, "check", &lease) != 0) {
            rc = CAIRN_FATAL;
            err.code = CAIRN_FATAL;
            snprintf(err.msg, sizeof err.msg, "a prune is running");
        } else {
            rc = cairn_check_opts(repo, &co, on_report, NULL, &res, &err);
            cairn_lock_release(lease, NULL);
        }
    }
    cairn_repo_free(repo);
    if (rc != CAIRN_OK) {
        cli_error("check could not run: %s", err.msg);
        return EXIT_ERR;
    }
    if (res.unindexed_packs && !c->quiet)
        printf("note: %llu pack(s) are not in any index (left by an interrupted backup; "
               "harmless)\n",
               (unsigned long long)res.unindexed_packs);
    if (co.subset == CAIRN_CHECK_BUCKET)
        snprintf(what, sizeof what, " (subset %u/%u)", co.n, co.m);
    else if (co.subset == CAIRN_CHECK_PERCENT)
        snprintf(what, sizeof what, " (subset %g%%, chosen at random)", co.percent);
    else if (co.subset == CAIRN_CHECK_BYTES)
        snprintf(what, sizeof what, " (subset of at most %llu bytes, chosen at random)",
                 (unsigned long long)co.bytes);
    else
        what[0] = 0;
    printf("checked %llu snapshots, %llu trees, %llu files, %llu packs%s%llu blobs read\n",
           (unsigned long long)res.snapshots, (unsigned long long)res.trees,
           (unsigned long long)res.files, (unsigned long long)res.packs,
           co.read_data ? ", " : " (no data read; use --read-data), ",
           (unsigned long long)res.blobs_read);
    if (co.read_data)
        printf("data read: %llu of %llu packs, %llu bytes%s\n",
               (unsigned long long)res.packs_read, (unsigned long long)res.packs,
               (unsigned long long)res.bytes_read, what);
    if (res.problems) {
        printf("%llu problem(s) found; %llu file entries affected\n",
               (unsigned long long)res.problems, (unsigned long long)res.affected_files);
        return EXIT_ERR;
    }
    printf("no problems found\n");
    return EXIT_OK;
}

/* cli/cmd_check.c — cairn check [--read-data] */
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
    int read_data = 0, rc;
    struct opt opts[] = {{"read-data", 0, 0, NULL, NULL, NULL, &read_data},
                         {NULL, 0, 0, NULL, NULL, NULL, NULL}};
    cairn_repo *repo = NULL;
    struct cairn_check_result res;
    cairn_err err;
    rc = cli_parse(c, argc, argv, opts, "cairn check [--read-data]");
    if (rc)
        return rc;
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
            rc = cairn_check(repo, read_data, on_report, NULL, &res, &err);
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
    printf("checked %llu snapshots, %llu trees, %llu files, %llu packs%s%llu blobs read\n",
           (unsigned long long)res.snapshots, (unsigned long long)res.trees,
           (unsigned long long)res.files, (unsigned long long)res.packs,
           read_data ? ", " : " (no data read; use --read-data), ",
           (unsigned long long)res.blobs_read);
    if (res.problems) {
        printf("%llu problem(s) found; %llu file entries affected\n",
               (unsigned long long)res.problems, (unsigned long long)res.affected_files);
        return EXIT_ERR;
    }
    printf("no problems found\n");
    return EXIT_OK;
}

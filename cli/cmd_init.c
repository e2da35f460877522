/* cli/cmd_init.c — cairn init */
#include <string.h>

#include "cli.h"

int cmd_init(struct cli *c, int argc, char **argv)
{
    cairn_err err;
    int rc = cli_parse(c, argc, argv, NULL, "cairn init [--repo URL]");
    if (rc)
        return rc;
    if (c->nargs) {
        cli_error("'init' takes no arguments (the repository comes from --repo or CAIRN_REPO)");
        return EXIT_USAGE;
    }
    if (!c->repo || !*c->repo) {
        cli_error("no repository given (use --repo PATH or set CAIRN_REPO)");
        return EXIT_USAGE;
    }
    cairn_err_clear(&err);
    if (cairn_repo_init_with(c->repo, &c->store, &err) != CAIRN_OK) {
        cli_error("%s", err.msg);
        return EXIT_ERR;
    }
    if (!c->quiet)
        fprintf(stderr, "created repository at '%s'\n", c->repo);
    return EXIT_OK;
}

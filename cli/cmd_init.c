/* cli/cmd_init.c — cairn init */
#include <string.h>

#include "cli.h"

int cmd_init(struct cli *c, int argc, char **argv)
{
    cairn_err err;
    int encrypt = 0;
    struct opt opts[] = {
        {"encrypt", 0, 0, NULL, NULL, NULL, &encrypt},
        {NULL, 0, 0, NULL, NULL, NULL, NULL},
    };
    int rc = cli_parse(c, argc, argv, opts,
                       "cairn init [--repo URL] [--encrypt --password-file FILE]");
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
    if (encrypt && !cairn_password_file(&c->store)) {
        cli_error("--encrypt needs a password: give --password-file FILE or set "
                  "CAIRN_PASSWORD_FILE to a file holding it (never the password itself)");
        return EXIT_USAGE;
    }
    if (!encrypt && cairn_password_file(&c->store)) {
        cli_error("a password file was given but not --encrypt (add --encrypt for an encrypted "
                  "repository, or drop --password-file / CAIRN_PASSWORD_FILE)");
        return EXIT_USAGE;
    }
    cairn_err_clear(&err);
    if (cairn_repo_init_ex(c->repo, &c->store, encrypt, &err) != CAIRN_OK) {
        cli_error("%s", err.msg);
        return EXIT_ERR;
    }
    if (!c->quiet)
        fprintf(stderr, "created %srepository at '%s'\n", encrypt ? "encrypted " : "", c->repo);
    if (!c->quiet && encrypt)
        fprintf(stderr, "keep the password safe: without it the data cannot be read\n");
    return EXIT_OK;
}

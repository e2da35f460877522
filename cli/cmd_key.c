/* cli/cmd_key.c — cairn key list|add|remove: the passwords of an encrypted
 * repository (engine/crypto.h). Every key wraps the same master key, so keys
 * can be added and removed without rewriting any data. */
#include <string.h>

#include "cli.h"

static int print_key(void *arg, const struct cairn_keyfile *k, int current)
{
    json_t *arr = arg;
    char when[48];
    cairn_format_time(k->created_ns, when, sizeof when);
    if (arr) {
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:b, s:{s:s, s:i, s:i, s:i}}", "id",
                                             k->id, "created", when, "host", k->host, "current",
                                             current, "kdf", "name", "scrypt", "n_log2",
                                             k->n_log2, "r", k->r, "p", k->p));
        return 0;
    }
    printf("%c %-16s  %.19s  %-24s  scrypt N=2^%d r=%d p=%d\n", current ? '*' : ' ', k->id,
           when, k->host, k->n_log2, k->r, k->p);
    return 0;
}

int cmd_key(struct cli *c, int argc, char **argv)
{
    const char *newpw = NULL;
    struct opt opts[] = {
        {"new-password-file", 1, 0, &newpw, NULL, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, NULL},
    };
    const char *usage = "cairn key list | key add --new-password-file FILE | key remove ID "
                        "(with --password-file FILE of a current key)";
    cairn_store *s = NULL;
    cairn_err err;
    char id[CAIRN_KEY_ID_HEX + 1];
    const char *sub;
    int rc = cli_parse(c, argc, argv, opts, usage);
    if (rc)
        return rc;
    if (c->nargs < 1) {
        cli_error("usage: %s", usage);
        return EXIT_USAGE;
    }
    sub = c->args[0];
    if (!((strcmp(sub, "list") == 0 && c->nargs == 1) ||
          (strcmp(sub, "add") == 0 && c->nargs == 1) ||
          (strcmp(sub, "remove") == 0 && c->nargs == 2))) {
        cli_error("usage: %s", usage);
        return EXIT_USAGE;
    }
    if (strcmp(sub, "add") == 0 && !newpw) {
        cli_error("'key add' needs --new-password-file FILE (a file holding the new password)");
        return EXIT_USAGE;
    }
    if (strcmp(sub, "add") != 0 && newpw) {
        cli_error("--new-password-file is for 'key add'");
        return EXIT_USAGE;
    }
    if (!c->repo || !*c->repo) {
        cli_error("no repository given (use --repo PATH or set CAIRN_REPO)");
        return EXIT_USAGE;
    }
    cairn_err_clear(&err);
    /* unlocks with --password-file / CAIRN_PASSWORD_FILE: only a key holder
     * may list, add or remove keys */
    if (cairn_repo_store_open(c->repo, &c->store, NULL, &s, &err) != CAIRN_OK) {
        cli_error("%s", err.msg);
        return EXIT_ERR;
    }
    if (!cairn_crypt_store_master(s)) {
        cli_error("repository '%s' is not encrypted: it has no keys (create an encrypted one "
                  "with 'cairn init --encrypt')",
                  c->repo);
        cairn_store_free(s);
        return EXIT_ERR;
    }
    if (strcmp(sub, "list") == 0) {
        json_t *arr = c->json ? json_array() : NULL;
        rc = cairn_crypt_key_list(s, print_key, arr, &err);
        if (rc == CAIRN_OK && arr)
            cli_print_json(arr);
        else
            json_decref(arr);
    } else if (strcmp(sub, "add") == 0) {
        rc = cairn_crypt_key_add(s, newpw, id, &err);
        if (rc == CAIRN_OK)
            printf("added key %s\n", id);
    } else {
        rc = cairn_crypt_key_remove(s, c->args[1], id, &err);
        if (rc == CAIRN_OK)
            printf("removed key %s\n", id);
    }
    cairn_store_free(s);
    if (rc != CAIRN_OK) {
        cli_error("key %s: %s", sub, err.msg);
        return EXIT_ERR;
    }
    return EXIT_OK;
}

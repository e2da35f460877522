/* engine/dl.c — optional shared libraries loaded at run time (engine/dl.h). */
#include "dl.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

/* A function pointer is stored through memcpy of dlsym()'s void *, the POSIX
 * way that needs no object-to-function pointer cast. */
_Static_assert(sizeof(void *) == sizeof(void (*)(void)),
               "function pointers must be the size of void *");

static int load(const struct cairn_dl_lib *lib, cairn_err *err)
{
    const char *so = lib->soname;
    const char *env = lib->test_env ? getenv(lib->test_env) : NULL;
    const char *why;
    void *h;
    size_t i;

    if (env && *env)
        so = env;
    dlerror();
    if (!(h = dlopen(so, RTLD_NOW | RTLD_LOCAL))) {
        why = dlerror();
        return cairn_error(err, CAIRN_FATAL,
                           "cannot load %s (needed for %s): %s; install the %s package", so,
                           lib->needed_for, why ? why : "unknown error", lib->package);
    }
    for (i = 0; i < lib->nsyms; i++) {
        void *p;
        dlerror();
        if (!(p = dlsym(h, lib->syms[i].name))) {
            why = dlerror();
            cairn_error(err, CAIRN_FATAL,
                        "cannot load %s (needed for %s): it has no function '%s' (%s); "
                        "install a current %s package",
                        so, lib->needed_for, lib->syms[i].name, why ? why : "not found",
                        lib->package);
            dlclose(h);
            return CAIRN_FATAL;
        }
        memcpy((char *)lib->table + lib->syms[i].offset, &p, sizeof p);
    }
    /* the library stays loaded: h is deliberately never closed */
    return lib->init ? lib->init(err) : CAIRN_OK;
}

int cairn_dl_load(const struct cairn_dl_lib *lib, struct cairn_dl_once *once, cairn_err *err)
{
    int rc;
    pthread_mutex_lock(&once->mu);
    if (!once->done) {
        if (load(lib, &once->err) != CAIRN_OK)
            memset(lib->table, 0, lib->table_size);
        once->done = 1;
    }
    rc = once->err.code;
    if (rc != CAIRN_OK)
        cairn_error(err, rc, "%s", once->err.msg);
    pthread_mutex_unlock(&once->mu);
    return rc;
}

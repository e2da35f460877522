/* engine/dl.c — optional shared libraries loaded at run time (engine/dl.h). */
#include "dl.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

/* A function pointer is stored through memcpy of dlsym()'s void *, the POSIX
 * way that needs no object-to-function pointer cast. */
_Static_assert(sizeof(void *) == sizeof(void (*)(void)),
               "function pointers must be the size of void *");

int cairn_dl_load(const struct cairn_dl_lib *lib, void *table, size_t table_size,
                  cairn_err *err)
{
    const char *so = lib->soname;
    const char *env = lib->test_env ? getenv(lib->test_env) : NULL;
    const char *why;
    void *h;
    size_t i;

    if (env && *env)
        so = env;
    memset(table, 0, table_size);
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
        p = dlsym(h, lib->syms[i].name);
        if (!p) {
            why = dlerror();
            cairn_error(err, CAIRN_FATAL,
                        "cannot load %s (needed for %s): it has no function '%s' (%s); "
                        "install a current %s package",
                        so, lib->needed_for, lib->syms[i].name, why ? why : "not found",
                        lib->package);
            dlclose(h);
            memset(table, 0, table_size);
            return CAIRN_FATAL;
        }
        memcpy((char *)table + lib->syms[i].offset, &p, sizeof p);
    }
    return CAIRN_OK;
}

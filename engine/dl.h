/* engine/dl.h — optional shared libraries loaded at run time (dlopen) by the
 * commands that need them, so that every other command starts without them.
 * Each such library has a small module owning its table of function pointers:
 * uploaders/curl_dl.h (libcurl: S3 store, Kubernetes API), agent/pq_dl.h
 * (libpq: PostgreSQL connections) and engine/archive_dl.h (libarchive: file
 * metadata on backup, restore, dump).
 *
 * Ownership: the module owns its table and its struct cairn_dl_once (both
 * static). A library that loaded is never closed: its functions stay valid
 * until exit. One that failed to load is closed again, its table left zeroed,
 * and the same error is returned to every later caller.
 * Threading: cairn_dl_load() may be called from any thread, any number of
 * times; the first call loads (under the once's mutex), the others wait for
 * it and then see the filled table. Nothing here prints. */
#ifndef CAIRN_DL_H
#define CAIRN_DL_H

#include <pthread.h>
#include <stddef.h>

#include "util.h"

/* One function: its name in the library and where its pointer goes in the
 * module's table (offsetof). */
struct cairn_dl_sym {
    const char *name;
    size_t offset;
};

struct cairn_dl_lib {
    const char *soname;     /* the versioned soname, "libcurl.so.4" */
    const char *test_env;   /* an environment variable that replaces soname:
                               for tests of the missing-library error only */
    const char *needed_for; /* "s3:// repositories", for the message */
    const char *package;    /* the Debian package that installs it */
    const struct cairn_dl_sym *syms;
    size_t nsyms;
    void *table; /* the module's struct of function pointers */
    size_t table_size;
    /* Run once after every symbol resolved (e.g. curl_global_init), or NULL.
     * A failure counts as a failed load. */
    int (*init)(cairn_err *err);
};

/* The load state of one library, static in its module. */
struct cairn_dl_once {
    pthread_mutex_t mu;
    int done;
    cairn_err err;
};
#define CAIRN_DL_ONCE_INIT {PTHREAD_MUTEX_INITIALIZER, 0, {0, {0}}}

/* The first call: dlopen(soname, RTLD_NOW | RTLD_LOCAL), dlsym() every symbol
 * into lib->table, then lib->init. CAIRN_OK, or CAIRN_FATAL with a message
 * naming the library, what needs it, dlerror() and the package to install
 * when the library or one of its functions is missing. Later calls return the
 * first call's result. */
int cairn_dl_load(const struct cairn_dl_lib *lib, struct cairn_dl_once *once, cairn_err *err);

#endif

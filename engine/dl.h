/* engine/dl.h — optional shared libraries loaded at run time (dlopen) by the
 * commands that need them, so that every other command starts without them.
 * Each such library has a small module owning its table of function pointers:
 * uploaders/curl_dl.h (libcurl: S3 store, Kubernetes API) and agent/pq_dl.h
 * (libpq: PostgreSQL connections).
 *
 * Ownership: cairn_dl_load() fills a table the caller owns. A library that
 * loaded is never closed (its functions stay valid until exit); one that
 * failed to resolve every symbol is closed again and the table left zeroed.
 * Threading: cairn_dl_load() itself is reentrant, but the modules call it
 * once (pthread_once) and publish the table only after it succeeded.
 * Nothing here prints. */
#ifndef CAIRN_DL_H
#define CAIRN_DL_H

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
};

/* dlopen(soname, RTLD_NOW | RTLD_LOCAL) and dlsym() every symbol into table.
 * CAIRN_FATAL with a message naming the library, what needs it, dlerror()
 * and the package to install when the library or one of its symbols is
 * missing. */
int cairn_dl_load(const struct cairn_dl_lib *lib, void *table, size_t table_size,
                  cairn_err *err);

#endif

/* engine/archive_dl.c — libarchive loaded at run time (engine/archive_dl.h). */
#include "archive_dl.h"

#include "dl.h"

struct cairn_archive_api cairn_archive;

static const struct cairn_dl_sym archive_syms[] = {
#define CAIRN_ARCHIVE_SYM(name) {"archive_" #name, offsetof(struct cairn_archive_api, name)},
    CAIRN_ARCHIVE_FUNCS(CAIRN_ARCHIVE_SYM)
#undef CAIRN_ARCHIVE_SYM
    {"archive_errno", offsetof(struct cairn_archive_api, errno_)},
};

static const struct cairn_dl_lib archive_lib = {
    "libarchive.so.13",
    "CAIRN_TEST_ARCHIVE_SONAME",
    "backing up, restoring and dumping files",
    "libarchive13",
    archive_syms,
    sizeof archive_syms / sizeof *archive_syms,
    &cairn_archive,
    sizeof cairn_archive,
    NULL,
};

static struct cairn_dl_once archive_once = CAIRN_DL_ONCE_INIT;

int cairn_archive_load(cairn_err *err)
{
    return cairn_dl_load(&archive_lib, &archive_once, err);
}

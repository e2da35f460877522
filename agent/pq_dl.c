/* agent/pq_dl.c — libpq loaded at run time (agent/pq_dl.h). */
#include "pq_dl.h"

#include <pthread.h>

#include "../engine/dl.h"

struct cairn_pq_api cairn_pq;

static const struct cairn_dl_sym pq_syms[] = {
#define CAIRN_PQ_SYM(name) {"PQ" #name, offsetof(struct cairn_pq_api, name)},
    CAIRN_PQ_FUNCS(CAIRN_PQ_SYM)
#undef CAIRN_PQ_SYM
};

static const struct cairn_dl_lib pq_lib = {
    "libpq.so.5",
    "CAIRN_TEST_PQ_SONAME",
    "PostgreSQL connections",
    "libpq5",
    pq_syms,
    sizeof pq_syms / sizeof *pq_syms,
};

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static cairn_err load_err; /* written once under load_once, then only read */

static void load(void)
{
    struct cairn_pq_api api;
    if (cairn_dl_load(&pq_lib, &api, sizeof api, &load_err) == CAIRN_OK)
        cairn_pq = api;
}

int cairn_pq_load(cairn_err *err)
{
    pthread_once(&load_once, load);
    if (load_err.code != CAIRN_OK)
        return cairn_error(err, load_err.code, "%s", load_err.msg);
    return CAIRN_OK;
}

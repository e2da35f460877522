/* agent/pq_dl.c — libpq loaded at run time (agent/pq_dl.h). */
#include "pq_dl.h"

#include "../engine/dl.h"

struct cairn_pq_api cairn_pq;

static const struct cairn_dl_sym pq_syms[] = {
#define CAIRN_PQ_SYM(name) {"PQ" #name, offsetof(struct cairn_pq_api, name)},
    CAIRN_PQ_FUNCS(CAIRN_PQ_SYM)
#undef CAIRN_PQ_SYM
};

static const struct cairn_dl_lib pq_lib = {
    "libpq.so.5", "CAIRN_TEST_PQ_SONAME", "PostgreSQL connections",
    "libpq5",     pq_syms,                sizeof pq_syms / sizeof *pq_syms,
    &cairn_pq,    sizeof cairn_pq,        NULL,
};

static struct cairn_dl_once pq_once = CAIRN_DL_ONCE_INIT;

int cairn_pq_load(cairn_err *err)
{
    return cairn_dl_load(&pq_lib, &pq_once, err);
}

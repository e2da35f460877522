/* agent/pq_dl.h — libpq, loaded at run time (engine/dl.h) only when Cairn
 * connects to PostgreSQL (agent/pg_backup.c: backup-pg, the agent's postgres
 * quiesce). wal-push, wal-fetch and every other command start without libpq
 * and what it pulls in (LDAP, Kerberos, GSSAPI, SASL ...).
 *
 * Include this header instead of <libpq-fe.h>. It maps the PQ* functions we
 * use onto the table cairn_pq, so call sites read as plain libpq:
 * PQclear(r) calls cairn_pq.clear(r).
 *
 * cairn_pq_load() must succeed before the first PQ* call (before connecting):
 * it loads libpq.so.5 once per process (thread-safe; any thread may call it
 * any number of times). The table is owned here, filled once and never
 * freed; libpq stays loaded until exit.
 *
 * Test only: CAIRN_TEST_PQ_SONAME=<name> loads that library instead of
 * libpq.so.5 (tests use a name that does not exist, to see the error). */
#ifndef CAIRN_PQ_DL_H
#define CAIRN_PQ_DL_H

#include <libpq-fe.h>

#include "../engine/util.h"

/* Every libpq function Cairn calls, without the "PQ" prefix. */
#define CAIRN_PQ_FUNCS(X)                                                                     \
    X(connectdbParams) X(status) X(errorMessage) X(serverVersion) X(finish) X(execParams)    \
    X(resultStatus) X(resultErrorMessage) X(ntuples) X(getvalue) X(getisnull) X(clear)

struct cairn_pq_api {
#define CAIRN_PQ_FIELD(name) __typeof__(PQ##name) *name;
    CAIRN_PQ_FUNCS(CAIRN_PQ_FIELD)
#undef CAIRN_PQ_FIELD
};

/* Filled by the first successful cairn_pq_load(); all NULL before. */
extern struct cairn_pq_api cairn_pq;

/* Loads libpq, once. CAIRN_OK, or CAIRN_FATAL with "cannot load libpq.so.5
 * (needed for PostgreSQL connections): ...; install the libpq5 package" (the
 * same error on every later call). */
int cairn_pq_load(cairn_err *err);

#define PQconnectdbParams cairn_pq.connectdbParams
#define PQstatus cairn_pq.status
#define PQerrorMessage cairn_pq.errorMessage
#define PQserverVersion cairn_pq.serverVersion
#define PQfinish cairn_pq.finish
#define PQexecParams cairn_pq.execParams
#define PQresultStatus cairn_pq.resultStatus
#define PQresultErrorMessage cairn_pq.resultErrorMessage
#define PQntuples cairn_pq.ntuples
#define PQgetvalue cairn_pq.getvalue
#define PQgetisnull cairn_pq.getisnull
#define PQclear cairn_pq.clear

#endif

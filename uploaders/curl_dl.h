/* uploaders/curl_dl.h — libcurl, loaded at run time (engine/dl.h) only by what
 * talks HTTP: the S3 store (uploaders/s3.c) and the Kubernetes API client
 * (agent/kube.c). Every other command starts without libcurl and the ~20
 * libraries it pulls in (TLS, LDAP, Kerberos, SSH ...).
 *
 * Include this header instead of <curl/curl.h>. It maps the curl_* functions
 * we use onto the table cairn_curl, so call sites read as plain libcurl:
 * curl_easy_setopt(h, CURLOPT_URL, url) calls cairn_curl.easy_setopt. The
 * variadic ones keep their real variadic type. curl's compile-time option
 * type checks (typecheck-gcc.h) are off, since they wrap the real functions.
 *
 * cairn_curl_load() must succeed before the first curl_* call: it loads
 * libcurl.so.4 and runs curl_global_init once per process (thread-safe; any
 * thread may call it any number of times). The table is owned here, filled
 * once and never freed; libcurl stays loaded until exit.
 *
 * Test only: CAIRN_TEST_CURL_SONAME=<name> loads that library instead of
 * libcurl.so.4 (tests use a name that does not exist, to see the error). */
#ifndef CAIRN_CURL_DL_H
#define CAIRN_CURL_DL_H

#if defined(CURLINC_CURL_H) && !defined(CURL_DISABLE_TYPECHECK)
#error "include uploaders/curl_dl.h instead of <curl/curl.h>"
#endif
#ifndef CURL_DISABLE_TYPECHECK
#define CURL_DISABLE_TYPECHECK 1
#endif
#include <curl/curl.h>

#include "../engine/util.h"

/* curl.h wraps these three in same-name macros that check the argument count. */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_share_setopt

/* Every libcurl function Cairn calls, without the "curl_" prefix. */
#define CAIRN_CURL_FUNCS(X)                                                                   \
    X(global_init) X(easy_init) X(easy_setopt) X(easy_perform) X(easy_getinfo)               \
    X(easy_reset) X(easy_cleanup) X(easy_strerror) X(easy_escape) X(free) X(getdate)         \
    X(slist_append) X(slist_free_all) X(share_init) X(share_setopt) X(share_cleanup)

struct cairn_curl_api {
#define CAIRN_CURL_FIELD(name) __typeof__(curl_##name) *name;
    CAIRN_CURL_FUNCS(CAIRN_CURL_FIELD)
#undef CAIRN_CURL_FIELD
};

/* Filled by the first successful cairn_curl_load(); all NULL before. */
extern struct cairn_curl_api cairn_curl;

/* Loads libcurl and initialises it, once. CAIRN_OK, or CAIRN_FATAL with
 * "cannot load libcurl.so.4 (needed for s3:// repositories and the
 * Kubernetes API): ...; install the libcurl4 package" (the same error on
 * every later call). */
int cairn_curl_load(cairn_err *err);

#define curl_global_init cairn_curl.global_init
#define curl_easy_init cairn_curl.easy_init
#define curl_easy_setopt cairn_curl.easy_setopt
#define curl_easy_perform cairn_curl.easy_perform
#define curl_easy_getinfo cairn_curl.easy_getinfo
#define curl_easy_reset cairn_curl.easy_reset
#define curl_easy_cleanup cairn_curl.easy_cleanup
#define curl_easy_strerror cairn_curl.easy_strerror
#define curl_easy_escape cairn_curl.easy_escape
#define curl_free cairn_curl.free
#define curl_getdate cairn_curl.getdate
#define curl_slist_append cairn_curl.slist_append
#define curl_slist_free_all cairn_curl.slist_free_all
#define curl_share_init cairn_curl.share_init
#define curl_share_setopt cairn_curl.share_setopt
#define curl_share_cleanup cairn_curl.share_cleanup

#endif

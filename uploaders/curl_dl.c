/* uploaders/curl_dl.c — libcurl loaded at run time (uploaders/curl_dl.h). */
#include "curl_dl.h"

#include <pthread.h>

#include "../engine/dl.h"

struct cairn_curl_api cairn_curl;

static const struct cairn_dl_sym curl_syms[] = {
#define CAIRN_CURL_SYM(name) {"curl_" #name, offsetof(struct cairn_curl_api, name)},
    CAIRN_CURL_FUNCS(CAIRN_CURL_SYM)
#undef CAIRN_CURL_SYM
};

static const struct cairn_dl_lib curl_lib = {
    "libcurl.so.4",
    "CAIRN_TEST_CURL_SONAME",
    "s3:// repositories and the Kubernetes API",
    "libcurl4",
    curl_syms,
    sizeof curl_syms / sizeof *curl_syms,
};

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static cairn_err load_err; /* written once under load_once, then only read */

static void load(void)
{
    struct cairn_curl_api api;
    CURLcode cc;
    if (cairn_dl_load(&curl_lib, &api, sizeof api, &load_err) != CAIRN_OK)
        return;
    if ((cc = api.global_init(CURL_GLOBAL_DEFAULT)) != CURLE_OK) {
        cairn_error(&load_err, CAIRN_FATAL, "cannot initialise libcurl: %s",
                    api.easy_strerror(cc));
        return;
    }
    cairn_curl = api;
}

int cairn_curl_load(cairn_err *err)
{
    pthread_once(&load_once, load);
    if (load_err.code != CAIRN_OK)
        return cairn_error(err, load_err.code, "%s", load_err.msg);
    return CAIRN_OK;
}

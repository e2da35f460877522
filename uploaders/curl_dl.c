/* uploaders/curl_dl.c — libcurl loaded at run time (uploaders/curl_dl.h). */
#include "curl_dl.h"

#include "../engine/dl.h"

struct cairn_curl_api cairn_curl;

static const struct cairn_dl_sym curl_syms[] = {
#define CAIRN_CURL_SYM(name) {"curl_" #name, offsetof(struct cairn_curl_api, name)},
    CAIRN_CURL_FUNCS(CAIRN_CURL_SYM)
#undef CAIRN_CURL_SYM
};

static int curl_init(cairn_err *err)
{
    CURLcode cc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (cc != CURLE_OK)
        return cairn_error(err, CAIRN_FATAL, "cannot initialise libcurl: %s",
                           curl_easy_strerror(cc));
    return CAIRN_OK;
}

static const struct cairn_dl_lib curl_lib = {
    "libcurl.so.4", "CAIRN_TEST_CURL_SONAME", "s3:// repositories and the Kubernetes API",
    "libcurl4",     curl_syms,                sizeof curl_syms / sizeof *curl_syms,
    &cairn_curl,    sizeof cairn_curl,        curl_init,
};

static struct cairn_dl_once curl_once = CAIRN_DL_ONCE_INIT;

int cairn_curl_load(cairn_err *err)
{
    return cairn_dl_load(&curl_lib, &curl_once, err);
}

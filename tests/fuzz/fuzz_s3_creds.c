/* Fuzz target: the temporary-credential answers (uploaders/s3_creds.c,
 * s3_xml.c): STS AssumeRoleWithWebIdentity XML, container-credentials JSON,
 * and the container URI rule. Accepted keys must be header-safe. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../uploaders/s3.h"

static void check_keys(const struct s3_creds *k)
{
    const char *s[3] = {k->access_key, k->secret_key, k->session_token};
    size_t i;
    for (i = 0; i < 3; i++)
        if (s[i] && strpbrk(s[i], " \r\n\t"))
            abort(); /* would inject a header */
    if (!k->access_key || !k->secret_key)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    const char *x = (const char *)d;
    struct s3_creds k;
    struct s3_error_info e;
    cairn_err err;
    char *uri;
    if (s3_parse_sts_response(x, n, &k, &e, &err) == CAIRN_OK) {
        check_keys(&k);
        if (!k.session_token || !k.expiration)
            abort();
        s3_creds_free(&k);
    }
    if (s3_parse_container_creds(x, n, &k, &err) == CAIRN_OK) {
        check_keys(&k);
        s3_creds_free(&k);
    }
    if (n < 4096 && (uri = malloc(n + 1))) {
        memcpy(uri, d, n);
        uri[n] = 0;
        s3_container_uri_check("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri, &err);
        free(uri);
    }
    return 0;
}

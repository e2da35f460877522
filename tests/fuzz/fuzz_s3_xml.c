/* Fuzz target: the S3 response XML readers (uploaders/s3_xml.c): the generic
 * parser and every document reader built on it. */
#include <stdint.h>
#include <stdlib.h>

#include "../../uploaders/s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    const char *x = (const char *)d;
    s3_xml doc;
    struct s3_list_page page;
    struct s3_error_info e;
    cairn_err err;
    char *upload = NULL;
    if (s3_xml_parse(x, n, &doc, &err) == CAIRN_OK)
        s3_xml_free(&doc);
    if (s3_parse_list(x, n, &page, &err) == CAIRN_OK) {
        size_t i;
        for (i = 0; i < page.n; i++)
            if (!page.keys[i])
                abort(); /* an accepted page has every key */
        s3_list_page_free(&page);
    }
    s3_parse_error(x, n, &e);
    if (s3_parse_upload_id(x, n, &upload, &err) == CAIRN_OK)
        free(upload);
    s3_parse_delete_result(x, n, &e, &err);
    return 0;
}

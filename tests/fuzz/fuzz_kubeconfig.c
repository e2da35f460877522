/* Fuzz target: the kubeconfig reader (JSON or the YAML subset,
 * agent/kube_json.c). */
#include <stdint.h>

#include "../../agent/kube.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    json_t *out = NULL;
    cairn_err err;
    if (cairn_kube_parse_config_text((const char *)d, n, &out, &err) == CAIRN_OK)
        json_decref(out);
    return 0;
}

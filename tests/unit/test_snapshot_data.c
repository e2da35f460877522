/* tests/unit/test_snapshot_data.c — cairn_snapshot_has_data(): which agent
 * snapshots only record a storage snapshot, and what the message says. */
#define _XOPEN_SOURCE 700
#include <string.h>

#include <jansson.h>

#include "../../engine/repo.h"
#include "check.h"

static int has(const char *manifest, char *where, size_t n)
{
    struct cairn_snapshot s;
    json_error_t je;
    int r;
    memset(&s, 0, sizeof s);
    s.json = json_loads(manifest, 0, &je);
    if (!s.json) {
        fprintf(stderr, "bad test manifest: %s\n", je.text);
        failures++;
        return -1;
    }
    if (where && n)
        where[0] = 0;
    r = cairn_snapshot_has_data(&s, where, n);
    json_decref(s.json);
    return r;
}

int main(void)
{
    char w[768];
    CHECK(has("{\"paths\":[\"/x\"]}", w, sizeof w) == 1 && !w[0], "a plain snapshot");
    CHECK(has("{\"snapshot\":{\"method\":\"file\",\"data\":\"files\"}}", w, sizeof w) == 1,
          "an agent file snapshot");
    CHECK(has("{\"snapshot\":{\"method\":\"exec\",\"data\":\"files\",\"path\":\"/m\"}}", w,
              sizeof w) == 1,
          "an exec snapshot with path=");
    CHECK(has("{\"snapshot\":{\"method\":\"csi\",\"data\":\"reference\",\"volume_snapshot\":"
              "\"cairn-data-1\",\"namespace\":\"app\",\"handle\":\"snap-42\"}}",
              w, sizeof w) == 0,
          "a csi reference");
    CHECK(strstr(w, "VolumeSnapshot app/cairn-data-1") && strstr(w, "snap-42") &&
              strstr(w, "dataSource"),
          "csi message: %s", w);
    CHECK(has("{\"snapshot\":{\"method\":\"exec\",\"data\":\"reference\",\"handle\":\"lun7@3\","
              "\"command\":\"/usr/local/bin/san-snap\"}}",
              w, sizeof w) == 0,
          "an exec reference");
    CHECK(strstr(w, "'lun7@3'") && strstr(w, "/usr/local/bin/san-snap"), "exec message: %s", w);
    CHECK(has("{\"snapshot\":{\"method\":\"exec\",\"data\":\"reference\"}}", w, sizeof w) == 0 &&
              strstr(w, "no handle recorded"),
          "an exec reference without a handle: %s", w);
    CHECK(has("{\"snapshot\":{\"method\":\"csi\",\"data\":\"reference\"}}", w, 16) == 0 &&
              strlen(w) == 15,
          "a short buffer is filled and terminated: '%s'", w);
    CHECK(has("{\"snapshot\":{\"method\":\"csi\",\"data\":\"reference\"}}", NULL, 0) == 0,
          "no buffer");
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}

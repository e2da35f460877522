/* restore/cat.c — one file of a snapshot, its bytes only, to a descriptor
 * (see restore.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "pipeline.h"
#include "restore.h"

int cairn_cat_file(cairn_repo *r, const struct cairn_snapshot *snap, const char *path, int fd,
                   uint64_t *written, cairn_err *err)
{
    struct rs_select sel;
    struct rs_item *it;
    rs_pipe *p = NULL;
    uint64_t n = 0;
    int rc;
    memset(&sel, 0, sizeof sel);
    sel.start = path;
    sel.verb = "read";
    if (written)
        *written = 0;
    if (!path || !*path)
        return cairn_error(err, CAIRN_FAILED, "no file named to read from the snapshot");
    if ((rc = rs_pipe_start(r, snap, &sel, 0, &p, err)) != CAIRN_OK)
        return rc;
    it = rs_pipe_next(p);
    while (it && it->kind == RS_WARN) {
        rc = cairn_error(err, CAIRN_FAILED, "%s", it->msg);
        rs_pipe_free(p);
        return rc;
    }
    if (!it || it->node.type != CAIRN_T_FILE || it->link) {
        rs_pipe_free(p);
        return cairn_error(err, CAIRN_FAILED, "'%s' in snapshot %.12s is not a regular file",
                           path, snap->id);
    }
    for (;;) {
        const uint8_t *d;
        size_t len;
        rc = rs_pipe_chunk(p, &d, &len, err);
        if (rc == RS_END) {
            rc = CAIRN_OK;
            break;
        }
        if (rc != CAIRN_OK)
            break;
        if (cairn_write_all(fd, d, len) != 0) {
            rc = cairn_error(err, CAIRN_FAILED, "cannot write '%s' out: %s", path,
                             strerror(errno));
            break;
        }
        n += len;
    }
    rs_pipe_free(p);
    if (written)
        *written = n;
    return rc;
}

/* restore/dump.c — cairn_dump(): a snapshot (or one path in it) as a tar, pax
 * or zip stream on a file descriptor, through libarchive's archive_write.
 *
 * Entries are named relative to the snapshot root ("dir/file", no "./"), in
 * depth-first name order, directories included; the root itself has no entry.
 * Content is read ahead by restore/pipeline.c, so memory stays bounded.
 *
 * Formats:
 * - "pax" (the default): POSIX pax with libarchive's extensions — xattrs, ACLs,
 *   nanosecond times, long names — and sparse files as GNU sparse 1.0 entries.
 *   libarchive's pax writer takes the whole logical byte stream of a sparse
 *   file through archive_write_data() and skips the holes itself; we feed the
 *   holes before each data extent from a static zero buffer (nothing is
 *   allocated per hole) and leave the trailing hole to libarchive. A file that
 *   is all hole gets the one-extent map (0, 0), which GNU tar reads back as an
 *   empty sparse file of the right size.
 * - "tar": GNU tar format. It has no sparse map in libarchive's writer, so holes
 *   are written as zeros (streamed from the same static buffer).
 * - "zip": holes as zeros; zip has no hard links, so every hard link gets the
 *   content of its target (looked up in the trees); fifos and devices cannot be
 *   stored and are reported.
 * Names: the pax and zip writers convert names to UTF-8 from the locale's
 * character set, which fails for every non-ASCII name under the "C" locale. The
 * stored names are bytes, normally UTF-8, so this thread runs the dump under a
 * UTF-8 LC_CTYPE (uselocale(), this thread only): UTF-8 names pass through
 * unchanged, and a name that is not UTF-8 is stored as raw bytes with a warning
 * from libarchive (pax: hdrcharset=BINARY).
 * Hard links (tar, pax) are hard link entries; a link whose target lies outside
 * the dumped path carries the content itself (see pipeline.h).
 * Sockets are skipped, as tar does.
 *
 * A file whose content cannot be read after its header was written cannot be
 * taken back: the rest of it is written as zeros so the archive stays valid,
 * and the warning says so; the result is then CAIRN_WARN. An error writing the
 * archive (e.g. a closed pipe) stops the dump with CAIRN_FAILED. */
#define _GNU_SOURCE
#include "restore.h"

#include <inttypes.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/archive_dl.h"
#include "pipeline.h"

enum dfmt { DF_TAR, DF_PAX, DF_ZIP };

struct dctx {
    struct archive *a;
    rs_pipe *p;
    enum dfmt fmt;
    cairn_warn_fn warn;
    void *warn_arg;
    uint64_t failed;
    int warned;
};

/* Zeros for holes; never written to. In .bss, so it costs no file space. */
static uint8_t zeros[256u << 10];

__attribute__((format(printf, 2, 3))) static void warnf(struct dctx *c, const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    c->warned = 1;
    if (!c->warn)
        return;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    c->warn(c->warn_arg, s ? s : "dump: out of memory formatting a warning");
    free(s);
}

static const char *aerr(struct archive *a)
{
    const char *s = archive_error_string(a);
    return s && *s ? s : "unknown libarchive error";
}

/* Writes all of buf into the current entry. CAIRN_FAILED (err set) when the
 * archive cannot be written. */
static int put(struct dctx *c, const void *buf, size_t len, cairn_err *err)
{
    const uint8_t *b = buf;
    while (len > 0) {
        la_ssize_t w = archive_write_data(c->a, b, len);
        if (w <= 0) {
            int e = archive_errno(c->a);
            return cairn_error(err, CAIRN_FAILED, "cannot write the archive: %s%s%s",
                               w == 0 ? "the entry takes no more data" : aerr(c->a),
                               w < 0 && e > 0 ? ": " : "", w < 0 && e > 0 ? strerror(e) : "");
        }
        b += w;
        len -= (size_t)w;
    }
    return CAIRN_OK;
}

static int put_zeros(struct dctx *c, uint64_t n, cairn_err *err)
{
    while (n > 0) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        int rc = put(c, zeros, k, err);
        if (rc != CAIRN_OK)
            return rc;
        n -= k;
    }
    return CAIRN_OK;
}

#define WRITE_FAILED 2 /* stream_content(): the archive cannot be written */

/* Streams a file's logical bytes: data extents from the chunks, holes as
 * zeros (which the pax writer skips). *lpos tracks the logical offset written.
 * Returns CAIRN_OK, a content error in ce (the caller pads and warns), or
 * WRITE_FAILED with err set. */
static int stream_content(struct dctx *c, const struct cairn_node *n, uint64_t *lpos,
                          cairn_err *ce, cairn_err *err)
{
    uint64_t expected = n->size, pos = 0, xdone = 0;
    size_t x = 0, i;
    const uint8_t *d;
    size_t len;
    int rc;

    if (n->sparse) {
        expected = 0;
        for (i = 0; i < n->n_sparse; i++)
            expected += n->sparse[i].len;
    }
    while ((rc = rs_pipe_chunk(c->p, &d, &len, ce)) == CAIRN_OK) {
        size_t done = 0;
        if (len > expected - pos)
            return cairn_error(ce, CAIRN_CORRUPT,
                               "its stored content is longer than its size (%" PRIu64 " bytes)",
                               expected);
        while (done < len) {
            uint64_t off, take;
            if (!n->sparse) {
                off = pos + done;
                take = len - done;
            } else {
                while (x < n->n_sparse && xdone == n->sparse[x].len) {
                    x++;
                    xdone = 0;
                }
                if (x == n->n_sparse)
                    return cairn_error(ce, CAIRN_CORRUPT, "its sparse map is inconsistent");
                off = n->sparse[x].off + xdone;
                take = n->sparse[x].len - xdone;
                if (take > len - done)
                    take = len - done;
                xdone += take;
            }
            if (off > *lpos && put_zeros(c, off - *lpos, err) != CAIRN_OK)
                return WRITE_FAILED;
            if (put(c, d + done, (size_t)take, err) != CAIRN_OK)
                return WRITE_FAILED;
            *lpos = off + take;
            done += (size_t)take;
        }
        pos += len;
    }
    if (rc != RS_END)
        return rc;
    if (pos != expected)
        return cairn_error(ce, CAIRN_CORRUPT,
                           "its stored content is shorter than its size (%" PRIu64 " of %" PRIu64
                           " bytes)",
                           pos, expected);
    return CAIRN_OK;
}

/* Dumps one item. CAIRN_OK (also when skipped and reported) or CAIRN_FAILED
 * when the archive cannot be written any more. */
static int dump_item(struct dctx *c, struct archive_entry *e, struct rs_item *it,
                     cairn_err *err)
{
    const struct cairn_node *n = &it->node;
    const char *why;
    cairn_err ce;
    int ar, rc;

    if (it->kind == RS_WARN) {
        warnf(c, "%s", it->msg);
        c->failed++;
        return CAIRN_OK;
    }
    if (n->type == CAIRN_T_SOCK)
        return CAIRN_OK;
    if ((why = rs_path_problem(it->path)) != NULL) {
        warnf(c, "cannot dump '%s': refusing unsafe path (%s)", it->path, why);
        c->failed++;
        return CAIRN_OK;
    }
    archive_entry_clear(e);
    cairn_err_clear(&ce);
    rc = cairn_node_to_entry(n, e, &ce);
    if (rc == CAIRN_WARN) {
        warnf(c, "cannot dump all metadata of '%s': %s", it->path, ce.msg);
    } else if (rc != CAIRN_OK) {
        warnf(c, "cannot dump '%s': %s", it->path, ce.msg[0] ? ce.msg : cairn_rc_name(rc));
        c->failed++;
        return CAIRN_OK;
    }
    archive_entry_copy_pathname(e, it->path);
    if (it->link) {
        archive_entry_copy_hardlink(e, it->link);
        archive_entry_set_size(e, 0);
        archive_entry_sparse_clear(e);
    } else if (c->fmt != DF_PAX) {
        archive_entry_sparse_clear(e);
    } else if (n->type == CAIRN_T_FILE && n->sparse && n->n_sparse == 0 && n->size > 0) {
        archive_entry_sparse_add_entry(e, 0, 0); /* all hole */
    }

    ar = archive_write_header(c->a, e);
    if (ar == ARCHIVE_FATAL)
        return cairn_error(err, CAIRN_FAILED, "cannot write the archive at '%s': %s", it->path,
                           aerr(c->a));
    if (ar < ARCHIVE_WARN) {
        warnf(c, "cannot dump '%s': %s", it->path, aerr(c->a));
        c->failed++;
        return CAIRN_OK;
    }
    if (ar == ARCHIVE_WARN)
        warnf(c, "dumping '%s': %s", it->path, aerr(c->a));

    if (n->type == CAIRN_T_FILE && !it->link) {
        uint64_t lpos = 0, end = n->size;
        /* libarchive's pax writer emits a sparse file's map on the first
         * archive_write_data() call, even an empty one; without any call (a
         * file that is all hole) the archive would hold zeros instead */
        if (c->fmt == DF_PAX && n->sparse && archive_write_data(c->a, zeros, 0) < 0)
            return cairn_error(err, CAIRN_FAILED, "cannot write the archive at '%s': %s",
                               it->path, aerr(c->a));
        cairn_err_clear(&ce);
        rc = stream_content(c, n, &lpos, &ce, err);
        if (rc == WRITE_FAILED)
            return CAIRN_FAILED;
        if (rc != CAIRN_OK) {
            warnf(c, "cannot dump '%s': %s (the archive holds zeros from byte %" PRIu64 " on)",
                  it->path, ce.msg, lpos);
            c->failed++;
        }
        /* pax skips the trailing hole itself; the others need the zeros, and
         * after an error everyone needs the rest of the declared size */
        if (c->fmt == DF_PAX && rc == CAIRN_OK && n->sparse)
            end = lpos;
        if (end > lpos && put_zeros(c, end - lpos, err) != CAIRN_OK)
            return CAIRN_FAILED;
    }
    ar = archive_write_finish_entry(c->a);
    if (ar == ARCHIVE_FATAL)
        return cairn_error(err, CAIRN_FAILED, "cannot write the archive at '%s': %s", it->path,
                           aerr(c->a));
    if (ar < ARCHIVE_OK)
        warnf(c, "cannot fully dump '%s': %s", it->path, aerr(c->a));
    return CAIRN_OK;
}

int cairn_dump(cairn_repo *r, const struct cairn_snapshot *snap, const char *path,
               const char *format, int fd, cairn_warn_fn warn, void *warn_arg, cairn_err *err)
{
    struct dctx c;
    struct rs_select sel;
    struct rs_item *it;
    struct archive_entry *e = NULL;
    locale_t utf8 = (locale_t)0, old_locale = (locale_t)0;
    int rc, ar;

    memset(&c, 0, sizeof c);
    c.warn = warn;
    c.warn_arg = warn_arg;
    {
        char where[768];
        if (!cairn_snapshot_has_data(snap, where, sizeof where))
            return cairn_error(err, CAIRN_FAILED,
                               "snapshot %.12s holds no files, nothing was written: %s",
                               snap->id, where);
    }
    if (!format || !*format || strcmp(format, "pax") == 0)
        c.fmt = DF_PAX;
    else if (strcmp(format, "tar") == 0)
        c.fmt = DF_TAR;
    else if (strcmp(format, "zip") == 0)
        c.fmt = DF_ZIP;
    else
        return cairn_error(err, CAIRN_FAILED, "unknown dump format '%s' (valid: tar, pax, zip)",
                           format);
    /* before the first byte is written to fd */
    if ((rc = cairn_archive_load(err)) != CAIRN_OK)
        return rc;

    memset(&sel, 0, sizeof sel);
    sel.start = path;
    sel.links_as_copies = c.fmt == DF_ZIP;
    sel.verb = "dump";
    if ((rc = rs_pipe_start(r, snap, &sel, 0, &c.p, err)) != CAIRN_OK)
        return rc;

    utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (!utf8)
        utf8 = newlocale(LC_CTYPE_MASK, "en_US.UTF-8", (locale_t)0);
    if (utf8)
        old_locale = uselocale(utf8);
    c.a = archive_write_new();
    e = archive_entry_new();
    if (!c.a || !e) {
        rc = cairn_error(err, CAIRN_FAILED, "out of memory");
        goto out;
    }
    switch (c.fmt) {
    case DF_TAR: ar = archive_write_set_format_gnutar(c.a); break;
    case DF_PAX: ar = archive_write_set_format_pax(c.a); break;
    case DF_ZIP: ar = archive_write_set_format_zip(c.a); break;
    default: ar = ARCHIVE_FATAL; break;
    }
    if (ar != ARCHIVE_OK) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot set up the %s format: %s", format,
                         aerr(c.a));
        goto out;
    }
    if (archive_write_open_fd(c.a, fd) != ARCHIVE_OK) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot open the archive output: %s", aerr(c.a));
        goto out;
    }

    rc = CAIRN_OK;
    while ((it = rs_pipe_next(c.p)) != NULL)
        if ((rc = dump_item(&c, e, it, err)) != CAIRN_OK)
            break;
    ar = archive_write_close(c.a); /* the end-of-archive blocks, the zip directory */
    if (rc == CAIRN_OK && ar != ARCHIVE_OK)
        rc = cairn_error(err, CAIRN_FAILED, "cannot finish the archive: %s", aerr(c.a));
    if (rc == CAIRN_OK && (c.failed || c.warned)) {
        rc = CAIRN_WARN;
        if (c.failed)
            cairn_error(err, rc, "%" PRIu64 " entries could not be dumped", c.failed);
        else
            cairn_error(err, rc, "some metadata could not be dumped");
    }

out:
    rs_pipe_free(c.p);
    if (c.a)
        archive_write_free(c.a);
    archive_entry_free(e);
    if (utf8) {
        uselocale(old_locale);
        freelocale(utf8);
    }
    return rc;
}

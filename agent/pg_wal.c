/* agent/pg_wal.c — WAL segment scanning, the light archive handle and
 * wal-push (see pg.h). */
#define _GNU_SOURCE
#include "pg.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "../engine/crypto.h"
#include "../engine/logobj.h"

/* ---- reading WAL pages ----
 * Layout (PostgreSQL's xlog_internal.h, stable since 9.x): every page starts
 * with XLogPageHeaderData {u16 magic, u16 info, u32 tli, u64 pageaddr,
 * u32 rem_len} padded to 24 bytes; the first page of a segment has the long
 * form, adding {u64 sysid, u32 seg_size, u32 xlog_blcksz}: 40 bytes. Records
 * start 8-aligned with XLogRecord {u32 tot_len, u32 xid, u64 prev, u8 info,
 * u8 rmid, 2 pad, u32 crc} (24 bytes) and may span pages; the main data is
 * the last bytes of a record. Values are in the server's byte order (we read
 * native order: the archive is written on the server's machine). */

#define SHORT_PHD 24
#define LONG_PHD 40
#define XLP_FIRST_IS_CONTRECORD 0x0001
#define XLP_LONG_HEADER 0x0002
#define REC_HDR 24
#define RM_XLOG_ID 0
#define RM_XACT_ID 1
#define XLOG_SWITCH 0x40
#define XLOG_RESTORE_POINT 0x70
#define XLOG_XACT_OPMASK 0x70
#define PG_EPOCH_US INT64_C(946684800000000) /* 2000-01-01 in Unix microseconds */

static uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

struct stream {
    const uint8_t *d;
    size_t len;        /* segment bytes */
    size_t blck;
    size_t pages;      /* valid pages (header checked) */
    uint64_t start;    /* LSN of d[0] */
};

/* Logical offset (page payloads concatenated) -> physical offset. */
static size_t phys(const struct stream *s, uint64_t l)
{
    size_t p0 = s->blck - LONG_PHD, pn = s->blck - SHORT_PHD;
    if (l < p0)
        return LONG_PHD + (size_t)l;
    l -= p0;
    return (size_t)(1 + l / pn) * s->blck + SHORT_PHD + (size_t)(l % pn);
}

static uint64_t logical_len(const struct stream *s)
{
    if (!s->pages)
        return 0;
    return (s->blck - LONG_PHD) + (uint64_t)(s->pages - 1) * (s->blck - SHORT_PHD);
}

/* Copies n logical bytes at l into out (n small: record headers, main data). */
static void copy_logical(const struct stream *s, uint64_t l, uint8_t *out, size_t n)
{
    while (n) {
        size_t p = phys(s, l), page_end = (p / s->blck + 1) * s->blck, k = page_end - p;
        if (k > n)
            k = n;
        memcpy(out, s->d + p, k);
        out += k;
        l += k;
        n -= k;
    }
}

/* Offset of the main data within a record and its length, from the headers
 * after XLogRecord; -1 when the record has block references or is malformed
 * (we only look at records without blocks). */
static int main_data(const uint8_t *hdrs, size_t n, uint32_t tot_len, uint32_t *len)
{
    size_t i = 0;
    while (i < n) {
        uint8_t id = hdrs[i++];
        if (id == 255) { /* XLR_BLOCK_ID_DATA_SHORT */
            if (i + 1 > n)
                return -1;
            *len = hdrs[i];
            return *len <= tot_len - REC_HDR ? 0 : -1;
        }
        if (id == 254) { /* XLR_BLOCK_ID_DATA_LONG */
            if (i + 4 > n)
                return -1;
            *len = rd32(hdrs + i);
            return *len <= tot_len - REC_HDR ? 0 : -1;
        }
        if (id == 253) /* XLR_BLOCK_ID_ORIGIN */
            i += 2;
        else if (id == 252) /* XLR_BLOCK_ID_TOPLEVEL_XID */
            i += 4;
        else
            return -1;
    }
    return -1;
}

static void note_commit(struct cairn_pg_segscan *o, int64_t pg_us)
{
    int64_t ns;
    if (pg_us < 0 || pg_us > INT64_C(6311433600000000)) /* 2000 .. 2200 */
        return;
    ns = (pg_us + PG_EPOCH_US) * 1000;
    if (!o->has_commit || ns < o->min_commit_ns)
        o->min_commit_ns = ns;
    if (!o->has_commit || ns > o->max_commit_ns)
        o->max_commit_ns = ns;
    o->has_commit = 1;
}

int cairn_pg_segment_scan(const uint8_t *d, size_t len, uint64_t start_lsn,
                          struct cairn_pg_segscan *o, cairn_err *err)
{
    struct stream s;
    uint64_t l, total, prev_lsn = 0;
    uint16_t info;
    size_t i;
    memset(o, 0, sizeof *o);
    if (len < LONG_PHD)
        return cairn_error(err, CAIRN_CORRUPT, "too short for a WAL segment (%zu bytes)", len);
    o->page_magic = rd16(d);
    info = rd16(d + 2);
    o->sysid = rd64(d + 24);
    o->segment_size = rd32(d + 32);
    o->block_size = rd32(d + 36);
    if (!(info & XLP_LONG_HEADER) || (o->page_magic & 0xFF00) != 0xD100)
        return cairn_error(err, CAIRN_CORRUPT,
                           "no WAL long page header at the start (magic 0x%04X, info 0x%04X)",
                           o->page_magic, info);
    if (rd64(d + 8) != start_lsn)
        return cairn_error(err, CAIRN_CORRUPT,
                           "the first page is for LSN %" PRIX64 ", not %" PRIX64
                           " as the file name says",
                           rd64(d + 8), start_lsn);
    if (!cairn_pg_segsize_valid(o->segment_size) || o->segment_size != len)
        return cairn_error(err, CAIRN_CORRUPT,
                           "the header says segments are %" PRIu64 " bytes, the file has %zu",
                           o->segment_size, len);
    if (o->block_size < 1024 || o->block_size > 65536 ||
        (o->block_size & (o->block_size - 1)) || len % o->block_size)
        return cairn_error(err, CAIRN_CORRUPT, "bad WAL block size %" PRIu32, o->block_size);
    if (o->sysid == 0)
        return cairn_error(err, CAIRN_CORRUPT, "the header has no system identifier");
    s.d = d;
    s.len = len;
    s.blck = o->block_size;
    s.start = start_lsn;
    s.pages = 0;
    for (i = 0; i < len / s.blck; i++) { /* pages up to the first one not written yet */
        const uint8_t *p = d + i * s.blck;
        if (rd16(p) != o->page_magic || rd64(p + 8) != start_lsn + i * s.blck)
            break;
        s.pages++;
    }
    total = logical_len(&s);
    l = 0;
    if (info & XLP_FIRST_IS_CONTRECORD) /* the end of a record from the previous segment */
        l = ((uint64_t)rd32(d + 20) + 7) & ~UINT64_C(7);
    o->end_lsn = start_lsn + phys(&s, l < total ? l : 0);
    while (l + REC_HDR <= total) {
        uint8_t h[REC_HDR + 16];
        uint32_t tot;
        uint64_t lsn = start_lsn + phys(&s, l), hn;
        uint8_t rinfo, rmid;
        /* a record header may be split across pages: copy_logical joins it */
        copy_logical(&s, l, h, REC_HDR);
        tot = rd32(h);
        if (tot < REC_HDR || l + tot > total)
            break; /* end of WAL, or a record that continues in the next segment */
        if (o->records && rd64(h + 8) != prev_lsn)
            break; /* not a record (a recycled segment's old contents) */
        rinfo = h[16];
        rmid = h[17];
        hn = tot - REC_HDR < 16 ? tot - REC_HDR : 16;
        copy_logical(&s, l + REC_HDR, h + REC_HDR, (size_t)hn);
        if (rmid == RM_XACT_ID) {
            uint8_t op = rinfo & XLOG_XACT_OPMASK;
            uint32_t ml;
            if ((op == 0x00 || op == 0x20 || op == 0x30 || op == 0x40) &&
                main_data(h + REC_HDR, (size_t)hn, tot, &ml) == 0 && ml >= 8) {
                uint8_t t[8];
                copy_logical(&s, l + tot - ml, t, 8);
                note_commit(o, (int64_t)rd64(t));
            }
        } else if (rmid == RM_XLOG_ID && (rinfo & 0xF0) == XLOG_RESTORE_POINT) {
            uint32_t ml;
            if (main_data(h + REC_HDR, (size_t)hn, tot, &ml) == 0 && ml >= 8 + 1 &&
                o->n_rp < CAIRN_PG_MAX_RP) {
                uint8_t t[8 + 64];
                size_t k = ml < sizeof t ? ml : sizeof t;
                int64_t us;
                copy_logical(&s, l + tot - ml, t, k);
                us = (int64_t)rd64(t);
                snprintf(o->rp[o->n_rp].name, sizeof o->rp[0].name, "%.*s", (int)(k - 8),
                         (const char *)t + 8);
                o->rp[o->n_rp].lsn = lsn;
                o->rp[o->n_rp].time_ns = (us + PG_EPOCH_US) * 1000;
                o->n_rp++;
            }
        }
        o->records++;
        prev_lsn = lsn;
        l += tot;
        o->end_lsn = start_lsn + phys(&s, l - 1) + 1;
        l = (l + 7) & ~UINT64_C(7);
        if (rmid == RM_XLOG_ID && (rinfo & 0xF0) == XLOG_SWITCH) {
            o->switched = 1;
            break;
        }
    }
    return CAIRN_OK;
}

/* ---- the light archive handle ---- */

struct cairn_pg_archive {
    cairn_store *store;
    cairn_catalog *cat;
    char repo_id[CAIRN_HEX_LEN + 1];
};

int cairn_pg_archive_open(const char *url, const struct cairn_store_opts *so,
                          const char *catalog_path, int with_catalog, cairn_pg_archive **out,
                          cairn_err *err)
{
    cairn_pg_archive *a = calloc(1, sizeof *a);
    cairn_buf b = CAIRN_BUF_INIT;
    json_t *cfg = NULL;
    const char *id;
    char *path = NULL;
    int rc;
    *out = NULL;
    if (!a)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    /* reads config and unlocks an encrypted repository (engine/crypto.h) */
    if ((rc = cairn_repo_store_open(url, so, &b, &a->store, err)) != CAIRN_OK)
        goto fail;
    cfg = json_loadb((const char *)b.data, b.len, 0, NULL);
    id = json_string_value(json_object_get(cfg, "id"));
    if (!cfg || json_integer_value(json_object_get(cfg, "version")) != 1 || !id ||
        strlen(id) != CAIRN_HEX_LEN) {
        rc = cairn_error(err, CAIRN_CORRUPT,
                         "repository '%s': config is invalid or of an unknown version", url);
        goto fail;
    }
    memcpy(a->repo_id, id, CAIRN_HEX_LEN + 1);
    if (with_catalog) {
        char *rid = NULL;
        path = catalog_path ? strdup(catalog_path) : cairn_default_catalog_path(a->repo_id);
        if (!path) {
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
            goto fail;
        }
        if ((rc = cairn_catalog_open(path, &a->cat, err)) != CAIRN_OK)
            goto fail;
        if (cairn_catalog_get_meta(a->cat, "repo_id", &rid, NULL) == CAIRN_OK && rid &&
            strcmp(rid, a->repo_id) != 0) {
            rc = cairn_error(err, CAIRN_FATAL,
                             "catalog '%s' belongs to another repository (%.12s, not %.12s); "
                             "use another --catalog",
                             path, rid, a->repo_id);
            free(rid);
            goto fail;
        }
        if (!rid)
            cairn_catalog_set_meta(a->cat, "repo_id", a->repo_id, NULL);
        free(rid);
    }
    free(path);
    json_decref(cfg);
    cairn_buf_free(&b);
    *out = a;
    return CAIRN_OK;
fail:
    free(path);
    json_decref(cfg);
    cairn_buf_free(&b);
    cairn_pg_archive_free(a);
    return rc;
}

void cairn_pg_archive_free(cairn_pg_archive *a)
{
    if (!a)
        return;
    cairn_catalog_free(a->cat);
    cairn_store_free(a->store);
    free(a);
}

cairn_store *cairn_pg_archive_store(cairn_pg_archive *a) { return a->store; }
cairn_catalog *cairn_pg_archive_catalog(cairn_pg_archive *a) { return a->cat; }

/* ---- wal-push ---- */

struct zjob {
    const uint8_t *in;
    size_t len;
    int level;
    cairn_buf out;
    int ok;
};

static void *compress_thread(void *arg)
{
    struct zjob *j = arg;
    ZSTD_CCtx *c = ZSTD_createCCtx();
    size_t bound = ZSTD_compressBound(j->len), n;
    j->ok = 0;
    if (!c || cairn_buf_reserve(&j->out, bound) != CAIRN_OK) {
        ZSTD_freeCCtx(c);
        return NULL;
    }
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, j->level);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
    n = ZSTD_compress2(c, j->out.data, bound, j->in, j->len);
    ZSTD_freeCCtx(c);
    if (ZSTD_isError(n))
        return NULL;
    j->out.len = n;
    j->ok = 1;
    return NULL;
}

/* "START WAL LOCATION: 0/2000028 (file ...)" style lines of a .backup file */
static int label_lsn(const char *text, const char *key, uint64_t *lsn)
{
    const char *p = strstr(text, key);
    char buf[32];
    size_t n = 0;
    if (!p)
        return -1;
    p += strlen(key);
    while (*p == ' ')
        p++;
    while (p[n] && !isspace((unsigned char)p[n]) && n < sizeof buf - 1)
        n++;
    memcpy(buf, p, n);
    buf[n] = 0;
    return cairn_pg_lsn_parse(buf, lsn);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int cairn_pg_wal_push(cairn_pg_archive *a, const char *path, const struct cairn_pg_push_opts *o,
                      struct cairn_pg_push_result *res, cairn_err *err)
{
    const char *name = base_name(path);
    struct cairn_pg_walname wn;
    struct cairn_pg_walmeta *m = &res->meta;
    struct cairn_pg_segscan scan;
    cairn_buf raw = CAIRN_BUF_INIT, obj = CAIRN_BUF_INIT;
    struct zjob zj;
    pthread_t th;
    uint64_t ctl_sysid = 0, sysid = 0;
    cairn_err e2;
    char *extra = NULL;
    int rc, have_ctl, threaded;

    memset(res, 0, sizeof *res);
    memset(&zj, 0, sizeof zj);
    memset(&scan, 0, sizeof scan);
    if (cairn_pg_walname_parse(name, &wn) != 0)
        return cairn_error(err, CAIRN_FAILED,
                           "'%s' is not a WAL file name (a segment, .partial, .history or "
                           ".backup file)",
                           path);
    if ((rc = cairn_read_file(path, &raw, CAIRN_PG_MAX_FILE, err)) != CAIRN_OK)
        return rc;
    have_ctl = cairn_pg_control_sysid(o && o->pgdata ? o->pgdata : ".", &ctl_sysid, &e2) ==
               CAIRN_OK;
    if (o && o->system_id) {
        char *end;
        errno = 0;
        sysid = strtoull(o->system_id, &end, 10);
        if (errno || *end || !sysid) {
            rc = cairn_error(err, CAIRN_FAILED, "bad system identifier '%s'", o->system_id);
            goto out;
        }
    }
    snprintf(m->name, sizeof m->name, "%s", name);
    m->timeline = wn.tli;
    m->kind = wn.kind;
    m->size = raw.len;
    if (wn.kind == CAIRN_PG_SEGMENT || wn.kind == CAIRN_PG_PARTIAL) {
        uint64_t segsize = raw.len, start;
        if (!cairn_pg_segsize_valid(segsize)) {
            rc = cairn_error(err, CAIRN_CORRUPT,
                             "'%s' is %zu bytes: not a WAL segment size (a power of two from "
                             "1 MiB to 1 GiB)",
                             path, raw.len);
            goto out;
        }
        start = cairn_pg_segno(wn.log, wn.seg, segsize) * segsize;
        if ((rc = cairn_pg_segment_scan(raw.data, raw.len, start, &scan, err)) != CAIRN_OK) {
            cairn_error_prefix(err, "'%s'", path);
            goto out;
        }
        if (sysid && sysid != scan.sysid) {
            rc = cairn_error(err, CAIRN_FAILED,
                             "'%s' belongs to system %" PRIu64 ", not %" PRIu64
                             " as given: refusing to archive it there",
                             path, scan.sysid, sysid);
            goto out;
        }
        if (have_ctl && ctl_sysid != scan.sysid) {
            rc = cairn_error(err, CAIRN_FAILED,
                             "'%s' belongs to system %" PRIu64 ", but the data directory's "
                             "pg_control says %" PRIu64 ": refusing to archive it",
                             path, scan.sysid, ctl_sysid);
            goto out;
        }
        sysid = scan.sysid;
        m->segment_size = segsize;
        m->start_lsn = start;
        m->end_lsn = wn.kind == CAIRN_PG_SEGMENT ? start + segsize : scan.end_lsn;
        m->has_commit = scan.has_commit;
        m->min_commit_ns = scan.min_commit_ns;
        m->max_commit_ns = scan.max_commit_ns;
        m->n_restore_points = scan.n_rp;
        if (scan.n_rp) {
            json_t *o2 = json_object(), *arr = json_array();
            uint32_t i;
            for (i = 0; i < scan.n_rp; i++) {
                char l[24];
                cairn_pg_lsn_format(scan.rp[i].lsn, l, sizeof l);
                json_array_append_new(arr, json_pack("{s:s, s:s, s:I}", "name", scan.rp[i].name,
                                                     "lsn", l, "time_ns",
                                                     (json_int_t)scan.rp[i].time_ns));
            }
            json_object_set_new(o2, "restore_points", arr);
            extra = json_dumps(o2, JSON_COMPACT);
            json_decref(o2);
        }
    } else {
        if (!sysid && have_ctl)
            sysid = ctl_sysid;
        if (!sysid) {
            rc = cairn_error(err, CAIRN_FAILED,
                             "cannot tell which cluster '%s' belongs to: run wal-push in the "
                             "data directory (archive_command does), or give --system-id or "
                             "CAIRN_PG_SYSTEM_ID",
                             path);
            goto out;
        }
        if (wn.kind == CAIRN_PG_BACKUP) {
            const char *t = cairn_buf_cstr(&raw);
            if (label_lsn(t, "START WAL LOCATION:", &m->start_lsn) != 0)
                m->start_lsn = 0;
            if (label_lsn(t, "STOP WAL LOCATION:", &m->end_lsn) != 0)
                m->end_lsn = m->start_lsn;
        } else { /* history: the switch point into this timeline */
            struct cairn_pg_tlentry e[256];
            size_t n = 0;
            if (cairn_pg_history_parse((const char *)raw.data, raw.len, e, 256, &n, err) !=
                CAIRN_OK) {
                rc = cairn_error_prefix(err, "'%s'", path);
                goto out;
            }
            if (n)
                m->start_lsn = m->end_lsn = e[n - 1].end;
        }
    }
    snprintf(m->system_id, sizeof m->system_id, "%" PRIu64, sysid);
    if (cairn_pg_walobj_key(m->system_id, name, res->key, sizeof res->key) != 0) {
        rc = cairn_error(err, CAIRN_FAILED, "object key for '%s' is too long", name);
        goto out;
    }

    /* compress in a second thread while hashing here */
    zj.in = raw.data;
    zj.len = raw.len;
    zj.level = o && o->level ? o->level : 1;
    threaded = raw.len >= (1u << 20) && pthread_create(&th, NULL, compress_thread, &zj) == 0;
    cairn_pg_sha256(raw.data, raw.len, m->sha256);
    if (threaded)
        pthread_join(th, NULL);
    else
        compress_thread(&zj);
    if (!zj.ok) {
        rc = cairn_error(err, CAIRN_FATAL, "cannot compress '%s' (out of memory?)", path);
        goto out;
    }
    if ((rc = cairn_pg_walobj_build(m, extra, zj.out.data, zj.out.len, &obj, err)) != CAIRN_OK)
        goto out;
    cairn_buf_free(&zj.out);
    res->stored = obj.len;

    /* never overwrite: an existing copy must be the same file */
    {
        char hint[256];
        uint64_t put;
        snprintf(hint, sizeof hint,
                 "Two servers with system id %s may be archiving into one repository, or a "
                 "restored server was started without recovery; investigate before touching "
                 "the archived copy",
                 m->system_id);
        rc = cairn_logobj_put_once(a->store, res->key, CAIRN_PG_WALOBJ_MAGIC,
                                   CAIRN_PG_WALOBJ_HEAD_MAX, "WAL", path, m->size, m->sha256,
                                   &obj, NULL, NULL, hint, NULL, &put, err);
        if (rc != CAIRN_OK)
            goto out;
        rc = put ? 2 : 1;
    }
    res->already = rc == 1;
    if (o && o->stage)
        o->stage(o->stage_arg, "stored");
    rc = CAIRN_OK;
    if (a->cat) {
        struct cairn_walrow row;
        cairn_pg_walrow_from_meta(m, res->key, &row);
        rc = cairn_catalog_wal_put(a->cat, &row, err);
        if (rc != CAIRN_OK)
            cairn_error_prefix(err, "'%s' is archived, but recording it in the catalog failed",
                               name);
    }
out:
    free(extra);
    cairn_buf_free(&zj.out);
    cairn_buf_free(&raw);
    cairn_buf_free(&obj);
    return rc;
}

/* ---- wal-push --batch ---- */

int cairn_pg_wal_already(cairn_pg_archive *a, const char *path,
                         const struct cairn_pg_push_opts *o, struct cairn_pg_push_result *res,
                         cairn_err *err)
{
    const char *name = base_name(path);
    struct cairn_pg_walname wn;
    struct cairn_walrow row;
    struct cairn_pg_walmeta old;
    cairn_buf raw = CAIRN_BUF_INIT, head = CAIRN_BUF_INIT;
    char sysid[CAIRN_WAL_SYSID_MAX], want[CAIRN_WAL_SUM_MAX];
    uint64_t v = 0;
    cairn_err e2;
    int rc;
    memset(res, 0, sizeof *res);
    if (!a->cat || cairn_pg_walname_parse(name, &wn) != 0)
        return 0;
    if (o && o->system_id)
        snprintf(sysid, sizeof sysid, "%s", o->system_id);
    else if (cairn_pg_control_sysid(o && o->pgdata ? o->pgdata : ".", &v, &e2) == CAIRN_OK)
        snprintf(sysid, sizeof sysid, "%" PRIu64, v);
    else
        return 0;
    rc = cairn_catalog_wal_get(a->cat, sysid, wn.tli, name, &row, err);
    if (rc == CAIRN_NOTFOUND)
        return 0;
    if (rc != CAIRN_OK)
        return rc;
    if ((rc = cairn_read_file(path, &raw, CAIRN_PG_MAX_FILE, err)) != CAIRN_OK)
        return rc;
    res->meta.size = raw.len;
    cairn_pg_sha256(raw.data, raw.len, res->meta.sha256);
    cairn_buf_free(&raw);
    memcpy(want, "sha256:", 7);
    cairn_hex(res->meta.sha256, 32, want + 7);
    if (row.size != res->meta.size || strcmp(row.checksum, want) != 0)
        return 0; /* the normal push decides (and refuses a different file) */
    /* the record is not enough: the object must be there, with that content */
    rc = cairn_logobj_same(a->store, row.object_key, CAIRN_PG_WALOBJ_MAGIC,
                           CAIRN_PG_WALOBJ_HEAD_MAX, "WAL", res->meta.size, res->meta.sha256,
                           NULL, &head, err);
    if (rc == 1 && cairn_pg_walobj_head(head.data, head.len, &old, NULL, &e2) != CAIRN_OK)
        rc = 0;
    cairn_buf_free(&head);
    if (rc == CAIRN_NOTFOUND)
        return 0;
    if (rc < 0)
        return rc;
    if (rc == 1) {
        res->meta = old;
        snprintf(res->key, sizeof res->key, "%s", row.object_key);
        res->already = 1;
    }
    return rc;
}

struct batch {
    const char *url, *catalog;
    const struct cairn_store_opts *so;
    const struct cairn_pg_push_opts *po;
    char **paths;          /* [0] is the segment PostgreSQL asked for */
    size_t n, next;
    pthread_mutex_t mu;
    int first_rc;
    cairn_err first_err;
    struct cairn_pg_push_result first_res;
    struct cairn_pg_batch_result *br;
};

static void *batch_thread(void *arg)
{
    struct batch *b = arg;
    cairn_pg_archive *a = NULL;
    cairn_err err;
    int open_rc = cairn_pg_archive_open(b->url, b->so, b->catalog, 1, &a, &err);
    for (;;) {
        struct cairn_pg_push_result res;
        size_t i;
        int rc;
        pthread_mutex_lock(&b->mu);
        i = b->next < b->n ? b->next++ : b->n;
        pthread_mutex_unlock(&b->mu);
        if (i == b->n)
            break;
        cairn_err_clear(&err);
        rc = open_rc != CAIRN_OK ? open_rc : cairn_pg_wal_already(a, b->paths[i], b->po, &res, &err);
        if (rc == 0)
            rc = cairn_pg_wal_push(a, b->paths[i], b->po, &res, &err);
        else if (rc == 1)
            rc = CAIRN_OK;
        pthread_mutex_lock(&b->mu);
        if (i == 0) {
            b->first_rc = rc;
            b->first_err = err;
            b->first_res = res;
        } else if (rc != CAIRN_OK) {
            b->br->extra_failed++; /* PostgreSQL asks for it later: pushed then */
        } else if (res.already) {
            b->br->extra_already++;
        } else {
            b->br->extra_pushed++;
        }
        pthread_mutex_unlock(&b->mu);
    }
    cairn_pg_archive_free(a);
    return NULL;
}

static int cmp_pstr(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

int cairn_pg_wal_push_batch(const char *url, const struct cairn_store_opts *so,
                            const char *catalog_path, const char *path,
                            const struct cairn_pg_push_opts *o,
                            const struct cairn_pg_batch_opts *bo,
                            struct cairn_pg_push_result *res, struct cairn_pg_batch_result *br,
                            cairn_err *err)
{
    struct batch b;
    cairn_pg_archive *a = NULL;
    pthread_t th[CAIRN_PG_BATCH_MAX_JOBS];
    int jobs = bo && bo->jobs > 0 ? bo->jobs : 4, started = 0, rc;
    size_t max_extra = bo && bo->max_extra > 0 ? (size_t)bo->max_extra : (size_t)jobs * 4, i;
    char dir[PATH_MAX], *slash;
    DIR *d;
    struct dirent *de;

    memset(br, 0, sizeof *br);
    memset(res, 0, sizeof *res);
    if (jobs > CAIRN_PG_BATCH_MAX_JOBS)
        jobs = CAIRN_PG_BATCH_MAX_JOBS;
    /* 1. pushed by an earlier batch? then answer at once */
    if ((rc = cairn_pg_archive_open(url, so, catalog_path, 1, &a, err)) != CAIRN_OK)
        return rc;
    rc = cairn_pg_wal_already(a, path, o, res, err);
    cairn_pg_archive_free(a);
    if (rc == 1) {
        br->fast = 1;
        return CAIRN_OK;
    }
    if (rc < 0)
        return rc;

    /* 2. this one and up to max_extra other .ready ones, in parallel */
    memset(&b, 0, sizeof b);
    b.url = url;
    b.catalog = catalog_path;
    b.so = so;
    b.po = o;
    b.br = br;
    b.first_rc = CAIRN_FATAL;
    pthread_mutex_init(&b.mu, NULL);
    if (!(b.paths = calloc(max_extra + 1, sizeof *b.paths)) || !(b.paths[0] = strdup(path))) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    b.n = 1;
    snprintf(dir, sizeof dir, "%s", path);
    slash = strrchr(dir, '/');
    if (slash)
        slash[1] = 0;
    else
        dir[0] = 0;
    {
        char st[PATH_MAX + 32];
        snprintf(st, sizeof st, "%sarchive_status", dir);
        d = opendir(st);
    }
    if (d) {
        char **names = NULL;
        size_t nn = 0, cap = 0;
        while ((de = readdir(d)) != NULL) {
            size_t l = strlen(de->d_name);
            char *nm;
            if (l <= 6 || strcmp(de->d_name + l - 6, ".ready") != 0)
                continue;
            if (l - 6 == strlen(base_name(path)) &&
                strncmp(de->d_name, base_name(path), l - 6) == 0)
                continue;
            if (nn == cap) {
                char **nv = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof *nv);
                if (!nv)
                    break;
                names = nv;
            }
            if (!(nm = strndup(de->d_name, l - 6)))
                break;
            names[nn++] = nm;
        }
        closedir(d);
        if (nn > 1)
            qsort(names, nn, sizeof *names, cmp_pstr); /* oldest first, as PostgreSQL asks */
        for (i = 0; i < nn; i++) {
            struct cairn_pg_walname wn;
            if (b.n <= max_extra && cairn_pg_walname_parse(names[i], &wn) == 0 &&
                asprintf(&b.paths[b.n], "%s%s", dir, names[i]) >= 0)
                b.n++;
            free(names[i]);
        }
        free(names);
    }
    if ((size_t)jobs > b.n)
        jobs = (int)b.n;
    for (started = 0; started < jobs; started++)
        if (pthread_create(&th[started], NULL, batch_thread, &b) != 0)
            break;
    if (!started)
        batch_thread(&b);
    for (i = 0; i < (size_t)started; i++)
        pthread_join(th[i], NULL);
    rc = b.first_rc;
    *res = b.first_res;
    if (rc != CAIRN_OK)
        *err = b.first_err;
out:
    for (i = 0; b.paths && i < b.n; i++)
        free(b.paths[i]);
    free(b.paths);
    pthread_mutex_destroy(&b.mu);
    return rc;
}

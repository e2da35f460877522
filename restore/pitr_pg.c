/* restore/pitr_pg.c — see pitr_pg.h.
 *
 * Sections: names and LSNs; history files; pg_control; archived objects;
 * fetching and the prefetch spool; catalog sync; verify; base backups;
 * restore planning; preparing the data directory. */
#define _GNU_SOURCE
#include "pitr_pg.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zstd.h>

#include "../engine/archive_dl.h"
#include "../engine/crc32c.h"
#include "../engine/logobj.h"

/* ---- names and LSNs ---- */

static int hexn(const char *s, size_t n, uint32_t *out)
{
    uint32_t v = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        int c = (unsigned char)s[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1; /* PostgreSQL writes upper case only */
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return 0;
}

int cairn_pg_walname_parse(const char *name, struct cairn_pg_walname *out)
{
    size_t len = name ? strlen(name) : 0;
    memset(out, 0, sizeof *out);
    if (len == 16 && strcmp(name + 8, ".history") == 0) {
        out->kind = CAIRN_PG_HISTORY;
        return hexn(name, 8, &out->tli) == 0 && out->tli > 0 ? 0 : -1;
    }
    if (len < 24 || hexn(name, 8, &out->tli) || hexn(name + 8, 8, &out->log) ||
        hexn(name + 16, 8, &out->seg) || out->tli == 0)
        return -1;
    if (len == 24) {
        out->kind = CAIRN_PG_SEGMENT;
        return 0;
    }
    if (strcmp(name + 24, ".partial") == 0) {
        out->kind = CAIRN_PG_PARTIAL;
        return 0;
    }
    if (len == 40 && name[24] == '.' && strcmp(name + 33, ".backup") == 0 &&
        hexn(name + 25, 8, &out->offset) == 0) {
        out->kind = CAIRN_PG_BACKUP;
        return 0;
    }
    return -1;
}

const char *cairn_pg_walkind_name(enum cairn_pg_walkind k)
{
    switch (k) {
    case CAIRN_PG_SEGMENT:
        return "segment";
    case CAIRN_PG_PARTIAL:
        return "partial";
    case CAIRN_PG_HISTORY:
        return "history";
    case CAIRN_PG_BACKUP:
        return "backup";
    }
    return "?";
}

static int walkind_from(const char *s, enum cairn_pg_walkind *k)
{
    static const enum cairn_pg_walkind all[] = {CAIRN_PG_SEGMENT, CAIRN_PG_PARTIAL,
                                                CAIRN_PG_HISTORY, CAIRN_PG_BACKUP};
    size_t i;
    for (i = 0; s && i < sizeof all / sizeof *all; i++)
        if (strcmp(s, cairn_pg_walkind_name(all[i])) == 0) {
            *k = all[i];
            return 0;
        }
    return -1;
}

int cairn_pg_segsize_valid(uint64_t segsize)
{
    return segsize >= (1u << 20) && segsize <= (1u << 30) && (segsize & (segsize - 1)) == 0;
}

uint64_t cairn_pg_segno(uint32_t log, uint32_t seg, uint64_t segsize)
{
    return (uint64_t)log * (UINT64_C(0x100000000) / segsize) + seg;
}

void cairn_pg_segname(uint32_t tli, uint64_t segno, uint64_t segsize, char out[25])
{
    uint64_t per = UINT64_C(0x100000000) / segsize;
    snprintf(out, 25, "%08" PRIX32 "%08" PRIX32 "%08" PRIX32, tli, (uint32_t)(segno / per),
             (uint32_t)(segno % per));
}

int cairn_pg_lsn_parse(const char *s, uint64_t *lsn)
{
    char *end;
    unsigned long long hi, lo;
    if (!s || !isxdigit((unsigned char)*s))
        return -1;
    errno = 0;
    hi = strtoull(s, &end, 16);
    if (errno || *end != '/' || hi > 0xFFFFFFFFull || !isxdigit((unsigned char)end[1]))
        return -1;
    lo = strtoull(end + 1, &end, 16);
    if (errno || *end || lo > 0xFFFFFFFFull)
        return -1;
    *lsn = (uint64_t)hi << 32 | (uint64_t)lo;
    return 0;
}

void cairn_pg_lsn_format(uint64_t lsn, char *out, size_t n)
{
    snprintf(out, n, "%" PRIX32 "/%" PRIX32, (uint32_t)(lsn >> 32), (uint32_t)lsn);
}

/* ---- timeline history files ---- */

int cairn_pg_history_parse(const char *text, size_t len, struct cairn_pg_tlentry *out,
                           size_t max, size_t *n, cairn_err *err)
{
    size_t pos = 0, line = 0;
    *n = 0;
    while (pos < len) {
        const char *p = text + pos, *nl = memchr(p, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - p) : len - pos;
        char buf[256], *q, *end;
        unsigned long tli;
        uint64_t lsn;
        pos += l + 1;
        line++;
        while (l && isspace((unsigned char)*p)) {
            p++;
            l--;
        }
        if (l == 0 || *p == '#')
            continue;
        if (l >= sizeof buf)
            l = sizeof buf - 1;
        memcpy(buf, p, l);
        buf[l] = 0;
        errno = 0;
        tli = strtoul(buf, &end, 10);
        if (errno || end == buf || !isspace((unsigned char)*end) || tli == 0 ||
            tli > 0xFFFFFFFFul)
            return cairn_error(err, CAIRN_CORRUPT,
                               "timeline history: line %zu does not start with a timeline id",
                               line);
        while (isspace((unsigned char)*end))
            end++;
        q = end;
        while (*q && !isspace((unsigned char)*q))
            q++;
        *q = 0;
        if (cairn_pg_lsn_parse(end, &lsn) != 0)
            return cairn_error(err, CAIRN_CORRUPT, "timeline history: line %zu: bad LSN '%s'",
                               line, end);
        if (*n && (out[*n - 1].tli >= tli || out[*n - 1].end > lsn))
            return cairn_error(err, CAIRN_CORRUPT,
                               "timeline history: line %zu is out of order", line);
        if (*n == max)
            return cairn_error(err, CAIRN_CORRUPT, "timeline history: more than %zu entries",
                               max);
        out[*n].tli = (uint32_t)tli;
        out[*n].end = lsn;
        (*n)++;
    }
    return CAIRN_OK;
}

/* ---- pg_control ---- */

int cairn_pg_control_sysid(const char *pgdata, uint64_t *sysid, cairn_err *err)
{
    char path[PATH_MAX];
    uint8_t b[8];
    int fd;
    ssize_t got;
    snprintf(path, sizeof path, "%s/global/pg_control", pgdata && *pgdata ? pgdata : ".");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_error(err, errno == ENOENT ? CAIRN_NOTFOUND : CAIRN_FAILED,
                           "cannot read '%s': %s", path, strerror(errno));
    got = pread(fd, b, sizeof b, 0);
    close(fd);
    if (got != (ssize_t)sizeof b)
        return cairn_error(err, CAIRN_CORRUPT, "'%s' is too short", path);
    memcpy(sysid, b, 8); /* native byte order, as PostgreSQL writes it */
    if (*sysid == 0)
        return cairn_error(err, CAIRN_CORRUPT, "'%s' holds no system identifier", path);
    return CAIRN_OK;
}

/* ---- archived objects ---- */

void cairn_pg_sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 32;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

int cairn_pg_walobj_key(const char *system_id, const char *name, char *out, size_t n)
{
    struct cairn_pg_walname wn;
    if (cairn_pg_walname_parse(name, &wn) != 0)
        return -1;
    if ((size_t)snprintf(out, n, "wal/%s/%08" PRIX32 "/%s", system_id, wn.tli, name) >= n)
        return -1;
    return 0;
}

int cairn_pg_walobj_build(const struct cairn_pg_walmeta *m, const char *extra_json,
                          const void *zfr, size_t zlen, cairn_buf *out, cairn_err *err)
{
    char hex[65], lsn1[24], lsn2[24], ts[64];
    json_t *o = json_object(), *extra = NULL;
    int rc;
    cairn_hex(m->sha256, 32, hex);
    cairn_pg_lsn_format(m->start_lsn, lsn1, sizeof lsn1);
    cairn_pg_lsn_format(m->end_lsn, lsn2, sizeof lsn2);
    json_object_set_new(o, "version", json_integer(1));
    json_object_set_new(o, "name", json_string(m->name));
    json_object_set_new(o, "system_id", json_string(m->system_id));
    json_object_set_new(o, "timeline", json_integer(m->timeline));
    json_object_set_new(o, "kind", json_string(cairn_pg_walkind_name(m->kind)));
    json_object_set_new(o, "size", json_integer((json_int_t)m->size));
    json_object_set_new(o, "sha256", json_string(hex));
    json_object_set_new(o, "start_lsn", json_string(lsn1));
    json_object_set_new(o, "end_lsn", json_string(lsn2));
    json_object_set_new(o, "segment_size", json_integer((json_int_t)m->segment_size));
    json_object_set_new(o, "compression", json_string("zstd"));
    if (m->has_commit) {
        json_object_set_new(o, "min_commit_ns", json_integer(m->min_commit_ns));
        json_object_set_new(o, "max_commit_ns", json_integer(m->max_commit_ns));
        cairn_format_time(m->min_commit_ns, ts, sizeof ts);
        json_object_set_new(o, "min_commit", json_string(ts));
        cairn_format_time(m->max_commit_ns, ts, sizeof ts);
        json_object_set_new(o, "max_commit", json_string(ts));
    }
    if (extra_json && *extra_json) {
        extra = json_loads(extra_json, 0, NULL);
        if (json_is_object(extra))
            json_object_update_missing(o, extra);
        json_decref(extra);
    }
    rc = cairn_logobj_encode(CAIRN_PG_WALOBJ_MAGIC, CAIRN_PG_WALOBJ_HEAD_MAX, "WAL", m->name, o,
                             zfr, zlen, out, err);
    json_decref(o);
    return rc;
}

static int64_t jint(json_t *o, const char *k, int *ok)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v)) {
        *ok = 0;
        return 0;
    }
    return (int64_t)json_integer_value(v);
}

static int jstr(json_t *o, const char *k, char *out, size_t n)
{
    const char *s = json_string_value(json_object_get(o, k));
    if (!s || strlen(s) >= n)
        return -1;
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

int cairn_pg_walobj_head(const uint8_t *obj, size_t len, struct cairn_pg_walmeta *m,
                         size_t *payload_off, cairn_err *err)
{
    size_t off;
    json_t *o;
    char hex[80], lsn[32];
    struct cairn_pg_walname wn;
    int ok = 1;
    memset(m, 0, sizeof *m);
    int hrc = cairn_logobj_head(obj, len, CAIRN_PG_WALOBJ_MAGIC, CAIRN_PG_WALOBJ_HEAD_MAX, "WAL", &o, &off, err);
    if (hrc != CAIRN_OK)
        return hrc;
    if (jstr(o, "name", m->name, sizeof m->name) || jstr(o, "system_id", m->system_id,
                                                         sizeof m->system_id) ||
        jstr(o, "sha256", hex, sizeof hex) || strlen(hex) != 64 ||
        cairn_unhex(hex, m->sha256, 32) != CAIRN_OK ||
        walkind_from(json_string_value(json_object_get(o, "kind")), &m->kind) ||
        cairn_pg_walname_parse(m->name, &wn) != 0 || wn.kind != m->kind)
        ok = 0;
    m->timeline = (uint32_t)jint(o, "timeline", &ok);
    m->size = (uint64_t)jint(o, "size", &ok);
    m->segment_size = (uint64_t)jint(o, "segment_size", &ok);
    if (jstr(o, "start_lsn", lsn, sizeof lsn) || cairn_pg_lsn_parse(lsn, &m->start_lsn) ||
        jstr(o, "end_lsn", lsn, sizeof lsn) || cairn_pg_lsn_parse(lsn, &m->end_lsn))
        ok = 0;
    if (json_object_get(o, "min_commit_ns")) {
        m->has_commit = 1;
        m->min_commit_ns = jint(o, "min_commit_ns", &ok);
        m->max_commit_ns = jint(o, "max_commit_ns", &ok);
    }
    m->n_restore_points = (uint32_t)json_array_size(json_object_get(o, "restore_points"));
    json_decref(o);
    if (!ok || m->timeline != wn.tli || m->size > CAIRN_PG_MAX_FILE)
        return cairn_error(err, CAIRN_CORRUPT, "archived WAL object: metadata is invalid");
    if (payload_off)
        *payload_off = off;
    return CAIRN_OK;
}

int cairn_pg_walobj_decode(const uint8_t *obj, size_t len, const char *key,
                           struct cairn_pg_walmeta *m, cairn_buf *raw, cairn_err *err)
{
    size_t off;
    int rc = cairn_pg_walobj_head(obj, len, m, &off, err);
    if (rc != CAIRN_OK)
        return cairn_error_prefix(err, "object '%s'", key);
    return cairn_logobj_payload(obj, len, off, m->size, m->sha256, key, raw, err);
}

void cairn_pg_walrow_from_meta(const struct cairn_pg_walmeta *m, const char *key,
                               struct cairn_walrow *row)
{
    char hex[65];
    memset(row, 0, sizeof *row);
    snprintf(row->system_id, sizeof row->system_id, "%s", m->system_id);
    row->timeline = m->timeline;
    snprintf(row->segment, sizeof row->segment, "%s", m->name);
    row->start_lsn = m->start_lsn;
    row->end_lsn = m->end_lsn;
    row->size = m->size;
    cairn_hex(m->sha256, 32, hex);
    snprintf(row->checksum, sizeof row->checksum, "sha256:%s", hex);
    snprintf(row->object_key, sizeof row->object_key, "%s", key);
    row->has_commit = m->has_commit;
    row->min_commit_ns = m->min_commit_ns;
    row->max_commit_ns = m->max_commit_ns;
}

/* ---- fetching ---- */

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_file_atomic(const char *dest, const void *data, size_t len, int do_fsync,
                             cairn_err *err)
{
    char tmp[PATH_MAX];
    int fd;
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.cairn-tmp.%ld", dest, (long)getpid()) >=
        sizeof tmp)
        return cairn_error(err, CAIRN_FAILED, "path '%s' is too long", dest);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return cairn_error(err, CAIRN_FAILED, "cannot create '%s': %s", tmp, strerror(errno));
    if (write_all(fd, data, len) != 0 || (do_fsync && fsync(fd) != 0)) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return cairn_error(err, CAIRN_FAILED, "cannot write '%s': %s", tmp, strerror(e));
    }
    if (close(fd) != 0 || rename(tmp, dest) != 0) {
        int e = errno;
        unlink(tmp);
        return cairn_error(err, CAIRN_FAILED, "cannot write '%s': %s", dest, strerror(e));
    }
    return CAIRN_OK;
}

int cairn_pg_wal_write_verified(const uint8_t *obj, size_t len, const char *key,
                                const char *dest, cairn_err *err)
{
    struct cairn_pg_walmeta m;
    cairn_buf raw = CAIRN_BUF_INIT;
    int rc = cairn_pg_walobj_decode(obj, len, key, &m, &raw, err);
    /* PostgreSQL makes restored files durable itself when it keeps them */
    if (rc == CAIRN_OK)
        rc = write_file_atomic(dest, raw.data, raw.len, 0, err);
    cairn_buf_free(&raw);
    return rc;
}

#define WALOBJ_MAX ((size_t)CAIRN_PG_MAX_FILE + (64u << 20))

#define SPOOL_SUM_SFX ".sum" /* a spool entry's check file: see spool_sum */

static int spool_path(const char *dir, const char *sysid, const char *name, const char *sfx,
                      char *out, size_t n)
{
    return (size_t)snprintf(out, n, "%s/%s-%s%s", dir, sysid, name, sfx) < n ? 0 : -1;
}

/* Removes spool files of this system for segments before `name` (recovery
 * has moved past them) and abandoned .part files. Best effort. */
static void spool_clean(const char *dir, const char *sysid, const char *name)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t pl = strlen(sysid);
    struct cairn_pg_walname cur;
    if (!d)
        return;
    if (cairn_pg_walname_parse(name, &cur) != 0 || cur.kind != CAIRN_PG_SEGMENT)
        cur.kind = CAIRN_PG_HISTORY; /* nothing to compare with */
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name, *sfx;
        char path[PATH_MAX], base[CAIRN_WAL_NAME_MAX];
        struct cairn_pg_walname wn;
        struct stat st;
        size_t bl;
        if (n[0] == '.')
            continue;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, n) >= sizeof path)
            continue;
        sfx = strstr(n, ".part");
        if (sfx && sfx[5] == 0) {
            int fd;
            if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) { /* a mark being set */
                if (st.st_mtime + 60 < time(NULL))
                    unlink(path);
                continue;
            }
            fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (fd >= 0) {
                if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &st) == 0 &&
                    st.st_mtime + 60 < time(NULL))
                    unlink(path);
                close(fd);
            }
            continue;
        }
        if (strncmp(n, sysid, pl) != 0 || n[pl] != '-')
            continue;
        bl = strlen(n + pl + 1);
        if (bl > strlen(SPOOL_SUM_SFX) &&
            strcmp(n + pl + 1 + bl - strlen(SPOOL_SUM_SFX), SPOOL_SUM_SFX) == 0)
            bl -= strlen(SPOOL_SUM_SFX); /* a check file goes with its segment */
        if (bl >= sizeof base)
            continue;
        memcpy(base, n + pl + 1, bl);
        base[bl] = 0;
        if (cairn_pg_walname_parse(base, &wn) != 0)
            continue;
        if (cur.kind == CAIRN_PG_SEGMENT && wn.kind == CAIRN_PG_SEGMENT &&
            (wn.log < cur.log || (wn.log == cur.log && wn.seg < cur.seg)))
            unlink(path);
        else if (stat(path, &st) == 0 && st.st_mtime + 3600 < time(NULL))
            unlink(path);
    }
    closedir(d);
}

/* The spool's high-water mark: <dir>/<sysid>.served names the segment last
 * handed to PostgreSQL. Prefetchers skip segments at or before it (recovery
 * has moved past them), so a prefetcher that started earlier does not bring
 * back a segment already served. Written before a spool file is consumed.
 * It is a symbolic link whose target is the name: replacing it is atomic and
 * has no data to flush (ext4 flushes a regular file renamed over another). */
static void served_set(const char *dir, const char *sysid, const char *name)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    struct cairn_pg_walname wn;
    if (cairn_pg_walname_parse(name, &wn) != 0 || wn.kind != CAIRN_PG_SEGMENT ||
        (size_t)snprintf(path, sizeof path, "%s/%s.served", dir, sysid) >= sizeof path ||
        (size_t)snprintf(tmp, sizeof tmp, "%s/%s.served.%ld.part", dir, sysid,
                         (long)getpid()) >= sizeof tmp)
        return;
    (void)unlink(tmp);
    if (symlink(name, tmp) != 0)
        return;
    if (rename(tmp, path) != 0)
        (void)unlink(tmp);
}

/* Reads the mark into buf (a segment name) and *out: 0, or -1 when there is
 * none (a regular file holding the name, from an older cairn, is read too). */
static int served_get(const char *dir, const char *sysid, char buf[CAIRN_WAL_NAME_MAX],
                      struct cairn_pg_walname *out)
{
    char path[PATH_MAX];
    ssize_t n;
    if ((size_t)snprintf(path, sizeof path, "%s/%s.served", dir, sysid) >= sizeof path)
        return -1;
    n = readlink(path, buf, CAIRN_WAL_NAME_MAX - 1);
    if (n < 0 && errno == EINVAL) {
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return -1;
        n = read(fd, buf, CAIRN_WAL_NAME_MAX - 1);
        close(fd);
    }
    if (n <= 0)
        return -1;
    buf[n] = 0;
    if (cairn_pg_walname_parse(buf, out) != 0 || out->kind != CAIRN_PG_SEGMENT)
        return -1;
    return 0;
}

/* Has recovery moved past name (a segment)? */
static int served_past(const char *dir, const char *sysid, const char *name)
{
    char buf[CAIRN_WAL_NAME_MAX];
    struct cairn_pg_walname wn, last;
    if (cairn_pg_walname_parse(name, &wn) != 0 || wn.kind != CAIRN_PG_SEGMENT ||
        served_get(dir, sysid, buf, &last) != 0)
        return 0;
    return wn.log < last.log || (wn.log == last.log && wn.seg <= last.seg);
}

/* A spool entry is two files: <sysid>-<name>, the verified raw segment, and
 * <sysid>-<name>.sum, its check: the magic and the four-lane CRC-32C digest
 * (with the length; crc32c.h) of the raw bytes, computed by the prefetcher
 * from the bytes whose SHA-256 it checked against the archived object's
 * metadata. The check file is in place before the segment is renamed into
 * the spool. A hit reads the segment once to check the digest again (the
 * file may have been damaged since: a crash, a full disk, a stray write) and
 * renames it into place: no repository, no decompression, no copy, and no
 * cryptographic hash (a few GB/s instead of 2). */
#define SPOOL_MAGIC "CAIRNSP2"
#define SPOOL_SUM (8 + CAIRN_CRC4_DIGEST)
#define SPOOL_CHECK_BUF ((size_t)128 << 10)

static void spool_sum(uint8_t out[SPOOL_SUM], const void *raw, size_t len)
{
    cairn_crc4 c;
    cairn_crc4_init(&c);
    cairn_crc4_update(&c, raw, len);
    memcpy(out, SPOOL_MAGIC, 8);
    cairn_crc4_final(&c, out + 8);
}

/* Checks an open spool file against its check file: 0 when they agree. */
static int spool_check(int fd, const char *sumpath)
{
    struct stat st;
    uint8_t want[SPOOL_SUM + 1], got[SPOOL_SUM];
    uint64_t len = 0, off = 0;
    cairn_crc4 c;
    uint8_t *buf;
    ssize_t n;
    int sfd, i, ok = 1;
    if ((sfd = open(sumpath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return -1;
    n = read(sfd, want, sizeof want);
    close(sfd);
    if (n != SPOOL_SUM || memcmp(want, SPOOL_MAGIC, 8) != 0)
        return -1;
    for (i = 0; i < 8; i++)
        len |= (uint64_t)want[8 + 16 + i] << (8 * i);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != len ||
        len > (uint64_t)CAIRN_PG_MAX_FILE)
        return -1;
    /* a small buffer that stays in the cache (measured: a fresh 1 MiB one
     * costs more in page faults than the check itself) */
    if (!(buf = malloc(SPOOL_CHECK_BUF)))
        return -1;
    cairn_crc4_init(&c);
    while (ok && off < len) {
        size_t want_n = len - off < SPOOL_CHECK_BUF ? (size_t)(len - off) : SPOOL_CHECK_BUF;
        ssize_t r = pread(fd, buf, want_n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            ok = 0;
        else {
            cairn_crc4_update(&c, buf, (size_t)r);
            off += (uint64_t)r;
        }
    }
    free(buf);
    memcpy(got, SPOOL_MAGIC, 8);
    cairn_crc4_final(&c, got + 8);
    return ok && memcmp(want, got, SPOOL_SUM) == 0 ? 0 : -1;
}

/* Serves name from the spool when a prefetcher has it (waiting up to 60 s for
 * one still downloading it). CAIRN_OK when served, CAIRN_NOTFOUND otherwise
 * (a damaged spool entry is removed: the caller fetches it from the store). */
static int fetch_spooled(const char *dir, const char *sysid, const char *name,
                         const char *dest)
{
    char path[PATH_MAX], part[PATH_MAX], sum[PATH_MAX];
    int fd;
    if (spool_path(dir, sysid, name, "", path, sizeof path) ||
        spool_path(dir, sysid, name, ".part", part, sizeof part) ||
        spool_path(dir, sysid, name, SPOOL_SUM_SFX, sum, sizeof sum))
        return CAIRN_NOTFOUND;
    if (access(path, F_OK) != 0 && (fd = open(part, O_RDONLY | O_CLOEXEC)) >= 0) {
        double deadline = cairn_mono() + 60;
        while (flock(fd, LOCK_SH | LOCK_NB) != 0 && cairn_mono() < deadline)
            usleep(5000);
        close(fd);
    }
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return CAIRN_NOTFOUND;
    if (spool_check(fd, sum) != 0) {
        close(fd);
        unlink(path); /* damaged (or from an older cairn): fetch it again */
        unlink(sum);
        return CAIRN_NOTFOUND;
    }
    close(fd);
    served_set(dir, sysid, name); /* before it leaves the spool: see served_set */
    if (rename(path, dest) != 0) {
        unlink(path); /* the caller fetches it from the store */
        unlink(sum);
        return CAIRN_NOTFOUND;
    }
    unlink(sum);
    return CAIRN_OK;
}

int cairn_pg_wal_fetch(cairn_store *s, const char *system_id, const char *name,
                       const char *dest, cairn_err *err)
{
    char key[CAIRN_WAL_KEY_MAX];
    cairn_buf b = CAIRN_BUF_INIT;
    int rc;
    if (cairn_pg_walobj_key(system_id, name, key, sizeof key) != 0)
        return cairn_error(err, CAIRN_NOTFOUND, "'%s' is not a WAL file name", name);
    rc = cairn_store_get(s, key, &b, WALOBJ_MAX, err);
    if (rc == CAIRN_NOTFOUND)
        rc = cairn_error(err, CAIRN_NOTFOUND, "'%s' is not in the archive", name);
    if (rc == CAIRN_OK)
        rc = cairn_pg_wal_write_verified(b.data, b.len, key, dest, err);
    cairn_buf_free(&b);
    return rc;
}

int cairn_pg_wal_fetch_spooled(const char *system_id, const char *name, const char *dest,
                               const char *spool_dir, cairn_err *err)
{
    (void)err; /* nothing here fails in a way the caller must hear of */
    spool_clean(spool_dir, system_id, name);
    return fetch_spooled(spool_dir, system_id, name, dest);
}

int cairn_pg_wal_fetch_spool(cairn_store *s, const char *system_id, const char *name,
                             const char *dest, const char *spool_dir, cairn_err *err)
{
    if (spool_dir) {
        int rc;
        spool_clean(spool_dir, system_id, name);
        rc = fetch_spooled(spool_dir, system_id, name, dest);
        if (rc != CAIRN_NOTFOUND)
            return rc;
        served_set(spool_dir, system_id, name);
    }
    return cairn_pg_wal_fetch(s, system_id, name, dest, err);
}

struct prefetch {
    cairn_store *s;
    const char *sysid;
    char (*names)[25];
    size_t n, next, fetched;
    unsigned char missing[64]; /* not in the archive: not asked again until
                                * the window moves */
    const char *dir;
    pthread_mutex_t mu;
    int rc;
    cairn_err err;
};

/* Downloads one object, verifies it (zstd frame checksum, size, SHA-256
 * against its metadata) and spools the raw segment with its trailer. */
static void prefetch_one(struct prefetch *p, size_t idx)
{
    const char *name = p->names[idx];
    char path[PATH_MAX], part[PATH_MAX], key[CAIRN_WAL_KEY_MAX];
    cairn_buf b = CAIRN_BUF_INIT, raw = CAIRN_BUF_INIT;
    struct cairn_pg_walmeta m;
    uint8_t sm[SPOOL_SUM];
    char sum[PATH_MAX], sumpart[PATH_MAX];
    cairn_err e;
    int fd, rc;
    if (spool_path(p->dir, p->sysid, name, "", path, sizeof path) ||
        spool_path(p->dir, p->sysid, name, ".part", part, sizeof part) ||
        spool_path(p->dir, p->sysid, name, SPOOL_SUM_SFX, sum, sizeof sum) ||
        spool_path(p->dir, p->sysid, name, SPOOL_SUM_SFX ".part", sumpart, sizeof sumpart) ||
        cairn_pg_walobj_key(p->sysid, name, key, sizeof key) != 0)
        return;
    /* spooled already, or served already (the mark is written before a spool
     * file is consumed, so one of the two checks sees it) */
    if (access(path, F_OK) == 0 || served_past(p->dir, p->sysid, name))
        return;
    fd = open(part, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 || access(path, F_OK) == 0 ||
        served_past(p->dir, p->sysid, name)) {
        close(fd); /* another prefetcher has it */
        return;
    }
    cairn_err_clear(&e);
    rc = cairn_store_get(p->s, key, &b, WALOBJ_MAX, &e);
    if (rc == CAIRN_OK)
        rc = cairn_pg_walobj_decode(b.data, b.len, key, &m, &raw, &e);
    cairn_buf_free(&b);
    if (rc == CAIRN_OK) {
        int sfd;
        spool_sum(sm, raw.data, raw.len);
        /* the check file first: a segment in the spool always has one */
        if (ftruncate(fd, 0) != 0 || write_all(fd, raw.data, raw.len) != 0 ||
            (sfd = open(sumpart, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                        0600)) < 0)
            rc = cairn_error(&e, CAIRN_FAILED, "cannot write '%s': %s", part, strerror(errno));
        else {
            int bad = write_all(sfd, sm, sizeof sm) != 0;
            if (close(sfd) != 0 || bad || rename(sumpart, sum) != 0 || rename(part, path) != 0)
                rc = cairn_error(&e, CAIRN_FAILED, "cannot write '%s': %s", part,
                                 strerror(errno));
        }
    }
    if (rc != CAIRN_OK) {
        unlink(part);
        unlink(sumpart);
        if (access(path, F_OK) != 0)
            unlink(sum);
    }
    close(fd);
    cairn_buf_free(&raw);
    pthread_mutex_lock(&p->mu);
    if (rc == CAIRN_OK)
        p->fetched++;
    else if (rc == CAIRN_NOTFOUND)
        p->missing[idx] = 1;
    else if (p->rc == CAIRN_OK) {
        p->rc = rc;
        p->err = e;
    }
    pthread_mutex_unlock(&p->mu);
}

static void *prefetch_thread(void *arg)
{
    struct prefetch *p = arg;
    for (;;) {
        size_t i;
        pthread_mutex_lock(&p->mu);
        i = p->next++;
        pthread_mutex_unlock(&p->mu);
        if (i >= p->n)
            return NULL;
        if (!p->missing[i])
            prefetch_one(p, i);
    }
}

/* The segment last served (the .served mark), or name if that is later. */
static void served_or(const char *dir, const char *sysid, const char *name, char out[25])
{
    char buf[CAIRN_WAL_NAME_MAX];
    struct cairn_pg_walname a, b;
    snprintf(out, 25, "%.24s", name);
    if (served_get(dir, sysid, buf, &b) == 0 && cairn_pg_walname_parse(name, &a) == 0 &&
        a.kind == CAIRN_PG_SEGMENT && a.tli == b.tli &&
        (b.log > a.log || (b.log == a.log && b.seg > a.seg)))
        snprintf(out, 25, "%.24s", buf);
}

#define PREFETCH_IDLE 2.0      /* seconds without progress before a worker exits */
#define PREFETCH_MAX_LIFE 3600 /* seconds a worker runs at most */

int cairn_pg_wal_prefetch(cairn_store *s, const char *system_id, const char *name,
                          uint64_t segsize, int n, const char *spool_dir, int jobs,
                          cairn_err *err)
{
    struct prefetch p;
    struct cairn_pg_walname wn;
    char names[64][25], lockpath[PATH_MAX], last[25] = "";
    pthread_t th[32];
    double idle_since = cairn_mono(), born = idle_since;
    int i, lockfd, rc = CAIRN_OK;
    if (cairn_pg_walname_parse(name, &wn) != 0 || wn.kind != CAIRN_PG_SEGMENT ||
        !cairn_pg_segsize_valid(segsize) || n < 1)
        return CAIRN_OK;
    if (n > 64)
        n = 64;
    if (jobs < 1)
        jobs = 1;
    if (jobs > 32)
        jobs = 32;
    /* one prefetcher per spool and system at a time */
    if ((size_t)snprintf(lockpath, sizeof lockpath, "%s/%s.lock", spool_dir, system_id) >=
        sizeof lockpath)
        return CAIRN_OK;
    lockfd = open(lockpath, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lockfd < 0)
        return cairn_error(err, CAIRN_FAILED, "cannot open '%s': %s", lockpath,
                           strerror(errno));
    if (flock(lockfd, LOCK_EX | LOCK_NB) != 0) {
        close(lockfd);
        return CAIRN_OK; /* another one is at work */
    }
    memset(&p, 0, sizeof p);
    p.s = s;
    p.sysid = system_id;
    p.names = names;
    p.dir = spool_dir;
    pthread_mutex_init(&p.mu, NULL);
    for (;;) {
        char cur[25];
        struct cairn_pg_walname cw;
        int started = 0;
        served_or(spool_dir, system_id, name, cur);
        if (cairn_pg_walname_parse(cur, &cw) != 0)
            break;
        if (strcmp(cur, last) != 0) { /* recovery moved on: a new window */
            snprintf(last, sizeof last, "%s", cur);
            idle_since = cairn_mono();
            memset(p.missing, 0, sizeof p.missing);
        }
        for (i = 0; i < n; i++)
            cairn_pg_segname(cw.tli, cairn_pg_segno(cw.log, cw.seg, segsize) + (uint64_t)i + 1,
                             segsize, names[i]);
        p.n = (size_t)n;
        p.next = 0;
        p.fetched = 0;
        for (i = 0; i < n; i++) { /* anything left to do in this window? */
            char path[PATH_MAX];
            if (!p.missing[i] &&
                (spool_path(spool_dir, system_id, names[i], "", path, sizeof path) != 0 ||
                 access(path, F_OK) != 0))
                break;
        }
        if (i == n)
            p.n = 0; /* no: only watch the served mark */
        for (i = 1; i < jobs && (size_t)i < p.n; i++)
            if (pthread_create(&th[started], NULL, prefetch_thread, &p) == 0)
                started++;
        prefetch_thread(&p);
        for (i = 0; i < started; i++)
            pthread_join(th[i], NULL);
        if (p.rc != CAIRN_OK) {
            rc = p.rc;
            if (err)
                *err = p.err;
            break;
        }
        if (p.fetched)
            idle_since = cairn_mono();
        else if (cairn_mono() - idle_since > PREFETCH_IDLE)
            break; /* the window is spooled and recovery does not move */
        if (cairn_mono() - born > PREFETCH_MAX_LIFE)
            break;
        if (!p.fetched)
            usleep(20000);
    }
    pthread_mutex_destroy(&p.mu);
    close(lockfd);
    return rc;
}

/* ---- catalog sync ---- */

struct keylist {
    char **v;
    uint64_t *size;
    size_t n, cap;
};

static int keylist_add(struct keylist *l, const char *k, uint64_t size)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 256;
        char **v = realloc(l->v, nc * sizeof *v);
        uint64_t *sz;
        if (!v)
            return -1;
        l->v = v;
        sz = realloc(l->size, nc * sizeof *sz);
        if (!sz)
            return -1;
        l->size = sz;
        l->cap = nc;
    }
    if (!(l->v[l->n] = strdup(k)))
        return -1;
    l->size[l->n++] = size;
    return 0;
}

static void keylist_free(struct keylist *l)
{
    size_t i;
    for (i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    free(l->size);
}

static int collect_key(void *arg, const char *key, uint64_t size)
{
    const char *name = strrchr(key, '/');
    struct cairn_pg_walname wn;
    if (!name || cairn_pg_walname_parse(name + 1, &wn) != 0)
        return 0; /* not an archived WAL file */
    return keylist_add(arg, key, size) ? -1 : 0;
}

static int collect_row(void *arg, const struct cairn_walrow *r)
{
    return keylist_add(arg, r->object_key, r->size) ? -1 : 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_key(const struct keylist *l, const char *k)
{
    if (!l->n)
        return 0;
    return bsearch(&k, l->v, l->n, sizeof *l->v, cmp_str) != NULL;
}

/* sorts v and size together (size only matters for store listings) */
static void keylist_sort(struct keylist *l)
{
    size_t i, j;
    struct pair {
        char *k;
        uint64_t s;
    } *p;
    if (l->n < 2)
        return;
    p = malloc(l->n * sizeof *p);
    if (!p) {
        qsort(l->v, l->n, sizeof *l->v, cmp_str); /* sizes lost: caller re-stats */
        for (i = 0; i < l->n; i++)
            l->size[i] = 0;
        return;
    }
    for (i = 0; i < l->n; i++) {
        p[i].k = l->v[i];
        p[i].s = l->size[i];
    }
    qsort(p, l->n, sizeof *p, cmp_str);
    for (j = 0; j < l->n; j++) {
        l->v[j] = p[j].k;
        l->size[j] = p[j].s;
    }
    free(p);
}

static int parse_key(const char *key, char *sysid, size_t n, uint32_t *tli, const char **name)
{
    const char *a, *b;
    if (strncmp(key, "wal/", 4) != 0)
        return -1;
    a = key + 4;
    b = strchr(a, '/');
    if (!b || (size_t)(b - a) >= n)
        return -1;
    memcpy(sysid, a, (size_t)(b - a));
    sysid[b - a] = 0;
    *name = strrchr(key, '/') + 1;
    {
        struct cairn_pg_walname wn;
        if (cairn_pg_walname_parse(*name, &wn) != 0)
            return -1;
        *tli = wn.tli;
    }
    return 0;
}

int cairn_pg_wal_sync(cairn_store *s, cairn_catalog *cat, const char *system_id,
                      struct cairn_pg_sync_stats *st, cairn_err *err)
{
    struct keylist store = {0}, rows = {0};
    char prefix[64];
    cairn_buf b = CAIRN_BUF_INIT;
    size_t i;
    int rc, in_tx = 0;
    struct cairn_pg_sync_stats dummy;
    if (!st)
        st = &dummy;
    memset(st, 0, sizeof *st);
    snprintf(prefix, sizeof prefix, "wal/%s%s", system_id ? system_id : "",
             system_id ? "/" : "");
    rc = cairn_store_list(s, prefix, collect_key, &store, err);
    if (rc != CAIRN_OK) {
        if (rc < 0 && rc != CAIRN_NOTFOUND)
            goto out;
        if (rc == CAIRN_NOTFOUND)
            rc = CAIRN_OK;
        else
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        if (rc != CAIRN_OK)
            goto out;
    }
    rc = cairn_catalog_wal_list(cat, system_id, 0, collect_row, &rows, err);
    if (rc != CAIRN_OK)
        goto out;
    keylist_sort(&store);
    if (rows.n > 1)
        qsort(rows.v, rows.n, sizeof *rows.v, cmp_str);
    st->objects = store.n;
    for (i = 0; i < store.n; i++) {
        struct cairn_pg_walmeta m;
        struct cairn_walrow row;
        size_t want;
        cairn_err e2;
        if (has_key(&rows, store.v[i]))
            continue;
        want = store.size[i] < CAIRN_PG_WALOBJ_HEAD_MAX ? (size_t)store.size[i]
                                                          : CAIRN_PG_WALOBJ_HEAD_MAX;
        if (want == 0 && cairn_store_stat(s, store.v[i], &store.size[i], &e2) == CAIRN_OK)
            want = store.size[i] < CAIRN_PG_WALOBJ_HEAD_MAX ? (size_t)store.size[i]
                                                              : CAIRN_PG_WALOBJ_HEAD_MAX;
        if (want == 0 || cairn_store_get_range(s, store.v[i], 0, want, &b, &e2) != CAIRN_OK ||
            cairn_pg_walobj_head(b.data, b.len, &m, NULL, &e2) != CAIRN_OK) {
            st->unreadable++;
            continue;
        }
        cairn_pg_walrow_from_meta(&m, store.v[i], &row);
        if (!in_tx) {
            if ((rc = cairn_catalog_begin(cat, err)) != CAIRN_OK)
                goto out;
            in_tx = 1;
        }
        if ((rc = cairn_catalog_wal_put(cat, &row, err)) != CAIRN_OK)
            goto out;
        st->added++;
    }
    for (i = 0; i < rows.n; i++) {
        char sid[CAIRN_WAL_SYSID_MAX];
        uint32_t tli;
        const char *name;
        if (has_key(&store, rows.v[i]) ||
            parse_key(rows.v[i], sid, sizeof sid, &tli, &name) != 0)
            continue;
        if (!in_tx) {
            if ((rc = cairn_catalog_begin(cat, err)) != CAIRN_OK)
                goto out;
            in_tx = 1;
        }
        if ((rc = cairn_catalog_wal_remove(cat, sid, tli, name, err)) != CAIRN_OK)
            goto out;
        st->removed++;
    }
    if (in_tx) {
        rc = cairn_catalog_commit(cat, err);
        in_tx = 0;
    }
out:
    if (in_tx)
        cairn_catalog_rollback(cat);
    cairn_buf_free(&b);
    keylist_free(&store);
    keylist_free(&rows);
    return rc;
}

/* ---- the archive of one system, in memory (for verify and planning) ---- */

struct walset {
    struct cairn_walrow *v;
    size_t n, cap;
};

static int walset_add(void *arg, const struct cairn_walrow *r)
{
    struct walset *w = arg;
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 256;
        struct cairn_walrow *v = realloc(w->v, nc * sizeof *v);
        if (!v)
            return -1;
        w->v = v;
        w->cap = nc;
    }
    w->v[w->n++] = *r;
    return 0;
}

static int walset_load(cairn_catalog *cat, const char *sysid, struct walset *w, cairn_err *err)
{
    int rc;
    memset(w, 0, sizeof *w);
    rc = cairn_catalog_wal_list(cat, sysid, 0, walset_add, w, err);
    if (rc > 0 || rc == -1)
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
    return rc;
}

/* Rows are in (system, timeline, name) order: binary search. */
static const struct cairn_walrow *walset_find(const struct walset *w, uint32_t tli,
                                              const char *name)
{
    size_t lo = 0, hi = w->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const struct cairn_walrow *r = &w->v[mid];
        int c = r->timeline < tli ? -1 : r->timeline > tli ? 1 : strcmp(r->segment, name);
        if (c == 0)
            return r;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int fetch_history(cairn_store *s, const char *sysid, uint32_t tli,
                         struct cairn_pg_tlentry *out, size_t max, size_t *n, cairn_err *err)
{
    char name[24], key[CAIRN_WAL_KEY_MAX];
    cairn_buf b = CAIRN_BUF_INIT, raw = CAIRN_BUF_INIT;
    struct cairn_pg_walmeta m;
    int rc;
    snprintf(name, sizeof name, "%08" PRIX32 ".history", tli);
    if (cairn_pg_walobj_key(sysid, name, key, sizeof key) != 0)
        return cairn_error(err, CAIRN_FAILED, "bad system id '%s'", sysid);
    rc = cairn_store_get(s, key, &b, 64u << 20, err);
    if (rc == CAIRN_NOTFOUND)
        rc = cairn_error(err, CAIRN_NOTFOUND, "timeline history file '%s' is not archived",
                         name);
    if (rc == CAIRN_OK)
        rc = cairn_pg_walobj_decode(b.data, b.len, key, &m, &raw, err);
    if (rc == CAIRN_OK) {
        rc = cairn_pg_history_parse((const char *)raw.data, raw.len, out, max, n, err);
        if (rc != CAIRN_OK)
            cairn_error_prefix(err, "'%s'", name);
    }
    cairn_buf_free(&b);
    cairn_buf_free(&raw);
    return rc;
}

/* ---- verify ---- */

static void reportf(cairn_pg_report_fn fn, void *arg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reportf(cairn_pg_report_fn fn, void *arg, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    if (!fn)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fn(arg, msg);
}

struct sysids {
    char v[64][CAIRN_WAL_SYSID_MAX];
    size_t n;
};

static int collect_sysid(void *arg, const struct cairn_walrow *r)
{
    struct sysids *s = arg;
    if (s->n && strcmp(s->v[s->n - 1], r->system_id) == 0)
        return 0;
    if (s->n == 64)
        return 0;
    snprintf(s->v[s->n++], CAIRN_WAL_SYSID_MAX, "%s", r->system_id);
    return 0;
}

static int verify_system(cairn_store *s, cairn_catalog *cat, const char *sysid,
                         cairn_pg_report_fn report, cairn_pg_report_fn info, void *arg,
                         uint64_t *problems, cairn_err *err)
{
    struct walset w;
    size_t i = 0;
    int rc = walset_load(cat, sysid, &w, err);
    if (rc != CAIRN_OK)
        return rc;
    while (i < w.n) {
        uint32_t tli = w.v[i].timeline;
        uint64_t segsize = 0, prev = 0, nseg = 0, nmiss = 0;
        int have_prev = 0, have_hist = 0;
        char first[CAIRN_WAL_NAME_MAX] = "", last[CAIRN_WAL_NAME_MAX] = "";
        struct cairn_pg_tlentry hist[256];
        size_t nh = 0;
        for (; i < w.n && w.v[i].timeline == tli; i++) {
            struct cairn_pg_walname wn;
            const struct cairn_walrow *r = &w.v[i];
            uint64_t segno, sz;
            if (cairn_pg_walname_parse(r->segment, &wn) != 0)
                continue;
            if (wn.kind == CAIRN_PG_HISTORY) {
                have_hist = 1;
                continue;
            }
            if (wn.kind != CAIRN_PG_SEGMENT)
                continue;
            sz = r->end_lsn - r->start_lsn;
            if (!segsize && cairn_pg_segsize_valid(sz))
                segsize = sz;
            if (!segsize || sz != segsize || r->size != segsize) {
                (*problems)++;
                reportf(report, arg, "system %s: timeline %" PRIu32 ": '%s' has size %" PRIu64
                        " (segments of this timeline are %" PRIu64 " bytes)",
                        sysid, tli, r->segment, r->size, segsize);
                continue;
            }
            segno = cairn_pg_segno(wn.log, wn.seg, segsize);
            if (have_prev && segno > prev + 1) {
                char a[25], b[25];
                cairn_pg_segname(tli, prev + 1, segsize, a);
                cairn_pg_segname(tli, segno - 1, segsize, b);
                (*problems)++;
                nmiss += segno - prev - 1;
                if (segno - prev - 1 == 1)
                    reportf(report, arg, "system %s: timeline %" PRIu32
                            ": segment %s is missing (gap between %s and %s)",
                            sysid, tli, a, last, r->segment);
                else
                    reportf(report, arg, "system %s: timeline %" PRIu32
                            ": segments %s to %s are missing (%" PRIu64 " segments)",
                            sysid, tli, a, b, segno - prev - 1);
            }
            if (!nseg)
                snprintf(first, sizeof first, "%s", r->segment);
            snprintf(last, sizeof last, "%s", r->segment);
            prev = segno;
            have_prev = 1;
            nseg++;
        }
        if (tli > 1) {
            cairn_err e2;
            if (!have_hist) {
                (*problems)++;
                reportf(report, arg, "system %s: timeline %" PRIu32
                        ": history file %08" PRIX32 ".history is not archived (recovery cannot "
                        "follow this timeline)",
                        sysid, tli, tli);
            } else if (fetch_history(s, sysid, tli, hist, 256, &nh, &e2) != CAIRN_OK) {
                (*problems)++;
                reportf(report, arg, "system %s: timeline %" PRIu32 ": %s", sysid, tli, e2.msg);
            } else if (nh && segsize && nseg) {
                /* the new timeline's first segment must be the one holding the switch */
                struct cairn_pg_walname wn;
                uint64_t want = hist[nh - 1].end / segsize;
                if (cairn_pg_walname_parse(first, &wn) == 0 &&
                    cairn_pg_segno(wn.log, wn.seg, segsize) > want) {
                    char a[25];
                    cairn_pg_segname(tli, want, segsize, a);
                    (*problems)++;
                    reportf(report, arg, "system %s: timeline %" PRIu32
                            ": segment %s is missing (the timeline starts in it)",
                            sysid, tli, a);
                }
            }
        }
        if (nseg)
            reportf(info, arg, "system %s: timeline %" PRIu32 ": %" PRIu64
                    " segments %s .. %s%s%s",
                    sysid, tli, nseg, first, last, nmiss ? ", with gaps" : "",
                    have_hist ? ", history archived" : "");
        else
            reportf(info, arg, "system %s: timeline %" PRIu32 ": no segments%s", sysid, tli,
                    have_hist ? " (history archived)" : "");
    }
    free(w.v);
    return CAIRN_OK;
}

int cairn_pg_wal_verify(cairn_store *s, cairn_catalog *cat, const char *system_id,
                        cairn_pg_report_fn report, cairn_pg_report_fn info, void *arg,
                        uint64_t *problems, cairn_err *err)
{
    struct sysids ids;
    size_t i;
    int rc;
    *problems = 0;
    memset(&ids, 0, sizeof ids);
    if (system_id) {
        snprintf(ids.v[0], CAIRN_WAL_SYSID_MAX, "%s", system_id);
        ids.n = 1;
    } else if ((rc = cairn_catalog_wal_list(cat, NULL, 0, collect_sysid, &ids, err)) !=
               CAIRN_OK) {
        return rc;
    }
    for (i = 0; i < ids.n; i++)
        if ((rc = verify_system(s, cat, ids.v[i], report, info, arg, problems, err)) !=
            CAIRN_OK)
            return rc;
    return CAIRN_OK;
}

/* ---- base backups ---- */

int cairn_pg_basebackup_parse(const char *manifest_json, const char *snapshot_id,
                              struct cairn_pg_basebackup *out, cairn_err *err)
{
    json_error_t je;
    json_t *o = json_loads(manifest_json, 0, &je), *pg;
    char lsn[32];
    int ok = 1;
    memset(out, 0, sizeof *out);
    if (!o)
        return cairn_error(err, CAIRN_CORRUPT, "snapshot %.12s: manifest: %s", snapshot_id,
                           je.text);
    pg = json_object_get(o, "postgres");
    if (!json_is_object(pg) || !json_is_string(json_object_get(pg, "backup_label"))) {
        json_decref(o);
        return cairn_error(err, CAIRN_NOTFOUND,
                           "snapshot %.12s is not a complete PostgreSQL base backup",
                           snapshot_id);
    }
    snprintf(out->snapshot, sizeof out->snapshot, "%s", snapshot_id);
    if (jstr(pg, "system_id", out->system_id, sizeof out->system_id) ||
        jstr(pg, "start_lsn", lsn, sizeof lsn) || cairn_pg_lsn_parse(lsn, &out->start_lsn) ||
        jstr(pg, "stop_lsn", lsn, sizeof lsn) || cairn_pg_lsn_parse(lsn, &out->stop_lsn))
        ok = 0;
    out->timeline = (uint32_t)jint(pg, "timeline", &ok);
    out->start_ns = jint(pg, "start_time_ns", &ok);
    out->stop_ns = jint(pg, "stop_time_ns", &ok);
    out->segment_size = (uint64_t)jint(pg, "segment_size", &ok);
    out->server_version = (int)jint(pg, "server_version", &ok);
    {
        const char *data =
            json_string_value(json_object_get(json_object_get(o, "snapshot"), "data"));
        out->reference = data && strcmp(data, "reference") == 0;
    }
    json_decref(o);
    if (!ok || !out->timeline || !cairn_pg_segsize_valid(out->segment_size))
        return cairn_error(err, CAIRN_CORRUPT,
                           "snapshot %.12s: the PostgreSQL part of its manifest is invalid",
                           snapshot_id);
    return CAIRN_OK;
}

struct bb_list {
    const char *sysid;
    cairn_pg_basebackup_cb cb;
    void *arg;
};

static int bb_row(void *arg, const struct cairn_snaprow *row)
{
    struct bb_list *l = arg;
    struct cairn_pg_basebackup b;
    cairn_err e;
    if (strncmp(row->source, "postgres:", 9) != 0 && !strstr(row->manifest, "\"postgres\""))
        return 0;
    if (cairn_pg_basebackup_parse(row->manifest, row->id, &b, &e) != CAIRN_OK)
        return 0;
    if (l->sysid && strcmp(l->sysid, b.system_id) != 0)
        return 0;
    return l->cb(l->arg, &b);
}

int cairn_pg_basebackup_list(cairn_catalog *cat, const char *system_id,
                             cairn_pg_basebackup_cb cb, void *arg, cairn_err *err)
{
    struct bb_list l = {system_id, cb, arg};
    return cairn_catalog_list_snapshots(cat, NULL, bb_row, &l, err);
}

/* ---- planning ---- */

struct bbset {
    struct cairn_pg_basebackup *v;
    size_t n, cap;
};

static int bbset_add(void *arg, const struct cairn_pg_basebackup *b)
{
    struct bbset *s = arg;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 16;
        struct cairn_pg_basebackup *v = realloc(s->v, nc * sizeof *v);
        if (!v)
            return -1;
        s->v = v;
        s->cap = nc;
    }
    s->v[s->n++] = *b;
    return 0;
}

#define MAX_TL 256

struct chain {
    struct cairn_pg_tlentry e[MAX_TL + 1]; /* oldest first; the last ends at UINT64_MAX */
    size_t n;
};

/* The timeline that holds segment segno when following the chain: the newest
 * timeline that had begun by that segment (PostgreSQL reads the switch
 * segment from the new timeline). */
static uint32_t chain_tli(const struct chain *c, uint64_t segno, uint64_t segsize)
{
    size_t i;
    for (i = c->n; i-- > 0;) {
        uint64_t begin = i ? c->e[i - 1].end : 0;
        if (begin / segsize <= segno)
            return c->e[i].tli;
    }
    return c->e[0].tli;
}

static int chain_build(cairn_store *s, const char *sysid, uint32_t tli, struct chain *c,
                       cairn_err *err)
{
    size_t n = 0;
    int rc = CAIRN_OK;
    c->n = 0;
    if (tli > 1) {
        rc = fetch_history(s, sysid, tli, c->e, MAX_TL, &n, err);
        if (rc == CAIRN_NOTFOUND)
            n = 0, rc = CAIRN_OK; /* PostgreSQL then assumes no ancestors too */
        if (rc != CAIRN_OK)
            return rc;
    }
    c->e[n].tli = tli;
    c->e[n].end = UINT64_MAX;
    c->n = n + 1;
    return CAIRN_OK;
}

/* The timeline entry of `tli` in the chain, or NULL. */
static const struct cairn_pg_tlentry *chain_find(const struct chain *c, uint32_t tli)
{
    size_t i;
    for (i = 0; i < c->n; i++)
        if (c->e[i].tli == tli)
            return &c->e[i];
    return NULL;
}

static int history_archived(const struct walset *w, uint32_t tli)
{
    char name[24];
    snprintf(name, sizeof name, "%08" PRIX32 ".history", tli);
    return walset_find(w, tli, name) != NULL;
}

/* Is any segment at or after segno archived on the chain? */
static int later_segment(const struct walset *w, const struct chain *c, uint64_t segno,
                         uint64_t segsize)
{
    size_t i;
    for (i = 0; i < w->n; i++) {
        struct cairn_pg_walname wn;
        const struct cairn_pg_tlentry *e;
        uint64_t sn;
        if (cairn_pg_walname_parse(w->v[i].segment, &wn) != 0 || wn.kind != CAIRN_PG_SEGMENT)
            continue;
        sn = cairn_pg_segno(wn.log, wn.seg, segsize);
        e = chain_find(c, wn.tli);
        if (e && sn >= segno && chain_tli(c, sn, segsize) == wn.tli)
            return 1;
    }
    return 0;
}

static int plan_wal(const struct walset *w, const struct chain *c,
                    const struct cairn_pg_basebackup *b, const struct cairn_pg_target *t,
                    struct cairn_pg_plan *p, cairn_err *err)
{
    uint64_t segsize = b->segment_size, segno = b->start_lsn / segsize;
    uint64_t stop_seg = b->stop_lsn / segsize, end_seg = UINT64_MAX;
    char sb[24], name[25];
    cairn_pg_lsn_format(b->start_lsn, sb, sizeof sb);
    if (t->kind == CAIRN_PG_TARGET_LSN)
        end_seg = t->lsn / segsize;
    p->n_segments = 0;
    for (;; segno++) {
        uint32_t tli = chain_tli(c, segno, segsize);
        const struct cairn_walrow *r;
        cairn_pg_segname(tli, segno, segsize, name);
        r = walset_find(w, tli, name);
        if (!r) {
            char ts[64];
            if (segno <= stop_seg || segno <= end_seg) {
                if (end_seg == UINT64_MAX && segno > stop_seg &&
                    !later_segment(w, c, segno, segsize)) {
                    /* the end of the archive */
                    if (t->kind == CAIRN_PG_TARGET_TIME) {
                        cairn_format_time(t->time_ns, ts, sizeof ts);
                        return cairn_error(err, CAIRN_NOTFOUND,
                                           "no archived WAL has a commit after %s (the archive "
                                           "ends before segment %s): recovery would end before "
                                           "the target; use --latest to recover everything "
                                           "archived, or wait for archiving to catch up",
                                           ts, name);
                    }
                    break;
                }
                return cairn_error(err, CAIRN_FAILED,
                                   "WAL segment %s is not in the archive (system %s); recovery "
                                   "from base backup %.12s (start %s) to the target needs it",
                                   name, b->system_id, b->snapshot, sb);
            }
            break;
        }
        if (!p->n_segments)
            snprintf(p->first_segment, sizeof p->first_segment, "%s", name);
        snprintf(p->last_segment, sizeof p->last_segment, "%s", name);
        p->n_segments++;
        if (segno >= end_seg && segno >= stop_seg)
            break;
        if (t->kind == CAIRN_PG_TARGET_TIME && segno >= stop_seg && r->has_commit &&
            r->max_commit_ns > t->time_ns)
            break; /* recovery stops in this segment */
    }
    if (!p->n_segments || segno < stop_seg)
        return cairn_error(err, CAIRN_FAILED,
                           "the WAL of base backup %.12s is incomplete in the archive",
                           b->snapshot);
    return CAIRN_OK;
}

int cairn_pg_plan_restore(cairn_store *s, cairn_catalog *cat, const struct cairn_pg_target *t,
                          struct cairn_pg_plan *plan, cairn_err *err)
{
    struct bbset bbs = {0};
    struct walset w = {0};
    struct chain *c = NULL;
    char sysid[CAIRN_WAL_SYSID_MAX] = "", why[512] = "";
    size_t i;
    int rc;
    memset(plan, 0, sizeof *plan);
    rc = cairn_pg_basebackup_list(cat, t->system_id, bbset_add, &bbs, err);
    if (rc != CAIRN_OK) {
        if (rc > 0)
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    for (i = 0; i < bbs.n; i++) {
        if (!sysid[0])
            snprintf(sysid, sizeof sysid, "%s", bbs.v[i].system_id);
        else if (strcmp(sysid, bbs.v[i].system_id) != 0) {
            rc = cairn_error(err, CAIRN_FAILED,
                             "the repository has base backups of several PostgreSQL clusters "
                             "(system ids %s and %s): choose one with --system-id",
                             sysid, bbs.v[i].system_id);
            goto out;
        }
    }
    if (!bbs.n) {
        rc = cairn_error(err, CAIRN_NOTFOUND,
                         "the repository has no PostgreSQL base backup%s%s (make one with "
                         "'cairn backup-pg')",
                         t->system_id ? " of system " : "", t->system_id ? t->system_id : "");
        goto out;
    }
    if ((rc = walset_load(cat, sysid, &w, err)) != CAIRN_OK)
        goto out;
    if (!(c = malloc(sizeof *c))) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    rc = CAIRN_NOTFOUND;
    for (i = bbs.n; i-- > 0;) {
        const struct cairn_pg_basebackup *b = &bbs.v[i];
        const struct cairn_pg_tlentry *e;
        uint32_t tli;
        char l1[24], l2[24];
        if (t->snapshot && strncmp(b->snapshot, t->snapshot, strlen(t->snapshot)) != 0)
            continue;
        if (b->reference) {
            /* taken by the agent with a csi/exec snapshot: its files are in the
             * storage snapshot, not in the repository */
            if (!why[0]) /* the newest candidate's reason */
                snprintf(why, sizeof why,
                         "base backup %.12s is a storage snapshot (the agent's csi or exec "
                         "method): its files are not in the repository; restore that snapshot "
                         "with the storage, or use cairn.io/csi-copy to copy it in",
                         b->snapshot);
            continue;
        }
        cairn_pg_lsn_format(b->stop_lsn, l2, sizeof l2);
        if (t->kind == CAIRN_PG_TARGET_TIME && b->stop_ns >= t->time_ns) {
            char ts[64];
            cairn_format_time(b->stop_ns, ts, sizeof ts);
            if (!why[0]) /* the newest candidate's reason */
                snprintf(why, sizeof why, "base backup %.12s ended at %s, after the target",
                         b->snapshot, ts);
            continue;
        }
        if (t->kind == CAIRN_PG_TARGET_LSN && b->stop_lsn > t->lsn) {
            if (!why[0]) /* the newest candidate's reason */
                snprintf(why, sizeof why, "base backup %.12s ended at LSN %s, after the target",
                         b->snapshot, l2);
            continue;
        }
        /* the timeline recovery will follow */
        if (!t->timeline || strcmp(t->timeline, "latest") == 0) {
            tli = b->timeline;
            while (tli < UINT32_MAX && history_archived(&w, tli + 1))
                tli++;
        } else if (strcmp(t->timeline, "current") == 0) {
            tli = b->timeline;
        } else {
            char *end;
            unsigned long v = strtoul(t->timeline, &end, 0);
            if (*end || v == 0 || v > UINT32_MAX) {
                rc = cairn_error(err, CAIRN_FAILED,
                                 "--to-timeline takes latest, current or a timeline number, "
                                 "not '%s'",
                                 t->timeline);
                goto out;
            }
            tli = (uint32_t)v;
        }
        if ((rc = chain_build(s, sysid, tli, c, err)) != CAIRN_OK)
            goto out;
        e = chain_find(c, b->timeline);
        if (!e || e->end < b->stop_lsn) {
            cairn_pg_lsn_format(b->start_lsn, l1, sizeof l1);
            if (!why[0]) /* the newest candidate's reason */
                snprintf(why, sizeof why,
                         "base backup %.12s (timeline %" PRIu32 ", %s..%s) is not on the history of "
                         "timeline %" PRIu32,
                         b->snapshot, b->timeline, l1, l2, tli);
            rc = CAIRN_NOTFOUND;
            continue;
        }
        plan->base = *b;
        plan->target_tli = tli;
        rc = plan_wal(&w, c, b, t, plan, err);
        goto out;
    }
    if (t->snapshot && !why[0])
        snprintf(why, sizeof why, "no PostgreSQL base backup has an id starting with '%s'",
                 t->snapshot);
    if (!t->snapshot && (t->kind == CAIRN_PG_TARGET_TIME || t->kind == CAIRN_PG_TARGET_LSN) &&
        (t->kind == CAIRN_PG_TARGET_TIME ? bbs.v[0].stop_ns >= t->time_ns
                                         : bbs.v[0].stop_lsn > t->lsn)) {
        /* before the oldest base backup: older ones were forgotten (their WAL
         * with them) or never made */
        char ts[64], l2[24];
        cairn_format_time(bbs.v[0].stop_ns, ts, sizeof ts);
        cairn_pg_lsn_format(bbs.v[0].stop_lsn, l2, sizeof l2);
        rc = cairn_error(err, CAIRN_NOTFOUND,
                         "the target is before the oldest base backup in the repository "
                         "(%.12s, which ended at %s, LSN %s): there is no base backup to "
                         "recover from before that point (older ones were forgotten or never "
                         "made); choose a target after it",
                         bbs.v[0].snapshot, ts, l2);
        goto out;
    }
    rc = cairn_error(err, CAIRN_NOTFOUND, "no base backup fits the target%s%s",
                     why[0] ? ": the newest candidate was refused because " : "", why);
out:
    free(c);
    free(bbs.v);
    free(w.v);
    return rc;
}

/* ---- preparing the data directory ---- */

/* Moves every entry of dir `from` into `to` (same file system), then removes
 * `from`. */
static int move_children(const char *from, const char *to, cairn_err *err)
{
    DIR *d = opendir(from);
    struct dirent *de;
    int rc = CAIRN_OK;
    if (!d)
        return cairn_error(err, CAIRN_FAILED, "cannot open '%s': %s", from, strerror(errno));
    while (rc == CAIRN_OK && (de = readdir(d)) != NULL) {
        char *a, *b;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        a = cairn_path_join(from, de->d_name);
        b = cairn_path_join(to, de->d_name);
        if (!a || !b)
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        else if (rename(a, b) != 0)
            rc = cairn_error(err, CAIRN_FAILED, "cannot move '%s' to '%s': %s", a, b,
                             strerror(errno));
        free(a);
        free(b);
    }
    closedir(d);
    if (rc == CAIRN_OK && rmdir(from) != 0)
        rc = cairn_error(err, CAIRN_FAILED, "cannot remove '%s': %s", from, strerror(errno));
    return rc;
}

static int dir_state(const char *p) /* 0 absent, 1 empty dir, 2 other */
{
    DIR *d;
    struct dirent *de;
    int st = 1;
    if (access(p, F_OK) != 0 && errno == ENOENT)
        return 0;
    if (!(d = opendir(p)))
        return 2;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            st = 2;
    closedir(d);
    return st;
}

static int mkdir_p(const char *path, cairn_err *err)
{
    char tmp[PATH_MAX];
    size_t i;
    if (strlen(path) >= sizeof tmp)
        return cairn_error(err, CAIRN_FAILED, "path too long: '%s'", path);
    snprintf(tmp, sizeof tmp, "%s", path);
    for (i = 1; tmp[i]; i++) {
        if (tmp[i] != '/')
            continue;
        tmp[i] = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return cairn_error(err, CAIRN_FAILED, "cannot create '%s': %s", tmp,
                               strerror(errno));
        tmp[i] = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return cairn_error(err, CAIRN_FAILED, "cannot create '%s': %s", tmp, strerror(errno));
    return CAIRN_OK;
}

/* Restores the snapshot's top-level entry `root` (its contents) into dest,
 * through dest/.cairn-pg-staging. */
static int restore_root(cairn_repo *r, const struct cairn_snapshot *snap, const char *root,
                        const char *dest, const struct cairn_pg_restore_opts *o,
                        const char *what, cairn_err *err)
{
    struct cairn_restore_opts ro;
    struct cairn_restore_stats st;
    const char *inc[1] = {root};
    char *stage = NULL, *sub = NULL;
    int rc;
    if ((rc = mkdir_p(dest, err)) != CAIRN_OK)
        return rc;
    stage = cairn_path_join(dest, ".cairn-pg-staging");
    sub = stage ? cairn_path_join(stage, root) : NULL;
    if (!sub) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    memset(&ro, 0, sizeof ro);
    memset(&st, 0, sizeof st);
    ro.target = stage;
    ro.includes = inc;
    ro.n_includes = 1;
    ro.warn = o->warn;
    ro.warn_arg = o->warn_arg;
    ro.progress = o->progress;
    ro.progress_arg = o->progress_arg;
    rc = cairn_restore(r, snap, &ro, &st, err);
    if (rc == CAIRN_WARN)
        rc = cairn_error(err, CAIRN_FAILED,
                         "%llu files of %s could not be restored (named above); the data "
                         "directory is not usable",
                         (unsigned long long)st.failed, what);
    if (rc == CAIRN_OK)
        rc = move_children(sub, dest, err);
    if (rc == CAIRN_OK && rmdir(stage) != 0)
        rc = cairn_error(err, CAIRN_FAILED, "cannot remove '%s': %s", stage, strerror(errno));
out:
    free(stage);
    free(sub);
    return rc;
}

struct ts_dest {
    const char *oid, *location, *root;
    const char *dest; /* location, or the map's NEW */
};

/* The tablespaces of the manifest and where they go; checks the map and that
 * every destination is absent or empty. *out is malloc'd (NULL when none). */
static int ts_plan(json_t *pg, const struct cairn_pg_restore_opts *o, const char *snapid,
                   struct ts_dest **out, size_t *n, cairn_err *err)
{
    json_t *arr = json_object_get(pg, "tablespaces");
    size_t i, k, cnt = json_is_array(arr) ? json_array_size(arr) : 0;
    struct ts_dest *v;
    *out = NULL;
    *n = 0;
    if (!cnt) {
        if (o->n_tablespace_map)
            return cairn_error(err, CAIRN_FAILED,
                               "--tablespace-map: base backup %.12s has no tablespaces", snapid);
        return CAIRN_OK;
    }
    if (!json_is_string(json_object_get(pg, "pgdata_root")))
        return cairn_error(err, CAIRN_CORRUPT, "snapshot %.12s: tablespaces without pgdata_root",
                           snapid);
    if (!(v = calloc(cnt, sizeof *v)))
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    for (i = 0; i < cnt; i++) {
        json_t *e = json_array_get(arr, i);
        v[i].oid = json_string_value(json_object_get(e, "oid"));
        v[i].location = json_string_value(json_object_get(e, "location"));
        v[i].root = json_string_value(json_object_get(e, "root"));
        if (!v[i].oid || !v[i].location || !v[i].root) {
            free(v);
            return cairn_error(err, CAIRN_CORRUPT, "snapshot %.12s: a tablespace entry is invalid",
                               snapid);
        }
        v[i].dest = v[i].location;
    }
    for (k = 0; k < o->n_tablespace_map; k++) {
        const char *m = o->tablespace_map[k], *eq = strchr(m, '=');
        int hit = 0;
        if (!eq || eq == m || eq[1] != '/') {
            free(v);
            return cairn_error(err, CAIRN_FAILED,
                               "--tablespace-map takes OLD=NEW with NEW an absolute path, not "
                               "'%s'",
                               m);
        }
        for (i = 0; i < cnt; i++) {
            size_t l = (size_t)(eq - m);
            if ((strlen(v[i].location) == l && strncmp(v[i].location, m, l) == 0) ||
                (strlen(v[i].oid) == l && strncmp(v[i].oid, m, l) == 0)) {
                v[i].dest = eq + 1;
                hit = 1;
            }
        }
        if (!hit) {
            char have[1024] = "";
            for (i = 0; i < cnt; i++)
                snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s (%s)",
                         i ? ", " : "", v[i].location, v[i].oid);
            free(v);
            return cairn_error(err, CAIRN_FAILED,
                               "--tablespace-map '%s': base backup %.12s has no such tablespace "
                               "(it has: %s)",
                               m, snapid, have);
        }
    }
    for (i = 0; i < cnt; i++) {
        for (k = 0; k < i; k++)
            if (strcmp(v[k].dest, v[i].dest) == 0) {
                int rc = cairn_error(err, CAIRN_FAILED,
                                     "tablespaces %s and %s would both go to '%s'", v[k].oid,
                                     v[i].oid, v[i].dest);
                free(v);
                return rc;
            }
        if (dir_state(v[i].dest) == 2) {
            int rc = cairn_error(err, CAIRN_FAILED,
                                 "tablespace %s would be restored to '%s', which is not empty%s: "
                                 "give another place with --tablespace-map %s=NEW",
                                 v[i].oid, v[i].dest,
                                 v[i].dest == v[i].location ? " (its original location)" : "",
                                 v[i].location);
            free(v);
            return rc;
        }
    }
    *out = v;
    *n = cnt;
    return CAIRN_OK;
}


static int put_owned(const char *path, const void *data, size_t len, int mode, uid_t uid,
                     gid_t gid, cairn_err *err)
{
    int rc = cairn_write_file_atomic(path, data, len, mode, err);
    if (rc == CAIRN_OK && geteuid() == 0 && chown(path, uid, gid) != 0)
        rc = cairn_error(err, CAIRN_FAILED, "cannot set the owner of '%s': %s", path,
                         strerror(errno));
    return rc;
}

/* Is this postgresql.auto.conf line a setting we replace? */
static int recovery_line(const char *p, size_t l)
{
    static const char *const keys[] = {"restore_command", "recovery_target",
                                       "recovery_target_time", "recovery_target_lsn",
                                       "recovery_target_xid", "recovery_target_name",
                                       "recovery_target_timeline", "recovery_target_action",
                                       "recovery_target_inclusive"};
    size_t i, k = 0;
    while (l && isspace((unsigned char)*p))
        p++, l--;
    while (k < l && (isalnum((unsigned char)p[k]) || p[k] == '_'))
        k++;
    for (i = 0; i < sizeof keys / sizeof *keys; i++)
        if (strlen(keys[i]) == k && strncasecmp(p, keys[i], k) == 0)
            return 1;
    return 0;
}

static int conf_quote(cairn_buf *b, const char *s)
{
    int rc = cairn_buf_putc(b, '\'');
    for (; rc == CAIRN_OK && *s; s++)
        rc = *s == '\'' ? cairn_buf_append(b, "''", 2) : cairn_buf_putc(b, *s);
    return rc == CAIRN_OK ? cairn_buf_putc(b, '\'') : rc;
}

static int conf_set(cairn_buf *b, const char *key, const char *val)
{
    int rc = cairn_buf_appendf(b, "%s = ", key);
    if (rc == CAIRN_OK)
        rc = conf_quote(b, val);
    return rc == CAIRN_OK ? cairn_buf_putc(b, '\n') : rc;
}

int cairn_pg_restore(cairn_repo *r, const struct cairn_pg_plan *plan,
                     const struct cairn_pg_target *t, const struct cairn_pg_restore_opts *o,
                     cairn_err *err)
{
    struct cairn_snapshot *snap = NULL;
    struct cairn_restore_opts ro;
    struct cairn_restore_stats st;
    cairn_buf conf = CAIRN_BUF_INIT, out = CAIRN_BUF_INIT;
    char *path = NULL, ts[64], v[160];
    const char *label, *spcmap;
    json_t *pg;
    struct stat sv;
    uid_t uid = geteuid();
    gid_t gid = getegid();
    struct ts_dest *tsd = NULL;
    size_t n_tsd = 0;
    int rc;

    /* cairn_restore() loads libarchive too, but the tablespace directories
     * are created before it runs: fail before anything is */
    if ((rc = cairn_archive_load(err)) != CAIRN_OK)
        return rc;
    rc = cairn_repo_snapshot_get(r, plan->base.snapshot, NULL, &snap, err);
    if (rc != CAIRN_OK)
        return rc;
    pg = json_object_get(snap->json, "postgres");
    label = json_string_value(json_object_get(pg, "backup_label"));
    spcmap = json_string_value(json_object_get(pg, "tablespace_map"));
    if (!label) {
        rc = cairn_error(err, CAIRN_CORRUPT, "snapshot %.12s has no backup_label",
                         plan->base.snapshot);
        goto out;
    }
    if ((rc = ts_plan(pg, o, plan->base.snapshot, &tsd, &n_tsd, err)) != CAIRN_OK)
        goto out;
    if (n_tsd) {
        /* the snapshot holds <pgdata name>/ and one directory per tablespace */
        char what[128];
        size_t i;
        snprintf(what, sizeof what, "base backup %.12s", plan->base.snapshot);
        rc = restore_root(r, snap, json_string_value(json_object_get(pg, "pgdata_root")),
                          o->target_dir, o, what, err);
        for (i = 0; rc == CAIRN_OK && i < n_tsd; i++) {
            snprintf(what, sizeof what, "tablespace %s of base backup %.12s", tsd[i].oid,
                     plan->base.snapshot);
            rc = restore_root(r, snap, tsd[i].root, tsd[i].dest, o, what, err);
        }
        if (rc != CAIRN_OK)
            goto out;
    } else {
        memset(&ro, 0, sizeof ro);
        memset(&st, 0, sizeof st);
        ro.target = o->target_dir;
        ro.warn = o->warn;
        ro.warn_arg = o->warn_arg;
        ro.progress = o->progress;
        ro.progress_arg = o->progress_arg;
        rc = cairn_restore(r, snap, &ro, &st, err);
        if (rc == CAIRN_WARN)
            rc = cairn_error(err, CAIRN_FAILED,
                             "%llu files of base backup %.12s could not be restored (named "
                             "above); the data directory is not usable",
                             (unsigned long long)st.failed, plan->base.snapshot);
        if (rc != CAIRN_OK)
            goto out;
    }

#define JOIN(name)                                                                        \
    do {                                                                                  \
        free(path);                                                                       \
        if (!(path = cairn_path_join(o->target_dir, name))) {                             \
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");                          \
            goto out;                                                                     \
        }                                                                                 \
    } while (0)

    JOIN("PG_VERSION");
    if (stat(path, &sv) != 0) {
        rc = cairn_error(err, CAIRN_CORRUPT,
                         "base backup %.12s has no PG_VERSION: not a PostgreSQL data directory",
                         plan->base.snapshot);
        goto out;
    }
    uid = sv.st_uid;
    gid = sv.st_gid;
    if (chmod(o->target_dir, 0700) != 0 ||
        (geteuid() == 0 && chown(o->target_dir, uid, gid) != 0)) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot set the mode or owner of '%s': %s",
                         o->target_dir, strerror(errno));
        goto out;
    }
    {
        static const char *const dirs[] = {"pg_wal", "pg_wal/archive_status"};
        size_t i;
        for (i = 0; i < 2; i++) {
            JOIN(dirs[i]);
            if (mkdir(path, 0700) != 0 && errno != EEXIST) {
                rc = cairn_error(err, CAIRN_FAILED, "cannot create '%s': %s", path,
                                 strerror(errno));
                goto out;
            }
            if (geteuid() == 0 && chown(path, uid, gid) != 0) {
                rc = cairn_error(err, CAIRN_FAILED, "cannot set the owner of '%s': %s", path,
                                 strerror(errno));
                goto out;
            }
        }
    }
    JOIN("backup_label");
    if ((rc = put_owned(path, label, strlen(label), 0600, uid, gid, err)) != CAIRN_OK)
        goto out;
    {
        /* tablespace directories: owned like PGDATA, mode 0700; pg_tblspc/<oid>
         * links to where they went (PostgreSQL also recreates the links from
         * tablespace_map at the start of recovery) */
        size_t i;
        for (i = 0; i < n_tsd; i++) {
            char link[64];
            if (chmod(tsd[i].dest, 0700) != 0 ||
                (geteuid() == 0 && chown(tsd[i].dest, uid, gid) != 0)) {
                rc = cairn_error(err, CAIRN_FAILED, "cannot set the mode or owner of '%s': %s",
                                 tsd[i].dest, strerror(errno));
                goto out;
            }
            snprintf(link, sizeof link, "pg_tblspc/%s", tsd[i].oid);
            JOIN(link);
            if ((unlink(path) != 0 && errno != ENOENT) || symlink(tsd[i].dest, path) != 0 ||
                (geteuid() == 0 && lchown(path, uid, gid) != 0)) {
                rc = cairn_error(err, CAIRN_FAILED, "cannot link '%s' to '%s': %s", path,
                                 tsd[i].dest, strerror(errno));
                goto out;
            }
        }
    }
    if (spcmap && *spcmap) {
        /* byte for byte, except the lines of remapped tablespaces */
        const char *p = spcmap;
        cairn_buf_free(&conf);
        while (*p) {
            const char *nl = strchr(p, '\n');
            size_t l = nl ? (size_t)(nl - p) + 1 : strlen(p), i, ol = strcspn(p, " ");
            const struct ts_dest *d = NULL;
            for (i = 0; i < n_tsd; i++)
                if (strlen(tsd[i].oid) == ol && strncmp(p, tsd[i].oid, ol) == 0 &&
                    strcmp(tsd[i].dest, tsd[i].location) != 0)
                    d = &tsd[i];
            if (d)
                rc = cairn_buf_appendf(&conf, "%s %s\n", d->oid, d->dest);
            else
                rc = cairn_buf_append(&conf, p, l);
            if (rc != CAIRN_OK)
                goto oom;
            p += l;
        }
        JOIN("tablespace_map");
        if ((rc = put_owned(path, conf.data, conf.len, 0600, uid, gid, err)) != CAIRN_OK)
            goto out;
        cairn_buf_free(&conf);
    }
    /* postgresql.auto.conf: earlier recovery settings out, ours in */
    JOIN("postgresql.auto.conf");
    if (access(path, F_OK) == 0 &&
        (rc = cairn_read_file(path, &conf, 16u << 20, err)) != CAIRN_OK)
        goto out;
    {
        size_t pos = 0;
        while (pos < conf.len) {
            const char *p = (const char *)conf.data + pos;
            const char *nl = memchr(p, '\n', conf.len - pos);
            size_t l = nl ? (size_t)(nl - p) + 1 : conf.len - pos;
            if (!recovery_line(p, l) &&
                (l < 27 || strncmp(p, "# added by cairn restore-pg", 27) != 0))
                if ((rc = cairn_buf_append(&out, p, l)) != CAIRN_OK)
                    goto oom;
            pos += l;
        }
        if (out.len && out.data[out.len - 1] != '\n' && cairn_buf_putc(&out, '\n') != CAIRN_OK)
            goto oom;
    }
    cairn_format_time(cairn_now_ns(), ts, sizeof ts);
    rc = cairn_buf_appendf(&out, "# added by cairn restore-pg at %s from base backup %s\n", ts,
                           plan->base.snapshot);
    if (rc == CAIRN_OK)
        rc = conf_set(&out, "restore_command", o->restore_command);
    snprintf(v, sizeof v, "%s",
             t->timeline ? t->timeline : "latest");
    if (rc == CAIRN_OK)
        rc = conf_set(&out, "recovery_target_timeline", v);
    switch (t->kind) {
    case CAIRN_PG_TARGET_TIME: {
        /* PostgreSQL parses this in its own time zone setting: give UTC explicitly */
        time_t sec = (time_t)(t->time_ns / 1000000000);
        struct tm tm;
        char tbuf[64];
        gmtime_r(&sec, &tm);
        strftime(tbuf, sizeof tbuf, "%Y-%m-%d %H:%M:%S", &tm);
        snprintf(v, sizeof v, "%s.%06ld+00", tbuf, (long)(t->time_ns % 1000000000) / 1000);
        if (rc == CAIRN_OK)
            rc = conf_set(&out, "recovery_target_time", v);
        break;
    }
    case CAIRN_PG_TARGET_LSN:
        cairn_pg_lsn_format(t->lsn, v, sizeof v);
        if (rc == CAIRN_OK)
            rc = conf_set(&out, "recovery_target_lsn", v);
        break;
    case CAIRN_PG_TARGET_XID:
        if (rc == CAIRN_OK)
            rc = conf_set(&out, "recovery_target_xid", t->xid);
        break;
    case CAIRN_PG_TARGET_NAME:
        if (rc == CAIRN_OK)
            rc = conf_set(&out, "recovery_target_name", t->name);
        break;
    case CAIRN_PG_TARGET_LATEST:
        break;
    }
    if (rc == CAIRN_OK && t->kind != CAIRN_PG_TARGET_LATEST)
        rc = conf_set(&out, "recovery_target_action", t->action ? t->action : "promote");
    if (rc != CAIRN_OK)
        goto oom;
    if ((rc = put_owned(path, out.data, out.len, 0600, uid, gid, err)) != CAIRN_OK)
        goto out;
    JOIN("recovery.signal");
    rc = put_owned(path, "", 0, 0600, uid, gid, err);
    goto out;
oom:
    rc = cairn_error(err, CAIRN_FATAL, "out of memory");
out:
    free(tsd);
    free(path);
    cairn_buf_free(&conf);
    cairn_buf_free(&out);
    cairn_snapshot_free(snap);
    return rc;
}

/* ---- WAL retention (the forget hook) ---- */

struct ret_scan {
    const char *source;
    const char *kept_id;             /* the source's oldest kept snapshot */
    int64_t kept_ns;
    char sysid[CAIRN_WAL_SYSID_MAX]; /* of the source's base backups */
    struct bbset all;                /* every remaining complete base backup */
    int conflict;                    /* the source has base backups of two systems */
};

static int ret_row(void *arg, const struct cairn_snaprow *row)
{
    struct ret_scan *rs = arg;
    struct cairn_pg_basebackup b;
    cairn_err e;
    if (strncmp(row->source, "postgres:", 9) != 0 && !strstr(row->manifest, "\"postgres\""))
        return 0;
    if (cairn_pg_basebackup_parse(row->manifest, row->id, &b, &e) != CAIRN_OK)
        return 0;
    if (strcmp(row->source, rs->source) == 0) {
        /* forget removes every snapshot of the source older than the oldest
         * kept one (in a dry run they are still listed) */
        if (!rs->kept_id || (row->time_ns < rs->kept_ns && strcmp(row->id, rs->kept_id) != 0)) {
            if (!rs->sysid[0])
                snprintf(rs->sysid, sizeof rs->sysid, "%s", b.system_id);
            return 0;
        }
        if (!rs->sysid[0])
            snprintf(rs->sysid, sizeof rs->sysid, "%s", b.system_id);
        else if (strcmp(rs->sysid, b.system_id) != 0)
            rs->conflict = 1;
    }
    return bbset_add(&rs->all, &b);
}

static void retf(const struct cairn_pg_retention *pr, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void retf(const struct cairn_pg_retention *pr, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    if (!pr || !pr->report)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pr->report(pr->report_arg, msg);
}

int cairn_pg_log_retention(void *arg, cairn_repo *r, const char *source,
                           const char *oldest_kept_id, int64_t oldest_kept_ns, int dry_run,
                           cairn_err *err)
{
    struct cairn_pg_retention *pr = arg;
    cairn_store *s = cairn_repo_store(r);
    cairn_catalog *cat = cairn_repo_catalog(r);
    struct ret_scan rs;
    struct walset w = {0};
    const struct cairn_pg_basebackup *oldest = NULL;
    uint64_t cut_seg, segsize, n_del = 0, bytes_del = 0, n_kept = 0;
    char first_kept[CAIRN_WAL_NAME_MAX] = "", l1[24];
    size_t i;
    int rc;
    memset(&rs, 0, sizeof rs);
    rs.source = source;
    rs.kept_id = oldest_kept_id;
    rs.kept_ns = oldest_kept_ns;
    rc = cairn_catalog_list_snapshots(cat, NULL, ret_row, &rs, err);
    if (rc > 0 || rc == -1)
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
    if (rc != CAIRN_OK)
        goto out;
    if (!rs.sysid[0] && strncmp(source, "postgres:", 9) == 0)
        snprintf(rs.sysid, sizeof rs.sysid, "%s", source + 9);
    if (!rs.sysid[0])
        goto out; /* not a PostgreSQL source */
    if (rs.conflict) {
        retf(pr, "source '%s' holds base backups of several PostgreSQL systems: its WAL is "
                 "kept",
             source);
        goto out;
    }
    /* The oldest start over every remaining base backup of the system, whatever
     * its source: nothing any of them needs may go. */
    for (i = 0; i < rs.all.n; i++) {
        const struct cairn_pg_basebackup *b = &rs.all.v[i];
        if (strcmp(b->system_id, rs.sysid) != 0)
            continue;
        if (!oldest || b->start_lsn < oldest->start_lsn)
            oldest = b;
    }
    if (!oldest) {
        retf(pr, "system %s: no base backup is left, so no WAL is deleted (remove wal/%s/ by "
                 "hand once the cluster is gone)",
             rs.sysid, rs.sysid);
        goto out;
    }
    segsize = oldest->segment_size;
    cut_seg = oldest->start_lsn / segsize;
    for (i = 0; i < rs.all.n; i++) /* same system: same segment size, but be safe */
        if (strcmp(rs.all.v[i].system_id, rs.sysid) == 0 &&
            rs.all.v[i].start_lsn / segsize < cut_seg)
            cut_seg = rs.all.v[i].start_lsn / segsize;
    cairn_pg_lsn_format(oldest->start_lsn, l1, sizeof l1);
    /* the archive as the store has it (wal-push records in another catalog) */
    if ((rc = cairn_pg_wal_sync(s, cat, rs.sysid, NULL, err)) != CAIRN_OK)
        goto out;
    if ((rc = walset_load(cat, rs.sysid, &w, err)) != CAIRN_OK)
        goto out;
    for (i = 0; i < w.n; i++) {
        const struct cairn_walrow *row = &w.v[i];
        struct cairn_pg_walname wn;
        uint64_t sn;
        if (cairn_pg_walname_parse(row->segment, &wn) != 0 || wn.kind == CAIRN_PG_HISTORY) {
            n_kept++; /* history files: tiny, and PostgreSQL probes them by number */
            continue;
        }
        sn = cairn_pg_segno(wn.log, wn.seg, segsize);
        if (sn >= cut_seg) {
            n_kept++;
            if (wn.kind == CAIRN_PG_SEGMENT &&
                (!first_kept[0] || strcmp(row->segment + 8, first_kept + 8) < 0))
                snprintf(first_kept, sizeof first_kept, "%s", row->segment);
            continue;
        }
        if (!dry_run) {
            rc = cairn_store_del(s, row->object_key, err);
            if (rc == CAIRN_NOTFOUND)
                rc = CAIRN_OK;
            if (rc == CAIRN_OK)
                rc = cairn_catalog_wal_remove(cat, row->system_id, row->timeline, row->segment,
                                              err);
            if (rc != CAIRN_OK) {
                cairn_error_prefix(err, "cannot delete archived WAL %s", row->object_key);
                goto out;
            }
        }
        n_del++;
        bytes_del += row->size;
    }
    retf(pr,
         "system %s: %s %" PRIu64 " archived WAL files (%" PRIu64 " bytes raw) before the "
         "oldest kept base backup %.12s (start %s, timeline %" PRIu32 "); %" PRIu64
         " kept%s%s",
         rs.sysid, dry_run ? "would delete" : "deleted", n_del, bytes_del, oldest->snapshot, l1,
         oldest->timeline, n_kept, first_kept[0] ? ", from " : "", first_kept);
    if (pr) {
        pr->deleted += n_del;
        pr->deleted_bytes += bytes_del;
        pr->kept += n_kept;
    }
out:
    free(rs.all.v);
    free(w.v);
    return rc;
}

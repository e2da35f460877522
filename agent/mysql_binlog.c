/* agent/mysql_binlog.c — binlog scanning, the archived object format,
 * binlog-push, binlog-fetch, catalog sync and gap checks (see mysql.h). */
#define _GNU_SOURCE
#include "mysql.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "../engine/logobj.h"

/* ---- reading binlog events ----
 * Binlog format v4 (MySQL >= 5.0, every MariaDB): the magic \xfe 'b' 'i' 'n',
 * then events, each with a 19-byte little-endian header
 *   u32 timestamp, u8 type, u32 server_id, u32 event_length (header
 *   included), u32 log_pos (the position just past this event), u16 flags
 * The first event is a Format_description event: u16 binlog_version (4),
 * char server_version[50], u32 create_timestamp, u8 header_length (19), one
 * post-header length per event type, then (servers with checksums: MySQL
 * 5.6.1+, MariaDB 5.3+) u8 checksum_alg and 4 bytes of checksum. With alg 1
 * (CRC32) every event ends with the CRC-32 of its other bytes. */

#define MAGIC "\xfe" "bin"
#define HDR 19
#define FLAG_IN_USE 0x0001

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

uint32_t cairn_my_crc32(uint32_t crc, const void *data, size_t len)
{
    static uint32_t table[256];
    static int ready;
    const uint8_t *p = data;
    if (!ready) { /* idempotent: racing threads compute the same table */
        uint32_t i, k, c;
        for (i = 0; i < 256; i++) {
            c = i;
            for (k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    crc = ~crc;
    while (len--)
        crc = table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

void cairn_my_gtid_format(const struct cairn_my_gtid *g, char *out, size_t n)
{
    snprintf(out, n, "%" PRIu32 "-%" PRIu32 "-%" PRIu64, g->domain, g->server, g->seq);
}

static void note_time(struct cairn_my_binscan *o, uint32_t ts)
{
    int64_t ns;
    if (!ts)
        return; /* some events (an artificial Rotate) carry no time */
    ns = (int64_t)ts * 1000000000;
    if (!o->has_times || ns < o->first_event_ns)
        o->first_event_ns = ns;
    if (!o->has_times || ns > o->last_event_ns)
        o->last_event_ns = ns;
    o->has_times = 1;
}

static void note_gtid(struct cairn_my_binscan *o, const struct cairn_my_gtid *g)
{
    size_t i;
    if (!o->n_gtids)
        o->first_gtid = *g;
    o->last_gtid = *g;
    o->n_gtids++;
    for (i = 0; i < o->n_dom; i++)
        if (o->dom[i].first.domain == g->domain)
            break;
    if (i == o->n_dom) {
        if (o->n_dom == CAIRN_MY_MAX_DOMAINS)
            return;
        o->n_dom++;
        o->dom[i].first = *g;
    }
    o->dom[i].last = *g;
}

static void mysql_gtid(const uint8_t *sid, uint64_t gno, char *out, size_t n)
{
    char h[33];
    cairn_hex(sid, 16, h);
    snprintf(out, n, "%.8s-%.4s-%.4s-%.4s-%.12s:%" PRIu64, h, h + 8, h + 12, h + 16, h + 20,
             gno);
}

int cairn_my_binlog_scan(const uint8_t *d, size_t len, struct cairn_my_binscan *o,
                         cairn_err *err)
{
    size_t pos = 4, fde_len, body;
    uint8_t alg;
    memset(o, 0, sizeof *o);
    if (len < 4 || memcmp(d, MAGIC, 4) != 0)
        return cairn_error(err, CAIRN_CORRUPT, "not a binlog file (no \\xfebin magic)");
    if (len < 4 + HDR)
        return cairn_error(err, CAIRN_CORRUPT, "binlog ends before its first event");
    /* the Format_description event */
    fde_len = le32(d + 4 + 9);
    if (d[4 + 4] != CAIRN_MY_EV_FORMAT_DESCRIPTION || fde_len < HDR + 2 + 50 + 4 + 1 ||
        fde_len > len - 4)
        return cairn_error(err, CAIRN_CORRUPT,
                           "the first event (type %u, %zu bytes) is not a Format_description "
                           "event",
                           d[4 + 4], fde_len);
    body = 4 + HDR;
    if (le16(d + body) != 4)
        return cairn_error(err, CAIRN_CORRUPT, "binlog format version %u (only 4 is supported)",
                           le16(d + body));
    if (d[body + 2 + 50 + 4] != HDR)
        return cairn_error(err, CAIRN_CORRUPT, "event header length %u, not %d",
                           d[body + 2 + 50 + 4], HDR);
    memcpy(o->server_version, d + body + 2, 50);
    o->server_version[50] = 0;
    o->server_id = le32(d + 4 + 5);
    o->in_use = (le16(d + 4 + 17) & FLAG_IN_USE) != 0;
    alg = fde_len >= HDR + 2 + 50 + 4 + 1 + 5 ? d[4 + fde_len - 5] : 0xFF;
    if (alg == 1) {
        if (cairn_my_crc32(0, d + 4, fde_len - 4) != le32(d + 4 + fde_len - 4))
            return cairn_error(err, CAIRN_CORRUPT,
                               "the Format_description event at position 4 fails its CRC32");
        o->crc32 = 1;
    } else if (alg != 0) {
        alg = 0xFF; /* a server without checksums: none to check */
    }
    o->start_pos = 4;
    o->end_pos = 4;
    while (pos < len) {
        const uint8_t *e = d + pos;
        uint32_t elen, next;
        uint8_t type;
        size_t blen; /* body bytes, checksum excluded */
        const uint8_t *b;
        if (len - pos < HDR)
            return cairn_error(err, CAIRN_CORRUPT,
                               "truncated event header at position %zu (the file ends %zu "
                               "bytes into it)",
                               pos, len - pos);
        type = e[4];
        elen = le32(e + 9);
        next = le32(e + 13);
        if (elen < HDR || elen > len - pos)
            return cairn_error(err, CAIRN_CORRUPT,
                               "event at position %zu (type %u) is %" PRIu32
                               " bytes: %s",
                               pos, type, elen, elen < HDR ? "too short" : "truncated");
        if (next != 0 && next != pos + elen)
            return cairn_error(err, CAIRN_CORRUPT,
                               "event at position %zu (type %u) says it ends at %" PRIu32
                               ", not %zu",
                               pos, type, next, pos + elen);
        blen = elen - HDR;
        if (o->crc32) {
            if (blen < 4)
                return cairn_error(err, CAIRN_CORRUPT,
                                   "event at position %zu is too short for its CRC32", pos);
            if (pos != 4 && cairn_my_crc32(0, e, elen - 4) != le32(e + elen - 4))
                return cairn_error(err, CAIRN_CORRUPT,
                                   "event at position %zu (type %u) fails its CRC32", pos,
                                   type);
            blen -= 4;
        }
        b = e + HDR;
        o->events++;
        note_time(o, le32(e));
        switch (type) {
        case CAIRN_MY_EV_GTID:
            if (blen >= 12) {
                struct cairn_my_gtid g;
                g.seq = le64(b);
                g.domain = le32(b + 8);
                g.server = le32(e + 5);
                note_gtid(o, &g);
            }
            break;
        case CAIRN_MY_EV_GTID_LIST:
            if (blen >= 4 && !o->has_gtid_list) {
                uint32_t cnt = le32(b) & 0x0FFFFFFFu, i;
                o->has_gtid_list = 1;
                for (i = 0; i < cnt && 4 + (size_t)(i + 1) * 16 <= blen; i++) {
                    if (o->n_list == CAIRN_MY_MAX_DOMAINS)
                        break;
                    o->list[o->n_list].domain = le32(b + 4 + i * 16);
                    o->list[o->n_list].server = le32(b + 4 + i * 16 + 4);
                    o->list[o->n_list].seq = le64(b + 4 + i * 16 + 8);
                    o->n_list++;
                }
            }
            break;
        case CAIRN_MY_EV_MYSQL_GTID:
            if (blen >= 1 + 16 + 8) {
                char *dst = o->mysql_first_gtid[0] ? o->mysql_last_gtid : o->mysql_first_gtid;
                mysql_gtid(b + 1, le64(b + 17), dst, sizeof o->mysql_first_gtid);
                if (dst == o->mysql_first_gtid)
                    memcpy(o->mysql_last_gtid, dst, sizeof o->mysql_last_gtid);
            }
            break;
        case CAIRN_MY_EV_ROTATE:
            if (blen >= 8) {
                size_t nl = blen - 8 < sizeof o->next_file - 1 ? blen - 8
                                                                : sizeof o->next_file - 1;
                memcpy(o->next_file, b + 8, nl);
                o->next_file[nl] = 0;
            }
            break;
        default:
            break;
        }
        o->closed_by = type == CAIRN_MY_EV_ROTATE || type == CAIRN_MY_EV_STOP ? type : 0;
        pos += elen;
        o->end_pos = pos;
        if (type == CAIRN_MY_EV_START_ENCRYPTION) {
            /* what follows is encrypted: keep the file whole, read no further */
            o->encrypted = 1;
            o->end_pos = len;
            break;
        }
    }
    return CAIRN_OK;
}

static size_t put_list(char *out, size_t n, size_t at, const char *s)
{
    size_t l = strlen(s);
    if (at + l + 2 >= n)
        return at;
    if (at && out[at - 1] != ';')
        out[at++] = ',';
    memcpy(out + at, s, l + 1);
    return at + l;
}

void cairn_my_gtids_text(const struct cairn_my_binscan *s, char *out, size_t n)
{
    size_t at = 0, i;
    char a[64], b[64], r[140];
    if (n == 0)
        return;
    out[0] = 0;
    for (i = 0; i < s->n_list; i++) {
        cairn_my_gtid_format(&s->list[i], a, sizeof a);
        at = put_list(out, n, at, a);
    }
    if (at + 1 < n) {
        out[at++] = ';';
        out[at] = 0;
    }
    for (i = 0; i < s->n_dom; i++) {
        cairn_my_gtid_format(&s->dom[i].first, a, sizeof a);
        cairn_my_gtid_format(&s->dom[i].last, b, sizeof b);
        snprintf(r, sizeof r, "%s..%s", a, b);
        at = put_list(out, n, at, r);
    }
}

int cairn_my_binlog_name_parse(const char *name, char *base, size_t nbase, uint64_t *seq,
                               int *width)
{
    const char *dot = name ? strrchr(name, '.') : NULL, *p;
    uint64_t v = 0;
    if (!dot || dot == name || !dot[1] || strchr(name, '/') || strlen(dot + 1) > 18)
        return -1;
    for (p = dot + 1; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if ((size_t)(dot - name) >= nbase)
        return -1;
    memcpy(base, name, (size_t)(dot - name));
    base[dot - name] = 0;
    *seq = v;
    if (width)
        *width = (int)strlen(dot + 1);
    return 0;
}

/* ---- archived objects ---- */

static int key_part_ok(const char *s)
{
    if (!s || !*s || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    for (; *s; s++)
        if (*s == '/' || (unsigned char)*s < 0x20)
            return 0;
    return 1;
}

int cairn_my_binobj_key(const char *server, const char *name, char *out, size_t n)
{
    if (!key_part_ok(server) || !key_part_ok(name))
        return -1;
    if ((size_t)snprintf(out, n, "binlog/%s/%s", server, name) >= n)
        return -1;
    return 0;
}

static json_t *gtid_array(const struct cairn_my_gtid *g, size_t n)
{
    json_t *a = json_array();
    size_t i;
    char t[64];
    for (i = 0; i < n; i++) {
        cairn_my_gtid_format(&g[i], t, sizeof t);
        json_array_append_new(a, json_string(t));
    }
    return a;
}

int cairn_my_binobj_build(const struct cairn_my_binmeta *m, const struct cairn_my_binscan *s,
                          const void *zfr, size_t zlen, cairn_buf *out, cairn_err *err)
{
    char hex[65], ts[64];
    json_t *o = json_object();
    int rc;
    cairn_hex(m->sha256, 32, hex);
    json_object_set_new(o, "version", json_integer(1));
    json_object_set_new(o, "name", json_string(m->name));
    json_object_set_new(o, "server", json_string(m->server));
    json_object_set_new(o, "server_id", json_integer(m->server_id));
    json_object_set_new(o, "size", json_integer((json_int_t)m->size));
    json_object_set_new(o, "sha256", json_string(hex));
    json_object_set_new(o, "start_pos", json_integer((json_int_t)m->start_pos));
    json_object_set_new(o, "end_pos", json_integer((json_int_t)m->end_pos));
    json_object_set_new(o, "gtids", json_string(m->gtids));
    json_object_set_new(o, "compression", json_string("zstd"));
    if (m->has_times) {
        json_object_set_new(o, "first_event_ns", json_integer(m->first_event_ns));
        json_object_set_new(o, "last_event_ns", json_integer(m->last_event_ns));
        cairn_format_time(m->first_event_ns, ts, sizeof ts);
        json_object_set_new(o, "first_event", json_string(ts));
        cairn_format_time(m->last_event_ns, ts, sizeof ts);
        json_object_set_new(o, "last_event", json_string(ts));
    }
    if (s) {
        char g[64];
        json_object_set_new(o, "server_version", json_string(s->server_version));
        json_object_set_new(o, "events", json_integer((json_int_t)s->events));
        json_object_set_new(o, "checksum_alg", json_string(s->crc32 ? "crc32" : "none"));
        json_object_set_new(o, "closed_by", json_string(s->closed_by == CAIRN_MY_EV_ROTATE
                                                            ? "rotate"
                                                        : s->closed_by == CAIRN_MY_EV_STOP
                                                            ? "stop"
                                                            : ""));
        if (s->next_file[0])
            json_object_set_new(o, "next_file", json_string(s->next_file));
        if (s->encrypted)
            json_object_set_new(o, "encrypted", json_true());
        if (s->in_use)
            json_object_set_new(o, "in_use", json_true()); /* not closed cleanly (a crash) */
        if (s->has_gtid_list)
            json_object_set_new(o, "gtid_list", gtid_array(s->list, s->n_list));
        json_object_set_new(o, "gtid_count", json_integer((json_int_t)s->n_gtids));
        if (s->n_gtids) {
            cairn_my_gtid_format(&s->first_gtid, g, sizeof g);
            json_object_set_new(o, "first_gtid", json_string(g));
            cairn_my_gtid_format(&s->last_gtid, g, sizeof g);
            json_object_set_new(o, "last_gtid", json_string(g));
        } else if (s->mysql_first_gtid[0]) {
            json_object_set_new(o, "first_gtid", json_string(s->mysql_first_gtid));
            json_object_set_new(o, "last_gtid", json_string(s->mysql_last_gtid));
        }
    }
    rc = cairn_logobj_encode(CAIRN_MY_BINOBJ_MAGIC, CAIRN_MY_BINOBJ_HEAD_MAX, "binlog", m->name,
                             o, zfr, zlen, out, err);
    json_decref(o);
    return rc;
}

static int jstr(json_t *o, const char *k, char *out, size_t n)
{
    const char *s = json_string_value(json_object_get(o, k));
    if (!s || strlen(s) >= n)
        return -1;
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

static int64_t jint(json_t *o, const char *k, int *ok)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        *ok = 0;
        return 0;
    }
    return (int64_t)json_integer_value(v);
}

int cairn_my_binobj_head(const uint8_t *obj, size_t len, struct cairn_my_binmeta *m,
                         size_t *payload_off, cairn_err *err)
{
    size_t off;
    json_t *o;
    char hex[80];
    int ok = 1;
    memset(m, 0, sizeof *m);
    int hrc = cairn_logobj_head(obj, len, CAIRN_MY_BINOBJ_MAGIC, CAIRN_MY_BINOBJ_HEAD_MAX, "binlog", &o, &off, err);
    if (hrc != CAIRN_OK)
        return hrc;
    if (jint(o, "version", &ok) != 1 || jstr(o, "name", m->name, sizeof m->name) ||
        jstr(o, "server", m->server, sizeof m->server) ||
        jstr(o, "sha256", hex, sizeof hex) || strlen(hex) != 64 ||
        cairn_unhex(hex, m->sha256, 32) != CAIRN_OK ||
        jstr(o, "gtids", m->gtids, sizeof m->gtids) || !key_part_ok(m->name) ||
        !key_part_ok(m->server))
        ok = 0;
    m->server_id = (uint32_t)jint(o, "server_id", &ok);
    m->size = (uint64_t)jint(o, "size", &ok);
    m->start_pos = (uint64_t)jint(o, "start_pos", &ok);
    m->end_pos = (uint64_t)jint(o, "end_pos", &ok);
    if (json_object_get(o, "first_event_ns")) {
        m->has_times = 1;
        m->first_event_ns = jint(o, "first_event_ns", &ok);
        m->last_event_ns = jint(o, "last_event_ns", &ok);
    }
    json_decref(o);
    if (!ok || m->size > CAIRN_MY_MAX_FILE || m->end_pos > m->size)
        return cairn_error(err, CAIRN_CORRUPT, "archived binlog object: metadata is invalid");
    if (payload_off)
        *payload_off = off;
    return CAIRN_OK;
}

int cairn_my_binobj_decode(const uint8_t *obj, size_t len, const char *key,
                           struct cairn_my_binmeta *m, cairn_buf *raw, cairn_err *err)
{
    size_t off;
    int rc = cairn_my_binobj_head(obj, len, m, &off, err);
    if (rc != CAIRN_OK)
        return cairn_error_prefix(err, "object '%s' is damaged", key);
    return cairn_logobj_payload(obj, len, off, m->size, m->sha256, key, raw, err);
}

void cairn_my_binrow_from_meta(const struct cairn_my_binmeta *m, const char *key,
                               struct cairn_binlogrow *row)
{
    char hex[65];
    memset(row, 0, sizeof *row);
    snprintf(row->server_uuid, sizeof row->server_uuid, "%s", m->server);
    snprintf(row->file, sizeof row->file, "%s", m->name);
    row->start_pos = m->start_pos;
    row->end_pos = m->end_pos;
    row->has_times = m->has_times;
    row->first_event_ns = m->first_event_ns;
    row->last_event_ns = m->last_event_ns;
    snprintf(row->gtids, sizeof row->gtids, "%s", m->gtids);
    snprintf(row->object_key, sizeof row->object_key, "%s", key);
    row->size = m->size;
    cairn_hex(m->sha256, 32, hex);
    snprintf(row->checksum, sizeof row->checksum, "sha256:%s", hex);
}

/* ---- binlog-push ---- */

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int cairn_my_server_uuid(const char *datadir, char *out, size_t n)
{
    char path[PATH_MAX], line[256];
    FILE *f;
    int found = -1;
    snprintf(path, sizeof path, "%s/auto.cnf", datadir);
    if (!(f = fopen(path, "re")))
        return -1;
    while (fgets(line, sizeof line, f)) {
        char *v, *e;
        if (strncmp(line, "server-uuid", 11) != 0 || !(v = strchr(line, '=')))
            continue;
        v++;
        while (*v == ' ')
            v++;
        e = v + strlen(v);
        while (e > v && isspace((unsigned char)e[-1]))
            *--e = 0;
        if (strlen(v) == 36 && strlen(v) < n && key_part_ok(v)) {
            memcpy(out, v, strlen(v) + 1);
            found = 0;
        }
        break;
    }
    fclose(f);
    return found;
}

static void free_list(char **v, size_t n)
{
    size_t i;
    for (i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* Reads an index file: lines naming binlog files, relative to datadir. */
static int read_index(const char *datadir, const char *index, char ***files, size_t *n,
                      cairn_err *err)
{
    cairn_buf b = CAIRN_BUF_INIT;
    char **v = NULL, *p, *line;
    size_t cnt = 0, cap = 0;
    int rc = cairn_read_file(index, &b, 64u << 20, err);
    *files = NULL;
    *n = 0;
    if (rc != CAIRN_OK)
        return rc;
    p = (char *)cairn_buf_cstr(&b);
    while (p && (line = strsep(&p, "\n")) != NULL) {
        char base[CAIRN_BINLOG_NAME_MAX], *full;
        uint64_t seq;
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\r' || line[l - 1] == ' '))
            line[--l] = 0;
        if (!l)
            continue;
        if (cairn_my_binlog_name_parse(base_name(line), base, sizeof base, &seq, NULL) != 0) {
            free_list(v, cnt);
            cairn_buf_free(&b);
            return cairn_error(err, CAIRN_FAILED,
                               "index '%s': '%s' does not name a binlog file", index, line);
        }
        if (line[0] == '/')
            full = strdup(line);
        else
            full = cairn_path_join(datadir, line[0] == '.' && line[1] == '/' ? line + 2 : line);
        if (cnt == cap) {
            char **nv = realloc(v, (cap = cap ? cap * 2 : 32) * sizeof *nv);
            if (!nv) {
                free(full);
                full = NULL;
            } else {
                v = nv;
            }
        }
        if (!full) {
            free_list(v, cnt);
            cairn_buf_free(&b);
            return cairn_error(err, CAIRN_FATAL, "out of memory");
        }
        v[cnt++] = full;
    }
    cairn_buf_free(&b);
    *files = v;
    *n = cnt;
    return CAIRN_OK;
}

int cairn_my_binlog_index(const char *datadir, const char *index, char ***files, size_t *n,
                          cairn_err *err)
{
    DIR *d;
    struct dirent *de;
    char found[PATH_MAX] = "", *path;
    int nfound = 0, rc;
    if (index)
        return read_index(datadir, index, files, n, err);
    if (!(d = opendir(datadir)))
        return cairn_error(err, errno == ENOENT ? CAIRN_NOTFOUND : CAIRN_FAILED,
                           "cannot read data directory '%s': %s", datadir, strerror(errno));
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name), i;
        char **v = NULL;
        size_t cnt = 0;
        cairn_err e2;
        if (l <= 6 || strcmp(de->d_name + l - 6, ".index") != 0 || strstr(de->d_name, "relay"))
            continue;
        if (!(path = cairn_path_join(datadir, de->d_name)))
            continue;
        if (read_index(datadir, path, &v, &cnt, &e2) == CAIRN_OK && cnt > 0) {
            int relay = 0;
            for (i = 0; i < cnt; i++)
                relay |= strstr(base_name(v[i]), "relay") != NULL;
            if (!relay) {
                if (nfound++ == 0)
                    snprintf(found, sizeof found, "%s", path);
            }
        }
        free_list(v, cnt);
        free(path);
    }
    closedir(d);
    if (nfound == 0)
        return cairn_error(err, CAIRN_NOTFOUND,
                           "no binlog index in '%s' (is the server started with --log-bin? "
                           "give the index file with --index)",
                           datadir);
    if (nfound > 1)
        return cairn_error(err, CAIRN_FAILED,
                           "several binlog index files in '%s': give the one to ship with "
                           "--index",
                           datadir);
    rc = read_index(datadir, found, files, n, err);
    return rc;
}

static int compress_frame(const uint8_t *in, size_t len, int level, cairn_buf *out)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    size_t bound = ZSTD_compressBound(len), n;
    if (!c || cairn_buf_reserve(out, bound) != CAIRN_OK) {
        ZSTD_freeCCtx(c);
        return -1;
    }
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
    n = ZSTD_compress2(c, out->data, bound, in, len);
    ZSTD_freeCCtx(c);
    if (ZSTD_isError(n))
        return -1;
    out->len = n;
    return 0;
}

int cairn_my_binlog_partial_name(const char *name, char *file, size_t nfile,
                                 uint64_t *endpos)
{
    const char *p = name ? strstr(name, ".partial.") : NULL, *q;
    uint64_t v = 0;
    char base[CAIRN_BINLOG_NAME_MAX];
    uint64_t seq;
    if (!p || !p[9] || strlen(p + 9) > 18 || (size_t)(p - name) >= nfile)
        return -1;
    for (q = p + 9; *q; q++) {
        if (!isdigit((unsigned char)*q))
            return -1;
        v = v * 10 + (uint64_t)(*q - '0');
    }
    memcpy(file, name, (size_t)(p - name));
    file[p - name] = 0;
    if (cairn_my_binlog_name_parse(file, base, sizeof base, &seq, NULL) != 0)
        return -1;
    if (endpos)
        *endpos = v;
    return 0;
}

struct zbuild {
    const uint8_t *raw;
    size_t len;
    int level;
    const char *path;
    const struct cairn_my_binmeta *m;
    const struct cairn_my_binscan *scan;
};

static int build_binobj(void *arg, cairn_buf *obj, cairn_err *err)
{
    struct zbuild *zb = arg;
    cairn_buf z = CAIRN_BUF_INIT;
    int rc;
    if (compress_frame(zb->raw, zb->len, zb->level, &z) != 0) {
        cairn_buf_free(&z);
        return cairn_error(err, CAIRN_FATAL, "cannot compress '%s' (out of memory?)",
                           zb->path);
    }
    rc = cairn_my_binobj_build(zb->m, zb->scan, z.data, z.len, obj, err);
    cairn_buf_free(&z);
    return rc;
}

/* The one push path: binlog-push, binlog-stream (whole files) and partial
 * objects (partial: name is "<file>.partial.<len>", no catalog row). */
static int push_mem(cairn_pg_archive *a, const char *name, const char *path,
                    const uint8_t *data, size_t len, const char *server, int level,
                    int partial, struct cairn_my_push_result *res, cairn_err *err)
{
    struct cairn_my_binmeta *m = &res->meta;
    cairn_buf obj = CAIRN_BUF_INIT;
    cairn_store *st = cairn_pg_archive_store(a);
    cairn_catalog *cat = cairn_pg_archive_catalog(a);
    char base[CAIRN_BINLOG_NAME_MAX], hint[256];
    struct zbuild zb;
    uint64_t seq;
    int rc;

    memset(res, 0, sizeof *res);
    if (cairn_my_binlog_name_parse(name, base, sizeof base, &seq, NULL) != 0)
        return cairn_error(err, CAIRN_FAILED,
                           "'%s' is not a binlog file name (<base name>.<number>)", path);
    if ((rc = cairn_my_binlog_scan(data, len, &res->scan, err)) != CAIRN_OK)
        return cairn_error_prefix(err, "REFUSING to archive '%s'", path);
    if (partial)
        snprintf(m->name, sizeof m->name, "%s.partial.%zu", name, len);
    else
        snprintf(m->name, sizeof m->name, "%s", name);
    if (server)
        snprintf(m->server, sizeof m->server, "%s", server);
    else
        snprintf(m->server, sizeof m->server, "%" PRIu32, res->scan.server_id);
    m->server_id = res->scan.server_id;
    m->size = len;
    m->start_pos = res->scan.start_pos;
    m->end_pos = res->scan.end_pos;
    m->has_times = res->scan.has_times;
    m->first_event_ns = res->scan.first_event_ns;
    m->last_event_ns = res->scan.last_event_ns;
    cairn_my_gtids_text(&res->scan, m->gtids, sizeof m->gtids);
    if (cairn_my_binobj_key(m->server, m->name, res->key, sizeof res->key) != 0)
        return cairn_error(err, CAIRN_FAILED, "cannot make an object key for '%s' of server '%s'",
                           m->name, m->server);
    cairn_pg_sha256(data, len, m->sha256);

    /* never overwrite: an existing copy must be the same file */
    zb.raw = data;
    zb.len = len;
    zb.level = level > 0 ? level : 3;
    zb.path = path;
    zb.m = m;
    zb.scan = &res->scan;
    snprintf(hint, sizeof hint,
             "Was the binlog reset (RESET MASTER) or does another server with id %s ship into "
             "this repository? Investigate before touching the archived copy",
             m->server);
    rc = cairn_logobj_put_once(st, res->key, CAIRN_MY_BINOBJ_MAGIC, CAIRN_MY_BINOBJ_HEAD_MAX,
                               "binlog", path, m->size, m->sha256, &obj, build_binobj, &zb,
                               hint, NULL, &res->stored, err);
    cairn_buf_free(&obj);
    if (rc != CAIRN_OK)
        return rc;
    res->already = res->stored == 0;
    if (cat && !partial) {
        struct cairn_binlogrow row;
        cairn_my_binrow_from_meta(m, res->key, &row);
        rc = cairn_catalog_binlog_put(cat, &row, err);
        if (rc != CAIRN_OK)
            cairn_error_prefix(err, "'%s' is archived, but recording it in the catalog failed",
                               name);
    }
    return rc;
}

int cairn_my_binlog_push_buf(cairn_pg_archive *a, const char *name, const char *path,
                             const uint8_t *data, size_t len, const char *server, int level,
                             struct cairn_my_push_result *res, cairn_err *err)
{
    return push_mem(a, name, path ? path : name, data, len, server, level, 0, res, err);
}

int cairn_my_binlog_push_partial(cairn_pg_archive *a, const char *name, const char *path,
                                 const uint8_t *data, size_t len, const char *server,
                                 int level, struct cairn_my_push_result *res, cairn_err *err)
{
    return push_mem(a, name, path ? path : name, data, len, server, level, 1, res, err);
}

int cairn_my_binlog_push_file(cairn_pg_archive *a, const char *path, const char *server,
                              int level, struct cairn_my_push_result *res, cairn_err *err)
{
    cairn_buf raw = CAIRN_BUF_INIT;
    int rc;
    memset(res, 0, sizeof *res);
    if ((rc = cairn_read_file(path, &raw, (size_t)CAIRN_MY_MAX_FILE, err)) != CAIRN_OK)
        return rc;
    rc = push_mem(a, base_name(path), path, raw.data, raw.len, server, level, 0, res, err);
    cairn_buf_free(&raw);
    return rc;
}

/* Whether head (the start of a binlog file, got bytes) and tail (its last tn
 * bytes; the file is size bytes) agree with the catalog row of that file:
 * the Format_description time is the first event time, the Gtid_list event
 * after it is the recorded one, and the file ends with a Rotate (to the
 * next file number) or Stop event, CRC-checked, whose time is the last
 * event time. */
static int head_tail_match(const uint8_t *head, size_t got, const uint8_t *tail, size_t tn,
                           uint64_t size, const char *name, const struct cairn_binlogrow *row)
{
    size_t fde_len = le32(head + 4 + 9), off, k, elen = 0;
    char list[CAIRN_BINLOG_GTIDS_MAX] = "", next[CAIRN_BINLOG_NAME_MAX], base[CAIRN_BINLOG_NAME_MAX];
    const char *semi = strchr(row->gtids, ';');
    const uint8_t *e = NULL;
    uint64_t seq;
    int crc, width;
    if (fde_len < HDR + 2 + 50 + 4 + 1 || 4 + fde_len > got ||
        (int64_t)le32(head + 4) * 1000000000 != row->first_event_ns)
        return 0;
    crc = fde_len >= HDR + 2 + 50 + 4 + 1 + 5 && head[4 + fde_len - 5] == 1;
    off = 4 + fde_len;
    if (off + HDR <= got && head[off + 4] == CAIRN_MY_EV_GTID_LIST) {
        size_t gl = le32(head + off + 9), i, cnt;
        if (gl < HDR + 4 || off + gl > got)
            return 0;
        cnt = le32(head + off + HDR) & 0x0FFFFFFFu;
        for (i = 0; i < cnt && HDR + 4 + (i + 1) * 16 <= gl; i++) {
            struct cairn_my_gtid g;
            char t[64];
            const uint8_t *p = head + off + HDR + 4 + i * 16;
            g.domain = le32(p);
            g.server = le32(p + 4);
            g.seq = le64(p + 8);
            cairn_my_gtid_format(&g, t, sizeof t);
            put_list(list, sizeof list, strlen(list), t);
        }
    }
    if (!semi || strlen(list) != (size_t)(semi - row->gtids) ||
        strncmp(list, row->gtids, strlen(list)) != 0)
        return 0;
    /* the last event: its length and end position name the file's end */
    for (k = 0; k + HDR <= tn; k++) {
        uint64_t start = size - tn + k;
        if (le32(tail + k + 9) == size - start && le32(tail + k + 13) == size) {
            e = tail + k;
            elen = (size_t)(size - start);
            break;
        }
    }
    if (!e || (e[4] != CAIRN_MY_EV_ROTATE && e[4] != CAIRN_MY_EV_STOP) ||
        (crc && (elen < HDR + 4 || cairn_my_crc32(0, e, elen - 4) != le32(e + elen - 4))) ||
        (int64_t)le32(e) * 1000000000 != row->last_event_ns)
        return 0;
    if (e[4] == CAIRN_MY_EV_ROTATE) {
        size_t nl = elen - HDR - 8 - (crc ? 4 : 0);
        if (elen < HDR + 8 + (crc ? 4u : 0u) ||
            cairn_my_binlog_name_parse(name, base, sizeof base, &seq, &width) != 0)
            return 0;
        if (width > 20 ||
            (size_t)snprintf(next, sizeof next, "%s.%0*" PRIu64, base, width, seq + 1) >=
                sizeof next ||
            nl != strlen(next) || memcmp(e + HDR + 8, next, nl) != 0)
            return 0;
    }
    return 1;
}

/* A file the catalog already records, decided without reading it whole:
 * same size, its head and last event agreeing with the row (see
 * head_tail_match), the modification time within 5 s after its last event
 * (a file written later, e.g. after RESET MASTER, has a later one), and the
 * object still in the store. 1 (res filled from the catalog) or 0: let the
 * full push decide (it ships, or refuses a different file). */
#define MTIME_SLACK_NS (5ll * 1000000000)
static int already_cheap(cairn_pg_archive *a, const char *path, const char *server,
                         struct cairn_my_push_result *res)
{
    cairn_catalog *cat = cairn_pg_archive_catalog(a);
    struct cairn_binlogrow row;
    struct cairn_my_binmeta *m = &res->meta;
    char srv[CAIRN_BINLOG_SERVER_MAX];
    uint8_t head[1024], tail[512];
    struct stat sb;
    int64_t mtime_ns;
    uint64_t osize;
    size_t tn;
    cairn_err e2;
    ssize_t got, tgot;
    int fd;
    if (!cat || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 4 + HDR)
        return 0;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return 0;
    tn = (uint64_t)sb.st_size < sizeof tail ? (size_t)sb.st_size : sizeof tail;
    got = pread(fd, head, sizeof head, 0);
    tgot = pread(fd, tail, tn, sb.st_size - (off_t)tn);
    close(fd);
    if (got < 4 + HDR || tgot != (ssize_t)tn || memcmp(head, MAGIC, 4) != 0 ||
        head[4 + 4] != CAIRN_MY_EV_FORMAT_DESCRIPTION)
        return 0;
    if (server)
        snprintf(srv, sizeof srv, "%s", server);
    else
        snprintf(srv, sizeof srv, "%" PRIu32, le32(head + 4 + 5));
    if (cairn_catalog_binlog_get(cat, srv, base_name(path), &row, &e2) != CAIRN_OK)
        return 0;
    mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    if ((uint64_t)sb.st_size != row.size || !row.has_times ||
        mtime_ns < row.last_event_ns || mtime_ns > row.last_event_ns + MTIME_SLACK_NS ||
        strncmp(row.checksum, "sha256:", 7) != 0 ||
        !head_tail_match(head, (size_t)got, tail, tn, (uint64_t)sb.st_size, base_name(path),
                         &row))
        return 0;
    if (cairn_store_stat(cairn_pg_archive_store(a), row.object_key, &osize, &e2) != CAIRN_OK)
        return 0;
    memset(res, 0, sizeof *res);
    snprintf(m->name, sizeof m->name, "%s", row.file);
    snprintf(m->server, sizeof m->server, "%s", row.server_uuid);
    m->server_id = le32(head + 4 + 5);
    m->size = row.size;
    if (cairn_unhex(row.checksum + 7, m->sha256, 32) != CAIRN_OK)
        return 0;
    m->start_pos = row.start_pos;
    m->end_pos = row.end_pos;
    m->has_times = row.has_times;
    m->first_event_ns = row.first_event_ns;
    m->last_event_ns = row.last_event_ns;
    snprintf(m->gtids, sizeof m->gtids, "%s", row.gtids);
    snprintf(res->key, sizeof res->key, "%s", row.object_key);
    res->already = 1;
    return 1;
}

int cairn_my_binlog_push_dir(cairn_pg_archive *a, const char *datadir, const char *index,
                             const char *server, int level, cairn_my_push_cb cb, void *arg,
                             struct cairn_my_push_stats *st, cairn_err *err)
{
    char **files = NULL, uuid[64];
    size_t n = 0, i;
    struct cairn_my_push_result *res;
    int rc;
    memset(st, 0, sizeof *st);
    if (!server && cairn_my_server_uuid(datadir, uuid, sizeof uuid) == 0)
        server = uuid;
    if ((rc = cairn_my_binlog_index(datadir, index, &files, &n, err)) != CAIRN_OK)
        return rc;
    if (!(res = malloc(sizeof *res))) {
        free_list(files, n);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    if (n)
        snprintf(st->active, sizeof st->active, "%s", base_name(files[n - 1]));
    for (i = 0; i + 1 < n; i++) { /* the last one listed is the one being written */
        if (!already_cheap(a, files[i], server, res)) {
            rc = cairn_my_binlog_push_file(a, files[i], server, level, res, err);
            if (rc != CAIRN_OK)
                break;
        }
        st->files++;
        if (res->already)
            st->already++;
        else
            st->pushed++;
        if (cb)
            cb(arg, res);
    }
    /* partials a streamer left of files now archived whole */
    if (rc == CAIRN_OK && st->files && cairn_pg_archive_catalog(a))
        rc = cairn_my_binlog_partials_prune(cairn_pg_archive_store(a), cairn_pg_archive_catalog(a),
                                            res->meta.server, NULL, err);
    free(res);
    free_list(files, n);
    return rc;
}

/* ---- the read side ---- */

struct find_ctx {
    const char *name;
    char key[CAIRN_WAL_KEY_MAX + CAIRN_BINLOG_NAME_MAX];
    int count;
};

static int find_key(void *arg, const char *key, uint64_t size)
{
    struct find_ctx *f = arg;
    const char *slash = strrchr(key, '/');
    (void)size;
    if (slash && strcmp(slash + 1, f->name) == 0 && strchr(key + 7, '/') == slash) {
        if (f->count++ == 0)
            snprintf(f->key, sizeof f->key, "%s", key);
    }
    return 0;
}

static int write_atomic(const char *dest, const void *data, size_t len, cairn_err *err)
{
    char tmp[PATH_MAX];
    int fd;
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.cairn-tmp.%ld", dest, (long)getpid()) >=
        sizeof tmp)
        return cairn_error(err, CAIRN_FAILED, "path '%s' is too long", dest);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return cairn_error(err, CAIRN_FAILED, "cannot create '%s': %s", tmp, strerror(errno));
    if (cairn_write_all(fd, data, len) != 0 || fsync(fd) != 0) {
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

int cairn_my_binlog_fetch(cairn_store *s, const char *server, const char *name,
                          const char *dest, cairn_err *err)
{
    struct find_ctx f;
    struct cairn_my_binmeta m;
    cairn_buf b = CAIRN_BUF_INIT, raw = CAIRN_BUF_INIT;
    int rc;
    memset(&f, 0, sizeof f);
    f.name = name;
    if (!key_part_ok(name))
        return cairn_error(err, CAIRN_NOTFOUND, "'%s' is not a binlog file name", name);
    if (server) {
        if (cairn_my_binobj_key(server, name, f.key, sizeof f.key) != 0)
            return cairn_error(err, CAIRN_NOTFOUND, "'%s' of server '%s' is not a usable name",
                               name, server);
    } else {
        rc = cairn_store_list(s, "binlog/", find_key, &f, err);
        if (rc != CAIRN_OK && rc != CAIRN_NOTFOUND)
            return rc;
        if (f.count == 0)
            return cairn_error(err, CAIRN_NOTFOUND, "binlog '%s' is not in the archive", name);
        if (f.count > 1)
            return cairn_error(err, CAIRN_FAILED,
                               "binlog '%s' is archived for %d servers: say which with "
                               "--server",
                               name, f.count);
    }
    rc = cairn_store_get(s, f.key, &b, (size_t)CAIRN_MY_MAX_FILE + (64u << 20), err);
    if (rc == CAIRN_NOTFOUND)
        rc = cairn_error(err, CAIRN_NOTFOUND, "binlog '%s' is not in the archive ('%s')", name,
                         f.key);
    if (rc == CAIRN_OK)
        rc = cairn_my_binobj_decode(b.data, b.len, f.key, &m, &raw, err);
    cairn_buf_free(&b);
    if (rc == CAIRN_OK && strcmp(m.name, name) != 0)
        rc = cairn_error(err, CAIRN_CORRUPT,
                         "object '%s' is damaged: its metadata names '%s', not '%s'", f.key,
                         m.name, name);
    if (rc == CAIRN_OK)
        rc = write_atomic(dest, raw.data, raw.len, err);
    cairn_buf_free(&raw);
    return rc;
}

/* ---- catalog sync ---- */

struct strset {
    char **v;
    uint64_t *size;
    size_t n, cap;
};

static int strset_add(struct strset *l, const char *k, uint64_t size)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 128;
        char **v = realloc(l->v, nc * sizeof *v);
        uint64_t *sz;
        if (!v)
            return -1;
        l->v = v;
        if (!(sz = realloc(l->size, nc * sizeof *sz)))
            return -1;
        l->size = sz;
        l->cap = nc;
    }
    if (!(l->v[l->n] = strdup(k)))
        return -1;
    l->size[l->n++] = size;
    return 0;
}

static void strset_free(struct strset *l)
{
    free_list(l->v, l->n);
    free(l->size);
}

static int strset_has(const struct strset *l, const char *k)
{
    size_t i;
    for (i = 0; i < l->n; i++)
        if (strcmp(l->v[i], k) == 0)
            return 1;
    return 0;
}

/* binlog/<server>/<name>, exactly */
static int split_key(const char *key, char *server, size_t ns, const char **name)
{
    const char *a, *b;
    if (strncmp(key, "binlog/", 7) != 0)
        return -1;
    a = key + 7;
    b = strchr(a, '/');
    if (!b || b == a || (size_t)(b - a) >= ns || strchr(b + 1, '/') || !b[1])
        return -1;
    memcpy(server, a, (size_t)(b - a));
    server[b - a] = 0;
    *name = b + 1;
    return 0;
}

static int collect_obj(void *arg, const char *key, uint64_t size)
{
    char server[CAIRN_BINLOG_SERVER_MAX];
    const char *name;
    char file[CAIRN_BINLOG_NAME_MAX];
    if (split_key(key, server, sizeof server, &name) != 0 ||
        cairn_my_binlog_partial_name(name, file, sizeof file, NULL) == 0)
        return 0; /* partial objects are not in the catalog */
    return strset_add(arg, key, size) ? -1 : 0;
}

static int collect_row(void *arg, const struct cairn_binlogrow *r)
{
    return strset_add(arg, r->object_key, r->size) ? -1 : 0;
}

int cairn_my_binlog_sync(cairn_store *s, cairn_catalog *cat, struct cairn_my_sync_stats *st,
                         cairn_err *err)
{
    struct strset store = {0}, rows = {0};
    struct cairn_my_sync_stats dummy;
    struct cairn_binlogrow *row = malloc(sizeof *row);
    cairn_buf b = CAIRN_BUF_INIT;
    size_t i;
    int rc, in_tx = 0;
    if (!st)
        st = &dummy;
    memset(st, 0, sizeof *st);
    if (!row)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    rc = cairn_store_list(s, "binlog/", collect_obj, &store, err);
    if (rc == CAIRN_NOTFOUND)
        rc = CAIRN_OK;
    else if (rc > 0)
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
    if (rc != CAIRN_OK)
        goto out;
    if ((rc = cairn_catalog_binlog_list(cat, NULL, collect_row, &rows, err)) != CAIRN_OK) {
        if (rc > 0)
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    st->objects = store.n;
    for (i = 0; i < store.n; i++) {
        struct cairn_my_binmeta m;
        char server[CAIRN_BINLOG_SERVER_MAX];
        const char *name;
        size_t want = store.size[i] < CAIRN_MY_BINOBJ_HEAD_MAX ? (size_t)store.size[i]
                                                                : CAIRN_MY_BINOBJ_HEAD_MAX;
        cairn_err e2;
        if (strset_has(&rows, store.v[i]))
            continue;
        split_key(store.v[i], server, sizeof server, &name);
        if (want == 0 || cairn_store_get_range(s, store.v[i], 0, want, &b, &e2) != CAIRN_OK ||
            cairn_my_binobj_head(b.data, b.len, &m, NULL, &e2) != CAIRN_OK ||
            strcmp(m.server, server) != 0 || strcmp(m.name, name) != 0) {
            st->unreadable++;
            continue;
        }
        cairn_my_binrow_from_meta(&m, store.v[i], row);
        if (!in_tx) {
            if ((rc = cairn_catalog_begin(cat, err)) != CAIRN_OK)
                goto out;
            in_tx = 1;
        }
        if ((rc = cairn_catalog_binlog_put(cat, row, err)) != CAIRN_OK)
            goto out;
        st->added++;
    }
    for (i = 0; i < rows.n; i++) {
        char server[CAIRN_BINLOG_SERVER_MAX];
        const char *name;
        if (strset_has(&store, rows.v[i]) ||
            split_key(rows.v[i], server, sizeof server, &name) != 0)
            continue;
        if (!in_tx) {
            if ((rc = cairn_catalog_begin(cat, err)) != CAIRN_OK)
                goto out;
            in_tx = 1;
        }
        if ((rc = cairn_catalog_binlog_remove(cat, server, name, err)) != CAIRN_OK)
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
    free(row);
    cairn_buf_free(&b);
    strset_free(&store);
    strset_free(&rows);
    return rc;
}

/* ---- partial objects ---- */

struct partials {
    const char *server, *file; /* filters (NULL: any) */
    uint64_t keep;
    cairn_catalog *archived_in; /* only partials of files this catalog records */
    struct strset keys;
    cairn_list_cb cb;
    void *arg;
};

static int partial_obj(void *arg, const char *key, uint64_t size)
{
    struct partials *p = arg;
    char server[CAIRN_BINLOG_SERVER_MAX], file[CAIRN_BINLOG_NAME_MAX];
    const char *name;
    uint64_t end;
    if (split_key(key, server, sizeof server, &name) != 0 ||
        cairn_my_binlog_partial_name(name, file, sizeof file, &end) != 0 ||
        (p->server && strcmp(server, p->server) != 0) || (p->file && strcmp(file, p->file) != 0))
        return 0;
    if (p->cb)
        return p->cb(p->arg, key, size);
    if (end == p->keep)
        return 0;
    if (p->archived_in) {
        struct cairn_binlogrow row;
        cairn_err e2;
        if (cairn_catalog_binlog_get(p->archived_in, server, file, &row, &e2) != CAIRN_OK)
            return 0;
    }
    return strset_add(&p->keys, key, size) ? -1 : 0;
}

static int partials_walk(cairn_store *s, struct partials *p, cairn_err *err)
{
    char prefix[CAIRN_WAL_KEY_MAX + 8];
    int rc;
    if (p->server)
        snprintf(prefix, sizeof prefix, "binlog/%s/", p->server);
    else
        snprintf(prefix, sizeof prefix, "binlog/");
    rc = cairn_store_list(s, prefix, partial_obj, p, err);
    if (rc == CAIRN_NOTFOUND)
        rc = CAIRN_OK;
    else if (rc > 0 || rc == -1)
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
    return rc;
}

static int partials_drop(cairn_store *s, cairn_catalog *cat, const char *server,
                         const char *file, uint64_t keep, uint64_t *deleted, cairn_err *err)
{
    struct partials p;
    size_t i;
    int rc;
    memset(&p, 0, sizeof p);
    p.archived_in = cat;
    p.server = server;
    p.file = file;
    p.keep = keep;
    if (deleted)
        *deleted = 0;
    rc = partials_walk(s, &p, err);
    for (i = 0; rc == CAIRN_OK && i < p.keys.n; i++) {
        rc = cairn_store_del(s, p.keys.v[i], err);
        if (rc == CAIRN_NOTFOUND)
            rc = CAIRN_OK;
        else if (rc != CAIRN_OK)
            cairn_error_prefix(err, "cannot delete the superseded partial binlog '%s'",
                               p.keys.v[i]);
        else if (deleted)
            (*deleted)++;
    }
    strset_free(&p.keys);
    return rc;
}

int cairn_my_binlog_partials_prune(cairn_store *s, cairn_catalog *cat, const char *server,
                                   uint64_t *deleted, cairn_err *err)
{
    return partials_drop(s, cat, server, NULL, 0, deleted, err);
}

int cairn_my_binlog_partials_list(cairn_store *s, const char *server, cairn_list_cb cb,
                                  void *arg, cairn_err *err)
{
    struct partials p;
    memset(&p, 0, sizeof p);
    p.server = server;
    p.cb = cb;
    p.arg = arg;
    return partials_walk(s, &p, err);
}

/* ---- gaps ---- */

struct vfile {
    char server[CAIRN_BINLOG_SERVER_MAX];
    char base[CAIRN_BINLOG_NAME_MAX];
    uint64_t seq;
    int width;
};

struct vset {
    struct vfile *v;
    size_t n, cap;
};

static int vset_add(void *arg, const struct cairn_binlogrow *r)
{
    struct vset *s = arg;
    struct vfile f;
    memset(&f, 0, sizeof f);
    if (cairn_my_binlog_name_parse(r->file, f.base, sizeof f.base, &f.seq, &f.width) != 0)
        return 0;
    snprintf(f.server, sizeof f.server, "%s", r->server_uuid);
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 128;
        struct vfile *nv = realloc(s->v, nc * sizeof *nv);
        if (!nv)
            return -1;
        s->v = nv;
        s->cap = nc;
    }
    s->v[s->n++] = f;
    return 0;
}

static int vfile_cmp(const void *x, const void *y)
{
    const struct vfile *a = x, *b = y;
    int c = strcmp(a->server, b->server);
    if (c)
        return c;
    if ((c = strcmp(a->base, b->base)) != 0)
        return c;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static void say(cairn_my_report_fn fn, void *arg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(cairn_my_report_fn fn, void *arg, const char *fmt, ...)
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

int cairn_my_binlog_verify(cairn_catalog *cat, const char *server, cairn_my_report_fn report,
                           cairn_my_report_fn info, void *arg, uint64_t *problems,
                           cairn_err *err)
{
    struct vset s = {0};
    size_t i, start;
    int rc;
    *problems = 0;
    rc = cairn_catalog_binlog_list(cat, server, vset_add, &s, err);
    if (rc > 0)
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
    if (rc != CAIRN_OK) {
        free(s.v);
        return rc;
    }
    if (s.n > 1)
        qsort(s.v, s.n, sizeof *s.v, vfile_cmp);
    for (start = 0; start < s.n; start = i) {
        uint64_t missing = 0;
        const struct vfile *f0 = &s.v[start];
        for (i = start + 1; i < s.n && strcmp(s.v[i].server, f0->server) == 0 &&
                            strcmp(s.v[i].base, f0->base) == 0;
             i++) {
            const struct vfile *p = &s.v[i - 1], *c = &s.v[i];
            uint64_t q;
            if (c->seq <= p->seq + 1)
                continue;
            if (c->seq - p->seq - 1 > 3) {
                say(report, arg,
                    "server %s: %s.%0*" PRIu64 " to %s.%0*" PRIu64
                    " are missing (%" PRIu64 " files, between %s.%0*" PRIu64 " and %s.%0*" PRIu64
                    ")",
                    f0->server, p->base, p->width, p->seq + 1, p->base, p->width, c->seq - 1,
                    c->seq - p->seq - 1, p->base, p->width, p->seq, c->base, c->width, c->seq);
            } else {
                for (q = p->seq + 1; q < c->seq; q++)
                    say(report, arg,
                        "server %s: %s.%0*" PRIu64 " is missing (between %s.%0*" PRIu64
                        " and %s.%0*" PRIu64 ")",
                        f0->server, p->base, p->width, q, p->base, p->width, p->seq, c->base,
                        c->width, c->seq);
            }
            missing += c->seq - p->seq - 1;
            (*problems)++;
        }
        say(info, arg,
            "server %s: %s.%0*" PRIu64 " .. %s.%0*" PRIu64 ": %zu files archived, %" PRIu64
            " missing",
            f0->server, f0->base, f0->width, f0->seq, s.v[i - 1].base, s.v[i - 1].width,
            s.v[i - 1].seq, i - start, missing);
    }
    free(s.v);
    return CAIRN_OK;
}

/* ---- reading everything back ---- */

int cairn_my_binlog_read_all(cairn_store *s, cairn_catalog *cat, const char *server,
                             cairn_my_report_fn report, void *arg, uint64_t *checked,
                             uint64_t *damaged, cairn_err *err)
{
    struct strset keys = {0};
    cairn_buf b = CAIRN_BUF_INIT, raw = CAIRN_BUF_INIT;
    size_t i;
    int rc;
    *checked = *damaged = 0;
    rc = cairn_catalog_binlog_list(cat, server, collect_row, &keys, err);
    if (rc > 0)
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
    for (i = 0; rc == CAIRN_OK && i < keys.n; i++) {
        struct cairn_my_binmeta m;
        cairn_err e2;
        int r = cairn_store_get(s, keys.v[i], &b, (size_t)CAIRN_MY_MAX_FILE + (64u << 20), &e2);
        if (r == CAIRN_OK)
            r = cairn_my_binobj_decode(b.data, b.len, keys.v[i], &m, &raw, &e2);
        (*checked)++;
        if (r == CAIRN_CORRUPT || r == CAIRN_NOTFOUND) {
            (*damaged)++;
            say(report, arg, "%s", e2.msg);
        } else if (r != CAIRN_OK) {
            rc = cairn_error(err, r, "%s", e2.msg);
        }
    }
    cairn_buf_free(&b);
    cairn_buf_free(&raw);
    strset_free(&keys);
    return rc;
}

/* ---- retention ---- */

int cairn_my_snapshot_coords(const char *manifest_json, char *server, size_t nserver,
                             char *file, size_t nfile, uint64_t *pos)
{
    json_t *o, *my, *sv, *fv, *pv;
    char base[CAIRN_BINLOG_NAME_MAX], key[CAIRN_WAL_KEY_MAX + CAIRN_BINLOG_NAME_MAX];
    uint64_t seq;
    int rc = -1;
    if (pos)
        *pos = 0;
    if (!manifest_json || !strstr(manifest_json, "\"mysql\""))
        return -1;
    if (!(o = json_loads(manifest_json, 0, NULL)))
        return -1;
    my = json_object_get(o, "mysql");
    sv = json_object_get(my, "server");
    fv = json_object_get(my, "binlog_file");
    pv = json_object_get(my, "binlog_pos");
    if (!json_is_object(my) || !json_is_string(fv))
        goto out;
    if (json_is_string(sv))
        snprintf(server, nserver, "%s", json_string_value(sv));
    else if (json_is_integer(sv) && json_integer_value(sv) >= 0)
        snprintf(server, nserver, "%" PRId64, (int64_t)json_integer_value(sv));
    else
        goto out;
    if (strlen(json_string_value(fv)) >= nfile)
        goto out;
    snprintf(file, nfile, "%s", json_string_value(fv));
    if (cairn_my_binlog_name_parse(file, base, sizeof base, &seq, NULL) != 0 ||
        cairn_my_binobj_key(server, file, key, sizeof key) != 0)
        goto out;
    if (pos && json_is_integer(pv) && json_integer_value(pv) > 0)
        *pos = (uint64_t)json_integer_value(pv);
    rc = 0;
out:
    json_decref(o);
    return rc;
}

/* The archived files of one server. */
struct rfile {
    char file[CAIRN_BINLOG_NAME_MAX];
    char key[CAIRN_WAL_KEY_MAX + CAIRN_BINLOG_NAME_MAX];
    char base[CAIRN_BINLOG_NAME_MAX];
    uint64_t seq, size;
    int parsed;
};
struct rset {
    struct rfile *v;
    size_t n, cap;
};

static int rset_add(void *arg, const struct cairn_binlogrow *r)
{
    struct rset *s = arg;
    struct rfile *f;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        struct rfile *nv = realloc(s->v, nc * sizeof *nv);
        if (!nv)
            return -1;
        s->v = nv;
        s->cap = nc;
    }
    f = &s->v[s->n++];
    memset(f, 0, sizeof *f);
    snprintf(f->file, sizeof f->file, "%s", r->file);
    snprintf(f->key, sizeof f->key, "%s", r->object_key);
    f->size = r->size;
    f->parsed = cairn_my_binlog_name_parse(r->file, f->base, sizeof f->base, &f->seq, NULL) == 0;
    return 0;
}

static int rset_load(cairn_catalog *cat, const char *server, struct rset *s, cairn_err *err)
{
    int rc = cairn_catalog_binlog_list(cat, server, rset_add, s, err);
    if (rc > 0 || rc == -1)
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
    return rc;
}

/* Deletes one archived file: object first, then its catalog row. */
static int del_one(cairn_store *s, cairn_catalog *cat, const char *server,
                   const struct rfile *f, cairn_err *err)
{
    int rc = cairn_store_del(s, f->key, err);
    if (rc == CAIRN_NOTFOUND)
        rc = CAIRN_OK;
    if (rc == CAIRN_OK)
        rc = cairn_catalog_binlog_remove(cat, server, f->file, err);
    if (rc != CAIRN_OK)
        cairn_error_prefix(err, "cannot delete archived binlog %s", f->key);
    return rc;
}

int cairn_my_binlog_forget(cairn_store *s, cairn_catalog *cat, const char *server,
                           const char *before, int dry_run, cairn_my_report_fn report,
                           void *arg, struct cairn_my_forget_stats *st, cairn_err *err)
{
    struct cairn_my_forget_stats dummy;
    struct rset rs = {0};
    char base[CAIRN_BINLOG_NAME_MAX];
    const struct rfile *newest = NULL;
    uint64_t seq;
    size_t i;
    int rc;
    if (!st)
        st = &dummy;
    memset(st, 0, sizeof *st);
    if (!server || !*server)
        return cairn_error(err, CAIRN_FATAL, "binlog-forget needs the server");
    if (!before || cairn_my_binlog_name_parse(before, base, sizeof base, &seq, NULL) != 0)
        return cairn_error(err, CAIRN_FATAL,
                           "'%s' is not a binlog file name (<base>.<number>)",
                           before ? before : "");
    if ((rc = cairn_my_binlog_sync(s, cat, NULL, err)) != CAIRN_OK)
        return rc;
    if ((rc = rset_load(cat, server, &rs, err)) != CAIRN_OK)
        goto out;
    for (i = 0; i < rs.n; i++)
        if (rs.v[i].parsed && strcmp(rs.v[i].base, base) == 0 &&
            (!newest || rs.v[i].seq > newest->seq))
            newest = &rs.v[i];
    if (!newest) {
        rc = cairn_error(err, CAIRN_NOTFOUND, "no binlog file %s.* is archived for server %s",
                         base, server);
        goto out;
    }
    snprintf(st->newest, sizeof st->newest, "%s", newest->file);
    if (seq > newest->seq) {
        rc = cairn_error(err, CAIRN_EXISTS,
                         "refusing: %s is past %s, the newest archived file of server %s, "
                         "which is never deleted (give --before %s at most)",
                         before, newest->file, server, newest->file);
        goto out;
    }
    for (i = 0; i < rs.n; i++) {
        const struct rfile *f = &rs.v[i];
        if (!f->parsed || strcmp(f->base, base) != 0 || f->seq >= seq) {
            st->kept++;
            continue;
        }
        if (!dry_run && (rc = del_one(s, cat, server, f, err)) != CAIRN_OK)
            goto out;
        say(report, arg, "%s %s", dry_run ? "would delete" : "deleted", f->key);
        st->deleted++;
        st->deleted_bytes += f->size;
    }
out:
    free(rs.v);
    return rc;
}

/* Coordinates of the snapshots still kept, and the servers of the source. */
struct coord {
    char server[CAIRN_BINLOG_SERVER_MAX];
    char base[CAIRN_BINLOG_NAME_MAX];
    char file[CAIRN_BINLOG_NAME_MAX];
    uint64_t seq;
    char snap[CAIRN_HEX_LEN + 1];
};
struct myret_scan {
    const char *source, *kept_id;
    int64_t kept_ns;
    struct coord *kept; /* every remaining snapshot with coordinates */
    size_t n_kept, cap_kept;
    char (*servers)[CAIRN_BINLOG_SERVER_MAX]; /* of the source */
    size_t n_srv, cap_srv;
};

static int add_server(struct myret_scan *rs, const char *server)
{
    size_t i;
    for (i = 0; i < rs->n_srv; i++)
        if (strcmp(rs->servers[i], server) == 0)
            return 0;
    if (rs->n_srv == rs->cap_srv) {
        size_t nc = rs->cap_srv ? rs->cap_srv * 2 : 8;
        void *nv = realloc(rs->servers, nc * sizeof *rs->servers);
        if (!nv)
            return -1;
        rs->servers = nv;
        rs->cap_srv = nc;
    }
    snprintf(rs->servers[rs->n_srv++], CAIRN_BINLOG_SERVER_MAX, "%s", server);
    return 0;
}

static int myret_row(void *arg, const struct cairn_snaprow *row)
{
    struct myret_scan *rs = arg;
    struct coord c;
    memset(&c, 0, sizeof c);
    if (cairn_my_snapshot_coords(row->manifest, c.server, sizeof c.server, c.file,
                                 sizeof c.file, NULL) != 0 ||
        cairn_my_binlog_name_parse(c.file, c.base, sizeof c.base, &c.seq, NULL) != 0)
        return 0;
    snprintf(c.snap, sizeof c.snap, "%s", row->id);
    if (row->source && strcmp(row->source, rs->source) == 0) {
        if (add_server(rs, c.server) != 0)
            return -1;
        /* forget removed every snapshot of the source older than the oldest
         * kept one (in a dry run they are still listed) */
        if (!rs->kept_id || (row->time_ns < rs->kept_ns && strcmp(row->id, rs->kept_id) != 0))
            return 0;
    }
    if (rs->n_kept == rs->cap_kept) {
        size_t nc = rs->cap_kept ? rs->cap_kept * 2 : 16;
        struct coord *nv = realloc(rs->kept, nc * sizeof *nv);
        if (!nv)
            return -1;
        rs->kept = nv;
        rs->cap_kept = nc;
    }
    rs->kept[rs->n_kept++] = c;
    return 0;
}

/* Retention of one server: the cut per base name is the lowest file number of
 * the kept coordinates; base names no kept snapshot names are left alone. */
static int myret_server(struct cairn_my_retention *mr, cairn_store *s, cairn_catalog *cat,
                        const struct myret_scan *rs, const char *server, int dry_run,
                        cairn_err *err)
{
    struct rset files = {0};
    const struct coord *oldest = NULL;
    uint64_t n_del = 0, bytes_del = 0, n_kept = 0;
    char first_kept[CAIRN_BINLOG_NAME_MAX] = "";
    uint64_t first_seq = 0;
    size_t i, j;
    int rc;
    for (i = 0; i < rs->n_kept; i++)
        if (strcmp(rs->kept[i].server, server) == 0 &&
            (!oldest || rs->kept[i].seq < oldest->seq))
            oldest = &rs->kept[i];
    if (!oldest) {
        say(mr ? mr->report : NULL, mr ? mr->report_arg : NULL,
            "binlog server %s: no kept snapshot has binlog coordinates, so no binlog is "
            "deleted (use 'cairn binlog-forget --server %s --before FILE')",
            server, server);
        return CAIRN_OK;
    }
    if ((rc = rset_load(cat, server, &files, err)) != CAIRN_OK)
        goto out;
    for (i = 0; i < files.n; i++) {
        const struct rfile *f = &files.v[i];
        int found = 0;
        uint64_t cut = 0;
        for (j = 0; f->parsed && j < rs->n_kept; j++)
            if (strcmp(rs->kept[j].server, server) == 0 &&
                strcmp(rs->kept[j].base, f->base) == 0 && (!found || rs->kept[j].seq < cut)) {
                cut = rs->kept[j].seq;
                found = 1;
            }
        if (!found || f->seq >= cut) {
            n_kept++;
            if (found && (!first_kept[0] || f->seq < first_seq)) {
                snprintf(first_kept, sizeof first_kept, "%s", f->file);
                first_seq = f->seq;
            }
            continue;
        }
        if (!dry_run && (rc = del_one(s, cat, server, f, err)) != CAIRN_OK)
            goto out;
        n_del++;
        bytes_del += f->size;
    }
    say(mr ? mr->report : NULL, mr ? mr->report_arg : NULL,
        "binlog server %s: %s %" PRIu64 " archived binlog files (%" PRIu64 " bytes raw) "
        "before the oldest kept base backup %.12s (%s); %" PRIu64 " kept%s%s",
        server, dry_run ? "would delete" : "deleted", n_del, bytes_del, oldest->snap,
        oldest->file, n_kept, first_kept[0] ? ", from " : "", first_kept);
    if (mr) {
        mr->deleted += n_del;
        mr->deleted_bytes += bytes_del;
        mr->kept += n_kept;
    }
out:
    free(files.v);
    return rc;
}

int cairn_my_log_retention(void *arg, cairn_repo *r, const char *source,
                           const char *oldest_kept_id, int64_t oldest_kept_ns, int dry_run,
                           cairn_err *err)
{
    struct cairn_my_retention *mr = arg;
    cairn_store *s = cairn_repo_store(r);
    cairn_catalog *cat = cairn_repo_catalog(r);
    struct myret_scan rs;
    size_t i;
    int rc;
    if (mr && mr->next &&
        (rc = mr->next(mr->next_arg, r, source, oldest_kept_id, oldest_kept_ns, dry_run,
                       err)) != CAIRN_OK)
        return rc;
    memset(&rs, 0, sizeof rs);
    rs.source = source;
    rs.kept_id = oldest_kept_id;
    rs.kept_ns = oldest_kept_ns;
    rc = cairn_catalog_list_snapshots(cat, NULL, myret_row, &rs, err);
    if (rc > 0 || rc == -1)
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
    if (rc == CAIRN_OK && strncmp(source, "mysql:", 6) == 0 && source[6] &&
        add_server(&rs, source + 6) != 0)
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
    if (rc != CAIRN_OK || rs.n_srv == 0)
        goto out; /* not a MariaDB/MySQL source */
    /* the archive as the store has it (binlog-push records in another catalog) */
    if ((rc = cairn_my_binlog_sync(s, cat, NULL, err)) != CAIRN_OK)
        goto out;
    for (i = 0; i < rs.n_srv && rc == CAIRN_OK; i++)
        rc = myret_server(mr, s, cat, &rs, rs.servers[i], dry_run, err);
out:
    free(rs.kept);
    free(rs.servers);
    return rc;
}

/* ---- event walk ---- */

int cairn_my_binlog_walk(const uint8_t *d, size_t len, cairn_my_event_fn cb, void *arg,
                         cairn_err *err)
{
    struct cairn_my_binscan *s = malloc(sizeof *s);
    size_t pos = 4, end;
    int rc, crc;
    if (!s)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    rc = cairn_my_binlog_scan(d, len, s, err);
    end = (size_t)s->end_pos;
    crc = s->crc32;
    free(s);
    if (rc != CAIRN_OK)
        return rc;
    while (pos + HDR <= end) {
        const uint8_t *e = d + pos;
        struct cairn_my_event ev;
        size_t blen = le32(e + 9) - HDR - (crc ? 4 : 0);
        memset(&ev, 0, sizeof ev);
        ev.type = e[4];
        ev.when = le32(e);
        ev.server_id = le32(e + 5);
        ev.pos = pos;
        ev.end = pos + le32(e + 9);
        if (ev.type == CAIRN_MY_EV_GTID && blen >= 13) {
            ev.has_gtid = 1;
            ev.gtid.seq = le64(e + HDR);
            ev.gtid.domain = le32(e + HDR + 8);
            ev.gtid.server = ev.server_id;
            ev.gtid_flags = e[HDR + 12];
        }
        if ((rc = cb(arg, &ev)) != 0)
            return rc;
        if (ev.type == CAIRN_MY_EV_START_ENCRYPTION)
            break;
        pos = (size_t)ev.end;
    }
    return CAIRN_OK;
}

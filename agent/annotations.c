/* agent/annotations.c — cairn.io/ PVC annotations into a backup policy.
 * See annotations.h; the user's view is docs/annotations.md. */
#define _GNU_SOURCE
#include "annotations.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_PARTS 10

static const char *const part_keys[N_PARTS] = {
    "cairn.io/schedule",      "cairn.io/retention",          "cairn.io/quiesce",
    "cairn.io/snapshot",      "cairn.io/snapshot-class",     "cairn.io/credentials-secret",
    "cairn.io/exclude",       "cairn.io/backup-requested-at", "cairn.io/delete-volume-snapshots",
    "cairn.io/csi-copy",
};

/* Written by the agent itself: known, not policy. */
static const char *const own_keys[] = {"cairn.io/last-backup", "cairn.io/last-status"};

static const char *const quiesce_names[] = {"none", "fsfreeze", "postgres", "mysql"};
static const char *const snapshot_names[] = {"file", "btrfs", "csi", "exec"};
static const char *const bool_names[] = {"true", "false"};
static const char *const copy_names[] = {"false", "true", "keep"}; /* enum cairn_csi_copy */

const char *cairn_quiesce_name(enum cairn_quiesce q)
{
    switch (q) {
    case CAIRN_QUIESCE_NONE: return "none";
    case CAIRN_QUIESCE_FSFREEZE: return "fsfreeze";
    case CAIRN_QUIESCE_POSTGRES: return "postgres";
    case CAIRN_QUIESCE_MYSQL: return "mysql";
    }
    return "?";
}

const char *cairn_csi_copy_name(enum cairn_csi_copy c)
{
    switch (c) {
    case CAIRN_CSI_COPY_OFF: return "false";
    case CAIRN_CSI_COPY_ON: return "true";
    case CAIRN_CSI_COPY_KEEP: return "keep";
    }
    return "?";
}

const char *cairn_snapshot_kind_name(enum cairn_snapshot_kind k)
{
    switch (k) {
    case CAIRN_SNAPSHOT_FILE: return "file";
    case CAIRN_SNAPSHOT_BTRFS: return "btrfs";
    case CAIRN_SNAPSHOT_CSI: return "csi";
    case CAIRN_SNAPSHOT_EXEC: return "exec";
    }
    return "?";
}

/* A value as it may appear in a message: at most 64 bytes of it, bytes
 * outside printable ASCII and quotes escaped, "..." when cut. */
static const char *shown(const char *v, char *out, size_t outlen)
{
    size_t o = 0, i;
    for (i = 0; i < 64 && v[i]; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (o + 8 >= outlen)
            break;
        if (ch < 0x20 || ch >= 0x7f || ch == '\'' || ch == '\\')
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", ch);
        else
            out[o++] = (char)ch;
    }
    out[o] = 0;
    if (v[i] && o + 4 < outlen)
        memcpy(out + o, "...", 4);
    return out;
}

static void add_problem(struct cairn_pvc_policy *p, enum cairn_ann_severity sev, unsigned part,
                        const char *key, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add_problem(struct cairn_pvc_policy *p, enum cairn_ann_severity sev, unsigned part,
                        const char *key, const char *fmt, ...)
{
    struct cairn_ann_problem *pr;
    va_list ap;
    if (sev == CAIRN_ANN_ERROR) {
        p->n_errors++;
        p->valid &= ~part;
    } else if (sev == CAIRN_ANN_WARNING) {
        p->n_warnings++;
    }
    if (p->n_problems >= CAIRN_ANN_MAX_PROBLEMS) {
        p->n_dropped++;
        return;
    }
    pr = &p->problems[p->n_problems++];
    pr->severity = sev;
    pr->part = part;
    snprintf(pr->key, sizeof pr->key, "%s", key);
    va_start(ap, fmt);
    vsnprintf(pr->msg, sizeof pr->msg, fmt, ap);
    va_end(ap);
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* Copies v without blanks at either end into out (outlen > 0); 0 when it did
 * not fit. */
static int trimmed(const char *v, char *out, size_t outlen)
{
    size_t n;
    while (is_space(*v))
        v++;
    n = strlen(v);
    while (n && is_space(v[n - 1]))
        n--;
    if (n >= outlen)
        return 0;
    memcpy(out, v, n);
    out[n] = 0;
    return 1;
}

int cairn_dns1123_subdomain(const char *s)
{
    size_t n = strlen(s), i, label = 0;
    if (n == 0 || n > CAIRN_ANN_MAX_NAME)
        return 0;
    for (i = 0; i < n; i++) {
        char ch = s[i];
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (ch == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!alnum && ch != '-')
            return 0;
        if (ch == '-' && label == 0)
            return 0;
        label++;
    }
    return label > 0 && s[n - 1] != '-';
}

static int pick(const char *v, const char *const *names, int n)
{
    int i;
    for (i = 0; i < n; i++)
        if (strcmp(v, names[i]) == 0)
            return i;
    return -1;
}

static void parse_enum(struct cairn_pvc_policy *p, unsigned part, const char *key,
                       const char *raw, const char *const *names, int n, const char *what,
                       int *out)
{
    char v[32], q[300];
    int i;
    if (!trimmed(raw, v, sizeof v) || (i = pick(v, names, n)) < 0) {
        char valid[128] = "";
        size_t o = 0;
        for (i = 0; i < n; i++)
            o += (size_t)snprintf(valid + o, sizeof valid - o, "%s%s", i ? ", " : "", names[i]);
        add_problem(p, CAIRN_ANN_ERROR, part, key, "%s '%s': not a %s (valid: %s)", key,
                    shown(raw, q, sizeof q), what, valid);
        return;
    }
    *out = i;
}

static void parse_name(struct cairn_pvc_policy *p, unsigned part, const char *key,
                       const char *raw, const char *what, char *out)
{
    char v[CAIRN_ANN_MAX_NAME + 1], q[300];
    if (!trimmed(raw, v, sizeof v) || !cairn_dns1123_subdomain(v)) {
        add_problem(p, CAIRN_ANN_ERROR, part, key,
                    "%s '%s': not a valid %s name (lower-case letters, digits, '-' and '.', "
                    "starting and ending with a letter or digit, at most %d bytes)",
                    key, shown(raw, q, sizeof q), what, CAIRN_ANN_MAX_NAME);
        return;
    }
    memcpy(out, v, strlen(v) + 1);
}

/* A glob's own problem, or NULL. */
static const char *glob_problem(const char *g, size_t n)
{
    size_t i;
    int in_class = 0;
    if (!cairn_utf8_valid(g, n))
        return "is not valid UTF-8";
    if (g[0] == '/')
        return "starts with '/': patterns are relative to the volume root (write 'tmp/*', "
               "not '/tmp/*')";
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)g[i];
        if (ch < 0x20 || ch == 0x7f)
            return "contains a control character";
        if (ch == '\\' && i + 1 < n) {
            i++;
            continue;
        }
        if (ch == '[' && !in_class)
            in_class = 1;
        else if (ch == ']' && in_class)
            in_class = 0;
    }
    if (in_class)
        return "has a '[' without its ']'";
    if (g[n - 1] == '\\')
        return "ends with a lone '\\'";
    return NULL;
}

static int parse_exclude(struct cairn_pvc_policy *p, const char *raw)
{
    const char *key = part_keys[6], *s = raw;
    char q[300];
    size_t count = 0;
    char **list;
    /* First pass: count and check, so nothing is kept from a bad list. */
    for (;;) {
        const char *e = strchr(s, ','), *b = s, *t;
        size_t n;
        const char *why;
        if (!e)
            e = s + strlen(s);
        while (b < e && is_space(*b))
            b++;
        t = e;
        while (t > b && is_space(t[-1]))
            t--;
        n = (size_t)(t - b);
        if (n > 0) {
            char g[CAIRN_ANN_MAX_GLOB + 1];
            if (++count > CAIRN_ANN_MAX_EXCLUDES) {
                add_problem(p, CAIRN_ANN_ERROR, CAIRN_ANN_EXCLUDE, key,
                            "%s: more than %d patterns (combine them, e.g. '*.log' for "
                            "several log files)",
                            key, CAIRN_ANN_MAX_EXCLUDES);
                return CAIRN_OK;
            }
            if (n > CAIRN_ANN_MAX_GLOB) {
                memcpy(g, b, CAIRN_ANN_MAX_GLOB);
                g[CAIRN_ANN_MAX_GLOB] = 0;
                add_problem(p, CAIRN_ANN_ERROR, CAIRN_ANN_EXCLUDE, key,
                            "%s: pattern '%s' is longer than %d bytes", key,
                            shown(g, q, sizeof q), CAIRN_ANN_MAX_GLOB);
                return CAIRN_OK;
            }
            memcpy(g, b, n);
            g[n] = 0;
            if ((why = glob_problem(g, n)) != NULL) {
                add_problem(p, CAIRN_ANN_ERROR, CAIRN_ANN_EXCLUDE, key,
                            "%s: pattern '%s' %s (write comma-separated globs like "
                            "'cache/*,*.tmp')",
                            key, shown(g, q, sizeof q), why);
                return CAIRN_OK;
            }
        }
        if (!*e)
            break;
        s = e + 1;
    }
    if (count == 0)
        return CAIRN_OK;
    list = calloc(count, sizeof *list);
    if (!list)
        return CAIRN_FATAL;
    p->exclude = list;
    for (s = raw;;) {
        const char *e = strchr(s, ','), *b = s, *t;
        if (!e)
            e = s + strlen(s);
        while (b < e && is_space(*b))
            b++;
        t = e;
        while (t > b && is_space(t[-1]))
            t--;
        if (t > b) {
            char *g = strndup(b, (size_t)(t - b));
            if (!g)
                return CAIRN_FATAL;
            list[p->n_exclude++] = g;
        }
        if (!*e)
            break;
        s = e + 1;
    }
    return CAIRN_OK;
}

/* Whether an RFC 3339 text starts with a year in 1970..2261. */
static int plausible_year(const char *t)
{
    int i, y = 0;
    for (i = 0; i < 4; i++) {
        if (t[i] < '0' || t[i] > '9')
            return 0;
        y = y * 10 + (t[i] - '0');
    }
    return y >= 1970 && y <= 2261;
}

int cairn_pvc_policy_parse(const struct cairn_annotation *annots, size_t n,
                           struct cairn_pvc_policy *p, cairn_err *err)
{
    const char *val[N_PARTS] = {0};
    char q[300], ev[64];
    size_t i;
    int k, v;
    cairn_err e;
    memset(p, 0, sizeof *p);
    p->valid = CAIRN_ANN_ALL;
    p->quiesce = CAIRN_QUIESCE_NONE;
    p->snapshot = CAIRN_SNAPSHOT_FILE;

    /* Which annotations are there: ours, unknown ones, twice-given ones. */
    for (i = 0; i < n; i++) {
        const char *key = annots[i].key, *value = annots[i].value ? annots[i].value : "";
        int known = 0;
        if (!key || strncmp(key, CAIRN_ANN_PREFIX, strlen(CAIRN_ANN_PREFIX)) != 0)
            continue;
        for (k = 0; k < N_PARTS; k++) {
            unsigned part = 1u << k;
            if (strcmp(key, part_keys[k]) != 0)
                continue;
            known = 1;
            if (p->present & part) {
                add_problem(p, CAIRN_ANN_ERROR, part, part_keys[k],
                            "%s is given more than once (keep one value)", part_keys[k]);
                val[k] = NULL;
            } else if (strnlen(value, CAIRN_ANN_MAX_VALUE + 1) > CAIRN_ANN_MAX_VALUE) {
                add_problem(p, CAIRN_ANN_ERROR, part, part_keys[k],
                            "%s '%s': value is longer than %d bytes", part_keys[k],
                            shown(value, q, sizeof q), CAIRN_ANN_MAX_VALUE);
            } else {
                val[k] = value;
            }
            p->present |= part;
        }
        for (k = 0; k < (int)(sizeof own_keys / sizeof own_keys[0]); k++)
            if (strcmp(key, own_keys[k]) == 0)
                known = 1;
        if (!known)
            add_problem(p, CAIRN_ANN_WARNING, 0, key,
                        "unknown annotation '%s' is ignored (known: cairn.io/schedule, "
                        "retention, quiesce, snapshot, snapshot-class, credentials-secret, "
                        "exclude, backup-requested-at, delete-volume-snapshots, csi-copy)",
                        shown(key, q, sizeof q));
    }

    /* Each annotation on its own. */
    if (val[0]) {
        /* newlines at the ends (YAML block scalars) are fine here */
        char sbuf[CAIRN_CRON_MAX_TEXT + 2];
        const char *sv = trimmed(val[0], sbuf, sizeof sbuf) ? sbuf : val[0];
        if (cairn_cron_parse(sv, &p->schedule, &e) != CAIRN_OK)
            add_problem(p, CAIRN_ANN_ERROR, CAIRN_ANN_SCHEDULE, part_keys[0],
                        "%s '%s': %s (e.g. '0 2 * * *', '@daily', "
                        "'CRON_TZ=Europe/Berlin 30 1 * * *')",
                        part_keys[0], shown(val[0], q, sizeof q), e.msg);
    }
    if (val[1]) {
        if (strnlen(val[1], CAIRN_POLICY_MAX_TEXT + 1) > CAIRN_POLICY_MAX_TEXT) {
            add_problem(p, CAIRN_ANN_ERROR, CAIRN_ANN_RETENTION, part_keys[1],
                        "%s '%s': longer than %d bytes", part_keys[1],
                        shown(val[1], q, sizeof q), CAIRN_POLICY_MAX_TEXT);
        } else {
            char rbuf[CAIRN_POLICY_MAX_TEXT + 1];
            int rc = cairn_policy_parse(trimmed(val[1], rbuf, sizeof rbuf) ? rbuf : val[1],
                                        &p->retention, &e);
            if (rc == CAIRN_FATAL)
                return cairn_error(err, CAIRN_FATAL, "out of memory");
            if (rc != CAIRN_OK)
                add_problem(p, CAIRN_ANN_ERROR, CAIRN_ANN_RETENTION, part_keys[1],
                            "%s '%s': %s", part_keys[1], shown(val[1], q, sizeof q), e.msg);
        }
    }
    if (val[2]) {
        v = 0;
        parse_enum(p, CAIRN_ANN_QUIESCE, part_keys[2], val[2], quiesce_names, 4,
                   "quiesce method", &v);
        p->quiesce = (enum cairn_quiesce)v;
    }
    if (val[3] && trimmed(val[3], ev, sizeof ev) && strncmp(ev, "exec:", 5) == 0) {
        /* a named command from the agent's configuration (never the command
         * itself: annotations are written by namespace users) */
        const char *nm = ev + 5;
        size_t ln = strlen(nm), j;
        int good = ln >= 1 && ln <= CAIRN_ANN_MAX_EXEC_NAME && nm[0] != '-' && nm[ln - 1] != '-';
        for (j = 0; good && j < ln; j++)
            good = (nm[j] >= 'a' && nm[j] <= 'z') || (nm[j] >= '0' && nm[j] <= '9') ||
                   nm[j] == '-';
        if (good) {
            p->snapshot = CAIRN_SNAPSHOT_EXEC;
            memcpy(p->snapshot_exec, nm, ln + 1);
        } else {
            add_problem(p, CAIRN_ANN_ERROR, CAIRN_ANN_SNAPSHOT, part_keys[3],
                        "%s '%s': after 'exec:' comes the name of a command configured in the "
                        "agent (lower-case letters, digits and '-', at most %d bytes)",
                        part_keys[3], shown(val[3], q, sizeof q), CAIRN_ANN_MAX_EXEC_NAME);
        }
    } else if (val[3]) {
        v = 0;
        parse_enum(p, CAIRN_ANN_SNAPSHOT, part_keys[3], val[3], snapshot_names, 4,
                   "snapshot method", &v);
        p->snapshot = (enum cairn_snapshot_kind)v;
    }
    if (val[4])
        parse_name(p, CAIRN_ANN_SNAPSHOT_CLASS, part_keys[4], val[4], "VolumeSnapshotClass",
                   p->snapshot_class);
    if (val[5])
        parse_name(p, CAIRN_ANN_CREDENTIALS, part_keys[5], val[5], "Secret",
                   p->credentials_secret);
    if (val[6] && parse_exclude(p, val[6]) == CAIRN_FATAL) {
        cairn_pvc_policy_clear(p);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    if (val[7]) {
        char t[64];
        int64_t ns;
        /* Years outside 1970..2261 are refused before cairn_parse_time(),
         * whose nanoseconds would overflow for them. */
        if (!trimmed(val[7], t, sizeof t) || !plausible_year(t) ||
            cairn_parse_time(t, &ns) != CAIRN_OK)
            add_problem(p, CAIRN_ANN_ERROR, CAIRN_ANN_REQUESTED_AT, part_keys[7],
                        "%s '%s': not an RFC 3339 time in 1970-2261 (write e.g. 2026-11-21T21:01:41Z; "
                        "`cairn trigger` sets it)",
                        part_keys[7], shown(val[7], q, sizeof q));
        else
            p->requested_at_ns = ns;
    }
    if (val[8]) {
        v = 0;
        parse_enum(p, CAIRN_ANN_DELETE_VS, part_keys[8], val[8], bool_names, 2,
                   "boolean", &v);
        p->keep_volume_snapshots = v == 1;
    }
    if (val[9]) {
        v = 0;
        parse_enum(p, CAIRN_ANN_CSI_COPY, part_keys[9], val[9], copy_names, 3, "csi-copy mode",
                   &v);
        p->csi_copy = (enum cairn_csi_copy)v;
    }
    /* Parts not usable are reset to their defaults, so nobody acts on half a
     * value by mistake. */
    if (!(p->valid & CAIRN_ANN_SCHEDULE))
        memset(&p->schedule, 0, sizeof p->schedule);
    if (!(p->valid & CAIRN_ANN_QUIESCE))
        p->quiesce = CAIRN_QUIESCE_NONE;
    if (!(p->valid & CAIRN_ANN_SNAPSHOT)) {
        p->snapshot = CAIRN_SNAPSHOT_FILE;
        p->snapshot_exec[0] = 0;
    }
    if (!(p->valid & CAIRN_ANN_CSI_COPY))
        p->csi_copy = CAIRN_CSI_COPY_OFF;

    /* Combinations, only between parts that are valid on their own. */
    {
        unsigned ok = p->valid;
        int db = p->quiesce == CAIRN_QUIESCE_POSTGRES || p->quiesce == CAIRN_QUIESCE_MYSQL;
        const char *qn = cairn_quiesce_name(p->quiesce);
        if ((ok & CAIRN_ANN_QUIESCE) && db && !(p->present & CAIRN_ANN_CREDENTIALS))
            add_problem(p, CAIRN_ANN_ERROR, CAIRN_ANN_QUIESCE, part_keys[2],
                        "%s '%s' needs cairn.io/credentials-secret: the name of a Secret in "
                        "the PVC's namespace with the database user and password",
                        part_keys[2], qn);
        if ((ok & CAIRN_ANN_QUIESCE) && (ok & CAIRN_ANN_CREDENTIALS) && !db &&
            (p->present & CAIRN_ANN_CREDENTIALS))
            add_problem(p, CAIRN_ANN_WARNING, CAIRN_ANN_CREDENTIALS, part_keys[5],
                        "%s '%s' is ignored: only cairn.io/quiesce 'postgres' or 'mysql' "
                        "uses it (quiesce is '%s')",
                        part_keys[5], p->credentials_secret, qn);
        if ((ok & CAIRN_ANN_SNAPSHOT) && p->snapshot == CAIRN_SNAPSHOT_CSI &&
            !(p->present & CAIRN_ANN_SNAPSHOT_CLASS))
            add_problem(p, CAIRN_ANN_NOTE, CAIRN_ANN_SNAPSHOT_CLASS, part_keys[4],
                        "%s is not set: the cluster's default VolumeSnapshotClass for the "
                        "volume's CSI driver is used",
                        part_keys[4]);
        if ((ok & CAIRN_ANN_SNAPSHOT) && (ok & CAIRN_ANN_SNAPSHOT_CLASS) &&
            p->snapshot != CAIRN_SNAPSHOT_CSI && (p->present & CAIRN_ANN_SNAPSHOT_CLASS))
            add_problem(p, CAIRN_ANN_WARNING, CAIRN_ANN_SNAPSHOT_CLASS, part_keys[4],
                        "%s '%s' is ignored: only cairn.io/snapshot 'csi' uses it "
                        "(snapshot is '%s')",
                        part_keys[4], p->snapshot_class, cairn_snapshot_kind_name(p->snapshot));
        if ((ok & CAIRN_ANN_SNAPSHOT) && (ok & CAIRN_ANN_CSI_COPY) &&
            p->snapshot != CAIRN_SNAPSHOT_CSI && p->csi_copy != CAIRN_CSI_COPY_OFF) {
            add_problem(p, CAIRN_ANN_WARNING, CAIRN_ANN_CSI_COPY, part_keys[9],
                        "%s '%s' is ignored: only cairn.io/snapshot 'csi' makes a "
                        "VolumeSnapshot to copy (snapshot is '%s')",
                        part_keys[9], copy_names[p->csi_copy],
                        cairn_snapshot_kind_name(p->snapshot));
            p->csi_copy = CAIRN_CSI_COPY_OFF;
        }
        if ((ok & CAIRN_ANN_QUIESCE) && (ok & CAIRN_ANN_SNAPSHOT) &&
            p->quiesce == CAIRN_QUIESCE_FSFREEZE && p->snapshot == CAIRN_SNAPSHOT_FILE) {
            add_problem(p, CAIRN_ANN_ERROR, CAIRN_ANN_QUIESCE, part_keys[2],
                        "%s 'fsfreeze' with cairn.io/snapshot 'file'%s is refused: the "
                        "filesystem would stay frozen for the whole file copy and block the "
                        "workload's writes; fsfreeze only brackets a snapshot taken below "
                        "the filesystem (set cairn.io/snapshot to 'csi' or 'exec', or "
                        "quiesce to 'none')",
                        part_keys[2],
                        (p->present & CAIRN_ANN_SNAPSHOT) ? "" : " (the default)");
            p->quiesce = CAIRN_QUIESCE_NONE;
        }
        if ((ok & CAIRN_ANN_QUIESCE) && (ok & CAIRN_ANN_SNAPSHOT) &&
            p->quiesce == CAIRN_QUIESCE_FSFREEZE && p->snapshot == CAIRN_SNAPSHOT_BTRFS) {
            add_problem(p, CAIRN_ANN_WARNING, CAIRN_ANN_QUIESCE, part_keys[2],
                        "%s 'fsfreeze' is not needed with cairn.io/snapshot 'btrfs' (a btrfs "
                        "snapshot is atomic by itself): the filesystem is not frozen",
                        part_keys[2]);
            p->quiesce = CAIRN_QUIESCE_NONE;
        }
    }

    if (p->n_errors) {
        const char *first = "";
        for (i = 0; i < p->n_problems; i++)
            if (p->problems[i].severity == CAIRN_ANN_ERROR) {
                first = p->problems[i].msg;
                break;
            }
        return cairn_error(err, CAIRN_FAILED, "%zu invalid annotation%s: %s", p->n_errors,
                           p->n_errors == 1 ? "" : "s", first);
    }
    cairn_err_clear(err);
    return CAIRN_OK;
}

void cairn_pvc_policy_clear(struct cairn_pvc_policy *p)
{
    size_t i;
    if (!p)
        return;
    cairn_policy_clear(&p->retention);
    for (i = 0; i < p->n_exclude; i++)
        free(p->exclude[i]);
    free(p->exclude);
    p->exclude = NULL;
    p->n_exclude = 0;
}

int cairn_pvc_policy_can_backup(const struct cairn_pvc_policy *p)
{
    unsigned need = CAIRN_ANN_SCHEDULE | CAIRN_ANN_QUIESCE | CAIRN_ANN_SNAPSHOT |
                    CAIRN_ANN_SNAPSHOT_CLASS | CAIRN_ANN_CREDENTIALS | CAIRN_ANN_EXCLUDE |
                    CAIRN_ANN_CSI_COPY;
    return (p->valid & need) == need;
}

int cairn_pvc_policy_can_prune(const struct cairn_pvc_policy *p)
{
    return (p->present & CAIRN_ANN_RETENTION) && (p->valid & CAIRN_ANN_RETENTION) &&
           (p->valid & CAIRN_ANN_DELETE_VS) && !cairn_policy_is_empty(&p->retention);
}

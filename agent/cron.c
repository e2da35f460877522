/* agent/cron.c — cron schedules: parser, next-run search across DST changes,
 * missed runs and jitter. See cron.h for the rules. */
#define _GNU_SOURCE
#include "cron.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const field_names[5] = {"minute", "hour", "day-of-month", "month",
                                           "day-of-week"};
static const int field_lo[5] = {0, 0, 1, 1, 0};
static const int field_hi[5] = {59, 23, 31, 12, 7};
static const char *const month_names[12] = {"jan", "feb", "mar", "apr", "may", "jun",
                                            "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const dow_names[7] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

/* ---- calendar arithmetic (proleptic Gregorian, no libc) ---- */

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Days since 1970-01-01 (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;
    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* ---- parsing ---- */

static int lookup_name(const char *s, size_t n, int field)
{
    int i;
    if (n != 3 || (field != 3 && field != 4))
        return -1;
    if (field == 3) {
        for (i = 0; i < 12; i++)
            if (strncasecmp(s, month_names[i], 3) == 0)
                return i + 1;
    } else {
        for (i = 0; i < 7; i++)
            if (strncasecmp(s, dow_names[i], 3) == 0)
                return i;
    }
    return -1;
}

/* A number or a name at *p (within [*p, end)). */
static int parse_value(const char **p, const char *end, int field, int *out)
{
    const char *s = *p;
    if (s < end && isdigit((unsigned char)*s)) {
        long v = 0;
        while (s < end && isdigit((unsigned char)*s)) {
            if (v < 100000)
                v = v * 10 + (*s - '0');
            s++;
        }
        *out = (int)v;
        *p = s;
        return 0;
    }
    if (s < end && isalpha((unsigned char)*s)) {
        const char *b = s;
        int v;
        while (s < end && isalpha((unsigned char)*s))
            s++;
        v = lookup_name(b, (size_t)(s - b), field);
        if (v < 0)
            return -1;
        *out = v;
        *p = s;
        return 0;
    }
    return -1;
}

static const char *valid_hint(int field)
{
    switch (field) {
    case 0: return "0-59";
    case 1: return "0-23";
    case 2: return "1-31";
    case 3: return "1-12 or jan-dec";
    default: return "0-7 (0 and 7 are Sunday) or sun-sat";
    }
}

/* Parses one field [s, end) into a bit mask. */
static int parse_field(const char *s, const char *end, int field, uint64_t *mask, int *star,
                       cairn_err *err)
{
    const char *p = s, *item;
    int lo = field_lo[field], hi = field_hi[field];
    int flen = (int)(end - s);
    *mask = 0;
    *star = (s < end && *s == '*');
    for (;;) {
        int a, b, step = 1, v;
        item = p;
        if (p >= end || *p == ',')
            return cairn_error(err, CAIRN_FAILED,
                               "field %d (%s) '%.*s': empty list item (valid: %s, '*', "
                               "ranges a-b and steps /n)",
                               field + 1, field_names[field], flen, s, valid_hint(field));
        if (*p == '*') {
            a = lo;
            b = hi;
            p++;
        } else {
            if (parse_value(&p, end, field, &a) != 0)
                return cairn_error(err, CAIRN_FAILED,
                                   "field %d (%s) '%.*s': '%.*s' is not a value (valid: %s)",
                                   field + 1, field_names[field], flen, s,
                                   (int)(strcspn(item, ",") < (size_t)(end - item)
                                             ? strcspn(item, ",")
                                             : (size_t)(end - item)),
                                   item, valid_hint(field));
            b = a;
            if (p < end && *p == '-') {
                p++;
                if (parse_value(&p, end, field, &b) != 0)
                    return cairn_error(err, CAIRN_FAILED,
                                       "field %d (%s) '%.*s': range without an end "
                                       "(write a-b, valid: %s)",
                                       field + 1, field_names[field], flen, s,
                                       valid_hint(field));
            } else if (p < end && *p == '/') {
                b = hi; /* "5/10" = "5-max/10" */
            }
        }
        if (p < end && *p == '/') {
            p++;
            if (p >= end || !isdigit((unsigned char)*p) || parse_value(&p, end, -1, &step) != 0)
                return cairn_error(err, CAIRN_FAILED,
                                   "field %d (%s) '%.*s': a step needs a number after '/'",
                                   field + 1, field_names[field], flen, s);
            if (step < 1 || step > hi)
                return cairn_error(err, CAIRN_FAILED,
                                   "field %d (%s) '%.*s': step %d is out of range 1-%d",
                                   field + 1, field_names[field], flen, s, step, hi);
        }
        if (a < lo || a > hi)
            return cairn_error(err, CAIRN_FAILED,
                               "field %d (%s) '%.*s': %d is out of range %s", field + 1,
                               field_names[field], flen, s, a, valid_hint(field));
        if (b < lo || b > hi)
            return cairn_error(err, CAIRN_FAILED,
                               "field %d (%s) '%.*s': %d is out of range %s", field + 1,
                               field_names[field], flen, s, b, valid_hint(field));
        if (b < a)
            return cairn_error(err, CAIRN_FAILED,
                               "field %d (%s) '%.*s': range %d-%d is reversed (write the "
                               "smaller value first)",
                               field + 1, field_names[field], flen, s, a, b);
        for (v = a; v <= b; v += step)
            *mask |= (uint64_t)1 << (field == 4 && v == 7 ? 0 : v);
        if (p >= end)
            break;
        if (*p != ',')
            return cairn_error(err, CAIRN_FAILED,
                               "field %d (%s) '%.*s': unexpected '%c' (valid: %s, '*', "
                               "lists a,b, ranges a-b and steps /n)",
                               field + 1, field_names[field], flen, s,
                               isprint((unsigned char)*p) ? *p : '?', valid_hint(field));
        p++;
        if (p >= end)
            return cairn_error(err, CAIRN_FAILED,
                               "field %d (%s) '%.*s': empty list item after ','", field + 1,
                               field_names[field], flen, s);
    }
    return CAIRN_OK;
}

static int zone_name_ok(const char *z, size_t n)
{
    size_t i;
    if (n == 0 || n >= CAIRN_CRON_TZ_MAX || z[0] == '/' || z[0] == '.')
        return 0;
    for (i = 0; i < n; i++) {
        char ch = z[i];
        if (!(isalnum((unsigned char)ch) || ch == '/' || ch == '_' || ch == '-' || ch == '+' ||
              ch == '.'))
            return 0;
        if (ch == '.' && i + 1 < n && z[i + 1] == '.')
            return 0;
    }
    return 1;
}

static int zone_is_utc(const char *z)
{
    return z[0] == 0 || strcmp(z, "UTC") == 0 || strcmp(z, "Etc/UTC") == 0 ||
           strcmp(z, "GMT") == 0 || strcmp(z, "Etc/GMT") == 0 || strcmp(z, "Zulu") == 0 ||
           strcmp(z, "Etc/Zulu") == 0 || strcmp(z, "UCT") == 0 || strcmp(z, "Etc/UCT") == 0 ||
           strcmp(z, "Universal") == 0 || strcmp(z, "Etc/Universal") == 0;
}

struct tz;
static struct tz *tz_get(const char *name, int *owned, cairn_err *err);
static void tz_free(struct tz *z);

/* Whether a day-of-month/month pair exists at all (leap years included). */
static int dom_possible(const struct cairn_cron *c)
{
    int m, d;
    for (m = 1; m <= 12; m++) {
        if (!(c->months & (1u << m)))
            continue;
        for (d = 1; d <= (m == 2 ? 29 : days_in_month(2001, m)); d++)
            if (c->doms & (1u << d))
                return 1;
    }
    return 0;
}

static const struct {
    const char *name, *expansion;
} macros[] = {
    {"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"},  {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Keeps the text as given, blanks at both ends trimmed. */
static void copy_text(struct cairn_cron *c, const char *text, size_t len)
{
    while (len && is_blank(*text))
        text++, len--;
    while (len && is_blank(text[len - 1]))
        len--;
    memcpy(c->text, text, len);
    c->text[len] = 0;
}

int cairn_cron_parse(const char *text, struct cairn_cron *c, cairn_err *err)
{
    const char *p, *fs[6], *fe[6];
    size_t len;
    int nf = 0, i;
    memset(c, 0, sizeof *c);
    if (!text)
        return cairn_error(err, CAIRN_FAILED, "empty schedule (write five fields like "
                                              "'0 2 * * *' or a macro like '@daily')");
    len = strnlen(text, CAIRN_CRON_MAX_TEXT + 1);
    if (len > CAIRN_CRON_MAX_TEXT)
        return cairn_error(err, CAIRN_FAILED, "schedule is longer than %d bytes",
                           CAIRN_CRON_MAX_TEXT);
    for (i = 0; (size_t)i < len; i++)
        if ((unsigned char)text[i] < 0x20 && !is_blank(text[i]))
            return cairn_error(err, CAIRN_FAILED,
                               "schedule contains a control character (byte %d)", i + 1);
    p = text;
    while (is_blank(*p))
        p++;
    if (*p == 0)
        return cairn_error(err, CAIRN_FAILED, "empty schedule (write five fields like "
                                              "'0 2 * * *' or a macro like '@daily')");
    if (strncmp(p, "CRON_TZ=", 8) == 0 || strncmp(p, "TZ=", 3) == 0) {
        const char *z = p + (p[0] == 'C' ? 8 : 3);
        size_t zn = 0;
        while (z[zn] && !is_blank(z[zn]))
            zn++;
        if (!zone_name_ok(z, zn))
            return cairn_error(err, CAIRN_FAILED,
                               "time zone '%.*s' is not a valid zone name (write "
                               "CRON_TZ=Area/City, e.g. CRON_TZ=Europe/Berlin)",
                               (int)(zn > 64 ? 64 : zn), z);
        memcpy(c->tz, z, zn);
        c->tz[zn] = 0;
        if (zone_is_utc(c->tz)) {
            c->tz[0] = 0;
        } else {
            int owned;
            struct tz *zone = tz_get(c->tz, &owned, err);
            if (!zone) {
                memset(c, 0, sizeof *c);
                return err && err->code ? err->code : CAIRN_FAILED;
            }
            if (owned)
                tz_free(zone);
        }
        p = z + zn;
        while (is_blank(*p))
            p++;
        if (*p == 0) {
            int rc = cairn_error(err, CAIRN_FAILED,
                                 "empty schedule after 'CRON_TZ=%s' (write five fields or a "
                                 "macro after the zone, e.g. 'CRON_TZ=%s 0 2 * * *')",
                                 c->tz[0] ? c->tz : "UTC", c->tz[0] ? c->tz : "UTC");
            memset(c, 0, sizeof *c);
            return rc;
        }
    }
    if (*p == '@') {
        const char *e = p;
        size_t n;
        while (*e && !is_blank(*e))
            e++;
        n = (size_t)(e - p);
        for (; is_blank(*e); e++)
            ;
        for (i = 0; i < (int)(sizeof macros / sizeof macros[0]); i++) {
            if (strlen(macros[i].name) == n && strncasecmp(p, macros[i].name, n) == 0) {
                char tz[CAIRN_CRON_TZ_MAX];
                int rc;
                if (*e)
                    return cairn_error(err, CAIRN_FAILED,
                                       "'%s' takes nothing after it (found '%.32s')",
                                       macros[i].name, e);
                memcpy(tz, c->tz, sizeof tz);
                rc = cairn_cron_parse(macros[i].expansion, c, err);
                memcpy(c->tz, tz, sizeof tz);
                copy_text(c, text, len);
                return rc;
            }
        }
        return cairn_error(err, CAIRN_FAILED,
                           "unknown macro '%.*s' (valid: @hourly, @daily, @midnight, "
                           "@weekly, @monthly, @yearly, @annually)",
                           (int)(n > 32 ? 32 : n), p);
    }
    while (*p) {
        if (nf == 5) {
            memset(c, 0, sizeof *c);
            return cairn_error(err, CAIRN_FAILED,
                               "too many fields (found more than 5 at '%.32s'; write "
                               "'minute hour day-of-month month day-of-week')",
                               p);
        }
        fs[nf] = p;
        while (*p && !is_blank(*p))
            p++;
        fe[nf++] = p;
        while (is_blank(*p))
            p++;
    }
    if (nf < 5) {
        memset(c, 0, sizeof *c);
        return cairn_error(err, CAIRN_FAILED,
                           "%d field%s, 5 needed ('minute hour day-of-month month "
                           "day-of-week', e.g. '0 2 * * *') or a macro like '@daily'",
                           nf, nf == 1 ? "" : "s");
    }
    for (i = 0; i < 5; i++) {
        uint64_t mask;
        int star;
        if (parse_field(fs[i], fe[i], i, &mask, &star, err) != CAIRN_OK) {
            memset(c, 0, sizeof *c);
            return CAIRN_FAILED;
        }
        switch (i) {
        case 0: c->minutes = mask; break;
        case 1: c->hours = (uint32_t)mask; break;
        case 2: c->doms = (uint32_t)mask; break;
        case 3: c->months = (uint16_t)mask; break;
        default: c->dows = (uint8_t)mask; break;
        }
        if (star)
            c->flags |= (i == 0 ? CAIRN_CRON_MIN_STAR
                                : i == 1 ? CAIRN_CRON_HOUR_STAR
                                         : i == 2 ? CAIRN_CRON_DOM_STAR
                                                  : i == 3 ? 0 : CAIRN_CRON_DOW_STAR);
    }
    /* The day fields: with both restricted a day matching either runs, so
     * only the AND case (one of them '*') can be impossible. */
    if ((c->flags & (CAIRN_CRON_DOM_STAR | CAIRN_CRON_DOW_STAR)) && !dom_possible(c)) {
        memset(c, 0, sizeof *c);
        return cairn_error(err, CAIRN_FAILED,
                           "schedule never runs: no month of field 4 has a day of field 3 "
                           "(e.g. February has no 30th)");
    }
    copy_text(c, text, len);
    return CAIRN_OK;
}

/* ---- local wall-clock search ---- */

/* Wall-clock minute as local seconds ("as if UTC"). */
struct wall {
    int64_t y;
    int mo, d, h, mi;
};

static int day_matches(const struct cairn_cron *c, int64_t y, int mo, int d)
{
    int dow = (int)((days_from_civil(y, mo, d) % 7 + 11) % 7); /* 1970-01-01 was Thursday */
    int dom_ok = (c->doms >> d) & 1, dow_ok = (c->dows >> dow) & 1;
    if (c->flags & (CAIRN_CRON_DOM_STAR | CAIRN_CRON_DOW_STAR))
        return dom_ok && dow_ok;
    return dom_ok || dow_ok;
}

/* The first matching wall-clock minute >= start (local seconds, a multiple of
 * 60), into *out. 0 when found, -1 when none before year limit_y. */
static int next_wall(const struct cairn_cron *c, int64_t start, int64_t limit_y, int64_t *out)
{
    int64_t days = floor_div(start, 86400), sod = start - days * 86400;
    struct wall w;
    civil_from_days(days, &w.y, &w.mo, &w.d);
    w.h = (int)(sod / 3600);
    w.mi = (int)(sod % 3600 / 60);
    for (;;) {
        if (w.y > limit_y)
            return -1;
        if (!((c->months >> w.mo) & 1)) {
            w.mo++, w.d = 1, w.h = 0, w.mi = 0;
            if (w.mo > 12)
                w.mo = 1, w.y++;
            continue;
        }
        if (w.d > days_in_month(w.y, w.mo) || !day_matches(c, w.y, w.mo, w.d)) {
            w.d++, w.h = 0, w.mi = 0;
            if (w.d > days_in_month(w.y, w.mo)) {
                w.d = 1, w.mo++;
                if (w.mo > 12)
                    w.mo = 1, w.y++;
            }
            continue;
        }
        if (!((c->hours >> w.h) & 1)) {
            uint32_t rest = c->hours >> w.h;
            w.mi = 0;
            if (rest) {
                w.h += __builtin_ctz(rest);
                continue;
            }
            w.h = 24;
        } else {
            uint64_t rest = c->minutes >> w.mi;
            if (rest) {
                w.mi += __builtin_ctzll(rest);
                *out = days_from_civil(w.y, w.mo, w.d) * 86400 + w.h * 3600 + w.mi * 60;
                return 0;
            }
            w.mi = 0;
            w.h++;
            if (w.h < 24)
                continue;
        }
        /* past the last hour: next day */
        w.h = 0, w.mi = 0, w.d++;
        if (w.d > days_in_month(w.y, w.mo)) {
            w.d = 1, w.mo++;
            if (w.mo > 12)
                w.mo = 1, w.y++;
        }
    }
}

/* ---- time zones: a TZif reader (RFC 8536) ----
 * Zones are read from the tz database once, kept for the life of the process
 * (at most TZ_CACHE of them; more are read per call) and never changed after
 * loading, so lookups need no lock. No libc time zone state is touched. */

#define TZ_CACHE 32
#define TZ_FILE_MAX (512 * 1024)
#define TZ_MAX_TRANS 4096
#define TZ_MAX_TYPES 256

/* One POSIX TZ rule date: Jn, n or Mm.w.d, plus the time of day. */
struct tz_date {
    char kind; /* 'J', 'D' (zero-based day), 'M' */
    int a, b, c;  /* J: day; D: day; M: month, week, weekday */
    int32_t secs; /* local time of day, may be negative or over 24 h */
};

struct tz {
    char name[CAIRN_CRON_TZ_MAX];
    int64_t *trans;   /* transition instants, ascending */
    uint8_t *idx;     /* type index per transition */
    int32_t *offs;    /* UTC offset per type */
    size_t n, ntypes;
    int has_rule, has_dst;
    int32_t std_off, dst_off; /* from the footer, seconds east */
    struct tz_date start, end;
};

static pthread_mutex_t tz_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tz *tz_cache[TZ_CACHE];

static void tz_free(struct tz *z)
{
    if (!z)
        return;
    free(z->trans);
    free(z->idx);
    free(z->offs);
    free(z);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* "[+-]hh[:mm[:ss]]" into seconds; hours up to 167 (RFC 8536). */
static int posix_hms(const char **pp, int32_t *out)
{
    const char *p = *pp;
    int sign = 1, h = 0, m = 0, s = 0, n = 0;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    while (*p >= '0' && *p <= '9' && n < 3)
        h = h * 10 + (*p++ - '0'), n++;
    if (n == 0 || h > 167)
        return -1;
    if (*p == ':') {
        p++;
        if (!(p[0] >= '0' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9'))
            return -1;
        m = (p[0] - '0') * 10 + (p[1] - '0');
        p += 2;
        if (*p == ':') {
            p++;
            if (!(p[0] >= '0' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9'))
                return -1;
            s = (p[0] - '0') * 10 + (p[1] - '0');
            p += 2;
        }
    }
    *out = sign * (h * 3600 + m * 60 + s);
    *pp = p;
    return 0;
}

static int posix_name(const char **pp)
{
    const char *p = *pp;
    int n = 0;
    if (*p == '<') {
        p++;
        while (*p && *p != '>')
            p++, n++;
        if (*p != '>')
            return -1;
        p++;
    } else {
        while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
            p++, n++;
    }
    if (n < 1)
        return -1;
    *pp = p;
    return 0;
}

static int posix_int(const char **pp, int lo, int hi, int *out)
{
    const char *p = *pp;
    int v = 0, n = 0;
    while (*p >= '0' && *p <= '9' && n < 4)
        v = v * 10 + (*p++ - '0'), n++;
    if (n == 0 || v < lo || v > hi)
        return -1;
    *out = v;
    *pp = p;
    return 0;
}

static int posix_date(const char **pp, struct tz_date *d)
{
    const char *p = *pp;
    if (*p == 'J') {
        p++;
        d->kind = 'J';
        if (posix_int(&p, 1, 365, &d->a))
            return -1;
    } else if (*p == 'M') {
        p++;
        d->kind = 'M';
        if (posix_int(&p, 1, 12, &d->a) || *p++ != '.' || posix_int(&p, 1, 5, &d->b) ||
            *p++ != '.' || posix_int(&p, 0, 6, &d->c))
            return -1;
    } else {
        d->kind = 'D';
        if (posix_int(&p, 0, 365, &d->a))
            return -1;
    }
    d->secs = 7200;
    if (*p == '/') {
        p++;
        if (posix_hms(&p, &d->secs))
            return -1;
    }
    *pp = p;
    return 0;
}

/* The footer: "STDoff[DST[off][,start[/time],end[/time]]]". 0 on success. */
static int posix_parse(const char *s, struct tz *z)
{
    const char *p = s;
    int32_t v;
    if (posix_name(&p) || posix_hms(&p, &v))
        return -1;
    z->std_off = -v;
    z->has_rule = 1;
    if (!*p)
        return 0;
    if (posix_name(&p))
        return -1;
    z->has_dst = 1;
    z->dst_off = z->std_off + 3600;
    if (*p && *p != ',') {
        if (posix_hms(&p, &v))
            return -1;
        z->dst_off = -v;
    }
    if (!*p) { /* no rule: the US one, as glibc does */
        z->start = (struct tz_date){'M', 3, 2, 0, 7200};
        z->end = (struct tz_date){'M', 11, 1, 0, 7200};
        return 0;
    }
    if (*p++ != ',' || posix_date(&p, &z->start) || *p++ != ',' || posix_date(&p, &z->end) ||
        *p)
        return -1;
    return 0;
}

/* Days since the epoch of a rule date in year y. */
static int64_t rule_day(const struct tz_date *d, int64_t y)
{
    int64_t jan1 = days_from_civil(y, 1, 1);
    if (d->kind == 'J')
        return jan1 + d->a - 1 + (is_leap(y) && d->a >= 60);
    if (d->kind == 'D')
        return jan1 + d->a;
    {
        int64_t first = days_from_civil(y, d->a, 1);
        int wd = (int)((first % 7 + 11) % 7), day = 1 + (d->c - wd + 7) % 7 + (d->b - 1) * 7;
        while (day > days_in_month(y, d->a))
            day -= 7;
        return first + day - 1;
    }
}

static int32_t rule_off(const struct tz *z, int64_t t)
{
    int64_t y, s, e;
    int m, d;
    if (!z->has_dst)
        return z->std_off;
    civil_from_days(floor_div(t + z->std_off, 86400), &y, &m, &d);
    s = rule_day(&z->start, y) * 86400 + z->start.secs - z->std_off;
    e = rule_day(&z->end, y) * 86400 + z->end.secs - z->dst_off;
    if (s < e)
        return t >= s && t < e ? z->dst_off : z->std_off;
    return t >= e && t < s ? z->std_off : z->dst_off; /* southern hemisphere */
}

/* UTC offset (seconds east) in effect at instant t. */
static int32_t tz_off(const struct tz *z, int64_t t)
{
    size_t lo, hi;
    if (!z)
        return 0;
    if (z->n == 0 || t < z->trans[0]) {
        if (z->n == 0 && z->has_rule)
            return rule_off(z, t);
        return z->offs[0];
    }
    if (t >= z->trans[z->n - 1] && z->has_rule)
        return rule_off(z, t);
    lo = 0, hi = z->n; /* the last transition <= t */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->trans[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return z->offs[z->idx[lo]];
}

/* Parses a TZif image. NULL when it is not a valid one. */
static struct tz *tz_parse(const uint8_t *b, size_t len)
{
    const uint8_t *p = b, *end = b + len;
    uint32_t cnt[6];
    size_t tsize = 4, need, i;
    struct tz *z;
    int pass;
    for (pass = 0;; pass++) {
        if ((size_t)(end - p) < 44 || memcmp(p, "TZif", 4) != 0)
            return NULL;
        for (i = 0; i < 6; i++)
            cnt[i] = be32(p + 20 + 4 * i);
        /* isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt */
        if (cnt[3] > TZ_MAX_TRANS || cnt[4] == 0 || cnt[4] > TZ_MAX_TYPES || cnt[5] > 65536 ||
            cnt[2] > 65536 || cnt[0] > cnt[4] || cnt[1] > cnt[4])
            return NULL;
        need = cnt[3] * tsize + cnt[3] + cnt[4] * 6 + cnt[5] + cnt[2] * (tsize + 4) + cnt[1] +
               cnt[0];
        if ((size_t)(end - p - 44) < need)
            return NULL;
        if (pass == 0 && p[4] >= '2') {
            p += 44 + need; /* skip the 32-bit block */
            tsize = 8;
            continue;
        }
        break;
    }
    z = calloc(1, sizeof *z);
    if (!z)
        return NULL;
    z->n = cnt[3];
    z->ntypes = cnt[4];
    z->trans = malloc((z->n ? z->n : 1) * sizeof *z->trans);
    z->idx = malloc(z->n ? z->n : 1);
    z->offs = malloc(z->ntypes * sizeof *z->offs);
    if (!z->trans || !z->idx || !z->offs) {
        tz_free(z);
        return NULL;
    }
    p += 44;
    for (i = 0; i < z->n; i++, p += tsize) {
        z->trans[i] = tsize == 8 ? be64(p) : (int64_t)(int32_t)be32(p);
        if (i && z->trans[i] <= z->trans[i - 1]) {
            tz_free(z);
            return NULL;
        }
    }
    for (i = 0; i < z->n; i++, p++) {
        if (*p >= z->ntypes) {
            tz_free(z);
            return NULL;
        }
        z->idx[i] = *p;
    }
    for (i = 0; i < z->ntypes; i++, p += 6) {
        int32_t off = (int32_t)be32(p);
        if (off < -25 * 3600 || off > 26 * 3600) {
            tz_free(z);
            return NULL;
        }
        z->offs[i] = off;
    }
    p += cnt[5] + cnt[2] * (tsize + 4) + cnt[1] + cnt[0];
    if (tsize == 8 && p < end && *p == '\n') {
        const uint8_t *nl = memchr(p + 1, '\n', (size_t)(end - p - 1));
        char footer[256];
        size_t fl = nl ? (size_t)(nl - p - 1) : 0;
        if (nl && fl > 0 && fl < sizeof footer) {
            memcpy(footer, p + 1, fl);
            footer[fl] = 0;
            if (memchr(footer, 0, fl) || posix_parse(footer, z) != 0) {
                tz_free(z);
                return NULL;
            }
            if (z->std_off < -25 * 3600 || z->std_off > 26 * 3600 ||
                (z->has_dst && (z->dst_off < -25 * 3600 || z->dst_off > 26 * 3600))) {
                tz_free(z);
                return NULL;
            }
        }
    }
    return z;
}

static struct tz *tz_load(const char *name, cairn_err *err)
{
    const char *dir = getenv("TZDIR");
    char path[4096];
    uint8_t *buf;
    size_t n;
    FILE *f;
    struct tz *z;
    if (!dir || !*dir)
        dir = "/usr/share/zoneinfo";
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return NULL;
    f = fopen(path, "rb");
    if (!f) {
        cairn_error(err, CAIRN_FAILED,
                    "time zone '%s' is not in the tz database (use an IANA name like "
                    "Europe/Berlin or America/New_York; is tzdata installed?)",
                    name);
        return NULL;
    }
    buf = malloc(TZ_FILE_MAX);
    if (!buf) {
        fclose(f);
        cairn_error(err, CAIRN_FATAL, "out of memory");
        return NULL;
    }
    n = fread(buf, 1, TZ_FILE_MAX, f);
    fclose(f);
    if (n >= 44 && memcmp(buf, "TZif", 4) == 0 && be32(buf + 28) != 0) {
        free(buf);
        cairn_error(err, CAIRN_FAILED,
                    "time zone '%s' counts leap seconds (a right/ zone), which schedules do "
                    "not support: use the zone without the right/ prefix",
                    name);
        return NULL;
    }
    z = tz_parse(buf, n);
    free(buf);
    if (!z) {
        cairn_error(err, CAIRN_FAILED, "time zone file '%s' is not a valid TZif file", path);
        return NULL;
    }
    snprintf(z->name, sizeof z->name, "%s", name);
    return z;
}

/* The zone, from the cache or loaded (and cached while there is room).
 * *owned = 1 when the caller must tz_free() it. NULL for UTC (not an error)
 * or on error (err set). */
static struct tz *tz_get(const char *name, int *owned, cairn_err *err)
{
    struct tz *z;
    size_t i;
    *owned = 0;
    cairn_err_clear(err);
    if (zone_is_utc(name))
        return NULL;
    if (!zone_name_ok(name, strlen(name))) {
        cairn_error(err, CAIRN_FAILED, "time zone '%.64s' is not a valid zone name", name);
        return NULL;
    }
    pthread_mutex_lock(&tz_lock);
    for (i = 0; i < TZ_CACHE && tz_cache[i]; i++)
        if (strcmp(tz_cache[i]->name, name) == 0) {
            z = tz_cache[i];
            pthread_mutex_unlock(&tz_lock);
            return z;
        }
    z = tz_load(name, err);
    if (z) {
        if (i < TZ_CACHE)
            tz_cache[i] = z;
        else
            *owned = 1;
    }
    pthread_mutex_unlock(&tz_lock);
    return z;
}

int cairn_tz_offset(const char *zone, int64_t t, int32_t *off, cairn_err *err)
{
    int owned;
    struct tz *z = tz_get(zone ? zone : "", &owned, err);
    if (!z && err && err->code != CAIRN_OK)
        return err->code;
    if (!z && !zone_is_utc(zone ? zone : ""))
        return CAIRN_FAILED;
    *off = tz_off(z, t);
    if (owned)
        tz_free(z);
    return CAIRN_OK;
}

int cairn_tz_image_offset(const void *buf, size_t len, int64_t t, int32_t *off)
{
    struct tz *z = tz_parse(buf, len);
    if (!z)
        return CAIRN_CORRUPT;
    *off = tz_off(z, t);
    tz_free(z);
    return CAIRN_OK;
}

struct zone {
    struct tz *tz; /* NULL = UTC */
    int owned;
};

static int zone_enter(struct zone *z, const char *name, cairn_err *err)
{
    cairn_err e;
    z->tz = tz_get(name, &z->owned, &e);
    if (!z->tz && !zone_is_utc(name))
        return cairn_error(err, e.code ? e.code : CAIRN_FAILED, "%s", e.msg);
    return CAIRN_OK;
}

static void zone_leave(struct zone *z)
{
    if (z->owned)
        tz_free(z->tz);
    z->tz = NULL;
}

static int64_t zone_off(const struct zone *z, int64_t t)
{
    return tz_off(z->tz, t);
}

/* The instants at which wall-clock time L (local seconds) occurs: n = 2 in an
 * autumn overlap (inst[0] < inst[1]), 1 normally, 0 in a spring gap, where
 * *gap_end is the first instant after the gap. *quiet = 1 when no offset
 * change lies within a day either side. */
static int wall_instants(const struct zone *z, int64_t L, int64_t inst[2], int64_t *gap_end,
                         int *quiet)
{
    int64_t oa = zone_off(z, L - 86400), ob = zone_off(z, L + 86400);
    int64_t ta = L - oa, tb = L - ob;
    int va = zone_off(z, ta) == oa, vb = zone_off(z, tb) == ob;
    *quiet = oa == ob;
    if (oa == ob) {
        inst[0] = ta;
        return 1;
    }
    if (va && vb) {
        inst[0] = ta < tb ? ta : tb;
        inst[1] = ta < tb ? tb : ta;
        return 2;
    }
    if (va) {
        inst[0] = ta;
        return 1;
    }
    if (vb) {
        inst[0] = tb;
        return 1;
    }
    {
        /* gap: the offset changes from oa to ob somewhere in (lo, hi] */
        int64_t lo = ta < tb ? ta : tb, hi = ta < tb ? tb : ta;
        while (hi - lo > 1) {
            int64_t mid = lo + (hi - lo) / 2;
            if (zone_off(z, mid) == oa)
                lo = mid;
            else
                hi = mid;
        }
        *gap_end = hi;
    }
    return 0;
}

#define DST_WINDOW 10800 /* Vixie cron: clock changes under 3 hours are DST */
#define MAX_STEPS 200000

int cairn_cron_next(const struct cairn_cron *c, int64_t after_s, int64_t *next_s,
                    cairn_err *err)
{
    struct zone z;
    int64_t L, best = 0, best_wall = 0, limit_y, y;
    int have = 0, rc, m, d, steps = 0;
    int fixed = !(c->flags & (CAIRN_CRON_MIN_STAR | CAIRN_CRON_HOUR_STAR));
    /* Keep the arithmetic far from overflow: years 1..9999 only. */
    if (after_s < -62135596800LL || after_s > 253402300799LL - 86400LL * 366 * 31)
        return cairn_error(err, CAIRN_FAILED, "time %lld is outside the years 1-9968",
                           (long long)after_s);
    if (!c->minutes || !c->hours || !c->doms || !c->months || !c->dows)
        return cairn_error(err, CAIRN_FAILED, "schedule is empty (not parsed?)");
    rc = zone_enter(&z, c->tz, err);
    if (rc != CAIRN_OK)
        return rc;
    {
        int64_t o1 = zone_off(&z, after_s - 86400), o2 = zone_off(&z, after_s + 86400);
        L = floor_div(after_s + zone_off(&z, after_s), 60) * 60;
        /* Near an offset change, wall times before "now" may still occur
         * later (the autumn overlap): look back one DST window. */
        if (o1 != o2)
            L -= DST_WINDOW;
    }
    civil_from_days(floor_div(L, 86400), &y, &m, &d);
    limit_y = y + CAIRN_CRON_SEARCH_YEARS;
    for (;;) {
        int64_t inst[2], gap_end = 0, W;
        int n, i, quiet;
        if (++steps > MAX_STEPS || next_wall(c, L, limit_y, &W) != 0)
            break;
        if (have && W > best_wall + DST_WINDOW)
            break;
        n = wall_instants(&z, W, inst, &gap_end, &quiet);
        if (n == 0 && fixed) {
            inst[0] = gap_end;
            n = 1;
        }
        if (n == 2 && fixed)
            n = 1; /* the repeated hour: a fixed-time job runs at the first pass only */
        for (i = 0; i < n; i++) {
            if (inst[i] > after_s && (!have || inst[i] < best)) {
                best = inst[i];
                best_wall = W;
                have = 1;
            }
        }
        if (have && quiet)
            break;
        L = W + 60;
    }
    zone_leave(&z);
    if (!have)
        return cairn_error(err, CAIRN_NOTFOUND,
                           "schedule does not run within %d years", CAIRN_CRON_SEARCH_YEARS);
    *next_s = best;
    return CAIRN_OK;
}

int cairn_cron_due(const struct cairn_cron *c, int64_t last_run_s, int64_t now_s,
                   int64_t *due_at, cairn_err *err)
{
    /* Windows to look back from now, smallest first, so the walk to the
     * latest missed time is short whatever the gap since last_run. */
    static const int64_t windows[] = {3600, 6 * 3600, 86400, 7 * 86400, 32 * 86400,
                                      366 * 86400, 5 * 366 * 86400LL,
                                      (int64_t)CAIRN_CRON_SEARCH_YEARS * 366 * 86400};
    int64_t t, nt;
    size_t i;
    int rc;
    *due_at = 0;
    if (now_s <= last_run_s) {
        rc = cairn_cron_next(c, now_s, &t, err);
        if (rc == CAIRN_OK)
            *due_at = t;
        return rc == CAIRN_OK || rc == CAIRN_NOTFOUND ? 0 : rc;
    }
    for (i = 0; i < sizeof windows / sizeof windows[0]; i++) {
        int64_t from = now_s - windows[i];
        int steps = 0;
        if (from < last_run_s)
            from = last_run_s;
        rc = cairn_cron_next(c, from, &t, err);
        if (rc == CAIRN_NOTFOUND || (rc == CAIRN_OK && t > now_s)) {
            if (from == last_run_s)
                break; /* nothing in (last_run, now] */
            continue;
        }
        if (rc != CAIRN_OK)
            return rc;
        /* t is in (from, now]: walk forward to the latest one */
        for (;;) {
            rc = cairn_cron_next(c, t, &nt, err);
            if (rc == CAIRN_NOTFOUND || (rc == CAIRN_OK && nt > now_s))
                break;
            if (rc != CAIRN_OK)
                return rc;
            t = nt;
            if (++steps > 600000)
                return cairn_error(err, CAIRN_FAILED, "missed-run search did not end");
        }
        *due_at = t;
        return 1;
    }
    rc = cairn_cron_next(c, now_s, &t, err);
    if (rc == CAIRN_OK)
        *due_at = t;
    else if (rc != CAIRN_NOTFOUND)
        return rc;
    return 0;
}

int64_t cairn_jitter(const char *key, int64_t max_s)
{
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *p = (const unsigned char *)key;
    if (!key || max_s <= 0)
        return 0;
    for (; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    /* splitmix64 finaliser: spreads near-identical keys ("ns/pvc-1", "ns/pvc-2") */
    h += 0x9e3779b97f4a7c15ULL;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return (int64_t)(h % (uint64_t)max_s);
}

/* engine/policy.c — see policy.h. */
#define _GNU_SOURCE
#include "policy.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS 1000000000LL
#define MAX_DURATION_S (1000LL * 365 * 86400) /* a thousand years */

/* ---- parsing ---- */

static const char *skip_blank(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

int cairn_parse_count(const char *text, int *count, cairn_err *err)
{
    const char *p = text;
    long long v = 0;
    if (strcmp(text, "unlimited") == 0) {
        *count = CAIRN_POLICY_UNLIMITED;
        return CAIRN_OK;
    }
    if (!*p)
        return cairn_error(err, CAIRN_FAILED,
                           "'' is not a count (a whole number, or 'unlimited')");
    for (; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return cairn_error(err, CAIRN_FAILED,
                               "'%s' is not a count (a whole number, or 'unlimited')", text);
        v = v * 10 + (*p - '0');
        if (v > CAIRN_POLICY_MAX_COUNT)
            return cairn_error(err, CAIRN_FAILED, "count '%s' is larger than %d", text,
                               CAIRN_POLICY_MAX_COUNT);
    }
    *count = (int)v;
    return CAIRN_OK;
}

int cairn_parse_duration(const char *text, int64_t *seconds, cairn_err *err)
{
    const char *p = text;
    int64_t total = 0;
    if (strcmp(text, "0") == 0) {
        *seconds = 0;
        return CAIRN_OK;
    }
    if (!*p)
        return cairn_error(err, CAIRN_FAILED,
                           "'' is not a duration (e.g. 30m, 12h, 7d, 2w, 1y or 1d12h)");
    while (*p) {
        int64_t v = 0, unit;
        const char *start = p;
        if (!isdigit((unsigned char)*p))
            return cairn_error(err, CAIRN_FAILED,
                               "'%s' is not a duration (e.g. 30m, 12h, 7d, 2w, 1y or 1d12h)",
                               text);
        while (isdigit((unsigned char)*p)) {
            v = v * 10 + (*p - '0');
            if (v > MAX_DURATION_S)
                return cairn_error(err, CAIRN_FAILED, "duration '%s' is too long", text);
            p++;
        }
        switch (*p) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        case 'w': unit = 7 * 86400; break;
        case 'y': unit = 365 * 86400; break;
        case 0:
            return cairn_error(err, CAIRN_FAILED,
                               "duration '%s': '%s' needs a unit (s, m, h, d, w or y), e.g. %sd",
                               text, start, start);
        default:
            return cairn_error(err, CAIRN_FAILED,
                               "duration '%s': unknown unit '%c' (use s, m, h, d, w or y; "
                               "m is minutes)",
                               text, *p);
        }
        p++;
        if (v > MAX_DURATION_S / unit || total + v * unit > MAX_DURATION_S)
            return cairn_error(err, CAIRN_FAILED, "duration '%s' is too long", text);
        total += v * unit;
    }
    *seconds = total;
    return CAIRN_OK;
}

void cairn_format_duration(int64_t s, char *out, size_t outlen)
{
    static const struct {
        int64_t n;
        char u;
    } units[] = {{365 * 86400, 'y'}, {86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
    size_t i, used = 0;
    if (outlen == 0)
        return;
    out[0] = 0;
    if (s <= 0) {
        snprintf(out, outlen, "0");
        return;
    }
    for (i = 0; i < sizeof units / sizeof *units && used < outlen; i++) {
        if (s >= units[i].n) {
            int w = snprintf(out + used, outlen - used, "%lld%c",
                             (long long)(s / units[i].n), units[i].u);
            if (w < 0)
                break;
            used += (size_t)w;
            s %= units[i].n;
        }
    }
}

int cairn_policy_add_tag(struct cairn_policy *p, const char *tag, cairn_err *err)
{
    char **v, *t;
    size_t i;
    if (!*tag)
        return cairn_error(err, CAIRN_FAILED, "a keep tag cannot be empty");
    for (i = 0; i < p->n_tags; i++)
        if (strcmp(p->tags[i], tag) == 0)
            return CAIRN_OK;
    if (p->n_tags >= CAIRN_POLICY_MAX_TAGS)
        return cairn_error(err, CAIRN_FAILED, "more than %d keep tags", CAIRN_POLICY_MAX_TAGS);
    v = realloc(p->tags, (p->n_tags + 1) * sizeof *v);
    if (!v)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    p->tags = v;
    t = strdup(tag);
    if (!t)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    p->tags[p->n_tags++] = t;
    return CAIRN_OK;
}

void cairn_policy_clear(struct cairn_policy *p)
{
    size_t i;
    if (!p)
        return;
    for (i = 0; i < p->n_tags; i++)
        free(p->tags[i]);
    free(p->tags);
    memset(p, 0, sizeof *p);
}

int cairn_policy_has_rules(const struct cairn_policy *p)
{
    return p->last || p->hourly || p->daily || p->weekly || p->monthly || p->yearly ||
           p->within_s > 0;
}

int cairn_policy_is_empty(const struct cairn_policy *p)
{
    return !cairn_policy_has_rules(p) && p->n_tags == 0;
}

/* One "key=value" item. seen: bit per count rule already given. */
static int parse_item(struct cairn_policy *p, const char *item, unsigned *seen, cairn_err *err)
{
    static const char *const keys[] = {"last", "hourly", "daily", "weekly", "monthly",
                                       "yearly", "within", "tag"};
    const char *eq = strchr(item, '='), *val;
    char key[32];
    size_t klen, k;
    int rc;
    if (!eq)
        return cairn_error(err, CAIRN_FAILED,
                           "'%s' is not RULE=VALUE (e.g. daily=7, within=7d, tag=release)", item);
    klen = (size_t)(eq - item);
    while (klen && (item[klen - 1] == ' ' || item[klen - 1] == '\t'))
        klen--;
    if (klen >= sizeof key)
        klen = sizeof key - 1;
    memcpy(key, item, klen);
    key[klen] = 0;
    val = skip_blank(eq + 1);
    /* "keep-daily=7" is accepted too, like the command-line flags */
    if (strncmp(key, "keep-", 5) == 0)
        memmove(key, key + 5, strlen(key + 5) + 1);
    for (k = 0; k < sizeof keys / sizeof *keys; k++)
        if (strcmp(key, keys[k]) == 0)
            break;
    if (k == sizeof keys / sizeof *keys)
        return cairn_error(err, CAIRN_FAILED,
                           "unknown rule '%s' (known: last, hourly, daily, weekly, monthly, "
                           "yearly, within, tag)",
                           key);
    if (k < 7) {
        if (*seen & (1u << k))
            return cairn_error(err, CAIRN_FAILED, "rule '%s' is given twice", key);
        *seen |= 1u << k;
    }
    if (k == 6) {
        rc = cairn_parse_duration(val, &p->within_s, err);
    } else if (k == 7) {
        rc = cairn_policy_add_tag(p, val, err);
    } else {
        int *slot[] = {&p->last, &p->hourly, &p->daily, &p->weekly, &p->monthly, &p->yearly};
        rc = cairn_parse_count(val, slot[k], err);
    }
    return rc;
}

int cairn_policy_parse(const char *text, struct cairn_policy *p, cairn_err *err)
{
    char *copy, *item, *save = NULL;
    unsigned seen = 0;
    int rc = CAIRN_OK;
    memset(p, 0, sizeof *p);
    if (strlen(text) > CAIRN_POLICY_MAX_TEXT)
        return cairn_error(err, CAIRN_FAILED, "retention policy is longer than %d bytes",
                           CAIRN_POLICY_MAX_TEXT);
    copy = strdup(text);
    if (!copy)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    for (item = strtok_r(copy, ",", &save); item && rc == CAIRN_OK;
         item = strtok_r(NULL, ",", &save)) {
        char *end;
        item = (char *)skip_blank(item);
        end = item + strlen(item);
        while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = 0;
        if (!*item)
            continue;
        rc = parse_item(p, item, &seen, err);
        if (rc != CAIRN_OK)
            cairn_error_prefix(err, "retention '%s'", item);
    }
    free(copy);
    if (rc != CAIRN_OK)
        cairn_policy_clear(p);
    return rc;
}

/* ---- formatting ---- */

static void appendf(char *out, size_t outlen, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void appendf(char *out, size_t outlen, size_t *used, const char *fmt, ...)
{
    va_list ap;
    int w;
    if (*used >= outlen)
        return;
    va_start(ap, fmt);
    w = vsnprintf(out + *used, outlen - *used, fmt, ap);
    va_end(ap);
    if (w > 0)
        *used = *used + (size_t)w < outlen ? *used + (size_t)w : outlen - 1;
}

char *cairn_policy_format(const struct cairn_policy *p, char *out, size_t outlen)
{
    const char *names[] = {"last", "hourly", "daily", "weekly", "monthly", "yearly"};
    int counts[] = {p->last, p->hourly, p->daily, p->weekly, p->monthly, p->yearly};
    size_t used = 0, i;
    if (!outlen)
        return out;
    out[0] = 0;
    for (i = 0; i < 6; i++) {
        if (!counts[i])
            continue;
        if (counts[i] < 0)
            appendf(out, outlen, &used, "%s%s=unlimited", used ? "," : "", names[i]);
        else
            appendf(out, outlen, &used, "%s%s=%d", used ? "," : "", names[i], counts[i]);
    }
    if (p->within_s > 0) {
        char d[48];
        cairn_format_duration(p->within_s, d, sizeof d);
        appendf(out, outlen, &used, "%swithin=%s", used ? "," : "", d);
    }
    for (i = 0; i < p->n_tags; i++)
        appendf(out, outlen, &used, "%stag=%s", used ? "," : "", p->tags[i]);
    return out;
}

char *cairn_policy_reasons(const struct cairn_policy *p, const struct cairn_policy_result *r,
                           char *out, size_t outlen)
{
    static const char *const text[] = {
        "last snapshot",          "hourly snapshot",        "daily snapshot",
        "weekly snapshot",        "monthly snapshot",       "yearly snapshot",
        "oldest hourly snapshot", "oldest daily snapshot",  "oldest weekly snapshot",
        "oldest monthly snapshot", "oldest yearly snapshot",
    };
    size_t used = 0, i;
    if (!outlen)
        return out;
    out[0] = 0;
    if (r->reasons & CAIRN_KEEP_TAGGED)
        appendf(out, outlen, &used, "tagged '%s'", r->tag ? r->tag : CAIRN_KEEP_TAG);
    for (i = 0; i < sizeof text / sizeof *text; i++)
        if (r->reasons & (1u << i))
            appendf(out, outlen, &used, "%s%s", used ? ", " : "", text[i]);
    if (r->reasons & CAIRN_KEEP_WITHIN) {
        char d[48];
        cairn_format_duration(p->within_s, d, sizeof d);
        appendf(out, outlen, &used, "%swithin %s", used ? ", " : "", d);
    }
    return out;
}

/* ---- the policy ---- */

/* Floor division of nanoseconds into whole seconds (times before 1970 too). */
static time_t secs_of(int64_t ns)
{
    int64_t s = ns / NS;
    if (ns % NS < 0)
        s--;
    return (time_t)s;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

enum { R_LAST, R_HOURLY, R_DAILY, R_WEEKLY, R_MONTHLY, R_YEARLY, R_COUNT };

/* The bucket a time falls in for a calendar rule (UTC); equal values share a
 * bucket. ISO weeks: the week belongs to the year of its Thursday. */
static int64_t bucket(int rule, int64_t ns)
{
    time_t s = secs_of(ns);
    struct tm tm;
    switch (rule) {
    case R_HOURLY:
        return floor_div((int64_t)s, 3600);
    case R_DAILY:
        return floor_div((int64_t)s, 86400);
    case R_WEEKLY: {
        int64_t day = floor_div((int64_t)s, 86400);
        /* 1970-01-01 was a Thursday: weekday 0 = Monday */
        int64_t wday = ((day + 3) % 7 + 7) % 7;
        time_t thu = (time_t)((day - wday + 3) * 86400);
        gmtime_r(&thu, &tm);
        return (int64_t)(tm.tm_year + 1900) * 100 + tm.tm_yday / 7 + 1;
    }
    case R_MONTHLY:
        gmtime_r(&s, &tm);
        return (int64_t)(tm.tm_year + 1900) * 12 + tm.tm_mon;
    case R_YEARLY:
        gmtime_r(&s, &tm);
        return tm.tm_year + 1900;
    default:
        return 0;
    }
}

/* Newest first; equal times by id (descending), then input order. */
static int newer(const struct cairn_policy_snap *snaps, size_t i, size_t j)
{
    const struct cairn_policy_snap *x = &snaps[i], *y = &snaps[j];
    if (x->time_ns != y->time_ns)
        return x->time_ns > y->time_ns;
    if (x->id && y->id) {
        int c = strcmp(x->id, y->id);
        if (c)
            return c > 0;
    }
    return i < j;
}

/* A stable bottom-up merge sort of index arrays (qsort has no context
 * argument in C11, and a file-scope one would make apply non-reentrant). */
static void sort_newest_first(const struct cairn_policy_snap *snaps, size_t *v, size_t *tmp,
                              size_t n)
{
    size_t width, i;
    for (width = 1; width < n; width *= 2) {
        for (i = 0; i < n; i += 2 * width) {
            size_t lo = i, mid = i + width < n ? i + width : n,
                   hi = i + 2 * width < n ? i + 2 * width : n, a = lo, b = mid, o = lo;
            while (a < mid && b < hi)
                tmp[o++] = newer(snaps, v[b], v[a]) ? v[b++] : v[a++];
            while (a < mid)
                tmp[o++] = v[a++];
            while (b < hi)
                tmp[o++] = v[b++];
        }
        memcpy(v, tmp, n * sizeof *v);
    }
}

static const char *keep_tag_of(const struct cairn_policy *p, const struct cairn_policy_snap *s)
{
    size_t i, k;
    for (i = 0; i < s->n_tags; i++) {
        if (!s->tags[i])
            continue;
        if (strcmp(s->tags[i], CAIRN_KEEP_TAG) == 0)
            return s->tags[i];
        for (k = 0; k < p->n_tags; k++)
            if (strcmp(s->tags[i], p->tags[k]) == 0)
                return s->tags[i];
    }
    return NULL;
}

int cairn_policy_apply(const struct cairn_policy *p, const struct cairn_policy_snap *snaps,
                       size_t n, int64_t now_ns, struct cairn_policy_result *out, cairn_err *err)
{
    size_t *order, k;
    int counts[R_COUNT] = {p->last, p->hourly, p->daily, p->weekly, p->monthly, p->yearly};
    int64_t lastval[R_COUNT];
    int have_last[R_COUNT] = {0};
    int64_t newest = INT64_MIN, within_from = INT64_MIN;
    int r;
    if (n == 0)
        return CAIRN_OK;
    order = malloc(2 * n * sizeof *order);
    if (!order)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    for (k = 0; k < n; k++) {
        order[k] = k;
        out[k].keep = 0;
        out[k].reasons = 0;
        out[k].tag = NULL;
    }
    sort_newest_first(snaps, order, order + n, n);

    /* the newest snapshot that is not in the future */
    for (k = 0; k < n; k++)
        if (snaps[k].time_ns <= now_ns && snaps[k].time_ns > newest)
            newest = snaps[k].time_ns;
    if (newest == INT64_MIN)
        newest = snaps[order[0]].time_ns;
    if (p->within_s > 0)
        within_from = newest - p->within_s * NS;

    for (k = 0; k < n; k++) {
        size_t i = order[k];
        struct cairn_policy_result *o = &out[i];
        const char *tag = keep_tag_of(p, &snaps[i]);
        if (tag) {
            o->reasons |= CAIRN_KEEP_TAGGED;
            o->tag = tag;
        }
        if (p->within_s > 0 && snaps[i].time_ns > within_from)
            o->reasons |= CAIRN_KEEP_WITHIN;
        for (r = 0; r < R_COUNT; r++) {
            int64_t v;
            if (counts[r] == 0)
                continue;
            v = r == R_LAST ? (int64_t)k : bucket(r, snaps[i].time_ns);
            if (!have_last[r] || v != lastval[r]) {
                o->reasons |= 1u << r;
                lastval[r] = v;
                have_last[r] = 1;
                if (counts[r] > 0)
                    counts[r]--;
            } else if (k == n - 1 && r != R_LAST) {
                /* counts left at the oldest snapshot: keep it as well */
                o->reasons |= CAIRN_KEEP_OLDEST_HOURLY << (r - R_HOURLY);
            }
        }
        o->keep = o->reasons != 0;
    }
    free(order);
    return CAIRN_OK;
}

/* Fuzz target: cron schedule parser and next-run search (agent/cron.c), and
 * the TZif reader behind CRON_TZ=.
 * Input: the schedule text; the last 8 bytes after a NUL, if present, pick
 * the start time. Checks: next() ends, is strictly later, fires on a minute,
 * matches the fields in UTC schedules; due() agrees with next().
 * An input starting with "TZif" is a zone file instead: parsed, then asked
 * for offsets at a spread of instants (offsets must stay within +-26 h). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../agent/cron.h"

static int matches_utc(const struct cairn_cron *c, int64_t t)
{
    struct tm tm;
    time_t tt = (time_t)t;
    int dom, dow;
    if (!gmtime_r(&tt, &tm))
        return 0;
    dom = (c->doms >> tm.tm_mday) & 1;
    dow = (c->dows >> tm.tm_wday) & 1;
    return ((c->minutes >> tm.tm_min) & 1) && ((c->hours >> tm.tm_hour) & 1) &&
           ((c->months >> (tm.tm_mon + 1)) & 1) &&
           ((c->flags & (CAIRN_CRON_DOM_STAR | CAIRN_CRON_DOW_STAR)) ? dom && dow : dom || dow);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    char text[600];
    struct cairn_cron c;
    cairn_err err;
    int64_t after = 1795294901, next, at;
    size_t len;
    if (n >= 4 && memcmp(d, "TZif", 4) == 0) {
        int64_t t;
        int32_t off;
        for (t = -4102444800LL; t < 7258118400LL; t += 86400LL * 97 + 3541) {
            if (cairn_tz_image_offset(d, n, t, &off) != CAIRN_OK)
                return 0;
            if (off < -26 * 3600 || off > 26 * 3600)
                __builtin_trap();
        }
        return 0;
    }
    len = strnlen((const char *)d, n < sizeof text - 1 ? n : sizeof text - 1);
    memcpy(text, d, len);
    text[len] = 0;
    if (len + 1 + 8 <= n) {
        uint64_t v = 0;
        memcpy(&v, d + len + 1, 8);
        after = (int64_t)(v % (4102444800ULL)); /* 1970..2100 */
    }
    if (cairn_cron_parse(text, &c, &err) != CAIRN_OK)
        return 0;
    if (cairn_cron_next(&c, after, &next, &err) == CAIRN_OK) {
        if (next <= after || (c.tz[0] == 0 && next % 60 != 0))
            __builtin_trap();
        if (c.tz[0] == 0 && !matches_utc(&c, next))
            __builtin_trap();
        if (cairn_cron_due(&c, after, next, &at, &err) != 1 || at != next)
            __builtin_trap(); /* the only run in (after, next] is next */
        if (cairn_cron_due(&c, after, next - 1, &at, &err) != 0)
            __builtin_trap();
    }
    if (cairn_jitter(text, 600) < 0 || cairn_jitter(text, 600) >= 600)
        __builtin_trap();
    return 0;
}

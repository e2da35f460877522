/* tests/unit/test_cron.c — agent/cron.c: schedule parsing and next-run times
 * against a table of known answers (written with explicit UTC offsets, so
 * each row can be checked by hand or with `TZ=Europe/Berlin date -d @N`),
 * including the 2026 DST changes in Europe/Berlin (29 Mar 02:00 -> 03:00,
 * 25 Oct 03:00 -> 02:00) and America/New_York (8 Mar 02:00 -> 03:00, 1 Nov
 * 02:00 -> 01:00) under Vixie cron's rules (cron.h); leap days; Sunday as 0
 * and 7; the day-of-month/day-of-week either-rule; steps; macros; a brute-force
 * cross-check minute by minute; jitter; missed runs; and bad inputs. */
#define _GNU_SOURCE
#include "../../agent/cron.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static int64_t T(const char *s)
{
    int64_t ns = 0;
    if (cairn_parse_time(s, &ns) != CAIRN_OK) {
        fprintf(stderr, "FAIL: bad time in table: '%s'\n", s);
        failures++;
    }
    return ns / 1000000000;
}

static const char *utc(int64_t t, char *out)
{
    cairn_format_time(t * 1000000000, out, 48);
    return out;
}

/* ---- known answers: from `after`, the successive next runs ---- */

struct next_row {
    const char *sched;
    const char *after;
    const char *want[4]; /* successive next() results; NULL ends */
};

static const struct next_row next_rows[] = {
    /* UTC basics */
    {"0 */6 * * *", "2026-11-21T22:05:15Z",
     {"2026-11-22T00:00:00Z", "2026-11-22T06:00:00Z", "2026-11-22T12:00:00Z", NULL}},
    {"*/15 * * * *", "2026-11-21T22:05:15Z",
     {"2026-11-21T22:15:00Z", "2026-11-21T22:30:00Z", "2026-11-21T22:45:00Z",
      "2026-11-21T23:00:00Z"}},
    /* strictly after: a run exactly at `after` is not returned again */
    {"*/15 * * * *", "2026-11-21T22:15:00Z", {"2026-11-21T22:30:00Z", NULL}},
    {"1-10/3 * * * *", "2026-11-21T10:10:00Z",
     {"2026-11-21T11:01:00Z", "2026-11-21T11:04:00Z", "2026-11-21T11:07:00Z",
      "2026-11-21T11:10:00Z"}},
    {"5/20 * * * *", "2026-11-21T10:00:00Z",
     {"2026-11-21T10:05:00Z", "2026-11-21T10:25:00Z", "2026-11-21T10:45:00Z",
      "2026-11-21T11:05:00Z"}},
    {"0 9 * jan-mar mon-fri", "2026-11-21T10:00:00Z",
     {"2027-01-01T09:00:00Z", "2027-01-04T09:00:00Z", NULL}},
    {"30 4 1,15 * *", "2026-11-21T00:00:00Z",
     {"2026-12-01T04:30:00Z", "2026-12-15T04:30:00Z", "2027-01-01T04:30:00Z", NULL}},
    {"0 0 31 * *", "2026-11-21T00:00:00Z",
     {"2026-12-31T00:00:00Z", "2027-01-31T00:00:00Z", "2027-03-31T00:00:00Z", NULL}},
    /* Sunday as 0, 7 and sun; 2026-11-21 is a Saturday */
    {"0 12 * * 0", "2026-11-21T00:00:00Z", {"2026-11-22T12:00:00Z", "2026-11-29T12:00:00Z", NULL}},
    {"0 12 * * 7", "2026-11-21T00:00:00Z", {"2026-11-22T12:00:00Z", "2026-11-29T12:00:00Z", NULL}},
    {"0 12 * * SUN", "2026-11-21T00:00:00Z", {"2026-11-22T12:00:00Z", NULL}},
    {"0 12 * * 5-7", "2026-11-21T00:00:00Z", {"2026-11-21T12:00:00Z", "2026-11-22T12:00:00Z",
                                              "2026-11-27T12:00:00Z", NULL}},
    /* both day fields restricted: either matches (1st of the month OR Monday) */
    {"0 0 1 * mon", "2026-11-21T00:00:00Z",
     {"2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z",
      "2026-12-07T00:00:00Z"}},
    /* day-of-week is '*'-led: both must match (odd days that are Mondays) */
    {"0 0 */2 * 1", "2026-11-21T00:00:00Z",
     {"2026-11-23T00:00:00Z", "2026-12-07T00:00:00Z", "2026-12-21T00:00:00Z", NULL}},
    /* leap days */
    {"0 0 29 2 *", "2026-01-01T00:00:00Z", {"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z", NULL}},
    {"0 0 29 2 */7", "2026-01-01T00:00:00Z", {"2032-02-29T00:00:00Z", "2060-02-29T00:00:00Z", NULL}},
    {"0 0 * 2 *", "2028-02-28T12:00:00Z", {"2028-02-29T00:00:00Z", "2029-02-01T00:00:00Z", NULL}},
    /* macros */
    {"@hourly", "2026-11-21T22:05:15Z", {"2026-11-21T23:00:00Z", "2026-11-22T00:00:00Z", NULL}},
    {"@daily", "2026-11-21T22:05:15Z", {"2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z", NULL}},
    {"@midnight", "2026-11-21T22:05:15Z", {"2026-11-22T00:00:00Z", NULL}},
    {"@weekly", "2026-11-21T22:05:15Z", {"2026-11-22T00:00:00Z", "2026-11-29T00:00:00Z", NULL}},
    {"@monthly", "2026-11-21T22:05:15Z", {"2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z", NULL}},
    {"@yearly", "2026-11-21T22:05:15Z", {"2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z", NULL}},
    {"@annually", "2026-11-21T22:05:15Z", {"2027-01-01T00:00:00Z", NULL}},
    {"CRON_TZ=UTC @daily", "2026-11-21T22:05:15Z", {"2026-11-22T00:00:00Z", NULL}},
    {"  0\t2 * * *  ", "2026-11-21T22:05:15Z", {"2026-11-22T02:00:00Z", NULL}},

    /* ---- Europe/Berlin ---- */
    {"CRON_TZ=Europe/Berlin @daily", "2026-07-01T00:00:00+02:00",
     {"2026-07-02T00:00:00+02:00", NULL}},
    {"CRON_TZ=Europe/Berlin 0 9 * * *", "2026-11-21T12:00:00Z",
     {"2026-11-22T09:00:00+01:00", NULL}},
    /* spring: 02:30 does not exist on 29 Mar; a fixed-time job runs at the end
     * of the gap (03:00 CEST), once, then at 02:30 again the next day */
    {"CRON_TZ=Europe/Berlin 30 2 * * *", "2026-03-28T12:00:00+01:00",
     {"2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00", NULL}},
    {"CRON_TZ=Europe/Berlin 0,30 2 * * *", "2026-03-28T12:00:00+01:00",
     {"2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00", NULL}},
    /* a fixed time just after the gap is unaffected */
    {"CRON_TZ=Europe/Berlin 30 3 * * *", "2026-03-28T12:00:00+01:00",
     {"2026-03-29T03:30:00+02:00", "2026-03-30T03:30:00+02:00", NULL}},
    /* wildcard jobs skip the times that do not exist */
    {"CRON_TZ=Europe/Berlin 30 * * * *", "2026-03-29T01:45:00+01:00",
     {"2026-03-29T03:30:00+02:00", "2026-03-29T04:30:00+02:00", NULL}},
    {"CRON_TZ=Europe/Berlin */15 * * * *", "2026-03-29T01:50:00+01:00",
     {"2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00", NULL}},
    /* autumn: 02:30 happens twice on 25 Oct; a fixed-time job runs once, at
     * the first pass */
    {"CRON_TZ=Europe/Berlin 30 2 * * *", "2026-10-24T12:00:00+02:00",
     {"2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", NULL}},
    {"CRON_TZ=Europe/Berlin 30 2 * * *", "2026-10-25T02:45:00+02:00",
     {"2026-10-26T02:30:00+01:00", NULL}},
    /* wildcard jobs follow the clock through both passes (hourly stays hourly) */
    {"CRON_TZ=Europe/Berlin 30 * * * *", "2026-10-25T01:40:00+02:00",
     {"2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00", "2026-10-25T03:30:00+01:00",
      NULL}},
    {"CRON_TZ=Europe/Berlin @hourly", "2026-10-25T01:30:00+02:00",
     {"2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00",
      NULL}},
    /* a weekly job on the change day itself */
    {"CRON_TZ=Europe/Berlin 15 2 * * sun", "2026-03-22T12:00:00+01:00",
     {"2026-03-29T03:00:00+02:00", "2026-04-05T02:15:00+02:00", NULL}},

    /* ---- America/New_York ---- */
    {"CRON_TZ=America/New_York 0 2 * * *", "2026-03-07T12:00:00-05:00",
     {"2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00", NULL}},
    {"CRON_TZ=America/New_York 59 2 * * *", "2026-03-07T12:00:00-05:00",
     {"2026-03-08T03:00:00-04:00", "2026-03-09T02:59:00-04:00", NULL}},
    {"CRON_TZ=America/New_York 30 1 * * *", "2026-10-31T12:00:00-04:00",
     {"2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00", NULL}},
    {"CRON_TZ=America/New_York 0 * * * *", "2026-11-01T00:30:00-04:00",
     {"2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00",
      NULL}},
    {"CRON_TZ=America/New_York */30 1 * * *", "2026-11-01T00:30:00-04:00",
     {"2026-11-01T01:00:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-01T01:00:00-05:00",
      "2026-11-01T01:30:00-05:00"}},
    {"TZ=America/New_York 0 0 * * *", "2026-11-21T12:00:00Z", {"2026-11-22T00:00:00-05:00", NULL}},
};

static void test_next_table(void)
{
    size_t i, k;
    for (i = 0; i < sizeof next_rows / sizeof next_rows[0]; i++) {
        const struct next_row *r = &next_rows[i];
        struct cairn_cron c;
        cairn_err err;
        int64_t t = T(r->after), nt;
        if (cairn_cron_parse(r->sched, &c, &err) != CAIRN_OK) {
            CHECK(0, "'%s' does not parse: %s", r->sched, err.msg);
            continue;
        }
        for (k = 0; k < 4 && r->want[k]; k++) {
            char a[48], b[48];
            int rc = cairn_cron_next(&c, t, &nt, &err);
            CHECK(rc == CAIRN_OK && nt == T(r->want[k]),
                  "'%s' after %s: got %s (rc %d), want %s", r->sched, utc(t, a),
                  rc == CAIRN_OK ? utc(nt, b) : err.msg, rc, r->want[k]);
            if (rc != CAIRN_OK)
                break;
            t = nt;
        }
    }
}

/* ---- a brute-force cross-check ----
 * Wildcard schedules in any zone, and every schedule in UTC, run exactly at
 * the instants (whole minutes) whose local wall-clock time matches. */

static int field_match(const struct cairn_cron *c, const struct tm *tm)
{
    int dom = (c->doms >> tm->tm_mday) & 1, dow = (c->dows >> tm->tm_wday) & 1;
    int day = (c->flags & (CAIRN_CRON_DOM_STAR | CAIRN_CRON_DOW_STAR)) ? dom && dow : dom || dow;
    return ((c->minutes >> tm->tm_min) & 1) && ((c->hours >> tm->tm_hour) & 1) &&
           ((c->months >> (tm->tm_mon + 1)) & 1) && day;
}

static void brute(const char *sched, const char *from, int days)
{
    struct cairn_cron c;
    cairn_err err;
    int64_t t0 = T(from), t, next = 0;
    const char *oldtz = getenv("TZ");
    char *saved = oldtz ? strdup(oldtz) : NULL;
    int mismatches = 0;
    if (cairn_cron_parse(sched, &c, &err) != CAIRN_OK) {
        CHECK(0, "'%s': %s", sched, err.msg);
        free(saved);
        return;
    }
    /* expected instants from localtime_r in the zone */
    for (t = t0; t < t0 + (int64_t)days * 86400 && mismatches < 3; t += 60) {
        struct tm tm;
        time_t tt;
        int64_t want;
        int64_t u;
        /* the next matching instant after t, brute force */
        setenv("TZ", c.tz[0] ? c.tz : "UTC", 1);
        tzset();
        for (u = (t / 60 + 1) * 60;; u += 60) {
            tt = (time_t)u;
            localtime_r(&tt, &tm);
            if (field_match(&c, &tm))
                break;
            if (u > t + 40 * 86400)
                break;
        }
        want = u;
        if (saved)
            setenv("TZ", saved, 1);
        else
            unsetenv("TZ");
        tzset();
        if (next <= t) { /* recompute only when passed */
            if (cairn_cron_next(&c, t, &next, &err) != CAIRN_OK)
                next = -1;
        }
        if (next != want) {
            char a[48], b[48], w[48];
            CHECK(0, "brute '%s' after %s: got %s want %s", sched, utc(t, a), utc(next, b),
                  utc(want, w));
            mismatches++;
        }
        t += 7 * 60; /* step 8 minutes, not aligned with the schedules */
    }
    free(saved);
}

static void test_brute(void)
{
    brute("*/7 * * * *", "2026-03-28T20:00:00Z", 2);
    brute("*/7 * * * *", "2026-10-24T20:00:00Z", 2);
    brute("CRON_TZ=Europe/Berlin */20 * * * *", "2026-03-28T20:00:00Z", 2);
    brute("CRON_TZ=Europe/Berlin */20 * * * *", "2026-10-24T20:00:00Z", 2);
    brute("CRON_TZ=Europe/Berlin 10 * * * *", "2026-10-24T20:00:00Z", 2);
    brute("CRON_TZ=America/New_York 5,35 * * * *", "2026-03-07T20:00:00Z", 2);
    brute("CRON_TZ=America/New_York 5,35 * * * *", "2026-10-31T20:00:00Z", 2);
    brute("CRON_TZ=America/New_York * */2 * * *", "2026-10-31T22:00:00Z", 1);
    brute("CRON_TZ=Australia/Lord_Howe 15,45 * * * *", "2026-04-04T10:00:00Z", 2);
    brute("CRON_TZ=Europe/Berlin */20 * * * *", "2045-03-25T20:00:00Z", 2);
    brute("CRON_TZ=Australia/Sydney 0,30 * * * *", "2045-04-01T10:00:00Z", 2);
    brute("CRON_TZ=Australia/Sydney 0,30 * * * *", "2045-09-30T10:00:00Z", 2);
    brute("0 0,12 1 * mon", "2026-11-01T00:00:00Z", 40);
    brute("0 3 * * 1-5", "2026-11-01T00:00:00Z", 20);
}

/* ---- the TZif reader against glibc ----
 * cairn_tz_offset() reads the zone files itself; glibc's localtime_r() over
 * the same files is the reference: every zone below, 1900-2200 sampled, and
 * every half hour (and the second before it) of 2035-2040, where the
 * transitions listed in the files end and the POSIX footer rule takes over. */

static void test_tz_offsets(void)
{
    static const char *const zones[] = {
        "Europe/Berlin",   "America/New_York", "Australia/Sydney",  "Australia/Lord_Howe",
        "Europe/Dublin",   "America/Santiago", "Africa/Casablanca", "Pacific/Apia",
        "Asia/Tehran",     "America/Nuuk",     "Asia/Kolkata",      "America/St_Johns",
        "Pacific/Chatham", "Antarctica/Troll", "Europe/London",     "America/Sao_Paulo",
        "Pacific/Kiritimati", "Asia/Jerusalem", "Europe/Moscow",    "America/Havana",
    };
    const char *oldtz = getenv("TZ");
    char *saved = oldtz ? strdup(oldtz) : NULL;
    size_t i;
    oldtz = NULL; /* may dangle after setenv */
    for (i = 0; i < sizeof zones / sizeof zones[0]; i++) {
        int bad = 0;
        int64_t t;
        cairn_err err;
        int32_t off;
        char path[256];
        snprintf(path, sizeof path, "/usr/share/zoneinfo/%s", zones[i]);
        if (access(path, R_OK) != 0) {
            printf("test_cron: skip zone %s (not installed)\n", zones[i]);
            continue;
        }
        setenv("TZ", zones[i], 1);
        tzset();
        for (t = T("1900-01-01T00:00:00Z"); t < T("2200-01-01T00:00:00Z") && bad < 3;
             t += 3 * 86400 + 3607) {
            struct tm tm;
            time_t tt = (time_t)t;
            localtime_r(&tt, &tm);
            if (cairn_tz_offset(zones[i], t, &off, &err) != CAIRN_OK || off != tm.tm_gmtoff) {
                char a[48];
                CHECK(0, "%s at %s: offset %d, glibc %ld (%s)", zones[i], utc(t, a), off,
                      tm.tm_gmtoff, err.msg);
                bad++;
            }
        }
        for (t = T("2035-01-01T00:00:00Z"); t < T("2041-01-01T00:00:00Z") && bad < 3; t += 1800) {
            int k;
            for (k = 0; k < 2; k++) {
                struct tm tm;
                time_t tt = (time_t)(t - k);
                localtime_r(&tt, &tm);
                if (cairn_tz_offset(zones[i], t - k, &off, &err) != CAIRN_OK ||
                    off != tm.tm_gmtoff) {
                    char a[48];
                    CHECK(0, "%s at %s: offset %d, glibc %ld", zones[i], utc(t - k, a), off,
                          tm.tm_gmtoff);
                    bad++;
                }
            }
        }
    }
    /* the process's TZ is left alone by schedules in other zones */
    {
        struct cairn_cron c;
        cairn_err err;
        int64_t nt;
        setenv("TZ", "Asia/Tokyo", 1);
        cairn_cron_parse("CRON_TZ=Europe/Berlin 30 2 * * *", &c, &err);
        cairn_cron_next(&c, T("2026-03-28T12:00:00Z"), &nt, &err);
        CHECK(strcmp(getenv("TZ"), "Asia/Tokyo") == 0, "TZ untouched");
    }
    if (saved)
        setenv("TZ", saved, 1);
    else
        unsetenv("TZ");
    tzset();
    free(saved);
}

/* ---- threads: schedules in several zones computed at once ---- */

struct thread_job {
    const char *sched;
    int64_t from, sum;
    int rc;
};

static void *thread_run(void *arg)
{
    struct thread_job *j = arg;
    struct cairn_cron c;
    cairn_err err;
    int64_t t = j->from, nt;
    int i;
    j->sum = 0;
    j->rc = cairn_cron_parse(j->sched, &c, &err);
    for (i = 0; i < 2000 && j->rc == CAIRN_OK; i++) {
        j->rc = cairn_cron_next(&c, t, &nt, &err);
        j->sum += nt - t;
        t = nt;
    }
    return NULL;
}

static void test_threads(void)
{
    static const char *const scheds[] = {
        "CRON_TZ=Europe/Berlin 30 * * * *", "CRON_TZ=America/New_York 30 * * * *",
        "CRON_TZ=Australia/Sydney 30 * * * *", "30 * * * *",
        "CRON_TZ=Asia/Kolkata 30 * * * *", "CRON_TZ=America/Santiago 30 * * * *",
    };
    enum { NJ = sizeof scheds / sizeof scheds[0] };
    struct thread_job one[NJ], par[NJ];
    pthread_t th[NJ];
    int i;
    for (i = 0; i < NJ; i++) {
        one[i].sched = par[i].sched = scheds[i];
        one[i].from = par[i].from = T("2026-01-01T00:00:00Z");
        thread_run(&one[i]);
    }
    for (i = 0; i < NJ; i++)
        pthread_create(&th[i], NULL, thread_run, &par[i]);
    for (i = 0; i < NJ; i++)
        pthread_join(th[i], NULL);
    for (i = 0; i < NJ; i++)
        CHECK(par[i].rc == CAIRN_OK && par[i].sum == one[i].sum, "%s: threaded %lld vs %lld",
              scheds[i], (long long)par[i].sum, (long long)one[i].sum);
}

/* ---- bad input ---- */

struct bad_row {
    const char *sched;
    const char *want; /* substring of the message */
};

static const struct bad_row bad_rows[] = {
    {"60 * * * *", "field 1 (minute) '60': 60 is out of range 0-59"},
    {"* 24 * * *", "field 2 (hour) '24': 24 is out of range 0-23"},
    {"0 0 0 * *", "field 3 (day-of-month) '0'"},
    {"0 0 32 * *", "out of range 1-31"},
    {"0 0 * 13 *", "field 4 (month)"},
    {"0 0 * * 8", "field 5 (day-of-week) '8'"},
    {"5-1 * * * *", "range 5-1 is reversed"},
    {"* * * fri-mon *", "field 4 (month) 'fri-mon'"},
    {"* * * * fri-mon", "range 5-1 is reversed"},
    {"1,,2 * * * *", "empty list item"},
    {"1, * * * *", "empty list item"},
    {",1 * * * *", "empty list item"},
    {"1- * * * *", "range without an end"},
    {"*/0 * * * *", "step 0 is out of range"},
    {"*/ * * * *", "a step needs a number"},
    {"*/60 * * * *", "step 60 is out of range 1-59"},
    {"1-5x * * * *", "unexpected 'x'"},
    {"*-5 * * * *", "unexpected '-'"},
    {"? * * * *", "is not a value"},
    {"* * * *", "4 fields, 5 needed"},
    {"* * * * * *", "too many fields"},
    {"0 2 * * * /usr/bin/backup", "too many fields"},
    {"", "empty schedule"},
    {"   ", "empty schedule"},
    {"garbage", "1 field, 5 needed"},
    {"every day", "2 fields"},
    {"@every 5m", "unknown macro '@every'"},
    {"@reboot", "unknown macro '@reboot'"},
    {"@daily 0", "takes nothing after it"},
    {"0 0 30 2 *", "never runs"},
    {"0 0 31 4,6,9,11 *", "never runs"},
    {"0 0 30 feb */1", "never runs"},
    {"CRON_TZ=Mars/Olympus_Mons 0 0 * * *", "not in the tz database"},
    {"CRON_TZ=../../etc/passwd 0 0 * * *", "not a valid zone name"},
    {"CRON_TZ=/etc/localtime 0 0 * * *", "not a valid zone name"},
    {"CRON_TZ= 0 0 * * *", "not a valid zone name"},
    {"CRON_TZ=Europe/Berlin", "empty schedule"},
    {"CRON_TZ=Europe/Berlin/ 0 0 * * *", "not in the tz database"},
    {"CRON_TZ=Europe 0 0 * * *", "not a valid TZif file"},
    {"0 0 * * *\n", "control character"},
    {"jan * * * *", "field 1 (minute) 'jan'"},
    {"0 0 * janu *", "field 4 (month) 'janu'"},
};

static void test_bad(void)
{
    size_t i;
    char long_sched[400];
    struct cairn_cron c;
    cairn_err err;
    for (i = 0; i < sizeof bad_rows / sizeof bad_rows[0]; i++) {
        int rc = cairn_cron_parse(bad_rows[i].sched, &c, &err);
        CHECK(rc == CAIRN_FAILED && strstr(err.msg, bad_rows[i].want),
              "'%s': rc %d, message '%s', want '%s'", bad_rows[i].sched, rc,
              rc ? err.msg : "", bad_rows[i].want);
    }
    /* overlong: 257 bytes refused, even if valid otherwise; 256 accepted */
    memset(long_sched, ' ', sizeof long_sched);
    memcpy(long_sched, "0 0 * * *", 9);
    long_sched[257] = 0;
    CHECK(cairn_cron_parse(long_sched, &c, &err) == CAIRN_FAILED &&
              strstr(err.msg, "longer than 256 bytes"),
          "overlong: %s", err.msg);
    long_sched[256] = 0;
    CHECK(cairn_cron_parse(long_sched, &c, &err) == CAIRN_OK, "256 bytes: %s", err.msg);
    CHECK(cairn_cron_parse(NULL, &c, &err) == CAIRN_FAILED, "NULL");
    /* a long bad value is not copied whole into the message */
    memset(long_sched, '9', 250);
    long_sched[250] = 0;
    CHECK(cairn_cron_parse(long_sched, &c, &err) == CAIRN_FAILED && strlen(err.msg) < 600,
          "long bad field");
}

static void test_parse_details(void)
{
    struct cairn_cron a, b;
    cairn_err err;
    CHECK(cairn_cron_parse("0 12 * * 0", &a, &err) == 0 && cairn_cron_parse("0 12 * * 7", &b, &err) == 0 &&
              a.dows == b.dows && a.dows == 1,
          "0 and 7 are both Sunday");
    CHECK(cairn_cron_parse("0 12 * * 0-7", &a, &err) == 0 && a.dows == 0x7f, "0-7 is every day");
    CHECK(cairn_cron_parse("0 0 * JAN,Feb,mar * ", &a, &err) == 0 && a.months == (2 | 4 | 8),
          "month names, any case");
    CHECK(cairn_cron_parse("1-10/3 * * * *", &a, &err) == 0 &&
              a.minutes == ((1ull << 1) | (1ull << 4) | (1ull << 7) | (1ull << 10)),
          "1-10/3");
    CHECK(cairn_cron_parse("CRON_TZ=Europe/Berlin   @weekly", &a, &err) == 0 &&
              strcmp(a.tz, "Europe/Berlin") == 0 && a.dows == 1 && a.hours == 1 &&
              a.minutes == 1 && strcmp(a.text, "CRON_TZ=Europe/Berlin   @weekly") == 0,
          "CRON_TZ with a macro: %s", err.msg);
    CHECK(cairn_cron_parse("CRON_TZ=Etc/UTC 0 0 * * *", &a, &err) == 0 && a.tz[0] == 0,
          "UTC aliases are UTC");
    if (access("/usr/share/zoneinfo/right/Europe/Berlin", R_OK) == 0 && !getenv("TZDIR"))
        CHECK(cairn_cron_parse("CRON_TZ=right/Europe/Berlin 0 0 * * *", &a, &err) ==
                      CAIRN_FAILED &&
                  strstr(err.msg, "leap seconds"),
              "right/ zones: %s", err.msg);
    CHECK(cairn_cron_parse("0 0 31 2 mon", &a, &err) == 0,
          "Feb 31 OR Monday runs (either-rule): %s", err.msg);
    CHECK(cairn_cron_parse("*/15 */6 * * *", &a, &err) == 0 &&
              (a.flags & (CAIRN_CRON_MIN_STAR | CAIRN_CRON_HOUR_STAR)) ==
                  (CAIRN_CRON_MIN_STAR | CAIRN_CRON_HOUR_STAR),
          "star flags");
}

static void test_never(void)
{
    struct cairn_cron c;
    cairn_err err;
    int64_t nt = 0;
    /* Feb 29 on a Sunday: 2088, then 2128 — beyond the 30-year search */
    CHECK(cairn_cron_parse("0 0 29 2 */7", &c, &err) == CAIRN_OK, "parse");
    CHECK(cairn_cron_next(&c, T("2060-03-01T00:00:00Z"), &nt, &err) == CAIRN_OK &&
              nt == T("2088-02-29T00:00:00Z"),
          "2088: %s", err.msg);
    CHECK(cairn_cron_next(&c, T("2088-03-01T00:00:00Z"), &nt, &err) == CAIRN_NOTFOUND &&
              strstr(err.msg, "does not run within 30 years"),
          "never within the bound: %s", err.msg);
}

/* ---- missed runs ---- */

static void test_due(void)
{
    struct cairn_cron c;
    cairn_err err;
    int64_t at = 0, last;
    int rc, runs;
    cairn_cron_parse("0 * * * *", &c, &err);
    /* five hours missed: one run, for the latest slot */
    rc = cairn_cron_due(&c, T("2026-11-21T10:00:00Z"), T("2026-11-21T15:30:00Z"), &at, &err);
    CHECK(rc == 1 && at == T("2026-11-21T15:00:00Z"), "missed: rc %d at %lld", rc, (long long)at);
    /* after running it (last = 15:00) nothing more is due until 16:00 */
    rc = cairn_cron_due(&c, at, T("2026-11-21T15:30:00Z"), &at, &err);
    CHECK(rc == 0 && at == T("2026-11-21T16:00:00Z"), "not due: rc %d at %lld", rc, (long long)at);
    rc = cairn_cron_due(&c, T("2026-11-21T15:00:00Z"), T("2026-11-21T15:59:59Z"), &at, &err);
    CHECK(rc == 0, "one second early");
    rc = cairn_cron_due(&c, T("2026-11-21T15:00:00Z"), T("2026-11-21T16:00:00Z"), &at, &err);
    CHECK(rc == 1 && at == T("2026-11-21T16:00:00Z"), "exactly on time");
    /* last run in the future (clock stepped back): not due */
    rc = cairn_cron_due(&c, T("2026-11-21T18:00:00Z"), T("2026-11-21T16:30:00Z"), &at, &err);
    CHECK(rc == 0 && at == T("2026-11-21T17:00:00Z"), "clock back: rc %d", rc);

    /* a scheduler loop over a 3-day outage: runs once after it, then hourly */
    last = T("2026-11-18T00:00:00Z");
    runs = 0;
    {
        int64_t now;
        for (now = T("2026-11-21T10:30:00Z"); now <= T("2026-11-21T12:30:00Z"); now += 60) {
            if (cairn_cron_due(&c, last, now, &at, &err) == 1) {
                runs++;
                last = at;
            }
        }
    }
    CHECK(runs == 3, "outage then hourly: %d runs (10:00 missed once, 11:00, 12:00)", runs);

    /* every minute, last run a year ago: one run, quickly */
    cairn_cron_parse("* * * * *", &c, &err);
    rc = cairn_cron_due(&c, T("2025-11-21T00:00:00Z"), T("2026-11-21T15:30:30Z"), &at, &err);
    CHECK(rc == 1 && at == T("2026-11-21T15:30:00Z"), "every minute: at %lld", (long long)at);
    /* sparse: Jan 1 every minute of the day, checked on Dec 31 */
    cairn_cron_parse("* * 1 1 *", &c, &err);
    rc = cairn_cron_due(&c, T("2020-01-01T00:00:00Z"), T("2026-12-31T12:00:00Z"), &at, &err);
    CHECK(rc == 1 && at == T("2026-01-01T23:59:00Z"), "sparse: at %lld", (long long)at);
    /* monthly, last run two months ago */
    cairn_cron_parse("@monthly", &c, &err);
    rc = cairn_cron_due(&c, T("2026-09-01T00:00:00Z"), T("2026-11-21T00:00:00Z"), &at, &err);
    CHECK(rc == 1 && at == T("2026-11-01T00:00:00Z"), "monthly");
    /* with jitter: pass now - jitter */
    cairn_cron_parse("0 2 * * *", &c, &err);
    rc = cairn_cron_due(&c, T("2026-11-20T02:00:00Z"), T("2026-11-21T02:04:00Z") - 300, &at, &err);
    CHECK(rc == 0, "jitter not yet elapsed");
    rc = cairn_cron_due(&c, T("2026-11-20T02:00:00Z"), T("2026-11-21T02:05:00Z") - 300, &at, &err);
    CHECK(rc == 1 && at == T("2026-11-21T02:00:00Z"), "jitter elapsed");
    /* Berlin spring: the 02:30 job missed during an outage still runs once */
    cairn_cron_parse("CRON_TZ=Europe/Berlin 30 2 * * *", &c, &err);
    rc = cairn_cron_due(&c, T("2026-03-28T02:30:00+01:00"), T("2026-03-29T09:00:00+02:00"), &at,
                        &err);
    CHECK(rc == 1 && at == T("2026-03-29T03:00:00+02:00"), "berlin spring due");
}

/* ---- jitter ---- */

static void test_jitter(void)
{
    int64_t seen[300] = {0};
    int i, distinct = 0, inrange = 1;
    char key[64];
    for (i = 0; i < 1000; i++) {
        int64_t j;
        snprintf(key, sizeof key, "team-%d/data-%d", i % 17, i);
        j = cairn_jitter(key, 300);
        if (j < 0 || j >= 300)
            inrange = 0;
        else if (!seen[j]++)
            distinct++;
        CHECK(j == cairn_jitter(key, 300), "stable within a run");
    }
    CHECK(inrange, "all in [0, 300)");
    CHECK(distinct > 250, "1000 PVCs spread over 300 s: %d distinct seconds", distinct);
    /* stable across builds and restarts: fixed values (checked against an
     * independent Python implementation of FNV-1a 64 + splitmix64) */
    CHECK(cairn_jitter("default/data-postgres-0", 3600) == 281,
          "known value: %lld", (long long)cairn_jitter("default/data-postgres-0", 3600));
    CHECK(cairn_jitter("default/data-postgres-1", 3600) == 74,
          "known value: %lld", (long long)cairn_jitter("default/data-postgres-1", 3600));
    CHECK(cairn_jitter("x", 1) == 0 && cairn_jitter("x", 0) == 0 && cairn_jitter("x", -5) == 0 &&
              cairn_jitter(NULL, 100) == 0,
          "degenerate bounds");
    CHECK(cairn_jitter("", 1000) >= 0 && cairn_jitter("", 1000) < 1000, "empty key");
}

int main(void)
{
    test_next_table();
    test_brute();
    test_tz_offsets();
    test_threads();
    test_bad();
    test_parse_details();
    test_never();
    test_due();
    test_jitter();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_cron: ok\n");
    return 0;
}

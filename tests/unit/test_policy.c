/* tests/unit/test_policy.c — engine/policy.c: the retention policy language and
 * the keep/remove decision, against tables of snapshot times and the kept sets
 * restic's documentation gives for the same flags (doc/060_forget.rst: the
 * twelve Sundays with --keep-daily 4; the 100 years of dailies with
 * --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 75; the
 * "oldest snapshot is kept additionally" rule), plus calendar boundaries in UTC
 * (hours, midnight, ISO weeks across year ends, leap days, years), keep-within,
 * keep tags, several rules keeping one snapshot, and the parser's errors. */
#define _GNU_SOURCE
#include "../../engine/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define MAXS 64

/* One table row: a snapshot time (UTC), optional tags, and the expected
 * decision: NULL = removed, otherwise the reasons as cairn_policy_reasons()
 * words them. */
struct row {
    const char *time;
    const char *tags; /* comma-separated or NULL */
    const char *want; /* expected reasons, or NULL = removed */
};

static int64_t t_of(const char *s)
{
    int64_t ns = 0;
    if (cairn_parse_time(s, &ns) != CAIRN_OK) {
        fprintf(stderr, "FAIL: bad time in table: '%s'\n", s);
        failures++;
    }
    return ns;
}

/* Runs one table; `now` NULL = far in the future. */
static void run_table(const char *name, const char *policy_text, const char *const *extra_tags,
                      const char *now, const struct row *rows, size_t n)
{
    struct cairn_policy p;
    struct cairn_policy_snap snaps[MAXS];
    struct cairn_policy_result res[MAXS];
    char *tagbuf[MAXS][4];
    char ids[MAXS][24];
    cairn_err err;
    size_t i, k;
    if (cairn_policy_parse(policy_text, &p, &err) != CAIRN_OK) {
        CHECK(0, "%s: policy '%s' does not parse: %s", name, policy_text, err.msg);
        return;
    }
    for (i = 0; extra_tags && extra_tags[i]; i++)
        cairn_policy_add_tag(&p, extra_tags[i], &err);
    memset(tagbuf, 0, sizeof tagbuf);
    for (i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "s%02zu", i);
        snaps[i].id = ids[i];
        snaps[i].time_ns = t_of(rows[i].time);
        snaps[i].n_tags = 0;
        if (rows[i].tags) {
            char *copy = strdup(rows[i].tags), *t, *save = NULL;
            for (t = strtok_r(copy, ",", &save); t && snaps[i].n_tags < 4;
                 t = strtok_r(NULL, ",", &save))
                tagbuf[i][snaps[i].n_tags++] = strdup(t);
            free(copy);
        }
        snaps[i].tags = (const char *const *)tagbuf[i];
    }
    CHECK(cairn_policy_apply(&p, snaps, n, now ? t_of(now) : INT64_MAX / 2, res, &err) ==
              CAIRN_OK,
          "%s: apply failed", name);
    for (i = 0; i < n; i++) {
        char why[512];
        cairn_policy_reasons(&p, &res[i], why, sizeof why);
        if (rows[i].want) {
            CHECK(res[i].keep, "%s: %s should be kept (%s) but is removed", name, rows[i].time,
                  rows[i].want);
            CHECK(strcmp(why, rows[i].want) == 0, "%s: %s kept for '%s', expected '%s'", name,
                  rows[i].time, why, rows[i].want);
        } else {
            CHECK(!res[i].keep, "%s: %s should be removed but is kept (%s)", name,
                  rows[i].time, why);
        }
    }
    for (i = 0; i < n; i++)
        for (k = 0; k < 4; k++)
            free(tagbuf[i][k]);
    cairn_policy_clear(&p);
}

#define TABLE(name, pol, tags, now, ...)                                                 \
    do {                                                                                 \
        static const struct row rows_[] = {__VA_ARGS__};                                 \
        run_table(name, pol, tags, now, rows_, sizeof rows_ / sizeof *rows_);            \
    } while (0)

static void test_restic_doc_examples(void)
{
    /* restic doc/060_forget.rst: one backup every Sunday for 12 weeks;
     * --keep-daily 4 keeps the last four Sundays (counts are used up, so the
     * oldest is not kept additionally). Input oldest first, as listed. */
    TABLE("twelve sundays, daily=4", "daily=4", NULL, "2019-11-18 00:00:00",
          {"2019-09-01 11:00:00", NULL, NULL}, {"2019-09-08 11:00:00", NULL, NULL},
          {"2019-09-15 11:00:00", NULL, NULL}, {"2019-09-22 11:00:00", NULL, NULL},
          {"2019-09-29 11:00:00", NULL, NULL}, {"2019-10-06 11:00:00", NULL, NULL},
          {"2019-10-13 11:00:00", NULL, NULL}, {"2019-10-20 11:00:00", NULL, NULL},
          {"2019-10-27 11:00:00", NULL, "daily snapshot"},
          {"2019-11-03 11:00:00", NULL, "daily snapshot"},
          {"2019-11-10 11:00:00", NULL, "daily snapshot"},
          {"2019-11-17 11:00:00", NULL, "daily snapshot"});

    /* The same twelve with weekly=3,monthly=2: the last 3 Sundays are weekly,
     * the newest of November and of October are monthly. */
    TABLE("twelve sundays, weekly=3,monthly=2", "weekly=3,monthly=2", NULL, NULL,
          {"2019-09-01 11:00:00", NULL, NULL}, {"2019-09-08 11:00:00", NULL, NULL},
          {"2019-09-15 11:00:00", NULL, NULL}, {"2019-09-22 11:00:00", NULL, NULL},
          {"2019-09-29 11:00:00", NULL, NULL}, {"2019-10-06 11:00:00", NULL, NULL},
          {"2019-10-13 11:00:00", NULL, NULL}, {"2019-10-20 11:00:00", NULL, NULL},
          {"2019-10-27 11:00:00", NULL, "monthly snapshot"},
          {"2019-11-03 11:00:00", NULL, "weekly snapshot"},
          {"2019-11-10 11:00:00", NULL, "weekly snapshot"},
          {"2019-11-17 11:00:00", NULL, "weekly snapshot, monthly snapshot"});

    /* restic: "If there are not enough snapshots to keep one for each
     * duration related --keep-* option, the oldest snapshot is kept
     * additionally": four snapshots in one month with --keep-monthly 4 keep
     * the newest and the oldest. */
    TABLE("one month, monthly=4", "monthly=4", NULL, NULL,
          {"2024-01-02 13:42:44", NULL, "oldest monthly snapshot"},
          {"2024-01-03 01:04:38", NULL, NULL}, {"2024-01-04 20:09:54", NULL, NULL},
          {"2024-01-04 20:20:32", NULL, "monthly snapshot"});
}

/* restic: a backup every day for 100 years and
 * --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 75 keeps the
 * 7 newest dailies, 4 more weekly ones, 11 or 12 more monthly and 74 or 75
 * more yearly ones. */
static void test_hundred_years(void)
{
    const size_t n = 36525;
    struct cairn_policy p;
    struct cairn_policy_snap *s = calloc(n, sizeof *s);
    struct cairn_policy_result *r = calloc(n, sizeof *r);
    cairn_err err;
    size_t i, kept = 0, by[6] = {0};
    /* ending on Sunday 2023-12-31, so the 7 dailies are one ISO week and the
     * calendar lines up as in restic's description */
    int64_t end = t_of("2023-12-31 12:00:00");
    CHECK(cairn_policy_parse("daily=7,weekly=5,monthly=12,yearly=75", &p, &err) == CAIRN_OK,
          "parse: %s", err.msg);
    for (i = 0; i < n; i++)
        s[i].time_ns = end - (int64_t)(n - 1 - i) * 86400LL * 1000000000LL;
    CHECK(cairn_policy_apply(&p, s, n, INT64_MAX / 2, r, &err) == CAIRN_OK, "apply");
    for (i = 0; i < n; i++) {
        int b;
        if (!r[i].keep)
            continue;
        kept++;
        for (b = 0; b < 6; b++)
            if (r[i].reasons & (1u << b))
                by[b]++;
        CHECK(!(r[i].reasons & (CAIRN_KEEP_OLDEST_DAILY | CAIRN_KEEP_OLDEST_WEEKLY |
                                CAIRN_KEEP_OLDEST_MONTHLY | CAIRN_KEEP_OLDEST_YEARLY)),
              "100 years: no 'oldest' keep expected (counts are used up)");
    }
    CHECK(by[2] == 7 && by[3] == 5 && by[4] == 12 && by[5] == 75,
          "100 years: rules kept daily %zu weekly %zu monthly %zu yearly %zu", by[2], by[3],
          by[4], by[5]);
    CHECK(kept >= 7 + 4 + 11 + 74 && kept <= 7 + 4 + 12 + 75,
          "100 years: %zu kept, restic documents 96..98", kept);
    CHECK(kept == 96, "100 years ending on a Sunday, Dec 31: %zu kept, expected 96", kept);
    /* the newest is kept by all four rules */
    CHECK(r[n - 1].reasons == (CAIRN_KEEP_DAILY | CAIRN_KEEP_WEEKLY | CAIRN_KEEP_MONTHLY |
                               CAIRN_KEEP_YEARLY),
          "100 years: newest kept for reasons %#x", r[n - 1].reasons);
    cairn_policy_clear(&p);
    free(s);
    free(r);
}

static void test_boundaries(void)
{
    /* hours: [h:00:00, h:59:59.999999999] is one bucket */
    TABLE("hourly=3", "hourly=3", NULL, NULL,
          {"2024-03-10 10:00:00", NULL, NULL}, {"2024-03-10 10:59:59", NULL, NULL},
          {"2024-03-10 11:00:00", NULL, NULL},
          {"2024-03-10 11:30:00", NULL, "hourly snapshot"},
          {"2024-03-10 12:59:59.999999999", NULL, "hourly snapshot"},
          {"2024-03-10 13:00:00", NULL, "hourly snapshot"});
    /* an hour without snapshots does not use up a count */
    TABLE("hourly=2 with a gap", "hourly=2", NULL, NULL,
          {"2024-03-10 07:15:00", NULL, NULL}, {"2024-03-10 09:15:00", NULL, "hourly snapshot"},
          {"2024-03-10 13:15:00", NULL, "hourly snapshot"});
    /* midnight UTC separates days; daily counts days that have snapshots */
    TABLE("daily=2 at midnight", "daily=2", NULL, NULL,
          {"2024-03-09 12:00:00", NULL, NULL},
          {"2024-03-09 23:59:59", NULL, "daily snapshot"},
          {"2024-03-10 00:00:00", NULL, NULL},
          {"2024-03-10 00:00:01", NULL, "daily snapshot"});
    /* times with offsets are bucketed in UTC: 01:30+02:00 is 23:30 the day before */
    TABLE("daily=2 offsets", "daily=2", NULL, NULL,
          {"2024-03-09 20:00:00Z", NULL, NULL},
          {"2024-03-10 01:30:00+02:00", NULL, "daily snapshot"},
          {"2024-03-10 00:30:00Z", NULL, "daily snapshot"});
    /* ISO weeks across a year end: Thu 2020-12-31 and Sun 2021-01-03 are both
     * in 2020-W53; Mon 2021-01-04 starts 2021-W01; Mon 2019-12-30 is already
     * 2020-W01; Sun 2019-12-29 is 2019-W52 */
    TABLE("weekly across 2020/2021", "weekly=10", NULL, NULL,
          {"2019-12-29 10:00:00", NULL, "weekly snapshot"},
          {"2019-12-30 10:00:00", NULL, NULL}, /* 2020-W01, like the newer 2020-01-05 */
          {"2020-01-05 10:00:00", NULL, "weekly snapshot"},
          {"2020-12-31 10:00:00", NULL, NULL},
          {"2021-01-03 23:59:59", NULL, "weekly snapshot"},
          {"2021-01-04 00:00:00", NULL, "weekly snapshot"});
    TABLE("weekly across 2024/2025", "weekly=3", NULL, NULL,
          {"2024-12-29 23:00:00", NULL, "weekly snapshot"}, /* Sun, 2024-W52 */
          {"2024-12-30 00:00:00", NULL, NULL},              /* Mon, 2025-W01 */
          {"2025-01-05 23:59:59", NULL, "weekly snapshot"}, /* Sun, 2025-W01 */
          {"2025-01-06 00:00:00", NULL, "weekly snapshot"}); /* Mon, 2025-W02 */
    /* months, with a leap day */
    TABLE("monthly=2 leap", "monthly=2", NULL, NULL,
          {"2024-01-31 23:59:59", NULL, "monthly snapshot"},
          {"2024-02-01 00:00:00", NULL, NULL},
          {"2024-02-29 12:00:00", NULL, "monthly snapshot"});
    /* years; yearly=5 with only three years keeps the oldest too */
    TABLE("yearly=5", "yearly=5", NULL, NULL,
          {"2022-06-01 00:00:00", NULL, "oldest yearly snapshot"},
          {"2022-12-31 23:59:59", NULL, "yearly snapshot"},
          {"2023-12-31 23:59:59", NULL, "yearly snapshot"},
          {"2024-01-01 00:00:00", NULL, "yearly snapshot"});
}

static void test_within(void)
{
    /* within=7d of the newest (2024-06-10 12:00): strictly newer than 06-03 12:00 */
    TABLE("within=7d", "within=7d", NULL, "2024-06-10 13:00:00",
          {"2024-06-01 00:00:00", NULL, NULL}, {"2024-06-03 12:00:00", NULL, NULL},
          {"2024-06-03 12:00:01", NULL, "within 7d"},
          {"2024-06-10 12:00:00", NULL, "within 7d"});
    /* a snapshot in the future does not define "newest" (restic ignores it
     * for the duration rules and never removes it) */
    TABLE("within future", "within=1d", NULL, "2024-06-10 13:00:00",
          {"2024-06-08 12:00:00", NULL, NULL}, {"2024-06-09 12:30:00", NULL, "within 1d"},
          {"2024-06-10 12:00:00", NULL, "within 1d"},
          {"2024-07-01 00:00:00", NULL, "within 1d"});
    /* combined units */
    TABLE("within=1d12h", "within=1d12h", NULL, NULL,
          {"2024-06-08 23:59:59", NULL, NULL}, {"2024-06-09 00:00:01", NULL, "within 1d12h"},
          {"2024-06-10 12:00:00", NULL, "within 1d12h"});
}

static void test_tags_and_overlap(void)
{
    static const char *const release[] = {"release", NULL};
    /* "keep" pins a snapshot under any policy; extra keep tags too; other
     * tags do nothing */
    TABLE("tags", "last=1", release, NULL,
          {"2024-01-01 00:00:00", "keep", "tagged 'keep'"},
          {"2024-01-02 00:00:00", "nightly,release", "tagged 'release'"},
          {"2024-01-03 00:00:00", "nightly", NULL},
          {"2024-01-04 00:00:00", NULL, "last snapshot"});
    /* tag=... in the annotation form */
    TABLE("tag in text", "last=1,tag=gold", NULL, NULL,
          {"2024-01-01 00:00:00", "gold", "tagged 'gold'"},
          {"2024-01-02 00:00:00", "silver", NULL},
          {"2024-01-03 00:00:00", "gold", "tagged 'gold', last snapshot"});
    /* several rules keep the same snapshot; every reason is listed */
    TABLE("overlap", "last=2,daily=2,weekly=1,within=1h", NULL, NULL,
          {"2024-05-01 08:00:00", NULL, NULL},
          {"2024-05-01 09:00:00", NULL, "daily snapshot"},
          {"2024-05-02 09:00:00", NULL, "last snapshot"},
          {"2024-05-02 10:00:00", NULL,
           "last snapshot, daily snapshot, weekly snapshot, within 1h"});
    /* unlimited: every day's newest, and the oldest */
    TABLE("daily=unlimited", "daily=unlimited", NULL, NULL,
          {"2024-05-01 08:00:00", NULL, "oldest daily snapshot"},
          {"2024-05-01 09:00:00", NULL, "daily snapshot"},
          {"2024-05-02 08:00:00", NULL, NULL},
          {"2024-05-02 09:00:00", NULL, "daily snapshot"},
          {"2024-05-03 09:00:00", NULL, "daily snapshot"});
    /* last=N with equal times: deterministic (by id), and input order does
     * not matter: rows given newest first here */
    TABLE("last=2 newest-first input", "last=2", NULL, NULL,
          {"2024-05-03 09:00:00", NULL, "last snapshot"},
          {"2024-05-02 09:00:00", NULL, "last snapshot"},
          {"2024-05-01 09:00:00", NULL, NULL});
    /* an empty policy keeps only pinned snapshots (forget refuses it) */
    TABLE("empty", "", NULL, NULL, {"2024-05-01 09:00:00", "keep", "tagged 'keep'"},
          {"2024-05-02 09:00:00", NULL, NULL});
}

static void test_parse(void)
{
    struct cairn_policy p;
    cairn_err err;
    char buf[256];
    int64_t s;
    int c;
    static const struct {
        const char *text, *needle;
    } bad[] = {
        {"daily=x", "'x' is not a count"},
        {"dialy=7", "unknown rule 'dialy'"},
        {"within=7", "needs a unit"},
        {"within=7q", "unknown unit 'q'"},
        {"within=", "is not a duration"},
        {"daily=7,daily=8", "given twice"},
        {"last=-1", "'-1' is not a count"},
        {"hourly", "is not RULE=VALUE"},
        {"daily=2000000", "larger than"},
        {"within=9999y", "too long"},
        {"tag=", "cannot be empty"},
    };
    size_t i;

    CHECK(cairn_policy_parse("last=3,hourly=24,daily=7,weekly=4,monthly=12,yearly=2,within=7d",
                             &p, &err) == CAIRN_OK,
          "full policy: %s", err.msg);
    CHECK(p.last == 3 && p.hourly == 24 && p.daily == 7 && p.weekly == 4 && p.monthly == 12 &&
              p.yearly == 2 && p.within_s == 7 * 86400,
          "full policy fields");
    cairn_policy_format(&p, buf, sizeof buf);
    CHECK(strcmp(buf, "last=3,hourly=24,daily=7,weekly=4,monthly=12,yearly=2,within=7d") == 0,
          "format: '%s'", buf);
    cairn_policy_clear(&p);

    CHECK(cairn_policy_parse(" hourly = 24 , keep-daily=7,, tag=a , tag=b,weekly=unlimited ",
                             &p, &err) == CAIRN_OK,
          "blanks, keep- prefix, tags: %s", err.msg);
    CHECK(p.hourly == 24 && p.daily == 7 && p.weekly == CAIRN_POLICY_UNLIMITED &&
              p.n_tags == 2 && strcmp(p.tags[1], "b") == 0,
          "parsed fields");
    cairn_policy_format(&p, buf, sizeof buf);
    CHECK(strcmp(buf, "hourly=24,daily=7,weekly=unlimited,tag=a,tag=b") == 0, "format: '%s'",
          buf);
    CHECK(!cairn_policy_is_empty(&p), "not empty");
    cairn_policy_clear(&p);

    CHECK(cairn_policy_parse("", &p, &err) == CAIRN_OK && cairn_policy_is_empty(&p),
          "empty text = empty policy");
    CHECK(cairn_policy_parse("tag=x", &p, &err) == CAIRN_OK && !cairn_policy_is_empty(&p) &&
              !cairn_policy_has_rules(&p),
          "tags only: not empty, no rules");
    cairn_policy_clear(&p);

    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = cairn_policy_parse(bad[i].text, &p, &err);
        CHECK(rc != CAIRN_OK, "'%s' should not parse", bad[i].text);
        CHECK(rc == CAIRN_OK || strstr(err.msg, bad[i].needle),
              "'%s': message '%s' lacks '%s'", bad[i].text, err.msg, bad[i].needle);
        CHECK(rc == CAIRN_OK || strstr(err.msg, "retention '"),
              "'%s': message '%s' does not name the item", bad[i].text, err.msg);
        CHECK(cairn_policy_is_empty(&p), "'%s': policy left empty", bad[i].text);
        cairn_policy_clear(&p);
    }

    CHECK(cairn_parse_duration("30m", &s, &err) == CAIRN_OK && s == 1800, "30m");
    CHECK(cairn_parse_duration("12h", &s, &err) == CAIRN_OK && s == 43200, "12h");
    CHECK(cairn_parse_duration("2w", &s, &err) == CAIRN_OK && s == 14 * 86400, "2w");
    CHECK(cairn_parse_duration("1y", &s, &err) == CAIRN_OK && s == 365 * 86400, "1y");
    CHECK(cairn_parse_duration("1d12h", &s, &err) == CAIRN_OK && s == 129600, "1d12h");
    CHECK(cairn_parse_duration("0", &s, &err) == CAIRN_OK && s == 0, "0");
    CHECK(cairn_parse_duration("1h30", &s, &err) != CAIRN_OK, "1h30 lacks a unit");
    cairn_format_duration(129600, buf, sizeof buf);
    CHECK(strcmp(buf, "1d12h") == 0, "format 1d12h: '%s'", buf);
    cairn_format_duration(365 * 86400 + 61, buf, sizeof buf);
    CHECK(strcmp(buf, "1y1m1s") == 0, "format 1y1m1s: '%s'", buf);
    CHECK(cairn_parse_count("unlimited", &c, &err) == CAIRN_OK && c == -1, "unlimited");
    CHECK(cairn_parse_count("12", &c, &err) == CAIRN_OK && c == 12, "12");
}

int main(void)
{
    test_restic_doc_examples();
    test_hundred_years();
    test_boundaries();
    test_within();
    test_tags_and_overlap();
    test_parse();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_policy: ok\n");
    return 0;
}

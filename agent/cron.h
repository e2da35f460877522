/* agent/cron.h — cron schedules for `cairn.io/schedule`: parsing, the next run
 * time in the schedule's time zone, missed runs, and per-PVC jitter.
 *
 * Syntax (docs/annotations.md): five fields "minute hour day-of-month month
 * day-of-week" with lists (1,15), ranges (1-5), steps (*\/15, 1-10/3, 5/10 =
 * 5-max/10), month names jan..dec and weekday names sun..sat (any case), 0 and
 * 7 both Sunday; the macros @hourly @daily @midnight @weekly @monthly @yearly
 * @annually; and an optional "CRON_TZ=Zone/Name " (or "TZ=Zone/Name ") prefix,
 * default UTC. As in Vixie cron, when both day-of-month and day-of-week are
 * restricted (neither starts with '*'), a day matching either field runs.
 *
 * Daylight saving time follows Vixie cron (ISC cron 4.1 as shipped by Debian,
 * cron(8) "special considerations ... less than 3 hours"):
 *   - a "fixed-time" schedule (neither minute nor hour field starts with '*',
 *     e.g. "30 2 * * *", "@daily") whose local time falls into the spring gap
 *     runs once at the end of the gap (the first instant of the new offset);
 *     in the autumn overlap it runs once, at the first occurrence;
 *   - a "wildcard" schedule (minute or hour starts with '*', e.g. "*\/15 * * *
 *     *", "0 *\/6 * * *", "@hourly") follows the clock: times that do not exist
 *     are skipped, repeated wall-clock times run in each pass (so an hourly
 *     backup stays hourly in elapsed time).
 *
 * Time zones come from the system tz database ($TZDIR or /usr/share/zoneinfo):
 * Cairn reads the TZif files itself (RFC 8536, with the POSIX TZ footer for
 * times after the last listed transition), so no libc time zone state (TZ,
 * tzset) is touched and any thread may compute any zone. A zone is loaded
 * once and kept for the life of the process (at most 32 zones are kept;
 * more are re-read per call). UTC needs no file.
 *
 * Ownership: struct cairn_cron is a plain value (no heap memory, nothing to
 * free; copy it freely). Threading: everything here may be called from any
 * thread at once (the zone cache has its own lock). Nothing here prints or
 * exits. */
#ifndef CAIRN_AGENT_CRON_H
#define CAIRN_AGENT_CRON_H

#include <stdint.h>

#include "../engine/util.h"

#define CAIRN_CRON_MAX_TEXT 256   /* longest schedule string accepted (bytes) */
#define CAIRN_CRON_TZ_MAX 128     /* longest zone name + 1 */
#define CAIRN_CRON_SEARCH_YEARS 30 /* next() gives up (CAIRN_NOTFOUND) after this */

/* flags */
#define CAIRN_CRON_MIN_STAR 1u  /* minute field starts with '*' */
#define CAIRN_CRON_HOUR_STAR 2u /* hour field starts with '*' */
#define CAIRN_CRON_DOM_STAR 4u  /* day-of-month field starts with '*' */
#define CAIRN_CRON_DOW_STAR 8u  /* day-of-week field starts with '*' */

struct cairn_cron {
    uint64_t minutes; /* bit m: minute m (0..59) */
    uint32_t hours;   /* bit h: hour h (0..23) */
    uint32_t doms;    /* bit d: day of month d (1..31) */
    uint16_t months;  /* bit m: month m (1..12) */
    uint8_t dows;     /* bit d: weekday d (0 = Sunday .. 6) */
    unsigned flags;   /* CAIRN_CRON_*_STAR */
    char tz[CAIRN_CRON_TZ_MAX]; /* zone name; "" = UTC */
    char text[CAIRN_CRON_MAX_TEXT + 1]; /* the schedule as given (trimmed), for messages */
};

/* Parses text (at most CAIRN_CRON_MAX_TEXT bytes, blanks around fields
 * ignored) into c. A zone given by CRON_TZ= must exist in the tz database. A
 * schedule that can never fire (e.g. "0 0 30 2 *") is refused. Errors say
 * which field is wrong and what is valid, e.g.
 *   "field 1 (minute) '60': 60 is out of range 0-59". */
int cairn_cron_parse(const char *text, struct cairn_cron *c, cairn_err *err);

/* The first scheduled time strictly after after_s (epoch seconds), into
 * *next_s. CAIRN_NOTFOUND when there is none within CAIRN_CRON_SEARCH_YEARS
 * (only for schedules such as "Feb 29 that is a Sunday" far apart; parse
 * already refuses impossible ones); CAIRN_FAILED when the zone cannot be
 * loaded. */
int cairn_cron_next(const struct cairn_cron *c, int64_t after_s, int64_t *next_s,
                    cairn_err *err);

/* Missed runs: whether at least one scheduled time lies in (last_run_s, now_s].
 * Returns 1 (due; *due_at = the LATEST such time), 0 (not due; *due_at = the
 * next scheduled time after now_s, or 0 if none) or a negative cairn_rc.
 * However many times were missed, one run is due: the caller runs once and
 * stores *due_at as its new last_run_s, so the next call is due only at the
 * following scheduled time. To apply jitter, pass now_s - jitter. */
int cairn_cron_due(const struct cairn_cron *c, int64_t last_run_s, int64_t now_s,
                   int64_t *due_at, cairn_err *err);

/* The UTC offset (seconds east) of zone at instant t (epoch seconds), from
 * the same tz data the schedules use; "" or "UTC" is 0. */
int cairn_tz_offset(const char *zone, int64_t t, int32_t *off, cairn_err *err);

/* The same from a TZif image in memory (tests and fuzzing): CAIRN_CORRUPT
 * when buf is not a valid TZif file. */
int cairn_tz_image_offset(const void *buf, size_t len, int64_t t, int32_t *off);

/* A deterministic offset in [0, max_s) for key (use "namespace/pvc"): a
 * 64-bit FNV-1a hash finished with splitmix64, so it is the same across
 * restarts, hosts and builds. 0 when max_s <= 0 or key is NULL. */
int64_t cairn_jitter(const char *key, int64_t max_s);

#endif

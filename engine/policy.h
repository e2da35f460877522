/* engine/policy.h — retention policies: which snapshots of a source to keep.
 *
 * A policy is the `cairn.io/retention` annotation language, also used by
 * `cairn forget --keep-*` (docs/retention.md):
 *
 *   last=3,hourly=24,daily=7,weekly=4,monthly=12,yearly=2,within=7d,tag=release
 *
 * Semantics follow restic's `forget` for the same flags. Snapshots are taken
 * newest first. `last N` keeps the N newest. `hourly N` keeps, for each of the
 * last N hours that have a snapshot, the newest snapshot of that hour; daily,
 * weekly (ISO 8601 weeks, Monday to Sunday), monthly and yearly likewise. If a
 * calendar rule still has counts left when the oldest snapshot is reached, the
 * oldest is kept too ("oldest daily snapshot"), so a young repository keeps its
 * full history. `within D` keeps every snapshot newer than D before the newest
 * snapshot (the newest one not in the future). A snapshot tagged "keep", or
 * with any tag of the policy's list, is always kept. A snapshot kept by any
 * rule is kept; every rule that keeps it is listed. Calendar buckets are
 * computed in UTC.
 *
 * cairn_policy_apply() is a pure function (no I/O, no clock: `now` is passed).
 *
 * Ownership: a struct cairn_policy owns its tag strings; release it with
 * cairn_policy_clear() (a zeroed struct is a valid empty policy).
 * Threading: no shared state; one policy per thread or read-only sharing. */
#ifndef CAIRN_POLICY_H
#define CAIRN_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define CAIRN_POLICY_UNLIMITED (-1) /* a count meaning "every bucket" */
#define CAIRN_POLICY_MAX_COUNT 1000000
#define CAIRN_POLICY_MAX_TAGS 64
#define CAIRN_POLICY_MAX_TEXT 4096  /* longest annotation accepted */
#define CAIRN_KEEP_TAG "keep"       /* the pin every policy honours */

struct cairn_policy {
    int last, hourly, daily, weekly, monthly, yearly; /* 0 = rule off, -1 = unlimited */
    int64_t within_s;                                 /* 0 = rule off */
    char **tags;  /* extra keep tags (owned); "keep" is implied, not listed */
    size_t n_tags;
};

/* Reasons a snapshot is kept (a bit set). */
enum cairn_keep_reason {
    CAIRN_KEEP_LAST = 1u << 0,
    CAIRN_KEEP_HOURLY = 1u << 1,
    CAIRN_KEEP_DAILY = 1u << 2,
    CAIRN_KEEP_WEEKLY = 1u << 3,
    CAIRN_KEEP_MONTHLY = 1u << 4,
    CAIRN_KEEP_YEARLY = 1u << 5,
    CAIRN_KEEP_OLDEST_HOURLY = 1u << 6, /* rule had counts left at the oldest snapshot */
    CAIRN_KEEP_OLDEST_DAILY = 1u << 7,
    CAIRN_KEEP_OLDEST_WEEKLY = 1u << 8,
    CAIRN_KEEP_OLDEST_MONTHLY = 1u << 9,
    CAIRN_KEEP_OLDEST_YEARLY = 1u << 10,
    CAIRN_KEEP_WITHIN = 1u << 11,
    CAIRN_KEEP_TAGGED = 1u << 12, /* see cairn_policy_result.tag */
};

/* One snapshot as the policy sees it. Borrowed; nothing is copied. */
struct cairn_policy_snap {
    const char *id;            /* used only to order snapshots with equal times */
    int64_t time_ns;
    const char *const *tags;
    size_t n_tags;
};

struct cairn_policy_result {
    int keep;           /* 1 keep, 0 remove */
    unsigned reasons;   /* enum cairn_keep_reason bits; 0 when removed */
    const char *tag;    /* with CAIRN_KEEP_TAGGED: the tag that matched (points into input) */
};

/* Parses the annotation form into p (which must be zeroed or cleared first).
 * Items are separated by commas, blanks around them are ignored; an empty
 * string is an empty policy. On error p is left empty and the message names
 * the bad part, e.g. "retention 'daily=x': 'x' is not a count ...". */
int cairn_policy_parse(const char *text, struct cairn_policy *p, cairn_err *err);
/* Adds a keep tag (copied). */
int cairn_policy_add_tag(struct cairn_policy *p, const char *tag, cairn_err *err);
void cairn_policy_clear(struct cairn_policy *p);
/* 1 when no rule is set (the implied "keep" tag does not count). forget
 * refuses an empty policy: it would remove everything not pinned. */
int cairn_policy_is_empty(const struct cairn_policy *p);
/* Whether some count/within rule is set (then the newest snapshot of a group
 * is always kept, whatever the tags). */
int cairn_policy_has_rules(const struct cairn_policy *p);

/* "30m", "12h", "7d", "2w", "1y" (365 d), "90s" and sums like "1d12h" into
 * seconds; "0" is zero. Errors name the text and the units accepted. */
int cairn_parse_duration(const char *text, int64_t *seconds, cairn_err *err);
/* A count: 0..CAIRN_POLICY_MAX_COUNT or "unlimited" (-1). */
int cairn_parse_count(const char *text, int *count, cairn_err *err);
/* The shortest form of a duration ("1d12h"); out >= 32 bytes. */
void cairn_format_duration(int64_t seconds, char *out, size_t outlen);
/* The policy in annotation form ("last=3,daily=7,within=7d,tag=x"); "" when
 * empty. Returns out. */
char *cairn_policy_format(const struct cairn_policy *p, char *out, size_t outlen);
/* Human-readable reasons, comma-separated ("last snapshot, daily snapshot,
 * within 7d, tagged 'keep'"). Returns out. */
char *cairn_policy_reasons(const struct cairn_policy *p, const struct cairn_policy_result *r,
                           char *out, size_t outlen);

/* Decides which of snaps[0..n) to keep. out[i] is the decision for snaps[i]
 * (any input order). now_ns: snapshots later than it are "in the future" and
 * do not define the newest time for `within`. CAIRN_FATAL only when out of
 * memory (a scratch index array of n entries). */
int cairn_policy_apply(const struct cairn_policy *p, const struct cairn_policy_snap *snaps,
                       size_t n, int64_t now_ns, struct cairn_policy_result *out, cairn_err *err);

#endif

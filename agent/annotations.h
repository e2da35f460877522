/* agent/annotations.h — a PVC's cairn.io/ annotations as a backup policy.
 *
 * The annotations (docs/annotations.md):
 *   cairn.io/schedule             cron (agent/cron.h)             default: none
 *   cairn.io/retention            engine/policy.h language        default: keep all
 *   cairn.io/quiesce              none|fsfreeze|postgres|mysql    default: none
 *   cairn.io/snapshot             file|btrfs|csi|exec|exec:NAME   default: file
 *   cairn.io/snapshot-class       VolumeSnapshotClass (csi only)  default: the cluster's
 *   cairn.io/credentials-secret   Secret name (postgres, mysql)
 *   cairn.io/exclude              comma-separated globs
 *   cairn.io/backup-requested-at  RFC 3339 time (cairn trigger)
 *   cairn.io/delete-volume-snapshots  true|false: retention deletes the
 *                                 VolumeSnapshots of the records it forgets
 *                                 default: true
 *   cairn.io/csi-copy             false|true|keep (csi only): copy the
 *                                 VolumeSnapshot's data into the repository
 *                                 (agent/csi_copy.h); keep: and keep it
 *                                 default: false
 * and, written by the agent itself and ignored here: cairn.io/last-backup,
 * cairn.io/last-status. Any other cairn.io/ key is a warning (a typo, most
 * likely); keys outside cairn.io/ are not ours and are skipped.
 *
 * Every annotation is checked on its own: one bad value never hides the
 * others. Each problem names the annotation, the bad value (truncated and
 * with unprintable bytes escaped) and what is valid; the policy records which
 * parts are valid (`valid` bits) so the agent can act on what it may.
 *
 * Ownership: cairn_pvc_policy owns its retention tags and exclude strings;
 * release it with cairn_pvc_policy_clear() (a zeroed struct is valid, clearing
 * twice is fine). The annotation array is borrowed; nothing points into it
 * after parsing. Threading: no shared state (the schedule's time zone check
 * reads the tz database; see agent/cron.h). Nothing here prints or exits. */
#ifndef CAIRN_AGENT_ANNOTATIONS_H
#define CAIRN_AGENT_ANNOTATIONS_H

#include <stddef.h>
#include <stdint.h>

#include "../engine/policy.h"
#include "../engine/util.h"
#include "cron.h"

#define CAIRN_ANN_PREFIX "cairn.io/"
#define CAIRN_ANN_MAX_VALUE 8192     /* longest value read (longer: refused) */
#define CAIRN_ANN_MAX_EXCLUDES 64    /* globs in cairn.io/exclude */
#define CAIRN_ANN_MAX_GLOB 256       /* bytes per glob */
#define CAIRN_ANN_MAX_NAME 253       /* DNS-1123 subdomain (Secret, class names) */
#define CAIRN_ANN_MAX_PROBLEMS 16    /* kept; more are counted in n_dropped */
#define CAIRN_ANN_MSG_MAX 512
#define CAIRN_ANN_MAX_EXEC_NAME 32   /* exec:NAME: a DNS label of at most 32 bytes */

/* One annotation, borrowed from the caller (e.g. a parsed PVC's metadata). */
struct cairn_annotation {
    const char *key;
    const char *value;
};

/* The parts of a policy: bits of `present` and `valid`. */
enum cairn_ann_part {
    CAIRN_ANN_SCHEDULE = 1u << 0,
    CAIRN_ANN_RETENTION = 1u << 1,
    CAIRN_ANN_QUIESCE = 1u << 2,
    CAIRN_ANN_SNAPSHOT = 1u << 3,
    CAIRN_ANN_SNAPSHOT_CLASS = 1u << 4,
    CAIRN_ANN_CREDENTIALS = 1u << 5,
    CAIRN_ANN_EXCLUDE = 1u << 6,
    CAIRN_ANN_REQUESTED_AT = 1u << 7,
    CAIRN_ANN_DELETE_VS = 1u << 8,
    CAIRN_ANN_CSI_COPY = 1u << 9,
};
#define CAIRN_ANN_ALL 0x3ffu

enum cairn_quiesce { CAIRN_QUIESCE_NONE, CAIRN_QUIESCE_FSFREEZE, CAIRN_QUIESCE_POSTGRES,
                     CAIRN_QUIESCE_MYSQL };
enum cairn_snapshot_kind { CAIRN_SNAPSHOT_FILE, CAIRN_SNAPSHOT_BTRFS, CAIRN_SNAPSHOT_CSI,
                           CAIRN_SNAPSHOT_EXEC };

/* cairn.io/csi-copy: the VolumeSnapshot stays the backup (OFF: a reference
 * record), or its data is copied into the repository and the VolumeSnapshot
 * deleted (ON) or kept (KEEP, and the copy's record references it). */
enum cairn_csi_copy { CAIRN_CSI_COPY_OFF, CAIRN_CSI_COPY_ON, CAIRN_CSI_COPY_KEEP };

enum cairn_ann_severity {
    CAIRN_ANN_NOTE,    /* informational: a default is used */
    CAIRN_ANN_WARNING, /* ignored or unknown, the policy still works */
    CAIRN_ANN_ERROR,   /* this part is invalid (its `valid` bit is clear) */
};

struct cairn_ann_problem {
    enum cairn_ann_severity severity;
    unsigned part;          /* enum cairn_ann_part, 0 for an unknown key */
    char key[64];           /* the annotation, e.g. "cairn.io/quiesce" (truncated) */
    char msg[CAIRN_ANN_MSG_MAX]; /* "cairn.io/quiesce 'fsfrez': not a method (valid: ...)" */
};

struct cairn_pvc_policy {
    unsigned present;       /* parts given (annotation present) */
    unsigned valid;         /* parts usable: given and valid, or defaulted */
    struct cairn_cron schedule;        /* when CAIRN_ANN_SCHEDULE is present and valid */
    struct cairn_policy retention;     /* owned tags */
    enum cairn_quiesce quiesce;
    enum cairn_snapshot_kind snapshot;
    char snapshot_exec[CAIRN_ANN_MAX_EXEC_NAME + 1]; /* exec:NAME; "" = the default entry */
    char snapshot_class[CAIRN_ANN_MAX_NAME + 1];     /* "" = the cluster's default */
    char credentials_secret[CAIRN_ANN_MAX_NAME + 1]; /* "" = none */
    char **exclude;                    /* owned, n_exclude strings */
    size_t n_exclude;
    int64_t requested_at_ns;           /* cairn.io/backup-requested-at; 0 = none */
    int keep_volume_snapshots;         /* cairn.io/delete-volume-snapshots: "false" */
    enum cairn_csi_copy csi_copy;      /* cairn.io/csi-copy; OFF unless snapshot is csi */
    struct cairn_ann_problem problems[CAIRN_ANN_MAX_PROBLEMS];
    size_t n_problems;
    size_t n_dropped;                  /* problems beyond the cap (counted only) */
    size_t n_errors, n_warnings;       /* all, kept or dropped */
};

/* Parses annots[0..n) into p (zeroed here first; clear it after use even on
 * error). Returns CAIRN_OK when no annotation is in error (notes and warnings
 * may be listed), CAIRN_FAILED when at least one is (then err holds a summary
 * naming the first: "2 invalid annotations: cairn.io/schedule '...': ...";
 * every problem is in p->problems), CAIRN_FATAL only when out of memory. */
int cairn_pvc_policy_parse(const struct cairn_annotation *annots, size_t n,
                           struct cairn_pvc_policy *p, cairn_err *err);
void cairn_pvc_policy_clear(struct cairn_pvc_policy *p);

/* Whether the agent may run a backup of this PVC as asked: every part that
 * shapes the backup (schedule, quiesce, snapshot, snapshot-class,
 * credentials-secret, exclude, csi-copy) is valid. A bad part never falls back to a
 * weaker method silently. */
int cairn_pvc_policy_can_backup(const struct cairn_pvc_policy *p);
/* Whether old snapshots may be forgotten: a retention annotation is present,
 * valid and not empty, and cairn.io/delete-volume-snapshots is valid (a bad
 * one must not decide whether storage snapshots go). A bad retention never
 * deletes anything. */
int cairn_pvc_policy_can_prune(const struct cairn_pvc_policy *p);

const char *cairn_quiesce_name(enum cairn_quiesce q);
const char *cairn_snapshot_kind_name(enum cairn_snapshot_kind k);
const char *cairn_csi_copy_name(enum cairn_csi_copy c);

/* Whether s is a DNS-1123 subdomain (lower-case alphanumerics, '-' and '.',
 * labels start and end alphanumeric, at most 253 bytes) — the rule for
 * Secret and VolumeSnapshotClass names. */
int cairn_dns1123_subdomain(const char *s);

#endif
